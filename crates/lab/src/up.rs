//! `raftctl lab up`: checks (ports, binaries, the directory), writes the lab's files,
//! starts every node, waits for a primary and streaming replicas, then says how to
//! connect. Run again on a stopped lab, it starts the same nodes again. With `--netns`
//! each node runs in its own network namespace at 10.250.0.i (see `netns`).

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context};
use clap::Args;

use crate::args::{DirArg, DEFAULT_DIR};
use crate::config::{self, Passwords};
use crate::description::{Lab, LabNode, LabUser, Profile, SCOPE};
use crate::{certs, haproxy, logs, netns, ports, process, ready, user};

/// Where PostgreSQL's programs are unless `--pg-bin-dir` says otherwise.
const DEFAULT_PG_BIN_DIR: &str = "/usr/lib/postgresql/15/bin";

#[derive(Debug, Args)]
pub struct UpArgs {
    /// How many nodes.
    #[arg(long, default_value_t = 3)]
    pub nodes: usize,
    #[command(flatten)]
    pub dir: DirArg,
    /// node1's PostgreSQL port; every other port moves by the same amount.
    #[arg(long, default_value_t = ports::DEFAULT_BASE_PORT)]
    pub base_port: u16,
    /// Seconds to wait for a primary and streaming replicas.
    #[arg(long, default_value_t = 120)]
    pub timeout: u64,
    /// PostgreSQL's bin directory (default: /usr/lib/postgresql/15/bin, else the newest installed).
    #[arg(long)]
    pub pg_bin_dir: Option<PathBuf>,
    /// Run each node in its own network namespace (node i at 10.250.0.i, classic ports),
    /// for real partitions and netem (`raftctl lab partition/heal/netem/clear`). Needs root.
    #[arg(long)]
    pub netns: bool,
    /// With --netns: the namespaces' prefix (node1 in <prefix>1, bridge <prefix>br0).
    #[arg(long, default_value = netns::DEFAULT_PREFIX, requires = "netns")]
    pub netns_prefix: String,
    /// Also run HAProxy (deploy/haproxy.cfg, ports shifted): the primary on 5000, the
    /// replicas on 5001, stats on 7000. Needs `apt-get install haproxy`.
    #[arg(long)]
    pub haproxy: bool,
    /// TLS everywhere: a CA and certificates in DIR/tls/, mutual TLS between peers and on
    /// the etcd API (client certificates required), HTTPS for the REST API.
    #[arg(long)]
    pub tls: bool,
    /// Make the lab a standby cluster of the PostgreSQL at HOST:PORT (another lab's
    /// primary): its first node copies it, its leader is a standby leader that never
    /// promotes (`raftctl edit-config` removing standby_cluster promotes it). Its data is
    /// a copy, so its passwords must be the remote's: give --passwords-from.
    #[arg(long, value_name = "HOST:PORT", requires = "passwords_from")]
    pub standby_cluster: Option<String>,
    /// Use the superuser and replication passwords of the lab in this directory.
    #[arg(long, value_name = "DIR")]
    pub passwords_from: Option<PathBuf>,
    /// HA timing: `default` (ttl 2 s) or `fast` (ttl 1 s, retry_timeout 0.3 s,
    /// safety_margin 0.2 s: node kill to writable ~1 s sooner), in every node's bootstrap.dcs.
    #[arg(long, value_enum, default_value_t = Profile::Default)]
    pub profile: Profile,
}

pub async fn run(args: UpArgs) -> anyhow::Result<()> {
    let dir = absolute(&args.dir.dir)?;
    let lab = if Lab::exists(&dir) { reuse(&dir, &args)? } else { create(&args, &dir)? };
    let haproxy_bin = if args.haproxy { Some(haproxy::check(&lab)?) } else { None };
    start(&lab, Duration::from_secs(args.timeout)).await?;
    if let Some(bin) = &haproxy_bin {
        haproxy::start(&lab, bin)?;
    }
    print_howto(&lab);
    if haproxy_bin.is_some() {
        haproxy::print_howto(&lab);
    }
    Ok(())
}

