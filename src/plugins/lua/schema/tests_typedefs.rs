//! Tests of typedefs, the plugin entity's fields and malformed schemas.

use serde_json::json;

use super::{schema_error, source, vm, T};

#[test]
fn scope_restrictions_and_protocols() {
    let t = T::src(
        "local typedefs = require 'kong.db.schema.typedefs'
         return { name = 't', fields = { { consumer = typedefs.no_consumer }, { service = typedefs.no_service },
           { protocols = typedefs.protocols_http }, { config = { type = 'record', fields = {} } } } }",
    );
    assert!(t.schema.no_consumer() && t.schema.forbids("consumer"));
    assert!(t.schema.no_service() && !t.schema.no_route() && !t.schema.forbids("route"));
    assert_eq!(
        t.schema.default_protocols().unwrap(),
        vec!["grpc", "grpcs", "http", "https"]
    );
    let t = T::src("return { name = 't', fields = { { route = { type = 'foreign', reference = 'routes', eq = ngx.null } } } }");
    assert!(t.schema.no_route());
    assert_eq!(t.ok(json!({})), json!({}));
}

#[test]
fn typedefs_used_as_is_and_overridden() {
    let t = T::new(
        "{ header_name = typedefs.header_name { default = 'X-Hello' } }, { plain = typedefs.header_name },
         { port = typedefs.port { default = 8080 } }, { host = typedefs.host }, { url = typedefs.url },
         { path = typedefs.path }, { timeout = typedefs.timeout { default = 1000 } }, { protocols = typedefs.protocols_http },
         { methods = typedefs.methods }, { tags = typedefs.tags }",
    );
    let out = t.ok(json!({}));
    assert_eq!(out["header_name"], json!("X-Hello"));
    assert_eq!(out["port"], json!(8080));
    assert_eq!(out["timeout"], json!(1000));
    assert_eq!(out["plain"], json!(null));
    assert_eq!(out["protocols"], json!(["grpc", "grpcs", "http", "https"]));
    t.ok(json!({"host": "example.com", "url": "https://a.b:8/x?y", "path": "/a/b%20c", "methods": ["GET"], "tags": ["a b"]}));
    let (f, m) = t.err(json!({"header_name": "bad name"}));
    assert_eq!(
        (f.as_str(), m.starts_with("bad header name")),
        ("config.header_name", true)
    );
    t.fails(
        json!({"port": 70000}),
        "config.port",
        "value should be between 0 and 65535",
    );
    t.fails(
        json!({"host": "example.com:80"}),
        "config.host",
        "must not have a port",
    );
    t.fails(
        json!({"host": "exa mple"}),
        "config.host",
        "invalid value: exa mple",
    );
    t.fails(
        json!({"url": "example.com"}),
        "config.url",
        "missing host in url",
    );
    t.fails(
        json!({"url": "//example.com"}),
        "config.url",
        "missing scheme in url",
    );
    t.fails(json!({"path": "a"}), "config.path", "should start with: /");
    t.fails(
        json!({"path": "/a//b"}),
        "config.path",
        "must not have empty segments",
    );
    t.fails(
        json!({"path": "/a%2"}),
        "config.path",
        "invalid url-encoded value: '%2'",
    );
    t.fails(
        json!({"protocols": ["tcp"]}),
        "config.protocols[1]",
        "expected one of: grpc, grpcs, http, https",
    );
    t.fails(
        json!({"methods": ["get"]}),
        "config.methods[1]",
        "invalid value: get",
    );
    t.fails(
        json!({"tags": ["a,b"]}),
        "config.tags[1]",
        "invalid tag 'a,b': expected printable ascii (except `,` and `/`) or valid utf-8 sequences",
    );
}

