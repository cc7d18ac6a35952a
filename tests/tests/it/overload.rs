//! Under client overload the store keeps its leader (issue 20 item 6): 500 concurrent
//! writers for a bounded time against a 3-node store, then every node names the same
//! leader in the same term as before, and no write was refused with `leader changed`
//! or `no leader`. Heartbeats must not wait behind client work (the store's
//! `raft_runtime`).

use std::time::{Duration, Instant};

use raftgres_tests::client::Client;
use raftgres_tests::Cluster;

use crate::wait_leader;

const CLIENTS: usize = 500;
const LOAD_FOR: Duration = Duration::from_secs(15);
/// etcdctl check perf's value size.
const VALUE_BYTES: usize = 256;

/// Each node's (raft term, leader id).
async fn terms_and_leaders(cluster: &Cluster) -> anyhow::Result<Vec<(u64, u64)>> {
    let mut seen = Vec::new();
    for node in &cluster.nodes {
        let status = Client::connect(&node.client_addr()).await?.status().await?;
        seen.push((status.raft_term, status.leader));
    }
    Ok(seen)
}

/// One writer: puts its own key until `until`; how many succeeded and each error.
async fn write_until(client: Client, key: String, until: Instant) -> (u64, Vec<String>) {
    let value = "v".repeat(VALUE_BYTES);
    let (mut done, mut errors) = (0, Vec::new());
    while Instant::now() < until {
        match client.put(&key, &value).await {
            Ok(_) => done += 1,
            Err(e) => errors.push(format!("{e:#}")),
        }
    }
    (done, errors)
}

#[tokio::test]
async fn five_hundred_writers_do_not_move_the_leader() -> anyhow::Result<()> {
    let cluster = Cluster::start(3)?;
    wait_leader(&cluster, &[]).await?;
    let before = terms_and_leaders(&cluster).await?;

    let mut clients = Vec::with_capacity(CLIENTS);
    for i in 0..CLIENTS {
        clients.push(Client::connect(&cluster.nodes[i % cluster.nodes.len()].client_addr()).await?);
    }
    let until = Instant::now() + LOAD_FOR;
    let writers: Vec<_> =
        clients.into_iter().enumerate().map(|(i, c)| tokio::spawn(write_until(c, format!("/overload/{i}"), until))).collect();
    let (mut done, mut errors) = (0, Vec::new());
    for writer in writers {
        let (n, e) = writer.await?;
        done += n;
        errors.extend(e);
    }

    let after = terms_and_leaders(&cluster).await?;
    let logs = cluster.logs();
    assert_eq!(before, after, "the leader or its term changed under load ({done} writes, errors {errors:?})\n{logs}");
    let lost: Vec<_> = errors.iter().filter(|e| e.contains("leader changed") || e.contains("no leader")).collect();
    assert!(lost.is_empty(), "{} writes refused for a leader change: {:?}\n{logs}", lost.len(), lost.first());
    assert!(done >= CLIENTS as u64, "only {done} writes in {LOAD_FOR:?} (errors: {errors:?})");
    eprintln!("{done} writes by {CLIENTS} clients in {LOAD_FOR:?}, {} other errors, term {} throughout", errors.len(), before[0].0);
    Ok(())
}
