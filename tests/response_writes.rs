//! How a response goes out to the client, over plain HTTP and TLS: vendor/pingora-core writes a
//! header and the body that came with it in one write (one TLS record instead of two). Whatever
//! the framing, the client must get the whole response, and a body the upstream streams must
//! reach the client piece by piece, not be held back until it ends.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use common::{free_port, Proxy};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use openssl::ssl::{SslConnector, SslMethod, SslVerifyMode};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;
use tokio::time::timeout;

const BOUND: Duration = Duration::from_secs(10);

/// What the raw upstream answers for each path; the `/stream-*` ones send their first part,
/// then wait for `go` before the rest.
fn answer(path: &str) -> (&'static [u8], Option<&'static [u8]>) {
    match path {
        "/length" => (b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello", None),
        "/chunked" => (
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n",
            None,
        ),
        "/empty" => (b"HTTP/1.1 204 No Content\r\n\r\n", None),
        "/stream-chunked" => (
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nfirst\r\n",
            Some(b"4\r\nlast\r\n0\r\n\r\n"),
        ),
        // The header and the first part of the body come in one batch: the gateway writes them
        // together, and must not keep them buffered until the rest comes.
        "/stream-length" => (
            b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nfirst",
            Some(b"last"),
        ),
        _ => (
            b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n",
            None,
        ),
    }
}

/// A keep-alive HTTP/1.1 upstream on loopback that answers by path (requests have no body).
async fn upstream(go: Arc<Notify>) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            let go = go.clone();
            tokio::spawn(async move {
                let mut seen = Vec::new();
                let mut buf = [0u8; 4096];
                loop {
                    let Some(end) = seen.windows(4).position(|w| w == b"\r\n\r\n") else {
                        match conn.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => seen.extend_from_slice(&buf[..n]),
                        }
                        continue;
                    };
                    let head = String::from_utf8_lossy(&seen[..end]).into_owned();
                    seen.drain(..end + 4);
                    let path = head.split(' ').nth(1).unwrap_or("/").to_string();
                    let (first, rest) = answer(&path);
                    if conn.write_all(first).await.is_err() {
                        return;
                    }
                    if let Some(rest) = rest {
                        go.notified().await;
                        if conn.write_all(rest).await.is_err() {
                            return;
                        }
                    }
                }
            });
        }
    });
    addr
}

/// A self-signed certificate and its key, as PEM files in `dir`.
fn cert_files(dir: &std::path::Path) -> (String, String) {
    let (crt, key) = common::self_signed_pems();
    let crt_path = dir.join("crt.pem");
    let key_path = dir.join("key.pem");
    std::fs::write(&crt_path, crt).unwrap();
    std::fs::write(&key_path, key).unwrap();
    (
        crt_path.display().to_string(),
        key_path.display().to_string(),
    )
}

/// GET `path` on `sender`'s connection: the response, its header read within the bound.
async fn get(
    sender: &mut hyper::client::conn::http1::SendRequest<Full<Bytes>>,
    path: &str,
) -> hyper::Response<hyper::body::Incoming> {
    let req = hyper::Request::get(path)
        .header("host", "x")
        .body(Full::new(Bytes::new()))
        .unwrap();
    timeout(BOUND, sender.send_request(req))
        .await
        .unwrap_or_else(|_| panic!("{path}: no response header within the bound"))
        .unwrap()
}

/// GETs each path on one keep-alive connection over `io` and checks the answers; the first
/// part of each `/stream-*` response must arrive before the upstream is told to send the rest.
async fn check_all<IO>(io: IO, go: &Notify, over: &str)
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
        .await
        .unwrap();
    tokio::spawn(conn);
    for (path, status, body) in [
        ("/length", 200, "hello"),
        ("/chunked", 200, "hello world"),
        ("/empty", 204, ""),
        ("/length", 200, "hello"),
    ] {
        let resp = get(&mut sender, path).await;
        assert_eq!(resp.status().as_u16(), status, "{over} {path}");
        let got = timeout(BOUND, resp.into_body().collect())
            .await
            .expect("the body within the bound")
            .unwrap()
            .to_bytes();
        assert_eq!(got, body.as_bytes(), "{over} {path}");
    }

    for path in ["/stream-chunked", "/stream-length"] {
        let mut body = get(&mut sender, path).await.into_body();
        let first = timeout(BOUND, body.frame())
            .await
            .unwrap_or_else(|_| panic!("{over} {path}: the first part was held back"))
            .expect("a frame")
            .unwrap();
        assert_eq!(first.into_data().unwrap(), "first", "{over} {path}");
        go.notify_one();
        let rest = timeout(BOUND, body.collect())
            .await
            .expect("the rest within the bound")
            .unwrap()
            .to_bytes();
        assert_eq!(rest, "last", "{over} {path}");
    }
}

#[tokio::test]
async fn responses_arrive_whole_and_streams_flow_over_http_and_tls() {
    let go = Arc::new(Notify::new());
    let up = upstream(go.clone()).await;
    let dir = tempfile::tempdir().unwrap();
    let (crt, key) = cert_files(dir.path());
    let tls: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let cfg = format!(
        "_format_version: \"3.0\"\nservices:\n  - name: s\n    url: http://{up}\n    routes: [{{name: r, paths: [/]}}]\n"
    );
    let proxy = Proxy::start_with(
        &cfg,
        &[
            "--listen-tls",
            &tls.to_string(),
            "--ssl-cert",
            &crt,
            "--ssl-cert-key",
            &key,
        ],
    )
    .await;

    let plain = TcpStream::connect(proxy.addr).await.unwrap();
    check_all(plain, &go, "http").await;

    let mut b = SslConnector::builder(SslMethod::tls()).unwrap();
    b.set_verify(SslVerifyMode::NONE);
    let ssl = b.build().configure().unwrap().into_ssl("x").unwrap();
    let tcp = TcpStream::connect(tls).await.unwrap();
    let mut stream = tokio_openssl::SslStream::new(ssl, tcp).unwrap();
    timeout(BOUND, std::pin::Pin::new(&mut stream).connect())
        .await
        .expect("a TLS handshake within the bound")
        .unwrap();
    check_all(stream, &go, "https").await;
}
