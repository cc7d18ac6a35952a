//! Membership changes, one at a time, on the leader: add a learner, promote it to
//! voter, remove a member. openraft runs each as joint consensus and `change_membership`
//! returns once it is committed, so the next change never overlaps.

use openraft::async_runtime::watch::WatchReceiver;
use std::collections::BTreeSet;

use openraft::ChangeMembers;

use crate::error::StoreError;
use crate::forward::{ForwardRequest, ForwardResponse, MembershipChange};
use crate::types::{member_id, NodeId, PeerNode};
use crate::Store;

/// A learner may be promoted when it is at most this many entries behind the leader.
const PROMOTE_MAX_LAG: u64 = 1000;

/// One member as the membership config sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberInfo {
    pub id: NodeId,
    pub node: PeerNode,
    pub is_learner: bool,
}

impl Store {
    /// Every member (voters and learners), ordered by id.
    pub fn members(&self) -> Vec<MemberInfo> {
        let m = self.raft.metrics();
        let m = m.borrow_watched();
        let membership = m.membership_config.membership();
        let voters: BTreeSet<NodeId> = membership.voter_ids().collect();
        membership
            .nodes()
            .map(|(id, node)| MemberInfo { id: *id, node: node.clone(), is_learner: !voters.contains(id) })
            .collect()
    }

    /// Asks the leader to change the membership; returns the member's id.
    pub async fn request_membership(&self, change: MembershipChange) -> Result<NodeId, StoreError> {
        match self.on_leader(ForwardRequest::Membership(change)).await? {
            ForwardResponse::Membership(id) => Ok(id),
            other => Err(StoreError::Internal(format!("unexpected answer {other:?}"))),
        }
    }

    pub(crate) async fn change_membership(&self, change: MembershipChange) -> Result<NodeId, StoreError> {
        let members = self.members();
        let find = |id: NodeId| members.iter().find(|m| m.id == id).cloned().ok_or(StoreError::MemberNotFound);
        match change {
            MembershipChange::Add { name, peer_addr, as_voter } => {
                if members.iter().any(|m| m.node.peer_addr == peer_addr) {
                    return Err(StoreError::PeerAddrExists);
                }
                let id = member_id(&peer_addr);
                self.net.forget(id);
                let node = PeerNode { name, peer_addr };
                self.raft.add_learner(id, node, false).await.map_err(StoreError::internal)?;
                if as_voter {
                    self.set_voter(id).await?;
                }
                Ok(id)
            }
            MembershipChange::Promote { id } => {
                if !find(id)?.is_learner {
                    return Err(StoreError::NotALearner);
                }
                let m = self.metrics();
                let leader_last = m.last_log_index.unwrap_or(0);
                let matched = m
                    .replication
                    .as_ref()
                    .and_then(|r| r.get(&id).cloned().flatten())
                    .map_or(0, |l| l.index);
                if leader_last.saturating_sub(matched) > PROMOTE_MAX_LAG || matched == 0 {
                    return Err(StoreError::LearnerNotReady);
                }
                self.set_voter(id).await?;
                Ok(id)
            }
            MembershipChange::Remove { id } => {
                let member = find(id)?;
                let ids = BTreeSet::from([id]);
                let change = if member.is_learner {
                    ChangeMembers::RemoveNodes(ids)
                } else {
                    ChangeMembers::RemoveVoters(ids)
                };
                self.raft.change_membership(change, false).await.map_err(StoreError::internal)?;
                self.net.forget(id);
                Ok(id)
            }
            MembershipChange::Update { id, .. } => {
                find(id)?;
                Err(StoreError::Internal(
                    "changing a member's peer address is not supported: remove the member and add it again".into(),
                ))
            }
        }
    }

    async fn set_voter(&self, id: NodeId) -> Result<(), StoreError> {
        self.raft
            .change_membership(ChangeMembers::AddVoterIds(BTreeSet::from([id])), false)
            .await
            .map(|_| ())
            .map_err(StoreError::internal)
    }
}
