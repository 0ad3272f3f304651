//! Binding a row's values to a prepared statement's parameters, in the order
//! [`crate::schema`] worked out.
//!
//! Each parameter is bound by its own call, its place in the column lists a constant
//! (`each_index!`), rather than by a loop over the lists: the field's getter is then a known
//! function, inlined, and binding a column costs what a hand-written bind of that column would
//! (a loop through function pointers costs measurably more per event; BENCHMARKS.md has the
//! figures).

use chrono::{DateTime, Local, Utc};
use rusqlite::types::Null;
use rusqlite::CachedStatement;
use shared::event::epoch_secs;
use shared::net::AddrText;
use shared::record::{Bind, Column, Value, FIELDS};
use shared::ConnEvent;

use crate::schema::{changed_slot, CHANGED, FULL, OPEN};
use crate::writer::NewRow;

/// Calls `$f::<I> $args?` for every index `I` a column list can have.
macro_rules! each_index {
    ($f:ident $args:tt) => {
        each_index!(@ $f $args 0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 21 22 23
            24 25 26 27 28 29 30 31 32 33 34 35 36 37 38 39 40 41 42 43 44 45 46 47
            48 49 50 51 52 53 54 55 56 57 58 59 60 61 62 63)
    };
    (@ $f:ident $args:tt $($i:literal)*) => { $( $f::<$i> $args?; )* };
}
const _: () = assert!(FULL.len() <= 64 && CHANGED.len() <= 64);

/// Where each of [`FULL`] is among [`CHANGED`].
const FULL_SLOT: [Option<usize>; FULL.len()] = slots(FULL);

const fn slots<const N: usize>(fields: [usize; N]) -> [Option<usize>; N] {
    let mut out = [None; N];
    let mut i = 0;
    while i < N {
        out[i] = changed_slot(fields[i]);
        i += 1;
    }
    out
}

const fn column(field: usize) -> Column {
    match FIELDS[field].sql {
        Some(c) => c,
        None => panic!("not a column"),
    }
}

/// Field `field`'s column value for `ev`: the field's, or the column's own where the row means
/// something else by it.
#[inline(always)]
fn value(field: usize, ev: &ConnEvent) -> Value<'_> {
    match column(field).bind {
        Bind::Own(get) => get(ev),
        _ => (FIELDS[field].get)(ev),
    }
}

/// What a statement's parameters are bound to, where that saves binding them again: SQLite
/// keeps a statement's bindings from one execution to the next, so a NULL (most columns of
/// most events: no counters yet, no Zeek fields from conntrack) or a text most rows of a batch
/// share (source, direction, day, state, flag; binding text costs a copy) is bound only when it
/// changes. One per statement and batch.
#[derive(Default)]
pub(crate) struct Sticky(Vec<Bound>);

#[derive(Clone, Default, PartialEq)]
enum Bound {
    /// Something not remembered.
    #[default]
    Other,
    Null,
    Text(String),
}

impl Sticky {
    #[inline(always)]
    fn slot(&mut self, i: usize) -> &mut Bound {
        if self.0.len() <= i {
            self.0.resize(i + 1, Bound::Other);
        }
        &mut self.0[i]
    }

    #[inline(always)]
    fn null(&mut self, stmt: &mut CachedStatement<'_>, i: usize) -> rusqlite::Result<()> {
        let slot = self.slot(i);
        if *slot != Bound::Null {
            stmt.raw_bind_parameter(i, Null)?;
            *slot = Bound::Null;
        }
        Ok(())
    }

    fn text(
        &mut self,
        stmt: &mut CachedStatement<'_>,
        i: usize,
        value: &str,
    ) -> rusqlite::Result<()> {
        let slot = self.slot(i);
        match slot {
            Bound::Text(s) if s == value => return Ok(()),
            Bound::Text(s) => {
                s.clear();
                s.push_str(value);
            }
            slot => *slot = Bound::Text(value.to_owned()),
        }
        stmt.raw_bind_parameter(i, value)
    }

