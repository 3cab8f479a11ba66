//! The PDK's hottest calls as C functions that LuaJIT's FFI calls, as OpenResty's
//! lua-resty-core reaches nginx: compiled code calls them inline, where a Lua C function (what
//! mlua makes) ends the trace, exits to the interpreter and pays mlua's callback entry
//! (argument conversion, error plumbing): ~1,000 instructions per call.
//!
//! Header names are made once per VM: `fast.lua` keeps, by the name's text, the address of a
//! [`Named`] this module made for it (in [`Names`], which the VM owns), and passes that, so a
//! call neither normalises, parses nor hashes the name's text again.
//!
//! Only the common case takes this path: a valid header name, UTF-8 text, a phase call in
//! progress. Everything else answers [`GENERAL`], and `fast.lua` then calls the general
//! (mlua) function, which raises or converts exactly as before. These functions never run Lua
//! code and never raise; a panic becomes [`GENERAL`] too.
//!
//! The `ffi` library is opened for `fast.lua` alone: no plugin environment or `require`
//! reaches it (it is kept in the registry, which plugins cannot reach, and not in `_LOADED`),
//! and the function pointers and buffer it makes are upvalues of the PDK's own closures.

use std::ffi::{c_char, c_int, c_void};
use std::panic::{catch_unwind, AssertUnwindSafe};

use mlua::{ffi, Function, LightUserData, Lua, Table};

use super::cur;
use super::names::{named, Named, SetName};
use crate::plugins::PhaseCtx;

/// Named registry value: the `ffi` library, kept reachable (see [`install`]). No plugin reaches
/// the registry.
const FFI: &str = "sluice.ffi";

/// The call is not for this path: take the general one.
const GENERAL: c_int = -2;
/// A getter found nothing.
const ABSENT: c_int = -1;

/// Text lent by Lua for the length of one call.
///
/// # Safety
/// `ptr` points to `len` readable bytes (a Lua string's, anchored by the caller).
unsafe fn text<'a>(ptr: *const c_char, len: usize) -> Option<&'a str> {
    // SAFETY: the caller's contract.
    let bytes = unsafe { std::slice::from_raw_parts(ptr.cast::<u8>(), len) };
    // Names and values are nearly always ASCII, checked inline (`from_utf8`'s call cost more
    // than the check for the short text of a header).
    if bytes.is_ascii() {
        // SAFETY: ASCII is UTF-8.
        return Some(unsafe { std::str::from_utf8_unchecked(bytes) });
    }
    std::str::from_utf8(bytes).ok()
}

/// Runs `f` unless it panics ([`GENERAL`] then: the general path reports what went wrong).
fn guarded(f: impl FnOnce() -> c_int) -> c_int {
    catch_unwind(AssertUnwindSafe(f)).unwrap_or(GENERAL)
}

/// Most names one VM makes handles for; past it, new names take the general path (a plugin
/// that makes names up, `"x-" .. id`, cannot grow the VM without bound).
const MAX_NAMES: usize = 256;

/// The header names made for a VM's fast paths (its app data). Each is boxed, so its address
/// stays put until the VM, and with it `fast.lua`'s table of addresses, is dropped.
#[derive(Default)]
#[expect(
    clippy::vec_box,
    reason = "a name's address must outlive the vector's growth"
)]
struct Names(Vec<Box<Named>>);

/// `register(name)`: the address of `name`'s [`Named`], made now, or nil (not a valid header
/// name, or [`MAX_NAMES`] made already).
fn register(lua: &Lua, name: mlua::LuaString) -> mlua::Result<Option<LightUserData>> {
    let Ok(name) = name.to_str() else {
        return Ok(None);
    };
    let Some(made) = named(&name) else {
        return Ok(None);
    };
    if lua.app_data_ref::<Names>().is_none() {
        lua.set_app_data(Names::default());
    }
    let Some(mut names) = lua.app_data_mut::<Names>() else {
        return Ok(None);
    };
    if names.0.len() >= MAX_NAMES {
        return Ok(None);
    }
    let boxed = Box::new(made);
    let address = std::ptr::from_ref::<Named>(&boxed)
        .cast_mut()
        .cast::<c_void>();
    names.0.push(boxed);
    Ok(Some(LightUserData(address)))
}

