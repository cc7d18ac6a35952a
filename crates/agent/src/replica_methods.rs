//! How a replica's empty data directory is filled: `postgresql.create_replica_methods`
//! (Patroni's names), tried in order until one succeeds. `basebackup` is the agent's
//! own pg_basebackup (with the `postgresql.basebackup` options); any other name is a
//! user command (its section under `postgresql:`: `command`, `no_leader`, `keep_data`,
//! `no_params`, every other key a `--key=value` option), such as a restore from a
//! backup repository. Owns reading those sections and the pure plan: from the methods
//! and whether a primary runs, the ordered attempts and each command's arguments. The
//! HA loop runs the attempts (`ha::clone`).

use std::collections::BTreeMap;

use serde_json::Value;

use crate::config::Invalid;

/// The built-in method's name.
pub const BASEBACKUP: &str = "basebackup";

/// pg_basebackup options the agent sets itself (Patroni refuses the same ones).
const AGENT_BASEBACKUP_OPTIONS: [&str; 12] =
    ["pgdata", "format", "wal-method", "xlog-method", "gzip", "version", "compress", "dbname", "host", "port", "username", "password"];

/// A user command's section.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ReplicaMethod {
    /// What runs (through `sh -c`, so it may hold its own arguments); default: the
    /// method's name.
    pub command: String,
    /// It works without a running primary (from a backup repository).
    pub no_leader: bool,
    /// The data directory is not emptied before it runs.
    pub keep_data: bool,
    /// `--scope`, `--role`, `--datadir`, `--connstring` are not passed.
    pub no_params: bool,
    /// Every other key, passed as `--key=value`.
    pub options: BTreeMap<String, String>,
}

/// The replica creation settings, read and checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreateReplica {
    /// The method names in order (default: `basebackup`).
    pub order: Vec<String>,
    /// The user commands' sections, by method name.
    pub methods: BTreeMap<String, ReplicaMethod>,
    /// Extra pg_basebackup arguments (`postgresql.basebackup`).
    pub basebackup: Vec<String>,
}

impl Default for CreateReplica {
    fn default() -> Self {
        Self { order: vec![BASEBACKUP.into()], methods: BTreeMap::new(), basebackup: Vec::new() }
    }
}

/// One attempt of the plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attempt {
    /// pg_basebackup from the source member, with these extra arguments.
    Basebackup(Vec<String>),
    /// A user command.
    Command { name: String, method: ReplicaMethod },
}

/// Where the clone comes from, for a command's `--connstring` (`None`: no primary runs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CloneSource {
    pub host: String,
    pub port: u16,
    pub user: String,
}

impl CloneSource {
    /// A libpq connection string (the password comes from the agent's password file).
    pub fn connstring(&self) -> String {
        format!("host={} port={} user={} dbname=postgres", self.host, self.port, self.user)
    }
}

impl CreateReplica {
    /// Reads `create_replica_methods`, `basebackup` and the named sections (`sections`:
    /// the `postgresql` keys that are no setting of their own). A section no method
    /// names is refused as an unknown setting.
    pub fn read(order: &[String], basebackup: Option<&Value>, mut sections: BTreeMap<String, Value>) -> Result<Self, Invalid> {
        let mut methods = BTreeMap::new();
        for name in order {
            if name.is_empty() {
                return Err(Invalid("postgresql.create_replica_methods holds an empty name".into()));
            }
            if name == BASEBACKUP || methods.contains_key(name) {
                continue;
            }
            let section = sections.remove(name);
            methods.insert(name.clone(), ReplicaMethod::read(name, section.as_ref())?);
        }
        if let Some(unknown) = sections.keys().next() {
            return Err(Invalid(format!(
                "postgresql.{unknown} is not a known setting (a replica method's section must be named in postgresql.create_replica_methods)"
            )));
        }
        let basebackup = basebackup.map(basebackup_arguments).transpose()?.unwrap_or_default();
        let order = if order.is_empty() { vec![BASEBACKUP.into()] } else { order.to_vec() };
        Ok(Self { order, methods, basebackup })
    }

    /// The same methods in the order a standby cluster's section gives
    /// (`standby_cluster.create_replica_methods`; empty: this node's order). Each name
    /// must be `basebackup` or a method this node's file defines.
    pub fn reordered(&self, order: &[String]) -> Result<Self, Invalid> {
        if order.is_empty() {
            return Ok(self.clone());
        }
        if let Some(missing) = order.iter().find(|n| *n != BASEBACKUP && !self.methods.contains_key(*n)) {
            return Err(Invalid(format!(
                "standby_cluster.create_replica_methods names {missing}, which has no section under postgresql (nor is it basebackup) in this node's file"
            )));
        }
        Ok(Self { order: order.to_vec(), ..self.clone() })
    }

    /// Some method works without a running primary.
    pub fn works_without_leader(&self) -> bool {
        self.methods.values().any(|m| m.no_leader)
    }

