//! KV linearizability of the etcd v3 API: a client workload that records a history of
//! put, linearizable get, compare-and-swap, delete and lease grant / put-with-lease /
//! revoke ([`workload`]), and a Wing–Gong/Lowe checker of such histories against a
//! sequential KV model ([`checker`]). The integration tests and `raftctl chaos` both run
//! the workload while they inject faults, then check what it recorded.
//!
//! One job per file: `history` (what an operation is, recording and saving a history),
//! `model` (the sequential KV specification), `checker` (the search), `workload` (the
//! clients).
//!
//! This crate owns no faults and no cluster: callers bring the nodes' channels and
//! decide what to break.

pub mod checker;
pub mod history;
mod model;
pub mod workload;

pub use checker::{check, CheckError, Limits, Summary};
pub use history::{save_history, History, Input, Operation, Outcome, Output};
pub use workload::{Config, Workload, Xorshift, OP_DEADLINE};
