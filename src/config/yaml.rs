//! A YAML (and JSON) document as a tree whose every node knows its line and column.
//!
//! serde's YAML deserializers stop at the first error and forget positions; the loader needs
//! both positions for every entity and field and all errors at once, so the file is read into
//! this tree first (with libyaml's event parser, as Kong reads it) and decoded entity by entity.

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};

use super::yaml_events::{Event, Events};

/// A position in the source file (1-based line and column).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Loc {
    /// Line, starting at 1.
    pub line: usize,
    /// Column, starting at 1.
    pub col: usize,
}

/// One node of the document.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    /// Where the node starts.
    pub loc: Loc,
    /// The node's value.
    pub value: Value,
}

/// A node's value, typed as YAML 1.2's core schema types it.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// `null`, `~` or an empty value.
    Null,
    /// `true` / `false`.
    Bool(bool),
    /// An integer.
    Int(i64),
    /// A floating point number.
    Float(f64),
    /// A string (quoted scalars are always strings).
    Str(String),
    /// A sequence.
    Seq(Vec<Node>),
    /// A mapping with string keys, in document order.
    Map(Vec<Entry>),
}

/// One key/value pair of a mapping.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    /// The key: the field names of Kong's entities are shared static strings, not copies.
    pub key: Cow<'static, str>,
    /// Where the key is written.
    pub key_loc: Loc,
    /// The value.
    pub value: Node,
}

/// A YAML syntax error.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct SyntaxError {
    /// Where the parser gave up.
    pub loc: Loc,
    /// What it found.
    pub message: String,
}

impl Node {
    /// The value under `key` when this node is a mapping.
    pub fn get(&self, key: &str) -> Option<&Node> {
        match &self.value {
            Value::Map(entries) => entries.iter().find(|e| e.key == key).map(|e| &e.value),
            _ => None,
        }
    }

    /// Takes the value under `key` out of a mapping, leaving `null` in its place (its key and
    /// location stay).
    pub fn take(&mut self, key: &str) -> Option<Node> {
        match &mut self.value {
            Value::Map(entries) => entries.iter_mut().find(|e| e.key == key).map(|e| {
                let loc = e.value.loc;
                std::mem::replace(
                    &mut e.value,
                    Node {
                        loc,
                        value: Value::Null,
                    },
                )
            }),
            _ => None,
        }
    }

    /// The location of the key `key` in a mapping (the node's own location if absent).
    pub fn key_loc(&self, key: &str) -> Loc {
        match &self.value {
            Value::Map(entries) => entries
                .iter()
                .find(|e| e.key == key)
                .map_or(self.loc, |e| e.key_loc),
            _ => self.loc,
        }
    }

    /// The value as a string slice when it is a string.
    pub fn as_str(&self) -> Option<&str> {
        match &self.value {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }

    /// A short name of the node's type, for error messages.
    pub fn type_name(&self) -> &'static str {
        match self.value {
            Value::Null => "null",
            Value::Bool(_) => "a boolean",
            Value::Int(_) => "an integer",
            Value::Float(_) => "a number",
            Value::Str(_) => "a string",
            Value::Seq(_) => "an array",
            Value::Map(_) => "a map",
        }
    }

    /// Converts the tree to JSON (positions are dropped).
    pub fn to_json(&self) -> serde_json::Value {
        use serde_json::Value as J;
        match &self.value {
            Value::Null => J::Null,
            Value::Bool(b) => J::Bool(*b),
            Value::Int(i) => J::from(*i),
            Value::Float(f) => serde_json::Number::from_f64(*f).map_or(J::Null, J::Number),
            Value::Str(s) => J::String(s.clone()),
            Value::Seq(items) => J::Array(items.iter().map(Node::to_json).collect()),
            Value::Map(entries) => J::Object(
                entries
                    .iter()
                    .map(|e| (e.key.to_string(), e.value.to_json()))
                    .collect(),
            ),
        }
    }

