//! ipclog as root among files others may have prepared, and the privileges it keeps: planted
//! symbolic links at -f, --json, --db and --pidfile are refused (exit 2, the path named, the
//! target untouched) unless --follow-symlinks; FIFOs and character devices are accepted as
//! text outputs, directories and sockets are not; the pidfile is locked; once started, ipclog
//! has no capability left (-r) or CAP_NET_ADMIN alone (conntrack), and --user runs it as that
//! user with its files still writable across a SIGHUP reopen.
//!
//! The capture runs read a FIFO the test writes, so ipclog stays running (blocked on the next
//! packet) while the test looks at /proc/PID/status; closing the FIFO ends the run.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use e2e::bins::{bin, scratch};
use e2e::netns::{wait_for, Netns};
use e2e::pcapgen::{self, Link, Record, Session};
use e2e::require_netns;

const T0: i64 = 1_700_000_000_000_000;
const MS: i64 = 1000;

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// Returns from the test (with a message) when not root: capabilities and --user need it.
macro_rules! require_root {
    () => {
        if !is_root() {
            eprintln!("SKIPPED: needs root");
            return;
        }
    };
}

/// One TCP connection, as a capture file's bytes: header (24 bytes) then records.
fn capture_bytes() -> Vec<u8> {
    let mut s = Session::new("10.0.0.1:40000", "10.0.0.2:80", 1000, 5000);
    s.handshake(T0)
        .data(T0 + 10 * MS, true, 100)
        .close(T0 + 20 * MS);
    let link = Link::Ethernet(vec![]);
    let recs: Vec<Record> = s
        .packets
        .iter()
        .map(|(t, ip)| Record::new(*t, link.frame(ip)))
        .collect();
    pcapgen::pcap_bytes(link.linktype(), 65535, &recs)
}

