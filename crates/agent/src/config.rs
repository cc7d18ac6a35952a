//! The agent's configuration: the Patroni-shaped sections of a node's YAML file
//! (`scope`, `namespace`, `restapi`, `postgresql`, `bootstrap.dcs`, `tags`), read into
//! plain structs and checked with one clear error per problem. Key names are Patroni's,
//! so a Patroni config moves over by copying these sections.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::bootstrap_method::BootstrapPlan;
pub use crate::invalid::Invalid;
use crate::replica_methods::CreateReplica;
use crate::slots::{IgnoreSlots, PermanentSlots};
use crate::timing::Timing;
use crate::tls::{RestTls, RestTlsError, RestTlsFiles, VerifyClient};

/// Where PostgreSQL 15's programs live on Debian.
pub const DEFAULT_BIN_DIR: &str = "/usr/lib/postgresql/15/bin";

/// Everything the agent needs, validated.
#[derive(Debug, Clone)]
pub struct AgentConfig {
    /// The member name (the node's name in the store too).
    pub name: String,
    pub scope: String,
    pub namespace: String,
    pub restapi: RestApiConfig,
    pub postgresql: PostgresConfig,
    /// `bootstrap.dcs`: written to `/config` by the node that initializes the cluster.
    pub bootstrap_dcs: DynamicConfig,
    pub tags: Tags,
    pub watchdog: WatchdogConfig,
    /// HTTPS of the REST API (`restapi.certfile`, ...), loaded and checked.
    pub rest_tls: Option<RestTls>,
    /// How an empty data dir becomes a replica (`postgresql.create_replica_methods`).
    pub create_replica: CreateReplica,
    /// How the first member creates the cluster (`bootstrap.method`, `post_bootstrap`).
    pub bootstrap: BootstrapPlan,
}

impl AgentConfig {
    /// The client for calls to the other members' REST APIs (HTTPS with `restapi.cafile`
    /// and this node's certificate when the REST API uses TLS).
    pub fn rest_client(&self) -> crate::http::Client {
        crate::http::Client::new(self.rest_tls.as_ref().map(|t| t.client.clone()))
    }
}

/// `watchdog:` (Patroni's section; see the `watchdog` module).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct WatchdogConfig {
    #[serde(default)]
    pub mode: WatchdogMode,
    #[serde(default = "default_watchdog_device")]
    pub device: PathBuf,
    /// Seconds the device waits without a keep-alive before it resets the machine.
    #[serde(default = "default_watchdog_timeout")]
    pub timeout: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum WatchdogMode {
    #[default]
    Off,
    Automatic,
    Required,
}

fn default_watchdog_device() -> PathBuf {
    PathBuf::from("/dev/watchdog")
}

fn default_watchdog_timeout() -> u64 {
    1
}

/// The Patroni-shaped sections as they appear in the YAML file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAgentConfig {
    pub scope: Option<String>,
    pub namespace: Option<String>,
    pub restapi: Option<RestApiConfig>,
    pub postgresql: Option<PostgresConfig>,
    pub bootstrap: Option<Bootstrap>,
    #[serde(default)]
    pub tags: Tags,
    pub watchdog: Option<WatchdogConfig>,
}

/// `bootstrap:` (its unknown keys are checked by [`BootstrapPlan::read`]: only the
/// custom method's section may be there).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Bootstrap {
    #[serde(default)]
    pub dcs: DynamicConfig,
    pub method: Option<String>,
    pub post_bootstrap: Option<String>,
    pub post_init: Option<String>,
    #[serde(flatten)]
    pub sections: BTreeMap<String, serde_json::Value>,
}

