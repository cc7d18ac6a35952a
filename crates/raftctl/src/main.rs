//! `raftctl`: the command-line tool for raftgres clusters, patronictl's and etcdctl's
//! jobs in one: the Raft half (`members`), PostgreSQL's half (`list`,
//! `switchover`, `failover`, `restart`, `flush`, `reinit`, `pause`, `edit-config`, `history`,
//! `events`, `topology`, `dsn`, `query`, `remove`, ...; patronictl's names, flags,
//! CLUSTER argument and output formats), and the learning lab and fault runner (`lab`,
//! `chaos`).

mod command;
mod credentials;
mod endpoints;
mod refresh;
mod table;
mod tls;
mod when;

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use endpoints::NodeFile;
use raftgres_client::{Api, Security};
use table::Output;

#[derive(Debug, Parser)]
#[command(name = "raftctl", version, about = "Drive a raftgres cluster: Raft members, PostgreSQL, the lab")]
pub struct Cli {
    /// etcd API endpoints of the cluster (comma separated), as etcdctl's --endpoints.
    /// Without it: the -c file's, then $RAFTCTL_ENDPOINTS, then $ETCDCTL_ENDPOINTS, then 127.0.0.1:2379.
    #[arg(long, global = true, value_delimiter = ',')]
    pub endpoints: Vec<String>,
    /// A node's raftgres.yml: its etcd API endpoint, scope, namespace and client TLS
    /// (as patronictl -c/--config-file patroni.yml).
    #[arg(short = 'c', long = "config-file", alias = "config", global = true, value_name = "FILE")]
    pub config: Option<std::path::PathBuf>,
    /// Output format: pretty (or table), tsv, json, yaml; a command's -f/--format wins.
    #[arg(short = 'o', long, global = true, value_enum)]
    pub output: Option<Output>,
    #[command(flatten)]
    pub tls: tls::TlsArgs,
    #[command(flatten)]
    pub user: credentials::UserArgs,
    /// The etcd user's password (etcdctl's --password; --user is then the whole user
    /// name). Before the command only (`query --password` asks for PostgreSQL's).
    /// Default: $RAFTCTL_PASSWORD, then $ETCDCTL_PASSWORD.
    #[arg(long, value_name = "PASSWORD")]
    pub password: Option<String>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Raft members: list (default), add, promote, remove.
    Members(command::members::MembersArgs),
    /// The PostgreSQL cluster as `patronictl list` shows it, plus each member's Raft role.
    List(command::list::ListArgs),
    /// Planned switchover to a replica (now or --scheduled); --cancel a scheduled one.
    Switchover(command::switchover::SwitchoverArgs),
    /// Manual failover to a named member (also without a running primary).
    Failover(command::switchover::FailoverArgs),
    /// Maintenance mode: the agents stop managing PostgreSQL; no automatic failover.
    Pause(command::pause::PauseArgs),
    /// Leave maintenance mode (refused while an agent does not answer, unless --force).
    Resume(command::pause::ResumeArgs),
    /// The dynamic configuration (`/config`) as YAML.
    ShowConfig(command::config::ShowConfigArgs),
    /// Change the dynamic configuration: -s key=value, -p pg_param=value, or in $EDITOR.
    EditConfig(command::config::EditConfigArgs),
    /// Make the cluster a standby cluster of another cluster's primary (standby_cluster in /config).
    DemoteCluster(command::standby::DemoteClusterArgs),
    /// Make a standby cluster a normal one: its standby leader promotes.
    PromoteCluster(command::standby::PromoteClusterArgs),
    /// A refreshing view: the list table and the latest events (like `watch patronictl list`).
    Watch(command::watch::WatchArgs),
    /// The HA timeline: every agent's decisions, merged in time order (--follow).
    Events(command::events::EventsArgs),
    /// The promotions recorded in `/history`.
    History(command::history::HistoryArgs),
    /// Restart PostgreSQL on members (now, --pending, --scheduled, --pg-version; --cancel).
    Restart(command::node_ops::RestartArgs),
    /// Drop scheduled restarts (DELETE /restart on each member) or the scheduled switchover:
    /// `flush [CLUSTER] [MEMBER]... restart|switchover`.
    Flush(command::flush::FlushArgs),
    /// Re-read members' own config files (what can change live) and reload PostgreSQL's configuration.
    Reload(command::node_ops::ReloadArgs),
    /// Wipe a replica's data directory and clone the primary again (--wait).
    Reinit(command::node_ops::ReinitArgs),
    /// The list table as a replication tree (patronictl topology).
    Topology(command::topology::TopologyArgs),
    /// A libpq connection string for the leader, a --role or a --member.
    Dsn(command::topology::DsnArgs),
    /// Run SQL on the leader, a --role or a --member (patronictl query).
    Query(command::query::QueryArgs),
    /// Wipe a stopped cluster's keys from the store (asks twice, on a terminal only).
    Remove(command::remove::RemoveArgs),
    /// raftctl's version and every member's raftgres and PostgreSQL versions.
    Version(command::topology::VersionArgs),
    /// A local cluster on this machine: up, status, kill, start, pause, resume, logs, down.
    Lab(command::lab::LabArgs),
    /// Fault injection on a lab of its own: rounds of crashes, partitions, netem, full
    /// disks under a write load; checks for split brain and lost writes (needs root).
    Chaos(command::chaos::ChaosArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("raftctl: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            match raftgres_client::auth_hint(&e.root_cause().to_string()) {
                Some(hint) => eprintln!("raftctl: {e:#} ({hint})"),
                None => eprintln!("raftctl: {e:#}"),
            }
            ExitCode::FAILURE
        }
    }
}

