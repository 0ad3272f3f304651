//! The same counting from ipclog's SQLite history: one `connections` row is one connection,
//! already paired, so each row adds to its report row directly (but for a connection open
//! across a restart of the logger, which has two rows; see `scan_db`).

use std::collections::HashMap;
use std::path::Path;

use chrono::NaiveDate;
use rusqlite::types::ValueRef as Value;
use shared::logfmt::MAX_VALUE;
use shared::record::{COMM, ORIG_IP_BYTES, RESP_IP_BYTES};
use shared::text::escaped;

use crate::scan::{notable_scores_of, RowKey, Scan, ANOMALY_KEYS};

/// The first 16 bytes of every SQLite 3 database file.
pub const SQLITE_MAGIC: &[u8; 16] = b"SQLite format 3\0";

/// The columns [`decode`] and [`conn_key`] read, in their order: the anomalies and the byte
/// counters by their record fields' names, then what identifies a connection across runs.
fn columns() -> String {
    format!(
        "id, src, proto, dport, dst, close_ts IS NOT NULL, duration, {}, {}, {}, \
         found_at_start, source, conn_id, orig_h, orig_p, resp_h, resp_p, {}, open_ts, uid, conn_state",
        ANOMALY_KEYS.join(", "),
        ORIG_IP_BYTES.name,
        RESP_IP_BYTES.name,
        COMM.name
    )
}

/// Where `found_at_start` is in [`columns`]; the connection key follows it.
const FOUND_AT: usize = 7 + ANOMALY_KEYS.len() + 2;

/// Where the process name (`--by proc`) is in [`columns`].
const COMM_AT: usize = FOUND_AT + 7;

/// Where the open time (epoch seconds) is in [`columns`].
const OPEN_TS_AT: usize = COMM_AT + 1;

/// Where the uid and the Zeek connection state are in [`columns`].
const UID_AT: usize = OPEN_TS_AT + 1;

/// One connection as the logger knows it: source, conntrack id (or flow number), protocol and
/// original tuple.
type ConnKey = (String, i64, i64, String, Option<i64>, String, Option<i64>);

fn conn_key(row: &rusqlite::Row<'_>) -> rusqlite::Result<ConnKey> {
    let k = FOUND_AT + 1;
    Ok((
        row.get(k)?,
        row.get(k + 1)?,
        row.get(2)?,
        row.get(k + 2)?,
        row.get(k + 3)?,
        row.get(k + 4)?,
        row.get(k + 5)?,
    ))
}

