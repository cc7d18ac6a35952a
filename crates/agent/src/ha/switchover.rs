//! Planned switchover and manual failover (`/failover`), as Patroni does them: the
//! primary checkpoints and stops cleanly, checks that the candidate received everything
//! up to the shutdown checkpoint, and only then releases the leader key; the candidate
//! takes the key without waiting for a healthier peer and removes `/failover` once
//! promoted; the other replicas stand aside while the candidate is running. If the
//! candidate did not receive everything, the primary starts again and keeps the key:
//! no acknowledged write is lost.

use std::time::{Duration, Instant, SystemTime};

use super::action::{Action, HandOver};
use super::Agent;
use crate::callbacks::Event;
use crate::cluster::{ClusterView, FailoverRequest, Member, Role};
use crate::postgres::sql::Sql;
use crate::postgres::StopMode;

/// How long the old primary waits for the candidate to receive its last WAL.
const CATCH_UP_TIMEOUT: Duration = Duration::from_secs(10);

/// A request that applies at `now`: `Some(request)` unless it is scheduled for later.
pub(super) fn due(view: &ClusterView, now: SystemTime) -> Option<&FailoverRequest> {
    let f = view.failover.as_ref()?;
    match f.scheduled_at.as_deref().map(humantime::parse_rfc3339_weak) {
        Some(Ok(at)) if at > now => None,
        _ => Some(f),
    }
}

impl Agent {
    /// The primary's side: stop cleanly and hand the key to `to` (`decide` chose it;
    /// `pin`: the request as it must now name `to`), or start again and keep the key
    /// when it did not receive everything.
    pub(super) async fn hand_over(&mut self, to: &HandOver) -> String {
        let me = self.config.name.clone();
        let HandOver { candidate, host, port, pin } = to;
        let (host, port) = (host.as_str(), *port);
        if let Some(pinned) = pin {
            if let Ok(json) = serde_json::to_string(pinned) {
                let _ = self.dcs.put(&self.dcs.keys.failover(), &json, 0).await;
            }
        }
        tracing::info!("switchover: I am {me}, the primary; stopping PostgreSQL cleanly to hand over to {candidate}");
        let started = Instant::now();
        if let Err(e) = self.sql.checkpoint().await {
            tracing::warn!("checkpoint before the switchover failed: {e}");
        }
        let checkpointed = started.elapsed();
        self.lease.fencer().disarm();
        if let Err(e) = self.pg.stop(StopMode::Fast, Duration::from_secs(60)).await {
            return format!("switchover failed: cannot stop PostgreSQL: {e}");
        }
        let stopped = started.elapsed();
        self.callback(Event::Stopped(Role::Primary));
        self.sql.disconnect();
        self.memory.expect_running = false;
        let last = self.controldata().await.and_then(|c| c.checkpoint_lsn).unwrap_or(u64::MAX);
        let controldata = started.elapsed();
        if self.wait_received(host, port, last).await {
            let confirmed = started.elapsed();
            let _ = self.dcs.delete_if_value(&self.dcs.keys.leader(), &me).await;
            tracing::debug!(
                "switchover: checkpoint done at {} ms, stopped at {} ms, pg_controldata at {} ms, {candidate} confirmed at {} ms, key released at {} ms",
                checkpointed.as_millis(),
                stopped.as_millis(),
                controldata.as_millis(),
                confirmed.as_millis(),
                started.elapsed().as_millis()
            );
            return format!(
                "switchover: stopped in {} ms; {candidate} received everything up to {}; released the leader key",
                started.elapsed().as_millis(),
                crate::cluster::format_lsn(last)
            );
        }
        // The candidate is behind: keep the key and run again as primary.
        let _ = self.dcs.delete(&self.dcs.keys.failover()).await;
        let restarted = match self.configure(None).await {
            Ok(_) => self.pg.start().await.map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        if restarted.is_ok() {
            self.memory.expect_running = true;
            self.arm_fencer();
            self.callback(Event::Started(Role::Primary));
        }
        format!(
            "switchover aborted: {candidate} did not receive the WAL up to {} within {CATCH_UP_TIMEOUT:?}; staying primary{}",
            crate::cluster::format_lsn(last),
            restarted.err().map(|e| format!(" (restart failed: {e})")).unwrap_or_default()
        )
    }

    /// Until the replica at `host:port` has received WAL past `lsn` (or the timeout).
    async fn wait_received(&self, host: &str, port: u16, lsn: u64) -> bool {
        let deadline = Instant::now() + CATCH_UP_TIMEOUT;
        while Instant::now() < deadline {
            match Sql::remote_received_lsn(&self.config.postgresql, host, port).await {
                Ok(Some(received)) if received > lsn => return true,
                Ok(_) => {}
                Err(e) => tracing::debug!("asking the candidate for its position: {e}"),
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        false
    }
}

/// What a primary does with a switchover or manual failover request that applies now.
pub(super) fn answer(view: &ClusterView, request: &FailoverRequest, me: &str, synchronous_mode: bool) -> Action {
    let cancel = |why: String| Action::CancelSwitchover { why };
    if request.leader.as_deref().is_some_and(|l| l != me) || request.member.as_deref() == Some(me) {
        return cancel("ignored a switchover request that does not apply to me (I am the primary)".into());
    }
    let sync_only = synchronous_mode.then(|| view.sync_standbys());
    let Some(candidate) = request.member.clone().or_else(|| best_candidate(view, me, sync_only.as_deref())) else {
        return cancel("switchover cancelled: no running replica to hand over to".into());
    };
    let member = view.members.get(&candidate);
    // The candidate would refuse the key after this primary stopped (`decide`).
    if let Some(why) = member.and_then(Member::unwilling) {
        return cancel(format!("switchover cancelled: {candidate} {why}"));
    }
    let Some((host, port)) = member.filter(|m| m.state == "running").and_then(|m| m.host_port()) else {
        return cancel(format!("switchover cancelled: {candidate} is not running"));
    };
    let pin = request.member.is_none().then(|| FailoverRequest { member: Some(candidate.clone()), ..request.clone() });
    Action::HandOver(HandOver { candidate, host, port, pin })
}

/// The running replica (streaming first) with the most WAL, not tagged nofailover nor
/// standing aside, and in synchronous mode one of the synchronous standbys (`sync_only`).
fn best_candidate(view: &ClusterView, me: &str, sync_only: Option<&[String]>) -> Option<String> {
    view.members
        .iter()
        .filter(|(n, m)| n.as_str() != me && m.role == Role::Replica && m.state == "running")
        .filter(|(_, m)| m.unwilling().is_none())
        .filter(|(n, _)| sync_only.is_none_or(|s| s.contains(n)))
        .max_by_key(|(_, m)| (m.streaming(), m.xlog_location.unwrap_or(0), m.tags.failover_priority.unwrap_or(1)))
        .map(|(n, _)| n.clone())
}
