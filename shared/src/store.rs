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
//! ## `runs`
//! `id`, `started`, `stopped` (epoch s, NULL while running or after a crash), `source`,
//! `command`, `errors`, `lost_events`, `dropped`.

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::Path;
use std::time::Duration;

use chrono::{DateTime, Local, Utc};
use rusqlite::{params, Connection, OptionalExtension};

use crate::event::{ConnEvent, ConnState, EventKind, FlowTuple, Source};

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
CREATE INDEX IF NOT EXISTS connections_day ON connections(day, src, proto, dport);
CREATE INDEX IF NOT EXISTS connections_orig_h ON connections(orig_h, day);
CREATE INDEX IF NOT EXISTS connections_resp_h ON connections(resp_h, day);
CREATE INDEX IF NOT EXISTS connections_open ON connections(close_ts) WHERE close_ts IS NULL;
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

/// Identifies a connection among the open ones.
type ConnKey = (Source, u64, u8, FlowTuple);

fn key(ev: &ConnEvent) -> ConnKey {
    (ev.source, ev.conn_id, ev.proto, ev.orig)
}

fn epoch(t: DateTime<Utc>) -> f64 {
    t.timestamp() as f64 + t.timestamp_subsec_nanos() as f64 / 1e9
}

fn state_name(s: ConnState) -> &'static str {
    match s {
        ConnState::Tcp(t) => t.as_str(),
        ConnState::Unreplied => "UNREPLIED",
        ConnState::Replied => "REPLIED",
        ConnState::Other => "OTHER",
    }
}

/// Creates `path` with mode 0640 if it does not exist, so the history is not world-readable.
pub fn create_private(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o640)
        .open(path)
        .map(drop)
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
    /// Row ids of connections still open, so updates touch one row by primary key.
    open_rows: HashMap<ConnKey, i64>,
}

