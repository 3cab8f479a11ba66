//! Tests of the located YAML tree and of the patched libyaml underneath it.

use super::*;

#[test]
fn types_and_locations() {
    let doc = parse("a: 1\nb: \"2\"\nc:\n  - x\n  - true\nd: 1.5\ne:\n").unwrap();
    assert_eq!(doc.get("a").unwrap().value, Value::Int(1));
    assert_eq!(doc.get("b").unwrap().value, Value::Str("2".into()));
    let c = doc.get("c").unwrap();
    assert_eq!(c.loc.line, 4);
    assert_eq!(c.loc.col, 3);
    assert_eq!(doc.get("d").unwrap().value, Value::Float(1.5));
    assert_eq!(doc.get("e").unwrap().value, Value::Null);
}

#[test]
fn duplicate_keys_are_errors() {
    let err = parse("a: 1\na: 2\n").unwrap_err();
    assert_eq!(err.loc.line, 2);
    assert!(err.message.contains("duplicate key"));
}

#[test]
fn json_and_aliases() {
    let doc = parse(r#"{"x": [1, 2], "y": {"z": null}}"#).unwrap();
    assert_eq!(
        doc.to_json(),
        serde_json::json!({"x": [1, 2], "y": {"z": null}})
    );
    let doc = parse("a: &t {k: v}\nb: *t\n").unwrap();
    assert_eq!(
        doc.get("b").unwrap().to_json(),
        serde_json::json!({"k": "v"})
    );
}

#[test]
fn alias_bombs_and_deep_nesting_are_refused() {
    // 9 aliases wide, 8 levels deep: 9^8 copies of the innermost list if expanded.
    let mut doc = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x]\n");
    for i in 1..=8 {
        let refs = vec![format!("*a{}", i - 1); 9].join(", ");
        doc.push_str(&format!("a{i}: &a{i} [{refs}]\n"));
    }
    let err = parse(&doc).unwrap_err();
    assert!(
        err.message.contains("aliases expand to more than"),
        "{}",
        err.message
    );
    assert!(err.loc.line > 1);
    let deep: String = (0..300)
        .map(|i| format!("{}a:\n", "  ".repeat(i)))
        .collect();
    let err = parse(&deep).unwrap_err();
    assert!(
        err.message.contains("nesting deeper than"),
        "{}",
        err.message
    );
    // Flow collections: the parser's own limit (255) answers.
    assert!(parse(&"[".repeat(100_000)).is_err());
    // Ordinary reuse of an anchor stays fine.
    let ok = parse("base: &b {retries: 3, port: 80}\nx: *b\ny: *b\n").unwrap();
    assert_eq!(
        ok.get("y").unwrap().to_json(),
        serde_json::json!({"retries": 3, "port": 80})
    );
}

#[test]
fn syntax_errors_are_located_with_libyaml_messages() {
    let err = parse("a: [1, 2\nb: 3\n").unwrap_err();
    assert_eq!((err.loc.line, err.loc.col), (2, 2));
    assert_eq!(
        err.message,
        "did not find expected ',' or ']' (while parsing a flow sequence at line 1)"
    );
    // The reader reports a byte offset: located all the same, after multi-byte text.
    let err = parse("a: 1\nbé: \"\u{1}\"\n").unwrap_err();
    assert_eq!((err.loc.line, err.loc.col), (2, 6), "{}", err.message);
    assert!(
        err.message.contains("control characters"),
        "{}",
        err.message
    );
    let err = parse("a: *missing\n").unwrap_err();
    assert_eq!(err.message, "unknown alias *missing");
}

/// Regression for the patched libyaml reader (vendor/unsafe-libyaml), which copies runs of
/// printable ASCII in bulk: text across many 16 KiB input buffers, with multi-byte
/// characters, CRLF line ends and tabs between the ASCII runs, reads as before, and a
/// control character far into the text is still refused where it is.
#[test]
fn long_mixed_text_reads_the_same_and_control_characters_are_refused() {
    let mut text = String::new();
    for i in 0..3000 {
        text.push_str(&format!("k{i}: \"é{i}\t→ 😀 x\"\r\n"));
    }
    assert!(text.len() > 4 * 16384);
    let doc = parse(&text).unwrap();
    for i in [0, 1, 1234, 2999] {
        let value = doc.get(&format!("k{i}")).unwrap();
        assert_eq!(value.as_str(), Some(format!("é{i}\t→ 😀 x").as_str()));
        assert_eq!(value.loc.line, i + 1);
    }
    text.push_str("last: \"a\u{7}b\"\n");
    let err = parse(&text).unwrap_err();
    assert_eq!((err.loc.line, err.loc.col), (3001, 9), "{}", err.message);
    assert!(
        err.message.contains("control characters"),
        "{}",
        err.message
    );
}

