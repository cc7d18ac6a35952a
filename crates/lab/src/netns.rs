//! `--netns` labs: each node in its own network namespace (`<prefix>i`, address
//! 10.250.0.i, the classic ports), linked by a bridge whose address 10.250.0.254 keeps
//! every node reachable from this machine. All the networking is done by
//! `deploy/netns/netns.sh` (found next to the workspace of this binary, named by
//! `$RAFTGRES_NETNS_SCRIPT`, or else written from the copy built into the binary); this
//! module locates it, runs it, wraps a node's command line to start inside its
//! namespace, and implements `partition`, `heal`, `netem` and `clear`.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{bail, Context};
use clap::Args;

use crate::args::{DirArg, NodeArg};
use crate::description::{Lab, LabNode};
use crate::user;

/// The namespace prefix unless `--netns-prefix` says otherwise: node1 in `rg1`.
pub const DEFAULT_PREFIX: &str = "rg";
/// The script's path inside the workspace.
const SCRIPT: &str = "deploy/netns/netns.sh";
/// The script as it was when the binary was built, for installs without the workspace.
const EMBEDDED: &str = include_str!("../../../deploy/netns/netns.sh");

/// The script's rule for prefixes: lower-case letters, digits and '-', at most 12
/// characters (interface names are at most 15), starting with a letter and not ending in
/// a digit (so `<prefix><i>` names one node).
pub fn check_prefix(prefix: &str) -> anyhow::Result<()> {
    let ok = (1..=12).contains(&prefix.len())
        && prefix.starts_with(|c: char| c.is_ascii_lowercase())
        && !prefix.ends_with(|c: char| c.is_ascii_digit())
        && prefix.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if !ok {
        bail!(
            "--netns-prefix {prefix:?}: use lower-case letters, digits and '-', at most 12 characters, \
             starting with a letter and not ending in a digit (e.g. rg or rgt1-)"
        );
    }
    Ok(())
}

/// Fails unless this process is root, saying why `--netns` needs it.
pub fn require_root(what: &str) -> anyhow::Result<()> {
    if !user::is_root() {
        bail!("{what} needs root (network namespaces, iptables and tc): run it with sudo");
    }
    Ok(())
}

/// `deploy/netns/netns.sh`: `$RAFTGRES_NETNS_SCRIPT`, else the first
/// `deploy/netns/netns.sh` above this binary (a workspace's `target/debug/raftctl`), else
/// the built-in copy written to `DIR/netns.sh`.
pub fn script(lab_dir: &Path) -> anyhow::Result<PathBuf> {
    if let Some(path) = std::env::var_os("RAFTGRES_NETNS_SCRIPT") {
        let path = PathBuf::from(path);
        if !path.is_file() {
            bail!("RAFTGRES_NETNS_SCRIPT names {}, which is not a file", path.display());
        }
        return Ok(path);
    }
    if let Ok(exe) = std::env::current_exe() {
        if let Some(found) = exe.ancestors().skip(1).map(|d| d.join(SCRIPT)).find(|p| p.is_file()) {
            return Ok(found);
        }
    }
    let copy = lab_dir.join("netns.sh");
    std::fs::write(&copy, EMBEDDED).with_context(|| format!("cannot write {}", copy.display()))?;
    std::fs::set_permissions(&copy, std::fs::Permissions::from_mode(0o755)).with_context(|| format!("cannot chmod {}", copy.display()))?;
    Ok(copy)
}

/// The lab's namespace prefix, or an error saying how to make a `--netns` lab.
fn prefix(lab: &Lab) -> anyhow::Result<&str> {
    lab.netns_prefix.as_deref().ok_or_else(|| {
        let d = lab.dir.display();
        anyhow::anyhow!(
            "the lab in {d} runs on 127.0.0.1, not in network namespaces: make one with \
             `raftctl lab down --clean --dir {d}` then `raftctl lab up --netns --dir {d}`"
        )
    })
}

/// `bash netns.sh --prefix P ARGS...`; its stdout, or an error with its stderr.
fn run_script(lab: &Lab, args: &[&str]) -> anyhow::Result<String> {
    let prefix = prefix(lab)?;
    require_root("this lab command")?;
    let script = script(&lab.dir)?;
    let out = Command::new("bash")
        .arg(&script)
        .args(["--prefix", prefix])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("cannot run bash {}", script.display()))?;
    if !out.status.success() {
        bail!("{} {} failed: {}", script.display(), args.join(" "), String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// Creates (or completes) the lab's namespaces, veths and bridge; idempotent.
pub fn create(lab: &Lab) -> anyhow::Result<()> {
    let line = run_script(lab, &["create", &lab.nodes.len().to_string()])?;
    println!("{line}");
    Ok(())
}

/// Removes the lab's namespaces, bridge and iptables rules.
pub fn destroy(lab: &Lab) -> anyhow::Result<()> {
    let line = run_script(lab, &["destroy"])?;
    println!("{line}");
    Ok(())
}

/// The command that starts `bin` inside `node`'s namespace as the lab's user:
/// `ip netns exec NS setpriv --reuid=U --regid=U --init-groups BIN`. Both `ip netns
/// exec` and `setpriv` exec, so the child's pid is the node's own.
pub fn command(lab: &Lab, node: &LabNode, bin: &Path) -> anyhow::Result<Command> {
    let Some(ns) = &node.netns else { bail!("{} has no network namespace", node.name) };
    let Some(u) = &lab.user else {
        bail!("a --netns lab runs its nodes as the user raftgres, but lab.json names no user: make the lab again as root");
    };
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", ns, "setpriv"])
        .arg(format!("--reuid={}", u.name))
        .arg(format!("--regid={}", u.name))
        .arg("--init-groups")
        .arg(bin);
    Ok(cmd)
}

#[derive(Debug, Args)]
pub struct PartitionArgs {
    #[command(flatten)]
    pub node: NodeArg,
    /// Cut only the link to this node (default: every other node).
    #[arg(long)]
    pub from: Option<String>,
    /// Drop only what NODE sends (an asymmetric partition).
    #[arg(long)]
    pub oneway: bool,
}

#[derive(Debug, Args)]
pub struct HealArgs {
    /// Only this node's rules (default: every node's).
    pub node: Option<String>,
    #[command(flatten)]
    pub dir: DirArg,
}

#[derive(Debug, Args)]
pub struct NetemArgs {
    #[command(flatten)]
    pub node: NodeArg,
    /// tc netem's parameters, e.g. "delay 200ms 50ms loss 3%" (quoted or not).
    #[arg(required = true, num_args = 1..)]
    pub spec: Vec<String>,
}

/// The namespace of the node called `name`.
fn ns_of<'a>(lab: &'a Lab, name: &str) -> anyhow::Result<&'a str> {
    prefix(lab)?;
    let node = lab.node(name)?;
    node.netns.as_deref().with_context(|| format!("{name} has no network namespace in lab.json"))
}

