//! Plumbing shared by the util submodules: Lua functions that raise plain string errors,
//! luaL-style argument checks, and Lua's own number/tostring formatting.

use std::fmt;

use mlua::{
    FromLuaMulti, Function, IntoLua, IntoLuaMulti, LightUserData, Lua, MultiValue, Table, Value,
};

/// Address used as the "this call failed" marker returned by wrapped Rust functions.
static RAISE_MARKER: u8 = 0;
/// Registry slot of the compiled `raise.lua` factory (one per VM).
const FACTORY_KEY: &str = "sluice.util.raise_factory";

/// An error to raise in Lua as a plain string: `error(msg, level)`.
///
/// Level 0 adds no position (like `luaL_error` from a C function), level 2 prefixes the position
/// of the Lua code that called the API function (like `error(msg, 2)` in lua-resty-core).
#[derive(Debug, Clone)]
pub struct Raise {
    /// The message.
    pub msg: String,
    /// The `error()` level.
    pub level: u32,
}

impl fmt::Display for Raise {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.msg)
    }
}

impl std::error::Error for Raise {}

/// A Lua string error without position information (what a C function's `luaL_error` gives).
pub fn raise(msg: impl Into<String>) -> mlua::Error {
    mlua::Error::external(Raise {
        msg: msg.into(),
        level: 0,
    })
}

/// A Lua string error that names the calling Lua code's position (`error(msg, 2)`).
pub fn raise_here(msg: impl Into<String>) -> mlua::Error {
    mlua::Error::external(Raise {
        msg: msg.into(),
        level: 2,
    })
}

/// The message and level a Rust-side error is raised with in Lua.
fn describe(err: &mlua::Error) -> (String, u32) {
    match err {
        mlua::Error::ExternalError(inner) => match inner.downcast_ref::<Raise>() {
            Some(r) => (r.msg.clone(), r.level),
            None => (inner.to_string(), 0),
        },
        mlua::Error::CallbackError { cause, .. } => describe(cause),
        mlua::Error::WithContext { cause, .. } => describe(cause),
        // mlua appends a traceback to string errors raised under a Rust call; keep only the
        // message, or errors crossing many nested calls would grow with each of them.
        mlua::Error::RuntimeError(msg) => (
            msg.split("\nstack traceback:")
                .next()
                .unwrap_or(msg)
                .to_string(),
            0,
        ),
        other => (other.to_string(), 0),
    }
}

fn marker() -> Value {
    Value::LightUserData(LightUserData(
        &RAISE_MARKER as *const u8 as *mut std::ffi::c_void,
    ))
}

/// Creates a Lua function from a Rust closure whose errors are raised as Lua *strings*
/// (mlua would raise them as userdata, which OpenResty-era plugin code cannot `..` or `:find`).
///
/// Use [`raise`] / [`raise_here`] to choose the error's position prefix; any other `mlua::Error`
/// (for example one coming back from a Lua callback) is raised with its message and no prefix.
///
/// Arguments are read from the Lua stack and results pushed onto it directly ([`Args`],
/// [`Outcome`]): going through a `MultiValue` cost every call two deque allocations and a
/// move of each string argument and result to mlua's reference thread and back.
pub fn function<A, R, F>(lua: &Lua, f: F) -> mlua::Result<Function>
where
    A: FromLuaMulti,
    R: IntoLuaMulti,
    F: Fn(&Lua, A) -> mlua::Result<R> + mlua::MaybeSend + 'static,
{
    #[allow(clippy::disallowed_methods)]
    let raw = lua.create_function(move |lua, args: Args<A>| {
        let result = crate::plugins::lua::sandbox::stack::check()
            .and(args.0)
            .and_then(|a| f(lua, a));
        Ok(Outcome(result))
    })?;
    let factory = match lua.named_registry_value::<Option<Function>>(FACTORY_KEY)? {
        Some(factory) => factory,
        None => {
            let factory = lua
                .load(include_str!("raise.lua"))
                .set_name("=sluice.util")
                .into_function()?;
            lua.set_named_registry_value(FACTORY_KEY, &factory)?;
            factory
        }
    };
    let error: Function = lua.globals().raw_get("error")?;
    factory.call((raw, marker(), error))
}

/// A callback's arguments, converted as `A::from_lua_multi` would (same values, same
/// errors) but read in place from the Lua stack; a conversion error is kept for the callback
/// to raise as a string instead of failing the call with mlua's error value.
struct Args<A>(mlua::Result<A>);

impl<A: FromLuaMulti> FromLuaMulti for Args<A> {
    fn from_lua_multi(values: MultiValue, lua: &Lua) -> mlua::Result<Self> {
        Ok(Args(A::from_lua_multi(values, lua)))
    }

