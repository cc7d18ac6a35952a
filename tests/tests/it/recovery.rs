//! Quorum-loss recovery across processes: two of three members lost for good, the
//! survivor restarted with `--force-new-cluster`, a new member added to it.

use std::time::Duration;

use raftgres_proto::etcdserverpb::MemberListRequest;
use raftgres_tests::client::Client;
use raftgres_tests::Cluster;

use crate::{add_member, wait_leader};

#[tokio::test]
async fn the_survivor_of_a_lost_quorum_restarts_alone_with_every_key_and_takes_a_new_member() -> anyhow::Result<()> {
    // A small snapshot interval: the survivor's state is a snapshot plus a log tail.
    let mut cluster = Cluster::start_with(3, &["--snapshot-count", "100"])?;
    wait_leader(&cluster, &[]).await?;
    let c = Client::connect(&cluster.nodes[0].client_addr()).await?;
    for i in 0..250 {
        c.put(&format!("/survive/{i:03}"), &format!("v{i}")).await?;
    }
    // Acknowledged by a quorum, so on node1 or on one of the two lost members.
    let last_rev = c.put("/survive/last", "acknowledged").await?;
    for lost in [1, 2] {
        cluster.kill(lost);
        std::fs::remove_dir_all(&cluster.nodes[lost].data_dir)?;
    }
    // Without a quorum node1 cannot serve a write.
    let stuck = tokio::time::timeout(Duration::from_secs(3), c.put("/no-quorum", "x")).await;
    assert!(!matches!(stuck, Ok(Ok(_))), "a write succeeded without a quorum");

    cluster.kill(0);
    cluster.extra_args.push("--force-new-cluster".into());
    cluster.spawn(0, "new")?;
    cluster.extra_args.pop();
    let addr1 = cluster.nodes[0].client_addr();
    wait_leader(&cluster, &[1, 2]).await.map_err(|e| e.context(cluster.logs()))?;
    let c = Client::connect(&addr1).await?;
    for i in 0..250 {
        assert_eq!(c.get(&format!("/survive/{i:03}")).await?, Some(format!("v{i}")), "key {i}");
    }
    assert_eq!(c.get("/survive/last").await?.as_deref(), Some("acknowledged"));
    let members = c.cluster().member_list(MemberListRequest { linearizable: true }).await?.into_inner().members;
    assert_eq!(members.len(), 1, "{members:?}");
    let rev = c.put("/after-recovery", "x").await?;
    assert!(rev > last_rev, "revisions continue: {rev} after {last_rev}");

    let (n4, _) = add_member(&mut cluster, &c, "node4", "/after-recovery").await?;
    let addr4 = cluster.nodes[n4].client_addr();
    let early = Client::connect(&addr4).await?.get_with("/survive/000", true).await?;
    assert_eq!(early.as_deref(), Some("v0"), "the new member has the keys from before the recovery");
    let c4 = Client::connect(&addr4).await?;
    c4.put("/two-voters", "y").await?;
    assert_eq!(c.get("/two-voters").await?.as_deref(), Some("y"));
    let logs = std::fs::read_to_string(&cluster.nodes[0].log)?;
    assert!(logs.contains("--force-new-cluster: this member is now a one-member cluster"), "{logs}");
    // The keys after the survivor's last snapshot came from its Raft log.
    let replayed: u64 = logs.split("replayed=").nth(1).and_then(|r| r.split_whitespace().next()).and_then(|n| n.parse().ok()).unwrap_or(0);
    assert!(replayed > 0, "no log entry replayed on top of the snapshot: {logs}");
    Ok(())
}
