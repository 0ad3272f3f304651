//! The SQLite history: one row per connection, updated as it changes state and closes, plus
//! one row per logger run.
//!
//! Writes are batched (one transaction per batch, prepared statements, WAL) so a flood of events
//! costs one fsync per batch rather than one per event. The schema's version is kept in
//! `PRAGMA user_version`; a database of another version is refused at open, never migrated
//! silently.
//!
//! ## `connections`
//! | column | meaning |
//! |---|---|
//! | `id` | row id |
//! | `run_id` | the `runs` row of the logger that first wrote it |
//! | `source` | `conntrack` or `pcap` |
//! | `conn_id` | conntrack id or packet-tracker flow number (unique among open connections) |
//! | `uid` | Zeek-style unique id (packet tracker) |
//! | `proto` | IP protocol number |
//! | `orig_h`, `orig_p`, `resp_h`, `resp_p` | the original tuple: originator → responder as first seen |
//! | `reply_src`, `reply_sport`, `reply_dst`, `reply_dport` | the reply tuple (conntrack), shows NAT |
//! | `src`, `dst`, `dport` | what the log shows: address or local interface name, final port |
//! | `src_iface`, `dst_iface` | local interface of the originator / responder, if local |
//! | `direction` | `in`, `out`, `fwd`, `local` or `-` |
//! | `day` | local date (`YYYY-MM-DD`) the connection opened: constat's per-day key |
//! | `open_ts`, `close_ts` | epoch seconds; `close_ts` NULL while open |
//! | `found_at_start` | 1 when the logger found it already open (open time unknown) |
//! | `last_state`, `flag` | last TCP state name (or `UNREPLIED`/`REPLIED`/`OTHER`) and log flag |
//! | `duration` | seconds from open to the last state change/close |
//! | `orig_pkts`, `orig_ip_bytes`, `resp_pkts`, `resp_ip_bytes` | counters, IP level (NULL if unknown) |
//! | `orig_bytes`, `resp_bytes` | payload bytes (packet captures) |
//! | `conn_state`, `history` | Zeek's conn_state and history (packet captures) |
//! | `retrans`, `syn_retrans`, `rst`, `long_delay`, `frag`, `long_conn` | anomaly counts |
//! | `mark`, `zone`, `kstart`, `kstop` | conntrack mark, zone, kernel start/stop (epoch s) |
//!
//! Indexes: `connections_day (day)` for per-day queries, `connections_orig_h (orig_h)` and
//! `connections_resp_h (resp_h)` for per-host ones. Each is one short key: every index costs
//! every insert a B-tree descent, and under a flood the host indexes are written at random
//! places. (Databases created before 2026-11-25 have `(day, src, proto, dport)`,
//! `(orig_h, day)`, `(resp_h, day)` and a partial index of open rows; they answer the same
//! queries and are kept as they are.)
//!
//! ## `runs`
//! `id`, `started`, `stopped` (epoch s, NULL while running or after a crash), `source`,
//! `command`, `errors`, `lost_events`, `dropped`.

use std::net::IpAddr;
use std::path::Path;
use std::time::Duration;

use chrono::{DateTime, Local, Utc};
use rusqlite::{params, Connection, OpenFlags, OptionalExtension};
use rustc_hash::FxHashMap;

use crate::event::{epoch_secs, Anomalies, ConnEvent, ConnKey, ConnState, EventKind, ZeekState};
use crate::outfile::{self, OpenError, Policy};

/// The schema version this code reads and writes.
pub const SCHEMA_VERSION: i64 = 1;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS runs (
    id          INTEGER PRIMARY KEY,
    started     REAL NOT NULL,
    stopped     REAL,
    source      TEXT NOT NULL,
    command     TEXT NOT NULL,
    errors      INTEGER NOT NULL DEFAULT 0,
    lost_events INTEGER NOT NULL DEFAULT 0,
    dropped     INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS connections (
    id             INTEGER PRIMARY KEY,
    run_id         INTEGER REFERENCES runs(id),
    source         TEXT NOT NULL,
    conn_id        INTEGER NOT NULL,
    uid            TEXT,
    proto          INTEGER NOT NULL,
    orig_h         TEXT NOT NULL,
    orig_p         INTEGER,
    resp_h         TEXT NOT NULL,
    resp_p         INTEGER,
    reply_src      TEXT,
    reply_sport    INTEGER,
    reply_dst      TEXT,
    reply_dport    INTEGER,
    src            TEXT NOT NULL,
    dst            TEXT NOT NULL,
    dport          INTEGER,
    src_iface      TEXT,
    dst_iface      TEXT,
    direction      TEXT NOT NULL,
    day            TEXT NOT NULL,
    open_ts        REAL NOT NULL,
    close_ts       REAL,
    found_at_start INTEGER NOT NULL DEFAULT 0,
    last_state     TEXT NOT NULL,
    flag           TEXT NOT NULL,
    duration       REAL,
    orig_pkts      INTEGER,
    orig_ip_bytes  INTEGER,
    resp_pkts      INTEGER,
    resp_ip_bytes  INTEGER,
    orig_bytes     INTEGER,
    resp_bytes     INTEGER,
    conn_state     TEXT,
    history        TEXT,
    retrans        INTEGER NOT NULL DEFAULT 0,
    syn_retrans    INTEGER NOT NULL DEFAULT 0,
    rst            INTEGER NOT NULL DEFAULT 0,
    long_delay     INTEGER NOT NULL DEFAULT 0,
    frag           INTEGER NOT NULL DEFAULT 0,
    long_conn      INTEGER NOT NULL DEFAULT 0,
    mark           INTEGER,
    zone           INTEGER,
    kstart         REAL,
    kstop          REAL
);
CREATE INDEX IF NOT EXISTS connections_day ON connections(day);
CREATE INDEX IF NOT EXISTS connections_orig_h ON connections(orig_h);
CREATE INDEX IF NOT EXISTS connections_resp_h ON connections(resp_h);
";

/// Why the store could not be opened or written.
#[derive(Debug)]
pub enum StoreError {
    /// The file could not be created or opened (path, reason).
    Open(String, String),
    /// The database has another schema version, or is not ours.
    Schema(String),
    /// Another process holds the write lock.
    Locked(String),
    Sql(rusqlite::Error),
}

impl std::fmt::Display for StoreError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StoreError::Open(p, e) => write!(f, "{p}: cannot open database: {e}"),
            StoreError::Schema(m) => f.write_str(m),
            StoreError::Locked(p) => {
                write!(f, "{p}: database is locked by another process")
            }
            StoreError::Sql(e) => write!(f, "SQLite: {e}"),
        }
    }
}

