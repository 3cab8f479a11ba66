//! Route regexes, compiled when a request first needs them and shared between routes and
//! snapshots.
//!
//! A regex path is checked when the config loads (a bad pattern is a located config error),
//! but a snapshot keeps its text: the compiled form is made the first time a request path
//! reaches the regex's literal prefix in the router's trie. A reload neither checks nor
//! duplicates the patterns a live snapshot holds.
//!
//! Most route regexes are a literal followed by a short tail (`^/users/(?<id>\d+)$`; the
//! Kong Ingress Controller writes `^/foo$` for an Exact path), and thousands of routes share
//! the tail. So a pattern is split into its leading literal, compared as text, and the rest,
//! compiled once per distinct tail and run anchored where the literal ends. The search still
//! sees the whole path, so look-behind assertions at the seam (`\b`) and capture offsets are
//! those of the pattern as written. 10,000 routes `^/re{i}/(?<id>\d+)$` hold one compiled
//! regex, which stays in the CPU's caches, instead of 10,000.
//!
//! Kong's router runs Rust's `regex` with Unicode on. Unicode classes are what make a compiled
//! regex big (`\d` alone is hundreds of NFA states; regex-automata's meta engine then adds DFAs,
//! a cache pool and per-worker caches sized by them: about 10 KiB per regex even for small
//! ones). So an ASCII pattern is compiled with Unicode off into a Thompson NFA run by the
//! bounded backtracker (about 1.4 KiB per regex, one scratch cache per thread), used for ASCII
//! paths: nearly every request, as Kong's normalisation leaves non-ASCII percent-encoded. On an
//! ASCII haystack the two forms agree: Unicode `\d`, `\w`, `\s`, `\b`, `.`, negated classes
//! and case folding restricted to ASCII text are their ASCII forms, and offsets are the same.
//! The pattern as written (meta engine, Unicode on) is compiled when a non-ASCII path first
//! reaches it. A pattern that needs Unicode to compile (`\p{..}`, `\x{100}`) or contains
//! non-ASCII has the Unicode form only.

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex, OnceLock, Weak};

use regex_automata::meta::{self, Regex};
use regex_automata::nfa::thompson::{self, backtrack, pikevm};
use regex_automata::util::captures::Captures;
use regex_automata::util::primitives::NonMaxUsize;
use regex_automata::util::syntax;
use regex_automata::{Anchored, Input};
use regex_syntax::ast::{self, Ast};

/// A route regex: its pattern, compiled on first use.
#[derive(Debug)]
pub(crate) struct LazyRegex {
    pattern: Arc<Pattern>,
    compiled: OnceLock<Arc<Compiled>>,
}

/// A checked pattern, split into its leading literal and the rest.
#[derive(Debug)]
struct Pattern {
    text: Box<str>,
    /// What every match starts with (ASCII, escapes resolved); empty when not split.
    literal: Box<str>,
    /// Where the rest starts in `text`; 0 when not split (the whole pattern is compiled).
    rest: usize,
}

impl Pattern {
    fn rest(&self) -> &str {
        &self.text[self.rest..]
    }

    /// The search for `path`: the rest, anchored where the literal ends; None when `path`
    /// does not start with the literal.
    fn input<'h>(&self, path: &'h str) -> Option<Input<'h>> {
        if self.rest == 0 {
            return Some(Input::new(path));
        }
        path.starts_with(&*self.literal).then(|| {
            Input::new(path)
                .range(self.literal.len()..)
                .anchored(Anchored::Yes)
        })
    }
}

/// The compiled forms of one pattern (or of the rest of split patterns).
#[derive(Debug)]
struct Compiled {
    /// Unicode off, for ASCII paths; None when the pattern has no such form.
    ascii: Option<Ascii>,
    /// As written, compiled when a non-ASCII path first needs it.
    unicode: OnceLock<Regex>,
}

/// The ASCII form: one NFA, run by the bounded backtracker, or by the PikeVM for a path
/// longer than the backtracker's visited-set budget.
#[derive(Debug)]
struct Ascii {
    backtracker: backtrack::BoundedBacktracker,
    pikevm: pikevm::PikeVM,
}

thread_local! {
    /// The backtracker's scratch space, reset for each regex: one per thread, not per regex.
    static SCRATCH: RefCell<Option<backtrack::Cache>> = const { RefCell::new(None) };
}

