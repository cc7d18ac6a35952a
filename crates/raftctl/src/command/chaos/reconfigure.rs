//! The faults that go through `/config` (patched over the REST API, as a user would):
//! `failsafe` (failsafe mode on, then only the Raft port of every node cut while the
//! REST APIs still answer, a replica restarted meanwhile; failsafe mode put back as it
//! was afterwards) and `ttl-change` (the ttl doubled under load, then set back, which
//! must not disturb the healthy primary).

use std::ops::Range;
use std::time::Duration;

use anyhow::Context;
use raftgres_agent::config::DynamicConfig;
use serde_json::{json, Value};

use super::bench::{postmaster_pid, Bench};
use super::store;
use raftgres_lab::{control, netns};

/// `{key: value}`, or `{key: null}` (removed) when it was unset before.
fn restore(key: &str, before: Option<Value>) -> Value {
    json!({ (key): before.unwrap_or(Value::Null) })
}

/// The retry_timeout failsafe mode needs with these timings: None when the one in force
/// keeps the failsafe rule, else the longest that does; an error naming the safety margin
/// when none can.
pub fn failsafe_retry_timeout(config: &DynamicConfig) -> anyhow::Result<Option<f64>> {
    let timing = config.timing();
    if timing.check_failsafe().is_ok() {
        return Ok(None);
    }
    let retry = timing.failsafe_retry_timeout().with_context(|| {
        format!(
            "safety_margin {} s leaves no room for a failsafe confirmation round; raise it (-s safety_margin=...)",
            config.safety_margin
        )
    })?;
    Ok(Some(retry))
}

/// Failsafe mode on; the Raft port of every node cut for the hold time, a replica
/// restarted half-way; healed; failsafe mode put back. Returns when the cut started
/// and when its heal began (since the run started), and what was done.
pub async fn failsafe(bench: &Bench<'_>, replica: usize) -> anyhow::Result<(Range<Duration>, String)> {
    let lab = bench.lab;
    let before = store::config_value(lab, "failsafe_mode").await?;
    let retry_before = store::config_value(lab, "retry_timeout").await?;
    // A confirmation round must fit inside the safety margin (the agent's timing rule):
    // with the default timings that means a shorter retry_timeout; with a run that has
    // failsafe mode on already, or Patroni-like timings that fit, nothing changes.
    let mut patch = json!({ "failsafe_mode": true });
    if let Some(retry) = failsafe_retry_timeout(&store::current_config(lab).await?)? {
        patch["retry_timeout"] = json!(retry);
    }
    store::patch_config(lab, &patch).await?;
    // Every agent reads /config each cycle: give them a ttl to see it.
    tokio::time::sleep(bench.ttl).await;
    let at = bench.t0.elapsed();
    for n in &lab.nodes {
        netns::isolate(lab, &n.name, None, false, Some(n.ports.peer))?;
    }
    tokio::time::sleep(bench.hold / 2).await;
    let r = &lab.nodes[replica];
    control::kill(r)?;
    control::start(lab, r)?;
    tokio::time::sleep(bench.hold / 2).await;
    let healed = bench.t0.elapsed();
    netns::heal_nodes(lab, None)?;
    let mut put_back = restore("failsafe_mode", before);
    put_back["retry_timeout"] = retry_before.unwrap_or(Value::Null);
    store::patch_config(lab, &put_back).await?;
    Ok((
        at..healed,
        format!("failsafe_mode on, the Raft port of every node cut for {:.1} s, {} restarted meanwhile", bench.hold.as_secs_f64(), r.name),
    ))
}

/// The ttl doubled through `/config`, held half the hold time, set back, held the other
/// half. Returns what was done and whether the primary's postmaster is the one it was.
pub async fn ttl_change(bench: &Bench<'_>, primary: usize) -> anyhow::Result<(String, bool)> {
    let lab = bench.lab;
    let postmaster = postmaster_pid(lab, primary)?;
    let before = store::config_value(lab, "ttl").await?;
    let raised = bench.ttl.as_secs().max(1) * 2;
    store::patch_config(lab, &json!({ "ttl": raised })).await?;
    tokio::time::sleep(bench.hold / 2).await;
    store::patch_config(lab, &restore("ttl", before)).await?;
    tokio::time::sleep(bench.hold / 2).await;
    let kept = postmaster_pid(lab, primary).is_ok_and(|pid| pid == postmaster);
    Ok((
        format!(
            "ttl {} → {raised} → {} s through /config, {:.1} s each",
            bench.ttl.as_secs(),
            bench.ttl.as_secs(),
            bench.hold.as_secs_f64() / 2.0
        ),
        kept,
    ))
}
