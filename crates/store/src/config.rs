//! How a store node is configured: identity, addresses, initial cluster, timing, and
//! how much history and state it keeps (auto-compaction, space quota).

use std::path::PathBuf;
use std::time::Duration;

use crate::retention::AutoCompaction;

/// Raft timing. Every timing knob of the store lives here.
///
/// The defaults (heartbeat 100 ms, election timeout 300–480 ms) are etcd's heartbeat with
/// a shorter election timeout (3 heartbeats; pre-vote keeps a follower that missed them
/// from deposing a leader the others still hear): a dead Raft leader is replaced well inside the agent's
/// default write budget (ttl 2 s − safety_margin 0.5 s), and the minimum lease TTL stays
/// 1 s. Every heartbeat also sets openraft's tick (13/64 of it), the idle node's most
/// frequent wake-up, so a shorter heartbeat costs idle CPU; the fast profile (ttl 1 s)
/// takes 50 / 250 ms for its smaller budget (README "Timing profiles").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RaftTiming {
    /// Leader heartbeat period; also the AppendEntries timeout.
    pub heartbeat_ms: u64,
    /// A follower campaigns after a random timeout in [min, max) without a leader.
    pub election_min_ms: u64,
    pub election_max_ms: u64,
    /// Take a snapshot (and purge the log before it) every this many entries.
    pub snapshot_every: u64,
}

impl Default for RaftTiming {
    fn default() -> Self {
        Self { heartbeat_ms: 100, election_min_ms: 300, election_max_ms: 480, snapshot_every: 10_000 }
    }
}

impl RaftTiming {
    /// Checks the relations Raft needs: heartbeats well inside the election timeout.
    pub fn validate(&self) -> Result<(), String> {
        if self.heartbeat_ms == 0 {
            return Err("heartbeat interval must be > 0 ms".into());
        }
        if self.election_min_ms < 3 * self.heartbeat_ms {
            return Err(format!(
                "election timeout ({} ms) must be at least 3 x the heartbeat interval ({} ms)",
                self.election_min_ms, self.heartbeat_ms
            ));
        }
        if self.election_max_ms <= self.election_min_ms {
            return Err(format!(
                "election timeout max ({} ms) must be greater than min ({} ms)",
                self.election_max_ms, self.election_min_ms
            ));
        }
        if self.snapshot_every < 100 {
            return Err("snapshot-every must be at least 100 entries".into());
        }
        Ok(())
    }

    pub fn election_max(&self) -> Duration {
        Duration::from_millis(self.election_max_ms)
    }

    /// etcd's minimum lease TTL: ceil(1.5 x election timeout), in seconds.
    pub fn min_lease_ttl(&self) -> i64 {
        let ms = self.election_max_ms.saturating_mul(3) / 2;
        i64::try_from(ms.div_ceil(1000)).unwrap_or(i64::MAX).max(1)
    }

    pub(crate) fn openraft_config(&self) -> openraft::Config {
        openraft::Config {
            cluster_name: "raftgres".into(),
            heartbeat_interval: self.heartbeat_ms,
            election_timeout_min: self.election_min_ms,
            election_timeout_max: self.election_max_ms,
            install_snapshot_timeout: 10_000,
            snapshot_max_chunk_size: 1024 * 1024,
            // Each entry is a batch of up to 256 client writes: 32 of them (~2 MB of
            // etcdctl check perf's writes) keep one AppendEntries a follower catching up
            // receives small enough to decode and append between two heartbeats.
            max_payload_entries: 32,
            purge_batch_size: 256,
            max_in_snapshot_log_to_keep: self.snapshot_every.min(1000),
            snapshot_policy: openraft::SnapshotPolicy::LogsSinceLast(self.snapshot_every),
            // A restarted leader campaigns like anyone else instead of resuming its term
            // unasked: plain Raft, and every lease gets its fresh TTL from an election.
            enable_leader_restore: Some(false),
            // Hand new entries to replication as soon as the leader's own append is
            // submitted, so the leader's fsync and the followers' run at the same time.
            broadcast_submitted_on_append: Some(true),
            // A node that hears no leader but cannot win (partitioned, or cut off from
            // answers) asks first and keeps its term: it does not depose the leader
            // with an inflated term once the network heals.
            enable_pre_vote: Some(true),
            ..Default::default()
        }
    }
}

/// Whether this node starts a new cluster or joins an existing one (as etcd's
/// `--initial-cluster-state`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ClusterState {
    #[default]
    New,
    Existing,
}

#[derive(Debug, Clone)]
pub struct StoreConfig {
    pub name: String,
    pub data_dir: PathBuf,
    /// Address to bind the peer listener to.
    pub listen_peer: String,
    /// Address clients use (published to the other members).
    pub client_addr: String,
    /// Every initial member (name, advertised peer address), this node included.
    pub initial_cluster: Vec<(String, String)>,
    pub cluster_state: ClusterState,
    pub timing: RaftTiming,
    /// Mutual TLS between peers (`peer-transport-security`); plaintext when `None`.
    pub peer_tls: Option<raftgres_tls::PeerTls>,
    /// When the leader compacts the history by itself (`--auto-compaction-*`).
    pub auto_compaction: AutoCompaction,
    /// The state size above which writes raise the NOSPACE alarm (`--quota-backend-bytes`).
    pub quota_bytes: u64,
}

/// The default space quota: 512 MiB of state (etcd's is 2 GiB of disk). The state
/// lives in memory and a snapshot copies it, so a node's memory peaks at a few times
/// this figure; see the README's "Compaction and quota".
pub const DEFAULT_QUOTA_BYTES: u64 = 512 * 1024 * 1024;

impl StoreConfig {
    /// This node's advertised peer address, from the initial cluster.
    pub fn own_peer_addr(&self) -> Option<&str> {
        self.initial_cluster.iter().find(|(n, _)| n == &self.name).map(|(_, a)| a.as_str())
    }
}
