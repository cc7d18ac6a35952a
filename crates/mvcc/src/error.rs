//! Errors of the data model, with etcd's exact messages (clients match on them).

use serde::{Deserialize, Serialize};

/// A request the data model refuses. `Display` is etcd's message, byte for byte.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
pub enum MvccError {
    #[error("etcdserver: key is not provided")]
    KeyNotProvided,
    #[error("etcdserver: mvcc: required revision has been compacted")]
    Compacted,
    #[error("etcdserver: mvcc: required revision is a future revision")]
    FutureRevision,
    #[error("etcdserver: key not found")]
    KeyNotFound,
    #[error("etcdserver: requested lease not found")]
    LeaseNotFound,
    #[error("etcdserver: lease already exists")]
    LeaseExists,
    #[error("etcdserver: lease TTL is too large")]
    LeaseTtlTooLarge,
    #[error("etcdserver: too many operations in txn request")]
    TooManyOps,
    #[error("etcdserver: duplicate key given in txn request")]
    DuplicateKey,
}

/// The gRPC code class of an error, as etcd assigns them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    InvalidArgument,
    OutOfRange,
    NotFound,
    FailedPrecondition,
}

impl MvccError {
    pub fn code(&self) -> ErrorCode {
        match self {
            MvccError::Compacted | MvccError::FutureRevision => ErrorCode::OutOfRange,
            MvccError::LeaseNotFound => ErrorCode::NotFound,
            MvccError::LeaseExists => ErrorCode::FailedPrecondition,
            MvccError::KeyNotProvided
            | MvccError::KeyNotFound
            | MvccError::LeaseTtlTooLarge
            | MvccError::TooManyOps
            | MvccError::DuplicateKey => ErrorCode::InvalidArgument,
        }
    }
}