impl Ascii {
    fn build(pattern: &str) -> Option<Ascii> {
        if !pattern.is_ascii() {
            return None;
        }
        let nfa = thompson::Compiler::new()
            .syntax(syntax::Config::new().unicode(false).utf8(false))
            .build(pattern)
            .ok()?;
        Some(Ascii {
            backtracker: backtrack::BoundedBacktracker::new_from_nfa(nfa.clone()).ok()?,
            pikevm: pikevm::PikeVM::new_from_nfa(nfa).ok()?,
        })
    }

    /// Runs the backtracker with this thread's scratch space: false when the path is too long
    /// for its budget (or the scratch space is taken by a re-entrant call), for the PikeVM.
    fn backtrack(&self, run: impl FnOnce(&mut backtrack::Cache) -> bool) -> bool {
        SCRATCH.with(|scratch| {
            let Ok(mut scratch) = scratch.try_borrow_mut() else {
                return false;
            };
            let cache = scratch.get_or_insert_with(|| self.backtracker.create_cache());
            cache.reset(&self.backtracker);
            run(cache)
        })
    }

    fn is_match(&self, input: &Input<'_>) -> bool {
        let mut found = false;
        if !self.backtrack(|cache| {
            self.backtracker
                .try_is_match(cache, input.clone())
                .map(|m| found = m)
                .is_ok()
        }) {
            found = self
                .pikevm
                .is_match(&mut self.pikevm.create_cache(), input.clone());
        }
        found
    }

    fn captures(&self, input: &Input<'_>) -> Captures {
        let mut caps = self.backtracker.create_captures();
        if !self.backtrack(|cache| self.backtracker.try_search(cache, input, &mut caps).is_ok()) {
            let mut cache = self.pikevm.create_cache();
            self.pikevm.search(&mut cache, input, &mut caps);
        }
        caps
    }
}

enum Form<'a> {
    Ascii(&'a Ascii),
    Unicode(&'a Regex),
}

/// What the process knows of patterns and compiled tails: alive while a snapshot holds them.
struct Cache {
    patterns: HashMap<Box<str>, Weak<Pattern>>,
    /// Keyed by the text compiled: a pattern's rest, or the whole pattern when not split.
    compiled: HashMap<Box<str>, Weak<Compiled>>,
    /// Entries after the last sweep of dead ones.
    swept: usize,
}

static CACHE: LazyLock<Mutex<Cache>> = LazyLock::new(|| {
    Mutex::new(Cache {
        patterns: HashMap::new(),
        compiled: HashMap::new(),
        swept: 0,
    })
});

fn cache() -> std::sync::MutexGuard<'static, Cache> {
    CACHE.lock().unwrap_or_else(|e| e.into_inner())
}

/// Whether a live snapshot holds the route regex `regex` (a path without its `~`): it was
/// checked when that snapshot loaded, so a reload that keeps it need not parse it again.
pub fn is_live_route_regex(regex: &str) -> bool {
    let key = format!("^{regex}");
    cache()
        .patterns
        .get(key.as_str())
        .is_some_and(|p| p.strong_count() > 0)
}

impl LazyRegex {
    /// Checks `pattern` (unless a live snapshot holds it) and keeps its text. The error is the
    /// `regex` crate's message.
    pub(crate) fn new(pattern: &str) -> Result<LazyRegex, String> {
        let known = cache().patterns.get(pattern).and_then(Weak::upgrade);
        let pattern = match known {
            Some(p) => p,
            None => {
                let p = Arc::new(check(pattern)?);
                let mut cache = cache();
                cache.patterns.insert(pattern.into(), Arc::downgrade(&p));
                // Forget what no snapshot holds any more (the maps stay proportional to it).
                if cache.patterns.len() > 2 * cache.swept + 1024 {
                    cache.patterns.retain(|_, p| p.strong_count() > 0);
                    cache.compiled.retain(|_, c| c.strong_count() > 0);
                    cache.swept = cache.patterns.len();
                }
                p
            }
        };
        let compiled = OnceLock::new();
        if let Some(re) = cache().compiled.get(pattern.rest()).and_then(Weak::upgrade) {
            let _ = compiled.set(re);
        }
        Ok(LazyRegex { pattern, compiled })
    }

    /// The pattern.
    pub(crate) fn as_str(&self) -> &str {
        &self.pattern.text
    }

