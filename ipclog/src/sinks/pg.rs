//! The PostgreSQL history (`--db postgresql://…`): the SQLite history's tables on a server
//! many loggers share, each row with the logger's `--host-name`. Row changes are sent in
//! batches of multi-row upserts (`store::pg`), through the remote sinks' thread and spool.

use std::collections::HashMap;

use postgres::Client;
use shared::sink::{RunEnd, RunInfo};
use shared::{ConnEvent, ConnKey, EventKind};

use super::remote::{Failure, Item, Remote};

pub struct PgHistory {
    url: String,
    shown: String,
    host: String,
    client: Option<Client>,
    run: i64,
    /// Rows of connections still open, by connection: their key in this run.
    rows: HashMap<ConnKey, u64>,
    next_key: u64,
}

impl PgHistory {
    /// Connects, checks (or creates) the schema and, unless `check_only`, starts the run's
    /// row: every failure here is a start-up error.
    pub fn open(
        url: &str,
        host: &str,
        run: &RunInfo,
        check_only: bool,
    ) -> Result<PgHistory, String> {
        let shown = store::pg::shown(url);
        let mut client = store::pg::connect(url)?;
        store::pg::check_schema(&mut client, &shown, true)?;
        let run_id = match check_only {
            true => 0,
            false => store::pg::start_run(
                &mut client,
                host,
                run.started,
                run.source.as_str(),
                run.command,
            )
            .map_err(|e| format!("{shown}: cannot start the run: {e}"))?,
        };
        Ok(PgHistory {
            url: url.to_string(),
            shown,
            host: host.to_string(),
            client: Some(client),
            run: run_id,
            rows: HashMap::new(),
            next_key: 1,
        })
    }

    pub fn shown(&self) -> String {
        format!("database {}", self.shown)
    }

    fn client(&mut self) -> Result<&mut Client, String> {
        match &mut self.client {
            Some(c) if !c.is_closed() => Ok(c),
            _ => Err("not connected".into()),
        }
    }
}

impl Remote for PgHistory {
    fn encode(&mut self, ev: &ConnEvent, out: &mut Vec<Item>) {
        let k = ev.key();
        let key = match (ev.kind, self.rows.get(&k)) {
            (EventKind::Open, _) | (_, None) => {
                let key = self.next_key;
                self.next_key += 1;
                self.rows.insert(k, key);
                key
            }
            (_, Some(&key)) => key,
        };
        if ev.kind == EventKind::Close {
            self.rows.remove(&k);
        }
        out.push(store::pg::row_change(self.run, key, ev));
    }

    fn connect(&mut self) -> Result<(), String> {
        self.client = None;
        self.client = Some(store::pg::connect(&self.url)?);
        Ok(())
    }

    fn send(&mut self, items: &[Item]) -> Result<(), Failure> {
        let host = self.host.clone();
        let client = self.client().map_err(Failure::Down)?;
        match store::pg::apply(client, &host, items) {
            Ok(()) => Ok(()),
            Err(store::pg::ApplyError::Data(e)) => Err(Failure::Rejected(e)),
            Err(store::pg::ApplyError::Db(e)) => {
                let shown = store::pg::describe(&e);
                // The server answered: a refusal of these rows, unless it is going away or
                // out of resources (SQLSTATE classes 08, 53, 57).
                let down = match e.as_db_error() {
                    None => true,
                    Some(db) => {
                        let class = &db.code().code()[..2];
                        matches!(class, "08" | "53" | "57")
                    }
                };
                if down || self.client.as_ref().is_none_or(|c| c.is_closed()) {
                    self.client = None;
                    Err(Failure::Down(shown))
                } else {
                    Err(Failure::Rejected(shown))
                }
            }
        }
    }

    fn update_run(&mut self, errors: u64, lost: u64, dropped: u64) {
        let run = self.run;
        if let Ok(c) = self.client() {
            let _ = store::pg::update_run(c, run, [errors, lost, dropped], None, None);
        }
    }

    fn finish(&mut self, end: &RunEnd, errors: u64, dropped: u64) -> Result<(), String> {
        let run = self.run;
        let c = self.client()?;
        store::pg::update_run(
            c,
            run,
            [errors, end.lost, dropped],
            end.started,
            Some(end.stopped),
        )
        .map_err(|e| e.to_string())
    }
}
