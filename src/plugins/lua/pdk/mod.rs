//! Kong's PDK (`kong.*`) and the request-bound parts of OpenResty's `ngx.*`, as Rust functions
//! registered once per VM. During a phase call the proxy's per-request data is reachable
//! through [`with_current`]; outside a call the functions raise an error.

mod client;
mod current;
mod entity_table;
mod fast;
mod header_table;
mod names;
mod ngx;
mod request;
mod response;
mod service;
mod tables;

use mlua::{Function, Lua, Table, Value};

use current::cur;
pub use current::{enter_member, with_current};
use header_table::headers_table;
use tables::request_index;
pub use tables::{RequestTables, REQUESTS};

/// The request whose phase call may wait for I/O now: rewrite, access and response calls run
/// as coroutines (see `runtime`); None in other phases and outside calls.
pub(crate) fn waitable_request() -> Option<u64> {
    cur(|c, _, _| {
        let waitable = matches!(
            c.phase,
            crate::plugins::Phase::Rewrite
                | crate::plugins::Phase::Access
                | crate::plugins::Phase::Response
        );
        // wait.lua keeps its light threads' state under this id.
        c.state.lua_keyed |= waitable;
        Ok(waitable.then_some(c.state.id))
    })
    .ok()
    .flatten()
}

/// Runs `f` on the state of the request a PDK function is called for (the io module's
/// functions); an error outside a phase call.
pub(crate) fn with_state<R>(
    f: impl FnOnce(&mut crate::plugins::RequestState) -> mlua::Result<R>,
) -> mlua::Result<R> {
    cur(|c, _, _| f(c.state))
}

thread_local! {
    /// A handler's `init_worker` is running on this thread (for `ngx.get_phase`).
    static IN_INIT_WORKER: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Runs `f` as Kong's `init_worker` phase (what `ngx.get_phase()` answers).
pub fn as_init_worker<R>(f: impl FnOnce() -> R) -> R {
    struct Reset(bool);
    impl Drop for Reset {
        fn drop(&mut self) {
            IN_INIT_WORKER.with(|b| b.set(self.0));
        }
    }
    let _reset = Reset(IN_INIT_WORKER.with(|b| b.replace(true)));
    f()
}

/// `ngx.get_phase()`: the phase of the call in progress; `init_worker` while a handler's
/// init_worker runs, `init` while plugin code loads.
pub(crate) fn phase_name() -> &'static str {
    match current::phase() {
        // Kong runs `response` inside nginx's access phase.
        Some(crate::plugins::Phase::Response) => "access",
        Some(phase) => phase.as_str(),
        None if IN_INIT_WORKER.with(|b| b.get()) => "init_worker",
        None => "init",
    }
}

/// Registers a Rust function under `name` in `t`; its errors reach Lua as plain strings, as
/// the errors of Kong's PDK (written in Lua) do.
fn set_fn<A, R, F>(lua: &Lua, t: &Table, name: &str, f: F) -> mlua::Result<()>
where
    A: mlua::FromLuaMulti,
    R: mlua::IntoLuaMulti,
    F: Fn(&Lua, A) -> mlua::Result<R> + mlua::MaybeSend + 'static,
{
    t.set(name, crate::plugins::lua::util::support::function(lua, f)?)
}

/// Lower-cases a header name and treats `_` as `-`, as Kong's getters do (without allocating
/// when the name is already in that form). ASCII whitespace around it is dropped: a header
/// name is ASCII, and `str::trim`'s Unicode scan cost more than the rest of this function.
fn header_key(name: &str) -> std::borrow::Cow<'_, str> {
    let name = name.trim_ascii();
    if name.bytes().any(|b| b.is_ascii_uppercase() || b == b'_') {
        std::borrow::Cow::Owned(name.to_ascii_lowercase().replace('_', "-"))
    } else {
        std::borrow::Cow::Borrowed(name)
    }
}