impl std::error::Error for StoreError {}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        StoreError::Sql(e)
    }
}

/// Creates or checks the database file (mode 0640, no symbolic link unless `policy` allows
/// it, a regular file) and opens it with SQLite under a name SQLite cannot be led away from.
fn open_sqlite(path: &Path, policy: &Policy, shown: &str) -> Result<Connection, StoreError> {
    let open_err = |p: &Path, e: &dyn std::fmt::Display| {
        StoreError::Open(
            crate::text::escaped(&p.to_string_lossy()).into_owned(),
            e.to_string(),
        )
    };
    let checked = outfile::open_rw(path, policy).map_err(|e| open_err(path, &e))?;
    // Closed before SQLite opens the file: closing any descriptor of a file drops every POSIX
    // lock this process holds on it, SQLite's included.
    drop(checked.file);
    let (name, flags) = if policy.follow_symlinks {
        (path.to_path_buf(), OpenFlags::default())
    } else {
        // SQLite resolves symbolic links in the name it is given and opens the target; with
        // NOFOLLOW it refuses a link anywhere in the name instead. So the directory is resolved
        // here and SQLite gets a name whose only component that could still become a link is
        // the last one, which it then refuses (and opens with O_NOFOLLOW).
        let dir = path
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let file = path
            .file_name()
            .ok_or_else(|| open_err(path, &"not a file name"))?;
        let dir = std::fs::canonicalize(dir).map_err(|e| open_err(path, &e))?;
        (
            dir.join(file),
            OpenFlags::default() | OpenFlags::SQLITE_OPEN_NOFOLLOW,
        )
    };
    // SQLite creates and opens these by name beside the database (the resolved one when
    // following a link); it uses O_NOFOLLOW, but a planted link would only give an obscure
    // "unable to open database file".
    let base = if policy.follow_symlinks {
        std::fs::canonicalize(path).map_err(|e| open_err(path, &e))?
    } else {
        name.clone()
    };
    for suffix in ["-wal", "-shm", "-journal"] {
        let mut side = base.clone().into_os_string();
        side.push(suffix);
        let side = std::path::PathBuf::from(side);
        outfile::check_side_file(&side).map_err(|e| open_err(&side, &e))?;
    }
    Connection::open_with_flags(&name, flags).map_err(|e| {
        let symlink = matches!(
            &e,
            rusqlite::Error::SqliteFailure(f, _) if f.extended_code == rusqlite::ffi::SQLITE_CANTOPEN_SYMLINK
        );
        if symlink {
            StoreError::Open(shown.to_string(), OpenError::Symlink.to_string())
        } else {
            StoreError::Open(shown.to_string(), e.to_string())
        }
    })
}

/// Opens an existing history read-only (constat), checking its schema version.
pub fn open_read_only(path: &Path) -> Result<Connection, StoreError> {
    let shown = path.display().to_string();
    let conn = Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
        .map_err(|e| StoreError::Open(shown.clone(), e.to_string()))?;
    check_version(&conn, &shown, false)?;
    Ok(conn)
}

fn check_version(conn: &Connection, shown: &str, may_create: bool) -> Result<(), StoreError> {
    let version: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .map_err(|e| StoreError::Open(shown.to_string(), e.to_string()))?;
    if version == SCHEMA_VERSION {
        return Ok(());
    }
    if version == 0 {
        let tables: i64 = conn.query_row(
            "SELECT count(*) FROM sqlite_master WHERE type = 'table'",
            [],
            |r| r.get(0),
        )?;
        if tables == 0 && may_create {
            return Ok(());
        }
        return Err(StoreError::Schema(format!(
            "{shown}: not an ipclog database (no schema version, {tables} tables)"
        )));
    }
    Err(StoreError::Schema(format!(
        "{shown}: schema version {version}, this ipclog reads version {SCHEMA_VERSION}"
    )))
}

