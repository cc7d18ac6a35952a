//! Replica creation methods and custom bootstrap on real PostgreSQL 15: a replica
//! restored by a user command from a `pg_basebackup -Ft` in a directory that stands for
//! a backup repository, then streaming; a failing first method falling back to
//! basebackup; a new cluster bootstrapped from another PostgreSQL's base backup and its
//! WAL archive (`restore_command`), then `post_bootstrap`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{bail, Context};
use raftgres_tests::lab::{wait_for, Lab};
use serde_json::{json, Value};

use crate::writes::with_logs;

pub(crate) const HEAL: Duration = Duration::from_secs(90);

pub(crate) fn node_file(lab: &Lab, i: usize) -> PathBuf {
    lab.dir.path().join(lab.name(i)).join("raftgres.yml")
}

pub(crate) fn read_node_file(lab: &Lab, i: usize) -> anyhow::Result<Value> {
    Ok(serde_norway::from_str(&std::fs::read_to_string(node_file(lab, i))?)?)
}

/// Rewrites node `i`'s file with `edit` applied.
pub(crate) fn edit_node_file(lab: &Lab, i: usize, edit: impl FnOnce(&mut Value)) -> anyhow::Result<()> {
    let mut doc = read_node_file(lab, i)?;
    edit(&mut doc);
    std::fs::write(node_file(lab, i), serde_norway::to_string(&doc)?)?;
    Ok(())
}

pub(crate) fn text_of(doc: &Value, pointer: &str) -> anyhow::Result<String> {
    doc.pointer(pointer).and_then(Value::as_str).map(str::to_string).with_context(|| format!("no {pointer} in the node file"))
}

/// A command run as the user the lab's nodes run as (`raftgres` when the tests run as
/// root: PostgreSQL refuses root, and the nodes must read what it writes).
pub(crate) fn as_lab_user(program: impl AsRef<std::ffi::OsStr>) -> anyhow::Result<Command> {
    if raftgres_lab::is_root() {
        let mut cmd = Command::new("runuser");
        cmd.args(["-u", &raftgres_lab::ensure_user()?.name, "--"]).arg(program);
        Ok(cmd)
    } else {
        Ok(Command::new(program))
    }
}

pub(crate) fn run(cmd: &mut Command) -> anyhow::Result<String> {
    let out = cmd.output().with_context(|| format!("running {cmd:?}"))?;
    if !out.status.success() {
        bail!("{cmd:?} failed: {}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

pub(crate) fn pg_bin(name: &str) -> PathBuf {
    Path::new(raftgres_agent::config::DEFAULT_BIN_DIR).join(name)
}

/// A directory in the lab the nodes' user owns.
pub(crate) fn lab_owned_dir(lab: &Lab, name: &str) -> anyhow::Result<PathBuf> {
    let dir = lab.dir.path().join(name);
    run(as_lab_user("mkdir")?.arg("-p").arg(&dir))?;
    Ok(dir)
}

/// An executable shell script owned by the nodes' user.
pub(crate) fn script(dir: &Path, name: &str, body: &str) -> anyhow::Result<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join(name);
    std::fs::write(&path, format!("#!/bin/sh\nset -eu\n{body}"))?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))?;
    Ok(path)
}

