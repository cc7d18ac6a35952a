//! The agent's lease: granted at start, renewed by its own task every `ttl / 8` on the
//! primary (every `ttl / 4` on a replica, woken at once when it becomes the primary),
//! and re-granted when the store says it is gone. Each successful renewal moves the write
//! deadline (`timing`: sent + ttl − safety_margin) and, while the fencer is armed for
//! this lease, re-arms it with the new deadline — so a primary keeps its writes exactly
//! as long as the renewals keep succeeding, whatever the HA loop is doing.
//!
//! The fencer is armed for one lease: the one the leader key is on ([`Lease::arm`]).
//! Only renewals of that lease (or failsafe confirmations while it is current) move its
//! deadline; a lease granted after that one was lost never does, since the leader key
//! died with the old lease.
//!
//! When `/config` changes `ttl`, the live lease keeps the TTL it was granted with, so a
//! new lease is granted with the new TTL and the node's keys move to it: the leader key
//! by a compare-and-swap on its mod revision (it must still be the key this run put on
//! the old lease), the member key by the HA loop's next write (it is woken). The old
//! lease is left to expire. Until the move succeeds, the old lease and its deadline stay.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use crate::dcs::{Dcs, Renewal};
use crate::fence::Fencer;
use crate::timing::Timing;

/// The lease as the agent knows it.
#[derive(Debug, Clone, Copy, Default)]
pub struct LeaseInfo {
    pub id: Option<i64>,
    /// Until when this node may act as primary on this lease.
    pub valid_until: Option<Instant>,
}

impl LeaseInfo {
    pub fn valid(&self) -> bool {
        self.valid_until.is_some_and(|v| v > Instant::now())
    }
}

/// What the lease needs of a fencer (a trait, so tests can watch the deadlines).
pub trait Arm {
    /// Arms or re-arms: `postmaster` must not accept writes after `deadline`.
    fn arm(&mut self, postmaster: i32, deadline: Instant);
    /// (postmaster pid, deadline) while armed.
    fn armed_target(&self) -> Option<(i32, Instant)>;
}

impl Arm for Fencer {
    fn arm(&mut self, postmaster: i32, deadline: Instant) {
        Fencer::arm(self, postmaster, deadline);
    }
    fn armed_target(&self) -> Option<(i32, Instant)> {
        Fencer::armed_target(self)
    }
}

#[derive(Debug, Default)]
struct Held {
    info: LeaseInfo,
    /// The TTL the current lease was asked for (the store may grant another).
    granted_ttl: Option<Duration>,
    /// The lease the fencer was last armed for (the leader key's).
    armed_for: Option<i64>,
    /// The lease the node's keys are being moved to (a ttl change), until the move ends.
    moving_to: Option<i64>,
    /// The lease they were moved from: a view read before the move still shows it.
    moved_from: Option<i64>,
}

/// Shared between the renewal task and the HA loop.
pub struct Lease<F = Fencer> {
    held: Arc<Mutex<Held>>,
    fencer: Arc<Mutex<F>>,
    /// Told when the fencer goes from disarmed to armed (the node takes the primary's
    /// role): the renewal task then renews at once and at the primary's pace.
    armed: Arc<tokio::sync::Notify>,
}

impl<F> Clone for Lease<F> {
    fn clone(&self) -> Self {
        Self { held: self.held.clone(), fencer: self.fencer.clone(), armed: self.armed.clone() }
    }
}

/// The write deadline one renewal gives: sent + ttl − safety_margin.
fn deadline(r: &Renewal, timing: &Timing) -> Instant {
    r.sent + r.ttl.min(timing.ttl).saturating_sub(timing.safety_margin)
}

impl<F: Arm> Lease<F> {
    pub fn new(fencer: Arc<Mutex<F>>) -> Self {
        Self { held: Arc::default(), fencer, armed: Arc::default() }
    }

    fn held(&self) -> MutexGuard<'_, Held> {
        self.held.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub fn get(&self) -> LeaseInfo {
        self.held().info
    }

