//! What becomes of every configuration key, Patroni's included: applied, warned about
//! (accepted, one startup warning, not used), or refused with one error naming the key
//! (and "did you mean" for a near miss). Owns the tables of the node file's agent
//! sections and of the dynamic configuration (`/config`, `bootstrap.dcs`), and the walk
//! that checks a document against them, so no path (node YAML, `raftctl edit-config`,
//! `PATCH`/`PUT /config`) drops a key without a word. The typed structs in
//! [`crate::config`] then read what was applied.

use serde_json::{Map, Value};

use crate::config::Invalid;
use crate::postgres::params::{verdict, Fate, Scope};

/// What the agent does with one key.
#[derive(Debug, Clone, Copy)]
pub enum Verdict {
    /// Applied; a mapping's keys are checked against the children.
    Section(&'static [Key]),
    /// Applied; a mapping whose keys are checked against the children, any other key
    /// applied too (Patroni's custom tags) unless it looks like a misspelled child: one
    /// or two edits away from one, with the same first letter.
    Open(&'static [Key]),
    /// Applied as a value (its type is checked when it is read).
    Applied,
    /// Applied as a value that names (a string, or a list of strings) further sections
    /// of the same mapping, which are applied too (their reader checks them): a custom
    /// replica method's or bootstrap method's section.
    Names,
    /// PostgreSQL parameters set in this scope: each applied unless `params::verdict`
    /// warns about it or refuses it (the ones the agent owns, the cluster-wide ones).
    Parameters(Scope),
    /// Accepted and not used: one warning with this reason.
    Warned(&'static str),
    /// Refused: the error says this reason.
    Refused(&'static str),
}

/// A key name and its verdict.
#[derive(Debug, Clone, Copy)]
pub struct Key {
    pub name: &'static str,
    pub verdict: Verdict,
}

const fn key(name: &'static str, verdict: Verdict) -> Key {
    Key { name, verdict }
}

const fn applied(name: &'static str) -> Key {
    key(name, Verdict::Applied)
}

const EMBEDDED: &str = "the store is embedded (every raftgres node serves etcd v3 itself); this external DCS section is not used";
const NODE_FILE_ONLY: &str = "set it in each node's file under postgresql (it is not a cluster-wide setting here)";

/// `postgresql:` in `/config` and `bootstrap.dcs`.
const DYNAMIC_POSTGRES: &[Key] = &[
    key("parameters", Verdict::Parameters(Scope::Cluster)),
    applied("use_pg_rewind"),
    key("use_slots", Verdict::Refused(NODE_FILE_ONLY)),
    key("pg_hba", Verdict::Refused(NODE_FILE_ONLY)),
    key("pg_ident", Verdict::Refused("pg_ident.conf is not managed; remove it")),
    key("remove_data_directory_on_rewind_failure", Verdict::Refused(NODE_FILE_ONLY)),
    key("remove_data_directory_on_diverged_timelines", Verdict::Refused("not supported: a diverged replica is rewound or reinitialized")),
    key("recovery_conf", Verdict::Refused("recovery settings are the agent's own (it writes primary_conninfo and the slot)")),
];

/// `standby_cluster:` (see `standby`; Patroni's keys).
const STANDBY_CLUSTER: &[Key] = &[
    applied("host"),
    applied("port"),
    applied("primary_slot_name"),
    applied("restore_command"),
    applied("archive_cleanup_command"),
    applied("recovery_min_apply_delay"),
    applied("create_replica_methods"),
];

const LIVENESS: &[Key] = &[applied("enabled"), applied("interval"), applied("timeout"), applied("max_failures")];

/// The dynamic configuration: `/config` and `bootstrap.dcs`.
pub const DYNAMIC: &[Key] = &[
    applied("ttl"),
    applied("loop_wait"),
    applied("retry_timeout"),
    applied("safety_margin"),
    applied("maximum_lag_on_failover"),
    applied("primary_start_timeout"),
    applied("pause"),
    applied("synchronous_mode"),
    applied("synchronous_mode_strict"),
    applied("synchronous_node_count"),
    applied("maximum_lag_on_syncnode"),
    applied("failsafe_mode"),
    key("postgresql", Verdict::Section(DYNAMIC_POSTGRES)),
    key("liveness", Verdict::Section(LIVENESS)),
    key("master_start_timeout", Verdict::Refused("Patroni's old name: use primary_start_timeout")),
    key("primary_stop_timeout", Verdict::Refused("not supported: a primary's stop is not bounded by a timeout")),
    key("master_stop_timeout", Verdict::Refused("not supported: a primary's stop is not bounded by a timeout")),
    key("check_timeline", Verdict::Refused("not supported")),
    key("standby_cluster", Verdict::Section(STANDBY_CLUSTER)),
    applied("slots"),
    applied("ignore_slots"),
    key(
        "member_slots_ttl",
        Verdict::Refused("replicas keep no slots for the other members; the primary drops a member's slot when its key goes"),
    ),
    key("synchronous_mode_count", Verdict::Refused("not Patroni's name: use synchronous_node_count")),
];

const CREDENTIALS: &[Key] = &[applied("username"), applied("password")];

const PG_USER: &[Key] = &[
    applied("username"),
    applied("password"),
    key("sslmode", Verdict::Refused("TLS settings for the agent's PostgreSQL connections are not supported")),
    key("sslkey", Verdict::Refused("TLS settings for the agent's PostgreSQL connections are not supported")),
    key("sslcert", Verdict::Refused("TLS settings for the agent's PostgreSQL connections are not supported")),
    key("sslrootcert", Verdict::Refused("TLS settings for the agent's PostgreSQL connections are not supported")),
    key("channel_binding", Verdict::Refused("TLS settings for the agent's PostgreSQL connections are not supported")),
];

const PG_AUTHENTICATION: &[Key] = &[
    key("superuser", Verdict::Section(PG_USER)),
    key("replication", Verdict::Section(PG_USER)),
    key("rewind", Verdict::Warned("pg_rewind connects as the superuser here; this user is not used")),
];

const CALLBACKS: &[Key] =
    &[applied("on_start"), applied("on_stop"), applied("on_restart"), applied("on_reload"), applied("on_role_change")];

/// A node's `postgresql.recovery_conf` (Patroni's): the settings of its replicas that
/// are not the agent's own, written with its parameters.
const RECOVERY_CONF: &[Key] = &[
    applied("restore_command"),
    applied("archive_cleanup_command"),
    applied("recovery_end_command"),
    applied("recovery_min_apply_delay"),
    key("primary_conninfo", Verdict::Refused(AGENT_SETS_IT)),
    key("primary_slot_name", Verdict::Refused(AGENT_SETS_IT)),
    key("recovery_target_timeline", Verdict::Refused(AGENT_SETS_IT)),
    key("standby_mode", Verdict::Refused("the agent writes standby.signal on a replica")),
];

const AGENT_SETS_IT: &str = "the agent sets it (replication and failover depend on it)";

const POSTGRESQL: &[Key] = &[
    applied("listen"),
    applied("connect_address"),
    applied("data_dir"),
    applied("bin_dir"),
    applied("pgpass"),
    key("authentication", Verdict::Section(PG_AUTHENTICATION)),
    key("parameters", Verdict::Parameters(Scope::Node)),
    applied("pg_hba"),
    applied("use_pg_rewind"),
    applied("remove_data_directory_on_rewind_failure"),
    applied("use_slots"),
    key("callbacks", Verdict::Section(CALLBACKS)),
    key("recovery_conf", Verdict::Section(RECOVERY_CONF)),
    key("create_replica_methods", Verdict::Names),
    applied("basebackup"),
    key("pg_ident", Verdict::Refused("pg_ident.conf is not managed; remove it")),
    key("config_dir", Verdict::Refused("the configuration lives in data_dir")),
    key("custom_conf", Verdict::Refused("the agent writes postgresql.conf; put settings under parameters")),
    key("bin_name", Verdict::Refused("the programs are found in bin_dir under their own names")),
    key("pg_ctl_timeout", Verdict::Warned("the agent uses its own timeouts for pg_ctl; this is not used")),
    key("use_unix_socket", Verdict::Warned("the agent always connects through its own unix socket; this is not used")),
    key("use_unix_socket_repl", Verdict::Warned("replicas connect over TCP to connect_address; this is not used")),
    key("remove_data_directory_on_diverged_timelines", Verdict::Refused("not supported: a diverged replica is rewound or reinitialized")),
    key("name", Verdict::Warned("the member name is raftgres's `name`; postgresql.name is not used")),
];

const RESTAPI: &[Key] = &[
    applied("listen"),
    applied("connect_address"),
    key("authentication", Verdict::Section(CREDENTIALS)),
    applied("certfile"),
    applied("keyfile"),
    applied("cafile"),
    applied("verify_client"),
    key("keyfile_password", Verdict::Refused("encrypted keys are not supported: give keyfile unencrypted (mode 0600)")),
    key("ciphers", Verdict::Refused("the cipher list is rustls's own and cannot be narrowed")),
    key("allowlist", Verdict::Refused("not supported: restrict the REST API with restapi.authentication or a firewall")),
    key("allowlist_include_members", Verdict::Refused("not supported: restrict the REST API with restapi.authentication or a firewall")),
    key("http_extra_headers", Verdict::Warned("extra response headers are not sent")),
    key("https_extra_headers", Verdict::Warned("extra response headers are not sent")),
    key("request_queue_size", Verdict::Warned("not used")),
    key("server_tokens", Verdict::Warned("not used")),
];

const BOOTSTRAP: &[Key] = &[
    key("dcs", Verdict::Section(DYNAMIC)),
    key("initdb", Verdict::Warned("initdb runs with the agent's options (data checksums on); these are not used")),
    key("method", Verdict::Names),
    applied("post_bootstrap"),
    applied("post_init"),
    key("users", Verdict::Refused("users are not created at bootstrap; create them with SQL")),
    key("pg_hba", Verdict::Refused("put pg_hba lines in postgresql.pg_hba")),
];

const TAGS: &[Key] = &[
    applied("nofailover"),
    applied("failover_priority"),
    applied("noloadbalance"),
    applied("clonefrom"),
    applied("nosync"),
    applied("replicatefrom"),
    applied("nostream"),
];

const WATCHDOG: &[Key] = &[applied("mode"), applied("device"), applied("timeout"), key("safety_margin", Verdict::Warned("not used"))];

/// The Patroni-shaped sections of a node's file (the store's own keys are added by the caller).
pub const NODE_SECTIONS: &[Key] = &[
    applied("scope"),
    applied("namespace"),
    key("restapi", Verdict::Section(RESTAPI)),
    key("postgresql", Verdict::Section(POSTGRESQL)),
    key("bootstrap", Verdict::Section(BOOTSTRAP)),
    key("tags", Verdict::Open(TAGS)),
    key("watchdog", Verdict::Section(WATCHDOG)),
    key("etcd", Verdict::Warned(EMBEDDED)),
    key("etcd3", Verdict::Warned(EMBEDDED)),
    key("consul", Verdict::Warned(EMBEDDED)),
    key("zookeeper", Verdict::Warned(EMBEDDED)),
    key("kubernetes", Verdict::Warned(EMBEDDED)),
    key("raft", Verdict::Warned(EMBEDDED)),
    key("exhibitor", Verdict::Warned(EMBEDDED)),
    key("log", Verdict::Warned("raftgres logs to stderr (RAFTGRES_LOG sets the level); this section is not used")),
    key("ctl", Verdict::Warned("raftctl reads its TLS from flags or `raftctl -c` this file; this section is not used")),
    key("citus", Verdict::Refused("Citus is not supported")),
];

/// What the walk found for one key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Applied,
    Warned(String),
    Refused(String),
}

/// Every key of `doc` (a mapping) with its outcome, in key order, by dotted path.
/// PostgreSQL parameters are reported one by one (`params::verdict`); unknown keys are refused with the
/// nearest known name when one is within two edits.
pub fn outcomes(doc: &Map<String, Value>, table: &[Key]) -> Vec<(String, Outcome)> {
    let mut out = Vec::new();
    walk(doc, table, false, "", &mut out);
    out
}

/// `open`: keys not in `table` are applied unless they look like a misspelled one.
fn walk(doc: &Map<String, Value>, table: &[Key], open: bool, prefix: &str, out: &mut Vec<(String, Outcome)>) {
    for (name, value) in doc {
        let path = format!("{prefix}{name}");
        let found = table.iter().find(|k| k.name == name).map(|k| k.verdict);
        let outcome = match found {
            Some(Verdict::Section(children) | Verdict::Open(children)) => {
                if let Some(inner) = value.as_object() {
                    walk(inner, children, matches!(found, Some(Verdict::Open(_))), &format!("{path}."), out);
                    continue;
                }
                Outcome::Applied
            }
            Some(Verdict::Parameters(scope)) => {
                for (name, value) in value.as_object().into_iter().flatten() {
                    let outcome = match verdict(scope, name, value) {
                        None => Outcome::Applied,
                        Some(Fate::Warned(why)) => Outcome::Warned(format!("{path}.{name}: {why}")),
                        Some(Fate::Refused(why)) => Outcome::Refused(format!("{path}.{name} is refused: {why}")),
                    };
                    out.push((format!("{path}.{name}"), outcome));
                }
                continue;
            }
            Some(Verdict::Applied | Verdict::Names) => Outcome::Applied,
            None if named_by_sibling(doc, table, name) => Outcome::Applied,
            Some(Verdict::Warned(why)) => Outcome::Warned(format!("{path}: {why}")),
            Some(Verdict::Refused(why)) => Outcome::Refused(format!("{path} is refused: {why}")),
            None if open => match misspelled(name, table) {
                Some(near) => {
                    Outcome::Refused(format!("{path} is not a known setting: did you mean {near}? (rename it if it is a tag of your own)"))
                }
                None => Outcome::Applied,
            },
            None => Outcome::Refused(unknown(&path, name, table)),
        };
        out.push((path, outcome));
    }
}

/// `name` is one of the sections a [`Verdict::Names`] key of the same mapping names.
fn named_by_sibling(doc: &Map<String, Value>, table: &[Key], name: &str) -> bool {
    table.iter().filter(|k| matches!(k.verdict, Verdict::Names)).filter_map(|k| doc.get(k.name)).any(|names| match names {
        Value::String(s) => s == name,
        Value::Array(items) => items.iter().any(|i| i.as_str() == Some(name)),
        _ => false,
    })
}

/// The key of `table` that `name` looks like a misspelling of: one or two edits away,
/// the same first letter.
fn misspelled(name: &str, table: &[Key]) -> Option<&'static str> {
    let first = |s: &str| s.chars().next();
    table.iter().map(|k| (edit_distance(name, k.name), k.name)).filter(|(d, k)| *d <= 2 && first(k) == first(name)).min().map(|(_, k)| k)
}

fn unknown(path: &str, name: &str, table: &[Key]) -> String {
    let nearest = table.iter().map(|k| (edit_distance(name, k.name), k.name)).filter(|(d, _)| *d <= 2).min();
    match nearest {
        Some((_, near)) => format!("{path} is not a known setting: did you mean {near}?"),
        None => format!("{path} is not a known setting"),
    }
}

/// Checks `doc` against `table`: the first refused key is the error; otherwise the
/// warnings, and `doc` keeps only what is applied (warned keys are taken out so the
/// typed structs, which deny unknown fields, read the rest).
pub fn check(doc: &mut Map<String, Value>, table: &[Key]) -> Result<Vec<String>, Invalid> {
    let mut warnings = Vec::new();
    for (path, outcome) in outcomes(doc, table) {
        match outcome {
            Outcome::Applied => {}
            Outcome::Refused(e) => return Err(Invalid(e)),
            Outcome::Warned(w) => {
                remove_path(doc, &path);
                warnings.push(w);
            }
        }
    }
    Ok(warnings)
}

fn remove_path(doc: &mut Map<String, Value>, path: &str) {
    match path.split_once('.') {
        Some((head, rest)) => {
            if let Some(inner) = doc.get_mut(head).and_then(Value::as_object_mut) {
                remove_path(inner, rest);
            }
        }
        None => {
            doc.remove(path);
        }
    }
}

/// A node file's top-level mapping: the agent's sections by [`NODE_SECTIONS`], and
/// `store_keys` (the store's own settings, checked by their reader) applied.
pub fn check_node_file(doc: &mut Map<String, Value>, store_keys: &[&'static str]) -> Result<Vec<String>, Invalid> {
    let table: Vec<Key> = NODE_SECTIONS.iter().copied().chain(store_keys.iter().map(|name| applied(name))).collect();
    check(doc, &table)
}

/// A `/config` about to be written: every key must be applied (it holds no warned keys).
pub fn check_dynamic(config: &Value) -> Result<(), Invalid> {
    let doc = config.as_object().ok_or_else(|| Invalid("the configuration must be a mapping of settings".into()))?;
    match outcomes(doc, DYNAMIC).into_iter().find(|(_, o)| *o != Outcome::Applied) {
        Some((_, Outcome::Refused(e) | Outcome::Warned(e))) => Err(Invalid(e)),
        _ => Ok(()),
    }
}

/// A merge patch for `/config`: every key it sets must be applied; a null (removal)
/// is taken for any key, so a key an older `/config` holds can always be removed.
pub fn check_dynamic_patch(patch: &Value) -> Result<(), Invalid> {
    check_dynamic(&without_removals(patch))
}

fn without_removals(value: &Value) -> Value {
    match value {
        Value::Object(m) => Value::Object(m.iter().filter(|(_, v)| !v.is_null()).map(|(k, v)| (k.clone(), without_removals(v))).collect()),
        other => other.clone(),
    }
}

/// Levenshtein distance (insertions, deletions, substitutions), on characters.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let above = row[j + 1];
            row[j + 1] = (above + 1).min(row[j] + 1).min(diagonal + usize::from(ca != *cb));
            diagonal = above;
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests;
