//! The sandbox: escape and abuse attempts by plugin code are denied or contained (500), and
//! the proxy keeps serving afterwards.

mod common;

use common::{render, Proxy, Upstream};
use sluice::plugins::lua::embed;

/// (name, Lua code run in `access`, what it tries)
const ATTEMPTS: &[(&str, &str)] = &[
    ("io-open", "io.open('/etc/passwd')"),
    ("io-popen", "io.popen('id')"),
    ("io-lines", "for l in io.lines('/etc/passwd') do end"),
    ("os-execute", "os.execute('id')"),
    ("os-getenv", "local home = os.getenv('HOME')"),
    ("os-exit", "os.exit(1)"),
    ("os-remove", "os.remove('/tmp/x')"),
    ("require-os", "require('os')"),
    ("require-ffi", "require('ffi')"),
    ("ffi-global", "ffi.C.abort()"),
    ("require-io", "require('io')"),
    ("load", "load('return 1')()"),
    ("loadstring", "loadstring('return 1')()"),
    ("dofile", "dofile('/etc/passwd')"),
    ("loadfile", "loadfile('/etc/passwd')"),
    ("string-dump", "string.dump(function() end)"),
    ("string-method-dump", "local s = ('x'):dump()"),
    ("string-metatable", "getmetatable('').__index.dump = nil"),
    ("setmetatable-string", "setmetatable('', {})"),
    ("debug-getinfo", "debug.getinfo(1)"),
    ("debug-via-require", "require('debug').getinfo(1)"),
    ("package-loadlib", "package.loadlib('libc.so.6', 'system')"),
    ("collectgarbage", "collectgarbage('count')"),
    ("rawget", "rawget(_G, 'kong')"),
    ("setfenv", "setfenv(1, {})"),
    ("getfenv", "getfenv(1)"),
    ("jit-on", "jit.on()"),
    ("bytecode", "local f = load(string.char(27, 76, 74, 2)) f()"),
    ("infinite-loop", "while true do end"),
    (
        "loop-in-coroutine",
        "coroutine.wrap(function() local i = 0 while true do i = i + 1 end end)()",
    ),
    ("one-gib-string", "local s = string.rep('x', 2^30)"),
    (
        "table-growth",
        "local t = {} for i = 1, 1e9 do t[i] = i end",
    ),
    (
        "deep-recursion",
        "local function f(n) return 1 + f(n + 1) end f(1)",
    ),
    (
        "string-concat-growth",
        "local s = 'x' while true do s = s .. s end",
    ),
];

use common::{access_handler as handler, empty_schema as schema};

#[tokio::test]
async fn escape_attempts_are_denied_and_the_proxy_keeps_serving() {
    let up = Upstream::start().await;
    let mut cfg = String::from("_format_version: \"3.0\"\ncustom_plugins:\n");
    let mut routes = String::from("routes:\n");
    for (name, code) in ATTEMPTS {
        cfg.push_str(&embed::render(name, &handler(code), &schema(name), false));
        routes.push_str(&format!(
            "  - {{name: {name}, paths: [/{name}], plugins: [{{name: {name}}}]}}\n"
        ));
    }
    // A plugin that tampers with its own globals, and a healthy one after it.
    let tamper = "string.upper = nil; kong = nil; ngx = nil; _G.print = nil";
    cfg.push_str(&embed::render(
        "tamper",
        &handler(tamper).replace("return kong.response.exit(200, { ok = true })", ""),
        &schema("tamper"),
        false,
    ));
    let healthy = "local P = { PRIORITY = 0, VERSION = \"1.0.0\" }\nfunction P:access(conf)\n  kong.service.request.set_header('x-upper', string.upper('ok'))\nend\nreturn P\n";
    cfg.push_str(&embed::render(
        "healthy",
        healthy,
        &schema("healthy"),
        false,
    ));
    cfg.push_str(&routes);
    cfg.push_str(&render(
        "services:\n  - name: s\n    url: http://{upstream}\n    routes:\n      - {name: normal, paths: [/normal], plugins: [{name: tamper}, {name: healthy}]}\n",
        &[&up],
    ));
    let proxy = Proxy::start_with(
        &cfg,
        &["--lua-cpu-budget-ms", "50", "--lua-memory-mb", "64"],
    )
    .await;

    for (name, code) in ATTEMPTS {
        eprintln!("attempt: {name}");
        let r = proxy.get(&format!("/{name}"), &[]).await;
        assert_eq!(
            r.status,
            500,
            "{name} ({code}) was not denied: {}",
            r.text()
        );
        assert_eq!(
            r.json(),
            serde_json::json!({"message": "An unexpected error occurred"})
        );
        // After every attempt the proxy still serves, and globals tampering stayed local.
        let ok = proxy.get("/normal", &[]).await;
        assert_eq!(ok.status, 200, "after {name}: {}", ok.text());
        assert_eq!(up.last().header("x-upper"), Some("OK"));
    }
    let log = proxy.stderr();
    assert!(log.contains("CPU budget"), "{log}");
    assert!(log.contains("not enough memory"), "{log}");
}

