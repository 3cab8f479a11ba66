//! The request-bound parts of `ngx`: `ngx.var`, `ngx.ctx`, `ngx.header`, `ngx.status`,
//! `ngx.arg` (body_filter), `ngx.req.*`, `ngx.log`, `ngx.exit`, `ngx.redirect`.

use bytes::Bytes;
use mlua::{Lua, MultiValue, Table, Value};

use super::request::{host_of, query_pairs, query_table};
use super::{cur, header_key, header_value, headers_table, set_fn};
use crate::plugins::lua::util::support::Text;
use crate::plugins::{Exit, HeaderOp, PhaseCtx};

/// Kong's template variables for the X-Forwarded-* headers sent upstream (writable).
const FORWARDED_VARS: [&str; 5] = [
    "upstream_x_forwarded_host",
    "upstream_x_forwarded_port",
    "upstream_x_forwarded_proto",
    "upstream_x_forwarded_path",
    "upstream_x_forwarded_prefix",
];

/// `ngx.var.<name> = value` for the variables Kong's nginx template lets plugins set.
fn set_var(c: &mut PhaseCtx<'_>, name: &str, value: Value) -> mlua::Result<()> {
    let text = match &value {
        Value::Nil => None,
        Value::String(s) => Some(s.to_str()?.to_string()),
        Value::Integer(i) => Some(i.to_string()),
        Value::Number(n) => Some(n.to_string()),
        other => {
            return Err(mlua::Error::runtime(format!(
                "bad variable value: string, number or nil expected, got {}",
                other.type_name()
            )))
        }
    };
    let up = &mut c.state.upstream;
    match name {
        "upstream_uri" => {
            let uri = text.unwrap_or_default();
            let (path, query) = match uri.split_once('?') {
                Some((p, q)) => (p.to_string(), q.to_string()),
                None => (uri, String::new()),
            };
            if !path.starts_with('/') {
                return Err(mlua::Error::runtime(
                    "upstream_uri must start with /".to_string(),
                ));
            }
            up.path = Some(path);
            up.query = Some(query);
        }
        "upstream_host" => up.host = text,
        "upstream_scheme" => match text.as_deref() {
            Some("http") | Some("https") | None => up.scheme = text,
            Some(other) => {
                return Err(mlua::Error::runtime(format!(
                    "upstream_scheme must be http or https, got {other:?}"
                )))
            }
        },
        _ => match FORWARDED_VARS.iter().position(|v| *v == name) {
            Some(i) => up.forwarded[i] = text,
            None => {
                return Err(mlua::Error::runtime(format!(
                    "variable \"{name}\" not changeable"
                )))
            }
        },
    }
    Ok(())
}

/// A variable's value: text, or nil.
type Var = Option<Text<Vec<u8>>>;

