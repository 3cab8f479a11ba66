//! The plugin model: definitions, instances, per-route chains ordered by priority with Kong's
//! scope precedence. Native (Rust) plugins live in [`native`].

pub mod chain;
pub mod native;

use std::net::IpAddr;
use std::sync::Arc;

use bytes::Bytes;
use pingora::http::{RequestHeader, ResponseHeader};

use crate::config::load::FieldProblem;
use crate::config::yaml::Node;

/// A response a plugin sends instead of proxying (Kong's `kong.response.exit`).
#[derive(Debug, Clone)]
pub struct Exit {
    /// Status code.
    pub status: u16,
    /// Extra headers.
    pub headers: Vec<(String, String)>,
    /// Body (empty for none).
    pub body: Bytes,
}

impl Exit {
    /// An exit with a JSON body, as `kong.response.exit(status, table)` sends it.
    pub fn json(status: u16, body: &serde_json::Value) -> Exit {
        Exit {
            status,
            headers: vec![(
                "content-type".into(),
                "application/json; charset=utf-8".into(),
            )],
            body: Bytes::from(body.to_string()),
        }
    }

    /// Kong's `{"message": ...}` error shape.
    pub fn message(status: u16, message: &str) -> Exit {
        Exit::json(status, &serde_json::json!({ "message": message }))
    }
}

/// What a phase handler tells the proxy to do next.
#[derive(Debug)]
pub enum Flow {
    /// Run the next plugin.
    Continue,
    /// Stop the phase and answer the client with this response.
    Exit(Exit),
}

/// A plugin failed while handling a request (the request gets a 500, never the process).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct PluginError(pub String);

/// What the access phase can see and change.
pub struct AccessCtx<'a> {
    /// The request as it will be sent upstream (headers may be changed).
    pub req: &'a mut RequestHeader,
    /// The client's address.
    pub client_ip: Option<IpAddr>,
    /// The matched route's id and name.
    pub route: Option<(&'a str, Option<&'a str>)>,
    /// The matched service's id and name.
    pub service: Option<(&'a str, Option<&'a str>)>,
}

/// A configured plugin instance, ready to run. Instances are shared by all workers.
pub trait Instance: Send + Sync {
    /// Kong's `access` phase.
    fn access(&self, _ctx: &mut AccessCtx<'_>) -> Result<Flow, PluginError> {
        Ok(Flow::Continue)
    }

    /// Kong's `header_filter` phase.
    fn header_filter(&self, _resp: &mut ResponseHeader) -> Result<(), PluginError> {
        Ok(())
    }
}

/// Builds an instance from its `config` map; problems are located in `node` (the `config`
/// subtree) when it is known.
pub type BuildFn = fn(
    &serde_json::Map<String, serde_json::Value>,
    Option<&Node>,
) -> Result<Arc<dyn Instance>, Vec<FieldProblem>>;

/// A plugin that instances can name.
#[derive(Clone)]
pub struct Definition {
    /// The plugin's name.
    pub name: String,
    /// Kong's PRIORITY: higher runs first.
    pub priority: i64,
    /// Validates a config and builds an instance.
    pub build: BuildFn,
}

impl std::fmt::Debug for Definition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Definition")
            .field("name", &self.name)
            .field("priority", &self.priority)
            .finish()
    }
}
