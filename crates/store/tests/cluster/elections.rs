//! Terms stay put while a member is cut off (Pre-Vote), and a dead leader is still
//! replaced quickly.

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

/// A follower that hears nothing for 12 s (what it sends still arrives, and is refused
/// while the leader lives) comes back in the leader's term and follows it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_cut_off_for_12_s_does_not_depose_the_leader() {
    let cluster = Cluster::start(3).await;
    let leader = cluster.leader().await;
    let (leader_id, term) = (cluster.members[leader].id(), cluster.max_term());
    let cut = (leader + 1) % 3;
    cluster.members[cut].proxy.set(Link::Down);
    tokio::time::sleep(Duration::from_secs(12)).await;
    let term_while_cut = cluster.members[cut].term();
    cluster.members[cut].proxy.set(Link::Up);
    // Time for an inflated term to do its harm.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let after = cluster.leader().await;
    let term_after = cluster.max_term();
    assert!(
        term_after <= term + 3,
        "term {term} before the cut, n{} reached {term_while_cut} while cut off, {term_after} after the heal",
        cut + 1
    );
    assert_eq!(cluster.members[after].id(), leader_id, "the healthy leader n{} was deposed", leader + 1);
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
/// must keep that (the leader lease is 400 ms, plus up to 125 ms of jitter).
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
