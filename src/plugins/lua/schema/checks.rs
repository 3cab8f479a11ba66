//! Entity checks (cross-field rules of a record), run on the record with defaults filled.

use mlua::{MultiValue, Value};
use serde_json::{Map, Value as Json};

use super::convert::{
    format_s, get_path, is_nonempty, is_reference, join, json_to_lua, lua_eq, lua_error,
    quoted_list, set_path,
};
use super::model::{CheckKind, EntityCheck, Record, Type};
use super::validate::{Ctx, REQUIRED};

/// Runs the record's checks on `entity` (the processed record); problems of the record
/// itself are reported at `path` (empty for the plugin entity).
pub(crate) fn run(ctx: &mut Ctx<'_>, rec: &Record, entity: &Json, path: &str) {
    for check in &rec.checks {
        run_one(ctx, rec, check, entity, path);
    }
}

fn run_one(ctx: &mut Ctx<'_>, rec: &Record, check: &EntityCheck, entity: &Json, path: &str) {
    let mut missing = Vec::new();
    let mut all_nil = true;
    let mut all_ok = true;
    for name in &check.fields {
        match get_path(entity, name) {
            None => {
                if !check.run_with_missing && check.required.contains(name) {
                    missing.push(name);
                }
            }
            Some(v) => {
                all_nil = false;
                // A vault reference in a referenceable field cannot be checked here.
                let referenced = rec
                    .lookup(name)
                    .is_some_and(|f| f.ty == Type::String && f.referenceable)
                    && v.as_str().is_some_and(is_reference);
                if referenced {
                    return;
                }
            }
        }
        if ctx.has_problem(&join(path, name)) {
            all_ok = false;
        }
    }
    if !all_ok && !check.run_with_invalid {
        return;
    }
    if all_nil && !check.run_with_missing {
        return;
    }
    if !missing.is_empty() {
        for name in missing {
            let p = join(path, name);
            if !ctx.has_problem(&p) {
                ctx.problem(&p, "field required for entity check");
            }
        }
        return;
    }
    if let Err(msg) = evaluate(ctx, check, entity, path) {
        ctx.problem(path, msg);
    }
}

fn nonempty(entity: &Json, name: &str) -> bool {
    is_nonempty(get_path(entity, name))
}

fn evaluate(
    ctx: &mut Ctx<'_>,
    check: &EntityCheck,
    entity: &Json,
    path: &str,
) -> Result<(), String> {
    match &check.kind {
        CheckKind::AtLeastOneOf(names) => {
            if names.iter().any(|n| nonempty(entity, n)) {
                return Ok(());
            }
            Err(format!(
                "at least one of these fields must be non-empty: {}",
                quoted_list(names)
            ))
        }
        CheckKind::OnlyOneOf(names) => {
            if names.iter().filter(|n| nonempty(entity, n)).count() == 1 {
                return Ok(());
            }
            Err(format!(
                "exactly one of these fields must be non-empty: {}",
                quoted_list(names)
            ))
        }
        CheckKind::Distinct(names) => {
            let mut seen: Vec<&Json> = Vec::new();
            for n in names {
                let v = get_path(entity, n);
                if let Some(v) = v.filter(|_| is_nonempty(v)) {
                    if seen.iter().any(|s| lua_eq(s, v)) {
                        return Err(format!(
                            "values of these fields must be distinct: {}",
                            quoted_list(names)
                        ));
                    }
                    seen.push(v);
                }
            }
            Ok(())
        }
        CheckKind::MutuallyRequired(names) => {
            let set = names.iter().filter(|n| nonempty(entity, n)).count();
            if set == 0 || set == names.len() {
                return Ok(());
            }
            Err(format!(
                "all or none of these fields must be set: {}",
                quoted_list(names)
            ))
        }
        CheckKind::MutuallyExclusive(names) => {
            if names.iter().filter(|n| nonempty(entity, n)).count() <= 1 {
                return Ok(());
            }
            Err(format!(
                "only one or none of these fields must be set: {}",
                quoted_list(names)
            ))
        }
        CheckKind::MutuallyExclusiveSets(set1, set2) => {
            let a: Vec<&String> = set1.iter().filter(|n| nonempty(entity, n)).collect();
            let b: Vec<&String> = set2.iter().filter(|n| nonempty(entity, n)).collect();
            if a.is_empty() || b.is_empty() {
                return Ok(());
            }
            Err(format!(
                "these sets are mutually exclusive: ({}), ({})",
                quoted_list(&a),
                quoted_list(&b)
            ))
        }
        CheckKind::Conditional(c) => {
            let Some(if_value) = get_path(entity, &c.if_field) else {
                return Ok(());
            };
            if !ctx.passes(&c.if_match, if_value, &join(path, &c.if_field)) {
                return Ok(());
            }
            let then_value = get_path(entity, &c.then_field).unwrap_or(&Json::Null);
            let then_path = join(path, &c.then_field);
            let failed = format!(
                "failed conditional validation given value of field '{}'",
                c.if_field
            );
            if c.then_required && then_value.is_null() {
                ctx.problems.retain(|p| p.field != then_path);
                ctx.problem(&then_path, REQUIRED);
                return Err(failed);
            }
            let mark = ctx.problems.len();
            ctx.standalone(&c.then_match, then_value, &then_path);
            if ctx.problems.len() == mark {
                return Ok(());
            }
            // The check's verdict replaces what the field reported on its own.
            let new = ctx.problems.split_off(mark);
            ctx.problems.retain(|p| p.field != then_path);
            ctx.problems.extend(new);
            Err(match &c.then_err {
                Some(e) => format_s(e, &c.if_field),
                None => failed,
            })
        }
        CheckKind::ConditionalAtLeastOneOf(c) => {
            let Some(if_value) = get_path(entity, &c.if_field) else {
                return Ok(());
            };
            let if_path = join(path, &c.if_field);
            let (names, err) = if ctx.passes(&c.if_match, if_value, &if_path) {
                (&c.then_at_least_one_of, &c.then_err)
            } else {
                match &c.else_match {
                    Some(m) if ctx.passes(m, if_value, &if_path) => {
                        (&c.else_then_at_least_one_of, &c.else_then_err)
                    }
                    _ => return Ok(()),
                }
            };
            if names.iter().any(|n| nonempty(entity, n)) {
                return Ok(());
            }
            let list = quoted_list(names);
            Err(match err {
                Some(e) => format_s(e, &list),
                None => format!("at least one of these fields must be non-empty: {list}"),
            })
        }
        CheckKind::Custom { sources, func } => {
            let mut input = Map::new();
            for name in sources {
                if let Some(v) = get_path(entity, name) {
                    set_path(&mut input, name, v.clone());
                }
            }
            let arg = json_to_lua(ctx.lua, &Json::Object(input)).map_err(|e| lua_error(&e))?;
            let ret: Vec<Value> = match func.call::<MultiValue>(arg) {
                Ok(ret) => ret.into_iter().collect(),
                Err(e) => return Err(lua_error(&e)),
            };
            if !matches!(ret.first(), None | Some(Value::Nil | Value::Boolean(false))) {
                return Ok(());
            }
            Err(match ret.get(1) {
                Some(Value::String(m)) => m.to_string_lossy(),
                _ => format!(
                    "failed entity check: custom_entity_check({})",
                    quoted_list(sources)
                ),
            })
        }
    }
}
