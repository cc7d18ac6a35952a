//! `GET /metrics`: Prometheus text format (version 0.0.4), with Patroni's metric names
//! where they exist (role, timeline, WAL positions, pending restart, paused, DCS last
//! seen, ...) and the store's own (Raft term, leader, log and applied index, revision,
//! database size, leases, watch streams and watches; proposal and log fsync latency
//! histograms), each with HELP and TYPE. Labels: `scope` and `name`.

use std::time::UNIX_EPOCH;

use raftgres_proto::etcdserverpb::StatusResponse;

use crate::cluster::Role;
use crate::ha::hung::Verdict;
use crate::state::NodeState;
use crate::store_stats::{Histogram, StoreSnapshot};
use raftgres_prometheus::{escape, Page};

/// The metrics of this node; `store` is the store's answer, if it gave one, and
/// `measured` what the store measured of itself.
pub fn render(state: &NodeState, store: Option<&(StatusResponse, usize)>, measured: Option<&StoreSnapshot>) -> String {
    let labels = format!("scope=\"{}\",name=\"{}\"", escape(&state.scope), escape(&state.name));
    let pg = &state.postgres;
    let flag = |b: bool| if b { 1.0 } else { 0.0 };
    let lsn = |v: Option<u64>| v.map_or(0.0, |v| v as f64);
    let mut out = Page::new();
    let version: f64 = crate::VERSION.split('.').take(3).fold(0.0, |acc, p| acc * 100.0 + p.parse::<f64>().unwrap_or(0.0));
    out.gauge("patroni_version", "Version of the agent (raftgres) as one number, e.g. 000100 for 0.1.0.", &labels, version);
    out.gauge("patroni_postgres_running", "Value is 1 if PostgreSQL is running, 0 otherwise.", &labels, flag(pg.is_running()));
    let start =
        pg.postmaster_start_time.as_deref().and_then(|t| humantime::parse_rfc3339_weak(&t.replace(' ', "T").replace("+00", "Z")).ok());
    out.gauge(
        "patroni_postmaster_start_time",
        "Epoch seconds since PostgreSQL started.",
        &labels,
        start.and_then(|t| t.duration_since(UNIX_EPOCH).ok()).map_or(0.0, |d| d.as_secs_f64()),
    );
    let primary = pg.role == Role::Primary && state.holds_leader_key;
    out.gauge("patroni_primary", "Value is 1 if this node is the leader, 0 otherwise.", &labels, flag(primary));
    out.gauge(
        "patroni_xlog_location",
        "Current location of the PostgreSQL transaction log, 0 for replicas.",
        &labels,
        if pg.role == Role::Primary { lsn(pg.wal_lsn) } else { 0.0 },
    );
    let standby_leader = pg.role == Role::StandbyLeader && pg.is_running();
    out.gauge("patroni_standby_leader", "Value is 1 if this node is the standby_leader, 0 otherwise.", &labels, flag(standby_leader));
    out.gauge(
        "patroni_replica",
        "Value is 1 if this node is a replica, 0 otherwise.",
        &labels,
        flag(pg.role == Role::Replica && pg.is_running()),
    );
    let sync = state.cluster.sync_standbys().contains(&state.name);
    out.gauge("patroni_sync_standby", "Value is 1 if this node is a sync standby replica, 0 otherwise.", &labels, flag(sync));
    out.gauge(
        "patroni_xlog_received_location",
        "Current location of the received transaction log, 0 for the primary.",
        &labels,
        if matches!(pg.role, Role::Replica | Role::StandbyLeader) { lsn(pg.receive_lsn) } else { 0.0 },
    );
    out.gauge(
        "patroni_xlog_replayed_location",
        "Current location of the replayed transaction log, 0 for the primary.",
        &labels,
        if matches!(pg.role, Role::Replica | Role::StandbyLeader) { lsn(pg.replay_lsn) } else { 0.0 },
    );
    out.gauge(
        "patroni_postgres_server_version",
        "Version of PostgreSQL (server_version_num).",
        &labels,
        pg.server_version.map_or(0.0, f64::from),
    );
    out.gauge(
        "patroni_cluster_unlocked",
        "Value is 1 if the cluster has no leader key, 0 otherwise.",
        &labels,
        flag(state.cluster.leader.is_none()),
    );
    out.gauge(
        "patroni_postgres_timeline",
        "PostgreSQL timeline of this node (if running), 0 otherwise.",
        &labels,
        pg.timeline.map_or(0.0, f64::from),
    );
    let seen = state.dcs_last_seen.and_then(|t| t.duration_since(UNIX_EPOCH).ok()).map_or(0.0, |d| d.as_secs_f64().floor());
    out.gauge("patroni_dcs_last_seen", "Epoch seconds when the store was last reached.", &labels, seen);
    out.gauge("patroni_pending_restart", "Value is 1 if the node needs a restart, 0 otherwise.", &labels, flag(pg.pending_restart));
    out.gauge(
        "patroni_is_paused",
        "Value is 1 if auto failover is disabled (maintenance mode), 0 otherwise.",
        &labels,
        flag(state.paused()),
    );
    out.counter(
        "raftgres_liveness_failures_total",
        "Liveness probes of PostgreSQL (fresh connection, read, primary's write) that failed.",
        &labels,
        state.liveness_failures_total as f64,
    );
    let liveness = match state.liveness {
        Verdict::Healthy => 0.0,
        Verdict::Suspect { .. } => 1.0,
        Verdict::Hung { .. } => 2.0,
    };
    out.gauge(
        "raftgres_liveness_state",
        "PostgreSQL's liveness: 0 healthy, 1 suspect (some probes in a row failed), 2 hung (liveness.max_failures in a row).",
        &labels,
        liveness,
    );
    if let Some((s, leases)) = store {
        let member = s.header.as_ref().map_or(0, |h| h.member_id);
        out.gauge("raftgres_raft_term", "Current Raft term of this node's store.", &labels, s.raft_term as f64);
        out.gauge(
            "raftgres_raft_is_leader",
            "Value is 1 if this node's store is the Raft leader, 0 otherwise.",
            &labels,
            flag(s.leader != 0 && s.leader == member),
        );
        out.gauge("raftgres_raft_has_leader", "Value is 1 if this node knows a Raft leader, 0 otherwise.", &labels, flag(s.leader != 0));
        out.gauge("raftgres_raft_log_index", "Last Raft log index of this node.", &labels, s.raft_index as f64);
        out.gauge(
            "raftgres_raft_applied_index",
            "Last Raft log index applied to this node's state machine.",
            &labels,
            s.raft_applied_index as f64,
        );
        out.gauge(
            "raftgres_store_revision",
            "Revision of the store (etcd's).",
            &labels,
            s.header.as_ref().map_or(0.0, |h| h.revision as f64),
        );
        out.gauge("raftgres_store_db_size_bytes", "Bytes of the store on disk (log, snapshots).", &labels, s.db_size as f64);
        out.gauge("raftgres_store_leases", "Leases in the store.", &labels, *leases as f64);
    }
    out.gauge("raftgres_store_reachable", "Value is 1 if the store answered this scrape, 0 otherwise.", &labels, flag(store.is_some()));
    if let Some(m) = measured {
        out.gauge("raftgres_watch_streams", "Open etcd API watch streams on this node.", &labels, m.watch_streams as f64);
        out.gauge("raftgres_watches", "Watches on this node's etcd API watch streams.", &labels, m.watches as f64);
        out.histogram(
            "raftgres_proposal_duration_seconds",
            "Time from proposing a write on the Raft leader to its applied result.",
            &labels,
            prom(&m.proposal),
        );
        out.histogram("raftgres_log_fsync_duration_seconds", "Time one fsync of the Raft log took.", &labels, prom(&m.fsync));
    }
    out.finish()
}

