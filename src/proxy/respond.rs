//! Responses the gateway writes itself: Kong's JSON errors and plugin exits.

use pingora::http::ResponseHeader;
use pingora::proxy::Session;

use super::headers::{names, PutNamed};
use crate::plugins::Exit;

/// `Via` and `Server` token of this product.
pub const PRODUCT: &str = concat!("sluice/", env!("CARGO_PKG_VERSION"));
/// The `Via` header value added to proxied and generated responses.
pub const VIA: &str = concat!("1.1 sluice/", env!("CARGO_PKG_VERSION"));

/// Kong's messages for the errors the gateway produces itself.
pub mod messages {
    /// 413, request-size-limiting on a streamed body.
    pub const TOO_LARGE: &str = "Request size limit exceeded";
    /// 415, a plain HTTP request on a gRPC-only route.
    pub const NON_GRPC: &str = "Non-gRPC request matched gRPC route";
    /// 404, no route matched.
    pub const NO_ROUTE: &str = "no Route matched with those values";
    /// 503, route without service.
    pub const NO_SERVICE: &str = "no Service found with those values";
    /// 502, upstream connection failure or bad response.
    pub const BAD_GATEWAY: &str = "An invalid response was received from the upstream server";
    /// 504, upstream timeout.
    pub const TIMEOUT: &str = "The upstream server is timed out";
    /// 503, no target.
    pub const NO_PEER: &str = "failure to get a peer from the ring-balancer";
    /// 500, plugin or internal error.
    pub const UNEXPECTED: &str = "An unexpected error occurred";
    /// 426, https-only route over http.
    pub const USE_HTTPS: &str = "Please use HTTPS protocol";
}

/// The response header of an exit: its headers, content-length, server and latency.
pub fn exit_header(exit: &Exit, latency_ms: u128) -> pingora::Result<ResponseHeader> {
    let mut resp = ResponseHeader::build(exit.status, Some(exit.headers.len() + 4))?;
    for (name, value) in &exit.headers {
        resp.append_header(name.clone(), value.as_str())?;
    }
    // Kong sets Content-Length unless the plugin gave one; with a body its length wins (a
    // false one would break the connection), without one the plugin's stands (a HEAD answer).
    if !exit.body.is_empty() || resp.headers.get(http::header::CONTENT_LENGTH).is_none() {
        resp.put(&names::CONTENT_LENGTH, exit.body.len().to_string())?;
    }
    resp.put(&names::SERVER, PRODUCT)?;
    resp.put(&names::X_KONG_RESPONSE_LATENCY, latency_ms.to_string())?;
    Ok(resp)
}

/// Writes `exit` as the whole response. `latency_ms` goes into `X-Kong-Response-Latency`.
pub async fn write_exit(
    session: &mut Session,
    exit: &Exit,
    latency_ms: u128,
    header_filter: impl FnOnce(&mut ResponseHeader),
) -> pingora::Result<()> {
    let mut resp = exit_header(exit, latency_ms)?;
    header_filter(&mut resp);
    let head_only = session.req_header().method == http::Method::HEAD || exit.body.is_empty();
    session
        .write_response_header(Box::new(resp), head_only)
        .await?;
    if !head_only {
        session
            .write_response_body(Some(exit.body.clone()), true)
            .await?;
    }
    Ok(())
}
