//! The runner's reads and writes of the cluster's state during faults: each through a
//! fresh connection to the first node that answers (any node may be the one a fault
//! took down), `/config` patched through the members' REST API as a user would
//! (`PATCH /config`), and the wait for `/sync` to name the current leader and a
//! standby, so a synchronous-mode fault never hits a primary that has no standby yet.

use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use raftgres_agent::cluster::ClusterView;
use raftgres_agent::config::DynamicConfig;
use raftgres_agent::dcs::Dcs;
use raftgres_client::AuthChannel;

use crate::command::cluster::{open, ClusterArgs};
use raftgres_client::Api;
use raftgres_lab::Lab;

/// How long `/sync` may take to name the leader and a standby before a fault.
pub const SYNC_WAIT: Duration = Duration::from_secs(30);
/// How long a `/config` patch may keep failing (no Raft leader right after a heal).
const PATCH_WAIT: Duration = Duration::from_secs(20);
/// How often to try again.
const POLL: Duration = Duration::from_millis(200);

/// The cluster's keys, read through the first node that answers.
pub async fn view(lab: &Lab) -> anyhow::Result<(Dcs<AuthChannel>, ClusterView)> {
    let api = Api::connect(&lab.endpoints(), &lab.security()?, None).await?;
    open(&api, &ClusterArgs { scope: Some(lab.scope.clone()), ..Default::default() }).await
}

/// The lab's node index called `name`.
pub fn index(lab: &Lab, name: &str) -> Option<usize> {
    lab.nodes.iter().position(|n| n.name == name)
}

/// Waits until `/sync` names the current leader and at least one standby; returns the
/// standbys' node indexes. Fails after [`SYNC_WAIT`], saying what `/sync` held.
pub async fn wait_sync_standby(lab: &Lab) -> anyhow::Result<Vec<usize>> {
    let deadline = Instant::now() + SYNC_WAIT;
    let mut last = "nothing read".to_string();
    while Instant::now() < deadline {
        match view(lab).await {
            Ok((_, v)) => {
                let standbys: Vec<usize> = v.sync_standbys().iter().filter_map(|n| index(lab, n)).collect();
                if !standbys.is_empty() {
                    return Ok(standbys);
                }
                last = format!("leader key {:?}, /sync {:?}", v.leader_name(), v.sync.as_ref().map(|(s, _)| s));
            }
            Err(e) => last = format!("{e:#}"),
        }
        tokio::time::sleep(POLL).await;
    }
    bail!("synchronous mode is on but /sync did not name the current leader and a standby within {} s ({last})", SYNC_WAIT.as_secs())
}

/// `PATCH /config` with `patch` (a JSON merge patch) through the first node whose REST
/// API accepts it, trying again while the store has no quorum; returns the new `/config`.
pub async fn patch_config(lab: &Lab, patch: &serde_json::Value) -> anyhow::Result<String> {
    let security = lab.security()?;
    let body = patch.to_string();
    let deadline = Instant::now() + PATCH_WAIT;
    let mut answers = Vec::new();
    while Instant::now() < deadline {
        answers.clear();
        for node in &lab.nodes {
            let url = format!("http://{}:{}/config", node.host, node.ports.rest);
            match security.rest.request("PATCH", &url, Some(body.as_str()), None).await {
                Ok((200..=299, answer)) => return Ok(answer),
                Ok((code, answer)) => answers.push(format!("{}: HTTP {code} {}", node.name, answer.trim())),
                Err(e) => answers.push(format!("{}: {e}", node.name)),
            }
        }
        tokio::time::sleep(POLL).await;
    }
    bail!("PATCH /config {body} was refused by every node for {} s: {}", PATCH_WAIT.as_secs(), answers.join("; "))
}

/// The dynamic configuration in `/config` now.
pub async fn current_config(lab: &Lab) -> anyhow::Result<DynamicConfig> {
    let (_, view) = view(lab).await.context("reading /config")?;
    Ok(raftgres_agent::ops::dynamic(&view))
}

/// The value of `key` in `/config` now (None when unset), to put back afterwards.
pub async fn config_value(lab: &Lab, key: &str) -> anyhow::Result<Option<serde_json::Value>> {
    let (_, v) = view(lab).await.context("reading /config")?;
    Ok(v.config.and_then(|(c, _)| c.get(key).cloned()))
}
