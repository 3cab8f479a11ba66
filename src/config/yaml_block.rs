//! A fast path for the plain block YAML that declarative files are made of: indented mappings
//! and sequences, one-line scalars, one-line flow collections and literal block scalars.
//!
//! It produces the events libyaml produces for such text, at the same positions, so the tree
//! built from them is the same; on a 1.4 MB file it takes a fraction of libyaml's time (most
//! of a reload's compile was libyaml). It gives up ([`Unsupported`]) on anything outside that
//! subset, valid or not: anchors, aliases, tags, folded or multi-line scalars, multi-line flow
//! collections, quoted keys, unusual escapes, tabs, CR, control characters, non-ASCII text,
//! several documents. The caller then parses the whole text with libyaml, which also reports
//! every syntax error, so this code never has to. Tests and the config fuzz target compare its
//! events with libyaml's (`check_block_fast_path`).

use std::borrow::Cow;

use super::yaml::Loc;
use super::yaml_events::{field_name, Event};

/// The text is outside the subset this path reads; parse it with libyaml.
#[derive(Debug)]
pub(super) struct Unsupported;

type Scan<T> = Result<T, Unsupported>;

/// Deepest nesting this path follows (it recurses); deeper text goes to libyaml, which does
/// not recurse and enforces the real limit.
const MAX_NESTING: usize = 64;
/// libyaml's longest simple key.
const MAX_KEY: usize = 1024;

/// Streams the events of `text`, or gives up. Events already emitted when it gives up are to
/// be discarded.
pub(super) fn scan(text: &str, emit: &mut dyn FnMut(Event, Loc)) -> Scan<()> {
    let b = text.as_bytes();
    // Printable ASCII and line feeds only. Columns are counted in characters, which ASCII
    // keeps equal to bytes; libyaml refuses control characters (found by fuzzing); tabs and
    // CR follow rules of their own.
    if b.iter().any(|&c| !(b' '..=b'~').contains(&c) && c != b'\n') {
        return Err(Unsupported);
    }
    let mut s = Scanner {
        b,
        text,
        line: 0,
        start: 0,
        end: 0,
        pos: 0,
        depth: 0,
        emit,
    };
    s.end = s.line_end(0);
    let Some(indent) = s.settle() else {
        return Err(Unsupported);
    };
    if indent == 0 && s.rest_is(b"---") {
        // An explicit start of the (only) document, alone on its line.
        if s.advance().is_none() {
            return Err(Unsupported);
        }
    }
    if s.pos != s.start {
        return Err(Unsupported);
    }
    s.collection(0)?;
    match s.at_eof() {
        true => Ok(()),
        false => Err(Unsupported),
    }
}

struct Scanner<'a, 'e> {
    b: &'a [u8],
    text: &'a str,
    /// The current line (0-based), its first byte and the byte after its last.
    line: usize,
    start: usize,
    end: usize,
    /// The cursor, on the current line.
    pos: usize,
    depth: usize,
    emit: &'e mut dyn FnMut(Event, Loc),
}

impl Scanner<'_, '_> {
    fn line_end(&self, from: usize) -> usize {
        self.b[from..]
            .iter()
            .position(|&c| c == b'\n')
            .map_or(self.b.len(), |i| from + i)
    }

    fn loc(&self, pos: usize) -> Loc {
        Loc {
            line: self.line + 1,
            col: pos - self.start + 1,
        }
    }

    fn peek(&self) -> Option<u8> {
        (self.pos < self.end).then(|| self.b[self.pos])
    }

    fn at_eof(&self) -> bool {
        self.start >= self.b.len()
    }

    fn rest_is(&self, what: &[u8]) -> bool {
        self.b[self.pos..self.end].trim_ascii_end() == what
    }

    fn skip_spaces(&mut self) -> usize {
        let from = self.pos;
        while self.peek() == Some(b' ') {
            self.pos += 1;
        }
        self.pos - from
    }

    /// From the current line on, finds the first line with content other than a comment and
    /// puts the cursor on its first character; its indentation, or `None` at the end.
    fn settle(&mut self) -> Option<usize> {
        loop {
            if self.at_eof() {
                return None;
            }
            self.pos = self.start;
            self.skip_spaces();
            match self.peek() {
                None | Some(b'#') => {}
                Some(_) => return Some(self.pos - self.start),
            }
            self.next_line();
        }
    }

    fn next_line(&mut self) {
        self.start = self.end + 1;
        self.line += 1;
        self.end = if self.start >= self.b.len() {
            self.b.len()
        } else {
            self.line_end(self.start)
        };
        self.pos = self.start.min(self.b.len());
    }

