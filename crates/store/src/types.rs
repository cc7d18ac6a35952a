//! The openraft type configuration and the aliases the rest of the store uses.
//!
//! What travels through the Raft log is a [`Request`]; what applying it yields is a
//! [`Response`]. Both are serde types so they can be written to sled and sent to peers.

use std::io::Cursor;

use raftgres_mvcc::{Command, CommandResponse, MvccError};
use serde::{Deserialize, Serialize};

/// A member's Raft identity: a 64-bit id, as etcd's member ids.
pub type NodeId = u64;

/// What Raft's membership knows about a member.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerNode {
    /// Human name (`node1`), empty until the member publishes itself.
    pub name: String,
    /// `host:port` of its peer (Raft) listener.
    pub peer_addr: String,
}

impl std::fmt::Display for PeerNode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}@{}", self.name, self.peer_addr)
    }
}

/// One entry of the replicated log.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Request {
    /// An etcd data-model operation.
    Kv(Command),
    /// A member announces its name and client address (as etcd publishes its attributes).
    PublishMember { id: NodeId, name: String, client_addr: String },
    /// Requests that arrived together, applied in order in one log entry (group commit).
    Batch(Vec<Request>),
}

/// The result of applying one [`Request`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Response {
    Kv(Result<CommandResponse, MvccError>),
    Done,
    /// One response per request of a [`Request::Batch`], in order.
    Batch(Vec<Response>),
}

openraft::declare_raft_types!(
    /// The raftgres Raft types.
    pub TypeConfig:
        D = Request,
        R = Response,
        NodeId = NodeId,
        Node = PeerNode,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = Cursor<Vec<u8>>,
        AsyncRuntime = openraft::TokioRuntime,
);

pub type Raft = openraft::Raft<TypeConfig>;
pub type Entry = openraft::Entry<TypeConfig>;
pub type LogId = openraft::LogId<NodeId>;
pub type Vote = openraft::Vote<NodeId>;
pub type StorageError = openraft::StorageError<NodeId>;
pub type StoredMembership = openraft::StoredMembership<NodeId, PeerNode>;
pub type SnapshotMeta = openraft::SnapshotMeta<NodeId, PeerNode>;
pub type Snapshot = openraft::Snapshot<TypeConfig>;
pub type RaftMetrics = openraft::RaftMetrics<NodeId, PeerNode>;

/// The id of a member, derived from its peer address the way every node derives it,
/// so all nodes agree on the ids of `--initial-cluster` without talking.
pub fn member_id(peer_addr: &str) -> NodeId {
    // FNV-1a, 64 bit: stable across versions and platforms (unlike std's hasher).
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in peer_addr.as_bytes() {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash.max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn member_ids_are_stable_and_non_zero() {
        assert_eq!(member_id("127.0.0.1:2380"), member_id("127.0.0.1:2380"));
        assert_ne!(member_id("127.0.0.1:2380"), member_id("127.0.0.1:2480"));
        assert_ne!(member_id(""), 0);
    }
}
