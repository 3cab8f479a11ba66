//! Hot reload: file edits, editor renames, ConfigMap symlink swaps, SIGHUP, POST /config,
//! rejected configs that leave the running one serving, and reloads under load.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::{Proxy, Upstream};
use sluice::snapshot::hash_text;

/// A config whose routes are answered by request-termination with a body naming `version`,
/// plus a proxied route whose service path names it too.
fn config(version: u32, up: &Upstream) -> String {
    format!(
        r#"_format_version: "3.0"
services:
  - name: up
    url: http://{up}/v{version}
    routes:
      - name: proxied
        paths: [/p]
routes:
  - name: version
    paths: [/version]
    plugins:
      - name: request-termination
        config: {{status_code: 200, body: "v{version}", content_type: text/plain}}
"#,
        up = up.addr
    )
}

const INVALID: &str = "_format_version: \"3.0\"\nservices:\n  - name: broken\n    url: not-a-url\n";

async fn version(proxy: &Proxy) -> String {
    let r = proxy.get("/version", &[]).await;
    assert_eq!(r.status, 200, "{}", r.text());
    r.text()
}

/// Writes `text` to `path` the way editors do: a temporary file renamed over the original.
fn write_atomically(path: &Path, text: &str) {
    let tmp = path.with_extension("tmp~");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

#[tokio::test]
async fn in_place_edit_is_applied() {
    let up = Upstream::start().await;
    let proxy = Proxy::start_with_admin(&config(1, &up), &[]).await;
    assert_eq!(version(&proxy).await, "v1");
    let next = config(2, &up);
    std::fs::write(&proxy.config_path, &next).unwrap();
    assert!(proxy.wait_for_attempt(&hash_text(&next)).await);
    assert_eq!(version(&proxy).await, "v2");
    let r = proxy.get("/p/x", &[]).await;
    assert_eq!(r.status, 200);
    assert_eq!(up.last().uri, "/v2/x");
}

#[tokio::test]
async fn editor_rename_is_applied() {
    let up = Upstream::start().await;
    let proxy = Proxy::start_with_admin(&config(1, &up), &[]).await;
    let next = config(2, &up);
    write_atomically(&proxy.config_path, &next);
    assert!(proxy.wait_for_attempt(&hash_text(&next)).await);
    assert_eq!(version(&proxy).await, "v2");
}

#[tokio::test]
async fn configmap_symlink_swap_is_applied() {
    // The kubelet's layout: kong.yaml -> ..data/kong.yaml, ..data -> ..<timestamp>/
    let up = Upstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let first = root.join("..2026_11_22_01");
    std::fs::create_dir(&first).unwrap();
    std::fs::write(first.join("kong.yaml"), config(1, &up)).unwrap();
    std::os::unix::fs::symlink("..2026_11_22_01", root.join("..data")).unwrap();
    std::os::unix::fs::symlink("..data/kong.yaml", root.join("kong.yaml")).unwrap();
    let path = root.join("kong.yaml");
    let proxy = Proxy::start_in(dir, path, true, &[]).await;
    assert_eq!(version(&proxy).await, "v1");

    // An update: a new timestamped directory, a temporary symlink to it renamed over ..data.
    let root = proxy.config_path.parent().unwrap().to_path_buf();
    let second = root.join("..2026_11_22_02");
    std::fs::create_dir(&second).unwrap();
    let next = config(2, &up);
    std::fs::write(second.join("kong.yaml"), &next).unwrap();
    std::os::unix::fs::symlink("..2026_11_22_02", root.join("..data_tmp")).unwrap();
    std::fs::rename(root.join("..data_tmp"), root.join("..data")).unwrap();
    std::fs::remove_dir_all(root.join("..2026_11_22_01")).unwrap();
    assert!(proxy.wait_for_attempt(&hash_text(&next)).await);
    assert_eq!(version(&proxy).await, "v2");
}

#[tokio::test]
async fn invalid_edit_is_rejected_and_the_old_config_keeps_serving() {
    let up = Upstream::start().await;
    let proxy = Proxy::start_with_admin(&config(1, &up), &[]).await;
    write_atomically(&proxy.config_path, INVALID);
    assert!(!proxy.wait_for_attempt(&hash_text(INVALID)).await);
    assert_eq!(version(&proxy).await, "v1");
    let status = proxy.admin("GET", "/status", "").await.json();
    let failure = &status["config"]["last_failure"];
    assert_eq!(failure["hash"], hash_text(INVALID));
    let errors = failure["errors"].to_string();
    assert!(
        errors.contains("kong.yaml:4:10: services[0].url"),
        "{errors}"
    );
    assert_eq!(status["config"]["generation"], 1);
    let metrics = proxy.admin("GET", "/metrics", "").await.text();
    assert!(
        metrics.contains("sluice_config_reloads_total{result=\"failure\"} 1"),
        "{metrics}"
    );
    // Kong's request metrics, labelled as Kong's prometheus plugin does. They are recorded in
    // the log phase, after the response went out: wait for them (bounded).
    let requests = "kong_http_requests_total{code=\"200\",consumer=\"\",route=\"version\",service=\"\",source=\"exit\",workspace=\"default\"} 1";
    let latency =
        "kong_request_latency_ms_count{route=\"version\",service=\"\",workspace=\"default\"} 1";
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let metrics = proxy.admin("GET", "/metrics", "").await.text();
        if metrics.contains(requests) && metrics.contains(latency) {
            break;
        }
        assert!(Instant::now() < deadline, "{metrics}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn sighup_reloads() {
    let up = Upstream::start().await;
    // No watcher: only the signal can reload.
    let proxy = Proxy::start_with_admin(&config(1, &up), &["--no-watch"]).await;
    let next = config(2, &up);
    std::fs::write(&proxy.config_path, &next).unwrap();
    let status = std::process::Command::new("kill")
        .args(["-HUP", &proxy.pid().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    assert!(proxy.wait_for_attempt(&hash_text(&next)).await);
    assert_eq!(version(&proxy).await, "v2");
}

#[tokio::test]
async fn post_config_applies_and_rejects() {
    let up = Upstream::start().await;
    let proxy = Proxy::start_with_admin(&config(1, &up), &["--no-watch"]).await;
    let r = proxy.admin("POST", "/config", &config(3, &up)).await;
    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(version(&proxy).await, "v3");
    // Same text with check_hash: nothing to do.
    let r = proxy
        .admin("POST", "/config?check_hash=1", &config(3, &up))
        .await;
    assert_eq!(r.status, 304);

    let r = proxy.admin("POST", "/config", INVALID).await;
    assert_eq!(r.status, 400);
    let body = r.json();
    assert_eq!(body["name"], "invalid declarative configuration");
    assert!(body["message"]
        .as_str()
        .unwrap()
        .starts_with("declarative config is invalid: "));
    assert!(body["fields"]["services[0].url"].is_array(), "{body}");
    assert_eq!(version(&proxy).await, "v3");

    let r = proxy.admin("GET", "/routes/version", "").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["paths"], serde_json::json!(["/version"]));
    let r = proxy.admin("GET", "/services", "").await;
    assert_eq!(r.json()["data"][0]["path"], "/v3");
    let r = proxy.admin("GET", "/config", "").await;
    assert_eq!(r.json()["config"], config(3, &up));
}

/// What the peer sends next (one read, within `secs`), as text.
async fn read_some(s: &mut tokio::net::TcpStream, secs: u64, what: &str) -> String {
    use tokio::io::AsyncReadExt;
    let mut buf = vec![0u8; 256];
    let n = tokio::time::timeout(Duration::from_secs(secs), s.read(&mut buf))
        .await
        .expect(what)
        .unwrap();
    String::from_utf8_lossy(&buf[..n]).to_string()
}

/// curl sends `Expect: 100-continue` with bodies over 1 MiB (KIC-sized configs) and waits a
/// second for the interim answer before it sends the body; the admin API answers at once.
#[tokio::test]
async fn post_config_answers_expect_100_continue() {
    use tokio::io::AsyncWriteExt;
    let up = Upstream::start().await;
    let proxy = Proxy::start_with_admin(&config(1, &up), &["--no-watch"]).await;
    let body = config(4, &up);
    let mut s = tokio::net::TcpStream::connect(proxy.admin.unwrap())
        .await
        .unwrap();
    let head = format!(
        "POST /config HTTP/1.1\r\nHost: admin\r\nContent-Type: text/yaml\r\nContent-Length: {}\r\nExpect: 100-continue\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).await.unwrap();
    // The body is not sent until the interim answer arrives (a client would wait a second).
    let interim = read_some(&mut s, 5, "no 100 Continue").await;
    assert!(
        interim.starts_with("HTTP/1.1 100 Continue\r\n"),
        "{interim:?}"
    );
    s.write_all(body.as_bytes()).await.unwrap();
    let answer = read_some(&mut s, 10, "no final answer").await;
    assert!(answer.starts_with("HTTP/1.1 201 "), "{answer:?}");
    assert_eq!(version(&proxy).await, "v4");

    // A declared body over the limit is refused before it is sent.
    let mut s = tokio::net::TcpStream::connect(proxy.admin.unwrap())
        .await
        .unwrap();
    s.write_all(b"POST /config HTTP/1.1\r\nHost: admin\r\nContent-Length: 1000000000\r\nExpect: 100-continue\r\n\r\n")
        .await
        .unwrap();
    let answer = read_some(&mut s, 5, "no answer").await;
    assert!(answer.starts_with("HTTP/1.1 413 "), "{answer:?}");
}

#[tokio::test]
async fn admin_token_is_enforced() {
    let up = Upstream::start().await;
    let proxy = Proxy::start_with_admin(&config(1, &up), &["--admin-token", "s3cret"]).await;
    let r = proxy.admin("GET", "/status", "").await;
    assert_eq!(r.status, 401);
    let addr = proxy.admin.unwrap();
    let r = common::send(
        addr,
        "GET",
        "/status",
        &[("authorization", "Bearer s3cret")],
        Default::default(),
    )
    .await;
    assert_eq!(r.status, 200);
}

#[tokio::test]
async fn reloads_under_load_lose_no_request_and_never_mix_configs() {
    let up = Upstream::start().await;
    let proxy = Proxy::start_with_admin(&config(0, &up), &[]).await;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let addr = proxy.addr;
    let client = {
        let stop = stop.clone();
        tokio::spawn(async move {
            let mut seen = Vec::new();
            let deadline = Instant::now() + Duration::from_secs(120);
            while !stop.load(std::sync::atomic::Ordering::Relaxed) && Instant::now() < deadline {
                let r = common::send(addr, "GET", "/version", &[], Default::default()).await;
                assert_eq!(
                    r.status,
                    200,
                    "a request failed during reloads: {}",
                    r.text()
                );
                seen.push(r.text());
            }
            seen
        })
    };
    // 10 valid and 10 invalid configs, alternating; each applied (or rejected) before the next.
    for n in 1..=10u32 {
        let next = config(n, &up);
        write_atomically(&proxy.config_path, &next);
        assert!(proxy.wait_for_attempt(&hash_text(&next)).await);
        let bad = format!("{INVALID}# attempt {n}\n");
        write_atomically(&proxy.config_path, &bad);
        assert!(!proxy.wait_for_attempt(&hash_text(&bad)).await);
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let seen = client.await.unwrap();
    assert!(
        seen.len() > 20,
        "the client made too few requests: {}",
        seen.len()
    );
    // Each answer names one whole config, and a sequential client never goes back in time.
    let versions: Vec<u32> = seen
        .iter()
        .map(|v| {
            v.strip_prefix('v')
                .and_then(|n| n.parse().ok())
                .unwrap_or_else(|| panic!("bad answer {v}"))
        })
        .collect();
    assert!(versions.windows(2).all(|w| w[0] <= w[1]), "{versions:?}");
    assert_eq!(*versions.last().unwrap(), 10);
}

#[tokio::test]
async fn sigterm_drains_in_flight_requests() {
    let up = Upstream::start().await;
    let mut proxy = Proxy::start_with_admin(&config(1, &up), &[]).await;
    let addr = proxy.addr;
    let slow = tokio::spawn(async move {
        common::send(addr, "GET", "/p/delay/700", &[], Default::default()).await
    });
    // Signal once the upstream has the request, so it is truly in flight.
    let deadline = Instant::now() + Duration::from_secs(10);
    while up.seen().is_empty() {
        assert!(
            Instant::now() < deadline,
            "the request never reached the upstream"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let status = std::process::Command::new("kill")
        .args(["-TERM", &proxy.pid().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let r = slow.await.unwrap();
    assert_eq!(
        r.status,
        200,
        "the in-flight request completes: {}",
        r.text()
    );
    // Then the process exits promptly (it does not wait out the whole drain timeout).
    let deadline = Instant::now() + Duration::from_secs(8);
    while !proxy.exited() {
        assert!(
            Instant::now() < deadline,
            "the proxy did not exit after draining"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
