//! Streamed (custom) Lua plugins end to end, with the example plugins of `plugins/`.

mod common;

use common::{render, Proxy, Upstream};
use sluice::plugins::lua::embed;

/// The `custom_plugins` entry of `plugins/<dir>`, under `name`.
fn plugin(dir: &str, name: &str) -> String {
    let base = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("plugins")
        .join(dir);
    embed::embed_dir(&base, Some(name), false).expect("plugin dir")
}

fn config(plugins: &[String], rest: &str, up: &Upstream) -> String {
    let mut out = String::from("_format_version: \"3.0\"\ncustom_plugins:\n");
    for p in plugins {
        out.push_str(p);
    }
    out.push_str(&render(rest, &[up]));
    out
}

#[tokio::test]
async fn header_plugin_with_schema_defaults_and_a_clone_under_another_name() {
    let up = Upstream::start().await;
    let cfg = config(
        &[plugin("hello-header", "hello-header")],
        r#"
cloned_plugins:
  - name: hello-clone
    ref: hello-header
    priority: 10
services:
  - name: s
    url: http://{upstream}
    routes:
      - name: r
        paths: [/r]
        plugins:
          - name: hello-header
            config: {greeting: {enabled: true}}
          - name: hello-clone
            config: {request_header: X-Clone, response_header: X-Clone-Out, mode: loud}
"#,
        &up,
    );
    let proxy = Proxy::start(&cfg).await;
    let r = proxy.get("/r/x", &[]).await;
    assert_eq!(r.status, 200, "{}\n{}", r.text(), proxy.stderr());
    let seen = up.last();
    // Defaults filled in (request_header, nested greeting.text) and the clone's own config.
    assert_eq!(seen.header("hello-world"), Some("this is on a request"));
    assert_eq!(seen.header("x-greeting"), Some("hello"));
    assert_eq!(seen.header("x-clone"), Some("this is on a request"));
    assert_eq!(r.header("bye-world"), Some("this is on the response"));
    assert_eq!(r.header("x-clone-out"), Some("this is on the response"));
    // Both set X-Hello-Mode; the clone (priority 10) runs after the original (1000).
    assert_eq!(r.header("x-hello-mode"), Some("loud"));
}

#[tokio::test]
async fn two_versions_of_a_plugin_run_side_by_side_with_their_own_priority() {
    let up = Upstream::start().await;
    let v1 = plugin("hello-header", "hello-v1");
    let v2 = plugin("hello-header", "hello-v2").replace("PRIORITY = 1000", "PRIORITY = 5");
    let cfg = config(
        &[v1, v2],
        r#"
services:
  - name: s
    url: http://{upstream}
    routes:
      - name: r
        paths: [/]
        plugins:
          - {name: hello-v1, config: {mode: polite}}
          - {name: hello-v2, config: {mode: loud, request_header: X-V2}}
"#,
        &up,
    );
    let proxy = Proxy::start(&cfg).await;
    let r = proxy.get("/", &[]).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(up.last().header("x-v2"), Some("this is on a request"));
    assert_eq!(
        up.last().header("hello-world"),
        Some("this is on a request")
    );
    // v2 has the lower priority, so it runs last and its header value wins.
    assert_eq!(r.header("x-hello-mode"), Some("loud"));
}

#[tokio::test]
async fn exit_with_a_table_body() {
    let up = Upstream::start().await;
    let cfg = config(
        &[plugin("echo", "echo")],
        r#"
routes:
  - name: echo-route
    paths: [/echo]
    plugins:
      - {name: echo, config: {status: 201, message: hi}}
"#,
        &up,
    );
    let proxy = Proxy::start(&cfg).await;
    let r = proxy.get("/echo/a/../b?x=1&y=2&y=3", &[]).await;
    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(r.header("x-echo"), Some("1"));
    assert!(r
        .header("content-type")
        .unwrap()
        .starts_with("application/json"));
    let body = r.json();
    assert_eq!(body["message"], "hi");
    assert_eq!(body["method"], "GET");
    assert_eq!(body["path"], "/echo/b");
    assert_eq!(
        body["query"],
        serde_json::json!({"x": "1", "y": ["2", "3"]})
    );
    assert_eq!(body["route"], "echo-route");
    assert!(up.seen().is_empty());
}

