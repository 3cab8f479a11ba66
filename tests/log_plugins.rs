//! file-log and http-log end to end: Kong's serializer shape written to a real file and
//! posted to a real loopback receiver, batched and retried off the request path.

mod common;

use std::time::{Duration, Instant};

use common::{render, Proxy, Upstream};

fn config(plugin: &str, plugin_config: &str, receiver: Option<&Upstream>) -> String {
    let mut cfg = format!(
        r#"
_format_version: "3.0"
consumers:
  - username: ann
services:
  - name: svc
    url: http://{{upstream}}/base
    routes:
      - name: logged
        paths: [/logged]
plugins:
  - name: {plugin}
    config: {plugin_config}
"#
    );
    if let Some(r) = receiver {
        cfg = cfg.replace("{receiver}", &r.addr.to_string());
    }
    cfg
}

/// The file's lines once it has `n` (polled: the log phase runs after the response is sent).
async fn lines(path: &std::path::Path, n: usize) -> Vec<serde_json::Value> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).expect("each line is JSON"))
            .collect();
        if lines.len() >= n || Instant::now() > deadline {
            return lines;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn file_log_writes_one_serialized_json_line_per_request() {
    let up = Upstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("access.log");
    let cfg = config("file-log", &format!("{{path: {}}}", path.display()), None);
    let proxy = Proxy::start(&render(&cfg, &[&up])).await;
    let r = proxy
        .get(
            "/logged/x?a=1&a=2",
            &[("authorization", "Bearer secret"), ("x-trace", "t1")],
        )
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(proxy.get("/nowhere", &[]).await.status, 404);
    let lines = lines(&path, 2).await;
    assert_eq!(lines.len(), 2, "{lines:?}");
    // Each line is written after its response went out: the second request's line may come
    // first.
    let by_uri = |uri: &str| {
        lines
            .iter()
            .find(|l| l["request"]["uri"] == uri)
            .unwrap_or_else(|| panic!("no line for {uri}: {lines:?}"))
    };
    let l = by_uri("/logged/x?a=1&a=2");
    assert_eq!(l["request"]["method"], "GET");
    assert_eq!(l["request"]["uri"], "/logged/x?a=1&a=2");
    assert_eq!(
        l["request"]["querystring"]["a"],
        serde_json::json!(["1", "2"])
    );
    assert_eq!(l["request"]["headers"]["x-trace"], "t1");
    assert_eq!(
        l["request"]["headers"]["authorization"], "REDACTED",
        "credentials are never written to logs"
    );
    assert_eq!(l["upstream_uri"], "/base/x?a=1&a=2");
    assert_eq!(l["response"]["status"], 200);
    assert!(l["response"]["size"].as_u64().unwrap() > 0);
    assert_eq!(l["route"]["name"], "logged");
    assert_eq!(l["service"]["name"], "svc");
    assert_eq!(l["client_ip"], "127.0.0.1");
    assert_eq!(l["tries"][0]["port"], up.addr.port());
    assert!(l["latencies"]["request"].as_u64().is_some());
    assert!(l["started_at"].as_u64().unwrap() > 1_700_000_000_000);
    // A global instance logs unrouted requests too.
    assert_eq!(by_uri("/nowhere")["response"]["status"], 404);
    assert!(by_uri("/nowhere").get("route").is_none());
}

#[tokio::test]
async fn http_log_posts_each_entry_to_the_endpoint() {
    let up = Upstream::start().await;
    let receiver = Upstream::start().await;
    let cfg = config(
        "http-log",
        "{http_endpoint: 'http://user:pw@{receiver}/logs', headers: {x-log-token: abc}}",
        Some(&receiver),
    );
    let proxy = Proxy::start(&render(&cfg, &[&up])).await;
    for i in 0..3 {
        let r = proxy.get(&format!("/logged/{i}"), &[]).await;
        assert_eq!(r.status, 200);
    }
    let seen = receiver.wait_for(3).await;
    assert_eq!(seen.len(), 3);
    let mut uris: Vec<String> = seen
        .iter()
        .map(|s| {
            assert_eq!(s.method, "POST");
            assert_eq!(s.uri, "/logs");
            assert_eq!(s.header("content-type"), Some("application/json"));
            assert_eq!(s.header("x-log-token"), Some("abc"));
            assert_eq!(s.header("authorization"), Some("Basic dXNlcjpwdw=="));
            let entry: serde_json::Value = serde_json::from_slice(&s.body).unwrap();
            entry["request"]["uri"].as_str().unwrap().to_string()
        })
        .collect();
    uris.sort();
    assert_eq!(uris, ["/logged/0", "/logged/1", "/logged/2"]);
}

#[tokio::test]
async fn http_log_batches_entries_into_json_arrays() {
    let up = Upstream::start().await;
    let receiver = Upstream::start().await;
    let cfg = config(
        "http-log",
        "{http_endpoint: 'http://{receiver}/batch', queue: {max_batch_size: 10, max_coalescing_delay: 0.2}}",
        Some(&receiver),
    );
    let proxy = Proxy::start(&render(&cfg, &[&up])).await;
    for _ in 0..4 {
        assert_eq!(proxy.get("/logged", &[]).await.status, 200);
    }
    // Entries are counted across however many batches the timing produced.
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut entries = 0;
    let mut batches = 1;
    while entries < 4 && Instant::now() < deadline {
        let seen = receiver.wait_for(batches).await;
        entries = seen
            .iter()
            .map(|s| {
                let v: serde_json::Value = serde_json::from_slice(&s.body).unwrap();
                v.as_array().expect("a batch is a JSON array").len()
            })
            .sum();
        batches = seen.len() + 1;
    }
    assert_eq!(entries, 4);
}

#[tokio::test]
async fn http_log_retries_a_failing_endpoint_without_slowing_requests() {
    let up = Upstream::start().await;
    let receiver = Upstream::start().await;
    // The receiver answers 500 to /status/500: the batch is retried until max_retry_time.
    let cfg = config(
        "http-log",
        "{http_endpoint: 'http://{receiver}/status/500', queue: {initial_retry_delay: 0.01, max_retry_time: 5}}",
        Some(&receiver),
    );
    let proxy = Proxy::start(&render(&cfg, &[&up])).await;
    assert_eq!(proxy.get("/logged", &[]).await.status, 200);
    let seen = receiver.wait_for(3).await;
    assert!(seen.len() >= 3, "retried: {} attempts", seen.len());

    // A slow endpoint does not hold requests back.
    let slow = Upstream::start().await;
    let cfg = config(
        "http-log",
        "{http_endpoint: 'http://{receiver}/delay/3000'}",
        Some(&slow),
    );
    let proxy = Proxy::start(&render(&cfg, &[&up])).await;
    let started = Instant::now();
    for _ in 0..3 {
        assert_eq!(proxy.get("/logged", &[]).await.status, 200);
    }
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "requests waited for the log endpoint: {:?}",
        started.elapsed()
    );
}

