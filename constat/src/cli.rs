//! constat's command line, as a library so that the man page and the shell completions
//! (`xtask`) are generated from the very definition the binary parses.

use std::path::PathBuf;

use chrono::NaiveDate;
use clap::Parser;
use shared::net::Cidr;

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
ERRORS line; likewise `packets logged by the packet filter` when the log has F lines (or the
history packets rows) from ipclog --nflog: packets per rule prefix, action b/p/L, source,
protocol and destination port, then per rule, and `N PACKETS LOST` when the logger lost or
could not log some. When the logger lost or dropped events on the day (P lines `lost N events`,
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
--lookup file); 3 with --quiet: nothing to report, nothing printed.

Manual: man constat (the report), man constat-query, man 5 constat.lookup (the lookup file),\nman ipclog.";

/// Daily connection statistics from an ipclog log.
#[derive(Parser, Debug)]
#[command(
    name = "constat",
    version = concat!(env!("CARGO_PKG_VERSION"), " (git ", env!("GIT_REV"), ")"),
    about = "daily connection statistics from an ipclog log",
    after_help = AFTER_HELP
)]
pub struct Args {
    /// Scan the whole file, not one day
    #[arg(short = 'a', long = "all", conflicts_with_all = ["date", "from", "to"])]
    pub all: bool,

    /// The day to report: YYYY-MM-DD, today or yesterday [default: today, local time]
    #[arg(short = 'd', long = "date", value_name = "DAY", value_parser = parse_day,
          conflicts_with_all = ["from", "to"])]
    pub date: Option<NaiveDate>,

    /// The first day of a range (inclusive; with --to, default today)
    #[arg(long, value_name = "DAY", value_parser = parse_day)]
    pub from: Option<NaiveDate>,

    /// The last day of a range (inclusive; with --from, default the same day)
    #[arg(long, value_name = "DAY", value_parser = parse_day)]
    pub to: Option<NaiveDate>,

    /// With --from/--to: one report per day instead of one over the range
    #[arg(long)]
    pub per_day: bool,

    /// The log to scan: ipclog's line log (plain, gzip or zstd, told by content), its SQLite
    /// history, a PostgreSQL history's postgresql:// URL, or - for standard input. Repeat for several, read in order as one log; a
    /// pattern (quoted: '/var/log/ipclog.log*') reads its files oldest first
    #[arg(
        short = 'f',
        long = "file",
        value_name = "LOGFILE",
        default_value = "/var/log/ipclog.log"
    )]
    pub file: Vec<PathBuf>,

    /// With a PostgreSQL history (-f postgresql://...): this logger's connections only
    /// (ipclog --host-name) [default: every logger's]
    #[arg(long = "host-name", value_name = "NAME")]
    pub host_name: Option<String>,

    /// Only connections with this address (ADDR[/LEN]) or interface at either end (repeat:
    /// any of them)
    #[arg(long, value_name = "ADDR[/LEN]", value_parser = Target::parse)]
    pub host: Vec<Target>,

    /// Only connections from this source (ADDR[/LEN] or interface)
    #[arg(long, value_name = "ADDR[/LEN]", value_parser = Target::parse)]
    pub src: Vec<Target>,

    /// Only connections to this destination (ADDR[/LEN] or interface)
    #[arg(long, value_name = "ADDR[/LEN]", value_parser = Target::parse)]
    pub dst: Vec<Target>,

    /// Only connections to this destination port (number)
    #[arg(long, value_name = "PORT")]
    pub port: Vec<u16>,

    /// Only this protocol (tcp, udp, icmp, ... or a number)
    #[arg(long, value_name = "PROTO", value_parser = parse_proto)]
    pub proto: Vec<u8>,

    /// Show every http/https destination on its own row, not as `any` (also -noany)
    #[arg(long = "no-any")]
    pub no_any: bool,

    /// Do not read the reverse-DNS name cache (also -nc)
    #[arg(long = "no-cache")]
    pub no_cache: bool,

    /// The name cache file
    #[arg(long, value_name = "FILE", default_value = lookup::DEFAULT_CACHE)]
    pub cache: PathBuf,

    /// Ask DNS for addresses without a name and remember the answers in the cache
    #[arg(long, conflicts_with = "no_cache")]
    pub resolve: bool,

    /// The lookup file with host, network and service names [default: /etc/constat.lookup,
    /// which may be absent]
    #[arg(long, value_name = "FILE")]
    pub lookup: Option<PathBuf>,

    /// Numeric: raw addresses and port numbers, no names
    #[arg(short = 'n', long)]
    pub numeric: bool,

    /// Report each unreadable line on stderr as file:line: field: reason
    #[arg(short = 'v', long)]
    pub verbose: bool,

    /// Add a column with the IP bytes (both directions) of the closed connections
    #[arg(long)]
    pub bytes: bool,

    /// Group the report: `conn` by (src, prot, dport, dst), `proc` by the local process that
    /// owned the connection (ipclog --proc's comm)
    #[arg(long, value_enum, default_value = "conn")]
    pub by: By,

    /// The sections to print, comma-separated: table, anomalies, new, top, health, or all
    /// [default: table,anomalies,health]; each prints only when it has something to say
    #[arg(long, value_name = "LIST", value_parser = Sections::parse)]
    pub sections: Option<Sections>,

    /// How many items each top list shows
    #[arg(long, value_name = "N", default_value_t = 10)]
    pub top: usize,

    /// Where `--sections new` keeps what it has seen, one file per log
    #[arg(long, value_name = "DIR", default_value = "/var/lib/constat")]
    pub state_dir: PathBuf,

    /// Output format: text (the mailed report), csv, json or html
    #[arg(long, value_enum, default_value = "text")]
    pub format: Format,

    /// Print nothing, and exit 3, when the report has nothing to say (no connection, no
    /// anomaly, no trouble, no unreadable line): for cron
    #[arg(short = 'q', long)]
    pub quiet: bool,
}

