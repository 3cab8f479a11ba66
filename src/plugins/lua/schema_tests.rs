//! Tests of the schema DSL: types, attributes, defaults and error paths. Entity checks,
//! typedefs and malformed schemas are in schema/tests_checks.rs and schema/tests_typedefs.rs.

use mlua::{Lua, Table, Value};
use serde_json::{json, Value as Json};

use super::*;

#[path = "schema/tests_checks.rs"]
mod checks;
#[path = "schema/tests_typedefs.rs"]
mod typedefs;

/// A plain VM with a `require` that knows the typedefs module.
pub(super) fn vm() -> Lua {
    let lua = Lua::new();
    let typedefs: Value = lua
        .load(TYPEDEFS_LUA)
        .set_name("@kong/db/schema/typedefs.lua")
        .call(())
        .expect("typedefs.lua loads");
    let require = crate::plugins::lua::util::support::raw_function(&lua, move |_, name: String| {
        if name == "kong.db.schema.typedefs" {
            Ok(typedefs.clone())
        } else {
            Err(mlua::Error::runtime(format!("module '{name}' not found")))
        }
    })
    .unwrap();
    lua.globals().set("require", require).unwrap();
    // Loaded after typedefs, which then use their own null stand-in (as in the real VM).
    let ngx = lua.create_table().unwrap();
    ngx.set("null", Value::NULL).unwrap();
    lua.globals().set("ngx", ngx).unwrap();
    lua
}

/// Runs schema.lua source and compiles what it returns.
pub(super) fn load(lua: &Lua, src: &str) -> Result<Schema, String> {
    let t: Table = lua
        .load(src)
        .call("kong.plugins.t.schema")
        .map_err(|e| format!("lua: {e}"))?;
    Schema::from_lua(lua, &t)
}

/// A schema source whose config record has the given field entries and extra attributes.
pub(super) fn source(fields: &str, extra: &str) -> String {
    format!(
        "local typedefs = require 'kong.db.schema.typedefs'\n\
         return {{ name = 't', fields = {{ {{ config = {{ type = 'record', fields = {{ {fields} }}, {extra} }} }} }} }}"
    )
}

/// A compiled schema with its VM (the schema is dropped first).
pub(super) struct T {
    pub schema: Schema,
    pub lua: Lua,
}

impl T {
    pub(super) fn new(fields: &str) -> T {
        T::with(fields, "")
    }

    pub(super) fn with(fields: &str, extra: &str) -> T {
        T::src(&source(fields, extra))
    }

    pub(super) fn src(src: &str) -> T {
        let lua = vm();
        let schema = load(&lua, src).unwrap_or_else(|e| panic!("schema failed: {e}\n{src}"));
        T { schema, lua }
    }

    pub(super) fn ok(&self, cfg: Json) -> Json {
        self.schema
            .validate(&self.lua, &cfg, &Default::default())
            .unwrap_or_else(|p| panic!("expected {cfg} to pass, got {p:?}"))
    }

    pub(super) fn errs(&self, cfg: Json) -> Vec<(String, String)> {
        match self.schema.validate(&self.lua, &cfg, &Default::default()) {
            Ok(v) => panic!("expected {cfg} to fail, got {v}"),
            Err(p) => p.into_iter().map(|p| (p.field, p.message)).collect(),
        }
    }

    /// The single problem `cfg` has.
    pub(super) fn err(&self, cfg: Json) -> (String, String) {
        let errs = self.errs(cfg.clone());
        assert_eq!(errs.len(), 1, "expected one problem for {cfg}: {errs:?}");
        errs.into_iter().next().unwrap()
    }

    /// Asserts the single problem of `cfg`.
    pub(super) fn fails(&self, cfg: Json, field: &str, message: &str) {
        assert_eq!(self.err(cfg), (field.to_string(), message.to_string()));
    }
}

