//! What ipclog owes the people who read its outputs months later, checked on `ipclog -r` as a
//! user runs it: a capture file never loses a history row to a full queue (the reader waits),
//! a failed or partial write is an exit status of 1 with exact counts and never leaves a torn
//! line, a torn line an earlier run left is ended and said, a reader that closes the pipe stops
//! the run quietly, a capture's P lines and runs carry packet time, and a `kill -9` in the
//! middle leaves a database that passes `PRAGMA integrity_check`.

use std::fs;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use e2e::bins::{bin, scratch};
use e2e::netns::wait_for;
use e2e::pcapgen::{self, Link, Session};
use shared::logfmt::{parse_line, LogLine};

/// 2023-11-14 22:13:20 UTC.
const T0: i64 = 1_700_000_000_000_000;
const MS: i64 = 1000;

/// `n` short TCP connections, one after the other: 6 packets each (handshake and both FINs),
/// 1 ms apart, each from its own client address and port.
fn short_connections(n: u32) -> Vec<(i64, Vec<u8>)> {
    let mut packets = Vec::with_capacity(n as usize * 6);
    for i in 0..n {
        let t = T0 + i as i64 * 6 * MS;
        let client = format!(
            "10.{}.{}.{}:{}",
            (i >> 16) & 255,
            (i >> 8) & 255,
            i & 255,
            1024 + i % 60000
        );
        let mut s = Session::new(&client, "192.0.2.1:443", i.wrapping_mul(7919), i);
        s.handshake(t).close(t + 3 * MS);
        packets.append(&mut s.packets);
    }
    packets
}

fn capture(dir: &Path, name: &str, n: u32) -> PathBuf {
    let p = dir.join(name);
    pcapgen::write(&p, &Link::Ethernet(vec![]), false, &short_connections(n)).unwrap();
    p
}