/// How to reach the cluster: the endpoints (`endpoints::resolve`) and the TLS flags,
/// with the `-c` node file's TLS when no `--cacert` is given, and the etcd user
/// (`credentials`).
struct Target<'a> {
    endpoints: Vec<String>,
    tls: &'a tls::TlsArgs,
    node_file: Option<&'a NodeFile>,
    user: Option<&'a str>,
    password: Option<&'a str>,
}

/// The API through the first endpoint that answers, with the TLS settings, as the etcd
/// user when one is given.
async fn connect(target: &Target<'_>) -> anyhow::Result<Api> {
    let from_file = || target.node_file.map(NodeFile::tls_files).transpose().map(Option::flatten);
    let files = match target.tls.files()? {
        Some(files) => Some(files),
        None => match from_file()? {
            Some(files) => Some(files),
            None => raftgres_lab::tls_files_for(target.tls.lab.as_deref(), &target.endpoints)?,
        },
    };
    let credentials = credentials::resolve(target.user, target.password)?;
    Api::connect(&target.endpoints, &Security::load(files.as_ref())?, credentials.as_ref()).await
}

impl Command {
    /// The cluster the command names, to fill from a `-c` file (None: it names none).
    fn cluster_mut(&mut self) -> Option<(&mut Option<String>, &mut Option<String>)> {
        use command::cluster::ClusterArgs;
        let args: &mut ClusterArgs = match self {
            Command::List(a) => &mut a.cluster,
            Command::Switchover(a) => &mut a.cluster,
            Command::Failover(a) => &mut a.cluster,
            Command::Pause(a) => &mut a.cluster,
            Command::Resume(a) => &mut a.pause.cluster,
            Command::ShowConfig(a) => &mut a.cluster,
            Command::EditConfig(a) => &mut a.cluster,
            Command::DemoteCluster(a) => &mut a.cluster,
            Command::PromoteCluster(a) => &mut a.cluster,
            Command::Restart(a) => &mut a.node.cluster,
            Command::Reload(a) => &mut a.node.cluster,
            Command::Flush(a) => &mut a.node.cluster,
            Command::Reinit(a) => &mut a.node.cluster,
            Command::Topology(a) => &mut a.cluster,
            Command::Version(a) => &mut a.cluster,
            Command::Dsn(a) => &mut a.cluster,
            Command::Query(a) => &mut a.cluster,
            Command::Remove(a) => &mut a.cluster,
            Command::Watch(a) => &mut a.cluster,
            Command::Events(a) => &mut a.cluster,
            Command::History(a) => &mut a.cluster,
            Command::Members(_) | Command::Lab(_) | Command::Chaos(_) => return None,
        };
        Some((&mut args.scope, &mut args.namespace))
    }
}

async fn run(mut cli: Cli) -> anyhow::Result<()> {
    let node_file = cli.config.as_deref().map(NodeFile::read).transpose()?;
    if let (Some(file), Some((scope, namespace))) = (&node_file, cli.command.cluster_mut()) {
        if scope.is_none() {
            scope.clone_from(&file.scope);
        }
        if namespace.is_none() {
            namespace.clone_from(&file.namespace);
        }
    }
    let target = Target {
        endpoints: endpoints::resolve(&cli.endpoints, node_file.as_ref(), |v| std::env::var(v).ok()),
        tls: &cli.tls,
        node_file: node_file.as_ref(),
        user: cli.user.user.as_deref(),
        password: cli.password.as_deref(),
    };
    match cli.command {
        Command::Members(args) => {
            let api = connect(&target).await?;
            command::members::run(&api, args, cli.output.unwrap_or(Output::Pretty)).await
        }
        Command::List(args) => {
            let shape = command::list::Shape::Formatted(Output::pick(args.format, cli.output, Output::Pretty));
            command::list::run(&connect(&target).await?, args, shape).await
        }
        Command::Lab(args) => command::lab::run(args).await,
        Command::Chaos(args) => command::chaos::run(args).await,
        Command::Switchover(args) => command::switchover::switchover(&connect(&target).await?, args).await,
        Command::Failover(args) => command::switchover::failover(&connect(&target).await?, args).await,
        Command::Pause(args) => command::pause::pause(&connect(&target).await?, args).await,
        Command::Resume(args) => command::pause::resume(&connect(&target).await?, args).await,
        Command::ShowConfig(args) => command::config::show(&connect(&target).await?, args).await,
        Command::EditConfig(args) => command::config::edit(&connect(&target).await?, args).await,
        Command::DemoteCluster(args) => command::standby::demote(&connect(&target).await?, args).await,
        Command::PromoteCluster(args) => command::standby::promote(&connect(&target).await?, args).await,
        Command::Restart(args) => command::node_ops::restart(&connect(&target).await?, args).await,
        Command::Flush(args) => command::flush::run(&connect(&target).await?, args).await,
        Command::Reload(args) => command::node_ops::reload(&connect(&target).await?, args).await,
        Command::Reinit(args) => command::node_ops::reinit(&connect(&target).await?, args).await,
        Command::Topology(args) => command::topology::topology(&connect(&target).await?, args).await,
        Command::Dsn(args) => command::topology::dsn(&connect(&target).await?, args).await,
        Command::Query(args) => command::query::run(&connect(&target).await?, args, cli.output).await,
        Command::Remove(args) => command::remove::run(&connect(&target).await?, args, cli.output).await,
        Command::Version(args) => command::topology::version(&connect(&target).await?, args).await,
        Command::Watch(args) => command::watch::run(&connect(&target).await?, args).await,
        Command::Events(args) => command::events::run(&connect(&target).await?, args, cli.output.unwrap_or(Output::Pretty)).await,
        Command::History(args) => command::history::run(&connect(&target).await?, args, cli.output).await,
    }
}
