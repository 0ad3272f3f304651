//! ipclog as a service sees it: syslog output as ipmon writes it (facility, priority by kind,
//! the event time with microseconds in the message, RFC 5424 on request), sent to a Unix
//! datagram socket the test binds (`--syslog-socket`), and systemd's readiness protocol
//! (`READY=1` / `STOPPING=1` to $NOTIFY_SOCKET) with a socket the test binds too.

use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use e2e::bins::{bin, scratch};
use e2e::netns::{wait_for, Netns};
use e2e::pcapgen::{self, Link, Session};
use e2e::require_netns;

/// 2023-11-14 22:13:20.123456 UTC.
const T0: i64 = 1_700_000_000_123_456;
const MS: i64 = 1000;

/// Two connections: one with a retransmission (an anomaly), one refused.
fn capture(dir: &Path) -> PathBuf {
    let mut s = Session::new("10.0.0.1:40000", "10.0.0.2:80", 1000, 5000);
    s.handshake(T0).data(T0 + 10 * MS, true, 100);
    let seq = s.cseq - 100;
    s.resend(T0 + 1510 * MS, true, seq, 100)
        .ack(T0 + 1520 * MS, false)
        .close(T0 + 2000 * MS);
    let mut plain = Session::new("10.0.0.1:40001", "10.0.0.2:81", 1, 100);
    plain.handshake(T0 + 3000 * MS).close(T0 + 3100 * MS);
    let mut pk = s.packets.clone();
    pk.extend(plain.packets.clone());
    let p = dir.join("a.pcap");
    pcapgen::write(&p, &Link::Ethernet(vec![]), false, &pk).unwrap();
    p
}

/// Every datagram waiting on `sock`.
fn drain(sock: &UnixDatagram) -> Vec<String> {
    sock.set_nonblocking(true).unwrap();
    let mut buf = vec![0u8; 65536];
    let mut got = Vec::new();
    while let Ok(n) = sock.recv(&mut buf) {
        got.push(String::from_utf8_lossy(&buf[..n]).into_owned());
    }
    got
}

/// Runs `ipclog -r CAP --syslog --syslog-socket SOCK ARGS` in UTC; its messages and status.
/// Read while it runs: a datagram socket queues only a few messages (net.unix.max_dgram_qlen)
/// and a full queue makes the sender wait, as syslog(3)'s would.
fn syslog_run(name: &str, args: &[&str]) -> (Vec<String>, std::process::Output) {
    let dir = scratch(name);
    let cap = capture(&dir);
    let sock_path = dir.join("log.sock");
    let sock = UnixDatagram::bind(&sock_path).unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(50)))
        .unwrap();
    let mut child = Command::new(bin("ipclog"))
        .arg("-r")
        .arg(&cap)
        .arg("--syslog")
        .arg("--syslog-socket")
        .arg(&sock_path)
        .args(args)
        .env("TZ", "UTC")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut got = Vec::new();
    let mut buf = vec![0u8; 65536];
    let exited = wait_for(Duration::from_secs(30), || {
        while let Ok(n) = sock.recv(&mut buf) {
            got.push(String::from_utf8_lossy(&buf[..n]).into_owned());
        }
        child.try_wait().unwrap()
    });
    assert!(exited.is_some(), "ipclog did not finish: {got:#?}");
    got.extend(drain(&sock));
    (got, child.wait_with_output().unwrap())
}

fn find<'a>(msgs: &'a [String], pat: &str) -> &'a str {
    msgs.iter()
        .find(|m| m.contains(pat))
        .unwrap_or_else(|| panic!("no message with {pat:?}: {msgs:#?}"))
}

