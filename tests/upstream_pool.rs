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

/// Reads one request header from `conn` and answers it, keeping the connection open.
async fn answer(conn: &mut TcpStream) {
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
    conn.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        .await
        .expect("write");
}

/// One request through the proxy, answered on the next connection the upstream accepts.
async fn request_on_new_connection(proxy: &Proxy, upstream: &TcpListener) -> TcpStream {
    let serve = async {
        let (mut conn, _) = timeout(BOUND, upstream.accept())
            .await
            .expect("a connection within the bound")
            .expect("accept");
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
