//! A replica that does not get back to streaming on its own, and what the agent does
//! about it. Two cases, each decided by a pure function of what the HA loop sees:
//!
//! - PostgreSQL keeps exiting ([`after_crash`]). It is started again (spaced by
//!   `loop_wait`), and after 3 exits in a row rewound only when its timeline is older
//!   than the leader's (its WAL may then have gone past the promotion). On the leader's
//!   timeline a rewind cannot help, and it harms: pg_rewind first finishes the crashed
//!   server's recovery in single-user mode, which ends recovery where the local WAL
//!   ends and writes a checkpoint there. A replica that was behind the primary then
//!   holds WAL the primary never wrote, on the same timeline, and can never stream
//!   again (seen after a full disk: `invalid record length at ...: wanted 24, got 0`
//!   every 500 ms, the WAL receiver stopped by the startup process each time it
//!   starts). Should the crashes go on after a rewind, the data directory is removed
//!   and cloned again (`remove_data_directory_on_rewind_failure`).
//! - PostgreSQL runs but has neither streamed nor replayed anything for [`patience`]
//!   ([`Stall`]), on the leader's timeline, with the leader running as primary and its
//!   PostgreSQL port reachable all along. PostgreSQL is restarted; if it is stalled
//!   as long again, the data directory is removed and the leader cloned again, as
//!   `raftctl reinit` does (only with `remove_data_directory_on_rewind_failure`: a
//!   replica whose WAL cannot be replayed is a rewind failure that pg_rewind cannot even
//!   see). Only replicas get here: the HA loop follows a leader only on a replica,
//!   and never while the cluster is paused.
//! - A replica on an older timeline than the leader's that does not stream has diverged
//!   and is rewound ([`diverged`]), but only once per leader timeline: one that
//!   pg_rewind already brought onto the leader's timeline and that still cannot stream
//!   (after a double failover the WAL it must fetch next is already gone from the
//!   leader: `requested WAL segment ... has already been removed`) would be rewound
//!   every few seconds for ever. It counts as on the leader's timeline
//!   ([`on_leader_timeline`]), so it stalls, and is restarted and then cloned again.
//!
//! A replica tagged `nostream` never streams by design (it replays WAL from the archive
//! through `restore_command`, which may have nothing new for a long while): it never
//! counts as stalled ([`Seen::could_stream`]).

use std::time::{Duration, Instant};

use crate::timing::Timing;

/// What to do about a replica whose PostgreSQL exited again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AfterCrash {
    /// Start it again.
    Restart,
    /// Rewind it to the leader first.
    Rewind,
    /// Remove the data directory and clone the leader again.
    Reclone,
}

/// `crashes`: exits in a row; `timeline`: the data dir's latest timeline (from its
/// control file); `rewound`: this run of crashes already had its rewind.
pub fn after_crash(crashes: u32, timeline: Option<u32>, leader_timeline: Option<u32>, rewound: bool) -> AfterCrash {
    let behind_leader = matches!((timeline, leader_timeline), (Some(mine), Some(leader)) if mine < leader);
    if rewound && crashes >= 6 {
        AfterCrash::Reclone
    } else if !rewound && crashes >= 3 && behind_leader {
        AfterCrash::Rewind
    } else {
        AfterCrash::Restart
    }
}

/// Whether the replica, on `timeline`, follows the leader's timeline (`leader_timeline`):
/// it is on it, or pg_rewind already brought it onto it (`rewound_onto`: the leader's
/// timeline when pg_rewind last succeeded here, until the replica streams). The
/// timelines must be known.
pub fn on_leader_timeline(timeline: Option<u32>, leader_timeline: Option<u32>, rewound_onto: Option<u32>) -> bool {
    timeline.is_some() && leader_timeline.is_some() && (timeline == leader_timeline || rewound_onto == leader_timeline)
}

/// Whether a replica that does not stream has diverged from the leader and needs a
/// rewind: it is on an older timeline than the leader's and was not already rewound
/// onto it (another rewind cannot bring back WAL the leader removed; see the module doc).
pub fn diverged(timeline: Option<u32>, leader_timeline: Option<u32>, rewound_onto: Option<u32>) -> bool {
    let older = matches!((timeline, leader_timeline), (Some(mine), Some(leader)) if mine < leader);
    older && !on_leader_timeline(timeline, leader_timeline, rewound_onto)
}

/// How long a replica may run without streaming or replaying before the agent steps in:
/// 2 × ttl or 10 × loop_wait, whichever is longer (10 s with the lab's ttl 2 /
/// loop_wait 1; 100 s with Patroni's defaults 30 / 10). A replica that just started
/// streams within a second or two; one that replays a long backlog is making progress.
pub fn patience(timing: &Timing) -> Duration {
    (timing.ttl * 2).max(timing.loop_wait * 10)
}

