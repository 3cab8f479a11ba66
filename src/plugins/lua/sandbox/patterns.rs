//! Lua 5.1 patterns, as LuaJIT 2.1 matches them, for `string.find/match/gmatch/gsub`.
//!
//! LuaJIT's own matcher backtracks inside one C call, where no instruction hook fires:
//! `string.find(string.rep('a', 3000), '.-.-.-.-b')` runs for hours. This one is the same
//! algorithm (same classes, captures, `%b`, `%f`, back-references, the 200-level "pattern too
//! complex" bound and the same error messages) with the CPU budget checked as it goes.

use super::budget;

/// Most captures a pattern may have (`LUA_MAXCAPTURES`).
pub const MAX_CAPTURES: usize = 32;
/// Deepest matcher recursion (`LJ_MAX_XLEVEL`).
const MAX_DEPTH: usize = 200;
/// Matching steps between two budget checks.
const STEPS_PER_CHECK: u32 = 1 << 14;

/// Why a match could not be completed.
#[derive(Debug, Clone)]
pub enum PatError {
    /// A malformed pattern or capture use (Lua's message).
    Malformed(&'static str),
    /// The call's CPU budget ran out while matching.
    Budget(budget::Exceeded),
}

impl From<budget::Exceeded> for PatError {
    fn from(e: budget::Exceeded) -> Self {
        PatError::Budget(e)
    }
}

type Res<T> = Result<T, PatError>;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Len {
    Unfinished,
    Position,
    Bytes(usize),
}

/// What one capture holds after a match.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Capture {
    /// A substring of the subject (byte range).
    Span(usize, usize),
    /// A position capture `()` (1-based).
    Position(usize),
}

/// Matching state for one subject and one pattern.
pub struct Matcher<'a> {
    src: &'a [u8],
    pat: &'a [u8],
    level: usize,
    caps: [(usize, Len); MAX_CAPTURES],
    depth: usize,
    steps: u32,
}

impl<'a> Matcher<'a> {
    /// A matcher of `pat` (cut at its first NUL, as the C matcher reads it) over `src`.
    pub fn new(src: &'a [u8], pat: &'a [u8]) -> Self {
        let end = pat.iter().position(|&b| b == 0).unwrap_or(pat.len());
        Matcher {
            src,
            pat: &pat[..end],
            level: 0,
            caps: [(0, Len::Unfinished); MAX_CAPTURES],
            depth: 0,
            steps: 0,
        }
    }

    /// Tries to match the pattern starting at pattern offset `p` against `src[s..]`; the end
    /// of the match on success. Captures are reset first.
    pub fn match_at(&mut self, s: usize, p: usize) -> Res<Option<usize>> {
        self.level = 0;
        self.depth = 0;
        self.do_match(s, p)
    }

    /// Capture `i` of a match of `src[s..e]`: capture 0 is the whole match when the pattern
    /// has no captures.
    pub fn capture(&self, i: usize, s: usize, e: usize) -> Res<Capture> {
        if i >= self.level {
            return if i == 0 {
                Ok(Capture::Span(s, e))
            } else {
                Err(PatError::Malformed("invalid capture index"))
            };
        }
        let (init, len) = self.caps[i];
        match len {
            Len::Unfinished => Err(PatError::Malformed("unfinished capture")),
            Len::Position => Ok(Capture::Position(init + 1)),
            Len::Bytes(l) => Ok(Capture::Span(init, init + l)),
        }
    }

    /// The captures of a match of `src[s..e]` (the whole match when there are none).
    pub fn captures(&self, whole: Option<(usize, usize)>) -> Res<Vec<Capture>> {
        let n = if self.level == 0 && whole.is_some() {
            1
        } else {
            self.level
        };
        let (s, e) = whole.unwrap_or((0, 0));
        (0..n).map(|i| self.capture(i, s, e)).collect()
    }

    /// Pattern byte at `p`; 0 past the end (the C matcher's terminator).
    fn pc(&self, p: usize) -> u8 {
        self.pat.get(p).copied().unwrap_or(0)
    }

    /// Subject byte at `s`; 0 at the end (Lua strings are NUL-terminated).
    fn sc(&self, s: usize) -> u8 {
        self.src.get(s).copied().unwrap_or(0)
    }

    fn tick(&mut self) -> Res<()> {
        self.steps = self.steps.wrapping_add(1);
        if self.steps % STEPS_PER_CHECK == 0 {
            budget::check()?;
        }
        Ok(())
    }

