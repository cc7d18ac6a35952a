//! `raftctl lab up --haproxy`: HAProxy in front of the lab, as in a classic Patroni
//! setup. The config is `deploy/haproxy.cfg` (compiled in), rendered for the lab's
//! ports, hosts and node count into `DIR/haproxy.cfg`; HAProxy runs in the foreground as
//! a detached lab process (`DIR/haproxy.pid`, output in `DIR/haproxy.log`), as the lab's
//! user when the lab has one. `lab down` stops it and `lab status` shows it. This
//! module owns only HAProxy; it talks to PostgreSQL once, with psql, to see that the
//! primary port leads to a primary.

use std::fs::OpenOptions;
use std::io::Write;
use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

use crate::description::Lab;
use crate::{logs, ports, process};

/// The lab's HAProxy config for the classic ports (node1 PostgreSQL on 5432).
const TEMPLATE: &str = include_str!("../../../deploy/haproxy.cfg");
/// The template's ports: primary, replicas, stats, then the nodes' PostgreSQL and REST
/// ports. On any line but a `server` line each of them is shifted with the base port.
const CLASSIC_PORTS: [u16; 3] = [5000, 5001, 7000];
const NODE_PORTS: [u16; 6] = [5432, 5433, 5434, 8008, 8009, 8010];
/// How long, at most, after the lab is ready, the primary port may take to lead to the
/// primary (HAProxy needs `rise 2` successful checks, one a second).
const ROUTE_WAIT: Duration = Duration::from_secs(30);
/// How long `down` lets HAProxy stop after SIGTERM before SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(5);

/// HAProxy's three ports for a lab.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ports {
    /// Always the primary (`OPTIONS /primary`).
    pub primary: u16,
    /// The replicas, round robin (`OPTIONS /replica`).
    pub replicas: u16,
    /// The stats page.
    pub stats: u16,
}

/// `classic` moved by `base_port - 5432`, or `None` outside 1..=65535.
fn shift(classic: u16, base_port: u16) -> Option<u16> {
    let p = i64::from(classic) + i64::from(base_port) - i64::from(ports::DEFAULT_BASE_PORT);
    u16::try_from(p).ok().filter(|p| *p > 0)
}

impl Ports {
    /// 5000, 5001 and 7000, shifted like every other port of the lab.
    pub fn of(base_port: u16) -> anyhow::Result<Self> {
        let [primary, replicas, stats] = CLASSIC_PORTS.map(|p| shift(p, base_port));
        match (primary, replicas, stats) {
            (Some(primary), Some(replicas), Some(stats)) => Ok(Self { primary, replicas, stats }),
            _ => bail!("--base-port {base_port} puts HAProxy's ports outside 1..=65535: choose another base port"),
        }
    }

