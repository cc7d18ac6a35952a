//! Re-reading the node's file (SIGHUP, `raftctl reload`, `POST /reload`): which of its
//! settings take effect at once and which wait for a restart of raftgres. [`merge`] is
//! pure: from the running configuration and the file's new one, the configuration to
//! run with and one line per changed setting that needs a restart (the running value is
//! kept for those). A file that no longer reads is refused by its reader ([`Source`])
//! with one error, and the running configuration stays.
//!
//! Live: `postgresql.parameters` and `postgresql.recovery_conf` (written and reloaded
//! into PostgreSQL; the ones that need a PostgreSQL restart then show as pending
//! restart), `postgresql.pg_hba`,
//! `postgresql.callbacks` (the next callback runs the new command), `tags`,
//! `restapi.authentication`. Everything else names the process's identity, addresses,
//! files or credentials, and `unix_socket_directories` is where the agent connects:
//! those wait for a restart.

use std::sync::Arc;

use crate::config::AgentConfig;

/// Reads the node's file again (the binary knows where it is and how it is read).
pub type Source = Arc<dyn Fn() -> Result<AgentConfig, String> + Send + Sync>;

/// The outcome of a re-read.
#[derive(Debug, Clone)]
pub struct Merged {
    /// What to run with: the new live settings, the running values of the rest.
    pub config: AgentConfig,
    /// The live settings that changed.
    pub applied: Vec<&'static str>,
    /// One line per changed setting that waits for a restart of raftgres.
    pub need_restart: Vec<String>,
}

const SOCKETS: &str = "unix_socket_directories";

