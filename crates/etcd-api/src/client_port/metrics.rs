//! `GET /metrics` on the client port: what this member measures, in Prometheus text
//! format under etcd's metric names, so dashboards and alerts written for etcd work.
//! Every number comes from the store (its Raft metrics, status and `StoreMetrics`):
//! nothing is collected here. etcd metrics raftgres has no measurement for (peer round
//! trip time, backend commit, ...) are left out rather than faked.

use std::sync::atomic::Ordering;

use raftgres_prometheus::{escape, Histogram, Page};
use raftgres_store::metrics::HistogramSnapshot;
use raftgres_store::Store;

use crate::ETCD_VERSION;

/// One reading of the store, everything `/metrics` shows.
#[derive(Debug, Clone, PartialEq)]
pub struct Reading {
    pub member_id: u64,
    pub has_leader: bool,
    pub is_leader: bool,
    pub leader_changes: u64,
    pub term: u64,
    pub committed_index: u64,
    pub applied_index: u64,
    pub revision: i64,
    pub compact_revision: i64,
    /// The state's size, as endpoint status reports it and the quota measures it.
    pub state_size: u64,
    pub quota_bytes: u64,
    /// Bytes of the data dir on disk (log segments, snapshots).
    pub disk_bytes: i64,
    pub watch_streams: i64,
    pub watches: i64,
    pub fsync: HistogramSnapshot,
    pub proposal: HistogramSnapshot,
}

/// Reads the store's numbers now.
pub fn read(store: &Store) -> Reading {
    let status = store.status();
    let has_leader = store.has_leader();
    let committed_index = store.metrics().local_committed.map_or(0, |l| l.index);
    let compact_revision = store.applied().read().mvcc.compact_revision();
    let m = store.store_metrics();
    Reading {
        member_id: status.id,
        has_leader,
        is_leader: has_leader && status.leader == Some(status.id),
        leader_changes: m.leader_changes.load(Ordering::Relaxed),
        term: status.term,
        committed_index,
        applied_index: status.applied_index,
        revision: status.revision,
        compact_revision,
        state_size: store.state_size(),
        quota_bytes: store.quota_bytes(),
        disk_bytes: status.db_size,
        watch_streams: m.watch_streams.load(Ordering::Relaxed),
        watches: m.watches.load(Ordering::Relaxed),
        fsync: m.fsync.snapshot(),
        proposal: m.proposal.snapshot(),
    }
}

fn histogram(h: &HistogramSnapshot) -> Histogram<'_> {
    Histogram { buckets: &h.buckets, count: h.count, sum: h.sum_seconds }
}

/// etcd's cluster version: the major and minor of the server's ("3.5").
pub fn cluster_version() -> String {
    ETCD_VERSION.split('.').take(2).collect::<Vec<_>>().join(".")
}