/// Scans the history at `path` into `scan`; `verbose` prints undecodable rows to stderr.
/// Returns a one-line error when the file is not a readable ipclog history.
pub fn scan_db(
    path: &Path,
    range: Option<(NaiveDate, NaiveDate)>,
    scan: &mut Scan,
    verbose: bool,
) -> Result<(), String> {
    let conn = store::open_read_only(path).map_err(|e| e.to_string())?;
    // ipclog may be writing (WAL): wait out its short transactions instead of failing.
    let _ = conn.busy_timeout(std::time::Duration::from_secs(10));
    let shown = escaped(&path.display().to_string()).into_owned();
    let days = range.map(|(a, b)| {
        (
            a.format("%Y-%m-%d").to_string(),
            b.format("%Y-%m-%d").to_string(),
        )
    });
    // In row order: a connection's first row comes before the rows a later run adds for it.
    let sql = match days {
        Some(_) => format!(
            "SELECT {} FROM connections WHERE day BETWEEN ?1 AND ?2 ORDER BY id",
            columns()
        ),
        None => format!("SELECT {} FROM connections ORDER BY id", columns()),
    };
    let mut stmt = conn
        .prepare(&sql)
        .map_err(|e| format!("{shown}: cannot query connections: {e}"))?;
    let mut rows = match &days {
        Some((a, b)) => stmt.query([a, b]),
        None => stmt.query([]),
    }
    .map_err(|e| format!("{shown}: cannot query connections: {e}"))?;
    add_lost(&conn, range, scan, &shown, verbose)
        .map_err(|e| format!("{shown}: reading runs: {e}"))?;
    add_packets(&conn, days.as_ref(), scan, &shown, verbose)
        .map_err(|e| format!("{shown}: reading packets: {e}"))?;
    // Rows not closed (yet), by connection, with the report row they count in. A connection
    // open while the logger restarted has two rows: the earlier run's, never closed, and the
    // one the next run wrote when it found the connection open at its start
    // (`found_at_start`). That is one connection, as the log's `O ... found=start` is: the
    // later row is not counted again, and its close closes the earlier one.
    let mut open: HashMap<ConnKey, RowKey> = HashMap::new();
    loop {
        let row = match rows.next() {
            Ok(Some(r)) => r,
            Ok(None) => break,
            Err(e) => return Err(format!("{shown}: reading connections: {e}")),
        };
        let id: i64 = row.get(0).unwrap_or(-1);
        match decode(row) {
            Ok(d) => {
                let (src, dst) = (scan.interner.host(&d.src), scan.interner.host(&d.dst));
                if !scan
                    .filter
                    .accepts(src, dst, d.proto, d.dport, &scan.interner)
                {
                    continue;
                }
                let key = if scan.by_proc {
                    let comm: Option<String> = row.get(COMM_AT).unwrap_or(None);
                    scan.proc_key(comm.as_deref(), false)
                } else {
                    (src, d.proto, d.dport, dst)
                };
                let conn = if d.found || !d.closed {
                    conn_key(row).ok()
                } else {
                    None
                };
                // Only conntrack finds connections at start; a capture's row with a missed
                // open is a connection of its own.
                let earlier = match &conn {
                    Some(c) if d.found && c.0 == "conntrack" => open.get(c).copied(),
                    _ => None,
                };
                let key = earlier.unwrap_or(key);
                match conn {
                    Some(c) if d.closed => {
                        open.remove(&c);
                    }
                    Some(c) => {
                        open.insert(c, key);
                    }
                    None => {}
                }
                let opened = local_time(row.get_ref(OPEN_TS_AT).ok());
                if earlier.is_none() {
                    if let Some(ts) = opened {
                        scan.count_hour(ts, d.bytes, d.anomalies != 0);
                    }
                }
                if d.closed {
                    let state: Option<String> = row.get(UID_AT + 1).unwrap_or(None);
                    let mut values = [0u64; 6];
                    for (i, v) in values.iter_mut().enumerate() {
                        *v = count(row, 7 + i, ANOMALY_KEYS[i])
                            .ok()
                            .flatten()
                            .unwrap_or(0);
                    }
                    let scores = notable_scores_of(state.as_deref(), &values, d.duration);
                    if let (true, Some(ts)) = (scores.iter().any(|&s| s > 0), opened) {
                        let uid: Option<String> = row.get(UID_AT).unwrap_or(None);
                        let sport = row
                            .get::<_, Option<i64>>(FOUND_AT + 4)
                            .ok()
                            .flatten()
                            .and_then(|p| u16::try_from(p).ok());
                        let nkey = (src, d.proto, d.dport, dst);
                        scan.note(scores, ts, uid.map(Into::into), nkey, sport);
                    }
                }
                let r = scan.row_mut(key);
                if earlier.is_none() {
                    r.n += 1;
                }
                if d.closed {
                    r.close(d.duration, d.anomalies, d.bytes);
                    r.orig_bytes = r.orig_bytes.saturating_add(d.orig_bytes);
                } else {
                    r.add_anomalies(d.anomalies);
                }
            }
            Err(reason) => {
                scan.errors += 1;
                if verbose {
                    eprintln!("{shown}: connections row {id}: {}", escaped(&reason));
                }
            }
        }
    }
    Ok(())
}

