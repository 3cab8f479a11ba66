//! `kong.tools.string` and `kong.tools.rand` (Kong 3.10) in Rust.

use std::io::Read;

use mlua::{Function, Lua, MultiValue, Table, Value};

use super::encode::{decode_base64, encode_base64};
use super::support::{as_f64, raise_here, set_fn, tostring_bytes};

/// `n` random bytes from /dev/urandom (v4 UUIDs' generator when that cannot be read).
pub fn random_bytes(n: usize) -> Vec<u8> {
    let mut buf = vec![0u8; n];
    let ok = std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut buf))
        .is_ok();
    if !ok {
        let mut out = Vec::with_capacity(n + 16);
        while out.len() < n {
            out.extend_from_slice(uuid::Uuid::new_v4().as_bytes());
        }
        out.truncate(n);
        return out;
    }
    buf
}

/// Kong's random_string(): 32 base64-ish characters with '/' and '+' replaced by letters.
pub fn random_string() -> String {
    let bytes = random_bytes(24 + 32);
    let s = encode_base64(&bytes[..24], true);
    s.bytes()
        .zip(&bytes[24..])
        .map(|(b, r)| match b {
            b'/' => (b'A' + r % 26) as char,
            b'+' => (b'a' + r % 26) as char,
            b => b as char,
        })
        .collect()
}

/// `require "kong.tools.rand"`.
pub fn tools_rand(lua: &Lua) -> mlua::Result<Table> {
    let m = lua.create_table()?;
    set_fn(
        lua,
        &m,
        "get_rand_bytes",
        |lua, (n, _urandom): (f64, Value)| {
            // The length comes from plugin code: never allocate more than the VM may hold.
            let n = n.max(0.0);
            if n > crate::plugins::lua::sandbox::memory_room(lua) as f64 {
                return Err(super::support::raise("not enough memory"));
            }
            lua.create_string(random_bytes(n as usize))
        },
    )?;
    set_fn(lua, &m, "random_string", |_, ()| Ok(random_string()))?;
    Ok(m)
}

fn is_space(b: u8) -> bool {
    b == b' ' || (b'\t'..=b'\r').contains(&b)
}

/// Kong's strip(): ASCII whitespace off both ends.
pub fn strip(s: &[u8]) -> &[u8] {
    let start = s.iter().position(|&b| !is_space(b)).unwrap_or(s.len());
    let end = s
        .iter()
        .rposition(|&b| !is_space(b))
        .map_or(start, |e| e + 1);
    &s[start..end]
}

/// Where the delimiter next occurs from byte `from`: `(start, end_exclusive)`.
type Finder<'a> = dyn Fn(&[u8], usize) -> mlua::Result<Option<(usize, usize)>> + 'a;

fn plain_find(delim: &[u8]) -> impl Fn(&[u8], usize) -> mlua::Result<Option<(usize, usize)>> + '_ {
    move |s: &[u8], from: usize| {
        if from > s.len() {
            return Ok(None);
        }
        Ok(s[from..]
            .windows(delim.len().max(1))
            .position(|w| w == delim)
            .map(|p| (from + p, from + p + delim.len())))
    }
}

/// Lua's string.find(s, pattern, from+1) as a finder (for the p* variants).
fn pattern_find<'a>(
    find: &'a Function,
    lua: &'a Lua,
    pat: &'a [u8],
) -> impl Fn(&[u8], usize) -> mlua::Result<Option<(usize, usize)>> + 'a {
    // The subject is the same on every call: make its Lua string once (interning a long
    // subject per call made a split quadratic).
    let subject: std::cell::RefCell<Option<(usize, mlua::LuaString)>> = Default::default();
    move |s: &[u8], from: usize| {
        crate::plugins::lua::sandbox::budget::check()
            .map_err(|e| super::support::raise(e.to_string()))?;
        let cached = subject
            .borrow()
            .as_ref()
            .filter(|(ptr, t)| *ptr == s.as_ptr() as usize && t.as_bytes().len() == s.len())
            .map(|(_, l)| l.clone());
        let text = match cached {
            Some(t) => t,
            None => {
                let t = lua.create_string(s)?;
                *subject.borrow_mut() = Some((s.as_ptr() as usize, t.clone()));
                t
            }
        };
        let (a, b): (Option<f64>, Option<f64>) =
            find.call((text, lua.create_string(pat)?, from + 1))?;
        Ok(match (a, b) {
            (Some(a), Some(b)) => Some((a as usize - 1, b as usize)),
            _ => None,
        })
    }
}

