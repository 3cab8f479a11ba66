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
    let entries = match &root.value {
        Value::Map(entries) => entries,
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
    let mut loader = Loader { doc, errs };
    for entry in entries {
        let key = entry.key.as_str();
        if META_KEYS.contains(&key) {
            continue;
        }
        if !ENTITY_KEYS.contains(&key) {
            loader.errs.at(
                entry.key_loc,
                key,
                format!(
                    "unknown field `{key}`: expected one of {}",
                    ENTITY_KEYS.join(", ")
                ),
            );
            continue;
        }
        let Some(items) = loader.array(&entry.value, key) else {
            continue;
        };
        for (i, node) in items.iter().enumerate() {
            let path = format!("{key}[{i}]");
            loader.entity(key, node, path, None);
        }
    }
    loader.doc
}

struct Loader<'e> {
    doc: Document,
    errs: &'e mut Errors,
}

impl Loader<'_> {
    /// The items of an entity array (`null` counts as empty).
    fn array<'n>(&mut self, node: &'n Node, path: &str) -> Option<&'n [Node]> {
        match &node.value {
            Value::Seq(items) => Some(items),
            Value::Null => Some(&[]),
            _ => {
                self.errs.at(
                    node.loc,
                    path,
                    format!("expected an array, found {}", node.type_name()),
                );
                None
            }
        }
    }

    /// Decodes one entity of kind `kind` and, recursively, its nested children.
    fn entity(&mut self, kind: &str, node: &Node, path: String, parent: Option<Parent>) {
        match kind {
            "services" => {
                let idx = self.doc.services.len();
                let item = self.decode::<RawService>(node, path, parent, &["routes", "plugins"]);
                let base = item.path.clone();
                self.doc.services.push(item);
                self.children(node, &base, "routes", Parent::Service(idx));
                self.children(node, &base, "plugins", Parent::Service(idx));
            }
            "routes" => {
                let idx = self.doc.routes.len();
                let item = self.decode::<RawRoute>(node, path, parent, &["plugins"]);
                let base = item.path.clone();
                self.doc.routes.push(item);
                self.children(node, &base, "plugins", Parent::Route(idx));
            }
            "consumers" => {
                let nested = [
                    "plugins",
                    "keyauth_credentials",
                    "basicauth_credentials",
                    "acls",
                    "jwt_secrets",
                ];
                let idx = self.doc.consumers.len();
                let item = self.decode::<RawConsumer>(node, path, parent, &nested);
                let base = item.path.clone();
                self.doc.consumers.push(item);
                for key in nested {
                    self.children(node, &base, key, Parent::Consumer(idx));
                }
            }
            "upstreams" => {
                let idx = self.doc.upstreams.len();
                let item = self.decode::<RawUpstream>(node, path, parent, &["targets"]);
                let base = item.path.clone();
                self.doc.upstreams.push(item);
                self.children(node, &base, "targets", Parent::Upstream(idx));
            }
            "certificates" => {
                let idx = self.doc.certificates.len();
                let item = self.decode::<RawCertificate>(node, path, parent, &["snis"]);
                let base = item.path.clone();
                self.doc.certificates.push(item);
                self.children(node, &base, "snis", Parent::Certificate(idx));
            }
            "plugins" => {
                let item = self.decode(node, path, parent, &[]);
                self.doc.plugins.push(item);
            }
            "targets" => {
                let item = self.decode(node, path, parent, &[]);
                self.doc.targets.push(item);
            }
            "snis" => {
                // Nested under a certificate, an SNI may be written as a bare name.
                let item =
                    if let (Some(Parent::Certificate(_)), Some(name)) = (parent, node.as_str()) {
                        Item {
                            raw: RawSni {
                                name: Some(name.to_string()),
                                ..RawSni::default()
                            },
                            path,
                            node: node.clone(),
                            parent,
                            broken: false,
                        }
                    } else {
                        self.decode(node, path, parent, &[])
                    };
                self.doc.snis.push(item);
            }
            "ca_certificates" => {
                let item = self.decode(node, path, parent, &[]);
                self.doc.ca_certificates.push(item);
            }
            "keyauth_credentials" => {
                let item = self.decode(node, path, parent, &[]);
                self.doc.keyauth_credentials.push(item);
            }
            "basicauth_credentials" => {
                let item = self.decode(node, path, parent, &[]);
                self.doc.basicauth_credentials.push(item);
            }
            "acls" => {
                let item = self.decode(node, path, parent, &[]);
                self.doc.acls.push(item);
            }
            "jwt_secrets" => {
                let item = self.decode(node, path, parent, &[]);
                self.doc.jwt_secrets.push(item);
            }
            "custom_plugins" => {
                let item = self.decode(node, path, parent, &[]);
                self.doc.custom_plugins.push(item);
            }
            "cloned_plugins" => {
                let item = self.decode(node, path, parent, &[]);
                self.doc.cloned_plugins.push(item);
            }
            _ => unreachable!("entity kinds are checked against ENTITY_KEYS"),
        }
    }

    fn children(&mut self, parent_node: &Node, parent_path: &str, key: &str, parent: Parent) {
        let Some(node) = parent_node.get(key) else {
            return;
        };
        let path = format!("{parent_path}.{key}");
        let Some(items) = self.array(node, &path) else {
            return;
        };
        for (i, child) in items.iter().enumerate() {
            self.entity(key, child, format!("{path}[{i}]"), Some(parent));
        }
    }

    /// Decodes a map node into `T`, reporting unknown fields and the first type error.
    fn decode<T: DeserializeOwned + Default>(
        &mut self,
        node: &Node,
        path: String,
        parent: Option<Parent>,
        children: &[&str],
    ) -> Item<T> {
        // Keep the entity's own subtree, without its nested children (they are items of
        // their own): a service with 10,000 nested routes must not be copied whole.
        let own = match &node.value {
            Value::Map(entries) if !children.is_empty() => Node {
                loc: node.loc,
                value: Value::Map(
                    entries
                        .iter()
                        .filter(|e| !children.contains(&e.key.as_str()))
                        .cloned()
                        .collect(),
                ),
            },
            _ => node.clone(),
        };
        let mut item = Item {
            raw: T::default(),
            path,
            node: own,
            parent,
            broken: true,
        };
        let Value::Map(entries) = &node.value else {
            self.errs.at(
                node.loc,
                item.path.clone(),
                format!("expected a map (object), found {}", node.type_name()),
            );
            return item;
        };
        let json = serde_json::Value::Object(
            entries
                .iter()
                .filter(|e| {
                    !children.contains(&e.key.as_str())
                        && !ENTITY_META_KEYS.contains(&e.key.as_str())
                })
                .map(|e| (e.key.clone(), e.value.to_json()))
                .collect(),
        );
        let (raw, problems) = decode_value::<T>(node, json);
        for p in problems {
            let path = if p.field.is_empty() {
                item.path.clone()
            } else {
                format!("{}.{}", item.path, p.field)
            };
            self.errs.at(p.loc, path, p.message);
        }
        if let Some(raw) = raw {
            item.raw = raw;
            item.broken = false;
        }
        item
    }
}