/// The error `from_lua` gives for a schema source.
pub(super) fn schema_error(src: &str) -> String {
    let lua = vm();
    match load(&lua, src) {
        Ok(_) => panic!("expected the schema to be rejected:\n{src}"),
        Err(e) => e,
    }
}

#[test]
fn name_and_empty_config() {
    let t = T::new("");
    assert_eq!(t.schema.name(), "t");
    assert_eq!(t.ok(json!({})), json!({}));
    assert_eq!(t.ok(Json::Null), json!({}));
    t.fails(json!({"x": 1}), "config.x", "unknown field");
    t.fails(json!([1]), "config", "expected a record");
}

#[test]
fn scalar_types() {
    let t = T::new(
        "{ s = { type = 'string' } }, { n = { type = 'number' } }, { i = { type = 'integer' } },
         { b = { type = 'boolean' } }, { j = { type = 'json' } }, { f = { type = 'foreign', reference = 'x' } }",
    );
    let out = t.ok(
        json!({"s": "x", "n": 1.5, "i": 3, "b": false, "j": {"any": [1, "x"]}, "f": {"id": "y"}}),
    );
    assert_eq!(
        out,
        json!({"s": "x", "n": 1.5, "i": 3, "b": false, "j": {"any": [1, "x"]}, "f": {"id": "y"}})
    );
    assert_eq!(
        t.ok(json!({})),
        json!({"s": null, "n": null, "i": null, "b": null, "j": null, "f": null})
    );
    t.fails(json!({"s": 1}), "config.s", "expected a string");
    t.fails(json!({"n": "1"}), "config.n", "expected a number");
    t.fails(json!({"i": 1.5}), "config.i", "expected an integer");
    t.fails(json!({"i": "1"}), "config.i", "expected an integer");
    t.fails(json!({"b": "true"}), "config.b", "expected a boolean");
    t.ok(json!({"i": 2.0, "n": 2, "j": "plain"}));
    // Empty strings fail by default (Kong's implicit len_min = 1).
    t.fails(json!({"s": ""}), "config.s", "length must be at least 1");
}

#[test]
fn arrays_sets_and_maps() {
    let t = T::new(
        "{ a = { type = 'array', elements = { type = 'integer' } } },
         { s = { type = 'set', elements = { type = 'string' } } },
         { m = { type = 'map', keys = { type = 'string' }, values = { type = 'number', gt = 0 } } }",
    );
    let out = t.ok(json!({"a": [1, 2, 2], "s": ["x", "y", "x"], "m": {"k": 1.5}}));
    assert_eq!(
        out,
        json!({"a": [1, 2, 2], "s": ["x", "y"], "m": {"k": 1.5}})
    );
    // Lua tables: an empty object is an empty array and vice versa.
    assert_eq!(
        t.ok(json!({"a": {}, "m": []})),
        json!({"a": [], "s": null, "m": {}})
    );
    t.fails(json!({"a": "1"}), "config.a", "expected an array");
    t.fails(json!({"a": 1}), "config.a", "expected an array");
    t.fails(json!({"s": {"x": 1}}), "config.s", "expected a set");
    t.fails(json!({"m": [1]}), "config.m", "expected a map");
    t.fails(
        json!({"a": [1, "two"]}),
        "config.a[2]",
        "expected an integer",
    );
    t.fails(
        json!({"a": [1, null]}),
        "config.a[2]",
        "required field missing",
    );
    t.fails(
        json!({"m": {"k": 0}}),
        "config.m.k",
        "value must be greater than 0",
    );
    t.fails(
        json!({"m": {"k": null}}),
        "config.m.k",
        "required field missing",
    );
}

