//! The sections after constat's table, each driven through the real binary: the worst
//! anomalous connections, what is new (with its state file), the top lists and the sorted,
//! totalled --bytes column, the logger's health, --sections and --quiet, and columns that
//! widen for wide names.

use std::os::unix::fs::PermissionsExt;

use e2e::constat::{err, out, s, Env};
use e2e::report::rows;

/// The lines of the section titled `title`, up to the next blank line.
fn section<'a>(text: &'a str, title: &str) -> Vec<&'a str> {
    text.lines()
        .skip_while(|l| *l != title)
        .skip(1)
        .take_while(|l| !l.is_empty())
        .collect()
}

const ANOMALY_LOG: &str = "\
O 2004-08-05-10:00:00 tcp 10.0.0.1 10.0.0.2 1000 80 e -
C 2004-08-05-10:00:02 tcp 10.0.0.1 10.0.0.2 1000 80 t 2 uid=CRST1 orig_ip_bytes=100 resp_ip_bytes=50 rst=1
O 2004-08-05-10:05:00 tcp 10.0.0.1 10.0.0.3 1001 22 e -
C 2004-08-05-10:05:00 tcp 10.0.0.1 10.0.0.3 1001 22 t 0 uid=CREJ1 conn_state=REJ
O 2004-08-05-11:00:00 tcp 10.0.0.1 10.0.0.4 1002 443 e -
C 2004-08-05-11:00:09 tcp 10.0.0.1 10.0.0.4 1002 443 t 9 uid=CS0 conn_state=S0 syn_retrans=4
O 2004-08-05-12:00:00 tcp 10.0.0.1 10.0.0.2 1003 80 e -
C 2004-08-05-12:00:30 tcp 10.0.0.1 10.0.0.2 1003 80 t 30 uid=CRETR7 retrans=7
O 2004-08-05-12:01:00 tcp 10.0.0.1 10.0.0.2 1004 80 e -
C 2004-08-05-12:01:30 tcp 10.0.0.1 10.0.0.2 1004 80 t 30 uid=CRETR2 retrans=2
O 2004-08-05-13:00:00 udp 10.0.0.1 10.0.0.5 1005 5000 e -
C 2004-08-05-15:00:00 udp 10.0.0.1 10.0.0.5 1005 5000 - 7200 uid=CLONG long_conn=1 frag=3
";

#[test]
fn worst_anomalous_connections_name_time_and_uid() {
    let e = Env::new("sec-worst");
    let log = e.write("ipclog.log", ANOMALY_LOG);
    let o = e.run(&["-f", s(&log), "-d", "2004-08-05", "-n"]);
    assert!(o.status.success(), "{o:?}");
    let text = out(&o);
    let sec = section(&text, "anomalous connections");
    let counts: Vec<String> = sec
        .iter()
        .take_while(|l| !l.starts_with("worst"))
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect();
    assert_eq!(
        counts,
        [
            "refused 1",
            "reset 1",
            "unanswered 1",
            "retransmitting 2",
            "long 1",
            "fragmented 1"
        ],
        "{text}"
    );
    let worst: Vec<String> = sec
        .iter()
        .skip_while(|l| !l.starts_with("worst"))
        .skip(1)
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect();
    assert_eq!(
        worst,
        [
            "refused 1 2004-08-05-10:05:00 CREJ1 tcp 10.0.0.1 1001 10.0.0.3 22",
            "reset 1 2004-08-05-10:00:02 CRST1 tcp 10.0.0.1 1000 10.0.0.2 80",
            "unanswered 4 2004-08-05-11:00:09 CS0 tcp 10.0.0.1 1002 10.0.0.4 443",
            "retransmitting 7 2004-08-05-12:00:30 CRETR7 tcp 10.0.0.1 1003 10.0.0.2 80",
            "retransmitting 2 2004-08-05-12:01:30 CRETR2 tcp 10.0.0.1 1004 10.0.0.2 80",
            "long 7200 2004-08-05-15:00:00 CLONG udp 10.0.0.1 1005 10.0.0.5 5000",
            "fragmented 3 2004-08-05-15:00:00 CLONG udp 10.0.0.1 1005 10.0.0.5 5000",
        ],
        "{text}"
    );
    // Filters apply to every section.
    let o = e.run(&["-f", s(&log), "-d", "2004-08-05", "-n", "--port", "80"]);
    let text = out(&o);
    let sec = section(&text, "anomalous connections");
    assert!(
        sec.iter()
            .all(|l| !l.contains("CREJ1") && !l.contains("CLONG")),
        "{text}"
    );
    assert!(sec.iter().any(|l| l.contains("CRETR7")), "{text}");
    // --sections without anomalies: none of it.
    let o = e.run(&["-f", s(&log), "-d", "2004-08-05", "--sections", "table"]);
    assert!(!out(&o).contains("anomal"), "{}", out(&o));
}

