//! How the first member creates the cluster (Patroni's `bootstrap.method`): initdb, or a
//! custom method (`bootstrap.NAME: {command, keep_existing_recovery_conf, no_params,
//! recovery_conf}`, every other key a `--key=value` option) that fills the data
//! directory from a backup, after which PostgreSQL recovers with `recovery_conf` (point
//! in time recovery) and is promoted. Then `bootstrap.post_bootstrap` (or `post_init`)
//! runs with a connection string. Owns reading those keys and the command's arguments;
//! `ha::bootstrap` runs them.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::config::Invalid;
use crate::postgres::conf::{render_value, RECOVERY_PARAMETERS};
use crate::replica_methods::{flag, options, scalar, string};

/// Settings the agent writes itself during a custom bootstrap's recovery (it is the
/// cluster's first member: nothing to stream from).
const NOT_IN_RECOVERY_CONF: [&str; 2] = ["primary_conninfo", "primary_slot_name"];

/// A custom bootstrap method.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CustomBootstrap {
    pub name: String,
    /// What runs (through `sh -c`, so it may hold its own arguments).
    pub command: String,
    /// Leave the recovery settings and signal files the command wrote (pgBackRest and
    /// Barman write their own); otherwise they are removed unless `recovery_conf` is set.
    pub keep_existing_recovery_conf: bool,
    /// `--scope` and `--datadir` are not passed.
    pub no_params: bool,
    /// Recovery settings, as postgresql.conf values, written with `recovery.signal`.
    pub recovery_conf: BTreeMap<String, String>,
    /// Every other key, passed as `--key=value`.
    pub options: BTreeMap<String, String>,
}

/// `bootstrap.method`, its section and the post-bootstrap script, read and checked.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct BootstrapPlan {
    /// `None`: initdb.
    pub method: Option<CustomBootstrap>,
    /// Runs with a connection string once PostgreSQL is the new cluster's primary.
    pub post_bootstrap: Option<String>,
}

impl BootstrapPlan {
    /// `sections`: the `bootstrap` keys that are no setting of their own; only the one
    /// `method` names may be there.
    pub fn read(
        method: Option<&str>,
        post_bootstrap: Option<String>,
        post_init: Option<String>,
        mut sections: BTreeMap<String, Value>,
    ) -> Result<Self, Invalid> {
        let method = match method {
            None | Some("initdb") => None,
            Some(name) => {
                let section = sections.remove(name).ok_or_else(|| {
                    Invalid(format!("bootstrap.method is {name:?} but there is no bootstrap.{name} section (with its command)"))
                })?;
                Some(CustomBootstrap::read(name, &section)?)
            }
        };
        if let Some(unknown) = sections.keys().next() {
            return Err(Invalid(format!(
                "bootstrap.{unknown} is not a known setting (a custom bootstrap's section must be named by bootstrap.method)"
            )));
        }
        if post_bootstrap.is_some() && post_init.is_some() {
            return Err(Invalid("bootstrap.post_bootstrap and bootstrap.post_init are the same script: give one".into()));
        }
        let post_bootstrap = post_bootstrap.or(post_init);
        if post_bootstrap.as_deref().is_some_and(|s| s.trim().is_empty()) {
            return Err(Invalid("bootstrap.post_bootstrap is empty".into()));
        }
        Ok(Self { method, post_bootstrap })
    }
}

impl CustomBootstrap {
    fn read(name: &str, section: &Value) -> Result<Self, Invalid> {
        let map =
            section.as_object().ok_or_else(|| Invalid(format!("bootstrap.{name} must be a mapping (command, recovery_conf, ...)")))?;
        let mut method = CustomBootstrap {
            name: name.to_string(),
            command: String::new(),
            keep_existing_recovery_conf: false,
            no_params: false,
            recovery_conf: BTreeMap::new(),
            options: BTreeMap::new(),
        };
        for (key, value) in map {
            let path = format!("bootstrap.{name}.{key}");
            match key.as_str() {
                "command" => method.command = string(&path, value)?,
                "keep_existing_recovery_conf" => method.keep_existing_recovery_conf = flag(&path, value)?,
                "no_params" => method.no_params = flag(&path, value)?,
                "recovery_conf" => method.recovery_conf = recovery_conf(&path, value)?,
                _ => {
                    method.options.insert(key.clone(), scalar(&path, value)?);
                }
            }
        }
        if method.command.trim().is_empty() {
            return Err(Invalid(format!("bootstrap.{name}.command is required: the command that fills the data directory")));
        }
        Ok(method)
    }

