//! Moving Raft leadership (etcd's MoveLeader) while it is already moving.

use crate::{Cluster, PATIENCE};

/// What `raftctl chaos` met before its bridge round: the primary's agent moves Raft
/// leadership off its node (to one voter) while the runner asks, through another
/// member, that this other member lead. Each request must get its answer, not wait
/// out the request timeout because the leader it was forwarded to stopped leading.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_leader_moves_at_once_each_get_their_answer() {
    let cluster = Cluster::start(3).await;
    for round in 0..3 {
        let leader = cluster.leader().await;
        let (a, b) = ((leader + 1) % 3, (leader + 2) % 3);
        let by_leader = cluster.members[leader].store().clone();
        let by_b = cluster.members[b].store().clone();
        let (to_a, to_b) = (cluster.members[a].id(), cluster.members[b].id());
        let (moved_a, moved_b) = tokio::join!(
            tokio::time::timeout(PATIENCE, by_leader.move_leader(to_a)),
            tokio::time::timeout(PATIENCE, by_b.move_leader(to_b)),
        );
        let moved_a = moved_a.expect("the move to a was answered");
        let moved_b = moved_b.expect("the move to b was answered");
        assert!(moved_a.is_ok() && moved_b.is_ok(), "round {round}: move to a: {moved_a:?}, move to b: {moved_b:?}");
        let now = cluster.members[cluster.leader().await].id();
        assert!(now == to_a || now == to_b, "round {round}: leadership went to neither target");
    }
}
