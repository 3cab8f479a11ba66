//! Located configuration errors.

use std::fmt;

use super::yaml::Loc;

/// One problem in a declarative file: where it is, which entity, and what was expected.
#[derive(Debug, Clone, PartialEq)]
pub struct ConfigError {
    /// The file (or `<POST /config>` style source name).
    pub file: String,
    /// Line and column, when known.
    pub loc: Option<Loc>,
    /// Entity path, e.g. `services[0].routes[2].paths[1]`.
    pub path: String,
    /// What is wrong and what was expected.
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.loc {
            Some(loc) => write!(f, "{}:{}:{}: ", self.file, loc.line, loc.col)?,
            None => write!(f, "{}: ", self.file)?,
        }
        if !self.path.is_empty() {
            write!(f, "{}: ", self.path)?;
        }
        f.write_str(&self.message)
    }
}

/// Every error found in one file, in file order.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

/// Why a configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The file could not be read.
    #[error("{path}: cannot read: {source}")]
    Io {
        /// The file.
        path: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// The file was read but is invalid.
    #[error("{0}")]
    Invalid(ConfigErrors),
}

impl LoadError {
    /// The located errors, when the file was readable.
    pub fn errors(&self) -> &[ConfigError] {
        match self {
            LoadError::Invalid(e) => &e.0,
            LoadError::Io { .. } => &[],
        }
    }
}

/// Collects errors for one file.
#[derive(Debug)]
pub struct Errors {
    file: String,
    list: Vec<ConfigError>,
}

impl Errors {
    /// An empty collector for `file`.
    pub fn new(file: &str) -> Self {
        Errors {
            file: file.to_string(),
            list: Vec::new(),
        }
    }

    /// Records an error.
    pub fn push(&mut self, loc: Option<Loc>, path: impl Into<String>, message: impl Into<String>) {
        self.list.push(ConfigError {
            file: self.file.clone(),
            loc,
            path: path.into(),
            message: message.into(),
        });
    }

    /// Records an error at a known location.
    pub fn at(&mut self, loc: Loc, path: impl Into<String>, message: impl Into<String>) {
        self.push(Some(loc), path, message);
    }

    /// True when nothing was recorded.
    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// How many errors were recorded.
    pub fn len(&self) -> usize {
        self.list.len()
    }

    /// The errors, sorted by position (errors without position last, stable otherwise).
    pub fn into_result(mut self) -> Result<(), ConfigErrors> {
        if self.list.is_empty() {
            return Ok(());
        }
        self.list
            .sort_by_key(|e| e.loc.map_or((usize::MAX, 0), |l| (l.line, l.col)));
        Err(ConfigErrors(self.list))
    }
}
