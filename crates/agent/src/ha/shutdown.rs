//! What the agent leaves behind when it is told to stop (SIGTERM, SIGINT): one pure
//! decision, [`plan`], from the cluster's keys read at that moment and whether a
//! postmaster runs, to a [`Plan`] the HA loop carries out (`Agent::shutdown`).
//!
//! Not paused (or the pause cannot be confirmed): PostgreSQL stops, the leader key is
//! released and the lease revoked, as ever, so a replica takes over at once.
//!
//! Paused (maintenance mode, `raftctl pause`): PostgreSQL keeps running and the fencer
//! is disarmed, so an operator can restart (upgrade) the agents with no database
//! downtime, as with Patroni. A primary keeps its leader key: the lease is not revoked,
//! the key expires with it, and the next run takes it back (`decide`'s paused case,
//! `Action::ClaimKeyPaused`). Why this keeps one writer: `crates/agent/SAFETY.md`,
//! "Pause across an agent restart". Paused, the plan is also recorded on the HA
//! timeline before the lease goes, so `raftctl resume` sees the agent is away.

use crate::cluster::{ClusterView, AWAY_WHILE_PAUSED};

/// What to do with PostgreSQL and the keys on the way out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// Stop PostgreSQL (fast, then kill): false only in a paused cluster.
    pub stop_postgres: bool,
    /// Release the leader key and revoke the lease (the member key goes with it).
    pub release: bool,
    /// The log line (and, paused, the timeline event) saying what happens and why.
    pub why: String,
}

/// The plan for a node named `me`, from `view` (the cluster's keys read now, or why they
/// could not be) and whether a postmaster runs.
pub fn plan(view: Result<&ClusterView, &str>, me: &str, postmaster_running: bool) -> Plan {
    let stop = |why: String| Plan { stop_postgres: true, release: true, why };
    let view = match view {
        Ok(view) => view,
        Err(e) => {
            return stop(format!(
                "shutting down: cannot read the cluster's keys ({e}), so a pause cannot be confirmed: stopping PostgreSQL and releasing the leader key if I hold it"
            ))
        }
    };
    if !view.paused() {
        return stop("shutting down: stopping PostgreSQL and releasing the leader key if I hold it".into());
    }
    if !postmaster_running {
        return stop("shutting down (cluster paused): PostgreSQL is not running; releasing the leader key if I hold it".into());
    }
    if view.leader_name() == Some(me) {
        return Plan {
            stop_postgres: false,
            release: false,
            why: format!("{AWAY_WHILE_PAUSED}: leaving PostgreSQL running as the primary; the leader key expires with my lease and the next run of this node takes it back"),
        };
    }
    Plan {
        stop_postgres: false,
        release: true,
        why: format!("{AWAY_WHILE_PAUSED}: leaving PostgreSQL running; the next run of this node adopts it"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::LeaderKey;

    fn view(paused: bool, leader: Option<&str>) -> ClusterView {
        ClusterView {
            config: paused.then(|| (serde_json::json!({"pause": true}), 3)),
            leader: leader.map(|name| LeaderKey { name: name.into(), lease: 7, mod_revision: 4 }),
            ..ClusterView::default()
        }
    }

    /// (case, view, postmaster running, stop PostgreSQL, release the key and lease, words)
    type Row = (&'static str, Result<ClusterView, &'static str>, bool, bool, bool, &'static str);

    #[test]
    fn the_shutdown_table() {
        let rows: [Row; 7] = [
            ("not paused, primary", Ok(view(false, Some("n1"))), true, true, true, "stopping PostgreSQL"),
            ("not paused, replica", Ok(view(false, Some("n2"))), true, true, true, "stopping PostgreSQL"),
            ("store unreadable", Err("deadline exceeded"), true, true, true, "a pause cannot be confirmed"),
            ("paused, primary holding the key", Ok(view(true, Some("n1"))), true, false, false, "the next run of this node takes it back"),
            ("paused, replica", Ok(view(true, Some("n2"))), true, false, true, "the next run of this node adopts it"),
            ("paused, nobody holds the key", Ok(view(true, None)), true, false, true, "leaving PostgreSQL running"),
            ("paused, PostgreSQL already down", Ok(view(true, Some("n1"))), false, true, true, "PostgreSQL is not running"),
        ];
        for (case, v, running, stop, release, says) in rows {
            let p = plan(v.as_ref().map_err(|e| *e), "n1", running);
            assert_eq!((p.stop_postgres, p.release), (stop, release), "{case}: {p:?}");
            assert!(p.why.contains(says), "{case}: {:?} lacks {says:?}", p.why);
        }
    }
}
