//! Terms stay put while a member is cut off (Pre-Vote), a dead leader is still
//! replaced quickly, and a lone voter keeps knowing it leads.

use std::time::{Duration, Instant};

use crate::proxy::Link;
use crate::Cluster;

/// A voter that reaches nobody neither wins nor raises its term, however long it tries:
/// every Pre-Vote fails, so it never starts a real election.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_voter_that_reaches_nobody_keeps_its_term() {
    let mut cluster = Cluster::prepare(3).await;
    cluster.members[1].proxy.set(Link::Down);
    cluster.members[2].proxy.set(Link::Down);
    cluster.start_member(0).await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    let term = cluster.members[0].term();
    assert!(term <= 1, "alone for 5 s, n1 went up to term {term}");
}

/// A single-voter cluster's leader is its own quorum: idle for several election
/// timeouts it still has a leader (etcd's `/health`, `endpoint status` and `hasleader`
/// streams ask this). Before, nothing acknowledged an idle lone leader, so it reported
/// "no leader" a second after its last write.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lone_voter_keeps_its_leader_while_idle() {
    let cluster = Cluster::start(1).await;
    let store = cluster.members[0].store();
    tokio::time::sleep(store.election_timeout() * 4).await;
    assert!(store.has_leader(), "a single-voter leader reported no leader after {:?} idle", store.election_timeout() * 4);
}

/// What a 12 s cut showed: the highest term before, during (on the cut members) and
/// after, and the leader before and after.
struct Cut {
    term_before: u64,
    term_while_cut: u64,
    term_after: u64,
    leader_before: u64,
    leader_after: u64,
}

/// Nothing reaches the members `cut(leader)` for 12 s (what they send still arrives);
/// then the links come back and the cluster has 3 s to settle.
async fn cut_off_for_12_s(cut: impl Fn(usize) -> Vec<usize>) -> Cut {
    let cluster = Cluster::start(3).await;
    let leader = cluster.leader().await;
    let (leader_before, term_before) = (cluster.members[leader].id(), cluster.max_term());
    let cut = cut(leader);
    for &i in &cut {
        cluster.members[i].proxy.set(Link::Down);
    }
    tokio::time::sleep(Duration::from_secs(12)).await;
    let term_while_cut = cut.iter().map(|&i| cluster.members[i].term()).max().unwrap_or(0);
    for &i in &cut {
        cluster.members[i].proxy.set(Link::Up);
    }
    // Time for an inflated term to do its harm.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let after = cluster.leader().await;
    Cut { term_before, term_while_cut, term_after: cluster.max_term(), leader_before, leader_after: cluster.members[after].id() }
}

impl std::fmt::Display for Cut {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "term {} before the cut, {} while cut off, {} after the heal", self.term_before, self.term_while_cut, self.term_after)
    }
}

/// A follower that hears nothing for 12 s (its Pre-Votes reach the others, which
/// refuse while the leader lives) comes back in the leader's term and follows it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_cut_off_for_12_s_does_not_depose_the_leader() {
    let cut = cut_off_for_12_s(|leader| vec![(leader + 1) % 3]).await;
    assert!(cut.term_after <= cut.term_before + 3, "{cut}");
    assert_eq!(cut.leader_after, cut.leader_before, "the healthy leader was deposed: {cut}");
}

/// Every member alone for 12 s (as when the primary and a replica are cut off at once):
/// nobody can win, so nobody raises its term, and the cluster comes back in about the
/// term it had.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_member_cut_off_for_12_s_comes_back_in_about_the_same_term() {
    let cut = cut_off_for_12_s(|_| vec![0, 1, 2]).await;
    assert!(cut.term_after <= cut.term_before + 3, "{cut}");
}

/// How long the survivors take to agree on a new leader after the leader dies.
async fn failover_time() -> Duration {
    let cluster = Cluster::start(3).await;
    let leader = cluster.leader().await;
    // Let heartbeats settle, as in a cluster that has been up a while.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let killed = Instant::now();
    cluster.kill(leader).await;
    let after = cluster.leader().await;
    assert_ne!(after, leader);
    killed.elapsed()
}

/// The election nudges exist to replace a dead leader fast; going through Pre-Vote
/// must keep that (the leader lease is 480 ms, plus up to 150 ms of jitter).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_leader_is_replaced_within_a_second() {
    let mut times = Vec::new();
    for _ in 0..3 {
        times.push(failover_time().await);
    }
    println!("failover times: {times:?}");
    let slowest = times.iter().max().copied().unwrap_or_default();
    assert!(slowest < Duration::from_secs(1), "failover times {times:?}");
}
