//! `request-transformer`: changes the request sent upstream (Kong's plugin hub: http_method,
//! remove/rename/replace/add/append for headers, querystring and body, replace.uri, value
//! templates). Steps run in Kong's order: uri, method, headers, body, querystring; within
//! each part remove, rename, replace, add, append.

use std::sync::Arc;

use bytes::Bytes;
use serde::Deserialize;

use super::template::Env;
use super::transform::{self, BodyKind, Ops, Value};
use super::{BuildCtx, Bundled};
use crate::plugins::{Flow, Instance, Phase, PhaseCtx, PluginError};

/// The plugin.
pub(super) static PLUGIN: Bundled = Bundled {
    name: "request-transformer",
    priority: 801,
    schema: SCHEMA,
    build,
};

const SCHEMA: &str = r#"
local typedefs = require "kong.db.schema.typedefs"

local function split(pair)
  return pair:match("^([^:]+):*(.-)$")
end

local function header_name_ok(name)
  return name ~= nil and name:match("^[%w_%-]+$") ~= nil
end

local function valid_header(pair)
  local name = split(pair)
  if not header_name_ok(name) then
    return nil, string.format("'%s' is not a valid header", tostring(name))
  end
  return true
end

local function valid_header_value(pair)
  local name, value = split(pair)
  if not header_name_ok(name) then
    return nil, string.format("'%s' is not a valid header", tostring(name))
  end
  if value:find("[%z\1-\8\10-\31\127]") then
    return nil, string.format("'%s' is not a valid header", tostring(value))
  end
  return true
end

local function valid_header_rename(pair)
  local name, value = split(pair)
  if not header_name_ok(name) then
    return nil, string.format("'%s' is not a valid header", tostring(name))
  end
  if not header_name_ok(value) then
    return nil, string.format("'%s' is not a valid header", tostring(value))
  end
  return true
end

local function has_value(pair)
  local name, value = split(pair)
  if not name or value == "" then
    return nil, "key '" .. tostring(name or pair) .. "' has no value"
  end
  return true
end

local strings = { type = "array", default = {}, required = true, elements = { type = "string" } }
local colon_strings = { type = "array", default = {}, required = true,
  elements = { type = "string", custom_validator = has_value } }

local function array(validator)
  return { type = "array", default = {}, required = true,
    elements = { type = "string", match = "^[^:]+:.*$", custom_validator = validator } }
end

