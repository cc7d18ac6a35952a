//! Permanent slots (`/config` `slots`, `ignore_slots`) on three real nodes: a slot that
//! `ignore_slots` names survives while an unknown one is dropped; a physical permanent
//! slot exists on every node; a logical permanent
//! slot is created on the primary, copied to both replicas and advanced there to the
//! position its consumer confirmed; after the primary's node is killed, a
//! `pg_recvlogical` consumer continues on the new primary with the same slot and gets
//! every change made after what it had confirmed, the ones made before it reconnected
//! included, and none of those it had confirmed (no re-sync).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use raftgres_tests::lab::{wait_for, Lab};

use crate::writes::with_logs;

const HEAL: Duration = Duration::from_secs(90);
const PG_RECVLOGICAL: &str = "/usr/lib/postgresql/15/bin/pg_recvlogical";

/// `pg_recvlogical --start -S cdc` against node `i`, writing what it decodes to `file`,
/// confirming every second.
fn consume(lab: &Lab, i: usize, file: &Path) -> anyhow::Result<Consumer> {
    let port = lab.pg_port(i).to_string();
    let child = Command::new(PG_RECVLOGICAL)
        .args(["-h", &lab.pg_host(i), "-p", &port, "-U", "postgres", "-d", "postgres", "-S", "cdc", "--start", "--no-loop"])
        .args(["-F", "1", "-s", "1", "-f"])
        .arg(file)
        .env("PGPASSFILE", lab.pgpass())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    Ok(Consumer(child))
}

/// A running consumer, killed when dropped.
struct Consumer(Child);