#[test]
fn log_plugin_config_errors_are_located() {
    for (plugin, conf, want) in [
        ("file-log", "{}", "config.path: required field missing"),
        ("file-log", "{path: 'a*b'}", "not a valid filename"),
        ("http-log", "{http_endpoint: 'not a url'}", "http_endpoint"),
        (
            "http-log",
            "{http_endpoint: 'http://x', method: GET}",
            "expected one of",
        ),
    ] {
        let text = config(plugin, conf, None).replace("{upstream}", "127.0.0.1:1");
        let err = sluice::snapshot::load_str(&text, "kong.yaml", 1)
            .unwrap_err()
            .to_string();
        assert!(err.contains(want), "{plugin} {conf}: {err}");
        assert!(err.contains("kong.yaml:1"), "{err}");
    }
}

#[tokio::test]
async fn prometheus_records_only_the_requests_and_families_it_is_configured_for() {
    let up = Upstream::start().await;
    let cfg = r#"
_format_version: "3.0"
services:
  - name: svc
    url: http://{upstream}
    routes:
      - name: measured
        paths: [/measured]
        plugins:
          - name: prometheus
            config: {status_code_metrics: true}
      - name: unmeasured
        paths: [/unmeasured]
"#;
    let proxy = Proxy::start_with_admin(&render(cfg, &[&up]), &["--no-watch"]).await;
    assert_eq!(proxy.get("/measured", &[]).await.status, 200);
    assert_eq!(proxy.get("/unmeasured", &[]).await.status, 200);
    let metrics = proxy.admin("GET", "/metrics", "").await.text();
    assert!(
        metrics.contains("kong_http_requests_total{code=\"200\",consumer=\"\",route=\"measured\",service=\"svc\",source=\"service\",workspace=\"default\"} 1"),
        "{metrics}"
    );
    assert!(!metrics.contains("route=\"unmeasured\""), "{metrics}");
    assert!(
        !metrics.contains("kong_request_latency_ms_bucket{route=\"measured\""),
        "latency_metrics is off: {metrics}"
    );
}

