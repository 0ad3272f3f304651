//! The conntrack ipclog, end to end: a client, a NAT router and a server in their own network
//! namespaces, real TCP/UDP/ICMP traffic between them, the real `ipclog` binary logging in the
//! router (or server) namespace, and the exact lines, rows and objects it writes checked.
//!
//! Needs root (namespaces, nftables); prints SKIPPED otherwise. Build the binaries first:
//! `cargo build --workspace --bins`.

use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use e2e::bins::{bin, scratch};
use e2e::lab::{Ipclog, Lab, CLIENT, CLIENT_PY, ROUTER_OUT, SERVER};
use e2e::netns::{wait_for, Netns};
use e2e::require_netns;
use shared::logfmt::{parse_line, ConnLine, LogLine};

/// constat's report on a whole log, numeric (`-a -n`), as its lines.
fn constat(log: &Path) -> Vec<String> {
    let out = std::process::Command::new(bin("constat"))
        .args(["-a", "-n", "--no-cache", "-f"])
        .arg(log)
        .env("TZ", "UTC")
        .output()
        .unwrap();
    assert!(out.status.success(), "constat: {out:?}");
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect()
}

/// The O/S/C lines of one connection (matched on source port and destination port).
fn conn_lines(text: &str, sport: Option<u16>, dport: Option<u16>, proto: u8) -> Vec<String> {
    text.lines()
        .filter(|l| match parse_line(l) {
            Ok(LogLine::Conn(c)) => c.proto == proto && c.sport == sport && c.dport == dport,
            _ => false,
        })
        .map(str::to_string)
        .collect()
}

fn conn(l: &str) -> ConnLine<'_> {
    match parse_line(l) {
        Ok(LogLine::Conn(c)) => c,
        other => panic!("not a connection line: {l:?}: {other:?}"),
    }
}

/// The line's columns after the timestamp, up to and including `time`, single-spaced:
/// `tcp 10.1.0.2 10.2.0.2 41234 8080 e 0`.
fn cols(l: &str) -> String {
    let f: Vec<&str> = l.split_ascii_whitespace().collect();
    format!("{} {}", f[0], f[2..9].join(" "))
}

fn num(c: &ConnLine, key: &str) -> u64 {
    c.extra(key)
        .unwrap_or_else(|| panic!("no {key}= in {:?}", c.extras))
        .parse()
        .unwrap()
}

/// Waits until the connection's C line is in the log, then returns all its lines.
fn wait_closed(ipc: &Ipclog, sport: Option<u16>, dport: Option<u16>, proto: u8) -> Vec<String> {
    wait_for(Duration::from_secs(20), || {
        let lines = conn_lines(&ipc.text(), sport, dport, proto);
        lines.iter().any(|l| l.starts_with("C ")).then_some(lines)
    })
    .unwrap_or_else(|| {
        panic!(
            "no C line for {sport:?}->{dport:?} within 20 s; log:\n{}",
            ipc.text()
        )
    })
}