/// Each part costs a Rust allocation before it becomes a Lua string: refuse more parts than
/// the VM's memory could hold.
fn too_many_parts(n: usize) -> mlua::Result<()> {
    if n.saturating_mul(48) > crate::plugins::lua::sandbox::limits().memory {
        return Err(super::support::raise("not enough memory"));
    }
    Ok(())
}

/// splitn_common(): up to `n` parts (`None` = unlimited).
fn splitn_common(
    value: &Value,
    pattern: Option<&[u8]>,
    n: Option<f64>,
    find: &Finder,
) -> mlua::Result<Vec<Vec<u8>>> {
    let limit = n.unwrap_or(f64::INFINITY);
    let Value::String(v) = value else {
        return Ok(if value.is_nil() || limit < 1.0 {
            vec![]
        } else {
            vec![tostring_bytes(value)?]
        });
    };
    let value = v.as_bytes().to_vec();
    if limit < 1.0 {
        return Ok(vec![]);
    }
    let Some(pattern) = pattern.filter(|_| limit != 1.0) else {
        return Ok(vec![value]);
    };
    if pattern.is_empty() {
        if value.is_empty() {
            return Ok(vec![vec![], vec![]]);
        }
        let size = if limit >= value.len() as f64 + 2.0 {
            value.len() + 2
        } else {
            limit as usize
        };
        too_many_parts(size)?;
        let mut t = vec![Vec::new()];
        for i in 2..=size {
            if i < size {
                t.push(value[i - 2..i - 1].to_vec());
            } else {
                t.push(value[(i - 2).min(value.len())..].to_vec());
            }
        }
        return Ok(t);
    }
    if value.is_empty() {
        return Ok(vec![vec![]]);
    }
    let mut parts = Vec::new();
    let mut p = 0usize;
    let mut steps = 0u32;
    while ((parts.len() + 1) as f64) < limit {
        // An empty match does not advance (Kong's loop does not either): the budget ends it.
        steps = steps.wrapping_add(1);
        if steps % 256 == 0 {
            crate::plugins::lua::sandbox::budget::check()
                .map_err(|e| super::support::raise(e.to_string()))?;
        }
        match find(&value, p)? {
            Some((s, e)) => {
                too_many_parts(parts.len())?;
                parts.push(value[p..s].to_vec());
                p = e;
            }
            None => break,
        }
    }
    parts.push(value[p.min(value.len())..].to_vec());
    Ok(parts)
}

/// The two halves of split_once (each possibly nil).
type Halves = (Option<Vec<u8>>, Option<Vec<u8>>);

fn split_once_common(value: &Value, pattern: &Value, find: &Finder) -> mlua::Result<Halves> {
    let Value::String(v) = value else {
        return Ok(if value.is_nil() {
            (None, None)
        } else {
            (Some(tostring_bytes(value)?), None)
        });
    };
    let v = v.as_bytes().to_vec();
    let pat = match pattern {
        Value::Nil => return Ok((Some(v), None)),
        other => tostring_bytes(other)?,
    };
    if pat.is_empty() {
        return Ok((Some(Vec::new()), Some(v)));
    }
    if v.is_empty() {
        return Ok((Some(Vec::new()), None));
    }
    Ok(match find(&v, 0)? {
        None => (Some(v), None),
        Some((s, e)) => (Some(v[..s].to_vec()), Some(v[e..].to_vec())),
    })
}

fn list(lua: &Lua, parts: Vec<Vec<u8>>) -> mlua::Result<(Table, usize)> {
    let n = parts.len();
    let t = lua.create_table_with_capacity(n, 0)?;
    for (i, p) in parts.into_iter().enumerate() {
        t.raw_set(i + 1, lua.create_string(p)?)?;
    }
    Ok((t, n))
}

fn iterator(lua: &Lua, parts: Vec<Vec<u8>>) -> mlua::Result<Function> {
    let idx = std::cell::Cell::new(0usize);
    crate::plugins::lua::util::support::raw_function(lua, move |lua, _: MultiValue| {
        let i = idx.get();
        idx.set(i + 1);
        match parts.get(i) {
            Some(p) => Ok(Value::String(lua.create_string(p)?)),
            None => Ok(Value::Nil),
        }
    })
}

