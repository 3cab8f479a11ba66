//! What a client connection may cost: nginx's `client_header_timeout`, `client_body_timeout`,
//! `keepalive_timeout`, `keepalive_requests`, `large_client_header_buffers` and a cap on
//! connections per worker, with Kong's defaults (and, beside them, how long an idle upstream
//! connection stays pooled); the checks on each request header that nginx makes before Kong
//! sees it; and the bodies of the errors the HTTP layer writes itself.

use std::cell::Cell;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use pingora::apps::{HttpServerOptions, ServerApp};
use pingora::http::ResponseHeader;
use pingora::protocols::http::v1::server::HeaderLimits;
use pingora::protocols::Stream;
use pingora::proxy::Session;
use pingora::server::ShutdownWatch;
use pingora::{Error, ErrorType};

use super::respond::PRODUCT;

/// Limits of client connections, process-wide, and the upstream keep-alive idle timeout.
#[derive(Debug, Clone)]
pub struct ClientLimits {
    /// Time a request header may take once its first byte arrived; also how long a new
    /// connection may stay silent (nginx `client_header_timeout`, 60 s).
    pub header_timeout: Duration,
    /// Time between two reads of a request body (nginx `client_body_timeout`, 60 s).
    pub body_timeout: Duration,
    /// Idle time allowed between two requests on a connection (nginx `keepalive_timeout`,
    /// 75 s: Kong's template leaves nginx's default).
    pub keepalive_timeout: Duration,
    /// Requests served on one connection before it is closed (Kong's
    /// `nginx_http_keepalive_requests`, 10000).
    pub keepalive_requests: u32,
    /// Request line and header sizes (nginx `large_client_header_buffers 4 8k`).
    pub header: HeaderLimits,
    /// Open client connections per worker thread; more are closed at once (nginx
    /// `worker_connections`).
    pub connections_per_worker: usize,
    /// Largest upstream response body read whole for buffered proxying (the `response`
    /// phase); a larger one fails the request with 502.
    pub buffered_response: usize,
    /// nginx's `client_body_buffer_size` (Kong: 8k): a request body larger than this is one
    /// nginx keeps in a file, which `kong.request.get_raw_body()` answers only when given a
    /// `max_allowed_file_size`.
    pub body_buffer: usize,
    /// How long an idle upstream keep-alive connection stays pooled (Kong's
    /// `upstream_keepalive_idle_timeout`, 60 s); `None` keeps it until the upstream closes it
    /// or the pool needs its place (Kong's `0`).
    pub upstream_idle_timeout: Option<Duration>,
}

impl Default for ClientLimits {
    fn default() -> Self {
        ClientLimits {
            header_timeout: Duration::from_secs(60),
            body_timeout: Duration::from_secs(60),
            keepalive_timeout: Duration::from_secs(75),
            keepalive_requests: 10_000,
            header: header_buffers(4, 8 << 10),
            connections_per_worker: 16_384,
            buffered_response: 64 << 20,
            body_buffer: 8 << 10,
            upstream_idle_timeout: Some(Duration::from_secs(60)),
        }
    }
}

/// The limits `large_client_header_buffers <count> <size>` sets: the request line and each
/// header line must fit in one buffer, the whole header in all of them.
pub fn header_buffers(count: usize, size: usize) -> HeaderLimits {
    HeaderLimits {
        request_line: size,
        header_line: size,
        total: count.saturating_mul(size),
    }
}

/// Parses nginx's `large_client_header_buffers` value (`"4 8k"`, `"8 16k"`, `"2 1m"`).
pub fn parse_header_buffers(text: &str) -> Result<HeaderLimits, String> {
    let mut parts = text.split_whitespace();
    let (Some(count), Some(size), None) = (parts.next(), parts.next(), parts.next()) else {
        return Err(format!(
            "expected \"<count> <size>\" such as \"4 8k\", got {text:?}"
        ));
    };
    let count: usize = count
        .parse()
        .ok()
        .filter(|c| *c > 0)
        .ok_or_else(|| format!("buffer count {count:?} is not a positive integer"))?;
    let size = parse_size(size)?;
    Ok(header_buffers(count, size))
}

/// nginx's size syntax: bytes, or a number with `k`/`m`.
pub fn parse_size(text: &str) -> Result<usize, String> {
    let lower = text.to_ascii_lowercase();
    let (digits, unit) = match lower.strip_suffix('k') {
        Some(d) => (d, 1 << 10),
        None => match lower.strip_suffix('m') {
            Some(d) => (d, 1 << 20),
            None => (lower.as_str(), 1),
        },
    };
    digits
        .parse::<usize>()
        .ok()
        .filter(|n| *n > 0)
        .map(|n| n.saturating_mul(unit))
        .ok_or_else(|| format!("size {text:?} is not a number of bytes (e.g. 8k)"))
}