#[test]
fn map_keys_are_validated() {
    let t = T::new(
        "{ h = { type = 'map', keys = typedefs.header_name, values = { type = 'string' } } },
         { n = { type = 'map', keys = { type = 'integer', between = { 1, 9 } }, values = { type = 'boolean' } } }",
    );
    t.ok(json!({"h": {"X-A": "1"}, "n": {"3": true}}));
    let (field, msg) = t.err(json!({"h": {"bad header": "1"}}));
    assert_eq!(field, "config.h.bad header");
    assert!(msg.starts_with("bad header name 'bad header'"), "{msg}");
    t.fails(
        json!({"n": {"12": true}}),
        "config.n.12",
        "value should be between 1 and 9",
    );
    t.fails(
        json!({"n": {"x": true}}),
        "config.n.x",
        "expected an integer",
    );
}

#[test]
fn records_and_nested_defaults() {
    let t = T::new(
        "{ nested = { type = 'record', fields = {
             { on = { type = 'boolean', default = false } },
             { deeper = { type = 'record', fields = { { n = { type = 'integer', default = 7 } } } } },
             { opt = { type = 'string' } } } } },
         { optional = { type = 'record', required = false, fields = { { x = { type = 'integer', default = 1 } } } } },
         { list = { type = 'array', elements = { type = 'record', fields = {
             { a = { type = 'string', default = 'A' } },
             { r = { type = 'record', fields = { { z = { type = 'integer', default = 0 } } } } } } } } }",
    );
    let out = t.ok(json!({"list": [{}, {"a": "b", "r": {}}]}));
    assert_eq!(
        out,
        json!({
            "nested": {"on": false, "deeper": {"n": 7}, "opt": null},
            "optional": null,
            "list": [{"a": "A", "r": null}, {"a": "b", "r": {"z": 0}}],
        })
    );
    let out = t.ok(json!({"nested": {"deeper": null, "on": true}, "optional": {}}));
    assert_eq!(
        out["nested"],
        json!({"on": true, "deeper": {"n": 7}, "opt": null})
    );
    assert_eq!(out["optional"], json!({"x": 1}));
    t.fails(
        json!({"nested": {"on": 1}}),
        "config.nested.on",
        "expected a boolean",
    );
    t.fails(
        json!({"nested": {"deeper": {"n": "x"}}}),
        "config.nested.deeper.n",
        "expected an integer",
    );
    t.fails(
        json!({"nested": {"nope": 1}}),
        "config.nested.nope",
        "unknown field",
    );
    t.fails(json!({"nested": "x"}), "config.nested", "expected a record");
    t.fails(
        json!({"list": [{}, {"a": 1}]}),
        "config.list[2].a",
        "expected a string",
    );
}

#[test]
fn required_and_defaults() {
    let t = T::new(
        "{ req = { type = 'string', required = true } },
         { with_default = { type = 'string', required = true, default = 'd' } },
         { ttl = { type = 'integer', default = 60 } },
         { list = { type = 'array', elements = { type = 'string' }, default = { 'a', 'b' } } },
         { empty = { type = 'array', elements = { type = 'string' }, default = {} } },
         { m = { type = 'map', keys = { type = 'string' }, values = { type = 'string' }, default = {} } },
         { r = { type = 'record', default = { x = 'given' }, fields = { { x = { type = 'string' } }, { y = { type = 'integer', default = 2 } } } } }",
    );
    let out = t.ok(json!({"req": "x"}));
    assert_eq!(
        out,
        json!({"req": "x", "with_default": "d", "ttl": 60, "list": ["a", "b"], "empty": [], "m": {},
               "r": {"x": "given", "y": 2}})
    );
    // null counts as absent.
    assert_eq!(t.ok(json!({"req": "x", "ttl": null}))["ttl"], json!(60));
    t.fails(json!({}), "config.req", "required field missing");
    t.fails(json!({"req": null}), "config.req", "required field missing");
    assert_eq!(
        t.ok(json!({"req": "x", "ttl": 5, "list": []}))["list"],
        json!([])
    );
}

