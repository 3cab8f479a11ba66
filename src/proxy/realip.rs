//! The client behind trusted proxies: Kong's `trusted_ips`, `real_ip_header` and
//! `real_ip_recursive` with nginx's realip semantics (set_real_ip_from, real_ip_header,
//! real_ip_recursive).
//!
//! A request whose connection comes from a trusted address takes its client address from the
//! configured header (or from the PROXY protocol header of the connection). For a list such as
//! X-Forwarded-For the last entry is taken; recursively, entries that are themselves trusted
//! are skipped from the right, and when all are, the leftmost is taken. An entry that is not an
//! address stops the walk at the last good one (none: the peer stays the client). Kong reports
//! the connection's address as `kong.client.get_ip()` and this one as `get_forwarded_ip()`
//! (nginx's `$realip_remote_addr` and `$remote_addr`); plugins, the log serializer, conditions
//! and the upstream's X-Real-IP see the latter.

use std::net::{IpAddr, SocketAddr};
use std::sync::OnceLock;

use ipnet::IpNet;

/// Where a trusted peer's client address is read from.
#[derive(Debug, Clone)]
pub enum Source {
    /// A request header (X-Real-IP by default, or X-Forwarded-For).
    Header(http::HeaderName),
    /// The source address of the connection's PROXY protocol header.
    ProxyProtocol,
}

/// The operator's settings.
#[derive(Debug, Clone)]
pub struct Settings {
    trusted: Vec<IpNet>,
    /// `unix:` is trusted (connections over a Unix socket).
    unix: bool,
    source: Source,
    recursive: bool,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            trusted: Vec::new(),
            unix: false,
            source: Source::Header(http::HeaderName::from_static("x-real-ip")),
            recursive: false,
        }
    }
}

impl Settings {
    /// Parses Kong's settings: `trusted_ips` (comma-separated IPs and CIDR ranges, `unix:`;
    /// empty: none), `real_ip_header` (a header name or `proxy_protocol`), `real_ip_recursive`.
    pub fn parse(trusted_ips: &str, header: &str, recursive: bool) -> Result<Settings, String> {
        let mut s = Settings {
            recursive,
            ..Settings::default()
        };
        for entry in trusted_ips
            .split(',')
            .map(str::trim)
            .filter(|e| !e.is_empty())
        {
            if entry == "unix:" {
                s.unix = true;
                continue;
            }
            let net = match entry.parse::<IpNet>() {
                Ok(n) => n.trunc(),
                Err(_) => match entry.parse::<IpAddr>() {
                    Ok(ip) => IpNet::from(ip),
                    Err(_) => {
                        return Err(format!(
                            "trusted_ips: {entry:?} is not an IP address, a CIDR range or unix:"
                        ))
                    }
                },
            };
            s.trusted.push(net);
        }
        s.source = if header.eq_ignore_ascii_case("proxy_protocol") {
            Source::ProxyProtocol
        } else {
            Source::Header(
                http::HeaderName::from_bytes(header.trim().as_bytes())
                    .map_err(|_| format!("real_ip_header: {header:?} is not a header name"))?,
            )
        };
        Ok(s)
    }

    /// Whether `ip` is a trusted proxy.
    pub fn is_trusted(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        self.trusted.iter().any(|n| n.contains(&ip))
    }

    /// Whether the client address is read from the PROXY protocol header.
    pub fn uses_proxy_protocol(&self) -> bool {
        matches!(self.source, Source::ProxyProtocol)
    }

    /// The client of a request from `peer` (None: a Unix socket peer) carrying `headers`, over
    /// a connection whose PROXY protocol header named `proxied`. Port 0: not known.
    pub fn client(
        &self,
        peer: Option<SocketAddr>,
        headers: &http::HeaderMap,
        proxied: Option<SocketAddr>,
    ) -> Option<SocketAddr> {
        let trusted = match peer {
            Some(p) => self.is_trusted(p.ip()),
            None => self.unix,
        };
        if !trusted {
            return peer;
        }
        let found = match &self.source {
            Source::ProxyProtocol => proxied,
            Source::Header(name) => {
                let values: Vec<&str> = if name.as_str() == "x-forwarded-for" {
                    // Every X-Forwarded-For header, in order, as one list.
                    headers
                        .get_all(name)
                        .iter()
                        .filter_map(|v| v.to_str().ok())
                        .collect()
                } else {
                    headers
                        .get(name)
                        .and_then(|v| v.to_str().ok())
                        .into_iter()
                        .collect()
                };
                self.walk(&values)
            }
        };
        found.or(peer)
    }

