//! `--proc` and `--status`, end to end: a client and a server namespace joined by a veth, the
//! real ipclog running inside the client namespace (`ip netns exec`), python3 clients whose pid
//! the test knows, and what the log, JSON, SQLite, constat `--by proc` and `ipclog --status`
//! say about them.
//!
//! Needs root (namespaces, nftables); prints SKIPPED otherwise. Build the binaries first:
//! `cargo build --workspace --bins`.

use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};

use e2e::bins::{bin, scratch};
use e2e::lab::Ipclog;
use e2e::netns::{veth, Netns};
use e2e::require_netns;
use shared::logfmt::{parse_line, LogLine};

/// Listens on TCP 8080 (both families; reads until the client closes) and echoes UDP 5353.
const SERVER_PY: &str = r#"
import socket, threading, sys
def tcp():
    s = socket.socket(socket.AF_INET6); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    s.bind(("::", 8080)); s.listen(64)
    while True:
        c, _ = s.accept()
        def h(c=c):
            while c.recv(65536): pass
            c.close()
        threading.Thread(target=h, daemon=True).start()
def udp():
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.bind(("0.0.0.0", 5353))
    while True:
        d, a = u.recvfrom(65536); u.sendto(d, a)
threading.Thread(target=tcp, daemon=True).start()
threading.Thread(target=udp, daemon=True).start()
print("ready", flush=True)
sys.stdin.read()
"#;

/// Prints its pid, then per argument (`tcp:HOST`, `udp:HOST`) opens that connection, prints
/// its local port and waits for a line on stdin before closing it, so the socket is surely
/// open when ipclog looks it up.
const CLIENT_PY: &str = r#"
import socket, sys, os
print(os.getpid(), flush=True)
for a in sys.argv[1:]:
    kind, host = a.split(":", 1)
    if kind == "tcp":
        s = socket.create_connection((host, 8080)); s.sendall(b"x")
    else:
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.sendto(b"q", (host, 5353))
        s.settimeout(5); s.recvfrom(100)
    print(s.getsockname()[1], flush=True)
    sys.stdin.readline()
    s.close()
print("done", flush=True)
"#;

/// cli (10.77.0.1, fd00:77::1) -- veth -- srv (10.77.0.2, fd00:77::2), conntrack on in cli, a
/// server running in srv.
struct Pair {
    cli: Netns,
    srv: Netns,
    server: Child,
}

fn pair() -> Pair {
    let cli = Netns::new("pcli").unwrap();
    let srv = Netns::new("psrv").unwrap();
    veth(&cli, "eth0", "10.77.0.1/24", &srv, "eth0", "10.77.0.2/24").unwrap();
    cli.add_addr("eth0", "fd00:77::1/64").unwrap();
    srv.add_addr("eth0", "fd00:77::2/64").unwrap();
    cli.enable_conntrack().unwrap();
    let mut server = srv
        .command("python3")
        .args(["-c", SERVER_PY])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(server.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line.trim(), "ready");
    Pair { cli, srv, server }
}

/// A running client: its pid as it printed it and the child's.
struct Client {
    child: Child,
    out: BufReader<std::process::ChildStdout>,
    pid: u32,
}

impl Client {
    fn start(ns: &Netns, conns: &[&str]) -> Client {
        let mut child = ns
            .command("python3")
            .args(["-c", CLIENT_PY])
            .args(conns)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut out = BufReader::new(child.stdout.take().unwrap());
        let pid = Client::read(&mut out).parse().unwrap();
        // `ip netns exec` execs the command: the child is python3 itself.
        assert_eq!(pid, child.id(), "python3's pid is the child's");
        Client { child, out, pid }
    }

    fn read(out: &mut impl BufRead) -> String {
        let mut l = String::new();
        out.read_line(&mut l).unwrap();
        l.trim().to_string()
    }

    /// The local port of the next connection.
    fn port(&mut self) -> u16 {
        Client::read(&mut self.out).parse().unwrap()
    }

    /// Lets the current connection close.
    fn next(&mut self) {
        self.child.stdin.as_mut().unwrap().write_all(b"\n").unwrap();
    }

    fn finish(mut self) {
        assert_eq!(Client::read(&mut self.out), "done");
        self.child.wait().unwrap();
    }
}