/// Regression for the patched libyaml scanner (vendor/unsafe-libyaml), whose plain and
/// quoted scalars allocate their scratch strings (line breaks, blanks) on first use:
/// folding reads as YAML says.
#[test]
fn scalars_fold_lines_and_keep_blanks_as_yaml_says() {
    let cases = [
        ("a: foo\n  bar\n", "foo bar"),
        ("a: foo\n\n  bar\n", "foo\nbar"),
        ("a: foo\n\n\n  bar  baz\n", "foo\n\nbar  baz"),
        ("a: x  y  \n", "x  y"),
        ("a: \"foo\n  bar\"\n", "foo bar"),
        ("a: \"foo\n\n  bar\"\n", "foo\nbar"),
        ("a: \"foo \\\n  bar\"\n", "foo bar"),
        ("a: 'x  y '\n", "x  y "),
        ("a: 'it''s\n\n\n  here'\n", "it's\n\nhere"),
        ("a: [foo\n  bar, 'b\n  c']\n", "foo bar"),
    ];
    for (text, want) in cases {
        let doc = parse(text).unwrap();
        let a = doc.get("a").unwrap();
        let got = match &a.value {
            Value::Seq(items) => items[0].as_str().unwrap(),
            _ => a.as_str().unwrap(),
        };
        assert_eq!(got, want, "{text:?}");
    }
    let doc = parse("a: [foo\n  bar, 'b\n  c']\n").unwrap();
    let Value::Seq(items) = &doc.get("a").unwrap().value else {
        panic!("a sequence")
    };
    assert_eq!(items[1].as_str(), Some("b c"));
}

/// Known field names are shared, not copied; as values, or keys under an anchor, they
/// are plain strings all the same, and a duplicate known key is still an error.
#[test]
fn field_names_are_shared_keys_and_ordinary_values() {
    let doc = parse("name: paths\nroutes: &r {hosts: [name]}\nother: *r\n").unwrap();
    let Value::Map(entries) = &doc.value else {
        panic!("a map")
    };
    assert!(matches!(entries[0].key, Cow::Borrowed("name")));
    assert_eq!(doc.get("name").unwrap().as_str(), Some("paths"));
    let other = doc.get("other").unwrap();
    let hosts = other.get("hosts").unwrap();
    assert_eq!(hosts.to_json(), serde_json::json!(["name"]));
    let err = parse("name: a\nhost: b\nname: c\n").unwrap_err();
    assert_eq!((err.loc.line, err.loc.col), (3, 1));
    assert_eq!(err.message, "duplicate key \"name\"");
    for name in super::super::yaml_events::FIELD_NAMES {
        assert!(name.len() <= super::super::yaml_events::LONGEST, "{name}");
        assert!(
            matches!(super::scalar(name.to_string(), true), Value::Str(_)),
            "{name}"
        );
    }
}

#[test]
fn tags_styles_and_documents() {
    let doc = parse("a: !!str 12\nb: '12'\nc: |-\n  12\nd: 12\n").unwrap();
    for key in ["a", "b", "c"] {
        assert_eq!(
            doc.get(key).unwrap().value,
            Value::Str("12".into()),
            "{key}"
        );
    }
    assert_eq!(doc.get("d").unwrap().value, Value::Int(12));
    // The first document is the config; what follows is not read.
    let doc = parse("a: 1\n---\nb: [unclosed\n").unwrap();
    assert_eq!(doc.to_json(), serde_json::json!({"a": 1}));
    assert_eq!(parse("").unwrap().value, Value::Null);
}

