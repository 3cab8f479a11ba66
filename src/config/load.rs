//! From text to [`Document`]: parse the tree, take nested children out of their parents,
//! and decode every entity on its own so that one file reports all of its errors.

use serde::de::DeserializeOwned;

use super::error::Errors;
use super::raw::*;
use super::yaml::{self, Loc, Node, PathSeg, Value};

/// Which entity an item was nested in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Parent {
    /// `services[i]`
    Service(usize),
    /// `routes[i]` (index into [`Document::routes`])
    Route(usize),
    /// `consumers[i]`
    Consumer(usize),
    /// `upstreams[i]`
    Upstream(usize),
    /// `certificates[i]`
    Certificate(usize),
}

/// One decoded entity with where it came from.
#[derive(Debug, Clone)]
pub struct Item<T> {
    /// The decoded fields (all `None` when `broken`).
    pub raw: T,
    /// Entity path, e.g. `services[0].routes[2]`.
    pub path: String,
    /// The entity's subtree, to locate its fields in later checks.
    pub node: Node,
    /// The entity it was nested in, if any.
    pub parent: Option<Parent>,
    /// Decoding failed (already reported); later checks skip the item's own fields.
    pub broken: bool,
}

impl<T> Item<T> {
    /// Location of a field (or of the entity when the field is absent).
    pub fn loc_of(&self, path: &[PathSeg<'_>]) -> Loc {
        if let [PathSeg::Key(k)] = path {
            if self.node.get(k).is_none() {
                return self.node.key_loc(k);
            }
        }
        self.node.locate(path.iter().copied()).loc
    }

    /// `path.field`
    pub fn field(&self, field: &str) -> String {
        format!("{}.{}", self.path, field)
    }
}

/// The declarative file, decoded but not yet validated.
#[derive(Debug, Default)]
#[allow(missing_docs)]
pub struct Document {
    pub format_version: String,
    pub services: Vec<Item<RawService>>,
    pub routes: Vec<Item<RawRoute>>,
    pub consumers: Vec<Item<RawConsumer>>,
    pub plugins: Vec<Item<RawPlugin>>,
    pub upstreams: Vec<Item<RawUpstream>>,
    pub targets: Vec<Item<RawTarget>>,
    pub certificates: Vec<Item<RawCertificate>>,
    pub snis: Vec<Item<RawSni>>,
    pub ca_certificates: Vec<Item<RawCaCertificate>>,
    pub keyauth_credentials: Vec<Item<RawKeyAuth>>,
    pub basicauth_credentials: Vec<Item<RawBasicAuth>>,
    pub acls: Vec<Item<RawAcl>>,
    pub jwt_secrets: Vec<Item<RawJwtSecret>>,
    pub custom_plugins: Vec<Item<RawCustomPlugin>>,
    pub cloned_plugins: Vec<Item<RawClonedPlugin>>,
    pub vaults: Vec<Item<RawVault>>,
}

/// Keys allowed at the top level besides the entity arrays; accepted and ignored.
const META_KEYS: &[&str] = &[
    "_format_version",
    "_transform",
    "_comment",
    "_ignore",
    "_info",
    "_workspace",
    "_konnect",
];

/// Keys allowed on any entity and ignored.
const ENTITY_META_KEYS: &[&str] = &["_comment", "_ignore"];

const ENTITY_KEYS: &[&str] = &[
    "services",
    "routes",
    "consumers",
    "plugins",
    "upstreams",
    "targets",
    "certificates",
    "ca_certificates",
    "snis",
    "custom_plugins",
    "cloned_plugins",
    "keyauth_credentials",
    "basicauth_credentials",
    "acls",
    "jwt_secrets",
    "vaults",
];

/// Parses and decodes `text`. Errors are added to `errs`; the document holds what could be read.
pub fn load(text: &str, errs: &mut Errors) -> Document {
    let mut doc = Document::default();
    let root = match yaml::parse(text) {
        Ok(root) => root,
        Err(e) => {
            errs.at(e.loc, "", format!("invalid YAML: {}", e.message));
            return doc;
        }
    };
    match &root.value {
        Value::Map(_) => {}
        _ => {
            errs.at(
                root.loc,
                "",
                format!(
                    "expected a map with `_format_version` and entity arrays at the top level, found {}",
                    root.type_name()
                ),
            );
            return doc;
        }
    };
    match root.get("_format_version") {
        None => errs.at(
            root.loc,
            "_format_version",
            "missing required field `_format_version` (expected \"3.0\")",
        ),
        Some(v) => match v.as_str() {
            Some(s @ ("3.0" | "2.1" | "1.1")) => doc.format_version = s.to_string(),
            _ => errs.at(
                v.loc,
                "_format_version",
                format!(
                    "unsupported format version {}: expected \"3.0\" (or \"2.1\"/\"1.1\")",
                    v.to_json()
                ),
            ),
        },
    }
    if let Some(t) = root.get("_transform") {
        if !matches!(t.value, Value::Bool(_)) {
            errs.at(t.loc, "_transform", "expected a boolean");
        }
    }
    let Value::Map(entries) = root.value else {
        unreachable!("checked above")
    };
    let mut loader = Loader {
        doc,
        errs,
        children: Vec::new(),
    };
    // Every entity vector sized once, before decoding: growing them by doubling copied the
    // large items and faulted in fresh pages (5% of a 10,000-route reload).
    let mut counts = Vec::new();
    for entry in &entries {
        if let Some(kind) = ENTITY_KEYS.iter().copied().find(|k| *k == entry.key) {
            count_entities(kind, &entry.value, &mut counts);
        }
    }
    for (kind, n) in counts {
        loader.reserve(kind, n);
    }
    for entry in entries {
        let key = entry.key.as_ref();
        if META_KEYS.contains(&key) {
            continue;
        }
        let Some(kind) = ENTITY_KEYS.iter().copied().find(|k| *k == key) else {
            loader.errs.at(
                entry.key_loc,
                key,
                format!(
                    "unknown field `{key}`: expected one of {}",
                    ENTITY_KEYS.join(", ")
                ),
            );
            continue;
        };
        loader.entities(kind, entry.value, kind, None);
    }
    loader.doc
}

struct Loader<'e> {
    doc: Document,
    errs: &'e mut Errors,
    /// Nested children taken out of the entities being decoded, innermost entity's last: one
    /// vector for the whole document rather than one per entity with children.
    children: Vec<(&'static str, Node)>,
}

impl Loader<'_> {
    /// Decodes the items of the entity array `node` (`null` counts as empty), found at `path`.
    fn entities(&mut self, kind: &'static str, node: Node, path: &str, parent: Option<Parent>) {
        let items = match node.value {
            Value::Seq(items) => items,
            Value::Null => return,
            _ => {
                self.errs.at(
                    node.loc,
                    path,
                    format!("expected an array, found {}", node.type_name()),
                );
                return;
            }
        };
        let mut index = itoa::Buffer::new();
        for (i, child) in items.into_iter().enumerate() {
            // Not format!: its machinery costs more than the rest of the path for 10,000s.
            let i = index.format(i);
            let mut item_path = String::with_capacity(path.len() + i.len() + 2);
            item_path.push_str(path);
            item_path.push('[');
            item_path.push_str(i);
            item_path.push(']');
            self.entity(kind, child, item_path, parent);
        }
    }

