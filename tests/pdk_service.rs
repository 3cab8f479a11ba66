//! `kong.service.request` and `kong.service.response` checked against what the upstream
//! received and what the client got (issue #12). Kong's own tests for these modules
//! (t/01-pdk/06-service-request, 07-service-response) need mock upstream servers, which the
//! conformance tool cannot translate; these are the equivalent cases, one route per case.

mod common;

use common::{empty_schema, render, Proxy, Upstream};
use sluice::plugins::lua::embed;

/// A plugin that runs `code` in access and lets the request through.
fn access(code: &str) -> String {
    format!("local P = {{ PRIORITY = 1, VERSION = \"1\" }}\nfunction P:access(conf)\n  {code}\nend\nreturn P\n")
}

/// A config with one route `/<name>` per case, each with its own plugin.
fn config(up: &Upstream, cases: &[(&str, String)]) -> String {
    let mut cfg = String::from("_format_version: \"3.0\"\ncustom_plugins:\n");
    let mut routes = String::new();
    for (name, handler) in cases {
        cfg.push_str(&embed::render(name, handler, &empty_schema(name), false));
        routes.push_str(&format!(
            "      - {{name: {name}, paths: [/{name}], plugins: [{{name: {name}}}]}}\n"
        ));
    }
    cfg.push_str(&render(
        "services:\n  - name: s\n    url: http://{upstream}\n    routes:\n",
        &[up],
    ));
    cfg.push_str(&routes);
    cfg
}

#[tokio::test]
async fn service_request_setters_change_what_the_upstream_receives() {
    let up = Upstream::start().await;
    let cases = vec![
        (
            "path",
            access("kong.service.request.set_path('/new/a b/%41/\u{e9}')"),
        ),
        (
            "raw-query",
            access("kong.service.request.set_raw_query('x=1&y=%20')"),
        ),
        (
            "query",
            access("kong.service.request.set_query({ foo = 'hello world', a = true, aa = { 'zzz', true } })"),
        ),
        ("method", access("kong.service.request.set_method('PUT')")),
        (
            "headers",
            access("kong.service.request.set_header('X-One', 'a') kong.service.request.add_header('X-Many', 'x') kong.service.request.add_header('X-Many', 'y') kong.service.request.clear_header('X-Drop') kong.service.request.set_headers({ ['X-Set'] = { 'p', 'q' } })"),
        ),
        (
            "header-values",
            access("kong.service.request.set_header('X-Int', 42) kong.service.request.add_header('X-Int', 7) kong.service.request.set_header('X-Float', 1.5) kong.service.request.set_header('X-Bool', true) kong.service.request.set_header('X-Text', 'caf\u{e9}') kong.response.set_header('X-R', 2.5) kong.response.add_header('X-R', false)"),
        ),
        (
            "host",
            access("kong.service.request.set_header('Host', 'example.test')"),
        ),
        (
            "raw-body",
            access("kong.service.request.set_raw_body('replaced')"),
        ),
        (
            "form",
            access("assert(kong.service.request.set_body({ foo = 'hello world', a = true, aa = { 'zzz', true, true, 'aaa' }, zzz = 'goodbye world' }, 'application/x-www-form-urlencoded'))"),
        ),
        (
            "json",
            access("assert(kong.service.request.set_body({ foo = 'hello world', n = 1 }, 'application/json'))"),
        ),
        (
            "multipart",
            access("assert(kong.service.request.set_body({ field = 'value' }, 'multipart/form-data'))"),
        ),
    ];
    let proxy = Proxy::start(&config(&up, &cases)).await;
    let send = |target: &'static str, headers: Vec<(&'static str, &'static str)>| {
        let addr = proxy.addr;
        async move {
            common::send(
                addr,
                "POST",
                target,
                &headers,
                bytes::Bytes::from_static(b"original"),
            )
            .await
        }
    };

    assert_eq!(send("/path", vec![]).await.status, 200);
    // Kong escapes what is not a URI character, byte by byte; escapes given stay.
    assert_eq!(up.last().uri, "/new/a%20b/%41/%C3%A9");

    send("/raw-query?old=1", vec![]).await;
    assert_eq!(up.last().uri, "/?x=1&y=%20");

    send("/query?old=1", vec![]).await;
    // Each argument encoded on its own, then sorted (Kong's order); booleans are bare keys.
    assert_eq!(up.last().uri, "/?a&aa=zzz&aa&foo=hello%20world");

    send("/method", vec![]).await;
    assert_eq!(up.last().method, "PUT");

    send("/headers", vec![("x-drop", "gone"), ("x-one", "old")]).await;
    let seen = up.last();
    assert_eq!(seen.headers["x-one"], vec!["a"]);
    assert_eq!(seen.headers["x-many"], vec!["x", "y"]);
    assert_eq!(seen.headers["x-set"], vec!["p", "q"]);
    assert!(!seen.headers.contains_key("x-drop"));

    // Numbers and booleans as Lua's tostring writes them, strings as given.
    let r = send("/header-values", vec![]).await;
    let seen = up.last();
    assert_eq!(seen.headers["x-int"], vec!["42", "7"]);
    assert_eq!(seen.headers["x-float"], vec!["1.5"]);
    assert_eq!(seen.headers["x-bool"], vec!["true"]);
    assert_eq!(seen.header("x-text"), Some("caf\u{e9}"));
    let values: Vec<_> = r.headers.get_all("x-r").iter().collect();
    assert_eq!(values, ["2.5", "false"]);

    send("/host", vec![]).await;
    assert_eq!(up.last().header("host"), Some("example.test"));

    send("/raw-body", vec![("content-type", "text/plain")]).await;
    let seen = up.last();
    assert_eq!(&seen.body[..], b"replaced");
    assert_eq!(seen.header("content-length"), Some("8"));

    send("/form", vec![]).await;
    let seen = up.last();
    assert_eq!(
        String::from_utf8_lossy(&seen.body),
        "a&aa=zzz&aa&aa&aa=aaa&foo=hello%20world&zzz=goodbye%20world"
    );
    assert_eq!(seen.header("content-length"), Some("59"));
    assert_eq!(
        seen.header("content-type"),
        Some("application/x-www-form-urlencoded")
    );

    send("/json", vec![]).await;
    let seen = up.last();
    assert_eq!(seen.header("content-type"), Some("application/json"));
    let body: serde_json::Value = serde_json::from_slice(&seen.body).expect("json body");
    assert_eq!(body, serde_json::json!({ "foo": "hello world", "n": 1 }));
    assert_eq!(
        seen.header("content-length"),
        Some(&*seen.body.len().to_string())
    );

    send("/multipart", vec![]).await;
    let seen = up.last();
    let ctype = seen.header("content-type").unwrap_or_default().to_string();
    let boundary = ctype
        .strip_prefix("multipart/form-data; boundary=")
        .unwrap_or_else(|| panic!("boundary in {ctype}"));
    let body = String::from_utf8_lossy(&seen.body);
    assert!(body.contains(&format!("--{boundary}")), "{body}");
    assert!(
        body.contains("Content-Disposition: form-data; name=\"field\"\r\n\r\nvalue"),
        "{body}"
    );
}

