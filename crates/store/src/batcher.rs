//! Group commit on the leader: writes that arrive while earlier ones are being
//! replicated are proposed together as one log entry ([`Request::Batch`]).
//!
//! openraft also batches concurrent proposals into one storage write, but each stays
//! its own entry (serialized, stored, replicated and applied one by one). One entry per
//! batch keeps that cost per batch: measured with `kvbench` on 3 nodes, 256 clients
//! reach ~15k puts/s with it and ~8k without (p99 25 ms vs 160 ms).

use std::sync::Arc;
use std::time::Instant;

use openraft::error::{ClientWriteError, RaftError};
use tokio::sync::{mpsc, oneshot};

use crate::error::StoreError;
use crate::metrics::StoreMetrics;
use crate::types::{Raft, Request, Response};

/// Most requests in one log entry (keeps an entry well below the peer message limit).
const MAX_BATCH: usize = 256;

type Reply = oneshot::Sender<Result<Response, StoreError>>;

/// Hands writes to the batching task.
#[derive(Clone)]
pub struct Batcher {
    queue: mpsc::UnboundedSender<(Request, Reply)>,
    metrics: Arc<StoreMetrics>,
}

impl Batcher {
    /// Starts the batching task; each write's time to its result goes to `metrics`.
    pub fn start(raft: Raft, metrics: Arc<StoreMetrics>) -> Self {
        let (queue, rx) = mpsc::unbounded_channel();
        tokio::spawn(run(raft, rx));
        Self { queue, metrics }
    }

    /// Proposes `request` (possibly together with others) and waits for its result.
    pub async fn write(&self, request: Request) -> Result<Response, StoreError> {
        let (tx, rx) = oneshot::channel();
        let started = Instant::now();
        self.queue.send((request, tx)).map_err(|_| StoreError::Stopped)?;
        let result = rx.await.map_err(|_| StoreError::Stopped)?;
        self.metrics.proposal.observe(started.elapsed());
        result
    }
}

/// Proposes one batch at a time, from this task (no task per batch: one wake-up fewer
/// per write). One at a time because what queues meanwhile makes the next batch
/// bigger, which beats a second batch in flight (measured with kvbench on 3 nodes:
/// 16 clients 3.5–3.7k puts/s with one, 3.2–3.3k with two, 2.8–2.9k with eight;
/// 256 clients 18.6–18.9k with one, 16.1–16.6k with two).
async fn run(raft: Raft, mut rx: mpsc::UnboundedReceiver<(Request, Reply)>) {
    while let Some(first) = rx.recv().await {
        // Everything that queued up while the previous batch was replicating goes in.
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(item) => batch.push(item),
                Err(_) => break,
            }
        }
        propose(&raft, batch).await;
    }
}

async fn propose(raft: &Raft, mut batch: Vec<(Request, Reply)>) {
    if batch.len() == 1 {
        if let Some((request, reply)) = batch.pop() {
            let _ = reply.send(client_write(raft, request).await);
        }
        return;
    }
    let (requests, replies): (Vec<Request>, Vec<Reply>) = batch.into_iter().unzip();
    match client_write(raft, Request::Batch(requests)).await {
        Ok(Response::Batch(responses)) if responses.len() == replies.len() => {
            for (reply, response) in replies.into_iter().zip(responses) {
                let _ = reply.send(Ok(response));
            }
        }
        Ok(other) => {
            let e = StoreError::Internal(format!("batch answered with {other:?}"));
            for reply in replies {
                let _ = reply.send(Err(e.clone()));
            }
        }
        Err(e) => {
            for reply in replies {
                let _ = reply.send(Err(e.clone()));
            }
        }
    }
}

async fn client_write(raft: &Raft, request: Request) -> Result<Response, StoreError> {
    match raft.client_write(request).await {
        Ok(resp) => Ok(resp.data),
        // Proposed, then leadership moved: it may still commit, so never retry.
        Err(RaftError::APIError(ClientWriteError::ForwardToLeader(_))) => Err(StoreError::LeaderChanged),
        Err(e) => Err(StoreError::internal(e)),
    }
}
