//! The per-worker Lua runtime. Each worker thread owns one VM (`mlua::Lua` is not `Send`);
//! Pingora runs without work stealing, so a request's phases all run on the thread that
//! accepted it and find their per-request tables (kong.ctx.*, ngx.ctx) in that thread's VM.
//!
//! Handlers are loaded once per VM per source text (a reload that does not change a plugin's
//! code keeps its module state); conf tables are built once per VM per snapshot generation.
//! When a generation has no request left on this thread and a newer one is serving, its conf
//! tables and any handler no longer used are released.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use mlua::{Function, RegistryKey, Table, Value};
use rustc_hash::FxHashMap;

mod batch;
mod calls;
mod handlers;
mod raw;
mod threads;

use super::{io, pdk, sandbox, LuaInstance, LuaPlugin};
use crate::plugins::{Phase, PhaseCtx};
pub use batch::{call as call_batch, resume as resume_batch, Batch, MAX as BATCH_MAX};
pub use calls::{call, resume};
pub(super) use handlers::{init_worker, load_handler};
use handlers::{Call, Loaded, Methods, Resolved};

struct Worker {
    lua: sandbox::Vm,
    /// This VM's memory use, published for the `sluice_lua_memory_bytes` metric.
    memory: Arc<AtomicUsize>,
    /// `kong`, `ngx`, `require`: the values every plugin environment gets.
    shared_globals: Vec<(&'static str, RegistryKey)>,
    /// `LuaPlugin::key_hash` → the plugin's key and its loaded handler. These maps are looked
    /// up on every phase call, with keys that come from the config, not from requests:
    /// FxHash, not SipHash. (Should two keys share a hash, the later evicts the earlier.)
    handlers: FxHashMap<u64, (String, Loaded)>,
    /// (generation, plugin instance index) → conf table. Registry keys, not `Table` handles:
    /// mlua keeps handles on a bounded auxiliary stack, and a config may have tens of
    /// thousands of instances ("out of Lua stack" otherwise). A call pushes the key's value
    /// straight onto the Lua stack (`&RegistryKey: IntoLua`), with no handle in between;
    /// the `Rc` lets the call hold the key while it borrows the worker mutably.
    confs: FxHashMap<(u64, usize), Rc<RegistryKey>>,
    /// request id → { shared = {}, plugin = {}, ngx = {} }, created when a plugin first uses
    /// kong.ctx or ngx.ctx.
    requests: Rc<Table>,
    /// request id → the coroutine of its phase call that waits for I/O.
    waiting: Table,
    /// `forget(id)`: drops the request's entries in `requests`, `waiting` and wait.lua's
    /// light-thread states. One
    /// call into Lua: three `Table::raw_set`s cost ~530 instructions each (each a protected
    /// call), on every request that ran Lua.
    forget: Function,
    /// generation → instance index → what the batch dispatchers call (`batch::entry`).
    entries: Table,
    /// The batch dispatcher (batch.rs) for the phases that do not wait (the one for those that
    /// may runs in `threads`' coroutines).
    plain_dispatch: RegistryKey,
    /// Raw entries into phase calls (raw.rs).
    entry: raw::Entry,
    /// The coroutines of calls that may wait (threads.rs).
    threads: threads::Threads,
    /// The instances of one generation (the newest that called) already resolved, by instance
    /// index: a call of them finds its handler, methods and conf without hashing.
    resolved: Vec<Option<Resolved>>,
    resolved_generation: u64,
    /// Requests that ran Lua on this thread, per generation.
    active: FxHashMap<u64, usize>,
    newest: u64,
    /// The VM stayed near its memory limit after a full collection: plugin code keeps more
    /// than it may (a module-level cache that only grows). It is replaced by a fresh VM as
    /// soon as no request on this thread holds Lua state, as an nginx worker is restarted.
    exhausted: bool,
}

impl Drop for Worker {
    fn drop(&mut self) {
        self.memory.store(0, Ordering::Relaxed);
        if let Ok(mut all) = VM_MEMORY.lock() {
            all.retain(|m| !Arc::ptr_eq(m, &self.memory));
        }
    }
}

/// Share of the memory limit a VM may still use after a full collection before it is replaced.
const EXHAUSTED_PERCENT: usize = 80;

thread_local! {
    static WORKER: RefCell<Option<Worker>> = const { RefCell::new(None) };
}

/// Memory use of every worker VM (each worker updates its own entry after a call).
static VM_MEMORY: Mutex<Vec<Arc<AtomicUsize>>> = Mutex::new(Vec::new());

/// Memory used by each worker VM.
pub fn vm_memory() -> Vec<usize> {
    VM_MEMORY
        .lock()
        .map(|all| all.iter().map(|m| m.load(Ordering::Relaxed)).collect())
        .unwrap_or_default()
}

/// Memory used by all worker VMs together.
pub fn total_memory() -> usize {
    VM_MEMORY
        .lock()
        .map(|all| all.iter().map(|m| m.load(Ordering::Relaxed)).sum())
        .unwrap_or(0)
}

impl Worker {
    fn new() -> mlua::Result<Worker> {
        let lua = sandbox::new_vm()?;
        let shared = pdk::install(&lua)?;
        let shared_globals = shared
            .into_iter()
            .map(|(name, value)| Ok((name, lua.create_registry_value(value)?)))
            .collect::<mlua::Result<Vec<_>>>()?;
        let requests = Rc::new(lua.named_registry_value::<Table>(pdk::REQUESTS)?);
        let waiting = lua.create_table()?;
        let run: Function = lua.named_registry_value(io::RUN)?;
        let states: Table = lua.named_registry_value(io::STATES)?;
        let forget: Function = lua
            .load(
                "local requests, waiting, states = ...\n\
                 return function(id) requests[id] = nil waiting[id] = nil states[id] = nil end",
            )
            .set_name("=forget")
            .set_mode(mlua::chunk::ChunkMode::Text)
            .call((&*requests, &waiting, &states))?;
        let entries = lua.create_table()?;
        let (plain_dispatch, waiting_dispatch) = batch::dispatchers(&lua, &run, &entries)?;
        let threads = threads::Threads::new(&lua, &run, &waiting_dispatch)?;
        let plain_dispatch = lua.create_registry_value(plain_dispatch)?;
        let entry = raw::Entry::new(&lua)?;
        let memory = Arc::new(AtomicUsize::new(lua.used_memory()));
        if let Ok(mut all) = VM_MEMORY.lock() {
            all.push(memory.clone());
        }
        Ok(Worker {
            lua,
            memory,
            shared_globals,
            handlers: FxHashMap::default(),
            confs: FxHashMap::default(),
            requests,
            waiting,
            forget,
            entries,
            plain_dispatch,
            threads,
            entry,
            resolved: Vec::new(),
            resolved_generation: 0,
            active: FxHashMap::default(),
            newest: 0,
            exhausted: false,
        })
    }

