//! Running the lab as root. PostgreSQL refuses to run as root, so a root-made lab runs
//! its nodes as the system user `raftgres` (created here if missing), owning the lab's
//! directory. This module also checks that the user can reach the lab's files and the
//! node binary through every parent directory.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context};

use crate::description::LabUser;

/// The system user a root-made lab runs its nodes as.
pub const LAB_USER: &str = "raftgres";

/// Whether this process runs with effective uid 0.
pub fn is_root() -> bool {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    effective_uid(&status) == Some(0)
}

/// The effective uid in a `/proc/<pid>/status` text (`Uid: real effective saved fs`).
fn effective_uid(status: &str) -> Option<u32> {
    let line = status.lines().find(|l| l.starts_with("Uid:"))?;
    line.split_whitespace().nth(2)?.parse().ok()
}

/// Parses a passwd line (`name:x:uid:gid:gecos:home:shell`).
fn parse_passwd(line: &str) -> Option<LabUser> {
    let f: Vec<&str> = line.trim().split(':').collect();
    if f.len() < 7 {
        return None;
    }
    Some(LabUser { name: f[0].to_string(), uid: f[2].parse().ok()?, gid: f[3].parse().ok()?, home: PathBuf::from(f[5]) })
}

fn lookup(name: &str) -> Option<LabUser> {
    let out = Command::new("getent").args(["passwd", name]).output().ok()?;
    if out.status.success() {
        return parse_passwd(&String::from_utf8_lossy(&out.stdout));
    }
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    passwd.lines().filter_map(parse_passwd).find(|u| u.name == name)
}

/// The `raftgres` system user, created with `useradd` when missing.
pub fn ensure_user() -> anyhow::Result<LabUser> {
    if let Some(user) = lookup(LAB_USER) {
        return Ok(user);
    }
    println!("running as root and PostgreSQL refuses root: creating the system user {LAB_USER}");
    let out = Command::new("useradd")
        .args(["--system", "--create-home", "--shell", "/bin/bash", LAB_USER])
        .output()
        .context("cannot run useradd (install the `passwd` package, or run raftctl lab as a normal user)")?;
    if !out.status.success() {
        bail!("useradd {LAB_USER} failed: {}", String::from_utf8_lossy(&out.stderr).trim());
    }
    lookup(LAB_USER).with_context(|| format!("useradd succeeded but user {LAB_USER} is still unknown"))
}

/// `chown -R uid:gid dir`, without following symlinks.
pub fn chown_tree(dir: &Path, uid: u32, gid: u32) -> anyhow::Result<()> {
    std::os::unix::fs::lchown(dir, Some(uid), Some(gid)).with_context(|| format!("cannot chown {}", dir.display()))?;
    let meta = std::fs::symlink_metadata(dir).with_context(|| format!("cannot stat {}", dir.display()))?;
    if meta.is_dir() {
        for entry in std::fs::read_dir(dir).with_context(|| format!("cannot list {}", dir.display()))? {
            chown_tree(&entry?.path(), uid, gid)?;
        }
    }
    Ok(())
}

/// The first directory on the way to `path` (itself excluded) that `user` may not
/// search, or `None` when every one is searchable.
pub fn blocked_parent(path: &Path, user: &LabUser) -> Option<PathBuf> {
    path.ancestors().skip(1).find(|dir| !may(dir, user, 0o1)).map(Path::to_path_buf)
}

/// Whether `user` has the permission `bits` (1 = x, 4 = r) on `path`, by its mode bits.
pub fn may(path: &Path, user: &LabUser, bits: u32) -> bool {
    let Ok(meta) = std::fs::metadata(path) else {
        return false;
    };
    let mode = meta.permissions().mode();
    let granted = if meta.uid() == user.uid {
        mode >> 6
    } else if meta.gid() == user.gid {
        mode >> 3
    } else {
        mode
    };
    granted & bits == bits
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwd_and_status_parse() {
        let u = parse_passwd("raftgres:x:998:997::/home/raftgres:/bin/bash\n").expect("parse");
        assert_eq!((u.uid, u.gid, u.home.as_path()), (998, 997, Path::new("/home/raftgres")));
        assert_eq!(effective_uid("Name:\tx\nUid:\t1000\t0\t0\t0\n"), Some(0));
        assert!(parse_passwd("short:x").is_none());
    }

    #[test]
    fn tmp_is_searchable_by_anyone() {
        let nobody = LabUser { name: "nobody".into(), uid: 65534, gid: 65534, home: "/".into() };
        assert!(may(Path::new("/tmp"), &nobody, 1));
        assert_eq!(blocked_parent(Path::new("/tmp/raftgres-lab"), &nobody), None);
    }
}
