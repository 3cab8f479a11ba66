//! response-transformer, cors and correlation-id end to end: what the client and the upstream
//! actually see.

mod common;

use common::{render, Proxy, Upstream};

/// One service on `{upstream}`; `routes` is the YAML of its routes (indented for the list).
fn config(up: &Upstream, routes: &str) -> String {
    let mut cfg = String::from(
        "_format_version: \"3.0\"\nservices:\n  - name: s\n    url: http://{upstream}\n    routes:\n",
    );
    for line in routes.trim_matches('\n').lines() {
        cfg.push_str("      ");
        cfg.push_str(line);
        cfg.push('\n');
    }
    render(&cfg, &[up])
}

/// The body is framed correctly: chunked, or a Content-Length that matches.
fn assert_framed(r: &common::Reply) {
    match r.header("content-length") {
        Some(len) => assert_eq!(len, r.body.len().to_string(), "{:?}", r.headers),
        None => assert_eq!(
            r.header("transfer-encoding"),
            Some("chunked"),
            "{:?}",
            r.headers
        ),
    }
}

#[tokio::test]
async fn response_headers_in_kong_order() {
    let up = Upstream::start().await;
    let proxy = Proxy::start(&config(
        &up,
        r#"
- name: a
  paths: [/a]
  plugins:
    - name: response-transformer
      config:
        remove: {headers: [X-Upstream-Name]}
        add: {headers: ["x-added:1", "content-type:text/plain"]}
- name: b
  paths: [/b]
  plugins:
    - name: response-transformer
      config:
        rename: {headers: ["x-upstream-name:x-renamed"]}
        replace: {headers: ["content-type:application/json; charset=utf-8", "x-absent:no"]}
        append: {headers: ["x-renamed:again", "x-list:1"]}
"#,
    ))
    .await;
    let r = proxy.get("/a", &[]).await;
    assert_eq!(r.status, 200, "{}\n{}", r.text(), proxy.stderr());
    assert_eq!(r.header("x-upstream-name"), None);
    assert_eq!(r.header("x-added"), Some("1"));
    assert_eq!(
        r.header("content-type"),
        Some("application/json"),
        "add keeps present headers"
    );

    let r = proxy.get("/b", &[]).await;
    assert_eq!(r.header("x-upstream-name"), None);
    let renamed: Vec<_> = r.headers.get_all("x-renamed").iter().collect();
    assert_eq!(renamed, ["upstream", "again"]);
    assert_eq!(
        r.header("content-type"),
        Some("application/json; charset=utf-8")
    );
    assert_eq!(r.header("x-absent"), None);
    assert_eq!(r.header("x-list"), Some("1"));
    // No body step: the upstream's Content-Length stays.
    assert_eq!(
        r.header("content-length"),
        Some(r.body.len().to_string().as_str())
    );
}

#[tokio::test]
async fn json_bodies_are_transformed_with_types_and_sent_chunked() {
    let up = Upstream::start().await;
    let proxy = Proxy::start(&config(
        &up,
        r#"
- name: j
  paths: [/j]
  plugins:
    - name: response-transformer
      config:
        remove: {json: [headers]}
        rename: {json: ["uri:path"]}
        replace: {json: ["method:REPLACED", "absent:x"]}
        add:
          json: ["n:42", "flag:true", "s:007", "method:not-used"]
          json_types: [number, boolean, string]
        append: {json: ["body:more", "list:1"]}
"#,
    ))
    .await;
    let r = proxy.get("/j?q=1", &[]).await;
    assert_eq!(r.status, 200, "{}\n{}", r.text(), proxy.stderr());
    assert_framed(&r);
    assert_eq!(
        r.json(),
        serde_json::json!({
            "path": "/?q=1",
            "method": "REPLACED",
            "n": 42,
            "flag": true,
            "s": "007",
            "body": ["", "more"],
            "list": ["1"],
        })
    );
    // HEAD: no body to buffer, the response still completes.
    let r = proxy.request("HEAD", "/j", &[]).await;
    assert_eq!(r.status, 200);
    assert!(r.body.is_empty());
}

