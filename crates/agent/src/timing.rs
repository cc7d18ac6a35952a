//! The HA timing parameters in one place, and the inequality that makes promotion
//! safe.
//!
//! The leader key lives on the primary's lease (TTL `ttl`). The store expires a lease
//! on the Raft leader's monotonic clock, never earlier than `ttl` after the last
//! keep-alive it accepted, and resets every lease to a full TTL on a Raft leader
//! change. A keep-alive *sent* at `t_sent` is accepted at or after `t_sent`, so:
//!
//! ```text
//!     no other node can win the leader key before   t_sent + ttl
//!     the primary stops accepting writes by          t_sent + ttl - safety_margin
//! ```
//!
//! where `t_sent` is the send time of the last keep-alive that succeeded. The primary's
//! agent demotes when it gets close to that deadline, and the fencer process (see
//! `fence`) kills PostgreSQL at the deadline even when the agent is frozen or dead.
//! The margin covers the fencer's own latency ([`FENCE_LATENCY`]) and the clock-rate
//! difference between the primary's and the Raft leader's monotonic clocks over one
//! ttl ([`Timing::drift_allowance`]: [`CLOCK_RATE_ALLOWANCE`] of ttl).
//!
//! For the primary not to fence itself on one lost request, two renewal intervals plus
//! one request timeout must fit in the budget:
//!
//! ```text
//!     2 * renew_interval + retry_timeout  <=  ttl - safety_margin
//!     safety_margin                       >=  FENCE_LATENCY + drift_allowance
//! ```
//!
//! With `failsafe_mode`, a primary asks the members to confirm before its deadline and
//! waits at most `retry_timeout` for them; every confirmation must be given before the
//! lease can expire in the store (`deadline + safety_margin`), when a member could
//! take the key, so a member never confirms a primary after a new one may exist:
//!
//! ```text
//!     retry_timeout + drift_allowance     <=  safety_margin        (failsafe_mode only)
//! ```
//!
//! [`Timing::check`] enforces the first two and [`Timing::check_failsafe`] the third, at
//! startup and before any `/config` change is used (`DynamicConfig::from_json`).

use std::time::Duration;

use crate::invalid::Invalid;

/// The most the fencer needs to stop PostgreSQL once its deadline passes (it sleeps
/// until the deadline, so this is the time the kernel takes to schedule it then, and it
/// kills with SIGSTOP + SIGKILL, which take microseconds).
pub const FENCE_LATENCY: Duration = Duration::from_millis(100);

/// How much faster one machine's monotonic clock may run than another's: NTP slews a
/// clock by at most 500 ppm, so two clocks by at most 1000 ppm between them.
pub const CLOCK_RATE_ALLOWANCE: f64 = 0.001;

/// The timing of one cluster.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Timing {
    /// The lease TTL of the leader key (whole seconds: etcd leases are).
    pub ttl: Duration,
    /// How often the HA loop runs when nothing wakes it.
    pub loop_wait: Duration,
    /// How long one store request may take before it counts as failed.
    pub retry_timeout: Duration,
    /// How long before the lease could expire elsewhere the primary must have stopped writes.
    pub safety_margin: Duration,
}

impl Timing {
    pub fn default_ttl() -> u64 {
        2
    }
    pub fn default_loop_wait() -> f64 {
        1.0
    }
    pub fn default_retry_timeout() -> f64 {
        0.5
    }
    pub fn default_safety_margin() -> f64 {
        0.5
    }

    /// The fast profile (`raftctl lab up --profile fast`; README "Timing profiles"): the
    /// shortest lease etcd allows (1 s), a renewal every 125 ms, a 0.3 s store timeout and
    /// a 0.2 s margin: a node kill is noticed ~1 s after its last renewal instead of 2 s.
    /// `loop_wait` stays 1 s: the HA loop is woken by the store's events, not by its timer.
    pub fn fast() -> Self {
        Self::from_seconds(1, 1.0, 0.3, 0.2)
    }

    pub fn from_seconds(ttl: u64, loop_wait: f64, retry_timeout: f64, safety_margin: f64) -> Self {
        let secs = |s: f64| Duration::try_from_secs_f64(s).unwrap_or(Duration::MAX);
        Self {
            ttl: Duration::from_secs(ttl),
            loop_wait: secs(loop_wait),
            retry_timeout: secs(retry_timeout),
            safety_margin: secs(safety_margin),
        }
    }

    /// How often the lease is renewed: an eighth of the TTL.
    pub fn renew_interval(&self) -> Duration {
        self.ttl / 8
    }

