//! Route regexes, compiled when a request first needs them and shared between snapshots.
//!
//! A regex path is checked when the config loads (a bad pattern is a located config error),
//! but a snapshot keeps its text: the compiled form is made the first time a request path
//! reaches the regex's literal prefix in the router's trie. Patterns and compiled regexes are
//! shared by text between snapshots: a reload neither compiles again nor duplicates the regexes
//! it keeps, and a pattern a live snapshot holds is not checked again.
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
use regex_automata::util::syntax;
use regex_automata::Input;

/// A route regex: its pattern, compiled on first use.
#[derive(Debug)]
pub(crate) struct LazyRegex {
    pattern: Arc<str>,
    compiled: OnceLock<Arc<Compiled>>,
}

/// The compiled forms of one pattern.
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

    fn is_match(&self, path: &str) -> bool {
        let mut found = false;
        if !self.backtrack(|cache| {
            self.backtracker
                .try_is_match(cache, path)
                .map(|m| found = m)
                .is_ok()
        }) {
            found = self.pikevm.is_match(&mut self.pikevm.create_cache(), path);
        }
        found
    }

    fn captures(&self, path: &str) -> Captures {
        let mut caps = self.backtracker.create_captures();
        let input = Input::new(path);
        if !self.backtrack(|cache| {
            self.backtracker
                .try_search(cache, &input, &mut caps)
                .is_ok()
        }) {
            let mut cache = self.pikevm.create_cache();
            self.pikevm.search(&mut cache, &input, &mut caps);
        }
        caps
    }
}

enum Form<'a> {
    Ascii(&'a Ascii),
    Unicode(&'a Regex),
}

/// What the process knows of a pattern: alive while a snapshot holds it.
struct Entry {
    pattern: Weak<str>,
    compiled: Weak<Compiled>,
}

struct Cache {
    entries: HashMap<Box<str>, Entry>,
    /// Entries after the last sweep of dead ones.
    swept: usize,
}

static CACHE: LazyLock<Mutex<Cache>> = LazyLock::new(|| {
    Mutex::new(Cache {
        entries: HashMap::new(),
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
        .entries
        .get(key.as_str())
        .is_some_and(|e| e.pattern.strong_count() > 0)
}

impl LazyRegex {
    /// Checks `pattern` (unless a live snapshot holds it) and keeps its text. The error is the
    /// `regex` crate's message.
    pub(crate) fn new(pattern: &str) -> Result<LazyRegex, String> {
        {
            let cache = cache();
            if let Some(e) = cache.entries.get(pattern) {
                if let Some(text) = e.pattern.upgrade() {
                    let compiled = OnceLock::new();
                    if let Some(re) = e.compiled.upgrade() {
                        let _ = compiled.set(re);
                    }
                    return Ok(LazyRegex {
                        pattern: text,
                        compiled,
                    });
                }
            }
        }
        // Checked by compiling the form requests will mostly use (a pattern valid with Unicode
        // off is valid with it on); the compiled form is dropped until a request needs it.
        if !check_ascii(pattern) {
            build(pattern).map_err(|e| e.to_string())?;
        }
        let text: Arc<str> = pattern.into();
        let mut cache = cache();
        cache.entries.insert(
            pattern.into(),
            Entry {
                pattern: Arc::downgrade(&text),
                compiled: Weak::new(),
            },
        );
        // Forget patterns no snapshot holds any more (the map stays proportional to them).
        if cache.entries.len() > 2 * cache.swept + 1024 {
            cache.entries.retain(|_, e| e.pattern.strong_count() > 0);
            cache.swept = cache.entries.len();
        }
        Ok(LazyRegex {
            pattern: text,
            compiled: OnceLock::new(),
        })
    }

    /// The pattern.
    pub(crate) fn as_str(&self) -> &str {
        &self.pattern
    }

    /// Whether the regex matches somewhere in `path`.
    pub(crate) fn is_match(&self, path: &str) -> bool {
        match self.forms(path) {
            Form::Ascii(ascii) => ascii.is_match(path),
            Form::Unicode(re) => re.is_match(path),
        }
    }

    /// The leftmost-first match in `path` with its groups, if any.
    pub(crate) fn captures(&self, path: &str) -> Option<Captures> {
        let caps = match self.forms(path) {
            Form::Ascii(ascii) => ascii.captures(path),
            Form::Unicode(re) => {
                let mut caps = re.create_captures();
                re.captures(path, &mut caps);
                caps
            }
        };
        caps.is_match().then_some(caps)
    }

    /// The form to run on `path`, compiled now if no snapshot has needed it yet.
    fn forms(&self, path: &str) -> Form<'_> {
        let compiled = self.compiled.get_or_init(|| shared(&self.pattern));
        match &compiled.ascii {
            Some(ascii) if path.is_ascii() => Form::Ascii(ascii),
            _ => Form::Unicode(compiled.unicode.get_or_init(|| {
                build(&self.pattern).unwrap_or_else(|e| {
                    // Only a size limit can fail here (the syntax was checked at load).
                    tracing::error!(pattern = %self.pattern, error = %e, "a route regex failed to compile for a non-ASCII path; it matches none");
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

/// Whether the pattern compiles with Unicode off, within the `regex` crate's default NFA size
/// limit (as Kong's router refuses bigger ones). Only a counted repetition (`{n}`) or a very
/// long pattern can get near that limit, so the others are parsed, not compiled: the compile
/// is most of the cost of loading 10,000 regex routes.
fn check_ascii(pattern: &str) -> bool {
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
    regex_syntax::ParserBuilder::new()
        .unicode(false)
        .utf8(false)
        .build()
        .parse(pattern)
        .is_ok()
}

/// The compiled forms of a checked pattern, shared with every snapshot that holds it.
fn shared(pattern: &Arc<str>) -> Arc<Compiled> {
    if let Some(re) = cache()
        .entries
        .get(&**pattern)
        .and_then(|e| e.compiled.upgrade())
    {
        return re;
    }
    // Compiled outside the lock: two workers may both compile a regex once; one copy stays.
    let re = Arc::new(Compiled {
        ascii: Ascii::build(pattern),
        unicode: OnceLock::new(),
    });
    let mut cache = cache();
    let entry = cache.entries.entry((**pattern).into()).or_insert(Entry {
        pattern: Arc::downgrade(pattern),
        compiled: Weak::new(),
    });
    match entry.compiled.upgrade() {
        Some(existing) => existing,
        None => {
            entry.compiled = Arc::downgrade(&re);
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
        assert!(!check_ascii(r"^/p/\p{Greek}$"));
        assert!(!check_ascii("^/caf\u{e9}$"));
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
