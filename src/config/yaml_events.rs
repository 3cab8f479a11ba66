//! libyaml's event parser (the `unsafe-libyaml` translation, already in the build through
//! Pingora's `serde_yaml`) behind a safe iterator of owned events with their positions.
//!
//! libyaml is the parser Kong itself reads declarative files with (`lyaml`), and on a 1.4 MB
//! config its event stream takes 30 ms where yaml-rust2's took 47 ms.

use std::borrow::Cow;
use std::ffi::CStr;
use std::mem::MaybeUninit;

use unsafe_libyaml as unsafe_sys;

use super::yaml::{Loc, SyntaxError};

/// One parse event (document and stream boundaries are not reported).
#[derive(Debug, PartialEq)]
pub(super) enum Event {
    /// A scalar: its text, whether it was written plain (unquoted, not a block scalar), and
    /// whether it is tagged `!!str`.
    Scalar {
        /// A known field name is borrowed from [`FIELD_NAMES`]; other text is a copy.
        value: Cow<'static, str>,
        plain: bool,
        str_tag: bool,
        anchor: Option<String>,
    },
    /// A sequence starts.
    SequenceStart { anchor: Option<String> },
    /// A mapping starts.
    MappingStart { anchor: Option<String> },
    /// The innermost open sequence or mapping ends.
    End,
    /// `*name`.
    Alias { anchor: String },
}

/// The events of the first document of a text.
pub(super) struct Events<'a> {
    // Boxed: libyaml keeps a pointer to the parser inside it once its input is set.
    parser: Box<MaybeUninit<unsafe_sys::yaml_parser_t>>,
    done: bool,
    text: &'a str,
}

impl<'a> Events<'a> {
    /// A parser over `text`, which it borrows until dropped.
    pub(super) fn new(text: &'a str) -> Events<'a> {
        let mut parser = Box::new(MaybeUninit::<unsafe_sys::yaml_parser_t>::uninit());
        // SAFETY: initialize fills the parser (it only fails on allocation failure, which
        // aborts in this translation); the input outlives the parser by the lifetime 'a, and
        // the boxed parser does not move.
        unsafe {
            let p = parser.as_mut_ptr();
            assert!(unsafe_sys::yaml_parser_initialize(p).ok, "libyaml parser");
            unsafe_sys::yaml_parser_set_input_string(p, text.as_ptr(), text.len() as _);
        }
        Events {
            parser,
            done: false,
            text,
        }
    }

    /// The next event and where it starts; `None` after the first document (or the stream)
    /// ends. An error ends the stream.
    pub(super) fn next_event(&mut self) -> Option<Result<(Event, Loc), SyntaxError>> {
        while !self.done {
            let mut ev = MaybeUninit::<unsafe_sys::yaml_event_t>::uninit();
            // SAFETY: the parser was initialized in `new`; a successful parse fills `ev`,
            // which is deleted below after its strings were copied out.
            unsafe {
                let p = self.parser.as_mut_ptr();
                if !unsafe_sys::yaml_parser_parse(p, ev.as_mut_ptr()).ok {
                    self.done = true;
                    return Some(Err(error(&*p, self.text)));
                }
                let e = ev.as_mut_ptr();
                let at = loc((*e).start_mark);
                let event = convert(&*e);
                unsafe_sys::yaml_event_delete(e);
                match event {
                    Converted::Event(event) => return Some(Ok((event, at))),
                    Converted::Skip => {}
                    Converted::Stop => self.done = true,
                }
            }
        }
        None
    }
}

impl Drop for Events<'_> {
    fn drop(&mut self) {
        // SAFETY: initialized in `new`, deleted once.
        unsafe { unsafe_sys::yaml_parser_delete(self.parser.as_mut_ptr()) };
    }
}

enum Converted {
    Event(Event),
    Skip,
    Stop,
}

fn loc(m: unsafe_sys::yaml_mark_t) -> Loc {
    // libyaml counts lines and columns (in characters) from 0.
    Loc {
        line: m.line as usize + 1,
        col: m.column as usize + 1,
    }
}

/// A NUL-terminated string libyaml owns, copied (None for a null pointer).
///
/// # Safety
/// `p` is null or points to a NUL-terminated string.
unsafe fn owned(p: *const u8) -> Option<String> {
    if p.is_null() {
        return None;
    }
    let s = CStr::from_ptr(p.cast());
    Some(String::from_utf8_lossy(s.to_bytes()).into_owned())
}