/// The coroutine a phase call runs in is kept for the next call (runtime/threads.rs). A plugin
/// that keeps a handle to it (`coroutine.running()`) and resumes it between calls must not be
/// able to slip its own code in front of a later request's plugins: the resume fails, and
/// every later call runs its plugins in full.
#[tokio::test]
async fn a_kept_phase_coroutine_cannot_be_hijacked_between_calls() {
    let up = Upstream::start().await;
    let stash = r#"local saved
local P = { PRIORITY = 2000, VERSION = "1.0.0" }
function P:access(conf)
  local mode = kong.request.get_header("x-mode") or "none"
  if mode == "stash" then
    saved = coroutine.running()
  end
  kong.service.request.set_header("x-stash", "ran-" .. mode)
end
function P:header_filter(conf)
  if kong.request.get_header("x-mode") == "tamper" and saved then
    -- Shaped as the call loop's arguments (marker, id, method, handler, conf), with a
    -- forged marker; the method would wait inside the kept coroutine, to be resumed by the
    -- next request's call in place of that call's plugins.
    local ok, err = coroutine.resume(saved, nil, 1, function() coroutine.yield() end, {}, {})
    kong.response.set_header("x-tamper", tostring(ok) .. " " .. tostring(err))
  end
end
return P
"#;
    let guard = "local P = { PRIORITY = 1000, VERSION = \"1.0.0\" }\nfunction P:access(conf)\n  kong.service.request.set_header('x-guard', 'ran')\nend\nreturn P\n";
    let mut cfg = String::from("_format_version: \"3.0\"\ncustom_plugins:\n");
    cfg.push_str(&embed::render("stash", stash, &schema("stash"), false));
    cfg.push_str(&embed::render("guard", guard, &schema("guard"), false));
    cfg.push_str(&render(
        "services:\n  - name: s\n    url: http://{upstream}\n    routes:\n      - {name: one, paths: [/one], plugins: [{name: stash}]}\n      - {name: batch, paths: [/batch], plugins: [{name: stash}, {name: guard}]}\n",
        &[&up],
    ));
    // One worker: the plugin's `saved` lives in that worker's VM.
    let proxy = Proxy::start_with(&cfg, &["--workers", "1"]).await;

    // One instance's call (wait.lua's loop), then a batch's (the dispatcher's loop).
    for path in ["/one", "/batch"] {
        let r = proxy.get(path, &[("x-mode", "stash")]).await;
        assert_eq!(r.status, 200, "{path}: {}", r.text());
        let r = proxy.get(path, &[("x-mode", "tamper")]).await;
        assert_eq!(r.status, 200, "{path}: {}", r.text());
        let tamper = r.header("x-tamper").unwrap_or_default().to_string();
        assert!(
            tamper.starts_with("false"),
            "{path}: resuming the kept coroutine was not refused: {tamper}"
        );
        for i in 0..3 {
            let r = proxy.get(path, &[("x-mode", "check")]).await;
            assert_eq!(r.status, 200, "{path}, check {i}: {}", r.text());
            let seen = up.last();
            assert_eq!(
                seen.header("x-stash"),
                Some("ran-check"),
                "{path}, check {i}"
            );
            if path == "/batch" {
                assert_eq!(seen.header("x-guard"), Some("ran"), "{path}, check {i}");
            }
        }
    }
}

