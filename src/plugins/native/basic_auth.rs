//! `basic-auth`: authenticates a consumer by username and password in the `Authorization`
//! (or `Proxy-Authorization`) header (Kong's plugin hub: anonymous, hide_credentials, realm).
//!
//! Passwords in the declarative file may be plain text or Kong's stored form (the hex SHA-1 of
//! password followed by the consumer id, as a decK dump of a database-backed Kong has them).

use std::sync::Arc;

use base64::Engine;
use serde::Deserialize;
use sha1::{Digest, Sha1};

use super::auth::{self, unauthorized};
use super::{BuildCtx, Bundled};
use crate::config::model::Credential;
use crate::plugins::{Exit, Flow, Instance, Phase, PhaseCtx, PluginError};

/// The plugin.
pub(super) static PLUGIN: Bundled = Bundled {
    name: "basic-auth",
    priority: 1100,
    schema: SCHEMA,
    build,
};

const SCHEMA: &str = r#"
local typedefs = require "kong.db.schema.typedefs"
return {
  name = "basic-auth",
  fields = {
    { consumer = typedefs.no_consumer },
    { protocols = typedefs.protocols_http },
    { config = { type = "record", fields = {
      { anonymous = { type = "string" } },
      { hide_credentials = { type = "boolean", required = true, default = false } },
      { realm = { type = "string", required = true, default = "service" } },
    } } },
  },
}
"#;

const UNAUTHORIZED: &str = "Unauthorized";

#[derive(Debug, Deserialize)]
struct Conf {
    anonymous: Option<String>,
    hide_credentials: bool,
    realm: String,
}

struct BasicAuth {
    hide_credentials: bool,
    anonymous: Option<usize>,
    challenge: String,
}

fn build(ctx: &BuildCtx<'_>) -> Result<Arc<dyn Instance>, String> {
    let conf: Conf = ctx.decode()?;
    Ok(Arc::new(BasicAuth {
        hide_credentials: conf.hide_credentials,
        anonymous: auth::anonymous(ctx.config, conf.anonymous.as_deref())?,
        challenge: format!("Basic realm=\"{}\"", conf.realm),
    }))
}

impl Instance for BasicAuth {
    fn phases(&self) -> &[Phase] {
        &[Phase::Access]
    }

    fn access(&self, ctx: &mut PhaseCtx<'_>) -> Result<Flow, PluginError> {
        auth::access(ctx, self.anonymous, |ctx| self.authenticate(ctx))
    }
}

impl BasicAuth {
    /// Checks the credentials; Some(401) when authentication failed.
    fn authenticate(&self, ctx: &mut PhaseCtx<'_>) -> Result<Option<Exit>, PluginError> {
        let fail = || Ok(Some(unauthorized(UNAUTHORIZED, &self.challenge)));
        let has = |ctx: &PhaseCtx<'_>, h: &str| ctx.req.headers.contains_key(h);
        if !has(ctx, "authorization") && !has(ctx, "proxy-authorization") {
            return fail();
        }
        // Proxy-Authorization first; Authorization is only looked at (and hidden) when that
        // did not name a known user.
        let mut found = self.credentials(ctx, "proxy-authorization");
        let known = |f: &Option<(String, Vec<u8>)>| {
            f.as_ref()
                .and_then(|(user, _)| ctx.snap.consumers.basic.get(user))
                .is_some()
        };
        if !known(&found) {
            found = self.credentials(ctx, "authorization");
            if found.is_none() {
                return fail();
            }
        }
        let Some((user, password)) = found else {
            return fail();
        };
        let Some(&credential) = ctx.snap.consumers.basic.get(&user) else {
            return fail();
        };
        let cred = &ctx.snap.config.credentials[credential];
        let Credential::BasicAuth {
            password: stored, ..
        } = &cred.credential
        else {
            return Err(PluginError(format!(
                "credential {} is not a basic-auth credential",
                cred.id
            )));
        };
        let consumer = &ctx.snap.config.consumers[cred.consumer];
        if !password_matches(stored, &password, &consumer.id) {
            return fail();
        }
        let consumer = cred.consumer;
        ctx.authenticate(consumer, Some(credential))?;
        // Kong identifies basic-auth credentials upstream by their username.
        ctx.set_header("x-credential-identifier", &user)?;
        Ok(None)
    }

