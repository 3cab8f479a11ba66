//! Figures that every worker thread writes on the request path, kept per worker: each worker
//! writes its own shard with plain loads and stores (no locked read-modify-write, no cache line
//! shared with another worker), and a scrape adds the shards up.
//!
//! A thread takes a shard index the first time it records. The first `workers` threads own
//! theirs; any thread past them (a test's runtime, a thread made later) shares one last shard,
//! which it writes with atomic read-modify-writes. No two threads ever write one shard with
//! plain stores, so no observation is lost.

use std::cell::Cell;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};

use prometheus::proto;

use super::histogram::{merged, Histogram};

/// Worker threads that get a shard of their own in series made from now on.
static WORKERS: AtomicUsize = AtomicUsize::new(1);
/// The next thread's shard index.
static NEXT: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    static SLOT: Cell<usize> = const { Cell::new(usize::MAX) };
}

/// Gives each of `n` worker threads a shard of its own (called once, before serving).
pub fn set_workers(n: usize) {
    WORKERS.store(n.max(1), Relaxed);
}

/// This thread's shard index.
fn slot() -> usize {
    SLOT.with(|s| {
        let mut i = s.get();
        if i == usize::MAX {
            i = NEXT.fetch_add(1, Relaxed);
            s.set(i);
        }
        i
    })
}

/// A shard on cache lines of its own (128: Intel's prefetcher pulls lines in pairs).
#[repr(align(128))]
#[derive(Default)]
struct Padded<T>(T);

/// This thread's shard of `shards`, and whether the thread owns it (else it shares the last
/// one and must write it with atomic read-modify-writes).
fn shard<T>(shards: &[Padded<T>]) -> (&T, bool) {
    let shared = shards.len() - 1;
    match slot() {
        i if i < shared => (&shards[i].0, true),
        _ => (&shards[shared].0, false),
    }
}

/// A latency histogram with one shard per worker.
pub struct PerWorker {
    shards: Box<[Padded<Histogram>]>,
}

impl Default for PerWorker {
    fn default() -> Self {
        let n = WORKERS.load(Relaxed) + 1;
        PerWorker {
            shards: (0..n).map(|_| Padded::default()).collect(),
        }
    }
}

impl PerWorker {
    /// Records one observation (milliseconds) in this thread's shard.
    pub fn observe(&self, v: f64) {
        match shard(&self.shards) {
            (h, true) => h.observe_exclusive(v),
            (h, false) => h.observe(v),
        }
    }

    /// The exposition of every shard added together.
    pub fn proto(&self) -> proto::Histogram {
        merged(self.shards.iter().map(|s| &s.0))
    }
}

/// `N` counters with one shard per worker; a count may go down (a connection closed on
/// another thread than the one that counted it open): shards add up modulo 2^64.
pub struct Counters<const N: usize> {
    shards: Box<[Padded<[AtomicU64; N]>]>,
}

impl<const N: usize> Default for Counters<N> {
    fn default() -> Self {
        let n = WORKERS.load(Relaxed) + 1;
        Counters {
            shards: (0..n)
                .map(|_| Padded(std::array::from_fn(|_| AtomicU64::new(0))))
                .collect(),
        }
    }
}

impl<const N: usize> Counters<N> {
    /// Adds `delta` to counter `i` in this thread's shard.
    pub fn add(&self, i: usize, delta: i64) {
        match shard(&self.shards) {
            (c, true) => c[i].store(c[i].load(Relaxed).wrapping_add_signed(delta), Relaxed),
            (c, false) => {
                c[i].fetch_add(delta as u64, Relaxed);
            }
        }
    }

    /// Counter `i` over every shard.
    pub fn sum(&self, i: usize) -> u64 {
        self.shards
            .iter()
            .fold(0u64, |t, s| t.wrapping_add(s.0[i].load(Relaxed)))
    }

    /// A counter that goes up and down (open connections) over every shard. The shards are
    /// read one after the other, so a reader may see a decrement on one thread and not yet the
    /// increment it followed on another: a total below zero reads as 0.
    pub fn level(&self, i: usize) -> u64 {
        (self.sum(i) as i64).max(0) as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_add_up_across_threads_and_go_down_elsewhere() {
        let c = std::sync::Arc::new(Counters::<2>::default());
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let c = c.clone();
                std::thread::spawn(move || {
                    for _ in 0..10_000 {
                        c.add(0, 1);
                        c.add(1, 1);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        // Counted up on four threads, down on this one.
        for _ in 0..40_000 {
            c.add(1, -1);
        }
        assert_eq!(c.sum(0), 40_000);
        assert_eq!(c.level(1), 0);
        c.add(1, -1);
        assert_eq!(c.level(1), 0, "a level never reads below zero");
    }

    #[test]
    fn threads_past_the_owned_shards_lose_nothing() {
        let h = std::sync::Arc::new(PerWorker::default());
        // More threads than shards: most share the last one.
        let threads: Vec<_> = (0..6)
            .map(|_| {
                let h = h.clone();
                std::thread::spawn(move || {
                    for _ in 0..10_000 {
                        h.observe(3.0);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        h.observe(0.5);
        let p = h.proto();
        assert_eq!(p.get_sample_count(), 60_001);
        assert_eq!(p.get_bucket()[0].cumulative_count(), 1);
        assert_eq!(p.get_bucket()[2].cumulative_count(), 60_001);
        assert_eq!(p.get_sample_sum(), 180_000.5);
    }
}