    /// After a call failed for want of memory: collects garbage, and marks the VM for
    /// replacement if it is still nearly full (the memory is held, not garbage).
    fn after_memory_error(&mut self) {
        let _ = self.lua.gc_collect();
        let _ = self.lua.gc_collect();
        let used = self.lua.used_memory();
        if used * 100 > sandbox::limits().memory * EXHAUSTED_PERCENT && !self.exhausted {
            self.exhausted = true;
            tracing::warn!(
                used_bytes = used,
                "this worker's Lua VM stays near its memory limit (plugin code holds the memory); it is replaced by a fresh one once its requests finish"
            );
        }
    }

    /// Whether the VM can be dropped now: it is exhausted and no request holds Lua state.
    fn can_retire(&self) -> bool {
        self.exhausted && self.active.values().all(|n| *n == 0)
    }

    fn globals(&self) -> mlua::Result<Vec<(&'static str, Value)>> {
        self.shared_globals
            .iter()
            .map(|(n, k)| Ok((*n, self.lua.registry_value::<Value>(k)?)))
            .collect()
    }

    /// Makes sure the instance is resolved (its handler loaded, its dispatcher entry written),
    /// without taking what a call needs: the batch dispatcher finds that in `entries`.
    fn prepare(&mut self, inst: &LuaInstance) -> mlua::Result<()> {
        if inst.generation == self.resolved_generation
            && matches!(self.resolved.get(inst.index), Some(Some(_)))
        {
            return Ok(());
        }
        self.resolve(inst, Phase::Access).map(|_| ())
    }

