//! `raftctl chaos`: the fault-injection runner. It makes a three-node lab in network
//! namespaces (each node on a small disk of its own), runs a client workload that
//! writes unique ids through whichever node accepts writes, and goes through rounds of
//! faults. After the run it checks what the clients saw: never two nodes accepting
//! writes at once (by PostgreSQL timelines, see [`verdict`]), no acknowledged write
//! missing on the final primary (none at all with `--sync`; in async mode within
//! `maximum_lag_on_failover`), and the cluster healed to one primary with every replica
//! streaming after every round. It prints a table per fault kind and one summary line,
//! and exits non-zero when a check failed. Alongside, KV clients check that the etcd
//! API stays linearizable through the same faults (see [`kv`]).
//!
//! Each fault kind also has its own expected outcome (a failover, none, no writes
//! past the lease, ...; see [`expect`]), checked per round from the same writes. In
//! synchronous mode every fault waits first until `/sync` names the leader and a
//! standby.
//!
//! One job per file: `faults` (inject and undo), `freeze`, `reconfigure` and
//! `handover` (the faults that stop processes, change `/config`, or fail over twice or
//! switch over), `store` (the cluster's keys and `/config` during faults), `workload`
//! (the writers), `kv` (the KV clients and their check), `disk` (the nodes' small
//! disks), `verdict` and `expect` (the pure checks), `report` (table and summary).

mod bench;
mod disk;
mod expect;
mod faults;
mod freeze;
mod handover;
mod kinds;
mod kv;
mod reconfigure;
mod report;
mod store;
mod verdict;
mod workload;

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::Args;
use raftgres_agent::config::DynamicConfig;
use raftgres_agent::ops;
use serde_json::json;

use crate::command::config::patch_from;
use bench::Bench;
use kinds::Fault;
use raftgres_lab::{control, logs, netns, process, ready, up, DirArg, Lab, Profile};
use report::{Outcome, Round};
use workload::{Psql, Workload};

#[derive(Debug, Args)]
pub struct ChaosArgs {
    /// Rounds of every fault.
    #[arg(long, default_value_t = 1)]
    pub rounds: usize,
    /// The faults, comma separated (default: all of them, in this order).
    #[arg(long, value_enum, value_delimiter = ',', default_values_t = kinds::ALL)]
    pub faults: Vec<Fault>,
    /// Synchronous mode: no acknowledged write may be lost.
    #[arg(long)]
    pub sync: bool,
    /// How long a fault lasts (a stopped agent, a partition, netem, a full disk);
    /// default: 3 × ttl.
    #[arg(long, value_parser = humantime::parse_duration)]
    pub hold: Option<Duration>,
    /// The netem fault's parameters (only the loss applies on a kernel without netem).
    #[arg(long, default_value = "delay 50ms 20ms loss 5%")]
    pub netem: String,
    /// The lab's directory; it must not hold a lab yet.
    #[arg(long, default_value = "/tmp/raftgres-chaos")]
    pub dir: PathBuf,
    /// The network namespaces' prefix (node1 in <prefix>1).
    #[arg(long, default_value = "rgc")]
    pub netns_prefix: String,
    /// Leave the lab running afterwards (stop it with `raftctl lab down --dir DIR`,
    /// then `umount DIR/node*`).
    #[arg(long)]
    pub keep: bool,
    /// KV clients checking the etcd API's linearizability through the faults (0: none).
    #[arg(long, default_value_t = 5)]
    pub kv_clients: usize,
    /// Set a `/config` key for the whole run, as `raftctl edit-config -s` does:
    /// `-s ttl=30 -s loop_wait=10` (values are YAML). Patched through the REST API, so
    /// the agents' timing rules apply.
    #[arg(short = 's', long = "set", value_name = "KEY=VALUE")]
    pub set: Vec<String>,
    /// The lab's HA timing profile (as `raftctl lab up --profile`): `fast` runs every
    /// fault with ttl 1 s; `--set` changes it further.
    #[arg(long, value_enum, default_value_t = Profile::Default)]
    pub profile: Profile,
    /// Failsafe mode on for the whole run (`failsafe_mode: true`, with the longest
    /// retry_timeout that fits the safety margin unless `--set` gives one).
    #[arg(long)]
    pub failsafe: bool,
}

