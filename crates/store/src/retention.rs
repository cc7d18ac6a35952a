//! Auto-compaction's policy, as data: etcd's `--auto-compaction-mode` and
//! `--auto-compaction-retention`, parsed into [`AutoCompaction`], and the pure decision
//! of which revision to compact now ([`Samples::to_compact`]), given the clock, the
//! revisions seen, and the last compaction. No clock is read and nothing is proposed
//! here; the `compactor` task does that.
//!
//! - **periodic** keeps the history of the last `period`: the compactor notes the store
//!   revision every tenth of the period (at least every 100 ms, at most every 6 min)
//!   and compacts at the newest revision noted at least one period ago;
//! - **revision** keeps the last `n` revisions: every 10 s it compacts at
//!   `current - n`;
//! - **off** (retention 0) never compacts by itself.
//!
//! Unlike etcd, whose default is off, raftgres compacts by default ([`DEFAULT`]): its
//! state lives in memory, and without compaction every member-key update would grow
//! it for good.

use std::collections::VecDeque;
use std::time::Duration;

/// When the history is compacted without anyone asking.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AutoCompaction {
    Off,
    /// Keep the history of the last this long.
    Periodic(Duration),
    /// Keep the last this many revisions.
    Revisions(i64),
}

/// The default: the last 10,000 revisions (etcd's default is off). See the module doc.
pub const DEFAULT: AutoCompaction = AutoCompaction::Revisions(10_000);

/// How often revision mode looks at the revision.
const REVISION_CHECK: Duration = Duration::from_secs(10);

impl Default for AutoCompaction {
    fn default() -> Self {
        DEFAULT
    }
}

impl std::fmt::Display for AutoCompaction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AutoCompaction::Off => write!(f, "off"),
            AutoCompaction::Periodic(d) => write!(f, "periodic, keeping {}", humantime::format_duration(*d)),
            AutoCompaction::Revisions(n) => write!(f, "revision, keeping {n} revisions"),
        }
    }
}

impl AutoCompaction {
    /// etcd's two flags: `mode` is `periodic` or `revision`; `retention` is, in
    /// periodic mode, a duration (`5m`, `1h30m`) or a bare number of hours, in revision
    /// mode a count; `0` turns auto-compaction off. As in etcd, a retention without a
    /// mode is periodic. Neither: [`DEFAULT`]; a mode alone: that mode's default
    /// retention (5 minutes, or 10,000 revisions). Errors name the flag.
    pub fn parse(mode: Option<&str>, retention: Option<&str>) -> Result<Self, String> {
        let retention = retention.map(str::trim);
        if retention == Some("0") {
            return Ok(AutoCompaction::Off);
        }
        let mode = match (mode.map(str::trim), retention) {
            (None, None) => return Ok(DEFAULT),
            (Some(mode), _) => mode,
            (None, Some(_)) => "periodic",
        };
        match (mode, retention) {
            ("periodic", None) => Ok(AutoCompaction::Periodic(Duration::from_secs(5 * 60))),
            ("periodic", Some(text)) => {
                let period = match text.parse::<u64>() {
                    Ok(hours) => Duration::from_secs(hours.saturating_mul(3600)),
                    Err(_) => humantime::parse_duration(text).map_err(|e| {
                        format!("--auto-compaction-retention {text:?}: in periodic mode, a duration (5m, 1h30m) or a number of hours ({e})")
                    })?,
                };
                Ok(if period.is_zero() { AutoCompaction::Off } else { AutoCompaction::Periodic(period) })
            }
            ("revision", None) => Ok(DEFAULT),
            ("revision", Some(text)) => match text.parse::<i64>() {
                Ok(n) if n > 0 => Ok(AutoCompaction::Revisions(n)),
                _ => Err(format!("--auto-compaction-retention {text:?}: in revision mode, a number of revisions (0 turns it off)")),
            },
            (other, _) => Err(format!("--auto-compaction-mode must be periodic or revision, not {other:?}")),
        }
    }

    /// How often the compactor notes the revision and decides.
    pub fn tick(&self) -> Duration {
        match self {
            AutoCompaction::Off | AutoCompaction::Revisions(_) => REVISION_CHECK,
            AutoCompaction::Periodic(period) => (*period / 10).clamp(Duration::from_millis(100), Duration::from_secs(360)),
        }
    }
}

/// One noted store revision, at `at` (time since the compactor started).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sample {
    pub at: Duration,
    pub revision: i64,
}

/// The revisions the compactor noted, oldest first, with the policy they serve.
#[derive(Debug, Clone)]
pub struct Samples {
    policy: AutoCompaction,
    noted: VecDeque<Sample>,
}

impl Samples {
    pub fn new(policy: AutoCompaction) -> Self {
        Self { policy, noted: VecDeque::new() }
    }

    /// Notes `sample` and forgets what no later decision can use: in periodic mode,
    /// every sample older than the newest one taken at least a period before.
    pub fn note(&mut self, sample: Sample) {
        self.noted.push_back(sample);
        if let AutoCompaction::Periodic(period) = self.policy {
            while self.noted.get(1).is_some_and(|next| sample.at.saturating_sub(next.at) >= period) {
                self.noted.pop_front();
            }
        } else {
            self.noted.drain(..self.noted.len() - 1);
        }
    }

