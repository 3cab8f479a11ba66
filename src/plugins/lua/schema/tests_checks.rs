//! Tests of entity checks.

use serde_json::json;

use super::T;

fn checks(fields: &str, checks: &str) -> T {
    T::with(fields, &format!("entity_checks = {{ {checks} }}"))
}

const ABC: &str =
    "{ a = { type = 'string' } }, { b = { type = 'string' } }, { c = { type = 'integer' } }";

#[test]
fn at_least_one_of() {
    let t = checks(ABC, "{ at_least_one_of = { 'a', 'b' } }");
    t.ok(json!({"a": "x"}));
    t.ok(json!({"b": "x", "a": "y"}));
    t.fails(
        json!({}),
        "config",
        "at least one of these fields must be non-empty: 'a', 'b'",
    );
    t.fails(
        json!({"c": 1}),
        "config",
        "at least one of these fields must be non-empty: 'a', 'b'",
    );
}

#[test]
fn only_one_of() {
    let t = checks(ABC, "{ only_one_of = { 'a', 'b' } }");
    t.ok(json!({"a": "x"}));
    t.fails(
        json!({"a": "x", "b": "y"}),
        "config",
        "exactly one of these fields must be non-empty: 'a', 'b'",
    );
    t.fails(
        json!({}),
        "config",
        "exactly one of these fields must be non-empty: 'a', 'b'",
    );
}

#[test]
fn mutually_exclusive_and_required() {
    let t = checks(
        ABC,
        "{ mutually_exclusive = { 'a', 'b' } }, { mutually_required = { 'b', 'c' } }",
    );
    t.ok(json!({}));
    t.ok(json!({"a": "x"}));
    t.ok(json!({"b": "x", "c": 1}));
    t.fails(
        json!({"a": "x", "b": "y", "c": 1}),
        "config",
        "only one or none of these fields must be set: 'a', 'b'",
    );
    t.fails(
        json!({"c": 1}),
        "config",
        "all or none of these fields must be set: 'b', 'c'",
    );
    // A field that failed its own validation keeps these checks from running.
    t.fails(
        json!({"a": "x", "b": 5, "c": 1}),
        "config.b",
        "expected a string",
    );
}

#[test]
fn mutually_exclusive_sets() {
    let t = checks(
        ABC,
        "{ mutually_exclusive_sets = { set1 = { 'a' }, set2 = { 'b', 'c' } } }",
    );
    t.ok(json!({"a": "x"}));
    t.ok(json!({"b": "x", "c": 2}));
    t.fails(
        json!({"a": "x", "c": 2}),
        "config",
        "these sets are mutually exclusive: ('a'), ('c')",
    );
}

#[test]
fn distinct() {
    let t = checks(ABC, "{ distinct = { 'a', 'b' } }");
    t.ok(json!({"a": "x", "b": "y"}));
    t.ok(json!({"a": "x"}));
    t.fails(
        json!({"a": "x", "b": "x"}),
        "config",
        "values of these fields must be distinct: 'a', 'b'",
    );
}

#[test]
fn conditional() {
    let t = checks(
        "{ policy = { type = 'string', default = 'local', one_of = { 'local', 'redis' } } },
         { host = { type = 'string' } }, { port = { type = 'integer' } }",
        "{ conditional = { if_field = 'policy', if_match = { eq = 'redis' }, then_field = 'host', then_match = { required = true } } },
         { conditional = { if_field = 'policy', if_match = { eq = 'redis' }, then_field = 'port', then_match = { between = { 1, 10 } },
                           then_err = 'port check because of %s' } }",
    );
    t.ok(json!({}));
    t.ok(json!({"policy": "redis", "host": "h"}));
    assert_eq!(
        t.errs(json!({"policy": "redis"})),
        vec![
            (
                "config.host".to_string(),
                "required field missing".to_string()
            ),
            (
                "config".to_string(),
                "failed conditional validation given value of field 'policy'".to_string()
            ),
        ]
    );
    assert_eq!(
        t.errs(json!({"policy": "redis", "host": "h", "port": 11})),
        vec![
            (
                "config.port".to_string(),
                "value should be between 1 and 10".to_string()
            ),
            (
                "config".to_string(),
                "port check because of policy".to_string()
            ),
        ]
    );
    t.ok(json!({"policy": "local", "port": 11}));
}

