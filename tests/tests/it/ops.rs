//! Operating a real three-node cluster with `raftctl`: switchover under a write load
//! (no acknowledged write lost, the old primary follows the new one), scheduled
//! switchover cancelled, manual failover, pause (no automatic failover while paused)
//! and resume, show-config / edit-config with validation, history.

use std::sync::Arc;
use std::time::{Duration, Instant};

use raftgres_tests::lab::{wait_for, Lab};

use crate::writes::{create_table, seed, with_logs, Writer};

const HEAL: Duration = Duration::from_secs(60);

#[test]
fn switchover_loses_no_acknowledged_write() -> anyhow::Result<()> {
    let lab = Arc::new(Lab::up(3)?);
    with_logs(&lab, || {
        let old = seed(&lab, "start", HEAL)?;
        let candidate = (old + 1) % 3;
        let writer = Writer::start(lab.clone());
        std::thread::sleep(Duration::from_secs(1));
        let out = lab.ctl(&["switchover", "--candidate", &lab.name(candidate), "--force"]);
        std::thread::sleep(Duration::from_secs(2));
        let acks = writer.finish()?;
        let out = out?;
        assert!(out.contains(&format!("{} is the new primary", lab.name(candidate))), "{out}");
        assert_eq!(lab.primary()?, candidate);
        let rows = lab.psql(candidate, "select string_agg(v, ',') from t")?;
        let present: std::collections::HashSet<&str> = rows.split(',').collect();
        let lost: Vec<u64> = acks.iter().filter(|a| !present.contains(format!("w{}", a.row).as_str())).map(|a| a.row).collect();
        assert!(lost.is_empty(), "acknowledged rows lost in the switchover: {lost:?}");
        assert!(acks.iter().any(|a| a.node == old) && acks.iter().any(|a| a.node == candidate), "writes on both sides");
        lab.psql(candidate, "insert into t(v) values ('after')")?;
        assert_eq!(lab.wait_healthy(HEAL, "after")?, candidate, "the old primary follows the new one");
        let history = lab.ctl(&["history"])?;
        assert!(history.contains(&lab.name(candidate)), "{history}");
        Ok(())
    })
}

#[test]
fn scheduled_switchover_can_be_cancelled_and_failover_picks_the_candidate() -> anyhow::Result<()> {
    let lab = Lab::up(3)?;
    with_logs(&lab, || {
        let old = lab.primary()?;
        let out = lab.ctl(&["switchover", "--scheduled", "2099-01-01T00:00:00Z", "--force"])?;
        assert!(out.contains("scheduled"), "{out}");
        assert!(lab.ctl(&["switchover", "--force"]).is_err(), "a second request while one is scheduled is refused");
        assert!(lab.ctl(&["switchover", "--cancel"])?.contains("cancelled"));
        assert!(lab.ctl(&["switchover", "--cancel"]).is_err(), "nothing left to cancel");
        let err = lab.ctl(&["switchover", "--candidate", "nosuchnode", "--force"]).expect_err("unknown member");
        assert!(err.to_string().contains("no member named nosuchnode"), "{err}");
        let target = (old + 2) % 3;
        lab.psql(old, "create table f(x int); insert into f values (1)")?;
        wait_for(HEAL, "the target replica streaming", || {
            anyhow::ensure!(lab.psql(target, "select count(*) from f")? == "1", "not replayed yet");
            Ok(())
        })?;
        let out = lab.ctl(&["failover", "--candidate", &lab.name(target), "--force"])?;
        assert!(out.contains(&format!("{} is the new primary", lab.name(target))), "{out}");
        assert_eq!(lab.primary()?, target);
        Ok(())
    })
}

#[test]
fn paused_cluster_does_not_fail_over_until_resumed() -> anyhow::Result<()> {
    let lab = Lab::up(3)?;
    with_logs(&lab, || {
        let old = lab.primary()?;
        assert!(lab.ctl(&["pause", "--wait"])?.contains("paused"));
        assert!(lab.ctl(&["list"])?.contains("Maintenance mode: on"));
        assert!(lab.ctl(&["pause"]).is_err(), "pausing twice is refused");
        lab.kill(old)?;
        // ttl is 2 s: well past it, still nobody was promoted.
        std::thread::sleep(Duration::from_secs(6));
        for i in (0..3).filter(|&i| i != old) {
            assert_eq!(lab.psql(i, "select pg_is_in_recovery()")?, "t", "{} was promoted while paused", lab.name(i));
        }
        // The primary's node is gone, and its leader key with it: raftctl cannot tell a
        // dead primary from one whose agent was stopped for an upgrade, so it refuses
        // until told the primary is gone.
        let err = lab.ctl(&["resume"]).expect_err("no member holds the leader key");
        assert!(err.to_string().contains("no member holds the leader key"), "{err}");
        lab.ctl(&["resume", "--force"])?;
        let started = Instant::now();
        let new = lab.wait_new_primary(old, HEAL)?;
        assert_ne!(new, old);
        assert!(started.elapsed() < HEAL);
        Ok(())
    })
}

