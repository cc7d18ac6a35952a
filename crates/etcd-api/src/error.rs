//! The one place where errors become gRPC statuses, with etcd's codes and messages
//! (`api/v3rpc/rpctypes/error.go`): clients such as `clientv3` turn a status back into
//! a typed error by its exact message, so messages match etcd byte for byte.
//!
//! Sources: the data model ([`MvccError`], already carrying etcd's text), the store
//! ([`StoreError`]), the auth state ([`AuthError`]), and the few refusals the API layer
//! makes itself (request size, recipes, unsupported calls). Handlers write
//! `result.or_status()?`.

use raftgres_mvcc::{ErrorCode, MvccError};
use raftgres_store::auth::AuthError;
use raftgres_store::StoreError;
use tonic::{Code, Status};

/// etcd's `ErrGRPCRequestTooLarge`.
pub const REQUEST_TOO_LARGE: &str = "etcdserver: request is too large";
/// etcd's `ErrGRPCNoLeader`.
pub const NO_LEADER: &str = "etcdserver: no leader";
/// etcd's `ErrGRPCMemberBadURLs` (raftgres appends what is wrong with the URL).
pub const BAD_MEMBER_URLS: &str = "etcdserver: given member URLs are invalid";

/// The status etcd answers a data-model error with.
pub fn mvcc_status(e: &MvccError) -> Status {
    let code = match e.code() {
        ErrorCode::InvalidArgument => Code::InvalidArgument,
        ErrorCode::OutOfRange => Code::OutOfRange,
        ErrorCode::NotFound => Code::NotFound,
        ErrorCode::FailedPrecondition => Code::FailedPrecondition,
        ErrorCode::ResourceExhausted => Code::ResourceExhausted,
    };
    Status::new(code, e.to_string())
}

/// The status etcd answers a store error with.
pub fn store_status(e: &StoreError) -> Status {
    match e {
        StoreError::NoLeader | StoreError::Timeout | StoreError::LeaderChanged | StoreError::Stopped => Status::unavailable(e.to_string()),
        // Forwarding gave up finding the leader before the deadline: to the client that
        // is "no leader" (retryable), not etcd's internal "not leader".
        StoreError::NotLeader { .. } => Status::unavailable(NO_LEADER),
        StoreError::MemberNotFound => Status::not_found(e.to_string()),
        StoreError::PeerAddrExists
        | StoreError::LearnerNotReady
        | StoreError::NotALearner
        | StoreError::NotEnoughStarted
        | StoreError::BadLeaderTransferee => Status::failed_precondition(e.to_string()),
        StoreError::LeaderTransferTimeout => Status::unavailable(e.to_string()),
        // etcd answers errors it does not know with codes.Unknown and their text.
        StoreError::Internal(_) => Status::unknown(e.to_string()),
    }
}

/// The status etcd answers an auth error with (`rpctypes.ErrGRPC*`).
pub fn auth_status(e: AuthError) -> Status {
    let code = match e {
        AuthError::UserEmpty
        | AuthError::RoleEmpty
        | AuthError::AuthFailed
        | AuthError::PermissionNotGiven
        | AuthError::InvalidAuthMgmt => Code::InvalidArgument,
        AuthError::PermissionDenied => Code::PermissionDenied,
        AuthError::InvalidAuthToken => Code::Unauthenticated,
        AuthError::RootUserNotExist
        | AuthError::RootRoleNotExist
        | AuthError::UserAlreadyExist
        | AuthError::UserNotFound
        | AuthError::RoleAlreadyExist
        | AuthError::RoleNotFound
        | AuthError::RoleNotGranted
        | AuthError::PermissionNotGranted
        | AuthError::AuthNotEnabled => Code::FailedPrecondition,
    };
    Status::new(code, e.to_string())
}

/// "etcdserver: request is too large" (InvalidArgument).
pub fn request_too_large() -> Status {
    Status::invalid_argument(REQUEST_TOO_LARGE)
}

/// "etcdserver: no leader" (Unavailable).
pub fn no_leader() -> Status {
    Status::unavailable(NO_LEADER)
}

/// An invalid member URL: etcd's message, then what is wrong and what to write instead.
pub fn bad_member_url(detail: &str) -> Status {
    Status::invalid_argument(format!("{BAD_MEMBER_URLS}: {detail}"))
}

/// A call raftgres does not implement; `what` says what it is and what to do instead.
pub fn unsupported(what: &str) -> Status {
    Status::unimplemented(format!("raftgres: {what}"))
}

/// An error of etcd's client-side recipes (`concurrency` package), which etcd's lock
/// and election servers return as plain errors, i.e. with code Unknown.
pub fn recipe_error(message: &str) -> Status {
    Status::unknown(message.to_string())
}

/// The store answered with a response of another kind than the request: a bug.
pub fn unexpected_response(request: &str) -> Status {
    Status::internal(format!("raftgres: the store answered a {request} request with another kind of response"))
}

/// `?`-friendly conversion of the store's and the data model's errors.
pub trait OrStatus<T> {
    fn or_status(self) -> Result<T, Status>;
}

impl<T> OrStatus<T> for Result<T, MvccError> {
    fn or_status(self) -> Result<T, Status> {
        self.map_err(|e| mvcc_status(&e))
    }
}