/// `restapi:`
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RestApiConfig {
    /// host:port the REST API binds to.
    pub listen: String,
    /// host:port others use to reach it (default: listen).
    pub connect_address: Option<String>,
    /// Basic auth required by the mutating endpoints.
    pub authentication: Option<Credentials>,
    /// HTTPS: the server certificate (PEM; may hold the key too).
    pub certfile: Option<PathBuf>,
    /// The certificate's private key (default: in `certfile`).
    pub keyfile: Option<PathBuf>,
    /// The CA client certificates and the other members' certificates must chain to.
    pub cafile: Option<PathBuf>,
    /// Whether clients must present a certificate (`none`, `optional`, `required`).
    #[serde(default)]
    pub verify_client: VerifyClient,
}

impl RestApiConfig {
    pub fn connect_address(&self) -> &str {
        self.connect_address.as_deref().unwrap_or(&self.listen)
    }
    /// `http://host:port/patroni` (`https://` with `certfile`), as member keys carry it.
    pub fn api_url(&self) -> String {
        let scheme = if self.certfile.is_some() { "https" } else { "http" };
        format!("{scheme}://{}/patroni", self.connect_address())
    }

    /// The HTTPS settings, read and checked (`None`: plain HTTP).
    fn tls(&self) -> Result<Option<RestTls>, RestTlsError> {
        RestTlsFiles {
            certfile: self.certfile.as_deref(),
            keyfile: self.keyfile.as_deref(),
            cafile: self.cafile.as_deref(),
            verify_client: self.verify_client,
        }
        .load()
    }
}

#[derive(Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Credentials {
    pub username: String,
    pub password: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Credentials {{ username: {:?}, password: <hidden> }}", self.username)
    }
}

/// `postgresql.authentication:`
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PgAuthentication {
    pub superuser: Credentials,
    pub replication: Credentials,
}

/// `postgresql:` (its unknown keys are checked by [`CreateReplica::read`]: only replica
/// methods' sections may be there).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct PostgresConfig {
    /// host:port PostgreSQL listens on (`listen_addresses` and `port`).
    pub listen: String,
    /// host:port others connect to (default: listen).
    pub connect_address: Option<String>,
    pub data_dir: PathBuf,
    #[serde(default = "default_bin_dir")]
    pub bin_dir: PathBuf,
    /// The password file the agent writes for its own connections (default: next to data_dir).
    pub pgpass: Option<PathBuf>,
    pub authentication: PgAuthentication,
    /// Parameters for postgresql.conf (on top of the ones replication needs).
    #[serde(default)]
    pub parameters: BTreeMap<String, serde_norway::Value>,
    /// pg_hba.conf lines; default: local trust for the OS user, scram for TCP.
    #[serde(default)]
    pub pg_hba: Vec<String>,
    #[serde(default = "yes")]
    pub use_pg_rewind: bool,
    #[serde(default = "yes")]
    pub remove_data_directory_on_rewind_failure: bool,
    #[serde(default = "yes")]
    pub use_slots: bool,
    #[serde(default)]
    pub create_replica_methods: Vec<String>,
    /// pg_basebackup options (a list or a mapping).
    pub basebackup: Option<serde_json::Value>,
    /// The replica methods' sections, by name.
    #[serde(flatten)]
    pub method_sections: BTreeMap<String, serde_json::Value>,
    /// Patroni's callbacks: commands run on PostgreSQL's starts, stops and role changes.
    #[serde(default)]
    pub callbacks: crate::callbacks::Commands,
    /// Patroni's `recovery_conf`: `restore_command` and the other recovery settings that
    /// are not the agent's own, written with the parameters (`config_keys` checks the names).
    #[serde(default)]
    pub recovery_conf: BTreeMap<String, serde_json::Value>,
}

