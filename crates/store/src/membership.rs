//! Membership changes, one at a time, on the leader: add a learner, promote it to
//! voter, remove a member. openraft runs each as joint consensus and `change_membership`
//! returns once it is committed, so the next change never overlaps.

use std::collections::BTreeSet;

use openraft::async_runtime::watch::WatchReceiver;
use openraft::ChangeMembers;

use crate::error::StoreError;
use crate::forward::{ForwardRequest, ForwardResponse, MembershipChange};
use crate::types::{member_id, NodeId, PeerNode};
use crate::Store;

/// A learner may be promoted when it is at most this many entries behind the leader.
const PROMOTE_MAX_LAG: u64 = 1000;

/// How long a leadership transfer may take before MoveLeader gives up (a caught-up
/// target wins within one election round; etcd allows its request timeout).
const LEADER_TRANSFER_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

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
        membership.nodes().map(|(id, node)| MemberInfo { id: *id, node: node.clone(), is_learner: !voters.contains(id) }).collect()
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
                let matched = m.replication.as_ref().and_then(|r| r.get(&id).cloned().flatten()).map_or(0, |l| l.index);
                if leader_last.saturating_sub(matched) > PROMOTE_MAX_LAG || matched == 0 {
                    return Err(StoreError::LearnerNotReady);
                }
                self.set_voter(id).await?;
                Ok(id)
            }
            MembershipChange::Remove { id } => {
                let member = find(id)?;
                let ids = BTreeSet::from([id]);
                let change = if member.is_learner { ChangeMembers::RemoveNodes(ids) } else { ChangeMembers::RemoveVoters(ids) };
                self.raft.change_membership(change, false).await.map_err(StoreError::internal)?;
                self.net.forget(id);
                Ok(id)
            }
            MembershipChange::Update { id, .. } => {
                find(id)?;
                Err(StoreError::Internal("changing a member's peer address is not supported: remove the member and add it again".into()))
            }
        }
    }

    /// Moves Raft leadership to the voter `target` and waits until it leads (etcd's
    /// MoveLeader). Asked of any node; done by the leader.
    pub async fn move_leader(&self, target: NodeId) -> Result<(), StoreError> {
        match self.on_leader(ForwardRequest::MoveLeader { target }).await? {
            ForwardResponse::MoveLeader => Ok(()),
            other => Err(StoreError::Internal(format!("unexpected answer {other:?}"))),
        }
    }

    /// On the leader: asks `target` to campaign now (it wins: the leader stops
    /// answering as leader for it) and waits for this node to see it lead. When a third
    /// member comes to lead first (another move at the same time, such as the primary's
    /// agent moving leadership off its node), the answer is `NotLeader` naming it, and
    /// `on_leader` asks that member next.
    pub(crate) async fn transfer_leadership(&self, target: NodeId) -> Result<(), StoreError> {
        if target == self.id {
            return Ok(());
        }
        if !self.members().iter().any(|m| m.id == target && !m.is_learner) {
            return Err(StoreError::BadLeaderTransferee);
        }
        self.raft.trigger().transfer_leader(target).await.map_err(|_| StoreError::Stopped)?;
        let mut rx = self.raft.metrics();
        let settled = async {
            loop {
                let leader = rx.borrow_watched().current_leader;
                if let Some(outcome) = transfer_outcome(self.id, target, leader) {
                    return outcome;
                }
                if rx.changed().await.is_err() {
                    return Err(StoreError::Stopped);
                }
            }
        };
        tokio::time::timeout(LEADER_TRANSFER_TIMEOUT, settled).await.unwrap_or(Err(StoreError::LeaderTransferTimeout))
    }

    async fn set_voter(&self, id: NodeId) -> Result<(), StoreError> {
        self.raft.change_membership(ChangeMembers::AddVoterIds(BTreeSet::from([id])), false).await.map(|_| ()).map_err(StoreError::internal)
    }
}

/// What a leadership transfer to `target`, asked of `me`, has come to while `leader`
/// leads (None: not yet; keep waiting).
fn transfer_outcome(me: NodeId, target: NodeId, leader: Option<NodeId>) -> Option<Result<(), StoreError>> {
    match leader {
        Some(l) if l == target => Some(Ok(())),
        Some(l) if l != me => Some(Err(StoreError::NotLeader { leader: Some(l) })),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_transfer_ends_when_its_target_or_a_third_member_leads() {
        let (me, target, third) = (1, 2, 3);
        assert_eq!(transfer_outcome(me, target, Some(target)), Some(Ok(())));
        assert_eq!(transfer_outcome(me, target, Some(third)), Some(Err(StoreError::NotLeader { leader: Some(third) })));
        assert_eq!(transfer_outcome(me, target, Some(me)), None, "still leading: the target is catching up or campaigning");
        assert_eq!(transfer_outcome(me, target, None), None, "an election is running");
    }
}
