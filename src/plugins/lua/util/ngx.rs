//! The request-independent `ngx` table: constants, `ngx.null`, `ngx.re`, `ngx.config`,
//! `ngx.worker`, and the string/time helpers of `encode.rs` and `time.rs`.

use mlua::{Lua, Table};

use super::support::{null, set_fn};
use super::{encode, re, time};

/// Core return codes (nginx's NGX_OK ...).
const CORE: &[(&str, i64)] = &[
    ("OK", 0),
    ("ERROR", -1),
    ("AGAIN", -2),
    ("DONE", -4),
    ("DECLINED", -5),
];

/// Method constants: nginx's NGX_HTTP_GET ... bit flags (used by ngx.location.capture).
const METHODS: &[(&str, i64)] = &[
    ("HTTP_GET", 0x0002),
    ("HTTP_HEAD", 0x0004),
    ("HTTP_POST", 0x0008),
    ("HTTP_PUT", 0x0010),
    ("HTTP_DELETE", 0x0020),
    ("HTTP_MKCOL", 0x0040),
    ("HTTP_COPY", 0x0080),
    ("HTTP_MOVE", 0x0100),
    ("HTTP_OPTIONS", 0x0200),
    ("HTTP_PROPFIND", 0x0400),
    ("HTTP_PROPPATCH", 0x0800),
    ("HTTP_LOCK", 0x1000),
    ("HTTP_UNLOCK", 0x2000),
    ("HTTP_PATCH", 0x4000),
    ("HTTP_TRACE", 0x8000),
];

/// Status constants, as lua-nginx-module's ngx_http_lua_consts.c names them.
const STATUSES: &[(&str, i64)] = &[
    ("HTTP_CONTINUE", 100),
    ("HTTP_SWITCHING_PROTOCOLS", 101),
    ("HTTP_OK", 200),
    ("HTTP_CREATED", 201),
    ("HTTP_ACCEPTED", 202),
    ("HTTP_NO_CONTENT", 204),
    ("HTTP_PARTIAL_CONTENT", 206),
    ("HTTP_SPECIAL_RESPONSE", 300),
    ("HTTP_MOVED_PERMANENTLY", 301),
    ("HTTP_MOVED_TEMPORARILY", 302),
    ("HTTP_SEE_OTHER", 303),
    ("HTTP_NOT_MODIFIED", 304),
    ("HTTP_TEMPORARY_REDIRECT", 307),
    ("HTTP_PERMANENT_REDIRECT", 308),
    ("HTTP_BAD_REQUEST", 400),
    ("HTTP_UNAUTHORIZED", 401),
    ("HTTP_PAYMENT_REQUIRED", 402),
    ("HTTP_FORBIDDEN", 403),
    ("HTTP_NOT_FOUND", 404),
    ("HTTP_NOT_ALLOWED", 405),
    ("HTTP_NOT_ACCEPTABLE", 406),
    ("HTTP_REQUEST_TIMEOUT", 408),
    ("HTTP_CONFLICT", 409),
    ("HTTP_GONE", 410),
    ("HTTP_UPGRADE_REQUIRED", 426),
    ("HTTP_TOO_MANY_REQUESTS", 429),
    ("HTTP_CLOSE", 444),
    ("HTTP_ILLEGAL", 451),
    ("HTTP_INTERNAL_SERVER_ERROR", 500),
    ("HTTP_NOT_IMPLEMENTED", 501),
    ("HTTP_METHOD_NOT_IMPLEMENTED", 501),
    ("HTTP_BAD_GATEWAY", 502),
    ("HTTP_SERVICE_UNAVAILABLE", 503),
    ("HTTP_GATEWAY_TIMEOUT", 504),
    ("HTTP_VERSION_NOT_SUPPORTED", 505),
    ("HTTP_INSUFFICIENT_STORAGE", 507),
];

/// Log levels (ngx.STDERR ... ngx.DEBUG).
const LOG_LEVELS: &[(&str, i64)] = &[
    ("STDERR", 0),
    ("EMERG", 1),
    ("ALERT", 2),
    ("CRIT", 3),
    ("ERR", 4),
    ("WARN", 5),
    ("NOTICE", 6),
    ("INFO", 7),
    ("DEBUG", 8),
];

/// nginx/ngx_lua versions reported by ngx.config (OpenResty 1.27.1.x, as bundled with Kong 3.10).
const NGINX_VERSION: i64 = 1_027_001;
const NGX_LUA_VERSION: i64 = 10_027;

fn config(lua: &Lua) -> mlua::Result<Table> {
    let c = lua.create_table()?;
    c.raw_set("subsystem", "http")?;
    c.raw_set("debug", false)?;
    c.raw_set("nginx_version", NGINX_VERSION)?;
    c.raw_set("ngx_lua_version", NGX_LUA_VERSION)?;
    c.raw_set("is_console", false)?;
    set_fn(lua, &c, "prefix", |_, ()| Ok("/usr/local/kong/"))?;
    set_fn(lua, &c, "nginx_configure", |_, ()| Ok(""))?;
    Ok(c)
}

fn worker(lua: &Lua) -> mlua::Result<Table> {
    let w = lua.create_table()?;
    set_fn(lua, &w, "pid", |_, ()| Ok(std::process::id()))?;
    set_fn(lua, &w, "pids", |lua, ()| {
        lua.create_sequence_from([std::process::id()])
    })?;
    set_fn(lua, &w, "id", |_, ()| Ok(0))?;
    set_fn(lua, &w, "count", |_, ()| Ok(1))?;
    set_fn(lua, &w, "exiting", |_, ()| Ok(false))?;
    Ok(w)
}

/// Builds the request-independent part of `ngx` (see the module docs).
pub fn base(lua: &Lua) -> mlua::Result<Table> {
    let ngx = lua.create_table()?;
    for (name, value) in CORE.iter().chain(METHODS).chain(STATUSES).chain(LOG_LEVELS) {
        ngx.raw_set(*name, *value)?;
    }
    ngx.raw_set("null", null())?;
    ngx.raw_set("re", re::table(lua)?)?;
    ngx.raw_set("config", config(lua)?)?;
    ngx.raw_set("worker", worker(lua)?)?;
    encode::register(lua, &ngx)?;
    time::register(lua, &ngx)?;
    Ok(ngx)
}
