//! `ngx.re.match/find/gmatch/sub/gsub`, with lua-resty-core's semantics on top of `pcre.rs`.

use std::cell::Cell;
use std::sync::Arc;

use mlua::{Function, Lua, MultiValue, Table, Value};
use regex::bytes::Captures;

use super::pcre::{cached, parse_opts, Compiled};
use super::support::{arg, as_f64, function, tostring_bytes, type_error};

/// Compiles `regex` with `opts` (both Lua values); `Ok(Err(msg))` is a bad pattern (returned to
/// Lua as `nil, msg`), `Err` a bad argument (raised).
fn compile(
    lua: &Lua,
    fname: &str,
    regex: &Value,
    opts: &Value,
) -> mlua::Result<Result<Arc<Compiled>, String>> {
    let pattern = match regex {
        Value::String(s) => s.as_bytes().to_vec(),
        Value::Integer(_) | Value::Number(_) => tostring_bytes(regex)?,
        other => return Err(type_error(2, fname, "string", other)),
    };
    let opts = match opts {
        Value::Nil => parse_opts(b""),
        Value::String(s) => parse_opts(&s.as_bytes()),
        other => return Err(type_error(3, fname, "string", other)),
    }
    .map_err(super::support::raise_here)?;
    Ok(cached(lua, &pattern, opts))
}

/// Runs `c` on `subj` from byte `pos`; honours the `a` (anchored) option.
fn exec<'s>(c: &Compiled, subj: &'s [u8], pos: usize) -> Option<Captures<'s>> {
    if pos > subj.len() {
        return None;
    }
    let caps = c.re.captures_at(subj, pos)?;
    if c.anchored && caps.get(0).map(|m| m.start()) != Some(pos) {
        return None;
    }
    Some(caps)
}

/// The `captures` table of ngx.re.match: [0] whole match, [n] groups (false when unset),
/// named groups by name (a list of the matched values with the `D` option).
fn captures_table(
    lua: &Lua,
    c: &Compiled,
    caps: &Captures,
    res: Option<Table>,
) -> mlua::Result<Table> {
    let t = match res {
        Some(t) => t,
        None => lua.create_table_with_capacity(c.ncaps, c.names.len())?,
    };
    let group = |i: usize| -> mlua::Result<Value> {
        Ok(match caps.get(i) {
            Some(m) => Value::String(lua.create_string(m.as_bytes())?),
            None => Value::Boolean(false),
        })
    };
    for i in 0..=c.ncaps {
        t.raw_set(i, group(i)?)?;
    }
    for (name, groups) in &c.names {
        if c.dupnames {
            let matched: Vec<Value> = groups
                .iter()
                .filter_map(|&g| caps.get(g).map(|m| lua.create_string(m.as_bytes())))
                .map(|s| s.map(Value::String))
                .collect::<mlua::Result<_>>()?;
            if !matched.is_empty() {
                t.raw_set(name.as_str(), lua.create_sequence_from(matched)?)?;
            }
        } else if let Some(&g) = groups.first() {
            t.raw_set(name.as_str(), group(g)?)?;
        }
    }
    Ok(t)
}

/// `ctx.pos` (1-based) as a 0-based start offset.
fn start_pos(ctx: &Value) -> mlua::Result<usize> {
    if let Value::Table(ctx) = ctx {
        if let Some(p) = as_f64(&ctx.get::<Value>("pos")?) {
            if p >= 1.0 {
                return Ok(p as usize - 1);
            }
        }
    }
    Ok(0)
}

fn nils(n: usize, err: Option<String>, lua: &Lua) -> mlua::Result<MultiValue> {
    let mut v = vec![Value::Nil; n];
    if let Some(e) = err {
        v.push(Value::String(lua.create_string(e)?));
    }
    Ok(MultiValue::from_vec(v))
}

