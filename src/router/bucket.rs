//! A bucket: the candidates that share one host key, indexed by path.
//!
//! Plain prefixes and the literal prefixes of regex paths share one radix trie; each
//! trie key owns a slot with the ranks of the plain-prefix candidates ending there
//! and the regexes whose literal prefix it is. A lookup walks the trie once along
//! the request path and only looks at those slots.

use regex::{RegexSet, RegexSetBuilder};

use super::regex_cache::LazyRegex;

use super::trie::PrefixTrie;

/// Above this many regexes in one slot, the slot runs them as a `RegexSet`.
const SET_THRESHOLD: usize = 8;

/// Compile limits for slot regex sets (a set that does not fit is split in halves).
/// The lazy-DFA budget matters: thousands of Unicode-aware patterns thrash a small cache.
const SET_SIZE_LIMIT: usize = 64 << 20;
const SET_DFA_LIMIT: usize = 32 << 20;

/// The part of a request path that made a candidate match.
#[derive(Debug, Clone, Copy)]
pub(crate) enum PathHit {
    /// The candidate has no paths.
    None,
    /// `path[..len]` is the candidate's prefix.
    Prefix(usize),
    /// One of the candidate's regexes matched.
    Regex,
}

/// Best candidate found so far during a lookup (`rank == u32::MAX`: none).
pub(crate) struct Best {
    pub(crate) rank: u32,
    pub(crate) hit: PathHit,
}

impl Best {
    pub(crate) fn none() -> Best {
        Best {
            rank: u32::MAX,
            hit: PathHit::None,
        }
    }
}

/// Some regexes as one set; `entries[i]` belongs to pattern `i`.
#[derive(Debug)]
struct RegexChunk {
    set: RegexSet,
    entries: Vec<(u32, u32)>,
}

/// The regexes filed under one trie key.
#[derive(Debug, Default)]
struct RegexGroup {
    /// (rank, regex id), sorted; within a rank, ids follow path order.
    entries: Vec<(u32, u32)>,
    /// Consecutive runs of `entries` compiled as sets (empty for small groups).
    chunks: Vec<RegexChunk>,
}

#[derive(Debug, Default)]
struct Slot {
    /// Ranks of plain-prefix candidates whose prefix is this key, ascending.
    prefix_ranks: Vec<u32>,
    regex: RegexGroup,
}

/// Candidates that share a host key (or have no host).
#[derive(Debug, Default)]
pub(crate) struct Bucket {
    /// Ranks of path-less candidates, ascending.
    no_path: Vec<u32>,
    trie: PrefixTrie,
    slots: Vec<Slot>,
}

fn build_chunks(entries: &[(u32, u32)], regexes: &[LazyRegex]) -> Result<Vec<RegexChunk>, String> {
    let patterns = entries
        .iter()
        .map(|&(_, id)| regexes.get(id as usize).map_or("", LazyRegex::as_str));
    let built = RegexSetBuilder::new(patterns)
        .size_limit(SET_SIZE_LIMIT)
        .dfa_size_limit(SET_DFA_LIMIT)
        .build();
    match built {
        Ok(set) => Ok(vec![RegexChunk {
            set,
            entries: entries.to_vec(),
        }]),
        Err(e) if entries.len() <= 1 => Err(e.to_string()),
        Err(_) => {
            let (a, b) = entries.split_at(entries.len() / 2);
            let mut chunks = build_chunks(a, regexes)?;
            chunks.extend(build_chunks(b, regexes)?);
            Ok(chunks)
        }
    }
}

/// Takes the first candidate of `ranks` (ascending) that passes `check`, if it beats `best`.
fn scan_ranks(ranks: &[u32], hit: PathHit, check: &mut impl FnMut(u32) -> bool, best: &mut Best) {
    for &rank in ranks {
        if rank >= best.rank {
            return;
        }
        if check(rank) {
            *best = Best { rank, hit };
            return;
        }
    }
}

