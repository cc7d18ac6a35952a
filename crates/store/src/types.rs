//! The openraft type configuration and the aliases the rest of the store uses.
//!
//! What travels through the Raft log is a [`Request`]; what applying it yields is a
//! [`Response`]. Both are serde types so they can be written to the Raft log (the write-ahead log, or sled for older data
//! dirs) and sent to peers.

use std::io::Cursor;

use raftgres_mvcc::{Command, CommandResponse, MvccError};
use raftgres_proto::etcdserverpb::{AlarmMember, AlarmRequest};
use serde::{Deserialize, Serialize};

use crate::auth::{AuthChange, AuthError};

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
    /// Raises or clears an alarm (`alarms`). Added last: bincode numbers variants by
    /// position, so older log entries keep their meaning.
    Alarm(AlarmRequest),
    /// Changes users, roles, permissions or the enabled flag (`auth`). After `Alarm`
    /// for the same reason.
    Auth(AuthChange),
}

/// The result of applying one [`Request`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Response {
    Kv(Result<CommandResponse, MvccError>),
    Done,
    /// One response per request of a [`Request::Batch`], in order.
    Batch(Vec<Response>),
    /// The alarms a [`Request::Alarm`] changed.
    Alarms(Vec<AlarmMember>),
    /// The auth revision after a [`Request::Auth`], or etcd's refusal.
    Auth(Result<u64, AuthError>),
}

impl std::fmt::Display for Request {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Request::Kv(command) => write!(f, "kv {command:?}"),
            Request::PublishMember { id, name, client_addr } => write!(f, "publish {name} ({id:x}) at {client_addr}"),
            Request::Batch(requests) => write!(f, "batch of {}", requests.len()),
            Request::Alarm(req) => write!(f, "alarm {:?} {:?} of {:x}", req.action(), req.alarm(), req.member_id),
            Request::Auth(change) => write!(f, "auth {change}"),
        }
    }
}

openraft::declare_raft_types!(
    /// The raftgres Raft types.
    pub TypeConfig:
        D = Request,
        R = Response,
        NodeId = NodeId,
        Node = PeerNode,
        AsyncRuntime = openraft::TokioRuntime,
);

/// The data of a snapshot: the serialized state machine (`state_machine::StateData`).
pub type SnapshotData = Cursor<Vec<u8>>;

pub type Entry = openraft::alias::EntryOf<TypeConfig>;
pub type LogId = openraft::alias::LogIdOf<TypeConfig>;
pub type Vote = openraft::alias::VoteOf<TypeConfig>;
pub type StoredMembership = openraft::alias::StoredMembershipOf<TypeConfig>;
pub type SnapshotMeta = openraft::alias::SnapshotMetaOf<TypeConfig>;
pub type Snapshot = openraft::alias::SnapshotOf<TypeConfig, SnapshotData>;
pub type RaftMetrics = openraft::RaftMetrics<TypeConfig>;

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
