//! `pre-function` and `post-function`: Lua code from the config, per phase, run first
//! (priority 1000000) or last (-1000) in the sandboxed per-worker VM with the PDK.
//!
//! Each code string is compiled as a function when the worker first loads the instance; as
//! in Kong, a chunk that returns a function has that function called per request (so it
//! can keep upvalues), any other chunk is itself called per request. The same CPU and
//! memory limits as streamed plugins apply.

use std::fmt::Write;
use std::sync::Arc;

use serde::Deserialize;

use super::{BuildCtx, Bundled};
use crate::plugins::lua::{LuaInstance, LuaPlugin};
use crate::plugins::{Instance, Phase};

/// `pre-function`.
pub(super) static PRE: Bundled = Bundled {
    name: "pre-function",
    priority: 1_000_000,
    schema: PRE_SCHEMA,
    build,
};

/// `post-function`.
pub(super) static POST: Bundled = Bundled {
    name: "post-function",
    priority: -1000,
    schema: POST_SCHEMA,
    build,
};

macro_rules! schema {
    ($name:literal) => {
        concat!(
            r#"
local typedefs = require "kong.db.schema.typedefs"
local phase = { required = true, type = "array", default = {},
                elements = { type = "string", required = false } }
return {
  name = ""#,
            $name,
            r#"",
  fields = {
    { consumer = typedefs.no_consumer },
    { protocols = typedefs.protocols },
    { config = { type = "record", fields = {
      { certificate = phase },
      { rewrite = phase },
      { access = phase },
      { header_filter = phase },
      { body_filter = phase },
      { log = phase },
      { ws_handshake = phase },
      { ws_client_frame = phase },
      { ws_upstream_frame = phase },
      { ws_close = phase },
    } } },
  },
}
"#
        )
    };
}

const PRE_SCHEMA: &str = schema!("pre-function");
const POST_SCHEMA: &str = schema!("post-function");

#[derive(Debug, Deserialize)]
struct Conf {
    certificate: Vec<String>,
    rewrite: Vec<String>,
    access: Vec<String>,
    header_filter: Vec<String>,
    body_filter: Vec<String>,
    log: Vec<String>,
    ws_handshake: Vec<String>,
    ws_client_frame: Vec<String>,
    ws_upstream_frame: Vec<String>,
    ws_close: Vec<String>,
}

fn build(ctx: &BuildCtx<'_>) -> Result<Arc<dyn Instance>, String> {
    let conf: Conf = ctx.decode()?;
    let unsupported = [
        ("certificate", &conf.certificate),
        ("ws_handshake", &conf.ws_handshake),
        ("ws_client_frame", &conf.ws_client_frame),
        ("ws_upstream_frame", &conf.ws_upstream_frame),
        ("ws_close", &conf.ws_close),
    ];
    if let Some((name, _)) = unsupported.iter().find(|(_, v)| !v.is_empty()) {
        return Err(format!(
            "{name}: this phase is not supported by this gateway"
        ));
    }
    let phases = [
        (Phase::Rewrite, &conf.rewrite),
        (Phase::Access, &conf.access),
        (Phase::HeaderFilter, &conf.header_filter),
        (Phase::BodyFilter, &conf.body_filter),
        (Phase::Log, &conf.log),
    ];
    let mut source = String::from("local H = { PRIORITY = 0, VERSION = \"3.9.1\" }\n");
    source.push_str(
        "local function compile(list)\n  local out = {}\n  for i, f in ipairs(list) do\n    local ok, ret = pcall(f)\n    out[i] = (ok and type(ret) == \"function\") and ret or f\n  end\n  return out\nend\n",
    );
    let mut used = Vec::new();
    for (phase, codes) in phases {
        if codes.is_empty() {
            continue;
        }
        let name = phase.as_str();
        for (i, code) in codes.iter().enumerate() {
            // Each string must be a chunk of its own: a syntax error names its place.
            let chunk = format!("{}/config.{name}[{}]", ctx.name, i + 1);
            ctx.loader
                .check_syntax(code, &chunk)
                .map_err(|e| format!("{name}[{}]: {e}", i + 1))?;
        }
        let _ = writeln!(source, "local {name}_fns = compile({{");
        for code in codes {
            let _ = writeln!(source, "function(...)\n{code}\nend,");
        }
        let _ = writeln!(
            source,
            "}})\nfunction H:{name}()\n  for i = 1, #{name}_fns do {name}_fns[i]() end\nend"
        );
        used.push(phase);
    }
    source.push_str("return H\n");
    let handler: Arc<str> = Arc::from(source.as_str());
    let (key, key_hash) = crate::plugins::lua::plugin_key(ctx.name, &source);
    let plugin = LuaPlugin {
        name: ctx.name.to_string(),
        key,
        key_hash,
        handler,
        schema: Arc::from(""),
        priority: 0,
        version: "3.9.1".into(),
        phases: used,
    };
    Ok(Arc::new(LuaInstance {
        plugin: Arc::new(plugin),
        name: ctx.name.to_string(),
        generation: ctx.generation,
        index: ctx.index,
        conf: Arc::new(serde_json::json!({})),
        ids: crate::plugins::lua::InstanceIds::of(ctx.config, ctx.plugin),
    }))
}
