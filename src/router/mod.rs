//! Kong's `traditional_compatible` router: route matching, priorities and the
//! upstream path (path_handling v0/v1). Pure: no I/O, no knowledge of Pingora.
//!
//! PUBLIC API CONTRACT (used by `snapshot/` and `proxy/`; do not change the
//! signatures without telling the snapshot/proxy owner):
//!
//! ```ignore
//! let router = Router::new(vec![RouteInput { .. }, ..])?;   // RouterError names route index + field
//! let m: Option<RouteMatch> = router.select(&RequestInfo { .. });
//! let normalized = normalize_path("/a/./b%7e/../c");       // Kong's path normalization
//! ```

use std::net::IpAddr;

/// A route as the router needs it (built by `snapshot/` from the validated config).
#[derive(Debug, Clone, Default)]
pub struct RouteInput {
    /// Kong route id (UUID string).
    pub id: String,
    /// Route protocols; empty means `["http", "https"]`.
    pub protocols: Vec<String>,
    /// Upper-case HTTP methods.
    pub methods: Vec<String>,
    /// Hosts as written in the config: `example.com`, `*.example.com`, `example.*`, `example.com:8080`.
    pub hosts: Vec<String>,
    /// Paths as written: `/prefix` or `~/regex`.
    pub paths: Vec<String>,
    /// Header name (lower-case) → accepted values; a value starting with `~*` is a case-insensitive regex.
    pub headers: Vec<(String, Vec<String>)>,
    /// SNIs (TLS server names) the route accepts.
    pub snis: Vec<String>,
    /// Source IP/CIDR + port constraints (stream-style fields; also valid for http in Kong).
    pub sources: Vec<Endpoint>,
    /// Destination IP/CIDR + port constraints.
    pub destinations: Vec<Endpoint>,
    pub regex_priority: i64,
    pub strip_path: bool,
    pub preserve_host: bool,
    pub path_handling: PathHandling,
    /// The service the route proxies to (None: a service-less route).
    pub service: Option<ServiceTarget>,
}

/// One `sources`/`destinations` entry: `{ip: "10.0.0.0/8", port: 80}`; either may be absent.
#[derive(Debug, Clone, Default)]
pub struct Endpoint {
    /// Network address and prefix length.
    pub ip: Option<(IpAddr, u8)>,
    pub port: Option<u16>,
}

/// `path_handling` of a route.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum PathHandling {
    #[default]
    V0,
    V1,
}

/// The parts of the service that the upstream URI/host computation needs.
#[derive(Debug, Clone, Default)]
pub struct ServiceTarget {
    pub protocol: String,
    pub host: String,
    pub port: u16,
    /// Service path, e.g. `/` or `/api` (None when unset).
    pub path: Option<String>,
}

/// What the router looks at in a request.
pub struct RequestInfo<'a> {
    pub method: &'a str,
    /// Already normalized path (see [`normalize_path`]), without the query string.
    pub path: &'a str,
    /// The Host header (or :authority) as sent, possibly with a port; empty if absent.
    pub host: &'a str,
    /// Request headers (names are case-insensitive in `http::HeaderMap`).
    pub headers: &'a http::HeaderMap,
    /// `http` or `https` (or grpc/grpcs/ws/wss).
    pub scheme: &'a str,
    pub sni: Option<&'a str>,
    pub src: Option<std::net::SocketAddr>,
    pub dst: Option<std::net::SocketAddr>,
}

/// A successful match.
#[derive(Debug, Clone)]
pub struct RouteMatch {
    /// Index of the route in the `Vec<RouteInput>` given to [`Router::new`].
    pub route: usize,
    /// Upstream path (without query string) computed from the service path, strip_path and path_handling.
    pub upstream_path: String,
    /// `Some(request host)` when the route has preserve_host, else None (proxy uses the service host).
    pub upstream_host: Option<String>,
    /// The matched prefix (plain path) or whole regex match, when a path matched.
    pub prefix: Option<String>,
    /// Regex captures (`kong.request.get_uri_captures()`), None when no regex path matched.
    pub uri_captures: Option<UriCaptures>,
    /// What matched, for Kong's `matches.*` fields: method, host (as in the route), uri (the route path), headers.
    pub matched_method: Option<String>,
    pub matched_host: Option<String>,
    pub matched_uri: Option<String>,
    pub matched_headers: Vec<(String, String)>,
}

/// Positional and named captures of a regex path match.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct UriCaptures {
    /// Index 0 is the whole match; unmatched groups are None.
    pub positional: Vec<Option<String>>,
    pub named: Vec<(String, String)>,
}

/// A route that cannot be compiled.
#[derive(Debug, thiserror::Error)]
#[error("route {route} ({field}): {message}")]
pub struct RouterError {
    /// Index of the route in the input.
    pub route: usize,
    /// Field path inside the route, e.g. `paths[1]`.
    pub field: String,
    pub message: String,
}

/// The compiled router. Immutable; `Send + Sync`.
pub struct Router {
    // implementation detail
}

impl Router {
    /// Compile routes. Fails on the first invalid regex path / header regex.
    pub fn new(routes: Vec<RouteInput>) -> Result<Router, RouterError> {
        let _ = routes;
        todo!()
    }

    /// Find the best route for a request, per Kong's priority rules.
    pub fn select(&self, req: &RequestInfo<'_>) -> Option<RouteMatch> {
        let _ = req;
        todo!()
    }
}

/// Kong's request path normalization: percent-encoding upper-cased, unreserved characters decoded,
/// dot segments removed, `//` merged. Input is a path without query string.
pub fn normalize_path(path: &str) -> std::borrow::Cow<'_, str> {
    std::borrow::Cow::Borrowed(path)
}
