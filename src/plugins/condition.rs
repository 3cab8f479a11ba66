//! Plugin `condition`s: CEL expressions (the `cel` crate) compiled once per snapshot and
//! evaluated just before an instance's access phase, with Kong's fields:
//!
//! - `http.method`, `http.host`, `http.path`, `http.path_segments`, `http.headers.<name>`
//!   (lowercase, `-` written `_`, first value, null when absent), `http.headers_list.<name>`,
//!   `http.queries.<name>`, `http.queries_list.<name>`;
//! - `net.protocol`, `net.tls.sni`, `net.src.ip/port`, `net.dst.ip/port`;
//! - `route`, `service`, `consumer` (id, name/username, custom_id, tags);
//! - `kong.ctx.shared` (the Lua plugins' shared per-request table).
//!
//! `default(expr, fallback)` evaluates to `fallback` when `expr` fails. CEL functions get
//! their arguments evaluated, so the macro moves `expr` into a table of the snapshot's
//! conditions and calls a function that evaluates it itself and catches its error.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use cel::common::ast::{CallExpr, Expr, LiteralValue};
use cel::parser::Macro;
use cel::{Context, Env, FunctionContext, IdedExpr, Program, Value};

use super::PhaseCtx;

/// Kong's limit on a condition's length.
pub const MAX_LEN: usize = 1024;

/// Deepest nesting of brackets (`(`, `[`, `{`) in a condition. CEL's parser recurses per
/// level, with large frames in an unoptimized build: the fuzzer overflowed an 8 MiB stack with
/// 59 nested parentheses, below the parser's own recursion limit. Conditions are shallow.
pub const MAX_DEPTH: usize = 32;

/// The deepest bracket nesting of `source` outside string literals (quotes with backslash
/// escapes; a triple-quoted string is read as its quotes, which only ever under-counts).
fn bracket_depth(source: &str) -> usize {
    crate::config::checks::nesting_depth(source, b"([{", b")]}", b"\"'")
}

/// Name of the function `default(expr, fallback)` is rewritten to.
const DEFAULT_FN: &str = "__sluice_default";

/// Compiles the conditions of one snapshot (they share one CEL environment).
pub struct Compiler {
    env: Env,
    deferred: Arc<Mutex<Vec<IdedExpr>>>,
}

/// The CEL environment of a snapshot's conditions, shared by them.
pub struct Shared {
    env: Arc<Env>,
    deferred: Arc<Vec<IdedExpr>>,
}

/// A compiled condition.
pub struct Condition {
    program: Program,
    shared: Arc<Shared>,
    /// Top-level variables the expression reads (only those are built per request).
    vars: Vars,
    /// Header and query names the expression names, present as null when the request has none.
    header_names: Vec<String>,
    query_names: Vec<String>,
}

/// Which top-level variables an expression reads.
#[derive(Default, Clone, Copy)]
pub struct Vars {
    http: bool,
    net: bool,
    route: bool,
    service: bool,
    consumer: bool,
    kong: bool,
}

impl Default for Compiler {
    fn default() -> Self {
        Self::new()
    }
}

impl Compiler {
    /// A compiler with the standard library and `default()`.
    pub fn new() -> Compiler {
        let deferred: Arc<Mutex<Vec<IdedExpr>>> = Arc::default();
        let mut env = Env::stdlib();
        let table = deferred.clone();
        let macro_ = Macro::global("default", 2, move |helper, _target, args| {
            let (Some(fallback), Some(expr)) = (args.pop(), args.pop()) else {
                return Ok(None);
            };
            let index = {
                let mut table = table.lock().unwrap_or_else(|e| e.into_inner());
                table.push(expr);
                table.len() as i64 - 1
            };
            let index = helper.next_expr(Expr::Literal(LiteralValue::Int(index.into())));
            Ok(Some(helper.next_expr(Expr::Call(CallExpr {
                func_name: DEFAULT_FN.to_string(),
                target: None,
                args: vec![index, fallback],
            }))))
        });
        // Adding a macro to a fresh stdlib environment cannot clash.
        let _ = env.add_macro(macro_);
        Compiler { env, deferred }
    }