/// Adds `v` under `key` as Kong's getters shape repeated names: the first value alone, then an
/// array of all of them.
fn push_value(lua: &Lua, t: &Table, key: &str, v: Value) -> mlua::Result<()> {
    match t.raw_get::<Value>(key)? {
        Value::Nil => t.raw_set(key, v),
        Value::Table(list) => list.raw_push(v),
        first => {
            let list = lua.create_table()?;
            list.raw_push(first)?;
            list.raw_push(v)?;
            t.raw_set(key, list)
        }
    }
}

/// How many headers or query arguments a getter returns when not told (nginx's default,
/// which Kong keeps); `Some(0)` means all of them.
pub(super) fn max_entries(max: Option<usize>) -> usize {
    match max {
        None => 100,
        Some(0) => usize::MAX,
        Some(m) => m,
    }
}

/// Converts a Lua value given as a header value to text (strings, numbers, booleans).
fn header_value(v: &Value) -> mlua::Result<String> {
    match v {
        Value::String(s) => Ok(s.to_str()?.to_string()),
        Value::Integer(i) => Ok(i.to_string()),
        Value::Number(n) => Ok(n.to_string()),
        Value::Boolean(b) => Ok(b.to_string()),
        other => Err(mlua::Error::runtime(format!(
            "invalid header value: string, number or boolean expected, got {}",
            other.type_name()
        ))),
    }
}

/// A header value argument, converted by [`header_value`]. A string is read in place on the
/// Lua stack: as a `Value` it would first be moved to mlua's reference thread and back.
struct HeaderText(String);

impl mlua::FromLua for HeaderText {
    fn from_lua(value: Value, _: &Lua) -> mlua::Result<Self> {
        header_value(&value).map(HeaderText)
    }

    unsafe fn from_stack(idx: std::ffi::c_int, lua: &mlua::state::RawLua) -> mlua::Result<Self> {
        // SAFETY: mlua passes a valid index of the callback's stack.
        unsafe {
            if let Some(text) = utf8_on_stack(lua, idx) {
                return Ok(HeaderText(text.to_owned()));
            }
            header_value(&<Value as mlua::FromLua>::from_stack(idx, lua)?).map(HeaderText)
        }
    }
}

/// The UTF-8 text of the string at `idx` on the Lua stack, read in place (None for another
/// type, or bytes that are not UTF-8: the callers then take mlua's generic path).
///
/// # Safety
/// `idx` is a valid index of `lua`'s current stack, and the text is used (copied) before
/// anything else runs on that state.
unsafe fn utf8_on_stack(lua: &mlua::state::RawLua, idx: std::ffi::c_int) -> Option<&str> {
    let state = lua.state();
    // SAFETY: the caller's contract; a string's bytes stay put while it is on the stack.
    unsafe {
        if mlua::ffi::lua_type(state, idx) != mlua::ffi::LUA_TSTRING {
            return None;
        }
        let mut len = 0;
        let data = mlua::ffi::lua_tolstring(state, idx, &mut len);
        std::str::from_utf8(std::slice::from_raw_parts(data.cast::<u8>(), len)).ok()
    }
}

/// A header name argument, normalised by [`header_key`] as it is read in place on the Lua
/// stack: one string is made, where a `String` argument and its normalised copy made two.
struct HeaderKey(String);

impl HeaderKey {
    fn from_text(name: &str) -> HeaderKey {
        HeaderKey(header_key(name).into_owned())
    }
}

impl mlua::FromLua for HeaderKey {
    fn from_lua(value: Value, lua: &Lua) -> mlua::Result<Self> {
        String::from_lua(value, lua).map(|name| HeaderKey::from_text(&name))
    }

    unsafe fn from_stack(idx: std::ffi::c_int, lua: &mlua::state::RawLua) -> mlua::Result<Self> {
        // SAFETY: mlua passes a valid index of the callback's stack.
        unsafe { text_from_stack(idx, lua, HeaderKey::from_text) }
    }
}

/// `make` of a text argument, read in place when it is a UTF-8 string, else converted by
/// mlua's `String` rules (numbers become text; other types are its error).
///
/// # Safety
/// As [`utf8_on_stack`].
unsafe fn text_from_stack<T>(
    idx: std::ffi::c_int,
    lua: &mlua::state::RawLua,
    make: impl Fn(&str) -> T,
) -> mlua::Result<T> {
    // SAFETY: the caller's contract.
    unsafe {
        if let Some(text) = utf8_on_stack(lua, idx) {
            return Ok(make(text));
        }
        <String as mlua::FromLua>::from_stack(idx, lua).map(|text| make(&text))
    }
}

