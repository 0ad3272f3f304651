//! Foreign text never reaches a terminal raw, counters never wrap, a log being written is read
//! sanely, the lookup file has one rule for duplicates, and the logger's drops are reported:
//! driven through the real `ipclog` and `constat` as a user would run them.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use e2e::bins::{bin, repo_root, scratch};
use e2e::netns::Netns;
use e2e::report::rows;
use e2e::require_netns;
use shared::logfmt::parse_epoch;
use shared::{ConnEvent, ConnState, EventKind, FlowTuple, Source, TcpState};
use store::Store;

/// A legal Linux interface name that retitles the terminal window and turns on reverse video.
const EVIL_IF: &str = "\u{1b}]0;PWN\u{7}\u{1b}[7m";
/// The same, as every text output must show it.
const EVIL_IF_SHOWN: &str = "\\x1b]0;PWN\\x07\\x1b[7m";

/// Fails when `bytes` hold anything a terminal would act on: a control character other than
/// newline (and the carriage return a terminal adds), DEL, a C1 control or a bidi control.
fn assert_clean(bytes: &[u8], what: &str) {
    let text = String::from_utf8_lossy(bytes);
    let bad = text.char_indices().find(|&(_, c)| {
        (c < ' ' && c != '\n' && c != '\r')
            || ('\u{7f}'..='\u{9f}').contains(&c)
            || ('\u{202a}'..='\u{202e}').contains(&c)
            || ('\u{2066}'..='\u{2069}').contains(&c)
    });
    if let Some((i, c)) = bad {
        panic!("{what}: raw {c:?} at byte {i} in:\n{}", text.escape_debug());
    }
}

fn constat(args: &[&str], lookup: &Path, cache: &Path) -> Output {
    let o = Command::new(bin("constat"))
        .args(args)
        .arg("--lookup")
        .arg(lookup)
        .arg("--cache")
        .arg(cache)
        .env("TZ", "UTC")
        .stdin(Stdio::null())
        .output()
        .expect("run constat");
    assert_ne!(o.status.code(), Some(101), "constat panicked: {o:?}");
    assert_clean(&o.stdout, "constat stdout");
    assert_clean(&o.stderr, "constat stderr");
    o
}