impl PostgresConfig {
    pub fn connect_address(&self) -> &str {
        self.connect_address.as_deref().unwrap_or(&self.listen)
    }
    /// `postgres://host:port/postgres`, as member keys carry it.
    pub fn conn_url(&self) -> String {
        format!("postgres://{}/postgres", self.connect_address())
    }
    pub fn port(&self) -> u16 {
        self.listen.rsplit_once(':').and_then(|(_, p)| p.parse().ok()).unwrap_or(5432)
    }
    pub fn listen_host(&self) -> &str {
        self.listen.rsplit_once(':').map_or("localhost", |(h, _)| h)
    }
    /// The node's `restore_command`: `recovery_conf`'s, else its parameters' (a non-empty string).
    pub fn restore_command(&self) -> Option<String> {
        let parameter = self.parameters.get("restore_command").and_then(|v| serde_json::to_value(v).ok());
        [self.recovery_conf.get("restore_command").cloned(), parameter]
            .into_iter()
            .flatten()
            .find_map(|v| v.as_str().map(str::trim).filter(|s| !s.is_empty()).map(str::to_string))
    }
    pub fn pgpass_path(&self) -> PathBuf {
        self.pgpass.clone().unwrap_or_else(|| {
            let mut p = self.data_dir.clone();
            p.set_file_name(".pgpass");
            p
        })
    }
    /// The directory of PostgreSQL's unix socket the agent connects through: the first of
    /// the node's `unix_socket_directories` (relative to the data dir, as PostgreSQL
    /// reads it), or its own (next to the data dir, private).
    pub fn socket_dir(&self) -> PathBuf {
        let configured = self.parameters.get("unix_socket_directories").and_then(|v| serde_json::to_value(v).ok());
        if let Some(first) = configured.as_ref().and_then(crate::postgres::params::first_directory) {
            // A relative directory is relative to the data dir (the postmaster's cwd).
            return self.data_dir.join(first);
        }
        let mut p = self.data_dir.clone();
        p.set_file_name("run");
        p
    }
}

fn default_bin_dir() -> PathBuf {
    PathBuf::from(DEFAULT_BIN_DIR)
}

fn yes() -> bool {
    true
}

/// Member tags, as Patroni's: the ones the agent acts on, and any other (`custom`),
/// published with them for the operator's tools and health-check filters.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
pub struct Tags {
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub nofailover: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failover_priority: Option<i64>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub noloadbalance: bool,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub clonefrom: bool,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub nosync: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replicatefrom: Option<String>,
    /// Never stream: replay WAL only through `restore_command` (no `primary_conninfo`,
    /// no slot on the primary, never a synchronous standby).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub nostream: bool,
    /// Every other tag, as given (`null` ones left out).
    #[serde(flatten, deserialize_with = "custom_tags")]
    pub custom: BTreeMap<String, serde_json::Value>,
}

fn custom_tags<'de, D: serde::Deserializer<'de>>(d: D) -> Result<BTreeMap<String, serde_json::Value>, D::Error> {
    let tags = BTreeMap::<String, serde_json::Value>::deserialize(d)?;
    Ok(tags.into_iter().filter(|(_, v)| !v.is_null()).collect())
}

impl Tags {
    pub fn is_empty(&self) -> bool {
        self == &Tags::default()
    }
    /// The tags as `name -> value` strings (for `tag_<name>=<value>` health-check filters).
    pub fn as_map(&self) -> BTreeMap<String, String> {
        match serde_json::to_value(self) {
            Ok(serde_json::Value::Object(m)) => {
                m.into_iter().map(|(k, v)| (k, v.as_str().map_or_else(|| v.to_string(), str::to_string))).collect()
            }
            _ => BTreeMap::new(),
        }
    }
}

