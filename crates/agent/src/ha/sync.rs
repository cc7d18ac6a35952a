//! Synchronous replication (`synchronous_mode`), managed by the primary each cycle, in
//! the order that keeps the guarantee "every acknowledged commit is on every member
//! `/sync` names":
//!
//! 1. shrink `/sync` to the standbys that stay (a standby leaves `/sync` before
//!    PostgreSQL stops waiting for it, so it can no longer be promoted once it may miss
//!    commits);
//! 2. set `synchronous_standby_names` to `FIRST n (the standbys wanted)` and reload;
//! 3. grow `/sync` with the wanted standbys PostgreSQL reports as `sync` (a standby
//!    joins `/sync` only once commits wait for it), and only once it has flushed the
//!    primary's WAL position of the moment it was first reported `sync` ([`admit`]):
//!    commits acknowledged before PostgreSQL waited for it may not be on it yet.
//!
//! With no standby available, `synchronous_mode_strict` keeps commits waiting
//! (`synchronous_standby_names = '*'`); the non-strict mode falls back to asynchronous
//! replication and says so in `/sync` (no standby listed).

use std::collections::BTreeMap;

use super::Agent;
use crate::cluster::{ClusterView, SyncState};
use crate::state::{PgStatus, ReplicationRow};

/// `FIRST n ("a", "b")`, or the strict/async fallbacks.
pub fn standby_names(wanted: &[String], n: u32, strict: bool) -> String {
    if wanted.is_empty() {
        return if strict { "*".into() } else { String::new() };
    }
    let quoted: Vec<String> = wanted.iter().map(|w| format!("\"{}\"", w.replace('"', "\"\""))).collect();
    format!("FIRST {n} ({})", quoted.join(", "))
}

/// The standbys to wait for: streaming, known members, not tagged nosync (nor nostream:
/// such a member only replays the archive, whatever connection it still has), not lagging
/// more than `max_lag` bytes (`maximum_lag_on_syncnode`: a lagging synchronous standby
/// is replaced); those already synchronous first (no needless churn), then the most
/// advanced; at most `n`.
pub fn choose(view: &ClusterView, pg: &PgStatus, me: &str, n: u32, max_lag: Option<u64>) -> Vec<String> {
    let current = view.sync_standbys();
    let primary_pos = pg.wal_lsn.unwrap_or(0);
    let lagging = |pos: u64| max_lag.is_some_and(|m| primary_pos.saturating_sub(pos) > m);
    let mut candidates: Vec<(bool, u64, String)> = pg
        .replication
        .iter()
        .filter(|r| r.state == "streaming" && r.application_name != me)
        .filter_map(|r| {
            let m = view.members.get(&r.application_name)?;
            let pos = m.xlog_location.unwrap_or(0);
            (!m.tags.nosync && !m.tags.nostream && !lagging(pos))
                .then(|| (current.contains(&r.application_name), pos, r.application_name.clone()))
        })
        .collect();
    candidates.sort_by(|a, b| b.0.cmp(&a.0).then(b.1.cmp(&a.1)).then(a.2.cmp(&b.2)));
    candidates.into_iter().take(n as usize).map(|(_, _, name)| name).collect()
}

/// Step 3's rule: which of the standbys PostgreSQL reports synchronous (`confirmed`)
/// `/sync` may name now. One `/sync` already lists (`listed`) stays. A new one joins once
/// its flushed position (`rows`) reached the primary's WAL position (`wal_lsn`) of the
/// cycle that first saw it synchronous (`joining` remembers those positions): anything
/// acknowledged before then is at or below that position, and from then on commits wait
/// for it. Returns the standbys for `/sync` (in `confirmed`'s order) and the new `joining`.
pub fn admit(
    confirmed: &[String],
    listed: &[String],
    joining: &BTreeMap<String, u64>,
    rows: &[ReplicationRow],
    wal_lsn: Option<u64>,
) -> (Vec<String>, BTreeMap<String, u64>) {
    let flushed = |name: &str| rows.iter().find(|r| r.application_name == name).and_then(|r| r.flush_lsn);
    let mut admitted = Vec::new();
    let mut still_joining = BTreeMap::new();
    for name in confirmed {
        if listed.contains(name) {
            admitted.push(name.clone());
            continue;
        }
        let Some(since) = joining.get(name).copied().or(wal_lsn) else { continue };
        if flushed(name).is_some_and(|f| f >= since) {
            admitted.push(name.clone());
        } else {
            still_joining.insert(name.clone(), since);
        }
    }
    (admitted, still_joining)
}

