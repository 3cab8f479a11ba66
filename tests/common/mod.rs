//! Test harness: a real echo upstream on loopback, the real `proxy` binary on an ephemeral
//! port, and a plain HTTP/1.1 client that sends paths and headers exactly as given.
#![allow(dead_code)]

pub mod redis;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};

/// Signalled whenever any test upstream records a request.
static ARRIVED: tokio::sync::Notify = tokio::sync::Notify::const_new();

/// What the upstream saw of one request.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    /// Path and query as received on the wire.
    pub uri: String,
    /// Lower-case header name → values in order.
    pub headers: BTreeMap<String, Vec<String>>,
    pub body: Bytes,
}

impl Seen {
    /// The first value of a header.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .get(name)
            .and_then(|v| v.first())
            .map(String::as_str)
    }
}

/// A loopback HTTP server that records every request and answers 200 with a JSON echo.
/// `/delay/<ms>` waits before answering (to exercise timeouts); `/status/<code>` answers that code;
/// `/bytes/<n>` answers n bytes of `x` as text/plain instead of the echo (all anywhere in the
/// path).
pub struct Upstream {
    pub addr: SocketAddr,
    /// The PEM certificate of a TLS upstream (self-signed, CN localhost).
    #[allow(dead_code)]
    pub cert_pem: Option<String>,
    seen: Arc<Mutex<Vec<Seen>>>,
    accepted: Arc<std::sync::atomic::AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Upstream {
    pub async fn start() -> Upstream {
        Self::start_named("upstream").await
    }

    /// An upstream whose echo carries `name` in the `x-upstream-name` response header.
    pub async fn start_named(name: &'static str) -> Upstream {
        Self::start_inner(name, None).await
    }

    /// The echo upstream behind TLS, with a self-signed certificate made for the test.
    pub async fn start_tls() -> Upstream {
        let (acceptor, pem) = self_signed_acceptor();
        let mut up = Self::start_inner("tls-upstream", Some(acceptor)).await;
        up.cert_pem = Some(pem);
        up
    }

    /// An upstream named `name` on a given address (e.g. the port of a dropped one, to bring a
    /// target back); None when the address cannot be bound (yet).
    pub async fn start_named_on(name: &'static str, addr: SocketAddr) -> Option<Upstream> {
        let listener = TcpListener::bind(addr).await.ok()?;
        Some(Self::serve(listener, name, None))
    }

    async fn start_inner(name: &'static str, tls: Option<openssl::ssl::SslAcceptor>) -> Upstream {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind upstream");
        Self::serve(listener, name, tls)
    }

    /// Serves on `listener`; dropping the returned value closes the listener and every
    /// connection it accepted.
    fn serve(
        listener: TcpListener,
        name: &'static str,
        tls: Option<openssl::ssl::SslAcceptor>,
    ) -> Upstream {
        let addr = listener.local_addr().expect("upstream addr");
        let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
        let log = seen.clone();
        let tls = tls.map(Arc::new);
        let accepted: Arc<std::sync::atomic::AtomicUsize> = Arc::default();
        let count = accepted.clone();
        let task = tokio::spawn(async move {
            // Connections live in this task's set: aborting the task closes them too.
            let mut connections = tokio::task::JoinSet::new();
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                while connections.try_join_next().is_some() {}
                let log = log.clone();
                let tls = tls.clone();
                connections.spawn(async move {
                    let service = service_fn(move |req: Request<Incoming>| {
                        let log = log.clone();
                        async move { Ok::<_, hyper::Error>(echo(req, log, name).await) }
                    });
                    match tls {
                        None => {
                            let _ = http1::Builder::new()
                                .serve_connection(TokioIo::new(stream), service)
                                .await;
                        }
                        Some(acceptor) => {
                            let Ok(ssl) = openssl::ssl::Ssl::new(acceptor.context()) else {
                                return;
                            };
                            let Ok(mut stream) = tokio_openssl::SslStream::new(ssl, stream) else {
                                return;
                            };
                            if std::pin::Pin::new(&mut stream).accept().await.is_err() {
                                return;
                            }
                            let _ = http1::Builder::new()
                                .serve_connection(TokioIo::new(stream), service)
                                .await;
                        }
                    }
                });
            }
        });
        Upstream {
            addr,
            cert_pem: None,
            seen,
            accepted,
            task,
        }
    }

