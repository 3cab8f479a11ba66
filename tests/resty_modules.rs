//! Issue #13: the OpenResty modules plugins call out with, `resty.http` against the loopback
//! echo server (plain and TLS) and `resty.redis` against a real `redis-server`, through the
//! real binary.

mod common;

use common::redis::Redis;
use common::{empty_schema, render, Proxy, Upstream};
use sluice::plugins::lua::embed;

fn config(up: &Upstream, code: &str, vars: &str) -> String {
    let handler = format!(
        "local P = {{ PRIORITY = 1000, VERSION = \"0.1\" }}\n{vars}\nfunction P:access(conf)\n{code}\nend\nreturn P\n"
    );
    let mut cfg = String::from("_format_version: \"3.0\"\ncustom_plugins:\n");
    cfg.push_str(&embed::render(
        "callout",
        &handler,
        &empty_schema("callout"),
        false,
    ));
    cfg.push_str(&render(
        "services:\n  - name: s\n    url: http://{upstream}\n    routes:\n      - {name: r, paths: [/], plugins: [{name: callout}]}\n",
        &[up],
    ));
    cfg
}

#[tokio::test]
async fn resty_http_request_uri_keeps_connections_alive() {
    let up = Upstream::start().await;
    // The slow calls go to another name, so to another keepalive pool.
    let vars = format!(
        "local base, other = \"http://127.0.0.1:{0}\", \"http://localhost:{0}\"",
        up.addr.port()
    );
    let code = r#"
  local http = require "resty.http"
  local httpc = http.new()
  httpc:set_timeout(2000)
  local res, err = httpc:request_uri(base .. "/lookup?q=1", {
    method = "POST", body = "payload", headers = { ["X-Token"] = "t1" } })
  if not res then return kong.response.exit(502, { err = err }) end
  local echo = require("cjson").decode(res.body)
  local c2 = http.new()
  c2:set_timeout(100)
  local slow, slow_err = c2:request_uri(other .. "/delay/1000")
  return kong.response.exit(200, { status = res.status, ctype = res.headers["content-type"],
    ctype2 = res.headers["Content-Type"], method = echo.method, uri = echo.uri, body = echo.body,
    token = echo.headers["x-token"][1], ua = echo.headers["user-agent"][1], slow = slow_err })"#;
    let proxy = Proxy::start_with(&config(&up, code, &vars), &["--workers", "1"]).await;
    for _ in 0..3 {
        let r = proxy.get("/", &[]).await;
        assert_eq!(r.status, 200, "{}\n{}", r.text(), proxy.stderr());
        let j = r.json();
        assert_eq!(j["status"], 200);
        assert_eq!(j["ctype"], "application/json");
        assert_eq!(j["ctype2"], "application/json", "headers ignore case");
        assert_eq!(j["method"], "POST");
        assert_eq!(j["uri"], "/lookup?q=1");
        assert_eq!(j["body"], "payload");
        assert_eq!(j["token"], "t1");
        assert!(j["ua"]
            .as_str()
            .unwrap()
            .starts_with("lua-resty-http/0.17.2"));
        assert_eq!(j["slow"], "timeout");
    }
    let lookups = up.seen().iter().filter(|s| s.uri == "/lookup?q=1").count();
    assert_eq!(lookups, 3);
    // One connection carried the three lookups; each timed-out call closed its own.
    assert_eq!(up.connections(), 1 + 3, "{} connections", up.connections());
}

#[tokio::test]
async fn resty_http_streams_and_verifies_tls() {
    let up = Upstream::start_tls().await;
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, up.cert_pem.as_ref().unwrap()).unwrap();
    let vars = format!("local port = {}", up.addr.port());
    let code = r#"
  local http = require "resty.http"
  local httpc = http.new()
  httpc:set_timeouts(2000, 2000, 2000)
  local ok, err = httpc:connect({ scheme = "https", host = "localhost", port = port })
  if not ok then return kong.response.exit(502, { err = err }) end
  local res, err = httpc:request({ path = "/stream", headers = { Host = "localhost" } })
  if not res then return kong.response.exit(502, { err = err }) end
  local parts = {}
  repeat
    local chunk, rerr = res.body_reader(8)
    if chunk then parts[#parts + 1] = chunk end
  until not chunk
  local reused_before = httpc:get_reused_times()
  httpc:set_keepalive()
  return kong.response.exit(200, { status = res.status, pieces = #parts,
    body = table.concat(parts), reused = reused_before })"#;
    let cfg = config(&up, code, &vars);
    let proxy = Proxy::start_with(
        &cfg,
        &[
            "--workers",
            "1",
            "--lua-ssl-trusted-certificate",
            ca.to_str().unwrap(),
        ],
    )
    .await;
    let j = proxy.get("/", &[]).await.json();
    assert_eq!(j["status"], 200, "{j}");
    assert!(
        j["pieces"].as_u64().unwrap() > 1,
        "read in 8-byte pieces: {j}"
    );
    assert!(j["body"].as_str().unwrap().contains("\"uri\":\"/stream\""));
    assert_eq!(j["reused"], 0);
    let j = proxy.get("/", &[]).await.json();
    assert_eq!(j["reused"], 1, "the pooled TLS connection: {j}");
    assert_eq!(up.connections(), 1);
    // Without the CA the certificate is refused (ssl_verify is on by default).
    let proxy = Proxy::start(&cfg).await;
    let r = proxy.get("/", &[]).await;
    assert_eq!(r.status, 502);
    assert!(
        r.json()["err"].as_str().unwrap().contains("self-signed"),
        "{}",
        r.text()
    );
}

