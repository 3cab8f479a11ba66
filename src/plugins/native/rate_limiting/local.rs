//! The `local` policy's counters: in this process, shared by all workers, kept across reloads
//! (keyed by the plugin instance's id), sharded to keep lock contention low. Kong keeps them in
//! a shared dictionary of the node; here they are the process's.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hash, Hasher};
use std::sync::{LazyLock, Mutex, MutexGuard};

use super::window::Period;

/// One hash for the parts that name a counter (instance, identifier, limit name): counters
/// are keyed without allocating.
pub fn key_hash(parts: &[&str]) -> u64 {
    let mut h = HASHER.build_hasher();
    for p in parts {
        p.hash(&mut h);
    }
    h.finish()
}

static HASHER: LazyLock<std::collections::hash_map::RandomState> =
    LazyLock::new(std::collections::hash_map::RandomState::new);

/// The counters of every local-policy instance.
pub static COUNTERS: LazyLock<Counters> = LazyLock::new(Counters::default);

const SHARDS: usize = 32;

type CounterKey = (u64, Period, i64);

#[derive(Default)]
struct Shard {
    /// key → (count, window end in unix seconds)
    counts: HashMap<CounterKey, (u64, i64)>,
    /// Increments since the last sweep of expired windows.
    since_sweep: u32,
}

/// Counters by (key, period, window start).
#[derive(Default)]
pub struct Counters {
    shards: [Mutex<Shard>; SHARDS],
}

impl Counters {
    fn shard(&self, key: u64) -> MutexGuard<'_, Shard> {
        self.shards[(key as usize) % SHARDS]
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    /// The count in the window of `period` starting at `start`.
    pub fn get(&self, key: u64, period: Period, start: i64) -> u64 {
        self.shard(key)
            .counts
            .get(&(key, period, start))
            .map_or(0, |(n, _)| *n)
    }

    /// Adds `by` to the count of the window (which ends at `end`, when it may be forgotten).
    pub fn add(&self, key: u64, period: Period, start: i64, end: i64, by: u64) {
        let mut shard = self.shard(key);
        shard
            .counts
            .entry((key, period, start))
            .or_insert((0, end))
            .0 += by;
        shard.since_sweep += 1;
        if shard.since_sweep >= 4096 {
            shard.since_sweep = 0;
            let now = super::window::now();
            shard.counts.retain(|_, (_, end)| *end > now);
        }
    }
}
