//! The admin API, on its own listener (default 127.0.0.1:8001, like Kong's), compatible with
//! Kong's DB-less admin API where they overlap, in the shapes the Kong Ingress Controller reads:
//! `GET /`, `GET /status`, `GET /status/ready`, `POST /config` (with `check_hash` and
//! `flatten_errors`), `GET /config`, `POST /schemas/{entity}/validate`, read-only collections
//! (`/services`, `/routes`, `/plugins`, `/consumers`, `/custom_plugins`, `/cloned_plugins`, and
//! `/{collection}/{id or name}`), `GET /metrics`. The same application serves the status API
//! (`status_listen`): `/status`, `/status/ready` and `/metrics` only.
//!
//! `POST /config` replaces the configuration in memory only: the next change of the config file
//! (or SIGHUP) replaces it again with the file's content.

mod entities;
mod flatten;
mod kong;
mod schemas;
mod written;

pub use kong::Node;

use std::sync::Arc;
use std::time::SystemTime;

use async_trait::async_trait;
use http::{Method, Response, StatusCode};
use pingora::apps::http_app::ServeHttp;
use pingora::protocols::http::ServerSession;
use serde_json::{json, Value};

use crate::config::LoadError;
use crate::metrics::Metrics;
use crate::reload::{Attempt, Outcome, Reloader};

/// Largest configuration accepted by `POST /config`.
const MAX_BODY: usize = 64 * 1024 * 1024;

/// The admin API application.
pub struct Admin {
    reloader: Arc<Reloader>,
    metrics: Arc<Metrics>,
    token: Option<String>,
    node: Arc<Node>,
    /// Serve only the status API (Kong's `status_listen`): `/status`, `/status/ready`,
    /// `/metrics`, without credentials.
    status_only: bool,
}

impl Admin {
    /// An admin API over `reloader` reporting `node`; with `token`, every request must carry
    /// `Authorization: Bearer <token>` (or `Kong-Admin-Token: <token>`). With `status_only`,
    /// the status API.
    pub fn new(
        reloader: Arc<Reloader>,
        metrics: Arc<Metrics>,
        token: Option<String>,
        node: Arc<Node>,
        status_only: bool,
    ) -> Self {
        Admin {
            reloader,
            metrics,
            token,
            node,
            status_only,
        }
    }
}

fn unix(t: SystemTime) -> f64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

fn attempt_json(a: &Option<Attempt>) -> Value {
    match a {
        None => Value::Null,
        Some(a) => json!({
            "at": unix(a.at), "trigger": a.trigger, "hash": a.hash, "ok": a.errors.is_empty(),
            "errors": a.errors, "duration_ms": a.duration_ms, "generation": a.generation,
        }),
    }
}

fn reply(status: u16, body: Value) -> Response<Vec<u8>> {
    reply_raw(
        status,
        "application/json; charset=utf-8",
        body.to_string().into_bytes(),
    )
}

fn reply_raw(status: u16, content_type: &str, body: Vec<u8>) -> Response<Vec<u8>> {
    Response::builder()
        .status(StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR))
        .header("content-type", content_type)
        .header("content-length", body.len())
        .header("server", crate::proxy::respond::PRODUCT)
        .body(body)
        .unwrap_or_default()
}

fn message(status: u16, msg: &str) -> Response<Vec<u8>> {
    reply(status, json!({ "message": msg }))
}