/// `ngx.var.<name>` for the common variables.
fn var(c: &mut PhaseCtx<'_>, name: &str) -> mlua::Result<Var> {
    let s = |v: String| -> mlua::Result<Var> { Ok(Some(Text(v.into_bytes()))) };
    let req = &c.req;
    match name {
        "uri" => s(crate::router::normalize_path(req.uri.path()).into_owned()),
        "request_uri" => s(req
            .uri
            .path_and_query()
            .map_or("/".into(), |p| p.as_str().to_string())),
        "host" => s(host_of(req)),
        "request_id" => s(c.state.request_id()),
        "scheme" => s(c.state.scheme.to_string()),
        "request_method" => s(req.method.as_str().to_string()),
        "args" | "query_string" => match c.query() {
            Some(q) if !q.is_empty() => s(q.to_string()),
            _ => Ok(None),
        },
        "is_args" => s(if c.query().is_some_and(|q| !q.is_empty()) {
            "?"
        } else {
            ""
        }
        .into()),
        "remote_addr" => c
            .state
            .client
            .map_or(Ok(None), |a| s(crate::proxy::ip_text(a.ip()))),
        "realip_remote_addr" => c
            .state
            .peer
            .map_or(Ok(None), |a| s(crate::proxy::ip_text(a.ip()))),
        // The address's bytes (4 or 16), as nginx gives it.
        "binary_remote_addr" => match c.state.client.map(|a| a.ip()) {
            Some(std::net::IpAddr::V4(ip)) => Ok(Some(Text(ip.octets().to_vec()))),
            Some(std::net::IpAddr::V6(ip)) => Ok(Some(Text(ip.octets().to_vec()))),
            None => Ok(None),
        },
        // Empty when a trusted proxy gave an address without a port (as nginx).
        "remote_port" => c.state.client.map_or(Ok(None), |a| {
            s(if a.port() == 0 {
                String::new()
            } else {
                a.port().to_string()
            })
        }),
        "proxy_protocol_addr" => c
            .state
            .proxy_protocol
            .map_or(Ok(None), |a| s(crate::proxy::ip_text(a.ip()))),
        "proxy_protocol_port" => c
            .state
            .proxy_protocol
            .map_or(Ok(None), |a| s(a.port().to_string())),
        "realip_remote_port" => c.state.peer.map_or(Ok(None), |a| s(a.port().to_string())),
        "server_addr" => c
            .state
            .server
            .map_or(Ok(None), |a| s(crate::proxy::ip_text(a.ip()))),
        "server_port" => c.state.server.map_or(Ok(None), |a| s(a.port().to_string())),
        "server_protocol" => s("HTTP/1.1".into()),
        "status" => s(c
            .resp
            .as_ref()
            .map_or(c.state.status, |r| r.status.as_u16())
            .to_string()),
        "hostname" => s(std::fs::read_to_string("/proc/sys/kernel/hostname")
            .unwrap_or_default()
            .trim()
            .to_string()),
        "request_time" => s(format!(
            "{:.3}",
            c.state.started.elapsed().map_or(0.0, |d| d.as_secs_f64())
        )),
        "upstream_uri" => match (&c.state.upstream.path, &c.state.log.upstream_uri) {
            (Some(p), _) => s(match &c.state.upstream.query {
                Some(q) if !q.is_empty() => format!("{p}?{q}"),
                _ => p.clone(),
            }),
            (None, Some(u)) => s(u.clone()),
            (None, None) => s(String::new()),
        },
        "upstream_host" => s(c.state.upstream.host.clone().unwrap_or_default()),
        "upstream_scheme" => s(c.state.upstream.scheme.clone().unwrap_or_default()),
        "http2" => s(if c.req.version == http::Version::HTTP_2 {
            "h2".into()
        } else {
            String::new()
        }),
        "https" => s(if c.state.scheme == "https" {
            "on".into()
        } else {
            String::new()
        }),
        "ssl_server_name" => c.state.sni.clone().map_or(Ok(None), s),
        "request_length" => c
            .req
            .headers
            .get(http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .map_or(Ok(None), |v| s(v.to_string())),
        "content_type" => header(&c.req.headers, "content-type"),
        "content_length" => header(&c.req.headers, "content-length"),
        _ => {
            if let Some(h) = name.strip_prefix("http_") {
                header(&c.req.headers, &header_key(h))
            } else if let Some(h) = name
                .strip_prefix("sent_http_")
                .or_else(|| name.strip_prefix("upstream_http_"))
            {
                match c.response_headers() {
                    Some(h2) => header(h2, &header_key(h)),
                    None => Ok(None),
                }
            } else if let Some(i) = FORWARDED_VARS.iter().position(|v| *v == name) {
                s(c.state.upstream.forwarded[i].clone().unwrap_or_default())
            } else if let Some(arg) = name.strip_prefix("arg_") {
                let q = c.query().unwrap_or("");
                match query_pairs(q).into_iter().find(|(k, _)| k == arg) {
                    Some((_, Some(v))) => s(v),
                    Some((_, None)) => s(String::new()),
                    None => Ok(None),
                }
            } else if let Some(cookie) = name.strip_prefix("cookie_") {
                let all = req
                    .headers
                    .get_all(http::header::COOKIE)
                    .iter()
                    .filter_map(|v| v.to_str().ok())
                    .flat_map(|v| v.split(';'))
                    .filter_map(|kv| kv.trim().split_once('='))
                    .find(|(k, _)| *k == cookie)
                    .map(|(_, v)| v.to_string());
                all.map_or(Ok(None), s)
            } else {
                Ok(None)
            }
        }
    }
}

fn header(headers: &http::HeaderMap, name: &str) -> mlua::Result<Var> {
    let mut values = headers.get_all(name).iter();
    let Some(first) = values.next() else {
        return Ok(None);
    };
    // nginx joins repeated request headers with ", " in $http_*.
    let mut joined = first.as_bytes().to_vec();
    for v in values {
        joined.extend_from_slice(b", ");
        joined.extend_from_slice(v.as_bytes());
    }
    Ok(Some(Text(joined)))
}

pub(super) fn install(lua: &Lua, ngx: &Table) -> mlua::Result<()> {
    // ngx.var
    let var_t = lua.create_table()?;
    let mt = lua.create_table()?;
    set_fn(lua, &mt, "__index", |_, (_t, k): (Table, String)| {
        cur(|c, _, _| var(c, &k))
    })?;
    set_fn(
        lua,
        &mt,
        "__newindex",
        |_, (_t, k, v): (Table, String, Value)| -> mlua::Result<()> {
            cur(|c, _, _| set_var(c, &k, v))
        },
    )?;
    var_t.set_metatable(Some(mt))?;
    ngx.set("var", var_t)?;

    // ngx.header: the response headers (or changes recorded for the response to come).
    let header_t = lua.create_table()?;
    let mt = lua.create_table()?;
    set_fn(lua, &mt, "__index", |_, (_t, k): (Table, String)| {
        cur(|c, _, _| match c.response_headers() {
            Some(h) => header(h, &header_key(&k)),
            None => Ok(None),
        })
    })?;
    set_fn(
        lua,
        &mt,
        "__newindex",
        |_, (_t, k, v): (Table, String, Value)| {
            cur(|c, _, _| {
                let name = header_key(&k).into_owned();
                let ops: Vec<HeaderOp> = match v {
                    Value::Nil => vec![HeaderOp::Clear(name)],
                    Value::Table(list) => {
                        let mut ops = vec![HeaderOp::Clear(name.clone())];
                        let mut room = crate::plugins::lua::sandbox::Room::within_limit();
                        for v in list.sequence_values::<Value>() {
                            let v = header_value(&v?)?;
                            room.take(name.len() + v.len())?;
                            ops.push(HeaderOp::Add(name.clone(), v));
                        }
                        ops
                    }
                    v => vec![HeaderOp::Set(name, header_value(&v)?)],
                };
                for op in ops {
                    super::response::header_op(c, op);
                }
                Ok(())
            })
        },
    )?;
    header_t.set_metatable(Some(mt))?;
    ngx.set("header", header_t)?;

    // ngx.resp.get_headers(max?, raw?): the response headers as they stand (100 by default,
    // "truncated" when there were more); ngx.resp.add_header(name, value).
    let resp_t = lua.create_table()?;
    set_fn(
        lua,
        &resp_t,
        "get_headers",
        |lua, (max, _raw): (Option<usize>, Option<bool>)| {
            cur(|c, _, _| match c.response_headers() {
                Some(h) => super::headers_table(lua, h, max),
                None => Ok((lua.create_table()?, None)),
            })
        },
    )?;
    set_fn(
        lua,
        &resp_t,
        "add_header",
        |_, (name, value): (String, Value)| {
            cur(|c, _, _| {
                let op = HeaderOp::Add(header_key(&name).into_owned(), header_value(&value)?);
                super::response::header_op(c, op);
                Ok(())
            })
        },
    )?;
    ngx.set("resp", resp_t)?;

    // ngx.arg[1] (the chunk) and ngx.arg[2] (eof) in body_filter.
    let arg_t = lua.create_table()?;
    let mt = lua.create_table()?;
    set_fn(lua, &mt, "__index", |lua, (_t, k): (Table, i64)| {
        cur(|c, _, _| match (c.chunk.as_ref(), k) {
            (Some((chunk, _)), 1) => Ok(Value::String(
                lua.create_string(chunk.as_deref().unwrap_or(b""))?,
            )),
            (Some((_, eof)), 2) => Ok(Value::Boolean(*eof)),
            _ => Ok(Value::Nil),
        })
    })?;
    set_fn(
        lua,
        &mt,
        "__newindex",
        |_, (_t, k, v): (Table, i64, Value)| {
            cur(|c, _, _| {
                let Some((chunk, _)) = c.chunk.as_mut() else {
                    return Err(mlua::Error::runtime(
                        "ngx.arg can only be set in body_filter",
                    ));
                };
                if k == 1 {
                    **chunk = match v {
                        Value::Nil => None,
                        Value::String(s) => Some(Bytes::copy_from_slice(&s.as_bytes())),
                        other => Some(Bytes::from(header_value(&other)?)),
                    };
                } else if k == 2 && v.as_boolean() == Some(true) {
                    // The body ends here: what the upstream sends after it is dropped, and
                    // body_filter is not called again (lua-nginx-module's last buffer).
                    c.state.body_ended = true;
                }
                Ok(())
            })
        },
    )?;
    arg_t.set_metatable(Some(mt))?;
    ngx.set("arg", arg_t)?;

    // ngx.ctx and ngx.status are per request: resolved through ngx's metatable.
    // A request's ngx.ctx, once made, is read in Lua; Rust makes it and answers the rest.
    let ngx_mt = lua.create_table()?;
    let slow =
        crate::plugins::lua::util::support::function(lua, |lua, (_t, k): (Table, String)| {
            cur(|c, _, tables| match k.as_str() {
                "ctx" => tables.get(lua, &mut c.state.lua_keyed)?.get::<Value>("ngx"),
                "status" => Ok(Value::Integer(
                    c.resp
                        .as_ref()
                        .map_or(c.state.status, |r| r.status.as_u16())
                        .into(),
                )),
                _ => Ok(Value::Nil),
            })
        })?;
    let index = super::request_index(
        lua,
        "=ngx",
        r#"
            local requests, current, slow = ...
            return function(t, k)
              if k == "ctx" then
                local id = current()
                local r = id and requests[id]
                if r then
                  return r.ngx
                end
              end
              return slow(t, k)
            end
            "#,
        slow,
    )?;
    ngx_mt.raw_set("__index", index)?;
    set_fn(
        lua,
        &ngx_mt,
        "__newindex",
        |lua, (t, k, v): (Table, String, Value)| match k.as_str() {
            "status" => cur(|c, _, _| {
                let status: u16 = match v {
                    Value::Integer(i) => u16::try_from(i).unwrap_or(0),
                    Value::Number(n) => n as u16,
                    _ => 0,
                };
                c.state.status = status;
                if let Some(r) = c.resp.as_deref_mut() {
                    r.set_status(status)
                        .map_err(|e| mlua::Error::runtime(e.to_string()))?;
                }
                Ok(())
            }),
            "ctx" => cur(|c, _, tables| tables.get(lua, &mut c.state.lua_keyed)?.set("ngx", v)),
            _ => t.raw_set(k, v),
        },
    )?;
    ngx.set_metatable(Some(ngx_mt))?;

    // ngx.req
    let req = lua.create_table()?;
    set_fn(
        lua,
        &req,
        "get_headers",
        |lua, (max, _raw): (Option<usize>, Option<bool>)| {
            cur(|c, _, _| headers_table(lua, &c.req.headers, max))
        },
    )?;
    set_fn(lua, &req, "get_method", |_, ()| {
        cur(|c, _, _| Ok(c.req.method.as_str().to_string()))
    })?;
    set_fn(lua, &req, "http_version", |_, ()| {
        cur(|c, _, _| Ok(super::request::http_version(c.req.version)))
    })?;
    set_fn(lua, &req, "start_time", |_, ()| {
        cur(|c, _, _| {
            Ok(c.state
                .started
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0.0, |d| d.as_secs_f64()))
        })
    })?;
    set_fn(
        lua,
        &req,
        "set_header",
        |_, (name, value): (String, Value)| {
            cur(|c, _, _| match value {
                Value::Nil => {
                    super::service::clear_header(c, &name);
                    Ok(())
                }
                v => super::service::set_header(c, &name, &header_value(&v)?, false),
            })
        },
    )?;
    set_fn(lua, &req, "clear_header", |_, name: String| {
        cur(|c, _, _| {
            super::service::clear_header(c, &name);
            Ok(())
        })
    })?;
    set_fn(lua, &req, "get_uri_args", |lua, max: Option<usize>| {
        cur(|c, _, _| query_table(lua, c.query().unwrap_or(""), max))
    })?;
    set_fn(lua, &req, "set_uri_args", |_, args: Value| {
        cur(|c, _, _| {
            let q = match args {
                Value::String(s) => s.to_str()?.to_string(),
                Value::Table(t) => {
                    String::from_utf8_lossy(&crate::plugins::lua::util::encode_args(&t)?)
                        .into_owned()
                }
                _ => return Err(mlua::Error::runtime("args must be a string or a table")),
            };
            c.state.upstream.query = Some(q);
            Ok(())
        })
    })?;
    set_fn(lua, &req, "read_body", |_, ()| Ok(()))?;
    set_fn(lua, &req, "get_body_data", |lua, ()| {
        cur(|c, _, _| match &c.state.body {
            Some(b) if !b.is_empty() => Ok(Value::String(lua.create_string(b)?)),
            _ => Ok(Value::Nil),
        })
    })?;
    set_fn(lua, &req, "get_body_file", |_, ()| Ok(Value::Nil))?;
    set_fn(lua, &req, "set_body_data", |_, body: mlua::LuaString| {
        cur(|c, _, _| {
            c.state.upstream.body = Some(Bytes::copy_from_slice(&body.as_bytes()));
            Ok(())
        })
    })?;
    ngx.set("req", req)?;

    // ngx.log(level, ...)
    let levels = [
        (0, "emerg"),
        (1, "emerg"),
        (2, "alert"),
        (3, "crit"),
        (4, "err"),
        (5, "warn"),
        (6, "notice"),
        (7, "info"),
        (8, "debug"),
    ];
    let loggers = lua.create_table()?;
    for (n, name) in levels {
        loggers.set(n, super::client::logger(lua, name)?)?;
    }
    set_fn(lua, ngx, "log", move |_, args: MultiValue| {
        let mut it = args.into_iter();
        let level = match it.next() {
            Some(Value::Integer(l)) => l,
            _ => 4,
        };
        let f: mlua::Function = loggers.get(level.clamp(0, 8))?;
        f.call::<()>(MultiValue::from_iter(it))
    })?;

    // ngx.exit / ngx.redirect in rewrite/access: like kong.response.exit.
    set_fn(lua, ngx, "exit", |_, status: i64| {
        cur(|c, _, _| {
            let status = u16::try_from(status).unwrap_or(500);
            if status < 200 {
                return Ok(()); // ngx.OK etc.: end of the handler, nothing to send
            }
            c.state.exit = Some(Exit::message(
                status,
                http::StatusCode::from_u16(status)
                    .ok()
                    .and_then(|s| s.canonical_reason())
                    .unwrap_or(""),
            ));
            Err::<(), _>(mlua::Error::runtime("ngx.exit"))
        })
    })?;
    set_fn(
        lua,
        ngx,
        "redirect",
        |_, (uri, status): (String, Option<u16>)| {
            cur(|c, _, _| {
                let status = status.unwrap_or(302);
                let mut exit = Exit::message(status, "Moved");
                exit.headers.push(("location".into(), uri));
                c.state.exit = Some(exit);
                Err::<(), _>(mlua::Error::runtime("ngx.redirect"))
            })
        },
    )?;
    Ok(())
}