    /// The command's arguments after its own: `--scope`, `--datadir` (unless
    /// `no_params`), then the section's options.
    pub fn arguments(&self, scope: &str, data_dir: &str) -> Vec<String> {
        let mut args = Vec::new();
        if !self.no_params {
            args.push(format!("--scope={scope}"));
            args.push(format!("--datadir={data_dir}"));
        }
        args.extend(options(&self.options));
        args
    }
}

fn recovery_conf(path: &str, value: &Value) -> Result<BTreeMap<String, String>, Invalid> {
    let map = value.as_object().ok_or_else(|| Invalid(format!("{path} must be a mapping of recovery settings")))?;
    map.iter()
        .map(|(name, v)| {
            let lower = name.to_ascii_lowercase();
            if !RECOVERY_PARAMETERS.contains(&lower.as_str()) || NOT_IN_RECOVERY_CONF.contains(&lower.as_str()) {
                return Err(Invalid(format!("{path}.{name} is not a recovery setting the bootstrap takes (e.g. restore_command, recovery_target_time, recovery_target_action)")));
            }
            scalar(&format!("{path}.{name}"), v)?;
            Ok((lower, render_value(v)))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn read(method: Option<&str>, sections: Value) -> Result<BootstrapPlan, Invalid> {
        BootstrapPlan::read(method, None, None, serde_json::from_value(sections).expect("map"))
    }

    #[test]
    fn a_custom_method_is_read_with_its_recovery_settings_and_options() {
        let plan = read(
            Some("pitr"),
            json!({"pitr": {"command": "/bin/restore --repo /r", "recovery_conf": {"restore_command": "cp /a/%f %p", "recovery_target_action": "promote"}, "stanza": "main"}}),
        )
        .expect("valid");
        let m = plan.method.expect("custom");
        assert_eq!(m.command, "/bin/restore --repo /r");
        assert_eq!(m.recovery_conf["restore_command"], "'cp /a/%f %p'");
        assert_eq!(m.recovery_conf["recovery_target_action"], "'promote'");
        assert_eq!(m.arguments("demo", "/d"), ["--scope=demo", "--datadir=/d", "--stanza=main"]);
        let quiet = CustomBootstrap { no_params: true, ..m };
        assert_eq!(quiet.arguments("demo", "/d"), ["--stanza=main"]);
        assert_eq!(read(Some("initdb"), json!({})).expect("initdb").method, None);
        assert_eq!(read(None, json!({})).expect("initdb"), BootstrapPlan::default());
        let p = BootstrapPlan::read(None, None, Some("/bin/post".into()), BTreeMap::new()).expect("post_init");
        assert_eq!(p.post_bootstrap.as_deref(), Some("/bin/post"));
    }

    #[test]
    fn bad_bootstrap_settings_say_what_is_wrong() {
        let e = |m: Option<&str>, s: Value| read(m, s).expect_err("invalid").0;
        assert_eq!(e(Some("pitr"), json!({})), "bootstrap.method is \"pitr\" but there is no bootstrap.pitr section (with its command)");
        assert_eq!(
            e(None, json!({"pitr": {}})),
            "bootstrap.pitr is not a known setting (a custom bootstrap's section must be named by bootstrap.method)"
        );
        assert_eq!(
            e(Some("pitr"), json!({"pitr": {"no_params": true}})),
            "bootstrap.pitr.command is required: the command that fills the data directory"
        );
        assert!(e(Some("pitr"), json!({"pitr": {"command": "x", "recovery_conf": {"primary_conninfo": "host=x"}}}))
            .starts_with("bootstrap.pitr.recovery_conf.primary_conninfo is not a recovery setting the bootstrap takes"));
        assert!(e(Some("pitr"), json!({"pitr": {"command": "x", "recovery_conf": {"work_mem": "1MB"}}}))
            .contains("work_mem is not a recovery setting"));
        assert_eq!(
            e(Some("pitr"), json!({"pitr": {"command": "x", "recovery_conf": "cp"}})),
            "bootstrap.pitr.recovery_conf must be a mapping of recovery settings"
        );
        let both = BootstrapPlan::read(None, Some("a".into()), Some("b".into()), BTreeMap::new()).expect_err("both").0;
        assert_eq!(both, "bootstrap.post_bootstrap and bootstrap.post_init are the same script: give one");
    }
}