/// # Safety
/// `e` is an event libyaml filled and has not deleted.
unsafe fn convert(e: &unsafe_sys::yaml_event_t) -> Converted {
    match e.type_ {
        unsafe_sys::YAML_SCALAR_EVENT => {
            let s = &e.data.scalar;
            let bytes = if s.value.is_null() {
                &[][..]
            } else {
                std::slice::from_raw_parts(s.value, s.length as usize)
            };
            let value = match field_name(bytes) {
                Some(name) => Cow::Borrowed(name),
                None => match std::str::from_utf8(bytes) {
                    Ok(v) => Cow::Owned(v.to_owned()),
                    Err(_) => Cow::Owned(String::from_utf8_lossy(bytes).into_owned()),
                },
            };
            let str_tag = !s.tag.is_null() && CStr::from_ptr(s.tag.cast()).to_bytes() == STR_TAG;
            Converted::Event(Event::Scalar {
                value,
                plain: s.style == unsafe_sys::YAML_PLAIN_SCALAR_STYLE,
                str_tag,
                anchor: owned(s.anchor),
            })
        }
        unsafe_sys::YAML_SEQUENCE_START_EVENT => Converted::Event(Event::SequenceStart {
            anchor: owned(e.data.sequence_start.anchor),
        }),
        unsafe_sys::YAML_MAPPING_START_EVENT => Converted::Event(Event::MappingStart {
            anchor: owned(e.data.mapping_start.anchor),
        }),
        unsafe_sys::YAML_SEQUENCE_END_EVENT | unsafe_sys::YAML_MAPPING_END_EVENT => {
            Converted::Event(Event::End)
        }
        unsafe_sys::YAML_ALIAS_EVENT => Converted::Event(Event::Alias {
            anchor: owned(e.data.alias.anchor).unwrap_or_default(),
        }),
        unsafe_sys::YAML_DOCUMENT_END_EVENT | unsafe_sys::YAML_STREAM_END_EVENT => Converted::Stop,
        _ => Converted::Skip,
    }
}

/// The field names of Kong's declarative entities (and of the most common plugin configs):
/// most scalars of a large config are these keys, and a shared static string costs no
/// allocation. None of them is a YAML null, boolean or number.
pub(super) const FIELD_NAMES: &[&str] = &[
    "_format_version",
    "_transform",
    "acls",
    "algorithm",
    "allow",
    "basicauth_credentials",
    "ca_certificates",
    "cert",
    "cert_alt",
    "certificate",
    "certificates",
    "client_certificate",
    "cloned_plugins",
    "condition",
    "config",
    "connect_timeout",
    "consumer",
    "consumer_groups",
    "consumers",
    "custom_id",
    "custom_plugins",
    "deny",
    "destinations",
    "enabled",
    "expression",
    "group",
    "handler",
    "hash_fallback",
    "hash_on",
    "header",
    "headers",
    "healthchecks",
    "host",
    "host_header",
    "hosts",
    "https_redirect_status_code",
    "id",
    "instance_name",
    "jwt_secrets",
    "key",
    "key_alt",
    "keyauth_credentials",
    "methods",
    "minute",
    "name",
    "password",
    "path",
    "path_handling",
    "paths",
    "plugins",
    "policy",
    "port",
    "preserve_host",
    "priority",
    "protocol",
    "protocols",
    "read_timeout",
    "regex_priority",
    "request_buffering",
    "response_buffering",
    "retries",
    "route",
    "routes",
    "schema",
    "second",
    "secret",
    "service",
    "services",
    "slots",
    "snis",
    "sources",
    "strip_path",
    "tags",
    "target",
    "targets",
    "tls_verify",
    "tls_verify_depth",
    "upstreams",
    "url",
    "username",
    "value",
    "vaults",
    "weight",
    "write_timeout",
];

/// The longest of [`FIELD_NAMES`].
pub(super) const LONGEST: usize = 26;

/// `bytes` as one of [`FIELD_NAMES`], if it is one: a few comparisons among the names of its
/// length (cheaper than the allocation it saves).
pub(super) fn field_name(bytes: &[u8]) -> Option<&'static str> {
    static BY_LENGTH: std::sync::LazyLock<Vec<Vec<&'static str>>> =
        std::sync::LazyLock::new(|| {
            let mut by_length = vec![Vec::new(); LONGEST + 1];
            for name in FIELD_NAMES {
                by_length[name.len()].push(*name);
            }
            by_length
        });
    let candidates = BY_LENGTH.get(bytes.len())?;
    // The names of one length mostly differ in their first byte: compared first, inline.
    let first = *bytes.first()?;
    candidates
        .iter()
        .copied()
        .find(|n| n.as_bytes()[0] == first && n.as_bytes() == bytes)
}

/// `!!str` as libyaml resolves it.
const STR_TAG: &[u8] = b"tag:yaml.org,2002:str";

/// libyaml's description of a failed parse, at the problem's position.
fn error(p: &unsafe_sys::yaml_parser_t, text: &str) -> SyntaxError {
    // SAFETY: libyaml's problem and context are null or static NUL-terminated strings.
    let describe = |s: *const std::os::raw::c_char| unsafe { owned(s.cast()) };
    let problem = describe(p.problem).unwrap_or_else(|| "invalid YAML".to_string());
    let message = match describe(p.context) {
        Some(context) if p.context_mark.line != p.problem_mark.line => {
            format!("{problem} ({context} at line {})", p.context_mark.line + 1)
        }
        Some(context) => format!("{problem} ({context})"),
        None => problem,
    };
    let at = if p.error == unsafe_sys::YAML_READER_ERROR {
        // The reader (a control character, say) reports a byte offset, not a mark.
        let before = text.get(..p.problem_offset as usize).unwrap_or(text);
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        Loc {
            line: before.matches('\n').count() + 1,
            col: before[line_start..].chars().count() + 1,
        }
    } else {
        loc(p.problem_mark)
    };
    SyntaxError { loc: at, message }
}
