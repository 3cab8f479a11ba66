//! Calls into plugin code: one instance's phase call, or a batch's (batch.rs), as a
//! coroutine in the phases that may wait; their budgets, exits and errors.

use std::sync::atomic::Ordering;

use mlua::thread::ThreadStatus;
use mlua::{Thread, Value};

use super::handlers::Call;
use super::raw::{self, Arg};
use super::threads::{self, Body};
use super::{Batch, Worker, WORKER};
use crate::plugins::lua::{io, pdk, sandbox, LuaInstance};
use crate::plugins::{Flow, Phase, PhaseCtx, PluginError};

/// Whose call is in progress: one instance's, or a batch's (batch.rs), whose member running
/// changes as it goes.
pub(super) enum Who<'b, 'a> {
    One(&'a LuaInstance),
    Batch(&'b mut Batch<'a>),
}

impl<'a> Who<'_, 'a> {
    /// The instance running (for a batch, the member that was running when it returned).
    fn inst(&self) -> Option<&'a LuaInstance> {
        match self {
            Who::One(inst) => Some(inst),
            Who::Batch(b) => b.current(),
        }
    }

    /// Which body its coroutine runs.
    fn body(&self) -> Body {
        match self {
            Who::One(_) => Body::One,
            Who::Batch(_) => Body::Batch,
        }
    }

    /// "plugin P, phase X: <error>" for the instance running.
    fn describe(&self, phase: Phase, e: &mlua::Error) -> String {
        match self.inst() {
            Some(inst) => describe(inst, phase, e),
            None => format!("phase {}: {e}", phase.as_str()),
        }
    }
}

/// Runs `f` with this thread's worker, started if need be.
pub(super) fn with_worker<R>(
    f: impl FnOnce(&mut Worker) -> Result<R, PluginError>,
) -> Result<R, PluginError> {
    WORKER.with(|cell| {
        let mut slot = cell.borrow_mut();
        if slot.is_none() {
            *slot = Some(
                Worker::new().map_err(|e| PluginError(format!("cannot start the Lua VM: {e}")))?,
            );
        }
        match slot.as_mut() {
            Some(worker) => f(worker),
            None => Err(PluginError("no Lua VM".into())),
        }
    })
}

/// Runs one phase of a Lua instance on this thread's VM. In the phases that may wait (rewrite,
/// access, response) the handler runs as a coroutine under wait.lua's scheduler and may return
/// [`Flow::Wait`]; the caller then awaits the request's I/O and calls [`resume`].
pub fn call(inst: &LuaInstance, ctx: &mut PhaseCtx<'_>) -> Result<Flow, PluginError> {
    with_worker(|worker| {
        let phase = ctx.phase;
        worker.register_request(ctx);
        let Call {
            handler,
            method,
            conf,
        } = worker
            .resolve(inst, phase)
            .map_err(|e| PluginError(describe(inst, phase, &e)))?;
        let Some(method) = method else {
            return Ok(Flow::Continue);
        };
        ctx.state.exit = None;
        if may_wait(phase) {
            ctx.state.lua_spent = std::time::Duration::ZERO;
            let thread = worker
                .threads
                .take(&worker.lua, Body::One)
                .map_err(|e| PluginError(describe(inst, phase, &e)))?;
            let args = [
                Arg::Ptr(threads::done().0),
                Arg::Num(ctx.state.id as f64),
                Arg::Slot(method),
                Arg::Slot(handler),
                Arg::Slot(conf),
            ];
            return step(worker, Who::One(inst), ctx, thread, Resume::Start(&args));
        }
        let tables = worker.tables(ctx);
        let started = ctx.started;
        let result = pdk::with_current(ctx, inst, None, tables, || {
            sandbox::with_budget_left(started, sandbox::limits().cpu_budget, || {
                // From C, as mlua would call it: `error(msg, 2)` in the method names no
                // position.
                worker
                    .entry
                    .pcall(&worker.lua, method, &[Arg::Slot(handler), Arg::Slot(conf)])
            })
        });
        finish(worker, Who::One(inst), ctx, result)
    })
}

/// Continues a call that returned [`Flow::Wait`] with the operation that finished.
pub fn resume(inst: &LuaInstance, ctx: &mut PhaseCtx<'_>) -> Result<Flow, PluginError> {
    resume_who(Who::One(inst), ctx)
}

/// [`resume`] for one instance's call or a batch's.
pub(super) fn resume_who(who: Who<'_, '_>, ctx: &mut PhaseCtx<'_>) -> Result<Flow, PluginError> {
    WORKER.with(|cell| {
        let mut slot = cell.borrow_mut();
        let Some(worker) = slot.as_mut() else {
            return Err(PluginError("no Lua VM".into()));
        };
        let id = ctx.state.id;
        let thread = match worker.waiting.raw_get::<Value>(id) {
            Ok(Value::Thread(t)) => t,
            _ => return Err(PluginError("no call of this request is waiting".into())),
        };
        let _ = worker.waiting.raw_set(id, Value::Nil);
        let Some((ticket, outcome)) = ctx.state.io.as_mut().and_then(|io| io.take_done()) else {
            return Err(PluginError("resumed without a finished operation".into()));
        };
        let args = io::outcome_values(&worker.lua, outcome).map(|mut v| {
            v.push_front(Value::Number(ticket as f64));
            v
        });
        let args = args.map_err(|e| PluginError(who.describe(ctx.phase, &e)))?;
        step(worker, who, ctx, thread, Resume::After(args))
    })
}

