//! Requests a follower hands to the leader, and what the leader answers.
//!
//! Any node serves any client request: what only the leader can do (propose a write,
//! confirm a read index, renew a lease deadline, change membership, hand leadership
//! over) is forwarded over
//! the peer connection. A `NotLeader` answer makes the forwarder retry on the new leader.

use serde::{Deserialize, Serialize};

use crate::types::{NodeId, Request, Response};

/// A membership change, as `raftctl members` and the etcd Cluster API ask for it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum MembershipChange {
    /// Add a member (as a learner first; `as_voter` promotes it once it caught up).
    Add {
        name: String,
        peer_addr: String,
        as_voter: bool,
    },
    Promote {
        id: NodeId,
    },
    Remove {
        id: NodeId,
    },
    /// Change a member's peer address (etcd's MemberUpdate).
    Update {
        id: NodeId,
        peer_addr: String,
    },
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum ForwardRequest {
    Write(Request),
    /// The leader confirms its leadership and returns the index a read must wait for.
    ReadIndex,
    LeaseKeepAlive {
        id: i64,
    },
    LeaseTimeToLive {
        id: i64,
    },
    Membership(MembershipChange),
    /// Hand Raft leadership to the voter `target` (etcd's MoveLeader).
    MoveLeader {
        target: NodeId,
    },
    /// This node's Raft status (any node answers, leader or not).
    Status,
}

impl ForwardRequest {
    /// Whether sending it twice does no harm (reads, renewals, status): a write or a
    /// membership change sent again could be applied twice.
    pub fn may_repeat(&self) -> bool {
        !matches!(self, ForwardRequest::Write(_) | ForwardRequest::Membership(_))
    }
}

/// A node's own view of Raft, for `raftctl members` and etcd's Status.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct NodeStatus {
    pub id: NodeId,
    pub name: String,
    pub leader: Option<NodeId>,
    pub term: u64,
    pub last_log_index: u64,
    pub applied_index: u64,
    pub is_learner: bool,
    pub revision: i64,
    pub db_size: i64,
    /// Every member id in this node's membership config, and the log index of that config.
    pub members: Vec<NodeId>,
    pub membership_index: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum ForwardResponse {
    Write(Response),
    ReadIndex(u64),
    /// The lease's TTL, or None when it does not exist.
    LeaseKeepAlive(Option<i64>),
    /// (granted TTL, seconds left), or None when it does not exist.
    LeaseTimeToLive(Option<(i64, i64)>),
    /// The id of the member added / changed.
    Membership(NodeId),
    /// Leadership moved to the requested member.
    MoveLeader,
    Status(NodeStatus),
}
