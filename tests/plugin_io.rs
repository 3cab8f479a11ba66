//! Issue #13: Lua handlers that wait. ngx.sleep, cosockets (plain, TLS with a test CA,
//! keepalive, timeouts, the egress policy), light threads, kong.cache and kong.vault, run by the
//! real binary against real servers on loopback.

mod common;

use std::time::Duration;

use common::{empty_schema, render, Proxy, Upstream};
use sluice::plugins::lua::embed;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A config with one custom plugin `name` (handler `handler`) on route `/` to `up`.
fn config(up: &Upstream, handler: &str) -> String {
    let mut cfg = String::from("_format_version: \"3.0\"\ncustom_plugins:\n");
    cfg.push_str(&embed::render("io", handler, &empty_schema("io"), false));
    cfg.push_str(&render(
        "services:\n  - name: s\n    url: http://{upstream}\n    routes:\n      - {name: r, paths: [/], plugins: [{name: io}]}\n",
        &[up],
    ));
    cfg
}

/// A handler whose access phase runs `code` with `up` (`host`, `port`) in scope; `code` answers
/// with kong.response.exit.
fn access(up: &Upstream, code: &str) -> String {
    format!(
        "local P = {{ PRIORITY = 1000, VERSION = \"0.1\" }}\nlocal host, port = \"127.0.0.1\", {port}\nfunction P:access(conf)\n{code}\nend\nreturn P\n",
        port = up.addr.port()
    )
}

/// Reads an HTTP/1.1 response with a Content-Length from a cosocket (used by several cases).
const HTTP_GET: &str = r#"
local function get(sock, path)
  local ok, err = sock:send("GET " .. path .. " HTTP/1.1\r\nHost: test\r\n\r\n")
  if not ok then return nil, err end
  local status = sock:receive("*l")
  local len
  while true do
    local line, err = sock:receive()
    if not line then return nil, err end
    if line == "" then break end
    local n = line:lower():match("^content%-length:%s*(%d+)")
    if n then len = tonumber(n) end
  end
  local body, err = sock:receive(len)
  if not body then return nil, err end
  return status, body
end
"#;

#[tokio::test]
async fn a_sleeping_request_does_not_hold_up_others_on_its_worker() {
    let up = Upstream::start().await;
    let code = r#"
  local started = ngx.now()
  local wait = tonumber(kong.request.get_query_arg("sleep") or 0)
  ngx.sleep(wait)
  return kong.response.exit(200, { started = started, ended = ngx.now(), slept = wait })"#;
    let proxy = Proxy::start_with(&config(&up, &access(&up, code)), &["--workers", "1"]).await;
    // One worker: a blocking sleep would serve these one after the other.
    let slow = proxy.get("/?sleep=1.5", &[]);
    let slow2 = proxy.get("/?sleep=1.5", &[]);
    let quick = async {
        // Sent once the slow ones are in (the worker is sleeping for them).
        tokio::time::sleep(Duration::from_millis(300)).await;
        let r = proxy.get("/?sleep=0", &[]).await;
        (r, std::time::Instant::now())
    };
    let (a, b, (q, quick_done)) = tokio::join!(slow, slow2, quick);
    let (a, b, q) = (a.json(), b.json(), q.json());
    let slow_done = std::time::Instant::now();
    assert_eq!(a["slept"], 1.5, "{a}");
    // The two sleeps overlapped, and the quick request did not wait for either.
    let (a0, a1) = (a["started"].as_f64().unwrap(), a["ended"].as_f64().unwrap());
    let (b0, b1) = (b["started"].as_f64().unwrap(), b["ended"].as_f64().unwrap());
    assert!(a0 < b1 && b0 < a1, "sleeps overlap: {a} {b}");
    assert!(q["ended"].as_f64().unwrap() < a1.min(b1), "{q} {a} {b}");
    assert!(quick_done < slow_done);
}

