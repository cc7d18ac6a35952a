//! When the agent rewrites a key whose only change is a WAL position: its member key
//! (`xlog_location`, `receive_lsn`, `replay_lsn`) and the primary's `/status` (`optime`,
//! the permanent slots' positions).
//!
//! Every rewrite is a Raft write (an fsync on every node, a watch event to every agent).
//! The primary's liveness probe commits a tiny transaction every second, so on an idle
//! cluster every position moves every second by ~100 bytes; rewriting each `loop_wait`
//! was most of an idle node's store work. A position is rewritten at most once per
//! `loop_wait` when it moved by [`POSITION_STEP`] or more, and otherwise after
//! [`IDLE_REFRESH_LOOPS`] × `loop_wait` (Patroni's default `loop_wait` is 10 s, and it
//! rewrites the same keys once per loop). So what readers compute from published
//! positions (the lag in `raftctl list`, `GET /replica?lag=`, `maximum_lag_on_failover`
//! and `maximum_lag_on_syncnode` against `/status`) is off by less than 64 KiB or is at
//! most 10 × `loop_wait` old. Decisions that must be exact (the race's "am I the
//! healthiest", the synchronous standby's catch-up) read live positions instead.
//! Anything else in a member key (role, state, timeline, tags) is written at once, a
//! slot appearing in `/status` at the next `loop_wait`.

use std::time::Duration;

/// A position that moved this far is republished at the next `loop_wait`.
pub const POSITION_STEP: u64 = 64 * 1024;

/// A position that moved less is republished after this many `loop_wait`s.
pub const IDLE_REFRESH_LOOPS: u32 = 10;

/// How far a position moved; a position that appeared or went away counts as far.
pub fn moved(before: Option<u64>, now: Option<u64>) -> u64 {
    match (before, now) {
        (Some(a), Some(b)) => a.abs_diff(b),
        (None, None) => 0,
        _ => u64::MAX,
    }
}

/// Whether positions that moved by `moved` (the largest of a key's positions) since a
/// write `elapsed` ago are due.
pub fn due(moved: u64, elapsed: Duration, loop_wait: Duration) -> bool {
    moved > 0 && elapsed >= loop_wait && (moved >= POSITION_STEP || elapsed >= loop_wait * IDLE_REFRESH_LOOPS)
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOOP: Duration = Duration::from_secs(1);

    #[test]
    fn a_big_move_is_published_each_loop_a_small_one_every_ten() {
        let s = Duration::from_secs;
        assert!(!due(0, s(60), LOOP), "nothing moved: nothing to write");
        assert!(!due(POSITION_STEP, Duration::from_millis(999), LOOP), "at most once per loop_wait");
        assert!(due(POSITION_STEP, LOOP, LOOP), "a big move is written at the next loop_wait");
        assert!(!due(112, s(9), LOOP), "the liveness probe's 112 bytes wait");
        assert!(due(112, s(10), LOOP), "... for ten loop_waits at most");
        assert!(due(moved(None, Some(5)), LOOP, LOOP), "a position that appears is a big move");
        assert_eq!(moved(Some(10), Some(4)), 6, "a rewind counts as a move too");
        assert_eq!(moved(None, None), 0);
    }
}
