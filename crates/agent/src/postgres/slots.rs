//! The SQL and files of replication slots: list the local ones, create, drop and
//! advance them (a logical slot in its own database, as PostgreSQL requires), read a
//! logical slot's state file from the primary (`pg_read_binary_file`) and write it into
//! this data directory, Patroni's way of carrying a logical slot to a PostgreSQL 15
//! standby (which loads it at its next start).

use std::path::Path;

use super::sql::{connect, remote_config, sql_error, Sql, QUERY_TIMEOUT};
use super::{PgError, PgResult};
use crate::cluster::{format_lsn, parse_lsn};
use crate::config::PostgresConfig;
use crate::slots::{Existing, SlotKind};

impl Sql {
    /// Every non-temporary slot of this PostgreSQL.
    pub async fn slots(&mut self) -> PgResult<Vec<Existing>> {
        const QUERY: &str = "SELECT slot_name::text, database::text, plugin::text, active, \
            CASE WHEN slot_type = 'logical' THEN confirmed_flush_lsn ELSE restart_lsn END::text \
            FROM pg_replication_slots WHERE NOT temporary ORDER BY slot_name";
        self.timed(|c| {
            Box::pin(async move {
                let rows = c.query(QUERY, &[]).await.map_err(sql_error)?;
                Ok(rows
                    .iter()
                    .map(|r| {
                        let kind = match (r.get::<_, Option<String>>(1), r.get::<_, Option<String>>(2)) {
                            (Some(database), Some(plugin)) => SlotKind::Logical { database, plugin },
                            _ => SlotKind::Physical,
                        };
                        let position = r.get::<_, Option<String>>(4).as_deref().and_then(parse_lsn);
                        Existing { name: r.get(0), kind, active: r.get(3), position }
                    })
                    .collect())
            })
        })
        .await
    }

    /// A physical slot that reserves WAL at once.
    pub async fn create_slot(&mut self, name: &str) -> PgResult<()> {
        let name = name.to_string();
        self.timed(|c| {
            Box::pin(async move {
                c.execute("SELECT pg_create_physical_replication_slot($1, true)", &[&name]).await.map_err(sql_error)?;
                Ok(())
            })
        })
        .await
    }

    pub async fn drop_slot(&mut self, name: &str) -> PgResult<()> {
        let name = name.to_string();
        self.timed(|c| {
            Box::pin(async move {
                c.execute("SELECT pg_drop_replication_slot($1)", &[&name]).await.map_err(sql_error)?;
                Ok(())
            })
        })
        .await
    }

    /// Runs `query` with `params` on a connection of its own to `database` (the
    /// superuser, the private socket), within the usual time limit.
    async fn in_database(&self, database: &str, query: &str, params: &[&(dyn tokio_postgres::types::ToSql + Sync)]) -> PgResult<()> {
        let mut config = self.config.clone();
        config.dbname(database);
        let run = async {
            let client = connect(&config).await?;
            client.execute(query, params).await.map_err(sql_error).map(|_| ())
        };
        tokio::time::timeout(QUERY_TIMEOUT, run).await.unwrap_or_else(|_| Err(PgError::Sql("query timed out".into())))
    }

    /// A logical slot of `plugin` in `database` (on a primary).
    pub async fn create_logical_slot(&self, name: &str, database: &str, plugin: &str) -> PgResult<()> {
        self.in_database(database, "SELECT pg_create_logical_replication_slot($1, $2)", &[&name, &plugin]).await
    }

    /// Moves a slot forward to `to` (PostgreSQL stops at what it has replayed); a
    /// logical one in its `database`, where PostgreSQL decodes up to there.
    pub async fn advance_slot(&mut self, name: &str, database: Option<&str>, to: u64) -> PgResult<()> {
        let query = "SELECT pg_replication_slot_advance($1, $2::text::pg_lsn)";
        let to = format_lsn(to);
        match database {
            Some(db) => self.in_database(db, query, &[&name, &to]).await,
            None => {
                let name = name.to_string();
                self.timed(|c| Box::pin(async move { c.execute(query, &[&name, &to]).await.map_err(sql_error).map(|_| ()) })).await
            }
        }
    }
}

/// The state files (`pg_replslot/NAME/state`) of the logical slots `names` that the
/// primary at `host:port` has, by name.
pub async fn read_slot_states(pg: &PostgresConfig, host: &str, port: u16, names: &[String]) -> PgResult<Vec<(String, Vec<u8>)>> {
    const QUERY: &str = "SELECT slot_name::text, pg_read_binary_file('pg_replslot/' || slot_name || '/state') \
        FROM pg_replication_slots WHERE slot_type = 'logical' AND NOT temporary AND slot_name = ANY($1) AND NOT pg_is_in_recovery()";
    let ask = async {
        let client = connect(&remote_config(pg, host, port)).await?;
        let rows = client.query(QUERY, &[&names]).await.map_err(sql_error)?;
        Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
    };
    tokio::time::timeout(QUERY_TIMEOUT, ask)
        .await
        .unwrap_or_else(|_| Err(PgError::Sql(format!("{host}:{port} did not answer within {QUERY_TIMEOUT:?}"))))
}

/// Puts a slot's state file in `data_dir` (PostgreSQL stopped): written to
/// `pg_replslot/NAME.tmp/state`, synced, then renamed over any old `NAME`, as
/// PostgreSQL itself saves a slot, so a crash leaves the old slot or the new one.
pub fn write_slot_state(data_dir: &Path, name: &str, state: &[u8]) -> PgResult<()> {
    let io = |what: &str, e: std::io::Error| PgError::Io(format!("{what} for slot {name}: {e}"));
    let slots = data_dir.join("pg_replslot");
    let (tmp, dir) = (slots.join(format!("{name}.tmp")), slots.join(name));
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp).map_err(|e| io("removing an old temporary directory", e))?;
    }
    std::fs::create_dir(&tmp).map_err(|e| io("creating its directory", e))?;
    let file = tmp.join("state");
    std::fs::write(&file, state).map_err(|e| io("writing its state file", e))?;
    sync(&file).map_err(|e| io("syncing its state file", e))?;
    if dir.exists() {
        std::fs::remove_dir_all(&dir).map_err(|e| io("removing the old copy", e))?;
    }
    std::fs::rename(&tmp, &dir).map_err(|e| io("renaming its directory", e))?;
    sync(&dir).and_then(|()| sync(&slots)).map_err(|e| io("syncing pg_replslot", e))
}

fn sync(path: &Path) -> std::io::Result<()> {
    std::fs::File::open(path)?.sync_all()
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_state_file_replaces_the_old_copy_whole() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(dir.path().join("pg_replslot/cdc")).expect("old copy");
        std::fs::write(dir.path().join("pg_replslot/cdc/state"), b"old").expect("old state");
        std::fs::write(dir.path().join("pg_replslot/cdc/xid-1.snap"), b"x").expect("old file");
        std::fs::create_dir_all(dir.path().join("pg_replslot/cdc.tmp")).expect("a crashed copy");
        super::write_slot_state(dir.path(), "cdc", b"new").expect("written");
        assert_eq!(std::fs::read(dir.path().join("pg_replslot/cdc/state")).expect("state"), b"new");
        assert!(!dir.path().join("pg_replslot/cdc/xid-1.snap").exists());
        assert!(!dir.path().join("pg_replslot/cdc.tmp").exists());
    }
}