#[tokio::test]
async fn the_cpu_budget_still_stops_a_loop_after_a_wait() {
    let up = Upstream::start().await;
    // After a socket wait (a connect and a read that must wait for the echo's answer).
    let code = r#"
  local sock = ngx.socket.tcp()
  assert(sock:connect(host, port))
  assert(sock:send("GET /spin HTTP/1.1\r\nHost: x\r\n\r\n"))
  assert(sock:receive("*l"))
  ngx.sleep(0.01)
  local ok = pcall(function() while true do end end)
  return kong.response.exit(200, { caught = ok })"#;
    let proxy = Proxy::start_with(
        &config(&up, &access(&up, code)),
        &["--lua-cpu-budget-ms", "50"],
    )
    .await;
    let r = proxy.get("/", &[]).await;
    assert_eq!(r.status, 500, "{}", r.text());
    assert!(proxy.wait_stderr("CPU budget").await, "{}", proxy.stderr());
    // Many short waits do not add up to the budget; their CPU does not either, here.
    let code = r#"
  for i = 1, 20 do ngx.sleep(0.005) end
  return kong.response.exit(200, { ok = true })"#;
    let proxy = Proxy::start_with(
        &config(&up, &access(&up, code)),
        &["--lua-cpu-budget-ms", "50"],
    )
    .await;
    assert_eq!(proxy.get("/", &[]).await.status, 200);
}

#[tokio::test]
async fn cosockets_talk_http_and_reuse_kept_alive_connections() {
    let up = Upstream::start().await;
    let code = format!(
        r#"{HTTP_GET}
  local sock = ngx.socket.tcp()
  sock:settimeout(2000)
  local ok, err = sock:connect(host, port)
  if not ok then return kong.response.exit(502, {{ err = err }}) end
  local reused = sock:getreusedtimes()
  local status, body = get(sock, "/called")
  if not status then return kong.response.exit(502, {{ err = body }}) end
  assert(sock:setkeepalive(10000, 10))
  local _, closed = sock:send("x")
  return kong.response.exit(200, {{ status = status, body = body, reused = reused, closed = closed }})"#
    );
    let proxy = Proxy::start_with(&config(&up, &access(&up, &code)), &["--workers", "1"]).await;
    let first = proxy.get("/", &[]).await;
    assert_eq!(first.status, 200, "{}", first.text());
    let j = first.json();
    assert_eq!(j["status"], "HTTP/1.1 200 OK");
    assert_eq!(j["reused"], 0);
    assert_eq!(
        j["closed"], "closed",
        "a pooled socket is closed for the plugin"
    );
    let echo: serde_json::Value = serde_json::from_str(j["body"].as_str().unwrap()).unwrap();
    assert_eq!(echo["uri"], "/called");
    let second = proxy.get("/", &[]).await.json();
    assert_eq!(second["reused"], 1, "{second}");
    assert_eq!(up.connections(), 1, "one connection carried both calls");
    assert_eq!(up.seen().len(), 2);
}

#[tokio::test]
async fn receive_patterns_timeouts_and_errors() {
    let up = Upstream::start().await;
    // A server that sends a scripted answer and then stays silent.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 64];
                let _ = s.read(&mut buf).await;
                let _ = s
                    .write_all(b"line one\r\nli\rne two\n12345--BOUNDARY--tail")
                    .await;
                tokio::time::sleep(Duration::from_secs(30)).await;
            });
        }
    });
    let code = format!(
        r#"
  local sock = ngx.socket.tcp()
  sock:settimeouts(1000, 1000, 200)
  assert(sock:connect("127.0.0.1", {port}))
  assert(sock:send({{ "hel", {{ "lo", 1 }} }}))
  local l1 = sock:receive()
  local l2 = sock:receive("*l")
  local n = sock:receive(5)
  local it = sock:receiveuntil("--BOUNDARY--")
  local before = it()
  local data, err, partial = sock:receive(100)
  local ok2, err2 = pcall(sock.receive, sock, "*x")
  local bad = ngx.socket.tcp()
  bad:settimeout(500)
  local ok3, err3 = bad:connect("127.0.0.1", 1)
  local ok4, err4 = ngx.socket.tcp():connect("127.0.0.1")
  return kong.response.exit(200, {{ l1 = l1, l2 = l2, n = n, before = before, err = err,
    partial = partial, bad_pattern = err2, refused = err3, noport = err4 }})"#
    );
    let proxy = Proxy::start(&config(&up, &access(&up, &code))).await;
    let r = proxy.get("/", &[]).await;
    assert_eq!(r.status, 200, "{}\n{}", r.text(), proxy.stderr());
    let j = r.json();
    assert_eq!(j["l1"], "line one", "CR dropped");
    assert_eq!(j["l2"], "line two", "every CR of the line dropped");
    assert_eq!(j["n"], "12345");
    assert_eq!(j["before"], "");
    assert_eq!(j["err"], "timeout");
    assert_eq!(j["partial"], "tail", "what came before the timeout");
    assert!(
        j["bad_pattern"]
            .as_str()
            .unwrap()
            .contains("bad argument #2 to 'receive' (bad pattern argument)"),
        "{j}"
    );
    assert_eq!(j["refused"], "connection refused");
    assert_eq!(j["noport"], "missing the port number");
}

