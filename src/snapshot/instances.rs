//! Plugin definitions (bundled, custom Lua, clones) and instance building for a snapshot.

use std::collections::HashMap;
use std::sync::Arc;

use crate::config::error::Errors;
use crate::config::model::Config;
use crate::plugins::{lua, native, Definition, Instance, Kind};

/// The plugin definitions available to a config: bundled plugins, its custom (Lua) plugins
/// and its clones; plus the Lua loader that checked the custom plugins (it validates their
/// instances next) and the names of custom plugins that failed to load (already reported).
pub(super) fn definitions(
    config: &Config,
    errs: &mut Errors,
) -> (
    HashMap<String, Definition>,
    Option<lua::Loader>,
    Vec<String>,
) {
    let mut defs: HashMap<String, Definition> = native::definitions()
        .into_iter()
        .map(|d| (d.name.clone(), d))
        .collect();
    let mut loader = None;
    let mut broken = Vec::new();
    // One VM validates every instance's config (bundled plugins' schemas use the same DSL).
    if !config.custom_plugins.is_empty() || !config.plugins.is_empty() {
        match lua::Loader::new() {
            Ok(mut l) => {
                l.set_vaults(config.vaults.clone());
                loader = Some(l);
            }
            Err(e) => errs.push(None, "custom_plugins", e),
        }
    }
    for c in &config.custom_plugins {
        let at = |errs: &mut Errors, msg: String| errs.at(c.origin.loc, c.origin.path.clone(), msg);
        if defs.contains_key(&c.name) {
            at(
                errs,
                format!(
                    "custom plugin name {:?} clashes with a bundled plugin",
                    c.name
                ),
            );
            continue;
        }
        let Some(loader) = loader.as_mut() else {
            continue;
        };
        match loader.define(&c.name, &c.handler, &c.schema) {
            Ok(plugin) => {
                defs.insert(
                    c.name.clone(),
                    Definition {
                        name: c.name.clone(),
                        priority: plugin.priority,
                        kind: Kind::Lua(plugin),
                    },
                );
            }
            Err(messages) => {
                for m in messages {
                    at(errs, format!("custom plugin {:?}: {m}", c.name));
                }
                broken.push(c.name.clone());
            }
        }
    }
    let mut clones_per_ref: HashMap<&str, usize> = HashMap::new();
    for c in &config.cloned_plugins {
        let at = |errs: &mut Errors, msg: String| errs.at(c.origin.loc, c.origin.path.clone(), msg);
        if defs.contains_key(&c.name) {
            at(
                errs,
                format!(
                    "cloned plugin name {:?} clashes with an existing plugin",
                    c.name
                ),
            );
            continue;
        }
        let Some(source) = defs.get(&c.reference).cloned() else {
            at(
                errs,
                format!("ref {:?}: no such plugin to clone", c.reference),
            );
            continue;
        };
        let n = clones_per_ref.entry(c.reference.as_str()).or_default();
        *n += 1;
        if *n > 5 {
            at(
                errs,
                format!("at most 5 clones of {:?} are allowed", c.reference),
            );
        }
        defs.insert(
            c.name.clone(),
            Definition {
                name: c.name.clone(),
                priority: c.priority.unwrap_or(source.priority),
                kind: source.kind,
            },
        );
    }
    (defs, loader, broken)
}

/// Builds one plugin instance; problems are reported located in the instance's config.
pub(super) fn build_instance(
    config: &Config,
    index: usize,
    def: &Definition,
    loader: Option<&mut lua::Loader>,
    generation: u64,
    errs: &mut Errors,
) -> Option<Arc<dyn Instance>> {
    let p = &config.plugins[index];
    let loader = loader?;
    let report = |errs: &mut Errors, problems: Vec<(String, String)>| {
        for (field, message) in problems {
            let loc = match (field.strip_prefix("config"), p.config_node.as_ref()) {
                (Some(rest), Some(node)) => {
                    let rest = rest.trim_start_matches('.');
                    use crate::config::yaml::PathSeg;
                    // Schema paths count array elements from 1, as Kong's errors do.
                    let segs =
                        crate::config::load::path_segments(rest)
                            .into_iter()
                            .map(|s| match s {
                                PathSeg::Index(n) => PathSeg::Index(n.saturating_sub(1)),
                                key => key,
                            });
                    node.locate(segs).loc
                }
                _ => p.origin.loc,
            };
            let field = if field.is_empty() {
                "config".to_string()
            } else {
                field
            };
            errs.at(loc, p.label.clone(), format!("{field}: {message}"));
        }
    };
    let schema_name = match &def.kind {
        Kind::Native(b) => {
            if let Err(e) = loader.ensure_schema(b.name, b.schema) {
                errs.at(
                    p.origin.loc,
                    p.label.clone(),
                    format!("bundled plugin {:?}: schema: {e}", b.name),
                );
                return None;
            }
            b.name
        }
        Kind::Lua(plugin) => plugin.name.as_str(),
    };
    let mut scope = Vec::new();
    if p.route.is_some() {
        scope.push("route");
    }
    if p.service.is_some() {
        scope.push("service");
    }
    if p.consumer.is_some() {
        scope.push("consumer");
    }
    let json = serde_json::Value::Object(p.config.clone());
    let conf = match loader.validate(schema_name, &json, &scope) {
        Ok(conf) => conf,
        Err(problems) => {
            let problems = problems.into_iter().map(|pr| (pr.field, pr.message));
            report(errs, problems.collect());
            return None;
        }
    };
    match &def.kind {
        Kind::Native(b) => {
            let ctx = native::BuildCtx {
                config,
                plugin: p,
                name: &def.name,
                conf: &conf,
                index,
                generation,
                loader: &*loader,
            };
            match (b.build)(&ctx) {
                Ok(instance) => Some(instance),
                Err(e) => {
                    report(errs, vec![(String::new(), e)]);
                    None
                }
            }
        }
        Kind::Lua(plugin) => {
            let mut conf = conf;
            if let serde_json::Value::Object(m) = &mut conf {
                let id = |i: Option<usize>, f: &dyn Fn(usize) -> String| {
                    i.map_or(serde_json::Value::Null, |i| f(i).into())
                };
                m.insert(
                    "route_id".into(),
                    id(p.route, &|i| config.routes[i].id.clone()),
                );
                m.insert(
                    "service_id".into(),
                    id(p.service, &|i| config.services[i].id.clone()),
                );
                m.insert(
                    "consumer_id".into(),
                    id(p.consumer, &|i| config.consumers[i].id.clone()),
                );
                m.insert(
                    "plugin_instance_name".into(),
                    p.instance_name
                        .clone()
                        .map_or(serde_json::Value::Null, Into::into),
                );
                m.insert("__plugin_id".into(), p.id.clone().into());
            }
            Some(Arc::new(lua::LuaInstance {
                plugin: plugin.clone(),
                name: def.name.clone(),
                generation,
                index,
                conf,
            }))
        }
    }
}