    /// The attempts, in order: all of them while a primary runs, else only the
    /// `no_leader` commands (Patroni's rule; pg_basebackup needs a server).
    pub fn plan(&self, primary_runs: bool) -> Vec<Attempt> {
        self.order
            .iter()
            .filter_map(|name| match self.methods.get(name) {
                None => primary_runs.then(|| Attempt::Basebackup(self.basebackup.clone())),
                Some(method) => (primary_runs || method.no_leader).then(|| Attempt::Command { name: name.clone(), method: method.clone() }),
            })
            .collect()
    }
}

impl ReplicaMethod {
    fn read(name: &str, section: Option<&Value>) -> Result<Self, Invalid> {
        let mut method = ReplicaMethod { command: name.to_string(), ..Default::default() };
        let Some(section) = section else { return Ok(method) };
        let map = section.as_object().ok_or_else(|| Invalid(format!("postgresql.{name} must be a mapping (command, no_leader, ...)")))?;
        for (key, value) in map {
            let path = format!("postgresql.{name}.{key}");
            match key.as_str() {
                "command" => method.command = string(&path, value)?,
                "no_leader" | "no_master" => method.no_leader = flag(&path, value)?,
                "keep_data" => method.keep_data = flag(&path, value)?,
                "no_params" => method.no_params = flag(&path, value)?,
                _ => {
                    method.options.insert(key.clone(), scalar(&path, value)?);
                }
            }
        }
        if method.command.trim().is_empty() {
            return Err(Invalid(format!("postgresql.{name}.command is empty")));
        }
        Ok(method)
    }

    /// The command's arguments after its own: the agent's (unless `no_params`), then
    /// the section's options, each `--key=value`. `source` None gives an empty
    /// connection string, as Patroni passes when no primary runs.
    pub fn arguments(&self, scope: &str, data_dir: &str, source: Option<&CloneSource>) -> Vec<String> {
        let mut args = Vec::new();
        if !self.no_params {
            let connstring = source.map(CloneSource::connstring).unwrap_or_default();
            for (key, value) in [("scope", scope), ("role", "replica"), ("datadir", data_dir), ("connstring", &connstring)] {
                args.push(format!("--{key}={value}"));
            }
        }
        args.extend(options(&self.options));
        args
    }
}

/// `--key=value` for each option, in key order.
pub fn options(options: &BTreeMap<String, String>) -> Vec<String> {
    options.iter().map(|(k, v)| format!("--{k}={v}")).collect()
}

/// `postgresql.basebackup` as pg_basebackup arguments: a list of flags and one-key
/// mappings (`[verbose, {max-rate: 100M}]`) or a mapping (`{max-rate: 100M}`).
pub fn basebackup_arguments(value: &Value) -> Result<Vec<String>, Invalid> {
    let path = "postgresql.basebackup";
    let allowed = |name: &str| {
        if AGENT_BASEBACKUP_OPTIONS.contains(&name) {
            Err(Invalid(format!("{path}: the agent sets pg_basebackup's --{name} itself; remove it")))
        } else {
            Ok(())
        }
    };
    let pair = |name: &str, value: &Value| -> Result<String, Invalid> {
        allowed(name)?;
        Ok(format!("--{name}={}", scalar(&format!("{path}.{name}"), value)?))
    };
    match value {
        Value::Object(map) => map.iter().map(|(k, v)| pair(k, v)).collect(),
        Value::Array(items) => items
            .iter()
            .map(|item| match item {
                Value::String(flag) => allowed(flag).map(|()| format!("--{flag}")),
                Value::Object(map) if map.len() == 1 => {
                    map.iter().map(|(k, v)| pair(k, v)).collect::<Result<Vec<_>, _>>().map(|mut v| v.remove(0))
                }
                other => Err(Invalid(format!("{path}: each item must be a flag name or a one-key mapping, not {other}"))),
            })
            .collect(),
        other => Err(Invalid(format!("{path} must be a list or a mapping of pg_basebackup options, not {other}"))),
    }
}

pub(crate) fn string(path: &str, value: &Value) -> Result<String, Invalid> {
    value.as_str().map(str::to_string).ok_or_else(|| Invalid(format!("{path} must be a string, not {value}")))
}

pub(crate) fn flag(path: &str, value: &Value) -> Result<bool, Invalid> {
    value.as_bool().ok_or_else(|| Invalid(format!("{path} must be true or false, not {value}")))
}

