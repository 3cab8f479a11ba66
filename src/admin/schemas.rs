//! `POST /schemas/{entity}/validate` and `POST /schemas/plugins/validate`: an entity checked
//! as the gateway would check it in a configuration, without applying anything. The Kong
//! Ingress Controller's admission webhook asks this for every Ingress, HTTPRoute and
//! KongPlugin (kong/api/routes/kong.lua's `validate_schema` is the reference).

use serde_json::{json, Map, Value};

use crate::snapshot::Snapshot;

/// Entities that can be validated, by the collection name of their schema.
const ENTITIES: &[&str] = &[
    "services",
    "routes",
    "consumers",
    "plugins",
    "upstreams",
    "certificates",
    "ca_certificates",
    "snis",
    "vaults",
];

/// References to other entities: checked by the configuration they end up in, not here.
const FOREIGN: &[&str] = &["service", "route", "consumer", "upstream", "certificate"];

/// Validates `body` (a JSON entity) as one `entity`; `snap` lends its custom and cloned
/// plugins, which a plugin may name. Returns the status and Kong's body.
pub fn validate(entity: &str, body: &[u8], snap: &Snapshot) -> (u16, Value) {
    if !ENTITIES.contains(&entity) {
        return (
            404,
            json!({ "message": format!("No entity named '{entity}'") }),
        );
    }
    let mut item = match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(m)) => m,
        _ => {
            return (
                400,
                json!({ "message": "expected a JSON object with the entity's fields" }),
            )
        }
    };
    let scope: Vec<&str> = FOREIGN
        .iter()
        .copied()
        .filter(|k| item.get(*k).is_some_and(|v| !v.is_null()))
        .collect();
    for k in FOREIGN {
        item.remove(*k);
    }
    let mut doc = Map::new();
    doc.insert("_format_version".into(), json!("3.0"));
    let custom: Vec<Value> = snap
        .config
        .custom_plugins
        .iter()
        .map(|c| json!({ "name": c.name, "handler": c.handler, "schema": c.schema }))
        .collect();
    let cloned: Vec<Value> = snap
        .config
        .cloned_plugins
        .iter()
        .map(|c| json!({ "name": c.name, "ref": c.reference, "priority": c.priority }))
        .collect();
    if !custom.is_empty() {
        doc.insert("custom_plugins".into(), Value::Array(custom));
    }
    if !cloned.is_empty() {
        doc.insert("cloned_plugins".into(), Value::Array(cloned));
    }
    // A plugin bound to a route or service in the request stays bound to one here, so that a
    // plugin that cannot apply to it is refused as it would be in a configuration.
    if entity == "plugins" && (scope.contains(&"route") || scope.contains(&"service")) {
        let mut service = json!({ "name": "validate", "url": "http://validate.invalid" });
        if scope.contains(&"route") {
            service["routes"] = json!([{ "name": "validate", "paths": ["/"], "plugins": [item] }]);
        } else {
            service["plugins"] = json!([item]);
        }
        doc.insert("services".into(), json!([service]));
    } else {
        doc.insert(entity.into(), json!([item]));
    }
    let text = Value::Object(doc).to_string();
    // On the compile thread: a request with the running config's custom plugins finds their
    // loader kept there (snapshot::instances), and leaves no loader on this thread.
    let checked = crate::reload::compiler::run(move || {
        crate::snapshot::load_str(&text, "<validate>", 0).map(drop)
    });
    match checked {
        Ok(()) => (200, json!({ "message": "schema validation successful" })),
        Err(e) => (400, violation(entity, e.errors())),
    }
}

/// `GET /schemas/plugins/{name}`: the plugin's schema (bundled, custom or cloned) in the
/// shape Kong serves it; the Kong Ingress Controller fills plugin configs from its defaults.
pub fn plugin_schema(name: &str, snap: &Snapshot) -> (u16, Value) {
    let config = &snap.config;
    // A cloned plugin has the schema of the plugin it clones.
    let source_name = config
        .cloned_plugins
        .iter()
        .find(|c| c.name == name)
        .map_or(name, |c| c.reference.as_str());
    let source: Option<(String, String)> = crate::plugins::native::BUNDLED
        .iter()
        .find(|b| b.name == source_name)
        .map(|b| (b.name.to_string(), b.schema.to_string()))
        .or_else(|| {
            config
                .custom_plugins
                .iter()
                .find(|c| c.name == source_name)
                .map(|c| (c.name.clone(), c.schema.clone()))
        });
    let Some((module, source)) = source else {
        return (
            404,
            json!({ "message": format!("No plugin named '{name}'") }),
        );
    };
    let loader = match crate::plugins::lua::Loader::new() {
        Ok(l) => l,
        Err(e) => return (500, json!({ "message": format!("schema: {e}") })),
    };
    match loader.schema_json(&module, &source) {
        Ok(v) => (200, v),
        Err(e) => (500, json!({ "message": format!("schema of {name}: {e}") })),
    }
}

/// Kong's schema-violation body: each error under its field path inside the entity.
fn violation(entity: &str, errors: &[crate::config::error::ConfigError]) -> Value {
    let mut fields = Map::new();
    let mut parts = Vec::new();
    for e in errors {
        let path = e.path.split(" (").next().unwrap_or(&e.path);
        // Strip the wrapper's own path (`routes[0]`, `services[0].routes[0].plugins[0]`).
        let inner = path
            .rsplit_once(&format!("{entity}[0]"))
            .map_or("", |(_, rest)| rest.trim_start_matches('.'));
        let (field, message) = match (inner, e.message.split_once(": ")) {
            ("", Some((f, m))) if !f.contains(' ') => (f.to_string(), m.to_string()),
            ("", _) => ("@entity".to_string(), e.message.clone()),
            (f, _) => (f.to_string(), e.message.clone()),
        };
        // Kong's field path: dotted, array positions from 1.
        let field = if field == "@entity" {
            field
        } else {
            super::flatten::join(&crate::config::load::path_segments(&field))
        };
        parts.push(if field == "@entity" {
            message.clone()
        } else {
            format!("{field}: {message}")
        });
        fields.insert(field, json!(message));
    }
    json!({
        "code": 2,
        "name": "schema violation",
        "message": format!("schema violation ({})", parts.join("; ")),
        "fields": fields,
    })
}
