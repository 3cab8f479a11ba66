//! Consecutive Lua instances of one phase run in one entry into Lua, as Kong's plugins iterator
//! loops over a phase's plugins in Lua: one Rust → Lua transition, one coroutine (in the
//! phases that may wait) and one budget arming for the whole run instead of one per plugin.
//!
//! The dispatcher (`dispatch_source`) receives the instances by index and finds each one's handler,
//! conf and phase method in the worker's `entries` table (generation → instance index →
//! entry, written when the runtime first resolves an instance). Before each plugin it calls
//! `enter(k)`, a plain C function: the plugin becomes the PDK's current instance, the previous
//! one's end is timed (the next one starts then), and the plugin gets a budget of its own.

use std::ffi::c_int;
use std::time::{Duration, Instant};

use mlua::{ffi, Function, Lua, Table, Value};

use super::calls::{describe, finish, may_wait, step, with_worker, Resume, Who};
use super::raw::Arg;
use super::threads::{self, Body};
use crate::plugins::lua::{pdk, sandbox, LuaInstance};
use crate::plugins::{Flow, PhaseCtx, PluginError};

/// Most instances one batch holds (a longer run of Lua instances takes several batches).
pub const MAX: usize = 16;

/// Instances run together in one phase, and how far the run got.
pub struct Batch<'a> {
    insts: [Option<&'a LuaInstance>; MAX],
    len: usize,
    /// The member running, or the one that ran last once the batch returned.
    pos: usize,
    /// When each member's call ended (`ends[j]` is set once member `j + 1` began).
    ends: [Option<Instant>; MAX],
    /// When the current member began, if after the batch's start.
    member_started: Option<Instant>,
}

impl Default for Batch<'_> {
    fn default() -> Self {
        Batch {
            insts: [None; MAX],
            len: 0,
            pos: 0,
            ends: [None; MAX],
            member_started: None,
        }
    }
}

impl<'a> Batch<'a> {
    /// Adds an instance; false when the batch is full.
    pub fn push(&mut self, inst: &'a LuaInstance) -> bool {
        if self.len == MAX {
            return false;
        }
        self.insts[self.len] = Some(inst);
        self.len += 1;
        true
    }

    /// How many instances the batch holds.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the batch holds no instance.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The member that was running when the batch returned (the one that exited, failed or
    /// waits; the last one when all ran).
    pub fn reached(&self) -> usize {
        self.pos
    }

    /// When member `j`'s call ended, if a later member has begun.
    pub fn ended(&self, j: usize) -> Option<Instant> {
        self.ends.get(j).copied().flatten()
    }

    /// The member running.
    pub(super) fn current(&self) -> Option<&'a LuaInstance> {
        self.insts.get(self.pos).copied().flatten()
    }

    /// When the running member began, if it began after `since`.
    pub(super) fn member_started_after(&self, since: Instant) -> Option<Instant> {
        self.member_started.filter(|at| *at > since)
    }

    /// Member `k` begins (called by the dispatcher through `enter`).
    pub(crate) fn enter(&mut self, k: usize, ctx: &mut PhaseCtx<'_>) -> Option<&'a LuaInstance> {
        let inst = self.insts.get(k).copied().flatten()?;
        if k > 0 {
            let now = Instant::now();
            self.ends[k - 1] = Some(now);
            self.member_started = Some(now);
            // What the previous call left running is cancelled, as at the end of a call.
            if let Some(io) = ctx.state.io.as_mut() {
                io.cancel_all();
            }
            ctx.state.lua_spent = Duration::ZERO;
            sandbox::budget::restart(now, sandbox::limits().cpu_budget);
        }
        self.pos = k;
        Some(inst)
    }
}

/// The dispatchers (see [`dispatch_source`]).
fn dispatch_source() -> String {
    // `one` runs member k (from 0): instance i of the generation's entries `t`, phase p.
    // Through `pcall`, re-raised as it is: the method's caller is then no Lua function, and an
    // error it raises for its caller (`error(msg, 2)`) names no position, as when Rust calls
    // it (Kong's own error values are kept; the budget's overrun is raised again at once).
    let mut src = String::from(
        "local enter, run, entries, pcall = ...\n\
         local function one(p, t, k, i)\n  enter(k)\n  local e = t[i]\n  local m = e[p]\n  \
         if m then\n    local ok, err = pcall(m, e.h, e.c)\n    \
         if not ok then\n      error(err, 0)\n    end\n  end\nend\n\
         local function one_waiting(id, p, t, k, i)\n  enter(k)\n  local e = t[i]\n  \
         local m = e[p]\n  if m then\n    run(id, m, e.h, e.c)\n  end\nend\n",
    );
    // The members arrive as fixed parameters, with their count: no vararg copies.
    let params: Vec<String> = (1..=MAX).map(|k| format!("i{k}")).collect();
    let params = params.join(", ");
    for (name, lead, one) in [
        ("plain", "", "one("),
        ("waiting", "id, ", "one_waiting(id, "),
    ] {
        src.push_str(&format!(
            "local function {name}({lead}p, g, n, {params})\n  local t = entries[g]\n"
        ));
        for k in 0..MAX {
            src.push_str(&format!(
                "  {one}p, t, {k}, i{}) if n == {} then return end\n",
                k + 1,
                k + 1
            ));
        }
        src.push_str("end\n");
    }
    src.push_str("return plain, waiting\n");
    src
}

