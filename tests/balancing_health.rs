//! Health checks over real loopback upstreams: a killed target taken out by passive checks
//! and by active probes and brought back when it returns; every target down gives Kong's 503;
//! the threshold; health kept across a reload; the admin health endpoint.

mod common;

use std::time::{Duration, Instant};

use common::{render, Proxy, Reply, Upstream};

/// A service balanced (round-robin) over upstream `pool` with `checks` as its
/// `healthchecks` (YAML indented by 6) and targets `{upstream}`, `{upstream2}`, ...
fn config(checks: &str, targets: usize, tag: &str) -> String {
    let mut out = format!(
        "_format_version: \"3.0\"\nservices:\n  - name: s\n    host: pool\n    port: 80\n    retries: 2\n    connect_timeout: 1000\n    read_timeout: 2000\n    tags: [{tag}]\n    routes:\n      - name: r\n        paths: [/]\nupstreams:\n  - name: pool\n    healthchecks:\n{checks}    targets:\n"
    );
    for i in 0..targets {
        let key = if i == 0 {
            "{upstream}".to_string()
        } else {
            format!("{{upstream{}}}", i + 1)
        };
        out.push_str(&format!("      - target: \"{key}\"\n"));
    }
    out
}

const NO_PEER: &str = "failure to get a peer from the ring-balancer";

fn who(r: &Reply) -> String {
    assert_eq!(r.status, 200, "{}", r.text());
    r.header("x-upstream-name").unwrap_or("?").to_string()
}

/// The admin API's health word for `target` ("HEALTHY", "UNHEALTHY", ...).
async fn health(proxy: &Proxy, target: std::net::SocketAddr) -> String {
    let body = proxy
        .admin("GET", "/upstreams/pool/health", "")
        .await
        .json();
    body["data"]
        .as_array()
        .and_then(|d| d.iter().find(|t| t["target"] == target.to_string()))
        .and_then(|t| t["health"].as_str())
        .unwrap_or("missing")
        .to_string()
}

