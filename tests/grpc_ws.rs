//! gRPC (HTTP/2 with trailers, to an h2c upstream) and WebSocket (HTTP/1.1 upgrade) through the
//! proxy, against real loopback servers.

mod common;

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Buf, Bytes};
use common::free_port;
use http_body_util::BodyExt;
use hyper::body::{Body, Frame, Incoming};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// A body of fixed frames (data, then trailers).
struct Frames(VecDeque<Frame<Bytes>>);

impl Body for Frames {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        Poll::Ready(self.0.pop_front().map(Ok))
    }
}

/// One gRPC message: flag byte, big-endian length, payload.
fn grpc_frame(payload: &[u8]) -> Bytes {
    let mut out = vec![0u8];
    out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    out.extend_from_slice(payload);
    Bytes::from(out)
}

/// A gRPC server over h2c (prior knowledge): every call answers "hello, <request>" with
/// `grpc-status: 0` in the trailers, and echoes the `:path` in `x-method`.
async fn grpc_upstream() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let service =
                    hyper::service::service_fn(|req: hyper::Request<Incoming>| async move {
                        let path = req.uri().path().to_string();
                        let te = req.headers().get("te").cloned();
                        let body = req.into_body().collect().await.unwrap().to_bytes();
                        let name =
                            String::from_utf8_lossy(body.get(5..).unwrap_or_default()).into_owned();
                        let mut trailers = http::HeaderMap::new();
                        trailers.insert("grpc-status", "0".parse().unwrap());
                        trailers.insert("grpc-message", "ok".parse().unwrap());
                        let frames = VecDeque::from([
                            Frame::data(grpc_frame(format!("hello, {name}").as_bytes())),
                            Frame::trailers(trailers),
                        ]);
                        let mut resp = hyper::Response::new(Frames(frames));
                        let h = resp.headers_mut();
                        h.insert("content-type", "application/grpc".parse().unwrap());
                        h.insert("x-method", path.parse().unwrap());
                        if let Some(te) = te {
                            h.insert("x-te", te);
                        }
                        Ok::<_, std::convert::Infallible>(resp)
                    });
                let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    addr
}

const GRPC_CONFIG: &str = r#"_format_version: "3.0"
services:
  - name: greeter
    protocol: grpc
    host: 127.0.0.1
    port: @PORT@
    routes:
      - name: greet
        protocols: [grpc, grpcs]
        paths: [/greet.Greeter/]
        strip_path: false
"#;

/// A unary call over an HTTP/2 connection: (grpc-status, reply payload, x-method).
async fn unary<T>(io: T, authority: &str) -> (String, String, String)
where
    T: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
        .await
        .unwrap();
    tokio::spawn(conn);
    let req = hyper::Request::post(format!("{authority}/greet.Greeter/SayHello"))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(http_body_util::Full::new(grpc_frame(b"kong")))
        .unwrap();
    let resp = sender.send_request(req).await.unwrap();
    assert_eq!(resp.status(), 200);
    let method = resp.headers()["x-method"].to_str().unwrap().to_string();
    let collected = resp.into_body().collect().await.unwrap();
    let trailers = collected
        .trailers()
        .cloned()
        .expect("gRPC trailers reach the client");
    let mut body = collected.to_bytes();
    assert_eq!(body.get_u8(), 0);
    let len = body.get_u32() as usize;
    let reply = String::from_utf8(body[..len].to_vec()).unwrap();
    (
        trailers["grpc-status"].to_str().unwrap().to_string(),
        reply,
        method,
    )
}

#[tokio::test]
async fn grpc_unary_call_over_tls_and_h2c_with_trailers() {
    let up = grpc_upstream().await;
    let cfg = GRPC_CONFIG.replace("@PORT@", &up.port().to_string());
    let tls: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let tls_arg = tls.to_string();
    let proxy = common::Proxy::start_with(&cfg, &["--listen-tls", &tls_arg, "--h2c"]).await;

    // grpcs: TLS with ALPN h2 (the default certificate; the client does not verify it).
    let mut b = openssl::ssl::SslConnector::builder(openssl::ssl::SslMethod::tls()).unwrap();
    b.set_verify(openssl::ssl::SslVerifyMode::NONE);
    b.set_alpn_protos(b"\x02h2").unwrap();
    let ssl = b
        .build()
        .configure()
        .unwrap()
        .into_ssl("grpc.test")
        .unwrap();
    let tcp = tokio::net::TcpStream::connect(tls).await.unwrap();
    let mut stream = tokio_openssl::SslStream::new(ssl, tcp).unwrap();
    Pin::new(&mut stream).connect().await.unwrap();
    let (status, reply, method) = unary(TokioIo::new(stream), "https://grpc.test").await;
    assert_eq!((status.as_str(), reply.as_str()), ("0", "hello, kong"));
    assert_eq!(method, "/greet.Greeter/SayHello");

    // grpc: h2c with prior knowledge on the plain listener.
    let tcp = tokio::net::TcpStream::connect(proxy.addr).await.unwrap();
    let (status, reply, _) = unary(TokioIo::new(tcp), "http://grpc.test").await;
    assert_eq!((status.as_str(), reply.as_str()), ("0", "hello, kong"));
}

