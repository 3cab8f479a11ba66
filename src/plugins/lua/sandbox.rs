//! The LuaJIT VM plugins run in: Kong's sandbox allow-list, text chunks only, a memory limit
//! per VM and a CPU budget per phase call.
//!
//! CPU budget: LuaJIT runs no instruction-count hooks inside compiled traces, so a tight
//! `while true do end` would never be interrupted once compiled. The VM therefore runs with the
//! JIT compiler off (`jit.off()`): plugin code is interpreted (LuaJIT's interpreter is still
//! fast; the hot paths of a request are Rust), and a count hook checks the call's deadline every
//! 1000 instructions. Time spent inside one C function (a huge `string.rep`) is bounded by the
//! memory limit instead.

use std::cell::Cell;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use mlua::{HookTriggers, Lua, LuaOptions, StdLib, Table, Value, VmState};

/// Resource limits of plugin code, process-wide.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Wall time one phase call of one plugin may take.
    pub cpu_budget: Duration,
    /// Memory one worker's VM may allocate.
    pub memory: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            cpu_budget: Duration::from_millis(100),
            memory: 256 << 20,
        }
    }
}

static LIMITS: OnceLock<Limits> = OnceLock::new();

/// Sets the process-wide limits (once, at startup; later calls are ignored).
pub fn set_limits(limits: Limits) {
    let _ = LIMITS.set(limits);
}

/// The limits in force.
pub fn limits() -> Limits {
    LIMITS.get().copied().unwrap_or_default()
}

thread_local! {
    /// Deadline of the phase call running on this thread, if any.
    static DEADLINE: Cell<Option<Instant>> = const { Cell::new(None) };
}

/// Runs `f` with the CPU budget armed for this thread.
pub fn with_budget<R>(f: impl FnOnce() -> R) -> R {
    let previous = DEADLINE.with(|d| d.replace(Some(Instant::now() + limits().cpu_budget)));
    let out = f();
    DEADLINE.with(|d| d.set(previous));
    out
}

/// Globals copied into every plugin environment (Kong's sandbox allow-list).
const GLOBALS: &[&str] = &[
    "_VERSION", "assert", "error", "ipairs", "next", "pairs", "pcall", "print", "select",
    "tonumber", "tostring", "type", "unpack", "xpcall",
];
/// Libraries copied (as filtered copies) into every plugin environment.
const LIBRARIES: &[(&str, &[&str])] = &[
    ("bit", &[]),
    ("coroutine", &[]),
    ("math", &[]),
    ("table", &[]),
    ("string", &["dump"]),
    ("os", &["clock", "date", "difftime", "time"]),
    ("io", &["type"]),
    ("jit", &["os", "arch", "version", "version_num"]),
];

/// Creates a VM with the standard libraries loaded, the dangerous parts removed from the shared
/// library tables (strings' metatable reaches the real `string` table), the JIT off, the memory
/// limit and the budget hook installed.
pub fn new_vm() -> mlua::Result<Lua> {
    // SAFETY-relevant: no `debug`, `ffi` or `package` library is loaded (mlua's safe mode).
    // (coroutine is part of LuaJIT's base library)
    let libs = StdLib::BIT
        | StdLib::MATH
        | StdLib::OS
        | StdLib::STRING
        | StdLib::TABLE
        | StdLib::IO
        | StdLib::JIT;
    let lua = Lua::new_with(libs, LuaOptions::default())?;
    lua.load("jit.off(); jit.flush()").exec()?;
    let globals = lua.globals();
    // `("x"):dump()` reaches the real string table through the string metatable.
    let string: Table = globals.get("string")?;
    string.set("dump", Value::Nil)?;
    lua.set_memory_limit(limits().memory)?;
    lua.set_hook(budget_triggers(), budget_hook)?;
    Ok(lua)
}

fn budget_triggers() -> HookTriggers {
    HookTriggers::new().every_nth_instruction(1000)
}

/// The instruction hook: fails the running call once its deadline has passed.
fn budget_hook(_lua: &Lua, _debug: &mlua::debug::Debug) -> mlua::Result<VmState> {
    let expired = DEADLINE.with(|d| d.get().is_some_and(|at| Instant::now() > at));
    if expired {
        Err(mlua::Error::runtime(format!(
            "CPU budget of {:?} exceeded",
            limits().cpu_budget
        )))
    } else {
        Ok(VmState::Continue)
    }
}