    /// How often a node that is not the primary renews its lease: a quarter of the TTL
    /// (its lease keeps only its member key, which outlives two failed renewals). The
    /// renewal task switches to [`Self::renew_interval`] the moment the fencer is armed.
    pub fn replica_renew_interval(&self) -> Duration {
        self.ttl / 4
    }

    /// How long after sending the last successful keep-alive the primary may accept writes.
    pub fn write_budget(&self) -> Duration {
        self.ttl.saturating_sub(self.safety_margin)
    }

    /// How far two clocks may drift apart over one ttl ([`CLOCK_RATE_ALLOWANCE`]).
    pub fn drift_allowance(&self) -> Duration {
        self.ttl.mul_f64(CLOCK_RATE_ALLOWANCE)
    }

    /// The failsafe rule (module doc): a confirmation round ends inside the safety margin.
    pub fn check_failsafe(&self) -> Result<(), Invalid> {
        let needed = self.retry_timeout + self.drift_allowance();
        if needed > self.safety_margin {
            return Err(Invalid(format!(
                "failsafe_mode needs a confirmation round to end before the lease can expire: retry_timeout ({:.3}s) + clock drift allowance ({:.3}s) = {:.3}s must be <= safety_margin ({:.3}s); lower retry_timeout or raise safety_margin",
                self.retry_timeout.as_secs_f64(),
                self.drift_allowance().as_secs_f64(),
                needed.as_secs_f64(),
                self.safety_margin.as_secs_f64()
            )));
        }
        Ok(())
    }

    /// The longest `retry_timeout`, in whole tenths of a second, that keeps the failsafe
    /// rule with this ttl and safety margin; None when not even 0.1 s fits.
    pub fn failsafe_retry_timeout(&self) -> Option<f64> {
        let room = self.safety_margin.saturating_sub(self.drift_allowance()).as_secs_f64();
        let tenths = (room * 10.0 + 1e-9).floor();
        (tenths >= 1.0).then_some(tenths / 10.0)
    }

    /// With a hardware watchdog of `timeout` seconds the fencer acts that much earlier
    /// (so the device resets a hung machine by the deadline); the same rule must hold
    /// for the shorter budget.
    pub fn check_with_watchdog(&self, timeout: Duration) -> Result<(), Invalid> {
        self.check()?;
        let needed = self.renew_interval() * 2 + self.retry_timeout;
        if needed + timeout > self.write_budget() {
            return Err(Invalid(format!(
                "with a watchdog timeout of {}s the primary's write budget ({:.2}s) is too short: need 2 x renew interval + retry_timeout ({:.2}s) + the watchdog timeout; raise ttl",
                timeout.as_secs(),
                self.write_budget().as_secs_f64(),
                needed.as_secs_f64()
            )));
        }
        Ok(())
    }

