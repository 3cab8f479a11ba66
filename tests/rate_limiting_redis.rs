//! rate-limiting and response-ratelimiting with `policy: redis` against a real redis-server:
//! replicas sharing one limit, Kong's key layout, sync_rate, Redis failing and coming back,
//! authentication errors, and Kong's deprecated flat redis_* fields.

mod common;

use std::time::{Duration, Instant};

use common::redis::Redis;
use common::{render, Proxy, Upstream};

const ROUTE_ID: &str = "6f1e4d3c-2b1a-4c5d-8e7f-9a0b1c2d3e4f";

fn config(plugin_config: &str) -> String {
    format!(
        r#"
_format_version: "3.0"
services:
  - name: s
    url: http://{{upstream}}
    routes:
      - name: limited
        id: {ROUTE_ID}
        paths: [/limited]
        plugins:
          - name: rate-limiting
            config: {plugin_config}
"#
    )
}

/// Kong's window start of the current day, in milliseconds.
fn day_start_ms() -> u64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    (now - now % 86400) * 1000
}

async fn statuses(proxy: &Proxy, n: usize) -> Vec<u16> {
    let mut out = Vec::new();
    for _ in 0..n {
        out.push(proxy.get("/limited", &[]).await.status);
    }
    out
}

#[tokio::test]
async fn two_gateways_share_one_limit_under_kongs_keys() {
    let redis = Redis::start(&[]).await;
    let up = Upstream::start().await;
    let cfg = render(
        &config(&format!(
            "{{day: 5, limit_by: ip, policy: redis, redis: {{host: 127.0.0.1, port: {}}}}}",
            redis.port
        )),
        &[&up],
    );
    let a = Proxy::start(&cfg).await;
    let b = Proxy::start(&cfg).await;
    let mut passed = 0;
    let mut refused = 0;
    for i in 0..8 {
        let proxy = if i % 2 == 0 { &a } else { &b };
        let r = proxy.get("/limited", &[]).await;
        match r.status {
            200 => {
                passed += 1;
                assert_eq!(
                    r.header("x-ratelimit-remaining-day"),
                    Some((5 - passed).to_string().as_str()),
                    "each replica sees the other's requests"
                );
            }
            429 => {
                refused += 1;
                assert_eq!(r.header("x-ratelimit-remaining-day"), Some("0"));
                assert!(r.header("retry-after").is_some());
            }
            s => panic!("unexpected status {s}: {}", r.text()),
        }
    }
    assert_eq!(
        (passed, refused),
        (5, 3),
        "the sum of both replicas is the limit"
    );
    assert_eq!(up.seen().len(), 5);
    // Kong's key: ratelimit:<route>:<service (none: nil UUID)>:<identifier>:<window ms>:<period>,
    // counting every request (Kong increments before it compares).
    let key = format!(
        "ratelimit:{ROUTE_ID}:00000000-0000-0000-0000-000000000000:127.0.0.1:{}:day",
        day_start_ms()
    );
    assert_eq!(
        redis.cli(&["GET", &key]),
        "8",
        "keys: {}",
        redis.cli(&["KEYS", "*"])
    );
    let ttl: i64 = redis.cli(&["TTL", &key]).parse().unwrap();
    assert!((86000..=86400).contains(&ttl), "Kong's expiration: {ttl}");
}

#[tokio::test]
async fn sync_rate_counts_locally_and_converges_in_redis() {
    let redis = Redis::start(&[]).await;
    let up = Upstream::start().await;
    let cfg = render(
        &config(&format!(
            "{{day: 100, limit_by: ip, policy: redis, sync_rate: 0.2, redis: {{host: 127.0.0.1, port: {}, database: 3}}}}",
            redis.port
        )),
        &[&up],
    );
    let a = Proxy::start(&cfg).await;
    assert_eq!(statuses(&a, 4).await, vec![200; 4]);
    let key = format!(
        "ratelimit:{ROUTE_ID}:00000000-0000-0000-0000-000000000000:127.0.0.1:{}:day",
        day_start_ms()
    );
    // The deltas reach Redis (database 3) within a few sync periods.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if redis.cli(&["-n", "3", "GET", &key]) == "4" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "Redis has {:?}",
            redis.cli(&["-n", "3", "GET", &key])
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // A second replica reads the shared count on its first request.
    let b = Proxy::start(&cfg).await;
    let r = b.get("/limited", &[]).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("x-ratelimit-remaining-day"), Some("95"));
}

