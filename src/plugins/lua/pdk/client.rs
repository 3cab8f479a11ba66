//! `kong.client`, `kong.ctx`, `kong.log`, `kong.router`, `kong.ip`, `kong.nginx` and
//! `kong.configuration`.

use mlua::{Function, Lua, MultiValue, Table, Value};

use super::entity_table::{entity_table, Kind};
use super::{cur, set_fn};
use crate::config::model::Config;
use crate::plugins::lua::util::support::{function, Text};
use crate::plugins::lua::util::Json;
use crate::proxy::ip_text;

fn consumer_table(lua: &Lua, cfg: &Config, i: usize) -> mlua::Result<Table> {
    let c = &cfg.consumers[i];
    let t = lua.create_table()?;
    t.set("id", c.id.as_str())?;
    t.set("username", c.username.as_deref())?;
    t.set("custom_id", c.custom_id.as_deref())?;
    t.set(
        "tags",
        lua.create_sequence_from(c.tags.iter().map(String::as_str))?,
    )?;
    Ok(t)
}

/// Joins log arguments as Kong does (no separator), with Lua's tostring, cut at
/// [`crate::plugins::lua::util::support::MAX_LOG_LINE`] bytes as nginx cuts error log lines.
fn message(tostring: &Function, args: MultiValue) -> mlua::Result<String> {
    let mut out = String::new();
    for v in args {
        match v {
            Value::String(s) => {
                crate::plugins::lua::util::support::push_capped(&mut out, &s.as_bytes())
            }
            other => crate::plugins::lua::util::support::push_capped(
                &mut out,
                tostring.call::<String>(other)?.as_bytes(),
            ),
        }
    }
    Ok(out)
}

fn log_at(level: &'static str, plugin: &str, msg: &str) {
    match level {
        "debug" => tracing::debug!(target: "lua", plugin, "{msg}"),
        "info" | "notice" => tracing::info!(target: "lua", plugin, "{msg}"),
        "warn" => tracing::warn!(target: "lua", plugin, "{msg}"),
        _ => tracing::error!(target: "lua", plugin, level, "{msg}"),
    }
}

/// Whether lines at `level` are written (the log filter is set once, at startup).
fn level_enabled(level: &str) -> bool {
    use tracing::Level;
    match level {
        "debug" => tracing::enabled!(target: "lua", Level::DEBUG),
        "info" | "notice" => tracing::enabled!(target: "lua", Level::INFO),
        "warn" => tracing::enabled!(target: "lua", Level::WARN),
        _ => tracing::enabled!(target: "lua", Level::ERROR),
    }
}

/// A log function for `level` (also used for `ngx.log`). At a level the log filter drops, a
/// Lua function that does nothing: as nginx's `ngx.log`, a disabled level costs no formatting
/// (it cost ~3,800 instructions per `kong.log.debug` call).
pub(super) fn logger(lua: &Lua, level: &'static str) -> mlua::Result<Function> {
    if !level_enabled(level) {
        return lua
            .load("return function() end")
            .set_name("=kong.log")
            .set_mode(mlua::chunk::ChunkMode::Text)
            .eval();
    }
    let tostring: Function = lua.globals().get("tostring")?;
    crate::plugins::lua::util::support::raw_function(lua, move |_, args: MultiValue| {
        let msg = message(&tostring, args)?;
        let plugin = cur(|_, inst, _| Ok(inst.name.clone())).unwrap_or_else(|_| "-".into());
        log_at(level, &plugin, &msg);
        Ok(())
    })
}