/// How [`step`] resumes a call's coroutine.
pub(super) enum Resume<'x> {
    /// The call's first resume, with these arguments.
    Start(&'x [Arg]),
    /// After a wait, with the ticket and outcome of the operation that finished.
    After(mlua::MultiValue),
}

/// Whether plugin code may wait in `phase` (OpenResty's yieldable contexts; Kong runs
/// `response` inside nginx's access phase).
pub(super) fn may_wait(phase: Phase) -> bool {
    matches!(phase, Phase::Rewrite | Phase::Access | Phase::Response)
}

/// Resumes a call's coroutine with `args` under what is left of its CPU budget (only the time
/// spent inside resumes counts; waiting does not). The first resume is timed on the wall
/// clock (an upper bound of its CPU time, and free: most calls never wait); the resumes after
/// a wait, already on the path of an I/O operation, read the thread's CPU clock.
pub(super) fn step(
    worker: &mut Worker,
    mut who: Who<'_, '_>,
    ctx: &mut PhaseCtx<'_>,
    thread: Thread,
    args: Resume<'_>,
) -> Result<Flow, PluginError> {
    let after_wait = matches!(args, Resume::After(_));
    let left = sandbox::limits()
        .cpu_budget
        .saturating_sub(ctx.state.lua_spent);
    let tables = worker.tables(ctx);
    // The first resume began with the phase call, whose caller read the clock.
    let started = if after_wait {
        std::time::Instant::now()
    } else {
        ctx.started
    };
    let cpu_started = after_wait.then(sandbox::budget::thread_cpu_time);
    // Whether the coroutine yielded `threads::done()`: the call ended (threads.rs); anything
    // else it yields is a wait.
    let (lua, entry) = (&worker.lua, &worker.entry);
    let go = || match args {
        Resume::Start(a) => entry
            .resume(lua, &thread, a)
            .map(|r| matches!(r, raw::Resumed::Yielded(p) if threads::is_marker(p))),
        Resume::After(v) => thread.resume::<Value>(v).map(|v| threads::is_done(&v)),
    };
    let result = match &mut who {
        Who::One(inst) => pdk::with_current(ctx, inst, None, tables, || {
            sandbox::with_budget_left(started, left, go)
        }),
        Who::Batch(batch) => match batch.current() {
            Some(inst) => pdk::with_current(ctx, inst, Some(&mut **batch), tables, || {
                sandbox::with_budget_left(started, left, go)
            }),
            None => Err(mlua::Error::runtime("an empty batch")),
        },
    };
    let ended = matches!(result, Ok(true));
    if !ended
        && result.is_ok()
        && thread.status() == ThreadStatus::Resumable
        && ctx.state.exit.is_none()
    {
        // Only a call that waits needs what it has spent (its budget after the wait). A batch
        // member that began during this resume has spent the wall time since (its budget was
        // set then).
        let began = match &who {
            Who::Batch(b) => b.member_started_after(started),
            Who::One(_) => None,
        };
        ctx.state.lua_spent += match (began, cpu_started) {
            (Some(at), _) => at.elapsed(),
            (None, Some(at)) => sandbox::budget::thread_cpu_time().saturating_sub(at),
            (None, None) => started.elapsed(),
        };
        worker
            .memory
            .store(worker.lua.used_memory(), Ordering::Relaxed);
        ctx.state.lua_keyed = true;
        if let Err(e) = worker.waiting.raw_set(ctx.state.id, thread) {
            return Err(PluginError(who.describe(ctx.phase, &e)));
        }
        return Ok(Flow::Wait);
    }
    // The call is over: what its threads still had running is cancelled.
    if let Some(io) = ctx.state.io.as_mut() {
        io.cancel_all();
    }
    if ended {
        worker.threads.keep(who.body(), thread);
    }
    finish(worker, who, ctx, result.map(|_| ()))
}

/// The end of a phase call: its exit, its error, or on to the next plugin.
pub(super) fn finish(
    worker: &mut Worker,
    who: Who<'_, '_>,
    ctx: &mut PhaseCtx<'_>,
    result: mlua::Result<()>,
) -> Result<Flow, PluginError> {
    worker
        .memory
        .store(worker.lua.used_memory(), Ordering::Relaxed);
    // `kong.response.exit` records the response and raises an error to stop the handler.
    if let Some(exit) = ctx.state.exit.take() {
        return Ok(Flow::Exit(exit));
    }
    match result {
        Ok(()) => Ok(Flow::Continue),
        Err(e) => {
            if is_memory_error(&e) {
                worker.after_memory_error();
            }
            Err(PluginError(who.describe(ctx.phase, &e)))
        }
    }
}

/// Whether a call failed because the VM's memory limit was reached.
fn is_memory_error(e: &mlua::Error) -> bool {
    match e {
        mlua::Error::MemoryError(_) => true,
        mlua::Error::CallbackError { cause, .. } => is_memory_error(cause),
        other => other.to_string().contains("not enough memory"),
    }
}

/// "plugin P, phase X: <Lua error with its chunk:line>"
pub(super) fn describe(inst: &LuaInstance, phase: Phase, e: &mlua::Error) -> String {
    let msg = match e {
        mlua::Error::CallbackError { cause, traceback } => {
            format!("{cause}\n{traceback}")
        }
        other => other.to_string(),
    };
    let first = crate::plugins::lua::with_hint(msg.lines().next().unwrap_or(""));
    format!(
        "plugin {} ({}), phase {}: {first}",
        inst.name,
        inst.plugin.name,
        phase.as_str()
    )
}
