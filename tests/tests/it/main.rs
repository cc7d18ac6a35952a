//! Integration tests with real `raftgres` processes, one module per topic.

mod auth;
mod backup;
mod bad_input;
mod callbacks;
mod chaos;
mod client_http;
mod cluster_wide;
mod compaction;
mod crash;
mod dashboard;
mod deploy;
mod etcdctl;
mod fencer;
mod free_key;
mod gateway;
mod group_stop;
mod ha;
mod haproxy;
mod hung;
mod lease;
mod linearizability;
mod nostream;
mod observability;
mod ops;
mod overload;
mod partition;
mod patroni;
mod patronictl;
mod recovery;
mod reload;
mod replicas;
mod slots;
mod standby;
mod store;
mod sync;
mod tls;
mod upgrade;
mod writes;

use std::time::Duration;

use raftgres_tests::client::Client;
use raftgres_tests::{eventually, Cluster};

/// Waits until every running node agrees on one leader; returns the leader's index.
pub async fn wait_leader(cluster: &Cluster, skip: &[usize]) -> anyhow::Result<usize> {
    eventually(Duration::from_secs(15), "a leader all nodes agree on", || async {
        let mut leader = None;
        for (i, node) in cluster.nodes.iter().enumerate() {
            if skip.contains(&i) {
                continue;
            }
            let status = Client::connect(&node.client_addr()).await?.status().await?;
            anyhow::ensure!(status.leader != 0, "{} sees no leader", node.name);
            anyhow::ensure!(leader.is_none_or(|l| l == status.leader), "nodes disagree on the leader");
            leader = Some(status.leader);
        }
        let leader = leader.ok_or_else(|| anyhow::anyhow!("no node running"))?;
        for (i, node) in cluster.nodes.iter().enumerate() {
            if skip.contains(&i) {
                continue;
            }
            let status = Client::connect(&node.client_addr()).await?.status().await?;
            if status.header.map(|h| h.member_id) == Some(leader) {
                return Ok(i);
            }
        }
        anyhow::bail!("leader {leader:x} is not one of our nodes")
    })
    .await
}

/// Adds `name` as a learner through `c`, starts it, waits until it has `key` (a
/// serializable read on it), then promotes it to voter; returns its index and member id.
pub async fn add_member(cluster: &mut Cluster, c: &Client, name: &str, key: &str) -> anyhow::Result<(usize, u64)> {
    use raftgres_proto::etcdserverpb::{MemberAddRequest, MemberPromoteRequest};
    let n = cluster.add_node(name);
    let peer = format!("http://{}", cluster.nodes[n].peer_addr());
    let added = c.cluster().member_add(MemberAddRequest { peer_ur_ls: vec![peer], is_learner: true }).await?.into_inner();
    let id = added.member.map(|m| m.id).ok_or_else(|| anyhow::anyhow!("no member in reply"))?;
    cluster.spawn(n, "existing")?;
    let addr = cluster.nodes[n].client_addr();
    eventually(Duration::from_secs(20), "the learner replicates", || async {
        let learner = Client::connect(&addr).await?;
        anyhow::ensure!(learner.get_with(key, true).await?.is_some(), "learner has not caught up");
        Ok(())
    })
    .await
    .map_err(|e| e.context(cluster.logs()))?;
    eventually(Duration::from_secs(10), "promote", || async {
        c.cluster().member_promote(MemberPromoteRequest { id }).await?;
        Ok(())
    })
    .await?;
    Ok((n, id))
}
