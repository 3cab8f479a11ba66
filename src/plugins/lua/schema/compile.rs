//! Reading field definitions (Lua tables) into compiled [`Field`]s, with the checks Kong's
//! metaschema makes: known types and attributes, attributes that fit the type, nested
//! definitions present, valid Lua patterns, and defaults that pass the field's own rules.

use mlua::{Function, Lua, Table, Value};
use serde_json::Value as Json;

use super::convert::{join, lua_error, lua_to_json};
use super::model::{Field, Pattern, Record, Rules, Shorthand, Type};
use super::validate::Ctx;

/// Every attribute a field definition may have.
const FIELD_ATTRS: &[&str] = &[
    "type",
    "required",
    "reference",
    "description",
    "examples",
    "auto",
    "unique",
    "unique_across_ws",
    "on_delete",
    "default",
    "abstract",
    "generate_admin_api",
    "immutable",
    "err",
    "encrypted",
    "referenceable",
    "json_schema",
    "transient",
    "deprecation",
    "legacy",
    "translate_backwards",
    "elements",
    "keys",
    "values",
    "fields",
    "entity_checks",
    "shorthand_fields",
];

/// Attributes that are validators (also allowed in `if_match`/`then_match`).
pub(crate) const VALIDATORS: &[&str] = &[
    "between",
    "eq",
    "ne",
    "gt",
    "len_eq",
    "len_min",
    "len_max",
    "match",
    "not_match",
    "match_all",
    "match_none",
    "match_any",
    "starts_with",
    "one_of",
    "not_one_of",
    "contains",
    "is_regex",
    "timestamp",
    "uuid",
    "custom_validator",
    "mutually_exclusive_subsets",
];

/// Attributes only some types may have (Kong's metaschema).
const ATTRIBUTE_TYPES: &[(&str, &[&str])] = &[
    ("between", &["integer", "number"]),
    ("len_eq", &["array", "set", "string", "map"]),
    ("match", &["string"]),
    ("one_of", &["string", "number", "integer"]),
    ("contains", &["array", "set"]),
    ("is_regex", &["string"]),
    ("timestamp", &["number", "integer"]),
    ("uuid", &["string"]),
    ("unique", &["string", "number", "integer", "foreign"]),
    (
        "unique_across_ws",
        &["string", "number", "integer", "foreign"],
    ),
    (
        "abstract",
        &[
            "string", "number", "integer", "record", "array", "set", "map",
        ],
    ),
    ("json_schema", &["json"]),
    (
        "transient",
        &["string", "number", "integer", "array", "set", "boolean"],
    ),
];

const BOOL_ATTRS: &[&str] = &[
    "required",
    "auto",
    "unique",
    "unique_across_ws",
    "abstract",
    "generate_admin_api",
    "immutable",
    "encrypted",
    "referenceable",
    "transient",
    "legacy",
    "timestamp",
    "uuid",
    "is_regex",
];
const STRING_ATTRS: &[&str] = &[
    "reference",
    "description",
    "on_delete",
    "err",
    "starts_with",
];
const TABLE_ATTRS: &[&str] = &[
    "examples",
    "json_schema",
    "deprecation",
    "translate_backwards",
];

/// Compiles definitions with the VM they came from.
pub(crate) struct Compiler<'a> {
    pub lua: &'a Lua,
    pub string_match: Function,
}

/// A definition's attributes, in a stable order.
pub(crate) fn attrs(def: &Table, path: &str) -> Result<Vec<(String, Value)>, String> {
    let mut out = Vec::new();
    for pair in def.pairs::<Value, Value>() {
        let (k, v) = pair.map_err(|e| format!("{path}: {}", lua_error(&e)))?;
        match k {
            Value::String(s) => out.push((s.to_string_lossy(), v)),
            other => {
                return Err(format!(
                    "{path}: attribute names must be strings, found a {}",
                    other.type_name()
                ))
            }
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
}

fn get<'v>(attrs: &'v [(String, Value)], name: &str) -> Option<&'v Value> {
    attrs.iter().find(|(k, _)| k == name).map(|(_, v)| v)
}

