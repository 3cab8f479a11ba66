//! What the request's transport says and asks for: TLS server name, scheme, gRPC, response
//! framing, and the upstream peer's TLS material and HTTP version.

use pingora::http::ResponseHeader;
use pingora::proxy::Session;
use pingora::upstreams::peer::HttpPeer;

use super::tls;
use crate::config::model::Protocol;
use crate::snapshot::Snapshot;

/// Drops Content-Length (a body_filter may change the length) and, on HTTP/1.1, declares
/// the body chunked so the connection stays reusable.
pub(super) fn chunked_if_unsized(session: &Session, resp: &mut ResponseHeader) {
    resp.remove_header(&http::header::CONTENT_LENGTH);
    if !session.is_http2() && session.req_header().version == http::Version::HTTP_11 {
        let _ = resp.insert_header(http::header::TRANSFER_ENCODING, "chunked");
    }
}

/// The upstream's response ends with its header: a final status to HEAD, a 204 or 304, or
/// `Content-Length: 0` (Pingora then sends no body to the body filters).
pub(super) fn bodiless(session: &Session, resp: &ResponseHeader) -> bool {
    let status = resp.status.as_u16();
    status >= 200
        && (session.req_header().method == http::Method::HEAD
            || matches!(status, 204 | 304)
            || resp
                .headers
                .get(http::header::CONTENT_LENGTH)
                .is_some_and(|v| v.as_bytes() == b"0"))
}

/// The service's upstream TLS material (CA bundle, client certificate) and HTTP version:
/// gRPC services speak HTTP/2 (h2c in plain text), others HTTP/1.1.
pub(super) fn upstream_tls_and_version(
    peer: &mut HttpPeer,
    snap: &Snapshot,
    service: Option<usize>,
) {
    let Some(i) = service else {
        return;
    };
    let s = &snap.config.services[i];
    if let Some(ca) = snap.certs.service_ca.get(&i) {
        peer.options.ca = Some(ca.clone());
    }
    if let Some(cert) = s.client_certificate.and_then(|c| snap.certs.client.get(&c)) {
        peer.client_cert_key = Some(cert.clone());
    }
    if matches!(s.protocol, Protocol::Grpc | Protocol::Grpcs) {
        peer.options.set_http_version(2, 2);
    }
}

/// The server name the TLS client asked for (kept by the certificate selector).
pub(super) fn server_name(session: &Session) -> Option<String> {
    let digest = session.as_downstream().digest()?;
    let ssl = digest.ssl_digest.as_ref()?;
    ssl.extension.get::<tls::ServerName>().map(|n| n.0.clone())
}

/// Whether the request is a gRPC call (by its content type).
pub(super) fn is_grpc(session: &Session) -> bool {
    session
        .req_header()
        .headers
        .get(http::header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"))
}

/// Whether the request asks for a WebSocket upgrade.
pub(super) fn is_websocket(session: &Session) -> bool {
    session
        .req_header()
        .headers
        .get(http::header::UPGRADE)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"websocket"))
}

pub(super) fn scheme(session: &Session) -> &'static str {
    if session
        .as_downstream()
        .digest()
        .and_then(|d| d.ssl_digest.as_ref())
        .is_some()
    {
        "https"
    } else {
        "http"
    }
}