#[tokio::test]
async fn body_rewrite_with_get_raw_body_and_set_raw_body() {
    let up = Upstream::start().await;
    let cfg = config(
        &[plugin("body-rewrite", "body-rewrite")],
        r#"
services:
  - name: s
    url: http://{upstream}
    routes:
      - name: r
        paths: [/]
        plugins:
          - {name: body-rewrite, config: {find: "GET", replace: "FETCHED"}}
"#,
        &up,
    );
    let proxy = Proxy::start(&cfg).await;
    let r = proxy.get("/hello", &[]).await;
    assert_eq!(r.status, 200);
    let body = r.json();
    assert_eq!(body["method"], "FETCHED", "{}", r.text());
    assert_eq!(body["uri"], "/hello");
}

#[tokio::test]
async fn query_headers_and_uri_captures() {
    let up = Upstream::start().await;
    let cfg = config(
        &[plugin("inspect", "inspect")],
        r#"
routes:
  - name: users
    paths: ["~/users/(?<id>\\d+)/(\\w+)"]
    plugins:
      - {name: inspect, config: {header: X-Probe}}
"#,
        &up,
    );
    let proxy = Proxy::start(&cfg).await;
    let r = proxy
        .get(
            "/users/42/profile?a=1&flag&a=2",
            &[("x-probe", "yes"), ("host", "API.example.com:8000")],
        )
        .await;
    assert_eq!(r.status, 200, "{}\n{}", r.text(), proxy.stderr());
    let body = r.json();
    assert_eq!(
        body["query"],
        serde_json::json!({"a": ["1", "2"], "flag": true})
    );
    assert_eq!(body["raw_query"], "a=1&flag&a=2");
    assert_eq!(body["header"], "yes");
    assert_eq!(body["header_via_table"], "yes");
    assert_eq!(body["named"], serde_json::json!({"id": "42"}));
    assert_eq!(
        body["unnamed"]["0"]
            .as_str()
            .or(body["unnamed"][0].as_str()),
        Some("/users/42/profile")
    );
    assert_eq!(body["scheme"], "http");
    assert_eq!(body["host"], "api.example.com");
    assert_eq!(body["client_ip"], "127.0.0.1");
    assert_eq!(body["encoded"], "{\"ok\":true}");
}

#[tokio::test]
async fn kong_ctx_shared_passes_data_between_plugins() {
    let up = Upstream::start().await;
    let cfg = config(
        &[
            plugin("ctx-relay", "ctx-writer"),
            plugin("ctx-relay", "ctx-reader"),
        ],
        r#"
services:
  - name: s
    url: http://{upstream}
    routes:
      - name: r
        paths: [/]
        plugins:
          - {name: ctx-writer, config: {role: writer, value: from-writer}}
          - {name: ctx-reader, config: {role: reader}}
"#,
        &up,
    );
    let proxy = Proxy::start(&cfg).await;
    for _ in 0..3 {
        let r = proxy.get("/", &[]).await;
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(up.last().header("x-relayed"), Some("from-writer"));
        // kong.ctx.plugin is per plugin: the reader does not see the writer's.
        assert_eq!(up.last().header("x-plugin-ctx"), Some("nil"));
    }
}

#[tokio::test]
async fn a_failing_handler_gives_500_and_names_plugin_phase_and_line() {
    let up = Upstream::start().await;
    let handler = "local P = { PRIORITY = 1, VERSION = \"1.0.0\" }\nfunction P:access(conf)\n  local t = nil\n  return t.field\nend\nreturn P\n";
    let schema = "return { name = \"broken\", fields = { { config = { type = \"record\", fields = {} } } } }";
    let mut cfg = String::from("_format_version: \"3.0\"\n");
    cfg.push_str(&embed::render("broken", handler, schema, true));
    cfg.push_str(&render(
        "services:\n  - name: s\n    url: http://{upstream}\n    routes:\n      - {name: bad, paths: [/bad], plugins: [{name: broken}]}\n      - {name: good, paths: [/good]}\n",
        &[&up],
    ));
    let proxy = Proxy::start(&cfg).await;
    let r = proxy.get("/bad", &[]).await;
    assert_eq!(r.status, 500);
    assert_eq!(
        r.json(),
        serde_json::json!({"message": "An unexpected error occurred"})
    );
    assert!(
        up.seen().is_empty(),
        "fails closed: nothing reaches the upstream"
    );
    let r = proxy.get("/good", &[]).await;
    assert_eq!(r.status, 200);
    let log = proxy.stderr();
    assert!(log.contains("broken/handler.lua:4"), "{log}");
    assert!(log.contains("phase access"), "{log}");
}

const GOOD_SCHEMA: &str = "return { name = \"p\", fields = { { config = { type = \"record\", fields = { { ttl = { type = \"integer\", between = { 1, 10 } } } } } } } }";
const GOOD_HANDLER: &str = "return { PRIORITY = 1, VERSION = \"1.0.0\" }";