    /// Follows a path of map keys / sequence indexes and returns the deepest node reached.
    pub fn locate<'a, I: IntoIterator<Item = PathSeg<'a>>>(&self, path: I) -> &Node {
        let mut node = self;
        for seg in path {
            let next = match (seg, &node.value) {
                (PathSeg::Key(k), Value::Map(entries)) => {
                    entries.iter().find(|e| e.key == k).map(|e| &e.value)
                }
                (PathSeg::Index(i), Value::Seq(items)) => items.get(i),
                _ => None,
            };
            match next {
                Some(n) => node = n,
                None => break,
            }
        }
        node
    }
}

/// One step of a path into the tree.
#[derive(Debug, Clone, Copy)]
pub enum PathSeg<'a> {
    /// A mapping key.
    Key(&'a str),
    /// A sequence index.
    Index(usize),
}

/// Most nodes that aliases may add to a document, all aliases together. An alias copies its
/// anchor's whole subtree, so a few hundred bytes of nested aliases ("billion laughs") would
/// otherwise expand to gigabytes.
pub const MAX_ALIAS_NODES: usize = 100_000;
/// Deepest nesting of sequences and mappings.
pub const MAX_DEPTH: usize = 256;

/// Parses a YAML or JSON text into a tree. An empty document is `Null`. Alias expansion
/// beyond [`MAX_ALIAS_NODES`] and nesting beyond [`MAX_DEPTH`] are errors at the offending
/// alias or collection.
pub fn parse(text: &str) -> Result<Node, SyntaxError> {
    match super::json::parse(text) {
        Some(node) => Ok(node),
        None => parse_yaml(text),
    }
}

/// [`parse`] for YAML: the block-YAML fast path when the text is within its subset, else
/// libyaml's event parser. The first document is read; what follows it is not.
pub(super) fn parse_yaml(text: &str) -> Result<Node, SyntaxError> {
    if let Some(node) = parse_block(text) {
        return Ok(node);
    }
    parse_libyaml(text)
}

/// The tree of a text within [`super::yaml_block`]'s subset; `None` outside it, and when
/// the tree has an error (a duplicate key, say), which libyaml's path reports.
fn parse_block(text: &str) -> Option<Node> {
    let mut builder = Builder::default();
    super::yaml_block::scan(text, &mut |event, at| builder.on_event(event, at)).ok()?;
    match builder.error {
        Some(_) => None,
        None => builder.root,
    }
}

/// For the fuzzer and tests, not part of the API: whether the block-YAML fast path takes
/// `text`. Panics when it takes it and libyaml refuses it, or their events (but for the ends'
/// positions, which the tree does not use) differ.
#[doc(hidden)]
pub fn check_block_fast_path(text: &str) -> bool {
    let keep = |event: Event, at: Loc| {
        let at = (event != Event::End).then_some(at);
        (event, at)
    };
    let mut fast = Vec::new();
    if super::yaml_block::scan(text, &mut |e, at| fast.push(keep(e, at))).is_err() {
        return false;
    }
    let mut slow = Vec::new();
    let mut events = Events::new(text);
    while let Some(next) = events.next_event() {
        match next {
            Ok((event, at)) => slow.push(keep(event, at)),
            Err(e) => panic!("the block fast path took {text:?}, which libyaml refuses: {e}"),
        }
    }
    assert_eq!(
        fast, slow,
        "the block fast path and libyaml differ on {text:?}"
    );
    true
}

/// [`parse_yaml`] with libyaml's event parser only.
pub(super) fn parse_libyaml(text: &str) -> Result<Node, SyntaxError> {
    let mut builder = Builder::default();
    let mut events = Events::new(text);
    while let Some(next) = events.next_event() {
        let (event, at) = next?;
        builder.on_event(event, at);
        if let Some(err) = builder.error.take() {
            return Err(err);
        }
    }
    Ok(builder.root.unwrap_or(Node {
        loc: Loc { line: 1, col: 1 },
        value: Value::Null,
    }))
}

/// An open collection while events stream in: where it starts, its anchor, and where its
/// members begin on the builder's shared stacks. A finished collection takes its members off
/// those stacks into one allocation of the right size, rather than growing a vector of its own.
struct Open {
    loc: Loc,
    anchor: Option<String>,
    kind: Kind,
    /// Nodes in it so far, counting nested ones.
    size: usize,
    /// A large mapping's keys, for the duplicate check (see [`INDEXED_KEYS`]).
    keys: Option<HashSet<Cow<'static, str>>>,
}

