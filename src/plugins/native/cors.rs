//! `cors`: answers CORS preflight requests and adds the Access-Control-* headers to
//! responses (Kong's plugin hub: origins, methods, headers, exposed_headers, credentials,
//! max_age, preflight_continue, private_network, allow_origin_absent).

use std::sync::Arc;

use regex::Regex;
use serde::Deserialize;

use super::{BuildCtx, Bundled};
use crate::plugins::{Exit, Flow, Instance, Phase, PhaseCtx, PluginError};

/// The plugin.
pub(super) static PLUGIN: Bundled = Bundled {
    name: "cors",
    priority: 2000,
    schema: SCHEMA,
    build,
};

const SCHEMA: &str = r#"
local typedefs = require "kong.db.schema.typedefs"
local METHODS = { "GET", "HEAD", "PUT", "PATCH", "POST", "DELETE", "OPTIONS", "TRACE", "CONNECT" }
return {
  name = "cors",
  fields = {
    { consumer = typedefs.no_consumer },
    { protocols = typedefs.protocols_http },
    { config = { type = "record", fields = {
      { origins = { type = "array", elements = { type = "string" } } },
      { headers = { type = "array", elements = { type = "string" } } },
      { exposed_headers = { type = "array", elements = { type = "string" } } },
      { methods = { type = "array", default = METHODS, elements = { type = "string", one_of = METHODS } } },
      { max_age = { type = "number" } },
      { credentials = { type = "boolean", required = true, default = false } },
      { private_network = { type = "boolean", required = true, default = false } },
      { preflight_continue = { type = "boolean", required = true, default = false } },
      { allow_origin_absent = { type = "boolean", required = true, default = true } },
    } } },
  },
}
"#;

#[derive(Debug, Deserialize)]
struct Conf {
    #[serde(default)]
    origins: Option<Vec<String>>,
    #[serde(default)]
    headers: Option<Vec<String>>,
    #[serde(default)]
    exposed_headers: Option<Vec<String>>,
    #[serde(default)]
    methods: Option<Vec<String>>,
    #[serde(default)]
    max_age: Option<f64>,
    credentials: bool,
    private_network: bool,
    preflight_continue: bool,
    allow_origin_absent: bool,
}

/// A configured origin, ready to compare with a request's Origin.
enum Allowed {
    /// A plain origin, normalized (`scheme://host[:port]`, default port dropped).
    Exact(String),
    /// A regex, anchored at both ends; matched on the host alone when it has no `:`.
    Regex { re: Regex, by_host: bool },
}

/// How the instance answers `Access-Control-Allow-Origin`.
enum Origins {
    /// `*` (no origins, or only `*`).
    Any,
    /// One plain origin, always sent as is.
    Fixed(String),
    /// The request's origin when it matches one of these (`*` among them allows all).
    List { any: bool, allowed: Vec<Allowed> },
}

struct Cors {
    origins: Origins,
    allow_headers: Option<String>,
    expose_headers: Option<String>,
    methods: String,
    max_age: Option<String>,
    credentials: bool,
    private_network: bool,
    preflight_continue: bool,
    allow_origin_absent: bool,
}

/// Splits an origin into `(normalized origin, host)`; a value without `scheme://` is kept as
/// is for both.
fn normalize(origin: &str) -> (String, String) {
    let Some((scheme, rest)) = origin.split_once("://") else {
        return (origin.to_string(), origin.to_string());
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let authority = authority.rsplit('@').next().unwrap_or("");
    let (host, port) = match authority.rsplit_once(':') {
        Some((h, p)) if !h.ends_with(']') || authority.starts_with('[') => {
            if p.chars().all(|c| c.is_ascii_digit()) && !h.is_empty() {
                (h, Some(p))
            } else {
                (authority, None)
            }
        }
        _ => (authority, None),
    };
    let scheme = scheme.to_ascii_lowercase();
    let port =
        port.filter(|p| !((scheme == "http" && *p == "80") || (scheme == "https" && *p == "443")));
    let host_lc = host.to_ascii_lowercase();
    let domain = match port {
        Some(p) => format!("{scheme}://{host_lc}:{p}"),
        None => format!("{scheme}://{host_lc}"),
    };
    (domain, host_lc)
}

fn plain(origin: &str) -> bool {
    origin
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | ':' | '/' | '-'))
}

