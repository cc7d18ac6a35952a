//! Outgoing peer traffic: openraft's `RaftNetwork` over tonic, plus request forwarding.
//!
//! One lazily connected tonic channel per peer address and [`Lane`] is cached and shared
//! by every client openraft creates (it creates them often); with peer TLS it is `https`
//! and presents this node's certificate. Raft's lane lives on the Raft runtime
//! (`raft_runtime`), forwarded client requests have a connection of their own on the
//! caller's runtime, so a burst of them cannot hold a heartbeat back. Transport failures map to
//! openraft's `Unreachable` (which backs off exponentially, capped below the election
//! timeout); a remote Raft error travels back typed. Pre-Vote is a real round trip (a
//! peer that cannot be reached grants nothing), so a node cut off keeps its term. A
//! follower that acknowledged log entries and later answers that it lacks them lost its
//! data dir: that is reported as unreachable with a clear log line instead of letting
//! the leader panic on it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use openraft::error::{NetworkError, RPCError, RaftError, ReplicationClosed, StreamingError, Unreachable};
use openraft::network::{Backoff, RPCOption, RaftNetworkFactory, RaftNetworkV2};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, SnapshotResponse, TransferLeaderRequest, TransferLeaderResponse, VoteRequest, VoteResponse,
};
use openraft::OptionalSend;
use raftgres_proto::peer::raft_peer_client::RaftPeerClient;
use raftgres_proto::peer::Payload;
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::runtime::Handle;
use tonic::transport::{Channel, ClientTlsConfig, Endpoint};

use crate::error::StoreError;
use crate::forward::{ForwardRequest, ForwardResponse};
use crate::types::{NodeId, PeerNode, Request, Response, Snapshot, SnapshotMeta, TypeConfig, Vote};

/// Largest message a peer accepts or sends; a snapshot travels whole, so this also
/// bounds the size of the key space a new member can receive.
pub const MAX_PEER_MESSAGE: usize = 64 * 1024 * 1024;

/// How often an idle peer connection is pinged, and how long an answer may take before
/// the connection is dropped.
const KEEP_ALIVE_INTERVAL: Duration = Duration::from_millis(500);
const KEEP_ALIVE_TIMEOUT: Duration = Duration::from_secs(1);

/// Which traffic a peer connection carries.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum Lane {
    /// Raft's own messages: heartbeats, log entries, votes, snapshots.
    Raft,
    /// Client requests a follower forwards to the leader.
    Forward,
}

/// Shared by all clients: cached channels and what each follower acknowledged.
#[derive(Clone)]
pub struct PeerNetwork {
    channels: Arc<Mutex<HashMap<(Lane, String), Channel>>>,
    matched: Arc<Mutex<HashMap<NodeId, u64>>>,
    backoff_cap: Duration,
    /// Peer TLS (mutual): the CA peers must chain to and this node's certificate.
    tls: Option<ClientTlsConfig>,
    /// Where the Raft lane's connections run.
    raft_runtime: Handle,
}

impl PeerNetwork {
    pub fn new(backoff_cap: Duration, tls: Option<ClientTlsConfig>, raft_runtime: Handle) -> Self {
        Self { channels: Arc::default(), matched: Arc::default(), backoff_cap, tls, raft_runtime }
    }

    /// The client for the peer at `addr` on `lane` (connects lazily, on first use).
    pub fn client(&self, lane: Lane, addr: &str) -> Result<RaftPeerClient<Channel>, StoreError> {
        let mut channels = self.channels.lock().unwrap_or_else(|p| p.into_inner());
        let channel = match channels.get(&(lane, addr.to_string())) {
            Some(c) => c.clone(),
            None => {
                let bad = |e: tonic::transport::Error| StoreError::Internal(format!("bad peer address {addr}: {e}"));
                let scheme = raftgres_tls::scheme(self.tls.is_some());
                let mut endpoint = Endpoint::from_shared(format!("{scheme}://{addr}")).map_err(bad)?;
                if let Some(tls) = &self.tls {
                    endpoint = endpoint.tls_config(tls.clone()).map_err(bad)?;
                }
                let endpoint = endpoint
                    .connect_timeout(Duration::from_millis(500))
                    .tcp_nodelay(true)
                    // A connection whose packets were dropped (a partition) would wait for
                    // TCP's retransmission backoff, seconds after the network healed:
                    // unanswered pings close it within ~1.5 s, and the next call connects anew.
                    .http2_keep_alive_interval(KEEP_ALIVE_INTERVAL)
                    .keep_alive_timeout(KEEP_ALIVE_TIMEOUT)
                    .keep_alive_while_idle(true);
                // The channel's tasks (and its connection's) run where it is made.
                let channel = match lane {
                    Lane::Raft => {
                        let _raft = self.raft_runtime.enter();
                        endpoint.connect_lazy()
                    }
                    Lane::Forward => endpoint.connect_lazy(),
                };
                channels.insert((lane, addr.to_string()), channel.clone());
                channel
            }
        };
        Ok(RaftPeerClient::new(channel).max_decoding_message_size(MAX_PEER_MESSAGE).max_encoding_message_size(MAX_PEER_MESSAGE))
    }

