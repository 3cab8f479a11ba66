//! A byte-wise radix trie from path prefixes to slot ids.

/// One node; the root has an empty label.
#[derive(Debug, Default)]
struct Node {
    /// Bytes on the edge leading into this node.
    label: Box<[u8]>,
    /// Children sorted by the first byte of their label (distinct first bytes).
    children: Vec<(u8, u32)>,
    /// Slot of the key ending exactly here, if any.
    slot: Option<u32>,
}

/// Maps byte-string keys to dense slot ids (0, 1, ... in insertion order of new keys);
/// a lookup walks the request path once and reports every key that prefixes it.
#[derive(Debug)]
pub(crate) struct PrefixTrie {
    nodes: Vec<Node>,
    slots: u32,
}

impl Default for PrefixTrie {
    fn default() -> Self {
        PrefixTrie {
            nodes: vec![Node::default()],
            slots: 0,
        }
    }
}

fn common_len(a: &[u8], b: &[u8]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}

impl PrefixTrie {
    /// True when no key was inserted.
    pub(crate) fn is_empty(&self) -> bool {
        self.slots == 0
    }

    /// The slot of the key ending at `node`, created on first use.
    fn slot_at(&mut self, node: usize) -> u32 {
        if let Some(s) = self.nodes[node].slot {
            return s;
        }
        let s = self.slots;
        self.slots += 1;
        self.nodes[node].slot = Some(s);
        s
    }

    fn new_node(&mut self, label: &[u8]) -> u32 {
        self.nodes.push(Node {
            label: label.into(),
            ..Node::default()
        });
        // More than u32::MAX nodes would need more than u32::MAX prefix bytes.
        u32::try_from(self.nodes.len() - 1).unwrap_or(u32::MAX)
    }

    /// Returns the slot of `key`, allocating the next id for a new key.
    pub(crate) fn insert(&mut self, key: &[u8]) -> u32 {
        let mut node = 0usize;
        let mut rest = key;
        loop {
            let Some(&first) = rest.first() else {
                return self.slot_at(node);
            };
            let pos = self.nodes[node]
                .children
                .binary_search_by_key(&first, |&(b, _)| b);
            let child = match pos {
                Err(at) => {
                    let id = self.new_node(rest);
                    self.nodes[node].children.insert(at, (first, id));
                    return self.slot_at(id as usize);
                }
                Ok(at) => self.nodes[node].children[at].1 as usize,
            };
            let label = &self.nodes[child].label;
            let common = common_len(label, rest);
            if common < label.len() {
                // Split the edge: `child` keeps the tail of its label under a new middle node.
                let head: Box<[u8]> = label[..common].into();
                let tail: Box<[u8]> = label[common..].into();
                let tail_first = tail[0];
                let mid = self.new_node(&head);
                self.nodes[child].label = tail;
                self.nodes[mid as usize]
                    .children
                    .push((tail_first, child as u32));
                if let Ok(at) = pos {
                    self.nodes[node].children[at].1 = mid;
                }
                node = mid as usize;
            } else {
                node = child;
            }
            rest = &rest[common..];
        }
    }

    /// Releases spare capacity; call once after the last insert.
    pub(crate) fn finish(&mut self) {
        for n in &mut self.nodes {
            n.children.shrink_to_fit();
        }
        self.nodes.shrink_to_fit();
    }

    /// Calls `f(key_len, slot)` for every inserted key that prefixes `path`, shortest
    /// first. Stops early when `f` returns false.
    pub(crate) fn walk(&self, path: &[u8], mut f: impl FnMut(usize, u32) -> bool) {
        let mut node = &self.nodes[0];
        let mut depth = 0usize;
        loop {
            if let Some(slot) = node.slot {
                if !f(depth, slot) {
                    return;
                }
            }
            let Some(&next) = path.get(depth) else {
                return;
            };
            let Ok(at) = node.children.binary_search_by_key(&next, |&(b, _)| b) else {
                return;
            };
            let child = &self.nodes[node.children[at].1 as usize];
            if !path[depth..].starts_with(&child.label) {
                return;
            }
            depth += child.label.len();
            node = child;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hits(t: &PrefixTrie, path: &str) -> Vec<(usize, u32)> {
        let mut out = Vec::new();
        t.walk(path.as_bytes(), |d, s| {
            out.push((d, s));
            true
        });
        out
    }

    #[test]
    fn finds_all_prefixes() {
        let mut t = PrefixTrie::default();
        assert!(t.is_empty());
        assert_eq!(t.insert(b"/"), 0);
        assert_eq!(t.insert(b"/foo/bar"), 1);
        assert_eq!(t.insert(b"/foo"), 2);
        assert_eq!(t.insert(b"/fob"), 3);
        assert_eq!(t.insert(b"/foo"), 2);
        assert_eq!(t.insert(b"/foo/bar/baz"), 4);
        t.finish();
        assert!(!t.is_empty());
        assert_eq!(hits(&t, "/foo/bar"), vec![(1, 0), (4, 2), (8, 1)]);
        assert_eq!(hits(&t, "/foo/ba"), vec![(1, 0), (4, 2)]);
        assert_eq!(hits(&t, "/fob"), vec![(1, 0), (4, 3)]);
        assert_eq!(hits(&t, "/x"), vec![(1, 0)]);
        assert_eq!(hits(&t, "foo"), vec![]);
        assert_eq!(
            hits(&t, "/foo/bar/bazz"),
            vec![(1, 0), (4, 2), (8, 1), (12, 4)]
        );
        assert_eq!(t.insert(b""), 5);
        assert_eq!(hits(&t, "x"), vec![(0, 5)]);
    }
}