    /// TCP connections accepted so far.
    pub fn connections(&self) -> usize {
        self.accepted.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Requests received so far.
    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().expect("seen lock").clone()
    }

    /// The last request received.
    pub fn last(&self) -> Seen {
        self.seen().pop().expect("the upstream received no request")
    }

    /// Waits (at most 10 s) until `n` requests were received, for requests the proxy sends
    /// on its own (log plugins); returns what was received by then.
    #[allow(dead_code)]
    pub async fn wait_for(&self, n: usize) -> Vec<Seen> {
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            // Registered before looking, so an arrival in between is not missed.
            let arrived = ARRIVED.notified();
            tokio::pin!(arrived);
            arrived.as_mut().enable();
            let seen = self.seen();
            if seen.len() >= n || tokio::time::Instant::now() >= deadline {
                return seen;
            }
            let _ = tokio::time::timeout_at(deadline, arrived).await;
        }
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A TLS acceptor with a fresh self-signed certificate for `localhost`.
fn self_signed_acceptor() -> (openssl::ssl::SslAcceptor, String) {
    use openssl::ssl::{SslAcceptor, SslMethod};
    let (key, cert) = self_signed();
    let mut acceptor = SslAcceptor::mozilla_intermediate_v5(SslMethod::tls()).expect("acceptor");
    acceptor.set_private_key(&key).expect("key");
    acceptor.set_certificate(&cert).expect("cert");
    let pem = String::from_utf8(cert.to_pem().expect("pem")).expect("utf8");
    (acceptor.build(), pem)
}

/// A self-signed certificate for `localhost`: (certificate PEM, private key PEM).
pub fn self_signed_pems() -> (String, String) {
    let (key, cert) = self_signed();
    let pem = |b: Vec<u8>| String::from_utf8(b).expect("utf8");
    (
        pem(cert.to_pem().expect("pem")),
        pem(key.private_key_to_pem_pkcs8().expect("key pem")),
    )
}

fn self_signed() -> (
    openssl::pkey::PKey<openssl::pkey::Private>,
    openssl::x509::X509,
) {
    use openssl::asn1::Asn1Time;
    use openssl::hash::MessageDigest;
    use openssl::pkey::PKey;
    use openssl::rsa::Rsa;
    use openssl::x509::{X509NameBuilder, X509};
    let key = PKey::from_rsa(Rsa::generate(2048).expect("rsa")).expect("pkey");
    let mut name = X509NameBuilder::new().expect("name");
    name.append_entry_by_text("CN", "localhost").expect("cn");
    let name = name.build();
    let mut cert = X509::builder().expect("x509");
    cert.set_version(2).expect("version");
    cert.set_subject_name(&name).expect("subject");
    cert.set_issuer_name(&name).expect("issuer");
    cert.set_pubkey(&key).expect("pubkey");
    cert.set_not_before(&Asn1Time::days_from_now(0).expect("time"))
        .expect("nb");
    cert.set_not_after(&Asn1Time::days_from_now(1).expect("time"))
        .expect("na");
    cert.sign(&key, MessageDigest::sha256()).expect("sign");
    (key, cert.build())
}

async fn echo(
    req: Request<Incoming>,
    log: Arc<Mutex<Vec<Seen>>>,
    name: &str,
) -> Response<Full<Bytes>> {
    let (parts, body) = req.into_parts();
    let body = body
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let mut headers: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (k, v) in &parts.headers {
        headers
            .entry(k.as_str().to_string())
            .or_default()
            .push(String::from_utf8_lossy(v.as_bytes()).into_owned());
    }
    let uri = parts.uri.to_string();
    let seen = Seen {
        method: parts.method.to_string(),
        uri: uri.clone(),
        headers: headers.clone(),
        body: body.clone(),
    };
    log.lock().expect("seen lock").push(seen);
    ARRIVED.notify_waiters();
    let path = parts.uri.path();
    // `/delay/<ms>` and `/status/<code>` count anywhere in the path (after a service path).
    let after = |key: &str| {
        path.split_once(key)
            .and_then(|(_, rest)| rest.split('/').next())
            .and_then(|n| n.parse::<u64>().ok())
    };
    if let Some(ms) = after("/delay/") {
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
    let status = after("/status/")
        .and_then(|s| u16::try_from(s).ok())
        .unwrap_or(200);
    if let Some(n) = after("/bytes/") {
        return Response::builder()
            .status(status)
            .header("content-type", "text/plain")
            .body(Full::new(Bytes::from(vec![b'x'; n as usize])))
            .expect("bytes response");
    }
    let json = serde_json::json!({
        "method": parts.method.as_str(),
        "uri": uri,
        "headers": headers,
        "body": String::from_utf8_lossy(&body),
    });
    let mut resp = Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .header("x-upstream-name", name);
    // `x-respond-header: <name>: <value>` asks for that header on the response.
    for v in parts.headers.get_all("x-respond-header") {
        if let Some((k, v)) = v.to_str().ok().and_then(|v| v.split_once(':')) {
            resp = resp.header(k.trim(), v.trim());
        }
    }
    resp.body(Full::new(Bytes::from(json.to_string())))
        .expect("echo response")
}

/// A response as the client received it.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: http::HeaderMap,
    pub body: Bytes,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "body is not JSON ({e}): {}",
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// The `proxy` binary running a config.
pub struct Proxy {
    pub addr: SocketAddr,
    /// The admin API, when started with one.
    pub admin: Option<SocketAddr>,
    child: Child,
    pub dir: tempfile::TempDir,
    /// The config file the proxy serves (edit it to reload).
    pub config_path: std::path::PathBuf,
    stderr_path: std::path::PathBuf,
}

/// Whether process `pid` has a socket listening on TCP `port` (from /proc: the listening
/// socket's inode among the process's open files).
pub fn listens(pid: u32, port: u16) -> bool {
    let mut inodes = Vec::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(text) = std::fs::read_to_string(table) else {
            continue;
        };
        for line in text.lines().skip(1) {
            let cols: Vec<&str> = line.split_whitespace().collect();
            let (Some(local), Some(state), Some(inode)) = (cols.get(1), cols.get(3), cols.get(9))
            else {
                continue;
            };
            let listening = *state == "0A";
            let on_port = local
                .rsplit(':')
                .next()
                .and_then(|p| u16::from_str_radix(p, 16).ok())
                == Some(port);
            if listening && on_port {
                inodes.push(format!("socket:[{inode}]"));
            }
        }
    }
    if inodes.is_empty() {
        return false;
    }
    let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return false;
    };
    fds.flatten().any(|fd| {
        std::fs::read_link(fd.path())
            .map(|target| inodes.iter().any(|i| target.to_string_lossy() == *i))
            .unwrap_or(false)
    })
}

