//! Failsafe mode (`failsafe_mode` in `/config`, as Patroni's): when this node's store
//! has lost its quorum, a primary may keep running only while every other member
//! confirms, over REST (`POST /failsafe`), that it sees it alive. A member that
//! confirms promises not to take the leader key for one ttl from its answer; the
//! primary extends its write deadline to `ping sent + ttl − safety_margin`, so the same
//! inequality as for leases holds. As soon as one member does not confirm, nothing is
//! extended and the fencer stops PostgreSQL at the deadline.
//!
//! Owns both sides: what a member answers ([`confirmation`], a pure rule, and
//! [`Promise`], the binding it gives), and whom a primary asks ([`Members`]: everyone
//! it has seen in this run, including members whose keys expired since — a member
//! that is never asked is never bound, so it must count as "not confirmed").
//!
//! A member confirms only while it neither holds the leader key, nor runs as primary,
//! nor is about to take the key ([`Promise::claim`]), and only to the member its own
//! view names as the leader (or, once that key expired, the last leader it saw). A
//! confirmation and a race for the key exclude each other under one lock, so a member
//! cannot both promise and promote. The timing check (`timing`) makes a confirmation
//! round end before the primary's lease can expire in the store.
//!
//! Here the store and the agents share fate: a node that loses the store's quorum is
//! cut off from at least a majority's Raft traffic, and failsafe helps only when their
//! REST APIs are still reachable (a Raft-only partition, a store stalled by a disk).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::Agent;
use crate::cluster::{ClusterView, Role};
use crate::state::NodeState;

/// What a member knows when a primary asks it to confirm (from its latest state).
#[derive(Debug, Clone, PartialEq)]
pub struct Local {
    pub failsafe_mode: bool,
    /// The cluster's ttl as this member reads `/config`: the longest promise it gives.
    pub cluster_ttl: Duration,
    pub me: String,
    /// The leader key's holder in this member's latest view.
    pub leader_in_view: Option<String>,
    pub holds_leader_key: bool,
    pub runs_as_primary: bool,
}

impl Local {
    pub fn of(state: &NodeState) -> Self {
        let dynamic = crate::ops::dynamic(&state.cluster);
        Self {
            failsafe_mode: dynamic.failsafe_mode,
            cluster_ttl: dynamic.timing().ttl,
            me: state.name.clone(),
            leader_in_view: state.cluster.leader_name().map(str::to_string),
            holds_leader_key: state.holds_leader_key,
            runs_as_primary: state.postgres.role == Role::Primary,
        }
    }
}

/// Why a member does not confirm (the REST status follows the kind).
#[derive(Debug, Clone, PartialEq)]
pub enum Refusal {
    /// `failsafe_mode` is off in this member's `/config` (412).
    Off,
    /// The request itself is wrong (400).
    BadRequest(String),
    /// This member may not bind itself to this caller now (409).
    Conflict(String),
}

/// The rule for `POST /failsafe {name, ttl}`: how long this member promises, or why it
/// refuses. `last_leader` is the last leader key holder this member saw; `claimed` is
/// true while it races for (or holds) the leader key.
pub fn confirmation(
    name: Option<&str>,
    ttl: Option<u64>,
    local: &Local,
    last_leader: Option<&str>,
    claimed: bool,
) -> Result<Duration, Refusal> {
    if !local.failsafe_mode {
        return Err(Refusal::Off);
    }
    let cap = local.cluster_ttl.as_secs();
    let (Some(name), Some(ttl)) = (name.filter(|n| !n.is_empty()), ttl) else {
        return Err(Refusal::BadRequest(format!("failsafe needs {{\"name\": PRIMARY, \"ttl\": SECONDS (1..{cap}, the cluster's ttl)}}")));
    };
    if !(1..=cap).contains(&ttl) {
        return Err(Refusal::BadRequest(format!("failsafe ttl {ttl} is out of range: 1..{cap} seconds (the cluster's ttl)")));
    }
    let me = &local.me;
    if local.holds_leader_key || local.leader_in_view.as_deref() == Some(me) {
        return Err(Refusal::Conflict(format!("I ({me}) hold the leader key")));
    }
    if local.runs_as_primary {
        return Err(Refusal::Conflict(format!("I ({me}) run as primary")));
    }
    if claimed {
        return Err(Refusal::Conflict(format!("I ({me}) am taking the leader key")));
    }
    let leader = local.leader_in_view.as_deref().or(last_leader);
    if leader != Some(name) {
        return Err(Refusal::Conflict(format!("{name} is not the leader I know (that is {})", leader.unwrap_or("nobody"))));
    }
    Ok(Duration::from_secs(ttl))
}

#[derive(Debug, Default)]
struct Binding {
    /// (primary's name, no take-over before this instant).
    promised: Option<(String, Instant)>,
    /// This member races for, or holds, the leader key: it confirms nobody.
    claimed: bool,
    /// The last leader key holder seen in a view of the store.
    last_leader: Option<String>,
}

/// The promise this member gave, shared between the REST API (which gives it) and the
/// HA loop (which may not race while it lasts).
#[derive(Clone, Default)]
pub struct Promise(Arc<Mutex<Binding>>);

