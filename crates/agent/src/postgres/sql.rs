//! The agent's SQL: one connection over the private unix socket as the superuser,
//! re-opened when it breaks. Status, replication rows and role creation (the slots' SQL
//! is `slots`'s).

use std::time::Duration;

use tokio_postgres::{Client, NoTls};

use super::{PgError, PgResult};
use crate::cluster::{parse_lsn, Role};
use crate::config::PostgresConfig;
use crate::state::{PgStatus, ReplicationRow};

/// A primary's timeline as SQL: the one in the name of the WAL segment it writes. It
/// moves at the promotion; the control file's moves only at the next checkpoint.
macro_rules! primary_timeline {
    () => {
        "('x' || substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8))::bit(32)::int"
    };
}

/// [`primary_timeline!`] as a query, for tools and tests that read a primary's timeline
/// the way the agent does.
pub const PRIMARY_TIMELINE_QUERY: &str = concat!("SELECT ", primary_timeline!());

/// The longest a local query may take, connecting included.
pub(super) const QUERY_TIMEOUT: Duration = Duration::from_secs(5);

pub(super) fn sql_error(e: tokio_postgres::Error) -> PgError {
    PgError::Sql(e.as_db_error().map_or_else(|| e.to_string(), |d| d.message().to_string()))
}

/// A server's `replication_state`, as Patroni's (3.0.4 on): `streaming` while its WAL
/// receiver streams (`wal_receiver`: `pg_stat_wal_receiver.status`), `in archive
/// recovery` for any other server in recovery (a replica tagged nostream, or one
/// between two connections), none on a primary.
pub fn replication_state(in_recovery: bool, wal_receiver: Option<&str>) -> Option<String> {
    match (in_recovery, wal_receiver) {
        (false, _) => None,
        (true, Some("streaming")) => Some(STREAMING.into()),
        (true, _) => Some("in archive recovery".into()),
    }
}

/// The `replication_state` of a server whose WAL receiver streams.
pub const STREAMING: &str = "streaming";

/// How the agent connects to its own PostgreSQL: the private unix socket, as the superuser.
pub fn local_config(pg: &PostgresConfig, application_name: &str) -> tokio_postgres::Config {
    let mut config = tokio_postgres::Config::new();
    config
        .host_path(pg.socket_dir())
        .port(pg.port())
        .user(&pg.authentication.superuser.username)
        .dbname("postgres")
        .application_name(application_name)
        .connect_timeout(Duration::from_secs(2));
    config
}

/// The timeline a standby is on: the newest of the one its WAL receiver receives, the one
/// in the name of the WAL segment file it replays from, and its control file's checkpoint
/// timeline. The control file alone lags: a standby moves it only at a restartpoint (each
/// `checkpoint_timeout`), and once the receiver stopped (its upstream died)
/// `pg_stat_wal_receiver` says nothing; a replica that believed the control file would
/// think itself behind the cluster's timeline and never take over. The segment file's
/// timeline cannot be ahead of the standby's history: a receiver writes segments of a
/// timeline only after the startup process chose to follow it, which PostgreSQL does only
/// when that timeline's history holds the standby's own replay point.
pub fn standby_timeline(received: Option<u32>, replayed_file: Option<u32>, control: u32) -> u32 {
    received.max(replayed_file).map_or(control, |t| t.max(control))
}

/// A lazily (re)opened connection to the local PostgreSQL.
pub struct Sql {
    pub(super) config: tokio_postgres::Config,
    client: Option<Client>,
}

impl Sql {
    pub fn new(pg: &PostgresConfig) -> Self {
        Self { config: local_config(pg, "raftgres"), client: None }
    }

    async fn client(&mut self) -> PgResult<&Client> {
        if self.client.as_ref().is_some_and(Client::is_closed) {
            self.client = None;
        }
        if self.client.is_none() {
            self.client = Some(connect(&self.config).await?);
        }
        self.client.as_ref().ok_or_else(|| PgError::Sql("no connection".into()))
    }

