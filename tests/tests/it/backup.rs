//! Backups across processes: the real `etcdctl snapshot save` against a raftgres node,
//! every node destroyed, `raftgres snapshot restore` into new data dirs, the restored
//! cluster started and read back key by key.

use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use raftgres_proto::etcdserverpb::RangeRequest;
use raftgres_tests::client::Client;
use raftgres_tests::{bin, eventually, Cluster};

use crate::wait_leader;

/// (key, value, create revision, mod revision, version) of every key, read on `addr`.
async fn every_key(addr: &str, serializable: bool) -> anyhow::Result<Vec<(String, String, i64, i64, i64)>> {
    let c = Client::connect(addr).await?;
    let all = RangeRequest { key: vec![0], range_end: vec![0], serializable, ..Default::default() };
    let kvs = c.kv().range(all).await?.into_inner().kvs;
    Ok(kvs
        .into_iter()
        .map(|kv| {
            let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
            (text(&kv.key), text(&kv.value), kv.create_revision, kv.mod_revision, kv.version)
        })
        .collect())
}

fn restore(cluster: &Cluster, i: usize, file: &Path) -> anyhow::Result<Output> {
    let node = &cluster.nodes[i];
    Ok(Command::new(bin("raftgres"))
        .args(["snapshot", "restore"])
        .arg(file)
        .args(["--name", &node.name, "--initial-cluster", &cluster.initial_cluster()])
        .args(["--initial-advertise-peer-urls", &format!("http://{}", node.peer_addr()), "--data-dir"])
        .arg(&node.data_dir)
        .output()?)
}

fn text(out: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

#[tokio::test]
async fn a_cluster_restored_from_an_etcdctl_snapshot_has_every_key_with_its_revisions() -> anyhow::Result<()> {
    let mut cluster = Cluster::start(3)?;
    wait_leader(&cluster, &[]).await?;
    let c = Client::connect(&cluster.nodes[0].client_addr()).await?;
    for i in 0..40 {
        c.put(&format!("/backup/{i:02}"), &format!("value {i}")).await?;
    }
    c.put("/backup/07", "second version").await?;
    let before = every_key(&cluster.nodes[0].client_addr(), false).await?;
    assert_eq!(before.len(), 40);

    let file = cluster.dir.path().join("backup.db");
    let save = Command::new("etcdctl")
        .env("ETCDCTL_API", "3")
        .args(["--endpoints", &format!("http://{}", cluster.nodes[1].client_addr()), "snapshot", "save"])
        .arg(&file)
        .output()?;
    assert!(save.status.success() && text(&save).contains("Snapshot saved at"), "etcdctl snapshot save: {}", text(&save));
    let status = Command::new(bin("raftgres")).args(["snapshot", "status"]).arg(&file).output()?;
    assert!(text(&status).contains("40 keys, ") && text(&status).contains("checksum ok"), "{}", text(&status));

    // Bad input: a truncated copy and a flipped byte are refused, naming the problem.
    let bytes = std::fs::read(&file)?;
    let truncated = cluster.dir.path().join("truncated.db");
    std::fs::write(&truncated, &bytes[..bytes.len() / 2])?;
    let out = restore(&cluster, 0, &truncated)?;
    assert!(!out.status.success() && text(&out).contains("the snapshot is truncated"), "{}", text(&out));
    let mut damaged = bytes.clone();
    damaged[bytes.len() / 2] ^= 0x01;
    let damaged_file = cluster.dir.path().join("damaged.db");
    std::fs::write(&damaged_file, &damaged)?;
    // The data dirs still exist: the checksum is checked before the data dir.
    let out = restore(&cluster, 0, &damaged_file)?;
    assert!(!out.status.success() && text(&out).contains("checksum does not match"), "{}", text(&out));

    // Every node is lost.
    for i in 0..3 {
        cluster.kill(i);
        std::fs::remove_dir_all(&cluster.nodes[i].data_dir)?;
    }
    for i in 0..3 {
        let out = restore(&cluster, i, &file)?;
        assert!(out.status.success() && text(&out).contains("restored "), "restore {}: {}", cluster.nodes[i].name, text(&out));
    }
    let out = restore(&cluster, 0, &file)?;
    assert!(!out.status.success() && text(&out).contains("is not empty"), "{}", text(&out));

    for i in 0..3 {
        cluster.spawn(i, "new")?;
    }
    wait_leader(&cluster, &[]).await.map_err(|e| e.context(cluster.logs()))?;
    for node in &cluster.nodes {
        let addr = node.client_addr();
        assert_eq!(every_key(&addr, false).await?, before, "linearizable read on {}", node.name);
        eventually(Duration::from_secs(10), "every member applied the restored state", || async {
            anyhow::ensure!(every_key(&addr, true).await? == before, "{} differs", addr);
            Ok(())
        })
        .await?;
    }
    let last = before.iter().map(|k| k.3).max().unwrap_or(0);
    let rev = Client::connect(&cluster.nodes[2].client_addr()).await?.put("/after-restore", "x").await?;
    assert_eq!(rev, last + 1, "the restored cluster continues the revisions");
    Ok(())
}
