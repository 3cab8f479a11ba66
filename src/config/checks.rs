//! Field rules of Kong's schemas that do not depend on other entities: names, hosts, paths,
//! URLs, IPs. Each returns `Err(message)` saying what was expected.

use std::net::IpAddr;

/// Kong's `utf8_name`: letters, digits and `.-_~`.
pub fn name(s: &str) -> Result<(), String> {
    if s.is_empty() {
        return Err("expected a non-empty name".into());
    }
    if let Some(c) = s
        .chars()
        .find(|c| !(c.is_alphanumeric() || matches!(c, '.' | '-' | '_' | '~')))
    {
        return Err(format!(
            "invalid name {s:?}: the character {c:?} is not allowed (use letters, digits, '.', '-', '_', '~')"
        ));
    }
    Ok(())
}

/// A host name or IP address (no port).
pub fn hostname(s: &str) -> Result<(), String> {
    if s.is_empty() {
        return Err("expected a host name or IP address, found an empty string".into());
    }
    if s.parse::<IpAddr>().is_ok() {
        return Ok(());
    }
    if let Some(inner) = s.strip_prefix('[').and_then(|r| r.strip_suffix(']')) {
        return inner
            .parse::<std::net::Ipv6Addr>()
            .map(|_| ())
            .map_err(|_| format!("invalid IPv6 address {s:?}"));
    }
    if s.len() > 253 {
        return Err(format!("invalid host {s:?}: longer than 253 characters"));
    }
    for label in s.split('.') {
        if label.is_empty()
            || label.len() > 63
            || !label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err(format!(
                "invalid host {s:?}: expected a host name or IP address"
            ));
        }
    }
    Ok(())
}

/// A route host: `example.com`, `*.example.com`, `example.*`, optionally with `:port`.
pub fn route_host(s: &str) -> Result<(), String> {
    let (host, port) = split_host_port(s);
    if let Some(port) = port {
        parse_port(port).map_err(|e| format!("invalid host {s:?}: {e}"))?;
    }
    let stars = host.matches('*').count();
    if stars > 1 {
        return Err(format!(
            "invalid wildcard host {s:?}: only one wildcard is allowed"
        ));
    }
    if stars == 1 {
        let rest = if let Some(r) = host.strip_prefix("*.") {
            r
        } else if let Some(r) = host.strip_suffix(".*") {
            r
        } else {
            return Err(format!(
                "invalid wildcard host {s:?}: the wildcard must be the whole leftmost or rightmost label"
            ));
        };
        return hostname(rest).map_err(|_| format!("invalid wildcard host {s:?}"));
    }
    hostname(host)
}

/// Splits `host:port` (IPv6 in brackets); a bare IPv6 address has no port.
pub fn split_host_port(s: &str) -> (&str, Option<&str>) {
    if s.starts_with('[') {
        if let Some(end) = s.find(']') {
            let rest = &s[end + 1..];
            return (&s[..=end], rest.strip_prefix(':'));
        }
        return (s, None);
    }
    match s.rfind(':') {
        Some(i) if s[..i].contains(':') => (s, None),
        Some(i) => (&s[..i], Some(&s[i + 1..])),
        None => (s, None),
    }
}

/// `host` as an address when it is an IP literal (IPv6 with or without brackets).
pub fn ip_literal(host: &str) -> Option<IpAddr> {
    host.trim_start_matches('[')
        .trim_end_matches(']')
        .parse()
        .ok()
}

/// A port number 0–65535.
pub fn parse_port(s: &str) -> Result<u16, String> {
    s.parse::<u16>()
        .map_err(|_| format!("invalid port {s:?}: expected an integer between 0 and 65535"))
}

