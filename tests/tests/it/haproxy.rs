//! HAProxy in front of a lab (`raftctl lab up --haproxy`, deploy/haproxy.cfg with the
//! lab's ports): the primary port takes writes, the replicas port leads to a replica,
//! and after the primary crashes the primary port takes writes again, on another node.
//! Behaviour is asserted, not timing.

use std::time::Duration;

use raftgres_tests::lab::{wait_for, Lab};

use crate::writes::with_logs;

/// HAProxy's primary port for a lab: 5000 when node1's PostgreSQL is on 5432, shifted
/// like every other port (the replicas port is the next one).
fn primary_port(lab: &Lab) -> u16 {
    lab.base_port - (5432 - 5000)
}

/// `psql -Atc SQL` as `postgres` through `127.0.0.1:port` (HAProxy); trimmed stdout.
fn psql_at(lab: &Lab, port: u16, sql: &str) -> anyhow::Result<String> {
    lab.psql_at("127.0.0.1", port, "HAProxy", sql)
}

#[test]
fn haproxy_leads_to_the_primary_and_follows_a_failover() -> anyhow::Result<()> {
    let lab = Lab::up_with(3, &["--haproxy"])?;
    let (rw, ro) = (primary_port(&lab), primary_port(&lab) + 1);
    with_logs(&lab, || {
        let status = lab.raftctl(&["status"])?;
        let status = String::from_utf8_lossy(&status.stdout).into_owned();
        anyhow::ensure!(
            status.lines().any(|l| l.starts_with("haproxy") && l.contains("running")),
            "lab status does not show a running haproxy:\n{status}"
        );

        psql_at(&lab, rw, "create table t (v text primary key, at timestamptz default now())")?;
        psql_at(&lab, rw, "insert into t(v) values ('before')")?;
        let primary = lab.wait_healthy(Duration::from_secs(60), "before")?;
        let primary_pg = lab.pg_port(primary).to_string();
        assert_eq!(psql_at(&lab, rw, "select inet_server_port()")?, primary_pg, "port {rw} leads to the primary");

        // The replicas port: a replica (round robin over both), which has the row.
        for _ in 0..4 {
            let answer = psql_at(&lab, ro, "select pg_is_in_recovery(), (select v from t)")?;
            assert_eq!(answer, "t|before", "port {ro} must lead to a replica that has the row");
        }
        let err = psql_at(&lab, ro, "insert into t(v) values ('nope')").expect_err("replicas refuse writes");
        assert!(err.to_string().contains("read-only"), "{err}");

        // Crash the primary: the primary port must lead to a new one.
        lab.kill(primary)?;
        let port = wait_for(Duration::from_secs(30), "a write through HAProxy after the primary crashed", || {
            psql_at(&lab, rw, "insert into t(v) values ('after') on conflict (v) do nothing")?;
            psql_at(&lab, rw, "select inet_server_port() from t where v = 'after'")
        })?;
        assert_ne!(port, primary_pg, "the write after the crash went to the crashed node");
        assert_eq!(
            psql_at(&lab, rw, "select string_agg(v, ',' order by v) from t")?,
            "after,before",
            "the new primary has the write made before the crash"
        );
        Ok(())
    })
}