/// Starts every node of `lab` (in its namespace, for `--netns` labs) and waits up to
/// `timeout` for a primary and streaming replicas; on failure prints the logs' ends.
pub async fn start(lab: &Lab, timeout: Duration) -> anyhow::Result<()> {
    if lab.netns_prefix.is_some() {
        netns::create(lab)?;
    }
    for node in &lab.nodes {
        println!("starting {} ({})", node.name, node.ports_line());
        let pid = process::spawn(lab, node)?;
        println!("  pid {pid}, log {}", node.log_path().display());
    }
    let replicas = lab.nodes.len() - 1;
    println!("waiting for a primary and {replicas} streaming replica{}...", if replicas == 1 { "" } else { "s" });
    if let Err(e) = ready::wait(lab, timeout).await {
        for node in &lab.nodes {
            eprintln!("---- last 20 lines of {} ----", node.log_path().display());
            eprintln!("{}", logs::tail(&node.log_path(), 20));
        }
        let d = lab.dir.display();
        bail!("{e:#}\nthe nodes are left as they are: `raftctl lab status --dir {d}`, `raftctl lab down --dir {d}`");
    }
    Ok(())
}

/// A stopped lab in `dir`: the same nodes, started again. Refuses a running one.
fn reuse(dir: &Path, args: &UpArgs) -> anyhow::Result<Lab> {
    let mut lab = Lab::load(dir)?;
    for (asked, has, flag) in [(args.netns, lab.netns_prefix.is_some(), "--netns"), (args.tls, lab.tls.is_some(), "--tls")] {
        if asked && !has {
            let d = dir.display();
            bail!("the lab in {d} was made without {flag}: `raftctl lab down --clean --dir {d}` first, or use another --dir");
        }
    }
    if let Some((node, pid)) = lab.nodes.iter().find_map(|n| process::agent(n).or_else(|| process::postmaster(n)).map(|p| (n, p.pid))) {
        let d = dir.display();
        bail!(
            "a lab is already running in {d} ({}'s process {pid} is alive): see `raftctl lab status --dir {d}`, \
             stop it with `raftctl lab down --dir {d}`, or use another --dir",
            node.name
        );
    }
    println!(
        "{} holds a stopped lab: starting its {} nodes again (`raftctl lab down --clean` for a fresh one)",
        dir.display(),
        lab.nodes.len()
    );
    if lab.netns_prefix.is_some() {
        netns::require_root("this lab (made with --netns)")?;
    } else {
        let layout: Vec<_> = lab.nodes.iter().map(|n| n.ports).collect();
        ports::check_free(&layout, lab.base_port)?;
    }
    if lab.user.is_some() && !user::is_root() {
        bail!("this lab runs its nodes as user {}: run `raftctl lab up` as root", lab.user.as_ref().map_or("", |u| u.name.as_str()));
    }
    lab.raftgres_bin = node_binary(dir, lab.user.as_ref())?;
    lab.save()?;
    Ok(lab)
}