    fn class_end(&self, mut p: usize) -> Res<usize> {
        let c = self.pc(p);
        p += 1;
        match c {
            b'%' => {
                if self.pc(p) == 0 {
                    return Err(PatError::Malformed("malformed pattern (ends with '%')"));
                }
                Ok(p + 1)
            }
            b'[' => {
                if self.pc(p) == b'^' {
                    p += 1;
                }
                loop {
                    if self.pc(p) == 0 {
                        return Err(PatError::Malformed("malformed pattern (missing ']')"));
                    }
                    let c = self.pc(p);
                    p += 1;
                    if c == b'%' && self.pc(p) != 0 {
                        p += 1;
                    }
                    if self.pc(p) == b']' {
                        break;
                    }
                }
                Ok(p + 1)
            }
            _ => Ok(p),
        }
    }

    /// Whether `c` is in the bracket class `pat[p..=ec]` (`p` at `[`, `ec` at `]`).
    fn bracket(&self, c: u8, mut p: usize, ec: usize) -> bool {
        let mut sig = true;
        if self.pc(p + 1) == b'^' {
            sig = false;
            p += 1;
        }
        loop {
            p += 1;
            if p >= ec {
                break;
            }
            let pc = self.pc(p);
            if pc == b'%' {
                p += 1;
                if class(c, self.pc(p)) {
                    return sig;
                }
            } else if self.pc(p + 1) == b'-' && p + 2 < ec {
                p += 2;
                if self.pc(p - 2) <= c && c <= self.pc(p) {
                    return sig;
                }
            } else if pc == c {
                return sig;
            }
        }
        !sig
    }

    fn single(&self, c: u8, p: usize, ep: usize) -> bool {
        match self.pc(p) {
            b'.' => true,
            b'%' => class(c, self.pc(p + 1)),
            b'[' => self.bracket(c, p, ep - 1),
            pc => pc == c,
        }
    }

