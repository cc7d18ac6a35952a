//! Lease safety across a Raft leader crash: a lease kept alive never expires; a lease
//! nobody keeps alive expires within TTL + 2 s (a new leader resets every lease to a
//! full TTL, so expiry can be late by one failover, never early).

use std::time::{Duration, Instant};

use raftgres_proto::etcdserverpb::{LeaseGrantRequest, LeaseKeepAliveRequest, PutRequest};
use raftgres_tests::client::Client;
use raftgres_tests::Cluster;

use crate::wait_leader;

const TTL: i64 = 3;

async fn grant_with_key(c: &Client, key: &str) -> anyhow::Result<i64> {
    let id = c.lease().lease_grant(LeaseGrantRequest { ttl: TTL, id: 0 }).await?.into_inner().id;
    c.kv().put(PutRequest { key: key.into(), value: b"v".to_vec(), lease: id, ..Default::default() }).await?;
    Ok(id)
}

async fn keep_alive(c: &Client, id: i64) -> anyhow::Result<i64> {
    let stream = tokio_stream_iter(LeaseKeepAliveRequest { id });
    let mut replies = c.lease().lease_keep_alive(stream).await?.into_inner();
    let reply = replies.message().await?.ok_or_else(|| anyhow::anyhow!("no keep-alive reply"))?;
    Ok(reply.ttl)
}

fn tokio_stream_iter(req: LeaseKeepAliveRequest) -> impl futures::Stream<Item = LeaseKeepAliveRequest> {
    futures::stream::iter(vec![req])
}

#[tokio::test]
async fn kept_alive_leases_survive_a_leader_crash_and_others_expire_on_time() -> anyhow::Result<()> {
    let mut cluster = Cluster::start(3)?;
    let leader = wait_leader(&cluster, &[]).await?;
    let survivor = (leader + 1) % 3;
    let c = Client::connect(&cluster.nodes[survivor].client_addr()).await?;
    let kept = grant_with_key(&c, "/kept").await?;
    let granted_at = Instant::now();
    grant_with_key(&c, "/unkept").await?;

    tokio::time::sleep(Duration::from_millis(500)).await;
    cluster.kill(leader);
    let mut unkept_gone_after = None;
    let deadline = Instant::now() + Duration::from_secs(9);
    let mut last_keep_alive = Instant::now() - Duration::from_secs(10);
    while Instant::now() < deadline {
        if last_keep_alive.elapsed() >= Duration::from_secs(1) {
            // A keep-alive may fail while there is no leader; the client retries next second.
            if let Ok(ttl) = keep_alive(&c, kept).await {
                assert_eq!(ttl, TTL, "keep-alive of a live lease returns its TTL");
                last_keep_alive = Instant::now();
            }
        }
        let kept_value = c.get_with("/kept", true).await?;
        assert!(kept_value.is_some(), "a kept-alive lease expired {:?} after grant", granted_at.elapsed());
        if unkept_gone_after.is_none() && c.get_with("/unkept", true).await?.is_none() {
            unkept_gone_after = Some(granted_at.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let gone = unkept_gone_after.ok_or_else(|| anyhow::anyhow!("the unkept lease never expired"))?;
    assert!(gone >= Duration::from_secs(TTL as u64), "expired early: {gone:?}");
    assert!(gone <= Duration::from_secs(TTL as u64 + 2) + Duration::from_millis(500), "expired late: {gone:?}");
    assert!(c.get("/kept").await?.is_some(), "kept key still there (linearizable read)");
    Ok(())
}
