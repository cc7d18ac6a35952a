//! The PostgreSQL agent on three real nodes (`raftctl lab`): bootstrap, replication,
//! failover after a node crash and the old primary's return, a postmaster crash healed
//! in place, a new timeline's primary killed before any replica made a restartpoint on
//! it, a former primary rewound only after the new primary's checkpoint, a frozen agent
//! fenced before anyone else promotes, and the REST health
//! checks HAProxy uses. Timings are not asserted here (see benches/); safety is.

use std::sync::Arc;
use std::time::{Duration, Instant};

use raftgres_tests::lab::{http_status, wait_for, Lab};

use crate::writes::{assert_one_writer_at_a_time, create_table, seed, with_logs, Writer};

const HEAL: Duration = Duration::from_secs(60);

/// The status codes of the HAProxy-style checks on node `i`.
fn checks(lab: &Lab, i: usize) -> anyhow::Result<[u16; 4]> {
    let port = lab.rest_port(i);
    Ok([
        http_status(port, "OPTIONS", "/primary")?,
        http_status(port, "OPTIONS", "/replica")?,
        http_status(port, "GET", "/read-only")?,
        http_status(port, "HEAD", "/health")?,
    ])
}

fn assert_checks(lab: &Lab, primary: usize) -> anyhow::Result<()> {
    wait_for(Duration::from_secs(10), "health checks match the roles", || {
        for i in 0..lab.nodes {
            let codes = checks(lab, i)?;
            let expected = if i == primary { [200, 503, 200, 200] } else { [503, 200, 200, 200] };
            anyhow::ensure!(codes == expected, "{}: {codes:?}, expected {expected:?}", lab.name(i));
        }
        Ok(())
    })
}

#[test]
fn bootstrap_replicates_and_replicas_refuse_writes() -> anyhow::Result<()> {
    let lab = Lab::up(3)?;
    let primary = seed(&lab, "hello", HEAL)?;
    for i in (0..3).filter(|&i| i != primary) {
        let err = lab.psql(i, "insert into t(v) values ('nope')").expect_err("a replica must refuse writes");
        assert!(err.to_string().contains("read-only"), "{err}");
    }
    assert_checks(&lab, primary)?;
    let sysid = lab.psql(primary, "select system_identifier from pg_control_system()")?;
    for i in 0..3 {
        assert_eq!(lab.psql(i, "select system_identifier from pg_control_system()")?, sysid, "one cluster");
    }
    let slots = lab.psql(primary, "select string_agg(slot_name, ',' order by slot_name) from pg_replication_slots where active")?;
    let expected: Vec<String> = (0..3).filter(|&i| i != primary).map(|i| lab.name(i)).collect();
    assert_eq!(slots, expected.join(","), "one active slot per replica, named after it");
    Ok(())
}

#[test]
fn killed_primary_fails_over_and_rejoins_as_replica() -> anyhow::Result<()> {
    let lab = Lab::up(3)?;
    let old = seed(&lab, "before", HEAL)?;
    lab.kill(old)?;
    let new = lab.wait_new_primary(old, HEAL)?;
    lab.psql(new, "insert into t(v) values ('after')")?;
    assert_eq!(lab.psql(new, "select count(*) from t where v = 'before'")?, "1", "the acknowledged row survived");
    lab.start(old)?;
    let primary = lab.wait_healthy(HEAL, "after")?;
    assert_eq!(primary, new, "the old primary came back as a replica");
    assert_checks(&lab, new)?;
    let events = lab.ctl(&["events"])?;
    assert!(
        events.lines().any(|l| l.contains(&lab.name(new)) && l.contains("promoted: I am")),
        "the timeline shows the promotion: {events}"
    );
    let history = std::process::Command::new("curl").args(["-s", &format!("http://127.0.0.1:{}/history", lab.rest_port(new))]).output();
    if let Ok(out) = history {
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains(&lab.name(new)), "/history records the promotion: {text}");
    }
    Ok(())
}

