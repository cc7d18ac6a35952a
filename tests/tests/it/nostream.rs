//! A replica tagged `nostream` on real PostgreSQL 15: it replays WAL from the archive
//! (`restore_command`) only, as Patroni's: no WAL sender and no slot for it on the
//! primary, shown `in archive recovery`, and never restarted for not streaming.

use std::time::Duration;

use raftgres_tests::lab::{wait_for, Lab};
use serde_json::{json, Value};

use crate::replicas::{archive_with, edit_node_file, lab_owned_dir, HEAL};
use crate::writes::with_logs;

#[test]
fn a_nostream_replica_replays_the_archive_only_and_is_left_alone() -> anyhow::Result<()> {
    // Three nodes: the store keeps its quorum while the tagged replica's node restarts.
    let lab = Lab::up(3)?;
    with_logs(&lab, || {
        let primary = lab.primary()?;
        let (replica, other) = ((primary + 1) % 3, (primary + 2) % 3);
        let name = lab.name(replica);
        let archive = lab_owned_dir(&lab, "archive")?;
        archive_with(&lab, primary, &format!("cp %p {}/%f", archive.display()))?;

        lab.stop(replica)?;
        edit_node_file(&lab, replica, |doc| {
            doc["tags"] = json!({"nostream": true});
            doc["postgresql"]["recovery_conf"] = json!({"restore_command": format!("cp {}/%f %p", archive.display())});
        })?;
        lab.start(replica)?;
        wait_for(HEAL, "the tagged replica running in recovery", || {
            anyhow::ensure!(lab.psql(replica, "select pg_is_in_recovery()")? == "t", "not in recovery");
            Ok(())
        })?;

        lab.psql(primary, "create table t(v text); insert into t values ('through the archive')")?;
        lab.psql(primary, "select pg_switch_wal()")?;
        wait_for(HEAL, "the row on the nostream replica", || {
            let rows = lab.psql(replica, "select count(*) from pg_class where relname = 't'")?;
            anyhow::ensure!(rows == "1" && lab.psql(replica, "select v from t")? == "through the archive", "not replayed yet");
            Ok(())
        })?;
        assert_eq!(lab.psql(replica, "select count(*) from pg_stat_wal_receiver")?, "0", "no WAL receiver");
        assert_eq!(lab.psql(replica, "show primary_conninfo")?, "", "no primary_conninfo");
        assert_eq!(lab.psql(replica, "show primary_slot_name")?, "", "no primary_slot_name");
        // The other replica streams as before.
        assert_eq!(lab.psql(other, "select status from pg_stat_wal_receiver")?, "streaming");
        let senders = lab.psql(primary, "select string_agg(application_name, ',' order by application_name) from pg_stat_replication")?;
        assert_eq!(senders, lab.name(other), "the primary sends WAL to the streaming replica only");
        // Its slot from when it streamed is dropped once inactive (Patroni keeps none for it).
        let slot = name.clone(); // the lab's names are slot names already
        wait_for(HEAL, "the nostream replica's slot dropped on the primary", || {
            let slots = lab.psql(primary, "select string_agg(slot_name, ',' order by slot_name) from pg_replication_slots")?;
            anyhow::ensure!(!slots.split(',').any(|s| s == slot), "slots: {slots}");
            Ok(())
        })?;

        // Shown as Patroni shows it; healthy as a replica, with its replay lag.
        wait_for(HEAL, "/cluster and raftctl list showing it in archive recovery", || {
            let (code, body) = lab.rest(other, "GET", "/cluster", "")?;
            let cluster: Value = serde_json::from_str(&body)?;
            let member = cluster["members"].as_array().into_iter().flatten().find(|m| m["name"] == name.as_str()).cloned();
            let state = member.as_ref().map(|m| m["state"].clone()).unwrap_or_default();
            anyhow::ensure!(code == 200 && state == "in archive recovery", "/cluster says {state} ({code})");
            anyhow::ensure!(member.is_some_and(|m| m["tags"]["nostream"] == true), "the tag is published");
            let list = lab.ctl(&["list"])?;
            let row = list.lines().find(|l| l.contains(&format!("| {name} "))).unwrap_or_default().to_string();
            anyhow::ensure!(row.contains("| Replica") && row.contains("in archive recovery"), "raftctl list: {row}");
            Ok(())
        })?;
        for (path, code) in [("/replica", 200), ("/health", 200), ("/replica?lag=16MB", 200), ("/primary", 503)] {
            assert_eq!(lab.rest_status(replica, "GET", path)?, code, "{path}");
        }

        // Well over the stalled-replica patience (10 s in the lab) of HA cycles: the same
        // postmaster, nothing stopped, restarted or re-cloned.
        let pid = lab.postmaster_pid(replica)?;
        std::thread::sleep(Duration::from_secs(15));
        // Apart: in one transaction the switch would come before the commit record.
        lab.psql(primary, "insert into t values ('later')")?;
        lab.psql(primary, "select pg_switch_wal()")?;
        wait_for(HEAL, "the later row on the nostream replica", || {
            anyhow::ensure!(lab.psql(replica, "select count(*) from t")? == "2", "not replayed yet");
            Ok(())
        })?;
        assert_eq!(lab.postmaster_pid(replica)?, pid, "PostgreSQL of the nostream replica was restarted");
        let log = lab.log(replica);
        for never in ["has neither streamed nor replayed", "removed the data directory", "diverged"] {
            assert!(!log.contains(never), "the log says {never:?}");
        }
        Ok(())
    })
}
