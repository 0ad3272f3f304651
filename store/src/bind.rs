//! Binding a row's values to a prepared statement's parameters, in the order
//! [`crate::schema::Statements`] generated them.

use chrono::{DateTime, Local, Utc};
use rusqlite::types::Null;
use rusqlite::CachedStatement;
use shared::event::epoch_secs;
use shared::net::AddrText;
use shared::record::{Bind, Value};
use shared::ConnEvent;

use crate::schema::{Param, Statements};
use crate::writer::NewRow;

/// A column's value for `ev`: the field's, or the column's own where the row means something
/// else by it.
pub(crate) fn value<'a>(p: &Param, ev: &'a ConnEvent) -> Value<'a> {
    match p.column.bind {
        Bind::Own(get) => get(ev),
        _ => p.field.get(ev),
    }
}

/// Text parameters that most rows of a batch share (source, direction, day, state, flag) are
/// bound again only when they change: SQLite keeps a statement's bindings from one execution to
/// the next, and binding text costs a copy. One per statement and batch.
#[derive(Default)]
pub(crate) struct Sticky(Vec<Option<Option<String>>>);

impl Sticky {
    fn bind(
        &mut self,
        stmt: &mut CachedStatement<'_>,
        i: usize,
        value: Option<&str>,
    ) -> rusqlite::Result<()> {
        if self.0.len() <= i {
            self.0.resize(i + 1, None);
        }
        let slot = &mut self.0[i];
        if slot.as_ref().map(|b| b.as_deref()) == Some(value) {
            return Ok(());
        }
        stmt.raw_bind_parameter(i, value)?;
        match (slot, value) {
            (Some(Some(s)), Some(v)) => {
                s.clear();
                s.push_str(v);
            }
            (slot, v) => *slot = Some(v.map(str::to_owned)),
        }
        Ok(())
    }
}

/// The local date (`YYYY-MM-DD`) of an epoch second, remembered for the last second asked:
/// the local-time conversion is a time-zone lookup, and a flood opens thousands of
/// connections within the same second.
#[derive(Default)]
pub(crate) struct DayCache {
    sec: Option<i64>,
    day: String,
}

impl DayCache {
    pub(crate) fn day(&mut self, sec: i64, fallback: DateTime<Utc>) -> &str {
        if self.sec != Some(sec) {
            use std::fmt::Write;
            let (t, cacheable) = match DateTime::<Utc>::from_timestamp(sec, 0) {
                Some(t) => (t, true),
                None => (fallback, false),
            };
            self.day.clear();
            let _ = write!(self.day, "{}", t.with_timezone(&Local).format("%Y-%m-%d"));
            self.sec = cacheable.then_some(sec);
        }
        &self.day
    }
}

/// Binds `v` as the statement's `i`-th parameter (`p`'s column). `days` and `ts` (the
/// event's time, for a date out of chrono's range) serve a local-date column.
fn bind_value(
    stmt: &mut CachedStatement<'_>,
    sticky: &mut Sticky,
    i: usize,
    p: &Param,
    v: Value<'_>,
    days: &mut DayCache,
    ts: DateTime<Utc>,
) -> rusqlite::Result<()> {
    let mut buf = [0u8; 4];
    let text = |t: &str, sticky: &mut Sticky, stmt: &mut CachedStatement<'_>| match p.column.shared
    {
        true => sticky.bind(stmt, i, Some(t)),
        false => stmt.raw_bind_parameter(i, t),
    };
    match (p.column.bind, v) {
        (Bind::LocalDay, Value::Secs(s)) => text(days.day(s.floor() as i64, ts), sticky, stmt),
        (_, Value::Absent | Value::Null) => stmt.raw_bind_parameter(i, Null),
        // Counts are bound as SQLite's INTEGER (i64); MAX_VALUE is the largest a reader takes.
        (_, Value::Count(n) | Value::Tally(n)) => stmt.raw_bind_parameter(i, n as i64),
        (_, Value::Flag(b)) => stmt.raw_bind_parameter(i, b as i64),
        (_, Value::Proto(n)) => stmt.raw_bind_parameter(i, n),
        (_, Value::Secs(s)) => stmt.raw_bind_parameter(i, s),
        (_, Value::Time(t)) => stmt.raw_bind_parameter(i, epoch_secs(t)),
        (_, Value::Word(w)) => text(w, sticky, stmt),
        (_, Value::Text(t)) => text(t, sticky, stmt),
        (_, Value::Char(c)) => text(c.encode_utf8(&mut buf), sticky, stmt),
        (_, Value::Addr(a)) => text(AddrText::new(a).as_str(), sticky, stmt),
        (_, Value::AddrPort(a, port)) => {
            let a = AddrText::new(a);
            match port {
                Some(port) => text(&format!("{}:{port}", a.as_str()), sticky, stmt),
                None => text(a.as_str(), sticky, stmt),
            }
        }
    }
}

/// Binds one new row: its INSERT's parameters from `offset + 1` on (`offset` = the row's place
/// in a multi-row INSERT times its parameters), with the columns later events changed when the
/// row has `merged` values (the single-row full INSERT).
pub(crate) fn bind_row(
    stmt: &mut CachedStatement<'_>,
    sticky: &mut Sticky,
    offset: usize,
    row: &NewRow<'_>,
    merged: &[Value<'_>],
    run_id: Option<i64>,
    days: &mut DayCache,
) -> rusqlite::Result<()> {
    let sql = Statements::get();
    let first = row.first;
    // `run_id` comes first: the table's own column, not a field of the record.
    stmt.raw_bind_parameter(offset + 1, run_id)?;
    let params = match row.merged {
        Some(_) => &sql.full_params,
        None => &sql.insert_params,
    };
    for (k, p) in params.iter().enumerate() {
        let v = match (row.merged, p.changed) {
            (Some(start), Some(c)) => merged[start + c],
            _ => value(p, first),
        };
        bind_value(stmt, sticky, offset + k + 2, p, v, days, first.ts)?;
    }
    Ok(())
}

/// Writes a later event's changes to a row of an earlier batch.
pub(crate) fn update_row(
    stmt: &mut CachedStatement<'_>,
    sticky: &mut Sticky,
    ev: &ConnEvent,
    row: i64,
    days: &mut DayCache,
) -> rusqlite::Result<()> {
    stmt.raw_bind_parameter(1, row)?;
    for (k, p) in Statements::get().update_params.iter().enumerate() {
        bind_value(stmt, sticky, k + 2, p, value(p, ev), days, ev.ts)?;
    }
    stmt.raw_execute().map(drop)
}