/// How the report's rows are grouped (`--by`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum By {
    Conn,
    Proc,
}

/// One `--host`/`--src`/`--dst` value: a network, or a name as the log shows it (a local
/// interface).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Net(Cidr),
    Name(String),
}

impl Target {
    pub fn parse(s: &str) -> Result<Target, String> {
        if s.is_empty() {
            return Err("empty host".into());
        }
        match Cidr::parse(s) {
            Ok(c) => Ok(Target::Net(c)),
            Err(_) if s.contains('/') || s.parse::<f64>().is_ok() => Err(format!(
                "{s:?} is not an address, ADDRESS/LENGTH or interface name"
            )),
            // An interface, as the log shows a local end.
            Err(_) => Ok(Target::Name(s.to_string())),
        }
    }
}

/// The sections `--sections` can name, in report order.
pub const SECTION_NAMES: [&str; 5] = ["table", "anomalies", "new", "top", "health"];

/// Which sections to print.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sections {
    pub table: bool,
    pub anomalies: bool,
    pub new: bool,
    pub top: bool,
    pub health: bool,
}

impl Default for Sections {
    /// The seed's report (the table, ERRORS) and what only shows when something went wrong.
    fn default() -> Sections {
        Sections {
            table: true,
            anomalies: true,
            new: false,
            top: false,
            health: true,
        }
    }
}

impl Sections {
    pub fn parse(s: &str) -> Result<Sections, String> {
        let mut out = Sections {
            table: false,
            anomalies: false,
            new: false,
            top: false,
            health: false,
        };
        for name in s.split(',').map(str::trim) {
            match name {
                "table" => out.table = true,
                "anomalies" => out.anomalies = true,
                "new" => out.new = true,
                "top" => out.top = true,
                "health" => out.health = true,
                "all" => {
                    out = Sections {
                        table: true,
                        anomalies: true,
                        new: true,
                        top: true,
                        health: true,
                    }
                }
                other => {
                    return Err(format!(
                        "{other:?} is not a section (one of {}, or all)",
                        SECTION_NAMES.join(", ")
                    ))
                }
            }
        }
        Ok(out)
    }
}

/// `--format`: the report's output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Text,
    Csv,
    Json,
    Html,
}

