//! Controlling the local PostgreSQL: its programs (initdb, pg_ctl start, pg_basebackup,
//! pg_rewind, pg_controldata), the signals `pg_ctl stop` and `pg_ctl reload` would send
//! (sent here directly, so a stop ends the moment the postmaster exits), its files
//! ([`conf`]), its SQL ([`sql`]) and its replication slots ([`slots`]). Every
//! function does one thing and reports a clear error; the decisions are the HA loop's.

pub mod conf;
pub mod fingerprint;
pub mod liveness;
pub mod params;
pub mod slots;
pub mod sql;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use nix::sys::signal::Signal;
use tokio::process::Command;

use crate::config::PostgresConfig;

#[derive(Debug, thiserror::Error)]
pub enum PgError {
    #[error("{program} failed: {detail}")]
    Program { program: String, detail: String },
    #[error("{0}")]
    Io(String),
    #[error("SQL: {0}")]
    Sql(String),
}

pub type PgResult<T> = Result<T, PgError>;

/// How long a copy of a whole cluster may take (pg_basebackup, a replica method, a
/// bootstrap method's restore).
pub const COPY_TIMEOUT: Duration = Duration::from_secs(3600);

/// How often a postmaster's exit is looked for where pidfds are not available.
const EXIT_POLL: Duration = Duration::from_millis(100);

/// How PostgreSQL should stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopMode {
    /// Checkpoint, disconnect clients (`pg_ctl stop -m fast`).
    Fast,
    /// No checkpoint; crash recovery at the next start (`pg_ctl stop -m immediate`).
    Immediate,
}

/// What `pg_controldata` says about a data directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ControlData {
    pub system_identifier: String,
    /// e.g. "in production", "shut down", "shut down in recovery", "in archive recovery".
    pub cluster_state: String,
    pub timeline: u32,
    /// "Min recovery ending loc's timeline" (0 unless in recovery): a standby's
    /// restartpoints can lag behind the timeline it replays.
    pub min_recovery_timeline: u32,
    /// "Latest checkpoint location": after a clean shutdown, the shutdown checkpoint.
    pub checkpoint_lsn: Option<u64>,
    /// The settings of [`params::RECORDED`] as recorded (on a standby: the primary's,
    /// from the last parameter change it replayed), by parameter name.
    pub settings: std::collections::BTreeMap<String, i64>,
}

impl ControlData {
    /// The data dir was last a primary (running or stopped): it may hold WAL no other
    /// node has, so it must be rewound before it follows anyone.
    pub fn was_primary(&self) -> bool {
        matches!(self.cluster_state.as_str(), "in production" | "shut down" | "shutting down")
    }

    /// The newest timeline the data dir is known to be on.
    pub fn latest_timeline(&self) -> u32 {
        self.timeline.max(self.min_recovery_timeline)
    }
}

/// The local PostgreSQL of this node.
#[derive(Debug, Clone)]
pub struct Postgres {
    pub config: PostgresConfig,
    /// What `pg_controldata` last said, and the settled fingerprint `global/pg_control`
    /// had just before it ran (see [`Postgres::controldata`]).
    control: std::sync::Arc<std::sync::Mutex<Option<(fingerprint::Fingerprint, ControlData)>>>,
}

impl Postgres {
    pub fn new(config: PostgresConfig) -> Self {
        Self { config, control: std::sync::Arc::default() }
    }

    pub fn data_dir(&self) -> &Path {
        &self.config.data_dir
    }

    fn program(&self, name: &str) -> PathBuf {
        self.config.bin_dir.join(name)
    }

    /// The server log (next to the data dir).
    pub fn log_file(&self) -> PathBuf {
        let mut p = self.config.data_dir.clone();
        p.set_file_name("postgresql.log");
        p
    }

    /// True when the data dir is missing or empty.
    pub fn data_dir_empty(&self) -> bool {
        match std::fs::read_dir(self.data_dir()) {
            Ok(mut entries) => entries.next().is_none(),
            Err(_) => true,
        }
    }

