//! The validated configuration: every reference resolved to an index, Kong's defaults filled
//! in, ids assigned. Built only by [`super::validate`]; compiled by `snapshot`.

use std::collections::BTreeMap;
use std::net::IpAddr;

use super::yaml::{Loc, Node};

/// Where an entity was written, for errors found after validation (plugin schemas, ...).
#[derive(Debug, Clone, Default)]
pub struct Origin {
    /// Entity path, e.g. `services[0].routes[1]`.
    pub path: String,
    /// Position of the entity in the file.
    pub loc: Loc,
}

/// A service's protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[allow(missing_docs)]
pub enum Protocol {
    Http,
    Https,
    Grpc,
    Grpcs,
    Ws,
    Wss,
    Tcp,
    Tls,
    TlsPassthrough,
    Udp,
}

impl Protocol {
    /// Parses Kong's protocol names.
    pub fn parse(s: &str) -> Option<Protocol> {
        Some(match s {
            "http" => Protocol::Http,
            "https" => Protocol::Https,
            "grpc" => Protocol::Grpc,
            "grpcs" => Protocol::Grpcs,
            "ws" => Protocol::Ws,
            "wss" => Protocol::Wss,
            "tcp" => Protocol::Tcp,
            "tls" => Protocol::Tls,
            "tls_passthrough" => Protocol::TlsPassthrough,
            "udp" => Protocol::Udp,
            _ => return None,
        })
    }

    /// Kong's name of the protocol.
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Http => "http",
            Protocol::Https => "https",
            Protocol::Grpc => "grpc",
            Protocol::Grpcs => "grpcs",
            Protocol::Ws => "ws",
            Protocol::Wss => "wss",
            Protocol::Tcp => "tcp",
            Protocol::Tls => "tls",
            Protocol::TlsPassthrough => "tls_passthrough",
            Protocol::Udp => "udp",
        }
    }

    /// Whether the upstream connection uses TLS.
    pub fn is_tls(self) -> bool {
        matches!(
            self,
            Protocol::Https | Protocol::Grpcs | Protocol::Wss | Protocol::Tls
        )
    }

    /// Whether this is an HTTP-family protocol (served by the HTTP proxy).
    pub fn is_http(self) -> bool {
        matches!(
            self,
            Protocol::Http
                | Protocol::Https
                | Protocol::Grpc
                | Protocol::Grpcs
                | Protocol::Ws
                | Protocol::Wss
        )
    }
}

/// `services[]`, validated.
#[derive(Debug, Clone)]
#[allow(missing_docs)]
pub struct Service {
    pub id: String,
    pub name: Option<String>,
    pub protocol: Protocol,
    pub host: String,
    pub port: u16,
    pub path: Option<String>,
    pub retries: u16,
    /// Milliseconds.
    pub connect_timeout: u64,
    pub read_timeout: u64,
    pub write_timeout: u64,
    pub enabled: bool,
    pub tags: Vec<String>,
    pub tls_verify: Option<bool>,
    pub tls_verify_depth: Option<u8>,
    pub ca_certificates: Vec<String>,
    pub client_certificate: Option<usize>,
    pub origin: Origin,
}

/// One `sources`/`destinations` entry.
#[derive(Debug, Clone)]
pub struct Endpoint {
    /// Network and prefix length.
    pub ip: Option<(IpAddr, u8)>,
    /// Port.
    pub port: Option<u16>,
}

/// `routes[]`, validated.
#[derive(Debug, Clone)]
#[allow(missing_docs)]
pub struct Route {
    pub id: String,
    pub name: Option<String>,
    pub protocols: Vec<Protocol>,
    pub methods: Vec<String>,
    pub hosts: Vec<String>,
    pub paths: Vec<String>,
    /// Lower-cased header name → values.
    pub headers: BTreeMap<String, Vec<String>>,
    pub snis: Vec<String>,
    pub sources: Vec<Endpoint>,
    pub destinations: Vec<Endpoint>,
    pub strip_path: bool,
    pub preserve_host: bool,
    pub regex_priority: i64,
    /// Kong's expressions language (expressions flavor only).
    pub expression: Option<String>,
    /// Orders expression routes (expressions flavor only).
    pub priority: u64,
    pub path_handling_v1: bool,
    pub https_redirect_status_code: u16,
    pub request_buffering: bool,
    pub response_buffering: bool,
    /// Index into [`Config::services`].
    pub service: Option<usize>,
    pub tags: Vec<String>,
    pub origin: Origin,
}

/// `consumers[]`, validated.
#[derive(Debug, Clone)]
#[allow(missing_docs)]
pub struct Consumer {
    pub id: String,
    pub username: Option<String>,
    pub custom_id: Option<String>,
    pub tags: Vec<String>,
    pub origin: Origin,
}