#[test]
fn eq_ne_one_of_not_one_of() {
    let t = T::new(
        "{ e = { type = 'string', eq = 'yes' } }, { n = { type = 'integer', ne = 3 } },
         { o = { type = 'string', one_of = { 'a', 'b' }, required = true, default = 'a' } },
         { on = { type = 'integer', one_of = { -1, 1 } } },
         { no = { type = 'string', not_one_of = { 'x', 'y' } } },
         { b = { type = 'boolean', eq = true } }, { nn = { type = 'string', ne = ngx.null } }",
    );
    t.ok(json!({"e": "yes", "n": 4, "o": "b", "on": -1, "no": "z", "b": true}));
    t.fails(json!({"e": "no"}), "config.e", "value must be yes");
    t.fails(json!({"n": 3}), "config.n", "value must not be 3");
    t.fails(json!({"o": "c"}), "config.o", "expected one of: a, b");
    t.fails(json!({"on": 0}), "config.on", "expected one of: -1, 1");
    t.fails(json!({"no": "y"}), "config.no", "must not be one of: x, y");
    t.fails(json!({"b": false}), "config.b", "value must be true");
}

#[test]
fn numeric_rules() {
    let t = T::new(
        "{ g = { type = 'number', gt = 0.5 } }, { b = { type = 'integer', between = { 1, 3600 } } },
         { ts = { type = 'integer', timestamp = true } }, { f = { type = 'number', between = { 0.001, 10 } } }",
    );
    t.ok(json!({"g": 0.6, "b": 1, "ts": 1700000000, "f": 0.5}));
    t.ok(json!({"b": 3600}));
    t.fails(
        json!({"g": 0.5}),
        "config.g",
        "value must be greater than 0.5",
    );
    t.fails(
        json!({"b": 0}),
        "config.b",
        "value should be between 1 and 3600",
    );
    t.fails(
        json!({"b": 3601}),
        "config.b",
        "value should be between 1 and 3600",
    );
    t.fails(json!({"ts": 0}), "config.ts", "expected a valid timestamp");
    t.fails(
        json!({"f": 0.0001}),
        "config.f",
        "value should be between 0 and 10",
    );
}

#[test]
fn length_rules() {
    let t = T::new(
        "{ s = { type = 'string', len_min = 2, len_max = 4 } }, { e = { type = 'string', len_eq = 3 } },
         { z = { type = 'string', len_min = 0 } },
         { a = { type = 'array', elements = { type = 'string' }, len_max = 2, len_min = 1 } },
         { m = { type = 'map', keys = { type = 'string' }, values = { type = 'string' }, len_eq = 1 } }",
    );
    t.ok(json!({"s": "ab", "e": "abc", "z": "", "a": ["x"], "m": {"k": "v"}}));
    t.fails(json!({"s": "a"}), "config.s", "length must be at least 2");
    t.fails(
        json!({"s": "abcde"}),
        "config.s",
        "length must be at most 4",
    );
    t.fails(json!({"e": "ab"}), "config.e", "length must be 3");
    t.fails(json!({"a": []}), "config.a", "length must be at least 1");
    t.fails(
        json!({"a": ["1", "2", "3"]}),
        "config.a",
        "length must be at most 2",
    );
    t.fails(json!({"m": {}}), "config.m", "length must be 1");
}

