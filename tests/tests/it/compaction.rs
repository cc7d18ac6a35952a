//! Compaction and the space quota across processes, with the real `etcdctl`: a small
//! `--quota-backend-bytes` raises NOSPACE (etcd's message and `alarm list`), reads and
//! deletes still pass, compaction plus `alarm disarm` lets writes in again; and a tiny
//! periodic auto-compaction retention compacts old revisions by itself.

use std::process::Command;
use std::time::Duration;

use raftgres_tests::client::Client;
use raftgres_tests::{eventually, Cluster};

use crate::wait_leader;

/// (success, stdout, stderr) of `etcdctl` (API 3) against `endpoint`.
fn etcdctl(endpoint: &str, args: &[&str]) -> (bool, String, String) {
    let out = Command::new("etcdctl")
        .env("ETCDCTL_API", "3")
        .arg(format!("--endpoints=http://{endpoint}"))
        .args(args)
        .output()
        .expect("etcdctl must be installed (bash deploy/setup.sh)");
    (out.status.success(), String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
}

#[tokio::test]
async fn a_small_quota_raises_nospace_until_compaction_and_disarm() -> anyhow::Result<()> {
    let cluster = Cluster::start_with(3, &["--quota-backend-bytes", "200000", "--auto-compaction-retention", "0"])?;
    wait_leader(&cluster, &[]).await?;
    let ep = cluster.nodes[1].client_addr();
    let c = Client::connect(&cluster.nodes[0].client_addr()).await?;
    let value = "x".repeat(10_000);
    let mut refused = None;
    for _ in 0..100 {
        if let Err(e) = c.put("/big", &value).await {
            refused = Some(e.to_string());
            break;
        }
    }
    let refused = refused.expect("the quota refuses a write within 100 puts of 10 kB");
    assert!(refused.contains("etcdserver: mvcc: database space exceeded"), "{refused}");

    let (ok, _, err) = etcdctl(&ep, &["put", "/small", "v"]);
    assert!(!ok && err.contains("etcdserver: mvcc: database space exceeded"), "{err}");
    let (ok, list, _) = etcdctl(&ep, &["alarm", "list"]);
    assert!(ok && list.contains("alarm:NOSPACE") && list.contains("memberID:"), "{list}");
    let (ok, out, err) = etcdctl(&ep, &["get", "/big", "--print-value-only"]);
    assert!(ok && out.trim() == value, "reads still work: {err}");
    let (ok, _, err) = etcdctl(&ep, &["lease", "grant", "30"]);
    assert!(!ok && err.contains("database space exceeded"), "a lease grant needs space: {err}");
    let (ok, out, err) = etcdctl(&ep, &["del", "/none"]);
    assert!(ok && out.trim() == "0", "deletes still work: {err}");

    let revision = c.status().await?.header.map_or(0, |h| h.revision);
    let (ok, out, err) = etcdctl(&ep, &["compaction", &revision.to_string()]);
    assert!(ok && out.contains(&format!("compacted revision {revision}")), "{out}{err}");
    let (ok, _, err) = etcdctl(&ep, &["alarm", "disarm"]);
    assert!(ok, "{err}");
    let (_, list, _) = etcdctl(&ep, &["alarm", "list"]);
    assert!(list.trim().is_empty(), "disarmed: {list}");
    let (ok, out, err) = etcdctl(&ep, &["put", "/small", "v"]);
    assert!(ok && out.trim() == "OK", "writes pass again: {err}");
    Ok(())
}

#[tokio::test]
async fn a_tiny_periodic_retention_compacts_old_revisions() -> anyhow::Result<()> {
    let cluster = Cluster::start_with(3, &["--auto-compaction-mode", "periodic", "--auto-compaction-retention", "1s"])?;
    wait_leader(&cluster, &[]).await?;
    let ep = cluster.nodes[2].client_addr();
    let c = Client::connect(&cluster.nodes[0].client_addr()).await?;
    let first = c.put("/k", "1").await?;
    c.put("/k", "2").await?;
    eventually(Duration::from_secs(15), "revision of the first put compacted", || {
        let ep = ep.clone();
        let c = &c;
        async move {
            c.put("/k", "again").await?;
            let (ok, _, err) = etcdctl(&ep, &["get", "/k", "--rev", &first.to_string()]);
            anyhow::ensure!(!ok && err.contains("etcdserver: mvcc: required revision has been compacted"), "not yet: {err}");
            Ok(())
        }
    })
    .await?;
    let (ok, out, _) = etcdctl(&ep, &["get", "/k", "--print-value-only"]);
    assert!(ok && out.trim() == "again", "the current value stays");
    Ok(())
}
