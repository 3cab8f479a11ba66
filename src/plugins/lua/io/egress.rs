//! Where plugin sockets may connect (the operator's `--lua-socket-allow`), and the counts of
//! what they did (`sluice_lua_socket_*` metrics).

use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

use ipnet::IpNet;

/// One allowed destination: a host (exact name, `*.suffix`, IP or CIDR) and a port or any.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Rule {
    host: Host,
    port: Option<u16>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Host {
    Any,
    Net(IpNet),
    Name(String),
    /// `*.example.com`: names ending in `.example.com`.
    Suffix(String),
    /// `unix:` sockets (a path prefix; empty for any).
    Unix(String),
}

/// The destinations plugin sockets may reach. Empty allows everything (the default).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Egress {
    rules: Vec<Rule>,
}

static EGRESS: OnceLock<Egress> = OnceLock::new();

/// Sets the process-wide policy (once, at startup).
pub fn set(policy: Egress) {
    let _ = EGRESS.set(policy);
}

fn policy() -> &'static Egress {
    static ANY: Egress = Egress { rules: Vec::new() };
    EGRESS.get().unwrap_or(&ANY)
}

impl Egress {
    /// Parses a comma-separated list of `host[:port]` entries: `10.0.0.0/8`, `10.1.2.3:6379`,
    /// `[::1]:443`, `api.example.com:443`, `*.svc.cluster.local`, `*:443` (any host, port
    /// 443), `unix:/run/` (Unix sockets under a path), or `*` for anything.
    pub fn parse(text: &str) -> Result<Egress, String> {
        let mut rules = Vec::new();
        for entry in text.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            rules.push(rule(entry).map_err(|e| format!("{entry:?}: {e}"))?);
        }
        if rules
            .iter()
            .any(|r| r.host == Host::Any && r.port.is_none())
        {
            rules.clear();
        }
        Ok(Egress { rules })
    }

    /// Whether a connection to `host` (as the plugin named it) and `port` may be attempted
    /// before resolution (true when only the address can decide).
    fn allows_name(&self, host: &str, port: u16) -> Option<bool> {
        if self.rules.is_empty() {
            return Some(true);
        }
        let host = host.to_ascii_lowercase();
        let by_name = self.rules.iter().any(|r| {
            r.port.is_none_or(|p| p == port)
                && match &r.host {
                    Host::Any => true,
                    Host::Name(n) => *n == host,
                    Host::Suffix(s) => host.ends_with(s.as_str()),
                    Host::Net(_) | Host::Unix(_) => false,
                }
        });
        by_name.then_some(true)
    }

    fn allows_ip(&self, ip: IpAddr, port: u16) -> bool {
        self.rules.is_empty()
            || self.rules.iter().any(|r| {
                r.port.is_none_or(|p| p == port)
                    && match &r.host {
                        Host::Any => true,
                        Host::Net(net) => net.contains(&ip),
                        _ => false,
                    }
            })
    }

    fn allows_unix(&self, path: &str) -> bool {
        self.rules.is_empty()
            || self.rules.iter().any(|r| match &r.host {
                Host::Unix(prefix) => path.starts_with(prefix.as_str()),
                _ => false,
            })
    }
}

fn rule(entry: &str) -> Result<Rule, String> {
    if let Some(path) = entry.strip_prefix("unix:") {
        return Ok(Rule {
            host: Host::Unix(path.to_string()),
            port: None,
        });
    }
    if entry == "*" {
        return Ok(Rule {
            host: Host::Any,
            port: None,
        });
    }
    // `[v6]:port`, `v4:port`, `name:port`; a bare IPv6 address or network has colons of its own.
    let (host, port) = if let Some(rest) = entry.strip_prefix('[') {
        let (h, tail) = rest.split_once(']').ok_or("missing ']'")?;
        (h, tail.strip_prefix(':'))
    } else if entry.matches(':').count() == 1 {
        let (h, p) = entry.split_once(':').ok_or("bad port")?;
        (h, Some(p))
    } else {
        (entry, None)
    };
    let port = match port {
        None | Some("*") => None,
        Some(p) => Some(p.parse::<u16>().map_err(|_| format!("bad port {p:?}"))?),
    };
    let host = if host == "*" {
        Host::Any
    } else if let Ok(net) = host.parse::<IpNet>() {
        Host::Net(net)
    } else if let Ok(ip) = host.parse::<IpAddr>() {
        Host::Net(IpNet::from(ip))
    } else if let Some(suffix) = host.strip_prefix("*.") {
        Host::Suffix(format!(".{}", suffix.to_ascii_lowercase()))
    } else if !host.is_empty()
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
    {
        Host::Name(host.to_ascii_lowercase())
    } else {
        return Err("expected an IP address, a CIDR range, a host name or *.suffix".into());
    };
    Ok(Rule { host, port })
}

