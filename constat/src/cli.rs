//! constat's command line, as a library so that the man page and the shell completions
//! (`xtask`) are generated from the very definition the binary parses.

use std::path::PathBuf;

use chrono::NaiveDate;
use clap::Parser;

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
unreadable log, not a log, missing --lookup file).

Manual: man constat (the report), man 5 constat.lookup (the lookup file), man ipclog.";

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
    #[arg(short = 'a', long = "all", conflicts_with = "date")]
    pub all: bool,

    /// The day to report, YYYY-MM-DD [default: today, local time]
    #[arg(short = 'd', long = "date", value_name = "YYYY-MM-DD", value_parser = parse_day)]
    pub date: Option<NaiveDate>,

    /// The log to scan: ipclog's line log, its SQLite history, or - for standard input
    #[arg(
        short = 'f',
        long = "file",
        value_name = "LOGFILE",
        default_value = "/var/log/ipclog.log"
    )]
    pub file: PathBuf,

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
}

/// How the report's rows are grouped (`--by`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum By {
    Conn,
    Proc,
}

pub fn parse_day(s: &str) -> Result<NaiveDate, String> {
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