    unsafe fn from_stack_args(
        nargs: std::ffi::c_int,
        _i: usize,
        _to: Option<&str>,
        lua: &mlua::state::RawLua,
    ) -> mlua::Result<Self> {
        // Not `A::from_stack_args`: its errors name the argument's position, which Kong's
        // messages do not.
        // SAFETY: mlua calls this with the callback's `nargs` arguments on top of the stack.
        Ok(Args(unsafe { A::from_stack_multi(nargs, lua) }))
    }
}

/// A callback's results pushed straight onto the Lua stack, or `marker, message, level` for
/// raise.lua when the callback (or the pushing of its results) failed.
struct Outcome<R>(mlua::Result<R>);

impl<R: IntoLuaMulti> IntoLuaMulti for Outcome<R> {
    fn into_lua_multi(self, lua: &Lua) -> mlua::Result<MultiValue> {
        match self.0.and_then(|r| r.into_lua_multi(lua)) {
            Ok(values) => Ok(values),
            Err(err) => raised(&err).into_lua_multi(lua),
        }
    }

    unsafe fn push_into_stack_multi(
        self,
        lua: &mlua::state::RawLua,
    ) -> mlua::Result<std::ffi::c_int> {
        let state = lua.state();
        // SAFETY: `state` is the callback's own Lua state, on which mlua pushes the results.
        let top = unsafe { mlua::ffi::lua_gettop(state) };
        let pushed = self.0.and_then(|r| unsafe { r.push_into_stack_multi(lua) });
        match pushed {
            Ok(n) => Ok(n),
            Err(err) => unsafe {
                // What a failed push left is dropped before the error's three values go on.
                mlua::ffi::lua_settop(state, top);
                raised(&err).push_into_stack_multi(lua)
            },
        }
    }
}

/// Bytes returned to Lua as a string, pushed with `lua_pushlstring` when the VM's memory
/// leaves room for every allocation the push can make, which is all but always the case.
/// mlua's own push of a `String` goes through its reference thread (and, near the memory
/// limit, a protected call): ~540 instructions more per `kong.request.get_header`.
pub struct Text<T: AsRef<[u8]>>(pub T);

impl<T: AsRef<[u8]>> IntoLua for Text<T> {
    fn into_lua(self, lua: &Lua) -> mlua::Result<Value> {
        lua.create_string(self.0.as_ref()).map(Value::String)
    }

    unsafe fn push_into_stack(self, lua: &mlua::state::RawLua) -> mlua::Result<()> {
        let bytes = self.0.as_ref();
        let state = lua.state();
        // SAFETY: the caller has checked the stack space. `lua_gc(LUA_GCCOUNT)` only reads,
        // and the direct push cannot raise (see `push_cannot_fail`), so no Lua error unwinds
        // through this frame; otherwise mlua's protected push.
        unsafe {
            if !push_cannot_fail(used_bytes(state), bytes.len()) {
                // A string (a `&[u8]` would become a table of numbers).
                return lua.push(mlua::BString::from(bytes));
            }
            mlua::ffi::lua_pushlstring(state, bytes.as_ptr().cast(), bytes.len());
        }
        Ok(())
    }
}

/// What the VM of `state` uses, in bytes (LuaJIT's count, rounded up to the next KiB).
///
/// # Safety
/// `state` must be a live Lua state; `lua_gc(LUA_GCCOUNT)` only reads it.
pub unsafe fn used_bytes(state: *mut mlua::ffi::lua_State) -> usize {
    let kib = unsafe { mlua::ffi::lua_gc(state, mlua::ffi::LUA_GCCOUNT, 0) };
    usize::try_from(kib)
        .unwrap_or(usize::MAX / 4)
        .saturating_add(1)
        << 10
}

/// Whether pushing a new string of `len` bytes cannot raise a Lua error in a VM that uses
/// `used` bytes (LuaJIT's count, rounded up to the next KiB): see [`room_for`].
fn push_cannot_fail(used: usize, len: usize) -> bool {
    len < (1 << 20) && room_for(used, len)
}

/// Whether LuaJIT API calls that allocate at most `bytes` in all (strings, tables) cannot
/// raise a Lua error in a sandboxed VM that uses `used` bytes, so that they may run without
/// mlua's protected call. They raise only when an allocation fails. Besides what they
/// allocate themselves, a new string may grow the string table to twice its size (the table
/// is part of what the VM uses), and the garbage-collector steps they may run free memory and
/// call finalizers in a protected call of their own whose errors LuaJIT 2.1 does not rethrow
/// (`gc_call_finalizer`). So they cannot fail while the limit leaves room for `bytes` and for
/// twice the VM's current use.
pub fn room_for(used: usize, bytes: usize) -> bool {
    let limit = crate::plugins::lua::sandbox::limits().memory;
    used.saturating_mul(3)
        .saturating_add(bytes)
        .saturating_add(4096)
        < limit
}

