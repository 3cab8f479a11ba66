//! Per-route matchers (every field except paths) and Kong's route priority.

use std::net::IpAddr;
use std::sync::Arc;

use http::{HeaderMap, HeaderName};
use regex::Regex;

use super::{Endpoint, Flavor, PathHandling, RouteInput, RouterError, ServiceTarget};

/// How a host or SNI value compares with the request's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum NameMatch {
    /// Equal (ASCII case-insensitive).
    Exact(Box<str>),
    /// `*.example.com`: the request name ends with `.example.com` (stored with the dot).
    Suffix(Box<str>),
    /// `example.*`: the request name starts with `example.` (stored with the dot).
    Prefix(Box<str>),
}

impl NameMatch {
    /// Parses `name` (already lower-cased) as Kong does: a leading `*` is a suffix
    /// wildcard, a trailing `*` a prefix wildcard. Anything else containing `*` is rejected.
    fn parse(name: &str) -> Result<NameMatch, String> {
        if name.is_empty() {
            return Err("empty name".to_owned());
        }
        let m = if let Some(rest) = name.strip_prefix('*') {
            if !rest.starts_with('.') || rest.len() < 2 {
                return Err(format!("invalid wildcard {name:?}: expected `*.domain`"));
            }
            NameMatch::Suffix(rest.into())
        } else if let Some(rest) = name.strip_suffix('*') {
            if !rest.ends_with('.') || rest.len() < 2 {
                return Err(format!("invalid wildcard {name:?}: expected `domain.*`"));
            }
            NameMatch::Prefix(rest.into())
        } else {
            NameMatch::Exact(name.into())
        };
        let inner = match &m {
            NameMatch::Exact(s) | NameMatch::Suffix(s) | NameMatch::Prefix(s) => s,
        };
        if inner.contains('*') {
            return Err(format!(
                "invalid wildcard {name:?}: only one leading or trailing `*` is allowed"
            ));
        }
        Ok(m)
    }

    /// `name` must already be ASCII lower-case.
    pub(crate) fn matches(&self, name: &str) -> bool {
        match self {
            NameMatch::Exact(v) => name == &**v,
            NameMatch::Suffix(v) => name.ends_with(&**v),
            NameMatch::Prefix(v) => name.starts_with(&**v),
        }
    }

    pub(crate) fn is_wildcard(&self) -> bool {
        !matches!(self, NameMatch::Exact(_))
    }
}

/// One entry of `hosts`.
#[derive(Debug, Clone)]
pub(crate) struct HostMatch {
    pub(crate) name: NameMatch,
    /// `host:port`: the request's port (Host header port, else local port) must be this.
    pub(crate) port: Option<u16>,
}

/// Splits `host[:port]` like Kong's `split_host_port` (a suffix that is not a port number
/// stays part of the host). `[v6]:port` literals are split at the bracket.
pub(crate) fn split_host_port(h: &str) -> (&str, Option<u16>) {
    let colon = if h.starts_with('[') {
        match h.find("]:") {
            Some(i) => i + 1,
            None => return (h, None),
        }
    } else {
        match h.find(':') {
            Some(i) => i,
            None => return (h, None),
        }
    };
    let port = &h[colon + 1..];
    if !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) {
        if let Ok(p) = port.parse::<u16>() {
            return (&h[..colon], Some(p));
        }
    }
    (h, None)
}

/// One accepted value of a header condition.
#[derive(Debug, Clone)]
enum HeaderValueMatch {
    /// Compared with the lower-cased request value.
    Exact(Box<str>),
    /// `~*regex`: Kong lower-cases the pattern and the value; we lower-case the pattern
    /// and match case-insensitively, which avoids lower-casing each request value.
    Regex(Regex),
}

/// A `headers` entry: name and alternatives.
#[derive(Debug, Clone)]
pub(crate) struct HeaderMatch {
    /// Lower-case name with `-` (how the header usually arrives).
    name: HeaderName,
    /// The same name with `_` instead of `-`, when different: Kong (nginx) treats
    /// `-` and `_` in header names alike when looking a header up.
    alt_name: Option<HeaderName>,
    values: Vec<HeaderValueMatch>,
}

