//! constat's days and inputs: -d yesterday/today, --from/--to (one table, or --per-day),
//! several -f read as one log, gzip told by content (multi-member), globs oldest first, and
//! the errors of bad dates, missing files and corrupt gzip.

use chrono::{Duration, Utc};
use e2e::constat::{err, out, s, Env};
use e2e::report::rows;

fn day(offset: i64) -> String {
    (Utc::now().date_naive() + Duration::days(offset))
        .format("%Y-%m-%d")
        .to_string()
}

#[test]
fn yesterday_and_today_are_days() {
    let e = Env::new("dates-rel");
    let (y, t) = (day(-1), day(0));
    let log = e.write(
        "ipclog.log",
        format!(
            "O {y}-10:00:00 tcp 10.0.0.1 10.0.0.2 1000 22 e -\n\
             C {y}-10:00:00 tcp 10.0.0.1 10.0.0.2 1000 22 t 5\n\
             O {t}-00:00:01 udp 10.0.0.1 10.0.0.3 1001 53 e -\n"
        ),
    );
    let o = e.run(&["-f", s(&log), "-d", "yesterday", "-n"]);
    assert!(o.status.success(), "{o:?}");
    assert!(out(&o).starts_with(&format!("scanning for date {y}\n")));
    assert_eq!(rows(&out(&o)), ["10.0.0.1 tcp 22 10.0.0.2 1 0 5.0 5"]);
    let o = e.run(&["-f", s(&log), "-d", "today", "-n"]);
    assert_eq!(rows(&out(&o)), ["10.0.0.1 udp 53 10.0.0.3 1 1 - -"]);
}

const RANGE_LOG: &str = "\
O 2004-08-04-23:59:59 tcp 10.0.0.1 10.0.0.2 1000 22 e -
O 2004-08-05-10:00:00 tcp 10.0.0.1 10.0.0.2 1001 22 e -
C 2004-08-05-10:00:10 tcp 10.0.0.1 10.0.0.2 1001 22 t 10
O 2004-08-06-10:00:00 tcp 10.0.0.1 10.0.0.2 1002 22 e -
C 2004-08-06-10:00:30 tcp 10.0.0.1 10.0.0.2 1002 22 t 30
O 2004-08-07-10:00:00 tcp 10.0.0.1 10.0.0.2 1003 22 e -
";

#[test]
fn from_to_is_one_table_and_per_day_one_each() {
    let e = Env::new("dates-range");
    let log = e.write("ipclog.log", RANGE_LOG);
    let o = e.run(&[
        "-f",
        s(&log),
        "--from",
        "2004-08-05",
        "--to",
        "2004-08-06",
        "-n",
    ]);
    assert!(o.status.success(), "{o:?}");
    let text = out(&o);
    assert!(
        text.starts_with("scanning from 2004-08-05 to 2004-08-06\n"),
        "{text}"
    );
    assert_eq!(rows(&text), ["10.0.0.1 tcp 22 10.0.0.2 2 0 20.0 30"]);

    let o = e.run(&[
        "-f",
        s(&log),
        "--from",
        "2004-08-05",
        "--to",
        "2004-08-06",
        "--per-day",
        "-n",
    ]);
    assert!(o.status.success(), "{o:?}");
    let text = out(&o);
    let parts: Vec<&str> = text.split("scanning for date ").skip(1).collect();
    assert_eq!(parts.len(), 2, "{text}");
    assert!(parts[0].starts_with("2004-08-05"));
    assert_eq!(rows(parts[0]), ["10.0.0.1 tcp 22 10.0.0.2 1 0 10.0 10"]);
    assert_eq!(rows(parts[1]), ["10.0.0.1 tcp 22 10.0.0.2 1 0 30.0 30"]);
}

#[test]
fn bad_ranges_are_usage_errors() {
    let e = Env::new("dates-bad");
    let log = e.write("ipclog.log", RANGE_LOG);
    for args in [
        &["--from", "2004-08-06", "--to", "2004-08-05"][..],
        &["--from", "2004-02-30"],
        &["-d", "2004-08-05", "--from", "2004-08-01"],
        &["-a", "--to", "2004-08-01"],
        &["-a", "--per-day"],
    ] {
        let mut a = vec!["-f", s(&log)];
        a.extend_from_slice(args);
        let o = e.run(&a);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {o:?}");
        assert!(out(&o).is_empty(), "{args:?}");
        assert!(!err(&o).is_empty());
    }
    let o = e.run(&["-f", s(&log), "--from", "2004-08-06", "--to", "2004-08-05"]);
    assert!(
        err(&o).contains("--from 2004-08-06 is after --to 2004-08-05"),
        "{}",
        err(&o)
    );
}

