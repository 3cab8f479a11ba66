//! Kong's request-independent PDK parts (`kong.table`, `kong.node`, versions) and the small
//! modules plugins `require`: `kong.meta`, `kong.tools.uuid`, `resty.string`.

use mlua::{Lua, Table, Value};

use super::encode::to_hex;
use super::kong_tools;
use super::support::{check_bytes, check_table, set_fn, type_error};

/// Kong version reported to plugins.
pub const VERSION: (i64, i64, i64) = (3, 10, 0);

/// "3.10.0".
pub fn version_string() -> String {
    format!("{}.{}.{}", VERSION.0, VERSION.1, VERSION.2)
}

/// The machine's host name (what Kong's kong.node.get_hostname returns via gethostname()).
pub fn hostname() -> String {
    ["/proc/sys/kernel/hostname", "/etc/hostname"]
        .iter()
        .filter_map(|p| std::fs::read_to_string(p).ok())
        .map(|s| s.trim().to_string())
        .find(|s| !s.is_empty())
        .unwrap_or_else(|| "localhost".to_string())
}

/// `kong.table`: new(narr, nrec), clear(t), merge(t1, t2).
fn kong_table(lua: &Lua) -> mlua::Result<Table> {
    let t = lua.create_table()?;
    set_fn(
        lua,
        &t,
        "new",
        |lua, (narr, nrec): (Option<f64>, Option<f64>)| {
            let n = |v: Option<f64>| v.unwrap_or(0.0).max(0.0) as usize;
            lua.create_table_with_capacity(n(narr), n(nrec))
        },
    )?;
    set_fn(lua, &t, "clear", |_, v: Value| {
        let t = check_table(&v, 1, "clear")?;
        t.clear()
    })?;
    set_fn(lua, &t, "merge", kong_tools::table_merge)?;
    Ok(t)
}

/// `kong.node`: get_id(), get_hostname().
fn kong_node(lua: &Lua, node_id: &str) -> mlua::Result<Table> {
    let t = lua.create_table()?;
    let id = node_id.to_string();
    set_fn(lua, &t, "get_id", move |_, ()| Ok(id.clone()))?;
    set_fn(lua, &t, "get_hostname", |_, ()| Ok(hostname()))?;
    Ok(t)
}

/// See [`super::kong_base`].
pub fn base(lua: &Lua, node_id: &str) -> mlua::Result<Table> {
    let k = lua.create_table()?;
    k.raw_set("table", kong_table(lua)?)?;
    k.raw_set("node", kong_node(lua, node_id)?)?;
    k.raw_set("version", version_string())?;
    k.raw_set(
        "version_num",
        VERSION.0 * 1_000_000 + VERSION.1 * 1000 + VERSION.2,
    )?;
    Ok(k)
}

/// `require "kong.meta"`.
pub fn meta(lua: &Lua) -> mlua::Result<Table> {
    let v = version_string();
    let vt = lua.create_table()?;
    vt.raw_set("major", VERSION.0)?;
    vt.raw_set("minor", VERSION.1)?;
    vt.raw_set("patch", VERSION.2)?;
    let mt = lua.create_table()?;
    let shown = v.clone();
    set_fn(lua, &mt, "__tostring", move |_, _: Value| Ok(shown.clone()))?;
    vt.set_metatable(Some(mt))?;
    let m = lua.create_table()?;
    m.raw_set("_NAME", "kong")?;
    m.raw_set("_VERSION", v.as_str())?;
    m.raw_set("_VERSION_TABLE", vt)?;
    m.raw_set("_SERVER_TOKENS", format!("kong/{v}"))?;
    m.raw_set("version", v.as_str())?;
    let deps = lua.create_table()?;
    deps.raw_set("nginx", lua.create_sequence_from(["1.27.1.2"])?)?;
    m.raw_set("_DEPENDENCIES", deps)?;
    Ok(m)
}

/// True for a 36-character 8-4-4-4-12 hex string (kong.tools.uuid.is_valid_uuid).
pub fn is_valid_uuid(s: &[u8]) -> bool {
    s.len() == 36
        && s.iter().enumerate().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => *c == b'-',
            _ => c.is_ascii_hexdigit(),
        })
}

/// `require "kong.tools.uuid"`.
pub fn tools_uuid(lua: &Lua) -> mlua::Result<Table> {
    let m = lua.create_table()?;
    set_fn(
        lua,
        &m,
        "uuid",
        |_, ()| Ok(uuid::Uuid::new_v4().to_string()),
    )?;
    set_fn(lua, &m, "is_valid_uuid", |_, v: Value| {
        Ok(matches!(v, Value::String(s) if is_valid_uuid(&s.as_bytes())))
    })?;
    Ok(m)
}

/// C's atoi(): leading blanks, a sign, digits; 0 when there are none.
fn atoi(s: &[u8]) -> i64 {
    let mut i = s.iter().take_while(|c| c.is_ascii_whitespace()).count();
    let neg = match s.get(i) {
        Some(b'-') => {
            i += 1;
            true
        }
        Some(b'+') => {
            i += 1;
            false
        }
        _ => false,
    };
    let mut v: i64 = 0;
    while let Some(d) = s.get(i).filter(|c| c.is_ascii_digit()) {
        v = v.wrapping_mul(10).wrapping_add((d - b'0') as i64);
        i += 1;
    }
    let v = v as i32 as i64;
    if neg {
        -v
    } else {
        v
    }
}

/// `require "resty.string"`: to_hex(s), atoi(s).
pub fn resty_string(lua: &Lua) -> mlua::Result<Table> {
    let m = lua.create_table()?;
    m.raw_set("_VERSION", "0.16")?;
    set_fn(lua, &m, "to_hex", |_, v: Value| {
        Ok(to_hex(&check_bytes(&v, 1, "to_hex")?))
    })?;
    set_fn(lua, &m, "atoi", |_, v: Value| match &v {
        Value::String(s) => Ok(atoi(&s.as_bytes())),
        Value::Integer(_) | Value::Number(_) => Ok(atoi(&check_bytes(&v, 1, "atoi")?)),
        other => Err(type_error(1, "atoi", "string", other)),
    })?;
    Ok(m)
}
