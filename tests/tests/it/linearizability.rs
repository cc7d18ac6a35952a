//! Linearizability of the etcd KV and lease API under faults: several concurrent
//! clients run a bounded random mix of put, linearizable get, CAS (a Txn on the value
//! or on `create_revision == 0`), delete, and lease grant / put-with-lease / revoke on a
//! few keys, each op with a 2 s deadline, while the test kills, pauses or partitions the
//! Raft leader. Every op is recorded with its invoke and return times and checked with
//! [`raftgres_tests::linearizability`]; a violation (or an inconclusive check) fails the
//! test and saves the history as JSON under `target/linearizability/`.
//!
//! Clients: even-numbered ones stick to one node (so a paused or partitioned old leader
//! keeps getting requests the moment it comes back), odd-numbered ones move to the next
//! node after an error, as etcd's client balancer does. Leases get a TTL far beyond the
//! test's length so they never expire (expiry is not in the model); they end by revoke.
//!
//! Faults: kill -9 of the leader then restart; SIGSTOP of the leader for longer than
//! the election timeout then SIGCONT; and, as root, a real network partition of the
//! leader in a network-namespace lab ([`Lab::up_netns`], which also runs PostgreSQL
//! under the agents) while clients still reach it. That last one takes the lab's start
//! (~100 s on two cores, PostgreSQL included, plus any wait for another netns lab's
//! lock) and ~15 s of workload; the loopback ones take 3-16 s each.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use raftgres_proto::etcdserverpb::compare::{CompareResult, CompareTarget, TargetUnion};
use raftgres_proto::etcdserverpb::request_op::Request;
use raftgres_proto::etcdserverpb::{
    Compare, DeleteRangeRequest, LeaseGrantRequest, LeaseRevokeRequest, PutRequest, RangeRequest, RequestOp,
    TxnRequest,
};
use raftgres_tests::client::Client;
use raftgres_tests::lab::Lab;
use raftgres_tests::linearizability::{
    check, save_history, CheckError, History, Input, Limits, Operation, Outcome, Output, Xorshift,
};
use raftgres_tests::{eventually, Cluster};
use tonic::Code;

const CLIENTS: usize = 5;
/// Each op's deadline: past it the op is indeterminate.
const OP_DEADLINE: Duration = Duration::from_secs(2);
/// A client stops after this many ops whatever happens.
const MAX_OPS_PER_CLIENT: u64 = 3_000;
/// Pause between a client's ops (two cores; keeps histories a few thousand ops long).
const THINK: Duration = Duration::from_millis(5);
const KEYS: [&str; 3] = ["/lin/a", "/lin/b", "/lin/c"];
const LEASE_KEYS: [&str; 2] = ["/lin/lease/a", "/lin/lease/b"];
/// Far longer than any test here: leases end by revoke, never by expiry.
const LEASE_TTL: i64 = 600;

/// Clients running in the background, recording into one history.
struct Workload {
    history: Arc<History>,
    stop: Arc<AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Workload {
    fn start(endpoints: Vec<String>) -> Self {
        let history = Arc::new(History::default());
        let stop = Arc::new(AtomicBool::new(false));
        let tasks = (0..CLIENTS)
            .map(|id| {
                let c = ClientLoop::new(id, endpoints.clone(), history.clone(), stop.clone());
                tokio::spawn(c.run())
            })
            .collect();
        Self { history, stop, tasks }
    }

    /// Stops the clients (each finishes its op in flight, at most [`OP_DEADLINE`]) and
    /// returns the history.
    async fn finish(self) -> anyhow::Result<Vec<Operation>> {
        self.stop.store(true, Ordering::SeqCst);
        for task in self.tasks {
            task.await.context("a client task panicked")?;
        }
        Ok(self.history.operations())
    }
}

/// One client's loop and the little it remembers (what it last saw, its lease).
struct ClientLoop {
    id: usize,
    endpoints: Vec<String>,
    node: usize,
    history: Arc<History>,
    stop: Arc<AtomicBool>,
    rng: Xorshift,
    lease: Option<i64>,
    seen: HashMap<&'static str, Option<String>>,
}

impl ClientLoop {
    fn new(id: usize, endpoints: Vec<String>, history: Arc<History>, stop: Arc<AtomicBool>) -> Self {
        let node = id % endpoints.len();
        let rng = Xorshift::new(0x9e37_79b9_7f4a_7c15 ^ id as u64);
        Self { id, endpoints, node, history, stop, rng, lease: None, seen: HashMap::new() }
    }

