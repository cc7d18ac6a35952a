use std::collections::BTreeSet;

use super::*;
use crate::config::RawAgentConfig;

/// Modelled on Patroni's `postgres0.yml` (its shape; our own values).
const PATRONI_EXAMPLE: &str = r#"
scope: orders
namespace: /service/
name: pg-a
restapi:
  listen: 127.0.0.1:8008
  connect_address: 127.0.0.1:8008
etcd3:
  host: 127.0.0.1:2379
bootstrap:
  dcs:
    ttl: 30
    loop_wait: 10
    retry_timeout: 10
    maximum_lag_on_failover: 1048576
    postgresql:
      use_pg_rewind: true
      parameters:
        wal_keep_size: 128MB
  initdb:
  - encoding: UTF8
  - data-checksums
postgresql:
  listen: 127.0.0.1:5432
  connect_address: 127.0.0.1:5432
  data_dir: /var/lib/pg/a
  pgpass: /tmp/pgpass-a
  authentication:
    replication: {username: replicator, password: rep-pass}
    superuser: {username: postgres, password: su-pass}
    rewind: {username: rewinder, password: rw-pass}
  parameters:
    unix_socket_directories: '..'
  pg_hba:
  - host replication replicator 127.0.0.1/32 md5
  - host all all 0.0.0.0/0 md5
tags:
  noloadbalance: false
  clonefrom: false
  nosync: false
"#;

/// A production-style file with every common section, the unsupported ones included.
const PRODUCTION: &str = r#"
scope: billing
name: db1
log: {level: INFO, dir: /var/log/patroni}
etcd: {hosts: "10.0.0.1:2379,10.0.0.2:2379"}
restapi:
  listen: 0.0.0.0:8008
  connect_address: 10.0.0.1:8008
  certfile: /etc/patroni/rest.pem
  authentication: {username: admin, password: s3cret}
  allowlist: [10.0.0.0/24]
ctl: {insecure: false}
bootstrap:
  dcs:
    ttl: 30
    loop_wait: 10
    retry_timeout: 10
    maximum_lag_on_failover: 1048576
    synchronous_mode: true
    master_start_timeout: 300
    standby_cluster: {host: 10.1.0.1, port: 5432}
    slots: {debezium: {type: logical, database: app, plugin: pgoutput}}
    postgresql:
      use_pg_rewind: true
      use_slots: true
      pg_hba: [host all all 0.0.0.0/0 scram-sha-256]
      parameters: {max_connections: 300, wal_level: logical}
  post_bootstrap: /usr/local/bin/setup-db.sh
postgresql:
  listen: 0.0.0.0:5432
  connect_address: 10.0.0.1:5432
  data_dir: /var/lib/postgresql/15/main
  bin_dir: /usr/lib/postgresql/15/bin
  authentication:
    superuser: {username: postgres, password: pw1}
    replication: {username: replicator, password: pw2, sslmode: require}
  callbacks: {on_role_change: /usr/local/bin/move-vip.sh}
  create_replica_methods: [pgbackrest, basebackup]
  basebackup: {max-rate: 100M, checkpoint: fast}
  recovery_conf: {restore_command: "pgbackrest archive-get %f %p"}
  parameters: {shared_buffers: 2GB}
watchdog: {mode: automatic, device: /dev/watchdog, safety_margin: 5}
tags: {nofailover: false, noloadbalance: false}
"#;

fn doc(yaml: &str) -> Map<String, Value> {
    let value: serde_norway::Value = serde_norway::from_str(yaml).expect("yaml");
    match serde_json::to_value(value).expect("json") {
        Value::Object(m) => m,
        other => panic!("not a mapping: {other}"),
    }
}

/// The paths with each kind of outcome (`name` is the store's key: applied).
fn sorted(yaml: &str) -> (BTreeSet<String>, BTreeSet<String>, BTreeSet<String>) {
    let table: Vec<Key> = NODE_SECTIONS.iter().copied().chain([applied("name")]).collect();
    let (mut applied_keys, mut warned, mut refused) = (BTreeSet::new(), BTreeSet::new(), BTreeSet::new());
    for (path, outcome) in outcomes(&doc(yaml), &table) {
        match outcome {
            Outcome::Applied => applied_keys.insert(path),
            Outcome::Warned(_) => warned.insert(path),
            Outcome::Refused(_) => refused.insert(path),
        };
    }
    (applied_keys, warned, refused)
}

fn set(paths: &[&str]) -> BTreeSet<String> {
    paths.iter().map(|p| p.to_string()).collect()
}