/// The entries of a `fields` list: `{ { name = def }, ... }`.
pub(crate) fn field_defs(list: &Table, path: &str) -> Result<Vec<(String, Table)>, String> {
    let at = if path.is_empty() {
        "fields".to_string()
    } else {
        format!("{path}.fields")
    };
    let len = list.raw_len();
    if list.pairs::<Value, Value>().count() != len {
        return Err(format!("{at}: must be an array of single-field tables"));
    }
    let mut out: Vec<(String, Table)> = Vec::with_capacity(len);
    for i in 1..=len {
        let Ok(Value::Table(item)) = list.raw_get::<Value>(i) else {
            return Err(format!("{at}[{i}]: each entry in fields must be a table"));
        };
        let pairs: Vec<(Value, Value)> = item
            .pairs::<Value, Value>()
            .filter_map(Result::ok)
            .collect();
        let [(Value::String(name), def)] = pairs.as_slice() else {
            return Err(format!(
                "{at}[{i}]: each entry in fields must be a table with exactly one field name key"
            ));
        };
        let name = name.to_string_lossy();
        let Value::Table(def) = def else {
            return Err(format!(
                "{}: the field definition must be a table",
                join(path, &name)
            ));
        };
        if out.iter().any(|(n, _)| *n == name) {
            return Err(format!(
                "{}: the field is declared twice",
                join(path, &name)
            ));
        }
        out.push((name, def.clone()));
    }
    Ok(out)
}

/// The Lua definition of the field at a dotted path among `defs`.
pub(crate) fn find_def(defs: &[(String, Table)], path: &str) -> Option<Table> {
    let (head, rest) = match path.split_once('.') {
        Some((h, r)) => (h, Some(r)),
        None => (path, None),
    };
    let def = defs
        .iter()
        .find(|(n, _)| n == head)
        .map(|(_, d)| d.clone())?;
    match rest {
        None => Some(def),
        Some(rest) => {
            let Ok(Value::Table(fields)) = def.raw_get::<Value>("fields") else {
                return None;
            };
            find_def(&field_defs(&fields, "").ok()?, rest)
        }
    }
}