fn re_match(lua: &Lua, args: MultiValue) -> mlua::Result<MultiValue> {
    let subj = tostring_bytes(&arg(&args, 0))?;
    let c = match compile(lua, "match", &arg(&args, 1), &arg(&args, 2))? {
        Ok(c) => c,
        Err(e) => return nils(1, Some(e), lua),
    };
    let ctx = arg(&args, 3);
    let Some(caps) = exec(&c, &subj, start_pos(&ctx)?) else {
        return nils(1, None, lua);
    };
    if let Value::Table(ctx) = &ctx {
        ctx.set("pos", caps.get(0).map_or(0, |m| m.end()) + 1)?;
    }
    let res = match arg(&args, 4) {
        Value::Table(t) => Some(t),
        _ => None,
    };
    let t = captures_table(lua, &c, &caps, res)?;
    Ok(MultiValue::from_vec(vec![Value::Table(t)]))
}

fn re_find(lua: &Lua, args: MultiValue) -> mlua::Result<MultiValue> {
    let subj = tostring_bytes(&arg(&args, 0))?;
    let c = match compile(lua, "find", &arg(&args, 1), &arg(&args, 2))? {
        Ok(c) => c,
        Err(e) => return nils(2, Some(e), lua),
    };
    let ctx = arg(&args, 3);
    let Some(caps) = exec(&c, &subj, start_pos(&ctx)?) else {
        return nils(1, None, lua);
    };
    if let Value::Table(ctx) = &ctx {
        ctx.set("pos", caps.get(0).map_or(0, |m| m.end()) + 1)?;
    }
    let nth = as_f64(&arg(&args, 4)).filter(|n| *n > 0.0).unwrap_or(0.0) as usize;
    if nth > c.ncaps {
        return nils(2, Some("nth out of bound".into()), lua);
    }
    match caps.get(nth) {
        Some(m) => Ok(MultiValue::from_vec(vec![
            Value::Integer(m.start() as i64 + 1),
            Value::Integer(m.end() as i64),
        ])),
        None => nils(2, None, lua),
    }
}

fn re_gmatch(lua: &Lua, args: MultiValue) -> mlua::Result<MultiValue> {
    let subj = tostring_bytes(&arg(&args, 0))?;
    let c = match compile(lua, "gmatch", &arg(&args, 1), &arg(&args, 2))? {
        Ok(c) => c,
        Err(e) => return nils(1, Some(e), lua),
    };
    let pos: Cell<Option<usize>> = Cell::new(Some(0));
    let iter = crate::plugins::lua::util::support::raw_function(lua, move |lua, ()| {
        let Some(p) = pos.get() else {
            return Ok(Value::Nil);
        };
        let Some(caps) = exec(&c, &subj, p) else {
            pos.set(None);
            return Ok(Value::Nil);
        };
        let m = caps.get(0).map_or((p, p), |m| (m.start(), m.end()));
        let mut next = m.1;
        if m.0 == m.1 {
            next += 1;
        }
        pos.set((next <= subj.len()).then_some(next));
        Ok(Value::Table(captures_table(lua, &c, &caps, None)?))
    })?;
    Ok(MultiValue::from_vec(vec![Value::Function(iter)]))
}

/// A compiled `sub`/`gsub` replacement template.
enum Seg {
    Lit(Vec<u8>),
    Group(usize),
}

/// ngx_http_lua_script_compile's template rules: `$$`, `$N`, `${N}`; plus `${name}` for named
/// groups (an extension: OpenResty rejects named references).
fn compile_template(tpl: &[u8], c: &Compiled) -> Option<Vec<Seg>> {
    let mut segs = Vec::new();
    let mut lit = Vec::new();
    let mut i = 0;
    while i < tpl.len() {
        if tpl[i] != b'$' {
            lit.push(tpl[i]);
            i += 1;
            continue;
        }
        i += 1;
        let next = *tpl.get(i)?;
        if next == b'$' {
            lit.push(b'$');
            i += 1;
            continue;
        }
        let bracket = next == b'{';
        if bracket {
            i += 1;
        }
        let start = i;
        while i < tpl.len() && (tpl[i].is_ascii_alphanumeric() || tpl[i] == b'_') {
            if !bracket && !tpl[i].is_ascii_digit() {
                break;
            }
            i += 1;
        }
        let name = &tpl[start..i];
        if name.is_empty() {
            return None;
        }
        if bracket {
            if tpl.get(i) != Some(&b'}') {
                return None;
            }
            i += 1;
        }
        let group = if name.iter().all(u8::is_ascii_digit) {
            std::str::from_utf8(name).ok()?.parse().ok()?
        } else if name[0].is_ascii_digit() {
            return None;
        } else {
            let name = std::str::from_utf8(name).ok()?;
            *c.names.iter().find(|(n, _)| n == name)?.1.first()?
        };
        segs.push(Seg::Lit(std::mem::take(&mut lit)));
        segs.push(Seg::Group(group));
    }
    segs.push(Seg::Lit(lit));
    Some(segs)
}