#[test]
fn patroni_example_is_applied_but_for_the_external_dcs_initdb_and_rewind_user() {
    let (applied_keys, warned, refused) = sorted(PATRONI_EXAMPLE);
    assert_eq!(warned, set(&["etcd3", "bootstrap.initdb", "postgresql.authentication.rewind"]));
    assert!(refused.is_empty(), "{refused:?}");
    assert_eq!(
        applied_keys,
        set(&[
            "scope",
            "namespace",
            "name",
            "restapi.listen",
            "restapi.connect_address",
            "bootstrap.dcs.ttl",
            "bootstrap.dcs.loop_wait",
            "bootstrap.dcs.retry_timeout",
            "bootstrap.dcs.maximum_lag_on_failover",
            "bootstrap.dcs.postgresql.use_pg_rewind",
            "bootstrap.dcs.postgresql.parameters.wal_keep_size",
            "postgresql.listen",
            "postgresql.connect_address",
            "postgresql.data_dir",
            "postgresql.pgpass",
            "postgresql.authentication.replication.username",
            "postgresql.authentication.replication.password",
            "postgresql.authentication.superuser.username",
            "postgresql.authentication.superuser.password",
            "postgresql.parameters.unix_socket_directories",
            "postgresql.pg_hba",
            "tags.noloadbalance",
            "tags.clonefrom",
            "tags.nosync",
        ])
    );
}

#[test]
fn patroni_example_runs_after_its_warnings() {
    let mut d = doc(PATRONI_EXAMPLE);
    let warnings = check_node_file(&mut d, &["name"]).expect("accepted");
    assert_eq!(warnings.len(), 3);
    assert!(warnings.iter().any(|w| w.starts_with("etcd3: the store is embedded")), "{warnings:?}");
    d.remove("name");
    let raw: RawAgentConfig = serde_json::from_value(Value::Object(d)).expect("the applied keys read");
    let c = raw.validate("pg-a").expect("valid").expect("agent");
    assert_eq!((c.bootstrap_dcs.ttl, c.bootstrap_dcs.loop_wait), (30, 10.0));
    assert_eq!(c.postgresql.pg_hba.len(), 2);
}

#[test]
fn production_file_says_what_it_refuses_and_warns_about() {
    let (applied_keys, warned, refused) = sorted(PRODUCTION);
    assert_eq!(warned, set(&["log", "etcd", "ctl", "watchdog.safety_margin"]));
    assert_eq!(
        refused,
        set(&[
            "restapi.allowlist",
            "bootstrap.dcs.master_start_timeout",
            "bootstrap.dcs.postgresql.use_slots",
            "bootstrap.dcs.postgresql.pg_hba",
            "postgresql.authentication.replication.sslmode",
        ])
    );
    for path in [
        "restapi.certfile",
        "restapi.authentication.password",
        "bootstrap.dcs.synchronous_mode",
        "bootstrap.dcs.slots",
        "bootstrap.dcs.standby_cluster.host",
        "bootstrap.post_bootstrap",
        "postgresql.create_replica_methods",
        "postgresql.basebackup",
        "watchdog.mode",
        "tags.nofailover",
        "postgresql.callbacks.on_role_change",
        "postgresql.recovery_conf.restore_command",
    ] {
        assert!(applied_keys.contains(path), "{path} not applied: {applied_keys:?}");
    }
    let e = check_node_file(&mut doc(PRODUCTION), &["name"]).expect_err("refused").0;
    assert_eq!(e, "bootstrap.dcs.master_start_timeout is refused: Patroni's old name: use primary_start_timeout");
}

#[test]
fn typos_are_refused_with_the_near_name() {
    let e = check_dynamic(&serde_json::json!({"loop_wiat": 5})).expect_err("typo").0;
    assert_eq!(e, "loop_wiat is not a known setting: did you mean loop_wait?");
    let e = check_dynamic(&serde_json::json!({"postgresql": {"use_pg_rewnd": true}})).expect_err("typo").0;
    assert_eq!(e, "postgresql.use_pg_rewnd is not a known setting: did you mean use_pg_rewind?");
    let e = check_dynamic(&serde_json::json!({"standby_cluster": {"host": "h", "prot": 5432}})).expect_err("typo").0;
    assert_eq!(e, "standby_cluster.prot is not a known setting: did you mean port?");
    let e = check_dynamic(&serde_json::json!({"frobnicate": 1})).expect_err("unknown").0;
    assert_eq!(e, "frobnicate is not a known setting");
    let e = check_dynamic(&serde_json::json!({"member_slots_ttl": 0})).expect_err("refused").0;
    assert!(e.starts_with("member_slots_ttl is refused: replicas keep no slots for the other members"), "{e}");
    check_dynamic(&serde_json::json!({"slots": {"cdc": {"type": "logical"}}, "ignore_slots": [{"name": "x"}]}))
        .expect("applied: their values are checked when read (DynamicConfig::from_json)");
    let mut d = doc("scope: x\npostgersql: {}\n");
    let e = check_node_file(&mut d, &["listen-peer"]).expect_err("typo").0;
    assert_eq!(e, "postgersql is not a known setting: did you mean postgresql?");
    check_dynamic(&serde_json::json!({"ttl": 30, "postgresql": {"parameters": {"anything_goes": 1}}, "liveness": {"timeout": 3}}))
        .expect("applied keys");
    assert!(check_dynamic(&serde_json::json!([1])).is_err());
}

