//! lua-cjson's decoder: same tokens, same leniency (`decode_invalid_numbers`), same messages
//! ("Expected value but found T_END at character 1").

use mlua::{Lua, LuaString, Table, Value};

use super::cjson::{metatables, Config};
use super::support::null;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    ObjBegin,
    ObjEnd,
    ArrBegin,
    ArrEnd,
    Str,
    Number,
    Integer,
    Boolean,
    Null,
    Colon,
    Comma,
    End,
    Error,
}

fn kind_name(k: Kind) -> &'static str {
    match k {
        Kind::ObjBegin => "T_OBJ_BEGIN",
        Kind::ObjEnd => "T_OBJ_END",
        Kind::ArrBegin => "T_ARR_BEGIN",
        Kind::ArrEnd => "T_ARR_END",
        Kind::Str => "T_STRING",
        Kind::Number => "T_NUMBER",
        Kind::Integer => "T_INTEGER",
        Kind::Boolean => "T_BOOLEAN",
        Kind::Null => "T_NULL",
        Kind::Colon => "T_COLON",
        Kind::Comma => "T_COMMA",
        Kind::End => "T_END",
        Kind::Error => "T_ERROR",
    }
}

struct Token {
    kind: Kind,
    index: usize,
    text: Vec<u8>,
    num: f64,
    boolean: bool,
    err: &'static str,
}

struct Parser<'a> {
    lua: &'a Lua,
    cfg: &'a Config,
    data: &'a [u8],
    pos: usize,
    depth: i64,
    array_mt: Option<Table>,
}

fn hex4(d: &[u8]) -> Option<u32> {
    if d.len() < 4 {
        return None;
    }
    let mut v = 0u32;
    for &c in &d[..4] {
        v = v * 16 + (c as char).to_digit(16)?;
    }
    Some(v)
}