/// A new lab in `dir`: checks, then every file the nodes read.
pub fn create(args: &UpArgs, dir: &Path) -> anyhow::Result<Lab> {
    let netns_prefix = if args.netns {
        netns::require_root("--netns")?;
        netns::check_prefix(&args.netns_prefix)?;
        if args.base_port != ports::DEFAULT_BASE_PORT {
            bail!("--base-port does not apply with --netns: every node has its own namespace and the classic ports");
        }
        Some(args.netns_prefix.clone())
    } else {
        None
    };
    let layout = ports::layout(args.nodes, args.base_port)?;
    if netns_prefix.is_none() {
        ports::check_free(&layout, args.base_port)?;
    }
    if dir.exists() && std::fs::read_dir(dir).with_context(|| format!("cannot read {}", dir.display()))?.next().is_some() {
        bail!("{} exists and is not a lab (no lab.json): choose another --dir or remove it", dir.display());
    }
    let pg_bin_dir = pg_bin_dir(args.pg_bin_dir.as_deref())?;
    let lab_user = if user::is_root() { Some(user::ensure_user()?) } else { None };
    if let Some(u) = &lab_user {
        if let Some(blocked) = user::blocked_parent(dir, u) {
            bail!(
                "user {} cannot reach {}: {} is not searchable by others; choose a --dir under /tmp",
                u.name,
                dir.display(),
                blocked.display()
            );
        }
    }
    make_dir(dir)?;
    let nodes = LabNode::all(dir, layout, netns_prefix.as_deref());
    let raftgres_bin = node_binary(dir, lab_user.as_ref())?;
    let standby_cluster = args.standby_cluster.as_deref().map(host_port).transpose()?;
    let passwords = match &args.passwords_from {
        Some(other) => Passwords::of_lab(other)?,
        None => Passwords::random(),
    };
    let tls = if args.tls { Some(certs::create(dir, &nodes)?) } else { None };
    let lab = Lab {
        dir: dir.to_path_buf(),
        scope: SCOPE.into(),
        base_port: args.base_port,
        raftgres_bin,
        pg_bin_dir,
        user: lab_user,
        netns_prefix,
        tls,
        standby_cluster,
        profile: args.profile,
        nodes,
    };
    for node in &lab.nodes {
        make_dir(&node.dir)?;
        config::write_private(&node.config_path(), &config::render(&lab, node, &passwords))?;
    }
    config::write_private(&lab.pgpass_path(), &config::render_pgpass(&lab, &passwords))?;
    lab.save()?;
    if let Some(u) = &lab.user {
        user::chown_tree(dir, u.uid, u.gid)?;
        println!("{} belongs to user {} (the nodes run as {1})", dir.display(), u.name);
    }
    Ok(lab)
}

/// `--standby-cluster HOST:PORT`.
fn host_port(value: &str) -> anyhow::Result<(String, u16)> {
    let parsed = value.rsplit_once(':').and_then(|(h, p)| Some((h, p.parse::<u16>().ok().filter(|p| *p > 0)?)));
    match parsed {
        Some((host, port)) if !host.is_empty() => Ok((host.to_string(), port)),
        _ => bail!("--standby-cluster must be HOST:PORT (e.g. 127.0.0.1:5432), not {value:?}"),
    }
}

pub fn absolute(dir: &Path) -> anyhow::Result<PathBuf> {
    if dir.is_absolute() {
        Ok(dir.to_path_buf())
    } else {
        Ok(std::env::current_dir().context("cannot read the current directory")?.join(dir))
    }
}

/// Creates `dir` (and parents) with mode 0755, whatever the umask.
fn make_dir(dir: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).with_context(|| format!("cannot chmod {}", dir.display()))
}

/// `raftgres` next to this `raftctl`; copied into `DIR/bin/` when the lab's user could
/// not execute it where it is.
fn node_binary(dir: &Path, lab_user: Option<&LabUser>) -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe().context("cannot find the raftctl binary's path")?;
    let bin = exe.parent().map(|d| d.join("raftgres")).context("raftctl has no parent directory")?;
    if !bin.is_file() {
        bail!("the node binary {} is missing: build it next to raftctl (`cargo build -p raftgres`)", bin.display());
    }
    let Some(u) = lab_user else { return Ok(bin) };
    if user::blocked_parent(&bin, u).is_none() && user::may(&bin, u, 0o1) {
        return Ok(bin);
    }
    let copy = dir.join("bin").join("raftgres");
    make_dir(&dir.join("bin"))?;
    println!("user {} cannot run {}: copying it to {}", u.name, bin.display(), copy.display());
    std::fs::copy(&bin, &copy).with_context(|| format!("cannot copy {} to {}", bin.display(), copy.display()))?;
    std::fs::set_permissions(&copy, std::fs::Permissions::from_mode(0o755))?;
    Ok(copy)
}

