//! `raftctl query`: runs SQL on a member, as `patronictl query`: the leader by default,
//! a `-r/--role` or a `-m/--member`; `-c/--command SQL` or `-f/--file FILE`; `-U`,
//! `-d`, `--password` (a prompt, refused without a terminal); output `--format
//! tsv|pretty|json|yaml` with `--delimiter`; `-W`/`-w` to run it again and again.
//!
//! Like libpq (which patronictl's psycopg uses), the user defaults to `PGUSER`, then
//! the login name; the database to `PGDATABASE`, then the user; the password comes
//! from `PGPASSWORD`, then the password file (`PGPASSFILE`, else `~/.pgpass`). The
//! connection is plain TCP to the member's `conn_url` host and port (no TLS). Values
//! print as PostgreSQL's text (a NULL as `None` in text, `null` in JSON). With several
//! statements, the last one's rows are printed. An error ends the command (exit 1);
//! when watching, it prints as patronictl's "timestamp, ERROR ..." row and goes on.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context};
use clap::Args;
use serde_json::Value;
use tokio_postgres::{NoTls, SimpleQueryMessage};

use crate::command::cluster::{check_member, members_with_role, open, prompt, ClusterArgs, Echo, RoleFilter};
use crate::refresh::Refresh;
use crate::table::{format, Output, Table};
use raftgres_client::Api;

#[derive(Debug, Args)]
pub struct QueryArgs {
    #[command(flatten)]
    pub cluster: ClusterArgs,
    /// The SQL to run.
    #[arg(short = 'c', long, conflicts_with = "file", required_unless_present = "file")]
    pub command: Option<String>,
    /// Run the SQL in this file.
    #[arg(short = 'f', long, value_name = "FILE")]
    pub file: Option<PathBuf>,
    /// Run it on a member with this role (default: the leader).
    #[arg(short = 'r', long, value_enum, conflicts_with = "member")]
    pub role: Option<RoleFilter>,
    /// Run it on this member.
    #[arg(short = 'm', long)]
    pub member: Option<String>,
    /// Database user name (default: PGUSER, then the login name).
    #[arg(short = 'U', long)]
    pub username: Option<String>,
    /// Ask for the password on the terminal.
    #[arg(long)]
    pub password: bool,
    /// Database name (default: PGDATABASE, then the user name).
    #[arg(short = 'd', long)]
    pub dbname: Option<String>,
    /// Output format (tsv, pretty, json, yaml; default tsv); overrides -o.
    #[arg(long, value_enum)]
    pub format: Option<Output>,
    /// The tsv column delimiter.
    #[arg(long, default_value = "\t")]
    pub delimiter: String,
    #[command(flatten)]
    pub refresh: Refresh,
    /// The node config file (`-c` is --command here, as in patronictl: give `-c FILE`
    /// before `query`, or this).
    #[arg(long = "config-file", id = "config", value_name = "FILE")]
    pub config_file: Option<PathBuf>,
}

/// One entry of a password file: `host:port:database:username:password`, `*` matching
/// anything, `\:` and `\\` escaped.
fn pgpass_fields(line: &str) -> Vec<String> {
    let mut fields = vec![String::new()];
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => fields.last_mut().into_iter().for_each(|f| f.extend(chars.next())),
            ':' => fields.push(String::new()),
            c => fields.last_mut().into_iter().for_each(|f| f.push(c)),
        }
    }
    fields
}

/// The password a libpq password file gives for these connection settings.
pub fn pgpass_lookup(text: &str, host: &str, port: u16, database: &str, user: &str) -> Option<String> {
    let port = port.to_string();
    text.lines().filter(|l| !l.trim_start().starts_with('#') && !l.trim().is_empty()).find_map(|line| {
        let fields = pgpass_fields(line);
        let [h, p, d, u, password] = fields.as_slice() else { return None };
        let fits = |pattern: &str, value: &str| pattern == "*" || pattern == value;
        (fits(h, host) && fits(p, &port) && fits(d, database) && fits(u, user)).then(|| password.clone())
    })
}

/// The rows of the last statement that returned any (None: it returned none).
pub fn last_result(messages: &[SimpleQueryMessage]) -> Option<Table> {
    let mut last: Option<Table> = None;
    let mut described = false;
    for message in messages {
        match message {
            SimpleQueryMessage::RowDescription(columns) => {
                described = true;
                let columns = columns.iter().map(|c| c.name().to_string()).collect();
                last = Some(Table { title: None, columns, rows: Vec::new(), omit_empty: false });
            }
            SimpleQueryMessage::Row(row) => {
                if let Some(table) = last.as_mut() {
                    table.rows.push((0..row.len()).map(|i| row.get(i).map_or(Value::Null, Value::from)).collect());
                }
            }
            SimpleQueryMessage::CommandComplete(_) => {
                if !described {
                    last = None;
                }
                described = false;
            }
            _ => {}
        }
    }
    last
}