/// `plugins[]`, validated as an entity (its `config` is checked against the plugin's schema
/// when the snapshot is compiled).
#[derive(Debug, Clone)]
#[allow(missing_docs)]
pub struct Plugin {
    pub id: String,
    pub name: String,
    pub instance_name: Option<String>,
    /// The `config` map as written (empty when absent).
    pub config: serde_json::Map<String, serde_json::Value>,
    /// The `config` subtree, to locate schema errors.
    pub config_node: Option<Node>,
    pub enabled: bool,
    pub protocols: Vec<Protocol>,
    pub route: Option<usize>,
    pub service: Option<usize>,
    pub consumer: Option<usize>,
    pub condition: Option<String>,
    /// Where `condition` is written (its errors point there).
    pub condition_loc: Loc,
    pub tags: Vec<String>,
    pub origin: Origin,
    /// `plugins[4] (key-auth on route "r1")`, for messages.
    pub label: String,
}

/// `upstreams[]`, validated.
#[derive(Debug, Clone)]
#[allow(missing_docs)]
pub struct Upstream {
    pub id: String,
    pub name: String,
    pub algorithm: Algorithm,
    /// What `consistent-hashing` hashes first.
    pub hash_on: HashOn,
    /// What it hashes when `hash_on` gives no value.
    pub hash_fallback: HashOn,
    pub hash_on_cookie_path: String,
    pub slots: u32,
    pub healthchecks: Healthchecks,
    pub host_header: Option<String>,
    pub tags: Vec<String>,
    pub origin: Origin,
}

/// An upstream's load-balancing algorithm.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[allow(missing_docs)]
pub enum Algorithm {
    RoundRobin,
    ConsistentHashing,
    LeastConnections,
    Latency,
}

impl Algorithm {
    /// Parses Kong's algorithm names.
    pub fn parse(s: &str) -> Option<Algorithm> {
        Some(match s {
            "round-robin" => Algorithm::RoundRobin,
            "consistent-hashing" => Algorithm::ConsistentHashing,
            "least-connections" => Algorithm::LeastConnections,
            "latency" => Algorithm::Latency,
            _ => return None,
        })
    }
}

/// A hash input of `consistent-hashing` (`hash_on` / `hash_fallback`), with its parameter.
#[derive(Debug, Clone, PartialEq, Eq)]
#[allow(missing_docs)]
pub enum HashOn {
    None,
    Consumer,
    Ip,
    /// Header name, lower-cased.
    Header(String),
    /// Cookie name.
    Cookie(String),
    Path,
    /// Query argument name.
    QueryArg(String),
    /// Capture group name or number of the route's regex path.
    UriCapture(String),
}

/// `upstreams[].healthchecks` with Kong's defaults filled in.
#[derive(Debug, Clone, PartialEq)]
pub struct Healthchecks {
    /// Probes sent by the gateway.
    pub active: ActiveChecks,
    /// Verdicts drawn from proxied traffic.
    pub passive: PassiveChecks,
    /// Percentage of the total weight that must be available for the upstream to take
    /// traffic (0–100).
    pub threshold: f64,
}

impl Healthchecks {
    /// Whether any check is on (Kong's "HEALTHCHECKS_OFF" otherwise).
    pub fn enabled(&self) -> bool {
        self.active.healthy.interval > 0.0
            || self.active.unhealthy.interval > 0.0
            || self.passive.unhealthy.tcp_failures > 0
            || self.passive.unhealthy.timeouts > 0
            || self.passive.unhealthy.http_failures > 0
    }
}

/// How active probes connect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[allow(missing_docs)]
pub enum CheckType {
    Http,
    Https,
    Tcp,
}

/// `healthchecks.active`.
#[derive(Debug, Clone, PartialEq)]
#[allow(missing_docs)]
pub struct ActiveChecks {
    pub kind: CheckType,
    /// Seconds.
    pub timeout: f64,
    pub concurrency: u32,
    pub http_path: String,
    pub https_sni: Option<String>,
    pub https_verify_certificate: bool,
    /// Extra request headers, in order.
    pub headers: Vec<(String, String)>,
    pub healthy: HealthyRule,
    pub unhealthy: UnhealthyRule,
}

/// `healthchecks.passive`.
#[derive(Debug, Clone, PartialEq)]
#[allow(missing_docs)]
pub struct PassiveChecks {
    pub kind: CheckType,
    /// `interval` is always 0 here.
    pub healthy: HealthyRule,
    pub unhealthy: UnhealthyRule,
}

