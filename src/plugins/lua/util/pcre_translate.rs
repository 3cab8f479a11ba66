//! The PCRE → `regex` syntax translator behind `pcre::compile` (see `pcre.rs` for what maps).

/// Translation state over one pattern.
pub(super) struct Tr<'a> {
    pub(super) p: &'a [u8],
    pub(super) i: usize,
    pub(super) out: String,
    pub(super) ncaps: usize,
    pub(super) names: Vec<(String, Vec<usize>)>,
    pub(super) x: bool,
    pub(super) xstack: Vec<bool>,
    pub(super) utf8: bool,
    pub(super) dupnames: bool,
}

/// One item of a bracketed class (literals already rendered in Rust syntax).
enum Item {
    Lit(String),
    Set(String),
    Dash,
}

fn hex_lit(cp: u32) -> String {
    // `\xHH` is the raw byte in bytes mode (`\x{HH}` would be the code point there).
    if cp <= 0xFF {
        format!("\\x{cp:02X}")
    } else {
        format!("\\x{{{cp:X}}}")
    }
}

/// Rust syntax for the character `cp` given by value (an escape such as `\x41`).
/// Non-ASCII values use `\xHH`: a byte in bytes mode, the code point in Unicode mode (PCRE's
/// own two readings of `\xE9`).
fn lit_text(cp: u32, in_class: bool) -> String {
    match char::from_u32(cp) {
        Some(c) if c.is_ascii_alphanumeric() => c.to_string(),
        Some(c) if !in_class && regex_syntax_meta(c) => format!("\\{c}"),
        Some(c) if !in_class && (c.is_ascii_graphic() || c == ' ') => c.to_string(),
        _ => hex_lit(cp),
    }
}