#[test]
fn string_rules_with_lua_patterns() {
    let t = T::new(
        "{ m = { type = 'string', match = '^%w+$' } }, { nm = { type = 'string', not_match = '%s' } },
         { sw = { type = 'string', starts_with = '/' } },
         { all = { type = 'string', match_all = { { pattern = '^a', err = 'must start with a' }, { pattern = 'z$' } } } },
         { none = { type = 'string', match_none = { { pattern = '//', err = 'no empty segments' }, { pattern = '%.%.' } } } },
         { any = { type = 'string', match_any = { patterns = { '^x', '^y' }, err = 'x or y' } } },
         { anyd = { type = 'string', match_any = { patterns = { '^x' } } } },
         { custom = { type = 'string', match = '^%d+$', err = 'digits only' } }",
    );
    t.ok(json!({"m": "abc1", "nm": "a-b", "sw": "/p", "all": "abz", "none": "a/b", "any": "yes", "anyd": "x", "custom": "12"}));
    t.fails(json!({"m": "a b"}), "config.m", "invalid value: a b");
    t.fails(json!({"nm": "a b"}), "config.nm", "invalid value: a b");
    t.fails(json!({"sw": "p"}), "config.sw", "should start with: /");
    t.fails(json!({"all": "bz"}), "config.all", "must start with a");
    t.fails(json!({"all": "ab"}), "config.all", "invalid value: ab");
    t.fails(json!({"none": "a//b"}), "config.none", "no empty segments");
    t.fails(
        json!({"none": "a..b"}),
        "config.none",
        "invalid value: a..b",
    );
    t.fails(json!({"any": "zz"}), "config.any", "x or y");
    t.fails(json!({"anyd": "zz"}), "config.anyd", "invalid value: zz");
    t.fails(json!({"custom": "x"}), "config.custom", "digits only");
}

#[test]
fn regex_uuid_contains_subsets() {
    let t = T::new(
        "{ re = { type = 'string', is_regex = true } }, { id = { type = 'string', uuid = true } },
         { c = { type = 'array', elements = { type = 'string' }, contains = 'must' } },
         { ss = { type = 'set', elements = { type = 'string' }, mutually_exclusive_subsets = { { 'a', 'b' }, { 'c' } } } }",
    );
    t.ok(json!({"re": "^a(b|c)+$", "id": "0b0f8a7e-9b1d-4c3e-8f00-AABBCCDDEEFF", "c": ["x", "must"], "ss": ["a", "b", "z"]}));
    t.fails(json!({"re": "a(b"}), "config.re", "not a valid regex: a(b");
    t.fails(
        json!({"id": "not-a-uuid"}),
        "config.id",
        "expected a valid UUID",
    );
    t.fails(json!({"c": ["x"]}), "config.c", "expected to contain: must");
    t.fails(
        json!({"ss": ["a", "c"]}),
        "config.ss",
        "these sets are mutually exclusive: ('a', 'b'), ('c')",
    );
}

#[test]
fn custom_validator_and_err_override() {
    let t = T::new(
        "{ even = { type = 'integer', custom_validator = function(v) if v % 2 == 0 then return true end return nil, 'must be even' end } },
         { silent = { type = 'string', custom_validator = function(v) return v == 'ok' end } },
         { boom = { type = 'string', custom_validator = function(v) error('exploded') end } },
         { rec = { type = 'record', fields = { { a = { type = 'integer' } }, { b = { type = 'integer' } } },
                   custom_validator = function(r) if r.a == ngx.null or r.b == ngx.null or r.a < r.b then return true end return false, 'a must be below b' end } },
         { over = { type = 'integer', between = { 1, 2 }, err = 'one or two' } }",
    );
    t.ok(json!({"even": 4, "silent": "ok", "rec": {"a": 1, "b": 2}, "over": 2}));
    t.fails(json!({"even": 3}), "config.even", "must be even");
    t.fails(
        json!({"silent": "no"}),
        "config.silent",
        "failed validating: no",
    );
    let (field, msg) = t.err(json!({"boom": "x"}));
    assert_eq!(field, "config.boom");
    assert!(msg.contains("exploded"), "{msg}");
    t.fails(
        json!({"rec": {"a": 3, "b": 2}}),
        "config.rec",
        "a must be below b",
    );
    t.ok(json!({"rec": {"a": 3}}));
    t.fails(json!({"over": 3}), "config.over", "one or two");
}