    /// Parses one condition; the error is CEL's message.
    pub fn parse(&self, source: &str) -> Result<Parsed, String> {
        if source.len() > MAX_LEN {
            return Err(format!(
                "condition is {} characters long: at most {MAX_LEN} allowed",
                source.len()
            ));
        }
        if bracket_depth(source) > MAX_DEPTH {
            return Err(format!(
                "condition nests brackets more than {MAX_DEPTH} deep"
            ));
        }
        let program = self
            .env
            .compile(source)
            .map_err(|e| e.to_string().lines().next().unwrap_or("").to_string())?;
        // From the text, not `program.references()`: default() moves its operand out of
        // the program's tree. A word inside a string literal only costs an unused variable.
        let uses = |name: &str| {
            source.match_indices(name).any(|(i, _)| {
                let before = source[..i].chars().next_back();
                let after = source[i + name.len()..].chars().next();
                let word = |c: Option<char>| c.is_some_and(|c| c.is_alphanumeric() || c == '_');
                !word(before) && !word(after)
            })
        };
        let vars = Vars {
            http: uses("http"),
            net: uses("net"),
            route: uses("route"),
            service: uses("service"),
            consumer: uses("consumer"),
            kong: uses("kong"),
        };
        Ok((
            program,
            vars,
            named(source, "headers"),
            named(source, "queries"),
        ))
    }

    /// Finishes compiling: every condition parsed so far shares the result.
    pub fn finish(self) -> Arc<Shared> {
        let deferred =
            std::mem::take(&mut *self.deferred.lock().unwrap_or_else(|e| e.into_inner()));
        Arc::new(Shared {
            env: Arc::new(self.env),
            deferred: Arc::new(deferred),
        })
    }
}

/// A compiled condition waiting for its snapshot's [`Shared`] environment.
pub type Parsed = (Program, Vars, Vec<String>, Vec<String>);

impl Condition {
    /// Binds a parsed condition to its snapshot's environment.
    pub fn new(parsed: Parsed, shared: Arc<Shared>) -> Condition {
        let (program, vars, header_names, query_names) = parsed;
        Condition {
            program,
            shared,
            vars,
            header_names,
            query_names,
        }
    }

    /// Evaluates the condition for the request; an error names what failed.
    pub fn eval(&self, ctx: &PhaseCtx<'_>) -> Result<bool, String> {
        let mut cx = Context::with_env(self.shared.env.clone());
        if !self.shared.deferred.is_empty() {
            let deferred = self.shared.deferred.clone();
            let f = move |ftx: &FunctionContext, index: i64, fallback: Value| -> Value {
                let Some(expr) = usize::try_from(index).ok().and_then(|i| deferred.get(i)) else {
                    return fallback;
                };
                ftx.ptx.resolve(expr).unwrap_or(fallback)
            };
            cx.add_function(DEFAULT_FN, f)
                .map_err(|e| format!("cannot declare default(): {e:?}"))?;
        }
        if self.vars.http {
            cx.add_variable_from_value("http", self.http(ctx));
        }
        if self.vars.net {
            cx.add_variable_from_value("net", net(ctx));
        }
        let cfg = &ctx.snap.config;
        if self.vars.route {
            let v = ctx
                .state
                .route
                .map(|i| &cfg.routes[i])
                .map(|r| entity(&r.id, "name", r.name.as_deref(), None, &r.tags));
            cx.add_variable_from_value("route", v.unwrap_or(Value::Null));
        }
        if self.vars.service {
            let v = ctx
                .state
                .service
                .map(|i| &cfg.services[i])
                .map(|s| entity(&s.id, "name", s.name.as_deref(), None, &s.tags));
            cx.add_variable_from_value("service", v.unwrap_or(Value::Null));
        }
        if self.vars.consumer {
            let v = ctx.state.consumer.map(|i| &cfg.consumers[i]).map(|c| {
                entity(
                    &c.id,
                    "username",
                    c.username.as_deref(),
                    Some(c.custom_id.as_deref()),
                    &c.tags,
                )
            });
            cx.add_variable_from_value("consumer", v.unwrap_or(Value::Null));
        }
        if self.vars.kong {
            let shared = if ctx.state.lua_tables {
                super::lua::runtime::shared_ctx(ctx.state.id)
                    .map_err(|e| format!("kong.ctx.shared: {e}"))?
            } else {
                None
            };
            let shared = shared.map_or_else(
                || Value::Map(HashMap::<String, Value>::new().into()),
                |j| json(&j),
            );
            let mut inner = HashMap::new();
            inner.insert("shared".to_string(), shared);
            let mut kong = HashMap::new();
            kong.insert("ctx".to_string(), Value::from(inner));
            cx.add_variable_from_value("kong", Value::from(kong));
        }
        match self.program.execute(&cx) {
            Ok(Value::Bool(b)) => Ok(b),
            Ok(other) => Err(format!(
                "the condition evaluated to {other:?}, not a boolean"
            )),
            Err(e) => Err(e.to_string()),
        }
    }

