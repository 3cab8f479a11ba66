//! PCRE pattern → Rust `regex` syntax, plus `ngx.re` option parsing and the per-VM cache.
//!
//! What maps: PCRE escapes (`\d \w \s \b` stay ASCII like PCRE without UCP, `\h \v \R \N \e \Q..\E`,
//! octal, `\xH`, `\cX`), `(?<n>..)`/`(?P<n>..)`/`(?'n'..)`, `(?#..)` comments, `x` mode (done here),
//! literal `{` that is not a quantifier, `[\d-z]`-style classes. Approximations: atomic groups and
//! possessive quantifiers become plain groups/greedy ones, `\Z` is `\z`. Errors: look-around,
//! backreferences, recursion, conditionals, `\G`, `\K`, verbs (the `regex` crate has none of them).
//!
//! Modes: without the `u`/`U` option a pattern runs bytewise, like PCRE without UTF (`.` is one
//! byte, `\xE9` the byte 0xE9); with it, on UTF-8 characters. A pattern that cannot run bytewise
//! (a non-ASCII character inside a class, `\p{..}`) falls back to UTF-8 mode. Other deviations:
//! `$` without `m` matches only at the very end (PCRE also before a final newline), the DFA
//! option `d` is ignored (leftmost-first, not longest, match), a start offset past the subject's
//! end is "no match" rather than a PCRE error.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use mlua::Lua;
use regex::bytes::{Regex, RegexBuilder};

use super::pcre_translate::Tr;

/// Parsed `ngx.re` options string.
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash, Debug)]
pub struct Opts {
    pub caseless: bool,
    pub multiline: bool,
    pub dotall: bool,
    pub extended: bool,
    pub anchored: bool,
    pub utf8: bool,
    pub dupnames: bool,
}

/// Parses `opts` like lua-resty-core's parse_regex_opts (`d`, `j`, `o`, `J` accepted and ignored).
pub fn parse_opts(opts: &[u8]) -> Result<Opts, String> {
    let mut o = Opts::default();
    for &c in opts {
        match c {
            b'i' => o.caseless = true,
            b'm' => o.multiline = true,
            b's' => o.dotall = true,
            b'x' => o.extended = true,
            b'a' => o.anchored = true,
            b'u' | b'U' => o.utf8 = true,
            b'D' => o.dupnames = true,
            b'o' | b'j' | b'd' | b'J' => {}
            other => {
                return Err(format!(
                    "unknown flag \"{}\" (flags \"{}\")",
                    other as char,
                    String::from_utf8_lossy(opts)
                ))
            }
        }
    }
    Ok(o)
}

/// A compiled `ngx.re` pattern.
pub struct Compiled {
    pub re: Regex,
    /// Number of capture groups (not counting group 0).
    pub ncaps: usize,
    /// Named groups: name → group numbers (several only with the `D` option).
    pub names: Vec<(String, Vec<usize>)>,
    pub anchored: bool,
    pub dupnames: bool,
}

/// Compiles `pattern` with `opts`; the error is what ngx.re returns as `err`.
pub fn compile(pattern: &[u8], opts: Opts) -> Result<Compiled, String> {
    let mut tr = Tr {
        p: pattern,
        i: 0,
        out: String::new(),
        ncaps: 0,
        names: Vec::new(),
        x: opts.extended,
        xstack: Vec::new(),
        utf8: opts.utf8,
        dupnames: opts.dupnames,
    };
    let shown = String::from_utf8_lossy(pattern);
    let fail = |msg: &str| format!("pcre2_compile() failed: {msg} in \"{shown}\"");
    tr.run().map_err(|e| fail(&e))?;
    let build = |unicode: bool| {
        RegexBuilder::new(&tr.out)
            .case_insensitive(opts.caseless)
            .multi_line(opts.multiline)
            .dot_matches_new_line(opts.dotall)
            .unicode(unicode)
            .octal(false)
            .build()
    };
    let re = match build(opts.utf8) {
        // Non-ASCII classes or \p{..} need Unicode mode; PCRE would have matched them bytewise.
        Err(_) if !opts.utf8 => build(true),
        other => other,
    }
    .map_err(|e| {
        let text = e.to_string();
        let line = text
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .unwrap_or(&text);
        fail(line.trim().trim_start_matches("error: "))
    })?;
    Ok(Compiled {
        ncaps: re.captures_len() - 1,
        re,
        names: tr.names,
        anchored: opts.anchored,
        dupnames: opts.dupnames,
    })
}

const CACHE_MAX: usize = 1024;

type CacheKey = (Vec<u8>, Opts);

/// Per-VM cache of compiled patterns (Lua app data), first-in first-out past 1024 entries.
/// Longest pattern the per-VM cache keeps.
const MAX_CACHED_PATTERN: usize = 4096;

#[derive(Default)]
struct Cache {
    map: HashMap<CacheKey, Arc<Compiled>>,
    order: VecDeque<CacheKey>,
}

/// The compiled form of `pattern`/`opts`, from this VM's cache when possible.
pub fn cached(lua: &Lua, pattern: &[u8], opts: Opts) -> Result<Arc<Compiled>, String> {
    let key = (pattern.to_vec(), opts);
    if let Some(cache) = lua.app_data_ref::<Cache>() {
        if let Some(c) = cache.map.get(&key) {
            return Ok(c.clone());
        }
    }
    let compiled = Arc::new(compile(pattern, opts)?);
    // Long patterns are compiled each time rather than kept: the cache must not hold
    // plugin-sized amounts of memory outside the VM.
    if pattern.len() > MAX_CACHED_PATTERN {
        return Ok(compiled);
    }
    if lua.app_data_ref::<Cache>().is_none() {
        lua.set_app_data(Cache::default());
    }
    if let Some(mut cache) = lua.app_data_mut::<Cache>() {
        if cache.map.len() >= CACHE_MAX {
            if let Some(old) = cache.order.pop_front() {
                cache.map.remove(&old);
            }
        }
        cache.order.push_back(key.clone());
        cache.map.insert(key, compiled.clone());
    }
    Ok(compiled)
}
