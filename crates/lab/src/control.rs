//! The subcommands that act on an existing lab's processes: `status`, `down`, `kill`,
//! `stop`, `start`, `pause`/`resume` and `logs`. Pids come from `raftgres.pid` and
//! `pgdata/postmaster.pid`, checked against `/proc` before any signal. In a `--netns`
//! lab `down` also removes the namespaces and `start` makes sure they exist; `status`
//! and `down` also cover the lab's HAProxy (`up --haproxy`).

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

use crate::description::{Lab, LabNode};
use crate::process::{self, RunState};
use crate::{haproxy, logs, netns, user};

/// How long `down` lets the nodes stop by themselves before SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(10);

/// One line per node: name, pid, running/stopped/paused, ports.
pub fn status(lab: &Lab) -> anyhow::Result<()> {
    for node in &lab.nodes {
        let agent = process::agent(node);
        let state = RunState::of(agent.as_ref());
        let pid = agent.map_or_else(|| "-".to_string(), |a| a.pid.to_string());
        let pg = match process::postmaster(node) {
            Some(p) => format!("postmaster {}", p.pid),
            None => "no postmaster".to_string(),
        };
        println!("{:<6} pid {:<8} {:<8} {}, peer {}  ({pg})", node.name, pid, state.as_str(), node.ports_line(), node.ports.peer);
    }
    if let Some(line) = haproxy::status_line(lab) {
        println!("{line}");
    }
    Ok(())
}

/// SIGKILL to the node's process group, its postmaster and the postmaster's children.
/// The postmaster pid and children are read first: once the postmaster is dead its
/// children belong to init and its pid file may be gone.
fn kill_node(node: &LabNode) -> anyhow::Result<bool> {
    let postmaster = process::postmaster(node).map(|p| p.pid);
    let backends = postmaster.map(process::children).unwrap_or_default();
    let mut killed = false;
    if let Some(pgid) = process::read_pid(&node.pid_path()) {
        killed |= process::signal_group(pgid, "KILL")?;
    }
    for pid in postmaster.into_iter().chain(backends) {
        if process::stat(pid).is_some_and(|s| s.state != 'Z') {
            process::signal(pid, "KILL")?;
            killed = true;
        }
    }
    Ok(killed)
}

pub fn kill(node: &LabNode) -> anyhow::Result<()> {
    if kill_node(node)? {
        // SIGKILL is asynchronous: wait (briefly) until the processes are gone, so that
        // `raftctl lab start` right after does not find them still exiting.
        let deadline = Instant::now() + Duration::from_secs(5);
        while alive(node) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        println!("{} killed (SIGKILL to raftgres, its helpers and PostgreSQL); `raftctl lab start {0}` brings it back", node.name);
        Ok(())
    } else {
        bail!("{} is not running (see `raftctl lab status`)", node.name)
    }
}

/// How long `stop` waits for the agent to exit (it may take 40 s to stop PostgreSQL).
const AGENT_EXIT_WAIT: Duration = Duration::from_secs(45);

