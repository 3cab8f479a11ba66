//! Issue #11: nothing a request, a plugin or a config push sends may stop the gateway. Each
//! case runs against the real binary on loopback and then checks that the process still
//! serves other requests.

mod common;

use std::time::{Duration, Instant};

use common::{check_file, Proxy};
use sluice::plugins::lua::embed;
use sluice::snapshot::hash_text;

/// (route name, Lua code run in `access`): unbounded recursion from Lua through native code
/// back into Lua, which used to overflow the native stack and kill the process.
const RECURSION_ATTACKS: &[(&str, &str)] = &[
    (
        "gsub-recursion",
        "local function f(s) return (string.gsub(s, '.', f)) end f('xx')",
    ),
    (
        "ngx-re-gsub-recursion",
        "local function f(s) return (ngx.re.gsub(s, '.', f)) end f('xx')",
    ),
    (
        "coroutine-wrap-recursion",
        "local function f() return coroutine.wrap(f)() end f()",
    ),
    (
        "coroutine-resume-recursion",
        "local function f() return coroutine.resume(coroutine.create(f)) end f()",
    ),
    (
        "tostring-format-recursion",
        "local t = setmetatable({}, { __tostring = function(x) return string.format('%s', x) end }) tostring(t)",
    ),
    (
        "sort-comparator-recursion",
        "local function f() table.sort({ 3, 2, 1 }, function(a, b) f() return a < b end) end f()",
    ),
    (
        "metamethod-through-rust",
        "local t = setmetatable({}, {}) getmetatable(t).__tostring = function(x) kong.log.err(x) return 'x' end kong.log.err(t)",
    ),
    (
        "deep-copy-recursion",
        "local t = {} for i = 1, 1e5 do t = { t } end require('kong.tools.table').cycle_aware_deep_copy(t)",
    ),
    (
        "recursion-under-pcall",
        "local function f(s) return (string.gsub(s, '.', f)) end while true do pcall(f, 'xx') end",
    ),
];

/// Plugin code that used to pin a worker forever: the CPU budget caught by `pcall`, and C
/// functions that run long without executing a Lua instruction.
const CPU_ATTACKS: &[(&str, &str)] = &[
    (
        "pcall-loop",
        "local function spin() while true do end end while true do pcall(spin) end",
    ),
    (
        "xpcall-loop",
        "local function spin() while true do end end while true do xpcall(spin, function(e) return e end) end",
    ),
    (
        "xpcall-handler-loop",
        "while true do xpcall(error, function() while true do end end) end",
    ),
    (
        "pcall-loop-in-coroutine",
        "coroutine.wrap(function() local function spin() while true do end end while true do pcall(spin) end end)()",
    ),
    (
        "resume-loop",
        "while true do coroutine.resume(coroutine.create(function() while true do end end)) end",
    ),
    (
        "pattern-backtracking-find",
        "string.find(string.rep('a', 3000), '.-.-.-.-b')",
    ),
    (
        "pattern-backtracking-match",
        "while true do pcall(string.match, string.rep('a', 3000), '.-.-.-.-b') end",
    ),
    (
        "pattern-backtracking-gmatch",
        "for x in string.gmatch(string.rep('a', 3000), '.-.-.-.-b') do end",
    ),
    (
        "pattern-backtracking-gsub",
        "string.gsub(string.rep('a', 3000), '.-.-.-.-b', 'x')",
    ),
    ("big-sort", "local t = {} for i = 1, 5e5 do t[i] = -i end table.sort(t)"),
    (
        "len-metamethod-exit",
        "local t = setmetatable({}, { __len = function() return 1e15 end }) do return kong.response.exit(200, t) end",
    ),
    (
        "exit-body-amplification",
        "local big = string.rep('x', 1e7) local t = {} for i = 1, 3000 do t[i] = big end do return kong.response.exit(200, t) end",
    ),
    (
        "cjson-amplification",
        "local big = string.rep('x', 1e7) local t = {} for i = 1, 3000 do t[i] = big end local s = require('cjson').encode(t)",
    ),
    (
        "empty-match-split",
        "require('kong.tools.string').psplitn('abc', 'x*')",
    ),
    (
        "huge-random-bytes",
        "require('kong.tools.rand').get_rand_bytes(2^40)",
    ),
    (
        "huge-unpack",
        "require('kong.tools.table').unpack({}, 1, 1e12)",
    ),
    (
        "ngx-re-gsub-amplification",
        "ngx.re.gsub(string.rep('a', 1e6), 'a', string.rep('x', 1e7))",
    ),
    (
        "encode-args-amplification",
        "local s = string.rep('x', 1e7) local t = {} for i = 1, 3000 do t[i] = s end ngx.encode_args({ a = t })",
    ),
    (
        "header-list-amplification",
        "local s = string.rep('x', 1e7) local t = {} for i = 1, 3000 do t[i] = s end kong.response.set_headers({ x = t })",
    ),
    (
        "gsub-amplification",
        "local s = string.rep('x', 1e6) local r = string.rep('y', 1e4) s = s:gsub('x', r)",
    ),
];