    /// The safety inequality (module doc); the error says which side to change.
    pub fn check(&self) -> Result<(), Invalid> {
        if self.ttl < Duration::from_secs(1) {
            return Err(Invalid("ttl must be at least 1 second".into()));
        }
        if self.loop_wait < Duration::from_millis(100) || self.retry_timeout < Duration::from_millis(100) {
            return Err(Invalid("loop_wait and retry_timeout must be at least 0.1 seconds".into()));
        }
        let margin_needed = FENCE_LATENCY + self.drift_allowance();
        if self.safety_margin < margin_needed {
            return Err(Invalid(format!(
                "safety_margin ({:.3}s) must be at least the fencer's latency ({:.3}s) + clock drift allowance ({:.3}s, {} of ttl) = {:.3}s",
                self.safety_margin.as_secs_f64(),
                FENCE_LATENCY.as_secs_f64(),
                self.drift_allowance().as_secs_f64(),
                CLOCK_RATE_ALLOWANCE,
                margin_needed.as_secs_f64()
            )));
        }
        let needed = self.renew_interval() * 2 + self.retry_timeout;
        if self.safety_margin >= self.ttl || needed > self.write_budget() {
            return Err(Invalid(format!(
                "timing is unsafe or fragile: need 2 x renew interval ({:.2}s) + retry_timeout ({:.2}s) <= ttl ({}s) - safety_margin ({:.2}s); raise ttl or lower retry_timeout/safety_margin",
                self.renew_interval().as_secs_f64(),
                self.retry_timeout.as_secs_f64(),
                self.ttl.as_secs(),
                self.safety_margin.as_secs_f64()
            )));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fast_profile_satisfies_the_inequality_with_room_for_one_lost_renewal() {
        let t = Timing::fast();
        t.check().expect("the fast profile is safe");
        assert_eq!(t.renew_interval(), Duration::from_millis(125));
        // Two renewals and one timed-out request leave a quarter of the budget spare.
        assert!(t.renew_interval() * 2 + t.retry_timeout + Duration::from_millis(200) <= t.write_budget());
        assert_eq!(t.failsafe_retry_timeout(), Some(0.1), "failsafe mode needs a shorter retry_timeout, and says which");
    }

    #[test]
    fn defaults_satisfy_the_inequality() {
        let t = Timing::from_seconds(Timing::default_ttl(), 1.0, Timing::default_retry_timeout(), Timing::default_safety_margin());
        t.check().expect("defaults are safe");
        assert_eq!(t.renew_interval(), Duration::from_millis(250));
        assert_eq!(t.write_budget(), Duration::from_millis(1500));
    }

    #[test]
    fn unsafe_timings_are_refused() {
        assert!(Timing::from_seconds(2, 1.0, 1.5, 0.5).check().expect_err("fragile").0.contains("retry_timeout"));
        assert!(Timing::from_seconds(2, 1.0, 0.5, 0.01).check().expect_err("margin").0.contains("safety_margin"));
        assert!(Timing::from_seconds(2, 1.0, 0.5, 2.0).check().is_err());
        assert!(Timing::from_seconds(0, 1.0, 0.5, 0.5).check().is_err());
        Timing::from_seconds(30, 10.0, 10.0, 5.0).check().expect("Patroni-like timing is fine");
        let t = Timing::from_seconds(2, 1.0, 0.5, 0.5);
        assert!(t.check_with_watchdog(Duration::from_secs(1)).is_err(), "ttl 2 leaves no room for a 1 s watchdog");
        Timing::from_seconds(5, 1.0, 0.5, 0.5).check_with_watchdog(Duration::from_secs(1)).expect("ttl 5 does");
    }

    #[test]
    fn the_failsafe_retry_timeout_fits_the_margin() {
        // Defaults: 0.5 - 0.002 leaves 0.4 s in whole tenths.
        assert_eq!(Timing::from_seconds(2, 1.0, 0.5, 0.5).failsafe_retry_timeout(), Some(0.4));
        // Patroni-like timings with a 10.1 s margin: 10.1 - 0.03 leaves 10.0 s.
        assert_eq!(Timing::from_seconds(30, 10.0, 10.0, 10.1).failsafe_retry_timeout(), Some(10.0));
        assert_eq!(Timing::from_seconds(2, 1.0, 0.5, 0.1).failsafe_retry_timeout(), None);
        for (ttl, margin) in [(2, 0.5), (30, 10.1), (10, 3.0), (1, 0.2)] {
            let fitted = Timing::from_seconds(ttl, 1.0, 0.5, margin).failsafe_retry_timeout().expect("fits");
            Timing::from_seconds(ttl, 1.0, fitted, margin).check_failsafe().expect("the fitted value keeps the rule");
        }
    }

    #[test]
    fn the_margin_covers_the_fencer_and_clock_drift() {
        // ttl 300 s: 0.3 s of drift on top of the fencer's 0.1 s.
        let e = Timing::from_seconds(300, 10.0, 10.0, 0.35).check().expect_err("drift not covered").0;
        assert!(e.contains("clock drift allowance (0.300s") && e.contains("0.400s"), "{e}");
        Timing::from_seconds(300, 10.0, 10.0, 0.4).check().expect("covered");
    }

    #[test]
    fn a_failsafe_round_must_end_inside_the_safety_margin() {
        // Patroni-like timing: a 10 s round cannot end inside a 5 s margin.
        let patroni = Timing::from_seconds(30, 10.0, 10.0, 5.0);
        patroni.check().expect("fine without failsafe");
        let e = patroni.check_failsafe().expect_err("the round outlasts the margin").0;
        assert!(e.contains("retry_timeout (10.000s)") && e.contains("safety_margin (5.000s)") && e.contains("10.030s"), "{e}");
        Timing::from_seconds(30, 10.0, 4.0, 5.0).check_failsafe().expect("a 4 s round fits a 5 s margin");
        // The defaults leave no room for the drift allowance.
        assert!(Timing::from_seconds(2, 1.0, 0.5, 0.5).check_failsafe().is_err());
        Timing::from_seconds(2, 1.0, 0.4, 0.5).check_failsafe().expect("fits");
    }
}