    /// Forgets the connection (after PostgreSQL stopped).
    pub fn disconnect(&mut self) {
        self.client = None;
    }

    /// Runs `f` on the connection, (re)connecting first; both within [`QUERY_TIMEOUT`]
    /// (a connection's `connect_timeout` bounds only the socket, not the startup
    /// handshake, which a struggling server can leave unanswered).
    pub(super) async fn timed<T>(&mut self, f: impl FnOnce(&Client) -> futures::future::BoxFuture<'_, PgResult<T>>) -> PgResult<T> {
        let result = tokio::time::timeout(QUERY_TIMEOUT, async {
            let client = self.client().await?;
            f(client).await
        })
        .await;
        match result {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => {
                self.client = None;
                Err(e)
            }
            Err(_) => {
                self.client = None;
                Err(PgError::Sql("query timed out".into()))
            }
        }
    }

    /// Role, positions, timeline and the rest of [`PgStatus`] (state "running").
    pub async fn status(&mut self) -> PgResult<PgStatus> {
        // The last column: on a standby, the timeline in the name of the WAL segment file
        // (in pg_wal) holding the last replayed record, the newest where segments of
        // several timelines share the number (a switch inside the segment); see
        // [`standby_timeline`].
        const QUERY: &str = concat!(
            "SELECT pg_is_in_recovery(), current_setting('server_version_num')::int, \
            pg_postmaster_start_time()::text, \
            CASE WHEN pg_is_in_recovery() THEN NULL ELSE pg_current_wal_lsn()::text END, \
            pg_last_wal_receive_lsn()::text, pg_last_wal_replay_lsn()::text, pg_last_xact_replay_timestamp()::text, \
            (SELECT status FROM pg_stat_wal_receiver LIMIT 1), \
            CASE WHEN pg_is_in_recovery() THEN (SELECT received_tli FROM pg_stat_wal_receiver LIMIT 1) ELSE ",
            primary_timeline!(),
            " END, \
            (SELECT coalesce(array_agg(name::text), '{}') FROM pg_settings WHERE pending_restart), \
            (SELECT system_identifier::text FROM pg_control_system()), \
            (pg_control_checkpoint()).timeline_id, \
            (SELECT max(('x' || substr(w.name, 1, 8))::bit(32)::int) FROM pg_ls_waldir() w, \
              (SELECT floor(pg_wal_lsn_diff(pg_last_wal_replay_lsn() - 1, '0/0') / size)::bigint AS n, (4294967296 / size)::bigint AS per \
               FROM (SELECT setting::bigint AS size FROM pg_settings WHERE name = 'wal_segment_size') z) seg \
             WHERE pg_is_in_recovery() AND length(w.name) = 24 \
               AND substr(w.name, 9) = upper(lpad(to_hex(seg.n / seg.per), 8, '0') || lpad(to_hex(seg.n % seg.per), 8, '0')))"
        );
        const REPLICATION: &str = "SELECT usename::text, application_name, host(client_addr), state, sync_state, sync_priority, \
            flush_lsn::text FROM pg_stat_replication ORDER BY application_name";
        self.timed(|c| {
            Box::pin(async move {
                let row = c.query_one(QUERY, &[]).await.map_err(sql_error)?;
                let in_recovery: bool = row.get(0);
                let lsn = |i: usize| row.get::<_, Option<String>>(i).as_deref().and_then(parse_lsn);
                let timeline = |i: usize| row.get::<_, Option<i32>>(i).and_then(|t| u32::try_from(t).ok());
                let mut status = PgStatus {
                    state: crate::state::PgState::Running,
                    role: if in_recovery { Role::Replica } else { Role::Primary },
                    server_version: row.get::<_, i32>(1).try_into().ok(),
                    postmaster_start_time: row.get(2),
                    wal_lsn: lsn(3),
                    receive_lsn: lsn(4),
                    replay_lsn: lsn(5),
                    replayed_timestamp: row.get(6),
                    replication_state: replication_state(in_recovery, row.get::<_, Option<String>>(7).as_deref()),
                    timeline: if in_recovery {
                        Some(standby_timeline(timeline(8), timeline(12), timeline(11).unwrap_or(0)))
                    } else {
                        timeline(8)
                    },
                    pending_restart: super::conf::pending_restart(&row.get::<_, Vec<String>>(9)),
                    system_identifier: row.get(10),
                    replication: vec![],
                };
                if !in_recovery {
                    for r in c.query(REPLICATION, &[]).await.map_err(sql_error)? {
                        status.replication.push(ReplicationRow {
                            usename: r.get::<_, Option<String>>(0).unwrap_or_default(),
                            application_name: r.get::<_, Option<String>>(1).unwrap_or_default(),
                            client_addr: r.get(2),
                            state: r.get::<_, Option<String>>(3).unwrap_or_default(),
                            sync_state: r.get::<_, Option<String>>(4).unwrap_or_default(),
                            sync_priority: r.get::<_, Option<i32>>(5).unwrap_or_default(),
                            flush_lsn: r.get::<_, Option<String>>(6).as_deref().and_then(parse_lsn),
                        });
                    }
                }
                Ok(status)
            })
        })
        .await
    }

