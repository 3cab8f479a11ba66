//! What request-transformer applies to each part of a request (query, form and JSON bodies):
//! Kong's `name:value` lists, compiled once per instance, and the remove, rename, replace,
//! add, append steps in Kong's order.

use serde_json::Value as Json;

use super::template::{Env, Template};

/// Splits a `name:value` entry the way Kong does (`^([^:]+):*(.-)$`): the name ends at the
/// first colon and any run of colons after it is dropped.
pub(super) fn split_pair(entry: &str) -> (&str, &str) {
    match entry.split_once(':') {
        Some((name, value)) => (name, value.trim_start_matches(':')),
        None => (entry, ""),
    }
}

/// A configured value, plain or a template.
#[derive(Debug, Clone)]
pub(super) struct Value {
    raw: String,
    template: Option<Template>,
}

impl Value {
    /// Compiles `raw`; `what` locates it in errors.
    pub fn compile(raw: &str, what: &str) -> Result<Value, String> {
        let template = Template::parse(raw).map_err(|e| format!("{what}: {e}"))?;
        Ok(Value {
            raw: raw.to_string(),
            template,
        })
    }

    /// Whether the value is a template.
    pub fn is_template(&self) -> bool {
        self.template.is_some()
    }

    /// The value for this request.
    pub fn render(&self, env: Option<&Env>) -> String {
        match (&self.template, env) {
            (Some(t), Some(env)) => t.render(env),
            _ => self.raw.clone(),
        }
    }
}

/// A `name:value` entry.
#[derive(Debug, Clone)]
pub(super) struct Pair {
    /// The name (a header, argument or JSON key).
    pub name: String,
    /// The value.
    pub value: Value,
}

/// The five steps for one part of the request.
#[derive(Debug, Default)]
pub(super) struct Ops {
    /// Names to remove.
    pub remove: Vec<String>,
    /// `old:new` names.
    pub rename: Vec<Pair>,
    /// Values replacing existing ones.
    pub replace: Vec<Pair>,
    /// Values added when absent.
    pub add: Vec<Pair>,
    /// Values added to existing ones.
    pub append: Vec<Pair>,
}

impl Ops {
    /// Compiles the lists of one part (`part` is `headers`, `querystring` or `body`).
    pub fn compile(lists: [&[String]; 5], part: &str) -> Result<Ops, String> {
        let pairs = |step: &str, list: &[String]| -> Result<Vec<Pair>, String> {
            list.iter()
                .enumerate()
                .map(|(i, entry)| {
                    let (name, value) = split_pair(entry);
                    Ok(Pair {
                        name: name.to_string(),
                        value: Value::compile(value, &format!("{step}.{part}[{}]", i + 1))?,
                    })
                })
                .collect()
        };
        let [remove, rename, replace, add, append] = lists;
        Ok(Ops {
            remove: remove.to_vec(),
            rename: pairs("rename", rename)?,
            replace: pairs("replace", replace)?,
            add: pairs("add", add)?,
            append: pairs("append", append)?,
        })
    }

    /// Whether there is nothing to do.
    pub fn is_empty(&self) -> bool {
        self.remove.is_empty()
            && self.rename.is_empty()
            && self.replace.is_empty()
            && self.add.is_empty()
            && self.append.is_empty()
    }

    /// Whether a value is a template.
    pub fn has_template(&self) -> bool {
        [&self.rename, &self.replace, &self.add, &self.append]
            .iter()
            .any(|l| l.iter().any(|p| p.value.is_template()))
    }

    /// Applies the steps to ordered arguments (a query string or a form body). Names are
    /// case-sensitive; a repeated argument counts as one (replace and rename act on all of
    /// its values). Remove, rename and replace need `had_content` (Kong skips them on an
    /// empty body). Returns whether anything changed.
    pub fn apply_args(
        &self,
        args: &mut Vec<(String, String)>,
        env: Option<&Env>,
        had_content: bool,
    ) -> bool {
        let before = args.clone();
        if had_content {
            for name in &self.remove {
                args.retain(|(k, _)| k != name);
            }
            for p in &self.rename {
                let new = p.value.render(env);
                if new != p.name {
                    for (k, _) in args.iter_mut().filter(|(k, _)| *k == p.name) {
                        k.clone_from(&new);
                    }
                }
            }
            for p in &self.replace {
                if let Some(first) = args.iter().position(|(k, _)| *k == p.name) {
                    args[first].1 = p.value.render(env);
                    let mut i = 0;
                    args.retain(|(k, _)| {
                        i += 1;
                        i - 1 == first || *k != p.name
                    });
                }
            }
        }
        for p in &self.add {
            if !args.iter().any(|(k, _)| *k == p.name) {
                args.push((p.name.clone(), p.value.render(env)));
            }
        }
        for p in &self.append {
            args.push((p.name.clone(), p.value.render(env)));
        }
        *args != before
    }

    /// Applies the steps to a JSON object's keys (values set are strings). An existing key
    /// counts even when its value is null or false. Returns whether anything changed.
    pub fn apply_json(
        &self,
        obj: &mut serde_json::Map<String, Json>,
        env: Option<&Env>,
        had_content: bool,
    ) -> bool {
        let before = obj.clone();
        if had_content {
            for name in &self.remove {
                obj.remove(name);
            }
            for p in &self.rename {
                let new = p.value.render(env);
                if new != p.name {
                    if let Some(v) = obj.remove(&p.name) {
                        obj.insert(new, v);
                    }
                }
            }
            for p in &self.replace {
                if let Some(v) = obj.get_mut(&p.name) {
                    *v = Json::String(p.value.render(env));
                }
            }
        }
        for p in &self.add {
            if !obj.contains_key(&p.name) {
                obj.insert(p.name.clone(), Json::String(p.value.render(env)));
            }
        }
        for p in &self.append {
            append_json(obj, &p.name, Json::String(p.value.render(env)));
        }
        *obj != before
    }
}

