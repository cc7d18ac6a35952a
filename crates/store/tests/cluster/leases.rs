//! Lease expiry and keep-alive across a leader change.

use std::sync::Arc;
use std::time::{Duration, Instant};

use raftgres_mvcc::Command;
use raftgres_store::{Request, Store};

use crate::proxy::Link;
use crate::{eventually, Cluster, PATIENCE};

fn has_lease(store: &Store, id: i64) -> bool {
    store.applied().read().mvcc.lease(id).is_some()
}

/// Many leases that expire at the same instant are all revoked at once, not one Raft
/// write after the other.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leases_expiring_together_are_revoked_together() {
    const LEASES: i64 = 200;
    let cluster = Cluster::start(3).await;
    let store = cluster.members[cluster.leader().await].store().clone();
    let grants = (1..=LEASES).map(|id| Request::Kv(Command::LeaseGrant { id, ttl: 1 })).collect();
    store.write(Request::Batch(grants)).await.expect("the grants are written");
    let granted = Instant::now();
    eventually("every lease revoked", || async { (1..=LEASES).all(|id| !has_lease(&store, id)).then_some(()) }).await;
    let late = granted.elapsed().saturating_sub(Duration::from_secs(1));
    println!("{LEASES} leases revoked {late:?} after they expired");
    assert!(late < Duration::from_millis(500), "{LEASES} leases revoked {late:?} after they expired");
}

/// A keep-alive that arrives after a lease's deadline, while its revoke is on its way
/// through the log (40 ms there and back to the followers), is answered "not found"
/// once the revoke is applied: it never promises a TTL the log is about to end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_keep_alive_after_the_deadline_does_not_bring_the_lease_back() {
    const ID: i64 = 77;
    let cluster = Cluster::start(3).await;
    let leader = cluster.leader().await;
    for i in (0..3).filter(|&i| i != leader) {
        cluster.members[i].proxy.set(Link::Slow(Duration::from_millis(20)));
    }
    let store = cluster.members[leader].store().clone();
    store.kv(Command::LeaseGrant { id: ID, ttl: 1 }).await.expect("granted").expect("a new lease");
    // The deadline was set when the grant was applied, before the answer: 25 ms past it
    // the expiry tick (every 20 ms) has proposed the revoke, which is not committed yet.
    tokio::time::sleep(Duration::from_millis(1025)).await;
    let answer = store.lease_keep_alive(ID).await.expect("an answer");
    assert_eq!(answer, None, "a keep-alive after the deadline renewed the lease");
    assert!(!has_lease(&store, ID), "answered 'not found' before the revoke was applied");
}

/// Keeps renewing `id` through `store` until `stop`; returns every TTL a keep-alive answered.
async fn renew_until(store: Arc<Store>, id: i64, stop: Instant) -> Vec<i64> {
    let mut renewed = Vec::new();
    while Instant::now() < stop && has_lease(&store, id) {
        if let Ok(Ok(Some(ttl))) = tokio::time::timeout(Duration::from_secs(1), store.lease_keep_alive(id)).await {
            renewed.push(ttl);
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    renewed
}

/// The leader dies after its revoke of a lease reached both followers' logs but before
/// it was committed. The next leader commits the revoke with its first entry: until it
/// has applied that, it must not renew the lease (it would promise a TTL to a lease its
/// own log is about to delete).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_new_leader_never_renews_a_lease_its_log_revokes() {
    const ID: i64 = 4242;
    let cluster = Cluster::start(3).await;
    let leader = cluster.leader().await;
    let followers: Vec<usize> = (0..3).filter(|&i| i != leader).collect();
    let store = cluster.members[leader].store().clone();
    store.kv(Command::LeaseGrant { id: ID, ttl: 30 }).await.expect("granted").expect("a new lease");
    eventually("every member applied the grant", || async { cluster.members.iter().all(|m| has_lease(m.store(), ID)).then_some(()) }).await;

    let logged = |i: usize| cluster.members[i].store().metrics().last_log_index.unwrap_or(0);
    let before: Vec<u64> = followers.iter().map(|&i| logged(i)).collect();
    for &i in &followers {
        cluster.members[i].proxy.set(Link::Mute);
    }
    let revoking = tokio::spawn(async move { store.kv(Command::LeaseRevoke { id: ID }).await });
    eventually("the revoke is in both followers' logs", || async {
        followers.iter().zip(&before).all(|(&i, &b)| logged(i) > b).then_some(())
    })
    .await;
    cluster.kill(leader).await;
    revoking.abort();
    // The new leader's first entry needs the other follower: 40 ms there and back.
    for &i in &followers {
        cluster.members[i].proxy.set(Link::Slow(Duration::from_millis(20)));
    }

    let stop = Instant::now() + PATIENCE;
    let spammers: Vec<_> = followers.iter().map(|&i| tokio::spawn(renew_until(cluster.members[i].store().clone(), ID, stop))).collect();
    for (spammer, &i) in spammers.into_iter().zip(&followers) {
        let renewed = spammer.await.expect("the keep-alive task");
        assert!(renewed.is_empty(), "n{} renewed the revoked lease: TTLs {renewed:?}", i + 1);
        assert!(!has_lease(cluster.members[i].store(), ID), "n{} still has the lease after {PATIENCE:?}", i + 1);
    }
}

/// Leadership moves round the members; each new leader revokes a lease that nobody keeps
/// alive, within its TTL of taking over. (The expiry duty once decided from Raft's full
/// metrics while sleeping on its server state, which openraft sends first: woken by its
/// own election, it could read "follower" and sleep through its whole term.)
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_new_leader_revokes_the_leases_nobody_keeps_alive() {
    let cluster = Cluster::start(3).await;
    for id in 1..=10 {
        let leader = cluster.leader().await;
        let store = cluster.members[leader].store().clone();
        store.kv(Command::LeaseGrant { id, ttl: 1 }).await.expect("granted").expect("a new lease");
        eventually("every member applied the grant", || async { cluster.members.iter().all(|m| has_lease(m.store(), id)).then_some(()) })
            .await;
        let target = (leader + 1) % 3;
        store.move_leader(cluster.members[target].id()).await.expect("leadership moved");
        let new = cluster.leader().await;
        assert_eq!(new, target, "the leader is the member leadership moved to");
        eventually("the new leader revoked the lease", || async { (!has_lease(cluster.members[new].store(), id)).then_some(()) }).await;
    }
}
