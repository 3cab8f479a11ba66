//! Validation of values against compiled fields: defaults, types, records (the field
//! validators themselves are in rules.rs). Kong processes an entity in two passes (fill
//! defaults, then validate the result); both are done here in one walk, with the same outcome.

use mlua::{Function, Lua, Value};
use serde_json::{Map, Value as Json};

use super::convert::{is_reference, join, json_to_lua, lua_eq, lua_error, lua_to_json, tostring};
use super::model::{Field, Record, Type};
use super::Problem;

pub(crate) const REQUIRED: &str = "required field missing";
const UNKNOWN: &str = "unknown field";

/// The state of one validation: the VM (for Lua patterns and custom validators) and the
/// problems found so far.
pub(crate) struct Ctx<'a> {
    pub lua: &'a Lua,
    pub string_match: &'a Function,
    pub problems: Vec<Problem>,
    /// Resolves `{vault://...}` in referenceable fields; None leaves references as written
    /// (checking a schema's defaults).
    pub vaults: Option<&'a crate::config::vault::Vaults>,
}

impl<'a> Ctx<'a> {
    pub(crate) fn new(
        lua: &'a Lua,
        string_match: &'a Function,
        vaults: Option<&'a crate::config::vault::Vaults>,
    ) -> Ctx<'a> {
        Ctx {
            lua,
            string_match,
            problems: Vec::new(),
            vaults,
        }
    }

    pub(crate) fn problem(&mut self, field: &str, message: impl Into<String>) {
        self.problems.push(Problem {
            field: field.to_string(),
            message: message.into(),
        });
    }

    /// True when a problem was reported at exactly `field`.
    pub(crate) fn has_problem(&self, field: &str) -> bool {
        self.problems.iter().any(|p| p.field == field)
    }

    /// The value a field ends up with: the given one (validated), else its default, else a
    /// required record's nested defaults, else JSON null. `None` (Lua's nil) for a required
    /// field that is missing (reported).
    pub(crate) fn field_value(&mut self, f: &Field, v: Option<&Json>, path: &str) -> Option<Json> {
        if let Some(v) = v.filter(|v| !v.is_null()) {
            return Some(self.present(f, v, path));
        }
        if let Some(d) = &f.default {
            return Some(self.present(f, d, path));
        }
        if f.required {
            if f.ty == Type::Record {
                return Some(self.present(f, &Json::Object(Map::new()), path));
            }
            self.problem(path, REQUIRED);
            return None;
        }
        Some(Json::Null)
    }

    /// Validates a value that may be null, as Kong's `validate_field` does (used by
    /// `conditional` checks and shorthand fields).
    pub(crate) fn standalone(&mut self, f: &Field, v: &Json, path: &str) {
        if v.is_null() {
            if f.rules.ne == Some(Json::Null) {
                let msg = f
                    .err
                    .clone()
                    .unwrap_or_else(|| "value must not be null".into());
                self.problem(path, msg);
            } else if let Some(eq) = f.rules.eq.as_ref().filter(|e| !e.is_null()) {
                self.problem(path, format!("value must be {}", tostring(eq)));
            } else if f.required {
                self.problem(path, REQUIRED);
            }
            return;
        }
        self.present(f, v, path);
    }

    /// True when `v` passes `f` (nothing is reported).
    pub(crate) fn passes(&mut self, f: &Field, v: &Json, path: &str) -> bool {
        let mark = self.problems.len();
        self.standalone(f, v, path);
        let ok = self.problems.len() == mark;
        self.problems.truncate(mark);
        ok
    }

    /// Validates a non-null value and returns it with nested defaults filled in.
    pub(crate) fn present(&mut self, f: &Field, v: &Json, path: &str) -> Json {
        if f.rules.eq == Some(Json::Null) {
            let msg = f.err.clone().unwrap_or_else(|| "value must be null".into());
            self.problem(path, msg);
            return v.clone();
        }
        let mark = self.problems.len();
        let out = match f.ty {
            Type::Array | Type::Set => {
                let items: &[Json] = match v {
                    Json::Array(a) => a,
                    Json::Object(o) if o.is_empty() => &[],
                    _ => {
                        let what = if f.ty == Type::Array {
                            "expected an array"
                        } else {
                            "expected a set"
                        };
                        self.problem(path, what);
                        return v.clone();
                    }
                };
                Json::Array(self.elements(f, items, path))
            }
            Type::Map => {
                let empty = Map::new();
                let obj = match v {
                    Json::Object(o) => o,
                    Json::Array(a) if a.is_empty() => &empty,
                    _ => {
                        self.problem(path, "expected a map");
                        return v.clone();
                    }
                };
                Json::Object(self.map(f, obj, path))
            }
            Type::Record => {
                let empty = Map::new();
                let obj = match v {
                    Json::Object(o) => o,
                    Json::Array(a) if a.is_empty() => &empty,
                    _ => {
                        self.problem(path, "expected a record");
                        return v.clone();
                    }
                };
                match &f.record {
                    Some(rec) => Json::Object(self.record(rec, obj, path)),
                    None => Json::Object(obj.clone()),
                }
            }
            Type::Integer => {
                let ok = v
                    .as_f64()
                    .is_some_and(|n| n.is_finite() && n.fract() == 0.0);
                if !ok {
                    self.problem(path, "expected an integer");
                    return v.clone();
                }
                v.clone()
            }
            Type::Number => {
                if !v.is_number() {
                    self.problem(path, "expected a number");
                    return v.clone();
                }
                v.clone()
            }
            Type::String => match v.as_str() {
                None => {
                    self.problem(path, "expected a string");
                    return v.clone();
                }
                // A reference skips the field's rules (Kong's) and is replaced by its value.
                Some(s) if f.referenceable && is_reference(s) => match self.vaults {
                    None => return v.clone(),
                    Some(vaults) => match vaults.resolve(s) {
                        Ok(value) => return Json::String(value),
                        Err(e) => {
                            self.problem(path, e);
                            return v.clone();
                        }
                    },
                },
                Some(_) => v.clone(),
            },
            Type::Boolean => {
                if !v.is_boolean() {
                    self.problem(path, "expected a boolean");
                    return v.clone();
                }
                v.clone()
            }
            Type::Function => {
                self.problem(path, "expected a function");
                return v.clone();
            }
            Type::Json | Type::Foreign | Type::Any => v.clone(),
        };
        if self.problems.len() > mark {
            return out;
        }
        if let Err(msg) = self.rules(f, &out) {
            self.problem(path, f.err.clone().unwrap_or(msg));
        }
        out
    }

    fn elements(&mut self, f: &Field, items: &[Json], path: &str) -> Vec<Json> {
        let mut out: Vec<Json> = Vec::with_capacity(items.len());
        for (i, item) in items.iter().enumerate() {
            let p = format!("{path}[{}]", i + 1);
            let value = match f.elements.as_deref() {
                _ if item.is_null() => {
                    self.problem(&p, REQUIRED);
                    Json::Null
                }
                Some(el) => self.present(el, item, &p),
                None => item.clone(),
            };
            // Kong's sets drop repeated values.
            if f.ty == Type::Set && out.iter().any(|o| lua_eq(o, &value)) {
                continue;
            }
            out.push(value);
        }
        out
    }

    fn map(&mut self, f: &Field, obj: &Map<String, Json>, path: &str) -> Map<String, Json> {
        let mut out = Map::new();
        for (k, val) in obj {
            let p = join(path, k);
            if let Some(kf) = f.keys.as_deref() {
                let key = match kf.ty {
                    Type::Integer | Type::Number => k
                        .trim()
                        .parse::<f64>()
                        .ok()
                        .and_then(|n| super::convert::number(n).ok())
                        .unwrap_or_else(|| Json::String(k.clone())),
                    _ => Json::String(k.clone()),
                };
                self.present(kf, &key, &p);
            }
            let value = match f.values.as_deref() {
                _ if val.is_null() => {
                    self.problem(&p, REQUIRED);
                    Json::Null
                }
                Some(vf) => self.present(vf, val, &p),
                None => val.clone(),
            };
            out.insert(k.clone(), value);
        }
        out
    }

    /// Processes a record: shorthand fields, each declared field (defaults, validation),
    /// unknown keys, then the record's entity checks.
    pub(crate) fn record(
        &mut self,
        rec: &Record,
        input: &Map<String, Json>,
        path: &str,
    ) -> Map<String, Json> {
        let mut data = input.clone();
        self.shorthands(rec, &mut data, path);
        let mut out = Map::new();
        for (name, f) in &rec.fields {
            let p = join(path, name);
            let given = data.remove(name).filter(|v| !v.is_null());
            let given = given.or_else(|| auto_value(name, f));
            if let Some(v) = self.field_value(f, given.as_ref(), &p) {
                out.insert(name.clone(), v);
            }
        }
        for k in data.keys() {
            self.problem(&join(path, k), UNKNOWN);
        }
        if rec.checks.is_empty() {
            return out;
        }
        let entity = Json::Object(out);
        super::checks::run(self, rec, &entity, path);
        match entity {
            Json::Object(out) => out,
            _ => Map::new(),
        }
    }

    /// Applies `shorthand_fields`: a given shorthand is validated, removed, and its `func`'s
    /// result merged into the record's input.
    fn shorthands(&mut self, rec: &Record, data: &mut Map<String, Json>, path: &str) {
        for sh in &rec.shorthands {
            let Some(v) = data.remove(&sh.name) else {
                continue;
            };
            if v.is_null() {
                continue;
            }
            let p = join(path, &sh.name);
            let mark = self.problems.len();
            self.standalone(&sh.field, &v, &p);
            if self.problems.len() > mark {
                continue;
            }
            let result = json_to_lua(self.lua, &v).and_then(|arg| sh.func.call::<Value>(arg));
            let table = match result {
                Ok(Value::Table(t)) => t,
                Ok(_) => continue,
                Err(e) => {
                    self.problem(&p, lua_error(&e));
                    continue;
                }
            };
            for pair in table.pairs::<String, Value>() {
                let (k, lv) = match pair {
                    Ok(kv) => kv,
                    Err(e) => {
                        self.problem(&p, lua_error(&e));
                        break;
                    }
                };
                let new = match lua_to_json(&lv, rec.lookup(&k)) {
                    Ok(j) => j,
                    Err(e) => {
                        self.problem(&p, e);
                        continue;
                    }
                };
                merge_shorthand(data, &k, new, sh.deprecated);
            }
        }
    }
}

