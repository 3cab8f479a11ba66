//! Plugin `condition`s (CEL) end to end: the instance runs only when its condition holds.

mod common;

use common::{render, Proxy, Upstream};

/// A route whose request-termination (418) only applies when `condition` holds.
fn terminating(condition: &str) -> String {
    format!(
        r#"
_format_version: "3.0"
services:
  - name: s
    url: http://{{upstream}}
    tags: [blue]
    routes:
      - name: r
        paths: [/]
        plugins:
          - name: request-termination
            condition: '{condition}'
            config:
              status_code: 418
              message: blocked
"#
    )
}

async fn status(proxy: &Proxy, method: &str, target: &str, headers: &[(&str, &str)]) -> u16 {
    proxy.request(method, target, headers).await.status
}

#[tokio::test]
async fn header_conditions_read_lowercased_underscored_names_and_null_when_absent() {
    let up = Upstream::start().await;
    let proxy = Proxy::start(&render(
        &terminating(r#"http.headers.x_block == "true""#),
        &[&up],
    ))
    .await;
    assert_eq!(
        status(&proxy, "GET", "/a", &[("X-Block", "true")]).await,
        418
    );
    assert_eq!(status(&proxy, "GET", "/a", &[("X-Block", "no")]).await, 200);
    // Absent header: null, so the comparison is false (not an error).
    assert_eq!(status(&proxy, "GET", "/a", &[]).await, 200);
    assert_eq!(up.seen().len(), 2);
}

#[tokio::test]
async fn path_method_query_and_entity_conditions() {
    let up = Upstream::start().await;
    type Case<'a> = (&'a str, &'a [(&'a str, &'a str, u16)]);
    let cases: &[Case<'_>] = &[
        (
            r#"!http.path.contains("skip")"#,
            &[("GET", "/a/skip/b", 200), ("GET", "/a/b", 418)],
        ),
        (
            r#"http.method == "POST" && http.path_segments[0] == "orders""#,
            &[
                ("POST", "/orders/1", 418),
                ("GET", "/orders/1", 200),
                ("POST", "/users", 200),
            ],
        ),
        (
            r#"default(http.queries.debug == "1", false)"#,
            &[("GET", "/?debug=1", 418), ("GET", "/?debug=0", 200)],
        ),
        (
            r#"route.name == "r" && "blue" in service.tags && net.src.ip == "127.0.0.1""#,
            &[("GET", "/", 418)],
        ),
        (
            r#"http.headers_list.x_multi.size() > 1"#,
            &[("GET", "/", 200)],
        ),
    ];
    for (condition, requests) in cases {
        let proxy = Proxy::start(&render(&terminating(condition), &[&up])).await;
        for (method, target, want) in requests.iter() {
            assert_eq!(
                status(&proxy, method, target, &[]).await,
                *want,
                "{condition}: {method} {target}"
            );
        }
    }
}

#[tokio::test]
async fn runtime_error_fails_the_request_unless_wrapped_in_default() {
    let up = Upstream::start().await;
    // No X-Name header: null.startsWith(...) has no overload: the request fails closed.
    let proxy = Proxy::start(&render(
        &terminating(r#"http.headers.x_name.startsWith("a")"#),
        &[&up],
    ))
    .await;
    let r = proxy.get("/", &[]).await;
    assert_eq!(r.status, 500, "{}", r.text());
    assert_eq!(r.json()["message"], "An unexpected error occurred");
    assert_eq!(status(&proxy, "GET", "/", &[("x-name", "abc")]).await, 418);
    assert!(up.seen().is_empty(), "nothing may reach the upstream");
    assert!(
        proxy.stderr().contains("plugin condition failed"),
        "{}",
        proxy.stderr()
    );

    let proxy = Proxy::start(&render(
        &terminating(r#"default(http.headers.x_name.startsWith("a"), false)"#),
        &[&up],
    ))
    .await;
    assert_eq!(status(&proxy, "GET", "/", &[]).await, 200);
    assert_eq!(status(&proxy, "GET", "/", &[("x-name", "abc")]).await, 418);
    assert_eq!(status(&proxy, "GET", "/", &[("x-name", "zzz")]).await, 200);
}

#[tokio::test]
async fn ctx_shared_condition_sees_what_an_earlier_lua_plugin_stored() {
    let up = Upstream::start().await;
    let handler = r#"
local P = { PRIORITY = 5000, VERSION = "1.0.0" }
function P:access(conf)
  kong.ctx.shared.tier = kong.request.get_header("x-tier")
end
return P
"#;
    let schema =
        r#"return { name = "tierer", fields = { { config = { type = "record", fields = {} } } } }"#;
    let mut cfg = String::from("_format_version: \"3.0\"\n");
    cfg.push_str(&sluice::plugins::lua::embed::render(
        "tierer", handler, schema, true,
    ));
    let rest = terminating(r#"default(kong.ctx.shared.tier == "gold", false)"#);
    cfg.push_str(
        rest.trim_start()
            .trim_start_matches("_format_version: \"3.0\"\n"),
    );
    cfg.push_str("plugins:\n  - name: tierer\n");
    let proxy = Proxy::start(&render(&cfg, &[&up])).await;
    assert_eq!(status(&proxy, "GET", "/", &[("x-tier", "gold")]).await, 418);
    assert_eq!(status(&proxy, "GET", "/", &[("x-tier", "free")]).await, 200);
    assert_eq!(status(&proxy, "GET", "/", &[]).await, 200);
}

#[test]
fn syntax_errors_and_overlong_conditions_are_located_config_errors() {
    let cfg = r#"_format_version: "3.0"
services:
  - name: s
    url: http://127.0.0.1:1
    routes:
      - name: r
        paths: [/]
        plugins:
          - name: request-termination
            condition: 'http.path == '
"#;
    let err = sluice::snapshot::load_str(cfg, "kong.yaml", 1)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("kong.yaml:10:24") && err.contains("condition: invalid CEL expression"),
        "{err}"
    );
    let long = format!("http.path == \"{}\"", "x".repeat(1100));
    let cfg = cfg.replace("'http.path == '", &format!("'{long}'"));
    let err = sluice::snapshot::load_str(&cfg, "kong.yaml", 1)
        .unwrap_err()
        .to_string();
    assert!(err.contains("at most 1024 allowed"), "{err}");
}

#[tokio::test]
async fn a_condition_skips_an_auth_plugin_and_later_ones_see_the_consumer() {
    let up = Upstream::start().await;
    let cfg = r#"
_format_version: "3.0"
consumers:
  - username: alice
    keyauth_credentials: [{key: a-key}]
  - username: bob
    keyauth_credentials: [{key: b-key}]
services:
  - name: s
    url: http://{upstream}
    routes:
      - name: r
        paths: [/]
plugins:
  - name: key-auth
    condition: '!http.path.startsWith("/public")'
  - name: request-termination
    condition: 'consumer != null && consumer.username == "bob"'
    config: {status_code: 403, message: no bob}
"#;
    let proxy = Proxy::start(&render(cfg, &[&up])).await;
    assert_eq!(status(&proxy, "GET", "/public/x", &[]).await, 200);
    assert!(up.last().header("x-consumer-username").is_none());
    assert_eq!(status(&proxy, "GET", "/private", &[]).await, 401);
    assert_eq!(
        status(&proxy, "GET", "/private", &[("apikey", "a-key")]).await,
        200
    );
    assert_eq!(up.last().header("x-consumer-username"), Some("alice"));
    let r = proxy.get("/private", &[("apikey", "b-key")]).await;
    assert_eq!(r.status, 403);
    assert_eq!(r.json()["message"], "no bob");
}
