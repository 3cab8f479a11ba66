//! `key-auth`: authenticates a consumer by an API key found in a header, the query string or
//! the body (Kong's plugin hub: key_names, key_in_header/query/body, hide_credentials,
//! anonymous, run_on_preflight, realm).

use std::sync::Arc;

use bytes::Bytes;
use serde::Deserialize;

use super::auth::{self, unauthorized};
use super::{BuildCtx, Bundled};
use crate::plugins::{Exit, Flow, Instance, Phase, PhaseCtx, PluginError};

/// The plugin.
pub(super) static PLUGIN: Bundled = Bundled {
    name: "key-auth",
    priority: 1250,
    schema: SCHEMA,
    build,
};

const SCHEMA: &str = r#"
local typedefs = require "kong.db.schema.typedefs"
return {
  name = "key-auth",
  fields = {
    { consumer = typedefs.no_consumer },
    { protocols = typedefs.protocols_http },
    { config = { type = "record", fields = {
      { key_names = { type = "array", required = true, elements = typedefs.header_name, default = { "apikey" } } },
      { hide_credentials = { type = "boolean", required = true, default = false } },
      { anonymous = { type = "string" } },
      { key_in_header = { type = "boolean", required = true, default = true } },
      { key_in_query = { type = "boolean", required = true, default = true } },
      { key_in_body = { type = "boolean", required = true, default = false } },
      { run_on_preflight = { type = "boolean", required = true, default = true } },
      { realm = { type = "string", required = false } },
    } } },
  },
}
"#;

const NO_KEY: &str = "No API key found in request";
const DUPLICATE: &str = "Duplicate API key found";
const INVALID: &str = "Unauthorized";

#[derive(Debug, Deserialize)]
struct Conf {
    key_names: Vec<String>,
    hide_credentials: bool,
    anonymous: Option<String>,
    key_in_header: bool,
    key_in_query: bool,
    key_in_body: bool,
    run_on_preflight: bool,
    realm: Option<String>,
}

struct KeyAuth {
    conf: Conf,
    anonymous: Option<usize>,
    challenge: String,
}

fn build(ctx: &BuildCtx<'_>) -> Result<Arc<dyn Instance>, String> {
    let conf: Conf = ctx.decode()?;
    let anonymous = auth::anonymous(ctx.config, conf.anonymous.as_deref())?;
    let challenge = match &conf.realm {
        Some(realm) => format!("Key realm=\"{realm}\""),
        None => "Key".to_string(),
    };
    Ok(Arc::new(KeyAuth {
        conf,
        anonymous,
        challenge,
    }))
}

/// What the search for a key found under one name.
enum Found {
    Key(String),
    Duplicate,
    Nothing,
}

impl Found {
    fn from_values(mut values: Vec<String>) -> Found {
        match values.len() {
            0 => Found::Nothing,
            1 => Found::Key(values.pop().unwrap_or_default()),
            _ => Found::Duplicate,
        }
    }
}

impl Instance for KeyAuth {
    fn phases(&self) -> &[Phase] {
        &[Phase::Access]
    }

    fn may_read_body(&self) -> bool {
        self.conf.key_in_body
    }

    fn access(&self, ctx: &mut PhaseCtx<'_>) -> Result<Flow, PluginError> {
        if !self.conf.run_on_preflight && ctx.req.method == http::Method::OPTIONS {
            return Ok(Flow::Continue);
        }
        auth::access(ctx, self.anonymous, |ctx| self.authenticate(ctx))
    }
}

impl KeyAuth {
    /// Finds and checks the key; Some(401) when authentication failed.
    fn authenticate(&self, ctx: &mut PhaseCtx<'_>) -> Result<Option<Exit>, PluginError> {
        let c = &self.conf;
        let mut body = None;
        let mut key = None;
        for name in &c.key_names {
            let mut found = Found::Nothing;
            if c.key_in_header {
                found = Found::from_values(header_values(ctx, name));
            }
            if matches!(found, Found::Nothing) && c.key_in_query {
                found = Found::from_values(auth::args_named(ctx.raw_query(), name));
            }
            if matches!(found, Found::Nothing) && c.key_in_body {
                found = body.get_or_insert_with(|| Body::parse(ctx)).find(name);
            }
            match found {
                Found::Nothing => continue,
                Found::Duplicate => return Ok(Some(unauthorized(DUPLICATE, &self.challenge))),
                Found::Key(k) => {
                    if c.hide_credentials {
                        self.hide(ctx, name, &mut body)?;
                    }
                    key = Some(k);
                    break;
                }
            }
        }
        let Some(key) = key.filter(|k| !k.is_empty()) else {
            return Ok(Some(unauthorized(NO_KEY, &self.challenge)));
        };
        let Some(&credential) = ctx.snap.consumers.keys.get(&key) else {
            return Ok(Some(unauthorized(INVALID, &self.challenge)));
        };
        let consumer = ctx.snap.config.credentials[credential].consumer;
        ctx.authenticate(consumer, Some(credential))?;
        Ok(None)
    }

