//! serde_json ⇄ Lua conversions for the rest of the PDK (cjson's rules, see `mod.rs`).

use mlua::{IntoLua, Lua, Table, Value};
use serde_json::Value as J;

use super::cjson::{classify, empty_array, Config, Shape};
use super::support::{as_f64, fmt_g, null, room_for, type_name, used_bytes};

/// See [`super::json_to_lua`].
pub fn json_to_lua(lua: &Lua, v: &J) -> mlua::Result<Value> {
    convert(lua, v, false)
}

/// A plugin's conf as Kong hands it to handlers: like [`json_to_lua`], but object fields that
/// are `null` (unset optional fields) are absent rather than `ngx.null`.
pub fn conf_to_lua(lua: &Lua, v: &J) -> mlua::Result<Value> {
    convert(lua, v, true)
}

/// JSON returned to Lua as [`json_to_lua`] (or, with `drop_nulls`, [`conf_to_lua`]) converts
/// it. When the VM has room for all of it, the value is built with LuaJIT's API straight on
/// the stack: through mlua, every string and table is a handle on its reference thread, moved
/// to the stack and back, and a protected call once the VM is near its limit.
pub struct Json {
    /// The value.
    pub value: J,
    /// Whether `null` object fields are left out (a plugin conf's unset fields).
    pub drop_nulls: bool,
}

/// Nesting beyond which [`Json`] converts through mlua (the stack build recurses).
const STACK_DEPTH: usize = 64;

impl IntoLua for Json {
    fn into_lua(self, lua: &Lua) -> mlua::Result<Value> {
        convert(lua, &self.value, self.drop_nulls)
    }

    unsafe fn push_into_stack(self, lua: &mlua::state::RawLua) -> mlua::Result<()> {
        let state = lua.state();
        let (bytes, depth) = footprint(&self.value, 1);
        // SAFETY: with room for everything the build allocates (strings, tables, the string
        // table and the stack growing to at most twice their size), none of the calls in
        // `push` can raise, so no Lua error unwinds through Rust frames (see `room_for`).
        unsafe {
            if depth > STACK_DEPTH || !room_for(used_bytes(state), bytes) {
                return lua.push(Converted(self));
            }
            if mlua::ffi::lua_checkstack(state, 2 * depth as i32 + 4) == 0 {
                return Err(mlua::Error::StackError);
            }
            push(state, &self.value, self.drop_nulls);
        }
        Ok(())
    }
}

/// [`Json`] converted through mlua's API (its default `push_into_stack`).
struct Converted(Json);

impl IntoLua for Converted {
    fn into_lua(self, lua: &Lua) -> mlua::Result<Value> {
        self.0.into_lua(lua)
    }
}

/// An upper bound of the bytes LuaJIT allocates for `v` (strings with their headers, tables
/// with their array and hash parts rounded up), and its nesting depth.
fn footprint(v: &J, depth: usize) -> (usize, usize) {
    match v {
        J::String(s) => (s.len() + 32, depth),
        J::Array(items) => items
            .iter()
            .fold((96 + 8 * items.len(), depth), |(b, d), i| {
                let (ib, id) = footprint(i, depth + 1);
                (b + ib, d.max(id))
            }),
        J::Object(map) => map
            .iter()
            .fold((96 + 64 * map.len(), depth), |(b, d), (k, i)| {
                let (ib, id) = footprint(i, depth + 1);
                (b + k.len() + 32 + ib, d.max(id))
            }),
        _ => (0, depth),
    }
}

/// Pushes `v` as [`convert`] makes it.
///
/// # Safety
/// The VM must have room for `v` ([`footprint`], [`room_for`]) and its stack room for two
/// slots per level of nesting.
unsafe fn push(state: *mut mlua::ffi::lua_State, v: &J, drop_nulls: bool) {
    use mlua::ffi;
    let text = |s: &str| unsafe { ffi::lua_pushlstring(state, s.as_ptr().cast(), s.len()) };
    unsafe {
        match v {
            J::Null => ffi::lua_pushlightuserdata(state, std::ptr::null_mut()),
            J::Bool(b) => ffi::lua_pushboolean(state, i32::from(*b)),
            J::Number(n) => match n.as_i64() {
                Some(i) if i.unsigned_abs() < (1 << 53) => ffi::lua_pushnumber(state, i as f64),
                _ => ffi::lua_pushnumber(state, n.as_f64().unwrap_or(0.0)),
            },
            J::String(s) => {
                text(s);
            }
            J::Array(items) => {
                ffi::lua_createtable(state, items.len().min(i32::MAX as usize) as i32, 0);
                for (i, item) in items.iter().enumerate() {
                    push(state, item, drop_nulls);
                    ffi::lua_rawseti(state, -2, (i + 1) as ffi::lua_Integer);
                }
            }
            J::Object(map) => {
                ffi::lua_createtable(state, 0, map.len().min(i32::MAX as usize) as i32);
                for (k, item) in map {
                    if drop_nulls && item.is_null() {
                        continue;
                    }
                    text(k);
                    push(state, item, drop_nulls);
                    ffi::lua_rawset(state, -3);
                }
            }
        }
    }
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