#[test]
fn router_logs_tcp_udp_icmp_with_nat() {
    require_netns!();
    let lab = Lab::new();
    let dir = scratch("ct-router");
    let ipc = Ipclog::start(&lab.router, &dir, &["-N", "-s", "1"]);

    // Completed TCP: client closes first: handshake (s), established (e), closing (w),
    // TIME_WAIT (t), closed after TIME_WAIT.
    let out = lab.client(&["tcp", SERVER, "8080", "1000"]);
    assert_eq!(out[1], "done 1000");
    let p: u16 = out[0].parse().unwrap();
    let lines = wait_closed(&ipc, Some(p), Some(8080), 6);
    let want = |f: &str| format!("tcp {CLIENT} {SERVER} {p} 8080 {f}");
    let got: Vec<String> = lines.iter().map(|l| cols(l)).collect();
    assert_eq!(
        got,
        vec![
            format!("O {} -", want("s")),
            format!("S {} 0", want("e")),
            format!("S {} 0", want("w")),
            format!("S {} 0", want("t")),
            format!("C {} 0", want("t")),
        ],
        "{lines:#?}"
    );
    // -N: the masqueraded source is shown; the O line already has it.
    let o = conn(&lines[0]);
    let nat = o.extra("nat_src").expect("nat_src= with -N");
    assert!(nat.starts_with(&format!("{ROUTER_OUT}:")), "{nat}");
    let c = conn(&lines[4]);
    assert!(num(&c, "orig_ip_bytes") >= 1000 + 5 * 40, "{:?}", c.extras);
    assert!(num(&c, "resp_ip_bytes") >= 1000 + 4 * 40, "{:?}", c.extras);
    assert!(num(&c, "orig_pkts") >= 5 && num(&c, "resp_pkts") >= 4);
    assert!(c.extra("kstart").is_some() && c.extra("kstop").is_some());

    // Refused: SYN answered by RST.
    let out = lab.client(&["refused", SERVER, "8081"]);
    assert_eq!(out[1], "refused");
    let p: u16 = out[0].parse().unwrap();
    let lines = wait_closed(&ipc, Some(p), Some(8081), 6);
    let first = cols(&lines[0]);
    let last = cols(lines.last().unwrap());
    assert_eq!(
        first,
        format!("O tcp {CLIENT} {SERVER} {p} 8081 s -"),
        "{lines:#?}"
    );
    assert_eq!(
        last,
        format!("C tcp {CLIENT} {SERVER} {p} 8081 c 0"),
        "{lines:#?}"
    );

    // Reset by the server after the handshake.
    let out = lab.client(&["reset", SERVER, "8082", "10"]);
    assert_eq!(out[1], "reset");
    let p: u16 = out[0].parse().unwrap();
    let lines = wait_closed(&ipc, Some(p), Some(8082), 6);
    let flags: Vec<String> = lines.iter().map(|l| cols(l)).collect();
    assert_eq!(flags[0], format!("O tcp {CLIENT} {SERVER} {p} 8082 s -"));
    assert_eq!(flags[1], format!("S tcp {CLIENT} {SERVER} {p} 8082 e 0"));
    assert_eq!(
        flags.last().unwrap(),
        &format!("C tcp {CLIENT} {SERVER} {p} 8082 c 0"),
        "{lines:#?}"
    );

    // UDP answered: unreplied, then replied, then closed when it times out.
    let out = lab.client(&["udp", SERVER, "5353", "50"]);
    assert_eq!(out[1], "answer 50");
    let p: u16 = out[0].parse().unwrap();
    let lines = wait_closed(&ipc, Some(p), Some(5353), 17);
    let got: Vec<String> = lines.iter().map(|l| cols(l)).collect();
    let want = |f: &str| format!("udp {CLIENT} {SERVER} {p} 5353 {f}");
    assert_eq!(
        got,
        vec![
            format!("O {} -", want("U")),
            format!("S {} 0", want("-")),
            format!("C {} 0", want("-")),
        ]
    );
    let c = conn(&lines[2]);
    assert_eq!((num(&c, "orig_pkts"), num(&c, "resp_pkts")), (1, 1));
    assert_eq!(
        (num(&c, "orig_ip_bytes"), num(&c, "resp_ip_bytes")),
        (78, 78)
    );

    // UDP never answered.
    let out = lab.client(&["udpsilent", SERVER, "5354", "20"]);
    let p: u16 = out[0].parse().unwrap();
    let lines = wait_closed(&ipc, Some(p), Some(5354), 17);
    let got: Vec<String> = lines.iter().map(|l| cols(l)).collect();
    let want = |f: &str| format!("udp {CLIENT} {SERVER} {p} 5354 {f}");
    assert_eq!(
        got,
        vec![format!("O {} -", want("U")), format!("C {} 0", want("U"))]
    );
    let c = conn(&lines[1]);
    assert_eq!((num(&c, "orig_pkts"), num(&c, "resp_pkts")), (1, 0));

    // Ping: ICMP has no ports.
    let out = lab.client(&["ping", SERVER]);
    assert_eq!(out[1], "pong");
    let lines = wait_for(Duration::from_secs(20), || {
        let l = conn_lines(&ipc.text(), None, None, 1);
        l.iter().any(|l| l.starts_with("C ")).then_some(l)
    })
    .expect("ICMP C line");
    let got: Vec<String> = lines.iter().map(|l| cols(l)).collect();
    assert_eq!(
        got,
        vec![
            format!("O icmp {CLIENT} {SERVER} - - U -"),
            format!("S icmp {CLIENT} {SERVER} - - - 0"),
            format!("C icmp {CLIENT} {SERVER} - - - 0"),
        ]
    );
    // The echo request's type and code, as ipmon shows them.
    for l in &lines {
        assert_eq!(conn(l).extra("icmp"), Some("8/0"), "{l}");
    }

    let log = ipc.log.clone();
    let stderr = ipc.stderr.clone();
    let text = ipc.stop();
    // -s 1: statistics on standard error.
    let stats = fs::read_to_string(&stderr).unwrap();
    let line = stats
        .lines()
        .find(|l| l.contains(" events/s, "))
        .unwrap_or_else(|| panic!("no statistics line: {stats}"));
    for part in [" open, queue ", "lost 0", "dropped 0 (queue)", "errors 0"] {
        assert!(line.contains(part), "{part} missing in {line}");
    }
    // constat counts what was logged: one connection per row, all closed, durations 0.
    let report = constat(&log);
    let rows: Vec<&str> = report
        .iter()
        .filter(|l| l.starts_with(CLIENT))
        .map(String::as_str)
        .collect();
    assert_eq!(
        rows,
        vec![
            "10.1.0.2 icmp - 10.2.0.2 1 0 0.0 0",
            "10.1.0.2 tcp 8080 10.2.0.2 1 0 0.0 0",
            "10.1.0.2 tcp 8081 10.2.0.2 1 0 0.0 0",
            "10.1.0.2 tcp 8082 10.2.0.2 1 0 0.0 0",
            "10.1.0.2 udp 5353 10.2.0.2 1 0 0.0 0",
            "10.1.0.2 udp 5354 10.2.0.2 1 0 0.0 0",
        ],
        "{report:#?}"
    );
    assert_eq!(report.last().map(String::as_str), Some("0 ERRORS"));
    // The log starts as the seed's does.
    let first: Vec<&str> = text.lines().take(2).collect();
    assert!(first[0].starts_with("P ") && first[0].ends_with(" ipclog started"));
    assert!(
        first[1].starts_with("H ")
            && first[1].ends_with("prot src             dst             sport dport fl  time")
    );
    assert!(text.contains(" UP eth0 10.1.0.1\n") && text.contains(" UP eth1 10.2.0.1\n"));
    // Every line parses.
    for l in text.lines() {
        parse_line(l).unwrap_or_else(|e| panic!("{l:?}: {e}"));
    }
}

