//! A schema table as Kong's admin API shows it (`GET /schemas/plugins/{name}`): functions
//! dropped, records' `fields` as arrays of one-key objects, Lua arrays as JSON arrays
//! (`schema_to_jsonable` in `kong/api/api_helpers.lua`), foreign fields without their schema.

use mlua::{Table, Value};
use serde_json::{Map, Value as Json};

use super::convert::is_null;

/// Deepest nesting followed; a schema table is plugin code and may be cyclic.
const MAX_DEPTH: usize = 48;
/// Most values converted for one schema.
const MAX_NODES: usize = 100_000;

/// `{ "fields": [...], "entity_checks": [...] }` of a schema table.
pub(crate) fn schema(table: &Table) -> Result<Json, String> {
    let mut budget = MAX_NODES;
    let fields = match table
        .raw_get::<Value>("fields")
        .map_err(|e| e.to_string())?
    {
        Value::Table(t) => fields_of(&t, 0, &mut budget)?,
        _ => Json::Array(Vec::new()),
    };
    let checks = match table
        .raw_get::<Value>("entity_checks")
        .map_err(|e| e.to_string())?
    {
        Value::Table(t) => fields_of(&t, 0, &mut budget)?,
        _ => Json::Array(Vec::new()),
    };
    let mut out = Map::new();
    out.insert("entity_checks".into(), checks);
    out.insert("fields".into(), strip_foreign(fields));
    Ok(Json::Object(out))
}

/// Kong's `strip_foreign_schemas`: a foreign field's `schema` is not shown.
fn strip_foreign(mut fields: Json) -> Json {
    if let Json::Array(list) = &mut fields {
        for f in list.iter_mut().filter_map(Json::as_object_mut) {
            for data in f.values_mut().filter_map(Json::as_object_mut) {
                if data.get("type").and_then(Json::as_str) == Some("foreign") {
                    data.remove("schema");
                }
            }
        }
    }
    fields
}

fn fields_of(list: &Table, depth: usize, budget: &mut usize) -> Result<Json, String> {
    let mut out = Vec::new();
    for entry in list.sequence_values::<Value>() {
        let Value::Table(entry) = entry.map_err(|e| e.to_string())? else {
            continue;
        };
        // `{ name = data }`: the one string key of the entry.
        for pair in entry.pairs::<Value, Value>() {
            let (k, v) = pair.map_err(|e| e.to_string())?;
            if let (Value::String(k), Value::Table(data)) = (k, v) {
                let mut one = Map::new();
                one.insert(
                    k.to_str().map_err(|e| e.to_string())?.to_string(),
                    data_of(&data, Shape::Object, depth + 1, budget)?,
                );
                out.push(Json::Object(one));
                break;
            }
        }
    }
    Ok(Json::Array(out))
}

#[derive(Clone, Copy, PartialEq)]
enum Shape {
    Array,
    Object,
    Maybe,
}

fn data_of(t: &Table, shape: Shape, depth: usize, budget: &mut usize) -> Result<Json, String> {
    if depth > MAX_DEPTH {
        return Err(format!("schema nested deeper than {MAX_DEPTH} levels"));
    }
    let is_record = matches!(t.raw_get::<Value>("type"), Ok(Value::String(s)) if s.as_bytes().as_ref() == b"record");
    let is_array_type = matches!(t.raw_get::<Value>("type"), Ok(Value::String(s)) if s.as_bytes().as_ref() == b"array");
    let mut entries: Vec<(Json, Json)> = Vec::new();
    let mut all_index = true;
    for pair in t.pairs::<Value, Value>() {
        let (k, v) = pair.map_err(|e| e.to_string())?;
        *budget = budget.checked_sub(1).ok_or("schema too large")?;
        let key = match &k {
            Value::String(s) => Json::String(s.to_str().map_err(|e| e.to_string())?.to_string()),
            Value::Integer(i) => Json::from(*i),
            Value::Number(n) if n.fract() == 0.0 => Json::from(*n as i64),
            _ => continue,
        };
        if !key.is_i64() {
            all_index = false;
        }
        let name = key.as_str().unwrap_or("");
        let value = match v {
            ref null if is_null(null) => Json::Null,
            Value::Function(_) | Value::Thread(_) => continue,
            Value::Table(inner) => {
                if name == "schema" {
                    schema(&inner)?
                } else if name == "fields" && is_record {
                    fields_of(&inner, depth + 1, budget)?
                } else if name == "default" && is_array_type {
                    data_of(&inner, Shape::Array, depth + 1, budget)?
                } else {
                    data_of(&inner, Shape::Maybe, depth + 1, budget)?
                }
            }
            Value::Boolean(b) => Json::Bool(b),
            Value::Integer(i) => Json::from(i),
            Value::Number(n) if n.is_nan() => Json::from("nan"),
            Value::Number(n) if n == f64::INFINITY => Json::from("inf"),
            Value::Number(n) if n == f64::NEG_INFINITY => Json::from("-inf"),
            Value::Number(n) if n.fract() == 0.0 && n.abs() < 9.0e15 => Json::from(n as i64),
            Value::Number(n) => Json::from(n),
            Value::String(s) => Json::String(s.to_str().map_err(|e| e.to_string())?.to_string()),
            _ => continue,
        };
        entries.push((key, value));
    }
    let as_array = match shape {
        Shape::Array => true,
        Shape::Object => false,
        Shape::Maybe => all_index,
    };
    if as_array {
        entries.sort_by_key(|(k, _)| k.as_i64().unwrap_or(i64::MAX));
        return Ok(Json::Array(entries.into_iter().map(|(_, v)| v).collect()));
    }
    let mut out = Map::new();
    for (k, v) in entries {
        let k = match k {
            Json::String(s) => s,
            other => other.to_string(),
        };
        out.insert(k, v);
    }
    Ok(Json::Object(out))
}
