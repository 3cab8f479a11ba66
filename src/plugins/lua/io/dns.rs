//! Name resolution for plugin sockets: hickory's async resolver with the system's
//! configuration (`/etc/resolv.conf`, `/etc/hosts`), one per worker thread (its connections
//! belong to that thread's runtime), with hickory's cache. IP literals are not looked up.

use std::net::IpAddr;
use std::sync::Arc;

use hickory_resolver::config::{ResolveHosts, ResolverConfig};
use hickory_resolver::name_server::TokioConnectionProvider;
use hickory_resolver::TokioResolver;

thread_local! {
    static RESOLVER: Arc<TokioResolver> = Arc::new(build());
}

fn build() -> TokioResolver {
    let mut builder = match TokioResolver::builder_tokio() {
        Ok(b) => b,
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the system's resolver configuration; plugin sockets resolve names from /etc/hosts only");
            TokioResolver::builder_with_config(
                ResolverConfig::new(),
                TokioConnectionProvider::default(),
            )
        }
    };
    builder.options_mut().use_hosts_file = ResolveHosts::Always;
    builder.build()
}

/// This worker's resolver (cheap to clone into a future).
pub fn resolver() -> Arc<TokioResolver> {
    RESOLVER.with(Arc::clone)
}

/// The address of `host`: an IP literal as is, a name through `resolver`. Errors use nginx's
/// wording ("<host> could not be resolved (3: Host not found)").
pub async fn resolve(resolver: &TokioResolver, host: &str) -> Result<IpAddr, String> {
    if let Some(ip) = literal(host) {
        return Ok(ip);
    }
    match resolver.lookup_ip(host).await {
        Ok(found) => found
            .iter()
            .next()
            .ok_or_else(|| format!("{host} could not be resolved (3: Host not found)")),
        Err(e) if e.is_no_records_found() => {
            Err(format!("{host} could not be resolved (3: Host not found)"))
        }
        Err(e) => Err(format!(
            "{host} could not be resolved (2: Server failure: {e})"
        )),
    }
}

/// `host` as an IP address, if it is one (IPv6 with or without brackets).
pub fn literal(host: &str) -> Option<IpAddr> {
    let bare = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    bare.parse().ok()
}