impl Tr<'_> {
    fn peek(&self, k: usize) -> Option<u8> {
        self.p.get(self.i + k).copied()
    }

    fn err<T>(&self, what: &str) -> Result<T, String> {
        Err(what.to_string())
    }

    /// Reads one literal character of the pattern text and renders it: a valid UTF-8 sequence
    /// is kept as the character, a stray byte becomes `\x{..}` (matching that byte).
    fn read_lit(&mut self, in_class: bool) -> String {
        let rest = &self.p[self.i..];
        let len = match rest[0] {
            0xC2..=0xDF => 2,
            0xE0..=0xEF => 3,
            0xF0..=0xF4 => 4,
            _ => 1,
        };
        if len > 1 && rest.len() >= len {
            if let Ok(s) = std::str::from_utf8(&rest[..len]) {
                self.i += len;
                return s.to_string();
            }
        }
        self.i += 1;
        lit_text(rest[0] as u32, in_class)
    }

    fn push_lit(&mut self, cp: u32) {
        let t = lit_text(cp, false);
        self.out.push_str(&t);
    }

    fn hex_digits(&mut self, max: usize) -> u32 {
        let mut v = 0;
        let mut n = 0;
        while n < max {
            match self.peek(0).and_then(|c| (c as char).to_digit(16)) {
                Some(d) => {
                    v = v * 16 + d;
                    self.i += 1;
                    n += 1;
                }
                None => break,
            }
        }
        v
    }

    fn octal_digits(&mut self, max: usize, mut v: u32) -> u32 {
        let mut n = 0;
        while n < max {
            match self.peek(0).and_then(|c| (c as char).to_digit(8)) {
                Some(d) => {
                    v = v * 8 + d;
                    self.i += 1;
                    n += 1;
                }
                None => break,
            }
        }
        v
    }

    /// An escape that denotes one character, or None. `self.i` is just past the backslash+letter.
    fn char_escape(&mut self, c: u8) -> Result<Option<u32>, String> {
        Ok(Some(match c {
            b'a' => 7,
            b'e' => 0x1B,
            b'f' => 0x0C,
            b'n' => b'\n' as u32,
            b'r' => b'\r' as u32,
            b't' => b'\t' as u32,
            b'0' => self.octal_digits(2, 0),
            b'o' if self.peek(0) == Some(b'{') => {
                self.i += 1;
                let v = self.octal_digits(11, 0);
                if self.peek(0) != Some(b'}') {
                    return self.err("missing } after \\o{");
                }
                self.i += 1;
                v
            }
            b'x' if self.peek(0) == Some(b'{') => {
                self.i += 1;
                let v = self.hex_digits(8);
                if self.peek(0) != Some(b'}') {
                    return self.err("missing } after \\x{");
                }
                self.i += 1;
                v
            }
            b'x' => self.hex_digits(2),
            b'c' => match self.peek(0) {
                Some(x) if x.is_ascii() => {
                    self.i += 1;
                    (x.to_ascii_uppercase() ^ 0x40) as u32
                }
                _ => return self.err("\\c at end of pattern"),
            },
            _ => return Ok(None),
        }))
    }

    /// A class-like escape (\d, \s, \h ...) as a Rust class body or class, per context.
    fn set_escape(&self, c: u8, in_class: bool) -> Option<String> {
        let (body, neg) = match c {
            b'd' | b'D' => ("0-9", c == b'D'),
            b'w' | b'W' => ("0-9A-Za-z_", c == b'W'),
            b's' | b'S' => ("\\t\\n\\x0B\\f\\r\\x20", c == b'S'),
            b'h' | b'H' if self.utf8 => (
                "\\t\\x20\\x{A0}\\x{1680}\\x{180E}\\x{2000}-\\x{200A}\\x{202F}\\x{205F}\\x{3000}",
                c == b'H',
            ),
            b'h' | b'H' => ("\\t\\x20\\xA0", c == b'H'),
            b'v' | b'V' if self.utf8 => ("\\n\\x0B\\f\\r\\x{85}\\x{2028}\\x{2029}", c == b'V'),
            b'v' | b'V' => ("\\n\\x0B\\f\\r\\x85", c == b'V'),
            b'N' if !in_class => ("\\n", true),
            _ => return None,
        };
        Some(match (in_class, neg) {
            (true, false) => body.to_string(),
            (_, true) => format!("[^{body}]"),
            (false, false) => format!("[{body}]"),
        })
    }

    fn escape(&mut self) -> Result<(), String> {
        let Some(c) = self.peek(0) else {
            return self.err("\\ at end of pattern");
        };
        self.i += 1;
        if let Some(cp) = self.char_escape(c)? {
            self.push_lit(cp);
            return Ok(());
        }
        if let Some(set) = self.set_escape(c, false) {
            self.out.push_str(&set);
            return Ok(());
        }
        match c {
            b'b' => self.out.push_str("(?-u:\\b)"),
            b'B' => self.out.push_str("(?-u:\\B)"),
            b'A' => self.out.push_str("\\A"),
            b'z' | b'Z' => self.out.push_str("\\z"),
            b'R' if self.utf8 => self
                .out
                .push_str("(?:\\r\\n|[\\n\\x0B\\f\\r\\x{85}\\x{2028}\\x{2029}])"),
            b'R' => self.out.push_str("(?:\\r\\n|[\\n\\x0B\\f\\r\\x85])"),
            b'p' | b'P' => self.copy_property(c),
            b'E' => {}
            b'Q' => {
                while self.i < self.p.len() {
                    if self.p[self.i] == b'\\' && self.peek(1) == Some(b'E') {
                        self.i += 2;
                        break;
                    }
                    let t = self.read_lit(false);
                    self.out.push_str(&t);
                }
            }
            b'1'..=b'9' | b'g' | b'k' => return self.err("backreferences are not supported"),
            b'G' => return self.err("\\G is not supported"),
            b'K' => return self.err("\\K is not supported"),
            b'X' | b'C' => return self.err("\\X and \\C are not supported"),
            c if c.is_ascii_alphanumeric() => {
                return self.err("unrecognized character follows \\");
            }
            _ => {
                self.i -= 1;
                let t = self.read_lit(false);
                self.out.push_str(&t);
            }
        }
        Ok(())
    }

    fn copy_property(&mut self, c: u8) {
        self.out.push('\\');
        self.out.push(c as char);
        if self.peek(0) == Some(b'{') {
            while let Some(b) = self.peek(0) {
                self.out.push(b as char);
                self.i += 1;
                if b == b'}' {
                    break;
                }
            }
        } else if let Some(b) = self.peek(0) {
            self.out.push(b as char);
            self.i += 1;
        }
    }

    fn class(&mut self) -> Result<(), String> {
        let mut items: Vec<Item> = Vec::new();
        let mut neg = false;
        if self.peek(0) == Some(b'^') {
            neg = true;
            self.i += 1;
        }
        let mut first = true;
        loop {
            let Some(c) = self.peek(0) else {
                return self.err("missing terminating ] for character class");
            };
            if c == b']' && !first {
                self.i += 1;
                break;
            }
            first = false;
            if c == b'[' && self.peek(1) == Some(b':') {
                if let Some(end) = self.p[self.i + 2..].windows(2).position(|w| w == b":]") {
                    let s =
                        String::from_utf8_lossy(&self.p[self.i..self.i + 2 + end + 2]).into_owned();
                    self.i += end + 4;
                    items.push(Item::Set(s));
                    continue;
                }
            }
            if c == b'-' {
                self.i += 1;
                items.push(Item::Dash);
                continue;
            }
            if c != b'\\' {
                let t = self.read_lit(true);
                items.push(Item::Lit(t));
                continue;
            }
            self.i += 1;
            let Some(e) = self.peek(0) else {
                return self.err("\\ at end of pattern");
            };
            self.i += 1;
            if e == b'b' {
                items.push(Item::Lit(hex_lit(8)));
            } else if let Some(cp) = self.char_escape(e)? {
                items.push(Item::Lit(lit_text(cp, true)));
            } else if let Some(set) = self.set_escape(e, true) {
                items.push(Item::Set(set));
            } else if e == b'p' || e == b'P' {
                let mark = self.out.len();
                self.copy_property(e);
                let s = self.out.split_off(mark);
                items.push(Item::Set(s));
            } else if e == b'Q' {
                while self.i < self.p.len() {
                    if self.p[self.i] == b'\\' && self.peek(1) == Some(b'E') {
                        self.i += 2;
                        break;
                    }
                    let t = self.read_lit(true);
                    items.push(Item::Lit(t));
                }
            } else if e == b'E' {
            } else if e.is_ascii_alphanumeric() {
                return self.err("unrecognized character follows \\");
            } else {
                self.i -= 1;
                let t = self.read_lit(true);
                items.push(Item::Lit(t));
            }
        }
        self.out.push('[');
        if neg {
            self.out.push('^');
        }
        for k in 0..items.len() {
            match &items[k] {
                Item::Lit(t) => self.out.push_str(t),
                Item::Set(s) => self.out.push_str(s),
                Item::Dash => {
                    let range = k > 0
                        && matches!(items[k - 1], Item::Lit(_))
                        && matches!(items.get(k + 1), Some(Item::Lit(_)))
                        && !(k >= 2 && matches!(items[k - 2], Item::Dash));
                    self.out.push_str(if range { "-" } else { "\\-" });
                }
            }
        }
        self.out.push(']');
        Ok(())
    }

    fn group_name(&mut self, close: u8) -> Result<(), String> {
        let start = self.i;
        while self
            .peek(0)
            .is_some_and(|c| c.is_ascii_alphanumeric() || c == b'_')
        {
            self.i += 1;
        }
        if self.peek(0) != Some(close) || self.i == start {
            return self.err("syntax error in subpattern name (missing terminator?)");
        }
        let name = String::from_utf8_lossy(&self.p[start..self.i]).into_owned();
        self.i += 1;
        self.ncaps += 1;
        let idx = self.ncaps;
        let rust_name = match self.names.iter_mut().find(|(n, _)| *n == name) {
            Some((_, groups)) if self.dupnames => {
                groups.push(idx);
                format!("__sluice_dup{idx}_{name}")
            }
            Some(_) => {
                return self
                    .err("two named subpatterns have the same name (PCRE2_DUPNAMES not set)")
            }
            None => {
                self.names.push((name.clone(), vec![idx]));
                name
            }
        };
        self.out.push_str(&format!("(?<{rust_name}>"));
        Ok(())
    }

    fn open_group(&mut self) -> Result<(), String> {
        self.xstack.push(self.x);
        if self.peek(0) == Some(b'*') {
            return self.err("(*VERB) and (*OPTION) items are not supported");
        }
        if self.peek(0) != Some(b'?') {
            self.ncaps += 1;
            self.out.push('(');
            return Ok(());
        }
        self.i += 1;
        match (self.peek(0), self.peek(1)) {
            (Some(b'#'), _) => {
                self.xstack.pop();
                while let Some(c) = self.peek(0) {
                    self.i += 1;
                    if c == b')' {
                        return Ok(());
                    }
                }
                self.err("missing ) after (?# comment")
            }
            (Some(b':'), _) | (Some(b'>'), _) => {
                self.i += 1;
                self.out.push_str("(?:");
                Ok(())
            }
            (Some(b'<'), Some(b'=' | b'!')) | (Some(b'=' | b'!'), _) => {
                self.err("look-around assertions are not supported")
            }
            (Some(b'<'), _) => {
                self.i += 1;
                self.group_name(b'>')
            }
            (Some(b'P'), Some(b'<')) => {
                self.i += 2;
                self.group_name(b'>')
            }
            (Some(b'\''), _) => {
                self.i += 1;
                self.group_name(b'\'')
            }
            (Some(b'|'), _) => self.err("branch reset groups are not supported"),
            (Some(b'('), _) => self.err("conditional groups are not supported"),
            _ => self.inline_flags(),
        }
    }

    /// `(?imsx-imsx)` or `(?imsx-imsx:`; `x` is applied here, `J`/`X` dropped.
    fn inline_flags(&mut self) -> Result<(), String> {
        let mut kept = String::new();
        let mut negate = false;
        let mut x = self.x;
        loop {
            let Some(c) = self.peek(0) else {
                return self.err("missing ) after (? flags");
            };
            self.i += 1;
            match c {
                b'-' => {
                    negate = true;
                    kept.push('-');
                }
                b'x' => x = !negate,
                b'i' | b'm' | b's' | b'U' => kept.push(c as char),
                b'J' | b'X' => {}
                b')' | b':' => {
                    let kept = kept.trim_end_matches('-');
                    if c == b')' {
                        self.xstack.pop();
                        self.x = x;
                        if !kept.is_empty() {
                            self.out.push_str(&format!("(?{kept})"));
                        }
                    } else {
                        self.x = x;
                        self.out.push_str(&format!("(?{kept}:"));
                    }
                    return Ok(());
                }
                _ => {
                    return self
                        .err("recursion, subroutine calls and unknown (? groups are not supported")
                }
            }
        }
    }

    /// `{n}`, `{n,}`, `{n,m}` at `self.i`? Returns its length.
    fn quantifier_len(&self) -> Option<usize> {
        let rest = &self.p[self.i..];
        let close = rest.iter().position(|&c| c == b'}')?;
        let body = std::str::from_utf8(&rest[1..close]).ok()?;
        let (a, b) = body.split_once(',').unwrap_or((body, "0"));
        let ok = !a.is_empty()
            && a.bytes().all(|c| c.is_ascii_digit())
            && b.bytes().all(|c| c.is_ascii_digit());
        ok.then_some(close + 1)
    }

    fn after_quantifier(&mut self) {
        match self.peek(0) {
            Some(b'+') => self.i += 1,
            Some(b'?') => {
                self.i += 1;
                self.out.push('?');
            }
            _ => {}
        }
    }

    /// Translates the whole pattern into `self.out`.
    pub(super) fn run(&mut self) -> Result<(), String> {
        let mut steps = 0u32;
        while let Some(c) = self.peek(0) {
            // Some constructs rescan the rest of the pattern: a huge hostile pattern meets
            // the call's CPU budget.
            steps = steps.wrapping_add(1);
            if steps % 16 == 0 {
                crate::plugins::lua::sandbox::budget::check().map_err(|e| e.to_string())?;
            }
            if self.x && matches!(c, b' ' | b'\t' | b'\n' | b'\r' | 0x0B | 0x0C) {
                self.i += 1;
                continue;
            }
            if self.x && c == b'#' {
                while let Some(c) = self.peek(0) {
                    self.i += 1;
                    if c == b'\n' {
                        break;
                    }
                }
                continue;
            }
            match c {
                b'\\' => {
                    self.i += 1;
                    self.escape()?;
                }
                b'[' => {
                    self.i += 1;
                    self.class()?;
                }
                b'(' => {
                    self.i += 1;
                    self.open_group()?;
                }
                b')' => {
                    self.i += 1;
                    self.x = self.xstack.pop().unwrap_or(self.x);
                    self.out.push(')');
                }
                b'*' | b'+' | b'?' => {
                    self.i += 1;
                    self.out.push(c as char);
                    self.after_quantifier();
                }
                b'{' => match self.quantifier_len() {
                    Some(len) => {
                        let q = String::from_utf8_lossy(&self.p[self.i..self.i + len]).into_owned();
                        self.out.push_str(&q);
                        self.i += len;
                        self.after_quantifier();
                    }
                    None => {
                        self.i += 1;
                        self.out.push_str("\\{");
                    }
                },
                b'.' | b'^' | b'$' | b'|' => {
                    self.i += 1;
                    self.out.push(c as char);
                }
                _ => {
                    let t = self.read_lit(false);
                    self.out.push_str(&t);
                }
            }
        }
        Ok(())
    }
}

fn regex_syntax_meta(c: char) -> bool {
    matches!(
        c,
        '\\' | '.'
            | '+'
            | '*'
            | '?'
            | '('
            | ')'
            | '|'
            | '['
            | ']'
            | '{'
            | '}'
            | '^'
            | '$'
            | '#'
            | '&'
            | '-'
            | '~'
    )
}
