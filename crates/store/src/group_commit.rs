//! Group commit: what callers submit while an earlier submission is in flight goes out
//! together with what else queued meanwhile, one submission in flight at a time.
//!
//! Two users: the leader's `batcher` (concurrent writes proposed as one Raft log entry)
//! and the follower's `forward_writes` (concurrent writes forwarded to the leader in
//! one peer RPC).
//!
//! A submission that finds nothing in flight goes out at once, from its caller's own
//! task: a lone caller waits for nothing and pays no hand-off to another task and back.
//! What arrives while one is in flight queues up, and whoever finishes the one in flight
//! starts a task that sends the queue, in batches bounded by count and by bytes, until
//! it is empty. One in flight at a time because what queues meanwhile makes the next
//! batch bigger (see `batcher` for the measurements).

use std::collections::VecDeque;
use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::oneshot;

use crate::error::StoreError;

/// How one batch (or one item alone) is sent, and how big an item is.
pub(crate) trait Submit: Send + Sync + 'static {
    type Item: Send + 'static;
    type Output: Send + 'static;

    /// The item's size toward [`Bound::bytes`].
    fn size(&self, item: &Self::Item) -> usize;

    /// Sends one item alone.
    fn one(&self, item: Self::Item) -> impl Future<Output = Result<Self::Output, StoreError>> + Send;

    /// Sends several items together; answers one result per item, in order.
    fn many(&self, items: Vec<Self::Item>) -> impl Future<Output = Vec<Result<Self::Output, StoreError>>> + Send;
}

/// The most one batch holds: `items` items, and no more than `bytes` bytes unless a
/// single item is bigger (it then goes alone).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Bound {
    pub items: usize,
    pub bytes: usize,
}

/// Submits items through `S`, one batch in flight at a time.
pub(crate) struct GroupCommit<S: Submit> {
    shared: Arc<Shared<S>>,
}

impl<S: Submit> Clone for GroupCommit<S> {
    fn clone(&self) -> Self {
        Self { shared: self.shared.clone() }
    }
}

type Answer<S> = Result<<S as Submit>::Output, StoreError>;

struct Queued<S: Submit> {
    item: S::Item,
    size: usize,
    reply: oneshot::Sender<Answer<S>>,
}

struct State<S: Submit> {
    /// A submission is in flight (or its queue is being handed over).
    busy: bool,
    queue: VecDeque<Queued<S>>,
}

struct Shared<S: Submit> {
    submit: S,
    bound: Bound,
    state: Mutex<State<S>>,
}

impl<S: Submit> GroupCommit<S> {
    pub fn new(submit: S, bound: Bound) -> Self {
        let state = Mutex::new(State { busy: false, queue: VecDeque::new() });
        Self { shared: Arc::new(Shared { submit, bound, state }) }
    }

    /// Submits `item` (possibly together with others) and waits for its result.
    pub async fn submit(&self, item: S::Item) -> Answer<S> {
        let queued = {
            let mut state = self.shared.lock();
            if state.busy {
                let (reply, rx) = oneshot::channel();
                let size = self.shared.submit.size(&item);
                state.queue.push_back(Queued { item, size, reply });
                Err(rx)
            } else {
                state.busy = true;
                Ok(item)
            }
        };
        match queued {
            Ok(item) => {
                // Hands the queue on even if this future is dropped mid-flight.
                let _turn = Turn(self.shared.clone());
                self.shared.submit.one(item).await
            }
            Err(rx) => rx.await.map_err(|_| StoreError::Stopped)?,
        }
    }

