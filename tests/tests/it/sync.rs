//! Synchronous mode on three real nodes: under a write load that records every
//! acknowledged commit, kill -9 of the primary's node and SIGSTOP of its agent, several
//! rounds — no acknowledged commit lost, never two writable primaries, only the
//! synchronous standby promoted; strict mode blocks commits without a standby; the
//! non-strict mode falls back to asynchronous; a lost synchronous standby is replaced.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use raftgres_tests::lab::{wait_for, Lab};

use crate::writes::{assert_one_writer_at_a_time, create_table, with_logs, Ack, Writer};

const HEAL: Duration = Duration::from_secs(60);

/// Turns synchronous mode on (with `extra` settings) and waits until `/sync` names a
/// standby; returns (primary, sync standby).
fn enable_sync(lab: &Lab, extra: &[&str]) -> anyhow::Result<(usize, usize)> {
    let mut args = vec!["edit-config", "-s", "synchronous_mode=true", "--force"];
    for e in extra {
        args.extend(["-s", e]);
    }
    lab.ctl(&args)?;
    wait_for(HEAL, "a synchronous standby in /sync", || {
        let primary = lab.primary()?;
        let names = lab.psql(primary, "select application_name from pg_stat_replication where sync_state = 'sync'")?;
        let list = lab.ctl(&["list"])?;
        let sync = (0..lab.nodes)
            .find(|&i| names == lab.name(i) && list.contains("Sync Standby"))
            .ok_or_else(|| anyhow::anyhow!("not yet: {names:?}"))?;
        Ok((primary, sync))
    })
}

/// Every acknowledged row is on node `i`.
fn assert_none_lost(lab: &Lab, i: usize, acks: &[Ack]) -> anyhow::Result<()> {
    let rows = lab.psql(i, "select coalesce(string_agg(v, ','), '') from t")?;
    let present: HashSet<&str> = rows.split(',').collect();
    let lost: Vec<u64> = acks.iter().filter(|a| !present.contains(format!("w{}", a.row).as_str())).map(|a| a.row).collect();
    anyhow::ensure!(lost.is_empty(), "acknowledged commits lost: {lost:?}");
    Ok(())
}

#[test]
fn sync_mode_loses_no_acknowledged_commit_across_failovers() -> anyhow::Result<()> {
    let lab = Arc::new(Lab::up(3)?);
    with_logs(&lab, || {
        let primary = lab.primary()?;
        create_table(&lab, primary)?;
        let mut all = Vec::new();
        for round in 0..6 {
            let (old, sync) = enable_sync(&lab, &[])?;
            let writer = Writer::start(lab.clone());
            std::thread::sleep(Duration::from_secs(1));
            let t0 = std::time::Instant::now();
            let freeze = round % 2 == 1;
            if freeze {
                lab.pause(old)?
            } else {
                lab.kill(old)?
            }
            let new =
                wait_for(HEAL, "another node accepting writes", || writer.other_writer(old).ok_or_else(|| anyhow::anyhow!("not yet")));
            std::thread::sleep(Duration::from_secs(1));
            let acks = writer.finish()?;
            let new = new?;
            assert_eq!(new, sync, "round {round}: only the synchronous standby may be promoted");
            assert_one_writer_at_a_time(&acks, old, new, t0);
            assert_none_lost(&lab, new, &acks)?;
            all.extend(acks);
            if freeze {
                lab.resume(old)?
            } else {
                lab.start(old)?
            }
            lab.psql(new, &format!("insert into t(v) values ('round{round}')"))?;
            lab.wait_healthy(HEAL, &format!("round{round}"))?;
        }
        let last = lab.primary()?;
        assert_none_lost(&lab, last, &all)
    })
}

/// Cuts every standby off (the replication user may not log in, its walsenders are
/// terminated) without touching the Raft nodes: killing two of three nodes would take
/// the store's quorum away and rightly demote the primary. The statements do not wait
/// for a standby (`synchronous_commit = local`).
fn cut_standbys(lab: &Lab, primary: usize, cut: bool) -> anyhow::Result<()> {
    let login = if cut { "nologin" } else { "login" };
    lab.psql(primary, &format!("set synchronous_commit = local; alter role replicator {login}"))?;
    if cut {
        lab.psql(primary, "select count(pg_terminate_backend(pid)) from pg_stat_replication")?;
    }
    Ok(())
}

