//! A replica's effects: stop it (the next cycle starts or rewinds it), rewind it with
//! pg_rewind against the leader, remove its data directory so the next cycle clones the
//! leader again. `decide` says which, and when (see `stuck` for a replica that does not
//! get back to streaming on its own).

use std::time::Duration;

use super::stuck;
use super::Agent;
use crate::callbacks::Event;
use crate::cluster::Role;
use crate::postgres::sql::Sql;
use crate::postgres::StopMode;
use crate::state::{PgState, Step};

impl Agent {
    /// Stops this replica's PostgreSQL; the next cycle starts (or rewinds) it.
    pub(super) async fn stop_replica(&mut self) {
        let running = self.pg.postmaster_pid().is_some();
        match self.pg.stop(StopMode::Fast, Duration::from_secs(30)).await {
            Ok(()) if running => self.callback(Event::Stopped(Role::Replica)),
            Ok(()) => {}
            Err(e) => tracing::warn!("{e}"),
        }
        self.sql.disconnect();
        self.memory.expect_running = false;
    }

    /// Stops PostgreSQL at once and removes the data directory: the next cycle clones
    /// the leader again (`raftctl reinit`, and a replica that cannot recover).
    pub(super) async fn remove_data_to_reclone(&mut self) -> crate::postgres::PgResult<()> {
        let running = self.pg.postmaster_pid().is_some();
        self.pg.stop(StopMode::Immediate, Duration::from_secs(30)).await?;
        if running {
            self.callback(Event::Stopped(Role::Replica));
        }
        self.sql.disconnect();
        self.memory.expect_running = false;
        self.memory.replica_crashes = 0;
        self.memory.crash_rewound = false;
        self.memory.rewound_onto = None;
        self.stall = stuck::Stall::default();
        self.pg.remove_data_dir()
    }

    /// pg_rewind against the leader; on failure the data dir is removed (so the next
    /// cycle re-clones) when `remove_data_directory_on_rewind_failure` is on.
    pub(super) async fn rewind(&mut self, host: &str, port: u16, leader: &str) -> Option<String> {
        self.publish_state(PgState::InStep(Step::Rewinding));
        let pg_conf = &self.config.postgresql;
        let result = if pg_conf.use_pg_rewind && self.dynamic.postgresql.use_pg_rewind != Some(false) {
            match Sql::remote_checkpointed_on_its_timeline(pg_conf, host, port).await {
                Ok(true) => {}
                Ok(false) => {
                    return Some(format!(
                        "waiting for a checkpoint on {leader} before rewinding (its control file is still on its previous timeline)"
                    ))
                }
                Err(e) => return Some(format!("cannot rewind yet, {leader} did not answer: {e}")),
            }
            tracing::info!("rewinding my data directory to {leader} with pg_rewind");
            let _ = crate::postgres::conf::set_standby(self.pg.data_dir(), false);
            self.pg.rewind(host, port).await.map_err(|e| e.to_string())
        } else {
            Err("use_pg_rewind is off".into())
        };
        match result {
            Ok(()) => {
                self.memory.needs_rewind = false;
                None
            }
            // The leader did not answer (it may be restarting): that says nothing about
            // our data, so keep it and try again.
            Err(e) if e.contains("connection to server") => Some(format!("cannot rewind yet, {leader} did not answer: {e}")),
            Err(e) if self.config.postgresql.remove_data_directory_on_rewind_failure => {
                self.memory.needs_rewind = false;
                match self.pg.remove_data_dir() {
                    Ok(()) => Some(format!("rewind failed ({e}); removed the data directory to clone {leader} again")),
                    Err(e2) => Some(format!("rewind failed ({e}), and {e2}")),
                }
            }
            Err(e) => Some(format!("rewind failed ({e}); not starting PostgreSQL (remove_data_directory_on_rewind_failure is off)")),
        }
    }
}
