//! pre-function and post-function end to end: config-carried Lua per phase, in the sandbox.

mod common;

use common::{render, Proxy, Upstream};

fn config(plugins: &str) -> String {
    format!(
        r#"
_format_version: "3.0"
services:
  - name: s
    url: http://{{upstream}}
    routes:
      - name: r
        paths: [/]
        plugins:
{plugins}
"#
    )
}

#[tokio::test]
async fn phases_run_first_and_last_and_returned_functions_keep_upvalues() {
    let up = Upstream::start().await;
    let plugins = r#"
          - name: pre-function
            config:
              access:
                - kong.service.request.set_header("x-pre", "1")
                - |
                  local n = 0
                  return function()
                    n = n + 1
                    kong.ctx.shared.n = n
                  end
          - name: post-function
            config:
              access:
                - kong.service.request.set_header("x-post", kong.request.get_header("x-pre") or "missing")
              header_filter:
                - kong.response.set_header("x-count", tostring(kong.ctx.shared.n))
"#;
    // One worker: upvalues live in each worker's VM, as in Kong's nginx workers.
    let proxy = Proxy::start_with(&render(&config(plugins), &[&up]), &["--workers", "1"]).await;
    let r = proxy.get("/", &[]).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("x-count"), Some("1"));
    let seen = up.last();
    assert_eq!(seen.header("x-pre"), Some("1"));
    // post-function runs after pre-function: it sees the header pre-function set.
    assert_eq!(seen.header("x-post"), Some("1"));
    let r = proxy.get("/", &[]).await;
    assert_eq!(
        r.header("x-count"),
        Some("2"),
        "the returned closure keeps its upvalue"
    );
}

#[tokio::test]
async fn exit_error_and_runaway_code_fail_only_that_request() {
    let up = Upstream::start().await;
    let plugins = r#"
          - name: pre-function
            config:
              access:
                - |
                  local mode = kong.request.get_header("x-mode")
                  if mode == "deny" then return kong.response.exit(403, { message = "denied" }) end
                  if mode == "error" then error("boom") end
                  if mode == "loop" then while true do end end
"#;
    let proxy = Proxy::start_with(
        &render(&config(plugins), &[&up]),
        &["--lua-cpu-budget-ms", "50"],
    )
    .await;
    let r = proxy.get("/", &[("x-mode", "deny")]).await;
    assert_eq!(r.status, 403);
    assert_eq!(r.json()["message"], "denied");
    assert_eq!(proxy.get("/", &[("x-mode", "error")]).await.status, 500);
    assert_eq!(proxy.get("/", &[("x-mode", "loop")]).await.status, 500);
    assert_eq!(proxy.get("/", &[]).await.status, 200, "still serving");
    assert_eq!(up.seen().len(), 1);
    assert!(proxy.stderr().contains("boom"), "{}", proxy.stderr());
}

#[test]
fn syntax_errors_and_unsupported_phases_are_located() {
    let bad = config(
        r#"
          - name: post-function
            config:
              log:
                - kong.log.info("fine")
                - "if then"
"#,
    )
    .replace("{upstream}", "127.0.0.1:1");
    let err = sluice::snapshot::load_str(&bad, "kong.yaml", 1)
        .unwrap_err()
        .to_string();
    assert!(err.contains("log[2]"), "{err}");
    assert!(err.contains("post-function/config.log[2]:1:"), "{err}");
    let bad = bad.replace("log:", "ws_close:");
    let err = sluice::snapshot::load_str(&bad, "kong.yaml", 1)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("ws_close: this phase is not supported"),
        "{err}"
    );
}

/// A level the log filter drops (the tests run the proxy with `RUST_LOG=info`) does nothing, as
/// nginx's `ngx.log` does: its arguments are not even converted to text. Enabled levels write.
#[tokio::test]
async fn disabled_log_levels_do_not_format_their_arguments() {
    let up = Upstream::start().await;
    let plugins = r#"
          - name: pre-function
            config:
              access:
                - |
                  local loud = setmetatable({}, { __tostring = function() error("converted") end })
                  kong.log.debug("dropped ", loud)
                  ngx.log(ngx.DEBUG, "dropped too ", loud)
                  kong.log.inspect(loud)
                  kong.log.notice("kept-line ", 42)
"#;
    let proxy = Proxy::start(&render(&config(plugins), &[&up])).await;
    let r = proxy.get("/", &[]).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(
        proxy.wait_stderr("kept-line 42").await,
        "{}",
        proxy.stderr()
    );
    assert!(!proxy.stderr().contains("dropped"), "{}", proxy.stderr());
}

/// Each plugin phase call is counted in `sluice_plugin_phase_latency_ms`, the first one (which
/// makes the worker's cached histogram handle) and every later one alike.
#[tokio::test]
async fn every_plugin_phase_call_is_observed_once() {
    let up = Upstream::start().await;
    let plugins = r#"
          - name: pre-function
            config:
              access:
                - kong.service.request.set_header("x-pre", "1")
              header_filter:
                - kong.response.set_header("x-hf", "1")
"#;
    let proxy =
        Proxy::start_with_admin(&render(&config(plugins), &[&up]), &["--workers", "1"]).await;
    for _ in 0..5 {
        assert_eq!(proxy.get("/", &[]).await.status, 200);
    }
    let metrics = proxy.admin("GET", "/metrics", "").await.text();
    for phase in ["access", "header_filter"] {
        let line = format!(
            "sluice_plugin_phase_latency_ms_count{{phase=\"{phase}\",plugin=\"pre-function\"}} 5"
        );
        assert!(metrics.contains(&line), "{line} in\n{metrics}");
    }
}

/// A plugin's latency is its own call's: one that waits 200 ms is observed at 200 ms or
/// more, and the plugin after it in the phase (whose call starts when the first one's ended)
/// well under that.
#[tokio::test]
async fn a_plugins_latency_is_its_own_call() {
    let up = Upstream::start().await;
    let plugins = r#"
          - name: pre-function
            config:
              access:
                - ngx.sleep(0.2)
          - name: post-function
            config:
              access:
                - kong.service.request.set_header("x-post", "1")
"#;
    let proxy =
        Proxy::start_with_admin(&render(&config(plugins), &[&up]), &["--workers", "1"]).await;
    assert_eq!(proxy.get("/", &[]).await.status, 200);
    let metrics = proxy.admin("GET", "/metrics", "").await.text();
    let sum = |plugin: &str| -> f64 {
        let key =
            format!("sluice_plugin_phase_latency_ms_sum{{phase=\"access\",plugin=\"{plugin}\"}} ");
        let line = metrics
            .lines()
            .find(|l| l.starts_with(&key))
            .unwrap_or_else(|| panic!("{key} in\n{metrics}"));
        line[key.len()..].trim().parse().expect("a number")
    };
    let (slept, after) = (sum("pre-function"), sum("post-function"));
    assert!(slept >= 200.0, "pre-function's access took {slept} ms");
    assert!(after < 100.0, "post-function's access took {after} ms");
}
