//! The Rust functions `wait.lua` and `socket.lua` call (never handed to plugins), and the installation of
//! `ngx.sleep`, `ngx.socket`, `ngx.thread` in a VM.

use std::time::Duration;

use bytes::Bytes;
use mlua::{Function, IntoLua, Lua, MultiValue, Table, Value};

use super::conn::Read;
use super::{Io, Outcome, Step, Ticket, DEFAULT_TIMEOUT};
use crate::plugins::lua::pdk;
use crate::plugins::lua::util::support;
use crate::plugins::RequestState;

/// Named registry value: wait.lua's `run`, the body of every phase call that may wait.
pub const RUN: &str = "sluice.io.run";
/// Named registry value: wait.lua's table of light-thread states by request id (the runtime
/// drops a request's entry when the request ends).
pub const STATES: &str = "sluice.io.states";
/// Named registry value: the module wait.lua returned (for modules built over it).
pub const MODULE: &str = "sluice.io.module";

/// Kong's `lua_socket_pool_size`.
const POOL_SIZE: usize = 256;

/// Runs `f` on the current request's I/O, checking that socket `rid` belongs to it.
fn with_io<R>(rid: Option<u64>, f: impl FnOnce(&mut Io, u64) -> R) -> mlua::Result<R> {
    pdk::with_state(|state: &mut RequestState| {
        if rid.is_some_and(|r| r != state.id) {
            return Err(support::raise("bad request"));
        }
        let id = state.id;
        let io = state.io.get_or_insert_with(Default::default);
        Ok(f(io, id))
    })
}

/// The Lua values of an outcome: what the waiting Lua function returns.
pub fn outcome_values(lua: &Lua, o: Outcome) -> mlua::Result<MultiValue> {
    let s = |b: &Bytes| lua.create_string(b).map(Value::String);
    Ok(match o {
        Outcome::Unit => MultiValue::new(),
        Outcome::Int(n) => MultiValue::from_vec(vec![Value::Integer(n)]),
        Outcome::Data(d) => MultiValue::from_vec(vec![s(&d)?]),
        Outcome::Until(d, found) => {
            MultiValue::from_vec(vec![s(&d)?, Value::Nil, Value::Nil, Value::Boolean(found)])
        }
        Outcome::Fail(err, partial) => MultiValue::from_vec(vec![
            Value::Nil,
            lua.create_string(&err)?.into_lua(lua)?,
            s(&partial)?,
        ]),
        Outcome::Native(_) => {
            return Err(mlua::Error::runtime(
                "a bundled plugin's operation cannot be handed to Lua",
            ))
        }
    })
}

/// What a Rust operation returns to wait.lua: its ticket, or `false` and the results.
fn step_values(lua: &Lua, step: Result<Step, String>) -> mlua::Result<MultiValue> {
    match step {
        Ok(Step::Wait(t)) => Ok(MultiValue::from_vec(vec![Value::Number(t as f64)])),
        Ok(Step::Now(o)) => {
            let mut v = outcome_values(lua, o)?;
            v.push_front(Value::Boolean(false));
            Ok(v)
        }
        Err(e) => Ok(MultiValue::from_vec(vec![
            Value::Boolean(false),
            Value::Nil,
            lua.create_string(&e)?.into_lua(lua)?,
        ])),
    }
}

fn ms(v: Option<f64>) -> Option<Duration> {
    v.map(|ms| {
        if ms <= 0.0 {
            DEFAULT_TIMEOUT
        } else {
            Duration::from_secs_f64(ms / 1000.0)
        }
    })
}

fn handle(h: f64) -> usize {
    h as usize
}

/// nginx's name of the context the current code runs in, for "API disabled in the context
/// of ..." errors.
fn context() -> &'static str {
    match pdk::phase_name() {
        "rewrite" => "rewrite_by_lua*",
        "access" => "access_by_lua*",
        "header_filter" => "header_filter_by_lua*",
        "body_filter" => "body_filter_by_lua*",
        "log" => "log_by_lua*",
        "init_worker" => "init_worker_by_lua*",
        _ => "init_by_lua*",
    }
}