/// The first O line of the connection from local port `sport` to `dport`.
fn open_line(ipc: &Ipclog, proto: &str, sport: u16, dport: u16) -> String {
    let (sport, dport) = (sport.to_string(), dport.to_string());
    ipc.wait_line(
        |l| {
            let f: Vec<&str> = l.split_ascii_whitespace().collect();
            f.len() > 6 && f[0] == "O" && f[2] == proto && f[5] == sport && f[6] == dport
        },
        &format!("O {proto} {sport}->{dport}"),
    )
}

fn process_of(line: &str) -> Option<shared::Process> {
    match parse_line(line) {
        Ok(LogLine::Conn(c)) => c.process().unwrap(),
        other => panic!("not a connection line: {line}: {other:?}"),
    }
}

/// A history row's local port, pid, comm and proc_uid.
type ProcRow = (i64, Option<i64>, Option<String>, Option<i64>);

fn constat(args: &[&str], file: &Path) -> String {
    let out = Command::new(bin("constat"))
        .args(args)
        .arg("-f")
        .arg(file)
        .env("TZ", "UTC")
        .output()
        .unwrap();
    assert!(out.status.success(), "constat: {out:?}");
    String::from_utf8(out.stdout).unwrap()
}

/// Conntrack mode with `--proc`: the python3 client's TCP (IPv4 and IPv6) and UDP connections
/// carry its pid, `comm=python3` and uid 0 on every line, in JSON and in SQLite; constat
/// `--by proc` counts them under python3. A connection whose socket is gone before ipclog reads
/// its event (ipclog stopped meanwhile) is left unattributed and counted so.
#[test]
fn conntrack_names_the_process_of_each_local_connection() {
    require_netns!();
    let p = pair();
    let dir = scratch("proc-conntrack");
    let (json, db) = (dir.join("c.json"), dir.join("c.db"));
    let ipc = Ipclog::start(
        &p.cli,
        &dir,
        &[
            "--proc",
            "-s",
            "1",
            "--json",
            json.to_str().unwrap(),
            "--db",
            db.to_str().unwrap(),
        ],
    );
    let mut c = Client::start(
        &p.cli,
        &["tcp:10.77.0.2", "tcp:fd00:77::2", "udp:10.77.0.2"],
    );
    let pid = c.pid;
    let want = format!("pid={pid} comm=python3 proc_uid=0");
    let mut ports = Vec::new();
    for proto in ["tcp", "tcp", "udp"] {
        let port = c.port();
        let dport = if proto == "tcp" { 8080 } else { 5353 };
        let line = open_line(&ipc, proto, port, dport);
        assert!(line.ends_with(&want), "{line}");
        assert_eq!(
            process_of(&line),
            Some(shared::Process {
                pid: c.pid,
                comm: "python3".into(),
                uid: 0
            })
        );
        ports.push(port);
        c.next();
    }
    c.finish();
    // Every later line of the TCP connection says the same.
    let tcp_port = ports[0].to_string();
    ipc.wait_line(
        |l| l.starts_with("S ") && l.contains(&format!(" {tcp_port} ")) && l.contains(" t "),
        "TIME_WAIT",
    );
    for l in ipc
        .text()
        .lines()
        .filter(|l| l.contains(&format!(" {tcp_port} 8080 ")))
    {
        assert!(l.ends_with(&want), "{l}");
    }

    // A socket gone before its event is read: ipclog is stopped while a client comes and goes.
    // SAFETY: signalling our own child.
    unsafe { libc::kill(ipc.child.id() as i32, libc::SIGSTOP) };
    let mut gone = Client::start(&p.cli, &["udp:10.77.0.2"]);
    let gone_port = gone.port();
    gone.next();
    gone.finish();
    unsafe { libc::kill(ipc.child.id() as i32, libc::SIGCONT) };
    let line = open_line(&ipc, "udp", gone_port, 5353);
    assert_eq!(process_of(&line), None, "{line}");
    let stderr_path = ipc.stderr.clone();
    let text = ipc.stop();
    let summary = text
        .lines()
        .find(|l| l.contains(" proc: "))
        .expect("the end summary");
    assert!(
        summary.contains(
            " proc: 3 attributed, 1 unattributed (socket gone 1, no process 0, errors 0), "
        ),
        "{summary}"
    );
    let stderr = fs::read_to_string(&stderr_path).unwrap();
    assert!(stderr.contains("ipclog: proc: "), "-s shows it: {stderr}");

    // JSON: the open object of each connection.
    let json = fs::read_to_string(&json).unwrap();
    for port in &ports {
        // The writer puts no spaces in: exact `"key":value` pieces are enough.
        let o = json
            .lines()
            .find(|o| {
                o.contains(&format!("\"id.orig_p\":{port},")) && o.contains("\"event\":\"open\"")
            })
            .unwrap_or_else(|| panic!("no JSON open for port {port}"));
        assert!(o.contains("\"comm\":\"python3\""), "{o}");
        assert!(o.contains(&format!("\"pid\":{pid},")), "{o}");
        assert!(o.contains("\"proc_uid\":0"), "{o}");
    }

    // SQLite: every connection of the client has its process.
    let conn = store::open_read_only(&db).unwrap();
    let rows: Vec<ProcRow> = conn
        .prepare("SELECT orig_p, pid, comm, proc_uid FROM connections ORDER BY id")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    for port in &ports {
        let r = rows.iter().find(|r| r.0 == *port as i64).expect("row");
        assert_eq!(
            (r.1, r.2.as_deref(), r.3),
            (Some(pid as i64), Some("python3"), Some(0)),
            "{r:?}"
        );
    }
    let r = rows.iter().find(|r| r.0 == gone_port as i64).expect("row");
    assert_eq!((r.1, r.2.as_deref()), (None, None));

    // constat --by proc, from the log and from the database.
    let log_path = dir.join("ipclog.log");
    for f in [log_path.as_path(), db.as_path()] {
        let report = constat(&["-a", "--by", "proc"], f);
        let rows = e2e::report::rows(&report);
        assert!(rows.iter().any(|r| r.starts_with("python3 3 ")), "{report}");
        assert!(rows.iter().any(|r| r.starts_with("- 1 ")), "{report}");
        assert!(
            report.lines().nth(1).unwrap().starts_with("process "),
            "{report}"
        );
    }
}