/// The value of a missing `auto` field: a UUID, a random string, or the time for
/// `created_at`/`updated_at`.
fn auto_value(name: &str, f: &Field) -> Option<Json> {
    if !f.auto {
        return None;
    }
    match f.ty {
        Type::String if f.uuid => Some(Json::String(uuid::Uuid::new_v4().to_string())),
        Type::String => Some(Json::String(uuid::Uuid::new_v4().simple().to_string())),
        Type::Integer | Type::Number if name == "created_at" || name == "updated_at" => {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs_f64())
                .unwrap_or(0.0);
            if f.ty == Type::Integer {
                Some(Json::from(now as i64))
            } else {
                super::convert::number((now * 1000.0).floor() / 1000.0).ok()
            }
        }
        _ => None,
    }
}

/// Merges one key of a shorthand's result: tables are merged one level deep (the shorthand
/// wins, or with `deprecation` the values already given win), scalars replace.
fn merge_shorthand(data: &mut Map<String, Json>, key: &str, new: Json, deprecated: bool) {
    let existing = data.get(key).filter(|v| !v.is_null()).cloned();
    let merged = match (&new, existing) {
        (Json::Object(_) | Json::Array(_), Some(old)) => {
            if deprecated {
                merge_tables(new, old, true)
            } else {
                merge_tables(old, new, false)
            }
        }
        (Json::Object(_) | Json::Array(_), None) => new,
        (_, Some(_)) if deprecated => return,
        _ => new,
    };
    data.insert(key.to_string(), merged);
}

/// `top`'s entries over `base`'s; with `null_aware`, null entries of `top` do not replace.
fn merge_tables(base: Json, top: Json, null_aware: bool) -> Json {
    match (base, top) {
        (Json::Object(mut b), Json::Object(t)) => {
            for (k, v) in t {
                if !null_aware || !v.is_null() || !b.contains_key(&k) {
                    b.insert(k, v);
                }
            }
            Json::Object(b)
        }
        (Json::Array(mut b), Json::Array(t)) => {
            for (i, v) in t.into_iter().enumerate() {
                if i >= b.len() {
                    b.push(v);
                } else if !null_aware || !v.is_null() {
                    b[i] = v;
                }
            }
            Json::Array(b)
        }
        (_, top) => top,
    }
}
