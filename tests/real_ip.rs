//! The client behind trusted proxies (Kong's trusted_ips, real_ip_header, real_ip_recursive)
//! and PROXY protocol v1/v2 listeners: what the upstream, plugins and the PDK see.

mod common;

use std::time::{Duration, Instant};

use common::{empty_schema, free_port, render, Proxy, Upstream};
use sluice::plugins::lua::embed;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A Lua plugin that reports what the PDK says about the client in upstream request headers,
/// and ip-restriction denying 6.6.6.6.
fn config(up: &Upstream) -> String {
    let handler = r#"
local P = { PRIORITY = 1000, VERSION = "0.1" }
function P:access(conf)
  local set = kong.service.request.set_header
  set("x-pdk-ip", kong.client.get_ip())
  set("x-pdk-forwarded-ip", kong.client.get_forwarded_ip())
  set("x-pdk-forwarded-port", tostring(kong.client.get_forwarded_port()))
  set("x-pdk-trusted", tostring(kong.ip.is_trusted(kong.client.get_ip())))
  set("x-pdk-scheme", kong.request.get_forwarded_scheme())
  set("x-pdk-pp", tostring(ngx.var.proxy_protocol_addr))
end
return P
"#;
    let mut cfg = String::from("_format_version: \"3.0\"\ncustom_plugins:\n");
    cfg.push_str(&embed::render("who", handler, &empty_schema("who"), false));
    cfg.push_str(&render(
        "services:\n  - name: s\n    url: http://{upstream}\n    routes:\n      - {name: r, paths: [/], plugins: [{name: who}, {name: ip-restriction, config: {deny: [6.6.6.6]}}]}\n",
        &[up],
    ));
    cfg
}

#[tokio::test]
async fn untrusted_peers_cannot_claim_an_address() {
    let up = Upstream::start().await;
    let proxy = Proxy::start(&config(&up)).await;
    let r = proxy
        .get(
            "/",
            &[
                ("x-forwarded-for", "6.6.6.6"),
                ("x-real-ip", "6.6.6.6"),
                ("x-forwarded-proto", "https"),
            ],
        )
        .await;
    assert_eq!(r.status, 200, "ip-restriction sees the peer: {}", r.text());
    let seen = up.last();
    assert_eq!(seen.header("x-real-ip"), Some("127.0.0.1"));
    assert_eq!(seen.header("x-forwarded-for"), Some("6.6.6.6, 127.0.0.1"));
    assert_eq!(
        seen.header("x-forwarded-proto"),
        Some("http"),
        "not from an untrusted peer"
    );
    assert_eq!(seen.header("x-pdk-forwarded-ip"), Some("127.0.0.1"));
    assert_eq!(seen.header("x-pdk-trusted"), Some("false"));
    assert_eq!(seen.header("x-pdk-scheme"), Some("http"));
}