fn functions(lua: &Lua) -> mlua::Result<Table> {
    let rs = lua.create_table()?;
    let f = |name: &str, func: Function| rs.raw_set(name, func);
    f("context", support::function(lua, |_, ()| Ok(context()))?)?;
    // The request whose phase call may wait now (nil elsewhere).
    f(
        "waitable",
        support::function(lua, |_, ()| Ok(pdk::waitable_request().map(|id| id as f64)))?,
    )?;
    f(
        "sleep",
        support::function(lua, |lua, seconds: f64| {
            let step = with_io(None, |io, _| {
                io.sleep(Duration::from_secs_f64(seconds.max(0.0)))
            })?;
            step_values(lua, Ok(step))
        })?,
    )?;
    f(
        "cancel",
        support::function(lua, |_, ticket: f64| {
            with_io(None, |io, _| io.cancel(ticket as Ticket))
        })?,
    )?;
    f(
        "tcp",
        support::function(lua, |_, ()| {
            with_io(None, |io, id| io.tcp().map(|h| (h as f64, id as f64)))?
                .map_err(support::raise_here)
        })?,
    )?;
    f(
        "udp",
        support::function(lua, |_, ()| {
            with_io(None, |io, id| io.udp().map(|h| (h as f64, id as f64)))?
                .map_err(support::raise_here)
        })?,
    )?;
    f(
        "timeouts",
        support::function(
            lua,
            |_, (h, rid, c, s, r): (f64, f64, Option<f64>, Option<f64>, Option<f64>)| {
                with_io(Some(rid as u64), |io, _| {
                    io.set_timeouts(handle(h), [ms(c), ms(s), ms(r)])
                })
            },
        )?,
    )?;
    f(
        "connect",
        support::function(
            lua,
            |lua, (h, rid, host, port, pool): (f64, f64, String, Option<f64>, Option<String>)| {
                let port = port.map(|p| p as u16);
                let step = with_io(Some(rid as u64), |io, _| {
                    io.connect(handle(h), host, port, pool)
                })?;
                step_values(lua, step)
            },
        )?,
    )?;
    f(
        "handshake",
        support::function(
            lua,
            |lua, (h, rid, name, verify): (f64, f64, Option<String>, bool)| {
                let step = with_io(Some(rid as u64), |io, _| {
                    io.handshake(handle(h), name, verify)
                })?;
                step_values(lua, step)
            },
        )?,
    )?;
    f(
        "send",
        support::function(lua, |lua, (h, rid, data): (f64, f64, mlua::LuaString)| {
            let data = Bytes::copy_from_slice(&data.as_bytes());
            let step = with_io(Some(rid as u64), |io, _| io.send(handle(h), data))?;
            step_values(lua, step)
        })?,
    )?;
    f(
        "receive",
        support::function(
            lua,
            |lua,
             (h, rid, kind, n, pattern, inclusive): (
                f64,
                f64,
                String,
                Option<f64>,
                Option<mlua::LuaString>,
                Option<bool>,
            )| {
                let n = n.map(|n| n as usize);
                let read = match kind.as_str() {
                    "l" => Read::Line,
                    "a" => Read::All,
                    "n" => Read::Exactly(n.unwrap_or(0)),
                    "any" => Read::Any(n.unwrap_or(1)),
                    _ => Read::Until {
                        pattern: pattern
                            .map(|p| Bytes::copy_from_slice(&p.as_bytes()))
                            .unwrap_or_default(),
                        max: n,
                        inclusive: inclusive.unwrap_or(false),
                    },
                };
                let step = with_io(Some(rid as u64), |io, _| io.receive(handle(h), read))?;
                step_values(lua, step)
            },
        )?,
    )?;
    f(
        "keepalive",
        support::function(
            lua,
            |_, (h, rid, idle, size): (f64, f64, Option<f64>, Option<f64>)| {
                let idle = match idle {
                    None => DEFAULT_TIMEOUT,
                    Some(ms) => Duration::from_secs_f64(ms.max(0.0) / 1000.0),
                };
                let size = size.map_or(POOL_SIZE, |s| s as usize);
                let r = with_io(Some(rid as u64), |io, _| {
                    io.keepalive(handle(h), idle, size)
                })?;
                Ok(match r {
                    Ok(()) => (Some(1), None),
                    Err(e) => (None, Some(e)),
                })
            },
        )?,
    )?;
    f(
        "reused",
        support::function(lua, |_, (h, rid): (f64, f64)| {
            let r = with_io(Some(rid as u64), |io, _| io.reused(handle(h)))?;
            Ok(match r {
                Ok(n) => (Some(n), None),
                Err(e) => (None, Some(e)),
            })
        })?,
    )?;
    f(
        "close",
        support::function(lua, |_, (h, rid): (f64, f64)| {
            let r = with_io(Some(rid as u64), |io, _| io.close(handle(h)))?;
            Ok(match r {
                Ok(()) => (Some(1), None),
                Err(e) => (None, Some(e)),
            })
        })?,
    )?;
    f(
        "udp_peer",
        support::function(lua, |lua, (h, rid, host, port): (f64, f64, String, f64)| {
            let step = with_io(Some(rid as u64), |io, _| {
                io.udp_peer(handle(h), host, port as u16)
            })?;
            step_values(lua, step)
        })?,
    )?;
    f(
        "udp_send",
        support::function(lua, |lua, (h, rid, data): (f64, f64, mlua::LuaString)| {
            let r = with_io(Some(rid as u64), |io, _| {
                io.udp_send(handle(h), &data.as_bytes())
            })?;
            match r {
                Ok(o) => outcome_values(lua, o),
                Err(e) => outcome_values(lua, Outcome::fail(e)),
            }
        })?,
    )?;
    f(
        "udp_receive",
        support::function(lua, |lua, (h, rid, size): (f64, f64, f64)| {
            let step = with_io(Some(rid as u64), |io, _| {
                io.udp_receive(handle(h), size as usize)
            })?;
            step_values(lua, step)
        })?,
    )?;
    Ok(rs)
}

