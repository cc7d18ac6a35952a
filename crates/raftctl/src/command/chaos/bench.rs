//! What every fault needs while it runs ([`Bench`]), and the small lab look-ups the
//! fault modules share.

use std::time::{Duration, Instant};

use anyhow::Context;

use super::workload::{Psql, Workload};
use raftgres_lab::{process, Lab};

/// How long a killed primary stays down at most while we wait for a new one.
const KILLED_FOR_AT_MOST: Duration = Duration::from_secs(20);

/// What a fault needs: the lab, `psql` on its nodes, how long to hold a fault, the netem spec, the workload
/// (a killed primary stays down until another node took a write), the lease's ttl, and
/// whether the run is in synchronous mode.
pub struct Bench<'a> {
    pub lab: &'a Lab,
    pub psql: &'a Psql,
    pub hold: Duration,
    pub netem: &'a str,
    pub workload: &'a Workload,
    pub t0: Instant,
    pub ttl: Duration,
    pub sync: bool,
}

impl Bench<'_> {
    /// Waits (at most [`KILLED_FOR_AT_MOST`]) until a node other than `node` took a
    /// write acknowledged after `since`; returns that node.
    pub async fn other_writer(&self, node: usize, since: Duration) -> Option<usize> {
        let deadline = Instant::now() + KILLED_FOR_AT_MOST;
        loop {
            let found = self.workload.first_node(|a| a.node != node && a.acked > since);
            if found.is_some() || Instant::now() >= deadline {
                return found;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// The postmaster of `node` now, for comparing before and after a fault.
pub fn postmaster_pid(lab: &Lab, node: usize) -> anyhow::Result<u32> {
    process::postmaster(&lab.nodes[node]).map(|p| p.pid).with_context(|| format!("{} has no running postmaster", lab.nodes[node].name))
}
