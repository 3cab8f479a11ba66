//! Routes written in Kong's expressions language (`router_flavor = expressions`), matched by
//! Kong's own engine, the `atc-router` crate (`kong/router/expressions.lua`, `atc.lua`,
//! `fields.lua`).
//!
//! Under that flavor Kong puts every route into one ATC router: a route with `expression`
//! gets the priority `0xFF << 56 | priority`, a route written with methods/hosts/paths/...
//! is translated to an expression with its traditional priority (at most `5 << 61 | ...`
//! for HTTP routes, which cannot carry sources/destinations). Every expression route
//! therefore ranks above every traditional route, so the gateway asks this router first and
//! the traditional index (with the protocol check the flavor adds) only when it finds
//! nothing: the same answer as Kong's, with the traditional routes keeping their index.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::net::IpAddr;
use std::num::NonZeroUsize;
use std::sync::{Arc, LazyLock, Mutex};

use lru::LruCache;

use atc_router::ast::{Type, Value};
use atc_router::context::Context;
use atc_router::schema::Schema;
use atc_router::semantics::Validate;
use uuid::Uuid;

use super::{
    upstream, PathHandling, RequestInfo, RouteInput, RouteMatch, ServiceTarget, UriCaptures,
};

/// Kong's `HTTP_FIELDS` (`kong/router/fields.lua`).
static HTTP_SCHEMA: LazyLock<Schema> = LazyLock::new(|| {
    let mut s = Schema::default();
    for f in [
        "net.protocol",
        "tls.sni",
        "http.method",
        "http.host",
        "http.path",
        "http.path.segments.*",
        "http.headers.*",
        "http.queries.*",
    ] {
        s.add_field(f, Type::String);
    }
    for f in ["net.src.port", "net.dst.port", "http.path.segments.len"] {
        s.add_field(f, Type::Int);
    }
    for f in ["net.src.ip", "net.dst.ip"] {
        s.add_field(f, Type::IpAddr);
    }
    s
});

/// Deepest parenthesis nesting accepted. The parser and the matcher recurse once per level.
const MAX_NESTING: usize = 64;
/// Most `&&`/`||` accepted in one expression: the parser builds a left-deep tree that the
/// matcher walks recursively, on a proxy worker's stack.
const MAX_OPERATORS: usize = 2048;
/// Longest expression accepted, in bytes.
const MAX_LEN: usize = 64 * 1024;

/// Kong's `amending_expression`: the deprecated `net.port` field means `net.dst.port`.
fn amend(expression: &str) -> std::borrow::Cow<'_, str> {
    if !expression.contains("net.port") {
        return expression.into();
    }
    static NET_PORT: LazyLock<regex::Regex> =
        LazyLock::new(|| regex::Regex::new(r"(net\.port)(\s*)([=><!])").expect("valid regex"));
    NET_PORT.replace_all(expression, "net.dst.port$2$3")
}

/// The protocol clause Kong appends (`kong/router/expressions.lua`): none for a route that
/// only takes https (so a plain request still reaches it and gets 426 or a redirect).
fn protocol_clause(protocols: &[String]) -> Option<String> {
    if protocols.len() == 1 && matches!(protocols[0].as_str(), "https" | "tls" | "tls_passthrough")
    {
        return None;
    }
    let default = ["http".to_owned(), "https".to_owned()];
    let protocols = if protocols.is_empty() {
        &default[..]
    } else {
        protocols
    };
    let alts: Vec<String> = protocols
        .iter()
        .map(|p| {
            let p = match p.as_str() {
                "grpc" => "http",
                "grpcs" => "https",
                "tls_passthrough" => "tcp",
                other => other,
            };
            format!("net.protocol == r#\"{p}\"#")
        })
        .collect();
    Some(format!("({})", alts.join(" || ")))
}

/// Refuses expressions whose shape would make the parser or the matcher recurse too deep.
fn check_shape(expression: &str) -> Result<(), String> {
    if expression.len() > MAX_LEN {
        return Err(format!("expression longer than {MAX_LEN} bytes"));
    }
    // Parentheses inside strings count too: an over-count only refuses sooner.
    let deepest = crate::config::checks::nesting_depth(expression, b"(", b")", b"");
    if deepest > MAX_NESTING {
        return Err(format!("parentheses nested deeper than {MAX_NESTING}"));
    }
    let operators = expression.matches("&&").count() + expression.matches("||").count();
    if operators > MAX_OPERATORS {
        return Err(format!("more than {MAX_OPERATORS} `&&`/`||` operators"));
    }
    Ok(())
}

