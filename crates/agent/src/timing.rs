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
//! The margin covers the fencer's own latency ([`FENCE_LATENCY`]) and clock-rate
//! differences between machines.
//!
//! For the primary not to fence itself on one lost request, two renewal intervals plus
//! one request timeout must fit in the budget:
//!
//! ```text
//!     2 * renew_interval + retry_timeout  <=  ttl - safety_margin
//!     safety_margin                       >=  FENCE_LATENCY
//! ```
//!
//! [`Timing::check`] enforces both at startup and before any `/config` change is used.

use std::time::Duration;

/// The most the fencer needs to stop PostgreSQL once its deadline passes (it polls
/// every 20 ms and kills with SIGSTOP + SIGKILL, which take microseconds).
pub const FENCE_LATENCY: Duration = Duration::from_millis(100);

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

    /// How long after sending the last successful keep-alive the primary may accept writes.
    pub fn write_budget(&self) -> Duration {
        self.ttl.saturating_sub(self.safety_margin)
    }

    /// With a hardware watchdog of `timeout` seconds the fencer acts that much earlier
    /// (so the device resets a hung machine by the deadline); the same rule must hold
    /// for the shorter budget.
    pub fn check_with_watchdog(&self, timeout: Duration) -> Result<(), String> {
        self.check()?;
        let needed = self.renew_interval() * 2 + self.retry_timeout;
        if needed + timeout > self.write_budget() {
            return Err(format!(
                "with a watchdog timeout of {}s the primary's write budget ({:.2}s) is too short: need 2 x renew interval + retry_timeout ({:.2}s) + the watchdog timeout; raise ttl",
                timeout.as_secs(),
                self.write_budget().as_secs_f64(),
                needed.as_secs_f64()
            ));
        }
        Ok(())
    }

    /// The safety inequality (module doc); the error says which side to change.
    pub fn check(&self) -> Result<(), String> {
        if self.ttl < Duration::from_secs(1) {
            return Err("ttl must be at least 1 second".into());
        }
        if self.loop_wait < Duration::from_millis(100) || self.retry_timeout < Duration::from_millis(100) {
            return Err("loop_wait and retry_timeout must be at least 0.1 seconds".into());
        }
        if self.safety_margin < FENCE_LATENCY {
            return Err(format!("safety_margin must be at least {:.1}s (the fencer's latency)", FENCE_LATENCY.as_secs_f64()));
        }
        let needed = self.renew_interval() * 2 + self.retry_timeout;
        if self.safety_margin >= self.ttl || needed > self.write_budget() {
            return Err(format!(
                "timing is unsafe or fragile: need 2 x renew interval ({:.2}s) + retry_timeout ({:.2}s) <= ttl ({}s) - safety_margin ({:.2}s); raise ttl or lower retry_timeout/safety_margin",
                self.renew_interval().as_secs_f64(),
                self.retry_timeout.as_secs_f64(),
                self.ttl.as_secs(),
                self.safety_margin.as_secs_f64()
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_satisfy_the_inequality() {
        let t = Timing::from_seconds(Timing::default_ttl(), 1.0, Timing::default_retry_timeout(), Timing::default_safety_margin());
        t.check().expect("defaults are safe");
        assert_eq!(t.renew_interval(), Duration::from_millis(250));
        assert_eq!(t.write_budget(), Duration::from_millis(1500));
    }

    #[test]
    fn unsafe_timings_are_refused() {
        assert!(Timing::from_seconds(2, 1.0, 1.5, 0.5).check().expect_err("fragile").contains("retry_timeout"));
        assert!(Timing::from_seconds(2, 1.0, 0.5, 0.01).check().expect_err("margin").contains("safety_margin"));
        assert!(Timing::from_seconds(2, 1.0, 0.5, 2.0).check().is_err());
        assert!(Timing::from_seconds(0, 1.0, 0.5, 0.5).check().is_err());
        Timing::from_seconds(30, 10.0, 10.0, 5.0).check().expect("Patroni-like timing is fine");
        let t = Timing::from_seconds(2, 1.0, 0.5, 0.5);
        assert!(t.check_with_watchdog(Duration::from_secs(1)).is_err(), "ttl 2 leaves no room for a 1 s watchdog");
        Timing::from_seconds(5, 1.0, 0.5, 0.5).check_with_watchdog(Duration::from_secs(1)).expect("ttl 5 does");
    }
}