/// A restore from the "repository": logs its arguments, untars `base.tar` of the
/// directory given as `--repository` into `--datadir`.
pub(crate) const RESTORE: &str = r#"repo= datadir=
for arg in "$@"; do
  case "$arg" in
    --datadir=*) datadir=${arg#--datadir=} ;;
    --repository=*) repo=${arg#--repository=} ;;
  esac
done
echo "$*" >> "$repo/calls.log"
mkdir -p -m 0700 "$datadir"
tar -xf "$repo/base.tar" -C "$datadir"
"#;

/// Stops node `i`, applies `edit` to its file, empties its data dir, starts it.
pub(crate) fn recreate(lab: &Lab, i: usize, edit: impl FnOnce(&mut Value)) -> anyhow::Result<()> {
    lab.stop(i)?;
    edit_node_file(lab, i, edit)?;
    let data_dir = text_of(&read_node_file(lab, i)?, "/postgresql/data_dir")?;
    std::fs::remove_dir_all(&data_dir).with_context(|| format!("removing {data_dir}"))?;
    lab.start(i)
}

/// Waits until node `i` streams and holds `rows` rows of `t`.
fn wait_streaming_with(lab: &Lab, i: usize, rows: usize) -> anyhow::Result<()> {
    wait_for(HEAL, "the new replica streaming with every row", || {
        let status = lab.psql(i, "select status from pg_stat_wal_receiver")?;
        let count = lab.psql(i, "select count(*) from t")?;
        anyhow::ensure!(status == "streaming" && count == rows.to_string(), "{status:?}, {count} rows");
        Ok(())
    })
}

#[test]
fn a_replica_is_restored_from_a_backup_repository_then_streams_and_a_failing_method_falls_back_to_basebackup() -> anyhow::Result<()> {
    // Three nodes: the store keeps its quorum while the replica's node is stopped.
    let lab = Lab::up(3)?;
    with_logs(&lab, || {
        let primary = lab.primary()?;
        let replica = (primary + 1) % 3;
        lab.psql(primary, "create table t(v text); insert into t values ('in the backup')")?;
        let doc = read_node_file(&lab, replica)?;
        let (scope, data_dir) = (text_of(&doc, "/scope")?, text_of(&doc, "/postgresql/data_dir")?);
        let repo = lab_owned_dir(&lab, "repo")?;
        backup_into(&lab, primary, &repo)?;
        lab.psql(primary, "insert into t values ('after the backup')")?;
        let restore = script(&lab.dir.path().join(lab.name(replica)), "restore.sh", RESTORE)?;

        // The repository first, basebackup after it; the repository works.
        recreate(&lab, replica, |doc| {
            doc["postgresql"]["create_replica_methods"] = json!(["repo", "basebackup"]);
            doc["postgresql"]["repo"] = json!({"command": restore.to_string_lossy(), "repository": repo.to_string_lossy()});
        })?;
        wait_streaming_with(&lab, replica, 2)?;
        let calls = std::fs::read_to_string(repo.join("calls.log"))?;
        let expected = format!(
            "--scope={scope} --role=replica --datadir={data_dir} --connstring=host=127.0.0.1 port={} user=replicator dbname=postgres --repository={}\n",
            lab.pg_port(primary),
            repo.display()
        );
        assert_eq!(calls, expected, "one call, with Patroni's arguments and the section's option");
        assert!(lab.log(replica).contains(&format!("cloned {} with repo in", lab.name(primary))), "made by the repository method");

        // A first method that fails: the data dir is emptied and basebackup runs.
        lab.psql(primary, "insert into t values ('before the fallback')")?;
        recreate(&lab, replica, |doc| {
            doc["postgresql"]["create_replica_methods"] = json!(["broken", "basebackup"]);
            doc["postgresql"].as_object_mut().map(|m| m.remove("repo"));
            let command = format!("mkdir -p -m 0700 {data_dir} && touch {data_dir}/junk && false");
            doc["postgresql"]["broken"] = json!({"command": command, "no_params": true, "x": 1});
        })?;
        wait_streaming_with(&lab, replica, 3)?;
        let log = lab.log(replica);
        assert!(log.contains("replica method broken failed"), "the first method failed");
        assert!(log.contains(&format!("cloned {} with basebackup in", lab.name(primary))), "basebackup took over");
        assert_eq!(std::fs::read_to_string(repo.join("calls.log"))?, expected, "the repository method was not called again");
        assert!(!Path::new(&data_dir).join("junk").exists(), "the failed method's files were removed before basebackup");
        Ok(())
    })
}

/// A throw-away PostgreSQL (the cluster a backup came from), run as the nodes' user on
/// its own socket, archiving its WAL into `archive`.
struct Source {
    data: PathBuf,
    socket: PathBuf,
    port: u16,
}

impl Source {
    fn start(dir: &Path, archive: &Path) -> anyhow::Result<Self> {
        let source = Source { data: dir.join("data"), socket: dir.to_path_buf(), port: raftgres_tests::free_port() };
        run(as_lab_user(pg_bin("initdb"))?.args(["-U", "postgres", "--auth=trust", "-D"]).arg(&source.data))?;
        let options = format!(
            "-p {} -k {} -c listen_addresses='' -c archive_mode=on -c archive_command='cp %p {}/%f'",
            source.port,
            source.socket.display(),
            archive.display()
        );
        run(as_lab_user(pg_bin("pg_ctl"))?.args(["start", "-w", "-o", &options, "-l"]).arg(dir.join("log")).arg("-D").arg(&source.data))?;
        Ok(source)
    }

    fn psql(&self, sql: &str) -> anyhow::Result<String> {
        run(as_lab_user("/usr/bin/psql")?
            .args(["-X", "-At", "-v", "ON_ERROR_STOP=1", "-U", "postgres", "-d", "postgres", "-p", &self.port.to_string(), "-h"])
            .arg(&self.socket)
            .args(["-c", sql]))
    }

    fn stop(&self) -> anyhow::Result<()> {
        run(as_lab_user(pg_bin("pg_ctl"))?.args(["stop", "-m", "fast", "-w", "-D"]).arg(&self.data)).map(|_| ())
    }
}

impl Drop for Source {
    /// A test that failed half-way leaves no server behind (a stopped one: no-op).
    fn drop(&mut self) {
        if self.data.join("postmaster.pid").exists() {
            let _ = self.stop();
        }
    }
}

/// Stops the one-node lab, gives it `bootstrap`, removes the store's and PostgreSQL's
/// data (a new cluster), starts it; returns its node file.
fn bootstrap_again(lab: &Lab, bootstrap: Value) -> anyhow::Result<Value> {
    lab.stop(0)?;
    edit_node_file(lab, 0, |doc| doc["bootstrap"] = bootstrap)?;
    let doc = read_node_file(lab, 0)?;
    for key in ["/data-dir", "/postgresql/data_dir"] {
        let path = text_of(&doc, key)?;
        std::fs::remove_dir_all(&path).with_context(|| format!("removing {path}"))?;
    }
    lab.start(0)?;
    Ok(doc)
}

#[test]
fn a_failing_post_bootstrap_aborts_the_bootstrap() -> anyhow::Result<()> {
    let lab = Lab::up(1)?;
    with_logs(&lab, || {
        bootstrap_again(&lab, json!({"post_bootstrap": "echo no users today >&2; exit 4"}))?;
        // The node's log since this start (the lab's first start initialized a cluster).
        let this_run = || lab.log(0).rsplit_once("==== raftctl lab: starting").map(|(_, run)| run.to_string()).unwrap_or_default();
        wait_for(HEAL, "two failed bootstraps", || {
            let failures = this_run().matches("initialization failed: post_bootstrap failed: no users today (exit status: 4)").count();
            anyhow::ensure!(failures >= 2, "{failures} failures so far");
            Ok(())
        })?;
        let log = this_run();
        assert!(log.contains("running post_bootstrap: echo no users today >&2; exit 4 postgres://postgres@127.0.0.1:"), "{log}");
        assert!(!log.contains("initialized a new cluster"), "never declared initialized");
        // Between attempts the half-made cluster is removed, not adopted.
        assert!(!log.contains("adopting the existing data directory"), "the half-made cluster was adopted");
        let list = lab.ctl(&["list"])?;
        assert!(!list.contains("| Leader"), "no leader: {list}");
        Ok(())
    })
}

#[test]
fn a_cluster_is_bootstrapped_from_another_postgresqls_backup_and_wal_archive() -> anyhow::Result<()> {
    let lab = Lab::up(1)?;
    with_logs(&lab, || {
        let (repo, archive) = (lab_owned_dir(&lab, "repo")?, lab_owned_dir(&lab, "archive")?);
        let source = Source::start(&lab_owned_dir(&lab, "source")?, &archive)?;
        let sysid = source.psql("select system_identifier from pg_control_system()")?;
        source.psql("create table t(v text); insert into t values ('in the backup')")?;
        run(as_lab_user(pg_bin("pg_basebackup"))?
            .args(["-U", "postgres", "-Ft", "-X", "fetch", "-c", "fast", "-p", &source.port.to_string(), "-h"])
            .arg(&source.socket)
            .arg("-D")
            .arg(repo.join("backup")))?;
        run(as_lab_user("mv")?.arg(repo.join("backup/base.tar")).arg(repo.join("base.tar")))?;
        // Rows only the WAL archive holds: the restore must replay it.
        source.psql("insert into t values ('only in the archive')")?;
        let archived = source.psql("select pg_walfile_name(pg_switch_wal())")?;
        wait_for(Duration::from_secs(30), "the source archiving its WAL", || {
            anyhow::ensure!(archive.join(&archived).exists(), "{archived} not archived yet");
            Ok(())
        })?;
        source.stop()?;

        let dir = lab.dir.path().join(lab.name(0));
        let restore = script(&dir, "restore.sh", RESTORE)?;
        let post = script(&dir, "post.sh", "/usr/bin/psql -X -v ON_ERROR_STOP=1 \"$1\" -c 'create table post_bootstrap_ran(url text)' -c \"insert into post_bootstrap_ran values ('$1')\"\n")?;
        let doc = bootstrap_again(
            &lab,
            json!({
                "method": "from_backup",
                "from_backup": {
                    "command": restore.to_string_lossy(),
                    "repository": repo.to_string_lossy(),
                    "recovery_conf": {"restore_command": format!("cp {}/%f %p", archive.display()), "recovery_target_action": "promote"},
                },
                "post_bootstrap": post.to_string_lossy(),
            }),
        )?;
        wait_for(HEAL, "the restored cluster's primary", || {
            anyhow::ensure!(lab.psql(0, "select pg_is_in_recovery()")? == "f", "still recovering");
            Ok(())
        })?;
        assert_eq!(lab.psql(0, "select string_agg(v, ',' order by v) from t")?, "in the backup,only in the archive");
        assert_eq!(lab.psql(0, "select system_identifier from pg_control_system()")?, sysid, "the source's cluster, not a new initdb");
        let url = lab.psql(0, "select url from post_bootstrap_ran")?;
        assert_eq!(url, format!("postgres://postgres@127.0.0.1:{}/postgres", lab.pg_port(0)));
        let calls = std::fs::read_to_string(repo.join("calls.log"))?;
        let data_dir = text_of(&doc, "/postgresql/data_dir")?;
        assert_eq!(calls, format!("--scope={} --datadir={data_dir} --repository={}\n", text_of(&doc, "/scope")?, repo.display()));
        wait_for(Duration::from_secs(20), "the leader key and /initialize", || {
            let list = lab.ctl(&["list"])?;
            anyhow::ensure!(list.contains("| Leader") && list.contains(&sysid), "{list}");
            Ok(())
        })?;
        Ok(())
    })
}

/// Takes a `pg_basebackup -Ft -X fetch` of node `from` into `repo/base.tar` (as the nodes' user).
fn backup_into(lab: &Lab, from: usize, repo: &Path) -> anyhow::Result<()> {
    let password = text_of(&read_node_file(lab, from)?, "/postgresql/authentication/replication/password")?;
    let port = lab.pg_port(from).to_string();
    run(as_lab_user(pg_bin("pg_basebackup"))?
        .args(["-h", "127.0.0.1", "-p", &port, "-U", "replicator", "-Ft", "-X", "fetch", "-c", "fast", "-D"])
        .arg(repo.join("backup"))
        .env("PGPASSWORD", &password))?;
    run(as_lab_user("mv")?.arg(repo.join("backup/base.tar")).arg(repo.join("base.tar"))).map(|_| ())
}

#[test]
fn without_a_running_primary_only_a_no_leader_method_restores_a_replica() -> anyhow::Result<()> {
    let lab = Lab::up(3)?;
    with_logs(&lab, || {
        let primary = lab.primary()?;
        let replica = (primary + 1) % 3;
        lab.psql(primary, "create table t(v text); insert into t values ('in the backup')")?;
        let repo = lab_owned_dir(&lab, "repo")?;
        backup_into(&lab, primary, &repo)?;
        let dir = lab.dir.path().join(lab.name(replica));
        let restore = script(&dir, "restore.sh", RESTORE)?;
        let tried = dir.join("needs-a-leader-ran");
        let needs_leader = script(&dir, "needs-leader.sh", &format!("touch {}\nexit 1\n", tried.display()))?;

        // The replica's node stopped first (unpaused, its PostgreSQL stops with it; paused,
        // it would be left running). Then no primary runs: the cluster paused (the agents
        // leave PostgreSQL alone), the primary's PostgreSQL stopped; its member key says so.
        lab.stop(replica)?;
        lab.ctl(&["pause"])?;
        wait_for(HEAL, "the primary's agent paused", || {
            let (_, body) = lab.rest(primary, "GET", "/patroni", "")?;
            anyhow::ensure!(serde_json::from_str::<Value>(&body)?["pause"] == true, "not paused yet");
            Ok(())
        })?;
        let primary_data = text_of(&read_node_file(&lab, primary)?, "/postgresql/data_dir")?;
        run(as_lab_user(pg_bin("pg_ctl"))?.args(["stop", "-m", "fast", "-w", "-D", &primary_data]))?;
        wait_for(HEAL, "the primary's member key saying it does not run", || {
            let list = lab.ctl(&["list"])?;
            let row = list.lines().find(|l| l.contains(&format!("| {} ", lab.name(primary)))).unwrap_or_default().to_string();
            anyhow::ensure!(!row.is_empty() && !row.contains("running"), "{row}");
            Ok(())
        })?;

        edit_node_file(&lab, replica, |doc| {
            doc["postgresql"]["create_replica_methods"] = json!(["needs_leader", "basebackup", "repo"]);
            doc["postgresql"]["needs_leader"] = json!({"command": needs_leader.to_string_lossy(), "no_params": true});
            doc["postgresql"]["repo"] =
                json!({"command": restore.to_string_lossy(), "repository": repo.to_string_lossy(), "no_leader": true});
        })?;
        let replica_data = text_of(&read_node_file(&lab, replica)?, "/postgresql/data_dir")?;
        std::fs::remove_dir_all(&replica_data).with_context(|| format!("removing {replica_data}"))?;
        lab.start(replica)?;
        wait_for(HEAL, "the replica restored from the repository, running read-only", || {
            anyhow::ensure!(lab.psql(replica, "select pg_is_in_recovery()")? == "t", "not running in recovery");
            anyhow::ensure!(lab.psql(replica, "select v from t")? == "in the backup", "not the backup's rows");
            Ok(())
        })
        .map_err(|e| e.context(std::fs::read_to_string(dir.join("postgresql.log")).unwrap_or_default()))?;
        let log = lab.log(replica);
        assert!(log.contains("creating a replica without a running primary"), "the no-primary path");
        assert!(log.contains("created a replica with repo in"), "made by the no_leader method");
        assert!(!tried.exists(), "a method without no_leader ran without a primary");
        assert!(!log.contains("running replica method needs_leader") && !log.contains("pg_basebackup"), "only no_leader methods are tried");
        let calls = std::fs::read_to_string(repo.join("calls.log"))?;
        assert!(calls.contains("--role=replica") && calls.contains("--connstring= --repository="), "no primary to name: {calls}");
        Ok(())
    })
}

/// Turns on WAL archiving with `command` (`/config`), restarts the primary `primary` for
/// `archive_mode` and waits until it archives.
pub(crate) fn archive_with(lab: &Lab, primary: usize, command: &str) -> anyhow::Result<()> {
    lab.ctl(&["edit-config", "-p", "archive_mode=on", "-p", &format!("archive_command={command}"), "--force"])?;
    wait_for(HEAL, "archive_mode written and pending a restart on the primary", || {
        let pending = lab.psql(primary, "select pending_restart from pg_settings where name = 'archive_mode'")?;
        anyhow::ensure!(pending == "t", "not pending yet");
        Ok(())
    })?;
    lab.ctl(&["restart", &lab.name(primary), "--pending", "--force"])?;
    wait_for(HEAL, "the primary archiving", || {
        anyhow::ensure!(lab.psql(primary, "show archive_mode")? == "on", "archive_mode not on yet");
        Ok(())
    })
}

#[test]
fn a_replica_is_restored_with_pgbackrest_then_streams() -> anyhow::Result<()> {
    let pgbackrest = Path::new("/usr/bin/pgbackrest");
    anyhow::ensure!(pgbackrest.exists(), "{} is missing: run deploy/setup.sh --tests (Debian's pgbackrest)", pgbackrest.display());
    let lab = Lab::up(3)?;
    with_logs(&lab, || {
        let primary = lab.primary()?;
        let replica = (primary + 1) % 3;
        // pgBackRest's repository, log, lock and spool directories, owned by the nodes' user; one
        // configuration for every node (each passes its own data directory).
        let dir = lab_owned_dir(&lab, "pgbackrest")?;
        for sub in ["repo", "log", "lock", "spool"] {
            lab_owned_dir(&lab, &format!("pgbackrest/{sub}"))?;
        }
        let config = dir.join("pgbackrest.conf");
        std::fs::write(
            &config,
            format!(
                "[global]\nrepo1-path={0}/repo\nlog-path={0}/log\nlock-path={0}/lock\nspool-path={0}/spool\nstart-fast=y\nlog-level-console=warn\n\n[main]\npg1-user=postgres\n",
                dir.display()
            ),
        )?;
        let with_config = format!("{} --config={} --stanza=main", pgbackrest.display(), config.display());
        // PostgreSQL runs archive_command in its data directory.
        archive_with(&lab, primary, &format!("{with_config} --pg1-path=\"$PWD\" archive-push %p"))?;

        let primary_doc = read_node_file(&lab, primary)?;
        let primary_data = text_of(&primary_doc, "/postgresql/data_dir")?;
        let socket = Path::new(&primary_data).with_file_name("run");
        let at_primary = [
            format!("--pg1-path={primary_data}"),
            format!("--pg1-port={}", lab.pg_port(primary)),
            format!("--pg1-socket-path={}", socket.display()),
        ];
        lab.psql(primary, "create table t(v text); insert into t values ('in the backup')")?;
        for command in ["stanza-create", "backup"] {
            run(as_lab_user(pgbackrest)?
                .arg(format!("--config={}", config.display()))
                .arg("--stanza=main")
                .args(&at_primary)
                .arg(command))?;
        }
        lab.psql(primary, "insert into t values ('after the backup')")?;

        // Patroni's recipe, with the lab's configuration and this node's data directory.
        let replica_data = text_of(&read_node_file(&lab, replica)?, "/postgresql/data_dir")?;
        recreate(&lab, replica, |doc| {
            doc["postgresql"]["create_replica_methods"] = json!(["pgbackrest", "basebackup"]);
            doc["postgresql"]["pgbackrest"] = json!({
                "command": format!("{with_config} --pg1-path={replica_data} --delta restore"),
                "keep_data": true,
                "no_params": true,
            });
        })?;
        wait_streaming_with(&lab, replica, 2)?;
        let log = lab.log(replica);
        anyhow::ensure!(!log.contains("replica method pgbackrest failed"), "pgBackRest failed");
        anyhow::ensure!(log.contains(&format!("cloned {} with pgbackrest in", lab.name(primary))), "not made by pgBackRest");
        let info = run(as_lab_user(pgbackrest)?.arg(format!("--config={}", config.display())).args(["--stanza=main", "info"]))?;
        anyhow::ensure!(info.contains("status: ok") && info.contains("full backup"), "{info}");
        Ok(())
    })
}