/// Test support: fills `lua` with distinct strings of about 1 MiB, kept in the global
/// `__filler`, until the VM uses at least `until` bytes (to drive it near its memory limit).
#[cfg(test)]
pub fn fill_memory(lua: &Lua, until: usize) {
    lua.load(
        r#"
        local keep, until_bytes = {}, ...
        __filler = keep
        while collectgarbage("count") * 1024 < until_bytes do
          keep[#keep + 1] = string.rep(string.char(#keep % 250 + 1), 2^20 - 64) .. #keep
        end
        "#,
    )
    .set_name("=fill_memory")
    .call::<()>(until)
    .unwrap();
}

/// Test support: runs `run` on `lua` (created with the sandbox's memory limit) while the VM
/// has room, then again with it filled to half its limit, where the PDK's values built on the
/// stack give way to mlua's protected calls. Returns both results.
#[cfg(test)]
pub fn on_both_paths<R>(lua: &Lua, mut run: impl FnMut(&Lua) -> R) -> [R; 2] {
    assert!(
        room_for(lua.used_memory(), 1024),
        "the VM starts without room"
    );
    let roomy = run(lua);
    fill_memory(lua, crate::plugins::lua::sandbox::limits().memory / 2);
    assert!(!room_for(lua.used_memory(), 1024), "the VM still has room");
    [roomy, run(lua)]
}

/// The three values raise.lua turns into `error(message, level)`.
fn raised(err: &mlua::Error) -> (Value, String, i64) {
    let (msg, level) = describe(err);
    (marker(), msg, level.into())
}

/// `Lua::create_function` with the native stack checked on every call (see
/// `sandbox::stack`): the one way Rust functions are handed to plugin code. Its errors reach Lua
/// as mlua's error values; [`function`] raises strings instead.
#[allow(clippy::disallowed_methods)]
pub fn raw_function<A, R, F>(lua: &Lua, f: F) -> mlua::Result<Function>
where
    A: FromLuaMulti,
    R: IntoLuaMulti,
    F: Fn(&Lua, A) -> mlua::Result<R> + mlua::MaybeSend + 'static,
{
    lua.create_function(move |lua, args: A| {
        crate::plugins::lua::sandbox::stack::check()?;
        f(lua, args)
    })
}

/// Sets `name = function` on `t`, the function built by [`function`].
pub fn set_fn<A, R, F>(lua: &Lua, t: &Table, name: &str, f: F) -> mlua::Result<()>
where
    A: FromLuaMulti,
    R: IntoLuaMulti,
    F: Fn(&Lua, A) -> mlua::Result<R> + mlua::MaybeSend + 'static,
{
    t.raw_set(name, function(lua, f)?)
}

/// Longest log line plugin code can write (nginx's `NGX_MAX_ERROR_STR` is 2048; the rest is
/// dropped with a marker).
pub const MAX_LOG_LINE: usize = 4096;

/// Appends `piece` (lossily as UTF-8) to a log line, up to [`MAX_LOG_LINE`] bytes.
pub fn push_capped(line: &mut String, piece: &[u8]) {
    const MARK: &str = "...(truncated)";
    if line.len() >= MAX_LOG_LINE {
        return;
    }
    let room = MAX_LOG_LINE - line.len();
    if piece.len() <= room {
        line.push_str(&String::from_utf8_lossy(piece));
    } else {
        line.push_str(&String::from_utf8_lossy(&piece[..room]));
        line.push_str(MARK);
    }
}

/// Lua's name for a value's type, as `type()` and `luaL_typename` report it.
pub fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Nil => "nil",
        Value::Boolean(_) => "boolean",
        Value::LightUserData(_) | Value::UserData(_) => "userdata",
        Value::Integer(_) | Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Table(_) => "table",
        Value::Function(_) => "function",
        Value::Thread(_) => "thread",
        _ => "userdata",
    }
}

/// `bad argument #n to 'fname' (msg)`, as `luaL_argerror` words it.
pub fn arg_error(n: usize, fname: &str, msg: &str) -> mlua::Error {
    raise(format!("bad argument #{n} to '{fname}' ({msg})"))
}

/// `bad argument #n to 'fname' (T expected, got U)`.
pub fn type_error(n: usize, fname: &str, expected: &str, got: &Value) -> mlua::Error {
    arg_error(
        n,
        fname,
        &format!("{expected} expected, got {}", type_name(got)),
    )
}

