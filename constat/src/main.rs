//! constat: the daily table of who talked to whom, how often and how long, from ipclog's line
//! log (or its SQLite history). Known hosts and services carry the names of the lookup file, so
//! unknown ones stand out. The log is streamed, so memory stays flat however long it is.
//!
//! The way through: `shared::logfmt::LogReader` reads the log line by line and parses each
//! O/S/C line into a `ConnLine` borrowed from the line; [`scan`] pairs opens with closes and
//! adds each connection to its report row (from the history, [`db`] reads one row per
//! connection through `store::open_read_only` instead); [`render`] puts the lookup file's
//! names on the rows and prints the table.

mod db;
mod packets;
mod pg;
mod render;
mod scan;

use std::ffi::OsString;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use chrono::{Local, NaiveDate};
use clap::Parser;
use lookup::{Lookup, NameCache, Services};
use shared::logfmt::{LogLine, LogReader};
use shared::text::escaped;

use crate::render::{Layout, Namer};
use crate::scan::{Host, Scan};

const AFTER_HELP: &str = "\
The original's single-dash options -noany and -nc work as well as --no-any and --no-cache.

Examples:
  constat                              today's connections from /var/log/ipclog.log
  constat -d 2004-08-05                one day
  constat -a -f /var/log/ipclog.log.1  a whole rotated log
  zcat ipclog.log.2.gz | constat -a -f -
  constat -f /var/lib/ipclog/history.db -d 2004-08-05   ipclog's SQLite history (by content)
  constat -n -noany                    raw addresses and ports, every web server on its own row

Report: one row per (src, prot, dport, dst) of the connections OPENED on the day (-a: in the
file), sorted by the names shown:
  src    source address, or the local interface when this host is the source
  prot   protocol (tcp, udp, icmp, or the protocol number)
  dport  destination service name (lookup file, /etc/services, built-in) or port number
  dst    destination; http/https destinations not named in the lookup file are `any`
  n      connections opened
  nopn   of those, not closed by the end of the log
  avgtm  average duration in seconds of the closed ones (time column of the C line)
  maxtm  longest duration in seconds