    pub fn fencer(&self) -> MutexGuard<'_, F> {
        self.fencer.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Arms the fencer for `postmaster` with the current lease's deadline; from now on
    /// only that lease re-arms it. False when there is no valid lease to arm with.
    pub fn arm(&self, postmaster: i32) -> bool {
        let (id, until) = {
            let mut held = self.held();
            let (Some(id), Some(until)) = (held.info.id, held.info.valid_until) else { return false };
            held.armed_for = Some(id);
            (id, until)
        };
        tracing::debug!("fencer armed for lease {id:x}");
        let was_armed = {
            let mut fencer = self.fencer();
            let was_armed = fencer.armed_target().is_some();
            fencer.arm(postmaster, until);
            was_armed
        };
        if !was_armed {
            self.armed.notify_one();
        }
        true
    }

    /// Re-arms an armed fencer with the deadline of lease `id`, if it was armed for it.
    fn rearm_for(&self, id: i64) {
        let (armed_for, until) = {
            let held = self.held();
            (held.armed_for, held.info.valid_until.filter(|_| held.info.id == Some(id)))
        };
        let Some(until) = until.filter(|_| armed_for == Some(id)) else { return };
        let mut fencer = self.fencer();
        if let Some((pid, _)) = fencer.armed_target() {
            fencer.arm(pid, until);
        }
    }

    /// True when `id` is this run's lease, the one its keys are moving to right now, or
    /// the one they were moved from (a view read before the move): a leader key seen on
    /// any of them is this run's own, and no demotion is due.
    pub fn owns(&self, id: i64) -> bool {
        let held = self.held();
        [held.info.id, held.moving_to, held.moved_from].contains(&Some(id))
    }

    /// Forgets the lease (the store said it is gone, or it was revoked). The fencer keeps
    /// the deadline it has.
    pub fn lost(&self) {
        let mut held = self.held();
        held.info = LeaseInfo::default();
        held.granted_ttl = None;
        held.moved_from = None;
    }

    /// Moves the write deadline to `until` (if later) without the store: failsafe mode,
    /// when every other member confirmed it will not take over before then. Refused
    /// (false) once the deadline has passed: the lease may have expired in the store.
    pub fn extend(&self, until: Instant) -> bool {
        let id = {
            let mut held = self.held();
            let info = &mut held.info;
            let (Some(id), Some(current)) = (info.id, info.valid_until) else { return false };
            if current <= Instant::now() {
                return false;
            }
            info.valid_until = Some(current.max(until));
            id
        };
        self.rearm_for(id);
        true
    }

    /// A renewal (or the grant) of lease `id` succeeded.
    fn renewed(&self, id: i64, r: Renewal, timing: &Timing) {
        let until = deadline(&r, timing);
        {
            let mut held = self.held();
            if held.info.id.is_some_and(|current| current != id) {
                return;
            }
            if held.info.id.is_none() {
                held.granted_ttl = Some(timing.ttl);
            }
            held.info.id = Some(id);
            held.info.valid_until = Some(held.info.valid_until.map_or(until, |v| v.max(until)));
        }
        self.rearm_for(id);
    }

    /// The node's keys moved from the current lease to `new` (granted with `r`): it
    /// replaces the old one, its deadline replaces the old deadline (which may be later
    /// when ttl was lowered), and the fencer follows if it was armed for the old one.
    fn replaced(&self, new: i64, r: Renewal, timing: &Timing) {
        {
            let mut held = self.held();
            let was_armed = held.armed_for.is_some() && held.armed_for == held.info.id;
            held.moved_from = held.info.id;
            held.info = LeaseInfo { id: Some(new), valid_until: Some(deadline(&r, timing)) };
            held.moving_to = None;
            held.granted_ttl = Some(timing.ttl);
            if was_armed {
                held.armed_for = Some(new);
            }
        }
        self.rearm_for(new);
    }

    /// How long the renewal task sleeps: the primary's pace (`renew_interval`, which the
    /// timing rule is about) while the fencer is armed, else the replica's: a replica's
    /// lease keeps only its member key, and the moment it is armed the task is woken.
    fn next_renewal_in(&self, timing: &Timing) -> Duration {
        if self.fencer().armed_target().is_some() {
            timing.renew_interval()
        } else {
            timing.replica_renew_interval()
        }
    }

    /// True when the current lease was granted with another TTL than `timing`'s.
    fn ttl_changed(&self, timing: &Timing) -> bool {
        self.held().granted_ttl.is_some_and(|granted| granted != timing.ttl)
    }
}