/// penlight's stringx.split(s, delim?, n?): plain delimiter, or runs of whitespace when absent.
fn pl_split(s: &[u8], delim: Option<&[u8]>, n: Option<usize>) -> Vec<Vec<u8>> {
    let Some(delim) = delim.filter(|d| !d.is_empty()) else {
        if delim.is_some() {
            return vec![s.to_vec()];
        }
        let mut parts: Vec<Vec<u8>> = s
            .split(|&b| is_space(b))
            .filter(|p| !p.is_empty())
            .map(<[u8]>::to_vec)
            .collect();
        if let Some(n) = n.filter(|&n| n > 0 && parts.len() > n) {
            let tail = parts.split_off(n - 1);
            let joined = tail.join(&b' ');
            parts.push(joined);
        }
        return parts;
    };
    let mut parts = Vec::new();
    let mut i1 = 0usize;
    let find = plain_find(delim);
    loop {
        match find(s, i1).ok().flatten() {
            None => {
                let last = &s[i1.min(s.len())..];
                if !last.is_empty() {
                    parts.push(last.to_vec());
                }
                break;
            }
            Some((i2, i3)) => {
                parts.push(s[i1..i2].to_vec());
                if n == Some(parts.len()) {
                    *parts.last_mut().unwrap_or(&mut Vec::new()) = s[i1..].to_vec();
                    return parts;
                }
                i1 = i3;
            }
        }
    }
    if parts.len() == 1 && parts[0].is_empty() {
        parts.clear();
    }
    if s.ends_with(delim) && n.is_none_or(|n| n > parts.len()) {
        parts.push(Vec::new());
    }
    parts
}

/// `kong.tools.string.bytes_to_str(bytes, unit, scale)` with Kong's argument errors.
pub(crate) fn bytes_to_str(
    _: &Lua,
    (bytes, unit, scale): (f64, Option<String>, Value),
) -> mlua::Result<String> {
    let u = unit.clone().unwrap_or_default().to_lowercase();
    if u.is_empty() || u == "b" {
        return Ok(format!("{}", bytes as i64));
    }
    let scale = match scale {
        Value::Nil => 2.0,
        other => match as_f64(&other) {
            Some(s) if s >= 0.0 => s,
            _ => return Err(raise_here("scale must be equal or greater than 0")),
        },
    } as usize;
    // Kong formats with string.format("%.<scale>f"), which allows at most 99.
    if scale > 99 {
        return Err(raise_here(
            "invalid option '%f' to 'format' (precision too long)",
        ));
    }
    let (div, name) = match u.as_str() {
        "k" => (1024f64, "KiB"),
        "m" => (1024f64 * 1024.0, "MiB"),
        "g" => (1024f64 * 1024.0 * 1024.0, "GiB"),
        _ => {
            let msg = format!(
                "invalid unit '{}' (expected 'k/K', 'm/M', or 'g/G')",
                unit.unwrap_or_default()
            );
            return Err(raise_here(msg));
        }
    };
    Ok(format!("{:.*} {name}", scale, bytes / div))
}

