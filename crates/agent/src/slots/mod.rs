//! Permanent replication slots (`/config` `slots`, `ignore_slots`), as Patroni has them:
//! what the configuration says ([`PermanentSlots`], [`IgnoreSlots`], read and checked
//! here with one error per problem), and what a member does about it ([`plan`]: a pure function from the
//! configuration, the members and the slots PostgreSQL has to the creations, drops,
//! advances and copies to make). The effects are `ha::slots`'s; the SQL is
//! `postgres::slots`'s.
//!
//! Patroni's rules kept here: a permanent slot exists on the primary and on every
//! replica (so a consumer finds it after a failover); a replica copies a logical slot
//! from the primary (PostgreSQL 15 cannot create one on a standby) and advances every
//! permanent slot to the position the primary publishes in `/status` (a logical copy
//! ahead of it is dropped and copied again, so a promoted replica never skips changes
//! its consumer did not confirm); a slot neither
//! wanted nor matched by `ignore_slots` is dropped once inactive. A physical permanent
//! slot named like a member's slot is that member's slot kept even while the member is
//! away; a logical one with such a name is refused.

mod plan;

pub use plan::{plan, Existing, Plan, Role, Step, Wanted};

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{json, Map, Value};

use crate::config::Invalid;

/// PostgreSQL's longest slot name (NAMEDATALEN - 1).
const MAX_NAME: usize = 63;

/// What kind of slot, and for a logical one its database and output plugin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SlotKind {
    Physical,
    Logical { database: String, plugin: String },
}

impl SlotKind {
    pub fn is_logical(&self) -> bool {
        matches!(self, SlotKind::Logical { .. })
    }
}

impl std::fmt::Display for SlotKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SlotKind::Physical => f.write_str("physical"),
            SlotKind::Logical { database, plugin } => write!(f, "logical, {plugin} in database {database}"),
        }
    }
}

/// One `ignore_slots` entry: a slot matches when every given property is equal.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct IgnoreRule {
    pub name: Option<String>,
    /// `physical` or `logical`.
    pub kind: Option<String>,
    pub database: Option<String>,
    pub plugin: Option<String>,
}

impl IgnoreRule {
    fn matches(&self, name: &str, kind: &SlotKind) -> bool {
        let (type_name, database, plugin) = match kind {
            SlotKind::Physical => ("physical", None, None),
            SlotKind::Logical { database, plugin } => ("logical", Some(database.as_str()), Some(plugin.as_str())),
        };
        let same = |rule: &Option<String>, actual: Option<&str>| rule.as_deref().is_none_or(|r| Some(r) == actual);
        same(&self.name, Some(name)) && same(&self.kind, Some(type_name)) && same(&self.database, database) && same(&self.plugin, plugin)
    }
}

/// `/config`'s `slots`: the permanent slots by name, checked ([`PermanentSlots::read`]).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PermanentSlots(pub BTreeMap<String, SlotKind>);

impl PermanentSlots {
    /// Reads `slots` (absent or null: none).
    pub fn read(slots: Option<&Value>) -> Result<Self, Invalid> {
        let mut permanent = BTreeMap::new();
        match slots {
            None | Some(Value::Null) => {}
            Some(Value::Object(map)) => {
                for (name, value) in map {
                    check_name(&format!("slots.{name}"), name)?;
                    permanent.insert(name.clone(), read_slot(name, value)?);
                }
            }
            Some(other) => {
                return Err(Invalid(format!(
                    "slots must be a mapping of slot names to {{type: physical}} or {{type: logical, database: DB, plugin: PLUGIN}}, not {other}"
                )))
            }
        }
        Ok(Self(permanent))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// True when any permanent slot is logical (replicas then need `hot_standby_feedback`
    /// and every node `wal_level = logical`).
    pub fn has_logical(&self) -> bool {
        self.0.values().any(SlotKind::is_logical)
    }

    /// A logical permanent slot may not take a member's physical slot name.
    pub fn check_members<'a>(&self, members: impl IntoIterator<Item = &'a String>) -> Result<(), Invalid> {
        for member in members {
            let taken = crate::postgres::conf::slot_name(member);
            if self.0.get(&taken).is_some_and(SlotKind::is_logical) {
                return Err(Invalid(format!(
                    "slots.{taken} is logical, but member {member} replicates through a physical slot of that name: rename the slot"
                )));
            }
        }
        Ok(())
    }
}

/// `/config`'s `ignore_slots`, checked ([`IgnoreSlots::read`]).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct IgnoreSlots(pub Vec<IgnoreRule>);

impl IgnoreSlots {
    /// Reads `ignore_slots` (absent or null: none).
    pub fn read(ignore: Option<&Value>) -> Result<Self, Invalid> {
        match ignore {
            None | Some(Value::Null) => Ok(Self::default()),
            Some(Value::Array(items)) => Ok(Self(items.iter().enumerate().map(|(i, item)| read_rule(i, item)).collect::<Result<_, _>>()?)),
            Some(other) => Err(Invalid(format!("ignore_slots must be a list of {{name, type, database, plugin}} matchers, not {other}"))),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn ignored(&self, name: &str, kind: &SlotKind) -> bool {
        self.0.iter().any(|r| r.matches(name, kind))
    }
}

impl<'de> Deserialize<'de> for PermanentSlots {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Self::read(Some(&Value::deserialize(d)?)).map_err(|e| serde::de::Error::custom(e.0))
    }
}

impl<'de> Deserialize<'de> for IgnoreSlots {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Self::read(Some(&Value::deserialize(d)?)).map_err(|e| serde::de::Error::custom(e.0))
    }
}