impl Drop for Consumer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The ids of the rows whose inserts `file` holds (test_decoding's output), in order.
fn decoded_ids(file: &Path) -> Vec<u32> {
    let text = std::fs::read_to_string(file).unwrap_or_default();
    text.lines().filter_map(|l| l.split_once("INSERT: id[integer]:")).filter_map(|(_, id)| id.trim().parse().ok()).collect()
}

fn wait_decoded(file: &Path, ids: std::ops::RangeInclusive<u32>) -> anyhow::Result<Vec<u32>> {
    wait_for(Duration::from_secs(30), &format!("rows {ids:?} decoded into {}", file.display()), || {
        let got = decoded_ids(file);
        let missing: Vec<u32> = ids.clone().filter(|id| !got.contains(id)).collect();
        anyhow::ensure!(missing.is_empty(), "missing {missing:?}");
        Ok(got)
    })
}

fn insert(lab: &Lab, i: usize, ids: std::ops::RangeInclusive<u32>) -> anyhow::Result<()> {
    for id in ids {
        lab.psql(i, &format!("insert into cdc_rows values ({id})"))?;
    }
    Ok(())
}

/// Node `i`'s slot `name`: its type and position (confirmed_flush_lsn for a logical
/// one, restart_lsn for a physical one, "none" before it reserves WAL), or "" when it
/// has none.
fn slot(lab: &Lab, i: usize, name: &str) -> anyhow::Result<String> {
    lab.psql(
        i,
        &format!(
            "select slot_type || ' ' || coalesce(coalesce(confirmed_flush_lsn, restart_lsn)::text, 'none') from pg_replication_slots where slot_name = '{name}'"
        ),
    )
}

/// Waits until slot `cdc` of every node in `nodes` has a position at least `lsn`.
fn wait_cdc_at(lab: &Lab, nodes: &[usize], lsn: &str) -> anyhow::Result<()> {
    wait_for(HEAL, &format!("slot cdc at {lsn} on {nodes:?}"), || {
        for &i in nodes {
            let at = lab.psql(i, &format!("select confirmed_flush_lsn >= '{lsn}' from pg_replication_slots where slot_name = 'cdc'"))?;
            anyhow::ensure!(at == "t", "{}'s slot cdc: {:?}", lab.name(i), slot(lab, i, "cdc")?);
        }
        Ok(())
    })
}

fn pending(lab: &Lab, i: usize) -> anyhow::Result<bool> {
    let (_, body) = lab.rest(i, "GET", "/patroni", "")?;
    let status: serde_json::Value = serde_json::from_str(&body)?;
    Ok(status.get("pending_restart").and_then(serde_json::Value::as_bool).unwrap_or(false))
}

fn dir_for_consumers(lab: &Lab) -> anyhow::Result<PathBuf> {
    let dir = lab.dir.path().join("cdc");
    std::fs::create_dir(&dir)?;
    Ok(dir)
}

#[test]
fn a_logical_consumer_continues_on_the_new_primary_after_a_failover() -> anyhow::Result<()> {
    let lab = Lab::up(3)?;
    with_logs(&lab, || {
        let old = lab.primary()?;
        let replicas: Vec<usize> = (0..3).filter(|&i| i != old).collect();
        let (code, body) = lab.rest(old, "PATCH", "/config", r#"{"slots": {"cdc": {"type": "logical"}}}"#)?;
        assert!(code == 400 && body.contains("slots.cdc: a logical slot needs a database and a plugin"), "{code} {body}");
        let member_slot = lab.name(replicas[0]).replace('-', "_");
        let clash =
            format!(r#"{{"slots": {{"{member_slot}": {{"type": "logical", "database": "postgres", "plugin": "test_decoding"}}}}}}"#);
        let (code, body) = lab.rest(old, "PATCH", "/config", &clash)?;
        assert!(code == 400 && body.contains("replicates through a physical slot of that name"), "{code} {body}");
        let config = r#"{"slots": {"cdc": {"type": "logical", "database": "postgres", "plugin": "test_decoding"}, "archiver": {}},
                         "ignore_slots": [{"name": "keep_me", "type": "physical"}]}"#;
        let (code, body) = lab.rest(old, "PATCH", "/config", config)?;
        anyhow::ensure!(code == 200, "PATCH /config: {code} {body}");

        // A logical slot needs wal_level = logical, which the agents set: a restart applies it.
        wait_for(Duration::from_secs(30), "wal_level pending on every node", || {
            for i in 0..3 {
                anyhow::ensure!(pending(&lab, i)?, "{} shows no pending restart", lab.name(i));
            }
            Ok(())
        })?;
        lab.psql(old, "select pg_create_physical_replication_slot('keep_me'), pg_create_physical_replication_slot('stray')")?;
        wait_for(HEAL, "the unknown slot dropped", || {
            anyhow::ensure!(slot(&lab, old, "stray")?.is_empty(), "stray is still there");
            Ok(())
        })?;
        assert!(slot(&lab, old, "keep_me")?.starts_with("physical"), "ignore_slots keeps keep_me");
        lab.ctl(&["restart", "demo", "--pending", "--force"])?;
        wait_for(HEAL, "slots cdc and archiver on the primary and on both replicas", || {
            for i in 0..3 {
                anyhow::ensure!(slot(&lab, i, "cdc")?.starts_with("logical"), "{} has no slot cdc yet", lab.name(i));
                anyhow::ensure!(slot(&lab, i, "archiver")?.starts_with("physical"), "{} has no slot archiver yet", lab.name(i));
            }
            Ok(())
        })?;
        for &i in &replicas {
            assert_eq!(lab.psql(i, "show hot_standby_feedback")?, "on", "a replica with logical slot copies feeds back its xmin");
        }
        assert_eq!(slot(&lab, old, "keep_me")?.split(' ').next(), Some("physical"), "still kept");

        let dir = dir_for_consumers(&lab)?;
        lab.psql(old, "create table cdc_rows (id int primary key)")?;
        let (before, after) = (dir.join("before.out"), dir.join("after.out"));
        let first = consume(&lab, old, &before)?;
        insert(&lab, old, 1..=20)?;
        wait_decoded(&before, 1..=20)?;
        let confirmed = lab.psql(old, "select pg_current_wal_lsn()")?;
        wait_cdc_at(&lab, &[old], &confirmed)?;
        // The replicas' copies follow what the consumer confirmed on the primary.
        wait_cdc_at(&lab, &replicas, &confirmed)?;

        lab.kill(old)?;
        drop(first);
        let new = lab.wait_new_primary(old, HEAL)?;
        wait_for(Duration::from_secs(30), "inserts on the new primary", || insert(&lab, new, 21..=25))?;
        let _second = consume(&lab, new, &after)?;
        insert(&lab, new, 26..=40)?;
        let got = wait_decoded(&after, 21..=40)?;
        let resent: Vec<&u32> = got.iter().filter(|id| **id <= 20).collect();
        assert!(resent.is_empty(), "the new primary's slot resent confirmed changes {resent:?}: {got:?}");
        assert!(slot(&lab, new, "archiver")?.starts_with("physical"), "the permanent physical slot is on the new primary");
        Ok(())
    })
}