    /// Makes room for `n` more items of kind `kind`: items are large, and growing a vector of
    /// 100,000 routes by doubling copies it (and touches fresh pages) many times over.
    fn reserve(&mut self, kind: &str, n: usize) {
        let d = &mut self.doc;
        match kind {
            "services" => d.services.reserve(n),
            "routes" => d.routes.reserve(n),
            "consumers" => d.consumers.reserve(n),
            "plugins" => d.plugins.reserve(n),
            "upstreams" => d.upstreams.reserve(n),
            "targets" => d.targets.reserve(n),
            "certificates" => d.certificates.reserve(n),
            "snis" => d.snis.reserve(n),
            "ca_certificates" => d.ca_certificates.reserve(n),
            "keyauth_credentials" => d.keyauth_credentials.reserve(n),
            "basicauth_credentials" => d.basicauth_credentials.reserve(n),
            "acls" => d.acls.reserve(n),
            "jwt_secrets" => d.jwt_secrets.reserve(n),
            "custom_plugins" => d.custom_plugins.reserve(n),
            "cloned_plugins" => d.cloned_plugins.reserve(n),
            "vaults" => d.vaults.reserve(n),
            _ => {}
        }
    }

    /// Decodes one entity of kind `kind` and, recursively, its nested children. The tree is
    /// consumed: each item keeps its own subtree (to locate fields in later checks), moved
    /// rather than copied, and its nested children are taken out to become items of their own.
    fn entity(&mut self, kind: &'static str, mut node: Node, path: String, parent: Option<Parent>) {
        let first_child = self.children.len();
        take_children(&mut node, nested(kind), &mut self.children);
        let children = first_child..self.children.len();
        let base = if children.is_empty() {
            String::new()
        } else {
            path.clone()
        };
        // The parents of nested children are the items pushed here (their index is the length).
        let parent_of_children = match kind {
            "services" => {
                let item = self.decode(node, path, parent);
                self.doc.services.push(item);
                Some(Parent::Service(self.doc.services.len() - 1))
            }
            "routes" => {
                let item = self.decode(node, path, parent);
                self.doc.routes.push(item);
                Some(Parent::Route(self.doc.routes.len() - 1))
            }
            "consumers" => {
                let item = self.decode(node, path, parent);
                self.doc.consumers.push(item);
                Some(Parent::Consumer(self.doc.consumers.len() - 1))
            }
            "upstreams" => {
                let item = self.decode(node, path, parent);
                self.doc.upstreams.push(item);
                Some(Parent::Upstream(self.doc.upstreams.len() - 1))
            }
            "certificates" => {
                let item = self.decode(node, path, parent);
                self.doc.certificates.push(item);
                Some(Parent::Certificate(self.doc.certificates.len() - 1))
            }
            "plugins" => {
                let item = self.decode(node, path, parent);
                self.doc.plugins.push(item);
                None
            }
            "targets" => {
                let item = self.decode(node, path, parent);
                self.doc.targets.push(item);
                None
            }
            "snis" => {
                // Nested under a certificate, an SNI may be written as a bare name.
                let item = match (parent, node.as_str()) {
                    (Some(Parent::Certificate(_)), Some(name)) => Item {
                        raw: RawSni {
                            name: Some(name.to_string()),
                            ..RawSni::default()
                        },
                        path,
                        node,
                        parent,
                        broken: false,
                    },
                    _ => self.decode(node, path, parent),
                };
                self.doc.snis.push(item);
                None
            }
            "ca_certificates" => {
                let item = self.decode(node, path, parent);
                self.doc.ca_certificates.push(item);
                None
            }
            "keyauth_credentials" => {
                let item = self.decode(node, path, parent);
                self.doc.keyauth_credentials.push(item);
                None
            }
            "basicauth_credentials" => {
                let item = self.decode(node, path, parent);
                self.doc.basicauth_credentials.push(item);
                None
            }
            "acls" => {
                let item = self.decode(node, path, parent);
                self.doc.acls.push(item);
                None
            }
            "jwt_secrets" => {
                let item = self.decode(node, path, parent);
                self.doc.jwt_secrets.push(item);
                None
            }
            "custom_plugins" => {
                let item = self.decode(node, path, parent);
                self.doc.custom_plugins.push(item);
                None
            }
            "vaults" => {
                let item = self.decode(node, path, parent);
                self.doc.vaults.push(item);
                None
            }
            "cloned_plugins" => {
                let item = self.decode(node, path, parent);
                self.doc.cloned_plugins.push(item);
                None
            }
            _ => unreachable!("entity kinds are checked against ENTITY_KEYS"),
        };
        // Deeper entities push theirs beyond `children` and truncate back to it.
        for i in children {
            let empty = Node {
                loc: Default::default(),
                value: Value::Null,
            };
            let (key, child) = std::mem::replace(&mut self.children[i], ("", empty));
            self.entities(key, child, &[&base, ".", key].concat(), parent_of_children);
        }
        self.children.truncate(first_child);
    }