/// Checks a route's `expression` as Kong's route schema does (`validate_route` in
/// `kong/db/schema/entities/routes.lua`). The error is Kong's message after
/// "Router Expression failed validation: ".
pub fn validate(expression: &str) -> Result<(), String> {
    check_shape(expression)?;
    let amended = amend(expression);
    let ast = atc_router::parser::parse(&amended).map_err(|e| e.to_string())?;
    ast.validate(&HTTP_SCHEMA)?;
    for field in fields_of(&amended) {
        if let Some(range) = field.strip_prefix("http.path.segments.") {
            if range != "len"
                && !matches!(
                    Segments::parse(range),
                    Some(Segments::One(_) | Segments::Range(..))
                )
            {
                return Err("illformed http.path.segments.* field".to_owned());
            }
        }
    }
    Ok(())
}

/// Identifiers an expression names (a superset is fine: only field names are looked at).
fn fields_of(expression: &str) -> impl Iterator<Item = &str> {
    expression
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '.' || c == '*'))
        .filter(|w| w.starts_with("http.") || w.starts_with("net.") || w.starts_with("tls."))
}

/// `http.path.segments.<range>`.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Segments {
    One(usize),
    /// Inclusive; Kong accepts `a_b` with `a < b`.
    Range(usize, usize),
    /// Well-formed by the grammar but never matching (`4_1`).
    Never,
}

impl Segments {
    /// Kong's `^(0|[1-9]\d*)(_([1-9]\d*))?$` plus `a < b`.
    fn parse(range: &str) -> Option<Segments> {
        let num = |s: &str| -> Option<usize> {
            let ok = !s.is_empty()
                && s.bytes().all(|b| b.is_ascii_digit())
                && (s == "0" || !s.starts_with('0'));
            ok.then(|| s.parse().ok()).flatten()
        };
        match range.split_once('_') {
            None => num(range).map(Segments::One),
            Some((a, b)) => {
                let (a, b) = (num(a)?, num(b)?);
                if b == 0 {
                    return None;
                }
                Some(if a < b {
                    Segments::Range(a, b)
                } else {
                    Segments::Never
                })
            }
        }
    }
}

/// A request value the router's expressions read.
#[derive(Debug)]
enum Field {
    Protocol,
    Sni,
    Method,
    Host,
    Path,
    SegmentsLen,
    Segments(Segments),
    /// Header name as looked up (lower case, `_` read as `-`, like `ngx.req.get_headers()`).
    Header(String),
    Query(String),
    SrcIp,
    SrcPort,
    DstIp,
    DstPort,
}

impl Field {
    fn parse(name: &str) -> Option<Field> {
        Some(match name {
            "net.protocol" => Field::Protocol,
            "tls.sni" => Field::Sni,
            "http.method" => Field::Method,
            "http.host" => Field::Host,
            "http.path" => Field::Path,
            "http.path.segments.len" => Field::SegmentsLen,
            "net.src.ip" => Field::SrcIp,
            "net.src.port" => Field::SrcPort,
            "net.dst.ip" => Field::DstIp,
            "net.dst.port" => Field::DstPort,
            _ => {
                if let Some(h) = name.strip_prefix("http.headers.") {
                    Field::Header(h.to_ascii_lowercase().replace('_', "-"))
                } else if let Some(q) = name.strip_prefix("http.queries.") {
                    Field::Query(q.to_owned())
                } else if let Some(r) = name.strip_prefix("http.path.segments.") {
                    Field::Segments(Segments::parse(r).unwrap_or(Segments::Never))
                } else {
                    return None;
                }
            }
        })
    }
}

/// What a match needs of its route besides the expression.
#[derive(Debug)]
struct Target {
    input: usize,
    strip_path: bool,
    preserve_host: bool,
    service: Option<Arc<ServiceTarget>>,
}

/// The routes that carry an `expression`, in Kong's ATC engine.
pub(crate) struct ExprIndex {
    atc: atc_router::router::Router<'static>,
    targets: HashMap<Uuid, Target>,
    /// Every field some expression reads, with its schema name; only those are filled per request.
    fields: Vec<(String, Field)>,
    /// Outcomes by the values of `fields`: the engine tries expression routes one after
    /// another, so a request seen before skips that walk (Kong's router keeps such an LRU too).
    cache: Box<[Shard]>,
}

/// One lock's part of the outcome cache: field values → the match (None: no route).
type Shard = Mutex<LruCache<String, Option<Arc<Hit>>>>;

/// A cached match: what the engine reported for a set of field values.
#[derive(Debug)]
struct Hit {
    uuid: Uuid,
    matched_path: Option<String>,
    captures: Option<UriCaptures>,
}

/// Shards of the outcome cache (each behind its own lock), and entries per shard.
const CACHE_SHARDS: usize = 16;
const CACHE_ENTRIES: usize = 512;
/// Requests whose field values are longer than this are not cached (bounds the cache's memory).
const CACHE_MAX_KEY: usize = 1024;