/// Regression for the patched libyaml scanner (vendor/unsafe-libyaml), which skips runs of
/// spaces and copies runs of ordinary ASCII in scalars at once: the characters that end a
/// scalar or change its meaning still do, wherever they fall in a run, and positions count
/// every character.
#[test]
fn runs_of_ordinary_characters_read_as_one_at_a_time() {
    let cases = [
        ("a: x:y#z-1\n", "x:y#z-1"),
        ("a: url: http://h:8/p #c\n", ""),
        ("a: http://h:8/p#f #c\n", "http://h:8/p#f"),
        ("a: [x:y, 'p,q', \"r]s\", t]\n", "x:y"),
        ("a: {k: v,w}\n", ""),
        ("a: 'it''s a \"b\" \\n'\n", "it's a \"b\" \\n"),
        ("a: \"q\\\"r\\tx\\\\y'z\"\n", "q\"r\tx\\y'z"),
        ("a:           spaced        out   \n", "spaced        out"),
        ("a: é-ascii-é-ascii\n", "é-ascii-é-ascii"),
    ];
    for (text, want) in cases {
        match parse(text) {
            Ok(doc) if !want.is_empty() => {
                let value = doc.get("a").unwrap();
                let got = match &value.value {
                    Value::Seq(items) => items[0].as_str().unwrap().to_string(),
                    _ => value.as_str().unwrap().to_string(),
                };
                assert_eq!(got, want, "{text:?}");
            }
            // `url: x` in a plain scalar is a nested map, which block context refuses.
            Err(e) => assert!(text.starts_with("a: url"), "{text:?}: {}", e.message),
            Ok(doc) => assert!(text.starts_with("a: {"), "{text:?}: {doc:?}"),
        }
    }
    // A scalar longer than the reader's buffer, after a long indentation, and its position.
    let long = "v".repeat(100_000);
    let text = format!("x:\n{}k: {long}\nafter: 1\n", " ".repeat(5_000));
    let doc = parse(&text).unwrap();
    let x = doc.get("x").unwrap();
    assert_eq!(x.get("k").unwrap().as_str(), Some(long.as_str()));
    assert_eq!(x.get("after").map(|n| n.loc), None);
    assert_eq!(doc.get("after").unwrap().loc, Loc { line: 3, col: 8 });
    assert_eq!(
        x.key_loc("k"),
        Loc {
            line: 2,
            col: 5_001
        }
    );
}

/// What declarative files are mostly made of, which the fast path must take.
const BLOCK_YAML: &str = r##"_format_version: "3.0"
# a comment
custom_plugins:
  - name: p
    handler: |2
      local P = { PRIORITY = 1 }

        -- indented, and a "#" that is content
      return P
    schema: |-
      return {}

    keep: |+
      x

services:
- name: up
  url: "http://127.0.0.1:8/a b"
  retries: 5
  tags: [a, 'b c', "d\"e", x-y]
  empty:
  routes:
    - name: r1
      paths: ["/r1/", ~/re/(?<id>\d+)$]
      hosts:
      - h1.example.test
      - "h2.example.test"   # trailing comment
      plugins:
        - name: rate-limiting
          config: {minute: 5, policy: local, nested: {a: [1, 2.5, true, null]}}
      strip_path: false
      x-y: 'it''s'
    -
      name: r2
      paths:
        - /r2
      headers: {}
      methods: []
consumers:
  - username: alice # comment
    custom_id: "0x10"
    keyauth_credentials: [{key: k1}]
upstreams:
"##;

#[test]
fn the_block_fast_path_reads_declarative_yaml_as_libyaml_does() {
    assert!(check_block_fast_path(BLOCK_YAML), "the fast path gave up");
    assert!(check_block_fast_path(&format!("---\n{BLOCK_YAML}")));
    // The tree is the same whichever path built it.
    assert_eq!(
        parse_block(BLOCK_YAML).unwrap(),
        parse_libyaml(BLOCK_YAML).unwrap()
    );
    // Left to libyaml: what the subset does not cover, valid or not.
    for text in [
        "a: &x 1\nb: *x\n",
        "a: !!str 1\n",
        "a: >\n  folded\n",
        "a: foo\n  bar\n",
        "a: [1,\n  2]\n",
        "a: \"x\\u0041\"\n",
        "\"a\": 1\n",
        "a:\tb\n",
        "a: é\n",
        "a: 1\r\nb: 2\r\n",
        "a: b\u{1}c\n",
        "a: \u{7f}\n",
        "a: 1\n---\nb: 2\n",
        "a: b: c\n",
        "- - a\n",
        "a:\n  b\n",
        "a: 1\n  b: 2\n",
        "a: |\n  x",
        "",
        "# only a comment\n",
    ] {
        assert!(!check_block_fast_path(text), "the fast path took {text:?}");
        assert_eq!(parse(text).is_ok(), parse_libyaml(text).is_ok(), "{text:?}");
    }
    // Inputs on which the fuzzer found the two differing (regressions): agreement or libyaml.
    for text in ["- |+\n  ||+\n ", "- |+\n  x\n\n  ", "a: |-\n  x\n \n"] {
        check_block_fast_path(text);
    }
    // Errors found while building the tree are left to libyaml's path, which reports them.
    let err = parse("a: 1\na: 2\n").unwrap_err();
    assert_eq!(
        (err.loc.line, err.message.as_str()),
        (2, "duplicate key \"a\"")
    );
}

