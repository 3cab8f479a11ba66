//! A latency histogram of plain atomics with Kong's buckets, and its exposition.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use prometheus::proto;

use super::LATENCY_BUCKETS;

/// One latency histogram: observations per bucket (the last past every bound) and their sum.
/// The count is the buckets' total, so a scrape never sees a count that disagrees with them.
#[derive(Default)]
pub struct Histogram {
    buckets: [AtomicU64; LATENCY_BUCKETS.len() + 1],
    /// The sum's `f64` bits.
    sum: AtomicU64,
}

impl Histogram {
    /// Records one observation (milliseconds).
    pub fn observe(&self, v: f64) {
        self.buckets[bucket(v)].fetch_add(1, Relaxed);
        let _ = self.sum.fetch_update(Relaxed, Relaxed, |bits| {
            Some((f64::from_bits(bits) + v).to_bits())
        });
    }

    /// Records one observation with plain loads and stores: no read-modify-write, so no locked
    /// instruction. Only for a histogram that one thread alone writes (a [`super::local`]
    /// shard); readers on other threads still see whole values.
    pub fn observe_exclusive(&self, v: f64) {
        let n = &self.buckets[bucket(v)];
        n.store(n.load(Relaxed) + 1, Relaxed);
        let sum = f64::from_bits(self.sum.load(Relaxed)) + v;
        self.sum.store(sum.to_bits(), Relaxed);
    }

    /// Observations so far.
    pub fn count(&self) -> u64 {
        self.buckets.iter().map(|b| b.load(Relaxed)).sum()
    }

    /// The exposition of this histogram.
    pub fn proto(&self) -> proto::Histogram {
        merged(std::iter::once(self))
    }
}

/// The bucket `v` falls in (bounds are inclusive, as Prometheus' `le`).
fn bucket(v: f64) -> usize {
    LATENCY_BUCKETS.partition_point(|bound| *bound < v)
}

/// The exposition of the histograms `parts` added together (the shards of one series).
pub fn merged<'a>(parts: impl Iterator<Item = &'a Histogram> + Clone) -> proto::Histogram {
    let sum: f64 = parts
        .clone()
        .map(|h| f64::from_bits(h.sum.load(Relaxed)))
        .sum();
    let total = |i: usize| {
        let parts = parts.clone();
        parts.map(|h| h.buckets[i].load(Relaxed)).sum::<u64>()
    };
    let mut cumulative = 0;
    let buckets = LATENCY_BUCKETS
        .iter()
        .enumerate()
        .map(|(i, bound)| {
            cumulative += total(i);
            let mut b = proto::Bucket::default();
            b.set_upper_bound(*bound);
            b.set_cumulative_count(cumulative);
            b
        })
        .collect();
    let mut h = proto::Histogram::default();
    h.set_sample_count(cumulative + total(LATENCY_BUCKETS.len()));
    h.set_sample_sum(sum);
    h.set_bucket(buckets);
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_cumulative_and_bounds_inclusive() {
        let h = Histogram::default();
        for v in [0.5, 1.0, 1.5, 7.0, 99_999.0] {
            h.observe(v);
        }
        let p = h.proto();
        let counts: Vec<u64> = p
            .get_bucket()
            .iter()
            .map(|b| b.cumulative_count())
            .collect();
        // ≤ 1: 0.5 and 1.0; ≤ 2: +1.5; ≤ 7: +7.0; past 60000: only in the count.
        assert_eq!(&counts[..4], &[2, 3, 3, 4]);
        assert_eq!(*counts.last().unwrap(), 4);
        assert_eq!(p.get_sample_count(), 5);
        assert_eq!(h.count(), 5);
        assert_eq!(p.get_sample_sum(), 0.5 + 1.0 + 1.5 + 7.0 + 99_999.0);
    }

    #[test]
    fn shards_merge_into_one_exposition() {
        let parts: [Histogram; 3] = Default::default();
        parts[0].observe_exclusive(0.5);
        parts[0].observe_exclusive(3.0);
        parts[1].observe_exclusive(3.0);
        parts[2].observe(70_000.0);
        let p = merged(parts.iter());
        let counts: Vec<u64> = p
            .get_bucket()
            .iter()
            .map(|b| b.cumulative_count())
            .collect();
        assert_eq!(&counts[..3], &[1, 1, 3]);
        assert_eq!(*counts.last().unwrap(), 3);
        assert_eq!(p.get_sample_count(), 4);
        assert_eq!(p.get_sample_sum(), 0.5 + 3.0 + 3.0 + 70_000.0);
    }
}
