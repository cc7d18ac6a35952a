//! Patroni's standby cluster (`standby_cluster` in `/config` and `bootstrap.dcs`): the
//! whole cluster replicates from another cluster's primary. Owns reading and checking the
//! section and what it means for PostgreSQL: the standby leader's upstream (the remote
//! `host:port`, `primary_slot_name` on it) and its recovery settings
//! (`restore_command`, `archive_cleanup_command`, `recovery_min_apply_delay`). Which node
//! is the standby leader, and that it never promotes, is `ha::decide`'s; the effects are
//! `ha::standby`'s.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::config::Invalid;
use crate::postgres::conf::{quote, Upstream};

/// The default port of the remote primary (libpq's).
const DEFAULT_PORT: u16 = 5432;

/// `standby_cluster:`: where the cluster's standby leader replicates from.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct StandbyCluster {
    /// The remote primary (or any server that streams WAL: a cascading source).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// Its port: a number, or a string of one (Patroni takes both); 5432 by default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<Value>,
    /// A physical slot on the remote the standby leader streams through.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub primary_slot_name: Option<String>,
    /// Fetches WAL from an archive when streaming cannot (or without `host`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restore_command: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub archive_cleanup_command: Option<String>,
    /// A delay (`'1h'`, or milliseconds) the standby leader keeps behind the remote.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recovery_min_apply_delay: Option<Value>,
    /// How the standby cluster's first node is made (default `basebackup` from the
    /// remote): method names whose sections are under the node's `postgresql:`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub create_replica_methods: Vec<String>,
}