/// Where a run keeps the nodes' logs and its record of writes: `DIR-logs`, next to the
/// lab's directory (which goes with its disks).
fn logs_dir(dir: &std::path::Path) -> PathBuf {
    let mut name = dir.file_name().unwrap_or_default().to_os_string();
    name.push("-logs");
    dir.with_file_name(name)
}

/// Writes acknowledged writes (all of them, or the lost ones) as CSV: id, node,
/// timeline, LSN, sent and acked (ms since the run started).
fn save_writes<'a>(path: &std::path::Path, acks: impl IntoIterator<Item = &'a verdict::Ack>) -> anyhow::Result<()> {
    let mut text = String::from("id,node,timeline,lsn,sent_ms,acked_ms\n");
    for a in acks {
        text += &format!(
            "{},node{},{},{:X}/{:X},{},{}\n",
            a.id,
            a.node + 1,
            a.timeline,
            a.lsn >> 32,
            a.lsn & 0xffff_ffff,
            a.sent.as_millis(),
            a.acked.as_millis()
        );
    }
    std::fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))
}

/// How long the cluster may take to heal after a fault: 90 s, and two ttls more (with
/// Patroni-like timings a failover alone waits out a 30 s lease).
fn heal_timeout(ttl: Duration) -> Duration {
    Duration::from_secs(90) + 2 * ttl
}
/// Writes before each fault, so the fault hits a working cluster.
const BASELINE: Duration = Duration::from_secs(1);

/// Stops the lab and unmounts its disks when the run ends, however it ends.
struct Cleanup {
    lab: Lab,
    keep: bool,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        if self.keep {
            println!("the lab stays up in {} (--keep)", self.lab.dir.display());
            return;
        }
        if let Err(e) = control::down(&self.lab.dir, false) {
            eprintln!("raftctl chaos: stopping the lab: {e:#}");
        }
        let kept = logs_dir(&self.lab.dir);
        for node in &self.lab.nodes {
            let _ = std::fs::copy(node.log_path(), kept.join(format!("{}.log", node.name)));
            let _ = std::fs::copy(node.dir.join("postgresql.log"), kept.join(format!("{}-postgresql.log", node.name)));
        }
        println!("chaos: the nodes' logs (raftgres and PostgreSQL) and the acknowledged writes are in {}", kept.display());
        disk::unmount_all(&self.lab);
        match std::fs::remove_dir_all(&self.lab.dir) {
            Ok(()) => println!("chaos: the lab is gone ({} removed)", self.lab.dir.display()),
            Err(e) => eprintln!("raftctl chaos: cannot remove {}: {e}", self.lab.dir.display()),
        }
    }
}

