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
mod formats;
mod input;
mod query;
mod render;
mod scan;
mod sections;

use std::ffi::OsString;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use chrono::{Local, NaiveDate};
use clap::Parser;
use lookup::{Lookup, NameCache, Services};
use shared::text::escaped;

use crate::render::{Layout, Namer};
use crate::scan::{Host, Scan};

const AFTER_HELP: &str = "\
The original's single-dash options -noany and -nc work as well as --no-any and --no-cache.

Examples:
  constat                              today's connections from /var/log/ipclog.log
  constat -d 2004-08-05                one day
  constat -a -f /var/log/ipclog.log.1  a whole rotated log
  constat -d yesterday -f '/var/log/ipclog.log*'   rotated and gzip'd logs, oldest first
  constat --from 2004-08-01 --to 2004-08-07 --per-day   a week, one table per day
  constat --host 203.0.113.0/24 --sections all --format html > report.html
  constat query -f /var/lib/ipclog/history.db --host 203.0.113.9 --from 2004-08-03
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
ERRORS line, and when the logger lost or dropped events on the day (P lines `lost N events`,
`dropped N events (reason)`; the history's runs.lost_events and runs.dropped), a line
`N EVENTS LOST by the logger`. Names are printed escaped: control and bidi characters, spaces
and backslashes as \\xHH or \\uHHHH.

Sections after the table (--sections table,anomalies,new,top,health or all; default
table,anomalies,health), each only when it has content: the worst anomalous connections of
each kind with time and uid; destinations and ports new since the last report (state file in
--state-dir); top destinations and ports by connections, bytes each way and duration, with
totals; the logger's health (restarts, write errors, lost events). --format csv|json|html:
see README for their fields. `constat query --help`: connections by host, port, state, ...

Exit status: 0 report printed (unreadable lines are counted in ERRORS); 1 read error in the
middle of the input (a corrupt gzip member: file, line and offset named; a line longer than
1 MiB: not a log), or a state file that cannot be read or saved; 2 bad usage or bad input at
start (bad option, date or range, missing or unreadable log among the -f, not a log, missing
--lookup file); 3 with --quiet: nothing to report, nothing printed.";

/// Daily connection statistics from an ipclog log.
#[derive(Parser, Debug)]
#[command(name = "constat", version, about, after_help = AFTER_HELP)]
struct Args {
    /// Scan the whole file, not one day
    #[arg(short = 'a', long = "all", conflicts_with_all = ["date", "from", "to"])]
    all: bool,

    /// The day to report: YYYY-MM-DD, today or yesterday [default: today, local time]
    #[arg(short = 'd', long = "date", value_name = "DAY", value_parser = parse_day,
          conflicts_with_all = ["from", "to"])]
    date: Option<NaiveDate>,

    /// The first day of a range (inclusive; with --to, default today)
    #[arg(long, value_name = "DAY", value_parser = parse_day)]
    from: Option<NaiveDate>,

    /// The last day of a range (inclusive; with --from, default the same day)
    #[arg(long, value_name = "DAY", value_parser = parse_day)]
    to: Option<NaiveDate>,

    /// With --from/--to: one report per day instead of one over the range
    #[arg(long)]
    per_day: bool,

    /// The log to scan: ipclog's line log (plain, gzip or zstd, told by content), its SQLite
    /// history, or - for standard input. Repeat for several, read in order as one log; a
    /// pattern (quoted: '/var/log/ipclog.log*') reads its files oldest first
    #[arg(
        short = 'f',
        long = "file",
        value_name = "LOGFILE",
        default_value = "/var/log/ipclog.log"
    )]
    file: Vec<PathBuf>,

    /// Only connections with this address (ADDR[/LEN]) or interface at either end (repeat:
    /// any of them)
    #[arg(long, value_name = "ADDR[/LEN]", value_parser = scan::Target::parse)]
    host: Vec<scan::Target>,

    /// Only connections from this source (ADDR[/LEN] or interface)
    #[arg(long, value_name = "ADDR[/LEN]", value_parser = scan::Target::parse)]
    src: Vec<scan::Target>,

    /// Only connections to this destination (ADDR[/LEN] or interface)
    #[arg(long, value_name = "ADDR[/LEN]", value_parser = scan::Target::parse)]
    dst: Vec<scan::Target>,

    /// Only connections to this destination port (number)
    #[arg(long, value_name = "PORT")]
    port: Vec<u16>,

    /// Only this protocol (tcp, udp, icmp, ... or a number)
    #[arg(long, value_name = "PROTO", value_parser = parse_proto)]
    proto: Vec<u8>,

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

    /// The sections to print, comma-separated: table, anomalies, new, top, health, or all
    /// [default: table,anomalies,health]; each prints only when it has something to say
    #[arg(long, value_name = "LIST", value_parser = sections::Sections::parse)]
    sections: Option<sections::Sections>,

    /// How many items each top list shows
    #[arg(long, value_name = "N", default_value_t = 10)]
    top: usize,

    /// Where `--sections new` keeps what it has seen, one file per log
    #[arg(long, value_name = "DIR", default_value = "/var/lib/constat")]
    state_dir: PathBuf,

    /// Output format: text (the mailed report), csv, json or html
    #[arg(long, value_enum, default_value = "text")]
    format: formats::Format,

    /// Print nothing, and exit 3, when the report has nothing to say (no connection, no
    /// anomaly, no trouble, no unreadable line): for cron
    #[arg(short = 'q', long)]
    quiet: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum By {
    Conn,
    Proc,
}

fn parse_proto(s: &str) -> Result<u8, String> {
    s.parse::<u8>()
        .ok()
        .or_else(|| shared::proto::proto_from_name(s))
        .ok_or_else(|| format!("{s:?} is not a protocol name or number"))
}