impl Store {
    /// Opens (creating if needed) the history at `path` and checks now, not an hour later, that
    /// it is ours, of this version, and writable.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        let shown = path.display().to_string();
        create_private(path).map_err(|e| StoreError::Open(shown.clone(), e.to_string()))?;
        let conn =
            Connection::open(path).map_err(|e| StoreError::Open(shown.clone(), e.to_string()))?;
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
        conn.execute_batch("PRAGMA synchronous = NORMAL")?;
        conn.execute_batch("BEGIN IMMEDIATE")
            .map_err(|e| lock_or_open(&shown, e))?;
        conn.execute_batch(SCHEMA)?;
        conn.execute_batch(&format!("PRAGMA user_version = {SCHEMA_VERSION}"))?;
        conn.execute_batch("COMMIT")?;
        Ok(Store {
            conn,
            run_id: None,
            open_rows: HashMap::new(),
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
            params![epoch(started), source, command],
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

    /// Records the end of the current run.
    pub fn finish_run(
        &mut self,
        stopped: DateTime<Utc>,
        errors: u64,
        lost: u64,
        dropped: u64,
    ) -> rusqlite::Result<()> {
        self.update_run(errors, lost, dropped)?;
        self.conn
            .execute(
                "UPDATE runs SET stopped = ?1 WHERE id = ?2",
                params![epoch(stopped), self.run_id],
            )
            .map(drop)
    }

    /// Number of connections the store believes open.
    pub fn open_count(&self) -> usize {
        self.open_rows.len()
    }

    /// Writes `events` in one transaction. On error nothing of the batch is written and the
    /// caller may retry the same batch later.
    pub fn write_batch(&mut self, events: &[ConnEvent]) -> rusqlite::Result<()> {
        let tx = self.conn.transaction()?;
        let mut opened: Vec<(ConnKey, i64)> = Vec::new();
        let mut closed: Vec<ConnKey> = Vec::new();
        {
            let mut insert = tx.prepare_cached(INSERT_SQL)?;
            let mut update = tx.prepare_cached(UPDATE_SQL)?;
            // Rows opened earlier in this same batch are not in `open_rows` yet.
            let mut batch_rows: HashMap<ConnKey, i64> = HashMap::new();
            for ev in events {
                let k = key(ev);
                let row = batch_rows
                    .get(&k)
                    .or_else(|| self.open_rows.get(&k))
                    .copied();
                let row = match (ev.kind, row) {
                    (EventKind::Open, _) | (_, None) => {
                        insert_row(&mut insert, ev, self.run_id)?;
                        let id = tx.last_insert_rowid();
                        batch_rows.insert(k, id);
                        opened.push((k, id));
                        id
                    }
                    (_, Some(id)) => id,
                };
                if ev.kind != EventKind::Open {
                    update_row(&mut update, ev, row)?;
                }
                if ev.kind == EventKind::Close {
                    batch_rows.remove(&k);
                    closed.push(k);
                }
            }
        }
        tx.commit()?;
        // Only now that the batch is durable does the in-memory map follow it, so a failed
        // batch can be retried as a whole.
        for (k, id) in opened {
            self.open_rows.insert(k, id);
        }
        for k in closed {
            self.open_rows.remove(&k);
        }
        Ok(())
    }

    /// The underlying connection, for queries.
    pub fn connection(&self) -> &Connection {
        &self.conn
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

const INSERT_SQL: &str = "INSERT INTO connections (
    run_id, source, conn_id, uid, proto, orig_h, orig_p, resp_h, resp_p,
    reply_src, reply_sport, reply_dst, reply_dport, src, dst, dport, src_iface, dst_iface,
    direction, day, open_ts, found_at_start, last_state, flag, mark, zone, kstart)
    VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18,
            ?19, ?20, ?21, ?22, ?23, ?24, ?25, ?26, ?27)";

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

fn shown(iface: &Option<String>, addr: IpAddr) -> String {
    iface.clone().unwrap_or_else(|| addr.to_string())
}

fn insert_row(
    stmt: &mut rusqlite::CachedStatement<'_>,
    ev: &ConnEvent,
    run_id: Option<i64>,
) -> rusqlite::Result<()> {
    // An update or close with no open row: the logger missed the open (started later, or lost
    // events); the open time is then the best estimate and the row is marked as found.
    let missed_open = ev.kind != EventKind::Open;
    let open_ts = match (missed_open, ev.duration) {
        (true, Some(d)) => epoch(ev.ts) - d,
        _ => epoch(ev.ts),
    };
    let open_local = DateTime::<Utc>::from_timestamp(open_ts.floor() as i64, 0)
        .unwrap_or(ev.ts)
        .with_timezone(&Local);
    let r = ev.reply;
    stmt.execute(params![
        run_id,
        ev.source.as_str(),
        ev.conn_id as i64,
        ev.uid,
        ev.proto,
        ev.orig.src.to_string(),
        ev.orig.sport,
        ev.orig.dst.to_string(),
        ev.orig.dport,
        r.map(|r| r.src.to_string()),
        r.and_then(|r| r.sport),
        r.map(|r| r.dst.to_string()),
        r.and_then(|r| r.dport),
        shown(&ev.src_iface, ev.shown_src()),
        shown(&ev.dst_iface, ev.shown_dst()),
        ev.shown_dport(),
        ev.src_iface,
        ev.dst_iface,
        ev.direction.as_str(),
        open_local.format("%Y-%m-%d").to_string(),
        open_ts,
        (ev.found_at_start || missed_open) as i64,
        state_name(ev.state),
        ev.state.flag().to_string(),
        ev.mark,
        ev.zone,
        ev.kernel_start.map(epoch),
    ])
    .map(drop)
}

fn update_row(
    stmt: &mut rusqlite::CachedStatement<'_>,
    ev: &ConnEvent,
    row: i64,
) -> rusqlite::Result<()> {
    let c = ev.counters;
    let a = &ev.anomalies;
    stmt.execute(params![
        row,
        (ev.kind == EventKind::Close).then(|| epoch(ev.ts)),
        state_name(ev.state),
        ev.state.flag().to_string(),
        ev.duration,
        c.map(|c| c.orig_pkts as i64),
        c.map(|c| c.orig_ip_bytes as i64),
        c.map(|c| c.resp_pkts as i64),
        c.map(|c| c.resp_ip_bytes as i64),
        c.and_then(|c| c.orig_bytes).map(|b| b as i64),
        c.and_then(|c| c.resp_bytes).map(|b| b as i64),
        ev.zeek_state,
        ev.history,
        a.retransmits,
        a.syn_retransmits,
        a.resets,
        a.long_delays,
        a.fragments,
        a.long_connect as i64,
        ev.mark,
        ev.zone,
        ev.kernel_start.map(epoch),
        ev.kernel_stop.map(epoch),
        ev.uid,
    ])
    .map(drop)
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
    use crate::event::{Counters, TcpState};
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
