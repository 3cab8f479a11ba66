//! `kong.router.get_route` / `get_service`: a fresh table per call (no plugin can change what
//! another one reads), written with LuaJIT's API straight on the stack when the VM has room.
//! Through mlua each field was a protected call near the limit, and each string and list a
//! handle moved to and from its reference thread: ~20,000 instructions per route table.

use mlua::{ffi, Lua, Table, Value};

use crate::config::model::Config;
use crate::plugins::entity::{self, EntityOut};
use crate::plugins::lua::util::support::room_for;

/// Which entity.
#[derive(Clone, Copy)]
pub(super) enum Kind {
    Route,
    Service,
}

fn write(kind: Kind, cfg: &Config, i: usize, out: &mut impl EntityOut) {
    match kind {
        Kind::Route => entity::route(cfg, i, out),
        Kind::Service => entity::service(cfg, i, out),
    }
}

/// Entity `i` of `cfg` as a Lua table (unset optional fields absent, as in Kong's entities).
pub(super) fn entity_table(lua: &Lua, cfg: &Config, kind: Kind, i: usize) -> mlua::Result<Table> {
    let mut size = Size(512);
    write(kind, cfg, i, &mut size);
    if room_for(lua.used_memory(), size.0) {
        // SAFETY: the room was checked just above (see `Stack`).
        return lua.exec_raw_lua(|raw| unsafe {
            let state = raw.state();
            if ffi::lua_checkstack(state, 6) == 0 {
                return Err(mlua::Error::StackError);
            }
            ffi::lua_createtable(state, 0, 16);
            write(kind, cfg, i, &mut Stack(state));
            raw.pop::<Table>()
        });
    }
    let json = match kind {
        Kind::Route => entity::route_json(cfg, i),
        Kind::Service => entity::service_json(cfg, i),
    };
    match crate::plugins::lua::util::conf_to_lua(lua, &json)? {
        Value::Table(t) => Ok(t),
        _ => Err(mlua::Error::runtime("an entity is not a table")),
    }
}

/// An upper bound of what [`Stack`] allocates: the strings with their headers, a table slot
/// per field and a table per list.
struct Size(usize);

impl EntityOut for Size {
    fn str(&mut self, key: &'static str, v: &str) {
        self.0 += key.len() + v.len() + 128;
    }
    fn opt_str(&mut self, key: &'static str, v: Option<&str>) {
        self.str(key, v.unwrap_or(""));
    }
    fn int(&mut self, key: &'static str, _: i64) {
        self.str(key, "");
    }
    fn boolean(&mut self, key: &'static str, _: bool) {
        self.str(key, "");
    }
    fn strs<'a>(&mut self, key: &'static str, v: impl ExactSizeIterator<Item = &'a str>) {
        self.0 += key.len() + 256 + v.map(|s| s.len() + 48).sum::<usize>();
    }
    fn id_of(&mut self, key: &'static str, id: Option<&str>) {
        self.0 += 256;
        self.str(key, id.unwrap_or(""));
    }
}

/// Writes fields into the table on top of the stack.
///
/// Safety: the VM must have room for what [`Size`] counts ([`room_for`]) and the stack room for
/// four more slots: then none of these calls can raise (they raise only when an allocation
/// fails), so no Lua error unwinds through Rust frames.
struct Stack(*mut ffi::lua_State);

impl Stack {
    fn text(&self, s: &str) {
        // SAFETY: see the type's documentation.
        unsafe { ffi::lua_pushlstring(self.0, s.as_ptr().cast(), s.len()) };
    }
    fn set(&self) {
        // SAFETY: key and value were pushed above the table.
        unsafe { ffi::lua_rawset(self.0, -3) };
    }
}

impl EntityOut for Stack {
    fn str(&mut self, key: &'static str, v: &str) {
        self.text(key);
        self.text(v);
        self.set();
    }
    fn opt_str(&mut self, key: &'static str, v: Option<&str>) {
        if let Some(v) = v {
            self.str(key, v);
        }
    }
    fn int(&mut self, key: &'static str, v: i64) {
        self.text(key);
        // SAFETY: see the type's documentation (a number allocates nothing).
        unsafe { ffi::lua_pushnumber(self.0, v as f64) };
        self.set();
    }
    fn boolean(&mut self, key: &'static str, v: bool) {
        self.text(key);
        // SAFETY: as above.
        unsafe { ffi::lua_pushboolean(self.0, i32::from(v)) };
        self.set();
    }
    fn strs<'a>(&mut self, key: &'static str, v: impl ExactSizeIterator<Item = &'a str>) {
        self.text(key);
        // SAFETY: see the type's documentation.
        unsafe {
            ffi::lua_createtable(self.0, v.len().min(i32::MAX as usize) as i32, 0);
            for (n, s) in v.enumerate() {
                self.text(s);
                ffi::lua_rawseti(self.0, -2, (n + 1) as ffi::lua_Integer);
            }
        }
        self.set();
    }
    fn id_of(&mut self, key: &'static str, id: Option<&str>) {
        let Some(id) = id else { return };
        self.text(key);
        // SAFETY: see the type's documentation.
        unsafe { ffi::lua_createtable(self.0, 0, 1) };
        self.str("id", id);
        self.set();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugins::lua::util::{lua_to_json, support::on_both_paths};

    /// Both ways of building give Kong's entity: every field of the JSON form but the unset
    /// ones, lists as sequences, the service as `{ id = ... }`.
    #[test]
    fn built_on_the_stack_or_through_mlua_the_entities_agree() {
        let snap = crate::snapshot::load_str(
            r#"
_format_version: "3.0"
services:
  - name: svc
    url: http://127.0.0.1:9/base
    tags: [a, b]
    routes:
      - name: r
        paths: ["/p", "~/re$"]
        hosts: [example.test]
        methods: [GET, POST]
        regex_priority: 3
  - host: other.test
"#,
            "t",
            1,
        )
        .unwrap();
        let cfg = &snap.config;
        let lua = Lua::new();
        let limit = crate::plugins::lua::sandbox::limits().memory;
        lua.set_memory_limit(limit).unwrap();
        let expected = |json: serde_json::Value| -> serde_json::Value {
            // cjson's rules read an empty table back as an object.
            let mut map = json.as_object().unwrap().clone();
            map.retain(|_, v| !v.is_null());
            for v in map.values_mut() {
                if v.as_array().is_some_and(Vec::is_empty) {
                    *v = serde_json::json!({});
                }
            }
            serde_json::Value::Object(map)
        };
        let run = |lua: &Lua| {
            for (kind, i, json) in [
                (Kind::Route, 0, entity::route_json(cfg, 0)),
                (Kind::Service, 0, entity::service_json(cfg, 0)),
                (Kind::Service, 1, entity::service_json(cfg, 1)),
            ] {
                let t = entity_table(lua, cfg, kind, i).unwrap();
                let got = lua_to_json(&Value::Table(t)).unwrap();
                assert_eq!(got, expected(json));
            }
        };
        let service_name: Option<String> = entity_table(&lua, cfg, Kind::Service, 1)
            .unwrap()
            .get("name")
            .unwrap();
        assert_eq!(service_name, None, "an unset name is absent");
        on_both_paths(&lua, run);
    }
}
