//! One module per `raftctl` subcommand: parse, request, print, and a parse test.

pub mod members;