#[test]
fn referenceable_strings_skip_rules() {
    let t = T::new(
        "{ secret = { type = 'string', referenceable = true, encrypted = true, match = '^%d+$' } }",
    );
    // Resolved from the environment (PATH is always set), the rules skipped as in Kong.
    let v = t.ok(json!({"secret": "{vault://env/path}"}));
    assert_eq!(v["secret"], json!(std::env::var("PATH").unwrap()));
    let errs = t.errs(json!({"secret": "{vault://env/sluice-surely-not-set}"}));
    assert_eq!(errs.len(), 1);
    assert_eq!(errs[0].0, "config.secret");
    assert!(
        errs[0].1.contains("SLUICE_SURELY_NOT_SET is not set"),
        "{errs:?}"
    );
    t.ok(json!({"secret": "123"}));
    t.fails(
        json!({"secret": "abc"}),
        "config.secret",
        "invalid value: abc",
    );
}

#[test]
fn auto_and_descriptive_attributes_are_accepted() {
    let t = T::new(
        "{ id = typedefs.uuid }, { created_at = typedefs.auto_timestamp_s },
         { d = { type = 'string', description = 'Some text', examples = { 'a' }, unique = true, immutable = true,
                 legacy = true, deprecation = { message = 'use e', removal_in_version = '4.0' },
                 translate_backwards = { 'e' } } }",
    );
    let out = t.ok(json!({}));
    assert!(super::rules::is_uuid(out["id"].as_str().unwrap()), "{out}");
    assert!(out["created_at"].as_i64().unwrap() > 1_600_000_000);
    t.fails(json!({"id": "x"}), "config.id", "expected a valid UUID");
}

#[test]
fn several_problems_are_all_reported() {
    let t = T::new(
        "{ a = { type = 'integer' } }, { b = { type = 'string', required = true } },
         { c = { type = 'record', fields = { { d = { type = 'boolean' } } } } }",
    );
    let errs = t.errs(json!({"a": "x", "c": {"d": 1}, "zz": 1}));
    assert_eq!(
        errs,
        vec![
            ("config.a".to_string(), "expected an integer".to_string()),
            ("config.b".to_string(), "required field missing".to_string()),
            ("config.c.d".to_string(), "expected a boolean".to_string()),
            ("config.zz".to_string(), "unknown field".to_string()),
        ]
    );
}

#[test]
fn shorthand_fields() {
    let t = T::with(
        "{ redis = { type = 'record', fields = { { host = { type = 'string' } }, { port = { type = 'integer', default = 6379 } } } } },
         { timeout = { type = 'integer', default = 10 } }",
        "shorthand_fields = {
           { redis_host = { type = 'string', func = function(v) return { redis = { host = v } } end } },
           { old_timeout = { type = 'integer', deprecation = { message = 'use timeout', removal_in_version = '4.0' },
                             func = function(v) return { timeout = v } end } } }",
    );
    let out = t.ok(json!({"redis_host": "r.local", "redis": {"port": 1}}));
    assert_eq!(out["redis"], json!({"host": "r.local", "port": 1}));
    assert_eq!(t.ok(json!({"old_timeout": 5}))["timeout"], json!(5));
    // A deprecated shorthand does not override the new field.
    assert_eq!(
        t.ok(json!({"old_timeout": 5, "timeout": 7}))["timeout"],
        json!(7)
    );
    t.fails(
        json!({"redis_host": 1}),
        "config.redis_host",
        "expected a string",
    );
}

#[test]
fn defaults_are_checked_when_the_schema_loads() {
    let e = schema_error(&source(
        "{ ttl = { type = 'integer', default = 0, between = { 1, 10 } } }",
        "",
    ));
    assert_eq!(
        e,
        "config.ttl: invalid default value (config.ttl: value should be between 1 and 10)"
    );
    let e = schema_error(&source("{ s = { type = 'string', default = '' } }", ""));
    assert!(e.contains("length must be at least 1"), "{e}");
    let e = schema_error(&source(
        "{ m = { type = 'string', default = 'c', one_of = { 'a', 'b' } } }",
        "",
    ));
    assert!(e.contains("expected one of: a, b"), "{e}");
}
