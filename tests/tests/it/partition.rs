//! Real network faults on three nodes, each in its own network namespace
//! ([`Lab::up_netns`], `deploy/netns/netns.sh`): a partitioned primary is fenced before
//! another node accepts writes and rejoins as a replica once healed; moderate delay and
//! loss (tc netem) cause no failover. These need root (CI runs as root): without it
//! they fail, saying so, rather than skip.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use raftgres_tests::lab::{wait_for, Lab};

const HEAL: Duration = Duration::from_secs(90);
/// The writer stops by itself after this, whatever happens to the test.
const WRITER_LIMIT: Duration = Duration::from_secs(120);

fn create_table(lab: &Lab, primary: usize) -> anyhow::Result<()> {
    lab.psql(
        primary,
        "create table if not exists t (v text primary key, at timestamptz default now())",
    )?;
    Ok(())
}

/// Runs `body`; on failure prints every node's log tail (a returned error does not
/// unwind, so `Lab`'s drop would not print them).
fn with_logs<T>(lab: &Lab, body: impl FnOnce() -> anyhow::Result<T>) -> anyhow::Result<T> {
    let result = body();
    if result.is_err() {
        eprintln!("{}", lab.logs());
    }
    result
}

/// One acknowledged write: which node took it, when it was sent and when it was acknowledged.
#[derive(Debug, Clone)]
struct Ack {
    node: usize,
    row: u64,
    sent: Instant,
    acked: Instant,
}

/// Inserts a unique row into every node in turn until `stop` (or [`WRITER_LIMIT`]),
/// recording each acknowledged insert.
fn writer(lab: Arc<Lab>, stop: Arc<AtomicBool>, acks: Arc<Mutex<Vec<Ack>>>) {
    let mut row = 0u64;
    let deadline = Instant::now() + WRITER_LIMIT;
    while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
        for node in 0..lab.nodes {
            row += 1;
            let sent = Instant::now();
            if lab
                .psql(node, &format!("insert into t(v) values ('w{row}')"))
                .is_ok()
            {
                let ack = Ack {
                    node,
                    row,
                    sent,
                    acked: Instant::now(),
                };
                acks.lock().unwrap_or_else(|e| e.into_inner()).push(ack);
            }
        }
    }
}

/// Acks per node and the edges of each node's write window, relative to `t0`, for
/// failure messages.
fn timeline(acks: &[Ack], t0: Instant) -> String {
    let nodes: BTreeSet<usize> = acks.iter().map(|a| a.node).collect();
    let ms = |t: Instant| t.saturating_duration_since(t0).as_millis();
    nodes
        .iter()
        .map(|&n| {
            let mine: Vec<&Ack> = acks.iter().filter(|a| a.node == n).collect();
            let first = mine.iter().map(|a| a.sent).min().map_or(0, ms);
            let last = mine.iter().map(|a| a.acked).max().map_or(0, ms);
            format!(
                "node{}: {} acks, first sent at {first} ms, last acked at {last} ms",
                n + 1,
                mine.len()
            )
        })
        .collect::<Vec<_>>()
        .join("; ")
}

