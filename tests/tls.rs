//! TLS termination end to end: certificates chosen by SNI (exact, wildcard, default), routes'
//! `snis` and `protocols`, HTTP/2 by ALPN, certificates changed by a reload.

mod common;

use std::net::SocketAddr;

use bytes::Bytes;
use common::{free_port, render, Proxy, Upstream};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use openssl::ssl::{SslConnector, SslMethod, SslVerifyMode};

/// A self-signed certificate for `cn` with `key`, and the key, as PEM.
fn self_signed(cn: &str, key: openssl::pkey::PKey<openssl::pkey::Private>) -> (String, String) {
    use openssl::asn1::Asn1Time;
    use openssl::hash::MessageDigest;
    use openssl::x509::{X509NameBuilder, X509};
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

/// A self-signed RSA certificate and key for `cn`, as PEM.
fn cert(cn: &str) -> (String, String) {
    let rsa = openssl::rsa::Rsa::generate(2048).unwrap();
    self_signed(cn, openssl::pkey::PKey::from_rsa(rsa).unwrap())
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

/// An EC (P-256) self-signed certificate and key for `cn`, as PEM.
fn ec_cert(cn: &str) -> (String, String) {
    use openssl::ec::{EcGroup, EcKey};
    let group = EcGroup::from_curve_name(openssl::nid::Nid::X9_62_PRIME256V1).unwrap();
    self_signed(
        cn,
        openssl::pkey::PKey::from_ec_key(EcKey::generate(&group).unwrap()).unwrap(),
    )
}

/// The CN of the certificate served to a client that accepts only `sigalgs`.
async fn served_cn(addr: SocketAddr, sni: &str, sigalgs: &str) -> String {
    let mut b = SslConnector::builder(SslMethod::tls()).unwrap();
    b.set_verify(SslVerifyMode::NONE);
    b.set_sigalgs_list(sigalgs).unwrap();
    let ssl = b.build().configure().unwrap().into_ssl(sni).unwrap();
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut stream = tokio_openssl::SslStream::new(ssl, tcp).unwrap();
    std::pin::Pin::new(&mut stream).connect().await.unwrap();
    let cert = stream.ssl().peer_certificate().unwrap();
    let cn = cert
        .subject_name()
        .entries()
        .next()
        .unwrap()
        .data()
        .as_slice()
        .to_vec();
    String::from_utf8(cn).unwrap()
}

#[tokio::test]
async fn cert_alt_is_served_to_clients_that_only_accept_its_key_type() {
    let up = Upstream::start().await;
    let (rc, rk) = cert("rsa.a.test");
    let (ec, ek) = ec_cert("ec.a.test");
    let cfg = format!(
        "_format_version: \"3.0\"\nservices:\n  - name: s\n    url: http://{{upstream}}\n    routes: [{{name: r, paths: [/]}}]\ncertificates:\n  - cert: |\n{}    key: |\n{}    cert_alt: |\n{}    key_alt: |\n{}    snis: [a.test]\n",
        block(&rc, 6),
        block(&rk, 6),
        block(&ec, 6),
        block(&ek, 6)
    );
    let (_proxy, tls) = start(&cfg, &up).await;
    assert_eq!(
        served_cn(tls, "a.test", "RSA-PSS+SHA256:RSA+SHA256").await,
        "rsa.a.test"
    );
    assert_eq!(served_cn(tls, "a.test", "ECDSA+SHA256").await, "ec.a.test");
}

/// A TLS server that requires a client certificate and answers with its CN in `x-client-cn`.
async fn mtls_upstream() -> (SocketAddr, String) {
    use openssl::ssl::{SslAcceptor, SslVerifyMode};
    use openssl::x509::X509;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (c, k) = cert("localhost");
    let mut b = SslAcceptor::mozilla_intermediate_v5(SslMethod::tls()).unwrap();
    b.set_certificate(&X509::from_pem(c.as_bytes()).unwrap())
        .unwrap();
    b.set_private_key(&openssl::pkey::PKey::private_key_from_pem(k.as_bytes()).unwrap())
        .unwrap();
    // Any client certificate will do (the test checks which one was presented).
    b.set_verify_callback(
        SslVerifyMode::PEER | SslVerifyMode::FAIL_IF_NO_PEER_CERT,
        |_, _| true,
    );
    let acceptor = std::sync::Arc::new(b.build());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let ssl = openssl::ssl::Ssl::new(acceptor.context()).unwrap();
                let mut s = tokio_openssl::SslStream::new(ssl, tcp).unwrap();
                if std::pin::Pin::new(&mut s).accept().await.is_err() {
                    return;
                }
                let cn = s
                    .ssl()
                    .peer_certificate()
                    .and_then(|c| {
                        c.subject_name()
                            .entries()
                            .next()
                            .map(|e| String::from_utf8_lossy(e.data().as_slice()).into_owned())
                    })
                    .unwrap_or_default();
                let mut buf = Vec::new();
                let mut byte = [0u8; 1];
                while !buf.ends_with(b"\r\n\r\n") && buf.len() < 16 * 1024 {
                    if s.read_exact(&mut byte).await.is_err() {
                        return;
                    }
                    buf.push(byte[0]);
                }
                let resp = format!("HTTP/1.1 200 OK\r\nx-client-cn: {cn}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
                let _ = s.write_all(resp.as_bytes()).await;
                let _ = s.shutdown().await;
            });
        }
    });
    (addr, c)
}