#[test]
fn typedefs_addresses_and_names() {
    let t = T::new(
        "{ ip = typedefs.ip }, { cidr = typedefs.ip_or_cidr }, { v4 = typedefs.cidr }, { sni = typedefs.sni },
         { wild = typedefs.wildcard_host }, { hosts = typedefs.hosts }, { name = typedefs.name },
         { utf8 = typedefs.utf8_name }, { ver = typedefs.semantic_version }, { id = typedefs.uuid },
         { code = typedefs.lua_code }, { cert = typedefs.certificate }, { paths = typedefs.paths }",
    );
    t.ok(json!({"ip": "10.0.0.1", "cidr": "fe80::/10", "v4": "10.0.0.0/8", "sni": "a.example", "wild": "*.example.com",
                "hosts": ["*.a.com", "b.*", "c.com:8000"], "name": "a-b_c.d~", "utf8": "été", "ver": "1.2.3-beta",
                "code": {"f": "return 1"}, "paths": ["/a", "~/b/(?<n>\\d+)"],
                "cert": "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----"}));
    t.ok(json!({"ip": "::ffff:10.0.0.1", "cidr": "10.0.0.1"}));
    t.fails(
        json!({"ip": "10.0.0.256"}),
        "config.ip",
        "not an ip address: 10.0.0.256",
    );
    t.fails(
        json!({"ip": "1::2::3"}),
        "config.ip",
        "not an ip address: 1::2::3",
    );
    t.fails(
        json!({"cidr": "10.0.0.0/33"}),
        "config.cidr",
        "invalid ip or cidr range: '10.0.0.0/33'",
    );
    t.fails(
        json!({"v4": "::1"}),
        "config.v4",
        "invalid ipv4 cidr range: '::1'",
    );
    t.fails(
        json!({"sni": "10.0.0.1"}),
        "config.sni",
        "must not be an IP",
    );
    t.fails(
        json!({"wild": "a.*.com"}),
        "config.wild",
        "wildcard must be leftmost or rightmost character",
    );
    t.fails(
        json!({"hosts": ["a.*.com"]}),
        "config.hosts[1]",
        "invalid wildcard: must be placed at leftmost or rightmost label",
    );
    t.fails(
        json!({"name": "a b"}),
        "config.name",
        "invalid value 'a b': it must only contain alphanumeric and '., -, _, ~' characters",
    );
    t.fails(
        json!({"ver": "1..2"}),
        "config.ver",
        "must not have empty version segments",
    );
    t.fails(
        json!({"ver": "v1"}),
        "config.ver",
        "invalid version number: must be in format of X.Y.Z",
    );
    let (f, m) = t.err(json!({"code": {"f": "return ("}}));
    assert_eq!(f, "config.code.f");
    assert!(m.starts_with("Error parsing function"), "{m}");
    t.fails(
        json!({"cert": "nope"}),
        "config.cert",
        "invalid certificate: not a PEM-encoded certificate",
    );
    t.fails(
        json!({"paths": ["a"]}),
        "config.paths[1]",
        "should start with: / (fixed path) or ~/ (regex path)",
    );
}

#[test]
fn typedef_records() {
    let t = T::new("{ queue = typedefs.queue }, { pem = typedefs.pem }, { jwk = typedefs.jwk }");
    let out = t.ok(json!({}));
    assert_eq!(out["queue"]["max_batch_size"], json!(1));
    assert_eq!(out["queue"]["initial_retry_delay"], json!(0.01));
    assert_eq!(out["pem"], json!(null));
    t.fails(
        json!({"pem": {}}),
        "config.pem",
        "at least one of these fields must be non-empty: 'private_key', 'public_key'",
    );
    t.fails(
        json!({"pem": {"public_key": "x"}}),
        "config.pem",
        "could not load public key",
    );
    t.ok(json!({"pem": {"public_key": "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----"}}));
    t.ok(json!({"jwk": {"kid": "1", "kty": "RSA"}}));
    t.fails(
        json!({"jwk": {"kid": "1"}}),
        "config.jwk",
        "could not load JWK, likely not a valid key",
    );
    t.fails(
        json!({"queue": {"concurrency_limit": 2}}),
        "config.queue.concurrency_limit",
        "expected one of: -1, 1",
    );
}

