//! Errors of the store as the API layer sees them. Display strings that clients match
//! on are etcd's, byte for byte.

use serde::{Deserialize, Serialize};

/// What can go wrong serving a request through the store. Serializable, because a
/// follower forwards requests to the leader and relays its answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
pub enum StoreError {
    #[error("etcdserver: no leader")]
    NoLeader,
    #[error("etcdserver: request timed out")]
    Timeout,
    #[error("etcdserver: leader changed")]
    LeaderChanged,
    #[error("etcdserver: member not found")]
    MemberNotFound,
    #[error("etcdserver: Peer URLs already exists")]
    PeerAddrExists,
    #[error("etcdserver: can only promote a learner member which is in sync with leader")]
    LearnerNotReady,
    #[error("etcdserver: can only promote a learner member")]
    NotALearner,
    #[error("etcdserver: re-configuration failed due to not enough started members")]
    NotEnoughStarted,
    #[error("etcdserver: bad leader transferee")]
    BadLeaderTransferee,
    #[error("etcdserver: request timed out, leader transfer took too long")]
    LeaderTransferTimeout,
    #[error("etcdserver: server stopped")]
    Stopped,
    /// This node is not the leader (internal: the forwarder retries on the leader).
    #[error("etcdserver: not leader (leader is {leader:?})")]
    NotLeader { leader: Option<u64> },
    #[error("etcdserver: {0}")]
    Internal(String),
}

impl StoreError {
    pub fn internal(e: impl std::fmt::Display) -> Self {
        StoreError::Internal(e.to_string())
    }
}

/// openraft's storage traits speak `io::Error`: other errors become one, message kept.
pub(crate) fn io_err(e: impl std::fmt::Display) -> std::io::Error {
    std::io::Error::other(e.to_string())
}