/// The `i`-th (0-based) argument, nil when absent.
pub fn arg(args: &MultiValue, i: usize) -> Value {
    args.get(i).cloned().unwrap_or(Value::Nil)
}

/// A number's value, whichever variant mlua chose for it.
pub fn as_f64(v: &Value) -> Option<f64> {
    match v {
        Value::Integer(i) => Some(*i as f64),
        Value::Number(n) => Some(*n),
        _ => None,
    }
}

/// `luaL_checklstring`: a string, or a number converted the way Lua converts it.
pub fn check_bytes(v: &Value, n: usize, fname: &str) -> mlua::Result<Vec<u8>> {
    match v {
        Value::String(s) => Ok(s.as_bytes().to_vec()),
        Value::Integer(_) | Value::Number(_) => {
            Ok(fmt_number(as_f64(v).unwrap_or(0.0)).into_bytes())
        }
        other => Err(type_error(n, fname, "string", other)),
    }
}

/// `luaL_checktype(L, n, LUA_TTABLE)`.
pub fn check_table(v: &Value, n: usize, fname: &str) -> mlua::Result<Table> {
    match v {
        Value::Table(t) => Ok(t.clone()),
        other => Err(type_error(n, fname, "table", other)),
    }
}

/// `luaL_checkinteger`: a number (or numeric string), truncated.
pub fn check_integer(v: &Value, n: usize, fname: &str) -> mlua::Result<i64> {
    match v {
        Value::String(s) => s
            .to_str()
            .ok()
            .and_then(|s| parse_lua_number(s.trim()))
            .map(|f| f as i64)
            .ok_or_else(|| type_error(n, fname, "number", v)),
        other => as_f64(other)
            .map(|f| f as i64)
            .ok_or_else(|| type_error(n, fname, "number", other)),
    }
}

/// Parses a number the way `tonumber` does (decimal, exponent, or 0x hex).
pub fn parse_lua_number(s: &str) -> Option<f64> {
    let (neg, body) = match s.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, s.strip_prefix('+').unwrap_or(s)),
    };
    let v = if let Some(hex) = body.strip_prefix("0x").or_else(|| body.strip_prefix("0X")) {
        u64::from_str_radix(hex, 16).ok()? as f64
    } else if body.is_empty() || body.starts_with(|c: char| c.is_ascii_alphabetic()) {
        return None;
    } else {
        body.parse::<f64>().ok()?
    };
    Some(if neg { -v } else { v })
}

/// C's `%.{prec}g` for a finite double.
pub fn fmt_g(x: f64, prec: usize) -> String {
    let prec = prec.max(1);
    if x == 0.0 {
        return if x.is_sign_negative() {
            "-0".into()
        } else {
            "0".into()
        };
    }
    let sci = format!("{:.*e}", prec - 1, x);
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    if exp < -4 || exp >= prec as i32 {
        let m = strip_zeros(mantissa);
        let sign = if exp < 0 { '-' } else { '+' };
        format!("{m}e{sign}{:02}", exp.abs())
    } else {
        let decimals = (prec as i32 - 1 - exp).max(0) as usize;
        strip_zeros(&format!("{x:.decimals$}")).to_string()
    }
}

fn strip_zeros(s: &str) -> &str {
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.')
    } else {
        s
    }
}

/// How LuaJIT's `tostring` prints a number (`%.14g`, `inf`, `-inf`, `nan`).
pub fn fmt_number(x: f64) -> String {
    if x.is_nan() {
        "nan".into()
    } else if x.is_infinite() {
        if x > 0.0 {
            "inf".into()
        } else {
            "-inf".into()
        }
    } else {
        fmt_g(x, 14)
    }
}

/// Lua's `tostring(v)` as bytes (honours `__tostring`).
pub fn tostring_bytes(v: &Value) -> mlua::Result<Vec<u8>> {
    Ok(match v {
        Value::String(s) => s.as_bytes().to_vec(),
        Value::Integer(_) | Value::Number(_) => fmt_number(as_f64(v).unwrap_or(0.0)).into_bytes(),
        Value::Nil => b"nil".to_vec(),
        Value::Boolean(b) => b.to_string().into_bytes(),
        Value::LightUserData(ud) => format!("userdata: {:p}", ud.0).into_bytes(),
        other => other.to_string()?.into_bytes(),
    })
}

/// The `ngx.null` / `cjson.null` sentinel: a NULL light userdata.
pub fn null() -> Value {
    Value::LightUserData(LightUserData(std::ptr::null_mut()))
}