impl Lease<Fencer> {
    /// The renewal task: runs until `wake` closes. Sends on `wake` when the lease
    /// changes (a new lease means the member key must be written again). `me` is this
    /// node's name (the value of the leader key it may hold).
    pub async fn keep(self, dcs: Dcs, me: String, timing: Arc<Mutex<Timing>>, wake: mpsc::Sender<()>) {
        loop {
            let timing = timing.lock().map(|t| *t).unwrap_or_else(|e| *e.into_inner());
            let current = self.get().id;
            match current {
                None => match dcs.grant(timing.ttl).await {
                    Ok((id, r)) => {
                        self.renewed(id, r, &timing);
                        tracing::debug!("granted lease {id:x}");
                        if wake.send(()).await.is_err() {
                            return;
                        }
                        continue;
                    }
                    Err(e) => tracing::debug!("cannot grant a lease: {e}"),
                },
                Some(id) => match dcs.keep_alive(id).await {
                    Ok(Some(r)) => {
                        self.renewed(id, r, &timing);
                        if self.ttl_changed(&timing) && self.move_to_new_ttl(&dcs, &me, id, &timing).await && wake.send(()).await.is_err() {
                            return;
                        }
                    }
                    Ok(None) => {
                        tracing::warn!("lease {id:x} expired in the store");
                        self.lost();
                        if wake.send(()).await.is_err() {
                            return;
                        }
                        continue;
                    }
                    Err(e) => tracing::debug!("lease {id:x} not renewed: {e}"),
                },
            }
            if wake.is_closed() {
                return;
            }
            let interval = self.next_renewal_in(&timing);
            tokio::select! {
                () = tokio::time::sleep(interval) => {}
                () = self.armed.notified() => {}
            }
        }
    }

