//! `redirect` (Kong 3.9's bundled plugin, which the Kong Ingress Controller emits for
//! redirecting HTTPRoute filters): answers every request with a redirect to `location`, or with
//! `keep_incoming_path`, to `location`'s origin with the request's path and query.

use std::sync::Arc;

use bytes::Bytes;
use serde::Deserialize;

use super::{BuildCtx, Bundled};
use crate::plugins::{Exit, Flow, Instance, Phase, PhaseCtx, PluginError};

/// The plugin.
pub(super) static PLUGIN: Bundled = Bundled {
    name: "redirect",
    priority: 779,
    schema: SCHEMA,
    build,
};

const SCHEMA: &str = r#"
local typedefs = require "kong.db.schema.typedefs"
return {
  name = "redirect",
  fields = {
    { protocols = typedefs.protocols_http },
    { config = { type = "record", fields = {
      { status_code = { description = "The response code to send. Must be an integer between 100 and 599.",
          type = "integer", required = true, default = 301, between = { 100, 599 } } },
      { location = typedefs.url { description = "The URL to redirect to", required = true } },
      { keep_incoming_path = { description = "Use the incoming request's path and query string in the redirect URL",
          type = "boolean", default = false } },
    } } },
  },
}
"#;

#[derive(Debug, Deserialize)]
struct Conf {
    status_code: u16,
    location: String,
    keep_incoming_path: bool,
}

struct Redirect {
    status: u16,
    location: String,
    /// `location` parsed (WHATWG rules, as Kong's ada does) when the request's path replaces its own.
    base: Option<url::Url>,
}

fn build(ctx: &BuildCtx<'_>) -> Result<Arc<dyn Instance>, String> {
    let conf: Conf = ctx.decode()?;
    let base = if conf.keep_incoming_path {
        let url = url::Url::parse(&conf.location)
            .map_err(|e| format!("config.location: cannot parse {:?}: {e}", conf.location))?;
        if url.cannot_be_a_base() {
            return Err(format!(
                "config.location: {:?} has no path to replace (keep_incoming_path)",
                conf.location
            ));
        }
        Some(url)
    } else {
        None
    };
    Ok(Arc::new(Redirect {
        status: conf.status_code,
        location: conf.location,
        base,
    }))
}

impl Instance for Redirect {
    fn phases(&self) -> &[Phase] {
        &[Phase::Access]
    }

    fn access(&self, ctx: &mut PhaseCtx<'_>) -> Result<Flow, PluginError> {
        let location = match &self.base {
            None => self.location.clone(),
            Some(base) => {
                // kong.request.get_path() (normalised) and get_raw_query(), as Kong's handler.
                let mut url = base.clone();
                url.set_path(&crate::router::normalize_path(ctx.req.uri.path()));
                url.set_query(ctx.query().filter(|q| !q.is_empty()));
                url.into()
            }
        };
        Ok(Flow::Exit(Exit {
            status: self.status,
            headers: vec![("location".into(), location)],
            body: Bytes::from_static(b"redirecting"),
        }))
    }
}