#[test]
fn a_patch_may_remove_any_key_and_set_only_known_ones() {
    check_dynamic_patch(&serde_json::json!({"slots": null, "postgresql": {"pg_hba": null}, "pause": true})).expect("removals and pause");
    let e = check_dynamic_patch(&serde_json::json!({"loop_wiat": 1, "slots": null})).expect_err("typo").0;
    assert_eq!(e, "loop_wiat is not a known setting: did you mean loop_wait?");
    let e = check_dynamic_patch(&serde_json::json!({"postgresql": {"use_slots": false}})).expect_err("node setting").0;
    assert!(e.starts_with("postgresql.use_slots is refused: set it in each node's file"), "{e}");
}

#[test]
fn parameters_the_agent_owns_are_refused_and_cluster_wide_ones_warned_in_a_node_file() {
    let e = check_dynamic_patch(&serde_json::json!({"postgresql": {"parameters": {"port": 6000}}})).expect_err("port").0;
    assert!(e.starts_with("postgresql.parameters.port is refused: the agent sets it from each node's postgresql.listen"), "{e}");
    let e = check_dynamic(&serde_json::json!({"postgresql": {"parameters": {"unix_socket_directories": "/s"}}})).expect_err("sockets").0;
    assert!(e.starts_with("postgresql.parameters.unix_socket_directories is refused: set it in each node's file"), "{e}");
    check_dynamic_patch(&serde_json::json!({"postgresql": {"parameters": {"port": null, "max_connections": 200}}})).expect("removal");
    let mut d = doc("scope: x\npostgresql: {parameters: {max_connections: 50, work_mem: 8MB}}\n");
    let warnings = check_node_file(&mut d, &[]).expect("warned");
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(warnings[0].starts_with("postgresql.parameters.max_connections: not used: it is cluster-wide"), "{warnings:?}");
    assert_eq!(d["postgresql"]["parameters"], serde_json::json!({"work_mem": "8MB"}), "the warned one is dropped");
    let mut d = doc("scope: x\npostgresql: {parameters: {primary_conninfo: host=x}}\n");
    let e = check_node_file(&mut d, &[]).expect_err("agent's own").0;
    assert!(e.starts_with("postgresql.parameters.primary_conninfo is refused: the agent sets it"), "{e}");
}

#[test]
fn edit_distance_counts_edits() {
    assert_eq!(edit_distance("loop_wiat", "loop_wait"), 2);
    assert_eq!(edit_distance("ttl", "ttl"), 0);
    assert_eq!(edit_distance("", "abc"), 3);
    assert_eq!(edit_distance("kitten", "sitting"), 3);
}

#[test]
fn method_sections_are_applied_when_a_method_names_them() {
    let yaml = "scope: x\npostgresql:\n  create_replica_methods: [repo, basebackup]\n  repo: {command: /bin/restore, no_leader: true}\n  \
                basebackup: [verbose]\nbootstrap:\n  method: pitr\n  pitr: {command: /bin/restore}\n  post_init: /bin/post\n";
    let (applied_keys, warned, refused) = sorted(yaml);
    assert!(warned.is_empty() && refused.is_empty(), "{warned:?} {refused:?}");
    for path in ["postgresql.repo", "postgresql.basebackup", "bootstrap.pitr", "bootstrap.method", "bootstrap.post_init"] {
        assert!(applied_keys.contains(path), "{path} not applied: {applied_keys:?}");
    }
    let mut d = doc("scope: x\npostgresql: {create_replica_methods: [repo], rpeo: {command: x}}\n");
    let e = check_node_file(&mut d, &[]).expect_err("a section no method names").0;
    assert_eq!(e, "postgresql.rpeo is not a known setting");
    let mut d = doc("scope: x\nbootstrap: {method: pitr, pirt: {command: x}}\n");
    let e = check_node_file(&mut d, &[]).expect_err("a section the method does not name").0;
    assert_eq!(e, "bootstrap.pirt is not a known setting");
}