/// Waits (bounded) until the admin API shows `target` as `want`; with `traffic`, sends a
/// request each round (passive checks need traffic) and checks it succeeded.
async fn wait_health(proxy: &Proxy, target: std::net::SocketAddr, want: &str, traffic: bool) {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let now = health(proxy, target).await;
        if now == want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{target} still {now}, not {want}\n{}",
            proxy.stderr()
        );
        if traffic {
            who(&proxy.get("/x", &[]).await);
        } else {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// Binds a new upstream on the address of a dropped one (bounded retries).
async fn restart(name: &'static str, addr: std::net::SocketAddr) -> Upstream {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(up) = Upstream::start_named_on(name, addr).await {
            return up;
        }
        assert!(Instant::now() < deadline, "could not bind {addr} again");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn names(proxy: &Proxy, n: usize) -> Vec<String> {
    let mut out = Vec::new();
    for _ in 0..n {
        out.push(who(&proxy.get("/x", &[]).await));
    }
    out
}

#[tokio::test]
async fn passive_checks_take_a_dead_target_out_and_probes_bring_it_back() {
    let a = Upstream::start_named("a").await;
    let b = Upstream::start_named("b").await;
    let checks = "      active:\n        healthy: {successes: 1}\n        unhealthy: {interval: 0.1}\n      passive:\n        unhealthy: {tcp_failures: 1}\n";
    let proxy =
        Proxy::start_with_admin(&render(&config(checks, 2, "t"), &[&a, &b]), &["--no-watch"]).await;
    assert_eq!(health(&proxy, b.addr).await, "HEALTHY");
    let b_addr = b.addr;

    drop(b);
    // Traffic finds it dead (and is retried on `a`, so every request succeeds).
    wait_health(&proxy, b_addr, "UNHEALTHY", true).await;
    assert!(names(&proxy, 10).await.iter().all(|n| n == "a"));

    // Back on the same port: the probes of unhealthy targets see it and let traffic in.
    let _b = restart("b", b_addr).await;
    wait_health(&proxy, b_addr, "HEALTHY", false).await;
    assert!(names(&proxy, 10).await.iter().any(|n| n == "b"));
}

#[tokio::test]
async fn active_probes_find_a_dead_target_without_traffic() {
    let a = Upstream::start_named("a").await;
    let b = Upstream::start_named("b").await;
    let checks = "      active:\n        http_path: /health\n        timeout: 0.5\n        headers: {x-probe: [yes]}\n        healthy: {interval: 0.1, successes: 1}\n        unhealthy: {interval: 0.1, tcp_failures: 1, http_failures: 1, timeouts: 1}\n";
    let proxy =
        Proxy::start_with_admin(&render(&config(checks, 2, "t"), &[&a, &b]), &["--no-watch"]).await;
    let probes = a.wait_for(1).await;
    let probe = probes.first().expect("a probe reached a");
    assert_eq!(probe.uri, "/health");
    assert_eq!(probe.header("x-probe"), Some("yes"));
    assert_eq!(probe.header("host"), Some(a.addr.ip().to_string().as_str()));

    let b_addr = b.addr;
    drop(b);
    wait_health(&proxy, b_addr, "UNHEALTHY", false).await;
    assert!(names(&proxy, 10).await.iter().all(|n| n == "a"));

    let _b = restart("b", b_addr).await;
    wait_health(&proxy, b_addr, "HEALTHY", false).await;
    assert!(names(&proxy, 10).await.iter().any(|n| n == "b"));
}

#[tokio::test]
async fn all_targets_unhealthy_gives_kongs_503() {
    let a = Upstream::start_named("a").await;
    let b = Upstream::start_named("b").await;
    // Passive HTTP failures: a 500 from a target counts against it.
    let checks = "      passive:\n        unhealthy: {http_failures: 1}\n";
    let proxy =
        Proxy::start_with_admin(&render(&config(checks, 2, "t"), &[&a, &b]), &["--no-watch"]).await;
    for _ in 0..2 {
        let r = proxy.get("/status/500", &[]).await;
        assert_eq!(r.status, 500, "the upstream's own answer: {}", r.text());
    }
    assert_eq!(health(&proxy, a.addr).await, "UNHEALTHY");
    assert_eq!(health(&proxy, b.addr).await, "UNHEALTHY");
    let r = proxy.get("/x", &[]).await;
    assert_eq!(r.status, 503, "{}", r.text());
    assert_eq!(r.json(), serde_json::json!({ "message": NO_PEER }));
    let whole = proxy
        .admin("GET", "/upstreams/pool/health?balancer_health=1", "")
        .await
        .json();
    assert_eq!(whole["data"]["health"], "UNHEALTHY", "{whole}");
    assert_eq!(
        whole["data"]["details"]["weight"]["available"], 0,
        "{whole}"
    );

    // Dead targets: connection failures make them unhealthy; then 503 at once.
    let c = Upstream::start_named("c").await;
    let d = Upstream::start_named("d").await;
    let checks = "      passive:\n        unhealthy: {tcp_failures: 1}\n";
    let proxy = Proxy::start(&render(&config(checks, 2, "t"), &[&c, &d])).await;
    drop((c, d));
    let deadline = Instant::now() + Duration::from_secs(10);
    let r = loop {
        let r = proxy.get("/x", &[]).await;
        if r.status == 503 || Instant::now() > deadline {
            break r;
        }
        assert_eq!(r.status, 502, "{}", r.text());
    };
    assert_eq!(r.json(), serde_json::json!({ "message": NO_PEER }));

    // Only weight 0: never a peer.
    let cfg = "_format_version: \"3.0\"\nservices: [{name: s, host: pool, routes: [{name: r, paths: [/]}]}]\nupstreams: [{name: pool, targets: [{target: \"127.0.0.1:9\", weight: 0}]}]\n";
    let proxy = Proxy::start(cfg).await;
    let r = proxy.get("/x", &[]).await;
    assert_eq!(
        (r.status, r.json()),
        (503, serde_json::json!({ "message": NO_PEER }))
    );
}

#[tokio::test]
async fn below_the_threshold_the_upstream_takes_no_traffic() {
    let a = Upstream::start_named("a").await;
    let b = Upstream::start_named("b").await;
    let checks = "      threshold: 60\n      passive:\n        unhealthy: {http_failures: 1}\n";
    let proxy =
        Proxy::start_with_admin(&render(&config(checks, 2, "t"), &[&a, &b]), &["--no-watch"]).await;
    assert_eq!(proxy.get("/status/500", &[]).await.status, 500);
    // Half the weight is left, not more than 60%: no peer although one target is healthy.
    let r = proxy.get("/x", &[]).await;
    assert_eq!(
        (r.status, r.json()),
        (503, serde_json::json!({ "message": NO_PEER }))
    );
}

#[tokio::test]
async fn health_is_kept_across_a_reload() {
    let a = Upstream::start_named("a").await;
    let b = Upstream::start_named("b").await;
    let c = Upstream::start_named("c").await;
    // Passive checks only: nothing brings an unhealthy target back but a restart of the
    // gateway (as in Kong).
    let checks = "      passive:\n        unhealthy: {tcp_failures: 1}\n";
    let proxy = Proxy::start_with_admin(
        &render(&config(checks, 2, "v1"), &[&a, &b]),
        &["--no-watch"],
    )
    .await;
    let b_addr = b.addr;
    drop(b);
    wait_health(&proxy, b_addr, "UNHEALTHY", true).await;
    let _b = restart("b", b_addr).await;

    // A new configuration with the same targets and one more.
    let r = proxy
        .admin(
            "POST",
            "/config",
            &render(&config(checks, 3, "v2"), &[&a, &_b, &c]),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(health(&proxy, b_addr).await, "UNHEALTHY");
    assert_eq!(health(&proxy, c.addr).await, "HEALTHY");
    let seen = names(&proxy, 20).await;
    assert!(!seen.iter().any(|n| n == "b"), "{seen:?}");
    assert!(seen.iter().any(|n| n == "c"), "{seen:?}");

    // Health checks off: the same target takes traffic again.
    let r = proxy
        .admin(
            "POST",
            "/config",
            &render(&config("      threshold: 0\n", 3, "v3"), &[&a, &_b, &c]),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(health(&proxy, b_addr).await, "HEALTHCHECKS_OFF");
    assert!(names(&proxy, 6).await.iter().any(|n| n == "b"));
}

#[tokio::test]
async fn admin_health_endpoint_has_kongs_shape() {
    let a = Upstream::start_named("a").await;
    let proxy = Proxy::start_with_admin(
        &render(&config("      threshold: 0\n", 1, "t"), &[&a]),
        &["--no-watch"],
    )
    .await;
    let body = proxy
        .admin("GET", "/upstreams/pool/health", "")
        .await
        .json();
    let t = &body["data"][0];
    assert_eq!(t["target"], a.addr.to_string(), "{body}");
    assert_eq!(t["health"], "HEALTHCHECKS_OFF");
    assert_eq!(t["weight"], 100);
    assert_eq!(t["data"]["addresses"][0]["port"], a.addr.port());
    assert!(
        body["node_id"].is_string() && body["next"].is_null(),
        "{body}"
    );
    let r = proxy.admin("GET", "/upstreams/nope/health", "").await;
    assert_eq!(r.status, 404);
}
