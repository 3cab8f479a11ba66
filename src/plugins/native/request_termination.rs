//! `request-termination`: answers the request with a fixed status and message or body
//! (Kong's plugin hub: status_code, message, body, content_type, echo, trigger).

use std::sync::Arc;

use bytes::Bytes;
use serde::Deserialize;

use crate::config::load::{decode_value, FieldProblem};
use crate::config::yaml::{Loc, Node};
use crate::plugins::{Definition, Exit, Flow, Instance, Kind, Phase, PhaseCtx, PluginError};

/// Kong's PRIORITY for request-termination.
const PRIORITY: i64 = 2;

#[derive(Debug, Deserialize)]
#[serde(default)]
struct Conf {
    status_code: i64,
    message: Option<String>,
    body: Option<String>,
    content_type: Option<String>,
    echo: bool,
    trigger: Option<String>,
}

impl Default for Conf {
    fn default() -> Self {
        Conf {
            status_code: 503,
            message: None,
            body: None,
            content_type: None,
            echo: false,
            trigger: None,
        }
    }
}

struct RequestTermination {
    conf: Conf,
}

pub(super) fn definition() -> Definition {
    Definition {
        name: "request-termination".into(),
        priority: PRIORITY,
        kind: Kind::Native(build),
    }
}

fn build(
    config: &serde_json::Map<String, serde_json::Value>,
    node: Option<&Node>,
) -> Result<Arc<dyn Instance>, Vec<FieldProblem>> {
    let fallback = Node {
        loc: Loc::default(),
        value: crate::config::yaml::Value::Null,
    };
    let node = node.unwrap_or(&fallback);
    let (conf, mut problems) =
        decode_value::<Conf>(node, serde_json::Value::Object(config.clone()));
    let mut problem = |field: &str, message: &str| {
        problems.push(FieldProblem {
            loc: node.get(field).map_or(node.loc, |n| n.loc),
            field: field.into(),
            message: message.into(),
        })
    };
    if let Some(conf) = &conf {
        if !(100..=599).contains(&conf.status_code) {
            problem("status_code", "expected an integer between 100 and 599");
        }
        if conf.message.is_some() && conf.body.is_some() {
            problem("message", "`message` and `body` are mutually exclusive");
        }
        if conf.content_type.is_some() && conf.body.is_none() {
            problem("content_type", "`content_type` requires `body`");
        }
    }
    match conf {
        Some(conf) if problems.is_empty() => Ok(Arc::new(RequestTermination { conf })),
        _ => Err(problems),
    }
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
        let status = c.status_code as u16;
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