#[test]
fn unknown_typedef_is_an_error() {
    let lua = vm();
    let e = super::load(&lua, &source("{ x = typedefs.nope }", "")).unwrap_err();
    assert!(
        e.contains("schema typedef error: definition nope does not exist"),
        "{e}"
    );
}

#[test]
fn malformed_schemas_are_rejected() {
    let cases: &[(&str, &str)] = &[
        ("return { fields = {} }", "the schema has no `name`"),
        (
            "return { name = 1, fields = {} }",
            "`name` must be a string",
        ),
        ("return { name = 't' }", "no `fields` list"),
        (
            "return { name = 't', fields = 'x' }",
            "`fields` must be a list",
        ),
        (
            "return { name = 't', fields = {}, extra = 1 }",
            "unknown key 'extra'",
        ),
        (
            "return { name = 't', fields = { 'x' } }",
            "fields[1]: each entry in fields must be a table",
        ),
        (
            "return { name = 't', fields = { { a = {}, b = {} } } }",
            "fields[1]: each entry in fields must be a table with exactly one",
        ),
        (
            "return { name = 't', fields = { { foo = { type = 'string' } } } }",
            "foo: a plugin schema cannot create a new top-level field",
        ),
        (
            "return { name = 't', fields = { { config = { type = 'string' } } } }",
            "config: cannot change type",
        ),
        (
            "return { name = 't', fields = { { config = { type = 'record' } } } }",
            "config: field of type 'record' must declare 'fields'",
        ),
    ];
    for (src, want) in cases {
        let e = schema_error(src);
        assert!(e.contains(want), "{src}\n  expected {want:?}\n  got {e:?}");
    }
    let field_cases: &[(&str, &str)] = &[
        (
            "{ a = { required = true } }",
            "config.a: missing type declaration",
        ),
        ("{ a = { type = 'text' } }", "config.a: unknown type 'text'"),
        (
            "{ a = { type = 'string', betwen = { 1, 2 } } }",
            "config.a: unknown attribute 'betwen'",
        ),
        (
            "{ a = { type = 'string', between = { 1, 2 } } }",
            "config.a: field of type 'string' cannot have attribute 'between'",
        ),
        (
            "{ a = { type = 'array' } }",
            "config.a: field of type 'array' must declare 'elements'",
        ),
        (
            "{ a = { type = 'map', keys = { type = 'string' } } }",
            "config.a: field of type 'map' must declare 'values'",
        ),
        (
            "{ a = { type = 'array', elements = { type = 'nope' } } }",
            "config.a.elements: unknown type 'nope'",
        ),
        (
            "{ a = { type = 'string', match = '[a' } }",
            "config.a: 'match' is not a valid Lua pattern",
        ),
        (
            "{ a = { type = 'string', required = 'yes' } }",
            "config.a: attribute 'required' has the wrong type",
        ),
        (
            "{ a = { type = 'integer', between = { 1 } } }",
            "config.a: 'between' must be a list of two numbers",
        ),
        (
            "{ a = { type = 'string', custom_validator = 'x' } }",
            "config.a: 'custom_validator' must be a function",
        ),
        (
            "{ a = { type = 'string' } }, { a = { type = 'string' } }",
            "config.a: the field is declared twice",
        ),
        (
            "{ a = { type = 'record', fields = { { b = { type = 'x' } } } } }",
            "config.a.b: unknown type 'x'",
        ),
    ];
    for (fields, want) in field_cases {
        let e = schema_error(&source(fields, ""));
        assert!(
            e.contains(want),
            "{fields}\n  expected {want:?}\n  got {e:?}"
        );
    }
    let check_cases: &[(&str, &str)] = &[
        ("{ at_least_one_off = { 'a' } }", "config.entity_checks[1].at_least_one_off: unknown entity check"),
        ("{ at_least_one_of = 'a' }", "must be a list of field names"),
        ("{ conditional = { if_field = 'a', if_match = { eq = 'x' }, then_field = 'a' } }", "then_match: must be a table"),
        ("{ conditional = { if_field = 'a', if_match = { wat = 1 }, then_field = 'a', then_match = {} } }", "if_match: unknown attribute 'wat'"),
        ("{ custom_entity_check = { field_sources = { 'a' } } }", "'fn' must be a function"),
        ("{ mutually_exclusive_sets = { set1 = { 'a' }, set3 = {} } }", "unknown argument 'set3'"),
        ("{ only_one_of = { 'a' }, distinct = { 'a' } }", "exactly one check name"),
    ];
    for (check, want) in check_cases {
        let e = schema_error(&source(
            "{ a = { type = 'string' } }",
            &format!("entity_checks = {{ {check} }}"),
        ));
        assert!(
            e.contains(want),
            "{check}\n  expected {want:?}\n  got {e:?}"
        );
    }
}