#[test]
fn custom_tags_are_applied_and_a_misspelled_standard_tag_is_refused() {
    let (applied_keys, warned, refused) = sorted("tags: {dc: east, rack: 3, nosync: true, sync_group: a, async: 1}\n");
    assert_eq!(applied_keys, set(&["tags.dc", "tags.rack", "tags.nosync", "tags.sync_group", "tags.async"]));
    assert!(warned.is_empty() && refused.is_empty(), "{warned:?} {refused:?}");
    let e = check_node_file(&mut doc("tags: {nofailvoer: true}\n"), &[]).expect_err("typo").0;
    assert_eq!(e, "tags.nofailvoer is not a known setting: did you mean nofailover? (rename it if it is a tag of your own)");
    let e = check_node_file(&mut doc("tags: {no_sync: true}\n"), &[]).expect_err("typo").0;
    assert!(e.starts_with("tags.no_sync is not a known setting: did you mean nosync?"), "{e}");
    let e = check_node_file(&mut doc("postgresql: {callbacks: {on_role_chnage: /bin/true}}\n"), &[]).expect_err("typo").0;
    assert_eq!(e, "postgresql.callbacks.on_role_chnage is not a known setting: did you mean on_role_change?");
    let e = check_node_file(&mut doc("postgresql: {authentication: {superuser: {usename: x}}}\n"), &[]).expect_err("closed").0;
    assert!(e.starts_with("postgresql.authentication.superuser.usename is not a known setting"), "sections stay closed: {e}");
}

#[test]
fn recovery_conf_takes_the_recovery_settings_that_are_not_the_agents_own() {
    let (applied_keys, warned, refused) = sorted(
        "postgresql: {recovery_conf: {restore_command: 'cp /a/%f %p', archive_cleanup_command: x, recovery_min_apply_delay: 5s, primary_conninfo: host=x}}\n",
    );
    assert_eq!(
        applied_keys,
        set(&[
            "postgresql.recovery_conf.restore_command",
            "postgresql.recovery_conf.archive_cleanup_command",
            "postgresql.recovery_conf.recovery_min_apply_delay",
        ])
    );
    assert!(warned.is_empty(), "{warned:?}");
    assert_eq!(refused, set(&["postgresql.recovery_conf.primary_conninfo"]));
    let e = check_node_file(&mut doc("postgresql: {recovery_conf: {restore_comand: x}}\n"), &[]).expect_err("typo").0;
    assert_eq!(e, "postgresql.recovery_conf.restore_comand is not a known setting: did you mean restore_command?");
}

#[test]
fn the_nostream_tag_needs_a_restore_command() {
    let read = |extra: &str| -> Result<(), String> {
        let mut d = doc(&format!("{PATRONI_EXAMPLE}{extra}"));
        check_node_file(&mut d, &["name"]).map_err(|e| e.0)?;
        d.remove("name");
        let raw: RawAgentConfig = serde_json::from_value(Value::Object(d)).expect("the applied keys read");
        raw.validate("pg-a").map(|_| ()).map_err(|e| e.0)
    };
    let e = read("  nostream: true\n").expect_err("no restore_command");
    assert!(e.starts_with("tags.nostream needs a restore_command"), "{e}");
    read("  nostream: false\n").expect("only the tag set to true needs one");
    // The setting is put in the parsed document (a second `postgresql:` in the YAML would not merge).
    let mut d = doc(&format!("{PATRONI_EXAMPLE}  nostream: true\n"));
    d["postgresql"]["recovery_conf"] = serde_json::json!({"restore_command": "cp /archive/%f %p"});
    check_node_file(&mut d, &["name"]).expect("applied");
    d.remove("name");
    let raw: RawAgentConfig = serde_json::from_value(Value::Object(d.clone())).expect("read");
    let c = raw.validate("pg-a").expect("valid").expect("agent");
    assert!(c.tags.nostream);
    assert_eq!(c.postgresql.restore_command().as_deref(), Some("cp /archive/%f %p"));
    d["postgresql"]["recovery_conf"] = serde_json::json!({});
    d["postgresql"]["parameters"]["restore_command"] = serde_json::json!("cp /b/%f %p");
    let raw: RawAgentConfig = serde_json::from_value(Value::Object(d)).expect("read");
    assert_eq!(raw.validate("pg-a").expect("valid").expect("agent").postgresql.restore_command().as_deref(), Some("cp /b/%f %p"));
}
