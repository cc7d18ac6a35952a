//! The faults a chaos round injects, each done and undone here: kill -9 of the primary
//! node, kill -9 of its postmaster, SIGSTOP of its agent, symmetric and one-way
//! partitions of the primary (both directions; the inbound one first makes the
//! primary's node the Raft leader), netem (delay and loss, or loss alone without netem) on
//! every link, a replica's disk filling up, every node killed and restarted at once,
//! the primary cut off from the Raft leader only (`bridge`), the primary and a replica
//! each cut off from everyone (`isolate-two`), its process group or its PostgreSQL
//! frozen (`group-stop`, `pg-hang`, with [`freeze`](super::freeze)). The kinds that
//! go through `/config` are in [`reconfigure`](super::reconfigure), the double
//! failover and the switchover onto a stalled PostgreSQL in
//! [`handover`](super::handover).

use std::time::{Duration, Instant};

use raftgres_proto::etcdserverpb::maintenance_client::MaintenanceClient;
use raftgres_proto::etcdserverpb::{MoveLeaderRequest, StatusRequest};

use super::bench::Bench;
use super::expect::Evidence;
use super::freeze::Frozen;
use super::kinds::Fault;
use super::{disk, handover, reconfigure};
use raftgres_client::{connect_one, status_error};
use raftgres_lab::{control, netns, process, Lab};

/// How long a hung PostgreSQL stays frozen at least: the agent finds it after the
/// liveness probe's timeout × max_failures (6 s with the defaults), so a shorter hang
/// is, rightly, ridden out.
const PG_HANG_AT_LEAST: Duration = Duration::from_secs(15);

/// What an injection did: when the fault hit and when it was undone (since the run
/// started), a few words about it, and what its expectation needs to know.
pub struct Injected {
    pub at: Duration,
    pub undone: Duration,
    pub what: String,
    pub evidence: Evidence,
}

/// How long Raft leadership may take to move where a fault needs it.
const MOVE_LEADER_WAIT: Duration = Duration::from_secs(5);

/// (this member's id, the leader it knows) from node `i`'s status.
async fn raft_status(lab: &Lab, i: usize) -> anyhow::Result<(u64, u64)> {
    let channel = connect_one(&lab.nodes[i].client_addr(), &lab.security()?).await?;
    let status = MaintenanceClient::new(channel).status(StatusRequest {}).await.map_err(status_error)?.into_inner();
    Ok((status.header.map_or(0, |h| h.member_id), status.leader))
}

/// The node index of the Raft leader, as node `asked` knows it.
async fn raft_leader(lab: &Lab, asked: usize) -> anyhow::Result<usize> {
    let (_, leader) = raft_status(lab, asked).await?;
    for i in 0..lab.nodes.len() {
        if raft_status(lab, i).await?.0 == leader {
            return Ok(i);
        }
    }
    anyhow::bail!("{} knows no Raft leader among the lab's nodes", lab.nodes[asked].name)
}

