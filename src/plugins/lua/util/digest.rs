//! lua-resty-string's streaming digests (`resty.md5`, `resty.sha1`, `resty.sha224`,
//! `resty.sha256`, `resty.sha384`, `resty.sha512`) and Kong's `kong.tools.gzip`.

use std::cell::RefCell;
use std::io::{Read, Write};
use std::rc::Rc;

use mlua::{Lua, Table, Value};
use openssl::hash::{Hasher, MessageDigest};

use super::support::function as set_fn_raw;

fn set_fn<A, R, F>(lua: &Lua, t: &Table, name: &str, f: F) -> mlua::Result<()>
where
    A: mlua::FromLuaMulti,
    R: mlua::IntoLuaMulti,
    F: Fn(&Lua, A) -> mlua::Result<R> + mlua::MaybeSend + 'static,
{
    t.raw_set(name, set_fn_raw(lua, f)?)
}

/// A `resty.<name>` module: `local h = mod:new(); h:update(s); local bin = h:final()`.
fn digest_module(lua: &Lua, md: fn() -> MessageDigest) -> mlua::Result<Table> {
    let m = lua.create_table()?;
    set_fn(lua, &m, "new", move |lua, _self: Value| {
        let hasher = Rc::new(RefCell::new(
            Hasher::new(md()).map_err(|e| mlua::Error::runtime(e.to_string()))?,
        ));
        let obj = lua.create_table()?;
        let h = hasher.clone();
        set_fn(
            lua,
            &obj,
            "update",
            move |_, (_self, s): (Value, mlua::LuaString)| {
                Ok(h.borrow_mut().update(&s.as_bytes()).is_ok())
            },
        )?;
        let h = hasher.clone();
        set_fn(lua, &obj, "final", move |lua, _self: Value| {
            let digest = h
                .borrow_mut()
                .finish()
                .map_err(|e| mlua::Error::runtime(e.to_string()))?;
            lua.create_string(&*digest)
        })?;
        let h = hasher;
        set_fn(lua, &obj, "reset", move |_, _self: Value| {
            Ok(h.borrow_mut().finish().is_ok())
        })?;
        Ok(obj)
    })?;
    Ok(m)
}

/// The digest modules, by their `require` names.
pub fn modules(lua: &Lua) -> mlua::Result<Vec<(&'static str, Table)>> {
    Ok(vec![
        ("resty.md5", digest_module(lua, MessageDigest::md5)?),
        ("resty.sha1", digest_module(lua, MessageDigest::sha1)?),
        ("resty.sha224", digest_module(lua, MessageDigest::sha224)?),
        ("resty.sha256", digest_module(lua, MessageDigest::sha256)?),
        ("resty.sha384", digest_module(lua, MessageDigest::sha384)?),
        ("resty.sha512", digest_module(lua, MessageDigest::sha512)?),
    ])
}

/// Inflates at most `limit` bytes of gzip data (a small gzip bomb must not fill the process).
fn inflate(data: &[u8], limit: usize) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    let reader = flate2::read::MultiGzDecoder::new(data);
    reader
        .take(limit as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|e| format!("failed to inflate: {e}"))?;
    if out.len() > limit {
        return Err("inflated data exceeds the plugin's memory limit".into());
    }
    Ok(out)
}

/// `kong.tools.gzip`: `deflate_gzip(s)` and `inflate_gzip(gz)`, each `data` or `nil, err`.
pub fn gzip(lua: &Lua) -> mlua::Result<Table> {
    let m = lua.create_table()?;
    set_fn(lua, &m, "deflate_gzip", |lua, s: mlua::LuaString| {
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        let result = enc.write_all(&s.as_bytes()).and_then(|()| enc.finish());
        match result {
            Ok(gz) => Ok((Value::String(lua.create_string(&gz)?), Value::Nil)),
            Err(e) => Ok((
                Value::Nil,
                Value::String(lua.create_string(format!("failed to deflate: {e}"))?),
            )),
        }
    })?;
    set_fn(
        lua,
        &m,
        "inflate_gzip",
        |lua, gz: mlua::LuaString| match inflate(
            &gz.as_bytes(),
            crate::plugins::lua::sandbox::memory_room(lua),
        ) {
            Ok(data) => Ok((Value::String(lua.create_string(&data)?), Value::Nil)),
            Err(e) => Ok((Value::Nil, Value::String(lua.create_string(e)?))),
        },
    )?;
    Ok(m)
}

#[cfg(test)]
mod tests {
    #[test]
    fn inflate_is_bounded() {
        use std::io::Write;
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        enc.write_all(&vec![b'a'; 1 << 20]).unwrap();
        let gz = enc.finish().unwrap();
        assert_eq!(super::inflate(&gz, 2 << 20).unwrap().len(), 1 << 20);
        assert!(super::inflate(&gz, 1000).is_err());
    }
}
