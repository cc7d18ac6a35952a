//! etcd's plain-HTTP endpoints on the client port, beside gRPC on the same socket, read
//! with curl: `/health` (true, then false with status 503 once the member has lost its
//! quorum), `/readyz`, `/livez`, `/version`, and `/metrics` parsed as Prometheus text
//! format under etcd's names, its database size the one endpoint status reports.

use std::process::Command;
use std::time::Duration;

use prometheus_parse::Scrape;
use raftgres_tests::{eventually, Cluster};

use crate::etcdctl::etcdctl;
use crate::observability::{gauge, observations};
use crate::wait_leader;

/// curl's body and status code for a GET of `url`.
fn curl(url: &str) -> anyhow::Result<(String, u16)> {
    curl_with(&[], url)
}

/// curl's body (without one trailing newline) and status code for `url`, with `args`
/// (method, body, ...) before it.
pub fn curl_with(args: &[&str], url: &str) -> anyhow::Result<(String, u16)> {
    let out = Command::new("curl").args(["-s", "-m", "5", "-w", "\n%{http_code}"]).args(args).arg(url).output()?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').ok_or_else(|| anyhow::anyhow!("curl {url}: {text}"))?;
    Ok((body.strip_suffix('\n').unwrap_or(body).to_string(), code.parse()?))
}

#[tokio::test]
async fn the_client_port_answers_plain_http_beside_grpc() -> anyhow::Result<()> {
    let mut cluster = Cluster::start(3)?;
    wait_leader(&cluster, &[]).await?;
    let base = format!("http://{}", cluster.nodes[0].client_addr());
    assert_eq!(curl(&format!("{base}/health"))?, (r#"{"health":"true","reason":""}"#.to_string(), 200));
    assert_eq!(curl(&format!("{base}/readyz"))?, ("ok".to_string(), 200));
    assert_eq!(curl(&format!("{base}/livez"))?, ("ok".to_string(), 200));
    assert_eq!(curl(&format!("{base}/version"))?, (r#"{"etcdserver":"3.5.0","etcdcluster":"3.5.0"}"#.to_string(), 200));
    assert_eq!(curl(&format!("{base}/nothing"))?.1, 404);

    let (ok, _, err) = etcdctl(&cluster.nodes[0].client_addr(), &["put", "sized", "value"], None);
    assert!(ok, "etcdctl put: {err}");
    let (text, code) = curl(&format!("{base}/metrics"))?;
    assert_eq!(code, 200);
    let scrape = Scrape::parse(text.lines().map(|l| Ok(l.to_string())))?;
    assert_eq!(gauge(&scrape, "etcd_server_has_leader")?, 1.0);
    assert!(gauge(&scrape, "etcd_server_proposals_committed_total")? > 0.0);
    assert!(gauge(&scrape, "etcd_server_proposals_applied_total")? > 0.0);
    // The database size is the one endpoint status reports (no write in between).
    let db_size = gauge(&scrape, "etcd_mvcc_db_total_size_in_bytes")?;
    assert!(db_size > 0.0);
    let (ok, status, err) = etcdctl(&cluster.nodes[0].client_addr(), &["endpoint", "status", "-w", "json"], None);
    assert!(ok, "etcdctl endpoint status: {err}");
    let status: serde_json::Value = serde_json::from_str(&status)?;
    assert_eq!(status[0]["Status"]["dbSize"].as_f64(), Some(db_size), "{status}");
    assert_eq!(gauge(&scrape, "etcd_mvcc_db_total_size_in_use_in_bytes")?, db_size);
    assert!(gauge(&scrape, "etcd_server_quota_backend_bytes")? >= db_size);
    assert!(gauge(&scrape, "raftgres_store_disk_bytes")? > 0.0);
    assert!(observations(&scrape, "etcd_disk_wal_fsync_duration_seconds")? > 0.0);
    let changes = scrape.samples.iter().find(|s| s.metric == "etcd_server_leader_changes_seen_total").map(|s| s.value.clone());
    assert!(matches!(changes, Some(prometheus_parse::Value::Counter(v)) if v >= 1.0), "{changes:?}");

    // Alone, node1 has no quorum: unhealthy, with one of etcd's reasons (a follower may
    // still name its dead leader, and then the linearizable read times out).
    cluster.kill(1);
    cluster.kill(2);
    eventually(Duration::from_secs(10), "node1 reports itself unhealthy", || {
        let health = curl(&format!("{base}/health"));
        async move {
            let (body, code) = health?;
            let reasons = [
                r#"{"health":"false","reason":"RAFT NO LEADER"}"#,
                r#"{"health":"false","reason":"QGET ERROR:context deadline exceeded"}"#,
            ];
            anyhow::ensure!(code == 503 && reasons.contains(&body.as_str()), "{code} {body}");
            Ok(())
        }
    })
    .await?;
    assert_eq!(curl(&format!("{base}/readyz"))?.1, 503);
    assert_eq!(curl(&format!("{base}/livez"))?, ("ok".to_string(), 200));
    Ok(())
}
