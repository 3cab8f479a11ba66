//! The declarative file as written: serde types, one per entity, with no defaults applied
//! and no references resolved. Nested children (`services[].routes`, ...) are not fields
//! here: the loader takes them out of the tree and decodes them as entities of their own.

use std::collections::BTreeMap;

use serde::Deserialize;

/// A reference to another entity: `name-or-id`, `{id: ...}`, `{name: ...}` or `{username: ...}`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(untagged)]
pub enum RawRef {
    /// A name (or id) written as a plain string.
    Key(String),
    /// An object naming the entity.
    Obj {
        /// The entity's id.
        #[serde(default)]
        id: Option<String>,
        /// The entity's name.
        #[serde(default)]
        name: Option<String>,
        /// A consumer's username.
        #[serde(default)]
        username: Option<String>,
    },
}

/// `services[]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[allow(missing_docs)]
pub struct RawService {
    pub id: Option<String>,
    pub name: Option<String>,
    pub url: Option<String>,
    pub protocol: Option<String>,
    pub host: Option<String>,
    pub port: Option<i64>,
    pub path: Option<String>,
    pub retries: Option<i64>,
    pub connect_timeout: Option<i64>,
    pub read_timeout: Option<i64>,
    pub write_timeout: Option<i64>,
    pub enabled: Option<bool>,
    pub tags: Option<Vec<String>>,
    pub tls_verify: Option<bool>,
    pub tls_verify_depth: Option<i64>,
    pub ca_certificates: Option<Vec<String>>,
    pub client_certificate: Option<RawRef>,
    pub created_at: Option<i64>,
    pub updated_at: Option<i64>,
}

/// `sources[]` / `destinations[]` of a route.
#[derive(Debug, Clone, Default, Deserialize)]
#[allow(missing_docs)]
pub struct RawEndpoint {
    pub ip: Option<String>,
    pub port: Option<i64>,
}

/// `routes[]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[allow(missing_docs)]
pub struct RawRoute {
    pub id: Option<String>,
    pub name: Option<String>,
    pub protocols: Option<Vec<String>>,
    pub methods: Option<Vec<String>>,
    pub hosts: Option<Vec<String>>,
    pub paths: Option<Vec<String>>,
    pub headers: Option<BTreeMap<String, Vec<String>>>,
    pub snis: Option<Vec<String>>,
    pub sources: Option<Vec<RawEndpoint>>,
    pub destinations: Option<Vec<RawEndpoint>>,
    pub strip_path: Option<bool>,
    pub preserve_host: Option<bool>,
    pub regex_priority: Option<i64>,
    /// Only under `router_flavor = expressions`.
    pub expression: Option<String>,
    /// Only under `router_flavor = expressions`.
    pub priority: Option<i64>,
    pub path_handling: Option<String>,
    pub https_redirect_status_code: Option<i64>,
    pub request_buffering: Option<bool>,
    pub response_buffering: Option<bool>,
    pub service: Option<RawRef>,
    pub tags: Option<Vec<String>>,
    pub created_at: Option<i64>,
    pub updated_at: Option<i64>,
}

/// `vaults[]`: a vault under a prefix of its own (only Kong's `env` vault exists DB-less).
#[derive(Debug, Clone, Default, Deserialize)]
#[allow(missing_docs)]
pub struct RawVault {
    pub id: Option<String>,
    pub name: Option<String>,
    pub prefix: Option<String>,
    pub description: Option<String>,
    pub config: Option<RawVaultConfig>,
    pub tags: Option<Vec<String>>,
    pub created_at: Option<i64>,
    pub updated_at: Option<i64>,
}

/// `vaults[].config` of the env vault.
#[derive(Debug, Clone, Default, Deserialize)]
#[allow(missing_docs)]
pub struct RawVaultConfig {
    pub prefix: Option<String>,
}

/// `consumers[]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[allow(missing_docs)]
pub struct RawConsumer {
    pub id: Option<String>,
    pub username: Option<String>,
    pub custom_id: Option<String>,
    pub tags: Option<Vec<String>>,
    pub created_at: Option<i64>,
    pub updated_at: Option<i64>,
}