#[test]
fn new_hosts_and_ports_are_reported_once_seen_against_a_state_file() {
    let e = Env::new("sec-new");
    let state = e.path("state");
    let log = e.write(
        "ipclog.log",
        "\
O 2004-08-05-10:00:00 tcp 10.0.0.1 10.0.0.2 1000 22 e -
O 2004-08-06-10:00:00 tcp 10.0.0.1 10.0.0.2 1001 22 e -
O 2004-08-06-11:00:00 tcp 10.0.0.1 10.0.0.9 1002 8080 e -
O 2004-08-06-11:00:00 udp 10.0.0.1 10.9.9.9 1003 22 e -
",
    );
    let run = |day: &str| {
        let o = e.run(&[
            "-f",
            s(&log),
            "-d",
            day,
            "--sections",
            "new",
            "--state-dir",
            s(&state),
        ]);
        assert!(o.status.success(), "{o:?}");
        out(&o)
    };
    let first = run("2004-08-05");
    assert!(
        first.contains("first run: 2 destinations and ports remembered"),
        "{first}"
    );
    let files: Vec<_> = std::fs::read_dir(&state)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(files.len(), 1, "one state file per log: {files:?}");
    let mode = std::fs::metadata(&files[0]).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o640);
    let second = run("2004-08-06");
    let sec = section(&second, "new since the last report");
    assert_eq!(
        sec,
        [
            "new host  10.0.0.9",
            "new host  10.9.9.9",
            "new name  named-host",
            "new port  tcp/8080",
            "new port  udp/22",
        ],
        "{second}"
    );
    assert!(!second.contains("10.0.0.2"), "seen on the 5th: {second}");
    assert_eq!(
        run("2004-08-06"),
        second,
        "the same day again reads the same"
    );
    // Not part of the default report.
    let o = e.run(&["-f", s(&log), "-d", "2004-08-06", "--state-dir", s(&state)]);
    assert!(!out(&o).contains("new "), "{}", out(&o));
    // A state file that is not one: a clear error naming it.
    std::fs::write(&files[0], "garbage\n").unwrap();
    let o = e.run(&[
        "-f",
        s(&log),
        "-d",
        "2004-08-06",
        "--sections",
        "new",
        "--state-dir",
        s(&state),
    ]);
    assert_eq!(o.status.code(), Some(1), "{o:?}");
    assert!(err(&o).contains(":1: not a state line"), "{}", err(&o));
}

const BYTES_LOG: &str = "\
O 2004-08-05-10:00:00 tcp 10.0.0.1 10.0.0.2 1000 22 e -
C 2004-08-05-10:00:10 tcp 10.0.0.1 10.0.0.2 1000 22 t 10 orig_ip_bytes=100 resp_ip_bytes=200
O 2004-08-05-10:00:00 tcp 10.0.0.1 10.0.0.3 1001 25 e -
C 2004-08-05-10:00:50 tcp 10.0.0.1 10.0.0.3 1001 25 t 50 orig_ip_bytes=9000 resp_ip_bytes=1000
O 2004-08-05-10:00:00 udp 10.0.0.1 10.0.0.4 1002 53 e -
C 2004-08-05-10:00:01 udp 10.0.0.1 10.0.0.4 1002 53 - 1 orig_ip_bytes=60 resp_ip_bytes=140
O 2004-08-05-10:00:00 udp 10.0.0.1 10.0.0.4 1003 53 e -
C 2004-08-05-10:00:01 udp 10.0.0.1 10.0.0.4 1003 53 - 1 orig_ip_bytes=60 resp_ip_bytes=140
";