/// Kong's shape for an invalid declarative config; with the posted config as `flatten_from`,
/// also Kong's `flattened_errors`.
fn invalid_config(err: &LoadError, flatten_from: Option<&str>) -> Response<Vec<u8>> {
    let mut fields = serde_json::Map::new();
    let mut lines = Vec::new();
    for e in err.errors() {
        lines.push(e.to_string());
        let entry = fields
            .entry(if e.path.is_empty() {
                "@entity".to_string()
            } else {
                e.path.clone()
            })
            .or_insert_with(|| Value::Array(Vec::new()));
        if let Value::Array(list) = entry {
            list.push(Value::String(e.message.clone()));
        }
    }
    if lines.is_empty() {
        lines.push(err.to_string());
    }
    let mut body = json!({
        "name": "invalid declarative configuration",
        "code": 14,
        "message": format!("declarative config is invalid: {}", lines.join("; ")),
        "fields": fields,
        "errors": lines,
    });
    if let Some(text) = flatten_from {
        let input = serde_json::from_str::<Value>(text)
            .or_else(|_| crate::config::yaml::parse(text).map(|n| n.to_json()));
        body["flattened_errors"] = match input {
            Ok(input) => flatten::flattened(&input, err.errors()),
            Err(_) => json!([]),
        };
    }
    reply(400, body)
}

/// Kong's reading of a boolean query argument (`true`, `1`, `on`, `yes`).
fn truthy(v: &str) -> bool {
    matches!(v.to_ascii_lowercase().as_str(), "true" | "1" | "on" | "yes")
}

/// The value of a query argument.
fn query_arg<'a>(query: Option<&'a str>, name: &str) -> Option<&'a str> {
    query?.split('&').find_map(|kv| match kv.split_once('=') {
        Some((k, v)) if k == name => Some(v),
        None if kv == name => Some(""),
        _ => None,
    })
}

/// Extracts the config text from a POST /config body (raw YAML/JSON, a JSON object with a
/// `config` string, or a form with a `config` field, as Kong accepts).
fn config_text(content_type: &str, body: &[u8]) -> Result<String, String> {
    let text = std::str::from_utf8(body).map_err(|_| "the body is not UTF-8".to_string())?;
    if content_type.starts_with("application/x-www-form-urlencoded") {
        for pair in text.split('&') {
            if let Some(v) = pair.strip_prefix("config=") {
                let v = v.replace('+', " ");
                return percent_decode(&v).ok_or_else(|| "bad form encoding".to_string());
            }
        }
        return Err("the form has no `config` field".into());
    }
    if content_type.starts_with("application/json") {
        if let Ok(Value::Object(m)) = serde_json::from_str::<Value>(text) {
            if let Some(Value::String(c)) = m.get("config") {
                return Ok(c.clone());
            }
        }
    }
    Ok(text.to_string())
}

fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// Reads a request body of at most MAX_BODY bytes; the error is the answer to send.
async fn read_body(session: &mut ServerSession) -> Result<Vec<u8>, Response<Vec<u8>>> {
    // curl sends `Expect: 100-continue` with bodies over 1 MiB and waits a second for the
    // interim answer before sending the body; a declared body that is too large is refused
    // before it is sent.
    let expects = session
        .req_header()
        .headers
        .get("expect")
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"));
    if expects {
        let declared = session
            .req_header()
            .headers
            .get("content-length")
            .and_then(|v| v.to_str().ok()?.parse::<usize>().ok());
        if declared.is_some_and(|n| n > MAX_BODY) {
            return Err(message(413, "Request size limit exceeded"));
        }
        if let Err(e) = session.write_continue_response().await {
            return Err(message(400, &format!("cannot answer 100-continue: {e}")));
        }
    }
    let mut body = Vec::new();
    loop {
        match session.read_request_body().await {
            Ok(Some(chunk)) => {
                if body.len() + chunk.len() > MAX_BODY {
                    return Err(message(413, "Request size limit exceeded"));
                }
                body.extend_from_slice(&chunk);
            }
            Ok(None) => break,
            Err(e) => return Err(message(400, &format!("cannot read the body: {e}"))),
        }
    }
    Ok(body)
}

impl Admin {
    fn authorized(&self, session: &ServerSession) -> bool {
        let Some(token) = &self.token else {
            return true;
        };
        let headers = &session.req_header().headers;
        let bearer = headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        let kong = headers
            .get("kong-admin-token")
            .and_then(|v| v.to_str().ok());
        bearer == Some(token.as_str()) || kong == Some(token.as_str())
    }

