//! Response headers: every etcd response carries `{cluster_id, member_id, revision,
//! raft_term}`. The data model fills only the revision; this fills the rest from the
//! node answering.

use raftgres_proto::etcdserverpb::ResponseHeader;

use crate::EtcdApi;

impl EtcdApi {
    /// The header of a response at store revision `revision`.
    pub(crate) fn header(&self, revision: i64) -> Option<ResponseHeader> {
        Some(ResponseHeader {
            cluster_id: self.store.cluster_id(),
            member_id: self.store.id(),
            revision,
            raft_term: self.store.current_term(),
        })
    }

    /// Completes a header the data model made (revision only); without one, uses the
    /// current revision.
    pub(crate) fn stamp(&self, header: Option<ResponseHeader>) -> Option<ResponseHeader> {
        let revision = header.map_or_else(|| self.current_revision(), |h| h.revision);
        self.header(revision)
    }

    /// The header of a response about "now" (this node's applied revision).
    pub(crate) fn header_now(&self) -> Option<ResponseHeader> {
        self.header(self.current_revision())
    }

    /// This node's applied store revision.
    pub(crate) fn current_revision(&self) -> i64 {
        self.store.applied().read().mvcc.revision()
    }
}