With --by proc: one row per local process that owned the connections (ipclog --proc's
comm=), most connections first, `-` for connections without one; columns n, nopn, avgtm,
maxtm (and bytes) as above.
Names ending in `?` come from the reverse-DNS name cache, not from the lookup file.
Then `N ERRORS`: lines (database rows) that could not be read, or that hold a count or time
beyond 2^63-1; -v shows each one as `file:line: field: reason` on stderr. A last line without
its newline (cut off, or still being written) is one error and ends the reading. When the log
carries anomaly tokens (ipclog -r/-i), a section `connections with anomalies` precedes the
ERRORS line; likewise `packets logged by the packet filter` when the log has F lines (or the
history packets rows) from ipclog --nflog: packets per rule prefix, action b/p/L, source,
protocol and destination port, then per rule, and `N PACKETS LOST` when the logger lost or
could not log some. When the logger lost or dropped events on the day (P lines `lost N events`,
`dropped N events (reason)`; the history's runs.lost_events and runs.dropped), a line
`N EVENTS LOST by the logger`. Names are printed escaped: control and bidi characters, spaces
and backslashes as \\xHH or \\uHHHH.

Exit status: 0 report printed (unreadable lines are counted in ERRORS); 1 read error in the
middle of the input (or a line longer than 1 MiB: not a log); 2 bad usage or bad input at start (bad option or date, missing or
unreadable log, not a log, missing --lookup file).";

/// Daily connection statistics from an ipclog log.
#[derive(Parser, Debug)]
#[command(name = "constat", version, about, after_help = AFTER_HELP)]
struct Args {
    /// Scan the whole file, not one day
    #[arg(short = 'a', long = "all", conflicts_with = "date")]
    all: bool,

    /// The day to report, YYYY-MM-DD [default: today, local time]
    #[arg(short = 'd', long = "date", value_name = "YYYY-MM-DD", value_parser = parse_day)]
    date: Option<NaiveDate>,

    /// The log to scan: ipclog's line log, its SQLite history, a PostgreSQL history's
    /// postgresql:// URL, or - for standard input
    #[arg(
        short = 'f',
        long = "file",
        value_name = "LOGFILE",
        default_value = "/var/log/ipclog.log"
    )]
    file: PathBuf,

    /// Show every http/https destination on its own row, not as `any` (also -noany)
    #[arg(long = "no-any")]
    no_any: bool,

    /// Do not read the reverse-DNS name cache (also -nc)
    #[arg(long = "no-cache")]
    no_cache: bool,

    /// The name cache file
    #[arg(long, value_name = "FILE", default_value = lookup::DEFAULT_CACHE)]
    cache: PathBuf,

    /// Ask DNS for addresses without a name and remember the answers in the cache
    #[arg(long, conflicts_with = "no_cache")]
    resolve: bool,

    /// The lookup file with host, network and service names [default: /etc/constat.lookup,
    /// which may be absent]
    #[arg(long, value_name = "FILE")]
    lookup: Option<PathBuf>,

    /// Numeric: raw addresses and port numbers, no names
    #[arg(short = 'n', long)]
    numeric: bool,

    /// Report each unreadable line on stderr as file:line: field: reason
    #[arg(short = 'v', long)]
    verbose: bool,

    /// Add a column with the IP bytes (both directions) of the closed connections
    #[arg(long)]
    bytes: bool,

    /// Group the report: `conn` by (src, prot, dport, dst), `proc` by the local process that
    /// owned the connection (ipclog --proc's comm)
    #[arg(long, value_enum, default_value = "conn")]
    by: By,

    /// With a PostgreSQL history (-f postgresql://...): report this logger's connections only
    /// (ipclog --host-name) [default: every logger's]
    #[arg(long = "host-name", value_name = "NAME")]
    host_name: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum By {
    Conn,
    Proc,
}

fn parse_day(s: &str) -> Result<NaiveDate, String> {
    let ok_shape = s.len() == 10
        && s.bytes().enumerate().all(|(i, b)| {
            if i == 4 || i == 7 {
                b == b'-'
            } else {
                b.is_ascii_digit()
            }
        });
    if !ok_shape {
        return Err(format!("{s:?} is not a date of the form YYYY-MM-DD"));
    }
    NaiveDate::parse_from_str(s, "%Y-%m-%d")
        .map_err(|_| format!("{s:?} is not a valid date (YYYY-MM-DD, e.g. 2004-08-05)"))
}

/// Maps the original's single-dash long options to ours (clap would read `-nc` as `-n -c`).
fn seed_options(args: impl IntoIterator<Item = OsString>) -> Vec<OsString> {
    let mut out = Vec::new();
    let mut rest = false;
    for a in args {
        if rest {
            out.push(a);
            continue;
        }
        match a.to_str() {
            Some("--") => {
                rest = true;
                out.push(a);
            }
            Some("-noany") => out.push("--no-any".into()),
            Some("-nc") => out.push("--no-cache".into()),
            _ => out.push(a),
        }
    }
    out
}

const DEFAULT_LOOKUP: &str = "/etc/constat.lookup";

fn main() -> ExitCode {
    let args = match Args::try_parse_from(seed_options(std::env::args_os())) {
        Ok(a) => a,
        // clap quotes a bad argument as given, and on a terminal passes its escapes through.
        Err(e) if e.use_stderr() => {
            let mut text = String::new();
            for line in e.render().to_string().lines() {
                text.push_str(&escaped(line));
                text.push('\n');
            }
            eprint!("{text}");
            return ExitCode::from(u8::try_from(e.exit_code()).unwrap_or(2));
        }
        Err(e) => e.exit(),
    };
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err((code, msg)) => {
            if !msg.is_empty() {
                // Messages quote file names and input, which may hold terminal controls.
                eprintln!("constat: {}", escaped(&msg));
            }
            ExitCode::from(code)
        }
    }
}