/// A route path: `/prefix` (no empty segment) or `~/regex` (must compile).
pub fn route_path(s: &str) -> Result<(), String> {
    if let Some(re) = s.strip_prefix('~') {
        if !re.starts_with('/') {
            return Err(format!(
                "invalid regex path {s:?}: a regex path starts with \"~/\""
            ));
        }
        // A regex the running snapshot holds was checked when it loaded (parsing 10,000 of
        // them is a fifth of a KIC-sized apply). Otherwise parse only: the router compiles it.
        if crate::router::is_live_route_regex(re) {
            return Ok(());
        }
        return regex_syntax::Parser::new()
            .parse(re)
            .map(|_| ())
            .map_err(|e| format!("invalid regex path {s:?}: {}", one_line(&e.to_string())));
    }
    if !s.starts_with('/') {
        return Err(format!(
            "invalid path {s:?}: expected a path starting with \"/\" (prefix) or \"~/\" (regex)"
        ));
    }
    if s.contains("//") {
        return Err(format!(
            "invalid path {s:?}: must not contain empty segments (\"//\")"
        ));
    }
    if s.contains('?') || s.contains('#') {
        return Err(format!(
            "invalid path {s:?}: must not contain a query or fragment"
        ));
    }
    Ok(())
}

/// A service path: starts with `/`, no query or fragment.
pub fn service_path(s: &str) -> Result<(), String> {
    if !s.starts_with('/') {
        return Err(format!("invalid path {s:?}: should start with \"/\""));
    }
    if s.contains('?') || s.contains('#') {
        return Err(format!(
            "invalid path {s:?}: must not contain a query or fragment"
        ));
    }
    if s.contains("//") {
        return Err(format!(
            "invalid path {s:?}: must not contain empty segments (\"//\")"
        ));
    }
    Ok(())
}

/// The parts of a service `url`.
#[derive(Debug, PartialEq)]
pub struct UrlParts {
    /// Scheme.
    pub protocol: String,
    /// Host (IPv6 in brackets).
    pub host: String,
    /// Explicit port.
    pub port: Option<u16>,
    /// Path, when the URL has one.
    pub path: Option<String>,
}

/// Parses a service `url` (`scheme://host[:port][/path]`).
pub fn service_url(s: &str) -> Result<UrlParts, String> {
    let (scheme, rest) = s
        .split_once("://")
        .ok_or_else(|| format!("invalid url {s:?}: expected scheme://host[:port][/path]"))?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], Some(&rest[i..])),
        None => (rest, None),
    };
    if authority.contains('@') {
        return Err(format!(
            "invalid url {s:?}: credentials in the url are not supported"
        ));
    }
    if rest.contains('?') || rest.contains('#') {
        return Err(format!(
            "invalid url {s:?}: must not contain a query or fragment"
        ));
    }
    let (host, port) = split_host_port(authority);
    hostname(host).map_err(|e| format!("invalid url {s:?}: {e}"))?;
    let port = match port {
        Some(p) => Some(parse_port(p).map_err(|e| format!("invalid url {s:?}: {e}"))?),
        None => None,
    };
    Ok(UrlParts {
        protocol: scheme.to_ascii_lowercase(),
        host: host.to_string(),
        port,
        path: path.map(str::to_string),
    })
}

/// An IP or CIDR (`10.0.0.0/8`), as address and prefix length.
pub fn cidr(s: &str) -> Result<(IpAddr, u8), String> {
    let (ip, len) = match s.split_once('/') {
        Some((ip, len)) => (ip, Some(len)),
        None => (s, None),
    };
    let ip: IpAddr = ip
        .parse()
        .map_err(|_| format!("invalid ip or cidr {s:?}"))?;
    let max = if ip.is_ipv4() { 32 } else { 128 };
    let len = match len {
        Some(l) => l
            .parse::<u8>()
            .ok()
            .filter(|l| *l <= max)
            .ok_or_else(|| format!("invalid cidr {s:?}: prefix length must be 0–{max}"))?,
        None => max,
    };
    Ok((ip, len))
}

