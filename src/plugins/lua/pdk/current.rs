//! The request and instance a PDK function is called for, reachable while a phase call runs.
//!
//! The call's [`Current`] lives on `with_current`'s stack; a thread-local holds its address.
//! Both thread-locals are plain `Cell`s with constant initialisers and no destructor, so each
//! access is a load from the thread's block (a `RefCell<Option<Current>>` needed a lazily
//! registered destructor, checked on every access: ~100 instructions per PDK call).

use std::cell::Cell;
use std::ptr;

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
    /// The phase call in progress on this thread (null outside one).
    static CURRENT: Cell<*mut Current> = const { Cell::new(ptr::null_mut()) };
    /// A PDK function holds the request (`cur` is running).
    static IN_CUR: Cell<bool> = const { Cell::new(false) };
}

/// Runs `f` (a phase call) with `ctx` reachable by the PDK functions.
pub fn with_current<R>(
    ctx: &mut PhaseCtx<'_>,
    inst: &LuaInstance,
    batch: Option<&mut Batch<'_>>,
    tables: RequestTables,
    f: impl FnOnce() -> R,
) -> R {
    struct Reset(*mut Current);
    impl Drop for Reset {
        fn drop(&mut self) {
            CURRENT.with(|c| c.set(self.0));
        }
    }
    let mut current = Current {
        // SAFETY (of the later dereference): the pointer is only dereferenced by PDK functions
        // called synchronously, on this thread, from inside `f`; `Reset` removes it before
        // `with_current` returns, so it never outlives the borrow of `ctx`.
        ctx: ptr::from_mut(ctx).cast::<PhaseCtx<'static>>(),
        inst,
        tables,
        // SAFETY (of the later dereference in `enter_member`): as for `ctx`.
        batch: batch.map_or(ptr::null_mut(), |b| {
            ptr::from_mut(b).cast::<Batch<'static>>()
        }),
    };
    // `current` is reached only through this pointer until `Reset` has run.
    let previous = CURRENT.with(|c| c.replace(&raw mut current));
    let _reset = Reset(previous);
    f()
}

/// Member `k` of the batch in progress begins (`runtime::Batch::enter`): it becomes the
/// current instance. Called by the batch dispatcher between two plugins, never from inside a
/// PDK function; does nothing outside a batch.
pub fn enter_member(k: usize) {
    let current = CURRENT.with(Cell::get);
    if current.is_null() || IN_CUR.with(Cell::get) {
        return;
    }
    // SAFETY: see `with_current`: `current` and its pointees outlive the synchronous call this
    // runs in, and no PDK function holds a reference to them now (`IN_CUR` is clear).
    let current = unsafe { &mut *current };
    if current.batch.is_null() {
        return;
    }
    let (batch, ctx) = unsafe { (&mut *current.batch, &mut *current.ctx) };
    if let Some(inst) = batch.enter(k, ctx) {
        current.inst = inst;
    }
}

/// Calls `f` with the current request; an error when no phase call is in progress.
pub(super) fn cur<R>(
    f: impl FnOnce(&mut PhaseCtx<'_>, &LuaInstance, &RequestTables) -> mlua::Result<R>,
) -> mlua::Result<R> {
    let current = CURRENT.with(Cell::get);
    if current.is_null() {
        return Err(mlua::Error::runtime(
            "this function can only be called while a request is processed",
        ));
    }
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
    // SAFETY: see `with_current`: the pointees outlive this synchronous call, and `IN_CUR`
    // makes this the only reference to them while `f` runs.
    let current = unsafe { &*current };
    let ctx = unsafe { &mut *current.ctx };
    let inst = unsafe { &*current.inst };
    f(ctx, inst, &current.tables)
}

/// The phase of the call in progress, if one is.
pub(super) fn phase() -> Option<crate::plugins::Phase> {
    let current = CURRENT.with(Cell::get);
    // SAFETY: as in `cur`: the pointees live while the call is in progress; only a field is
    // read.
    (!current.is_null()).then(|| unsafe { (*(*current).ctx).phase })
}