/// The Rust half of `kong.cache` (cache.lua).
fn cache_functions(lua: &Lua, now: Function) -> mlua::Result<Table> {
    use super::cache;
    let rs = lua.create_table()?;
    rs.raw_set("now", now)?;
    rs.raw_set(
        "epoch",
        support::function(lua, |_, ()| Ok(cache::epoch() as f64))?,
    )?;
    rs.raw_set(
        "get",
        support::function(lua, |lua, key: mlua::LuaString| {
            let key = key.to_str()?;
            Ok(match cache::get(&key) {
                Some((v, left)) => (true, v.to_lua(lua)?, left),
                None => (false, Value::Nil, 0.0),
            })
        })?,
    )?;
    rs.raw_set(
        "set",
        support::function(
            lua,
            |_, (key, value, ttl, _safe): (mlua::LuaString, Value, f64, Option<bool>)| {
                let mut size = 0;
                let stored =
                    cache::Stored::from_lua(&value, 0, &mut size).map_err(support::raise_here)?;
                Ok(cache::set(&key.to_str()?, stored, size, ttl))
            },
        )?,
    )?;
    // nil when the fill is ours to run; a ticket to wait for another request's fill.
    rs.raw_set(
        "lock",
        support::function(lua, |lua, (key, can_wait): (mlua::LuaString, bool)| {
            let key = key.to_str()?.to_string();
            let step = with_io(None, |io, id| {
                io.fill_owner = Some(id);
                match cache::lock(&key, id) {
                    Ok(()) => None,
                    Err(_) if !can_wait => None,
                    Err(rx) => Some(io.wait_for(async move {
                        if cache::wait_fill(rx).await {
                            Outcome::Int(1)
                        } else {
                            Outcome::Unit
                        }
                    })),
                }
            });
            // Outside a request (init_worker) there is no one to wait for.
            match step {
                Ok(Some(step)) => step_values(lua, Ok(step)),
                _ => Ok(MultiValue::new()),
            }
        })?,
    )?;
    rs.raw_set(
        "unlock",
        support::function(lua, |_, key: mlua::LuaString| {
            let key = key.to_str()?.to_string();
            let _ = with_io(None, |_, id| cache::unlock(&key, id));
            Ok(())
        })?,
    )?;
    rs.raw_set(
        "invalidate",
        support::function(lua, |_, key: mlua::LuaString| {
            cache::invalidate(&key.to_str()?);
            Ok(())
        })?,
    )?;
    rs.raw_set(
        "purge",
        support::function(lua, |_, ()| {
            cache::purge();
            Ok(())
        })?,
    )?;
    Ok(rs)
}