    /// Forgets what `id` acknowledged (it was removed and may come back empty).
    pub fn forget(&self, id: NodeId) {
        self.matched.lock().unwrap_or_else(|p| p.into_inner()).remove(&id);
    }

    /// Sends a forwarded request to the peer at `addr` and waits at most `timeout`.
    pub async fn forward(&self, addr: &str, request: &ForwardRequest, timeout: Duration) -> Result<ForwardResponse, StoreError> {
        let mut client = self.client(Lane::Forward, addr)?;
        let payload = encode(request).map_err(StoreError::internal)?;
        let reply = match tokio::time::timeout(timeout, client.forward(payload)).await {
            Err(_) => return Err(StoreError::Timeout),
            Ok(Err(status)) => return Err(forward_failed(&status, request.may_repeat())),
            Ok(Ok(reply)) => reply.into_inner(),
        };
        decode::<Result<ForwardResponse, StoreError>>(&reply).map_err(StoreError::internal)?
    }

    /// Sends writes to the leader at `addr` in one call and waits at most `timeout`:
    /// one result per request, in order, or `Ok(None)` when the peer (an older version)
    /// does not serve the call, and so applied none of them.
    pub async fn forward_writes(
        &self,
        addr: &str,
        requests: &[Request],
        timeout: Duration,
    ) -> Result<Option<Vec<Result<Response, StoreError>>>, StoreError> {
        let mut client = self.client(Lane::Forward, addr)?;
        let payload = encode(&requests).map_err(StoreError::internal)?;
        let reply = match tokio::time::timeout(timeout, client.forward_writes(payload)).await {
            Err(_) => return Err(StoreError::Timeout),
            Ok(Err(status)) if status.code() == tonic::Code::Unimplemented => return Ok(None),
            Ok(Err(status)) => return Err(forward_failed(&status, false)),
            Ok(Ok(reply)) => reply.into_inner(),
        };
        decode(&reply).map(Some).map_err(StoreError::internal)
    }
}

/// What a forwarded call that failed with `status` means to its caller.
fn forward_failed(status: &tonic::Status, may_repeat: bool) -> StoreError {
    if never_delivered(status) {
        // Never reached the peer: safe to try again, on whichever node leads by then.
        StoreError::NoLeader
    } else if !may_repeat {
        // A write may have reached the old leader and be committed by the next one:
        // sending it again could apply it twice, so its fate is left unknown.
        StoreError::LeaderChanged
    } else if status.code() == tonic::Code::Unavailable {
        StoreError::NoLeader
    } else {
        StoreError::Internal(status.message().to_string())
    }
}

/// Whether a failed call provably never reached the peer: its connection could not be
/// made (refused, unreachable, or the connect timeout passed). Any other failure may
/// have happened after the request was delivered.
fn never_delivered(status: &tonic::Status) -> bool {
    let mut source = std::error::Error::source(status);
    while let Some(e) = source {
        let debug = format!("{e:?}");
        if debug.starts_with("ConnectError(") || debug.starts_with("TimeoutExpired") {
            return true;
        }
        source = e.source();
    }
    false
}

pub fn encode<T: Serialize>(value: &T) -> Result<Payload, bincode::Error> {
    Ok(Payload { data: bincode::serialize(value)? })
}