/// Compares `value` lower-cased with an already lower-case `want`, without allocating.
fn eq_lowercase(value: &str, want: &str) -> bool {
    if value.is_ascii() {
        return value.eq_ignore_ascii_case(want);
    }
    value.chars().flat_map(char::to_lowercase).eq(want.chars())
}

impl HeaderMatch {
    fn value_matches(&self, raw: &http::HeaderValue) -> bool {
        let Ok(value) = std::str::from_utf8(raw.as_bytes()) else {
            return false;
        };
        self.values.iter().any(|m| match m {
            HeaderValueMatch::Exact(want) => eq_lowercase(value, want),
            HeaderValueMatch::Regex(re) => re.is_match(value),
        })
    }

    /// Any value of the header (under either spelling of its name) is accepted.
    fn matches(&self, headers: &HeaderMap) -> bool {
        if headers
            .get_all(&self.name)
            .iter()
            .any(|v| self.value_matches(v))
        {
            return true;
        }
        match &self.alt_name {
            Some(alt) => headers.get_all(alt).iter().any(|v| self.value_matches(v)),
            None => false,
        }
    }
}

/// A `sources`/`destinations` entry.
#[derive(Debug, Clone)]
struct NetMatch {
    net: Option<(IpAddr, u8)>,
    port: Option<u16>,
}

fn in_network(addr: IpAddr, (net, len): (IpAddr, u8)) -> bool {
    match (addr.to_canonical(), net.to_canonical()) {
        (IpAddr::V4(a), IpAddr::V4(n)) => {
            let len = u32::from(len.min(32));
            let mask = u32::MAX.checked_shl(32 - len).unwrap_or(0);
            u32::from(a) & mask == u32::from(n) & mask
        }
        (IpAddr::V6(a), IpAddr::V6(n)) => {
            let len = u32::from(len.min(128));
            let mask = u128::MAX.checked_shl(128 - len).unwrap_or(0);
            u128::from(a) & mask == u128::from(n) & mask
        }
        _ => false,
    }
}

impl NetMatch {
    fn matches(&self, ip: Option<IpAddr>, port: Option<u16>) -> bool {
        if let Some(net) = self.net {
            match ip {
                Some(ip) if in_network(ip, net) => {}
                _ => return false,
            }
        }
        if let Some(want) = self.port {
            if port != Some(want) {
                return false;
            }
        }
        true
    }
}

/// The request, pre-digested once per lookup.
pub(crate) struct ReqCtx<'a> {
    pub(crate) method: &'a str,
    /// Host without port, ASCII lower-cased; None when absent or too long to index.
    pub(crate) host: Option<&'a str>,
    /// Port from the Host header, else the local port.
    pub(crate) port: Option<u16>,
    pub(crate) headers: &'a HeaderMap,
    pub(crate) https: bool,
    pub(crate) sni: Option<&'a str>,
    pub(crate) src: Option<std::net::SocketAddr>,
    pub(crate) dst_ip: Option<IpAddr>,
}

/// Everything about one route except its paths.
#[derive(Debug)]
pub(crate) struct CompiledRoute {
    methods: Vec<Box<str>>,
    pub(crate) hosts: Vec<HostMatch>,
    headers: Vec<HeaderMatch>,
    snis: Vec<NameMatch>,
    sources: Vec<NetMatch>,
    destinations: Vec<NetMatch>,
    pub(crate) strip_path: bool,
    pub(crate) preserve_host: bool,
    pub(crate) path_handling: PathHandling,
    /// The route's service (its path is the upstream path's base), shared by its routes.
    service: Option<Arc<ServiceTarget>>,
    /// Priority ingredients shared by all of the route's candidates.
    pub(crate) base_priority: BasePriority,
    /// Under the expressions flavor: whether plain and TLS requests may match, from the
    /// route's protocols (Kong appends `net.protocol == ...` to every route's expression).
    schemes: Option<Schemes>,
}