/// Helpers for surface.lua that no plugin sees.
fn internal(lua: &Lua) -> mlua::Result<Table> {
    let t = lua.create_table()?;
    t.raw_set("fast", fast::install(lua)?)?;
    set_fn(lua, &t, "pending_header", |_, name: String| {
        cur(|c, _, _| Ok(response::pending_header(c, &name)))
    })?;
    set_fn(lua, &t, "plugin_name", |_, ()| {
        Ok(cur(|_, inst, _| Ok(inst.name.clone())).unwrap_or_default())
    })?;
    // Source, line and function name of the Lua function `level` frames up (1: the caller).
    t.set(
        "where",
        crate::plugins::lua::util::support::raw_function(lua, |lua, level: usize| {
            Ok(lua
                .inspect_stack(level, |d| {
                    let src = d.source().short_src.map(|s| s.into_owned());
                    let line = d.current_line();
                    let name = d.names().name.map(|s| s.into_owned());
                    (src, line, name)
                })
                .unwrap_or((None, None, None)))
        })?,
    )?;
    set_fn(
        lua,
        &t,
        "add_serialize_value",
        |_, (path, value, mode): (Vec<String>, Value, String)| {
            let json = super::util::lua_to_json(&value).map_err(mlua::Error::runtime)?;
            cur(|c, _, _| {
                c.state
                    .serialize_values
                    .push(crate::plugins::SerializeValue {
                        path,
                        value: json,
                        mode: match mode.as_str() {
                            "add" => crate::plugins::SerializeMode::Add,
                            "replace" => crate::plugins::SerializeMode::Replace,
                            _ => crate::plugins::SerializeMode::Set,
                        },
                    });
                Ok(())
            })
        },
    )?;
    // Kong's name of the phase in progress (`ngx.get_phase` answers nginx's).
    set_fn(lua, &t, "kong_phase", |_, ()| {
        Ok(cur(|c, _, _| Ok(c.phase.as_str())).unwrap_or("init"))
    })?;
    set_fn(lua, &t, "request_id", |_, ()| {
        cur(|c, _, _| Ok(c.state.request_id()))
    })?;
    set_fn(
        lua,
        &t,
        "decode_args",
        |lua, (body, max): (mlua::LuaString, Option<usize>)| {
            let text = String::from_utf8_lossy(&body.as_bytes()).into_owned();
            request::query_table(lua, &text, max).map(|(t, _)| t)
        },
    )?;
    set_fn(
        lua,
        &t,
        "multipart_fields",
        |lua, (body, ctype): (mlua::LuaString, String)| {
            let Some(fields) = crate::plugins::native::multipart::fields(&body.as_bytes(), &ctype)
            else {
                return Ok(Value::Nil);
            };
            let out = lua.create_table()?;
            let mut room = super::sandbox::Room::new(lua);
            for (name, value) in fields {
                room.take(name.len() + value.len())?;
                let v = Value::String(lua.create_string(&value)?);
                push_value(lua, &out, &name, v)?;
            }
            Ok(Value::Table(out))
        },
    )?;
    Ok(t)
}

fn install_plugin_ngx(lua: &Lua, internal: &Table, views: Table) -> mlua::Result<()> {
    set_fn(lua, internal, "plugin_ngx", move |_, ()| {
        match cur(|_, inst, _| Ok(inst.plugin.key.clone())) {
            Ok(key) => views.raw_get::<Value>(key),
            Err(_) => Ok(Value::Nil),
        }
    })
}

/// Which modules `require` hands out: `Only` these, or all `But` these.
enum Requires {
    Only(Vec<String>),
    But(Vec<String>),
}

static REQUIRES: std::sync::OnceLock<Requires> = std::sync::OnceLock::new();