/// In synchronous mode, whether `name` may take the leader key by `/sync`: only the
/// primary `/sync` belongs to and the standbys it lists hold every acknowledged commit.
/// Without `/sync` (never synchronous yet), or with nobody listed in the non-strict mode
/// (it had fallen back to asynchronous), anyone may.
///
/// A `/sync` whose leader is not the newest primary in `/history` is stale (that
/// primary promoted without writing it, so the old leader may miss what it
/// acknowledged) or ahead of a `/history` write that failed: which one is newer is
/// unknown, so its leader is not eligible by it; the standbys it lists still are.
pub fn sync_allows(view: &ClusterView, name: &str, strict: bool) -> bool {
    let Some((sync, _)) = view.sync.as_ref() else { return !strict };
    let newest_primary = view.history.last().map(|h| h.4.as_str());
    let leader = match (sync.leader.as_deref(), newest_primary) {
        (Some(l), Some(newest)) if l != newest => None,
        (l, _) => l,
    };
    let listed = sync.members();
    leader == Some(name) || listed.iter().any(|m| m == name) || (listed.is_empty() && !strict)
}

impl Agent {
    /// Steps 1–3 of the module doc; after a change of synchronous_standby_names, step 3
    /// waits for a later cycle (PostgreSQL reports the new sync states then).
    pub(super) async fn manage_sync(&mut self, view: &ClusterView, pg: &PgStatus) {
        let me = self.config.name.clone();
        let key = self.dcs.keys.sync();
        if !self.dynamic.synchronous_mode {
            if !self.sync_names.is_empty() {
                self.sync_names.clear();
                self.reload_primary_conf().await;
            }
            if view.sync.is_some() {
                let _ = self.dcs.delete(&key).await;
            }
            return;
        }
        let n = self.dynamic.synchronous_node_count;
        let max_lag = u64::try_from(self.dynamic.maximum_lag_on_syncnode).ok().filter(|m| *m > 0);
        let wanted = choose(view, pg, &me, n, max_lag);
        let listed = view.sync_standbys();
        // 1. shrink
        let staying: Vec<String> = listed.iter().filter(|s| wanted.contains(s)).cloned().collect();
        if staying != listed {
            // The next cycle goes on from the revision this write made.
            self.write_sync(view, &staying).await;
            return;
        }
        // 2. PostgreSQL waits for the wanted standbys
        let names = standby_names(&wanted, n, self.dynamic.synchronous_mode_strict);
        if names != self.sync_names {
            tracing::info!("synchronous_standby_names = '{names}'");
            self.sync_names = names;
            self.reload_primary_conf().await;
            return; // PostgreSQL reports the new sync states in a later cycle
        }
        // 3. grow with the standbys PostgreSQL now waits for
        let confirmed: Vec<String> = wanted
            .iter()
            .filter(|w| pg.replication.iter().any(|r| &r.application_name == *w && matches!(r.sync_state.as_str(), "sync" | "quorum")))
            .cloned()
            .collect();
        let (admitted, joining) = admit(&confirmed, &staying, &self.sync_joining, &pg.replication, pg.wal_lsn);
        self.sync_joining = joining;
        let in_key = view.sync.as_ref().map(|(s, _)| s.leader.as_deref() == Some(me.as_str())).unwrap_or(false);
        if admitted != staying || !in_key {
            self.write_sync(view, &admitted).await;
        }
    }