pub fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("pick port");
    l.local_addr().expect("addr").port()
}

/// Runs `proxy check` on `text` written to a temporary file called `file_name`: whether it
/// passed, and what it printed on stderr.
#[allow(dead_code)]
pub fn check_file(text: &str, file_name: &str) -> (bool, String) {
    check_file_with(text, file_name, &[])
}

/// [`check_file`] with more arguments for `proxy check` (e.g. `--router-flavor expressions`).
pub fn check_file_with(text: &str, file_name: &str, args: &[&str]) -> (bool, String) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join(file_name);
    std::fs::write(&path, text).expect("write config");
    let out = Command::new(binary())
        .arg("check")
        .args(args)
        .arg(&path)
        .output()
        .expect("run proxy check");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The built binary.
pub fn binary() -> &'static str {
    env!("CARGO_BIN_EXE_proxy")
}

/// Replaces `{upstream}` (and `{upstream2}`, ...) placeholders with addresses.
pub fn render(template: &str, upstreams: &[&Upstream]) -> String {
    let mut out = template.to_string();
    for (i, u) in upstreams.iter().enumerate() {
        let key = if i == 0 {
            "{upstream}".to_string()
        } else {
            format!("{{upstream{}}}", i + 1)
        };
        out = out.replace(&key, &u.addr.to_string());
    }
    out
}

impl Proxy {
    /// Starts the proxy on `config` and waits (bounded) until it accepts connections.
    pub async fn start(config: &str) -> Proxy {
        Self::start_with(config, &[]).await
    }