/// `coroutine.create`/`wrap` whose coroutines carry the budget hook too (hooks set on the main
/// thread do not reach coroutines that Lua code creates).
fn hooked_coroutines(lua: &Lua, coroutine: &Table) -> mlua::Result<()> {
    let create = lua.create_function(|lua, f: mlua::Function| {
        let thread = lua.create_thread(f)?;
        thread.set_hook(budget_triggers(), budget_hook)?;
        Ok(thread)
    })?;
    coroutine.set("create", create.clone())?;
    let wrap: mlua::Function = lua
        .load(
            "local create, resume, unpack = ... \n\
             return function(f) \n\
               local co = create(f) \n\
               return function(...) \n\
                 local r = { resume(co, ...) } \n\
                 if not r[1] then error(r[2], 0) end \n\
                 return unpack(r, 2, table.maxn(r)) \n\
               end \n\
             end",
        )
        .set_name("=coroutine.wrap")
        .call((
            create,
            coroutine.get::<mlua::Function>("resume")?,
            lua.globals().get::<mlua::Function>("unpack")?,
        ))?;
    coroutine.set("wrap", wrap)
}

/// A fresh environment for one plugin chunk: the allow-listed globals, copies of the allowed
/// library functions, `getmetatable` limited to tables, and the given extra globals
/// (`kong`, `ngx`, `require`).
pub fn plugin_env(lua: &Lua, extra: &[(&str, Value)]) -> mlua::Result<Table> {
    let globals = lua.globals();
    let env = lua.create_table()?;
    for name in GLOBALS {
        env.set(*name, globals.get::<Value>(*name)?)?;
    }
    for (lib, only) in LIBRARIES {
        let Ok(source) = globals.get::<Table>(*lib) else {
            continue;
        };
        let copy = lua.create_table()?;
        for pair in source.pairs::<Value, Value>() {
            let (k, v) = pair?;
            let name = k
                .as_string()
                .and_then(|s| s.to_str().ok().map(|s| s.to_string()));
            let keep = match (lib, &name) {
                (&"string", Some(n)) => !only.contains(&n.as_str()),
                (_, Some(n)) if !only.is_empty() => only.contains(&n.as_str()),
                _ => true,
            };
            if keep {
                copy.set(k, v)?;
            }
        }
        env.set(*lib, copy)?;
    }
    let coroutine: Table = env.get("coroutine")?;
    hooked_coroutines(lua, &coroutine)?;
    // table.new / table.clear as OpenResty has them (table.clone etc. come with LuaJIT 2.1).
    let table: Table = env.get("table")?;
    if table.get::<Value>("new")?.is_nil() {
        table.set(
            "new",
            lua.create_function(|lua, (narr, nrec): (Option<usize>, Option<usize>)| {
                lua.create_table_with_capacity(narr.unwrap_or(0), nrec.unwrap_or(0))
            })?,
        )?;
    }
    if table.get::<Value>("clear")?.is_nil() {
        table.set("clear", lua.create_function(|_, t: Table| t.clear())?)?;
    }
    // Only tables' metatables are visible (strings' would lead back to the real string table).
    let real_getmetatable: mlua::Function = globals.get("getmetatable")?;
    env.set(
        "getmetatable",
        lua.create_function(move |_, v: Value| match v {
            Value::Table(_) => real_getmetatable.call::<Value>(v),
            _ => Ok(Value::Nil),
        })?,
    )?;
    let setmetatable: mlua::Function = globals.get("setmetatable")?;
    env.set("setmetatable", setmetatable)?;
    for (name, value) in extra {
        env.set(*name, value.clone())?;
    }
    env.set("_G", env.clone())?;
    Ok(env)
}

/// Loads a text chunk (binary chunks are refused) with `env` as its globals and runs it with
/// `module` as its first vararg, as Kong passes the module path; returns what it returned.
pub fn run_chunk(
    lua: &Lua,
    source: &str,
    chunk_name: &str,
    env: Table,
    module: &str,
) -> mlua::Result<Value> {
    let f = lua
        .load(source)
        .set_name(format!("@{chunk_name}"))
        .set_mode(mlua::chunk::ChunkMode::Text)
        .set_environment(env)
        .into_function()?;
    with_budget(|| f.call::<Value>(module))
}
