//! Patroni's callbacks (`postgresql.callbacks`) on three real nodes: a script records
//! every call it gets (`<action> <role> <scope>`) in a file of its node; through a
//! SIGHUP that installs them, a failover (the primary's node killed, then back) and a
//! switchover, each node's file holds Patroni's sequence, line for line.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use raftgres_tests::lab::{wait_for, Lab};
use serde_norway::Value;

use crate::reload::{edit_node_file, sighup};
use crate::writes::{create_table, with_logs};

const HEAL: Duration = Duration::from_secs(60);

/// The recording script: its first argument is the file, the rest is the call.
const RECORD: &str = "#!/bin/sh\nout=\"$1\"\nshift\necho \"$*\" >> \"$out\"\n";

/// Where node `i`'s calls are recorded.
fn calls_file(dir: &Path, lab: &Lab, i: usize) -> PathBuf {
    dir.join(format!("calls-{}", lab.name(i)))
}

/// Gives node `i` every callback (the recording script) and reloads it.
fn install(lab: &Lab, dir: &Path, i: usize) -> anyhow::Result<()> {
    let command = format!("{} {}", dir.join("record.sh").display(), calls_file(dir, lab, i).display());
    edit_node_file(lab, i, |doc| {
        let callbacks: serde_norway::Mapping = ["on_start", "on_stop", "on_restart", "on_reload", "on_role_change"]
            .iter()
            .map(|a| (Value::from(*a), Value::from(command.as_str())))
            .collect();
        let pg = doc.get_mut("postgresql").and_then(Value::as_mapping_mut).expect("postgresql");
        pg.insert(Value::from("callbacks"), Value::Mapping(callbacks));
    })?;
    sighup(lab, i)
}

/// Waits until node `i` has recorded exactly `expected`.
fn expect_calls(lab: &Lab, dir: &Path, i: usize, expected: &[&str]) -> anyhow::Result<()> {
    let name = lab.name(i);
    wait_for(Duration::from_secs(30), &format!("{name}'s callbacks {expected:?}"), || {
        let text = std::fs::read_to_string(calls_file(dir, lab, i)).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        anyhow::ensure!(lines == expected, "{name} recorded {lines:?}");
        Ok(())
    })
}

#[test]
fn callbacks_follow_patronis_sequence_through_a_failover_and_a_switchover() -> anyhow::Result<()> {
    let lab = Lab::up(3)?;
    with_logs(&lab, || {
        // The nodes may run as `raftgres`: they must run the script and write the files.
        let dir = lab.dir.path().join("callbacks");
        std::fs::create_dir(&dir)?;
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777))?;
        std::fs::write(dir.join("record.sh"), RECORD)?;
        std::fs::set_permissions(dir.join("record.sh"), std::fs::Permissions::from_mode(0o755))?;
        let old = lab.primary()?;
        create_table(&lab, old)?;
        for i in 0..3 {
            install(&lab, &dir, i)?;
        }
        // The reload that installed them is the first call (Patroni reloads PostgreSQL on SIGHUP).
        let role = |i: usize| if i == old { "primary" } else { "replica" };
        for i in 0..3 {
            expect_calls(&lab, &dir, i, &[&format!("on_reload {} demo", role(i))])?;
        }

        lab.kill(old)?;
        let new = lab.wait_new_primary(old, HEAL)?;
        let third = 3 - old - new;
        expect_calls(&lab, &dir, new, &["on_reload replica demo", "on_role_change primary demo"])?;
        // The other replica follows the new primary with a reload, as Patroni's `follow(do_reload=True)`.
        expect_calls(&lab, &dir, third, &["on_reload replica demo", "on_reload replica demo"])?;
        lab.psql(new, "insert into t(v) values ('after failover')")?;
        lab.start(old)?;
        lab.wait_healthy(HEAL, "after failover")?;
        // A new agent that starts PostgreSQL as a replica calls on_start, not on_role_change.
        expect_calls(&lab, &dir, old, &["on_reload primary demo", "on_start replica demo"])?;

        wait_for(HEAL, "a switchover back to the old primary", || lab.ctl(&["switchover", "--candidate", &lab.name(old), "--force"]))?;
        lab.psql(old, "insert into t(v) values ('after switchover')")?;
        assert_eq!(lab.wait_healthy(HEAL, "after switchover")?, old);
        expect_calls(&lab, &dir, old, &["on_reload primary demo", "on_start replica demo", "on_role_change primary demo"])?;
        expect_calls(
            &lab,
            &dir,
            new,
            &["on_reload replica demo", "on_role_change primary demo", "on_stop primary demo", "on_role_change replica demo"],
        )?;
        expect_calls(&lab, &dir, third, &["on_reload replica demo", "on_reload replica demo", "on_reload replica demo"])?;
        // Nothing more comes while the cluster is steady.
        std::thread::sleep(Duration::from_secs(3));
        expect_calls(&lab, &dir, third, &["on_reload replica demo", "on_reload replica demo", "on_reload replica demo"])?;
        expect_calls(&lab, &dir, old, &["on_reload primary demo", "on_start replica demo", "on_role_change primary demo"])
    })
}
