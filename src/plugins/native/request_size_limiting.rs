//! `request-size-limiting`: refuses requests whose body is larger than allowed (Kong's plugin
//! hub: allowed_payload_size, size_unit, require_content_length). The size is taken from
//! Content-Length; without one, from the body when it was read for plugins.

use std::sync::Arc;

use serde::Deserialize;

use super::{BuildCtx, Bundled};
use crate::plugins::{Exit, Flow, Instance, Phase, PhaseCtx, PluginError};

/// The plugin.
pub(super) static PLUGIN: Bundled = Bundled {
    name: "request-size-limiting",
    priority: 951,
    schema: SCHEMA,
    build,
};

const SCHEMA: &str = r#"
local typedefs = require "kong.db.schema.typedefs"
return {
  name = "request-size-limiting",
  fields = {
    { protocols = typedefs.protocols_http },
    { config = { type = "record", fields = {
      { allowed_payload_size = { type = "integer", default = 128 } },
      { size_unit = { type = "string", required = true, default = "megabytes",
                      one_of = { "megabytes", "kilobytes", "bytes" } } },
      { require_content_length = { type = "boolean", required = true, default = false } },
    } } },
  },
}
"#;

const TOO_LARGE: &str = "Request size limit exceeded";
const LENGTH_REQUIRED: &str = "A valid Content-Length header is required";

#[derive(Debug, Deserialize)]
struct Conf {
    allowed_payload_size: Option<i64>,
    size_unit: String,
    require_content_length: bool,
}

struct RequestSizeLimiting {
    /// Largest allowed body in bytes (None: no limit, as Kong with a null size).
    limit: Option<u64>,
    require_content_length: bool,
}

fn build(ctx: &BuildCtx<'_>) -> Result<Arc<dyn Instance>, String> {
    let conf: Conf = ctx.decode()?;
    let unit: u64 = match conf.size_unit.as_str() {
        "megabytes" => 1 << 20,
        "kilobytes" => 1 << 10,
        _ => 1,
    };
    // A negative size allows no body at all.
    let limit = conf
        .allowed_payload_size
        .map(|n| u64::try_from(n).unwrap_or(0).saturating_mul(unit));
    Ok(Arc::new(RequestSizeLimiting {
        limit,
        require_content_length: conf.require_content_length,
    }))
}

impl RequestSizeLimiting {
    fn check(&self, ctx: &PhaseCtx<'_>, length: u64) -> Flow {
        match self.limit {
            Some(limit) if length > limit => {
                let expects_continue = ctx
                    .header("expect")
                    .is_some_and(|e| e.trim().eq_ignore_ascii_case("100-continue"));
                let status = if expects_continue { 417 } else { 413 };
                Flow::Exit(Exit::message(status, TOO_LARGE))
            }
            _ => Flow::Continue,
        }
    }
}

impl Instance for RequestSizeLimiting {
    fn phases(&self) -> &[Phase] {
        &[Phase::Access]
    }

    fn access(&self, ctx: &mut PhaseCtx<'_>) -> Result<Flow, PluginError> {
        let length = ctx
            .header("content-length")
            .and_then(|v| v.trim().parse::<u64>().ok());
        if let Some(length) = length {
            return Ok(self.check(ctx, length));
        }
        let chunked = ctx
            .req
            .headers
            .get_all("transfer-encoding")
            .iter()
            .any(|v| {
                String::from_utf8_lossy(v.as_bytes())
                    .to_ascii_lowercase()
                    .contains("chunked")
            });
        if self.require_content_length && !chunked {
            return Ok(Flow::Exit(Exit::message(411, LENGTH_REQUIRED)));
        }
        // A body read for another plugin is measured here; a streamed one while it streams.
        Ok(match &ctx.state.body {
            Some(body) => self.check(ctx, body.len() as u64),
            None => {
                // Streamed: the proxy counts the body as it goes upstream.
                ctx.state.upstream.body_limit = self.limit;
                Flow::Continue
            }
        })
    }
}
