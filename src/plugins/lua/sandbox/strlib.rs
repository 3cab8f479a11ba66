//! `string.find`, `string.match`, `string.gmatch` and `string.gsub` over [`patterns`], with
//! LuaJIT 2.1's argument handling, results and error messages. They replace the C versions in
//! the VM's real `string` table, so method calls (`s:find(...)`) use them too.

use std::cell::Cell;

use mlua::{Lua, MultiValue, Table, Value};

use super::patterns::{self, Capture, Matcher, PatError};
use crate::plugins::lua::util::support::{
    arg, arg_error, as_f64, check_integer, fmt_number, raise, raise_here, set_fn, type_error,
    type_name,
};

/// Replaces the pattern functions of `string` (the VM's real string table).
pub fn install(lua: &Lua, string: &Table) -> mlua::Result<()> {
    set_fn(lua, string, "find", |lua, args: MultiValue| {
        find_aux(lua, &args, true)
    })?;
    set_fn(lua, string, "match", |lua, args: MultiValue| {
        find_aux(lua, &args, false)
    })?;
    set_fn(lua, string, "gmatch", gmatch)?;
    set_fn(lua, string, "gsub", gsub)?;
    Ok(())
}

/// `luaL_checklstring`: the argument as a Lua string (numbers converted as Lua prints them).
fn lua_string(lua: &Lua, v: &Value, n: usize, fname: &str) -> mlua::Result<mlua::LuaString> {
    match v {
        Value::String(s) => Ok(s.clone()),
        Value::Integer(i) => lua.create_string(fmt_number(*i as f64)),
        Value::Number(x) => lua.create_string(fmt_number(*x)),
        other => Err(type_error(n, fname, "string", other)),
    }
}

fn pattern_error(e: PatError) -> mlua::Error {
    match e {
        PatError::Malformed(msg) => raise_here(msg),
        PatError::Budget(b) => raise(b.to_string()),
    }
}

fn push_captures(
    lua: &Lua,
    src: &[u8],
    caps: Vec<Capture>,
    out: &mut Vec<Value>,
) -> mlua::Result<()> {
    for c in caps {
        out.push(match c {
            Capture::Span(a, b) => Value::String(lua.create_string(&src[a..b])?),
            Capture::Position(p) => Value::Integer(p as _),
        });
    }
    Ok(())
}

/// The start offset of `find`/`match` from `init`; `None` past the end (LuaJIT with Lua 5.2
/// compatibility, as Kong's OpenResty builds it, answers nil there).
fn start(init: i64, len: usize) -> Option<usize> {
    let len = len as i64;
    let st = if init < 0 { init + len } else { init - 1 };
    (st <= len).then_some(st.max(0) as usize)
}

fn find_aux(lua: &Lua, args: &MultiValue, find: bool) -> mlua::Result<MultiValue> {
    let fname = if find { "find" } else { "match" };
    let s = lua_string(lua, &arg(args, 0), 1, fname)?;
    let p = lua_string(lua, &arg(args, 1), 2, fname)?;
    let init = match arg(args, 2) {
        Value::Nil => 1,
        v => check_integer(&v, 3, fname)?,
    };
    let plain = find && !matches!(arg(args, 3), Value::Nil | Value::Boolean(false));
    let (src, pat) = (s.as_bytes(), p.as_bytes());
    let mut out = Vec::new();
    let Some(st) = start(init, src.len()) else {
        out.push(Value::Nil);
        return Ok(MultiValue::from_vec(out));
    };
    if find && (plain || !patterns::has_specials(&pat)) {
        if let Some(i) = memchr::memmem::find(&src[st..], &pat) {
            out.push(Value::Integer((st + i + 1) as _));
            out.push(Value::Integer((st + i + pat.len()) as _));
        } else {
            out.push(Value::Nil);
        }
        return Ok(MultiValue::from_vec(out));
    }
    match patterns::search(&src, &pat, st).map_err(pattern_error)? {
        None => out.push(Value::Nil),
        Some((a, e, m)) => {
            if find {
                out.push(Value::Integer((a + 1) as _));
                out.push(Value::Integer(e as _));
                push_captures(
                    lua,
                    &src,
                    m.captures(None).map_err(pattern_error)?,
                    &mut out,
                )?;
            } else {
                let caps = m.captures(Some((a, e))).map_err(pattern_error)?;
                push_captures(lua, &src, caps, &mut out)?;
            }
        }
    }
    Ok(MultiValue::from_vec(out))
}

fn gmatch(lua: &Lua, args: MultiValue) -> mlua::Result<mlua::Function> {
    let s = lua_string(lua, &arg(&args, 0), 1, "gmatch")?;
    let p = lua_string(lua, &arg(&args, 1), 2, "gmatch")?;
    let pos = Cell::new(0usize);
    crate::plugins::lua::util::support::function(lua, move |lua, ()| {
        let (src, pat) = (s.as_bytes(), p.as_bytes());
        let mut m = Matcher::new(&src, &pat);
        let mut at = pos.get();
        let mut out = Vec::new();
        while at <= src.len() {
            if let Some(e) = m.match_at(at, 0).map_err(pattern_error)? {
                pos.set(if e == at { e + 1 } else { e });
                let caps = m.captures(Some((at, e))).map_err(pattern_error)?;
                push_captures(lua, &src, caps, &mut out)?;
                break;
            }
            at += 1;
        }
        Ok(MultiValue::from_vec(out))
    })
}