use common::{access_handler as handler, empty_schema as schema};

/// A config with one route per attack plus `/plain`, answered by request-termination.
fn attack_config(attacks: &[(&str, &str)]) -> String {
    let mut cfg = String::from("_format_version: \"3.0\"\ncustom_plugins:\n");
    let mut routes = String::from("routes:\n  - name: plain\n    paths: [/plain]\n    plugins:\n      - name: request-termination\n        config: {status_code: 200, message: plain}\n");
    for (name, code) in attacks {
        cfg.push_str(&embed::render(name, &handler(code), &schema(name), false));
        routes.push_str(&format!(
            "  - {{name: {name}, paths: [/{name}], plugins: [{{name: {name}}}]}}\n"
        ));
    }
    cfg + &routes
}

async fn assert_plain_serves(proxy: &Proxy, after: &str) {
    let ok = proxy.get("/plain", &[]).await;
    assert_eq!(ok.status, 200, "after {after}: {}", ok.text());
}

/// Runs each attack while 8 other requests are in flight on both workers; every attack gets a
/// 500, every other request its answer, and the process lives. Returns the proxy's log.
async fn run_attacks(attacks: &[(&str, &str)], args: &[&str]) -> String {
    let mut proxy = Proxy::start_with(&attack_config(attacks), args).await;
    for (name, code) in attacks {
        let started = Instant::now();
        // Other requests run alongside the attack, on both workers.
        let attack = tokio::spawn(get(proxy.addr, format!("/{name}")));
        let others: Vec<_> = (0..8)
            .map(|_| tokio::spawn(get(proxy.addr, "/plain".into())))
            .collect();
        let attack = attack.await.expect("attack task");
        assert_eq!(attack.status, 500, "{name} ({code}): {}", attack.text());
        assert_eq!(
            attack.json(),
            serde_json::json!({"message": "An unexpected error occurred"})
        );
        for r in others {
            let r = r.await.expect("request task");
            assert_eq!(r.status, 200, "a request beside {name}: {}", r.text());
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "{name} took {:?}",
            started.elapsed()
        );
        assert!(
            !proxy.exited(),
            "{name} killed the proxy:\n{}",
            proxy.stderr()
        );
        assert_plain_serves(&proxy, name).await;
    }
    proxy.stderr()
}

#[tokio::test]
async fn issue_11_native_recursion_is_bounded() {
    // A budget large enough that the stack bound, not the budget, stops each of them.
    let log = run_attacks(RECURSION_ATTACKS, &["--lua-cpu-budget-ms", "30000"]).await;
    for (name, _) in RECURSION_ATTACKS {
        let line = log
            .lines()
            .find(|l| l.contains("plugin failed") && l.contains(&format!("plugin {name} ")))
            .unwrap_or_else(|| panic!("no error logged for {name}:\n{log}"));
        assert!(line.contains("stack overflow"), "{name}: {line}");
    }
    assert!(log.contains("C stack overflow"), "{log}");
}

#[tokio::test]
async fn issue_11_the_cpu_budget_cannot_be_caught_or_outrun() {
    let log = run_attacks(CPU_ATTACKS, &[]).await;
    for (name, _) in CPU_ATTACKS {
        let line = log
            .lines()
            .find(|l| l.contains("plugin failed") && l.contains(&format!("plugin {name} ")))
            .unwrap_or_else(|| panic!("no error logged for {name}:\n{log}"));
        assert!(
            ["CPU budget", "not enough memory", "too many results"]
                .iter()
                .any(|m| line.contains(m)),
            "{name}: {line}"
        );
    }
}

async fn get(addr: std::net::SocketAddr, target: String) -> common::Reply {
    common::send(addr, "GET", &target, &[], Default::default()).await
}

