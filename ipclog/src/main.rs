//! ipclog: logs every network connection — opened, state changed, closed — from Netfilter's
//! connection tracking (default, `conntrack/`) or from packets (`-r FILE`, `-i IFACE`, via
//! ipclog-capture, `packets.rs`), to the constat line log, SQLite, JSON lines and syslog
//! (`sinks/`). A source turns what it reads into `shared::ConnEvent`s and tells an
//! `EventSink` about the run; neither side knows the other. Invoked as `ipc` (or with `-1`)
//! it prints the connections open right now and exits (`ipc.rs`).
//!
//! This file only puts a run together: parse the arguments, open the source and the outputs
//! (everything that can fail at start fails before anything is logged), drop privileges, run,
//! and turn the outcome into the exit status (`error.rs`).

use ipclog::cli;
mod conntrack;
mod daemon;
mod error;
mod ifaddr;
mod ipc;
mod names;
mod nflog;
mod outputs;
mod packets;
mod privs;
mod procs;
mod sinks;
mod status;

use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use chrono::Utc;
use clap::Parser;

use shared::logfmt::WriteOptions;
use shared::outfile;
use shared::sink::RunInfo;

use cli::Cli;
use error::Error;
use sinks::Filter;

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
    let opts = WriteOptions { show_nat: cli.nat };
    match run(&cli, opts) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            say(&e);
            ExitCode::from(e.exit_code())
        }
    }
}