#[test]
fn bytes_column_is_sorted_and_totalled_and_top_lists_add_up() {
    let e = Env::new("sec-top");
    let log = e.write("ipclog.log", BYTES_LOG);
    let o = e.run(&["-f", s(&log), "-d", "2004-08-05", "-n", "--bytes"]);
    assert!(o.status.success(), "{o:?}");
    let text = out(&o);
    assert_eq!(
        rows(&text),
        [
            "10.0.0.1 tcp 25 10.0.0.3 1 0 50.0 50 10000",
            "10.0.0.1 udp 53 10.0.0.4 2 0 1.0 1 400",
            "10.0.0.1 tcp 22 10.0.0.2 1 0 10.0 10 300",
        ],
        "{text}"
    );
    let total = text.lines().find(|l| l.starts_with("total")).expect(&text);
    assert_eq!(
        total.split_whitespace().collect::<Vec<_>>(),
        ["total", "4", "0", "15.5", "50", "10700"]
    );
    let o = e.run(&[
        "-f",
        s(&log),
        "-d",
        "2004-08-05",
        "-n",
        "--sections",
        "top",
        "--top",
        "2",
    ]);
    let text = out(&o);
    assert!(!text.contains("nopn"), "no table: {text}");
    let collapse = |v: Vec<&str>| -> Vec<String> {
        v.iter()
            .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
            .collect()
    };
    assert_eq!(
        collapse(section(&text, "top destinations by connections")),
        [
            "dst connections share",
            "10.0.0.4 2 50.0%",
            "10.0.0.2 1 25.0%",
            "total 4"
        ],
        "{text}"
    );
    assert_eq!(
        collapse(section(&text, "top destinations by bytes sent")),
        [
            "dst bytes share",
            "10.0.0.3 9000 97.6%",
            "10.0.0.4 120 1.3%",
            "total 9220"
        ],
        "{text}"
    );
    assert_eq!(
        collapse(section(&text, "top destinations by bytes received")),
        [
            "dst bytes share",
            "10.0.0.3 1000 67.6%",
            "10.0.0.4 280 18.9%",
            "total 1480"
        ],
        "{text}"
    );
    assert_eq!(
        collapse(section(&text, "top destinations by total duration"))[1],
        "10.0.0.3 50 80.6%"
    );
    assert_eq!(
        collapse(section(&text, "top ports by connections"))[1],
        "udp/53 2 50.0%"
    );
}

#[test]
fn health_reports_restarts_errors_and_losses() {
    let e = Env::new("sec-health");
    let log = e.write(
        "ipclog.log",
        "\
P 2004-08-05-00:00:01 ipclog started
O 2004-08-05-10:00:00 tcp 10.0.0.1 10.0.0.2 1000 22 e -
P 2004-08-05-11:00:00 ipclog stopped, 3 errors
P 2004-08-05-11:00:05 ipclog started
P 2004-08-05-12:00:00 lost 4 events
P 2004-08-06-00:00:01 ipclog stopped, 9 errors
",
    );
    let o = e.run(&["-f", s(&log), "-d", "2004-08-05", "-n"]);
    assert!(o.status.success(), "{o:?}");
    let text = out(&o);
    let sec: Vec<String> = section(&text, "logger health")
        .iter()
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect();
    assert_eq!(
        sec,
        [
            "runs 2",
            "restarts 1",
            "still running 1",
            "write errors 3",
            "events lost 4"
        ],
        "{text}"
    );
    // A quiet day of a healthy logger: no section (the seed's report stays as it was).
    let o = e.run(&["-f", s(&log), "-d", "2004-08-06", "-n"]);
    assert!(
        out(&o).contains("logger health"),
        "9 errors on the 6th: {}",
        out(&o)
    );
    let quiet = e.write(
        "ok.log",
        "P 2004-08-05-00:00:01 ipclog started\nP 2004-08-05-23:00:00 ipclog stopped, 0 errors\n",
    );
    let o = e.run(&["-f", s(&quiet), "-d", "2004-08-05"]);
    assert!(!out(&o).contains("health"), "{}", out(&o));
}

