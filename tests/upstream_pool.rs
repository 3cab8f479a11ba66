//! The upstream keep-alive pool, seen from a raw loopback upstream that can close its end of an
//! idle connection and see whether the gateway closes its own (vendor/pingora-core's idle
//! sweeper, Kong's `upstream_keepalive_idle_timeout`).

mod common;

use std::time::{Duration, Instant};

use common::Proxy;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::timeout;

/// Longer than the sweeper's period (1 s) plus scheduling on a loaded CI machine.
const BOUND: Duration = Duration::from_secs(15);

fn config(upstream: std::net::SocketAddr) -> String {
    format!(
        r#"
_format_version: "3.0"
services:
  - name: s
    url: http://{upstream}
    routes: [{{name: r, paths: [/]}}]
"#
    )
}

/// Reads one request header from `conn` without answering it.
async fn read_request_header(conn: &mut TcpStream) {
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = timeout(BOUND, conn.read(&mut buf))
            .await
            .expect("a request within the bound")
            .expect("read");
        assert!(n > 0, "the gateway closed before sending a request");
        seen.extend_from_slice(&buf[..n]);
    }
}

/// The next connection the gateway opens to `upstream`.
async fn accept(upstream: &TcpListener) -> TcpStream {
    let (conn, _) = timeout(BOUND, upstream.accept())
        .await
        .expect("a connection within the bound")
        .expect("accept");
    conn
}

/// Reads one request header from `conn` and answers it, keeping the connection open.
async fn answer(conn: &mut TcpStream) {
    read_request_header(conn).await;
    conn.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        .await
        .expect("write");
}

/// One request through the proxy, answered on the next connection the upstream accepts.
async fn request_on_new_connection(proxy: &Proxy, upstream: &TcpListener) -> TcpStream {
    let serve = async {
        let mut conn = accept(upstream).await;
        answer(&mut conn).await;
        conn
    };
    let (reply, conn) = tokio::join!(proxy.get("/", &[]), serve);
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.text(), "ok");
    conn
}

/// Waits (bounded) for the gateway to close its end of `conn`.
async fn closed_by_gateway(conn: &mut TcpStream) -> bool {
    let mut buf = [0u8; 16];
    matches!(
        timeout(BOUND, conn.read(&mut buf)).await,
        Ok(Ok(0)) | Ok(Err(_))
    )
}

#[tokio::test]
async fn an_idle_connection_the_upstream_closes_is_closed_and_not_reused() {
    let upstream = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let proxy = Proxy::start(&config(upstream.local_addr().unwrap())).await;

    let mut first = request_on_new_connection(&proxy, &upstream).await;
    // The upstream ends the idle connection (as one with a shorter keep-alive timeout does):
    // the gateway must close its end too rather than hold it until a request picks it.
    first.shutdown().await.expect("shutdown");
    assert!(
        closed_by_gateway(&mut first).await,
        "the gateway kept an idle upstream connection its peer had closed"
    );
    // The next request opens a new connection.
    request_on_new_connection(&proxy, &upstream).await;
}

#[tokio::test]
async fn idle_connections_are_closed_after_the_keepalive_idle_timeout() {
    let upstream = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let proxy = Proxy::start_with(
        &config(upstream.local_addr().unwrap()),
        &["--upstream-keepalive-idle-timeout", "1"],
    )
    .await;

    let mut conn = request_on_new_connection(&proxy, &upstream).await;
    let answered = Instant::now();
    assert!(
        closed_by_gateway(&mut conn).await,
        "an idle upstream connection outlived its idle timeout"
    );
    assert!(
        answered.elapsed() >= Duration::from_millis(1000),
        "closed after {:?}, before the idle timeout",
        answered.elapsed()
    );
    request_on_new_connection(&proxy, &upstream).await;
}

/// A request without a body is proxied without the duplex pipes (vendor/pingora-proxy's
/// `proxy_1to1_bodyless`); it must still notice a client that goes away while the upstream is
/// slow, and give up the upstream connection rather than wait the service's 60 s read timeout.
#[tokio::test]
async fn a_client_gone_while_the_upstream_is_slow_closes_the_upstream_connection() {
    let upstream = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let proxy = Proxy::start(&config(upstream.local_addr().unwrap())).await;

    let mut client = TcpStream::connect(proxy.addr).await.expect("connect");
    client
        .write_all(b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .expect("write");
    let mut conn = accept(&upstream).await;
    read_request_header(&mut conn).await;
    drop(client);
    assert!(
        closed_by_gateway(&mut conn).await,
        "the gateway kept waiting for the upstream after its client went away"
    );
    request_on_new_connection(&proxy, &upstream).await;
}

/// A response that breaks off mid-body (an invalid chunk) on a connection the upstream keeps
/// open: the gateway must close that connection, not pool it, and the next request must go on
/// a new one.
#[tokio::test]
async fn a_response_broken_mid_body_is_not_pooled() {
    let upstream = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let proxy = Proxy::start(&config(upstream.local_addr().unwrap())).await;

    let serve = async {
        let mut conn = accept(&upstream).await;
        read_request_header(&mut conn).await;
        conn.write_all(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n")
            .await
            .expect("write");
        conn
    };
    let client = async {
        let mut s = TcpStream::connect(proxy.addr).await.expect("connect");
        s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .expect("write");
        let mut out = Vec::new();
        // The gateway ends the client's connection: the response cannot be completed.
        timeout(BOUND, s.read_to_end(&mut out))
            .await
            .expect("the gateway ends the client's connection within the bound")
            .ok();
        String::from_utf8_lossy(&out).into_owned()
    };
    let (mut conn, answer) = tokio::join!(serve, client);
    assert!(
        !answer.contains("zz"),
        "the broken chunk was forwarded: {answer}"
    );
    assert!(
        closed_by_gateway(&mut conn).await,
        "the gateway kept a connection whose response it could not read"
    );
    request_on_new_connection(&proxy, &upstream).await;
}