    /// [`settle`](Self::settle) from the next line.
    fn advance(&mut self) -> Option<usize> {
        if self.end >= self.b.len() {
            self.start = self.b.len();
            return None;
        }
        self.next_line();
        self.settle()
    }

    /// The indentation of the line the cursor is on (it is on its first character).
    fn indent(&self) -> Option<usize> {
        (!self.at_eof()).then(|| self.pos - self.start)
    }

    /// At `-` followed by a space or the end of the line: a block sequence entry.
    fn at_dash(&self) -> bool {
        self.peek() == Some(b'-') && matches!(self.b.get(self.pos + 1), None | Some(b' ' | b'\n'))
    }

    /// A scalar starting at byte `at` of the current line.
    fn scalar(&mut self, value: Cow<'static, str>, plain: bool, at: usize) {
        let loc = self.loc(at);
        self.scalar_at(value, plain, loc);
    }

    fn scalar_at(&mut self, value: Cow<'static, str>, plain: bool, loc: Loc) {
        let scalar = Event::Scalar {
            value,
            plain,
            str_tag: false,
            anchor: None,
        };
        self.event(scalar, loc);
    }

    fn event(&mut self, event: Event, loc: Loc) {
        (self.emit)(event, loc);
    }

    fn nest(&mut self) -> Scan<()> {
        self.depth += 1;
        match self.depth > MAX_NESTING {
            true => Err(Unsupported),
            false => Ok(()),
        }
    }

    /// A block mapping or sequence whose first line the cursor is on, at `indent`.
    fn collection(&mut self, indent: usize) -> Scan<()> {
        match self.at_dash() {
            true => self.sequence(indent, false),
            false => self.mapping(indent),
        }
    }

    /// A block mapping whose keys are at column `indent`; the cursor is on its first key.
    fn mapping(&mut self, indent: usize) -> Scan<()> {
        self.nest()?;
        let first = self.loc(self.pos);
        self.event(Event::MappingStart { anchor: None }, first);
        loop {
            self.key()?;
            // Past the `:`, where libyaml puts an empty value.
            let colon_end = self.loc(self.pos);
            self.skip_spaces();
            if self.line_done() {
                self.advance();
                self.value_below(indent, true, colon_end)?;
            } else {
                self.inline(indent)?;
            }
            match self.indent() {
                Some(i) if i == indent && !self.at_dash() => continue,
                Some(i) if i < indent => break,
                None => break,
                // Deeper text after a value (a continued scalar), or `-` among keys.
                Some(_) => return Err(Unsupported),
            }
        }
        self.event(Event::End, first);
        self.depth -= 1;
        Ok(())
    }

    /// A block sequence whose `-` are at column `indent`; `indentless` when it is a mapping's
    /// value at the mapping's own column.
    fn sequence(&mut self, indent: usize, indentless: bool) -> Scan<()> {
        self.nest()?;
        let first = self.loc(self.pos);
        self.event(Event::SequenceStart { anchor: None }, first);
        loop {
            self.pos += 1;
            let dash_end = self.loc(self.pos);
            self.skip_spaces();
            if self.line_done() {
                self.advance();
                self.value_below(indent, false, dash_end)?;
            } else if self.at_dash() {
                return Err(Unsupported);
            } else if self.key_len().is_some() {
                let column = self.pos - self.start;
                self.mapping(column)?;
            } else {
                self.inline(indent)?;
            }
            match self.indent() {
                Some(i) if i == indent && self.at_dash() => continue,
                Some(i) if i == indent && indentless => break,
                Some(i) if i < indent => break,
                None => break,
                Some(_) => return Err(Unsupported),
            }
        }
        self.event(Event::End, first);
        self.depth -= 1;
        Ok(())
    }

    /// The value of a key (`in_mapping`) or entry at column `parent` whose line ends after its
    /// `:` or `-`: a collection on the lines below, or an empty (null) value at `empty`.
    fn value_below(&mut self, parent: usize, in_mapping: bool, empty: Loc) -> Scan<()> {
        match self.indent() {
            Some(i) if i > parent => self.collection(i),
            Some(i) if in_mapping && i == parent && self.at_dash() => self.sequence(i, true),
            _ => {
                self.scalar_at(Cow::Owned(String::new()), true, empty);
                Ok(())
            }
        }
    }

    /// Whether the rest of the line is empty or a comment (the cursor is past a space, or at
    /// the start of the value).
    fn line_done(&self) -> bool {
        matches!(self.peek(), None | Some(b'#'))
    }