    /// Writes `/sync` = {leader: me, sync_standby: standbys} only if nobody changed it
    /// since `view` was read (compare-and-swap on its mod revision), so a deposed
    /// primary's late cycle cannot overwrite what the new primary wrote. True when written.
    pub(super) async fn write_sync(&self, view: &ClusterView, standbys: &[String]) -> bool {
        let value = SyncState { leader: Some(self.config.name.clone()), sync_standby: (!standbys.is_empty()).then(|| standbys.join(",")) };
        let Ok(json) = serde_json::to_string(&value) else { return false };
        let key = self.dcs.keys.sync();
        let written = match &view.sync {
            Some((_, revision)) => self.dcs.put_if_unchanged(&key, &json, *revision).await,
            None => self.dcs.create(&key, &json, 0).await,
        };
        match written {
            Ok(true) => {
                tracing::info!(
                    "/sync: synchronous standbys {}",
                    if standbys.is_empty() { "none".to_string() } else { standbys.join(", ") }
                );
                true
            }
            Ok(false) => {
                tracing::warn!("cannot write /sync: another member changed it since this cycle read it");
                false
            }
            Err(e) => {
                tracing::warn!("cannot write /sync: {e}");
                false
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::{LeaderKey, Member, Role};
    use crate::config::Tags;
    use crate::state::ReplicationRow;

    #[test]
    fn names() {
        assert_eq!(standby_names(&["n2".into(), "n3".into()], 1, false), r#"FIRST 1 ("n2", "n3")"#);
        assert_eq!(standby_names(&[], 1, true), "*");
        assert_eq!(standby_names(&[], 1, false), "");
    }

    #[test]
    fn chooses_streaming_non_nosync_current_first() {
        let mut view = ClusterView { leader: Some(LeaderKey { name: "n1".into(), lease: 1, mod_revision: 1 }), ..Default::default() };
        for (name, pos, nosync, nostream) in
            [("n2", 10, false, false), ("n3", 20, false, false), ("n4", 30, true, false), ("n5", 40, false, true)]
        {
            let tags = Tags { nosync, nostream, ..Default::default() };
            view.members.insert(name.into(), Member { role: Role::Replica, xlog_location: Some(pos), tags, ..Default::default() });
        }
        let row = |n: &str| ReplicationRow { application_name: n.into(), state: "streaming".into(), ..Default::default() };
        let pg = PgStatus { replication: vec![row("n2"), row("n3"), row("n4"), row("n5"), row("stranger")], ..Default::default() };
        assert_eq!(choose(&view, &pg, "n1", 1, None), vec!["n3".to_string()], "most advanced, nosync and nostream skipped");
        view.sync = Some((SyncState { leader: Some("n1".into()), sync_standby: Some("n2".into()) }, 1));
        assert_eq!(choose(&view, &pg, "n1", 1, None), vec!["n2".to_string()], "the current one stays");
        assert_eq!(choose(&view, &pg, "n1", 5, None).len(), 2);
        let pg = PgStatus { wal_lsn: Some(25), ..pg };
        assert_eq!(choose(&view, &pg, "n1", 1, Some(10)), vec!["n3".to_string()], "a lagging sync standby is replaced");
    }

    fn view_with_sync(leader: &str, standbys: Option<&str>) -> ClusterView {
        let sync = SyncState { leader: Some(leader.into()), sync_standby: standbys.map(str::to_string) };
        ClusterView { sync: Some((sync, 7)), ..Default::default() }
    }

    #[test]
    fn only_the_sync_leader_and_listed_standbys_may_take_over() {
        let view = view_with_sync("n1", Some("n2"));
        assert!(sync_allows(&view, "n1", false));
        assert!(sync_allows(&view, "n2", true));
        assert!(!sync_allows(&view, "n3", false));
        let fallen_back = view_with_sync("n1", None);
        assert!(sync_allows(&fallen_back, "n3", false), "asynchronous fallback");
        assert!(!sync_allows(&fallen_back, "n3", true), "strict: nobody listed, nobody but the leader");
        assert!(sync_allows(&ClusterView::default(), "n3", false));
        assert!(!sync_allows(&ClusterView::default(), "n3", true));
    }

    /// Issue 16 item 6: n2 promoted (it is the newest primary in `/history`) but `/sync`
    /// still names n1 and n2: n1 never received what n2 acknowledged and may not take over.
    #[test]
    fn a_stale_sync_key_does_not_make_its_old_leader_eligible() {
        use crate::cluster::HistoryEntry;
        let mut view = view_with_sync("n1", Some("n2"));
        view.history = vec![HistoryEntry(1, 0x300_0000, String::new(), String::new(), "n2".into())];
        assert!(!sync_allows(&view, "n1", false), "the stale leader");
        assert!(sync_allows(&view, "n2", false), "a listed standby");
        view.history[0].4 = "n1".into();
        assert!(sync_allows(&view, "n1", false), "not stale: n1 is the newest primary");
    }

    fn row(name: &str, flushed: u64) -> ReplicationRow {
        ReplicationRow {
            application_name: name.into(),
            state: "streaming".into(),
            sync_state: "sync".into(),
            flush_lsn: Some(flushed),
            ..Default::default()
        }
    }

    /// The model check's trace (`growing_sync_with_a_lagging_standby_loses_a_commit`): a
    /// standby PostgreSQL has just started waiting for, that lacks a commit acknowledged
    /// before (under '*', by another standby), must not be named in `/sync` yet. Before
    /// `admit`, every standby reported `sync` was named at once.
    #[test]
    fn a_new_synchronous_standby_joins_sync_only_once_it_flushed_what_was_acknowledged_before() {
        let confirmed = vec!["n2".to_string()];
        let behind = [row("n2", 900)];
        let (admitted, joining) = admit(&confirmed, &[], &BTreeMap::new(), &behind, Some(1000));
        assert!(admitted.is_empty(), "n2 has not flushed 1000 yet");
        assert_eq!(joining.get("n2"), Some(&1000));
        // Next cycle: the primary moved on to 1500; n2 flushed 1000, the mark that counts.
        let (admitted, joining) = admit(&confirmed, &[], &joining, &[row("n2", 1000)], Some(1500));
        assert_eq!(admitted, confirmed);
        assert!(joining.is_empty());
    }

    #[test]
    fn listed_standbys_stay_and_caught_up_ones_join_at_once() {
        let confirmed = vec!["n2".to_string(), "n3".to_string()];
        let rows = [row("n2", 10), row("n3", 2000)];
        let (admitted, joining) = admit(&confirmed, &["n2".to_string()], &BTreeMap::new(), &rows, Some(2000));
        assert_eq!(admitted, confirmed, "n2 is listed already; n3 flushed everything");
        assert!(joining.is_empty());
        // One no longer reported synchronous is forgotten.
        let waiting = BTreeMap::from([("n9".to_string(), 5u64)]);
        let (_, joining) = admit(&confirmed, &[], &waiting, &rows, Some(2000));
        assert!(!joining.contains_key("n9"));
        // No WAL position known (not a primary answer): nobody new joins.
        let (admitted, _) = admit(&["n3".to_string()], &[], &BTreeMap::new(), &[row("n3", 5)], None);
        assert!(admitted.is_empty());
    }
}