/// Merges the file's `new` configuration into the `running` one.
pub fn merge(running: &AgentConfig, new: AgentConfig) -> Merged {
    let mut config = running.clone();
    let mut applied = Vec::new();
    let (r, n) = (running, &new);
    let mut parameters = n.postgresql.parameters.clone();
    let sockets_changed = parameters.get(SOCKETS) != r.postgresql.parameters.get(SOCKETS);
    match r.postgresql.parameters.get(SOCKETS) {
        Some(v) => parameters.insert(SOCKETS.into(), v.clone()),
        None => parameters.remove(SOCKETS),
    };
    if parameters != r.postgresql.parameters {
        config.postgresql.parameters = parameters;
        applied.push("postgresql.parameters");
    }
    if n.postgresql.recovery_conf != r.postgresql.recovery_conf {
        config.postgresql.recovery_conf = n.postgresql.recovery_conf.clone();
        applied.push("postgresql.recovery_conf");
    }
    if n.postgresql.pg_hba != r.postgresql.pg_hba {
        config.postgresql.pg_hba = n.postgresql.pg_hba.clone();
        applied.push("postgresql.pg_hba");
    }
    if n.postgresql.callbacks != r.postgresql.callbacks {
        config.postgresql.callbacks = n.postgresql.callbacks.clone();
        applied.push("postgresql.callbacks");
    }
    if n.tags != r.tags {
        config.tags = n.tags.clone();
        applied.push("tags");
    }
    if n.restapi.authentication != r.restapi.authentication {
        config.restapi.authentication = n.restapi.authentication.clone();
        applied.push("restapi.authentication");
    }
    let (rp, np) = (&r.postgresql, &n.postgresql);
    let (ra, na) = (&r.restapi, &n.restapi);
    let restart_only = [
        ("name", n.name != r.name),
        ("scope", n.scope != r.scope),
        ("namespace", n.namespace != r.namespace),
        ("restapi.listen", na.listen != ra.listen),
        ("restapi.connect_address", na.connect_address != ra.connect_address),
        (
            "restapi TLS (certfile, keyfile, cafile, verify_client)",
            (&na.certfile, &na.keyfile, &na.cafile, na.verify_client) != (&ra.certfile, &ra.keyfile, &ra.cafile, ra.verify_client),
        ),
        ("postgresql.listen", np.listen != rp.listen),
        ("postgresql.connect_address", np.connect_address != rp.connect_address),
        ("postgresql.data_dir", np.data_dir != rp.data_dir),
        ("postgresql.bin_dir", np.bin_dir != rp.bin_dir),
        ("postgresql.pgpass", np.pgpass != rp.pgpass),
        ("postgresql.authentication", np.authentication != rp.authentication),
        ("postgresql.use_pg_rewind", np.use_pg_rewind != rp.use_pg_rewind),
        ("postgresql.use_slots", np.use_slots != rp.use_slots),
        (
            "postgresql.remove_data_directory_on_rewind_failure",
            np.remove_data_directory_on_rewind_failure != rp.remove_data_directory_on_rewind_failure,
        ),
        ("postgresql.parameters.unix_socket_directories (the agent connects through it)", sockets_changed),
        ("postgresql.create_replica_methods (with basebackup and the methods' sections)", n.create_replica != r.create_replica),
        ("bootstrap.method (with its section) or post_bootstrap", n.bootstrap != r.bootstrap),
        ("watchdog", n.watchdog != r.watchdog),
    ];
    let mut need_restart: Vec<String> = restart_only
        .iter()
        .filter(|(_, changed)| *changed)
        .map(|(key, _)| format!("{key} changed: restart raftgres to apply it"))
        .collect();
    if n.bootstrap_dcs != r.bootstrap_dcs {
        need_restart.push(
            "bootstrap.dcs changed: it is read only when the cluster is created; change the running cluster with `raftctl edit-config`"
                .into(),
        );
    }
    Merged { config, applied, need_restart }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Credentials;

    fn config() -> AgentConfig {
        crate::config::tests::agent_config()
    }

    #[test]
    fn the_reload_table() {
        type Edit = fn(&mut AgentConfig);
        // (case, the edit to the file, live settings applied, words of the restart lines)
        let rows: [(&str, Edit, &[&str], &[&str]); 11] = [
            ("nothing changed", |_| {}, &[], &[]),
            (
                "a parameter",
                |c| {
                    c.postgresql.parameters.insert("work_mem".into(), "12MB".into());
                },
                &["postgresql.parameters"],
                &[],
            ),
            ("pg_hba", |c| c.postgresql.pg_hba = vec!["local all all trust".into()], &["postgresql.pg_hba"], &[]),
            ("tags", |c| c.tags.nofailover = true, &["tags"], &[]),
            (
                "recovery_conf",
                |c| {
                    c.postgresql.recovery_conf.insert("restore_command".into(), "cp /a/%f %p".into());
                },
                &["postgresql.recovery_conf"],
                &[],
            ),
            ("callbacks", |c| c.postgresql.callbacks.on_role_change = Some("vip.sh".into()), &["postgresql.callbacks"], &[]),
            (
                "REST credentials",
                |c| c.restapi.authentication = Some(Credentials { username: "u".into(), password: "p".into() }),
                &["restapi.authentication"],
                &[],
            ),
            ("the name", |c| c.name = "other".into(), &[], &["name changed: restart raftgres"]),
            (
                "addresses and data dir",
                |c| {
                    c.postgresql.listen = "127.0.0.1:6000".into();
                    c.postgresql.data_dir = "/elsewhere".into();
                    c.restapi.listen = "127.0.0.1:9000".into();
                },
                &[],
                &["restapi.listen changed", "postgresql.listen changed", "postgresql.data_dir changed"],
            ),
            (
                "the socket directory: waits, the other parameters apply",
                |c| {
                    c.postgresql.parameters.insert(SOCKETS.into(), "/s".into());
                    c.postgresql.parameters.insert("work_mem".into(), "12MB".into());
                },
                &["postgresql.parameters"],
                &["unix_socket_directories (the agent connects through it) changed"],
            ),
            ("bootstrap.dcs", |c| c.bootstrap_dcs.ttl = 9, &[], &["bootstrap.dcs changed: it is read only when the cluster is created"]),
        ];
        for (case, edit, applied, restart) in rows {
            let running = config();
            let mut new = config();
            edit(&mut new);
            let m = merge(&running, new.clone());
            assert_eq!(m.applied, applied, "{case}");
            assert_eq!(m.need_restart.len(), restart.len(), "{case}: {:?}", m.need_restart);
            for (line, words) in m.need_restart.iter().zip(restart) {
                assert!(line.contains(words), "{case}: {line:?} lacks {words:?}");
            }
            // Live settings are taken, the others keep their running values.
            assert_eq!((m.config.tags, m.config.postgresql.pg_hba), (new.tags, new.postgresql.pg_hba), "{case}");
            assert_eq!(m.config.postgresql.callbacks, new.postgresql.callbacks, "{case}");
            assert_eq!((m.config.name, m.config.postgresql.listen), (running.name.clone(), running.postgresql.listen.clone()), "{case}");
            assert_eq!(m.config.postgresql.parameters.get(SOCKETS), running.postgresql.parameters.get(SOCKETS), "{case}");
        }
    }
}