/// How to connect: user, database and password as libpq picks them (see the module doc).
struct Login {
    user: String,
    dbname: String,
    password: Option<String>,
}

fn login(args: &QueryArgs, env: impl Fn(&str) -> Option<String>) -> anyhow::Result<Login> {
    let user = args.username.clone().or_else(|| env("PGUSER")).or_else(|| env("USER")).context("no user name: give -U")?;
    let dbname = args.dbname.clone().or_else(|| env("PGDATABASE")).unwrap_or_else(|| user.clone());
    let password = if args.password {
        Some(prompt("Password", Echo::Off, ": give it in PGPASSWORD or a password file (PGPASSFILE, ~/.pgpass) instead")?)
    } else {
        env("PGPASSWORD")
    };
    Ok(Login { user, dbname, password })
}

/// The password file libpq would read.
fn passfile(env: impl Fn(&str) -> Option<String>) -> Option<PathBuf> {
    env("PGPASSFILE").map(PathBuf::from).or_else(|| env("HOME").map(|home| Path::new(&home).join(".pgpass")))
}

/// The SQL: `-c`, or the `-f` file.
fn sql(args: &QueryArgs) -> anyhow::Result<String> {
    match (&args.command, &args.file) {
        (Some(sql), _) => Ok(sql.clone()),
        (None, Some(file)) => std::fs::read_to_string(file).with_context(|| format!("-f {}: cannot read it", file.display())),
        (None, None) => bail!("give the SQL with -c/--command or -f/--file"),
    }
}

/// Connects to the member the flags pick and runs `sql`.
async fn run_once(api: &Api, args: &QueryArgs, login: &Login, sql: &str) -> anyhow::Result<Option<Table>> {
    let (_, view) = open(api, &args.cluster).await?;
    let role = args.role.unwrap_or(RoleFilter::Leader);
    let name = match &args.member {
        Some(m) => m.clone(),
        None => members_with_role(&view, role)
            .into_iter()
            .next()
            .with_context(|| format!("no connection to role={} is available", role.name()))?,
    };
    check_member(&view, &name)?;
    let member = &view.members[&name];
    let (host, port) = member.host_port().with_context(|| format!("{name} has a malformed conn_url {}", member.conn_url))?;
    let password = match &login.password {
        Some(p) => Some(p.clone()),
        None => passfile(|v| std::env::var(v).ok())
            .and_then(|f| std::fs::read_to_string(f).ok())
            .and_then(|text| pgpass_lookup(&text, &host, port, &login.dbname, &login.user)),
    };
    let mut config = tokio_postgres::Config::new();
    config
        .host(&host)
        .port(port)
        .user(&login.user)
        .dbname(&login.dbname)
        .application_name("raftctl")
        .connect_timeout(Duration::from_secs(5));
    if let Some(p) = password {
        config.password(p);
    }
    let (client, connection) = config.connect(NoTls).await.map_err(|e| sql_error(&name, e))?;
    tokio::spawn(connection);
    if args.role == Some(RoleFilter::Replica) {
        let recovering = client.simple_query("SELECT pg_catalog.pg_is_in_recovery()").await.map_err(|e| sql_error(&name, e))?;
        let first = last_result(&recovering).and_then(|t| t.rows.into_iter().next()).and_then(|row| row.into_iter().next());
        let in_recovery = first.as_ref().and_then(Value::as_str) == Some("t");
        if !in_recovery {
            bail!("no connection to role=replica is available: {name} is not in recovery");
        }
    }
    let messages = client.simple_query(sql).await.map_err(|e| sql_error(&name, e))?;
    Ok(last_result(&messages))
}

fn sql_error(member: &str, e: tokio_postgres::Error) -> anyhow::Error {
    match e.as_db_error() {
        Some(db) => anyhow::anyhow!("{member}: ERROR, SQLSTATE: {}: {}", db.code().code(), db.message()),
        None => {
            let mut detail = e.to_string();
            let mut source = std::error::Error::source(&e);
            while let Some(cause) = source {
                detail.push_str(&format!(": {cause}"));
                source = cause.source();
            }
            let hint = if detail.contains("password missing") { " (PGPASSWORD, a password file, or --password)" } else { "" };
            anyhow::anyhow!("{member}: {detail}{hint}")
        }
    }
}