/// `plugins[]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[allow(missing_docs)]
pub struct RawPlugin {
    pub id: Option<String>,
    pub name: Option<String>,
    pub instance_name: Option<String>,
    pub config: Option<serde_json::Value>,
    pub enabled: Option<bool>,
    pub protocols: Option<Vec<String>>,
    pub route: Option<RawRef>,
    pub service: Option<RawRef>,
    pub consumer: Option<RawRef>,
    pub condition: Option<String>,
    pub tags: Option<Vec<String>>,
    pub created_at: Option<i64>,
    pub updated_at: Option<i64>,
}

/// `upstreams[]`. Balancing details are kept as written for the load balancer.
#[derive(Debug, Clone, Default, Deserialize)]
#[allow(missing_docs)]
pub struct RawUpstream {
    pub id: Option<String>,
    pub name: Option<String>,
    pub algorithm: Option<String>,
    pub hash_on: Option<String>,
    pub hash_fallback: Option<String>,
    pub hash_on_header: Option<String>,
    pub hash_fallback_header: Option<String>,
    pub hash_on_cookie: Option<String>,
    pub hash_on_cookie_path: Option<String>,
    pub hash_on_query_arg: Option<String>,
    pub hash_fallback_query_arg: Option<String>,
    pub hash_on_uri_capture: Option<String>,
    pub hash_fallback_uri_capture: Option<String>,
    pub slots: Option<i64>,
    pub healthchecks: Option<RawHealthchecks>,
    pub host_header: Option<String>,
    pub client_certificate: Option<RawRef>,
    pub use_srv_name: Option<bool>,
    pub tags: Option<Vec<String>>,
    pub created_at: Option<i64>,
    pub updated_at: Option<i64>,
}

/// `upstreams[].healthchecks`.
#[derive(Debug, Clone, Default, Deserialize)]
#[allow(missing_docs)]
pub struct RawHealthchecks {
    pub active: Option<RawActiveChecks>,
    pub passive: Option<RawPassiveChecks>,
    pub threshold: Option<f64>,
}

/// `healthchecks.active`.
#[derive(Debug, Clone, Default, Deserialize)]
#[allow(missing_docs)]
pub struct RawActiveChecks {
    #[serde(rename = "type")]
    pub kind: Option<String>,
    pub timeout: Option<f64>,
    pub concurrency: Option<i64>,
    pub http_path: Option<String>,
    pub https_sni: Option<String>,
    pub https_verify_certificate: Option<bool>,
    pub headers: Option<BTreeMap<String, Vec<String>>>,
    pub healthy: Option<RawActiveHealthy>,
    pub unhealthy: Option<RawActiveUnhealthy>,
}

/// `healthchecks.active.healthy`.
#[derive(Debug, Clone, Default, Deserialize)]
#[allow(missing_docs)]
pub struct RawActiveHealthy {
    pub interval: Option<f64>,
    pub http_statuses: Option<Vec<i64>>,
    pub successes: Option<i64>,
}

/// `healthchecks.active.unhealthy`.
#[derive(Debug, Clone, Default, Deserialize)]
#[allow(missing_docs)]
pub struct RawActiveUnhealthy {
    pub interval: Option<f64>,
    pub http_statuses: Option<Vec<i64>>,
    pub tcp_failures: Option<i64>,
    pub timeouts: Option<i64>,
    pub http_failures: Option<i64>,
}

/// `healthchecks.passive`.
#[derive(Debug, Clone, Default, Deserialize)]
#[allow(missing_docs)]
pub struct RawPassiveChecks {
    #[serde(rename = "type")]
    pub kind: Option<String>,
    pub healthy: Option<RawPassiveHealthy>,
    pub unhealthy: Option<RawPassiveUnhealthy>,
}

/// `healthchecks.passive.healthy`.
#[derive(Debug, Clone, Default, Deserialize)]
#[allow(missing_docs)]
pub struct RawPassiveHealthy {
    pub http_statuses: Option<Vec<i64>>,
    pub successes: Option<i64>,
}