/// The deepest nesting of `text`'s brackets: bytes in `open` go one level down, bytes in
/// `close` one up. Inside a string literal opened by one of `quotes` (with backslash escapes)
/// nothing counts; a text in a language with other strings passes no quotes and counts all.
/// Parsers that recurse per level are guarded with it.
pub fn nesting_depth(text: &str, open: &[u8], close: &[u8], quotes: &[u8]) -> usize {
    let (mut depth, mut deepest) = (0usize, 0usize);
    let mut quote: Option<u8> = None;
    let mut escaped = false;
    for &b in text.as_bytes() {
        match quote {
            Some(q) => {
                if escaped {
                    escaped = false;
                } else if b == b'\\' {
                    escaped = true;
                } else if b == q {
                    quote = None;
                }
            }
            None if quotes.contains(&b) => quote = Some(b),
            None if open.contains(&b) => {
                depth += 1;
                deepest = deepest.max(depth);
            }
            None if close.contains(&b) => depth = depth.saturating_sub(1),
            None => {}
        }
    }
    deepest
}

/// The name-based (version 5) UUID of `name`, given in parts, in `namespace`: what
/// `uuid::Uuid::new_v5` computes, with the `sha1` crate's hardware-accelerated digest instead
/// of uuid's portable one (ids of 10,000s of entities are derived on every reload).
pub fn uuid_v5(namespace: &uuid::Uuid, name: &[&[u8]]) -> uuid::Uuid {
    use sha1::Digest;
    let mut h = sha1::Sha1::new();
    h.update(namespace.as_bytes());
    for part in name {
        h.update(part);
    }
    let digest = h.finalize();
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    uuid::Builder::from_sha1_bytes(bytes).into_uuid()
}

/// A UUID as Kong's `id` fields require.
pub fn uuid(s: &str) -> Result<(), String> {
    uuid::Uuid::parse_str(s)
        .map(|_| ())
        .map_err(|_| format!("invalid id {s:?}: expected a UUID"))
}

/// The first line of a multi-line message (regex errors draw a caret diagram).
fn one_line(s: &str) -> String {
    s.lines()
        .map(str::trim)
        .rfind(|l| !l.is_empty())
        .unwrap_or("")
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The derived ids must not change: they are the ids of entities written without one.
    #[test]
    fn uuid_v5_is_uuids_v5() {
        let ns = uuid::Uuid::from_u128(0x6b1c_6f0e_5a2d_4c55_9f1e_2b4f_6d4b_7a10);
        for name in ["", "routes:r1", "plugins:key-auth|a|b|c", &"x".repeat(1000)] {
            let parts: [&[u8]; 2] = [
                &name.as_bytes()[..name.len() / 2],
                &name.as_bytes()[name.len() / 2..],
            ];
            assert_eq!(
                super::uuid_v5(&ns, &parts),
                uuid::Uuid::new_v5(&ns, name.as_bytes())
            );
        }
    }

    #[test]
    fn hosts() {
        assert!(route_host("example.com").is_ok());
        assert!(route_host("*.example.com").is_ok());
        assert!(route_host("example.*").is_ok());
        assert!(route_host("example.com:8080").is_ok());
        assert!(route_host("a.*.com").is_err());
        assert!(route_host("*.*.com").is_err());
        assert!(route_host("ex ample.com").is_err());
        assert!(route_host("example.com:99999").is_err());
    }

    #[test]
    fn paths() {
        assert!(route_path("/").is_ok());
        assert!(route_path("~/users/(?<id>\\d+)$").is_ok());
        assert!(route_path("users").is_err());
        assert!(route_path("/a//b").is_err());
        assert!(route_path("~/(unclosed").is_err());
    }

    #[test]
    fn urls() {
        let u = service_url("https://api.example.com:8443/v1").unwrap();
        assert_eq!(u.protocol, "https");
        assert_eq!(u.host, "api.example.com");
        assert_eq!(u.port, Some(8443));
        assert_eq!(u.path.as_deref(), Some("/v1"));
        let u = service_url("http://[::1]").unwrap();
        assert_eq!(u.host, "[::1]");
        assert_eq!(u.path, None);
        assert!(service_url("example.com").is_err());
    }

    #[test]
    fn cidrs() {
        assert_eq!(cidr("10.0.0.0/8").unwrap().1, 8);
        assert_eq!(cidr("::1").unwrap().1, 128);
        assert!(cidr("10.0.0.0/33").is_err());
    }
}
