//! The upstream path: how service path, matched route path and request path combine
//! (Kong's `get_upstream_uri_v0` in `kong/router/utils.lua`, and the v1 branch of
//! `kong/router/traditional.lua`).

use super::PathHandling;

/// Drops a leading `.`/`..` segment left over after stripping a prefix
/// (`sanitize_uri_postfix`).
fn sanitize_postfix(postfix: &str) -> &str {
    if postfix == "." || postfix == ".." {
        return "";
    }
    if let Some(rest) = postfix.strip_prefix("./") {
        return rest;
    }
    if let Some(rest) = postfix.strip_prefix("../") {
        return rest;
    }
    postfix
}

/// Computes the upstream path.
///
/// * `req_path`: the (normalized) request path;
/// * `prefix`: the stripped part (Kong's `match_t.prefix`): `Some` only with strip_path and a path match;
/// * `service_path`: the service's path, `/` when unset;
/// * `strip_path`, `handling`: the route's settings.
pub(crate) fn upstream_path(
    req_path: &str,
    prefix: Option<&str>,
    service_path: &str,
    strip_path: bool,
    handling: PathHandling,
) -> String {
    // `req_uri:sub(#request_prefix + 1)`, where the prefix defaults to "/".
    let cut = prefix.map_or(1, str::len);
    let postfix = sanitize_postfix(req_path.get(cut..).unwrap_or(""));
    let base = service_path;
    match handling {
        PathHandling::V0 => v0(req_path, postfix, base, strip_path),
        PathHandling::V1 => {
            if strip_path {
                if base.ends_with('/') && postfix.starts_with('/') {
                    concat(&base[..base.len() - 1], postfix)
                } else {
                    concat(base, postfix)
                }
            } else {
                concat(base, req_path.get(1..).unwrap_or(""))
            }
        }
    }
}

fn concat(a: &str, b: &str) -> String {
    let mut s = String::with_capacity(a.len() + b.len() + 1);
    s.push_str(a);
    s.push_str(b);
    s
}

fn v0(req_path: &str, postfix: &str, base: &str, strip_path: bool) -> String {
    if let Some(base_no_slash) = base.strip_suffix('/') {
        if !strip_path {
            // Keep the incoming path, prefixed with the service path (skip its first slash).
            return concat(base, req_path.get(1..).unwrap_or(""));
        }
        if postfix.is_empty() {
            if base == "/" || req_path.ends_with('/') {
                return base.to_owned();
            }
            return base_no_slash.to_owned();
        }
        if postfix.starts_with('/') {
            // Avoid a double slash.
            return concat(base_no_slash, postfix);
        }
        return concat(base, postfix);
    }

    if strip_path {
        if postfix.is_empty() {
            if req_path.len() > 1 && req_path.ends_with('/') {
                return concat(base, "/");
            }
            return base.to_owned();
        }
        if postfix.starts_with('/') {
            return concat(base, postfix);
        }
        let mut s = concat(base, "/");
        s.push_str(postfix);
        return s;
    }

    if req_path == "/" {
        return base.to_owned();
    }
    concat(base, req_path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v0_vectors() {
        let v =
            |req, prefix, base, strip| upstream_path(req, prefix, base, strip, PathHandling::V0);
        assert_eq!(
            v("/route/req", Some("/route"), "/service", true),
            "/service/req"
        );
        assert_eq!(
            v("/routereq", Some("/route"), "/service/", true),
            "/service/req"
        );
        assert_eq!(v("/route", Some("/route"), "/service/", true), "/service");
        assert_eq!(v("/route/", Some("/route"), "/service", true), "/service/");
        assert_eq!(
            v("/route./req", Some("/route"), "/service", true),
            "/service/req"
        );
        assert_eq!(
            v("/route/req", None, "/service", false),
            "/service/route/req"
        );
        assert_eq!(v("/", None, "/service", false), "/service");
        assert_eq!(v("/", None, "/", true), "/");
    }

    #[test]
    fn v1_vectors() {
        let v =
            |req, prefix, base, strip| upstream_path(req, prefix, base, strip, PathHandling::V1);
        assert_eq!(
            v("/route/req", Some("/route"), "/service", true),
            "/service/req"
        );
        assert_eq!(
            v("/routereq", Some("/route"), "/service", true),
            "/servicereq"
        );
        assert_eq!(
            v("/route/req", Some("/route"), "/service/", true),
            "/service/req"
        );
        assert_eq!(v("/route", Some("/route"), "/service/", true), "/service/");
        assert_eq!(
            v("/route/req", None, "/service", false),
            "/serviceroute/req"
        );
        assert_eq!(
            v("/route/req", None, "/service/", false),
            "/service/route/req"
        );
    }
}