fn check_custom(handler: &str, schema: &str, instance: &str) -> String {
    let mut cfg = String::from("_format_version: \"3.0\"\n");
    cfg.push_str(&embed::render("p", handler, schema, true));
    cfg.push_str(instance);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("kong.yaml");
    std::fs::write(&path, cfg).unwrap();
    let out = std::process::Command::new(common::binary())
        .arg("check")
        .arg(&path)
        .output()
        .unwrap();
    assert!(!out.status.success(), "expected a config error");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn load_time_errors_are_located() {
    let cases: &[(&str, &str, &str, &str)] = &[
        ("local x = = 1", GOOD_SCHEMA, "", "p/handler.lua:1:"),
        ("return 42", GOOD_SCHEMA, "", "handler.lua must return a table"),
        ("return { PRIORITY = 1.5, VERSION = \"1.0.0\" }", GOOD_SCHEMA, "", "PRIORITY must be an integer"),
        ("return { PRIORITY = 1, VERSION = \"one\" }", GOOD_SCHEMA, "", "VERSION must follow the \"x.y.z\" format"),
        ("local P = { PRIORITY = 1, VERSION = \"1.0.0\" } function P:init_worker() error('boom') end return P", GOOD_SCHEMA, "", "init_worker: p/handler.lua:1: boom"),
        ("local P = { PRIORITY = 1, VERSION = \"1.0.0\" } function P:response() end function P:header_filter() end return P", GOOD_SCHEMA, "", "implements both `response` and `header_filter` or `body_filter`"),
        (GOOD_HANDLER, "return { name = \"other\", fields = { { config = { type = \"record\", fields = {} } } } }", "", "does not match the plugin's name"),
        (GOOD_HANDLER, "return {\n  name = \"p\",\n  fields = { oops(\n}", "", "p/schema.lua:4:"),
        (GOOD_HANDLER, GOOD_SCHEMA, "plugins:\n  - name: p\n    config:\n      ttl: 99\n", "plugins[0] (p, global): config.ttl:"),
    ];
    for (handler, schema, instance, expect) in cases {
        let err = check_custom(handler, schema, instance);
        assert!(err.contains(expect), "expected {expect:?} in:\n{err}");
        assert!(
            err.contains("custom_plugins[0]") || err.contains("plugins[0]"),
            "{err}"
        );
    }
    // A custom plugin may not take a bundled plugin's name.
    let mut cfg = String::from("_format_version: \"3.0\"\n");
    cfg.push_str(&embed::render(
        "request-termination",
        GOOD_HANDLER,
        GOOD_SCHEMA,
        true,
    ));
    let err = sluice::snapshot::load_str(&cfg, "kong.yaml", 1)
        .unwrap_err()
        .to_string();
    assert!(err.contains("clashes with a bundled plugin"), "{err}");
}

#[test]
fn the_embed_command_prints_a_loadable_entry() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/plugins/hello-header");
    let out = std::process::Command::new(common::binary())
        .args(["plugin", "embed", dir])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let yaml = String::from_utf8(out.stdout).unwrap();
    assert!(
        yaml.starts_with("custom_plugins:\n  - name: \"hello-header\"\n"),
        "{yaml}"
    );
    let cfg = format!("_format_version: \"3.0\"\n{yaml}plugins:\n  - name: hello-header\n");
    let snap = sluice::snapshot::load_str(&cfg, "kong.yaml", 1).expect("the embedded plugin loads");
    assert_eq!(snap.config.custom_plugins.len(), 1);
}

