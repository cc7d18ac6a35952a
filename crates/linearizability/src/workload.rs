//! The client workload that records a [`History`]: several concurrent clients run a
//! bounded random mix of put, linearizable get, CAS (a Txn on the value or on
//! `create_revision == 0`), delete, and lease grant / put-with-lease / revoke on a few
//! keys under one prefix, each op with a 2 s deadline ([`OP_DEADLINE`]), and record
//! every op with its invoke and return times and how it ended.
//!
//! Callers give one tonic [`Channel`] per node (so TLS and addresses are theirs).
//! Even-numbered clients stick to one node (so a paused or partitioned old leader keeps
//! getting requests the moment it comes back), odd-numbered ones move to the next node
//! after an error, as etcd's client balancer does. Leases get a TTL the caller makes
//! far longer than the run ([`Config::lease_ttl`]) so they never expire (expiry is not
//! in the checker's model); they end by revoke. Values are unique per client and op.
//!
//! An error is *failed* (no effect) only when the store refused the request as such or
//! the connection was refused before anything was sent; anything else is
//! *indeterminate*.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use raftgres_proto::etcdserverpb::compare::{CompareResult, CompareTarget, TargetUnion};
use raftgres_proto::etcdserverpb::kv_client::KvClient;
use raftgres_proto::etcdserverpb::lease_client::LeaseClient;
use raftgres_proto::etcdserverpb::request_op::Request;
use raftgres_proto::etcdserverpb::{
    Compare, DeleteRangeRequest, LeaseGrantRequest, LeaseRevokeRequest, PutRequest, RangeRequest, RequestOp, TxnRequest,
};
use tonic::transport::Channel;
use tonic::Code;

use crate::history::{History, Input, Operation, Outcome, Output};

/// Each op's deadline: past it the op is indeterminate.
pub const OP_DEADLINE: Duration = Duration::from_secs(2);
/// A client's pause after an op that did not succeed (its node may be down).
const RETRY_PAUSE: Duration = Duration::from_millis(100);

/// What the clients do, and when they stop.
#[derive(Clone, Debug)]
pub struct Config {
    pub clients: usize,
    /// Seeds the clients' random choices.
    pub seed: u64,
    /// Every key starts with it (e.g. `/lin/`): `a`, `b`, `c`, `lease/a`, `lease/b`.
    pub prefix: String,
    /// A client stops after this many ops whatever happens.
    pub max_ops_per_client: u64,
    /// And after this long.
    pub max_duration: Duration,
    /// Pause between a client's ops (keeps the load and the history modest).
    pub think: Duration,
    /// The TTL of granted leases, in seconds: far longer than the run.
    pub lease_ttl: i64,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            clients: 5,
            seed: 0,
            prefix: "/lin/".into(),
            max_ops_per_client: 3_000,
            max_duration: Duration::from_secs(600),
            think: Duration::from_millis(5),
            lease_ttl: 600,
        }
    }
}

/// Clients running in the background, recording into one history.
pub struct Workload {
    history: Arc<History>,
    stop: Arc<AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Workload {
    /// Starts `config.clients` clients over `channels` (one per node) on the current
    /// tokio runtime.
    pub fn start(channels: Vec<Channel>, config: &Config) -> anyhow::Result<Self> {
        anyhow::ensure!(!channels.is_empty(), "the KV workload needs at least one node");
        let history = Arc::new(History::default());
        let stop = Arc::new(AtomicBool::new(false));
        let deadline = Instant::now() + config.max_duration;
        let tasks = (0..config.clients)
            .map(|id| {
                let c = ClientLoop::new(id, channels.clone(), config, history.clone(), stop.clone(), deadline);
                tokio::spawn(c.run())
            })
            .collect();
        Ok(Self { history, stop, tasks })
    }

    /// Stops the clients (each finishes its op in flight, at most [`OP_DEADLINE`]) and
    /// returns the history.
    pub async fn finish(self) -> anyhow::Result<Vec<Operation>> {
        self.stop.store(true, Ordering::SeqCst);
        for task in self.tasks {
            task.await.context("a KV client task panicked")?;
        }
        Ok(self.history.operations())
    }
}

/// One client's loop and the little it remembers (what it last saw, its lease).
struct ClientLoop {
    id: usize,
    channels: Vec<Channel>,
    node: usize,
    keys: Vec<String>,
    lease_keys: Vec<String>,
    config: Config,
    deadline: Instant,
    history: Arc<History>,
    stop: Arc<AtomicBool>,
    rng: Xorshift,
    lease: Option<i64>,
    seen: HashMap<String, Option<String>>,
}

impl ClientLoop {
    fn new(id: usize, channels: Vec<Channel>, config: &Config, history: Arc<History>, stop: Arc<AtomicBool>, deadline: Instant) -> Self {
        let node = id % channels.len();
        let rng = Xorshift::new(config.seed ^ (id as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15));
        let keys = ["a", "b", "c"].map(|k| format!("{}{k}", config.prefix)).to_vec();
        let lease_keys = ["lease/a", "lease/b"].map(|k| format!("{}{k}", config.prefix)).to_vec();
        Self {
            id,
            channels,
            node,
            keys,
            lease_keys,
            config: config.clone(),
            deadline,
            history,
            stop,
            rng,
            lease: None,
            seen: HashMap::new(),
        }
    }

