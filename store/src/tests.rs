use std::time::Duration;

use chrono::{DateTime, Local, TimeZone, Utc};
use rusqlite::Connection;
use shared::outfile::Policy;
use shared::{ConnEvent, ConnState, Counters, EventKind, FlowTuple, Source, TcpState, ZeekState};

use crate::bind::DayCache;
use crate::schema::{schema, Statements, INSERT_ROWS, INSERT_WIDTH};
use crate::{Store, StoreError};

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
    a.direction = shared::Direction::Outgoing;
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
    late.direction = shared::Direction::Incoming;
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
    let sql = Statements::get();
    let last = format!("?{}", INSERT_ROWS * INSERT_WIDTH);
    assert!(
        sql.insert_many.ends_with(&format!("{last})")),
        "{}",
        sql.insert_many
    );
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

/// The schema as it was written by hand until the columns were generated from the record's
/// fields: a database created now must be the same as one created then (schema version 2
/// added `pid`, `comm` and `proc_uid` for `--proc`, `tunnel_parents` and `icmp`, at the end).
const SCHEMA_2026_11: &str = "
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
    kstop          REAL,
    pid            INTEGER,
    comm           TEXT,
    proc_uid       INTEGER,
    tunnel_parents TEXT,
    icmp           TEXT,
    http_method    TEXT,
    http_host      TEXT,
    http_uri       TEXT,
    http_status    INTEGER
);
CREATE INDEX IF NOT EXISTS connections_day ON connections(day);
CREATE INDEX IF NOT EXISTS connections_orig_h ON connections(orig_h);
CREATE INDEX IF NOT EXISTS connections_resp_h ON connections(resp_h);
";

#[test]
fn schema_is_the_one_databases_were_created_with() {
    // Version 2 adds the packets table and changes nothing else.
    let v2 = format!("{SCHEMA_2026_11}{}", crate::packets::PACKETS);
    assert_eq!(schema(), v2);
    let d = tmpdir("schema-text");
    drop(Store::open(&d.join("h.db")).unwrap());
    let old = Connection::open(d.join("old.db")).unwrap();
    old.execute_batch(&v2).unwrap();
    let master = |c: &Connection| -> Vec<String> {
        c.prepare("SELECT sql FROM sqlite_master ORDER BY name")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .map(Result::unwrap)
            .collect()
    };
    assert_eq!(
        master(&Connection::open(d.join("h.db")).unwrap()),
        master(&old)
    );
}

#[test]
fn statements_are_generated_once_from_the_fields() {
    let sql = Statements::get();
    // The open's columns, computed ones included; the later ones only in the full INSERT.
    assert!(sql.insert.starts_with(
        "INSERT INTO connections (run_id, source, conn_id, uid, proto, orig_h, orig_p, resp_h, \
         resp_p, reply_src, reply_sport, reply_dst, reply_dport, src, dst, dport, src_iface, \
         dst_iface, direction, day, open_ts, found_at_start, last_state, flag, mark, zone, \
         kstart, pid, comm, proc_uid, tunnel_parents, icmp) VALUES (?1, "
    ));
    assert!(
        sql.insert
            .contains("coalesce(?15, ?6), coalesce(?16, ?10, ?8)"),
        "{}",
        sql.insert
    );
    assert_eq!(INSERT_WIDTH, 30);
    assert!(!sql.insert.contains("close_ts") && sql.insert_full.contains("close_ts"));
    assert!(sql.insert_full.ends_with("?51)"), "{}", sql.insert_full);
    assert!(
        sql.update.contains("duration = coalesce(?"),
        "{}",
        sql.update
    );
    assert!(sql.update.contains(", retrans = ?"), "{}", sql.update);
    assert!(sql.update.ends_with(" WHERE id = ?1"), "{}", sql.update);
    // Every parameter number up to the last is used, and no other.
    for (text, n) in [(&sql.insert_full, 51), (&sql.update, 32)] {
        let mut used: Vec<usize> = text
            .split('?')
            .skip(1)
            .map(|t| {
                t[..t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len())]
                    .parse()
                    .unwrap()
            })
            .collect();
        used.sort();
        used.dedup();
        assert_eq!(used, (1..=n).collect::<Vec<_>>(), "{text}");
    }
}