/// In the server namespace the destination is local: shown as its interface name, and the
/// source is the router's masquerading address. Long-lived connection: `ipc` shows it with
/// the seconds it has been open, and its C line has the right duration.
#[test]
fn server_names_local_interface_and_ipc_shows_open_connections() {
    require_netns!();
    let lab = Lab::new();
    let dir = scratch("ct-server");
    let ipc = Ipclog::start(&lab.server, &dir, &[]);

    let mut a = vec!["python3", "-c", CLIENT_PY];
    a.extend_from_slice(&["long", SERVER, "8083", "10"]);
    let mut long = lab
        .client
        .command(a[0])
        .args(&a[1..])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(long.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    let client_port: u16 = line.trim().parse().unwrap();
    line.clear();
    out.read_line(&mut line).unwrap();
    assert_eq!(line.trim(), "open");
    // The server sees the masqueraded source address (and maybe port).
    let o = ipc.wait_line(
        |l| l.starts_with("O ") && l.contains(" 8083 ") && l.contains(ROUTER_OUT),
        "O for the long connection",
    );
    let oc = conn(&o);
    assert_eq!(oc.src, ROUTER_OUT);
    assert_eq!(oc.dst, "eth0");
    let sport = oc.sport;
    let _ = client_port;

    // `ipc` (as a symlink) while it is open: H line, then an O line with its age.
    let link = dir.join("ipc");
    std::os::unix::fs::symlink(bin("ipclog"), &link).unwrap();
    let snap_dir = scratch("ct-server-ipc");
    let snapshot = |min_age: u64| -> Option<String> {
        let out = lab
            .server
            .command(&link)
            .current_dir(&snap_dir)
            .env("TZ", "UTC")
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        let text = String::from_utf8(out.stdout).unwrap();
        let row = text
            .lines()
            .find(|l| l.starts_with("O ") && l.contains(" 8083 "))?
            .to_string();
        (conn(&row).time? >= min_age).then_some(text)
    };
    let text = wait_for(Duration::from_secs(10), || snapshot(2))
        .expect("ipc shows the connection 2 s old");
    assert!(text.starts_with("H "), "{text}");
    let row = text.lines().find(|l| l.contains(" 8083 ")).unwrap();
    assert_eq!(
        cols(row),
        format!(
            "O tcp {ROUTER_OUT} eth0 {} 8083 e {}",
            sport.unwrap(),
            conn(row).time.unwrap()
        )
    );
    assert!((2..=3).contains(&conn(row).time.unwrap()), "{row}");
    assert_eq!(
        fs::read_dir(&snap_dir).unwrap().count(),
        0,
        "ipc wrote files"
    );
    // `-1` is the same.
    let one = lab
        .server
        .command(bin("ipclog"))
        .arg("-1")
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&one.stdout).contains(" 8083 "));

    // constat while it is open: one connection, still open.
    let report = constat(&ipc.log);
    assert!(
        report.contains(&"10.2.0.1 tcp 8083 eth0 1 1 - -".to_string()),
        "{report:#?}"
    );
    // Close it after ~3 s: duration 3 (± 1).
    wait_for(Duration::from_secs(10), || snapshot(3)).expect("3 s old");
    long.stdin.take().unwrap().write_all(b"\n").unwrap();
    line.clear();
    out.read_line(&mut line).unwrap();
    assert_eq!(line.trim(), "done");
    let _ = long.wait();
    let lines = wait_closed(&ipc, sport, Some(8083), 6);
    let c = conn(lines.last().unwrap());
    assert_eq!((c.kind, c.flag), (shared::EventKind::Close, 't'));
    let d = c.time.unwrap();
    assert!((3..=4).contains(&d), "duration {d}: {lines:#?}");
    let log = ipc.log.clone();
    ipc.stop();
    let report = constat(&log);
    assert!(
        report.contains(&format!("10.2.0.1 tcp 8083 eth0 1 0 {d}.0 {d}")),
        "{report:#?}"
    );
}

