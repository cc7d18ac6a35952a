//! Operator requests, validated and written to the store: switchover and failover
//! (`/failover`), pause and resume and configuration changes (`/config`, with
//! compare-and-swap). The REST API and `raftctl` both call these; the HA loops carry
//! them out. Every refusal says why, in words an operator can act on.

use std::time::{Duration, Instant};

use serde_json::Value;

use crate::cluster::{ClusterView, FailoverRequest, Member, Role};
use crate::config::DynamicConfig;
use crate::dcs::{Dcs, Transport};

/// Why a request was refused (or could not be written).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum OpsError {
    /// The request contradicts the cluster's state (unknown member, lagging candidate, ...).
    #[error("{0}")]
    Refused(String),
    /// Someone else changed the key meanwhile; read again and retry.
    #[error("{0}")]
    Conflict(String),
    /// The store could not be reached.
    #[error("{0}")]
    Store(String),
}

fn store(e: crate::dcs::DcsError) -> OpsError {
    OpsError::Store(format!("the store did not answer: {e}"))
}

/// What an operator asks for.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SwitchoverRequest {
    /// The current primary, if the caller names it (checked).
    pub leader: Option<String>,
    /// The member to promote; None = the healthiest replica.
    pub candidate: Option<String>,
    /// When, for a scheduled switchover: RFC 3339, with an offset or in the node's local
    /// time (see `schedule`); stored in UTC.
    pub scheduled_at: Option<String>,
}

/// A planned switchover: needs a primary; the candidate (if named) must be a running
/// replica, not tagged nofailover, within maximum_lag_on_failover.
pub fn check_switchover(view: &ClusterView, req: &SwitchoverRequest, max_lag: u64) -> Result<(), OpsError> {
    not_a_standby_cluster(view, "a switchover")?;
    let leader = view.leader_name().ok_or_else(|| OpsError::Refused("the cluster has no primary: use failover".into()))?;
    if view.paused() && req.scheduled_at.is_some() {
        return Err(OpsError::Refused("cannot schedule a switchover while the cluster is paused".into()));
    }
    if let Some(named) = &req.leader {
        if named != leader {
            return Err(OpsError::Refused(format!("{named} is not the primary ({leader} is)")));
        }
    }
    if let Some(at) = &req.scheduled_at {
        crate::schedule::in_utc(at).map_err(|e| OpsError::Refused(format!("cannot parse the scheduled time: {e}")))?;
    }
    if let Some(failover) = &view.failover {
        if failover.scheduled_at.is_some() {
            return Err(OpsError::Refused("a switchover is already scheduled: cancel it first".into()));
        }
    }
    match &req.candidate {
        Some(c) => check_candidate(view, c, leader, max_lag),
        None => {
            let any = view.members.keys().any(|m| m != leader && check_candidate(view, m, leader, max_lag).is_ok());
            if any {
                Ok(())
            } else {
                Err(OpsError::Refused(
                    "no replica is a suitable candidate (running, not nofailover, not standing aside, within maximum_lag_on_failover)"
                        .into(),
                ))
            }
        }
    }
}

fn check_candidate(view: &ClusterView, candidate: &str, leader: &str, max_lag: u64) -> Result<(), OpsError> {
    if candidate == leader {
        return Err(OpsError::Refused(format!("{candidate} is already the primary")));
    }
    let m = view.members.get(candidate).ok_or_else(|| {
        let names: Vec<&str> = view.members.keys().map(String::as_str).collect();
        OpsError::Refused(format!("no member named {candidate} (members: {})", names.join(", ")))
    })?;
    refuse_unwilling(candidate, m)?;
    if m.role != Role::Replica || m.state != "running" {
        return Err(OpsError::Refused(format!("{candidate} is not a running replica (role {}, state {})", m.role.as_str(), m.state)));
    }
    let primary_pos = view.leader_member().and_then(|l| l.xlog_location).or(view.status.as_ref().map(|s| s.optime));
    if let (Some(p), Some(c)) = (primary_pos, m.xlog_location) {
        let lag = p.saturating_sub(c);
        if lag > max_lag {
            return Err(OpsError::Refused(format!("{candidate} lags {lag} bytes behind the primary (maximum_lag_on_failover {max_lag})")));
        }
    }
    Ok(())
}