/// `enter(k)`: member `k` (from 0) of the batch in progress begins. A C function, not an mlua
/// callback: it runs before every plugin of a batch and cannot fail.
unsafe extern "C-unwind" fn enter(state: *mut ffi::lua_State) -> c_int {
    let k = ffi::lua_tointeger(state, 1);
    if let Ok(k) = usize::try_from(k) {
        // Nothing in it panics; should it, the plugin runs as the previous one's member.
        let _ = std::panic::catch_unwind(|| pdk::enter_member(k));
    }
    0
}

/// Builds the two dispatchers for a worker VM.
pub(super) fn dispatchers(
    lua: &Lua,
    run: &Function,
    entries: &Table,
) -> mlua::Result<(Function, Function)> {
    // SAFETY: `enter` follows the lua_CFunction protocol and raises no Lua error.
    let enter = unsafe { lua.create_c_function(enter)? };
    let pcall: Function = lua.named_registry_value(sandbox::RAW_PCALL)?;
    lua.load(dispatch_source())
        .set_name("=sluice/dispatch")
        .set_mode(mlua::chunk::ChunkMode::Text)
        .call((enter, run.clone(), entries.clone(), pcall))
}

/// The entry the dispatcher finds for an instance: its phase methods at the phases' indexes
/// from 1, its handler at `h`, its conf at `c`.
pub(super) fn entry(
    lua: &Lua,
    methods: &[Option<Value>],
    handler: Value,
    conf: Value,
) -> mlua::Result<Table> {
    let t = lua.create_table_with_capacity(methods.len(), 2)?;
    for (n, m) in methods.iter().enumerate() {
        if let Some(m) = m {
            t.raw_set(n + 1, m.clone())?;
        }
    }
    t.raw_set("h", handler)?;
    t.raw_set("c", conf)?;
    Ok(t)
}

/// Runs the batch's instances in `ctx.phase`, in order, until one exits, fails or waits (then
/// [`resume`] continues it); [`Batch::reached`] says which.
pub fn call(batch: &mut Batch<'_>, ctx: &mut PhaseCtx<'_>) -> Result<Flow, PluginError> {
    let Some(first) = batch.current() else {
        return Ok(Flow::Continue);
    };
    let phase = ctx.phase;
    with_worker(|worker| {
        worker.register_request(ctx);
        // Every member resolved (its entry written); the batch stops short of one that
        // cannot be, which then fails on its own call.
        for j in 0..batch.len {
            let Some(inst) = batch.insts[j] else { break };
            if let Err(e) = worker.prepare(inst) {
                if j == 0 {
                    return Err(PluginError(describe(first, phase, &e)));
                }
                batch.len = j;
                break;
            }
        }
        // [marker, id,] phase, generation, count, the members' instance indexes.
        let mut args = [Arg::Int(0); MAX + 5];
        let mut n = 0;
        let mut push = |a: Arg| {
            args[n] = a;
            n += 1;
        };
        let waits = may_wait(phase);
        if waits {
            push(Arg::Ptr(threads::done().0));
            push(Arg::Num(ctx.state.id as f64));
        }
        push(Arg::Int(phase.index() as i64 + 1));
        push(Arg::Num(first.generation as f64));
        push(Arg::Int(batch.len as i64));
        for inst in batch.insts[..batch.len].iter().flatten() {
            push(Arg::Int(inst.index as i64));
        }
        ctx.state.exit = None;
        batch.pos = 0;
        batch.member_started = None;
        if waits {
            ctx.state.lua_spent = Duration::ZERO;
            let thread = worker
                .threads
                .take(&worker.lua, Body::Batch)
                .map_err(|e| PluginError(describe(first, phase, &e)))?;
            return step(
                worker,
                Who::Batch(batch),
                ctx,
                thread,
                Resume::Start(&args[..n]),
            );
        }
        let tables = worker.tables(ctx);
        let started = ctx.started;
        let result = pdk::with_current(ctx, first, Some(&mut *batch), tables, || {
            sandbox::with_budget_left(started, sandbox::limits().cpu_budget, || {
                worker
                    .entry
                    .pcall(&worker.lua, worker.plain_dispatch.id(), &args[..n])
            })
        });
        finish(worker, Who::Batch(batch), ctx, result)
    })
}

/// Continues a batch that returned [`Flow::Wait`] with the operation that finished.
pub fn resume(batch: &mut Batch<'_>, ctx: &mut PhaseCtx<'_>) -> Result<Flow, PluginError> {
    super::calls::resume_who(Who::Batch(batch), ctx)
}
