//! The request and instance a PDK function is called for, reachable while a phase call runs.

use std::cell::RefCell;

use super::RequestTables;
use crate::plugins::lua::runtime::Batch;
use crate::plugins::lua::LuaInstance;
use crate::plugins::PhaseCtx;

/// The request a PDK function is called for.
struct Current {
    /// Points to the `PhaseCtx` of the phase call in progress (see `with_current`).
    ctx: *mut PhaseCtx<'static>,
    inst: *const LuaInstance,
    tables: RequestTables,
    /// The batch in progress (null for one instance's call): its member running is `inst`.
    batch: *mut Batch<'static>,
}

thread_local! {
    static CURRENT: RefCell<Option<Current>> = const { RefCell::new(None) };
}

/// Runs `f` (a phase call) with `ctx` reachable by the PDK functions.
pub fn with_current<R>(
    ctx: &mut PhaseCtx<'_>,
    inst: &LuaInstance,
    batch: Option<&mut Batch<'_>>,
    tables: RequestTables,
    f: impl FnOnce() -> R,
) -> R {
    struct Reset(Option<Current>);
    impl Drop for Reset {
        fn drop(&mut self) {
            let previous = self.0.take();
            CURRENT.with(|c| *c.borrow_mut() = previous);
        }
    }
    let current = Current {
        // SAFETY (of the later dereference): the pointer is only dereferenced by PDK functions
        // called synchronously, on this thread, from inside `f`; `Reset` removes it before
        // `with_current` returns, so it never outlives the borrow of `ctx`.
        ctx: std::ptr::from_mut(ctx).cast::<PhaseCtx<'static>>(),
        inst,
        tables,
        // SAFETY (of the later dereference in `enter_member`): as for `ctx`.
        batch: batch.map_or(std::ptr::null_mut(), |b| {
            std::ptr::from_mut(b).cast::<Batch<'static>>()
        }),
    };
    let previous = CURRENT.with(|c| c.borrow_mut().replace(current));
    let _reset = Reset(previous);
    f()
}

/// Member `k` of the batch in progress begins (`runtime::Batch::enter`): it becomes the
/// current instance. Called by the batch dispatcher between two plugins, never from inside a
/// PDK function; does nothing outside a batch.
pub fn enter_member(k: usize) {
    CURRENT.with(|c| {
        let Ok(mut guard) = c.try_borrow_mut() else {
            return;
        };
        let Some(current) = guard.as_mut() else {
            return;
        };
        if current.batch.is_null() || IN_CUR.with(|b| b.get()) {
            return;
        }
        // SAFETY: see `with_current`: both pointees outlive the synchronous call this runs in,
        // and no PDK function holds a reference to them now (`IN_CUR` is clear).
        let (batch, ctx) = unsafe { (&mut *current.batch, &mut *current.ctx) };
        if let Some(inst) = batch.enter(k, ctx) {
            current.inst = inst;
        }
    });
}

/// Calls `f` with the current request; an error when no phase call is in progress.
pub(super) fn cur<R>(
    f: impl FnOnce(&mut PhaseCtx<'_>, &LuaInstance, &RequestTables) -> mlua::Result<R>,
) -> mlua::Result<R> {
    CURRENT.with(|c| {
        let guard = c.borrow();
        let Some(current) = guard.as_ref() else {
            return Err(mlua::Error::runtime(
                "this function can only be called while a request is processed",
            ));
        };
        // A PDK function whose work runs plugin code (a metamethod of an argument) must not
        // reach the request again from there: that would be a second `&mut PhaseCtx`.
        if IN_CUR.with(|b| b.replace(true)) {
            return Err(mlua::Error::runtime(
                "a PDK function cannot be called from a metamethod run by another PDK function",
            ));
        }
        struct Leave;
        impl Drop for Leave {
            fn drop(&mut self) {
                IN_CUR.with(|b| b.set(false));
            }
        }
        let _leave = Leave;
        // SAFETY: see `with_current`: the pointee outlives this synchronous call, and `IN_CUR`
        // makes this the only reference to it while `f` runs.
        let ctx = unsafe { &mut *current.ctx };
        let inst = unsafe { &*current.inst };
        f(ctx, inst, &current.tables)
    })
}

thread_local! {
    /// A PDK function holds the request (`cur` is running).
    static IN_CUR: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// The phase of the call in progress, if one is.
pub(super) fn phase() -> Option<crate::plugins::Phase> {
    // SAFETY: as in `cur`: the pointee lives while the call is in progress; only a field is
    // read.
    CURRENT.with(|c| {
        c.borrow()
            .as_ref()
            .map(|current| unsafe { (*current.ctx).phase })
    })
}