    /// Sticky clients stay on their node through errors; the others move on.
    fn sticky(&self) -> bool {
        self.id.is_multiple_of(2)
    }

    fn below(&mut self, n: usize) -> usize {
        self.rng.below(n as u64) as usize
    }

    async fn run(mut self) {
        let mut conn: Option<Client> = None;
        for n in 0..MAX_OPS_PER_CLIENT {
            if self.stop.load(Ordering::SeqCst) {
                break;
            }
            tokio::time::sleep(THINK).await;
            let client = match conn.clone() {
                Some(c) => c,
                None => match tokio::time::timeout(OP_DEADLINE, Client::connect(&self.endpoints[self.node])).await {
                    Ok(Ok(c)) => conn.insert(c).clone(),
                    _ => {
                        self.next_node();
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                },
            };
            let input = self.choose(n);
            let call = self.history.now();
            let outcome = match tokio::time::timeout(OP_DEADLINE, execute(&client, &input)).await {
                Ok(outcome) => outcome,
                Err(_) => Outcome::Indeterminate(format!("no answer within {OP_DEADLINE:?}")),
            };
            self.learn(&input, &outcome);
            if !matches!(outcome, Outcome::Ok(_)) {
                conn = None;
                self.next_node();
            }
            self.history.record(self.id, input, call, outcome);
        }
    }

    fn next_node(&mut self) {
        if !self.sticky() {
            self.node = (self.node + 1) % self.endpoints.len();
        }
    }

    /// The `n`th op: a random one of the mix, with a value unique to this client and op.
    fn choose(&mut self, n: u64) -> Input {
        let value = format!("c{}-{n}", self.id);
        let key = KEYS[self.below(KEYS.len())];
        let lease_key = LEASE_KEYS[self.below(LEASE_KEYS.len())];
        let new_lease = (self.id as i64 + 1) * 1_000_000_000 + n as i64;
        match (self.below(100), self.lease) {
            (0..30, _) => Input::Get { key: key.into() },
            (30..50, _) => Input::Put { key: key.into(), value, lease: None },
            (50..65, _) => Input::Cas { key: key.into(), expected: self.seen.get(key).cloned().flatten(), value },
            (65..70, _) => Input::Delete { key: key.into() },
            (70..80, _) => Input::Get { key: lease_key.into() },
            (80..93, Some(lease)) => Input::Put { key: lease_key.into(), value, lease: Some(lease) },
            (93.., Some(lease)) => Input::Revoke { lease },
            (_, None) => Input::Grant { lease: new_lease },
        }
    }

    /// Remembers what an answer says about the keys and this client's lease.
    fn learn(&mut self, input: &Input, outcome: &Outcome) {
        let key = |k: &str| KEYS.into_iter().find(|&known| known == k);
        match (input, outcome) {
            (Input::Grant { lease }, Outcome::Ok(_) | Outcome::Indeterminate(_)) => self.lease = Some(*lease),
            (Input::Revoke { .. }, Outcome::Ok(_) | Outcome::Indeterminate(_)) => self.lease = None,
            (Input::Put { .. }, Outcome::Ok(Output::NoLease)) => self.lease = None,
            (Input::Get { key: k }, Outcome::Ok(Output::Value(v))) => {
                if let Some(k) = key(k) {
                    self.seen.insert(k, v.clone());
                }
            }
            (
                Input::Put { key: k, value, .. } | Input::Cas { key: k, value, .. },
                Outcome::Ok(Output::Done | Output::Swapped(true)),
            ) => {
                if let Some(k) = key(k) {
                    self.seen.insert(k, Some(value.clone()));
                }
            }
            (Input::Delete { key: k }, Outcome::Ok(_)) => {
                if let Some(k) = key(k) {
                    self.seen.insert(k, None);
                }
            }
            _ => {}
        }
    }
}

/// Runs one op against the store and classifies the answer.
async fn execute(c: &Client, input: &Input) -> Outcome {
    let answer = match input {
        Input::Put { key, value, lease } => {
            let req = PutRequest {
                key: key.clone().into(),
                value: value.clone().into(),
                lease: lease.unwrap_or(0),
                ..Default::default()
            };
            match c.kv().put(req).await {
                Err(s) if lease.is_some() && s.code() == Code::NotFound => Ok(Output::NoLease),
                r => r.map(|_| Output::Done),
            }
        }
        Input::Get { key } => {
            let req = RangeRequest { key: key.clone().into(), ..Default::default() };
            c.kv().range(req).await.map(|r| {
                Output::Value(r.into_inner().kvs.first().map(|kv| String::from_utf8_lossy(&kv.value).into_owned()))
            })
        }
        Input::Cas { key, expected, value } => {
            let compare = match expected {
                Some(v) => Compare {
                    result: CompareResult::Equal as i32,
                    target: CompareTarget::Value as i32,
                    key: key.clone().into(),
                    target_union: Some(TargetUnion::Value(v.clone().into())),
                    range_end: vec![],
                },
                None => Compare {
                    result: CompareResult::Equal as i32,
                    target: CompareTarget::Create as i32,
                    key: key.clone().into(),
                    target_union: Some(TargetUnion::CreateRevision(0)),
                    range_end: vec![],
                },
            };
            let put = PutRequest { key: key.clone().into(), value: value.clone().into(), ..Default::default() };
            let req = TxnRequest {
                compare: vec![compare],
                success: vec![RequestOp { request: Some(Request::RequestPut(put)) }],
                failure: vec![],
            };
            c.kv().txn(req).await.map(|r| Output::Swapped(r.into_inner().succeeded))
        }
        Input::Delete { key } => {
            let req = DeleteRangeRequest { key: key.clone().into(), ..Default::default() };
            c.kv().delete_range(req).await.map(|r| Output::Deleted(r.into_inner().deleted > 0))
        }
        Input::Grant { lease } => match c.lease().lease_grant(LeaseGrantRequest { ttl: LEASE_TTL, id: *lease }).await {
            Err(s) if s.code() == Code::FailedPrecondition => Ok(Output::Granted(false)),
            r => r.map(|_| Output::Granted(true)),
        },
        Input::Revoke { lease } => match c.lease().lease_revoke(LeaseRevokeRequest { id: *lease }).await {
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
    let refused_by_store = matches!(
        status.code(),
        Code::InvalidArgument | Code::NotFound | Code::FailedPrecondition | Code::OutOfRange | Code::Unimplemented
    );
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

/// The index of the endpoint whose node is the Raft leader, once a majority of all
/// nodes name it.
async fn raft_leader(endpoints: &[String]) -> anyhow::Result<usize> {
    eventually(Duration::from_secs(20), "a Raft leader", || async {
        // (member id, the leader it sees) per endpoint; None when it does not answer.
        let mut views = Vec::new();
        for ep in endpoints {
            let status = async { Client::connect(ep).await?.status().await };
            let status = tokio::time::timeout(Duration::from_secs(1), status);
            views.push(match status.await {
                Ok(Ok(s)) => Some((s.header.map_or(0, |h| h.member_id), s.leader)),
                _ => None,
            });
        }
        let leader = views.iter().position(|v| v.is_some_and(|(id, leader)| id != 0 && id == leader));
        let leader = leader.ok_or_else(|| anyhow::anyhow!("no node says it is the leader: {views:x?}"))?;
        let id = views[leader].map_or(0, |v| v.0);
        let agree = views.iter().filter(|v| v.is_some_and(|v| v.1 == id)).count();
        anyhow::ensure!(agree * 2 > endpoints.len(), "only {agree} nodes follow the leader: {views:x?}");
        Ok(leader)
    })
    .await
}

/// Checks the history; on a violation or an inconclusive check, saves it and fails
/// with the checker's rendering. Also fails when too few ops succeeded to mean anything.
fn verify(name: &str, ops: &[Operation], min_ok: usize) -> anyhow::Result<()> {
    let ok = ops.iter().filter(|op| matches!(op.outcome, Outcome::Ok(_))).count();
    let reads = ops.iter().filter(|op| matches!(op.outcome, Outcome::Ok(Output::Value(Some(_))))).count();
    let failed = ops.iter().filter(|op| matches!(op.outcome, Outcome::Failed(_))).count();
    let started = std::time::Instant::now();
    let verdict = check(ops, Limits::default());
    eprintln!(
        "{name}: {} ops ({ok} ok, {reads} reads of a value, {failed} failed), checked in {:?}: {:?}",
        ops.len(),
        started.elapsed(),
        verdict.as_ref().map_err(|_| "see below")
    );
    if let Err(e) = verdict {
        let saved = save_history(name, ops).map_or_else(|e| format!("(not saved: {e:#})"), |p| p.display().to_string());
        anyhow::bail!("{e}\nthe whole history: {saved}");
    }
    anyhow::ensure!(
        ok >= min_ok && reads > 0,
        "only {ok} ops succeeded ({reads} reads of a value): too few to mean anything"
    );
    let revoked = ops.iter().filter(|op| op.outcome == Outcome::Ok(Output::Revoked(true))).count();
    let leased = ops
        .iter()
        .filter(|op| matches!(op.input, Input::Put { lease: Some(_), .. }) && op.outcome == Outcome::Ok(Output::Done))
        .count();
    anyhow::ensure!(revoked > 0 && leased > 0, "no lease was exercised: {leased} puts with a lease, {revoked} revokes");
    Ok(())
}

/// Sends `signal` (e.g. `STOP`) to a process.
fn signal(pid: u32, signal: &str) -> anyhow::Result<()> {
    let status = std::process::Command::new("kill").arg(format!("-{signal}")).arg(pid.to_string()).status()?;
    anyhow::ensure!(status.success(), "kill -{signal} {pid} failed");
    Ok(())
}

/// Where the nodes run.
enum Nodes {
    /// Three `raftgres` store processes on loopback.
    Loopback(Cluster),
    /// A whole lab (agents, PostgreSQL), each node in its own network namespace.
    Netns(Lab),
}

impl Nodes {
    fn endpoints(&self) -> Vec<String> {
        match self {
            Nodes::Loopback(c) => c.endpoints(),
            Nodes::Netns(lab) => lab.endpoints(),
        }
    }

    fn logs(&self) -> String {
        match self {
            Nodes::Loopback(c) => c.logs(),
            Nodes::Netns(lab) => lab.logs(),
        }
    }
}

/// What happens to the Raft leader in a round.
#[derive(Clone, Copy, Debug)]
enum Fault {
    /// kill -9, restarted 1.5 s later.
    KillNine,
    /// SIGSTOP for 2.5 s, well past the election timeout (250-400 ms), then SIGCONT.
    Pause,
    /// Cut off from the other nodes (clients still reach it) for 3 s, then healed.
    Partition,
}

impl Fault {
    async fn inject(self, nodes: &mut Nodes, leader: usize) -> anyhow::Result<()> {
        match (self, nodes) {
            (Fault::KillNine, Nodes::Loopback(cluster)) => {
                cluster.kill(leader);
                tokio::time::sleep(Duration::from_millis(1500)).await;
                cluster.restart(leader)
            }
            (Fault::Pause, Nodes::Loopback(cluster)) => {
                let pid = cluster.nodes[leader].pid().context("the leader is not running")?;
                signal(pid, "STOP")?;
                tokio::time::sleep(Duration::from_millis(2500)).await;
                signal(pid, "CONT")
            }
            (Fault::Partition, Nodes::Netns(lab)) => {
                let cut = lab.partition(leader);
                if cut.is_ok() {
                    tokio::time::sleep(Duration::from_secs(3)).await;
                }
                // Heal whatever happened.
                let healed = lab.heal();
                cut.and(healed)
            }
            (fault, _) => anyhow::bail!("{fault:?} is not available on these nodes"),
        }
    }
}

/// `rounds` of `fault` to the leader of the moment, 2 s apart; how many of them made
/// another node leader.
async fn inject_rounds(nodes: &mut Nodes, endpoints: &[String], fault: Fault, rounds: usize) -> anyhow::Result<usize> {
    let mut elections = 0;
    for _ in 0..rounds {
        tokio::time::sleep(Duration::from_secs(2)).await;
        let hit = raft_leader(endpoints).await?;
        fault.inject(nodes, hit).await?;
        if raft_leader(endpoints).await? != hit {
            elections += 1;
        }
    }
    Ok(elections)
}

/// Runs the workload through `rounds` of `fault` to the leader of the moment, then
/// checks the history.
async fn under_faults(name: &str, mut nodes: Nodes, fault: Fault, rounds: usize) -> anyhow::Result<()> {
    let endpoints = nodes.endpoints();
    raft_leader(&endpoints).await?;
    let workload = Workload::start(endpoints.clone());
    let faults = inject_rounds(&mut nodes, &endpoints, fault, rounds).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let ops = workload.finish().await?;
    let result = faults.and_then(|elections| {
        anyhow::ensure!(elections > 0, "no {fault:?} of the leader made another node leader in {rounds} rounds");
        verify(name, &ops, 200 * rounds)
    });
    if result.is_err() {
        eprintln!("{}", nodes.logs());
    }
    result
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn linearizable_through_leader_kill_nines() -> anyhow::Result<()> {
    under_faults("kill-leader", Nodes::Loopback(Cluster::start(3)?), Fault::KillNine, 3).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn linearizable_through_leader_pauses() -> anyhow::Result<()> {
    under_faults("pause-leader", Nodes::Loopback(Cluster::start(3)?), Fault::Pause, 3).await
}

/// Needs root (network namespaces): without it, it fails saying so, as the other netns
/// tests do.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn linearizable_through_a_partitioned_leader() -> anyhow::Result<()> {
    let started = std::time::Instant::now();
    let lab = tokio::task::spawn_blocking(|| Lab::up_netns(3)).await??;
    eprintln!("the netns lab was up in {:?}", started.elapsed());
    under_faults("partition-leader", Nodes::Netns(lab), Fault::Partition, 2).await
}

/// A real history with one read made stale on purpose must be rejected: the path from
/// recording to verdict can fail.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_history_with_one_stale_read_is_rejected() -> anyhow::Result<()> {
    let cluster = Cluster::start(3)?;
    raft_leader(&cluster.endpoints()).await?;
    let workload = Workload::start(cluster.endpoints());
    tokio::time::sleep(Duration::from_secs(3)).await;
    let mut ops = workload.finish().await?;
    verify("no-faults", &ops, 100)?;
    let (get, stale) = stale_read(&ops).context("no read follows two completed writes of its key")?;
    ops[get].outcome = Outcome::Ok(Output::Value(Some(stale)));
    match check(&ops, Limits::default()) {
        Err(CheckError::Violation(text)) => {
            assert!(text.contains(&format!("#{get} ")), "the rendering shows the corrupted read #{get}:\n{text}");
            Ok(())
        }
        other => anyhow::bail!("the corrupted history passed as {other:?}"),
    }
}

/// A read `g` and a value its key held before a later write completed, both before `g`
/// was invoked: reading that value at `g` is stale. Values are unique, so no later write
/// can bring it back.
fn stale_read(ops: &[Operation]) -> Option<(usize, String)> {
    let wrote = |op: &Operation| match (&op.input, &op.outcome) {
        (Input::Put { key, value, .. }, Outcome::Ok(Output::Done))
        | (Input::Cas { key, value, .. }, Outcome::Ok(Output::Swapped(true))) => Some((key.clone(), value.clone())),
        _ => None,
    };
    let writes: Vec<(&Operation, String, String)> =
        ops.iter().filter_map(|op| wrote(op).map(|(k, v)| (op, k, v))).collect();
    ops.iter().enumerate().rev().find_map(|(g, op)| {
        let (Input::Get { key }, Outcome::Ok(Output::Value(_))) = (&op.input, &op.outcome) else {
            return None;
        };
        let before = |w: &Operation, t: u64| w.ret < t;
        let later = writes.iter().rev().find(|(q, k, _)| k == key && before(q, op.call))?;
        let old = writes.iter().find(|(p, k, _)| k == key && before(p, later.0.call))?;
        Some((g, old.2.clone()))
    })
}
