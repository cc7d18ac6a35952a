//! One module per `raftctl` subcommand: parse, request, print, and a parse test.

pub mod chaos;
pub mod cluster;
pub mod config;
pub mod events;
pub mod flush;
pub mod history;
pub mod lab;
pub mod list;
pub mod members;
pub mod node_ops;
pub mod pause;
pub mod query;
pub mod remove;
pub mod standby;
pub mod switchover;
pub mod topology;
pub mod watch;
