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
pub mod yaml;

pub use error::{ConfigError, ConfigErrors, LoadError};
pub use model::Config;

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
/// milliseconds that a reload need not wait for.
pub fn drop_elsewhere<T: Send + 'static>(value: T) {
    if std::thread::Builder::new()
        .name("drop".into())
        .spawn(move || drop(value))
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
    let doc = load::load(text, &mut errs);
    let mut config = validate::validate(&doc, &mut errs);
    drop_elsewhere(doc);
    config.source = source.to_string();
    (config, errs)
}
