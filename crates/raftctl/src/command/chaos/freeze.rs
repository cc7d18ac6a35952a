//! Freezing processes for a fault: SIGSTOP now, SIGCONT when the guard is dropped, on
//! every path out of the fault (an error included), so a run never leaves a node
//! stopped. Three shapes: a node's whole process group (Ctrl-Z of the job: agent, store
//! and fencer helpers, but not PostgreSQL, which runs in a session of its own), a
//! postmaster and all its children (a hung PostgreSQL), and the children only (backends
//! that stop answering while the postmaster still accepts connections).

use anyhow::Context;

use raftgres_lab::{process, LabNode};

/// What was stopped; continued when dropped.
pub struct Frozen {
    /// A process group (`-pgid`) or single pids, in the order they were stopped.
    group: Option<u32>,
    pids: Vec<u32>,
}

impl Frozen {
    /// SIGSTOP to the node's process group (its agent leads it: `raftctl lab` starts
    /// each node as a shell starts a job).
    pub fn group(node: &LabNode) -> anyhow::Result<Self> {
        let agent = process::agent(node).with_context(|| format!("{} is not running", node.name))?;
        anyhow::ensure!(agent.pgrp == agent.pid, "{}'s agent {} does not lead its process group {}", node.name, agent.pid, agent.pgrp);
        anyhow::ensure!(
            process::signal_group(agent.pgrp, "STOP")?,
            "{}'s process group {} holds no raftgres process",
            node.name,
            agent.pgrp
        );
        Ok(Self { group: Some(agent.pgrp), pids: Vec::new() })
    }

    /// SIGSTOP to the node's postmaster (unless `children_only`) and then every child it
    /// has; returns the guard and how many processes were stopped.
    pub fn postgres(node: &LabNode, children_only: bool) -> anyhow::Result<Self> {
        let pm = process::postmaster(node).with_context(|| format!("{} has no running postmaster", node.name))?;
        let mut frozen = Self { group: None, pids: Vec::new() };
        if !children_only {
            process::signal(pm.pid, "STOP")?;
            frozen.pids.push(pm.pid);
        }
        for child in process::children(pm.pid) {
            // A child may have exited since it was listed: only what was stopped counts.
            if process::signal(child, "STOP").is_ok() {
                frozen.pids.push(child);
            }
        }
        Ok(frozen)
    }

    pub fn count(&self) -> usize {
        self.pids.len()
    }
}

impl Drop for Frozen {
    fn drop(&mut self) {
        if let Some(group) = self.group {
            if let Err(e) = process::signal_group(group, "CONT") {
                eprintln!("raftctl chaos: cannot continue process group {group}: {e:#}");
            }
        }
        // The children first, the postmaster last, so it finds them running again.
        for &pid in self.pids.iter().rev() {
            if process::stat(pid).is_some() {
                if let Err(e) = process::signal(pid, "CONT") {
                    eprintln!("raftctl chaos: cannot continue pid {pid}: {e:#}");
                }
            }
        }
    }
}