    /// The revision to compact at `now`, when the store is at `current` and was last
    /// compacted at `compacted`; `None` when there is nothing (new) to compact.
    pub fn to_compact(&self, now: Duration, current: i64, compacted: i64) -> Option<i64> {
        let target = match self.policy {
            AutoCompaction::Off => return None,
            AutoCompaction::Revisions(keep) => current.saturating_sub(keep),
            AutoCompaction::Periodic(period) => self.noted.iter().rev().find(|s| now.saturating_sub(s.at) >= period)?.revision,
        };
        (target > compacted && target <= current).then_some(target)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    #[test]
    fn flags_parse_as_etcds() {
        let parse = AutoCompaction::parse;
        assert_eq!(parse(None, None), Ok(DEFAULT));
        assert_eq!(parse(Some("revision"), Some("500")), Ok(AutoCompaction::Revisions(500)));
        assert_eq!(parse(Some("periodic"), Some("5m")), Ok(AutoCompaction::Periodic(secs(300))));
        assert_eq!(parse(Some("periodic"), Some("1h30m")), Ok(AutoCompaction::Periodic(secs(5400))));
        assert_eq!(parse(Some("periodic"), Some("2")), Ok(AutoCompaction::Periodic(secs(7200))), "a bare number is hours");
        assert_eq!(parse(Some("periodic"), None), Ok(AutoCompaction::Periodic(secs(300))));
        assert_eq!(parse(Some("periodic"), Some("0")), Ok(AutoCompaction::Off));
        assert_eq!(parse(None, Some("0")), Ok(AutoCompaction::Off));
        assert_eq!(parse(None, Some("1")), Ok(AutoCompaction::Periodic(secs(3600))), "etcd: a retention alone is periodic");
        assert_eq!(parse(Some("revision"), None), Ok(DEFAULT));
        assert_eq!(parse(Some("periodic"), Some("0s")), Ok(AutoCompaction::Off));
    }

    #[test]
    fn bad_flags_name_the_flag() {
        let err = AutoCompaction::parse(Some("hourly"), None).expect_err("bad mode");
        assert!(err.starts_with("--auto-compaction-mode must be periodic or revision"), "{err}");
        for (mode, retention) in [("periodic", "five minutes"), ("revision", "5m"), ("revision", "-3")] {
            let err = AutoCompaction::parse(Some(mode), Some(retention)).expect_err("bad retention");
            assert!(err.starts_with("--auto-compaction-retention"), "{err}");
            assert!(err.contains(mode), "{err}");
        }
    }

    #[test]
    fn ticks_are_a_tenth_of_the_period_within_bounds() {
        assert_eq!(AutoCompaction::Periodic(secs(300)).tick(), secs(30));
        assert_eq!(AutoCompaction::Periodic(Duration::from_millis(500)).tick(), Duration::from_millis(100));
        assert_eq!(AutoCompaction::Periodic(secs(24 * 3600)).tick(), secs(360));
        assert_eq!(AutoCompaction::Revisions(10).tick(), secs(10));
    }

    #[test]
    fn revision_mode_keeps_the_last_n_revisions() {
        let mut s = Samples::new(AutoCompaction::Revisions(100));
        s.note(Sample { at: secs(0), revision: 50 });
        assert_eq!(s.to_compact(secs(0), 50, 0), None, "fewer revisions than kept");
        assert_eq!(s.to_compact(secs(10), 1000, 0), Some(900));
        assert_eq!(s.to_compact(secs(20), 1000, 900), None, "already compacted there");
        assert_eq!(s.to_compact(secs(20), 1000, 950), None, "someone compacted further");
        assert_eq!(s.to_compact(secs(30), 1200, 900), Some(1100));
    }

    #[test]
    fn periodic_mode_compacts_at_the_revision_of_one_period_ago() {
        let mut s = Samples::new(AutoCompaction::Periodic(secs(60)));
        for (at, revision) in [(0, 10), (6, 20), (12, 30), (54, 100)] {
            s.note(Sample { at: secs(at), revision });
        }
        assert_eq!(s.to_compact(secs(54), 100, 0), None, "nothing is a period old yet");
        s.note(Sample { at: secs(60), revision: 110 });
        assert_eq!(s.to_compact(secs(60), 110, 0), Some(10));
        s.note(Sample { at: secs(66), revision: 120 });
        assert_eq!(s.to_compact(secs(66), 120, 10), Some(20));
        assert_eq!(s.to_compact(secs(67), 120, 20), None, "nothing new to compact");
        s.note(Sample { at: secs(75), revision: 130 });
        assert_eq!(s.to_compact(secs(75), 130, 20), Some(30), "the newest sample a period old");
        assert_eq!(s.to_compact(secs(75), 130, 0), Some(30), "the first compaction after a restart too");
    }

    #[test]
    fn periodic_mode_forgets_samples_it_cannot_use() {
        let mut s = Samples::new(AutoCompaction::Periodic(secs(10)));
        for at in 0..1000 {
            s.note(Sample { at: secs(at), revision: i64::try_from(at).expect("small") });
        }
        assert!(s.noted.len() <= 12, "{} samples kept", s.noted.len());
        assert_eq!(s.to_compact(secs(999), 999, 0), Some(989));
    }

    #[test]
    fn off_never_compacts() {
        let mut s = Samples::new(AutoCompaction::Off);
        s.note(Sample { at: secs(0), revision: 1 });
        assert_eq!(s.to_compact(secs(1_000_000), 1_000_000, 0), None);
    }
}