/// The store's histogram as the text format writes it.
fn prom(h: &Histogram) -> raftgres_prometheus::Histogram<'_> {
    raftgres_prometheus::Histogram { buckets: &h.buckets, count: h.count, sum: h.sum_seconds }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use prometheus_parse::{Scrape, Value};

    use super::*;

    /// Parses `text` with a Prometheus text-format parser; checks every sample has HELP
    /// and the cluster's labels.
    fn parse(text: &str) -> Scrape {
        let scrape = Scrape::parse(text.lines().map(|l| Ok(l.to_string()))).expect("valid text format");
        for s in &scrape.samples {
            let family = ["_sum", "_count"].iter().find_map(|x| s.metric.strip_suffix(x)).filter(|f| scrape.docs.contains_key(*f));
            assert!(scrape.docs.contains_key(family.unwrap_or(&s.metric)), "{} has no HELP", s.metric);
            assert_eq!(s.labels.get("scope"), Some("demo"), "{}", s.metric);
        }
        scrape
    }

    fn gauge_of(scrape: &Scrape, name: &str) -> f64 {
        match scrape.samples.iter().find(|s| s.metric == name).map(|s| &s.value) {
            Some(Value::Gauge(v)) => *v,
            other => panic!("{name}: {other:?}"),
        }
    }

    #[test]
    fn renders_patroni_and_store_metrics() {
        let mut state = NodeState::new("node1", "demo", Default::default());
        state.postgres.state = crate::state::PgState::Running;
        state.postgres.role = Role::Primary;
        state.postgres.wal_lsn = Some(0x3000060);
        state.postgres.timeline = Some(2);
        state.holds_leader_key = true;
        let status = StatusResponse {
            raft_term: 7,
            raft_index: 42,
            raft_applied_index: 41,
            leader: 5,
            header: Some(raftgres_proto::etcdserverpb::ResponseHeader { member_id: 5, revision: 9, ..Default::default() }),
            ..Default::default()
        };
        // Two fsyncs, 0.7 ms and 30 ms.
        let fsync = Histogram { buckets: vec![(0.0005, 0), (0.001, 1), (0.032, 2)], count: 2, sum_seconds: 0.0307 };
        let measured = StoreSnapshot { watches: 4, fsync, ..Default::default() };
        let scrape = parse(&render(&state, Some(&(status, 3)), Some(&measured)));
        assert_eq!(gauge_of(&scrape, "patroni_primary"), 1.0);
        assert_eq!(gauge_of(&scrape, "patroni_xlog_location"), 0x3000060 as f64);
        assert_eq!(gauge_of(&scrape, "patroni_postgres_timeline"), 2.0);
        assert_eq!(gauge_of(&scrape, "patroni_cluster_unlocked"), 1.0);
        assert_eq!(gauge_of(&scrape, "raftgres_raft_term"), 7.0);
        assert_eq!(gauge_of(&scrape, "raftgres_raft_is_leader"), 1.0);
        assert_eq!(gauge_of(&scrape, "raftgres_store_leases"), 3.0);
        assert_eq!(gauge_of(&scrape, "raftgres_watches"), 4.0);
        assert_eq!(gauge_of(&scrape, "raftgres_liveness_state"), 0.0);
        let fsync = scrape.samples.iter().find(|s| s.metric == "raftgres_log_fsync_duration_seconds").expect("fsync histogram");
        let Value::Histogram(buckets) = &fsync.value else { panic!("{:?}", fsync.value) };
        let le = |bound: f64| buckets.iter().find(|b| b.less_than == bound).map(|b| b.count);
        assert_eq!((le(0.0005), le(0.001), le(0.032), le(f64::INFINITY)), (Some(0.0), Some(1.0), Some(2.0), Some(2.0)));
        assert!(scrape.samples.iter().any(|s| s.metric == "raftgres_proposal_duration_seconds"));
        state.liveness = Verdict::Hung { failing_for: Duration::from_secs(7) };
        state.liveness_failures_total = 3;
        let hung = parse(&render(&state, None, None));
        assert_eq!(gauge_of(&hung, "raftgres_liveness_state"), 2.0);
        let failures = hung.samples.iter().find(|s| s.metric == "raftgres_liveness_failures_total").map(|s| &s.value);
        assert!(matches!(failures, Some(Value::Counter(v)) if *v == 3.0), "{failures:?}");
        let mut standby = state.clone();
        standby.postgres.role = Role::StandbyLeader;
        standby.postgres.receive_lsn = Some(0x3000060);
        let standby = parse(&render(&standby, None, None));
        assert_eq!(gauge_of(&standby, "patroni_standby_leader"), 1.0);
        assert_eq!((gauge_of(&standby, "patroni_primary"), gauge_of(&standby, "patroni_replica")), (0.0, 0.0));
        assert_eq!(gauge_of(&standby, "patroni_xlog_received_location"), 0x3000060 as f64);
        let without_store = parse(&render(&state, None, None));
        assert_eq!(gauge_of(&without_store, "raftgres_store_reachable"), 0.0);
        assert!(!without_store.samples.iter().any(|s| s.metric.starts_with("raftgres_log_fsync")));
    }
}
