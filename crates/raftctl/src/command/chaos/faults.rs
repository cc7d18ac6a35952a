//! The faults a chaos round injects, each done and undone here: kill -9 of the primary
//! node, kill -9 of its postmaster, SIGSTOP of its agent, symmetric and one-way
//! partitions of the primary (both directions; the inbound one first makes the
//! primary's node the Raft leader), netem (delay and loss, or loss alone without netem) on
//! every link, a replica's disk filling up, and every node killed and restarted at once.

use std::time::{Duration, Instant};

use clap::ValueEnum;

use raftgres_proto::etcdserverpb::maintenance_client::MaintenanceClient;
use raftgres_proto::etcdserverpb::{MoveLeaderRequest, StatusRequest};

use super::disk;
use super::workload::Workload;
use crate::client::{connect_one, status_error};
use crate::command::lab::{control, netns, process, Lab};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, ValueEnum)]
pub enum Fault {
    /// kill -9 of the primary's node (agent, store and PostgreSQL); started again later.
    Kill,
    /// kill -9 of the primary's postmaster only.
    Postmaster,
    /// SIGSTOP of the primary's agent for the hold time, then SIGCONT.
    Pause,
    /// The primary cut off from the other nodes for the hold time.
    Partition,
    /// The primary cannot send to the other nodes (they can send to it).
    PartitionOneway,
    /// The primary receives nothing from the other nodes (it can still send to them):
    /// a Raft leader there keeps sending heartbeats it never hears answered.
    PartitionInbound,
    /// netem on every node's link for the hold time.
    Netem,
    /// A replica's disk full for the hold time.
    Diskfull,
    /// Every node killed at once, then started again.
    RestartAll,
}

/// Every fault, in the order a run goes through them.
pub const ALL: [Fault; 9] = [
    Fault::Kill,
    Fault::Postmaster,
    Fault::Pause,
    Fault::Partition,
    Fault::PartitionOneway,
    Fault::PartitionInbound,
    Fault::Netem,
    Fault::Diskfull,
    Fault::RestartAll,
];

/// How long a killed primary stays down at most while we wait for a new one.
const KILLED_FOR_AT_MOST: Duration = Duration::from_secs(20);

impl Fault {
    pub fn name(self) -> &'static str {
        match self {
            Fault::Kill => "kill",
            Fault::Postmaster => "postmaster",
            Fault::Pause => "pause",
            Fault::Partition => "partition",
            Fault::PartitionOneway => "partition-oneway",
            Fault::PartitionInbound => "partition-inbound",
            Fault::Netem => "netem",
            Fault::Diskfull => "diskfull",
            Fault::RestartAll => "restart-all",
        }
    }
}

/// What a fault needs: the lab, how long to hold a fault, the netem spec, and the
/// workload (a killed primary stays down until another node took a write).
pub struct Bench<'a> {
    pub lab: &'a Lab,
    pub hold: Duration,
    pub netem: &'a str,
    pub workload: &'a Workload,
    pub t0: Instant,
}

/// What a fault needs done first: the inbound partition hits hardest when the
/// primary's node also leads Raft (its heartbeats still arrive, no answer comes
/// back), so Raft leadership is moved there (etcd's MoveLeader).
pub async fn prepare(lab: &Lab, fault: Fault, primary: usize) -> anyhow::Result<()> {
    if fault != Fault::PartitionInbound {
        return Ok(());
    }
    let channel = connect_one(&lab.nodes[primary].client_addr(), &lab.security()?).await?;
    let mut maintenance = MaintenanceClient::new(channel);
    let status = maintenance.status(StatusRequest {}).await.map_err(status_error)?.into_inner();
    let id = status.header.map_or(0, |h| h.member_id);
    if status.leader != id {
        maintenance.move_leader(MoveLeaderRequest { target_id: id }).await.map_err(status_error)?;
    }
    Ok(())
}

/// Injects `fault` against `primary` (or `replica`, for a full disk), holds it, and
/// undoes it. Returns when the fault hit, relative to the run's start, and a few words
/// about what was done.
pub fn inject(bench: &Bench, fault: Fault, primary: usize, replica: usize) -> anyhow::Result<(Duration, String)> {
    let lab = bench.lab;
    let (p, r) = (&lab.nodes[primary], &lab.nodes[replica]);
    let at = bench.t0.elapsed();
    let what = match fault {
        Fault::Kill => {
            control::kill(p)?;
            let deadline = Instant::now() + KILLED_FOR_AT_MOST;
            while Instant::now() < deadline && !bench.workload.any(|a| a.node != primary && a.acked > at) {
                std::thread::sleep(Duration::from_millis(100));
            }
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
            std::thread::sleep(bench.hold);
            control::pause(p, false)?;
            format!("{}'s agent stopped for {:.1} s", p.name, bench.hold.as_secs_f64())
        }
        Fault::Partition | Fault::PartitionOneway => {
            let oneway = fault == Fault::PartitionOneway;
            netns::isolate(lab, &p.name, None, oneway)?;
            std::thread::sleep(bench.hold);
            netns::heal_nodes(lab, None)?;
            let how = if oneway { "could not send to" } else { "was cut off from" };
            format!("{} {how} the others for {:.1} s", p.name, bench.hold.as_secs_f64())
        }
        Fault::PartitionInbound => {
            for other in lab.nodes.iter().filter(|n| n.name != p.name) {
                netns::isolate(lab, &other.name, Some(&p.name), true)?;
            }
            std::thread::sleep(bench.hold);
            netns::heal_nodes(lab, None)?;
            format!("{} could not receive from the others for {:.1} s", p.name, bench.hold.as_secs_f64())
        }
        Fault::Netem => {
            // The script says what it applied (loss alone on a kernel without netem).
            let mut applied = String::new();
            for n in &lab.nodes {
                applied = netns::apply_netem(lab, &n.name, bench.netem)?;
            }
            std::thread::sleep(bench.hold);
            for n in &lab.nodes {
                netns::clear_netem(lab, &n.name)?;
            }
            let applied = applied.split_once(": ").map_or(applied.as_str(), |(_, a)| a).to_string();
            format!("{applied} on every link for {:.1} s", bench.hold.as_secs_f64())
        }
        Fault::Diskfull => {
            let filler = disk::fill(r)?;
            std::thread::sleep(bench.hold);
            disk::free(&filler)?;
            format!("{}'s disk full for {:.1} s", r.name, bench.hold.as_secs_f64())
        }
        Fault::RestartAll => {
            for n in &lab.nodes {
                control::kill(n)?;
            }
            std::thread::sleep(Duration::from_secs(1));
            for n in &lab.nodes {
                control::start(lab, n)?;
            }
            "every node killed and started again".to_string()
        }
    };
    Ok((at, what))
}
