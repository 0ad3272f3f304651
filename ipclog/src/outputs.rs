//! The outputs the command line asks for, opened at start so that one that cannot be used is
//! a start-up error, before anything is logged. Which events and fields each output shows is
//! decided here, from what the user asked for, not by the sinks.

use std::path::Path;
use std::time::Duration;

use shared::logfmt::WriteOptions;
use shared::sink::RunInfo;
use store::Store;

use crate::cli::Cli;
use crate::conntrack;
use crate::error::Error;
use crate::sinks::ipfix;
use crate::sinks::pg::PgHistory;
use crate::sinks::remote::{Remote, RemoteOptions, RemoteSink, Spool};
use crate::sinks::{
    self, DbSink, FanOut, JsonOptions, JsonSink, LineLog, SyslogConfig, SyslogSink, TextOut,
    WhenFull,
};

/// Whether no output is named: then the line log goes to standard output (unless the session
/// view has it: `--sessions` alone prints only the view).
pub fn none_named(cli: &Cli) -> bool {
    cli.log.is_none()
        && cli.db.is_none()
        && cli.json.is_none()
        && !cli.syslog
        && cli.ipfix.is_none()
        && !cli.capture.sessions
}

/// The PostgreSQL URL `--db` gives, if it gives one.
fn pg_url(cli: &Cli) -> Option<&str> {
    let db = cli.db.as_deref()?.to_str()?;
    store::pg::is_url(db).then_some(db)
}

/// A sink that sends elsewhere, opened (connected, checked) but not started.
pub struct OpenRemote {
    remote: Box<dyn Remote>,
    spool: Spool,
    shown: String,
}

/// The IPFIX exporter and the PostgreSQL history, connected and checked now so that an
/// unreachable collector or database, a refused connection or a history of another version
/// is a start-up error; the PostgreSQL run is started. With `check_only` (a daemon before it
/// forks) they are only checked.
pub fn open_remote(cli: &Cli, run: &RunInfo, check_only: bool) -> Result<Vec<OpenRemote>, Error> {
    let policy = sinks::OUTPUT_POLICY.get().copied().unwrap_or_default();
    let spool = |sink: &'static str| match &cli.spool {
        Some(p) => Spool::open(p, &policy, sink, cli.spool_max)
            .map_err(|e| Error::Start(sinks::with_symlink_hint(format!("ipclog: --spool {e}")))),
        None => Ok(Spool::memory(cli.spool_max)),
    };
    if !(0.0..=86_400.0).contains(&cli.flush_timeout) {
        return Err(Error::Start(format!(
            "ipclog: --flush-timeout {}: not a number of seconds from 0 to 86400",
            cli.flush_timeout
        )));
    }
    let mut out = Vec::new();
    if let Some(t) = &cli.ipfix {
        let target = ipfix::Target::parse(t).map_err(|e| Error::Start(format!("ipclog: {e}")))?;
        let shown = target.shown();
        let timeout = cli.ipfix_active_timeout.map(Duration::from_secs);
        let e = ipfix::Exporter::open(target, cli.ipfix_domain, timeout)
            .map_err(|e| Error::Start(format!("ipclog: {e}")))?;
        out.push(OpenRemote {
            remote: Box::new(e),
            spool: spool("ipfix")?,
            shown,
        });
    }
    if let Some(url) = pg_url(cli) {
        let host = match &cli.host_name {
            Some(h) => h.clone(),
            None => hostname(),
        };
        let h = PgHistory::open(url, &host, run, check_only)
            .map_err(|e| Error::Start(format!("ipclog: {e}")))?;
        out.push(OpenRemote {
            shown: h.shown(),
            remote: Box::new(h),
            spool: spool("postgresql")?,
        });
    }
    Ok(out)
}

/// The host's name (uname's nodename), as `hostname` prints it.
fn hostname() -> String {
    // SAFETY: uname fills the struct it is given.
    let mut u: libc::utsname = unsafe { std::mem::zeroed() };
    if unsafe { libc::uname(&mut u) } != 0 {
        return "localhost".into();
    }
    let name: Vec<u8> = u
        .nodename
        .iter()
        .take_while(|&&c| c != 0)
        .map(|&c| c as u8)
        .collect();
    String::from_utf8_lossy(&name).into_owned()
}

/// Starts the threads of the sinks [`open_remote`] opened (after a possible fork).
pub fn start_remote(fan: &mut FanOut, opened: Vec<OpenRemote>, cli: &Cli) {
    for o in opened {
        let opts = RemoteOptions {
            capacity: cli.db_queue.max(16),
            when_full: when_full(cli),
            flush_timeout: Duration::from_secs_f64(cli.flush_timeout),
        };
        fan.remotes
            .push(RemoteSink::start(o.remote, o.spool, o.shown, opts));
    }
}