#[tokio::test]
async fn resty_redis_commands_pipelines_auth_and_keepalive() {
    let redis = Redis::start(&["--requirepass", "s3cret"]).await;
    let up = Upstream::start().await;
    let vars = format!("local rport = {}", redis.port);
    let code = r#"
  local redis = require "resty.redis"
  local red = redis:new()
  red:set_timeouts(1000, 1000, 1000)
  local ok, err = red:connect("127.0.0.1", rport)
  if not ok then return kong.response.exit(502, { err = "connect: " .. err }) end
  local reused = red:get_reused_times()
  if reused == 0 then
    local ok, err = red:auth("s3cret")
    if not ok then return kong.response.exit(502, { err = "auth: " .. err }) end
    assert(red:select(2))
  end
  assert(red:set("greeting", "hello"))
  local hits = red:incr("hits")
  local value = red:get("greeting")
  local missing = red:get("nothing-here")
  local bad, bad_err = red:incr("greeting")
  red:hmset("user:1", { name = "ada", lang = "lua" })
  local user = red:array_to_hash(red:hgetall("user:1"))
  red:init_pipeline()
  red:set("p1", "a")
  red:get("p1")
  red:lpush("list", "x")
  red:get("nothing-here")
  local results, perr = red:commit_pipeline()
  assert(red:set_keepalive(10000, 16))
  return kong.response.exit(200, { reused = reused, hits = hits, value = value,
    missing_is_null = missing == ngx.null, bad = bad, bad_err = bad_err, name = user.name,
    lang = user.lang, pipeline = { results[1], results[2], type(results[3]), results[4] == ngx.null } })"#;
    let proxy = Proxy::start_with(&config(&up, code, &vars), &["--workers", "1"]).await;
    let r = proxy.get("/", &[]).await;
    assert_eq!(r.status, 200, "{}\n{}", r.text(), proxy.stderr());
    let j = r.json();
    assert_eq!(j["reused"], 0);
    assert_eq!(j["hits"], 1);
    assert_eq!(j["value"], "hello");
    assert_eq!(j["missing_is_null"], true);
    assert_eq!(j["bad"], false);
    assert!(j["bad_err"]
        .as_str()
        .unwrap()
        .starts_with("ERR value is not an integer"));
    assert_eq!(
        (j["name"].as_str(), j["lang"].as_str()),
        (Some("ada"), Some("lua"))
    );
    assert_eq!(
        j["pipeline"],
        serde_json::json!(["OK", "a", "number", true])
    );
    let j = proxy.get("/", &[]).await.json();
    assert_eq!(
        j["reused"], 1,
        "the kept-alive connection, still authenticated: {j}"
    );
    assert_eq!(j["hits"], 2);
    // What the plugin wrote is in Redis, in database 2.
    let auth = ["-a", "s3cret", "-n", "2"];
    assert_eq!(
        redis.cli(&[&auth[..], &["GET", "greeting"]].concat()),
        "hello"
    );
    assert_eq!(
        redis.cli(&[&auth[..], &["HGET", "user:1", "name"]].concat()),
        "ada"
    );
    assert_eq!(
        redis.cli(&["-a", "s3cret", "-n", "0", "EXISTS", "greeting"]),
        "0"
    );
}

#[tokio::test]
async fn resty_redis_reports_a_wrong_password_and_a_dead_server() {
    let redis = Redis::start(&["--requirepass", "right"]).await;
    let up = Upstream::start().await;
    let vars = format!("local rport = {}", redis.port);
    let code = r#"
  local red = require("resty.redis"):new()
  red:set_timeout(500)
  local ok, err = red:connect("127.0.0.1", rport)
  if not ok then return kong.response.exit(200, { connect = err }) end
  local ok, err = red:auth("wrong")
  local v, gerr = red:get("k")
  return kong.response.exit(200, { auth = ok, auth_err = err, get_err = gerr })"#;
    let proxy = Proxy::start(&config(&up, code, &vars)).await;
    let j = proxy.get("/", &[]).await.json();
    assert_eq!(j["auth"], false, "{j}");
    assert!(j["auth_err"].as_str().unwrap().contains("WRONGPASS"), "{j}");
    assert!(j["get_err"].as_str().unwrap().starts_with("NOAUTH"), "{j}");
    drop(redis);
    let j = proxy.get("/", &[]).await.json();
    assert_eq!(j["connect"], "connection refused", "{j}");
}