impl Compiler<'_> {
    /// Compiles one field definition. `records_required`: records default to required (true
    /// inside the config record, as Kong makes a plugin's nested records required).
    pub(crate) fn field(
        &self,
        def: &Table,
        path: &str,
        records_required: bool,
    ) -> Result<Field, String> {
        self.field_with(def, path, records_required, false)
    }

    /// `partial`: a merged `if_match`/`then_match` definition, which may lack a type and
    /// whose default is not checked again.
    pub(crate) fn field_with(
        &self,
        def: &Table,
        path: &str,
        records_required: bool,
        partial: bool,
    ) -> Result<Field, String> {
        let attrs = attrs(def, path)?;
        for (k, _) in &attrs {
            if !FIELD_ATTRS.contains(&k.as_str()) && !VALIDATORS.contains(&k.as_str()) {
                return Err(format!("{path}: unknown attribute '{k}'"));
            }
        }
        let ty = match get(&attrs, "type") {
            Some(Value::String(s)) => {
                let s = s.to_string_lossy();
                Type::parse(&s).ok_or_else(|| {
                    format!("{path}: unknown type '{s}' (expected string, number, integer, boolean, array, set, map, record, json or foreign)")
                })?
            }
            Some(other) => {
                return Err(format!(
                    "{path}: 'type' must be a string, found a {}",
                    other.type_name()
                ))
            }
            None if partial => Type::Any,
            None => return Err(format!("{path}: missing type declaration")),
        };
        for (attr, types) in ATTRIBUTE_TYPES {
            if get(&attrs, attr).is_some() && ty != Type::Any && !types.contains(&ty.name()) {
                return Err(format!(
                    "{path}: field of type '{}' cannot have attribute '{attr}'",
                    ty.name()
                ));
            }
        }
        for (k, v) in &attrs {
            let want = if BOOL_ATTRS.contains(&k.as_str()) {
                matches!(v, Value::Boolean(_))
            } else if STRING_ATTRS.contains(&k.as_str()) {
                matches!(v, Value::String(_))
            } else if TABLE_ATTRS.contains(&k.as_str()) {
                matches!(v, Value::Table(_))
            } else {
                true
            };
            if !want {
                return Err(format!(
                    "{path}: attribute '{k}' has the wrong type ({})",
                    v.type_name()
                ));
            }
        }
        let abstract_ = matches!(get(&attrs, "abstract"), Some(Value::Boolean(true)));
        let needs: &[&str] = match ty {
            Type::Array | Type::Set => &["elements"],
            Type::Map => &["keys", "values"],
            Type::Record if !abstract_ => &["fields"],
            _ => &[],
        };
        if !partial {
            if let Some(missing) = needs.iter().find(|n| get(&attrs, n).is_none()) {
                return Err(format!(
                    "{path}: field of type '{}' must declare '{missing}'",
                    ty.name()
                ));
            }
        }
        let flag = |name: &str| matches!(get(&attrs, name), Some(Value::Boolean(true)));
        let mut f = Field::plain(ty);
        f.required = match get(&attrs, "required") {
            Some(Value::Boolean(b)) => *b,
            _ => ty == Type::Record && records_required,
        };
        f.referenceable = flag("referenceable");
        f.auto = flag("auto");
        f.uuid = flag("uuid");
        if let Some(Value::String(s)) = get(&attrs, "err") {
            f.err = Some(s.to_string_lossy());
        }
        let nested = |name: &str| -> Result<Option<Box<Field>>, String> {
            match get(&attrs, name) {
                None | Some(Value::Nil) => Ok(None),
                Some(Value::Table(t)) => Ok(Some(Box::new(self.field_with(
                    t,
                    &format!("{path}.{name}"),
                    false,
                    partial,
                )?))),
                Some(_) => Err(format!("{path}: '{name}' must be a table")),
            }
        };
        match ty {
            Type::Array | Type::Set | Type::Any => f.elements = nested("elements")?,
            _ => {}
        }
        if matches!(ty, Type::Map | Type::Any) {
            f.keys = nested("keys")?;
            f.values = nested("values")?;
        }
        if ty == Type::Record {
            f.record = Some(if get(&attrs, "fields").is_some() {
                self.record(def, path, records_required)?
            } else {
                Record::default()
            });
        }
        f.rules = self.rules(&attrs, path)?;
        if let Some(v) = get(&attrs, "default") {
            let d = lua_to_json(v, Some(&f)).map_err(|e| format!("{path}: default: {e}"))?;
            if !d.is_null() {
                if !partial {
                    self.check_default(&f, &d, path)?;
                }
                f.default = Some(d);
            }
        }
        Ok(f)
    }

    fn check_default(&self, f: &Field, d: &Json, path: &str) -> Result<(), String> {
        let mut ctx = Ctx::new(self.lua, &self.string_match, None);
        ctx.present(f, d, path);
        match ctx.problems.first() {
            None => Ok(()),
            Some(p) => Err(format!(
                "{path}: invalid default value ({}: {})",
                p.field, p.message
            )),
        }
    }

    /// A record's fields, entity checks and shorthand fields.
    pub(crate) fn record(
        &self,
        def: &Table,
        path: &str,
        records_required: bool,
    ) -> Result<Record, String> {
        let defs = match def.raw_get::<Value>("fields") {
            Ok(Value::Table(t)) => field_defs(&t, path)?,
            _ => return Err(format!("{path}: 'fields' must be a table")),
        };
        let mut rec = Record::default();
        for (name, d) in &defs {
            rec.fields.push((
                name.clone(),
                self.field(d, &join(path, name), records_required)?,
            ));
        }
        let checks = def.raw_get::<Value>("entity_checks").unwrap_or(Value::Nil);
        rec.checks = self.checks(&checks, &defs, path)?;
        let shorthands = def
            .raw_get::<Value>("shorthand_fields")
            .unwrap_or(Value::Nil);
        rec.shorthands = self.shorthands(&shorthands, path)?;
        Ok(rec)
    }

    fn shorthands(&self, list: &Value, path: &str) -> Result<Vec<Shorthand>, String> {
        let at = join(path, "shorthand_fields");
        let list = match list {
            Value::Nil => return Ok(Vec::new()),
            Value::Table(t) => t,
            _ => return Err(format!("{at}: must be a table")),
        };
        let mut out = Vec::new();
        for (name, def) in field_defs(list, "").map_err(|e| format!("{at}: {e}"))? {
            let p = join(path, &name);
            let copy = self.lua.create_table().map_err(|e| lua_error(&e))?;
            let mut func = None;
            for (k, v) in attrs(&def, &p)? {
                match k.as_str() {
                    "func" => func = Some(v),
                    "translate_backwards_with" => {}
                    _ => copy.raw_set(k, v).map_err(|e| lua_error(&e))?,
                }
            }
            let Some(Value::Function(func)) = func else {
                return Err(format!("{p}: a shorthand field needs a 'func' function"));
            };
            let field = self.field(&copy, &p, false)?;
            if matches!(field.ty, Type::Record | Type::Foreign | Type::Function) {
                return Err(format!(
                    "{p}: a shorthand field cannot be of type '{}'",
                    field.ty.name()
                ));
            }
            let deprecated =
                !matches!(def.raw_get::<Value>("deprecation"), Ok(Value::Nil) | Err(_));
            out.push(Shorthand {
                name,
                field,
                func,
                deprecated,
            });
        }
        Ok(out)
    }

    fn pattern(&self, v: &Value, path: &str, attr: &str) -> Result<Vec<u8>, String> {
        let Value::String(s) = v else {
            return Err(format!("{path}: '{attr}' must be a Lua pattern string"));
        };
        let bytes = s.as_bytes().to_vec();
        let empty = self.lua.create_string("").map_err(|e| lua_error(&e))?;
        if let Err(e) = self.string_match.call::<Value>((empty, s.clone())) {
            return Err(format!(
                "{path}: '{attr}' is not a valid Lua pattern: {}",
                lua_error(&e)
            ));
        }
        Ok(bytes)
    }

    fn pattern_list(&self, v: &Value, path: &str, attr: &str) -> Result<Vec<Pattern>, String> {
        let bad = || format!("{path}: '{attr}' must be a list of {{ pattern = ..., err = ... }}");
        let Value::Table(t) = v else {
            return Err(bad());
        };
        let mut out = Vec::new();
        for item in t.sequence_values::<Value>() {
            let Ok(Value::Table(item)) = item else {
                return Err(bad());
            };
            let mut pattern = None;
            let mut err = None;
            for (k, v) in attrs(&item, path)? {
                match (k.as_str(), &v) {
                    ("pattern", _) => pattern = Some(self.pattern(&v, path, attr)?),
                    ("err", Value::String(s)) => err = Some(s.to_string_lossy()),
                    _ => return Err(bad()),
                }
            }
            out.push(Pattern {
                pattern: pattern.ok_or_else(bad)?,
                err,
            });
        }
        Ok(out)
    }

    fn rules(&self, attrs: &[(String, Value)], path: &str) -> Result<Rules, String> {
        let mut r = Rules::default();
        let json = |name: &str, v: &Value| {
            lua_to_json(v, None).map_err(|e| format!("{path}: '{name}': {e}"))
        };
        let number = |name: &str, v: &Value| -> Result<f64, String> {
            match v {
                Value::Integer(i) => Ok(*i as f64),
                Value::Number(n) => Ok(*n),
                _ => Err(format!("{path}: '{name}' must be a number")),
            }
        };
        let integer = |name: &str, v: &Value| -> Result<i64, String> {
            let n = number(name, v)?;
            if n.fract() != 0.0 {
                return Err(format!("{path}: '{name}' must be an integer"));
            }
            Ok(n as i64)
        };
        let list = |name: &str, v: &Value| -> Result<Vec<Json>, String> {
            match json(name, v)? {
                Json::Array(a) => Ok(a),
                Json::Object(o) if o.is_empty() => Ok(Vec::new()),
                _ => Err(format!("{path}: '{name}' must be a list")),
            }
        };
        for (k, v) in attrs {
            let name = k.as_str();
            match name {
                "eq" => r.eq = Some(json(name, v)?),
                "ne" => r.ne = Some(json(name, v)?),
                "one_of" => r.one_of = Some(list(name, v)?),
                "not_one_of" => r.not_one_of = Some(list(name, v)?),
                "contains" => r.contains = Some(json(name, v)?),
                "gt" => r.gt = Some(number(name, v)?),
                "timestamp" => r.timestamp = matches!(v, Value::Boolean(true)),
                "uuid" => r.uuid = matches!(v, Value::Boolean(true)),
                "is_regex" => r.is_regex = matches!(v, Value::Boolean(true)),
                "between" => {
                    let bad = || format!("{path}: 'between' must be a list of two numbers");
                    let Value::Table(t) = v else {
                        return Err(bad());
                    };
                    let nums: Vec<Value> = t
                        .sequence_values::<Value>()
                        .filter_map(Result::ok)
                        .collect();
                    if nums.len() != 2 || t.pairs::<Value, Value>().count() != 2 {
                        return Err(bad());
                    }
                    r.between = Some((number(name, &nums[0])?, number(name, &nums[1])?));
                }
                "len_eq" => r.len_eq = Some(integer(name, v)?),
                "len_min" => r.len_min = Some(integer(name, v)?),
                "len_max" => r.len_max = Some(integer(name, v)?),
                "starts_with" => r.starts_with = v.as_string().map(|s| s.to_string_lossy()),
                "match" => r.matches = Some(self.pattern(v, path, name)?),
                "not_match" => r.not_match = Some(self.pattern(v, path, name)?),
                "match_all" => r.match_all = self.pattern_list(v, path, name)?,
                "match_none" => r.match_none = self.pattern_list(v, path, name)?,
                "match_any" => {
                    let bad = || {
                        format!("{path}: 'match_any' must be {{ patterns = {{ ... }}, err = ... }}")
                    };
                    let Value::Table(t) = v else {
                        return Err(bad());
                    };
                    let mut patterns = None;
                    let mut err = None;
                    for (k, v) in self::attrs(t, path)? {
                        match (k.as_str(), &v) {
                            ("patterns", Value::Table(list)) => {
                                let mut ps = Vec::new();
                                for p in list.sequence_values::<Value>() {
                                    ps.push(self.pattern(
                                        &p.map_err(|e| lua_error(&e))?,
                                        path,
                                        name,
                                    )?);
                                }
                                patterns = Some(ps);
                            }
                            ("err", Value::String(s)) => err = Some(s.to_string_lossy()),
                            _ => return Err(bad()),
                        }
                    }
                    r.match_any = Some((patterns.ok_or_else(bad)?, err));
                }
                "custom_validator" => match v {
                    Value::Function(f) => r.custom_validator = Some(f.clone()),
                    _ => return Err(format!("{path}: 'custom_validator' must be a function")),
                },
                "mutually_exclusive_subsets" => {
                    let bad =
                        || format!("{path}: 'mutually_exclusive_subsets' must be a list of lists");
                    let sets = list(name, v)?
                        .into_iter()
                        .map(|s| match s {
                            Json::Array(a) => Ok(a),
                            _ => Err(bad()),
                        })
                        .collect::<Result<Vec<_>, _>>()?;
                    r.mutually_exclusive_subsets = Some(sets);
                }
                _ => {}
            }
        }
        Ok(r)
    }
}