/// A plugin that keeps the coroutine a call waits in (`coroutine.running()` while it waits on
/// a socket) cannot resume it from another request's call: that would run the first
/// request's plugin code on the second request, and hand the waiting call forged results. As
/// OpenResty refuses a coroutine of another request, the sandbox's `coroutine.resume` refuses
/// the gateway's own coroutines (phase calls, light threads).
#[tokio::test]
async fn a_waiting_call_cannot_be_resumed_from_another_request() {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

    let up = Upstream::start().await;
    let hold = r#"local saved
local P = { PRIORITY = 2000, VERSION = "1.0.0" }
function P:access(conf)
  local mode = kong.request.get_header("x-mode")
  if mode == "hold" then
    local sock = ngx.socket.tcp()
    sock:settimeout(10000)
    assert(sock:connect("127.0.0.1", tonumber(kong.request.get_header("x-port"))))
    saved = coroutine.running()
    assert(sock:send("ready\n"))
    local line = sock:receive("*l")
    kong.service.request.set_header("x-held", line or "none")
  elseif mode == "poke" then
    local ok, err = coroutine.resume(saved, 1, "forged")
    kong.service.request.set_header("x-poke", tostring(ok) .. " " .. tostring(err))
    local t = ngx.thread.spawn(function() end)
    local ok2, err2 = coroutine.resume(t)
    kong.service.request.set_header("x-poke-thread", tostring(ok2) .. " " .. tostring(err2))
  end
end
return P
"#;
    let mut cfg = String::from("_format_version: \"3.0\"\ncustom_plugins:\n");
    cfg.push_str(&embed::render("hold", hold, &schema("hold"), false));
    cfg.push_str(&render(
        "services:\n  - name: s\n    url: http://{upstream}\n    routes:\n      - {name: r, paths: [/r], plugins: [{name: hold}]}\n",
        &[&up],
    ));
    // One worker: both requests share its VM, where the plugin keeps `saved`.
    let proxy = Proxy::start_with(&cfg, &["--workers", "1"]).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port().to_string();

    let held = {
        let (addr, port) = (proxy.addr, port.clone());
        tokio::spawn(async move {
            common::send(
                addr,
                "GET",
                "/r",
                &[("x-mode", "hold"), ("x-port", &port)],
                bytes::Bytes::new(),
            )
            .await
        })
    };
    // The first call has kept its coroutine and waits on the socket once "ready" arrives
    // (the send and the wait run in one go on the worker's thread).
    let (sock, _) = tokio::time::timeout(std::time::Duration::from_secs(10), listener.accept())
        .await
        .expect("the plugin did not connect")
        .unwrap();
    let (rd, mut wr) = sock.into_split();
    let mut line = String::new();
    BufReader::new(rd).read_line(&mut line).await.unwrap();
    assert_eq!(line, "ready\n");

    let poke = proxy.get("/r", &[("x-mode", "poke")]).await;
    assert_eq!(poke.status, 200, "{}", poke.text());
    let seen = up.last();
    assert_eq!(seen.header("x-mode"), Some("poke"));
    for name in ["x-poke", "x-poke-thread"] {
        let v = seen.header(name).unwrap_or_default();
        assert!(
            v.starts_with("false"),
            "{name}: the resume was not refused: {v}"
        );
    }
    assert_eq!(seen.header("x-held"), None, "the held call ran on the poke");

    wr.write_all(b"go\n").await.unwrap();
    let r = held.await.unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    let seen = up.last();
    assert_eq!(seen.header("x-mode"), Some("hold"));
    assert_eq!(seen.header("x-held"), Some("go"), "{}", proxy.stderr());
}
