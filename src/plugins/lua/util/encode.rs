//! ngx's string helpers: base64, digests, CRC-32, URI escaping, query-string args, SQL quoting.

use base64::Engine as _;
use hmac::{Hmac, Mac};
use md5::{Digest, Md5};
use mlua::{Lua, MultiValue, Table, Value};
use sha1::Sha1;

use super::support::{
    arg, check_bytes, check_integer, check_table, fmt_number, raise, raise_here, set_fn,
    tostring_bytes, type_name,
};

/// lua-resty-core's lenient string argument: nil/false → "", other non-strings → tostring.
fn lenient(v: &Value) -> mlua::Result<Vec<u8>> {
    match v {
        Value::Nil | Value::Boolean(false) => Ok(Vec::new()),
        other => tostring_bytes(other),
    }
}

/// nginx's base64 alphabet value of `c` (None when not in the alphabet).
fn b64_value(c: u8, url: bool) -> Option<u8> {
    Some(match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'+' if !url => 62,
        b'/' if !url => 63,
        b'-' if url => 62,
        b'_' if url => 63,
        _ => return None,
    })
}

/// ngx_decode_base64(): stops at the first '=', rejects other foreign bytes, accepts missing
/// padding, fails when one character is left over.
pub fn decode_base64(src: &[u8], url: bool) -> Option<Vec<u8>> {
    let len = src.iter().position(|&c| c == b'=').unwrap_or(src.len());
    let vals: Vec<u8> = src[..len]
        .iter()
        .map(|&c| b64_value(c, url))
        .collect::<Option<_>>()?;
    decode_b64_values(&vals)
}

fn decode_b64_values(vals: &[u8]) -> Option<Vec<u8>> {
    if vals.len() % 4 == 1 {
        return None;
    }
    let mut out = Vec::with_capacity(vals.len() / 4 * 3 + 2);
    for chunk in vals.chunks(4) {
        let v = |i: usize| chunk.get(i).copied().unwrap_or(0);
        if chunk.len() > 1 {
            out.push(v(0) << 2 | v(1) >> 4);
        }
        if chunk.len() > 2 {
            out.push(v(1) << 4 | v(2) >> 2);
        }
        if chunk.len() > 3 {
            out.push(v(2) << 6 | v(3));
        }
    }
    Some(out)
}

/// ngx.decode_base64mime: characters outside the alphabet are skipped.
fn decode_base64mime(src: &[u8]) -> Option<Vec<u8>> {
    let len = src.iter().position(|&c| c == b'=').unwrap_or(src.len());
    let vals: Vec<u8> = src[..len]
        .iter()
        .filter_map(|&c| b64_value(c, false))
        .collect();
    decode_b64_values(&vals)
}

/// Standard base64, padded unless `no_padding`.
pub fn encode_base64(src: &[u8], no_padding: bool) -> String {
    if no_padding {
        base64::engine::general_purpose::STANDARD_NO_PAD.encode(src)
    } else {
        base64::engine::general_purpose::STANDARD.encode(src)
    }
}