/// An ipclog started inside `ns` with `args` (and `-f DIR/NAME.log`), once its start line is
/// written.
fn start_ipclog(ns: &Netns, dir: &Path, name: &str, args: &[&str]) -> Ipclog {
    let log = dir.join(format!("{name}.log"));
    let stderr = dir.join(format!("{name}.stderr"));
    let child = ns
        .command(bin("ipclog"))
        .arg("-f")
        .arg(&log)
        .args(args)
        .env("TZ", "UTC")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(fs::File::create(&stderr).unwrap())
        .spawn()
        .unwrap();
    let ipc = Ipclog { child, log, stderr };
    ipc.wait_line(|l| l.ends_with(" ipclog started"), "start");
    ipc
}

/// `-i` on the namespace's veth with `--proc`: the live capture's connections carry the
/// client's process too (the local end found by the interface's address).
#[test]
fn live_capture_names_the_process() {
    require_netns!();
    let p = pair();
    let dir = scratch("proc-live");
    let ipc = start_ipclog(&p.cli, &dir, "live", &["-i", "eth0", "--proc"]);
    let mut c = Client::start(&p.cli, &["tcp:10.77.0.2", "udp:10.77.0.2"]);
    let want = format!("pid={} comm=python3 proc_uid=0", c.pid);
    for (proto, dport) in [("tcp", 8080), ("udp", 5353)] {
        let port = c.port();
        let line = open_line(&ipc, proto, port, dport);
        assert!(line.ends_with(&want), "{line}");
        c.next();
    }
    c.finish();
    let stderr = ipc.stderr.clone();
    let text = ipc.stop();
    assert!(
        text.lines()
            .any(|l| l.contains(" proc: 2 attributed, 0 unattributed ")),
        "{text}\n{}",
        fs::read_to_string(stderr).unwrap()
    );
}

/// An incoming connection is the server's: the O line (written while the handshake may still
/// be going on, before the server accepted it) names the listening python3 server, and so do
/// the later lines.
#[test]
fn incoming_connections_name_the_server() {
    require_netns!();
    let p = pair();
    p.srv.enable_conntrack().unwrap();
    let dir = scratch("proc-incoming");
    let ipc = start_ipclog(&p.srv, &dir, "srv", &["--proc", "--evict-every", "1"]);
    let mut c = Client::start(&p.cli, &["tcp:10.77.0.2"]);
    let port = c.port();
    let line = open_line(&ipc, "tcp", port, 8080);
    assert!(
        line.ends_with(&format!("pid={} comm=python3 proc_uid=0", p.server.id())),
        "{line}"
    );
    c.next();
    c.finish();
    ipc.stop();
}

