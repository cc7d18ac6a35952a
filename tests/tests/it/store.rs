//! The Raft store across processes: forming, replicating, electing, catching up,
//! membership changes.

use std::time::Duration;

use raftgres_proto::etcdserverpb::{MemberListRequest, MemberRemoveRequest};
use raftgres_tests::client::Client;
use raftgres_tests::{eventually, Cluster};

use crate::{add_member, wait_leader};

#[tokio::test]
async fn three_nodes_form_a_cluster_and_replicate() -> anyhow::Result<()> {
    let cluster = Cluster::start(3)?;
    let leader = wait_leader(&cluster, &[]).await?;
    let follower = (leader + 1) % 3;
    let c = Client::connect(&cluster.nodes[follower].client_addr()).await?;
    let rev = c.put("/greeting", "hello").await?;
    assert!(rev >= 2, "first write gets revision >= 2, got {rev}");
    for node in &cluster.nodes {
        let c = Client::connect(&node.client_addr()).await?;
        assert_eq!(c.get("/greeting").await?.as_deref(), Some("hello"), "linearizable read on {}", node.name);
    }
    Ok(())
}

/// Writes sent to a follower at once travel to the leader gathered (`forward_writes`);
/// each still gets its own revision, and every one is there afterwards.
#[tokio::test]
async fn concurrent_writes_through_a_follower_each_get_their_own_revision() -> anyhow::Result<()> {
    let cluster = Cluster::start(3)?;
    let leader = wait_leader(&cluster, &[]).await?;
    let follower = Client::connect(&cluster.nodes[(leader + 1) % 3].client_addr()).await?;
    let writers: Vec<_> = (0..200)
        .map(|i| {
            let c = follower.clone();
            tokio::spawn(async move { c.put(&format!("/batch/{i}"), &format!("v{i}")).await })
        })
        .collect();
    let mut revisions = Vec::new();
    for w in writers {
        revisions.push(w.await??);
    }
    let distinct: std::collections::BTreeSet<_> = revisions.iter().copied().collect();
    assert_eq!(distinct.len(), revisions.len(), "two writes answered with the same revision: {revisions:?}");
    let on_leader = Client::connect(&cluster.nodes[leader].client_addr()).await?;
    for i in (0..200).step_by(7) {
        assert_eq!(on_leader.get(&format!("/batch/{i}")).await?, Some(format!("v{i}")), "write {i} on the leader");
    }
    Ok(())
}

#[tokio::test]
async fn killing_the_leader_elects_another_and_the_node_catches_up() -> anyhow::Result<()> {
    let mut cluster = Cluster::start(3)?;
    let leader = wait_leader(&cluster, &[]).await?;
    let old_leader_id = Client::connect(&cluster.nodes[leader].client_addr()).await?.status().await?.leader;
    cluster.kill(leader);
    let new_leader = wait_leader(&cluster, &[leader]).await?;
    assert_ne!(new_leader, leader);
    let c = Client::connect(&cluster.nodes[new_leader].client_addr()).await?;
    assert_ne!(c.status().await?.leader, old_leader_id);
    for i in 0..50 {
        c.put(&format!("/k{i}"), "v").await?;
    }
    cluster.restart(leader)?;
    let back = cluster.nodes[leader].client_addr();
    eventually(Duration::from_secs(15), "restarted node catches up", || async {
        let c = Client::connect(&back).await?;
        anyhow::ensure!(c.get_with("/k49", true).await?.is_some(), "not caught up yet");
        Ok(())
    })
    .await?;
    Ok(())
}

/// The `.wal` segment files in a node's Raft log directory.
fn wal_segments(cluster: &Cluster, i: usize) -> anyhow::Result<usize> {
    let dir = cluster.nodes[i].data_dir.join("raft");
    Ok(std::fs::read_dir(dir)?.flatten().filter(|e| e.path().extension().is_some_and(|x| x == "wal")).count())
}

#[tokio::test]
async fn new_data_dirs_get_the_write_ahead_log_and_sled_ones_keep_sled() -> anyhow::Result<()> {
    // Node 3's data dir was made by a version before the write-ahead log: a sled log.
    let mut cluster = Cluster::prepare(3, &[])?;
    drop(raftgres_store::backend::SledBackend::open(&cluster.nodes[2].data_dir.join("raft"))?);
    for i in 0..3 {
        cluster.spawn(i, "new")?;
    }
    wait_leader(&cluster, &[]).await?;
    // Node 1 stays up throughout (node 3, possibly the Raft leader, is killed).
    let c = Client::connect(&cluster.nodes[0].client_addr()).await?;
    for i in 0..30 {
        c.put(&format!("/engine/{i}"), "v").await?;
    }
    cluster.kill(2);
    eventually(Duration::from_secs(15), "a write with node3 down", || async { c.put("/engine/while-down", "v").await.map(|_| ()) }).await?;
    cluster.restart(2)?;
    let back = cluster.nodes[2].client_addr();
    eventually(Duration::from_secs(15), "the sled node catches up after kill -9", || async {
        let c = Client::connect(&back).await?;
        anyhow::ensure!(c.get_with("/engine/while-down", true).await?.is_some(), "not caught up yet");
        anyhow::ensure!(c.get_with("/engine/29", true).await?.is_some(), "lost an entry");
        Ok(())
    })
    .await?;
    assert!(cluster.nodes[2].data_dir.join("raft/db").is_file(), "node3 keeps its sled database");
    assert_eq!(wal_segments(&cluster, 2)?, 0, "node3 has no write-ahead log");
    for i in 0..2 {
        assert!(wal_segments(&cluster, i)? >= 1, "{} has a write-ahead log", cluster.nodes[i].name);
        assert!(!cluster.nodes[i].data_dir.join("raft/db").exists(), "{} has no sled database", cluster.nodes[i].name);
    }
    Ok(())
}

