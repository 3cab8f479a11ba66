//! Streamed Lua plugins (`custom_plugins`): loading and checking handlers and schemas when a
//! configuration is compiled, instances that run on the per-worker runtime, and the PDK.

pub mod embed;
pub mod io;
pub mod pdk;
pub mod runtime;
pub mod sandbox;
pub mod schema;
pub mod util;

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::Arc;

use mlua::{Table, Value};

use super::{Flow, Instance, Phase, PhaseCtx, PluginError};

/// A custom plugin's code, checked.
#[derive(Debug)]
pub struct LuaPlugin {
    /// The custom plugin's name (clones share it: `kong.ctx.plugin` is shared with clones).
    pub name: String,
    /// handler.lua
    pub handler: Arc<str>,
    /// schema.lua
    pub schema: Arc<str>,
    /// `name@hash-of-handler`: a worker reuses a loaded handler across reloads while its name
    /// and source are unchanged.
    pub key: String,
    /// A hash of `key`, computed once: workers find their loaded handler by it on every phase
    /// call (hashing the ~70-byte key each time cost ~250 instructions per call).
    pub key_hash: u64,
    /// The handler's PRIORITY.
    pub priority: i64,
    /// The handler's VERSION.
    pub version: String,
    /// Phases the handler implements.
    pub phases: Vec<Phase>,
}

/// [`LuaPlugin::key`] and [`LuaPlugin::key_hash`] of a handler.
pub fn plugin_key(name: &str, handler: &str) -> (String, u64) {
    use std::hash::BuildHasher;
    let key = format!("{name}@{}", crate::snapshot::hash_text(handler));
    let hash = rustc_hash::FxBuildHasher.hash_one(&key);
    (key, hash)
}

/// A configured instance of a Lua plugin in one snapshot generation.
pub struct LuaInstance {
    /// The plugin (possibly run under a clone's name).
    pub plugin: Arc<LuaPlugin>,
    /// The name it runs under (the clone's name for a clone).
    pub name: String,
    /// Snapshot generation.
    pub generation: u64,
    /// Index of the instance in the config's plugins.
    pub index: usize,
    /// The validated conf with defaults, shared by every instance with the same config.
    pub conf: Arc<serde_json::Value>,
    /// The fields Kong adds to each instance's conf table.
    pub ids: InstanceIds,
}

/// What Kong's plugins iterator sets on an instance's conf table besides the validated config:
/// `route_id`, `service_id`, `consumer_id`, `plugin_instance_name` (each only when set) and
/// `__plugin_id`.
#[derive(Debug, Clone)]
pub struct InstanceIds {
    /// The route the instance is bound to.
    pub route_id: Option<String>,
    /// The service the instance is bound to.
    pub service_id: Option<String>,
    /// The consumer the instance is bound to.
    pub consumer_id: Option<String>,
    /// The instance's `instance_name`.
    pub plugin_instance_name: Option<String>,
    /// The instance's id.
    pub plugin_id: String,
}

impl InstanceIds {
    /// The ids of `plugin`, an instance of `config`.
    pub fn of(
        config: &crate::config::model::Config,
        plugin: &crate::config::model::Plugin,
    ) -> Self {
        InstanceIds {
            route_id: plugin.route.map(|i| config.routes[i].id.clone()),
            service_id: plugin.service.map(|i| config.services[i].id.clone()),
            consumer_id: plugin.consumer.map(|i| config.consumers[i].id.clone()),
            plugin_instance_name: plugin.instance_name.clone(),
            plugin_id: plugin.id.clone(),
        }
    }
}

impl Instance for LuaInstance {
    fn phases(&self) -> &[Phase] {
        &self.plugin.phases
    }

    fn may_read_body(&self) -> bool {
        self.plugin
            .phases
            .iter()
            .any(|p| matches!(p, Phase::Rewrite | Phase::Access))
    }

