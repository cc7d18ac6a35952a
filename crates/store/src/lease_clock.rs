//! When each lease expires, as seen from this node's monotonic clock.
//!
//! Lease *existence* is replicated state (in the MVCC store); lease *deadlines* are not.
//! Only the Raft leader acts on them (see `lease_leader`): it renews a deadline on
//! keep-alive and revokes a lease through the log once its deadline passed. A lease
//! whose deadline passed is never renewed again (as etcd's lessor): its revoke may
//! already be on its way through the log. A node that starts leading first gives every
//! lease a full TTL from now (as etcd does), so a leader change can make a lease live
//! longer, never shorter.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy)]
struct Deadline {
    ttl: i64,
    at: Instant,
    /// Its revoke was proposed and has not failed.
    revoking: bool,
}

impl Deadline {
    fn fresh(ttl: i64, now: Instant) -> Self {
        Deadline { ttl, at: now + ttl_duration(ttl), revoking: false }
    }
}

#[derive(Debug, Default)]
struct Leases {
    deadlines: HashMap<i64, Deadline>,
    /// The term in which every deadline was last restarted by [`LeaseClock::lead`].
    led_term: Option<u64>,
}

/// What a keep-alive finds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Renewal {
    /// Renewed: the lease lives this many seconds from now.
    Renewed(i64),
    /// No such lease.
    Unknown,
    /// Its deadline passed: it is (being) revoked and nothing brings it back.
    Expired,
}

/// Deadlines of all known leases.
#[derive(Debug, Default)]
pub struct LeaseClock {
    leases: Mutex<Leases>,
    /// Signalled when a deadline may now come sooner than [`LeaseClock::next_expiry`]
    /// said (a grant, a reset, a failed revoke), for the leader's expiry duty.
    sooner: tokio::sync::Notify,
}

fn ttl_duration(ttl: i64) -> Duration {
    Duration::from_secs(u64::try_from(ttl).unwrap_or(0))
}

impl LeaseClock {
    fn with<T>(&self, f: impl FnOnce(&mut Leases) -> T) -> T {
        let mut guard = self.leases.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        f(&mut guard)
    }

    /// A lease was granted (applied): it lives a full TTL from now.
    pub fn granted(&self, id: i64, ttl: i64) {
        self.with(|l| l.deadlines.insert(id, Deadline::fresh(ttl, Instant::now())));
        self.sooner.notify_one();
    }

    /// A lease was revoked or expired (applied).
    pub fn removed(&self, id: i64) {
        self.with(|l| l.deadlines.remove(&id));
    }

    /// Whether the lease exists (granted and not yet revoked here).
    pub fn contains(&self, id: i64) -> bool {
        self.with(|l| l.deadlines.contains_key(&id))
    }

    /// Replaces all deadlines (after a snapshot install), each a full TTL from now.
    pub fn reset(&self, leases: impl IntoIterator<Item = (i64, i64)>) {
        let now = Instant::now();
        self.with(|l| l.deadlines = leases.into_iter().map(|(id, ttl)| (id, Deadline::fresh(ttl, now))).collect());
        self.sooner.notify_one();
    }

    /// This node leads in `term` and has applied everything committed before it. The
    /// first call of a term gives every lease a full TTL from now, expired ones
    /// included (their revoke, if any, was not committed: it would have been applied);
    /// returns whether it did.
    pub fn lead(&self, term: u64) -> bool {
        let now = Instant::now();
        self.with(|l| {
            if l.led_term == Some(term) {
                return false;
            }
            l.led_term = Some(term);
            for d in l.deadlines.values_mut() {
                *d = Deadline::fresh(d.ttl, now);
            }
            true
        })
    }

    /// A keep-alive: renews a lease whose deadline has not passed.
    pub fn renew(&self, id: i64) -> Renewal {
        let now = Instant::now();
        self.with(|l| match l.deadlines.get_mut(&id) {
            None => Renewal::Unknown,
            Some(d) if d.at <= now => Renewal::Expired,
            Some(d) => {
                d.at = now + ttl_duration(d.ttl);
                Renewal::Renewed(d.ttl)
            }
        })
    }

    /// (granted TTL, seconds left, rounded up as etcd does) or None if unknown.
    pub fn remaining(&self, id: i64) -> Option<(i64, i64)> {
        self.with(|l| {
            let d = l.deadlines.get(&id)?;
            let left = d.at.saturating_duration_since(Instant::now());
            let secs = i64::try_from(left.as_millis().div_ceil(1000)).unwrap_or(i64::MAX);
            Some((d.ttl, secs))
        })
    }

