//! etcd's `hasleader` check. Clients put gRPC metadata `hasleader: true` on requests
//! that are useless without a leader (etcdctl on watch streams, clientv3 on lease
//! keep-alive streams). Such a request is refused at once with Unavailable
//! "etcdserver: no leader" when this node knows no leader, and a stream already open is
//! cancelled the same way once no leader has been seen for 3 election timeouts in a row
//! (etcd's `monitorLeader`), so clients move to a healthier member.

use std::sync::Arc;

use raftgres_store::Store;
use tokio::time::{interval, Interval, MissedTickBehavior};
use tonic::metadata::MetadataMap;
use tonic::service::Interceptor;
use tonic::Status;

use crate::error::no_leader;

/// The metadata key and value etcd clients send (`rpctypes.MetadataRequireLeaderKey`).
pub const REQUIRE_LEADER_KEY: &str = "hasleader";
pub const REQUIRE_LEADER_VALUE: &str = "true";

/// How many election timeouts without a leader end a `hasleader` stream.
const MAX_LEADERLESS_TICKS: u32 = 3;

/// True if the request asks to be served only while there is a leader.
pub fn requires_leader(metadata: &MetadataMap) -> bool {
    metadata.get(REQUIRE_LEADER_KEY).and_then(|v| v.to_str().ok()) == Some(REQUIRE_LEADER_VALUE)
}

/// Refuses `hasleader` requests (unary or streams) while this node knows no leader.
#[derive(Clone)]
pub struct RequireLeader {
    store: Arc<Store>,
}

impl RequireLeader {
    pub fn new(store: Arc<Store>) -> Self {
        Self { store }
    }
}

impl Interceptor for RequireLeader {
    fn call(&mut self, request: tonic::Request<()>) -> Result<tonic::Request<()>, Status> {
        if requires_leader(request.metadata()) && !self.store.has_leader() {
            return Err(no_leader());
        }
        Ok(request)
    }
}

/// Watches for leader loss on behalf of one stream.
pub struct LeaderMonitor {
    store: Arc<Store>,
    /// None: the client did not ask (`hasleader` absent), never fires.
    ticks: Option<Interval>,
    leaderless: u32,
}

impl LeaderMonitor {
    pub fn new(store: Arc<Store>, metadata: &MetadataMap) -> Self {
        let ticks = requires_leader(metadata).then(|| {
            let mut ticks = interval(store.election_timeout());
            ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
            ticks
        });
        Self { store, ticks, leaderless: 0 }
    }

    /// Completes once the stream must end with "no leader". Cancel-safe.
    pub async fn lost(&mut self) {
        let Some(ticks) = self.ticks.as_mut() else { return std::future::pending().await };
        loop {
            ticks.tick().await;
            if self.store.has_leader() {
                self.leaderless = 0;
            } else {
                self.leaderless += 1;
                if self.leaderless >= MAX_LEADERLESS_TICKS {
                    return;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_hasleader_true_requires_a_leader() {
        let mut md = MetadataMap::new();
        assert!(!requires_leader(&md));
        md.insert(REQUIRE_LEADER_KEY, "false".parse().expect("ascii"));
        assert!(!requires_leader(&md));
        md.insert(REQUIRE_LEADER_KEY, "true".parse().expect("ascii"));
        assert!(requires_leader(&md));
    }
}
