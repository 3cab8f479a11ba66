//! rate-limiting (policy local) end to end: counting, headers, 429, identifiers, reloads.

mod common;

use common::{render, Proxy, Upstream};

fn config(plugin_config: &str, extra_route: bool) -> String {
    let mut cfg = format!(
        r#"
_format_version: "3.0"
services:
  - name: s
    url: http://{{upstream}}
    routes:
      - name: limited
        paths: [/limited]
        plugins:
          - name: rate-limiting
            config: {plugin_config}
"#
    );
    if extra_route {
        cfg.push_str("      - name: other\n        paths: [/other]\n");
    }
    cfg
}

#[tokio::test]
async fn counts_per_window_sets_headers_and_answers_429_with_retry_after() {
    let up = Upstream::start().await;
    let proxy = Proxy::start(&render(&config("{hour: 3, day: 10}", false), &[&up])).await;
    for remaining in ["2", "1", "0"] {
        let r = proxy.get("/limited", &[]).await;
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.header("x-ratelimit-limit-hour"), Some("3"));
        assert_eq!(r.header("x-ratelimit-remaining-hour"), Some(remaining));
        assert_eq!(r.header("x-ratelimit-limit-day"), Some("10"));
        // The most limiting period drives RateLimit-*.
        assert_eq!(r.header("ratelimit-limit"), Some("3"));
        assert_eq!(r.header("ratelimit-remaining"), Some(remaining));
        let reset: i64 = r.header("ratelimit-reset").unwrap().parse().unwrap();
        assert!((1..=3600).contains(&reset), "{reset}");
        assert!(r.header("retry-after").is_none());
    }
    let r = proxy.get("/limited", &[]).await;
    assert_eq!(r.status, 429);
    assert_eq!(r.json()["message"], "API rate limit exceeded");
    assert_eq!(r.header("x-ratelimit-remaining-hour"), Some("0"));
    assert_eq!(r.header("ratelimit-remaining"), Some("0"));
    assert!(r.header("retry-after").is_some());
    assert_eq!(
        up.seen().len(),
        3,
        "the rejected request never reaches the upstream"
    );
}

#[tokio::test]
async fn limit_by_header_counts_each_value_and_falls_back_to_the_client_ip() {
    let up = Upstream::start().await;
    let proxy = Proxy::start(&render(
        &config(
            "{hour: 1, day: 100, limit_by: header, header_name: x-tenant, hide_client_headers: true, error_code: 503, error_message: slow down}",
            false,
        ),
        &[&up],
    ))
    .await;
    let a = proxy.get("/limited", &[("x-tenant", "a")]).await;
    assert_eq!(a.status, 200);
    assert!(a.header("x-ratelimit-limit-hour").is_none(), "hidden");
    assert!(a.header("ratelimit-limit").is_none(), "hidden");
    assert_eq!(
        proxy.get("/limited", &[("x-tenant", "b")]).await.status,
        200
    );
    // No header: the client IP is the identifier.
    assert_eq!(proxy.get("/limited", &[]).await.status, 200);
    let r = proxy.get("/limited", &[("x-tenant", "a")]).await;
    assert_eq!(r.status, 503);
    assert_eq!(r.json()["message"], "slow down");
    assert_eq!(proxy.get("/limited", &[]).await.status, 503);
}

#[tokio::test]
async fn counters_survive_a_reload_of_an_unchanged_instance() {
    let up = Upstream::start().await;
    let proxy = Proxy::start_with_admin(
        &render(&config("{hour: 2}", false), &[&up]),
        &["--no-watch"],
    )
    .await;
    assert_eq!(proxy.get("/limited", &[]).await.status, 200);
    let r = proxy
        .admin(
            "POST",
            "/config",
            &render(&config("{hour: 2}", true), &[&up]),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(
        proxy.get("/other", &[]).await.status,
        200,
        "new config serves"
    );
    assert_eq!(proxy.get("/limited", &[]).await.status, 200);
    assert_eq!(proxy.get("/limited", &[]).await.status, 429);
}

#[test]
fn invalid_configs_are_located_errors() {
    let cases = [
        (
            "{limit_by: ip}",
            "at least one of these fields must be non-empty",
        ),
        (
            "{minute: 10, hour: 5}",
            "cannot be lower than the limit for minute",
        ),
        ("{minute: 0}", "value must be greater than 0"),
        ("{minute: 5, policy: redis}", "redis.host"),
        (
            "{minute: 5, policy: cluster}",
            "policy 'cluster' keeps counters in Kong's database",
        ),
        (
            "{minute: 5, sync_rate: 1}",
            "sync_rate can only be used with the redis policy",
        ),
        (
            "{minute: 5, policy: redis, redis: {host: h}, sync_rate: 0.01}",
            "sync_rate must be greater than 0.02",
        ),
        ("{minute: 5, limit_by: header}", "header_name"),
        ("{minute: 5, limit_by: planet}", "expected one of"),
    ];
    for (conf, want) in cases {
        let text = config(conf, false).replace("{upstream}", "127.0.0.1:1");
        let err = sluice::snapshot::load_str(&text, "kong.yaml", 1)
            .unwrap_err()
            .to_string();
        assert!(err.contains(want), "{conf}: {err}");
        assert!(err.contains("kong.yaml:1"), "{conf}: located: {err}");
    }
}