fn stdout(o: &Output) -> String {
    String::from_utf8(o.stdout.clone()).expect("report is UTF-8")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn last_lines(report: &str, n: usize) -> Vec<&str> {
    let l: Vec<&str> = report.lines().collect();
    l[l.len().saturating_sub(n)..].to_vec()
}

/// An empty lookup file and a name cache that does not exist, in `dir`.
fn no_names(dir: &Path) -> (PathBuf, PathBuf) {
    let lookup = dir.join("empty.lookup");
    std::fs::write(&lookup, "").unwrap();
    (lookup, dir.join("no-cache"))
}

// ---------------------------------------------------------------------------------------------
// Item 3: control characters.

/// `ipc` in a namespace whose interface is named with terminal escapes: its O line shows the
/// name escaped, in one column; constat reading that output shows it escaped too.
#[test]
fn ipc_shows_an_escape_sequence_interface_escaped() {
    require_netns!();
    let ns = Netns::new("escif").unwrap();
    // The peer of a veth pair in the same namespace: any interface type works, and veth is
    // there wherever the other kernel tests run.
    ns.run(&[
        "ip", "link", "add", "name", EVIL_IF, "type", "veth", "peer", "name", "peer0",
    ])
    .unwrap();
    ns.add_addr(EVIL_IF, "10.77.0.1/24").unwrap();
    ns.run(&["ip", "link", "set", EVIL_IF, "up"]).unwrap();
    ns.run(&["ip", "link", "set", "peer0", "up"]).unwrap();
    ns.enable_conntrack().unwrap();
    // A UDP flow from the interface's address to itself: both ends are that interface.
    ns.run(&[
        "python3",
        "-c",
        "import socket; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); \
         s.bind(('10.77.0.1', 40123)); s.sendto(b'x', ('10.77.0.1', 9))",
    ])
    .unwrap();
    let o = ns
        .command(bin("ipclog"))
        .arg("-1")
        .env("TZ", "UTC")
        .output()
        .unwrap();
    assert!(o.status.success(), "{o:?}");
    assert_clean(&o.stdout, "ipclog -1 stdout");
    assert_clean(&o.stderr, "ipclog -1 stderr");
    let text = String::from_utf8(o.stdout).unwrap();
    let line = text
        .lines()
        .find(|l| l.contains(" 40123 "))
        .unwrap_or_else(|| panic!("no line for the flow:\n{text}"));
    let cols: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(
        cols[2..8],
        ["udp", EVIL_IF_SHOWN, EVIL_IF_SHOWN, "40123", "9", "U"],
        "{line}"
    );

    let dir = scratch("trust-ipc");
    let (lookup, cache) = no_names(&dir);
    let snap = dir.join("ipc.log");
    std::fs::write(&snap, &text).unwrap();
    let r = constat(&["-a", "-f", snap.to_str().unwrap()], &lookup, &cache);
    assert!(r.status.success(), "{r:?}");
    assert!(
        rows(&stdout(&r)).contains(&format!(
            "{EVIL_IF_SHOWN} udp discard {EVIL_IF_SHOWN} 1 1 - -"
        )),
        "{}",
        stdout(&r)
    );
}

/// A log whose src column holds ESC/BEL (raw, as an old writer left it, and escaped, as the
/// writer does now), a bad line quoting ESC, and a file name with ESC: nothing raw on stdout or
/// stderr, and the two spellings of the name are one row.
#[test]
fn log_text_and_file_names_reach_the_terminal_escaped() {
    let dir = scratch("trust-log");
    let (lookup, cache) = no_names(&dir);
    let log = dir.join("log\u{1b}[2J.log");
    let text = format!(
        "\
P 2004-08-05-10:00:00 ipclog started
O 2004-08-05-10:00:01 tcp  {EVIL_IF} 9.9.9.9 1000 22 e -
O 2004-08-05-10:00:02 tcp  {EVIL_IF_SHOWN} 9.9.9.9 1001 22 e -
C 2004-08-05-10:00:05 tcp  {EVIL_IF_SHOWN} 9.9.9.9 1001 22 t 3
O 2004-08-05-10:00:06 udp  my\\x20if\\u202e 9.9.9.9 1002 53 U -
X\u{1b}[7m 2004-08-05-10:00:07 bad
O 2004-08-05-10:00:08 tcp  a 9.9.9.9 1 2 \u{1b} -
"
    );
    std::fs::write(&log, text).unwrap();
    let o = constat(&["-v", "-a", "-f", log.to_str().unwrap()], &lookup, &cache);
    assert!(o.status.success(), "{o:?}");
    let report = stdout(&o);
    assert_eq!(
        rows(&report),
        [
            format!("{EVIL_IF_SHOWN} tcp ssh 9.9.9.9 2 1 3.0 3"),
            "my\\x20if\\u202e udp domain 9.9.9.9 1 1 - -".to_string(),
        ],
        "{report}"
    );
    assert_eq!(last_lines(&report, 1), ["2 ERRORS"]);
    let err = stderr(&o);
    let shown = log.to_str().unwrap().replace('\u{1b}', "\\x1b");
    assert!(err.contains(&format!("{shown}:6: type: ")), "{err}");
    assert!(err.contains(&format!("{shown}:7: fl: ")), "{err}");
    // A file that cannot be opened is named escaped as well.
    let o = constat(
        &["-f", dir.join("gone\u{7}\u{202e}").to_str().unwrap()],
        &lookup,
        &cache,
    );
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("gone\\x07\\u202e: cannot open log"),
        "{o:?}"
    );
}

/// A lookup name with U+202E and a name-cache entry with one are escaped in the table; a
/// lookup name with ESC is refused with a warning that shows it escaped.
#[test]
fn lookup_and_cache_names_are_escaped_in_the_table() {
    let dir = scratch("trust-names");
    let lookup = dir.join("names.lookup");
    std::fs::write(
        &lookup,
        "217.237.151.97 ns\u{202e}lmth.exe\n212.227.15.149 pop\u{1b}[7m\n25/tcp mail\u{2066}\n",
    )
    .unwrap();
    let cache = dir.join("names.cache");
    std::fs::write(&cache, "212.227.15.145 smtp\u{202e}x.example 1\n").unwrap();
    let sample = repo_root().join("constat/sample/ipclog.log");
    let o = constat(
        &["-f", sample.to_str().unwrap(), "-d", "2004-08-05"],
        &lookup,
        &cache,
    );
    assert!(o.status.success(), "{o:?}");
    let r = rows(&stdout(&o));
    for want in [
        "ppp0 udp domain ns\\u202elmth.exe 2 0 10.0 20",
        "ppp0 tcp mail\\u2066 smtp\\u202ex.example? 1 0 0.0 0",
        "192.168.0.2 tcp pop3 212.227.15.149 1 0 0.0 0",
    ] {
        assert!(r.contains(&want.to_string()), "{want}\n{r:#?}");
    }
    assert!(
        stderr(&o).contains(":2: bad name \"pop\\u{1b}[7m\" (line skipped)"),
        "{}",
        stderr(&o)
    );
}

/// The SQLite history: a row whose src is an interface named with escapes is shown escaped, a
/// duration of 1e300 is a bad row (not a nonsense average), and the runs' drops count as lost.
#[test]
fn database_rows_names_durations_and_drops() {
    let dir = scratch("trust-db");
    let (lookup, cache) = no_names(&dir);
    let db = dir.join("history.db");
    {
        let mut store = Store::open(&db).expect("open store");
        store
            .start_run(parse_epoch("1091700000").unwrap(), "conntrack", "test")
            .unwrap();
        let mut events = Vec::new();
        for (i, (src_if, dur)) in [(Some(EVIL_IF), 4.0), (None, 1e300), (None, 2.0)]
            .into_iter()
            .enumerate()
        {
            let t0 = 1_091_700_100 + i as i64;
            let mut open = ConnEvent::new(
                EventKind::Open,
                parse_epoch(&t0.to_string()).unwrap(),
                Source::Conntrack,
                i as u64 + 1,
                6,
                FlowTuple::new(
                    "10.0.0.1".parse().unwrap(),
                    "10.0.0.2".parse().unwrap(),
                    Some(1000 + i as u16),
                    Some(22),
                ),
            );
            open.src_iface = src_if.map(str::to_string);
            open.state = ConnState::Tcp(TcpState::Established);
            let mut close = open.clone();
            close.kind = EventKind::Close;
            close.ts = parse_epoch(&(t0 + 5).to_string()).unwrap();
            close.state = ConnState::Tcp(TcpState::TimeWait);
            close.duration = Some(dur);
            events.push(open);
            events.push(close);
        }
        store.write_batch(&events).expect("write batch");
        // 7 events lost by the kernel, 12 dropped on the way to the database.
        store
            .finish_run(None, parse_epoch("1091707200").unwrap(), 0, 7, 12)
            .unwrap();
    }
    let o = constat(&["-v", "-a", "-f", db.to_str().unwrap()], &lookup, &cache);
    assert!(o.status.success(), "{o:?}");
    let report = stdout(&o);
    assert_eq!(
        rows(&report),
        [
            "10.0.0.1 tcp ssh 10.0.0.2 1 0 2.0 2".to_string(),
            format!("{EVIL_IF_SHOWN} tcp ssh 10.0.0.2 1 0 4.0 4"),
        ],
        "{report}"
    );
    assert_eq!(
        last_lines(&report, 2),
        [
            "19 EVENTS LOST by the logger: these counts may be incomplete",
            "1 ERRORS"
        ],
        "{report}"
    );
    assert!(
        stderr(&o).contains("duration: 1e300 seconds is out of range"),
        "{}",
        stderr(&o)
    );
}

// ---------------------------------------------------------------------------------------------
// Item 6: counters.

#[test]
fn counts_and_times_out_of_range_are_bad_lines_and_sums_saturate() {
    let dir = scratch("trust-range");
    let (lookup, cache) = no_names(&dir);
    let log = dir.join("range.log");
    std::fs::write(
        &log,
        "\
P 2004-08-05-10:00:00 lost 18446744073709551615 events
P 2004-08-05-10:00:01 lost 18446744073709551615 events
O 2004-08-05-10:00:02 tcp  10.0.0.1 10.0.0.2 1000 22 e -
C 2004-08-05-10:00:03 tcp  10.0.0.1 10.0.0.2 1000 22 t 18446744073709551615
O 2004-08-05-10:00:04 tcp  10.0.0.1 10.0.0.2 1001 22 e -
C 2004-08-05-10:00:08 tcp  10.0.0.1 10.0.0.2 1001 22 t 4
P 2004-08-06-10:00:00 lost 9223372036854775807 events
P 2004-08-06-10:00:01 lost 9223372036854775807 events
P 2004-08-06-10:00:02 dropped 9223372036854775807 events (database queue full)
",
    )
    .unwrap();
    let p = log.to_str().unwrap();
    let o = constat(&["-v", "-f", p, "-d", "2004-08-05"], &lookup, &cache);
    assert!(o.status.success(), "{o:?}");
    let report = stdout(&o);
    // The bad C line leaves its connection open; the average is the good one's.
    assert_eq!(
        rows(&report),
        ["10.0.0.1 tcp ssh 10.0.0.2 2 1 4.0 4"],
        "{report}"
    );
    assert_eq!(last_lines(&report, 2)[1], "3 ERRORS", "{report}");
    assert!(!report.contains("LOST"), "{report}");
    let err = stderr(&o);
    for l in [1, 2] {
        assert!(
            err.contains(&format!(
                "{p}:{l}: message: lost count 18446744073709551615 is out of range (at most \
                 9223372036854775807)"
            )),
            "{err}"
        );
    }
    assert!(
        err.contains(&format!(
            "{p}:4: time: 18446744073709551615 seconds is out of range"
        )),
        "{err}"
    );
    // Counts in range add up, saturating instead of wrapping.
    let o = constat(&["-f", p, "-d", "2004-08-06"], &lookup, &cache);
    assert_eq!(
        last_lines(&stdout(&o), 2)[0],
        "18446744073709551615 EVENTS LOST by the logger: these counts may be incomplete",
        "{}",
        stdout(&o)
    );
}

// ---------------------------------------------------------------------------------------------
// Item 7: a log being written.

/// A pseudo-terminal: its slave end as a child's stdin reads line by line, and the EOF
/// character ends a read with what was typed so far (or with nothing: end of file), after which
/// more input can follow. That is a log whose reader reaches EOF in the middle of a line and
/// whose writer then finishes it, without any timing.
struct Pty {
    master: File,
    slave: File,
    eof: u8,
}

fn pty() -> Pty {
    // SAFETY: plain libc calls on descriptors owned here; the buffers are sized as passed.
    unsafe {
        let m = libc::posix_openpt(libc::O_RDWR | libc::O_NOCTTY);
        assert!(m >= 0, "posix_openpt: {}", std::io::Error::last_os_error());
        let master = File::from_raw_fd(m);
        assert_eq!(libc::grantpt(m), 0);
        assert_eq!(libc::unlockpt(m), 0);
        let mut name = [0 as libc::c_char; 128];
        assert_eq!(libc::ptsname_r(m, name.as_mut_ptr(), name.len()), 0);
        let path = std::ffi::CStr::from_ptr(name.as_ptr())
            .to_str()
            .unwrap()
            .to_string();
        let slave = OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_NOCTTY)
            .open(&path)
            .unwrap();
        let mut t: libc::termios = std::mem::zeroed();
        assert_eq!(libc::tcgetattr(slave.as_raw_fd(), &mut t), 0);
        // Canonical input stays on (lines, and VEOF); no echo back to the master.
        t.c_lflag &= !libc::ECHO;
        t.c_lflag |= libc::ICANON;
        assert_eq!(libc::tcsetattr(slave.as_raw_fd(), libc::TCSANOW, &t), 0);
        let eof = t.c_cc[libc::VEOF];
        Pty { master, slave, eof }
    }
}