/// The dynamic configuration kept in `/config` (Patroni's names; seconds).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct DynamicConfig {
    #[serde(default = "Timing::default_ttl")]
    pub ttl: u64,
    #[serde(default = "Timing::default_loop_wait")]
    pub loop_wait: f64,
    #[serde(default = "Timing::default_retry_timeout")]
    pub retry_timeout: f64,
    #[serde(default = "Timing::default_safety_margin")]
    pub safety_margin: f64,
    /// Bytes a replica may lag and still be promoted automatically.
    #[serde(default = "default_max_lag")]
    pub maximum_lag_on_failover: u64,
    /// Seconds a primary whose PostgreSQL crashed may try to restart it before giving up the key.
    #[serde(default = "default_primary_start_timeout")]
    pub primary_start_timeout: u64,
    #[serde(default)]
    pub pause: bool,
    /// Commits wait for `synchronous_node_count` standbys listed in `/sync`; only those
    /// may be promoted automatically.
    #[serde(default)]
    pub synchronous_mode: bool,
    /// Never fall back to asynchronous replication: with no standby available, commits block.
    #[serde(default)]
    pub synchronous_mode_strict: bool,
    #[serde(default = "default_sync_count")]
    pub synchronous_node_count: u32,
    /// A synchronous standby lagging more bytes than this is replaced (-1: never, Patroni's default).
    #[serde(default = "minus_one")]
    pub maximum_lag_on_syncnode: i64,
    /// Without the store's quorum, the primary keeps running while every other member
    /// confirms over REST (and promises not to take over for a ttl).
    #[serde(default)]
    pub failsafe_mode: bool,
    #[serde(default)]
    pub postgresql: DynamicPostgres,
    #[serde(default)]
    pub liveness: LivenessConfig,
    /// Permanent replication slots (see `slots`).
    #[serde(default, skip_serializing_if = "PermanentSlots::is_empty")]
    pub slots: PermanentSlots,
    /// Slots the agent never drops.
    #[serde(default, skip_serializing_if = "IgnoreSlots::is_empty")]
    pub ignore_slots: IgnoreSlots,
    /// The cluster replicates from another cluster's primary (see `standby`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub standby_cluster: Option<crate::standby::StandbyCluster>,
}

/// `liveness:` in `/config`: how often a fresh connection probes PostgreSQL, how long one
/// probe may take, and after how many failed probes in a row PostgreSQL counts as hung
/// (see `postgres::liveness` and `ha::hung`). Seconds. The defaults (1 s, 2 s, 3) find a
/// frozen server within about 7 s and leave a busy one alone: on a healthy server a
/// probe (a connection, one read, one tiny commit) takes milliseconds even under
/// `pgbench -c 32` on two cores, far from 2 s, and three must fail in a row.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct LivenessConfig {
    /// `false` turns the probe and its decisions off.
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Seconds from the start of one probe to the start of the next.
    #[serde(default = "default_liveness_interval")]
    pub interval: f64,
    /// Seconds each step of a probe (connect and read; the primary's write) may take.
    #[serde(default = "default_liveness_timeout")]
    pub timeout: f64,
    /// Failed probes in a row that make PostgreSQL hung.
    #[serde(default = "default_liveness_max_failures")]
    pub max_failures: u32,
}

fn default_liveness_interval() -> f64 {
    1.0
}

fn default_liveness_timeout() -> f64 {
    2.0
}

fn default_liveness_max_failures() -> u32 {
    3
}

impl Default for LivenessConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            interval: default_liveness_interval(),
            timeout: default_liveness_timeout(),
            max_failures: default_liveness_max_failures(),
        }
    }
}

impl LivenessConfig {
    pub fn interval(&self) -> std::time::Duration {
        std::time::Duration::from_secs_f64(self.interval)
    }

    pub fn timeout(&self) -> std::time::Duration {
        std::time::Duration::from_secs_f64(self.timeout)
    }

    /// One clear error per bad value.
    fn check(&self) -> Result<(), Invalid> {
        for (name, value) in [("interval", self.interval), ("timeout", self.timeout)] {
            if !(value.is_finite() && (0.05..=3600.0).contains(&value)) {
                return Err(Invalid(format!("liveness.{name} must be between 0.05 and 3600 seconds, not {value}")));
            }
        }
        if self.max_failures == 0 {
            return Err(Invalid("liveness.max_failures must be at least 1 (use liveness.enabled: false to turn the probe off)".into()));
        }
        Ok(())
    }
}

