//! request-transformer end to end: what the upstream receives after the plugin's steps, its
//! templates, clones of it, and config errors. (response-transformer, cors and correlation-id
//! are in `response_plugins.rs`.)

mod common;

use bytes::Bytes;
use common::{render, Proxy, Upstream};

/// A config with one service on `up` and a route on `/t` carrying `plugin` (YAML lines
/// already indented for a route's plugin list).
fn route_with(up: &Upstream, plugin: &str) -> String {
    let mut cfg = String::from(
        "_format_version: \"3.0\"\nservices:\n  - name: s\n    url: http://{upstream}\n    routes:\n      - name: t\n        paths: [/t]\n        plugins:\n",
    );
    for line in plugin.trim_matches('\n').lines() {
        cfg.push_str("          ");
        cfg.push_str(line);
        cfg.push('\n');
    }
    render(&cfg, &[up])
}

fn check(text: &str) -> (bool, String) {
    common::check_file(text, "bad.yaml")
}

#[tokio::test]
async fn headers_are_removed_renamed_replaced_added_and_appended_in_kong_order() {
    let up = Upstream::start().await;
    let proxy = Proxy::start(&route_with(
        &up,
        r#"
- name: request-transformer
  config:
    remove: {headers: [x-remove, host]}
    rename: {headers: ["x-old:x-new", "x-absent:x-never"]}
    replace: {headers: ["x-rep:replaced", "x-norep:nope", "host:backend.test"]}
    add: {headers: ["x-add:added", "x-exists:not-used", "x-new:not-used"]}
    append: {headers: ["x-app:two", "x-fresh:one"]}
"#,
    ))
    .await;
    let r = proxy
        .get(
            "/t",
            &[
                ("x-remove", "1"),
                ("x-old", "moved"),
                ("x-rep", "orig"),
                ("x-exists", "kept"),
                ("x-app", "one"),
            ],
        )
        .await;
    assert_eq!(r.status, 200, "{}\n{}", r.text(), proxy.stderr());
    let seen = up.last();
    assert_eq!(seen.header("x-remove"), None);
    assert_eq!(seen.header("x-old"), None);
    assert_eq!(
        seen.header("x-new"),
        Some("moved"),
        "rename runs before add"
    );
    assert_eq!(seen.header("x-never"), None);
    assert_eq!(seen.header("x-rep"), Some("replaced"));
    assert_eq!(
        seen.header("x-norep"),
        None,
        "replace only touches present headers"
    );
    assert_eq!(seen.header("x-add"), Some("added"));
    assert_eq!(
        seen.header("x-exists"),
        Some("kept"),
        "add keeps present headers"
    );
    assert_eq!(seen.headers["x-app"], ["one", "two"]);
    assert_eq!(seen.header("x-fresh"), Some("one"));
    // Host is not removable, but replace sets the Host sent upstream.
    assert_eq!(seen.header("host"), Some("backend.test"));
}

#[tokio::test]
async fn querystring_steps_and_templates() {
    let up = Upstream::start().await;
    let proxy = Proxy::start(&route_with(
        &up,
        r#"
- name: request-transformer
  config:
    remove: {querystring: [drop]}
    rename: {querystring: ["old:new"]}
    replace: {querystring: ["rep:R"]}
    add: {querystring: ["add:A", "keep:no", "who:$(headers.x-user)"]}
    append: {querystring: ["multi:2"]}
"#,
    ))
    .await;
    let r = proxy
        .get("/t?drop=1&old=o&rep=1&keep=k&multi=1", &[("x-user", "ann")])
        .await;
    assert_eq!(r.status, 200, "{}\n{}", r.text(), proxy.stderr());
    assert_eq!(
        up.last().uri,
        "/?new=o&rep=R&keep=k&multi=1&add=A&who=ann&multi=2"
    );
    // Without any of the arguments: only add and append show.
    proxy.get("/t", &[]).await;
    assert_eq!(up.last().uri, "/?add=A&keep=no&who=&multi=2");
}

