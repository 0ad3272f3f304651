//! The same history on PostgreSQL, for many loggers at once: the `connections` and `runs`
//! tables of the SQLite history with a `host` column each (which logger wrote the row), the
//! columns generated from the same field table ([`crate::schema::COLUMNS`]), so the two
//! cannot drift. The schema version is kept in table `ipclog_schema`; a database of another
//! version is refused at start.
//!
//! A connection's row is keyed by its run and a number the writer gives it (`row_key`); each
//! change is an upsert (`INSERT … ON CONFLICT DO UPDATE`) that does to the row what the SQLite
//! writer's UPDATE does (the columns that keep their value when an event has none keep it),
//! so row changes can be sent again (after an outage, from the spool) and in batches of many
//! rows per statement.

use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, Local, Utc};
use postgres::types::ToSql;
use postgres::{Client, Config, NoTls};
use shared::event::epoch_secs;
use shared::net::AddrText;
use shared::record::{Bind, Value, FIELDS};
use shared::{ConnEvent, EventKind};

use crate::schema::{COLUMNS, SCHEMA_VERSION};

/// Whether `s` names a PostgreSQL database (a libpq URL) rather than an SQLite file.
pub fn is_url(s: &str) -> bool {
    s.starts_with("postgresql://") || s.starts_with("postgres://")
}

/// The URL without its password, for messages.
pub fn shown(url: &str) -> String {
    let shown = match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let userinfo = &url[s + 3..at];
            match userinfo.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..s + 3], &url[at..]),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    };
    shared::text::escaped(&shown).into_owned()
}

/// The error and its causes on one line.
pub fn describe(e: &postgres::Error) -> String {
    use std::error::Error;
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(c) = src {
        let more = c.to_string();
        if !s.contains(&more) {
            s.push_str(": ");
            s.push_str(&more);
        }
        src = c.source();
    }
    shared::text::escaped(&s).into_owned()
}

/// Connects to `url` (libpq's URL syntax; `host=` a socket directory for a Unix socket).
/// Never prompts: a password comes from the URL or `PGPASSWORD`, and a server that asks for
/// one when there is none is a clear error. TLS is not spoken (`sslmode=require` fails): use
/// a Unix socket, or a tunnel to a remote server.
pub fn connect(url: &str) -> Result<Client, String> {
    let shown = shown(url);
    let mut config = Config::from_str(url)
        .map_err(|e| format!("{shown}: not a PostgreSQL URL: {}", describe(&e)))?;
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(Duration::from_secs(10));
    }
    if config.get_password().is_none() {
        if let Ok(p) = std::env::var("PGPASSWORD") {
            config.password(p);
        }
    }
    if config.get_user().is_none() {
        // libpq's default: the user running the program.
        if let Ok(u) = std::env::var("PGUSER").or_else(|_| std::env::var("USER")) {
            config.user(&u);
        }
    }
    config.application_name("ipclog");
    config.connect(NoTls).map_err(|e| {
        let d = describe(&e);
        if d.contains("password missing") {
            format!(
                "{shown}: the server asks for a password and none was given (ipclog never \
                 prompts: put it in the URL or in PGPASSWORD)"
            )
        } else {
            format!("{shown}: cannot connect: {d}")
        }
    })
}

/// A column's PostgreSQL type for its SQLite declaration (`INTEGER NOT NULL` → `BIGINT NOT
/// NULL`).
fn pg_decl(decl: &str) -> String {
    let (ty, rest) = decl.split_once(' ').unwrap_or((decl, ""));
    let ty = match ty {
        "INTEGER" => "BIGINT",
        "REAL" => "DOUBLE PRECISION",
        other => other,
    };
    format!("{ty} {rest}").trim_end().to_string()
}

#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Int,
    Real,
    Text,
}

fn kind(decl: &str) -> Kind {
    if decl.starts_with("INTEGER") {
        Kind::Int
    } else if decl.starts_with("REAL") {
        Kind::Real
    } else {
        Kind::Text
    }
}

/// The column names, in table order.
pub fn column_names() -> Vec<&'static str> {
    COLUMNS.iter().map(|&i| FIELDS[i].name).collect()
}

