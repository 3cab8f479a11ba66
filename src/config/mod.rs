//! The declarative file: raw serde model, located errors, validation.
//!
//! Flow: text → [`yaml::parse`] (tree with positions) → [`load::load`] (entities decoded one by
//! one into [`raw`] types) → [`validate::validate`] (references, uniqueness, Kong's field rules,
//! defaults) → [`model::Config`], which `snapshot` compiles into the runtime.

pub mod checks;
mod de;
pub mod error;
mod json;
pub mod load;
pub mod model;
pub mod raw;
pub mod validate;
pub mod vault;
pub mod yaml;
mod yaml_block;
mod yaml_events;

pub use error::{ConfigError, ConfigErrors, LoadError};
pub use model::Config;

static ROUTER_FLAVOR: std::sync::atomic::AtomicU8 = std::sync::atomic::AtomicU8::new(0);

/// Sets the process's router flavor (Kong's `router_flavor`, a node setting): under
/// [`Flavor::Expressions`](crate::router::Flavor) routes may carry `expression` and `priority`,
/// and http routes `sources` and `destinations`. Set once at startup, before any config loads.
pub fn set_router_flavor(flavor: crate::router::Flavor) {
    let v = match flavor {
        crate::router::Flavor::TraditionalCompatible => 0,
        crate::router::Flavor::Expressions => 1,
    };
    ROUTER_FLAVOR.store(v, std::sync::atomic::Ordering::Relaxed);
}

/// The router flavor set by [`set_router_flavor`] (traditional_compatible by default).
pub fn router_flavor() -> crate::router::Flavor {
    match ROUTER_FLAVOR.load(std::sync::atomic::Ordering::Relaxed) {
        1 => crate::router::Flavor::Expressions,
        _ => crate::router::Flavor::TraditionalCompatible,
    }
}

/// Reads and validates a declarative file.
pub fn from_file(path: &std::path::Path) -> Result<Config, LoadError> {
    let text = std::fs::read_to_string(path).map_err(|source| LoadError::Io {
        path: path.display().to_string(),
        source,
    })?;
    from_str(&text, &path.display().to_string())
}

/// Validates a declarative text; `source` names it in errors (a file name or `POST /config`).
pub fn from_str(text: &str, source: &str) -> Result<Config, LoadError> {
    let (config, errs) = validate_str(text, source);
    errs.into_result().map_err(LoadError::Invalid)?;
    Ok(config)
}

/// Drops `value` on a short-lived thread of its own: freeing a large config's parse tree takes
/// milliseconds that a reload need not wait for. The thread runs at a low priority (nice 10),
/// so that on a busy core it yields to the compile and to the workers rather than share the
/// core with them evenly.
pub fn drop_elsewhere<T: Send + 'static>(value: T) {
    if std::thread::Builder::new()
        .name("drop".into())
        .spawn(move || {
            // SAFETY: setpriority has no memory preconditions; on Linux, PRIO_PROCESS with
            // `who` 0 sets the calling thread's nice value only. Failing leaves it as it was.
            unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, 10) };
            drop(value)
        })
        .is_err()
    {
        // No thread to be had: the value was moved into the failed closure and freed here.
    }
}

/// Validates a declarative text and returns the config with the errors found so far, so that
/// later stages (plugin schemas) can add theirs and a file reports all its errors at once.
/// The config is only usable when there are no errors.
pub fn validate_str(text: &str, source: &str) -> (Config, error::Errors) {
    let mut errs = error::Errors::new(source);
    let mut doc = load::load(text, &mut errs);
    let mut config = validate::validate(&mut doc, &mut errs);
    drop_elsewhere(doc);
    config.source = source.to_string();
    (config, errs)
}