#[derive(Debug, Clone, PartialEq, Default, Deserialize, Serialize)]
pub struct DynamicPostgres {
    #[serde(default)]
    pub parameters: BTreeMap<String, serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub use_pg_rewind: Option<bool>,
}

fn minus_one() -> i64 {
    -1
}

fn default_sync_count() -> u32 {
    1
}

fn default_max_lag() -> u64 {
    1024 * 1024
}

fn default_primary_start_timeout() -> u64 {
    300
}

impl Default for DynamicConfig {
    fn default() -> Self {
        // An empty mapping takes every default; this cannot fail.
        serde_json::from_value(serde_json::json!({})).unwrap_or_else(|_| unreachable!())
    }
}

impl DynamicConfig {
    pub fn timing(&self) -> Timing {
        Timing::from_seconds(self.ttl, self.loop_wait, self.retry_timeout, self.safety_margin)
    }

    /// Every timing rule this configuration relies on (`timing`): failsafe's too when on.
    pub fn check_timing(&self) -> Result<(), Invalid> {
        let timing = self.timing();
        timing.check()?;
        if self.failsafe_mode {
            timing.check_failsafe()?;
        }
        Ok(())
    }

    /// Reads `/config`; unknown keys are kept out here, so a `/config` written before
    /// (or by Patroni) still works; every write is checked by `config_keys::check_dynamic`.
    pub fn from_json(value: &serde_json::Value) -> Result<Self, Invalid> {
        let mut known = serde_json::Map::new();
        if let Some(obj) = value.as_object() {
            for key in [
                "ttl",
                "loop_wait",
                "retry_timeout",
                "safety_margin",
                "maximum_lag_on_failover",
                "primary_start_timeout",
                "pause",
                "synchronous_mode",
                "synchronous_mode_strict",
                "synchronous_node_count",
                "maximum_lag_on_syncnode",
                "failsafe_mode",
                "postgresql",
                "liveness",
                "slots",
                "ignore_slots",
                "standby_cluster",
            ] {
                if let Some(v) = obj.get(key) {
                    known.insert(key.to_string(), v.clone());
                }
            }
        }
        let config: DynamicConfig = serde_json::from_value(serde_json::Value::Object(known)).map_err(|e| Invalid(e.to_string()))?;
        config.check_timing()?;
        config.liveness.check()?;
        config.standby_cluster.as_ref().map(crate::standby::StandbyCluster::check).transpose()?;
        if config.synchronous_node_count == 0 {
            return Err(Invalid("synchronous_node_count must be at least 1".into()));
        }
        Ok(config)
    }
}