    /// True when the data dir holds a PostgreSQL cluster.
    pub fn data_dir_valid(&self) -> bool {
        self.data_dir().join("PG_VERSION").is_file() && self.data_dir().join("global/pg_control").is_file()
    }

    /// True when the data dir is set up to start as a standby (`standby.signal`).
    pub fn is_standby_configured(&self) -> bool {
        self.data_dir().join("standby.signal").exists()
    }

    async fn run(&self, name: &str, args: &[&str], timeout: Duration) -> PgResult<String> {
        let mut cmd = Command::new(self.program(name));
        cmd.args(args);
        self.run_command(cmd, name, timeout).await
    }

    /// Runs a user's `command` (a replica method, a bootstrap method, a post-bootstrap
    /// script) through `sh -c`, so it may carry its own arguments, with `args` after
    /// them and `env` set; `what` names it in errors.
    pub async fn run_script(
        &self,
        what: &str,
        command: &str,
        args: &[String],
        env: &[(&str, &str)],
        timeout: Duration,
    ) -> PgResult<String> {
        let mut cmd = Command::new("/bin/sh");
        cmd.arg("-c").arg(format!("{command} \"$@\"")).arg(what).args(args).envs(env.iter().copied());
        tracing::info!("running {what}: {command} {}", args.join(" "));
        self.run_command(cmd, what, timeout).await
    }