type Failure = (u8, String);

fn run(args: &Args) -> Result<(), Failure> {
    // Names first: a missing named lookup file is a usage error before any work is done.
    let lookup = load_lookup(args.lookup.as_deref())?;
    let (services, svc_warnings) = Services::system();
    for w in svc_warnings {
        if args.verbose {
            eprintln!("constat: warning: {w}");
        }
    }
    let mut cache = if args.no_cache || args.numeric {
        None
    } else {
        let (c, warnings) = NameCache::load(&args.cache);
        for w in warnings {
            eprintln!("constat: warning: {w}");
        }
        Some(c)
    };

    let day = if args.all {
        None
    } else {
        Some(args.date.unwrap_or_else(|| Local::now().date_naive()))
    };
    let mut scan = Scan::new(day);
    scan.by_proc = args.by == By::Proc;
    read_input(args, day, &mut scan)?;
    scan.finish();

    if args.resolve && !scan.by_proc {
        if let Some(c) = cache.as_mut() {
            resolve_unnamed(&scan, &lookup, c);
        }
    }
    let namer = Namer {
        lookup: &lookup,
        services: &services,
        cache: cache.as_ref(),
        numeric: args.numeric,
        no_any: args.no_any,
    };
    let layout = Layout {
        heading: match day {
            Some(d) => format!("scanning for date {}", d.format("%Y-%m-%d")),
            None => "scanning whole file".to_string(),
        },
        bytes: args.bytes,
    };
    let stdout = io::stdout().lock();
    let mut out = io::BufWriter::with_capacity(64 * 1024, stdout);
    let written = if scan.by_proc {
        render::report_by_proc(
            &mut out,
            &layout,
            &scan.rows,
            &scan.interner,
            scan.lost_events,
            scan.errors,
        )
    } else {
        let rows = namer.named_rows(&scan.rows, &scan.interner);
        render::report(
            &mut out,
            &layout,
            &rows,
            scan.lost_events,
            scan.errors,
            |o| scan.packets.write(o, &namer),
        )
    };
    match written.and_then(|_| out.flush()) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Err((1, String::new())),
        Err(e) => Err((1, format!("writing the report: {e}"))),
    }
}

fn load_lookup(named: Option<&Path>) -> Result<Lookup, Failure> {
    let path = named.unwrap_or(Path::new(DEFAULT_LOOKUP));
    match Lookup::load(path) {
        Ok((l, warnings)) => {
            for w in warnings {
                eprintln!("constat: warning: {w} (line skipped)");
            }
            Ok(l)
        }
        Err(e) if named.is_none() && e.kind() == io::ErrorKind::NotFound => Ok(Lookup::new()),
        Err(e) => Err((
            2,
            format!(
                "{}: cannot read lookup file: {e}",
                escaped(&path.display().to_string())
            ),
        )),
    }
}

/// Looks up, with live DNS, every address in the report that neither the lookup file nor the
/// cache names, and saves the answers.
fn resolve_unnamed(scan: &Scan, lookup: &Lookup, cache: &mut NameCache) {
    let now = chrono::Utc::now().timestamp().max(0) as u64;
    let mut asked = std::collections::HashSet::new();
    for ((src, _, _, dst), _) in &scan.rows {
        for h in [src, dst] {
            if let Host::Ip(a) = *h {
                if lookup.host_name(a).is_none() && cache.get(a).is_none() && asked.insert(a) {
                    if let Some(name) = lookup::resolve(a) {
                        cache.insert(a, &name, now);
                    }
                }
            }
        }
    }
    if let Err(e) = cache.save() {
        eprintln!(
            "constat: warning: {}: cannot save name cache: {e}",
            escaped(&cache.path().display().to_string())
        );
    }
}