impl StandbyCluster {
    /// One clear error for a section that cannot work.
    pub fn check(&self) -> Result<(), Invalid> {
        if self.host.as_deref().is_none_or(str::is_empty) && self.restore_command.as_deref().is_none_or(str::is_empty) {
            return Err(Invalid(
                "standby_cluster needs host (the remote primary, with port) or restore_command (to replay an archive)".into(),
            ));
        }
        self.port()?;
        if let Some(slot) = &self.primary_slot_name {
            if slot.is_empty() || !slot.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_') {
                return Err(Invalid(format!("standby_cluster.primary_slot_name must be lower case letters, digits and _, not {slot:?}")));
            }
        }
        match &self.recovery_min_apply_delay {
            None | Some(Value::String(_)) => {}
            Some(Value::Number(n)) if n.as_u64().is_some() => {}
            Some(other) => {
                return Err(Invalid(format!(
                    "standby_cluster.recovery_min_apply_delay must be a duration ('5min') or milliseconds, not {other}"
                )))
            }
        }
        if self.create_replica_methods.iter().any(String::is_empty) {
            return Err(Invalid("standby_cluster.create_replica_methods holds an empty name".into()));
        }
        Ok(())
    }

    /// The remote's port: the section's, or 5432.
    pub fn port(&self) -> Result<u16, Invalid> {
        let bad = |v: &Value| Invalid(format!("standby_cluster.port must be a port number (1-65535), not {v}"));
        match &self.port {
            None => Ok(DEFAULT_PORT),
            Some(Value::Number(n)) => {
                n.as_u64().and_then(|p| u16::try_from(p).ok()).filter(|p| *p > 0).ok_or_else(|| bad(&Value::Number(n.clone())))
            }
            Some(Value::String(s)) => s.parse::<u16>().ok().filter(|p| *p > 0).ok_or_else(|| bad(&Value::String(s.clone()))),
            Some(other) => Err(bad(other)),
        }
    }

    /// Where the standby leader streams from (None: archive recovery only).
    pub(crate) fn upstream(&self) -> Option<Upstream> {
        let host = self.host.clone().filter(|h| !h.is_empty())?;
        Some(Upstream { host, port: self.port().unwrap_or(DEFAULT_PORT), slot: self.primary_slot_name.clone() })
    }

    /// `host:port`, or "the archive" without a host: what the cycle's sentence names.
    pub fn remote(&self) -> String {
        match self.upstream() {
            Some(up) => format!("{}:{}", up.host, up.port),
            None => "the archive (restore_command)".into(),
        }
    }

    /// The standby leader's recovery settings besides `primary_conninfo`, as
    /// postgresql.conf values.
    pub fn recovery_settings(&self) -> BTreeMap<String, String> {
        let mut settings = BTreeMap::new();
        for (name, value) in [("restore_command", &self.restore_command), ("archive_cleanup_command", &self.archive_cleanup_command)] {
            if let Some(v) = value {
                settings.insert(name.to_string(), quote(v));
            }
        }
        match &self.recovery_min_apply_delay {
            Some(Value::String(s)) => settings.insert("recovery_min_apply_delay".into(), quote(s)),
            Some(other @ Value::Number(_)) => settings.insert("recovery_min_apply_delay".into(), quote(&other.to_string())),
            _ => None,
        };
        settings
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    /// The section as `/config` holds it, read and checked (None: no standby cluster).
    fn read(value: Value) -> Result<Option<StandbyCluster>, Invalid> {
        crate::config::DynamicConfig::from_json(&json!({ "standby_cluster": value })).map(|c| c.standby_cluster)
    }

    fn section(value: Value) -> StandbyCluster {
        read(value).expect("valid").expect("present")
    }

    fn err(value: Value) -> String {
        read(value).expect_err("invalid").0
    }

    #[test]
    fn a_section_with_a_host_streams_from_it_through_its_slot() {
        let s = section(json!({"host": "10.0.0.1", "port": "5433", "primary_slot_name": "dr_site"}));
        assert_eq!(s.upstream(), Some(Upstream { host: "10.0.0.1".into(), port: 5433, slot: Some("dr_site".into()) }));
        assert_eq!(s.remote(), "10.0.0.1:5433");
        assert!(s.recovery_settings().is_empty());
        let s = section(json!({"host": "h"}));
        assert_eq!(s.upstream().map(|u| (u.port, u.slot)), Some((5432, None)), "libpq's default port, no slot");
    }

    #[test]
    fn recovery_settings_are_quoted_for_postgresql_conf() {
        let s = section(json!({
            "restore_command": "cp /archive/%f '%p'",
            "archive_cleanup_command": "pg_archivecleanup /archive %r",
            "recovery_min_apply_delay": 60000,
        }));
        assert_eq!(s.upstream(), None, "archive recovery only");
        assert_eq!(s.remote(), "the archive (restore_command)");
        let settings = s.recovery_settings();
        assert_eq!(settings["restore_command"], "'cp /archive/%f ''%p'''");
        assert_eq!(settings["archive_cleanup_command"], "'pg_archivecleanup /archive %r'");
        assert_eq!(settings["recovery_min_apply_delay"], "'60000'");
        let s = section(json!({"host": "h", "recovery_min_apply_delay": "5min"}));
        assert_eq!(s.recovery_settings()["recovery_min_apply_delay"], "'5min'");
    }

    #[test]
    fn null_is_no_standby_cluster_and_bad_sections_get_one_error() {
        assert_eq!(read(Value::Null).expect("valid"), None, "the section removed");
        assert!(err(json!({})).contains("needs host"));
        assert!(err(json!({"port": 5432})).contains("needs host"));
        assert!(err(json!("10.0.0.1")).contains("expected struct StandbyCluster"));
        assert!(err(json!({"host": "h", "port": 0})).contains("port must be a port number"));
        assert!(err(json!({"host": "h", "port": "x"})).contains("port must be a port number"));
        assert!(err(json!({"host": "h", "port": 70000})).contains("port must be a port number"));
        assert!(err(json!({"host": "h", "port": true})).contains("port must be a port number"));
        assert!(err(json!({"host": "h", "primary_slot_name": "DR-site"})).contains("primary_slot_name must be lower case"));
        assert!(err(json!({"host": "h", "recovery_min_apply_delay": -1})).contains("recovery_min_apply_delay must be"));
        assert!(err(json!({"host": "h", "create_replica_methods": [""]})).contains("empty name"));
        assert!(err(json!({"host": "h", "hots": 1})).contains("unknown field `hots`"));
    }
}
