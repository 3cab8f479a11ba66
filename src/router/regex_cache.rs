//! Route regexes, compiled when a request first needs them and shared between snapshots.
//!
//! A regex path is checked when the config loads (a bad pattern is a located config error),
//! but a snapshot keeps its text: the compiled form (tens of KiB with Unicode classes, more
//! once its caches warm up on each worker) is made the first time a request path reaches the
//! regex's literal prefix in the router's trie. Patterns and compiled regexes are shared by
//! text between snapshots: a reload neither compiles again nor duplicates the regexes it keeps,
//! and a pattern a live snapshot holds is not compiled again to be checked.
//!
//! The matcher is regex-automata's meta engine, the one the `regex` crate wraps, with the same
//! syntax (Unicode on, as Kong's router); only the one-pass DFA is off. With Unicode classes it
//! made up more than half of a compiled route regex (65 KiB → 29 KiB per used regex, measured on
//! 10,000 `^/re{i}/(?<id>\d+)$`); captures are then found by the bounded backtracker, once per
//! routed request.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex, OnceLock, Weak};

use regex_automata::meta::{self, Regex};

/// A route regex: its pattern, compiled on first use.
#[derive(Debug)]
pub(crate) struct LazyRegex {
    pattern: Arc<str>,
    compiled: OnceLock<Arc<Regex>>,
}

/// What the process knows of a pattern: alive while a snapshot holds it.
struct Entry {
    pattern: Weak<str>,
    compiled: Weak<Regex>,
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

impl LazyRegex {
    /// Checks `pattern` (compiling it unless a live snapshot holds it) and keeps its text.
    pub(crate) fn new(pattern: &str) -> Result<LazyRegex, Box<meta::BuildError>> {
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
        // Checked by compiling; the compiled form is dropped until a request needs it.
        build(pattern)?;
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

    /// The compiled regex (compiled now if no snapshot has needed it yet).
    pub(crate) fn get(&self) -> &Regex {
        self.compiled.get_or_init(|| shared(&self.pattern))
    }

    /// Whether it is compiled (for tests and memory accounting).
    #[cfg(test)]
    pub(crate) fn is_compiled(&self) -> bool {
        self.compiled.get().is_some()
    }
}

/// Compiles a route regex (the `regex` crate's defaults without the one-pass DFA).
fn build(pattern: &str) -> Result<Regex, Box<meta::BuildError>> {
    meta::Builder::new()
        .configure(meta::Config::new().onepass(false))
        .build(pattern)
        .map_err(Box::new)
}

/// The compiled regex of a checked pattern, shared with every snapshot that holds it.
fn shared(pattern: &Arc<str>) -> Arc<Regex> {
    if let Some(re) = cache()
        .entries
        .get(&**pattern)
        .and_then(|e| e.compiled.upgrade())
    {
        return re;
    }
    // Compiled outside the lock: two workers may both compile a regex once; one copy stays.
    let re = Arc::new(build(pattern).unwrap_or_else(|e| {
        // The pattern compiled when it was checked; compiling is deterministic.
        tracing::error!(pattern = %pattern, error = %e, "a checked route regex failed to compile; it matches nothing");
        Regex::new_many::<&str>(&[]).expect("a regex that matches nothing")
    }));
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
    fn compiled_on_first_use_and_shared_between_snapshots() {
        let a = LazyRegex::new(r"^/lazy-test/(?<id>\d+)$").unwrap();
        assert!(!a.is_compiled());
        assert!(a.get().is_match("/lazy-test/42"));
        assert!(a.is_compiled());
        // A later snapshot with the same pattern shares the text and the compiled regex.
        let b = LazyRegex::new(r"^/lazy-test/(?<id>\d+)$").unwrap();
        assert!(b.is_compiled());
        assert!(Arc::ptr_eq(&a.pattern, &b.pattern));
        assert!(std::ptr::eq(a.get(), b.get()));
        assert!(LazyRegex::new("^/lazy-test/(").is_err());
    }
}
