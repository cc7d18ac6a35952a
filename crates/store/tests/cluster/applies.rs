//! Applies that leave the Raft thread for the blocking pool (transactions, lease grants
//! and revokes, range deletes, compactions, and the snapshot's copy and encoding)
//! while snapshots are built and installed and the leader moves: every request gets
//! its answer, and every member ends with the same state.

use raftgres_mvcc::Command;
use raftgres_proto::etcdserverpb::compare::{CompareResult, CompareTarget, TargetUnion};
use raftgres_proto::etcdserverpb::request_op::Request as Op;
use raftgres_proto::etcdserverpb::{CompactionRequest, Compare, DeleteRangeRequest, PutRequest, RangeRequest, RequestOp, TxnRequest};
use raftgres_store::{RaftTiming, Store, StoreError};
use std::sync::Arc;

use crate::proxy::Link;
use crate::{eventually, Cluster, PATIENCE};

/// A snapshot every this many entries (the least allowed): several during the run, and
/// a member cut off for a few of them is sent one.
const SNAPSHOT_EVERY: u64 = 100;
/// Rounds of requests each client sends (about 6 entries each).
const ROUNDS: i64 = 60;

fn put(key: String, lease: i64) -> PutRequest {
    PutRequest { key: key.into_bytes(), value: b"v".to_vec(), lease, ..Default::default() }
}

/// Puts `key` only if it does not exist yet, else deletes it (a leader-key style
/// compare-and-swap).
fn create_or_delete(key: String) -> Command {
    let absent = Compare {
        result: CompareResult::Equal as i32,
        target: CompareTarget::Version as i32,
        key: key.clone().into_bytes(),
        range_end: vec![],
        target_union: Some(TargetUnion::Version(0)),
    };
    Command::Txn(TxnRequest {
        compare: vec![absent],
        success: vec![RequestOp { request: Some(Op::RequestPut(put(key.clone(), 0))) }],
        failure: vec![RequestOp {
            request: Some(Op::RequestDeleteRange(DeleteRangeRequest { key: key.into_bytes(), ..Default::default() })),
        }],
    })
}

/// One round of client `c`: a lease and a key on it, a transaction, a range delete, the
/// lease revoked, and every tenth round a compaction.
fn round(c: i64, r: i64, revision: i64) -> Vec<Command> {
    let lease = c * 1_000_000 + r + 1;
    let mut commands = vec![
        Command::LeaseGrant { id: lease, ttl: 60 },
        Command::Put(put(format!("c{c}/leased/{r}"), lease)),
        Command::Put(put(format!("c{c}/plain/{r}"), 0)),
        create_or_delete(format!("c{c}/cas")),
        Command::DeleteRange(DeleteRangeRequest {
            key: format!("c{c}/plain/").into_bytes(),
            range_end: format!("c{c}/plain0").into_bytes(),
            ..Default::default()
        }),
        Command::LeaseRevoke { id: lease },
    ];
    if r % 10 == 9 {
        commands.push(Command::Compact(CompactionRequest { revision, ..Default::default() }));
    }
    commands
}

/// Sends every round of client `c` through `store`; returns each request that was not
/// answered within [`PATIENCE`] or failed with anything but a clear "ask again later"
/// (the leader moved, or is being elected).
async fn client(store: Arc<Store>, c: i64) -> Vec<String> {
    let mut failed = Vec::new();
    for r in 0..ROUNDS {
        let revision = store.applied().read().mvcc.revision();
        for command in round(c, r, revision) {
            let what = format!("client {c} round {r}: {command:?}");
            match tokio::time::timeout(PATIENCE, store.kv(command)).await {
                Err(_) => failed.push(format!("{what}: no answer within {PATIENCE:?}")),
                Ok(Ok(_)) | Ok(Err(StoreError::LeaderChanged | StoreError::NotLeader { .. } | StoreError::NoLeader)) => {}
                Ok(Err(e)) => failed.push(format!("{what}: {e}")),
            }
        }
    }
    failed
}

