//! serde_json ⇄ Lua conversions for the rest of the PDK (cjson's rules, see `mod.rs`).

use mlua::{Lua, Table, Value};
use serde_json::Value as J;

use super::cjson::{classify, empty_array, Config, Shape};
use super::support::{as_f64, fmt_g, null, type_name};

/// See [`super::json_to_lua`].
pub fn json_to_lua(lua: &Lua, v: &J) -> mlua::Result<Value> {
    convert(lua, v, false)
}

/// A plugin's conf as Kong hands it to handlers: like [`json_to_lua`], but object fields that
/// are `null` (unset optional fields) are absent rather than `ngx.null`.
pub fn conf_to_lua(lua: &Lua, v: &J) -> mlua::Result<Value> {
    convert(lua, v, true)
}

fn convert(lua: &Lua, v: &J, drop_nulls: bool) -> mlua::Result<Value> {
    Ok(match v {
        J::Null => null(),
        J::Bool(b) => Value::Boolean(*b),
        J::Number(n) => match n.as_i64() {
            Some(i) if i.unsigned_abs() < (1 << 53) => Value::Integer(i),
            _ => Value::Number(n.as_f64().unwrap_or(0.0)),
        },
        J::String(s) => Value::String(lua.create_string(s)?),
        J::Array(items) => {
            let t = lua.create_table_with_capacity(items.len(), 0)?;
            for (i, item) in items.iter().enumerate() {
                t.raw_set(i + 1, convert(lua, item, drop_nulls)?)?;
            }
            Value::Table(t)
        }
        J::Object(map) => {
            let t = lua.create_table_with_capacity(0, map.len())?;
            for (k, item) in map {
                if drop_nulls && item.is_null() {
                    continue;
                }
                t.raw_set(k.as_str(), convert(lua, item, drop_nulls)?)?;
            }
            Value::Table(t)
        }
    })
}

fn scalar(v: &Value) -> Result<Option<J>, String> {
    Ok(Some(match v {
        Value::Nil => J::Null,
        Value::LightUserData(ud) if ud.0.is_null() => J::Null,
        Value::LightUserData(_) if v.equals(&empty_array()).unwrap_or(false) => J::Array(vec![]),
        Value::Boolean(b) => J::Bool(*b),
        Value::Integer(i) => J::from(*i),
        Value::Number(n) if n.is_finite() => {
            if n.fract() == 0.0 && n.abs() < 9.007_199_254_740_992e15 {
                J::from(*n as i64)
            } else {
                serde_json::Number::from_f64(*n)
                    .map(J::Number)
                    .unwrap_or(J::Null)
            }
        }
        Value::Number(_) => {
            return Err("Cannot serialise number: must not be NaN or Infinity".into())
        }
        Value::String(s) => J::String(s.to_string_lossy()),
        Value::Table(_) => return Ok(None),
        other => {
            return Err(format!(
                "Cannot serialise {}: type not supported",
                type_name(other)
            ))
        }
    }))
}

fn key_string(k: &Value) -> Result<String, String> {
    match k {
        Value::String(s) => Ok(s.to_string_lossy()),
        Value::Integer(_) | Value::Number(_) => Ok(fmt_g(as_f64(k).unwrap_or(0.0), 14)),
        other => Err(format!(
            "Cannot serialise {}: table key must be a number or string",
            type_name(other)
        )),
    }
}

/// An open table: its remaining children and what was built so far.
enum Frame {
    Array {
        t: Table,
        len: usize,
        raw: bool,
        items: Vec<J>,
    },
    Object {
        pairs: Vec<(Value, Value)>,
        next: usize,
        map: serde_json::Map<String, J>,
        key: String,
    },
}

fn open(t: &Table, depth: usize) -> Result<Frame, String> {
    if depth > 1000 {
        return Err(format!("Cannot serialise, excessive nesting ({depth})"));
    }
    let lua = t.weak_lua().upgrade();
    Ok(match classify(&lua, &Config::default(), t)? {
        Shape::Array { len, raw } => Frame::Array {
            t: t.clone(),
            len,
            raw,
            // `len` may come from a `__len` metamethod: never trust it for an allocation.
            items: Vec::with_capacity(len.min(1024)),
        },
        Shape::Object => {
            let pairs = t.pairs::<Value, Value>().collect::<mlua::Result<Vec<_>>>();
            let pairs = pairs.map_err(|e| e.to_string())?;
            Frame::Object {
                pairs,
                next: 0,
                map: serde_json::Map::new(),
                key: String::new(),
            }
        }
    })
}

/// See [`super::lua_to_json`]. Iterative, so deep nesting needs no deep Rust recursion.
pub fn lua_to_json(v: &Value) -> Result<J, String> {
    let Value::Table(root) = v else {
        return scalar(v).map(|j| j.unwrap_or(J::Null));
    };
    let mut stack = vec![open(root, 1)?];
    // What the result may grow to: a table holding one large string many times, or claiming
    // a huge length, would otherwise convert to gigabytes outside the VM's memory limit.
    let room = crate::plugins::lua::sandbox::limits().memory;
    let mut size = 0usize;
    let mut steps = 0u32;
    loop {
        steps = steps.wrapping_add(1);
        if steps % 1024 == 0 {
            crate::plugins::lua::sandbox::budget::check().map_err(|e| e.to_string())?;
        }
        if size > room {
            return Err("not enough memory".into());
        }
        let depth = stack.len();
        let Some(frame) = stack.last_mut() else {
            return Ok(J::Null);
        };
        let child = match frame {
            Frame::Array { t, len, raw, items } if items.len() < *len => {
                let i = items.len() + 1;
                Some(if *raw { t.raw_get(i) } else { t.get(i) }.map_err(|e| e.to_string())?)
            }
            Frame::Object {
                pairs, next, key, ..
            } if *next < pairs.len() => {
                let (k, v) = pairs[*next].clone();
                *next += 1;
                *key = key_string(&k)?;
                Some(v)
            }
            _ => None,
        };
        size += 16
            + match &child {
                Some(Value::String(s)) => s.as_bytes().len(),
                _ => 0,
            };
        let done = match child {
            Some(child) => match scalar(&child)? {
                Some(j) => j,
                None => {
                    if let Value::Table(t) = &child {
                        let f = open(t, depth + 1)?;
                        stack.push(f);
                    }
                    continue;
                }
            },
            None => match stack.pop() {
                Some(Frame::Array { items, .. }) => J::Array(items),
                Some(Frame::Object { map, .. }) => J::Object(map),
                None => J::Null,
            },
        };
        match stack.last_mut() {
            None => return Ok(done),
            Some(Frame::Array { items, .. }) => items.push(done),
            Some(Frame::Object { map, key, .. }) => {
                map.insert(std::mem::take(key), done);
            }
        }
    }
}
