//! The request-independent parts of the PDK, as Lua values built in Rust: the `ngx` helpers
//! OpenResty gives every phase (`ngx.re`, base64, digests, URI/args codecs, clocks, constants),
//! `cjson`/`cjson.safe`, and Kong's small modules (`kong.meta`, `kong.tools.*`, `resty.string`).
//!
//! Everything mirrors the originals plugins were written against: lua-nginx-module plus
//! lua-resty-core (argument leniency, return conventions, error texts), OpenResty's lua-cjson
//! 2.1.0.x, and Kong 3.10's Lua modules. Known deviations are listed on the submodules
//! (`pcre` for regexes, `json_decode`/`cjson` for JSON) and in [`ngx_base`].
//!
//! Errors are raised as Lua *strings* (see [`support::function`], which the rest of the PDK can
//! use for its own functions), like the C and Lua originals, so `pcall` users can `..` or
//! `:find` them.

mod cjson;
mod cjson_module;
mod digest;
mod encode;
mod json_conv;
pub use json_conv::Json;
mod json_decode;
mod kong;
mod kong_strings;
mod kong_tools;
mod ngx;
mod pcre;
mod pcre_translate;
mod re;
pub mod support;
mod time;

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_kong;
#[cfg(test)]
mod tests_ngx;

use mlua::{Lua, Table, Value};

/// Modules plugins may `require`, by name, each freshly built for `lua`:
/// `cjson`, `cjson.safe`, `resty.string`, `kong.meta`, `kong.tools.uuid`, `kong.tools.utils`,
/// and the Kong 3.10 modules `kong.tools.utils` re-exports: `kong.tools.table`,
/// `kong.tools.string`, `kong.tools.rand`.
///
/// Also `resty.md5`/`sha1`/`sha224`/`sha256`/`sha384`/`sha512`, `kong.tools.gzip`, and from
/// libs.lua `resty.lrucache`, `ngx.re` and `kong.constants` (built over `ngx`, the VM's base
/// `ngx` table).
pub fn modules(lua: &Lua, ngx: &Table) -> mlua::Result<Vec<(&'static str, Table)>> {
    let lua_libs: Table = lua
        .load(include_str!("libs.lua"))
        .set_name("=sluice.libs")
        .set_mode(mlua::chunk::ChunkMode::Text)
        .call(ngx.clone())?;
    let utils = kong_tools::tools_utils(lua)?;
    let gzip = digest::gzip(lua)?;
    for name in ["deflate_gzip", "inflate_gzip"] {
        utils.raw_set(name, gzip.raw_get::<Value>(name)?)?;
    }
    let mut all = vec![
        ("cjson", cjson_module::module(lua, false)?),
        ("cjson.safe", cjson_module::module(lua, true)?),
        ("resty.string", kong::resty_string(lua)?),
        ("kong.meta", kong::meta(lua)?),
        ("kong.tools.uuid", kong::tools_uuid(lua)?),
        ("kong.tools.table", kong_tools::tools_table(lua)?),
        ("kong.tools.string", kong_strings::tools_string(lua)?),
        ("kong.tools.rand", kong_strings::tools_rand(lua)?),
        ("kong.tools.utils", utils),
        ("kong.tools.gzip", gzip),
    ];
    all.extend(digest::modules(lua)?);
    for name in ["resty.lrucache", "ngx.re", "kong.constants"] {
        all.push((name, lua_libs.raw_get(name)?));
    }
    Ok(all)
}

/// A fresh `ngx` table with the request-independent parts of OpenResty's API:
///
/// * constants: `OK ERROR AGAIN DONE DECLINED`, every `HTTP_*` status and method constant of
///   lua-nginx-module (methods are nginx's bit flags, e.g. `HTTP_GET == 2`), log levels
///   `STDERR .. DEBUG`, and `null` (a NULL light userdata, equal to `cjson.null`);
/// * `re.match/find/gmatch/sub/gsub` (PCRE translated to the `regex` crate, cached per VM);
/// * `encode_base64 decode_base64 decode_base64mime md5 md5_bin sha1_bin hmac_sha1
///   crc32_short crc32_long escape_uri unescape_uri encode_args decode_args quote_sql_str`;
/// * `now time today localtime utctime update_time http_time cookie_time parse_http_time`
///   (local time is UTC; `update_time` is a no-op as the clock is read on every call);
/// * `config` (`subsystem = "http"`, versions, `prefix()`), `worker` (`pid() id() count()
///   pids() exiting()`).
///
/// Deviation: `encode_args` sorts keys (nginx follows the table's hash order).
pub fn ngx_base(lua: &Lua) -> mlua::Result<Table> {
    ngx::base(lua)
}

/// The request-independent part of `kong`: `table` (`new clear merge`), `node` (`get_id()`
/// returning `node_id`, `get_hostname()`), `version` ("3.10.0") and `version_num` (3010000).
pub fn kong_base(lua: &Lua, node_id: &str) -> mlua::Result<Table> {
    kong::base(lua, node_id)
}

/// A JSON value as Lua: objects and arrays become tables (arrays as sequences, without
/// `array_mt`, like `cjson.decode`), `null` becomes the `cjson.null` light userdata, numbers
/// become Lua numbers (integers beyond 2^53 lose precision).
pub fn json_to_lua(lua: &Lua, v: &serde_json::Value) -> mlua::Result<Value> {
    json_conv::json_to_lua(lua, v)
}

/// `kong.tools.string.bytes_to_str`.
pub fn bytes_to_str(
    lua: &Lua,
    bytes: f64,
    unit: Option<String>,
    scale: Value,
) -> mlua::Result<String> {
    kong_strings::bytes_to_str(lua, (bytes, unit, scale))
}

/// `ngx.encode_args` of a table (for `ngx.req.set_uri_args`).
pub fn encode_args(t: &Table) -> mlua::Result<Vec<u8>> {
    encode::encode_args(t)
}

/// A `cjson` module of its own whose decoder marks arrays with `cjson.array_mt`, as Kong's
/// `kong.tools.cjson.decode_with_array_mt` does (for `kong.request.get_body`).
pub fn cjson_with_array_mt(lua: &Lua) -> mlua::Result<Table> {
    let m = cjson_module::module(lua, true)?;
    m.get::<mlua::Function>("decode_array_with_array_mt")?
        .call::<()>(true)?;
    Ok(m)
}

/// A plugin conf as a Lua table without `null` fields (see [`json_conv::conf_to_lua`]).
pub fn conf_to_lua(lua: &Lua, v: &serde_json::Value) -> mlua::Result<Value> {
    json_conv::conf_to_lua(lua, v)
}

/// A Lua value as JSON, with `cjson.encode`'s rules and default settings: sequences become
/// arrays, other tables objects (number keys stringified), empty tables `{}` unless marked with
/// `cjson.array_mt`/`empty_array_mt` or equal to `cjson.empty_array`; `nil`/`cjson.null` become
/// `null`. Errors use cjson's messages ("Cannot serialise function: type not supported",
/// "Cannot serialise table: excessively sparse array", ...). Non-UTF-8 strings are converted
/// lossily; numbers keep full precision (cjson would print 14 significant digits).
pub fn lua_to_json(v: &Value) -> Result<serde_json::Value, String> {
    json_conv::lua_to_json(v)
}