#[tokio::test]
async fn json_form_and_multipart_bodies() {
    let up = Upstream::start().await;
    let proxy = Proxy::start(&route_with(
        &up,
        r#"
- name: request-transformer
  config:
    remove: {body: [secret]}
    rename: {body: ["user:username"]}
    replace: {body: ["role:guest"]}
    add: {body: ["source:gateway", "username:not-used"]}
    append: {body: ["tags:new"]}
"#,
    ))
    .await;

    let json = r#"{"secret":"s","user":"ann","role":"admin","tags":["old"],"n":1}"#;
    let r = proxy
        .request_body(
            "POST",
            "/t",
            &[("content-type", "application/json")],
            Bytes::from(json),
        )
        .await;
    assert_eq!(r.status, 200, "{}\n{}", r.text(), proxy.stderr());
    let seen = up.last();
    let body: serde_json::Value = serde_json::from_slice(&seen.body).unwrap();
    assert_eq!(
        body,
        serde_json::json!({"username":"ann","role":"guest","tags":["old","new"],"n":1,"source":"gateway"})
    );
    assert_eq!(
        seen.header("content-length"),
        Some(seen.body.len().to_string().as_str())
    );

    // An empty JSON body gets the added and appended keys.
    proxy
        .request_body(
            "POST",
            "/t",
            &[("content-type", "application/json")],
            Bytes::new(),
        )
        .await;
    let body: serde_json::Value = serde_json::from_slice(&up.last().body).unwrap();
    assert_eq!(
        body,
        serde_json::json!({"source":"gateway","username":"not-used","tags":["new"]})
    );

    let r = proxy
        .request_body(
            "POST",
            "/t",
            &[("content-type", "application/x-www-form-urlencoded")],
            Bytes::from("secret=s&user=ann&role=admin&tags=old"),
        )
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(
        String::from_utf8_lossy(&up.last().body),
        "username=ann&role=guest&tags=old&source=gateway&tags=new"
    );

    let multipart = "--BND\r\nContent-Disposition: form-data; name=\"secret\"\r\n\r\ns\r\n\
--BND\r\nContent-Disposition: form-data; name=\"user\"\r\n\r\nann\r\n--BND--\r\n";
    let r = proxy
        .request_body(
            "POST",
            "/t",
            &[("content-type", "multipart/form-data; boundary=BND")],
            Bytes::from(multipart),
        )
        .await;
    assert_eq!(r.status, 200);
    let seen = up.last();
    let body = String::from_utf8_lossy(&seen.body);
    assert!(!body.contains("name=\"secret\""), "{body}");
    assert!(body.contains("name=\"username\"\r\n\r\nann\r\n"), "{body}");
    assert!(
        body.contains("name=\"source\"\r\n\r\ngateway\r\n"),
        "{body}"
    );
    assert!(body.ends_with("--BND--\r\n"), "{body}");
    assert_eq!(
        seen.header("content-length"),
        Some(seen.body.len().to_string().as_str())
    );

    // Other content types are left alone.
    proxy
        .request_body(
            "POST",
            "/t",
            &[("content-type", "text/plain")],
            Bytes::from("secret=s"),
        )
        .await;
    assert_eq!(up.last().body, "secret=s");
}

#[tokio::test]
async fn http_method_moves_a_form_body_into_the_query_for_get() {
    let up = Upstream::start().await;
    let proxy = Proxy::start(&route_with(
        &up,
        "- {name: request-transformer, config: {http_method: GET}}",
    ))
    .await;
    let r = proxy
        .request_body(
            "POST",
            "/t?a=1",
            &[("content-type", "application/x-www-form-urlencoded")],
            Bytes::from("b=2&c=3"),
        )
        .await;
    assert_eq!(r.status, 200, "{}\n{}", r.text(), proxy.stderr());
    let seen = up.last();
    assert_eq!(seen.method, "GET");
    assert_eq!(seen.uri, "/?a=1&b=2&c=3");
}