#[tokio::test]
async fn request_body_is_readable_by_plugins_forwarded_and_replaceable() {
    let up = Upstream::start().await;
    let handler = "local P = { PRIORITY = 1, VERSION = \"1.0.0\" }\nfunction P:access(conf)\n  local body = kong.request.get_raw_body()\n  kong.service.request.set_header(\"x-body-len\", #body)\n  if conf.upper then kong.service.request.set_raw_body(body:upper()) end\nend\nreturn P\n";
    let schema = "return { name = \"body\", fields = { { config = { type = \"record\", fields = { { upper = { type = \"boolean\", default = false } } } } } } }";
    let mut cfg = String::from("_format_version: \"3.0\"\n");
    cfg.push_str(&embed::render("body", handler, schema, true));
    cfg.push_str(&render(
        "services:\n  - name: s\n    url: http://{upstream}\n    routes:\n      - {name: keep, paths: [/keep], plugins: [{name: body}]}\n      - {name: upper, paths: [/upper], plugins: [{name: body, config: {upper: true}}]}\n",
        &[&up],
    ));
    let proxy = Proxy::start(&cfg).await;
    let r = proxy
        .request_body(
            "POST",
            "/keep",
            &[("content-type", "text/plain")],
            bytes::Bytes::from("hello body"),
        )
        .await;
    assert_eq!(r.status, 200, "{}\n{}", r.text(), proxy.stderr());
    let seen = up.last();
    assert_eq!(
        &seen.body[..],
        b"hello body",
        "the body read by the plugin still reaches the upstream"
    );
    assert_eq!(seen.header("x-body-len"), Some("10"));
    let r = proxy
        .request_body(
            "POST",
            "/upper",
            &[("content-type", "text/plain")],
            bytes::Bytes::from("hello body"),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let seen = up.last();
    assert_eq!(&seen.body[..], b"HELLO BODY");
    assert_eq!(seen.header("content-length"), Some("10"));
}

#[tokio::test]
async fn kong_ctx_plugin_is_shared_between_a_plugin_and_its_clone() {
    let up = Upstream::start().await;
    let handler = r#"
local P = { PRIORITY = 10, VERSION = "1.0.0" }
function P:access(conf)
  kong.service.request.set_header("x-" .. conf.tag, kong.ctx.plugin.mark or "none")
  kong.ctx.plugin.mark = conf.tag
end
return P
"#;
    let schema = r#"return { name = "marker", fields = { { config = { type = "record", fields = { { tag = { type = "string", required = true } } } } } } }"#;
    let mut cfg = String::from("_format_version: \"3.0\"\n");
    cfg.push_str(&embed::render("marker", handler, schema, true));
    cfg.push_str(&render(
        r#"cloned_plugins:
  - {name: marker-clone, ref: marker, priority: 5}
services:
  - name: s
    url: http://{upstream}
    routes:
      - name: r
        paths: [/]
        plugins:
          - {name: marker, config: {tag: a}}
          - {name: marker-clone, config: {tag: b}}
"#,
        &[&up],
    ));
    let proxy = Proxy::start(&cfg).await;
    assert_eq!(proxy.get("/", &[]).await.status, 200);
    let seen = up.last();
    assert_eq!(seen.header("x-a"), Some("none"), "the original runs first");
    assert_eq!(
        seen.header("x-b"),
        Some("a"),
        "the clone sees the original's kong.ctx.plugin"
    );
}

#[tokio::test]
async fn conf_tables_carry_each_instance_ids_over_a_shared_config() {
    // Kong's plugins iterator sets route_id, service_id, consumer_id, plugin_instance_name and
    // __plugin_id on each instance's conf. Here three instances have the same config (which the
    // gateway validates once and shares); each must still see its own ids.
    let up = Upstream::start().await;
    let handler = r#"local P = { PRIORITY = 1000, VERSION = "1.0.0" }
function P:access(conf)
  return kong.response.exit(200, { route_id = conf.route_id or "none",
    service_id = conf.service_id or "none", consumer_id = conf.consumer_id or "none",
    name = conf.plugin_instance_name or "none", id = conf.__plugin_id, tag = conf.tag })
end
return P"#;
    let schema = r#"return { name = "ids", fields = { { config = { type = "record",
  fields = { { tag = { type = "string", default = "d" } } } } } } }"#;
    let indent = |s: &str| s.replace('\n', "\n      ");
    let cfg = format!(
        "_format_version: \"3.0\"\ncustom_plugins:\n  - name: ids\n    handler: |\n      {}\n    schema: |\n      {}\n{}",
        indent(handler),
        indent(schema),
        render(
            r#"
services:
  - name: s
    id: 5b1484f2-5209-49d9-b43e-92ba09dd9d52
    url: http://{upstream}
    routes:
      - name: a
        id: 0c8b9e1a-7f3e-4c55-9d2a-3b2a1f0e6d11
        paths: [/a]
        plugins:
          - {name: ids, id: 1d7a4c7e-2f62-4c1b-8f54-1b8f8a0e0a01, instance_name: on-a, config: {tag: same}}
      - name: b
        id: 2e4f6a8c-1b3d-4e5f-8a9b-0c1d2e3f4a5b
        paths: [/b]
        plugins:
          - {name: ids, id: 3a5c7e9b-2d4f-4a6b-9c8d-1e2f3a4b5c6d, config: {tag: same}}
  - name: t
    id: 6c2595f3-6310-4ae0-a54f-a3cb1aee0e63
    url: http://{upstream}
    plugins:
      - {name: ids, id: 4b6d8f0a-3e5a-4b7c-8d9e-2f3a4b5c6d7e, config: {tag: same}}
    routes:
      - {name: c, paths: [/c]}
"#,
            &[&up],
        )
    );
    let proxy = Proxy::start(&cfg).await;
    let cases = [
        (
            "/a",
            "0c8b9e1a-7f3e-4c55-9d2a-3b2a1f0e6d11",
            "none",
            "on-a",
            "1d7a4c7e-2f62-4c1b-8f54-1b8f8a0e0a01",
        ),
        (
            "/b",
            "2e4f6a8c-1b3d-4e5f-8a9b-0c1d2e3f4a5b",
            "none",
            "none",
            "3a5c7e9b-2d4f-4a6b-9c8d-1e2f3a4b5c6d",
        ),
        (
            "/c",
            "none",
            "6c2595f3-6310-4ae0-a54f-a3cb1aee0e63",
            "none",
            "4b6d8f0a-3e5a-4b7c-8d9e-2f3a4b5c6d7e",
        ),
    ];
    for (path, route, service, name, id) in cases {
        let r = proxy.get(path, &[]).await;
        assert_eq!(r.status, 200, "{path}: {}\n{}", r.text(), proxy.stderr());
        let j = r.json();
        assert_eq!(j["route_id"], route, "{path}");
        assert_eq!(j["service_id"], service, "{path}");
        assert_eq!(j["consumer_id"], "none", "{path}");
        assert_eq!(j["name"], name, "{path}");
        assert_eq!(j["id"], id, "{path}");
        assert_eq!(j["tag"], "same", "{path}");
    }
}