/// Logged packets get a `packets` row each, with the day and the related connection.
#[test]
fn packets_are_rows_of_their_own() {
    use shared::packet::{Action, PacketConn, PacketEvent};
    let dir = tmpdir("packets");
    let mut s = Store::open(&dir.join("h.db")).unwrap();
    s.start_run(Utc::now(), "nflog", "ipclog --nflog 1")
        .unwrap();
    let p = PacketEvent {
        ts: Utc.timestamp_opt(1_700_000_000, 250_000_000).unwrap(),
        group: 1,
        prefix: "drop-ssh".into(),
        action: Action::Block,
        in_iface: Some("eth0".into()),
        out_iface: None,
        proto: 1,
        src: "10.0.0.2".parse().unwrap(),
        dst: "10.0.0.1".parse().unwrap(),
        sport: None,
        dport: None,
        hdr_len: 20,
        total_len: 56,
        tcp_flags: None,
        icmp: Some((3, 3)),
        mark: None,
        conn: Some(PacketConn {
            state: Some("related-reply"),
            related: true,
            proto: 17,
            src: "10.0.0.1".parse().unwrap(),
            dst: "10.0.0.2".parse().unwrap(),
            sport: Some(4000),
            dport: Some(9),
            id: Some(77),
        }),
    };
    s.write_packets(&[p.clone(), p]).unwrap();
    let row: (i64, String, String, i64, i64, String, i64, String) = s
        .connection()
        .query_row(
            "SELECT count(*), day, action, icmp_type, icmp_code, related, related_id, ct_state \
             FROM packets",
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
    let day = Local
        .timestamp_opt(1_700_000_000, 0)
        .unwrap()
        .format("%Y-%m-%d")
        .to_string();
    assert_eq!(
        row,
        (
            2,
            day,
            "block".into(),
            3,
            3,
            "udp:10.0.0.1,4000->10.0.0.2,9".into(),
            77,
            "related-reply".into()
        )
    );
    let v: i64 = s
        .connection()
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(v, 2);
}

/// The history as version 1 wrote it: version 2 added these columns (and the packets table).
const ADDED_IN_2: &[&str] = &[
    "pid",
    "comm",
    "proc_uid",
    "tunnel_parents",
    "icmp",
    "http_method",
    "http_host",
    "http_uri",
    "http_status",
];

fn version_1_file(path: &std::path::Path) {
    let v1: String = SCHEMA_2026_11
        .lines()
        .filter(|l| {
            let name = l.split_whitespace().next().unwrap_or("");
            !ADDED_IN_2.contains(&name)
        })
        .map(|l| format!("{l}\n"))
        .collect::<String>()
        .replace("kstop          REAL,", "kstop          REAL");
    let c = Connection::open(path).unwrap();
    c.execute_batch(&v1).unwrap();
    c.execute_batch(
        "INSERT INTO runs (started, source, command) VALUES (1700000000, 'conntrack', 'old');
         INSERT INTO connections (run_id, source, conn_id, proto, orig_h, resp_h, src, dst,
             direction, day, open_ts, last_state, flag)
         VALUES (1, 'conntrack', 7, 6, '10.0.0.1', '10.0.0.2', '10.0.0.1', '10.0.0.2',
             'out', '2023-11-14', 1700000000, 'CLOSE', 'C');
         PRAGMA user_version = 1;",
    )
    .unwrap();
}

#[test]
fn a_version_1_history_is_upgraded_in_place_by_the_writer() {
    let d = tmpdir("upgrade");
    let p = d.join("v1.db");
    version_1_file(&p);
    let mut s = Store::open(&p).unwrap();
    s.start_run(Utc::now(), "conntrack", "test").unwrap();
    s.write_batch(&[ev(EventKind::Open, 0, 1)]).unwrap();
    let c = s.connection();
    let version: i64 = c
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(version, crate::SCHEMA_VERSION);
    let rows: i64 = c
        .query_row(
            "SELECT count(*) FROM connections WHERE pid IS NULL",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(rows, 2, "the old row is kept and the new one written");
    let packets: i64 = c
        .query_row("SELECT count(*) FROM packets", [], |r| r.get(0))
        .unwrap();
    assert_eq!(packets, 0);
}

#[test]
fn a_version_1_history_is_read_as_is_without_being_changed() {
    let d = tmpdir("read-v1");
    let p = d.join("v1.db");
    version_1_file(&p);
    let before = std::fs::read(&p).unwrap();
    let c = crate::open_read_only(&p).unwrap();
    let (n, comm): (i64, Option<String>) = c
        .query_row("SELECT count(*), max(comm) FROM connections", [], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .unwrap();
    assert_eq!((n, comm), (1, None));
    let packets: i64 = c
        .query_row("SELECT count(*) FROM packets", [], |r| r.get(0))
        .unwrap();
    assert_eq!(packets, 0);
    drop(c);
    assert_eq!(
        std::fs::read(&p).unwrap(),
        before,
        "the file is not written"
    );
}