#[tokio::test]
async fn only_json_responses_change_including_plugin_responses() {
    let up = Upstream::start().await;
    let proxy = Proxy::start(&config(
        &up,
        r#"
- name: text
  paths: [/text]
  plugins:
    - {name: request-termination, config: {status_code: 200, body: '{"a":1}', content_type: text/plain}}
    - {name: response-transformer, config: {remove: {json: [a]}, add: {json: ["b:2"]}}}
- name: json
  paths: [/json]
  plugins:
    - {name: request-termination, config: {status_code: 201, body: '{"a":1}', content_type: application/problem+json}}
    - {name: response-transformer, config: {remove: {json: [a]}, add: {json: ["b:2"]}}}
- name: broken
  paths: [/broken]
  plugins:
    - {name: request-termination, config: {status_code: 200, body: 'not json', content_type: application/json}}
    - {name: response-transformer, config: {add: {json: ["b:2"]}}}
"#,
    ))
    .await;
    let r = proxy.get("/text", &[]).await;
    assert_eq!(r.status, 200, "{}\n{}", r.text(), proxy.stderr());
    assert_eq!(r.text(), r#"{"a":1}"#);
    assert_framed(&r);

    let r = proxy.get("/json", &[]).await;
    assert_eq!(r.status, 201);
    assert_eq!(r.json(), serde_json::json!({"b": "2"}));
    assert_framed(&r);

    // A body that is not JSON is sent as it came.
    let r = proxy.get("/broken", &[]).await;
    assert_eq!(r.text(), "not json");
    assert_framed(&r);
}

const CORS: &str = r#"
- name: strict
  paths: [/strict]
  plugins:
    - name: cors
      config:
        origins: ["http://a.test", "https://(.*\\.)?b\\.test"]
        methods: [GET, POST]
        headers: [X-Custom, Authorization]
        exposed_headers: [X-Upstream-Name]
        max_age: 3600
        credentials: true
        private_network: true
- name: open
  paths: [/open]
  plugins:
    - {name: cors, config: {credentials: true}}
- name: single
  paths: [/single]
  plugins:
    - {name: cors, config: {origins: ["http://only.test"]}}
- name: cont
  paths: [/cont]
  plugins:
    - {name: cors, config: {preflight_continue: true}}
"#;

#[tokio::test]
async fn cors_preflight_is_answered_by_the_gateway() {
    let up = Upstream::start().await;
    let proxy = Proxy::start(&config(&up, CORS)).await;
    let r = proxy
        .request(
            "OPTIONS",
            "/strict",
            &[
                ("origin", "https://api.b.test"),
                ("access-control-request-method", "POST"),
                ("access-control-request-private-network", "true"),
            ],
        )
        .await;
    assert_eq!(r.status, 200, "{}\n{}", r.text(), proxy.stderr());
    assert_eq!(
        r.header("access-control-allow-origin"),
        Some("https://api.b.test")
    );
    assert_eq!(r.header("access-control-allow-methods"), Some("GET,POST"));
    assert_eq!(
        r.header("access-control-allow-headers"),
        Some("X-Custom,Authorization")
    );
    assert_eq!(r.header("access-control-max-age"), Some("3600"));
    assert_eq!(r.header("access-control-allow-credentials"), Some("true"));
    assert_eq!(
        r.header("access-control-allow-private-network"),
        Some("true")
    );
    assert_eq!(r.header("vary"), Some("Origin"));
    assert_eq!(r.header("access-control-expose-headers"), None);
    assert!(r.body.is_empty());

    // Defaults: every method, the requested headers echoed, `*`.
    let r = proxy
        .request(
            "OPTIONS",
            "/open",
            &[
                ("origin", "http://x.test"),
                ("access-control-request-method", "PUT"),
                ("access-control-request-headers", "X-A, X-B"),
            ],
        )
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("access-control-allow-methods"),
        Some("GET,HEAD,PUT,PATCH,POST,DELETE,OPTIONS,TRACE,CONNECT")
    );
    assert_eq!(r.header("access-control-allow-headers"), Some("X-A, X-B"));
    // Credentials with `*`: the origin is echoed instead.
    assert_eq!(
        r.header("access-control-allow-origin"),
        Some("http://x.test")
    );
    assert_eq!(r.header("access-control-allow-credentials"), Some("true"));
    assert_eq!(r.header("access-control-max-age"), None);
    assert!(up.seen().is_empty(), "preflights never reach the upstream");

    // preflight_continue: the upstream answers, without the plugin's headers.
    let r = proxy
        .request(
            "OPTIONS",
            "/cont",
            &[
                ("origin", "http://x.test"),
                ("access-control-request-method", "GET"),
            ],
        )
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(up.last().method, "OPTIONS");
    assert_eq!(r.header("access-control-allow-origin"), None);
    assert_eq!(r.header("x-upstream-name"), Some("upstream"));
}