/// The metrics page.
pub fn render(r: &Reading) -> String {
    let flag = |b: bool| if b { 1.0 } else { 0.0 };
    let mut page = Page::new();
    page.gauge("etcd_server_has_leader", "Whether or not a leader exists. 1 is existence, 0 is not.", "", flag(r.has_leader));
    page.gauge("etcd_server_is_leader", "Whether or not this member is a leader. 1 if is, 0 otherwise.", "", flag(r.is_leader));
    page.counter("etcd_server_leader_changes_seen_total", "The number of leader changes seen.", "", r.leader_changes as f64);
    page.gauge(
        "etcd_server_id",
        "Server or member ID in hexadecimal format. 1 for 'server_id' label with current ID.",
        &format!("server_id=\"{:x}\"", r.member_id),
        1.0,
    );
    page.gauge("etcd_server_term", "The current Raft term of this member (raftgres).", "", r.term as f64);
    page.gauge("etcd_server_proposals_committed_total", "The total number of consensus proposals committed.", "", r.committed_index as f64);
    page.gauge("etcd_server_proposals_applied_total", "The total number of consensus proposals applied.", "", r.applied_index as f64);
    page.gauge(
        "etcd_server_version",
        "Which version is running. 1 for 'server_version' label with current version.",
        &format!("server_version=\"{}\"", escape(ETCD_VERSION)),
        1.0,
    );
    page.gauge(
        "etcd_cluster_version",
        "Which version is running. 1 for 'cluster_version' label with current cluster version",
        &format!("cluster_version=\"{}\"", escape(&cluster_version())),
        1.0,
    );
    page.histogram("etcd_disk_wal_fsync_duration_seconds", "The latency distributions of fsync called by WAL.", "", histogram(&r.fsync));
    // etcd's two sizes are its bbolt file's; ours are the state's, the figure endpoint
    // status reports and the quota measures. The disk's bytes have a name of their own.
    page.gauge(
        "etcd_mvcc_db_total_size_in_bytes",
        "Total size of the underlying database physically allocated in bytes (raftgres: the state's size, as endpoint status).",
        "",
        r.state_size as f64,
    );
    page.gauge(
        "etcd_mvcc_db_total_size_in_use_in_bytes",
        "Total size of the underlying database logically in use in bytes (raftgres: the state's size).",
        "",
        r.state_size as f64,
    );
    page.gauge("etcd_server_quota_backend_bytes", "Current backend storage quota size in bytes.", "", r.quota_bytes as f64);
    page.gauge("raftgres_store_disk_bytes", "Bytes of the data dir on disk (log segments, snapshots).", "", r.disk_bytes as f64);
    page.gauge("etcd_debugging_mvcc_current_revision", "The current revision of store.", "", r.revision as f64);
    page.gauge("etcd_debugging_mvcc_compact_revision", "The revision of the last compaction in store.", "", r.compact_revision as f64);
    page.gauge("etcd_debugging_mvcc_watch_stream_total", "Total number of watch streams.", "", r.watch_streams as f64);
    page.gauge("etcd_debugging_mvcc_watcher_total", "Total number of watchers.", "", r.watches as f64);
    page.histogram(
        "raftgres_proposal_duration_seconds",
        "Time from proposing a write on the Raft leader to its applied result.",
        "",
        histogram(&r.proposal),
    );
    page.finish()
}

#[cfg(test)]
mod tests {
    use prometheus_parse::{Scrape, Value};

    use super::*;

    #[test]
    fn renders_etcd_names_that_parse() {
        let fsync = HistogramSnapshot { buckets: vec![(0.001, 2), (0.002, 3)], count: 4, sum_seconds: 0.5 };
        let reading = Reading {
            member_id: 0xabc,
            has_leader: true,
            is_leader: false,
            leader_changes: 2,
            term: 3,
            committed_index: 40,
            applied_index: 39,
            revision: 7,
            compact_revision: 0,
            state_size: 4096,
            quota_bytes: 2 << 30,
            disk_bytes: 65536,
            watch_streams: 1,
            watches: 2,
            fsync,
            proposal: HistogramSnapshot { buckets: Vec::new(), count: 0, sum_seconds: 0.0 },
        };
        let text = render(&reading);
        let scrape = Scrape::parse(text.lines().map(|l| Ok(l.to_string()))).expect("text format");
        let value = |name: &str| scrape.samples.iter().find(|s| s.metric == name).map(|s| s.value.clone());
        assert!(matches!(value("etcd_server_has_leader"), Some(Value::Gauge(v)) if v == 1.0));
        assert!(matches!(value("etcd_server_leader_changes_seen_total"), Some(Value::Counter(v)) if v == 2.0));
        assert!(matches!(value("etcd_server_proposals_committed_total"), Some(Value::Gauge(v)) if v == 40.0));
        assert!(matches!(value("etcd_mvcc_db_total_size_in_bytes"), Some(Value::Gauge(v)) if v == 4096.0));
        assert!(matches!(value("etcd_mvcc_db_total_size_in_use_in_bytes"), Some(Value::Gauge(v)) if v == 4096.0));
        assert!(matches!(value("etcd_server_quota_backend_bytes"), Some(Value::Gauge(v)) if v == f64::from(2u32 << 30)));
        assert!(matches!(value("raftgres_store_disk_bytes"), Some(Value::Gauge(v)) if v == 65536.0));
        let Some(Value::Histogram(fsync)) = value("etcd_disk_wal_fsync_duration_seconds") else { panic!("{text}") };
        assert_eq!(fsync.last().map(|b| b.count), Some(4.0));
        let id = scrape.samples.iter().find(|s| s.metric == "etcd_server_id").expect("etcd_server_id");
        assert_eq!(id.labels.get("server_id"), Some("abc"));
        let cluster = scrape.samples.iter().find(|s| s.metric == "etcd_cluster_version").expect("etcd_cluster_version");
        assert_eq!(cluster.labels.get("cluster_version"), Some("3.5"));
    }
}