/// Which request schemes a route takes.
#[derive(Debug, Clone, Copy)]
struct Schemes {
    http: bool,
    https: bool,
}

impl Schemes {
    /// Kong's rule (`kong/router/expressions.lua`): a route that only takes `https` matches
    /// plain requests too (to answer them with 426 or a redirect); otherwise each protocol
    /// admits its scheme (grpc and ws ride on http, grpcs and wss on https).
    fn of(protocols: &[String]) -> Option<Schemes> {
        if protocols.is_empty() || (protocols.len() == 1 && protocols[0] == "https") {
            return None;
        }
        let has = |set: &[&str]| protocols.iter().any(|p| set.contains(&p.as_str()));
        Some(Schemes {
            http: has(&["http", "grpc", "ws"]),
            https: has(&["https", "grpcs", "wss"]),
        })
    }
}

/// The parts of Kong's priority that do not depend on the path group.
#[derive(Debug, Clone, Copy)]
pub(crate) struct BasePriority {
    /// Non-empty fields among sources, destinations, methods, hosts, headers, snis (paths added per candidate).
    weight: u8,
    plain_hosts_only: bool,
    header_count: u8,
}

/// Kong's priority of one candidate (see `get_priority` in `kong/router/transform.lua`),
/// compared field by field, most significant first, instead of packed into 64 bits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Priority {
    weight: u8,
    plain_hosts_only: bool,
    header_count: u8,
    regex: bool,
    /// Only for regex candidates.
    regex_priority: i64,
    /// Prefix length, only for plain-path candidates (Kong masks it to 19 bits).
    max_length: u32,
}

impl BasePriority {
    pub(crate) fn with_paths(
        self,
        has_paths: bool,
        regex: bool,
        regex_priority: i64,
        prefix_len: usize,
    ) -> Priority {
        Priority {
            weight: self.weight + u8::from(has_paths),
            plain_hosts_only: self.plain_hosts_only,
            header_count: self.header_count,
            regex,
            regex_priority: if regex { regex_priority } else { 0 },
            max_length: if regex {
                0
            } else {
                (prefix_len & 0x7FFFF) as u32
            },
        }
    }
}

fn err(route: usize, field: String, message: impl Into<String>) -> RouterError {
    RouterError {
        route,
        field,
        message: message.into(),
    }
}

/// Protocols of Kong's stream subsystem; routes with only these are not HTTP routes.
const STREAM_PROTOCOLS: &[&str] = &["tcp", "tls", "udp", "tls_passthrough"];

/// True when the route belongs to the HTTP router.
pub(crate) fn is_http_route(r: &RouteInput) -> bool {
    r.protocols.is_empty()
        || r.protocols
            .iter()
            .any(|p| !STREAM_PROTOCOLS.contains(&p.as_str()))
}

fn compile_endpoints(
    idx: usize,
    field: &str,
    eps: &[Endpoint],
) -> Result<Vec<NetMatch>, RouterError> {
    eps.iter()
        .enumerate()
        .map(|(i, e)| {
            if e.ip.is_none() && e.port.is_none() {
                return Err(err(idx, format!("{field}[{i}]"), "needs an ip or a port"));
            }
            Ok(NetMatch {
                net: e.ip,
                port: e.port,
            })
        })
        .collect()
}

fn header_name(idx: usize, field: &str, name: &str) -> Result<HeaderName, RouterError> {
    HeaderName::from_bytes(name.as_bytes())
        .map_err(|e| err(idx, field.to_owned(), format!("invalid header name: {e}")))
}