impl Serialize for PermanentSlots {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let map: Map<String, Value> = self
            .0
            .iter()
            .map(|(name, kind)| {
                let value = match kind {
                    SlotKind::Physical => json!({"type": "physical"}),
                    SlotKind::Logical { database, plugin } => json!({"type": "logical", "database": database, "plugin": plugin}),
                };
                (name.clone(), value)
            })
            .collect();
        map.serialize(s)
    }
}

impl Serialize for IgnoreSlots {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let rules: Vec<Map<String, Value>> = self
            .0
            .iter()
            .map(|r| {
                [("name", &r.name), ("type", &r.kind), ("database", &r.database), ("plugin", &r.plugin)]
                    .into_iter()
                    .filter_map(|(k, v)| v.as_ref().map(|v| (k.to_string(), Value::String(v.clone()))))
                    .collect()
            })
            .collect();
        rules.serialize(s)
    }
}

/// A valid PostgreSQL slot name: `[a-z0-9_]`, 1 to 63 characters.
pub fn check_name(path: &str, name: &str) -> Result<(), Invalid> {
    let valid =
        !name.is_empty() && name.len() <= MAX_NAME && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    if valid {
        Ok(())
    } else {
        Err(Invalid(format!(
            "{path}: {name:?} is not a replication slot name (lower case letters, digits and underscores, 1 to {MAX_NAME} of them)"
        )))
    }
}

fn text(path: &str, value: &Value) -> Result<String, Invalid> {
    match value {
        Value::String(s) if !s.is_empty() => Ok(s.clone()),
        other => Err(Invalid(format!("{path} must be a non-empty string, not {other}"))),
    }
}

fn fields<'a>(path: &str, value: &'a Value, allowed: &[&str]) -> Result<&'a Map<String, Value>, Invalid> {
    let map = value.as_object().ok_or_else(|| Invalid(format!("{path} must be a mapping, not {value}")))?;
    match map.keys().find(|k| !allowed.contains(&k.as_str())) {
        Some(k) => Err(Invalid(format!("{path}.{k} is not a known setting ({})", allowed.join(", ")))),
        None => Ok(map),
    }
}

fn read_type(path: &str, value: &Value) -> Result<String, Invalid> {
    match text(path, value)?.as_str() {
        kind @ ("physical" | "logical") => Ok(kind.to_string()),
        other => Err(Invalid(format!("{path} must be physical or logical, not {other:?}"))),
    }
}

/// One slot of `slots`: a missing `type` is logical when a database or plugin is given.
fn read_slot(name: &str, value: &Value) -> Result<SlotKind, Invalid> {
    let path = format!("slots.{name}");
    let empty = Value::Object(Map::new());
    let map = fields(&path, if value.is_null() { &empty } else { value }, &["type", "database", "plugin"])?;
    let get = |k: &str| map.get(k).filter(|v| !v.is_null());
    let kind = match get("type") {
        Some(v) => read_type(&format!("{path}.type"), v)?,
        None if get("database").is_some() || get("plugin").is_some() => "logical".into(),
        None => "physical".into(),
    };
    if kind == "physical" {
        if get("database").is_some() || get("plugin").is_some() {
            return Err(Invalid(format!("{path}: a physical slot takes no database or plugin (add type: logical for a logical one)")));
        }
        return Ok(SlotKind::Physical);
    }
    match (get("database"), get("plugin")) {
        (Some(d), Some(p)) => {
            Ok(SlotKind::Logical { database: text(&format!("{path}.database"), d)?, plugin: text(&format!("{path}.plugin"), p)? })
        }
        _ => Err(Invalid(format!("{path}: a logical slot needs a database and a plugin (e.g. database: postgres, plugin: pgoutput)"))),
    }
}

fn read_rule(i: usize, value: &Value) -> Result<IgnoreRule, Invalid> {
    let path = format!("ignore_slots[{i}]");
    let map = fields(&path, value, &["name", "type", "database", "plugin"])?;
    let get = |k: &str| -> Result<Option<String>, Invalid> {
        map.get(k).filter(|v| !v.is_null()).map(|v| text(&format!("{path}.{k}"), v)).transpose()
    };
    let rule = IgnoreRule {
        name: get("name")?,
        kind: map.get("type").filter(|v| !v.is_null()).map(|v| read_type(&format!("{path}.type"), v)).transpose()?,
        database: get("database")?,
        plugin: get("plugin")?,
    };
    if rule == IgnoreRule::default() {
        return Err(Invalid(format!("{path} matches every slot: give at least one of name, type, database, plugin")));
    }
    Ok(rule)
}

#[cfg(test)]
mod tests;