/// A replica that streamed a new timeline stays on it once its upstream is gone. Its
/// control file names the old timeline until a restartpoint (every `checkpoint_timeout`),
/// and with no WAL receiver left `pg_stat_wal_receiver` says nothing; taking the control
/// file's word, every replica of a primary that dies soon after its promotion thought
/// itself behind the cluster's timeline and none would ever take over (a second node kill
/// one second after a failover in `benches/peers.sh` left the cluster without a primary).
#[test]
fn a_new_timelines_primary_killed_at_once_is_replaced() -> anyhow::Result<()> {
    let lab = Lab::up(3)?;
    let first = seed(&lab, "before", HEAL)?;
    lab.kill(first)?;
    let second = lab.wait_new_primary(first, HEAL)?;
    lab.psql(second, "insert into t(v) values ('after')")?;
    lab.start(first)?;
    lab.wait_healthy(HEAL, "after")?;
    let timeline = |i: usize, sql: &str| -> anyhow::Result<u32> { Ok(lab.psql(i, sql)?.parse()?) };
    let newest = timeline(second, raftgres_agent::PRIMARY_TIMELINE_QUERY)?;
    for i in (0..3).filter(|&i| i != second) {
        let received = timeline(i, "select received_tli from pg_stat_wal_receiver")?;
        let control = timeline(i, "select timeline_id from pg_control_checkpoint()")?;
        anyhow::ensure!(received == newest, "{} streams timeline {received}, not {newest}", lab.name(i));
        anyhow::ensure!(
            control < newest,
            "{}'s control file names timeline {control} already: the case needs no restartpoint yet",
            lab.name(i)
        );
    }
    lab.kill(second)?;
    // What the survivors say of themselves until one of them leads a newer timeline.
    let survivors: Vec<usize> = (0..3).filter(|&i| i != second).collect();
    let deadline = Instant::now() + Duration::from_secs(3);
    while Instant::now() < deadline {
        for &i in &survivors {
            let Ok((200 | 503, body)) = lab.rest(i, "GET", "/patroni", "") else { continue };
            let said: serde_json::Value = serde_json::from_str(&body)?;
            let Some(mine) = said["timeline"].as_u64() else { continue };
            anyhow::ensure!(mine >= u64::from(newest), "{} says it is on timeline {mine}, behind the {newest} it streamed", lab.name(i));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let third = with_logs(&lab, || lab.wait_new_primary(second, HEAL))?;
    assert_eq!(lab.psql(third, "select count(*) from t where v = 'after'")?, "1", "the new timeline's row survived");
    Ok(())
}

/// A former primary is rewound only once the new primary made a checkpoint on its new
/// timeline. pg_rewind reads the source's timeline from its control file, so before that
/// checkpoint it finds both "on the same timeline" and rewinds nothing, while its own crash
/// recovery of the killed target writes a shutdown checkpoint past the fork: the former
/// primary then exits at every start (`requested timeline 2 is not a child of this
/// server's history`) for good, as a `raftctl chaos` pg-hang round showed. The replicas'
/// checkpointers are stopped here so the new primary's checkpoint waits.
#[test]
fn a_former_primary_is_rewound_only_after_the_new_primarys_checkpoint() -> anyhow::Result<()> {
    let lab = Lab::up(3)?;
    let first = seed(&lab, "before", HEAL)?;
    let (mut checkpointers, mut receivers) = (Vec::new(), Vec::new());
    for i in (0..3).filter(|&i| i != first) {
        checkpointers.push(lab.psql(i, "select pid from pg_stat_activity where backend_type = 'checkpointer'")?);
        receivers.push(lab.psql(i, "select pid from pg_stat_wal_receiver")?);
    }
    let signal = |sig: &str, pids: &[String]| -> anyhow::Result<()> {
        let status = std::process::Command::new("kill").arg(sig).args(pids).status()?;
        anyhow::ensure!(status.success(), "kill {sig} {pids:?} failed");
        Ok(())
    };
    // WAL only the former primary has: it diverges, so its rewind has work to do.
    signal("-STOP", &receivers)?;
    lab.psql(first, "insert into t(v) values ('unreplicated')")?;
    signal("-STOP", &checkpointers)?;
    lab.kill(first)?;
    signal("-CONT", &receivers)?;
    let second = lab.wait_new_primary(first, HEAL)?;
    lab.start(first)?;
    // The former primary's agent meets a primary that has not checkpointed yet.
    std::thread::sleep(Duration::from_secs(5));
    signal("-CONT", &checkpointers)?;
    with_logs(&lab, || {
        wait_for(HEAL, "a write after the checkpointers went on", || lab.psql(lab.primary()?, "insert into t(v) values ('after')"))?;
        let primary = lab.wait_healthy(HEAL, "after")?;
        anyhow::ensure!(primary != first, "the former primary {} leads again", lab.name(first));
        Ok(())
    })?;
    println!("{} took over from {}", lab.name(second), lab.name(first));
    Ok(())
}

#[test]
fn killed_postmaster_is_restarted_in_place() -> anyhow::Result<()> {
    let lab = Lab::up(3)?;
    let primary = lab.primary()?;
    create_table(&lab, primary)?;
    let pid = lab.postmaster_pid(primary)?;
    std::process::Command::new("kill").args(["-9", &pid.to_string()]).status()?;
    wait_for(HEAL, "the same node accepting writes again", || {
        lab.psql(primary, "insert into t(v) values (gen_random_uuid()::text)")?;
        Ok(())
    })?;
    assert_ne!(lab.postmaster_pid(primary)?, pid, "a new postmaster");
    lab.psql(primary, "insert into t(v) values ('healed')")?;
    assert_eq!(lab.wait_healthy(HEAL, "healed")?, primary, "no failover happened");
    Ok(())
}

#[test]
fn frozen_primary_agent_is_fenced_before_another_node_promotes() -> anyhow::Result<()> {
    let lab = Arc::new(Lab::up(3)?);
    with_logs(&lab, || {
        let old = seed(&lab, "x", HEAL)?;
        let writer = Writer::start(lab.clone());
        std::thread::sleep(Duration::from_secs(1));
        let t0 = Instant::now();
        let new = lab.pause(old).and_then(|()| {
            wait_for(HEAL, "another node accepting writes", || writer.other_writer(old).ok_or_else(|| anyhow::anyhow!("not yet")))
        });
        std::thread::sleep(Duration::from_secs(2));
        let resumed = lab.resume(old);
        std::thread::sleep(Duration::from_secs(3));
        let acks = writer.finish()?;
        let new = new?;
        resumed?;
        assert_one_writer_at_a_time(&acks, old, new, t0);
        lab.psql(new, "insert into t(v) values ('resumed')")?;
        assert_eq!(lab.wait_healthy(HEAL, "resumed")?, new, "the frozen primary came back as a replica");
        Ok(())
    })
}

#[test]
fn data_dir_of_another_cluster_is_refused() -> anyhow::Result<()> {
    let lab = Lab::up(3)?;
    let primary = lab.primary()?;
    let victim = (primary + 1) % 3;
    lab.kill(victim)?;
    let pgdata = lab.dir.path().join(lab.name(victim)).join("pgdata");
    std::fs::remove_dir_all(&pgdata)?;
    // A fresh cluster of its own, owned by the nodes' user (the lab runs them as `raftgres` when root).
    let owner = std::fs::metadata(lab.dir.path().join(lab.name(victim)))?;
    let status = std::process::Command::new("setpriv")
        .args([
            &format!("--reuid={}", std::os::unix::fs::MetadataExt::uid(&owner)),
            &format!("--regid={}", std::os::unix::fs::MetadataExt::gid(&owner)),
            "--clear-groups",
        ])
        .arg("/usr/lib/postgresql/15/bin/initdb")
        .args(["-D", &pgdata.to_string_lossy(), "-U", "postgres", "--no-sync"])
        .stdout(std::process::Stdio::null())
        .status()?;
    anyhow::ensure!(status.success(), "initdb of the foreign cluster failed");
    lab.start(victim)?;
    wait_for(Duration::from_secs(30), "the node refusing to join", || {
        anyhow::ensure!(lab.log(victim).contains("refusing to join: data directory"), "not yet");
        Ok(())
    })?;
    assert!(lab.psql(victim, "select 1").is_err(), "the foreign cluster must not be started");
    assert_eq!(lab.primary()?, primary, "the cluster is unaffected");
    Ok(())
}

/// The primary's agent keeps the Raft leader off its node (README, "The Raft leader is
/// kept off the primary's node"): leadership moved onto the primary's node with
/// `etcdctl move-leader` moves off again, to another voter, and the primary stays; when
/// that voter's node then dies, the primary keeps writing through the Raft election.
#[test]
fn the_raft_leader_is_moved_off_the_primarys_node() -> anyhow::Result<()> {
    let lab = Lab::up(3)?;
    let primary = lab.primary()?;
    let members = || -> anyhow::Result<Vec<serde_json::Value>> { Ok(serde_json::from_str(&lab.ctl(&["members", "-o", "json"])?)?) };
    let leader_name = || -> anyhow::Result<String> {
        members()?
            .iter()
            .find(|m| m["role"] == "Leader")
            .and_then(|m| m["name"].as_str().map(str::to_string))
            .ok_or_else(|| anyhow::anyhow!("no Raft leader yet"))
    };
    let primary_id = members()?
        .iter()
        .find(|m| m["name"] == lab.name(primary).as_str())
        .and_then(|m| m["id"].as_str().map(str::to_string))
        .ok_or_else(|| anyhow::anyhow!("the primary's node is no member"))?;
    let all = lab.endpoints().join(",");
    if leader_name()? != lab.name(primary) {
        crate::etcdctl::ok(&all, &["move-leader", &primary_id]);
    }
    wait_for(Duration::from_secs(15), "the Raft leader on the primary's node", || {
        anyhow::ensure!(leader_name()? == lab.name(primary), "leader {}", leader_name()?);
        Ok(())
    })?;
    // The agent looks every 5 s, once primary for 3 s, and at most every 30 s.
    let moved_to = with_logs(&lab, || {
        wait_for(Duration::from_secs(60), "the Raft leader moved off the primary's node", || {
            let leader = leader_name()?;
            anyhow::ensure!(leader != lab.name(primary), "still on {leader}");
            Ok(leader)
        })
    })?;
    assert_ne!(moved_to, lab.name(primary));
    assert_eq!(lab.primary()?, primary, "moving the Raft leader moved no primary");
    assert!(lab.log(primary).contains("moved Raft leadership off the primary's node"), "{}", lab.log(primary));

    // Its node dies: the survivors elect a new Raft leader, and the primary's keep-alive
    // reaches it inside the write budget (ttl - safety_margin), so PostgreSQL is neither
    // fenced nor demoted (the store's election timeout against the agent's timing).
    let dead = (0..3).find(|&i| lab.name(i) == moved_to).ok_or_else(|| anyhow::anyhow!("{moved_to} is no lab node"))?;
    let postmaster = lab.postmaster_pid(primary)?;
    create_table(&lab, primary)?;
    lab.kill(dead)?;
    let until = Instant::now() + Duration::from_secs(6);
    let mut writes = 0;
    while Instant::now() < until {
        with_logs(&lab, || lab.psql(primary, "insert into t(v) values (gen_random_uuid()::text)"))?;
        writes += 1;
        std::thread::sleep(Duration::from_millis(50));
    }
    let new_leader = leader_name()?;
    assert!(new_leader != moved_to, "a new Raft leader, not {moved_to}");
    assert_eq!(lab.postmaster_pid(primary)?, postmaster, "the primary's PostgreSQL was never stopped");
    assert_eq!(lab.primary()?, primary, "no failover");
    let log = lab.log(primary);
    assert!(!log.contains("fenc") && !log.contains("demot"), "the primary was fenced or demoted:\n{log}");
    assert!(writes > 10, "{writes} writes");
    Ok(())
}
