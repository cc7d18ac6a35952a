//! The lab's processes: starting a node detached (own process group, optionally as the
//! lab's user, optionally inside its network namespace), reading `/proc`, and sending
//! signals with the `kill` command. Every pid
//! read from a file is checked against `/proc/<pid>/stat` (alive, and the right program)
//! before it is signalled, so a stale pid file never hits an unrelated process.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

use crate::description::{Lab, LabNode};
use crate::netns;

/// How long `ip netns exec` and `setpriv` may take to exec the node binary.
const EXEC_WAIT: Duration = Duration::from_secs(5);

/// What `/proc/<pid>/stat` says of a process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcStat {
    pub pid: u32,
    pub comm: String,
    /// R, S, D, T, t, Z, ...
    pub state: char,
    pub ppid: u32,
    pub pgrp: u32,
}

/// Parses one `/proc/<pid>/stat` line (`pid (comm) state ppid pgrp ...`; comm may hold
/// spaces and parentheses, so it ends at the last `)`).
pub fn parse_stat(text: &str) -> Option<ProcStat> {
    let (head, rest) = text.rsplit_once(')')?;
    let (pid, comm) = head.split_once(" (")?;
    let mut fields = rest.split_whitespace();
    let state = fields.next()?.chars().next()?;
    let ppid = fields.next()?.parse().ok()?;
    let pgrp = fields.next()?.parse().ok()?;
    Some(ProcStat { pid: pid.trim().parse().ok()?, comm: comm.to_string(), state, ppid, pgrp })
}

pub fn stat(pid: u32) -> Option<ProcStat> {
    parse_stat(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

/// Every process visible in `/proc`.
pub fn all_processes() -> Vec<ProcStat> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries.filter_map(Result::ok).filter_map(|e| e.file_name().to_str().and_then(|n| n.parse::<u32>().ok())).filter_map(stat).collect()
}

/// The first line of a pid file, as a pid.
pub fn read_pid(file: &Path) -> Option<u32> {
    std::fs::read_to_string(file).ok()?.lines().next()?.trim().parse().ok().filter(|p| *p > 0)
}

/// A live (not zombie) process whose name starts with `program`.
fn live(pid: u32, program: &str) -> Option<ProcStat> {
    stat(pid).filter(|s| s.state != 'Z' && s.comm.starts_with(program))
}

/// The node's agent (`raftgres`), when its pid file names a live one.
pub fn agent(node: &LabNode) -> Option<ProcStat> {
    live(read_pid(&node.pid_path())?, "raftgres")
}

/// The node's postmaster, when `pgdata/postmaster.pid` names a live one.
pub fn postmaster(node: &LabNode) -> Option<ProcStat> {
    let pid = read_pid(&node.pgdata().join("postmaster.pid"))?;
    live(pid, "postgres").or_else(|| live(pid, "postmaster"))
}

/// How a node's agent is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunState {
    Running,
    /// Stopped by SIGSTOP (`raftctl lab pause`).
    Paused,
    Stopped,
}

impl RunState {
    pub fn of(stat: Option<&ProcStat>) -> Self {
        match stat.map(|s| s.state) {
            None => RunState::Stopped,
            Some('T') | Some('t') => RunState::Paused,
            Some(_) => RunState::Running,
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            RunState::Running => "running",
            RunState::Paused => "paused",
            RunState::Stopped => "stopped",
        }
    }
}