#[test]
fn conditional_at_least_one_of() {
    let t = checks(
        "{ mode = { type = 'string', required = true, default = 'a' } }, { x = { type = 'string' } },
         { y = { type = 'string' } }, { z = { type = 'string' } }",
        "{ conditional_at_least_one_of = { if_field = 'mode', if_match = { eq = 'a' },
             then_at_least_one_of = { 'x', 'y' }, else_match = { eq = 'b' },
             else_then_at_least_one_of = { 'z' }, else_then_err = 'mode b needs %s' } }",
    );
    t.ok(json!({"x": "1"}));
    t.ok(json!({"mode": "b", "z": "1"}));
    t.ok(json!({"mode": "c"}));
    t.fails(
        json!({}),
        "config",
        "at least one of these fields must be non-empty: 'x', 'y'",
    );
    t.fails(json!({"mode": "b", "x": "1"}), "config", "mode b needs 'z'");
}

#[test]
fn custom_entity_check() {
    let t = checks(
        "{ low = { type = 'integer', default = 1 } }, { high = { type = 'integer', default = 10 } },
         { r = { type = 'record', fields = { { v = { type = 'string' } } } } }",
        "{ custom_entity_check = { field_sources = { 'low', 'high' }, fn = function(e)
             if e.low > e.high then return nil, 'low must not exceed high' end
             if e.r ~= nil then return nil, 'r leaked' end
             return true end } },
         { custom_entity_check = { field_sources = { 'r.v' }, fn = function(e)
             if e.r.v == 'bad' then return false end return true end } }",
    );
    t.ok(json!({"low": 2, "high": 3}));
    t.fails(
        json!({"low": 4, "high": 3}),
        "config",
        "low must not exceed high",
    );
    t.fails(
        json!({"r": {"v": "bad"}}),
        "config",
        "failed entity check: custom_entity_check('r.v')",
    );
    // Not run when one of its fields is invalid.
    t.fails(json!({"low": "x"}), "config.low", "expected an integer");
}

#[test]
fn entity_checks_need_their_required_fields() {
    let t = checks(
        "{ a = { type = 'string', required = true } }, { b = { type = 'string' } }",
        "{ only_one_of = { 'a', 'b' } }, { custom_entity_check = { field_sources = { 'a' }, fn = function() return false, 'ran' end } }",
    );
    t.fails(json!({"b": "x"}), "config.a", "required field missing");
}

#[test]
fn top_level_entity_checks_use_config_paths() {
    let t = T::src(
        "return { name = 't', fields = {
           { config = { type = 'record', fields = { { a = { type = 'string' } }, { b = { type = 'string' } } } } } },
           entity_checks = { { mutually_exclusive = { 'config.a', 'config.b' } },
                             { conditional = { if_field = 'config.a', if_match = { eq = 'x' }, then_field = 'config.b', then_match = { required = true } } } } }",
    );
    t.ok(json!({"a": "y"}));
    t.fails(
        json!({"a": "y", "b": "z"}),
        "",
        "only one or none of these fields must be set: 'config.a', 'config.b'",
    );
    assert_eq!(
        t.errs(json!({"a": "x"})),
        vec![
            ("config.b".to_string(), "required field missing".to_string()),
            (
                "".to_string(),
                "failed conditional validation given value of field 'config.a'".to_string()
            ),
        ]
    );
}

#[test]
fn unknown_names_in_checks_read_as_nil() {
    let t = checks(
        ABC,
        "{ at_least_one_of = { 'zz', 'a' } }, { mutually_required = { 'a', 'nope.x' } }",
    );
    t.fails(
        json!({}),
        "config",
        "at least one of these fields must be non-empty: 'zz', 'a'",
    );
    t.fails(
        json!({"a": "x"}),
        "config",
        "all or none of these fields must be set: 'a', 'nope.x'",
    );
}

#[test]
fn checks_in_nested_records_and_array_elements() {
    let t = T::new(
        "{ sources = typedefs.sources },
         { inner = { type = 'record', fields = { { p = { type = 'string' } }, { q = { type = 'string' } } },
                     entity_checks = { { conditional = { if_field = 'p', if_match = { eq = 'x' },
                                                         then_field = 'q', then_match = { len_min = 3 } } } } } }",
    );
    t.ok(json!({"sources": [{"ip": "10.0.0.1"}, {"port": 80}], "inner": {"p": "x", "q": "abc"}}));
    t.fails(
        json!({"sources": [{"ip": "10.0.0.1"}, {}]}),
        "config.sources[2]",
        "at least one of these fields must be non-empty: 'ip', 'port'",
    );
    assert_eq!(
        t.errs(json!({"inner": {"p": "x", "q": "ab"}})),
        vec![
            (
                "config.inner.q".to_string(),
                "length must be at least 3".to_string()
            ),
            (
                "config.inner".to_string(),
                "failed conditional validation given value of field 'p'".to_string()
            ),
        ]
    );
}