#[tokio::test]
async fn cors_headers_on_proxied_responses() {
    let up = Upstream::start().await;
    let proxy = Proxy::start(&config(&up, CORS)).await;
    for (origin, allowed) in [
        ("http://a.test", Some("http://a.test")),
        ("http://a.test:80", Some("http://a.test")),
        ("https://b.test", Some("https://b.test")),
        ("https://deep.b.test", Some("https://deep.b.test")),
        ("http://b.test", None),
        ("https://evil.test", None),
        ("https://b.test.evil.test", None),
    ] {
        let r = proxy.get("/strict", &[("origin", origin)]).await;
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.header("access-control-allow-origin"), allowed, "{origin}");
        assert_eq!(r.header("vary"), Some("Origin"), "{origin}");
        assert_eq!(
            r.header("access-control-expose-headers"),
            Some("X-Upstream-Name")
        );
        assert_eq!(r.header("access-control-allow-credentials"), Some("true"));
        assert_eq!(r.header("access-control-allow-methods"), None);
    }

    let r = proxy.get("/open", &[]).await;
    assert_eq!(r.header("access-control-allow-origin"), Some("*"));
    assert_eq!(r.header("access-control-allow-credentials"), None);
    // A single plain origin is always sent as configured.
    let r = proxy
        .get("/single", &[("origin", "http://other.test")])
        .await;
    assert_eq!(
        r.header("access-control-allow-origin"),
        Some("http://only.test")
    );
    // A non-preflight OPTIONS is proxied.
    let r = proxy
        .request("OPTIONS", "/open", &[("origin", "http://x.test")])
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(up.last().method, "OPTIONS");
    assert_eq!(
        r.header("access-control-allow-origin"),
        Some("http://x.test")
    );
}

