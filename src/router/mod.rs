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
//!
//! Semantics follow Kong 3.x (`kong/router/compat.lua`, `transform.lua`, `atc.lua`):
//! a route is turned into one candidate per path group (all regex paths form one
//! group, plain paths are grouped by length), every candidate gets a priority, and
//! the highest-priority candidate whose fields all match wins; equal priorities are
//! broken by the (possibly derived) route UUID, larger first, exactly like Kong's
//! ATC router iterates its `BTreeMap<(priority, uuid)>` in reverse.
//!
//! Like Kong, the router does not look at `protocols` beyond excluding stream-only
//! routes: an `https`-only route matches a plain-http request, and the proxy is
//! expected to answer it with 426 / a redirect (Kong's runloop does the same).

mod bucket;
mod expressions;
pub use expressions::validate as validate_expression;
mod index;
mod literal;
mod matcher;
mod normalize;
mod regex_cache;
pub use regex_cache::is_live_route_regex;
mod trie;
mod upstream;

#[cfg(test)]
mod tests;

use std::net::IpAddr;
use std::sync::Arc;

pub use normalize::escape_path;

/// A route as the router needs it (built by `snapshot/` from the validated config).
///
/// Everything a [`Router`] is built from is in these inputs and the flavor: equal inputs
/// build equal routers (see [`fingerprint`]).
#[derive(Debug, Clone, Default, Hash)]
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
    /// Orders regex-path routes of otherwise equal priority (higher first).
    pub regex_priority: i64,
    /// Remove the matched path prefix (or whole regex match) before proxying.
    pub strip_path: bool,
    /// Forward the client's Host header instead of the service host.
    pub preserve_host: bool,
    /// How service path, route path and request path are combined.
    pub path_handling: PathHandling,
    /// The service the route proxies to (None: a service-less route), shared by its routes.
    pub service: Option<Arc<ServiceTarget>>,
    /// An expression in Kong's expressions language (only under [`Flavor::Expressions`]);
    /// the route's methods/hosts/paths/... are then empty.
    pub expression: Option<String>,
    /// Orders expression routes (higher first); Kong allows 0..2^46.
    pub priority: u64,
}

impl RouteInput {
    /// The id priorities tie-break on (larger first), as Kong's route UUIDs; an id that is
    /// not a UUID is mapped to one.
    pub(crate) fn uuid(&self) -> uuid::Uuid {
        uuid::Uuid::parse_str(&self.id).unwrap_or_else(|_| {
            crate::config::checks::uuid_v5(&uuid::Uuid::nil(), &[self.id.as_bytes()])
        })
    }
}

/// A 128-bit digest of what a router is built from: routers built from inputs with the same
/// fingerprint are the same. The seed is random per process, so unequal inputs collide with
/// probability about 2^-128 and cannot be crafted to collide.
pub fn fingerprint(routes: &[RouteInput], flavor: Flavor) -> u128 {
    use std::hash::{BuildHasher, Hash};
    static SEED: std::sync::LazyLock<u64> =
        std::sync::LazyLock::new(|| std::collections::hash_map::RandomState::new().hash_one(0u8));
    let mut h = xxhash_rust::xxh3::Xxh3::with_seed(*SEED);
    flavor.hash(&mut h);
    routes.hash(&mut h);
    h.digest128()
}

/// Kong's `router_flavor`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum Flavor {
    /// `traditional_compatible` (Kong's default; `traditional` is served the same way).
    #[default]
    TraditionalCompatible,
    /// `expressions`: routes may be written as expressions, with a `priority`, and every
    /// route only takes the protocols it lists (https-only routes still see plain requests,
    /// to answer them with 426 or a redirect).
    Expressions,
}

/// One `sources`/`destinations` entry: `{ip: "10.0.0.0/8", port: 80}`; either may be absent.
#[derive(Debug, Clone, Default, Hash)]
pub struct Endpoint {
    /// Network address and prefix length.
    pub ip: Option<(IpAddr, u8)>,
    /// Port the connection must use.
    pub port: Option<u16>,
}

/// `path_handling` of a route.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum PathHandling {
    /// Kong's default (and the only mode Kong's `traditional_compatible` flavor applies).
    #[default]
    V0,
    /// Kong's deprecated v1 algorithm (as in Kong's `traditional` flavor).
    V1,
}