#[test]
fn quiet_prints_nothing_and_exits_3_when_there_is_nothing_to_report() {
    let e = Env::new("sec-quiet");
    let log = e.write("ipclog.log", BYTES_LOG);
    let o = e.run(&["-f", s(&log), "-d", "2004-08-09", "--quiet"]);
    assert_eq!(o.status.code(), Some(3), "{o:?}");
    assert!(o.stdout.is_empty() && o.stderr.is_empty(), "{o:?}");
    let o = e.run(&["-f", s(&log), "-d", "2004-08-05", "-q"]);
    assert_eq!(o.status.code(), Some(0), "{o:?}");
    assert!(out(&o).contains("0 ERRORS"));
    // Without --quiet an empty day is still a report, exit 0.
    let o = e.run(&["-f", s(&log), "-d", "2004-08-09"]);
    assert_eq!(o.status.code(), Some(0), "{o:?}");
    let o = e.run(&["-f", s(&log), "--sections", "table,bogus"]);
    assert_eq!(o.status.code(), Some(2), "{o:?}");
    assert!(
        err(&o).contains("\"bogus\" is not a section"),
        "{}",
        err(&o)
    );
}

#[test]
fn wide_names_widen_their_column_instead_of_shifting_the_row() {
    let e = Env::new("sec-wide");
    let log = e.write(
        "ipclog.log",
        "\
O 2004-08-05-10:00:00 udp 10.0.0.1 10.0.0.2 137 137 e -
O 2004-08-05-10:00:00 tcp 2001:db8:1234:5678:9abc:def0:1234:5678 2001:db8::2 1000 22 e -
O 2004-08-05-10:00:00 tcp 10.0.0.1 10.0.0.3 1000 22 e -
O 2004-08-05-10:00:00 tcp 2001:db8:1234:5678:9abc:def0:1234:5678 2001:db8::3 1000 22 e -
C 2004-08-05-10:00:01 tcp 2001:db8:1234:5678:9abc:def0:1234:5678 2001:db8::3 1000 22 t 1 retrans=1
",
    );
    let o = e.run(&["-f", s(&log), "-d", "2004-08-05", "--sections", "anomalies"]);
    let text = out(&o);
    let sec = section(&text, "connections with anomalies");
    let end = sec[0].find(" retrans").unwrap() + " retrans".len();
    assert_eq!(
        &sec[1][end - 2..end],
        " 1",
        "retrans under its title:\n{text}"
    );
    let o = e.run(&["-f", s(&log), "-d", "2004-08-05", "--bytes"]);
    assert!(o.status.success(), "{o:?}");
    let text = out(&o);
    let lines: Vec<&str> = text
        .lines()
        .skip(1)
        .take_while(|l| !l.is_empty())
        .filter(|l| !l.starts_with("---"))
        .collect();
    let title = lines[0];
    // Every row's columns end where the titles' do.
    for col in ["dport", "dst", "n", "nopn", "maxtm", "bytes"] {
        let pat = format!(" {col} ");
        let end = title
            .find(&pat)
            .map(|i| i + pat.len() - 1)
            .unwrap_or(title.len());
        let start = title
            .find(&pat)
            .map(|i| i + 1)
            .unwrap_or(title.len() - col.len());
        for l in lines[1..]
            .iter()
            .filter(|l| !l.starts_with("total") && !l.ends_with("ERRORS"))
        {
            let right = matches!(col, "n" | "nopn" | "maxtm" | "bytes");
            let at = if right { end - 1 } else { start };
            assert!(
                l.as_bytes().get(at).is_some_and(|b| *b != b' '),
                "column {col} at {at} in {l:?}\n{text}"
            );
            if !right {
                assert_eq!(
                    l.as_bytes()[at - 1],
                    b' ',
                    "{col} starts at {at} in {l:?}\n{text}"
                );
            }
        }
    }
    assert!(text.contains("netbios-ns"), "{text}");
    assert!(
        text.contains("2001:db8:1234:5678:9abc:def0:1234:5678 "),
        "{text}"
    );
}
