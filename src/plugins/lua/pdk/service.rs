//! `kong.service` (where the request goes) and `kong.service.request` (what is sent there).
//! Header changes apply to the request itself, so `kong.request.get_header` sees them, as in
//! Kong; path, query, method and body changes are applied when the upstream request is built.

use bytes::Bytes;
use mlua::{Lua, Table, Value};

use super::names::SetName;
use super::{cur, header_key, header_value, set_fn, HeaderKey, HeaderText};
use crate::plugins::PhaseCtx;

/// Sets (or with `append`, adds) a request header; `kong.request.get_header` sees it.
pub(super) fn set_header(
    c: &mut PhaseCtx<'_>,
    name: &str,
    value: &str,
    append: bool,
) -> mlua::Result<()> {
    set_key(
        c,
        SetName::Text(HeaderKey::from_text(name)),
        value.to_owned(),
        append,
    )
}

/// [`set_header`] with the name normalised already; the value's bytes become the header
/// value's without a copy.
pub(super) fn set_key(
    c: &mut PhaseCtx<'_>,
    name: SetName,
    value: String,
    append: bool,
) -> mlua::Result<()> {
    let is_host = match &name {
        SetName::Named(n) => n.name == http::header::HOST,
        SetName::Text(k) => k.0.eq_ignore_ascii_case("host"),
    };
    if is_host {
        // Kong: setting Host here chooses the Host header sent upstream.
        c.state.upstream.host = Some(value.clone());
    }
    let result = match (name, append) {
        (SetName::Named(n), false) => c.req.insert_header_named(&n.name, &n.wire, value),
        (name, true) => c.req.append_header(name.into_string(), value).map(|_| ()),
        (name, false) => c.req.insert_header(name.into_string(), value),
    };
    result.map_err(|e| mlua::Error::runtime(format!("invalid header: {e}")))
}

/// Removes a request header.
pub(super) fn clear_header(c: &mut PhaseCtx<'_>, name: &str) {
    c.req.remove_header(header_key(name).as_ref());
}

/// Encodes a query table the way `kong.service.request.set_query` does (sorted names).
fn encode_query(t: &Table) -> mlua::Result<String> {
    let mut pairs: Vec<(String, Value)> =
        t.pairs::<String, Value>().collect::<mlua::Result<_>>()?;
    pairs.sort_by(|a, b| a.0.cmp(&b.0));
    let esc = |s: &str| {
        crate::router::escape_path(s)
            .replace('&', "%26")
            .replace('=', "%3D")
            .replace('?', "%3F")
            .replace('+', "%2B")
            .replace(' ', "%20")
    };
    let mut out: Vec<String> = Vec::new();
    let mut room = crate::plugins::lua::sandbox::Room::within_limit();
    let mut push = |piece: String| -> mlua::Result<()> {
        room.take(piece.len() + 1)?;
        out.push(piece);
        Ok(())
    };
    for (k, v) in pairs {
        match v {
            Value::Boolean(true) => push(esc(&k))?,
            Value::Boolean(false) => {}
            Value::Table(list) => {
                for v in list.sequence_values::<Value>() {
                    match v? {
                        Value::Boolean(true) => push(esc(&k))?,
                        v => push(format!("{}={}", esc(&k), esc(&header_value(&v)?)))?,
                    }
                }
            }
            v => push(format!("{}={}", esc(&k), esc(&header_value(&v)?)))?,
        }
    }
    Ok(out.join("&"))
}

