//! request-transformer's value templates: `$(headers.x-foo)`, `$(query_params["q"])`,
//! `$(uri_captures[1])`, alternatives with `or` and quoted literals
//! (`$(headers.x or "none")`, `$('$(kept)')`).
//!
//! Kong renders these with Penlight templates in a Lua sandbox; this is the subset its docs
//! describe, checked when the config is loaded. A lookup that finds nothing renders as the
//! empty string (as Penlight does with nil). Unlike Lua, `headers.x-foo` names the header
//! `x-foo`; header names are matched case-insensitively with `_` standing for `-`.

use crate::router::UriCaptures;

/// Where a lookup reads from.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Source {
    Headers,
    Query,
    Captures,
}

/// One alternative of an expression.
#[derive(Debug, Clone, PartialEq)]
enum Term {
    Literal(String),
    Lookup(Source, String),
}

#[derive(Debug, Clone, PartialEq)]
enum Part {
    Text(String),
    /// Alternatives joined by `or`: the first that exists.
    Expr(Vec<Term>),
}

/// A parsed template value.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Template(Vec<Part>);

/// What templates can read: the request as it was when the plugin started.
pub(super) struct Env {
    /// Request headers, names lower-case.
    pub headers: Vec<(String, String)>,
    /// Decoded query arguments.
    pub query: Vec<(String, String)>,
    /// The route's regex captures.
    pub captures: Option<UriCaptures>,
}

impl Env {
    fn lookup(&self, source: Source, key: &str) -> Option<String> {
        let joined = |values: Vec<&str>, sep: &str| (!values.is_empty()).then(|| values.join(sep));
        match source {
            Source::Headers => {
                let key = key.to_ascii_lowercase();
                let dashed = key.replace('_', "-");
                let values: Vec<&str> = self
                    .headers
                    .iter()
                    .filter(|(k, _)| *k == key || *k == dashed)
                    .map(|(_, v)| v.as_str())
                    .collect();
                joined(values, ", ")
            }
            Source::Query => {
                let values: Vec<&str> = self
                    .query
                    .iter()
                    .filter(|(k, _)| k == key)
                    .map(|(_, v)| v.as_str())
                    .collect();
                joined(values, ",")
            }
            Source::Captures => self
                .captures
                .as_ref()
                .and_then(|c| c.get(key))
                .map(str::to_string),
        }
    }
}

impl Template {
    /// Parses `text`; `Ok(None)` when it holds no `$(...)` (a plain value).
    pub fn parse(text: &str) -> Result<Option<Template>, String> {
        let mut parts = Vec::new();
        let mut rest = text;
        while let Some(at) = rest.find("$(") {
            if at > 0 {
                parts.push(Part::Text(rest[..at].to_string()));
            }
            let inner_start = at + 2;
            let end = closing_paren(&rest[inner_start..])
                .ok_or_else(|| format!("unbalanced parenthesis in template {text:?}"))?;
            let inner = &rest[inner_start..inner_start + end];
            parts.push(Part::Expr(parse_expr(inner).map_err(|e| {
                format!(
                    "unsupported template expression `{inner}` ({e}); supported: \
                     headers.<name>, query_params.<name>, uri_captures.<name or number>, \
                     the [\"...\"] forms, quoted literals and `or`"
                )
            })?));
            rest = &rest[inner_start + end + 1..];
        }
        if parts.is_empty() {
            return Ok(None);
        }
        if !rest.is_empty() {
            parts.push(Part::Text(rest.to_string()));
        }
        Ok(Some(Template(parts)))
    }

    /// Renders the template for a request.
    pub fn render(&self, env: &Env) -> String {
        let mut out = String::new();
        for part in &self.0 {
            match part {
                Part::Text(t) => out.push_str(t),
                Part::Expr(terms) => {
                    let value = terms.iter().find_map(|t| match t {
                        Term::Literal(s) => Some(s.clone()),
                        Term::Lookup(src, key) => env.lookup(*src, key),
                    });
                    out.push_str(&value.unwrap_or_default());
                }
            }
        }
        out
    }
}

/// Index of the `)` closing an expression that starts right after `$(`, skipping quoted
/// strings and nested parentheses.
fn closing_paren(s: &str) -> Option<usize> {
    let mut depth = 0usize;
    let mut quote: Option<char> = None;
    let mut escaped = false;
    for (i, c) in s.char_indices() {
        if let Some(q) = quote {
            match c {
                _ if escaped => escaped = false,
                '\\' => escaped = true,
                _ if c == q => quote = None,
                _ => {}
            }
            continue;
        }
        match c {
            '\'' | '"' => quote = Some(c),
            '(' => depth += 1,
            ')' if depth == 0 => return Some(i),
            ')' => depth -= 1,
            _ => {}
        }
    }
    None
}

