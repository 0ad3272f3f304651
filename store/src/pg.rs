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
use postgres::binary_copy::BinaryCopyInWriter;
use postgres::types::{ToSql, Type};
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

/// A column's value as sent.
#[derive(Debug, Clone, PartialEq)]
pub enum Val {
    Null,
    Int(i64),
    Real(f64),
    Text(String),
}

impl ToSql for Val {
    fn to_sql(
        &self,
        ty: &Type,
        out: &mut postgres::types::private::BytesMut,
    ) -> Result<postgres::types::IsNull, Box<dyn std::error::Error + Sync + Send>> {
        match self {
            Val::Null => Ok(postgres::types::IsNull::Yes),
            Val::Int(n) => n.to_sql(ty, out),
            Val::Real(f) => f.to_sql(ty, out),
            Val::Text(t) => t.to_sql(ty, out),
        }
    }

    fn accepts(ty: &Type) -> bool {
        [Type::INT8, Type::FLOAT8, Type::TEXT].contains(ty)
    }

    postgres::types::to_sql_checked!();
}

/// One row change: the run, the row's key in it, and every column's value for the event (as
/// the SQLite writer's full INSERT would bind them), encoded so it can wait in a spool: run
/// and key (8 bytes each), the number of columns (2), then per column a tag (0 NULL, 1
/// integer, 2 real, 3 text) and its value (8 bytes; text: 4-byte length and UTF-8).
pub fn row_change(run: i64, row_key: u64, ev: &ConnEvent) -> Vec<u8> {
    let mut vals: Vec<Val> = Vec::with_capacity(COLUMNS.len());
    for &i in &COLUMNS {
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
        vals.push(match (c.bind, v) {
            (_, Value::Absent | Value::Null) => Val::Null,
            (Bind::LocalDay, Value::Secs(s)) => {
                let t = DateTime::<Utc>::from_timestamp(s.floor() as i64, 0).unwrap_or(ev.ts);
                Val::Text(t.with_timezone(&Local).format("%Y-%m-%d").to_string())
            }
            (_, Value::Count(n) | Value::Tally(n)) => Val::Int(n.min(i64::MAX as u64) as i64),
            (_, Value::Flag(b)) => Val::Int(b as i64),
            (_, Value::Proto(p)) => Val::Int(p as i64),
            (_, Value::Secs(s)) => Val::Real(s),
            (_, Value::Time(t)) => Val::Real(epoch_secs(t)),
            (_, Value::Word(w)) => Val::Text(w.to_string()),
            (_, Value::Text(t) | Value::List(t)) => Val::Text(t.to_string()),
            (_, Value::Pair(a, b)) => Val::Text(format!("{a}/{b}")),
            (_, Value::Char(ch)) => Val::Text(ch.to_string()),
            (_, Value::Addr(a)) => Val::Text(AddrText::new(a).as_str().to_string()),
            (_, Value::AddrPort(a, p)) => {
                Val::Text(p.map_or(a.to_string(), |p| format!("{a}:{p}")))
            }
        });
    }
    // Computed from other columns' values, as the SQLite INSERT's coalesce().
    for (j, &i) in COLUMNS.iter().enumerate() {
        if let Some(Bind::Coalesce(names)) = FIELDS[i].sql.map(|c| c.bind) {
            vals[j] = names
                .iter()
                .filter_map(|n| COLUMNS.iter().position(|&k| FIELDS[k].name == *n))
                .map(|k| vals[k].clone())
                .find(|v| *v != Val::Null)
                .unwrap_or(Val::Null);
        }
    }
    let mut b = Vec::with_capacity(18 + vals.len() * 9);
    b.extend_from_slice(&run.to_be_bytes());
    b.extend_from_slice(&row_key.to_be_bytes());
    b.extend_from_slice(&(vals.len() as u16).to_be_bytes());
    for v in &vals {
        match v {
            Val::Null => b.push(0),
            Val::Int(n) => {
                b.push(1);
                b.extend_from_slice(&n.to_be_bytes());
            }
            Val::Real(f) => {
                b.push(2);
                b.extend_from_slice(&f.to_be_bytes());
            }
            Val::Text(t) => {
                b.push(3);
                b.extend_from_slice(&(t.len() as u32).to_be_bytes());
                b.extend_from_slice(t.as_bytes());
            }
        }
    }
    b
}