    /// Sticky clients stay on their node through errors; the others move on.
    fn sticky(&self) -> bool {
        self.id.is_multiple_of(2)
    }

    fn below(&mut self, n: usize) -> usize {
        self.rng.below(n as u64) as usize
    }

    async fn run(mut self) {
        for n in 0..self.config.max_ops_per_client {
            if self.stop.load(Ordering::SeqCst) || Instant::now() >= self.deadline {
                break;
            }
            tokio::time::sleep(self.config.think).await;
            let input = self.choose(n);
            let channel = self.channels[self.node].clone();
            let call = self.history.now();
            let outcome = match tokio::time::timeout(OP_DEADLINE, execute(channel, &input, self.config.lease_ttl)).await {
                Ok(outcome) => outcome,
                Err(_) => Outcome::Indeterminate(format!("no answer within {OP_DEADLINE:?}")),
            };
            self.learn(&input, &outcome);
            let ok = matches!(outcome, Outcome::Ok(_));
            self.history.record(self.id, input, call, outcome);
            if !ok {
                if !self.sticky() {
                    self.node = (self.node + 1) % self.channels.len();
                }
                tokio::time::sleep(RETRY_PAUSE).await;
            }
        }
    }

    /// The `n`th op: a random one of the mix, with a value unique to this client and op.
    fn choose(&mut self, n: u64) -> Input {
        let value = format!("c{}-{n}", self.id);
        let (k, l) = (self.below(self.keys.len()), self.below(self.lease_keys.len()));
        let (key, lease_key) = (self.keys[k].clone(), self.lease_keys[l].clone());
        let new_lease = (self.id as i64 + 1) * 1_000_000_000 + n as i64;
        match (self.below(100), self.lease) {
            (0..30, _) => Input::Get { key },
            (30..50, _) => Input::Put { key, value, lease: None },
            (50..65, _) => {
                let expected = self.seen.get(&key).cloned().flatten();
                Input::Cas { key, expected, value }
            }
            (65..70, _) => Input::Delete { key },
            (70..80, _) => Input::Get { key: lease_key },
            (80..93, Some(lease)) => Input::Put { key: lease_key, value, lease: Some(lease) },
            (93.., Some(lease)) => Input::Revoke { lease },
            (_, None) => Input::Grant { lease: new_lease },
        }
    }