pub(super) fn table(lua: &Lua) -> mlua::Result<Table> {
    let service = lua.create_table()?;
    set_fn(
        lua,
        &service,
        "set_target",
        |_, (host, port): (String, u16)| {
            cur(|c, _, _| {
                c.state.upstream.target = Some((host, port));
                Ok(())
            })
        },
    )?;
    set_fn(lua, &service, "set_upstream", |lua, name: String| {
        cur(
            |c, _, _| match c.snap.balancers.iter().position(|b| b.name == name) {
                Some(i) => {
                    c.state.upstream.balancer = Some(i);
                    Ok((Value::Boolean(true), Value::Nil))
                }
                None => Ok((
                    Value::Nil,
                    Value::String(
                        lua.create_string(format!("could not find an Upstream named '{name}'"))?,
                    ),
                )),
            },
        )
    })?;

    set_fn(lua, &service, "set_retries", |_, retries: u16| {
        cur(|c, _, _| {
            c.state.upstream.retries = Some(retries);
            Ok(())
        })
    })?;
    set_fn(lua, &service, "set_timeouts", |_, ms: (u64, u64, u64)| {
        cur(|c, _, _| {
            let d = std::time::Duration::from_millis;
            c.state.upstream.timeouts = Some([d(ms.0), d(ms.1), d(ms.2)]);
            Ok(())
        })
    })?;
    set_fn(lua, &service, "set_tls_verify", |_, on: bool| {
        cur(|c, _, _| {
            c.state.upstream.tls_verify = Some(on);
            Ok(true)
        })
    })?;

    let req = lua.create_table()?;
    // Kong's buffered proxying: the upstream response is read whole (see proxy/buffered.rs).
    set_fn(lua, &req, "enable_buffering", |_, ()| {
        cur(|c, _, _| {
            c.state.buffering = true;
            Ok(())
        })
    })?;
    set_fn(lua, &req, "clear_query_arg", |_, name: String| {
        cur(|c, _, _| {
            let query = match &c.state.upstream.query {
                Some(q) => q.clone(),
                None => c.query().unwrap_or("").to_string(),
            };
            if query.is_empty() {
                return Ok(());
            }
            let kept: Vec<&str> = query
                .split('&')
                .filter(|kv| {
                    let key = kv.split_once('=').map_or(*kv, |(k, _)| k);
                    !kv.is_empty() && super::request::unescape(key) != name
                })
                .collect();
            c.state.upstream.query = Some(kept.join("&").replace('+', "%20"));
            Ok(())
        })
    })?;
    set_fn(lua, &req, "set_scheme", |_, scheme: String| {
        cur(|c, _, _| {
            if scheme != "http" && scheme != "https" {
                return Err(mlua::Error::runtime(
                    "invalid scheme: expected http or https",
                ));
            }
            c.state.upstream.scheme = Some(scheme);
            Ok(())
        })
    })?;
    set_fn(lua, &req, "set_path", |_, path: String| {
        cur(|c, _, _| {
            if !path.starts_with('/') {
                return Err(mlua::Error::runtime("path must start with /"));
            }
            c.state.upstream.path = Some(escape_path(&path));
            Ok(())
        })
    })?;
    set_fn(lua, &req, "set_raw_query", |_, q: String| {
        cur(|c, _, _| {
            c.state.upstream.query = Some(q);
            Ok(())
        })
    })?;
    set_fn(lua, &req, "set_query", |_, t: Table| {
        cur(|c, _, _| {
            c.state.upstream.query = Some(encode_query(&t)?);
            Ok(())
        })
    })?;
    set_fn(lua, &req, "set_method", |_, m: String| {
        cur(|c, _, _| {
            let m = http::Method::from_bytes(m.as_bytes())
                .map_err(|_| mlua::Error::runtime(format!("invalid method: {m}")))?;
            c.state.upstream.method = Some(m);
            Ok(())
        })
    })?;
    set_fn(
        lua,
        &req,
        "set_header",
        |_, (name, value): (SetName, HeaderText)| cur(|c, _, _| set_key(c, name, value.0, false)),
    )?;
    set_fn(
        lua,
        &req,
        "add_header",
        |_, (name, value): (SetName, HeaderText)| cur(|c, _, _| set_key(c, name, value.0, true)),
    )?;
    set_fn(lua, &req, "clear_header", |_, name: String| {
        cur(|c, _, _| {
            clear_header(c, &name);
            Ok(())
        })
    })?;
    set_fn(lua, &req, "set_headers", |lua, headers: Table| {
        cur(|c, _, _| {
            let mut room = crate::plugins::lua::sandbox::Room::new(lua);
            for pair in headers.pairs::<String, Value>() {
                let (k, v) = pair?;
                match v {
                    Value::Table(list) => {
                        c.req.remove_header(header_key(&k).as_ref());
                        for v in list.sequence_values::<Value>() {
                            let v = header_value(&v?)?;
                            room.take(k.len() + v.len())?;
                            set_header(c, &k, &v, true)?;
                        }
                    }
                    v => {
                        let v = header_value(&v)?;
                        room.take(k.len() + v.len())?;
                        set_header(c, &k, &v, false)?;
                    }
                }
            }
            Ok(())
        })
    })?;
    set_fn(lua, &req, "set_raw_body", |_, body: mlua::LuaString| {
        cur(|c, _, _| {
            c.state.upstream.body = Some(Bytes::copy_from_slice(&body.as_bytes()));
            Ok(())
        })
    })?;
    set_fn(
        lua,
        &req,
        "set_body",
        |_, (body, mime): (Table, Option<String>)| {
            cur(|c, _, _| {
                let ctype = mime.unwrap_or_else(|| {
                    super::request::content_type(c.req)
                        .unwrap_or("application/json")
                        .to_string()
                });
                let encoded = if ctype.contains("x-www-form-urlencoded") {
                    encode_query(&body)?
                } else {
                    super::super::util::lua_to_json(&Value::Table(body))
                        .map_err(mlua::Error::runtime)?
                        .to_string()
                };
                set_header(c, "content-type", &ctype, false)?;
                c.state.upstream.body = Some(Bytes::from(encoded));
                Ok(())
            })
        },
    )?;
    service.set("request", req)?;
    Ok(service)
}

/// Kong's `kong.tools.uri.escape` as `set_path` applies it: every byte outside the URI's
/// reserved and unreserved characters (and `%`, so escapes stay as given) becomes `%XX`.
fn escape_path(path: &str) -> String {
    let keep = |b: u8| b.is_ascii_alphanumeric() || b"!#$&'()*+,/:;=?@[]-_.~%".contains(&b);
    if path.bytes().all(keep) {
        return path.to_string();
    }
    let mut out = String::with_capacity(path.len() + 8);
    for b in path.bytes() {
        if keep(b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}
