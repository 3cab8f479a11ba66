//! Listen addresses in Kong's syntax (`proxy_listen`, `admin_listen`, `status_listen`):
//! comma-separated `<ip>:<port> [flags]` entries or `off`, and the `*_listeners` objects Kong's
//! `GET /` reports for them (the Kong Ingress Controller reads `proxy_listeners`).

use pingora::listeners::TcpSocketOptions;
use pingora::services::listening::Service;
use serde_json::{json, Value};

/// One listen entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listener {
    /// `ip:port` (IPv6 in brackets).
    pub addr: String,
    /// TLS (Kong's `ssl` flag).
    pub ssl: bool,
    /// HTTP/2 asked for (offered by ALPN on TLS listeners whatever the flag says).
    pub http2: bool,
    /// The PROXY protocol header is read before anything else.
    pub proxy_protocol: bool,
    /// The flags as written, except `http2` (Kong's `listener` string keeps the others).
    pub flags: Vec<String>,
}

/// Flags nginx knows that change nothing here: every listener reuses ports, and the kernel
/// defaults stand for the rest.
const ACCEPTED: &[&str] = &["deferred", "bind", "reuseport"];

impl Listener {
    /// Parses one entry (`0.0.0.0:8443 http2 ssl reuseport backlog=16384`).
    pub fn parse(entry: &str) -> Result<Listener, String> {
        let mut parts = entry.split_whitespace();
        let addr = parts
            .next()
            .ok_or_else(|| "empty listen entry".to_string())?
            .to_string();
        let port = addr.rsplit_once(':').map(|(_, p)| p);
        if port.is_none_or(|p| p.parse::<u16>().is_err()) {
            return Err(format!("{entry:?}: expected <ip>:<port> [flags]"));
        }
        let mut l = Listener {
            addr,
            ssl: false,
            http2: false,
            proxy_protocol: false,
            flags: Vec::new(),
        };
        for flag in parts {
            match flag {
                "ssl" => l.ssl = true,
                "http2" => {
                    l.http2 = true;
                    continue;
                }
                "proxy_protocol" => l.proxy_protocol = true,
                f if ACCEPTED.contains(&f)
                    || f.starts_with("backlog=")
                    || f.starts_with("ipv6only=")
                    || f.starts_with("so_keepalive=") => {}
                other => {
                    return Err(format!(
                        "{entry:?}: unknown listen flag {other:?} (known: ssl, http2, proxy_protocol, reuseport, deferred, bind, backlog=N, ipv6only=on|off, so_keepalive=...)"
                    ))
                }
            }
            l.flags.push(flag.to_string());
        }
        Ok(l)
    }

    /// Parses a comma-separated list; `off` (or nothing) is no listener.
    pub fn parse_list(list: &str) -> Result<Vec<Listener>, String> {
        let entries: Vec<&str> = list
            .split(',')
            .map(str::trim)
            .filter(|e| !e.is_empty())
            .collect();
        if entries.first().is_none_or(|e| *e == "off") {
            return Ok(Vec::new());
        }
        entries.into_iter().map(Listener::parse).collect()
    }

    /// For an IPv6 address, whether it binds IPv6 only (nginx's default: on, unless the entry
    /// says `ipv6only=off`); None for IPv4.
    pub fn ipv6_only(&self) -> Option<bool> {
        self.addr
            .starts_with('[')
            .then(|| !self.flags.iter().any(|f| f == "ipv6only=off"))
    }

    /// Kong's object for the entry in `GET /`'s `*_listeners`.
    pub fn kong_json(&self) -> Value {
        let (ip, port) = self.addr.rsplit_once(':').unwrap_or((&self.addr, "0"));
        let has = |f: &str| self.flags.iter().any(|x| x == f);
        let mut listener = self.addr.clone();
        if !self.flags.is_empty() {
            listener.push(' ');
            listener.push_str(&self.flags.join(" "));
        }
        json!({
            "ip": ip,
            "port": port.parse::<u16>().unwrap_or(0),
            "listener": listener,
            "ssl": self.ssl,
            "http2": self.http2,
            "proxy_protocol": self.proxy_protocol,
            "deferred": has("deferred"),
            "bind": has("bind"),
            "reuseport": has("reuseport"),
        })
    }

    /// The entry as Kong's `*_listen` setting lists it.
    pub fn kong_string(&self) -> String {
        let mut s = self.addr.clone();
        if self.http2 {
            s.push_str(" http2");
        }
        for f in &self.flags {
            s.push(' ');
            s.push_str(f);
        }
        s
    }
}

/// Socket options of a listener: `[::]` binds IPv6 only unless `ipv6only=off`, as nginx does,
/// so that `0.0.0.0:8100, [::]:8100` (Kong's Helm chart) binds both.
fn socket_options(l: &Listener) -> Option<TcpSocketOptions> {
    let only = l.ipv6_only()?;
    let mut o = TcpSocketOptions::default();
    o.ipv6_only = Some(only);
    Some(o)
}

/// Adds a plain TCP listener to `service`.
pub fn add_tcp<A>(service: &mut Service<A>, l: &Listener) {
    match socket_options(l) {
        Some(o) => service.add_tcp_with_settings(&l.addr, o),
        None => service.add_tcp(&l.addr),
    }
}

/// Adds a TLS listener to `service`, certified by `selector`, offering HTTP/2 by ALPN.
pub fn add_tls<A>(
    service: &mut Service<A>,
    l: &Listener,
    selector: crate::proxy::tls::CertSelector,
) -> pingora::Result<()> {
    let mut settings = pingora::listeners::tls::TlsSettings::with_callbacks(Box::new(selector))?;
    settings.enable_h2();
    service.add_tls_with_settings(&l.addr, socket_options(l), settings);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::Listener;

    #[test]
    fn kong_listen_syntax() {
        let list =
            Listener::parse_list("0.0.0.0:8000 reuseport backlog=16384, 0.0.0.0:8443 http2 ssl")
                .unwrap();
        assert_eq!(list.len(), 2);
        assert!(!list[0].ssl && list[1].ssl && list[1].http2);
        let j = list[1].kong_json();
        assert_eq!(j["ip"], "0.0.0.0");
        assert_eq!(j["port"], 8443);
        assert_eq!(j["listener"], "0.0.0.0:8443 ssl");
        assert_eq!(list[0].kong_json()["reuseport"], true);
        assert!(Listener::parse_list("off").unwrap().is_empty());
        assert!(
            Listener::parse("[::1]:8001 proxy_protocol")
                .unwrap()
                .proxy_protocol
        );
        assert_eq!(
            Listener::parse("[::]:8100").unwrap().ipv6_only(),
            Some(true)
        );
        let dual = Listener::parse("[::]:8100 ipv6only=off").unwrap();
        assert_eq!(dual.ipv6_only(), Some(false));
        assert_eq!(list[0].ipv6_only(), None);
        assert!(Listener::parse("0.0.0.0:8000 quic").is_err());
        assert!(Listener::parse("localhost").is_err());
    }
}