/// Says why ipclog cannot go on. Messages quote paths, interface names and filter text as
/// the user (or an attacker who named a file) gave them: escaped, so no control character
/// reaches the terminal. After detaching, standard error is /dev/null: then it is said where
/// an operator looks.
fn say(e: &Error) {
    if daemon::detached() {
        sinks::SyslogSink::say_error(&e.to_string());
    } else {
        eprintln!("{}", shared::text::escaped(&e.to_string()));
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

/// Where events come from: the conntrack event socket, or an opened capture.
enum Source {
    Conntrack(conntrack::EventSocket, Option<nflog::NflogSocket>),
    Capture(ipclog_capture::OpenCapture),
    Nflog(nflog::NflogSocket),
}

impl Source {
    /// Opens the source the command line names: without CAP_NET_ADMIN (or with a capture
    /// file that is not one) that is the one thing to say, before any output is created.
    fn open(cli: &Cli) -> Result<Source, Error> {
        if !cli.nflog.is_empty() && cli.with_conntrack {
            // Conntrack first: a missing permission is said once, for the main source.
            let ct = conntrack::open(cli.rcvbuf)?;
            let groups = nflog::parse_groups(&cli.nflog)
                .map_err(|e| Error::Start(format!("ipclog: {e}")))?;
            let nf = nflog::NflogSocket::open(&groups, cli.rcvbuf)?;
            return Ok(Source::Conntrack(ct, Some(nf)));
        }
        if !cli.nflog.is_empty() {
            let groups = nflog::parse_groups(&cli.nflog)
                .map_err(|e| Error::Start(format!("ipclog: {e}")))?;
            nflog::NflogSocket::open(&groups, cli.rcvbuf).map(Source::Nflog)
        } else if cli.capture.is_capture() {
            ipclog_capture::open_capture(&cli.capture)
                .map(Source::Capture)
                .map_err(Error::Capture)
        } else {
            conntrack::open(cli.rcvbuf).map(|s| Source::Conntrack(s, None))
        }
    }

    fn kind(&self) -> shared::Source {
        match self {
            Source::Conntrack(..) => shared::Source::Conntrack,
            Source::Capture(_) => shared::Source::Pcap,
            Source::Nflog(_) => shared::Source::Nflog,
        }
    }
}

/// Runs ipclog as the command line says; the exit status, or why it could not start.
fn run(cli: &Cli, opts: WriteOptions) -> Result<u8, Error> {
    if cli.status {
        let pidfile = cli
            .pidfile
            .as_deref()
            .unwrap_or(Path::new("/run/ipclog.pid"));
        return Ok(status::print(pidfile));
    }
    if cli.proc && cli.capture.read_file.is_some() {
        return Err(Error::Start(
            "ipclog: --proc needs live connections (conntrack mode or -i), not a capture file"
                .into(),
        ));
    }
    let filter = Filter::new(&cli.proto, &cli.port, &cli.host, &cli.iface)
        .map_err(|e| Error::Start(format!("ipclog: {e}")))?;
    if !cli.nflog.is_empty() && (cli.capture.is_capture() || cli.once || invoked_as_ipc()) {
        return Err(Error::Start(
            "ipclog: --nflog is a source of its own; it cannot be combined with -r/-i or -1/ipc"
                .into(),
        ));
    }
    if cli.once || invoked_as_ipc() {
        if cli.capture.is_capture() {
            return Err(Error::Start(
                "ipclog: -1/ipc shows conntrack's open connections; it cannot be combined with -r/-i".into(),
            ));
        }
        let names = cli
            .resolve
            .then(|| names::Names::blocking(!cli.numeric_ports));
        return ipc::print(&filter, opts, names.as_ref()).map(|()| 0);
    }
    if (cli.capture.sessions || cli.capture.write_file.is_some()) && !cli.capture.is_capture() {
        return Err(Error::Start(
            "ipclog: --sessions and -w work on packets: give -r FILE or -i IFACE".into(),
        ));
    }
    if cli.capture.sessions
        && (cli.json.as_deref() == Some("-")
            || cli.log.as_deref() == Some(Path::new("-"))
            || cli.daemon)
    {
        return Err(Error::Start(
            "ipclog: --sessions prints on standard output: give the log a file (-f FILE, \
             --json FILE) and do not detach"
                .into(),
        ));
    }
    if cli.daemon && (outputs::none_named(cli) || cli.json.as_deref() == Some("-")) {
        return Err(Error::Start(
            "ipclog: --daemon has no terminal: give -f FILE, --db FILE, --json FILE or --syslog"
                .into(),
        ));
    }
    let user = cli
        .user
        .as_deref()
        .map(privs::lookup_user)
        .transpose()
        .map_err(|e| Error::Start(format!("ipclog: {e}")))?;
    let policy = outfile::Policy {
        follow_symlinks: cli.follow_symlinks,
        owner: user.as_ref().map(|u| (u.uid, u.gid)),
    };
    let _ = sinks::OUTPUT_POLICY.set(policy);

    // Everything that can fail at start is opened now: the source first, then the pidfile
    // (a second ipclog must stop before any output is touched), then the outputs.
    let source = Source::open(cli)?;
    let command = std::env::args().collect::<Vec<_>>().join(" ");
    let run_now = || RunInfo {
        started: Utc::now(),
        source: source.kind(),
        command: &command,
    };
    let mut pidfile = cli
        .pidfile
        .as_deref()
        .map(|p| daemon::PidFile::acquire(p, &policy))
        .transpose()
        .map_err(Error::Start)?;
    let status_file = cli
        .pidfile
        .as_deref()
        .map(|p| status::StatusFile::open(p, &policy))
        .transpose()
        .map_err(Error::Start)?;
    let mut fan = outputs::open_text(cli, opts)?;
    if cli.proc {
        fan.procs = Some(procs::Attributor::open().map_err(|e| {
            Error::Start(format!("ipclog: --proc: cannot open the socket table: {e}"))
        })?);
    }
    let mut store = outputs::open_db(cli, &run_now(), cli.daemon)?;
    let mut remotes = outputs::open_remote(cli, &run_now(), cli.daemon)?;
    if cli.daemon {
        drop(remotes);
        daemon::daemonize().map_err(|e| Error::Start(format!("ipclog: cannot detach: {e}")))?;
        store = outputs::open_db(cli, &run_now(), false)?;
        remotes = outputs::open_remote(cli, &run_now(), false)?;
    }
    // Everything is open: what remains needs at most CAP_NET_ADMIN (conntrack's dumps). Done
    // before any thread starts, as capabilities are per thread.
    let mut keep: Vec<u32> = match &source {
        Source::Conntrack(..) => {
            // Raising a nice value needs no privilege, lowering it needs CAP_SYS_NICE: so this
            // thread takes the reader's priority now, and every thread started later inherits
            // it and moves to its own (conntrack::run, the database and name threads).
            daemon::set_thread_nice(-10);
            vec![privs::CAP_NET_ADMIN]
        }
        Source::Capture(_) | Source::Nflog(_) => vec![],
    };
    if cli.proc {
        keep.push(privs::CAP_SYS_PTRACE);
    }
    privs::drop_privileges(&keep, user.as_ref())
        .map_err(|e| Error::Start(format!("ipclog: {e}")))?;
    if let Some(p) = &mut pidfile {
        p.write_pid()
            .map_err(|e| Error::Start(format!("ipclog: cannot write pidfile: {e}")))?;
    }
    daemon::install_signal_handlers();
    // Threads start only now (after a possible fork).
    if cli.resolve {
        if let Some(l) = &mut fan.line_log {
            l.set_names(names::Names::start(!cli.numeric_ports));
        }
    }
    if let Some(s) = store {
        outputs::start_db(&mut fan, s, cli);
    }
    outputs::start_remote(&mut fan, remotes, cli);
    fan.filter = filter;
    let stats_every = cli.stats.filter(|&s| s > 0).map(Duration::from_secs);
    fan.stats_every = stats_every;
    if let Some(s) = &status_file {
        let kind = if cli.capture.is_capture() {
            "pcap"
        } else {
            "conntrack"
        };
        s.start(kind, outputs::listed(cli))
            .map_err(|e| Error::Start(format!("ipclog: cannot start the status thread: {e}")))?;
    }
    let run = run_now();
    let code = match source {
        Source::Conntrack(sock, nflog) => {
            let cfg = conntrack::Config {
                queue: cli.queue,
                evict_every: (cli.evict_every > 0.0)
                    .then(|| Duration::from_secs_f64(cli.evict_every.min(86_400.0))),
                stats_every,
                nflog,
            };
            conntrack::run(cfg, sock, &mut fan, &run)
        }
        Source::Capture(capture) => {
            // Nothing to load first: the capture is open, packets are logged from now on.
            daemon::notify("READY=1");
            packets::run(capture, &cli.capture, &mut fan, stats_every, &run)
        }
        Source::Nflog(sock) => {
            // The groups are bound: packets are logged from now on.
            daemon::notify("READY=1");
            nflog::run(sock, &mut fan, &run, stats_every)
        }
    };
    drop(status_file);
    daemon::notify("STOPPING=1");
    drop(pidfile);
    Ok(fan.outcome().exit_code(code))
}