#[test]
fn sqlite_and_json_hold_every_connection_with_counters() {
    require_netns!();
    let lab = Lab::new();
    let dir = scratch("ct-db");
    let db = dir.join("h.db");
    let json = dir.join("events.json");
    let ipc = Ipclog::start(
        &lab.router,
        &dir,
        &[
            "--db",
            db.to_str().unwrap(),
            "--json",
            json.to_str().unwrap(),
        ],
    );
    let out = lab.client(&["tcp", SERVER, "8080", "5000"]);
    let p: u16 = out[0].parse().unwrap();
    let lines = wait_closed(&ipc, Some(p), Some(8080), 6);
    let c = conn(lines.last().unwrap());
    let out = lab.client(&["udp", SERVER, "5353", "10"]);
    let up: u16 = out[0].parse().unwrap();
    wait_closed(&ipc, Some(up), Some(5353), 17);
    ipc.stop();

    let conn_db = store::open_read_only(&db).unwrap();
    let row = conn_db
        .query_row(
            "SELECT orig_h, resp_h, dport, last_state, flag, close_ts IS NOT NULL, duration,
                    orig_ip_bytes, resp_ip_bytes, orig_pkts, resp_pkts, direction, reply_dst
             FROM connections WHERE proto = 6 AND orig_p = ?1",
            [p],
            |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, i64>(2)?,
                    r.get::<_, String>(3)?,
                    r.get::<_, String>(4)?,
                    r.get::<_, bool>(5)?,
                    r.get::<_, f64>(6)?,
                    (r.get::<_, i64>(7)?, r.get::<_, i64>(8)?),
                    (r.get::<_, i64>(9)?, r.get::<_, i64>(10)?),
                    r.get::<_, String>(11)?,
                    r.get::<_, String>(12)?,
                ))
            },
        )
        .unwrap();
    assert_eq!(row.0, CLIENT);
    assert_eq!(row.1, SERVER);
    assert_eq!(row.2, 8080);
    assert_eq!(
        (row.3.as_str(), row.4.as_str(), row.5),
        ("TIME_WAIT", "t", true)
    );
    assert!(row.6 < 1.0, "duration {}", row.6);
    assert_eq!(
        row.7,
        (
            num(&c, "orig_ip_bytes") as i64,
            num(&c, "resp_ip_bytes") as i64
        )
    );
    assert_eq!(
        row.8,
        (num(&c, "orig_pkts") as i64, num(&c, "resp_pkts") as i64)
    );
    assert!(row.7 .0 >= 5000 && row.7 .1 >= 5000);
    assert_eq!(row.9, "fwd");
    assert_eq!(row.10, ROUTER_OUT);
    let n_udp: i64 = conn_db
        .query_row(
            "SELECT count(*) FROM connections WHERE proto = 17 AND orig_p = ?1
               AND resp_ip_bytes = 38 AND close_ts IS NOT NULL",
            [up],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(n_udp, 1);
    let (stopped, errors, lost): (bool, i64, i64) = conn_db
        .query_row(
            "SELECT stopped IS NOT NULL, errors, lost_events FROM runs",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .unwrap();
    assert_eq!((stopped, errors, lost), (true, 0, 0));

    // JSON: one object per event, Zeek names; the close has counters and ts = start.
    let text = fs::read_to_string(&json).unwrap();
    let close = text
        .lines()
        .find(|l| l.contains("\"close\"") && l.contains(&format!("\"id.orig_p\":{p}")))
        .unwrap_or_else(|| panic!("no close object for port {p}:\n{text}"));
    for key in [
        "\"ts\":",
        "\"uid\":",
        "\"proto\":\"tcp\"",
        "\"id.orig_h\":\"10.1.0.2\"",
        "\"id.resp_h\":\"10.2.0.2\"",
        "\"id.resp_p\":8080",
        "\"duration\":",
        "\"orig_pkts\":",
        "\"resp_ip_bytes\":",
        "\"direction\":\"fwd\"",
        "\"nat_src_h\":\"10.2.0.1\"",
    ] {
        assert!(close.contains(key), "{key} missing in {close}");
    }
    let opens = text
        .lines()
        .filter(|l| l.contains("\"event\":\"open\""))
        .count();
    assert!(opens >= 2, "{text}");
}

#[test]
fn sighup_rotation_loses_no_line() {
    require_netns!();
    let lab = Lab::new();
    let dir = scratch("ct-hup");
    let ipc = Ipclog::start(&lab.router, &dir, &[]);
    // 200 UDP flows, the log rotated while they are being logged.
    let mut flood = lab
        .client
        .command("python3")
        .args(["-c", CLIENT_PY, "udpflows", SERVER, "5354", "200"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    wait_for(Duration::from_secs(10), || {
        (ipc.text().matches(" 5354 ").count() >= 5).then_some(())
    })
    .expect("flows being logged");
    let rotated = dir.join("ipclog.log.1");
    fs::rename(&ipc.log, &rotated).unwrap();
    // SAFETY: signalling our own child.
    unsafe { libc::kill(ipc.child.id() as i32, libc::SIGHUP) };
    assert!(flood.wait().unwrap().success());
    let count = |t: &str| {
        t.lines()
            .filter(|l| l.starts_with("O ") && l.contains(" 5354 "))
            .count()
    };
    wait_for(Duration::from_secs(15), || {
        let total = count(&fs::read_to_string(&rotated).unwrap()) + count(&ipc.text());
        (total >= 200).then_some(())
    })
    .expect("all 200 O lines across the two files");
    let new = ipc.stop();
    let old = fs::read_to_string(&rotated).unwrap();
    assert_eq!(count(&old) + count(&new), 200);
    assert!(old.starts_with("P "), "{old}");
    // The rotation happened mid-flood: both files hold some of the flows.
    assert!(
        count(&old) > 0 && count(&new) > 0,
        "{} + {}",
        count(&old),
        count(&new)
    );
}

#[test]
fn hostile_environment_is_refused_at_start() {
    require_netns!();
    let ns = Netns::new("hostile").unwrap();
    ns.enable_conntrack().unwrap();
    let dir = scratch("ct-hostile");
    let run = |args: &[&str], as_nobody: bool| {
        let mut c = if as_nobody {
            let mut c = ns.command("setpriv");
            c.args([
                "--reuid=65534",
                "--regid=65534",
                "--clear-groups",
                "--inh-caps=-all",
            ])
            .arg(bin("ipclog"));
            c
        } else {
            ns.command(bin("ipclog"))
        };
        let out = c.args(args).stdin(Stdio::null()).output().unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    // Not root: one line naming the capability, exit 2.
    let (code, err) = run(&[], true);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("CAP_NET_ADMIN"), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    let (code, err) = run(&["-1"], true);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("CAP_NET_ADMIN"), "{err}");
    // Unwritable log.
    let (code, err) = run(&["-f", "/proc/no/such/dir/log"], false);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("/proc/no/such/dir/log"), "{err}");
    let (code, err) = run(&["--db", "/proc/no/such/dir/h.db"], false);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("/proc/no/such/dir/h.db"), "{err}");
    // A database of another schema, and a foreign one.
    let other = dir.join("other.db");
    {
        let s = store::Store::open(&other).unwrap();
        s.connection()
            .execute_batch("PRAGMA user_version = 99")
            .unwrap();
    }
    let (code, err) = run(&["--db", other.to_str().unwrap()], false);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("schema version 99"), "{err}");
    // A locked database.
    let locked = dir.join("locked.db");
    let holder = store::Store::open(&locked).unwrap();
    holder
        .connection()
        .execute_batch("BEGIN EXCLUSIVE")
        .unwrap();
    let (code, err) = run(&["--db", locked.to_str().unwrap()], false);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("locked"), "{err}");
    drop(holder);
    // Bad filter, bad option.
    let (code, err) = run(&["--proto", "bogus"], false);
    assert_eq!(code, Some(2), "{err}");
    let (code, _) = run(&["--no-such-option"], false);
    assert_eq!(code, Some(2));
    // Counters off: said once, with the sysctl, and logging goes on.
    ns.sysctl("net.netfilter.nf_conntrack_acct", "0").unwrap();
    let mut child = ns
        .command(bin("ipclog"))
        .args(["-f", dir.join("x.log").to_str().unwrap()])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut err = BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    err.read_line(&mut line).unwrap();
    assert!(
        line.contains("sysctl -w net.netfilter.nf_conntrack_acct=1"),
        "{line}"
    );
    wait_for(Duration::from_secs(5), || {
        fs::read_to_string(dir.join("x.log"))
            .ok()
            .filter(|t| t.contains("ipclog started"))
    })
    .expect("keeps logging");
    // SAFETY: our child.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let st = wait_for(Duration::from_secs(10), || child.try_wait().unwrap()).unwrap();
    assert!(st.success());
}

