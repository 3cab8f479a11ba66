//! `kong.response` (the response to the client) and `kong.service.response` (what the
//! upstream answered).

use bytes::Bytes;
use mlua::{Lua, Table, Value};

use super::names::SetName;
use super::{cur, header_key, header_value, headers_table, set_fn, HeaderKey, HeaderText};
use crate::plugins::lua::util::support::Text;
use crate::plugins::{Exit, HeaderOp, Phase, PhaseCtx};

/// Applies or records a response header change, depending on whether the response exists.
pub(super) fn header_op(c: &mut PhaseCtx<'_>, op: HeaderOp) {
    match c.resp.as_deref_mut() {
        Some(resp) => op.apply_owned(resp),
        None => c.state.response_headers.push(op),
    }
}

fn check_status(status: i64) -> mlua::Result<u16> {
    u16::try_from(status)
        .ok()
        .filter(|s| (100..=599).contains(s))
        .ok_or_else(|| {
            mlua::Error::runtime(format!(
                "code must be a number between 100 and 599, got {status}"
            ))
        })
}

/// Records `kong.response.exit` and returns the error that stops the handler.
fn exit(
    c: &mut PhaseCtx<'_>,
    status: u16,
    body: Value,
    headers: Option<Table>,
) -> mlua::Result<()> {
    if !matches!(c.phase, Phase::Rewrite | Phase::Access | Phase::Response) {
        return Err(mlua::Error::runtime(format!(
            "kong.response.exit cannot be called in the {} phase",
            c.phase.as_str()
        )));
    }
    let mut out = Exit {
        status,
        headers: Vec::new(),
        body: Bytes::new(),
    };
    // Headers set earlier with kong.response.set_header, then the ones given here on top.
    for op in c.state.response_headers.drain(..) {
        match op {
            HeaderOp::Set(n, v) => {
                out.headers.retain(|(x, _)| !x.eq_ignore_ascii_case(&n));
                out.headers.push((n, v));
            }
            HeaderOp::Add(n, v) => out.headers.push((n, v)),
            HeaderOp::Clear(n) => out.headers.retain(|(x, _)| !x.eq_ignore_ascii_case(&n)),
        }
    }
    if let Some(h) = headers {
        let mut room = super::super::sandbox::Room::within_limit();
        for pair in h.pairs::<String, Value>() {
            let (k, v) = pair?;
            out.headers.retain(|(n, _)| !n.eq_ignore_ascii_case(&k));
            match v {
                Value::Table(list) => {
                    for v in list.sequence_values::<Value>() {
                        let v = header_value(&v?)?;
                        room.take(k.len() + v.len())?;
                        out.headers.push((k.clone(), v));
                    }
                }
                v => {
                    let v = header_value(&v)?;
                    room.take(k.len() + v.len())?;
                    out.headers.push((k.clone(), v));
                }
            }
        }
    }
    match body {
        Value::Nil => {}
        Value::String(s) => out.body = Bytes::copy_from_slice(&s.as_bytes()),
        Value::Table(_) => {
            let json = super::super::util::lua_to_json(&body).map_err(|e| {
                mlua::Error::runtime(format!("body encoding failed while flushing response: {e}"))
            })?;
            out.body = Bytes::from(json.to_string());
            if !out
                .headers
                .iter()
                .any(|(n, _)| n.eq_ignore_ascii_case("content-type"))
            {
                out.headers.push((
                    "content-type".into(),
                    "application/json; charset=utf-8".into(),
                ));
            }
        }
        other => {
            return Err(mlua::Error::runtime(format!(
                "body must be a nil, string or table, got {}",
                other.type_name()
            )))
        }
    }
    c.state.exit = Some(out);
    super::super::sandbox::stop_handler();
    // Stops the handler (the caller sees the recorded exit and answers with it).
    Err(mlua::Error::runtime("kong.response.exit"))
}

/// `kong.response.set_header` once its arguments are checked: on the response once it exists,
/// else recorded for it.
pub(super) fn set_header(c: &mut PhaseCtx<'_>, name: SetName, value: String) {
    match (name, c.resp.as_deref_mut()) {
        // As `HeaderOp::apply_owned`: a value the header refuses is dropped.
        (SetName::Named(n), Some(resp)) => {
            let _ = resp.insert_header_named(&n.name, &n.wire, value);
        }
        (name, _) => header_op(c, HeaderOp::Set(name.into_string(), value)),
    }
}

