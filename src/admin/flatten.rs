//! `POST /config?flatten_errors=1`: every error tied to the entity of the posted config it
//! belongs to, in Kong's `flattened_errors` shape (kong/db/errors.lua,
//! `declarative_config_flattened`). The Kong Ingress Controller maps each entry back to the
//! Kubernetes object named by the entity's `k8s-*` tags.

use serde_json::{json, Map, Value};

use crate::config::error::ConfigError;
use crate::config::load::path_segments;
use crate::config::yaml::PathSeg;

/// Collections whose elements are entities (Kong's entity names, plural).
const ENTITY_KINDS: &[&str] = &[
    "services",
    "routes",
    "consumers",
    "plugins",
    "upstreams",
    "targets",
    "certificates",
    "snis",
    "ca_certificates",
    "keyauth_credentials",
    "basicauth_credentials",
    "acls",
    "jwt_secrets",
    "hmacauth_credentials",
    "oauth2_credentials",
    "mtls_auth_credentials",
    "consumer_groups",
    "consumer_group_consumers",
    "vaults",
    "custom_plugins",
    "cloned_plugins",
    "key_sets",
    "keys",
];

/// Kong's singular: the plural without its final `s`.
fn singular(kind: &str) -> &str {
    kind.strip_suffix('s').unwrap_or(kind)
}

fn valid_uuid(s: &str) -> bool {
    uuid::Uuid::parse_str(s).is_ok() && s.len() == 36
}

/// Splits a message that starts with a field path (`config.ttl: value should be ...`, as
/// plugin schema errors are worded) into the path and the rest.
fn leading_field(message: &str) -> Option<(&str, &str)> {
    let (field, rest) = message.split_once(": ")?;
    let plain = !field.is_empty()
        && field
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic())
        && field
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '[' | ']' | '-'));
    plain.then_some((field, rest))
}

/// Segments as Kong joins them: keys, and array positions counted from 1 (`paths.2`).
pub(super) fn join(segments: &[PathSeg<'_>]) -> String {
    let parts: Vec<String> = segments
        .iter()
        .map(|s| match s {
            PathSeg::Key(k) => (*k).to_string(),
            PathSeg::Index(i) => (i + 1).to_string(),
        })
        .collect();
    parts.join(".")
}

/// The entity an error's path falls in: its path (as a key for grouping), the entity and its
/// kind, and the field path inside it.
fn locate<'a>(input: &'a Value, path: &str) -> Option<(String, &'a Value, String, String)> {
    // A plugin's path carries a description after the path: `plugins[1] (acl on ...)`.
    let path = path.split(" (").next().unwrap_or(path);
    let segments = path_segments(path);
    let mut node = input;
    let mut found = None;
    for (i, seg) in segments.iter().enumerate() {
        node = match seg {
            PathSeg::Key(k) => node.get(*k)?,
            PathSeg::Index(n) => node.get(*n)?,
        };
        if let (PathSeg::Index(_), Some(PathSeg::Key(kind))) =
            (seg, i.checked_sub(1).map(|p| &segments[p]))
        {
            if ENTITY_KINDS.contains(kind) && node.is_object() {
                found = Some((i, node, singular(kind).to_string()));
            }
        }
    }
    let (at, entity, kind) = found?;
    let key = join(&segments[..=at]);
    Some((key, entity, kind, join(&segments[at + 1..])))
}