/// Phase methods that do not wait are called through a Lua trampoline (a tail call): an error
/// raised for the caller (`error(msg, 2)`) still names no position, as when Rust called the
/// method itself, and the response fails with Kong's 500.
#[tokio::test]
async fn an_error_raised_at_the_callers_level_names_no_position() {
    let up = Upstream::start().await;
    let handler = "local P = { PRIORITY = 1000, VERSION = \"1.0.0\" }\n\
                   function P:header_filter(conf) error(\"caller-level failure\", 2) end\n\
                   return P\n";
    let schema = "return { name = \"raiser\", fields = { { config = { type = \"record\", fields = {} } } } }\n";
    let cfg = config(
        &[embed::render("raiser", handler, schema, false)],
        "services:\n  - name: s\n    url: http://{upstream}\n    routes:\n      - name: r\n        paths: [/r]\n        plugins:\n          - name: raiser\n",
        &up,
    );
    let proxy = Proxy::start(&cfg).await;
    let r = proxy.get("/r", &[]).await;
    assert_eq!(r.status, 500, "{}", r.text());
    assert!(
        proxy.wait_stderr("caller-level failure").await,
        "{}",
        proxy.stderr()
    );
    let line = proxy
        .stderr()
        .lines()
        .find(|l| l.contains("caller-level failure"))
        .map(str::to_string)
        .unwrap_or_default();
    assert!(!line.contains("invoke"), "{line}");
    assert!(!line.contains(":1:"), "{line}");
}

/// A worker keeps each instance's handler, methods and conf resolved for the generation it
/// serves: a reload that changes an instance's config (and moves it to another index) must
/// reach every worker at once, and so must a reload back.
#[tokio::test]
async fn a_reload_gives_a_lua_instance_its_new_config_on_every_worker() {
    let up = Upstream::start().await;
    let cfg = |mode: &str, before: bool| {
        let other = if before {
            "      - name: o\n        paths: [/o]\n        plugins:\n          - {name: hello-header, config: {mode: polite}}\n"
        } else {
            ""
        };
        config(
            &[plugin("hello-header", "hello-header")],
            &format!(
                "services:\n  - name: s\n    url: http://{{upstream}}\n    routes:\n{other}      - name: r\n        paths: [/r]\n        plugins:\n          - {{name: hello-header, config: {{mode: {mode}}}}}\n"
            ),
            &up,
        )
    };
    let proxy = Proxy::start_with_admin(&cfg("polite", false), &["--no-watch"]).await;
    let expect = |mode: &'static str| {
        let proxy = &proxy;
        async move {
            // New connections, so that each worker serves some of them.
            for _ in 0..8 {
                let r = proxy.get("/r/x", &[]).await;
                assert_eq!(r.status, 200, "{}\n{}", r.text(), proxy.stderr());
                assert_eq!(r.header("x-hello-mode"), Some(mode));
            }
        }
    };
    expect("polite").await;
    // Loud at the same index, then polite at another, then loud at the first again.
    for (mode, before) in [("loud", false), ("polite", true), ("loud", false)] {
        let r = proxy.admin("POST", "/config", &cfg(mode, before)).await;
        assert_eq!(r.status, 201, "{}", r.text());
        expect(mode).await;
    }
}