fn build(ctx: &BuildCtx<'_>) -> Result<Arc<dyn Instance>, String> {
    let c: Conf = ctx.decode()?;
    let list = c.origins.clone().unwrap_or_default();
    let origins = if list.is_empty() || (list.len() == 1 && list[0] == "*") {
        Origins::Any
    } else if list.len() == 1 && plain(&list[0]) {
        Origins::Fixed(list[0].clone())
    } else {
        let mut allowed = Vec::new();
        for (i, o) in list.iter().enumerate() {
            if o == "*" {
                continue;
            }
            if plain(o) {
                allowed.push(Allowed::Exact(normalize(o).0));
                continue;
            }
            // Kong anchors regexes at the end and drops a leading `^` (it matches anchored).
            let body = o.strip_prefix('^').unwrap_or(o);
            let body = body.strip_suffix('$').unwrap_or(body);
            let re = Regex::new(&format!("^(?:{body})$")).map_err(|e| {
                let reason = e.to_string();
                let reason = reason
                    .lines()
                    .last()
                    .unwrap_or("")
                    .trim_start_matches("error: ");
                format!("origins[{}]: '{o}' is not a valid regex ({reason})", i + 1)
            })?;
            allowed.push(Allowed::Regex {
                re,
                by_host: !o.contains(':'),
            });
        }
        Origins::List {
            any: list.iter().any(|o| o == "*"),
            allowed,
        }
    };
    let joined =
        |l: &Option<Vec<String>>| l.as_ref().filter(|l| !l.is_empty()).map(|l| l.join(","));
    let max_age = c.max_age.map(|n| {
        if n.fract() == 0.0 && n.abs() < 1e15 {
            format!("{}", n as i64)
        } else {
            n.to_string()
        }
    });
    Ok(Arc::new(Cors {
        origins,
        allow_headers: joined(&c.headers),
        expose_headers: joined(&c.exposed_headers),
        methods: c.methods.as_ref().map_or_else(
            || "GET,HEAD,PUT,PATCH,POST,DELETE,OPTIONS,TRACE,CONNECT".to_string(),
            |m| m.join(","),
        ),
        max_age,
        credentials: c.credentials,
        private_network: c.private_network,
        preflight_continue: c.preflight_continue,
        allow_origin_absent: c.allow_origin_absent,
    }))
}

