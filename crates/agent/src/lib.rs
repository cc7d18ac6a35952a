//! The PostgreSQL supervisor of a raftgres node ("the agent"): what Patroni does, with
//! the node's own Raft store as its DCS, reached through the etcd v3 API in-process.
//!
//! Owns: Patroni's callbacks ([`callbacks`]), the agent's configuration ([`config`], every key's fate in [`config_keys`], how replicas
//! and the cluster are made from backups in [`replica_methods`] and [`bootstrap_method`], a standby cluster's section in [`standby`], a re-read of
//! the node's file in [`reload`]) and timing rule ([`timing`]), the
//! permanent replication slots ([`slots`]), the
//! Patroni-shaped keys and values ([`cluster`]) read and written through the etcd API
//! ([`dcs`]), the HA loop ([`ha`]: facts gathered, one pure `decide`, its action carried
//! out), PostgreSQL's control ([`postgres`]), the fencer that
//! stops a primary past its write deadline even when the agent is frozen ([`fence`],
//! with the optional [`watchdog`]), waiting on a process's exit ([`pidfd`]), operator operations ([`ops`]), the published node
//! state ([`state`]), and the REST API ([`rest`], HTTPS from [`tls`], its client [`http`]).
//!
//! Must not touch: Raft or the store's internals — everything goes through etcd v3
//! requests on a gRPC channel, so the agent would work against any etcd v3 endpoint.

pub mod bootstrap_method;
pub mod callbacks;
pub mod cluster;
pub mod config;
pub mod config_keys;
pub mod dcs;
pub mod fence;
pub(crate) mod ha;
pub mod http;
pub mod invalid;
pub mod ops;
pub(crate) mod pidfd;
pub(crate) mod postgres;
pub mod reload;
pub mod replica_methods;
pub(crate) mod rest;
pub mod schedule;
pub mod slots;
pub mod standby;
mod start;
pub(crate) mod state;
pub mod store_stats;
pub mod timing;
pub(crate) mod tls;
pub(crate) mod watchdog;

pub use postgres::sql::PRIMARY_TIMELINE_QUERY;
pub use start::{start, Running, StartError};

/// The agent's version, reported in member keys and `/patroni`.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