    /// `i` is about to be bound to something else.
    #[inline(always)]
    fn forget(&mut self, i: usize) {
        if let Some(slot) = self.0.get_mut(i) {
            *slot = Bound::Other;
        }
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

/// What binding a statement's parameters needs besides the values.
pub(crate) struct Binder<'s, 'c> {
    pub stmt: &'s mut CachedStatement<'c>,
    pub sticky: &'s mut Sticky,
    pub days: &'s mut DayCache,
}

impl Binder<'_, '_> {
    /// Binds `v` as parameter `i` of column `c`; `ts` (the event's time) is the fallback of a
    /// local date out of chrono's range.
    #[inline(always)]
    fn bind(
        &mut self,
        i: usize,
        c: Column,
        v: Value<'_>,
        ts: DateTime<Utc>,
    ) -> rusqlite::Result<()> {
        let stmt = &mut *self.stmt;
        if let Value::Absent | Value::Null = v {
            return self.sticky.null(stmt, i);
        }
        let (mut buf, addr, owned);
        let text = match (c.bind, v) {
            (Bind::LocalDay, Value::Secs(s)) => self.days.day(s.floor() as i64, ts),
            (_, Value::Word(w)) => w,
            (_, Value::Text(t) | Value::List(t)) => t,
            (_, Value::Pair(a, b)) => {
                owned = format!("{a}/{b}");
                &owned
            }
            (_, Value::Char(ch)) => {
                buf = [0u8; 4];
                ch.encode_utf8(&mut buf)
            }
            (_, Value::Addr(a)) => {
                addr = AddrText::new(a);
                addr.as_str()
            }
            (_, Value::AddrPort(a, p)) => {
                owned = p.map_or(a.to_string(), |p| format!("{a}:{p}"));
                &owned
            }
            (_, number) => {
                self.sticky.forget(i);
                return bind_number(stmt, i, number);
            }
        };
        match c.shared {
            true => self.sticky.text(stmt, i, text),
            false => {
                self.sticky.forget(i);
                stmt.raw_bind_parameter(i, text)
            }
        }
    }
}

/// Binds a number: counts as SQLite's INTEGER (i64; `MAX_VALUE` is the largest a reader
/// takes), seconds and times as REAL.
#[inline(always)]
fn bind_number(stmt: &mut CachedStatement<'_>, i: usize, v: Value<'_>) -> rusqlite::Result<()> {
    match v {
        Value::Count(n) | Value::Tally(n) => stmt.raw_bind_parameter(i, n as i64),
        Value::Flag(b) => stmt.raw_bind_parameter(i, b as i64),
        Value::Proto(n) => stmt.raw_bind_parameter(i, n),
        Value::Secs(s) => stmt.raw_bind_parameter(i, s),
        Value::Time(t) => stmt.raw_bind_parameter(i, epoch_secs(t)),
        _ => stmt.raw_bind_parameter(i, Null),
    }
}

/// Binds one new row: `run_id` and its first event's columns ([`OPEN`]) from parameter
/// `offset + 1` on (`offset` = the row's place in a multi-row INSERT times
/// [`crate::schema::INSERT_WIDTH`]); when later events of the batch changed it (`row.merged`),
/// the changed columns' merged values and the columns only later events set ([`FULL`], the
/// single-row full INSERT).
pub(crate) fn bind_row(
    b: &mut Binder<'_, '_>,
    offset: usize,
    row: &NewRow<'_>,
    merged: &[Value<'_>],
    run_id: Option<i64>,
) -> rusqlite::Result<()> {
    b.stmt.raw_bind_parameter(offset + 1, run_id)?;
    each_index!(bind_param(b, offset, row, merged));
    Ok(())
}

#[inline(always)]
fn bind_param<const I: usize>(
    b: &mut Binder<'_, '_>,
    offset: usize,
    row: &NewRow<'_>,
    merged: &[Value<'_>],
) -> rusqlite::Result<()> {
    let Some(&field) = FULL.get(I) else {
        return Ok(());
    };
    let v = match (row.merged, FULL_SLOT[I]) {
        (Some(start), Some(slot)) => merged[start + slot],
        (None, _) if I >= OPEN.len() => return Ok(()),
        _ => value(field, row.first),
    };
    b.bind(offset + 2 + I, column(field), v, row.first.ts)
}

/// Writes a later event's changes to a row of an earlier batch.
pub(crate) fn update_row(b: &mut Binder<'_, '_>, ev: &ConnEvent, row: i64) -> rusqlite::Result<()> {
    b.stmt.raw_bind_parameter(1, row)?;
    each_index!(bind_changed(b, ev));
    b.stmt.raw_execute().map(drop)
}

#[inline(always)]
fn bind_changed<const I: usize>(b: &mut Binder<'_, '_>, ev: &ConnEvent) -> rusqlite::Result<()> {
    let Some(&field) = CHANGED.get(I) else {
        return Ok(());
    };
    b.bind(I + 2, column(field), value(field, ev), ev.ts)
}

/// How [`merge`] changes a row's values of [`CHANGED`].
#[derive(Clone, Copy, PartialEq)]
pub(crate) enum Merge {
    /// To what an INSERT of the row's first event alone writes (NULL where only a later event
    /// sets the column).
    First,
    /// As the UPDATE of a later event would: a column that keeps its value (`coalesce`) keeps
    /// it when the event has none, the others take the event's.
    Later,
}

/// Applies `ev` to a new row's values of [`CHANGED`] (`merged`, as long as `CHANGED`).
pub(crate) fn merge<'a>(how: Merge, ev: &'a ConnEvent, merged: &mut [Value<'a>]) {
    #[inline(always)]
    fn one<'a, const I: usize>(
        how: Merge,
        ev: &'a ConnEvent,
        merged: &mut [Value<'a>],
    ) -> Option<()> {
        if let Some(&field) = CHANGED.get(I) {
            let set = column(field).set;
            merged[I] = match how {
                Merge::First if !set.at_open() => Value::Null,
                Merge::First => value(field, ev),
                Merge::Later => match value(field, ev) {
                    Value::Absent | Value::Null if set.keeps() => merged[I],
                    new => new,
                },
            };
        }
        Some(())
    }
    fn all<'a>(how: Merge, ev: &'a ConnEvent, merged: &mut [Value<'a>]) -> Option<()> {
        each_index!(one(how, ev, merged));
        Some(())
    }
    all(how, ev, merged);
}
