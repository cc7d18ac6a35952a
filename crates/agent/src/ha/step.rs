//! Why a step that changes the local PostgreSQL and the leader key failed (bootstrap,
//! start, promote): one typed error the HA cycle's sentences and the operator's
//! replies quote, so its `Display` keeps their exact words.

use std::path::PathBuf;

use crate::dcs::DcsError;
use crate::postgres::PgError;

#[derive(Debug, thiserror::Error)]
pub enum StepError {
    #[error(transparent)]
    Postgres(#[from] PgError),
    #[error(transparent)]
    Store(#[from] DcsError),
    #[error("lost the lease while initializing")]
    LostLease,
    #[error("another member took the leader key")]
    LeaderKeyTaken,
    #[error("no system identifier")]
    NoSystemIdentifier,
    #[error("PostgreSQL did not accept connections: {0}")]
    NotAccepting(PgError),
    /// The postmaster is gone; its log says why.
    #[error("PostgreSQL exited at start; see {}", .0.display())]
    ExitedAtStart(PathBuf),
    /// A standby cluster's first node could not copy the remote primary.
    #[error("cannot copy the remote primary: {0}")]
    NoCopy(String),
    #[error("PostgreSQL did not finish promoting within 60 s")]
    PromotionTimedOut,
}
