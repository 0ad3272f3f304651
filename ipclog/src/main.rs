//! ipclog: logs every network connection — opened, state changed, closed — from Netfilter's
//! connection tracking (default) or from packets (`-r FILE`, `-i IFACE`, via ipclog-capture),
//! to the constat line log, SQLite, JSON lines and syslog. Invoked as `ipc` (or with `-1`) it
//! prints the connections open right now and exits.

mod cli;
mod conntrack;
mod ctattr;
mod ctsock;
mod daemon;
mod ifaddr;
mod names;
mod privs;
mod sinks;

use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use chrono::Utc;
use clap::Parser;

use shared::logfmt::WriteOptions;
use shared::outfile;
use shared::sink::EventSink;
use store::Store;

use cli::Cli;
use sinks::{FanOut, Filter, Filtered, JsonSink, LineLog, SyslogSink, TextOut};

/// Says why ipclog cannot go on and returns `code`. Messages quote paths, interface names
/// and filter text as the user (or an attacker who named a file) gave them: escaped, so no
/// control character reaches the terminal.
fn fail(code: u8, msg: impl std::fmt::Display) -> ExitCode {
    eprintln!("{}", shared::text::escaped(&msg.to_string()));
    ExitCode::from(code)
}

/// A start-up error after detaching: standard error is /dev/null now, so it is said where an
/// operator looks.
fn fail_detached(opts: WriteOptions, msg: String) -> ExitCode {
    let _ = sinks::SyslogSink::open(opts);
    let c = std::ffi::CString::new(msg.replace('\0', " ")).unwrap_or_default();
    // SAFETY: "%s" with one valid C string.
    unsafe { libc::syslog(libc::LOG_ERR, c"%s".as_ptr(), c.as_ptr()) };
    ExitCode::from(2)
}

/// Says once what the kernel is not providing and how to turn it on; logging goes on without.
fn check_kernel_settings() {
    let read = |name: &str| {
        std::fs::read_to_string(format!("/proc/sys/net/netfilter/{name}"))
            .ok()
            .map(|s| s.trim().to_string())
    };
    match read("nf_conntrack_acct") {
        None => eprintln!(
            "ipclog: connection tracking is not loaded (no /proc/sys/net/netfilter/\
             nf_conntrack_*): load it with `modprobe nf_conntrack`; connections are logged once \
             it is"
        ),
        Some(v) => {
            if v == "0" {
                eprintln!(
                    "ipclog: byte counters are off; turn them on with `sysctl -w \
                     net.netfilter.nf_conntrack_acct=1`"
                );
            }
            if read("nf_conntrack_timestamp").as_deref() == Some("0") {
                eprintln!(
                    "ipclog: kernel timestamps are off (times come from ipclog's clock); turn \
                     them on with `sysctl -w net.netfilter.nf_conntrack_timestamp=1`"
                );
            }
            if read("nf_conntrack_events").as_deref() == Some("0") {
                eprintln!(
                    "ipclog: conntrack events are off, nothing will be logged; turn them on \
                     with `sysctl -w net.netfilter.nf_conntrack_events=1`"
                );
            }
        }
    }
}