/// A protocol by name or number.
pub fn parse_proto(s: &str) -> Result<u8, String> {
    s.parse::<u8>()
        .ok()
        .or_else(|| shared::proto::proto_from_name(s))
        .ok_or_else(|| format!("{s:?} is not a protocol name or number"))
}

/// `YYYY-MM-DD`, `today` or `yesterday` (local time).
pub fn parse_day(s: &str) -> Result<NaiveDate, String> {
    let today = || chrono::Local::now().date_naive();
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

const QUERY_AFTER_HELP: &str = "\
Prints every connection that matches all the options given (each option may be repeated:
any of its values). From the SQLite history, one line per connection (its close, or its
open when it is still open); from line logs, the C line of each matching connection and the
O line of those never closed. --from/--to select the day the connection opened (history) or
the day of its line (logs).

Anomalies: retrans, syn_retrans, rst, long_delay, frag, long_conn (the log's tokens), and
refused (conn_state REJ), unanswered (conn_state S0).

Exit status: 0 connections printed, 3 none matched, 1 read error, 2 bad usage or input.

Manual: man constat-query.";

/// `constat query`: connections from ipclog's history or logs.
#[derive(Parser, Debug)]
#[command(
    name = "constat query",
    version = concat!(env!("CARGO_PKG_VERSION"), " (git ", env!("GIT_REV"), ")"),
    about = "connections from the history or the logs, by host, port, state, anomaly, days",
    after_help = QUERY_AFTER_HELP
)]
pub struct QueryArgs {
    /// The history (SQLite, or a PostgreSQL history's postgresql:// URL) or logs (plain, gzip
    /// or zstd; repeat, or a quoted pattern)
    #[arg(
        short = 'f',
        long = "file",
        value_name = "FILE",
        default_value = "/var/lib/ipclog/history.db"
    )]
    pub file: Vec<PathBuf>,

    /// With a PostgreSQL history (-f postgresql://...): this logger's connections only
    /// (ipclog --host-name) [default: every logger's]
    #[arg(long = "host-name", value_name = "NAME")]
    pub host_name: Option<String>,

    /// Either end is this address, network (ADDR/LEN) or interface
    #[arg(long, value_name = "ADDR[/LEN]", value_parser = Target::parse)]
    pub host: Vec<Target>,

    /// The destination port
    #[arg(long, value_name = "PORT")]
    pub port: Vec<u16>,

    /// The protocol (name or number)
    #[arg(long, value_name = "PROTO", value_parser = parse_proto)]
    pub proto: Vec<u8>,

    /// The Zeek connection state (S0, REJ, SF, RSTO, ...) or the last TCP state (ESTABLISHED,
    /// TIME_WAIT, ...)
    #[arg(long, value_name = "STATE")]
    pub state: Vec<String>,

    /// Connections with this anomaly
    #[arg(long, value_name = "KIND", value_parser = parse_anomaly)]
    pub anomaly: Vec<String>,

    /// The first day (YYYY-MM-DD, today, yesterday)
    #[arg(long, value_name = "DAY", value_parser = parse_day)]
    pub from: Option<NaiveDate>,

    /// The last day (inclusive)
    #[arg(long, value_name = "DAY", value_parser = parse_day)]
    pub to: Option<NaiveDate>,

    /// Output: text (the log's lines), csv or json (one object per line)
    #[arg(long, value_enum, default_value = "text")]
    pub format: QueryFormat,

    /// Report each unreadable line or row on stderr
    #[arg(short = 'v', long)]
    pub verbose: bool,

    /// Print the SQL statement and SQLite's plan for it (which indexes it uses) instead of
    /// running it
    #[arg(long)]
    pub explain: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum QueryFormat {
    Text,
    Csv,
    Json,
}

pub fn parse_anomaly(s: &str) -> Result<String, String> {
    if shared::Anomalies::KEYS.contains(&s) || s == "refused" || s == "unanswered" {
        Ok(s.to_string())
    } else {
        Err(format!(
            "{s:?} is not an anomaly ({}, refused, unanswered)",
            shared::Anomalies::KEYS.join(", ")
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