/// Without a prometheus plugin every request is counted (Kong's default flags): one series per
/// route, consumer, status and source, each counted once per request, the same route under two
/// statuses and with and without a consumer, and a request no route matched.
#[tokio::test]
async fn request_metrics_keep_routes_consumers_and_statuses_apart() {
    let up = Upstream::start().await;
    let cfg = r#"
_format_version: "3.0"
consumers:
  - username: alice
    keyauth_credentials:
      - key: alice-key
services:
  - name: svc
    url: http://{upstream}
    routes:
      - name: open
        paths: [/open]
      - name: keyed
        paths: [/keyed]
        plugins:
          - name: key-auth
"#;
    let proxy = Proxy::start_with_admin(&render(cfg, &[&up]), &["--no-watch"]).await;
    for (path, key, status) in [
        ("/open", None, 200),
        ("/keyed", Some("alice-key"), 200),
        ("/open", None, 200),
        ("/keyed", None, 401),
        ("/keyed", Some("alice-key"), 200),
        ("/nowhere", None, 404),
        ("/keyed", Some("alice-key"), 200),
    ] {
        let headers: Vec<(&str, &str)> = key.map(|k| ("apikey", k)).into_iter().collect();
        assert_eq!(proxy.get(path, &headers).await.status, status, "{path}");
    }
    let metrics = proxy.admin("GET", "/metrics", "").await.text();
    let count = |series: &str| {
        metrics
            .lines()
            .filter(|l| l.starts_with(series))
            .map(|l| l.rsplit(' ').next().unwrap_or("").to_string())
            .collect::<Vec<_>>()
    };
    let requests = "kong_http_requests_total{code=";
    assert_eq!(
        count(&format!(
            "{requests}\"200\",consumer=\"\",route=\"open\",service=\"svc\""
        )),
        ["2"],
        "{metrics}"
    );
    assert_eq!(
        count(&format!(
            "{requests}\"200\",consumer=\"alice\",route=\"keyed\",service=\"svc\""
        )),
        ["3"],
        "{metrics}"
    );
    assert_eq!(
        count(&format!(
            "{requests}\"401\",consumer=\"\",route=\"keyed\",service=\"svc\""
        )),
        ["1"],
        "{metrics}"
    );
    assert_eq!(
        count(&format!(
            "{requests}\"404\",consumer=\"\",route=\"\",service=\"\""
        )),
        ["1"],
        "{metrics}"
    );
    assert_eq!(
        count(&format!("{requests}\"200\",consumer=\"\",route=\"keyed\"")),
        Vec::<String>::new(),
        "{metrics}"
    );
    // Latency per route, consumers together: keyed saw four requests.
    assert_eq!(
        count("kong_request_latency_ms_count{route=\"keyed\",service=\"svc\""),
        ["4"],
        "{metrics}"
    );
}

/// http-log's `http_endpoint` and header values are referenceable in Kong: `{vault://...}`
/// there (through a `vaults:` entity's prefix, and a key of a JSON value) is posted with the
/// secret's value; the admin API shows the plugin as written.
#[tokio::test]
async fn http_log_reads_vault_references_from_the_environment() {
    let up = Upstream::start().await;
    let receiver = Upstream::start().await;
    let cfg = config(
        "http-log",
        "{http_endpoint: '{vault://logs/endpoint}', headers: {authorization: '{vault://env/sluice-log-creds/token}'}}",
        None,
    )
    .replace(
        "consumers:",
        "vaults:\n  - name: env\n    prefix: logs\n    config: {prefix: SLUICE_LOG_}\nconsumers:",
    );
    let endpoint = format!("http://{}/collect", receiver.addr);
    let proxy = Proxy::start_with_env(
        &render(&cfg, &[&up]),
        &[],
        &[
            ("SLUICE_LOG_ENDPOINT", &endpoint),
            ("SLUICE_LOG_CREDS", r#"{"token": "Bearer s3cret"}"#),
        ],
    )
    .await;
    let r = proxy.get("/logged/x", &[]).await;
    assert_eq!(r.status, 200, "{}", proxy.stderr());
    let seen = receiver.wait_for(1).await;
    assert_eq!(seen[0].uri, "/collect");
    assert_eq!(seen[0].header("authorization"), Some("Bearer s3cret"));
    let plugins = proxy.admin("GET", "/plugins", "").await.text();
    assert!(plugins.contains("{vault://logs/endpoint}"), "{plugins}");
    assert!(!plugins.contains("s3cret"), "{plugins}");
    assert!(!proxy.stderr().contains("s3cret"));
}