/// True when an INSERT on node `i` is still waiting after `wait` (then it is cancelled).
fn insert_blocks(lab: &Lab, i: usize, wait: Duration) -> anyhow::Result<bool> {
    let mut child = std::process::Command::new("/usr/bin/psql")
        .args([
            "-X",
            "-h",
            "127.0.0.1",
            "-p",
            &lab.pg_port(i).to_string(),
            "-U",
            "postgres",
            "-Atc",
            "insert into t(v) values (gen_random_uuid()::text)",
        ])
        .env("PGPASSFILE", lab.pgpass())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()?;
    let deadline = std::time::Instant::now() + wait;
    while std::time::Instant::now() < deadline {
        if child.try_wait()?.is_some() {
            return Ok(false);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child.kill()?;
    child.wait()?;
    Ok(true)
}

#[test]
fn strict_mode_blocks_commits_until_a_standby_is_back() -> anyhow::Result<()> {
    let lab = Lab::up(3)?;
    with_logs(&lab, || {
        let (primary, _) = enable_sync(&lab, &["synchronous_mode_strict=true"])?;
        create_table(&lab, primary)?;
        cut_standbys(&lab, primary, true)?;
        wait_for(HEAL, "synchronous_standby_names = '*' (no standby)", || {
            anyhow::ensure!(lab.psql(primary, "show synchronous_standby_names")? == "*", "not yet");
            Ok(())
        })?;
        assert!(insert_blocks(&lab, primary, Duration::from_secs(3))?, "strict mode must block commits without a standby");
        assert_eq!(lab.psql(primary, "show synchronous_standby_names")?, "*", "never asynchronous");
        cut_standbys(&lab, primary, false)?;
        wait_for(HEAL, "commits flowing again", || {
            anyhow::ensure!(!insert_blocks(&lab, primary, Duration::from_secs(2))?, "still blocked");
            Ok(())
        })?;
        Ok(())
    })
}

#[test]
fn non_strict_mode_falls_back_to_async_and_replaces_a_lost_standby() -> anyhow::Result<()> {
    let lab = Lab::up(3)?;
    with_logs(&lab, || {
        let (primary, sync) = enable_sync(&lab, &[])?;
        create_table(&lab, primary)?;
        let other = (0..3).find(|&i| i != primary && i != sync).ok_or_else(|| anyhow::anyhow!("three nodes"))?;
        lab.kill(sync)?;
        wait_for(HEAL, "the other replica becoming the synchronous standby", || {
            let names = lab.psql(primary, "select application_name from pg_stat_replication where sync_state = 'sync'")?;
            anyhow::ensure!(names == lab.name(other), "sync standby is {names:?}");
            Ok(())
        })?;
        cut_standbys(&lab, primary, true)?;
        wait_for(HEAL, "asynchronous fallback", || {
            anyhow::ensure!(lab.psql(primary, "show synchronous_standby_names")?.is_empty(), "still synchronous");
            Ok(())
        })?;
        assert!(!insert_blocks(&lab, primary, Duration::from_secs(3))?, "commits go through asynchronously");
        cut_standbys(&lab, primary, false)?;
        lab.start(sync)?;
        wait_for(HEAL, "synchronous again", || {
            anyhow::ensure!(
                !lab.psql(primary, "select application_name from pg_stat_replication where sync_state = 'sync'")?.is_empty(),
                "no sync standby yet"
            );
            Ok(())
        })?;
        Ok(())
    })
}

#[test]
fn sync_mode_partitioned_primary_loses_no_acknowledged_commit() -> anyhow::Result<()> {
    let lab = Arc::new(Lab::up_netns(3)?);
    with_logs(&lab, || {
        let primary = lab.primary()?;
        create_table(&lab, primary)?;
        for round in 0..2 {
            let (old, sync) = enable_sync(&lab, &[])?;
            let writer = Writer::start(lab.clone());
            std::thread::sleep(Duration::from_secs(1));
            let t0 = std::time::Instant::now();
            let new = lab.partition(old).and_then(|()| {
                wait_for(HEAL, "another node accepting writes", || writer.other_writer(old).ok_or_else(|| anyhow::anyhow!("not yet")))
            });
            std::thread::sleep(Duration::from_secs(1));
            let healed = lab.heal();
            std::thread::sleep(Duration::from_secs(2));
            let acks = writer.finish()?;
            let new = new?;
            healed?;
            assert_eq!(new, sync, "round {round}: only the synchronous standby may be promoted");
            assert_one_writer_at_a_time(&acks, old, new, t0);
            assert_none_lost(&lab, new, &acks)?;
            lab.psql(new, &format!("insert into t(v) values ('healed{round}')"))?;
            assert_eq!(lab.wait_healthy(HEAL, &format!("healed{round}"))?, new);
        }
        Ok(())
    })
}

/// Drops node `i`'s Raft peer traffic only (its REST API and PostgreSQL stay reachable);
/// with `cut` false, removes those rules again.
fn cut_raft(lab: &Lab, i: usize, cut: bool) -> anyhow::Result<()> {
    let ns = format!("{}{}", lab.netns.as_deref().ok_or_else(|| anyhow::anyhow!("a netns lab"))?, i + 1);
    for node in 0..lab.nodes {
        let port = (2380 + 100 * node).to_string();
        let chain = if node == i { "INPUT" } else { "OUTPUT" };
        let status = std::process::Command::new("ip")
            .args(["netns", "exec", &ns, "iptables", if cut { "-I" } else { "-D" }, chain, "-p", "tcp", "--dport", &port, "-j", "DROP"])
            .status()?;
        anyhow::ensure!(status.success(), "iptables in {ns} failed");
    }
    Ok(())
}

/// Turns `failsafe_mode` on (with a `retry_timeout` that fits the safety margin, as the
/// timing check requires) once a first write replicated; returns the primary.
fn enable_failsafe(lab: &Lab) -> anyhow::Result<usize> {
    let primary = lab.primary()?;
    create_table(lab, primary)?;
    lab.ctl(&["edit-config", "-s", "failsafe_mode=true", "-s", "retry_timeout=0.4", "--force"])?;
    lab.psql(primary, "insert into t(v) values ('before')")?;
    lab.wait_healthy(HEAL, "before")?;
    std::thread::sleep(Duration::from_secs(2)); // every agent has read the new /config
    Ok(primary)
}

#[test]
fn failsafe_keeps_a_primary_cut_from_the_store_while_every_member_confirms() -> anyhow::Result<()> {
    let lab = Lab::up_netns(3)?;
    with_logs(&lab, || {
        let primary = enable_failsafe(&lab)?;
        cut_raft(&lab, primary, true)?;
        // Well past ttl: the primary still writes (every member confirms over REST) and
        // nobody else was promoted (they promised not to).
        for second in 0..8 {
            std::thread::sleep(Duration::from_secs(1));
            lab.psql(primary, &format!("insert into t(v) values ('failsafe{second}')"))
                .map_err(|e| anyhow::anyhow!("after {second} s without the store, the primary stopped: {e:#}"))?;
            for other in (0..3).filter(|&o| o != primary) {
                anyhow::ensure!(lab.psql(other, "select pg_is_in_recovery()")? == "t", "{} was promoted", lab.name(other));
            }
        }
        assert!(lab.log(primary).contains("failsafe: the store is unreachable"), "the primary said why it kept running");
        // Now cut it off completely: no confirmation, so it demotes and another node takes over.
        lab.partition(primary)?;
        let new = lab.wait_new_primary(primary, HEAL)?;
        anyhow::ensure!(
            lab.psql(primary, "select 1").is_err() || lab.psql(primary, "select pg_is_in_recovery()")? == "t",
            "the old primary still writable"
        );
        lab.heal()?;
        cut_raft(&lab, primary, false)?;
        lab.psql(new, "insert into t(v) values ('after')")?;
        assert_eq!(lab.wait_healthy(HEAL, "after")?, new);
        Ok(())
    })
}

/// Failsafe with the Raft port of every node cut (no store anywhere, REST reachable):
/// the primary keeps writing while both replicas confirm it; then one replica's node is
/// restarted: it knows no leader, so it confirms nobody, and the primary stops at its
/// deadline. At no check do two nodes accept a write; after the heal, one primary.
#[test]
fn failsafe_without_any_store_keeps_one_writer_through_a_member_restart() -> anyhow::Result<()> {
    let lab = Lab::up_netns(3)?;
    with_logs(&lab, || {
        let primary = enable_failsafe(&lab)?;
        for i in 0..lab.nodes {
            cut_raft(&lab, i, true)?;
        }
        let writers = |round: &str| -> Vec<usize> {
            (0..lab.nodes).filter(|&i| lab.psql(i, &format!("insert into t(v) values ('{round}-{i}')")).is_ok()).collect()
        };
        for second in 0..6 {
            std::thread::sleep(Duration::from_secs(1));
            let w = writers(&format!("cut{second}"));
            anyhow::ensure!(w == [primary], "{second} s without any store: nodes {w:?} accepted writes, expected only {primary}");
        }
        assert!(lab.log(primary).contains("failsafe: the store is unreachable"), "the primary said why it kept running");
        let restarted = (primary + 1) % lab.nodes;
        lab.kill(restarted)?;
        lab.start(restarted)?;
        let mut last = vec![primary];
        for second in 0..12 {
            std::thread::sleep(Duration::from_secs(1));
            last = writers(&format!("restarted{second}"));
            anyhow::ensure!(last.len() <= 1, "{second} s after {} restarted: nodes {last:?} all accepted writes", lab.name(restarted));
        }
        anyhow::ensure!(
            last.is_empty(),
            "a member that restarted knows no leader and confirms nobody: the primary must stop, but {last:?} writes"
        );
        for i in 0..lab.nodes {
            cut_raft(&lab, i, false)?;
        }
        let new = wait_for(HEAL, "one primary after the heal", || lab.primary())?;
        lab.psql(new, "insert into t(v) values ('after')")?;
        assert_eq!(lab.wait_healthy(HEAL, "after")?, new);
        Ok(())
    })
}
