//! `constat query` over the SQLite history and over line logs, driven through the real binary:
//! each option selects what it says, the three formats, the exit status when nothing matches,
//! hostile values kept harmless, and the statement it runs uses the history's indexes
//! (EXPLAIN QUERY PLAN). Own test binary: TZ=UTC for the whole process, as the store's `day`
//! is local time.

use std::path::Path;

use e2e::constat::{err, out, s, Env};

/// (open "YYYY-MM-DD HH:MM:SS" UTC, duration or None = open, proto, orig_h, orig_p, resp_h,
/// resp_p, conn_state, uid, retrans)
type Row = (
    &'static str,
    Option<f64>,
    u8,
    &'static str,
    u16,
    &'static str,
    u16,
    &'static str,
    &'static str,
    i64,
);

const ROWS: [Row; 6] = [
    (
        "2004-08-03 09:00:00",
        Some(5.0),
        6,
        "10.0.0.1",
        40000,
        "203.0.113.9",
        443,
        "SF",
        "CAAA",
        0,
    ),
    (
        "2004-08-05 10:00:00",
        Some(2.0),
        6,
        "10.0.0.1",
        40001,
        "203.0.113.9",
        22,
        "REJ",
        "CBBB",
        0,
    ),
    (
        "2004-08-05 11:00:00",
        Some(9.0),
        6,
        "10.0.0.2",
        40002,
        "198.51.100.7",
        443,
        "SF",
        "CCCC",
        3,
    ),
    (
        "2004-08-05 12:00:00",
        None,
        17,
        "10.0.0.3",
        5353,
        "203.0.113.9",
        53,
        "S0",
        "CDDD",
        0,
    ),
    (
        "2004-08-06 08:00:00",
        Some(1.0),
        6,
        "203.0.113.9",
        5555,
        "10.0.0.1",
        25,
        "SF",
        "CEEE",
        0,
    ),
    (
        "2004-08-07 08:00:00",
        Some(1.0),
        6,
        "10.0.0.4",
        40003,
        "198.51.100.8",
        80,
        "S0",
        "=cmd|x",
        0,
    ),
];

fn epoch(t: &str) -> f64 {
    chrono::NaiveDateTime::parse_from_str(t, "%Y-%m-%d %H:%M:%S")
        .unwrap()
        .and_utc()
        .timestamp() as f64
}

/// A history with ipclog's schema (made by the store) and these rows.
fn history(path: &Path) {
    std::env::set_var("TZ", "UTC");
    drop(store::Store::open(path).expect("create the history"));
    let c = rusqlite::Connection::open(path).unwrap();
    c.execute(
        "INSERT INTO runs (id, started, source, command) VALUES (1, 0, 'conntrack', 'ipclog')",
        [],
    )
    .unwrap();
    for (i, (open, dur, proto, oh, op, rh, rp, state, uid, retrans)) in ROWS.iter().enumerate() {
        let o = epoch(open);
        c.execute(
            "INSERT INTO connections (run_id, source, conn_id, uid, proto, orig_h, orig_p, resp_h, \
             resp_p, src, dst, dport, direction, day, open_ts, close_ts, last_state, flag, \
             duration, conn_state, orig_ip_bytes, resp_ip_bytes, retrans) \
             VALUES (1, 'conntrack', ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?4, ?6, ?7, 'out', ?8, ?9, ?10, \
             'TIME_WAIT', 't', ?11, ?12, 100, 200, ?13)",
            rusqlite::params![
                i as i64,
                uid,
                proto,
                oh,
                op,
                rh,
                rp,
                &open[..10],
                o,
                dur.map(|d| o + d),
                dur,
                state,
                retrans
            ],
        )
        .unwrap();
    }
}

fn uids(text: &str) -> Vec<String> {
    text.lines()
        .filter_map(|l| l.split_whitespace().find_map(|t| t.strip_prefix("uid=")))
        .map(str::to_string)
        .collect()
}

