//! `kong.request`: the client's request as it arrived (headers reflect changes made by
//! `kong.service.request.set_header`, as in Kong, since both read the same request).

use mlua::{Either, Lua, Table, Value};

use super::{cur, header_key, headers_table, set_fn};
use crate::plugins::lua::util::support::{room_for, Text};

/// Decodes a query string into (name, value) pairs; a name without `=` has no value.
pub(super) fn query_pairs(q: &str) -> Vec<(String, Option<String>)> {
    q.split('&')
        .filter(|kv| !kv.is_empty())
        .map(|kv| match kv.split_once('=') {
            Some((k, v)) => (unescape(k), Some(unescape(v))),
            None => (unescape(kv), None),
        })
        .collect()
}

/// Percent-decoding with `+` as space (query strings).
pub(super) fn unescape(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok();
                match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(b) => {
                        out.push(b);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A query as Kong's `get_query` returns it: repeated names as arrays, flags as `true`; at
/// most `max` arguments (see `max_entries`), `"truncated"` second when there were more.
pub(super) fn query_table(
    lua: &Lua,
    q: &str,
    max: Option<usize>,
) -> mlua::Result<(Table, Option<&'static str>)> {
    let max = super::max_entries(max);
    let mut pairs = query_pairs(q);
    let truncated = (pairs.len() > max).then_some("truncated");
    pairs.truncate(max);
    // Decoded text is no longer than the query; per pair, the room of two strings and a list.
    let bytes = q.len() + 256 * pairs.len() + 1024;
    if room_for(lua.used_memory(), bytes) {
        // SAFETY: see `build_query`; the room was checked just above.
        let t = lua.exec_raw_lua(|raw| unsafe { build_query(raw, &pairs) })?;
        return Ok((t, truncated));
    }
    let t = lua.create_table()?;
    for (k, v) in pairs {
        let v = match v {
            Some(v) => Value::String(lua.create_string(&v)?),
            None => Value::Boolean(true),
        };
        super::push_value(lua, &t, &k, v)?;
    }
    Ok((t, truncated))
}

/// Builds the table of `pairs` as [`super::push_value`] shapes it (a repeated name's values
/// as an array, in order) with LuaJIT's API on the stack, and pops it.
///
/// # Safety
/// The VM must have room for what this allocates ([`room_for`]): then none of the calls can
/// raise (they raise only when an allocation fails). What is built stays on the stack,
/// reachable, while the garbage collector may run.
unsafe fn build_query(
    raw: &mlua::state::RawLua,
    pairs: &[(String, Option<String>)],
) -> mlua::Result<Table> {
    use mlua::ffi;
    let state = raw.state();
    let push = |v: &Option<String>| unsafe {
        match v {
            Some(s) => {
                ffi::lua_pushlstring(state, s.as_ptr().cast(), s.len());
            }
            None => ffi::lua_pushboolean(state, 1),
        }
    };
    unsafe {
        if ffi::lua_checkstack(state, 8) == 0 {
            return Err(mlua::Error::StackError);
        }
        ffi::lua_createtable(state, 0, pairs.len().min(64) as i32);
        for (k, v) in pairs {
            // Stack: t, k, t[k]
            ffi::lua_pushlstring(state, k.as_ptr().cast(), k.len());
            ffi::lua_pushvalue(state, -1);
            ffi::lua_rawget(state, -3);
            match ffi::lua_type(state, -1) {
                ffi::LUA_TNIL => {
                    ffi::lua_pop(state, 1);
                    push(v);
                }
                ffi::LUA_TTABLE => {
                    let n = ffi::lua_objlen(state, -1) as i64;
                    push(v);
                    ffi::lua_rawseti(state, -2, n + 1);
                }
                _ => {
                    ffi::lua_createtable(state, 2, 0);
                    ffi::lua_pushvalue(state, -2);
                    ffi::lua_rawseti(state, -2, 1);
                    push(v);
                    ffi::lua_rawseti(state, -2, 2);
                    ffi::lua_replace(state, -2);
                }
            }
            // Stack: t, k, value or list
            ffi::lua_rawset(state, -3);
        }
        raw.pop::<Table>()
    }
}

/// The request's Content-Type, if it has a readable one.
pub(super) fn content_type(req: &pingora::http::RequestHeader) -> Option<&str> {
    req.headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
}

/// The Host header without its port, lower-cased.
pub(super) fn host_of(req: &pingora::http::RequestHeader) -> String {
    let raw = req
        .headers
        .get(http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| req.uri.host())
        .unwrap_or("");
    crate::config::checks::split_host_port(raw)
        .0
        .to_ascii_lowercase()
}

pub(super) fn table(lua: &Lua) -> mlua::Result<Table> {
    let t = lua.create_table()?;
    set_fn(lua, &t, "get_scheme", |_, ()| {
        cur(|c, _, _| Ok(Text(c.state.scheme)))
    })?;
    // The X-Forwarded-* family counts only from a trusted proxy (Kong's is_trusted_ip).
    set_fn(lua, &t, "get_forwarded_scheme", |_, ()| {
        cur(|c, _, _| {
            Ok(match c.trusted_header("x-forwarded-proto") {
                Some(p) => p.to_ascii_lowercase(),
                None => c.state.scheme.to_string(),
            })
        })
    })?;
    set_fn(lua, &t, "get_host", |_, ()| {
        cur(|c, _, _| Ok(Text(host_of(c.req))))
    })?;
    set_fn(lua, &t, "get_forwarded_host", |_, ()| {
        cur(|c, _, _| {
            Ok(match c.trusted_header("x-forwarded-host") {
                Some(h) => {
                    let h = h.rsplit_once('@').map_or(h, |(_, h)| h);
                    h.split(':').next().unwrap_or("").to_ascii_lowercase()
                }
                None => host_of(c.req),
            })
        })
    })?;
    set_fn(lua, &t, "get_port", |_, ()| {
        cur(|c, _, _| Ok(c.state.server.map(|a| a.port())))
    })?;
    set_fn(lua, &t, "get_forwarded_port", |_, ()| {
        cur(|c, _, _| {
            let valid = |p: &str| p.trim().parse::<u16>().ok().filter(|p| *p > 0);
            if let Some(p) = c.trusted_header("x-forwarded-port").and_then(valid) {
                return Ok(Some(p));
            }
            if let Some(h) = c.trusted_header("x-forwarded-host") {
                let h = h.rsplit_once('@').map_or(h, |(_, h)| h);
                if let Some(p) = h.split_once(':').and_then(|(_, p)| valid(p)) {
                    return Ok(Some(p));
                }
            }
            Ok(c.state.server.map(|a| a.port()))
        })
    })?;
    set_fn(lua, &t, "get_forwarded_path", |_, ()| {
        cur(|c, _, _| {
            Ok(match c.trusted_header("x-forwarded-path") {
                Some(p) => p.to_string(),
                None => crate::router::normalize_path(c.req.uri.path()).into_owned(),
            })
        })
    })?;
    set_fn(lua, &t, "get_forwarded_prefix", |_, ()| {
        cur(|c, _, _| Ok(c.trusted_header("x-forwarded-prefix").map(str::to_string)))
    })?;
    set_fn(lua, &t, "get_http_version", |_, ()| {
        cur(|c, _, _| Ok(http_version(c.req.version)))
    })?;
    set_fn(lua, &t, "get_method", |_, ()| {
        cur(|c, _, _| Ok(Text(c.req.method.as_str().to_string())))
    })?;
    set_fn(lua, &t, "get_path", |_, ()| {
        cur(|c, _, _| {
            Ok(Text(
                crate::router::normalize_path(c.req.uri.path()).into_owned(),
            ))
        })
    })?;
    set_fn(lua, &t, "get_raw_path", |_, ()| {
        cur(|c, _, _| Ok(Text(c.req.uri.path().to_string())))
    })?;
    set_fn(lua, &t, "get_path_with_query", |_, ()| {
        cur(|c, _, _| {
            let path = crate::router::normalize_path(c.req.uri.path()).into_owned();
            Ok(Text(match c.query() {
                Some(q) if !q.is_empty() => format!("{path}?{q}"),
                _ => path,
            }))
        })
    })?;
    set_fn(lua, &t, "get_raw_query", |_, ()| {
        cur(|c, _, _| Ok(Text(c.query().unwrap_or("").to_string())))
    })?;
    set_fn(lua, &t, "get_query_arg", |_, name: String| {
        cur(|c, _, _| {
            // Kong looks the name up in `get_query()`: among the first 100 arguments.
            let q = c.query().unwrap_or("");
            for (k, v) in query_pairs(q).into_iter().take(super::max_entries(None)) {
                if k == name {
                    return Ok(match v {
                        Some(v) => Either::Left(Text(v)),
                        None => Either::Right(Value::Boolean(true)),
                    });
                }
            }
            Ok(Either::Right(Value::Nil))
        })
    })?;
    set_fn(lua, &t, "get_query", |lua, max: Option<usize>| {
        cur(|c, _, _| query_table(lua, c.query().unwrap_or(""), max))
    })?;
    set_fn(lua, &t, "get_header", |_, name: String| {
        cur(|c, _, _| {
            let value = c.req.headers.get(header_key(&name).as_ref());
            Ok(value.cloned().map(Text))
        })
    })?;
    set_fn(lua, &t, "get_headers", |lua, max: Option<usize>| {
        cur(|c, _, _| headers_table(lua, &c.req.headers, max))
    })?;
    set_fn(lua, &t, "get_raw_body", |lua, max: Option<i64>| {
        cur(|c, _, _| {
            let text = |s: &[u8]| lua.create_string(s).map(Value::String);
            let fail = |msg: &str| Ok((Value::Nil, text(msg.as_bytes())?));
            // A body a plugin set (`set_raw_body`, `ngx.req.set_body_data`) is the request's
            // body from then on, in memory, as in nginx.
            if let Some(b) = &c.state.upstream.body {
                return Ok((text(b)?, Value::Nil));
            }
            if let Some(b) = c
                .state
                .body
                .as_ref()
                .filter(|b| b.len() <= c.state.body_buffer)
            {
                return Ok((text(b)?, Value::Nil));
            }
            // Larger than client_body_buffer_size: nginx keeps it in a file, which Kong reads
            // only when the plugin allows a size (0: any).
            let max = match max {
                Some(m) if m >= 0 => m,
                _ => return fail(
                    "request body did not fit into client body buffer, consider raising 'client_body_buffer_size'",
                ),
            };
            let size = c.state.body.as_ref().map(|b| b.len()).or_else(|| {
                c.req
                    .headers
                    .get(http::header::CONTENT_LENGTH)
                    .and_then(|v| v.to_str().ok()?.parse().ok())
            });
            if let Some(size) = size.filter(|s| max > 0 && *s as i64 > max) {
                return fail(&format!("request body file too big: {size} > {max}"));
            }
            match &c.state.body {
                Some(b) => Ok((text(b)?, Value::Nil)),
                // Over the size the gateway reads for plugins: it streams upstream unread.
                None => fail(&format!(
                    "request body larger than the {} bytes this gateway reads for plugins",
                    crate::proxy::MAX_PLUGIN_BODY
                )),
            }
        })
    })?;
    set_fn(lua, &t, "get_start_time", |_, ()| {
        cur(|c, _, _| {
            Ok(c.state
                .started
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0.0, |d| d.as_millis() as f64))
        })
    })?;
    set_fn(lua, &t, "get_uri_captures", |lua, ()| {
        cur(|c, _, _| {
            let unnamed = lua.create_table()?;
            let named = lua.create_table()?;
            if let Some(caps) = &c.state.captures {
                for (i, v) in caps.positional.iter().enumerate() {
                    if let Some(v) = v {
                        unnamed.raw_set(i, v.as_str())?;
                    }
                }
                for (k, v) in &caps.named {
                    named.raw_set(k.as_str(), v.as_str())?;
                }
            }
            let t = lua.create_table()?;
            t.set("unnamed", unnamed)?;
            t.set("named", named)?;
            Ok(t)
        })
    })?;
    Ok(t)
}

/// The request's HTTP version as nginx's `ngx.req.http_version()` and Kong's
/// `get_http_version()` give it.
pub(super) fn http_version(v: http::Version) -> f64 {
    match v {
        http::Version::HTTP_09 => 0.9,
        http::Version::HTTP_10 => 1.0,
        http::Version::HTTP_2 => 2.0,
        http::Version::HTTP_3 => 3.0,
        _ => 1.1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Both ways of building a query table agree: repeated names as arrays in order (flags
    /// as `true`), decoded values, at most `max` pairs.
    #[test]
    fn query_tables_built_on_the_stack_or_through_mlua_agree() {
        let lua = Lua::new();
        let limit = crate::plugins::lua::sandbox::limits().memory;
        lua.set_memory_limit(limit).unwrap();
        let q = "a=1&b=2&a=3&flag&a=4&c=%20x&f&f=1";
        let check = lua
            .load(
                r#"
                local all, none, two, t2 = ...
                assert(none == nil and t2 == "truncated")
                assert(#all.a == 3 and all.a[1] == "1" and all.a[2] == "3" and all.a[3] == "4")
                assert(all.b == "2" and all.flag == true and all.c == " x")
                assert(#all.f == 2 and all.f[1] == true and all.f[2] == "1")
                assert(two.a == "1" and two.b == "2" and two.flag == nil)
                "#,
            )
            .into_function()
            .unwrap();
        let run = |lua: &Lua| {
            let (all, none) = query_table(lua, q, None).unwrap();
            let (two, t2) = query_table(lua, q, Some(2)).unwrap();
            check
                .call::<()>((all, none, two, t2))
                .unwrap_or_else(|e| panic!("{e}"));
        };
        crate::plugins::lua::util::support::on_both_paths(&lua, run);
    }
}
