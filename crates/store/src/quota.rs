//! The space quota (etcd's `--quota-backend-bytes`) and the alarm API.
//!
//! Before a write that adds data is proposed, the member that received it checks it
//! against its own quota, measured on the state's size (`raftgres_mvcc::Mvcc::size`,
//! also `etcdctl endpoint status`'s DB SIZE): a write that would go past it raises this
//! member's NOSPACE alarm through the Raft log and is refused with etcd's "database
//! space exceeded", as is every such write while the alarm is raised (the state
//! machine refuses those already in flight, see `alarms`). Alarms are read from the
//! local applied state and changed only through the log.

use raftgres_mvcc::{space_needed, Command, MvccError};
use raftgres_proto::etcdserverpb::{AlarmMember, AlarmRequest};

use crate::alarms::raise_no_space;
use crate::error::StoreError;
use crate::types::{Request, Response};
use crate::Store;

/// Whether a write needing `needed` bytes fits a state of `size` bytes under `quota`.
/// A write that adds nothing always fits.
pub fn fits(size: u64, needed: u64, quota: u64) -> bool {
    needed == 0 || size.saturating_add(needed) <= quota
}

impl Store {
    /// The state's estimated size in bytes: what the quota measures.
    pub fn state_size(&self) -> u64 {
        self.applied.read().mvcc.size()
    }

    /// This member's quota on [`Self::state_size`] (`--quota-backend-bytes`).
    pub fn quota_bytes(&self) -> u64 {
        self.config.quota_bytes
    }

    /// The raised alarms, as this member has applied them.
    pub fn alarms(&self) -> Vec<AlarmMember> {
        self.applied.read().alarms.list()
    }

    /// Raises or clears an alarm through the Raft log; the alarms that changed.
    pub async fn alarm(&self, req: AlarmRequest) -> Result<Vec<AlarmMember>, StoreError> {
        match self.write(Request::Alarm(req)).await? {
            Response::Alarms(changed) => Ok(changed),
            other => Err(StoreError::Internal(format!("unexpected answer {other:?}"))),
        }
    }

    /// Refuses `command` with NoSpace while the alarm is raised, or when it would take
    /// the state past this member's quota (raising the alarm first).
    pub(crate) async fn check_quota(&self, command: &Command) -> Result<(), MvccError> {
        let needed = space_needed(command);
        if needed == 0 {
            return Ok(());
        }
        let (size, raised) = {
            let data = self.applied.read();
            (data.mvcc.size(), data.alarms.no_space())
        };
        if raised {
            return Err(MvccError::NoSpace);
        }
        let quota = self.config.quota_bytes;
        if fits(size, needed, quota) {
            return Ok(());
        }
        tracing::warn!(
            "space quota exceeded: the state holds {size} bytes, the quota (--quota-backend-bytes) is {quota}: raising the NOSPACE alarm; writes that add data are refused until the history is compacted (`etcdctl compaction`) and the alarm cleared (`etcdctl alarm disarm`)"
        );
        if let Err(e) = self.alarm(raise_no_space(self.id)).await {
            tracing::warn!("cannot raise the NOSPACE alarm: {e}");
        }
        Err(MvccError::NoSpace)
    }
}

#[cfg(test)]
mod tests {
    use super::fits;

    #[test]
    fn a_write_fits_up_to_the_quota() {
        assert!(fits(90, 10, 100));
        assert!(!fits(91, 10, 100));
        assert!(fits(500, 0, 100), "deletes and compactions always fit");
        assert!(!fits(u64::MAX, 1, 100), "no overflow");
    }
}