#[tokio::test]
async fn trusted_proxies_name_the_client_non_recursive_and_recursive() {
    let up = Upstream::start().await;
    let args = [
        "--trusted-ips",
        "127.0.0.1,10.0.0.0/8",
        "--real-ip-header",
        "X-Forwarded-For",
    ];
    let proxy = Proxy::start_with(&config(&up), &args).await;
    let r = proxy
        .get(
            "/",
            &[
                ("x-forwarded-for", "3.3.3.3, 10.1.1.1:8080"),
                ("x-forwarded-proto", "https"),
            ],
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let seen = up.last();
    // Not recursive: the last entry, trusted or not.
    assert_eq!(seen.header("x-real-ip"), Some("10.1.1.1"));
    assert_eq!(
        seen.header("x-forwarded-for"),
        Some("3.3.3.3, 10.1.1.1:8080, 127.0.0.1")
    );
    assert_eq!(
        seen.header("x-forwarded-proto"),
        Some("https"),
        "a trusted proxy's"
    );
    assert_eq!(seen.header("x-pdk-ip"), Some("127.0.0.1"));
    assert_eq!(seen.header("x-pdk-forwarded-ip"), Some("10.1.1.1"));
    assert_eq!(seen.header("x-pdk-forwarded-port"), Some("8080"));
    assert_eq!(seen.header("x-pdk-trusted"), Some("true"));
    assert_eq!(seen.header("x-pdk-scheme"), Some("https"));
    // The named client is what ip-restriction judges.
    let r = proxy.get("/", &[("x-forwarded-for", "6.6.6.6")]).await;
    assert_eq!(r.status, 403, "{}", r.text());

    let recursive = [
        "--trusted-ips",
        "127.0.0.1,10.0.0.0/8",
        "--real-ip-header",
        "x-forwarded-for",
        "--real-ip-recursive",
        "on",
    ];
    let proxy = Proxy::start_with(&config(&up), &recursive).await;
    let r = proxy
        .get("/", &[("x-forwarded-for", "6.6.6.6, 3.3.3.3, 10.1.1.1")])
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(
        up.last().header("x-real-ip"),
        Some("3.3.3.3"),
        "trusted hops skipped"
    );
    assert_eq!(
        up.last().header("x-pdk-forwarded-port"),
        Some("nil"),
        "no port given"
    );
    let r = proxy
        .get("/", &[("x-forwarded-for", "1.1.1.1, 6.6.6.6, 10.0.0.2")])
        .await;
    assert_eq!(r.status, 403);
}

#[tokio::test]
async fn rate_limits_count_each_forwarded_client() {
    let up = Upstream::start().await;
    let cfg = render(
        "_format_version: \"3.0\"\nservices:\n  - name: s\n    url: http://{upstream}\n    routes:\n      - {name: r, paths: [/], plugins: [{name: rate-limiting, config: {day: 1, limit_by: ip}}]}\n",
        &[&up],
    );
    let proxy = Proxy::start_with(&cfg, &["--trusted-ips", "127.0.0.1"]).await;
    assert_eq!(
        proxy.get("/", &[("x-real-ip", "1.1.1.1")]).await.status,
        200
    );
    assert_eq!(
        proxy.get("/", &[("x-real-ip", "2.2.2.2")]).await.status,
        200
    );
    assert_eq!(
        proxy.get("/", &[("x-real-ip", "1.1.1.1")]).await.status,
        429
    );
}

/// One request over a new connection to `port` that starts with `preamble`; the raw response.
async fn raw(port: u16, preamble: &[u8]) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut stream = loop {
        match tokio::net::TcpStream::connect(("127.0.0.1", port)).await {
            Ok(s) => break s,
            Err(e) => {
                assert!(Instant::now() < deadline, "connect: {e}");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    };
    let mut msg = preamble.to_vec();
    msg.extend_from_slice(b"GET / HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n");
    stream.write_all(&msg).await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

/// A PROXY protocol v2 header for TCP over IPv6 from `src` port `sport`.
fn v2_header(src: std::net::Ipv6Addr, sport: u16) -> Vec<u8> {
    let mut h = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
    h.push(0x21); // version 2, PROXY
    h.push(0x21); // TCP over IPv6
    h.extend_from_slice(&36u16.to_be_bytes());
    h.extend_from_slice(&src.octets());
    h.extend_from_slice(&std::net::Ipv6Addr::LOCALHOST.octets());
    h.extend_from_slice(&sport.to_be_bytes());
    h.extend_from_slice(&80u16.to_be_bytes());
    h
}

#[tokio::test]
async fn proxy_protocol_listeners_v1_and_v2() {
    let up = Upstream::start().await;
    let pp = free_port();
    let listen = format!("127.0.0.1:{pp} proxy_protocol");
    let args = [
        "--listen",
        &listen,
        "--trusted-ips",
        "127.0.0.1",
        "--real-ip-header",
        "proxy_protocol",
    ];
    let proxy = Proxy::start_with(&config(&up), &args).await;

    let r = raw(pp, b"PROXY TCP4 203.0.113.7 127.0.0.1 5555 80\r\n").await;
    assert!(r.starts_with("HTTP/1.1 200"), "{r}");
    let seen = up.last();
    assert_eq!(seen.header("x-real-ip"), Some("203.0.113.7"));
    assert_eq!(seen.header("x-pdk-forwarded-port"), Some("5555"));
    assert_eq!(seen.header("x-pdk-pp"), Some("203.0.113.7"));
    assert_eq!(
        seen.header("x-pdk-ip"),
        Some("127.0.0.1"),
        "the balancer stays the peer"
    );

    let src: std::net::Ipv6Addr = "2001:db8::7".parse().unwrap();
    let r = raw(pp, &v2_header(src, 4444)).await;
    assert!(r.starts_with("HTTP/1.1 200"), "{r}");
    assert_eq!(up.last().header("x-real-ip"), Some("2001:db8::7"));

    // Without a header the connection is closed; the plain listener does not expect one.
    let before = up.seen().len();
    let r = raw(pp, b"").await;
    assert!(!r.contains("200"), "{r}");
    assert_eq!(up.seen().len(), before);
    let r = proxy.get("/", &[]).await;
    assert_eq!(r.status, 200);
    assert_eq!(up.last().header("x-pdk-pp"), Some("nil"));
}

#[tokio::test]
async fn bad_settings_fail_at_startup() {
    for (args, says) in [
        (&["--trusted-ips", "10.0.0.0/33"][..], "trusted_ips"),
        (&["--real-ip-header", "bad header"][..], "real_ip_header"),
        (&["--real-ip-recursive", "maybe"][..], "expected on or off"),
        (
            &["--listen", "127.0.0.1:0 proxy_protocl"][..],
            "unknown listen flag",
        ),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let err_path = dir.path().join("stderr");
        let mut child = std::process::Command::new(common::binary())
            .args([
                "--config",
                "kong.yaml.example",
                "--admin-listen",
                "off",
                "--listen-tls",
                "off",
            ])
            .args(args)
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(&err_path).unwrap())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("{args:?}: still running");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        assert!(!status.success(), "{args:?}");
        let err = std::fs::read_to_string(&err_path).unwrap();
        assert!(err.contains(says), "{args:?}: {err}");
    }
}

#[tokio::test]
async fn conditions_and_the_log_serializer_see_the_forwarded_client() {
    let up = Upstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("access.log");
    let cfg = render(
        &format!(
            r#"_format_version: "3.0"
services:
  - name: s
    url: http://{{upstream}}
    routes:
      - name: r
        paths: [/]
        plugins:
          - name: request-termination
            condition: 'net.src.ip == "4.4.4.4"'
            config: {{status_code: 418}}
          - name: file-log
            config: {{path: {}}}
"#,
            log.display()
        ),
        &[&up],
    );
    let proxy = Proxy::start_with(&cfg, &["--trusted-ips", "127.0.0.0/8"]).await;
    assert_eq!(
        proxy.get("/", &[("x-real-ip", "4.4.4.4")]).await.status,
        418
    );
    assert_eq!(
        proxy.get("/", &[("x-real-ip", "5.5.5.5")]).await.status,
        200
    );
    assert_eq!(proxy.get("/", &[]).await.status, 200);
    let deadline = Instant::now() + Duration::from_secs(10);
    let lines: Vec<serde_json::Value> = loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        if lines.len() >= 3 {
            break lines;
        }
        assert!(Instant::now() < deadline, "{lines:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let mut ips: Vec<&str> = lines
        .iter()
        .map(|l| l["client_ip"].as_str().unwrap())
        .collect();
    ips.sort();
    assert_eq!(ips, ["127.0.0.1", "4.4.4.4", "5.5.5.5"]);
}

/// Kong's ip-restriction spec (spec/03-plugins/17-ip-restriction, "X-Forwarded-For"): every
/// peer trusted, X-Forwarded-For, recursive; `allow: [127.0.0.4]`.
#[tokio::test]
async fn kongs_ip_restriction_x_forwarded_for_cases() {
    let up = Upstream::start().await;
    let cfg = render(
        "_format_version: \"3.0\"\nservices:\n  - name: s\n    url: http://{upstream}\n    routes:\n      - {name: r, paths: [/], plugins: [{name: ip-restriction, config: {allow: [127.0.0.4]}}]}\n",
        &[&up],
    );
    let args = [
        "--trusted-ips",
        "0.0.0.0/0, ::/0",
        "--real-ip-header",
        "X-Forwarded-For",
        "--real-ip-recursive",
        "on",
    ];
    let proxy = Proxy::start_with(&cfg, &args).await;
    let status = |xff: Option<&'static str>| {
        let proxy = &proxy;
        async move {
            let headers: Vec<(&str, &str)> =
                xff.map(|v| ("x-forwarded-for", v)).into_iter().collect();
            proxy.get("/", &headers).await.status
        }
    };
    assert_eq!(status(None).await, 403);
    assert_eq!(status(Some("127.0.0.3")).await, 403);
    assert_eq!(status(Some("127.0.0.4")).await, 200);
    assert_eq!(
        status(Some("127.0.0.4, 127.0.0.3")).await,
        200,
        "all trusted: the leftmost"
    );
}

/// An https-only route behind a trusted proxy that terminated TLS: its X-Forwarded-Proto
/// counts (Kong's forwarded_proto); from anyone else it does not.
#[tokio::test]
async fn https_only_routes_accept_a_trusted_proxys_forwarded_proto() {
    let up = Upstream::start().await;
    let cfg = render(
        "_format_version: \"3.0\"\nservices:\n  - name: s\n    url: http://{upstream}\n    routes:\n      - {name: r, paths: [/], protocols: [https]}\n",
        &[&up],
    );
    let https = [("x-forwarded-proto", "https")];
    let trusting = Proxy::start_with(&cfg, &["--trusted-ips", "127.0.0.1"]).await;
    assert_eq!(trusting.get("/", &https).await.status, 200);
    assert_eq!(trusting.get("/", &[]).await.status, 426);
    let untrusting = Proxy::start(&cfg).await;
    assert_eq!(untrusting.get("/", &https).await.status, 426);
}