impl ClientLimits {
    /// Pingora's server options carrying these limits (`h2c` as asked).
    pub fn server_options(&self, h2c: bool) -> HttpServerOptions {
        let mut options = HttpServerOptions::default();
        options.h2c = h2c;
        options.header_timeout = Some(self.header_timeout);
        options.header_limits = Some(self.header);
        options.keepalive_request_limit = Some(self.keepalive_requests);
        // An HTTP/2 connection without streams is idle like an HTTP/1 keepalive one.
        options.h2_idle_timeout = Some(self.keepalive_timeout);
        options
    }

    /// Applies the per-request settings to a session whose header was just read, and checks
    /// the header as nginx does before Kong runs (a 400 when it fails).
    pub fn prepare(&self, session: &mut Session) -> pingora::Result<()> {
        check_host(session)?;
        check_content_length(session)?;
        let downstream = session.as_downstream_mut();
        // Serve pipelined requests in order (nginx does); what a reused connection reads past
        // the current request is kept for the next one.
        downstream.set_pipelining_enabled(true);
        // A response sent before the body was read (a plugin's 401) keeps the connection: the
        // rest of the body is drained, within the body timeout, before the next request.
        downstream.set_close_on_response_before_downstream_finish(false);
        downstream.set_total_drain_timeout(Some(self.body_timeout));
        // An upgraded connection (WebSocket) may stay quiet on the client side while the
        // upstream talks: its reads are bounded by the service's timeouts, not this one.
        if !downstream
            .req_header()
            .headers
            .contains_key(http::header::UPGRADE)
        {
            downstream.set_read_timeout(Some(self.body_timeout));
        }
        if downstream.get_keepalive().is_some() {
            downstream.set_keepalive(Some(self.keepalive_timeout.as_secs().max(1)));
        }
        Ok(())
    }
}

/// RFC 9112 section 3.2: an HTTP/1.1 request without Host, or with a Host that is not a
/// valid authority, is a 400 (nginx: "client sent HTTP/1.1 request without Host header",
/// "client sent invalid host header").
fn check_host(session: &Session) -> pingora::Result<()> {
    let req = session.req_header();
    if !matches!(req.version, http::Version::HTTP_11 | http::Version::HTTP_10) {
        return Ok(());
    }
    match req.headers.get(http::header::HOST) {
        None if req.version == http::Version::HTTP_11 && req.uri.authority().is_none() => {
            bad_request("HTTP/1.1 request without Host")
        }
        None => Ok(()),
        Some(host) if !valid_host(host.as_bytes()) => bad_request("invalid Host header"),
        Some(_) => Ok(()),
    }
}

/// nginx takes one Content-Length field of digits only ("client sent duplicate header line",
/// "client sent invalid \"Content-Length\" header"): a 400. Pingora refuses lengths that
/// differ but accepts a length repeated (`3, 3`, or the field twice), which it would forward
/// as it came.
fn check_content_length(session: &Session) -> pingora::Result<()> {
    let mut values = session
        .req_header()
        .headers
        .get_all(http::header::CONTENT_LENGTH)
        .iter();
    let Some(first) = values.next() else {
        return Ok(());
    };
    if values.next().is_some() {
        bad_request("duplicate Content-Length header")
    } else if first.is_empty() || !first.as_bytes().iter().all(u8::is_ascii_digit) {
        bad_request("invalid Content-Length header")
    } else {
        Ok(())
    }
}

/// The 400 a request header check answers, blamed on the client.
fn bad_request(why: &'static str) -> pingora::Result<()> {
    let mut e = Error::explain(ErrorType::HTTPStatus(400), why);
    e.as_down();
    Err(e)
}

/// nginx's `ngx_http_validate_host`: no whitespace, controls, `/` or `\`, no leading `.`
/// and no `..`; an IPv6 literal in brackets.
fn valid_host(host: &[u8]) -> bool {
    if host.is_empty() || host[0] == b'.' || host.windows(2).any(|w| w == b"..") {
        return false;
    }
    if host.starts_with(b"[") {
        return host.iter().skip(1).any(|&b| b == b']')
            && !host.iter().any(|&b| b <= b' ' || b == 0x7f || b == b'/');
    }
    !host
        .iter()
        .any(|&b| b <= b' ' || b == 0x7f || b == b'/' || b == b'\\' || b == b'[' || b == b']')
}