/// Kong's `append_value` on a JSON object: an array gets the value pushed, a scalar becomes
/// `[old, value]`, an absent key (or an object, which cannot take the value) `[value]`.
pub(super) fn append_json(obj: &mut serde_json::Map<String, Json>, name: &str, value: Json) {
    match obj.get_mut(name) {
        Some(Json::Array(items)) => items.push(value),
        Some(old @ (Json::String(_) | Json::Number(_) | Json::Bool(_))) => {
            let prev = old.take();
            *old = Json::Array(vec![prev, value]);
        }
        _ => {
            obj.insert(name.to_string(), Json::Array(vec![value]));
        }
    }
}

/// How a request body is encoded, from its Content-Type (Kong's `get_content_type`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum BodyKind {
    /// `application/json`
    Json,
    /// `multipart/form-data`
    Multipart,
    /// `application/x-www-form-urlencoded`
    Form,
}

impl BodyKind {
    /// The kind a Content-Type names, if one the plugin transforms.
    pub fn of(content_type: Option<&str>) -> Option<BodyKind> {
        let ct = content_type?.to_ascii_lowercase();
        if ct.contains("application/json") {
            Some(BodyKind::Json)
        } else if ct.contains("multipart/form-data") {
            Some(BodyKind::Multipart)
        } else if ct.contains("application/x-www-form-urlencoded") {
            Some(BodyKind::Form)
        } else {
            None
        }
    }
}

/// Decodes a form body or query string into ordered arguments.
pub(super) fn decode_form(body: &[u8]) -> Vec<(String, String)> {
    form_urlencoded::parse(body).into_owned().collect()
}

/// Encodes ordered arguments as a form body.
pub(super) fn encode_form(args: &[(String, String)]) -> String {
    form_urlencoded::Serializer::new(String::new())
        .extend_pairs(args)
        .finish()
}

/// Transforms a JSON body; None when it is not changed (or is not a JSON object).
pub(super) fn json_body(ops: &Ops, body: &[u8], env: Option<&Env>) -> Option<Vec<u8>> {
    let had_content = !body.is_empty();
    let mut obj = if had_content {
        match serde_json::from_slice::<Json>(body) {
            Ok(Json::Object(m)) => m,
            _ => return None,
        }
    } else {
        serde_json::Map::new()
    };
    ops.apply_json(&mut obj, env, had_content)
        .then(|| Json::Object(obj).to_string().into_bytes())
}

/// Transforms a form body; None when it is not changed.
pub(super) fn form_body(ops: &Ops, body: &[u8], env: Option<&Env>) -> Option<Vec<u8>> {
    let mut args = decode_form(body);
    ops.apply_args(&mut args, env, !body.is_empty())
        .then(|| encode_form(&args).into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ops(
        remove: &[&str],
        rename: &[&str],
        replace: &[&str],
        add: &[&str],
        append: &[&str],
    ) -> Ops {
        let v = |l: &[&str]| l.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        Ops::compile(
            [&v(remove), &v(rename), &v(replace), &v(add), &v(append)],
            "body",
        )
        .unwrap()
    }

    #[test]
    fn pairs_split_like_kong() {
        assert_eq!(split_pair("a:b:c"), ("a", "b:c"));
        assert_eq!(split_pair("a::b"), ("a", "b"));
        assert_eq!(split_pair("a"), ("a", ""));
    }

    #[test]
    fn args_in_kong_order() {
        let o = ops(
            &["gone"],
            &["old:new"],
            &["r:R"],
            &["r:no", "a:1"],
            &["a:2", "z:9"],
        );
        let mut args = decode_form(b"gone=1&old=x&r=1&r=2&keep=k");
        assert!(o.apply_args(&mut args, None, true));
        assert_eq!(encode_form(&args), "new=x&r=R&keep=k&a=1&a=2&z=9");
        // Nothing to do: unchanged.
        let mut same = decode_form(b"q=1");
        assert!(!ops(&[], &[], &[], &["q:2"], &[]).apply_args(&mut same, None, true));
    }

    #[test]
    fn json_bodies() {
        let o = ops(
            &["gone"],
            &["old:new"],
            &["r:R"],
            &["a:1", "r:no"],
            &["l:x", "s:y"],
        );
        let out = json_body(
            &o,
            br#"{"gone":1,"old":true,"r":5,"l":["w"],"s":"v"}"#,
            None,
        )
        .unwrap();
        let v: Json = serde_json::from_slice(&out).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"new":true,"r":"R","a":"1","l":["w","x"],"s":["v","y"]})
        );
        // Empty body: only add and append apply.
        let out = json_body(&o, b"", None).unwrap();
        let v: Json = serde_json::from_slice(&out).unwrap();
        assert_eq!(v, serde_json::json!({"a":"1","r":"no","l":["x"],"s":["y"]}));
        // Not JSON: left alone.
        assert!(json_body(&o, b"not json", None).is_none());
    }
}