/// Loads wait.lua and socket.lua into `lua` and sets `ngx.sleep`, `ngx.socket` and `ngx.thread` on `ngx` and
/// `kong.cache` on `kong`. `wait` is the marker the sandbox's `coroutine.resume` passes up (see
/// guards.lua).
///
/// Returns the requirable modules built on waiting: `resty.http`, `resty.http_headers`,
/// `resty.redis` ([`super::MODULE_NAMES`]).
pub fn install(lua: &Lua, kong: &Table, ngx: &Table) -> mlua::Result<Vec<(&'static str, Table)>> {
    let rs = functions(lua)?;
    let wait: Table = lua.named_registry_value(crate::plugins::lua::sandbox::WAIT)?;
    let resume: Function = lua.named_registry_value(crate::plugins::lua::sandbox::RAW_RESUME)?;
    let check: Function = lua.named_registry_value(crate::plugins::lua::sandbox::CHECK)?;
    let expired = support::function(lua, |_, ()| {
        Ok(crate::plugins::lua::sandbox::budget::expired())
    })?;
    let overrun = support::raw_function(lua, |_, ()| -> mlua::Result<()> {
        Err(mlua::Error::external(
            crate::plugins::lua::sandbox::budget::overrun().unwrap_or(
                crate::plugins::lua::sandbox::budget::Exceeded::Cpu(
                    crate::plugins::lua::sandbox::limits().cpu_budget,
                ),
            ),
        ))
    })?;
    let stopped = support::function(lua, |_, ()| Ok(crate::plugins::lua::sandbox::stopped()))?;
    let log_err = support::function(lua, |_, msg: String| {
        tracing::error!(target: "lua", "{msg}");
        Ok(())
    })?;
    let module: Table = lua
        .load(include_str!("wait.lua"))
        .set_name("=sluice.wait")
        .set_mode(mlua::chunk::ChunkMode::Text)
        .call((
            rs.clone(),
            wait,
            resume,
            check,
            expired,
            overrun,
            stopped,
            log_err,
            lua.named_registry_value::<Table>(crate::plugins::lua::sandbox::SYSTEM_THREADS)?,
        ))?;
    let socket: Table = lua
        .load(include_str!("socket.lua"))
        .set_name("=ngx.socket")
        .set_mode(mlua::chunk::ChunkMode::Text)
        .call((rs, module.clone()))?;
    lua.set_named_registry_value(RUN, module.get::<Function>("run")?)?;
    lua.set_named_registry_value(STATES, module.get::<Table>("states")?)?;
    ngx.set("sleep", module.get::<Function>("sleep")?)?;
    ngx.set("socket", socket)?;
    ngx.set("thread", module.get::<Table>("thread")?)?;
    let cache: Table = lua
        .load(include_str!("cache.lua"))
        .set_name("=kong.cache")
        .set_mode(mlua::chunk::ChunkMode::Text)
        .call((cache_functions(lua, ngx.get("now")?)?, module.clone()))?;
    kong.set("cache", cache)?;
    lua.set_named_registry_value(MODULE, module)?;
    let mut modules = Vec::new();
    for (source, chunk) in [
        (include_str!("http.lua"), "=resty.http"),
        (include_str!("redis.lua"), "=resty.redis"),
    ] {
        let found: Table = lua
            .load(source)
            .set_name(chunk)
            .set_mode(mlua::chunk::ChunkMode::Text)
            .call(ngx.clone())?;
        for name in super::MODULE_NAMES {
            if let Ok(Value::Table(m)) = found.raw_get::<Value>(*name) {
                modules.push((*name, m));
            }
        }
    }
    Ok(modules)
}