fn wait_with_deadline(mut child: Child, what: &str) -> std::process::ExitStatus {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(s) = child.try_wait().unwrap() {
            return s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what} did not finish");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn a_line_cut_at_eof_is_one_error_and_its_rest_is_never_read_as_a_line() {
    let dir = scratch("trust-growing");
    let (lookup, cache) = no_names(&dir);
    let mut p = pty();
    let child = Command::new(bin("constat"))
        .args(["-v", "-a", "-f", "-", "--lookup"])
        .arg(&lookup)
        .arg("--cache")
        .arg(&cache)
        .env("TZ", "UTC")
        .stdin(p.slave.try_clone().unwrap())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The first line whole; the second's first half, then end of file; then the writer
    // finishes the line, and ends the input for good.
    let mut input = b"O 2004-08-05-10:00:00 tcp  10.0.0.1 10.0.0.2 1000 22 e -\n\
O 2004-08-05-10:00:01 tcp  10.0.0.1 10.0"
        .to_vec();
    input.extend([p.eof, p.eof]);
    input.extend(b".0.2 1001 22 e -\n");
    input.push(p.eof);
    p.master.write_all(&input).unwrap();
    let mut child = child;
    let mut so = child.stdout.take().unwrap();
    let mut se = child.stderr.take().unwrap();
    let status = wait_with_deadline(child, "constat on a growing input");
    let (mut report, mut err) = (String::new(), String::new());
    so.read_to_string(&mut report).unwrap();
    se.read_to_string(&mut err).unwrap();
    drop(p);
    assert!(status.success(), "{status:?} {err}");
    assert_eq!(
        rows(&report),
        ["10.0.0.1 tcp ssh 10.0.0.2 1 1 - -"],
        "{report}"
    );
    assert_eq!(last_lines(&report, 1), ["1 ERRORS"], "{report}\n{err}");
    assert!(
        err.contains("<stdin>:2: line: incomplete last line"),
        "{err}"
    );
    assert!(
        !err.contains("<stdin>:3"),
        "the line's rest was read as a line: {err}"
    );
}