/// PostgreSQL's bin directory: the one asked for, the default, or the newest installed.
fn pg_bin_dir(asked: Option<&Path>) -> anyhow::Result<PathBuf> {
    let has_pg = |d: &Path| d.join("pg_ctl").is_file() && d.join("initdb").is_file();
    if let Some(d) = asked {
        if has_pg(d) {
            return Ok(d.to_path_buf());
        }
        bail!("--pg-bin-dir {}: no pg_ctl and initdb there", d.display());
    }
    if has_pg(Path::new(DEFAULT_PG_BIN_DIR)) {
        return Ok(PathBuf::from(DEFAULT_PG_BIN_DIR));
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
        .filter_map(|e| Some((e.file_name().to_str()?.parse().ok()?, e.path().join("bin"))))
        .filter(|(_, d)| has_pg(d))
        .collect();
    versions.sort();
    versions.pop().map(|(_, d)| d).context(
        "PostgreSQL is not installed (no /usr/lib/postgresql/*/bin/pg_ctl): install postgresql, or name its bin directory with --pg-bin-dir",
    )
}

fn print_howto(lab: &Lab) {
    let d = lab.dir.display();
    let f = if lab.dir == Path::new(DEFAULT_DIR) { String::new() } else { format!(" --dir {d}") };
    let n1 = &lab.nodes[0];
    let endpoints = lab.endpoints().join(",");
    // A TLS lab outside the default directory is found with --lab.
    let lab_flag = match &lab.tls {
        Some(_) if !f.is_empty() => format!(" --lab {d}"),
        _ => String::new(),
    };
    let (scheme, etcdctl_tls, curl_tls) = match &lab.tls {
        Some(t) => (
            "https",
            format!(" --cacert {} --cert {} --key {}", t.ca.display(), t.client_cert.display(), t.client_key.display()),
            format!(" --cacert {}", t.ca.display()),
        ),
        None => ("http", String::new(), String::new()),
    };
    println!();
    println!("The lab is up. Connect with:");
    println!("  export PGPASSFILE={}", lab.pgpass_path().display());
    println!("  psql -h {} -p {} -U postgres", n1.host, n1.ports.postgres);
    println!("  etcdctl --endpoints {scheme}://{}{etcdctl_tls} get --prefix /service/{}/", n1.client_addr(), lab.scope);
    println!("  raftctl --endpoints {endpoints}{lab_flag} list");
    println!("  raftctl --endpoints {endpoints}{lab_flag} members");
    println!("REST API: curl -s{curl_tls} {scheme}://{}:{}/patroni", n1.host, n1.ports.rest);
    println!("Try a failure (the node names are node1..node{}):", lab.nodes.len());
    println!("  raftctl lab status{f}");
    println!("  raftctl lab kill node1{f}      # crash a node (agent and PostgreSQL)");
    println!("  raftctl lab start node1{f}     # start it again");
    println!("  raftctl lab pause node2{f}     # freeze an agent (SIGSTOP); `resume` thaws it");
    println!("  raftctl lab logs node1 -n 50{f}");
    if let Some(prefix) = &lab.netns_prefix {
        println!("Network faults (node i runs in namespace {prefix}i at 10.250.0.i):");
        println!("  raftctl lab partition node1{f}   # cut node1 off from the other nodes");
        println!("  raftctl lab partition node2 --from node3 --oneway{f}");
        println!("  raftctl lab heal{f}              # remove every partition");
        println!("  raftctl lab netem node1 \"delay 200ms 50ms loss 3%\"{f}");
        println!("  raftctl lab clear node1{f}       # back to a clean link");
        println!("  ip netns exec {prefix}1 ss -tn      # look inside node1's namespace");
    }
    println!("  raftctl lab down{f}  # stop everything (--clean also removes {d})");
}

#[cfg(test)]
mod tests {
    #[test]
    fn standby_cluster_takes_host_and_port() {
        assert_eq!(super::host_port("127.0.0.1:5432").expect("valid"), ("127.0.0.1".to_string(), 5432));
        for bad in ["127.0.0.1", ":5432", "h:0", "h:port", "h:70000"] {
            let e = super::host_port(bad).expect_err("invalid").to_string();
            assert_eq!(e, format!("--standby-cluster must be HOST:PORT (e.g. 127.0.0.1:5432), not {bad:?}"));
        }
    }
}
