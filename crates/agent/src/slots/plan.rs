//! The slot decision: from what the configuration wants, the members, the slots this
//! PostgreSQL has and (on a replica) the positions the primary published, the steps to
//! take this cycle. Pure: the caller lists the slots and carries the steps out.

use std::collections::BTreeMap;

use super::{IgnoreSlots, PermanentSlots, SlotKind};

/// Which side of replication this member is on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Role {
    /// The primary: `member_slots` are the physical slots of the other members (empty
    /// when `use_slots` is off).
    Primary { member_slots: Vec<String> },
    /// A replica: `published` is `/status`'s `slots`, the primary's positions.
    Replica { published: BTreeMap<String, u64> },
}

/// A slot PostgreSQL has.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Existing {
    pub name: String,
    pub kind: SlotKind,
    pub active: bool,
    /// A logical slot's `confirmed_flush_lsn`, a physical one's `restart_lsn`.
    pub position: Option<u64>,
}

/// One thing to do, in [`Plan::steps`]'s order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    Drop {
        name: String,
        why: &'static str,
    },
    Create {
        name: String,
        kind: SlotKind,
    },
    /// `pg_replication_slot_advance` (in `database` for a logical slot).
    Advance {
        name: String,
        database: Option<String>,
        to: u64,
    },
    /// Copy a logical slot from the primary (a replica; PostgreSQL restarts to load it).
    Copy {
        name: String,
    },
}

/// What a member does about its slots this cycle.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Plan {
    /// Drops first (a slot of the wrong kind is dropped and created again), then
    /// creations, advances and copies.
    pub steps: Vec<Step>,
    /// The primary's permanent slots' positions, for `/status`.
    pub publish: BTreeMap<String, u64>,
    /// Configured slots this member leaves alone, and why.
    pub warnings: Vec<String>,
}

/// The configuration a plan follows: `/config`'s `slots` and `ignore_slots`.
#[derive(Debug, Clone, Copy)]
pub struct Wanted<'a> {
    pub permanent: &'a PermanentSlots,
    pub ignore: &'a IgnoreSlots,
}

/// The steps for member `me_slot` (its own slot name) with `members` (every member's
/// slot name, its own included).
pub fn plan(role: &Role, config: Wanted, me_slot: &str, members: &[String], existing: &[Existing]) -> Plan {
    let mut out = Plan::default();
    let mut wanted: BTreeMap<&str, SlotKind> = BTreeMap::new();
    if let Role::Primary { member_slots } = role {
        wanted.extend(member_slots.iter().map(|n| (n.as_str(), SlotKind::Physical)));
    }
    for (name, kind) in &config.permanent.0 {
        if kind.is_logical() && members.contains(name) {
            out.warnings.push(format!("permanent slot {name} is logical, but a member replicates through a physical slot of that name"));
        } else if name != me_slot {
            wanted.insert(name, kind.clone());
        }
    }
    let mut later = Vec::new();
    for (name, kind) in &wanted {
        let found = existing.iter().find(|e| e.name == *name);
        match found {
            Some(e) if e.kind != *kind && e.active => {
                out.warnings.push(format!("slot {name} is not the configured kind, but it is in use: left alone"));
            }
            Some(e) if e.kind != *kind => {
                out.steps.push(Step::Drop { name: name.to_string(), why: "it is not the configured kind" });
                if matches!(role, Role::Primary { .. }) || !kind.is_logical() {
                    later.push(Step::Create { name: name.to_string(), kind: kind.clone() });
                }
            }
            Some(e) => {
                let permanent = config.permanent.0.contains_key(*name);
                match role {
                    Role::Primary { .. } => {
                        if let (true, Some(at)) = (permanent, e.position) {
                            out.publish.insert(name.to_string(), at);
                        }
                    }
                    Role::Replica { published } => match (published.get(*name), e.position, kind) {
                        (Some(&to), Some(at), _) if e.active || to == at => {}
                        (Some(&to), Some(at), SlotKind::Logical { database, .. }) if to > at => {
                            later.push(Step::Advance { name: name.to_string(), database: Some(database.clone()), to });
                        }
                        // Ahead of the primary's (a rewound old primary's own slot, or a copy
                        // advanced under a primary that has since failed over): promoted, it
                        // would skip changes the consumer never confirmed. Copied again next.
                        (Some(_), Some(_), SlotKind::Logical { .. }) => {
                            out.steps.push(Step::Drop { name: name.to_string(), why: "it is ahead of the primary's" });
                        }
                        (Some(&to), Some(at), SlotKind::Physical) if to > at => {
                            later.push(Step::Advance { name: name.to_string(), database: None, to });
                        }
                        _ => {}
                    },
                }
            }
            None => match (role, kind) {
                (Role::Replica { published }, SlotKind::Logical { .. }) => {
                    // Only once the primary has it (and says where it is).
                    if published.contains_key(*name) {
                        later.push(Step::Copy { name: name.to_string() });
                    }
                }
                _ => later.push(Step::Create { name: name.to_string(), kind: kind.clone() }),
            },
        }
    }
    for e in existing {
        if !wanted.contains_key(e.name.as_str()) && !e.active && !config.ignore.ignored(&e.name, &e.kind) {
            out.steps.push(Step::Drop { name: e.name.clone(), why: "neither a member's nor a permanent slot (nor in ignore_slots)" });
        }
    }
    out.steps.extend(later);
    out
}
