//! Upstream address resolution with a small TTL cache, so a service named by DNS does not cost
//! a lookup per request. IP literals never touch the resolver.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::RwLock;
use std::time::{Duration, Instant};

/// How long a resolved address is reused.
const TTL: Duration = Duration::from_secs(30);

/// `(host, port)` → addresses and when they were resolved.
type Cache = HashMap<(String, u16), (Vec<SocketAddr>, Instant)>;

/// Resolves `host:port` to socket addresses.
#[derive(Default)]
pub struct Resolver {
    cache: RwLock<Cache>,
}

impl Resolver {
    /// The addresses of `host:port` (the first is used; the rest serve retries).
    pub async fn resolve(&self, host: &str, port: u16) -> std::io::Result<Vec<SocketAddr>> {
        if let Some(ip) = crate::config::checks::ip_literal(host) {
            return Ok(vec![SocketAddr::new(ip, port)]);
        }
        let key = (host.to_string(), port);
        if let Ok(cache) = self.cache.read() {
            if let Some((addrs, at)) = cache.get(&key) {
                if at.elapsed() < TTL {
                    return Ok(addrs.clone());
                }
            }
        }
        let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host, port)).await?.collect();
        if addrs.is_empty() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::NotFound,
                format!("{host} has no address"),
            ));
        }
        if let Ok(mut cache) = self.cache.write() {
            if cache.len() > 10_000 {
                cache.clear();
            }
            cache.insert(key, (addrs.clone(), Instant::now()));
        }
        Ok(addrs)
    }
}
