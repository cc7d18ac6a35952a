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

/// etcd's snapshots carry its auth buckets: a backup saved with auth enabled restores
/// with the same users, roles, permissions and `auth enable`.
#[tokio::test]
async fn a_snapshot_saved_with_auth_enabled_restores_users_roles_and_auth_enable() -> anyhow::Result<()> {
    use crate::etcdctl::{etcdctl, ok};
    const ROOT: &str = "--user=root:rootpw";
    const READER: &str = "--user=reader:readerpw";

    let mut cluster = Cluster::start(1)?;
    wait_leader(&cluster, &[]).await?;
    let endpoint = cluster.nodes[0].client_addr();
    ok(&endpoint, &["user", "add", "root:rootpw"]);
    ok(&endpoint, &["user", "add", "reader:readerpw"]);
    ok(&endpoint, &["role", "add", "ro"]);
    ok(&endpoint, &["role", "grant-permission", "--prefix=true", "ro", "read", "/app/"]);
    ok(&endpoint, &["user", "grant-role", "reader", "ro"]);
    ok(&endpoint, &["put", "/app/a", "1"]);
    assert_eq!(ok(&endpoint, &["auth", "enable"]), "Authentication Enabled\n");

    let file = cluster.dir.path().join("auth.db");
    let (success, out, err) = etcdctl(&endpoint, &["snapshot", "save", &file.to_string_lossy()], None);
    assert!(!success && err.contains("etcdserver: user name is empty"), "a snapshot needs root: {out}{err}");
    let saved = ok(&endpoint, &[ROOT, "snapshot", "save", &file.to_string_lossy()]);
    assert!(saved.contains("Snapshot saved at"), "{saved}");
    let status = Command::new(bin("raftgres")).args(["snapshot", "status"]).arg(&file).output()?;
    assert!(text(&status).contains("format 2, ") && text(&status).contains("2 users, 2 roles, auth enabled"), "{}", text(&status));

    cluster.kill(0);
    std::fs::remove_dir_all(&cluster.nodes[0].data_dir)?;
    let out = restore(&cluster, 0, &file)?;
    assert!(out.status.success(), "restore: {}", text(&out));
    cluster.spawn(0, "new")?;
    wait_leader(&cluster, &[]).await.map_err(|e| e.context(cluster.logs()))?;

    let (success, _, err) = etcdctl(&endpoint, &["get", "/app/a"], None);
    assert!(!success && err.contains("etcdserver: user name is empty"), "auth is enabled after the restore: {err}");
    assert_eq!(ok(&endpoint, &[ROOT, "user", "list"]), "reader\nroot\n");
    assert_eq!(ok(&endpoint, &[ROOT, "role", "list"]), "ro\nroot\n");
    assert_eq!(ok(&endpoint, &[READER, "get", "/app/a"]), "/app/a\n1\n");
    let (success, _, err) = etcdctl(&endpoint, &[READER, "put", "/app/a", "2"], None);
    assert!(!success && err.contains("etcdserver: permission denied"), "read-only permission kept: {err}");
    let (success, _, err) = etcdctl(&endpoint, &["--user=reader:wrong", "get", "/app/a"], None);
    assert!(!success && err.contains("authentication failed"), "password hashes kept: {err}");
    Ok(())
}