/// A running replica as one HA cycle sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Seen {
    /// Tagged `nostream`: it is not meant to stream.
    pub nostream: bool,
    /// A WAL receiver is streaming.
    pub streaming: bool,
    /// `pg_last_wal_replay_lsn()`.
    pub replay_lsn: Option<u64>,
    /// Its timeline is the leader's, or it was rewound onto it ([`on_leader_timeline`]).
    pub on_leader_timeline: bool,
    /// The leader's member key says it runs as primary.
    pub leader_healthy: bool,
    /// The upstream's PostgreSQL port accepts connections from here.
    pub upstream_reachable: bool,
}

impl Seen {
    /// Not streaming although everything else is there to stream: the only state in
    /// which [`Stall`] counts (and in which the caller needs to probe the upstream).
    pub fn could_stream(&self) -> bool {
        !self.nostream && !self.streaming && self.on_leader_timeline && self.leader_healthy
    }
}

/// What [`Stall::observe`] asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StallRemedy {
    /// Nothing (yet).
    Wait,
    /// Stop PostgreSQL; the next cycle starts it again.
    Restart,
    /// Remove the data directory; the next cycle clones the leader again.
    Reclone,
}

/// Tracks how long a replica has been stalled, across cycles.
#[derive(Debug, Default)]
pub struct Stall {
    /// Since when the replica could stream but did not and replayed nothing.
    since: Option<Instant>,
    /// The replay position seen last, to tell a slow replica from a stalled one.
    replay_lsn: Option<u64>,
    /// PostgreSQL was already restarted for this stall.
    restarted: bool,
    /// When the replica was last observed running: after a longer gap than the
    /// patience (it was stopped, or primary meanwhile) everything starts over.
    last_seen: Option<Instant>,
}

