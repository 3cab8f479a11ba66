//! `correlation-id`: gives each request an id in a header sent upstream, and optionally back
//! to the client (Kong's plugin hub: header_name, generator, echo_downstream). A request that
//! already carries the header keeps its value.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::Deserialize;

use super::{BuildCtx, Bundled};
use crate::plugins::{Flow, Instance, Phase, PhaseCtx, PluginError};

/// The plugin.
pub(super) static PLUGIN: Bundled = Bundled {
    name: "correlation-id",
    priority: 100001,
    schema: SCHEMA,
    build,
};

const SCHEMA: &str = r#"
local typedefs = require "kong.db.schema.typedefs"
return {
  name = "correlation-id",
  fields = {
    { protocols = typedefs.protocols_http },
    { config = { type = "record", fields = {
      { header_name = { type = "string", default = "Kong-Request-ID" } },
      { generator = { type = "string", default = "uuid#counter", required = true,
          one_of = { "uuid", "uuid#counter", "tracker" } } },
      { echo_downstream = { type = "boolean", required = true, default = false } },
    } } },
  },
}
"#;

#[derive(Debug, Deserialize)]
struct Conf {
    header_name: Option<String>,
    generator: String,
    echo_downstream: bool,
}

#[derive(Debug, Clone, Copy)]
enum Generator {
    Uuid,
    UuidCounter,
    Tracker,
}

struct CorrelationId {
    /// The instance's name (keys the id kept for the response).
    name: String,
    header: String,
    generator: Generator,
    echo: bool,
}

/// The id kept between access and header_filter.
struct Kept(String);

fn build(ctx: &BuildCtx<'_>) -> Result<Arc<dyn Instance>, String> {
    let c: Conf = ctx.decode()?;
    let header = c
        .header_name
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "Kong-Request-ID".into());
    http::HeaderName::from_bytes(header.as_bytes())
        .map_err(|_| format!("header_name: {header:?} is not a valid header name"))?;
    let generator = match c.generator.as_str() {
        "uuid" => Generator::Uuid,
        "tracker" => Generator::Tracker,
        _ => Generator::UuidCounter,
    };
    Ok(Arc::new(CorrelationId {
        name: ctx.name.to_string(),
        header,
        generator,
        echo: c.echo_downstream,
    }))
}

/// The process's uuid and request counter for `uuid#counter` (Kong keeps one per worker).
static PROCESS_UUID: OnceLock<String> = OnceLock::new();
static COUNTER: AtomicU64 = AtomicU64::new(0);

impl Generator {
    fn generate(self, ctx: &PhaseCtx<'_>) -> String {
        match self {
            Generator::Uuid => uuid::Uuid::new_v4().to_string(),
            Generator::UuidCounter => {
                let base = PROCESS_UUID.get_or_init(|| uuid::Uuid::new_v4().to_string());
                format!("{base}#{}", COUNTER.fetch_add(1, Ordering::Relaxed) + 1)
            }
            // Kong: server_addr-server_port-pid-connection-connection_requests-time. The
            // connection serial is the process's request serial here, and the connection's
            // request count is not tracked (1).
            Generator::Tracker => {
                let (addr, port) = ctx
                    .state
                    .server
                    .map_or((String::new(), 0), |a| (a.ip().to_string(), a.port()));
                let now = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .unwrap_or_default()
                    .as_secs_f64();
                format!(
                    "{addr}-{port}-{}-{}-1-{now:.3}",
                    std::process::id(),
                    ctx.state.id
                )
            }
        }
    }
}

impl Instance for CorrelationId {
    fn phases(&self) -> &[Phase] {
        &[Phase::Access, Phase::HeaderFilter]
    }

    fn access(&self, ctx: &mut PhaseCtx<'_>) -> Result<Flow, PluginError> {
        let id = match ctx.header(&self.header).filter(|v| !v.is_empty()) {
            Some(id) => id.to_string(),
            None => {
                let id = self.generator.generate(ctx);
                ctx.set_header(&self.header, &id)?;
                id
            }
        };
        if self.echo {
            ctx.state.plugin_data.insert(&self.name, Kept(id));
        }
        Ok(Flow::Continue)
    }

    fn header_filter(&self, ctx: &mut PhaseCtx<'_>) -> Result<(), PluginError> {
        if !self.echo {
            return Ok(());
        }
        let kept = ctx
            .state
            .plugin_data
            .get_mut::<Kept>(&self.name)
            .map(|k| k.0.clone());
        let id = match kept.or_else(|| {
            ctx.header(&self.header)
                .filter(|v| !v.is_empty())
                .map(str::to_string)
        }) {
            Some(id) => id,
            None => self.generator.generate(ctx),
        };
        if let Some(resp) = ctx.resp.as_deref_mut() {
            resp.insert_header(self.header.clone(), id)
                .map_err(|e| PluginError(format!("invalid header {}: {e}", self.header)))?;
        }
        Ok(())
    }
}