    fn rewrite(&self, ctx: &mut PhaseCtx<'_>) -> Result<Flow, PluginError> {
        runtime::call(self, ctx)
    }

    fn access(&self, ctx: &mut PhaseCtx<'_>) -> Result<Flow, PluginError> {
        runtime::call(self, ctx)
    }

    fn response(&self, ctx: &mut PhaseCtx<'_>) -> Result<Flow, PluginError> {
        runtime::call(self, ctx)
    }

    fn resume(&self, ctx: &mut PhaseCtx<'_>) -> Result<Flow, PluginError> {
        runtime::resume(self, ctx)
    }

    fn header_filter(&self, ctx: &mut PhaseCtx<'_>) -> Result<(), PluginError> {
        runtime::call(self, ctx).map(|_| ())
    }

    fn body_filter(&self, ctx: &mut PhaseCtx<'_>) -> Result<(), PluginError> {
        runtime::call(self, ctx).map(|_| ())
    }

    fn log(&self, ctx: &mut PhaseCtx<'_>) -> Result<(), PluginError> {
        runtime::call(self, ctx).map(|_| ())
    }

    fn as_lua(&self) -> Option<&LuaInstance> {
        Some(self)
    }
}

/// Checks custom plugins and validates their instances' configs while a snapshot compiles.
/// It owns a sandboxed VM of its own (the reload thread's), dropped with it.
pub struct Loader {
    lua: sandbox::Vm,
    globals: Vec<(&'static str, Value)>,
    schemas: Vec<(String, schema::Schema)>,
    /// Outcomes of `validate` by plugin, scope and config text, with the round that last
    /// used each: a config applied to many routes (a KongPlugin on every Ingress) is checked
    /// once, and once per loader while [`prune`](Loader::prune) keeps it.
    validated: RefCell<HashMap<String, (Validated, u64)>>,
    /// The current round (one per config compiled with this loader).
    round: u64,
    /// The vaults the config being loaded names, for references in plugin configs.
    vaults: crate::config::vault::Vaults,
}

type Validated = Result<Arc<serde_json::Value>, Vec<schema::Problem>>;

/// Names of the handler methods Kong knows.
const PHASE_METHODS: &[(&str, Option<Phase>)] = &[
    ("rewrite", Some(Phase::Rewrite)),
    ("access", Some(Phase::Access)),
    ("header_filter", Some(Phase::HeaderFilter)),
    ("body_filter", Some(Phase::BodyFilter)),
    ("log", Some(Phase::Log)),
    ("response", Some(Phase::Response)),
    ("init_worker", None),
    ("configure", None),
    ("certificate", None),
];

impl Loader {
    /// A loader with a fresh VM.
    pub fn new() -> Result<Loader, String> {
        let lua = sandbox::new_vm().map_err(|e| format!("cannot start the Lua VM: {e}"))?;
        let globals = pdk::install(&lua).map_err(|e| format!("cannot install the PDK: {e}"))?;
        Ok(Loader {
            lua,
            globals,
            schemas: Vec::new(),
            validated: RefCell::default(),
            round: 0,
            vaults: Default::default(),
        })
    }

    /// Loads and checks a custom plugin's handler and schema. Errors are messages that name
    /// the part (handler/schema) and, for Lua errors, the line.
    pub fn define(
        &mut self,
        name: &str,
        handler: &str,
        schema_src: &str,
    ) -> Result<Arc<LuaPlugin>, Vec<String>> {
        let mut errors = Vec::new();
        let (key, key_hash) = plugin_key(name, handler);
        let mut plugin = LuaPlugin {
            name: name.to_string(),
            handler: Arc::from(handler),
            schema: Arc::from(schema_src),
            key,
            key_hash,
            priority: 0,
            version: String::new(),
            phases: Vec::new(),
        };
        // Loading runs the chunk, and reading its fields may run its metamethods: one budget.
        sandbox::with_budget(|| {
            match runtime::load_handler(&self.lua, &plugin, &self.globals) {
                Ok((table, _)) => self.check_handler(&table, &mut plugin, &mut errors),
                Err(e) => errors.push(format!("handler: {}", lua_error(&e))),
            }
            // Reading a method may have failed quietly (a metamethod that never returns).
            if let Some(overrun) = sandbox::budget::overrun() {
                if !errors.iter().any(|e| e.contains(&overrun.to_string())) {
                    errors.push(format!("handler: {overrun}"));
                }
            }
        });
        match self.load_schema(name, schema_src) {
            Ok(schema) => self.schemas.push((name.to_string(), schema)),
            Err(e) => errors.push(format!("schema: {e}")),
        }
        if errors.is_empty() {
            Ok(Arc::new(plugin))
        } else {
            Err(errors)
        }
    }

