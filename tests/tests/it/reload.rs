//! The node's own file, changed while the node runs: SIGHUP re-reads it and applies a
//! PostgreSQL parameter live, logs the settings that wait for a restart, and refuses a
//! file that no longer parses (the running configuration stays); and the node's
//! `unix_socket_directories`, which the agent connects through (its first directory).

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use anyhow::Context;
use raftgres_tests::lab::{wait_for, Lab};
use serde_norway::Value;

use crate::writes::with_logs;

const WAIT: Duration = Duration::from_secs(30);

fn node_file(lab: &Lab, i: usize) -> PathBuf {
    lab.dir.path().join(lab.name(i)).join("raftgres.yml")
}

/// Rewrites node `i`'s file after `change` edits its YAML.
pub(crate) fn edit_node_file(lab: &Lab, i: usize, change: impl FnOnce(&mut Value)) -> anyhow::Result<()> {
    let path = node_file(lab, i);
    let mut doc: Value = serde_norway::from_str(&std::fs::read_to_string(&path)?)?;
    change(&mut doc);
    std::fs::write(&path, serde_norway::to_string(&doc)?).with_context(|| format!("writing {}", path.display()))
}

/// Sets `SECTION.KEY` in a node file's YAML.
fn set(doc: &mut Value, section: &str, key: &str, value: Value) {
    let section = doc.get_mut(section).and_then(Value::as_mapping_mut).expect("section");
    section.insert(Value::from(key), value);
}

/// Sets `postgresql.parameters.NAME` in node `i`'s file.
fn set_parameter(lab: &Lab, i: usize, name: &str, value: &str) -> anyhow::Result<()> {
    edit_node_file(lab, i, |doc| {
        let pg = doc.get_mut("postgresql").and_then(Value::as_mapping_mut).expect("postgresql");
        let params = pg.entry(Value::from("parameters")).or_insert_with(|| Value::Mapping(Default::default()));
        params.as_mapping_mut().expect("parameters").insert(Value::from(name), Value::from(value));
    })
}

pub(crate) fn sighup(lab: &Lab, i: usize) -> anyhow::Result<()> {
    let pid = std::fs::read_to_string(lab.dir.path().join(lab.name(i)).join("raftgres.pid"))?;
    let out = Command::new("kill").args(["-s", "HUP", pid.trim()]).output()?;
    anyhow::ensure!(out.status.success(), "kill -HUP {pid}: {}", String::from_utf8_lossy(&out.stderr));
    Ok(())
}

fn wait_log(lab: &Lab, i: usize, words: &str) -> anyhow::Result<()> {
    wait_for(WAIT, words, || {
        anyhow::ensure!(lab.log(i).contains(words), "not logged yet");
        Ok(())
    })
}

#[test]
fn sighup_applies_the_node_file_live_and_refuses_a_broken_one() -> anyhow::Result<()> {
    let lab = Lab::up(3)?;
    with_logs(&lab, || {
        let i = (lab.primary()? + 1) % 3;
        assert_ne!(lab.psql(i, "show work_mem")?, "12MB");
        set_parameter(&lab, i, "work_mem", "12MB")?;
        edit_node_file(&lab, i, |doc| set(doc, "restapi", "connect_address", Value::from("127.0.0.1:1")))?;
        sighup(&lab, i)?;
        wait_for(WAIT, "work_mem applied by SIGHUP", || {
            anyhow::ensure!(lab.psql(i, "show work_mem")? == "12MB", "not yet");
            Ok(())
        })?;
        wait_log(&lab, i, "SIGHUP: the node's file re-read (postgresql.parameters applied)")?;
        wait_log(&lab, i, "reload: restapi.connect_address changed: restart raftgres to apply it")?;
        let good = std::fs::read_to_string(node_file(&lab, i))?;
        std::fs::write(node_file(&lab, i), format!("{good}\npostgresql: [not, a, mapping\n"))?;
        sighup(&lab, i)?;
        wait_log(&lab, i, "SIGHUP: the node's configuration file was not reloaded (the running configuration stays)")?;
        assert_eq!(lab.psql(i, "show work_mem")?, "12MB", "the running configuration stays");
        assert_eq!(lab.rest_status(i, "GET", "/health")?, 200, "the node keeps running");
        std::fs::write(node_file(&lab, i), good)?;
        set_parameter(&lab, i, "work_mem", "13MB")?;
        lab.ctl(&["reload", &lab.name(i), "--force"])?;
        wait_for(WAIT, "work_mem applied by raftctl reload", || {
            anyhow::ensure!(lab.psql(i, "show work_mem")? == "13MB", "not yet");
            Ok(())
        })?;
        Ok(())
    })
}

#[test]
fn the_agent_connects_through_the_first_of_the_nodes_socket_directories() -> anyhow::Result<()> {
    let lab = Lab::up(3)?;
    with_logs(&lab, || {
        let i = (lab.primary()? + 1) % 3;
        let sockets = lab.dir.path().join(lab.name(i)).join("sockets");
        let default_dir = lab.dir.path().join(lab.name(i)).join("run");
        std::fs::create_dir_all(&sockets)?;
        let owner = std::fs::metadata(&default_dir)?;
        std::os::unix::fs::chown(
            &sockets,
            Some(std::os::unix::fs::MetadataExt::uid(&owner)),
            Some(std::os::unix::fs::MetadataExt::gid(&owner)),
        )?;
        lab.stop(i)?;
        // Only the new directory: an agent still using its default one could not connect.
        set_parameter(&lab, i, "unix_socket_directories", &format!("{}, /tmp", sockets.display()))?;
        lab.start(i)?;
        wait_for(Duration::from_secs(60), "the replica back, its agent connected through the new socket", || {
            anyhow::ensure!(lab.rest_status(i, "GET", "/replica")? == 200, "not a running replica yet");
            Ok(())
        })?;
        let port = lab.pg_port(i).to_string();
        assert!(sockets.join(format!(".s.PGSQL.{port}")).exists(), "PostgreSQL listens in the first directory");
        assert!(!default_dir.join(format!(".s.PGSQL.{port}")).exists(), "and not in the agent's default one");
        let shown = lab.psql(i, "show unix_socket_directories")?;
        assert!(shown.starts_with(&sockets.display().to_string()), "{shown}");
        Ok(())
    })
}