pub async fn run(api: &Api, args: QueryArgs, global: Option<Output>) -> anyhow::Result<()> {
    let output = Output::pick(args.format, global, Output::Tsv);
    let sql = sql(&args)?;
    let login = login(&args, |v| std::env::var(v).ok())?;
    let watching = args.refresh.interval()?.is_some();
    let (args, login, sql) = (&args, &login, &sql);
    args.refresh
        .repeat(|| async move {
            let result = match run_once(api, args, login, sql).await {
                Ok(table) => table,
                Err(e) if watching => {
                    let now = chrono::Local::now().format("%Y-%m-%d %H:%M:%S").to_string();
                    Some(Table {
                        title: None,
                        columns: Vec::new(),
                        rows: vec![vec![now.into(), format!("{e:#}").into()]],
                        omit_empty: false,
                    })
                }
                Err(e) => return Err(e),
            };
            match result {
                Some(table) => format(output, &table, &args.delimiter),
                None => Ok(String::new()),
            }
        })
        .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn parse(words: &[&str]) -> QueryArgs {
        let cli = crate::Cli::parse_from(["raftctl", "query"].iter().chain(words));
        let crate::Command::Query(args) = cli.command else { panic!("not query") };
        args
    }

    #[test]
    fn flags_as_patronictl() {
        let a = parse(&[
            "demo",
            "-c",
            "select 1",
            "-r",
            "replica",
            "-U",
            "postgres",
            "-d",
            "app",
            "--format",
            "json",
            "--delimiter",
            ";",
            "-W",
        ]);
        assert_eq!(
            (a.cluster.cluster.as_deref(), a.command.as_deref(), a.role),
            (Some("demo"), Some("select 1"), Some(RoleFilter::Replica))
        );
        assert_eq!(
            (a.username.as_deref(), a.dbname.as_deref(), a.format, a.delimiter.as_str()),
            (Some("postgres"), Some("app"), Some(Output::Json), ";")
        );
        assert!(a.refresh.every_two_seconds);
        assert_eq!(parse(&["-f", "/tmp/q.sql", "-m", "node2"]).file.as_deref(), Some(Path::new("/tmp/q.sql")));
        assert!(crate::Cli::try_parse_from(["raftctl", "query"]).is_err(), "-c or -f");
        assert!(crate::Cli::try_parse_from(["raftctl", "query", "-c", "x", "-f", "y"]).is_err(), "not both");
        assert!(crate::Cli::try_parse_from(["raftctl", "query", "-c", "x", "-r", "any", "-m", "n"]).is_err(), "role or member");
        let cli = crate::Cli::parse_from(["raftctl", "-c", "/etc/raftgres.yml", "query", "-c", "select 1"]);
        assert_eq!(cli.config.as_deref(), Some(Path::new("/etc/raftgres.yml")), "-c before query is the config file");
        let cli = crate::Cli::parse_from(["raftctl", "query", "--config-file", "/etc/r.yml", "-c", "select 1"]);
        assert_eq!(cli.config.as_deref(), Some(Path::new("/etc/r.yml")));
    }

    #[test]
    fn logins_as_libpq() {
        let env =
            |vars: &'static [(&'static str, &'static str)]| move |n: &str| vars.iter().find(|(k, _)| *k == n).map(|(_, v)| v.to_string());
        let l = login(&parse(&["-c", "x"]), env(&[("USER", "alice"), ("PGPASSWORD", "pw")])).expect("login");
        assert_eq!((l.user.as_str(), l.dbname.as_str(), l.password.as_deref()), ("alice", "alice", Some("pw")));
        let l = login(&parse(&["-c", "x", "-U", "bob"]), env(&[("PGUSER", "carol"), ("PGDATABASE", "app")])).expect("login");
        assert_eq!((l.user.as_str(), l.dbname.as_str(), l.password), ("bob", "app", None));
        assert!(login(&parse(&["-c", "x"]), env(&[])).is_err(), "no user at all");
        assert_eq!(passfile(env(&[("HOME", "/home/a")])), Some(PathBuf::from("/home/a/.pgpass")));
        assert_eq!(passfile(env(&[("HOME", "/home/a"), ("PGPASSFILE", "/p")])), Some(PathBuf::from("/p")));
    }

    #[test]
    fn password_files_as_libpq() {
        let text = "# comment\n127.0.0.1:5433:*:postgres:first\n*:*:*:repl\\:user:c\\:o\\\\lon\n*:*:*:postgres:fallback\n";
        assert_eq!(pgpass_lookup(text, "127.0.0.1", 5433, "app", "postgres").as_deref(), Some("first"));
        assert_eq!(pgpass_lookup(text, "127.0.0.1", 5434, "app", "postgres").as_deref(), Some("fallback"));
        assert_eq!(pgpass_lookup(text, "h", 1, "d", "repl:user").as_deref(), Some("c:o\\lon"));
        assert_eq!(pgpass_lookup(text, "h", 1, "d", "nobody"), None);
        assert_eq!(pgpass_lookup("short:line\n", "short", 1, "d", "u"), None);
    }
}
