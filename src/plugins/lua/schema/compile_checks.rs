//! Reading `entity_checks` lists.

use mlua::{Table, Value};

use super::compile::{attrs, find_def, Compiler, VALIDATORS};
use super::convert::{join, lua_error};
use super::model::{CheckKind, Conditional, ConditionalAtLeastOneOf, EntityCheck, Field};

/// Attributes an `if_match`/`then_match`/`else_match` may have besides the validators.
const MATCH_ATTRS: &[&str] = &["required", "elements", "keys", "values"];

type Attrs = Vec<(String, Value)>;

fn take(attrs: &Attrs, name: &str) -> Option<Value> {
    attrs
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.clone())
}

impl Compiler<'_> {
    /// Compiles an `entity_checks` list of the record whose fields are `defs`. Field names
    /// are not required to exist (Kong does not check them either: an unknown name reads as
    /// nil).
    pub(crate) fn checks(
        &self,
        list: &Value,
        defs: &[(String, Table)],
        path: &str,
    ) -> Result<Vec<EntityCheck>, String> {
        let at = join(path, "entity_checks");
        let list = match list {
            Value::Nil => return Ok(Vec::new()),
            Value::Table(t) => t,
            _ => return Err(format!("{at}: must be a list")),
        };
        let len = list.raw_len();
        if list.pairs::<Value, Value>().count() != len {
            return Err(format!("{at}: must be a list of single-check tables"));
        }
        let mut out = Vec::with_capacity(len);
        for i in 1..=len {
            let here = format!("{at}[{i}]");
            let Ok(Value::Table(item)) = list.raw_get::<Value>(i) else {
                return Err(format!("{here}: each entity check must be a table"));
            };
            let pairs = attrs(&item, &here)?;
            let [(name, arg)] = pairs.as_slice() else {
                return Err(format!(
                    "{here}: an entity check is a table with exactly one check name"
                ));
            };
            let here = format!("{here}.{name}");
            out.push(self.check(name, arg, defs, &here)?);
        }
        Ok(out)
    }

    fn check(
        &self,
        name: &str,
        arg: &Value,
        defs: &[(String, Table)],
        here: &str,
    ) -> Result<EntityCheck, String> {
        let names_of = |v: Option<Value>, what: &str| -> Result<Vec<String>, String> {
            let bad = || format!("{here}: '{what}' must be a list of field names");
            let Some(Value::Table(t)) = v else {
                return Err(bad());
            };
            let mut out = Vec::new();
            for v in t.sequence_values::<Value>() {
                match v {
                    Ok(Value::String(s)) => out.push(s.to_string_lossy()),
                    _ => return Err(bad()),
                }
            }
            if t.pairs::<Value, Value>().count() != out.len() {
                return Err(bad());
            }
            Ok(out)
        };
        let simple = |kind: fn(Vec<String>) -> CheckKind, missing: bool, invalid: bool| {
            let names = names_of(Some(arg.clone()), name)?;
            Ok(EntityCheck {
                kind: kind(names.clone()),
                fields: names.clone(),
                required: names,
                run_with_missing: missing,
                run_with_invalid: invalid,
            })
        };
        const KNOWN: &[&str] = &[
            "at_least_one_of",
            "only_one_of",
            "distinct",
            "mutually_required",
            "mutually_exclusive",
            "mutually_exclusive_sets",
            "conditional",
            "conditional_at_least_one_of",
            "custom_entity_check",
        ];
        if !KNOWN.contains(&name) {
            return Err(format!(
                "{here}: unknown entity check '{name}' (known: {})",
                KNOWN.join(", ")
            ));
        }
        match name {
            "at_least_one_of" => return simple(CheckKind::AtLeastOneOf, true, true),
            "only_one_of" => return simple(CheckKind::OnlyOneOf, false, true),
            "distinct" => return simple(CheckKind::Distinct, false, true),
            "mutually_required" => return simple(CheckKind::MutuallyRequired, true, false),
            "mutually_exclusive" => return simple(CheckKind::MutuallyExclusive, true, false),
            _ => {}
        }
        let Value::Table(arg) = arg else {
            return Err(format!("{here}: the check's argument must be a table"));
        };
        let a = attrs(arg, here)?;
        let allowed: &[&str] = match name {
            "mutually_exclusive_sets" => &["set1", "set2"],
            "conditional" => &[
                "if_field",
                "if_match",
                "then_field",
                "then_match",
                "then_err",
            ],
            "conditional_at_least_one_of" => &[
                "if_field",
                "if_match",
                "then_at_least_one_of",
                "then_err",
                "else_match",
                "else_then_at_least_one_of",
                "else_then_err",
            ],
            "custom_entity_check" => &[
                "field_sources",
                "fn",
                "run_with_missing_fields",
                "run_with_invalid_fields",
            ],
            other => return Err(format!("{here}: unknown entity check '{other}'")),
        };
        if let Some((k, _)) = a.iter().find(|(k, _)| !allowed.contains(&k.as_str())) {
            return Err(format!("{here}: unknown argument '{k}'"));
        }
        let string = |what: &str| -> Result<String, String> {
            match take(&a, what) {
                Some(Value::String(s)) => Ok(s.to_string_lossy()),
                _ => Err(format!("{here}: '{what}' must be a string")),
            }
        };
        let opt_string = |what: &str| -> Result<Option<String>, String> {
            match take(&a, what) {
                None => Ok(None),
                Some(_) => string(what).map(Some),
            }
        };
        match name {
            "mutually_exclusive_sets" => {
                let set1 = names_of(take(&a, "set1"), "set1")?;
                let set2 = names_of(take(&a, "set2"), "set2")?;
                let fields = set1.iter().chain(&set2).cloned().collect();
                Ok(EntityCheck {
                    kind: CheckKind::MutuallyExclusiveSets(set1, set2),
                    fields,
                    required: Vec::new(),
                    run_with_missing: true,
                    run_with_invalid: false,
                })
            }
            "conditional" => {
                let if_field = string("if_field")?;
                let then_field = string("then_field")?;
                let if_match = self.overlay(
                    defs,
                    &if_field,
                    take(&a, "if_match"),
                    &format!("{here}.if_match"),
                )?;
                let then_tbl = take(&a, "then_match");
                let then_required = match &then_tbl {
                    Some(Value::Table(t)) => {
                        matches!(t.raw_get::<Value>("required"), Ok(Value::Boolean(true)))
                    }
                    _ => false,
                };
                let then_match =
                    self.overlay(defs, &then_field, then_tbl, &format!("{here}.then_match"))?;
                Ok(EntityCheck {
                    fields: vec![if_field.clone(), then_field.clone()],
                    required: vec![if_field.clone()],
                    kind: CheckKind::Conditional(Box::new(Conditional {
                        if_field,
                        if_match,
                        then_field,
                        then_match,
                        then_required,
                        then_err: opt_string("then_err")?,
                    })),
                    run_with_missing: false,
                    run_with_invalid: true,
                })
            }
            "conditional_at_least_one_of" => {
                let if_field = string("if_field")?;
                let if_match = self.overlay(
                    defs,
                    &if_field,
                    take(&a, "if_match"),
                    &format!("{here}.if_match"),
                )?;
                let then = names_of(take(&a, "then_at_least_one_of"), "then_at_least_one_of")?;
                let else_match = match take(&a, "else_match") {
                    None => None,
                    some => {
                        Some(self.overlay(defs, &if_field, some, &format!("{here}.else_match"))?)
                    }
                };
                let else_then = match take(&a, "else_then_at_least_one_of") {
                    None => Vec::new(),
                    some => names_of(some, "else_then_at_least_one_of")?,
                };
                let mut fields = vec![if_field.clone()];
                fields.extend(then.iter().cloned());
                fields.extend(else_then.iter().cloned());
                Ok(EntityCheck {
                    fields,
                    required: Vec::new(),
                    kind: CheckKind::ConditionalAtLeastOneOf(Box::new(ConditionalAtLeastOneOf {
                        if_field,
                        if_match,
                        then_at_least_one_of: then,
                        then_err: opt_string("then_err")?,
                        else_match,
                        else_then_at_least_one_of: else_then,
                        else_then_err: opt_string("else_then_err")?,
                    })),
                    run_with_missing: true,
                    run_with_invalid: true,
                })
            }
            _ => {
                let sources = names_of(take(&a, "field_sources"), "field_sources")?;
                let Some(Value::Function(func)) = take(&a, "fn") else {
                    return Err(format!("{here}: 'fn' must be a function"));
                };
                let flag = |what: &str| -> Result<bool, String> {
                    match take(&a, what) {
                        None => Ok(false),
                        Some(Value::Boolean(b)) => Ok(b),
                        Some(_) => Err(format!("{here}: '{what}' must be a boolean")),
                    }
                };
                Ok(EntityCheck {
                    fields: sources.clone(),
                    required: sources.clone(),
                    run_with_missing: flag("run_with_missing_fields")?,
                    run_with_invalid: flag("run_with_invalid_fields")?,
                    kind: CheckKind::Custom { sources, func },
                })
            }
        }
    }

    /// An `if_match`-style partial definition laid over the definition of `field` (Kong
    /// makes the field's definition the partial one's metatable `__index`).
    fn overlay(
        &self,
        defs: &[(String, Table)],
        field: &str,
        partial: Option<Value>,
        here: &str,
    ) -> Result<Field, String> {
        let Some(Value::Table(partial)) = partial else {
            return Err(format!("{here}: must be a table of validators"));
        };
        let merged = self.lua.create_table().map_err(|e| lua_error(&e))?;
        if let Some(base) = find_def(defs, field) {
            for (k, v) in attrs(&base, here)? {
                merged.raw_set(k, v).map_err(|e| lua_error(&e))?;
            }
        }
        for (k, v) in attrs(&partial, here)? {
            if !MATCH_ATTRS.contains(&k.as_str()) && !VALIDATORS.contains(&k.as_str()) {
                return Err(format!("{here}: unknown attribute '{k}'"));
            }
            merged.raw_set(k, v).map_err(|e| lua_error(&e))?;
        }
        self.field_with(&merged, here, false, true)
    }
}
