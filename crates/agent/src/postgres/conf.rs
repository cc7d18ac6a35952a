//! The files the agent owns in and next to the data directory: `raftgres.conf`
//! (included at the end of postgresql.conf, so its settings win; what goes in it is
//! `params`), `pg_hba.conf`,
//! `standby.signal` and the password file libpq and the PostgreSQL programs use.

use std::collections::BTreeMap;
use std::path::Path;

use super::{fingerprint, write_private, PgError, PgResult};
use crate::config::PostgresConfig;

/// The file the agent rewrites; postgresql.conf includes it.
pub const AGENT_CONF: &str = "raftgres.conf";

/// Where a replica streams from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upstream {
    pub host: String,
    pub port: u16,
    /// Replication slot on the upstream (None when slots are off).
    pub slot: Option<String>,
}

/// A physical slot name for a member: lower case, `[a-z0-9_]`, as Patroni makes them.
pub fn slot_name(member: &str) -> String {
    member.chars().map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_lowercase() } else { '_' }).collect()
}

pub fn quote(value: &str) -> String {
    format!("'{}'", value.replace('\'', "''"))
}

fn pgpass_escape(value: &str) -> String {
    value.replace('\\', "\\\\").replace(':', "\\:")
}

/// The password file for the agent's and the PostgreSQL programs' connections.
pub fn write_pgpass(config: &PostgresConfig) -> PgResult<()> {
    let auth = &config.authentication;
    let text = [&auth.superuser, &auth.replication]
        .iter()
        .map(|c| format!("*:*:*:{}:{}\n", pgpass_escape(&c.username), pgpass_escape(&c.password)))
        .collect::<String>();
    write_private(&config.pgpass_path(), &text)
}

/// Renders a YAML/JSON scalar as a postgresql.conf value.
pub fn render_value(value: &serde_json::Value) -> String {
    match value {
        serde_json::Value::Bool(true) => "on".into(),
        serde_json::Value::Bool(false) => "off".into(),
        serde_json::Value::String(s) => quote(s),
        other => quote(&other.to_string()),
    }
}

/// PostgreSQL's recovery settings (Patroni's list). The agent changes them on every
/// promotion and every new upstream, and they only act during recovery, so a change to
/// one that waits for a restart (`recovery_target_timeline` leaving a freshly promoted
/// primary's settings) is no reason to restart.
pub(crate) const RECOVERY_PARAMETERS: [&str; 16] = [
    "archive_cleanup_command",
    "restore_command",
    "recovery_end_command",
    "recovery_target",
    "recovery_target_name",
    "recovery_target_time",
    "recovery_target_xid",
    "recovery_target_lsn",
    "recovery_target_inclusive",
    "recovery_target_timeline",
    "recovery_target_action",
    "recovery_min_apply_delay",
    "primary_conninfo",
    "primary_slot_name",
    "promote_trigger_file",
    "trigger_file",
];

/// Whether PostgreSQL needs a restart, as Patroni counts it: some setting other than a
/// recovery setting waits for one. `waiting` are the names `pg_settings` marks
/// `pending_restart`.
pub fn pending_restart<S: AsRef<str>>(waiting: &[S]) -> bool {
    waiting.iter().any(|name| !RECOVERY_PARAMETERS.contains(&name.as_ref().to_ascii_lowercase().as_str()))
}