fn compile_headers(
    idx: usize,
    headers: &[(String, Vec<String>)],
) -> Result<Vec<HeaderMatch>, RouterError> {
    let mut out: Vec<(String, HeaderMatch)> = Vec::new();
    for (name, values) in headers {
        let field = format!("headers.{name}");
        let canonical = name.to_ascii_lowercase().replace('_', "-");
        if values.is_empty() {
            return Err(err(idx, field, "needs at least one value"));
        }
        let mut compiled = Vec::with_capacity(values.len());
        for (j, v) in values.iter().enumerate() {
            let lower = v.to_lowercase();
            match lower.strip_prefix("~*") {
                Some(pattern) => {
                    let re = regex::RegexBuilder::new(pattern)
                        .case_insensitive(true)
                        .build()
                        .map_err(|e| {
                            err(idx, format!("{field}[{j}]"), format!("invalid regex: {e}"))
                        })?;
                    compiled.push(HeaderValueMatch::Regex(re));
                }
                None => compiled.push(HeaderValueMatch::Exact(lower.into())),
            }
        }
        // Kong's headers are a map; merge spellings that name the same header.
        if let Some((_, existing)) = out.iter_mut().find(|(n, _)| *n == canonical) {
            existing.values.extend(compiled);
            continue;
        }
        let underscored = canonical.replace('-', "_");
        let alt_name = if underscored != canonical {
            Some(header_name(idx, &field, &underscored)?)
        } else {
            None
        };
        let hm = HeaderMatch {
            name: header_name(idx, &field, &canonical)?,
            alt_name,
            values: compiled,
        };
        out.push((canonical, hm));
    }
    Ok(out.into_iter().map(|(_, h)| h).collect())
}

impl CompiledRoute {
    /// Compiles every field but the paths. `idx` is the route's input index (for errors).
    pub(crate) fn compile(
        idx: usize,
        r: &RouteInput,
        flavor: Flavor,
    ) -> Result<CompiledRoute, RouterError> {
        let mut hosts = Vec::with_capacity(r.hosts.len());
        for (i, h) in r.hosts.iter().enumerate() {
            let lower = h.to_ascii_lowercase();
            let (name, port) = split_host_port(&lower);
            let name = NameMatch::parse(name).map_err(|m| err(idx, format!("hosts[{i}]"), m))?;
            hosts.push(HostMatch { name, port });
        }
        let mut snis = Vec::with_capacity(r.snis.len());
        for (i, s) in r.snis.iter().enumerate() {
            let lower = s.to_ascii_lowercase();
            // The last dot of an FQDN is not used for routing.
            let trimmed = match lower.strip_suffix('.') {
                Some(t) if !t.is_empty() && !lower.ends_with("*.") => t,
                _ => lower.as_str(),
            };
            snis.push(NameMatch::parse(trimmed).map_err(|m| err(idx, format!("snis[{i}]"), m))?);
        }
        let headers = compile_headers(idx, &r.headers)?;
        let sources = compile_endpoints(idx, "sources", &r.sources)?;
        let destinations = compile_endpoints(idx, "destinations", &r.destinations)?;

        let weight = [
            !sources.is_empty(),
            !destinations.is_empty(),
            !r.methods.is_empty(),
            !hosts.is_empty(),
            !headers.is_empty(),
            !snis.is_empty(),
        ]
        .iter()
        .map(|&b| u8::from(b))
        .sum();
        let base_priority = BasePriority {
            weight,
            plain_hosts_only: !hosts.is_empty() && hosts.iter().all(|h| !h.name.is_wildcard()),
            header_count: u8::try_from(headers.len()).unwrap_or(u8::MAX),
        };

        Ok(CompiledRoute {
            methods: r.methods.iter().map(|m| m.as_str().into()).collect(),
            hosts,
            headers,
            snis,
            sources,
            destinations,
            strip_path: r.strip_path,
            preserve_host: r.preserve_host,
            path_handling: r.path_handling,
            service: r.service.clone(),
            base_priority,
            schemes: match flavor {
                Flavor::TraditionalCompatible => None,
                Flavor::Expressions => Schemes::of(&r.protocols),
            },
        })
    }

    /// The service's path, `/` when unset or service-less.
    pub(crate) fn service_path(&self) -> &str {
        super::service_path(self.service.as_deref())
    }

    /// True when the route has no match field besides (possibly) paths.
    pub(crate) fn has_no_fields(&self) -> bool {
        self.base_priority.weight == 0
    }

