//! TLS termination end to end: certificates chosen by SNI (exact, wildcard, default), routes'
//! `snis` and `protocols`, HTTP/2 by ALPN, certificates changed by a reload.

mod common;

use std::net::SocketAddr;

use bytes::Bytes;
use common::{free_port, render, Proxy, Upstream};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use openssl::ssl::{SslConnector, SslMethod, SslVerifyMode};

/// A self-signed certificate and key for `cn`, as PEM.
fn cert(cn: &str) -> (String, String) {
    use openssl::asn1::Asn1Time;
    use openssl::hash::MessageDigest;
    use openssl::pkey::PKey;
    use openssl::rsa::Rsa;
    use openssl::x509::{X509NameBuilder, X509};
    let key = PKey::from_rsa(Rsa::generate(2048).unwrap()).unwrap();
    let mut name = X509NameBuilder::new().unwrap();
    name.append_entry_by_text("CN", cn).unwrap();
    let name = name.build();
    let mut b = X509::builder().unwrap();
    b.set_version(2).unwrap();
    b.set_subject_name(&name).unwrap();
    b.set_issuer_name(&name).unwrap();
    b.set_pubkey(&key).unwrap();
    b.set_not_before(&Asn1Time::days_from_now(0).unwrap())
        .unwrap();
    b.set_not_after(&Asn1Time::days_from_now(2).unwrap())
        .unwrap();
    b.sign(&key, MessageDigest::sha256()).unwrap();
    let pem = |v: Vec<u8>| String::from_utf8(v).unwrap();
    (
        pem(b.build().to_pem().unwrap()),
        pem(key.private_key_to_pem_pkcs8().unwrap()),
    )
}

/// A YAML block scalar of `text`, indented.
fn block(text: &str, indent: usize) -> String {
    let pad = " ".repeat(indent);
    text.lines()
        .map(|l| format!("{pad}{l}\n"))
        .collect::<String>()
}

fn config(certs: &[(&str, &[&str])]) -> String {
    let mut out = String::from(
        r#"_format_version: "3.0"
services:
  - name: s
    url: http://{upstream}
    routes:
      - name: any
        paths: [/any]
      - name: only-a
        paths: [/a-only]
        snis: [a.test]
        protocols: [https]
certificates:
"#,
    );
    for (cn, snis) in certs {
        let (c, k) = cert(cn);
        out.push_str(&format!(
            "  - cert: |\n{}    key: |\n{}",
            block(&c, 6),
            block(&k, 6)
        ));
        out.push_str(&format!("    snis: [{}]\n", snis.join(", ")));
    }
    out
}

/// A TLS connection to `addr` with `sni`, offering `alpn`; returns the stream and the
/// certificate's CN.
async fn connect(
    addr: SocketAddr,
    sni: &str,
    alpn: &[u8],
) -> (tokio_openssl::SslStream<tokio::net::TcpStream>, String) {
    let mut b = SslConnector::builder(SslMethod::tls()).unwrap();
    b.set_verify(SslVerifyMode::NONE);
    b.set_alpn_protos(alpn).unwrap();
    let ssl = b.build().configure().unwrap().into_ssl(sni).unwrap();
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut stream = tokio_openssl::SslStream::new(ssl, tcp).unwrap();
    std::pin::Pin::new(&mut stream).connect().await.unwrap();
    let cn = stream
        .ssl()
        .peer_certificate()
        .unwrap()
        .subject_name()
        .entries()
        .next()
        .unwrap()
        .data()
        .as_slice()
        .to_vec();
    let cn = String::from_utf8(cn).unwrap();
    (stream, cn)
}

/// GET `path` over HTTP/1.1 on a fresh TLS connection with `sni`: (cert CN, status).
async fn get_h1(addr: SocketAddr, sni: &str, path: &str) -> (String, u16) {
    let (stream, cn) = connect(addr, sni, b"\x08http/1.1").await;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    let req = hyper::Request::get(path)
        .header("host", sni)
        .body(Full::new(Bytes::new()))
        .unwrap();
    let resp = sender.send_request(req).await.unwrap();
    (cn, resp.status().as_u16())
}

async fn start(cfg: &str, up: &Upstream) -> (Proxy, SocketAddr) {
    let tls: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let tls_arg = tls.to_string();
    let proxy = Proxy::start_with_admin(
        &render(cfg, &[up]),
        &["--listen-tls", &tls_arg, "--no-watch"],
    )
    .await;
    (proxy, tls)
}