    /// The entry nginx takes from an address list, walking from the right.
    fn walk(&self, values: &[&str]) -> Option<SocketAddr> {
        let mut found = None;
        for entry in values
            .iter()
            .rev()
            .flat_map(|v| v.rsplit(','))
            .map(str::trim)
            .filter(|e| !e.is_empty())
        {
            let Some(addr) = parse_entry(entry) else {
                return found;
            };
            found = Some(addr);
            if !self.recursive || !self.is_trusted(addr.ip()) {
                break;
            }
        }
        found
    }
}

/// An address list entry: `ip`, `ip:port`, `[v6]` or `[v6]:port` (port 0 when absent).
fn parse_entry(entry: &str) -> Option<SocketAddr> {
    if let Ok(ip) = entry.parse::<IpAddr>() {
        return Some(SocketAddr::new(canonical(ip), 0));
    }
    if let Ok(sa) = entry.parse::<SocketAddr>() {
        return Some(SocketAddr::new(canonical(sa.ip()), sa.port()));
    }
    let bare = entry.strip_prefix('[')?.strip_suffix(']')?;
    bare.parse::<IpAddr>()
        .ok()
        .map(|ip| SocketAddr::new(canonical(ip), 0))
}

/// IPv4-mapped IPv6 addresses as IPv4 (a dual-stack listener reports them so).
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    }
}

static SETTINGS: OnceLock<Settings> = OnceLock::new();

/// Sets the process's settings (once, at startup).
pub fn set(settings: Settings) {
    let _ = SETTINGS.set(settings);
}

/// The process's settings (default: nothing trusted).
pub fn settings() -> &'static Settings {
    SETTINGS.get_or_init(Settings::default)
}

/// `kong.ip.is_trusted`.
pub fn is_trusted(ip: IpAddr) -> bool {
    settings().is_trusted(ip)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> http::HeaderMap {
        let mut h = http::HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        h
    }

    fn peer(s: &str) -> Option<SocketAddr> {
        Some(s.parse().unwrap())
    }

    #[test]
    fn untrusted_peers_are_the_client() {
        let s = Settings::parse("10.0.0.0/8", "X-Forwarded-For", true).unwrap();
        let h = headers(&[("x-forwarded-for", "1.1.1.1")]);
        assert_eq!(s.client(peer("9.9.9.9:5"), &h, None), peer("9.9.9.9:5"));
    }

    #[test]
    fn non_recursive_takes_the_last_entry() {
        let s = Settings::parse("10.0.0.0/8", "X-Forwarded-For", false).unwrap();
        let h = headers(&[("x-forwarded-for", "1.1.1.1, 10.0.0.7")]);
        assert_eq!(s.client(peer("10.0.0.1:5"), &h, None), peer("10.0.0.7:0"));
    }

    #[test]
    fn recursive_skips_trusted_entries_across_headers() {
        let s = Settings::parse("10.0.0.0/8,unix:", "x-forwarded-for", true).unwrap();
        let h = headers(&[
            ("x-forwarded-for", "3.3.3.3, 2.2.2.2"),
            ("x-forwarded-for", "10.0.0.9"),
        ]);
        assert_eq!(s.client(peer("10.0.0.1:5"), &h, None), peer("2.2.2.2:0"));
        // All trusted: the leftmost.
        let h = headers(&[("x-forwarded-for", "10.1.1.1, 10.0.0.9")]);
        assert_eq!(s.client(peer("10.0.0.1:5"), &h, None), peer("10.1.1.1:0"));
        // Garbage stops the walk at the last address.
        let h = headers(&[("x-forwarded-for", "junk, 10.0.0.9")]);
        assert_eq!(s.client(peer("10.0.0.1:5"), &h, None), peer("10.0.0.9:0"));
        let h = headers(&[("x-forwarded-for", "junk")]);
        assert_eq!(s.client(peer("10.0.0.1:5"), &h, None), peer("10.0.0.1:5"));
        // A Unix socket peer, trusted with unix:.
        let h = headers(&[("x-forwarded-for", "[2001:db8::1]:443")]);
        assert_eq!(s.client(None, &h, None), peer("[2001:db8::1]:443"));
    }

    #[test]
    fn x_real_ip_and_proxy_protocol() {
        let s = Settings::parse("127.0.0.1", "X-Real-IP", false).unwrap();
        let h = headers(&[("x-real-ip", "5.5.5.5:80")]);
        assert_eq!(s.client(peer("127.0.0.1:5"), &h, None), peer("5.5.5.5:80"));
        let s = Settings::parse("0.0.0.0/0,::/0", "proxy_protocol", false).unwrap();
        assert_eq!(
            s.client(peer("[::ffff:127.0.0.1]:5"), &h, peer("6.6.6.6:7")),
            peer("6.6.6.6:7")
        );
        assert!(Settings::parse("1.2.3.4/33", "x", false).is_err());
        assert!(Settings::parse("", "bad header", false).is_err());
    }
}