/// Makes node `target` the Raft leader (etcd's MoveLeader, sent to it) and waits until
/// it is.
async fn lead_raft(lab: &Lab, target: usize) -> anyhow::Result<()> {
    let (id, leader) = raft_status(lab, target).await?;
    if leader == id {
        return Ok(());
    }
    let channel = connect_one(&lab.nodes[target].client_addr(), &lab.security()?).await?;
    MaintenanceClient::new(channel).move_leader(MoveLeaderRequest { target_id: id }).await.map_err(status_error)?;
    let deadline = Instant::now() + MOVE_LEADER_WAIT;
    while raft_leader(lab, target).await? != target {
        anyhow::ensure!(
            Instant::now() < deadline,
            "Raft leadership did not move to {} within {} s",
            lab.nodes[target].name,
            MOVE_LEADER_WAIT.as_secs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(())
}

/// What a fault needs done first, so that it hits where it hurts most: the inbound
/// partition when the primary's node also leads Raft (its heartbeats still arrive, no
/// answer comes back), the bridge when it does not (the primary must be cut off from
/// another node's leader). Raft leadership is moved with etcd's MoveLeader.
pub async fn prepare(lab: &Lab, fault: Fault, primary: usize) -> anyhow::Result<()> {
    match fault {
        Fault::PartitionInbound => lead_raft(lab, primary).await,
        Fault::Bridge => {
            if raft_leader(lab, primary).await? == primary {
                lead_raft(lab, (primary + 1) % lab.nodes.len()).await?;
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

/// Injects `fault` against `primary` (or `replica`, for a full disk and the second
/// node cut off), holds it, and undoes it.
pub async fn inject(bench: &Bench<'_>, fault: Fault, primary: usize, replica: usize) -> anyhow::Result<Injected> {
    let lab = bench.lab;
    let (p, r) = (&lab.nodes[primary], &lab.nodes[replica]);
    let held = bench.hold.as_secs_f64();
    let mut at = bench.t0.elapsed();
    // When the undo began, where a check needs it exact (the heal takes effect while
    // the script still runs); otherwise when the injection returned.
    let mut undone = None;
    let mut evidence = Evidence::None;
    let what = match fault {
        Fault::Kill => {
            control::kill(p)?;
            bench.other_writer(primary, at).await;
            control::start(lab, p)?;
            format!("{} killed, started again", p.name)
        }
        Fault::Postmaster => {
            let pm = process::postmaster(p).ok_or_else(|| anyhow::anyhow!("{} has no postmaster to kill", p.name))?;
            process::signal(pm.pid, "KILL")?;
            format!("{}'s postmaster {} killed", p.name, pm.pid)
        }
        Fault::Pause => {
            control::pause(p, true)?;
            tokio::time::sleep(bench.hold).await;
            control::pause(p, false)?;
            format!("{}'s agent stopped for {held:.1} s", p.name)
        }
        Fault::Partition | Fault::PartitionOneway => {
            let oneway = fault == Fault::PartitionOneway;
            netns::isolate(lab, &p.name, None, oneway, None)?;
            tokio::time::sleep(bench.hold).await;
            netns::heal_nodes(lab, None)?;
            let how = if oneway { "could not send to" } else { "was cut off from" };
            format!("{} {how} the others for {held:.1} s", p.name)
        }
        Fault::PartitionInbound => {
            for other in lab.nodes.iter().filter(|n| n.name != p.name) {
                netns::isolate(lab, &other.name, Some(&p.name), true, None)?;
            }
            tokio::time::sleep(bench.hold).await;
            netns::heal_nodes(lab, None)?;
            format!("{} could not receive from the others for {held:.1} s", p.name)
        }
        Fault::Netem => {
            // The script says what it applied (loss alone on a kernel without netem).
            let mut applied = String::new();
            for n in &lab.nodes {
                applied = netns::apply_netem(lab, &n.name, bench.netem)?;
            }
            tokio::time::sleep(bench.hold).await;
            for n in &lab.nodes {
                netns::clear_netem(lab, &n.name)?;
            }
            let applied = applied.split_once(": ").map_or(applied.as_str(), |(_, a)| a).to_string();
            format!("{applied} on every link for {held:.1} s")
        }
        Fault::Diskfull => {
            let filler = disk::fill(r)?;
            tokio::time::sleep(bench.hold).await;
            disk::free(&filler)?;
            format!("{}'s disk full for {held:.1} s", r.name)
        }
        Fault::RestartAll => {
            for n in &lab.nodes {
                control::kill(n)?;
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
            for n in &lab.nodes {
                control::start(lab, n)?;
            }
            "every node killed and started again".to_string()
        }
        Fault::GroupStop => {
            let frozen = Frozen::group(p)?;
            tokio::time::sleep(bench.hold).await;
            drop(frozen);
            format!("{}'s process group stopped for {held:.1} s", p.name)
        }
        Fault::PgHang => {
            let frozen = Frozen::postgres(p, false)?;
            let count = frozen.count();
            let hung_for = bench.hold.max(PG_HANG_AT_LEAST);
            tokio::time::sleep(hung_for).await;
            drop(frozen);
            format!("{}'s postmaster and {} children stopped for {:.1} s", p.name, count.saturating_sub(1), hung_for.as_secs_f64())
        }
        Fault::Bridge => {
            let leader = raft_leader(lab, replica).await?;
            anyhow::ensure!(leader != primary, "the Raft leader is still the primary's node {}", p.name);
            let l = &lab.nodes[leader];
            netns::isolate(lab, &p.name, Some(&l.name), false, None)?;
            tokio::time::sleep(bench.hold).await;
            netns::heal_nodes(lab, None)?;
            format!("{} cut off from the Raft leader {} only for {held:.1} s", p.name, l.name)
        }
        Fault::IsolateTwo => {
            netns::isolate(lab, &p.name, None, false, None)?;
            netns::isolate(lab, &r.name, None, false, None)?;
            // The write deadline counts from when both were cut off.
            at = bench.t0.elapsed();
            tokio::time::sleep(bench.hold).await;
            undone = Some(bench.t0.elapsed());
            netns::heal_nodes(lab, None)?;
            format!("{} and {} each cut off from everyone for {held:.1} s", p.name, r.name)
        }
        Fault::Failsafe => {
            // The fault starts with the cut, once failsafe mode is on.
            let (cut, what) = reconfigure::failsafe(bench, replica).await?;
            (at, undone) = (cut.start, Some(cut.end));
            what
        }
        Fault::TtlChange => {
            let (what, kept) = reconfigure::ttl_change(bench, primary).await?;
            evidence = Evidence::PostmasterKept(kept);
            what
        }
        Fault::DoubleFailover => {
            let (what, kill) = handover::double_failover(bench, primary, at).await?;
            evidence = kill;
            what
        }
        Fault::PgStall => {
            let (what, outcome) = handover::pg_stall(bench, primary).await?;
            evidence = outcome;
            what
        }
    };
    let undone = undone.unwrap_or_else(|| bench.t0.elapsed());
    Ok(Injected { at, undone, what, evidence })
}