    async fn run_command(&self, mut cmd: Command, name: &str, timeout: Duration) -> PgResult<String> {
        cmd.env("PGPASSFILE", self.config.pgpass_path())
            .env("PGCONNECT_TIMEOUT", "3")
            .env("LC_ALL", "C")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let program = name.to_string();
        let child = cmd.spawn().map_err(|e| PgError::Program { program: program.clone(), detail: e.to_string() })?;
        let out = match tokio::time::timeout(timeout, child.wait_with_output()).await {
            Ok(r) => r.map_err(|e| PgError::Program { program: program.clone(), detail: e.to_string() })?,
            Err(_) => return Err(PgError::Program { program, detail: format!("did not finish within {timeout:?}") }),
        };
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).to_string())
        } else {
            let stderr = String::from_utf8_lossy(&out.stderr);
            let stdout = String::from_utf8_lossy(&out.stdout);
            let detail = format!("{} {}", stderr.trim(), stdout.trim()).trim().to_string();
            let detail = if detail.is_empty() { out.status.to_string() } else { format!("{detail} ({})", out.status) };
            Err(PgError::Program { program, detail })
        }
    }

    /// What `pg_controldata` says now. Runs it only when `global/pg_control` changed
    /// since the last run (its [fingerprint](fingerprint::Fingerprint), settled when
    /// looked at before that run: PostgreSQL rewrites the file in place at every
    /// checkpoint, restartpoint, start and stop); otherwise answers from that run.
    pub async fn controldata(&self) -> PgResult<ControlData> {
        let before = fingerprint::Fingerprint::settled_of(&self.data_dir().join("global/pg_control"));
        let cache = || self.control.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let (Some(now), Some((then, control))) = (before, cache().as_ref()) {
            if now == *then {
                return Ok(control.clone());
            }
        }
        let control = self.run_controldata().await?;
        *cache() = before.map(|f| (f, control.clone()));
        Ok(control)
    }

    async fn run_controldata(&self) -> PgResult<ControlData> {
        let data_dir = self.data_dir().to_string_lossy().to_string();
        let out = self.run("pg_controldata", &["-D", &data_dir], Duration::from_secs(10)).await?;
        let field = |name: &str| out.lines().find_map(|l| l.strip_prefix(name).map(|v| v.trim_start_matches(':').trim().to_string()));
        let bad = |what: &str| PgError::Program { program: "pg_controldata".into(), detail: format!("no {what} in its output") };
        Ok(ControlData {
            system_identifier: field("Database system identifier").ok_or_else(|| bad("system identifier"))?,
            cluster_state: field("Database cluster state").ok_or_else(|| bad("cluster state"))?,
            timeline: field("Latest checkpoint's TimeLineID").and_then(|t| t.parse().ok()).ok_or_else(|| bad("timeline"))?,
            min_recovery_timeline: field("Min recovery ending loc's timeline").and_then(|t| t.parse().ok()).unwrap_or(0),
            checkpoint_lsn: field("Latest checkpoint location").as_deref().and_then(crate::cluster::parse_lsn),
            settings: params::RECORDED.iter().filter_map(|(name, line, _)| Some((name.to_string(), field(line)?.parse().ok()?))).collect(),
        })
    }

    /// The postmaster's pid from `postmaster.pid`, if that process is alive.
    pub fn postmaster_pid(&self) -> Option<i32> {
        let text = std::fs::read_to_string(self.data_dir().join("postmaster.pid")).ok()?;
        let pid: i32 = text.lines().next()?.trim().parse().ok()?;
        process_alive(pid).then_some(pid)
    }

    /// `initdb` with data checksums; the superuser gets its password from a temporary file.
    pub async fn initdb(&self) -> PgResult<()> {
        let su = &self.config.authentication.superuser;
        let pwfile = self.data_dir().with_file_name(".initdb-pw");
        write_private(&pwfile, &su.password)?;
        let data_dir = self.data_dir().to_string_lossy().to_string();
        let pw = pwfile.to_string_lossy().to_string();
        let args = [
            "-D",
            &data_dir,
            "--data-checksums",
            "-U",
            &su.username,
            "--pwfile",
            &pw,
            "--auth-local=trust",
            "--auth-host=scram-sha-256",
            "--encoding=UTF8",
            "--locale=C",
        ];
        let result = self.run("initdb", &args, Duration::from_secs(120)).await;
        let _ = std::fs::remove_file(&pwfile);
        result.map(|_| ())
    }

    /// Starts the postmaster in the background; readiness is checked by the caller.
    pub async fn start(&self) -> PgResult<()> {
        self.clear_stale_lock().await;
        std::fs::create_dir_all(self.config.socket_dir()).map_err(|e| PgError::Io(format!("cannot create socket dir: {e}")))?;
        let data_dir = self.data_dir().to_string_lossy().to_string();
        let log = self.log_file().to_string_lossy().to_string();
        self.run("pg_ctl", &["start", "-D", &data_dir, "-l", &log, "-W", "-s"], Duration::from_secs(30)).await?;
        // Wait for the pid file, so the caller can arm the fencer on the new postmaster.
        let deadline = std::time::Instant::now() + Duration::from_secs(2);
        while self.postmaster_pid().is_none() && std::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        Ok(())
    }

    /// After a crash: kills left-over backends, then removes the lock files
    /// (`postmaster.pid` and the socket's `.lock`) of the dead server. A killed postmaster
    /// can stay a zombie for seconds until init reaps it, and PostgreSQL (and pg_rewind)
    /// treat the pid in a lock file of a zombie as a live server; once no process of the
    /// old server is left, the files are only stale.
    async fn clear_stale_lock(&self) {
        if self.postmaster_pid().is_some() {
            return;
        }
        self.kill_orphans().await;
        let socket_lock = self.config.socket_dir().join(format!(".s.PGSQL.{}.lock", self.config.port()));
        for lock in [self.data_dir().join("postmaster.pid"), socket_lock] {
            if lock.exists() {
                tracing::debug!("removing the stale {}", lock.display());
                let _ = std::fs::remove_file(lock);
            }
        }
    }

    /// Backends left behind by a postmaster that was killed keep its shared memory,
    /// and a new postmaster refuses to start while they live: kill them. They are the
    /// processes whose working directory is this data dir.
    async fn kill_orphans(&self) {
        let Ok(data_dir) = std::fs::canonicalize(self.data_dir()) else { return };
        let orphans: Vec<i32> = std::fs::read_dir("/proc")
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
            .filter(|pid| std::fs::read_link(format!("/proc/{pid}/cwd")).is_ok_and(|cwd| cwd == data_dir))
            .collect();
        if orphans.is_empty() {
            return;
        }
        tracing::warn!("killing {} PostgreSQL processes left behind by a dead postmaster", orphans.len());
        for pid in &orphans {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(*pid), nix::sys::signal::Signal::SIGKILL);
        }
        let deadline = std::time::Instant::now() + Duration::from_secs(2);
        while orphans.iter().any(|p| process_alive(*p)) && std::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Stops PostgreSQL: sends the postmaster `pg_ctl stop`'s signal for `mode` (SIGINT
    /// fast, SIGQUIT immediate) and returns the moment it has exited ([`Self::postmaster_exit`];
    /// `pg_ctl stop -w` looks only every 100 ms, which a switchover's clients would wait
    /// for). A fast stop that takes longer than `timeout` becomes an immediate one.
    pub async fn stop(&self, mode: StopMode, timeout: Duration) -> PgResult<()> {
        let Some(pid) = self.postmaster_pid() else { return Ok(()) };
        let signal = match mode {
            StopMode::Fast => Signal::SIGINT,
            StopMode::Immediate => Signal::SIGQUIT,
        };
        match signal_postmaster(pid, signal) {
            // ESRCH: it exited meanwhile.
            Ok(()) | Err(nix::errno::Errno::ESRCH) => {}
            Err(e) => return Err(PgError::Io(format!("cannot send {signal} to postmaster {pid}: {e}"))),
        }
        if tokio::time::timeout(timeout, self.postmaster_exit(pid)).await.is_ok() {
            return Ok(());
        }
        match mode {
            StopMode::Fast => {
                tracing::warn!("fast shutdown of postmaster {pid} did not end within {timeout:?}; stopping immediately");
                Box::pin(self.stop(StopMode::Immediate, Duration::from_secs(10))).await
            }
            StopMode::Immediate => Err(PgError::Io(format!("postmaster {pid} did not stop within {timeout:?} of {signal}"))),
        }
    }

    /// Returns once postmaster `pid` no longer runs this data dir: at once when its
    /// pidfd says it exited ([`crate::pidfd`]), or by looking at `postmaster.pid` every
    /// 100 ms where pidfds are not available.
    pub async fn postmaster_exit(&self, pid: i32) {
        use crate::pidfd::{no_such_process, ProcessExit};
        match ProcessExit::watch(pid) {
            // Watched from here on; the check after it covers an exit just before.
            Ok(exit) if self.postmaster_pid() == Some(pid) => match exit.exited().await {
                Ok(()) => return,
                Err(e) => tracing::warn!("cannot wait on postmaster {pid}'s pidfd ({e}); polling it"),
            },
            Ok(_) => return,
            Err(e) if no_such_process(&e) => return,
            Err(e) => tracing::debug!("no pidfd for postmaster {pid} ({e}); polling it"),
        }
        while self.postmaster_pid() == Some(pid) {
            tokio::time::sleep(EXIT_POLL).await;
        }
    }

    /// Makes PostgreSQL read its configuration files again: SIGHUP to the postmaster, as
    /// `pg_ctl reload` sends it, without starting a program for it.
    pub async fn reload(&self) -> PgResult<()> {
        let Some(pid) = self.postmaster_pid() else { return Err(PgError::Io("cannot reload PostgreSQL: it is not running".into())) };
        signal_postmaster(pid, Signal::SIGHUP).map_err(|e| PgError::Io(format!("cannot send SIGHUP to postmaster {pid}: {e}")))
    }

    /// Clones the primary at `host:port` into the (empty) data dir; `extra` are the
    /// user's options (`postgresql.basebackup`), after the agent's so they win.
    pub async fn basebackup(&self, host: &str, port: u16, extra: &[String]) -> PgResult<()> {
        let data_dir = self.data_dir().to_string_lossy().to_string();
        let port = port.to_string();
        let user = &self.config.authentication.replication.username;
        let mut args = vec!["-D", &data_dir, "-h", host, "-p", &port, "-U", user, "-X", "stream", "-c", "fast", "-w"];
        args.extend(extra.iter().map(String::as_str));
        let result = self.run("pg_basebackup", &args, COPY_TIMEOUT).await;
        if result.is_err() {
            let _ = self.remove_data_dir();
        }
        result.map(|_| ())
    }

    /// Rewinds the (stopped) data dir to the primary at `host:port`.
    pub async fn rewind(&self, host: &str, port: u16) -> PgResult<()> {
        let data_dir = self.data_dir().to_string_lossy().to_string();
        let su = &self.config.authentication.superuser.username;
        let source = format!("host={host} port={port} user={su} dbname=postgres");
        self.clear_stale_lock().await;
        self.run("pg_rewind", &["-D", &data_dir, "--source-server", &source], Duration::from_secs(3600)).await?;
        tracing::info!("pg_rewind finished");
        Ok(())
    }

    /// Deletes the data dir's contents (for a re-clone).
    /// Creates the data directory (mode 0700, as PostgreSQL wants it) if it is missing.
    pub fn ensure_data_dir(&self) -> PgResult<()> {
        use std::os::unix::fs::DirBuilderExt;
        match std::fs::DirBuilder::new().recursive(true).mode(0o700).create(self.data_dir()) {
            Ok(()) => Ok(()),
            Err(e) => Err(PgError::Io(format!("cannot create {}: {e}", self.data_dir().display()))),
        }
    }

    pub fn remove_data_dir(&self) -> PgResult<()> {
        match std::fs::remove_dir_all(self.data_dir()) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(PgError::Io(format!("cannot remove {}: {e}", self.data_dir().display()))),
        }
    }
}

