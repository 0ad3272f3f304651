//! What ipclog owes the people who read its outputs, checked on the conntrack daemon under
//! load (the lab: client, NAT router and server in network namespaces, the real `ipclog` in the
//! router): a `kill -9` in the middle of a flood and a restart leave a sound database and a log
//! of whole lines, and constat counts the connections open across the kill once; a disk that
//! fills up costs exactly the lines said on stderr, exit 1, and writing resumes when space
//! returns; SIGHUP rotations during a flood lose and duplicate no line; a reader that closes
//! the pipe stops the daemon quietly; database queue drops are written, stored and reported.
//!
//! Needs root (namespaces, nftables, mounts); prints SKIPPED otherwise. Build the binaries
//! first: `cargo build --workspace --bins`.

use std::collections::BTreeMap;
use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use e2e::bins::{bin, scratch};
use e2e::lab::{Ipclog, Lab, CLIENT, SERVER};
use e2e::netns::wait_for;
use e2e::require_netns;
use shared::logfmt::{parse_line, ConnLine, LogLine};
use shared::EventKind;

/// The destination port of the flood flows: the server never answers it, so every flow is
/// exactly an O line and (after `udp_timeout`, 2 s in the lab) a C line.
const FLOOD_PORT: u16 = 5354;

fn conn(l: &str) -> Option<ConnLine<'_>> {
    match parse_line(l) {
        Ok(LogLine::Conn(c)) => Some(c),
        _ => None,
    }
}

/// The source ports of the flood's lines of `kind` in `text`, with how often each occurs.
fn flood_ports(text: &str, kind: EventKind) -> BTreeMap<u16, usize> {
    let mut m = BTreeMap::new();
    for c in text.lines().filter_map(conn) {
        if c.kind == kind && c.proto == 17 && c.dport == Some(FLOOD_PORT) {
            *m.entry(c.sport.expect("udp has ports")).or_insert(0) += 1;
        }
    }
    m
}

fn flood_count(text: &str, kind: EventKind) -> usize {
    flood_ports(text, kind).values().sum()
}

/// constat's numeric report of a whole file (log or database), whitespace collapsed.
fn constat(file: &Path) -> Vec<String> {
    let out = Command::new(bin("constat"))
        .args(["-a", "-n", "--no-cache", "-f"])
        .arg(file)
        .env("TZ", "UTC")
        .output()
        .unwrap();
    assert!(out.status.success(), "constat {}: {out:?}", file.display());
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect()
}

/// `n` and `nopn` of the report row `src prot dport dst`.
fn report_row(report: &[String], key: &str) -> (u64, u64) {
    let row = report
        .iter()
        .find(|l| l.starts_with(&format!("{key} ")))
        .unwrap_or_else(|| panic!("no row {key:?} in the report:\n{}", report.join("\n")));
    let f: Vec<&str> = row.split(' ').collect();
    (f[4].parse().unwrap(), f[5].parse().unwrap())
}

/// The N of constat's `N EVENTS LOST by the logger` line, if it printed one.
fn events_lost(report: &[String]) -> Option<u64> {
    report
        .iter()
        .find(|l| l.ends_with("EVENTS LOST by the logger: these counts may be incomplete"))
        .map(|l| l.split(' ').next().unwrap().parse().unwrap())
}

/// The sum of N over the log's `P <time> WORD N events ...` lines.
fn p_events(text: &str, word: &str) -> u64 {
    text.lines()
        .filter(|l| l.starts_with("P "))
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.get(2) == Some(&word) && f.get(4) == Some(&"events"))
                .then(|| f[3].parse::<u64>().unwrap())
        })
        .sum()
}

fn conntrack_count(lab: &Lab) -> u64 {
    lab.router
        .run_stdout(&["cat", "/proc/sys/net/netfilter/nf_conntrack_count"])
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(u64::MAX)
}

