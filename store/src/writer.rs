//! The batched writer: one transaction per batch of events, one row per connection.

use std::path::Path;

use rusqlite::Connection;
use rustc_hash::FxHashMap;
use shared::outfile::Policy;
use shared::record::Value;
use shared::{ConnEvent, ConnKey, EventKind};

use crate::bind::{bind_row, merge, update_row, Binder, DayCache, Merge, Sticky};
use crate::open::{open_for_writing, StoreError};
use crate::schema::{Statements, CHANGED, INSERT_ROWS, INSERT_WIDTH};

/// The batched writer.
pub struct Store {
    pub(crate) conn: Connection,
    pub(crate) run_id: Option<i64>,
    /// Row ids of connections still open, so updates touch one row by primary key. FxHash
    /// rather than SipHash: the key's conntrack id is the kernel's, not chosen by whoever sends
    /// the packets, and hashing it is a measurable part of a flood's cost (BENCHMARKS.md).
    open_rows: FxHashMap<ConnKey, i64>,
    /// Rows first written by the batch being written (index into its new rows); kept here
    /// only to reuse its allocation from batch to batch.
    batch_rows: FxHashMap<ConnKey, usize>,
    days: DayCache,
}

/// The row an event of the batch touches.
#[derive(Clone, Copy)]
enum Target {
    /// Written by an earlier batch: updated with an UPDATE by row id.
    Old(i64),
    /// First written by this batch: index into its new rows.
    New(usize),
}

/// A row first written by the batch being written, inserted at the batch's end.
pub(crate) struct NewRow<'a> {
    /// The event that created it: an open, or the update/close of a connection whose open the
    /// logger missed.
    pub first: &'a ConnEvent,
    /// Where the values of the columns later events change start in the batch's merged
    /// values, once an event (or `first` itself, when it was not an open) changed the row.
    pub merged: Option<usize>,
    pub closed: bool,
    /// Its row id, once inserted.
    pub id: i64,
}

impl<'a> NewRow<'a> {
    fn new(ev: &'a ConnEvent) -> NewRow<'a> {
        NewRow {
            first: ev,
            merged: None,
            closed: false,
            id: 0,
        }
    }

    /// Applies an update or close exactly as the UPDATE statement would. `merged` holds the
    /// batch's new rows' values of the columns later events change, [`CHANGED`] per row.
    fn apply(&mut self, ev: &'a ConnEvent, merged: &mut Vec<Value<'a>>) {
        let start = *self.merged.get_or_insert_with(|| {
            let start = merged.len();
            merged.resize(start + CHANGED.len(), Value::Null);
            merge(Merge::First, self.first, &mut merged[start..]);
            start
        });
        merge(Merge::Later, ev, &mut merged[start..start + CHANGED.len()]);
        self.closed = ev.kind == EventKind::Close;
    }
}

impl Store {
    /// Opens (creating if needed) the history at `path` and checks now, not an hour later, that
    /// it is ours, of this version, and writable. A symbolic link at `path` is refused.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        Store::open_with(path, &Policy::default())
    }

    /// [`Store::open`] under `policy`: whether a symbolic link at `path` may be followed, and
    /// to whom a database created now is given (SQLite, running as root, gives its `-wal` and
    /// `-shm` files the database's owner).
    pub fn open_with(path: &Path, policy: &Policy) -> Result<Store, StoreError> {
        Ok(Store {
            conn: open_for_writing(path, policy)?,
            run_id: None,
            open_rows: FxHashMap::default(),
            batch_rows: FxHashMap::default(),
            days: DayCache::default(),
        })
    }

    /// Number of connections the store believes open.
    pub fn open_count(&self) -> usize {
        self.open_rows.len()
    }

    /// The underlying connection, for queries.
    pub fn connection(&self) -> &Connection {
        &self.conn
    }