    /// After a value or a block scalar's header: only spaces, then a comment after a space, may
    /// follow on its line.
    fn end_of_line(&mut self) -> Scan<()> {
        let spaced = self.skip_spaces() > 0;
        match self.peek() {
            None => Ok(()),
            Some(b'#') if spaced => Ok(()),
            Some(_) => Err(Unsupported),
        }
    }

    /// The length of the plain key (of the usual characters) at the cursor when it is
    /// followed by `:` and a space or the line's end.
    fn key_len(&self) -> Option<usize> {
        let rest = &self.b[self.pos..self.end];
        if rest.first().is_none_or(|&c| c == b'-' || c == b'.') {
            return None;
        }
        let n = rest
            .iter()
            .position(|&c| !(c.is_ascii_alphanumeric() || matches!(c, b'_' | b'-' | b'.' | b'/')))
            .unwrap_or(rest.len());
        let colon = n > 0 && self.b.get(self.pos + n) == Some(&b':');
        let spaced = matches!(self.b.get(self.pos + n + 1), None | Some(b' ' | b'\n'));
        (colon && spaced).then_some(n)
    }

    /// Reads `key:` and emits the key, leaving the cursor past the `:`.
    fn key(&mut self) -> Scan<()> {
        let n = self
            .key_len()
            .filter(|&n| n <= MAX_KEY)
            .ok_or(Unsupported)?;
        let at = self.pos;
        self.pos += n + 1;
        self.scalar(own(&self.text[at..at + n]), true, at);
        Ok(())
    }

    /// A value that starts on the current line at the cursor, inside a collection at column
    /// `parent`; leaves the cursor on the next line with content.
    fn inline(&mut self, parent: usize) -> Scan<()> {
        let at = self.pos;
        match self.b[at] {
            b'"' | b'\'' => {
                let value = self.quoted()?;
                self.scalar(value, false, at);
            }
            b'[' | b'{' => self.flow()?,
            b'|' => return self.literal(parent),
            _ => {
                let value = self.plain(false)?;
                self.scalar(value, true, at);
            }
        }
        self.end_of_line()?;
        self.advance();
        Ok(())
    }