fn read_input(args: &Args, day: Option<NaiveDate>, scan: &mut Scan) -> Result<(), Failure> {
    if let Some(url) = args.file.to_str().filter(|f| store::pg::is_url(f)) {
        let host = args.host_name.as_deref();
        return pg::scan_pg(url, host, day, scan, args.verbose).map_err(|m| (2, m));
    }
    let stdin = args.file.as_os_str() == "-";
    let shown = if stdin {
        "<stdin>".to_string()
    } else {
        escaped(&args.file.display().to_string()).into_owned()
    };
    let reader: Box<dyn Read> = if stdin {
        Box::new(io::stdin().lock())
    } else {
        match std::fs::File::open(&args.file) {
            Ok(f) => {
                if f.metadata().map(|m| m.is_dir()).unwrap_or(false) {
                    return Err((2, format!("{shown}: is a directory, not a log")));
                }
                Box::new(f)
            }
            Err(e) => return Err((2, format!("{shown}: cannot open log: {e}"))),
        }
    };
    let mut reader = BufReader::with_capacity(256 * 1024, reader);
    let head = reader
        .fill_buf()
        .map_err(|e| (2, format!("{shown}: cannot read log: {e}")))?;
    if head.starts_with(db::SQLITE_MAGIC) {
        if stdin {
            return Err((2, "an SQLite history cannot be read from stdin".into()));
        }
        drop(reader);
        return db::scan_db(&args.file, day, scan, args.verbose).map_err(|m| (2, m));
    }
    // A NUL byte near the start means this is no text log at all (a capture, a compressed
    // log, a database of another kind): say so instead of reporting thousands of bad lines.
    if let Some(pos) = head.iter().take(4096).position(|&b| b == 0) {
        return Err((
            2,
            format!(
                "{shown}: not an ipclog log (binary data at byte {}); constat reads ipclog's \
                 text log or its SQLite history (for a compressed log: zcat FILE | constat -f -)",
                pos + 1
            ),
        ));
    }
    if head.is_empty() && args.verbose {
        eprintln!("constat: {shown}: empty log");
    }
    let mut log = LogReader::new(reader);
    let mut last = 0;
    loop {
        let next = log
            .next_line()
            .map_err(|e| (1, format!("{shown}: read error after line {last}: {e}")))?;
        let Some((line_no, parsed)) = next else {
            break;
        };
        last = line_no;
        let res = match parsed {
            Ok(LogLine::Conn(c)) => scan.line(&c),
            Ok(LogLine::Packet(p)) => {
                scan.packet(&p);
                Ok(())
            }
            Ok(LogLine::Program { ts, message }) => scan.program(ts.date(), message),
            Ok(_) => Ok(()),
            Err(e) => Err(e),
        };
        if let Err(e) = res {
            scan.errors += 1;
            if args.verbose {
                eprintln!("{shown}:{line_no}: {}", escaped(&e.to_string()));
            }
        }
    }
    if args.verbose {
        eprintln!(
            "constat: {shown}: {last} lines, {} closes without an open (opened before the log \
             started), {} connections still open at the end",
            scan.unmatched_closes,
            scan.open_count()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seed_single_dash_options_are_mapped() {
        let v = seed_options(["constat", "-noany", "-nc", "-n", "--", "-nc"].map(OsString::from));
        assert_eq!(v, ["constat", "--no-any", "--no-cache", "-n", "--", "-nc"]);
        let a = Args::parse_from(seed_options(
            ["constat", "-nc", "-noany", "-d", "2004-08-05"].map(OsString::from),
        ));
        assert!(a.no_cache && a.no_any && !a.numeric);
        assert_eq!(a.date, NaiveDate::from_ymd_opt(2004, 8, 5));
    }

    #[test]
    fn dates_are_checked() {
        assert!(parse_day("2004-08-05").is_ok());
        assert!(parse_day("2004-13-45")
            .unwrap_err()
            .contains("not a valid date"));
        assert!(parse_day("2004-8-5").unwrap_err().contains("YYYY-MM-DD"));
        assert!(parse_day("05.08.2004").is_err());
    }
}
