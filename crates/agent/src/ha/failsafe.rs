//! Failsafe mode (`failsafe_mode` in `/config`, as Patroni's): when this node's store
//! has lost its quorum, a primary may keep running only while every other member
//! confirms, over REST (`POST /failsafe`), that it sees it alive. A member that
//! confirms promises not to take the leader key for one ttl from its answer; the
//! primary extends its write deadline to `ping sent + ttl − safety_margin`, so the same
//! inequality as for leases holds. As soon as one member does not confirm, nothing is
//! extended and the fencer stops PostgreSQL at the deadline.
//!
//! Here the store and the agents share fate: a node that loses the store's quorum is
//! cut off from at least a majority's Raft traffic, and failsafe helps only when their
//! REST APIs are still reachable (a Raft-only partition, a store stalled by a disk).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::Agent;

/// The promise this member gave: (primary's name, no take-over before this instant).
#[derive(Clone, Default)]
pub struct Promise(Arc<Mutex<Option<(String, Instant)>>>);

impl Promise {
    /// Records a confirmation to `leader`, valid for `ttl` from now.
    pub fn give(&self, leader: &str, ttl: Duration) {
        if let Ok(mut p) = self.0.lock() {
            let until = Instant::now() + ttl;
            if p.as_ref().is_none_or(|(_, u)| *u < until) {
                *p = Some((leader.to_string(), until));
            }
        }
    }

    /// The primary this member promised not to replace, while the promise lasts.
    pub fn active(&self) -> Option<String> {
        let p = self.0.lock().ok()?;
        p.as_ref().filter(|(_, until)| *until > Instant::now()).map(|(n, _)| n.clone())
    }
}

impl Agent {
    /// Asks every other member to confirm; on all confirmations, extends the deadline.
    pub(super) async fn failsafe_confirmed(&mut self) -> Result<usize, String> {
        let me = self.config.name.clone();
        let timing = self.timing();
        let members: Vec<(String, String)> = {
            let state = self.state.borrow();
            state.cluster.members.iter().filter(|(n, _)| **n != me).map(|(n, m)| (n.clone(), m.api_url.clone())).collect()
        };
        if members.is_empty() {
            return Err("no other member is known".into());
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
                    Ok(Ok((code, text))) => Err(format!("{name} answered {code} {}", text.trim())),
                    Ok(Err(e)) => Err(format!("{name}: {e}")),
                    Err(_) => Err(format!("{name} did not answer")),
                }
            }
        });
        let answers = futures::future::join_all(asks).await;
        if let Some(Err(e)) = answers.into_iter().find(Result::is_err) {
            return Err(e);
        }
        self.lease.extend(sent + timing.write_budget());
        Ok(members.len())
    }
}