    /// `ttl` changed: grants a lease with the new TTL and moves the leader key to it if
    /// this node holds it on lease `old` (compare-and-swap on its mod revision). True
    /// when the node now runs on the new lease; on any failure the old lease stays (it
    /// was just renewed, and the next rounds renew it) and the new one is revoked.
    async fn move_to_new_ttl(&self, dcs: &Dcs, me: &str, old: i64, timing: &Timing) -> bool {
        let (new, r) = match dcs.grant(timing.ttl).await {
            Ok(granted) => granted,
            Err(e) => {
                tracing::debug!("cannot grant a lease with the new ttl: {e}");
                return false;
            }
        };
        self.held().moving_to = Some(new);
        let moved = match dcs.read_cluster().await {
            Ok(view) => match view.leader.filter(|l| l.name == me && l.lease == old) {
                Some(leader) => dcs.move_leader(me, leader.mod_revision, new).await.map_err(|e| e.to_string()),
                None => Ok(true),
            },
            Err(e) => Err(e.to_string()),
        };
        match moved {
            Ok(true) => {
                self.replaced(new, r, timing);
                tracing::info!("ttl is now {}s: moved to lease {new:x} (lease {old:x} is left to expire)", timing.ttl.as_secs());
                true
            }
            other => {
                self.held().moving_to = None;
                match other {
                    Ok(_) => tracing::debug!("the leader key changed while moving it to lease {new:x}; trying again"),
                    Err(e) => tracing::debug!("cannot move to lease {new:x}: {e}"),
                }
                let _ = dcs.revoke(new).await;
                false
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Records the deadline it is armed with.
    #[derive(Default)]
    struct FakeFencer(Option<(i32, Instant)>);

    impl Arm for FakeFencer {
        fn arm(&mut self, postmaster: i32, deadline: Instant) {
            self.0 = Some((postmaster, deadline));
        }
        fn armed_target(&self) -> Option<(i32, Instant)> {
            self.0
        }
    }

    fn timing() -> Timing {
        Timing::from_seconds(2, 1.0, 0.5, 0.5)
    }

    fn renewal(ago_ms: u64, ttl: u64) -> Renewal {
        Renewal { sent: Instant::now() - Duration::from_millis(ago_ms), ttl: Duration::from_secs(ttl) }
    }

    fn armed(lease: &Lease<FakeFencer>) -> Instant {
        lease.fencer().armed_target().expect("armed").1
    }

    #[test]
    fn only_the_leader_keys_lease_moves_the_fencers_deadline() {
        let lease = Lease::new(Arc::new(Mutex::new(FakeFencer::default())));
        lease.renewed(1, renewal(1000, 2), &timing());
        assert!(lease.arm(4242));
        let first = armed(&lease);
        lease.renewed(1, renewal(0, 2), &timing());
        let renewed = armed(&lease);
        assert!(renewed > first, "a renewal of the armed lease moves the deadline");
        // Lease 1 is lost in the store (the leader key went with it); a new lease comes.
        lease.lost();
        lease.renewed(2, renewal(0, 2), &timing());
        assert_eq!(armed(&lease), renewed, "a new lease must not extend a primary whose key died");
        assert!(lease.extend(Instant::now() + Duration::from_secs(60)), "lease 2 is valid");
        assert_eq!(armed(&lease), renewed, "nor does a failsafe extension of lease 2");
        // A renewal of another lease than the current one changes nothing either.
        lease.renewed(7, renewal(0, 2), &timing());
        assert_eq!(lease.get().id, Some(2));
    }

    #[tokio::test]
    async fn a_replica_renews_at_its_own_pace_and_is_woken_when_it_becomes_the_primary() {
        let lease = Lease::new(Arc::new(Mutex::new(FakeFencer::default())));
        lease.renewed(1, renewal(0, 2), &timing());
        assert_eq!(lease.next_renewal_in(&timing()), Duration::from_millis(500), "a replica: ttl / 4");
        let woken = lease.armed.notified();
        assert!(lease.arm(4242));
        tokio::time::timeout(Duration::from_millis(100), woken).await.expect("arming wakes the renewal task");
        assert_eq!(lease.next_renewal_in(&timing()), Duration::from_millis(250), "the primary: ttl / 8");
        assert!(lease.arm(4242), "re-armed every cycle");
        assert!(
            tokio::time::timeout(Duration::from_millis(50), lease.armed.notified()).await.is_err(),
            "only the first arming wakes it: re-arming every HA cycle must not add renewals"
        );
        // At the default timing the rule holds for the replica's pace too: were the
        // wake-up lost, the first renewal after winning would still come in time. (With
        // other timings it need not: then only the wake-up keeps the primary's pace.)
        let t = timing();
        assert!(t.replica_renew_interval() * 2 + t.retry_timeout <= t.write_budget());
    }

    #[test]
    fn a_failsafe_extension_comes_before_the_deadline_or_not_at_all() {
        let lease = Lease::new(Arc::new(Mutex::new(FakeFencer::default())));
        lease.renewed(1, renewal(0, 2), &timing());
        assert!(lease.arm(4242));
        let later = Instant::now() + Duration::from_secs(5);
        assert!(lease.extend(later));
        assert_eq!(armed(&lease), later);
        let expired = Lease::new(Arc::new(Mutex::new(FakeFencer::default())));
        expired.renewed(1, renewal(3000, 2), &timing());
        assert!(!expired.extend(Instant::now() + Duration::from_secs(5)), "the lease may be gone in the store");
        assert!(!expired.get().valid());
    }

    #[test]
    fn a_new_ttl_replaces_the_lease_and_its_deadline() {
        let lease = Lease::new(Arc::new(Mutex::new(FakeFencer::default())));
        let long = Timing::from_seconds(10, 1.0, 0.5, 0.5);
        lease.renewed(1, renewal(0, 10), &long);
        assert!(lease.arm(4242));
        assert!(!lease.ttl_changed(&long));
        let short = timing();
        assert!(lease.ttl_changed(&short), "ttl lowered to 2 s");
        lease.held().moving_to = Some(2);
        assert!(lease.owns(1) && lease.owns(2), "while the leader key moves, it is ours on either lease");
        lease.replaced(2, renewal(0, 2), &short);
        assert!(lease.owns(1) && lease.owns(2), "a view read before the move still shows the key on lease 1");
        assert_eq!(lease.get().id, Some(2));
        assert!(!lease.ttl_changed(&short));
        let until = armed(&lease);
        assert!(until <= Instant::now() + Duration::from_millis(1500), "the shorter lease's deadline, not the old later one");
        lease.renewed(2, renewal(0, 2), &short);
        assert!(armed(&lease) >= until, "the fencer follows the new lease");
        lease.lost();
        assert!(!lease.owns(1) && !lease.owns(2), "after the lease is lost, neither is ours");
    }
}