    /// What a call of the instance in `phase` needs: from `resolved` when the instance is of
    /// its generation and was called before, else found (its handler loaded) and kept there.
    fn resolve(&mut self, inst: &LuaInstance, phase: Phase) -> mlua::Result<Call> {
        if inst.generation == self.resolved_generation {
            if let Some(Some(r)) = self.resolved.get(inst.index) {
                return Ok(r.call(phase));
            }
        }
        let (handler, methods) = self.handler(&inst.plugin, inst.generation)?;
        let conf = self.conf(inst)?;
        let r = Resolved::new(handler, methods, conf);
        self.publish(inst, &r)?;
        if inst.generation >= self.resolved_generation {
            if inst.generation > self.resolved_generation {
                self.resolved.clear();
                self.resolved_generation = inst.generation;
            }
            if self.resolved.len() <= inst.index {
                self.resolved.resize(inst.index + 1, None);
            }
            self.resolved[inst.index] = Some(r.clone());
        }
        Ok(r.call(phase))
    }

    /// Writes the instance's entry for the batch dispatchers, unless it has one.
    fn publish(&self, inst: &LuaInstance, r: &Resolved) -> mlua::Result<()> {
        let generation = inst.generation as f64;
        let of_generation = match self.entries.raw_get::<Option<Table>>(generation)? {
            Some(t) => t,
            None => {
                let t = self.lua.create_table()?;
                self.entries.raw_set(generation, &t)?;
                t
            }
        };
        if of_generation.raw_get::<Value>(inst.index)? != Value::Nil {
            return Ok(());
        }
        let methods = r
            .methods
            .iter()
            .map(|m| {
                m.as_deref()
                    .map(|k| self.lua.registry_value::<Value>(k))
                    .transpose()
            })
            .collect::<mlua::Result<Vec<_>>>()?;
        let entry = batch::entry(
            &self.lua,
            &methods,
            self.lua.registry_value(&r.handler)?,
            self.lua.registry_value(&r.conf)?,
        )?;
        of_generation.raw_set(inst.index, entry)
    }

    /// The handler table's key and its phase methods (None where the handler lacks one).
    fn handler(
        &mut self,
        plugin: &LuaPlugin,
        generation: u64,
    ) -> mlua::Result<(Rc<RegistryKey>, Methods)> {
        if let Some((key, loaded)) = self.handlers.get_mut(&plugin.key_hash) {
            if *key == plugin.key {
                return Ok(loaded.resolve(generation));
            }
        }
        let globals = self.globals()?;
        // The chunk and the reading of its methods (which may run its metamethods) have a
        // budget of their own, apart from the request's phase call.
        let (table, methods) = sandbox::with_budget(|| {
            let (table, env) = load_handler(&self.lua, plugin, &globals)?;
            // The PDK honours what this handler assigned in its own view of ngx.
            let views: Table = self.lua.named_registry_value(sandbox::PLUGIN_NGX)?;
            views.raw_set(plugin.key.as_str(), env.raw_get::<Value>("ngx")?)?;
            init_worker(&table)?;
            let mut methods: Methods = Default::default();
            for p in Phase::ALL {
                if let Value::Function(f) = table.get::<Value>(p.as_str())? {
                    methods[p.index()] = Some(Rc::new(self.lua.create_registry_value(f)?));
                }
            }
            Ok::<_, mlua::Error>((table, methods))
        })?;
        let loaded = Loaded {
            table: Rc::new(self.lua.create_registry_value(table)?),
            methods,
            generation,
        };
        let (_, loaded) = self
            .handlers
            .entry(plugin.key_hash)
            .insert_entry((plugin.key.clone(), loaded))
            .into_mut();
        Ok(loaded.resolve(generation))
    }

