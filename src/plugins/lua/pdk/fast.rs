//! The PDK's hottest calls as C functions that LuaJIT's FFI calls, as OpenResty's
//! lua-resty-core reaches nginx: compiled code calls them inline, where a Lua C function (what
//! mlua makes) ends the trace, exits to the interpreter and pays mlua's callback entry
//! (argument conversion, error plumbing): ~1,000 instructions per call.
//!
//! Only the common case takes this path: valid UTF-8 text, a known header name, a phase call
//! in progress. Everything else answers [`GENERAL`], and `fast.lua` then calls the general
//! (mlua) function, which raises or converts exactly as before. These functions never run Lua
//! code and never raise; a panic becomes [`GENERAL`] too.
//!
//! The `ffi` library is opened for `fast.lua` alone: no plugin environment, `require` or
//! registry entry reaches it, and the function pointers and buffer it makes are upvalues of
//! the PDK's own closures.

use std::ffi::{c_char, c_int, c_void};
use std::panic::{catch_unwind, AssertUnwindSafe};

use mlua::{ffi, Function, LightUserData, Lua, Table};

use super::names::{named, SetName};
use super::{cur, header_key};

/// The call is not for this path: take the general one.
const GENERAL: c_int = -2;
/// A getter found nothing.
const ABSENT: c_int = -1;

/// Bytes lent by Lua for the length of one call.
///
/// # Safety
/// `ptr` points to `len` readable bytes (a Lua string's, anchored by the caller).
unsafe fn text<'a>(ptr: *const c_char, len: usize) -> Option<&'a str> {
    // SAFETY: the caller's contract.
    std::str::from_utf8(unsafe { std::slice::from_raw_parts(ptr.cast::<u8>(), len) }).ok()
}

/// Runs `f` unless it panics ([`GENERAL`] then: the general path reports what went wrong).
fn guarded(f: impl FnOnce() -> c_int) -> c_int {
    catch_unwind(AssertUnwindSafe(f)).unwrap_or(GENERAL)
}

/// `kong.request.get_header(name)`: the first value's length once it is copied into
/// `buf` (`cap` bytes), [`ABSENT`], or [`GENERAL`] (no call in progress, a value that does not
/// fit, a name that is not UTF-8).
///
/// # Safety
/// `name` points to `name_len` bytes and `buf` to `cap` writable bytes, neither used by
/// anything else during the call.
unsafe extern "C" fn request_get_header(
    name: *const c_char,
    name_len: usize,
    buf: *mut u8,
    cap: usize,
) -> c_int {
    guarded(|| {
        // SAFETY: the caller's contract.
        let Some(name) = (unsafe { text(name, name_len) }) else {
            return GENERAL;
        };
        cur(|c, _, _| {
            let Some(v) = c.req.headers.get(header_key(name).as_ref()) else {
                return Ok(ABSENT);
            };
            let v = v.as_bytes();
            match c_int::try_from(v.len()) {
                Ok(n) if v.len() <= cap => {
                    // SAFETY: `buf` has room for `cap` bytes (the caller's contract), and a
                    // header value never overlaps Lua's buffer.
                    unsafe { std::ptr::copy_nonoverlapping(v.as_ptr(), buf, v.len()) };
                    Ok(n)
                }
                _ => Ok(GENERAL),
            }
        })
        .unwrap_or(GENERAL)
    })
}

/// A header setter's arguments, when this path can take them: a known name and UTF-8 text.
///
/// # Safety
/// As [`text`], for both.
unsafe fn set_args(
    name: *const c_char,
    name_len: usize,
    value: *const c_char,
    value_len: usize,
) -> Option<(SetName, String)> {
    // SAFETY: the caller's contract.
    let (name, value) = unsafe { (text(name, name_len)?, text(value, value_len)?) };
    Some((SetName::Named(named(name)?), value.to_owned()))
}

/// `kong.service.request.set_header(name, value)`, checked by `surface.lua` already: 0, or
/// [`GENERAL`].
///
/// # Safety
/// `name` and `value` point to `name_len` and `value_len` readable bytes.
unsafe extern "C" fn service_set_header(
    name: *const c_char,
    name_len: usize,
    value: *const c_char,
    value_len: usize,
) -> c_int {
    guarded(|| {
        // SAFETY: the caller's contract.
        let Some((name, value)) = (unsafe { set_args(name, name_len, value, value_len) }) else {
            return GENERAL;
        };
        cur(|c, _, _| super::service::set_key(c, name, value, false)).map_or(GENERAL, |()| 0)
    })
}

/// `kong.response.set_header(name, value)`, checked by `response.lua` already: 0, or
/// [`GENERAL`].
///
/// # Safety
/// As [`service_set_header`].
unsafe extern "C" fn response_set_header(
    name: *const c_char,
    name_len: usize,
    value: *const c_char,
    value_len: usize,
) -> c_int {
    guarded(|| {
        // SAFETY: the caller's contract.
        let Some((name, value)) = (unsafe { set_args(name, name_len, value, value_len) }) else {
            return GENERAL;
        };
        cur(|c, _, _| {
            super::response::set_header(c, name, value);
            Ok(0)
        })
        .unwrap_or(GENERAL)
    })
}

/// Builds the fast paths (`fast.lua`): a table of constructors that take a general function
/// and return the function plugins call.
pub(super) fn install(lua: &Lua) -> mlua::Result<Table> {
    // SAFETY: `luaopen_ffi` follows the lua_CFunction protocol.
    let open = unsafe { lua.create_c_function(ffi::luaopen_ffi)? };
    let lib: Table = open.call(())?;
    // luaopen_ffi also records the library as loaded; nothing should find it there.
    let loaded: Table = lua.named_registry_value("_LOADED")?;
    loaded.raw_set("ffi", mlua::Value::Nil)?;
    let pointer = |f: *const c_void| LightUserData(f.cast_mut());
    let chunk: Function = lua
        .load(include_str!("fast.lua"))
        .set_name("=kong.pdk.fast")
        .set_mode(mlua::chunk::ChunkMode::Text)
        .into_function()?;
    chunk.call((
        lib,
        pointer(request_get_header as *const c_void),
        pointer(service_set_header as *const c_void),
        pointer(response_set_header as *const c_void),
    ))
}
