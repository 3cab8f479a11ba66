//! Bundled guard plugins end to end: ip-restriction and request-size-limiting.

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::{render, Proxy, Upstream};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const CONFIG: &str = r#"_format_version: "3.0"
services:
  - name: s
    url: http://{upstream}
    routes:
      - name: allow-loopback
        paths: [/allow-loopback]
        plugins: [{name: ip-restriction, config: {allow: [127.0.0.0/8]}}]
      - name: allow-other
        paths: [/allow-other]
        plugins: [{name: ip-restriction, config: {allow: [10.0.0.0/8, "192.168.1.1", "::1"]}}]
      - name: deny-client
        paths: [/deny-client]
        plugins:
          - name: ip-restriction
            config: {deny: ["127.0.0.1"], status: 401, message: "go away"}
      - name: deny-other
        paths: [/deny-other]
        plugins: [{name: ip-restriction, config: {deny: [10.0.0.0/8]}}]
      - name: deny-wins
        paths: [/deny-wins]
        plugins: [{name: ip-restriction, config: {allow: [0.0.0.0/0], deny: [127.0.0.0/24]}}]
      - name: ten-bytes
        paths: [/ten-bytes]
        plugins: [{name: request-size-limiting, config: {allowed_payload_size: 10, size_unit: bytes}}]
      - name: one-kb
        paths: [/one-kb]
        plugins: [{name: request-size-limiting, config: {allowed_payload_size: 1, size_unit: kilobytes}}]
      - name: default-size
        paths: [/default-size]
        plugins: [{name: request-size-limiting}]
      - name: need-length
        paths: [/need-length]
        plugins:
          - name: request-size-limiting
            config: {allowed_payload_size: 10, size_unit: bytes, require_content_length: true}
"#;

async fn start() -> (Upstream, Proxy) {
    let up = Upstream::start().await;
    let proxy = Proxy::start(&render(CONFIG, &[&up])).await;
    (up, proxy)
}

/// Sends `head` and then `body` on a raw connection and returns the status code of the answer.
async fn raw_status(proxy: &Proxy, head: &str, body: &[u8]) -> u16 {
    let fut = async {
        let mut s = tokio::net::TcpStream::connect(proxy.addr).await.unwrap();
        s.write_all(head.as_bytes()).await.unwrap();
        s.write_all(body).await.unwrap();
        let mut out = Vec::new();
        s.read_to_end(&mut out).await.unwrap();
        let text = String::from_utf8_lossy(&out).into_owned();
        let status = text.split(' ').nth(1).and_then(|c| c.parse().ok());
        status.unwrap_or_else(|| panic!("no status line in {text:?}"))
    };
    tokio::time::timeout(Duration::from_secs(30), fut)
        .await
        .expect("raw request timed out")
}

#[tokio::test]
async fn ip_restriction_allows_and_denies_by_address_and_cidr() {
    let (up, proxy) = start().await;
    assert_eq!(proxy.get("/allow-loopback", &[]).await.status, 200);

    let r = proxy.get("/allow-other", &[]).await;
    assert_eq!(r.status, 403, "{}", r.text());
    assert_eq!(r.json()["message"], "IP address not allowed: 127.0.0.1");

    let r = proxy.get("/deny-client", &[]).await;
    assert_eq!(r.status, 401);
    assert_eq!(r.json()["message"], "go away");
    assert_eq!(proxy.get("/deny-other", &[]).await.status, 200);
    let r = proxy.get("/deny-wins", &[]).await;
    assert_eq!(r.status, 403, "deny is checked before allow");

    // X-Forwarded-For and X-Real-IP are not trusted: the connection's address counts.
    for (path, status) in [
        ("/allow-other", 403),
        ("/deny-other", 200),
        ("/deny-client", 401),
    ] {
        let headers = [("x-forwarded-for", "10.1.2.3"), ("x-real-ip", "10.1.2.3")];
        let r = proxy.get(path, &headers).await;
        assert_eq!(r.status, status, "{path}");
    }
    let paths: Vec<String> = up.seen().iter().map(|s| s.uri.clone()).collect();
    assert_eq!(
        paths.len(),
        3,
        "only allowed requests were proxied: {paths:?}"
    );
}

