//! Is PostgreSQL hung? A pure verdict on the liveness probes' history (what
//! `postgres::liveness` records), the `liveness` settings and the time: healthy, suspect
//! (some probes in a row failed) or hung (`max_failures` in a row failed). A process
//! that exists but serves nobody (frozen, stuck on a dying disk, unable to write its
//! WAL) is an outage the postmaster's pid alone does not show.
//!
//! The HA loop acts on [`Verdict::Hung`]: a primary is fenced and, once every process
//! of it is confirmed dead, releases the leader key; a replica stops being a failover
//! candidate and fails its health checks.

use std::time::{Duration, Instant};

use crate::config::LivenessConfig;
pub use crate::state::Verdict;
use crate::state::{PgState, PgStatus};
use crate::timing::Timing;

/// Why one liveness probe failed (which step, and what PostgreSQL or the timeout said).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ProbeFailed(pub String);

/// What the probes found so far, since PostgreSQL last (re)started.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct History {
    /// Failed probes since the last one that succeeded.
    pub failures: u32,
    /// When the first of those failed probes started.
    pub failing_since: Option<Instant>,
    /// Why the latest probe failed.
    pub last_error: Option<String>,
    /// Failed probes since the agent started (for the metric).
    pub failures_total: u64,
}

impl History {
    /// Records one probe that started at `started`.
    pub fn record(&mut self, started: Instant, result: Result<(), ProbeFailed>) {
        match result {
            Ok(()) => {
                self.failures = 0;
                self.failing_since = None;
                self.last_error = None;
            }
            Err(ProbeFailed(why)) => {
                self.failures += 1;
                self.failures_total += 1;
                self.failing_since.get_or_insert(started);
                self.last_error = Some(why);
            }
        }
    }

    /// Forgets the current run of failures (PostgreSQL stopped or is another process now).
    pub fn restart(&mut self) {
        *self = Self { failures_total: self.failures_total, ..Self::default() };
    }
}

/// The verdict at `now` on `history` under `config`.
pub fn judge(history: &History, config: &LivenessConfig, now: Instant) -> Verdict {
    if !config.enabled || history.failures == 0 {
        return Verdict::Healthy;
    }
    if history.failures < config.max_failures {
        return Verdict::Suspect { failures: history.failures };
    }
    let since = history.failing_since.unwrap_or(now);
    Verdict::Hung { failing_for: now.saturating_duration_since(since) }
}

/// PostgreSQL as the node shows it (member key, REST API, health checks): state "hung"
/// while the verdict is, so no health check passes and no other member counts this one
/// as a running failover candidate.
pub fn published(pg: PgStatus, verdict: Verdict) -> PgStatus {
    match verdict {
        Verdict::Hung { .. } => PgStatus { state: PgState::Hung, ..pg },
        _ => pg,
    }
}

/// How long a node that fenced its own hung primary stays out of leader races (10 ×
/// ttl): long enough for a healthy replica to take over, after which a node left alone
/// tries again.
pub fn stand_aside_after_fencing(timing: &Timing) -> Duration {
    timing.ttl * 10
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A history of probes one second apart from `t0`, `true` for a success.
    fn probes(t0: Instant, results: &[bool]) -> History {
        let mut h = History::default();
        for (i, ok) in results.iter().enumerate() {
            let started = t0 + Duration::from_secs(i as u64);
            h.record(started, if *ok { Ok(()) } else { Err(ProbeFailed(format!("probe {i} timed out"))) });
        }
        h
    }

    #[test]
    fn failures_in_a_row_make_a_suspect_then_a_hung_server() {
        let config = LivenessConfig::default();
        let t0 = Instant::now();
        assert_eq!(judge(&probes(t0, &[true, true]), &config, t0), Verdict::Healthy);
        assert_eq!(judge(&probes(t0, &[true, false]), &config, t0), Verdict::Suspect { failures: 1 });
        assert_eq!(judge(&probes(t0, &[true, false, false]), &config, t0), Verdict::Suspect { failures: 2 });
        let hung = probes(t0, &[true, false, false, false]);
        assert_eq!(hung.last_error.as_deref(), Some("probe 3 timed out"));
        // Failing since the second probe (t0 + 1 s); judged at t0 + 7.1 s.
        let now = t0 + Duration::from_millis(7100);
        assert_eq!(judge(&hung, &config, now), Verdict::Hung { failing_for: Duration::from_millis(6100) });
    }

    #[test]
    fn one_success_clears_the_run_but_not_the_total() {
        let config = LivenessConfig::default();
        let t0 = Instant::now();
        let h = probes(t0, &[false, false, true, false, false]);
        assert_eq!(judge(&h, &config, t0), Verdict::Suspect { failures: 2 }, "five probes, never three failures in a row");
        assert_eq!(h.failures_total, 4);
        assert_eq!(h.failing_since, Some(t0 + Duration::from_secs(3)));
    }

    #[test]
    fn a_restart_forgets_the_run() {
        let config = LivenessConfig::default();
        let t0 = Instant::now();
        let mut h = probes(t0, &[false, false, false]);
        assert!(matches!(judge(&h, &config, t0), Verdict::Hung { .. }));
        h.restart();
        assert_eq!(judge(&h, &config, t0), Verdict::Healthy);
        assert_eq!(h.failures_total, 3);
    }

    #[test]
    fn a_hung_server_is_published_as_hung() {
        let running = PgStatus { state: PgState::Running, wal_lsn: Some(7), ..Default::default() };
        let hung = published(running.clone(), Verdict::Hung { failing_for: Duration::from_secs(7) });
        assert_eq!((hung.state.as_str(), hung.wal_lsn, hung.is_running()), ("hung", Some(7), false));
        assert_eq!(published(running.clone(), Verdict::Suspect { failures: 2 }), running);
    }

    #[test]
    fn max_failures_and_enabled_are_obeyed() {
        let t0 = Instant::now();
        let h = probes(t0, &[false, false, false, false]);
        let patient = LivenessConfig { max_failures: 5, ..LivenessConfig::default() };
        assert_eq!(judge(&h, &patient, t0), Verdict::Suspect { failures: 4 });
        let one = LivenessConfig { max_failures: 1, ..LivenessConfig::default() };
        assert_eq!(judge(&probes(t0, &[false]), &one, t0), Verdict::Hung { failing_for: Duration::ZERO });
        let off = LivenessConfig { enabled: false, ..LivenessConfig::default() };
        assert_eq!(judge(&h, &off, t0), Verdict::Healthy);
    }
}
