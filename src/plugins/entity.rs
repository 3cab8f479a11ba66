//! Routes and services as Kong's entities (`kong.router.get_route`/`get_service`, the log
//! serializer): one list of fields per entity, written to JSON or straight to a Lua VM.

use serde_json::{Map, Value};

use crate::config::model::Config;

/// Where an entity's fields are written.
pub trait EntityOut {
    /// A string field.
    fn str(&mut self, key: &'static str, v: &str);
    /// An optional string field (JSON writes `null`, Lua leaves it out).
    fn opt_str(&mut self, key: &'static str, v: Option<&str>);
    /// An integer field.
    fn int(&mut self, key: &'static str, v: i64);
    /// A boolean field.
    fn boolean(&mut self, key: &'static str, v: bool);
    /// An array of strings (read once, in order).
    fn strs<'a>(&mut self, key: &'static str, v: impl ExactSizeIterator<Item = &'a str>);
    /// A reference to another entity: `{ id = ... }`, or `null`.
    fn id_of(&mut self, key: &'static str, id: Option<&str>);
}

/// Writes route `i` of `cfg`.
pub fn route(cfg: &Config, i: usize, out: &mut impl EntityOut) {
    let r = &cfg.routes[i];
    out.str("id", &r.id);
    out.opt_str("name", r.name.as_deref());
    out.strs("paths", strs(&r.paths));
    out.strs("hosts", strs(&r.hosts));
    out.strs("methods", strs(&r.methods));
    out.strs("protocols", r.protocols.iter().map(|p| p.as_str()));
    out.boolean("strip_path", r.strip_path);
    out.boolean("preserve_host", r.preserve_host);
    out.int("regex_priority", r.regex_priority);
    out.int(
        "https_redirect_status_code",
        i64::from(r.https_redirect_status_code),
    );
    out.boolean("request_buffering", r.request_buffering);
    out.boolean("response_buffering", r.response_buffering);
    out.id_of("service", r.service.map(|s| cfg.services[s].id.as_str()));
    out.strs("tags", strs(&r.tags));
}

fn strs(v: &[String]) -> impl ExactSizeIterator<Item = &str> {
    v.iter().map(String::as_str)
}

/// Writes service `i` of `cfg`.
pub fn service(cfg: &Config, i: usize, out: &mut impl EntityOut) {
    let s = &cfg.services[i];
    out.str("id", &s.id);
    out.opt_str("name", s.name.as_deref());
    out.str("protocol", s.protocol.as_str());
    out.str("host", &s.host);
    out.int("port", i64::from(s.port));
    out.opt_str("path", s.path.as_deref());
    out.int("retries", i64::from(s.retries));
    out.int("connect_timeout", s.connect_timeout as i64);
    out.int("read_timeout", s.read_timeout as i64);
    out.int("write_timeout", s.write_timeout as i64);
    out.boolean("enabled", s.enabled);
    out.strs("tags", strs(&s.tags));
}

/// An entity as a JSON object.
#[derive(Default)]
pub struct JsonOut(pub Map<String, Value>);

impl EntityOut for JsonOut {
    fn str(&mut self, key: &'static str, v: &str) {
        self.0.insert(key.into(), v.into());
    }
    fn opt_str(&mut self, key: &'static str, v: Option<&str>) {
        self.0
            .insert(key.into(), v.map_or(Value::Null, Value::from));
    }
    fn int(&mut self, key: &'static str, v: i64) {
        self.0.insert(key.into(), v.into());
    }
    fn boolean(&mut self, key: &'static str, v: bool) {
        self.0.insert(key.into(), v.into());
    }
    fn strs<'a>(&mut self, key: &'static str, v: impl ExactSizeIterator<Item = &'a str>) {
        self.0.insert(key.into(), v.map(Value::from).collect());
    }
    fn id_of(&mut self, key: &'static str, id: Option<&str>) {
        let v = id.map_or(Value::Null, |id| serde_json::json!({ "id": id }));
        self.0.insert(key.into(), v);
    }
}

/// Route `i` of `cfg` as JSON.
pub fn route_json(cfg: &Config, i: usize) -> Value {
    let mut out = JsonOut::default();
    route(cfg, i, &mut out);
    Value::Object(out.0)
}

/// Service `i` of `cfg` as JSON.
pub fn service_json(cfg: &Config, i: usize) -> Value {
    let mut out = JsonOut::default();
    service(cfg, i, &mut out);
    Value::Object(out.0)
}