/// `require "kong.tools.string"`.
pub fn tools_string(lua: &Lua) -> mlua::Result<Table> {
    let m = lua.create_table()?;
    let string_find: Function = lua.globals().get::<Table>("string")?.get("find")?;
    set_fn(lua, &m, "strip", |lua, v: Value| match v {
        Value::Nil => lua.create_string(""),
        other => lua.create_string(strip(&tostring_bytes(&other)?)),
    })?;
    set_fn(
        lua,
        &m,
        "splitn",
        |lua, (v, d, n): (Value, Option<mlua::LuaString>, Option<f64>)| {
            let d = d.map(|d| d.as_bytes().to_vec());
            let find = plain_find(d.as_deref().unwrap_or(b""));
            list(lua, splitn_common(&v, d.as_deref(), n, &find)?)
        },
    )?;
    set_fn(
        lua,
        &m,
        "isplitn",
        |lua, (v, d, n): (Value, Option<mlua::LuaString>, Option<f64>)| {
            let d = d.map(|d| d.as_bytes().to_vec());
            let find = plain_find(d.as_deref().unwrap_or(b""));
            iterator(lua, splitn_common(&v, d.as_deref(), n, &find)?)
        },
    )?;
    set_fn(lua, &m, "split_once", |lua, (v, d): (Value, Value)| {
        let delim = if d.is_nil() {
            Vec::new()
        } else {
            tostring_bytes(&d)?
        };
        let find = plain_find(&delim);
        let (a, b) = split_once_common(&v, &d, &find)?;
        let s = |x: Option<Vec<u8>>| x.map(|x| lua.create_string(x)).transpose();
        Ok((s(a)?, s(b)?))
    })?;
    let f = string_find.clone();
    set_fn(
        lua,
        &m,
        "psplitn",
        move |lua, (v, p, n): (Value, Option<mlua::LuaString>, Option<f64>)| {
            let p = p.map(|p| p.as_bytes().to_vec());
            let find = pattern_find(&f, lua, p.as_deref().unwrap_or(b""));
            list(lua, splitn_common(&v, p.as_deref(), n, &find)?)
        },
    )?;
    let f = string_find.clone();
    set_fn(
        lua,
        &m,
        "ipsplitn",
        move |lua, (v, p, n): (Value, Option<mlua::LuaString>, Option<f64>)| {
            let p = p.map(|p| p.as_bytes().to_vec());
            let find = pattern_find(&f, lua, p.as_deref().unwrap_or(b""));
            iterator(lua, splitn_common(&v, p.as_deref(), n, &find)?)
        },
    )?;
    let f = string_find;
    set_fn(
        lua,
        &m,
        "psplit_once",
        move |lua, (v, p): (Value, Value)| {
            let pat = if p.is_nil() {
                Vec::new()
            } else {
                tostring_bytes(&p)?
            };
            let find = pattern_find(&f, lua, &pat);
            let (a, b) = split_once_common(&v, &p, &find)?;
            let s = |x: Option<Vec<u8>>| x.map(|x| lua.create_string(x)).transpose();
            Ok((s(a)?, s(b)?))
        },
    )?;
    set_fn(
        lua,
        &m,
        "split",
        |lua, (s, d, n): (mlua::LuaString, Option<mlua::LuaString>, Option<f64>)| {
            let d = d.map(|d| d.as_bytes().to_vec());
            Ok(list(
                lua,
                pl_split(&s.as_bytes(), d.as_deref(), n.map(|n| n as usize)),
            )?
            .0)
        },
    )?;
    set_fn(
        lua,
        &m,
        "join",
        |lua, (sep, seq): (mlua::LuaString, Table)| {
            let mut out = Vec::new();
            let mut room = crate::plugins::lua::sandbox::Room::new(lua);
            for (i, v) in seq.sequence_values::<Value>().enumerate() {
                let piece = tostring_bytes(&v?)?;
                room.take(piece.len() + if i > 0 { sep.as_bytes().len() } else { 0 })?;
                if i > 0 {
                    out.extend_from_slice(&sep.as_bytes());
                }
                out.extend(piece);
            }
            lua.create_string(out)
        },
    )?;
    set_fn(
        lua,
        &m,
        "validate_utf8",
        |_, v: Value| match std::str::from_utf8(&tostring_bytes(&v)?) {
            Ok(_) => Ok((true, None)),
            Err(e) => Ok((false, Some(e.valid_up_to() + 1))),
        },
    )?;
    set_fn(lua, &m, "bytes_to_str", bytes_to_str)?;
    set_fn(lua, &m, "parse_ngx_size", |_, s: Value| {
        let Value::String(s) = s else {
            return Err(raise_here("Parameter #1 must be a string"));
        };
        let s = s.to_string_lossy();
        let scale = match s.chars().last() {
            Some('k' | 'K') => 1024.0,
            Some('m' | 'M') => 1024.0 * 1024.0,
            Some('g' | 'G') => 1024.0 * 1024.0 * 1024.0,
            _ => 1.0,
        };
        let num = if scale > 1.0 {
            &s[..s.len() - 1]
        } else {
            &s[..]
        };
        Ok(super::support::parse_lua_number(num.trim()).unwrap_or(0.0) * scale)
    })?;
    set_fn(lua, &m, "try_decode_base64", |lua, v: Value| {
        let decode = |s: &[u8]| decode_base64(s, false).or_else(|| decode_base64(s, true));
        match &v {
            Value::String(s) => Ok(match decode(&s.as_bytes()) {
                Some(d) => Value::String(lua.create_string(d)?),
                None => v.clone(),
            }),
            Value::Table(t) => {
                for i in 1..=t.raw_len() {
                    if let Value::String(s) = t.raw_get::<Value>(i)? {
                        if let Some(d) = decode(&s.as_bytes()) {
                            t.raw_set(i, lua.create_string(d)?)?;
                        }
                    }
                }
                Ok(v.clone())
            }
            _ => Ok(v.clone()),
        }
    })?;
    set_fn(lua, &m, "replace_dashes", |lua, s: mlua::LuaString| {
        lua.create_string(
            s.as_bytes()
                .iter()
                .map(|&b| if b == b'-' { b'_' } else { b })
                .collect::<Vec<u8>>(),
        )
    })?;
    set_fn(
        lua,
        &m,
        "replace_dashes_lower",
        |lua, s: mlua::LuaString| {
            let out: Vec<u8> = s
                .as_bytes()
                .iter()
                .map(|&b| {
                    if b == b'-' {
                        b'_'
                    } else {
                        b.to_ascii_lowercase()
                    }
                })
                .collect();
            lua.create_string(out)
        },
    )?;
    Ok(m)
}