#[tokio::test]
async fn issue_11_a_caught_budget_stays_spent() {
    // The plugin catches the overrun and tries to report success: it must not get to.
    let code = "local ok = pcall(function() while true do end end) if not ok then return kong.response.exit(299, { caught = true }) end";
    let proxy = Proxy::start(&attack_config(&[("catcher", code)])).await;
    let r = proxy.get("/catcher", &[]).await;
    assert_eq!(r.status, 500, "{}", r.text());
    assert_plain_serves(&proxy, "catcher").await;
}

#[tokio::test]
async fn issue_11_the_budget_counts_cpu_time_not_wall_time() {
    // The plugin spins for 150 ms of CPU under a 600 ms budget; the test stops the process for
    // 1.5 s in the middle of the spin. A wall-clock deadline would fail the request.
    let code =
        "kong.log.notice('spin starts') local t = os.clock() while os.clock() - t < 0.15 do end";
    let proxy = Proxy::start_with(
        &attack_config(&[("spinner", code)]),
        &["--lua-cpu-budget-ms", "600", "--workers", "1"],
    )
    .await;
    let pid = proxy.pid() as i32;
    let request = tokio::spawn({
        let addr = proxy.addr;
        async move { common::send(addr, "GET", "/spinner", &[], Default::default()).await }
    });
    let deadline = Instant::now() + Duration::from_secs(20);
    while !proxy.stderr().contains("spin starts") {
        assert!(Instant::now() < deadline, "the plugin never ran");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    // SAFETY: plain signals to the child process this test started.
    unsafe { libc::kill(pid, libc::SIGSTOP) };
    tokio::time::sleep(Duration::from_millis(1500)).await;
    unsafe { libc::kill(pid, libc::SIGCONT) };
    let r = request.await.expect("request task");
    assert_eq!(r.status, 200, "{}\n{}", r.text(), proxy.stderr());
}

/// Handler chunks whose top level (run when the plugin is loaded) attacks.
const LOAD_ATTACKS: &[(&str, &str)] = &[
    (
        "top-recursion",
        "local function f(s) return (string.gsub(s, '.', f)) end f('xx')",
    ),
    (
        "top-pcall-loop",
        "local function spin() while true do end end while true do pcall(spin) end",
    ),
    (
        "top-backtracking",
        "string.find(string.rep('a', 3000), '.-.-.-.-b')",
    ),
];

fn loading_config(top: &str) -> String {
    let handler =
        format!("{top}\nreturn {{ PRIORITY = 1, VERSION = \"1.0.0\", access = function() end }}\n");
    format!(
        "_format_version: \"3.0\"\ncustom_plugins:\n{}",
        embed::render("evil", &handler, &schema("evil"), false)
    )
}

#[test]
fn issue_11_proxy_check_survives_hostile_handlers() {
    for (name, top) in LOAD_ATTACKS {
        let started = Instant::now();
        let (ok, err) = check_file(&loading_config(top), "kong.yaml");
        assert!(!ok, "{name}: accepted");
        assert!(
            err.contains("custom plugin \"evil\": handler:"),
            "{name}: {err}"
        );
        assert!(started.elapsed() < Duration::from_secs(20), "{name}");
    }
}

#[tokio::test]
async fn issue_11_a_hostile_handler_in_the_watched_file_is_rejected_and_later_configs_apply() {
    let base = attack_config(&[]);
    let proxy = Proxy::start_with_admin(&base, &[]).await;
    for (name, top) in LOAD_ATTACKS {
        let bad = loading_config(top);
        std::fs::write(&proxy.config_path, &bad).expect("write config");
        assert!(!proxy.wait_for_attempt(&hash_text(&bad)).await, "{name}");
        assert_plain_serves(&proxy, name).await;
    }
    // The reloader is not wedged: a valid config still applies.
    let next = base.replace("message: plain", "message: next");
    std::fs::write(&proxy.config_path, &next).expect("write config");
    assert!(proxy.wait_for_attempt(&hash_text(&next)).await);
    let r = proxy.get("/plain", &[]).await;
    assert_eq!(r.json()["message"], "next");
}

#[tokio::test]
async fn issue_11_a_yaml_alias_bomb_is_refused_with_a_location() {
    let proxy = Proxy::start_with_admin(&attack_config(&[]), &[]).await;
    let mut bomb = String::from("_format_version: \"3.0\"\na0: &a0 [x, x, x, x, x, x, x, x, x]\n");
    for i in 1..=8 {
        let refs = vec![format!("*a{}", i - 1); 9].join(",");
        bomb.push_str(&format!("a{i}: &a{i} [{refs}]\n"));
    }
    assert!(bomb.len() < 600);
    let r = proxy.admin("POST", "/config", &bomb).await;
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(
        r.text().contains("aliases expand to more than"),
        "{}",
        r.text()
    );
    assert_plain_serves(&proxy, "the alias bomb").await;
    let (ok, err) = check_file(&bomb, "bomb.yaml");
    assert!(!ok);
    assert!(err.contains("bomb.yaml:"), "{err}");
    assert!(err.contains("aliases expand to more than"), "{err}");
}

#[tokio::test]
async fn issue_11_pre_function_recursion_is_a_500() {
    let cfg = attack_config(&[]).replace(
        "routes:\n",
        "routes:\n  - name: pre\n    paths: [/pre]\n    plugins:\n      - name: pre-function\n        config:\n          access:\n            - \"local function f(s) return (string.gsub(s, '.', f)) end f('xx')\"\n",
    );
    let mut proxy = Proxy::start_with(&cfg, &["--lua-cpu-budget-ms", "30000"]).await;
    let r = proxy.get("/pre", &[]).await;
    assert_eq!(r.status, 500, "{}", r.text());
    assert!(!proxy.exited());
    assert!(
        proxy.stderr().contains("C stack overflow"),
        "{}",
        proxy.stderr()
    );
    assert_plain_serves(&proxy, "pre-function").await;
}

#[tokio::test]
async fn issue_11_a_plugin_cannot_change_what_other_plugins_see() {
    // `tamper` runs first and tries to replace or spy on shared tables; `victim` runs after it
    // (and on later requests) and must see the PDK and modules unchanged. Writes to `ngx` that
    // the shared table refuses land in tamper's own view of it (issue #12), not in victim's.
    let tamper = r#"
local P = { PRIORITY = 2000, VERSION = "1.0.0" }
function P:access(conf)
  local attempts = {
    function() kong.request.get_header = nil end,
    function() kong.service.request.set_header = function() end end,
    function() require("cjson").encode = function() return "spoof" end end,
    function() require("cjson.safe").decode = nil end,
    function() getmetatable(ngx.var).__index = function() return "spoof" end end,
    function() setmetatable(kong.request, {}) end,
    function() ngx.req.get_headers = nil end,
    function() ngx.spoof = true end,
    function() kong.ctx.shared = {} end,
    function() kong.log.err = nil end,
    function() require("kong.tools.utils").random_string = nil end,
  }
  local refused = 0
  for i, f in ipairs(attempts) do
    local ok, err = pcall(f)
    if not ok then refused = refused + 1 end
  end
  kong.ctx.shared.refused = refused
  ngx.req.get_method = function() return "SPOOF" end
  kong.ctx.shared.own_view = ngx.spoof == true and ngx.req.get_method() == "SPOOF"
  kong.ctx.shared.note = "from tamper"
end
return P
"#;
    let victim = r#"
local P = { PRIORITY = 1000, VERSION = "1.0.0" }
local cjson = require("cjson")
function P:access(conf)
  local seen = {
    header = kong.request.get_header("x-probe"),
    encoded = cjson.encode({ a = 1 }),
    uri = ngx.var.uri,
    spoof = ngx.spoof == nil,
    get_headers = type(ngx.req.get_headers) == "function" and ngx.req.get_method() == "GET",
    own_view = kong.ctx.shared.own_view,
    shared_note = kong.ctx.shared.note,
    refused = kong.ctx.shared.refused,
    pairs = 0,
  }
  for _ in pairs(kong.request) do seen.pairs = seen.pairs + 1 end
  kong.service.request.set_header("x-victim", "set")
  return kong.response.exit(200, seen)
end
return P
"#;
    let mut cfg = String::from("_format_version: \"3.0\"\ncustom_plugins:\n");
    cfg.push_str(&embed::render("tamper", tamper, &schema("tamper"), false));
    cfg.push_str(&embed::render("victim", victim, &schema("victim"), false));
    cfg.push_str("routes:\n  - name: iso\n    paths: [/iso]\n    plugins: [{name: tamper}, {name: victim}]\n  - name: alone\n    paths: [/alone]\n    plugins: [{name: victim}]\n");
    let proxy = Proxy::start_with(&cfg, &["--workers", "1"]).await;
    for target in ["/iso", "/alone", "/iso"] {
        let r = proxy.get(target, &[("x-probe", "probe")]).await;
        assert_eq!(r.status, 200, "{target}: {}", r.text());
        let seen = r.json();
        assert_eq!(seen["header"], "probe", "{target}: {seen}");
        assert_eq!(seen["encoded"], "{\"a\":1}", "{target}: {seen}");
        assert_eq!(seen["uri"], target, "{target}: {seen}");
        assert_eq!(seen["spoof"], true, "{target}: {seen}");
        assert_eq!(seen["get_headers"], true, "{target}: {seen}");
        assert!(
            seen["pairs"].as_u64().unwrap_or(0) > 10,
            "pairs over a view: {seen}"
        );
        if target == "/iso" {
            assert_eq!(
                seen["refused"], 9,
                "every attempt refused but the two on ngx: {seen}"
            );
            assert_eq!(seen["own_view"], true, "tamper sees its own ngx: {seen}");
            assert_eq!(
                seen["shared_note"], "from tamper",
                "kong.ctx.shared is shared"
            );
        }
    }
}

#[tokio::test]
async fn issue_11_writes_to_shared_tables_name_what_was_protected() {
    let code = "local ok, err = pcall(function() kong.request.get_header = nil end) do return kong.response.exit(200, { err = err }) end";
    let proxy = Proxy::start(&attack_config(&[("writer", code)])).await;
    let r = proxy.get("/writer", &[]).await;
    let err = r.json()["err"].as_str().unwrap_or_default().to_string();
    assert!(
        err.contains("Cannot modify kong.request.get_header. Protected by the sandbox."),
        "{err}"
    );
}

#[tokio::test]
async fn issue_11_pdk_edge_cases_fail_or_pass_cleanly() {
    // (name, code, status, what the log must show)
    let cases: &[(&str, &str, u16, &str)] = &[
        (
            "pdk-reentered-from-a-metamethod",
            "local t = setmetatable({}, { __len = function() kong.response.set_header('x', 'y') return 1 end }) do return kong.response.exit(200, t) end",
            500,
            "cannot be called from a metamethod",
        ),
        (
            "log-amplification",
            "local s = string.rep('x', 1e7) local t = {} for i = 1, 7000 do t[i] = s end kong.log.err(unpack(t))",
            200,
            "...(truncated)",
        ),
        (
            "bytes-to-str-precision",
            "require('kong.tools.string').bytes_to_str(1, 'k', 1e6)",
            500,
            "precision too long",
        ),
    ];
    let attacks: Vec<(&str, &str)> = cases.iter().map(|c| (c.0, c.1)).collect();
    let proxy = Proxy::start(&attack_config(&attacks)).await;
    for (name, _, status, logged) in cases {
        let r = proxy.get(&format!("/{name}"), &[]).await;
        assert_eq!(r.status, *status, "{name}: {}", r.text());
        assert!(
            proxy.stderr().contains(logged),
            "{name}: {}",
            proxy.stderr()
        );
        assert_plain_serves(&proxy, name).await;
    }
}

#[test]
fn issue_11_a_handler_whose_metamethods_loop_is_rejected_at_load() {
    let handler = "return setmetatable({ PRIORITY = 1, VERSION = '1.0.0' }, { __index = function() while true do end end })";
    let cfg = format!(
        "_format_version: \"3.0\"\ncustom_plugins:\n{}",
        embed::render("meta", handler, &schema("meta"), false)
    );
    let started = Instant::now();
    let (ok, err) = check_file(&cfg, "kong.yaml");
    assert!(!ok);
    assert!(err.contains("CPU budget"), "{err}");
    assert!(started.elapsed() < Duration::from_secs(20));
}

#[tokio::test]
async fn issue_11_a_condition_over_a_hostile_shared_table_fails_its_request() {
    let setter = "local P = { PRIORITY = 2000, VERSION = \"1.0.0\" }\nfunction P:access(conf)\n  kong.ctx.shared.x = setmetatable({}, { __len = function() while true do end end })\nend\nreturn P\n";
    let reader = "local P = { PRIORITY = 1000, VERSION = \"1.0.0\" }\nfunction P:access(conf)\n  return kong.response.exit(200, { ran = true })\nend\nreturn P\n";
    let mut cfg = String::from("_format_version: \"3.0\"\ncustom_plugins:\n");
    cfg.push_str(&embed::render("setter", setter, &schema("setter"), false));
    cfg.push_str(&embed::render("reader", reader, &schema("reader"), false));
    cfg.push_str("routes:\n  - name: c\n    paths: [/c]\n    plugins:\n      - name: setter\n      - name: reader\n        condition: 'has(kong.ctx.shared.x)'\n  - name: plain\n    paths: [/plain]\n    plugins:\n      - name: request-termination\n        config: {status_code: 200, message: plain}\n");
    let proxy = Proxy::start(&cfg).await;
    let r = proxy.get("/c", &[]).await;
    assert_eq!(r.status, 500, "{}", r.text());
    assert_plain_serves(&proxy, "the condition").await;
}

#[tokio::test]
async fn issue_11_a_vm_that_plugin_code_fills_is_replaced() {
    // The plugin keeps 4 MB more on every request in module state: the worker's VM fills up
    // and stays full. The request that finds it full fails; the VM is then replaced, and the
    // plugin (and every other Lua plugin on that worker) works again.
    let hoarder = "local keep = {}\nlocal P = { PRIORITY = 1, VERSION = \"1.0.0\" }\nfunction P:access(conf)\n  keep[#keep + 1] = string.rep('x', 4e6) .. #keep\n  return kong.response.exit(200, { kept = #keep })\nend\nreturn P\n";
    let mut cfg = String::from("_format_version: \"3.0\"\ncustom_plugins:\n");
    cfg.push_str(&embed::render(
        "hoarder",
        hoarder,
        &schema("hoarder"),
        false,
    ));
    cfg.push_str("routes:\n  - name: h\n    paths: [/h]\n    plugins: [{name: hoarder}]\n");
    let proxy = Proxy::start_with(&cfg, &["--workers", "1", "--lua-memory-mb", "64"]).await;
    let mut failed = false;
    for _ in 0..40 {
        let r = proxy.get("/h", &[]).await;
        if r.status == 500 {
            failed = true;
            break;
        }
        assert_eq!(r.status, 200, "{}", r.text());
    }
    assert!(failed, "the VM never filled up");
    let r = proxy.get("/h", &[]).await;
    assert_eq!(r.status, 200, "{}\n{}", r.text(), proxy.stderr());
    assert_eq!(r.json()["kept"], 1, "a fresh VM: {}", r.text());
    assert!(proxy
        .stderr()
        .contains("replacing this worker's exhausted Lua VM"));
}

/// The daemon (`--daemon`) kills on drop, by the pid it wrote.
struct Daemon {
    pid_file: std::path::PathBuf,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(pid) = std::fs::read_to_string(&self.pid_file)
            .ok()
            .and_then(|p| p.trim().parse::<i32>().ok())
        {
            // SAFETY: signals the daemon this test started.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
    }
}

/// Daemon mode forks after the startup compile, which has already run plugin code and so
/// started the Lua watchdog in the parent; the child must watch its own calls, or a runaway
/// loop would pin a worker forever (regression: the watchdog was started once per process
/// image, not once per process).
#[tokio::test]
async fn issue_14_a_daemon_stops_a_runaway_call() {
    let dir = tempfile::tempdir().expect("temp dir");
    let cfg = dir.path().join("kong.yaml");
    std::fs::write(&cfg, attack_config(&[("spin", "while true do end")])).expect("config");
    let pid_file = dir.path().join("proxy.pid");
    let conf = dir.path().join("pingora.yaml");
    std::fs::write(
        &conf,
        format!("---\nversion: 1\npid_file: {}\n", pid_file.display()),
    )
    .expect("pingora conf");
    let log = std::fs::File::create(dir.path().join("proxy.log")).expect("log");
    let port = common::free_port();
    let _daemon = Daemon {
        pid_file: pid_file.clone(),
    };
    let status = std::process::Command::new(common::binary())
        .args(["--config", cfg.to_str().unwrap()])
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .args([
            "--listen-tls",
            "off",
            "--admin-listen",
            "off",
            "--workers",
            "1",
        ])
        .args(["--pingora-conf", conf.to_str().unwrap(), "--daemon"])
        .stderr(log)
        .status()
        .expect("start the daemon");
    assert!(status.success(), "the daemon's parent failed: {status}");
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let started = Instant::now();
    loop {
        if tokio::net::TcpStream::connect(addr).await.is_ok() {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the daemon does not listen: {}",
            std::fs::read_to_string(dir.path().join("proxy.log")).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let spin = tokio::time::timeout(Duration::from_secs(20), get(addr, "/spin".into()))
        .await
        .expect("the runaway call was never stopped");
    assert_eq!(spin.status, 500, "{}", spin.text());
    assert_eq!(get(addr, "/plain".into()).await.status, 200);
}