impl Promise {
    fn lock(&self) -> MutexGuard<'_, Binding> {
        self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Answers a primary's `POST /failsafe`: binds this member for the granted ttl from now.
    pub fn confirm(&self, name: Option<&str>, ttl: Option<u64>, local: &Local) -> Result<(), Refusal> {
        let mut b = self.lock();
        let granted = confirmation(name, ttl, local, b.last_leader.as_deref(), b.claimed)?;
        let until = Instant::now() + granted;
        if b.promised.as_ref().is_none_or(|(_, u)| *u < until) {
            b.promised = Some((name.unwrap_or_default().to_string(), until));
        }
        Ok(())
    }

    /// The primary this member promised not to replace, while the promise lasts.
    pub fn active(&self) -> Option<Promised> {
        let b = self.lock();
        b.promised.as_ref().filter(|(_, until)| *until > Instant::now()).map(|(n, _)| Promised { primary: n.clone() })
    }

    /// Before taking the leader key: fails with the primary's name while a promise
    /// lasts; otherwise no confirmation is given until [`Promise::unclaim`].
    pub fn claim(&self) -> Result<(), Promised> {
        let mut b = self.lock();
        if let Some((name, until)) = &b.promised {
            if *until > Instant::now() {
                return Err(Promised { primary: name.clone() });
            }
        }
        b.claimed = true;
        Ok(())
    }

    /// This member lost the race or follows another leader: it may confirm again.
    pub fn unclaim(&self) {
        self.lock().claimed = false;
    }

    /// Remembers the leader key holder of a fresh view (kept when the key expires).
    pub fn saw(&self, view: &ClusterView) {
        if let Some(leader) = view.leader_name() {
            let mut b = self.lock();
            if b.last_leader.as_deref() != Some(leader) {
                b.last_leader = Some(leader.to_string());
            }
        }
    }
}

/// A promise this member gave to `primary` and that still lasts; its `Display` is the HA
/// cycle's sentence of a member that may not race because of it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("no leader key, but {primary} runs in failsafe mode and I confirmed it: not racing until that promise ends")]
pub struct Promised {
    pub primary: String,
}

/// Why a primary's confirmation round failed (it then demotes at its deadline).
#[derive(Debug, thiserror::Error)]
pub enum FailsafeError {
    #[error("no other member is known")]
    NoMembers,
    #[error("{name} answered {code} {text}")]
    Refused { name: String, code: u16, text: String },
    #[error("{name}: {error}")]
    Unreachable { name: String, error: std::io::Error },
    #[error("{name} did not answer")]
    NoAnswer { name: String },
    #[error("the confirmations came after the write deadline")]
    TooLate,
}

/// Every other member this node saw in this run (name → REST URL), kept after their
/// keys expire: the members a primary in failsafe mode must hear from.
#[derive(Debug, Default)]
pub struct Members(BTreeMap<String, String>);

impl Members {
    /// Adds (or updates the URL of) every member of `view` but `me`.
    pub fn saw(&mut self, view: &ClusterView, me: &str) {
        for (name, member) in view.members.iter().filter(|(n, _)| *n != me) {
            if self.0.get(name) != Some(&member.api_url) {
                self.0.insert(name.clone(), member.api_url.clone());
            }
        }
    }

    /// (name, REST URL) of every member to ask.
    pub fn to_ask(&self) -> Vec<(String, String)> {
        self.0.iter().map(|(n, u)| (n.clone(), u.clone())).collect()
    }
}