#[tokio::test]
async fn replace_uri_with_captures_and_header_templates() {
    let up = Upstream::start().await;
    let cfg = render(
        r#"
_format_version: "3.0"
services:
  - name: s
    url: http://{upstream}/base
    routes:
      - name: users
        paths: ["~/users/(?<id>\\d+)/(\\w+)$"]
        plugins:
          - name: request-transformer
            config:
              replace:
                uri: "/v2/accounts/$(uri_captures.id)/$(uri_captures[2])"
              add:
                headers:
                  - "x-user-id:$(uri_captures['id'])"
                  - "x-tenant:$(headers.x-tenant or 'none')"
                  - "x-region:$(query_params.region)"
                  - "x-raw:$('$(kept)')"
"#,
        &[&up],
    );
    let proxy = Proxy::start(&cfg).await;
    let r = proxy
        .get("/users/42/orders?region=eu", &[("x-tenant", "acme")])
        .await;
    assert_eq!(r.status, 200, "{}\n{}", r.text(), proxy.stderr());
    let seen = up.last();
    assert_eq!(seen.uri, "/v2/accounts/42/orders?region=eu");
    assert_eq!(seen.header("x-user-id"), Some("42"));
    assert_eq!(seen.header("x-tenant"), Some("acme"));
    assert_eq!(seen.header("x-region"), Some("eu"));
    assert_eq!(seen.header("x-raw"), Some("$(kept)"));

    // A template that finds nothing: the header is not added (no empty header).
    proxy.get("/users/7/x", &[]).await;
    let seen = up.last();
    assert_eq!(seen.uri, "/v2/accounts/7/x");
    assert_eq!(seen.header("x-tenant"), Some("none"));
    assert_eq!(seen.header("x-region"), None);
}

const CLONED: &str = r#"
_format_version: "3.0"
cloned_plugins:
  - name: request-transformer-global
    ref: request-transformer
services:
  - name: s
    url: http://{upstream}
    routes:
      - name: one
        paths: [/one]
        plugins:
          - {name: request-transformer, config: {add: {headers: ["x-b:b"]}}}
      - name: two
        paths: [/two]
plugins:
  - {name: request-transformer-global, config: {add: {headers: ["x-a:a"]}}}
"#;

#[tokio::test]
async fn a_global_clone_runs_alongside_the_route_instance() {
    let up = Upstream::start().await;
    let proxy = Proxy::start(&render(CLONED, &[&up])).await;
    let r = proxy.get("/one", &[]).await;
    assert_eq!(r.status, 200, "{}\n{}", r.text(), proxy.stderr());
    let seen = up.last();
    assert_eq!(seen.header("x-a"), Some("a"));
    assert_eq!(seen.header("x-b"), Some("b"));
    proxy.get("/two", &[]).await;
    let seen = up.last();
    assert_eq!(seen.header("x-a"), Some("a"));
    assert_eq!(seen.header("x-b"), None);

    // Without the clone, the route's instance takes precedence over the global one.
    let plain = CLONED
        .replace(
            "cloned_plugins:\n  - name: request-transformer-global\n    ref: request-transformer\n",
            "",
        )
        .replace("request-transformer-global", "request-transformer");
    let proxy = Proxy::start(&render(&plain, &[&up])).await;
    proxy.get("/one", &[]).await;
    let seen = up.last();
    assert_eq!(seen.header("x-a"), None);
    assert_eq!(seen.header("x-b"), Some("b"));
    proxy.get("/two", &[]).await;
    assert_eq!(up.last().header("x-a"), Some("a"));
}

#[test]
fn invalid_configs_are_reported_with_their_location() {
    let (ok, stderr) = check(
        r#"_format_version: "3.0"
routes:
  - name: r
    paths: [/]
    plugins:
      - name: request-transformer
        config:
          add:
            querystring: [novalue]
            headers: ["bad header:x"]
      - name: response-transformer
        config:
          add: {json_types: [float]}
      - name: cors
        config: {origins: ["http://(unclosed"]}
      - name: correlation-id
        config: {generator: random}
"#,
    );
    assert!(!ok, "check must fail");
    for expect in [
        "bad.yaml:9:27: routes[0].plugins[0] (request-transformer on route \"r\"): config.add.querystring[1]: key 'novalue' has no value",
        "bad.yaml:10:23: routes[0].plugins[0] (request-transformer on route \"r\"): config.add.headers[1]: 'bad header' is not a valid header",
        "config.add.json_types[1]: expected one of: boolean, number, string",
        "(cors on route \"r\"): config: origins[1]: 'http://(unclosed' is not a valid regex (unclosed group)",
        "config.generator: expected one of: uuid, uuid#counter, tracker",
    ] {
        assert!(stderr.contains(expect), "missing {expect:?} in:\n{stderr}");
    }

    let (ok, stderr) = check(
        r#"_format_version: "3.0"
routes:
  - name: r
    paths: [/]
    plugins:
      - name: request-transformer
        config: {add: {headers: ["x:$(os.getenv('HOME'))"]}}
"#,
    );
    assert!(!ok, "check must fail");
    assert!(
        stderr.contains(
            "config: add.headers[1]: unsupported template expression `os.getenv('HOME')`"
        ),
        "{stderr}"
    );
}
