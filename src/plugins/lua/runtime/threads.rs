//! The coroutines of the phase calls that may wait, kept suspended between calls.
//!
//! A call that may wait runs as a coroutine (wait.lua). Each coroutine runs a loop: it runs
//! one call's body, then yields the marker ([`done`]) and waits there for the next call's
//! arguments. A call that ended leaves its coroutine at that yield, ready for the next call:
//! no reset and no new coroutine per call (the reset, the status checks around it and the
//! recycling cost ~500 instructions per call).
//!
//! Plugin code may keep a handle to its coroutine (`coroutine.running()`). The sandbox's
//! `coroutine.resume` refuses the coroutines made here (`sandbox::SYSTEM_THREADS`), so it
//! cannot resume one between calls and slip its code in front of a later call. Behind that,
//! the loop goes on only when resumed with the marker as its first argument, which plugin
//! code cannot make (a light userdata; no `ffi` or `debug` in the sandbox): a coroutine
//! resumed otherwise ends with an error, and one not left at the loop's yield is never
//! reused.

use std::ffi::c_void;

use mlua::{ffi, Function, LightUserData, Lua, Thread, Value};

/// The address behind the marker: unique in the process, never dereferenced.
static MARKER: u8 = 0;

/// What a coroutine yields when its call ended, and what it must be resumed with.
pub(super) fn done() -> LightUserData {
    LightUserData(std::ptr::from_ref(&MARKER).cast::<c_void>().cast_mut())
}

/// Whether a light userdata a coroutine yielded is the marker: its call ended.
pub(super) fn is_marker(p: *mut c_void) -> bool {
    p == done().0
}

/// Whether a value a coroutine yielded says that its call ended.
pub(super) fn is_done(v: &Value) -> bool {
    matches!(v, Value::LightUserData(p) if is_marker(p.0))
}

/// Finished calls' coroutines a worker keeps per body.
const SPARE: usize = 16;

/// Which body a coroutine runs: one instance's call (wait.lua's `run`) or a batch's.
#[derive(Clone, Copy)]
pub(super) enum Body {
    One = 0,
    Batch = 1,
}

/// The loops, and the coroutines left at their yield.
pub(super) struct Threads {
    loops: [Function; 2],
    spare: [Vec<Thread>; 2],
    /// The sandbox's table of the gateway's coroutines (`sandbox::SYSTEM_THREADS`).
    system: mlua::Table,
}

impl Threads {
    /// Builds the loops over wait.lua's `run` and the batch dispatcher that may wait.
    pub(super) fn new(lua: &Lua, run: &Function, batch: &Function) -> mlua::Result<Threads> {
        let make = |body: &Function| -> mlua::Result<Function> {
            lua.load(
                "local body, DONE, yield, error = ...\n\
                 local function go(token, ...)\n  \
                 if token ~= DONE then error('not a phase call', 0) end\n  \
                 body(...)\n  return go(yield(DONE))\nend\nreturn go",
            )
            .set_name("=sluice/call")
            .set_mode(mlua::chunk::ChunkMode::Text)
            .call((
                body.clone(),
                done(),
                lua.globals()
                    .get::<mlua::Table>("coroutine")?
                    .get::<Function>("yield")?,
                lua.globals().get::<Function>("error")?,
            ))
        };
        Ok(Threads {
            loops: [make(run)?, make(batch)?],
            spare: [Vec::new(), Vec::new()],
            system: lua.named_registry_value(crate::plugins::lua::sandbox::SYSTEM_THREADS)?,
        })
    }

    /// A coroutine for a call of `body`: one left at the loop's yield, or a new one.
    pub(super) fn take(&mut self, lua: &Lua, body: Body) -> mlua::Result<Thread> {
        let b = body as usize;
        while let Some(t) = self.spare[b].pop() {
            // Still at the loop's yield, unless plugin code resumed it since (it then failed
            // the marker check and is dead).
            // SAFETY: mlua's handle keeps the coroutine alive; reading its status is all.
            if unsafe { ffi::lua_status(t.state()) } == ffi::LUA_YIELD {
                return Ok(t);
            }
        }
        let t = lua.create_thread(self.loops[b].clone())?;
        // Plugin code that keeps a handle to it cannot resume it (sandbox/guards.lua).
        self.system.raw_set(&t, true)?;
        Ok(t)
    }

    /// Keeps the coroutine of a call that ended by yielding [`done`] (so it is suspended at
    /// the loop's yield) for the next call.
    pub(super) fn keep(&mut self, body: Body, thread: Thread) {
        let b = body as usize;
        if self.spare[b].len() < SPARE {
            self.spare[b].push(thread);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Behind the sandbox's resume guard: a kept coroutine resumed without the marker (as
    /// plugin code would, had it a raw `coroutine.resume`) does not run its body again, ends,
    /// and is not handed out for the next call.
    #[test]
    fn a_loop_resumed_without_the_marker_ends_and_is_not_reused() {
        let lua = Lua::new();
        lua.set_named_registry_value(
            crate::plugins::lua::sandbox::SYSTEM_THREADS,
            lua.create_table().unwrap(),
        )
        .unwrap();
        let body: Function = lua
            .load("return function(x) calls = (calls or 0) + 1 last = x end")
            .eval()
            .unwrap();
        let mut threads = Threads::new(&lua, &body, &body).unwrap();
        let t = threads.take(&lua, Body::One).unwrap();
        let v: Value = t.resume((done(), 1)).unwrap();
        assert!(is_done(&v));
        threads.keep(Body::One, t.clone());

        // A second call with the marker reuses it.
        let again = threads.take(&lua, Body::One).unwrap();
        assert_eq!(again.to_pointer(), t.to_pointer());
        let v: Value = again.resume((done(), 2)).unwrap();
        assert!(is_done(&v));
        threads.keep(Body::One, again);

        // Forged arguments: refused by the loop, the body does not run.
        assert!(t.resume::<Value>((Value::Nil, 3)).is_err());
        assert_eq!(lua.globals().get::<i64>("calls").unwrap(), 2);
        assert_eq!(lua.globals().get::<i64>("last").unwrap(), 2);
        let fresh = threads.take(&lua, Body::One).unwrap();
        assert_ne!(fresh.to_pointer(), t.to_pointer());
    }
}
