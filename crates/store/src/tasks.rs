//! The background duties of a store node:
//! - **election nudge**: a safety net against split votes that repeat: after
//!   2 x election_timeout_max without a leader, a voter triggers an election after a
//!   random delay. Both nudges start with Pre-Vote (`elect(true)`, answered for real by
//!   the peers, see `network`): the term rises only when a quorum would vote, so a node
//!   cut off keeps its term and cannot depose a healthy leader when it comes back;
//! - **dead leader detection**: voters refuse to vote while their leader lease
//!   (election_timeout_max since the last heartbeat) runs, so openraft's own timer
//!   (sampled in [min, max]) usually fires too early, is refused, and waits a second
//!   full timeout. A follower that heard no heartbeat for the lease plus a small random
//!   delay starts the election itself, right when the others can vote for it;
//! - **lease expiry** (leader only, `lease_leader`): once the log is applied every
//!   deadline is reset to a full TTL; afterwards expired leases are revoked through the log;
//! - **auto-compaction** (`compactor`; the leader proposes, every member notes revisions);
//! - **publish**: a member announces its name and client address;
//! - **removal**: a member removed from the cluster stops Raft instead of campaigning.
//!
//! None of them polls while the cluster is healthy: each sleeps until Raft's server
//! state changes (an election, a membership change) or until the moment its own rule
//! could next fire (a leader silent for the lease, a lease deadline), so an idle node
//! wakes for Raft's heartbeats and little else.

use std::sync::Arc;
use std::time::{Duration, Instant};

use openraft::async_runtime::watch::WatchReceiver;
use openraft::ServerState;
use rand::Rng;

use crate::types::Request;
use crate::Store;

/// How long a member that removed itself keeps Raft running once the removal is applied,
/// so that the answer to the member-remove call gets out.
const REMOVAL_ANSWER_GRACE: Duration = Duration::from_millis(500);
/// The longest a member that saw its removal appended waits for it to be applied.
const REMOVAL_WAIT: Duration = Duration::from_secs(3);
/// How often a member looks again at its published attributes or its removal while
/// something is pending (no leader, not published yet, removal under way).
const PUBLISH_RETRY: Duration = Duration::from_millis(200);
/// How often a published member looks again without a change of leader or membership.
const PUBLISHED_RECHECK: Duration = Duration::from_secs(10);

pub(crate) fn spawn_all(store: &Arc<Store>) {
    tokio::spawn(nudge_elections(store.clone()));
    tokio::spawn(detect_dead_leader(store.clone()));
    tokio::spawn(crate::lease_leader::expire_leases(store.clone()));
    tokio::spawn(publish_member(store.clone()));
    tokio::spawn(log_leader_changes(store.clone()));
    tokio::spawn(crate::compactor::run(store.clone()));
}

/// Raft's server state (role, leader, vote, membership): it changes on elections and
/// membership changes only, not on every heartbeat or tick as the full metrics do, so
/// the duties below sleep on it instead of polling.
pub(crate) type ServerWatch =
    openraft::alias::WatchReceiverOf<crate::types::TypeConfig, openraft::metrics::RaftServerMetrics<crate::types::TypeConfig>>;

/// Waits until the server state changes or `deadline` (if any) passes; false once Raft
/// stopped (the state's sender is gone).
pub(crate) async fn changed_or(server: &mut ServerWatch, deadline: Option<tokio::time::Instant>) -> bool {
    match deadline {
        Some(at) => tokio::select! {
            changed = server.changed() => changed.is_ok(),
            () = tokio::time::sleep_until(at) => true,
        },
        None => server.changed().await.is_ok(),
    }
}