    fn named(&self) -> [(&'static str, u16); 3] {
        [("primary port", self.primary), ("replicas port", self.replicas), ("stats port", self.stats)]
    }
}

pub fn config_path(lab: &Lab) -> PathBuf {
    lab.dir.join("haproxy.cfg")
}
pub fn pid_path(lab: &Lab) -> PathBuf {
    lab.dir.join("haproxy.pid")
}
pub fn log_path(lab: &Lab) -> PathBuf {
    lab.dir.join("haproxy.log")
}

/// Replaces every whole number of `classic` in `line` by its shifted value.
fn shift_numbers(line: &str, classic: &[u16], base_port: u16) -> String {
    let mut out = String::with_capacity(line.len());
    let mut digits = String::new();
    let flush = |digits: &mut String, out: &mut String| {
        let shifted = digits.parse::<u16>().ok().filter(|n| classic.contains(n)).and_then(|n| shift(n, base_port));
        match shifted {
            Some(p) => out.push_str(&p.to_string()),
            None => out.push_str(digits),
        }
        digits.clear();
    };
    for c in line.chars() {
        if c.is_ascii_digit() {
            digits.push(c);
        } else {
            flush(&mut digits, &mut out);
            out.push(c);
        }
    }
    flush(&mut digits, &mut out);
    out
}

/// `DIR/haproxy.cfg`: the template with the lab's ports, and in each section one
/// `server` line per node (made from the template's `node1` line), at the node's
/// address (health checks over TLS in a `--tls` lab). For the default three-node lab the
/// body is the template unchanged.
pub fn render(lab: &Lab) -> String {
    let mut out = format!(
        "# Rendered by `raftctl lab up --haproxy` from deploy/haproxy.cfg for the lab in {}\n\
         # (base port {}: every port of the template moved by the same amount).\n",
        lab.dir.display(),
        lab.base_port
    );
    for line in TEMPLATE.lines() {
        let indent = &line[..line.len() - line.trim_start().len()];
        let tokens: Vec<&str> = line.split_whitespace().collect();
        if tokens.first() != Some(&"server") {
            let mut all = CLASSIC_PORTS.to_vec();
            all.extend(NODE_PORTS);
            out.push_str(&shift_numbers(line, &all, lab.base_port));
            out.push('\n');
            continue;
        }
        if tokens.get(1) != Some(&"node1") {
            continue;
        }
        for node in &lab.nodes {
            let mut t: Vec<String> = tokens.iter().map(|s| s.to_string()).collect();
            t[1] = node.name.clone();
            if t.len() > 2 {
                t[2] = format!("{}:{}", node.host, node.ports.postgres);
            }
            if let Some(i) = t.iter().position(|s| s == "port") {
                if i + 1 < t.len() {
                    t[i + 1] = node.ports.rest.to_string();
                }
            }
            if let Some(tls) = &lab.tls {
                // The REST API speaks HTTPS: check over TLS, trusting the lab's CA.
                t.extend(["check-ssl", "verify", "required", "ca-file"].map(String::from));
                t.push(tls.ca.display().to_string());
            }
            out.push_str(indent);
            out.push_str(&t.join(" "));
            out.push('\n');
        }
    }
    out
}

/// The `haproxy` program: on the PATH, or in the sbin directories a normal user's PATH
/// lacks on Debian.
fn find_binary() -> anyhow::Result<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/usr/local/sbin", "/sbin"].map(PathBuf::from))
        .map(|d| d.join("haproxy"))
        .find(|p| p.is_file())
        .context(
            "--haproxy: HAProxy is not installed: `apt-get install haproxy` (or run deploy/setup.sh), or start the lab without --haproxy",
        )
}

/// Before any node starts: HAProxy is installed, this lab's own HAProxy (if still
/// running) is stopped, and the three ports are free. Returns the program to run.
pub fn check(lab: &Lab) -> anyhow::Result<PathBuf> {
    let bin = find_binary()?;
    stop(lab)?;
    let ports = Ports::of(lab.base_port)?;
    for (what, port) in ports.named() {
        if let Err(e) = TcpListener::bind(("127.0.0.1", port)) {
            bail!(
                "port {port} (HAProxy's {what}) is not free: {e}. Is another lab's HAProxy running, or \
                 Debian's own (`systemctl disable --now haproxy`)? Stop it, or shift every port with --base-port"
            );
        }
    }
    Ok(bin)
}

/// The pid of this lab's HAProxy, when its pid file names a live one.
pub fn running(lab: &Lab) -> Option<u32> {
    let pid = process::read_pid(&pid_path(lab))?;
    process::stat(pid).filter(|s| s.state != 'Z' && s.comm.starts_with("haproxy")).map(|s| s.pid)
}

