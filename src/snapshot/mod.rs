//! The only producer of [`Snapshot`]: compiles a validated [`Config`] into the immutable
//! runtime that serves requests (router, upstream targets, plugin instances and chains).
//! A snapshot is built completely before it is published; any error rejects it whole.

mod certs;
mod consumers;
mod instances;
mod kept_router;
pub mod library;
mod upstream;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crate::config::error::Errors;
use crate::config::model::{Config, Protocol};
use crate::config::{ConfigErrors, LoadError};
use crate::plugins::chain::{self, Entry, Link, Scope};
use crate::plugins::condition::{self, Condition};
use crate::plugins::{Instance, Kind, Phase};
use crate::router::{self, RouteInput, Router};
use instances::{build_instance, definitions};

pub use certs::{Certs, Pair};
pub use consumers::Consumers;
pub use upstream::{BalancedTarget, Balancer, CheckSource};

/// Upstream connection settings of a service.
#[derive(Debug, Clone)]
pub struct ServiceRt {
    /// Service id.
    pub id: String,
    /// Service name.
    pub name: Option<String>,
    /// Protocol (TLS or not, h1/h2 later).
    pub protocol: Protocol,
    /// Host name (TLS SNI and default Host header).
    pub host: String,
    /// Port.
    pub port: u16,
    /// Connect timeout.
    pub connect_timeout: Duration,
    /// Read timeout (between two reads).
    pub read_timeout: Duration,
    /// Write timeout.
    pub write_timeout: Duration,
    /// Connection attempts after the first that may be made on connect failure.
    pub retries: u16,
    /// Verify the upstream's certificate.
    pub tls_verify: bool,
    /// Index into [`Snapshot::balancers`] when `host` names an upstream.
    pub balancer: Option<usize>,
    /// `host` as an address when it is an IP literal (it then needs no resolver).
    pub ip: Option<std::net::IpAddr>,
    /// [`ServiceRt::host_header`] made once (None if it is not a valid header value).
    pub host_value: Option<http::HeaderValue>,
}

