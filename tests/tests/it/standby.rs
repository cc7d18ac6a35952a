//! A standby cluster on real PostgreSQL 15: a second lab replicating from the first
//! lab's primary (`raftctl lab up --standby-cluster`), its leader a standby leader that
//! the other two follow; a failover inside it keeps it following; removing the section
//! (`raftctl promote-cluster`) promotes it; `raftctl demote-cluster` then makes the first
//! lab follow it.

use std::time::Duration;

use anyhow::{bail, ensure};
use raftgres_tests::lab::{wait_for, Lab};

use crate::writes::with_logs;

const HEAL: Duration = Duration::from_secs(90);

/// Waits until every running node of `lab` but `skip` holds the row `v`.
fn wait_row_everywhere(lab: &Lab, skip: Option<usize>, v: &str) -> anyhow::Result<()> {
    wait_for(HEAL, &format!("row {v} on every node of the lab"), || {
        for i in (0..lab.nodes).filter(|i| Some(*i) != skip) {
            let found = lab.psql(i, &format!("select count(*) from t where v = '{v}'"))?;
            ensure!(found == "1", "{} has {found} rows {v}", lab.name(i));
        }
        Ok(())
    })
}

/// The one node of `lab` (but `skip`) whose `/standby-leader` answers 200.
fn standby_leader(lab: &Lab, skip: Option<usize>) -> anyhow::Result<usize> {
    wait_for(HEAL, "one standby leader", || {
        let leaders: Vec<usize> = (0..lab.nodes)
            .filter(|i| Some(*i) != skip)
            .filter(|&i| lab.rest_status(i, "GET", "/standby-leader").is_ok_and(|c| c == 200))
            .collect();
        match leaders.as_slice() {
            [one] => Ok(*one),
            other => bail!("standby leaders: {other:?}"),
        }
    })
}

#[test]
fn a_standby_cluster_follows_the_remote_primary_through_a_failover_and_is_promoted_by_removing_the_section() -> anyhow::Result<()> {
    let main = Lab::up(3)?;
    let primary = main.primary()?;
    main.psql(primary, "create table t (v text primary key); insert into t values ('before')")?;
    let remote = format!("127.0.0.1:{}", main.pg_port(primary));
    let main_dir = main.dir.path().to_string_lossy().into_owned();
    let dr = Lab::up_with(3, &["--standby-cluster", &remote, "--passwords-from", &main_dir])?;
    with_logs(&dr, || {
        // Copied from the remote, then streamed: on all three nodes.
        wait_row_everywhere(&dr, None, "before")?;
        let leader = standby_leader(&dr, None)?;
        ensure!(dr.rest_status(leader, "GET", "/primary")? == 503, "a standby leader is no primary");
        ensure!(dr.psql(leader, "select pg_is_in_recovery()")? == "t", "the standby leader is not promoted");
        let conninfo = dr.psql(leader, "show primary_conninfo")?;
        ensure!(conninfo.contains(&format!("port={}", main.pg_port(primary))), "the standby leader streams from the remote: {conninfo}");
        let list = dr.ctl(&["list"])?;
        ensure!(list.contains("Standby Leader"), "raftctl list:\n{list}");
        main.psql(primary, "insert into t values ('streamed')")?;
        wait_row_everywhere(&dr, None, "streamed")?;

        // The standby leader's node dies: another takes the key and follows the remote.
        dr.kill(leader)?;
        let next = standby_leader(&dr, Some(leader))?;
        main.psql(primary, "insert into t values ('after the failover')")?;
        wait_row_everywhere(&dr, Some(leader), "after the failover")?;
        ensure!(dr.psql(next, "select pg_is_in_recovery()")? == "t", "the new standby leader is not promoted");
        dr.start(leader)?;
        wait_row_everywhere(&dr, None, "after the failover")?;

        // Removing the section promotes the standby cluster (`raftctl promote-cluster`
        // is that change of /config).
        let (code, body) = dr.rest(next, "PATCH", "/config", r#"{"standby_cluster": {"host": "127.0.0.1", "port": "x"}}"#)?;
        ensure!(code == 400 && body.contains("standby_cluster.port must be a port number"), "a bad section is refused: {code} {body}");
        let promoted_msg = dr.ctl(&["promote-cluster", "--force"])?;
        ensure!(promoted_msg.contains("standby_cluster removed"), "{promoted_msg}");
        let promoted = wait_for(HEAL, "the standby cluster promoted", || dr.primary())?;
        ensure!(promoted == next, "the standby leader {} promoted, not {}", dr.name(next), dr.name(promoted));
        dr.psql(promoted, "insert into t values ('written on the promoted cluster')")?;
        wait_row_everywhere(&dr, None, "written on the promoted cluster")?;
        ensure!(main.psql(primary, "select count(*) from t")? == "3", "the remote has none of the promoted cluster's rows");

        // The old site follows the new primary (the way back): its primary is demoted,
        // rewound, and becomes the standby leader; its replicas follow it.
        let port = dr.pg_port(promoted).to_string();
        main.ctl(&["demote-cluster", "--host", "127.0.0.1", "--port", &port, "--force"])?;
        wait_row_everywhere(&main, None, "written on the promoted cluster")?;
        let old_site_leader = standby_leader(&main, None)?;
        ensure!(main.psql(old_site_leader, "select pg_is_in_recovery()")? == "t", "the demoted site's leader is a standby");
        for i in 0..main.nodes {
            let log = main.log(i);
            ensure!(!log.contains("removed the data directory"), "{} was re-cloned, not rewound:\n{log}", main.name(i));
        }
        Ok(())
    })
    .inspect_err(|_| eprintln!("--- the remote lab ---\n{}", main.logs()))
}
