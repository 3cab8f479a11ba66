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
