//! The `cjson` / `cjson.safe` module tables: settings functions, encode/decode wrappers.

use std::sync::{Arc, Mutex};

use mlua::{Lua, MultiValue, Table, Value};

use super::cjson::{empty_array, encode, metatables, Config};
use super::json_decode;
use super::support::{arg, arg_error, check_bytes, function, null, raise, type_name};

/// `json_enum_option` for on/off settings: a boolean or "on"/"off"; returns the current value.
fn bool_option(v: &Value, setting: &mut bool, fname: &str) -> mlua::Result<Value> {
    match v {
        Value::Nil => {}
        Value::Boolean(b) => *setting = *b,
        Value::String(s) if &*s.as_bytes() == b"on" => *setting = true,
        Value::String(s) if &*s.as_bytes() == b"off" => *setting = false,
        Value::String(s) => {
            let msg = format!("invalid option '{}'", s.to_string_lossy());
            return Err(arg_error(1, fname, &msg));
        }
        other => {
            return Err(arg_error(
                1,
                fname,
                &format!("string expected, got {}", type_name(other)),
            ))
        }
    }
    Ok(Value::Boolean(*setting))
}

/// `json_integer_option`: an integer within `min..=max`; returns the current value.
fn int_option(
    v: &Value,
    n: usize,
    setting: &mut i64,
    min: i64,
    max: i64,
    fname: &str,
) -> mlua::Result<Value> {
    if !v.is_nil() {
        let x = super::support::check_integer(v, n, fname)?;
        if x < min || x > max {
            return Err(arg_error(
                1,
                fname,
                &format!("expected integer between {min} and {max}"),
            ));
        }
        *setting = x;
    }
    Ok(Value::Integer(*setting))
}

fn too_many(args: &MultiValue, max: usize, fname: &str) -> mlua::Result<()> {
    if args.len() > max {
        return Err(arg_error(max + 1, fname, "found too many arguments"));
    }
    Ok(())
}

type Shared = Arc<Mutex<Config>>;

fn lock(cfg: &Shared) -> std::sync::MutexGuard<'_, Config> {
    cfg.lock().unwrap_or_else(|e| e.into_inner())
}

fn set_bool_fn(
    lua: &Lua,
    m: &Table,
    cfg: &Shared,
    name: &'static str,
    field: fn(&mut Config) -> &mut bool,
) -> mlua::Result<()> {
    let cfg = cfg.clone();
    m.raw_set(
        name,
        function(lua, move |_, args: MultiValue| {
            too_many(&args, 1, name)?;
            let mut c = lock(&cfg);
            bool_option(&arg(&args, 0), field(&mut c), name)
        })?,
    )
}

fn set_int_fn(
    lua: &Lua,
    m: &Table,
    cfg: &Shared,
    name: &'static str,
    min: i64,
    max: i64,
    field: fn(&mut Config) -> &mut i64,
) -> mlua::Result<()> {
    let cfg = cfg.clone();
    m.raw_set(
        name,
        function(lua, move |_, args: MultiValue| {
            too_many(&args, 1, name)?;
            let mut c = lock(&cfg);
            int_option(&arg(&args, 0), 1, field(&mut c), min, max, name)
        })?,
    )
}

fn one(v: Value) -> mlua::Result<MultiValue> {
    Ok(MultiValue::from_vec(vec![v]))
}

fn nil_err(lua: &Lua, e: String) -> mlua::Result<MultiValue> {
    Ok(MultiValue::from_vec(vec![
        Value::Nil,
        Value::String(lua.create_string(e)?),
    ]))
}