/// Lowercase hex of `bytes`.
pub fn to_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// CRC-32 (IEEE, as nginx's ngx_crc32_short/long).
pub fn crc32(data: &[u8]) -> u32 {
    let mut crc = 0xFFFF_FFFFu32;
    for &b in data {
        crc ^= b as u32;
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// Bytes escaped by ngx_http_lua_escape_uri for each `type` (0..=6).
fn must_escape(c: u8, kind: i64) -> bool {
    let ctl = c <= 0x1F || c >= 0x7F;
    match kind {
        0 => ctl || matches!(c, b' ' | b'#' | b'%' | b'?'),
        1 => ctl || matches!(c, b' ' | b'#' | b'%' | b'+' | b'?'),
        2 => {
            !(c.is_ascii_alphanumeric()
                || matches!(
                    c,
                    b'-' | b'.' | b'_' | b'~' | b'!' | b'*' | b'\'' | b'(' | b')'
                ))
        }
        3 => ctl || matches!(c, b' ' | b'#' | b'"' | b'%' | b'\''),
        4 => ctl || matches!(c, b' ' | b'"' | b'%' | b'\''),
        _ => c <= 0x1F || matches!(c, b' ' | b'%'),
    }
}

/// ngx.escape_uri(s, type): `%XX` (uppercase) for the bytes `type` escapes.
pub fn escape_uri(s: &[u8], kind: i64) -> Vec<u8> {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut out = Vec::with_capacity(s.len());
    for &c in s {
        if must_escape(c, kind) {
            out.extend_from_slice(&[b'%', HEX[(c >> 4) as usize], HEX[(c & 15) as usize]]);
        } else {
            out.push(c);
        }
    }
    out
}

/// ngx.unescape_uri: `%XX` decoded, '+' becomes a space, bad `%` sequences kept as they are.
pub fn unescape_uri(s: &[u8]) -> Vec<u8> {
    let hex = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        match s[i] {
            b'%' => match (
                s.get(i + 1).and_then(|&c| hex(c)),
                s.get(i + 2).and_then(|&c| hex(c)),
            ) {
                (Some(h), Some(l)) => {
                    out.push(h << 4 | l);
                    i += 3;
                    continue;
                }
                _ => out.push(b'%'),
            },
            b'+' => out.push(b' '),
            c => out.push(c),
        }
        i += 1;
    }
    out
}

/// Sort key of a list entry: numbers first (ascending), then other keys by their text, so
/// multi-value lists keep their order. Computed once per entry (a key's `__tostring` runs
/// once, and its errors are raised).
#[derive(PartialEq, PartialOrd)]
enum ListKey {
    Number(f64),
    Text(Vec<u8>),
}

fn list_key(k: &Value) -> mlua::Result<ListKey> {
    Ok(match super::support::as_f64(k) {
        Some(x) => ListKey::Number(x),
        None => ListKey::Text(tostring_bytes(k)?),
    })
}

/// ngx.encode_args. Keys are sorted (nginx walks the hash order) to make output deterministic.
pub fn encode_args(t: &Table) -> mlua::Result<Vec<u8>> {
    let mut pairs: Vec<(Vec<u8>, Value)> = Vec::new();
    for pair in t.pairs::<Value, Value>() {
        let (k, v) = pair?;
        match k {
            Value::String(s) => pairs.push((s.as_bytes().to_vec(), v)),
            _ => {
                return Err(raise(
                    "attempt to use a non-string key in the \"args\" option table",
                ))
            }
        }
    }
    pairs.sort_by(|a, b| a.0.cmp(&b.0));
    let mut parts: Vec<Vec<u8>> = Vec::new();
    // Built outside the VM's allocator (a list may repeat a large value): bounded by the VM's
    // memory limit, with the budget checked per argument.
    let room = crate::plugins::lua::sandbox::limits().memory;
    let mut size = 0usize;
    let mut one = |key: &[u8], v: &Value, parts: &mut Vec<Vec<u8>>| -> mlua::Result<()> {
        crate::plugins::lua::sandbox::guard()?;
        let mut p = escape_uri(key, 2);
        match v {
            Value::Boolean(true) => {}
            Value::Boolean(false) => return Ok(()),
            Value::String(_) | Value::Integer(_) | Value::Number(_) => {
                p.push(b'=');
                p.extend(escape_uri(&tostring_bytes(v)?, 2));
            }
            other => {
                let msg = format!("attempt to use {} as query arg value", type_name(other));
                return Err(raise(msg));
            }
        }
        size += p.len() + 1;
        if size > room {
            return Err(raise("not enough memory"));
        }
        parts.push(p);
        Ok(())
    };
    for (key, v) in &pairs {
        match v {
            Value::Table(list) => {
                let mut items: Vec<(ListKey, Value)> = Vec::new();
                for pair in list.pairs::<Value, Value>() {
                    let (k, v) = pair?;
                    items.push((list_key(&k)?, v));
                }
                items.sort_by(|a, b| a.0.partial_cmp(&b.0).unwrap_or(std::cmp::Ordering::Equal));
                for (_, item) in &items {
                    if matches!(item, Value::Table(_)) {
                        return Err(raise("attempt to use table as query arg value"));
                    }
                    one(key, item, &mut parts)?;
                }
            }
            other => one(key, other, &mut parts)?,
        }
    }
    Ok(parts.join(&b'&'))
}

/// ngx_http_lua_set_multi_value_table: a repeated key turns into a list.
fn set_multi(t: &Table, key: mlua::LuaString, value: Value) -> mlua::Result<()> {
    match t.raw_get::<Value>(&key)? {
        Value::Nil => t.raw_set(key, value),
        Value::Table(list) => list.raw_set(list.raw_len() + 1, value),
        old => {
            let lua = t.weak_lua().upgrade();
            t.raw_set(key, lua.create_sequence_from([old, value])?)
        }
    }
}

/// ngx.decode_args / ngx_http_lua_parse_args: `(table, "truncated"?)`.
pub fn decode_args(lua: &Lua, buf: &[u8], max: i64) -> mlua::Result<(Table, Option<&'static str>)> {
    let t = lua.create_table()?;
    let mut count = 0i64;
    let mut key: Option<Vec<u8>> = None;
    let mut q = 0usize;
    let finish = |key: Option<Vec<u8>>, raw: &[u8]| -> mlua::Result<()> {
        let (k, v) = match key {
            Some(k) => (k, Value::String(lua.create_string(unescape_uri(raw))?)),
            None => (unescape_uri(raw), Value::Boolean(true)),
        };
        if !k.is_empty() {
            set_multi(&t, lua.create_string(k)?, v)?;
        }
        Ok(())
    };
    for p in 0..buf.len() {
        match buf[p] {
            b'=' if key.is_none() => {
                key = Some(unescape_uri(&buf[q..p]));
                q = p + 1;
            }
            b'&' => {
                finish(key.take(), &buf[q..p])?;
                q = p + 1;
                count += 1;
                if max > 0 && count == max {
                    return Ok((t, Some("truncated")));
                }
            }
            _ => {}
        }
    }
    if q != buf.len() || key.is_some() {
        finish(key, &buf[q..])?;
    }
    Ok((t, None))
}

/// ngx.quote_sql_str (MySQL quoting rules).
fn quote_sql_str(s: &[u8]) -> Vec<u8> {
    let mut out = vec![b'\''];
    for &c in s {
        match c {
            0 => out.extend_from_slice(b"\\0"),
            8 => out.extend_from_slice(b"\\b"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\t' => out.extend_from_slice(b"\\t"),
            26 => out.extend_from_slice(b"\\Z"),
            b'\\' | b'\'' | b'"' => out.extend_from_slice(&[b'\\', c]),
            c => out.push(c),
        }
    }
    out.push(b'\'');
    out
}

fn bytes(lua: &Lua, b: impl AsRef<[u8]>) -> mlua::Result<Value> {
    Ok(Value::String(lua.create_string(b)?))
}

/// Registers the encoding helpers on the `ngx` table.
pub fn register(lua: &Lua, ngx: &Table) -> mlua::Result<()> {
    set_fn(
        lua,
        ngx,
        "encode_base64",
        |lua, (s, no_padding): (Value, Value)| {
            let no_padding = match no_padding {
                Value::Nil | Value::Boolean(false) => false,
                Value::Boolean(true) => true,
                other => {
                    let msg = format!(
                        "bad no_padding: boolean expected, got {}",
                        type_name(&other)
                    );
                    return Err(raise_here(msg));
                }
            };
            bytes(lua, encode_base64(&lenient(&s)?, no_padding))
        },
    )?;
    set_fn(lua, ngx, "decode_base64", |lua, s: Value| match s {
        Value::String(s) => match decode_base64(&s.as_bytes(), false) {
            Some(d) => bytes(lua, d),
            None => Ok(Value::Nil),
        },
        _ => Err(raise_here("string argument only")),
    })?;
    set_fn(lua, ngx, "decode_base64mime", |lua, s: Value| match s {
        Value::String(s) => match decode_base64mime(&s.as_bytes()) {
            Some(d) => bytes(lua, d),
            None => Ok(Value::Nil),
        },
        _ => Err(raise_here("string argument only")),
    })?;
    set_fn(lua, ngx, "md5", |lua, s: Value| {
        bytes(lua, to_hex(&Md5::digest(lenient(&s)?)))
    })?;
    set_fn(lua, ngx, "md5_bin", |lua, s: Value| {
        bytes(lua, Md5::digest(lenient(&s)?))
    })?;
    set_fn(lua, ngx, "sha1_bin", |lua, s: Value| {
        bytes(lua, Sha1::digest(lenient(&s)?))
    })?;
    set_fn(lua, ngx, "hmac_sha1", |lua, args: MultiValue| {
        if args.len() != 2 {
            return Err(raise(format!(
                "expecting 2 arguments, but got {}",
                args.len()
            )));
        }
        let key = check_bytes(&arg(&args, 0), 1, "hmac_sha1")?;
        let msg = check_bytes(&arg(&args, 1), 2, "hmac_sha1")?;
        let mut mac = Hmac::<Sha1>::new_from_slice(&key).map_err(|e| raise(e.to_string()))?;
        mac.update(&msg);
        bytes(lua, mac.finalize().into_bytes())
    })?;
    set_fn(lua, ngx, "crc32_short", |_, s: Value| {
        Ok(crc32(&lenient(&s)?) as i64)
    })?;
    set_fn(lua, ngx, "crc32_long", |_, s: Value| {
        Ok(crc32(&lenient(&s)?) as i64)
    })?;
    set_fn(lua, ngx, "escape_uri", |lua, (s, kind): (Value, Value)| {
        let kind = match kind {
            Value::Nil => 2,
            Value::Integer(_) | Value::Number(_) => {
                let k = super::support::as_f64(&kind).unwrap_or(2.0);
                if !(0.0..=6.0).contains(&k) {
                    return Err(raise_here(format!(
                        "\"type\" {} out of range",
                        fmt_number(k)
                    )));
                }
                k as i64
            }
            _ => return Err(raise_here("\"type\" is not a number")),
        };
        bytes(lua, escape_uri(&lenient(&s)?, kind))
    })?;
    set_fn(lua, ngx, "unescape_uri", |lua, s: Value| {
        bytes(lua, unescape_uri(&lenient(&s)?))
    })?;
    set_fn(lua, ngx, "encode_args", |lua, args: MultiValue| {
        if args.len() != 1 {
            return Err(raise(format!(
                "expecting 1 argument but seen {}",
                args.len()
            )));
        }
        let t = check_table(&arg(&args, 0), 1, "encode_args")?;
        bytes(lua, encode_args(&t)?)
    })?;
    set_fn(lua, ngx, "decode_args", |lua, args: MultiValue| {
        if args.is_empty() || args.len() > 2 {
            return Err(raise(format!(
                "expecting 1 or 2 arguments but seen {}",
                args.len()
            )));
        }
        let s = check_bytes(&arg(&args, 0), 1, "decode_args")?;
        let max = match args.len() {
            2 => check_integer(&arg(&args, 1), 2, "decode_args")?,
            _ => 100,
        };
        decode_args(lua, &s, max)
    })?;
    set_fn(lua, ngx, "quote_sql_str", |lua, s: Value| {
        bytes(lua, quote_sql_str(&check_bytes(&s, 1, "quote_sql_str")?))
    })?;
    Ok(())
}