impl<T> OrStatus<T> for Result<T, AuthError> {
    fn or_status(self) -> Result<T, Status> {
        self.map_err(auth_status)
    }
}

impl<T> OrStatus<T> for Result<T, StoreError> {
    fn or_status(self) -> Result<T, Status> {
        self.map_err(|e| store_status(&e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair(s: Status) -> (Code, String) {
        (s.code(), s.message().to_string())
    }

    #[test]
    fn data_model_errors_keep_etcds_codes_and_text() {
        let cases = [
            (MvccError::KeyNotProvided, Code::InvalidArgument, "etcdserver: key is not provided"),
            (MvccError::Compacted, Code::OutOfRange, "etcdserver: mvcc: required revision has been compacted"),
            (MvccError::FutureRevision, Code::OutOfRange, "etcdserver: mvcc: required revision is a future revision"),
            (MvccError::LeaseNotFound, Code::NotFound, "etcdserver: requested lease not found"),
            (MvccError::LeaseExists, Code::FailedPrecondition, "etcdserver: lease already exists"),
            (MvccError::LeaseTtlTooLarge, Code::OutOfRange, "etcdserver: too large lease TTL"),
            (MvccError::TooManyOps, Code::InvalidArgument, "etcdserver: too many operations in txn request"),
            (MvccError::DuplicateKey, Code::InvalidArgument, "etcdserver: duplicate key given in txn request"),
            (MvccError::KeyNotFound, Code::InvalidArgument, "etcdserver: key not found"),
            (MvccError::NoSpace, Code::ResourceExhausted, "etcdserver: mvcc: database space exceeded"),
        ];
        for (e, code, text) in cases {
            assert_eq!(pair(mvcc_status(&e)), (code, text.to_string()), "{e:?}");
        }
    }

    #[test]
    fn store_errors_keep_etcds_codes_and_text() {
        let cases = [
            (StoreError::NoLeader, Code::Unavailable, "etcdserver: no leader"),
            (StoreError::Timeout, Code::Unavailable, "etcdserver: request timed out"),
            (StoreError::LeaderChanged, Code::Unavailable, "etcdserver: leader changed"),
            (StoreError::Stopped, Code::Unavailable, "etcdserver: server stopped"),
            (StoreError::NotLeader { leader: Some(3) }, Code::Unavailable, "etcdserver: no leader"),
            (StoreError::MemberNotFound, Code::NotFound, "etcdserver: member not found"),
            (StoreError::BadLeaderTransferee, Code::FailedPrecondition, "etcdserver: bad leader transferee"),
            (StoreError::LeaderTransferTimeout, Code::Unavailable, "etcdserver: request timed out, leader transfer took too long"),
            (StoreError::PeerAddrExists, Code::FailedPrecondition, "etcdserver: Peer URLs already exists"),
            (StoreError::NotALearner, Code::FailedPrecondition, "etcdserver: can only promote a learner member"),
            (
                StoreError::LearnerNotReady,
                Code::FailedPrecondition,
                "etcdserver: can only promote a learner member which is in sync with leader",
            ),
            (
                StoreError::NotEnoughStarted,
                Code::FailedPrecondition,
                "etcdserver: re-configuration failed due to not enough started members",
            ),
        ];
        for (e, code, text) in cases {
            assert_eq!(pair(store_status(&e)), (code, text.to_string()), "{e:?}");
        }
        assert_eq!(pair(store_status(&StoreError::Internal("boom".into()))).0, Code::Unknown);
    }

    #[test]
    fn auth_errors_keep_etcds_codes_and_text() {
        let cases = [
            (AuthError::RootUserNotExist, Code::FailedPrecondition, "etcdserver: root user does not exist"),
            (AuthError::UserEmpty, Code::InvalidArgument, "etcdserver: user name is empty"),
            (AuthError::AuthFailed, Code::InvalidArgument, "etcdserver: authentication failed, invalid user ID or password"),
            (AuthError::PermissionDenied, Code::PermissionDenied, "etcdserver: permission denied"),
            (AuthError::InvalidAuthToken, Code::Unauthenticated, "etcdserver: invalid auth token"),
            (AuthError::AuthNotEnabled, Code::FailedPrecondition, "etcdserver: authentication is not enabled"),
            (AuthError::InvalidAuthMgmt, Code::InvalidArgument, "etcdserver: invalid auth management"),
        ];
        for (e, code, text) in cases {
            assert_eq!(pair(auth_status(e)), (code, text.to_string()), "{e:?}");
        }
    }

    #[test]
    fn api_refusals_use_etcds_text() {
        assert_eq!(pair(request_too_large()), (Code::InvalidArgument, "etcdserver: request is too large".into()));
        assert_eq!(pair(no_leader()), (Code::Unavailable, "etcdserver: no leader".into()));
        let bad = bad_member_url("\"x\" has no port");
        assert_eq!(bad.code(), Code::InvalidArgument);
        assert!(bad.message().starts_with("etcdserver: given member URLs are invalid"));
    }

    #[test]
    fn or_status_converts_both_sources() {
        let r: Result<(), MvccError> = Err(MvccError::Compacted);
        assert_eq!(r.or_status().map_err(|s| s.code()), Err(Code::OutOfRange));
        let r: Result<(), StoreError> = Err(StoreError::Timeout);
        assert_eq!(r.or_status().map_err(|s| s.code()), Err(Code::Unavailable));
    }
}
