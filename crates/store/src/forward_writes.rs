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
const BOUND: Bound = Bound { items: 256, bytes: 1024 * 1024 };

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

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use raftgres_proto::peer::raft_peer_server::{RaftPeer, RaftPeerServer};
    use raftgres_proto::peer::Payload;
    use tokio::sync::Notify;
    use tonic::{Request as Call, Response as Answer, Status};

    use super::*;
    use crate::network::{decode, encode};

    /// A leader that answers write `n` (a `PublishMember` with id `n`) with a batch of
    /// `n` `Done`s, the first single call only once released; `batches: false` plays a
    /// version without `ForwardWrites`.
    struct FakeLeader {
        batches: bool,
        calls: Arc<Mutex<Vec<String>>>,
        release: Arc<Notify>,
    }

    fn write(n: u64) -> Request {
        Request::PublishMember { id: n, name: String::new(), client_addr: String::new() }
    }

    fn answer_to(request: &Request) -> Response {
        match request {
            Request::PublishMember { id, .. } => Response::Batch(vec![Response::Done; *id as usize]),
            _ => Response::Done,
        }
    }

    fn payload<T: serde::Serialize>(value: &T) -> Result<Answer<Payload>, Status> {
        encode(value).map(Answer::new).map_err(|e| Status::internal(e.to_string()))
    }

    fn unused() -> Result<Answer<Payload>, Status> {
        Err(Status::internal("not a Raft peer"))
    }

    #[tonic::async_trait]
    impl RaftPeer for FakeLeader {
        async fn append_entries(&self, _: Call<Payload>) -> Result<Answer<Payload>, Status> {
            unused()
        }
        async fn vote(&self, _: Call<Payload>) -> Result<Answer<Payload>, Status> {
            unused()
        }
        async fn pre_vote(&self, _: Call<Payload>) -> Result<Answer<Payload>, Status> {
            unused()
        }
        async fn install_snapshot(&self, _: Call<Payload>) -> Result<Answer<Payload>, Status> {
            unused()
        }
        async fn transfer_leader(&self, _: Call<Payload>) -> Result<Answer<Payload>, Status> {
            unused()
        }

        async fn forward(&self, call: Call<Payload>) -> Result<Answer<Payload>, Status> {
            let Ok(ForwardRequest::Write(request)) = decode(call.get_ref()) else { return unused() };
            let first = {
                let mut calls = self.calls.lock().expect("a test lock");
                calls.push(format!("forward {request}"));
                calls.len() == 1
            };
            if first {
                self.release.notified().await;
            }
            payload(&Ok::<_, StoreError>(ForwardResponse::Write(answer_to(&request))))
        }

        async fn forward_writes(&self, call: Call<Payload>) -> Result<Answer<Payload>, Status> {
            let requests: Vec<Request> = decode(call.get_ref()).map_err(|e| Status::invalid_argument(e.to_string()))?;
            self.calls.lock().expect("a test lock").push(format!("forward_writes {} (served: {})", requests.len(), self.batches));
            if !self.batches {
                return Err(Status::unimplemented("no such method"));
            }
            let answers: Vec<Result<Response, StoreError>> = requests
                .iter()
                .map(|r| if matches!(r, Request::PublishMember { id: 3, .. }) { Err(StoreError::NoLeader) } else { Ok(answer_to(r)) })
                .collect();
            payload(&answers)
        }
    }

    async fn serve(batches: bool) -> (String, Arc<Mutex<Vec<String>>>, Arc<Notify>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr").to_string();
        let (calls, release) = (Arc::new(Mutex::new(Vec::new())), Arc::new(Notify::new()));
        let leader = FakeLeader { batches, calls: calls.clone(), release: release.clone() };
        let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
        tokio::spawn(tonic::transport::Server::builder().add_service(RaftPeerServer::new(leader)).serve_with_incoming(incoming));
        (addr, calls, release)
    }

    /// Sends write 1, then writes 2..=5 while it is held on the leader; their answers.
    async fn gather(forwarder: &Arc<WriteForwarder>, addr: &str, release: &Notify) -> Vec<Result<Response, StoreError>> {
        let deadline = Instant::now() + Duration::from_secs(5);
        let spawn = |n: u64| {
            let (forwarder, addr) = (forwarder.clone(), addr.to_string());
            tokio::spawn(async move { forwarder.write(&addr, write(n), deadline).await })
        };
        let mut tasks = vec![spawn(1)];
        let group = loop {
            if let Some(group) = forwarder.leaders.lock().expect("a test lock").get(addr) {
                break group.clone();
            }
            tokio::task::yield_now().await;
        };
        for n in 2..=5 {
            tasks.push(spawn(n));
            while group.queued() < n as usize - 1 {
                tokio::task::yield_now().await;
            }
        }
        release.notify_one();
        let mut answers = Vec::new();
        for task in tasks {
            answers.push(task.await.expect("task"));
        }
        answers
    }

    fn done(n: usize) -> Result<Response, StoreError> {
        Ok(Response::Batch(vec![Response::Done; n]))
    }

    fn same(a: &[Result<Response, StoreError>], b: &[Result<Response, StoreError>]) -> bool {
        format!("{a:?}") == format!("{b:?}")
    }

    #[tokio::test]
    async fn writes_arriving_while_one_is_forwarded_go_in_one_call_each_with_its_own_answer() {
        let (addr, calls, release) = serve(true).await;
        let forwarder =
            Arc::new(WriteForwarder::new(PeerNetwork::new(Duration::from_millis(100), None, tokio::runtime::Handle::current())));
        let answers = gather(&forwarder, &addr, &release).await;
        let expected = [done(1), done(2), Err(StoreError::NoLeader), done(4), done(5)];
        assert!(same(&answers, &expected), "{answers:?}");
        assert_eq!(
            *calls.lock().expect("a test lock"),
            vec!["forward publish  (1) at ".to_string(), "forward_writes 4 (served: true)".into()]
        );
    }

    #[tokio::test]
    async fn a_leader_without_batched_writes_gets_them_one_by_one() {
        let (addr, calls, release) = serve(false).await;
        let forwarder =
            Arc::new(WriteForwarder::new(PeerNetwork::new(Duration::from_millis(100), None, tokio::runtime::Handle::current())));
        let answers = gather(&forwarder, &addr, &release).await;
        assert!(same(&answers, &[done(1), done(2), done(3), done(4), done(5)]), "{answers:?}");
        let calls_now = calls.lock().expect("a test lock").clone();
        assert_eq!(calls_now.len(), 6, "{calls_now:?}");
        assert_eq!(calls_now[1], "forward_writes 4 (served: false)");
        assert!(calls_now[2..].iter().all(|c| c.starts_with("forward publish")), "{calls_now:?}");
        // Not asked again at once: the next gathered writes go one by one straight away.
        calls.lock().expect("a test lock").clear();
        let answers = gather(&forwarder, &addr, &release).await;
        assert!(same(&answers, &[done(1), done(2), done(3), done(4), done(5)]), "{answers:?}");
        assert!(
            calls.lock().expect("a test lock").iter().all(|c| c.starts_with("forward publish")),
            "{:?}",
            calls.lock().expect("a test lock")
        );
    }
}
