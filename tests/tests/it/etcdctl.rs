//! The real `etcdctl` (3.4, Debian's etcd-client) against a 3-node raftgres cluster;
//! each step asserts what etcdctl prints.

use std::process::{Command, Stdio};
use std::time::Duration;

use raftgres_tests::client::Client;
use raftgres_tests::{eventually, Cluster};

use crate::wait_leader;

pub(crate) fn etcdctl(endpoints: &str, args: &[&str], stdin: Option<&str>) -> (bool, String, String) {
    let mut cmd = Command::new("etcdctl");
    cmd.env("ETCDCTL_API", "3").arg(format!("--endpoints={endpoints}")).args(args);
    cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("etcdctl must be installed (bash deploy/setup.sh)");
    if let Some(input) = stdin {
        use std::io::Write;
        child.stdin.take().expect("stdin").write_all(input.as_bytes()).expect("write stdin");
    } else {
        drop(child.stdin.take());
    }
    let out = child.wait_with_output().expect("etcdctl output");
    (out.status.success(), String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
}

pub(crate) fn ok(endpoints: &str, args: &[&str]) -> String {
    let (success, out, err) = etcdctl(endpoints, args, None);
    assert!(success, "etcdctl {args:?} failed: {err}");
    out
}

#[tokio::test]
async fn etcdctl_kv_txn_watch_lease_member_endpoint() -> anyhow::Result<()> {
    let cluster = Cluster::start(3)?;
    wait_leader(&cluster, &[]).await?;
    let one = cluster.nodes[1].client_addr();
    let all = cluster.endpoints().join(",");

    assert_eq!(ok(&one, &["put", "/svc/a", "1"]), "OK\n");
    assert_eq!(ok(&one, &["put", "/svc/b", "2"]), "OK\n");
    assert_eq!(ok(&one, &["get", "--prefix", "/svc/"]), "/svc/a\n1\n/svc/b\n2\n");
    assert_eq!(ok(&one, &["get", "--prefix", "--keys-only", "/svc/"]), "/svc/a\n\n/svc/b\n\n");
    assert_eq!(ok(&one, &["get", "--prefix", "--limit", "1", "--print-value-only", "/svc/"]), "1\n");
    assert_eq!(ok(&one, &["get", "--rev", "2", "/svc/a"]), "/svc/a\n1\n");
    let json: serde_json::Value = serde_json::from_str(&ok(&one, &["get", "-w", "json", "/svc/b"]))?;
    assert_eq!(json["kvs"][0]["version"], 1);
    assert_eq!(json["count"], 1);

    let txn = "value(\"/svc/a\") = \"1\"\n\nput /svc/a 10\n\nput /svc/a 0\n\n";
    let (success, out, err) = etcdctl(&one, &["txn"], Some(txn));
    assert!(success, "{err}");
    assert_eq!(out, "SUCCESS\n\nOK\n");
    assert_eq!(ok(&one, &["get", "--print-value-only", "/svc/a"]), "10\n");

    let watch_ep = cluster.nodes[2].client_addr();
    let watcher = std::thread::spawn(move || {
        Command::new("timeout")
            .args(["4", "etcdctl", &format!("--endpoints={watch_ep}"), "watch", "--prefix", "/w/"])
            .env("ETCDCTL_API", "3")
            .output()
            .expect("watch")
    });
    tokio::time::sleep(Duration::from_millis(800)).await;
    ok(&one, &["put", "/w/x", "v1"]);
    ok(&one, &["del", "/w/x"]);
    let watched = String::from_utf8_lossy(&watcher.join().expect("watch thread").stdout).into_owned();
    assert_eq!(watched, "PUT\n/w/x\nv1\nDELETE\n/w/x\n\n");

    assert_eq!(ok(&one, &["del", "--prefix", "/svc/"]), "2\n");

    let granted = ok(&one, &["lease", "grant", "2"]);
    let lease = granted.split_whitespace().nth(1).expect("lease id").to_string();
    assert!(granted.ends_with("granted with TTL(2s)\n"), "{granted}");
    ok(&one, &["put", "--lease", &lease, "/eph", "x"]);
    let ttl = ok(&one, &["lease", "timetolive", "--keys", &lease]);
    assert!(ttl.contains("attached keys([/eph])"), "{ttl}");
    assert!(ok(&one, &["lease", "list"]).contains(&lease));
    eventually(Duration::from_secs(6), "the leased key expires", || {
        let out = ok(&one, &["get", "/eph"]);
        async move {
            anyhow::ensure!(out.is_empty(), "still there: {out}");
            Ok(())
        }
    })
    .await?;
    let expired = ok(&one, &["lease", "timetolive", &lease]);
    assert!(expired.contains("already expired"), "{expired}");
    let (success, _, err) = etcdctl(&one, &["lease", "revoke", &lease], None);
    assert!(!success && err.contains("requested lease not found"), "{err}");

    let members = ok(&one, &["member", "list"]);
    for node in &cluster.nodes {
        assert!(members.contains(&format!("started, {}, http://{}", node.name, node.peer_addr())), "{members}");
    }
    let status = ok(&all, &["endpoint", "status"]);
    assert_eq!(status.lines().count(), 3, "{status}");
    assert_eq!(status.lines().filter(|l| l.contains(", true, false,")).count(), 1, "exactly one leader: {status}");
    let (success, _, health) = etcdctl(&all, &["endpoint", "health"], None);
    assert!(success, "{health}");
    assert_eq!(health.matches("is healthy: successfully committed proposal").count(), 3, "{health}");

    let rev = json["header"]["revision"].as_i64().expect("revision");
    assert_eq!(ok(&one, &["compaction", &rev.to_string()]), format!("compacted revision {rev}\n"));
    let (success, _, err) = etcdctl(&one, &["get", "--rev", "2", "/svc/a"], None);
    assert!(!success && err.contains("required revision has been compacted"), "{err}");
    Ok(())
}

#[tokio::test]
async fn etcdctl_lock_and_elect() -> anyhow::Result<()> {
    let cluster = Cluster::start(3)?;
    wait_leader(&cluster, &[]).await?;
    let ep = cluster.nodes[0].client_addr();
    assert_eq!(ok(&ep, &["lock", "mylock", "echo", "held"]), "held\n");

    let campaign_ep = cluster.nodes[1].client_addr();
    let candidate = std::thread::spawn(move || {
        Command::new("timeout")
            .args(["4", "etcdctl", &format!("--endpoints={campaign_ep}"), "elect", "e1", "p1"])
            .env("ETCDCTL_API", "3")
            .output()
            .expect("elect")
    });
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let observed = Command::new("timeout")
        .args(["2", "etcdctl", &format!("--endpoints={ep}"), "elect", "-l", "e1"])
        .env("ETCDCTL_API", "3")
        .output()?;
    let observed = String::from_utf8_lossy(&observed.stdout).into_owned();
    let lines: Vec<&str> = observed.lines().collect();
    assert!(lines.len() >= 2 && lines[0].starts_with("e1/") && lines[1] == "p1", "observer saw {observed:?}");
    let won = String::from_utf8_lossy(&candidate.join().expect("elect thread").stdout).into_owned();
    assert!(won.starts_with("e1/") && won.contains("\np1\n"), "candidate printed {won:?}");
    Ok(())
}

#[tokio::test]
async fn etcdctl_member_add_promote_remove() -> anyhow::Result<()> {
    let mut cluster = Cluster::start(3)?;
    wait_leader(&cluster, &[]).await?;
    let ep = cluster.nodes[0].client_addr();
    let n4 = cluster.add_node("node4");
    let peer = format!("http://{}", cluster.nodes[n4].peer_addr());
    let added = ok(&ep, &["member", "add", "node4", &format!("--peer-urls={peer}"), "--learner"]);
    let id = added.split_whitespace().nth(1).expect("member id").to_string();
    let words: Vec<&str> = added.split_whitespace().take(6).collect();
    assert_eq!(words[..5], ["Member", id.as_str(), "added", "to", "cluster"], "{added}");
    assert_ne!(words[5], "0", "a cluster id from the first moment: {added}");
    assert!(added.contains("ETCD_NAME=\"node4\"") && added.contains("ETCD_INITIAL_CLUSTER_STATE=\"existing\""), "{added}");
    cluster.spawn(n4, "existing")?;
    let promoted = eventually(Duration::from_secs(15), "promote node4", || {
        let (success, out, err) = etcdctl(&ep, &["member", "promote", &id], None);
        async move {
            anyhow::ensure!(success, "{err}");
            Ok(out)
        }
    })
    .await?;
    assert_eq!(promoted.split_whitespace().take(5).collect::<Vec<_>>(), ["Member", id.as_str(), "promoted", "in", "cluster"]);
    eventually(Duration::from_secs(10), "node4 started as a voter", || {
        let list = ok(&ep, &["member", "list"]);
        let want = format!("{id}, started, node4, {peer}, http://{}, false", cluster.nodes[n4].client_addr());
        async move {
            anyhow::ensure!(list.lines().any(|l| l == want), "{list}");
            Ok(())
        }
    })
    .await?;
    let removed = ok(&ep, &["member", "remove", &id]);
    assert_eq!(removed.split_whitespace().take(5).collect::<Vec<_>>(), ["Member", id.as_str(), "removed", "from", "cluster"]);
    assert_eq!(ok(&ep, &["member", "list"]).lines().count(), 3);
    Ok(())
}

/// `etcdctl move-leader` hands Raft leadership to a follower; a learner or a stranger
/// is refused with etcd's message.
#[tokio::test]
async fn etcdctl_move_leader() -> anyhow::Result<()> {
    let cluster = Cluster::start(3)?;
    let from = wait_leader(&cluster, &[]).await?;
    let to = (from + 1) % 3;
    let all = cluster.endpoints().join(",");
    let member_id = |i: usize| {
        let addr = cluster.nodes[i].client_addr();
        async move { anyhow::Ok(Client::connect(&addr).await?.status().await?.header.map_or(0, |h| h.member_id)) }
    };
    let (from_id, to_id) = (member_id(from).await?, member_id(to).await?);
    let out = ok(&all, &["move-leader", &format!("{to_id:x}")]);
    assert_eq!(out, format!("Leadership transferred from {from_id:x} to {to_id:x}\n"));
    assert_eq!(wait_leader(&cluster, &[]).await?, to, "the new leader is the one asked for");
    assert_eq!(ok(&all, &["put", "/after-move", "1"]), "OK\n");

    let (success, _, err) = etcdctl(&all, &["move-leader", "1234"], None);
    assert!(!success && err.contains("bad leader transferee"), "{err}");
    Ok(())
}

/// Every etcdctl command group, once with `http://host:port` endpoints and once with
/// bare `host:port` ones: etcdctl dials `endpoint status|hashkv`, `defrag`, `snapshot
/// save` and `move-leader` with the endpoint string as the HTTP/2 `:authority`.
#[tokio::test]
async fn etcdctl_command_groups_with_and_without_a_scheme() -> anyhow::Result<()> {
    let cluster = Cluster::start(3)?;
    wait_leader(&cluster, &[]).await?;
    let dir = tempfile::tempdir()?;
    for (form, scheme) in [("http", "http://"), ("bare", "")] {
        let eps: Vec<String> = cluster.endpoints().iter().map(|e| format!("{scheme}{}", e.trim_start_matches("http://"))).collect();
        let (one, all) = (eps[0].clone(), eps.join(","));
        let key = format!("/{form}/k");
        assert_eq!(ok(&one, &["put", &key, "v"]), "OK\n", "{form}");
        assert_eq!(ok(&one, &["get", &key]), format!("{key}\nv\n"), "{form}");
        let txn = format!("value(\"{key}\") = \"v\"\n\nput {key} w\n\n\n");
        let (success, out, err) = etcdctl(&one, &["txn"], Some(&txn));
        assert!(success && out == "SUCCESS\n\nOK\n", "{form} txn: {out} {err}");
        let watch_ep = one.clone();
        let watch_key = key.clone();
        let watcher = std::thread::spawn(move || {
            Command::new("timeout")
                .args(["3", "etcdctl", &format!("--endpoints={watch_ep}"), "watch", &watch_key])
                .env("ETCDCTL_API", "3")
                .output()
        });
        tokio::time::sleep(Duration::from_millis(800)).await;
        assert_eq!(ok(&one, &["del", &key]), "1\n", "{form}");
        let watched = watcher.join().expect("watch thread")?;
        assert_eq!(String::from_utf8_lossy(&watched.stdout), format!("DELETE\n{key}\n\n"), "{form} watch");
        let granted = ok(&one, &["lease", "grant", "30"]);
        let lease = granted.split_whitespace().nth(1).expect("lease id").to_string();
        assert!(ok(&one, &["lease", "list"]).contains(&lease), "{form}");
        assert!(ok(&one, &["lease", "revoke", &lease]).contains("revoked"), "{form}");
        assert_eq!(ok(&all, &["member", "list"]).lines().count(), 3, "{form}");

        let status = ok(&all, &["endpoint", "status"]);
        assert_eq!(status.lines().filter(|l| l.starts_with(&format!("{scheme}127.0.0.1:"))).count(), 3, "{form} status: {status}");
        let hashes = ok(&all, &["endpoint", "hashkv"]);
        let hashes: Vec<&str> = hashes.lines().filter_map(|l| l.split(", ").nth(1)).collect();
        assert!(hashes.len() == 3 && hashes.iter().all(|h| *h == hashes[0]), "{form} hashkv: {hashes:?}");
        let (success, _, health) = etcdctl(&all, &["endpoint", "health"], None);
        assert!(success && health.matches("is healthy").count() == 3, "{form} health: {health}");
        assert_eq!(ok(&one, &["alarm", "list"]), "", "{form}");
        assert_eq!(ok(&one, &["alarm", "disarm"]), "", "{form}");
        assert!(ok(&all, &["defrag"]).matches("Finished defragmenting etcd member").count() == 3, "{form}");
        let rev = serde_json::from_str::<serde_json::Value>(&ok(&one, &["get", "-w", "json", "/none"]))?["header"]["revision"]
            .as_i64()
            .expect("revision");
        assert_eq!(ok(&one, &["compaction", &rev.to_string()]), format!("compacted revision {rev}\n"), "{form}");
        assert_eq!(ok(&one, &["lock", &format!("{form}-lock"), "echo", "held"]), "held\n", "{form}");
        let campaign = Command::new("timeout")
            .args(["2", "etcdctl", &format!("--endpoints={one}"), "elect", &format!("{form}-e"), "p1"])
            .env("ETCDCTL_API", "3")
            .output()?;
        let won = String::from_utf8_lossy(&campaign.stdout).into_owned();
        assert!(won.starts_with(&format!("{form}-e/")) && won.ends_with("\np1\n"), "{form} elect: {won:?}");
        let file = dir.path().join(format!("{form}.db"));
        let saved = ok(&one, &["snapshot", "save", &file.display().to_string()]);
        assert!(saved.contains("Snapshot saved at"), "{form} snapshot: {saved}");

        let from = wait_leader(&cluster, &[]).await?;
        let to = (from + 1) % 3;
        let to_id = Client::connect(&cluster.nodes[to].client_addr()).await?.status().await?.header.map_or(0, |h| h.member_id);
        let moved = ok(&all, &["move-leader", &format!("{to_id:x}")]);
        assert!(moved.starts_with("Leadership transferred from"), "{form} move-leader: {moved}");
        assert_eq!(wait_leader(&cluster, &[]).await?, to, "{form}");
    }
    Ok(())
}