/// The batched writer.
pub struct Store {
    conn: Connection,
    run_id: Option<i64>,
    /// Row ids of connections still open, so updates touch one row by primary key. FxHash
    /// rather than SipHash: hashing the key was ~6 % of a flood's cost, and the key's
    /// conntrack id is the kernel's, not chosen by whoever sends the packets.
    open_rows: FxHashMap<ConnKey, i64>,
    /// Rows first written by the batch being written (index into its new rows); kept here
    /// only to reuse its allocation from batch to batch.
    batch_rows: FxHashMap<ConnKey, usize>,
    days: DayCache,
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
        let shown = path.display().to_string();
        let conn = open_sqlite(path, policy, &shown)?;
        conn.busy_timeout(Duration::from_millis(2000))?;
        check_version(&conn, &shown, true)?;
        let mode: String = conn
            .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
            .map_err(|e| lock_or_open(&shown, e))?;
        if mode != "wal" {
            return Err(StoreError::Open(
                shown,
                format!("cannot use WAL journal (got {mode})"),
            ));
        }
        conn.execute_batch(TUNING)?;
        conn.execute_batch("BEGIN IMMEDIATE")
            .map_err(|e| lock_or_open(&shown, e))?;
        conn.execute_batch(SCHEMA)?;
        conn.execute_batch(&format!("PRAGMA user_version = {SCHEMA_VERSION}"))?;
        conn.execute_batch("COMMIT")?;
        Ok(Store {
            conn,
            run_id: None,
            open_rows: FxHashMap::default(),
            batch_rows: FxHashMap::default(),
            days: DayCache::default(),
        })
    }

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

    /// Number of connections the store believes open.
    pub fn open_count(&self) -> usize {
        self.open_rows.len()
    }

    /// Writes `events` in one transaction. On error nothing of the batch is written and the
    /// caller may retry the same batch later.
    ///
    /// A row first written by this batch is built in memory and inserted once, at the end of
    /// the batch, with its later events of the batch already applied: a connection that opens
    /// and closes within one batch costs one INSERT, not an INSERT and an UPDATE. The row holds
    /// exactly what the INSERT followed by the UPDATEs would have left.
    pub fn write_batch(&mut self, events: &[ConnEvent]) -> rusqlite::Result<()> {
        let tx = self.conn.transaction()?;
        let mut rows: Vec<NewRow<'_>> = Vec::new();
        // What `open_rows` must do once the batch is durable, in event order: take a new row
        // (index into `rows`) or forget the key.
        let mut changes: Vec<(ConnKey, Option<usize>)> = Vec::new();
        self.batch_rows.clear();
        {
            let mut update = tx.prepare_cached(UPDATE_SQL)?;
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
                        Target::New(i) => rows[i].apply(ev),
                        Target::Old(id) => update_row(&mut update, &mut update_sticky, ev, id)?,
                    }
                }
                if ev.kind == EventKind::Close {
                    self.batch_rows.remove(&k);
                    changes.push((k, None));
                }
            }
            let mut insert = tx.prepare_cached(INSERT_SQL)?;
            let mut insert_full = tx.prepare_cached(INSERT_FULL_SQL)?;
            let (mut sticky, mut full_sticky) = (Sticky::default(), Sticky::default());
            let mut insert_many = tx.prepare_cached(insert_many_sql())?;
            let mut many_sticky = Sticky::default();
            let mut i = 0;
            while i < rows.len() {
                let end = (i + INSERT_ROWS).min(rows.len());
                let run = &mut rows[i..end];
                if run.len() == INSERT_ROWS && run.iter().all(|r| !r.updated) {
                    for (j, row) in run.iter().enumerate() {
                        let (s, o) = (&mut many_sticky, 27 * j);
                        bind_row(&mut insert_many, s, o, row, self.run_id, &mut self.days)?;
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
                let (stmt, sticky) = if row.updated {
                    (&mut insert_full, &mut full_sticky)
                } else {
                    (&mut insert, &mut sticky)
                };
                bind_row(stmt, sticky, 0, row, self.run_id, &mut self.days)?;
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

    /// The underlying connection, for queries.
    pub fn connection(&self) -> &Connection {
        &self.conn
    }
}

/// Connection-level settings for a writer that takes floods of rows and their three indexes: a
/// 64 MiB page cache so index pages are not re-read, and rarer checkpoints (64 MiB of WAL) so
/// an index page changed by many batches is copied back to the database once, not per batch.
/// Durability is unchanged: WAL, one transaction per batch, `synchronous = NORMAL`.
const TUNING: &str = "PRAGMA synchronous = NORMAL;
    PRAGMA cache_size = -65536;
    PRAGMA wal_autocheckpoint = 16384;";

/// The row an event of the batch touches.
#[derive(Clone, Copy)]
enum Target {
    /// Written by an earlier batch: updated with an UPDATE by row id.
    Old(i64),
    /// First written by this batch: index into its new rows.
    New(usize),
}

/// A row first written by the batch being written, inserted at the batch's end.
struct NewRow<'a> {
    /// The event that created it: an open, or the update/close of a connection whose open the
    /// logger missed.
    first: &'a ConnEvent,
    /// A later event (or `first` itself, when it was not an open) set the UPDATE's columns.
    updated: bool,
    closed: bool,
    /// The columns the UPDATE sets, as the events so far left them.
    close_ts: Option<f64>,
    state: ConnState,
    duration: Option<f64>,
    counters: [Option<i64>; 6],
    conn_state: Option<&'static str>,
    history: Option<&'a str>,
    anomalies: Anomalies,
    mark: Option<u32>,
    zone: Option<u16>,
    kstart: Option<f64>,
    kstop: Option<f64>,
    uid: Option<&'a str>,
    /// Its row id, once inserted.
    id: i64,
}

impl<'a> NewRow<'a> {
    /// What the INSERT alone writes.
    fn new(ev: &'a ConnEvent) -> NewRow<'a> {
        NewRow {
            first: ev,
            updated: false,
            closed: false,
            close_ts: None,
            state: ev.state,
            duration: None,
            counters: [None; 6],
            conn_state: None,
            history: None,
            anomalies: Anomalies::default(),
            mark: ev.mark,
            zone: ev.zone,
            kstart: ev.kernel_start.map(epoch_secs),
            kstop: None,
            uid: ev.uid.as_deref(),
            id: 0,
        }
    }

    /// Applies an update or close exactly as `UPDATE_SQL` would (`coalesce` = keep the old
    /// value when the event has none).
    fn apply(&mut self, ev: &'a ConnEvent) {
        self.updated = true;
        self.closed = ev.kind == EventKind::Close;
        self.close_ts = self.closed.then(|| epoch_secs(ev.ts));
        self.state = ev.state;
        self.duration = ev.duration.or(self.duration);
        let new = counter_values(ev);
        for (old, new) in self.counters.iter_mut().zip(new) {
            *old = new.or(*old);
        }
        self.conn_state = ev.zeek_state.map(ZeekState::as_str).or(self.conn_state);
        self.history = ev.history.as_deref().or(self.history);
        self.anomalies = ev.anomalies;
        self.mark = ev.mark.or(self.mark);
        self.zone = ev.zone.or(self.zone);
        self.kstart = ev.kernel_start.map(epoch_secs).or(self.kstart);
        self.kstop = ev.kernel_stop.map(epoch_secs).or(self.kstop);
        self.uid = ev.uid.as_deref().or(self.uid);
    }
}

/// `orig_pkts, orig_ip_bytes, resp_pkts, resp_ip_bytes, orig_bytes, resp_bytes` of an event.
fn counter_values(ev: &ConnEvent) -> [Option<i64>; 6] {
    match ev.counters {
        None => [None; 6],
        Some(c) => [
            Some(c.orig_pkts as i64),
            Some(c.orig_ip_bytes as i64),
            Some(c.resp_pkts as i64),
            Some(c.resp_ip_bytes as i64),
            c.orig_bytes.map(|b| b as i64),
            c.resp_bytes.map(|b| b as i64),
        ],
    }
}

/// The local date (`YYYY-MM-DD`) of an epoch second, remembered for the last second asked:
/// the local-time conversion is a time-zone lookup, and a flood opens thousands of
/// connections within the same second.
#[derive(Default)]
struct DayCache {
    sec: Option<i64>,
    day: String,
}

impl DayCache {
    fn day(&mut self, sec: i64, fallback: DateTime<Utc>) -> &str {
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

/// An address as text without allocating: the dotted quad written by hand (a flood's common
/// case; `Ipv4Addr`'s Display was ~4 % of the cost), IPv6 through its Display.
struct AddrText {
    buf: [u8; 48],
    len: usize,
}

impl AddrText {
    fn new(a: IpAddr) -> AddrText {
        let mut t = AddrText {
            buf: [0; 48],
            len: 0,
        };
        match a {
            IpAddr::V4(v4) => {
                for (i, o) in v4.octets().into_iter().enumerate() {
                    if i > 0 {
                        t.push(b'.');
                    }
                    if o >= 100 {
                        t.push(b'0' + o / 100);
                    }
                    if o >= 10 {
                        t.push(b'0' + o / 10 % 10);
                    }
                    t.push(b'0' + o % 10);
                }
            }
            IpAddr::V6(v6) => {
                use std::io::Write;
                let mut rest = &mut t.buf[..];
                // 45 characters at most ("ffff:...:255.255.255.255"): always fits.
                let _ = write!(rest, "{v6}");
                let left = rest.len();
                t.len = t.buf.len() - left;
            }
        }
        t
    }

    fn push(&mut self, b: u8) {
        self.buf[self.len] = b;
        self.len += 1;
    }

    fn as_str(&self) -> &str {
        // Only ASCII digits, dots, colons and hex letters were written.
        std::str::from_utf8(&self.buf[..self.len]).unwrap_or("")
    }
}

fn lock_or_open(shown: &str, e: rusqlite::Error) -> StoreError {
    match e.sqlite_error_code() {
        Some(rusqlite::ErrorCode::DatabaseBusy) | Some(rusqlite::ErrorCode::DatabaseLocked) => {
            StoreError::Locked(shown.to_string())
        }
        _ => StoreError::Open(shown.to_string(), e.to_string()),
    }
}

/// The columns an open sets; `INSERT_FULL_SQL` adds those of the UPDATE. `src` and `dst` are
/// computed from parameters already bound (the interface if local, else the address: the
/// responder's after DNAT), so their text is not bound and copied twice; ?14 and ?15 are unused.
const INSERT_SQL: &str = "INSERT INTO connections (
    run_id, source, conn_id, uid, proto, orig_h, orig_p, resp_h, resp_p,
    reply_src, reply_sport, reply_dst, reply_dport, src, dst, dport, src_iface, dst_iface,
    direction, day, open_ts, found_at_start, last_state, flag, mark, zone, kstart)
    VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13,
            coalesce(?17, ?6), coalesce(?18, ?10, ?8), ?16, ?17, ?18,
            ?19, ?20, ?21, ?22, ?23, ?24, ?25, ?26, ?27)";

/// Opens inserted by one statement: fewer statement executions (each opens B-tree cursors on
/// the table and its three indexes and resets its registers).
const INSERT_ROWS: usize = 8;

/// `INSERT_SQL` for `INSERT_ROWS` rows, row j's parameters numbered from 27 x j + 1.
fn insert_many_sql() -> &'static str {
    static SQL: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    SQL.get_or_init(|| {
        let (head, values) = INSERT_SQL
            .split_once("VALUES")
            .expect("INSERT_SQL has VALUES");
        let one = values.trim();
        let rows: Vec<String> = (0..INSERT_ROWS)
            .map(|j| {
                let mut row = String::new();
                let mut rest = one;
                // Renumber every ?N to ?(N + 27 j).
                while let Some(q) = rest.find('?') {
                    row.push_str(&rest[..=q]);
                    rest = &rest[q + 1..];
                    let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
                    let n: usize = rest[..digits].parse().expect("parameter number");
                    row.push_str(&(n + 27 * j).to_string());
                    rest = &rest[digits..];
                }
                row.push_str(rest);
                row
            })
            .collect();
        format!("{head}VALUES {}", rows.join(",\n    "))
    })
}

const INSERT_FULL_SQL: &str = "INSERT INTO connections (
    run_id, source, conn_id, uid, proto, orig_h, orig_p, resp_h, resp_p,
    reply_src, reply_sport, reply_dst, reply_dport, src, dst, dport, src_iface, dst_iface,
    direction, day, open_ts, found_at_start, last_state, flag, mark, zone, kstart,
    close_ts, duration, orig_pkts, orig_ip_bytes, resp_pkts, resp_ip_bytes, orig_bytes,
    resp_bytes, conn_state, history, retrans, syn_retrans, rst, long_delay, frag, long_conn,
    kstop)
    VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13,
            coalesce(?17, ?6), coalesce(?18, ?10, ?8), ?16, ?17, ?18,
            ?19, ?20, ?21, ?22, ?23, ?24, ?25, ?26, ?27, ?28, ?29, ?30, ?31, ?32, ?33, ?34,
            ?35, ?36, ?37, ?38, ?39, ?40, ?41, ?42, ?43, ?44)";

