//! What Kong changes on the request it sends upstream: URI, Host, X-Forwarded-*, X-Real-IP.

use http::HeaderValue;
use pingora::http::RequestHeader;
use pingora::proxy::Session;

use super::respond::messages;
use crate::plugins::{Exit, RequestState};
use crate::router::RouteMatch;
use crate::snapshot::{RouteRt, ServiceRt};

/// Names of the headers the gateway writes on every request, made once: pingora-http's
/// `insert_static_header_as` neither parses nor copies them, and they go on the wire as Kong's
/// nginx writes them (`proxy_set_header X-Forwarded-For`, `X-Kong-Upstream-Latency`).
pub(super) mod names {
    use http::HeaderName;

    /// A header name (for the header's maps, in lower case) and its text on the wire.
    pub struct Name {
        pub key: HeaderName,
        pub wire: &'static str,
    }

    macro_rules! names {
        ($($id:ident = $wire:literal / $key:literal),* $(,)?) => {
            $(pub static $id: Name = Name { key: HeaderName::from_static($key), wire: $wire };)*
            #[cfg(test)]
            pub static ALL: &[&Name] = &[$(&$id),*];
        };
    }
    names! {
        X_FORWARDED_FOR = "X-Forwarded-For" / "x-forwarded-for",
        X_REAL_IP = "X-Real-IP" / "x-real-ip",
        X_FORWARDED_PROTO = "X-Forwarded-Proto" / "x-forwarded-proto",
        X_FORWARDED_HOST = "X-Forwarded-Host" / "x-forwarded-host",
        X_FORWARDED_PORT = "X-Forwarded-Port" / "x-forwarded-port",
        X_FORWARDED_PATH = "X-Forwarded-Path" / "x-forwarded-path",
        X_FORWARDED_PREFIX = "X-Forwarded-Prefix" / "x-forwarded-prefix",
        X_KONG_UPSTREAM_LATENCY = "X-Kong-Upstream-Latency" / "x-kong-upstream-latency",
        X_KONG_PROXY_LATENCY = "X-Kong-Proxy-Latency" / "x-kong-proxy-latency",
        X_KONG_RESPONSE_LATENCY = "X-Kong-Response-Latency" / "x-kong-response-latency",
        CONTENT_LENGTH = "Content-Length" / "content-length",
        SERVER = "Server" / "server",
    }

    #[cfg(test)]
    mod tests {
        #[test]
        fn wire_texts_are_their_names() {
            for n in super::ALL {
                assert!(n.wire.eq_ignore_ascii_case(n.key.as_str()), "{}", n.wire);
            }
        }
    }
}

/// Sets a header named in [`names`] (replacing any of that name).
pub(super) trait PutNamed {
    /// Inserts `value` under `name`.
    fn put(
        &mut self,
        name: &'static names::Name,
        value: impl TryInto<HeaderValue>,
    ) -> pingora::Result<()>;
}

impl PutNamed for RequestHeader {
    fn put(
        &mut self,
        name: &'static names::Name,
        value: impl TryInto<HeaderValue>,
    ) -> pingora::Result<()> {
        self.insert_static_header_as(&name.key, name.wire, value)
    }
}

impl PutNamed for pingora::http::ResponseHeader {
    fn put(
        &mut self,
        name: &'static names::Name,
        value: impl TryInto<HeaderValue>,
    ) -> pingora::Result<()> {
        self.insert_static_header_as(&name.key, name.wire, value)
    }
}

