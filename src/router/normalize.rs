//! Path normalization and escaping, after `kong/tools/uri.lua`.

use std::borrow::Cow;

/// Characters that keep their percent-encoding (RFC 3986 reserved set plus `%`).
const RESERVED: &[u8] = b"!*'();:@&=+$,/?%#[]";

fn hex_val(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Decodes `%XX` triplets of non-reserved characters and upper-cases the hex digits
/// of the reserved ones. With `keep_high`, bytes >= 0x80 are left encoded.
fn percent_decode(path: &str, keep_high: bool) -> Vec<u8> {
    let bytes = path.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let (Some(hi), Some(lo)) = (hex_val(bytes[i + 1]), hex_val(bytes[i + 2])) {
                let num = hi * 16 + lo;
                if RESERVED.contains(&num) || (keep_high && num >= 0x80) {
                    out.push(b'%');
                    out.push(bytes[i + 1].to_ascii_uppercase());
                    out.push(bytes[i + 2].to_ascii_uppercase());
                } else {
                    out.push(num);
                }
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    out
}

/// Step 1 of Kong's normalize: percent-decoding. Borrowed when nothing changes.
fn decode(path: &str) -> Cow<'_, str> {
    if !path.contains('%') {
        return Cow::Borrowed(path);
    }
    let decoded = percent_decode(path, false);
    let s = match String::from_utf8(decoded) {
        Ok(s) => s,
        // Decoding produced invalid UTF-8: keep the high bytes encoded instead.
        // Only ASCII bytes are decoded then, so the result is valid UTF-8.
        Err(_) => String::from_utf8_lossy(&percent_decode(path, true)).into_owned(),
    };
    if s == path {
        Cow::Borrowed(path)
    } else {
        Cow::Owned(s)
    }
}

/// Kong's `normalize(uri, true)`: percent-decoding, dot-segment removal
/// (RFC 3986 5.2.4 as Kong implements it) and merging of `//`.
pub(crate) fn normalize(path: &str) -> Cow<'_, str> {
    if path.is_empty() || path == "/" {
        return Cow::Borrowed(path);
    }
    let decoded = decode(path);
    if !decoded.contains('.') && !decoded.contains("//") {
        return decoded;
    }
    let removed = remove_dot_segments(&decoded);
    if removed == decoded.as_ref() {
        return decoded;
    }
    Cow::Owned(removed)
}

/// The segment loop of Kong's `normalize` with `merge_slashes` on.
fn remove_dot_segments(input: &str) -> String {
    let mut out: Vec<&str> = Vec::new();
    let mut s: &str = input;
    while !s.is_empty() {
        if s == "/." {
            s = "/";
        } else if s == "/.." {
            s = "/";
            out.pop();
        } else if s == "." || s == ".." {
            s = "";
        } else if let Some(rest) = s.strip_prefix("../") {
            s = rest;
        } else if let Some(rest) = s.strip_prefix("./") {
            s = rest;
        } else if s.starts_with("/./") {
            s = &s[2..];
        } else if s.starts_with("/../") {
            s = &s[3..];
            out.pop();
        } else if s.starts_with("//") {
            s = &s[1..];
        } else {
            // One segment, including its leading slash (if any).
            match s.get(1..).and_then(|t| t.find('/')) {
                Some(i) => {
                    out.push(&s[..i + 1]);
                    s = &s[i + 1..];
                }
                None => {
                    out.push(s);
                    s = "";
                }
            }
        }
    }
    out.concat()
}

/// Kong's `kong.tools.uri.escape`: percent-encodes (upper-case hex) every byte that is
/// not safe in a request line, leaving reserved and unreserved characters (and `%`)
/// alone. Apply it to [`super::RouteMatch::upstream_path`] before sending it upstream.
pub fn escape_path(path: &str) -> Cow<'_, str> {
    fn safe(b: u8) -> bool {
        b.is_ascii_alphanumeric() || b"!#$&'()*+,/:;=?@[]-_.~%".contains(&b)
    }
    if path.bytes().all(safe) {
        return Cow::Borrowed(path);
    }
    let mut out = String::with_capacity(path.len() + 8);
    for &b in path.as_bytes() {
        if safe(b) {
            out.push(char::from(b));
        } else {
            out.push('%');
            out.push(char::from(b"0123456789ABCDEF"[usize::from(b >> 4)]));
            out.push(char::from(b"0123456789ABCDEF"[usize::from(b & 0x0f)]));
        }
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalizes_like_kong() {
        let cases = [
            ("", ""),
            ("/", "/"),
            ("/a/./b%7e/../c", "/a/c"),
            ("/a/b%7e/c", "/a/b~/c"),
            ("/endel%2fst", "/endel%2Fst"),
            ("/route%2E/req", "/route./req"),
            ("/route%2e%2E/req", "/route../req"),
            ("/users/%6aohn%20doe/profile", "/users/john doe/profile"),
            ("/a//b///c", "/a/b/c"),
            ("/a/b/..", "/a/"),
            ("/a/b/.", "/a/b/"),
            ("/..", "/"),
            ("/../a", "/a"),
            ("/%2E%2E/a", "/a"),
            ("/a%zz", "/a%zz"),
            ("/a%4", "/a%4"),
            ("/caf%C3%A9", "/café"),
            ("/x%FFy", "/x%FFy"),
            ("/x%ffy%41", "/x%FFyA"),
            ("/%3f%23", "/%3F%23"),
        ];
        for (input, want) in cases {
            assert_eq!(normalize(input), want, "input {input:?}");
        }
    }

    #[test]
    fn borrows_when_unchanged() {
        assert!(matches!(normalize("/a/b/c"), Cow::Borrowed(_)));
        assert!(matches!(normalize("/a/b.c"), Cow::Borrowed(_)));
        assert!(matches!(normalize("/a%2Fb"), Cow::Borrowed(_)));
    }

    #[test]
    fn escapes_like_kong() {
        assert_eq!(escape_path("/a b\"c"), "/a%20b%22c");
        assert_eq!(escape_path("/café"), "/caf%C3%A9");
        assert!(matches!(escape_path("/a/b%2F~"), Cow::Borrowed(_)));
    }
}