    fn check_handler(&self, table: &Table, plugin: &mut LuaPlugin, errors: &mut Vec<String>) {
        match table.get::<Value>("PRIORITY") {
            Ok(Value::Integer(p)) => plugin.priority = p,
            Ok(Value::Number(n)) if n.fract() == 0.0 && n.abs() < 2f64.powi(53) => {
                plugin.priority = n as i64
            }
            Ok(v) => errors.push(format!(
                "handler: PRIORITY must be an integer, got {}",
                describe_value(&v)
            )),
            Err(e) => errors.push(format!("handler: PRIORITY: {e}")),
        }
        match table.get::<Value>("VERSION") {
            Ok(Value::String(s)) => match valid_version(&s.to_string_lossy()) {
                Some(v) => plugin.version = v,
                None => errors.push(format!(
                    "handler: VERSION must follow the \"x.y.z\" format (1 to 3 numeric parts), got {:?}",
                    s.to_string_lossy()
                )),
            },
            Ok(v) => errors.push(format!(
                "handler: VERSION must be a string in the \"x.y.z\" format, got {}",
                describe_value(&v)
            )),
            Err(e) => errors.push(format!("handler: VERSION: {e}")),
        }
        let has = |m: &str| matches!(table.get::<Value>(m), Ok(Value::Function(_)));
        if has("response") && (has("header_filter") || has("body_filter")) {
            errors.push(
                "handler: implements both `response` and `header_filter` or `body_filter` (Kong refuses such a plugin)"
                    .into(),
            );
        }
        if has("init_worker") {
            // Run here too, so that an init_worker that fails (or needs timers) fails the
            // config rather than every request of a worker later.
            if let Err(e) = runtime::init_worker(table) {
                errors.push(format!("handler: init_worker: {}", lua_error(&e)));
            }
        }
        plugin.phases = PHASE_METHODS
            .iter()
            .filter(|(m, _)| has(m))
            .filter_map(|(_, p)| *p)
            .collect();
    }

    /// The schema of plugin `name` (Lua source) as Kong's `GET /schemas/plugins/{name}`
    /// serves it. Runs the schema chunk under the CPU budget.
    pub fn schema_json(&self, name: &str, source: &str) -> Result<serde_json::Value, String> {
        self.with_schema_table(name, source, schema::to_kong_json)
    }

    /// Runs plugin `name`'s schema chunk and hands the table it returns to `read`; the chunk
    /// and the reading (its metamethods, its defaults) share one CPU budget.
    fn with_schema_table<T>(
        &self,
        name: &str,
        source: &str,
        read: impl FnOnce(&mlua::Table) -> Result<T, String>,
    ) -> Result<T, String> {
        let env = sandbox::plugin_env(&self.lua, &self.globals).map_err(|e| e.to_string())?;
        let module = format!("kong.plugins.{name}.schema");
        let chunk = format!("{name}/schema.lua");
        sandbox::with_budget(|| {
            let value = sandbox::run_chunk(&self.lua, source, &chunk, env, &module)
                .map_err(|e| lua_error(&e))?;
            let Value::Table(table) = value else {
                return Err(format!(
                    "schema.lua must return a table, got {}",
                    describe_value(&value)
                ));
            };
            read(&table)
        })
    }