    /// Writes `events` in one transaction. On error nothing of the batch is written and the
    /// caller may retry the same batch later.
    ///
    /// A row first written by this batch is built in memory and inserted once, at the end of
    /// the batch, with its later events of the batch already applied: a connection that opens
    /// and closes within one batch costs one INSERT, not an INSERT and an UPDATE. The row holds
    /// exactly what the INSERT followed by the UPDATEs would have left.
    pub fn write_batch(&mut self, events: &[ConnEvent]) -> rusqlite::Result<()> {
        let sql = Statements::get();
        let tx = self.conn.transaction()?;
        let mut rows: Vec<NewRow<'_>> = Vec::new();
        let mut merged: Vec<Value<'_>> = Vec::new();
        // What `open_rows` must do once the batch is durable, in event order: take a new row
        // (index into `rows`) or forget the key.
        let mut changes: Vec<(ConnKey, Option<usize>)> = Vec::new();
        self.batch_rows.clear();
        {
            let mut update = tx.prepare_cached(&sql.update)?;
            let mut update_sticky = Sticky::default();
            for ev in events {
                let k = ev.key();
                let target = match self.batch_rows.get(&k) {
                    Some(&i) => Some(Target::New(i)),
                    None => self.open_rows.get(&k).map(|&id| Target::Old(id)),
                };
                let target = match (ev.kind, target) {
                    (EventKind::Open, _) | (_, None) => {
                        let i = rows.len();
                        rows.push(NewRow::new(ev));
                        self.batch_rows.insert(k, i);
                        changes.push((k, Some(i)));
                        Target::New(i)
                    }
                    (_, Some(t)) => t,
                };
                if ev.kind != EventKind::Open {
                    match target {
                        Target::New(i) => rows[i].apply(ev, &mut merged),
                        Target::Old(id) => {
                            let mut b = Binder {
                                stmt: &mut update,
                                sticky: &mut update_sticky,
                                days: &mut self.days,
                            };
                            update_row(&mut b, ev, id)?
                        }
                    }
                }
                if ev.kind == EventKind::Close {
                    self.batch_rows.remove(&k);
                    changes.push((k, None));
                }
            }
            let mut insert = tx.prepare_cached(&sql.insert)?;
            let mut insert_full = tx.prepare_cached(&sql.insert_full)?;
            let (mut sticky, mut full_sticky) = (Sticky::default(), Sticky::default());
            let mut insert_many = tx.prepare_cached(&sql.insert_many)?;
            let mut many_sticky = Sticky::default();
            let mut i = 0;
            while i < rows.len() {
                let end = (i + INSERT_ROWS).min(rows.len());
                let run = &mut rows[i..end];
                if run.len() == INSERT_ROWS && run.iter().all(|r| r.merged.is_none()) {
                    let mut b = Binder {
                        stmt: &mut insert_many,
                        sticky: &mut many_sticky,
                        days: &mut self.days,
                    };
                    for (j, row) in run.iter().enumerate() {
                        bind_row(&mut b, j * INSERT_WIDTH, row, &merged, self.run_id)?;
                    }
                    insert_many.raw_execute()?;
                    // One statement's rows get consecutive row ids (each is one more than
                    // the largest before it), the last one being `last_insert_rowid`.
                    let last = tx.last_insert_rowid();
                    for (j, row) in run.iter_mut().enumerate() {
                        row.id = last - (INSERT_ROWS - 1 - j) as i64;
                    }
                    i += INSERT_ROWS;
                    continue;
                }
                let row = &mut rows[i];
                let (stmt, sticky) = match row.merged {
                    Some(_) => (&mut insert_full, &mut full_sticky),
                    None => (&mut insert, &mut sticky),
                };
                let mut b = Binder {
                    stmt,
                    sticky,
                    days: &mut self.days,
                };
                bind_row(&mut b, 0, row, &merged, self.run_id)?;
                stmt.raw_execute()?;
                row.id = tx.last_insert_rowid();
                i += 1;
            }
        }
        tx.commit()?;
        // Only now that the batch is durable does the in-memory map follow it, so a failed
        // batch can be retried as a whole.
        for (k, change) in changes {
            match change {
                // Closed later in the same batch: the removal that follows is all that counts.
                Some(i) if rows[i].closed => {}
                Some(i) => {
                    self.open_rows.insert(k, rows[i].id);
                }
                None => {
                    self.open_rows.remove(&k);
                }
            }
        }
        Ok(())
    }
}