impl ServiceRt {
    /// The Host header sent upstream when the route does not preserve the client's:
    /// the service host, with the port when it is not the scheme's default.
    pub fn host_header(&self) -> String {
        let default = if self.protocol.is_tls() { 443 } else { 80 };
        if self.port == default {
            self.host.clone()
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

/// Per-route runtime data the proxy needs after a match.
#[derive(Debug, Clone)]
pub struct RouteRt {
    /// Index into [`Snapshot::services`].
    pub service: Option<usize>,
    /// Protocols the route accepts.
    pub protocols: Vec<Protocol>,
    /// Status for http requests on an https-only route.
    pub https_redirect_status_code: u16,
    /// strip_path (for X-Forwarded-Prefix).
    pub strip_path: bool,
    /// The plugins that may run on this route, in order.
    pub chain: Vec<Link>,
}

/// One immutable configuration generation.
pub struct Snapshot {
    /// Increases by one with every applied configuration.
    pub generation: u64,
    /// SHA-256 of the configuration text (hex).
    pub hash: String,
    /// The configuration text (for `GET /config`).
    pub text: Arc<str>,
    /// When it was compiled.
    pub loaded_at: SystemTime,
    /// The validated configuration it was compiled from (for the status/admin API).
    pub config: Config,
    /// Services, indexed as in the config.
    pub services: Vec<ServiceRt>,
    /// Routes, indexed as in the config.
    pub routes: Vec<RouteRt>,
    /// The router; its route indexes map through `router_routes`.
    pub router: Arc<Router>,
    /// Router route index → config route index.
    pub router_routes: Vec<usize>,
    /// Plugin instances, indexed as `config.plugins` (None: disabled).
    pub instances: Vec<Option<Arc<dyn Instance>>>,
    /// Global plugins, for requests that matched no route.
    pub global_chain: Vec<Link>,
    /// A prometheus instance is configured: only requests it ran on are recorded.
    pub prometheus: bool,
    /// An instance reads the exchange's log data (file-log, http-log): the proxy records it.
    pub log_data: bool,
    /// Compiled `condition`s, indexed as `config.plugins`.
    pub conditions: Vec<Option<Condition>>,
    /// Consumers and credentials indexed for the auth plugins.
    pub consumers: Consumers,
    /// Certificates by SNI, upstream CA bundles and client certificates.
    pub certs: Certs,
    /// Load balancers of `upstreams`.
    pub balancers: Vec<Balancer>,
    /// The config's own plugins (custom and cloned): name, handler VERSION (None for a clone
    /// of a bundled plugin) and priority, for `GET /`.
    pub own_plugins: Vec<(String, Option<String>, i64)>,
    /// Each instance's latency histogram per phase, indexed as `config.plugins` and found on
    /// first use by the proxy (finding a series by its labels hashes and locks, dearer than a
    /// trivial plugin call).
    pub plugin_latency:
        Vec<[std::sync::OnceLock<Arc<crate::metrics::local::PerWorker>>; Phase::ALL.len()]>,
}

impl std::fmt::Debug for Snapshot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Snapshot")
            .field("generation", &self.generation)
            .field("hash", &self.hash)
            .field("services", &self.services.len())
            .field("routes", &self.routes.len())
            .field("plugins", &self.instances.len())
            .finish()
    }
}

/// SHA-256 of a text, hex-encoded.
pub fn hash_text(text: &str) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(text.as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// A snapshot with no entities: what serves before any configuration arrives.
pub fn empty(generation: u64) -> Snapshot {
    load_str(EMPTY_CONFIG, NO_CONFIG_SOURCE, generation).expect("the empty configuration compiles")
}

/// The source name of [`empty`]'s snapshot.
pub const NO_CONFIG_SOURCE: &str = "(no configuration)";

/// The text of a configuration with no entities.
pub const EMPTY_CONFIG: &str = "_format_version: \"3.0\"\n";

/// Kong's `configuration_hash` for an empty configuration (`DECLARATIVE_EMPTY_CONFIG_HASH`).
pub const EMPTY_HASH: &str = "00000000000000000000000000000000";

impl Snapshot {
    /// The hash Kong reports as `configuration_hash` (32 hex digits): 32 zeros when the
    /// configuration holds no entity, as Kong's (which makes the Kong Ingress Controller push
    /// one), else the first half of the text's SHA-256.
    pub fn kong_hash(&self) -> &str {
        if self.config.is_empty() {
            EMPTY_HASH
        } else {
            &self.hash[..32]
        }
    }
}

/// Reads, validates and compiles a file.
pub fn load_file(path: &std::path::Path, generation: u64) -> Result<Snapshot, LoadError> {
    let text = std::fs::read_to_string(path).map_err(|source| LoadError::Io {
        path: path.display().to_string(),
        source,
    })?;
    load_str(&text, &path.display().to_string(), generation)
}

/// Validates and compiles a declarative text. Plugin configs are checked even when the file has
/// other errors, so that every error is reported in one go.
pub fn load_str(text: &str, source: &str, generation: u64) -> Result<Snapshot, LoadError> {
    load_text(Arc::from(text), hash_text(text), source, generation)
}

/// [`load_str`] for a text the snapshot can keep as it is, whose [`hash_text`] the caller
/// already has.
pub fn load_text(
    text: Arc<str>,
    hash: String,
    source: &str,
    generation: u64,
) -> Result<Snapshot, LoadError> {
    let (config, errs) = crate::config::validate_str(&text, source);
    compile_with(config, text, hash, generation, errs).map_err(LoadError::Invalid)
}

/// Compiles a validated config; `text` is the source it was read from.
pub fn compile(config: Config, text: Arc<str>, generation: u64) -> Result<Snapshot, ConfigErrors> {
    let errs = Errors::new(&config.source);
    let hash = hash_text(&text);
    compile_with(config, text, hash, generation, errs)
}

/// Compiles a config whose validation produced `errs`, with the plugin library merged in.
fn compile_with(
    mut config: Config,
    text: Arc<str>,
    hash: String,
    generation: u64,
    mut errs: Errors,
) -> Result<Snapshot, ConfigErrors> {
    library::merge(&mut config, &mut errs);
    compile_unmerged(config, text, hash, generation, errs)
}

/// Compiles a config whose validation produced `errs`; fails if there are any errors. `hash`
/// is `text`'s [`hash_text`].
fn compile_unmerged(
    config: Config,
    text: Arc<str>,
    hash: String,
    generation: u64,
    mut errs: Errors,
) -> Result<Snapshot, ConfigErrors> {
    let mut definitions = definitions(&config, &mut errs);

    let balancers: Vec<Balancer> = (0..config.upstreams.len())
        .map(|i| Balancer::new(&config, i))
        .collect();
    let upstream_by_name: HashMap<&str, usize> = config
        .upstreams
        .iter()
        .enumerate()
        .map(|(i, u)| (u.name.as_str(), i))
        .collect();

    let services: Vec<ServiceRt> = config
        .services
        .iter()
        .map(|s| {
            let mut rt = ServiceRt {
                id: s.id.clone(),
                name: s.name.clone(),
                protocol: s.protocol,
                host: s.host.clone(),
                port: s.port,
                connect_timeout: Duration::from_millis(s.connect_timeout),
                read_timeout: Duration::from_millis(s.read_timeout),
                write_timeout: Duration::from_millis(s.write_timeout),
                retries: s.retries,
                tls_verify: s.tls_verify.unwrap_or(false),
                balancer: upstream_by_name.get(s.host.as_str()).copied(),
                ip: crate::config::checks::ip_literal(&s.host),
                host_value: None,
            };
            rt.host_value = http::HeaderValue::try_from(rt.host_header()).ok();
            rt
        })
        .collect();

    // Plugin instances.
    let mut instances = Vec::with_capacity(config.plugins.len());
    let mut entries = Vec::new();
    for p in &config.plugins {
        let Some(def) = definitions.defs.get(&p.name) else {
            if definitions.broken.contains(&p.name) {
                instances.push(None);
                continue;
            }
            let mut known: Vec<&str> = definitions.defs.keys().map(String::as_str).collect();
            known.sort_unstable();
            errs.at(
                p.origin.loc,
                p.label.clone(),
                format!(
                    "plugin {:?} is not available (plugins in this config: {})",
                    p.name,
                    known.join(", ")
                ),
            );
            instances.push(None);
            continue;
        };
        let index = instances.len();
        match build_instance(
            &config,
            index,
            def,
            definitions.loader.as_mut(),
            generation,
            &mut errs,
        ) {
            Some(instance) if p.enabled => {
                entries.push((index, def.priority));
                instances.push(Some(instance));
            }
            _ => instances.push(None),
        }
    }
    definitions.keep();
    let defs = &definitions.defs;
    let conditions = compile_conditions(&config, &mut errs);
    let certs = Certs::new(&config, &mut errs);
    let log_data = instances.iter().flatten().any(|i| i.needs_log_data());
    let prometheus = entries.iter().any(|&(i, _)| {
        defs.get(&config.plugins[i].name).is_some_and(
            |d| matches!(d.kind, crate::plugins::Kind::Native(b) if b.name == "prometheus"),
        )
    });
    let chain_entries: Vec<Entry<'_>> = entries
        .iter()
        .map(|&(i, priority)| {
            let p = &config.plugins[i];
            Entry {
                name: &p.name,
                priority,
                scope: Scope {
                    route: p.route,
                    service: p.service,
                    consumer: p.consumer,
                },
            }
        })
        .collect();
    // Chain links refer to positions in `entries`; map them back to plugin indexes.
    let remap = |mut links: Vec<Link>| {
        for l in &mut links {
            for c in &mut l.candidates {
                c.0 = entries[c.0].0;
            }
        }
        links
    };

    // Instances bound to a route apply to that route only; the others may apply to any.
    // `routed[starts[i]..starts[i + 1]]` are route i's own entries: two flat vectors rather
    // than a map of 10,000 small ones.
    let mut starts = vec![0usize; config.routes.len() + 1];
    let mut unrouted = Vec::new();
    for (n, e) in chain_entries.iter().enumerate() {
        match e.scope.route {
            Some(r) if r < config.routes.len() => starts[r + 1] += 1,
            Some(_) => {}
            None => unrouted.push(n),
        }
    }
    for i in 1..starts.len() {
        starts[i] += starts[i - 1];
    }
    let mut routed = vec![0usize; starts[config.routes.len()]];
    let mut filled = starts.clone();
    for (n, e) in chain_entries.iter().enumerate() {
        if let Some(r) = e.scope.route.filter(|&r| r < config.routes.len()) {
            routed[filled[r]] = n;
            filled[r] += 1;
        }
    }
    drop(filled);
    // What the router needs of each service, shared by the service's routes.
    let targets: Vec<Arc<router::ServiceTarget>> = config
        .services
        .iter()
        .map(|s| {
            Arc::new(router::ServiceTarget {
                protocol: s.protocol.as_str().to_string(),
                host: s.host.clone(),
                port: s.port,
                path: s.path.clone(),
            })
        })
        .collect();
    let mut routes = Vec::with_capacity(config.routes.len());
    let mut inputs = Vec::with_capacity(config.routes.len());
    let mut router_routes = Vec::with_capacity(config.routes.len());
    for (i, r) in config.routes.iter().enumerate() {
        routes.push(RouteRt {
            service: r.service,
            protocols: r.protocols.clone(),
            https_redirect_status_code: r.https_redirect_status_code,
            strip_path: r.strip_path,
            chain: remap(chain::build_from(
                &chain_entries,
                routed[starts[i]..starts[i + 1]]
                    .iter()
                    .chain(unrouted.iter())
                    .copied(),
                Some(i),
                r.service,
            )),
        });
        // Kong leaves routes of disabled services out of the router.
        if r.service.is_some_and(|s| !config.services[s].enabled) {
            continue;
        }
        router_routes.push(i);
        inputs.push(RouteInput {
            id: r.id.clone(),
            protocols: r.protocols.iter().map(|p| p.as_str().to_string()).collect(),
            methods: r.methods.clone(),
            hosts: r.hosts.clone(),
            paths: r.paths.clone(),
            headers: r
                .headers
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            snis: r.snis.clone(),
            sources: r.sources.iter().map(endpoint).collect(),
            destinations: r.destinations.iter().map(endpoint).collect(),
            regex_priority: r.regex_priority,
            strip_path: r.strip_path,
            preserve_host: r.preserve_host,
            // Kong's traditional_compatible router applies v0 whatever the route says.
            path_handling: router::PathHandling::V0,
            service: r.service.map(|s| targets[s].clone()),
            expression: r.expression.clone(),
            priority: r.priority,
        });
    }
    let global_chain = remap(chain::build(&chain_entries, None, None));

    // The router is only built from a config without errors (references may dangle otherwise).
    if !errs.is_empty() {
        return Err(errs.into_result().err().unwrap_or(ConfigErrors(Vec::new())));
    }
    // Generation 0 is a check (`proxy check`, the admin API's schema validation), not a
    // snapshot that will serve: its router is not kept for the next compile.
    let flavor = crate::config::router_flavor();
    let router = match kept_router::build(inputs, flavor, generation != 0) {
        Ok(r) => Some(r),
        Err(e) => {
            let route = router_routes.get(e.route).map(|&i| &config.routes[i]);
            let (loc, path) = route.map_or((None, String::new()), |r| {
                (Some(r.origin.loc), format!("{}.{}", r.origin.path, e.field))
            });
            errs.push(loc, path, e.message);
            None
        }
    };
    errs.into_result()?;
    let Some(router) = router else {
        unreachable!("a router error is recorded in errs");
    };
    let consumers = Consumers::new(&config);
    let mut own_plugins: Vec<(String, Option<String>, i64)> = defs
        .values()
        .filter(|d| !matches!(&d.kind, Kind::Native(b) if b.name == d.name))
        .map(|d| {
            let version = match &d.kind {
                Kind::Lua(p) => Some(p.version.clone()),
                Kind::Native(_) => None,
            };
            (d.name.clone(), version, d.priority)
        })
        .collect();
    own_plugins.sort();
    let instances_len = instances.len();
    Ok(Snapshot {
        own_plugins,
        generation,
        hash,
        text,
        loaded_at: SystemTime::now(),
        config,
        services,
        routes,
        router,
        router_routes,
        instances,
        global_chain,
        prometheus,
        log_data,
        conditions,
        consumers,
        certs,
        balancers,
        plugin_latency: (0..instances_len).map(|_| Default::default()).collect(),
    })
}

/// Compiles every instance's `condition` (one CEL environment per snapshot); syntax errors
/// are located at the condition.
fn compile_conditions(config: &Config, errs: &mut Errors) -> Vec<Option<Condition>> {
    if config.plugins.iter().all(|p| p.condition.is_none()) {
        return config.plugins.iter().map(|_| None).collect();
    }
    let compiler = condition::Compiler::new();
    let parsed: Vec<Option<condition::Parsed>> = config
        .plugins
        .iter()
        .map(|p| {
            let source = p.condition.as_deref()?;
            match compiler.parse(source) {
                Ok(parsed) => Some(parsed),
                Err(e) => {
                    errs.at(
                        p.condition_loc,
                        p.label.clone(),
                        format!("condition: invalid CEL expression: {e}"),
                    );
                    None
                }
            }
        })
        .collect();
    let shared = compiler.finish();
    parsed
        .into_iter()
        .map(|p| p.map(|p| Condition::new(p, shared.clone())))
        .collect()
}

/// A validated `sources`/`destinations` entry as the router takes it.
fn endpoint(e: &crate::config::model::Endpoint) -> router::Endpoint {
    router::Endpoint {
        ip: e.ip,
        port: e.port,
    }
}