pub(super) fn install(lua: &Lua, kong: &Table) -> mlua::Result<()> {
    // kong.client
    let client = lua.create_table()?;
    // get_ip: the connection's peer; get_forwarded_ip: the client a trusted proxy named.
    set_fn(lua, &client, "get_ip", |_, ()| {
        cur(|c, _, _| Ok(c.state.peer.map(|a| Text(ip_text(a.ip())))))
    })?;
    set_fn(lua, &client, "get_forwarded_ip", |_, ()| {
        cur(|c, _, _| Ok(c.client_ip().map(|i| Text(ip_text(i)))))
    })?;
    set_fn(lua, &client, "get_port", |_, ()| {
        cur(|c, _, _| Ok(c.state.peer.map(|a| a.port())))
    })?;
    set_fn(lua, &client, "get_forwarded_port", |_, ()| {
        cur(|c, _, _| Ok(c.state.client.map(|a| a.port()).filter(|p| *p != 0)))
    })?;
    set_fn(lua, &client, "get_protocol", |_, ()| {
        cur(|c, _, _| Ok(Text(c.state.scheme)))
    })?;
    // What a Lua plugin passed to `authenticate` is returned as it was given (Kong keeps the
    // tables); otherwise the consumer a native plugin authenticated.
    set_fn(lua, &client, "get_consumer", |lua, ()| {
        cur(|c, _, tables| {
            if c.state.lua_auth {
                return tables
                    .get(lua, &mut c.state.lua_keyed)?
                    .raw_get::<Value>("consumer");
            }
            match c.state.consumer {
                Some(i) => Ok(Value::Table(consumer_table(lua, &c.snap.config, i)?)),
                None => Ok(Value::Nil),
            }
        })
    })?;
    set_fn(lua, &client, "get_credential", |lua, ()| {
        cur(|c, _, tables| {
            if c.state.lua_auth {
                return tables
                    .get(lua, &mut c.state.lua_keyed)?
                    .raw_get::<Value>("credential");
            }
            match &c.state.credential {
                Some(j) => super::super::util::json_to_lua(lua, j),
                None => Ok(Value::Nil),
            }
        })
    })?;
    set_fn(
        lua,
        &client,
        "load_consumer",
        |lua, (id, by_username): (String, Option<bool>)| {
            cur(|c, _, _| {
                let cfg = &c.snap.config;
                let found = cfg.consumers.iter().position(|x| {
                    x.id == id
                        || (by_username == Some(true) && x.username.as_deref() == Some(id.as_str()))
                });
                match found {
                    Some(i) => Ok(Value::Table(consumer_table(lua, cfg, i)?)),
                    None => Ok(Value::Nil),
                }
            })
        },
    )?;
    set_fn(
        lua,
        &client,
        "authenticate",
        |lua, (consumer, credential): (Value, Value)| {
            cur(|c, _, tables| {
                // Native plugins (acl, rate limiting by consumer) and the log see the consumer
                // of the config with that id, if there is one.
                c.state.consumer = match &consumer {
                    Value::Table(t) => match t.raw_get::<Value>("id")? {
                        Value::String(id) => {
                            let id = id.to_string_lossy();
                            c.snap.config.consumers.iter().position(|x| x.id == id)
                        }
                        _ => None,
                    },
                    _ => None,
                };
                c.state.credential = match &credential {
                    Value::Table(_) => super::super::util::lua_to_json(&credential).ok(),
                    _ => None,
                };
                let t = tables.get(lua, &mut c.state.lua_keyed)?;
                t.raw_set("consumer", consumer)?;
                t.raw_set("credential", credential)?;
                c.state.lua_auth = true;
                Ok(())
            })
        },
    )?;
    kong.set("client", client)?;

    // kong.ctx.shared / kong.ctx.plugin: per-request tables (plugin: per plugin, shared with
    // its clones).
    // The tables already made are read in Lua; the Rust function makes missing ones.
    let ctx = lua.create_table()?;
    let mt = lua.create_table()?;
    let make = function(lua, |lua, key: String| {
        cur(|c, inst, tables| match key.as_str() {
            "shared" => tables
                .get(lua, &mut c.state.lua_keyed)?
                .get::<Value>("shared"),
            "plugin" => {
                let plugins: Table = tables.get(lua, &mut c.state.lua_keyed)?.get("plugin")?;
                let name = inst.plugin.name.as_str();
                match plugins.get::<Value>(name)? {
                    Value::Table(t) => Ok(Value::Table(t)),
                    _ => {
                        let t = lua.create_table()?;
                        plugins.set(name, t.clone())?;
                        Ok(Value::Table(t))
                    }
                }
            }
            _ => Ok(Value::Nil),
        })
    })?;
    let index = super::request_index(
        lua,
        "=kong.ctx",
        r#"
            local requests, current, make = ...
            return function(_, k)
              if k ~= "shared" and k ~= "plugin" then
                return nil
              end
              local id, name = current()
              local t = id and requests[id]
              if t then
                if k == "shared" then
                  return t.shared
                end
                local p = t.plugin[name]
                if p then
                  return p
                end
              end
              return make(k)
            end
            "#,
        make,
    )?;
    mt.raw_set("__index", index)?;
    ctx.set_metatable(Some(mt))?;
    kong.set("ctx", ctx)?;

    // kong.log
    let log = lua.create_table()?;
    for level in [
        "debug", "info", "notice", "warn", "err", "crit", "alert", "emerg",
    ] {
        log.set(level, logger(lua, level)?)?;
    }
    let inspect = logger(lua, "debug")?;
    log.set("inspect", inspect)?;
    // What Kong's serializer gives (as file-log writes it); log.lua applies the request's
    // set_serialize_value edits on top.
    set_fn(lua, &log, "serialize", |_, ()| {
        cur(|c, _, _| {
            Ok(Json {
                value: crate::plugins::native::log_serializer::serialize_base(c),
                drop_nulls: true,
            })
        })
    })?;
    let log_mt = lua.create_table()?;
    let default = logger(lua, "notice")?;
    log_mt.set(
        "__call",
        crate::plugins::lua::util::support::raw_function(lua, move |_, args: MultiValue| {
            let mut args = args.into_iter();
            args.next(); // the table itself
            default.call::<()>(MultiValue::from_iter(args))
        })?,
    )?;
    log.set_metatable(Some(log_mt))?;
    kong.set("log", log)?;

    // kong.router
    let router = lua.create_table()?;
    for (name, kind) in [("get_route", Kind::Route), ("get_service", Kind::Service)] {
        set_fn(lua, &router, name, move |lua, ()| {
            cur(|c, _, _| {
                let i = match kind {
                    Kind::Route => c.state.route,
                    Kind::Service => c.state.service,
                };
                i.map(|i| entity_table(lua, &c.snap.config, kind, i))
                    .transpose()
            })
        })?;
    }
    kong.set("router", router)?;

    let ip = lua.create_table()?;
    set_fn(lua, &ip, "is_trusted", |_, ip: String| {
        Ok(ip
            .parse::<std::net::IpAddr>()
            .is_ok_and(crate::proxy::realip::is_trusted))
    })?;
    kong.set("ip", ip)?;
    let nginx = lua.create_table()?;
    set_fn(lua, &nginx, "get_subsystem", |_, ()| Ok("http"))?;
    set_fn(lua, &nginx, "get_statistics", |lua, ()| {
        let [active, reading, writing, waiting, accepted, handled, total] =
            crate::metrics::connections::snapshot();
        let t = lua.create_table()?;
        t.set("connections_active", active)?;
        t.set("connections_reading", reading)?;
        t.set("connections_writing", writing)?;
        t.set("connections_waiting", waiting)?;
        t.set("connections_accepted", accepted)?;
        t.set("connections_handled", handled)?;
        t.set("total_requests", total)?;
        Ok(t)
    })?;
    kong.set("nginx", nginx)?;

    // kong.node.get_memory_stats: each worker's Lua VM (no shared dicts exist here).
    let node: Table = kong.get("node")?;
    set_fn(
        lua,
        &node,
        "get_memory_stats",
        |lua, (unit, scale): (Option<String>, Value)| {
            let convert = |n: usize| {
                crate::plugins::lua::util::bytes_to_str(lua, n as f64, unit.clone(), scale.clone())
            };
            convert(0)?;
            let workers = lua.create_table()?;
            for used in crate::plugins::lua::runtime::vm_memory() {
                let w = lua.create_table()?;
                w.set("pid", std::process::id())?;
                match unit.as_deref() {
                    None | Some("b") | Some("B") => w.set("http_allocated_gc", used)?,
                    _ => w.set("http_allocated_gc", convert(used)?)?,
                }
                workers.raw_push(w)?;
            }
            let t = lua.create_table()?;
            t.set("workers_lua_vms", workers)?;
            t.set("lua_shared_dicts", lua.create_table()?)?;
            Ok(t)
        },
    )?;
    let configuration = lua.create_table()?;
    configuration.set("database", "off")?;
    configuration.set("role", "traditional")?;
    let flavor = match crate::config::router_flavor() {
        crate::router::Flavor::Expressions => "expressions",
        crate::router::Flavor::TraditionalCompatible => "traditional_compatible",
    };
    configuration.set("router_flavor", flavor)?;
    kong.set("configuration", configuration)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    /// kong.ctx reads the request's tables in Lua and asks Rust only for the request; outside
    /// a request its fields raise Kong's plain error rather than returning something.
    #[test]
    fn kong_ctx_outside_a_request_raises() {
        let lua = crate::plugins::lua::sandbox::new_vm().unwrap();
        let globals = super::super::install(&lua).unwrap();
        let kong = globals
            .iter()
            .find(|(n, _)| *n == "kong")
            .unwrap()
            .1
            .clone();
        let check: mlua::Function = lua
            .load(
                r#"
                local kong = ...
                for _, k in ipairs({ "shared", "plugin" }) do
                  local ok, err = pcall(function() return kong.ctx[k] end)
                  assert(not ok and type(err) == "string", tostring(err))
                  assert(err:find("only be called while a request is processed", 1, true), err)
                end
                assert(kong.ctx.other == nil)
                "#,
            )
            .into_function()
            .unwrap();
        check.call::<()>(kong).unwrap_or_else(|e| panic!("{e}"));
    }
}
