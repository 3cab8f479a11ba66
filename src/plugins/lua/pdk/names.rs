//! Header names as the PDK's setters receive them, parsed once per worker thread: plugins set
//! the same few names on every request (`kong.service.request.set_header("x-up", v)`), and each
//! call parsed the name, allocated it and copied it into both of the header's maps.

use std::cell::RefCell;

use bytes::Bytes;
use http::HeaderName;
use mlua::{FromLua, Lua, Value};
use rustc_hash::FxHashMap;

use super::{text_from_stack, HeaderKey};

/// Most names kept per thread. A plugin that makes names up (`"x-" .. id`) fills the cache,
/// after which new names take the general path; nothing is evicted.
const CAPACITY: usize = 256;

/// A header name made once: the name for the header maps and its text for the wire (the name
/// normalised by [`super::header_key`], as the general path writes it).
#[derive(Clone)]
pub(super) struct Named {
    pub name: HeaderName,
    pub wire: Bytes,
}

thread_local! {
    static NAMES: RefCell<FxHashMap<Box<str>, Named>> = RefCell::new(FxHashMap::default());
}

/// The name `raw` (as the plugin gave it) made once per thread; None when it is not a valid
/// header name (the general path then reports it).
pub(super) fn named(raw: &str) -> Option<Named> {
    NAMES.with(|names| {
        let mut names = names.try_borrow_mut().ok()?;
        if let Some(n) = names.get(raw) {
            return Some(n.clone());
        }
        let key = super::header_key(raw);
        let made = Named {
            name: HeaderName::from_bytes(key.as_bytes()).ok()?,
            wire: Bytes::copy_from_slice(key.as_bytes()),
        };
        if names.len() < CAPACITY {
            names.insert(raw.into(), made.clone());
        }
        Some(made)
    })
}

/// A header setter's name argument: made once ([`named`]), or the normalised text of a name
/// that is not valid, for the general path to refuse as before.
pub(super) enum SetName {
    Named(Named),
    Text(HeaderKey),
}

impl SetName {
    pub(super) fn from_text(raw: &str) -> SetName {
        match named(raw) {
            Some(n) => SetName::Named(n),
            None => SetName::Text(HeaderKey::from_text(raw)),
        }
    }

    /// The normalised name as text.
    pub fn into_string(self) -> String {
        match self {
            // The wire text is the normalised name, made from a `&str`.
            SetName::Named(n) => String::from_utf8_lossy(&n.wire).into_owned(),
            SetName::Text(k) => k.0,
        }
    }
}

impl FromLua for SetName {
    fn from_lua(value: Value, lua: &Lua) -> mlua::Result<Self> {
        String::from_lua(value, lua).map(|name| SetName::from_text(&name))
    }

    unsafe fn from_stack(idx: std::ffi::c_int, lua: &mlua::state::RawLua) -> mlua::Result<Self> {
        // SAFETY: mlua passes a valid index of the callback's stack.
        unsafe { text_from_stack(idx, lua, SetName::from_text) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_normalised_once_and_invalid_ones_left_to_the_general_path() {
        let n = named(" X_Up ").expect("a valid name");
        assert_eq!(n.name.as_str(), "x-up");
        assert_eq!(&n.wire[..], b"x-up");
        let again = named(" X_Up ").expect("cached");
        assert_eq!(again.name, n.name);
        assert!(named("bad name").is_none());
        assert!(matches!(SetName::from_text("bad name"), SetName::Text(_)));
        assert_eq!(SetName::from_text("Host").into_string(), "host");
    }

    #[test]
    fn the_cache_stops_growing_at_its_capacity() {
        for i in 0..CAPACITY + 50 {
            assert!(named(&format!("x-made-up-{i}")).is_some());
        }
        NAMES.with(|names| assert!(names.borrow().len() <= CAPACITY));
    }
}