    /// Decodes a map node into `T`, reporting unknown fields and the first type error.
    fn decode<T: DeserializeOwned + Default>(
        &mut self,
        node: Node,
        path: String,
        parent: Option<Parent>,
    ) -> Item<T> {
        let mut item = Item {
            raw: T::default(),
            path,
            node,
            parent,
            broken: true,
        };
        if !matches!(item.node.value, Value::Map(_)) {
            self.errs.at(
                item.node.loc,
                item.path.clone(),
                format!("expected a map (object), found {}", item.node.type_name()),
            );
            return item;
        }
        let (raw, problems) = super::de::decode::<T>(&item.node, ENTITY_META_KEYS);
        for p in problems {
            let path = if p.field.is_empty() {
                item.path.clone()
            } else {
                format!("{}.{}", item.path, p.field)
            };
            self.errs.at(p.loc, path, friendly(&p.message));
        }
        if let Some(raw) = raw {
            item.raw = raw;
            item.broken = false;
        }
        item
    }
}

/// The entity arrays an entity of `kind` may nest.
fn nested(kind: &str) -> &'static [&'static str] {
    match kind {
        "services" => &["routes", "plugins"],
        "routes" => &["plugins"],
        "consumers" => &[
            "plugins",
            "keyauth_credentials",
            "basicauth_credentials",
            "acls",
            "jwt_secrets",
        ],
        "upstreams" => &["targets"],
        "certificates" => &["snis"],
        _ => &[],
    }
}