    fn do_match(&mut self, mut s: usize, mut p: usize) -> Res<Option<usize>> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(PatError::Malformed("pattern too complex"));
        }
        self.tick()?;
        let result = loop {
            match self.pc(p) {
                b'(' => {
                    break if self.pc(p + 1) == b')' {
                        self.start_capture(s, p + 2, Len::Position)
                    } else {
                        self.start_capture(s, p + 1, Len::Unfinished)
                    }
                }
                b')' => break self.end_capture(s, p + 1),
                b'%' if self.pc(p + 1) == b'b' => match self.balance(s, p + 2)? {
                    None => break Ok(None),
                    Some(next) => {
                        s = next;
                        p += 4;
                    }
                },
                b'%' if self.pc(p + 1) == b'f' => {
                    p += 2;
                    if self.pc(p) != b'[' {
                        return Err(PatError::Malformed("missing '[' after '%f' in pattern"));
                    }
                    let ep = self.class_end(p)?;
                    let previous = if s == 0 { 0 } else { self.sc(s - 1) };
                    if self.bracket(previous, p, ep - 1) || !self.bracket(self.sc(s), p, ep - 1) {
                        break Ok(None);
                    }
                    p = ep;
                }
                b'%' if self.pc(p + 1).is_ascii_digit() => {
                    match self.back_reference(s, self.pc(p + 1))? {
                        None => break Ok(None),
                        Some(next) => {
                            s = next;
                            p += 2;
                        }
                    }
                }
                0 => break Ok(Some(s)),
                b'$' if self.pc(p + 1) == 0 => {
                    break Ok((s == self.src.len()).then_some(s));
                }
                _ => {
                    let ep = self.class_end(p)?;
                    let m = s < self.src.len() && self.single(self.src[s], p, ep);
                    match self.pc(ep) {
                        b'?' => {
                            if m {
                                if let Some(end) = self.do_match(s + 1, ep + 1)? {
                                    break Ok(Some(end));
                                }
                            }
                            p = ep + 1;
                        }
                        b'*' => break self.max_expand(s, p, ep),
                        b'+' => {
                            break if m {
                                self.max_expand(s + 1, p, ep)
                            } else {
                                Ok(None)
                            }
                        }
                        b'-' => break self.min_expand(s, p, ep),
                        _ => {
                            if !m {
                                break Ok(None);
                            }
                            s += 1;
                            p = ep;
                        }
                    }
                }
            }
        };
        self.depth -= 1;
        result
    }

    fn max_expand(&mut self, s: usize, p: usize, ep: usize) -> Res<Option<usize>> {
        let mut i = 0;
        while s + i < self.src.len() && self.single(self.src[s + i], p, ep) {
            i += 1;
            self.tick()?;
        }
        loop {
            if let Some(end) = self.do_match(s + i, ep + 1)? {
                return Ok(Some(end));
            }
            if i == 0 {
                return Ok(None);
            }
            i -= 1;
        }
    }

    fn min_expand(&mut self, mut s: usize, p: usize, ep: usize) -> Res<Option<usize>> {
        loop {
            if let Some(end) = self.do_match(s, ep + 1)? {
                return Ok(Some(end));
            }
            if s < self.src.len() && self.single(self.src[s], p, ep) {
                s += 1;
            } else {
                return Ok(None);
            }
        }
    }

    fn start_capture(&mut self, s: usize, p: usize, what: Len) -> Res<Option<usize>> {
        if self.level >= MAX_CAPTURES {
            return Err(PatError::Malformed("too many captures"));
        }
        self.caps[self.level] = (s, what);
        self.level += 1;
        let r = self.do_match(s, p)?;
        if r.is_none() {
            self.level -= 1;
        }
        Ok(r)
    }

    fn end_capture(&mut self, s: usize, p: usize) -> Res<Option<usize>> {
        let Some(l) = (0..self.level)
            .rev()
            .find(|&l| self.caps[l].1 == Len::Unfinished)
        else {
            return Err(PatError::Malformed("invalid pattern capture"));
        };
        self.caps[l].1 = Len::Bytes(s - self.caps[l].0);
        let r = self.do_match(s, p)?;
        if r.is_none() {
            self.caps[l].1 = Len::Unfinished;
        }
        Ok(r)
    }

    fn back_reference(&mut self, s: usize, digit: u8) -> Res<Option<usize>> {
        let l = digit.wrapping_sub(b'1') as usize;
        if l >= self.level || self.caps[l].1 == Len::Unfinished {
            return Err(PatError::Malformed("invalid capture index"));
        }
        let (init, len) = self.caps[l];
        let Len::Bytes(len) = len else {
            return Ok(None);
        };
        let matched =
            self.src.len() - s >= len && self.src[init..init + len] == self.src[s..s + len];
        Ok(matched.then_some(s + len))
    }

    fn balance(&mut self, s: usize, p: usize) -> Res<Option<usize>> {
        if self.pc(p) == 0 || self.pc(p + 1) == 0 {
            return Err(PatError::Malformed("unbalanced pattern"));
        }
        if self.sc(s) != self.pc(p) || s >= self.src.len() {
            return Ok(None);
        }
        let (open, close) = (self.pc(p), self.pc(p + 1));
        let mut depth = 1usize;
        let mut i = s + 1;
        while i < self.src.len() {
            let c = self.src[i];
            if c == close {
                depth -= 1;
                if depth == 0 {
                    return Ok(Some(i + 1));
                }
            } else if c == open {
                depth += 1;
            }
            i += 1;
            self.tick()?;
        }
        Ok(None)
    }
}

/// Whether `c` belongs to the class named by `cl` (`%a`, `%D`, ...; any other byte stands for
/// itself), with the C locale's ASCII classes as LuaJIT defines them.
fn class(c: u8, cl: u8) -> bool {
    let inside = match cl.to_ascii_lowercase() {
        b'a' => c.is_ascii_alphabetic(),
        b'c' => c.is_ascii_control(),
        b'd' => c.is_ascii_digit(),
        b'g' => c.is_ascii_graphic(),
        b'l' => c.is_ascii_lowercase(),
        b'p' => c.is_ascii_punctuation(),
        b's' => matches!(c, b' ' | b'\t'..=b'\r'),
        b'u' => c.is_ascii_uppercase(),
        b'w' => c.is_ascii_alphanumeric(),
        b'x' => c.is_ascii_hexdigit(),
        b'z' => c == 0,
        _ => return cl == c,
    };
    if cl.is_ascii_uppercase() {
        !inside
    } else {
        inside
    }
}

/// Whether `string.find` must run the matcher (LuaJIT's `lj_str_haspattern`); otherwise the
/// pattern is searched for as plain bytes.
pub fn has_specials(pat: &[u8]) -> bool {
    pat.iter().any(|c| b"^$*+?.([%-".contains(c))
}