/// A connection opened in the oldest (gzip'd, two members) file and closed in the newest; a
/// glob must read them oldest first to pair them.
fn rotated(e: &Env) {
    e.write_gz(
        "ipclog.log.2.gz",
        &[
            "O 2004-08-05-09:00:00 tcp 10.0.0.1 10.0.0.2 1000 22 e -\n",
            "O 2004-08-05-09:30:00 udp 10.0.0.1 10.0.0.3 1001 53 e -\n",
        ],
    );
    e.write(
        "ipclog.log.1",
        "C 2004-08-05-09:30:20 udp 10.0.0.1 10.0.0.3 1001 53 - 20\n",
    );
    e.write(
        "ipclog.log",
        "C 2004-08-05-11:00:00 tcp 10.0.0.1 10.0.0.2 1000 22 t 7200\n",
    );
}

const ROTATED_ROWS: [&str; 2] = [
    "10.0.0.1 tcp 22 10.0.0.2 1 0 7200.0 7200",
    "10.0.0.1 udp 53 10.0.0.3 1 0 20.0 20",
];

#[test]
fn several_files_and_globs_are_one_log() {
    let e = Env::new("dates-multi");
    rotated(&e);
    let (f2, f1, f0) = (
        e.path("ipclog.log.2.gz"),
        e.path("ipclog.log.1"),
        e.path("ipclog.log"),
    );
    let o = e.run(&[
        "-f",
        s(&f2),
        "-f",
        s(&f1),
        "-f",
        s(&f0),
        "-d",
        "2004-08-05",
        "-n",
    ]);
    assert!(o.status.success(), "{o:?}");
    assert_eq!(rows(&out(&o)), ROTATED_ROWS);
    let pattern = format!("{}/ipclog.log*", e.dir.display());
    let o = e.run(&["-f", &pattern, "-d", "2004-08-05", "-n"]);
    assert!(o.status.success(), "{o:?}");
    assert_eq!(rows(&out(&o)), ROTATED_ROWS, "glob read oldest first");
    // In the wrong order the closes come before their opens: the connections stay open.
    let o = e.run(&[
        "-f",
        s(&f0),
        "-f",
        s(&f1),
        "-f",
        s(&f2),
        "-d",
        "2004-08-05",
        "-n",
    ]);
    assert_eq!(
        rows(&out(&o)),
        [
            "10.0.0.1 tcp 22 10.0.0.2 1 1 - -",
            "10.0.0.1 udp 53 10.0.0.3 1 1 - -"
        ]
    );
    // gzip by content, whatever the name.
    std::fs::copy(&f2, e.path("renamed.log")).unwrap();
    let o = e.run(&["-f", s(&e.path("renamed.log")), "-a", "-n"]);
    assert!(o.status.success(), "{o:?}");
    assert_eq!(rows(&out(&o)).len(), 2, "{}", out(&o));
}

#[test]
fn missing_file_among_several_is_an_error_before_any_output() {
    let e = Env::new("dates-missing");
    rotated(&e);
    let gone = e.path("ipclog.log.9");
    let o = e.run(&["-f", s(&e.path("ipclog.log.1")), "-f", s(&gone), "-a"]);
    assert_eq!(o.status.code(), Some(2), "{o:?}");
    assert!(out(&o).is_empty());
    assert!(
        err(&o).contains("ipclog.log.9: cannot open log"),
        "{}",
        err(&o)
    );
    let o = e.run(&["-f", &format!("{}/nothing*", e.dir.display()), "-a"]);
    assert_eq!(o.status.code(), Some(2), "{o:?}");
    assert!(err(&o).contains("no file matches"), "{}", err(&o));
}