fn invoked_as_ipc() -> bool {
    std::env::args_os()
        .next()
        .and_then(|a| {
            Path::new(&a)
                .file_name()
                .map(|f| f.to_string_lossy().into_owned())
        })
        .is_some_and(|n| n == "ipc")
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        // clap quotes a bad argument as given (and on a terminal passes its escapes through).
        Err(e) if e.use_stderr() => {
            let text: String = e.render().to_string();
            for line in text.lines() {
                eprintln!("{}", shared::text::escaped(line));
            }
            return ExitCode::from(2);
        }
        Err(e) => {
            let _ = e.print();
            return ExitCode::SUCCESS;
        }
    };
    let filter = match Filter::new(&cli.proto, &cli.port, &cli.host, &cli.iface) {
        Ok(f) => f,
        Err(e) => return fail(2, format!("ipclog: {e}")),
    };
    let opts = WriteOptions { show_nat: cli.nat };
    if cli.once || invoked_as_ipc() {
        if cli.capture.is_capture() {
            return fail(2, "ipclog: -1/ipc shows conntrack's open connections; it cannot be combined with -r/-i");
        }
        let names = cli
            .resolve
            .then(|| names::Names::blocking(!cli.numeric_ports));
        return match conntrack::snapshot(&filter, opts, names.as_ref()) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) if e.contains("CAP_NET_ADMIN") => fail(2, e),
            Err(e) => fail(1, format!("ipc: {e}")),
        };
    }
    let no_output = cli.log.is_none() && cli.db.is_none() && cli.json.is_none() && !cli.syslog;
    if cli.daemon && (no_output || cli.json.as_deref() == Some("-")) {
        return fail(
            2,
            "ipclog: --daemon has no terminal: give -f FILE, --db FILE, --json FILE or --syslog",
        );
    }

    let user = match cli.user.as_deref().map(privs::lookup_user).transpose() {
        Ok(u) => u,
        Err(e) => return fail(2, format!("ipclog: {e}")),
    };
    let policy = outfile::Policy {
        follow_symlinks: cli.follow_symlinks,
        owner: user.as_ref().map(|u| (u.uid, u.gid)),
    };
    let _ = sinks::OUTPUT_POLICY.set(policy);

    // Everything that can fail at start is opened now: files, database, socket.
    // The source first, before any output is created or written: without CAP_NET_ADMIN (or
    // with a capture file that is not one) that is the one line to say.
    let source = if cli.capture.is_capture() {
        match ipclog_capture::open_capture(&cli.capture) {
            Ok(c) => Source::Capture(c),
            Err(e) => return fail(e.exit_code.clamp(1, 255) as u8, format!("ipclog: {e}")),
        }
    } else {
        let s = match ctsock::EventSocket::open(cli.rcvbuf, Duration::from_millis(100)) {
            Ok(s) => s,
            Err(e) => return fail(2, e.message),
        };
        check_kernel_settings();
        Source::Conntrack(s)
    };
    // The pidfile next, before any output is touched: a second ipclog must stop here.
    let mut pidfile = match &cli.pidfile {
        Some(p) => match daemon::PidFile::acquire(p, &policy) {
            Ok(f) => Some(f),
            Err(e) => return fail(2, e),
        },
        None => None,
    };
    let mut fan = FanOut::default();
    if cli.log.is_some() || no_output {
        match TextOut::open(cli.log.as_deref(), "log") {
            // Names (-n) are attached after a possible fork: their resolver is a thread.
            Ok(out) => fan.line_log = Some(LineLog::new(out, opts, None)),
            Err(e) => {
                let p = cli.log.as_deref().unwrap_or(Path::new("-"));
                return fail(2, format!("ipclog: {}: cannot open log: {e}", p.display()));
            }
        }
    }
    if let Some(j) = &cli.json {
        let path = (j != "-").then(|| Path::new(j));
        match TextOut::open(path, "json") {
            Ok(out) => fan.others.push(Box::new(JsonSink::new(
                out,
                cli.capture.is_capture(),
                cli.nat,
            ))),
            Err(e) => return fail(2, format!("ipclog: {j}: cannot open JSON output: {e}")),
        }
    }
    if cli.syslog {
        fan.others.push(Box::new(SyslogSink::open(opts)));
    }
    // The database is opened and checked now, so a bad one is a start-up error. A daemon
    // closes it again and reopens it after the fork: SQLite connections must not cross a
    // fork (the child would not hold the parent's file locks).
    let open_store = |db: &Path| -> Result<Store, String> {
        let mut s = Store::open_with(db, &policy)
            .map_err(|e| sinks::with_symlink_hint(format!("ipclog: {e}")))?;
        let command: Vec<String> = std::env::args().collect();
        let source_name = if cli.capture.is_capture() {
            "pcap"
        } else {
            "conntrack"
        };
        s.start_run(Utc::now(), source_name, &command.join(" "))
            .map_err(|e| format!("ipclog: {}: cannot write: {e}", db.display()))?;
        Ok(s)
    };
    let mut store = None;
    if let Some(db) = &cli.db {
        if cli.daemon {
            if let Err(e) = Store::open_with(db, &policy) {
                return fail(2, sinks::with_symlink_hint(format!("ipclog: {e}")));
            }
        } else {
            match open_store(db) {
                Ok(s) => store = Some(s),
                Err(e) => return fail(2, e),
            }
        }
    }
    let stats_every = cli.stats.filter(|&s| s > 0).map(Duration::from_secs);

    if cli.daemon {
        if let Err(e) = daemon::daemonize() {
            return fail(2, format!("ipclog: cannot detach: {e}"));
        }
        if let Some(db) = &cli.db {
            match open_store(db) {
                Ok(s) => store = Some(s),
                Err(e) => return fail_detached(opts, e),
            }
        }
    }
    // Everything is open: what remains needs at most CAP_NET_ADMIN (conntrack's dumps). Done
    // before any thread starts, as capabilities are per thread.
    let keep: &[u32] = match &source {
        Source::Conntrack(_) => {
            // Raising a nice value needs no privilege, lowering it needs CAP_SYS_NICE: so this
            // thread takes the reader's priority now, and every thread started later inherits
            // it and moves to its own (conntrack::run, the database and name threads).
            daemon::set_thread_nice(-10);
            &[privs::CAP_NET_ADMIN]
        }
        Source::Capture(_) => &[],
    };
    if let Err(e) = privs::drop_privileges(keep, user.as_ref()) {
        let msg = format!("ipclog: {e}");
        return if cli.daemon {
            fail_detached(opts, msg)
        } else {
            fail(2, msg)
        };
    }
    if let Some(p) = &mut pidfile {
        if let Err(e) = p.write_pid() {
            return fail(2, format!("ipclog: cannot write pidfile: {e}"));
        }
    }
    daemon::install_signal_handlers();
    // Threads start only now (after a possible fork).
    if cli.resolve {
        if let Some(l) = &mut fan.line_log {
            l.set_names(names::Names::start(!cli.numeric_ports));
        }
    }
    if let (Some(s), Some(db)) = (store, &cli.db) {
        // A capture file (or pipe) can wait for the database; a live source cannot.
        let when_full = if cli.capture.read_file.is_some() {
            sinks::WhenFull::Wait
        } else {
            sinks::WhenFull::Drop
        };
        fan.db = Some(sinks::DbSink::start(s, cli.db_queue.max(16), when_full, db));
    }
    let mut sinks = Filtered { filter, inner: fan };

    let code = match source {
        Source::Conntrack(sock) => {
            let cfg = conntrack::Config {
                queue: cli.queue,
                evict_every: (cli.evict_every > 0.0)
                    .then(|| Duration::from_secs_f64(cli.evict_every.min(86_400.0))),
                stats_every,
            };
            conntrack::run(cfg, sock, sinks)
        }
        Source::Capture(capture) => run_capture(capture, &cli, &mut sinks, stats_every),
    };
    drop(pidfile);
    ExitCode::from(code.clamp(0, 255) as u8)
}