/// The service's path, `/` when unset, empty or service-less.
pub(crate) fn service_path(service: Option<&ServiceTarget>) -> &str {
    service
        .and_then(|s| s.path.as_deref())
        .filter(|p| !p.is_empty())
        .unwrap_or("/")
}

/// The parts of the service that the upstream URI/host computation needs.
#[derive(Debug, Clone, Default, Hash)]
pub struct ServiceTarget {
    /// `http`, `https`, `grpc`, ...
    pub protocol: String,
    /// Upstream host name (or upstream entity name).
    pub host: String,
    /// Upstream port.
    pub port: u16,
    /// Service path, e.g. `/` or `/api` (None when unset).
    pub path: Option<String>,
}

/// What the router looks at in a request.
pub struct RequestInfo<'a> {
    /// HTTP method, compared exactly with the route's methods.
    pub method: &'a str,
    /// Already normalized path (see [`normalize_path`]), without the query string.
    pub path: &'a str,
    /// The Host header (or :authority) as sent, possibly with a port; empty if absent.
    pub host: &'a str,
    /// Request headers (names are case-insensitive in `http::HeaderMap`).
    pub headers: &'a http::HeaderMap,
    /// `http` or `https` (or grpc/grpcs/ws/wss).
    pub scheme: &'a str,
    /// TLS server name; only consulted for `https` requests (as Kong does).
    pub sni: Option<&'a str>,
    /// Client address (for `sources`).
    pub src: Option<std::net::SocketAddr>,
    /// Local address the request came in on (for `destinations`, and for port-specific
    /// hosts when the Host header carries no port).
    pub dst: Option<std::net::SocketAddr>,
    /// The raw query string, without `?` (read only by expressions on `http.queries.*`).
    pub query: Option<&'a str>,
}

/// A successful match.
#[derive(Debug, Clone)]
pub struct RouteMatch {
    /// Index of the route in the `Vec<RouteInput>` given to [`Router::new`].
    pub route: usize,
    /// Upstream path (without query string) computed from the service path, strip_path and path_handling.
    /// Not yet escaped: pass it through [`escape_path`] before putting it on the wire (Kong does the same).
    pub upstream_path: String,
    /// `Some(request host)` when the route has preserve_host, else None (proxy uses the service host).
    pub upstream_host: Option<String>,
    /// The stripped part of the path: the matched prefix (plain path) or whole regex match; `None`
    /// unless the route has `strip_path` and matched by path (Kong's `match_t.prefix`, which feeds
    /// `X-Forwarded-Prefix`).
    pub prefix: Option<String>,
    /// Regex captures (`kong.request.get_uri_captures()`), None when no regex path matched or the
    /// regex has no participating group.
    pub uri_captures: Option<UriCaptures>,
    /// Kong's `matches.method`. Always `None`: Kong's `traditional_compatible` router does not
    /// report it (only `uri_captures`); kept for API stability.
    pub matched_method: Option<String>,
    /// Kong's `matches.host`. Always `None` (see `matched_method`).
    pub matched_host: Option<String>,
    /// Kong's `matches.uri`. Always `None` (see `matched_method`).
    pub matched_uri: Option<String>,
    /// Kong's `matches.headers`. Always empty (see `matched_method`).
    pub matched_headers: Vec<(String, String)>,
}

/// Positional and named captures of a regex path match.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct UriCaptures {
    /// Index 0 is the whole match; unmatched groups are None.
    pub positional: Vec<Option<String>>,
    /// Named groups that participated in the match, in pattern order.
    pub named: Vec<(String, String)>,
}

impl UriCaptures {
    /// Looks a capture up the way Kong's captures table is indexed: a decimal key
    /// is positional (`"0"` = whole match), anything else is a group name.
    pub fn get(&self, key: &str) -> Option<&str> {
        if let Ok(i) = key.parse::<usize>() {
            return self.positional.get(i).and_then(|c| c.as_deref());
        }
        self.named
            .iter()
            .find(|(name, _)| name == key)
            .map(|(_, value)| value.as_str())
    }
}

/// A route that cannot be compiled.
#[derive(Debug, thiserror::Error)]
#[error("route {route} ({field}): {message}")]
pub struct RouterError {
    /// Index of the route in the input.
    pub route: usize,
    /// Field path inside the route, e.g. `paths[1]`.
    pub field: String,
    /// What is wrong.
    pub message: String,
}