    /// Submits `items` together (in batches within the bound) and waits for every
    /// result, in order. Sent at once when nothing is in flight, queued otherwise.
    pub async fn submit_all(&self, items: Vec<S::Item>) -> Vec<Answer<S>> {
        let mut own = Vec::new();
        let mut waits = Vec::new();
        {
            let mut state = self.shared.lock();
            let mut items = items.into_iter().map(|item| (self.shared.submit.size(&item), item)).peekable();
            if !state.busy {
                let (mut count, mut bytes) = (0, 0);
                while let Some((size, _)) = items.peek() {
                    if !self.shared.bound.admits(count, bytes, *size) {
                        break;
                    }
                    (count, bytes) = (count + 1, bytes.saturating_add(*size));
                    own.extend(items.next().map(|(_, item)| item));
                }
                state.busy = !own.is_empty();
            }
            for (size, item) in items {
                let (reply, rx) = oneshot::channel();
                state.queue.push_back(Queued { item, size, reply });
                waits.push(rx);
            }
        }
        let mut results = Vec::new();
        if !own.is_empty() {
            let _turn = Turn(self.shared.clone());
            results = self.shared.send(own).await;
        }
        for rx in waits {
            results.push(rx.await.unwrap_or(Err(StoreError::Stopped)));
        }
        results
    }

    /// How many items wait for the next batch.
    #[cfg(test)]
    pub fn queued(&self) -> usize {
        self.shared.lock().queue.len()
    }
}

impl Bound {
    /// Whether a batch of `count` items and `bytes` bytes may take one of `size` more.
    fn admits(&self, count: usize, bytes: usize, size: usize) -> bool {
        count == 0 || (count < self.items && bytes.saturating_add(size) <= self.bytes)
    }
}

impl<S: Submit> Shared<S> {
    fn lock(&self) -> MutexGuard<'_, State<S>> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The next batch from the queue, or `None` (and not busy any more) when it is empty.
    fn next_batch(&self) -> Option<Vec<Queued<S>>> {
        let mut state = self.lock();
        let (mut count, mut bytes) = (0, 0);
        for next in &state.queue {
            if !self.bound.admits(count, bytes, next.size) {
                break;
            }
            (count, bytes) = (count + 1, bytes.saturating_add(next.size));
        }
        if count == 0 {
            state.busy = false;
            return None;
        }
        Some(state.queue.drain(..count).collect())
    }

    /// Sends `items` (alone when there is one) and checks one answer came per item.
    async fn send(&self, mut items: Vec<S::Item>) -> Vec<Answer<S>> {
        if items.len() == 1 {
            if let Some(item) = items.pop() {
                return vec![self.submit.one(item).await];
            }
        }
        let sent = items.len();
        let results = self.submit.many(items).await;
        if results.len() == sent {
            return results;
        }
        let e = StoreError::Internal(format!("a batch of {sent} requests was answered with {} results", results.len()));
        (0..sent).map(|_| Err(e.clone())).collect()
    }

    /// Sends a batch taken from the queue and routes each answer to its caller.
    async fn dispatch(&self, batch: Vec<Queued<S>>) {
        let (items, replies): (Vec<_>, Vec<_>) = batch.into_iter().map(|q| (q.item, q.reply)).unzip();
        for (reply, result) in replies.into_iter().zip(self.send(items).await) {
            let _ = reply.send(result);
        }
    }
}

/// The right to submit; when it ends, a task sends what queued up meanwhile.
struct Turn<S: Submit>(Arc<Shared<S>>);

