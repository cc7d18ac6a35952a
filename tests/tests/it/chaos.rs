//! `raftctl chaos` in its short form: one round of every fault kind (kill, postmaster,
//! pause, partition, one-way and inbound partition, netem, a replica's full disk, restart
//! of all nodes, a stop of the primary's process group, a double failover, the primary
//! cut off from the Raft leader, two nodes cut off, failsafe mode with the Raft port cut,
//! a ttl change, a stalled primary during a switchover, a hung PostgreSQL) on a lab in
//! network namespaces under a write load. The runner's own checks must pass, every fault
//! must have its row with the cluster healed and the outcome its kind expects, the KV
//! clients' history of the etcd API must be linearizable, and the summary line must say
//! no split brain (and, in synchronous mode, no lost write). A third run goes through
//! the kinds where failsafe mode changes what the agents do, with it on for the whole run.

use std::os::unix::fs::PermissionsExt;
use std::process::Command;

use raftgres_tests::bin;
use raftgres_tests::lab::NetnsClaim;

const FAULTS: [&str; 17] = [
    "kill",
    "postmaster",
    "pause",
    "partition",
    "partition-oneway",
    "partition-inbound",
    "netem",
    "diskfull",
    "restart-all",
    "group-stop",
    "double-failover",
    "bridge",
    "isolate-two",
    "failsafe",
    "ttl-change",
    "pg-stall",
    "pg-hang",
];

/// The kinds the failsafe-mode run goes through: those that cut the primary off, stop it,
/// or take its store away, where failsafe mode changes what the agents do.
const FAILSAFE_FAULTS: [&str; 8] = ["kill", "pause", "partition", "partition-inbound", "group-stop", "bridge", "isolate-two", "failsafe"];

/// Runs `raftctl chaos --rounds 1 --faults FAULTS EXTRA...` on a lab of its own; returns
/// its output.
fn chaos(faults: &[&str], extra: &[&str]) -> anyhow::Result<String> {
    let claim = NetnsClaim::take()?;
    let dir = tempfile::Builder::new().prefix("raftgres-chaos-").tempdir_in("/tmp")?;
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))?;
    let out = Command::new(bin("raftctl"))
        .args(["chaos", "--rounds", "1", "--netns-prefix", &claim.prefix, "--faults", &faults.join(","), "--dir"])
        .arg(dir.path())
        .args(extra)
        .output()?;
    claim.destroy();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    let mut kept = dir.path().as_os_str().to_os_string();
    kept.push("-logs");
    anyhow::ensure!(out.status.success(), "raftctl chaos failed (logs in {}):\n{text}", kept.to_string_lossy());
    for &fault in faults {
        let row = text
            .lines()
            .find(|l| l.split_whitespace().next() == Some(fault))
            .ok_or_else(|| anyhow::anyhow!("no table row for {fault}:\n{text}"))?;
        let cols: Vec<&str> = row.split_whitespace().collect();
        anyhow::ensure!(cols.last() == Some(&"0"), "{fault} left the cluster unhealed: {row}\n{text}");
        anyhow::ensure!(cols.iter().rev().nth(1) == Some(&"0"), "{fault} did not end as expected: {row}\n{text}");
    }
    let kv = text.lines().find(|l| l.starts_with("kv: "));
    anyhow::ensure!(kv.is_some_and(|l| l.contains("through every fault: linearizable")), "no `kv: ... linearizable` line:\n{text}");
    let _ = std::fs::remove_dir_all(&kept);
    Ok(text)
}

fn summary(text: &str) -> Option<&str> {
    text.lines().find(|l| l.starts_with("chaos: ") && l.contains("split-brain"))
}

#[test]
fn chaos_in_sync_mode_loses_no_acknowledged_write() -> anyhow::Result<()> {
    let text = chaos(&FAULTS, &["--sync"])?;
    let expected = format!("chaos: {} rounds, 0 split-brain windows, 0 acknowledged writes lost", FAULTS.len());
    assert_eq!(summary(&text), Some(expected.as_str()), "{text}");
    Ok(())
}

#[test]
fn chaos_in_async_mode_never_has_two_primaries() -> anyhow::Result<()> {
    let text = chaos(&FAULTS, &[])?;
    let line = summary(&text).unwrap_or_default();
    assert!(line.starts_with(&format!("chaos: {} rounds, 0 split-brain windows, ", FAULTS.len())), "{text}");
    Ok(())
}

#[test]
fn chaos_with_failsafe_mode_on_keeps_one_writer_and_every_commit() -> anyhow::Result<()> {
    let text = chaos(&FAILSAFE_FAULTS, &["--sync", "--failsafe"])?;
    assert!(text.lines().any(|l| l.starts_with("chaos: ") && l.contains("synchronous mode, failsafe mode")), "{text}");
    let expected = format!("chaos: {} rounds, 0 split-brain windows, 0 acknowledged writes lost", FAILSAFE_FAULTS.len());
    assert_eq!(summary(&text), Some(expected.as_str()), "{text}");
    Ok(())
}
