//! Cluster-wide parameters (`edit-config -p max_connections=...`) applied with `raftctl
//! restart` in either order, as Patroni allows: a replica runs with at least its
//! primary's value as its control file records it (pg_controldata), so a replica
//! restarted before its primary after a lowering keeps the primary's value instead of
//! stopping with "insufficient parameter settings", and takes the lower one at its
//! next restart once the primary has restarted.

use std::time::Duration;

use raftgres_tests::lab::{wait_for, Lab};

use crate::writes::{seed, with_logs};

const HEAL: Duration = Duration::from_secs(90);

fn max_connections(lab: &Lab, i: usize) -> anyhow::Result<String> {
    lab.psql(i, "show max_connections")
}

/// Node `i`'s `pending_restart` in `GET /patroni` (left out when false).
fn pending(lab: &Lab, i: usize) -> anyhow::Result<bool> {
    let (_, body) = lab.rest(i, "GET", "/patroni", "")?;
    let status: serde_json::Value = serde_json::from_str(&body)?;
    Ok(status.get("pending_restart").and_then(serde_json::Value::as_bool).unwrap_or(false))
}

fn wait_pending(lab: &Lab, nodes: &[usize]) -> anyhow::Result<()> {
    wait_for(Duration::from_secs(30), "a pending restart", || {
        for &i in nodes {
            anyhow::ensure!(pending(lab, i)?, "{} shows no pending restart", lab.name(i));
        }
        Ok(())
    })
}

#[test]
fn cluster_wide_values_keep_replicas_running_in_either_restart_order() -> anyhow::Result<()> {
    let lab = Lab::up(3)?;
    with_logs(&lab, || {
        let primary = seed(&lab, "start", HEAL)?;
        let replicas: Vec<usize> = (0..3).filter(|&i| i != primary).collect();
        let all: Vec<usize> = (0..3).collect();

        // Raised, the primary restarted first: the replicas pause replay until their
        // restart (PostgreSQL's rule), then run with the new value.
        lab.ctl(&["edit-config", "-p", "max_connections=150", "--force"])?;
        wait_pending(&lab, &all)?;
        lab.ctl(&["restart", &lab.name(primary), "--pending", "--force"])?;
        lab.ctl(&["restart", "demo", "--role", "replica", "--pending", "--force"])?;
        lab.psql(primary, "insert into t(v) values ('raised')")?;
        assert_eq!(lab.wait_healthy(HEAL, "raised")?, primary);
        for &i in &all {
            assert_eq!(max_connections(&lab, i)?, "150", "{}", lab.name(i));
        }

        // Lowered, the replicas restarted first: they keep the primary's 150 (before,
        // they were started with 120 and PostgreSQL refused to run them).
        lab.ctl(&["edit-config", "-p", "max_connections=120", "--force"])?;
        wait_pending(&lab, &[primary])?;
        for &i in &replicas {
            assert!(!pending(&lab, i)?, "{} runs with its primary's value: nothing to restart for", lab.name(i));
        }
        lab.ctl(&["restart", "demo", "--role", "replica", "--force"])?;
        lab.psql(primary, "insert into t(v) values ('replicas')")?;
        assert_eq!(lab.wait_healthy(HEAL, "replicas")?, primary);
        for &i in &replicas {
            assert_eq!(max_connections(&lab, i)?, "150", "{} keeps the primary's value", lab.name(i));
            let log = lab.log(i);
            assert!(log.contains("a standby needs at least its primary's value: max_connections = 150"), "{log}");
        }
        // Once the primary runs with 120, the replicas' next restart lowers theirs.
        lab.ctl(&["restart", &lab.name(primary), "--pending", "--force"])?;
        assert_eq!(max_connections(&lab, primary)?, "120");
        wait_pending(&lab, &replicas)?;
        lab.ctl(&["restart", "demo", "--role", "replica", "--pending", "--force"])?;
        lab.psql(primary, "insert into t(v) values ('lowered')")?;
        assert_eq!(lab.wait_healthy(HEAL, "lowered")?, primary);
        for &i in &all {
            assert_eq!(max_connections(&lab, i)?, "120", "{}", lab.name(i));
            assert!(!pending(&lab, i)?, "{}: nothing left to restart for", lab.name(i));
            let pg_log = std::fs::read_to_string(lab.dir.path().join(lab.name(i)).join("postgresql.log")).unwrap_or_default();
            assert!(!pg_log.contains("recovery aborted because of insufficient parameter settings"), "{}: {pg_log}", lab.name(i));
        }
        Ok(())
    })
}
