//! Crash test: kill -9 a node 20 times under a continuous write load (the leader at
//! least half the time) and restart it; every acknowledged write must survive and the
//! store must open every time.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use raftgres_proto::etcdserverpb::RangeRequest;
use raftgres_tests::client::Client;
use raftgres_tests::Cluster;

use crate::wait_leader;

const ROUNDS: usize = 20;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_writes_survive_twenty_kill_nines() -> anyhow::Result<()> {
    let mut cluster = Cluster::start(3)?;
    wait_leader(&cluster, &[]).await?;
    let endpoints = cluster.endpoints();
    let acked = Arc::new(Mutex::new(BTreeSet::new()));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let (acked, stop) = (acked.clone(), stop.clone());
        tokio::spawn(async move {
            let mut n = 0u64;
            // Bounded: at most 100k attempts, and it stops when told.
            while !stop.load(std::sync::atomic::Ordering::SeqCst) && n < 100_000 {
                n += 1;
                let ep = &endpoints[(n as usize) % endpoints.len()];
                let Ok(c) = Client::connect(ep).await else {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                };
                if c.put(&format!("/crash/{n:08}"), "v").await.is_ok() {
                    acked.lock().expect("lock").insert(n);
                }
            }
        })
    };
    for round in 0..ROUNDS {
        let leader = wait_leader(&cluster, &[]).await?;
        let victim = if round % 2 == 0 { leader } else { (leader + 1 + round / 2 % 2) % 3 };
        cluster.kill(victim);
        tokio::time::sleep(Duration::from_millis(400)).await;
        cluster.restart(victim)?;
        tokio::time::sleep(Duration::from_millis(600)).await;
        anyhow::ensure!(cluster.nodes[victim].is_running(), "round {round}: node did not reopen its store");
    }
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    writer.await?;
    wait_leader(&cluster, &[]).await?;
    let acked = acked.lock().expect("lock").clone();
    assert!(acked.len() > 100, "the load made progress: {} writes acknowledged", acked.len());
    for node in &cluster.nodes {
        let c = Client::connect(&node.client_addr()).await?;
        let req = RangeRequest { key: b"/crash/".to_vec(), range_end: b"/crash0".to_vec(), keys_only: true, ..Default::default() };
        let resp = c.kv().range(req).await?.into_inner();
        let present: BTreeSet<u64> =
            resp.kvs.iter().filter_map(|kv| std::str::from_utf8(&kv.key).ok()?.strip_prefix("/crash/")?.parse().ok()).collect();
        let missing: Vec<&u64> = acked.difference(&present).collect();
        assert!(
            missing.is_empty(),
            "{}: {} acknowledged writes lost, e.g. {:?}",
            node.name,
            missing.len(),
            &missing[..missing.len().min(5)]
        );
    }
    Ok(())
}