const UPDATE_SQL: &str = "UPDATE connections SET
    close_ts = ?2, last_state = ?3, flag = ?4, duration = coalesce(?5, duration),
    orig_pkts = coalesce(?6, orig_pkts), orig_ip_bytes = coalesce(?7, orig_ip_bytes),
    resp_pkts = coalesce(?8, resp_pkts), resp_ip_bytes = coalesce(?9, resp_ip_bytes),
    orig_bytes = coalesce(?10, orig_bytes), resp_bytes = coalesce(?11, resp_bytes),
    conn_state = coalesce(?12, conn_state), history = coalesce(?13, history),
    retrans = ?14, syn_retrans = ?15, rst = ?16, long_delay = ?17, frag = ?18, long_conn = ?19,
    mark = coalesce(?20, mark), zone = coalesce(?21, zone), kstart = coalesce(?22, kstart),
    kstop = coalesce(?23, kstop), uid = coalesce(?24, uid)
    WHERE id = ?1";

/// Binds `value` to the statement's `i`-th parameter.
macro_rules! bind {
    ($stmt:expr, $i:expr, $value:expr) => {
        $stmt.raw_bind_parameter($i, $value)?
    };
}

/// Text parameters that most rows of a batch share (source, direction, day, state, flag) are
/// bound again only when they change: SQLite keeps a statement's bindings from one execution to
/// the next, and binding text costs a copy. One per statement and batch.
#[derive(Default)]
struct Sticky(Vec<Option<Option<String>>>);

