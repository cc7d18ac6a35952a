//! The agent's lease: granted at start, renewed every `ttl / 8` by its own task, and
//! re-granted when the store says it is gone. Each successful renewal moves the write
//! deadline (`timing`: sent + ttl − safety_margin) and, while the fencer is armed,
//! re-arms it with the new deadline — so a primary keeps its writes exactly as long as
//! the renewals keep succeeding, whatever the HA loop is doing.

use std::sync::{Arc, Mutex};
use std::time::Instant;

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

/// Shared between the renewal task and the HA loop.
#[derive(Clone)]
pub struct Lease {
    info: Arc<Mutex<LeaseInfo>>,
    fencer: Arc<Mutex<Fencer>>,
}

impl Lease {
    pub fn new(fencer: Arc<Mutex<Fencer>>) -> Self {
        Self { info: Arc::default(), fencer }
    }

    pub fn get(&self) -> LeaseInfo {
        self.info.lock().map(|g| *g).unwrap_or_default()
    }

    fn update(&self, f: impl FnOnce(&mut LeaseInfo)) {
        if let Ok(mut g) = self.info.lock() {
            f(&mut g);
        }
    }

    pub fn fencer(&self) -> std::sync::MutexGuard<'_, Fencer> {
        self.fencer.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Forgets the lease (the store said it is gone, or it was revoked).
    pub fn lost(&self) {
        self.update(|i| *i = LeaseInfo::default());
    }

    /// Moves the write deadline to `until` (if later) without the store: failsafe mode,
    /// when every other member confirmed it will not take over before then.
    pub fn extend(&self, until: Instant) {
        self.update(|i| i.valid_until = Some(i.valid_until.map_or(until, |v| v.max(until))));
        let mut fencer = self.fencer();
        if let Some((pid, _)) = fencer.armed_target() {
            fencer.arm(pid, self.get().valid_until.unwrap_or(until));
        }
    }

    fn renewed(&self, id: i64, r: Renewal, timing: &Timing) {
        let until = r.sent + r.ttl.min(timing.ttl).saturating_sub(timing.safety_margin);
        self.update(|i| {
            i.id = Some(id);
            i.valid_until = Some(i.valid_until.map_or(until, |v| v.max(until)));
        });
        let mut fencer = self.fencer();
        if let Some((pid, _)) = fencer.armed_target() {
            fencer.arm(pid, self.get().valid_until.unwrap_or(until));
        }
    }

    /// The renewal task: runs until `wake` closes. Sends on `wake` when the lease
    /// changes (a new lease means the member key must be written again).
    pub async fn keep(self, dcs: Dcs, timing: Arc<Mutex<Timing>>, wake: mpsc::Sender<()>) {
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
                    Ok(Some(r)) => self.renewed(id, r, &timing),
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
            tokio::time::sleep(timing.renew_interval()).await;
        }
    }
}