#[tokio::test]
async fn correlation_id_generators_and_echo() {
    let up = Upstream::start().await;
    let proxy = Proxy::start(&config(
        &up,
        r#"
- name: default
  paths: [/default]
  plugins:
    - name: correlation-id
- name: uuid
  paths: [/uuid]
  plugins:
    - {name: correlation-id, config: {header_name: X-Request-Id, generator: uuid, echo_downstream: true}}
- name: tracker
  paths: [/tracker]
  plugins:
    - {name: correlation-id, config: {generator: tracker, echo_downstream: true}}
"#,
    ))
    .await;

    // uuid#counter, not echoed: one process uuid, a counter that grows.
    let mut ids = Vec::new();
    for _ in 0..3 {
        let r = proxy.get("/default", &[]).await;
        assert_eq!(r.status, 200, "{}\n{}", r.text(), proxy.stderr());
        assert_eq!(r.header("kong-request-id"), None);
        ids.push(up.last().header("kong-request-id").unwrap().to_string());
    }
    let parts: Vec<(&str, u64)> = ids
        .iter()
        .map(|id| {
            let (uuid, n) = id.split_once('#').unwrap_or_else(|| panic!("{id}"));
            assert_eq!(uuid.len(), 36, "{id}");
            (uuid, n.parse().unwrap())
        })
        .collect();
    assert!(
        parts
            .windows(2)
            .all(|w| w[0].0 == w[1].0 && w[0].1 < w[1].1),
        "{ids:?}"
    );

    let r = proxy.get("/uuid", &[]).await;
    let sent = up.last().header("x-request-id").unwrap().to_string();
    assert!(uuid::Uuid::parse_str(&sent).is_ok(), "{sent}");
    assert_eq!(r.header("x-request-id"), Some(sent.as_str()));
    let r = proxy.get("/uuid", &[]).await;
    assert_ne!(r.header("x-request-id"), Some(sent.as_str()));

    // An id the client sent is kept and echoed.
    let r = proxy.get("/uuid", &[("x-request-id", "client-id")]).await;
    assert_eq!(up.last().header("x-request-id"), Some("client-id"));
    assert_eq!(r.header("x-request-id"), Some("client-id"));

    let r = proxy.get("/tracker", &[]).await;
    let id = r.header("kong-request-id").unwrap().to_string();
    assert_eq!(up.last().header("kong-request-id"), Some(id.as_str()));
    let fields: Vec<&str> = id.split('-').collect();
    assert_eq!(fields.len(), 6, "{id}");
    assert_eq!(fields[0], "127.0.0.1");
    assert_eq!(fields[1], proxy.addr.port().to_string());
}

/// Kong 3.9's `redirect`: the status and Location of Kong's spec (45-redirect/02-access_spec),
/// the request's path and query kept only when asked, the upstream never called.
#[tokio::test]
async fn redirect_answers_with_location_and_never_calls_the_upstream() {
    let up = Upstream::start().await;
    let proxy = Proxy::start(&config(
        &up,
        r#"
- name: default
  paths: [/default]
  plugins:
    - name: redirect
      config: {location: "https://example.com"}
- name: custom
  paths: [/custom]
  plugins:
    - name: redirect
      config: {status_code: 302, location: "https://example.com/path?foo=bar"}
- name: keep
  paths: [/keep]
  plugins:
    - name: redirect
      config: {location: "https://example.com/some_path?foo=bar", keep_incoming_path: true}
"#,
    ))
    .await;
    let r = proxy.get("/default/x", &[]).await;
    assert_eq!(r.status, 301, "{}\n{}", r.text(), proxy.stderr());
    assert_eq!(r.header("location"), Some("https://example.com"));
    assert_eq!(r.text(), "redirecting");

    let r = proxy.get("/custom?keep=this", &[]).await;
    assert_eq!(r.status, 302);
    assert_eq!(
        r.header("location"),
        Some("https://example.com/path?foo=bar")
    );

    let r = proxy.get("/keep/a/../b%41?keep=this", &[]).await;
    assert_eq!(r.status, 301);
    assert_eq!(
        r.header("location"),
        Some("https://example.com/keep/bA?keep=this"),
        "the normalised path and the raw query replace the location's"
    );
    let r = proxy.get("/keep/c", &[]).await;
    assert_eq!(r.header("location"), Some("https://example.com/keep/c"));
    assert!(up.seen().is_empty(), "{:?}", up.seen());
}

/// `location` is required and must be a URL; a status outside 100–599 is refused.
#[test]
fn redirect_config_is_checked() {
    for (conf, expected) in [
        ("{}", "config.location: required field missing"),
        ("{location: \"not a url\"}", "config.location"),
        (
            "{location: \"https://example.com\", status_code: 600}",
            "config.status_code: value should be between 100 and 599",
        ),
    ] {
        let text =
            format!("_format_version: \"3.0\"\nplugins:\n  - name: redirect\n    config: {conf}\n");
        let (ok, err) = common::check_file(&text, "kong.yaml");
        assert!(!ok, "{conf} was accepted");
        assert!(err.contains(expected), "{conf}: {err}");
    }
}
