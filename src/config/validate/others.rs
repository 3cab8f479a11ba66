//! Validation of certificates/SNIs, credentials, plugin instances and
//! plugin definitions (custom and cloned).

use std::collections::HashMap;

use super::super::checks;
use super::super::load::{Document, Parent};
use super::super::model::*;
use super::super::yaml::PathSeg;
use super::{Index, Validator};

impl Validator<'_> {
    /// `vaults:` entities: each names Kong's env vault under a prefix of its own, with the
    /// variable prefix of its `config.prefix`.
    pub(super) fn vaults(&mut self, doc: &Document, cfg: &mut Config) {
        let mut seen = HashMap::new();
        for item in &doc.vaults {
            let r = &item.raw;
            self.id("vaults", item, &r.id, &item.path);
            match r.name.as_deref() {
                Some("env") => {}
                Some(other) => self.err(
                    item,
                    &[PathSeg::Key("name")],
                    format!("vault '{other}' is not installed (only `env` is available without a database)"),
                ),
                None if !item.broken => self.err(item, &[], "missing required field `name`"),
                None => {}
            }
            let Some(prefix) = r.prefix.as_deref() else {
                if !item.broken {
                    self.err(item, &[], "missing required field `prefix`");
                }
                continue;
            };
            // Kong: `^[a-z][a-z%d-]-[a-z%d]+$`, and not the name of a vault.
            let b = prefix.as_bytes();
            let ok = b.len() >= 2
                && b[0].is_ascii_lowercase()
                && b.iter()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
                && b[b.len() - 1] != b'-';
            if !ok {
                self.err(
                    item,
                    &[PathSeg::Key("prefix")],
                    format!("invalid prefix {prefix:?}: expected lower-case letters, digits and dashes, starting with a letter"),
                );
                continue;
            }
            if prefix == "env" {
                self.err(
                    item,
                    &[PathSeg::Key("prefix")],
                    "value must not be the name of a vault (env)",
                );
                continue;
            }
            if seen.insert(prefix.to_owned(), ()).is_some() {
                self.err(
                    item,
                    &[PathSeg::Key("prefix")],
                    format!("UNIQUE violation detected on '{{prefix=\"{prefix}\"}}'"),
                );
                continue;
            }
            let env_prefix = r
                .config
                .as_ref()
                .and_then(|c| c.prefix.as_deref())
                .unwrap_or("");
            cfg.vaults.add_env(prefix, env_prefix);
        }
    }

    pub(super) fn certificates(&mut self, doc: &Document, cfg: &mut Config) {
        let mut index = Index::default();
        for (i, item) in doc.certificates.iter().enumerate() {
            let r = &item.raw;
            let id = self.id("certificates", item, &r.id, &item.path);
            // Kong marks all four referenceable: a `{vault://...}` is replaced by its value.
            let mut pem = |field: &'static str, v: &Option<String>| -> Option<String> {
                let v = v.as_ref()?;
                if !crate::config::vault::is_reference(v) {
                    return Some(v.clone());
                }
                match cfg.vaults.resolve(v) {
                    Ok(value) => Some(value),
                    Err(e) => {
                        self.err(item, &[PathSeg::Key(field)], e);
                        None
                    }
                }
            };
            let (cert, key) = (pem("cert", &r.cert), pem("key", &r.key));
            let (cert_alt, key_alt) = (pem("cert_alt", &r.cert_alt), pem("key_alt", &r.key_alt));
            for (field, v, raw) in [("cert", &cert, &r.cert), ("key", &key, &r.key)] {
                match (v, raw) {
                    (_, None) if !item.broken => {
                        self.err(item, &[], format!("missing required field `{field}`"))
                    }
                    (Some(pem), _) if !pem.contains("-----BEGIN") => self.err(
                        item,
                        &[PathSeg::Key(field)],
                        "expected a PEM block (-----BEGIN ...)",
                    ),
                    _ => {}
                }
            }
            if r.cert_alt.is_some() != r.key_alt.is_some() {
                self.err(item, &[], "`cert_alt` and `key_alt` must be set together");
            }
            index.by_id.insert(id.clone(), i);
            cfg.certificates.push(Certificate {
                id,
                cert: cert.unwrap_or_default(),
                key: key.unwrap_or_default(),
                cert_alt,
                key_alt,
                tags: r.tags.clone().unwrap_or_default(),
                origin: Self::origin(item),
            });
        }
        // Services were validated first, one per item: resolve their client certificates.
        for (i, item) in doc.services.iter().enumerate() {
            let Some(r) = &item.raw.client_certificate else {
                continue;
            };
            match index.resolve(r) {
                Some(c) if i < cfg.services.len() => cfg.services[i].client_certificate = Some(c),
                Some(_) => {}
                None => self.err(
                    item,
                    &[PathSeg::Key("client_certificate")],
                    "certificate does not exist: no certificate has that id",
                ),
            }
        }
        let mut names = HashMap::new();
        for item in &doc.snis {
            let r = &item.raw;
            let nested = match item.parent {
                Some(Parent::Certificate(i)) => Some(i),
                _ => None,
            };
            let certificate = self.owner(
                item,
                "certificate",
                nested,
                &r.certificate,
                &index,
                "certificate",
            );
            let name = r.name.clone().unwrap_or_default();
            if r.name.is_none() && !item.broken {
                self.err(item, &[], "missing required field `name`");
            } else if let Err(e) = checks::route_host(&name) {
                self.err(item, &[PathSeg::Key("name")], e);
            }
            self.unique(&mut names, item, "name", &name);
            let id = self.id("snis", item, &r.id, &name);
            if let Some(certificate) = certificate {
                cfg.snis.push(Sni {
                    id,
                    name,
                    certificate,
                    origin: Self::origin(item),
                });
            } else if r.certificate.is_none() && !item.broken {
                self.err(item, &[], "an SNI needs a certificate: nest it under `certificates[].snis` or set `certificate`");
            }
        }
        for item in &doc.ca_certificates {
            let r = &item.raw;
            let id = self.id("ca_certificates", item, &r.id, &item.path);
            match &r.cert {
                None if !item.broken => self.err(item, &[], "missing required field `cert`"),
                Some(pem) if !pem.contains("-----BEGIN") => self.err(
                    item,
                    &[PathSeg::Key("cert")],
                    "expected a PEM block (-----BEGIN ...)",
                ),
                _ => {}
            }
            cfg.ca_certificates.push(CaCertificate {
                id,
                cert: r.cert.clone().unwrap_or_default(),
                origin: Self::origin(item),
            });
        }
    }

    fn consumer_index(cfg: &Config) -> Index {
        let mut idx = Index::with_capacity(cfg.consumers.len());
        for (i, c) in cfg.consumers.iter().enumerate() {
            idx.by_id.insert(c.id.clone(), i);
            if let Some(u) = &c.username {
                idx.by_name.insert(u.clone(), i);
            }
        }
        idx
    }

    pub(super) fn credentials(&mut self, doc: &Document, cfg: &mut Config) {
        let consumers = Self::consumer_index(cfg);
        let mut keys = HashMap::with_capacity(doc.keyauth_credentials.len());
        let mut usernames = HashMap::with_capacity(doc.basicauth_credentials.len());
        macro_rules! each {
            ($list:expr, $kind:literal, |$item:ident, $r:ident| $build:expr) => {
                for $item in &$list {
                    let $r = &$item.raw;
                    let nested = match $item.parent {
                        Some(Parent::Consumer(i)) => Some(i),
                        _ => None,
                    };
                    let consumer = self.owner($item, "consumer", nested, &$r.consumer, &consumers, "consumer");
                    if consumer.is_none() && $r.consumer.is_none() && !$item.broken {
                        self.err($item, &[], "a credential needs a consumer: nest it under `consumers[]` or set `consumer`");
                    }
                    let credential = $build;
                    let id = self.id($kind, $item, &$r.id, &$item.path);
                    if let (Some(consumer), Some(credential)) = (consumer, credential) {
                        cfg.credentials.push(ConsumerCredential {
                            id,
                            consumer,
                            credential,
                            tags: $r.tags.clone().unwrap_or_default(),
                            origin: Self::origin($item),
                        });
                    }
                }
            };
        }
        each!(
            doc.keyauth_credentials,
            "keyauth_credentials",
            |item, r| match &r.key {
                Some(key) => {
                    self.unique(&mut keys, item, "key", key);
                    Some(Credential::KeyAuth {
                        key: key.clone(),
                        ttl: r.ttl,
                    })
                }
                None => {
                    if !item.broken {
                        self.err(item, &[], "missing required field `key` (a generated key would change on every reload)");
                    }
                    None
                }
            }
        );
        each!(
            doc.basicauth_credentials,
            "basicauth_credentials",
            |item, r| match (&r.username, &r.password) {
                (Some(u), Some(p)) => {
                    self.unique(&mut usernames, item, "username", u);
                    Some(Credential::BasicAuth {
                        username: u.clone(),
                        password: p.clone(),
                    })
                }
                _ => {
                    if !item.broken {
                        self.err(
                            item,
                            &[],
                            "missing required fields `username` and `password`",
                        );
                    }
                    None
                }
            }
        );
        each!(doc.acls, "acls", |item, r| match &r.group {
            Some(g) => Some(Credential::Acl { group: g.clone() }),
            None => {
                if !item.broken {
                    self.err(item, &[], "missing required field `group`");
                }
                None
            }
        });
        each!(doc.jwt_secrets, "jwt_secrets", |item, r| {
            let algorithm = r.algorithm.clone().unwrap_or_else(|| "HS256".into());
            match &r.key {
                Some(k) => Some(Credential::Jwt {
                    key: k.clone(),
                    secret: r.secret.clone(),
                    algorithm,
                    rsa_public_key: r.rsa_public_key.clone(),
                }),
                None => {
                    if !item.broken {
                        self.err(item, &[], "missing required field `key`");
                    }
                    None
                }
            }
        });
    }

    pub(super) fn plugins(&mut self, doc: &mut Document, cfg: &mut Config) {
        let services = Self::service_index(cfg);
        let consumers = Self::consumer_index(cfg);
        // Only plugins written at the top level name their route: most configs need no index.
        let mut routes = Index::default();
        if doc.plugins.iter().any(|p| p.raw.route.is_some()) {
            routes = Index::with_capacity(cfg.routes.len());
            for (i, r) in cfg.routes.iter().enumerate() {
                routes.by_id.insert(r.id.clone(), i);
                if let Some(n) = &r.name {
                    routes.by_name.insert(n.clone(), i);
                }
            }
        }
        // (name, route, service, consumer) → the path of the instance configured there first.
        type ScopeKey<'a> = (&'a str, Option<usize>, Option<usize>, Option<usize>);
        let mut scopes: HashMap<ScopeKey, &str> = HashMap::with_capacity(doc.plugins.len());
        let mut instance_names = HashMap::new();
        for item in &mut doc.plugins {
            let raw_config = item.raw.config.take();
            let config_node = item.node.take("config");
            // Moved into the plugin rather than copied (the document is dropped after this).
            let given_protocols = item.raw.protocols.take();
            let tags = item.raw.tags.take().unwrap_or_default();
            let condition = item.raw.condition.take();
            let instance_name = item.raw.instance_name.take();
            let item = &*item;
            let r = &item.raw;
            let (ns, nr, nc) = match item.parent {
                Some(Parent::Service(i)) => (Some(i), None, None),
                Some(Parent::Route(i)) => (None, Some(i), None),
                Some(Parent::Consumer(i)) => (None, None, Some(i)),
                _ => (None, None, None),
            };
            let service = self.owner(item, "service", ns, &r.service, &services, "service");
            let route = self.owner(item, "route", nr, &r.route, &routes, "route");
            let consumer = self.owner(item, "consumer", nc, &r.consumer, &consumers, "consumer");
            let Some(name) = r.name.clone() else {
                if !item.broken {
                    self.err(item, &[], "missing required field `name`");
                }
                continue;
            };
            // `path (name on route "r", service "s", consumer "c")`, built without format!
            // (one label per instance, 10,000s per reload).
            let label = {
                let mut label = String::with_capacity(item.path.len() + name.len() + 48);
                label.push_str(&item.path);
                label.push_str(" (");
                label.push_str(&name);
                let mut sep = " on ";
                let owners = [
                    route.map(|i| ("route ", &cfg.routes[i].name, &cfg.routes[i].id)),
                    service.map(|i| ("service ", &cfg.services[i].name, &cfg.services[i].id)),
                    consumer.map(|i| {
                        let c = &cfg.consumers[i];
                        ("consumer ", &c.username, &c.id)
                    }),
                ];
                for (kind, name, id) in owners.into_iter().flatten() {
                    label.push_str(sep);
                    label.push_str(kind);
                    push_quoted(&mut label, name.as_ref().unwrap_or(id));
                    sep = ", ";
                }
                label.push_str(if sep == " on " { ", global)" } else { ")" });
                label
            };
            // A derived id hashes `name|route id|service id|consumer id`.
            let mut scope_key = String::new();
            if r.id.is_none() {
                scope_key = [
                    name.as_str(),
                    route.map_or("", |i| &cfg.routes[i].id),
                    service.map_or("", |i| &cfg.services[i].id),
                    consumer.map_or("", |i| &cfg.consumers[i].id),
                ]
                .join("|");
            }
            let scope = (
                r.name.as_deref().unwrap_or_default(),
                route,
                service,
                consumer,
            );
            if let Some(first) = scopes.insert(scope, &item.path) {
                self.err(
                    item,
                    &[PathSeg::Key("name")],
                    format!("{label}: a {name} plugin is already configured for this scope by {first} (one instance per plugin, route, service and consumer)"),
                );
            }
            if let Some(n) = &instance_name {
                self.unique(&mut instance_names, item, "instance_name", n);
            }
            let config = match raw_config {
                None | Some(serde_json::Value::Null) => serde_json::Map::new(),
                Some(serde_json::Value::Object(m)) => m,
                Some(_) => {
                    self.err(
                        item,
                        &[PathSeg::Key("config")],
                        format!("{label}: `config` must be a map"),
                    );
                    serde_json::Map::new()
                }
            };
            let mut protocols = Vec::new();
            for (i, p) in given_protocols.iter().flatten().enumerate() {
                match Protocol::parse(p) {
                    Some(p) => protocols.push(p),
                    None => self.err(
                        item,
                        &[PathSeg::Key("protocols"), PathSeg::Index(i)],
                        format!("invalid protocol {p:?}"),
                    ),
                }
            }
            if protocols.is_empty() {
                protocols = vec![
                    Protocol::Grpc,
                    Protocol::Grpcs,
                    Protocol::Http,
                    Protocol::Https,
                ];
            }
            if let Some(c) = &condition {
                if c.len() > 1024 {
                    self.err(
                        item,
                        &[PathSeg::Key("condition")],
                        format!(
                            "{label}: condition is {} characters long: at most 1024 allowed",
                            c.len()
                        ),
                    );
                }
            }
            let id = self.id("plugins", item, &r.id, &scope_key);
            cfg.plugins.push(Plugin {
                id,
                name,
                instance_name,
                config,
                config_node,
                enabled: r.enabled.unwrap_or(true),
                protocols,
                route,
                service,
                consumer,
                condition,
                condition_loc: item.loc_of(&[PathSeg::Key("condition")]),
                tags,
                origin: Self::origin(item),
                label,
            });
        }
    }

    pub(super) fn plugin_definitions(&mut self, doc: &Document, cfg: &mut Config) {
        let mut names = HashMap::new();
        for item in &doc.custom_plugins {
            let r = &item.raw;
            let (Some(name), Some(handler), Some(schema)) = (&r.name, &r.handler, &r.schema) else {
                if !item.broken {
                    self.err(
                        item,
                        &[],
                        "a custom plugin needs `name`, `handler` and `schema`",
                    );
                }
                continue;
            };
            self.unique(&mut names, item, "name", name);
            cfg.custom_plugins.push(CustomPlugin {
                name: name.clone(),
                handler: handler.clone(),
                schema: schema.clone(),
                tags: r.tags.clone().unwrap_or_default(),
                origin: Self::origin(item),
            });
        }
        for item in &doc.cloned_plugins {
            let r = &item.raw;
            let (Some(name), Some(reference)) = (&r.name, &r.reference) else {
                if !item.broken {
                    self.err(item, &[], "a cloned plugin needs `name` and `ref`");
                }
                continue;
            };
            self.unique(&mut names, item, "name", name);
            cfg.cloned_plugins.push(ClonedPlugin {
                name: name.clone(),
                reference: reference.clone(),
                priority: r.priority,
                tags: r.tags.clone().unwrap_or_default(),
                origin: Self::origin(item),
            });
        }
    }
}

/// Appends `s` as `{:?}` writes it: quoted, with Rust's escapes (a name without characters to
/// escape, nearly every name, is copied as it is).
fn push_quoted(out: &mut String, s: &str) {
    if s.bytes()
        .all(|b| (0x20..0x7f).contains(&b) && b != b'"' && b != b'\\')
    {
        out.push('"');
        out.push_str(s);
        out.push('"');
    } else {
        use std::fmt::Write;
        let _ = write!(out, "{s:?}");
    }
}

#[cfg(test)]
mod tests {
    use super::push_quoted;

    #[test]
    fn quoted_names_read_as_debug_formatting_writes_them() {
        for s in [
            "r",
            "my-route.v2",
            "",
            "a b",
            "quo\"te",
            "back\\slash",
            "tab\t",
            "é",
            "\u{7f}",
        ] {
            let mut out = String::new();
            push_quoted(&mut out, s);
            assert_eq!(out, format!("{s:?}"), "{s:?}");
        }
    }
}