/// The compiled router. Immutable; `Send + Sync`.
///
/// # Lookup cost
///
/// At build time every (route, path group) candidate is ranked once by Kong's
/// priority, and candidates are filed into *buckets* by host: a hash map for plain
/// hosts, one for `*.suffix` wildcards, one for `prefix.*` wildcards, and one bucket
/// for routes without hosts. Inside a bucket a radix trie holds the plain path
/// prefixes *and* the literal prefixes of regex paths (`~/users/\d+` is filed under
/// `/users/`); path-less candidates sit in a list. Every list is sorted by rank, and a
/// trie key with more than a few regexes runs them as one `RegexSet`.
///
/// [`Router::select`] therefore costs, for a request host with `L` labels and a path
/// of length `P`:
/// * `O(L)` hash probes to find the host buckets (exact host, every `*.suffix`, every
///   `prefix.*`) plus the host-less bucket;
/// * per bucket one `O(P)` trie walk; only regexes whose literal prefix is a prefix of
///   the path are run (their cheap field checks first), as one `RegexSet` pass when a
///   trie key holds many of them;
/// * the remaining fields (methods, hosts/ports, headers, SNI, sources/destinations)
///   are checked only for the candidates found this way, each list in rank order,
///   stopping at the first success and as soon as a list cannot beat the best match.
///
/// No route list is scanned linearly and regexes are not tried one by one across the
/// table; the cost grows with the number of candidates that share a host and a path
/// prefix (and differ in other fields), not with the number of routes. A miss
/// allocates nothing; a hit allocates the upstream path and, for regex routes, the
/// captures (and the match list of a `RegexSet`, if one matched).
pub struct Router {
    index: index::Index,
    /// Expression routes (expressions flavor only); they outrank every traditional route.
    expressions: Option<expressions::ExprIndex>,
}

impl Router {
    /// Compile routes. Fails on the first invalid regex path / header regex (or a
    /// malformed wildcard host / SNI, or an empty source/destination entry).
    ///
    /// Stream-only routes (`tcp`, `tls`, `udp`, `tls_passthrough`) are ignored, and
    /// a route with no match field at all never matches (Kong drops both from its
    /// HTTP router).
    pub fn new(routes: Vec<RouteInput>) -> Result<Router, RouterError> {
        Router::with_flavor(routes, Flavor::TraditionalCompatible)
    }

    /// Compile routes for a router flavor. Under [`Flavor::Expressions`] routes with an
    /// `expression` go to Kong's ATC engine and the others to the traditional index, which
    /// then also checks each route's protocols as Kong's flavor does.
    pub fn with_flavor(routes: Vec<RouteInput>, flavor: Flavor) -> Result<Router, RouterError> {
        let expressions = match flavor {
            Flavor::TraditionalCompatible => None,
            Flavor::Expressions => Some(expressions::ExprIndex::build(&routes).map_err(
                |(route, message)| RouterError {
                    route,
                    field: "expression".to_owned(),
                    message,
                },
            )?),
        }
        .filter(|e| !e.is_empty());
        Ok(Router {
            index: index::Index::build(routes, flavor)?,
            expressions,
        })
    }

    /// Find the best route for a request, per Kong's priority rules.
    pub fn select(&self, req: &RequestInfo<'_>) -> Option<RouteMatch> {
        if let Some(e) = &self.expressions {
            if let Some(m) = e.select(req) {
                return Some(m);
            }
        }
        self.index.select(req)
    }

    /// Reference lookup without the index (tests only).
    #[cfg(test)]
    pub(crate) fn select_naive(&self, req: &RequestInfo<'_>) -> Option<RouteMatch> {
        self.index.select_naive(req)
    }

    /// Number of routes given to [`Router::new`] (including ignored ones).
    pub fn len(&self) -> usize {
        self.index.route_count()
    }

    /// True when the router was built from no routes.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Kong's request path normalization: percent-encoding upper-cased, unreserved characters decoded,
/// dot segments removed, `//` merged. Input is a path without query string.
///
/// Mirrors `kong.tools.uri.normalize(uri, true)`: every `%XX` triplet that does not encode
/// a reserved character (`!*'();:@&=+$,/?%#[]`) is decoded (unreserved and "other"
/// characters alike), reserved ones are kept with upper-case hex. If decoding would
/// produce invalid UTF-8, bytes >= 0x80 stay percent-encoded.
pub fn normalize_path(path: &str) -> std::borrow::Cow<'_, str> {
    normalize::normalize(path)
}
