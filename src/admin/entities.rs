//! Entities as the admin API shows them (Kong's field names; references as `{"id": ...}`).

use serde_json::{json, Value};

use crate::config::model::*;

fn reference(id: Option<&str>) -> Value {
    id.map_or(Value::Null, |id| json!({ "id": id }))
}

/// A service.
pub fn service(s: &Service) -> Value {
    json!({
        "id": s.id, "name": s.name, "protocol": s.protocol.as_str(), "host": s.host,
        "port": s.port, "path": s.path, "retries": s.retries,
        "connect_timeout": s.connect_timeout, "read_timeout": s.read_timeout,
        "write_timeout": s.write_timeout, "enabled": s.enabled, "tags": s.tags,
        "tls_verify": s.tls_verify, "tls_verify_depth": s.tls_verify_depth,
    })
}

/// A route.
pub fn route(c: &Config, r: &Route) -> Value {
    let protocols: Vec<&str> = r.protocols.iter().map(|p| p.as_str()).collect();
    json!({
        "id": r.id, "name": r.name, "protocols": protocols, "methods": r.methods,
        "hosts": r.hosts, "paths": r.paths, "headers": r.headers, "snis": r.snis,
        "strip_path": r.strip_path, "preserve_host": r.preserve_host,
        "regex_priority": r.regex_priority,
        "path_handling": if r.path_handling_v1 { "v1" } else { "v0" },
        "https_redirect_status_code": r.https_redirect_status_code,
        "request_buffering": r.request_buffering, "response_buffering": r.response_buffering,
        "service": reference(r.service.map(|i| c.services[i].id.as_str())), "tags": r.tags,
    })
}

/// A consumer.
pub fn consumer(c: &Consumer) -> Value {
    json!({ "id": c.id, "username": c.username, "custom_id": c.custom_id, "tags": c.tags })
}

/// A plugin instance. Its config is shown as written (secrets included: the admin API is
/// loopback-only by default and can require a token).
pub fn plugin(c: &Config, p: &Plugin) -> Value {
    let protocols: Vec<&str> = p.protocols.iter().map(|p| p.as_str()).collect();
    json!({
        "id": p.id, "name": p.name, "instance_name": p.instance_name, "config": p.config,
        "enabled": p.enabled, "protocols": protocols,
        "route": reference(p.route.map(|i| c.routes[i].id.as_str())),
        "service": reference(p.service.map(|i| c.services[i].id.as_str())),
        "consumer": reference(p.consumer.map(|i| c.consumers[i].id.as_str())),
        "condition": p.condition, "tags": p.tags,
    })
}

/// A custom (streamed) plugin.
pub fn custom_plugin(p: &CustomPlugin) -> Value {
    json!({ "name": p.name, "handler": p.handler, "schema": p.schema, "tags": p.tags })
}

/// A cloned plugin.
pub fn cloned_plugin(p: &ClonedPlugin) -> Value {
    json!({ "name": p.name, "ref": p.reference, "priority": p.priority, "tags": p.tags })
}

/// The entities of a collection, each with the keys it can be fetched by (`/x/{id or name}`).
pub fn collection(c: &Config, kind: &str) -> Option<Vec<(Vec<String>, Value)>> {
    let keyed = |id: &str, name: Option<&String>| {
        let mut keys = vec![id.to_string()];
        keys.extend(name.cloned());
        keys
    };
    Some(match kind {
        "services" => c
            .services
            .iter()
            .map(|s| (keyed(&s.id, s.name.as_ref()), service(s)))
            .collect(),
        "routes" => c
            .routes
            .iter()
            .map(|r| (keyed(&r.id, r.name.as_ref()), route(c, r)))
            .collect(),
        "consumers" => c
            .consumers
            .iter()
            .map(|x| (keyed(&x.id, x.username.as_ref()), consumer(x)))
            .collect(),
        "plugins" => c
            .plugins
            .iter()
            .map(|p| (keyed(&p.id, p.instance_name.as_ref()), plugin(c, p)))
            .collect(),
        "custom_plugins" => c
            .custom_plugins
            .iter()
            .map(|p| (vec![p.name.clone()], custom_plugin(p)))
            .collect(),
        "cloned_plugins" => c
            .cloned_plugins
            .iter()
            .map(|p| (vec![p.name.clone()], cloned_plugin(p)))
            .collect(),
        _ => return None,
    })
}