/// A column's `DEFAULT n`, if it has one.
fn default_of(decl: &str) -> Option<u64> {
    let (_, rest) = decl.split_once("DEFAULT ")?;
    rest.split_whitespace().next()?.parse().ok()
}

/// A row change decoded: run, key, the columns' values.
type Row = (i64, i64, Vec<Val>);

fn decode(b: &[u8]) -> Option<Row> {
    let take = |at: &mut usize, n: usize| -> Option<&[u8]> {
        let s = b.get(*at..*at + n)?;
        *at += n;
        Some(s)
    };
    let mut at = 0;
    let run = i64::from_be_bytes(take(&mut at, 8)?.try_into().ok()?);
    let key = i64::from_be_bytes(take(&mut at, 8)?.try_into().ok()?);
    let n = u16::from_be_bytes(take(&mut at, 2)?.try_into().ok()?) as usize;
    if n != COLUMNS.len() {
        return None;
    }
    let mut vals = Vec::with_capacity(n);
    for _ in 0..n {
        vals.push(match take(&mut at, 1)?[0] {
            0 => Val::Null,
            1 => Val::Int(i64::from_be_bytes(take(&mut at, 8)?.try_into().ok()?)),
            2 => Val::Real(f64::from_be_bytes(take(&mut at, 8)?.try_into().ok()?)),
            3 => {
                let len = u32::from_be_bytes(take(&mut at, 4)?.try_into().ok()?) as usize;
                Val::Text(String::from_utf8(take(&mut at, len)?.to_vec()).ok()?)
            }
            _ => return None,
        });
    }
    (at == b.len()).then_some((run, key, vals))
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

/// Applies row changes in order, in one transaction.
pub fn apply(client: &mut Client, host: &str, changes: &[Vec<u8>]) -> Result<(), ApplyError> {
    let names = column_names();
    let mut rows: Vec<Row> = Vec::with_capacity(changes.len());
    for c in changes {
        match decode(c) {
            Some(r) => rows.push(r),
            None => {
                return Err(ApplyError::Data(
                    "a spooled row change is not one of this version's".into(),
                ))
            }
        }
    }
    // One change per row: ON CONFLICT cannot touch a row twice in one statement.
    let rows = merge(rows);
    let mut tx = client.transaction()?;
    // The batch is copied (COPY, binary) into a temporary table and upserted from there in
    // one statement: far cheaper for the server than statements of many VALUES rows.
    tx.batch_execute(&batch_table())?;
    let types: Vec<Type> = [Type::TEXT, Type::INT8, Type::INT8]
        .into_iter()
        .chain(
            COLUMNS
                .iter()
                .map(|&i| match kind(FIELDS[i].sql.expect("a column").decl) {
                    Kind::Int => Type::INT8,
                    Kind::Real => Type::FLOAT8,
                    Kind::Text => Type::TEXT,
                }),
        )
        .collect();
    let copy = tx.copy_in(&format!(
        "COPY ipclog_batch (host, run_id, row_key, {}) FROM STDIN (FORMAT binary)",
        names.join(", ")
    ))?;
    let mut w = BinaryCopyInWriter::new(copy, &types);
    let host = host.to_string();
    let mut refs: Vec<&(dyn ToSql + Sync)> = Vec::with_capacity(names.len() + 3);
    for (run, key, vals) in &rows {
        refs.clear();
        refs.push(&host);
        refs.push(run);
        refs.push(key);
        refs.extend(vals.iter().map(|v| v as &(dyn ToSql + Sync)));
        w.write(&refs)?;
    }
    w.finish()?;
    tx.execute(&upsert(&names), &[])?;
    Ok(tx.commit()?)
}

/// One change per row: the changes of a row in the batch folded into its first, as the
/// upserts one after the other would leave it (a column later events change takes the later
/// value, or keeps the earlier where it keeps its value and the later has none; the others
/// keep the first's). Rows are independent, so this saves work without changing the result:
/// a short connection's open, updates and close become one upsert.
fn merge(rows: Vec<Row>) -> Vec<Row> {
    let sets: Vec<(bool, bool)> = COLUMNS
        .iter()
        .map(|&i| {
            let set = FIELDS[i].sql.expect("a column").set;
            (set.changes(), set.keeps())
        })
        .collect();
    let mut at: std::collections::HashMap<(i64, i64), usize> =
        std::collections::HashMap::with_capacity(rows.len());
    let mut out: Vec<Row> = Vec::with_capacity(rows.len());
    for r in rows {
        match at.get(&(r.0, r.1)) {
            None => {
                at.insert((r.0, r.1), out.len());
                out.push(r);
            }
            Some(&i) => {
                let first = &mut out[i].2;
                for (j, (v, (changes, keeps))) in r.2.into_iter().zip(&sets).enumerate() {
                    if *changes && !(*keeps && v == Val::Null) {
                        first[j] = v;
                    }
                }
            }
        }
    }
    out
}

/// The session's table a batch is copied into (emptied at each commit).
fn batch_table() -> String {
    let cols: Vec<String> = COLUMNS
        .iter()
        .map(|&i| {
            let decl = FIELDS[i].sql.expect("a column").decl;
            let ty = pg_decl(decl.split(' ').next().unwrap_or(decl));
            format!("{} {ty}", FIELDS[i].name)
        })
        .collect();
    format!(
        "CREATE TEMP TABLE IF NOT EXISTS ipclog_batch (host TEXT, run_id BIGINT, row_key BIGINT, {}) \
         ON COMMIT DELETE ROWS",
        cols.join(", ")
    )
}

/// The upsert of the batch table's rows: a new row takes every value; an existing one what a
/// later event changes, keeping the values the event does not have where the column keeps
/// them.
fn upsert(names: &[&str]) -> String {
    let list = names.join(", ");
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
    format!(
        "INSERT INTO connections (host, run_id, row_key, {list}) \
         SELECT host, run_id, row_key, {list} FROM ipclog_batch \
         ON CONFLICT (run_id, row_key) DO UPDATE SET {}",
        sets.join(", ")
    )
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

    /// A connection's open, update and close folded into one change leave the row the three
    /// upserts would: the open's columns, the close's state and times, and what only the
    /// update said (the columns that keep their value).
    #[test]
    fn changes_of_a_row_fold_as_the_upserts_would_apply_them() {
        use shared::{ConnState, Counters, FlowTuple, Source, TcpState};
        let t = DateTime::<Utc>::from_timestamp(1_700_000_000, 0).unwrap();
        let tuple = FlowTuple::new(
            [10, 0, 0, 1].into(),
            [10, 0, 0, 2].into(),
            Some(1),
            Some(80),
        );
        let mut open = ConnEvent::new(EventKind::Open, t, Source::Pcap, 7, 6, tuple);
        open.state = ConnState::Tcp(TcpState::SynSent);
        let mut update = open.clone();
        update.kind = EventKind::Update;
        update.state = ConnState::Tcp(TcpState::Established);
        update.history = Some("ShA".into());
        let mut close = update.clone();
        close.kind = EventKind::Close;
        close.history = None;
        close.state = ConnState::Tcp(TcpState::TimeWait);
        close.duration = Some(2.5);
        close.ts = t + chrono::Duration::milliseconds(2500);
        close.counters = Some(Counters {
            orig_pkts: 3,
            ..Counters::default()
        });
        let rows: Vec<Row> = [&open, &update, &close]
            .iter()
            .map(|e| decode(&row_change(1, 9, e)).unwrap())
            .collect();
        let merged = merge(rows);
        assert_eq!(merged.len(), 1);
        let col = |name: &str| {
            let j = COLUMNS
                .iter()
                .position(|&i| FIELDS[i].name == name)
                .unwrap();
            merged[0].2[j].clone()
        };
        assert_eq!(col("last_state"), Val::Text("TIME_WAIT".into()));
        assert_eq!(col("history"), Val::Text("ShA".into()));
        assert_eq!(col("duration"), Val::Real(2.5));
        assert_eq!(col("close_ts"), Val::Real(1_700_000_002.5));
        assert_eq!(col("found_at_start"), Val::Int(0));
        assert_eq!(col("orig_pkts"), Val::Int(3));
        assert_eq!(col("src"), Val::Text("10.0.0.1".into()));
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