/// Where events come from: the conntrack event socket, or an opened capture.
enum Source {
    Conntrack(ctsock::EventSocket),
    Capture(ipclog_capture::OpenCapture),
}

/// Packets as the source: the capture crate drives the same sinks.
///
/// A capture file keeps one clock in its log: its P and H lines carry packet time like its
/// O/S/C lines (the start line the time of the first connection, the summary and stop lines
/// the last packet's), so what a capture lost counts on the day it happened, not the day it
/// was read. A live capture's packet time is the wall clock anyway.
fn run_capture(
    capture: ipclog_capture::OpenCapture,
    cli: &Cli,
    sinks: &mut Filtered<FanOut>,
    stats_every: Option<Duration>,
) -> i32 {
    let from_file = cli.capture.read_file.is_some();
    let mut clocked = PacketClock {
        inner: sinks,
        start_pending: true,
        started: None,
    };
    if !from_file {
        clocked.start(Utc::now());
    }
    let result = ipclog_capture::run_opened(
        capture,
        &cli.capture,
        &mut clocked,
        &daemon::STOP,
        stats_every,
    );
    let end = match &result {
        Ok(s) => s
            .last_packet_us
            .and_then(chrono::DateTime::from_timestamp_micros)
            .filter(|_| from_file),
        Err(_) => None,
    };
    let started = clocked.started;
    // A capture with no connection (or none that passed) still says when it was read.
    let stopped = end.or(started).unwrap_or_else(Utc::now);
    clocked.start(started.unwrap_or(stopped));
    let (code, errors, lost, dropped) = match &result {
        Ok(summary) => {
            // Packets the kernel dropped before libpcap saw them are lost events; the ones
            // the tracker could not use are dropped (both also in the runs table).
            let lost = summary
                .dropped
                .iter()
                .filter(|(k, _)| k == "kernel_drop")
                .map(|(_, n)| n)
                .sum();
            sinks.program(stopped, &summary.describe());
            (0, 0, lost, summary.dropped_packets())
        }
        Err(e) => {
            eprintln!("ipclog: {}", shared::text::escaped(&e.to_string()));
            sinks.program(stopped, &format!("error: {e}"));
            (e.exit_code, 1, 0, 0)
        }
    };
    let times = sinks::RunTimes {
        started: started.filter(|_| from_file),
        stopped,
    };
    let outcome = sinks.inner.finish(errors, lost, dropped, times);
    outcome.exit_code(code)
}

/// Writes a capture's start lines on the capture's clock: at the first connection event,
/// with its time (see `run_capture`).
struct PacketClock<'a> {
    inner: &'a mut Filtered<FanOut>,
    start_pending: bool,
    started: Option<chrono::DateTime<Utc>>,
}

impl PacketClock<'_> {
    fn start(&mut self, at: chrono::DateTime<Utc>) {
        if std::mem::take(&mut self.start_pending) {
            self.started = Some(at);
            self.inner.program(at, "ipclog started");
            self.inner.inner.raw_line(&shared::logfmt::header_line(at));
        }
    }
}

impl EventSink for PacketClock<'_> {
    fn event(&mut self, ev: &shared::ConnEvent) {
        self.start(ev.ts);
        self.inner.event(ev);
    }

    fn program(&mut self, ts: chrono::DateTime<Utc>, message: &str) {
        self.inner.program(ts, message);
    }

    fn flush(&mut self) {
        self.inner.flush();
    }

    fn errors(&self) -> u64 {
        self.inner.errors()
    }
}