/// Appends the replacement of the match `src[s..e]` (Lua's `add_value`).
fn add_value(
    lua: &Lua,
    m: &Matcher<'_>,
    src: &[u8],
    (s, e): (usize, usize),
    repl: &Value,
    out: &mut Vec<u8>,
) -> mlua::Result<()> {
    let replacement = match repl {
        Value::Function(f) => {
            let caps = m.captures(Some((s, e))).map_err(pattern_error)?;
            let mut args = Vec::with_capacity(caps.len());
            push_captures(lua, src, caps, &mut args)?;
            f.call::<Value>(MultiValue::from_vec(args))?
        }
        Value::Table(t) => {
            let mut key = Vec::with_capacity(1);
            let first = m.capture(0, s, e).map_err(pattern_error)?;
            push_captures(lua, src, vec![first], &mut key)?;
            t.get::<Value>(key.pop().unwrap_or(Value::Nil))?
        }
        Value::String(r) => return add_string(m, src, (s, e), &r.as_bytes(), out),
        other => {
            let text = fmt_number(as_f64(other).unwrap_or(0.0));
            return add_string(m, src, (s, e), text.as_bytes(), out);
        }
    };
    match replacement {
        Value::Nil | Value::Boolean(false) => out.extend_from_slice(&src[s..e]),
        Value::String(r) => out.extend_from_slice(&r.as_bytes()),
        Value::Integer(i) => out.extend_from_slice(fmt_number(i as f64).as_bytes()),
        Value::Number(x) => out.extend_from_slice(fmt_number(x).as_bytes()),
        other => {
            return Err(raise_here(format!(
                "invalid replacement value (a {})",
                type_name(&other)
            )))
        }
    }
    Ok(())
}

/// Appends a string replacement with its `%0`..`%9` and `%%` escapes (Lua's `add_s`).
fn add_string(
    m: &Matcher<'_>,
    src: &[u8],
    (s, e): (usize, usize),
    repl: &[u8],
    out: &mut Vec<u8>,
) -> mlua::Result<()> {
    let mut i = 0;
    while i < repl.len() {
        let c = repl[i];
        if c != b'%' {
            out.push(c);
        } else {
            i += 1;
            // A trailing '%' reads the string's terminating NUL, as in C.
            let d = repl.get(i).copied().unwrap_or(0);
            if !d.is_ascii_digit() {
                out.push(d);
            } else if d == b'0' {
                out.extend_from_slice(&src[s..e]);
            } else {
                match m
                    .capture((d - b'1') as usize, s, e)
                    .map_err(pattern_error)?
                {
                    Capture::Span(a, b) => out.extend_from_slice(&src[a..b]),
                    Capture::Position(p) => out.extend_from_slice(p.to_string().as_bytes()),
                }
            }
        }
        i += 1;
    }
    Ok(())
}

fn gsub(lua: &Lua, args: MultiValue) -> mlua::Result<(mlua::LuaString, i64)> {
    let s = lua_string(lua, &arg(&args, 0), 1, "gsub")?;
    let p = lua_string(lua, &arg(&args, 1), 2, "gsub")?;
    let repl = arg(&args, 2);
    if !matches!(
        repl,
        Value::String(_)
            | Value::Integer(_)
            | Value::Number(_)
            | Value::Function(_)
            | Value::Table(_)
    ) {
        return Err(arg_error(3, "gsub", "string/function/table expected"));
    }
    let (src, pat) = (s.as_bytes(), p.as_bytes());
    let max = match arg(&args, 3) {
        Value::Nil => src.len() as i64 + 1,
        v => check_integer(&v, 4, "gsub")?,
    };
    let mut m = Matcher::new(&src, &pat);
    let anchored = pat.first() == Some(&b'^');
    let p0 = usize::from(anchored);
    let room = super::memory_room(lua);
    let mut out = Vec::with_capacity(src.len());
    let (mut at, mut n) = (0usize, 0i64);
    while n < max {
        let e = m.match_at(at, p0).map_err(pattern_error)?;
        if let Some(e) = e {
            n += 1;
            add_value(lua, &m, &src, (at, e), &repl, &mut out)?;
            if out.len() > room {
                return Err(raise("not enough memory"));
            }
        }
        match e {
            Some(e) if e > at => at = e,
            _ if at < src.len() => {
                out.push(src[at]);
                at += 1;
            }
            _ => break,
        }
        if anchored {
            break;
        }
    }
    out.extend_from_slice(&src[at..]);
    Ok((lua.create_string(out)?, n))
}