    pub async fn start_with(config: &str, extra_args: &[&str]) -> Proxy {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("kong.yaml");
        std::fs::write(&path, config).expect("write config");
        Self::start_in(dir, path, false, extra_args).await
    }

    /// Starts with the admin API on its own ephemeral port.
    pub async fn start_with_admin(config: &str, extra_args: &[&str]) -> Proxy {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("kong.yaml");
        std::fs::write(&path, config).expect("write config");
        Self::start_in(dir, path, true, extra_args).await
    }

    /// Starts with no configuration at all (no `--config`, no kong.yaml where it runs), with
    /// the admin API, as the Kong Ingress Controller finds a DB-less Kong.
    #[allow(dead_code)]
    pub async fn start_empty(extra_args: &[&str]) -> Proxy {
        let dir = tempfile::tempdir().expect("tempdir");
        Self::start_in(dir, std::path::PathBuf::new(), true, extra_args).await
    }

    /// Starts with the admin API and these environment variables set for the proxy.
    #[allow(dead_code)]
    pub async fn start_with_env(config: &str, extra_args: &[&str], env: &[(&str, &str)]) -> Proxy {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("kong.yaml");
        std::fs::write(&path, config).expect("write config");
        Self::start_in_env(dir, path, true, extra_args, env).await
    }

    /// Starts on a config file prepared by the caller in `dir` (e.g. a ConfigMap layout).
    pub async fn start_in(
        dir: tempfile::TempDir,
        path: std::path::PathBuf,
        admin: bool,
        extra_args: &[&str],
    ) -> Proxy {
        Self::start_in_env(dir, path, admin, extra_args, &[]).await
    }