/// Kong's message for a status the HTTP layer answers itself (kong/error_handlers.lua).
pub fn status_message(status: u16) -> &'static str {
    match status {
        400 => "Bad request",
        404 => "Not found",
        405 => "Method not allowed",
        408 => "Request timeout",
        411 => "Length required",
        412 => "Precondition failed",
        413 => "Payload too large",
        414 => "URI too long",
        417 => "Expectation failed",
        494 => "Request header or cookie too large",
        502 => super::respond::messages::BAD_GATEWAY,
        503 => "The upstream server is currently unavailable",
        504 => "The upstream server is timing out",
        _ => super::respond::messages::UNEXPECTED,
    }
}

/// The response for an error the HTTP layer writes before the gateway sees the request (a
/// malformed or oversized header, a header timeout, CONNECT): Kong's JSON body with this
/// product's `Server` header. 494 goes out as 400 with its own message, as Kong sends it.
pub fn error_response(status: u16) -> (ResponseHeader, Bytes) {
    let message = status_message(status);
    let status = if status == 494 { 400 } else { status };
    let body = Bytes::from(serde_json::json!({ "message": message }).to_string());
    let mut resp = match ResponseHeader::build(status, Some(5)) {
        Ok(r) => r,
        Err(_) => ResponseHeader::build(500, Some(5)).expect("500 is a valid status"),
    };
    for (name, value) in [
        ("Content-Type", "application/json; charset=utf-8"),
        ("Server", PRODUCT),
        ("Content-Length", &body.len().to_string()),
        ("Connection", "close"),
    ] {
        let _ = resp.insert_header(name, value);
    }
    (resp, body)
}

thread_local! {
    /// Client connections open on this worker thread.
    static OPEN: Cell<usize> = const { Cell::new(0) };
}

/// A server application with at most `max` open connections per worker thread: a connection
/// past the cap is closed as soon as it is accepted, so a flood of idle connections cannot
/// starve the others of memory or file descriptors. (Pingora runs without work stealing, so a
/// connection's task stays on the thread that counted it.)
pub struct ConnectionCap<A> {
    app: Arc<A>,
    max: usize,
}

impl<A> ConnectionCap<A> {
    /// Wraps `app`.
    pub fn new(app: A, max: usize) -> Self {
        ConnectionCap {
            app: Arc::new(app),
            max: max.max(1),
        }
    }
}

struct Counted;

impl Counted {
    fn enter(max: usize) -> Option<Counted> {
        OPEN.with(|open| {
            (open.get() < max).then(|| {
                open.set(open.get() + 1);
                Counted
            })
        })
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        crate::metrics::connections::closed();
        OPEN.with(|open| open.set(open.get().saturating_sub(1)));
    }
}

#[async_trait]
impl<A: ServerApp + Send + Sync + 'static> ServerApp for ConnectionCap<A> {
    async fn process_new(
        self: &Arc<Self>,
        stream: Stream,
        shutdown: &ShutdownWatch,
    ) -> Option<Stream> {
        let counted = Counted::enter(self.max);
        crate::metrics::connections::accepted(counted.is_some());
        let Some(_counted) = counted else {
            tracing::warn!(
                max = self.max,
                "connection refused: the worker has reached its connection cap"
            );
            return None;
        };
        self.app.process_new(stream, shutdown).await
    }

    async fn cleanup(&self) {
        self.app.cleanup().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_buffers_parse_as_nginx_writes_them() {
        let l = parse_header_buffers("4 8k").unwrap();
        assert_eq!(
            (l.request_line, l.header_line, l.total),
            (8192, 8192, 32768)
        );
        assert_eq!(parse_header_buffers("2 1m").unwrap().total, 2 << 20);
        assert!(parse_header_buffers("8k").is_err());
        assert!(parse_header_buffers("0 8k").is_err());
        assert!(parse_header_buffers("4 lots").is_err());
    }

    #[test]
    fn hosts_are_validated_like_nginx() {
        for ok in ["example.com", "example.com:8000", "[::1]:80", "a-b.c_d"] {
            assert!(valid_host(ok.as_bytes()), "{ok}");
        }
        for bad in ["", "a b", "a/b", ".a", "a..b", "a\\b", "a\tb"] {
            assert!(!valid_host(bad.as_bytes()), "{bad:?}");
        }
    }

    #[test]
    fn errors_carry_kongs_messages() {
        let (resp, body) = error_response(494);
        assert_eq!(resp.status.as_u16(), 400);
        assert_eq!(
            body,
            Bytes::from(r#"{"message":"Request header or cookie too large"}"#)
        );
        assert_eq!(resp.headers.get("server").unwrap(), PRODUCT);
        let (resp, _) = error_response(414);
        assert_eq!(resp.status.as_u16(), 414);
    }
}