/// A capture file (or pipe) can wait for a slow output; a live source cannot.
fn when_full(cli: &Cli) -> WhenFull {
    if cli.capture.read_file.is_some() {
        WhenFull::Wait
    } else {
        WhenFull::Drop
    }
}

/// The line log, JSON and syslog outputs (the database is [`open_db`]'s).
pub fn open_text(cli: &Cli, opts: WriteOptions) -> Result<FanOut, Error> {
    let mut fan = FanOut::default();
    if cli.log.is_some() || none_named(cli) {
        let out = TextOut::open(cli.log.as_deref(), "log").map_err(|e| {
            let p = cli.log.as_deref().unwrap_or(Path::new("-"));
            Error::Start(format!("ipclog: {}: cannot open log: {e}", p.display()))
        })?;
        // Names (-n) are attached after a possible fork: their resolver is a thread.
        fan.line_log = Some(LineLog::line_log(out, opts));
    }
    if let Some(j) = &cli.json {
        let path = (j != "-").then(|| Path::new(j));
        let out = TextOut::open(path, "json")
            .map_err(|e| Error::Start(format!("ipclog: {j}: cannot open JSON output: {e}")))?;
        let packets = cli.capture.is_capture();
        let json = JsonOptions {
            // Packets: one object per connection, as Zeek's conn.log (README, --help).
            closes_only: packets,
            uid_of: (!packets).then_some(conntrack::uid as fn(u64) -> String),
        };
        fan.others.push(Box::new(JsonSink::json(out, json)));
    }
    if cli.syslog {
        let cfg = SyslogConfig {
            // The command line offers only names that have a number.
            facility: sinks::facility_code(&cli.syslog_facility).unwrap_or(3),
            rfc5424: cli.syslog_format == "rfc5424",
            socket: cli.syslog_socket.clone(),
        };
        let sink = SyslogSink::open(opts, cfg).map_err(|e| {
            let p = shared::text::escaped(&cli.syslog_socket.to_string_lossy()).into_owned();
            Error::Start(format!("ipclog: {p}: cannot use syslog socket: {e}"))
        })?;
        fan.others.push(Box::new(sink));
    }
    Ok(fan)
}

/// The database, opened and checked now so a bad one is a start-up error, its run started.
/// With `check_only` (a daemon before it forks) it is only checked: SQLite connections must
/// not cross a fork (the child would not hold the parent's file locks), so a daemon opens it
/// again after the fork.
pub fn open_db(cli: &Cli, run: &RunInfo, check_only: bool) -> Result<Option<Store>, Error> {
    let Some(db) = &cli.db else {
        return Ok(None);
    };
    if pg_url(cli).is_some() {
        return Ok(None);
    }
    let policy = sinks::OUTPUT_POLICY.get().copied().unwrap_or_default();
    if check_only {
        sinks::check_store(db, &policy)?;
        return Ok(None);
    }
    sinks::open_store(db, &policy, run).map(Some)
}

/// Starts the database's writer thread on the opened `store` (threads start only after a
/// possible fork).
pub fn start_db(fan: &mut FanOut, store: Store, cli: &Cli) {
    let Some(db) = &cli.db else {
        return;
    };
    // A capture file (or pipe) can wait for the database; a live source cannot.
    let when_full = if cli.capture.read_file.is_some() {
        WhenFull::Wait
    } else {
        WhenFull::Drop
    };
    fan.db = Some(DbSink::start(store, cli.db_queue.max(16), when_full, db));
}

/// The outputs as `--status` lists them, with the files whose size it shows.
pub fn listed(cli: &Cli) -> Vec<crate::status::Output> {
    use crate::status::Output;
    let mut out = Vec::new();
    if cli.log.is_some() || none_named(cli) {
        out.push(Output {
            kind: "log",
            path: cli.log.clone(),
        });
    }
    match (pg_url(cli), &cli.db) {
        (Some(url), _) => out.push(Output {
            kind: "db",
            path: Some(store::pg::shown(url).into()),
        }),
        (None, Some(db)) => out.push(Output {
            kind: "db",
            path: Some(db.clone()),
        }),
        (None, None) => {}
    }
    if let Some(t) = &cli.ipfix {
        out.push(Output {
            kind: "ipfix",
            path: Some(t.into()),
        });
    }
    if let Some(j) = &cli.json {
        out.push(Output {
            kind: "json",
            path: (j != "-").then(|| j.into()),
        });
    }
    if cli.syslog {
        out.push(Output {
            kind: "syslog",
            path: None,
        });
    }
    out
}
