//! `prometheus`: turns on Kong's per-request metrics for the requests it runs on.
//!
//! The metrics themselves are recorded by the proxy after the log phase
//! (`proxy/observe.rs`) and served on the admin listener's `/metrics`. With no prometheus
//! instance in the config, every request is recorded (this gateway's default); once a config
//! has one, Kong's rule applies: only requests the plugin ran on are recorded, with the
//! families its flags turn on, and the consumer label only with `per_consumer`.

use std::sync::Arc;

use serde::Deserialize;

use super::{BuildCtx, Bundled};
use crate::plugins::{Instance, MetricFlags, Phase, PhaseCtx, PluginError};

/// The plugin.
pub(super) static PLUGIN: Bundled = Bundled {
    name: "prometheus",
    priority: 13,
    schema: SCHEMA,
    build,
};

const SCHEMA: &str = r#"
local typedefs = require "kong.db.schema.typedefs"
return {
  name = "prometheus",
  fields = {
    { protocols = typedefs.protocols },
    { config = { type = "record", fields = {
      { per_consumer = { type = "boolean", default = false } },
      { status_code_metrics = { type = "boolean", default = false } },
      { ai_metrics = { type = "boolean", default = false } },
      { latency_metrics = { type = "boolean", default = false } },
      { bandwidth_metrics = { type = "boolean", default = false } },
      { upstream_health_metrics = { type = "boolean", default = false } },
      { wasm_metrics = { type = "boolean", default = false } },
    } } },
  },
}
"#;

#[derive(Debug, Deserialize)]
struct Conf {
    per_consumer: bool,
    status_code_metrics: bool,
    latency_metrics: bool,
    bandwidth_metrics: bool,
}

struct Prometheus {
    flags: MetricFlags,
}

fn build(ctx: &BuildCtx<'_>) -> Result<Arc<dyn Instance>, String> {
    let c: Conf = ctx.decode()?;
    Ok(Arc::new(Prometheus {
        flags: MetricFlags {
            per_consumer: c.per_consumer,
            status_codes: c.status_code_metrics,
            latency: c.latency_metrics,
            bandwidth: c.bandwidth_metrics,
        },
    }))
}

impl Instance for Prometheus {
    fn phases(&self) -> &[Phase] {
        &[Phase::Log]
    }

    fn log(&self, ctx: &mut PhaseCtx<'_>) -> Result<(), PluginError> {
        ctx.state.metrics = Some(self.flags);
        Ok(())
    }
}