    /// Whether the regex matches somewhere in `path`.
    pub(crate) fn is_match(&self, path: &str) -> bool {
        let Some(input) = self.pattern.input(path) else {
            return false;
        };
        match self.forms(path) {
            Form::Ascii(ascii) => ascii.is_match(&input),
            Form::Unicode(re) => re.is_match(input),
        }
    }

    /// The leftmost-first match in `path` with its groups, if any.
    pub(crate) fn captures(&self, path: &str) -> Option<Captures> {
        let input = self.pattern.input(path)?;
        let mut caps = match self.forms(path) {
            Form::Ascii(ascii) => ascii.captures(&input),
            Form::Unicode(re) => {
                let mut caps = re.create_captures();
                re.search_captures(&input, &mut caps);
                caps
            }
        };
        if !caps.is_match() {
            return None;
        }
        if self.pattern.rest > 0 {
            // The whole match starts with the literal, at 0.
            caps.slots_mut()[0] = NonMaxUsize::new(0);
        }
        Some(caps)
    }

    /// The form to run on `path`, compiled now if no snapshot has needed it yet.
    fn forms(&self, path: &str) -> Form<'_> {
        let compiled = self.compiled.get_or_init(|| shared(self.pattern.rest()));
        match &compiled.ascii {
            Some(ascii) if path.is_ascii() => Form::Ascii(ascii),
            _ => Form::Unicode(compiled.unicode.get_or_init(|| {
                build(self.pattern.rest()).unwrap_or_else(|e| {
                    // Only a size limit can fail here (the syntax was checked at load).
                    tracing::error!(pattern = %self.pattern.text, error = %e, "a route regex failed to compile for a non-ASCII path; it matches none");
                    Regex::new_many::<&str>(&[]).expect("a regex that matches nothing")
                })
            })),
        }
    }

    /// Whether it is compiled (for tests and memory accounting).
    #[cfg(test)]
    pub(crate) fn is_compiled(&self) -> bool {
        self.compiled.get().is_some()
    }
}

/// Compiles the pattern as written (the `regex` crate's defaults without the one-pass DFA).
fn build(pattern: &str) -> Result<Regex, Box<meta::BuildError>> {
    meta::Builder::new()
        .configure(meta::Config::new().onepass(false))
        .build(pattern)
        .map_err(Box::new)
}

/// Checks a pattern and splits it. It is checked by compiling the form requests will mostly
/// use (a pattern valid with Unicode off is valid with it on); the compiled form is dropped
/// until a request needs it.
fn check(pattern: &str) -> Result<Pattern, String> {
    let parsed = ast::parse::Parser::new().parse(pattern).ok();
    let ascii_ok = parsed.as_ref().is_some_and(|ast| check_ascii(pattern, ast));
    if !ascii_ok {
        build(pattern).map_err(|e| e.to_string())?;
    }
    let (literal, rest) = parsed.as_ref().map(split).unwrap_or_default();
    Ok(Pattern {
        text: pattern.into(),
        literal: literal.into(),
        rest,
    })
}

/// Whether the pattern compiles with Unicode off, within the `regex` crate's default NFA size
/// limit (as Kong's router refuses bigger ones). Only a counted repetition (`{n}`) or a very
/// long pattern can get near that limit, so the others are translated, not compiled: the
/// compile is most of the cost of loading 10,000 regex routes.
fn check_ascii(pattern: &str, ast: &Ast) -> bool {
    if !pattern.is_ascii() {
        return false;
    }
    if pattern.contains('{') || pattern.len() > 4096 {
        return thompson::Compiler::new()
            .syntax(syntax::Config::new().unicode(false).utf8(false))
            .configure(thompson::Config::new().nfa_size_limit(Some(10 << 20)))
            .build(pattern)
            .is_ok();
    }
    regex_syntax::hir::translate::TranslatorBuilder::new()
        .unicode(false)
        .utf8(false)
        .build()
        .translate(pattern, ast)
        .is_ok()
}

/// The pattern's leading literal and where the rest starts: `^` followed by plain ASCII
/// characters. Anything else (flags, a class, a repeated character, a top-level `|`) ends
/// the literal; a pattern without `^` or without a literal is not split.
fn split(ast: &Ast) -> (String, usize) {
    let Ast::Concat(concat) = ast else {
        return (String::new(), 0);
    };
    let mut literal = String::new();
    let mut rest = 0;
    for item in &concat.asts {
        match item {
            Ast::Assertion(a)
                if literal.is_empty()
                    && matches!(
                        a.kind,
                        ast::AssertionKind::StartLine | ast::AssertionKind::StartText
                    ) =>
            {
                rest = a.span.end.offset;
            }
            Ast::Literal(l) if rest > 0 && l.c.is_ascii() => {
                literal.push(l.c);
                rest = l.span.end.offset;
            }
            _ => break,
        }
    }
    if literal.is_empty() {
        return (String::new(), 0);
    }
    (literal, rest)
}

