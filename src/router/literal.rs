//! Conservative literal-prefix extraction for regex paths, so they can be filed in
//! the prefix trie next to plain paths.
//!
//! For a route regex `~R` the router compiles `^R`. When `R` has no top-level
//! alternation, every match starts at offset 0 and begins with `R`'s leading literal
//! characters, so a path that does not start with them cannot match. Anything the
//! scanner does not fully understand yields the empty prefix (always tried).

/// Escaped characters that stand for themselves (`\<`, `\>` and letters are assertions
/// or classes, so they end the prefix).
const LITERAL_ESCAPES: &str = "\\.+*?()[]{}|^$#&-~/:;,=!@%'\"_ ";

/// True when `pat` may contain a `|` outside any group or class, or uses verbose
/// mode (`x` flag), which this scanner does not model.
fn risky(pat: &str) -> bool {
    let b = pat.as_bytes();
    let mut i = 0;
    let mut depth = 0usize;
    let mut class = 0usize;
    while i < b.len() {
        let c = b[i];
        if c == b'\\' {
            i += 2;
            continue;
        }
        if class > 0 {
            match c {
                b'[' => class += 1,
                b']' => class -= 1,
                _ => {}
            }
            i += 1;
            continue;
        }
        match c {
            b'[' => {
                class = 1;
                i += 1;
                // A `]` right after `[` or `[^` is a literal.
                if b.get(i) == Some(&b'^') {
                    i += 1;
                }
                if b.get(i) == Some(&b']') {
                    i += 1;
                }
                continue;
            }
            b'(' => {
                depth += 1;
                if b.get(i + 1) == Some(&b'?') {
                    // Inline flags `(?flags)` / `(?flags:...)`: reject verbose mode.
                    let flags = b[i + 2..]
                        .iter()
                        .take_while(|f| f.is_ascii_alphabetic() || **f == b'-');
                    if flags.clone().any(|f| *f == b'x') {
                        return true;
                    }
                }
            }
            b')' => match depth.checked_sub(1) {
                Some(d) => depth = d,
                None => return true,
            },
            b'|' if depth == 0 => return true,
            _ => {}
        }
        i += 1;
    }
    depth != 0 || class != 0
}

/// The literal text every match of `^pat` starts with (possibly empty).
pub(crate) fn literal_prefix(pat: &str) -> String {
    if risky(pat) {
        return String::new();
    }
    let mut out = String::new();
    let mut chars = pat.chars().peekable();
    while let Some(c) = chars.next() {
        let lit = match c {
            '\\' => match chars.peek() {
                Some(&d) if LITERAL_ESCAPES.contains(d) => {
                    chars.next();
                    d
                }
                _ => break,
            },
            '.' | '+' | '*' | '?' | '(' | ')' | '[' | ']' | '{' | '}' | '|' | '^' | '$' => break,
            other => other,
        };
        // A quantifier may repeat the character zero times (or more): drop it and stop.
        if matches!(chars.peek(), Some('*' | '?' | '{' | '+')) {
            if chars.peek() == Some(&'+') {
                out.push(lit);
            }
            break;
        }
        out.push(lit);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extracts_prefixes() {
        let cases = [
            (r"/users/\d+/profile", "/users/"),
            (r"/route/(fixture)", "/route/"),
            (r"/[0]?route", "/"),
            (r"/prefix/[0-9]+", "/prefix/"),
            (r"/reg%65x/\d+", "/reg%65x/"),
            (r"/regex-meta/%5Cd\+%2E", "/regex-meta/%5Cd+%2E"),
            (r"/ab*", "/a"),
            (r"/ab+", "/ab"),
            (r"/ab?c", "/a"),
            (r"/ab{2}", "/a"),
            (r"/a|/b", ""),
            (r"/a(b|c)", "/a"),
            (r"(?i)/abc", ""),
            (r"/abc(?x) d # |", ""),
            (r"/a\<b", "/a"),
            (r"/a\.b", "/a.b"),
            (r"/a[|]b|c", ""),
            (r"/a[]|]b", "/a"),
            (r"/é/x", "/é/x"),
            (r"/\d", "/"),
            (r"/x$", "/x"),
            (r"", ""),
        ];
        for (pat, want) in cases {
            assert_eq!(literal_prefix(pat), want, "pattern {pat:?}");
        }
    }

    #[test]
    fn prefix_is_sound() {
        // Whenever `^pat` matches, the haystack starts with the extracted prefix.
        let pats = [
            r"/users/\d+/profile",
            r"/ab*c",
            r"/ab+c",
            r"/a(b|c)d",
            r"/a\.b",
            r"/x?y",
            r"/(?i)ab",
        ];
        let hays = [
            "/users/12/profile",
            "/ac",
            "/abbc",
            "/abd",
            "/acd",
            "/a.b",
            "/y",
            "/xy",
            "/AB",
            "/ab",
        ];
        for p in pats {
            let re = regex::Regex::new(&format!("^{p}")).expect("valid");
            let lit = literal_prefix(p);
            for h in hays {
                if re.is_match(h) {
                    assert!(
                        h.starts_with(&lit),
                        "{p:?} matches {h:?} but prefix is {lit:?}"
                    );
                }
            }
        }
    }
}