/// Adds the number of entities of each kind in the entity array `node` (of kind `kind`),
/// nested ones included, to `counts`.
fn count_entities(kind: &'static str, node: &Node, counts: &mut Vec<(&'static str, usize)>) {
    let Value::Seq(items) = &node.value else {
        return;
    };
    match counts.iter_mut().find(|(k, _)| *k == kind) {
        Some((_, n)) => *n += items.len(),
        None => counts.push((kind, items.len())),
    }
    for key in nested(kind) {
        for item in items {
            if let Some(child) = item.get(key) {
                count_entities(key, child, counts);
            }
        }
    }
}

/// Moves the members under `keys` (nested entity arrays) out of a map node onto `children`,
/// in the order of `keys`.
fn take_children(node: &mut Node, keys: &[&'static str], children: &mut Vec<(&'static str, Node)>) {
    let Value::Map(entries) = &mut node.value else {
        return;
    };
    if keys.is_empty() || !entries.iter().any(|e| keys.contains(&e.key.as_ref())) {
        return;
    }
    let first = children.len();
    // In place: a route's own fields stay where they are, only its nested entities leave.
    entries.retain_mut(|e| match keys.iter().copied().find(|k| *k == e.key) {
        Some(key) => {
            let loc = e.value.loc;
            let value = std::mem::replace(
                &mut e.value,
                Node {
                    loc,
                    value: Value::Null,
                },
            );
            children.push((key, value));
            false
        }
        None => true,
    });
    children[first..].sort_by_key(|(key, _)| keys.iter().position(|k| k == key));
}

/// `a.b[2].c` (an entity path) → segments.
pub fn path_segments(path: &str) -> Vec<PathSeg<'_>> {
    let mut out = Vec::new();
    for part in path.split('.').filter(|p| !p.is_empty()) {
        let mut rest = part;
        if let Some(i) = rest.find('[') {
            if i > 0 {
                out.push(PathSeg::Key(&rest[..i]));
            }
            rest = &rest[i..];
            while let Some(end) = rest.find(']') {
                if let Ok(n) = rest[1..end].parse() {
                    out.push(PathSeg::Index(n));
                }
                rest = &rest[end + 1..];
            }
        } else {
            out.push(PathSeg::Key(rest));
        }
    }
    out
}

/// Rewords serde's type errors in the terms of a YAML file.
fn friendly(msg: &str) -> String {
    if msg.contains("untagged enum RawRef") {
        return "expected a reference: a name or id string, or a map {id: ...} / {name: ...}"
            .to_string();
    }
    msg.replace("expected i64", "expected an integer")
        .replace("expected f64", "expected a number")
        .replace("expected a sequence", "expected an array")
        .replace("invalid type: sequence", "invalid type: array")
        .replace("expected a map", "expected a map (object)")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load_str(text: &str) -> (Document, Vec<String>) {
        let mut errs = Errors::new("t.yaml");
        let doc = load(text, &mut errs);
        let list = match errs.into_result() {
            Ok(()) => vec![],
            Err(e) => e.0.iter().map(|e| e.to_string()).collect(),
        };
        (doc, list)
    }

    #[test]
    fn nested_children_get_parents() {
        let (doc, errs) = load_str(
            "_format_version: \"3.0\"\nservices:\n- name: s\n  url: http://x\n  routes:\n  - name: r\n    paths: [/]\n    plugins:\n    - name: p\n",
        );
        assert!(errs.is_empty(), "{errs:?}");
        assert_eq!(doc.routes[0].parent, Some(Parent::Service(0)));
        assert_eq!(doc.routes[0].path, "services[0].routes[0]");
        assert_eq!(doc.plugins[0].parent, Some(Parent::Route(0)));
        assert_eq!(doc.plugins[0].path, "services[0].routes[0].plugins[0]");
    }

    #[test]
    fn all_errors_with_locations() {
        let (_, errs) = load_str(
            "_format_version: \"3.0\"\nservices:\n- name: s\n  bogus: 1\n  port: abc\n  routes:\n  - paths: [/]\n    strip_path: maybe\nwhatever: []\n",
        );
        assert_eq!(errs.len(), 4, "{errs:#?}");
        assert!(errs[0].starts_with("t.yaml:4:3: services[0].bogus: unknown field `bogus`"));
        assert!(errs[1].starts_with("t.yaml:5:9: services[0].port: invalid type"));
        assert!(errs[2].starts_with("t.yaml:8:17: services[0].routes[0].strip_path: invalid type"));
        assert!(errs[3].starts_with("t.yaml:9:1: whatever: unknown field `whatever`"));
    }

    #[test]
    fn format_version_is_required() {
        let (_, errs) = load_str("services: []\n");
        assert_eq!(errs.len(), 1);
        assert!(errs[0].contains("_format_version"));
    }
}
