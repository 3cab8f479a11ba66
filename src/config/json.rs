//! A fast path for JSON documents (what the Kong Ingress Controller posts): strict JSON read
//! with `jsonc-parser`, several times faster than the YAML event parser on the same text, into
//! the same [`Node`] tree with the same locations and scalar typing.
//!
//! It only has to succeed on clean input: on anything it does not accept (a syntax error, a
//! duplicate key, deep nesting, YAML flow style such as unquoted keys) the caller parses the text
//! as YAML, which reports the problem as before.

use jsonc_parser::ast::{ObjectPropName, Value as Json};
use jsonc_parser::{CollectOptions, ParseOptions};

use super::yaml::{scalar, Entry, Loc, Node, Value, MAX_DEPTH};

/// Parses `text` if it is a strict JSON document; `None` otherwise.
pub(super) fn parse(text: &str) -> Option<Node> {
    if !text.trim_start().starts_with(['{', '[']) {
        return None;
    }
    let strict = ParseOptions {
        allow_comments: false,
        allow_loose_object_property_names: false,
        allow_trailing_commas: false,
        allow_missing_commas: false,
        allow_single_quoted_strings: false,
        allow_hexadecimal_numbers: false,
        allow_unary_plus_numbers: false,
        allow_bare_decimal_point_numbers: false,
        allow_non_finite_numbers: false,
        allow_extended_string_escapes: false,
    };
    let ast = jsonc_parser::parse_to_ast(text, &CollectOptions::default(), &strict).ok()?;
    let mut lines = Lines::new(text);
    convert(ast.value?, &mut lines, 0)
}

/// Byte offset → line and column (in characters, as the YAML parser counts them). Offsets
/// are asked for in document order, so characters are counted on from the previous answer
/// (a JSON document is often one long line).
struct Lines<'a> {
    text: &'a str,
    starts: Vec<usize>,
    /// The previous answer: byte offset, line index, column (0-based).
    last: (usize, usize, usize),
}

impl<'a> Lines<'a> {
    fn new(text: &'a str) -> Self {
        let mut starts = vec![0];
        starts.extend(line_starts(text.as_bytes()));
        Lines {
            text,
            starts,
            last: (0, 0, 0),
        }
    }

    fn loc(&mut self, offset: usize) -> Loc {
        let line = self.starts.partition_point(|&s| s <= offset) - 1;
        let (last_offset, last_line, last_col) = self.last;
        let (from, col) = if line == last_line && offset >= last_offset {
            (last_offset, last_col)
        } else {
            (self.starts[line], 0)
        };
        let col = col + self.text.get(from..offset).map_or(0, |s| s.chars().count());
        self.last = (offset, line, col);
        Loc {
            line: line + 1,
            col: col + 1,
        }
    }
}

/// Offsets just past each `\n`.
fn line_starts(bytes: &[u8]) -> impl Iterator<Item = usize> + '_ {
    bytes
        .iter()
        .enumerate()
        .filter(|(_, &b)| b == b'\n')
        .map(|(i, _)| i + 1)
}

fn convert(v: Json<'_>, lines: &mut Lines<'_>, depth: usize) -> Option<Node> {
    // The node's own location first: children come after it in the text.
    let start = match &v {
        Json::StringLit(s) => s.range.start,
        Json::NumberLit(n) => n.range.start,
        Json::BooleanLit(b) => b.range.start,
        Json::NullKeyword(n) => n.range.start,
        Json::Array(a) => a.range.start,
        Json::Object(o) => o.range.start,
    };
    let loc = lines.loc(start);
    let value = match v {
        Json::StringLit(s) => Value::Str(s.value.into_owned()),
        Json::NumberLit(n) => scalar(n.value.to_string(), true),
        Json::BooleanLit(b) => Value::Bool(b.value),
        Json::NullKeyword(_) => Value::Null,
        Json::Array(a) => {
            if depth >= MAX_DEPTH {
                return None;
            }
            let items = a
                .elements
                .into_iter()
                .map(|e| convert(e, lines, depth + 1))
                .collect::<Option<Vec<_>>>()?;
            Value::Seq(items)
        }
        Json::Object(o) => {
            if depth >= MAX_DEPTH {
                return None;
            }
            let mut entries: Vec<Entry> = Vec::with_capacity(o.properties.len());
            for p in o.properties {
                let ObjectPropName::String(key) = p.name else {
                    return None;
                };
                let key_loc = lines.loc(key.range.start);
                let key = key.value.into_owned();
                // Duplicates are reported by the YAML path, with their location.
                if entries.iter().any(|e| e.key == key) {
                    return None;
                }
                let value = convert(p.value, lines, depth + 1)?;
                entries.push(Entry {
                    key: key.into(),
                    key_loc,
                    value,
                });
            }
            Value::Map(entries)
        }
    };
    Some(Node { loc, value })
}

#[cfg(test)]
mod tests {
    use super::super::yaml;

    /// The fast path and the YAML parser build the same tree, locations included.
    #[test]
    fn same_tree_as_the_yaml_parser() {
        let docs = [
            r#"{"_format_version": "3.0", "services": [{"name": "a", "url": "http://x:80/p",
  "retries": 5, "connect_timeout": 1.5, "big": 12345678901234567890, "neg": -3, "exp": 1e3,
  "on": true, "off": false, "nothing": null, "empty": {}, "list": [],
  "unicode": "h\u00e9 é", "escapes": "a\"b\\c\/d\n\t",
  "routes": [{"paths": ["~/re/(?<id>\\d+)$"], "tags": ["k8s-uid:1"]}]}]}"#,
            "  [1, 2.5, \"x\", [[]], {\"k\": {\"deeper\": [null]}}]",
            "{\n\"é\": \"ü\", \"next\":\n  {\"a\": 1}\n}",
        ];
        for doc in docs {
            let fast = super::parse(doc).expect("strict JSON");
            let slow = yaml::parse_yaml(doc).expect("valid YAML");
            assert_eq!(fast, slow, "{doc}");
        }
        // JSON's surrogate pairs, which the YAML parser refuses.
        let pair = super::parse(r#"{"s": "\ud83d\ude00"}"#).unwrap();
        assert_eq!(pair.get("s").and_then(|n| n.as_str()), Some("\u{1F600}"));
    }

    /// What is not strict JSON goes to the YAML parser (which accepts or reports it).
    #[test]
    fn other_documents_are_left_to_the_yaml_parser() {
        for doc in [
            "{a: 1}",
            "{\"a\": 1,}",
            "{\"a\": 1, \"a\": 2}",
            "{\"a\": 1} // note",
            "_format_version: \"3.0\"",
            "{\"a\": 'x'}",
            "{\"a\": 0x10}",
        ] {
            assert!(super::parse(doc).is_none(), "{doc}");
        }
        let deep = "[".repeat(300) + &"]".repeat(300);
        assert!(super::parse(&deep).is_none());
        assert!(yaml::parse(&deep).is_err());
    }
}
