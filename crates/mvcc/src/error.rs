//! Errors of the data model. `Display` is etcd's message byte for byte, because clients
//! match on the text; [`MvccError::code`] gives the gRPC code class etcd uses.

use serde::{Deserialize, Serialize};

/// A request the data model refuses. `Display` is etcd's message, byte for byte.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
pub enum MvccError {
    /// An empty key in a Range, Put, DeleteRange, Compare or txn op.
    #[error("etcdserver: key is not provided")]
    KeyNotProvided,
    /// A read, watch or compaction at or before history that is gone.
    #[error("etcdserver: mvcc: required revision has been compacted")]
    Compacted,
    /// A read or compaction past the current revision.
    #[error("etcdserver: mvcc: required revision is a future revision")]
    FutureRevision,
    /// `ignore_value`/`ignore_lease` on a missing key, or an empty txn op.
    #[error("etcdserver: key not found")]
    KeyNotFound,
    /// A put naming an unknown lease, a revoke of one, or a grant with id 0.
    #[error("etcdserver: requested lease not found")]
    LeaseNotFound,
    /// A grant with an id already in use.
    #[error("etcdserver: lease already exists")]
    LeaseExists,
    /// A grant with a TTL above [`crate::MAX_LEASE_TTL`].
    #[error("etcdserver: too large lease TTL")]
    LeaseTtlTooLarge,
    /// More than `max_txn_ops` compares or ops in one txn level (or nesting too deep).
    #[error("etcdserver: too many operations in txn request")]
    TooManyOps,
    /// Overlapping puts/deletes within one txn branch.
    #[error("etcdserver: duplicate key given in txn request")]
    DuplicateKey,
    /// A sort order or sort target outside the enum.
    #[error("etcdserver: invalid sort option")]
    InvalidSortOption,
    /// `ignore_value` together with a value.
    #[error("etcdserver: value is provided")]
    ValueProvided,
    /// `ignore_lease` together with a lease.
    #[error("etcdserver: lease is provided")]
    LeaseProvided,
    /// A write that adds data while the cluster's NOSPACE alarm is raised (its space
    /// quota was exceeded). Deletes, revokes and compactions still pass.
    #[error("etcdserver: mvcc: database space exceeded")]
    NoSpace,
}

/// The gRPC code class of an error, as etcd assigns them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    InvalidArgument,
    OutOfRange,
    NotFound,
    FailedPrecondition,
    ResourceExhausted,
}

impl MvccError {
    /// The gRPC code etcd answers this error with.
    pub fn code(&self) -> ErrorCode {
        match self {
            MvccError::Compacted | MvccError::FutureRevision | MvccError::LeaseTtlTooLarge => ErrorCode::OutOfRange,
            MvccError::LeaseNotFound => ErrorCode::NotFound,
            MvccError::LeaseExists => ErrorCode::FailedPrecondition,
            MvccError::NoSpace => ErrorCode::ResourceExhausted,
            MvccError::KeyNotProvided
            | MvccError::KeyNotFound
            | MvccError::TooManyOps
            | MvccError::DuplicateKey
            | MvccError::InvalidSortOption
            | MvccError::ValueProvided
            | MvccError::LeaseProvided => ErrorCode::InvalidArgument,
        }
    }
}