pub fn partition(args: &PartitionArgs) -> anyhow::Result<()> {
    let lab = Lab::load(&args.node.dir.dir)?;
    println!("{}", isolate(&lab, &args.node.node, args.from.as_deref(), args.oneway, None)?);
    let others = match &args.from {
        Some(from) => from.clone(),
        None => "the other nodes".to_string(),
    };
    let how = if args.oneway { "cannot send to" } else { "cannot talk with" };
    println!("{} {how} {others}; clients on this machine still reach every node. `raftctl lab heal` undoes it.", args.node.node);
    Ok(())
}

/// Cuts node `name` off from every other node (or only `from`); `oneway` drops only
/// what it sends; `port` only TCP to that port (the Raft port, say). Returns the
/// script's line.
pub fn isolate(lab: &Lab, name: &str, from: Option<&str>, oneway: bool, port: Option<u16>) -> anyhow::Result<String> {
    let ns = ns_of(lab, name)?;
    let port = port.map(|p| p.to_string());
    let mut script_args = vec!["partition", ns];
    if let Some(from) = from {
        script_args.extend(["--from", ns_of(lab, from)?]);
    }
    if oneway {
        script_args.push("--oneway");
    }
    if let Some(port) = &port {
        script_args.extend(["--port", port.as_str()]);
    }
    run_script(lab, &script_args)
}

pub fn heal(args: &HealArgs) -> anyhow::Result<()> {
    let lab = Lab::load(&args.dir.dir)?;
    println!("{}", heal_nodes(&lab, args.node.as_deref())?);
    Ok(())
}

/// Removes the partition rules of node `name`, or of every node.
pub fn heal_nodes(lab: &Lab, name: Option<&str>) -> anyhow::Result<String> {
    match name {
        Some(name) => run_script(lab, &["heal", ns_of(lab, name)?]),
        None => run_script(lab, &["heal"]),
    }
}

pub fn netem(args: &NetemArgs) -> anyhow::Result<()> {
    let lab = Lab::load(&args.node.dir.dir)?;
    println!("{}", apply_netem(&lab, &args.node.node, &args.spec.join(" "))?);
    println!("`raftctl lab clear {}` restores its network", args.node.node);
    Ok(())
}

/// tc netem `spec` on node `name`'s link (packet loss by iptables without netem).
pub fn apply_netem(lab: &Lab, name: &str, spec: &str) -> anyhow::Result<String> {
    run_script(lab, &["netem", ns_of(lab, name)?, spec])
}

pub fn clear(args: &NodeArg) -> anyhow::Result<()> {
    let lab = Lab::load(&args.dir.dir)?;
    println!("{}", clear_netem(&lab, &args.node)?);
    Ok(())
}

/// Removes node `name`'s netem settings.
pub fn clear_netem(lab: &Lab, name: &str) -> anyhow::Result<String> {
    run_script(lab, &["clear", ns_of(lab, name)?])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::description::{netns_host, netns_namespace};

    #[test]
    fn prefixes_follow_the_script() {
        for good in ["rg", "rgt1-", "a", "lab-x"] {
            assert!(check_prefix(good).is_ok(), "{good}");
        }
        for bad in ["", "rg1", "Rg", "1rg", "rg_x", "abcdefghijklm"] {
            assert!(check_prefix(bad).is_err(), "{bad}");
        }
        assert_eq!((netns_host(0), netns_namespace("rgt1-", 2)), ("10.250.0.1".into(), "rgt1-3".into()));
    }

    #[test]
    fn the_built_in_script_is_the_workspace_one() {
        assert!(EMBEDDED.starts_with("#!/usr/bin/env bash"));
        assert!(EMBEDDED.contains("partition NODE [--from OTHER] [--oneway]"));
    }

    #[test]
    fn a_loopback_lab_refuses_partitions() {
        let lab = crate::description::tests::sample(Path::new("/tmp/l"));
        let err = ns_of(&lab, "node1").expect_err("no netns").to_string();
        assert!(err.contains("--netns"), "{err}");
    }
}
