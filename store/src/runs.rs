//! The `runs` table: one row per logger run, with its losses, so a report can say how much of
//! a day it did not see.

use chrono::{DateTime, Utc};
use rusqlite::params;
use shared::event::epoch_secs;

use crate::writer::Store;

impl Store {
    /// Records the start of a logger run; later rows refer to it.
    pub fn start_run(
        &mut self,
        started: DateTime<Utc>,
        source: &str,
        command: &str,
    ) -> rusqlite::Result<i64> {
        self.conn.execute(
            "INSERT INTO runs (started, source, command) VALUES (?1, ?2, ?3)",
            params![epoch_secs(started), source, command],
        )?;
        let id = self.conn.last_insert_rowid();
        self.run_id = Some(id);
        Ok(id)
    }

    /// Updates the current run's counts (so a crash still leaves the latest figures).
    pub fn update_run(&mut self, errors: u64, lost: u64, dropped: u64) -> rusqlite::Result<()> {
        self.conn
            .prepare_cached(
                "UPDATE runs SET errors = ?1, lost_events = ?2, dropped = ?3 WHERE id = ?4",
            )?
            .execute(params![
                errors as i64,
                lost as i64,
                dropped as i64,
                self.run_id
            ])
            .map(drop)
    }

    /// Records the end of the current run. `started`, when given, replaces the start time
    /// the run was opened with: a capture's runs span its packets' time, not the wall-clock
    /// time it was read at, so its losses count on the day they happened.
    pub fn finish_run(
        &mut self,
        started: Option<DateTime<Utc>>,
        stopped: DateTime<Utc>,
        errors: u64,
        lost: u64,
        dropped: u64,
    ) -> rusqlite::Result<()> {
        self.update_run(errors, lost, dropped)?;
        if let Some(t) = started {
            self.conn.execute(
                "UPDATE runs SET started = ?1 WHERE id = ?2",
                params![epoch_secs(t), self.run_id],
            )?;
        }
        self.conn
            .execute(
                "UPDATE runs SET stopped = ?1 WHERE id = ?2",
                params![epoch_secs(stopped), self.run_id],
            )
            .map(drop)
    }
}