/// Sends `signal` (a name such as `KILL`) to `target` (a pid, or `-pgid` for a group).
fn kill(signal: &str, target: &str) -> anyhow::Result<()> {
    let out =
        Command::new("kill").args(["-s", signal, "--", target]).stdin(Stdio::null()).output().context("cannot run the `kill` command")?;
    if !out.status.success() {
        bail!("kill -s {signal} {target}: {}", String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(())
}

pub fn signal(pid: u32, signal: &str) -> anyhow::Result<()> {
    kill(signal, &pid.to_string())
}

/// Signals the process group `pgid`, when one of its members is still ours (a raftgres
/// or postgres process), so a recycled group id is left alone.
pub fn signal_group(pgid: u32, signal: &str) -> anyhow::Result<bool> {
    let ours = all_processes()
        .iter()
        .any(|p| p.pgrp == pgid && p.state != 'Z' && (p.comm.starts_with("raftgres") || p.comm.starts_with("postgres")));
    if ours {
        kill(signal, &format!("-{pgid}"))?;
    }
    Ok(ours)
}

/// The live children of `pid`.
pub fn children(pid: u32) -> Vec<u32> {
    all_processes().into_iter().filter(|p| p.ppid == pid && p.state != 'Z').map(|p| p.pid).collect()
}

/// Starts `node` detached (its own process group, stdin closed, output appended to its
/// log), as the lab's user if it has one, and records its pid. Returns the pid. In a
/// `--netns` lab the command is `ip netns exec NS setpriv ... raftgres`: both exec, so
/// the pid is the node's own, and this waits until the node binary runs under it.
pub fn spawn(lab: &Lab, node: &LabNode) -> anyhow::Result<u32> {
    let log_path = node.log_path();
    let mut log =
        OpenOptions::new().create(true).append(true).open(&log_path).with_context(|| format!("cannot open {}", log_path.display()))?;
    writeln!(log, "==== raftctl lab: starting {} ====", node.name)?;
    let mut cmd = if node.netns.is_some() { netns::command(lab, node, &lab.raftgres_bin)? } else { Command::new(&lab.raftgres_bin) };
    cmd.arg("--config")
        .arg(node.config_path())
        .current_dir(&node.dir)
        .stdin(Stdio::null())
        .stdout(Stdio::from(log.try_clone()?))
        .stderr(Stdio::from(log))
        .process_group(0);
    if let Some(user) = &lab.user {
        std::os::unix::fs::chown(&log_path, Some(user.uid), Some(user.gid))
            .with_context(|| format!("cannot chown {} to {}", log_path.display(), user.name))?;
        if node.netns.is_none() {
            // In a namespace, `setpriv` drops to the user after `ip netns exec` (root).
            cmd.uid(user.uid).gid(user.gid);
        }
        cmd.env("HOME", &user.home).env("USER", &user.name).env("LOGNAME", &user.name);
    }
    let child = cmd.spawn().with_context(|| format!("cannot start {} for {}", lab.raftgres_bin.display(), node.name))?;
    let pid = child.id();
    // The child is not waited for: it outlives raftctl and is re-parented to init.
    drop(child);
    let pid_path = node.pid_path();
    let mut f = File::create(&pid_path).with_context(|| format!("cannot write {}", pid_path.display()))?;
    writeln!(f, "{pid}").with_context(|| format!("cannot write {}", pid_path.display()))?;
    if node.netns.is_some() {
        wait_exec(node, pid)?;
    }
    Ok(pid)
}

/// Waits until `pid` runs the node binary (it starts as `ip`, then `setpriv`).
fn wait_exec(node: &LabNode, pid: u32) -> anyhow::Result<()> {
    let deadline = Instant::now() + EXEC_WAIT;
    loop {
        match stat(pid) {
            Some(s) if s.state != 'Z' && s.comm.starts_with("raftgres") => return Ok(()),
            Some(s) if s.state != 'Z' && Instant::now() < deadline => {}
            _ => bail!(
                "{} did not start in its network namespace {} (see {})",
                node.name,
                node.netns.as_deref().unwrap_or("?"),
                node.log_path().display()
            ),
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_lines_parse() {
        let s = parse_stat("4242 (postgres: walsender (x)) S 4200 4100 4100 0 -1 4194560").expect("parse");
        assert_eq!(s, ProcStat { pid: 4242, comm: "postgres: walsender (x)".into(), state: 'S', ppid: 4200, pgrp: 4100 });
        assert_eq!(RunState::of(Some(&ProcStat { state: 'T', ..s.clone() })), RunState::Paused);
        assert_eq!(RunState::of(None), RunState::Stopped);
        assert!(parse_stat("garbage").is_none());
    }

    #[test]
    fn own_process_is_visible() {
        let me = stat(std::process::id()).expect("own stat");
        assert_eq!(me.pid, std::process::id());
        assert!(all_processes().iter().any(|p| p.pid == me.pid));
    }
}