/// A problem found while decoding a value into a serde type.
#[derive(Debug, Clone)]
pub struct FieldProblem {
    /// Where in the file.
    pub loc: Loc,
    /// Field path inside the value, e.g. `paths[1]` (empty for the value itself).
    pub field: String,
    /// What is wrong.
    pub message: String,
}

/// Decodes `json` (the JSON form of `node`, possibly with some keys removed) into `T`,
/// reporting every unknown field and the first type error with their positions in `node`.
/// Returns `None` when the value could not be decoded.
pub fn decode_value<T: DeserializeOwned>(
    node: &Node,
    json: serde_json::Value,
) -> (Option<T>, Vec<FieldProblem>) {
    let mut problems = Vec::new();
    let mut unknown: Vec<String> = Vec::new();
    let mut on_ignored = |p: serde_ignored::Path| unknown.push(p.to_string());
    let result: Result<T, _> =
        serde_path_to_error::deserialize(serde_ignored::Deserializer::new(json, &mut on_ignored));
    for field in unknown {
        let segs = parse_dotted(&field);
        let loc = match segs.split_last() {
            Some((PathSeg::Key(k), parent_segs)) => {
                node.locate(parent_segs.iter().copied()).key_loc(k)
            }
            _ => node.locate(segs.iter().copied()).loc,
        };
        let shown = field.rsplit('.').next().unwrap_or(&field).to_string();
        problems.push(FieldProblem {
            loc,
            field: dotted_to_path(&field),
            message: format!("unknown field `{shown}`"),
        });
    }
    match result {
        Ok(v) => (Some(v), problems),
        Err(e) => {
            let segs: Vec<PathSeg<'_>> = e
                .path()
                .iter()
                .filter_map(|s| match s {
                    serde_path_to_error::Segment::Seq { index } => Some(PathSeg::Index(*index)),
                    serde_path_to_error::Segment::Map { key } => Some(PathSeg::Key(key)),
                    _ => None,
                })
                .collect();
            let loc = node.locate(segs.iter().copied()).loc;
            let field = e.path().to_string();
            problems.push(FieldProblem {
                loc,
                field: if field == "." { String::new() } else { field },
                message: friendly(&e.inner().to_string()),
            });
            (None, problems)
        }
    }
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

/// `a.0.b` (serde_ignored's path) → segments.
fn parse_dotted(path: &str) -> Vec<PathSeg<'_>> {
    // serde_ignored writes `?` for an Option's `Some`: not a key.
    path.split('.')
        .filter(|s| *s != "?")
        .map(|s| match s.parse::<usize>() {
            Ok(i) => PathSeg::Index(i),
            Err(_) => PathSeg::Key(s),
        })
        .collect()
}

/// `a.0.b` → `a[0].b`
fn dotted_to_path(path: &str) -> String {
    let mut out = String::new();
    for seg in path.split('.').filter(|s| *s != "?") {
        if seg.parse::<usize>().is_ok() {
            out.push_str(&format!("[{seg}]"));
        } else {
            if !out.is_empty() {
                out.push('.');
            }
            out.push_str(seg);
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