/// `healthchecks.passive.unhealthy`.
#[derive(Debug, Clone, Default, Deserialize)]
#[allow(missing_docs)]
pub struct RawPassiveUnhealthy {
    pub http_statuses: Option<Vec<i64>>,
    pub tcp_failures: Option<i64>,
    pub timeouts: Option<i64>,
    pub http_failures: Option<i64>,
}

/// `targets[]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[allow(missing_docs)]
pub struct RawTarget {
    pub id: Option<String>,
    pub target: Option<String>,
    pub weight: Option<i64>,
    pub upstream: Option<RawRef>,
    pub tags: Option<Vec<String>>,
    pub created_at: Option<f64>,
    pub updated_at: Option<f64>,
}

/// `certificates[]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[allow(missing_docs)]
pub struct RawCertificate {
    pub id: Option<String>,
    pub cert: Option<String>,
    pub key: Option<String>,
    pub cert_alt: Option<String>,
    pub key_alt: Option<String>,
    pub tags: Option<Vec<String>>,
    pub created_at: Option<i64>,
    pub updated_at: Option<i64>,
}

/// `snis[]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[allow(missing_docs)]
pub struct RawSni {
    pub id: Option<String>,
    pub name: Option<String>,
    pub certificate: Option<RawRef>,
    pub tags: Option<Vec<String>>,
    pub created_at: Option<i64>,
    pub updated_at: Option<i64>,
}

/// `ca_certificates[]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[allow(missing_docs)]
pub struct RawCaCertificate {
    pub id: Option<String>,
    pub cert: Option<String>,
    pub cert_digest: Option<String>,
    pub tags: Option<Vec<String>>,
    pub created_at: Option<i64>,
    pub updated_at: Option<i64>,
}

/// `keyauth_credentials[]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[allow(missing_docs)]
pub struct RawKeyAuth {
    pub id: Option<String>,
    pub consumer: Option<RawRef>,
    pub key: Option<String>,
    pub ttl: Option<i64>,
    pub tags: Option<Vec<String>>,
    pub created_at: Option<i64>,
}

/// `basicauth_credentials[]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[allow(missing_docs)]
pub struct RawBasicAuth {
    pub id: Option<String>,
    pub consumer: Option<RawRef>,
    pub username: Option<String>,
    pub password: Option<String>,
    pub tags: Option<Vec<String>>,
    pub created_at: Option<i64>,
}

/// `acls[]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[allow(missing_docs)]
pub struct RawAcl {
    pub id: Option<String>,
    pub consumer: Option<RawRef>,
    pub group: Option<String>,
    pub tags: Option<Vec<String>>,
    pub created_at: Option<i64>,
}

/// `jwt_secrets[]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[allow(missing_docs)]
pub struct RawJwtSecret {
    pub id: Option<String>,
    pub consumer: Option<RawRef>,
    pub key: Option<String>,
    pub secret: Option<String>,
    pub algorithm: Option<String>,
    pub rsa_public_key: Option<String>,
    pub tags: Option<Vec<String>>,
    pub created_at: Option<i64>,
}

/// `custom_plugins[]` (Kong 3.15 streamed plugins).
#[derive(Debug, Clone, Default, Deserialize)]
#[allow(missing_docs)]
pub struct RawCustomPlugin {
    pub id: Option<String>,
    pub name: Option<String>,
    pub handler: Option<String>,
    pub schema: Option<String>,
    pub tags: Option<Vec<String>>,
    pub created_at: Option<i64>,
    pub updated_at: Option<i64>,
}

/// `cloned_plugins[]` (Kong 3.15).
#[derive(Debug, Clone, Default, Deserialize)]
#[allow(missing_docs)]
pub struct RawClonedPlugin {
    pub id: Option<String>,
    pub name: Option<String>,
    #[serde(rename = "ref")]
    pub reference: Option<String>,
    pub priority: Option<i64>,
    pub tags: Option<Vec<String>>,
    pub created_at: Option<i64>,
    pub updated_at: Option<i64>,
}