    fn conf(&mut self, inst: &LuaInstance) -> mlua::Result<Rc<RegistryKey>> {
        let key = (inst.generation, inst.index);
        if let Some(k) = self.confs.get(&key) {
            return Ok(k.clone());
        }
        let value = super::util::conf_to_lua(&self.lua, &inst.conf)?;
        let Value::Table(table) = value else {
            return Err(mlua::Error::runtime("plugin conf is not a table"));
        };
        let ids = &inst.ids;
        for (key, id) in [
            ("route_id", &ids.route_id),
            ("service_id", &ids.service_id),
            ("consumer_id", &ids.consumer_id),
            ("plugin_instance_name", &ids.plugin_instance_name),
        ] {
            // As Kong's iterator does: an unset id clears a config field of that name.
            table.raw_set(key, id.as_deref())?;
        }
        table.raw_set("__plugin_id", ids.plugin_id.as_str())?;
        let k = Rc::new(self.lua.create_registry_value(table)?);
        self.confs.insert(key, k.clone());
        Ok(k)
    }

    /// Where the request's Lua tables live.
    fn tables(&self, ctx: &PhaseCtx<'_>) -> pdk::RequestTables {
        pdk::RequestTables {
            requests: self.requests.clone(),
            id: ctx.state.id,
        }
    }

    /// Counts the request as running Lua on this thread (its generation stays loaded).
    fn register_request(&mut self, ctx: &mut PhaseCtx<'_>) {
        if ctx.state.lua_tables {
            return;
        }
        ctx.state.lua_tables = true;
        let gen = ctx.state.generation;
        *self.active.entry(gen).or_default() += 1;
        if gen > self.newest {
            self.newest = gen;
        }
    }

    fn release(&mut self, id: u64, generation: u64, keyed: bool) {
        if keyed {
            let _ = self.forget.call::<()>(id);
        }
        if let Some(n) = self.active.get_mut(&generation) {
            *n = n.saturating_sub(1);
        }
        self.collect();
    }

    /// Frees conf tables of generations no request uses any more, and handlers only they used.
    fn collect(&mut self) {
        let newest = self.newest;
        let idle: Vec<u64> = self
            .active
            .iter()
            .filter(|(g, n)| **n == 0 && **g < newest)
            .map(|(g, _)| *g)
            .collect();
        if idle.is_empty() {
            return;
        }
        for g in &idle {
            self.active.remove(g);
            let _ = self.entries.raw_set(*g as f64, Value::Nil);
        }
        let oldest_live = self.active.keys().copied().min().unwrap_or(newest);
        if self.resolved_generation < oldest_live {
            self.resolved = Vec::new();
        }
        self.confs.retain(|(g, _), _| *g >= oldest_live);
        let views = self
            .lua
            .named_registry_value::<Table>(sandbox::PLUGIN_NGX)
            .ok();
        self.handlers.retain(|_, (key, h)| {
            let keep = h.generation >= oldest_live;
            if let (false, Some(views)) = (keep, &views) {
                let _ = views.raw_set(key.as_str(), Value::Nil);
            }
            keep
        });
        self.lua.expire_registry_values();
    }
}

/// Frees a finished request's Lua tables (called when its context is dropped, on its thread);
/// `keyed` is its [`RequestState::lua_keyed`](crate::plugins::RequestState::lua_keyed).
pub fn release(id: u64, generation: u64, keyed: bool) {
    WORKER.with(|cell| {
        if let Ok(mut slot) = cell.try_borrow_mut() {
            if let Some(worker) = slot.as_mut() {
                worker.release(id, generation, keyed);
                if worker.can_retire() {
                    tracing::warn!("replacing this worker's exhausted Lua VM with a fresh one");
                    *slot = None;
                }
            }
        }
    });
}

/// The request's `kong.ctx.shared` as JSON (for conditions), if Lua created it; an error
/// when it cannot be converted (a condition then fails its request rather than guess).
pub fn shared_ctx(id: u64) -> Result<Option<serde_json::Value>, String> {
    WORKER.with(|cell| {
        let Ok(slot) = cell.try_borrow() else {
            return Ok(None);
        };
        let Some(worker) = slot.as_ref() else {
            return Ok(None);
        };
        let Ok(tables) = worker.requests.raw_get::<Table>(id) else {
            return Ok(None);
        };
        let shared: Value = tables.raw_get("shared").map_err(|e| e.to_string())?;
        // The conversion may run plugin metamethods (__len, __index): under a budget.
        sandbox::with_budget(|| super::util::lua_to_json(&shared)).map(Some)
    })
}