/// Names every module plugins may `require` here (all VMs provide the same ones).
pub fn provided_modules() -> Vec<String> {
    static NAMES: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();
    NAMES
        .get_or_init(|| {
            let Ok(lua) = super::sandbox::new_vm() else {
                return Vec::new();
            };
            let Ok(ngx) = super::util::ngx_base(&lua) else {
                return Vec::new();
            };
            let mut names: Vec<String> = super::util::modules(&lua, &ngx)
                .map(|all| all.into_iter().map(|(n, _)| n.to_string()).collect())
                .unwrap_or_default();
            names.extend(super::io::MODULE_NAMES.iter().map(|n| n.to_string()));
            names
        })
        .clone()
}

/// Modules of plain data every plugin may require (a fresh copy each time).
const DATA_MODULES: &[&str] = &["kong.db.schema.typedefs", "kong.tools.redis.schema"];

/// Sets the operator's `require` list (once, at startup): comma-separated names restrict it to
/// those; `-name` entries remove modules from the full list. Unknown names are an error.
pub fn set_requires(spec: &str) -> Result<(), String> {
    let provided = provided_modules();
    let mut only = Vec::new();
    let mut but = Vec::new();
    for entry in spec.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        let (list, name) = match entry.strip_prefix('-') {
            Some(name) => (&mut but, name),
            None => (&mut only, entry),
        };
        if !DATA_MODULES.contains(&name) && !provided.iter().any(|p| p == name) {
            return Err(format!(
                "module {name:?} is not provided by this gateway (it provides {})",
                provided.join(", ")
            ));
        }
        list.push(name.to_string());
    }
    if !only.is_empty() && !but.is_empty() {
        return Err(
            "give either the modules to allow or `-name` entries to remove, not both".into(),
        );
    }
    let _ = REQUIRES.set(if only.is_empty() {
        Requires::But(but)
    } else {
        Requires::Only(only)
    });
    Ok(())
}

fn required_allowed(name: &str) -> bool {
    match REQUIRES.get() {
        None => true,
        Some(Requires::Only(list)) => list.iter().any(|n| n == name),
        Some(Requires::But(list)) => !list.iter().any(|n| n == name),
    }
}

fn set_fn_value<A, R, F>(lua: &Lua, f: F) -> mlua::Result<Function>
where
    A: mlua::FromLuaMulti,
    R: mlua::IntoLuaMulti,
    F: Fn(&Lua, A) -> mlua::Result<R> + mlua::MaybeSend + 'static,
{
    crate::plugins::lua::util::support::function(lua, f)
}

