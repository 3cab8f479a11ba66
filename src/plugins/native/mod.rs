//! Kong's bundled plugins, written in Rust.

mod request_termination;

use super::Definition;

/// The bundled plugins this build provides.
pub fn definitions() -> Vec<Definition> {
    vec![request_termination::definition()]
}
