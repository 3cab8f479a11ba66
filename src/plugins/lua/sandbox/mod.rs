//! The LuaJIT VM plugins run in: Kong's sandbox allow-list, text chunks only, a memory limit
//! per VM, a CPU budget per call that plugin code cannot catch, and a bound on native
//! recursion.
//!
//! CPU budget ([`budget`]): once a call has run past its time, a count hook checks its budget
//! every 1000 instructions ([`watchdog`] sets the hook only then: set all the time, it taxed
//! every bytecode). LuaJIT calls hooks only from its interpreter, so the JIT can be on only
//! because our LuaJIT is built to leave compiled code for a hook (vendor/luajit-src: every trace
//! checks at its start and in each loop iteration whether one is set). C functions that can run
//! long without executing Lua are replaced or guarded: the pattern functions are Rust ([`strlib`])
//! and check the budget while they backtrack; `string.rep` and `table.sort` check it on entry (a
//! large sort gets a Lua comparator the hook sees). Other C functions do work proportional to
//! their input, which the memory limit bounds.
//!
//! Native recursion ([`stack`]): every way back from native code into Lua passes a stack check.

pub mod budget;
mod patterns;
mod readonly;
pub mod stack;
mod strlib;
mod watchdog;

pub use readonly::{Freezer, NGX_OVERLAY, PLUGIN_NGX};
pub use watchdog::Vm;

use std::sync::OnceLock;
use std::time::Duration;

use mlua::{Function, Lua, LuaOptions, StdLib, Table, Value};

use crate::plugins::lua::util::support;

/// Resource limits of plugin code, process-wide.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// CPU time (the thread's own) one call into plugin code may take.
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

/// Runs `f` (a call into plugin code) with the CPU budget armed for this thread.
pub fn with_budget<R>(f: impl FnOnce() -> R) -> R {
    with_budget_left(std::time::Instant::now(), limits().cpu_budget, f)
}

