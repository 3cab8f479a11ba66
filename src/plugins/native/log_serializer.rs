//! Kong's log serializer (`kong.log.serialize()`): one JSON object per request, the shape
//! file-log and http-log write.

use serde_json::{json, Map, Value};

use crate::plugins::{entity, PhaseCtx};

/// Request headers whose values are never logged.
const REDACTED: &[&str] = &["authorization", "proxy-authorization"];

/// Headers as a JSON object: lowercase names, repeated headers as arrays.
fn headers<'a>(pairs: impl Iterator<Item = (&'a str, String)>) -> Value {
    let mut out = Map::new();
    for (name, value) in pairs {
        let value = if REDACTED.contains(&name) {
            "REDACTED".to_string()
        } else {
            value
        };
        match out.get_mut(name) {
            Some(Value::Array(list)) => list.push(value.into()),
            Some(first) => *first = json!([first.take(), value]),
            None => {
                out.insert(name.to_string(), value.into());
            }
        }
    }
    Value::Object(out)
}

/// The serialized request, Kong's shape: request, response, route, service, consumer,
/// latencies, tries, client_ip, started_at, upstream_uri, authenticated_entity; with the
/// request's `kong.log.set_serialize_value` edits applied.
pub fn serialize(ctx: &PhaseCtx<'_>) -> Value {
    let mut out = serialize_base(ctx);
    for edit in &ctx.state.serialize_values {
        apply(&mut out, edit);
    }
    out
}

/// [`serialize`] without the edits.
pub fn serialize_base(ctx: &PhaseCtx<'_>) -> Value {
    let state = &*ctx.state;
    let req = &*ctx.req;
    let cfg = &ctx.snap.config;
    let log = &state.log;

    let mut query = Map::new();
    for (k, v) in form_urlencoded::parse(req.uri.query().unwrap_or("").as_bytes()) {
        match query.get_mut(k.as_ref()) {
            Some(Value::Array(list)) => list.push(v.into_owned().into()),
            Some(first) => *first = json!([first.take(), v.into_owned()]),
            None => {
                query.insert(k.into_owned(), v.into_owned().into());
            }
        }
    }
    let host = req
        .headers
        .get(http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("");
    let url = format!("{}://{}{}", state.scheme, host, req.uri);
    let request_headers = headers(req.headers.iter().map(|(k, v)| {
        (
            k.as_str(),
            String::from_utf8_lossy(v.as_bytes()).into_owned(),
        )
    }));
    let response_headers = headers(
        log.response_headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.clone())),
    );
    let started_ms = state
        .started
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let upstream_ms = log.upstream_ms.unwrap_or(0);
    let tries: Vec<Value> = log
        .tries
        .iter()
        .map(|a| json!({ "ip": a.ip().to_string(), "port": a.port(), "balancer_latency": 0 }))
        .collect();

    let route = state.route.map(|i| entity::route_json(cfg, i));
    let service = state.service.map(|i| entity::service_json(cfg, i));
    let consumer = state.consumer.map(|i| {
        let c = &cfg.consumers[i];
        json!({ "id": c.id, "username": c.username, "custom_id": c.custom_id, "tags": c.tags })
    });
    let authenticated_entity = state.credential.as_ref().map(|c| {
        json!({
            "id": c.get("id").cloned().unwrap_or(Value::Null),
            "consumer_id": c.get("consumer").and_then(|c| c.get("id")).cloned().unwrap_or(Value::Null),
        })
    });

    let mut out = json!({
        "request": {
            "id": state.request_id(),
            "uri": req.uri.to_string(),
            "url": url,
            "querystring": query,
            "method": req.method.as_str(),
            "headers": request_headers,
            "size": log.request_size,
        },
        "upstream_uri": log.upstream_uri.clone().unwrap_or_default(),
        "response": {
            "status": state.status,
            "headers": response_headers,
            "size": log.response_size,
        },
        "tries": tries,
        "latencies": {
            "request": log.request_ms,
            "proxy": log.upstream_ms.map_or(-1, |v| v as i64),
            "kong": log.request_ms.saturating_sub(upstream_ms),
            "receive": 0,
        },
        "client_ip": ctx.client_ip().map(|ip| ip.to_string()),
        "started_at": started_ms,
        "source": state.source,
        "workspace": "00000000-0000-0000-0000-000000000000",
        "workspace_name": "default",
    });
    let obj = out.as_object_mut().expect("an object literal");
    for (key, value) in [
        ("route", route),
        ("service", service),
        ("consumer", consumer),
        ("authenticated_entity", authenticated_entity),
    ] {
        if let Some(v) = value {
            obj.insert(key.to_string(), v);
        }
    }
    out
}

/// Applies one `kong.log.set_serialize_value` edit (a path through a non-object is skipped).
fn apply(root: &mut Value, edit: &crate::plugins::SerializeValue) {
    use crate::plugins::SerializeMode;
    let Some((leaf, branches)) = edit.path.split_last() else {
        return;
    };
    let mut node = root;
    for k in branches {
        let Some(obj) = node.as_object_mut() else {
            return;
        };
        if !obj.contains_key(k) {
            if edit.mode == SerializeMode::Replace {
                return;
            }
            obj.insert(k.clone(), Value::Object(Map::new()));
        }
        node = &mut obj[k.as_str()];
    }
    let Some(obj) = node.as_object_mut() else {
        return;
    };
    let present = obj.get(leaf).is_some_and(|v| !v.is_null());
    let write = match edit.mode {
        SerializeMode::Set => true,
        SerializeMode::Add => !present,
        SerializeMode::Replace => present,
    };
    if write {
        if edit.value.is_null() {
            obj.remove(leaf);
        } else {
            obj.insert(leaf.clone(), edit.value.clone());
        }
    }
}
