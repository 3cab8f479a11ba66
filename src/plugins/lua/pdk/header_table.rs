//! The tables of `get_headers` (kong.request, kong.response, kong.service.response,
//! ngx.req, ngx.resp): built with LuaJIT's API straight on the stack when the VM has room.
//! Through mlua each string and table is a handle moved to its reference thread and back
//! (and near the memory limit a protected call): `get_headers` of 4 header lines cost 11,428
//! instructions that way against 5,556 (bench/PROFILE.md §0).

use mlua::{Function, Lua, Table, Value};

use super::{header_key, max_entries, push_value};
use crate::plugins::lua::util::support::{raw_function, room_for};

/// The `__index` function of header tables, made once per VM: lookups that ignore case and
/// `_`/`-`. Each table still gets a metatable of its own, so that no plugin can change what
/// another plugin's header tables do.
struct HeaderIndex(Function);

/// A header map as Kong's `get_headers` returns it: lower-case names, several values as an
/// array, and lookups that ignore case and `_`/`-`; at most `max` entries (see
/// [`max_entries`]), with `"truncated"` as second value when there were more.
pub(super) fn headers_table(
    lua: &Lua,
    headers: &http::HeaderMap,
    max: Option<usize>,
) -> mlua::Result<(Table, Option<&'static str>)> {
    let max = max_entries(max);
    let truncated = (headers.len() > max).then_some("truncated");
    let index = index_function(lua)?;
    // Names, values, and per entry the room of a string header, a table slot and a list.
    let bytes: usize = headers
        .iter()
        .take(max)
        .map(|(n, v)| n.as_str().len() + v.len() + 256)
        .sum();
    let t = if room_for(lua.used_memory(), bytes + 1024) {
        // SAFETY: see `build`; the room was checked just above.
        lua.exec_raw_lua(|raw| unsafe { build(raw, headers, max, &index) })?
    } else {
        let t = lua.create_table()?;
        for (name, value) in headers.iter().take(max) {
            let v = Value::String(lua.create_string(value.as_bytes())?);
            push_value(lua, &t, name.as_str(), v)?;
        }
        let mt = lua.create_table()?;
        mt.raw_set("__index", index)?;
        t.set_metatable(Some(mt))?;
        t
    };
    Ok((t, truncated))
}

fn index_function(lua: &Lua) -> mlua::Result<Function> {
    if let Some(index) = lua.app_data_ref::<HeaderIndex>() {
        return Ok(index.0.clone());
    }
    let index = raw_function(lua, |_, (t, k): (Table, String)| {
        t.raw_get::<Value>(header_key(&k).as_ref())
    })?;
    lua.set_app_data(HeaderIndex(index.clone()));
    Ok(index)
}

/// Builds the table of the first `max` entries of `headers` on the stack and pops it.
///
/// # Safety
/// The VM must have room for what this allocates ([`room_for`] with the entries' bytes):
/// then none of the calls below can raise (they raise only when an allocation fails), and no
/// Lua error unwinds through Rust frames. The table is on the stack, reachable, while the
/// garbage collector may run.
unsafe fn build(
    raw: &mlua::state::RawLua,
    headers: &http::HeaderMap,
    max: usize,
    index: &Function,
) -> mlua::Result<Table> {
    use mlua::ffi;
    let state = raw.state();
    let push = |s: &[u8]| unsafe { ffi::lua_pushlstring(state, s.as_ptr().cast(), s.len()) };
    unsafe {
        if ffi::lua_checkstack(state, 8) == 0 {
            return Err(mlua::Error::StackError);
        }
        ffi::lua_createtable(state, 0, headers.keys_len().min(max) as i32);
        let mut entries = headers.iter().take(max).peekable();
        while let Some((name, value)) = entries.next() {
            push(name.as_str().as_bytes());
            // A name's values come one after another in a `HeaderMap`'s iteration.
            if entries.peek().is_some_and(|(next, _)| *next == name) {
                ffi::lua_createtable(state, 2, 0);
                push(value.as_bytes());
                ffi::lua_rawseti(state, -2, 1);
                let mut i = 1;
                while let Some((_, v)) = entries.next_if(|(next, _)| *next == name) {
                    i += 1;
                    push(v.as_bytes());
                    ffi::lua_rawseti(state, -2, i);
                }
            } else {
                push(value.as_bytes());
            }
            ffi::lua_rawset(state, -3);
        }
        ffi::lua_createtable(state, 0, 1);
        push(b"__index");
        raw.push(index)?;
        ffi::lua_rawset(state, -3);
        ffi::lua_setmetatable(state, -2);
        raw.pop::<Table>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Both ways of building give the same table: repeated names as arrays in order, lookups
    /// ignoring case and `_`, at most `max` entries, and a metatable of each table's own.
    #[test]
    fn built_on_the_stack_or_through_mlua_the_tables_agree() {
        let lua = Lua::new();
        let limit = crate::plugins::lua::sandbox::limits().memory;
        lua.set_memory_limit(limit).unwrap();
        let mut h = http::HeaderMap::new();
        h.append("x-a", "1".parse().unwrap());
        h.insert("host", "example.test".parse().unwrap());
        h.append("x-a", "2".parse().unwrap());
        h.append("x-a", "3".parse().unwrap());
        h.insert("x-under-score", "u".parse().unwrap());
        let check = lua
            .load(
                r#"
                local all, none, two, t2, other = ...
                assert(none == nil)
                assert(all.host == "example.test" and all.Host == "example.test")
                assert(#all["x-a"] == 3 and all["x-a"][1] == "1" and all["x-a"][3] == "3")
                assert(all.X_UNDER_SCORE == "u" and all["x-under-score"] == "u")
                assert(t2 == "truncated")
                local n = 0
                for k, v in pairs(two) do n = n + (type(v) == "table" and #v or 1) end
                assert(n == 2, n)
                assert(getmetatable(all) ~= getmetatable(other))
                "#,
            )
            .into_function()
            .unwrap();
        let run = |lua: &Lua| {
            let (all, none) = headers_table(lua, &h, None).unwrap();
            let (two, t2) = headers_table(lua, &h, Some(2)).unwrap();
            let (other, _) = headers_table(lua, &h, None).unwrap();
            check
                .call::<()>((all, none, two, t2, other))
                .unwrap_or_else(|e| panic!("{e}"));
        };
        crate::plugins::lua::util::support::on_both_paths(&lua, run);
    }
}