    fn status(&self) -> Value {
        let snap = self.reloader.state().load();
        let reload = json!({
            "generation": snap.generation,
            "hash": snap.hash,
            "loaded_at": unix(snap.loaded_at),
            "services": snap.config.services.len(),
            "routes": snap.config.routes.len(),
            "plugins": snap.config.plugins.len(),
            "last_attempt": attempt_json(&self.reloader.last_attempt()),
            "last_failure": attempt_json(&self.reloader.last_failure()),
        });
        self.node.status(&snap, reload)
    }

    async fn post_config(&self, session: &mut ServerSession) -> Response<Vec<u8>> {
        let body = match read_body(session).await {
            Ok(b) => b,
            Err(r) => return r,
        };
        let req = session.req_header();
        let content_type = req
            .headers
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        // As Kong: `check_hash` only when exactly 1, `flatten_errors` when truthy.
        let query = req.uri.query();
        let check_hash = query_arg(query, "check_hash") == Some("1");
        let flatten = query_arg(query, "flatten_errors").is_some_and(truthy);
        let text: Arc<str> = match config_text(&content_type, &body) {
            Ok(t) => t.into(),
            Err(e) => return message(400, &e),
        };
        if text.trim().is_empty() {
            return message(400, "expected a declarative configuration");
        }
        let reloader = self.reloader.clone();
        let posted = text.clone();
        let result = tokio::task::spawn_blocking(move || {
            reloader.apply_text(&posted, "POST /config", "POST /config", !check_hash)
        })
        .await;
        match result {
            Ok(Ok(Outcome::Unchanged)) => reply_raw(304, "application/json", Vec::new()),
            Ok(Ok(Outcome::Applied { generation })) => {
                let snap = self.reloader.state().load();
                reply(
                    201,
                    json!({ "generation": generation, "hash": snap.hash, "message": "configuration applied (in memory: the next change of the config file replaces it)" }),
                )
            }
            Ok(Err(e)) => invalid_config(&e, flatten.then_some(&*text)),
            Err(e) => message(500, &format!("reload task failed: {e}")),
        }
    }

    fn collection(&self, kind: &str, key: Option<&str>, query: &str) -> Response<Vec<u8>> {
        let snap = self.reloader.state().load();
        let items = match entities::collection(&snap.config, kind) {
            Some(items) => items,
            None => {
                let w = written::Written::parse(&snap.text);
                match written::collection(&snap.config, &w, kind) {
                    Some(items) => items,
                    None => return message(404, "Not found"),
                }
            }
        };
        match key {
            None => page(kind, items.into_iter().map(|(_, v)| v).collect(), query),
            Some(key) => match items
                .into_iter()
                .find(|(keys, _)| keys.iter().any(|k| k == key))
            {
                Some((_, v)) => reply(200, v),
                None => message(404, "Not found"),
            },
        }
    }

    /// `GET /upstreams/{id or name}/targets`.
    fn upstream_targets(&self, key: &str, query: &str) -> Response<Vec<u8>> {
        let snap = self.reloader.state().load();
        let c = &snap.config;
        let Some(u) = c
            .upstreams
            .iter()
            .position(|u| u.id == key || u.name == key)
        else {
            return message(404, "Not found");
        };
        let w = written::Written::parse(&snap.text);
        let id = &c.upstreams[u].id;
        let items = written::collection(c, &w, "targets")
            .unwrap_or_default()
            .into_iter()
            .map(|(_, v)| v)
            .filter(|v| v["upstream"]["id"].as_str() == Some(id))
            .collect();
        page(&format!("upstreams/{key}/targets"), items, query)
    }
}