#[tokio::test]
async fn certificates_are_chosen_by_sni_with_wildcards_and_a_default() {
    let up = Upstream::start().await;
    let cfg = config(&[("a.test", &["a.test"]), ("wild.b.test", &["\"*.b.test\""])]);
    let (_proxy, tls) = start(&cfg, &up).await;

    assert_eq!(get_h1(tls, "a.test", "/any").await, ("a.test".into(), 200));
    assert_eq!(
        get_h1(tls, "x.b.test", "/any").await,
        ("wild.b.test".into(), 200)
    );
    // No SNI matches: the default certificate, and the request is still served.
    assert_eq!(
        get_h1(tls, "other.test", "/any").await,
        ("localhost".into(), 200)
    );
    let seen = up.last();
    assert_eq!(seen.header("x-forwarded-proto"), Some("https"));
    assert_eq!(
        seen.header("x-forwarded-port"),
        Some(tls.port().to_string().as_str())
    );
}

#[tokio::test]
async fn route_snis_and_https_only_protocols_are_respected() {
    let up = Upstream::start().await;
    let cfg = config(&[("a.test", &["a.test", "c.test"])]);
    let (proxy, tls) = start(&cfg, &up).await;
    assert_eq!(get_h1(tls, "a.test", "/a-only").await.1, 200);
    // Same certificate, another SNI: the route's `snis` does not match.
    assert_eq!(get_h1(tls, "c.test", "/a-only").await.1, 404);
    // Over plain HTTP the https-only route answers 426.
    let r = proxy.get("/a-only", &[("host", "a.test")]).await;
    assert_eq!(r.status, 426);
}

#[tokio::test]
async fn http2_is_negotiated_by_alpn() {
    let up = Upstream::start().await;
    let cfg = config(&[("a.test", &["a.test"])]);
    let (_proxy, tls) = start(&cfg, &up).await;
    let (stream, _) = connect(tls, "a.test", b"\x02h2\x08http/1.1").await;
    assert_eq!(stream.ssl().selected_alpn_protocol(), Some(&b"h2"[..]));
    let (mut sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(conn);
    for i in 0..3 {
        let req = hyper::Request::get(format!("https://a.test/any/{i}"))
            .body(Full::new(Bytes::new()))
            .unwrap();
        let resp = sender.send_request(req).await.unwrap();
        assert_eq!(resp.version(), http::Version::HTTP_2);
        assert_eq!(resp.status(), 200);
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        assert!(!body.is_empty());
    }
    assert_eq!(up.seen().len(), 3);
    assert_eq!(up.last().uri, "/2", "strip_path applies as over HTTP/1.1");
}

#[tokio::test]
async fn a_reload_changes_certificates_without_dropping_connections() {
    let up = Upstream::start().await;
    let (proxy, tls) = start(&config(&[("old.a.test", &["a.test"])]), &up).await;
    // A connection opened before the reload.
    let (stream, cn) = connect(tls, "a.test", b"\x08http/1.1").await;
    assert_eq!(cn, "old.a.test");
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);

    let r = proxy
        .admin(
            "POST",
            "/config",
            &render(&config(&[("new.a.test", &["a.test"])]), &[&up]),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(
        get_h1(tls, "a.test", "/any").await,
        ("new.a.test".into(), 200)
    );
    // The old connection still works.
    let req = hyper::Request::get("/any")
        .header("host", "a.test")
        .body(Full::new(Bytes::new()))
        .unwrap();
    assert_eq!(sender.send_request(req).await.unwrap().status(), 200);
}

#[test]
fn a_key_that_does_not_match_its_certificate_is_a_located_error() {
    let (c, _) = cert("a.test");
    let (_, other_key) = cert("b.test");
    let text = format!(
        "_format_version: \"3.0\"\ncertificates:\n  - cert: |\n{}    key: |\n{}",
        block(&c, 6),
        block(&other_key, 6)
    );
    let err = sluice::snapshot::load_str(&text, "kong.yaml", 1)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("kong.yaml:3:5: certificates[0]: key: does not match the certificate"),
        "{err}"
    );
}

#[tokio::test]
async fn ssl_cert_sets_the_default_certificate() {
    let up = Upstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    let (c, k) = cert("default.test");
    let (cp, kp) = (dir.path().join("d.crt"), dir.path().join("d.key"));
    std::fs::write(&cp, c).unwrap();
    std::fs::write(&kp, k).unwrap();
    let tls: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let args = [
        "--listen-tls".to_string(),
        tls.to_string(),
        "--ssl-cert".into(),
        cp.display().to_string(),
        "--ssl-cert-key".into(),
        kp.display().to_string(),
    ];
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let _proxy =
        Proxy::start_with(&render(&config(&[("a.test", &["a.test"])]), &[&up]), &args).await;
    assert_eq!(
        get_h1(tls, "nomatch.test", "/any").await,
        ("default.test".into(), 200)
    );
    assert_eq!(get_h1(tls, "a.test", "/any").await, ("a.test".into(), 200));
}