/// Sends `signal` to postmaster `pid`.
fn signal_postmaster(pid: i32, signal: Signal) -> nix::Result<()> {
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), signal)
}

/// True while `pid` exists and is not a zombie.
pub fn process_alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat.rsplit_once(')').and_then(|(_, rest)| rest.split_whitespace().next()) != Some("Z"),
        Err(_) => false,
    }
}

/// Writes a file only its owner can read.
pub fn write_private(path: &Path, text: &str) -> PgResult<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| PgError::Io(format!("cannot write {}: {e}", path.display())))?;
    f.write_all(text.as_bytes()).map_err(|e| PgError::Io(format!("cannot write {}: {e}", path.display())))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;
    use std::os::unix::process::ExitStatusExt;

    /// A stand-in postmaster of `data` that ignores the signals `ignored` (`sleep`
    /// after a `trap`, which keeps them ignored across the exec).
    fn postmaster(data: &Path, ignored: &str) -> (std::process::Child, i32) {
        let trap = if ignored.is_empty() { String::new() } else { format!("trap '' {ignored}; ") };
        let child = std::process::Command::new("/bin/sh").arg("-c").arg(format!("{trap}exec sleep 30")).spawn().expect("sh");
        let pid = i32::try_from(child.id()).expect("pid");
        // The trap is set once the shell has become `sleep`.
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while std::fs::read_to_string(format!("/proc/{pid}/comm")).ok().is_none_or(|c| c.trim() != "sleep") {
            assert!(std::time::Instant::now() < deadline, "the stand-in postmaster did not start");
            std::thread::sleep(Duration::from_millis(5));
        }
        std::fs::write(data.join("postmaster.pid"), format!("{pid}\n{}\n", data.display())).expect("pid file");
        (child, pid)
    }

    fn stopped_by(mut child: std::process::Child) -> Option<i32> {
        child.wait().expect("wait").signal()
    }

    /// A `Postgres` for `data` with a minimal node file, for tests that need no server.
    pub(crate) fn postgres_of(data: &Path) -> Postgres {
        let yaml = format!(
            "listen: 127.0.0.1:5433\ndata_dir: {}\nauthentication: {{superuser: {{username: postgres, password: a}}, replication: {{username: rep, password: b}}}}\n",
            data.display()
        );
        Postgres::new(serde_norway::from_str(&yaml).expect("yaml"))
    }

    #[tokio::test]
    async fn a_reload_is_a_sighup_to_the_postmaster() {
        let dir = tempfile::tempdir().expect("tempdir");
        let pg = postgres_of(dir.path());
        let err = pg.reload().await.expect_err("nothing runs");
        assert_eq!(err.to_string(), "cannot reload PostgreSQL: it is not running");
        let (child, _) = postmaster(dir.path(), "");
        pg.reload().await.expect("signalled");
        assert_eq!(stopped_by(child), Some(nix::libc::SIGHUP), "the stand-in does not catch SIGHUP: it ends by it");
    }

    #[tokio::test]
    async fn a_stop_returns_once_the_postmaster_exited_and_a_fast_one_that_hangs_becomes_immediate() {
        let dir = tempfile::tempdir().expect("tempdir");
        let pg = postgres_of(dir.path());
        pg.stop(StopMode::Fast, Duration::from_secs(5)).await.expect("nothing runs: nothing to stop");

        let (child, pid) = postmaster(dir.path(), "");
        pg.stop(StopMode::Fast, Duration::from_secs(30)).await.expect("a fast stop");
        assert!(!process_alive(pid), "it returns once the postmaster has exited");
        assert_eq!(stopped_by(child), Some(nix::libc::SIGINT), "fast: pg_ctl's SIGINT");

        let (child, pid) = postmaster(dir.path(), "INT");
        pg.stop(StopMode::Fast, Duration::from_millis(200)).await.expect("a fast stop that became immediate");
        assert!(!process_alive(pid));
        assert_eq!(stopped_by(child), Some(nix::libc::SIGQUIT), "immediate: pg_ctl's SIGQUIT");

        let (mut child, pid) = postmaster(dir.path(), "INT QUIT");
        let err = pg.stop(StopMode::Immediate, Duration::from_millis(200)).await.expect_err("it ignores SIGQUIT");
        assert!(err.to_string().contains(&format!("postmaster {pid} did not stop")), "{err}");
        child.kill().expect("kill");
        child.wait().expect("wait");
    }

    #[tokio::test]
    async fn pg_controldata_runs_again_only_when_pg_control_changed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (bin, data) = (dir.path().join("bin"), dir.path().join("pgdata"));
        std::fs::create_dir_all(data.join("global")).expect("mkdir");
        std::fs::create_dir_all(&bin).expect("mkdir");
        // A stand-in that counts its runs and reports the state pg_control holds.
        let runs = dir.path().join("runs");
        let script = format!(
            "#!/bin/sh\necho run >> {runs}\necho 'Database system identifier: 7'\necho \"Database cluster state: $(cat {control})\"\n\
             echo \"Latest checkpoint's TimeLineID: 1\"\n",
            runs = runs.display(),
            control = data.join("global/pg_control").display()
        );
        std::fs::write(bin.join("pg_controldata"), script).expect("script");
        std::fs::set_permissions(bin.join("pg_controldata"), std::fs::Permissions::from_mode(0o755)).expect("chmod");
        let yaml = format!(
            "listen: 127.0.0.1:5433\ndata_dir: {}\nbin_dir: {}\nauthentication: {{superuser: {{username: postgres, password: a}}, replication: {{username: rep, password: b}}}}\n",
            data.display(),
            bin.display()
        );
        let pg = Postgres::new(serde_norway::from_str(&yaml).expect("yaml"));
        let control = data.join("global/pg_control");
        let runs_so_far = || std::fs::read_to_string(&runs).map_or(0, |r| r.lines().count());
        let state = || async { pg.controldata().await.expect("controldata").cluster_state };

        std::fs::write(&control, "in production").expect("write");
        assert_eq!(state().await, "in production");
        assert_eq!(state().await, "in production");
        assert_eq!(runs_so_far(), 2, "pg_control written just now: its fingerprint is not trusted yet");
        fingerprint::tests::age(&control, std::time::Duration::from_secs(10));
        assert_eq!(state().await, "in production");
        assert_eq!(state().await, "in production");
        assert_eq!(runs_so_far(), 3, "settled and unchanged: answered from the last run");
        std::fs::write(&control, "shut down....").expect("rewrite in place");
        fingerprint::tests::age(&control, std::time::Duration::from_secs(5));
        assert_eq!(state().await, "shut down....");
        assert_eq!(runs_so_far(), 4, "rewritten: run again");
    }
}