#[tokio::test]
async fn tls_is_verified_against_the_operators_ca() {
    let up = Upstream::start_tls().await;
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, up.cert_pem.as_ref().unwrap()).unwrap();
    let code = format!(
        r#"{HTTP_GET}
  local function try(name, verify)
    local sock = ngx.socket.tcp()
    sock:settimeout(2000)
    assert(sock:connect("127.0.0.1", port))
    local ok, err = sock:sslhandshake(nil, name, verify)
    if not ok then return err end
    local status = get(sock, "/tls")
    sock:close()
    return status
  end
  return kong.response.exit(200, {{ good = try("localhost", true), wrong = try("other.test", true),
    unverified = try(nil, false) }})"#
    );
    let cfg = config(&up, &access(&up, &code));
    let proxy = Proxy::start_with(
        &cfg,
        &["--lua-ssl-trusted-certificate", ca.to_str().unwrap()],
    )
    .await;
    let j = proxy.get("/", &[]).await.json();
    assert_eq!(j["good"], "HTTP/1.1 200 OK", "{j}");
    assert_eq!(j["unverified"], "HTTP/1.1 200 OK", "{j}");
    assert!(
        j["wrong"].as_str().unwrap().contains("hostname mismatch"),
        "{j}"
    );
    // Without the CA the same certificate is refused.
    let proxy = Proxy::start(&cfg).await;
    let j = proxy.get("/", &[]).await.json();
    assert!(j["good"].as_str().unwrap().contains("self-signed"), "{j}");
}

