//! `raftctl lab`: the subcommands of the local learning lab. This module only parses
//! them and calls the `raftgres-lab` crate, which owns the lab (its files, processes,
//! certificates, HAProxy and network namespaces).

use clap::{Args, Subcommand};
use raftgres_lab::{control, netns, up, DirArg, Lab, NodeArg};

#[derive(Debug, Args)]
pub struct LabArgs {
    #[command(subcommand)]
    pub action: LabAction,
}

#[derive(Debug, Subcommand)]
pub enum LabAction {
    /// Create and start a local cluster, and wait for a primary and streaming replicas.
    Up(up::UpArgs),
    /// One line per node: pid, running/stopped/paused, ports.
    Status(DirArg),
    /// Stop every node (SIGTERM, then SIGKILL after 10 s); keeps the directory.
    Down {
        #[command(flatten)]
        dir: DirArg,
        /// Also remove the lab's directory.
        #[arg(long)]
        clean: bool,
    },
    /// Crash a whole node: SIGKILL to raftgres, its helpers, and its PostgreSQL.
    Kill(NodeArg),
    /// Stop a node's agent gracefully (SIGTERM to raftgres only) and wait for it to exit;
    /// in a paused cluster its PostgreSQL keeps running and `start` adopts it.
    Stop(NodeArg),
    /// Start a stopped node again, with the same configuration.
    Start(NodeArg),
    /// Freeze a node's agent (SIGSTOP to the raftgres process only; PostgreSQL runs on).
    Pause(NodeArg),
    /// Thaw a paused node (SIGCONT).
    Resume(NodeArg),
    /// Print the end of a node's log.
    Logs {
        #[command(flatten)]
        node: NodeArg,
        /// How many lines.
        #[arg(short = 'n', long, default_value_t = 50)]
        lines: usize,
    },
    /// Cut a node off from the other nodes (labs made with `up --netns`); clients on this
    /// machine still reach every node.
    Partition(netns::PartitionArgs),
    /// Remove the partition rules of one node, or of every node.
    Heal(netns::HealArgs),
    /// Degrade a node's network with tc netem, e.g. "delay 200ms 50ms loss 3%" (--netns labs).
    Netem(netns::NetemArgs),
    /// Remove a node's netem settings (--netns labs).
    Clear(NodeArg),
}

pub async fn run(args: LabArgs) -> anyhow::Result<()> {
    match args.action {
        LabAction::Up(args) => up::run(args).await,
        LabAction::Status(d) => control::status(&Lab::load(&d.dir)?),
        LabAction::Down { dir, clean } => control::down(&dir.dir, clean),
        LabAction::Kill(n) => control::kill(Lab::load(&n.dir.dir)?.node(&n.node)?),
        LabAction::Stop(n) => control::stop(Lab::load(&n.dir.dir)?.node(&n.node)?),
        LabAction::Start(n) => {
            let lab = Lab::load(&n.dir.dir)?;
            control::start(&lab, lab.node(&n.node)?)
        }
        LabAction::Pause(n) => control::pause(Lab::load(&n.dir.dir)?.node(&n.node)?, true),
        LabAction::Resume(n) => control::pause(Lab::load(&n.dir.dir)?.node(&n.node)?, false),
        LabAction::Logs { node, lines } => control::logs(Lab::load(&node.dir.dir)?.node(&node.node)?, lines),
        LabAction::Partition(a) => netns::partition(&a),
        LabAction::Heal(a) => netns::heal(&a),
        LabAction::Netem(a) => netns::netem(&a),
        LabAction::Clear(n) => netns::clear(&n),
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use clap::Parser;

    use super::*;
    use crate::{Cli, Command};

    #[test]
    fn parses_lab_subcommands() {
        let cli = Cli::parse_from(["raftctl", "lab", "logs", "node2", "-n", "5", "--dir", "/x"]);
        let Command::Lab(LabArgs { action: LabAction::Logs { node, lines } }) = cli.command else {
            panic!("not lab logs");
        };
        assert_eq!((node.node.as_str(), lines, node.dir.dir.as_path()), ("node2", 5, Path::new("/x")));
        let cli = Cli::parse_from(["raftctl", "lab", "up"]);
        let Command::Lab(LabArgs { action: LabAction::Up(up) }) = cli.command else {
            panic!("not lab up");
        };
        assert_eq!((up.nodes, up.base_port, up.dir.dir.as_path()), (3, 5432, Path::new(raftgres_lab::DEFAULT_DIR)));
    }

    #[test]
    fn parses_the_network_subcommands() {
        let cli = Cli::parse_from(["raftctl", "lab", "netem", "node1", "delay", "200ms", "loss", "3%", "--dir", "/x"]);
        let Command::Lab(LabArgs { action: LabAction::Netem(n) }) = cli.command else {
            panic!("not lab netem");
        };
        assert_eq!((n.node.node.as_str(), n.spec.join(" ")), ("node1", "delay 200ms loss 3%".into()));
        let cli = Cli::parse_from(["raftctl", "lab", "partition", "node2", "--from", "node3", "--oneway"]);
        let Command::Lab(LabArgs { action: LabAction::Partition(p) }) = cli.command else {
            panic!("not lab partition");
        };
        assert_eq!((p.node.node.as_str(), p.from.as_deref(), p.oneway), ("node2", Some("node3"), true));
    }
}
