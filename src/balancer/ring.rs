//! Kong's consistent-hashing continuum (ketama-like): a ring of `slots` points (at least 1000)
//! where each target owns points in proportion to its weight (160 per target when weights
//! are equal), placed by xxHash32 of `host:port #n`. A value hashes to a point and takes the
//! first owned point found walking down the ring, so adding or removing a target moves only
//! the keys whose points it takes or frees. With more than `slots` points wanted (thousands of
//! targets), later targets get fewer points: raise `slots`.

use xxhash_rust::xxh32::xxh32;

/// Points per target when all weights are equal (Kong's SERVER_POINTS).
const SERVER_POINTS: u64 = 160;
/// Kong's smallest continuum.
const MIN_POINTS: u32 = 1000;
/// A point owned by no target.
const FREE: u16 = u16::MAX;

/// The continuum of one upstream.
#[derive(Debug)]
pub struct Ring {
    /// Point → target index (FREE when unowned).
    points: Vec<u16>,
}

/// xxHash32 of a string (seed 0), the hash Kong's balancer uses.
pub fn hash(value: &str) -> u32 {
    xxh32(value.as_bytes(), 0)
}

impl Ring {
    /// Builds the ring; `targets` are `(name, weight)` with weight > 0, where the name is
    /// `host:port`. The layout depends only on the set of targets, not on their order.
    pub fn new(slots: u32, targets: &[(String, u32)]) -> Ring {
        let size = slots.max(MIN_POINTS) as usize;
        let mut points = vec![FREE; size];
        let total: u64 = targets.iter().map(|t| u64::from(t.1)).sum();
        if total == 0 {
            return Ring { points };
        }
        // Sorted by name so that a collision always goes to the same target.
        let mut order: Vec<usize> = (0..targets.len()).collect();
        order.sort_by(|&a, &b| targets[a].0.cmp(&targets[b].0));
        let n = targets.len() as u64;
        for i in order {
            let (name, weight) = &targets[i];
            let entries = (u64::from(*weight) * n * SERVER_POINTS / total).max(1);
            for k in 1..=entries {
                let p = hash(&format!("{name} #{k}")) as usize % size;
                // A point already taken stays with its owner. Kong gives the loser an extra
                // point instead, which can move keys between targets that did not change.
                if points[p] == FREE {
                    points[p] = i as u16;
                }
            }
        }
        Ring { points }
    }

    /// Walks the ring down from the point of `value` and returns the first target accepted
    /// by `usable`.
    pub fn find(&self, value: &str, usable: impl Fn(usize) -> bool) -> Option<usize> {
        let size = self.points.len();
        let start = hash(value) as usize % size;
        (0..size)
            .map(|step| self.points[(start + size - step) % size])
            .filter(|&t| t != FREE)
            .map(usize::from)
            .find(|&t| usable(t))
    }

    /// How many points each target owns (for tests).
    pub fn shares(&self, targets: usize) -> Vec<usize> {
        let mut out = vec![0; targets];
        for &t in &self.points {
            if t != FREE {
                out[usize::from(t)] += 1;
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn targets(n: usize) -> Vec<(String, u32)> {
        (0..n).map(|i| (format!("10.0.0.{i}:80"), 100)).collect()
    }

    #[test]
    fn weights_give_proportional_shares() {
        let ring = Ring::new(10000, &[("a:1".into(), 100), ("b:1".into(), 300)]);
        let shares = ring.shares(2);
        // 80 and 240 points, less the few that collide.
        assert!((75..=80).contains(&shares[0]), "{shares:?}");
        assert!((228..=240).contains(&shares[1]), "{shares:?}");
    }

    #[test]
    fn adding_a_target_moves_few_keys() {
        let before = Ring::new(10000, &targets(4));
        let keys: Vec<String> = (0..2000).map(|i| format!("user-{i}")).collect();
        // The new target sorts after the others, then before them.
        for first in ["10.0.0.9:80", "0.0.0.0:1"] {
            let mut five = targets(4);
            five.push((first.to_string(), 100));
            let after = Ring::new(10000, &five);
            let mut moved = 0;
            for k in &keys {
                let a = before.find(k, |_| true).unwrap();
                let b = after.find(k, |_| true).unwrap();
                if a != b {
                    assert_eq!(b, 4, "{k} moved from {a} to {b}");
                    moved += 1;
                }
            }
            // Ideal is 1/5 of the keys.
            assert!((200..700).contains(&moved), "{moved} keys moved");
        }
    }

    #[test]
    fn unusable_targets_are_skipped() {
        let ring = Ring::new(1000, &targets(3));
        let first = ring.find("k", |_| true).unwrap();
        let other = ring.find("k", |t| t != first).unwrap();
        assert_ne!(first, other);
        assert_eq!(ring.find("k", |_| false), None);
    }
}
