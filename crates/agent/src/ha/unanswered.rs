//! When PostgreSQL's status query keeps failing. A failure is normal for a moment (a
//! server starting, restarting or replaying up to consistency) and logged at debug level;
//! one that lasts longer than [`WARN_AFTER`] is what leaves a member published as
//! `starting` while its server may in fact run, so it becomes a warning (with the error),
//! repeated every [`WARN_EVERY`] while it lasts, and its end is logged too.

use std::time::{Duration, Instant};

/// How long the status query may fail before it is worth a warning.
pub const WARN_AFTER: Duration = Duration::from_secs(10);
/// How often a lasting failure is warned about again.
pub const WARN_EVERY: Duration = Duration::from_secs(60);

/// The failures of the status query since it last answered.
#[derive(Debug, Default)]
pub struct Unanswered {
    /// (first failure, last warning) of the current run of failures.
    failing: Option<(Instant, Option<Instant>)>,
}

/// What to log for one status query.
#[derive(Debug, PartialEq, Eq)]
pub enum Log {
    /// Nothing beyond debug level.
    Quiet,
    /// Warn: the query has failed for this long.
    Warn(Duration),
    /// Answered again after failing for this long (after at least one warning).
    Recovered(Duration),
}

impl Unanswered {
    /// Records a failed status query at `now`.
    pub fn failed(&mut self, now: Instant) -> Log {
        let (since, warned) = self.failing.get_or_insert((now, None));
        let lasted = now.saturating_duration_since(*since);
        let due = match warned {
            None => lasted >= WARN_AFTER,
            Some(at) => now.saturating_duration_since(*at) >= WARN_EVERY,
        };
        if !due {
            return Log::Quiet;
        }
        *warned = Some(now);
        Log::Warn(lasted)
    }

    /// Records an answer at `now`.
    pub fn answered(&mut self, now: Instant) -> Log {
        match self.failing.take() {
            Some((since, Some(_))) => Log::Recovered(now.saturating_duration_since(since)),
            _ => Log::Quiet,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_brief_failure_stays_quiet_a_lasting_one_warns_once_a_minute_and_its_end_is_told() {
        let t0 = Instant::now();
        let s = Duration::from_secs;
        let mut u = Unanswered::default();
        assert_eq!(u.failed(t0), Log::Quiet);
        assert_eq!(u.failed(t0 + s(9)), Log::Quiet);
        assert_eq!(u.answered(t0 + s(9)), Log::Quiet, "a brief failure ends quietly");
        assert_eq!(u.failed(t0 + s(20)), Log::Quiet, "a new run of failures starts its own clock");
        assert_eq!(u.failed(t0 + s(30)), Log::Warn(s(10)));
        assert_eq!(u.failed(t0 + s(31)), Log::Quiet);
        assert_eq!(u.failed(t0 + s(89)), Log::Quiet);
        assert_eq!(u.failed(t0 + s(90)), Log::Warn(s(70)));
        assert_eq!(u.answered(t0 + s(95)), Log::Recovered(s(75)));
        assert_eq!(u.answered(t0 + s(96)), Log::Quiet);
    }
}
