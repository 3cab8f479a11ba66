//! The node-level answers of Kong's admin API in Kong's shapes: `GET /` (version, plugins,
//! configuration), `GET /status` (with `configuration_hash`) and `GET /status/ready`. Clients
//! such as the Kong Ingress Controller decide by these fields (kong/api/routes/kong.lua,
//! health.lua and kong/status/ready.lua are the reference).

use serde_json::{json, Map, Value};

use crate::listen::Listener;
use crate::snapshot::Snapshot;

/// What the node reports about itself, fixed at startup.
#[derive(Debug, Clone)]
pub struct Node {
    /// The Kong version reported as `version`.
    pub kong_version: String,
    /// Kong's `router_flavor`.
    pub router_flavor: String,
    /// The proxy's listeners (`proxy_listen`).
    pub proxy_listeners: Vec<Listener>,
    /// The admin API's listeners (`admin_listen`).
    pub admin_listeners: Vec<Listener>,
    /// The status API's listeners (`status_listen`).
    pub status_listeners: Vec<Listener>,
    /// A UUID made at startup.
    pub node_id: String,
    /// The log filter in effect.
    pub log_level: String,
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .unwrap_or_default()
        .trim()
        .to_string()
}

/// `listen` and `listeners` entries of a Kong configuration for one kind of listener.
fn listen(conf: &mut Map<String, Value>, name: &str, list: &[Listener]) {
    let strings: Vec<String> = list.iter().map(Listener::kong_string).collect();
    conf.insert(
        format!("{name}_listen"),
        if strings.is_empty() {
            json!(["off"])
        } else {
            json!(strings)
        },
    );
    conf.insert(
        format!("{name}_listeners"),
        Value::Array(list.iter().map(Listener::kong_json).collect()),
    );
}

impl Node {
    /// `GET /`.
    pub fn info(&self, snap: &Snapshot, config_path: Option<&str>) -> Value {
        let mut available = Map::new();
        for d in crate::plugins::native::definitions() {
            available.insert(
                d.name.clone(),
                json!({ "version": self.kong_version, "priority": d.priority }),
            );
        }
        for (name, version, priority) in &snap.own_plugins {
            let version = version.as_deref().unwrap_or(&self.kong_version);
            available.insert(
                name.clone(),
                json!({ "version": version, "priority": priority }),
            );
        }
        let mut enabled: Vec<&str> = snap
            .config
            .plugins
            .iter()
            .map(|p| p.name.as_str())
            .collect();
        enabled.sort_unstable();
        enabled.dedup();
        let mut conf = Map::new();
        conf.insert("database".into(), json!("off"));
        conf.insert("role".into(), json!("traditional"));
        conf.insert("router_flavor".into(), json!(self.router_flavor));
        conf.insert("declarative_config".into(), json!(config_path));
        conf.insert("log_level".into(), json!(self.log_level));
        conf.insert("plugins".into(), json!(["bundled"]));
        conf.insert(
            "loaded_plugins".into(),
            Value::Object(available.keys().map(|k| (k.clone(), json!(true))).collect()),
        );
        listen(&mut conf, "proxy", &self.proxy_listeners);
        listen(&mut conf, "admin", &self.admin_listeners);
        listen(&mut conf, "status", &self.status_listeners);
        let pid = std::process::id();
        json!({
            "tagline": "Welcome to sluice",
            "version": self.kong_version,
            "edition": "community",
            "server": crate::proxy::respond::PRODUCT,
            "hostname": hostname(),
            "node_id": self.node_id,
            "timers": { "running": 0, "pending": 0 },
            "plugins": {
                "available_on_server": available,
                "enabled_in_cluster": enabled,
            },
            "lua_version": "LuaJIT 2.1",
            "configuration": conf,
            "pids": { "master": pid, "workers": [pid] },
        })
    }

    /// `GET /status` (DB-less: no `database`, a `configuration_hash`), with this gateway's
    /// reload state under `config`.
    pub fn status(&self, snap: &Snapshot, reload: Value) -> Value {
        let lua = crate::plugins::lua::runtime::total_memory();
        json!({
            "configuration_hash": snap.kong_hash(),
            "memory": {
                "workers_lua_vms": [{
                    "pid": std::process::id(),
                    "http_allocated_gc": format!("{:.2} MiB", lua as f64 / 1048576.0),
                }],
            },
            "config": reload,
        })
    }
}

/// `GET /status/ready`: Kong's answer for a DB-less node (kong/status/ready.lua): 503 until a
/// configuration with at least one entity is loaded.
pub fn ready(snap: &Snapshot) -> (u16, Value) {
    if snap.config.is_empty() {
        (
            503,
            json!({ "message": "no configuration available (empty configuration present)" }),
        )
    } else {
        (200, json!({ "message": "ready" }))
    }
}