    fn load_schema(&self, name: &str, source: &str) -> Result<schema::Schema, String> {
        let schema =
            self.with_schema_table(name, source, |t| schema::Schema::from_lua(&self.lua, t))?;
        if schema.name() != name {
            return Err(format!(
                "the schema's name {:?} does not match the plugin's name {name:?}",
                schema.name()
            ));
        }
        Ok(schema)
    }

    /// Compiles the schema of a bundled plugin, once per loader (schemas are read only for the
    /// plugins a config uses).
    pub fn ensure_schema(&mut self, name: &str, source: &str) -> Result<(), String> {
        if self.schemas.iter().any(|(n, _)| n == name) {
            return Ok(());
        }
        let schema = self.load_schema(name, source)?;
        self.schemas.push((name.to_string(), schema));
        Ok(())
    }

    /// Compiles (without running) a Lua text chunk; the error names `chunk` and the line.
    pub fn check_syntax(&self, source: &str, chunk: &str) -> Result<(), String> {
        self.lua
            .load(source)
            .set_name(format!("@{chunk}"))
            .set_mode(mlua::chunk::ChunkMode::Text)
            .into_function()
            .map(|_| ())
            .map_err(|e| lua_error(&e))
    }

    /// The vaults `{vault://...}` references in plugin configs may name (the config's).
    pub fn set_vaults(&mut self, vaults: crate::config::vault::Vaults) {
        if self.vaults != vaults {
            self.validated.get_mut().clear();
            self.vaults = vaults;
        }
    }

    /// Validates an instance's config against the plugin's schema (defaults filled in).
    /// `scope` lists the instance's bindings ("route", "service", "consumer") for the schema's
    /// `no_route`/`no_service`/`no_consumer` restrictions.
    pub fn validate(
        &self,
        plugin: &str,
        config: &serde_json::Map<String, serde_json::Value>,
        scope: &[&str],
    ) -> Validated {
        // One buffer, no format!: this runs for each of 10,000s of instances per reload.
        let mut key = Vec::with_capacity(plugin.len() + 64);
        key.extend_from_slice(plugin.as_bytes());
        key.push(b'\n');
        for (i, s) in scope.iter().enumerate() {
            if i > 0 {
                key.push(b',');
            }
            key.extend_from_slice(s.as_bytes());
        }
        key.push(b'\n');
        // Serializing a map of JSON values cannot fail (and writes UTF-8).
        let _ = serde_json::to_writer(&mut key, config);
        let key = String::from_utf8(key).unwrap_or_default();
        if let Some((done, round)) = self.validated.borrow_mut().get_mut(&key) {
            *round = self.round;
            return done.clone();
        }
        let done = self.validate_once(plugin, &serde_json::Value::Object(config.clone()), scope);
        self.validated
            .borrow_mut()
            .insert(key, (done.clone(), self.round));
        done
    }

    /// Starts the next config compiled with this loader: see [`prune`](Loader::prune).
    pub fn next_round(&mut self) {
        self.round += 1;
    }

    /// Forgets the validation outcomes the current round did not use, and every failure (a
    /// failure may be transient: a budget overrun), so that what a kept loader holds stays
    /// proportional to the config it last compiled.
    pub fn prune(&mut self) {
        let round = self.round;
        self.validated
            .get_mut()
            .retain(|_, (done, used)| *used == round && done.is_ok());
        // What the config's validation left behind is garbage now: collect it before the VM
        // waits for the next config, rather than carry it.
        if let Err(e) = self.lua.gc_collect() {
            tracing::debug!("kept Lua loader: garbage collection failed: {e}");
        }
    }