#[tokio::test]
async fn redis_down_passes_when_fault_tolerant_fails_closed_otherwise_and_resumes() {
    let redis = Redis::start(&[]).await;
    let port = redis.port;
    let up = Upstream::start().await;
    let tolerant = render(
        &config(&format!(
            "{{day: 100, limit_by: ip, policy: redis, redis: {{host: 127.0.0.1, port: {port}, timeout: 500}}}}"
        )),
        &[&up],
    );
    let strict = tolerant.replace("policy: redis", "policy: redis, fault_tolerant: false");
    let t = Proxy::start_with_admin(&tolerant, &[]).await;
    let s = Proxy::start(&strict).await;
    assert_eq!(t.get("/limited", &[]).await.status, 200);
    assert_eq!(s.get("/limited", &[]).await.status, 200);

    drop(redis);
    let r = t.get("/limited", &[]).await;
    assert_eq!(r.status, 200, "fault_tolerant: the request passes");
    assert!(
        r.header("x-ratelimit-remaining-day").is_none(),
        "usage unknown: no headers"
    );
    assert!(t.wait_stderr("failed to get usage").await, "{}", t.stderr());
    let metrics = t.admin("GET", "/metrics", "").await.text();
    // The kept connection fails first ("error"); reconnecting then fails ("connect_error").
    assert!(
        metrics.lines().any(
            |l| l.starts_with("sluice_redis_operations_total{result=\"error\"}")
                || l.starts_with("sluice_redis_operations_total{result=\"connect_error\"}")
        ),
        "{metrics}"
    );
    let r = s.get("/limited", &[]).await;
    assert_eq!(r.status, 500, "fault_tolerant false: {}", r.text());

    // Redis back on the same port: counting resumes (bounded wait past the retry pause).
    let redis = Redis::start_on(port, &[]).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let r = s.get("/limited", &[]).await;
        if r.status == 200 {
            assert_eq!(
                r.header("x-ratelimit-remaining-day"),
                Some("99"),
                "a fresh Redis"
            );
            break;
        }
        assert!(Instant::now() < deadline, "still {}", r.status);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(redis.cli(&["KEYS", "ratelimit:*"]).contains(ROUTE_ID));
}

#[tokio::test]
async fn a_wrong_password_is_a_clear_error_at_first_use() {
    let redis = Redis::start(&["--requirepass", "right"]).await;
    let up = Upstream::start().await;
    let cfg = render(
        &config(&format!(
            "{{day: 100, policy: redis, fault_tolerant: false, redis: {{host: 127.0.0.1, port: {}, password: wrong}}}}",
            redis.port
        )),
        &[&up],
    );
    let proxy = Proxy::start(&cfg).await;
    assert_eq!(proxy.get("/limited", &[]).await.status, 500);
    assert!(
        proxy.wait_stderr("failed to authenticate").await,
        "{}",
        proxy.stderr()
    );
    let log = proxy.stderr();
    assert!(log.contains("config.redis.username/password"), "{log}");
    assert!(
        log.contains("(rate-limiting on route"),
        "names the instance: {log}"
    );
    assert!(
        log.contains(&format!("127.0.0.1:{};0", redis.port)),
        "names the target: {log}"
    );
    assert!(!log.contains("wrong"), "the password is not logged: {log}");

    // The right password (and Kong's deprecated flat fields) work.
    let cfg = render(
        &config(&format!(
            "{{day: 100, policy: redis, redis_host: 127.0.0.1, redis_port: {}, redis_password: right}}",
            redis.port
        )),
        &[&up],
    );
    let proxy = Proxy::start(&cfg).await;
    let r = proxy.get("/limited", &[]).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("x-ratelimit-remaining-day"), Some("99"));
}

fn response_config(plugin_config: &str) -> String {
    format!(
        r#"
_format_version: "3.0"
services:
  - name: s
    url: http://{{upstream}}
    routes:
      - name: limited
        paths: [/limited]
        plugins:
          - name: response-ratelimiting
            config: {plugin_config}
"#
    )
}

/// Requests that report no usage until the upstream is told `remaining` videos are left: the
/// counters grow after the response (log phase), so a test waits for them, bounded.
async fn settle(proxy: &Proxy, up: &Upstream, remaining: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        assert_eq!(proxy.get("/limited", &[]).await.status, 200);
        if up.last().header("x-ratelimit-remaining-videos") == Some(remaining) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "upstream saw {:?}",
            up.last().header("x-ratelimit-remaining-videos")
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Two responses using 2 "videos" each pass; a third that uses more is refused with an empty
/// 429 (Kong's response-ratelimiting).
async fn response_limits_hold(proxy: &Proxy, up: &Upstream) {
    let used = [("x-respond-header", "x-kong-limit: videos=2, images=1")];
    let r = proxy.get("/limited", &used).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(up.last().header("x-ratelimit-remaining-videos"), Some("3"));
    assert_eq!(r.header("x-ratelimit-limit-videos-day"), Some("3"));
    assert_eq!(r.header("x-ratelimit-remaining-videos-day"), Some("1"));
    assert_eq!(r.header("x-ratelimit-remaining-images-day"), Some("9"));
    assert!(
        r.header("x-kong-limit").is_none(),
        "the usage header is removed"
    );
    settle(proxy, up, "1").await;
    let r = proxy.get("/limited", &used).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("x-ratelimit-remaining-videos-day"), Some("0"));
    settle(proxy, up, "-1").await;
    // Used up: a response that uses more is refused, without its body.
    let r = proxy.get("/limited", &used).await;
    assert_eq!(r.status, 429);
    assert!(r.body.is_empty(), "{:?}", r.text());
    // One that uses nothing passes.
    assert_eq!(proxy.get("/limited", &[]).await.status, 200);
}

