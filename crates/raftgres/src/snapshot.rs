//! `raftgres snapshot restore|status`: what `etcdutl snapshot` does, for the backup
//! files `etcdctl snapshot save` gets from a raftgres node (`raftgres_store::backup`).
//! Restore takes etcdutl's flags and makes one member's data dir of a NEW cluster; it
//! runs once per member, with the same file and `--initial-cluster` on each.

use std::path::{Path, PathBuf};

use clap::{Parser, Subcommand};
use raftgres_store::backup::{self, RestoreTarget};

/// The first argument that selects this command instead of running a node.
pub const ARG: &str = "snapshot";

#[derive(Debug, Parser)]
#[command(name = "raftgres snapshot", about = "Restore or inspect a backup made with `etcdctl snapshot save`")]
struct SnapshotCommand {
    #[command(subcommand)]
    action: Action,
}

#[derive(Debug, Subcommand)]
enum Action {
    /// Makes the data dir of one member of a new cluster from a backup file.
    Restore(RestoreFlags),
    /// Checks a backup file and prints its revision, key count, size and checksum.
    Status { file: PathBuf },
}

/// etcdutl's `snapshot restore` flags.
#[derive(Debug, clap::Args)]
struct RestoreFlags {
    /// The backup file (`etcdctl snapshot save FILE`).
    file: PathBuf,
    /// This member's name (default `default`, as etcd).
    #[arg(long, default_value = "default")]
    name: String,
    /// Every member of the new cluster: name=host:port,... (default NAME=localhost:2380 as etcd).
    #[arg(long)]
    initial_cluster: Option<String>,
    /// This member's peer address; when given it must be NAME's entry in --initial-cluster.
    #[arg(long)]
    initial_advertise_peer_urls: Option<String>,
    /// The data dir to create (default NAME.etcd, as etcd); it must not exist or be empty.
    #[arg(long)]
    data_dir: Option<PathBuf>,
}

/// Runs `raftgres snapshot ...` (`args` without the program name); prints what it did,
/// or returns the one error that stopped it.
pub fn run(args: impl Iterator<Item = String>) -> Result<(), String> {
    let command = SnapshotCommand::parse_from(std::iter::once("raftgres snapshot".to_string()).chain(args.skip(1)));
    match command.action {
        Action::Status { file } => {
            let bytes = read(&file)?;
            let contents = backup::decode(&bytes).map_err(|e| format!("{}: {e}", file.display()))?;
            let auth = &contents.auth;
            println!(
                "{}: raftgres snapshot format {}, revision {}, {} keys, {} users, {} roles, auth {}, {} bytes, checksum ok",
                file.display(),
                contents.format,
                contents.mvcc.revision(),
                contents.mvcc.key_count(),
                auth.user_names().len(),
                auth.role_names().len(),
                if auth.enabled() { "enabled" } else { "disabled" },
                bytes.len()
            );
            Ok(())
        }
        Action::Restore(flags) => restore(flags),
    }
}

fn restore(flags: RestoreFlags) -> Result<(), String> {
    let initial = flags.initial_cluster.unwrap_or_else(|| format!("{}=localhost:2380", flags.name));
    let initial_cluster = crate::settings::parse_initial_cluster(&initial)?;
    if let Some(url) = &flags.initial_advertise_peer_urls {
        let addr = url.trim_start_matches("http://").trim_start_matches("https://");
        let listed = initial_cluster.iter().find(|(name, _)| name == &flags.name).map(|(_, a)| a.as_str());
        if listed.is_some_and(|listed| listed != addr) {
            return Err(format!("--initial-advertise-peer-urls {url} is not {}'s entry in --initial-cluster {initial}", flags.name));
        }
    }
    let data_dir = flags.data_dir.unwrap_or_else(|| PathBuf::from(format!("{}.etcd", flags.name)));
    let bytes = read(&flags.file)?;
    let contents = backup::decode(&bytes).map_err(|e| format!("{}: {e}", flags.file.display()))?;
    let target = RestoreTarget { name: &flags.name, initial_cluster: &initial_cluster, data_dir: &data_dir };
    let restored = backup::restore(contents, &target).map_err(|e| e.to_string())?;
    println!(
        "restored {} (revision {}, {} keys) into {} as member {} ({:x}) of new cluster {:x} ({} members): start every member with this --initial-cluster",
        flags.file.display(),
        restored.revision,
        restored.keys,
        data_dir.display(),
        flags.name,
        restored.member_id,
        restored.cluster_id,
        initial_cluster.len()
    );
    Ok(())
}

fn read(file: &Path) -> Result<Vec<u8>, String> {
    std::fs::read(file).map_err(|e| format!("cannot read snapshot {}: {e}", file.display()))
}