/// Writes `DIR/haproxy.cfg`, starts HAProxy detached and waits until its primary port
/// leads to a PostgreSQL primary.
pub fn start(lab: &Lab, bin: &Path) -> anyhow::Result<()> {
    let cfg = config_path(lab);
    std::fs::write(&cfg, render(lab)).with_context(|| format!("cannot write {}", cfg.display()))?;
    let log_path = log_path(lab);
    let mut log =
        OpenOptions::new().create(true).append(true).open(&log_path).with_context(|| format!("cannot open {}", log_path.display()))?;
    writeln!(log, "==== raftctl lab: starting haproxy ====")?;
    validate(bin, &cfg)?;
    let mut cmd = Command::new(bin);
    // -db: stay in the foreground, so its messages (a server going DOWN or UP) land in
    // haproxy.log.
    cmd.arg("-db")
        .arg("-f")
        .arg(&cfg)
        .current_dir(&lab.dir)
        .stdin(Stdio::null())
        .stdout(Stdio::from(log.try_clone()?))
        .stderr(Stdio::from(log))
        .process_group(0);
    if let Some(u) = &lab.user {
        for f in [&cfg, &log_path] {
            std::os::unix::fs::chown(f, Some(u.uid), Some(u.gid)).with_context(|| format!("cannot chown {} to {}", f.display(), u.name))?;
        }
        cmd.uid(u.uid).gid(u.gid).env("HOME", &u.home);
    }
    let mut child = cmd.spawn().with_context(|| format!("cannot start {}", bin.display()))?;
    let pid = child.id();
    let pid_file = pid_path(lab);
    std::fs::write(&pid_file, format!("{pid}\n")).with_context(|| format!("cannot write {}", pid_file.display()))?;
    let ports = Ports::of(lab.base_port)?;
    println!(
        "starting haproxy (pid {pid}, config {}, log {}); waiting until port {} leads to the primary...",
        cfg.display(),
        log_path.display(),
        ports.primary
    );
    let deadline = Instant::now() + ROUTE_WAIT;
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            bail!("haproxy exited ({status}) right after starting:\n{}", logs::tail(&log_path, 20));
        }
        let Err(e) = primary_via(lab, ports.primary) else {
            break;
        };
        if Instant::now() >= deadline {
            let last = format!("{e:#}");
            bail!(
                "port {} did not lead to the primary within {} s: {last}\nhaproxy is left running (see {}); `raftctl lab down` stops it",
                ports.primary,
                ROUTE_WAIT.as_secs(),
                log_path.display()
            );
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    // Not waited for: HAProxy outlives raftctl and is re-parented to init.
    drop(child);
    Ok(())
}

/// `haproxy -c -f cfg`: the rendered config is valid (its messages when it is not).
fn validate(bin: &Path, cfg: &Path) -> anyhow::Result<()> {
    let out = Command::new(bin)
        .arg("-c")
        .arg("-f")
        .arg(cfg)
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("cannot run {}", bin.display()))?;
    if !out.status.success() {
        bail!("haproxy rejects {}:\n{}{}", cfg.display(), String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    }
    Ok(())
}

/// `select pg_is_in_recovery()` through HAProxy's primary port answers `f`.
fn primary_via(lab: &Lab, port: u16) -> anyhow::Result<()> {
    let psql = lab.psql_bin();
    let out = Command::new(&psql)
        .args(["-X", "-h", "127.0.0.1", "-p", &port.to_string()])
        .args(["-U", "postgres", "-d", "postgres", "-Atc"])
        .arg("select pg_is_in_recovery()")
        .env("PGPASSFILE", lab.pgpass_path())
        .env("PGCONNECT_TIMEOUT", "2")
        .env_remove("PGPASSWORD")
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("cannot run {}", psql.display()))?;
    let answer = String::from_utf8_lossy(&out.stdout).trim().to_string();
    if !out.status.success() {
        bail!("{}", String::from_utf8_lossy(&out.stderr).trim());
    }
    if answer != "f" {
        bail!("port {port} leads to a replica (pg_is_in_recovery = {answer})");
    }
    Ok(())
}