fn parse_day(s: &str) -> Result<NaiveDate, String> {
    let today = || Local::now().date_naive();
    match s {
        "today" => return Ok(today()),
        "yesterday" => {
            return today()
                .pred_opt()
                .ok_or_else(|| "no day before today".to_string())
        }
        _ => {}
    }
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
    let argv: Vec<OsString> = std::env::args_os().collect();
    if argv.get(1).is_some_and(|a| a == "query") {
        let rest =
            std::iter::once(OsString::from("constat query")).chain(argv[2..].iter().cloned());
        return match query::main(rest) {
            Ok(()) => ExitCode::SUCCESS,
            Err((code, msg)) => {
                if !msg.is_empty() {
                    eprintln!("constat query: {}", escaped(&msg));
                }
                ExitCode::from(code)
            }
        };
    }
    let args = match Args::try_parse_from(seed_options(argv)) {
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

use input::Failure;

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

    let today = Local::now().date_naive();
    let range = match (args.all, args.date, args.from, args.to) {
        (true, ..) => None,
        (_, Some(d), ..) => Some((d, d)),
        (_, None, None, None) => Some((today, today)),
        (_, None, from, to) => {
            let to = to.unwrap_or(today);
            let from = from.unwrap_or(to);
            if from > to {
                return Err((
                    2,
                    format!(
                        "--from {} is after --to {}",
                        from.format("%Y-%m-%d"),
                        to.format("%Y-%m-%d")
                    ),
                ));
            }
            Some((from, to))
        }
    };
    if args.per_day && args.all {
        return Err((2, "--per-day needs --from/--to, not -a".into()));
    }
    let inputs = input::expand(&args.file)?;
    let progress = input::wants_progress(&inputs);
    let ranges: Vec<Option<(NaiveDate, NaiveDate)>> = match range {
        Some((a, b)) if args.per_day => a
            .iter_days()
            .take_while(|d| *d <= b)
            .map(|d| Some((d, d)))
            .collect(),
        r => vec![r],
    };
    let stdin_used = inputs.iter().any(|i| i.stdin);
    if stdin_used && ranges.len() > 1 {
        return Err((
            2,
            "--per-day reads the log once per day: it cannot read standard input".into(),
        ));
    }
    if args.by == By::Proc && args.format != formats::Format::Text {
        return Err((2, "--by proc prints text only".into()));
    }
    let mut reported = false;
    for range in ranges {
        let mut scan = Scan::range(range);
        scan.by_proc = args.by == By::Proc;
        scan.filter = scan::Filter {
            host: args.host.clone(),
            src: args.src.clone(),
            dst: args.dst.clone(),
            port: args.port.clone(),
            proto: args.proto.clone(),
        };
        let opts = input::Options {
            range,
            verbose: args.verbose,
            progress,
        };
        input::read_all(&inputs, &opts, &mut scan)?;
        scan.finish();
        reported |= report_one(args, range, &scan, &lookup, &services, cache.as_mut())?;
    }
    if args.quiet && !reported {
        return Err((3, String::new()));
    }
    Ok(())
}

fn report_one(
    args: &Args,
    range: Option<(NaiveDate, NaiveDate)>,
    scan: &Scan,
    lookup: &Lookup,
    services: &Services,
    mut cache: Option<&mut NameCache>,
) -> Result<bool, Failure> {
    if args.resolve && !scan.by_proc {
        if let Some(c) = cache.as_deref_mut() {
            resolve_unnamed(scan, lookup, c);
        }
    }
    let namer = Namer {
        lookup,
        services,
        cache: cache.as_deref(),
        numeric: args.numeric,
        no_any: args.no_any,
    };
    let layout = Layout {
        heading: match range {
            Some((a, b)) if a == b => format!("scanning for date {}", a.format("%Y-%m-%d")),
            Some((a, b)) => format!(
                "scanning from {} to {}",
                a.format("%Y-%m-%d"),
                b.format("%Y-%m-%d")
            ),
            None => "scanning whole file".to_string(),
        },
        bytes: args.bytes,
        table: true,
        anomalies: true,
    };
    let sections = args.sections.unwrap_or_default();
    let layout = Layout {
        table: sections.table,
        anomalies: sections.anomalies,
        ..layout
    };
    let has_content = scan.rows.iter().any(|(_, r)| r.n > 0)
        || scan.errors > 0
        || scan.health.has_trouble(scan.lost_events);
    if args.quiet && !has_content {
        return Ok(false);
    }
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
        let new = match (sections.new, range) {
            (true, Some((from, _))) => {
                let first = args
                    .file
                    .first()
                    .map(PathBuf::as_path)
                    .unwrap_or(Path::new("-"));
                let state = sections::state_path(&args.state_dir, first);
                Some(sections::new_items(scan, lookup, from, &state).map_err(|m| (1, m))?)
            }
            _ => None,
        };
        let report = sections::Report {
            heading: layout.heading.clone(),
            range,
            rows: &rows,
            bytes: args.bytes,
            sections,
            worst: sections::worst(scan),
            notable_counts: scan.notables.count,
            new,
            // HTML charts the first list (top destinations) whatever the sections.
            tops: if sections.top || args.format == formats::Format::Html {
                sections::tops(&rows, args.top)
            } else {
                Vec::new()
            },
            health: scan.health,
            hours: scan.hours,
            lost: scan.lost_events,
            errors: scan.errors,
        };
        match args.format {
            formats::Format::Text => render::report_with(
                &mut out,
                &layout,
                &rows,
                scan.lost_events,
                scan.errors,
                &mut |o| sections::write_text(o, &report),
            ),
            f => formats::write(&mut out, f, &report),
        }
    };
    match written.and_then(|_| out.flush()) {
        Ok(()) => Ok(true),
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
