//! The store's own measurements, handed to the agent's `GET /metrics` through the agent's
//! narrow [`StoreStats`] trait (the agent does not depend on the store crate).

use std::sync::atomic::Ordering;
use std::sync::Arc;

use raftgres_agent::store_stats::{Histogram, StoreSnapshot, StoreStats};
use raftgres_store::metrics::HistogramSnapshot;
use raftgres_store::StoreMetrics;

/// The store's metrics as the agent's [`StoreStats`].
pub struct Measured(pub Arc<StoreMetrics>);

fn histogram(h: HistogramSnapshot) -> Histogram {
    Histogram { buckets: h.buckets, count: h.count, sum_seconds: h.sum_seconds }
}

impl StoreStats for Measured {
    fn snapshot(&self) -> StoreSnapshot {
        let m = &self.0;
        StoreSnapshot {
            watch_streams: m.watch_streams.load(Ordering::Relaxed),
            watches: m.watches.load(Ordering::Relaxed),
            proposal: histogram(m.proposal.snapshot()),
            fsync: histogram(m.fsync.snapshot()),
        }
    }
}