impl Parser<'_> {
    /// The byte at `i`, NUL past the end (the C code reads a NUL-terminated buffer).
    fn at(&self, i: usize) -> u8 {
        self.data.get(i).copied().unwrap_or(0)
    }

    fn token(&self, kind: Kind, index: usize) -> Token {
        Token {
            kind,
            index,
            text: Vec::new(),
            num: 0.0,
            boolean: false,
            err: "",
        }
    }

    fn error(&self, err: &'static str, index: usize) -> Token {
        Token {
            err,
            ..self.token(Kind::Error, index)
        }
    }

    fn next_token(&mut self) -> Token {
        loop {
            while matches!(self.at(self.pos), b' ' | b'\t' | b'\n' | b'\r') {
                self.pos += 1;
            }
            if !self.cfg.decode_allow_comment || self.at(self.pos) != b'/' {
                break;
            }
            match self.at(self.pos + 1) {
                b'/' => {
                    self.pos += 2;
                    while !matches!(self.at(self.pos), 0 | b'\n') {
                        self.pos += 1;
                    }
                }
                b'*' => {
                    self.pos += 2;
                    loop {
                        if self.at(self.pos) == 0 {
                            return self.error("unclosed multi-line comment", self.pos);
                        }
                        if self.at(self.pos) == b'*' && self.at(self.pos + 1) == b'/' {
                            self.pos += 2;
                            break;
                        }
                        self.pos += 1;
                    }
                }
                _ => break,
            }
        }
        let start = self.pos;
        let ch = self.at(start);
        let single = match ch {
            b'{' => Some(Kind::ObjBegin),
            b'}' => Some(Kind::ObjEnd),
            b'[' => Some(Kind::ArrBegin),
            b']' => Some(Kind::ArrEnd),
            b',' => Some(Kind::Comma),
            b':' => Some(Kind::Colon),
            0 => return self.token(Kind::End, start),
            _ => None,
        };
        if let Some(kind) = single {
            self.pos += 1;
            return self.token(kind, start);
        }
        let rest = &self.data[start..];
        if ch == b'"' {
            return self.string_token();
        }
        if ch == b'-' || ch.is_ascii_digit() {
            if !self.cfg.decode_invalid_numbers && self.is_invalid_number() {
                return self.error("invalid number", start);
            }
            return self.number_token();
        }
        if rest.starts_with(b"true") || rest.starts_with(b"false") {
            let b = rest.starts_with(b"true");
            self.pos += if b { 4 } else { 5 };
            return Token {
                boolean: b,
                ..self.token(Kind::Boolean, start)
            };
        }
        if rest.starts_with(b"null") {
            self.pos += 4;
            return self.token(Kind::Null, start);
        }
        if matches!(ch, b'i' | b'I' | b'n' | b'N' | b'+')
            && self.cfg.decode_invalid_numbers
            && self.is_invalid_number()
        {
            return self.number_token();
        }
        self.error("invalid token", start)
    }

    /// json_is_invalid_number(): forms strtod() takes but strict JSON does not.
    fn is_invalid_number(&self) -> bool {
        let mut p = self.pos;
        if self.at(p) == b'+' {
            return true;
        }
        if self.at(p) == b'-' {
            p += 1;
        }
        let c = self.at(p);
        if c == b'0' {
            let c2 = self.at(p + 1);
            return c2 | 0x20 == b'x' || c2.is_ascii_digit();
        }
        if c <= b'9' {
            return false;
        }
        let word =
            |w: &[u8]| self.data.len() >= p + 3 && self.data[p..p + 3].eq_ignore_ascii_case(w);
        word(b"inf") || word(b"nan")
    }

    /// strtoll() first; strtod() when a '.', exponent or hex follows (json_next_number_token).
    fn number_token(&mut self) -> Token {
        let start = self.pos;
        let mut p = start;
        if matches!(self.at(p), b'+' | b'-') {
            p += 1;
        }
        let digits_start = p;
        while self.at(p).is_ascii_digit() {
            p += 1;
        }
        if p > digits_start && !matches!(self.at(p), b'.' | b'e' | b'E' | b'x') {
            let text = std::str::from_utf8(&self.data[start..p]).unwrap_or("0");
            let text = text.strip_prefix('+').unwrap_or(text);
            self.pos = p;
            return match text.parse::<i64>() {
                Ok(i) => Token {
                    num: i as f64,
                    ..self.token(Kind::Integer, start)
                },
                Err(_) => {
                    let num = text.parse::<f64>().unwrap_or(0.0);
                    Token {
                        num,
                        ..self.token(Kind::Number, start)
                    }
                }
            };
        }
        match self.strtod(start) {
            Some((num, end)) => {
                self.pos = end;
                Token {
                    num,
                    ..self.token(Kind::Number, start)
                }
            }
            None => self.error("invalid number", start),
        }
    }

    /// A strtod() subset: sign, inf/infinity/nan, 0x hex, decimal with fraction and exponent.
    fn strtod(&self, start: usize) -> Option<(f64, usize)> {
        let mut p = start;
        let neg = match self.at(p) {
            b'-' => {
                p += 1;
                true
            }
            b'+' => {
                p += 1;
                false
            }
            _ => false,
        };
        let sign = if neg { -1.0 } else { 1.0 };
        let rest = &self.data[p.min(self.data.len())..];
        let ci = |w: &[u8]| rest.len() >= w.len() && rest[..w.len()].eq_ignore_ascii_case(w);
        if ci(b"infinity") {
            return Some((sign * f64::INFINITY, p + 8));
        }
        if ci(b"inf") {
            return Some((sign * f64::INFINITY, p + 3));
        }
        if ci(b"nan") {
            return Some((f64::NAN, p + 3));
        }
        if self.at(p) == b'0' && self.at(p + 1) | 0x20 == b'x' && self.at(p + 2).is_ascii_hexdigit()
        {
            let mut q = p + 2;
            let mut v = 0f64;
            while self.at(q).is_ascii_hexdigit() {
                v = v * 16.0 + (self.at(q) as char).to_digit(16).unwrap_or(0) as f64;
                q += 1;
            }
            return Some((sign * v, q));
        }
        let mut q = p;
        let mut mantissa_digits = 0;
        while self.at(q).is_ascii_digit() {
            q += 1;
            mantissa_digits += 1;
        }
        if self.at(q) == b'.' {
            q += 1;
            while self.at(q).is_ascii_digit() {
                q += 1;
                mantissa_digits += 1;
            }
        }
        if mantissa_digits == 0 {
            return None;
        }
        if self.at(q) | 0x20 == b'e' {
            let mut e = q + 1;
            if matches!(self.at(e), b'+' | b'-') {
                e += 1;
            }
            if self.at(e).is_ascii_digit() {
                while self.at(e).is_ascii_digit() {
                    e += 1;
                }
                q = e;
            }
        }
        let text = std::str::from_utf8(&self.data[p..q]).ok()?;
        let text = text.strip_suffix('.').unwrap_or(text);
        let v: f64 = if text.starts_with('.') {
            format!("0{text}").parse().ok()?
        } else {
            text.replace(".e", "e").replace(".E", "E").parse().ok()?
        };
        Some((sign * v, q))
    }

    fn string_token(&mut self) -> Token {
        let start = self.pos;
        self.pos += 1;
        let mut out = Vec::new();
        loop {
            let ch = self.at(self.pos);
            if ch == b'"' {
                break;
            }
            if ch == 0 {
                return self.error("unexpected end of string", self.pos);
            }
            if ch != b'\\' {
                out.push(ch);
                self.pos += 1;
                continue;
            }
            let c = match self.at(self.pos + 1) {
                b'"' => b'"',
                b'\\' => b'\\',
                b'/' => b'/',
                b'b' => 8,
                b't' => b'\t',
                b'n' => b'\n',
                b'f' => 12,
                b'r' => b'\r',
                b'u' => {
                    if self.unicode_escape(&mut out) {
                        continue;
                    }
                    return self.error("invalid unicode escape code", self.pos);
                }
                _ => return self.error("invalid escape code", self.pos),
            };
            out.push(c);
            self.pos += 2;
        }
        self.pos += 1;
        Token {
            text: out,
            ..self.token(Kind::Str, start)
        }
    }

    /// `\uXXXX` (with surrogate pairs) at `self.pos`, appended as UTF-8.
    fn unicode_escape(&mut self, out: &mut Vec<u8>) -> bool {
        let rest = &self.data[self.pos..];
        let Some(mut cp) = hex4(&rest[2..]) else {
            return false;
        };
        let mut len = 6;
        if cp & 0xF800 == 0xD800 {
            if cp & 0x400 != 0 || rest.get(6) != Some(&b'\\') || rest.get(7) != Some(&b'u') {
                return false;
            }
            let Some(low) = hex4(&rest[8..]) else {
                return false;
            };
            if low & 0xFC00 != 0xDC00 {
                return false;
            }
            cp = (((cp & 0x3FF) << 10) | (low & 0x3FF)) + 0x10000;
            len = 12;
        }
        let mut buf = [0u8; 4];
        match char::from_u32(cp) {
            Some(c) => out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes()),
            None => return false,
        }
        self.pos += len;
        true
    }

    fn fail(&self, expected: &str, tok: &Token) -> String {
        let found = if tok.kind == Kind::Error {
            tok.err
        } else {
            kind_name(tok.kind)
        };
        format!(
            "Expected {expected} but found {found} at character {}",
            tok.index + 1
        )
    }

    fn descend(&mut self) -> Result<(), String> {
        self.depth += 1;
        if self.depth > self.cfg.decode_max_depth {
            return Err(format!(
                "Found too many nested data structures ({}) at character {}",
                self.depth, self.pos
            ));
        }
        Ok(())
    }

    fn new_table(&mut self, array: bool) -> Result<Table, String> {
        self.descend()?;
        let t = self.lua.create_table().map_err(|e| e.to_string())?;
        if array {
            if let Some(mt) = &self.array_mt {
                t.set_metatable(Some(mt.clone()))
                    .map_err(|e| e.to_string())?;
            }
        }
        Ok(t)
    }

    /// Reads `"key" :` after `{` or `,` in an object.
    fn object_key(&mut self, tok: Token) -> Result<LuaString, String> {
        if tok.kind != Kind::Str {
            return Err(self.fail("object key string", &tok));
        }
        let key = self
            .lua
            .create_string(&tok.text)
            .map_err(|e| e.to_string())?;
        let colon = self.next_token();
        if colon.kind != Kind::Colon {
            return Err(self.fail("colon", &colon));
        }
        Ok(key)
    }

    /// Parses one value starting with `tok`. Iterative (an explicit stack of open containers),
    /// so 1000 levels of nesting need no deep Rust recursion.
    fn value(&mut self, first: Token) -> Result<Value, String> {
        let lua_err = |e: mlua::Error| e.to_string();
        let mut stack: Vec<Frame> = Vec::new();
        let mut tok = first;
        loop {
            // A value starts at `tok`: a scalar, an empty container, or an opened one.
            let mut value = match tok.kind {
                Kind::Str => Value::String(self.lua.create_string(&tok.text).map_err(lua_err)?),
                Kind::Integer if tok.num.abs() < 9.007_199_254_740_992e15 => {
                    Value::Integer(tok.num as i64)
                }
                Kind::Number | Kind::Integer => Value::Number(tok.num),
                Kind::Boolean => Value::Boolean(tok.boolean),
                Kind::Null => null(),
                Kind::ObjBegin => {
                    let t = self.new_table(false)?;
                    let next = self.next_token();
                    if next.kind == Kind::ObjEnd {
                        self.depth -= 1;
                        Value::Table(t)
                    } else {
                        let key = self.object_key(next)?;
                        stack.push(Frame::Object(t, key));
                        tok = self.next_token();
                        continue;
                    }
                }
                Kind::ArrBegin => {
                    let t = self.new_table(true)?;
                    let next = self.next_token();
                    if next.kind == Kind::ArrEnd {
                        self.depth -= 1;
                        Value::Table(t)
                    } else {
                        stack.push(Frame::Array(t, 1));
                        tok = next;
                        continue;
                    }
                }
                _ => return Err(self.fail("value", &tok)),
            };
            // Store the finished value in its container; close containers that end here.
            loop {
                match stack.last_mut() {
                    None => return Ok(value),
                    Some(Frame::Object(t, key)) => {
                        t.raw_set(key.clone(), value).map_err(lua_err)?;
                        let next = self.next_token();
                        if next.kind == Kind::Comma {
                            let key_tok = self.next_token();
                            *key = self.object_key(key_tok)?;
                            break;
                        }
                        if next.kind != Kind::ObjEnd {
                            return Err(self.fail("comma or object end", &next));
                        }
                    }
                    Some(Frame::Array(t, i)) => {
                        t.raw_set(*i, value).map_err(lua_err)?;
                        *i += 1;
                        let next = self.next_token();
                        if next.kind == Kind::Comma {
                            break;
                        }
                        if next.kind != Kind::ArrEnd {
                            return Err(self.fail("comma or array end", &next));
                        }
                    }
                }
                self.depth -= 1;
                value = match stack.pop() {
                    Some(Frame::Object(t, _)) | Some(Frame::Array(t, _)) => Value::Table(t),
                    None => Value::Nil,
                };
            }
            tok = self.next_token();
        }
    }
}

/// An open container while parsing.
enum Frame {
    Object(Table, LuaString),
    Array(Table, usize),
}

/// `cjson.decode(text)` with settings `cfg`: the Lua value, or cjson's error message.
pub fn decode(lua: &Lua, cfg: &Config, data: &[u8]) -> Result<Value, String> {
    if data.len() >= 2 && (data[0] == 0 || data[1] == 0) {
        return Err("JSON parser does not support UTF-16 or UTF-32".into());
    }
    let array_mt = if cfg.decode_array_with_array_mt {
        Some(metatables(lua).map_err(|e| e.to_string())?.0)
    } else {
        None
    };
    let mut p = Parser {
        lua,
        cfg,
        data,
        pos: 0,
        depth: 0,
        array_mt,
    };
    let tok = p.next_token();
    let v = p.value(tok)?;
    let end = p.next_token();
    if end.kind != Kind::End {
        return Err(p.fail("the end", &end));
    }
    Ok(v)
}