#[test]
fn query_the_history_by_host_day_port_state_and_anomaly() {
    let e = Env::new("query-db");
    let db = e.path("history.db");
    history(&db);
    let q = |args: &[&str]| {
        let mut a = vec!["query", "-f", s(&db)];
        a.extend_from_slice(args);
        e.run(&a)
    };
    // "Who talked to 203.0.113.9 on the 5th?"
    let o = q(&[
        "--host",
        "203.0.113.9",
        "--from",
        "2004-08-05",
        "--to",
        "2004-08-05",
    ]);
    assert!(o.status.success(), "{o:?}");
    assert_eq!(uids(&out(&o)), ["CBBB", "CDDD"], "{}", out(&o));
    let text = out(&o);
    let lines: Vec<&str> = text.lines().collect();
    assert!(
        lines[0].starts_with("C 2004-08-05-10:00:02 tcp  10.0.0.1        203.0.113.9     40001 22    t      2 uid=CBBB conn_state=REJ"),
        "{}",
        lines[0]
    );
    assert!(
        lines[1].starts_with("O 2004-08-05-12:00:00 udp  10.0.0.3"),
        "{}",
        lines[1]
    );
    // Either end, any day.
    let o = q(&["--host", "203.0.113.9"]);
    assert_eq!(uids(&out(&o)), ["CAAA", "CBBB", "CDDD", "CEEE"]);
    // A network.
    let o = q(&["--host", "198.51.100.0/24"]);
    assert_eq!(uids(&out(&o)), ["CCCC", "=cmd|x"]);
    assert_eq!(uids(&out(&q(&["--port", "443"]))), ["CAAA", "CCCC"]);
    assert_eq!(uids(&out(&q(&["--proto", "udp"]))), ["CDDD"]);
    assert_eq!(uids(&out(&q(&["--state", "S0"]))), ["CDDD", "=cmd|x"]);
    assert_eq!(uids(&out(&q(&["--anomaly", "retrans"]))), ["CCCC"]);
    assert_eq!(uids(&out(&q(&["--anomaly", "refused"]))), ["CBBB"]);
    assert_eq!(
        uids(&out(&q(&["--from", "2004-08-06"]))),
        ["CEEE", "=cmd|x"]
    );
    assert_eq!(
        uids(&out(&q(&[
            "--host",
            "10.0.0.1",
            "--port",
            "25",
            "--to",
            "2004-08-06"
        ]))),
        ["CEEE"]
    );
    // Nothing matched: exit 3, nothing printed.
    let o = q(&["--host", "192.0.2.1"]);
    assert_eq!(o.status.code(), Some(3), "{o:?}");
    assert!(o.stdout.is_empty());
    // Bad usage.
    for bad in [
        &["--from", "2004-08-07", "--to", "2004-08-01"][..],
        &["--anomaly", "bogus"],
        &["--host", "1.2.3.4/40"],
        &["--port", "x"],
    ] {
        let o = q(bad);
        assert_eq!(o.status.code(), Some(2), "{bad:?}: {o:?}");
    }
    // A hostile value is a value, not SQL.
    let o = q(&["--state", "S0' OR '1'='1"]);
    assert_eq!(o.status.code(), Some(3), "{o:?}");
}

#[test]
fn query_formats_csv_and_json() {
    let e = Env::new("query-fmt");
    let db = e.path("history.db");
    history(&db);
    let o = e.run(&[
        "query",
        "-f",
        s(&db),
        "--host",
        "198.51.100.0/24",
        "--format",
        "csv",
    ]);
    assert!(o.status.success(), "{o:?}");
    let text = out(&o);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines[0],
        "open,close,uid,prot,src,sport,dst,dport,flag,conn_state,duration,orig_ip_bytes,\
         resp_ip_bytes,retrans,syn_retrans,rst,long_delay,frag,long_conn,kind,time"
    );
    assert_eq!(
        lines[1],
        "2004-08-05-11:00:00,2004-08-05-11:00:09,CCCC,tcp,10.0.0.2,40002,198.51.100.7,443,t,SF,\
         9,100,200,3,0,0,0,0,0,C,2004-08-05-11:00:09"
    );
    assert!(lines[2].contains(",\"'=cmd|x\",tcp,"), "{}", lines[2]);
    let o = e.run(&["query", "-f", s(&db), "--port", "53", "--format", "json"]);
    let v: serde_json::Value = serde_json::from_str(out(&o).trim()).unwrap();
    assert_eq!(v["uid"], "CDDD");
    assert_eq!(v["close"], serde_json::Value::Null);
    assert_eq!(v["kind"], "O");
    assert_eq!(v["sport"], 5353);
    assert_eq!(v["orig_ip_bytes"], 100);
}

#[test]
fn query_uses_the_indexes() {
    let e = Env::new("query-plan");
    let db = e.path("history.db");
    history(&db);
    let c = rusqlite::Connection::open(&db).unwrap();
    let plan = |args: &[&str]| -> String {
        // The statement constat prints with -v --explain for these options.
        let mut a = vec!["query", "-f", s(&db), "--explain"];
        a.extend_from_slice(args);
        let o = e.run(&a);
        assert!(o.status.success(), "{o:?}");
        let _ = &c;
        out(&o)
    };
    let p = plan(&[
        "--host",
        "203.0.113.9",
        "--from",
        "2004-08-01",
        "--to",
        "2004-08-31",
    ]);
    assert!(
        p.contains("connections_orig_h") && p.contains("connections_resp_h"),
        "{p}"
    );
    assert!(!p.contains("SCAN connections"), "a full scan: {p}");
    let p = plan(&["--from", "2004-08-05", "--to", "2004-08-05"]);
    assert!(p.contains("connections_day"), "{p}");
    assert!(!p.contains("SCAN connections"), "{p}");
}