    /// Leases whose deadline has passed and whose revoke is not under way yet; each is
    /// marked as being revoked, so it is handed out once.
    pub fn take_expired(&self) -> Vec<i64> {
        let now = Instant::now();
        self.with(|l| {
            let mut expired = Vec::new();
            for (id, d) in l.deadlines.iter_mut().filter(|(_, d)| d.at <= now && !d.revoking) {
                d.revoking = true;
                expired.push(*id);
            }
            expired
        })
    }

    /// Revoking these leases failed: hand them out again (they stay expired).
    pub fn revoke_failed(&self, ids: &[i64]) {
        self.with(|l| {
            for id in ids {
                if let Some(d) = l.deadlines.get_mut(id) {
                    d.revoking = false;
                }
            }
        });
        self.sooner.notify_one();
    }

    /// The earliest deadline of a lease not being revoked: when [`Self::take_expired`]
    /// next has something to hand out, unless [`Self::sooner`] fires first.
    pub fn next_expiry(&self) -> Option<Instant> {
        self.with(|l| l.deadlines.values().filter(|d| !d.revoking).map(|d| d.at).min())
    }

    /// Completes once a deadline may have come sooner than [`Self::next_expiry`] said
    /// (one waiter; a signal sent while nobody waits is kept for the next).
    pub async fn sooner(&self) {
        self.sooner.notified().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renew_and_lead_never_shorten() {
        let clock = LeaseClock::default();
        clock.granted(7, 0);
        assert_eq!(clock.take_expired(), vec![7]);
        clock.granted(8, 60);
        assert_eq!(clock.renew(8), Renewal::Renewed(60));
        assert_eq!(clock.remaining(8), Some((60, 60)));
        assert!(clock.lead(3));
        assert!(!clock.lead(3), "once per term");
        assert!(!clock.take_expired().contains(&8));
        clock.removed(8);
        assert_eq!(clock.renew(8), Renewal::Unknown);
    }

    /// A keep-alive that arrives after the deadline (the revoke may already be on its
    /// way through the log) does not bring the lease back.
    #[test]
    fn an_expired_lease_is_never_renewed() {
        let clock = LeaseClock::default();
        clock.granted(9, 1);
        std::thread::sleep(Duration::from_millis(1050));
        assert_eq!(clock.renew(9), Renewal::Expired, "renewed after its deadline");
        assert_eq!(clock.take_expired(), vec![9], "still expired");
        assert_eq!(clock.renew(9), Renewal::Expired, "renewed while its revoke is under way");
        assert!(clock.lead(2));
        assert_eq!(clock.renew(9), Renewal::Renewed(1), "a new leader restarts every lease its log still holds");
    }

    #[test]
    fn the_next_expiry_is_the_earliest_deadline_not_being_revoked() {
        let clock = LeaseClock::default();
        assert_eq!(clock.next_expiry(), None);
        clock.granted(1, 60);
        clock.granted(2, 0);
        let soonest = clock.next_expiry().expect("two leases");
        assert!(soonest <= Instant::now(), "lease 2 is already due");
        assert_eq!(clock.take_expired(), vec![2]);
        let next = clock.next_expiry().expect("lease 1");
        assert!(next > Instant::now() + Duration::from_secs(59), "lease 1's deadline, not the one being revoked");
        clock.revoke_failed(&[2]);
        assert!(clock.next_expiry().expect("both") <= Instant::now(), "a failed revoke is due again at once");
    }

    #[tokio::test]
    async fn a_grant_signals_a_sooner_deadline_even_before_anyone_waits() {
        let clock = LeaseClock::default();
        clock.granted(1, 5);
        tokio::time::timeout(Duration::ZERO, clock.sooner()).await.expect("the grant's signal was kept");
        assert!(tokio::time::timeout(Duration::ZERO, clock.sooner()).await.is_err(), "one signal, consumed");
    }

    #[test]
    fn an_expired_lease_is_handed_out_once_until_its_revoke_fails() {
        let clock = LeaseClock::default();
        clock.granted(1, 0);
        clock.granted(2, 0);
        let mut expired = clock.take_expired();
        expired.sort_unstable();
        assert_eq!(expired, vec![1, 2]);
        assert!(clock.take_expired().is_empty(), "both revokes are under way");
        clock.revoke_failed(&[2]);
        assert_eq!(clock.take_expired(), vec![2]);
    }
}
