//! The faults about who takes over: `double-failover` (the primary killed, then the
//! node that took over killed as soon as it took a write, the first node restarted just
//! before so Raft keeps two of three; in synchronous mode only a standby `/sync` named
//! may take over) and `pg-stall` (the primary's backends stopped while a switchover is
//! requested: it must complete or be refused, never hang).

use std::time::Duration;

use anyhow::Context;
use raftgres_agent::ops::{self, Handover, SwitchoverRequest};

use super::bench::Bench;
use super::expect::Evidence;
use super::freeze::Frozen;
use super::store;
use raftgres_lab::control;

/// Kills `primary`, waits for another node's first write, starts `primary` again and
/// kills that node at once; waits for a third writer, then starts the second node again.
pub async fn double_failover(bench: &Bench<'_>, primary: usize, at: Duration) -> anyhow::Result<(String, Evidence)> {
    let lab = bench.lab;
    let a = &lab.nodes[primary];
    control::kill(a)?;
    let second = bench.other_writer(primary, at).await;
    let second = second.with_context(|| format!("no node took a write within 20 s after {} was killed", a.name))?;
    let b = &lab.nodes[second];
    let standbys = if bench.sync { Some(store::wait_sync_standby(lab).await?) } else { None };
    control::start(lab, a)?;
    let caught_up = on_timeline_of(bench, second).await;
    let killed_at = bench.t0.elapsed();
    control::kill(b)?;
    let third = bench.other_writer(second, killed_at).await;
    control::start(lab, b)?;
    let third = third.map_or_else(|| "no node".to_string(), |i| lab.nodes[i].name.clone());
    let what = format!(
        "{} killed; {} took over and was killed {:.1} s later, {} started again just before; {third} took over",
        a.name,
        b.name,
        (killed_at - at).as_secs_f64(),
        a.name
    );
    Ok((what, Evidence::SecondKill { at: killed_at, node: second, standbys, caught_up }))
}

/// The other nodes on `node`'s timeline: only they may take over from it (one still on
/// the older timeline lacks what it acknowledged). A node counts when its WAL receiver
/// streams that timeline from PostgreSQL's own view (`pg_stat_wal_receiver`), or when its
/// member key says so: not the member key alone, which is the agent's own claim and lags
/// by up to a `loop_wait`. An empty answer when `node`'s timeline cannot be read: then
/// nobody is expected to take over.
async fn on_timeline_of(bench: &Bench<'_>, node: usize) -> Vec<usize> {
    let lab = bench.lab;
    let view = store::view(lab).await.ok().map(|(_, view)| view);
    let published = |i: usize| view.as_ref().and_then(|v| v.members.get(&lab.nodes[i].name)).and_then(|m| m.timeline);
    let Some(theirs) =
        bench.psql.run(node, raftgres_agent::PRIMARY_TIMELINE_QUERY).ok().and_then(|t| t.parse::<u32>().ok()).or_else(|| published(node))
    else {
        return Vec::new();
    };
    let streams = |i: usize| bench.psql.run(i, "select received_tli from pg_stat_wal_receiver").ok().and_then(|t| t.parse::<u32>().ok());
    (0..lab.nodes.len()).filter(|&i| i != node && (streams(i) == Some(theirs) || published(i) == Some(theirs))).collect()
}

/// Stops the primary's backends, requests a switchover, holds, continues them, and
/// waits for the request to end.
pub async fn pg_stall(bench: &Bench<'_>, primary: usize) -> anyhow::Result<(String, Evidence)> {
    let lab = bench.lab;
    let p = &lab.nodes[primary];
    let (dcs, _) = store::view(lab).await?;
    let frozen = Frozen::postgres(p, true)?;
    let stopped = frozen.count();
    let req = SwitchoverRequest { leader: Some(p.name.clone()), candidate: None, scheduled_at: None };
    let requested = ops::switchover(&dcs, &req).await;
    tokio::time::sleep(bench.hold).await;
    drop(frozen);
    let (resolved, how) = match requested {
        Err(e) => (true, format!("switchover refused at once: {e}")),
        Ok(_) => match ops::await_handover(&dcs, Some(&p.name)).await {
            Handover::NewLeader(new, _) => (true, format!("switchover to {new} completed")),
            Handover::Refused => (true, format!("switchover refused; {} stayed the primary", p.name)),
            Handover::TimedOut => {
                (false, format!("neither completed nor refused {} s after the backends resumed", ops::HANDOVER_WAIT.as_secs()))
            }
        },
    };
    let what =
        format!("{stopped} backends of {} stopped for {:.1} s while a switchover was requested: {how}", p.name, bench.hold.as_secs_f64());
    Ok((what, Evidence::Switchover { resolved, how }))
}