pub fn decode<T: DeserializeOwned>(payload: &Payload) -> Result<T, bincode::Error> {
    bincode::deserialize(&payload.data)
}

impl RaftNetworkFactory<TypeConfig> for PeerNetwork {
    type Network = PeerClient;

    async fn new_client(&mut self, target: NodeId, node: &PeerNode) -> PeerClient {
        PeerClient { target, addr: node.peer_addr.clone(), net: self.clone() }
    }
}

/// openraft's view of one peer.
pub struct PeerClient {
    target: NodeId,
    addr: String,
    net: PeerNetwork,
}

/// A whole snapshot as it travels to a follower (openraft's `Snapshot` holds a reader).
#[derive(serde::Serialize, serde::Deserialize)]
pub struct SnapshotMessage {
    pub vote: Vote,
    pub meta: SnapshotMeta,
    pub data: Vec<u8>,
}

/// What a peer's service answers: a Raft error travels back typed.
type RemoteResult<T> = Result<T, RaftError<TypeConfig>>;

impl PeerClient {
    async fn call<Req, Resp>(&self, method: Method, req: &Req, timeout: Duration) -> Result<Resp, RPCError<TypeConfig>>
    where
        Req: Serialize,
        Resp: DeserializeOwned,
    {
        let mut client = self.net.client(Lane::Raft, &self.addr).map_err(|e| RPCError::Unreachable(Unreachable::new(&e)))?;
        let payload = encode(req).map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        let call = async {
            match method {
                Method::Append => client.append_entries(payload).await,
                Method::Vote => client.vote(payload).await,
                Method::PreVote => client.pre_vote(payload).await,
                Method::Snapshot => client.install_snapshot(payload).await,
                Method::TransferLeader => client.transfer_leader(payload).await,
            }
        };
        let reply = match tokio::time::timeout(timeout, call).await {
            Err(elapsed) => return Err(RPCError::Network(NetworkError::new(&elapsed))),
            Ok(Err(status)) => return Err(map_status(status)),
            Ok(Ok(reply)) => reply.into_inner(),
        };
        let result: RemoteResult<Resp> = decode(&reply).map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        // The peer's Raft stopped (fatal): to this node it is unreachable.
        result.map_err(|e| RPCError::Unreachable(Unreachable::new(&e)))
    }

    /// Records how far the follower acknowledged; refuses a follower that went back.
    fn check_revert(&self, rpc_last: Option<u64>, prev: Option<u64>, resp: &AppendEntriesResponse<TypeConfig>) -> bool {
        let mut matched = self.net.matched.lock().unwrap_or_else(|p| p.into_inner());
        let known = matched.get(&self.target).copied();
        match resp {
            AppendEntriesResponse::Success => {
                if let Some(last) = rpc_last.or(prev) {
                    matched.insert(self.target, known.map_or(last, |k| k.max(last)));
                }
                true
            }
            AppendEntriesResponse::PartialSuccess(Some(log_id)) => {
                matched.insert(self.target, known.map_or(log_id.index, |k| k.max(log_id.index)));
                true
            }
            AppendEntriesResponse::Conflict => match (known, prev) {
                (Some(k), Some(p)) if p <= k => {
                    tracing::error!(
                        peer = %self.addr,
                        "member {:x} acknowledged log index {k} but now lacks index {p}: its data \
                         directory was wiped or replaced. Remove it and add it again \
                         (raftctl members remove / add) before restarting it",
                        self.target
                    );
                    false
                }
                _ => true,
            },
            _ => true,
        }
    }
}

#[derive(Clone, Copy)]
enum Method {
    Append,
    Vote,
    PreVote,
    Snapshot,
    TransferLeader,
}

fn map_status(status: tonic::Status) -> RPCError<TypeConfig> {
    match status.code() {
        tonic::Code::Unavailable | tonic::Code::Unknown | tonic::Code::Cancelled => RPCError::Unreachable(Unreachable::new(&status)),
        _ => RPCError::Network(NetworkError::new(&status)),
    }
}