    fn http(&self, ctx: &PhaseCtx<'_>) -> Value {
        let req = &*ctx.req;
        let path = req.uri.path();
        let mut headers: HashMap<String, Value> = HashMap::new();
        let mut headers_list: HashMap<String, Vec<Value>> = HashMap::new();
        for (name, value) in req.headers.iter() {
            let key = name.as_str().replace('-', "_");
            let value = Value::from(String::from_utf8_lossy(value.as_bytes()).into_owned());
            headers.entry(key.clone()).or_insert_with(|| value.clone());
            headers_list.entry(key).or_default().push(value);
        }
        let mut queries: HashMap<String, Value> = HashMap::new();
        let mut queries_list: HashMap<String, Vec<Value>> = HashMap::new();
        for (k, v) in form_urlencoded::parse(req.uri.query().unwrap_or("").as_bytes()) {
            let value = Value::from(v.into_owned());
            queries
                .entry(k.to_string())
                .or_insert_with(|| value.clone());
            queries_list.entry(k.into_owned()).or_default().push(value);
        }
        for n in &self.header_names {
            headers.entry(n.clone()).or_insert(Value::Null);
            headers_list.entry(n.clone()).or_default();
        }
        for n in &self.query_names {
            queries.entry(n.clone()).or_insert(Value::Null);
            queries_list.entry(n.clone()).or_default();
        }
        let list = |m: HashMap<String, Vec<Value>>| -> Value {
            Value::from(
                m.into_iter()
                    .map(|(k, v)| (k, Value::from(v)))
                    .collect::<HashMap<String, Value>>(),
            )
        };
        let host = req
            .headers
            .get(http::header::HOST)
            .and_then(|v| v.to_str().ok())
            .or(req.uri.host())
            .unwrap_or("");
        let host = match host.strip_prefix('[') {
            Some(v6) => v6.split(']').next().unwrap_or(""),
            None => host.split(':').next().unwrap_or(""),
        };
        let segments: Vec<Value> = path
            .split('/')
            .filter(|s| !s.is_empty())
            .map(|s| Value::from(s.to_string()))
            .collect();
        let mut m: HashMap<String, Value> = HashMap::new();
        m.insert("method".into(), Value::from(req.method.as_str()));
        m.insert("host".into(), Value::from(host.to_ascii_lowercase()));
        m.insert("path".into(), Value::from(path));
        m.insert("path_segments".into(), Value::from(segments));
        m.insert("headers".into(), Value::from(headers));
        m.insert("headers_list".into(), list(headers_list));
        m.insert("queries".into(), Value::from(queries));
        m.insert("queries_list".into(), list(queries_list));
        Value::from(m)
    }
}

fn net(ctx: &PhaseCtx<'_>) -> Value {
    let addr = |a: Option<std::net::SocketAddr>| {
        let mut m: HashMap<String, Value> = HashMap::new();
        m.insert(
            "ip".into(),
            a.map_or(Value::Null, |a| Value::from(a.ip().to_string())),
        );
        m.insert(
            "port".into(),
            a.map_or(Value::Null, |a| Value::Int(a.port().into())),
        );
        Value::from(m)
    };
    let mut tls: HashMap<String, Value> = HashMap::new();
    tls.insert(
        "sni".into(),
        ctx.state.sni.as_deref().map_or(Value::Null, Value::from),
    );
    let mut m: HashMap<String, Value> = HashMap::new();
    m.insert("protocol".into(), Value::from(ctx.state.scheme));
    m.insert("tls".into(), Value::from(tls));
    m.insert("src".into(), addr(ctx.state.client));
    m.insert("dst".into(), addr(ctx.state.server));
    Value::from(m)
}