#[test]
fn query_a_log_prints_the_matching_lines() {
    let e = Env::new("query-log");
    let log = e.write(
        "ipclog.log",
        "\
O 2004-08-05-10:00:00 tcp 10.0.0.1 203.0.113.9 1000 22 e -
O 2004-08-05-10:00:01 tcp 10.0.0.1 192.0.2.5 1001 22 e -
C 2004-08-05-10:00:05 tcp 10.0.0.1 203.0.113.9 1000 22 t 5 uid=CX conn_state=REJ
O 2004-08-05-11:00:00 udp 10.0.0.2 203.0.113.9 53 53 e -
",
    );
    let gz = e.write_gz("old.gz", &["O 2004-08-04-09:00:00 tcp 10.0.0.9 203.0.113.9 7 80 e -\nC 2004-08-04-09:00:09 tcp 10.0.0.9 203.0.113.9 7 80 t 9\n"]);
    let o = e.run(&[
        "query",
        "-f",
        s(&gz),
        "-f",
        s(&log),
        "--host",
        "203.0.113.9",
    ]);
    assert!(o.status.success(), "{o:?}");
    let lines: Vec<String> = out(&o)
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect();
    assert_eq!(
        lines,
        [
            "C 2004-08-04-09:00:09 tcp 10.0.0.9 203.0.113.9 7 80 t 9",
            "C 2004-08-05-10:00:05 tcp 10.0.0.1 203.0.113.9 1000 22 t 5 uid=CX conn_state=REJ",
            "O 2004-08-05-11:00:00 udp 10.0.0.2 203.0.113.9 53 53 e -",
        ],
        "{}",
        err(&o)
    );
    let o = e.run(&[
        "query",
        "-f",
        s(&log),
        "--anomaly",
        "refused",
        "--format",
        "json",
    ]);
    let v: serde_json::Value = serde_json::from_str(out(&o).trim()).unwrap();
    assert_eq!(v["uid"], "CX");
    let o = e.run(&[
        "query",
        "-f",
        s(&log),
        "--host",
        "203.0.113.9",
        "--from",
        "2004-08-06",
    ]);
    assert_eq!(o.status.code(), Some(3), "{o:?}");
}

#[test]
fn report_from_the_history_filters_and_lists_the_worst() {
    let e = Env::new("query-report");
    let db = e.path("history.db");
    history(&db);
    let o = e.run(&[
        "-f",
        s(&db),
        "-d",
        "2004-08-05",
        "-n",
        "--host",
        "10.0.0.0/30",
        "--no-any",
    ]);
    assert!(o.status.success(), "{o:?}");
    let text = out(&o);
    assert_eq!(
        e2e::report::rows(&text),
        [
            "10.0.0.1 tcp 22 203.0.113.9 1 0 2.0 2",
            "10.0.0.2 tcp 443 198.51.100.7 1 0 9.0 9",
            "10.0.0.3 udp 53 203.0.113.9 1 1 - -",
        ],
        "{text}"
    );
    let worst: Vec<String> = text
        .lines()
        .skip_while(|l| !l.starts_with("worst"))
        .skip(1)
        .take_while(|l| !l.is_empty())
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect();
    assert_eq!(
        worst,
        [
            "refused 1 2004-08-05-10:00:00 CBBB tcp 10.0.0.1 40001 203.0.113.9 22",
            "retransmitting 3 2004-08-05-11:00:00 CCCC tcp 10.0.0.2 40002 198.51.100.7 443",
        ],
        "{text}"
    );
    let o = e.run(&[
        "-f",
        s(&db),
        "--from",
        "2004-08-03",
        "--to",
        "2004-08-07",
        "--format",
        "json",
    ]);
    let v: serde_json::Value = serde_json::from_str(out(&o).trim()).unwrap();
    assert_eq!(v["total"]["n"], 6);
}

#[test]
fn a_history_being_written_is_read_and_a_corrupt_one_is_an_error() {
    let e = Env::new("query-wal");
    let db = e.path("history.db");
    history(&db);
    // ipclog holds a write transaction open (WAL): readers see the committed rows.
    let w = rusqlite::Connection::open(&db).unwrap();
    let mode: String = w
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "wal");
    w.execute_batch("BEGIN IMMEDIATE; UPDATE connections SET uid = 'CHANGED' WHERE uid = 'CAAA';")
        .unwrap();
    let o = e.run(&["query", "-f", s(&db), "--host", "203.0.113.9"]);
    assert!(o.status.success(), "{o:?}");
    assert_eq!(uids(&out(&o)), ["CAAA", "CBBB", "CDDD", "CEEE"]);
    let o = e.run(&["-f", s(&db), "-a", "-n"]);
    assert!(o.status.success(), "{o:?}");
    w.execute_batch("ROLLBACK").unwrap();
    drop(w);

    // A damaged file: a clear error naming it, no panic, no half output.
    let bad = e.path("bad.db");
    let mut bytes = std::fs::read(&db).unwrap();
    let n = bytes.len();
    for b in bytes[100..n].iter_mut() {
        *b = 0x5a;
    }
    std::fs::write(&bad, bytes).unwrap();
    for args in [&["query", "-f", s(&bad)][..], &["-f", s(&bad), "-a"]] {
        let o = e.run(args);
        assert!(matches!(o.status.code(), Some(1 | 2)), "{args:?}: {o:?}");
        assert!(err(&o).contains("bad.db"), "{args:?}: {}", err(&o));
        assert!(out(&o).is_empty(), "{args:?}: {}", out(&o));
    }
}