#[tokio::test]
async fn response_ratelimiting_local_and_redis() {
    let up = Upstream::start().await;
    let limits = "limits: {videos: {day: 3}, images: {day: 10}}";
    let proxy = Proxy::start(&render(&response_config(&format!("{{{limits}}}")), &[&up])).await;
    response_limits_hold(&proxy, &up).await;

    let redis = Redis::start(&[]).await;
    let cfg = format!(
        "{{{limits}, policy: redis, redis: {{host: 127.0.0.1, port: {}}}}}",
        redis.port
    );
    let proxy = Proxy::start(&render(&response_config(&cfg), &[&up])).await;
    response_limits_hold(&proxy, &up).await;
    // Kong's keys: response-ratelimit:<route>:<service>:<identifier>:<window ms>:<limit>:<period>.
    let keys = redis.cli(&["KEYS", "response-ratelimit:*:videos:day"]);
    assert!(
        keys.contains(&format!(":127.0.0.1:{}:videos:day", day_start_ms())),
        "{keys}"
    );
    assert_eq!(redis.cli(&["GET", keys.lines().next().unwrap()]), "4");

    // block_on_first_violation refuses in access once a limit is used up, with Kong's message.
    let cfg = format!(
        "{{{limits}, block_on_first_violation: true, policy: redis, redis: {{host: 127.0.0.1, port: {}, database: 1}}}}",
        redis.port
    );
    let proxy = Proxy::start(&render(&response_config(&cfg), &[&up])).await;
    let all = [("x-respond-header", "x-kong-limit: videos=3")];
    assert_eq!(proxy.get("/limited", &all).await.status, 200);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let r = proxy.get("/limited", &[]).await;
        if r.status == 429 {
            assert_eq!(r.json()["message"], "API rate limit exceeded for 'videos'");
            break;
        }
        assert!(Instant::now() < deadline, "never refused: {}", r.status);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn redis_over_tls_verified_against_the_operators_ca() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = common::self_signed_pems();
    let (cert_path, key_path) = (dir.path().join("redis.crt"), dir.path().join("redis.key"));
    std::fs::write(&cert_path, &cert).unwrap();
    std::fs::write(&key_path, &key).unwrap();
    let redis = Redis::start_tls(&cert_path, &key_path).await;
    let up = Upstream::start().await;
    let ca = ["--lua-ssl-trusted-certificate", cert_path.to_str().unwrap()];
    let tls = |name: &str| {
        render(
            &config(&format!(
                "{{day: 100, policy: redis, fault_tolerant: false, redis: {{host: 127.0.0.1, port: {}, ssl: true, ssl_verify: true, server_name: {name}}}}}",
                redis.port
            )),
            &[&up],
        )
    };
    let proxy = Proxy::start_with(&tls("localhost"), &ca).await;
    let r = proxy.get("/limited", &[]).await;
    assert_eq!(r.status, 200, "{}", proxy.stderr());
    assert_eq!(r.header("x-ratelimit-remaining-day"), Some("99"));
    assert_eq!(
        proxy
            .get("/limited", &[])
            .await
            .header("x-ratelimit-remaining-day"),
        Some("98")
    );

    // A name the certificate does not carry fails verification: a clear error, then 500.
    let proxy = Proxy::start_with(&tls("other.test"), &ca).await;
    assert_eq!(proxy.get("/limited", &[]).await.status, 500);
    assert!(
        proxy.wait_stderr("TLS handshake").await,
        "{}",
        proxy.stderr()
    );
    assert!(
        proxy.stderr().contains("hostname mismatch"),
        "{}",
        proxy.stderr()
    );
}

/// Kong's integration spec: a Redis ACL user with the commands it needs works, one without
/// them fails the request (fault_tolerant false); and each instance counts in its database.
#[tokio::test]
async fn acl_users_and_databases() {
    let redis = Redis::start(&[]).await;
    redis.cli(&["ACL", "SETUSER", "rl-ok", "on", ">pw", "~*", "+@all"]);
    redis.cli(&[
        "ACL", "SETUSER", "rl-no", "on", ">pw", "~*", "+@all", "-eval", "-evalsha",
    ]);
    let up = Upstream::start().await;
    let cfg = |user: &str, db: u32| {
        render(
            &config(&format!(
                "{{day: 100, policy: redis, fault_tolerant: false, redis: {{host: 127.0.0.1, port: {}, username: {user}, password: pw, database: {db}}}}}",
                redis.port
            )),
            &[&up],
        )
    };
    let ok = Proxy::start(&cfg("rl-ok", 2)).await;
    assert_eq!(ok.get("/limited", &[]).await.status, 200, "{}", ok.stderr());
    let no = Proxy::start(&cfg("rl-no", 1)).await;
    assert_eq!(no.get("/limited", &[]).await.status, 500);
    assert!(no.wait_stderr("NOPERM").await, "{}", no.stderr());
    assert_eq!(redis.cli(&["-n", "2", "DBSIZE"]), "1");
    assert_eq!(redis.cli(&["-n", "1", "DBSIZE"]), "0");
    assert_eq!(redis.cli(&["-n", "0", "DBSIZE"]), "0");
}
