//! Tests: shared helpers, cjson, the JSON converters and the error plumbing.

use mlua::{Lua, Table, Value};

/// A VM with `ngx`, `kong` (base parts), and `require` answering from [`super::modules`].
pub(super) fn env() -> Lua {
    let lua = Lua::new();
    let g = lua.globals();
    let ngx = super::ngx_base(&lua).unwrap();
    g.set("ngx", ngx.clone()).unwrap();
    g.set("kong", super::kong_base(&lua, "node-1").unwrap())
        .unwrap();
    let mods = lua.create_table().unwrap();
    for (name, t) in super::modules(&lua, &ngx).unwrap() {
        mods.set(name, t).unwrap();
    }
    let require = crate::plugins::lua::util::support::raw_function(&lua, move |_, name: String| {
        mods.get::<Option<Table>>(name.as_str())?
            .ok_or_else(|| mlua::Error::RuntimeError(format!("module '{name}' not found")))
    })
    .unwrap();
    g.set("require", require).unwrap();
    lua
}

/// Runs `code` (Lua with asserts) in a fresh [`env`], panicking with Lua's message on failure.
pub(super) fn run(code: &str) {
    let lua = env();
    if let Err(e) = lua.load(code).set_name("=test").exec() {
        panic!("Lua failed: {e}");
    }
}