pub async fn run(args: ChaosArgs) -> anyhow::Result<()> {
    netns::require_root("raftctl chaos")?;
    if args.rounds == 0 || args.faults.is_empty() {
        bail!("nothing to do: give at least one round and one fault");
    }
    let dir = up::absolute(&args.dir)?;
    if Lab::exists(&dir) {
        let d = dir.display();
        bail!("{d} holds a lab already: `raftctl lab down --clean --dir {d}` first, or choose another --dir");
    }
    let up_args = up::UpArgs {
        nodes: 3,
        dir: DirArg { dir: dir.clone() },
        base_port: raftgres_lab::ports::DEFAULT_BASE_PORT,
        timeout: 120,
        pg_bin_dir: None,
        netns: true,
        netns_prefix: args.netns_prefix.clone(),
        haproxy: false,
        tls: false,
        standby_cluster: None,
        passwords_from: None,
        profile: args.profile,
    };
    let kept = logs_dir(&dir);
    std::fs::create_dir_all(&kept).with_context(|| format!("cannot create {}", kept.display()))?;
    let lab = up::create(&up_args, &dir)?;
    let cleanup = Cleanup { lab: lab.clone(), keep: args.keep };
    disk::mount_all(&lab)?;
    up::start(&lab, Duration::from_secs(120)).await?;

    let dynamic = configure(&lab, &args).await?;
    if args.sync {
        store::wait_sync_standby(&lab).await?;
    }
    let hold = args.hold.unwrap_or(Duration::from_secs(3 * dynamic.ttl.max(1)));
    let psql = Psql::new(&lab);
    let first = primary(&lab).await?;
    workload::create_table(&psql, first)?;

    let total = args.rounds * args.faults.len();
    println!(
        "chaos: {total} rounds ({} × {}), {} mode{}, ttl {} s, faults held {:.1} s",
        args.rounds,
        args.faults.iter().map(|f| f.name()).collect::<Vec<_>>().join(","),
        if args.sync { "synchronous" } else { "asynchronous" },
        if dynamic.failsafe_mode { ", failsafe mode" } else { "" },
        dynamic.ttl,
        hold.as_secs_f64()
    );
    let t0 = Instant::now();
    let ttl = Duration::from_secs(dynamic.ttl);
    let limit = (Duration::from_secs(180) + 2 * hold + heal_timeout(ttl)) * total as u32 + Duration::from_secs(60);
    let kv = match args.kv_clients {
        0 => None,
        clients => Some(kv::KvLoad::start(&lab, clients, limit).await?),
    };
    let workload = Workload::start(&psql, t0, limit);
    let bench = Bench { lab: &lab, psql: &psql, hold, netem: &args.netem, workload: &workload, t0, ttl, sync: args.sync };
    let mut rounds: Vec<Round> = Vec::new();
    'run: for _ in 0..args.rounds {
        for &fault in &args.faults {
            let from = rounds.last().map_or(Duration::ZERO, |r| r.to);
            tokio::time::sleep(BASELINE).await;
            if args.sync {
                store::wait_sync_standby(&lab).await.with_context(|| format!("before the {} round", fault.name()))?;
            }
            let old = primary(&lab).await?;
            let replica = (old + 1) % lab.nodes.len();
            faults::prepare(&lab, fault, old).await?;
            let injected = faults::inject(&bench, fault, old, replica).await?;
            let at = injected.at;
            let (healed, restarts) = heal(&lab, heal_timeout(ttl)).await;
            tokio::time::sleep(BASELINE).await;
            let now = primary(&lab).await.ok();
            let acks = workload.acks();
            let to = t0.elapsed();
            let writer = verdict::first_other_writer(&acks, old, at);
            let expect = expect::of(fault);
            let facts = expect::Facts { old, at, undone: injected.undone, to, ttl, evidence: injected.evidence };
            let expected = expect::check(expect, &facts, &acks);
            if expected.is_err() && matches!(expect, expect::Expect::Failover | expect::Expect::SecondFailover) {
                for node in lab.nodes.iter().filter(|n| n.name != lab.nodes[old].name) {
                    println!("{}'s log ends with:\n{}", node.name, logs::tail(&node.log_path(), 12));
                }
            }
            let r = Round {
                fault,
                what: injected.what,
                old,
                writer: writer.map(|(n, _)| n),
                primary_after: now,
                from,
                at,
                to,
                failover: writer.map(|(_, after)| after),
                gap: verdict::longest_gap(&acks, at, to),
                healed,
                restarts,
                expected,
            };
            println!("{}", describe(&lab, rounds.len() + 1, total, &r));
            rounds.push(r);
            if !healed {
                eprintln!("raftctl chaos: the cluster did not heal within {} s: stopping the run", heal_timeout(ttl).as_secs());
                break 'run;
            }
            if let Some(p) = now {
                if let Err(e) = workload::recycle_wal(&psql, p) {
                    println!("raftctl chaos: WAL not recycled after this round: {e:#}");
                }
            }
        }
    }
    let acks = workload.finish();
    save_writes(&kept.join("writes.csv"), &acks)?;
    let last = primary(&lab).await?;
    let present = final_ids(&psql, last)?;
    let split_brain = verdict::split_brain(&acks);
    let lost = verdict::lost(&acks, &present);
    // Each failover loses its own tail of WAL: compare the largest one with the limit.
    let lost_wal = rounds
        .iter()
        .map(|r| verdict::lost_wal_bytes(&lost.iter().copied().filter(|a| r.holds(a.acked)).collect::<Vec<_>>()))
        .max()
        .unwrap_or(0);
    let outcome = Outcome { rounds: &rounds, split_brain: &split_brain, lost: &lost };
    let kv_failure = match kv {
        Some(kv) => kv.finish(&kept).await,
        None => None,
    };
    println!();
    print!("{}", report::table(&outcome));
    println!("{} writes acknowledged; the final primary {} holds {} rows", acks.len(), lab.nodes[last].name, present.len());
    for w in &split_brain {
        println!(
            "split brain: node{} (timeline {}) took a write sent at {:.2} s after node{} (timeline {}) had acknowledged one",
            w.old.0 + 1,
            w.old.1,
            w.at.as_secs_f64(),
            w.new.0 + 1,
            w.new.1
        );
    }
    if !lost.is_empty() {
        let in_rounds = lost.iter().filter(|a| rounds.iter().any(|r| r.holds(a.acked))).count();
        println!(
            "lost: {} acknowledged writes ({in_rounds} acknowledged inside a round's window); the lost writes of one round \
             span at most {lost_wal} bytes of WAL (0 for a single write; maximum_lag_on_failover {})",
            lost.len(),
            dynamic.maximum_lag_on_failover
        );
        let lost_path = kept.join("lost.csv");
        save_writes(&lost_path, lost.iter().copied())?;
        println!("lost: the lost writes are listed in {}", lost_path.display());
    }
    println!("{}", report::summary(&outcome));
    drop(cleanup);
    let mut failures: Vec<String> = kv_failure.into_iter().collect();
    if !split_brain.is_empty() {
        failures.push(format!("{} split-brain windows", split_brain.len()));
    }
    if args.sync && !lost.is_empty() {
        failures.push(format!("{} acknowledged writes lost in synchronous mode", lost.len()));
    }
    if lost_wal > dynamic.maximum_lag_on_failover {
        failures.push(format!("lost {lost_wal} bytes of WAL, more than maximum_lag_on_failover"));
    }
    let unexpected = rounds.iter().filter(|r| r.expected.is_err()).count();
    if unexpected > 0 {
        failures.push(format!("{unexpected} rounds did not end as their fault kind expects"));
    }
    if rounds.len() < total || rounds.iter().any(|r| !r.healed) {
        failures.push("the cluster did not heal after every round".to_string());
    }
    if !failures.is_empty() {
        bail!("{}", failures.join("; "));
    }
    Ok(())
}