impl RawAgentConfig {
    /// Step two: checks and fills defaults. `None` when the file has no `postgresql`
    /// section (a store-only node).
    pub fn validate(self, name: &str) -> Result<Option<AgentConfig>, Invalid> {
        let Some(postgresql) = self.postgresql else {
            if self.restapi.is_some() || self.scope.is_some() {
                return Err(Invalid(
                    "restapi/scope given without a postgresql section: add postgresql (data_dir, listen, authentication)".into(),
                ));
            }
            return Ok(None);
        };
        let scope = self.scope.ok_or_else(|| Invalid("scope is required with a postgresql section (e.g. scope: demo)".into()))?;
        if scope.is_empty() || scope.contains('/') {
            return Err(Invalid(format!("scope must be a non-empty name without '/', not {scope:?}")));
        }
        let restapi =
            self.restapi.ok_or_else(|| Invalid("restapi.listen is required with a postgresql section (e.g. 127.0.0.1:8008)".into()))?;
        check_host_port("restapi.listen", &restapi.listen)?;
        check_host_port("restapi.connect_address", restapi.connect_address())?;
        let rest_tls = restapi.tls().map_err(|e| Invalid(e.to_string()))?;
        check_host_port("postgresql.listen", &postgresql.listen)?;
        check_host_port("postgresql.connect_address", postgresql.connect_address())?;
        postgresql.callbacks.check()?;
        if !postgresql.data_dir.is_absolute() {
            return Err(Invalid(format!("postgresql.data_dir must be an absolute path, not {}", postgresql.data_dir.display())));
        }
        for (what, creds) in [("superuser", &postgresql.authentication.superuser), ("replication", &postgresql.authentication.replication)]
        {
            if creds.username.is_empty() || creds.password.is_empty() {
                return Err(Invalid(format!("postgresql.authentication.{what} needs a username and a password")));
            }
        }
        if self.tags.nostream && postgresql.restore_command().is_none() {
            return Err(Invalid(
                "tags.nostream needs a restore_command (postgresql.recovery_conf.restore_command or postgresql.parameters.restore_command): a replica that does not stream replays WAL only from the archive".into(),
            ));
        }
        let create_replica =
            CreateReplica::read(&postgresql.create_replica_methods, postgresql.basebackup.as_ref(), postgresql.method_sections.clone())?;
        let bootstrap = self.bootstrap.unwrap_or_default();
        let plan = BootstrapPlan::read(bootstrap.method.as_deref(), bootstrap.post_bootstrap, bootstrap.post_init, bootstrap.sections)?;
        let bootstrap_dcs = bootstrap.dcs;
        bootstrap_dcs.check_timing().map_err(|e| Invalid(format!("bootstrap.dcs: {e}")))?;
        bootstrap_dcs.liveness.check().map_err(|e| Invalid(format!("bootstrap.dcs: {e}")))?;
        bootstrap_dcs
            .standby_cluster
            .as_ref()
            .map(crate::standby::StandbyCluster::check)
            .transpose()
            .map_err(|e| Invalid(format!("bootstrap.dcs: {e}")))?;
        let watchdog = self.watchdog.unwrap_or_default();
        if watchdog.mode != WatchdogMode::Off {
            if watchdog.timeout == 0 {
                return Err(Invalid("watchdog.timeout must be at least 1 second".into()));
            }
            bootstrap_dcs
                .timing()
                .check_with_watchdog(std::time::Duration::from_secs(watchdog.timeout))
                .map_err(|e| Invalid(format!("bootstrap.dcs with the watchdog: {e}")))?;
        }
        Ok(Some(AgentConfig {
            name: name.to_string(),
            scope,
            namespace: self.namespace.unwrap_or_else(|| "/service/".into()),
            restapi,
            postgresql,
            bootstrap_dcs,
            tags: self.tags,
            watchdog,
            rest_tls,
            create_replica,
            bootstrap: plan,
        }))
    }
}

