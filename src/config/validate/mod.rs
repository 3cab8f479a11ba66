//! [`Document`] → [`Config`]: Kong's field rules and defaults, references resolved to indexes,
//! uniqueness, deterministic ids. Every problem is reported; nothing stops at the first.

use std::collections::HashMap;

use super::checks;
use super::error::Errors;
use super::load::{Document, Item};
use super::model::*;
use super::raw::RawRef;
use super::yaml::PathSeg;

/// Namespace of the ids generated for entities written without one.
const ID_NAMESPACE: uuid::Uuid = uuid::Uuid::from_u128(0x6b1c_6f0e_5a2d_4c55_9f1e_2b4f_6d4b_7a10);

/// Validates a decoded document. Errors go to `errs`; the returned config is only meaningful
/// when `errs` stays empty.
pub fn validate(doc: &mut Document, errs: &mut Errors) -> Config {
    let mut v = Validator {
        errs,
        ids: HashMap::new(),
    };
    // Sized up front: the config lives as long as its snapshot, and a vector grown by
    // doubling keeps up to half of its capacity unused (10 MB at 100,000 routes).
    let mut cfg = Config {
        services: Vec::with_capacity(doc.services.len()),
        routes: Vec::with_capacity(doc.routes.len()),
        consumers: Vec::with_capacity(doc.consumers.len()),
        plugins: Vec::with_capacity(doc.plugins.len()),
        ..Config::default()
    };
    v.vaults(doc, &mut cfg);
    v.services(doc, &mut cfg);
    v.routes(doc, &mut cfg);
    v.consumers(doc, &mut cfg);
    v.upstreams(doc, &mut cfg);
    v.certificates(doc, &mut cfg);
    v.credentials(doc, &mut cfg);
    // Moves each instance's config out of the document rather than copying it.
    v.plugins(doc, &mut cfg);
    v.plugin_definitions(doc, &mut cfg);
    cfg
}

/// Name → index and id → index lookups of one entity kind.
#[derive(Default)]
struct Index {
    by_id: HashMap<String, usize>,
    by_name: HashMap<String, usize>,
}

impl Index {
    fn with_capacity(n: usize) -> Self {
        Index {
            by_id: HashMap::with_capacity(n),
            by_name: HashMap::with_capacity(n),
        }
    }

    fn resolve(&self, r: &RawRef) -> Option<usize> {
        match r {
            RawRef::Key(k) => self.by_id.get(k).or_else(|| self.by_name.get(k)).copied(),
            RawRef::Obj { id, name, username } => {
                if let Some(id) = id {
                    self.by_id.get(id).copied()
                } else {
                    name.as_ref()
                        .or(username.as_ref())
                        .and_then(|n| self.by_name.get(n).copied())
                }
            }
        }
    }
}

fn describe(r: &RawRef) -> String {
    match r {
        RawRef::Key(k) => format!("{k:?}"),
        RawRef::Obj { id, name, username } => id
            .as_ref()
            .or(name.as_ref())
            .or(username.as_ref())
            .map_or_else(|| "{}".to_string(), |s| format!("{s:?}")),
    }
}

struct Validator<'e> {
    errs: &'e mut Errors,
    /// All ids seen, per entity kind, to reject duplicates.
    ids: HashMap<(&'static str, String), String>,
}