#[test]
fn syslog_keeps_the_event_time_and_sets_facility_and_priority_by_kind() {
    let (msgs, out) = syslog_run("syslog-3164", &["--syslog-facility", "local3"]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    // local3 = 19: info 19*8+6 = 158, notice 157, warning 156.
    let open = find(&msgs, "40000 80");
    assert!(open.starts_with("<158>"), "{open}");
    assert!(
        open.contains(" ipclog[") && open.contains("]: O 22:13:20.123456 tcp "),
        "the event time with microseconds where the line log has its timestamp: {open}"
    );
    let started = find(&msgs, "ipclog started");
    assert!(
        started.starts_with("<157>"),
        "P lines are notices: {started}"
    );
    assert!(
        started.contains("]: P 22:13:20.123456 ipclog started"),
        "{started}"
    );
    // The retransmission makes the first connection's close a warning; the other stays info.
    let c1 = msgs
        .iter()
        .find(|m| m.contains("]: C ") && m.contains("40000 80"))
        .expect("C line of the first connection");
    assert!(c1.starts_with("<156>") && c1.contains("retrans=1"), "{c1}");
    let c2 = msgs
        .iter()
        .find(|m| m.contains("]: C ") && m.contains("40001 81"))
        .expect("C line of the second connection");
    assert!(c2.starts_with("<158>"), "{c2}");
    let stopped = find(&msgs, "ipclog stopped, 0 errors");
    assert!(stopped.starts_with("<157>"), "{stopped}");
    // The default facility is daemon (3): info 30.
    let (msgs, out) = syslog_run("syslog-default", &[]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert!(find(&msgs, "]: O ").starts_with("<30>"), "{msgs:#?}");
}

#[test]
fn syslog_rfc5424_has_the_full_time_and_structured_data() {
    let (msgs, out) = syslog_run(
        "syslog-5424",
        &[
            "--syslog-format",
            "rfc5424",
            "--syslog-facility",
            "security",
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    // security = auth = 4: info 38.
    let open = msgs
        .iter()
        .find(|m| m.contains(" O [conn@32473") && m.contains("sport=\"40000\""))
        .unwrap_or_else(|| panic!("{msgs:#?}"));
    assert!(
        open.starts_with("<38>1 2023-11-14T22:13:20.123456+00:00 "),
        "{open}"
    );
    assert!(
        open.contains(
            "[conn@32473 kind=\"open\" proto=\"6\" src=\"10.0.0.1\" dst=\"10.0.0.2\" \
             sport=\"40000\" dport=\"80\""
        ),
        "{open}"
    );
    assert!(open.contains("] O tcp "), "the line follows: {open}");
    let p = find(&msgs, "ipclog started");
    assert!(
        p.starts_with("<37>1 ") && p.contains(" ipclog ") && p.contains(" P - P ipclog started"),
        "{p}"
    );
}

#[test]
fn bad_facility_or_missing_socket_is_a_usage_error() {
    let out = Command::new(bin("ipclog"))
        .args(["--syslog", "--syslog-facility", "local9"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("local9") && err.contains("daemon") && err.contains("local7"),
        "the list of names: {err}"
    );
    let dir = scratch("syslog-nosock");
    let cap = capture(&dir);
    let missing = dir.join("no-such.sock");
    let out = Command::new(bin("ipclog"))
        .arg("-r")
        .arg(&cap)
        .arg("--syslog")
        .arg("--syslog-socket")
        .arg(&missing)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("no-such.sock") && err.contains("syslog"),
        "{err}"
    );
}

/// READY=1 then STOPPING=1, to a named socket and to an abstract one (`@name`).
#[test]
fn sd_notify_ready_and_stopping_reading_a_file() {
    let dir = scratch("notify-file");
    let cap = capture(&dir);
    let path = dir.join("notify.sock");
    let named = UnixDatagram::bind(&path).unwrap();
    let abstract_name = format!("ipclog-test-notify-{}", std::process::id());
    let addr =
        <std::os::unix::net::SocketAddr as std::os::linux::net::SocketAddrExt>::from_abstract_name(
            abstract_name.as_bytes(),
        )
        .unwrap();
    let abs = UnixDatagram::bind_addr(&addr).unwrap();
    for (sock, env) in [
        (&named, path.to_string_lossy().into_owned()),
        (&abs, format!("@{abstract_name}")),
    ] {
        let out = Command::new(bin("ipclog"))
            .arg("-r")
            .arg(&cap)
            .arg("-f")
            .arg(dir.join("a.log"))
            .env("NOTIFY_SOCKET", &env)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(0), "{out:?}");
        assert_eq!(
            drain(sock),
            ["READY=1", "STOPPING=1"],
            "NOTIFY_SOCKET={env}"
        );
    }
}

/// Conntrack: READY=1 comes once the connections open at start are in the log.
#[test]
fn sd_notify_ready_after_the_start_dump_is_logged() {
    require_netns!();
    let ns = Netns::new("notify").unwrap();
    ns.enable_conntrack().unwrap();
    // An entry that exists before ipclog starts (UDP, kept 30 s unreplied).
    ns.run(&[
        "python3",
        "-c",
        "import socket; s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); \
         s.bind(('127.0.0.1', 40777)); s.sendto(b'x', ('127.0.0.1', 9))",
    ])
    .unwrap();
    let dir = scratch("notify-ct");
    let path = dir.join("notify.sock");
    let sock = UnixDatagram::bind(&path).unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let log = dir.join("ipclog.log");
    let mut child = ns
        .command(bin("ipclog"))
        .arg("-f")
        .arg(&log)
        .env("NOTIFY_SOCKET", &path)
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    let mut buf = [0u8; 256];
    let ready = wait_for(Duration::from_secs(10), || {
        sock.recv(&mut buf)
            .ok()
            .map(|n| String::from_utf8_lossy(&buf[..n]).into_owned())
    });
    // Read at once: the found connection must be in the log by the time READY=1 is sent.
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    // SAFETY: our child.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let st = wait_for(Duration::from_secs(10), || child.try_wait().unwrap());
    assert_eq!(ready.as_deref(), Some("READY=1"));
    assert!(
        text.lines()
            .any(|l| l.starts_with("O ") && l.contains("40777") && l.contains("found=start")),
        "{text}"
    );
    assert_eq!(st.and_then(|s| s.code()), Some(0));
    let stopping = wait_for(Duration::from_secs(5), || {
        sock.recv(&mut buf)
            .ok()
            .map(|n| String::from_utf8_lossy(&buf[..n]).into_owned())
    });
    assert_eq!(stopping.as_deref(), Some("STOPPING=1"));
}

/// `--daemon` without `--pidfile`: it detaches (the command returns at once with 0) and logs.
#[test]
fn daemon_runs_without_a_pidfile() {
    let dir = scratch("daemon-nopid");
    let cap = capture(&dir);
    let log = dir.join("a.log");
    let out = Command::new(bin("ipclog"))
        .arg("--daemon")
        .arg("-r")
        .arg(&cap)
        .arg("-f")
        .arg(&log)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let text = wait_for(Duration::from_secs(20), || {
        std::fs::read_to_string(&log)
            .ok()
            .filter(|t| t.contains("ipclog stopped, 0 errors"))
    })
    .expect("the detached ipclog logs and stops");
    assert!(text.lines().any(|l| l.starts_with("C ")), "{text}");
}

/// `--version` names the revision the binary was built from; `--help` points to the manual.
#[test]
fn version_has_the_git_revision_and_help_points_to_the_man_pages() {
    let rev = Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .current_dir(e2e::bins::repo_root())
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string());
    for (tool, page) in [("ipclog", "man ipclog"), ("constat", "man constat")] {
        let out = Command::new(bin(tool)).arg("--version").output().unwrap();
        let v = String::from_utf8_lossy(&out.stdout).trim().to_string();
        let expected = format!(
            "{tool} {} (git {})",
            env!("CARGO_PKG_VERSION"),
            rev.as_deref().unwrap_or("unknown")
        );
        assert_eq!(v, expected, "built from this checkout's HEAD");
        let out = Command::new(bin(tool)).arg("--help").output().unwrap();
        let help = String::from_utf8_lossy(&out.stdout);
        assert!(help.contains(page), "{tool} --help: {help}");
    }
}
