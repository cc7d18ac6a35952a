//! What the store measures about itself for the node's `/metrics`: how long a proposal
//! takes from the leader's batcher to its applied result, how long one fsync of the
//! Raft log takes, how many watch streams and watches the etcd API holds open, and how
//! many leaders this node has seen.
//! Recorded with atomics on the hot path; read as a [`HistogramSnapshot`].

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds (seconds) of the histogram buckets: 0.5 ms doubling to ~4 s, as etcd's
/// disk and proposal histograms.
pub const BUCKETS: [f64; 14] = [0.0005, 0.001, 0.002, 0.004, 0.008, 0.016, 0.032, 0.064, 0.128, 0.256, 0.512, 1.024, 2.048, 4.096];

/// A latency histogram with the fixed [`BUCKETS`].
#[derive(Debug, Default)]
pub struct Histogram {
    /// Observations per bucket (not cumulative); the last slot is above every bound.
    counts: [AtomicU64; BUCKETS.len() + 1],
    sum_nanos: AtomicU64,
}

/// A histogram as Prometheus shows it: cumulative counts per upper bound, the total
/// count and the sum in seconds.
#[derive(Debug, Clone, PartialEq)]
pub struct HistogramSnapshot {
    pub buckets: Vec<(f64, u64)>,
    pub count: u64,
    pub sum_seconds: f64,
}

impl Histogram {
    pub fn observe(&self, d: Duration) {
        let secs = d.as_secs_f64();
        let slot = BUCKETS.iter().position(|&b| secs <= b).unwrap_or(BUCKETS.len());
        self.counts[slot].fetch_add(1, Ordering::Relaxed);
        self.sum_nanos.fetch_add(u64::try_from(d.as_nanos()).unwrap_or(u64::MAX), Ordering::Relaxed);
    }

    pub fn snapshot(&self) -> HistogramSnapshot {
        let mut cumulative = 0;
        let mut buckets = Vec::with_capacity(BUCKETS.len());
        for (bound, count) in BUCKETS.iter().zip(&self.counts) {
            cumulative += count.load(Ordering::Relaxed);
            buckets.push((*bound, cumulative));
        }
        let count = cumulative + self.counts[BUCKETS.len()].load(Ordering::Relaxed);
        HistogramSnapshot { buckets, count, sum_seconds: self.sum_nanos.load(Ordering::Relaxed) as f64 / 1e9 }
    }
}

/// The store's own measurements, shared by the Raft log, the batcher and the etcd API.
#[derive(Debug, Default)]
pub struct StoreMetrics {
    /// A write proposed on the leader until its result was applied.
    pub proposal: Histogram,
    /// One fsync of the Raft log.
    pub fsync: Histogram,
    /// Open watch streams.
    pub watch_streams: AtomicI64,
    /// Watches on those streams.
    pub watches: AtomicI64,
    /// Leaders this node has seen, a new term's leader each (etcd's
    /// `leader_changes_seen_total`).
    pub leader_changes: AtomicU64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn observations_land_in_cumulative_buckets() {
        let h = Histogram::default();
        h.observe(Duration::from_micros(300));
        h.observe(Duration::from_millis(3));
        h.observe(Duration::from_secs(10));
        let s = h.snapshot();
        assert_eq!(s.count, 3);
        assert_eq!(s.buckets[0], (0.0005, 1));
        assert_eq!(s.buckets[2], (0.002, 1));
        assert_eq!(s.buckets[3], (0.004, 2));
        assert_eq!(s.buckets.last(), Some(&(4.096, 2)));
        assert!((s.sum_seconds - 10.0033).abs() < 1e-9, "{}", s.sum_seconds);
    }
}
