//! Tests of the Kong parts: kong.table/node/version, kong.meta, kong.tools.*, resty.string.

use super::tests::run;

#[test]
fn kong_base_parts() {
    run(r#"
        assert(kong.version == "3.10.0" and kong.version_num == 3010000)
        assert(kong.node.get_id() == "node-1")
        local h = kong.node.get_hostname()
        assert(type(h) == "string" and #h > 0)
        local t = kong.table.new(4, 2)
        assert(type(t) == "table" and next(t) == nil)
        local c = {1, 2, a = 3}
        kong.table.clear(c)
        assert(next(c) == nil)
        local m = kong.table.merge({a = 1, b = 2}, {b = 3, c = 4})
        assert(m.a == 1 and m.b == 3 and m.c == 4)
        assert(next(kong.table.merge(nil, nil)) == nil and kong.table.merge({x = 1}).x == 1)
        assert(not pcall(kong.table.clear, nil))
    "#);
}

#[test]
fn meta_uuid_resty_string() {
    run(r#"
        local meta = require "kong.meta"
        assert(meta._NAME == "kong" and meta._VERSION == "3.10.0" and meta._SERVER_TOKENS == "kong/3.10.0")
        assert(meta._VERSION_TABLE.major == 3 and meta._VERSION_TABLE.minor == 10 and meta._VERSION_TABLE.patch == 0)
        assert(tostring(meta._VERSION_TABLE) == "3.10.0")
        local uuid = require "kong.tools.uuid"
        local u = uuid.uuid()
        assert(uuid.is_valid_uuid(u) and u:match("^%x+%-%x+%-4%x+%-[89ab]%x+%-%x+$"), u)
        assert(uuid.uuid() ~= u)
        assert(uuid.is_valid_uuid("ABCDEF01-2345-6789-abcd-ef0123456789"))
        assert(not uuid.is_valid_uuid("not-a-uuid") and not uuid.is_valid_uuid(nil))
        local str = require "resty.string"
        assert(str.to_hex("\0\1\171\255") == "0001abff")
        assert(str.to_hex(ngx.md5_bin("hello")) == ngx.md5("hello"))
        assert(str.atoi("  -42abc") == -42 and str.atoi("x") == 0 and str.atoi("17") == 17)
    "#);
}

#[test]
fn tools_table() {
    run(r#"
        local t = require "kong.tools.table"
        local p = t.pack(1, nil, 3)
        assert(p.n == 3 and p[1] == 1 and p[3] == 3)
        local a, b, c = t.unpack(p)
        assert(a == 1 and b == nil and c == 3)
        assert(t.table_contains({"a", "b"}, "b") and not t.table_contains({"a"}, "z") and not t.table_contains(nil, 1))
        assert(t.is_array({1, 2, 3}) and not t.is_array({1, nil, 3}) and not t.is_array({a = 1}) and not t.is_array("x"))
        assert(t.is_array({}) and t.is_array({[1] = 1, [3] = 3}, "fast"))
        assert(t.is_array({"a", ["2"] = "b"}, "lapis") and not t.is_array({"a", x = 1}, "lapis"))
        local mt = {__index = function() return "dflt" end}
        local orig = setmetatable({a = {b = {1, 2}}, [{k = 1}] = "tablekey"}, mt)
        local copy = t.deep_copy(orig)
        assert(copy ~= orig and copy.a ~= orig.a and copy.a.b[2] == 2 and copy.zzz == "dflt")
        assert(getmetatable(copy) ~= mt and getmetatable(t.deep_copy(orig, false)) == nil)
        local sh = t.shallow_copy(orig)
        assert(sh.a == orig.a and getmetatable(sh) == nil and t.shallow_copy(5) == 5)
        local dm = t.deep_merge({a = {x = 1, y = 2}, k = 1}, {a = {y = 3}, z = {1}})
        assert(dm.a.x == 1 and dm.a.y == 3 and dm.k == 1 and dm.z[1] == 1)
        local cyc = {name = "c"} cyc.self = cyc
        local cc = t.cycle_aware_deep_copy(cyc)
        assert(cc ~= cyc and cc.self == cc and cc.name == "c")
        local cm = t.cycle_aware_deep_merge({a = {1}, b = 1}, {a = {2, 3}, c = {x = 1}})
        assert(cm.a[1] == 2 and cm.a[2] == 3 and cm.b == 1 and cm.c.x == 1)
        local cat = t.concat({1, 2}, {3}, {})
        assert(#cat == 3 and cat[3] == 3)
        local errs = t.add_error(nil, "f", "e1")
        assert(errs.f == "e1")
        t.add_error(errs, "f", "e2")
        t.add_error(errs, "f", "e3")
        assert(errs.f[1] == "e1" and errs.f[2] == "e2" and errs.f[3] == "e3")
        assert(t.table_path({a = {b = {c = 5}}}, {"a", "b", "c"}) == 5)
        assert(t.table_path({a = {}}, {"a", "x", "y"}) == nil)
        local m = t.null_aware_table_merge({a = 1, b = 2}, {a = ngx.null, c = ngx.null})
        assert(m.a == 1 and m.b == 2 and m.c == ngx.null)
        assert(t.table_merge({a = 1}, {b = 2}).b == 2)
        assert(not pcall(function() t.EMPTY.x = 1 end) and next(t.EMPTY) == nil)
    "#);
}

#[test]
fn tools_string_and_rand() {
    run(r#"
        local s = require "kong.tools.string"
        assert(s.strip("  \t hi there \r\n") == "hi there" and s.strip(nil) == "" and s.strip(12) == "12")
        local parts, n = s.splitn("a,b,,c", ",")
        assert(n == 4 and parts[1] == "a" and parts[3] == "" and parts[4] == "c")
        parts, n = s.splitn("a,b,c", ",", 2)
        assert(n == 2 and parts[2] == "b,c")
        parts, n = s.splitn("", ",")
        assert(n == 1 and parts[1] == "")
        parts, n = s.splitn("ab", "")
        assert(n == 4 and parts[1] == "" and parts[2] == "a" and parts[3] == "b" and parts[4] == "")
        parts, n = s.splitn(nil, ",")
        assert(n == 0)
        parts, n = s.psplitn("a1b22c", "%d+")
        assert(n == 3 and parts[2] == "b" and parts[3] == "c")
        local a, b = s.split_once("k=v=w", "=")
        assert(a == "k" and b == "v=w")
        a, b = s.split_once("kv", "=")
        assert(a == "kv" and b == nil)
        a, b = s.psplit_once("k  v", "%s+")
        assert(a == "k" and b == "v")
        local got = {}
        for part in s.isplitn("x;y;z", ";") do got[#got + 1] = part end
        assert(table.concat(got, "|") == "x|y|z")
        got = {}
        for part in s.ipsplitn("x1y", "%d") do got[#got + 1] = part end
        assert(table.concat(got, "|") == "x|y")
        local sp = s.split("a,b,,c,", ",")
        assert(#sp == 5 and sp[3] == "" and sp[5] == "", #sp)
        sp = s.split("  one two  three ")
        assert(#sp == 3 and sp[3] == "three")
        assert(s.join(",", {"a", "b", 3}) == "a,b,3")
        assert(s.validate_utf8("héllo"))
        local ok, pos = s.validate_utf8("ab\255")
        assert(ok == false and pos == 3)
        assert(s.bytes_to_str(5497558) == "5497558" and s.bytes_to_str(5497558, "m") == "5.24 MiB")
        assert(s.bytes_to_str(5497558, "G", 3) == "0.005 GiB")
        assert(s.parse_ngx_size("10k") == 10240 and s.parse_ngx_size("2m") == 2097152 and s.parse_ngx_size("7") == 7)
        assert(s.replace_dashes("x-y-z") == "x_y_z" and s.replace_dashes_lower("X-Y") == "x_y")
        assert(s.try_decode_base64("aGVsbG8=") == "hello" and s.try_decode_base64("aGk_") == "hi?")
        assert(s.try_decode_base64("%%%") == "%%%")
        local rand = require "kong.tools.rand"
        local r = rand.random_string()
        assert(#r == 32 and r:match("^[%w]+$") and rand.random_string() ~= r, r)
        assert(#rand.get_rand_bytes(16) == 16 and #rand.get_rand_bytes(0) == 0)
        local utils = require "kong.tools.utils"
        assert(utils.uuid and utils.random_string and utils.split and utils.deep_copy and utils.table_contains)
        assert(utils.is_array({1}) and utils.strip(" x ") == "x" and utils.is_valid_uuid(utils.uuid()))
    "#);
}