    fn validate_once(&self, plugin: &str, config: &serde_json::Value, scope: &[&str]) -> Validated {
        let Some((_, schema)) = self.schemas.iter().find(|(n, _)| n == plugin) else {
            return Err(vec![schema::Problem {
                field: String::new(),
                message: format!("plugin {plugin:?} has no schema"),
            }]);
        };
        let mut problems = Vec::new();
        for s in scope {
            if schema.forbids(s) {
                problems.push(schema::Problem {
                    field: (*s).to_string(),
                    message: format!(
                        "value must be null (the {plugin} plugin cannot be applied to a {s})"
                    ),
                });
            }
        }
        // Custom validators and entity checks are plugin code: they run under the budget.
        match sandbox::with_budget(|| schema.validate(&self.lua, config, &self.vaults)) {
            Ok(v) if problems.is_empty() => Ok(Arc::new(v)),
            Ok(_) => Err(problems),
            Err(mut more) => {
                problems.append(&mut more);
                Err(problems)
            }
        }
    }
}

/// Kong's rule for a handler's VERSION: one to three numeric parts ("1", "0.1", "1.2.3"),
/// optionally followed by a pre-release or build suffix ("1.0.0-beta", "2.1+build").
fn valid_version(v: &str) -> Option<String> {
    let numeric = v.split(['-', '+']).next().unwrap_or("");
    let parts: Vec<&str> = numeric.split('.').collect();
    let ok = (1..=3).contains(&parts.len())
        && parts
            .iter()
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
    let suffix_ok = v[numeric.len()..]
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"-+.".contains(&b));
    (ok && suffix_ok).then(|| v.to_string())
}

/// A Lua error as one line with its `chunk:line:` prefix.
pub fn lua_error(e: &mlua::Error) -> String {
    let s = match e {
        mlua::Error::SyntaxError { message, .. } => message.clone(),
        mlua::Error::RuntimeError(m) => m.clone(),
        mlua::Error::CallbackError { cause, .. } => cause.to_string(),
        other => other.to_string(),
    };
    with_hint(s.lines().next().unwrap_or("").trim())
}

/// Kong facilities a plugin may reach for that streamed plugins do not have here, and why.
const UNAVAILABLE: &[(&str, &str)] = &[
    (
        "db",
        "kong.db: this gateway has no database (DB-less), plugins cannot use DAOs",
    ),
    (
        "dao",
        "kong.dao: this gateway has no database (DB-less), plugins cannot use DAOs",
    ),
    (
        "timer",
        "ngx.timer is not available to streamed plugins (Kong's sandbox rules)",
    ),
    ("location", "ngx.location (subrequests) is not provided"),
    (
        "worker_events",
        "kong.worker_events is not provided to streamed plugins",
    ),
    (
        "cluster_events",
        "kong.cluster_events is not provided to streamed plugins",
    ),
    (
        "shared",
        "ngx.shared (shared dicts) is not available to streamed plugins (Kong's sandbox rules); kong.cache is",
    ),
];

/// `message` with the reason appended when it is Lua's error for indexing or calling a field
/// that is nil and the field is one of Kong's facilities missing here (the plugin's line alone
/// would not say why).
pub fn with_hint(message: &str) -> String {
    for what in ["attempt to index field '", "attempt to call field '"] {
        let Some(at) = message.find(what) else {
            continue;
        };
        let rest = &message[at + what.len()..];
        let Some((field, tail)) = rest.split_once('\'') else {
            continue;
        };
        if !tail.starts_with(" (a nil value)") {
            continue;
        }
        if let Some((_, why)) = UNAVAILABLE.iter().find(|(f, _)| *f == field) {
            return format!("{message} ({why})");
        }
    }
    message.to_string()
}

fn describe_value(v: &Value) -> String {
    match v {
        Value::Nil => "nil".into(),
        Value::String(s) => format!("{:?}", s.to_string_lossy()),
        Value::Integer(i) => i.to_string(),
        Value::Number(n) => n.to_string(),
        other => other.type_name().to_string(),
    }
}