/// Counts the `packets` rows (ipclog --nflog) of the days (first and last), per rule, action,
/// source, protocol and destination port.
fn add_packets(
    conn: &rusqlite::Connection,
    days: Option<&(String, String)>,
    scan: &mut Scan,
    shown: &str,
    verbose: bool,
) -> rusqlite::Result<()> {
    const SQL: &str = "SELECT prefix, action, src, proto, dport, count(*) FROM packets";
    const GROUP: &str = " GROUP BY prefix, action, src, proto, dport";
    let mut stmt;
    let mut rows = match days {
        None => {
            stmt = conn.prepare(&format!("{SQL}{GROUP}"))?;
            stmt.query([])?
        }
        Some((a, b)) => {
            stmt = conn.prepare(&format!("{SQL} WHERE day BETWEEN ?1 AND ?2{GROUP}"))?;
            stmt.query([a, b])?
        }
    };
    while let Some(row) = rows.next()? {
        let decoded = (|| -> Result<_, String> {
            // Empty when the rule has none; shown as a field (escaped) by the section.
            let prefix: String = row.get(0).map_err(|e| format!("prefix: {e}"))?;
            let action = match text(row, 1, "action")?.as_str() {
                "block" => shared::packet::Action::Block,
                "pass" => shared::packet::Action::Pass,
                "log" => shared::packet::Action::Log,
                other => return Err(format!("action: unknown {other:?}")),
            };
            let src = text(row, 2, "src")?;
            let proto = match int(row, 3, "proto")? {
                Some(p @ 0..=255) => p as u8,
                other => return Err(format!("proto: {other:?} is not a protocol number")),
            };
            let dport = match int(row, 4, "dport")? {
                None => None,
                Some(p @ 0..=65535) => Some(p as u16),
                Some(p) => return Err(format!("dport: {p} is not a port")),
            };
            let n = count(row, 5, "count")?.unwrap_or(0);
            Ok((prefix, action, src, proto, dport, n))
        })();
        match decoded {
            Ok((prefix, action, src, proto, dport, n)) => {
                scan.packets.add(&prefix, action, &src, proto, dport, n)
            }
            Err(reason) => {
                scan.errors += 1;
                if verbose {
                    eprintln!("{shown}: packets: {}", escaped(&reason));
                }
            }
        }
    }
    Ok(())
}

/// Adds the events the logger runs that overlap the day (all runs for `-a`) lost in the kernel
/// (`lost_events`) or dropped on the way to the database (`dropped`). Summed here, saturating,
/// not by SQL, whose integer sum fails on overflow; a run with a count out of range is a bad
/// row.
fn add_lost(
    conn: &rusqlite::Connection,
    range: Option<(NaiveDate, NaiveDate)>,
    scan: &mut Scan,
    shown: &str,
    verbose: bool,
) -> rusqlite::Result<()> {
    const SQL: &str = "SELECT id, lost_events, dropped, source = 'nflog', errors, \
                       stopped IS NOT NULL FROM runs";
    let mut stmt;
    let mut rows = match range {
        None => {
            stmt = conn.prepare(SQL)?;
            stmt.query([])?
        }
        Some((a, b)) => {
            let (start, end) = (day_bounds(a).0, day_bounds(b).1);
            stmt = conn.prepare(&format!(
                "{SQL} WHERE started < ?2 AND (stopped IS NULL OR stopped >= ?1)"
            ))?;
            stmt.query(rusqlite::params![start, end])?
        }
    };
    while let Some(row) = rows.next()? {
        let id: i64 = row.get(0).unwrap_or(-1);
        let counts = count(row, 1, "lost_events").and_then(|lost| {
            count(row, 2, "dropped")
                .map(|dropped| lost.unwrap_or(0).saturating_add(dropped.unwrap_or(0)))
        });
        match counts {
            Ok(n) => {
                // A packet-filter log's losses are packets (its section says them).
                if row.get::<_, bool>(3).unwrap_or(false) {
                    scan.packets.lost = scan.packets.lost.saturating_add(n);
                } else {
                    scan.lost_events = scan.lost_events.saturating_add(n);
                }
                let h = &mut scan.health;
                h.starts += 1;
                h.stops += u64::from(row.get::<_, bool>(5).unwrap_or(false));
                h.errors = h
                    .errors
                    .saturating_add(count(row, 4, "errors").ok().flatten().unwrap_or(0));
                if n > 0 {
                    h.loss_reports += 1;
                }
            }
            Err(reason) => {
                scan.errors += 1;
                if verbose {
                    eprintln!("{shown}: runs row {id}: {}", escaped(&reason));
                }
            }
        }
    }
    Ok(())
}

/// A count or number of seconds: NULL, or an integer from 0 to [`MAX_VALUE`].
fn count(row: &rusqlite::Row<'_>, i: usize, field: &str) -> Result<Option<u64>, String> {
    match int(row, i, field)? {
        None => Ok(None),
        Some(n) if n >= 0 => Ok(Some(n as u64)),
        Some(n) => Err(format!("{field}: {n} is out of range (0-{MAX_VALUE})")),
    }
}

/// The day's first and last instant, local time, as epoch seconds.
fn day_bounds(d: NaiveDate) -> (f64, f64) {
    use chrono::{Local, TimeZone};
    let at = |nd: NaiveDate| {
        let midnight = nd.and_hms_opt(0, 0, 0).unwrap_or_default();
        Local
            .from_local_datetime(&midnight)
            .earliest()
            .map(|t| t.timestamp() as f64)
            // A day starting in a DST gap: its UTC midnight is close enough for run overlap.
            .unwrap_or_else(|| midnight.and_utc().timestamp() as f64)
    };
    (at(d), at(d.succ_opt().unwrap_or(d)))
}