/// One page of a listing as Kong pages it: `size` (default 100, at most 1000), an opaque
/// `offset` from the previous page, `tags` (`a,b`: any of them; `a/b`: all of them);
/// `offset` and `next` name the following page, null on the last.
fn page(path: &str, items: Vec<Value>, query: &str) -> Response<Vec<u8>> {
    let mut size = 100usize;
    let mut start = 0usize;
    let mut tags: Option<String> = None;
    for (k, v) in url::form_urlencoded::parse(query.as_bytes()) {
        match &*k {
            "size" => match v.parse::<usize>() {
                Ok(n) if (1..=1000).contains(&n) => size = n,
                _ => {
                    return reply(
                        400,
                        json!({ "code": 3, "name": "invalid size", "message": "size must be an integer between 1 and 1000" }),
                    )
                }
            },
            "offset" => match decode_offset(&v) {
                Some(n) => start = n,
                None => {
                    return reply(
                        400,
                        json!({ "code": 7, "name": "invalid offset", "message": format!("'{v}' is not a valid offset: bad base64 encoding") }),
                    )
                }
            },
            "tags" => tags = Some(v.into_owned()),
            _ => {}
        }
    }
    let items: Vec<Value> = match &tags {
        None => items,
        Some(t) => {
            let has = |v: &Value, tag: &str| {
                v["tags"]
                    .as_array()
                    .is_some_and(|a| a.iter().any(|x| x == tag))
            };
            items
                .into_iter()
                .filter(|v| {
                    if t.contains('/') {
                        t.split('/').all(|tag| has(v, tag))
                    } else {
                        t.split(',').any(|tag| has(v, tag))
                    }
                })
                .collect()
        }
    };
    let end = start.saturating_add(size).min(items.len());
    let data: Vec<&Value> = items
        .get(start..end)
        .map_or_else(Vec::new, |s| s.iter().collect());
    let (offset, next) = if end < items.len() {
        let o = encode_offset(end);
        let mut next = format!("/{path}?offset={o}&size={size}");
        if let Some(t) = &tags {
            next.push_str("&tags=");
            next.push_str(&url::form_urlencoded::byte_serialize(t.as_bytes()).collect::<String>());
        }
        (json!(o), json!(next))
    } else {
        (Value::Null, Value::Null)
    };
    reply(200, json!({ "data": data, "offset": offset, "next": next }))
}

fn encode_offset(n: usize) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!("[{n}]"))
}

fn decode_offset(s: &str) -> Option<usize> {
    use base64::Engine;
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(s)
        .ok()?;
    std::str::from_utf8(&raw)
        .ok()?
        .strip_prefix('[')?
        .strip_suffix(']')?
        .parse()
        .ok()
}