/// The first match of the pattern in `src` at or after `init`: (start, end, matcher holding
/// the captures). `anchored` patterns (leading `^`, already stripped by the caller through
/// `p0 = 1`) are tried at `init` only.
pub fn search<'a>(
    src: &'a [u8],
    pat: &'a [u8],
    init: usize,
) -> Res<Option<(usize, usize, Matcher<'a>)>> {
    let mut m = Matcher::new(src, pat);
    let anchored = m.pc(0) == b'^';
    let p0 = usize::from(anchored);
    let mut s = init;
    loop {
        if let Some(e) = m.match_at(s, p0)? {
            return Ok(Some((s, e, m)));
        }
        if anchored || s >= src.len() {
            return Ok(None);
        }
        s += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn find(s: &str, p: &str) -> Option<(usize, usize, Vec<Capture>)> {
        let (a, b, m) = search(s.as_bytes(), p.as_bytes(), 0).unwrap()?;
        Some((a, b, m.captures(None).unwrap()))
    }

    #[test]
    fn classes_sets_and_repetitions() {
        assert_eq!(find("hello world", "o w").map(|f| (f.0, f.1)), Some((4, 7)));
        assert_eq!(find("key=value", "%w+$").map(|f| (f.0, f.1)), Some((4, 9)));
        assert_eq!(find("abc123", "[%d]+").map(|f| (f.0, f.1)), Some((3, 6)));
        assert_eq!(find("a]b", "[]]").map(|f| (f.0, f.1)), Some((1, 2)));
        assert_eq!(find("x-y", "[a-c-]").map(|f| (f.0, f.1)), Some((1, 2)));
        assert_eq!(find("aaab", "a-b").map(|f| (f.0, f.1)), Some((0, 4)));
        assert_eq!(find("  x", "^%s*").map(|f| (f.0, f.1)), Some((0, 2)));
        assert_eq!(find("ab", "^b"), None);
        assert_eq!(find("\x0b", "%s").map(|f| f.0), Some(0), "\\v is a space");
    }

    #[test]
    fn captures_balance_frontier_backrefs() {
        let (_, _, caps) = find("name=joe", "(%w+)=(%w+)").unwrap();
        assert_eq!(caps, vec![Capture::Span(0, 4), Capture::Span(5, 8)]);
        let (_, _, caps) = find("abc", "()b()").unwrap();
        assert_eq!(caps, vec![Capture::Position(2), Capture::Position(3)]);
        assert_eq!(find("f(a(b)c)d", "%b()").map(|f| (f.0, f.1)), Some((1, 8)));
        assert_eq!(
            find("THE (quick) fox", "%f[%a]%a+").map(|f| (f.0, f.1)),
            Some((0, 3))
        );
        assert_eq!(
            find("say 'hi' now", "(['\"]).-%1").map(|f| (f.0, f.1)),
            Some((4, 8))
        );
    }

    #[test]
    fn malformed_patterns_are_errors() {
        for (p, msg) in [
            ("%", "malformed pattern (ends with '%')"),
            ("[a", "malformed pattern (missing ']')"),
            ("%f", "missing '[' after '%f' in pattern"),
            ("(a", "unfinished capture"),
            ("a)", "invalid pattern capture"),
            ("%1", "invalid capture index"),
            ("%b", "unbalanced pattern"),
        ] {
            let got = search(b"aaa", p.as_bytes(), 0).and_then(|r| match r {
                Some((s, e, m)) => m.captures(Some((s, e))).map(|_| ()),
                None => Ok(()),
            });
            match got {
                Err(PatError::Malformed(m)) => assert_eq!(m, msg, "{p}"),
                other => panic!("{p}: {other:?}"),
            }
        }
        let deep = "a?".repeat(300);
        assert!(matches!(
            search("a".repeat(300).as_bytes(), deep.as_bytes(), 0),
            Err(PatError::Malformed("pattern too complex"))
        ));
    }

    #[test]
    fn backtracking_observes_the_budget() {
        let src = "a".repeat(3000);
        let out = budget::with_budget(std::time::Duration::from_millis(50), || {
            search(src.as_bytes(), b".-.-.-.-b", 0).map(|r| r.is_some())
        });
        assert!(matches!(out, Err(PatError::Budget(_))));
    }
}
