//! The replicated store of a raftgres node.
//!
//! Owns: the openraft (0.10) instance and its type config ([`types`]), the durable Raft
//! log on its own write-ahead log ([`wal`]; sled for data dirs made before it,
//! [`backend`]) behind [`log_store`] and its fsync thread `flusher`, the in-memory
//! etcd-style state machine with file snapshots ([`state_machine`], written by
//! `state_codec`), its alarms ([`alarms`]: the space quota's NOSPACE), etcd's users, roles and
//! permissions ([`auth`]), auto-compaction
//! (the pure policy [`retention`], run by the leader's `compactor`), the space quota
//! ([`quota`]), backups and restores
//! ([`backup`]), quorum-loss recovery ([`force_new_cluster`]), lease deadlines
//! ([`lease_clock`]) and what the leader does with them (`lease_leader`), the peer transport over tonic ([`network`], [`peer_service`],
//! [`forward`]; TLS from files via `raftgres_tls`), group commit of concurrent writes
//! (`group_commit`, used by the leader's `batcher` and by a follower's gathering of
//! the writes it forwards, `forward_writes`), the Raft core's own runtime (`raft_runtime`), membership changes and leadership transfer (`membership`) and the
//! background duties of a node ([`tasks`]).
//!
//! Does not own: the etcd gRPC surface (crate `raftgres-etcd-api`) or anything about
//! PostgreSQL. The data model itself (revisions, txn, leases) is `raftgres-mvcc`.

pub mod alarms;
mod api_support;
pub mod auth;
pub mod backend;
pub mod backup;
mod batcher;
mod client;
mod compactor;
pub mod config;
pub mod error;
mod flusher;
pub mod force_new_cluster;
pub mod forward;
mod forward_writes;
mod group_commit;
pub mod lease_clock;
mod lease_leader;
pub mod log_store;
mod membership;
pub mod metrics;
pub mod network;
mod node;
mod peer_service;
pub mod quota;
mod raft_runtime;
pub mod retention;
mod state_codec;
pub mod state_machine;
mod tasks;
pub mod types;
pub mod wal;

pub use config::{ClusterState, RaftTiming, StoreConfig, DEFAULT_QUOTA_BYTES};
pub use error::StoreError;
pub use forward::{MembershipChange, NodeStatus};
pub use membership::MemberInfo;
pub use metrics::StoreMetrics;
pub use node::{StartError, Store};
pub use retention::AutoCompaction;
pub use state_machine::{Applied, WatchBatch};
pub use types::{member_id, NodeId, PeerNode, Request, Response};