/// "round 3/16 partition: node1 was cut off ...; node2 took writes 2.41 s after the
/// fault; primary now node2; ..."
fn describe(lab: &Lab, n: usize, total: usize, r: &Round) -> String {
    let name = |i: usize| lab.nodes[i].name.as_str();
    let took = match (r.writer, r.failover) {
        (Some(w), Some(f)) => format!("{} took writes {:.2} s after the fault", name(w), f.as_secs_f64()),
        _ => format!("no node but {} took writes", name(r.old)),
    };
    let primary = match r.primary_after {
        Some(p) => format!("{took}; primary now {}", name(p)),
        None => format!("{took}; no primary"),
    };
    let health = if r.healed { "healthy again" } else { "NOT healed" };
    let expected = match &r.expected {
        Ok(seen) => format!("as expected ({seen})"),
        Err(why) => format!("UNEXPECTED: {why}"),
    };
    format!(
        "round {n}/{total} {}: {}; {primary}; longest write gap {:.2} s; {health} {:.1} s after the fault; {expected}",
        r.fault.name(),
        r.what,
        r.gap.as_secs_f64(),
        (r.to - r.at).as_secs_f64()
    )
}

/// `/config` for the whole run, patched through the REST API as a user would (the agents
/// refuse a patch that breaks a timing rule, naming it): the `--set` keys and
/// synchronous mode first, then failsafe mode, with the longest retry_timeout that fits
/// the safety margin when the one in force does not (unless `--set` chose it: then the
/// agents' refusal says why). Waits a ttl for the agents to read it; returns it.
async fn configure(lab: &Lab, args: &ChaosArgs) -> anyhow::Result<DynamicConfig> {
    let mut patch = patch_from(&args.set, &[])?;
    if args.sync {
        ops::merge(&mut patch, &json!({ "synchronous_mode": true }));
    }
    if args.failsafe && !args.set.iter().any(|s| s.trim_start().starts_with("retry_timeout=")) {
        // The timings the run will have, before failsafe mode (whose rule they may break).
        let (_, view) = store::view(lab).await.context("reading /config")?;
        let mut planned = view.config.map(|(c, _)| c).unwrap_or_else(|| json!({}));
        ops::merge(&mut planned, &patch);
        ops::merge(&mut planned, &json!({ "failsafe_mode": false }));
        let planned = DynamicConfig::from_json(&planned).with_context(|| format!("/config with {patch}"))?;
        if let Some(retry) = reconfigure::failsafe_retry_timeout(&planned).context("--failsafe")? {
            ops::merge(&mut patch, &json!({ "retry_timeout": retry }));
        }
    }
    if args.failsafe {
        ops::merge(&mut patch, &json!({ "failsafe_mode": true }));
    }
    if patch.as_object().is_some_and(|o| o.is_empty()) {
        return store::current_config(lab).await;
    }
    store::patch_config(lab, &patch).await.context("setting /config for the run")?;
    let dynamic = store::current_config(lab).await?;
    // Every agent reads /config each cycle, and the primary renews its lease with the new ttl.
    tokio::time::sleep(Duration::from_secs(dynamic.ttl.clamp(1, 60)) + Duration::from_millis(500)).await;
    Ok(dynamic)
}