/// A log file whose writer has written half a line: one error, named; once the line is
/// finished, no error and the connection counts.
#[test]
fn a_log_with_half_a_line_then_the_whole_line() {
    let dir = scratch("trust-half");
    let (lookup, cache) = no_names(&dir);
    let log = dir.join("growing.log");
    let mut f = File::create(&log).unwrap();
    f.write_all(b"O 2004-08-05-10:00:00 tcp  10.0.0.1 10.0.0.2 1000 22 e -\nC 2004-08-05-10:00:05 tcp  10.0.0.1 10.0.0.2 10")
        .unwrap();
    let p = log.to_str().unwrap();
    let o = constat(&["-v", "-a", "-f", p], &lookup, &cache);
    assert_eq!(rows(&stdout(&o)), ["10.0.0.1 tcp ssh 10.0.0.2 1 1 - -"]);
    assert_eq!(last_lines(&stdout(&o), 1), ["1 ERRORS"]);
    assert!(
        stderr(&o).contains(&format!(
            "{p}:2: line: incomplete last line (no newline: cut off, or still being written)"
        )),
        "{}",
        stderr(&o)
    );
    f.write_all(b"00 22 t 5\n").unwrap();
    let o = constat(&["-v", "-a", "-f", p], &lookup, &cache);
    assert_eq!(rows(&stdout(&o)), ["10.0.0.1 tcp ssh 10.0.0.2 1 0 5.0 5"]);
    assert_eq!(last_lines(&stdout(&o), 1), ["0 ERRORS"]);
}