#[tokio::test]
async fn plain_http_on_a_grpc_route_is_refused() {
    let up = grpc_upstream().await;
    let cfg = GRPC_CONFIG.replace("@PORT@", &up.port().to_string());
    let proxy = common::Proxy::start(&cfg).await;
    let r = proxy.get("/greet.Greeter/SayHello", &[]).await;
    assert_eq!(r.status, 415);
    assert_eq!(r.json()["message"], "Non-gRPC request matched gRPC route");
}

/// A WebSocket server that answers the upgrade and echoes each text frame, upper-cased.
async fn ws_upstream() -> SocketAddr {
    use base64::Engine;
    use sha1::{Digest, Sha1};
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let head = read_head(&mut s).await;
                let key = head
                    .lines()
                    .find_map(|l| {
                        l.strip_prefix("sec-websocket-key: ")
                            .or(l.strip_prefix("Sec-WebSocket-Key: "))
                    })
                    .unwrap_or_default()
                    .trim()
                    .to_string();
                let mut h = Sha1::new();
                h.update(key.as_bytes());
                h.update(b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11");
                let accept = base64::engine::general_purpose::STANDARD.encode(h.finalize());
                let resp = format!("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n\r\n");
                s.write_all(resp.as_bytes()).await.unwrap();
                // Frames: FIN+text, masked, payload < 126 bytes.
                loop {
                    let mut hdr = [0u8; 2];
                    if s.read_exact(&mut hdr).await.is_err() {
                        return;
                    }
                    let len = usize::from(hdr[1] & 0x7f);
                    let mut mask = [0u8; 4];
                    s.read_exact(&mut mask).await.unwrap();
                    let mut payload = vec![0u8; len];
                    s.read_exact(&mut payload).await.unwrap();
                    for (i, b) in payload.iter_mut().enumerate() {
                        *b ^= mask[i % 4];
                    }
                    let reply = payload.to_ascii_uppercase();
                    let mut out = vec![0x81, reply.len() as u8];
                    out.extend_from_slice(&reply);
                    s.write_all(&out).await.unwrap();
                }
            });
        }
    });
    addr
}

async fn read_head(s: &mut tokio::net::TcpStream) -> String {
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") && buf.len() < 16 * 1024 {
        if s.read_exact(&mut byte).await.is_err() {
            break;
        }
        buf.push(byte[0]);
    }
    String::from_utf8_lossy(&buf).into_owned()
}

#[tokio::test]
async fn websocket_upgrade_is_proxied_and_frames_flow_both_ways() {
    let up = ws_upstream().await;
    // A plain http route carries the upgrade, as does one with Kong's ws/wss protocols.
    for protocols in ["", "        protocols: [ws, wss]\n"] {
        let cfg = format!(
            "_format_version: \"3.0\"\nservices:\n  - name: ws\n    url: http://{up}\n    routes:\n      - name: chat\n        paths: [/chat]\n{protocols}"
        );
        websocket_echo(&cfg).await;
    }
}

async fn websocket_echo(cfg: &str) {
    let proxy = common::Proxy::start(cfg).await;
    let mut s = tokio::net::TcpStream::connect(proxy.addr).await.unwrap();
    s.write_all(b"GET /chat HTTP/1.1\r\nHost: ws.test\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
        .await
        .unwrap();
    let head = read_head(&mut s).await;
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    assert!(
        head.to_ascii_lowercase()
            .contains("sec-websocket-accept: s3pplmbitxaq9kygzzhzrbk+xoo="),
        "{head}"
    );
    for msg in ["hello", "again"] {
        let mask = [1u8, 2, 3, 4];
        let mut frame = vec![0x81, 0x80 | msg.len() as u8];
        frame.extend_from_slice(&mask);
        frame.extend(msg.bytes().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        s.write_all(&frame).await.unwrap();
        let mut hdr = [0u8; 2];
        s.read_exact(&mut hdr).await.unwrap();
        assert_eq!(hdr[0], 0x81);
        let mut payload = vec![0u8; usize::from(hdr[1])];
        s.read_exact(&mut payload).await.unwrap();
        assert_eq!(payload, msg.to_ascii_uppercase().as_bytes());
    }
}

/// A plugin with a `response` phase would buffer the response; an upgrade turns that off, as
/// in Kong, and the WebSocket still flows.
#[tokio::test]
async fn websocket_upgrade_is_not_buffered_by_a_response_phase_plugin() {
    let up = ws_upstream().await;
    let handler = "local P = { PRIORITY = 1, VERSION = \"0.1\" }\nfunction P:response() kong.response.set_header(\"x-buffered\", \"yes\") end\nreturn P\n";
    let cfg = format!(
        "_format_version: \"3.0\"\ncustom_plugins:\n{}services:\n  - name: ws\n    url: http://{up}\n    routes:\n      - name: chat\n        paths: [/chat]\n        plugins: [{{name: buffers}}]\n",
        sluice::plugins::lua::embed::render("buffers", handler, &common::empty_schema("buffers"), false)
    );
    websocket_echo(&cfg).await;
}
