//! A request's Lua tables (`kong.ctx.shared`, `kong.ctx.plugin`, `ngx.ctx`): where they
//! live in a VM, and the Lua-side `__index` that reads them once they are made.

use mlua::{Lua, Table};

/// Named registry value: the table of every request's Lua tables in this VM (request id →
/// [`RequestTables`]' table), made by [`install`](super::install) for the PDK's Lua side and
/// the runtime.
pub const REQUESTS: &str = "sluice.requests";

/// An `__index` metamethod written in Lua that reads a request's tables (`kong.ctx`,
/// `ngx.ctx`) itself once they are made. `source` is a chunk that receives the table of
/// [`REQUESTS`], a function returning the current request's id and plugin name (nothing outside
/// a request) and `fallback` (the Rust function that makes missing tables and raises outside a
/// request), and returns the metamethod; `name` names the chunk in errors.
pub(super) fn request_index(
    lua: &Lua,
    name: &str,
    source: &str,
    fallback: mlua::Function,
) -> mlua::Result<mlua::Function> {
    let requests: mlua::Table = lua.named_registry_value(REQUESTS)?;
    let current = crate::plugins::lua::util::support::raw_function(lua, |_, ()| {
        Ok(super::cur(|_, inst, tables| {
            Ok((
                tables.id,
                crate::plugins::lua::util::support::Text(inst.plugin.name.clone()),
            ))
        })
        .ok()
        .unzip())
    })?;
    lua.load(source)
        .set_name(name)
        .set_mode(mlua::chunk::ChunkMode::Text)
        .call((requests, current, fallback))
}

/// Where a request's Lua tables (`shared`, `plugin`, `ngx`) live: created on first use, so a
/// request whose plugins never touch kong.ctx or ngx.ctx creates none.
pub struct RequestTables {
    /// request id → tables, in the worker's VM (shared with the worker: a `Table` handle
    /// cloned per call cost a slot on mlua's reference thread and its release).
    pub requests: std::rc::Rc<Table>,
    /// The request.
    pub id: u64,
}

impl RequestTables {
    /// The request's tables, created if needed; `keyed` is the request's
    /// [`RequestState::lua_keyed`](crate::plugins::RequestState::lua_keyed).
    pub fn get(&self, lua: &Lua, keyed: &mut bool) -> mlua::Result<Table> {
        if let Ok(t) = self.requests.raw_get::<Table>(self.id) {
            return Ok(t);
        }
        *keyed = true;
        let t = lua.create_table()?;
        t.raw_set("shared", lua.create_table()?)?;
        t.raw_set("plugin", lua.create_table()?)?;
        t.raw_set("ngx", lua.create_table()?)?;
        self.requests.raw_set(self.id, t.clone())?;
        Ok(t)
    }
}