impl std::fmt::Debug for ExprIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExprIndex")
            .field("routes", &self.targets.len())
            .field("fields", &self.fields)
            .finish()
    }
}

impl ExprIndex {
    /// Compiles the routes that have an `expression`; the others are left to the traditional
    /// index. Errors name the route's input index.
    pub(crate) fn build(inputs: &[RouteInput]) -> Result<ExprIndex, (usize, String)> {
        let mut atc = atc_router::router::Router::new(&HTTP_SCHEMA);
        let mut targets = HashMap::new();
        for (i, r) in inputs.iter().enumerate() {
            let Some(expression) = &r.expression else {
                continue;
            };
            if !super::matcher::is_http_route(r) {
                continue;
            }
            check_shape(expression).map_err(|e| (i, e))?;
            let mut text = amend(expression).into_owned();
            if let Some(clause) = protocol_clause(&r.protocols) {
                text = format!("({text}) && {clause}");
            }
            let uuid = r.uuid();
            let priority = usize::try_from(r.priority).unwrap_or(usize::MAX);
            atc.add_matcher(priority, uuid, &text).map_err(|e| (i, e))?;
            targets.insert(
                uuid,
                Target {
                    input: i,
                    strip_path: r.strip_path,
                    preserve_host: r.preserve_host,
                    service: r.service.clone(),
                },
            );
        }
        let mut fields: Vec<(String, Field)> = atc
            .fields
            .keys()
            .filter_map(|name| Field::parse(name).map(|f| (name.clone(), f)))
            .collect();
        fields.sort_by(|a, b| a.0.cmp(&b.0));
        let entries = NonZeroUsize::new(CACHE_ENTRIES).expect("non-zero");
        let cache = (0..CACHE_SHARDS)
            .map(|_| Mutex::new(LruCache::new(entries)))
            .collect();
        Ok(ExprIndex {
            atc,
            targets,
            fields,
            cache,
        })
    }

    /// True when no route carries an expression.
    pub(crate) fn is_empty(&self) -> bool {
        self.targets.is_empty()
    }

    /// The highest-priority expression route matching the request.
    pub(crate) fn select(&self, req: &RequestInfo<'_>) -> Option<RouteMatch> {
        if self.targets.is_empty() {
            return None;
        }
        let mut ctx = Context::new(&HTTP_SCHEMA);
        let mut key = String::with_capacity(64);
        let (host, host_port) = super::matcher::split_host_port(req.host);
        let mut segments: Option<Vec<&str>> = None;
        let mut queries: Option<Vec<(String, String)>> = None;
        for (i, (name, field)) in self.fields.iter().enumerate() {
            match field {
                Field::Protocol => {
                    let p = if req.scheme == "https" {
                        "https"
                    } else {
                        "http"
                    };
                    add(&mut ctx, &mut key, i, name, Value::String(p.to_owned()));
                }
                Field::Sni => {
                    if let Some(sni) = req.sni {
                        add(&mut ctx, &mut key, i, name, Value::String(sni.to_owned()));
                    }
                }
                Field::Method => add(
                    &mut ctx,
                    &mut key,
                    i,
                    name,
                    Value::String(req.method.to_owned()),
                ),
                Field::Host => {
                    if !req.host.is_empty() {
                        add(&mut ctx, &mut key, i, name, Value::String(host.to_owned()));
                    }
                }
                Field::Path => add(
                    &mut ctx,
                    &mut key,
                    i,
                    name,
                    Value::String(req.path.to_owned()),
                ),
                Field::SegmentsLen => {
                    let n = segments
                        .get_or_insert_with(|| split_segments(req.path))
                        .len();
                    add(&mut ctx, &mut key, i, name, Value::Int(n as i64));
                }
                Field::Segments(range) => {
                    let segs = segments.get_or_insert_with(|| split_segments(req.path));
                    if let Some(v) = segment_value(segs, *range) {
                        add(&mut ctx, &mut key, i, name, Value::String(v));
                    }
                }
                Field::Header(h) => {
                    for v in req.headers.get_all(h.as_str()) {
                        let v = String::from_utf8_lossy(v.as_bytes()).into_owned();
                        add(&mut ctx, &mut key, i, name, Value::String(v));
                    }
                }
                Field::Query(q) => {
                    let all = queries.get_or_insert_with(|| {
                        url::form_urlencoded::parse(req.query.unwrap_or("").as_bytes())
                            .map(|(k, v)| (k.into_owned(), v.into_owned()))
                            .collect()
                    });
                    for (_, v) in all.iter().filter(|(k, _)| k == q) {
                        add(&mut ctx, &mut key, i, name, Value::String(v.clone()));
                    }
                }
                Field::SrcIp => {
                    if let Some(a) = req.src {
                        add(
                            &mut ctx,
                            &mut key,
                            i,
                            name,
                            Value::IpAddr(canonical(a.ip())),
                        );
                    }
                }
                Field::SrcPort => {
                    if let Some(a) = req.src {
                        add(&mut ctx, &mut key, i, name, Value::Int(i64::from(a.port())));
                    }
                }
                Field::DstIp => {
                    if let Some(a) = req.dst {
                        add(
                            &mut ctx,
                            &mut key,
                            i,
                            name,
                            Value::IpAddr(canonical(a.ip())),
                        );
                    }
                }
                Field::DstPort => {
                    if let Some(p) = host_port.or(req.dst.map(|a| a.port())) {
                        add(&mut ctx, &mut key, i, name, Value::Int(i64::from(p)));
                    }
                }
            }
        }
        let hit = if key.len() > CACHE_MAX_KEY {
            self.run(&mut ctx)
        } else {
            let mut h = std::collections::hash_map::DefaultHasher::new();
            key.hash(&mut h);
            let shard = &self.cache[h.finish() as usize % CACHE_SHARDS];
            let cached = shard.lock().ok().and_then(|mut c| c.get(&key).cloned());
            match cached {
                Some(hit) => hit,
                None => {
                    let hit = self.run(&mut ctx);
                    if let Ok(mut c) = shard.lock() {
                        c.put(key, hit.clone());
                    }
                    hit
                }
            }
        };
        let result = hit?;
        let target = self.targets.get(&result.uuid)?;
        let matched_path = result.matched_path.as_deref();
        let prefix = if target.strip_path {
            matched_path
        } else {
            None
        };
        let upstream_path = upstream::upstream_path(
            req.path,
            prefix,
            super::service_path(target.service.as_deref()),
            target.strip_path,
            PathHandling::V0,
        );
        Some(RouteMatch {
            route: target.input,
            upstream_path,
            upstream_host: (target.preserve_host && !req.host.is_empty())
                .then(|| req.host.to_owned()),
            prefix: prefix.map(str::to_owned),
            uri_captures: result.captures.clone(),
            matched_method: None,
            matched_host: None,
            matched_uri: None,
            matched_headers: Vec::new(),
        })
    }
}

