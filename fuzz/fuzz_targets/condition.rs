//! The CEL condition compiler: any text parses or fails with a message.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let compiler = sluice::plugins::condition::Compiler::new();
    let _ = compiler.parse(text);
});