/// (name, Lua returning the answer, expected)
const ERRORS: &[(&str, &str, &str)] = &[
    (
        "path-type",
        "local ok, err = pcall(kong.service.request.set_path, 1) return err",
        "path must be a string",
    ),
    (
        "path-slash",
        "local ok, err = pcall(kong.service.request.set_path, 'foo') return err",
        "path must start with /",
    ),
    (
        "body-args",
        "local ok, err = pcall(kong.service.request.set_body) return err",
        "args must be a table",
    ),
    (
        "body-mime",
        "local ok, err = pcall(kong.service.request.set_body, {}, 2) return err",
        "mime must be a string",
    ),
    (
        "body-unsupported",
        "local ok, err = pcall(kong.service.request.set_body, {}, 'text/foo') return err",
        "unsupported content type text/foo",
    ),
    (
        "multipart-table",
        "local ok, err = pcall(kong.service.request.set_body, { a = { 'x' } }, 'multipart/form-data') return tostring(ok)",
        "false",
    ),
    (
        "authority",
        "local _, err = kong.service.request.set_header(':Authority', 'x') return err",
        "cannot set :authority pseudo-header on non-grpc requests",
    ),
];

#[tokio::test]
async fn service_request_setters_fail_as_kong_does() {
    let up = Upstream::start().await;
    let cases: Vec<(&str, String)> = ERRORS
        .iter()
        .map(|(name, code, _)| {
            (
                *name,
                access(&format!(
                    "local answer = (function() {code} end)() return kong.response.exit(200, tostring(answer))"
                )),
            )
        })
        .collect();
    let proxy = Proxy::start(&config(&up, &cases)).await;
    for (name, _, expected) in ERRORS {
        let r = proxy.get(&format!("/{name}"), &[]).await;
        assert_eq!(r.status, 200, "{name}: {}", r.text());
        assert_eq!(r.text(), *expected, "{name}");
    }
}

#[tokio::test]
async fn service_response_getters_read_the_upstream_answer() {
    let up = Upstream::start_named("named").await;
    let reader = r#"local P = { PRIORITY = 1, VERSION = "1" }
function P:header_filter(conf)
  local headers = kong.service.response.get_headers()
  local _, truncated = kong.service.response.get_headers(1)
  local ok, err = pcall(kong.service.response.get_headers, 1001)
  kong.response.set_header("x-got", table.concat({
    tostring(kong.service.response.get_status()),
    tostring(headers["X-Upstream-Name"]),
    tostring(headers.content_type),
    tostring(kong.service.response.get_header("x-upstream-name")),
    tostring(truncated),
    err,
  }, "|"))
end
return P
"#;
    let cases = vec![("reader", reader.to_string())];
    let proxy = Proxy::start(&config(&up, &cases)).await;
    let r = proxy.get("/reader/status/201", &[]).await;
    assert_eq!(r.status, 201);
    assert_eq!(
        r.header("x-got"),
        Some("201|named|application/json|named|truncated|max_headers must be <= 1000")
    );
}

/// `kong.response.set_header` ignores Transfer-Encoding in either spelling and any case, as
/// Kong does, and sets any other name, including one of the same length.
#[tokio::test]
async fn response_set_header_ignores_transfer_encoding() {
    let up = Upstream::start().await;
    let code = "kong.response.set_header('Transfer-Encoding', 'gzip') \
                kong.response.set_header('TRANSFER_ENCODING', 'gzip') \
                kong.response.set_header('X-Seventeen-Chars', 'v')";
    let cases = vec![("te", access(code))];
    let proxy = Proxy::start(&config(&up, &cases)).await;
    let r = proxy.get("/te", &[]).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("x-seventeen-chars"), Some("v"));
    assert_ne!(r.header("transfer-encoding"), Some("gzip"));
    assert_eq!(r.header("transfer_encoding"), None);
}