#[test]
fn partitioned_primary_is_fenced_and_rejoins() -> anyhow::Result<()> {
    let lab = Arc::new(Lab::up_netns(3)?);
    with_logs(&lab, || {
        let old = lab.primary()?;
        create_table(&lab, old)?;
        lab.psql(old, "insert into t(v) values ('start')")?;
        lab.wait_healthy(HEAL, "start")?;

        let stop = Arc::new(AtomicBool::new(false));
        let acks = Arc::new(Mutex::new(Vec::<Ack>::new()));
        let w = {
            let (lab, stop, acks) = (lab.clone(), stop.clone(), acks.clone());
            std::thread::spawn(move || writer(lab, stop, acks))
        };
        std::thread::sleep(Duration::from_secs(1));
        let t0 = Instant::now();
        let faults = lab.partition(old).and_then(|()| {
            let new = wait_for(HEAL, "another node accepting writes", || {
                let acks = acks.lock().unwrap_or_else(|e| e.into_inner());
                acks.iter()
                    .find(|a| a.node != old)
                    .map(|a| a.node)
                    .ok_or_else(|| anyhow::anyhow!("only node{} took writes", old + 1))
            });
            std::thread::sleep(Duration::from_secs(3));
            new
        });
        // Heal whatever happened, then keep writing a little: the old primary must not
        // take writes again once it sees the others.
        let healed = lab.heal();
        std::thread::sleep(Duration::from_secs(3));
        stop.store(true, Ordering::Relaxed);
        if w.join().is_err() {
            anyhow::bail!("the writer thread panicked");
        }
        let new = faults?;
        healed?;
        let acks = acks.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let story = timeline(&acks, t0);

        let writers: BTreeSet<usize> = acks.iter().map(|a| a.node).collect();
        assert_eq!(
            writers,
            BTreeSet::from([old, new]),
            "only the old and the new primary ever acknowledged writes ({story})"
        );
        let first_new = acks
            .iter()
            .filter(|a| a.node == new)
            .min_by_key(|a| a.sent)
            .map(|a| (a.sent, a.row));
        if let Some((first_new_sent, first_row)) = first_new {
            let late: Vec<u64> = acks
                .iter()
                .filter(|a| a.node == old && a.acked > first_new_sent)
                .map(|a| a.row)
                .collect();
            assert!(
                late.is_empty(),
                "node{} (partitioned) acknowledged rows {late:?} after w{first_row}, the first write node{} acknowledged, \
                 was sent: two writable primaries ({story})",
                old + 1,
                new + 1
            );
        }

        lab.psql(new, "insert into t(v) values ('healed')")?;
        assert_eq!(
            lab.wait_healthy(HEAL, "healed")?,
            new,
            "the new primary kept its role after the heal ({story})"
        );
        let upstream = lab.psql(old, "select sender_host from pg_stat_wal_receiver")?;
        assert_eq!(
            upstream,
            lab.pg_host(new),
            "node{} streams from the new primary node{}",
            old + 1,
            new + 1
        );
        Ok(())
    })
}

/// Node `i` answers `select pg_is_in_recovery()` with `t` (a replica) or `f`.
fn in_recovery(lab: &Lab, i: usize) -> anyhow::Result<bool> {
    Ok(lab.psql(i, "select pg_is_in_recovery()")? == "t")
}

/// Up to three tries (a lost SYN or a slow handshake is the network's doing, not a
/// failover): the first success, or the last error.
fn retry<T>(mut f: impl FnMut() -> anyhow::Result<T>) -> anyhow::Result<T> {
    let mut last = None;
    for _ in 0..3 {
        match f() {
            Ok(v) => return Ok(v),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| anyhow::anyhow!("no attempt made")))
}

#[test]
fn moderate_delay_and_loss_cause_no_failover() -> anyhow::Result<()> {
    const SPEC: &str = "delay 100ms 20ms loss 2%";
    const FOR: Duration = Duration::from_secs(20);
    let lab = Lab::up_netns(3)?;
    with_logs(&lab, || {
        let primary = lab.primary()?;
        create_table(&lab, primary)?;
        lab.psql(primary, "insert into t(v) values ('before')")?;
        lab.wait_healthy(HEAL, "before")?;

        let mut applied = Vec::new();
        let degraded = (0..lab.nodes).try_for_each(|i| {
            lab.netem(i, SPEC)?;
            applied.push(i);
            Ok::<(), anyhow::Error>(())
        });
        let checks = degraded.and_then(|()| {
            let start = Instant::now();
            let mut tick = 0u64;
            while start.elapsed() < FOR {
                let at = Instant::now();
                tick += 1;
                retry(|| lab.psql(primary, &format!("insert into t(v) values ('netem{tick}')")))
                    .map_err(|e| {
                        anyhow::anyhow!(
                            "after {:?} of netem, node{} no longer accepts writes: {e:#}",
                            start.elapsed(),
                            primary + 1
                        )
                    })?;
                for other in (0..lab.nodes).filter(|&i| i != primary) {
                    let replica = retry(|| in_recovery(&lab, other))?;
                    anyhow::ensure!(
                        replica,
                        "after {:?} of netem, node{} is a primary too",
                        start.elapsed(),
                        other + 1
                    );
                }
                std::thread::sleep(Duration::from_secs(1).saturating_sub(at.elapsed()));
            }
            Ok(tick)
        });
        let cleared: anyhow::Result<()> = applied.iter().try_for_each(|&i| lab.clear(i));
        let ticks = checks?;
        cleared?;
        assert!(ticks >= 5, "only {ticks} checks ran in {FOR:?}");
        lab.psql(primary, "insert into t(v) values ('after')")?;
        assert_eq!(
            lab.wait_healthy(HEAL, "after")?,
            primary,
            "the same node stayed primary through {SPEC}"
        );
        Ok(())
    })
}