/// Writes `raftgres.conf` and makes sure postgresql.conf includes it. Returns true when
/// the content changed (the caller reloads).
pub fn write_server_conf(data_dir: &Path, parameters: &BTreeMap<String, String>) -> PgResult<bool> {
    let io = |what: &str, e: std::io::Error| PgError::Io(format!("cannot {what}: {e}"));
    let mut text = String::from("# Written by raftgres; edits are overwritten. Set parameters in the raftgres config or /config.\n");
    for (k, v) in parameters {
        text.push_str(&format!("{k} = {v}\n"));
    }
    let changed = write_if_changed(&data_dir.join(AGENT_CONF), &text).map_err(|e| io("write raftgres.conf", e))?;
    let main = data_dir.join("postgresql.conf");
    let include = format!("include_if_exists = '{AGENT_CONF}'");
    if !fingerprint::still_confirmed(&main, &include) {
        let current = std::fs::read_to_string(&main).unwrap_or_default();
        if !current.lines().any(|l| l.trim() == include) {
            write_atomic(&main, &format!("{current}\n{include}\n")).map_err(|e| io("write postgresql.conf", e))?;
        }
        fingerprint::confirm(&main, &include);
    }
    Ok(changed)
}

/// pg_hba.conf: the configured lines, or: local trust (the socket is private to the
/// node's OS user), scram for replication and everything else over TCP.
/// Returns true when the file changed (the caller reloads).
pub fn write_hba(config: &PostgresConfig) -> PgResult<bool> {
    let lines = if config.pg_hba.is_empty() {
        let repl = &config.authentication.replication.username;
        vec![
            "local all all trust".to_string(),
            format!("host replication {repl} 0.0.0.0/0 scram-sha-256"),
            format!("host replication {repl} ::/0 scram-sha-256"),
            "host all all 0.0.0.0/0 scram-sha-256".to_string(),
            "host all all ::/0 scram-sha-256".to_string(),
        ]
    } else {
        config.pg_hba.clone()
    };
    let text = format!("# Written by raftgres from postgresql.pg_hba.\n{}\n", lines.join("\n"));
    write_if_changed(&config.data_dir.join("pg_hba.conf"), &text).map_err(|e| PgError::Io(format!("cannot write pg_hba.conf: {e}")))
}

/// Replaces `path` with `text` in one step (a temporary file renamed over it), so
/// PostgreSQL, a reload or a concurrent base backup never reads a half-written file.
fn write_atomic(path: &Path, text: &str) -> std::io::Result<()> {
    let tmp = path.with_extension("raftgres-tmp");
    std::fs::write(&tmp, text)?;
    std::fs::rename(&tmp, path)
}

/// [`write_atomic`] only when the content differs (the HA loop calls this every cycle,
/// and reads the file only when its [fingerprint] changed since it last held `text`);
/// true when it wrote.
fn write_if_changed(path: &Path, text: &str) -> std::io::Result<bool> {
    if fingerprint::still_confirmed(path, text) {
        return Ok(false);
    }
    let changed = !std::fs::read_to_string(path).is_ok_and(|old| old == text);
    if changed {
        write_atomic(path, text)?;
    }
    fingerprint::confirm(path, text);
    Ok(changed)
}

/// Creates or removes `standby.signal`.
pub fn set_standby(data_dir: &Path, standby: bool) -> PgResult<()> {
    set_signal(data_dir, "standby.signal", standby)
}

/// Creates or removes `recovery.signal` (archive recovery, then promotion).
pub fn set_recovery(data_dir: &Path, recovery: bool) -> PgResult<()> {
    set_signal(data_dir, "recovery.signal", recovery)
}

