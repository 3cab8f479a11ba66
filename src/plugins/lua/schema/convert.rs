//! Conversions between Lua values and JSON, and Lua-style formatting of values in messages.

use mlua::{Lua, Table, Value};
use serde_json::{Map, Number, Value as Json};

use super::model::{Field, Type};

/// True for Kong's null: `ngx.null`/`cjson.null` (a NULL light userdata) or the stand-in
/// table typedefs.lua uses when `ngx` is not reachable (its metatable has `__null = true`).
pub(crate) fn is_null(v: &Value) -> bool {
    match v {
        Value::LightUserData(ud) => ud.0.is_null(),
        Value::Table(t) => t
            .metatable()
            .is_some_and(|mt| matches!(mt.raw_get::<Value>("__null"), Ok(Value::Boolean(true)))),
        _ => false,
    }
}

/// A Lua number as JSON (integral values become JSON integers).
pub(crate) fn number(n: f64) -> Result<Json, String> {
    if n.is_finite() && n.fract() == 0.0 && n.abs() < 9.007_199_254_740_992e15 {
        Ok(Json::from(n as i64))
    } else {
        Number::from_f64(n)
            .map(Json::Number)
            .ok_or_else(|| format!("{n} cannot be represented in JSON"))
    }
}

/// Converts a Lua value to JSON. `hint` (the field the value is for) decides whether an empty
/// table is an array or an object, and is followed into elements, values and record fields.
pub(crate) fn lua_to_json(v: &Value, hint: Option<&Field>) -> Result<Json, String> {
    if is_null(v) {
        return Ok(Json::Null);
    }
    match v {
        Value::Nil => Ok(Json::Null),
        Value::Boolean(b) => Ok(Json::Bool(*b)),
        Value::Integer(i) => Ok(Json::from(*i)),
        Value::Number(n) => number(*n),
        Value::String(s) => Ok(Json::String(s.to_string_lossy())),
        Value::Table(t) => table_to_json(t, hint),
        other => Err(format!("a {} cannot be a JSON value", other.type_name())),
    }
}

fn table_to_json(t: &Table, hint: Option<&Field>) -> Result<Json, String> {
    // Plugin-made tables: cycles and deep nesting meet the stack guard, shared subtables
    // (exponential when expanded) the CPU budget.
    crate::plugins::lua::sandbox::guard().map_err(|e| crate::plugins::lua::lua_error(&e))?;
    let mut count = 0usize;
    for pair in t.pairs::<Value, Value>() {
        pair.map_err(|e| e.to_string())?;
        count += 1;
    }
    let ty = hint.map(|f| f.ty);
    let wants_object = matches!(ty, Some(Type::Record | Type::Map));
    if count == 0 {
        return Ok(if matches!(ty, Some(Type::Array | Type::Set)) {
            Json::Array(Vec::new())
        } else {
            Json::Object(Map::new())
        });
    }
    if !wants_object && t.raw_len() == count {
        let element = hint.and_then(|f| f.elements.as_deref());
        let mut out = Vec::with_capacity(count);
        for i in 1..=count {
            let item: Value = t.raw_get(i).map_err(|e| e.to_string())?;
            out.push(lua_to_json(&item, element)?);
        }
        return Ok(Json::Array(out));
    }
    let mut out = Map::new();
    for pair in t.pairs::<Value, Value>() {
        let (k, item) = pair.map_err(|e| e.to_string())?;
        let key = match &k {
            Value::String(s) => s.to_string_lossy(),
            Value::Integer(i) => i.to_string(),
            Value::Number(n) => fmt_number(*n),
            other => {
                return Err(format!(
                    "a table with a {} key cannot be a JSON object",
                    other.type_name()
                ))
            }
        };
        let sub = hint.and_then(|f| match f.ty {
            Type::Map => f.values.as_deref(),
            Type::Record => f.record.as_ref().and_then(|r| r.lookup(&key)),
            _ => None,
        });
        out.insert(key, lua_to_json(&item, sub)?);
    }
    Ok(Json::Object(out))
}

/// Converts JSON to a Lua value; JSON null becomes `ngx.null` (a NULL light userdata).
pub(crate) fn json_to_lua(lua: &Lua, v: &Json) -> mlua::Result<Value> {
    Ok(match v {
        Json::Null => Value::NULL,
        Json::Bool(b) => Value::Boolean(*b),
        Json::Number(n) => match n.as_i64() {
            Some(i) => Value::Integer(i),
            None => Value::Number(n.as_f64().unwrap_or(f64::NAN)),
        },
        Json::String(s) => Value::String(lua.create_string(s)?),
        Json::Array(items) => {
            let t = lua.create_table_with_capacity(items.len(), 0)?;
            for (i, item) in items.iter().enumerate() {
                t.raw_set(i + 1, json_to_lua(lua, item)?)?;
            }
            Value::Table(t)
        }
        Json::Object(map) => {
            let t = lua.create_table_with_capacity(0, map.len())?;
            for (k, item) in map {
                t.raw_set(k.as_str(), json_to_lua(lua, item)?)?;
            }
            Value::Table(t)
        }
    })
}

