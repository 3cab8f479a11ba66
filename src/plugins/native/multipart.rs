//! `multipart/form-data` bodies for request-transformer: parts are kept as sent (headers,
//! file names, content types) except the ones a step changes. Steps, in Kong's multipart
//! order: rename, remove, replace, add, append (Kong ignores append here; this adds a part).

use super::template::Env;
use super::transform::Ops;

/// The named fields of a `multipart/form-data` body, in order (`None` if the content type has
/// no boundary or the body does not parse). Parts without a name are left out.
pub(crate) fn fields(body: &[u8], content_type: &str) -> Option<Vec<(String, Vec<u8>)>> {
    let boundary = boundary(content_type)?;
    // Bodies written by hand often end lines with LF alone; parsers Kong uses accept them.
    let parts = parse(body, &boundary).or_else(|| {
        let mut crlf = Vec::with_capacity(body.len() + body.len() / 16);
        for (i, &b) in body.iter().enumerate() {
            if b == b'\n' && (i == 0 || body[i - 1] != b'\r') {
                crlf.push(b'\r');
            }
            crlf.push(b);
        }
        parse(&crlf, &boundary)
    })?;
    Some(
        parts
            .into_iter()
            .filter_map(|p| Some((p.name?, p.body)))
            .collect(),
    )
}

/// One part: its raw header block and body.
#[derive(Debug, Clone)]
struct Part {
    head: String,
    name: Option<String>,
    body: Vec<u8>,
}

impl Part {
    /// A plain `form-data` field.
    fn simple(name: &str, value: String) -> Part {
        Part {
            head: disposition(name),
            name: Some(name.to_string()),
            body: value.into_bytes(),
        }
    }

    /// Renames the field, keeping the rest of its Content-Disposition (e.g. the file name).
    fn rename(&mut self, new: &str) {
        let mut lines = Vec::new();
        for line in self.head.split("\r\n") {
            if is_disposition(line) {
                let rest = line
                    .split(';')
                    .skip(1)
                    .filter(|p| !p.trim_start().to_ascii_lowercase().starts_with("name="))
                    .map(|p| format!(";{p}"))
                    .collect::<String>();
                lines.push(format!("{}{rest}", disposition(new)));
            } else {
                lines.push(line.to_string());
            }
        }
        self.head = lines.join("\r\n");
        self.name = Some(new.to_string());
    }
}

fn disposition(name: &str) -> String {
    format!(
        "Content-Disposition: form-data; name=\"{}\"",
        name.replace('"', "%22")
    )
}

fn is_disposition(line: &str) -> bool {
    line.to_ascii_lowercase()
        .starts_with("content-disposition:")
}

/// The `name` parameter of a part's Content-Disposition.
fn field_name(head: &str) -> Option<String> {
    let line = head.split("\r\n").find(|l| is_disposition(l))?;
    line.split(';').skip(1).find_map(|p| {
        let (k, v) = p.trim().split_once('=')?;
        k.eq_ignore_ascii_case("name")
            .then(|| v.trim().trim_matches('"').to_string())
    })
}

/// The boundary of a multipart Content-Type.
fn boundary(content_type: &str) -> Option<String> {
    content_type.split(';').skip(1).find_map(|p| {
        let (k, v) = p.trim().split_once('=')?;
        k.trim()
            .eq_ignore_ascii_case("boundary")
            .then(|| v.trim().trim_matches('"').to_string())
    })
}

fn find(hay: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    hay.get(from..)?
        .windows(needle.len())
        .position(|w| w == needle)
        .map(|i| i + from)
}