struct Decoded {
    /// The logger found the connection already open (or missed its open).
    found: bool,
    src: String,
    proto: u8,
    dport: Option<u16>,
    dst: String,
    closed: bool,
    duration: Option<u64>,
    anomalies: u8,
    bytes: u64,
    orig_bytes: u64,
}

/// 2^63 as a float: the reals below it in magnitude convert to i64 exactly.
const I64_BOUND: f64 = 9_223_372_036_854_775_808.0;

fn int(row: &rusqlite::Row<'_>, i: usize, field: &str) -> Result<Option<i64>, String> {
    match row.get_ref(i) {
        Ok(Value::Null) => Ok(None),
        Ok(Value::Integer(n)) => Ok(Some(n)),
        // `as` would saturate: only whole numbers inside i64's range are integers.
        Ok(Value::Real(f)) if f.fract() == 0.0 && (-I64_BOUND..I64_BOUND).contains(&f) => {
            Ok(Some(f as i64))
        }
        Ok(v) => Err(format!("{field}: not an integer: {v:?}")),
        Err(e) => Err(format!("{field}: {e}")),
    }
}

fn text(row: &rusqlite::Row<'_>, i: usize, field: &str) -> Result<String, String> {
    row.get::<_, String>(i)
        .map_err(|e| format!("{field}: {e}"))
        .and_then(|s| {
            if s.is_empty() || s.contains(char::is_whitespace) {
                Err(format!("{field}: not a host or interface: {s:?}"))
            } else {
                Ok(s)
            }
        })
}

fn decode(row: &rusqlite::Row<'_>) -> Result<Decoded, String> {
    let proto = int(row, 2, "proto")?
        .and_then(|p| u8::try_from(p).ok())
        .ok_or("proto: not a protocol number")?;
    let dport = match int(row, 3, "dport")? {
        None => None,
        Some(p) => Some(u16::try_from(p).map_err(|_| format!("dport: not a port: {p}"))?),
    };
    let closed = int(row, 5, "close_ts")?.unwrap_or(0) != 0;
    let duration = match row.get_ref(6) {
        Ok(Value::Null) => None,
        // The same range as the log's time column: beyond it a sum or an average is nonsense.
        Ok(Value::Real(f)) if f >= 0.0 && f.round() < I64_BOUND => Some(f.round() as u64),
        Ok(Value::Integer(n)) if n >= 0 => Some(n as u64),
        Ok(Value::Real(f)) if f > 0.0 => {
            return Err(format!(
                "duration: {f:e} seconds is out of range (at most {MAX_VALUE})"
            ))
        }
        Ok(v) => return Err(format!("duration: not seconds: {v:?}")),
        Err(e) => return Err(format!("duration: {e}")),
    };
    let mut anomalies = 0u8;
    for (i, key) in ANOMALY_KEYS.iter().enumerate() {
        if int(row, 7 + i, key)?.unwrap_or(0) != 0 {
            anomalies |= 1 << i;
        }
    }
    let n = 7 + ANOMALY_KEYS.len();
    let orig_bytes = count(row, n, ORIG_IP_BYTES.name)?.unwrap_or(0);
    let bytes = orig_bytes.saturating_add(count(row, n + 1, RESP_IP_BYTES.name)?.unwrap_or(0));
    Ok(Decoded {
        found: int(row, FOUND_AT, "found_at_start")?.unwrap_or(0) != 0,
        src: text(row, 1, "src")?,
        proto,
        dport,
        dst: text(row, 4, "dst")?,
        closed,
        duration,
        anomalies,
        bytes,
        orig_bytes,
    })
}

/// An epoch time of the history (REAL seconds) as local time.
pub fn local_time(v: Option<Value<'_>>) -> Option<chrono::NaiveDateTime> {
    use chrono::TimeZone;
    let secs = match v? {
        Value::Real(f) if f.is_finite() && f.abs() < 1e15 => f,
        Value::Integer(n) => n as f64,
        _ => return None,
    };
    let t = chrono::Local
        .timestamp_opt(secs.floor() as i64, 0)
        .single()?;
    Some(t.naive_local())
}