/// A number as Lua's `tostring` shows it (`%.14g`).
pub(crate) fn fmt_number(n: f64) -> String {
    if n.is_finite() && n.fract() == 0.0 && n.abs() < 1e15 {
        format!("{}", n as i64)
    } else if n.is_nan() {
        "nan".into()
    } else if n.is_infinite() {
        if n > 0.0 { "inf" } else { "-inf" }.into()
    } else {
        format!("{n}")
    }
}

/// A JSON value as Lua's `tostring` would show the decoded value (tables as JSON).
pub(crate) fn tostring(v: &Json) -> String {
    match v {
        Json::Null => "null".into(),
        Json::Bool(b) => b.to_string(),
        Json::Number(n) => match n.as_i64() {
            Some(i) => i.to_string(),
            None => fmt_number(n.as_f64().unwrap_or(f64::NAN)),
        },
        Json::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Lua's `==` on decoded JSON values: scalars by value, tables never equal (identity).
pub(crate) fn lua_eq(a: &Json, b: &Json) -> bool {
    match (a, b) {
        (Json::Null, Json::Null) => true,
        (Json::Bool(x), Json::Bool(y)) => x == y,
        (Json::Number(x), Json::Number(y)) => match (x.as_i64(), y.as_i64()) {
            (Some(x), Some(y)) => x == y,
            _ => x.as_f64() == y.as_f64(),
        },
        (Json::String(x), Json::String(y)) => x == y,
        _ => false,
    }
}

/// Kong's `quoted_list`: `'a', 'b', 'c'`.
pub(crate) fn quoted_list<S: AsRef<str>>(names: &[S]) -> String {
    names
        .iter()
        .map(|n| format!("'{}'", n.as_ref()))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Lua's `string.format(fmt, arg)` for the `%s` messages of entity checks (`then_err`).
pub(crate) fn format_s(fmt: &str, arg: &str) -> String {
    let mut out = String::with_capacity(fmt.len() + arg.len());
    let mut chars = fmt.chars().peekable();
    let mut used = false;
    while let Some(c) = chars.next() {
        if c == '%' {
            match chars.peek() {
                Some('%') => {
                    chars.next();
                    out.push('%');
                }
                Some('s') if !used => {
                    chars.next();
                    out.push_str(arg);
                    used = true;
                }
                _ => out.push(c),
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Joins a record path and a field name (`config` + `ttl` → `config.ttl`).
pub(crate) fn join(base: &str, name: &str) -> String {
    if base.is_empty() {
        name.to_string()
    } else {
        format!("{base}.{name}")
    }
}

/// The value at a dotted path of an entity: `None` when absent (Lua's nil), `Some(Null)`
/// when null.
pub(crate) fn get_path<'a>(entity: &'a Json, path: &str) -> Option<&'a Json> {
    let mut cur = entity;
    for part in path.split('.') {
        match cur {
            Json::Object(map) => cur = map.get(part)?,
            _ => return None,
        }
    }
    Some(cur)
}

/// Sets the value at a dotted path, creating intermediate objects.
pub(crate) fn set_path(entity: &mut Map<String, Json>, path: &str, value: Json) {
    match path.split_once('.') {
        None => {
            entity.insert(path.to_string(), value);
        }
        Some((head, rest)) => {
            let slot = entity
                .entry(head.to_string())
                .or_insert_with(|| Json::Object(Map::new()));
            if !slot.is_object() {
                *slot = Json::Object(Map::new());
            }
            if let Json::Object(sub) = slot {
                set_path(sub, rest, value);
            }
        }
    }
}

/// Kong's `is_nonempty`: not nil/null, not an empty string, not an empty table.
pub(crate) fn is_nonempty(v: Option<&Json>) -> bool {
    match v {
        None | Some(Json::Null) => false,
        Some(Json::String(s)) => !s.is_empty(),
        Some(Json::Array(a)) => !a.is_empty(),
        Some(Json::Object(o)) => !o.is_empty(),
        Some(_) => true,
    }
}

/// A vault reference (`{vault://name/path}`), which referenceable fields accept unchecked.
pub(crate) fn is_reference(s: &str) -> bool {
    crate::config::vault::is_reference(s)
}

/// The first line of a Lua error, without mlua's traceback.
pub(crate) fn lua_error(e: &mlua::Error) -> String {
    let s = match e {
        mlua::Error::SyntaxError { message, .. } => message.clone(),
        mlua::Error::RuntimeError(m) => m.clone(),
        mlua::Error::CallbackError { cause, .. } => cause.to_string(),
        other => other.to_string(),
    };
    s.lines().next().unwrap_or("").trim().to_string()
}
