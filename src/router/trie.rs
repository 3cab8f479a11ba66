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
///
/// Built as linked nodes, then laid out by [`PrefixTrie::finish`] in three flat arrays in
/// depth-first order (nodes, their labels' bytes, their edges): a lookup in a trie of 10,000
/// paths touches a few adjacent cache lines per level instead of a node, a label and an edge
/// list in three allocations of their own.
#[derive(Debug)]
pub(crate) struct PrefixTrie {
    /// The nodes while keys are inserted; empty once finished.
    nodes: Vec<Node>,
    slots: u32,
    /// The finished trie; the root is `flat[0]`.
    flat: Vec<Flat>,
    labels: Vec<u8>,
    edges: Vec<(u8, u32)>,
}

/// A finished node: its label is `labels[label..label + label_len]`, its children
/// `edges[edges..edges + edges_len]` (sorted by first byte, indexes into `flat`).
#[derive(Debug, Clone, Copy)]
struct Flat {
    label: u32,
    label_len: u32,
    edges: u32,
    edges_len: u32,
    /// `NO_SLOT` when no key ends here.
    slot: u32,
}

const NO_SLOT: u32 = u32::MAX;

impl Default for PrefixTrie {
    fn default() -> Self {
        PrefixTrie {
            nodes: vec![Node::default()],
            slots: 0,
            flat: Vec::new(),
            labels: Vec::new(),
            edges: Vec::new(),
        }
    }
}

/// Offsets and lengths in the flat arrays are u32: a router's keys stay far below 4 GiB.
fn idx(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
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
        debug_assert!(self.flat.is_empty(), "insert after finish");
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

    /// Lays the trie out flat for lookups and frees the nodes; call once after the last
    /// insert.
    pub(crate) fn finish(&mut self) {
        if self.nodes.is_empty() {
            return; // finished already
        }
        let nodes = std::mem::take(&mut self.nodes);
        let mut flat = Vec::with_capacity(nodes.len());
        let mut edges = Vec::with_capacity(nodes.len().saturating_sub(1));
        self.labels = Vec::with_capacity(nodes.iter().map(|n| n.label.len()).sum());
        // Depth-first, children in byte order; a node's edges are filled in once its
        // children's places are known.
        let mut order = vec![(0usize, u32::MAX)];
        while let Some((n, parent_edge)) = order.pop() {
            let at = idx(flat.len());
            if parent_edge != u32::MAX {
                edges[parent_edge as usize] = (nodes[n].label[0], at);
            }
            let node = &nodes[n];
            flat.push(Flat {
                label: idx(self.labels.len()),
                label_len: idx(node.label.len()),
                edges: idx(edges.len()),
                edges_len: idx(node.children.len()),
                slot: node.slot.unwrap_or(NO_SLOT),
            });
            self.labels.extend_from_slice(&node.label);
            let first = edges.len();
            edges.extend(node.children.iter().map(|&(b, _)| (b, u32::MAX)));
            // Pushed in reverse so that the first child is laid out next to its parent.
            for (i, &(_, child)) in node.children.iter().enumerate().rev() {
                order.push((child as usize, idx(first + i)));
            }
        }
        self.flat = flat;
        self.edges = edges;
    }

    /// Calls `f(key_len, slot)` for every inserted key that prefixes `path`, shortest
    /// first. Stops early when `f` returns false. The trie must be finished.
    pub(crate) fn walk(&self, path: &[u8], mut f: impl FnMut(usize, u32) -> bool) {
        debug_assert!(self.nodes.is_empty(), "walk before finish");
        let Some(mut node) = self.flat.first() else {
            return;
        };
        let mut depth = 0usize;
        loop {
            if node.slot != NO_SLOT && !f(depth, node.slot) {
                return;
            }
            let Some(&next) = path.get(depth) else {
                return;
            };
            let edges = &self.edges[node.edges as usize..][..node.edges_len as usize];
            let Ok(at) = edges.binary_search_by_key(&next, |&(b, _)| b) else {
                return;
            };
            let child = &self.flat[edges[at].1 as usize];
            let label = &self.labels[child.label as usize..][..child.label_len as usize];
            if !path[depth..].starts_with(label) {
                return;
            }
            depth += label.len();
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
        t.finish(); // a second call keeps the finished trie
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
        let mut t = PrefixTrie::default();
        assert_eq!(t.insert(b""), 0);
        assert_eq!(t.insert(b"/a"), 1);
        t.finish();
        assert_eq!(hits(&t, "x"), vec![(0, 0)]);
        assert_eq!(hits(&t, "/ab"), vec![(0, 0), (2, 1)]);
    }

    /// The flat layout answers as a scan of every key would, on a trie with shared
    /// prefixes, splits and keys that end inside other keys' labels.
    #[test]
    fn agrees_with_a_scan_of_every_key() {
        let keys: Vec<String> = (0..3000)
            .map(|i| match i % 4 {
                0 => format!("/re{i}/"),
                1 => format!("/re{}", i / 7),
                2 => format!("/a/{}/b", i % 13),
                _ => format!("/{}", i % 97),
            })
            .collect();
        let mut t = PrefixTrie::default();
        let mut slots = std::collections::HashMap::new();
        for k in &keys {
            let s = t.insert(k.as_bytes());
            assert_eq!(*slots.entry(k.as_str()).or_insert(s), s, "{k}");
        }
        t.finish();
        let mut paths: Vec<String> = keys.iter().map(|k| format!("{k}x")).collect();
        paths.extend(["", "/", "/re", "/re12/x", "/a/5/b/c", "/zz"].map(String::from));
        for p in &paths {
            let mut want: Vec<(usize, u32)> = slots
                .iter()
                .filter(|(k, _)| p.starts_with(**k))
                .map(|(k, s)| (k.len(), *s))
                .collect();
            want.sort_unstable();
            assert_eq!(hits(&t, p), want, "{p}");
        }
    }
}