impl RaftNetworkV2<TypeConfig> for PeerClient {
    type SnapshotData = crate::types::SnapshotData;

    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<TypeConfig>, RPCError<TypeConfig>> {
        let rpc_last = rpc.entries.last().map(|e| e.log_id.index);
        let prev = rpc.prev_log_id.map(|l| l.index);
        let resp: AppendEntriesResponse<TypeConfig> = self.call(Method::Append, &rpc, option.hard_ttl()).await?;
        if self.check_revert(rpc_last, prev, &resp) {
            Ok(resp)
        } else {
            Err(RPCError::Unreachable(Unreachable::new(&StoreError::Internal(format!("member {:x} lost its data", self.target)))))
        }
    }

    async fn vote(&mut self, rpc: VoteRequest<TypeConfig>, option: RPCOption) -> Result<VoteResponse<TypeConfig>, RPCError<TypeConfig>> {
        self.call(Method::Vote, &rpc, option.hard_ttl()).await
    }

    /// A real Pre-Vote: openraft's default answers "granted" without asking, which lets
    /// a node that reaches nobody raise its term on every election timeout.
    async fn pre_vote(
        &mut self,
        rpc: VoteRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<VoteResponse<TypeConfig>, RPCError<TypeConfig>> {
        self.call(Method::PreVote, &rpc, option.hard_ttl()).await
    }

    async fn full_snapshot(
        &mut self,
        vote: Vote,
        snapshot: Snapshot,
        cancel: impl std::future::Future<Output = ReplicationClosed> + OptionalSend + 'static,
        option: RPCOption,
    ) -> Result<SnapshotResponse<TypeConfig>, StreamingError<TypeConfig>> {
        let message = SnapshotMessage { vote, meta: snapshot.meta, data: snapshot.snapshot.into_inner() };
        let send = self.call::<_, SnapshotResponse<TypeConfig>>(Method::Snapshot, &message, option.hard_ttl());
        tokio::select! {
            closed = cancel => Err(StreamingError::Closed(closed)),
            sent = send => sent.map_err(|e| match e {
                RPCError::Unreachable(e) => StreamingError::Unreachable(e),
                RPCError::Timeout(e) => StreamingError::Timeout(e),
                RPCError::Network(e) => StreamingError::Network(e),
                RPCError::RemoteError(e) => StreamingError::Network(NetworkError::new(&e)),
            }),
        }
    }

    async fn transfer_leader(
        &mut self,
        req: TransferLeaderRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<TransferLeaderResponse<TypeConfig>, RPCError<TypeConfig>> {
        self.call(Method::TransferLeader, &req, option.hard_ttl()).await
    }

    fn backoff(&self) -> Option<Backoff> {
        let cap = self.net.backoff_cap;
        let mut next = Duration::from_millis(20);
        Some(Backoff::new(std::iter::repeat_with(move || {
            let current = next;
            next = (next * 2).min(cap);
            current
        })))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    fn write() -> ForwardRequest {
        ForwardRequest::Write(Request::Batch(Vec::new()))
    }

    /// A peer that accepts connections, reads what arrives, then hangs up.
    async fn hanging_up_peer() -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr").to_string();
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 65536];
                    for _ in 0..2 {
                        let _ = tokio::time::timeout(Duration::from_millis(200), socket.read(&mut buf)).await;
                    }
                });
            }
        });
        addr
    }

    #[tokio::test]
    async fn a_refused_connection_may_be_retried() {
        let port = std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("port").port();
        let net = PeerNetwork::new(Duration::from_millis(100), None, Handle::current());
        let err = net.forward(&format!("127.0.0.1:{port}"), &write(), Duration::from_secs(2)).await.expect_err("refused");
        assert!(matches!(err, StoreError::NoLeader), "{err:?}");
    }

    #[tokio::test]
    async fn a_write_lost_in_flight_is_never_sent_again() {
        let addr = hanging_up_peer().await;
        let net = PeerNetwork::new(Duration::from_millis(100), None, Handle::current());
        let err = net.forward(&addr, &write(), Duration::from_secs(2)).await.expect_err("hung up");
        assert!(matches!(err, StoreError::LeaderChanged), "{err:?}");
        let err = net.forward(&addr, &ForwardRequest::ReadIndex, Duration::from_secs(2)).await.expect_err("hung up");
        assert!(!matches!(err, StoreError::LeaderChanged), "a read index may be asked again: {err:?}");
    }
}