return {
  name = "request-transformer",
  fields = {
    { protocols = typedefs.protocols_http },
    { config = { type = "record", fields = {
      { http_method = typedefs.http_method },
      { remove = { type = "record", fields = {
        { body = strings },
        { headers = { type = "array", default = {}, required = true,
            elements = { type = "string", custom_validator = valid_header } } },
        { querystring = strings },
      } } },
      { rename = { type = "record", fields = {
        { body = colon_strings },
        { headers = array(valid_header_rename) },
        { querystring = colon_strings },
      } } },
      { replace = { type = "record", fields = {
        { body = colon_strings },
        { headers = array(valid_header_value) },
        { querystring = colon_strings },
        { uri = { type = "string" } },
      } } },
      { add = { type = "record", fields = {
        { body = colon_strings },
        { headers = array(valid_header_value) },
        { querystring = colon_strings },
      } } },
      { append = { type = "record", fields = {
        { body = colon_strings },
        { headers = array(valid_header_value) },
        { querystring = colon_strings },
      } } },
    } } },
  },
}
"#;

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Lists {
    body: Vec<String>,
    headers: Vec<String>,
    querystring: Vec<String>,
    uri: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Conf {
    http_method: Option<String>,
    #[serde(default)]
    remove: Lists,
    #[serde(default)]
    rename: Lists,
    #[serde(default)]
    replace: Lists,
    #[serde(default)]
    add: Lists,
    #[serde(default)]
    append: Lists,
}

struct RequestTransformer {
    method: Option<http::Method>,
    uri: Option<Value>,
    headers: Ops,
    query: Ops,
    body: Ops,
    /// Some value is a template (the request is snapshotted for them).
    templated: bool,
}

fn build(ctx: &BuildCtx<'_>) -> Result<Arc<dyn Instance>, String> {
    let c: Conf = ctx.decode()?;
    let part = |f: fn(&Lists) -> &Vec<String>, name: &str| {
        Ops::compile(
            [
                f(&c.remove),
                f(&c.rename),
                f(&c.replace),
                f(&c.add),
                f(&c.append),
            ],
            name,
        )
    };
    let headers = part(|l| &l.headers, "headers")?;
    let query = part(|l| &l.querystring, "querystring")?;
    let body = part(|l| &l.body, "body")?;
    let uri = c
        .replace
        .uri
        .as_deref()
        .filter(|u| !u.is_empty())
        .map(|u| Value::compile(u, "replace.uri"))
        .transpose()?;
    if let Some(u) = &uri {
        let raw = u.render(None);
        if !u.is_template() && !raw.starts_with('/') {
            return Err(format!("replace.uri: {raw:?} must start with /"));
        }
    }
    let method = c
        .http_method
        .as_deref()
        .map(|m| http::Method::from_bytes(m.as_bytes()).map_err(|e| format!("http_method: {e}")))
        .transpose()?;
    let templated = headers.has_template()
        || query.has_template()
        || body.has_template()
        || uri.as_ref().is_some_and(Value::is_template);
    Ok(Arc::new(RequestTransformer {
        method,
        uri,
        headers,
        query,
        body,
        templated,
    }))
}

/// What templates see: the request when the plugin starts.
fn env(ctx: &PhaseCtx<'_>) -> Env {
    Env {
        headers: ctx
            .req
            .headers
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str().to_string(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect(),
        query: ctx.query_args(),
        captures: ctx.state.captures.clone(),
    }
}

/// The request body as the upstream would receive it now (None: not available to plugins).
fn current_body(ctx: &PhaseCtx<'_>) -> Option<Bytes> {
    ctx.state
        .upstream
        .body
        .clone()
        .or_else(|| ctx.state.body.clone())
}

/// Escapes a rendered path for the request line (`?` and `#` are part of the path here).
fn escape_path(path: &str) -> String {
    crate::router::escape_path(path)
        .replace('?', "%3F")
        .replace('#', "%23")
}

impl RequestTransformer {
    fn transform_method(&self, ctx: &mut PhaseCtx<'_>) {
        let Some(method) = &self.method else { return };
        ctx.state.upstream.method = Some(method.clone());
        let to_query = matches!(method.as_str(), "GET" | "HEAD" | "TRACE");
        if !to_query || BodyKind::of(ctx.header("content-type")) != Some(BodyKind::Form) {
            return;
        }
        // The form body's arguments move to the query string.
        let Some(body) = current_body(ctx) else {
            return;
        };
        let extra = transform::decode_form(&body);
        if !extra.is_empty() {
            let mut args = ctx.query_args();
            args.extend(extra);
            ctx.set_query_args(&args);
        }
    }

    fn transform_headers(
        &self,
        ctx: &mut PhaseCtx<'_>,
        env: Option<&Env>,
    ) -> Result<(), PluginError> {
        let ops = &self.headers;
        let is_host = |n: &str| n.eq_ignore_ascii_case("host");
        for name in ops.remove.iter().filter(|n| !is_host(n)) {
            ctx.clear_header(name);
        }
        for p in ops.rename.iter().filter(|p| !is_host(&p.name)) {
            let new = p.value.render(env);
            if new.eq_ignore_ascii_case(&p.name) || is_host(&new) {
                continue;
            }
            let values: Vec<_> = ctx
                .req
                .headers
                .get_all(p.name.as_str())
                .iter()
                .cloned()
                .collect();
            if values.is_empty() {
                continue;
            }
            ctx.clear_header(&p.name);
            ctx.clear_header(&new);
            for v in values {
                ctx.req
                    .append_header(new.to_ascii_lowercase(), v)
                    .map_err(|e| PluginError(format!("invalid header {new}: {e}")))?;
            }
        }
        for p in &ops.replace {
            let value = p.value.render(env);
            if value.is_empty() {
                continue;
            }
            if is_host(&p.name) {
                set_host(ctx, &value)?;
            } else if ctx.req.headers.contains_key(p.name.as_str()) {
                ctx.set_header(&p.name, &value)?;
            }
        }
        for p in ops.add.iter().filter(|p| !is_host(&p.name)) {
            let value = p.value.render(env);
            if !value.is_empty() && !ctx.req.headers.contains_key(p.name.as_str()) {
                ctx.set_header(&p.name, &value)?;
            }
        }
        for p in &ops.append {
            let value = p.value.render(env);
            if value.is_empty() {
                continue;
            }
            if is_host(&p.name) {
                set_host(ctx, &value)?;
            } else {
                ctx.add_header(&p.name, &value)?;
            }
        }
        Ok(())
    }

    fn transform_body(&self, ctx: &mut PhaseCtx<'_>, env: Option<&Env>) -> Result<(), PluginError> {
        if self.body.is_empty() {
            return Ok(());
        }
        let content_type = ctx.header("content-type").map(str::to_string);
        let Some(kind) = BodyKind::of(content_type.as_deref()) else {
            return Ok(());
        };
        let Some(body) = current_body(ctx) else {
            tracing::warn!(
                "request-transformer: the request body is too large or streamed; body left as is"
            );
            return Ok(());
        };
        let changed = match kind {
            BodyKind::Json => transform::json_body(&self.body, &body, env),
            BodyKind::Form => transform::form_body(&self.body, &body, env),
            BodyKind::Multipart => {
                super::multipart::transform(&self.body, &body, content_type.as_deref(), env)
            }
        };
        // The proxy sends the new body with its Content-Length (the client's request header
        // must keep its own: it frames what is read from the client).
        if let Some(new) = changed {
            ctx.state.upstream.body = Some(Bytes::from(new));
        }
        Ok(())
    }
}

/// Sets the Host header sent upstream (Kong's `set_header("host", ...)`).
fn set_host(ctx: &mut PhaseCtx<'_>, value: &str) -> Result<(), PluginError> {
    ctx.set_header("host", value)?;
    ctx.state.upstream.host = Some(value.to_string());
    Ok(())
}

impl Instance for RequestTransformer {
    fn phases(&self) -> &[Phase] {
        &[Phase::Access]
    }

    fn may_read_body(&self) -> bool {
        // Body steps, or a method change that moves a form body into the query.
        !self.body.is_empty()
            || self
                .method
                .as_ref()
                .is_some_and(|m| matches!(m.as_str(), "GET" | "HEAD" | "TRACE"))
    }

    fn access(&self, ctx: &mut PhaseCtx<'_>) -> Result<Flow, PluginError> {
        let env = self.templated.then(|| env(ctx));
        let env = env.as_ref();
        if let Some(uri) = &self.uri {
            let path = uri.render(env);
            if !path.starts_with('/') {
                return Err(PluginError(format!(
                    "replace.uri rendered to {path:?}, which does not start with /"
                )));
            }
            ctx.state.upstream.path = Some(escape_path(&path));
        }
        self.transform_method(ctx);
        self.transform_headers(ctx, env)?;
        self.transform_body(ctx, env)?;
        if !self.query.is_empty() {
            let mut args = ctx.query_args();
            if self.query.apply_args(&mut args, env, true) {
                ctx.set_query_args(&args);
            }
        }
        Ok(Flow::Continue)
    }
}