// ---------------------------------------------------------------------------------------------
// Item 8: the lookup file.

#[test]
fn lookup_duplicates_of_every_kind_keep_the_first_and_non_utf8_lines_are_skipped() {
    let dir = scratch("trust-lookup");
    let lookup = dir.join("dup.lookup");
    let mut text = Vec::new();
    text.extend_from_slice(b"217.237.151.97 my-nameserver\n");
    text.extend_from_slice(b"212.227.119.0/24 web-one\n");
    text.extend_from_slice(b"25/tcp mail-one\n");
    text.extend_from_slice(b"212.227.15.149 my-pop\xff-server\n");
    text.extend_from_slice(b"217.237.151.97 other-ns\n");
    text.extend_from_slice(b"212.227.119.0/24 web-two\n");
    text.extend_from_slice(b"25/tcp mail-two\n");
    std::fs::write(&lookup, text).unwrap();
    let sample = repo_root().join("constat/sample/ipclog.log");
    let o = constat(
        &["-f", sample.to_str().unwrap(), "-d", "2004-08-05"],
        &lookup,
        &dir.join("no-cache"),
    );
    assert!(o.status.success(), "{o:?}");
    let r = rows(&stdout(&o));
    for want in [
        "ppp0 udp domain my-nameserver 2 0 10.0 20",
        "ppp0 tcp http web-one 3 0 6.7 10",
        "ppp0 tcp mail-one 212.227.15.145 1 0 0.0 0",
        "192.168.0.2 tcp pop3 212.227.15.149 1 0 0.0 0",
    ] {
        assert!(r.contains(&want.to_string()), "{want}\n{r:#?}");
    }
    let err = stderr(&o);
    let p = lookup.to_str().unwrap();
    let warnings: Vec<&str> = err.lines().collect();
    assert_eq!(
        warnings,
        [
            format!("constat: warning: {p}:4: not UTF-8 text (byte 22 of the line) (line skipped)"),
            format!(
                "constat: warning: {p}:5: duplicate of line 1: 217.237.151.97 is already named \
                 \"my-nameserver\" there (line skipped)"
            ),
            format!(
                "constat: warning: {p}:6: duplicate of line 2: 212.227.119.0/24 is already \
                 named \"web-one\" there (line skipped)"
            ),
            format!(
                "constat: warning: {p}:7: duplicate of line 3: 25/tcp is already named \
                 \"mail-one\" there (line skipped)"
            ),
        ],
        "{err}"
    );
}