/// A fresh cjson module table (`safe`: encode/decode return `nil, err` instead of raising).
pub fn module(lua: &Lua, safe: bool) -> mlua::Result<Table> {
    let cfg: Shared = Arc::new(Mutex::new(Config::default()));
    let m = lua.create_table()?;
    let (array_mt, empty_array_mt) = metatables(lua)?;

    let c = cfg.clone();
    m.raw_set(
        "encode",
        function(lua, move |lua, args: MultiValue| {
            if args.len() != 1 {
                return Err(arg_error(1, "encode", "expected 1 argument"));
            }
            let snapshot = lock(&c).clone();
            match encode(lua, &snapshot, &arg(&args, 0)) {
                Ok(text) => one(Value::String(lua.create_string(text)?)),
                Err(e) if safe => nil_err(lua, e),
                Err(e) => Err(raise(e)),
            }
        })?,
    )?;
    let c = cfg.clone();
    m.raw_set(
        "decode",
        function(lua, move |lua, args: MultiValue| {
            if args.len() != 1 {
                return Err(arg_error(1, "decode", "expected 1 argument"));
            }
            let text = check_bytes(&arg(&args, 0), 1, "decode")?;
            let snapshot = lock(&c).clone();
            match json_decode::decode(lua, &snapshot, &text) {
                Ok(v) => one(v),
                Err(e) if safe => nil_err(lua, e),
                Err(e) => Err(raise(e)),
            }
        })?,
    )?;

    set_bool_fn(lua, &m, &cfg, "encode_empty_table_as_object", |c| {
        &mut c.empty_table_as_object
    })?;
    set_bool_fn(lua, &m, &cfg, "decode_array_with_array_mt", |c| {
        &mut c.decode_array_with_array_mt
    })?;
    set_bool_fn(lua, &m, &cfg, "decode_allow_comment", |c| {
        &mut c.decode_allow_comment
    })?;
    set_bool_fn(lua, &m, &cfg, "encode_keep_buffer", |c| &mut c.keep_buffer)?;
    set_bool_fn(lua, &m, &cfg, "decode_invalid_numbers", |c| {
        &mut c.decode_invalid_numbers
    })?;
    set_bool_fn(lua, &m, &cfg, "encode_escape_forward_slash", |c| {
        &mut c.escape_slash
    })?;
    set_bool_fn(lua, &m, &cfg, "encode_skip_unsupported_value_types", |c| {
        &mut c.skip_unsupported
    })?;
    set_int_fn(lua, &m, &cfg, "encode_max_depth", 1, i32::MAX as i64, |c| {
        &mut c.encode_max_depth
    })?;
    set_int_fn(lua, &m, &cfg, "decode_max_depth", 1, i32::MAX as i64, |c| {
        &mut c.decode_max_depth
    })?;
    set_int_fn(lua, &m, &cfg, "encode_number_precision", 1, 16, |c| {
        &mut c.number_precision
    })?;

    let c = cfg.clone();
    m.raw_set(
        "encode_sparse_array",
        function(lua, move |_, args: MultiValue| {
            too_many(&args, 3, "encode_sparse_array")?;
            let mut cfg = lock(&c);
            let f = "encode_sparse_array";
            let convert = bool_option(&arg(&args, 0), &mut cfg.sparse_convert, f)?;
            let max = i32::MAX as i64;
            let ratio = int_option(&arg(&args, 1), 2, &mut cfg.sparse_ratio, 0, max, f)?;
            let safe = int_option(&arg(&args, 2), 3, &mut cfg.sparse_safe, 0, max, f)?;
            Ok((convert, ratio, safe))
        })?,
    )?;
    let c = cfg.clone();
    m.raw_set(
        "encode_invalid_numbers",
        function(lua, move |lua, args: MultiValue| {
            too_many(&args, 1, "encode_invalid_numbers")?;
            let mut cfg = lock(&c);
            match arg(&args, 0) {
                Value::Nil => {}
                Value::Boolean(b) => cfg.encode_invalid_numbers = u8::from(b),
                Value::String(s) => {
                    cfg.encode_invalid_numbers = match &*s.as_bytes() {
                        b"off" => 0,
                        b"on" => 1,
                        b"null" => 2,
                        _ => {
                            let msg = format!("invalid option '{}'", s.to_string_lossy());
                            return Err(arg_error(1, "encode_invalid_numbers", &msg));
                        }
                    }
                }
                other => {
                    let msg = format!("string expected, got {}", type_name(&other));
                    return Err(arg_error(1, "encode_invalid_numbers", &msg));
                }
            }
            Ok(match cfg.encode_invalid_numbers {
                0 => Value::Boolean(false),
                1 => Value::Boolean(true),
                _ => Value::String(lua.create_string("null")?),
            })
        })?,
    )?;
    let c = cfg.clone();
    m.raw_set(
        "encode_indent",
        function(lua, move |lua, args: MultiValue| {
            too_many(&args, 1, "encode_indent")?;
            let mut cfg = lock(&c);
            let v = arg(&args, 0);
            if !v.is_nil() {
                let s = check_bytes(&v, 1, "encode_indent")?;
                cfg.indent = (!s.is_empty()).then(|| String::from_utf8_lossy(&s).into_owned());
            }
            lua.create_string(cfg.indent.clone().unwrap_or_default())
        })?,
    )?;
    m.raw_set("new", function(lua, move |lua, ()| module(lua, safe))?)?;
    m.raw_set("null", null())?;
    m.raw_set("empty_array", empty_array())?;
    m.raw_set("array_mt", array_mt)?;
    m.raw_set("empty_array_mt", empty_array_mt)?;
    m.raw_set("_NAME", "cjson")?;
    m.raw_set("_VERSION", "2.1.0.11")?;
    Ok(m)
}
