//! The report from a PostgreSQL history (`constat -f postgresql://…`): the day's rows (of one
//! logger with `--host-name`, else of all of them) are copied into a private temporary SQLite
//! history of the same schema, which [`crate::db::scan_db`] then reads as it reads any
//! other. One reading of the history, so the two reports cannot differ.

use std::path::{Path, PathBuf};

use chrono::NaiveDate;
use postgres::types::ToSql;
use rusqlite::types::Value as Sql;
use shared::record::FIELDS;
use store::schema::COLUMNS;

use crate::scan::Scan;

/// A temporary SQLite copy of (part of) a PostgreSQL history, removed when dropped.
pub struct TempDb(PathBuf);

impl TempDb {
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDb {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Scans the history at `url` (of logger `host`, or every logger) into `scan`.
pub fn scan_pg(
    url: &str,
    host: Option<&str>,
    range: Option<(NaiveDate, NaiveDate)>,
    scan: &mut Scan,
    verbose: bool,
) -> Result<(), String> {
    let shown = store::pg::shown(url);
    let temp = temp_history(url, host, range)?;
    crate::db::scan_db(temp.path(), range, scan, verbose).map_err(|e| {
        // The temporary file's name means nothing to the user: the history's does.
        e.replace(&temp.path().display().to_string(), &shown)
    })
}

/// Copies the rows of logger `host` (or every logger) that opened within `days` (first and
/// last, inclusive; all without) and every run of that logger into a private temporary
/// SQLite history, for the readers of SQLite histories (the report, `constat query`).
pub fn temp_history(
    url: &str,
    host: Option<&str>,
    days: Option<(NaiveDate, NaiveDate)>,
) -> Result<TempDb, String> {
    let shown = store::pg::shown(url);
    let mut client = store::pg::connect(url)?;
    store::pg::check_schema(&mut client, &shown, false)?;
    let (file, path) = shared::outfile::create_temp(&std::env::temp_dir(), "constat-pg")
        .map_err(|e| format!("cannot create a temporary file: {e}"))?;
    drop(file);
    let temp = TempDb(path);
    copy(&mut client, &shown, host, days, &temp.0)?;
    Ok(temp)
}

fn copy(
    client: &mut postgres::Client,
    shown: &str,
    host: Option<&str>,
    days: Option<(NaiveDate, NaiveDate)>,
    to: &Path,
) -> Result<(), String> {
    let pg = |e: postgres::Error| format!("{shown}: {e}");
    let lite = |e: rusqlite::Error| format!("temporary history: {e}");
    let mut db = rusqlite::Connection::open(to).map_err(lite)?;
    db.execute_batch("PRAGMA journal_mode = MEMORY; PRAGMA synchronous = OFF;")
        .map_err(lite)?;
    db.execute_batch(&store::schema::schema()).map_err(lite)?;
    db.execute_batch(&format!("PRAGMA user_version = {}", store::SCHEMA_VERSION))
        .map_err(lite)?;
    let tx = db.transaction().map_err(lite)?;
    let day_str = days.map(|(a, b)| {
        (
            a.format("%Y-%m-%d").to_string(),
            b.format("%Y-%m-%d").to_string(),
        )
    });
    let mut filters: Vec<String> = Vec::new();
    let mut params: Vec<&(dyn ToSql + Sync)> = Vec::new();
    if let Some(h) = &host {
        params.push(h);
        filters.push(format!("host = ${}", params.len()));
    }
    let runs_sql = format!(
        "SELECT id, started, stopped, source, command, errors, lost_events, dropped FROM runs{}",
        where_(&filters)
    );
    {
        let mut ins = tx
            .prepare("INSERT INTO runs (id, started, stopped, source, command, errors, lost_events, dropped) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)")
            .map_err(lite)?;
        for r in client.query(runs_sql.as_str(), &params).map_err(pg)? {
            let vals: [Sql; 8] = [
                Sql::Integer(r.get::<_, i64>(0)),
                Sql::Real(r.get::<_, f64>(1)),
                r.get::<_, Option<f64>>(2).map_or(Sql::Null, Sql::Real),
                Sql::Text(r.get(3)),
                Sql::Text(r.get(4)),
                Sql::Integer(r.get(5)),
                Sql::Integer(r.get(6)),
                Sql::Integer(r.get(7)),
            ];
            ins.execute(rusqlite::params_from_iter(vals))
                .map_err(lite)?;
        }
    }
    if let Some((first, last)) = &day_str {
        params.push(first);
        filters.push(format!("day >= ${}", params.len()));
        params.push(last);
        filters.push(format!("day <= ${}", params.len()));
    }
    let names: Vec<&str> = COLUMNS.iter().map(|&i| FIELDS[i].name).collect();
    let conn_sql = format!(
        "SELECT id, run_id, {} FROM connections{} ORDER BY id",
        names.join(", "),
        where_(&filters)
    );
    let marks: Vec<String> = (1..=names.len() + 2).map(|k| format!("?{k}")).collect();
    let mut ins = tx
        .prepare(&format!(
            "INSERT INTO connections (id, run_id, {}) VALUES ({})",
            names.join(", "),
            marks.join(", ")
        ))
        .map_err(lite)?;
    let decls: Vec<&str> = COLUMNS
        .iter()
        .map(|&i| FIELDS[i].sql.map_or("TEXT", |c| c.decl))
        .collect();
    for r in client.query(conn_sql.as_str(), &params).map_err(pg)? {
        let mut vals: Vec<Sql> = vec![Sql::Integer(r.get(0)), Sql::Integer(r.get(1))];
        for (j, decl) in decls.iter().enumerate() {
            let k = j + 2;
            vals.push(if decl.starts_with("INTEGER") {
                r.get::<_, Option<i64>>(k).map_or(Sql::Null, Sql::Integer)
            } else if decl.starts_with("REAL") {
                r.get::<_, Option<f64>>(k).map_or(Sql::Null, Sql::Real)
            } else {
                r.get::<_, Option<String>>(k).map_or(Sql::Null, Sql::Text)
            });
        }
        ins.execute(rusqlite::params_from_iter(vals))
            .map_err(lite)?;
    }
    drop(ins);
    tx.commit().map_err(lite)
}

fn where_(filters: &[String]) -> String {
    match filters.is_empty() {
        true => String::new(),
        false => format!(" WHERE {}", filters.join(" AND ")),
    }
}
