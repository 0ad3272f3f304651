//! constat on ipclog's SQLite history: the sample's connections written with the shared
//! `Store` must give the same report as the sample log. Own test binary: it sets TZ=UTC for
//! the whole process, because the store derives each row's `day` from local time.

use std::net::IpAddr;
use std::process::Command;

use e2e::bins::{bin, repo_root, scratch};
use shared::logfmt::parse_epoch;
use shared::{ConnEvent, ConnState, EventKind, FlowTuple, Source, TcpState};
use store::Store;

/// One connection of the seed's sample: (open "HH:MM:SS" on 2004-08-05 UTC, proto, src, src
/// interface, dst, dst interface, sport, dport, final state, duration; None = still open).
type Conn = (
    &'static str,
    u8,
    &'static str,
    Option<&'static str>,
    &'static str,
    Option<&'static str>,
    u16,
    u16,
    ConnState,
    Option<f64>,
);

const TW: ConnState = ConnState::Tcp(TcpState::TimeWait);
const CL: ConnState = ConnState::Tcp(TcpState::Close);

fn conns() -> Vec<Conn> {
    let ppp0 = "217.235.218.69";
    vec![
        (
            "16:41:37",
            17,
            ppp0,
            Some("ppp0"),
            "217.237.151.97",
            None,
            32799,
            53,
            ConnState::Replied,
            Some(0.0),
        ),
        (
            "16:41:37",
            6,
            ppp0,
            Some("ppp0"),
            "212.227.15.145",
            None,
            32786,
            25,
            TW,
            Some(0.0),
        ),
        (
            "16:42:22",
            6,
            "192.168.0.2",
            None,
            "212.227.15.149",
            None,
            1601,
            110,
            TW,
            Some(0.0),
        ),
        (
            "16:43:22",
            6,
            "192.168.0.3",
            None,
            "192.168.0.1",
            Some("eth0"),
            1602,
            22,
            TW,
            Some(25.0),
        ),
        (
            "16:45:27",
            17,
            ppp0,
            Some("ppp0"),
            "217.237.151.97",
            None,
            32799,
            53,
            ConnState::Replied,
            Some(20.0),
        ),
        (
            "16:45:32",
            6,
            ppp0,
            Some("ppp0"),
            "212.227.119.68",
            None,
            32788,
            80,
            TW,
            Some(10.0),
        ),
        (
            "16:45:47",
            6,
            ppp0,
            Some("ppp0"),
            "212.227.119.68",
            None,
            32789,
            80,
            CL,
            Some(0.0),
        ),
        (
            "16:45:47",
            6,
            ppp0,
            Some("ppp0"),
            "212.227.119.68",
            None,
            32790,
            80,
            TW,
            Some(10.4),
        ),
        // Opened the next day and still open: must not show in the 2004-08-05 report.
        (
            "16:00:00",
            6,
            ppp0,
            Some("ppp0"),
            "212.227.15.145",
            None,
            40000,
            25,
            TW,
            None,
        ),
    ]
}

fn epoch(hms: &str, next_day: bool) -> i64 {
    let f: Vec<i64> = hms.split(':').map(|x| x.parse().unwrap()).collect();
    // 2004-08-05 00:00:00 UTC
    1_091_664_000 + if next_day { 86_400 } else { 0 } + f[0] * 3600 + f[1] * 60 + f[2]
}