    /// A one-line plain scalar. In a flow collection (`flow`) it ends before `,]}`.
    fn plain(&mut self, flow: bool) -> Scan<Cow<'static, str>> {
        let at = self.pos;
        let first = self.b[at];
        let next = self.b.get(at + 1).copied().unwrap_or(b'\n');
        let indicator = matches!(
            first,
            b'[' | b']'
                | b'{'
                | b'}'
                | b','
                | b'#'
                | b'&'
                | b'*'
                | b'!'
                | b'|'
                | b'>'
                | b'\''
                | b'"'
                | b'%'
                | b'@'
                | b'`'
                | b'?'
                | b':'
        );
        if indicator || (first == b'-' && matches!(next, b' ' | b'\n')) {
            return Err(Unsupported);
        }
        let mut i = at;
        while i < self.end {
            let c = self.b[i];
            match c {
                // `: ` would make it a key; `:` elsewhere is left to libyaml.
                b':' if flow || matches!(self.b.get(i + 1), None | Some(b' ' | b'\n')) => {
                    return Err(Unsupported)
                }
                b'#' if flow || self.b[i - 1] == b' ' => break,
                b',' | b'[' | b']' | b'{' | b'}' if flow => break,
                _ => i += 1,
            }
        }
        let value = self.text[at..i].trim_end_matches(' ');
        if value.is_empty() {
            return Err(Unsupported);
        }
        self.pos = at + value.len();
        Ok(own(value))
    }

    /// A quoted scalar closed on its line, with the common escapes.
    fn quoted(&mut self) -> Scan<Cow<'static, str>> {
        let quote = self.b[self.pos];
        let mut value = String::new();
        let mut i = self.pos + 1;
        loop {
            let run = self.b[i..self.end]
                .iter()
                .position(|&c| c == quote || c == b'\\')
                .ok_or(Unsupported)?;
            value.push_str(&self.text[i..i + run]);
            i += run;
            match (self.b[i], self.b.get(i + 1).copied()) {
                (b'\'', Some(b'\'')) if quote == b'\'' => {
                    value.push('\'');
                    i += 2;
                }
                (b'\\', Some(e)) if quote == b'"' => {
                    value.push(match e {
                        b'\\' => '\\',
                        b'"' => '"',
                        b'/' => '/',
                        b'n' => '\n',
                        b't' => '\t',
                        b'r' => '\r',
                        _ => return Err(Unsupported),
                    });
                    i += 2;
                }
                (b'\\', _) => {
                    value.push('\\');
                    i += 1;
                }
                _ => {
                    self.pos = i + 1;
                    return Ok(shared(value));
                }
            }
            if i >= self.end {
                return Err(Unsupported);
            }
        }
    }

    /// A flow sequence or mapping closed on its line.
    fn flow(&mut self) -> Scan<()> {
        self.nest()?;
        let open = self.b[self.pos];
        let map = open == b'{';
        let close = if map { b'}' } else { b']' };
        let loc = self.loc(self.pos);
        let start = match map {
            true => Event::MappingStart { anchor: None },
            false => Event::SequenceStart { anchor: None },
        };
        self.event(start, loc);
        self.pos += 1;
        self.skip_spaces();
        if self.peek() == Some(close) {
            self.pos += 1;
        } else {
            loop {
                if map {
                    self.key()?;
                    if self.skip_spaces() == 0 {
                        return Err(Unsupported);
                    }
                }
                self.flow_item()?;
                self.skip_spaces();
                match self.peek() {
                    Some(b',') => {
                        self.pos += 1;
                        self.skip_spaces();
                        if matches!(self.peek(), None | Some(b']' | b'}' | b',')) {
                            return Err(Unsupported);
                        }
                    }
                    Some(c) if c == close => {
                        self.pos += 1;
                        break;
                    }
                    _ => return Err(Unsupported),
                }
            }
        }
        self.event(Event::End, loc);
        self.depth -= 1;
        Ok(())
    }

    fn flow_item(&mut self) -> Scan<()> {
        let at = self.pos;
        match self.peek().ok_or(Unsupported)? {
            b'"' | b'\'' => {
                let value = self.quoted()?;
                self.scalar(value, false, at);
            }
            b'[' | b'{' => self.flow()?,
            _ => {
                let value = self.plain(true)?;
                self.scalar(value, true, at);
            }
        }
        Ok(())
    }

    /// A literal block scalar (`|`, with an optional indentation indicator and chomping) in a
    /// collection at column `parent`; leaves the cursor on the next line with content.
    fn literal(&mut self, parent: usize) -> Scan<()> {
        let at = self.pos;
        let loc = self.loc(at);
        self.pos += 1;
        let (mut step, mut chomp) = (None, None);
        while let Some(c) = self.peek() {
            match c {
                b'1'..=b'9' if step.is_none() => step = Some(usize::from(c - b'0')),
                b'-' | b'+' if chomp.is_none() => chomp = Some(c),
                _ => break,
            }
            self.pos += 1;
        }
        self.end_of_line()?;
        let mut value = String::new();
        let mut breaks = 0usize;
        let mut indent = step.map(|n| parent + n);
        let mut content = false;
        loop {
            if self.end >= self.b.len() {
                // No line follows.
                self.start = self.b.len();
                break;
            }
            self.next_line();
            if self.at_eof() {
                break;
            }
            let line = &self.b[self.start..self.end];
            let spaces = line.iter().take_while(|&&c| c == b' ').count();
            if spaces == line.len() {
                // An empty line: a break, unless its spaces are content.
                if indent.is_some_and(|n| spaces > n) || (indent.is_none() && spaces > parent) {
                    return Err(Unsupported);
                }
                // A last line without its break adds none (found by fuzzing).
                if self.end < self.b.len() {
                    breaks += 1;
                }
                continue;
            }
            let n = *indent.get_or_insert(spaces);
            if spaces < n || n <= parent {
                break;
            }
            content = true;
            for _ in 0..breaks {
                value.push('\n');
            }
            breaks = 0;
            if self.end >= self.b.len() {
                // A last line without its break: libyaml's reading of it is not copied.
                return Err(Unsupported);
            }
            value.push_str(&self.text[self.start + n..self.end]);
            value.push('\n');
        }
        if !content {
            return Err(Unsupported);
        }
        match chomp {
            Some(b'-') => {
                value.pop();
            }
            Some(_) => value.extend(std::iter::repeat_n('\n', breaks)),
            None => {}
        }
        self.scalar_at(shared(value), false, loc);
        self.settle();
        Ok(())
    }
}

/// A scalar's text as libyaml's events carry it: a known field name shared, else a copy.
fn own(text: &str) -> Cow<'static, str> {
    field_name(text.as_bytes()).map_or_else(|| Cow::Owned(text.to_owned()), Cow::Borrowed)
}

/// [`own`] for a text already owned.
fn shared(text: String) -> Cow<'static, str> {
    field_name(text.as_bytes()).map_or(Cow::Owned(text), Cow::Borrowed)
}
