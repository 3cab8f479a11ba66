//! Kong's schema DSL for streamed plugins: the table a plugin's `schema.lua` returns is
//! compiled into a [`Schema`], which validates instances' `config` and fills in defaults the
//! way Kong 3.x does (kong/db/schema/init.lua, metaschema.lua, entity.lua).
//!
//! - Field types: string, number, integer, boolean, array, set, map, record, json, foreign
//!   (and function, which no JSON value can be). Attributes as in Kong; an unknown attribute,
//!   type, entity check or check argument is a schema error (field names inside entity
//!   checks are not, as in Kong: an unknown name reads as nil). Defaults are checked against
//!   their own field when the schema loads, as Kong's metaschema does.
//! - `match`-family rules are Lua patterns, run with the VM's `string.match`;
//!   `custom_validator`, `custom_entity_check` and shorthand `func`s are called in the VM.
//!   A caller that wants the CPU budget armed wraps [`Schema::validate`] in
//!   `sandbox::with_budget`.
//! - Records nested in the config record are required by default (Kong's
//!   `make_records_required`), so their defaults are filled in when they are absent.
//! - JSON null counts as absent. Problems name the field relative to the plugin entity
//!   (`config.tags[2]`, 1-based like Kong's error tables; map entries as `config.map.key`);
//!   entity-check problems name the record (`config`, or an empty field for the plugin
//!   entity's own checks).
//!
//! Approximations: `is_regex` compiles with the `regex` crate rather than PCRE; `json`
//! fields accept any JSON (`json_schema` is accepted but not applied); `transformations`,
//! `check` and top-level `shorthand_fields` are accepted and ignored; `deprecation` logs
//! nothing; sets drop repeated values as Kong does (tables are never equal to each other).

#[path = "schema/checks.rs"]
mod checks;
#[path = "schema/compile.rs"]
mod compile;
#[path = "schema/compile_checks.rs"]
mod compile_checks;
#[path = "schema/convert.rs"]
mod convert;
#[path = "schema/jsonable.rs"]
mod jsonable;
#[path = "schema/model.rs"]
mod model;
#[path = "schema/rules.rs"]
mod rules;
#[path = "schema/validate.rs"]
mod validate;

/// A schema table in the shape Kong's admin API serves it (`GET /schemas/plugins/{name}`).
pub fn to_kong_json(table: &mlua::Table) -> Result<Json, String> {
    jsonable::schema(table)
}

#[cfg(test)]
#[path = "schema_tests.rs"]
mod tests;

use mlua::{Function, Lua, Table, Value};
use serde_json::{Map, Value as Json};

use compile::{attrs, field_defs, Compiler};
use model::{Field, Record, Type};
use validate::Ctx;

/// Lua source of the `kong.db.schema.typedefs` module.
pub const TYPEDEFS_LUA: &str = include_str!("typedefs.lua");

/// Lua source of the `kong.tools.redis.schema` module (called with the typedefs table).
pub const REDIS_SCHEMA_LUA: &str = include_str!("redis_schema.lua");

/// One validation problem: the field's path relative to the plugin entity (`config.ttl`)
/// and Kong's message for it.
#[derive(Debug, Clone, PartialEq)]
pub struct Problem {
    /// Dotted path (`config.nested.on`, `config.tags[2]`); empty for the entity itself.
    pub field: String,
    /// The message, worded as Kong words it.
    pub message: String,
}

/// The fields of Kong's `plugins` entity a plugin schema may specialize, with their types.
const PLUGIN_FIELDS: &[(&str, &str)] = &[
    ("id", "string"),
    ("name", "string"),
    ("instance_name", "string"),
    ("created_at", "integer"),
    ("updated_at", "integer"),
    ("route", "foreign"),
    ("service", "foreign"),
    ("consumer", "foreign"),
    ("consumer_group", "foreign"),
    ("config", "record"),
    ("protocols", "set"),
    ("enabled", "boolean"),
    ("tags", "set"),
    ("ordering", "record"),
];

/// Keys a plugin schema table may have (Kong's MetaSubSchema).
const TOP_KEYS: &[&str] = &[
    "name",
    "fields",
    "entity_checks",
    "shorthand_fields",
    "transformations",
    "check",
];

/// Kong's default plugin protocols (typedefs.protocols).
const HTTP_PROTOCOLS: &[&str] = &["grpc", "grpcs", "http", "https"];

/// A plugin schema compiled from the table schema.lua returned. It holds Lua functions
/// (custom validators) of the VM it was read from and is only usable with that VM.
pub struct Schema {
    name: String,
    /// The plugin entity's declared fields (always including `config`) and its checks.
    top: Record,
    string_match: Function,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.field.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.field, self.message)
        }
    }
}