/// The index of the node holding the leader key.
async fn primary(lab: &Lab) -> anyhow::Result<usize> {
    let snapshot = ready::read(lab).await?;
    let leader = snapshot.leader.context("no node holds the leader key")?;
    lab.nodes.iter().position(|n| n.name == leader).with_context(|| format!("the leader {leader} is not a lab node"))
}

/// Starts nodes that exited (as systemd's `Restart=` would) and waits for a primary and
/// streaming replicas. Returns whether that happened in time, and how many nodes were
/// started again.
async fn heal(lab: &Lab, timeout: Duration) -> (bool, usize) {
    let deadline = Instant::now() + timeout;
    let mut restarts = 0;
    for _ in 0..5 {
        for node in lab.nodes.iter().filter(|n| process::agent(n).is_none()) {
            println!("{} had exited; its log ends with:\n{}", node.name, logs::tail(&node.log_path(), 5));
            if process::postmaster(node).is_some() {
                let _ = control::kill(node);
            }
            match control::start(lab, node) {
                Ok(()) => restarts += 1,
                Err(e) => eprintln!("raftctl chaos: {e:#}"),
            }
        }
        let left = deadline.saturating_duration_since(Instant::now());
        match ready_after_stale_keys(lab, left).await {
            Ok(()) => return (true, restarts),
            Err(e) if Instant::now() >= deadline => {
                eprintln!("raftctl chaos: {e:#}");
                return (false, restarts);
            }
            Err(_) => std::thread::sleep(Duration::from_millis(500)),
        }
    }
    (false, restarts)
}

/// `ready::wait`, then once more after a ttl: the member keys of a node killed a moment
/// ago live on with its lease (a new Raft leader even gives every lease a full ttl), so a
/// restarted node can look streaming on the new timeline before its own agent said so.
/// The next fault must not start on such a stale picture (a replica that has in fact not
/// caught up may not take over, and the round would wrongly look like a missed failover).
async fn ready_after_stale_keys(lab: &Lab, timeout: Duration) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    ready::wait(lab, timeout).await?;
    let ttl = store::config_value(lab, "ttl").await.ok().flatten().and_then(|v| v.as_f64()).unwrap_or(2.0);
    tokio::time::sleep(Duration::from_secs_f64(ttl.clamp(1.0, 60.0)) + Duration::from_millis(500)).await;
    ready::wait(lab, deadline.saturating_duration_since(Instant::now())).await
}

/// The ids on the final primary (a few tries: it may have just been promoted).
fn final_ids(psql: &Psql, node: usize) -> anyhow::Result<BTreeSet<u64>> {
    let mut last = None;
    for _ in 0..10 {
        match workload::ids_on(psql, node) {
            Ok(ids) => return Ok(ids),
            Err(e) => last = Some(e),
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    Err(last.unwrap_or_else(|| anyhow::anyhow!("no answer")).context("reading the writes back from the final primary"))
}