    /// Remembers what an answer says about the plain keys and this client's lease.
    fn learn(&mut self, input: &Input, outcome: &Outcome) {
        let seen = match (input, outcome) {
            (Input::Grant { lease }, Outcome::Ok(_) | Outcome::Indeterminate(_)) => {
                self.lease = Some(*lease);
                None
            }
            (Input::Revoke { .. }, Outcome::Ok(_) | Outcome::Indeterminate(_)) | (Input::Put { .. }, Outcome::Ok(Output::NoLease)) => {
                self.lease = None;
                None
            }
            (Input::Get { key }, Outcome::Ok(Output::Value(v))) => Some((key, v.clone())),
            (Input::Put { key, value, .. } | Input::Cas { key, value, .. }, Outcome::Ok(Output::Done | Output::Swapped(true))) => {
                Some((key, Some(value.clone())))
            }
            (Input::Delete { key }, Outcome::Ok(_)) => Some((key, None)),
            _ => None,
        };
        if let Some((key, value)) = seen.filter(|(key, _)| self.keys.contains(key)) {
            self.seen.insert(key.clone(), value);
        }
    }
}

/// Runs one op against the store and classifies the answer.
async fn execute(channel: Channel, input: &Input, lease_ttl: i64) -> Outcome {
    let mut kv = KvClient::new(channel.clone());
    let mut leases = LeaseClient::new(channel);
    let answer = match input {
        Input::Put { key, value, lease } => {
            let req = PutRequest { key: key.clone().into(), value: value.clone().into(), lease: lease.unwrap_or(0), ..Default::default() };
            match kv.put(req).await {
                Err(s) if lease.is_some() && s.code() == Code::NotFound => Ok(Output::NoLease),
                r => r.map(|_| Output::Done),
            }
        }
        Input::Get { key } => {
            let req = RangeRequest { key: key.clone().into(), ..Default::default() };
            kv.range(req).await.map(|r| Output::Value(r.into_inner().kvs.first().map(|kv| String::from_utf8_lossy(&kv.value).into_owned())))
        }
        Input::Cas { key, expected, value } => {
            let (target, target_union) = match expected {
                Some(v) => (CompareTarget::Value, TargetUnion::Value(v.clone().into())),
                None => (CompareTarget::Create, TargetUnion::CreateRevision(0)),
            };
            let compare = Compare {
                result: CompareResult::Equal as i32,
                target: target as i32,
                key: key.clone().into(),
                target_union: Some(target_union),
                range_end: vec![],
            };
            let put = PutRequest { key: key.clone().into(), value: value.clone().into(), ..Default::default() };
            let req = TxnRequest {
                compare: vec![compare],
                success: vec![RequestOp { request: Some(Request::RequestPut(put)) }],
                failure: vec![],
            };
            kv.txn(req).await.map(|r| Output::Swapped(r.into_inner().succeeded))
        }
        Input::Delete { key } => {
            let req = DeleteRangeRequest { key: key.clone().into(), ..Default::default() };
            kv.delete_range(req).await.map(|r| Output::Deleted(r.into_inner().deleted > 0))
        }
        Input::Grant { lease } => match leases.lease_grant(LeaseGrantRequest { ttl: lease_ttl, id: *lease }).await {
            Err(s) if s.code() == Code::FailedPrecondition => Ok(Output::Granted(false)),
            r => r.map(|_| Output::Granted(true)),
        },
        Input::Revoke { lease } => match leases.lease_revoke(LeaseRevokeRequest { id: *lease }).await {
            Err(s) if s.code() == Code::NotFound => Ok(Output::Revoked(false)),
            r => r.map(|_| Output::Revoked(true)),
        },
    };
    match answer {
        Ok(output) => Outcome::Ok(output),
        Err(status) => classify(&status),
    }
}

/// An error is definite (the op took no effect) only when the store refused the request
/// as such, or when the connection was refused before anything was sent; anything else
/// (unavailable, timeout, a connection lost mid-call) may have taken effect.
fn classify(status: &tonic::Status) -> Outcome {
    let text = format!("{:?}: {}", status.code(), status.message());
    let refused_by_store =
        matches!(status.code(), Code::InvalidArgument | Code::NotFound | Code::FailedPrecondition | Code::OutOfRange | Code::Unimplemented);
    if refused_by_store || connection_refused(status) {
        Outcome::Failed(text)
    } else {
        Outcome::Indeterminate(text)
    }
}

fn connection_refused(status: &tonic::Status) -> bool {
    let mut source = std::error::Error::source(status);
    while let Some(e) = source {
        if e.downcast_ref::<std::io::Error>().is_some_and(|io| io.kind() == std::io::ErrorKind::ConnectionRefused) {
            return true;
        }
        source = e.source();
    }
    false
}

/// A small deterministic random generator (xorshift64) for workloads that must be
/// reproducible from a seed.
pub struct Xorshift(u64);

impl Xorshift {
    pub fn new(seed: u64) -> Self {
        // Zero is xorshift's fixed point.
        Self(seed | 1)
    }

    /// A number in `0..n` (`n` > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}
