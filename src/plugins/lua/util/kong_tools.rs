//! `kong.tools.table` (Kong 3.10) in Rust, plus `kong.tools.utils`, the compatibility module
//! that re-exports kong.tools.table / uuid / rand / string.

use mlua::{Lua, MultiValue, Table, Value, Variadic};

use super::support::{as_f64, check_table, raise, raise_here, set_fn, type_error};
use super::{kong, kong_strings};

/// Registry slot of the metatable add_error() tags error lists with.
const ERR_LIST_MT_KEY: &str = "sluice.kong.err_list_mt";
/// Deepest recursion of deep_copy/deep_merge before giving up (Kong would overflow its stack).
const MAX_DEPTH: usize = 200;

fn opt_table(v: &Value, n: usize, fname: &str) -> mlua::Result<Option<Table>> {
    match v {
        Value::Nil | Value::Boolean(false) => Ok(None),
        other => check_table(other, n, fname).map(Some),
    }
}

/// `table_merge(t1, t2)`: a new table with t1's then t2's pairs (shallow).
pub fn table_merge(lua: &Lua, (t1, t2): (Value, Value)) -> mlua::Result<Table> {
    let res = lua.create_table()?;
    for (i, t) in [t1, t2].iter().enumerate() {
        if let Some(t) = opt_table(t, i + 1, "table_merge")? {
            for pair in t.pairs::<Value, Value>() {
                let (k, v) = pair?;
                res.raw_set(k, v)?;
            }
        }
    }
    Ok(res)
}

fn null_aware_table_merge(lua: &Lua, (t1, t2): (Value, Value)) -> mlua::Result<Table> {
    let res = table_merge(lua, (t1, Value::Nil))?;
    if let Some(t2) = opt_table(&t2, 2, "null_aware_table_merge")? {
        for pair in t2.pairs::<Value, Value>() {
            let (k, v) = pair?;
            let is_null = matches!(v, Value::LightUserData(ud) if ud.0.is_null());
            if res.raw_get::<Value>(&k)?.is_nil() || !is_null {
                res.raw_set(k, v)?;
            }
        }
    }
    Ok(res)
}

fn table_contains(_: &Lua, (arr, val): (Value, Value)) -> mlua::Result<bool> {
    if let Some(arr) = opt_table(&arr, 1, "table_contains")? {
        for pair in arr.pairs::<Value, Value>() {
            if pair?.1.equals(&val)? {
                return Ok(true);
            }
        }
    }
    Ok(false)
}

fn is_lapis_array(t: &Table) -> mlua::Result<bool> {
    let mut i = 0i64;
    for pair in t.pairs::<Value, Value>() {
        pair?;
        i += 1;
        if t.raw_get::<Value>(i)?.is_nil() && t.raw_get::<Value>(i.to_string())?.is_nil() {
            return Ok(false);
        }
    }
    Ok(true)
}

fn is_array(_: &Lua, (t, mode): (Value, Option<String>)) -> mlua::Result<bool> {
    let Value::Table(t) = t else { return Ok(false) };
    match mode.as_deref() {
        Some("lapis") => is_lapis_array(&t),
        Some("fast") => {
            for pair in t.pairs::<Value, Value>() {
                match as_f64(&pair?.0) {
                    Some(k) if k.floor() == k => {}
                    _ => return Ok(false),
                }
            }
            Ok(true)
        }
        _ => {
            let (mut max, mut count) = (0f64, 0f64);
            for pair in t.pairs::<Value, Value>() {
                match as_f64(&pair?.0) {
                    Some(k) if k >= 1.0 && k.floor() == k => {
                        max = max.max(k);
                        count += 1.0;
                    }
                    _ => return Ok(false),
                }
            }
            Ok(count == max)
        }
    }
}

/// Kong's deep_copy(orig, copy_mt): keys and values copied, metatables too unless copy_mt=false.
pub fn deep_copy(lua: &Lua, orig: &Value, copy_mt: bool, depth: usize) -> mlua::Result<Value> {
    let Value::Table(t) = orig else {
        return Ok(orig.clone());
    };
    if depth > MAX_DEPTH {
        return Err(raise_here("stack overflow"));
    }
    crate::plugins::lua::sandbox::guard()?;
    let copy = lua.create_table()?;
    for pair in t.pairs::<Value, Value>() {
        let (k, v) = pair?;
        copy.raw_set(
            deep_copy(lua, &k, true, depth + 1)?,
            deep_copy(lua, &v, copy_mt, depth + 1)?,
        )?;
    }
    if copy_mt {
        if let Some(mt) = t.metatable() {
            if let Value::Table(mt) = deep_copy(lua, &Value::Table(mt), true, depth + 1)? {
                copy.set_metatable(Some(mt))?;
            }
        }
    }
    Ok(Value::Table(copy))
}