/// Waits until the router's table is empty: every flow has expired and its DESTROY event is
/// in ipclog's socket (ipclog reads what is queued before it stops).
fn wait_table_empty(lab: &Lab) {
    wait_for(Duration::from_secs(15), || {
        (conntrack_count(lab) == 0).then_some(())
    })
    .unwrap_or_else(|| panic!("{} entries left in the table", conntrack_count(lab)));
}

/// A long-lived TCP connection of the client to `port` (echoed), open until `close`.
struct LongConn {
    child: Child,
    out: BufReader<std::process::ChildStdout>,
    sport: u16,
}

impl LongConn {
    fn open(lab: &Lab, port: &str) -> LongConn {
        let mut child = lab.spawn_client(&["long", SERVER, port, "10"]);
        let mut out = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        out.read_line(&mut line).unwrap();
        let sport = line.trim().parse().unwrap();
        line.clear();
        out.read_line(&mut line).unwrap();
        assert_eq!(line.trim(), "open");
        LongConn { child, out, sport }
    }

    fn close(mut self) {
        self.child.stdin.take().unwrap().write_all(b"\n").unwrap();
        let mut line = String::new();
        self.out.read_line(&mut line).unwrap();
        assert_eq!(line.trim(), "done");
        assert!(self.child.wait().unwrap().success());
    }
}

/// The log's lines of the TCP connection from `sport`.
fn tcp_lines(text: &str, sport: u16) -> Vec<String> {
    text.lines()
        .filter(|l| conn(l).is_some_and(|c| c.proto == 6 && c.sport == Some(sport)))
        .map(str::to_string)
        .collect()
}