/// `term (or term)*`
fn parse_expr(s: &str) -> Result<Vec<Term>, String> {
    let mut terms = Vec::new();
    let mut rest = s.trim();
    loop {
        let (term, after) = parse_term(rest)?;
        terms.push(term);
        rest = after.trim_start();
        if rest.is_empty() {
            return Ok(terms);
        }
        rest = rest
            .strip_prefix("or")
            .filter(|r| r.starts_with(char::is_whitespace))
            .ok_or_else(|| format!("unexpected `{rest}`"))?
            .trim_start();
    }
}

/// A quoted literal or `source.key` / `source[key]`; returns the term and what follows.
fn parse_term(s: &str) -> Result<(Term, &str), String> {
    if s.starts_with(['\'', '"']) {
        let (lit, rest) = parse_string(s)?;
        return Ok((Term::Literal(lit), rest));
    }
    let ident_end = s
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .unwrap_or(s.len());
    let source = match &s[..ident_end] {
        "headers" => Source::Headers,
        "query_params" => Source::Query,
        "uri_captures" => Source::Captures,
        "" => return Err("expected a lookup or a quoted string".into()),
        other => return Err(format!("unknown table `{other}`")),
    };
    let rest = &s[ident_end..];
    if let Some(after_dot) = rest.strip_prefix('.') {
        let end = after_dot
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '-'))
            .unwrap_or(after_dot.len());
        if end == 0 {
            return Err("expected a name after `.`".into());
        }
        return Ok((
            Term::Lookup(source, after_dot[..end].to_string()),
            &after_dot[end..],
        ));
    }
    if let Some(inner) = rest.strip_prefix('[') {
        let inner = inner.trim_start();
        let (key, after) = if inner.starts_with(['\'', '"']) {
            parse_string(inner)?
        } else {
            let end = inner
                .find(|c: char| !c.is_ascii_digit())
                .unwrap_or(inner.len());
            if end == 0 {
                return Err("expected a quoted name or a number in `[...]`".into());
            }
            (inner[..end].to_string(), &inner[end..])
        };
        let after = after.trim_start().strip_prefix(']').ok_or("expected `]`")?;
        return Ok((Term::Lookup(source, key), after));
    }
    Err("expected `.name` or `[key]` after the table name".into())
}

/// A Lua short string (`'...'` or `"..."`, backslash escapes kept literal but for quotes and
/// backslashes); returns its value and what follows.
fn parse_string(s: &str) -> Result<(String, &str), String> {
    let quote = s.chars().next().ok_or("expected a string")?;
    let mut out = String::new();
    let mut escaped = false;
    for (i, c) in s.char_indices().skip(1) {
        if escaped {
            if c != quote && c != '\\' {
                out.push('\\');
            }
            out.push(c);
            escaped = false;
        } else if c == '\\' {
            escaped = true;
        } else if c == quote {
            return Ok((out, &s[i + 1..]));
        } else {
            out.push(c);
        }
    }
    Err("unterminated string".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env() -> Env {
        Env {
            headers: vec![
                ("x-foo".into(), "bar".into()),
                ("x-multi".into(), "a".into()),
                ("x-multi".into(), "b".into()),
            ],
            query: vec![("q".into(), "1".into())],
            captures: None,
        }
    }

    fn render(t: &str) -> String {
        Template::parse(t).unwrap().unwrap().render(&env())
    }

    #[test]
    fn lookups_literals_and_alternatives() {
        assert_eq!(Template::parse("plain:value").unwrap(), None);
        assert_eq!(render("v=$(headers.x-foo)!"), "v=bar!");
        assert_eq!(render("$(headers[\"X-Foo\"])"), "bar");
        assert_eq!(render("$(headers.x_foo)"), "bar");
        assert_eq!(render("$(headers.x-multi)"), "a, b");
        assert_eq!(render("$(query_params['q'])/$(query_params.z)"), "1/");
        assert_eq!(render("$(headers.none or query_params.q)"), "1");
        assert_eq!(render("$(headers.none or 'dflt')"), "dflt");
        assert_eq!(render("$('$(kept)')"), "$(kept)");
        assert_eq!(render("$(uri_captures[1])"), "");
    }

    #[test]
    fn unsupported_expressions_are_rejected() {
        for bad in [
            "$(os.exit())",
            "$(shared.x)",
            "$(headers)",
            "$(headers.x .. 'y')",
            "$(headers.x",
            "$(type(headers.x))",
        ] {
            assert!(Template::parse(bad).is_err(), "{bad}");
        }
    }
}