/// The compiled forms of `text`, shared with every route and snapshot that holds it.
fn shared(text: &str) -> Arc<Compiled> {
    if let Some(re) = cache().compiled.get(text).and_then(Weak::upgrade) {
        return re;
    }
    // Compiled outside the lock: two workers may both compile a regex once; one copy stays.
    let re = Arc::new(Compiled {
        ascii: Ascii::build(text),
        unicode: OnceLock::new(),
    });
    let mut cache = cache();
    let entry = cache.compiled.entry(text.into()).or_default();
    match entry.upgrade() {
        Some(existing) => existing,
        None => {
            *entry = Arc::downgrade(&re);
            re
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pattern_is_live_while_a_snapshot_holds_it() {
        assert!(!is_live_route_regex("/live-test/(?<id>\\d+)$"));
        let held = LazyRegex::new(r"^/live-test/(?<id>\d+)$").unwrap();
        assert!(is_live_route_regex(r"/live-test/(?<id>\d+)$"));
        drop(held);
        assert!(!is_live_route_regex(r"/live-test/(?<id>\d+)$"));
    }

    #[test]
    fn invalid_or_oversized_patterns_are_refused_at_load() {
        assert!(LazyRegex::new(r"^/ok/(?<id>\d+)$").is_ok());
        assert!(LazyRegex::new(r"^/bad/(").is_err());
        assert!(LazyRegex::new(r"^/unicode-class/\pL+$").is_ok());
        assert!(LazyRegex::new(r"^/unknown-class/\pQ$").is_err());
        // Parses, but its NFA is past the size limit: refused now, not at the first request.
        assert!(LazyRegex::new(r"^/huge/(a{1000}){1000}$").is_err());
    }

    #[test]
    fn compiled_on_first_use_and_shared_between_snapshots() {
        let a = LazyRegex::new(r"^/lazy-test/(?<id>\d+)$").unwrap();
        assert!(!a.is_compiled());
        assert!(a.is_match("/lazy-test/42"));
        assert!(a.is_compiled());
        // A later snapshot with the same pattern shares the text and the compiled regex.
        let b = LazyRegex::new(r"^/lazy-test/(?<id>\d+)$").unwrap();
        assert!(b.is_compiled());
        assert!(Arc::ptr_eq(&a.pattern, &b.pattern));
        assert!(Arc::ptr_eq(
            a.compiled.get().unwrap(),
            b.compiled.get().unwrap()
        ));
        assert!(LazyRegex::new("^/lazy-test/(").is_err());
        // A Unicode-only pattern is checked as written.
        assert!(LazyRegex::new(r"^/lazy-test/\p{Nope}").is_err());
    }

    /// The ASCII form answers as the Unicode one would on ASCII paths, captures included;
    /// non-ASCII paths get the Unicode form.
    #[test]
    fn ascii_form_agrees_with_unicode() {
        let patterns = [
            r"^/a/(?<id>\d+)$",
            r"^/w/(\w+)/\W/\s\S$",
            r"^/b/\bx\b",
            r"^/dot/(.+)$",
            r"^/neg/[^a]+$",
            r"(?i)^/kelvin/k+s$",
            r"^/d/\D+$",
            r"^/class/[[:alpha:]]+$",
            r"^/hex/[\x00-\x{7f}]+$",
            r"/mid/(?<x>a|ab)(c|bcd)",
            r"^/p/\p{Greek}+$",
            // Split at a seam that looks behind or repeats: the search sees the whole path.
            r"^/b\b/x",
            r"^/ab\Bc",
            r"^/w\b",
            r"^/x^",
            r"^^/a/(b)",
            r"^\A/a\z",
            r"^\/a\.b/(?<n>[^/]+)$",
            r"^/a/(?i)B",
            r"^/ab+c",
            r"^/a|/b/(c)",
            r"^/(x)",
            r"^/w/",
        ];
        let paths = [
            "/a/123",
            "/a/12a",
            "/w/ab_1/-/ x",
            "/b/x",
            "/b/xy",
            "/dot/any thing",
            "/neg/bbb",
            "/neg/bab",
            "/KELVIN/KkS",
            "/d/abc",
            "/d/a1",
            "/class/abc",
            "/class/ab1",
            "/hex/~~",
            "/x/mid/abcd",
            "/p/a",
            "/a/\u{663}",
            "/neg/\u{e9}",
            "/kelvin/\u{212a}s",
            "/dot/\u{e9}",
            "/w/\u{e9}/-/ x",
            "/d/\u{e9}",
            "/class/\u{e9}",
            "/hex/\u{e9}",
            "/p/\u{3b1}",
            "/b/x",
            "/abc",
            "/abbc",
            "/ac",
            "/w",
            "/wx",
            "/x",
            "/a/b",
            "/a",
            "/a.b/n",
            "/a.b/",
            "/a/b/x",
            "/a/B",
            "/b/c",
            "/x/b/c",
            "/w/\u{e9}",
        ];
        for p in patterns {
            let lazy = LazyRegex::new(p).unwrap();
            let unicode = build(p).unwrap();
            for path in paths {
                let mut want = unicode.create_captures();
                unicode.captures(path, &mut want);
                let got = lazy.captures(path);
                let spans = |c: &Captures| {
                    (0..c.group_len())
                        .map(|i| c.get_group(i))
                        .collect::<Vec<_>>()
                };
                assert_eq!(
                    got.as_ref().map(spans),
                    want.is_match().then(|| spans(&want)),
                    "{p} on {path:?}"
                );
            }
        }
        // Unicode \d on a non-ASCII path: an Arabic-Indic digit is a digit.
        assert!(LazyRegex::new(r"^/u/\d$").unwrap().is_match("/u/\u{663}"));
        let ascii = |p: &str| check_ascii(p, &ast::parse::Parser::new().parse(p).unwrap());
        assert!(!ascii(r"^/p/\p{Greek}$"));
        assert!(!ascii("^/caf\u{e9}$"));
        assert!(ascii(r"^/a/\d$"));
    }

    #[test]
    fn patterns_split_at_their_leading_literal() {
        let cases = [
            (r"^/users/(?<id>\d+)$", "/users/", r"(?<id>\d+)$"),
            (r"^/foo$", "/foo", "$"),
            (r"^/exact", "/exact", ""),
            (r"^\/a\.b/x+", "/a.b/", "x+"),
            (r"^/ab+", "/a", "b+"),
            (r"^^/a", "/a", ""),
            (r"^/a|/b", "", r"^/a|/b"),
            (r"^(?i)/a", "", r"^(?i)/a"),
            (r"^[/]a", "", r"^[/]a"),
            (r"/a", "", "/a"),
            (r"^/caf\u{e9}", "/caf", r"\u{e9}"),
            (r"^/caf\xE9", "/caf", r"\xE9"),
        ];
        for (pattern, literal, rest) in cases {
            let p = check(pattern).unwrap();
            assert_eq!((&*p.literal, p.rest()), (literal, rest), "{pattern}");
        }
    }

    /// Routes that differ only in their literal share one compiled regex.
    #[test]
    fn routes_share_the_compiled_rest() {
        let a = LazyRegex::new(r"^/share-a/(?<id>\d+)/share$").unwrap();
        let b = LazyRegex::new(r"^/share-b/(?<id>\d+)/share$").unwrap();
        let caps = b.captures("/share-b/42/share").expect("a match");
        assert_eq!(caps.get_group(0).map(|s| s.range()), Some(0..17));
        assert_eq!(caps.get_group_by_name("id").map(|s| s.range()), Some(9..11));
        assert!(a.is_match("/share-a/7/share"));
        assert!(!a.is_match("/share-b/7/share"));
        assert!(!a.is_match("/share-a/x/share"));
        assert!(Arc::ptr_eq(
            a.compiled.get().unwrap(),
            b.compiled.get().unwrap()
        ));
    }

    /// A path too long for the backtracker's budget is searched by the PikeVM.
    #[test]
    fn long_paths_fall_back_to_the_pikevm() {
        let re = LazyRegex::new(r"^/long/(?<rest>(a|b)*c)$").unwrap();
        let path = format!("/long/{}c", "ab".repeat(200_000));
        let caps = re.captures(&path).expect("a match");
        assert_eq!(
            caps.get_group_by_name("rest").map(|s| s.len()),
            Some(400_001)
        );
        assert!(!re.is_match(&format!("/long/{}", "ab".repeat(200_000))));
    }
}