    /// Removes the key called `name` from everything the upstream would see.
    fn hide(
        &self,
        ctx: &mut PhaseCtx<'_>,
        name: &str,
        body: &mut Option<Body>,
    ) -> Result<(), PluginError> {
        if let Some(query) = auth::without_arg(ctx.raw_query(), name) {
            ctx.state.upstream.query = Some(query);
        }
        ctx.clear_header(name);
        ctx.clear_header(&name.replace('_', "-"));
        if self.conf.key_in_body {
            if let Some(replacement) = body.get_or_insert_with(|| Body::parse(ctx)).without(name) {
                ctx.state.upstream.body = Some(replacement);
            }
        }
        Ok(())
    }
}

/// The values of header `name`; as in Kong (nginx), `_` in the name also matches `-`.
fn header_values(ctx: &PhaseCtx<'_>, name: &str) -> Vec<String> {
    let hyphenated = name.replace('_', "-");
    let mut names = vec![name];
    if hyphenated != name {
        names.push(&hyphenated);
    }
    names
        .into_iter()
        .flat_map(|n| ctx.req.headers.get_all(n).iter())
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
        .collect()
}

/// The request body as `kong.request.get_body()` parses it.
enum Body {
    Form(String),
    Json(serde_json::Map<String, serde_json::Value>),
    Multipart(Bytes, String),
    /// Absent, too large to read, unparsable or of another type: no arguments.
    Empty,
}

impl Body {
    fn parse(ctx: &PhaseCtx<'_>) -> Body {
        let Some(raw) = ctx.state.body.clone().filter(|b| !b.is_empty()) else {
            return Body::Empty;
        };
        let ctype = ctx
            .header("content-type")
            .unwrap_or("")
            .to_ascii_lowercase();
        if ctype.contains("application/x-www-form-urlencoded") {
            return match std::str::from_utf8(&raw) {
                Ok(s) => Body::Form(s.to_string()),
                Err(_) => Body::Empty,
            };
        }
        if ctype.contains("application/json") {
            return match serde_json::from_slice(&raw) {
                Ok(serde_json::Value::Object(map)) => Body::Json(map),
                _ => Body::Empty,
            };
        }
        if ctype.contains("multipart/form-data") {
            if let Some(boundary) = multipart::boundary(ctx.header("content-type").unwrap_or("")) {
                return Body::Multipart(raw, boundary);
            }
        }
        Body::Empty
    }

    fn find(&self, name: &str) -> Found {
        match self {
            Body::Form(raw) => Found::from_values(auth::args_named(raw, name)),
            Body::Json(map) => match map.get(name) {
                Some(serde_json::Value::String(s)) => Found::Key(s.clone()),
                Some(serde_json::Value::Array(_) | serde_json::Value::Object(_)) => {
                    Found::Duplicate
                }
                _ => Found::Nothing,
            },
            Body::Multipart(raw, boundary) => Found::from_values(
                multipart::parts(raw, boundary)
                    .into_iter()
                    .filter(|p| p.name == name)
                    .map(|p| String::from_utf8_lossy(&raw[p.value]).into_owned())
                    .collect(),
            ),
            Body::Empty => Found::Nothing,
        }
    }

    /// The body without field `name`; None when it had none.
    fn without(&self, name: &str) -> Option<Bytes> {
        match self {
            Body::Form(raw) => auth::without_arg(raw, name).map(Bytes::from),
            Body::Json(map) => {
                let mut map = map.clone();
                map.remove(name)?;
                Some(Bytes::from(serde_json::Value::Object(map).to_string()))
            }
            Body::Multipart(raw, boundary) => multipart::without(raw, boundary, name),
            Body::Empty => None,
        }
    }
}

