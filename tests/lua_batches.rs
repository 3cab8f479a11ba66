//! Consecutive Lua plugins of a phase run in one entry into Lua (`lua::runtime::Batch`): each
//! still runs in chain order with its own `kong.ctx.plugin`, budget, exit, error and metrics,
//! as when each is called on its own.

mod common;

use common::{render, Proxy, Upstream};
use sluice::plugins::lua::embed;

/// A plugin whose `config.action` says what its access does: `none`, `sleep` (waits 50 ms),
/// `exit` (418), `fail`, `spin` (never returns), `consumer` (authenticates as `alice`);
/// `config.fail_in` fails another phase. It notes its name in `kong.ctx.shared.seen`.
const HANDLER: &str = r#"
local P = { PRIORITY = @PRIORITY@, VERSION = "1.0.0" }
local NAME = "@NAME@"
function P:access(conf)
  kong.ctx.plugin.mine = NAME
  local seen = kong.ctx.shared.seen or {}
  seen[#seen + 1] = NAME
  kong.ctx.shared.seen = seen
  local action = conf.action
  if action == "sleep" then
    ngx.sleep(0.05)
  elseif action == "exit" then
    return kong.response.exit(418, { by = NAME })
  elseif action == "fail" then
    error("access failure in " .. NAME)
  elseif action == "spin" then
    while true do end
  elseif action == "consumer" then
    kong.client.authenticate(kong.client.load_consumer("alice", true), nil)
  end
  kong.service.request.set_header("x-access-" .. NAME, kong.ctx.plugin.mine .. "/" .. (conf.tag or "-"))
end
function P:header_filter(conf)
  if conf.fail_in == "header_filter" then
    error("header_filter failure in " .. NAME)
  elseif conf.fail_in == "caller" then
    error("caller-level failure in " .. NAME, 2)
  end
  local seen = table.concat(kong.ctx.shared.seen or {}, ",")
  kong.response.set_header("x-hf-" .. NAME, seen .. "|" .. tostring(kong.ctx.plugin.mine))
end
function P:log(conf)
  if conf.fail_in == "log" then
    error("log failure in " .. NAME)
  end
end
return P
"#;

const SCHEMA: &str = r#"
return { name = "@NAME@", fields = { { config = { type = "record", fields = {
  { action = { type = "string", default = "none" } },
  { fail_in = { type = "string" } },
  { tag = { type = "string" } },
} } } } }
"#;

/// The `custom_plugins` entries of plugins `a`, `b`, `c`, `d` (in this order by priority).
fn plugins() -> String {
    let mut out = String::from("custom_plugins:\n");
    for (name, priority) in [("a", 40), ("b", 30), ("c", 20), ("d", 10)] {
        let handler = HANDLER
            .replace("@PRIORITY@", &priority.to_string())
            .replace("@NAME@", name);
        out.push_str(&embed::render(
            name,
            &handler,
            &SCHEMA.replace("@NAME@", name),
            false,
        ));
    }
    out
}

/// A config with the four plugins on route `/r`, `configs[i]` being plugin i's config (YAML
/// flow map).
fn config(configs: [&str; 4], up: &Upstream) -> String {
    let mut rest = String::from(
        "consumers:\n  - username: alice\nservices:\n  - name: s\n    url: http://{upstream}\n    routes:\n      - name: r\n        paths: [/r]\n        plugins:\n",
    );
    for (name, conf) in ["a", "b", "c", "d"].iter().zip(configs) {
        rest.push_str(&format!("          - {{name: {name}, config: {conf}}}\n"));
    }
    rest.push_str("      - name: ok\n        paths: [/ok]\n");
    format!(
        "_format_version: \"3.0\"\n{}{}",
        plugins(),
        render(&rest, &[up])
    )
}

/// The value of `sluice_plugin_<name>{phase,plugin}` in a Prometheus exposition.
fn plugin_metric(metrics: &str, name: &str, plugin: &str, phase: &str) -> Option<f64> {
    let key = format!("sluice_plugin_{name}{{phase=\"{phase}\",plugin=\"{plugin}\"}}");
    metrics
        .lines()
        .find(|l| l.starts_with(&key) && l[key.len()..].starts_with(' '))
        .and_then(|l| l[key.len()..].trim().parse().ok())
}

/// The first log line that holds `needle`, once the proxy has written one.
async fn logged_line(proxy: &Proxy, needle: &str) -> String {
    assert!(proxy.wait_stderr(needle).await, "{}", proxy.stderr());
    proxy
        .stderr()
        .lines()
        .find(|l| l.contains(needle))
        .map(str::to_string)
        .unwrap_or_default()
}

#[tokio::test]
async fn plugins_run_in_order_each_with_its_own_ctx_even_across_a_wait() {
    let up = Upstream::start().await;
    let cfg = config(["{}", "{action: sleep}", "{tag: t}", "{}"], &up);
    let proxy = Proxy::start_with_admin(&cfg, &["--workers", "1"]).await;
    for _ in 0..3 {
        let r = proxy.get("/r", &[]).await;
        assert_eq!(r.status, 200, "{}\n{}", r.text(), proxy.stderr());
        let seen = up.last();
        assert_eq!(seen.header("x-access-a"), Some("a/-"));
        assert_eq!(seen.header("x-access-b"), Some("b/-"));
        assert_eq!(seen.header("x-access-c"), Some("c/t"));
        assert_eq!(seen.header("x-access-d"), Some("d/-"));
        for name in ["a", "b", "c", "d"] {
            let want = format!("a,b,c,d|{name}");
            assert_eq!(r.header(&format!("x-hf-{name}")), Some(want.as_str()));
        }
    }
    // Each plugin's own latency: b waited 50 ms, the others did not wait (c would have to
    // be held up for 150 ms to read as slow as b).
    let metrics = proxy.admin("GET", "/metrics", "").await.text();
    let sum = |p: &str| {
        plugin_metric(&metrics, "phase_latency_ms_sum", p, "access")
            .unwrap_or_else(|| panic!("{p}'s access sum in\n{metrics}"))
    };
    for name in ["a", "b", "c", "d"] {
        for phase in ["access", "header_filter"] {
            let count = plugin_metric(&metrics, "phase_latency_ms_count", name, phase);
            assert_eq!(count, Some(3.0), "{name} {phase} in\n{metrics}");
        }
    }
    assert!(sum("b") >= 150.0, "b's three sleeps: {}", sum("b"));
    assert!(
        sum("c") < sum("b"),
        "c ({}) timed apart from b ({})",
        sum("c"),
        sum("b")
    );
}

#[tokio::test]
async fn an_exit_in_the_middle_stops_access_and_the_response_phases_still_run() {
    let up = Upstream::start().await;
    let cfg = config(["{}", "{}", "{action: exit}", "{}"], &up);
    let proxy = Proxy::start(&cfg).await;
    let r = proxy.get("/r", &[]).await;
    assert_eq!(r.status, 418, "{}\n{}", r.text(), proxy.stderr());
    assert_eq!(r.json(), serde_json::json!({"by": "c"}));
    assert!(up.seen().is_empty(), "the upstream was not called");
    // d's access did not run; every plugin's header_filter did (d's sees no ctx of its own).
    assert_eq!(r.header("x-hf-a"), Some("a,b,c|a"));
    assert_eq!(r.header("x-hf-c"), Some("a,b,c|c"));
    assert_eq!(r.header("x-hf-d"), Some("a,b,c|nil"));
}

#[tokio::test]
async fn a_failure_in_the_middle_fails_the_request_and_names_its_plugin() {
    let up = Upstream::start().await;
    let cfg = config(["{}", "{action: fail}", "{}", "{}"], &up);
    let proxy = Proxy::start_with_admin(&cfg, &["--workers", "1"]).await;
    let r = proxy.get("/r", &[]).await;
    assert_eq!(r.status, 500, "{}", r.text());
    assert!(
        up.seen().is_empty(),
        "fails closed: nothing reaches the upstream"
    );
    let line = logged_line(&proxy, "access failure in b").await;
    assert!(line.contains("plugin b (b), phase access"), "{line}");
    let metrics = proxy.admin("GET", "/metrics", "").await.text();
    let errors = |p: &str, phase: &str| plugin_metric(&metrics, "errors_total", p, phase);
    assert_eq!(errors("b", "access"), Some(1.0), "{metrics}");
    assert_eq!(errors("a", "access"), None, "{metrics}");
    let count = |p: &str| plugin_metric(&metrics, "phase_latency_ms_count", p, "access");
    assert_eq!(
        (count("a"), count("b"), count("c")),
        (Some(1.0), Some(1.0), None)
    );
}

#[tokio::test]
async fn a_header_filter_failure_stops_the_later_ones_and_a_log_failure_does_not() {
    let up = Upstream::start().await;
    let cfg = config(
        ["{}", "{fail_in: header_filter}", "{fail_in: log}", "{}"],
        &up,
    );
    let proxy = Proxy::start_with_admin(&cfg, &["--workers", "1"]).await;
    let r = proxy.get("/r", &[]).await;
    assert_eq!(r.status, 500, "{}", r.text());
    assert_eq!(r.header("x-hf-c"), None);
    assert!(
        proxy.wait_stderr("log failure in c").await,
        "{}",
        proxy.stderr()
    );
    // d's log runs (and is timed) after c's failure is logged: ask again, a bounded number of
    // times, until its count is there.
    let mut metrics = proxy.admin("GET", "/metrics", "").await.text();
    for _ in 0..100 {
        if plugin_metric(&metrics, "phase_latency_ms_count", "d", "log").is_some() {
            break;
        }
        metrics = proxy.admin("GET", "/metrics", "").await.text();
    }
    let count = |p: &str, phase: &str| plugin_metric(&metrics, "phase_latency_ms_count", p, phase);
    // header_filter: a ran, b failed, c and d did not run.
    assert_eq!(count("b", "header_filter"), Some(1.0), "{metrics}");
    assert_eq!(count("c", "header_filter"), None, "{metrics}");
    // log: every plugin's ran, d's after c's failed.
    for name in ["a", "b", "c", "d"] {
        assert_eq!(count(name, "log"), Some(1.0), "{name} in\n{metrics}");
    }
}

#[tokio::test]
async fn a_runaway_plugin_in_the_middle_is_stopped_and_the_worker_serves_on() {
    let up = Upstream::start().await;
    let cfg = config(["{}", "{}", "{action: spin}", "{}"], &up);
    let proxy = Proxy::start_with(&cfg, &["--workers", "1", "--lua-cpu-budget-ms", "50"]).await;
    let r = proxy.get("/r", &[]).await;
    assert_eq!(r.status, 500, "{}", r.text());
    assert!(up.seen().is_empty());
    assert!(proxy.wait_stderr("CPU budget").await, "{}", proxy.stderr());
    assert!(
        proxy.stderr().contains("plugin c (c), phase access"),
        "{}",
        proxy.stderr()
    );
    // The same worker and its VM serve on.
    let r = proxy.get("/ok", &[]).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(up.seen().len(), 1);
}

#[tokio::test]
async fn a_consumer_set_in_the_middle_selects_the_next_plugins_instance() {
    let up = Upstream::start().await;
    let mut cfg = config(["{action: consumer}", "{tag: all}", "{}", "{}"], &up);
    cfg.push_str(
        "plugins:\n  - name: b\n    consumer: alice\n    config: {tag: alice}\n  - name: c\n    consumer: alice\n    config: {tag: alice}\n",
    );
    let proxy = Proxy::start(&cfg).await;
    let r = proxy.get("/r", &[]).await;
    assert_eq!(r.status, 200, "{}\n{}", r.text(), proxy.stderr());
    let seen = up.last();
    // a authenticated alice: b's and c's instances for her apply (more specific than the
    // route's), d's route instance stays.
    assert_eq!(seen.header("x-access-b"), Some("b/alice"));
    assert_eq!(seen.header("x-access-c"), Some("c/alice"));
    assert_eq!(seen.header("x-access-d"), Some("d/-"));
}

/// An error raised for the method's caller (`error(msg, 2)`) names no position, as when Rust
/// calls the method itself (the dispatcher is no Lua caller of the method).
#[tokio::test]
async fn an_error_raised_at_the_callers_level_names_no_position() {
    let up = Upstream::start().await;
    let cfg = config(["{}", "{fail_in: caller}", "{}", "{}"], &up);
    let proxy = Proxy::start(&cfg).await;
    let r = proxy.get("/r", &[]).await;
    assert_eq!(r.status, 500, "{}", r.text());
    let line = logged_line(&proxy, "caller-level failure in b").await;
    assert!(
        line.contains("phase header_filter: runtime error: caller-level failure in b"),
        "{line}"
    );
}
