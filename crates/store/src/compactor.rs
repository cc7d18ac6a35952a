//! Auto-compaction, the effects: every member notes the store revision on the policy's
//! tick (so that a new leader can compact at once, with the history it saw as a
//! follower); only the leader decides ([`Samples::to_compact`]) and proposes a
//! Compaction, the same command `etcdctl compaction` replicates, so every member
//! compacts at the same revision. Followers never propose.

use std::sync::Arc;
use std::time::Instant;

use raftgres_mvcc::Command;
use raftgres_proto::etcdserverpb::CompactionRequest;

use crate::forward::{ForwardRequest, ForwardResponse};
use crate::retention::{AutoCompaction, Sample, Samples};
use crate::types::{Request, Response};
use crate::Store;

pub(crate) async fn run(store: Arc<Store>) {
    let policy = store.config.auto_compaction;
    if policy == AutoCompaction::Off {
        tracing::info!("auto-compaction is off: the history grows until someone runs `etcdctl compaction`");
        return;
    }
    let started = Instant::now();
    let mut samples = Samples::new(policy);
    // The first compaction of each leadership is logged at info, the rest at debug.
    let mut logged_term = None;
    loop {
        tokio::time::sleep(policy.tick()).await;
        if store.is_stopped() {
            return;
        }
        let (current, compacted) = {
            let data = store.applied.read();
            (data.mvcc.revision(), data.mvcc.compact_revision())
        };
        let now = started.elapsed();
        samples.note(Sample { at: now, revision: current });
        if !store.is_leader() {
            continue;
        }
        let Some(revision) = samples.to_compact(now, current, compacted) else { continue };
        let compact = Command::Compact(CompactionRequest { revision, physical: false });
        // Not forwarded: should this node have just lost the leadership, it answers
        // NotLeader and the new leader compacts on its own tick.
        match store.serve_forwarded(ForwardRequest::Write(Request::Kv(compact))).await {
            Ok(ForwardResponse::Write(Response::Kv(Ok(_)))) => {
                let term = store.current_term();
                if logged_term != Some(term) {
                    tracing::info!(
                        "auto-compaction ({policy}): compacted the history at revision {revision} (further ones are logged at debug)"
                    );
                    logged_term = Some(term);
                } else {
                    tracing::debug!("auto-compaction: compacted at revision {revision}");
                }
            }
            // Someone compacted further in the meantime.
            Ok(ForwardResponse::Write(Response::Kv(Err(e)))) => tracing::debug!("auto-compaction at {revision}: {e}"),
            Ok(other) => tracing::warn!("auto-compaction at {revision}: unexpected answer {other:?}"),
            Err(e) => tracing::debug!("auto-compaction at {revision}: {e}"),
        }
    }
}
