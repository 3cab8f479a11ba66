//! The PDK's FFI paths (`pdk/fast.rs`: `kong.request.get_header`,
//! `kong.service.request.set_header`, `kong.response.set_header`) answer as the general path
//! does, in the interpreter and once the JIT has compiled the calling loop, including for the
//! calls they hand back to the general path: a value longer than their buffer, an unknown or
//! invalid name, text that is not UTF-8, a value other than a string, a call outside a request.

mod common;

use common::{empty_schema, render, Proxy, Upstream};
use sluice::plugins::lua::embed;

/// Runs each check once, then 300 times (LuaJIT compiles a loop after 56 iterations), and
/// reports `name=value` for each, or where a compiled run answered otherwise.
const PLUGIN: &str = r#"
local P = { PRIORITY = 1, VERSION = "1" }

local function attempt(f, ...)
  local ok, v = pcall(f, ...)
  if ok then return tostring(v) end
  return "error: " .. tostring(v)
end

local function checks()
  local get, set = kong.request.get_header, kong.service.request.set_header
  return {
    { "plain", function() return get("x-in") end },
    { "case", function() return get("X_In") end },
    { "absent", function() return get("x-none") end },
    { "empty", function() return get("x-empty") end },
    { "repeated", function() return get("x-rep") end },
    { "long", function() set("x-long", string.rep("v", 10000)) local v = get("x-long") return #v .. (v == string.rep("v", 10000) and "" or " wrong") end },
    { "binary-name", function() return attempt(get, "x-\255") end },
    { "number-name", function() return attempt(get, 12) end },
    { "set", function() set("x-up", "one") set("X_Up", "two") return get("x-up") end },
    { "set-number", function() set("x-num", 12) return get("x-num") end },
    { "set-bad-name", function() return attempt(set, "bad name", "v") end },
    { "set-bad-value", function() return attempt(set, "x-nl", "a\nb") end },
    { "set-binary", function() return attempt(set, "x-bin", "caf\233") end },
    { "set-host", function() set("host", "example.test") return get("host") end },
    -- Past the 256 names a VM makes handles for, names take the general path.
    { "many-names", once = true, function()
        for i = 1, 300 do
          if get("x-absent-" .. i) ~= nil then return "found x-absent-" .. i end
        end
        set("x-late", "v") set("X_Late", "w")
        return get("x-late")
      end },
  }
end

local at_load = attempt(kong.request.get_header, "x-in")

function P:access(conf)
  local out = { "load=" .. at_load }
  for _, c in ipairs(checks()) do
    local name, f = c[1], c[2]
    local first = tostring(f())
    for _ = 1, c.once and 0 or 300 do
      local again = tostring(f())
      if again ~= first then
        first = first .. " (compiled: " .. again .. ")"
        break
      end
    end
    out[#out + 1] = name .. "=" .. first
  end
  kong.ctx.shared.report = table.concat(out, "\n")
end

function P:header_filter(conf)
  local set = kong.response.set_header
  for i = 1, 300 do
    set("x-out", "v" .. i)
    set("X_Other", "w")
  end
  local ok, err = pcall(set, "bad name", "v")
  set("x-bad", tostring(ok) .. " " .. tostring(err))
  set("x-count", #kong.ctx.shared.report)
end

function P:body_filter(conf)
  if ngx.arg[2] then
    ngx.arg[1] = kong.ctx.shared.report
  else
    ngx.arg[1] = nil
  end
end

return P
"#;

#[tokio::test]
async fn the_ffi_paths_answer_as_the_general_path_does() {
    let up = Upstream::start().await;
    let mut cfg = String::from("_format_version: \"3.0\"\ncustom_plugins:\n");
    cfg.push_str(&embed::render("fast", PLUGIN, &empty_schema("fast"), false));
    cfg.push_str(&render(
        "services:\n  - name: s\n    url: http://{upstream}\n    routes:\n      - {name: r, paths: [/], plugins: [{name: fast}]}\n",
        &[&up],
    ));
    let proxy = Proxy::start(&cfg).await;
    let r = proxy
        .get(
            "/",
            &[
                ("x-in", "hello"),
                ("x-empty", ""),
                ("x-rep", "first"),
                ("x-rep", "second"),
            ],
        )
        .await;
    assert_eq!(r.status, 200, "{}\n{}", r.text(), proxy.stderr());
    let report = r.text();
    let expected = [
        "load=error: this function can only be called while a request is processed",
        "plain=hello",
        "case=hello",
        "absent=nil",
        "empty=",
        "repeated=first",
        "long=10000",
        "binary-name=error: error converting Lua string to String (invalid utf-8",
        "number-name=error: header name must be a string",
        "set=two",
        "set-number=12",
        "set-bad-name=error: invalid header:  InvalidHTTPHeader context: invalid header name",
        "set-bad-value=error: invalid header:  InvalidHTTPHeader context: invalid value while insert",
        "set-binary=error: error converting Lua string to &str (incomplete utf-8",
        "set-host=example.test",
        "many-names=w",
    ];
    let lines: Vec<&str> = report.lines().collect();
    assert_eq!(lines.len(), expected.len(), "{report}");
    for (line, want) in lines.iter().zip(expected) {
        assert!(
            line.starts_with(want),
            "got {line:?}, want {want:?}\n{report}"
        );
        assert!(!line.contains("compiled"), "{line}");
    }
    // What the upstream received: the last value set, under the name as given.
    let seen = up.last();
    assert_eq!(seen.header("x-up"), Some("two"));
    assert_eq!(seen.header("x-num"), Some("12"));
    assert_eq!(seen.header("host"), Some("example.test"));
    assert_eq!(seen.header("x-in"), Some("hello"));
    assert_eq!(seen.header("x-late"), Some("w"));
    // The response's setters, compiled after their first iterations.
    assert_eq!(r.header("x-out"), Some("v300"));
    assert_eq!(r.header("x-other"), Some("w"));
    // A name the response refuses is dropped, as `HeaderOp` drops it, not raised.
    assert_eq!(r.header("x-bad"), Some("true nil"));
    assert_eq!(r.header("x-count"), Some(report.len().to_string().as_str()));
}
