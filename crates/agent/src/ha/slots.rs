//! A member's replication slots each cycle (`slots::plan` decides, this carries it
//! out): the primary keeps one physical slot per other member and the permanent slots,
//! drops the rest once inactive (but `ignore_slots`'), and returns the permanent slots'
//! positions for `/status`; a replica keeps the permanent slots too, advancing them to
//! those positions, and copies a logical slot it lacks from the primary (its state
//! file; PostgreSQL is stopped to take it, and the next cycle starts it again).

use std::collections::BTreeMap;

use super::Agent;
use crate::cluster::ClusterView;
use crate::postgres::{conf, slots as pg_slots};
use crate::slots::{plan, Plan, Role, SlotKind, Step, Wanted};

impl Agent {
    /// The plan for this member, or None when the slots cannot be listed.
    async fn slot_plan(&mut self, view: &ClusterView, role: &Role) -> Option<Plan> {
        let existing = match self.sql.slots().await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!("cannot list replication slots: {e}");
                return None;
            }
        };
        let members: Vec<String> = view.members.keys().map(|n| conf::slot_name(n)).collect();
        let wanted = Wanted { permanent: &self.dynamic.slots, ignore: &self.dynamic.ignore_slots };
        let plan = plan(role, wanted, &conf::slot_name(&self.config.name), &members, &existing);
        if plan.warnings != self.slot_warnings {
            for w in &plan.warnings {
                tracing::warn!("{w}");
            }
            self.slot_warnings.clone_from(&plan.warnings);
        }
        Some(plan)
    }

    /// The primary's slots; returns the permanent slots' positions for `/status`.
    pub(super) async fn sync_primary_slots(&mut self, view: &ClusterView) -> BTreeMap<String, u64> {
        let member_slots = view.members.keys().filter(|n| **n != self.config.name).map(|n| conf::slot_name(n)).collect();
        let Some(plan) = self.slot_plan(view, &Role::Primary { member_slots }).await else { return BTreeMap::new() };
        for step in plan.steps {
            self.take_slot_step(step).await;
        }
        plan.publish
    }

    /// A replica's permanent slots, with the positions the primary published. Copies a
    /// missing logical slot from the leader: says so when it stopped PostgreSQL for that.
    pub(super) async fn sync_replica_slots(&mut self, view: &ClusterView) -> Option<String> {
        if self.dynamic.slots.is_empty() {
            return None;
        }
        let published = view.status.as_ref().map(|s| s.slots.clone()).unwrap_or_default();
        let plan = self.slot_plan(view, &Role::Replica { published }).await?;
        let mut copies = Vec::new();
        for step in plan.steps {
            match step {
                Step::Copy { name } => copies.push(name),
                other => self.take_slot_step(other).await,
            }
        }
        if copies.is_empty() {
            return None;
        }
        self.copy_logical_slots(view, &copies).await
    }

    /// Carries out one step but a copy (a replica batches its copies); logs the outcome.
    async fn take_slot_step(&mut self, step: Step) {
        let result = match &step {
            Step::Drop { name, .. } => self.sql.drop_slot(name).await,
            Step::Create { name, kind: SlotKind::Physical } => self.sql.create_slot(name).await,
            Step::Create { name, kind: SlotKind::Logical { database, plugin } } => {
                self.sql.create_logical_slot(name, database, plugin).await
            }
            Step::Advance { name, database, to } => self.sql.advance_slot(name, database.as_deref(), *to).await,
            Step::Copy { .. } => return,
        };
        match (result, &step) {
            (Ok(()), Step::Drop { name, why }) => tracing::info!("dropped replication slot {name} ({why})"),
            (Ok(()), Step::Create { name, kind }) => tracing::info!("created replication slot {name} ({kind})"),
            (Ok(()), _) => {}
            (Err(e), Step::Advance { name, to, .. }) => {
                tracing::warn!("cannot advance replication slot {name} to {}: {e}", crate::cluster::format_lsn(*to))
            }
            (Err(e), Step::Drop { name, .. } | Step::Create { name, .. } | Step::Copy { name }) => {
                tracing::warn!("cannot {} replication slot {name}: {e}", if matches!(step, Step::Drop { .. }) { "drop" } else { "create" })
            }
        }
    }

    /// Reads the logical slots `names` from the leader, stops PostgreSQL and writes them
    /// into the data directory; the next cycle starts PostgreSQL, which loads them.
    async fn copy_logical_slots(&mut self, view: &ClusterView, names: &[String]) -> Option<String> {
        let leader = view.leader_name()?.to_string();
        let (host, port) = view.leader_member()?.host_port()?;
        let states = match pg_slots::read_slot_states(&self.config.postgresql, &host, port, names).await {
            Ok(s) if s.is_empty() => return None,
            Ok(s) => s,
            Err(e) => {
                tracing::warn!("cannot read logical slots {} from {leader}: {e}", names.join(", "));
                return None;
            }
        };
        self.stop_replica().await;
        if self.pg.postmaster_pid().is_some() {
            return Some(format!("cannot copy logical slots from {leader}: PostgreSQL did not stop"));
        }
        let mut copied = Vec::new();
        for (name, state) in &states {
            match pg_slots::write_slot_state(self.pg.data_dir(), name, state) {
                Ok(()) => copied.push(name.as_str()),
                Err(e) => tracing::warn!("{e}"),
            }
        }
        Some(format!("copied logical slot(s) {} from {leader}: restarting PostgreSQL to load them", copied.join(", ")))
    }
}