fn ipclog(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(bin("ipclog"))
        .args(args)
        .env("TZ", "UTC")
        .stdin(Stdio::null())
        .output()
        .expect("run ipclog");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn sql(db: &Path, query: &str) -> String {
    let out = Command::new("sqlite3")
        .arg(db)
        .arg(query)
        .output()
        .expect("sqlite3 (the test command installs it)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// The number before `what` in the stderr summary line naming `target`.
fn summary_count(stderr: &str, target: &str, what: &str) -> u64 {
    let line = stderr
        .lines()
        .find(|l| l.contains(target) && l.contains(what) && l.contains(" not written ("))
        .unwrap_or_else(|| panic!("no summary for {target} in stderr:\n{stderr}"));
    let before = line.split(what).next().unwrap();
    before
        .rsplit(' ')
        .find(|w| !w.is_empty())
        .and_then(|w| w.parse().ok())
        .unwrap_or_else(|| panic!("no count in {line:?}"))
}

fn c_lines(log: &str) -> usize {
    log.lines().filter(|l| l.starts_with("C ")).count()
}

/// Issue: a capture read into `--db` lost a third of its rows when the database queue filled,
/// with exit status 0. A file can wait: with the smallest queue every row must arrive.
#[test]
fn a_capture_file_waits_for_the_database_instead_of_dropping() {
    let dir = scratch("trust-backpressure");
    let cap = capture(&dir, "short.pcap", 20_000);
    let db = dir.join("h.db");
    let log = dir.join("ipclog.log");
    let (code, _, err) = ipclog(&[
        "-r",
        cap.to_str().unwrap(),
        "--db",
        db.to_str().unwrap(),
        "--db-queue",
        "16",
        "-f",
        log.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(sql(&db, "SELECT count(*) FROM connections"), "20000");
    assert_eq!(
        sql(
            &db,
            "SELECT count(*) FROM connections WHERE close_ts IS NULL"
        ),
        "0"
    );
    assert_eq!(sql(&db, "SELECT dropped, lost_events FROM runs"), "0|0");
    let text = fs::read_to_string(&log).unwrap();
    assert_eq!(c_lines(&text), 20_000);
    let drop_lines: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("P ") && l.contains("events (database"))
        .collect();
    assert!(drop_lines.is_empty(), "{drop_lines:?}");
}

/// `-f /dev/full` (and `--json /dev/full`): every write fails; exit status 1 and a last word
/// on stderr with the exact number of lines not written.
#[test]
fn failed_writes_exit_1_with_exact_counts() {
    let dir = scratch("trust-devfull");
    let cap = capture(&dir, "c.pcap", 300);
    let good_log = dir.join("good.log");
    let good_json = dir.join("good.json");
    let (code, _, err) = ipclog(&[
        "-r",
        cap.to_str().unwrap(),
        "-f",
        good_log.to_str().unwrap(),
        "--json",
        good_json.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{err}");
    let lines = fs::read_to_string(&good_log).unwrap().lines().count() as u64;
    let objects = fs::read_to_string(&good_json).unwrap().lines().count() as u64;

    let (code, _, err) = ipclog(&["-r", cap.to_str().unwrap(), "-f", "/dev/full"]);
    assert_eq!(code, 1, "{err}");
    assert_eq!(
        summary_count(&err, "log /dev/full", " lines"),
        lines,
        "{err}"
    );
    assert!(err.contains("No space left on device"), "{err}");

    let log = dir.join("ok.log");
    let (code, _, err) = ipclog(&[
        "-r",
        cap.to_str().unwrap(),
        "-f",
        log.to_str().unwrap(),
        "--json",
        "/dev/full",
    ]);
    assert_eq!(code, 1, "{err}");
    assert_eq!(
        summary_count(&err, "json /dev/full", " lines"),
        objects,
        "{err}"
    );
    // The log that could be written was, to its stop line, which counts the failures.
    let text = fs::read_to_string(&log).unwrap();
    let last = text.lines().last().unwrap();
    assert!(
        last.contains("ipclog stopped,") && !last.ends_with(" 0 errors"),
        "{last}"
    );
}

/// Runs `ipclog ARGS` (with `@` in an argument standing for the mount point) in a private
/// mount namespace with a tmpfs of `size` on `dir/mnt`, then copies what it left on that disk
/// to `dir/out`: (exit status, standard error, `dir/out`).
fn ipclog_on_tmpfs(dir: &Path, size: &str, args: &[&str]) -> (Option<i32>, String, PathBuf) {
    let mnt = dir.join("mnt");
    let out = dir.join("out");
    fs::create_dir_all(&mnt).unwrap();
    fs::create_dir_all(&out).unwrap();
    let errf = dir.join("stderr");
    let script = r#"mount -t tmpfs -o "size=$SIZE,mode=0755" none "$MNT" || exit 99
"$@" 2>"$ERR"
code=$?
cp -a "$MNT"/. "$OUT"/
exit $code"#;
    let mnt_s = mnt.to_str().unwrap();
    let st = Command::new("unshare")
        .args(["-m", "--propagation", "private", "sh", "-c", script, "sh"])
        .arg(bin("ipclog"))
        .args(args.iter().map(|a| a.replace('@', mnt_s)))
        .env("SIZE", size)
        .env("MNT", &mnt)
        .env("OUT", &out)
        .env("ERR", &errf)
        .env("TZ", "UTC")
        .status()
        .unwrap();
    let err = fs::read_to_string(&errf).unwrap_or_default();
    assert_ne!(st.code(), Some(99), "cannot mount a tmpfs here");
    (st.code(), err, out)
}

/// A disk that fills up in the middle of a write: a tmpfs of 64 KiB in a private mount
/// namespace. Exit 1, the lines written plus the lines said to be lost are all the lines, and
/// the file holds whole lines only (the torn fragment of the short write is cut off again).
#[test]
fn a_full_disk_leaves_only_whole_lines_and_says_how_many_were_lost() {
    if let Some(why) = e2e::netns::skip_reason() {
        eprintln!("SKIPPED a_full_disk_leaves_only_whole_lines: {why}");
        return;
    }
    let dir = scratch("trust-tmpfs");
    let cap = capture(&dir, "c.pcap", 3000);
    let good = dir.join("good.log");
    let (code, _, err) = ipclog(&["-r", cap.to_str().unwrap(), "-f", good.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    let total = fs::read_to_string(&good).unwrap().lines().count() as u64;
    assert!(total > 6000, "the log must be far larger than the disk");

    let (code, err, out) = ipclog_on_tmpfs(
        &dir,
        "64k",
        &["-r", cap.to_str().unwrap(), "-f", "@/ipclog.log"],
    );
    assert_eq!(code, Some(1), "{err}");
    let copy = out.join("ipclog.log");
    let bytes = fs::read(&copy).unwrap();
    assert!(!bytes.is_empty() && bytes.ends_with(b"\n"), "torn end");
    let text = String::from_utf8(bytes).unwrap();
    for (n, l) in text.lines().enumerate() {
        parse_line(l).unwrap_or_else(|e| panic!("line {}: {e}: {l:?}", n + 1));
    }
    let written = text.lines().count() as u64;
    let lost = summary_count(&err, "ipclog.log", " lines");
    assert_eq!(written + lost, total, "{err}");
    assert!(lost > 0 && written > 100, "{written} written, {lost} lost");
}

/// A log whose last line an earlier run left without its newline (killed, or a full disk):
/// the next run ends that line first, says so on stderr and in a P line, and its own lines
/// start on a line of their own.
#[test]
fn a_torn_last_line_is_ended_and_reported() {
    let dir = scratch("trust-torn");
    let cap = capture(&dir, "c.pcap", 3);
    let log = dir.join("ipclog.log");
    let fragment = "O 2023-11-14-22:13:20 tcp  10.0.0.1        192.0.2.1       10";
    fs::write(
        &log,
        format!("P 2023-11-14-22:13:19 ipclog started\n{fragment}"),
    )
    .unwrap();
    let (code, _, err) = ipclog(&["-r", cap.to_str().unwrap(), "-f", log.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("last line was incomplete"), "{err}");
    let text = fs::read_to_string(&log).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[1], fragment);
    assert!(lines[2].starts_with("P ") && lines[2].ends_with(" ipclog started"));
    assert!(
        lines[3].starts_with("P ") && lines[3].contains("last line was incomplete (61 bytes"),
        "{}",
        lines[3]
    );
    assert_eq!(c_lines(&text), 3);
}

/// Spawns `ipclog -r - ARGS` with its stdin and stdout piped.
fn spawn_reading_stdin(args: &[&str]) -> std::process::Child {
    Command::new(bin("ipclog"))
        .args(["-r", "-"])
        .args(args)
        .env("TZ", "UTC")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// `ipclog -r - | head -c 100`: once the reader is gone the run stops, quietly and with exit
/// status 0, although its input never ends (stdin is kept open here).
#[test]
fn a_closed_pipe_stops_the_run_quietly() {
    for args in [&[][..], &["--json", "-"][..]] {
        let mut bytes = Vec::new();
        let packets = short_connections(4000);
        let recs: Vec<pcapgen::Record> = packets
            .iter()
            .map(|(t, ip)| pcapgen::Record::new(*t, Link::Ethernet(vec![]).frame(ip)))
            .collect();
        bytes.extend(pcapgen::pcap_bytes(1, 65535, &recs[..12_000]));
        let mut rest = Vec::new();
        for r in &recs[12_000..] {
            pcapgen::push_pcap_record(&mut rest, 65535, r);
        }
        let mut child = spawn_reading_stdin(args);
        let mut stdin = child.stdin.take().unwrap();
        let mut stdout = child.stdout.take().unwrap();
        let mut stderr = child.stderr.take().unwrap();
        let (more_tx, more_rx) = std::sync::mpsc::channel::<()>();
        // Input from a thread (ipclog's output fills its pipe while it reads): the first part,
        // then, once the reader has gone, more input so there is more output to write into
        // the closed pipe. The input stays open: only the closed output may end the run.
        let feeder = std::thread::spawn(move || {
            let _ = stdin.write_all(&bytes);
            if more_rx.recv().is_ok() {
                let _ = stdin.write_all(&rest);
            }
            let _ = more_rx.recv_timeout(Duration::from_secs(30));
            drop(stdin);
        });
        let mut head = [0u8; 100];
        stdout.read_exact(&mut head).unwrap();
        drop(stdout);
        more_tx.send(()).unwrap();
        let status = wait_for(Duration::from_secs(20), || child.try_wait().unwrap());
        let Some(status) = status else {
            let _ = child.kill();
            panic!("ipclog {args:?} kept running after its reader went away");
        };
        let mut err = String::new();
        stderr.read_to_string(&mut err).unwrap();
        assert_eq!(status.code(), Some(0), "{args:?}: {err}");
        assert_eq!(err, "", "{args:?}");
        drop(more_tx);
        feeder.join().unwrap();
    }
}

/// A capture read today keeps the capture's clock: its P and H lines carry packet time, and
/// so does its run in the history, so what it lost counts on the day it happened.
#[test]
fn a_capture_keeps_one_clock() {
    let dir = scratch("trust-clock");
    let cap = capture(&dir, "c.pcap", 50);
    let db = dir.join("h.db");
    let log = dir.join("ipclog.log");
    let (code, _, err) = ipclog(&[
        "-r",
        cap.to_str().unwrap(),
        "-f",
        log.to_str().unwrap(),
        "--db",
        db.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{err}");
    let text = fs::read_to_string(&log).unwrap();
    for l in text.lines() {
        assert!(l[2..].starts_with("2023-11-14-22:13:"), "{l}");
    }
    let last_packet = (T0 + 49 * 6 * MS + 5 * MS) as f64 / 1e6;
    let times = sql(&db, "SELECT started, stopped FROM runs");
    let (a, b) = times.split_once('|').unwrap();
    let (a, b): (f64, f64) = (a.parse().unwrap(), b.parse().unwrap());
    assert!((a - T0 as f64 / 1e6).abs() < 1e-3, "{times}");
    assert!((b - last_packet).abs() < 1e-3, "{times}");
}

/// `kill -9` in the middle of a capture written to a log and a database, then a second run
/// on the same files: the database passes its integrity check, a torn last line is ended and
/// said by the second run, and every line but that one reads back.
#[test]
fn kill_9_mid_capture_leaves_consistent_files() {
    let dir = scratch("trust-kill9");
    let cap = capture(&dir, "big.pcap", 200_000);
    let db = dir.join("h.db");
    let log = dir.join("ipclog.log");
    let mut child = Command::new(bin("ipclog"))
        .args(["-r", cap.to_str().unwrap(), "-f", log.to_str().unwrap()])
        .args(["--db", db.to_str().unwrap(), "--db-queue", "4096"])
        .env("TZ", "UTC")
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Killed once both files are being written.
    let busy = wait_for(Duration::from_secs(60), || {
        let rows = Command::new("sqlite3")
            .arg(&db)
            .arg("SELECT count(*) FROM connections")
            .output()
            .ok()
            .and_then(|o| {
                String::from_utf8_lossy(&o.stdout)
                    .trim()
                    .parse::<u64>()
                    .ok()
            })
            .unwrap_or(0);
        let size = fs::metadata(&log).map(|m| m.len()).unwrap_or(0);
        (rows > 1000 && size > 1 << 20).then_some(())
    });
    let still_running = child.try_wait().unwrap().is_none();
    child.kill().unwrap();
    child.wait().unwrap();
    busy.expect("ipclog wrote rows and lines");
    assert!(
        still_running,
        "the capture ended before the kill: make it larger"
    );
    assert_eq!(sql(&db, "PRAGMA integrity_check"), "ok");
    let rows_before: u64 = sql(&db, "SELECT count(*) FROM connections")
        .parse()
        .unwrap();

    let small = capture(&dir, "small.pcap", 10);
    let (code, _, err) = ipclog(&[
        "-r",
        small.to_str().unwrap(),
        "-f",
        log.to_str().unwrap(),
        "--db",
        db.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(sql(&db, "PRAGMA integrity_check"), "ok");
    let rows_after: u64 = sql(&db, "SELECT count(*) FROM connections")
        .parse()
        .unwrap();
    assert_eq!(rows_after, rows_before + 10);
    let text = fs::read_to_string(&log).unwrap();
    let torn_said = text.contains("last line was incomplete");
    assert_eq!(torn_said, err.contains("last line was incomplete"), "{err}");
    let bad: Vec<&str> = text.lines().filter(|l| parse_line(l).is_err()).collect();
    assert!(bad.len() <= usize::from(torn_said), "{bad:?}");
    let restarted = text
        .lines()
        .filter(|l| l.ends_with(" ipclog started"))
        .count();
    assert_eq!(restarted, 2);
    // The second run's connections are all there, whole.
    let second = text.rsplit(" ipclog started\n").next().unwrap();
    let closes = second
        .lines()
        .filter(
            |l| matches!(parse_line(l), Ok(LogLine::Conn(c)) if c.kind == shared::EventKind::Close),
        )
        .count();
    assert_eq!(closes, 10, "{second}");
}

/// ipclog's own messages quote what it was given (a filter, a path) escaped: a hostile
/// argument or file name cannot retitle or recolour the terminal through them.
#[test]
fn messages_escape_what_they_quote() {
    let hostile = "\u{1b}]0;PWN\u{7}\u{1b}[7m\u{202e}";
    let path = format!("/proc/nonexistent/{hostile}");
    let option = format!("--bogus{hostile}");
    for args in [
        vec!["--proto", hostile],
        vec!["-r", hostile],
        vec!["-r", "/dev/null", "-f", path.as_str()],
        vec![option.as_str()],
    ] {
        let out = Command::new(bin("ipclog")).args(&args).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = String::from_utf8(out.stderr).unwrap();
        assert!(!err.is_empty(), "{args:?}");
        assert!(
            !err.contains(|c: char| (c.is_control() && c != '\n') || c == '\u{202e}'),
            "{args:?}: {err:?}"
        );
    }
}

/// `--db` on a disk that fills up (a 512 KiB tmpfs in a private mount namespace): the run
/// says how many events the database did not get and exits 1, and the rows that were written
/// are whole (integrity check).
#[test]
fn a_full_disk_under_the_database_is_exit_1_with_the_count() {
    if let Some(why) = e2e::netns::skip_reason() {
        eprintln!("SKIPPED a_full_disk_under_the_database: {why}");
        return;
    }
    let dir = scratch("trust-dbfull");
    let cap = capture(&dir, "c.pcap", 20_000);
    let (code, err, out) = ipclog_on_tmpfs(
        &dir,
        "512k",
        &[
            "-r",
            cap.to_str().unwrap(),
            "--db",
            "@/h.db",
            "-f",
            "/dev/null",
        ],
    );
    assert_eq!(code, Some(1), "{err}");
    // With its -wal and -shm: the database as SQLite sees it.
    let copy = out.join("h.db");
    assert_eq!(sql(&copy, "PRAGMA integrity_check"), "ok");
    let missing = summary_count(&err, "database ", " events");
    assert!(missing > 0, "{err}");
    // Every connection is an open and a close; the rows hold the ones that got in.
    let rows: u64 = sql(&copy, "SELECT count(*) FROM connections")
        .parse()
        .unwrap();
    assert!(rows < 20_000, "{rows} rows on a 512 KiB disk?");
    assert!(
        err.contains("database or disk is full") || err.contains("No space"),
        "{err}"
    );
}
