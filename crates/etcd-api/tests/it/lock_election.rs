//! The server-side recipes: `v3lockpb.Lock` and `v3electionpb.Election`.

use std::time::Duration;

use raftgres_proto::v3electionpb::election_client::ElectionClient;
use raftgres_proto::v3electionpb::{CampaignRequest, LeaderRequest, ProclaimRequest, ResignRequest};
use raftgres_proto::v3lockpb::lock_client::LockClient;
use raftgres_proto::v3lockpb::{LockRequest, UnlockRequest};
use tonic::Code;

use crate::{still_pending, within, Node};

#[tokio::test(flavor = "multi_thread")]
async fn lock_is_exclusive_and_passes_on_unlock() {
    let node = Node::start().await;
    let (a, b) = (node.grant(30).await, node.grant(30).await);
    let mut lock = LockClient::new(node.channel.clone());
    let held = within(lock.lock(LockRequest { name: "job".into(), lease: a })).await.expect("lock").into_inner();
    assert_eq!(held.key, format!("job/{a:x}").into_bytes());

    let mut waiter = LockClient::new(node.channel.clone());
    let mut second = Box::pin(async move { waiter.lock(LockRequest { name: "job".into(), lease: b }).await });
    assert!(still_pending(&mut second, Duration::from_millis(500)).await, "second locker must wait");
    within(lock.unlock(UnlockRequest { key: held.key })).await.expect("unlock");
    let got = within(second).await.expect("second gets the lock").into_inner();
    assert_eq!(got.key, format!("job/{b:x}").into_bytes());

    let unknown = within(lock.lock(LockRequest { name: "job2".into(), lease: 777 })).await.expect_err("no lease");
    assert_eq!(unknown.code(), Code::NotFound);
}

#[tokio::test(flavor = "multi_thread")]
async fn abandoned_lock_waits_give_their_place_up() {
    let node = Node::start().await;
    let (a, b) = (node.grant(30).await, node.grant(30).await);
    let mut lock = LockClient::new(node.channel.clone());
    within(lock.lock(LockRequest { name: "q".into(), lease: a })).await.expect("lock");
    let mut waiter = LockClient::new(node.channel.clone());
    let attempt = tokio::time::timeout(Duration::from_millis(300), waiter.lock(LockRequest { name: "q".into(), lease: b }));
    assert!(attempt.await.is_err(), "waits, then the client gives up");
    let key = format!("q/{b:x}");
    let mut gone = false;
    for _ in 0..50 {
        let get = raftgres_proto::etcdserverpb::RangeRequest { key: key.clone().into_bytes(), ..Default::default() };
        if within(node.kv().range(get)).await.expect("range").into_inner().kvs.is_empty() {
            gone = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(gone, "the abandoned waiter's key is deleted");
}

#[tokio::test(flavor = "multi_thread")]
async fn election_campaign_proclaim_observe_resign() {
    let node = Node::start().await;
    let (a, b) = (node.grant(30).await, node.grant(30).await);
    let mut election = ElectionClient::new(node.channel.clone());
    let no_one = within(election.leader(LeaderRequest { name: "e".into() })).await.expect_err("no leader yet");
    assert_eq!(no_one.message(), "election: no leader");

    let mut observer = within(election.observe(LeaderRequest { name: "e".into() })).await.expect("observe").into_inner();
    let campaign = CampaignRequest { name: "e".into(), lease: a, value: "a1".into() };
    let leader_a = within(election.campaign(campaign)).await.expect("campaign").into_inner().leader.expect("leader key");
    let seen = within(observer.message()).await.expect("ok").expect("first leader");
    assert_eq!(seen.kv.expect("kv").value, b"a1");

    within(election.proclaim(ProclaimRequest { leader: Some(leader_a.clone()), value: "a2".into() })).await.expect("proclaim");
    let seen = within(observer.message()).await.expect("ok").expect("new value");
    assert_eq!(seen.kv.expect("kv").value, b"a2");
    let now = within(election.leader(LeaderRequest { name: "e".into() })).await.expect("leader").into_inner();
    assert_eq!(now.kv.expect("kv").value, b"a2");

    let mut other = ElectionClient::new(node.channel.clone());
    let mut second = Box::pin(async move { other.campaign(CampaignRequest { name: "e".into(), lease: b, value: "b1".into() }).await });
    assert!(still_pending(&mut second, Duration::from_millis(500)).await, "b waits for a");
    within(election.resign(ResignRequest { leader: Some(leader_a.clone()) })).await.expect("resign");
    let leader_b = within(second).await.expect("b leads").into_inner().leader.expect("leader key");
    assert_eq!(leader_b.lease, b);
    let seen = within(observer.message()).await.expect("ok").expect("next leader");
    assert_eq!(seen.kv.expect("kv").value, b"b1");

    let stale = within(election.proclaim(ProclaimRequest { leader: Some(leader_a), value: "x".into() })).await;
    assert_eq!(stale.expect_err("a resigned").message(), "election: not leader");
    let missing = within(election.resign(ResignRequest { leader: None })).await.expect_err("no leader key");
    assert_eq!(missing.message(), "\"leader\" field must be provided");
}