impl Sticky {
    fn bind(
        &mut self,
        stmt: &mut rusqlite::CachedStatement<'_>,
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

/// Binds one row's values: the open's columns from parameter `o + 1` on (`o` = 27 x the row's
/// place in a multi-row INSERT), and the UPDATE's columns when `row.updated` (single-row
/// `INSERT_FULL_SQL` only).
fn bind_row(
    stmt: &mut rusqlite::CachedStatement<'_>,
    sticky: &mut Sticky,
    o: usize,
    row: &NewRow<'_>,
    run_id: Option<i64>,
    days: &mut DayCache,
) -> rusqlite::Result<()> {
    let ev = row.first;
    // An update or close with no open row: the logger missed the open (started later, or lost
    // events); the open time is then the best estimate and the row is marked as found.
    let missed_open = ev.kind != EventKind::Open;
    let open_ts = ev.start_ts();
    let r = ev.reply;
    let text = |a: Option<IpAddr>| a.map(AddrText::new);
    let (orig_h, resp_h) = (AddrText::new(ev.orig.src), AddrText::new(ev.orig.dst));
    let (reply_src, reply_dst) = (text(r.map(|r| r.src)), text(r.map(|r| r.dst)));
    let mut flag = [0u8; 4];
    bind!(stmt, o + 1, run_id);
    sticky.bind(stmt, o + 2, Some(ev.source.as_str()))?;
    bind!(stmt, o + 3, ev.conn_id as i64);
    bind!(stmt, o + 4, row.uid);
    bind!(stmt, o + 5, ev.proto);
    bind!(stmt, o + 6, orig_h.as_str());
    bind!(stmt, o + 7, ev.orig.sport);
    bind!(stmt, o + 8, resp_h.as_str());
    bind!(stmt, o + 9, ev.orig.dport);
    bind!(stmt, o + 10, reply_src.as_ref().map(|a| a.as_str()));
    bind!(stmt, o + 11, r.and_then(|r| r.sport));
    bind!(stmt, o + 12, reply_dst.as_ref().map(|a| a.as_str()));
    bind!(stmt, o + 13, r.and_then(|r| r.dport));
    bind!(stmt, o + 16, ev.shown_dport());
    bind!(stmt, o + 17, ev.src_iface.as_deref());
    bind!(stmt, o + 18, ev.dst_iface.as_deref());
    sticky.bind(stmt, o + 19, Some(ev.direction.as_str()))?;
    sticky.bind(stmt, o + 20, Some(days.day(open_ts.floor() as i64, ev.ts)))?;
    bind!(stmt, o + 21, open_ts);
    bind!(stmt, o + 22, (ev.found_at_start || missed_open) as i64);
    sticky.bind(stmt, o + 23, Some(row.state.name()))?;
    sticky.bind(stmt, o + 24, Some(row.state.flag().encode_utf8(&mut flag)))?;
    bind!(stmt, o + 25, row.mark);
    bind!(stmt, o + 26, row.zone);
    bind!(stmt, o + 27, row.kstart);
    if row.updated {
        let a = &row.anomalies;
        bind!(stmt, 28, row.close_ts);
        bind!(stmt, 29, row.duration);
        for (i, c) in row.counters.iter().enumerate() {
            bind!(stmt, 30 + i, *c);
        }
        bind!(stmt, 36, row.conn_state);
        bind!(stmt, 37, row.history);
        bind!(stmt, 38, a.retransmits);
        bind!(stmt, 39, a.syn_retransmits);
        bind!(stmt, 40, a.resets);
        bind!(stmt, 41, a.long_delays);
        bind!(stmt, 42, a.fragments);
        bind!(stmt, 43, a.long_connect as i64);
        bind!(stmt, 44, row.kstop);
    }
    Ok(())
}

fn update_row(
    stmt: &mut rusqlite::CachedStatement<'_>,
    sticky: &mut Sticky,
    ev: &ConnEvent,
    row: i64,
) -> rusqlite::Result<()> {
    let a = &ev.anomalies;
    let mut flag = [0u8; 4];
    bind!(stmt, 1, row);
    bind!(
        stmt,
        2,
        (ev.kind == EventKind::Close).then(|| epoch_secs(ev.ts))
    );
    sticky.bind(stmt, 3, Some(ev.state.name()))?;
    sticky.bind(stmt, 4, Some(ev.state.flag().encode_utf8(&mut flag)))?;
    bind!(stmt, 5, ev.duration);
    for (i, c) in counter_values(ev).into_iter().enumerate() {
        bind!(stmt, 6 + i, c);
    }
    bind!(stmt, 12, ev.zeek_state.map(ZeekState::as_str));
    bind!(stmt, 13, ev.history.as_deref());
    bind!(stmt, 14, a.retransmits);
    bind!(stmt, 15, a.syn_retransmits);
    bind!(stmt, 16, a.resets);
    bind!(stmt, 17, a.long_delays);
    bind!(stmt, 18, a.fragments);
    bind!(stmt, 19, a.long_connect as i64);
    bind!(stmt, 20, ev.mark);
    bind!(stmt, 21, ev.zone);
    bind!(stmt, 22, ev.kernel_start.map(epoch_secs));
    bind!(stmt, 23, ev.kernel_stop.map(epoch_secs));
    bind!(stmt, 24, ev.uid.as_deref());
    stmt.raw_execute().map(drop)
}

/// The schema version of an existing database file, if it has one.
pub fn schema_version(path: &Path) -> Option<i64> {
    let conn =
        Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY).ok()?;
    conn.query_row("PRAGMA user_version", [], |r| r.get(0))
        .optional()
        .ok()
        .flatten()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{Counters, FlowTuple, Source, TcpState};
    use chrono::TimeZone;

    fn tmpdir(name: &str) -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!("shared-store-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    fn ev(kind: EventKind, secs: i64, id: u64) -> ConnEvent {
        let mut e = ConnEvent::new(
            kind,
            Utc.timestamp_opt(1_700_000_000 + secs, 0).unwrap(),
            Source::Conntrack,
            id,
            6,
            FlowTuple::new(
                "10.0.0.1".parse().unwrap(),
                "10.0.0.2".parse().unwrap(),
                Some(1000 + id as u16),
                Some(80),
            ),
        );
        e.state = ConnState::Tcp(TcpState::Established);
        e
    }

    #[test]
    fn open_update_close_is_one_row() {
        let d = tmpdir("rows");
        let path = d.join("h.db");
        let mut s = Store::open(&path).unwrap();
        s.start_run(Utc::now(), "conntrack", "test").unwrap();
        let mut close = ev(EventKind::Close, 10, 1);
        close.duration = Some(10.0);
        close.state = ConnState::Tcp(TcpState::TimeWait);
        close.counters = Some(Counters {
            orig_pkts: 5,
            orig_ip_bytes: 400,
            resp_pkts: 4,
            resp_ip_bytes: 3000,
            ..Default::default()
        });
        // Open and update in one batch, close in the next.
        s.write_batch(&[ev(EventKind::Open, 0, 1), ev(EventKind::Update, 5, 1)])
            .unwrap();
        assert_eq!(s.open_count(), 1);
        s.write_batch(&[close]).unwrap();
        assert_eq!(s.open_count(), 0);
        let (n, dur, state, bytes, found): (i64, f64, String, i64, i64) = s
            .connection()
            .query_row(
                "SELECT count(*), duration, last_state, resp_ip_bytes, found_at_start
                 FROM connections",
                [],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)),
            )
            .unwrap();
        assert_eq!(
            (n, dur, state.as_str(), bytes, found),
            (1, 10.0, "TIME_WAIT", 3000, 0)
        );
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o640);
    }

    #[test]
    fn close_without_open_is_marked_found() {
        let d = tmpdir("found");
        let mut s = Store::open(&d.join("h.db")).unwrap();
        let mut c = ev(EventKind::Close, 100, 7);
        c.duration = Some(40.0);
        s.write_batch(&[c]).unwrap();
        let (open_ts, found): (f64, i64) = s
            .connection()
            .query_row("SELECT open_ts, found_at_start FROM connections", [], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .unwrap();
        assert_eq!((open_ts, found), (1_700_000_060.0, 1));
    }

    #[test]
    fn symlinks_at_the_database_or_its_side_files_are_refused() {
        let d = tmpdir("symlink");
        // A dangling link: SQLite alone would create its target.
        let target = d.join("elsewhere.db");
        let link = d.join("h.db");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        let e = Store::open(&link).err().unwrap().to_string();
        assert!(
            e.contains("h.db: cannot open database: is a symbolic link"),
            "{e}"
        );
        assert!(!target.exists());
        // Followed when asked to.
        let follow = Policy {
            follow_symlinks: true,
            owner: None,
        };
        drop(Store::open_with(&link, &follow).unwrap());
        assert!(target.exists());
        // A planted -wal next to a real database.
        let db = d.join("real.db");
        let victim = d.join("victim");
        std::fs::write(&victim, "keep").unwrap();
        std::os::unix::fs::symlink(&victim, d.join("real.db-wal")).unwrap();
        let e = Store::open(&db).err().unwrap().to_string();
        assert!(
            e.contains("real.db-wal: cannot open database: is a symbolic link"),
            "{e}"
        );
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "keep");
        // A link in the directory part is resolved, not refused.
        let sub = d.join("sub");
        std::fs::create_dir(&sub).unwrap();
        std::os::unix::fs::symlink(&sub, d.join("via")).unwrap();
        drop(Store::open(&d.join("via/h.db")).unwrap());
        assert!(sub.join("h.db").is_file());
    }

    #[test]
    fn refuses_other_schema_and_foreign_db() {
        let d = tmpdir("schema");
        let p = d.join("old.db");
        Connection::open(&p)
            .unwrap()
            .execute_batch("PRAGMA user_version = 99")
            .unwrap();
        let e = Store::open(&p).err().unwrap().to_string();
        assert!(e.contains("schema version 99"), "{e}");
        let q = d.join("foreign.db");
        Connection::open(&q)
            .unwrap()
            .execute_batch("CREATE TABLE t(x)")
            .unwrap();
        let e = Store::open(&q).err().unwrap().to_string();
        assert!(e.contains("not an ipclog database"), "{e}");
    }

    #[test]
    fn locked_db_is_an_error_at_open() {
        let d = tmpdir("lock");
        let p = d.join("h.db");
        drop(Store::open(&p).unwrap());
        let holder = Connection::open(&p).unwrap();
        holder.execute_batch("BEGIN EXCLUSIVE").unwrap();
        let e = Store::open(&p).err().unwrap();
        assert!(matches!(e, StoreError::Locked(_)), "{e}");
    }

    /// Every column of every row but `id`, as text, in row order.
    fn dump(s: &Store) -> Vec<String> {
        let conn = s.connection();
        let mut stmt = conn
            .prepare("SELECT * FROM connections ORDER BY id")
            .unwrap();
        let n = stmt.column_count();
        let mut rows = stmt.query([]).unwrap();
        let mut out = Vec::new();
        while let Some(r) = rows.next().unwrap() {
            let cols: Vec<String> = (1..n)
                .map(|i| format!("{:?}", r.get_ref(i).unwrap()))
                .collect();
            out.push(cols.join("|"));
        }
        out
    }

    /// A varied life: NAT, interfaces, IPv6, packet-tracker fields, counters, anomalies,
    /// kernel times, and a close whose open the logger missed.
    fn varied_events() -> Vec<ConnEvent> {
        let mut out = Vec::new();
        let mut a = ev(EventKind::Open, 0, 1);
        a.reply = Some(FlowTuple::new(
            "192.168.1.9".parse().unwrap(),
            "203.0.113.200".parse().unwrap(),
            Some(8080),
            Some(40000),
        ));
        a.src_iface = Some("eth0".into());
        a.direction = crate::event::Direction::Outgoing;
        a.mark = Some(7);
        a.kernel_start = Some(Utc.timestamp_opt(1_700_000_000, 5).unwrap());
        a.state = ConnState::Tcp(TcpState::SynSent);
        out.push(a.clone());
        let mut u = a.clone();
        u.kind = EventKind::Update;
        u.ts = Utc.timestamp_opt(1_700_000_001, 0).unwrap();
        u.state = ConnState::Tcp(TcpState::Established);
        u.duration = Some(1.0);
        u.uid = Some("Cabc".into());
        u.history = Some("ShAD".into());
        u.zeek_state = Some(ZeekState::S1);
        u.mark = None;
        u.counters = Some(Counters {
            orig_pkts: 3,
            orig_ip_bytes: 180,
            resp_pkts: 2,
            resp_ip_bytes: 120,
            orig_bytes: Some(10),
            resp_bytes: None,
        });
        u.anomalies.retransmits = 2;
        out.push(u.clone());
        let mut c = u.clone();
        c.kind = EventKind::Close;
        c.ts = Utc.timestamp_opt(1_700_000_003, 500_000_000).unwrap();
        c.state = ConnState::Tcp(TcpState::TimeWait);
        c.duration = Some(3.5);
        c.history = None;
        c.zeek_state = None;
        c.counters = Some(Counters {
            orig_pkts: 9,
            orig_ip_bytes: 900,
            resp_pkts: 8,
            resp_ip_bytes: 8000,
            orig_bytes: None,
            resp_bytes: Some(7000),
        });
        c.anomalies.retransmits = 3;
        c.anomalies.long_connect = true;
        c.kernel_stop = Some(Utc.timestamp_opt(1_700_000_003, 0).unwrap());
        out.push(c);
        // IPv6, opened and left open.
        let mut v6 = ev(EventKind::Open, 2, 2);
        v6.proto = 17;
        v6.orig = FlowTuple::new(
            "2001:db8::1".parse().unwrap(),
            "::ffff:10.0.0.9".parse().unwrap(),
            Some(5353),
            Some(53),
        );
        v6.state = ConnState::Unreplied;
        out.push(v6.clone());
        let mut v6u = v6;
        v6u.kind = EventKind::Update;
        v6u.state = ConnState::Replied;
        out.push(v6u);
        // Closed without an open seen.
        let mut m = ev(EventKind::Close, 4, 3);
        m.duration = Some(30.0);
        m.zone = Some(4);
        out.push(m);
        // Opened only.
        out.push(ev(EventKind::Open, 5, 4));
        // Three days later, incoming to a local interface, closed in the same batch.
        let mut late = ev(EventKind::Open, 3 * 86_400, 6);
        late.dst_iface = Some("lo".into());
        late.direction = crate::event::Direction::Incoming;
        late.state = ConnState::Tcp(TcpState::SynRecv);
        out.push(late.clone());
        late.kind = EventKind::Close;
        late.state = ConnState::Tcp(TcpState::Close);
        late.duration = Some(0.5);
        out.push(late);
        out
    }

    #[test]
    fn one_batch_writes_what_event_by_event_writes() {
        let d = tmpdir("coalesce");
        let evs = varied_events();
        let mut one = Store::open(&d.join("one.db")).unwrap();
        one.start_run(Utc::now(), "conntrack", "t").unwrap();
        one.write_batch(&evs).unwrap();
        let mut each = Store::open(&d.join("each.db")).unwrap();
        each.start_run(Utc::now(), "conntrack", "t").unwrap();
        for e in &evs {
            each.write_batch(std::slice::from_ref(e)).unwrap();
        }
        let (a, b) = (dump(&one), dump(&each));
        assert_eq!(a.len(), 5);
        assert_eq!(a, b);
        assert_eq!((one.open_count(), each.open_count()), (2, 2));
        // The coalesced row is the closed connection with the close's values.
        let (state, flag, close_ts, resp_bytes, orig_bytes, history, retrans, long_conn): (
            String,
            String,
            f64,
            i64,
            i64,
            String,
            i64,
            i64,
        ) = one
            .connection()
            .query_row(
                "SELECT last_state, flag, close_ts, resp_bytes, orig_bytes, history, retrans,
                        long_conn FROM connections WHERE conn_id = 1",
                [],
                |r| {
                    Ok((
                        r.get(0)?,
                        r.get(1)?,
                        r.get(2)?,
                        r.get(3)?,
                        r.get(4)?,
                        r.get(5)?,
                        r.get(6)?,
                        r.get(7)?,
                    ))
                },
            )
            .unwrap();
        assert_eq!(
            (
                state.as_str(),
                flag.as_str(),
                close_ts,
                resp_bytes,
                orig_bytes
            ),
            ("TIME_WAIT", "t", 1_700_000_003.5, 7000, 10)
        );
        assert_eq!((history.as_str(), retrans, long_conn), ("ShAD", 3, 1));
        let shown: Vec<(String, String, String)> = one
            .connection()
            .prepare("SELECT src, dst, day FROM connections ORDER BY id")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .unwrap()
            .map(Result::unwrap)
            .collect();
        let day = |secs: i64| {
            Utc.timestamp_opt(1_700_000_000 + secs, 0)
                .unwrap()
                .with_timezone(&Local)
                .format("%Y-%m-%d")
                .to_string()
        };
        let own = |a: &str, b: &str, d: String| (a.to_string(), b.to_string(), d);
        assert_eq!(
            shown,
            [
                own("eth0", "192.168.1.9", day(0)),
                own("2001:db8::1", "::ffff:10.0.0.9", day(2)),
                own("10.0.0.1", "10.0.0.2", day(-26)),
                own("10.0.0.1", "10.0.0.2", day(5)),
                own("10.0.0.1", "lo", day(3 * 86_400)),
            ]
        );
        // A later batch still finds the rows left open.
        let mut close = ev(EventKind::Close, 9, 4);
        close.duration = Some(4.0);
        one.write_batch(&[close]).unwrap();
        assert_eq!(one.open_count(), 1);
        let n: i64 = one
            .connection()
            .query_row("SELECT count(*) FROM connections", [], |r| r.get(0))
            .unwrap();
        assert_eq!(n, 5);
    }

    #[test]
    fn close_and_reopen_of_one_key_in_a_batch_leaves_the_new_row_open() {
        let d = tmpdir("reopen");
        let mut s = Store::open(&d.join("h.db")).unwrap();
        s.write_batch(&[ev(EventKind::Open, 0, 5)]).unwrap();
        s.write_batch(&[ev(EventKind::Close, 1, 5), ev(EventKind::Open, 2, 5)])
            .unwrap();
        assert_eq!(s.open_count(), 1);
        s.write_batch(&[ev(EventKind::Close, 3, 5)]).unwrap();
        assert_eq!(s.open_count(), 0);
        let open: i64 = s
            .connection()
            .query_row(
                "SELECT count(*) FROM connections WHERE close_ts IS NULL",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(open, 0);
    }

    #[test]
    fn failed_batch_leaves_the_open_rows_as_they_were() {
        let d = tmpdir("fail");
        let p = d.join("h.db");
        let mut s = Store::open(&p).unwrap();
        s.write_batch(&[ev(EventKind::Open, 0, 1)]).unwrap();
        let holder = Connection::open(&p).unwrap();
        holder.busy_timeout(Duration::from_millis(0)).unwrap();
        holder.execute_batch("BEGIN IMMEDIATE").unwrap();
        s.connection()
            .busy_timeout(Duration::from_millis(0))
            .unwrap();
        let batch = [ev(EventKind::Close, 1, 1), ev(EventKind::Open, 1, 2)];
        assert!(s.write_batch(&batch).is_err());
        assert_eq!(s.open_count(), 1);
        holder.execute_batch("ROLLBACK").unwrap();
        s.write_batch(&batch).unwrap();
        assert_eq!(s.open_count(), 1);
        let rows: i64 = s
            .connection()
            .query_row("SELECT count(*) FROM connections", [], |r| r.get(0))
            .unwrap();
        assert_eq!(rows, 2);
    }

    #[test]
    fn address_text_is_display() {
        for a in [
            "0.0.0.0",
            "255.255.255.255",
            "10.0.100.9",
            "1.20.199.7",
            "::",
            "2001:db8::1",
            "::ffff:10.0.0.9",
            "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
            "fe80::1:2:3:4",
        ] {
            let ip: IpAddr = a.parse().unwrap();
            assert_eq!(AddrText::new(ip).as_str(), ip.to_string());
        }
    }

    #[test]
    fn day_cache_follows_the_second() {
        let mut c = DayCache::default();
        let now = Utc::now();
        for sec in [
            0i64,
            86_399,
            86_400,
            1_700_000_000,
            1_700_000_000,
            1_700_050_000,
        ] {
            let want = DateTime::<Utc>::from_timestamp(sec, 0)
                .unwrap()
                .with_timezone(&Local)
                .format("%Y-%m-%d")
                .to_string();
            assert_eq!(c.day(sec, now), want, "{sec}");
        }
    }

    #[test]
    fn many_opens_in_one_batch_are_each_closed_on_their_own_row() {
        let d = tmpdir("many");
        let mut s = Store::open(&d.join("h.db")).unwrap();
        // 21 opens, one of them updated (rows 1-5 one by one, then two statements of 8), closed
        // in the next batch with a duration that names the connection.
        let mut opens: Vec<ConnEvent> = (1..=21).map(|i| ev(EventKind::Open, 0, i)).collect();
        opens.insert(19, ev(EventKind::Update, 0, 5));
        s.write_batch(&opens).unwrap();
        assert_eq!(s.open_count(), 21);
        let closes: Vec<ConnEvent> = (1..=21)
            .rev()
            .map(|i| {
                let mut c = ev(EventKind::Close, 50, i);
                c.duration = Some(i as f64);
                c
            })
            .collect();
        s.write_batch(&closes).unwrap();
        assert_eq!(s.open_count(), 0);
        let wrong: i64 = s
            .connection()
            .query_row(
                "SELECT count(*) FROM connections
                 WHERE duration IS NOT conn_id OR close_ts IS NULL OR found_at_start != 0
                    OR orig_p != 1000 + conn_id",
                [],
                |r| r.get(0),
            )
            .unwrap();
        let n: i64 = s
            .connection()
            .query_row("SELECT count(*) FROM connections", [], |r| r.get(0))
            .unwrap();
        assert_eq!((n, wrong), (21, 0));
        assert!(insert_many_sql().contains("?216"), "{}", insert_many_sql());
    }

    #[test]
    fn batch_of_thousands_is_fast_enough_to_not_matter() {
        let d = tmpdir("batch");
        let mut s = Store::open(&d.join("h.db")).unwrap();
        let evs: Vec<ConnEvent> = (0..2000).map(|i| ev(EventKind::Open, 0, i)).collect();
        s.write_batch(&evs).unwrap();
        assert_eq!(s.open_count(), 2000);
        let n: i64 = s
            .connection()
            .query_row("SELECT count(*) FROM connections", [], |r| r.get(0))
            .unwrap();
        assert_eq!(n, 2000);
    }
}