/// The headers one response gets: `(name, Some(value))` sets, `(name, None)` removes.
type Headers = Vec<(&'static str, Option<String>)>;

impl Cors {
    /// Access-Control-Allow-Origin (and Vary) for a request from `origin`; returns whether
    /// all origins are allowed.
    fn origin_headers(&self, origin: Option<&str>, out: &mut Headers) -> bool {
        let (any, allowed) = match &self.origins {
            Origins::Any => {
                out.push(("access-control-allow-origin", Some("*".into())));
                return true;
            }
            Origins::Fixed(o) => {
                out.push(("vary", Some("Origin".into())));
                out.push(("access-control-allow-origin", Some(o.clone())));
                return false;
            }
            Origins::List { any, allowed } => (*any, allowed),
        };
        out.push(("vary", Some("Origin".into())));
        if let Some(origin) = origin {
            if any {
                out.push(("access-control-allow-origin", Some("*".into())));
                return true;
            }
            let (domain, host) = normalize(origin);
            let found = allowed.iter().any(|a| match a {
                Allowed::Exact(d) => *d == domain,
                Allowed::Regex { re, by_host } => {
                    re.is_match(if *by_host { &host } else { &domain })
                }
            });
            if found {
                out.push(("access-control-allow-origin", Some(domain)));
                return false;
            }
        }
        out.push(("access-control-allow-origin", None));
        false
    }

    /// The origin and credentials headers of a request from `origin`.
    fn common_headers(&self, origin: Option<&str>) -> Headers {
        let mut out = Vec::new();
        let all = self.origin_headers(origin, &mut out);
        if self.credentials {
            match (all, origin) {
                (false, _) => out.push(("access-control-allow-credentials", Some("true".into()))),
                // `*` cannot go with credentials: echo the origin instead.
                (true, Some(o)) => {
                    out.push(("vary", Some("Origin".into())));
                    out.push(("access-control-allow-origin", Some(o.to_string())));
                    out.push(("access-control-allow-credentials", Some("true".into())));
                }
                (true, None) => {}
            }
        }
        out
    }
}

/// The request's Origin, when it has a non-empty one.
fn origin<'a>(ctx: &'a PhaseCtx<'_>) -> Option<&'a str> {
    ctx.header("origin").filter(|o| !o.is_empty())
}

/// Whether the request is a CORS preflight (these never get the response headers: the
/// preflight answer has its own, or the upstream answers it with preflight_continue).
fn is_preflight(ctx: &PhaseCtx<'_>) -> bool {
    ctx.req.method == http::Method::OPTIONS
        && origin(ctx).is_some()
        && ctx
            .req
            .headers
            .contains_key("access-control-request-method")
}

impl Instance for Cors {
    fn phases(&self) -> &[Phase] {
        &[Phase::Access, Phase::HeaderFilter]
    }

    fn access(&self, ctx: &mut PhaseCtx<'_>) -> Result<Flow, PluginError> {
        if !is_preflight(ctx) || self.preflight_continue {
            return Ok(Flow::Continue);
        }
        let mut headers = self.common_headers(origin(ctx));
        let allow_headers = self.allow_headers.clone().or_else(|| {
            ctx.header("access-control-request-headers")
                .map(str::to_string)
        });
        headers.push(("access-control-allow-headers", allow_headers));
        headers.push(("access-control-allow-methods", Some(self.methods.clone())));
        if let Some(age) = &self.max_age {
            headers.push(("access-control-max-age", Some(age.clone())));
        }
        if self.private_network
            && ctx.header("access-control-request-private-network") == Some("true")
        {
            headers.push(("access-control-allow-private-network", Some("true".into())));
        }
        // Later settings of a name replace earlier ones; removals just leave it out.
        let mut exit = Exit {
            status: 200,
            headers: Vec::new(),
            body: bytes::Bytes::new(),
        };
        for (name, value) in headers {
            exit.headers.retain(|(n, _)| n != name);
            if let Some(v) = value {
                exit.headers.push((name.to_string(), v));
            }
        }
        Ok(Flow::Exit(exit))
    }

    fn header_filter(&self, ctx: &mut PhaseCtx<'_>) -> Result<(), PluginError> {
        if is_preflight(ctx) {
            return Ok(());
        }
        let origin = origin(ctx).map(str::to_string);
        if origin.is_none() && !self.allow_origin_absent {
            return Ok(());
        }
        let mut headers = self.common_headers(origin.as_deref());
        if let Some(exposed) = &self.expose_headers {
            headers.push(("access-control-expose-headers", Some(exposed.clone())));
        }
        let Some(resp) = ctx.resp.as_deref_mut() else {
            return Ok(());
        };
        for (name, value) in headers {
            let result = match (name, value) {
                // Vary is added to (the upstream may vary on more), once.
                ("vary", Some(v)) => {
                    let present = resp.headers.get_all("vary").iter().any(|h| {
                        h.to_str()
                            .is_ok_and(|h| h.split(',').any(|t| t.trim().eq_ignore_ascii_case(&v)))
                    });
                    if present {
                        Ok(())
                    } else {
                        resp.append_header(name, v).map(|_| ())
                    }
                }
                (_, Some(v)) => resp.insert_header(name, v),
                (_, None) => {
                    resp.remove_header(name);
                    Ok(())
                }
            };
            result.map_err(|e| PluginError(format!("invalid header {name}: {e}")))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_normalize_like_kong() {
        assert_eq!(normalize("http://Example.com:80").0, "http://example.com");
        assert_eq!(normalize("https://a.test:8443/x").0, "https://a.test:8443");
        assert_eq!(normalize("https://a.test:443").1, "a.test");
        assert_eq!(normalize("null").0, "null");
    }
}
