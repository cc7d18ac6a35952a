//! The arguments every lab operation shares: which lab (`--dir`) and which node.

use std::path::PathBuf;

use clap::Args;

/// Where the lab lives unless `--dir` says otherwise (any user can traverse /tmp).
pub const DEFAULT_DIR: &str = "/tmp/raftgres-lab";

/// `--dir`, shared by every subcommand.
#[derive(Debug, Args)]
pub struct DirArg {
    /// The lab's directory (one subdirectory per node, lab.json, pgpass).
    #[arg(long, default_value = DEFAULT_DIR)]
    pub dir: PathBuf,
}

#[derive(Debug, Args)]
pub struct NodeArg {
    /// The node's name (node1, node2, ...).
    pub node: String,
    #[command(flatten)]
    pub dir: DirArg,
}