#[tokio::test]
async fn request_size_limiting_refuses_large_bodies() {
    let (up, proxy) = start().await;
    let post = |path: &'static str, len: usize| {
        let proxy = &proxy;
        async move {
            proxy
                .request_body("POST", path, &[], Bytes::from(vec![b'x'; len]))
                .await
        }
    };
    let r = post("/ten-bytes", 10).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(up.last().body.len(), 10);
    let r = post("/ten-bytes", 11).await;
    assert_eq!(r.status, 413);
    assert_eq!(r.json()["message"], "Request size limit exceeded");

    assert_eq!(post("/one-kb", 1024).await.status, 200);
    assert_eq!(post("/one-kb", 1025).await.status, 413);
    // 128 megabytes by default; only the declared length is compared.
    assert_eq!(post("/default-size", 100_000).await.status, 200);
    let big = "POST /default-size HTTP/1.1\r\nHost: x\r\nContent-Length: 134217729\r\nConnection: close\r\n\r\n";
    assert_eq!(raw_status(&proxy, big, b"").await, 413);

    // A client waiting for 100-continue gets 417.
    let head = "POST /ten-bytes HTTP/1.1\r\nHost: x\r\nContent-Length: 11\r\nExpect: 100-continue\r\nConnection: close\r\n\r\n";
    assert_eq!(raw_status(&proxy, head, b"").await, 417);
    // No body at all (no Content-Length) passes.
    assert_eq!(proxy.get("/ten-bytes", &[]).await.status, 200);

    // Regression: a chunked body (no Content-Length) is counted while it streams.
    let head = "POST /ten-bytes HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n";
    let small = raw_status(&proxy, head, b"5\r\nhello\r\n0\r\n\r\n").await;
    assert_eq!(small, 200);
    let over = b"6\r\nhello \r\n6\r\nworld!\r\n0\r\n\r\n";
    assert_eq!(raw_status(&proxy, head, over).await, 413);
}

#[tokio::test]
async fn request_size_limiting_can_require_a_content_length() {
    let (up, proxy) = start().await;
    let r = proxy.get("/need-length", &[]).await;
    assert_eq!(r.status, 411);
    assert_eq!(
        r.json()["message"],
        "A valid Content-Length header is required"
    );
    let r = proxy
        .request_body("POST", "/need-length", &[], Bytes::from_static(b"hello"))
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(&up.last().body[..], b"hello");

    // A chunked body has no length to require (as in Kong).
    let head = "POST /need-length HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n";
    assert_eq!(
        raw_status(&proxy, head, b"5\r\nhello\r\n0\r\n\r\n").await,
        200
    );
    assert_eq!(&up.last().body[..], b"hello");
}

fn check(text: &str) -> (bool, String) {
    common::check_file(text, "guard.yaml")
}

#[test]
fn invalid_guard_configs_are_located_errors() {
    let (ok, stderr) = check(
        r#"_format_version: "3.0"
routes:
  - {name: r, paths: [/]}
plugins:
  - name: ip-restriction
    config:
      allow: ["10.0.0.0/8", 10.0.0.0/33, "not-an-ip"]
      status: 200
  - name: ip-restriction
    route: r
    config: {message: "no lists"}
  - name: request-size-limiting
    config:
      size_unit: gigabytes
      allowed_payload_size: "big"
"#,
    );
    assert!(!ok, "{stderr}");
    // Array elements are named 1-based, as in Kong's error tables.
    let expect = [
        "plugins[0] (ip-restriction, global): config.allow[2]: invalid ip or cidr range: '10.0.0.0/33'",
        "plugins[0] (ip-restriction, global): config.allow[3]: invalid ip or cidr range: 'not-an-ip'",
        ":8:15: plugins[0] (ip-restriction, global): config.status: value should be between 400 and 599",
        ":9:5: plugins[1] (ip-restriction on route \"r\"): config: at least one of these fields must be non-empty: 'config.allow', 'config.deny'",
        ":14:18: plugins[2] (request-size-limiting, global): config.size_unit: expected one of: megabytes, kilobytes, bytes",
        ":15:29: plugins[2] (request-size-limiting, global): config.allowed_payload_size: expected an integer",
    ];
    for e in expect {
        assert!(stderr.contains(e), "missing {e:?} in:\n{stderr}");
    }
}