fn shallow_copy(lua: &Lua, orig: &Value) -> mlua::Result<Value> {
    let Value::Table(t) = orig else {
        return Ok(orig.clone());
    };
    let copy = lua.create_table()?;
    for pair in t.pairs::<Value, Value>() {
        let (k, v) = pair?;
        copy.raw_set(k, v)?;
    }
    Ok(Value::Table(copy))
}

fn deep_merge(lua: &Lua, t1: &Value, t2: &Value, depth: usize) -> mlua::Result<Value> {
    if depth > MAX_DEPTH {
        return Err(raise_here("stack overflow"));
    }
    crate::plugins::lua::sandbox::guard()?;
    let res = deep_copy(lua, t1, true, 0)?;
    let Value::Table(res_t) = &res else {
        return Err(type_error(1, "deep_merge", "table", t1));
    };
    let t2 = check_table(t2, 2, "deep_merge")?;
    for pair in t2.pairs::<Value, Value>() {
        let (k, v) = pair?;
        let old: Value = res_t.raw_get(&k)?;
        let new = if matches!((&v, &old), (Value::Table(_), Value::Table(_))) {
            deep_merge(lua, &old, &v, depth + 1)?
        } else {
            deep_copy(lua, &v, true, 0)?
        };
        res_t.raw_set(k, new)?;
    }
    Ok(res)
}

struct CycleCopy<'a> {
    lua: &'a Lua,
    remove_mt: bool,
    deep_keys: bool,
    cache: Table,
}

impl CycleCopy<'_> {
    fn copy(&self, orig: &Value) -> mlua::Result<Value> {
        let Value::Table(t) = orig else {
            return Ok(orig.clone());
        };
        crate::plugins::lua::sandbox::guard()?;
        let cached: Value = self.cache.raw_get(t)?;
        if !cached.is_nil() {
            return Ok(cached);
        }
        let copy = shallow_copy(self.lua, orig)?;
        let Value::Table(c) = &copy else {
            return Ok(copy);
        };
        self.cache.raw_set(t, c)?;
        for pair in t.pairs::<Value, Value>() {
            let (k, v) = pair?;
            if let Value::Table(_) = v {
                c.raw_set(&k, self.copy(&v)?)?;
            }
            if self.deep_keys && matches!(k, Value::Table(_)) {
                let new_k = self.copy(&k)?;
                c.raw_set(&new_k, c.raw_get::<Value>(&k)?)?;
                c.raw_set(k, Value::Nil)?;
            }
        }
        if !self.remove_mt {
            if let Some(mt) = t.metatable() {
                c.set_metatable(Some(mt))?;
            }
        }
        Ok(copy)
    }

    fn merge(&self, t1: &Value, t2: &Value) -> mlua::Result<Value> {
        crate::plugins::lua::sandbox::guard()?;
        let merged = self.copy(t1)?;
        let Value::Table(m) = &merged else {
            return Err(type_error(1, "cycle_aware_deep_merge", "table", t1));
        };
        let t2 = check_table(t2, 2, "cycle_aware_deep_merge")?;
        for pair in t2.pairs::<Value, Value>() {
            let (k, v) = pair?;
            let new = match (&v, m.raw_get::<Value>(&k)?) {
                (Value::Table(_), old @ Value::Table(_)) => self.merge(&old, &v)?,
                (Value::Table(_), _) => self.copy(&v)?,
                _ => v,
            };
            m.raw_set(k, new)?;
        }
        Ok(merged)
    }
}

fn cycle_copier<'a>(
    lua: &'a Lua,
    remove_mt: bool,
    deep_keys: bool,
    cache: Option<Table>,
) -> mlua::Result<CycleCopy<'a>> {
    let cache = match cache {
        Some(c) => c,
        None => lua.create_table()?,
    };
    Ok(CycleCopy {
        lua,
        remove_mt,
        deep_keys,
        cache,
    })
}

fn add_error(lua: &Lua, (errors, k, v): (Value, Value, Value)) -> mlua::Result<Table> {
    let errors = match errors {
        Value::Table(t) => t,
        _ => lua.create_table()?,
    };
    let mt = match lua.named_registry_value::<Option<Table>>(ERR_LIST_MT_KEY)? {
        Some(mt) => mt,
        None => {
            let mt = lua.create_table()?;
            lua.set_named_registry_value(ERR_LIST_MT_KEY, &mt)?;
            mt
        }
    };
    let old: Value = errors.get(&k)?;
    if old.is_nil() {
        errors.set(k, v)?;
        return Ok(errors);
    }
    let list = match &old {
        Value::Table(t)
            if t.metatable()
                .is_some_and(|m| m.equals(&mt).unwrap_or(false)) =>
        {
            t.clone()
        }
        _ => {
            let list = lua.create_sequence_from([old])?;
            list.set_metatable(Some(mt))?;
            errors.set(k, &list)?;
            list
        }
    };
    list.raw_set(list.raw_len() + 1, v)?;
    Ok(errors)
}