    /// `(username, password)` from a `Basic` header; hides the header when configured.
    fn credentials(&self, ctx: &mut PhaseCtx<'_>, header: &str) -> Option<(String, Vec<u8>)> {
        let value = ctx.req.headers.get(header).map(|v| v.as_bytes().to_vec());
        if self.hide_credentials {
            ctx.clear_header(header);
        }
        parse_basic(&value?)
    }
}

/// Parses `Basic base64(user:password)`: the user is non-empty, the password may be empty.
fn parse_basic(value: &[u8]) -> Option<(String, Vec<u8>)> {
    let value = std::str::from_utf8(value).ok()?.trim();
    let (scheme, rest) = value.split_at_checked(5)?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let encoded = rest.trim();
    let engine = base64::engine::GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        base64::engine::GeneralPurposeConfig::new()
            .with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent),
    );
    let decoded = engine.decode(encoded).ok()?;
    let colon = decoded.iter().position(|&b| b == b':')?;
    if colon == 0 {
        return None;
    }
    let user = String::from_utf8(decoded[..colon].to_vec()).ok()?;
    Some((user, decoded[colon + 1..].to_vec()))
}

/// Whether `given` matches the stored password. A stored value of 40 hex digits is taken as
/// Kong's hash (`sha1_hex(password .. consumer_id)`, what a decK dump holds) and only the hash
/// of `given` is compared, so knowing the stored hash is not enough to log in; any other
/// stored value is the password itself. Comparisons run in constant time.
fn password_matches(stored: &str, given: &[u8], consumer_id: &str) -> bool {
    let is_hash = stored.len() == 40 && stored.bytes().all(|b| b.is_ascii_hexdigit());
    if !is_hash {
        return auth::constant_time_eq(stored.as_bytes(), given);
    }
    let mut hasher = Sha1::new();
    hasher.update(given);
    hasher.update(consumer_id.as_bytes());
    let hashed: String = hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    auth::constant_time_eq(stored.to_ascii_lowercase().as_bytes(), hashed.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_basic_headers() {
        let enc = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
        let header = format!("Basic {}", enc("alice:open:sesame"));
        assert_eq!(
            parse_basic(header.as_bytes()),
            Some(("alice".into(), b"open:sesame".to_vec()))
        );
        let empty = format!("basic   {}  ", enc("bob:"));
        assert_eq!(
            parse_basic(empty.as_bytes()),
            Some(("bob".into(), Vec::new()))
        );
        assert_eq!(
            parse_basic(format!("Basic {}", enc(":pw")).as_bytes()),
            None
        );
        assert_eq!(
            parse_basic(format!("Basic {}", enc("nocolon")).as_bytes()),
            None
        );
        assert_eq!(parse_basic(b"Bearer abc"), None);
        assert_eq!(parse_basic(b"Basic !!!"), None);
    }

    #[test]
    fn accepts_plain_and_kong_hashed_passwords() {
        // sha1("secret" .. "c1")
        let mut h = Sha1::new();
        h.update(b"secretc1");
        let hex: String = h.finalize().iter().map(|b| format!("{b:02x}")).collect();
        assert!(password_matches("secret", b"secret", "c1"));
        assert!(password_matches(&hex, b"secret", "c1"));
        assert!(!password_matches(&hex, b"secret", "c2"));
        assert!(!password_matches("secret", b"Secret", "c1"));
        // The stored hash itself is not a password.
        assert!(!password_matches(&hex, hex.as_bytes(), "c1"));
    }
}