/// A candidate that would refuse the key: tagged nofailover, or it gave up being
/// primary on its own a moment ago and stays out of leader races for a while
/// (`ha::decide::standing_aside`). A request naming it would stop the primary for nothing.
fn refuse_unwilling(candidate: &str, m: &Member) -> Result<(), OpsError> {
    if m.tags.nofailover {
        return Err(OpsError::Refused(format!("{candidate} is tagged nofailover")));
    }
    match &m.stands_aside {
        Some(why) => Err(OpsError::Refused(format!(
            "{candidate} may not take over for now: {why}, and it stays out of leader races for 10 × ttl after that; pick another member or try again later"
        ))),
        None => Ok(()),
    }
}

/// Writes `/failover` for a switchover (validated against a fresh read).
pub async fn switchover<C: Transport>(dcs: &Dcs<C>, req: &SwitchoverRequest) -> Result<String, OpsError> {
    let view = dcs.read_cluster().await.map_err(store)?;
    let max_lag = dynamic(&view).maximum_lag_on_failover;
    check_switchover(&view, req, max_lag)?;
    if let Some(c) = &req.candidate {
        check_sync_candidate(&view, c)?;
    }
    let leader = view.leader_name().map(str::to_string);
    // Stored in UTC: every agent reads the same instant whatever its time zone.
    let scheduled_at =
        req.scheduled_at.as_deref().map(crate::schedule::in_utc).transpose().map_err(|e| OpsError::Refused(e.to_string()))?;
    let value = FailoverRequest { leader: leader.clone(), member: req.candidate.clone(), scheduled_at: scheduled_at.clone() };
    write_failover(dcs, &value).await?;
    Ok(match &scheduled_at {
        Some(at) => format!("switchover from {} scheduled at {at}", leader.unwrap_or_default()),
        None => format!(
            "switchover from {} to {} requested",
            leader.unwrap_or_default(),
            req.candidate.as_deref().unwrap_or("the healthiest replica")
        ),
    })
}

/// Writes `/failover` for a manual failover to `candidate`, which needs no running
/// primary. Refused when the candidate is unknown, not running, or tagged nofailover.
pub async fn failover<C: Transport>(dcs: &Dcs<C>, candidate: &str) -> Result<String, OpsError> {
    let view = dcs.read_cluster().await.map_err(store)?;
    not_a_standby_cluster(&view, "a manual failover")?;
    let m = view.members.get(candidate).ok_or_else(|| OpsError::Refused(format!("no member named {candidate}")))?;
    refuse_unwilling(candidate, m)?;
    if m.state != "running" {
        return Err(OpsError::Refused(format!("{candidate} is not running ({})", m.state)));
    }
    if view.leader_name() == Some(candidate) {
        return Err(OpsError::Refused(format!("{candidate} is already the primary")));
    }
    check_sync_candidate(&view, candidate)?;
    let value = FailoverRequest { leader: None, member: Some(candidate.to_string()), scheduled_at: None };
    write_failover(dcs, &value).await?;
    Ok(format!("failover to {candidate} requested"))
}

/// A standby cluster's leader follows the remote primary and hands over nothing: the
/// agents would leave `what` pending for good (see `ha::decide`).
fn not_a_standby_cluster(view: &ClusterView, what: &str) -> Result<(), OpsError> {
    match dynamic(view).standby_cluster {
        None => Ok(()),
        Some(_) => Err(OpsError::Refused(format!(
            "this is a standby cluster: {what} is not carried out here (stop the standby leader's node and another member takes over, or promote the cluster first with `raftctl promote-cluster`)"
        ))),
    }
}

/// In synchronous mode only a standby `/sync` lists holds every acknowledged commit.
pub fn check_sync_candidate(view: &ClusterView, candidate: &str) -> Result<(), OpsError> {
    if !dynamic(view).synchronous_mode {
        return Ok(());
    }
    let listed = view.sync.as_ref().map(|(s, _)| s.members()).unwrap_or_default();
    if listed.iter().any(|m| m == candidate) {
        return Ok(());
    }
    Err(OpsError::Refused(format!(
        "synchronous_mode is on and {candidate} is not a synchronous standby (synchronous: {}); it could miss acknowledged commits",
        if listed.is_empty() { "none".to_string() } else { listed.join(", ") }
    )))
}

async fn write_failover<C: Transport>(dcs: &Dcs<C>, value: &FailoverRequest) -> Result<(), OpsError> {
    let json = serde_json::to_string(value).map_err(|e| OpsError::Refused(e.to_string()))?;
    dcs.put(&dcs.keys.failover(), &json, 0).await.map_err(store)
}