impl<S: Submit> Drop for Turn<S> {
    fn drop(&mut self) {
        let Some(first) = self.0.next_batch() else { return };
        // Outside a runtime (it is shutting down) the queued callers get `Stopped`.
        let Ok(runtime) = tokio::runtime::Handle::try_current() else { return };
        let shared = self.0.clone();
        runtime.spawn(async move {
            shared.dispatch(first).await;
            while let Some(batch) = shared.next_batch() {
                shared.dispatch(batch).await;
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use futures::FutureExt;

    use super::*;

    /// Answers item `n` with `n * 10`, or with an error when `n` is odd and sent in a
    /// batch. Records what went out how. The first send waits until `release` is called.
    #[derive(Default)]
    struct Fake {
        sent: Mutex<Vec<(&'static str, Vec<u32>)>>,
        hold: Mutex<Option<oneshot::Receiver<()>>>,
        /// `many` drops its last answer (a peer answering the wrong count).
        short: bool,
    }

    impl Fake {
        fn holding() -> (Self, oneshot::Sender<()>) {
            let (release, hold) = oneshot::channel();
            (Self { hold: Mutex::new(Some(hold)), ..Self::default() }, release)
        }

        async fn wait_release(&self) {
            let hold = self.hold.lock().expect("a test lock").take();
            if let Some(hold) = hold {
                let _ = hold.await;
            }
        }

        fn sent(&self) -> Vec<(&'static str, Vec<u32>)> {
            self.sent.lock().expect("a test lock").clone()
        }
    }

    impl Submit for Arc<Fake> {
        type Item = u32;
        type Output = u32;

        fn size(&self, item: &u32) -> usize {
            *item as usize
        }

        async fn one(&self, item: u32) -> Result<u32, StoreError> {
            self.sent.lock().expect("a test lock").push(("one", vec![item]));
            self.wait_release().await;
            Ok(item * 10)
        }

        async fn many(&self, items: Vec<u32>) -> Vec<Result<u32, StoreError>> {
            self.sent.lock().expect("a test lock").push(("many", items.clone()));
            self.wait_release().await;
            let mut answers: Vec<_> =
                items.iter().map(|n| if n % 2 == 1 { Err(StoreError::Internal(format!("odd {n}"))) } else { Ok(n * 10) }).collect();
            if self.short {
                answers.pop();
            }
            answers
        }
    }

    const WIDE: Bound = Bound { items: 100, bytes: 1_000_000 };

    /// Starts `item`'s submission on its own task and returns once it is queued.
    /// Submits `item` and waits until the fake peer holds it (the call in flight).
    async fn in_flight(gc: &GroupCommit<Arc<Fake>>, fake: &Fake, item: u32) -> tokio::task::JoinHandle<Answer<Arc<Fake>>> {
        let task = tokio::spawn({
            let gc = gc.clone();
            async move { gc.submit(item).await }
        });
        while fake.sent().is_empty() {
            tokio::task::yield_now().await;
        }
        task
    }

    async fn queue(gc: &GroupCommit<Arc<Fake>>, item: u32) -> tokio::task::JoinHandle<Answer<Arc<Fake>>> {
        let before = gc.queued();
        let task = tokio::spawn({
            let gc = gc.clone();
            async move { gc.submit(item).await }
        });
        while gc.queued() == before {
            tokio::task::yield_now().await;
        }
        task
    }

    async fn answers(tasks: Vec<tokio::task::JoinHandle<Answer<Arc<Fake>>>>) -> Vec<Answer<Arc<Fake>>> {
        let mut out = Vec::new();
        for t in tasks {
            out.push(tokio::time::timeout(Duration::from_secs(5), t).await.expect("answered").expect("task"));
        }
        out
    }

    #[tokio::test]
    async fn a_lone_item_goes_out_at_once_from_its_callers_task() {
        let fake = Arc::new(Fake::default());
        let gc = GroupCommit::new(fake.clone(), WIDE);
        // Ready on the first poll: no timer, no queue, no other task involved.
        assert_eq!(gc.submit(4).now_or_never().expect("not delayed"), Ok(40));
        assert_eq!(gc.submit(6).now_or_never().expect("not delayed"), Ok(60));
        assert_eq!(fake.sent(), vec![("one", vec![4]), ("one", vec![6])]);
    }

    #[tokio::test]
    async fn items_arriving_meanwhile_go_together_in_order_each_answer_to_its_caller() {
        let (fake, release) = Fake::holding();
        let fake = Arc::new(fake);
        let gc = GroupCommit::new(fake.clone(), WIDE);
        let first = in_flight(&gc, &fake, 2).await;
        let mut tasks = vec![first];
        for n in [8, 4, 6, 12, 10] {
            tasks.push(queue(&gc, n).await);
        }
        release.send(()).expect("held");
        assert_eq!(answers(tasks).await, vec![Ok(20), Ok(80), Ok(40), Ok(60), Ok(120), Ok(100)]);
        assert_eq!(fake.sent(), vec![("one", vec![2]), ("many", vec![8, 4, 6, 12, 10])]);
    }

    #[tokio::test]
    async fn each_item_of_a_batch_gets_its_own_error() {
        let (fake, release) = Fake::holding();
        let fake = Arc::new(fake);
        let gc = GroupCommit::new(fake.clone(), WIDE);
        let mut tasks = vec![in_flight(&gc, &fake, 2).await];
        for n in [3, 4, 5] {
            tasks.push(queue(&gc, n).await);
        }
        release.send(()).expect("held");
        let got = answers(tasks).await;
        assert_eq!(got[0], Ok(20));
        assert_eq!(got[1], Err(StoreError::Internal("odd 3".into())));
        assert_eq!(got[2], Ok(40));
        assert_eq!(got[3], Err(StoreError::Internal("odd 5".into())));
    }

    #[tokio::test]
    async fn a_batch_answered_with_the_wrong_count_fails_every_item_in_it() {
        let (fake, release) = Fake::holding();
        let fake = Arc::new(Fake { short: true, ..fake });
        let gc = GroupCommit::new(fake.clone(), WIDE);
        let mut tasks = vec![in_flight(&gc, &fake, 2).await];
        for n in [4, 6] {
            tasks.push(queue(&gc, n).await);
        }
        release.send(()).expect("held");
        let got = answers(tasks).await;
        assert_eq!(got[0], Ok(20));
        for e in &got[1..] {
            assert!(matches!(e, Err(StoreError::Internal(m)) if m.contains("2 requests was answered with 1")), "{e:?}");
        }
    }

    #[tokio::test]
    async fn batches_stay_within_the_count_and_byte_bound() {
        let (fake, release) = Fake::holding();
        let fake = Arc::new(fake);
        // At most 3 items and 20 bytes (an item's size is its value).
        let gc = GroupCommit::new(fake.clone(), Bound { items: 3, bytes: 20 });
        let mut tasks = vec![in_flight(&gc, &fake, 2).await];
        for n in [2, 2, 2, 2, 10, 8, 30, 4] {
            tasks.push(queue(&gc, n).await);
        }
        release.send(()).expect("held");
        let got = answers(tasks).await;
        assert_eq!(got, vec![Ok(20), Ok(20), Ok(20), Ok(20), Ok(20), Ok(100), Ok(80), Ok(300), Ok(40)]);
        // Count bound, then byte bound (2 + 10 + 8 = 20 fits, 30 alone is over but goes alone).
        assert_eq!(
            fake.sent(),
            vec![("one", vec![2]), ("many", vec![2, 2, 2]), ("many", vec![2, 10, 8]), ("one", vec![30]), ("one", vec![4])]
        );
    }

    #[tokio::test]
    async fn submit_all_sends_at_once_when_idle_within_the_bound() {
        let fake = Arc::new(Fake::default());
        let gc = GroupCommit::new(fake.clone(), Bound { items: 3, bytes: 1000 });
        let got = tokio::time::timeout(Duration::from_secs(5), gc.submit_all(vec![2, 4, 6, 8, 3])).await.expect("answered");
        assert_eq!(got, vec![Ok(20), Ok(40), Ok(60), Ok(80), Err(StoreError::Internal("odd 3".into()))]);
        assert_eq!(fake.sent(), vec![("many", vec![2, 4, 6]), ("many", vec![8, 3])]);
        assert!(gc.submit_all(Vec::new()).await.is_empty());
        assert_eq!(gc.submit(2).now_or_never().expect("idle again"), Ok(20));
    }

    #[tokio::test]
    async fn submit_all_queues_behind_what_is_in_flight() {
        let (fake, release) = Fake::holding();
        let fake = Arc::new(fake);
        let gc = GroupCommit::new(fake.clone(), WIDE);
        let first = in_flight(&gc, &fake, 2).await;
        let all = tokio::spawn({
            let gc = gc.clone();
            async move { gc.submit_all(vec![4, 6]).await }
        });
        while gc.queued() < 2 {
            tokio::task::yield_now().await;
        }
        release.send(()).expect("held");
        assert_eq!(answers(vec![first]).await, vec![Ok(20)]);
        assert_eq!(all.await.expect("task"), vec![Ok(40), Ok(60)]);
        assert_eq!(fake.sent(), vec![("one", vec![2]), ("many", vec![4, 6])]);
    }
}