fn check_host_port(what: &str, value: &str) -> Result<(), Invalid> {
    let bad = || Invalid(format!("{what} must be HOST:PORT (e.g. 127.0.0.1:5432), not {value:?}"));
    let (host, port) = value.rsplit_once(':').ok_or_else(bad)?;
    if host.is_empty() || port.parse::<u16>().is_err() {
        return Err(bad());
    }
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A valid configuration of node1 (MINIMAL), for other modules' tests.
    pub(crate) fn agent_config() -> AgentConfig {
        let raw: RawAgentConfig = serde_norway::from_str(MINIMAL).expect("yaml");
        raw.validate("node1").expect("valid").expect("agent")
    }

    const MINIMAL: &str = r#"
scope: demo
restapi: {listen: "127.0.0.1:8008"}
postgresql:
  listen: "127.0.0.1:5432"
  data_dir: /tmp/x/pgdata
  authentication:
    superuser: {username: postgres, password: secret}
    replication: {username: replicator, password: rep}
"#;

    #[test]
    fn minimal_config_takes_defaults() {
        let c = agent_config();
        assert_eq!(c.namespace, "/service/");
        assert_eq!(c.postgresql.bin_dir, PathBuf::from(DEFAULT_BIN_DIR));
        assert_eq!(c.postgresql.conn_url(), "postgres://127.0.0.1:5432/postgres");
        assert_eq!(c.postgresql.pgpass_path(), PathBuf::from("/tmp/x/.pgpass"));
        assert_eq!(c.bootstrap_dcs, DynamicConfig::default());
        assert!(format!("{:?}", c.postgresql.authentication).contains("<hidden>"));
    }

    #[test]
    fn bad_configs_say_what_is_wrong() {
        let raw: RawAgentConfig = serde_norway::from_str(&MINIMAL.replace("scope: demo", "")).expect("yaml");
        assert!(raw.validate("n").expect_err("no scope").0.contains("scope is required"));
        let raw: RawAgentConfig = serde_norway::from_str(&MINIMAL.replace("/tmp/x/pgdata", "pgdata")).expect("yaml");
        assert!(raw.validate("n").expect_err("relative").0.contains("absolute"));
        let raw: RawAgentConfig =
            serde_norway::from_str(&format!("{MINIMAL}bootstrap: {{dcs: {{ttl: 1, retry_timeout: 5}}}}\n")).expect("yaml");
        assert!(raw.validate("n").expect_err("timing").0.contains("bootstrap.dcs"));
        let raw = serde_norway::from_str::<RawAgentConfig>(&format!("{MINIMAL}tags: {{nofailover: maybe}}\n"));
        assert!(raw.expect_err("a standard tag keeps its type").to_string().contains("nofailover"));
        let vip = format!("{MINIMAL}  callbacks: {{on_role_change: /nonexistent/vip.sh}}\n");
        let raw: RawAgentConfig = serde_norway::from_str(&vip).expect("yaml");
        assert_eq!(raw.validate("n").expect_err("no script").0, "postgresql.callbacks.on_role_change: /nonexistent/vip.sh does not exist");
        let https = MINIMAL.replace(r#"listen: "127.0.0.1:8008""#, r#"listen: "127.0.0.1:8008", certfile: /nonexistent/n.pem"#);
        let raw: RawAgentConfig = serde_norway::from_str(&https).expect("yaml");
        assert_eq!(raw.restapi.as_ref().map(RestApiConfig::api_url).as_deref(), Some("https://127.0.0.1:8008/patroni"));
        assert!(raw.validate("n").expect_err("no file").0.starts_with("restapi.certfile /nonexistent/n.pem: cannot read it"));
    }

    #[test]
    fn a_standby_cluster_in_bootstrap_dcs_is_checked_at_startup() {
        let read = |section: &str| {
            let raw: RawAgentConfig =
                serde_norway::from_str(&format!("{MINIMAL}bootstrap: {{dcs: {{standby_cluster: {section}}}}}\n")).expect("yaml");
            raw.validate("n")
        };
        let c = read("{host: 10.0.1.10, port: 5433}").expect("valid").expect("agent");
        assert_eq!(c.bootstrap_dcs.standby_cluster.and_then(|s| s.upstream()).map(|u| (u.host, u.port)), Some(("10.0.1.10".into(), 5433)));
        let e = read("{port: 5433}").expect_err("no remote").0;
        assert_eq!(
            e,
            "bootstrap.dcs: standby_cluster needs host (the remote primary, with port) or restore_command (to replay an archive)"
        );
    }

    #[test]
    fn custom_tags_are_kept_beside_the_standard_ones() {
        let raw: RawAgentConfig =
            serde_norway::from_str(&format!("{MINIMAL}tags: {{nosync: true, dc: east, rack: 3, spare: false, gone: ~}}\n")).expect("yaml");
        let tags = raw.validate("n").expect("valid").expect("agent").tags;
        assert!(tags.nosync);
        let custom: Vec<(&str, String)> = tags.custom.iter().map(|(k, v)| (k.as_str(), v.to_string())).collect();
        assert_eq!(custom, [("dc", "\"east\"".to_string()), ("rack", "3".into()), ("spare", "false".into())], "null is no tag");
        let json = serde_json::to_value(&tags).expect("json");
        assert_eq!(json, serde_json::json!({"nosync": true, "dc": "east", "rack": 3, "spare": false}), "published flat, as Patroni's");
        let back: Tags = serde_json::from_value(json).expect("a member key's tags read back");
        assert_eq!(back, tags);
        let map = tags.as_map();
        assert_eq!((map["dc"].as_str(), map["rack"].as_str(), map["spare"].as_str()), ("east", "3", "false"));
    }

    #[test]
    fn dynamic_config_ignores_patroni_only_keys() {
        let c = DynamicConfig::from_json(&serde_json::json!({"ttl": 3, "master_start_timeout": 1, "pause": true})).expect("valid");
        assert_eq!(c.ttl, 3);
        assert!(c.pause);
        assert!(DynamicConfig::from_json(&serde_json::json!({"ttl": 1, "safety_margin": 2})).is_err());
    }

    #[test]
    fn dynamic_config_reads_permanent_slots_and_refuses_bad_ones() {
        let c = DynamicConfig::from_json(&serde_json::json!({"slots": {"cdc": {"type": "logical", "database": "postgres", "plugin": "test_decoding"}}, "ignore_slots": [{"name": "mine"}]}))
            .expect("valid");
        assert!(c.slots.has_logical());
        assert!(c.ignore_slots.ignored("mine", &crate::slots::SlotKind::Physical));
        let e = DynamicConfig::from_json(&serde_json::json!({"slots": {"cdc": {"type": "logical", "plugin": "pgoutput"}}}))
            .expect_err("no database")
            .0;
        assert_eq!(e, "slots.cdc: a logical slot needs a database and a plugin (e.g. database: postgres, plugin: pgoutput)");
        let written = serde_json::to_value(&c).expect("json");
        assert_eq!(DynamicConfig::from_json(&written).expect("reads back"), c, "bootstrap.dcs is written to /config with its slots");
    }

    #[test]
    fn liveness_is_on_by_default_and_checked() {
        let c = DynamicConfig::from_json(&serde_json::json!({})).expect("valid");
        assert_eq!(c.liveness, LivenessConfig { enabled: true, interval: 1.0, timeout: 2.0, max_failures: 3 });
        let c = DynamicConfig::from_json(&serde_json::json!({"liveness": {"timeout": 5, "max_failures": 4}})).expect("valid");
        assert_eq!((c.liveness.interval, c.liveness.timeout, c.liveness.max_failures), (1.0, 5.0, 4));
        let bad = |v: serde_json::Value| DynamicConfig::from_json(&serde_json::json!({ "liveness": v })).expect_err("invalid").0;
        assert!(bad(serde_json::json!({"max_failures": 0})).contains("liveness.max_failures must be at least 1"));
        assert!(bad(serde_json::json!({"interval": 0})).contains("liveness.interval must be between"));
        assert!(bad(serde_json::json!({"timeout": -1})).contains("liveness.timeout must be between"));
        assert!(bad(serde_json::json!({"timout": 1})).contains("unknown field `timout`"));
    }

    #[test]
    fn failsafe_mode_needs_its_round_inside_the_safety_margin() {
        let patroni_like = serde_json::json!({"failsafe_mode": true, "ttl": 30, "loop_wait": 10, "retry_timeout": 10, "safety_margin": 5});
        let e = DynamicConfig::from_json(&patroni_like).expect_err("Patroni-like timing with failsafe").0;
        assert!(e.starts_with("failsafe_mode needs") && e.contains("retry_timeout (10.000s)"), "{e}");
        DynamicConfig::from_json(&serde_json::json!({"failsafe_mode": true, "retry_timeout": 0.4})).expect("fits the default margin");
        let raw: RawAgentConfig = serde_norway::from_str(&format!("{MINIMAL}bootstrap: {{dcs: {{failsafe_mode: true}}}}\n")).expect("yaml");
        let e = raw.validate("n").expect_err("default timing leaves no room").0;
        assert!(e.starts_with("bootstrap.dcs: failsafe_mode needs"), "{e}");
    }
}