#[tokio::test]
async fn the_egress_policy_refuses_other_destinations_and_counts_them() {
    let up = Upstream::start().await;
    let code = r#"
  local ok, err = ngx.socket.tcp():connect("127.0.0.1", port)
  local ok2, err2 = ngx.socket.tcp():connect("127.0.0.1", port + 1)
  return kong.response.exit(200, { allowed = ok, denied = err2 })"#;
    let allow = format!("127.0.0.1:{}", up.addr.port());
    let proxy = Proxy::start_with_admin(
        &config(&up, &access(&up, code)),
        &["--lua-socket-allow", &allow],
    )
    .await;
    let j = proxy.get("/", &[]).await.json();
    assert_eq!(j["allowed"], 1);
    assert!(
        j["denied"].as_str().unwrap().contains("egress policy"),
        "{j}"
    );
    let metrics = proxy.admin("GET", "/metrics", "").await.text();
    assert!(
        metrics.contains("sluice_lua_socket_connections_total{result=\"denied\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("sluice_lua_socket_connections_total{result=\"connected\"} 1"),
        "{metrics}"
    );
}

#[tokio::test]
async fn light_threads_run_side_by_side_and_can_be_killed() {
    let up = Upstream::start().await;
    let code = r#"
  local t0 = ngx.now()
  local function nap(s, v) ngx.sleep(s) return v end
  local a = ngx.thread.spawn(nap, 0.3, "a")
  local b = ngx.thread.spawn(nap, 0.3, "b")
  local ok1, va = ngx.thread.wait(a)
  local ok2, vb = ngx.thread.wait(b)
  local c = ngx.thread.spawn(nap, 30, "c")
  local killed = ngx.thread.kill(c)
  local again, why = ngx.thread.wait(c)
  local boom = ngx.thread.spawn(function() error("inside") end)
  local okb, errb = ngx.thread.wait(boom)
  -- a coroutine of the plugin's own that waits inside
  local co = coroutine.wrap(function() ngx.sleep(0.01) return "from coroutine" end)
  return kong.response.exit(200, { va = va, vb = vb, together = ngx.now() - t0 < 0.55,
    killed = killed, again = why, boom = okb, errb = errb, co = co() })"#;
    let proxy = Proxy::start(&config(&up, &access(&up, code))).await;
    let r = proxy.get("/", &[]).await;
    assert_eq!(r.status, 200, "{}\n{}", r.text(), proxy.stderr());
    let j = r.json();
    assert_eq!((j["va"].as_str(), j["vb"].as_str()), (Some("a"), Some("b")));
    assert_eq!(
        j["together"], true,
        "two 0.3 s sleeps ran side by side: {j}"
    );
    assert_eq!(j["killed"], 1);
    assert_eq!(j["again"], "already waited or killed");
    assert_eq!(j["boom"], false);
    assert!(j["errb"].as_str().unwrap().contains("inside"), "{j}");
    assert_eq!(j["co"], "from coroutine");
    assert!(proxy.stderr().contains("lua user thread aborted"));
}

#[tokio::test]
async fn waiting_is_refused_where_openresty_refuses_it() {
    let up = Upstream::start().await;
    let handler = "local P = { PRIORITY = 1000, VERSION = \"0.1\" }\nfunction P:header_filter(conf)\n  ngx.sleep(0.01)\nend\nreturn P\n";
    let proxy = Proxy::start(&config(&up, handler)).await;
    let r = proxy.get("/", &[]).await;
    assert_eq!(r.status, 500);
    assert!(
        proxy
            .wait_stderr("API disabled in the context of header_filter_by_lua*")
            .await,
        "{}",
        proxy.stderr()
    );
}

#[tokio::test]
async fn kong_cache_fills_once_under_concurrency_and_the_admin_api_clears_it() {
    let up = Upstream::start().await;
    let code = format!(
        r#"{HTTP_GET}
  local function load(path)
    local sock = ngx.socket.tcp()
    assert(sock:connect(host, port))
    local status, body = get(sock, path)
    sock:close()
    ngx.sleep(0.3)
    return {{ status = status, len = #body }}
  end
  local v, err, hit = kong.cache:get("greeting", nil, load, "/fill")
  if not v then return kong.response.exit(500, {{ err = err }}) end
  local again, _, hit2 = kong.cache:get("greeting")
  local none, nerr, nhit = kong.cache:get("missing")
  local _, cberr = kong.cache:get("failing", nil, function() return nil, "upstream down" end)
  local _, threw = kong.cache:get("throwing", nil, function() error("boom") end)
  local ttl, _, probed = kong.cache:probe("greeting")
  return kong.response.exit(200, {{ value = v, hit = hit, same = again == v, hit2 = hit2,
    nhit = nhit, cberr = cberr, threw = threw, probed = probed.status, ttl = ttl }})"#
    );
    let proxy = Proxy::start_with_admin(&config(&up, &access(&up, &code)), &[]).await;
    let replies = futures_util::future::join_all((0..8).map(|_| proxy.get("/", &[]))).await;
    for r in &replies {
        assert_eq!(r.status, 200, "{}\n{}", r.text(), proxy.stderr());
    }
    let fills = up.seen().iter().filter(|s| s.uri == "/fill").count();
    assert_eq!(
        fills, 1,
        "the callback ran once for eight concurrent requests"
    );
    let j = replies[0].json();
    assert_eq!(j["value"]["status"], "HTTP/1.1 200 OK");
    assert_eq!(j["hit2"], 1, "then served from the worker's level");
    assert_eq!(j["same"], true);
    assert_eq!(j["nhit"], -1);
    assert_eq!(j["cberr"], "failed to get from node cache: upstream down");
    assert!(j["threw"]
        .as_str()
        .unwrap()
        .starts_with("failed to get from node cache: callback threw an error:"));
    assert_eq!(j["probed"], "HTTP/1.1 200 OK");
    assert_eq!(j["ttl"], 0, "no expiry by default (DB-less Kong)");
    // Errors were not cached: each request ran those callbacks.
    let cached = proxy.admin("GET", "/cache/greeting", "").await;
    // Failed once in 13 runs (status not 200); the body and the gateway's log say why next time.
    assert_eq!(cached.status, 200, "{}\n{}", cached.text(), proxy.stderr());
    assert_eq!(cached.json()["status"], "HTTP/1.1 200 OK");
    assert_eq!(proxy.admin("GET", "/cache/failing", "").await.status, 404);
    assert_eq!(
        proxy.admin("DELETE", "/cache/greeting", "").await.status,
        204
    );
    assert_eq!(proxy.admin("GET", "/cache/greeting", "").await.status, 404);
    let r = proxy.get("/", &[]).await;
    assert_eq!(r.json()["hit"], 3, "filled again after the invalidation");
    assert_eq!(up.seen().iter().filter(|s| s.uri == "/fill").count(), 2);
    assert_eq!(proxy.admin("DELETE", "/cache", "").await.status, 204);
    assert_eq!(proxy.admin("GET", "/cache/greeting", "").await.status, 404);
}

#[tokio::test]
async fn kong_vault_reads_the_env_vault() {
    // Variables for the child process only: unique names, set before it starts.
    std::env::set_var("SLUICE_TEST_SECRET", "s3cret");
    std::env::set_var("APP_DB_CREDS", r#"{"password":"pw","port":5432}"#);
    // The gateway's own settings are not plugins' to read.
    std::env::set_var("PROXY_SLUICE_TEST_SETTING", "hidden");
    let up = Upstream::start().await;
    let code = r#"
  local v = kong.vault.get("{vault://env/sluice-test-secret}")
  local pw = kong.vault.get("{vault://env/db-creds/password?prefix=app_}")
  local _, notstr = kong.vault.get("{vault://env/db-creds/port?prefix=app_}")
  local _, missing = kong.vault.get("{vault://env/not-set-anywhere}")
  local _, other = kong.vault.get("{vault://aws/x}")
  local _, admin = kong.vault.get("{vault://env/proxy-sluice-test-setting}")
  return kong.response.exit(200, { v = v, pw = pw, notstr = notstr, missing = missing,
    other = other, ref = kong.vault.is_reference("{vault://env/x}"),
    parsed = kong.vault.parse_reference("{vault://env/cert/key?prefix=SSL_#1}"), admin = admin })"#;
    let proxy = Proxy::start(&config(&up, &access(&up, code))).await;
    let j = proxy.get("/", &[]).await.json();
    assert_eq!(j["v"], "s3cret", "{j}");
    assert_eq!(j["pw"], "pw");
    assert!(j["notstr"]
        .as_str()
        .unwrap()
        .contains("unexpected number value"));
    assert_eq!(
        j["missing"],
        "could not get value from external vault (no value found)"
    );
    assert!(j["other"]
        .as_str()
        .unwrap()
        .starts_with("could not find vault (aws)"));
    assert_eq!(j["ref"], true);
    assert_eq!(j["parsed"]["resource"], "cert");
    assert_eq!(j["parsed"]["key"], "key");
    assert_eq!(j["parsed"]["version"], 1);
    assert_eq!(j["parsed"]["config"]["prefix"], "SSL_");
    assert!(
        j["admin"].as_str().unwrap().contains("no value found"),
        "{j}"
    );
}

#[tokio::test]
async fn a_request_cannot_hoard_sockets_or_buffer_without_bound() {
    let up = Upstream::start().await;
    // A server that sends 24 MiB to whoever connects, then closes.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let flood = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let chunk = vec![b'x'; 1 << 20];
                for _ in 0..24 {
                    if s.write_all(&chunk).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    let code = format!(
        r#"
  -- Many sockets one after the other: each closed one gives its place.
  for i = 1, 400 do
    local s = ngx.socket.tcp()
    assert(s:connect(host, port))
    s:close()
  end
  -- Too many at once.
  local open, err = {{}}
  for i = 1, 300 do
    local ok, e = pcall(ngx.socket.tcp)
    if not ok then err = e break end
    open[#open + 1] = e
    assert(e:connect(host, port))
  end
  for _, s in ipairs(open) do s:close() end
  -- More data than the VM may hold.
  local s = ngx.socket.tcp()
  assert(s:connect("127.0.0.1", {flood}))
  local all, aerr = s:receive("*a")
  return kong.response.exit(200, {{ opened = #open, err = err, all = all and #all, aerr = aerr }})"#
    );
    let proxy = Proxy::start_with(
        &config(&up, &access(&up, &code)),
        // Hundreds of connections in a debug build: more CPU than the default budget.
        &["--lua-memory-mb", "16", "--lua-cpu-budget-ms", "5000"],
    )
    .await;
    let r = proxy.get("/", &[]).await;
    assert_eq!(r.status, 200, "{}\n{}", r.text(), proxy.stderr());
    let j = r.json();
    assert_eq!(j["opened"], 256, "{j}");
    assert!(
        j["err"].as_str().unwrap().contains("too many sockets"),
        "{j}"
    );
    assert_eq!(j["all"], serde_json::Value::Null, "{j}");
    assert!(j["aerr"].as_str().unwrap().contains("too much data"), "{j}");
    // The proxy still serves.
    assert_eq!(proxy.get("/", &[]).await.status, 200);
}
