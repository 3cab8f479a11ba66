//! `ip-restriction`: allows or denies requests by the client's IP address, single addresses or
//! CIDR ranges (Kong's plugin hub: allow, deny, status, message). The address is the one the
//! connection came from; headers such as `X-Forwarded-For` are not trusted.

use std::net::IpAddr;
use std::sync::Arc;

use serde::Deserialize;

use super::{BuildCtx, Bundled};
use crate::plugins::{Exit, Flow, Instance, Phase, PhaseCtx, PluginError};

/// The plugin.
pub(super) static PLUGIN: Bundled = Bundled {
    name: "ip-restriction",
    priority: 990,
    schema: SCHEMA,
    build,
};

// Kong's schema, except that `status` must be an error status (400-599): Kong accepts any
// number and then fails every refused request with a 500.
const SCHEMA: &str = r#"
local typedefs = require "kong.db.schema.typedefs"
return {
  name = "ip-restriction",
  fields = {
    { protocols = typedefs.protocols { default = { "http", "https", "tcp", "tls", "grpc", "grpcs" } } },
    { config = { type = "record", fields = {
      { allow = { type = "array", elements = typedefs.ip_or_cidr } },
      { deny = { type = "array", elements = typedefs.ip_or_cidr } },
      { status = { type = "number", required = false, between = { 400, 599 } } },
      { message = { type = "string", required = false } },
    } } },
  },
  entity_checks = {
    { at_least_one_of = { "config.allow", "config.deny" } },
  },
}
"#;

#[derive(Debug, Deserialize)]
struct Conf {
    allow: Option<Vec<String>>,
    deny: Option<Vec<String>>,
    status: Option<f64>,
    message: Option<String>,
}

/// An address range: the network address (host bits cleared) and prefix length.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Cidr {
    net: IpAddr,
    prefix: u8,
}

impl Cidr {
    fn parse(s: &str) -> Result<Cidr, String> {
        let (ip, prefix) = match s.split_once('/') {
            Some((ip, p)) => (ip, Some(p)),
            None => (s, None),
        };
        let ip: IpAddr = ip
            .parse()
            .map_err(|_| format!("invalid ip or cidr range: {s:?}"))?;
        let max = if ip.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            Some(p) => p
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| format!("invalid ip or cidr range: {s:?}"))?,
            None => max,
        };
        // `::ffff:a.b.c.d/n` with n >= 96 is an IPv4 range (client addresses are compared in
        // their IPv4 form too).
        let (ip, prefix) = match canonical(ip) {
            IpAddr::V4(v4) if ip.is_ipv6() && prefix >= 96 => (IpAddr::V4(v4), prefix - 96),
            _ if ip.is_ipv6() => (ip, prefix),
            v4 => (v4, prefix),
        };
        Ok(Cidr {
            net: mask(ip, prefix),
            prefix,
        })
    }

    fn contains(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        ip.is_ipv4() == self.net.is_ipv4() && mask(ip, self.prefix) == self.net
    }
}

/// IPv4-mapped IPv6 addresses (`::ffff:a.b.c.d`) are treated as the IPv4 address.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    }
}

fn mask(ip: IpAddr, prefix: u8) -> IpAddr {
    match ip {
        IpAddr::V4(v4) => {
            let bits = u32::from(v4);
            let m = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
            IpAddr::V4((bits & m).into())
        }
        IpAddr::V6(v6) => {
            let bits = u128::from(v6);
            let m = u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
            IpAddr::V6((bits & m).into())
        }
    }
}

fn parse_list(list: Option<Vec<String>>) -> Result<Vec<Cidr>, String> {
    list.unwrap_or_default()
        .iter()
        .map(|s| Cidr::parse(s))
        .collect()
}

struct IpRestriction {
    allow: Vec<Cidr>,
    deny: Vec<Cidr>,
    status: u16,
    message: Option<String>,
}

fn build(ctx: &BuildCtx<'_>) -> Result<Arc<dyn Instance>, String> {
    let conf: Conf = ctx.decode()?;
    let status = conf.status.map_or(403.0, f64::trunc);
    Ok(Arc::new(IpRestriction {
        allow: parse_list(conf.allow)?,
        deny: parse_list(conf.deny)?,
        // The schema bounds it to 400..=599.
        status: status.clamp(400.0, 599.0) as u16,
        message: conf.message,
    }))
}

impl IpRestriction {
    fn refuse(&self, ip: &str) -> Flow {
        let message = match &self.message {
            Some(m) => m.clone(),
            None => format!("IP address not allowed: {ip}"),
        };
        tracing::warn!(plugin = "ip-restriction", client = ip, "{message}");
        Flow::Exit(Exit::message(self.status, &message))
    }
}

impl Instance for IpRestriction {
    fn phases(&self) -> &[Phase] {
        &[Phase::Access]
    }

    fn access(&self, ctx: &mut PhaseCtx<'_>) -> Result<Flow, PluginError> {
        let Some(ip) = ctx.client_ip() else {
            return Ok(Flow::Exit(Exit::message(
                403,
                "Cannot identify the client IP address, unix domain sockets are not supported.",
            )));
        };
        if self.deny.iter().any(|c| c.contains(ip)) {
            return Ok(self.refuse(&ip.to_string()));
        }
        if !self.allow.is_empty() && !self.allow.iter().any(|c| c.contains(ip)) {
            return Ok(self.refuse(&ip.to_string()));
        }
        Ok(Flow::Continue)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn cidrs_match_addresses_in_their_range() {
        let net = Cidr::parse("10.1.2.3/16").unwrap();
        assert_eq!(net.net, ip("10.1.0.0"));
        assert!(net.contains(ip("10.1.255.7")));
        assert!(!net.contains(ip("10.2.0.1")));
        assert!(net.contains(ip("::ffff:10.1.0.9")));
        assert!(!net.contains(ip("2001:db8::1")));
        let one = Cidr::parse("127.0.0.1").unwrap();
        assert!(one.contains(ip("127.0.0.1")) && !one.contains(ip("127.0.0.2")));
        let all = Cidr::parse("0.0.0.0/0").unwrap();
        assert!(all.contains(ip("8.8.8.8")));
        let v6 = Cidr::parse("2001:db8::/32").unwrap();
        assert!(v6.contains(ip("2001:db8:ffff::1")) && !v6.contains(ip("2001:db9::1")));
        let mapped = Cidr::parse("::ffff:10.0.0.0/104").unwrap();
        assert!(mapped.contains(ip("10.0.0.1")) && !mapped.contains(ip("11.0.0.1")));
        assert!(Cidr::parse("::ffff:0:0/80").unwrap().contains(ip("::1")));
        assert!(Cidr::parse("10.0.0.0/33").is_err());
        assert!(Cidr::parse("not-an-ip").is_err());
    }
}
