//! Plugin definitions (bundled, custom Lua, clones) and instance building for a snapshot.

use std::collections::HashMap;
use std::sync::Arc;

use crate::config::error::Errors;
use crate::config::model::Config;
use crate::plugins::{lua, native, Definition, Instance, Kind};

/// The plugin definitions available to a config, and what checked them.
pub(super) struct Definitions {
    /// Bundled plugins, the config's custom (Lua) plugins and its clones, by name.
    pub defs: HashMap<String, Definition>,
    /// The Lua loader that checked the custom plugins; it validates the instances next.
    pub loader: Option<lua::Loader>,
    /// Custom plugins that failed to load (already reported).
    pub broken: Vec<String>,
    /// [`plugins_key`] of the config, when its plugins loaded without an error.
    key: Option<String>,
}

/// A loader and the definitions it loaded, kept by one compile for the next.
struct Kept {
    key: String,
    defs: HashMap<String, Definition>,
    loader: lua::Loader,
}

thread_local! {
    /// The last compile's loader and definitions on this thread (the compile thread, see
    /// `reload::compiler`): a config with the same custom and cloned plugins, which is most
    /// reloads, reuses them instead of starting a VM and running every plugin's handler and
    /// schema again, and finds its instance configs already validated.
    static KEPT: std::cell::RefCell<Option<Kept>> = const { std::cell::RefCell::new(None) };
}

/// What the definitions depend on: the custom plugins' names, handlers and schemas and the
/// clones (vaults only change validation outcomes; `Loader::set_vaults` handles them).
fn plugins_key(config: &Config) -> String {
    use sha2::Digest;
    let mut h = sha2::Sha256::new();
    let mut part = |s: &str| {
        h.update((s.len() as u64).to_le_bytes());
        h.update(s.as_bytes());
    };
    for c in &config.custom_plugins {
        part(&c.name);
        part(&c.handler);
        part(&c.schema);
    }
    part("cloned");
    for c in &config.cloned_plugins {
        part(&c.name);
        part(&c.reference);
        part(&c.priority.map_or_else(String::new, |p| p.to_string()));
    }
    format!("{:x}", h.finalize())
}

impl Definitions {
    /// Keeps the loader and definitions for the next compile on this thread, if the plugins
    /// loaded cleanly; the loader first forgets the validation outcomes this config did not
    /// use.
    pub fn keep(&mut self) {
        let (Some(key), Some(mut loader)) = (self.key.take(), self.loader.take()) else {
            return;
        };
        loader.prune();
        let defs = self.defs.clone();
        KEPT.with(|k| *k.borrow_mut() = Some(Kept { key, defs, loader }));
    }
}

/// The plugin definitions available to `config`: reused from the previous compile on this
/// thread when its custom and cloned plugins are the same, else loaded (errors to `errs`).
pub(super) fn definitions(config: &Config, errs: &mut Errors) -> Definitions {
    let key = plugins_key(config);
    // Taken either way: a kept loader for other plugins is freed before a new one starts.
    if let Some(kept) = KEPT
        .with(|k| k.borrow_mut().take())
        .filter(|k| k.key == key)
    {
        let mut loader = kept.loader;
        loader.set_vaults(config.vaults.clone());
        loader.next_round();
        return Definitions {
            defs: kept.defs,
            loader: Some(loader),
            broken: Vec::new(),
            key: Some(key),
        };
    }
    let errors_before = errs.len();
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
    let clean = errs.len() == errors_before && broken.is_empty();
    Definitions {
        defs,
        loader,
        broken,
        key: clean.then_some(key),
    }
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
    let conf = match loader.validate(schema_name, &p.config, &scope) {
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
            let ids = lua::InstanceIds::of(config, p);
            Some(Arc::new(lua::LuaInstance {
                plugin: plugin.clone(),
                name: def.name.clone(),
                generation,
                index,
                conf,
                ids,
            }))
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::snapshot::{load_str, Snapshot};

    /// A config with one custom plugin whose field `b` has type `b_type`, whose handler has
    /// VERSION `version`, and one instance with `b: value`.
    fn config(b_type: &str, version: &str, value: &str) -> String {
        format!(
            r#"_format_version: "3.0"
custom_plugins:
  - name: stamp
    handler: |
      return {{ PRIORITY = 1, VERSION = "{version}" }}
    schema: |
      return {{ name = "stamp", fields = {{ {{ config = {{ type = "record", fields = {{
        {{ b = {{ type = "{b_type}" }} }},
      }} }} }} }} }}
services:
  - name: s
    url: http://127.0.0.1:1
    routes:
      - name: r
        paths: ["/"]
        plugins:
          - name: stamp
            config: {{ b: {value} }}
"#
        )
    }

    fn version(snap: &Snapshot) -> Option<String> {
        snap.own_plugins.iter().find(|p| p.0 == "stamp")?.1.clone()
    }

    fn kept_key() -> Option<String> {
        super::KEPT.with(|k| k.borrow().as_ref().map(|k| k.key.clone()))
    }

    /// The loader and definitions kept by one compile serve the next only while the custom
    /// plugins are the same; a changed schema or handler is read again.
    #[test]
    fn a_kept_loader_serves_only_the_same_plugins() {
        load_str(&config("string", "1.0.0", "\"one\""), "t", 1).unwrap();
        let key = kept_key().expect("plugins that load cleanly are kept");
        load_str(&config("string", "1.0.0", "\"two\""), "t", 2).unwrap();
        assert_eq!(kept_key().as_deref(), Some(key.as_str()));
        // `b` becomes an integer: the string is refused, so the new schema was read.
        let err = load_str(&config("integer", "1.0.0", "\"two\""), "t", 3)
            .map(drop)
            .expect_err("a string is not an integer")
            .to_string();
        assert!(err.contains("expected an integer"), "{err}");
        assert_ne!(kept_key().as_deref(), Some(key.as_str()));
        // Back to the first plugins: the string is accepted again.
        load_str(&config("string", "1.0.0", "\"one\""), "t", 4).unwrap();
        // A new handler VERSION shows in the snapshot.
        let snap = load_str(&config("string", "2.0.0", "\"one\""), "t", 5).unwrap();
        assert_eq!(version(&snap).as_deref(), Some("2.0.0"));
    }

    /// Plugins that fail to load are not kept: the next compile reports them again.
    #[test]
    fn broken_plugins_are_not_kept_and_fail_every_time() {
        let broken = config("string", "not a version", "\"one\"");
        for _ in 0..2 {
            let err = load_str(&broken, "t", 1)
                .map(drop)
                .expect_err("rejected")
                .to_string();
            assert!(err.contains("VERSION"), "{err}");
            assert_eq!(kept_key(), None);
        }
    }
}