/// The tables, as created in an empty database.
pub fn ddl() -> String {
    let mut s = String::from(
        "CREATE TABLE ipclog_schema (version INTEGER NOT NULL);
CREATE TABLE runs (
    id          BIGSERIAL PRIMARY KEY,
    host        TEXT NOT NULL,
    started     DOUBLE PRECISION NOT NULL,
    stopped     DOUBLE PRECISION,
    source      TEXT NOT NULL,
    command     TEXT NOT NULL,
    errors      BIGINT NOT NULL DEFAULT 0,
    lost_events BIGINT NOT NULL DEFAULT 0,
    dropped     BIGINT NOT NULL DEFAULT 0
);
CREATE TABLE connections (
    id             BIGSERIAL PRIMARY KEY,
    host           TEXT NOT NULL,
    run_id         BIGINT NOT NULL REFERENCES runs(id),
    row_key        BIGINT NOT NULL",
    );
    for &i in &COLUMNS {
        let (f, c) = (&FIELDS[i], FIELDS[i].sql.expect("a column"));
        s.push_str(&format!(",\n    {:<14} {}", f.name, pg_decl(c.decl)));
    }
    s.push_str(
        ",\n    UNIQUE (run_id, row_key)\n);
CREATE INDEX connections_host_day ON connections(host, day);
CREATE INDEX connections_orig_h ON connections(orig_h);
CREATE INDEX connections_resp_h ON connections(resp_h);
CREATE INDEX runs_host ON runs(host);\n",
    );
    s
}

/// Checks the database's schema version; with `create`, creates the tables in an empty
/// database. Many loggers may start at once: one creates, the others wait for it (an advisory
/// lock) and find its tables.
pub fn check_schema(client: &mut Client, shown: &str, create: bool) -> Result<(), String> {
    let err = |e: postgres::Error| format!("{shown}: {}", describe(&e));
    let mut tx = client.transaction().map_err(err)?;
    tx.execute("SELECT pg_advisory_xact_lock(7310155)", &[])
        .map_err(err)?;
    let has = |tx: &mut postgres::Transaction<'_>, t: &str| -> Result<bool, String> {
        let r = tx
            .query_one("SELECT to_regclass($1) IS NOT NULL", &[&t])
            .map_err(err)?;
        Ok(r.get(0))
    };
    if has(&mut tx, "ipclog_schema")? {
        let rows = tx
            .query("SELECT version FROM ipclog_schema", &[])
            .map_err(err)?;
        let version: Option<i32> = rows.first().map(|r| r.get(0));
        return match version {
            Some(v) if i64::from(v) == SCHEMA_VERSION => tx.commit().map_err(err),
            Some(v) => Err(format!(
                "{shown}: the history has schema version {v}; this ipclog reads and writes \
                 version {SCHEMA_VERSION}"
            )),
            None => Err(format!(
                "{shown}: ipclog_schema is empty: not an ipclog history"
            )),
        };
    }
    if has(&mut tx, "connections")? || has(&mut tx, "runs")? {
        return Err(format!(
            "{shown}: has tables connections/runs but no ipclog_schema: not an ipclog history"
        ));
    }
    if !create {
        return Err(format!("{shown}: no ipclog history in this database"));
    }
    tx.batch_execute(&ddl()).map_err(err)?;
    tx.execute(
        "INSERT INTO ipclog_schema (version) VALUES ($1)",
        &[&(SCHEMA_VERSION as i32)],
    )
    .map_err(err)?;
    tx.commit().map_err(err)
}

/// Starts a run's row; returns its id.
pub fn start_run(
    client: &mut Client,
    host: &str,
    started: DateTime<Utc>,
    source: &str,
    command: &str,
) -> Result<i64, postgres::Error> {
    let r = client.query_one(
        "INSERT INTO runs (host, started, source, command) VALUES ($1, $2, $3, $4) RETURNING id",
        &[&host, &epoch_secs(started), &source, &command],
    )?;
    Ok(r.get(0))
}