fn entity(
    id: &str,
    name_key: &str,
    name: Option<&str>,
    custom_id: Option<Option<&str>>,
    tags: &[String],
) -> Value {
    let mut m: HashMap<String, Value> = HashMap::new();
    m.insert("id".into(), Value::from(id));
    m.insert(name_key.into(), name.map_or(Value::Null, Value::from));
    if let Some(c) = custom_id {
        m.insert("custom_id".into(), c.map_or(Value::Null, Value::from));
    }
    m.insert(
        "tags".into(),
        Value::from(
            tags.iter()
                .map(|t| Value::from(t.as_str()))
                .collect::<Vec<_>>(),
        ),
    );
    Value::from(m)
}

/// JSON (from Lua's kong.ctx.shared) as a CEL value.
fn json(v: &serde_json::Value) -> Value {
    match v {
        serde_json::Value::Null => Value::Null,
        serde_json::Value::Bool(b) => Value::Bool(*b),
        serde_json::Value::Number(n) => match n.as_i64() {
            Some(i) => Value::Int(i),
            None => Value::Float(n.as_f64().unwrap_or(0.0)),
        },
        serde_json::Value::String(s) => Value::from(s.as_str()),
        serde_json::Value::Array(a) => Value::from(a.iter().map(json).collect::<Vec<_>>()),
        serde_json::Value::Object(o) => Value::from(
            o.iter()
                .map(|(k, v)| (k.clone(), json(v)))
                .collect::<HashMap<String, Value>>(),
        ),
    }
}

/// The names written as `http.<what>.<name>`, `http.<what>_list.<name>` or
/// `http.<what>["name"]` in `source` (absent ones must read as null, not fail).
fn named(source: &str, what: &str) -> Vec<String> {
    static PATTERNS: std::sync::LazyLock<[(&str, regex::Regex); 2]> = std::sync::LazyLock::new(
        || {
            ["headers", "queries"].map(|what| {
                let pattern = format!(
                    r#"http\s*\.\s*{what}(?:_list)?\s*(?:\.\s*([A-Za-z_][A-Za-z0-9_]*)|\[\s*["']([^"']+)["']\s*\])"#
                );
                (what, regex::Regex::new(&pattern).expect("a valid pattern"))
            })
        },
    );
    let Some((_, re)) = PATTERNS.iter().find(|(w, _)| *w == what) else {
        return Vec::new();
    };
    let mut out: Vec<String> = re
        .captures_iter(source)
        .filter_map(|c| c.get(1).or(c.get(2)).map(|m| m.as_str().to_string()))
        .collect();
    out.sort();
    out.dedup();
    out
}

#[cfg(test)]
mod tests {
    use super::{bracket_depth, Compiler, MAX_DEPTH};

    /// Regression: 59 nested parentheses overflowed the fuzzer's stack inside CEL's parser.
    #[test]
    fn deep_nesting_is_refused_before_the_parser_runs() {
        let deep = format!("{}true{}", "(".repeat(59), ")".repeat(59));
        let err = Compiler::new().parse(&deep).err().expect("refused");
        assert!(err.contains("more than 32 deep"), "{err}");
        assert!(Compiler::new().parse("(((true)))").is_ok());
    }

    #[test]
    fn brackets_inside_strings_do_not_count() {
        assert_eq!(bracket_depth("f([1, {'a': (2)}])"), 4);
        let quoted = format!(
            "x == \"{}\" && y == '\\'{}'",
            "(".repeat(99),
            "[".repeat(99)
        );
        assert_eq!(bracket_depth(&quoted), 0);
        assert!(bracket_depth(&"(".repeat(MAX_DEPTH + 1)) > MAX_DEPTH);
    }
}
