//! What the agent shows of the store it runs beside (`GET /metrics`): a narrow trait the
//! binary implements, so the agent never depends on the store crate. Everything else the
//! agent learns of the store comes through etcd v3 requests (`Status`), as it would from
//! any etcd.

/// A latency histogram as Prometheus wants it: cumulative counts per upper bound (seconds).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Histogram {
    pub buckets: Vec<(f64, u64)>,
    pub count: u64,
    pub sum_seconds: f64,
}

/// What the store measured of itself, at one instant.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StoreSnapshot {
    /// Open etcd API watch streams on this node.
    pub watch_streams: i64,
    /// Watches on those streams.
    pub watches: i64,
    /// A write proposed on the Raft leader until its applied result.
    pub proposal: Histogram,
    /// One fsync of the Raft log.
    pub fsync: Histogram,
}

/// A source of [`StoreSnapshot`]s.
pub trait StoreStats: Send + Sync {
    fn snapshot(&self) -> StoreSnapshot;
}
