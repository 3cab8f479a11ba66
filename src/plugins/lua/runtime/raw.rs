//! Phase calls entered through LuaJIT's C API: the function and its arguments pushed from
//! their registry slots, then `lua_pcall` or `lua_resume`.
//!
//! mlua's `Function::call` and `Thread::resume` convert every argument through its generic
//! path, check the thread's state and frames, and move values between stacks: ~700
//! instructions per phase call above what the C API needs. The error of a failed call is
//! handed back to mlua by raising it again from a Lua function mlua calls, so it becomes
//! the same `mlua::Error` mlua's own calls make of it (a Rust callback's error stays that
//! error; a message keeps its position).

use std::ffi::c_int;
use std::ptr;

use mlua::{ffi, Function, Lua, RegistryKey, Thread};

/// An argument of a raw call.
#[derive(Clone, Copy)]
pub(super) enum Arg {
    /// The value in this registry slot (a [`RegistryKey::id`] whose key is alive).
    Slot(c_int),
    Num(f64),
    Int(i64),
    /// A light userdata (the marker of threads.rs).
    Ptr(*mut std::ffi::c_void),
}

/// What a resume came back with.
pub(super) enum Resumed {
    /// The coroutine yielded exactly this light userdata.
    Yielded(*mut std::ffi::c_void),
    /// It yielded anything else (a wait), or returned.
    Other,
}

/// The registry slot a failed call's error goes through, and the function that raises it
/// again under mlua.
pub(super) struct Entry {
    slot: RegistryKey,
    rethrow: Function,
}

impl Entry {
    pub(super) fn new(lua: &Lua) -> mlua::Result<Entry> {
        let rethrow = lua
            .load("local e = ... error(e, 0)")
            .set_name("=sluice/rethrow")
            .set_mode(mlua::chunk::ChunkMode::Text)
            .into_function()?;
        Ok(Entry {
            slot: lua.create_registry_value(false)?,
            rethrow,
        })
    }

    /// Calls the function in registry slot `f` with `args` on the VM's main state, without
    /// results.
    pub(super) fn pcall(&self, lua: &Lua, f: c_int, args: &[Arg]) -> mlua::Result<()> {
        let n = args.len() as c_int;
        // SAFETY: the stack is checked for room before the pushes; the call leaves the stack
        // as it found it (no results; the error value is moved to the registry).
        let outcome = lua.exec_raw_lua(|raw| unsafe {
            let state = raw.state();
            if ffi::lua_checkstack(state, n + 1) == 0 {
                return Err(mlua::Error::runtime("out of Lua stack"));
            }
            let top = ffi::lua_gettop(state);
            ffi::lua_rawgeti(state, ffi::LUA_REGISTRYINDEX, f.into());
            push(state, args);
            if ffi::lua_pcall(state, n, 0, 0) == ffi::LUA_OK {
                return Ok(true);
            }
            self.keep_error(state, top);
            Ok(false)
        });
        match outcome {
            Ok(true) => Ok(()),
            Ok(false) => Err(self.raise(lua)),
            Err(e) => Err(e),
        }
    }

    /// Resumes `thread` with `args` (its first resume, or at a yield that takes them).
    pub(super) fn resume(&self, lua: &Lua, thread: &Thread, args: &[Arg]) -> mlua::Result<Resumed> {
        let co = thread.state();
        let n = args.len() as c_int;
        // SAFETY: `co` is a live coroutine of this VM (mlua's handle keeps it), not running
        // (the caller took it suspended or new); room is checked before the pushes; its
        // stack is left empty for the next resume.
        unsafe {
            if ffi::lua_checkstack(co, n + 1) == 0 {
                return Err(mlua::Error::runtime("out of Lua stack"));
            }
            push(co, args);
            let mut nres: c_int = 0;
            match ffi::lua_resume(co, ptr::null_mut(), n, &raw mut nres) {
                ffi::LUA_YIELD => {
                    let marker = (nres == 1 && ffi::lua_type(co, -1) == ffi::LUA_TLIGHTUSERDATA)
                        .then(|| ffi::lua_touserdata(co, -1));
                    ffi::lua_settop(co, 0);
                    Ok(marker.map_or(Resumed::Other, Resumed::Yielded))
                }
                ffi::LUA_OK => {
                    ffi::lua_settop(co, 0);
                    Ok(Resumed::Other)
                }
                _ => {
                    let top = ffi::lua_gettop(co) - 1;
                    self.keep_error(co, top);
                    Err(self.raise(lua))
                }
            }
        }
    }

    /// Moves the error value on top of `state` to the slot and leaves `top` values.
    ///
    /// # Safety
    /// `state` is a state of this VM with the error value on top.
    unsafe fn keep_error(&self, state: *mut ffi::lua_State, top: c_int) {
        // SAFETY: the caller's contract; the slot is an integer key of the registry.
        unsafe {
            ffi::lua_rawseti(state, ffi::LUA_REGISTRYINDEX, self.slot.id().into());
            ffi::lua_settop(state, top.max(0));
        }
    }

    /// The error kept in the slot, as mlua reports it (the slot is emptied).
    fn raise(&self, lua: &Lua) -> mlua::Error {
        let value = lua.registry_value::<mlua::Value>(&self.slot);
        // SAFETY: one push and the store that pops it.
        lua.exec_raw_lua(|raw| unsafe {
            let state = raw.state();
            if ffi::lua_checkstack(state, 1) != 0 {
                ffi::lua_pushboolean(state, 0);
                ffi::lua_rawseti(state, ffi::LUA_REGISTRYINDEX, self.slot.id().into());
            }
        });
        match value {
            Ok(v) => match self.rethrow.call::<()>(v) {
                Err(e) => e,
                Ok(()) => mlua::Error::runtime("a call failed"),
            },
            Err(e) => e,
        }
    }
}

/// Pushes `args` onto `state`.
///
/// # Safety
/// `state` has room for them.
unsafe fn push(state: *mut ffi::lua_State, args: &[Arg]) {
    for a in args {
        // SAFETY: the caller's contract; registry slots are integer keys of the registry.
        unsafe {
            match a {
                Arg::Slot(k) => {
                    ffi::lua_rawgeti(state, ffi::LUA_REGISTRYINDEX, (*k).into());
                }
                Arg::Num(x) => ffi::lua_pushnumber(state, *x),
                Arg::Int(i) => ffi::lua_pushinteger(state, *i as ffi::lua_Integer),
                Arg::Ptr(p) => ffi::lua_pushlightuserdata(state, *p),
            }
        }
    }
}