/// `--proc` reads packets of this host: a capture file has none, and saying so beats a log
/// without processes.
#[test]
fn proc_refuses_a_capture_file() {
    let out = Command::new(bin("ipclog"))
        .args(["--proc", "-r", "/nonexistent.pcap"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("--proc needs live connections"));
}

/// `ipclog --status` runs `cmd` and returns (exit code, stdout, stderr).
fn status(pidfile: &Path) -> (Option<i32>, String, String) {
    let out = Command::new(bin("ipclog"))
        .arg("--status")
        .arg("--pidfile")
        .arg(pidfile)
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// One `name:   value` of `--status`'s output.
fn field<'a>(text: &'a str, name: &str) -> &'a str {
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{name}:")))
        .unwrap_or_else(|| panic!("no {name}: in\n{text}"))
        .trim()
}

/// `ipclog --status --pidfile F` shows the running logger's counters, and they move with the
/// traffic: events, events/s, open connections, the log's size; the status file is 0644 (any
/// user may read the counters). Without a running logger it says so and exits 3.
#[test]
fn status_shows_the_running_loggers_counters() {
    require_netns!();
    let p = pair();
    let dir = scratch("status");
    let pidfile = dir.join("ipclog.pid");
    let (code, _, err) = status(&pidfile);
    assert_eq!(code, Some(3), "{err}");
    assert!(err.contains("no ipclog is running with pidfile"), "{err}");

    let ipc = Ipclog::start(
        &p.cli,
        &dir,
        &["--pidfile", pidfile.to_str().unwrap(), "--proc"],
    );
    let before = wait_status(&pidfile, |_| true);
    assert_eq!(field(&before, "pid"), ipc.child.id().to_string());
    assert_eq!(field(&before, "source"), "conntrack");
    for f in [
        "uptime",
        "lost",
        "dropped",
        "errors",
        "queue",
        "db_queue",
        "db_dropped",
    ] {
        field(&before, f).parse::<u64>().unwrap();
    }
    let log_size = |t: &str| -> u64 {
        let o = field(t, "output");
        let (kind, rest) = o.split_once(' ').unwrap();
        assert_eq!(kind, "log", "{o}");
        assert!(rest.starts_with(dir.to_str().unwrap()), "{o}");
        rest.rsplit(' ').next().unwrap().parse().unwrap()
    };
    let events0: u64 = field(&before, "events").parse().unwrap();
    let size0 = log_size(&before);
    let mode = fs::metadata(dir.join("ipclog.pid.status")).unwrap();
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(mode.permissions().mode() & 0o777, 0o644);

    // A connection held open: the counters show it open, then the events and the log grow.
    let mut c = Client::start(&p.cli, &["tcp:10.77.0.2"]);
    let port = c.port();
    open_line(&ipc, "tcp", port, 8080);
    let during = wait_status(&pidfile, |t| {
        field(t, "open") != "0" && field(t, "events_per_sec") != "0.0"
    });
    assert!(field(&during, "events").parse::<u64>().unwrap() > events0);
    assert!(log_size(&during) > size0, "{during}");
    assert_eq!(field(&during, "proc_attributed"), "1", "{during}");
    c.next();
    c.finish();
    let pid = ipc.child.id();
    ipc.stop();
    let (code, out, err) = status(&pidfile);
    assert_eq!(code, Some(3), "{out}{err}");
    assert!(err.contains("no ipclog is running"), "{err}");
    assert!(!Path::new(&format!("/proc/{pid}")).exists());
}

/// Polls `--status` until it succeeds with an output `ok` accepts.
fn wait_status(pidfile: &Path, ok: impl Fn(&str) -> bool) -> String {
    let mut last = String::new();
    e2e::netns::wait_for(std::time::Duration::from_secs(10), || {
        let (code, out, err) = status(pidfile);
        last = format!("{code:?}\n{out}{err}");
        (code == Some(0) && ok(&out)).then_some(out)
    })
    .unwrap_or_else(|| panic!("no such status within 10 s; last:\n{last}"))
}
