//! Upgrading raftgres with no database downtime, as Patroni users do: pause the
//! cluster, restart every agent one at a time (the same binary stands in for a new
//! one), resume. Paused, an agent that stops leaves PostgreSQL running and the next run
//! adopts it (the same postmaster), taking the leader key back on the primary.

use std::sync::Arc;
use std::time::{Duration, Instant};

use raftgres_tests::lab::{wait_for, Lab};

use crate::writes::{seed, with_logs, Writer};

const HEAL: Duration = Duration::from_secs(60);
/// How long each agent stays down (the time to install a new binary).
const DOWN: Duration = Duration::from_secs(2);

#[test]
fn paused_agents_restart_one_by_one_under_writes_with_the_same_postmasters() -> anyhow::Result<()> {
    let lab = Arc::new(Lab::up(3)?);
    with_logs(&lab, || {
        let primary = seed(&lab, "start", HEAL)?;
        assert!(lab.ctl(&["pause", "--wait"])?.contains("paused"));
        let before = (0..3).map(|i| lab.postmaster_pid(i)).collect::<anyhow::Result<Vec<i32>>>()?;
        let writer = Writer::start_on(lab.clone(), vec![primary], Duration::from_millis(50));
        let mut primary_agent_away = None;
        for (i, &postmaster) in before.iter().enumerate() {
            let stopping = Instant::now();
            lab.stop(i)?;
            assert_eq!(lab.postmaster_pid(i)?, postmaster, "{}'s postmaster is the same", lab.name(i));
            let role = lab.psql(i, "select pg_is_in_recovery()")?;
            assert_eq!(role == "f", i == primary, "{}'s PostgreSQL still answers, in its role", lab.name(i));
            std::thread::sleep(DOWN);
            lab.start(i)?;
            lab.wait_agent(i, HEAL)?;
            if i == primary {
                wait_for(HEAL, "the primary's new run holding the leader key", || {
                    anyhow::ensure!(lab.rest_status(i, "GET", "/leader")? == 200, "not yet");
                    Ok(())
                })?;
                primary_agent_away = Some((stopping, Instant::now()));
            }
            assert!(lab.log(i).contains("shutting down (cluster paused): leaving PostgreSQL running"), "{}", lab.log(i));
        }
        std::thread::sleep(Duration::from_secs(1));
        let failures = writer.failures();
        let acks = writer.finish()?;
        assert!(failures.is_empty(), "{} failed writes during the restarts: {failures:?}", failures.len());
        let (away, back) = primary_agent_away.expect("the primary's agent was restarted");
        let meanwhile = acks.iter().filter(|a| a.sent >= away && a.acked <= back).count();
        assert!(meanwhile >= 5, "writes acknowledged while the primary's agent was away: {meanwhile} of {}", acks.len());
        eprintln!("{} writes acknowledged, {meanwhile} of them while the primary's agent was away, 0 failed", acks.len());
        let after = (0..3).map(|i| lab.postmaster_pid(i)).collect::<anyhow::Result<Vec<i32>>>()?;
        assert_eq!(after, before, "no postmaster was restarted");
        assert!(lab.ctl(&["resume"])?.contains("resumed"));
        lab.psql(primary, "insert into t(v) values ('after')")?;
        assert_eq!(lab.wait_healthy(HEAL, "after")?, primary, "one primary, two streaming replicas");
        assert_eq!(lab.rest_status(primary, "GET", "/leader")?, 200);
        Ok(())
    })
}
