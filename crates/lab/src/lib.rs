//! The raftgres learning lab: starting, stopping and inspecting a local cluster of N
//! `raftgres` nodes on one machine (for learning and for the integration tests), with
//! its certificates (`--tls`), HAProxy in front (`--haproxy`) and one network namespace
//! per node (`--netns`). `raftctl lab` parses its arguments and calls this crate;
//! `raftctl chaos` drives a lab of its own through it. It is a crate apart so that the
//! operator CLI does not depend on lab internals: the CLI asks it only for what it needs
//! (e.g. [`tls_files_for`], a TLS lab's client certificates).
//!
//! `up` writes one directory per node and starts the nodes detached; the other
//! operations read `DIR/lab.json` and act on the processes (status, kill, start, pause,
//! resume, down, logs).
//!
//! One job per file: `description` (`lab.json`: the lab, its nodes, user and
//! certificates), `args` (`--dir` and the node name), `ports` (layout and probing),
//! `config` (the files a node reads),
//! `user` (running as root: the `raftgres` system user), `process` (spawning, signals,
//! `/proc`), `ready` (waiting for a primary and streaming replicas through the etcd API),
//! `up`, `control` (every operation on existing nodes), `netns` (`--netns`:
//! one network namespace per node, partitions and netem, through
//! `deploy/netns/netns.sh`), `haproxy` (`--haproxy`: HAProxy in front of the nodes) and
//! `certs` (`--tls`: a CA and certificates; `lab.json` records them, so every command
//! run against the lab uses them).
//! This root only declares the modules and re-exports what other crates use; nothing
//! here talks to PostgreSQL.

mod args;
pub mod certs;
mod config;
pub mod control;
mod description;
mod haproxy;
pub mod logs;
pub mod netns;
pub mod ports;
pub mod process;
pub mod ready;
pub mod up;
mod user;

pub use args::{DirArg, NodeArg, DEFAULT_DIR};
pub use description::{netns_host, tls_files_for, Lab, LabNode, LabTls, LabUser, Profile};
pub use user::{chown_tree, ensure_user, is_root};