/// `kong.request.get_header(name)`: the first value's length once it is copied into
/// `buf` (`cap` bytes), [`ABSENT`], or [`GENERAL`] (no call in progress, a value that does not
/// fit).
///
/// # Safety
/// `name` is an address [`register`] returned for this VM, and `buf` points to `cap` writable
/// bytes nothing else uses during the call.
unsafe extern "C" fn request_get_header(name: *const Named, buf: *mut u8, cap: usize) -> c_int {
    guarded(|| {
        // SAFETY: the caller's contract: the VM owns the name and outlives the call.
        let name = unsafe { &*name };
        cur(|c, _, _| {
            let Some(v) = c.req.headers.get(&name.name) else {
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

/// A header setter's arguments, when this path can take them: UTF-8 text.
///
/// # Safety
/// `name` as in [`request_get_header`]; `value` points to `value_len` readable bytes.
unsafe fn set_args(
    name: *const Named,
    value: *const c_char,
    value_len: usize,
) -> Option<(SetName, String)> {
    // SAFETY: the caller's contract.
    let (name, value) = unsafe { (&*name, text(value, value_len)?) };
    Some((SetName::Named(name.clone()), value.to_owned()))
}

/// A header setter's call: `apply` with the arguments [`set_args`] takes, on the current
/// request; 0, or [`GENERAL`].
///
/// # Safety
/// As [`set_args`].
unsafe fn set_with(
    name: *const Named,
    value: *const c_char,
    value_len: usize,
    apply: impl FnOnce(&mut PhaseCtx<'_>, SetName, String) -> mlua::Result<()>,
) -> c_int {
    guarded(|| {
        // SAFETY: the caller's contract.
        let Some((name, value)) = (unsafe { set_args(name, value, value_len) }) else {
            return GENERAL;
        };
        cur(|c, _, _| apply(c, name, value)).map_or(GENERAL, |()| 0)
    })
}

/// `kong.service.request.set_header(name, value)`, checked by `surface.lua` already: 0, or
/// [`GENERAL`].
///
/// # Safety
/// As [`set_args`].
unsafe extern "C" fn service_set_header(
    name: *const Named,
    value: *const c_char,
    value_len: usize,
) -> c_int {
    // SAFETY: the caller's contract.
    unsafe {
        set_with(name, value, value_len, |c, name, value| {
            super::service::set_key(c, name, value, false)
        })
    }
}

/// `kong.response.set_header(name, value)`, checked by `response.lua` already: 0, or
/// [`GENERAL`].
///
/// # Safety
/// As [`set_args`].
unsafe extern "C" fn response_set_header(
    name: *const Named,
    value: *const c_char,
    value_len: usize,
) -> c_int {
    // SAFETY: the caller's contract.
    unsafe {
        set_with(name, value, value_len, |c, name, value| {
            super::response::set_header(c, name, value);
            Ok(())
        })
    }
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
    // But the library must stay reachable: LuaJIT keeps its internal table of C types'
    // metatables and blacklisted functions (`miscmap`, read by the trace recorder at each
    // compiled FFI call) alive only through the library's own functions. Unreachable, the
    // collector freed it, and recording the next FFI call read freed memory (a segfault
    // under load, in `lj_tab_get` from `recff_cdata_call`).
    lua.set_named_registry_value(FFI, &lib)?;
    let pointer = |f: *const c_void| LightUserData(f.cast_mut());
    let chunk: Function = lua
        .load(include_str!("fast.lua"))
        .set_name("=kong.pdk.fast")
        .set_mode(mlua::chunk::ChunkMode::Text)
        .into_function()?;
    chunk.call((
        lib,
        crate::plugins::lua::util::support::function(lua, register)?,
        pointer(request_get_header as *const c_void),
        pointer(service_set_header as *const c_void),
        pointer(response_set_header as *const c_void),
    ))
}

#[cfg(test)]
mod tests {
    /// Regression: the `ffi` library was reachable from nothing once `fast.lua` had run, and a
    /// full collection freed LuaJIT's table of C type metatables, which the trace recorder
    /// reads at every FFI call it compiles.
    #[test]
    fn compiled_ffi_calls_after_full_collections_find_the_library_alive() {
        let vm = crate::plugins::lua::sandbox::new_vm().unwrap();
        let lua: &mlua::Lua = &vm;
        let globals = super::super::install(lua).unwrap();
        let kong = globals
            .into_iter()
            .find(|(name, _)| *name == "kong")
            .map(|(_, v)| v)
            .unwrap();
        lua.gc_collect().unwrap();
        lua.gc_collect().unwrap();
        // New tables take the freed memory; a compiled loop then records the FFI call.
        let answered: i64 = lua
            .load(
                r#"
                local kong = ...
                local keep = {}
                for i = 1, 20000 do keep[i % 500 + 1] = { i, tostring(i) } end
                local get, n = kong.request.get_header, 0
                for _ = 1, 2000 do
                  if not pcall(get, "x-a") then n = n + 1 end
                end
                return n
                "#,
            )
            .call(kong)
            .unwrap();
        // Outside a request, every call is handed to the general path, which raises.
        assert_eq!(answered, 2000);
    }
}