thread_local! {
    /// The handler of the call in progress has answered (`kong.response.exit`).
    static STOPPED: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Runs `f` (a call into plugin code that began at `start`, or its continuation after it
/// waited) with what is left of the call's CPU budget, `left`.
pub fn with_budget_left<R>(start: std::time::Instant, left: Duration, f: impl FnOnce() -> R) -> R {
    struct Restore(bool);
    impl Drop for Restore {
        fn drop(&mut self) {
            STOPPED.with(|s| s.set(self.0));
        }
    }
    let _restore = Restore(STOPPED.with(|s| s.replace(false)));
    budget::with_budget_since(start, left, f)
}

/// Whether the handler of the call in progress answered (`kong.response.exit`).
pub fn stopped() -> bool {
    STOPPED.with(|s| s.get())
}

/// Named registry value: the marker a waiting coroutine yields (wait.lua and guards.lua).
pub const WAIT: &str = "sluice.io.wait";
/// Named registry value: LuaJIT's own `coroutine.resume` (wait.lua's scheduler receives the
/// waits that the sandbox's version passes up).
pub const RAW_RESUME: &str = "sluice.raw_resume";
/// Named registry value: LuaJIT's own `pcall` (the batch dispatcher re-raises what it
/// catches, so it needs none of the guards).
pub const RAW_PCALL: &str = "sluice.raw_pcall";
/// Named registry value: the native stack and budget check the guards run before calling
/// back into Lua.
pub const CHECK: &str = "sluice.check";
/// Named registry value: the gateway's own coroutines (phase calls, light threads) as keys of
/// a weak table; the sandbox's `coroutine.resume` refuses them.
pub const SYSTEM_THREADS: &str = "sluice.system_threads";

/// Ends the handler of the call in progress as Kong's `kong.response.exit` does (Kong yields
/// the handler's coroutine): the error that unwinds it is re-raised by `pcall`, `xpcall` and
/// `coroutine.resume`, so the plugin's code after the exit does not run.
pub fn stop_handler() {
    STOPPED.with(|s| s.set(true));
}

/// For Rust code working over plugin data (recursions, long loops): fails when the native
/// stack is nearly exhausted or the call's CPU budget is spent.
pub fn guard() -> mlua::Result<()> {
    stack::check()?;
    budget::check().map_err(|e| support::raise(e.to_string()))
}

/// Output that Rust builds from plugin data outside the VM's allocator (header lists, joined
/// strings): each piece is taken from what the VM could still hold, and the budget is checked
/// every few pieces, so a table repeating a large value cannot blow up the process.
pub struct Room {
    left: usize,
    pieces: u32,
}

impl Room {
    /// The room left in `lua`.
    pub fn new(lua: &Lua) -> Room {
        Room {
            left: memory_room(lua),
            pieces: 0,
        }
    }

    /// The room of a whole VM's memory limit (where no VM is at hand).
    pub fn within_limit() -> Room {
        Room {
            left: limits().memory,
            pieces: 0,
        }
    }

    /// Takes `bytes` for one more piece.
    pub fn take(&mut self, bytes: usize) -> mlua::Result<()> {
        self.pieces = self.pieces.wrapping_add(1);
        if self.pieces % 64 == 0 {
            guard()?;
        }
        match self.left.checked_sub(bytes) {
            Some(left) => {
                self.left = left;
                Ok(())
            }
            None => Err(support::raise("not enough memory")),
        }
    }
}

/// Bytes the VM may still allocate before its memory limit: a bound for output that Rust
/// builds for plugin code outside the VM's allocator (a `gsub` result, say).
pub fn memory_room(lua: &Lua) -> usize {
    limits().memory.saturating_sub(lua.used_memory())
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
/// library tables (strings' metatable reaches the real `string` table), the guards installed
/// over the library (they are what every plugin environment copies) and the memory limit set;
/// the watchdog sets the budget hook on it when a call overruns.
pub fn new_vm() -> mlua::Result<Vm> {
    // SAFETY-relevant: no `debug`, `ffi` or `package` library is loaded (mlua's safe mode). The
    // PDK opens `ffi` for its own fast paths only (pdk/fast.rs); no plugin can reach it.
    // (coroutine is part of LuaJIT's base library)
    let libs = StdLib::BIT
        | StdLib::MATH
        | StdLib::OS
        | StdLib::STRING
        | StdLib::TABLE
        | StdLib::IO
        | StdLib::JIT;
    let lua = Lua::new_with(libs, LuaOptions::default())?;
    let globals = lua.globals();
    // `("x"):dump()` reaches the real string table through the string metatable.
    let string: Table = globals.get("string")?;
    string.set("dump", Value::Nil)?;
    strlib::install(&lua, &string)?;
    install_guards(&lua, &globals)?;
    lua.set_memory_limit(limits().memory)?;
    Ok(Vm::new(lua))
}

/// Replaces the base functions that can catch errors or call back into Lua with the guarded
/// versions of `guards.lua`, `print` with a logger, and `coroutine.wrap` with one that resumes
/// through the guarded `resume`.
fn install_guards(lua: &Lua, globals: &Table) -> mlua::Result<()> {
    let string: Table = globals.get("string")?;
    let table: Table = globals.get("table")?;
    let coroutine: Table = globals.get("coroutine")?;
    let expired = support::function(lua, |_, ()| Ok(budget::expired()))?;
    let overrun =
        crate::plugins::lua::util::support::raw_function(lua, |_, ()| -> mlua::Result<()> {
            Err(mlua::Error::external(
                budget::overrun().unwrap_or(budget::Exceeded::Cpu(limits().cpu_budget)),
            ))
        })?;
    let stopped = support::function(lua, |_, ()| Ok(STOPPED.with(|s| s.get())))?;
    let check = support::function(lua, |_, ()| {
        stack::check()?;
        budget::check().map_err(|e| support::raise(e.to_string()))
    })?;
    let wait = lua.create_table()?;
    lua.set_named_registry_value(WAIT, wait.clone())?;
    lua.set_named_registry_value(RAW_RESUME, coroutine.get::<Function>("resume")?)?;
    lua.set_named_registry_value(RAW_PCALL, globals.get::<Function>("pcall")?)?;
    lua.set_named_registry_value(CHECK, check.clone())?;
    let system = lua.create_table()?;
    let weak_keys = lua.create_table()?;
    weak_keys.raw_set("__mode", "k")?;
    system.set_metatable(Some(weak_keys))?;
    lua.set_named_registry_value(SYSTEM_THREADS, system.clone())?;
    let guards: Table = lua
        .load(include_str!("guards.lua"))
        .set_name("=sandbox")
        .set_mode(mlua::chunk::ChunkMode::Text)
        .call((
            globals.get::<Function>("pcall")?,
            globals.get::<Function>("xpcall")?,
            coroutine.get::<Function>("resume")?,
            string.get::<Function>("format")?,
            table.get::<Function>("sort")?,
            string.get::<Function>("rep")?,
            expired,
            overrun,
            check,
            stopped,
            wait,
            coroutine.get::<Function>("yield")?,
            coroutine.get::<Function>("status")?,
            system,
        ))?;
    globals.set("pcall", guards.get::<Function>("pcall")?)?;
    globals.set("xpcall", guards.get::<Function>("xpcall")?)?;
    coroutine.set("resume", guards.get::<Function>("resume")?)?;
    string.set("format", guards.get::<Function>("format")?)?;
    string.set("rep", guards.get::<Function>("rep")?)?;
    table.set("sort", guards.get::<Function>("sort")?)?;
    globals.set("print", print(lua)?)?;
    guarded_wrap(lua, &coroutine)
}

/// `print`: OpenResty writes it to the error log at NOTICE level; so does this (never stdout).
fn print(lua: &Lua) -> mlua::Result<Function> {
    let tostring: Function = lua.globals().get("tostring")?;
    support::function(lua, move |_, args: mlua::MultiValue| {
        let mut line = String::new();
        for v in args {
            match v {
                Value::String(s) => support::push_capped(&mut line, &s.as_bytes()),
                other => support::push_capped(
                    &mut line,
                    &tostring.call::<mlua::LuaString>(other)?.as_bytes(),
                ),
            }
        }
        tracing::info!(target: "lua", "{line}");
        Ok(())
    })
}

/// `coroutine.wrap` over the guarded `coroutine.resume`, so that a wrapped coroutine passes
/// waits up and cannot swallow an overrun (LuaJIT's own `wrap` resumes in C, past the guards).
fn guarded_wrap(lua: &Lua, coroutine: &Table) -> mlua::Result<()> {
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
            coroutine.get::<mlua::Function>("create")?,
            coroutine.get::<mlua::Function>("resume")?,
            lua.globals().get::<mlua::Function>("unpack")?,
        ))?;
    coroutine.set("wrap", wrap)
}

/// A fresh environment for one plugin chunk: the allow-listed globals, copies of the allowed
/// library functions, `getmetatable` limited to tables, and the given extra globals
/// (`kong`, `ngx`, `require`).
pub fn plugin_env(lua: &Lua, extra: &[(&str, Value)]) -> mlua::Result<Table> {
    // The copying runs in Lua from a prototype built once per VM: one call instead of a
    // protected call per key from Rust (a tenth of the time of a 100-plugin reload).
    let maker = match lua.named_registry_value::<Option<mlua::Function>>(ENV_MAKER)? {
        Some(f) => f,
        None => {
            let libraries = lua.create_sequence_from(LIBRARIES.iter().map(|(name, _)| *name))?;
            let f: mlua::Function = lua
                .load(
                    "local proto, libraries = ... \n\
                     local next = next \n\
                     local copied = {} \n\
                     for _, name in ipairs(libraries) do copied[name] = true end \n\
                     return function() \n\
                       local env = {} \n\
                       for k, v in next, proto do \n\
                         if copied[k] then \n\
                           local copy = {} \n\
                           for k2, v2 in next, v do copy[k2] = v2 end \n\
                           v = copy \n\
                         end \n\
                         env[k] = v \n\
                       end \n\
                       return env \n\
                     end",
                )
                .set_name("=sluice.env")
                .set_mode(mlua::chunk::ChunkMode::Text)
                .call((env_prototype(lua)?, libraries))?;
            lua.set_named_registry_value(ENV_MAKER, &f)?;
            f
        }
    };
    let env: Table = maker.call(())?;
    // `ngx` becomes this environment's own view of the shared one (readonly.rs).
    let overlay = lua.named_registry_value::<Option<mlua::Function>>(NGX_OVERLAY)?;
    for (name, value) in extra {
        match (&overlay, *name) {
            (Some(make), "ngx") => env.set("ngx", make.call::<Value>(value.clone())?)?,
            _ => env.set(*name, value.clone())?,
        }
    }
    env.set("_G", env.clone())?;
    Ok(env)
}

/// Registry key of the function that makes a plugin environment from the prototype.
const ENV_MAKER: &str = "sluice.env_maker";

/// What every plugin environment starts from (never handed to plugin code itself: each
/// environment gets its own copy of it and of its library tables).
fn env_prototype(lua: &Lua) -> mlua::Result<Table> {
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
    // table.new / table.clear as OpenResty has them (table.clone etc. come with LuaJIT 2.1).
    let table: Table = env.get("table")?;
    if table.get::<Value>("new")?.is_nil() {
        table.set(
            "new",
            crate::plugins::lua::util::support::raw_function(
                lua,
                |lua, (narr, nrec): (Option<usize>, Option<usize>)| {
                    lua.create_table_with_capacity(narr.unwrap_or(0), nrec.unwrap_or(0))
                },
            )?,
        )?;
    }
    if table.get::<Value>("clear")?.is_nil() {
        table.set(
            "clear",
            crate::plugins::lua::util::support::raw_function(lua, |_, t: Table| t.clear())?,
        )?;
    }
    // Only tables' metatables are visible (strings' would lead back to the real string table).
    let real_getmetatable: mlua::Function = globals.get("getmetatable")?;
    env.set(
        "getmetatable",
        crate::plugins::lua::util::support::raw_function(lua, move |_, v: Value| match v {
            Value::Table(_) => real_getmetatable.call::<Value>(v),
            _ => Ok(Value::Nil),
        })?,
    )?;
    let setmetatable: mlua::Function = globals.get("setmetatable")?;
    env.set("setmetatable", setmetatable)?;
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
