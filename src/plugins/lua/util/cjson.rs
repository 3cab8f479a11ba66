//! OpenResty's lua-cjson 2.1.0.x: settings, table classification and the encoder.
//! The decoder lives in `json_decode.rs`, the module tables in `cjson_module.rs`.

use mlua::{Lua, Table, Value};

use super::support::{as_f64, fmt_g, type_name};

/// `cjson.empty_array` is a light userdata pointing here (lua-cjson uses `&json_array`).
static EMPTY_ARRAY: u8 = 0;
const ARRAY_MT_KEY: &str = "sluice.cjson.array_mt";
const EMPTY_ARRAY_MT_KEY: &str = "sluice.cjson.empty_array_mt";

/// The `cjson.empty_array` sentinel.
pub fn empty_array() -> Value {
    Value::LightUserData(mlua::LightUserData(
        &EMPTY_ARRAY as *const u8 as *mut std::ffi::c_void,
    ))
}

fn is_empty_array(v: &Value) -> bool {
    matches!(v, Value::LightUserData(ud) if std::ptr::eq(ud.0 as *const u8, &EMPTY_ARRAY))
}

/// `cjson.array_mt` and `cjson.empty_array_mt`, shared by every cjson instance of a VM.
pub fn metatables(lua: &Lua) -> mlua::Result<(Table, Table)> {
    let get = |key: &str| -> mlua::Result<Table> {
        if let Some(t) = lua.named_registry_value::<Option<Table>>(key)? {
            return Ok(t);
        }
        let t = lua.create_table()?;
        lua.set_named_registry_value(key, &t)?;
        Ok(t)
    };
    Ok((get(ARRAY_MT_KEY)?, get(EMPTY_ARRAY_MT_KEY)?))
}

/// One cjson instance's settings (each `require`d module and each `new()` has its own).
#[derive(Clone, Debug)]
pub struct Config {
    pub sparse_convert: bool,
    pub sparse_ratio: i64,
    pub sparse_safe: i64,
    pub encode_max_depth: i64,
    pub decode_max_depth: i64,
    /// 0 = "off" (error), 1 = "on" (NaN/Infinity), 2 = "null".
    pub encode_invalid_numbers: u8,
    pub decode_invalid_numbers: bool,
    pub number_precision: i64,
    pub keep_buffer: bool,
    pub escape_slash: bool,
    pub empty_table_as_object: bool,
    pub decode_array_with_array_mt: bool,
    pub decode_allow_comment: bool,
    pub skip_unsupported: bool,
    pub indent: Option<String>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            sparse_convert: false,
            sparse_ratio: 2,
            sparse_safe: 10,
            encode_max_depth: 1000,
            decode_max_depth: 1000,
            encode_invalid_numbers: 0,
            decode_invalid_numbers: true,
            number_precision: 14,
            keep_buffer: true,
            escape_slash: true,
            empty_table_as_object: true,
            decode_array_with_array_mt: false,
            decode_allow_comment: false,
            skip_unsupported: false,
            indent: None,
        }
    }
}

/// How a table is serialised.
pub enum Shape {
    /// `[...]` of `len` elements, read with `rawget` when `raw`.
    Array { len: usize, raw: bool },
    /// `{...}`.
    Object,
}

/// lua-cjson's decision between array and object for table `t` (array_mt, `__len`,
/// sequence detection, sparse-array rules, empty_array_mt).
pub fn classify(lua: &Lua, cfg: &Config, t: &Table) -> Result<Shape, String> {
    let (array_mt, empty_array_mt) = metatables(lua).map_err(|e| e.to_string())?;
    let mt = t.metatable();
    if let Some(mt) = &mt {
        if mt.equals(&array_mt).unwrap_or(false) {
            return Ok(Shape::Array {
                len: t.raw_len(),
                raw: true,
            });
        }
        if let Ok(Value::Function(len_fn)) = mt.raw_get::<Value>("__len") {
            let n: Value = len_fn.call(t.clone()).map_err(|e| e.to_string())?;
            let len = as_f64(&n).unwrap_or(0.0).max(0.0) as usize;
            return Ok(Shape::Array { len, raw: false });
        }
    }
    // lua_array_length(): -1 when any key is not a positive integer.
    let mut max: f64 = 0.0;
    let mut items: f64 = 0.0;
    let mut is_array = true;
    for pair in t.pairs::<Value, Value>() {
        let (k, _) = pair.map_err(|e| e.to_string())?;
        match as_f64(&k) {
            Some(k) if k >= 1.0 && k.floor() == k => {
                max = max.max(k);
                items += 1.0;
            }
            _ => {
                is_array = false;
                break;
            }
        }
    }
    let mut len: Option<usize> = None;
    if is_array {
        let ratio = cfg.sparse_ratio as f64;
        if cfg.sparse_ratio > 0 && max > items * ratio && max > cfg.sparse_safe as f64 {
            if !cfg.sparse_convert {
                return Err("Cannot serialise table: excessively sparse array".into());
            }
        } else {
            len = Some(max as usize);
        }
    }
    match len {
        Some(n) if n > 0 || !cfg.empty_table_as_object => Ok(Shape::Array { len: n, raw: true }),
        _ => match &mt {
            Some(mt) if mt.equals(&empty_array_mt).unwrap_or(false) => Ok(Shape::Array {
                len: t.raw_len(),
                raw: true,
            }),
            _ => Ok(Shape::Object),
        },
    }
}