// ---------------------------------------------------------------------------------------------
// Item 1: the logger's drops.

#[test]
fn dropped_events_in_the_log_count_as_lost() {
    let dir = scratch("trust-dropped");
    let (lookup, cache) = no_names(&dir);
    let log = dir.join("dropped.log");
    std::fs::write(
        &log,
        "\
P 2004-08-05-10:00:00 ipclog started
O 2004-08-05-10:00:01 tcp  10.0.0.1 10.0.0.2 1000 22 e -
P 2004-08-05-10:00:02 dropped 12 events (database queue full)
P 2004-08-05-10:00:03 lost 7 events
P 2004-08-06-10:00:00 dropped 100 events (database queue full)
",
    )
    .unwrap();
    let o = constat(
        &["-f", log.to_str().unwrap(), "-d", "2004-08-05"],
        &lookup,
        &cache,
    );
    assert_eq!(
        last_lines(&stdout(&o), 2),
        [
            "19 EVENTS LOST by the logger: these counts may be incomplete",
            "0 ERRORS"
        ],
        "{}",
        stdout(&o)
    );
}

// ---------------------------------------------------------------------------------------------
// Bad arguments on a terminal.

/// clap quotes a bad argument as given and, on a terminal, lets its escapes through: constat's
/// usage errors are escaped too. Its stderr is a pseudo-terminal here, as at a shell.
#[test]
fn bad_arguments_are_escaped_on_a_terminal() {
    let p = pty();
    let child = Command::new(bin("constat"))
        .args(["-d", "\u{1b}[7m2004", "--\u{1b}]0;PWN\u{7}"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(p.slave.try_clone().unwrap())
        .spawn()
        .unwrap();
    let status = wait_with_deadline(child, "constat with bad arguments");
    assert_eq!(status.code(), Some(2));
    let Pty {
        mut master, slave, ..
    } = p;
    drop(slave);
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    // After the last slave descriptor closed, the master reads what was written, then EIO.
    while let Ok(n) = master.read(&mut chunk) {
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    assert!(!buf.is_empty(), "no error message");
    assert_clean(&buf, "constat's usage error on a terminal");
}
