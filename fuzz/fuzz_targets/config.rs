//! The config loader: any YAML or JSON text gives a config or located errors, never a crash,
//! a hang or an allocation blow-up (alias bombs, deep nesting); and wherever the block-YAML
//! fast path takes a text, its events are libyaml's.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    sluice::config::yaml::check_block_fast_path(text);
    let (_config, errors) = sluice::config::validate_str(text, "fuzz.yaml");
    // Rendering the errors must not panic either.
    if let Err(e) = errors.into_result() {
        let _ = e.to_string();
    }
});