struct Encoder<'a> {
    lua: &'a Lua,
    cfg: &'a Config,
    out: Vec<u8>,
    /// Most bytes the output may take (what the VM may still allocate): a table holding the
    /// same large string many times would otherwise encode to gigabytes outside the VM's limit.
    room: usize,
}

impl Encoder<'_> {
    fn number(&mut self, x: f64, what: &str) -> Result<(), String> {
        if x.is_finite() {
            let s = fmt_g(x, self.cfg.number_precision as usize);
            self.out.extend_from_slice(s.as_bytes());
            return Ok(());
        }
        match self.cfg.encode_invalid_numbers {
            0 => Err(format!(
                "Cannot serialise {what}: must not be NaN or Infinity"
            )),
            1 => {
                let s = if x.is_nan() {
                    "NaN"
                } else if x < 0.0 {
                    "-Infinity"
                } else {
                    "Infinity"
                };
                self.out.extend_from_slice(s.as_bytes());
                Ok(())
            }
            _ => {
                self.out.extend_from_slice(b"null");
                Ok(())
            }
        }
    }

    fn string(&mut self, s: &[u8]) {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let spent = s.len() > 1 << 16 && crate::plugins::lua::sandbox::budget::check().is_err();
        if spent || self.out.len().saturating_add(s.len()) > self.room {
            // Over the limit either way: leave the output marked as too large.
            self.out
                .resize(self.room.saturating_add(1).min(self.out.len() + 1), 0);
            self.room = 0;
            return;
        }
        self.out.push(b'"');
        for &c in s {
            match c {
                b'"' => self.out.extend_from_slice(b"\\\""),
                b'\\' => self.out.extend_from_slice(b"\\\\"),
                b'/' if self.cfg.escape_slash => self.out.extend_from_slice(b"\\/"),
                b'\x08' => self.out.extend_from_slice(b"\\b"),
                b'\t' => self.out.extend_from_slice(b"\\t"),
                b'\n' => self.out.extend_from_slice(b"\\n"),
                b'\x0c' => self.out.extend_from_slice(b"\\f"),
                b'\r' => self.out.extend_from_slice(b"\\r"),
                0..=0x1f | 0x7f => {
                    self.out.extend_from_slice(b"\\u00");
                    self.out.push(HEX[(c >> 4) as usize]);
                    self.out.push(HEX[(c & 15) as usize]);
                }
                _ => self.out.push(c),
            }
        }
        self.out.push(b'"');
    }

    fn newline(&mut self, depth: usize) {
        if let Some(indent) = &self.cfg.indent {
            self.out.push(b'\n');
            for _ in 0..depth {
                self.out.extend_from_slice(indent.as_bytes());
            }
        }
    }

    /// Appends a non-table value: `Some(true)` written, `Some(false)` skipped
    /// (encode_skip_unsupported_value_types), `None` for a table (the caller opens it).
    fn scalar(&mut self, v: &Value) -> Result<Option<bool>, String> {
        match v {
            Value::String(s) => self.string(&s.as_bytes()),
            Value::Integer(_) | Value::Number(_) => {
                self.number(as_f64(v).unwrap_or(0.0), "number")?
            }
            Value::Boolean(b) => self
                .out
                .extend_from_slice(if *b { b"true" } else { b"false" }),
            Value::Nil => self.out.extend_from_slice(b"null"),
            Value::LightUserData(ud) if ud.0.is_null() => self.out.extend_from_slice(b"null"),
            v if is_empty_array(v) => self.out.extend_from_slice(b"[]"),
            Value::Table(_) => return Ok(None),
            other => {
                if self.cfg.skip_unsupported {
                    return Ok(Some(false));
                }
                return Err(format!(
                    "Cannot serialise {}: type not supported",
                    type_name(other)
                ));
            }
        }
        Ok(Some(true))
    }

    /// Writes `[` or `{` for `t` at nesting `depth` and returns its iteration state.
    fn open(&mut self, t: &Table, depth: usize) -> Result<Frame, String> {
        if depth as i64 > self.cfg.encode_max_depth {
            return Err(format!("Cannot serialise, excessive nesting ({depth})"));
        }
        let items = match classify(self.lua, self.cfg, t)? {
            Shape::Array { len, raw } => {
                self.out.push(b'[');
                Items::Array {
                    t: t.clone(),
                    len,
                    raw,
                }
            }
            Shape::Object => {
                self.out.push(b'{');
                let pairs = t.pairs::<Value, Value>().collect::<mlua::Result<Vec<_>>>();
                Items::Object(pairs.map_err(|e| e.to_string())?)
            }
        };
        Ok(Frame {
            items,
            next: 0,
            comma: false,
        })
    }

    /// Appends `v`. Iterative (an explicit stack of open tables) so that 1000 levels of
    /// nesting need no deep Rust recursion.
    fn value(&mut self, v: &Value) -> Result<(), String> {
        let Value::Table(root) = v else {
            return self.scalar(v).map(drop);
        };
        let mut stack = vec![self.open(root, 1)?];
        let mut steps = 0u32;
        loop {
            if self.out.len() > self.room {
                crate::plugins::lua::sandbox::budget::check().map_err(|e| e.to_string())?;
                return Err("not enough memory".into());
            }
            steps = steps.wrapping_add(1);
            if steps % 1024 == 0 {
                crate::plugins::lua::sandbox::budget::check().map_err(|e| e.to_string())?;
            }
            let depth = stack.len();
            let Some(frame) = stack.last_mut() else { break };
            let item = match &frame.items {
                Items::Array { t, len, raw } if frame.next < *len => {
                    let i = frame.next + 1;
                    let v = if *raw { t.raw_get(i) } else { t.get(i) };
                    Some((None, v.map_err(|e| e.to_string())?))
                }
                Items::Object(pairs) if frame.next < pairs.len() => {
                    let (k, v) = &pairs[frame.next];
                    Some((Some(k.clone()), v.clone()))
                }
                _ => None,
            };
            let Some((key, item)) = item else {
                let (close, any) = match &frame.items {
                    Items::Array { len, .. } => (b']', *len > 0),
                    Items::Object(pairs) => (b'}', !pairs.is_empty()),
                };
                if any {
                    self.newline(depth - 1);
                }
                self.out.push(close);
                stack.pop();
                continue;
            };
            frame.next += 1;
            let mark = self.out.len();
            if frame.comma {
                self.out.push(b',');
            }
            self.newline(depth);
            if let Some(k) = key {
                self.key(&k)?;
            }
            match self.scalar(&item)? {
                Some(true) => frame.comma = true,
                Some(false) => self.out.truncate(mark),
                None => {
                    frame.comma = true;
                    if let Value::Table(t) = &item {
                        let child = self.open(t, depth + 1)?;
                        stack.push(child);
                    }
                }
            }
        }
        Ok(())
    }

    fn key(&mut self, k: &Value) -> Result<(), String> {
        match k {
            Value::String(s) => self.string(&s.as_bytes()),
            Value::Integer(_) | Value::Number(_) => {
                self.out.push(b'"');
                self.number(as_f64(k).unwrap_or(0.0), "number")?;
                self.out.push(b'"');
            }
            other => {
                return Err(format!(
                    "Cannot serialise {}: table key must be a number or string",
                    type_name(other)
                ))
            }
        }
        self.out.push(b':');
        if self.cfg.indent.is_some() {
            self.out.push(b' ');
        }
        Ok(())
    }
}

/// What remains to be written of an open table.
enum Items {
    Array { t: Table, len: usize, raw: bool },
    Object(Vec<(Value, Value)>),
}

struct Frame {
    items: Items,
    next: usize,
    comma: bool,
}

/// `cjson.encode(v)` with settings `cfg`: the JSON text, or cjson's error message.
pub fn encode(lua: &Lua, cfg: &Config, v: &Value) -> Result<Vec<u8>, String> {
    let mut enc = Encoder {
        lua,
        cfg,
        out: Vec::new(),
        room: crate::plugins::lua::sandbox::memory_room(lua),
    };
    enc.value(v)?;
    if enc.out.len() > enc.room {
        return Err("not enough memory".into());
    }
    Ok(enc.out)
}