/// Just enough of multipart/form-data to find and drop named fields.
mod multipart {
    use std::ops::Range;

    use bytes::Bytes;

    /// One part: its byte range (delimiter line to the next delimiter), name and value.
    pub(super) struct Part {
        span: Range<usize>,
        pub(super) name: String,
        pub(super) value: Range<usize>,
    }

    /// The `boundary` parameter of a Content-Type.
    pub(super) fn boundary(content_type: &str) -> Option<String> {
        content_type.split(';').find_map(|param| {
            let (k, v) = param.split_once('=')?;
            k.trim()
                .eq_ignore_ascii_case("boundary")
                .then(|| v.trim().trim_matches('"').to_string())
                .filter(|b| !b.is_empty())
        })
    }

    fn find(hay: &[u8], needle: &[u8], from: usize) -> Option<usize> {
        hay.get(from..)?
            .windows(needle.len())
            .position(|w| w == needle)
            .map(|p| p + from)
    }

    /// The body's parts, in order (a malformed body has none).
    pub(super) fn parts(body: &[u8], boundary: &str) -> Vec<Part> {
        let delim = format!("--{boundary}").into_bytes();
        let mut starts = Vec::new();
        let mut at = 0;
        while let Some(p) = find(body, &delim, at) {
            if p == 0 || body[..p].ends_with(b"\r\n") {
                starts.push(p);
            }
            at = p + delim.len();
        }
        let mut out = Vec::new();
        for pair in starts.windows(2) {
            let (start, next) = (pair[0], pair[1]);
            let content_start = start + delim.len();
            let content_end = next.saturating_sub(2).max(content_start);
            let segment = &body[content_start..content_end];
            let Some(rest) = segment.strip_prefix(b"\r\n") else {
                continue;
            };
            let Some(head_len) = find(rest, b"\r\n\r\n", 0) else {
                continue;
            };
            let head = String::from_utf8_lossy(&rest[..head_len]);
            let Some(name) = disposition_name(&head) else {
                continue;
            };
            let value_start = content_start + 2 + head_len + 4;
            out.push(Part {
                span: start..next,
                name,
                value: value_start..content_end.max(value_start),
            });
        }
        out
    }

    fn disposition_name(head: &str) -> Option<String> {
        let line = head.lines().find(|l| {
            l.split(':')
                .next()
                .is_some_and(|n| n.trim().eq_ignore_ascii_case("content-disposition"))
        })?;
        line.split(';').find_map(|param| {
            let (k, v) = param.split_once('=')?;
            (k.trim() == "name").then(|| v.trim().trim_matches('"').to_string())
        })
    }

    /// The body without the parts called `name`; None when there were none.
    pub(super) fn without(body: &[u8], boundary: &str, name: &str) -> Option<Bytes> {
        let drop: Vec<Range<usize>> = parts(body, boundary)
            .into_iter()
            .filter(|p| p.name == name)
            .map(|p| p.span)
            .collect();
        if drop.is_empty() {
            return None;
        }
        let mut out = Vec::with_capacity(body.len());
        let mut at = 0;
        for span in drop {
            out.extend_from_slice(&body[at..span.start]);
            at = span.end;
        }
        out.extend_from_slice(&body[at..]);
        Some(Bytes::from(out))
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        const BODY: &[u8] = b"--XyZ\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\none\r\n--XyZ\r\ncontent-disposition: form-data; name=\"apikey\"\r\n\r\nsecret\r\n--XyZ--\r\n";

        #[test]
        fn finds_and_drops_named_parts() {
            assert_eq!(
                boundary("multipart/form-data; boundary=\"XyZ\"").as_deref(),
                Some("XyZ")
            );
            let parts = parts(BODY, "XyZ");
            assert_eq!(parts.len(), 2);
            assert_eq!(parts[1].name, "apikey");
            assert_eq!(&BODY[parts[1].value.clone()], b"secret");
            let rest = without(BODY, "XyZ", "apikey").unwrap();
            assert_eq!(
                &rest[..],
                &b"--XyZ\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\none\r\n--XyZ--\r\n"[..]
            );
            assert!(without(BODY, "XyZ", "nope").is_none());
        }
    }
}