impl std::fmt::Debug for Schema {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Schema")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl Schema {
    /// Reads the schema table (the value schema.lua returned). Errors say what is malformed
    /// and where (`config.ttl: unknown attribute 'betwen'`).
    pub fn from_lua(lua: &Lua, table: &Table) -> Result<Schema, String> {
        let string_match = lua
            .globals()
            .get::<Table>("string")
            .and_then(|s| s.get::<Function>("match"))
            .map_err(|_| "the Lua VM has no string.match".to_string())?;
        let c = Compiler {
            lua,
            string_match: string_match.clone(),
        };
        let top = attrs(table, "schema")?;
        if let Some((k, _)) = top.iter().find(|(k, _)| !TOP_KEYS.contains(&k.as_str())) {
            return Err(format!(
                "unknown key '{k}' in the schema table (a plugin schema has {})",
                TOP_KEYS.join(", ")
            ));
        }
        let get = |k: &str| {
            top.iter()
                .find(|(n, _)| n == k)
                .map(|(_, v)| v.clone())
                .unwrap_or(Value::Nil)
        };
        let name = match get("name") {
            Value::String(s) if !s.as_bytes().is_empty() => s.to_string_lossy(),
            Value::Nil => return Err("the schema has no `name`".into()),
            other => {
                return Err(format!(
                    "the schema's `name` must be a string, found a {}",
                    other.type_name()
                ))
            }
        };
        let defs = match get("fields") {
            Value::Table(t) => field_defs(&t, "")?,
            Value::Nil => return Err("the schema has no `fields` list".into()),
            other => {
                return Err(format!(
                    "the schema's `fields` must be a list, found a {}",
                    other.type_name()
                ))
            }
        };
        let mut record = Record::default();
        for (fname, def) in &defs {
            let Some((_, want)) = PLUGIN_FIELDS.iter().find(|(n, _)| n == fname) else {
                let known: Vec<&str> = PLUGIN_FIELDS.iter().map(|(n, _)| *n).collect();
                return Err(format!(
                    "{fname}: a plugin schema cannot create a new top-level field (plugin fields: {}; put settings in config)",
                    known.join(", ")
                ));
            };
            let field = c.field(def, fname, fname == "config")?;
            if field.ty.name() != *want {
                return Err(format!(
                    "{fname}: cannot change type in a specialized field (must be a {want})"
                ));
            }
            record.fields.push((fname.clone(), field));
        }
        if record.lookup("config").is_none() {
            let mut config = Field::plain(Type::Record);
            config.required = true;
            config.record = Some(Record::default());
            record.fields.push(("config".into(), config));
        }
        record.checks = c.checks(&get("entity_checks"), &defs, "")?;
        for (key, want) in [
            ("shorthand_fields", "table"),
            ("transformations", "table"),
            ("check", "function"),
        ] {
            let v = get(key);
            if !v.is_nil() && v.type_name() != want {
                return Err(format!(
                    "the schema's `{key}` must be a {want}, found a {}",
                    v.type_name()
                ));
            }
        }
        Ok(Schema {
            name,
            top: record,
            string_match,
        })
    }

    /// The schema's `name`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// True when the schema declares the plugin entity's `scope` field ("consumer", "route",
    /// "service", ...) as always null (`typedefs.no_consumer` and the like): the plugin
    /// cannot be applied to that kind of entity.
    pub fn forbids(&self, scope: &str) -> bool {
        self.top
            .fields
            .iter()
            .any(|(n, f)| n == scope && f.rules.eq == Some(Json::Null))
    }

    /// `consumer = typedefs.no_consumer`: the plugin cannot be scoped to a consumer.
    pub fn no_consumer(&self) -> bool {
        self.forbids("consumer")
    }

    /// `route = typedefs.no_route`: the plugin cannot be scoped to a route.
    pub fn no_route(&self) -> bool {
        self.forbids("route")
    }

    /// `service = typedefs.no_service`: the plugin cannot be scoped to a service.
    pub fn no_service(&self) -> bool {
        self.forbids("service")
    }

    /// The default of the schema's `protocols` field, when it declares one with a default
    /// (`typedefs.protocols_http` gives grpc, grpcs, http, https).
    pub fn default_protocols(&self) -> Option<Vec<String>> {
        let field = self.top.lookup("protocols")?;
        match field.default.as_ref()? {
            Json::Array(items) => Some(
                items
                    .iter()
                    .filter_map(|v| v.as_str().map(String::from))
                    .collect(),
            ),
            _ => None,
        }
    }

    /// Validates one plugin instance's `config` (JSON as written in the declarative file;
    /// null or an empty object when not given) and returns it with every default filled in
    /// (nested records too; absent optional fields are JSON null, as Kong's conf shows
    /// them). Custom validators and entity checks are called through `lua`, which must be
    /// the VM the schema was read from.
    /// Referenceable fields holding `{vault://...}` are resolved through `vaults`.
    pub fn validate(
        &self,
        lua: &Lua,
        config: &Json,
        vaults: &crate::config::vault::Vaults,
    ) -> Result<Json, Vec<Problem>> {
        let mut ctx = Ctx::new(lua, &self.string_match, Some(vaults));
        let config_field = self
            .top
            .lookup("config")
            .expect("config is always declared");
        let given = (!config.is_null()).then_some(config);
        let out = ctx
            .field_value(config_field, given, "config")
            .unwrap_or(Json::Null);
        if !self.top.checks.is_empty() {
            let entity = self.entity(&out);
            checks::run(&mut ctx, &self.top, &entity, "");
        }
        if ctx.problems.is_empty() {
            Ok(out)
        } else {
            Err(ctx.problems)
        }
    }

    /// The plugin entity the top-level entity checks see: the validated config, the other
    /// declared fields at their defaults (or null), Kong's defaults for the rest.
    fn entity(&self, config: &Json) -> Json {
        let mut entity = Map::new();
        for (name, _) in PLUGIN_FIELDS {
            let value = match *name {
                "enabled" => Json::Bool(true),
                "protocols" => Json::Array(HTTP_PROTOCOLS.iter().map(|p| Json::from(*p)).collect()),
                _ => Json::Null,
            };
            entity.insert(name.to_string(), value);
        }
        for (name, f) in &self.top.fields {
            let value = if name == "config" {
                config.clone()
            } else {
                f.default.clone().unwrap_or(Json::Null)
            };
            entity.insert(name.clone(), value);
        }
        Json::Object(entity)
    }
}