/// `kill -9` of ipclog while a UDP flood is being logged, with two TCP connections open, then a
/// restart: the database passes `PRAGMA integrity_check`, the log holds whole lines (or its
/// torn tail is ended and said at restart), the open connections are found again by the
/// start-up dump, and constat, on the log and on the history alike, counts each of them once,
/// closed; no flow of the flood is counted twice.
#[test]
fn kill_9_under_a_flood_then_restart_counts_every_connection_once() {
    require_netns!();
    let lab = Lab::new();
    let dir = scratch("tc-kill9");
    let db = dir.join("h.db");
    let args = ["--db", db.to_str().unwrap()];
    let ipc = Ipclog::start(&lab.router, &dir, &args);
    let began = Instant::now();
    // Two ports, so each connection is a report row of its own.
    let longs = [LongConn::open(&lab, "8080"), LongConn::open(&lab, "8083")];
    for l in &longs {
        ipc.wait_line(
            |line| line.starts_with("O ") && tcp_lines(line, l.sport).len() == 1,
            "O of a long connection",
        );
    }
    let open_rows = || -> i64 {
        let Ok(c) = store::open_read_only(&db) else {
            return 0;
        };
        c.query_row(
            "SELECT count(*) FROM connections WHERE proto = 6 AND orig_p IN (?1, ?2)",
            [longs[0].sport, longs[1].sport],
            |r| r.get(0),
        )
        .unwrap_or(0)
    };
    wait_for(Duration::from_secs(10), || (open_rows() == 2).then_some(()))
        .expect("both long connections in the history before the kill");

    // 1500 flows at 500 a second: the kill comes early, the restart while it goes on.
    let flood = lab.spawn_client(&["udprate", SERVER, "5354", "1500", "10000", "500"]);
    wait_for(Duration::from_secs(10), || {
        (flood_count(&ipc.text(), EventKind::Open) >= 150).then_some(())
    })
    .expect("the flood is being logged");
    let log = ipc.log.clone();
    drop(ipc); // SIGKILL, and reaped
    let at_kill = fs::read(&log).unwrap();
    let torn = !at_kill.ends_with(b"\n");
    let lines_at_kill = at_kill.split(|&b| b == b'\n').count() - 1 + torn as usize;
    {
        let c = store::open_read_only(&db).unwrap();
        let check: String = c
            .query_row("PRAGMA integrity_check", [], |r| r.get(0))
            .unwrap();
        assert_eq!(check, "ok");
    }

    let ipc = Ipclog::start(&lab.router, &dir, &args);
    // The start-up dump finds both again (the run's own part of the log, after its P line).
    let run2 = |t: &str| t[t.rfind(" ipclog started\n").unwrap()..].to_string();
    for l in &longs {
        ipc.wait_line(
            |line| {
                line.starts_with("O ")
                    && line.contains(" found=start")
                    && tcp_lines(line, l.sport).len() == 1
            },
            "O found=start of a long connection",
        );
    }
    let out = flood.wait_with_output().unwrap();
    assert!(out.status.success(), "{out:?}");
    let [a, b] = longs;
    let sports = [a.sport, b.sport];
    a.close();
    b.close();
    for sport in sports {
        ipc.wait_line(
            |line| line.starts_with("C ") && tcp_lines(line, sport).len() == 1,
            "C of a long connection",
        );
    }
    wait_table_empty(&lab);
    let text = ipc.stop();

    // The log: whole lines, or a torn tail that the restart ended and said.
    let lines: Vec<&str> = text.lines().collect();
    for (i, l) in lines.iter().enumerate() {
        if torn && i == lines_at_kill - 1 {
            continue;
        }
        parse_line(l).unwrap_or_else(|e| panic!("line {}: {e}: {l:?}", i + 1));
    }
    assert_eq!(
        text.contains("its last line was incomplete"),
        torn,
        "torn at the kill: {torn}"
    );
    // Each long connection: its O (run 1), found again (run 2), one C (run 2).
    for sport in sports {
        let l = tcp_lines(&text, sport);
        let kinds: Vec<&str> = l.iter().map(|l| &l[..1]).collect();
        assert_eq!(kinds.first(), Some(&"O"), "{l:#?}");
        assert_eq!(kinds.iter().filter(|k| **k == "C").count(), 1, "{l:#?}");
        let found = l.iter().filter(|l| l.contains(" found=start")).count();
        assert_eq!(found, 1, "{l:#?}");
        assert!(run2(&text).contains(l.last().unwrap().as_str()), "{l:#?}");
    }
    // The flood: flows open across the kill were found again; none was closed twice.
    let opened = flood_ports(&text, EventKind::Open);
    let closed = flood_ports(&text, EventKind::Close);
    let refound = flood_ports(&run2(&text), EventKind::Open)
        .keys()
        .filter(|p| opened[p] == 2)
        .count();
    assert!(refound > 0, "no flow open across the kill");
    assert!(closed.values().all(|&n| n == 1), "{closed:?}");
    let never_closed = opened.keys().filter(|p| !closed.contains_key(p)).count() as u64;

    // constat on the log and on the history: the long connections once each, closed; every
    // flow once.
    let report = constat(&log);
    for port in [8080, 8083] {
        let key = format!("{CLIENT} tcp {port} {SERVER}");
        assert_eq!(report_row(&report, &key), (1, 0), "{key}: {report:#?}");
    }
    let udp_key = format!("{CLIENT} udp {FLOOD_PORT} {SERVER}");
    assert_eq!(
        report_row(&report, &udp_key),
        (opened.len() as u64, never_closed),
        "{report:#?}"
    );
    let report = constat(&db);
    for port in [8080, 8083] {
        let key = format!("{CLIENT} tcp {port} {SERVER}");
        assert_eq!(
            report_row(&report, &key),
            (1, 0),
            "history {key}: {report:#?}"
        );
    }
    let c = store::open_read_only(&db).unwrap();
    let (flows, unclosed): (i64, i64) = c
        .query_row(
            "SELECT count(DISTINCT orig_p),
                    count(DISTINCT orig_p) - count(DISTINCT CASE WHEN close_ts IS NOT NULL
                                                        THEN orig_p END)
             FROM connections WHERE proto = 17 AND dport = ?1",
            [FLOOD_PORT],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!(
        report_row(&report, &udp_key),
        (flows as u64, unclosed as u64),
        "{report:#?}"
    );
    let runs: Vec<(bool, i64)> = c
        .prepare("SELECT stopped IS NOT NULL, errors FROM runs ORDER BY id")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(
        runs,
        vec![(false, 0), (true, 0)],
        "the killed run has no end"
    );
    eprintln!(
        "kill -9: {} flows ({refound} found again, {never_closed} closed while ipclog was \
         down), torn {torn}, {:.1} s",
        opened.len(),
        began.elapsed().as_secs_f64()
    );
}

/// A process in a private mount namespace of its own, with a small tmpfs mounted at a
/// directory: a disk that can be filled without touching the host's. Killed when dropped.
struct SmallDisk {
    holder: Child,
    dir: std::path::PathBuf,
}

impl SmallDisk {
    fn mount(dir: &Path, size: &str) -> SmallDisk {
        fs::create_dir_all(dir).unwrap();
        let script = format!(
            "mount -t tmpfs -o size={size},mode=0755 none '{}' && echo ready && exec sleep 600",
            dir.display()
        );
        let mut holder = Command::new("unshare")
            .args(["-m", "--propagation", "private", "sh", "-c", &script])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        let _ = BufReader::new(holder.stdout.take().unwrap()).read_line(&mut line);
        let disk = SmallDisk {
            holder,
            dir: dir.to_path_buf(),
        };
        assert_eq!(line.trim(), "ready", "cannot mount a tmpfs here");
        disk
    }

    fn pid(&self) -> String {
        self.holder.id().to_string()
    }

    /// Runs `args` in the mount namespace (`nsenter -t PID -m`).
    fn run(&self, args: &[&str]) -> Output {
        Command::new("nsenter")
            .args(["-t", &self.pid(), "-m", "--"])
            .args(args)
            .output()
            .unwrap()
    }

    fn read(&self, name: &str) -> Vec<u8> {
        self.run(&["cat", self.dir.join(name).to_str().unwrap()])
            .stdout
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = self.holder.kill();
        let _ = self.holder.wait();
    }
}

/// The log on a disk that fills up while the daemon runs (a 256 KiB tmpfs in a mount namespace
/// of the test's, filled with a filler file): a clear error on stderr, the lines of the events
/// logged while it was full are missing, exactly as many as stderr's last line says, the file
/// holds whole lines only, and once the filler is removed the daemon writes again. Exit 1.
#[test]
fn a_full_disk_costs_exactly_the_lines_said_and_writing_resumes() {
    require_netns!();
    let lab = Lab::new();
    let dir = scratch("tc-full");
    let disk = SmallDisk::mount(&dir.join("mnt"), "256k");
    let log = disk.dir.join("ipclog.log");
    let errf = dir.join("stderr");
    // `ip netns exec` first (it makes a mount namespace of its own for /sys), then nsenter into
    // the disk's: ipclog runs in the router's network and the disk's mounts.
    let mut child = lab
        .router
        .command("nsenter")
        .args(["-t", &disk.pid(), "-m", "--"])
        .arg(bin("ipclog"))
        .arg("-f")
        .arg(&log)
        .args(["--evict-every", "1", "-s", "1"])
        .env("TZ", "UTC")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(fs::File::create(&errf).unwrap())
        .spawn()
        .unwrap();
    let text = || String::from_utf8_lossy(&disk.read("ipclog.log")).into_owned();
    let stderr = || fs::read_to_string(&errf).unwrap_or_default();
    let wait_closed = |base: u16, n: u16, what: &str| {
        wait_for(Duration::from_secs(15), || {
            let c = flood_ports(&text(), EventKind::Close);
            (base..base + n).all(|p| c.contains_key(&p)).then_some(())
        })
        .unwrap_or_else(|| panic!("{what}: not all closed; log:\n{}\n{}", text(), stderr()))
    };
    wait_for(Duration::from_secs(15), || {
        text().contains(" UP eth0 ").then_some(())
    })
    .unwrap_or_else(|| panic!("not started: {}", stderr()));
    let flows = |base: u16, n: u16| {
        let out = lab.client(&[
            "udprate",
            SERVER,
            "5354",
            &n.to_string(),
            &base.to_string(),
            "200",
        ]);
        assert_eq!(out, vec![format!("sent {n}")]);
    };
    // Before: logged.
    flows(11000, 10);
    wait_closed(11000, 10, "before");
    // Full: the filler takes every block left.
    let filler = disk.dir.join("filler");
    disk.run(&[
        "dd",
        "if=/dev/zero",
        &format!("of={}", filler.display()),
        "bs=4096",
    ]);
    let df = disk.run(&["df", "--output=avail", disk.dir.to_str().unwrap()]);
    assert!(
        String::from_utf8_lossy(&df.stdout)
            .lines()
            .nth(1)
            .map(str::trim)
            == Some("0"),
        "not full: {df:?}"
    );
    flows(12000, 40);
    // Every one of them opened and closed, and the daemon has dealt with it: a statistics
    // line written after the table emptied says nothing is open (it comes after the flush).
    wait_table_empty(&lab);
    let stats = |t: &str| {
        t.lines()
            .filter(|l| l.contains(" events/s, "))
            .map(str::to_string)
            .collect::<Vec<_>>()
    };
    let seen = stats(&stderr()).len();
    wait_for(Duration::from_secs(10), || {
        stats(&stderr())[seen..]
            .iter()
            .any(|l| l.contains(", 0 open,"))
            .then_some(())
    })
    .unwrap_or_else(|| panic!("no statistics line with 0 open:\n{}", stderr()));
    // Space again: the next lines are written.
    let rm = disk.run(&["rm", filler.to_str().unwrap()]);
    assert!(rm.status.success(), "{rm:?}");
    flows(13000, 10);
    wait_closed(13000, 10, "after");
    // SAFETY: signalling our own child (`ip netns exec` and nsenter exec ipclog in place).
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let status = wait_for(Duration::from_secs(10), || child.try_wait().unwrap())
        .expect("ipclog stops on SIGTERM");
    let bytes = disk.read("ipclog.log");
    drop(disk);
    let err = stderr();
    assert_eq!(status.code(), Some(1), "{err}");
    assert!(
        err.contains(&format!("ipclog: log {} write failed (", log.display()))
            && err.contains("No space left on device"),
        "{err}"
    );
    let last = err.lines().last().unwrap_or("");
    let summary = format!("ipclog: log {}: ", log.display());
    assert!(last.starts_with(&summary), "{err}");
    let f: Vec<&str> = last[summary.len()..].split(' ').collect();
    assert_eq!(
        (f[1], f[2], f[3], f[5]),
        ("lines", "not", "written", "failed"),
        "{last}"
    );
    let not_written: usize = f[0].parse().unwrap();
    let failed_writes: u64 = f[4].trim_start_matches('(').parse().unwrap();

    // Whole lines only, every one readable.
    assert!(bytes.ends_with(b"\n"), "torn end");
    let text = String::from_utf8(bytes).unwrap();
    for (i, l) in text.lines().enumerate() {
        parse_line(l).unwrap_or_else(|e| panic!("line {}: {e}: {l:?}", i + 1));
    }
    // Every flow is one O and one C line: those of the flows while the disk was full are the
    // lines missing, no more, no fewer; the ones before and after are all there.
    let opened = flood_ports(&text, EventKind::Open);
    let closed = flood_ports(&text, EventKind::Close);
    for base in [11000, 13000] {
        for p in base..base + 10 {
            assert_eq!(
                (opened.get(&p), closed.get(&p)),
                (Some(&1), Some(&1)),
                "{p}"
            );
        }
    }
    let conn_lines = text.lines().filter(|l| conn(l).is_some()).count();
    assert_eq!(
        conn_lines,
        flood_count(&text, EventKind::Open) + flood_count(&text, EventKind::Close),
        "only the flows' lines: {text}"
    );
    assert_eq!(conn_lines + not_written, 2 * 60, "{err}\n{text}");
    assert!(not_written > 0);
    // The stop line counts the failed writes.
    assert!(
        text.lines()
            .last()
            .unwrap()
            .ends_with(&format!(" ipclog stopped, {failed_writes} errors")),
        "{text}"
    );
    eprintln!(
        "full disk: {not_written} lines not written in {failed_writes} failed writes, {} of \
         the 80 lines of the 40 flows while full got in",
        80 - not_written
    );
}

/// logrotate during a flood: the log is moved away and SIGHUP sent, several times while 3000
/// UDP flows are being logged. Across all the files every flow has exactly one O and one C
/// line, and every line parses.
#[test]
fn sighup_rotations_during_a_flood_lose_and_duplicate_no_line() {
    require_netns!();
    let lab = Lab::new();
    let dir = scratch("tc-hup");
    let ipc = Ipclog::start(&lab.router, &dir, &[]);
    let began = Instant::now();
    const FLOWS: usize = 3000;
    let flood = lab.spawn_client(&[
        "udprate",
        SERVER,
        "5354",
        &FLOWS.to_string(),
        "10000",
        "1000",
    ]);
    let mut rotated = Vec::new();
    for i in 1..=4 {
        // Each file gets a share of the flood's lines before it is moved away.
        wait_for(Duration::from_secs(15), || {
            let t = ipc.text();
            (flood_count(&t, EventKind::Open) + flood_count(&t, EventKind::Close) >= 500)
                .then_some(())
        })
        .unwrap_or_else(|| panic!("rotation {i}: the log does not grow:\n{}", ipc.text()));
        let to = dir.join(format!("ipclog.log.{i}"));
        fs::rename(&ipc.log, &to).unwrap();
        // SAFETY: signalling our own child.
        unsafe { libc::kill(ipc.child.id() as i32, libc::SIGHUP) };
        rotated.push(to);
    }
    let all = |current: &str| {
        let mut t: String = rotated
            .iter()
            .map(|p| fs::read_to_string(p).unwrap())
            .collect();
        t.push_str(current);
        t
    };
    let out = flood.wait_with_output().unwrap();
    assert!(out.status.success(), "{out:?}");
    let flood_running = began.elapsed();
    wait_table_empty(&lab);
    let current = ipc.stop();
    let text = all(&current);
    let opened = flood_ports(&text, EventKind::Open);
    let closed = flood_ports(&text, EventKind::Close);
    for (what, ports) in [("O", &opened), ("C", &closed)] {
        let dup: Vec<_> = ports.iter().filter(|(_, &n)| n != 1).collect();
        assert!(dup.is_empty(), "{what} lines more than once: {dup:?}");
        assert_eq!(ports.len(), FLOWS, "{what} lines");
    }
    for (i, l) in text.lines().enumerate() {
        parse_line(l).unwrap_or_else(|e| panic!("line {}: {e}: {l:?}", i + 1));
    }
    assert_eq!(
        p_events(&text, "lost"),
        0,
        "events lost: the counts mean nothing"
    );
    // Every file had its share; the rotations happened during the flood.
    let per_file: Vec<usize> = rotated
        .iter()
        .map(|p| fs::read_to_string(p).unwrap())
        .chain(std::iter::once(current))
        .map(|t| flood_count(&t, EventKind::Open) + flood_count(&t, EventKind::Close))
        .collect();
    assert!(per_file.iter().all(|&n| n > 0), "{per_file:?}");
    eprintln!(
        "rotation: {FLOWS} flows in {:.1} s, lines per file {per_file:?}, {:.1} s in all",
        flood_running.as_secs_f64(),
        began.elapsed().as_secs_f64()
    );
}

/// `ipclog | head`: the conntrack daemon writing to a pipe whose reader goes away stops
/// within a few seconds, with exit status 0 and nothing on stderr, although traffic (and so
/// output) keeps coming.
#[test]
fn a_closed_pipe_stops_the_conntrack_daemon_quietly() {
    require_netns!();
    let lab = Lab::new();
    let mut child = lab
        .router
        .command(bin("ipclog"))
        .args(["--evict-every", "1"])
        .env("TZ", "UTC")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut flood = lab.spawn_client(&["udprate", SERVER, "5354", "5000", "10000", "500"]);
    // Read until the flood shows, then go away.
    let mut line = String::new();
    let deadline = Instant::now() + Duration::from_secs(15);
    while !(line.starts_with("O ") && line.contains(" 5354 ")) {
        line.clear();
        assert!(
            out.read_line(&mut line).unwrap() > 0 && Instant::now() < deadline,
            "no flood line on stdout"
        );
    }
    drop(out);
    let closed_at = Instant::now();
    let status = wait_for(Duration::from_secs(5), || child.try_wait().unwrap());
    let stopped_after = closed_at.elapsed();
    let flood_done = flood.try_wait().unwrap();
    let Some(status) = status else {
        let _ = child.kill();
        panic!("ipclog kept running after its reader went away");
    };
    let mut err = String::new();
    stderr.read_to_string(&mut err).unwrap();
    assert_eq!(status.code(), Some(0), "{err}");
    assert_eq!(err, "");
    assert!(flood_done.is_none(), "the flood ended before ipclog did");
    let _ = flood.kill();
    let _ = flood.wait();
    eprintln!(
        "closed pipe: stopped {} ms after the reader went away",
        stopped_after.as_millis()
    );
}

/// The database writer of a live source cannot keep up (`--db-queue 16` under a burst of
/// 3000 flows): what it dropped is written as `P ... dropped N events` lines whose sum is
/// `runs.dropped`, and constat says EVENTS LOST from the log and from the history alike.
#[test]
fn database_queue_drops_are_written_stored_and_reported() {
    require_netns!();
    let lab = Lab::new();
    let dir = scratch("tc-dbdrop");
    let db = dir.join("h.db");
    let ipc = Ipclog::start(
        &lab.router,
        &dir,
        &["--db", db.to_str().unwrap(), "--db-queue", "16"],
    );
    let began = Instant::now();
    assert_eq!(
        lab.client(&["udpburst", SERVER, "5354", "3000"]),
        vec!["sent 3000"]
    );
    wait_table_empty(&lab);
    let log = ipc.log.clone();
    let stderr = ipc.stderr.clone();
    let text = ipc.stop();
    assert_eq!(flood_count(&text, EventKind::Close), 3000);
    let dropped = p_events(&text, "dropped");
    let lost = p_events(&text, "lost");
    assert!(dropped > 0, "nothing dropped with a queue of 16:\n{text}");
    let c = store::open_read_only(&db).unwrap();
    let (run_lost, run_dropped, rows): (i64, i64, i64) = c
        .query_row(
            "SELECT lost_events, dropped, (SELECT count(*) FROM connections) FROM runs",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .unwrap();
    assert_eq!(
        (run_dropped as u64, run_lost as u64),
        (dropped, lost),
        "{text}"
    );
    // Said at the end too, as a note (not a write failure: exit status 0).
    let err = fs::read_to_string(&stderr).unwrap();
    assert!(
        err.contains(&format!(
            ": {dropped} events dropped because the queue was full"
        )),
        "{err}"
    );
    for file in [&log, &db] {
        let report = constat(file);
        assert_eq!(
            events_lost(&report),
            Some(dropped + lost),
            "{}: {report:#?}",
            file.display()
        );
    }
    eprintln!(
        "db drops: {dropped} events dropped, {rows} rows, {:.1} s",
        began.elapsed().as_secs_f64()
    );
}