    /// Creates (or updates the password and attribute of) a login role; `attribute` is
    /// `REPLICATION` or `SUPERUSER`.
    pub async fn ensure_role(&mut self, user: &str, password: &str, attribute: &'static str) -> PgResult<()> {
        let (user, password) = (user.to_string(), password.to_string());
        self.timed(|c| {
            Box::pin(async move {
                let exists = c.query_opt("SELECT 1 FROM pg_roles WHERE rolname = $1", &[&user]).await.map_err(sql_error)?.is_some();
                let verb = if exists { "ALTER" } else { "CREATE" };
                let stmt: String = c
                    .query_one(
                        &format!("SELECT format('{verb} ROLE %I WITH LOGIN {attribute} PASSWORD %L', $1::text, $2::text)"),
                        &[&user, &password],
                    )
                    .await
                    .map_err(sql_error)?
                    .get(0);
                c.batch_execute(&stmt).await.map_err(sql_error)
            })
        })
        .await
    }

    /// Asks a standby to promote without waiting (`pg_promote(false)`).
    pub async fn request_promotion(&mut self) -> PgResult<()> {
        self.timed(|c| Box::pin(async move { c.batch_execute("SELECT pg_promote(false)").await.map_err(sql_error) })).await
    }

    /// True while PostgreSQL is in recovery (a standby).
    pub async fn in_recovery(&mut self) -> PgResult<bool> {
        self.timed(|c| Box::pin(async move { Ok(c.query_one("SELECT pg_is_in_recovery()", &[]).await.map_err(sql_error)?.get(0)) })).await
    }

    /// True when recovery is paused (`recovery_target_action = pause` reached its target).
    pub async fn replay_paused(&mut self) -> PgResult<bool> {
        let query = "SELECT pg_is_in_recovery() AND pg_get_wal_replay_pause_state() = 'paused'";
        self.timed(move |c| Box::pin(async move { Ok(c.query_one(query, &[]).await.map_err(sql_error)?.get(0)) })).await
    }

    /// The timeline of the last checkpoint (on a standby: restartpoint) in the control
    /// file: what pg_rewind reads of a source.
    pub async fn control_timeline(&mut self) -> PgResult<u32> {
        let query = "SELECT (pg_control_checkpoint()).timeline_id";
        let tli: i32 = self.timed(move |c| Box::pin(async move { Ok(c.query_one(query, &[]).await.map_err(sql_error)?.get(0)) })).await?;
        u32::try_from(tli).map_err(|_| crate::postgres::PgError::Io(format!("pg_control_checkpoint() gave the timeline {tli}")))
    }

    /// Forces a checkpoint (after a promotion, so the control file shows the new timeline).
    pub async fn checkpoint(&mut self) -> PgResult<()> {
        self.timed(|c| Box::pin(async move { c.batch_execute("CHECKPOINT").await.map_err(sql_error) })).await
    }