#[test]
fn cjson_encode_scalars_and_strings() {
    run(r#"
        local cjson = require "cjson"
        assert(cjson.encode(3) == "3")
        assert(cjson.encode(-3) == "-3")
        assert(cjson.encode(0.1) == "0.1", cjson.encode(0.1))
        assert(cjson.encode(1e300) == "1e+300", cjson.encode(1e300))
        assert(cjson.encode(1/3) == "0.33333333333333", cjson.encode(1/3))
        assert(cjson.encode(2^53) == "9.007199254741e+15", cjson.encode(2^53))
        assert(cjson.encode(123456789012) == "123456789012")
        assert(cjson.encode(true) == "true" and cjson.encode(false) == "false")
        assert(cjson.encode(nil) == "null" and cjson.encode(cjson.null) == "null")
        assert(cjson.encode("a/b") == [["a\/b"]], cjson.encode("a/b"))
        assert(cjson.encode('q"\\\n\t\r\b\f') == [["q\"\\\n\t\r\b\f"]])
        assert(cjson.encode("\1\31\127") == [["\u0001\u001f\u007f"]], cjson.encode("\1\31\127"))
        assert(cjson.encode("héllo") == '"héllo"')
        assert(cjson.encode_escape_forward_slash(false) == false)
        assert(cjson.encode("a/b") == [["a/b"]])
    "#);
}

#[test]
fn cjson_encode_tables() {
    run(r#"
        local cjson = require "cjson"
        assert(cjson.encode({}) == "{}")
        assert(cjson.encode({1, 2, 3}) == "[1,2,3]")
        assert(cjson.encode({a = 1}) == '{"a":1}')
        assert(cjson.encode({[1] = "a", [3] = "c"}) == '["a",null,"c"]')
        assert(cjson.encode(cjson.empty_array) == "[]")
        assert(cjson.encode({list = cjson.empty_array}) == '{"list":[]}')
        assert(cjson.encode(setmetatable({}, cjson.array_mt)) == "[]")
        assert(cjson.encode(setmetatable({}, cjson.empty_array_mt)) == "[]")
        assert(cjson.encode(setmetatable({1, 2}, cjson.empty_array_mt)) == "[1,2]")
        local t = setmetatable({"one", "two", foo = "bar"}, cjson.array_mt)
        assert(cjson.encode(t) == '["one","two"]')
        assert(cjson.encode({a = {b = {c = {1, {d = false}}}}}) == '{"a":{"b":{"c":[1,{"d":false}]}}}')
        assert(cjson.encode({[0] = "z"}) == '{"0":"z"}')
        assert(cjson.encode({[1.5] = "x"}) == '{"1.5":"x"}')
        local ok, err = pcall(cjson.encode, {[1] = 1, [100] = 2})
        assert(not ok and err == "Cannot serialise table: excessively sparse array", err)
        ok, err = pcall(cjson.encode, {f = function() end})
        assert(not ok and err == "Cannot serialise function: type not supported", err)
        ok, err = pcall(cjson.encode, {[true] = 1})
        assert(not ok and err == "Cannot serialise boolean: table key must be a number or string", err)
        ok, err = pcall(cjson.encode, 0/0)
        assert(not ok and err == "Cannot serialise number: must not be NaN or Infinity", err)
        local loop = {} loop.self = loop
        ok, err = pcall(cjson.encode, loop)
        assert(not ok and err == "Cannot serialise, excessive nesting (1001)", err)
        ok, err = pcall(cjson.encode)
        assert(not ok and err:find("expected 1 argument"), err)
        cjson.encode_empty_table_as_object(false)
        assert(cjson.encode({}) == "[]")
        cjson.encode_sparse_array(true)
        local s = cjson.encode({[1] = 1, [100] = 2})
        assert(s == '{"1":1,"100":2}' or s == '{"100":2,"1":1}', s)
        cjson.encode_skip_unsupported_value_types(true)
        assert(cjson.encode({1, print, 3}) == "[1,3]")
        assert(cjson.encode_invalid_numbers("null") == "null")
        assert(cjson.encode({0/0}) == "[null]")
        cjson.encode_number_precision(3)
        assert(cjson.encode(3.14159) == "3.14")
        cjson.encode_indent("  ")
        assert(cjson.encode({a = {1}}) == '{\n  "a": [\n    1\n  ]\n}', cjson.encode({a = {1}}))
        -- settings are per instance
        local other = cjson.new()
        assert(other.encode({}) == "{}" and other.encode(3.14159) == "3.14159")
        assert(require("cjson.safe").encode({}) == "{}")
    "#);
}

#[test]
fn cjson_decode() {
    run(r#"
        local cjson = require "cjson"
        local t = cjson.decode('{"a":[1,2,{"b":null}],"c":"x","d":true,"e":1.5,"f":-2e3}')
        assert(t.a[1] == 1 and t.a[2] == 2 and t.a[3].b == cjson.null)
        assert(t.a[3].b == ngx.null and cjson.null == ngx.null)
        assert(t.c == "x" and t.d == true and t.e == 1.5 and t.f == -2000)
        assert(cjson.decode("3") == 3 and cjson.decode('"s"') == "s" and cjson.decode("null") == cjson.null)
        assert(cjson.decode('"\\u00e9\\u4e2d\\ud83d\\ude00\\/"') == "é中😀/")
        assert(cjson.decode("12345678901234567890") == 12345678901234567890)
        assert(cjson.decode(" [ ] ")[1] == nil and getmetatable(cjson.decode("[]")) == nil)
        assert(cjson.decode("0x10") == 16 and cjson.decode("-Infinity") == -math.huge)
        local function err(s) local ok, e = pcall(cjson.decode, s) assert(not ok) return e end
        assert(err("") == "Expected value but found T_END at character 1", err(""))
        assert(err("{") == "Expected object key string but found T_END at character 2", err("{"))
        assert(err('{"a" 1}') == "Expected colon but found T_INTEGER at character 6", err('{"a" 1}'))
        assert(err("[1 2]") == "Expected comma or array end but found T_INTEGER at character 4")
        assert(err("[1,]") == "Expected value but found T_ARR_END at character 4")
        assert(err("nul") == "Expected value but found invalid token at character 1")
        assert(err('"abc') == "Expected value but found unexpected end of string at character 5", err('"abc'))
        assert(err('"\\q"') == "Expected value but found invalid escape code at character 2", err('"\\q"'))
        assert(err('"\\udc00"') == "Expected value but found invalid unicode escape code at character 2")
        assert(err("1 2") == "Expected the end but found T_INTEGER at character 3")
        assert(err(string.rep("[", 1001)):find("Found too many nested data structures %(1001%)"))
        local ok, e = pcall(cjson.decode)
        assert(not ok and e:find("expected 1 argument"))
        ok, e = pcall(cjson.decode, nil)
        assert(not ok and e == "bad argument #1 to 'decode' (string expected, got nil)", e)
        cjson.decode_array_with_array_mt(true)
        assert(getmetatable(cjson.decode("[]")) == cjson.array_mt)
        assert(cjson.encode(cjson.decode('{"l":[]}')) == '{"l":[]}')
        assert(err('[1 /* c */]'):find("invalid token"))
        cjson.decode_allow_comment(true)
        assert(cjson.decode('[1 /* c */, // x\n 2]')[2] == 2)
        cjson.decode_invalid_numbers(false)
        assert(err("0x10"):find("invalid number"))
        local safe = require "cjson.safe"
        local v, msg = safe.decode("{bad")
        assert(v == nil and msg == "Expected object key string but found invalid token at character 2", msg)
        v, msg = safe.encode(print)
        assert(v == nil and msg == "Cannot serialise function: type not supported")
        assert(safe.decode('{"a":1}').a == 1)
    "#);
}

#[test]
fn cjson_round_trip() {
    run(r#"
        local cjson = require "cjson"
        local src = '{"list":[1,2.5,"x",true,false,null,{"k":"v"}],"u":"\\u00fc/\\"","n":-0.001}'
        local t = cjson.decode(src)
        local again = cjson.decode(cjson.encode(t))
        assert(again.list[2] == 2.5 and again.list[6] == cjson.null and again.list[7].k == "v")
        assert(again.u == 'ü/"' and again.n == -0.001)
        assert(cjson.encode(cjson.decode("[1,2,3]")) == "[1,2,3]")
    "#);
}

#[test]
fn json_converters() {
    let lua = Lua::new();
    let v: serde_json::Value =
        serde_json::from_str(r#"{"a":[1,2.5,null,"s",{"b":true}],"e":{},"l":[]}"#).unwrap();
    let lv = super::json_to_lua(&lua, &v).unwrap();
    lua.globals().set("v", lv.clone()).unwrap();
    lua.globals()
        .set("ngx", super::ngx_base(&lua).unwrap())
        .unwrap();
    lua.load(
        r#"assert(v.a[1] == 1 and v.a[2] == 2.5 and v.a[3] == ngx.null and v.a[5].b == true)"#,
    )
    .exec()
    .unwrap();
    let back = super::lua_to_json(&lv).unwrap();
    assert_eq!(
        back["a"],
        serde_json::json!([1, 2.5, null, "s", {"b": true}])
    );
    assert_eq!(back["e"], serde_json::json!({}));
    assert_eq!(
        back["l"],
        serde_json::json!({}),
        "empty tables become objects, like cjson"
    );
    let t: Value = lua.load("return {1, [3] = 3}").eval().unwrap();
    assert_eq!(
        super::lua_to_json(&t).unwrap(),
        serde_json::json!([1, null, 3])
    );
    let cjson = super::cjson_module::module(&lua, false).unwrap();
    lua.globals().set("cjson", cjson).unwrap();
    let t: Value = lua
        .load("return {a = cjson.empty_array, b = setmetatable({}, cjson.array_mt), [2] = 'x'}")
        .eval()
        .unwrap();
    assert_eq!(
        super::lua_to_json(&t).unwrap(),
        serde_json::json!({"a": [], "b": [], "2": "x"})
    );
    let t: Value = lua.load("return {f = print}").eval().unwrap();
    assert_eq!(
        super::lua_to_json(&t).unwrap_err(),
        "Cannot serialise function: type not supported"
    );
    let t: Value = lua.load("return {[1] = 1, [50] = 2}").eval().unwrap();
    assert_eq!(
        super::lua_to_json(&t).unwrap_err(),
        "Cannot serialise table: excessively sparse array"
    );
    assert_eq!(
        super::lua_to_json(&Value::Number(0.5)).unwrap(),
        serde_json::json!(0.5)
    );
    assert_eq!(
        super::lua_to_json(&Value::Number(3.0)).unwrap(),
        serde_json::json!(3)
    );
    let t: Value = lua.load("local t = {} t.t = t return t").eval().unwrap();
    assert_eq!(
        super::lua_to_json(&t).unwrap_err(),
        "Cannot serialise, excessive nesting (1001)"
    );
    let t: Value = lua
        .load("local t = {} for i = 1, 999 do t = {t} end return t")
        .eval()
        .unwrap();
    assert!(super::lua_to_json(&t)
        .unwrap()
        .to_string()
        .starts_with("[[[[[[[[[[[[[[[[[["));
}

#[test]
fn deep_nesting_within_limits() {
    run(r#"
        local cjson = require "cjson"
        local t = {} for i = 1, 999 do t = {t} end
        local s = cjson.encode(t)
        assert(#s == 2000 and s:sub(1, 3) == "[[[" and s:sub(-1) == "]", #s)
        assert(type(cjson.decode(s)) == "table")
        assert(type(cjson.decode(string.rep("[", 1000) .. string.rep("]", 1000))) == "table")
    "#);
}

#[test]
fn errors_are_strings_with_positions() {
    run(r#"
        local ok, err = pcall(function() ngx.decode_base64(nil) end)
        assert(not ok and type(err) == "string")
        assert(err == "test:2: string argument only", err)
        ok, err = pcall(ngx.hmac_sha1, "k")
        assert(err == "expecting 2 arguments, but got 1", err)
        ok, err = pcall(ngx.encode_args, nil)
        assert(err == "bad argument #1 to 'encode_args' (table expected, got nil)", err)
        ok, err = pcall(ngx.re.gsub, "abc", "b", function() error("boom") end)
        assert(not ok and err:find("boom"), err)
        ok, err = pcall(function() local m = ngx.re.match("abc", "b", "z") end)
        assert(err == 'test:11: unknown flag "z" (flags "z")', err)
    "#);
}

#[test]
fn number_formatting() {
    use super::support::{fmt_g, fmt_number};
    assert_eq!(fmt_number(3.0), "3");
    assert_eq!(fmt_number(0.1), "0.1");
    assert_eq!(fmt_number(1e15), "1e+15");
    assert_eq!(fmt_number(123456.789), "123456.789");
    assert_eq!(fmt_number(1e-5), "1e-05");
    assert_eq!(fmt_number(-0.0), "-0");
    assert_eq!(fmt_number(f64::INFINITY), "inf");
    assert_eq!(fmt_g(0.0001, 14), "0.0001");
    assert_eq!(fmt_g(100.0, 2), "1e+02");
}

/// `support::function` reads arguments and pushes results on the Lua stack directly; its
/// conversions and errors stay those of mlua's `MultiValue` path: a wrong argument type is
/// raised as a plain string, results keep their number, types and `nil`s.
#[test]
fn rust_functions_convert_in_place_and_raise_strings() {
    use crate::plugins::lua::util::support::{function, raise_here};
    let lua = Lua::new();
    let f = function(
        &lua,
        |_, (s, n, rest): (String, Option<i64>, mlua::Variadic<Value>)| {
            if s == "fail" {
                return Err(raise_here("asked to fail"));
            }
            Ok((s.to_uppercase(), Value::Nil, n.map(|n| n * 2), rest.len()))
        },
    )
    .unwrap();
    lua.globals().set("f", f).unwrap();
    lua.load(
        r##"
        local a, b, c, d = f("ab", 21, true, false, "x")
        assert(a == "AB" and b == nil and c == 42 and d == 3, tostring(a) .. tostring(c))
        assert(select("#", f("ab")) == 4)
        a, b, c = f(12)
        assert(a == "12" and b == nil and c == nil)
        local ok, err = pcall(f, {})
        assert(not ok and type(err) == "string", type(err))
        assert(err:find("error converting Lua table to String", 1, true), err)
        ok, err = pcall(f, "ab", "x")
        assert(not ok and type(err) == "string" and err:find("i64", 1, true), err)
        ok, err = pcall(function() f("fail") end)
        assert(err == "test:12: asked to fail", err)
        "##,
    )
    .set_name("=test")
    .exec()
    .unwrap();
}

/// `support::Text` pushes a string directly while the VM has room, and through mlua's
/// protected push when it has not: near its memory limit the push fails as a catchable Lua
/// error ("not enough memory"), never as an unprotected raise through Rust frames.
#[test]
fn text_results_are_pushed_directly_or_protected_near_the_limit() {
    use crate::plugins::lua::util::support::{function, Text};
    let lua = Lua::new();
    lua.set_memory_limit(crate::plugins::lua::sandbox::limits().memory)
        .unwrap();
    let small = function(&lua, |_, ()| Ok(Text("héllo\0x"))).unwrap();
    let large = function(&lua, |_, n: usize| Ok(Text(vec![b'y'; n]))).unwrap();
    lua.globals().set("small", small).unwrap();
    lua.globals().set("large", large).unwrap();
    lua.load(
        r#"
        assert(small() == "héllo\0x")
        assert(#large(3 * 2^20) == 3 * 2^20)
        "#,
    )
    .set_name("=test")
    .exec()
    .unwrap();
    // Up to 8 MiB below its limit.
    crate::plugins::lua::util::support::fill_memory(
        &lua,
        crate::plugins::lua::sandbox::limits().memory - (8 << 20),
    );
    lua.load(
        r#"
        assert(small() == "héllo\0x")
        local ok, err = pcall(large, 16 * 2^20)
        assert(not ok and tostring(err):find("not enough memory", 1, true), tostring(err))
        __filler = nil
        "#,
    )
    .set_name("=test")
    .exec()
    .unwrap();
}

/// vendor/mlua creates strings and tables without a protected call while a memory-limited VM
/// has room for them; near the limit the same operations must still fail as catchable errors
/// (an unprotected allocation failure would unwind through Rust frames and abort).
#[test]
fn mlua_allocations_near_the_limit_are_errors_not_aborts() {
    let limit = 64 << 20;
    let lua = Lua::new();
    lua.set_memory_limit(limit).unwrap();
    let big = crate::plugins::lua::util::support::function(&lua, |_, n: usize| {
        Ok(String::from_utf8(vec![b'z'; n]).unwrap())
    })
    .unwrap();
    lua.globals().set("big", big).unwrap();
    let call_big: mlua::Function = lua
        .load("return function() return (pcall(big, 4 * 2^20)) end")
        .eval()
        .unwrap();
    let ops = |lua: &Lua| -> Vec<bool> {
        let table = lua.create_table().unwrap();
        vec![
            lua.create_string(vec![b'x'; 4 << 20]).is_ok(),
            lua.create_string(vec![b'x'; (1 << 20) - 1]).is_ok(),
            lua.create_table_with_capacity(1 << 19, 0).is_ok(),
            lua.create_sequence_from(0..(1 << 19)).is_ok(),
            (0..(1 << 19)).try_for_each(|i| table.raw_set(i, i)).is_ok(),
            call_big.call::<bool>(()).unwrap(),
        ]
    };
    assert_eq!(ops(&lua), [true; 6], "with room, every operation succeeds");
    crate::plugins::lua::util::support::fill_memory(&lua, limit - (3 << 20));
    let near = ops(&lua);
    assert!(!near[0], "a 4 MiB string cannot fit");
    assert_eq!(
        near[2..],
        [false; 4],
        "neither can 4 MiB tables or a 4 MiB result"
    );
    lua.globals().raw_set("__filler", Value::Nil).unwrap();
    lua.gc_collect().unwrap();
    assert_eq!(ops(&lua), [true; 6], "the VM recovers once memory is freed");
}

/// `Json` results are the tables `json_to_lua`/`conf_to_lua` make, whether built on the stack
/// or (near the memory limit, or nested deeper than the stack build goes) through mlua.
#[test]
fn json_results_built_on_the_stack_or_through_mlua_agree() {
    use crate::plugins::lua::util::{lua_to_json, Json};
    use serde_json::json;
    let lua = Lua::new();
    let limit = crate::plugins::lua::sandbox::limits().memory;
    lua.set_memory_limit(limit).unwrap();
    let value = json!({
        "s": "héllo\u{0}x", "i": 42, "neg": -7, "big": 9007199254740993u64, "f": 1.5,
        "t": true, "n": null, "empty": {}, "list": [1, "two", null, [3], {"k": "v"}],
        "nested": {"a": {"b": {"c": [true, false]}}, "gone": null},
    });
    let mut deep = json!("leaf");
    for _ in 0..100 {
        deep = json!([deep]);
    }
    let give = crate::plugins::lua::util::support::function(&lua, move |_, drop: bool| {
        Ok(Json {
            value: value.clone(),
            drop_nulls: drop,
        })
    })
    .unwrap();
    let give_deep = crate::plugins::lua::util::support::function(&lua, move |_, ()| {
        Ok(Json {
            value: deep.clone(),
            drop_nulls: false,
        })
    })
    .unwrap();
    let run = || -> Vec<serde_json::Value> {
        let mut out = Vec::new();
        for drop in [false, true] {
            let t: Value = give.call(drop).unwrap();
            out.push(lua_to_json(&t).unwrap());
        }
        let d: Value = give_deep.call(()).unwrap();
        out.push(lua_to_json(&d).unwrap());
        // ngx.null is a light userdata NULL, as in conf_to_lua.
        let t: Table = give.call(false).unwrap();
        assert!(
            matches!(t.raw_get::<Value>("n").unwrap(), Value::LightUserData(p) if p.0.is_null())
        );
        out
    };
    let [direct, protected] = crate::plugins::lua::util::support::on_both_paths(&lua, |_| run());
    assert_eq!(direct[0]["n"], serde_json::Value::Null);
    assert!(direct[1].get("n").is_none() && direct[1]["nested"].get("gone").is_none());
    assert_eq!(
        direct[0]["big"],
        json!(9007199254740992u64),
        "a double, as in Lua"
    );
    assert_eq!(direct[0]["list"][4]["k"], "v");
    assert_eq!(protected, direct);
}