#[test]
fn the_example_schema() {
    let t = T::src(
        r#"local typedefs = require "kong.db.schema.typedefs"
return {
  name = "my-plugin",
  fields = {
    { consumer = typedefs.no_consumer },
    { protocols = typedefs.protocols_http },
    { config = { type = "record", fields = {
        { header_name = typedefs.header_name { default = "X-Hello" } },
        { ttl = { type = "integer", default = 60, between = { 1, 3600 } } },
        { mode = { type = "string", one_of = { "a", "b" }, required = true, default = "a" } },
        { tags = { type = "array", elements = { type = "string", match = "^%w+$" }, len_max = 5 } },
        { nested = { type = "record", fields = { { on = { type = "boolean", default = false } } } } },
        { limits = { type = "map", keys = { type = "string" }, values = { type = "number", gt = 0 } } },
    }, entity_checks = { { at_least_one_of = { "ttl", "tags" } } } } },
  },
  entity_checks = { { mutually_exclusive = { "config.a", "config.b" } } },
}"#,
    );
    assert_eq!(t.schema.name(), "my-plugin");
    assert!(t.schema.no_consumer());
    assert_eq!(
        t.ok(json!({})),
        json!({"header_name": "X-Hello", "ttl": 60, "mode": "a", "tags": null, "nested": {"on": false}, "limits": null})
    );
    let out = t.ok(json!({"tags": ["a1"], "limits": {"x": 0.5}, "nested": {"on": true}}));
    assert_eq!(out["tags"], json!(["a1"]));
    assert_eq!(out["nested"], json!({"on": true}));
    t.fails(
        json!({"ttl": 0}),
        "config.ttl",
        "value should be between 1 and 3600",
    );
    t.fails(json!({"ttl": 1.5}), "config.ttl", "expected an integer");
    t.fails(
        json!({"tags": ["ok", "not ok"]}),
        "config.tags[2]",
        "invalid value: not ok",
    );
    t.fails(
        json!({"tags": ["a", "b", "c", "d", "e", "f"]}),
        "config.tags",
        "length must be at most 5",
    );
    t.fails(
        json!({"nested": {"on": "yes"}}),
        "config.nested.on",
        "expected a boolean",
    );
    t.fails(json!({"mode": "c"}), "config.mode", "expected one of: a, b");
    t.fails(
        json!({"limits": {"x": -1}}),
        "config.limits.x",
        "value must be greater than 0",
    );
    assert_eq!(t.ok(json!({"ttl": null, "nested": {}}))["ttl"], json!(60));
}

#[test]
fn function_fields_and_problem_display() {
    let t = T::new("{ f = { type = 'function' } }");
    assert_eq!(t.ok(json!({})), json!({"f": null}));
    t.fails(json!({"f": "x"}), "config.f", "expected a function");
    let p = super::Problem {
        field: "config.a".into(),
        message: "m".into(),
    };
    assert_eq!(p.to_string(), "config.a: m");
    let p = super::Problem {
        field: String::new(),
        message: "m".into(),
    };
    assert_eq!(p.to_string(), "m");
    let t = T::src(
        "local typedefs = require 'kong.db.schema.typedefs'
         return { name = 't', fields = { { consumer_group = typedefs.no_consumer_group } } }",
    );
    assert!(t.schema.forbids("consumer_group") && !t.schema.no_consumer());
}