/// When a target counts as healthy again.
#[derive(Debug, Clone, PartialEq)]
#[allow(missing_docs)]
pub struct HealthyRule {
    /// Seconds between probes of healthy targets (0: none).
    pub interval: f64,
    pub http_statuses: Vec<u16>,
    /// Successes in a row that make a target healthy (0: never from this source).
    pub successes: u8,
}

/// When a target counts as unhealthy.
#[derive(Debug, Clone, PartialEq)]
#[allow(missing_docs)]
pub struct UnhealthyRule {
    /// Seconds between probes of unhealthy targets (0: none).
    pub interval: f64,
    pub http_statuses: Vec<u16>,
    pub tcp_failures: u8,
    pub timeouts: u8,
    pub http_failures: u8,
}

/// `targets[]`, validated.
#[derive(Debug, Clone)]
#[allow(missing_docs)]
pub struct Target {
    pub id: String,
    /// Index into [`Config::upstreams`].
    pub upstream: usize,
    pub host: String,
    pub port: u16,
    pub weight: u32,
    pub tags: Vec<String>,
    pub origin: Origin,
}

/// `certificates[]`, validated (PEM text kept as written).
#[derive(Debug, Clone)]
#[allow(missing_docs)]
pub struct Certificate {
    pub id: String,
    pub cert: String,
    pub key: String,
    pub cert_alt: Option<String>,
    pub key_alt: Option<String>,
    pub tags: Vec<String>,
    pub origin: Origin,
}

/// `snis[]`, validated.
#[derive(Debug, Clone)]
#[allow(missing_docs)]
pub struct Sni {
    pub id: String,
    pub name: String,
    pub certificate: usize,
    pub origin: Origin,
}

/// `ca_certificates[]`, validated.
#[derive(Debug, Clone)]
#[allow(missing_docs)]
pub struct CaCertificate {
    pub id: String,
    pub cert: String,
    pub origin: Origin,
}

/// A consumer credential of any kind.
#[derive(Debug, Clone)]
#[allow(missing_docs)]
pub enum Credential {
    KeyAuth {
        key: String,
        ttl: Option<i64>,
    },
    BasicAuth {
        username: String,
        password: String,
    },
    Acl {
        group: String,
    },
    Jwt {
        key: String,
        secret: Option<String>,
        algorithm: String,
        rsa_public_key: Option<String>,
    },
}

/// A credential bound to its consumer.
#[derive(Debug, Clone)]
#[allow(missing_docs)]
pub struct ConsumerCredential {
    pub id: String,
    /// Index into [`Config::consumers`].
    pub consumer: usize,
    pub credential: Credential,
    pub tags: Vec<String>,
    pub origin: Origin,
}

/// `custom_plugins[]` (streamed Lua plugins), validated as entities.
#[derive(Debug, Clone)]
#[allow(missing_docs)]
pub struct CustomPlugin {
    pub name: String,
    pub handler: String,
    pub schema: String,
    pub tags: Vec<String>,
    pub origin: Origin,
}

/// `cloned_plugins[]`, validated as entities.
#[derive(Debug, Clone)]
#[allow(missing_docs)]
pub struct ClonedPlugin {
    pub name: String,
    pub reference: String,
    pub priority: Option<i64>,
    pub tags: Vec<String>,
    pub origin: Origin,
}

/// A validated declarative configuration.
#[derive(Debug, Clone, Default)]
#[allow(missing_docs)]
pub struct Config {
    /// The file name (or source) it came from.
    pub source: String,
    pub services: Vec<Service>,
    pub routes: Vec<Route>,
    pub consumers: Vec<Consumer>,
    pub plugins: Vec<Plugin>,
    pub upstreams: Vec<Upstream>,
    pub targets: Vec<Target>,
    pub certificates: Vec<Certificate>,
    pub snis: Vec<Sni>,
    pub ca_certificates: Vec<CaCertificate>,
    pub credentials: Vec<ConsumerCredential>,
    pub custom_plugins: Vec<CustomPlugin>,
    pub cloned_plugins: Vec<ClonedPlugin>,
    /// The vaults `{vault://...}` references may name (`vaults:` entities plus `env`).
    pub vaults: crate::config::vault::Vaults,
}

impl Config {
    /// Whether it holds no entity at all (Kong's empty configuration).
    pub fn is_empty(&self) -> bool {
        self.services.is_empty()
            && self.routes.is_empty()
            && self.consumers.is_empty()
            && self.plugins.is_empty()
            && self.upstreams.is_empty()
            && self.targets.is_empty()
            && self.certificates.is_empty()
            && self.snis.is_empty()
            && self.ca_certificates.is_empty()
            && self.credentials.is_empty()
            && self.custom_plugins.is_empty()
            && self.cloned_plugins.is_empty()
    }
}
