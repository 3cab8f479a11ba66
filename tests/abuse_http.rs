//! Issue #11, the HTTP layer: slow clients, pipelining, malformed and oversized requests,
//! smuggling-shaped framing and the connection cap, sent as raw bytes to the real binary on
//! loopback. After each case the proxy still serves other requests.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::{render, Proxy, Upstream};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn config(up: &Upstream) -> String {
    render(
        "_format_version: \"3.0\"\nservices:\n  - name: s\n    url: http://{upstream}\n    routes:\n      - {name: r, paths: [/]}\n",
        &[up],
    )
}

/// Writes `data` on a new connection and reads until the proxy closes it (bounded).
async fn exchange(addr: SocketAddr, data: &[u8]) -> String {
    let mut s = TcpStream::connect(addr).await.expect("connect");
    s.write_all(data).await.expect("write");
    read_to_close(&mut s, Duration::from_secs(20)).await
}

async fn read_to_close(s: &mut TcpStream, limit: Duration) -> String {
    let mut out = Vec::new();
    let _ = tokio::time::timeout(limit, s.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

fn responses(text: &str) -> usize {
    text.matches("HTTP/1.1 ").count()
}

async fn still_serves(proxy: &Proxy, after: &str) {
    let r = proxy.get("/still", &[]).await;
    assert_eq!(r.status, 200, "after {after}: {}", r.text());
}

#[tokio::test]
async fn issue_11_pipelined_requests_are_all_served_in_order() {
    let up = Upstream::start().await;
    let proxy = Proxy::start(&config(&up)).await;
    let three = b"GET /one HTTP/1.1\r\nHost: a\r\n\r\nGET /two HTTP/1.1\r\nHost: a\r\n\r\nGET /three HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n";
    let text = exchange(proxy.addr, three).await;
    assert_eq!(responses(&text), 3, "{text}");
    // Written as Kong writes them (`Via: 1.1 kong/3.x`, `X-Kong-Proxy-Latency: 0`).
    for field in [
        "Via: 1.1 sluice/",
        "X-Kong-Upstream-Latency: ",
        "X-Kong-Proxy-Latency: ",
    ] {
        let line = format!("\r\n{field}");
        assert_eq!(text.matches(&line).count(), 3, "{field} in {text}");
    }
    let uris: Vec<String> = up.seen().into_iter().map(|s| s.uri).collect();
    assert_eq!(uris, ["/one", "/two", "/three"]);

    let post_get = b"POST /post HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhelloGET /after HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n";
    let text = exchange(proxy.addr, post_get).await;
    assert_eq!(responses(&text), 2, "{text}");
    let seen = up.seen();
    let post = &seen[3];
    assert_eq!((post.method.as_str(), post.uri.as_str()), ("POST", "/post"));
    assert_eq!(&post.body[..], b"hello");
    assert_eq!(seen[4].uri, "/after");
}

#[tokio::test]
async fn issue_11_malformed_and_ambiguous_requests_get_kongs_400() {
    let up = Upstream::start().await;
    let proxy = Proxy::start(&config(&up)).await;
    let cases: &[(&str, &[u8])] = &[
        ("two spaces", b"GET  /ds  HTTP/1.1\r\nHost: a\r\n\r\n"),
        ("trailing space", b"GET /admin  HTTP/1.1\r\nHost: a\r\n\r\n"),
        ("space in target", b"GET /a b HTTP/1.1\r\nHost: a\r\n\r\n"),
        (
            "content-length with transfer-encoding",
            b"POST /smuggle HTTP/1.1\r\nHost: a\r\nContent-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nG",
        ),
        (
            "two Content-Lengths that differ",
            b"POST /cl HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nContent-Length: 5\r\n\r\nabcde",
        ),
        (
            "a Content-Length list that differs",
            b"POST /cl HTTP/1.1\r\nHost: a\r\nContent-Length: 3, 5\r\n\r\nabcde",
        ),
        (
            "the same Content-Length twice (nginx: duplicate header line)",
            b"POST /cl HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\nabc",
        ),
        (
            "a Content-Length list of one length",
            b"POST /cl HTTP/1.1\r\nHost: a\r\nContent-Length: 3, 3\r\n\r\nabc",
        ),
        (
            "a Content-Length that is not a number",
            b"POST /cl HTTP/1.1\r\nHost: a\r\nContent-Length: 3x\r\n\r\nabc",
        ),
        ("HTTP/1.1 without Host", b"GET /nohost HTTP/1.1\r\n\r\n"),
        ("invalid Host", b"GET /badhost HTTP/1.1\r\nHost: a b\r\n\r\n"),
        ("Host with a path", b"GET /badhost HTTP/1.1\r\nHost: a/b\r\n\r\n"),
        ("two Hosts", b"GET /hosts HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n"),
        ("not HTTP", b"\x16\x03\x01 hello\r\n\r\n"),
    ];
    for (name, bytes) in cases {
        let text = exchange(proxy.addr, bytes).await;
        assert!(text.starts_with("HTTP/1.1 400 "), "{name}: {text}");
        assert!(
            text.contains(r#"{"message":"Bad request"}"#),
            "{name}: {text}"
        );
        assert!(text.contains("\r\nServer: sluice/"), "{name}: {text}");
        assert!(!text.contains("Pingora"), "{name}: {text}");
        still_serves(&proxy, name).await;
    }
    let reached: Vec<String> = up
        .seen()
        .into_iter()
        .map(|s| s.uri)
        .filter(|u| u != "/still")
        .collect();
    assert!(reached.is_empty(), "reached the upstream: {reached:?}");
}

#[tokio::test]
async fn issue_11_oversized_headers_and_uris_are_refused_as_nginx_does() {
    let up = Upstream::start().await;
    let proxy = Proxy::start(&config(&up)).await;
    let big_line = format!(
        "GET /h HTTP/1.1\r\nHost: a\r\nX-Big: {}\r\n\r\n",
        "a".repeat(16_000)
    );
    let mut block = String::from("GET /b HTTP/1.1\r\nHost: a\r\n");
    for i in 0..16 {
        block.push_str(&format!("X-H{i}: {}\r\n", "a".repeat(4000)));
    }
    block.push_str("\r\n");
    let long_uri = format!("GET /u?{} HTTP/1.1\r\nHost: a\r\n\r\n", "a".repeat(20_000));
    for (name, req, status, message) in [
        (
            "16 KB header line",
            &big_line,
            400,
            "Request header or cookie too large",
        ),
        (
            "64 KB header block",
            &block,
            400,
            "Request header or cookie too large",
        ),
        ("20 KB URI", &long_uri, 414, "URI too long"),
    ] {
        let text = exchange(proxy.addr, req.as_bytes()).await;
        assert!(
            text.starts_with(&format!("HTTP/1.1 {status} ")),
            "{name}: {text}"
        );
        assert!(
            text.contains(&format!(r#"{{"message":"{message}"}}"#)),
            "{name}: {text}"
        );
        still_serves(&proxy, name).await;
    }
    assert!(up.seen().iter().all(|s| s.uri == "/still"));

    // The limits are flags.
    let roomy = Proxy::start_with(&config(&up), &["--large-client-header-buffers", "4 32k"]).await;
    let text = exchange(
        roomy.addr,
        big_line
            .replace("HTTP/1.1\r\n", "HTTP/1.1\r\nConnection: close\r\n")
            .as_bytes(),
    )
    .await;
    assert!(text.starts_with("HTTP/1.1 200 "), "{text}");
    assert_eq!(up.last().header("x-big").map(str::len), Some(16_000));
}

#[tokio::test]
async fn issue_11_slow_clients_are_timed_out_and_others_still_served() {
    let up = Upstream::start().await;
    let proxy = Proxy::start_with(
        &config(&up),
        &[
            "--client-header-timeout",
            "2",
            "--client-body-timeout",
            "2",
            "--keepalive-timeout",
            "2",
        ],
    )
    .await;
    let addr = proxy.addr;
    // 20 slowloris clients: a header byte every 300 ms, never finishing.
    let started = Instant::now();
    let slow: Vec<_> = (0..20)
        .map(|_| {
            tokio::spawn(async move {
                let mut s = TcpStream::connect(addr).await.expect("connect");
                let header = b"GET /slow HTTP/1.1\r\nHost: a\r\nX-Pad: ".repeat(4);
                for b in header {
                    if s.write_all(&[b]).await.is_err() {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(300)).await;
                }
                read_to_close(&mut s, Duration::from_secs(20)).await
            })
        })
        .collect();
    // While they trickle, other clients are served.
    still_serves(&proxy, "slowloris in progress").await;
    for task in slow {
        let text = task.await.expect("slow client");
        assert!(text.starts_with("HTTP/1.1 408 "), "{text}");
        assert!(text.contains(r#"{"message":"Request timeout"}"#), "{text}");
    }
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "{:?}",
        started.elapsed()
    );

    // A connection that never sends anything, and one idle after a request, are closed.
    let mut idle = TcpStream::connect(addr).await.expect("connect");
    assert_eq!(read_to_close(&mut idle, Duration::from_secs(20)).await, "");
    let mut kept = TcpStream::connect(addr).await.expect("connect");
    kept.write_all(b"GET /first HTTP/1.1\r\nHost: a\r\n\r\n")
        .await
        .expect("write");
    let text = read_to_close(&mut kept, Duration::from_secs(20)).await;
    assert_eq!(responses(&text), 1, "{text}");

    // A request body that stops arriving: 408.
    let text = exchange(
        addr,
        b"POST /body HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\nab",
    )
    .await;
    assert!(text.starts_with("HTTP/1.1 408 "), "{text}");
    still_serves(&proxy, "slow clients").await;
    assert!(!up.seen().iter().any(|s| s.uri == "/slow"));
}

#[tokio::test]
async fn issue_11_connections_beyond_the_cap_are_closed() {
    let up = Upstream::start().await;
    let proxy = Proxy::start_with(
        &config(&up),
        &["--workers", "1", "--max-connections-per-worker", "4"],
    )
    .await;
    // Four served keep-alive connections fill the worker. A connection the proxy was still
    // closing (start-up's readiness probe) may count for a moment and get one of them
    // refused under load (seen once in CI): open another then (bounded retries).
    let mut held = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while held.len() < 4 {
        let mut s = TcpStream::connect(proxy.addr).await.expect("connect");
        let mut buf = [0u8; 12];
        let answered = match s.write_all(b"GET /held HTTP/1.1\r\nHost: a\r\n\r\n").await {
            Ok(()) => s.read_exact(&mut buf).await.is_ok(),
            Err(_) => false,
        };
        if answered {
            assert_eq!(&buf, b"HTTP/1.1 200");
            held.push(s);
        } else {
            assert!(
                Instant::now() < deadline,
                "four connections were never served"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    let text = exchange(proxy.addr, b"GET /over HTTP/1.1\r\nHost: a\r\n\r\n").await;
    assert_eq!(text, "", "the fifth connection was served");
    drop(held);
    // Once they are gone, new connections are served again (bounded retries: the proxy
    // notices the closes asynchronously).
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let text = exchange(
            proxy.addr,
            b"GET /again HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
        )
        .await;
        if text.starts_with("HTTP/1.1 200") {
            break;
        }
        assert!(Instant::now() < deadline, "never served again");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        proxy.stderr().contains("connection cap"),
        "{}",
        proxy.stderr()
    );
}
