//! Small read-only views the etcd API layer needs on every response or stream, cheap
//! enough to call per request: the current Raft term, the election timeout, and whether
//! this node currently knows a leader (etcd's `hasleader` stream check).
//!
//! Must not change any state: it only borrows Raft metrics and the configuration.

use std::time::Duration;

use openraft::async_runtime::watch::WatchReceiver;
use openraft::{Instant, ServerState};

use crate::Store;

impl Store {
    /// The Raft term this node is in (for etcd response headers).
    pub fn current_term(&self) -> u64 {
        self.raft.metrics().borrow_watched().current_term
    }

    /// The longest election timeout: how long followers wait before campaigning.
    pub fn election_timeout(&self) -> Duration {
        self.config.timing.election_max()
    }

    /// True if this node knows a leader. A node that thinks it leads also needs a quorum
    /// acknowledgement within the last election timeout: an openraft leader never
    /// steps down by itself, while an etcd leader would have (check-quorum). A leader
    /// that is the only voter is its own quorum.
    pub fn has_leader(&self) -> bool {
        let metrics = self.raft.metrics();
        let m = metrics.borrow_watched();
        match m.current_leader {
            None => false,
            Some(leader) if leader == self.id => {
                // The only voter is its own quorum: nothing acknowledges it while idle.
                let alone = m.membership_config.membership().voter_ids().all(|id| id == self.id);
                // An absolute time: stale metrics cannot make an old acknowledgement look recent.
                let quorum_recent = match &m.last_quorum_acked {
                    Some(acked) => alone || acked.elapsed() <= self.election_timeout(),
                    None => true,
                };
                m.state == ServerState::Leader && quorum_recent
            }
            Some(_) => true,
        }
    }
}
