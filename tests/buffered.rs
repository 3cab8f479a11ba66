//! Kong's buffered proxying end to end (issue #12): a plugin with a `response` phase, or one
//! that calls `kong.service.request.enable_buffering()`, sees the whole upstream response before
//! anything is sent, and may change the status and headers or answer instead.

mod common;

use bytes::Bytes;
use common::{empty_schema, render, Proxy, Upstream};
use sluice::plugins::lua::embed;

/// Reads the service's response whole and shapes the client's from it.
const SHAPE: &str = r#"local P = { PRIORITY = 20, VERSION = "0.1" }
function P:response(conf)
  local raw = kong.service.response.get_raw_body()
  local json, err, ctype = kong.service.response.get_body()
  local status = kong.service.response.get_status()
  if status == 404 then
    return kong.response.exit(418, { message = "teapot", upstream = #raw })
  end
  if kong.request.get_header("x-fail") then
    error("response handler failed on purpose")
  end
  kong.response.set_header("x-len", #raw)
  kong.response.set_header("x-method", json and json.method or tostring(err))
  kong.response.set_header("x-ctype", ctype)
  kong.response.set_header("x-phase", ngx.get_phase() .. " " .. kong.response.get_source())
  kong.response.clear_header("x-upstream-name")
  kong.response.set_status(201)
end
return P
"#;

/// Runs after SHAPE: what header_filter and log see of a buffered response.
const AFTER: &str = r#"local P = { PRIORITY = 10, VERSION = "0.1" }
function P:header_filter(conf)
  kong.response.set_header("x-after", kong.response.get_status() .. " "
    .. tostring(kong.service.response.get_status()) .. " "
    .. tostring(kong.service.response.get_header("x-upstream-name")) .. " "
    .. #kong.service.response.get_raw_body())
end
function P:log(conf)
  kong.log.notice("logged ", #kong.service.response.get_raw_body(), " bytes")
end
return P
"#;

/// Asks for buffering from access; no response phase of its own.
const ASK: &str = r#"local P = { PRIORITY = 5, VERSION = "0.1" }
function P:access(conf)
  kong.service.request.enable_buffering()
end
function P:header_filter(conf)
  local body = kong.service.response.get_raw_body()
  kong.response.set_header("x-service-body", body:sub(1, 5) .. " " .. #body)
end
return P
"#;

fn config(up: &Upstream) -> String {
    let mut cfg = String::from("_format_version: \"3.0\"\ncustom_plugins:\n");
    for (name, handler) in [("shape", SHAPE), ("after", AFTER), ("ask", ASK)] {
        cfg.push_str(&embed::render(name, handler, &empty_schema(name), false));
    }
    cfg.push_str(&render(
        "services:\n  - name: s\n    url: http://{upstream}\n    routes:\n      - {name: shaped, paths: [/shaped], plugins: [{name: shape}, {name: after}]}\n      - {name: asked, paths: [/asked], plugins: [{name: ask}]}\n      - {name: plain, paths: [/plain]}\n",
        &[up],
    ));
    cfg
}

#[tokio::test]
async fn response_phase_sees_the_whole_upstream_response_and_shapes_what_is_sent() {
    let up = Upstream::start().await;
    let proxy = Proxy::start(&config(&up)).await;

    let r = proxy
        .request_body("POST", "/shaped/x", &[], Bytes::from_static(b"hello"))
        .await;
    assert_eq!(r.status, 201, "{}", r.text());
    // The body is the service's, untouched, framed by its length.
    let echo = r.json();
    assert_eq!(echo["body"], "hello");
    assert_eq!(echo["uri"], "/x");
    assert_eq!(r.header("content-length"), Some(&*r.body.len().to_string()));
    assert_eq!(r.header("x-len"), Some(&*r.body.len().to_string()));
    assert_eq!(r.header("x-method"), Some("POST"));
    assert_eq!(r.header("x-ctype"), Some("application/json"));
    // Kong runs `response` inside nginx's access phase.
    assert_eq!(r.header("x-phase"), Some("access service"));
    assert_eq!(r.header("x-upstream-name"), None, "cleared in response");
    // header_filter runs after, on the changed response, and still reads the service's.
    let len = r.body.len();
    assert_eq!(
        r.header("x-after"),
        Some(&*format!("201 200 upstream {len}"))
    );
    assert!(r.header("x-kong-upstream-latency").is_some());
    assert_eq!(up.seen().len(), 1, "one request upstream");
    assert!(
        proxy.wait_stderr(&format!("logged {len} bytes")).await,
        "log phase reads the buffered body: {}",
        proxy.stderr()
    );

    // HEAD: no body, the service's framing kept.
    let head = proxy.request("HEAD", "/shaped/x", &[]).await;
    assert_eq!(head.status, 201);
    assert!(head.body.is_empty());
    assert_eq!(head.header("x-len"), Some("0"));
}

#[tokio::test]
async fn response_phase_exit_replaces_the_response_and_a_failure_is_a_500() {
    let up = Upstream::start().await;
    let proxy = Proxy::start(&config(&up)).await;

    let r = proxy.get("/shaped/status/404", &[]).await;
    assert_eq!(r.status, 418, "{}", r.text());
    assert_eq!(r.json()["message"], "teapot");
    assert!(r.json()["upstream"].as_u64().unwrap() > 0);
    assert_eq!(
        r.header("content-type"),
        Some("application/json; charset=utf-8")
    );
    assert_eq!(r.header("content-length"), Some(&*r.body.len().to_string()));
    // header_filter still runs on the exit, and the service's status stays readable.
    assert!(
        r.header("x-after")
            .unwrap()
            .starts_with("418 404 upstream "),
        "{:?}",
        r.header("x-after")
    );

    let r = proxy.get("/shaped/x", &[("x-fail", "1")]).await;
    assert_eq!(r.status, 500);
    assert_eq!(r.json()["message"], "An unexpected error occurred");
    assert!(proxy
        .stderr()
        .contains("response handler failed on purpose"));
    // Nothing else is affected.
    assert_eq!(proxy.get("/shaped/x", &[]).await.status, 201);
}

#[tokio::test]
async fn enable_buffering_gives_the_service_body_to_later_phases() {
    let up = Upstream::start().await;
    let proxy = Proxy::start(&config(&up)).await;
    let r = proxy.get("/asked/bytes/300", &[]).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body.len(), 300);
    assert_eq!(r.header("x-service-body"), Some("xxxxx 300"));
    assert_eq!(r.header("content-length"), Some("300"));
}

#[tokio::test]
async fn a_response_over_the_buffer_limit_is_a_502_and_unbuffered_routes_stream_it() {
    let up = Upstream::start().await;
    let proxy = Proxy::start_with(&config(&up), &["--max-buffered-response-mb", "1"]).await;
    let big = 1_500_000;
    let r = proxy.get(&format!("/asked/bytes/{big}"), &[]).await;
    assert_eq!(r.status, 502, "{}", r.text());
    assert_eq!(
        r.json()["message"],
        "An invalid response was received from the upstream server"
    );
    let r = proxy.get(&format!("/plain/bytes/{big}"), &[]).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body.len(), big);
    let r = proxy.get("/asked/bytes/1000000", &[]).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body.len(), 1_000_000);
}
