//! What a worker loads and finds for a phase call: a handler's table and phase methods, an
//! instance's conf, and the chunk loading itself.

use std::rc::Rc;

use mlua::{Lua, RegistryKey, Table, Value};

use super::super::{pdk, sandbox, LuaPlugin};
use crate::plugins::Phase;

/// A handler's phase methods, by [`Phase::index`] (None where it lacks one).
pub(super) type Methods = [Option<Rc<RegistryKey>>; Phase::ALL.len()];

/// An instance's handler table, its phase methods and its conf table.
#[derive(Clone)]
pub(super) struct Resolved {
    pub(super) handler: Rc<RegistryKey>,
    pub(super) methods: Methods,
    pub(super) conf: Rc<RegistryKey>,
}

impl Resolved {
    /// What a call of `phase` needs.
    pub(super) fn call(&self, phase: Phase) -> Call {
        Call {
            handler: self.handler.clone(),
            method: self.methods[phase.index()].clone(),
            conf: self.conf.clone(),
        }
    }
}

/// An instance's handler table, the method of one phase (None if the handler lacks it) and
/// the instance's conf table.
pub(super) struct Call {
    pub(super) handler: Rc<RegistryKey>,
    pub(super) method: Option<Rc<RegistryKey>>,
    pub(super) conf: Rc<RegistryKey>,
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