/// Why a connection is refused.
fn refused(target: &str) -> String {
    format!("connection to {target} refused by the gateway's egress policy (--lua-socket-allow)")
}

/// Checks a destination before its name is resolved: Ok(true) when the name alone allows it,
/// Ok(false) when the resolved address must be checked with [`check_ip`].
pub fn check_name(host: &str, port: u16) -> Result<bool, String> {
    let p = policy();
    if p.allows_name(host, port) == Some(true) {
        return Ok(true);
    }
    if p.rules.iter().any(|r| matches!(r.host, Host::Net(_))) {
        return Ok(false);
    }
    count_connection(Outcome::Denied);
    Err(refused(&format!("{host}:{port}")))
}

/// Checks a resolved address.
pub fn check_ip(host: &str, ip: IpAddr, port: u16) -> Result<(), String> {
    if policy().allows_ip(ip, port) {
        Ok(())
    } else {
        count_connection(Outcome::Denied);
        Err(refused(&format!("{host}:{port}")))
    }
}

/// Checks a Unix socket path.
pub fn check_unix(path: &str) -> Result<(), String> {
    if policy().allows_unix(path) {
        Ok(())
    } else {
        count_connection(Outcome::Denied);
        Err(refused(&format!("unix:{path}")))
    }
}

/// How a connection attempt ended (the `result` label of the connections metric).
#[derive(Debug, Clone, Copy)]
pub enum Outcome {
    /// A new connection.
    Connected,
    /// Taken from the keepalive pool.
    Reused,
    /// Failed (refused, unreachable, timed out, name not resolved).
    Failed,
    /// Refused by the egress policy.
    Denied,
}

static CONNECTIONS: [AtomicU64; 4] = [const { AtomicU64::new(0) }; 4];
static BYTES: [AtomicU64; 2] = [const { AtomicU64::new(0) }; 2];

/// Counts a connection attempt.
pub fn count_connection(outcome: Outcome) {
    CONNECTIONS[outcome as usize].fetch_add(1, Ordering::Relaxed);
}

/// Counts bytes sent (`sent`) or received by plugin sockets.
pub fn count_bytes(sent: bool, n: usize) {
    BYTES[usize::from(!sent)].fetch_add(n as u64, Ordering::Relaxed);
}

/// Label values and their counts.
pub type Counts<const N: usize> = [(&'static str, u64); N];

/// `(result, count)` of connection attempts and `(direction, bytes)`, for the metrics.
pub fn totals() -> (Counts<4>, Counts<2>) {
    let c = |i: usize| CONNECTIONS[i].load(Ordering::Relaxed);
    let b = |i: usize| BYTES[i].load(Ordering::Relaxed);
    (
        [
            ("connected", c(0)),
            ("reused", c(1)),
            ("failed", c(2)),
            ("denied", c(3)),
        ],
        [("sent", b(0)), ("received", b(1))],
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_matches_entries() {
        let p = Egress::parse(
            "10.0.0.0/8, 127.0.0.1:6379, [::1]:443, api.example.com:443, *.svc.local, unix:/run/",
        )
        .unwrap();
        assert!(p.allows_ip("10.2.3.4".parse().unwrap(), 80));
        assert!(p.allows_ip("127.0.0.1".parse().unwrap(), 6379));
        assert!(!p.allows_ip("127.0.0.1".parse().unwrap(), 6380));
        assert!(p.allows_ip("::1".parse().unwrap(), 443));
        assert_eq!(p.allows_name("API.example.com", 443), Some(true));
        assert_eq!(p.allows_name("api.example.com", 80), None);
        assert_eq!(p.allows_name("redis.svc.local", 6379), Some(true));
        assert_eq!(p.allows_name("svc.local", 6379), None);
        assert!(p.allows_unix("/run/redis.sock"));
        assert!(!p.allows_unix("/tmp/x.sock"));
        assert!(Egress::parse("*").unwrap().rules.is_empty());
        assert!(Egress::parse("*:443")
            .unwrap()
            .allows_ip("1.2.3.4".parse().unwrap(), 443));
        assert!(Egress::parse("bad host!").is_err());
        assert!(Egress::parse("h:99999").is_err());
    }
}
