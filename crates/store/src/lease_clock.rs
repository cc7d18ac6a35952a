//! When each lease expires, as seen from this node's monotonic clock.
//!
//! Lease *existence* is replicated state (in the MVCC store); lease *deadlines* are not.
//! Only the Raft leader acts on them: it renews a deadline on keep-alive and proposes a
//! revoke through the log when one passes. A node that becomes leader first resets every
//! deadline to a full TTL from now (as etcd does), so a leader change can make a lease
//! live longer, never shorter.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy)]
struct Deadline {
    ttl: i64,
    at: Instant,
}

/// Deadlines of all known leases.
#[derive(Debug, Default)]
pub struct LeaseClock {
    leases: Mutex<HashMap<i64, Deadline>>,
}

fn ttl_duration(ttl: i64) -> Duration {
    Duration::from_secs(u64::try_from(ttl).unwrap_or(0))
}

impl LeaseClock {
    fn with<T>(&self, f: impl FnOnce(&mut HashMap<i64, Deadline>) -> T) -> T {
        let mut guard = self.leases.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        f(&mut guard)
    }

    /// A lease was granted (applied): it lives a full TTL from now.
    pub fn granted(&self, id: i64, ttl: i64) {
        self.with(|m| m.insert(id, Deadline { ttl, at: Instant::now() + ttl_duration(ttl) }));
    }

    /// A lease was revoked or expired (applied).
    pub fn removed(&self, id: i64) {
        self.with(|m| m.remove(&id));
    }

    /// Replaces all deadlines (after a snapshot install), each a full TTL from now.
    pub fn reset(&self, leases: impl IntoIterator<Item = (i64, i64)>) {
        let now = Instant::now();
        self.with(|m| {
            m.clear();
            for (id, ttl) in leases {
                m.insert(id, Deadline { ttl, at: now + ttl_duration(ttl) });
            }
        });
    }

    /// This node just became leader: every lease gets a full TTL from now.
    pub fn refresh_all(&self) {
        let now = Instant::now();
        self.with(|m| {
            for d in m.values_mut() {
                d.at = now + ttl_duration(d.ttl);
            }
        });
    }

    /// A keep-alive: returns the lease's TTL, or None if it does not exist.
    pub fn renew(&self, id: i64) -> Option<i64> {
        self.with(|m| {
            let d = m.get_mut(&id)?;
            d.at = Instant::now() + ttl_duration(d.ttl);
            Some(d.ttl)
        })
    }

    /// (granted TTL, seconds left, rounded up as etcd does) or None if unknown.
    pub fn remaining(&self, id: i64) -> Option<(i64, i64)> {
        self.with(|m| {
            let d = m.get(&id)?;
            let left = d.at.saturating_duration_since(Instant::now());
            let secs = i64::try_from(left.as_millis().div_ceil(1000)).unwrap_or(i64::MAX);
            Some((d.ttl, secs))
        })
    }

    /// Leases whose deadline has passed.
    pub fn expired(&self) -> Vec<i64> {
        let now = Instant::now();
        self.with(|m| m.iter().filter(|(_, d)| d.at <= now).map(|(id, _)| *id).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renew_and_refresh_never_shorten() {
        let clock = LeaseClock::default();
        clock.granted(7, 0);
        assert_eq!(clock.expired(), vec![7]);
        clock.granted(8, 60);
        assert_eq!(clock.renew(8), Some(60));
        assert_eq!(clock.remaining(8), Some((60, 60)));
        clock.refresh_all();
        assert!(!clock.expired().contains(&8));
        clock.removed(8);
        assert_eq!(clock.renew(8), None);
    }
}