#[test]
fn write_errors_are_counted_not_fatal_and_exit_1() {
    require_netns!();
    let lab = Lab::new();
    let dir = scratch("ct-full");
    let db = dir.join("h.db");
    // /dev/full: every write fails with ENOSPC, like a full disk.
    let mut child = lab
        .router
        .command(bin("ipclog"))
        .args([
            "-f",
            "/dev/full",
            "--db",
            db.to_str().unwrap(),
            "--evict-every",
            "1",
        ])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let out = lab.client(&["udp", SERVER, "5353", "10"]);
    let p: i64 = out[0].parse().unwrap();
    let conn_db = store::open_read_only(&db).unwrap();
    wait_for(Duration::from_secs(15), || {
        conn_db
            .query_row(
                "SELECT count(*) FROM connections WHERE orig_p = ?1 AND close_ts IS NOT NULL",
                [p],
                |r| r.get::<_, i64>(0),
            )
            .ok()
            .filter(|&n| n == 1)
    })
    .expect("the database keeps being written while the log fails");
    // SAFETY: our child.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let st = wait_for(Duration::from_secs(10), || child.try_wait().unwrap()).unwrap();
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
    // Logging went on, but what was not written makes the exit status 1, with the count.
    assert_eq!(st.code(), Some(1), "{err}");
    assert!(err.contains("/dev/full write failed"), "{err}");
    assert!(
        err.lines().last().is_some_and(
            |l| l.starts_with("ipclog: log /dev/full: ") && l.contains(" lines not written (")
        ),
        "{err}"
    );
    let errors: i64 = conn_db
        .query_row("SELECT errors FROM runs", [], |r| r.get(0))
        .unwrap();
    assert!(errors > 0, "{err}");
}

/// A receive buffer far too small for a burst: the loss is detected, counted exactly, written
/// as a P line and in the runs table, and followed by a resync after which every connection
/// that was logged open is also logged closed.
#[test]
fn lost_events_are_reported_and_resynced() {
    require_netns!();
    let lab = Lab::new();
    let dir = scratch("ct-loss");
    let db = dir.join("h.db");
    let ipc = Ipclog::start(
        &lab.router,
        &dir,
        &["--rcvbuf", "4096", "--db", db.to_str().unwrap()],
    );
    let out = lab.client(&["udpburst", SERVER, "5354", "3000"]);
    assert_eq!(out[0], "sent 3000");
    let lost_lines = |t: &str| -> u64 {
        t.lines()
            .filter(|l| l.starts_with("P ") && l.contains(" lost "))
            .filter_map(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                let i = f.iter().position(|w| *w == "lost")?;
                f.get(i + 1)?.parse::<u64>().ok()
            })
            .sum()
    };
    wait_for(Duration::from_secs(20), || {
        (lost_lines(&ipc.text()) > 0).then_some(())
    })
    .unwrap_or_else(|| panic!("no lost line; log:\n{}", ipc.text()));
    ipc.wait_line(|l| l.starts_with("P ") && l.contains(" resync: "), "resync");
    // Once the table is empty, every flow logged open has been logged closed.
    let count = |t: &str, letter: &str| {
        t.lines()
            .filter(|l| l.starts_with(letter) && l.contains(" 5354 "))
            .count()
    };
    wait_for(Duration::from_secs(30), || {
        let t = ipc.text();
        let empty = lab
            .router
            .run_stdout(&["cat", "/proc/sys/net/netfilter/nf_conntrack_count"])
            .map(|s| s.trim() == "0")
            .unwrap_or(false);
        (empty && count(&t, "O ") > 0 && count(&t, "O ") == count(&t, "C ")).then_some(())
    })
    .unwrap_or_else(|| {
        let t = ipc.text();
        panic!("O {} != C {}", count(&t, "O "), count(&t, "C "))
    });
    let text = ipc.stop();
    let lost = lost_lines(&text);
    let conn_db = store::open_read_only(&db).unwrap();
    let (run_lost, run_dropped): (i64, i64) = conn_db
        .query_row("SELECT lost_events, dropped FROM runs", [], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .unwrap();
    assert_eq!(run_lost + run_dropped, lost as i64, "{text}");
    assert!(run_lost > 0);
}