/// What must be the same on every member once each applied the whole log.
#[derive(Debug, PartialEq)]
struct State {
    revision: i64,
    /// Every key with the revision that last changed it.
    keys: Vec<(Vec<u8>, i64)>,
    leases: Vec<i64>,
}

fn state_of(cluster: &Cluster, i: usize) -> State {
    let data = cluster.members[i].store().applied().read();
    let all = RangeRequest { key: vec![0], range_end: vec![0], ..Default::default() };
    let keys = data.mvcc.range(&all).expect("a range of everything").kvs.into_iter().map(|kv| (kv.key, kv.mod_revision)).collect();
    State { revision: data.mvcc.revision(), keys, leases: data.mvcc.leases().into_iter().map(|l| l.id).collect() }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_request_is_answered_while_snapshots_are_installed_and_the_leader_moves() {
    let timing = RaftTiming { snapshot_every: SNAPSHOT_EVERY, ..RaftTiming::default() };
    let cluster = Cluster::start_with(3, timing).await;
    let leader = cluster.leader().await;
    let (other, cut) = ((leader + 1) % 3, (leader + 2) % 3);
    // Clients through the leader and the member that stays connected.
    let clients: Vec<_> =
        [leader, other].into_iter().zip(0..).map(|(i, c)| tokio::spawn(client(cluster.members[i].store().clone(), c))).collect();

    // One member misses many snapshots' worth of entries: it is sent a snapshot when back.
    let applied = |i: usize| cluster.members[i].store().applied().applied_index();
    let written_by = |i: usize, entries: u64| {
        let start = applied(i);
        move || async move { (applied(i) >= start + entries).then_some(()) }
    };
    cluster.members[cut].proxy.set(Link::Down);
    eventually("a snapshot's worth of writes", written_by(leader, SNAPSHOT_EVERY)).await;
    let to_other = cluster.members[other].id();
    cluster.members[leader].store().move_leader(to_other).await.expect("leadership moves while a member is cut off");
    eventually("two more snapshots' worth of writes", written_by(other, 2 * SNAPSHOT_EVERY)).await;
    // The leader purges only after a snapshot, and not while a replication to the cut
    // member still reads those entries: keep writing until it has (the clients may be
    // done by then).
    let purged = eventually("the leader purged the log the cut member lacks", || async {
        let purged = cluster.members[other].store().metrics().purged.map_or(0, |p| p.index);
        if purged > cluster.members[cut].store().metrics().last_log_index.unwrap_or(0) {
            return Some(purged);
        }
        let _ = cluster.members[other].store().kv(Command::Put(put("more".into(), 0))).await;
        None
    })
    .await;
    cluster.members[cut].proxy.set(Link::Up);
    let to_cut = cluster.members[cut].id();
    let written = applied(other);
    let caught_up = || async { (applied(cut) >= written).then_some(()) };
    eventually("the member cut off caught up", caught_up).await;
    let installed = cluster.members[cut].store().metrics().snapshot.map_or(0, |s| s.index);
    assert!(
        installed >= purged,
        "the member cut off caught up without the snapshot it needed (snapshot at {installed}, log purged to {purged})"
    );
    cluster.members[other].store().move_leader(to_cut).await.expect("leadership moves to the member that was cut off");

    let mut failed = Vec::new();
    for client in clients {
        failed.extend(client.await.expect("the client task ends"));
    }
    assert!(failed.is_empty(), "{} requests failed:\n{}", failed.len(), failed.join("\n"));
    for i in 0..3 {
        assert!(cluster.members[i].store().metrics().snapshot.is_some(), "member {i} has no snapshot");
    }
    let states = eventually("every member applied the same log", || async {
        let states: Vec<_> = (0..3).map(|i| state_of(&cluster, i)).collect();
        states.iter().all(|s| *s == states[0]).then_some(states)
    })
    .await;
    assert!(states[0].revision > 0, "nothing was written");
}