impl Stall {
    /// One cycle's look at the replica at `now`.
    pub fn observe(&mut self, seen: &Seen, now: Instant, patience: Duration) -> StallRemedy {
        if self.last_seen.is_some_and(|t| now.saturating_duration_since(t) > patience) {
            *self = Stall::default();
        }
        self.last_seen = Some(now);
        let replayed = matches!((self.replay_lsn, seen.replay_lsn), (Some(before), Some(now)) if now > before);
        self.replay_lsn = seen.replay_lsn;
        if seen.streaming {
            self.restarted = false;
        }
        if replayed || !seen.could_stream() || !seen.upstream_reachable {
            self.since = None;
            return StallRemedy::Wait;
        }
        let since = *self.since.get_or_insert(now);
        if now.saturating_duration_since(since) < patience {
            return StallRemedy::Wait;
        }
        self.since = None;
        if self.restarted {
            self.restarted = false;
            StallRemedy::Reclone
        } else {
            self.restarted = true;
            StallRemedy::Restart
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PATIENCE: Duration = Duration::from_secs(10);

    fn stalled() -> Seen {
        Seen {
            nostream: false,
            streaming: false,
            replay_lsn: Some(0x4037B28),
            on_leader_timeline: true,
            leader_healthy: true,
            upstream_reachable: true,
        }
    }

    /// Observes `seen` every second for `seconds` seconds from `start`; the remedies asked for.
    fn watch(stall: &mut Stall, seen: Seen, start: Instant, seconds: u64) -> Vec<(u64, StallRemedy)> {
        (0..=seconds)
            .map(|s| (s, stall.observe(&seen, start + Duration::from_secs(s), PATIENCE)))
            .filter(|(_, r)| *r != StallRemedy::Wait)
            .collect()
    }

    #[test]
    fn a_stalled_replica_is_restarted_then_recloned() {
        let mut stall = Stall::default();
        let t0 = Instant::now();
        // The count starts again at the first look after the restart.
        assert_eq!(watch(&mut stall, stalled(), t0, 25), vec![(10, StallRemedy::Restart), (21, StallRemedy::Reclone)]);
    }

    #[test]
    fn streaming_after_the_restart_forgets_the_stall() {
        let mut stall = Stall::default();
        let t0 = Instant::now();
        assert_eq!(watch(&mut stall, stalled(), t0, 10), vec![(10, StallRemedy::Restart)]);
        let streaming = Seen { streaming: true, ..stalled() };
        assert_eq!(stall.observe(&streaming, t0 + Duration::from_secs(11), PATIENCE), StallRemedy::Wait);
        // A later stall starts over with a restart, not a re-clone.
        assert_eq!(watch(&mut stall, stalled(), t0 + Duration::from_secs(12), 10), vec![(10, StallRemedy::Restart)]);
    }

    #[test]
    fn a_long_gap_between_observations_starts_over() {
        let mut stall = Stall::default();
        let t0 = Instant::now();
        assert_eq!(watch(&mut stall, stalled(), t0, 10), vec![(10, StallRemedy::Restart)]);
        // Not observed for a minute (not running, or primary meanwhile): a restart again.
        assert_eq!(watch(&mut stall, stalled(), t0 + Duration::from_secs(70), 10), vec![(10, StallRemedy::Restart)]);
    }

    #[test]
    fn replaying_is_progress() {
        let mut stall = Stall::default();
        let t0 = Instant::now();
        for s in 0..60 {
            let seen = Seen { replay_lsn: Some(1000 + s), ..stalled() };
            assert_eq!(stall.observe(&seen, t0 + Duration::from_secs(s), PATIENCE), StallRemedy::Wait, "second {s}");
        }
    }

    #[test]
    fn nothing_without_a_healthy_reachable_leader_on_the_same_timeline() {
        let t0 = Instant::now();
        for seen in [
            Seen { leader_healthy: false, ..stalled() },
            Seen { upstream_reachable: false, ..stalled() },
            Seen { on_leader_timeline: false, ..stalled() },
            Seen { streaming: true, ..stalled() },
            // Replays from the archive only: not streaming is what it is meant to do.
            Seen { nostream: true, ..stalled() },
        ] {
            let mut stall = Stall::default();
            assert_eq!(watch(&mut stall, seen, t0, 60), vec![], "{seen:?}");
        }
    }

    #[test]
    fn the_whole_patience_must_be_stalled() {
        let mut stall = Stall::default();
        let t0 = Instant::now();
        assert_eq!(watch(&mut stall, stalled(), t0, 9), vec![]);
        // The leader looked unhealthy for one cycle: the count starts again.
        let blip = Seen { leader_healthy: false, ..stalled() };
        assert_eq!(stall.observe(&blip, t0 + Duration::from_secs(9), PATIENCE), StallRemedy::Wait);
        assert_eq!(watch(&mut stall, stalled(), t0 + Duration::from_secs(10), 10), vec![(10, StallRemedy::Restart)]);
    }

    #[test]
    fn patience_follows_the_timing() {
        let lab = Timing::from_seconds(2, 1.0, 0.5, 0.5);
        assert_eq!(patience(&lab), Duration::from_secs(10));
        let patroni = Timing::from_seconds(30, 10.0, 10.0, 5.0);
        assert_eq!(patience(&patroni), Duration::from_secs(100));
    }

    /// The double-failover loop: rewound onto the leader's timeline 3, the replica
    /// still reports timeline 2 (it cannot fetch the WAL that follows the rewind's
    /// checkpoint). Before the fix only the timelines were compared, and it was rewound
    /// again every 5 s for ever; now it is not diverged but stalled.
    #[test]
    fn a_replica_rewound_onto_the_leaders_timeline_is_not_rewound_again() {
        assert!(!diverged(Some(2), Some(3), Some(3)));
        assert!(on_leader_timeline(Some(2), Some(3), Some(3)));
        let seen = Seen { on_leader_timeline: on_leader_timeline(Some(2), Some(3), Some(3)), ..stalled() };
        let mut stall = Stall::default();
        assert_eq!(watch(&mut stall, seen, Instant::now(), 25), vec![(10, StallRemedy::Restart), (21, StallRemedy::Reclone)]);
    }

    #[test]
    fn a_replica_behind_the_leader_is_rewound_once_per_leader_timeline() {
        assert!(diverged(Some(2), Some(3), None), "never rewound");
        assert!(diverged(Some(1), Some(3), Some(2)), "rewound onto an earlier leader's timeline");
        assert!(!on_leader_timeline(Some(1), Some(3), Some(2)));
        assert!(!diverged(Some(3), Some(3), None), "on the leader's timeline");
        assert!(on_leader_timeline(Some(3), Some(3), None));
        assert!(!diverged(None, Some(3), Some(3)), "unknown timeline");
        assert!(!on_leader_timeline(None, Some(3), Some(3)));
        assert!(!on_leader_timeline(Some(2), None, None), "unknown leader timeline");
    }

    #[test]
    fn crash_loops_on_the_leaders_timeline_are_never_rewound() {
        for crashes in 1..20 {
            assert_eq!(after_crash(crashes, Some(1), Some(1), false), AfterCrash::Restart, "{crashes} crashes");
        }
        assert_eq!(after_crash(3, None, Some(2), false), AfterCrash::Restart, "unknown timeline");
    }

    #[test]
    fn crash_loops_behind_the_leader_are_rewound_then_recloned() {
        assert_eq!(after_crash(2, Some(1), Some(2), false), AfterCrash::Restart);
        assert_eq!(after_crash(3, Some(1), Some(2), false), AfterCrash::Rewind);
        assert_eq!(after_crash(4, Some(2), Some(2), true), AfterCrash::Restart);
        assert_eq!(after_crash(6, Some(2), Some(2), true), AfterCrash::Reclone);
    }
}