impl ExprIndex {
    /// Runs the engine over a filled context.
    fn run(&self, ctx: &mut Context<'_>) -> Option<Arc<Hit>> {
        if !self.atc.execute(ctx) {
            return None;
        }
        let result = ctx.result.take()?;
        let matched_path = match result.matches.get("http.path") {
            Some(Value::String(s)) => Some(s.clone()),
            _ => None,
        };
        Some(Arc::new(Hit {
            uuid: result.uuid,
            matched_path,
            captures: captures(result.captures),
        }))
    }
}

/// Adds a field value to the context and to the cache key (field index, then the value
/// length-prefixed, so that no two different sets of values share a key).
fn add(ctx: &mut Context<'_>, key: &mut String, field: usize, name: &str, value: Value) {
    use std::fmt::Write;
    let _ = match &value {
        Value::String(s) => write!(key, "|{field}:{}:{s}", s.len()),
        Value::Int(n) => write!(key, "|{field}={n}"),
        Value::IpAddr(ip) => write!(key, "|{field}={ip}"),
        other => write!(key, "|{field}={other:?}"),
    };
    ctx.add_value(name, value);
}

/// IPv4-mapped IPv6 addresses as the IPv4 address nginx reports.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// Kong's segments: the path without its first `/`, split on `/`, trailing empty ones dropped.
fn split_segments(path: &str) -> Vec<&str> {
    let mut segs: Vec<&str> = path.strip_prefix('/').unwrap_or(path).split('/').collect();
    while segs.last() == Some(&"") {
        segs.pop();
    }
    segs
}

fn segment_value(segs: &[&str], range: Segments) -> Option<String> {
    match range {
        Segments::One(i) => segs.get(i).map(|s| (*s).to_owned()),
        Segments::Range(a, b) => (b < segs.len()).then(|| segs[a..=b].join("/")),
        Segments::Never => None,
    }
}

/// Kong reports captures only when a group besides the whole match took part.
fn captures<S>(caps: HashMap<String, String, S>) -> Option<UriCaptures> {
    if caps.len() < 2 {
        return None;
    }
    let mut out = UriCaptures::default();
    let mut named = Vec::new();
    for (k, v) in caps {
        match k.parse::<usize>() {
            Ok(i) => {
                if out.positional.len() <= i {
                    out.positional.resize(i + 1, None);
                }
                out.positional[i] = Some(v);
            }
            Err(_) => named.push((k, v)),
        }
    }
    named.sort();
    out.named = named;
    Some(out)
}

#[cfg(test)]
#[path = "expressions_tests.rs"]
mod tests;