/// `--daemon --pidfile`: the command returns at once, the daemon writes its pid, logs, and on
/// SIGTERM writes the stop line and removes the pidfile.
#[test]
fn daemon_writes_pidfile_and_stops_on_sigterm() {
    require_netns!();
    let ns = Netns::new("daemon").unwrap();
    ns.enable_conntrack().unwrap();
    let dir = scratch("ct-daemon");
    let pidfile = dir.join("ipclog.pid");
    let log = dir.join("ipclog.log");
    let db = dir.join("h.db");
    let out = ns
        .command(bin("ipclog"))
        .arg("--daemon")
        .arg("--pidfile")
        .arg(&pidfile)
        .arg("-f")
        .arg(&log)
        .arg("--db")
        .arg(&db)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let pid: i32 = wait_for(Duration::from_secs(10), || {
        fs::read_to_string(&pidfile)
            .ok()
            .and_then(|s| s.trim().parse().ok())
    })
    .expect("pidfile with a pid");
    // SAFETY: signal 0 only checks that the process exists.
    assert_eq!(unsafe { libc::kill(pid, 0) }, 0, "daemon {pid} not running");
    wait_for(Duration::from_secs(10), || {
        fs::read_to_string(&log)
            .ok()
            .filter(|t| t.contains(" UP lo 127.0.0.1"))
    })
    .expect("daemon logs");
    ns.run(&[
        "python3",
        "-c",
        "import socket; s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); \
         s.bind(('127.0.0.1', 40998)); s.sendto(b'x', ('127.0.0.1', 9))",
    ])
    .unwrap();
    wait_for(Duration::from_secs(10), || {
        fs::read_to_string(&log)
            .ok()
            .filter(|t| t.contains(" 40998 9 "))
    })
    .expect("the daemon logs a connection");
    // SAFETY: the daemon this test started.
    unsafe { libc::kill(pid, libc::SIGTERM) };
    wait_for(Duration::from_secs(10), || {
        (!pidfile.exists()).then_some(())
    })
    .expect("pidfile removed at exit");
    let text = fs::read_to_string(&log).unwrap();
    assert!(text.ends_with(" ipclog stopped, 0 errors\n"), "{text}");
    // The database, reopened after the fork, has the connection and the finished run.
    let conn_db = store::open_read_only(&db).unwrap();
    let (rows, stopped): (i64, bool) = conn_db
        .query_row(
            "SELECT (SELECT count(*) FROM connections WHERE orig_p = 40998),
                    (SELECT stopped IS NOT NULL FROM runs)",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!((rows, stopped), (1, true));
    // Without a file to write to, a daemon is a usage error.
    let out = ns
        .command(bin("ipclog"))
        .arg("--daemon")
        .arg("--pidfile")
        .arg(dir.join("p2"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{out:?}");
}

/// `--syslog`: the lines go to /dev/log (here a socket of the test's, mounted over /dev/log in
/// a private mount namespace, so the host's syslog is never touched).
#[test]
fn syslog_receives_the_lines() {
    require_netns!();
    let ns = Netns::new("syslog").unwrap();
    ns.enable_conntrack().unwrap();
    let dir = scratch("ct-syslog");
    let sock_path = dir.join("log.sock");
    let sock = std::os::unix::net::UnixDatagram::bind(&sock_path).unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let script = format!(
        "mount -t tmpfs none /dev && touch /dev/log && mount --bind {} /dev/log && exec {} \
         --syslog -f {} --evict-every 1",
        sock_path.display(),
        bin("ipclog").display(),
        dir.join("ipclog.log").display()
    );
    let mut child = ns
        .command("unshare")
        .args(["-m", "--propagation", "private", "sh", "-c", &script])
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    let mut got: Vec<String> = Vec::new();
    let mut buf = [0u8; 4096];
    let mut recv_until = |got: &mut Vec<String>, pat: &str| {
        wait_for(Duration::from_secs(10), || {
            if let Ok(n) = sock.recv(&mut buf) {
                got.push(String::from_utf8_lossy(&buf[..n]).into_owned());
            }
            got.iter().any(|m| m.contains(pat)).then_some(())
        })
        .unwrap_or_else(|| panic!("no syslog message with {pat:?}: {got:#?}"))
    };
    recv_until(&mut got, " ipclog started");
    ns.run(&[
        "python3",
        "-c",
        "import socket; s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); \
         s.bind(('127.0.0.1', 40999)); s.sendto(b'x', ('127.0.0.1', 9))",
    ])
    .unwrap();
    recv_until(&mut got, "40999 9");
    let m = got.iter().find(|m| m.contains("40999 9")).unwrap();
    assert!(m.contains("ipclog["), "{m}");
    // ipmon's habit: the event time with microseconds where the line log has its timestamp.
    let line = &m[m.find("]: ").expect("ident[pid]: ") + 3..];
    assert!(
        line.starts_with("O ")
            && line.as_bytes()[4] == b':'
            && line.as_bytes()[10] == b'.'
            && line[17..].starts_with(" udp  lo              lo              40999 9     U      -"),
        "{m}"
    );
    // SAFETY: our child (unshare execs sh, which execs ipclog: same pid).
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let st = wait_for(Duration::from_secs(10), || child.try_wait().unwrap()).unwrap();
    assert!(st.success(), "{st}");
    recv_until(&mut got, "ipclog stopped, 0 errors");
}

/// IPv6 (forwarded, not NATed), a protocol conntrack has no tracker for (50, ESP: logged by
/// number, no ports, as the seed's `ipc` shows it) and the filters, each in its own ipclog
/// watching the same traffic.
#[test]
fn ipv6_unknown_protocol_and_filters() {
    require_netns!();
    let lab = Lab::new();
    let all = Ipclog::start(&lab.router, &scratch("ct-f-all"), &[]);
    let udp53 = Ipclog::start(
        &lab.router,
        &scratch("ct-f-udp"),
        &["--proto", "udp", "--port", "5353"],
    );
    let v6 = Ipclog::start(&lab.router, &scratch("ct-f-v6"), &["--host", "fd00:2::/64"]);
    let eth0 = Ipclog::start(&lab.router, &scratch("ct-f-eth0"), &["--iface", "eth0"]);
    // To the router itself: the one connection with a local address (eth0).
    let to_router: u16 = lab.client(&["udpsilent", "10.1.0.1", "7777", "5"])[0]
        .parse()
        .unwrap();

    let out = lab.client(&["tcp", "fd00:2::2", "8080", "100"]);
    assert_eq!(out[1], "done 100");
    let p: u16 = out[0].parse().unwrap();
    assert_eq!(lab.client(&["udp", SERVER, "5353", "10"])[1], "answer 10");
    let silent: u16 = lab.client(&["udpsilent", SERVER, "5354", "10"])[0]
        .parse()
        .unwrap();
    assert_eq!(lab.client(&["proto50", SERVER])[0], "sent");

    let lines = wait_closed(&all, Some(p), Some(8080), 6);
    // The time column is left out: the first IPv6 packet through a fresh namespace can wait
    // for neighbour discovery, so the handshake may take a SYN retransmission (1 s).
    let got: Vec<String> = lines
        .iter()
        .map(|l| cols(l).rsplit_once(' ').unwrap().0.to_string())
        .collect();
    let want = |f: &str| format!("tcp fd00:1::2 fd00:2::2 {p} 8080 {f}");
    assert_eq!(
        got,
        vec![
            format!("O {}", want("s")),
            format!("S {}", want("e")),
            format!("S {}", want("w")),
            format!("S {}", want("t")),
            format!("C {}", want("t")),
        ]
    );
    assert!(
        lines[1..].iter().all(|l| conn(l).time <= Some(1)),
        "{lines:#?}"
    );
    let esp = wait_for(Duration::from_secs(20), || {
        let l = conn_lines(&all.text(), None, None, 50);
        l.iter().any(|l| l.starts_with("C ")).then_some(l)
    })
    .unwrap_or_else(|| panic!("no protocol 50 close:\n{}", all.text()));
    let got: Vec<String> = esp.iter().map(|l| cols(l)).collect();
    assert_eq!(
        got,
        vec![
            format!("O 50 {CLIENT} {SERVER} - - U -"),
            format!("C 50 {CLIENT} {SERVER} - - U 0"),
        ]
    );
    wait_closed(&all, Some(silent), Some(5354), 17);
    // A new local address is announced with an I line, and its removal too.
    lab.router.add_addr("eth0", "10.1.0.99/24").unwrap();
    all.wait_line(
        |l| l.starts_with("I ") && l.ends_with(" UP eth0 10.1.0.99"),
        "I UP",
    );
    lab.router
        .run(&["ip", "addr", "del", "10.1.0.99/24", "dev", "eth0"])
        .unwrap();
    all.wait_line(
        |l| l.starts_with("I ") && l.ends_with(" DOWN eth0 10.1.0.99"),
        "I DOWN",
    );
    let all_text = all.stop();
    assert!(all_text.contains(" 5353 "));

    // --proto udp --port 5353: that exchange only.
    let t = udp53.stop();
    let conn_lines: Vec<&str> = t
        .lines()
        .filter(|l| matches!(parse_line(l), Ok(LogLine::Conn(_))))
        .collect();
    assert!(!conn_lines.is_empty());
    for l in &conn_lines {
        let c = conn(l);
        assert_eq!((c.proto, c.dport), (17, Some(5353)), "{l}");
    }
    // --iface eth0: the connection to the router's own eth0 address only.
    let t = eth0.stop();
    let lines: Vec<String> = t
        .lines()
        .filter(|l| matches!(parse_line(l), Ok(LogLine::Conn(_))))
        .map(cols)
        .collect();
    assert_eq!(
        lines.first().map(String::as_str),
        Some(format!("O udp {CLIENT} eth0 {to_router} 7777 U -").as_str()),
        "{t}"
    );
    assert!(lines.iter().all(|l| l.contains(" eth0 ")), "{t}");
    // --host fd00:2::/64: the IPv6 connection only.
    let t = v6.stop();
    let conn_lines: Vec<&str> = t
        .lines()
        .filter(|l| matches!(parse_line(l), Ok(LogLine::Conn(_))))
        .collect();
    assert_eq!(conn_lines.len(), 5, "{t}");
    assert!(conn_lines.iter().all(|l| l.contains(" fd00:2::2 ")), "{t}");
}

/// `-n`: host names (from /etc/hosts here: a test file mounted over it in a private mount
/// namespace) and service names as tokens; `-p` leaves the service names out.
#[test]
fn names_with_resolve_option() {
    require_netns!();
    let lab = Lab::new();
    let start = |name: &str, extra: &str| {
        let dir = scratch(name);
        let hosts = dir.join("hosts");
        fs::write(
            &hosts,
            "127.0.0.1 localhost\n10.1.0.2 client.test\n10.2.0.2 server.test\n",
        )
        .unwrap();
        let log = dir.join("ipclog.log");
        let stderr = dir.join("ipclog.stderr");
        let script = format!(
            "mount --bind {} /etc/hosts && exec {} -n {extra} -f {} --evict-every 1",
            hosts.display(),
            bin("ipclog").display(),
            log.display()
        );
        let child = lab
            .router
            .command("unshare")
            .args(["-m", "--propagation", "private", "sh", "-c", &script])
            .env("TZ", "UTC")
            .stdin(Stdio::null())
            .stderr(fs::File::create(&stderr).unwrap())
            .spawn()
            .unwrap();
        let me = Ipclog { child, log, stderr };
        me.wait_line(|l| l.contains(" UP eth0 "), "start");
        me
    };
    let named = start("ct-names", "");
    let numeric_ports = start("ct-names-p", "-p");
    // The first connection makes the resolver look the addresses up; later ones carry names.
    let services = fs::read_to_string("/etc/services").unwrap_or_default();
    let has_http_alt = services.lines().any(|l| l.starts_with("http-alt"));
    let line = wait_for(Duration::from_secs(20), || {
        lab.client(&["tcp", SERVER, "8080", "10"]);
        named
            .text()
            .lines()
            .find(|l| l.starts_with("O ") && l.contains("dst_name=server.test"))
            .map(str::to_string)
    })
    .unwrap_or_else(|| panic!("no named line:\n{}", named.text()));
    let c = conn(&line);
    assert_eq!(c.extra("src_name"), Some("client.test"), "{line}");
    assert_eq!(
        (c.src, c.dst),
        (CLIENT, SERVER),
        "columns stay numeric: {line}"
    );
    if has_http_alt {
        assert_eq!(c.extra("service"), Some("http-alt"), "{line}");
    }
    let text = named.stop();
    for l in text.lines() {
        parse_line(l).unwrap_or_else(|e| panic!("{l:?}: {e}"));
    }
    let text = numeric_ports.stop();
    assert!(text.contains("dst_name=server.test"), "{text}");
    assert!(!text.contains("service="), "{text}");
}

#[test]
fn cap_net_admin_is_all_it_needs() {
    require_netns!();
    let lab = Lab::new();
    let dir = scratch("ct-capnetadmin");
    // Root's files, but of all capabilities only CAP_NET_ADMIN (as the systemd unit in
    // ipclog/contrib runs it).
    let ipc = Ipclog::start_under(
        &lab.router,
        &dir,
        &["setpriv", "--bounding-set", "-all,+net_admin", "--"],
        &["--db", dir.join("h.db").to_str().unwrap()],
    );
    // `ip netns exec` and setpriv exec ipclog in place: the child is ipclog itself.
    let status = fs::read_to_string(format!("/proc/{}/status", ipc.child.id())).unwrap();
    let cap_eff = status.lines().find(|l| l.starts_with("CapEff:")).unwrap();
    assert!(cap_eff.ends_with("0000000000001000"), "{cap_eff}"); // bit 12: CAP_NET_ADMIN
    let out = lab
        .client
        .command("python3")
        .args(["-c", CLIENT_PY, "udp", SERVER, "5353", "10"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let sport: u16 = String::from_utf8_lossy(&out.stdout)
        .lines()
        .next()
        .and_then(|l| l.trim().parse().ok())
        .expect("client prints its port");
    let closed = wait_closed(&ipc, Some(sport), Some(5353), 17);
    assert!(closed.iter().any(|l| l.starts_with("C ")), "{closed:?}");
    let text = ipc.stop();
    assert!(text.contains(&format!(" {sport} ")), "{text}");
    use std::os::unix::fs::PermissionsExt;
    for f in ["ipclog.log", "h.db"] {
        let mode = fs::metadata(dir.join(f)).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o640, "{f}");
    }
}