/// SIGTERM to the node's agent only (as `systemctl stop` with `KillMode=process`), then
/// waits for it to exit. Says whether PostgreSQL is still running (a paused cluster).
pub fn stop(node: &LabNode) -> anyhow::Result<()> {
    let Some(agent) = process::agent(node) else { bail!("{} is not running (see `raftctl lab status`)", node.name) };
    if agent.state == 'T' || agent.state == 't' {
        process::signal(agent.pid, "CONT")?;
    }
    process::signal(agent.pid, "TERM")?;
    let deadline = Instant::now() + AGENT_EXIT_WAIT;
    while process::agent(node).is_some() {
        if Instant::now() >= deadline {
            bail!(
                "{}'s agent (pid {}) did not exit within {} s (see `raftctl lab logs {0}`)",
                node.name,
                agent.pid,
                AGENT_EXIT_WAIT.as_secs()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    match process::postmaster(node) {
        Some(pm) => println!(
            "{} stopped; its PostgreSQL keeps running (postmaster pid {}, the cluster is paused): `raftctl lab start {0}` adopts it",
            node.name, pm.pid
        ),
        None => println!("{} stopped (agent and PostgreSQL); `raftctl lab start {0}` brings it back", node.name),
    }
    Ok(())
}

/// Whether anything of the node (agent, its group, its postmaster) is still alive.
fn alive(node: &LabNode) -> bool {
    let group = process::read_pid(&node.pid_path());
    let in_group = group.is_some_and(|g| process::all_processes().iter().any(|p| p.pgrp == g && p.state != 'Z'));
    in_group || process::agent(node).is_some() || process::postmaster(node).is_some()
}

/// SIGTERM to every node's group, up to [`STOP_GRACE`] to stop (a postmaster its
/// agent left running gets SIGINT), then SIGKILL; then the
/// network namespaces of a `--netns` lab go; `clean` removes the directory afterwards.
pub fn down(dir: &Path, clean: bool) -> anyhow::Result<()> {
    let lab = Lab::load(dir)?;
    if lab.netns_prefix.is_some() {
        netns::require_root("stopping a --netns lab")?;
    }
    haproxy::stop(&lab)?;
    for node in &lab.nodes {
        let Some(agent) = process::agent(node) else {
            continue;
        };
        println!("stopping {} (pid {})", node.name, agent.pid);
        if agent.state == 'T' || agent.state == 't' {
            process::signal_group(agent.pid, "CONT")?;
        }
        process::signal_group(agent.pid, "TERM")?;
    }
    let deadline = Instant::now() + STOP_GRACE;
    while lab.nodes.iter().any(alive) && Instant::now() < deadline {
        stop_postgres_left_running(&lab)?;
        std::thread::sleep(Duration::from_millis(100));
    }
    for node in lab.nodes.iter().filter(|n| alive(n)) {
        println!("{} did not stop within {} s: SIGKILL", node.name, STOP_GRACE.as_secs());
        kill_node(node)?;
    }
    for node in &lab.nodes {
        let _ = std::fs::remove_file(node.pid_path());
    }
    if lab.netns_prefix.is_some() {
        netns::destroy(&lab)?;
    }
    if clean {
        std::fs::remove_dir_all(&lab.dir).with_context(|| format!("cannot remove {}", lab.dir.display()))?;
        println!("lab stopped and {} removed", lab.dir.display());
    } else {
        println!("lab stopped; its data stays in {} (`raftctl lab up` starts it again, --clean removes it)", lab.dir.display());
    }
    Ok(())
}

/// A paused cluster's agents leave PostgreSQL running when they stop: once a node's
/// agent is gone, SIGINT (fast shutdown) to its postmaster.
fn stop_postgres_left_running(lab: &Lab) -> anyhow::Result<()> {
    for node in lab.nodes.iter().filter(|n| process::agent(n).is_none()) {
        if let Some(pm) = process::postmaster(node) {
            process::signal(pm.pid, "INT")?;
        }
    }
    Ok(())
}

/// Starts a stopped node again with its config, as the lab's user.
pub fn start(lab: &Lab, node: &LabNode) -> anyhow::Result<()> {
    if let Some(agent) = process::agent(node) {
        bail!("{} is already running (pid {}, {})", node.name, agent.pid, RunState::of(Some(&agent)).as_str());
    }
    // A postmaster left running (the agent stopped while the cluster was paused) is
    // adopted by the new run, not started twice.
    let adopted = process::postmaster(node).map(|pm| format!("; it adopts the running PostgreSQL (postmaster pid {})", pm.pid));
    if let Some(u) = &lab.user {
        if !user::is_root() {
            bail!("this lab runs its nodes as user {}: run `raftctl lab start` as root", u.name);
        }
    }
    if lab.netns_prefix.is_some() {
        netns::create(lab)?;
    }
    let pid = process::spawn(lab, node)?;
    std::thread::sleep(Duration::from_millis(300));
    if process::agent(node).is_none() {
        bail!("{} exited right after starting:\n{}", node.name, logs::tail(&node.log_path(), 20));
    }
    println!(
        "{} started (pid {pid}, {}){}; follow it with `raftctl lab logs {0}`",
        node.name,
        node.ports_line(),
        adopted.unwrap_or_default()
    );
    Ok(())
}

/// SIGSTOP (`pause`) or SIGCONT to the agent only: PostgreSQL and the node's helpers
/// keep running, as when an agent hangs.
pub fn pause(node: &LabNode, pause: bool) -> anyhow::Result<()> {
    let Some(agent) = process::agent(node) else { bail!("{} is not running (see `raftctl lab status`)", node.name) };
    process::signal(agent.pid, if pause { "STOP" } else { "CONT" })?;
    if pause {
        println!("{} paused (SIGSTOP to pid {}); `raftctl lab resume {0}` thaws it", node.name, agent.pid);
    } else {
        println!("{} resumed (SIGCONT to pid {})", node.name, agent.pid);
    }
    Ok(())
}

pub fn logs(node: &LabNode, lines: usize) -> anyhow::Result<()> {
    let path = node.log_path();
    if !path.exists() {
        bail!("{} has no log yet ({} does not exist)", node.name, path.display());
    }
    println!("{}", logs::tail(&path, lines));
    Ok(())
}