/// Rewrites `upstream` for `service` after `route` matched.
pub fn upstream(
    session: &Session,
    upstream: &mut RequestHeader,
    route: &RouteRt,
    service: Option<&ServiceRt>,
    matched: &RouteMatch,
    state: &RequestState,
) -> pingora::Result<()> {
    let changes = &state.upstream;
    let downstream = session.req_header();
    // Room for what follows (Host, X-Real-IP, five X-Forwarded-*), so that neither of the
    // header's maps grows twice on the way.
    upstream.reserve_headers(8);
    // The router's path is normalized and unescaped (as Kong's); escape it for the request
    // line, then add the query string exactly as the client sent it (unless a plugin set
    // another path or query).
    let mut uri = match &changes.path {
        Some(p) => p.clone(),
        None => crate::router::escape_path(&matched.upstream_path).into_owned(),
    };
    let query = changes.query.as_deref().or(downstream.uri.query());
    if let Some(q) = query.filter(|q| !q.is_empty()) {
        uri.push('?');
        uri.push_str(q);
    }
    upstream.set_raw_path(uri.as_bytes())?;
    if let Some(m) = &changes.method {
        upstream.set_method(m.clone());
    }
    if let Some(body) = &changes.body {
        upstream.remove_header(&http::header::TRANSFER_ENCODING);
        upstream.insert_header(http::header::CONTENT_LENGTH, body.len().to_string())?;
    }

    let client_host = downstream
        .headers
        .get(http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("");
    let host = match (&matched.upstream_host, service, &changes.target) {
        // The service's Host, made when the snapshot was.
        (
            None,
            Some(ServiceRt {
                host_value: Some(v),
                ..
            }),
            None,
        ) if changes.host.is_none() => v.clone(),
        (upstream_host, service, target) => value(match (upstream_host, service, target) {
            // A plugin set the Host header for the upstream request.
            _ if changes.host.is_some() => changes.host.clone().unwrap_or_default(),
            (Some(h), _, _) => h.clone(),
            (None, _, Some((h, p))) => format!("{h}:{p}"),
            (None, Some(s), None) => s.host_header(),
            (None, None, None) => client_host.to_string(),
        })?,
    };
    upstream.insert_header(http::header::HOST, host)?;

    // Kong: X-Real-IP is the client (behind trusted proxies, the one they named); an
    // incoming X-Forwarded-For gets the connection's peer appended, else it is the client.
    let ip = |a: Option<std::net::SocketAddr>| a.map(|a| ip_text(a.ip())).unwrap_or_default();
    let client_ip = ip(state.client);
    let xff = match downstream
        .headers
        .get(&names::X_FORWARDED_FOR.key)
        .and_then(|v| v.to_str().ok())
    {
        Some(prev) => format!("{prev}, {}", ip(state.peer)),
        None => client_ip.clone(),
    };
    upstream.put(&names::X_FORWARDED_FOR, xff)?;
    upstream.put(&names::X_REAL_IP, client_ip)?;
    // From a trusted proxy, its X-Forwarded-Proto/Host/Port/Path/Prefix pass on (their values
    // shared with the client's request, not copied).
    let trusted = state.peer_trusted();
    let given = |name: &names::Name| -> Option<HeaderValue> {
        if !trusted {
            return None;
        }
        downstream
            .headers
            .get(&name.key)
            .filter(|v| v.to_str().is_ok())
            .cloned()
    };
    let proto = given(&names::X_FORWARDED_PROTO)
        .unwrap_or_else(|| HeaderValue::from_static(super::scheme(session)));
    upstream.put(&names::X_FORWARDED_PROTO, proto)?;
    let forwarded_host = match given(&names::X_FORWARDED_HOST) {
        Some(h) => h,
        None => value(crate::config::checks::split_host_port(client_host).0)?,
    };
    upstream.put(&names::X_FORWARDED_HOST, forwarded_host)?;
    let port = match given(&names::X_FORWARDED_PORT) {
        Some(p) => p,
        None => session
            .server_addr()
            .and_then(|a| a.as_inet())
            .map_or_else(|| HeaderValue::from_static(""), |a| a.port().into()),
    };
    upstream.put(&names::X_FORWARDED_PORT, port)?;
    let path = match given(&names::X_FORWARDED_PATH) {
        Some(p) => p,
        None => value(downstream.uri.path())?,
    };
    upstream.put(&names::X_FORWARDED_PATH, path)?;
    if let Some(prefix) = given(&names::X_FORWARDED_PREFIX) {
        upstream.put(&names::X_FORWARDED_PREFIX, prefix)?;
    } else {
        match matched.prefix.as_deref() {
            Some(prefix) if route.strip_path && !prefix.is_empty() && prefix != "/" => {
                upstream.put(&names::X_FORWARDED_PREFIX, prefix)?;
            }
            _ => {
                upstream.remove_header(&names::X_FORWARDED_PREFIX.key);
            }
        }
    }
    // A plugin's `ngx.var.upstream_x_forwarded_* = v` (Kong's template variables).
    static FORWARDED: [&names::Name; 5] = [
        &names::X_FORWARDED_HOST,
        &names::X_FORWARDED_PORT,
        &names::X_FORWARDED_PROTO,
        &names::X_FORWARDED_PATH,
        &names::X_FORWARDED_PREFIX,
    ];
    for (name, value) in FORWARDED.iter().zip(&changes.forwarded) {
        if let Some(v) = value {
            upstream.put(name, v.as_str())?;
        }
    }
    Ok(())
}

/// `text` as a header value, or Pingora's error for an invalid one (as `insert_header` gives).
fn value<T>(text: T) -> pingora::Result<HeaderValue>
where
    T: TryInto<HeaderValue>,
{
    use pingora::{ErrorType, OrErr};
    text.try_into()
        .explain_err(ErrorType::InvalidHTTPHeader, |_| {
            "invalid value while insert"
        })
}

/// An address as text, as `Display` writes it; IPv4 without the formatting machinery, which
/// cost about 1,300 instructions per request for X-Real-IP and X-Forwarded-For (and ~1,200
/// per `kong.client.get_ip`).
pub(crate) fn ip_text(ip: std::net::IpAddr) -> String {
    match ip {
        std::net::IpAddr::V4(v4) => {
            let mut out = String::with_capacity(15);
            let mut digits = itoa::Buffer::new();
            for (i, octet) in v4.octets().into_iter().enumerate() {
                if i > 0 {
                    out.push('.');
                }
                out.push_str(digits.format(octet));
            }
            out
        }
        v6 => v6.to_string(),
    }
}

/// The answer to a request whose protocol `route` does not accept (None: accepted).
/// gRPC and WebSocket requests also match routes with Kong's grpc(s) and ws(s); behind a
/// trusted proxy that terminated TLS, its X-Forwarded-Proto counts (Kong's forwarded_proto).
pub fn protocol_refusal(
    session: &Session,
    state: &RequestState,
    route: &RouteRt,
    scheme: &str,
) -> Option<Exit> {
    use super::transport::{is_grpc, is_websocket};
    let accepts = |s: &str| route.protocols.iter().any(|p| p.as_str() == s);
    let tls = scheme == "https";
    let forwarded_https = !tls
        && state.peer_trusted()
        && session
            .req_header()
            .headers
            .get("x-forwarded-proto")
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"https"));
    let accepted = accepts(scheme)
        || (forwarded_https && accepts("https"))
        || (is_grpc(session) && accepts(if tls { "grpcs" } else { "grpc" }))
        || (is_websocket(session) && accepts(if tls { "wss" } else { "ws" }));
    if accepted {
        return None;
    }
    let only_grpc = route
        .protocols
        .iter()
        .all(|p| p.as_str().starts_with("grpc"));
    Some(if only_grpc && !is_grpc(session) {
        Exit::message(415, messages::NON_GRPC)
    } else {
        https_redirect(session, route.https_redirect_status_code)
    })
}

/// The response for an http request on a route that accepts only https.
pub fn https_redirect(session: &Session, status: u16) -> Exit {
    if status == 426 {
        let mut exit = Exit::message(426, messages::USE_HTTPS);
        exit.headers.push(("connection".into(), "Upgrade".into()));
        exit.headers
            .push(("upgrade".into(), "TLS/1.2, HTTP/1.1".into()));
        return exit;
    }
    let req = session.req_header();
    let host = req
        .headers
        .get(http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("");
    let host = crate::config::checks::split_host_port(host).0;
    let target = req.uri.path_and_query().map_or("/", |pq| pq.as_str());
    let mut exit = Exit::message(status, "Moved");
    exit.headers
        .push(("location".into(), format!("https://{host}{target}")));
    exit
}

#[cfg(test)]
mod tests {
    use super::ip_text;

    #[test]
    fn ip_text_writes_what_display_writes() {
        for ip in [
            "0.0.0.0",
            "127.0.0.1",
            "10.20.3.255",
            "255.255.255.255",
            "::1",
            "fe80::1:2",
        ] {
            let addr: std::net::IpAddr = ip.parse().unwrap();
            assert_eq!(ip_text(addr), addr.to_string());
        }
    }
}