fn capture_file(dir: &Path) -> PathBuf {
    let p = dir.join("small.pcap");
    fs::write(&p, capture_bytes()).unwrap();
    p
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Runs ipclog to its end, killing it (and failing) after 20 s: an open that blocks must not
/// hang the test suite.
fn ipclog(args: &[&str]) -> Output {
    let child = Command::new(bin("ipclog"))
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id() as i32;
    let deadline = Instant::now() + Duration::from_secs(20);
    let waiter = std::thread::spawn(move || child.wait_with_output().unwrap());
    while !waiter.is_finished() {
        if Instant::now() > deadline {
            // SAFETY: our own child, not yet reaped (the waiter has not returned).
            unsafe { libc::kill(pid, libc::SIGKILL) };
            let out = waiter.join().unwrap();
            panic!("ipclog {args:?} still running after 20 s: {out:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    waiter.join().unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn mkfifo(p: &Path) {
    let c = std::ffi::CString::new(s(p)).unwrap();
    // SAFETY: a NUL-terminated path.
    assert_eq!(
        unsafe { libc::mkfifo(c.as_ptr(), 0o600) },
        0,
        "mkfifo {p:?}"
    );
}

/// Opens the FIFO for writing once its reader (ipclog) has opened it; polls, so that an
/// ipclog that died first fails the test instead of hanging it.
fn open_fifo_writer(p: &Path, child: &mut Child) -> fs::File {
    use std::os::unix::fs::OpenOptionsExt;
    wait_for(Duration::from_secs(15), || {
        if let Some(st) = child.try_wait().unwrap() {
            panic!("ipclog exited {st} before reading its FIFO");
        }
        fs::OpenOptions::new()
            .write(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(p)
            .ok()
    })
    .expect("ipclog opens the capture FIFO within 15 s")
}

/// An `ipclog -r FIFO ...` that stays running until [`Running::finish`] closes the FIFO.
struct Running {
    child: Child,
    fifo: Option<fs::File>,
    rest: Vec<u8>,
    stderr: PathBuf,
}

impl Running {
    /// Starts ipclog reading a new FIFO in `dir` (plus `args`), feeds it the capture header and
    /// waits until `ready` (the pidfile holds the pid: everything is open and privileges are
    /// dropped).
    fn start(dir: &Path, args: &[&str], pidfile: &Path) -> Running {
        let fifo = dir.join("cap.fifo");
        mkfifo(&fifo);
        let stderr = dir.join("ipclog.stderr");
        let mut child = Command::new(bin("ipclog"))
            .arg("-r")
            .arg(&fifo)
            .args(args)
            .arg("--pidfile")
            .arg(pidfile)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(fs::File::create(&stderr).unwrap())
            .spawn()
            .unwrap();
        let mut w = open_fifo_writer(&fifo, &mut child);
        let bytes = capture_bytes();
        w.write_all(&bytes[..24]).unwrap();
        let pid = child.id();
        let got = wait_for(Duration::from_secs(15), || {
            if let Some(st) = child.try_wait().unwrap() {
                panic!(
                    "ipclog exited {st}: {}",
                    fs::read_to_string(&stderr).unwrap_or_default()
                );
            }
            fs::read_to_string(pidfile)
                .ok()
                .filter(|t| t.trim() == pid.to_string())
        });
        assert!(got.is_some(), "pidfile {pidfile:?} never held {pid}");
        Running {
            child,
            fifo: Some(w),
            rest: bytes[24..].to_vec(),
            stderr,
        }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends the packets, closes the FIFO and waits for the exit; returns the exit code.
    fn finish(mut self) -> i32 {
        let mut w = self.fifo.take().unwrap();
        w.write_all(&self.rest).unwrap();
        drop(w);
        let st = wait_for(Duration::from_secs(15), || self.child.try_wait().unwrap())
            .expect("ipclog exits within 15 s of the end of its capture");
        let code = st.code().unwrap_or(-1);
        assert_eq!(
            code,
            0,
            "stderr: {}",
            fs::read_to_string(&self.stderr).unwrap_or_default()
        );
        code
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `field` (e.g. `CapEff:`) of every thread of `pid`.
fn status_fields(pid: u32, field: &str) -> Vec<String> {
    let mut out = Vec::new();
    for t in fs::read_dir(format!("/proc/{pid}/task")).unwrap() {
        let st = fs::read_to_string(t.unwrap().path().join("status")).unwrap_or_default();
        if let Some(v) = st.lines().find_map(|l| l.strip_prefix(field)) {
            out.push(v.trim().to_string());
        }
    }
    assert!(!out.is_empty(), "no {field} for {pid}");
    out
}

fn assert_caps(pid: u32, want: &str) {
    for set in ["CapEff:", "CapPrm:", "CapBnd:"] {
        let got = status_fields(pid, set);
        assert!(got.iter().all(|v| v == want), "{set} {got:?}, want {want}");
    }
    for set in ["CapInh:", "CapAmb:"] {
        let got = status_fields(pid, set);
        assert!(got.iter().all(|v| v == "0000000000000000"), "{set} {got:?}");
    }
}

#[test]
fn planted_symlinks_are_refused_and_their_targets_untouched() {
    let d = scratch("trust-symlink");
    let cap = capture_file(&d);
    // The targets stand for root's files elsewhere.
    let victims = d.join("root");
    fs::create_dir(&victims).unwrap();
    let shared_dir = d.join("writable-by-others");
    fs::create_dir(&shared_dir).unwrap();
    for (opt, name, target_exists) in [
        ("-f", "ipclog.log", true),
        ("--json", "ipclog.json", true),
        ("--pidfile", "ipclog.pid", true),
        // SQLite would create a missing target, or write its schema into an empty one.
        ("--db", "ipclog.db", false),
        ("--db", "other.db", true),
    ] {
        let target = victims.join(format!("{name}.target"));
        let _ = fs::remove_file(&target);
        if target_exists {
            fs::write(&target, "").unwrap();
        }
        let link = shared_dir.join(name);
        let _ = fs::remove_file(&link);
        std::os::unix::fs::symlink(&target, &link).unwrap();
        let mut args = vec!["-r", s(&cap), opt, s(&link)];
        if opt != "-f" {
            // A log elsewhere, so the run has a regular output too.
            args.extend(["-f", "/dev/null"]);
        }
        let out = ipclog(&args);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{opt}: {out:?}");
        assert!(
            err.contains(&format!("{}: ", link.display()))
                && err.contains("is a symbolic link")
                && err.contains("--follow-symlinks"),
            "{opt}: {err}"
        );
        assert_eq!(err.lines().count(), 1, "{opt}: {err}");
        if target_exists {
            assert_eq!(fs::read(&target).unwrap(), b"", "{opt}: target written");
        } else {
            assert!(!target.exists(), "{opt}: target created");
        }
        for side in ["-wal", "-shm", "-journal"] {
            let p = PathBuf::from(format!("{}{side}", target.display()));
            assert!(!p.exists(), "{opt}: {p:?} created");
        }
        assert!(
            fs::symlink_metadata(&link)
                .unwrap()
                .file_type()
                .is_symlink(),
            "{opt}: link removed"
        );
    }
}

#[test]
fn follow_symlinks_writes_through_the_link() {
    let d = scratch("trust-follow");
    let cap = capture_file(&d);
    let real = d.join("real");
    fs::create_dir(&real).unwrap();
    let mut args: Vec<String> = vec!["-r".into(), s(&cap).into(), "--follow-symlinks".into()];
    for (opt, name) in [("-f", "log"), ("--json", "json"), ("--db", "db")] {
        let link = d.join(format!("link.{name}"));
        std::os::unix::fs::symlink(real.join(name), &link).unwrap();
        args.extend([opt.to_string(), s(&link).to_string()]);
    }
    let out = ipclog(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let log = fs::read_to_string(real.join("log")).unwrap();
    assert!(log.lines().any(|l| l.starts_with("C ")), "{log}");
    let json = fs::read_to_string(real.join("json")).unwrap();
    assert!(json.contains("\"id.resp_p\":80"), "{json}");
    let db = store::open_read_only(&real.join("db")).unwrap();
    let rows: i64 = db
        .query_row("SELECT count(*) FROM connections", [], |r| r.get(0))
        .unwrap();
    assert_eq!(rows, 1);
}

#[test]
fn fifo_and_char_device_accepted_directory_and_socket_refused() {
    let d = scratch("trust-kinds");
    let cap = capture_file(&d);
    // A character device named on the command line.
    let out = ipclog(&["-r", s(&cap), "-f", "/dev/null"]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    // A FIFO with a reader.
    let fifo = d.join("json.fifo");
    mkfifo(&fifo);
    let reader = {
        let fifo = fifo.clone();
        std::thread::spawn(move || fs::read_to_string(fifo).unwrap())
    };
    let out = ipclog(&["-r", s(&cap), "--json", s(&fifo)]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let json = reader.join().unwrap();
    assert!(json.contains("\"id.resp_p\":80"), "{json}");

    let dir = d.join("a-dir");
    fs::create_dir(&dir).unwrap();
    let sock = d.join("a.sock");
    let _listener = std::os::unix::net::UnixListener::bind(&sock).unwrap();
    let cases: [(&str, &Path, &str); 6] = [
        (
            "-f",
            &dir,
            "is a directory, not a regular file, FIFO or character device",
        ),
        (
            "--json",
            &sock,
            "is a socket, not a regular file, FIFO or character device",
        ),
        ("--db", &dir, "is a directory, not a regular file"),
        (
            "--db",
            Path::new("/dev/null"),
            "is a character device, not a regular file",
        ),
        // Refused without waiting for a reader that never comes.
        ("--pidfile", &fifo, "is a FIFO, not a regular file"),
        ("--pidfile", &sock, "is a socket, not a regular file"),
    ];
    for (opt, path, says) in cases {
        let mut args = vec!["-r", s(&cap), opt, s(path)];
        if opt != "-f" {
            args.extend(["-f", "/dev/null"]);
        }
        let out = ipclog(&args);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{opt} {path:?}: {out:?}");
        assert!(
            err.contains(&format!("{}: ", path.display())) && err.contains(says),
            "{opt} {path:?}: {err}"
        );
    }
}

#[test]
fn second_ipclog_with_the_same_pidfile_refuses_to_start() {
    require_root!();
    let d = scratch("trust-pidlock");
    let cap = capture_file(&d);
    let pidfile = d.join("ipclog.pid");
    let first = Running::start(&d, &["-f", s(&d.join("first.log"))], &pidfile);
    let second_log = d.join("second.log");
    let out = ipclog(&[
        "-r",
        s(&cap),
        "-f",
        s(&second_log),
        "--pidfile",
        s(&pidfile),
    ]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(
        err.contains(&format!("{}: ", pidfile.display()))
            && err.contains(&format!("another ipclog (pid {}) is running", first.pid())),
        "{err}"
    );
    // The first one's pidfile is intact, and the second wrote nothing.
    assert_eq!(
        fs::read_to_string(&pidfile).unwrap().trim(),
        first.pid().to_string()
    );
    assert!(!second_log.exists());
    first.finish();
    assert!(!pidfile.exists(), "pidfile removed at exit");
}

#[test]
fn stale_pidfile_is_replaced() {
    let d = scratch("trust-stale");
    let pidfile = d.join("ipclog.pid");
    let mut gone = Command::new("true").spawn().unwrap();
    let dead = gone.id();
    gone.wait().unwrap();
    fs::write(&pidfile, format!("{dead}\n")).unwrap();
    let run = Running::start(&d, &["-f", s(&d.join("a.log"))], &pidfile);
    assert_eq!(
        fs::read_to_string(&pidfile).unwrap(),
        format!("{}\n", run.pid())
    );
    run.finish();
    assert!(!pidfile.exists());
}

#[test]
fn capture_keeps_no_capability() {
    require_root!();
    let d = scratch("trust-caps-r");
    let pidfile = d.join("ipclog.pid");
    let log = d.join("a.log");
    let run = Running::start(&d, &["-f", s(&log), "--db", s(&d.join("h.db"))], &pidfile);
    // Every thread (the packet reader is started after the drop, and inherits it).
    assert_caps(run.pid(), "0000000000000000");
    assert_eq!(status_fields(run.pid(), "NoNewPrivs:"), vec!["1"; 1]);
    run.finish();
    // And it still wrote its outputs.
    let text = fs::read_to_string(&log).unwrap();
    assert!(text.lines().any(|l| l.starts_with("C ")), "{text}");
}

/// A network namespace whose loopback traffic conntrack tracks.
fn conntrack_ns(tag: &str) -> Netns {
    let ns = Netns::new(tag).unwrap();
    ns.enable_conntrack().unwrap();
    ns
}

/// A UDP datagram from 127.0.0.1:`sport` to port 9 inside `ns`.
fn udp_from(ns: &Netns, sport: u16) {
    ns.run(&[
        "python3",
        "-c",
        &format!(
            "import socket; s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); \
             s.bind(('127.0.0.1', {sport})); s.sendto(b'x', ('127.0.0.1', 9))"
        ),
    ])
    .unwrap();
}

fn wait_text(path: &Path, needle: &str) -> String {
    wait_for(Duration::from_secs(15), || {
        fs::read_to_string(path).ok().filter(|t| t.contains(needle))
    })
    .unwrap_or_else(|| {
        panic!(
            "{needle:?} not in {path:?} within 15 s: {}",
            fs::read_to_string(path).unwrap_or_default()
        )
    })
}

/// Starts the conntrack ipclog in `ns` and waits for its pidfile (written once privileges are
/// dropped).
fn start_conntrack(ns: &Netns, dir: &Path, args: &[&str]) -> Child {
    let pidfile = dir.join("ipclog.pid");
    let mut child = ns
        .command(bin("ipclog"))
        .args(["--evict-every", "1", "--pidfile", s(&pidfile)])
        .args(args)
        .env("TZ", "UTC")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(fs::File::create(dir.join("ipclog.stderr")).unwrap())
        .spawn()
        .unwrap();
    // `ip netns exec` execs ipclog in place: the child is ipclog.
    let pid = child.id().to_string();
    let ok = wait_for(Duration::from_secs(15), || {
        if let Some(st) = child.try_wait().unwrap() {
            panic!(
                "ipclog exited {st}: {}",
                fs::read_to_string(dir.join("ipclog.stderr")).unwrap_or_default()
            );
        }
        fs::read_to_string(&pidfile)
            .ok()
            .filter(|t| t.trim() == pid)
    });
    assert!(ok.is_some(), "no pidfile with {pid}");
    child
}

fn stop(mut child: Child, dir: &Path, log: &Path) -> String {
    // SAFETY: signalling our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let st = wait_for(Duration::from_secs(10), || child.try_wait().unwrap())
        .expect("ipclog stops within 10 s of SIGTERM");
    let err = fs::read_to_string(dir.join("ipclog.stderr")).unwrap_or_default();
    assert!(st.success(), "exit {st}; stderr: {err}");
    let text = fs::read_to_string(log).unwrap();
    assert!(
        text.ends_with(" ipclog stopped, 0 errors\n"),
        "{text}\n{err}"
    );
    text
}

/// Whether this test (and so the ipclog it starts) may raise thread priorities.
fn have_cap_sys_nice() -> bool {
    let st = fs::read_to_string("/proc/self/status").unwrap();
    let eff = st
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        .unwrap_or(0);
    eff & (1 << 23) != 0
}

/// (thread name, nice value) of every thread of `pid`.
fn thread_nice(pid: u32) -> Vec<(String, i32)> {
    let mut out = Vec::new();
    for t in fs::read_dir(format!("/proc/{pid}/task")).unwrap() {
        let t = t.unwrap().path();
        let (Ok(comm), Ok(stat)) = (
            fs::read_to_string(t.join("comm")),
            fs::read_to_string(t.join("stat")),
        ) else {
            continue;
        };
        // Nice is field 19 of the line, the 17th after the parenthesised name.
        let after = &stat[stat.rfind(')').unwrap() + 2..];
        let n = after.split(' ').nth(16).unwrap().parse().unwrap();
        out.push((comm.trim().to_string(), n));
    }
    out
}

#[test]
fn conntrack_keeps_cap_net_admin_alone() {
    require_netns!();
    let ns = conntrack_ns("caps");
    let d = scratch("trust-caps-ct");
    let log = d.join("a.log");
    let child = start_conntrack(&ns, &d, &["-f", s(&log)]);
    // Bit 12: CAP_NET_ADMIN.
    assert_caps(child.id(), "0000000000001000");
    // The priorities the threads asked for while CAP_SYS_NICE was there are kept (the
    // threads start just after the pidfile is written).
    let want = [
        ("ipclog-reader", -10),
        ("ipclog", -5),
        ("ipclog-dumper", -5),
    ];
    if have_cap_sys_nice() {
        let mut nice = Vec::new();
        let ok = wait_for(Duration::from_secs(10), || {
            nice = thread_nice(child.id());
            want.iter()
                .all(|(t, n)| nice.contains(&(t.to_string(), *n)))
                .then_some(())
        });
        assert!(ok.is_some(), "{nice:?}, want {want:?}");
    }
    // The table dumps (at start and every second) still work with it alone.
    udp_from(&ns, 40111);
    wait_text(&log, " 40111 9 ");
    std::thread::sleep(Duration::from_millis(1500));
    let text = stop(child, &d, &log);
    assert!(!text.contains("CAP_NET_ADMIN"), "{text}");
}

fn uid_gid_of(name: &str) -> (u32, u32) {
    let c = std::ffi::CString::new(name).unwrap();
    // SAFETY: getpwnam with a NUL-terminated name; the record is read at once.
    unsafe {
        let pw = libc::getpwnam(c.as_ptr());
        assert!(!pw.is_null(), "no user {name}");
        ((*pw).pw_uid, (*pw).pw_gid)
    }
}

#[test]
fn user_nobody_owns_its_files_and_reopens_them_on_sighup() {
    require_netns!();
    let ns = conntrack_ns("user");
    let d = scratch("trust-user");
    let (uid, gid) = uid_gid_of("nobody");
    // The log directory belongs to the user, as /var/log/ipclog would (logrotate's `create`
    // happens as root; a reopen that must create the file happens as the user).
    let logs = d.join("logs");
    fs::create_dir(&logs).unwrap();
    std::os::unix::fs::chown(&logs, Some(uid), Some(gid)).unwrap();
    let log = logs.join("ipclog.log");
    let json = logs.join("ipclog.json");
    let db = logs.join("h.db");
    let child = start_conntrack(
        &ns,
        &d,
        &[
            "--user",
            "nobody",
            "-f",
            s(&log),
            "--json",
            s(&json),
            "--db",
            s(&db),
        ],
    );
    let pid = child.id();
    for id in ["Uid:", "Gid:"] {
        let want = if id == "Uid:" { uid } else { gid };
        for v in status_fields(pid, id) {
            assert!(
                v.split_whitespace().all(|n| n == want.to_string()),
                "{id} {v}"
            );
        }
    }
    assert_caps(pid, "0000000000001000");
    let owned = |p: &Path| {
        let m = fs::metadata(p).unwrap_or_else(|e| panic!("{p:?}: {e}"));
        assert_eq!((m.uid(), m.gid()), (uid, gid), "{p:?}");
        assert_eq!(m.permissions().mode() & 0o777, 0o640, "{p:?}");
    };
    for p in [&log, &json, &db] {
        owned(p);
    }
    for side in ["-wal", "-shm"] {
        owned(&PathBuf::from(format!("{}{side}", db.display())));
    }
    udp_from(&ns, 40201);
    wait_text(&log, " 40201 9 ");
    // logrotate: move the log away, SIGHUP; the new file is created by the user.
    let rotated = logs.join("ipclog.log.1");
    fs::rename(&log, &rotated).unwrap();
    // SAFETY: signalling our own child.
    unsafe { libc::kill(pid as i32, libc::SIGHUP) };
    // Reopened (created by the user) at the next flush; traffic before that is in the old file.
    wait_for(Duration::from_secs(15), || log.exists().then_some(()))
        .expect("log reopened within 15 s of SIGHUP");
    owned(&log);
    udp_from(&ns, 40202);
    wait_text(&log, " 40202 9 ");
    wait_text(&json, "40202");
    let text = stop(child, &d, &log);
    assert!(!text.contains(" 40201 9 "), "{text}");
    let db = store::open_read_only(&db).unwrap();
    let rows: i64 = db
        .query_row(
            "SELECT count(*) FROM connections WHERE orig_p IN (40201, 40202)",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(rows, 2);
}
