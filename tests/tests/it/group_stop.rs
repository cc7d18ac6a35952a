//! A primary node stopped the way a terminal stops a job (Ctrl-Z, or SIGSTOP to the
//! node's whole process group): the agent and everything in its group freeze, while
//! PostgreSQL, in a session of its own (pg_ctl), runs on. The fencer must still stop
//! PostgreSQL before another node promotes, and the node must rejoin as a replica once
//! continued. `raftctl lab` starts each node as the leader of its own process group, as
//! a shell starts a job, so `kill -STOP -<agent pid>` is exactly that stop.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use raftgres_tests::lab::{wait_for, Lab};

use crate::writes::{assert_one_writer_at_a_time, seed, timeline, with_logs, Writer};

const HEAL: Duration = Duration::from_secs(60);

/// `(state, process group)` of `pid` from /proc/PID/stat; None once it is gone.
fn state_and_group(pid: i32) -> Option<(char, i32)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, rest) = text.rsplit_once(')')?;
    let mut fields = rest.split_whitespace();
    let state = fields.next()?.chars().next()?;
    let group = fields.nth(1)?.parse().ok()?;
    Some((state, group))
}

/// The process group of node `i`'s agent; fails unless the agent leads it (a shell job).
fn agent_group(lab: &Lab, i: usize) -> anyhow::Result<i32> {
    let path = lab.dir.path().join(lab.name(i)).join("raftgres.pid");
    let pid: i32 = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?.trim().parse()?;
    let (_, group) = state_and_group(pid).with_context(|| format!("the agent of {} (pid {pid}) is not running", lab.name(i)))?;
    anyhow::ensure!(group == pid, "the agent {pid} does not lead its process group ({group}), as a job started from a shell does");
    Ok(group)
}

/// SIGSTOP to a whole process group; SIGCONT to it when dropped, whatever the test did.
struct GroupStop(i32);

impl GroupStop {
    fn signal(group: i32, signal: &str) -> anyhow::Result<()> {
        let status = std::process::Command::new("kill").args(["-s", signal, "--", &format!("-{group}")]).status()?;
        anyhow::ensure!(status.success(), "kill -s {signal} -{group} failed");
        Ok(())
    }

    fn stop(group: i32) -> anyhow::Result<Self> {
        Self::signal(group, "STOP")?;
        Ok(Self(group))
    }
}

impl Drop for GroupStop {
    fn drop(&mut self) {
        if let Err(e) = Self::signal(self.0, "CONT") {
            eprintln!("cannot continue process group {}: {e:#}", self.0);
        }
    }
}

#[test]
fn group_stopped_primary_is_fenced_before_another_node_promotes() -> anyhow::Result<()> {
    let lab = Arc::new(Lab::up(3)?);
    with_logs(&lab, || {
        let old = seed(&lab, "x", HEAL)?;
        let group = agent_group(&lab, old)?;
        let postmaster = lab.postmaster_pid(old)?;
        let writer = Writer::start(lab.clone());
        std::thread::sleep(Duration::from_secs(1));
        let t0 = Instant::now();
        let stopped = GroupStop::stop(group)?;
        let new = wait_for(HEAL, "another node accepting writes", || writer.other_writer(old).ok_or_else(|| anyhow::anyhow!("not yet")));
        // What the old postmaster was when another node took its first write (the agent's
        // whole group is still stopped): it must be gone or frozen by then.
        let fenced = state_and_group(postmaster).is_none_or(|(state, _)| matches!(state, 'T' | 'Z' | 'X'));
        std::thread::sleep(Duration::from_secs(2));
        drop(stopped);
        std::thread::sleep(Duration::from_secs(3));
        let acks = writer.finish()?;
        let new = new?;
        let story = timeline(&acks, t0);
        eprintln!("group stop at 0 ms: {story}");
        assert!(fenced, "postmaster {postmaster} of node{} still ran when node{} took writes ({story})", old + 1, new + 1);
        assert_one_writer_at_a_time(&acks, old, new, t0);
        lab.psql(new, "insert into t(v) values ('continued')")?;
        assert_eq!(lab.wait_healthy(HEAL, "continued")?, new, "the stopped primary came back as a replica ({story})");
        Ok(())
    })
}
