//! The operator's plugin library (`--plugins-file`): `custom_plugins` and `cloned_plugins`
//! kept in a file of their own and merged into every configuration the gateway loads, so that
//! they survive a controller (the Kong Ingress Controller) replacing the whole configuration
//! on each push.
//!
//! The library is checked on its own when it is read (errors name its file); a configuration
//! that defines a plugin of the same name is refused with an error on that definition, since
//! two definitions of one plugin cannot both be meant.

use std::sync::{Arc, RwLock};

use crate::config::error::Errors;
use crate::config::model::{ClonedPlugin, Config, CustomPlugin};
use crate::config::LoadError;

/// Custom and cloned plugin definitions merged into every configuration.
#[derive(Debug, Default)]
pub struct Library {
    /// The file they were read from.
    pub source: String,
    custom: Vec<CustomPlugin>,
    cloned: Vec<ClonedPlugin>,
}

static LIBRARY: RwLock<Option<Arc<Library>>> = RwLock::new(None);

/// Reads, checks and installs the library. The file may hold only `custom_plugins` and
/// `cloned_plugins` (and `_format_version`); its definitions must compile on their own.
pub fn set_library_file(path: &std::path::Path) -> Result<(), LoadError> {
    let source = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| LoadError::Io {
        path: source.clone(),
        source: e,
    })?;
    let (config, mut errs) = crate::config::validate_str(&text, &source);
    let others = [
        ("services", config.services.len()),
        ("routes", config.routes.len()),
        ("consumers", config.consumers.len()),
        ("plugins", config.plugins.len()),
        ("upstreams", config.upstreams.len()),
        ("certificates", config.certificates.len()),
        ("ca_certificates", config.ca_certificates.len()),
    ];
    for (kind, n) in others {
        if n > 0 {
            errs.push(
                None,
                kind,
                "a plugins file holds only custom_plugins and cloned_plugins",
            );
        }
    }
    let library = Library {
        source: source.clone(),
        custom: config.custom_plugins.clone(),
        cloned: config.cloned_plugins.clone(),
    };
    // Compiled alone (handlers loaded, schemas read): its own errors name its own file.
    let hash = super::hash_text(&text);
    super::compile_unmerged(config, Arc::from(text.as_str()), hash, 0, errs)
        .map_err(LoadError::Invalid)?;
    *LIBRARY.write().unwrap_or_else(|e| e.into_inner()) = Some(Arc::new(library));
    Ok(())
}

/// Adds the library's definitions to `config`; a definition of the same name in `config` is
/// an error located there.
pub(super) fn merge(config: &mut Config, errs: &mut Errors) {
    let Some(lib) = LIBRARY.read().unwrap_or_else(|e| e.into_inner()).clone() else {
        return;
    };
    let defined = |config: &Config, name: &str| {
        config
            .custom_plugins
            .iter()
            .map(|c| (&c.name, &c.origin))
            .chain(config.cloned_plugins.iter().map(|c| (&c.name, &c.origin)))
            .find(|(n, _)| n.as_str() == name)
            .map(|(_, o)| o.clone())
    };
    let clash = |errs: &mut Errors, origin: crate::config::model::Origin, name: &str| {
        errs.at(
            origin.loc,
            origin.path,
            format!(
                "plugin {name:?} is also defined in the plugins file {}: define it in one place",
                lib.source
            ),
        );
    };
    for c in &lib.custom {
        match defined(config, &c.name) {
            Some(origin) => clash(errs, origin, &c.name),
            None => config.custom_plugins.push(c.clone()),
        }
    }
    for c in &lib.cloned {
        match defined(config, &c.name) {
            Some(origin) => clash(errs, origin, &c.name),
            None => config.cloned_plugins.push(c.clone()),
        }
    }
}