/// Creates (empty) or removes `data_dir/name`; an existing one is left as it is.
fn set_signal(data_dir: &Path, name: &str, present: bool) -> PgResult<()> {
    let path = data_dir.join(name);
    let result = if present && path.exists() {
        Ok(())
    } else if present {
        std::fs::write(&path, "")
    } else {
        std::fs::remove_file(&path).or_else(|e| if e.kind() == std::io::ErrorKind::NotFound { Ok(()) } else { Err(e) })
    };
    result.map_err(|e| PgError::Io(format!("cannot update {}: {e}", path.display())))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> PostgresConfig {
        serde_norway::from_str(
            "listen: 127.0.0.1:5433\ndata_dir: /x/node2/pgdata\nparameters: {max_connections: 50, shared_buffers: 64MB}\n\
             authentication: {superuser: {username: postgres, password: a}, replication: {username: rep, password: 'p:w'}}\n",
        )
        .expect("yaml")
    }

    #[test]
    fn recovery_settings_do_not_make_a_restart_pending() {
        let none: [&str; 0] = [];
        assert!(!pending_restart(&none));
        assert!(!pending_restart(&["recovery_target_timeline"]), "a freshly promoted primary lost it: no restart");
        assert!(!pending_restart(&["primary_conninfo", "primary_slot_name", "restore_command", "Recovery_Min_Apply_Delay"]));
        assert!(pending_restart(&["recovery_target_timeline", "shared_buffers"]));
        assert!(pending_restart(&["max_connections"]));
    }

    #[test]
    fn a_promoted_primary_changes_only_recovery_settings() {
        let up = Upstream { host: "127.0.0.1".into(), port: 5432, slot: Some(slot_name("node1")) };
        let replica = super::super::params::parameters(&config(), "node2", &BTreeMap::new(), Some(&up));
        let primary = super::super::params::parameters(&config(), "node2", &BTreeMap::new(), None);
        let changed: Vec<&String> = replica.keys().filter(|k| primary.get(*k) != replica.get(*k)).collect();
        assert_eq!(changed, ["primary_conninfo", "primary_slot_name", "recovery_target_timeline"]);
        assert!(!pending_restart(&changed), "promotion alone leaves no restart pending");
    }

    #[test]
    fn a_settled_file_is_not_rewritten_and_an_edit_to_it_is_undone() {
        use std::time::Duration;
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("postgresql.conf"), "max_connections = 100\n").expect("write");
        let ours = dir.path().join(AGENT_CONF);
        let p = BTreeMap::from([("port".to_string(), "5432".to_string())]);
        assert!(write_server_conf(dir.path(), &p).expect("write"));
        fingerprint::tests::age(&ours, Duration::from_secs(10));
        fingerprint::tests::age(&dir.path().join("postgresql.conf"), Duration::from_secs(10));
        assert!(!write_server_conf(dir.path(), &p).expect("write"), "unchanged");
        let settled = fingerprint::Fingerprint::of(&ours);
        assert!(!write_server_conf(dir.path(), &p).expect("write"), "unchanged");
        assert_eq!(fingerprint::Fingerprint::of(&ours), settled, "not written again");
        // Someone else's edit gives the file another fingerprint: it is read and undone.
        std::fs::write(&ours, "port = 6543\n").expect("edit");
        fingerprint::tests::age(&ours, Duration::from_secs(20));
        assert!(write_server_conf(dir.path(), &p).expect("write"), "the edit is undone");
        assert!(std::fs::read_to_string(&ours).expect("read").contains("port = 5432"));
        std::fs::write(dir.path().join("postgresql.conf"), "max_connections = 100\n").expect("include removed");
        fingerprint::tests::age(&dir.path().join("postgresql.conf"), Duration::from_secs(20));
        write_server_conf(dir.path(), &p).expect("write");
        let main = std::fs::read_to_string(dir.path().join("postgresql.conf")).expect("read");
        assert_eq!(main.matches("include_if_exists").count(), 1, "the include is back");
    }

    #[test]
    fn files_are_written_once_and_included() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("postgresql.conf"), "max_connections = 100\n").expect("write");
        let p = BTreeMap::from([("port".to_string(), "5432".to_string())]);
        assert!(write_server_conf(dir.path(), &p).expect("write"));
        assert!(!write_server_conf(dir.path(), &p).expect("write"), "unchanged");
        let main = std::fs::read_to_string(dir.path().join("postgresql.conf")).expect("read");
        assert_eq!(main.matches("include_if_exists").count(), 1);
        set_standby(dir.path(), true).expect("signal");
        assert!(dir.path().join("standby.signal").exists());
        set_standby(dir.path(), false).expect("remove");
        set_standby(dir.path(), false).expect("remove twice");
        assert_eq!(pgpass_escape("p:w\\"), "p\\:w\\\\");
    }
}
