//! PROXY protocol (v1 text and v2 binary) on the listeners that ask for it (Kong's
//! `proxy_listen = 0.0.0.0:8000 proxy_protocol`): an L4 balancer writes the client's address
//! before the first byte of HTTP or TLS. The header is read once per connection, before any
//! other byte, within the client header timeout; a connection without a valid one is closed (as
//! nginx does). As in nginx, the connection's peer stays the balancer: the address is the
//! client's only with `real_ip_header = proxy_protocol` and the balancer in `trusted_ips`
//! ([`super::realip`]); plugins read it as `ngx.var.proxy_protocol_addr`.

use std::net::SocketAddr;
use std::time::Duration;

use async_trait::async_trait;
use pingora::protocols::l4::stream::Stream as L4Stream;
use pingora::protocols::raw_connect::ProxyDigest;
use pingora::protocols::{GetProxyDigest, GetSocketDigest};
use pingora::proxy::Session;
use tokio::io::AsyncReadExt;

/// The longest header read: v1 is at most 107 bytes; v2 carries TLVs (bounded here).
const MAX_HEADER: usize = 4096;

/// What the balancer said about a connection.
#[derive(Debug, Clone, Copy)]
pub struct Proxied {
    /// The client's address (None for `UNKNOWN`/`LOCAL` headers: health checks).
    pub source: Option<SocketAddr>,
}

/// Reads the PROXY protocol header on the connections of the listeners that ask for it.
pub struct Reader {
    /// Listen addresses with `proxy_protocol`.
    listeners: Vec<SocketAddr>,
    timeout: Duration,
}

impl Reader {
    /// A reader for `listeners`, each header within `timeout`.
    pub fn new(listeners: Vec<SocketAddr>, timeout: Duration) -> Reader {
        Reader { listeners, timeout }
    }

    /// Whether a connection accepted on `local` came through a `proxy_protocol` listener.
    fn wants(&self, local: SocketAddr) -> bool {
        self.listeners
            .iter()
            .any(|l| l.port() == local.port() && (l.ip().is_unspecified() || l.ip() == local.ip()))
    }
}

#[async_trait]
impl pingora::listeners::PreTlsProcess for Reader {
    async fn process(&self, stream: &mut L4Stream) -> pingora::Result<()> {
        let local = stream
            .get_socket_digest()
            .and_then(|d| d.local_addr().and_then(|a| a.as_inet()).copied());
        if !local.is_some_and(|l| self.wants(l)) {
            return Ok(());
        }
        let proxied = match tokio::time::timeout(self.timeout, read(stream)).await {
            Err(_) => Err("timed out".to_string()),
            Ok(r) => r,
        }
        .map_err(|e| {
            tracing::info!(error = %e, "closing a connection without a valid PROXY protocol header");
            pingora::Error::explain(pingora::ErrorType::AcceptError, "PROXY protocol header")
        })?;
        let digest = ProxyDigest::new(
            Box::new(pingora::http::ResponseHeader::build(200, None)?),
            Some(Box::new(proxied)),
        );
        stream.set_proxy_digest(digest);
        Ok(())
    }
}

/// Reads and parses the header; bytes read past it are given back to the stream.
async fn read(stream: &mut L4Stream) -> Result<Proxied, String> {
    let mut buf = Vec::with_capacity(128);
    let mut chunk = [0u8; 512];
    loop {
        let n = stream
            .read(&mut chunk)
            .await
            .map_err(|e| format!("read: {e}"))?;
        if n == 0 {
            return Err("closed before the header ended".into());
        }
        buf.extend_from_slice(&chunk[..n]);
        match parse(&buf)? {
            Some((proxied, used)) => {
                stream.rewind(&buf[used..]);
                return Ok(proxied);
            }
            None if buf.len() >= MAX_HEADER => return Err("header too long".into()),
            None => {}
        }
    }
}

/// The header at the start of `buf` and its length; None while it is incomplete.
fn parse(buf: &[u8]) -> Result<Option<(Proxied, usize)>, String> {
    use ppp::{HeaderResult, PartialResult};
    let result = HeaderResult::parse(buf);
    if result.is_incomplete() {
        return Ok(None);
    }
    match result {
        HeaderResult::V1(Ok(h)) => {
            let source = match h.addresses {
                ppp::v1::Addresses::Tcp4(a) => {
                    Some(SocketAddr::new(a.source_address.into(), a.source_port))
                }
                ppp::v1::Addresses::Tcp6(a) => {
                    Some(SocketAddr::new(a.source_address.into(), a.source_port))
                }
                ppp::v1::Addresses::Unknown => None,
            };
            Ok(Some((Proxied { source }, h.header.len())))
        }
        HeaderResult::V2(Ok(h)) => {
            let source = match (&h.command, &h.addresses) {
                (ppp::v2::Command::Proxy, ppp::v2::Addresses::IPv4(a)) => {
                    Some(SocketAddr::new(a.source_address.into(), a.source_port))
                }
                (ppp::v2::Command::Proxy, ppp::v2::Addresses::IPv6(a)) => {
                    Some(SocketAddr::new(a.source_address.into(), a.source_port))
                }
                _ => None,
            };
            Ok(Some((Proxied { source }, h.len())))
        }
        HeaderResult::V1(Err(e)) => Err(format!("v1: {e}")),
        HeaderResult::V2(Err(e)) => Err(format!("v2: {e}")),
    }
}

/// What the balancer said about the connection of `session` (None without PROXY protocol).
pub fn proxied(session: &Session) -> Option<Proxied> {
    session
        .digest()?
        .proxy_digest
        .as_ref()?
        .user_data
        .as_ref()?
        .downcast_ref::<Proxied>()
        .copied()
}

/// The client's address the balancer gave for the connection of `session`.
pub fn source(session: &Session) -> Option<SocketAddr> {
    proxied(session)?.source
}