#[async_trait]
impl ServeHttp for Admin {
    async fn response(&self, session: &mut ServerSession) -> Response<Vec<u8>> {
        self.metrics.admin_requests.inc();
        // The readiness probe and the status API stay open so that probes need no credentials.
        let is_probe = session.req_header().uri.path() == "/status/ready";
        if !is_probe && !self.status_only && !self.authorized(session) {
            return message(401, "Unauthorized");
        }
        let method = session.req_header().method.clone();
        let path = session
            .req_header()
            .uri
            .path()
            .trim_end_matches('/')
            .to_string();
        let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
        let query = session.req_header().uri.query().unwrap_or("").to_string();
        if self.status_only && !matches!(segments.as_slice(), ["status", ..] | ["metrics"]) {
            return message(404, "Not found");
        }
        match (&method, segments.as_slice()) {
            (&Method::GET, []) => {
                let snap = self.reloader.state().load();
                // Started with no configuration: no file is being served (Kong's null).
                let path = (snap.config.source != crate::snapshot::NO_CONFIG_SOURCE)
                    .then(|| self.reloader.path().display().to_string());
                reply(200, self.node.info(&snap, path.as_deref()))
            }
            (&Method::GET, ["status"]) => reply(200, self.status()),
            (&Method::GET, ["status", "ready"]) => {
                let (status, body) = kong::ready(&self.reloader.state().load());
                reply(status, body)
            }
            (&Method::GET, ["metrics"]) => {
                let lua = crate::plugins::lua::runtime::total_memory();
                self.metrics
                    .lua_memory
                    .set(i64::try_from(lua).unwrap_or(i64::MAX));
                reply_raw(
                    200,
                    "text/plain; version=0.0.4",
                    self.metrics.render().into_bytes(),
                )
            }
            (&Method::GET, ["config"]) => {
                let snap = self.reloader.state().load();
                reply(200, json!({ "config": &*snap.text, "hash": snap.hash, "generation": snap.generation }))
            }
            (&Method::POST, ["config"]) => self.post_config(session).await,
            (&Method::POST, ["schemas", entity, "validate"]) => {
                let entity = entity.to_string();
                let body = match read_body(session).await {
                    Ok(b) => b,
                    Err(r) => return r,
                };
                let snap = self.reloader.state().load_full();
                // Validating a plugin compiles Lua: off the async worker.
                match tokio::task::spawn_blocking(move || schemas::validate(&entity, &body, &snap)).await {
                    Ok((status, body)) => reply(status, body),
                    Err(e) => message(500, &format!("validation task failed: {e}")),
                }
            }
            (&Method::GET, ["schemas", "plugins", name]) => {
                let name = name.to_string();
                let snap = self.reloader.state().load_full();
                // Reading a schema runs Lua: off the async worker.
                match tokio::task::spawn_blocking(move || schemas::plugin_schema(&name, &snap)).await {
                    Ok((status, body)) => reply(status, body),
                    Err(e) => message(500, &format!("schema task failed: {e}")),
                }
            }
            (&Method::GET, ["upstreams", key, "health"]) => {
                let snap = self.reloader.state().load();
                let query = session.req_header().uri.query().unwrap_or("");
                let whole = query.split('&').any(|p| p == "balancer_health=1");
                match crate::balancer::status::health(&snap, key, whole, &self.node.node_id) {
                    Some(body) => reply(200, body),
                    None => message(404, "Not found"),
                }
            }
            (&Method::GET, ["cache", key]) => cache_entry(key),
            (&Method::DELETE, ["cache", key]) => {
                crate::plugins::lua::io::cache::invalidate(
                    &percent_decode(key).unwrap_or_else(|| key.to_string()),
                );
                reply_raw(204, "application/json; charset=utf-8", Vec::new())
            }
            (&Method::DELETE, ["cache"]) => {
                crate::plugins::lua::io::cache::purge();
                reply_raw(204, "application/json; charset=utf-8", Vec::new())
            }
            (&Method::GET, ["upstreams", key, "targets"]) => self.upstream_targets(key, &query),
            (&Method::GET, [kind]) => self.collection(kind, None, &query),
            (&Method::GET, [kind, key]) => self.collection(kind, Some(key), ""),
            (_, [kind, ..])
                if entities::collection(&Default::default(), kind).is_some()
                    || written::collection(&Default::default(), &written::Written::parse(""), kind)
                        .is_some() =>
            {
                message(
                    405,
                    "Method not allowed: the configuration is declarative (edit the file or POST /config)",
                )
            }
            _ => message(404, "Not found"),
        }
    }
}

/// `GET /cache/{key}`: kong.cache's shared entry, as Kong's admin API shows it (a table as is,
/// another value as `{"message": value}`, a cached miss as `{}`).
fn cache_entry(key: &str) -> Response<Vec<u8>> {
    use crate::plugins::lua::io::cache::{self, Stored};
    match cache::get(&percent_decode(key).unwrap_or_else(|| key.to_string())) {
        None => message(404, "Not found"),
        Some((Stored::Nil, _)) => reply(200, json!({})),
        Some((v @ Stored::Table(_), _)) => reply(200, v.to_json()),
        Some((v, _)) => reply(200, json!({ "message": v.to_json() })),
    }
}