/// `text` with one to three random edits (a character removed, or a piece of YAML syntax
/// inserted), from the xorshift state `seed`.
fn edited(text: &str, seed: &mut u64) -> String {
    let pieces: [&[u8]; 24] = [
        b":", b"#", b",", b"[", b"]", b"{", b"}", b"'", b"\"", b"\\", b" ", b"\n", b"-", b"- ",
        b": ", b" #", b"|", b"|2", b"|-", b"?", b"x", b"  ", b"\n  ", b"''",
    ];
    let mut next = |n: usize| {
        *seed ^= *seed << 13;
        *seed ^= *seed >> 7;
        *seed ^= *seed << 17;
        (*seed % n as u64) as usize
    };
    let mut text = text.as_bytes().to_vec();
    for _ in 0..1 + next(3) {
        let at = next(text.len() + 1);
        if next(4) == 0 && at < text.len() {
            text.remove(at);
        } else {
            let piece = pieces[next(pieces.len())];
            text.splice(at..at, piece.iter().copied());
        }
    }
    String::from_utf8_lossy(&text).into_owned()
}

/// Random edits of a declarative file: wherever the fast path takes the result, its events
/// are libyaml's.
#[test]
fn the_block_fast_path_agrees_with_libyaml_on_edited_files() {
    let mut seed = 0x2545_f491_4f6c_dd1d_u64;
    let taken = (0..5000)
        .filter(|_| check_block_fast_path(&edited(BLOCK_YAML, &mut seed)))
        .count();
    // Many edits leave the text within the subset, so the comparison did happen.
    assert!(taken > 800, "only {taken} of 5000 edited texts were taken");
}

/// Every YAML file of this repository, and those of a directory named by `YAML_CORPUS` (for
/// instance the yaml-test-suite's or Kong's, for a deeper check by hand, with 50 random
/// edits of each).
#[test]
fn the_block_fast_path_agrees_with_libyaml_on_real_files() {
    let mut files = Vec::new();
    let mut dirs = vec![std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))];
    if let Some(extra) = std::env::var_os("YAML_CORPUS") {
        dirs.push(extra.into());
    }
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap().flatten() {
            let path = entry.path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            if path.is_dir() && !name.starts_with('.') && name != "target" {
                dirs.push(path);
            } else if name.ends_with(".yaml") || name.ends_with(".yml") || name.contains(".yaml.") {
                files.push(path);
            }
        }
    }
    assert!(files.len() > 3, "found {} YAML files", files.len());
    let (mut taken, total) = (0, files.len());
    for path in files {
        if let Ok(text) = std::fs::read_to_string(&path) {
            eprintln!("{}", path.display());
            if check_block_fast_path(&text) {
                taken += 1;
                if std::env::var_os("YAML_CORPUS").is_some() && text.len() < 100_000 {
                    let mut seed = 0x9e37_79b9_7f4a_7c15_u64 ^ text.len() as u64;
                    for _ in 0..50 {
                        check_block_fast_path(&edited(&text, &mut seed));
                    }
                }
            }
        }
    }
    eprintln!("the fast path took {taken} of {total} files");
}

/// Duplicate keys are found in large mappings too, where the check uses a set (both parsers).
#[test]
fn duplicate_keys_are_found_in_large_mappings() {
    let mut text: String = (0..20_000).map(|i| format!("k{i}: {i}\n")).collect();
    let doc = parse(&text).unwrap();
    assert_eq!(
        doc.get("k19999").map(|n| n.value.clone()),
        Some(Value::Int(19999))
    );
    text.push_str("k7: again\n");
    let err = parse(&text).unwrap_err();
    assert_eq!(
        (err.loc.line, err.message.as_str()),
        (20_001, "duplicate key \"k7\"")
    );
    // The same through libyaml alone (an anchor sends the text there).
    let text = format!("first: &a 1\n{text}");
    let err = parse(&text).unwrap_err();
    assert_eq!(
        (err.loc.line, err.message.as_str()),
        (20_002, "duplicate key \"k7\"")
    );
}