/// One log line per Raft leadership change, naming the leader, for people reading logs;
/// each leader seen is counted in the store's metrics.
async fn log_leader_changes(store: Arc<Store>) {
    let mut server = store.raft.server_metrics();
    let mut last: Option<(Option<u64>, u64)> = None;
    loop {
        let (leader, term, name) = {
            let m = server.borrow_and_update();
            let name = m.current_leader.and_then(|id| m.membership_config.membership().get_node(&id).map(|n| n.name.clone()));
            (m.current_leader, m.vote.leader_id().term, name)
        };
        if last != Some((leader, term)) {
            if leader.is_some() {
                store.metrics.leader_changes.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
            match (leader, name) {
                (Some(id), Some(name)) => tracing::info!("raft: {name} ({id:x}) is the leader in term {term}"),
                (Some(id), None) => tracing::info!("raft: {id:x} is the leader in term {term}"),
                (None, _) => tracing::info!("raft: no leader in term {term}"),
            }
            last = Some((leader, term));
        }
        if !changed_or(&mut server, None).await {
            return;
        }
    }
}

async fn nudge_elections(store: Arc<Store>) {
    let patience = store.config.timing.election_max() * 2;
    let mut server = store.raft.server_metrics();
    let mut leaderless_since: Option<tokio::time::Instant> = None;
    loop {
        if store.is_stopped() {
            return;
        }
        let leaderless_voter = {
            let m = server.borrow_and_update();
            m.current_leader.is_none() && m.membership_config.membership().voter_ids().any(|id| id == store.id)
        };
        if !leaderless_voter {
            leaderless_since = None;
            if !changed_or(&mut server, None).await {
                return;
            }
            continue;
        }
        let since = *leaderless_since.get_or_insert_with(tokio::time::Instant::now);
        if since.elapsed() <= patience {
            if !changed_or(&mut server, Some(since + patience)).await {
                return;
            }
            continue;
        }
        let jitter = rand::thread_rng().gen_range(0..store.config.timing.election_max_ms.max(1));
        tokio::time::sleep(Duration::from_millis(jitter)).await;
        if store.metrics().current_leader.is_none() {
            tracing::info!("no leader for {:?}: asking the voters for an election (pre-vote)", since.elapsed());
            if store.raft.trigger().elect(true).await.is_err() {
                return;
            }
        }
        leaderless_since = None;
    }
}

/// Sleeps until the leader would have been silent for the patience (a follower that
/// voted in this term), then looks again: no wake-up while heartbeats arrive on time.
async fn detect_dead_leader(store: Arc<Store>) {
    let lease = store.config.timing.election_max();
    let jitter_ms = (store.config.timing.election_min_ms / 2).max(1);
    let mut patience = lease + Duration::from_millis(rand::thread_rng().gen_range(0..jitter_ms));
    let mut server = store.raft.server_metrics();
    // When this node last saw its leader (or term) change: a leader it just learned of
    // has not been silent for longer than that, whenever its last heartbeat was.
    let mut following: Option<(u64, u64)> = None;
    let mut following_since = Instant::now();
    loop {
        if store.is_stopped() {
            return;
        }
        let (leader, watching) = {
            let m = server.borrow_and_update();
            let follower = m.state == ServerState::Follower && m.current_leader.is_some_and(|l| l != store.id);
            let is_voter = m.membership_config.membership().voter_ids().any(|id| id == store.id);
            (m.current_leader.map(|l| (l, m.vote.leader_id().term)), follower && is_voter)
        };
        if leader != following {
            following = leader;
            following_since = Instant::now();
        }
        if !watching {
            if !changed_or(&mut server, None).await {
                return;
            }
            continue;
        }
        let heard = store.heard_from_leader.lock().map(|h| *h).unwrap_or_else(|_| Instant::now());
        let silent_since = heard.max(following_since);
        if silent_since.elapsed() <= patience {
            if !changed_or(&mut server, Some((silent_since + patience).into())).await {
                return;
            }
            continue;
        }
        let m = store.metrics();
        tracing::info!(
            "no heartbeat from leader {:x} for {} ms: asking the voters for an election (pre-vote)",
            m.current_leader.unwrap_or(0),
            silent_since.elapsed().as_millis()
        );
        if store.raft.trigger().elect(true).await.is_err() {
            return;
        }
        // A removed follower hears no more heartbeats, and with a real pre-vote
        // it never wins one either, so it keeps its old leader forever: ask.
        if removed_per_peers(&store, &m).await {
            stop_removed(&store).await;
            return;
        }
        if let Ok(mut heard) = store.heard_from_leader.lock() {
            *heard = Instant::now();
        }
        patience = lease + Duration::from_millis(rand::thread_rng().gen_range(0..jitter_ms));
    }
}

/// Stops Raft on a member that is no longer in the cluster (it must not campaign).
async fn stop_removed(store: &Store) {
    tracing::warn!("this member was removed from the cluster: stopping Raft");
    store.shutdown().await;
}

/// A removed member may never receive the config that removes it; it finds out by
/// asking the members it knows: one with a newer membership without us settles it.
async fn removed_per_peers(store: &Store, m: &crate::types::RaftMetrics) -> bool {
    let my_index = m.membership_config.log_id().map_or(0, |l| l.index);
    for (id, node) in m.membership_config.membership().nodes() {
        if *id == store.id {
            continue;
        }
        if let Ok(status) = store.peer_status(&node.peer_addr, Duration::from_millis(300)).await {
            if status.leader.is_some() && status.membership_index > my_index && !status.members.contains(&store.id) {
                return true;
            }
        }
    }
    false
}

async fn publish_member(store: Arc<Store>) {
    let mut was_member = false;
    let mut removal_seen: Option<Instant> = None;
    let mut server = store.raft.server_metrics();
    let mut settled = false;
    loop {
        // Published under a known leader: nothing to do until the leader or the
        // membership changes (or, as a safety net, PUBLISHED_RECHECK passes).
        let wait = if settled { PUBLISHED_RECHECK } else { PUBLISH_RETRY };
        if !changed_or(&mut server, Some(tokio::time::Instant::now() + wait)).await {
            return;
        }
        settled = false;
        let server_now = server.borrow_and_update().clone();
        let m = store.metrics();
        if m.running_state.is_err() {
            return;
        }
        // openraft sends the server state before the full metrics: until they agree, the
        // full metrics may be older than the change that woke this duty, so it looks
        // again soon instead of settling on them.
        let caught_up = m.current_leader == server_now.current_leader && m.membership_config == server_now.membership_config;
        let in_membership = m.membership_config.membership().get_node(&store.id).is_some();
        if in_membership {
            was_member = true;
            removal_seen = None;
        }
        if was_member && !in_membership {
            // The config that removes this member takes effect when appended, before it
            // commits; a leader removing itself still answers the member-remove call
            // once it is applied. Stop after that and a moment for the answer to get
            // out, or after REMOVAL_WAIT (a removed follower may never hear the commit).
            let seen = *removal_seen.get_or_insert_with(Instant::now);
            let applied = m.last_applied.map_or(0, |l| l.index) >= m.membership_config.log_id().map_or(0, |l| l.index);
            if (applied && seen.elapsed() >= REMOVAL_ANSWER_GRACE) || seen.elapsed() >= REMOVAL_WAIT {
                stop_removed(&store).await;
                return;
            }
            continue;
        }
        if m.current_leader.is_none() && removed_per_peers(&store, &m).await {
            stop_removed(&store).await;
            return;
        }
        if m.current_leader.is_none() {
            continue;
        }
        let published = {
            let data = store.applied.read();
            let want = (store.config.name.as_str(), store.config.client_addr.as_str());
            data.members.get(&store.id).is_some_and(|a| (a.name.as_str(), a.client_addr.as_str()) == want)
        };
        if published {
            settled = caught_up;
            continue;
        }
        let req = Request::PublishMember { id: store.id, name: store.config.name.clone(), client_addr: store.config.client_addr.clone() };
        if let Err(e) = store.write(req).await {
            tracing::debug!("publishing member attributes: {e}");
        }
    }
}