#[test]
fn corrupt_gzip_member_in_the_middle_names_file_and_line() {
    let e = Env::new("dates-corrupt");
    let mut lines = String::new();
    for i in 0..2000 {
        lines.push_str(&format!(
            "O 2004-08-05-10:00:00 tcp 10.0.0.1 10.0.0.2 {} 22 e -\n",
            1000 + i
        ));
    }
    let good = e.write_gz("good.gz", &[&lines]);
    let mut bytes = std::fs::read(&good).unwrap();
    let first_len = bytes.len();
    let mut second = std::fs::read(e.write_gz("second.gz", &[&lines])).unwrap();
    // Damage the second member's deflate data (past its 10-byte header).
    for b in second.iter_mut().skip(20).take(40) {
        *b ^= 0x5a;
    }
    bytes.extend(second);
    let bad = e.write("ipclog.log.3.gz", bytes);
    let o = e.run(&["-f", s(&bad), "-a", "-n"]);
    assert_eq!(o.status.code(), Some(1), "{o:?}");
    assert!(out(&o).is_empty(), "no half report: {}", out(&o));
    let msg = err(&o);
    assert!(
        msg.contains("ipclog.log.3.gz: corrupt gzip data after line"),
        "{msg}"
    );
    let line: u64 = msg
        .split("after line ")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .expect(&msg);
    assert!(line >= 2000, "the first member's lines were read: {msg}");
    let offset: usize = msg
        .split("compressed byte ")
        .nth(1)
        .and_then(|r| {
            r.trim_end_matches(|c: char| !c.is_ascii_digit())
                .split(')')
                .next()
        })
        .and_then(|n| n.parse().ok())
        .expect(&msg);
    assert!(
        offset > first_len,
        "offset {offset} is in the second member: {msg}"
    );
}

#[test]
fn zstd_is_told_by_content_frame_after_frame() {
    let e = Env::new("dates-zstd");
    let mut bytes = zstd::encode_all(
        "O 2004-08-05-09:00:00 tcp 10.0.0.1 10.0.0.2 1000 22 e -\n".as_bytes(),
        3,
    )
    .unwrap();
    bytes.extend(
        zstd::encode_all(
            "C 2004-08-05-09:00:09 tcp 10.0.0.1 10.0.0.2 1000 22 t 9\n".as_bytes(),
            3,
        )
        .unwrap(),
    );
    let f = e.write("ipclog.log.1", &bytes);
    let o = e.run(&["-f", s(&f), "-a", "-n"]);
    assert!(o.status.success(), "{o:?}");
    assert_eq!(rows(&out(&o)), ["10.0.0.1 tcp 22 10.0.0.2 1 0 9.0 9"]);
    // Cut in the middle of its second frame: an error naming the file and the line.
    let cut = e.write("cut.zst", &bytes[..bytes.len() - 6]);
    let o = e.run(&["-f", s(&cut), "-a", "-n"]);
    assert_eq!(o.status.code(), Some(1), "{o:?}");
    assert!(
        err(&o).contains("cut.zst: corrupt zstd data after line 1"),
        "{}",
        err(&o)
    );
    assert!(out(&o).is_empty());
}

const FILTER_LOG: &str = "\
O 2004-08-05-10:00:00 tcp 10.0.0.1 10.0.0.2 1000 22 e -
O 2004-08-05-10:00:00 tcp 10.0.0.1 192.168.1.7 1001 443 e -
O 2004-08-05-10:00:00 udp eth0 10.0.0.3 1002 53 e -
O 2004-08-05-10:00:00 tcp 2001:db8::1 2001:db8::2 1003 22 e -
";

#[test]
fn filters_select_connections() {
    let e = Env::new("dates-filter");
    let log = e.write("ipclog.log", FILTER_LOG);
    let run = |f: &[&str]| {
        let mut a = vec!["-f", s(&log), "-a", "-n", "--no-any"];
        a.extend_from_slice(f);
        let o = e.run(&a);
        assert!(o.status.success(), "{f:?}: {o:?}");
        rows(&out(&o))
    };
    assert_eq!(
        run(&["--host", "192.168.1.0/24"]),
        ["10.0.0.1 tcp 443 192.168.1.7 1 1 - -"]
    );
    assert_eq!(
        run(&["--host", "10.0.0.3"]),
        ["eth0 udp 53 10.0.0.3 1 1 - -"]
    );
    assert_eq!(run(&["--src", "eth0"]), ["eth0 udp 53 10.0.0.3 1 1 - -"]);
    assert_eq!(run(&["--proto", "udp"]), ["eth0 udp 53 10.0.0.3 1 1 - -"]);
    assert_eq!(
        run(&["--port", "22"]),
        [
            "10.0.0.1 tcp 22 10.0.0.2 1 1 - -",
            "2001:db8::1 tcp 22 2001:db8::2 1 1 - -"
        ]
    );
    assert_eq!(
        run(&["--dst", "2001:db8::/32"]),
        ["2001:db8::1 tcp 22 2001:db8::2 1 1 - -"]
    );
    assert_eq!(
        run(&["--port", "22", "--src", "10.0.0.0/8"]),
        ["10.0.0.1 tcp 22 10.0.0.2 1 1 - -"]
    );
    assert!(run(&["--host", "10.0.0.1", "--proto", "icmp"]).is_empty());
    let o = e.run(&["-f", s(&log), "-a", "--host", "10.0.0.1/99"]);
    assert_eq!(o.status.code(), Some(2), "{o:?}");
}