/// The value a response header will have, as far as the request knows now: the response's
/// own (header_filter and later) or the last one set with `kong.response.set_header`/
/// `add_header` before it exists. Used by the Lua layer of `kong.response.exit`.
pub(super) fn pending_header(c: &PhaseCtx<'_>, name: &str) -> Option<String> {
    if let Some(resp) = c.resp.as_deref() {
        return resp
            .headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
    }
    let mut value = None;
    for op in &c.state.response_headers {
        match op {
            HeaderOp::Set(n, v) if n.eq_ignore_ascii_case(name) => value = Some(v.clone()),
            HeaderOp::Add(n, v) if n.eq_ignore_ascii_case(name) && value.is_none() => {
                value = Some(v.clone());
            }
            HeaderOp::Clear(n) if n.eq_ignore_ascii_case(name) => value = None,
            _ => {}
        }
    }
    value
}

/// `get_header` and `get_headers` on the response header (both `kong.response` and
/// `kong.service.response` read it).
fn header_getters(lua: &Lua, t: &Table) -> mlua::Result<()> {
    // Like Kong (which looks the name up in `get_headers()`), only the first 100 header lines
    // are searched.
    set_fn(lua, t, "get_header", |_, name: String| {
        cur(|c, _, _| {
            let key = header_key(&name);
            let found = c.response_headers().and_then(|h| {
                h.iter()
                    .take(super::max_entries(None))
                    .find(|(n, _)| n.as_str() == key.as_ref())
                    .map(|(_, v)| v)
            });
            Ok(found.cloned().map(Text))
        })
    })?;
    set_fn(lua, t, "get_headers", |lua, max: Option<usize>| {
        cur(|c, _, _| match c.response_headers() {
            Some(h) => headers_table(lua, h, max),
            None => Ok((lua.create_table()?, None)),
        })
    })
}

pub(super) fn table(lua: &Lua) -> mlua::Result<Table> {
    let t = lua.create_table()?;
    set_fn(lua, &t, "get_status", |_, ()| {
        cur(|c, _, _| {
            Ok(c.resp
                .as_ref()
                .map_or(c.state.status, |r| r.status.as_u16()))
        })
    })?;
    set_fn(lua, &t, "get_source", |_, ()| {
        cur(|c, _, _| Ok(c.state.source))
    })?;
    header_getters(lua, &t)?;
    set_fn(lua, &t, "set_status", |_, status: i64| {
        cur(|c, _, _| {
            let status = check_status(status)?;
            c.state.status = status;
            if let Some(r) = c.resp.as_deref_mut() {
                r.set_status(status)
                    .map_err(|e| mlua::Error::runtime(e.to_string()))?;
            }
            Ok(())
        })
    })?;
    set_fn(
        lua,
        &t,
        "set_header",
        |_, (name, value): (SetName, HeaderText)| {
            cur(|c, _, _| {
                set_header(c, name, value.0);
                Ok(())
            })
        },
    )?;
    set_fn(
        lua,
        &t,
        "add_header",
        |_, (name, value): (HeaderKey, HeaderText)| {
            cur(|c, _, _| {
                header_op(c, HeaderOp::Add(name.0, value.0));
                Ok(())
            })
        },
    )?;
    set_fn(lua, &t, "clear_header", |_, name: String| {
        cur(|c, _, _| {
            header_op(c, HeaderOp::Clear(header_key(&name).into_owned()));
            Ok(())
        })
    })?;
    set_fn(lua, &t, "set_headers", |lua, headers: Table| {
        cur(|c, _, _| {
            // All values are checked before any is applied: a failing call changes nothing.
            let mut room = super::super::sandbox::Room::new(lua);
            let mut ops = Vec::new();
            for pair in headers.pairs::<String, Value>() {
                let (k, v) = pair?;
                let k = header_key(&k).into_owned();
                match v {
                    Value::Table(list) => {
                        ops.push(HeaderOp::Clear(k.clone()));
                        for v in list.sequence_values::<Value>() {
                            let v = header_value(&v?)?;
                            room.take(k.len() + v.len())?;
                            ops.push(HeaderOp::Add(k.clone(), v));
                        }
                    }
                    v => {
                        let v = header_value(&v)?;
                        room.take(k.len() + v.len())?;
                        ops.push(HeaderOp::Set(k, v));
                    }
                }
            }
            for op in ops {
                header_op(c, op);
            }
            Ok(())
        })
    })?;
    set_fn(
        lua,
        &t,
        "exit",
        |_, (status, body, headers): (i64, Value, Option<Table>)| {
            cur(|c, _, _| exit(c, check_status(status)?, body, headers))
        },
    )?;
    set_fn(lua, &t, "get_raw_body", |lua, ()| {
        cur(|c, _, _| {
            let Some((chunk, eof)) = c.chunk.as_mut() else {
                return Err(mlua::Error::runtime(
                    "kong.response.get_raw_body can only be called in body_filter",
                ));
            };
            // Buffer: hold every chunk back until the last one, then return the whole body
            // (as often as it is asked for in that call).
            let buf = c.state.response_body.get_or_insert_with(Default::default);
            if *eof {
                if let Some(data) = chunk.take() {
                    if !c.state.response_body_complete {
                        buf.extend_from_slice(&data);
                    }
                }
                c.state.response_body_complete = true;
                let all = buf.clone().freeze();
                **chunk = Some(all.clone());
                Ok(Value::String(lua.create_string(&all)?))
            } else {
                if let Some(data) = chunk.take() {
                    buf.extend_from_slice(&data);
                }
                Ok(Value::Nil)
            }
        })
    })?;
    set_fn(lua, &t, "set_raw_body", |_, body: mlua::LuaString| {
        cur(|c, _, _| {
            let Some((chunk, _)) = c.chunk.as_mut() else {
                return Err(mlua::Error::runtime(
                    "kong.response.set_raw_body can only be called in body_filter",
                ));
            };
            // As Kong: the body ends with this chunk; an empty one is sent as "\n" (nginx
            // would treat an empty last buffer as no body change).
            let body = body.as_bytes();
            **chunk = Some(if body.is_empty() {
                Bytes::from_static(b"\n")
            } else {
                Bytes::copy_from_slice(&body)
            });
            c.state.response_body = None;
            c.state.body_ended = true;
            Ok(())
        })
    })?;
    Ok(t)
}