#[tokio::test]
async fn client_certificate_is_presented_to_the_upstream() {
    let (addr, _) = mtls_upstream().await;
    let (cc, ck) = cert("gateway-client");
    let cfg = format!(
        "_format_version: \"3.0\"\ncertificates:\n  - id: 6a1c2e0e-7a43-4c49-9c1a-222222222222\n    cert: |\n{}    key: |\n{}services:\n  - name: with-cert\n    url: https://localhost:{port}\n    client_certificate: {{id: 6a1c2e0e-7a43-4c49-9c1a-222222222222}}\n    routes: [{{name: with, paths: [/with]}}]\n  - name: without\n    url: https://localhost:{port}\n    retries: 0\n    routes: [{{name: without, paths: [/without]}}]\n",
        block(&cc, 6),
        block(&ck, 6),
        port = addr.port()
    );
    let proxy = Proxy::start(&cfg).await;
    let r = proxy.get("/with", &[]).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("x-client-cn"), Some("gateway-client"));
    assert_eq!(proxy.get("/without", &[]).await.status, 502);
}

/// A certificate and key written as `{vault://env/...}` references (Kong marks both
/// referenceable) are read from the environment at load and served; `GET /config` keeps the
/// references, never the key; a reference to a variable that is not set is refused with a
/// located error on `POST /config`, and the running certificate keeps serving.
#[tokio::test]
async fn certificates_from_env_vault_references() {
    let up = Upstream::start().await;
    let (c, k) = cert("vaulted.test");
    let cfg = r#"_format_version: "3.0"
vaults:
- name: env
  prefix: tls-secrets
  config:
    prefix: SLUICE_TEST_
services:
  - name: s
    url: http://{upstream}
    routes:
      - name: any
        paths: [/any]
certificates:
  - cert: "{vault://env/sluice-test-cert}"
    key: "{vault://tls-secrets/key}"
    snis: [vaulted.test]
"#;
    let tls: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let tls_arg = tls.to_string();
    let proxy = Proxy::start_with_env(
        &render(cfg, &[&up]),
        &["--listen-tls", &tls_arg, "--no-watch"],
        &[("SLUICE_TEST_CERT", &c), ("SLUICE_TEST_KEY", &k)],
    )
    .await;
    assert_eq!(
        get_h1(tls, "vaulted.test", "/any").await,
        ("vaulted.test".into(), 200)
    );
    let served = proxy.admin("GET", "/config", "").await;
    assert!(served.text().contains("{vault://tls-secrets/key}"));
    assert!(!served.text().contains("PRIVATE KEY"), "{}", served.text());

    let broken = render(cfg, &[&up]).replace("tls-secrets/key", "tls-secrets/missing");
    let r = proxy.admin("POST", "/config", &broken).await;
    assert_eq!(r.status, 400, "{}", r.text());
    let text = r.text();
    assert!(
        text.contains("SLUICE_TEST_MISSING is not set")
            && text.contains("{vault://tls-secrets/missing}"),
        "{text}"
    );
    assert!(!text.contains("PRIVATE KEY"), "{text}");
    assert_eq!(
        get_h1(tls, "vaulted.test", "/any").await,
        ("vaulted.test".into(), 200)
    );
}