impl RegexGroup {
    fn scan(
        &self,
        path: &str,
        regexes: &[LazyRegex],
        check: &mut impl FnMut(u32) -> bool,
        best: &mut Best,
    ) {
        if self.chunks.is_empty() {
            // Small group: cheap field checks first, then the regex itself.
            let mut rejected = u32::MAX;
            for &(rank, id) in &self.entries {
                if rank >= best.rank {
                    return;
                }
                if rank == rejected {
                    continue;
                }
                if !check(rank) {
                    rejected = rank;
                    continue;
                }
                if regexes.get(id as usize).is_some_and(|re| re.is_match(path)) {
                    *best = Best {
                        rank,
                        hit: PathHit::Regex,
                    };
                    return;
                }
            }
            return;
        }
        for chunk in &self.chunks {
            match chunk.entries.first() {
                Some(&(first, _)) if first < best.rank => {}
                _ => return,
            }
            // `is_match` first: a miss costs one scan and no allocation.
            if !chunk.set.is_match(path) {
                continue;
            }
            // Set matches come in pattern order, which is rank order.
            for i in chunk.set.matches(path).iter() {
                let Some(&(rank, _)) = chunk.entries.get(i) else {
                    break;
                };
                if rank >= best.rank {
                    break;
                }
                if check(rank) {
                    *best = Best {
                        rank,
                        hit: PathHit::Regex,
                    };
                    break;
                }
            }
        }
    }
}

impl Bucket {
    fn slot(&mut self, key: &str) -> &mut Slot {
        let s = self.trie.insert(key.as_bytes()) as usize;
        if s >= self.slots.len() {
            self.slots.resize_with(s + 1, Slot::default);
        }
        &mut self.slots[s]
    }

    /// Files a candidate without paths. Ranks must be added in ascending order.
    pub(crate) fn add_path_less(&mut self, rank: u32) {
        if self.no_path.last() != Some(&rank) {
            self.no_path.push(rank);
        }
    }

    /// Files a plain-prefix candidate under its prefix.
    pub(crate) fn add_prefix(&mut self, prefix: &str, rank: u32) {
        self.slot(prefix).prefix_ranks.push(rank);
    }

    /// Files regex `id` of candidate `rank` under the regex's literal prefix.
    pub(crate) fn add_regex(&mut self, literal: &str, rank: u32, id: u32) {
        self.slot(literal).regex.entries.push((rank, id));
    }

    /// Sorts the slots and compiles the large regex groups; call once after the last add.
    pub(crate) fn finish(&mut self, regexes: &[LazyRegex]) -> Result<(), (u32, String)> {
        self.trie.finish();
        self.no_path.shrink_to_fit();
        self.slots.shrink_to_fit();
        for slot in &mut self.slots {
            slot.prefix_ranks.sort_unstable();
            slot.prefix_ranks.dedup();
            slot.prefix_ranks.shrink_to_fit();
            let group = &mut slot.regex;
            group.entries.sort_unstable();
            group.entries.dedup();
            group.entries.shrink_to_fit();
            if group.entries.len() > SET_THRESHOLD {
                let first = group.entries.first().map_or(0, |&(rank, _)| rank);
                group.chunks = build_chunks(&group.entries, regexes).map_err(|e| (first, e))?;
            }
        }
        Ok(())
    }

    /// Improves `best` with this bucket's candidates that match `path` and pass `check`
    /// (the non-path fields).
    pub(crate) fn scan(
        &self,
        path: &str,
        regexes: &[LazyRegex],
        check: &mut impl FnMut(u32) -> bool,
        best: &mut Best,
    ) {
        scan_ranks(&self.no_path, PathHit::None, check, best);
        if self.trie.is_empty() {
            return;
        }
        self.trie.walk(path.as_bytes(), |len, slot| {
            if let Some(s) = self.slots.get(slot as usize) {
                scan_ranks(&s.prefix_ranks, PathHit::Prefix(len), check, best);
                if !s.regex.entries.is_empty() {
                    s.regex.scan(path, regexes, check, best);
                }
            }
            // Nothing deeper can beat the best possible rank.
            best.rank != 0
        });
    }
}
