//! Pieces shared by the authentication plugins (key-auth, basic-auth): the anonymous consumer,
//! 401 answers with `WWW-Authenticate`, constant-time comparison, and editing
//! `name=value&...` strings without re-encoding the arguments that stay.

use crate::config::model::Config;
use crate::plugins::{Exit, Flow, PhaseCtx, PluginError};

/// Resolves a plugin's `anonymous` setting (a consumer id or username) when the instance is
/// built. A consumer that does not exist is a configuration error here (Kong answers every
/// unauthenticated request with a 500 instead).
pub(super) fn anonymous(config: &Config, anonymous: Option<&str>) -> Result<Option<usize>, String> {
    let Some(wanted) = anonymous.filter(|a| !a.is_empty()) else {
        return Ok(None);
    };
    let by_id = config.consumers.iter().position(|c| c.id == wanted);
    let by_name = || {
        config
            .consumers
            .iter()
            .position(|c| c.username.as_deref() == Some(wanted))
    };
    match by_id.or_else(by_name) {
        Some(i) => Ok(Some(i)),
        None => Err(format!(
            "anonymous consumer {wanted:?} does not exist (`anonymous` takes a consumer id or username)"
        )),
    }
}

/// An auth plugin's access phase around its check (`authenticate`: Some(401) on failure).
/// With `anonymous`, Kong's "logical OR": a request another auth plugin already
/// authenticated (with a credential) is left alone, and a failed one continues as the
/// anonymous consumer; without it, a failure answers the 401.
pub(super) fn access(
    ctx: &mut PhaseCtx<'_>,
    anonymous: Option<usize>,
    authenticate: impl FnOnce(&mut PhaseCtx<'_>) -> Result<Option<Exit>, PluginError>,
) -> Result<Flow, PluginError> {
    match anonymous {
        Some(_) if ctx.state.credential.is_some() => Ok(Flow::Continue),
        Some(consumer) => {
            if authenticate(ctx)?.is_some() {
                ctx.authenticate(consumer, None)?;
            }
            Ok(Flow::Continue)
        }
        None => Ok(match authenticate(ctx)? {
            Some(exit) => Flow::Exit(exit),
            None => Flow::Continue,
        }),
    }
}

/// A 401 with Kong's `{"message": ...}` body and a `WWW-Authenticate` challenge.
pub(super) fn unauthorized(message: &str, challenge: &str) -> Exit {
    let mut exit = Exit::message(401, message);
    exit.headers
        .push(("www-authenticate".into(), challenge.to_string()));
    exit
}

/// Compares two secrets in time that depends only on their lengths.
pub(super) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let mut diff = u8::from(a.len() != b.len());
    for i in 0..a.len().max(b.len()) {
        let x = a.get(i).copied().unwrap_or(0);
        let y = b.get(i).copied().unwrap_or(0);
        diff |= x ^ y;
    }
    diff == 0
}

/// The decoded values of argument `name` in a `name=value&...` string (query or form body).
pub(super) fn args_named(raw: &str, name: &str) -> Vec<String> {
    form_urlencoded::parse(raw.as_bytes())
        .filter(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
        .collect()
}

/// `raw` without the arguments called `name`; the others are kept byte for byte. None when
/// there was no such argument.
pub(super) fn without_arg(raw: &str, name: &str) -> Option<String> {
    let mut removed = false;
    let kept: Vec<&str> = raw
        .split('&')
        .filter(|pair| {
            let key = pair.split('=').next().unwrap_or("");
            let decoded = form_urlencoded::parse(key.as_bytes())
                .next()
                .map(|(k, _)| k.into_owned())
                .unwrap_or_default();
            let drop = !pair.is_empty() && decoded == name;
            removed |= drop;
            !drop
        })
        .collect();
    removed.then(|| kept.join("&"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constant_time_eq_compares_bytes_and_lengths() {
        assert!(constant_time_eq(b"secret", b"secret"));
        assert!(!constant_time_eq(b"secret", b"secreT"));
        assert!(!constant_time_eq(b"secret", b"secret1"));
        assert!(!constant_time_eq(b"", b"x"));
        assert!(constant_time_eq(b"", b""));
    }

    #[test]
    fn args_are_decoded_and_removed_without_touching_the_others() {
        assert_eq!(
            args_named("a=1&apikey=k%20y&apikey=2", "apikey"),
            ["k y", "2"]
        );
        assert_eq!(
            without_arg("x=%2F&apikey=k&api%6Bey=j&y=a+b", "apikey").as_deref(),
            Some("x=%2F&y=a+b")
        );
        assert_eq!(without_arg("x=1", "apikey"), None);
        assert_eq!(without_arg("apikey", "apikey").as_deref(), Some(""));
    }
}
