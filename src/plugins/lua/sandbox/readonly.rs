//! Plugins cannot reach into each other: the `kong` and `ngx` tables and every module `require`
//! hands out are read-only views (`readonly.lua`), built once per VM and shared by all its
//! plugins. A write raises Kong's sandbox error ("Cannot modify kong.request.get_header.
//! Protected by the sandbox."); metatables are hidden. `kong.ctx.shared` and the request-bound
//! tables (`ngx.ctx`, `ngx.var`, `ngx.header`, `kong.ctx.plugin`) stay writable: they belong to
//! the request, not to the VM. Data modules (`kong.db.schema.typedefs`) are copied for each
//! `require` instead, so schemas can embed and change them freely.
//!
//! Each plugin environment gets its own view of `ngx` (`overlay.lua`): what a plugin assigns
//! there that the shared table refuses (replacing `ngx.req.get_headers`, as Kong's own tests
//! and some plugins do) stays in that plugin's view, and the PDK honours it for that plugin's
//! calls only ([`PLUGIN_NGX`]).

use mlua::{Function, Lua, Table};

/// Builds the views of one VM (one cache of already frozen tables, so shared subtables get
/// one view).
pub struct Freezer {
    freeze: Function,
    copy: Function,
    overlay: Function,
    seen: Table,
}

/// Named registry value: the function that makes a plugin's view of `ngx`.
pub const NGX_OVERLAY: &str = "sluice.ngx_overlay";
/// Named registry value: handler key → that handler's view of `ngx` (set by the runtime when
/// it loads a handler; the PDK's Lua layer reads it through `internal.plugin_ngx`).
pub const PLUGIN_NGX: &str = "sluice.plugin_ngx";

impl Freezer {
    /// A freezer for `lua`.
    pub fn new(lua: &Lua) -> mlua::Result<Freezer> {
        let (freeze, copy, view_of): (Function, Function, Function) = lua
            .load(include_str!("readonly.lua"))
            .set_name("=sandbox.readonly")
            .set_mode(mlua::chunk::ChunkMode::Text)
            .call(())?;
        let overlay: Function = lua
            .load(include_str!("overlay.lua"))
            .set_name("=sandbox.overlay")
            .set_mode(mlua::chunk::ChunkMode::Text)
            .call(view_of)?;
        Ok(Freezer {
            freeze,
            copy,
            overlay,
            seen: lua.create_table()?,
        })
    }

    /// The read-only view of `t`; `name` is how errors call it (`kong`, `ngx`, `cjson`).
    pub fn freeze(&self, t: Table, name: &str) -> mlua::Result<Table> {
        self.freeze.call((t, name, self.seen.clone()))
    }

    /// The function that makes one plugin's view of a frozen table (`overlay.lua`).
    pub fn overlay_maker(&self) -> Function {
        self.overlay.clone()
    }

    /// A function returning a fresh deep copy of `t` at each call (metatables shared).
    pub fn copier(&self, lua: &Lua, t: Table) -> mlua::Result<Function> {
        let copy = self.copy.clone();
        crate::plugins::lua::util::support::raw_function(lua, move |_, ()| {
            copy.call::<Table>(t.clone())
        })
    }
}