enum Replace {
    Template(Vec<Seg>),
    Func(Function),
}

fn re_sub_common(lua: &Lua, args: MultiValue, global: bool) -> mlua::Result<MultiValue> {
    let fname = if global { "gsub" } else { "sub" };
    let c = match compile(lua, fname, &arg(&args, 1), &arg(&args, 3))? {
        Ok(c) => c,
        Err(e) => return nils(2, Some(e), lua),
    };
    let replace = match arg(&args, 2) {
        Value::Function(f) => Replace::Func(f),
        other => match compile_template(&tostring_bytes(&other)?, &c) {
            Some(t) => Replace::Template(t),
            None => {
                return nils(
                    2,
                    Some("failed to compile the replacement template".into()),
                    lua,
                )
            }
        },
    };
    let subj = tostring_bytes(&arg(&args, 0))?;
    let mut out = Vec::with_capacity(subj.len());
    // The output is built outside the VM's allocator: bound it by what the VM could hold.
    let room = crate::plugins::lua::sandbox::memory_room(lua);
    let (mut pos, mut cp_pos, mut count) = (0usize, 0usize, 0i64);
    while let Some(caps) = exec(&c, &subj, pos) {
        let (start, end) = caps.get(0).map_or((pos, pos), |m| (m.start(), m.end()));
        count += 1;
        if out.len() > room {
            return Err(super::support::raise("not enough memory"));
        }
        if count % 256 == 0 {
            crate::plugins::lua::sandbox::guard()?;
        }
        out.extend_from_slice(&subj[cp_pos..start]);
        match &replace {
            Replace::Template(segs) => {
                for seg in segs {
                    match seg {
                        Seg::Lit(b) => out.extend_from_slice(b),
                        Seg::Group(g) => {
                            if let Some(m) = caps.get(*g) {
                                out.extend_from_slice(m.as_bytes());
                            }
                        }
                    }
                }
            }
            Replace::Func(f) => {
                let t = captures_table(lua, &c, &caps, None)?;
                let piece: Value = f.call(t)?;
                out.extend_from_slice(&tostring_bytes(&piece)?);
            }
        }
        cp_pos = end;
        pos = end;
        if start == end {
            pos += 1;
            if pos > subj.len() {
                break;
            }
        }
        if !global {
            break;
        }
    }
    if count == 0 {
        return Ok(MultiValue::from_vec(vec![
            Value::String(lua.create_string(&subj)?),
            Value::Integer(0),
        ]));
    }
    if cp_pos < subj.len() {
        out.extend_from_slice(&subj[cp_pos..]);
    }
    Ok(MultiValue::from_vec(vec![
        Value::String(lua.create_string(out)?),
        Value::Integer(count),
    ]))
}

/// The `ngx.re` table.
pub fn table(lua: &Lua) -> mlua::Result<Table> {
    let t = lua.create_table()?;
    t.raw_set("match", function(lua, re_match)?)?;
    t.raw_set("find", function(lua, re_find)?)?;
    t.raw_set("gmatch", function(lua, re_gmatch)?)?;
    t.raw_set("sub", function(lua, |lua, a| re_sub_common(lua, a, false))?)?;
    t.raw_set("gsub", function(lua, |lua, a| re_sub_common(lua, a, true))?)?;
    Ok(t)
}