/// `kong.service.response`: the upstream's status and headers. With buffered proxying they
/// are the response as received (kept apart from the client response that plugins change);
/// otherwise the response header itself, which later plugins' changes reach too.
pub(super) fn service_response(lua: &Lua) -> mlua::Result<Table> {
    let t = lua.create_table()?;
    set_fn(lua, &t, "get_status", |_, ()| {
        cur(|c, _, _| {
            if let Some(r) = &c.state.service_response {
                return Ok(Some(r.status));
            }
            Ok((c.state.source == "service").then(|| {
                c.resp
                    .as_ref()
                    .map_or(c.state.status, |r| r.status.as_u16())
            }))
        })
    })?;
    header_getters(lua, &t)?;
    // The buffered variants take precedence over the response header's.
    let get_header: mlua::Function = t.get("get_header")?;
    let get_headers: mlua::Function = t.get("get_headers")?;
    set_fn(lua, &t, "get_header", move |lua, name: String| {
        let buffered = cur(|c, _, _| {
            let Some(r) = &c.state.service_response else {
                return Ok(None);
            };
            let key = header_key(&name);
            let v = r
                .headers
                .iter()
                .take(super::max_entries(None))
                .find(|(n, _)| n.as_str() == key.as_ref())
                .map(|(_, v)| v);
            Ok(Some(match v {
                Some(v) => Value::String(lua.create_string(v.as_bytes())?),
                None => Value::Nil,
            }))
        })?;
        match buffered {
            Some(v) => Ok(v),
            None => get_header.call::<Value>(name),
        }
    })?;
    set_fn(lua, &t, "get_headers", move |lua, max: Option<usize>| {
        let buffered = cur(|c, _, _| match &c.state.service_response {
            Some(r) => headers_table(lua, &r.headers, max).map(Some),
            None => Ok(None),
        })?;
        match buffered {
            Some((t, truncated)) => {
                let truncated = match truncated {
                    Some(s) => Value::String(lua.create_string(s)?),
                    None => Value::Nil,
                };
                Ok((Value::Table(t), truncated))
            }
            None => get_headers.call::<(Value, Value)>(max),
        }
    })?;
    set_fn(lua, &t, "get_raw_body", |lua, ()| {
        cur(|c, _, _| {
            // nil without buffered proxying (the Lua layer raises Kong's error).
            if !c.state.buffering {
                return Ok(Value::Nil);
            }
            let body = c.state.service_response.as_ref().map(|r| &r.body[..]);
            Ok(Value::String(lua.create_string(body.unwrap_or(b""))?))
        })
    })?;
    Ok(t)
}
