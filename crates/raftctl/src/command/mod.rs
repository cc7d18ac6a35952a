//! One module per `raftctl` subcommand: parse, request, print, and a parse test.

pub mod lab;
pub mod list;
pub mod members;
