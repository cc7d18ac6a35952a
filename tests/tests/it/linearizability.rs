//! Linearizability of the etcd KV and lease API under faults: the client workload of
//! [`raftgres_linearizability`] (5 clients, a bounded random mix of put, linearizable
//! get, CAS, delete and lease grant / put-with-lease / revoke, each op with a 2 s
//! deadline) runs while the test kills, pauses or partitions the Raft leader; the
//! recorded history is then checked by that crate's checker. A violation (or an
//! inconclusive check) fails the test and saves the history as JSON under
//! `target/linearizability/`.
//!
//! Faults: kill -9 of the leader then restart; SIGSTOP of the leader for longer than
//! the election timeout then SIGCONT; and, as root, a real network partition of the
//! leader in a network-namespace lab ([`Lab::up_netns`], which also runs PostgreSQL
//! under the agents) while clients still reach it. That last one takes the lab's start
//! (~100 s on two cores, PostgreSQL included, plus any wait for another netns lab's
//! lock) and ~15 s of workload; the loopback ones take 3-16 s each.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use raftgres_linearizability::{check, save_history, CheckError, Config, Input, Limits, Operation, Outcome, Output, Workload};
use raftgres_tests::client::Client;
use raftgres_tests::lab::Lab;
use raftgres_tests::{eventually, Cluster};

/// Starts the workload (5 clients, `/lin/` keys) over one channel per endpoint.
async fn start_workload(endpoints: &[String]) -> anyhow::Result<Workload> {
    let mut channels = Vec::new();
    for ep in endpoints {
        channels.push(Client::connect(ep).await?.channel);
    }
    Workload::start(channels, &Config::default())
}

/// `target/linearizability/`, next to the test binaries (`target/debug/deps/<test>`).
fn history_dir() -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe().context("locating the test binary")?;
    let target = exe.ancestors().nth(3).context("the test binary is not under target/<profile>/deps")?;
    Ok(target.join("linearizability"))
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
        let saved = history_dir()
            .and_then(|dir| save_history(&dir, name, ops))
            .map_or_else(|e| format!("(not saved: {e:#})"), |p| p.display().to_string());
        anyhow::bail!("{e}\nthe whole history: {saved}");
    }
    anyhow::ensure!(ok >= min_ok && reads > 0, "only {ok} ops succeeded ({reads} reads of a value): too few to mean anything");
    let revoked = ops.iter().filter(|op| op.outcome == Outcome::Ok(Output::Revoked(true))).count();
    let leased =
        ops.iter().filter(|op| matches!(op.input, Input::Put { lease: Some(_), .. }) && op.outcome == Outcome::Ok(Output::Done)).count();
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
    let workload = start_workload(&endpoints).await?;
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
    let workload = start_workload(&cluster.endpoints()).await?;
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
    let writes: Vec<(&Operation, String, String)> = ops.iter().filter_map(|op| wrote(op).map(|(k, v)| (op, k, v))).collect();
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
