//! Kong's field validators (`between`, `len_min`, `match`, `one_of`, `uuid`, custom
//! validators, ...), applied by [`Ctx::rules`] in Kong's order once a value has its type.

use mlua::{Function, MultiValue, Value};
use serde_json::Value as Json;

use super::convert::{fmt_number, json_to_lua, lua_eq, lua_error, tostring};
use super::model::{Field, Type};
use super::validate::Ctx;

impl Ctx<'_> {
    fn lua_matches(&self, s: &str, pattern: &[u8]) -> Result<bool, String> {
        let call = || -> mlua::Result<Value> {
            let s = self.lua.create_string(s)?;
            let p = self.lua.create_string(pattern)?;
            self.string_match.call::<Value>((s, p))
        };
        match call() {
            Ok(v) => Ok(!matches!(v, Value::Nil | Value::Boolean(false))),
            Err(e) => Err(lua_error(&e)),
        }
    }

    /// Kong's validators, in Kong's order; the first failure's message.
    pub(super) fn rules(&mut self, f: &Field, v: &Json) -> Result<(), String> {
        let r = &f.rules;
        let num = v.as_f64();
        let s = v.as_str();
        let invalid = || format!("invalid value: {}", tostring(v));
        if let Some(w) = &r.eq {
            if !lua_eq(v, w) {
                return Err(format!("value must be {}", tostring(w)));
            }
        }
        if let Some(w) = &r.ne {
            if lua_eq(v, w) {
                let shown = if w.is_null() {
                    "null".into()
                } else {
                    tostring(v)
                };
                return Err(format!("value must not be {shown}"));
            }
        }
        if let Some(opts) = &r.not_one_of {
            if opts.iter().any(|o| lua_eq(v, o)) {
                return Err(format!("must not be one of: {}", list(opts)));
            }
        }
        if let Some(opts) = &r.one_of {
            if !opts.iter().any(|o| lua_eq(v, o)) {
                return Err(format!("expected one of: {}", list(opts)));
            }
        }
        if let (Some(g), Some(n)) = (r.gt, num) {
            if n <= g || n.is_nan() {
                return Err(format!("value must be greater than {}", fmt_number(g)));
            }
        }
        if let (true, Some(n)) = (r.timestamp, num) {
            if n <= 0.0 || n.is_nan() {
                return Err("expected a valid timestamp".into());
            }
        }
        if let (true, Some(s)) = (r.uuid, s) {
            if !is_uuid(s) {
                return Err("expected a valid UUID".into());
            }
        }
        if let (true, Some(s)) = (r.is_regex, s) {
            if regex::Regex::new(s).is_err() {
                return Err(format!("not a valid regex: {s}"));
            }
        }
        if let (Some((lo, hi)), Some(n)) = (r.between, num) {
            if n < lo || n > hi || n.is_nan() {
                return Err(format!(
                    "value should be between {} and {}",
                    lo as i64, hi as i64
                ));
            }
        }
        if let Some(len) = length(v) {
            let len_min = r
                .len_min
                .or(if f.ty == Type::String { Some(1) } else { None });
            if let Some(n) = r.len_eq.filter(|n| len != *n) {
                return Err(format!("length must be {n}"));
            }
            if let Some(n) = len_min.filter(|n| len < *n) {
                return Err(format!("length must be at least {n}"));
            }
            if let Some(n) = r.len_max.filter(|n| len > *n) {
                return Err(format!("length must be at most {n}"));
            }
        }
        if let Some(s) = s {
            if let Some(prefix) = r.starts_with.as_deref().filter(|p| !s.starts_with(p)) {
                return Err(format!("should start with: {prefix}"));
            }
            if let Some(p) = &r.not_match {
                if self.lua_matches(s, p)? {
                    return Err(invalid());
                }
            }
            for p in &r.match_none {
                if self.lua_matches(s, &p.pattern)? {
                    return Err(p.err.clone().unwrap_or_else(invalid));
                }
            }
            if let Some(p) = &r.matches {
                if !self.lua_matches(s, p)? {
                    return Err(invalid());
                }
            }
            for p in &r.match_all {
                if !self.lua_matches(s, &p.pattern)? {
                    return Err(p.err.clone().unwrap_or_else(invalid));
                }
            }
            if let Some((patterns, err)) = &r.match_any {
                let mut any = false;
                for p in patterns {
                    if self.lua_matches(s, p)? {
                        any = true;
                        break;
                    }
                }
                if !any {
                    return Err(err.clone().unwrap_or_else(invalid));
                }
            }
        }
        if let (Some(w), Json::Array(items)) = (&r.contains, v) {
            if !items.iter().any(|i| lua_eq(i, w)) {
                return Err(format!("expected to contain: {}", tostring(w)));
            }
        }
        if let Some(func) = &r.custom_validator {
            self.custom_validator(func, v)?;
        }
        if let (Some(subsets), Json::Array(items)) = (&r.mutually_exclusive_subsets, v) {
            let mut member_of: Vec<usize> = Vec::new();
            for item in items {
                let found = subsets
                    .iter()
                    .position(|set| set.iter().any(|e| lua_eq(e, item)));
                if let Some(i) = found.filter(|i| !member_of.contains(i)) {
                    member_of.push(i);
                }
            }
            if member_of.len() > 1 {
                let sets: Vec<String> = member_of
                    .iter()
                    .map(|i| {
                        let names: Vec<String> = subsets[*i].iter().map(tostring).collect();
                        format!("({})", super::convert::quoted_list(&names))
                    })
                    .collect();
                return Err(format!(
                    "these sets are mutually exclusive: {}",
                    sets.join(", ")
                ));
            }
        }
        Ok(())
    }

    fn custom_validator(&self, func: &Function, v: &Json) -> Result<(), String> {
        let arg = json_to_lua(self.lua, v).map_err(|e| lua_error(&e))?;
        let ret: Vec<Value> = match func.call::<MultiValue>(arg) {
            Ok(ret) => ret.into_iter().collect(),
            Err(e) => return Err(lua_error(&e)),
        };
        let ok = !matches!(ret.first(), None | Some(Value::Nil | Value::Boolean(false)));
        if ok {
            return Ok(());
        }
        match ret.get(1) {
            Some(Value::String(m)) => Err(m.to_string_lossy()),
            Some(Value::Integer(i)) => Err(i.to_string()),
            Some(Value::Number(n)) => Err(fmt_number(*n)),
            _ => Err(format!("failed validating: {}", tostring(v))),
        }
    }
}

/// Kong's `concat(options, ", ")`.
fn list(opts: &[Json]) -> String {
    opts.iter().map(tostring).collect::<Vec<_>>().join(", ")
}

/// Length as Kong's length validators count it: bytes of a string, items of an array or set,
/// keys of a map or record.
fn length(v: &Json) -> Option<i64> {
    match v {
        Json::String(s) => Some(s.len() as i64),
        Json::Array(a) => Some(a.len() as i64),
        Json::Object(o) => Some(o.len() as i64),
        _ => None,
    }
}

/// Kong's UUID check: 8-4-4-4-12 hex digits, any case.
pub(crate) fn is_uuid(s: &str) -> bool {
    s.len() == 36
        && s.bytes().enumerate().all(|(i, b)| match i {
            8 | 13 | 18 | 23 => b == b'-',
            _ => b.is_ascii_hexdigit(),
        })
}