/// Keys a mapping may have before the duplicate check of each new key uses a set rather than
/// a scan of the keys so far (which made a mapping of n keys cost n²/2 comparisons).
const INDEXED_KEYS: usize = 32;

enum Kind {
    /// Members from this index of `Builder::items`.
    Seq(usize),
    /// Entries from this index of `Builder::entries`, and the key read last, waiting for its
    /// value.
    Map(usize, Option<(Cow<'static, str>, Loc)>),
}

#[derive(Default)]
struct Builder {
    stack: Vec<Open>,
    /// Members of the open sequences, innermost last.
    items: Vec<Node>,
    /// Entries of the open mappings, innermost last.
    entries: Vec<Entry>,
    root: Option<Node>,
    /// Anchored nodes with their size in nodes (a later anchor of the same name replaces an
    /// earlier one, as YAML says).
    anchors: HashMap<String, (Node, usize)>,
    /// Nodes added by aliases so far.
    aliased: usize,
    error: Option<SyntaxError>,
}

impl Builder {
    fn fail(&mut self, loc: Loc, message: String) {
        if self.error.is_none() {
            self.error = Some(SyntaxError { loc, message });
        }
    }

    /// Opens a collection, refusing nesting beyond [`MAX_DEPTH`].
    fn open(&mut self, map: bool, anchor: Option<String>, at: Loc) {
        if self.stack.len() >= MAX_DEPTH {
            self.fail(at, format!("nesting deeper than {MAX_DEPTH} levels"));
        }
        let kind = if map {
            Kind::Map(self.entries.len(), None)
        } else {
            Kind::Seq(self.items.len())
        };
        self.stack.push(Open {
            loc: at,
            anchor,
            kind,
            size: 0,
            keys: None,
        });
    }

    /// Closes the innermost collection and attaches it to its parent.
    fn close(&mut self) {
        let Some(open) = self.stack.pop() else {
            return;
        };
        let value = match open.kind {
            Kind::Seq(from) => Value::Seq(self.items.drain(from..).collect()),
            Kind::Map(from, _) => Value::Map(self.entries.drain(from..).collect()),
        };
        let node = Node {
            loc: open.loc,
            value,
        };
        self.push(node, open.size + 1, open.anchor);
    }

    /// Attaches a finished node of `size` nodes to its parent (or makes it the root).
    fn push(&mut self, node: Node, size: usize, anchor: Option<String>) {
        if self.error.is_some() {
            // Stop building (and copying anchors) after the first error.
            return;
        }
        if let Some(anchor) = anchor {
            self.anchors.insert(anchor, (node.clone(), size));
        }
        let Some(parent) = self.stack.last_mut() else {
            self.root = Some(node);
            return;
        };
        parent.size += size;
        match &mut parent.kind {
            Kind::Seq(_) => self.items.push(node),
            Kind::Map(from, pending) => match pending.take() {
                None => {
                    let key_loc = node.loc;
                    let key = match node.value {
                        Value::Str(s) => s.into(),
                        Value::Int(i) => i.to_string().into(),
                        Value::Bool(b) => b.to_string().into(),
                        Value::Float(f) => f.to_string().into(),
                        Value::Null => "null".into(),
                        _ => {
                            self.fail(key_loc, "a map key must be a scalar".into());
                            return;
                        }
                    };
                    // libyaml marks a block mapping at its first key: where an entity starts.
                    *pending = Some((key, key_loc));
                }
                Some((key, key_loc)) => {
                    let earlier = &self.entries[*from..];
                    let duplicate = if earlier.len() < INDEXED_KEYS {
                        earlier.iter().any(|e| e.key == key)
                    } else {
                        let keys = parent
                            .keys
                            .get_or_insert_with(|| earlier.iter().map(|e| e.key.clone()).collect());
                        !keys.insert(key.clone())
                    };
                    if duplicate {
                        let msg = format!("duplicate key \"{key}\"");
                        self.fail(key_loc, msg);
                        return;
                    }
                    self.entries.push(Entry {
                        key,
                        key_loc,
                        value: node,
                    });
                }
            },
        }
    }

    /// Makes `name` the pending key when the innermost open collection is a mapping waiting
    /// for one (as `push` does with a key node); false otherwise.
    fn take_key(&mut self, name: &'static str, at: Loc) -> bool {
        if self.error.is_some() {
            return false;
        }
        match self.stack.last_mut() {
            Some(Open {
                kind: Kind::Map(_, pending @ None),
                size,
                ..
            }) => {
                *size += 1;
                *pending = Some((Cow::Borrowed(name), at));
                true
            }
            _ => false,
        }
    }

    fn on_event(&mut self, ev: Event, at: Loc) {
        match ev {
            Event::Scalar {
                value,
                plain,
                str_tag,
                anchor,
            } => {
                let value = match value {
                    // A known field name (never a null, boolean or number): as a key, it is
                    // taken as it is, without a node or a copy.
                    Cow::Borrowed(name) if anchor.is_none() => {
                        if self.take_key(name, at) {
                            return;
                        }
                        Value::Str(name.to_string())
                    }
                    text => scalar(text.into_owned(), plain && !str_tag),
                };
                self.push(Node { loc: at, value }, 1, anchor);
            }
            Event::SequenceStart { anchor } => self.open(false, anchor, at),
            Event::MappingStart { anchor } => self.open(true, anchor, at),
            Event::End => self.close(),
            Event::Alias { anchor } => match self.anchors.get(&anchor).map(|(_, size)| *size) {
                Some(size) if self.aliased + size > MAX_ALIAS_NODES => self.fail(
                    at,
                    format!(
                        "aliases expand to more than {MAX_ALIAS_NODES} nodes; write the \
                         repeated parts out or use fewer nested aliases"
                    ),
                ),
                Some(size) => {
                    self.aliased += size;
                    if let Some((node, _)) = self.anchors.get(&anchor) {
                        let mut node = node.clone();
                        node.loc = at;
                        self.push(node, size, None);
                    }
                }
                None => self.fail(at, format!("unknown alias *{anchor}")),
            },
        }
    }
}

/// Types a scalar by YAML 1.2's core schema; only a `plain` scalar (unquoted, not a block
/// scalar, not tagged `!!str`) can be anything but a string.
pub(super) fn scalar(text: String, plain: bool) -> Value {
    if !plain {
        return Value::Str(text);
    }
    match text.as_str() {
        "" | "~" | "null" | "Null" | "NULL" => return Value::Null,
        "true" | "True" | "TRUE" => return Value::Bool(true),
        "false" | "False" | "FALSE" => return Value::Bool(false),
        _ => {}
    }
    if let Some(i) = parse_int(&text) {
        return Value::Int(i);
    }
    let looks_numeric = text
        .bytes()
        .all(|b| b.is_ascii_digit() || matches!(b, b'.' | b'-' | b'+' | b'e' | b'E'));
    if looks_numeric && text.bytes().any(|b| b.is_ascii_digit()) {
        if let Ok(f) = text.parse::<f64>() {
            return Value::Float(f);
        }
    }
    match text.as_str() {
        ".inf" | ".Inf" | ".INF" | "+.inf" => Value::Float(f64::INFINITY),
        "-.inf" | "-.Inf" | "-.INF" => Value::Float(f64::NEG_INFINITY),
        ".nan" | ".NaN" | ".NAN" => Value::Float(f64::NAN),
        _ => Value::Str(text),
    }
}

fn parse_int(text: &str) -> Option<i64> {
    let (neg, digits) = match text.as_bytes().first()? {
        b'-' => (true, &text[1..]),
        b'+' => (false, &text[1..]),
        _ => (false, text),
    };
    let value = if let Some(hex) = digits.strip_prefix("0x") {
        i64::from_str_radix(hex, 16).ok()?
    } else if let Some(oct) = digits.strip_prefix("0o") {
        i64::from_str_radix(oct, 8).ok()?
    } else if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) {
        digits.parse().ok()?
    } else {
        return None;
    };
    Some(if neg { -value } else { value })
}

#[cfg(test)]
#[path = "yaml_tests.rs"]
mod tests;
