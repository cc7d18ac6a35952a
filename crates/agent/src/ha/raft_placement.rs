//! Keeping the Raft leader off the primary's node. When the node that runs the primary
//! also leads Raft, killing it costs two detections in a row: the store first elects a
//! new Raft leader (~0.5 s), which then gives every lease a full ttl (it cannot know how
//! long ago the last keep-alive came), and only then can the primary's lease expire.
//! With the leader elsewhere the lease simply expires ttl after the last keep-alive. So
//! the primary's agent hands Raft leadership to another voter (etcd's MoveLeader, which
//! waits for the target to hold the whole log) once it has been primary for [`SETTLE`],
//! and tries again at most every [`BACKOFF`]. Nothing depends on it for safety: the
//! lease rule holds wherever the Raft leader is; this only shortens a node kill's
//! failover. [`target`] is the pure decision; [`keep_off_primary`] the task that acts.

use std::time::{Duration, Instant};

use crate::cluster::Role;
use crate::dcs::Dcs;
use crate::state::{NodeState, PgState};

/// How long a node must have been the running primary before leadership moves off it
/// (a fresh primary's peers are still catching up on the log, and a failover just
/// changed the Raft leader, or is about to).
pub const SETTLE: Duration = Duration::from_secs(3);
/// The least time between two attempts (a refused or timed-out move is not retried at once).
pub const BACKOFF: Duration = Duration::from_secs(30);
/// How often the primary's agent looks at where the Raft leader is.
const LOOK_EVERY: Duration = Duration::from_secs(5);
/// How long one MoveLeader may take.
const MOVE_WAIT: Duration = Duration::from_secs(3);

/// What one look found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Look {
    /// How long this node has been the running primary holding the key (None: it is not).
    pub primary_for: Option<Duration>,
    /// This node's store member id, the Raft leader's, and every voter's.
    pub me: u64,
    pub leader: u64,
    pub voters: Vec<u64>,
    /// Since the last attempt to move leadership (None: never tried).
    pub since_attempt: Option<Duration>,
    /// Attempts so far (each one asks the next voter in turn).
    pub attempts: usize,
}

/// The voter to hand Raft leadership to, if it should move now.
pub fn target(look: &Look) -> Option<u64> {
    let settled = look.primary_for.is_some_and(|d| d >= SETTLE);
    let may_try = look.since_attempt.is_none_or(|d| d >= BACKOFF);
    if !settled || !may_try || look.me == 0 || look.leader != look.me {
        return None;
    }
    let mut others: Vec<u64> = look.voters.iter().copied().filter(|v| *v != look.me).collect();
    others.sort_unstable();
    // With one other voter, a move gains nothing: losing either node loses the quorum.
    if others.len() < 2 {
        return None;
    }
    Some(others[look.attempts % others.len()])
}

/// Whether `state` is a running primary holding the leader key.
fn is_running_primary(state: &NodeState) -> bool {
    state.holds_leader_key && state.postgres.role == Role::Primary && state.postgres.state == PgState::Running
}

/// Runs beside the HA loop (never inside it: a move may take seconds) until `state`'s
/// sender is gone.
pub async fn keep_off_primary(dcs: Dcs, state: tokio::sync::watch::Receiver<NodeState>) {
    let mut primary_since: Option<Instant> = None;
    let mut last_attempt: Option<Instant> = None;
    let mut attempts = 0;
    loop {
        tokio::time::sleep(LOOK_EVERY).await;
        if state.has_changed().is_err() {
            return;
        }
        let now = Instant::now();
        if !is_running_primary(&state.borrow()) {
            primary_since = None;
            continue;
        }
        let since = *primary_since.get_or_insert(now);
        if now.duration_since(since) < SETTLE || last_attempt.is_some_and(|t| now.duration_since(t) < BACKOFF) {
            continue;
        }
        let Ok((me, leader, voters)) = dcs.raft_roles().await else { continue };
        let look = Look {
            primary_for: Some(now.duration_since(since)),
            me,
            leader,
            voters,
            since_attempt: last_attempt.map(|t| now.duration_since(t)),
            attempts,
        };
        let Some(to) = target(&look) else { continue };
        last_attempt = Some(now);
        attempts += 1;
        match dcs.move_raft_leader(to, MOVE_WAIT).await {
            Ok(()) => tracing::info!("moved Raft leadership off the primary's node to member {to:x}: a node kill here then needs no Raft election before the lease can expire"),
            Err(e) => tracing::info!("could not move Raft leadership off the primary's node to member {to:x} ({e}); trying again in {} s", BACKOFF.as_secs()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn look(primary_for: Option<u64>, leader: u64, since_attempt: Option<u64>, attempts: usize) -> Look {
        Look {
            primary_for: primary_for.map(Duration::from_secs),
            me: 1,
            leader,
            voters: vec![3, 1, 2],
            since_attempt: since_attempt.map(Duration::from_secs),
            attempts,
        }
    }

    #[test]
    fn a_settled_primary_that_leads_raft_hands_leadership_to_the_other_voters_in_turn() {
        assert_eq!(target(&look(Some(3), 1, None, 0)), Some(2));
        assert_eq!(target(&look(Some(60), 1, Some(30), 1)), Some(3), "the next voter after a failed attempt");
        assert_eq!(target(&look(Some(60), 1, Some(30), 2)), Some(2));
    }

    #[test]
    fn nothing_moves_too_early_too_often_or_where_nothing_is_gained() {
        assert_eq!(target(&look(None, 1, None, 0)), None, "not the primary");
        assert_eq!(target(&look(Some(2), 1, None, 0)), None, "a fresh primary waits");
        assert_eq!(target(&look(Some(60), 2, None, 0)), None, "another node leads Raft already");
        assert_eq!(target(&look(Some(60), 1, Some(29), 1)), None, "the last attempt was recent");
        assert_eq!(target(&Look { voters: vec![1, 2], ..look(Some(60), 1, None, 0) }), None, "two voters: no gain");
        assert_eq!(target(&Look { me: 0, leader: 0, ..look(Some(60), 1, None, 0) }), None, "the store did not say who it is");
    }
}