    /// How much WAL the replica at `host:port` has received (`pg_last_wal_receive_lsn`).
    pub async fn remote_received_lsn(pg: &PostgresConfig, host: &str, port: u16) -> PgResult<Option<u64>> {
        let row = remote_row(pg, host, port, "SELECT pg_last_wal_receive_lsn()::text").await?;
        Ok(row.get::<_, Option<String>>(0).as_deref().and_then(parse_lsn))
    }

    /// Whether the primary at `host:port` made a checkpoint on the timeline it runs on.
    /// pg_rewind reads a source's timeline from its control file, which a promoted server
    /// moves only at its first checkpoint after the promotion: before it, pg_rewind
    /// finds source and target "on the same timeline" and does nothing, and the target
    /// (which pg_rewind's own crash recovery just gave a shutdown checkpoint past the
    /// fork) can never follow the new timeline. Patroni's `check_leader_has_run_checkpoint`.
    /// A source in recovery (a standby cluster's standby leader) answers true: it moves
    /// its control file at its own restartpoints (`standby`'s `restartpoint_on_new_timeline`).
    pub async fn remote_checkpointed_on_its_timeline(pg: &PostgresConfig, host: &str, port: u16) -> PgResult<bool> {
        let query = concat!(
            "SELECT CASE WHEN pg_is_in_recovery() THEN true ELSE ",
            primary_timeline!(),
            " = (pg_control_checkpoint()).timeline_id END"
        );
        Ok(remote_row(pg, host, port, query).await?.get(0))
    }
}

/// One row of `query` run on the PostgreSQL at `host:port`, over TCP as the superuser
/// (password from the config), connecting included within [`QUERY_TIMEOUT`].
async fn remote_row(pg: &PostgresConfig, host: &str, port: u16, query: &str) -> PgResult<tokio_postgres::Row> {
    let ask = async {
        let client = connect(&remote_config(pg, host, port)).await?;
        client.query_one(query, &[]).await.map_err(sql_error)
    };
    tokio::time::timeout(QUERY_TIMEOUT, ask)
        .await
        .unwrap_or_else(|_| Err(PgError::Sql(format!("{host}:{port} did not answer within {QUERY_TIMEOUT:?}"))))
}

/// How the agent connects to another member's PostgreSQL: over TCP as the superuser.
pub(super) fn remote_config(pg: &PostgresConfig, host: &str, port: u16) -> tokio_postgres::Config {
    let su = &pg.authentication.superuser;
    let mut config = tokio_postgres::Config::new();
    config
        .host(host)
        .port(port)
        .user(&su.username)
        .password(&su.password)
        .dbname("postgres")
        .application_name("raftgres")
        .connect_timeout(Duration::from_secs(2));
    config
}

/// A new connection, its driver spawned.
pub(super) async fn connect(config: &tokio_postgres::Config) -> PgResult<Client> {
    let (client, connection) = config.connect(NoTls).await.map_err(sql_error)?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(client)
}

#[cfg(test)]
mod tests {
    use super::{replication_state, standby_timeline};

    #[test]
    fn a_standby_is_on_the_newest_timeline_it_knows_of() {
        // Streaming timeline 3 while the control file still names 2 (no restartpoint yet).
        assert_eq!(standby_timeline(Some(3), Some(3), 2), 3);
        // Its upstream died: no receiver, and the control file alone would say 2.
        assert_eq!(standby_timeline(None, Some(3), 2), 3);
        // A restartpoint on a newer timeline, or no segment file found: the control file.
        assert_eq!(standby_timeline(None, Some(3), 4), 4);
        assert_eq!(standby_timeline(None, None, 2), 2);
    }

    #[test]
    fn replication_state_is_patronis() {
        assert_eq!(replication_state(true, Some("streaming")).as_deref(), Some("streaming"));
        for receiver in [None, Some("waiting"), Some("stopping")] {
            assert_eq!(replication_state(true, receiver).as_deref(), Some("in archive recovery"), "{receiver:?}");
        }
        assert_eq!(replication_state(false, None), None);
    }
}
