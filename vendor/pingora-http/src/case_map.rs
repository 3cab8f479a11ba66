// Copyright 2026 Cloudflare, Inc.
//
// Licensed under the Apache License, Version 2.0 (the "License");
// you may not use this file except in compliance with the License.
// You may obtain a copy of the License at
//
// http://www.apache.org/licenses/LICENSE-2.0
//
// Unless required by applicable law or agreed to in writing, software
// distributed under the License is distributed on an "AS IS" BASIS,
// WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
// See the License for the specific language governing permissions and
// limitations under the License.

//! The original case of a message's header names, one per value, in the order the value map
//! visits its values.
//!
//! A [`HMap`] visits its names in the order they were first added, except that removing one
//! moves the last name into its place (`swap_remove`), and visits each name's values together,
//! in the order they were added. [`CaseMap`] makes each change to the value map itself and
//! mirrors it on a plain list: adding a field under a new name (nearly every field parsed or
//! added) is one push, where a second map cost a hash and an insert. Changes to an existing
//! name find its values' place by a walk over this list.

use http::header::{AsHeaderName, HeaderName};
use pingora_error::{ErrorType::*, OrErr, Result};

use crate::case_header_name::CaseHeaderName;
use crate::HMap;

/// The wire text of each value's name, in the order the value map visits its values.
#[derive(Debug, Clone, Default)]
pub(crate) struct CaseMap {
    cases: Vec<CaseHeaderName>,
}

impl CaseMap {
    pub(crate) fn with_capacity(capacity: usize) -> Self {
        CaseMap {
            cases: Vec::with_capacity(capacity),
        }
    }

    pub(crate) fn reserve(&mut self, additional: usize) {
        self.cases.reserve(additional);
    }

    /// Appends `value` under `name` to `values` and its wire text here.
    pub(crate) fn append<T>(
        &mut self,
        values: &mut HMap<T>,
        name: &HeaderName,
        case: CaseHeaderName,
        value: T,
    ) -> Result<bool> {
        // The non-panicking `try_append`: `append` panics past the map's maximum size.
        let existed = values
            .try_append(name, value)
            .or_err(InvalidHTTPHeader, "header value map size overflows MAX_SIZE")?;
        match existed.then(|| self.block(name.as_str())).flatten() {
            // After the name's other values.
            Some((start, len)) => self.cases.insert(start + len, case),
            None => self.cases.push(case),
        }
        Ok(existed)
    }

    /// Replaces `name`'s values in `values` by `value`, and their wire text by `case`.
    pub(crate) fn insert<T>(
        &mut self,
        values: &mut HMap<T>,
        name: &HeaderName,
        case: CaseHeaderName,
        value: T,
    ) {
        let existed = values.insert(name, value).is_some();
        match existed.then(|| self.block(name.as_str())).flatten() {
            // The name keeps its place; its values are now the new one alone.
            Some((start, 1)) => self.cases[start] = case,
            Some((start, len)) => drop(self.cases.splice(start..start + len, [case])),
            None => self.cases.push(case),
        }
    }

    /// Removes `name`'s values from `values` and their wire text from here.
    pub(crate) fn remove<'a, T, N>(&mut self, values: &mut HMap<T>, name: &'a N) -> Option<T>
    where
        N: ?Sized + AsRef<str>,
        &'a N: 'a + AsHeaderName,
    {
        let removed = values.remove(name)?;
        if let Some((start, len)) = self.block(name.as_ref()) {
            let end = start + len;
            // Unless it was the last name, the last name's values take its place.
            let last_len = match self.cases.last() {
                Some(last) if end < self.cases.len() => self.cases[end..]
                    .iter()
                    .rev()
                    .take_while(|c| c.as_slice().eq_ignore_ascii_case(last.as_slice()))
                    .count(),
                _ => 0,
            };
            self.cases.drain(start..end);
            self.cases[start..].rotate_right(last_len);
        }
        Some(removed)
    }

    /// Where `name`'s values are: the position of the first and how many. A name's values
    /// are next to each other, and no other name is the same text in another case.
    ///
    /// The walk starts from the end: a name changed again is most often one added late (by a
    /// proxy's own code, after the fields it parsed), and its last value is found first.
    fn block(&self, name: &str) -> Option<(usize, usize)> {
        let name = name.as_bytes();
        let is_name = |c: &CaseHeaderName| {
            let c = c.as_slice();
            c.len() == name.len() && c.eq_ignore_ascii_case(name)
        };
        let last = self.cases.iter().rposition(is_name)?;
        let before = self.cases[..last].iter().rev().take_while(|c| is_name(c)).count();
        Some((last - before, before + 1))
    }

    /// The wire text of each value of `values`, in its order; `None` if this list is out of
    /// step with the map (never expected: the caller then writes the names as the map has them).
    pub(crate) fn cases_of<'a, T>(
        &'a self,
        values: &HMap<T>,
    ) -> Option<impl Iterator<Item = &'a CaseHeaderName> + 'a> {
        (self.cases.len() == values.len()).then(|| self.cases.iter())
    }
}

#[cfg(test)]
mod tests {
    use crate::{RequestHeader, ResponseHeader};

    /// Random appends, inserts and removes under names in random case: each value carries
    /// the text its name was given in, and every field must go out under that text.
    #[test]
    fn each_value_keeps_the_case_it_came_with_through_any_changes() {
        let names = ["host", "x-a", "x-b", "cookie", "content-type", "x-c-d"];
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut next = |n: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % n
        };
        for round in 0..300 {
            let mut req = RequestHeader::build("GET", b"/", None).unwrap();
            let mut resp = ResponseHeader::build(200, None).unwrap();
            for step in 0..(round % 40) {
                let name = names[next(names.len() as u64) as usize];
                let case: String = name
                    .chars()
                    .map(|c| if next(2) == 0 { c.to_ascii_uppercase() } else { c })
                    .collect();
                let value = format!("{case}|{step}");
                match next(5) {
                    0 | 1 => {
                        req.append_header(case.clone(), &value).unwrap();
                        resp.append_header(case, &value).unwrap();
                    }
                    2 | 3 => {
                        req.insert_header(case.clone(), &value).unwrap();
                        resp.insert_header(case, &value).unwrap();
                    }
                    _ => {
                        req.remove_header(name);
                        resp.remove_header(name);
                    }
                }
                for wire in [wire_of(|b| req.header_to_h1_wire(b)), wire_of(|b| resp.header_to_h1_wire(b))] {
                    for line in wire.lines() {
                        let (written, value) = line.split_once(": ").unwrap();
                        let (given, _) = value.split_once('|').unwrap();
                        assert_eq!(written, given, "round {round}, step {step}:\n{wire}");
                    }
                    assert_eq!(wire.lines().count(), req.headers.len());
                }
                let mut mapped = Vec::new();
                req.map(|name, value| {
                    name.put(&mut mapped);
                    mapped.extend_from_slice(b": ");
                    mapped.extend_from_slice(value.as_bytes());
                    mapped.extend_from_slice(b"\r\n");
                    Ok(())
                })
                .unwrap();
                assert_eq!(mapped, wire_of(|b| req.header_to_h1_wire(b)).into_bytes());
            }
        }
    }

    fn wire_of(write: impl FnOnce(&mut Vec<u8>)) -> String {
        let mut buf = Vec::new();
        write(&mut buf);
        String::from_utf8(buf).unwrap()
    }
}