impl Validator<'_> {
    fn err<T>(&mut self, item: &Item<T>, field: &[PathSeg<'_>], msg: impl Into<String>) {
        let mut path = item.path.clone();
        for seg in field {
            match seg {
                PathSeg::Key(k) => {
                    path.push('.');
                    path.push_str(k);
                }
                PathSeg::Index(i) => path.push_str(&format!("[{i}]")),
            }
        }
        let loc = item.loc_of(field);
        self.errs.at(loc, path, msg);
    }

    fn origin<T>(item: &Item<T>) -> Origin {
        Origin {
            path: item.path.clone(),
            loc: item.node.loc,
        }
    }

    /// The entity's id: validated if given, else derived from `natural` (stable across reloads).
    fn id<T>(
        &mut self,
        kind: &'static str,
        item: &Item<T>,
        id: &Option<String>,
        natural: &str,
    ) -> String {
        let id = match id {
            Some(id) => {
                if let Err(e) = checks::uuid(id) {
                    self.err(item, &[PathSeg::Key("id")], e);
                }
                id.clone()
            }
            // A derived id repeats only when the natural key does, which is reported already.
            None => {
                let name = [kind.as_bytes(), b":", natural.as_bytes()];
                let id = checks::uuid_v5(&ID_NAMESPACE, &name);
                return id
                    .hyphenated()
                    .encode_lower(&mut uuid::Uuid::encode_buffer())
                    .to_owned();
            }
        };
        if let Some(first) = self.ids.insert((kind, id.clone()), item.path.clone()) {
            self.err(
                item,
                &[PathSeg::Key("id")],
                format!("duplicate id {id:?}: already used by {first}"),
            );
        }
        id
    }

    /// The id of a named entity (derived from its name, or its path when unnamed; see
    /// [`id`](Self::id)), after checking its `name`, unique among `names`.
    fn named_id<'d, T>(
        &mut self,
        kind: &'static str,
        item: &'d Item<T>,
        id: &Option<String>,
        name: &Option<String>,
        names: &mut HashMap<String, &'d str>,
    ) -> String {
        let id = self.id(kind, item, id, name.as_deref().unwrap_or(&item.path));
        if let Some(name) = name {
            if let Err(e) = checks::name(name) {
                self.err(item, &[PathSeg::Key("name")], e);
            }
            self.unique(names, item, "name", name);
        }
        id
    }

    /// Reports `value` when an earlier item (named in `seen` by its path) used it already.
    fn unique<'d, T>(
        &mut self,
        seen: &mut HashMap<String, &'d str>,
        item: &'d Item<T>,
        field: &'static str,
        value: &str,
    ) {
        if let Some(first) = seen.insert(value.to_string(), &item.path) {
            self.err(
                item,
                &[PathSeg::Key(field)],
                format!("duplicate {field} {value:?}: already used by {first}"),
            );
        }
    }

    fn range<T>(
        &mut self,
        item: &Item<T>,
        field: &'static str,
        v: Option<i64>,
        default: i64,
        lo: i64,
        hi: i64,
    ) -> i64 {
        match v {
            None => default,
            Some(x) if (lo..=hi).contains(&x) => x,
            Some(x) => {
                self.err(
                    item,
                    &[PathSeg::Key(field)],
                    format!("value {x} out of range: expected an integer between {lo} and {hi}"),
                );
                default
            }
        }
    }

    fn services(&mut self, doc: &Document, cfg: &mut Config) {
        let mut names = HashMap::with_capacity(doc.services.len());
        for item in &doc.services {
            let r = &item.raw;
            let id = self.named_id("services", item, &r.id, &r.name, &mut names);
            let mut protocol = r.protocol.clone();
            let mut host = r.host.clone();
            let mut port = r.port;
            let mut path = r.path.clone();
            if let Some(url) = &r.url {
                if r.protocol.is_some() || r.host.is_some() || r.port.is_some() || r.path.is_some()
                {
                    self.err(
                        item,
                        &[PathSeg::Key("url")],
                        "`url` is shorthand for protocol, host, port and path: set either `url` or those fields",
                    );
                }
                match checks::service_url(url) {
                    Ok(u) => {
                        protocol = Some(u.protocol);
                        host = Some(u.host);
                        port = u.port.map(i64::from);
                        path = u.path;
                    }
                    Err(e) => self.err(item, &[PathSeg::Key("url")], e),
                }
            }
            let protocol = match protocol.as_deref() {
                None => Protocol::Http,
                Some(p) => match Protocol::parse(p) {
                    Some(p) if p.is_http() => p,
                    Some(_) => {
                        self.err(
                            item,
                            &[PathSeg::Key("protocol")],
                            format!("protocol {p:?} is a stream protocol, which this gateway does not proxy (expected http, https, grpc, grpcs, ws or wss)"),
                        );
                        Protocol::Http
                    }
                    None => {
                        let field = if r.url.is_some() { "url" } else { "protocol" };
                        self.err(
                            item,
                            &[PathSeg::Key(field)],
                            format!("invalid protocol {p:?}: expected one of http, https, grpc, grpcs, ws, wss"),
                        );
                        Protocol::Http
                    }
                },
            };
            let host = match host {
                Some(h) => {
                    if let Err(e) = checks::hostname(&h) {
                        if r.url.is_none() {
                            self.err(item, &[PathSeg::Key("host")], e);
                        }
                    }
                    h
                }
                None => {
                    if !item.broken && r.url.is_none() {
                        self.err(item, &[], "missing required field `host` (or `url`)");
                    }
                    String::new()
                }
            };
            let default_port = if protocol.is_tls() { 443 } else { 80 };
            let port = self.range(item, "port", port, default_port, 0, 65535) as u16;
            if let Some(p) = &path {
                if let Err(e) = checks::service_path(p) {
                    let field = if r.url.is_some() { "url" } else { "path" };
                    self.err(item, &[PathSeg::Key(field)], e);
                }
            }
            let retries = self.range(item, "retries", r.retries, 5, 0, 32767) as u16;
            let max_timeout = i64::from(i32::MAX) - 1;
            let connect_timeout = self.range(
                item,
                "connect_timeout",
                r.connect_timeout,
                60000,
                1,
                max_timeout,
            ) as u64;
            let read_timeout =
                self.range(item, "read_timeout", r.read_timeout, 60000, 1, max_timeout) as u64;
            let write_timeout = self.range(
                item,
                "write_timeout",
                r.write_timeout,
                60000,
                1,
                max_timeout,
            ) as u64;
            let tls_verify_depth = r
                .tls_verify_depth
                .map(|d| self.range(item, "tls_verify_depth", Some(d), 1, 0, 64) as u8);
            cfg.services.push(Service {
                id,
                name: r.name.clone(),
                protocol,
                host,
                port,
                path,
                retries,
                connect_timeout,
                read_timeout,
                write_timeout,
                enabled: r.enabled.unwrap_or(true),
                tags: r.tags.clone().unwrap_or_default(),
                tls_verify: r.tls_verify,
                tls_verify_depth,
                ca_certificates: r.ca_certificates.clone().unwrap_or_default(),
                client_certificate: None,
                origin: Self::origin(item),
            });
        }
    }

    fn service_index(cfg: &Config) -> Index {
        let mut idx = Index::with_capacity(cfg.services.len());
        for (i, s) in cfg.services.iter().enumerate() {
            idx.by_id.insert(s.id.clone(), i);
            if let Some(n) = &s.name {
                idx.by_name.insert(n.clone(), i);
            }
        }
        idx
    }

    /// Resolves the owner of a child entity: the entity it is nested in, or its reference field.
    fn owner<T>(
        &mut self,
        item: &Item<T>,
        field: &'static str,
        nested: Option<usize>,
        reference: &Option<RawRef>,
        index: &Index,
        kind: &str,
    ) -> Option<usize> {
        let by_ref = reference.as_ref().and_then(|r| match index.resolve(r) {
            Some(i) => Some(i),
            None => {
                self.err(
                    item,
                    &[PathSeg::Key(field)],
                    format!(
                        "{field} {} does not exist: no {kind} has that name or id",
                        describe(r)
                    ),
                );
                None
            }
        });
        match (nested, by_ref) {
            (Some(n), Some(r)) if n != r => {
                self.err(
                    item,
                    &[PathSeg::Key(field)],
                    format!("{field} reference contradicts the {kind} this entity is nested in"),
                );
                Some(n)
            }
            (Some(n), _) => Some(n),
            (None, r) => r,
        }
    }

    fn consumers(&mut self, doc: &Document, cfg: &mut Config) {
        let mut usernames = HashMap::with_capacity(doc.consumers.len());
        let mut custom_ids = HashMap::new();
        for item in &doc.consumers {
            let r = &item.raw;
            let natural = r
                .username
                .clone()
                .or_else(|| r.custom_id.clone().map(|c| format!("custom_id:{c}")))
                .unwrap_or_else(|| item.path.clone());
            let id = self.id("consumers", item, &r.id, &natural);
            if let Some(u) = &r.username {
                self.unique(&mut usernames, item, "username", u);
            }
            if let Some(c) = &r.custom_id {
                self.unique(&mut custom_ids, item, "custom_id", c);
            }
            if !item.broken && r.username.is_none() && r.custom_id.is_none() {
                self.err(
                    item,
                    &[],
                    "a consumer needs at least one of `username` or `custom_id`",
                );
            }
            cfg.consumers.push(Consumer {
                id,
                username: r.username.clone(),
                custom_id: r.custom_id.clone(),
                tags: r.tags.clone().unwrap_or_default(),
                origin: Self::origin(item),
            });
        }
    }
}

mod expressions;
use expressions::RouteExpression;
mod others;
mod routes;
mod upstreams;
