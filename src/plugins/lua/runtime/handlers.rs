//! What a worker loads and finds for a phase call: a handler's table and phase methods, an
//! instance's conf, and the chunk loading itself.

use std::ffi::c_int;
use std::rc::Rc;

use mlua::{Lua, RegistryKey, Table, Value};

use super::super::{pdk, sandbox, LuaPlugin};
use crate::plugins::Phase;

/// A handler's phase methods, by [`Phase::index`] (None where it lacks one).
pub(super) type Methods = [Option<Rc<RegistryKey>>; Phase::ALL.len()];

/// An instance's handler table, its phase methods and its conf table: the keys, which keep
/// the registry slots alive, and the slots' numbers, which a call reads without following a
/// pointer per key.
#[derive(Clone)]
pub(super) struct Resolved {
    slots: Slots,
    pub(super) handler: Rc<RegistryKey>,
    pub(super) methods: Methods,
    pub(super) conf: Rc<RegistryKey>,
}

/// The registry slots of a [`Resolved`].
#[derive(Clone, Copy)]
struct Slots {
    handler: c_int,
    conf: c_int,
    methods: [Option<c_int>; Phase::ALL.len()],
}

impl Resolved {
    /// The keys, with their slot numbers read once.
    pub(super) fn new(handler: Rc<RegistryKey>, methods: Methods, conf: Rc<RegistryKey>) -> Self {
        let slots = Slots {
            handler: handler.id(),
            conf: conf.id(),
            methods: std::array::from_fn(|i| methods[i].as_deref().map(RegistryKey::id)),
        };
        Resolved {
            slots,
            handler,
            methods,
            conf,
        }
    }

    /// What a call of `phase` needs.
    pub(super) fn call(&self, phase: Phase) -> Call {
        Call {
            handler: self.slots.handler,
            method: self.slots.methods[phase.index()],
            conf: self.slots.conf,
        }
    }
}

/// The registry slots of an instance's handler table, of the method of one phase (None if the
/// handler lacks it) and of the instance's conf table. A call holds no key: the worker's
/// handler and conf maps hold them until its `collect`, which never runs during a call.
#[derive(Clone, Copy)]
pub(super) struct Call {
    pub(super) handler: c_int,
    pub(super) method: Option<c_int>,
    pub(super) conf: c_int,
}

/// A handler loaded in a worker's VM.
pub(super) struct Loaded {
    pub(super) table: Rc<RegistryKey>,
    /// The phase methods, resolved once (by [`Phase::index`]). Kept as registry
    /// keys and pushed straight onto the Lua stack by the call: a `Function` handle per call
    /// cost a registry read and a move to mlua's reference thread and back.
    pub(super) methods: Methods,
    /// Newest snapshot generation that uses it.
    pub(super) generation: u64,
}

impl Loaded {
    /// The handler table's key and its methods, for a call of `generation`.
    pub(super) fn resolve(&mut self, generation: u64) -> (Rc<RegistryKey>, Methods) {
        self.generation = self.generation.max(generation);
        (self.table.clone(), self.methods.clone())
    }
}

/// Loads a handler chunk in `lua` with a fresh sandboxed environment and checks its shape;
/// returns the handler table and its environment.
pub(in crate::plugins::lua) fn load_handler(
    lua: &Lua,
    plugin: &LuaPlugin,
    globals: &[(&str, Value)],
) -> mlua::Result<(Table, Table)> {
    let env = sandbox::plugin_env(lua, globals)?;
    let module = format!("kong.plugins.{}.handler", plugin.name);
    let chunk = format!("{}/handler.lua", plugin.name);
    match sandbox::run_chunk(lua, &plugin.handler, &chunk, env.clone(), &module)? {
        Value::Table(t) => Ok((t, env)),
        other => Err(mlua::Error::runtime(format!(
            "handler.lua must return a table, got {}",
            other.type_name()
        ))),
    }
}

/// Runs a handler's `init_worker` method, if it has one, as Kong does once per worker: here
/// once per VM that loads the handler (no request is in progress; timers do not exist).
pub(in crate::plugins::lua) fn init_worker(handler: &Table) -> mlua::Result<()> {
    if let Value::Function(f) = handler.get::<Value>("init_worker")? {
        pdk::as_init_worker(|| f.call::<()>(handler.clone()))?;
    }
    Ok(())
}
