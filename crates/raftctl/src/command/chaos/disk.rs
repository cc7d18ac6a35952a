//! A small disk of its own for every chaos node, so that "a replica's disk fills up"
//! fills that node's disk only: a tmpfs of [`SIZE`] mounted over the node's directory
//! (its Raft store, PostgreSQL data and log), made before the node first starts.

use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;
use std::process::Command;

use anyhow::{bail, Context};

use raftgres_lab::{Lab, LabNode};

/// Each node's disk.
pub const SIZE: &str = "768m";
/// The file that fills a disk.
const FILLER: &str = "chaos-disk-filler";

/// Mounts a fresh tmpfs over every node's directory, keeping the files `raftctl lab up`
/// already wrote there, owned by the lab's user.
pub fn mount_all(lab: &Lab) -> anyhow::Result<()> {
    for node in &lab.nodes {
        let mut kept = Vec::new();
        for entry in std::fs::read_dir(&node.dir).with_context(|| format!("cannot list {}", node.dir.display()))? {
            let path = entry?.path();
            if path.is_file() {
                kept.push((path.clone(), std::fs::read(&path).with_context(|| format!("cannot read {}", path.display()))?));
            }
        }
        let size = format!("size={SIZE},mode=0755");
        run(Command::new("mount").args(["-t", "tmpfs", "-o", &size, "raftgres-chaos"]).arg(&node.dir))?;
        for (path, bytes) in kept {
            let mut f = OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&path)
                .with_context(|| format!("cannot write {}", path.display()))?;
            f.write_all(&bytes).with_context(|| format!("cannot write {}", path.display()))?;
        }
        if let Some(u) = &lab.user {
            raftgres_lab::chown_tree(&node.dir, u.uid, u.gid)?;
        }
    }
    Ok(())
}

/// Unmounts every node's disk (lazily, so a process still holding a file cannot block it).
pub fn unmount_all(lab: &Lab) {
    for node in &lab.nodes {
        let _ = Command::new("umount").arg("-l").arg(&node.dir).output();
    }
}

/// Fills `node`'s disk to the last byte; returns the filler file to remove later.
pub fn fill(node: &LabNode) -> anyhow::Result<PathBuf> {
    let path = node.dir.join(FILLER);
    let mut f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(&path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    // Big writes, then small ones: bounded by the disk's size either way.
    for chunk in [1 << 20, 4096, 1] {
        let zeros = vec![0u8; chunk];
        for _ in 0..4096 {
            if f.write_all(&zeros).is_err() {
                break;
            }
        }
    }
    let _ = f.sync_all();
    Ok(path)
}

/// Frees what [`fill`] took.
pub fn free(filler: &PathBuf) -> anyhow::Result<()> {
    std::fs::remove_file(filler).with_context(|| format!("cannot remove {}", filler.display()))
}

fn run(cmd: &mut Command) -> anyhow::Result<()> {
    let out = cmd.output().with_context(|| format!("cannot run {cmd:?}"))?;
    if !out.status.success() {
        bail!("{cmd:?} failed: {}", String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(())
}