/// The lines `lab up --haproxy` ends with.
pub fn print_howto(lab: &Lab) {
    let Ok(p) = Ports::of(lab.base_port) else {
        return;
    };
    println!("Through HAProxy (config {}):", config_path(lab).display());
    println!("  psql -h 127.0.0.1 -p {} -U postgres   # always the primary", p.primary);
    println!("  psql -h 127.0.0.1 -p {} -U postgres   # a replica, round robin", p.replicas);
    println!("  stats: http://127.0.0.1:{}/  (log: {})", p.stats, log_path(lab).display());
}

/// The `lab status` line, when this lab has an HAProxy (running or not).
pub fn status_line(lab: &Lab) -> Option<String> {
    if !pid_path(lab).exists() {
        return None;
    }
    let ports = Ports::of(lab.base_port).ok()?;
    let (pid, state) = match running(lab) {
        Some(pid) => (pid.to_string(), "running"),
        None => ("-".to_string(), "stopped"),
    };
    Some(format!(
        "{:<6} pid {:<8} {:<8} primary {}, replicas {}, stats http://127.0.0.1:{}/",
        "haproxy", pid, state, ports.primary, ports.replicas, ports.stats
    ))
}

/// SIGTERM to this lab's HAProxy, SIGKILL after [`STOP_GRACE`]; removes the pid file.
/// Returns whether one was running.
pub fn stop(lab: &Lab) -> anyhow::Result<bool> {
    let Some(pid) = running(lab) else {
        let _ = std::fs::remove_file(pid_path(lab));
        return Ok(false);
    };
    println!("stopping haproxy (pid {pid})");
    process::signal(pid, "TERM")?;
    let deadline = Instant::now() + STOP_GRACE;
    while running(lab).is_some() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    if running(lab).is_some() {
        println!("haproxy did not stop within {} s: SIGKILL", STOP_GRACE.as_secs());
        process::signal(pid, "KILL")?;
    }
    let _ = std::fs::remove_file(pid_path(lab));
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::description::tests::sample;
    use crate::description::LabNode;

    #[test]
    fn default_lab_uses_the_template_unchanged() {
        let lab = sample(Path::new("/tmp/raftgres-lab"));
        let text = render(&lab);
        let body: Vec<&str> = text.lines().skip(2).collect();
        assert_eq!(body, TEMPLATE.lines().collect::<Vec<_>>());
        assert_eq!(Ports::of(5432).expect("ports"), Ports { primary: 5000, replicas: 5001, stats: 7000 });
    }

    #[test]
    fn other_base_ports_shift_every_port() {
        let mut lab = sample(Path::new("/tmp/l"));
        lab.base_port = 15432;
        lab.nodes = ports::layout(4, 15432)
            .expect("layout")
            .into_iter()
            .enumerate()
            .map(|(i, ports)| LabNode {
                name: format!("node{}", i + 1),
                dir: lab.dir.join(format!("node{}", i + 1)),
                ports,
                host: if i == 3 { "10.250.0.4".into() } else { "127.0.0.1".into() },
                netns: None,
            })
            .collect();
        let text = render(&lab);
        for line in [
            "    bind 127.0.0.1:15000\n",
            "    bind 127.0.0.1:15001\n",
            "    bind 127.0.0.1:17000\n",
            "    server node1 127.0.0.1:15432 maxconn 100 check port 18008\n",
            "    server node3 127.0.0.1:15434 maxconn 100 check port 18010\n",
            "    server node4 10.250.0.4:15435 maxconn 100 check port 18011\n",
            "psql -h 127.0.0.1 -p 15000 -U postgres",
        ] {
            assert!(text.contains(line), "missing {line:?} in\n{text}");
        }
        assert_eq!(text.matches("server node4 ").count(), 2, "{text}");
        for classic in [":5000", ":5432", "port 8008", ":7000"] {
            assert!(!text.contains(classic), "{classic} left in\n{text}");
        }
    }

    #[test]
    fn numbers_shift_only_as_whole_words() {
        assert_eq!(shift_numbers("a 50000 5000 x5000y 15000", &[5000], 5433), "a 50000 5001 x5001y 15000");
    }
}