#[tokio::test]
async fn a_learner_is_added_promoted_and_a_member_removed() -> anyhow::Result<()> {
    let mut cluster = Cluster::start(3)?;
    wait_leader(&cluster, &[]).await?;
    let c = Client::connect(&cluster.nodes[0].client_addr()).await?;
    for i in 0..20 {
        c.put(&format!("/before/{i}"), "x").await?;
    }
    let (n4, id4) = add_member(&mut cluster, &c, "node4", "/before/19").await?;
    let addr4 = cluster.nodes[n4].client_addr();
    eventually(Duration::from_secs(10), "node4 is a voter and published its name", || async {
        let members = c.cluster().member_list(MemberListRequest { linearizable: true }).await?.into_inner().members;
        let m4 = members.iter().find(|m| m.id == id4).ok_or_else(|| anyhow::anyhow!("node4 missing"))?;
        anyhow::ensure!(!m4.is_learner && m4.name == "node4", "node4 is {m4:?}");
        Ok(())
    })
    .await?;

    let id1 = Client::connect(&cluster.nodes[0].client_addr()).await?.status().await?.header.map_or(0, |h| h.member_id);
    let c4 = Client::connect(&addr4).await?;
    c4.cluster().member_remove(MemberRemoveRequest { id: id1 }).await?;
    let members = c4.cluster().member_list(MemberListRequest { linearizable: true }).await?.into_inner().members;
    assert_eq!(members.len(), 3, "{members:?}");
    assert!(members.iter().all(|m| m.id != id1));
    c4.put("/after", "removal").await?;
    eventually(Duration::from_secs(10), "removed node exits", || {
        let running = cluster.nodes[0].is_running();
        async move {
            anyhow::ensure!(!running, "node1 still running");
            Ok(())
        }
    })
    .await?;
    Ok(())
}

#[tokio::test]
async fn a_far_behind_follower_catches_up_by_snapshot() -> anyhow::Result<()> {
    let mut cluster = Cluster::start_with(3, &["--snapshot-count", "100"])?;
    let leader = wait_leader(&cluster, &[]).await?;
    let behind = (leader + 1) % 3;
    cluster.kill(behind);
    let c = Client::connect(&cluster.nodes[leader].client_addr()).await?;
    for i in 0..400 {
        c.put(&format!("/snap/{i:04}"), "v").await?;
    }
    cluster.restart(behind)?;
    let addr = cluster.nodes[behind].client_addr();
    eventually(Duration::from_secs(20), "the follower catches up", || async {
        let c = Client::connect(&addr).await?;
        anyhow::ensure!(c.get_with("/snap/0399", true).await?.is_some(), "not caught up");
        anyhow::ensure!(c.get_with("/snap/0000", true).await?.is_some(), "early keys missing");
        Ok(())
    })
    .await?;
    let log = std::fs::read_to_string(&cluster.nodes[behind].log)?;
    assert!(std::path::Path::new(&cluster.nodes[behind].data_dir).join("snapshot/snapshot.bin").exists(), "{log}");
    Ok(())
}

#[tokio::test]
async fn a_wiped_member_gets_a_clear_error_and_the_leader_keeps_serving() -> anyhow::Result<()> {
    let mut cluster = Cluster::start(3)?;
    let leader = wait_leader(&cluster, &[]).await?;
    let victim = (leader + 1) % 3;
    let c = Client::connect(&cluster.nodes[leader].client_addr()).await?;
    for i in 0..20 {
        c.put(&format!("/w/{i}"), "v").await?;
    }
    cluster.kill(victim);
    std::fs::remove_dir_all(&cluster.nodes[victim].data_dir)?;
    cluster.spawn(victim, "existing")?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    for i in 0..20 {
        c.put(&format!("/after/{i}"), "v").await?;
    }
    let leader_now = wait_leader(&cluster, &[victim]).await?;
    assert!(cluster.nodes[leader_now].is_running());
    let logs: String = cluster.nodes.iter().map(|n| std::fs::read_to_string(&n.log).unwrap_or_default()).collect();
    assert!(logs.contains("its data directory was wiped or replaced"), "clear error expected:\n{logs}");
    assert!(!logs.contains("panicked"), "no panic:\n{logs}");
    Ok(())
}
