//! Kong's bundled plugins, written in Rust.
//!
//! A bundled plugin declares its schema in Kong's schema DSL (the same engine validates
//! streamed plugins' configs, so defaults, types, ranges and located errors behave the same)
//! and a builder that turns a validated config into an [`Instance`]. Instances are built once
//! per snapshot; state that must outlive a reload (rate-limiting counters, log queues) lives
//! in process-wide registries keyed by the plugin instance's id.

mod acl;
mod auth;
mod basic_auth;
mod correlation_id;
mod cors;
mod file_log;
mod functions;
mod http_log;
mod ip_restriction;
mod key_auth;
pub(crate) mod log_serializer;
pub(crate) mod multipart;
mod prometheus;
mod rate_limiting;
mod redirect;
pub mod redis;
mod request_size_limiting;
mod request_termination;
mod request_transformer;
mod response_ratelimiting;
mod response_transformer;
mod template;
mod transform;

use std::sync::Arc;

use serde::de::DeserializeOwned;

use super::{Definition, Flow, Instance, Kind, PhaseCtx, PluginError};
use crate::config::model::{Config, Plugin};

/// A bundled plugin: its name, Kong's PRIORITY, schema and builder.
pub struct Bundled {
    /// Kong's name of the plugin.
    pub name: &'static str,
    /// Kong's PRIORITY.
    pub priority: i64,
    /// The schema in Kong's schema DSL (Lua source returning the schema table).
    pub schema: &'static str,
    /// Builds an instance from a validated config.
    pub build: fn(&BuildCtx<'_>) -> Result<Arc<dyn Instance>, String>,
}

/// What a builder sees: the instance's validated config and where it sits in the config.
pub struct BuildCtx<'a> {
    /// The whole configuration.
    pub config: &'a Config,
    /// The plugin entity.
    pub plugin: &'a Plugin,
    /// The name the instance runs under (a clone's own name).
    pub name: &'a str,
    /// The validated config, every default filled in.
    pub conf: &'a serde_json::Value,
    /// Index of the instance in the config's plugins.
    pub index: usize,
    /// Generation of the snapshot being built.
    pub generation: u64,
    /// The loader's VM (to check Lua code the config carries).
    pub loader: &'a crate::plugins::lua::Loader,
}

impl BuildCtx<'_> {
    /// The validated config decoded into the plugin's config type.
    pub fn decode<T: DeserializeOwned>(&self) -> Result<T, String> {
        serde_json::from_value(self.conf.clone())
            .map_err(|e| format!("the validated config does not decode: {e}"))
    }
}

/// Starts `fut` on the request's I/O: the phase returns the [`Flow::Wait`] this gives, the
/// worker serves other requests meanwhile, and the instance's `resume` takes the output back
/// with [`waited`].
pub fn wait<T: Send + Sync + 'static>(
    ctx: &mut PhaseCtx<'_>,
    fut: impl std::future::Future<Output = T> + Send + 'static,
) -> Flow {
    use futures_util::FutureExt;
    let io = ctx.state.io.get_or_insert_with(Default::default);
    let _ = io.wait_for(fut.map(|v| super::lua::io::Outcome::Native(Box::new(v))));
    Flow::Wait
}

/// The output of the future [`wait`] started.
pub fn waited<T: 'static>(ctx: &mut PhaseCtx<'_>) -> Result<T, PluginError> {
    match ctx.state.io.as_mut().and_then(|io| io.take_done()) {
        Some((_, super::lua::io::Outcome::Native(v))) => v
            .downcast::<T>()
            .map(|v| *v)
            .map_err(|_| PluginError("resumed with another operation's result".into())),
        _ => Err(PluginError("resumed without a finished operation".into())),
    }
}

/// Every bundled plugin of this build.
pub static BUNDLED: &[&Bundled] = &[
    &file_log::PLUGIN,
    &functions::PRE,
    &functions::POST,
    &http_log::PLUGIN,
    &prometheus::PLUGIN,
    &rate_limiting::PLUGIN,
    &response_ratelimiting::PLUGIN,
    &request_termination::PLUGIN,
    &correlation_id::PLUGIN,
    &cors::PLUGIN,
    &request_transformer::PLUGIN,
    &response_transformer::PLUGIN,
    &acl::PLUGIN,
    &basic_auth::PLUGIN,
    &ip_restriction::PLUGIN,
    &key_auth::PLUGIN,
    &request_size_limiting::PLUGIN,
    &redirect::PLUGIN,
];

/// The bundled plugins as definitions.
pub fn definitions() -> Vec<Definition> {
    BUNDLED
        .iter()
        .map(|b| Definition {
            name: b.name.to_string(),
            priority: b.priority,
            kind: Kind::Native(b),
        })
        .collect()
}
