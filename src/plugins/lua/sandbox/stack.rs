//! A bound on native recursion through plugin code.
//!
//! LuaJIT calls Lua from C with plain C recursion and has no limit of its own on that nesting
//! (`string.gsub` with a function that calls `string.gsub`, `coroutine.resume` inside a
//! coroutine, a `__tostring` that formats itself, a Rust PDK function whose argument's
//! metamethod calls it again): unbounded, it overflows the thread's stack and kills the
//! process. Every path from Lua back into native code that can call Lua again passes through
//! [`check`]: each Rust function handed to Lua, and a Lua-side guard in front of each LuaJIT
//! C function that calls back (`string.format`, `table.sort`, `coroutine.resume`; `print` and
//! the pattern functions are Rust). `check` fails while less than [`RED_ZONE`] of the
//! thread's stack is left, and the call is then doomed like one over its CPU budget (`pcall`
//! and `coroutine.resume` re-raise). The red zone holds what one level can use between two checks
//! (a C function's frame, LuaJIT's call frames, one non-recursive Rust PDK call), so the stack
//! cannot overflow, whatever the thread's stack size, and the request gets an ordinary error.

/// Stack left untouched by plugin-driven recursion.
pub const RED_ZONE: usize = 256 * 1024;

/// Stack size of the threads that run Lua (set in `main` through `RUST_MIN_STACK` for
/// threads that do not choose their own): room for about 200 nested levels, Lua 5.1's
/// `LUAI_MAXCCALLS`.
pub const THREAD_STACK: usize = 8 << 20;

/// The error raised when the native stack is nearly exhausted (Lua 5.1's words).
pub const MESSAGE: &str = "C stack overflow";

/// Fails when less than [`RED_ZONE`] of this thread's stack is left.
pub fn check() -> mlua::Result<()> {
    match stacker::remaining_stack() {
        Some(left) if left < RED_ZONE => {
            super::budget::exhaust_stack();
            Err(mlua::Error::runtime(MESSAGE))
        }
        _ => Ok(()),
    }
}