/// Installs the PDK in `lua` and returns the globals every plugin environment gets:
/// `kong`, `ngx` and `require`.
pub fn install(lua: &Lua) -> mlua::Result<Vec<(&'static str, Value)>> {
    let node_id = uuid::Uuid::new_v4().to_string();
    lua.set_named_registry_value(REQUESTS, lua.create_table()?)?;
    let kong = super::util::kong_base(lua, &node_id)?;
    kong.set("request", request::table(lua)?)?;
    kong.set("response", response::table(lua)?)?;
    let svc = service::table(lua)?;
    svc.set("response", response::service_response(lua)?)?;
    kong.set("service", svc)?;
    client::install(lua, &kong)?;
    let ngx = super::util::ngx_base(lua)?;
    ngx::install(lua, &ngx)?;
    set_fn(lua, &ngx, "get_phase", |_, ()| Ok(phase_name()))?;
    let waiting_modules = super::io::install(lua, &kong, &ngx)?;
    let mut all_modules = super::util::modules(lua, &ngx)?;
    all_modules.extend(waiting_modules);
    let cjson = all_modules
        .iter()
        .find(|(n, _)| *n == "cjson")
        .map(|(_, m)| m.clone());
    // The Lua layer: Kong's argument checks and Lua-level logic over the Rust functions.
    let chunk = |source: &str, name: &str| {
        lua.load(source)
            .set_name(name)
            .set_mode(mlua::chunk::ChunkMode::Text)
            .into_function()
    };
    let checks: Table = chunk(include_str!("checks.lua"), "=kong.pdk.checks")?.call(())?;
    let internal = internal(lua)?;
    let plugin_ngx = lua.create_table()?;
    lua.set_named_registry_value(super::sandbox::PLUGIN_NGX, plugin_ngx.clone())?;
    // The calling plugin's own view of ngx (see sandbox/overlay.lua), nil outside a call.
    install_plugin_ngx(lua, &internal, plugin_ngx)?;
    chunk(include_str!("surface.lua"), "=kong.pdk")?.call::<()>((
        kong.clone(),
        ngx.clone(),
        cjson.clone(),
        super::util::cjson_with_array_mt(lua)?,
        internal.clone(),
        checks.clone(),
    ))?;
    chunk(include_str!("response.lua"), "=kong.pdk.response")?.call::<()>((
        kong.clone(),
        cjson,
        internal.clone(),
        checks,
    ))?;
    let vault = lua.create_table()?;
    let cjson_safe = all_modules
        .iter()
        .find(|(n, _)| *n == "cjson.safe")
        .map(|(_, m)| m.clone());
    let env = set_fn_value(lua, |_, name: String| {
        Ok(crate::config::vault::env(&name).map(str::to_owned))
    })?;
    chunk(include_str!("vault.lua"), "=kong.vault")?.call::<()>((
        vault.clone(),
        ngx.clone(),
        cjson_safe,
        env,
        crate::config::vault::base_prefix(),
    ))?;
    kong.set("vault", vault)?;
    chunk(include_str!("log.lua"), "=kong.pdk.log")?.call::<()>((
        kong.clone(),
        ngx.clone(),
        internal,
    ))?;

    // One read-only view of each shared table per VM (plugins cannot change what others see).
    let freezer = super::sandbox::Freezer::new(lua)?;
    let kong = freezer.freeze(kong, "kong")?;
    let ngx = freezer.freeze(ngx, "ngx")?;
    lua.set_named_registry_value(super::sandbox::NGX_OVERLAY, freezer.overlay_maker())?;
    let modules = lua.create_table()?;
    for (name, module) in all_modules {
        modules.set(name, freezer.freeze(module, name)?)?;
    }
    // Data modules: a fresh copy for each `require`.
    let copies = lua.create_table()?;
    let typedefs: Table = lua
        .load(super::schema::TYPEDEFS_LUA)
        .set_name("@kong/db/schema/typedefs.lua")
        .set_mode(mlua::chunk::ChunkMode::Text)
        .call(())?;
    let redis_schema: Table = lua
        .load(super::schema::REDIS_SCHEMA_LUA)
        .set_name("@kong/tools/redis/schema.lua")
        .set_mode(mlua::chunk::ChunkMode::Text)
        .call(typedefs.clone())?;
    copies.set("kong.db.schema.typedefs", freezer.copier(lua, typedefs)?)?;
    copies.set(
        "kong.tools.redis.schema",
        freezer.copier(lua, redis_schema)?,
    )?;
    // The operator's narrowing of the list (--lua-sandbox-requires).
    let names: Vec<String> = modules
        .pairs::<String, Value>()
        .filter_map(|p| p.ok().map(|(k, _)| k))
        .collect();
    for name in names {
        if !required_allowed(&name) {
            modules.raw_set(name, Value::Nil)?;
        }
    }
    let mut allowed: Vec<String> = modules
        .pairs::<String, Value>()
        .filter_map(|p| p.ok().map(|(k, _)| k))
        .chain(DATA_MODULES.iter().map(|m| m.to_string()))
        .collect();
    allowed.sort();
    let allowed = allowed.join(", ");
    let require: Function =
        crate::plugins::lua::util::support::function(lua, move |_, name: String| {
            if let Value::Function(copy) = copies.raw_get::<Value>(name.as_str())? {
                return copy.call::<Value>(());
            }
            match modules.raw_get::<Value>(name.as_str())? {
                Value::Nil => Err(mlua::Error::runtime(format!(
                    "module '{name}' not found: plugins may only require {allowed}"
                ))),
                v => Ok(v),
            }
        })?;
    Ok(vec![
        ("kong", Value::Table(kong)),
        ("ngx", Value::Table(ngx)),
        ("require", Value::Function(require)),
    ])
}