#[test]
fn edit_config_validates_and_applies() -> anyhow::Result<()> {
    let lab = Lab::up(3)?;
    with_logs(&lab, || {
        let primary = lab.primary()?;
        let err = lab.ctl(&["edit-config", "-s", "ttl=1", "--force"]).expect_err("unsafe timing");
        assert!(err.to_string().contains("timing is unsafe"), "{err}");
        let err = lab.ctl(&["edit-config", "-s", "loop_wiat=2", "--force"]).expect_err("typo");
        assert!(err.to_string().contains("loop_wiat is not a known setting: did you mean loop_wait?"), "{err}");
        let (code, body) = lab.rest(primary, "PATCH", "/config", r#"{"slots": {"cdc": {"type": "logical"}}}"#)?;
        assert!(code == 400 && body.contains("slots.cdc: a logical slot needs a database and a plugin"), "{code} {body}");
        lab.ctl(&["edit-config", "-s", "maximum_lag_on_failover=2097152", "-p", "work_mem=8MB", "--force"])?;
        let shown = lab.ctl(&["show-config"])?;
        assert!(shown.contains("maximum_lag_on_failover: 2097152") && shown.contains("work_mem: 8MB"), "{shown}");
        wait_for(Duration::from_secs(20), "work_mem reloaded on every node", || {
            for i in [primary, (primary + 1) % 3, (primary + 2) % 3] {
                anyhow::ensure!(lab.psql(i, "show work_mem")? == "8MB", "{} not yet", lab.name(i));
            }
            Ok(())
        })?;
        Ok(())
    })
}

#[test]
fn rest_api_switches_over_and_nodes_restart_reload_and_reinit() -> anyhow::Result<()> {
    let lab = Lab::up(3)?;
    with_logs(&lab, || {
        let old = lab.primary()?;
        let candidate = (old + 1) % 3;
        let (code, body) = lab.rest(old, "POST", "/switchover", &format!(r#"{{"candidate": "{}"}}"#, lab.name(candidate)))?;
        assert_eq!((code, body.trim()), (200, format!("Successfully switched over to \"{}\"", lab.name(candidate)).as_str()));
        assert_eq!(lab.primary()?, candidate);
        // The promoted primary's settings lost recovery_target_timeline, which PostgreSQL
        // marks pending restart; as in Patroni, recovery settings do not count (before,
        // /patroni said pending_restart: true after every switchover).
        wait_for(Duration::from_secs(20), "recovery_target_timeline dropped and pending restart in pg_settings", || {
            let waiting = lab.psql(candidate, "select string_agg(name, ',') from pg_settings where pending_restart")?;
            anyhow::ensure!(waiting == "recovery_target_timeline", "pending: {waiting:?}");
            Ok(())
        })?;
        std::thread::sleep(Duration::from_secs(3));
        let (code, body) = lab.rest(candidate, "GET", "/patroni", "")?;
        assert_eq!(code, 200, "{body}");
        assert!(!body.contains("pending_restart"), "a fresh primary shows no pending restart: {body}");
        let (code, body) = lab.rest(candidate, "POST", "/switchover", r#"{"candidate": "nosuchnode"}"#)?;
        assert_eq!(code, 412, "{body}");
        let (code, body) = lab.rest(candidate, "PATCH", "/config", r#"{"ttl": 1}"#)?;
        assert_eq!(code, 400, "unsafe timing refused: {body}");
        let (code, body) = lab.rest(candidate, "PATCH", "/config", r#"{"postgresql": {"parameters": {"work_mem": "16MB"}}}"#)?;
        assert_eq!(code, 200, "{body}");

        // restart (raftctl → REST → the node's HA loop): a new postmaster, same role
        create_table(&lab, candidate)?;
        let replica = (candidate + 1) % 3;
        let before = lab.postmaster_pid(replica)?;
        let out = lab.ctl(&["restart", &lab.name(replica), "--force"])?;
        assert!(out.contains("restarted PostgreSQL"), "{out}");
        assert_ne!(lab.postmaster_pid(replica)?, before);
        assert!(lab.ctl(&["reload", &lab.name(replica)])?.contains("reloaded"));
        assert!(lab.ctl(&["restart", &lab.name(replica), "--scheduled", "2099-01-01T00:00:00+01:00", "--force"])?.contains("scheduled"));
        assert!(lab.ctl(&["restart", &lab.name(replica), "--cancel"])?.contains("cancelled"));
        assert!(lab.ctl(&["restart", &lab.name(replica), "--cancel"]).is_err(), "nothing left to cancel");

        // reinit: refused on the primary, re-clones a replica
        let err = lab.ctl(&["reinit", &lab.name(replica)]).expect_err("no terminal, no --force");
        assert!(err.to_string().contains("there is no terminal to ask on: add --force"), "{err}");
        assert!(lab.ctl(&["reinit", &lab.name(candidate), "--force"]).is_err(), "reinit of the primary is refused");
        assert!(lab.ctl(&["reinit", &lab.name(replica), "--force"])?.contains("cloning"));
        lab.psql(candidate, "insert into t(v) values ('reinit')")?;
        assert_eq!(lab.wait_healthy(HEAL, "reinit")?, candidate);

        let topology = lab.ctl(&["topology"])?;
        let leader_row = |l: &str| l.starts_with(&format!("| {} ", lab.name(candidate))) && l.contains("| Leader");
        assert!(topology.lines().nth(3).is_some_and(leader_row), "{topology}");
        assert_eq!(topology.lines().filter(|l| l.starts_with("| + node")).count(), 2, "{topology}");
        assert_eq!(lab.ctl(&["dsn"])?.trim(), format!("host=127.0.0.1 port={}", lab.pg_port(candidate)));
        let watch = lab.ctl(&["watch", "--count", "2", "--interval", "0.2"])?;
        assert_eq!(watch.matches("Every 0.2s: raftctl watch").count(), 2, "{watch}");
        assert!(watch.contains("| Leader") && watch.contains("Latest events:"), "{watch}");
        wait_for(Duration::from_secs(10), "every member's versions", || {
            let version = lab.ctl(&["version"])?;
            anyhow::ensure!(version.matches("PostgreSQL 15.").count() == 3, "{version}");
            Ok(())
        })?;
        Ok(())
    })
}

/// Adds `tags` to node `i`'s config file and restarts it.
fn set_tags(lab: &Lab, i: usize, tags: &str) -> anyhow::Result<()> {
    let path = lab.dir.path().join(lab.name(i)).join("raftgres.yml");
    let text = std::fs::read_to_string(&path)?;
    std::fs::write(&path, format!("{text}\ntags: {tags}\n"))?;
    lab.kill(i)?;
    lab.start(i)
}

#[test]
fn tags_nofailover_and_replicatefrom_are_honoured() -> anyhow::Result<()> {
    let lab = Lab::up(3)?;
    with_logs(&lab, || {
        let primary = lab.primary()?;
        let (a, b) = ((primary + 1) % 3, (primary + 2) % 3);
        set_tags(&lab, b, &format!("{{nofailover: true, replicatefrom: {}}}", lab.name(a)))?;
        seed(&lab, "tagged", HEAL)?;
        let upstream = lab.psql(b, "select sender_port from pg_stat_wal_receiver")?;
        assert_eq!(upstream, lab.pg_port(a).to_string(), "replicatefrom: {} streams from {}", lab.name(b), lab.name(a));
        wait_for(Duration::from_secs(10), "the tag filter matching", || {
            anyhow::ensure!(lab.rest_status(b, "OPTIONS", "/replica?tag_nofailover=true")? == 200, "503");
            Ok(())
        })?;
        assert_eq!(lab.rest_status(b, "OPTIONS", "/replica?tag_nofailover=false")?, 503);
        lab.kill(primary)?;
        let new = lab.wait_new_primary(primary, HEAL)?;
        assert_eq!(new, a, "the nofailover member is never promoted");
        std::thread::sleep(Duration::from_secs(3));
        assert_eq!(lab.psql(b, "select pg_is_in_recovery()")?, "t");
        Ok(())
    })
}

#[test]
fn watchdog_is_kept_alive_only_while_primary() -> anyhow::Result<()> {
    let lab = Lab::up(3)?;
    with_logs(&lab, || {
        let primary = lab.primary()?;
        // The watchdog's timeout comes out of the write budget: ttl 5 leaves room for 1 s.
        lab.ctl(&["edit-config", "-s", "ttl=5", "--force"])?;
        let node = (primary + 1) % 3;
        let node_dir = lab.dir.path().join(lab.name(node));
        let device = node_dir.join("fake-watchdog");
        std::fs::write(&device, "")?;
        let owner = std::fs::metadata(&node_dir)?;
        std::os::unix::fs::chown(
            &device,
            Some(std::os::unix::fs::MetadataExt::uid(&owner)),
            Some(std::os::unix::fs::MetadataExt::gid(&owner)),
        )?;
        let config = node_dir.join("raftgres.yml");
        let text = std::fs::read_to_string(&config)?;
        std::fs::write(
            &config,
            format!("{text}\nbootstrap: {{dcs: {{ttl: 5}}}}\nwatchdog: {{mode: required, device: {}, timeout: 1}}\n", device.display()),
        )?;
        lab.kill(node)?;
        lab.start(node)?;
        seed(&lab, "wd", HEAL)?;
        assert_eq!(std::fs::read_to_string(&device)?, "V", "probed at start, not kept alive as a replica");
        // Its member key says "running" one HA cycle after PostgreSQL answers.
        wait_for(Duration::from_secs(10), "a switchover to the watchdog node", || {
            lab.ctl(&["switchover", "--candidate", &lab.name(node), "--force"])
        })?;
        wait_for(Duration::from_secs(10), "keep-alives while primary", || {
            anyhow::ensure!(std::fs::read_to_string(&device)?.matches('1').count() >= 5, "not yet");
            Ok(())
        })?;
        // The old primary must first be back as a running replica to be a candidate.
        wait_for(Duration::from_secs(20), "a switchover back to the old primary", || {
            lab.ctl(&["switchover", "--candidate", &lab.name(primary), "--force"])
        })?;
        wait_for(Duration::from_secs(10), "the magic close after the demotion", || {
            anyhow::ensure!(std::fs::read_to_string(&device)?.ends_with('V'), "not closed");
            Ok(())
        })?;
        let settled = std::fs::read_to_string(&device)?;
        std::thread::sleep(Duration::from_secs(1));
        assert_eq!(std::fs::read_to_string(&device)?, settled, "no keep-alives as a replica");
        Ok(())
    })
}

/// Raising `ttl` (with a longer retry_timeout and margin) through `/config`, and lowering
/// it back, must not fence a healthy primary: each node's lease is replaced by one with
/// the new TTL and the leader key moves to it (issue 16 item 9). Before, the live lease
/// kept TTL 2 while the deadline took the new 1 s margin: 2 s − 1 s is shorter than the
/// new 1.25 s renewal interval, so the primary demoted between two renewals.
#[test]
fn changing_ttl_keeps_a_healthy_primary() -> anyhow::Result<()> {
    let lab = Lab::up(3)?;
    with_logs(&lab, || {
        let primary = lab.primary()?;
        create_table(&lab, primary)?;
        for (step, settings) in
            [("raised", ["ttl=10", "retry_timeout=3", "safety_margin=1"]), ("lowered", ["ttl=2", "retry_timeout=0.5", "safety_margin=0.5"])]
        {
            let mut args = vec!["edit-config"];
            for s in settings {
                args.extend(["-s", s]);
            }
            args.push("--force");
            lab.ctl(&args)?;
            for second in 0..8 {
                std::thread::sleep(Duration::from_secs(1));
                lab.psql(primary, &format!("insert into t(v) values ('{step}{second}')"))
                    .map_err(|e| anyhow::anyhow!("{second} s after ttl was {step}, the primary stopped: {e:#}"))?;
            }
            anyhow::ensure!(lab.primary()? == primary, "ttl {step}: another node became primary");
        }
        let log = lab.log(primary);
        anyhow::ensure!(!log.contains("demoted"), "the primary demoted itself");
        anyhow::ensure!(log.contains("ttl is now 10s") && log.contains("ttl is now 2s"), "the primary moved to leases with the new ttl");
        Ok(())
    })
}
