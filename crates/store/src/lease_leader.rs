//! The leader's lease duties: when it may act on lease deadlines, and revoking the
//! leases whose deadline passed.
//!
//! A new leader knows every lease only once it has applied its own term's first entry:
//! everything committed before its term is applied by then, so a lease the previous
//! leader granted, or a revoke it proposed, is known. Until then it answers no
//! keep-alive or time-to-live (they wait, then are retried) and expires nothing. At
//! that moment every deadline restarts at a full TTL ([`LeaseClock::lead`]).
//!
//! Expired leases are revoked together, one log entry for all that expired in a tick,
//! without waiting for earlier revokes: each lease is proposed once, again only if its
//! revoke failed. A keep-alive for an expired lease waits until its revoke is applied
//! and answers "not found", as etcd's lessor does.
//!
//! [`LeaseClock::lead`]: crate::lease_clock::LeaseClock::lead

use std::sync::Arc;
use std::time::Duration;

use openraft::async_runtime::watch::WatchReceiver;
use openraft::metrics::RaftServerMetrics;
use openraft::ServerState;
use raftgres_mvcc::Command;
use tokio::time::Instant;

use crate::client::REQUEST_TIMEOUT;
use crate::error::StoreError;
use crate::tasks::changed_or;
use crate::types::{NodeId, Request, TypeConfig};
use crate::Store;

/// How long after a failed revoke its leases are handed out again (a revoke that fails
/// at once must not make the expiry duty spin).
const REVOKE_RETRY: Duration = Duration::from_millis(20);
/// How long one revoke may take before it is proposed again.
const REVOKE_TIMEOUT: Duration = Duration::from_secs(2);

/// Whether this node may act on lease deadlines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Readiness {
    /// Another node leads (or none): lease requests go there.
    NotLeader(Option<NodeId>),
    /// Leading, but its term's first entry is not applied yet.
    Applying,
    /// Leading in this term with everything before it applied.
    Ready(u64),
}

/// The rule: leading, and the last applied entry is of this very term. It reads Raft's
/// server state ([`crate::tasks::ServerWatch`]), the watch the expiry duty sleeps on:
/// openraft sends it before the full metrics, so a duty woken by a change of it that
/// read the full metrics could still see the node as a follower, and sleep on through
/// its whole term with every lease deadline passing unrevoked (seen once in
/// `benches/peers.sh`: no failover for 180 s after a primary's node was killed).
pub(crate) fn readiness(own: NodeId, m: &RaftServerMetrics<TypeConfig>, applied_term: Option<u64>) -> Readiness {
    if m.state != ServerState::Leader || m.current_leader != Some(own) {
        return Readiness::NotLeader(m.current_leader.filter(|l| *l != own));
    }
    let term = m.vote.leader_id().term;
    if applied_term == Some(term) {
        Readiness::Ready(term)
    } else {
        Readiness::Applying
    }
}

impl Store {
    /// Whether this node may act on lease deadlines now; the first time in a term it
    /// restarts every deadline.
    fn lease_readiness(&self) -> Readiness {
        self.lease_readiness_as(&self.raft.server_metrics().borrow_watched())
    }

    /// [`Self::lease_readiness`] for a server state the caller already holds (the
    /// expiry duty's, so that what it decides and what it sleeps on are one snapshot).
    fn lease_readiness_as(&self, server: &RaftServerMetrics<TypeConfig>) -> Readiness {
        let readiness = readiness(self.id, server, self.applied.applied_term());
        if let Readiness::Ready(term) = readiness {
            if self.applied.leases.lead(term) {
                tracing::info!(term, "leading with the log applied: every lease gets a full TTL");
            }
        }
        readiness
    }

    /// Waits until `done` says yes about this node's lease readiness, re-checking on
    /// every applied entry and every Raft state change, up to [`REQUEST_TIMEOUT`].
    async fn wait_lease<T>(&self, mut done: impl FnMut(Readiness) -> Option<Result<T, StoreError>>) -> Result<T, StoreError> {
        let deadline = Instant::now() + REQUEST_TIMEOUT;
        let mut metrics = self.raft.metrics();
        loop {
            let next = self.applied.applied_index() + 1;
            if let Some(result) = done(self.lease_readiness()) {
                return result;
            }
            tokio::select! {
                () = self.applied.wait_applied(next) => {}
                changed = metrics.changed() => if changed.is_err() { return Err(StoreError::Stopped) },
                () = tokio::time::sleep_until(deadline) => return Err(StoreError::Timeout),
            }
        }
    }