    /// Checks every field except the paths.
    pub(crate) fn matches(&self, req: &ReqCtx<'_>) -> bool {
        if let Some(s) = self.schemes {
            if !(if req.https { s.https } else { s.http }) {
                return false;
            }
        }
        if !self.methods.is_empty() && !self.methods.iter().any(|m| &**m == req.method) {
            return false;
        }
        if !self.hosts.is_empty() {
            let Some(host) = req.host else {
                return false;
            };
            let ok = self
                .hosts
                .iter()
                .any(|h| h.name.matches(host) && h.port.is_none_or(|p| req.port == Some(p)));
            if !ok {
                return false;
            }
        }
        // SNIs are only checked for https requests (Kong: `net.protocol != "https" || tls.sni ...`).
        if !self.snis.is_empty() && req.https {
            let Some(sni) = req.sni else {
                return false;
            };
            let sni = sni
                .strip_suffix('.')
                .filter(|s| !s.is_empty())
                .unwrap_or(sni);
            if !self.snis.iter().any(|s| matches_ignore_case(s, sni)) {
                return false;
            }
        }
        if !self.sources.is_empty() {
            let ip = req.src.map(|a| a.ip());
            let port = req.src.map(|a| a.port());
            if !self.sources.iter().any(|s| s.matches(ip, port)) {
                return false;
            }
        }
        if !self.destinations.is_empty()
            && !self
                .destinations
                .iter()
                .any(|d| d.matches(req.dst_ip, req.port))
        {
            return false;
        }
        self.headers.iter().all(|h| h.matches(req.headers))
    }
}

/// Name match against a request name that may contain upper-case letters.
fn matches_ignore_case(m: &NameMatch, name: &str) -> bool {
    match m {
        NameMatch::Exact(v) => name.eq_ignore_ascii_case(v),
        NameMatch::Suffix(v) => {
            name.len() >= v.len()
                && name.as_bytes()[name.len() - v.len()..].eq_ignore_ascii_case(v.as_bytes())
        }
        NameMatch::Prefix(v) => {
            name.len() >= v.len() && name.as_bytes()[..v.len()].eq_ignore_ascii_case(v.as_bytes())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_host_and_port() {
        assert_eq!(split_host_port("a.com:80"), ("a.com", Some(80)));
        assert_eq!(split_host_port("a.com"), ("a.com", None));
        assert_eq!(split_host_port("a.*:123"), ("a.*", Some(123)));
        assert_eq!(split_host_port("a.com:x"), ("a.com:x", None));
        assert_eq!(split_host_port("[::1]:8080"), ("[::1]", Some(8080)));
        assert_eq!(split_host_port("[::1]"), ("[::1]", None));
    }

    #[test]
    fn parses_wildcards() {
        assert_eq!(
            NameMatch::parse("*.a.com"),
            Ok(NameMatch::Suffix(".a.com".into()))
        );
        assert_eq!(NameMatch::parse("a.*"), Ok(NameMatch::Prefix("a.".into())));
        assert!(NameMatch::parse("a.*.com").is_err());
        assert!(NameMatch::parse("*").is_err());
        assert!(NameMatch::parse("*a.com").is_err());
    }

    #[test]
    fn cidr() {
        let net = |s: &str, l| (s.parse::<IpAddr>().unwrap_or(IpAddr::V4(0.into())), l);
        let ip = |s: &str| s.parse::<IpAddr>().unwrap_or(IpAddr::V4(0.into()));
        assert!(in_network(ip("10.1.2.3"), net("10.0.0.0", 8)));
        assert!(!in_network(ip("11.1.2.3"), net("10.0.0.0", 8)));
        assert!(in_network(ip("::ffff:10.1.2.3"), net("10.0.0.0", 8)));
        assert!(in_network(ip("1.2.3.4"), net("0.0.0.0", 0)));
        assert!(in_network(ip("2001:db8::1"), net("2001:db8::", 32)));
        assert!(!in_network(ip("2001:db9::1"), net("2001:db8::", 32)));
    }
}