/// Kong's `flattened_errors` for `errors` found in the posted config `input`. Errors outside
/// any entity (a top-level key) are not listed, as in Kong.
pub fn flattened(input: &Value, errors: &[ConfigError]) -> Value {
    let mut order: Vec<String> = Vec::new();
    let mut groups: Map<String, Value> = Map::new();
    for e in errors {
        let Some((key, entity, kind, mut field)) = locate(input, &e.path) else {
            continue;
        };
        let mut message = e.message.as_str();
        if let Some((f, rest)) = leading_field(message) {
            let f = f.replace('[', ".").replace(']', "");
            field = if field.is_empty() {
                f
            } else {
                format!("{field}.{f}")
            };
            message = rest;
        }
        let error = if field.is_empty() {
            json!({ "type": "entity", "message": message })
        } else {
            json!({ "type": "field", "field": field, "message": message })
        };
        if !groups.contains_key(&key) {
            order.push(key.clone());
            let text = |k: &str| entity.get(k).and_then(Value::as_str);
            let tags = entity
                .get("tags")
                .and_then(Value::as_array)
                .filter(|t| t.iter().all(Value::is_string));
            let mut g = Map::new();
            if let Some(name) = text("name").filter(|n| !n.is_empty()) {
                g.insert("entity_name".into(), json!(name));
            }
            if let Some(id) = text("id").filter(|id| valid_uuid(id)) {
                g.insert("entity_id".into(), json!(id));
            }
            if let Some(tags) = tags {
                g.insert("entity_tags".into(), Value::Array(tags.clone()));
            }
            g.insert("entity_type".into(), json!(kind));
            g.insert("entity".into(), entity.clone());
            g.insert("errors".into(), json!([]));
            groups.insert(key.clone(), Value::Object(g));
        }
        if let Some(Value::Array(list)) = groups.get_mut(&key).and_then(|g| g.get_mut("errors")) {
            list.push(error);
        }
    }
    Value::Array(order.iter().filter_map(|k| groups.remove(k)).collect())
}

#[cfg(test)]
mod tests {
    use super::flattened;
    use crate::config::error::ConfigError;
    use serde_json::json;

    fn err(path: &str, message: &str) -> ConfigError {
        ConfigError {
            file: "<POST /config>".into(),
            loc: None,
            path: path.into(),
            message: message.into(),
        }
    }

    #[test]
    fn errors_are_grouped_by_the_entity_they_fall_in() {
        let tags = ["k8s-name:echo", "k8s-namespace:default", "k8s-uid:0b9d"];
        let input = json!({
            "_format_version": "3.0",
            "services": [{
                "name": "default.echo.80", "tags": tags,
                "routes": [{ "name": "default.echo.echo..80", "id": "00000000-0000-4000-8000-000000000001",
                             "tags": tags, "paths": ["/ok", "nope"] }],
                "plugins": [{ "name": "rate-limiting", "config": { "minute": "x" } }],
            }],
        });
        let out = flattened(
            &input,
            &[
                err(
                    "services[0].routes[0].paths[1]",
                    "invalid path \"nope\": expected a path starting with \"/\"",
                ),
                err(
                    "services[0].plugins[0] (rate-limiting on service \"default.echo.80\")",
                    "config.minute: expected a number",
                ),
                err(
                    "services[0].routes[0]",
                    "must set one of methods, hosts, headers, paths, snis",
                ),
                err("_format_version", "unsupported"),
            ],
        );
        let out = out.as_array().unwrap();
        assert_eq!(out.len(), 2, "{out:#?}");
        assert_eq!(out[0]["entity_type"], "route");
        assert_eq!(out[0]["entity_name"], "default.echo.echo..80");
        assert_eq!(out[0]["entity_id"], "00000000-0000-4000-8000-000000000001");
        assert_eq!(out[0]["entity_tags"], json!(tags));
        assert_eq!(
            out[0]["errors"],
            json!([
                { "type": "field", "field": "paths.2", "message": "invalid path \"nope\": expected a path starting with \"/\"" },
                { "type": "entity", "message": "must set one of methods, hosts, headers, paths, snis" },
            ])
        );
        assert_eq!(out[1]["entity_type"], "plugin");
        assert_eq!(out[1]["entity_name"], "rate-limiting");
        assert!(out[1].get("entity_id").is_none());
        assert_eq!(
            out[1]["errors"],
            json!([{ "type": "field", "field": "config.minute", "message": "expected a number" }])
        );
    }
}
