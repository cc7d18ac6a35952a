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
    /// The plan for this member; None when the slots cannot be listed (reported).
    async fn slot_plan(&mut self, view: &ClusterView, role: &Role) -> Option<Plan> {
        let existing = match self.sql.slots().await {
            Ok(s) => s,
            Err(e) => {
                self.report_slot_problems(vec![format!("cannot list replication slots: {e}")]);
                return None;
            }
        };
        let members: Vec<String> = view.members.keys().map(|n| conf::slot_name(n)).collect();
        let wanted = Wanted { permanent: &self.dynamic.slots, ignore: &self.dynamic.ignore_slots };
        Some(plan(role, wanted, &conf::slot_name(&self.config.name), &members, &existing))
    }

    /// Logs what went wrong with the slots this cycle, when it is not what went wrong
    /// the cycle before (a slot that cannot be created fails every cycle alike).
    fn report_slot_problems(&mut self, problems: Vec<String>) {
        if problems != self.slot_problems {
            for p in &problems {
                tracing::warn!("{p}");
            }
            self.slot_problems = problems;
        }
    }

    /// The primary's slots; returns the permanent slots' positions for `/status`.
    pub(super) async fn sync_primary_slots(&mut self, view: &ClusterView) -> BTreeMap<String, u64> {
        let member_slots = view.slot_members(&self.config.name).into_iter().map(conf::slot_name).collect();
        let Some(plan) = self.slot_plan(view, &Role::Primary { member_slots }).await else { return BTreeMap::new() };
        let mut problems = plan.warnings;
        for step in plan.steps {
            problems.extend(self.take_slot_step(step).await);
        }
        self.report_slot_problems(problems);
        plan.publish
    }

    /// A replica's permanent slots, with the positions the primary published. Copies a
    /// missing logical slot from the leader: says so when it stopped PostgreSQL for that.
    pub(super) async fn sync_replica_slots(&mut self, view: &ClusterView) -> Option<String> {
        let published = view.status.as_ref().map(|s| s.slots.clone()).unwrap_or_default();
        let plan = self.slot_plan(view, &Role::Replica { published }).await?;
        let (mut copies, mut problems) = (Vec::new(), plan.warnings);
        for step in plan.steps {
            match step {
                Step::Copy { name } => copies.push(name),
                other => problems.extend(self.take_slot_step(other).await),
            }
        }
        let copied = if copies.is_empty() { Ok(None) } else { self.copy_logical_slots(view, &copies).await };
        let sentence = copied.unwrap_or_else(|problem| {
            problems.push(problem);
            None
        });
        self.report_slot_problems(problems);
        sentence
    }

    /// Carries out one step but a copy (a replica batches its copies): logs what it
    /// changed, returns what went wrong.
    async fn take_slot_step(&mut self, step: Step) -> Option<String> {
        let result = match &step {
            Step::Drop { name, .. } => self.sql.drop_slot(name).await,
            Step::Create { name, kind: SlotKind::Physical } => self.sql.create_slot(name).await,
            Step::Create { name, kind: SlotKind::Logical { database, plugin } } => {
                self.sql.create_logical_slot(name, database, plugin).await
            }
            Step::Advance { name, database, to } => self.sql.advance_slot(name, database.as_deref(), *to).await,
            Step::Copy { .. } => return None,
        };
        match (result, step) {
            (Ok(()), Step::Drop { name, why }) => tracing::info!("dropped replication slot {name} ({why})"),
            (Ok(()), Step::Create { name, kind }) => tracing::info!("created replication slot {name} ({kind})"),
            (Ok(()), _) => {}
            (Err(e), Step::Advance { name, to, .. }) => {
                return Some(format!("cannot advance replication slot {name} to {}: {e}", crate::cluster::format_lsn(to)))
            }
            (Err(e), Step::Drop { name, .. }) => return Some(format!("cannot drop replication slot {name}: {e}")),
            (Err(e), Step::Create { name, .. } | Step::Copy { name }) => {
                return Some(format!("cannot create replication slot {name}: {e}"))
            }
        }
        None
    }

    /// Reads the logical slots `names` from the leader, stops PostgreSQL and writes them
    /// into the data directory; the next cycle starts PostgreSQL, which loads them.
    /// Says so when it stopped PostgreSQL; an error when the leader could not be read.
    async fn copy_logical_slots(&mut self, view: &ClusterView, names: &[String]) -> Result<Option<String>, String> {
        let Some((leader, (host, port))) = view.leader_name().zip(view.leader_member().and_then(|m| m.host_port())) else {
            return Ok(None);
        };
        let states = pg_slots::read_slot_states(&self.config.postgresql, &host, port, names)
            .await
            .map_err(|e| format!("cannot read logical slots {} from {leader}: {e}", names.join(", ")))?;
        if states.is_empty() {
            return Ok(None);
        }
        self.stop_replica().await;
        if self.pg.postmaster_pid().is_some() {
            return Ok(Some(format!("cannot copy logical slots from {leader}: PostgreSQL did not stop")));
        }
        let (mut copied, mut failed) = (Vec::new(), Vec::new());
        for (name, state) in &states {
            match pg_slots::write_slot_state(self.pg.data_dir(), name, state) {
                Ok(()) => copied.push(name.as_str()),
                Err(e) => failed.push(e.to_string()),
            }
        }
        let copied =
            if copied.is_empty() { "copied no logical slot".to_string() } else { format!("copied logical slot(s) {}", copied.join(", ")) };
        let failed = if failed.is_empty() { String::new() } else { format!(" ({})", failed.join("; ")) };
        Ok(Some(format!("{copied} from {leader}{failed}: restarting PostgreSQL to load them")))
    }
}
