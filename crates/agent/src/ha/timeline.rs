//! The HA timeline (`events/` in the store, `raftctl events`): every change of this
//! node's decision, with the time it was made. Events are queued here first and
//! published by one background task, oldest first, each under its original time; while
//! the store is unreachable they stay queued (the last [`KEPT_LOCALLY`]), so a node that
//! was cut off still shows what it did — its demotion above all — once it reaches the
//! store again. The queue is in memory: events of a run that ends before the store
//! answers are lost with it.

use std::collections::VecDeque;
use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, SystemTime};

use tokio::sync::Notify;

use crate::dcs::Dcs;

/// How many unpublished events a node keeps (the oldest go first).
pub const KEPT_LOCALLY: usize = 1000;

/// How long the store keeps an event.
const KEPT_IN_STORE: Duration = Duration::from_secs(3600);

/// How often the publisher tries again while events wait.
const RETRY_EVERY: Duration = Duration::from_secs(1);

/// One event not yet in the store.
#[derive(Debug, Clone, PartialEq)]
pub struct Pending {
    /// Numbers events in the order they were recorded.
    pub seq: u64,
    pub at: SystemTime,
    pub event: String,
}

#[derive(Debug, Default)]
struct Queue {
    events: VecDeque<Pending>,
    next_seq: u64,
    /// Events dropped because the queue was full, not yet reported.
    dropped: u64,
}

/// This node's unpublished events, shared by the HA loop (which records) and the
/// publisher task.
#[derive(Clone, Default)]
pub struct Timeline {
    queue: Arc<Mutex<Queue>>,
    ready: Arc<Notify>,
}

impl Timeline {
    fn lock(&self) -> MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Queues `event` with the current time and wakes the publisher.
    pub fn record(&self, event: &str) {
        self.record_at(event, SystemTime::now());
    }

    fn record_at(&self, event: &str, at: SystemTime) {
        {
            let mut q = self.lock();
            let seq = q.next_seq;
            q.next_seq += 1;
            q.events.push_back(Pending { seq, at, event: event.to_string() });
            if q.events.len() > KEPT_LOCALLY {
                q.events.pop_front();
                q.dropped += 1;
            }
        }
        self.ready.notify_one();
    }

    /// The events waiting, oldest first.
    #[cfg(test)]
    pub fn pending(&self) -> Vec<Pending> {
        self.lock().events.iter().cloned().collect()
    }

    /// Publishes waiting events in order with `put`, each removed once it is stored;
    /// stops at the first failure (the rest wait for the next try). At most as many
    /// puts as events were waiting when it started. Returns how many were published.
    pub async fn publish<F, Fut, E>(&self, mut put: F) -> usize
    where
        F: FnMut(Pending) -> Fut,
        Fut: Future<Output = Result<(), E>>,
        E: std::fmt::Display,
    {
        let waiting = self.lock().events.len();
        let dropped = std::mem::take(&mut self.lock().dropped);
        if dropped > 0 {
            tracing::warn!(
                "{dropped} HA timeline events were dropped while the store was unreachable (only the last {KEPT_LOCALLY} are kept)"
            );
        }
        let mut published = 0;
        for _ in 0..waiting {
            let Some(next) = self.lock().events.front().cloned() else { break };
            let seq = next.seq;
            if let Err(e) = put(next).await {
                tracing::debug!("cannot record the event: {e}");
                break;
            }
            let mut q = self.lock();
            if q.events.front().is_some_and(|p| p.seq == seq) {
                q.events.pop_front();
            }
            published += 1;
        }
        published
    }

    /// The publisher task: publishes whenever an event is recorded, and every
    /// [`RETRY_EVERY`] while some wait; ends when the timeline is dropped.
    pub fn spawn_publisher(&self, dcs: Dcs, me: String) {
        let (queue, ready): (Weak<Mutex<Queue>>, Arc<Notify>) = (Arc::downgrade(&self.queue), self.ready.clone());
        tokio::spawn(async move {
            loop {
                let _ = tokio::time::timeout(RETRY_EVERY, ready.notified()).await;
                let Some(queue) = queue.upgrade() else { return };
                let timeline = Timeline { queue, ready: ready.clone() };
                timeline.publish(|p| dcs_put(&dcs, &me, p)).await;
            }
        });
    }
}

impl Timeline {
    /// Records `event` and publishes every waiting event now (at shutdown, when the
    /// publisher task is about to end); false when the store did not take them all.
    pub async fn record_now(&self, dcs: &Dcs, me: &str, event: &str) -> bool {
        self.record(event);
        let waiting = self.lock().events.len();
        self.publish(|p| dcs_put(dcs, me, p)).await == waiting
    }
}

async fn dcs_put(dcs: &Dcs, me: &str, p: Pending) -> crate::dcs::DcsResult<()> {
    dcs.record_event(me, &p.event, p.at, KEPT_IN_STORE).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;

    #[tokio::test]
    async fn events_wait_for_the_store_and_keep_their_times_and_order() {
        let timeline = Timeline::default();
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        timeline.record_at("no action: I am node1, the primary", t0);
        timeline.record_at("demoted: the store is unreachable", t0 + Duration::from_secs(2));
        timeline.record_at("store unreachable; no action", t0 + Duration::from_secs(3));
        // The store is away: nothing is published, nothing is lost.
        let tries = RefCell::new(0);
        let none = timeline
            .publish(|_| {
                *tries.borrow_mut() += 1;
                async { Err::<(), _>("unavailable".to_string()) }
            })
            .await;
        assert_eq!((none, *tries.borrow()), (0, 1), "one failed try, then it waits");
        assert_eq!(timeline.pending().len(), 3);
        // The store answers the first one only, then fails again.
        let stored = RefCell::new(Vec::new());
        let n = timeline
            .publish(|p| {
                let ok = stored.borrow().is_empty();
                if ok {
                    stored.borrow_mut().push((p.at, p.event));
                }
                async move {
                    if ok {
                        Ok(())
                    } else {
                        Err("unavailable".to_string())
                    }
                }
            })
            .await;
        assert_eq!(n, 1);
        // It answers again: the rest follow, in order, with their original times.
        let n = timeline
            .publish(|p| {
                stored.borrow_mut().push((p.at, p.event));
                async { Ok::<(), String>(()) }
            })
            .await;
        assert_eq!(n, 2);
        let stored = stored.into_inner();
        assert_eq!(stored.iter().map(|(at, _)| *at).collect::<Vec<_>>(), [t0, t0 + Duration::from_secs(2), t0 + Duration::from_secs(3)]);
        assert_eq!(stored[1].1, "demoted: the store is unreachable");
        assert!(timeline.pending().is_empty());
    }

    #[tokio::test]
    async fn only_the_last_events_are_kept_while_the_store_is_away() {
        let timeline = Timeline::default();
        for i in 0..KEPT_LOCALLY + 5 {
            timeline.record(&format!("event {i}"));
        }
        let pending = timeline.pending();
        assert_eq!(pending.len(), KEPT_LOCALLY);
        assert_eq!(pending[0].event, "event 5", "the oldest went first");
        assert_eq!(pending[KEPT_LOCALLY - 1].event, format!("event {}", KEPT_LOCALLY + 4));
        let published = timeline.publish(|_| async { Ok::<(), String>(()) }).await;
        assert_eq!(published, KEPT_LOCALLY);
    }
}