    /// Waits until this node may act on lease deadlines; returns its term.
    pub(crate) async fn lease_authority(&self) -> Result<u64, StoreError> {
        self.wait_lease(|readiness| match readiness {
            Readiness::Ready(term) => Some(Ok(term)),
            Readiness::NotLeader(leader) => Some(Err(StoreError::NotLeader { leader })),
            Readiness::Applying => None,
        })
        .await
    }

    /// Waits until the expired lease `id` is revoked here. Fails if this node stops
    /// leading `term` first: the next leader restarts the lease, the caller asks it.
    pub(crate) async fn await_revoked(&self, id: i64, term: u64) -> Result<(), StoreError> {
        self.wait_lease(|readiness| match readiness {
            Readiness::Ready(now) if now == term => (!self.applied.leases.contains(id)).then_some(Ok(())),
            Readiness::NotLeader(leader) => Some(Err(StoreError::NotLeader { leader })),
            Readiness::Ready(_) | Readiness::Applying => Some(Err(StoreError::NotLeader { leader: None })),
        })
        .await
    }
}

/// The expiry duty: revokes what expired, then sleeps until the next deadline (or a
/// sooner one appears); a node that does not lead sleeps until Raft's server state
/// changes, one leading whose term's first entry is not applied until the next apply.
pub(crate) async fn expire_leases(store: Arc<Store>) {
    let mut server = store.raft.server_metrics();
    loop {
        if store.is_stopped() {
            return;
        }
        let snapshot = server.borrow_and_update().clone();
        // Read before the readiness, so an apply in between is not waited for in vain.
        let next_applied = store.applied.applied_index() + 1;
        match store.lease_readiness_as(&snapshot) {
            Readiness::NotLeader(_) => {
                if !changed_or(&mut server, None).await {
                    return;
                }
            }
            Readiness::Applying => {
                tokio::select! {
                    () = store.applied.wait_applied(next_applied) => {}
                    changed = server.changed() => if changed.is_err() { return },
                }
            }
            Readiness::Ready(_) => {
                let expired = store.applied.leases.take_expired();
                if !expired.is_empty() {
                    tokio::spawn(revoke(store.clone(), expired));
                }
                let next = store.applied.leases.next_expiry().map(Instant::from_std);
                tokio::select! {
                    () = store.applied.leases.sooner() => {}
                    alive = changed_or(&mut server, next) => if !alive { return },
                }
            }
        }
    }
}

/// Revokes `ids` in one log entry; on failure they are handed out again.
async fn revoke(store: Arc<Store>, ids: Vec<i64>) {
    let names: Vec<String> = ids.iter().map(|id| format!("{id:x}")).collect();
    tracing::info!(leases = %names.join(","), "leases expired: revoking them");
    let revokes = Request::Batch(ids.iter().map(|&id| Request::Kv(Command::LeaseRevoke { id })).collect());
    let failure = match tokio::time::timeout(REVOKE_TIMEOUT, store.raft.client_write(revokes)).await {
        Ok(Ok(_)) => return,
        Ok(Err(e)) => e.to_string(),
        Err(_) => format!("no answer within {REVOKE_TIMEOUT:?}"),
    };
    tracing::warn!(leases = %names.join(","), "revoking expired leases failed ({failure}): trying again");
    tokio::time::sleep(REVOKE_RETRY).await;
    store.applied.leases.revoke_failed(&ids);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::RaftMetrics;

    fn metrics(state: ServerState, leader: Option<NodeId>, term: u64) -> RaftServerMetrics<TypeConfig> {
        let m = RaftMetrics::new_initial(1);
        RaftServerMetrics {
            id: m.id,
            vote: openraft::Vote::new_committed(term, leader.unwrap_or(1)),
            state,
            current_leader: leader,
            membership_config: m.membership_config.clone(),
            committed_membership_config: m.membership_config,
        }
    }

    #[test]
    fn a_leader_acts_on_leases_once_its_terms_first_entry_is_applied() {
        let leader = metrics(ServerState::Leader, Some(1), 5);
        assert_eq!(readiness(1, &leader, Some(4)), Readiness::Applying, "the previous term's entries may not all be applied");
        assert_eq!(readiness(1, &leader, None), Readiness::Applying);
        assert_eq!(readiness(1, &leader, Some(5)), Readiness::Ready(5));
        let follower = metrics(ServerState::Follower, Some(2), 5);
        assert_eq!(readiness(1, &follower, Some(5)), Readiness::NotLeader(Some(2)));
        let candidate = metrics(ServerState::Candidate, None, 6);
        assert_eq!(readiness(1, &candidate, Some(5)), Readiness::NotLeader(None));
    }
}
