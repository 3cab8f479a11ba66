//! serde's `Deserializer` over the located tree: an entity decodes straight from its
//! [`Node`] (no intermediate JSON value), and every unknown field and the first type error
//! come back with their path inside the entity and their line and column.

use std::cell::RefCell;
use std::fmt;

use serde::de::{self, DeserializeOwned, DeserializeSeed, IntoDeserializer, Visitor};

use super::yaml::{Entry, Loc, Node, Value};

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

/// Decodes `node` into `T`, leaving out the top-level keys in `skip`. Reports every unknown
/// field and the first type error; `None` when the value could not be decoded.
pub fn decode<T: DeserializeOwned>(node: &Node, skip: &[&str]) -> (Option<T>, Vec<FieldProblem>) {
    let unknown = RefCell::new(Vec::new());
    let de = NodeDe {
        node,
        path: Path::Root,
        key_loc: node.loc,
        skip,
        unknown: &unknown,
    };
    let result = T::deserialize(de);
    let mut problems = unknown.into_inner();
    match result {
        Ok(v) => (Some(v), problems),
        Err(e) => {
            problems.push(FieldProblem {
                loc: e.loc.unwrap_or(node.loc),
                field: e.path(),
                message: e.msg,
            });
            (None, problems)
        }
    }
}

/// Where a value sits inside the decoded entity, as a chain of borrowed steps.
#[derive(Clone, Copy)]
enum Path<'a> {
    Root,
    Key(&'a Path<'a>, &'a str),
    Index(&'a Path<'a>, usize),
}

impl fmt::Display for Path<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Path::Root => Ok(()),
            Path::Key(parent, key) => {
                if matches!(parent, Path::Root) {
                    write!(f, "{key}")
                } else {
                    write!(f, "{parent}.{key}")
                }
            }
            Path::Index(parent, i) => write!(f, "{parent}[{i}]"),
        }
    }
}

/// A decoding error: the message, where it happened, and the steps out to the entity.
#[derive(Debug)]
pub struct DeError {
    msg: String,
    loc: Option<Loc>,
    /// Innermost step first.
    steps: Vec<Step>,
}

#[derive(Debug)]
enum Step {
    Key(String),
    Index(usize),
}

impl DeError {
    fn at(mut self, loc: Loc) -> Self {
        self.loc.get_or_insert(loc);
        self
    }

    fn path(&self) -> String {
        let mut out = String::new();
        for step in self.steps.iter().rev() {
            match step {
                Step::Key(k) => {
                    if !out.is_empty() {
                        out.push('.');
                    }
                    out.push_str(k);
                }
                Step::Index(i) => out.push_str(&format!("[{i}]")),
            }
        }
        out
    }
}

impl fmt::Display for DeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.msg)
    }
}

impl std::error::Error for DeError {}

impl de::Error for DeError {
    fn custom<M: fmt::Display>(msg: M) -> Self {
        DeError {
            msg: msg.to_string(),
            loc: None,
            steps: Vec::new(),
        }
    }
}

#[derive(Clone, Copy)]
struct NodeDe<'n, 'p> {
    node: &'n Node,
    path: Path<'p>,
    /// Where the value's key is written (the node's own location at the root and in arrays).
    key_loc: Loc,
    /// Top-level keys to leave out (an entity's nested children).
    skip: &'p [&'p str],
    unknown: &'p RefCell<Vec<FieldProblem>>,
}

impl<'de> NodeDe<'de, '_> {
    fn unexpected(&self) -> de::Unexpected<'de> {
        match &self.node.value {
            Value::Null => de::Unexpected::Unit,
            Value::Bool(b) => de::Unexpected::Bool(*b),
            Value::Int(i) => de::Unexpected::Signed(*i),
            Value::Float(f) => de::Unexpected::Float(*f),
            Value::Str(s) => de::Unexpected::Str(s),
            Value::Seq(_) => de::Unexpected::Seq,
            Value::Map(_) => de::Unexpected::Map,
        }
    }
}

impl<'de> de::Deserializer<'de> for NodeDe<'de, '_> {
    type Error = DeError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        let loc = self.node.loc;
        let result = match &self.node.value {
            Value::Null => visitor.visit_unit(),
            Value::Bool(b) => visitor.visit_bool(*b),
            Value::Int(i) => visitor.visit_i64(*i),
            Value::Float(f) => visitor.visit_f64(*f),
            Value::Str(s) => visitor.visit_borrowed_str(s),
            Value::Seq(items) => visitor.visit_seq(SeqAccess {
                de: self,
                items: items.iter().enumerate(),
            }),
            Value::Map(entries) => {
                let skip = if matches!(self.path, Path::Root) {
                    self.skip
                } else {
                    &[]
                };
                visitor.visit_map(MapAccess {
                    de: self,
                    entries: entries.iter(),
                    skip,
                    current: None,
                })
            }
        };
        result.map_err(|e| e.at(loc))
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        match self.node.value {
            Value::Null => visitor.visit_none(),
            _ => visitor.visit_some(self),
        }
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, DeError> {
        match &self.node.value {
            Value::Str(s) => visitor
                .visit_enum(s.as_str().into_deserializer())
                .map_err(|e: DeError| e.at(self.node.loc)),
            _ => Err(de::Error::invalid_type(
                self.unexpected(),
                &"a string naming one of the variants",
            ))
            .map_err(|e: DeError| e.at(self.node.loc)),
        }
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, DeError> {
        visitor.visit_newtype_struct(self)
    }

    /// serde calls this for a field the target type does not have.
    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        if let Path::Key(_, key) = self.path {
            self.unknown.borrow_mut().push(FieldProblem {
                loc: self.key_loc,
                field: self.path.to_string(),
                message: format!("unknown field `{key}`"),
            });
        }
        visitor.visit_unit()
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf unit unit_struct seq tuple tuple_struct map struct identifier
    }
}

