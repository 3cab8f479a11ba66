//! `request-termination`: answers the request with a fixed status and message or body
//! (Kong's plugin hub: status_code, message, body, content_type, echo, trigger).

use std::sync::Arc;

use bytes::Bytes;
use serde::Deserialize;

use super::{BuildCtx, Bundled};
use crate::plugins::{Exit, Flow, Instance, Phase, PhaseCtx, PluginError};

/// The plugin.
pub(super) static PLUGIN: Bundled = Bundled {
    name: "request-termination",
    priority: 2,
    schema: SCHEMA,
    build,
};

const SCHEMA: &str = r#"
local typedefs = require "kong.db.schema.typedefs"
return {
  name = "request-termination",
  fields = {
    { protocols = typedefs.protocols_http },
    { config = { type = "record", fields = {
      { status_code = { type = "integer", required = true, default = 503, between = { 100, 599 } } },
      { message = { type = "string" } },
      { content_type = { type = "string" } },
      { body = { type = "string" } },
      { echo = { type = "boolean", required = true, default = false } },
      { trigger = typedefs.header_name },
    } } },
  },
  entity_checks = {
    { mutually_exclusive = { "config.message", "config.body" } },
    { mutually_exclusive = { "config.message", "config.content_type" } },
    { custom_entity_check = {
      field_sources = { "config" },
      fn = function(entity)
        local c = entity.config
        if c.content_type ~= ngx.null and c.content_type ~= nil and (c.body == nil or c.body == ngx.null) then
          return nil, "content_type requires a body"
        end
        return true
      end,
    } },
  },
}
"#;

#[derive(Debug, Deserialize)]
struct Conf {
    status_code: u16,
    message: Option<String>,
    body: Option<String>,
    content_type: Option<String>,
    echo: bool,
    trigger: Option<String>,
}

struct RequestTermination {
    conf: Conf,
}

fn build(ctx: &BuildCtx<'_>) -> Result<Arc<dyn Instance>, String> {
    Ok(Arc::new(RequestTermination {
        conf: ctx.decode()?,
    }))
}

/// Kong's default message for a status when none is configured.
fn default_message(status: u16) -> String {
    match status {
        503 => "Service unavailable".into(),
        500 => "An unexpected error occurred".into(),
        404 => "Not found".into(),
        403 => "Forbidden".into(),
        401 => "Unauthorized".into(),
        s => http::StatusCode::from_u16(s)
            .ok()
            .and_then(|c| c.canonical_reason())
            .unwrap_or("Request terminated")
            .to_string(),
    }
}

impl Instance for RequestTermination {
    fn phases(&self) -> &[Phase] {
        &[Phase::Access]
    }

    fn access(&self, ctx: &mut PhaseCtx<'_>) -> Result<Flow, PluginError> {
        let c = &self.conf;
        if let Some(trigger) = &c.trigger {
            let in_header = ctx.req.headers.contains_key(trigger.as_str());
            let in_query = ctx.req.uri.query().is_some_and(|q| {
                q.split('&')
                    .any(|kv| kv.split('=').next() == Some(trigger.as_str()))
            });
            if !in_header && !in_query {
                return Ok(Flow::Continue);
            }
        }
        let status = c.status_code;
        if c.echo {
            let headers: serde_json::Map<String, serde_json::Value> = ctx
                .req
                .headers
                .iter()
                .map(|(k, v)| {
                    (
                        k.as_str().to_string(),
                        String::from_utf8_lossy(v.as_bytes()).into_owned().into(),
                    )
                })
                .collect();
            let route = ctx
                .route()
                .map(|(id, name)| serde_json::json!({"id": id, "name": name}));
            let service = ctx
                .service()
                .map(|(id, name)| serde_json::json!({"id": id, "name": name}));
            let body = serde_json::json!({
                "message": c.message.clone().unwrap_or_else(|| default_message(status)),
                "request": {
                    "method": ctx.req.method.as_str(),
                    "path": ctx.req.uri.path(),
                    "query": ctx.req.uri.query(),
                    "headers": headers,
                },
                "matched_route": route,
                "matched_service": service,
            });
            return Ok(Flow::Exit(Exit::json(status, &body)));
        }
        if let Some(body) = &c.body {
            let content_type = c
                .content_type
                .clone()
                .unwrap_or_else(|| "application/json; charset=utf-8".into());
            return Ok(Flow::Exit(Exit {
                status,
                headers: vec![("content-type".into(), content_type)],
                body: Bytes::from(body.clone()),
            }));
        }
        let message = c.message.clone().unwrap_or_else(|| default_message(status));
        Ok(Flow::Exit(Exit::message(status, &message)))
    }
}
