//! A follower's writes to the leader, gathered: concurrent writes go in one peer call
//! (`ForwardWrites`) instead of one call each ([`GroupCommit`], per leader address).
//!
//! A lone write goes at once through the single-request `Forward` call, as before
//! batching existed. Writes that arrive while one call to that leader is in flight are
//! sent together once it returns, and the leader proposes them with its own group
//! commit (`batcher`). Each write gets its own answer (revision and header included)
//! or its own error; the caller (`client`) retries a `NotLeader` on the new leader.
//!
//! Mixed versions: a leader too old to know `ForwardWrites` answers UNIMPLEMENTED
//! without applying anything; its writes then go one by one through `Forward`, and
//! batches to that address are tried again after [`RETRY_BATCHES_AFTER`] (it may have
//! been upgraded meanwhile).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::error::StoreError;
use crate::forward::{ForwardRequest, ForwardResponse};
use crate::group_commit::{Bound, GroupCommit, Submit};
use crate::network::PeerNetwork;
use crate::types::{Request, Response};

/// Most writes in one call, and most bytes (well below the peer message limit; a single
/// bigger write goes alone).
const BOUND: Bound = Bound { items: 256, bytes: 4 * 1024 * 1024 };

/// How long a leader that refused `ForwardWrites` gets its writes one by one.
const RETRY_BATCHES_AFTER: Duration = Duration::from_secs(30);

/// The shortest time a call is given, however close its caller's deadline.
const MIN_CALL_TIME: Duration = Duration::from_millis(100);

/// Gathers forwarded writes per leader address.
pub(crate) struct WriteForwarder {
    net: PeerNetwork,
    leaders: Mutex<HashMap<String, GroupCommit<LeaderLink>>>,
}

impl WriteForwarder {
    pub fn new(net: PeerNetwork) -> Self {
        Self { net, leaders: Mutex::default() }
    }

    /// Sends `request` to the leader at `addr` (together with others bound there) and
    /// waits for its own answer, until `deadline`.
    pub async fn write(&self, addr: &str, request: Request, deadline: Instant) -> Result<Response, StoreError> {
        let group = {
            let mut leaders = self.leaders.lock().unwrap_or_else(|p| p.into_inner());
            leaders
                .entry(addr.to_string())
                .or_insert_with(|| {
                    let link = LeaderLink { net: self.net.clone(), addr: addr.to_string(), refused_batch: Mutex::new(None) };
                    GroupCommit::new(link, BOUND)
                })
                .clone()
        };
        let until = tokio::time::Instant::from_std(deadline.max(Instant::now() + MIN_CALL_TIME));
        match tokio::time::timeout_at(until, group.submit((request, deadline))).await {
            Ok(answer) => answer,
            // Its call may still reach the leader: the write's fate is unknown.
            Err(_) => Err(StoreError::Timeout),
        }
    }
}

/// The way to one leader: writes with their callers' deadlines.
struct LeaderLink {
    net: PeerNetwork,
    addr: String,
    /// When the leader last answered `ForwardWrites` with UNIMPLEMENTED.
    refused_batch: Mutex<Option<Instant>>,
}

type Write = (Request, Instant);

/// Time left until `deadline`, never below [`MIN_CALL_TIME`].
fn time_until(deadline: Instant) -> Duration {
    deadline.saturating_duration_since(Instant::now()).max(MIN_CALL_TIME)
}

impl LeaderLink {
    fn refuses_batches(&self) -> bool {
        let refused = self.refused_batch.lock().unwrap_or_else(|p| p.into_inner());
        refused.is_some_and(|at| at.elapsed() < RETRY_BATCHES_AFTER)
    }

    /// One write through the single-request call.
    async fn single(&self, (request, deadline): Write) -> Result<Response, StoreError> {
        match self.net.forward(&self.addr, &ForwardRequest::Write(request), time_until(deadline)).await? {
            ForwardResponse::Write(response) => Ok(response),
            other => Err(StoreError::Internal(format!("unexpected answer {other:?}"))),
        }
    }

    /// The writes one by one, concurrently (what a leader of an older version serves).
    async fn each(&self, writes: Vec<Write>) -> Vec<Result<Response, StoreError>> {
        futures::future::join_all(writes.into_iter().map(|write| self.single(write))).await
    }
}

impl Submit for LeaderLink {
    type Item = Write;
    type Output = Response;

    fn size(&self, (request, _): &Write) -> usize {
        bincode::serialized_size(request).map_or(usize::MAX, |n| usize::try_from(n).unwrap_or(usize::MAX))
    }

    async fn one(&self, write: Write) -> Result<Response, StoreError> {
        self.single(write).await
    }

    async fn many(&self, writes: Vec<Write>) -> Vec<Result<Response, StoreError>> {
        if self.refuses_batches() {
            return self.each(writes).await;
        }
        let deadline = writes.iter().map(|(_, d)| *d).max().unwrap_or_else(Instant::now);
        let (requests, deadlines): (Vec<Request>, Vec<Instant>) = writes.into_iter().unzip();
        match self.net.forward_writes(&self.addr, &requests, time_until(deadline)).await {
            Ok(Some(answers)) => answers,
            Ok(None) => {
                tracing::info!(leader = %self.addr, "the leader does not take batched writes (an older version): sending them one by one");
                *self.refused_batch.lock().unwrap_or_else(|p| p.into_inner()) = Some(Instant::now());
                self.each(requests.into_iter().zip(deadlines).collect()).await
            }
            Err(e) => vec![Err(e); requests.len()],
        }
    }
}