/// Deletes a scheduled switchover.
pub async fn cancel_switchover<C: Transport>(dcs: &Dcs<C>) -> Result<String, OpsError> {
    let view = dcs.read_cluster().await.map_err(store)?;
    match view.failover {
        Some(f) if f.scheduled_at.is_some() => {
            dcs.delete(&dcs.keys.failover()).await.map_err(store)?;
            Ok("scheduled switchover cancelled".into())
        }
        _ => Err(OpsError::Refused("no switchover is scheduled".into())),
    }
}

/// The dynamic configuration in effect (`/config`, or the defaults).
pub fn dynamic(view: &ClusterView) -> DynamicConfig {
    view.config.as_ref().and_then(|(v, _)| DynamicConfig::from_json(v).ok()).unwrap_or_default()
}

/// Merges `patch` into `/config` (JSON merge patch: null removes a key), validates the
/// result (the timing inequality included) and writes it if nobody changed it meanwhile.
/// Only the keys the patch sets must be known: a key an older `/config` holds does not
/// block `pause` or an unrelated change, and a null removes any key.
pub async fn patch_config<C: Transport>(dcs: &Dcs<C>, patch: &Value) -> Result<Value, OpsError> {
    crate::config_keys::check_dynamic_patch(patch).map_err(refused_config)?;
    let view = dcs.read_cluster().await.map_err(store)?;
    let (mut config, revision) = view.config.clone().unwrap_or((Value::Object(Default::default()), 0));
    merge(&mut config, patch);
    check_against_members(&view, &config)?;
    write_config(dcs, &config, revision).await?;
    Ok(config)
}

/// Replaces `/config` with `config` (validated, every key known; compare-and-swap).
pub async fn replace_config<C: Transport>(dcs: &Dcs<C>, config: &Value) -> Result<Value, OpsError> {
    crate::config_keys::check_dynamic(config).map_err(refused_config)?;
    let view = dcs.read_cluster().await.map_err(store)?;
    let revision = view.config.as_ref().map_or(0, |(_, r)| *r);
    check_against_members(&view, config)?;
    write_config(dcs, config, revision).await?;
    Ok(config.clone())
}

/// A logical permanent slot may not take the slot name of a member of the cluster.
fn check_against_members(view: &ClusterView, config: &Value) -> Result<(), OpsError> {
    let slots = crate::slots::PermanentSlots::read(config.get("slots")).map_err(refused_config)?;
    slots.check_members(view.members.keys()).map_err(refused_config)
}

fn refused_config(e: crate::config::Invalid) -> OpsError {
    OpsError::Refused(format!("invalid configuration: {e}"))
}

async fn write_config<C: Transport>(dcs: &Dcs<C>, config: &Value, revision: i64) -> Result<(), OpsError> {
    if !config.is_object() {
        return Err(OpsError::Refused("the configuration must be a JSON object".into()));
    }
    DynamicConfig::from_json(config).map_err(refused_config)?;
    let text = serde_json::to_string(config).map_err(|e| OpsError::Refused(e.to_string()))?;
    let written = if revision == 0 {
        dcs.create(&dcs.keys.config(), &text, 0).await
    } else {
        dcs.put_if_unchanged(&dcs.keys.config(), &text, revision).await
    };
    match written.map_err(store)? {
        true => Ok(()),
        false => Err(OpsError::Conflict("the configuration changed meanwhile; read it again and retry".into())),
    }
}

/// `raftctl pause` / `resume`.
pub async fn set_pause<C: Transport>(dcs: &Dcs<C>, pause: bool) -> Result<String, OpsError> {
    let view = dcs.read_cluster().await.map_err(store)?;
    if view.paused() == pause {
        return Err(OpsError::Refused(format!("the cluster is already {}", if pause { "paused" } else { "resumed" })));
    }
    patch_config(dcs, &serde_json::json!({ "pause": if pause { Value::Bool(true) } else { Value::Null } })).await?;
    Ok(if pause { "paused: automatic failover is off, PostgreSQL is left alone" } else { "resumed: the agents manage PostgreSQL again" }
        .into())
}

/// How a switchover or failover request ended, as seen from the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Handover {
    /// This member now holds the leader key (after this long).
    NewLeader(String, Duration),
    /// The request is gone and `before` still leads: refused or aborted.
    Refused,
    /// Neither within the wait.
    TimedOut,
}

/// How long [`await_handover`] waits.
pub const HANDOVER_WAIT: Duration = Duration::from_secs(30);

