//! The one place where store and data-model errors become gRPC statuses, with etcd's
//! codes and messages (clients match on the message text).

use raftgres_mvcc::{ErrorCode, MvccError};
use raftgres_store::StoreError;
use tonic::{Code, Status};

pub const REQUEST_TOO_LARGE: &str = "etcdserver: request is too large";

pub fn from_mvcc(e: MvccError) -> Status {
    let code = match e.code() {
        ErrorCode::InvalidArgument => Code::InvalidArgument,
        ErrorCode::OutOfRange => Code::OutOfRange,
        ErrorCode::NotFound => Code::NotFound,
        ErrorCode::FailedPrecondition => Code::FailedPrecondition,
    };
    Status::new(code, e.to_string())
}

pub fn from_store(e: StoreError) -> Status {
    let code = match &e {
        StoreError::NoLeader | StoreError::Timeout | StoreError::LeaderChanged | StoreError::Stopped => {
            Code::Unavailable
        }
        StoreError::NotLeader { .. } => Code::Unavailable,
        StoreError::MemberNotFound => Code::NotFound,
        StoreError::PeerAddrExists | StoreError::LearnerNotReady | StoreError::NotALearner => {
            Code::FailedPrecondition
        }
        StoreError::NotEnoughStarted => Code::FailedPrecondition,
        StoreError::Internal(_) => Code::Unknown,
    };
    Status::new(code, e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_and_messages_are_etcds() {
        let s = from_mvcc(MvccError::Compacted);
        assert_eq!((s.code(), s.message()), (Code::OutOfRange, "etcdserver: mvcc: required revision has been compacted"));
        let s = from_mvcc(MvccError::LeaseNotFound);
        assert_eq!((s.code(), s.message()), (Code::NotFound, "etcdserver: requested lease not found"));
        let s = from_store(StoreError::NoLeader);
        assert_eq!((s.code(), s.message()), (Code::Unavailable, "etcdserver: no leader"));
    }
}