/// Keeps the run's figures up to date; with `stopped` (and maybe a corrected start), ends it.
pub fn update_run(
    client: &mut Client,
    run: i64,
    counts: [u64; 3],
    started: Option<DateTime<Utc>>,
    stopped: Option<DateTime<Utc>>,
) -> Result<(), postgres::Error> {
    let [errors, lost, dropped] = counts.map(|n| n.min(i64::MAX as u64) as i64);
    client.execute(
        "UPDATE runs SET errors = $1, lost_events = $2, dropped = $3, \
         started = coalesce($4, started), stopped = coalesce($5, stopped) WHERE id = $6",
        &[
            &errors,
            &lost,
            &dropped,
            &started.map(epoch_secs),
            &stopped.map(epoch_secs),
            &run,
        ],
    )?;
    Ok(())
}

/// One row change: the run, the row's key in it, and every column's value for the event (as
/// the SQLite writer's full INSERT would bind them), as JSON so it can wait in a spool.
pub fn row_change(run: i64, row_key: u64, ev: &ConnEvent) -> Vec<u8> {
    use serde_json::Value as J;
    let mut vals: Vec<J> = Vec::with_capacity(COLUMNS.len() + 2);
    vals.push(J::from(run));
    vals.push(J::from(row_key));
    let mut day = String::new();
    let values: Vec<(&'static str, J)> = COLUMNS
        .iter()
        .map(|&i| {
            let f = &FIELDS[i];
            let c = f.sql.expect("a column");
            let v = match c.bind {
                Bind::Own(get) => get(ev),
                _ => (f.get)(ev),
            };
            // What only later events set has the column's default after an open, as the
            // SQLite writer's INSERT leaves it.
            let v = match (ev.kind, c.set.at_open()) {
                (EventKind::Open, false) => match default_of(c.decl) {
                    Some(n) => Value::Count(n),
                    None => Value::Null,
                },
                _ => v,
            };
            let j = match (c.bind, v) {
                (_, Value::Absent | Value::Null) => J::Null,
                (Bind::LocalDay, Value::Secs(s)) => {
                    use std::fmt::Write;
                    day.clear();
                    let t = DateTime::<Utc>::from_timestamp(s.floor() as i64, 0).unwrap_or(ev.ts);
                    let _ = write!(day, "{}", t.with_timezone(&Local).format("%Y-%m-%d"));
                    J::from(day.as_str())
                }
                (_, Value::Count(n) | Value::Tally(n)) => J::from(n.min(i64::MAX as u64) as i64),
                (_, Value::Flag(b)) => J::from(b as i64),
                (_, Value::Proto(p)) => J::from(p as i64),
                (_, Value::Secs(s)) => J::from(s),
                (_, Value::Time(t)) => J::from(epoch_secs(t)),
                (_, Value::Word(w)) => J::from(w),
                (_, Value::Text(t)) => J::from(t),
                (_, Value::Char(ch)) => J::from(ch.to_string()),
                (_, Value::Addr(a)) => J::from(AddrText::new(a).as_str()),
                (_, Value::AddrPort(a, p)) => {
                    J::from(p.map_or(a.to_string(), |p| format!("{a}:{p}")))
                }
            };
            (f.name, j)
        })
        .collect();
    for &i in &COLUMNS {
        let f = &FIELDS[i];
        let at = vals.len() - 2;
        let j = match f.sql.map(|c| c.bind) {
            // Computed from other columns' values, as the SQLite INSERT's coalesce().
            Some(Bind::Coalesce(names)) => names
                .iter()
                .filter_map(|n| values.iter().find(|(m, _)| m == n))
                .map(|(_, j)| j.clone())
                .find(|j| !j.is_null())
                .unwrap_or(J::Null),
            _ => values[at].1.clone(),
        };
        vals.push(j);
    }
    serde_json::to_vec(&J::Array(vals)).expect("JSON of plain values")
}

/// Why row changes were not applied.
#[derive(Debug)]
pub enum ApplyError {
    /// A spooled change that is not one of this version's.
    Data(String),
    /// The server's (or the connection's) error.
    Db(postgres::Error),
}

impl From<postgres::Error> for ApplyError {
    fn from(e: postgres::Error) -> Self {
        ApplyError::Db(e)
    }
}

/// A column's `DEFAULT n`, if it has one.
fn default_of(decl: &str) -> Option<u64> {
    let (_, rest) = decl.split_once("DEFAULT ")?;
    rest.split_whitespace().next()?.parse().ok()
}

/// Rows per upsert statement.
const ROWS: usize = 200;

/// Applies row changes in order, in one transaction, many rows per statement (a statement
/// holds each row once: a second change of a row starts the next statement).
pub fn apply(client: &mut Client, host: &str, changes: &[Vec<u8>]) -> Result<(), ApplyError> {
    let names = column_names();
    let kinds: Vec<Kind> = COLUMNS
        .iter()
        .map(|&i| kind(FIELDS[i].sql.expect("a column").decl))
        .collect();
    let mut rows: Vec<Vec<serde_json::Value>> = Vec::with_capacity(changes.len());
    for c in changes {
        match serde_json::from_slice::<serde_json::Value>(c) {
            Ok(serde_json::Value::Array(a)) if a.len() == names.len() + 2 => rows.push(a),
            _ => {
                return Err(ApplyError::Data(
                    "a spooled row change is not one of this version's".into(),
                ))
            }
        }
    }
    let mut tx = client.transaction()?;
    let mut i = 0;
    while i < rows.len() {
        let mut seen = std::collections::HashSet::new();
        let mut end = i;
        while end < rows.len() && end - i < ROWS {
            let k = (rows[end][0].as_i64(), rows[end][1].as_i64());
            if !seen.insert(k) {
                break;
            }
            end += 1;
        }
        let chunk = &rows[i..end];
        let sql = upsert(chunk.len(), &names);
        let mut params: Vec<Box<dyn ToSql + Sync>> =
            Vec::with_capacity(chunk.len() * (names.len() + 3));
        for r in chunk {
            params.push(Box::new(host.to_string()));
            params.push(Box::new(r[0].as_i64()));
            params.push(Box::new(r[1].as_i64()));
            for (j, k) in kinds.iter().enumerate() {
                let v = &r[j + 2];
                match k {
                    Kind::Int => params.push(Box::new(v.as_i64())),
                    Kind::Real => params.push(Box::new(v.as_f64())),
                    Kind::Text => params.push(Box::new(v.as_str().map(str::to_string))),
                }
            }
        }
        let refs: Vec<&(dyn ToSql + Sync)> = params.iter().map(|b| &**b).collect();
        tx.execute(&sql, &refs)?;
        i = end;
    }
    Ok(tx.commit()?)
}

/// The upsert of `n` rows: a new row takes every value; an existing one what a later event
/// changes, keeping the values the event does not have where the column keeps them.
fn upsert(n: usize, names: &[&str]) -> String {
    let width = names.len() + 3;
    let mut s = format!(
        "INSERT INTO connections (host, run_id, row_key, {}) VALUES ",
        names.join(", ")
    );
    for r in 0..n {
        if r > 0 {
            s.push_str(", ");
        }
        let ps: Vec<String> = (1..=width).map(|k| format!("${}", r * width + k)).collect();
        s.push_str(&format!("({})", ps.join(", ")));
    }
    let sets: Vec<String> = COLUMNS
        .iter()
        .filter_map(|&i| {
            let (name, c) = (FIELDS[i].name, FIELDS[i].sql?);
            c.set.changes().then(|| match c.set.keeps() {
                true => format!("{name} = coalesce(EXCLUDED.{name}, connections.{name})"),
                false => format!("{name} = EXCLUDED.{name}"),
            })
        })
        .collect();
    s.push_str(" ON CONFLICT (run_id, row_key) DO UPDATE SET ");
    s.push_str(&sets.join(", "));
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ddl_has_every_column_with_a_postgres_type() {
        let d = ddl();
        for name in column_names() {
            assert!(d.contains(&format!("\n    {name} ")), "{name} missing");
        }
        assert!(!d.contains("INTEGER NOT NULL DEFAULT 0,\n    last_state"));
        assert!(d.contains("open_ts        DOUBLE PRECISION NOT NULL"));
    }

    #[test]
    fn passwords_are_not_shown() {
        assert_eq!(
            shown("postgresql://u:secret@db/h"),
            "postgresql://u:***@db/h"
        );
        assert_eq!(
            shown("postgresql:///h?host=/tmp"),
            "postgresql:///h?host=/tmp"
        );
    }
}