fn readonly_empty(lua: &Lua) -> mlua::Result<Table> {
    let t = lua.create_table()?;
    let mt = lua.create_table()?;
    set_fn(
        lua,
        &mt,
        "__newindex",
        |_, _: MultiValue| -> mlua::Result<()> {
            Err(raise_here("Attempt to modify read-only table"))
        },
    )?;
    t.set_metatable(Some(mt))?;
    Ok(t)
}

/// `require "kong.tools.table"`.
pub fn tools_table(lua: &Lua) -> mlua::Result<Table> {
    let m = lua.create_table()?;
    m.raw_set("EMPTY", readonly_empty(lua)?)?;
    set_fn(lua, &m, "pack", |lua, args: Variadic<Value>| {
        let t = lua.create_table()?;
        for (i, v) in args.iter().enumerate() {
            t.raw_set(i + 1, v.clone())?;
        }
        t.raw_set("n", args.len())?;
        Ok(t)
    })?;
    set_fn(
        lua,
        &m,
        "unpack",
        |_, (t, i, j): (Value, Option<f64>, Option<f64>)| {
            let t = check_table(&t, 1, "unpack")?;
            let n = match j {
                Some(j) => j,
                None => as_f64(&t.raw_get::<Value>("n")?).unwrap_or(t.raw_len() as f64),
            } as i64;
            let from = i.unwrap_or(1.0) as i64;
            // LuaJIT's own limit for unpack's results.
            if n.saturating_sub(from) >= 8000 {
                return Err(raise("too many results to unpack"));
            }
            let mut out = Vec::new();
            for k in from..=n {
                out.push(t.raw_get::<Value>(k)?);
            }
            Ok(MultiValue::from_vec(out))
        },
    )?;
    set_fn(lua, &m, "table_merge", table_merge)?;
    set_fn(lua, &m, "null_aware_table_merge", null_aware_table_merge)?;
    set_fn(lua, &m, "table_contains", table_contains)?;
    set_fn(lua, &m, "is_array", is_array)?;
    set_fn(lua, &m, "is_lapis_array", |_, t: Value| match t {
        Value::Table(t) => is_lapis_array(&t),
        _ => Ok(false),
    })?;
    set_fn(
        lua,
        &m,
        "deep_copy",
        |lua, (orig, copy_mt): (Value, Option<bool>)| {
            deep_copy(lua, &orig, copy_mt.unwrap_or(true), 0)
        },
    )?;
    set_fn(lua, &m, "shallow_copy", |lua, orig: Value| {
        shallow_copy(lua, &orig)
    })?;
    set_fn(lua, &m, "deep_merge", |lua, (t1, t2): (Value, Value)| {
        deep_merge(lua, &t1, &t2, 0)
    })?;
    set_fn(
        lua,
        &m,
        "cycle_aware_deep_copy",
        |lua, (orig, rm, dk, cache): (Value, Option<bool>, Option<bool>, Option<Table>)| {
            cycle_copier(lua, rm.unwrap_or(false), dk.unwrap_or(false), cache)?.copy(&orig)
        },
    )?;
    set_fn(
        lua,
        &m,
        "cycle_aware_deep_merge",
        |lua, (t1, t2, rm, dk, cache): (Value, Value, Option<bool>, Option<bool>, Option<Table>)| {
            cycle_copier(lua, rm.unwrap_or(false), dk.unwrap_or(false), cache)?.merge(&t1, &t2)
        },
    )?;
    set_fn(lua, &m, "concat", |lua, lists: Variadic<Value>| {
        let res = lua.create_table()?;
        for (i, l) in lists.iter().enumerate() {
            let l = check_table(l, i + 1, "concat")?;
            for v in l.sequence_values::<Value>() {
                res.raw_set(res.raw_len() + 1, v?)?;
            }
        }
        Ok(res)
    })?;
    set_fn(lua, &m, "add_error", add_error)?;
    set_fn(lua, &m, "table_path", |_, (t, path): (Value, Table)| {
        let mut cur = t;
        for key in path.sequence_values::<Value>() {
            let Value::Table(tbl) = &cur else {
                return Err(raise_here(format!(
                    "attempt to index a {} value",
                    super::support::type_name(&cur)
                )));
            };
            let next: Value = tbl.get(key?)?;
            if next.is_nil() {
                return Ok(Value::Nil);
            }
            cur = next;
        }
        Ok(cur)
    })?;
    Ok(m)
}

/// `require "kong.tools.utils"`: kong.tools.table, uuid, rand and string merged, as in Kong 3.10.
pub fn tools_utils(lua: &Lua) -> mlua::Result<Table> {
    let m = lua.create_table()?;
    for part in [
        tools_table(lua)?,
        kong::tools_uuid(lua)?,
        kong_strings::tools_rand(lua)?,
        kong_strings::tools_string(lua)?,
    ] {
        for pair in part.pairs::<Value, Value>() {
            let (k, v) = pair?;
            m.raw_set(k, v)?;
        }
    }
    Ok(m)
}