struct SeqAccess<'n, 'p, I> {
    de: NodeDe<'n, 'p>,
    items: I,
}

impl<'de, 'p, I> de::SeqAccess<'de> for SeqAccess<'de, 'p, I>
where
    I: Iterator<Item = (usize, &'de Node)>,
{
    type Error = DeError;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, DeError> {
        let Some((i, node)) = self.items.next() else {
            return Ok(None);
        };
        let path = Path::Index(&self.de.path, i);
        let de = NodeDe {
            node,
            path,
            key_loc: node.loc,
            ..self.de
        };
        seed.deserialize(de).map(Some).map_err(|e| {
            let mut e = e.at(node.loc);
            e.steps.push(Step::Index(i));
            e
        })
    }

    fn size_hint(&self) -> Option<usize> {
        self.items.size_hint().1
    }
}

struct MapAccess<'n, 'p, I> {
    de: NodeDe<'n, 'p>,
    entries: I,
    skip: &'p [&'p str],
    current: Option<&'n Entry>,
}

impl<'de, 'p, I> de::MapAccess<'de> for MapAccess<'de, 'p, I>
where
    I: Iterator<Item = &'de Entry>,
{
    type Error = DeError;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, DeError> {
        for entry in self.entries.by_ref() {
            if self.skip.contains(&entry.key.as_ref()) {
                continue;
            }
            self.current = Some(entry);
            let key: de::value::BorrowedStrDeserializer<'de, DeError> =
                de::value::BorrowedStrDeserializer::new(&entry.key);
            return seed
                .deserialize(key)
                .map(Some)
                .map_err(|e| e.at(entry.key_loc));
        }
        Ok(None)
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, DeError> {
        let entry = self
            .current
            .take()
            .ok_or_else(|| de::Error::custom("a map value was read before its key"))?;
        let path = Path::Key(&self.de.path, &entry.key);
        let de = NodeDe {
            node: &entry.value,
            path,
            key_loc: entry.key_loc,
            ..self.de
        };
        // A value's own errors (e.g. an untagged enum's) are raised after it was read.
        seed.deserialize(de).map_err(|e| {
            let mut e = e.at(entry.value.loc);
            e.steps.push(Step::Key(entry.key.to_string()));
            e
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::yaml;
    use serde::Deserialize;

    #[derive(Debug, Deserialize, PartialEq)]
    struct Inner {
        n: Option<u16>,
    }

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(untagged)]
    enum Either {
        Name(String),
        Id { id: String },
    }

    #[derive(Debug, Deserialize, PartialEq)]
    struct Outer {
        name: Option<String>,
        either: Option<Either>,
        items: Option<Vec<Inner>>,
        any: Option<serde_json::Value>,
    }

    fn run(text: &str) -> (Option<Outer>, Vec<String>) {
        let node = yaml::parse(text).unwrap();
        let (v, problems) = decode::<Outer>(&node, &["children"]);
        let shown = problems
            .iter()
            .map(|p| format!("{}:{} {}: {}", p.loc.line, p.loc.col, p.field, p.message))
            .collect();
        (v, shown)
    }

    #[test]
    fn decodes_values_and_any_json() {
        let (v, problems) =
            run("name: a\nitems: [{n: 1}, {n: ~}]\nany: {x: [1, -2, 1.5, true, null, s]}\nchildren: [1]\n");
        assert!(problems.is_empty(), "{problems:?}");
        let v = v.unwrap();
        assert_eq!(
            v.items.unwrap(),
            vec![Inner { n: Some(1) }, Inner { n: None }]
        );
        assert_eq!(
            v.any.unwrap(),
            serde_json::json!({"x": [1, -2, 1.5, true, null, "s"]})
        );
    }

    #[test]
    fn unknown_fields_and_the_first_error_are_located() {
        let (v, problems) = run("name: a\nbogus: 1\nitems:\n- n: 1\n  extra: 2\n- n: 70000\n");
        assert!(v.is_none());
        assert_eq!(
            problems,
            vec![
                "2:1 bogus: unknown field `bogus`",
                "5:3 items[0].extra: unknown field `extra`",
                "6:6 items[1].n: invalid value: integer `70000`, expected u16",
            ]
        );
    }

    #[test]
    fn an_error_raised_after_the_value_was_read_points_at_the_value() {
        let (_, problems) = run("name: a\neither:\n  [1]\n");
        assert_eq!(
            problems,
            vec!["3:3 either: data did not match any variant of untagged enum Either"]
        );
    }

    #[test]
    fn a_nested_child_key_is_only_skipped_at_the_top() {
        let (_, problems) = run("items:\n- n: 1\n  children: 2\n");
        assert_eq!(
            problems,
            vec!["3:3 items[0].children: unknown field `children`"]
        );
    }
}
