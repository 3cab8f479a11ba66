//! The config loader: any YAML or JSON text gives a config or located errors, never a crash,
//! a hang or an allocation blow-up (alias bombs, deep nesting).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (_config, errors) = sluice::config::validate_str(text, "fuzz.yaml");
    // Rendering the errors must not panic either.
    if let Err(e) = errors.into_result() {
        let _ = e.to_string();
    }
});