/// Splits a body into parts; None when it is not well formed.
fn parse(body: &[u8], boundary: &str) -> Option<Vec<Part>> {
    let delim = format!("--{boundary}").into_bytes();
    let mut at = find(body, &delim, 0)? + delim.len();
    let mut parts = Vec::new();
    loop {
        if body.get(at..at + 2) == Some(b"--") {
            return Some(parts);
        }
        at = at
            .checked_add(2)
            .filter(|_| body.get(at..at + 2) == Some(b"\r\n"))?;
        let head_end = find(body, b"\r\n\r\n", at)?;
        let head = String::from_utf8_lossy(&body[at..head_end]).into_owned();
        let mut next_delim = b"\r\n".to_vec();
        next_delim.extend_from_slice(&delim);
        let end = find(body, &next_delim, head_end + 4)?;
        parts.push(Part {
            name: field_name(&head),
            head,
            body: body[head_end + 4..end].to_vec(),
        });
        at = end + next_delim.len();
    }
}

fn serialize(parts: &[Part], boundary: &str) -> Vec<u8> {
    let mut out = Vec::new();
    for p in parts {
        out.extend_from_slice(format!("--{boundary}\r\n{}\r\n\r\n", p.head).as_bytes());
        out.extend_from_slice(&p.body);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    out
}

/// Transforms a multipart body; None when unchanged or not parseable.
pub(super) fn transform(
    ops: &Ops,
    body: &[u8],
    content_type: Option<&str>,
    env: Option<&Env>,
) -> Option<Vec<u8>> {
    let boundary = boundary(content_type?)?;
    let had_content = !body.is_empty();
    let mut parts = if had_content {
        parse(body, &boundary)?
    } else {
        Vec::new()
    };
    let mut changed = false;
    let has = |parts: &[Part], name: &str| parts.iter().any(|p| p.name.as_deref() == Some(name));
    if had_content {
        for r in &ops.rename {
            let new = r.value.render(env);
            for p in parts
                .iter_mut()
                .filter(|p| p.name.as_deref() == Some(&r.name))
            {
                p.rename(&new);
                changed = true;
            }
        }
        for name in &ops.remove {
            let before = parts.len();
            parts.retain(|p| p.name.as_deref() != Some(name));
            changed |= parts.len() != before;
        }
        for r in &ops.replace {
            if let Some(i) = parts
                .iter()
                .position(|p| p.name.as_deref() == Some(&r.name))
            {
                parts[i] = Part::simple(&r.name, r.value.render(env));
                changed = true;
            }
        }
    }
    for a in &ops.add {
        if !has(&parts, &a.name) {
            parts.push(Part::simple(&a.name, a.value.render(env)));
            changed = true;
        }
    }
    for a in &ops.append {
        parts.push(Part::simple(&a.name, a.value.render(env)));
        changed = true;
    }
    changed.then(|| serialize(&parts, &boundary))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_on_parts() {
        let v = |l: &[&str]| l.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let ops = Ops::compile(
            [
                &v(&["gone"]),
                &v(&["f:file"]),
                &v(&["r:R"]),
                &v(&["a:1"]),
                &v(&[]),
            ],
            "body",
        )
        .unwrap();
        let body = b"--XX\r\nContent-Disposition: form-data; name=\"gone\"\r\n\r\n1\r\n\
--XX\r\nContent-Disposition: form-data; name=\"f\"; filename=\"a.txt\"\r\nContent-Type: text/plain\r\n\r\nhello\r\n\
--XX\r\nContent-Disposition: form-data; name=\"r\"\r\n\r\nold\r\n--XX--\r\n";
        let out = transform(&ops, body, Some("multipart/form-data; boundary=XX"), None).unwrap();
        let parts = parse(&out, "XX").unwrap();
        let names: Vec<_> = parts.iter().map(|p| p.name.clone().unwrap()).collect();
        assert_eq!(names, ["file", "r", "a"]);
        assert!(
            parts[0].head.contains("filename=\"a.txt\""),
            "{}",
            parts[0].head
        );
        assert_eq!(parts[0].body, b"hello");
        assert_eq!(parts[1].body, b"R");
        assert_eq!(parts[2].body, b"1");
        assert!(transform(
            &ops,
            b"garbage",
            Some("multipart/form-data; boundary=XX"),
            None
        )
        .is_none());
    }
}