    async fn start_in_env(
        dir: tempfile::TempDir,
        path: std::path::PathBuf,
        admin: bool,
        extra_args: &[&str],
        env: &[(&str, &str)],
    ) -> Proxy {
        let mut last_err = String::new();
        // A port picked this way can be taken by someone else before the proxy binds it:
        // try a few ports, each attempt bounded in time.
        for _ in 0..5 {
            let port = free_port();
            let addr: SocketAddr = format!("127.0.0.1:{port}").parse().expect("addr");
            let admin_addr: Option<SocketAddr> =
                admin.then(|| format!("127.0.0.1:{}", free_port()).parse().expect("addr"));
            let admin_arg = admin_addr.map_or_else(|| "off".to_string(), |a| a.to_string());
            let stderr_path = dir.path().join(format!("stderr-{port}.log"));
            let stderr = std::fs::File::create(&stderr_path).expect("stderr file");
            let mut command = Command::new(binary());
            if path.as_os_str().is_empty() {
                // No configuration: run where there is no kong.yaml either.
                command.current_dir(dir.path());
            } else {
                command.arg("--config").arg(&path);
            }
            let mut child = command
                .arg("--listen")
                .arg(addr.to_string())
                .args(if extra_args.contains(&"--listen-tls") {
                    &[][..]
                } else {
                    &["--listen-tls", "off"][..]
                })
                .args(if extra_args.contains(&"--workers") {
                    &[][..]
                } else {
                    &["--workers", "2"][..]
                })
                .arg("--admin-listen")
                .arg(&admin_arg)
                .args(extra_args)
                .envs(env.iter().copied())
                .env("RUST_LOG", "info")
                .stdout(Stdio::null())
                .stderr(stderr)
                .spawn()
                .expect("spawn proxy");
            let deadline = Instant::now() + Duration::from_secs(20);
            loop {
                if let Ok(Some(status)) = child.try_wait() {
                    last_err = format!(
                        "proxy exited with {status}: {}",
                        std::fs::read_to_string(&stderr_path).unwrap_or_default()
                    );
                    break;
                }
                // The port must be this child's: a port picked free may have been taken by
                // another test's server meanwhile, which would then answer in its place.
                let pid = child.id();
                let admin_up = admin_addr.is_none_or(|a| listens(pid, a.port()));
                if admin_up && listens(pid, port) && TcpStream::connect(addr).await.is_ok() {
                    return Proxy {
                        addr,
                        admin: admin_addr,
                        child,
                        dir,
                        config_path: path.clone(),
                        stderr_path,
                    };
                }
                if Instant::now() > deadline {
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!(
                        "proxy did not listen within 20s: {}",
                        std::fs::read_to_string(&stderr_path).unwrap_or_default()
                    );
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        panic!("proxy could not start: {last_err}");
    }

    /// What the proxy wrote to stderr so far.
    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }

    /// Waits (bounded, 10 s) until stderr contains `needle`: the log phase runs after the
    /// client has its response, so a line it writes may come a moment later.
    #[allow(dead_code)]
    pub async fn wait_stderr(&self, needle: &str) -> bool {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if self.stderr().contains(needle) {
                return true;
            }
            if Instant::now() > deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Sends a request; `target` is written on the request line as is.
    pub async fn request(&self, method: &str, target: &str, headers: &[(&str, &str)]) -> Reply {
        self.request_body(method, target, headers, Bytes::new())
            .await
    }

    pub async fn get(&self, target: &str, headers: &[(&str, &str)]) -> Reply {
        self.request("GET", target, headers).await
    }

    /// A request to the admin API.
    pub async fn admin(&self, method: &str, target: &str, body: &str) -> Reply {
        let addr = self.admin.expect("proxy started without the admin API");
        send(
            addr,
            method,
            target,
            &[("content-type", "application/yaml")],
            Bytes::from(body.to_string()),
        )
        .await
    }

    /// Whether the proxy process has exited.
    pub fn exited(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(Some(_)))
    }

    /// The proxy's process id (to send signals).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits (bounded) until the admin API reports an attempt on the text with `hash`;
    /// returns whether it was applied.
    pub async fn wait_for_attempt(&self, hash: &str) -> bool {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let status = self.admin("GET", "/status", "").await.json();
            let last = &status["config"]["last_attempt"];
            if last["hash"] == hash {
                return last["ok"] == true;
            }
            assert!(
                Instant::now() < deadline,
                "no reload of {hash} within 20s; status: {status}\n{}",
                self.stderr()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub async fn request_body(
        &self,
        method: &str,
        target: &str,
        headers: &[(&str, &str)],
        body: Bytes,
    ) -> Reply {
        send(self.addr, method, target, headers, body).await
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Writes `data` as it is on a new connection and returns all the gateway answers until it
/// closes the connection; fails the test if that takes more than 10 s.
pub async fn exchange_raw(addr: SocketAddr, data: &[u8]) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = TcpStream::connect(addr).await.expect("connect to proxy");
    s.write_all(data).await.expect("write the request");
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut out))
        .await
        .expect("the gateway answers and closes within 10 s")
        .expect("read the answer");
    String::from_utf8_lossy(&out).into_owned()
}

/// One HTTP/1.1 request on a new connection, bounded by a 30 s timeout.
pub async fn send(
    addr: SocketAddr,
    method: &str,
    target: &str,
    headers: &[(&str, &str)],
    body: Bytes,
) -> Reply {
    let fut = async {
        let stream = TcpStream::connect(addr).await.expect("connect to proxy");
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .expect("handshake");
        tokio::spawn(conn);
        let mut req = Request::builder().method(method).uri(target);
        let has_host = headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("host"));
        if !has_host {
            req = req.header("host", "localhost");
        }
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let req = req.body(Full::new(body)).expect("request");
        let resp = sender.send_request(req).await.expect("send request");
        let (parts, body) = resp.into_parts();
        let body = body.collect().await.expect("read body").to_bytes();
        Reply {
            status: parts.status.as_u16(),
            headers: parts.headers,
            body,
        }
    };
    tokio::time::timeout(Duration::from_secs(30), fut)
        .await
        .expect("request timed out after 30s")
}

/// A streamed plugin handler that runs `code` in `access`, then answers 200 `{"ok": true}`
/// (so a 200 means the code did not fail the request).
pub fn access_handler(code: &str) -> String {
    format!(
        "local P = {{ PRIORITY = 1, VERSION = \"1.0.0\" }}\nfunction P:access(conf)\n  {code}\n  return kong.response.exit(200, {{ ok = true }})\nend\nreturn P\n"
    )
}

/// The schema of a streamed plugin without config fields.
pub fn empty_schema(name: &str) -> String {
    format!("return {{ name = \"{name}\", fields = {{ {{ config = {{ type = \"record\", fields = {{}} }} }} }} }}")
}