impl Agent {
    /// Asks every member seen in this run to confirm; on all confirmations, extends the
    /// deadline. A member that does not answer counts as not confirmed.
    pub(super) async fn failsafe_confirmed(&mut self) -> Result<usize, FailsafeError> {
        let me = self.config.name.clone();
        let timing = self.timing();
        let members = self.failsafe_members.to_ask();
        if members.is_empty() {
            return Err(FailsafeError::NoMembers);
        }
        let body = serde_json::json!({ "name": me, "ttl": timing.ttl.as_secs() }).to_string();
        let auth = self.config.restapi.authentication.as_ref().map(|c| format!("{}:{}", c.username, c.password));
        let sent = Instant::now();
        let client = self.config.rest_client();
        let asks = members.iter().map(|(name, api_url)| {
            let url = format!("{}/failsafe", api_url.trim_end_matches("/patroni"));
            let (body, auth, client) = (body.clone(), auth.clone(), client.clone());
            async move {
                let answer = tokio::time::timeout(timing.retry_timeout, client.request("POST", &url, Some(&body), auth.as_deref())).await;
                match answer {
                    Ok(Ok((200, _))) => Ok(()),
                    Ok(Ok((code, text))) => Err(FailsafeError::Refused { name: name.clone(), code, text: text.trim().to_string() }),
                    Ok(Err(error)) => Err(FailsafeError::Unreachable { name: name.clone(), error }),
                    Err(_) => Err(FailsafeError::NoAnswer { name: name.clone() }),
                }
            }
        });
        let answers = futures::future::join_all(asks).await;
        if let Some(Err(e)) = answers.into_iter().find(Result::is_err) {
            return Err(e);
        }
        if !self.lease.extend(sent + timing.write_budget()) {
            return Err(FailsafeError::TooLate);
        }
        Ok(members.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::{LeaderKey, Member};

    fn replica_of(leader: Option<&str>) -> Local {
        Local {
            failsafe_mode: true,
            cluster_ttl: Duration::from_secs(30),
            me: "node2".into(),
            leader_in_view: leader.map(str::to_string),
            holds_leader_key: false,
            runs_as_primary: false,
        }
    }

    fn conflict(r: Result<Duration, Refusal>) -> String {
        match r {
            Err(Refusal::Conflict(why)) => why,
            other => panic!("expected a conflict, got {other:?}"),
        }
    }

    #[test]
    fn a_replica_confirms_only_the_leader_it_knows() {
        let local = replica_of(Some("node1"));
        assert_eq!(confirmation(Some("node1"), Some(30), &local, None, false), Ok(Duration::from_secs(30)));
        assert!(conflict(confirmation(Some("node3"), Some(30), &local, None, false)).contains("that is node1"));
        // The key expired in this member's view: the last leader it saw may still ask.
        let expired = replica_of(None);
        assert_eq!(confirmation(Some("node1"), Some(5), &expired, Some("node1"), false), Ok(Duration::from_secs(5)));
        assert!(conflict(confirmation(Some("node3"), Some(5), &expired, Some("node1"), false)).contains("not the leader"));
        assert!(conflict(confirmation(Some("node1"), Some(5), &expired, None, false)).contains("nobody"));
    }

    #[test]
    fn a_leader_or_primary_or_racing_member_confirms_nobody() {
        let holder = Local { holds_leader_key: true, ..replica_of(Some("node1")) };
        assert!(conflict(confirmation(Some("node1"), Some(30), &holder, None, false)).contains("hold the leader key"));
        let named = replica_of(Some("node2"));
        assert!(conflict(confirmation(Some("node2"), Some(30), &named, None, false)).contains("hold the leader key"));
        let primary = Local { runs_as_primary: true, ..replica_of(Some("node1")) };
        assert!(conflict(confirmation(Some("node1"), Some(30), &primary, None, false)).contains("run as primary"));
        assert!(conflict(confirmation(Some("node1"), Some(30), &replica_of(Some("node1")), None, true)).contains("taking the leader key"));
    }

    #[test]
    fn bad_requests_are_refused_and_ttl_is_capped_at_the_clusters() {
        let local = replica_of(Some("node1"));
        for (name, ttl) in [
            (None, Some(30)),
            (Some("node1"), None),
            (Some(""), Some(30)),
            (Some("node1"), Some(0)),
            (Some("node1"), Some(31)),
            (Some("node1"), Some(3600)),
        ] {
            match confirmation(name, ttl, &local, None, false) {
                Err(Refusal::BadRequest(why)) => assert!(why.contains("1..30"), "{why}"),
                other => panic!("{name:?} {ttl:?}: expected 400, got {other:?}"),
            }
        }
        let off = Local { failsafe_mode: false, ..local };
        assert_eq!(confirmation(Some("node1"), Some(30), &off, None, false), Err(Refusal::Off));
    }

    fn view(leader: Option<&str>, members: &[&str]) -> ClusterView {
        ClusterView {
            leader: leader.map(|n| LeaderKey { name: n.into(), lease: 1, mod_revision: 1 }),
            members: members
                .iter()
                .map(|n| (n.to_string(), Member { api_url: format!("http://{n}:8008/patroni"), ..Default::default() }))
                .collect(),
            ..Default::default()
        }
    }

    #[test]
    fn a_confirmation_and_a_race_exclude_each_other() {
        let promise = Promise::default();
        promise.saw(&view(Some("node1"), &[]));
        let local = replica_of(None);
        promise.confirm(Some("node1"), Some(30), &local).expect("the last leader is confirmed");
        assert_eq!(promise.active().map(|p| p.primary), Some("node1".into()));
        assert_eq!(promise.claim(), Err(Promised { primary: "node1".into() }), "a bound member may not take the key");

        let racing = Promise::default();
        racing.saw(&view(Some("node1"), &[]));
        racing.claim().expect("no promise yet");
        assert!(matches!(racing.confirm(Some("node1"), Some(30), &local), Err(Refusal::Conflict(_))), "a racing member confirms nobody");
        assert_eq!(racing.active(), None);
        racing.unclaim();
        racing.confirm(Some("node1"), Some(30), &local).expect("after losing the race it may confirm");
    }

    #[test]
    fn members_whose_keys_expired_are_still_asked() {
        let mut members = Members::default();
        members.saw(&view(Some("node1"), &["node1", "node2", "node3"]), "node1");
        members.saw(&view(Some("node1"), &["node1", "node2"]), "node1");
        let names: Vec<String> = members.to_ask().into_iter().map(|(n, _)| n).collect();
        assert_eq!(names, ["node2", "node3"]);
    }
}