#[test]
fn sqlite_history_gives_the_same_report_as_the_log() {
    std::env::set_var("TZ", "UTC");
    let dir = scratch("constat-sqlite");
    let db = dir.join("history.db");
    {
        let mut store = Store::open(&db).expect("open store");
        store
            .start_run(parse_epoch("1091716882").unwrap(), "conntrack", "test")
            .unwrap();
        let mut events = Vec::new();
        for (i, c) in conns().into_iter().enumerate() {
            let (hms, proto, src, src_if, dst, dst_if, sport, dport, state, dur) = c;
            let next_day = dur.is_none();
            let t0 = epoch(hms, next_day);
            let tuple = FlowTuple::new(
                src.parse::<IpAddr>().unwrap(),
                dst.parse::<IpAddr>().unwrap(),
                Some(sport),
                Some(dport),
            );
            let mut open = ConnEvent::new(
                EventKind::Open,
                parse_epoch(&t0.to_string()).unwrap(),
                Source::Conntrack,
                i as u64 + 1,
                proto,
                tuple,
            );
            open.src_iface = src_if.map(str::to_string);
            open.dst_iface = dst_if.map(str::to_string);
            open.state = if proto == 17 {
                ConnState::Unreplied
            } else {
                ConnState::Tcp(TcpState::Established)
            };
            events.push(open.clone());
            if let Some(d) = dur {
                let mut close = open;
                close.kind = EventKind::Close;
                close.ts = parse_epoch(&(t0 + d as i64 + 30).to_string()).unwrap();
                close.state = state;
                close.duration = Some(d);
                events.push(close);
            }
        }
        store.write_batch(&events).expect("write batch");
    }
    let lookup = dir.join("constat.lookup");
    std::fs::write(
        &lookup,
        "192.168.0.2 nat-pc\n212.227.15.149 my-pop-server\n212.227.15.145 my-smtp-server\n\
         217.237.151.97 my-nameserver\n",
    )
    .unwrap();
    let run = |args: &[&str]| {
        let o = Command::new(bin("constat"))
            .args(args)
            .arg("--lookup")
            .arg(&lookup)
            .arg("--cache")
            .arg(dir.join("no-cache"))
            .env("TZ", "UTC")
            .output()
            .unwrap();
        assert!(o.status.success(), "{o:?}");
        assert!(
            o.stderr.is_empty(),
            "{}",
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8(o.stdout).unwrap()
    };
    let got = run(&["-f", db.to_str().unwrap(), "-d", "2004-08-05"]);
    let expected =
        std::fs::read_to_string(repo_root().join("tests/data/constat/sample-2004-08-05.txt"))
            .unwrap();
    assert_eq!(got, expected);

    // The whole history: the next day's open connection shows as nopn.
    let all = run(&["-f", db.to_str().unwrap(), "-a"]);
    let smtp: Vec<&str> = all
        .lines()
        .filter(|l| l.contains("my-smtp-server"))
        .collect();
    assert_eq!(
        smtp.iter()
            .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
            .collect::<Vec<_>>(),
        ["ppp0 tcp smtp my-smtp-server 2 1 0.0 0"],
        "{all}"
    );
}

#[test]
fn a_database_that_is_not_ipclogs_is_refused() {
    let dir = scratch("constat-sqlite-foreign");
    let db = dir.join("other.db");
    let ok = Command::new("sqlite3")
        .arg(&db)
        .arg("CREATE TABLE t(x); INSERT INTO t VALUES (1);")
        .status();
    match ok {
        Ok(s) if s.success() => {}
        _ => {
            println!("SKIP: sqlite3 command not available to make a foreign database");
            return;
        }
    }
    let o = Command::new(bin("constat"))
        .args(["-a", "-nc", "-f", db.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2), "{o:?}");
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(stderr.contains("not an ipclog database"), "{stderr}");
}

#[test]
fn lost_events_of_runs_on_the_day_are_reported() {
    std::env::set_var("TZ", "UTC");
    let dir = scratch("constat-sqlite-lost");
    let db = dir.join("history.db");
    {
        let mut store = Store::open(&db).expect("open store");
        // 2004-08-05 10:00 to 12:00 UTC, 7 events lost.
        store
            .start_run(parse_epoch("1091700000").unwrap(), "conntrack", "test")
            .unwrap();
        store
            .finish_run(None, parse_epoch("1091707200").unwrap(), 0, 7, 0)
            .unwrap();
    }
    let run = |day: &str| {
        let o = Command::new(bin("constat"))
            .args(["-nc", "-f", db.to_str().unwrap(), "-d", day])
            .env("TZ", "UTC")
            .output()
            .unwrap();
        assert!(o.status.success(), "{o:?}");
        String::from_utf8(o.stdout).unwrap()
    };
    assert!(
        run("2004-08-05").contains("\n7 EVENTS LOST by the logger"),
        "{}",
        run("2004-08-05")
    );
    assert!(!run("2004-08-06").contains("LOST"));
}

/// A connection open while ipclog restarted has two rows: the first run's, never closed, and
/// the one the next run wrote when its start-up dump found it (`found_at_start`). constat
/// counts it once, closed by the later row, as it counts the log's `O ... found=start`; a
/// connection found at start that no earlier row has open (another conntrack id) is one of
/// its own.
#[test]
fn a_connection_open_across_a_restart_is_counted_once() {
    std::env::set_var("TZ", "UTC");
    let dir = scratch("constat-sqlite-restart");
    let db = dir.join("history.db");
    let at = |s: i64| parse_epoch(&(1_091_700_000 + s).to_string()).unwrap();
    let tuple = |sport| {
        FlowTuple::new(
            "10.0.0.1".parse().unwrap(),
            "10.0.0.2".parse().unwrap(),
            Some(sport),
            Some(22),
        )
    };
    let ev = |kind, t, id, sport| {
        let mut e = ConnEvent::new(kind, at(t), Source::Conntrack, id, 6, tuple(sport));
        e.state = ConnState::Tcp(TcpState::Established);
        e
    };
    for (run, events) in [
        (
            0,
            vec![
                ev(EventKind::Open, 0, 7, 1000),
                ev(EventKind::Open, 0, 8, 1001),
            ],
        ),
        (100, {
            let mut again = ev(EventKind::Open, 0, 7, 1000);
            again.found_at_start = true;
            let mut close = ev(EventKind::Close, 160, 7, 1000);
            close.state = ConnState::Tcp(TcpState::TimeWait);
            close.duration = Some(160.0);
            // Same tuple as the first run's 1001, another conntrack id: another connection.
            let mut other = ev(EventKind::Open, 90, 9, 1001);
            other.found_at_start = true;
            vec![again, close, other]
        }),
    ] {
        let mut store = Store::open(&db).unwrap();
        store.start_run(at(run), "conntrack", "test").unwrap();
        store.write_batch(&events).unwrap();
    }
    let rows: i64 = store::open_read_only(&db)
        .unwrap()
        .query_row("SELECT count(*) FROM connections", [], |r| r.get(0))
        .unwrap();
    assert_eq!(rows, 4);
    for args in [&["-a"][..], &["-d", "2004-08-05"][..]] {
        let o = Command::new(bin("constat"))
            .args(["-n", "-nc", "-f", db.to_str().unwrap()])
            .args(args)
            .env("TZ", "UTC")
            .output()
            .unwrap();
        assert!(o.status.success(), "{o:?}");
        let report: Vec<String> = String::from_utf8(o.stdout)
            .unwrap()
            .lines()
            .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
            .collect();
        // Three connections: 1000 once (closed, 160 s), 1001 twice (both open).
        assert!(
            report.contains(&"10.0.0.1 tcp 22 10.0.0.2 3 2 160.0 160".to_string()),
            "{args:?}: {report:#?}"
        );
    }
}