/// After a switchover or failover request was written: polls until a member other than
/// `before` holds the leader key and `/failover` is gone, or the request was dropped
/// while `before` still leads.
pub async fn await_handover<C: Transport>(dcs: &Dcs<C>, before: Option<&str>) -> Handover {
    let started = Instant::now();
    while started.elapsed() < HANDOVER_WAIT {
        if let Ok(view) = dcs.read_cluster().await {
            if let Some(new) = view.leader_name().filter(|n| Some(*n) != before && view.failover.is_none()) {
                return Handover::NewLeader(new.to_string(), started.elapsed());
            }
            if view.failover.is_none() && view.leader_name() == before && started.elapsed() > Duration::from_millis(500) {
                return Handover::Refused;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Handover::TimedOut
}

/// RFC 7396 JSON merge patch.
pub fn merge(target: &mut Value, patch: &Value) {
    match (target, patch) {
        (Value::Object(t), Value::Object(p)) => {
            for (k, v) in p {
                if v.is_null() {
                    t.remove(k);
                } else {
                    merge(t.entry(k.clone()).or_insert(Value::Null), v);
                }
            }
        }
        (t, p) => *t = p.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::{LeaderKey, Member};

    fn view() -> ClusterView {
        let member = |role, pos| Member { role, state: "running".into(), xlog_location: Some(pos), ..Default::default() };
        let mut v = ClusterView { leader: Some(LeaderKey { name: "n1".into(), lease: 1, mod_revision: 1 }), ..Default::default() };
        v.members.insert("n1".into(), member(Role::Primary, 10_000_000));
        v.members.insert("n2".into(), member(Role::Replica, 10_000_000));
        v.members.insert("n3".into(), member(Role::Replica, 1));
        v
    }

    #[test]
    fn switchover_checks() {
        let v = view();
        let req = |c: &str| SwitchoverRequest { candidate: Some(c.into()), ..Default::default() };
        assert_eq!(check_switchover(&v, &req("n2"), 1 << 20), Ok(()));
        assert!(matches!(check_switchover(&v, &req("n3"), 1 << 20), Err(OpsError::Refused(m)) if m.contains("lags")));
        assert!(matches!(check_switchover(&v, &req("n9"), 1 << 20), Err(OpsError::Refused(m)) if m.contains("no member named n9")));
        assert!(matches!(check_switchover(&v, &req("n1"), 1 << 20), Err(OpsError::Refused(m)) if m.contains("already")));
        let wrong_leader = SwitchoverRequest { leader: Some("n2".into()), ..Default::default() };
        assert!(check_switchover(&v, &wrong_leader, 1 << 20).is_err());
        let bad_time = SwitchoverRequest { scheduled_at: Some("tomorrow".into()), ..Default::default() };
        assert!(check_switchover(&v, &bad_time, 1 << 20).is_err());
        let mut headless = v.clone();
        headless.leader = None;
        assert!(check_switchover(&headless, &req("n2"), 1 << 20).is_err());
        let mut standby = v.clone();
        standby.config = Some((serde_json::json!({"standby_cluster": {"host": "10.0.0.9"}}), 3));
        let refused = check_switchover(&standby, &req("n2"), 1 << 20);
        assert!(
            matches!(refused, Err(OpsError::Refused(m)) if m.starts_with("this is a standby cluster: a switchover is not carried out here"))
        );
    }

    /// peers.sh, ROUNDS=5: a switchover to a node that had just given up its key for a
    /// crash loop was accepted; the primary stopped, the candidate refused the key and a
    /// third node took over. Refused up front now, naming why.
    #[test]
    fn a_candidate_that_stands_aside_is_refused() {
        let mut v = view();
        v.members.get_mut("n2").expect("n2").stands_aside = Some("its PostgreSQL kept exiting as primary".into());
        let req = SwitchoverRequest { candidate: Some("n2".into()), ..Default::default() };
        let refused = check_switchover(&v, &req, 1 << 20);
        assert!(
            matches!(&refused, Err(OpsError::Refused(m)) if m.starts_with("n2 may not take over for now: its PostgreSQL kept exiting as primary")),
            "{refused:?}"
        );
        let any = SwitchoverRequest::default();
        assert!(
            matches!(check_switchover(&v, &any, 1 << 20), Err(OpsError::Refused(m)) if m.starts_with("no replica is a suitable candidate")),
            "n3 lags and n2 stands aside: no candidate"
        );
    }

    #[test]
    fn merge_patch() {
        let mut c = serde_json::json!({"ttl": 2, "postgresql": {"parameters": {"a": 1, "b": 2}}});
        merge(&mut c, &serde_json::json!({"pause": true, "postgresql": {"parameters": {"a": null, "c": 3}}}));
        assert_eq!(c, serde_json::json!({"ttl": 2, "pause": true, "postgresql": {"parameters": {"b": 2, "c": 3}}}));
    }
}