/// A string, number or boolean as its text (an option's value).
pub(crate) fn scalar(path: &str, value: &Value) -> Result<String, Invalid> {
    match value {
        Value::String(s) => Ok(s.clone()),
        Value::Number(n) => Ok(n.to_string()),
        Value::Bool(b) => Ok(b.to_string()),
        other => Err(Invalid(format!("{path} must be a string, a number or a boolean, not {other}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn sections(v: Value) -> BTreeMap<String, Value> {
        serde_json::from_value(v).expect("map")
    }

    fn names(plan: &[Attempt]) -> Vec<&str> {
        plan.iter()
            .map(|a| match a {
                Attempt::Basebackup(_) => BASEBACKUP,
                Attempt::Command { name, .. } => name.as_str(),
            })
            .collect()
    }

    #[test]
    fn methods_are_tried_in_order_and_without_a_primary_only_no_leader_ones() {
        let order: Vec<String> = ["repo", "basebackup", "wal_g"].map(String::from).to_vec();
        let c = CreateReplica::read(
            &order,
            Some(&json!(["verbose", {"max-rate": "10M"}])),
            sections(json!({"repo": {"command": "/bin/restore --from x", "no_leader": true, "stanza": "main", "retries": 3}})),
        )
        .expect("valid");
        assert_eq!(names(&c.plan(true)), ["repo", "basebackup", "wal_g"]);
        assert_eq!(names(&c.plan(false)), ["repo"]);
        assert!(c.works_without_leader());
        assert_eq!(c.plan(true)[1], Attempt::Basebackup(vec!["--verbose".into(), "--max-rate=10M".into()]));
        let Attempt::Command { method, .. } = &c.plan(true)[2] else { panic!("a command") };
        assert_eq!(method.command, "wal_g", "no section: the name is the command");
        let Attempt::Command { method, .. } = &c.plan(true)[0] else { panic!("a command") };
        let source = CloneSource { host: "10.0.0.1".into(), port: 5432, user: "replicator".into() };
        assert_eq!(
            method.arguments("demo", "/d/pgdata", Some(&source)),
            [
                "--scope=demo",
                "--role=replica",
                "--datadir=/d/pgdata",
                "--connstring=host=10.0.0.1 port=5432 user=replicator dbname=postgres",
                "--retries=3",
                "--stanza=main"
            ]
        );
        let quiet = ReplicaMethod { no_params: true, ..method.clone() };
        assert_eq!(quiet.arguments("demo", "/d", None), ["--retries=3", "--stanza=main"]);
        assert_eq!(method.arguments("demo", "/d", None)[3], "--connstring=");
    }

    #[test]
    fn a_standby_cluster_reorders_the_node_methods_and_names_a_missing_one() {
        let order: Vec<String> = ["basebackup", "repo"].map(String::from).to_vec();
        let c =
            CreateReplica::read(&order, None, sections(json!({"repo": {"command": "/bin/restore", "no_leader": true}}))).expect("valid");
        assert_eq!(c.reordered(&[]).expect("same"), c, "no list: the node's own order");
        let standby = c.reordered(&["repo".into()]).expect("known");
        assert_eq!(names(&standby.plan(true)), ["repo"]);
        let e = c.reordered(&["repo".into(), "pgbackrest".into()]).expect_err("undefined").0;
        assert_eq!(
            e,
            "standby_cluster.create_replica_methods names pgbackrest, which has no section under postgresql (nor is it basebackup) in this node's file"
        );
    }

    #[test]
    fn no_methods_means_basebackup() {
        let c = CreateReplica::read(&[], Some(&json!({"max-rate": "1M", "checkpoint": "fast"})), BTreeMap::new()).expect("valid");
        assert_eq!(c.plan(true), [Attempt::Basebackup(vec!["--checkpoint=fast".into(), "--max-rate=1M".into()])]);
        assert!(c.plan(false).is_empty());
        assert!(!c.works_without_leader());
    }

    #[test]
    fn bad_sections_say_what_is_wrong() {
        let read = |order: &[&str], bb: Option<Value>, s: Value| {
            let order: Vec<String> = order.iter().map(|s| s.to_string()).collect();
            CreateReplica::read(&order, bb.as_ref(), sections(s)).expect_err("invalid").0
        };
        assert_eq!(
            read(&["basebackup"], None, json!({"repo": {}})),
            "postgresql.repo is not a known setting (a replica method's section must be named in postgresql.create_replica_methods)"
        );
        assert_eq!(
            read(&["repo"], None, json!({"repo": {"no_leader": "yes"}})),
            "postgresql.repo.no_leader must be true or false, not \"yes\""
        );
        assert_eq!(read(&["repo"], None, json!({"repo": {"command": ""}})), "postgresql.repo.command is empty");
        assert_eq!(
            read(&["repo"], None, json!({"repo": {"x": [1]}})),
            "postgresql.repo.x must be a string, a number or a boolean, not [1]"
        );
        assert_eq!(read(&["repo"], None, json!({"repo": "cmd"})), "postgresql.repo must be a mapping (command, no_leader, ...)");
        assert_eq!(
            read(&[], Some(json!({"pgdata": "/x"})), json!({})),
            "postgresql.basebackup: the agent sets pg_basebackup's --pgdata itself; remove it"
        );
        assert_eq!(
            read(&[], Some(json!([{"a": "1", "b": "2"}])), json!({})),
            "postgresql.basebackup: each item must be a flag name or a one-key mapping, not {\"a\":\"1\",\"b\":\"2\"}"
        );
        assert_eq!(
            read(&[], Some(json!("verbose")), json!({})),
            "postgresql.basebackup must be a list or a mapping of pg_basebackup options, not \"verbose\""
        );
        assert_eq!(read(&[""], None, json!({})), "postgresql.create_replica_methods holds an empty name");
    }
}
