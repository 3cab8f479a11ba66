//! The CEL condition compiler: any text parses or fails with a message.
#![no_main]

use libfuzzer_sys::fuzz_target;

thread_local! {
    /// Building CEL's environment is the slow part: once per process.
    static COMPILER: sluice::plugins::condition::Compiler = sluice::plugins::condition::Compiler::new();
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    COMPILER.with(|compiler| {
        let _ = compiler.parse(text);
    });
});
