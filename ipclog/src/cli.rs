//! ipclog's command line.

use std::path::PathBuf;

use clap::Parser;

use ipclog_capture::CaptureArgs;

/// Names `--syslog-facility` takes (syslog.conf's; `security` is `auth`).
pub const SYSLOG_FACILITIES: [&str; 21] = [
    "auth", "authpriv", "cron", "daemon", "ftp", "kern", "local0", "local1", "local2", "local3",
    "local4", "local5", "local6", "local7", "lpr", "mail", "news", "security", "syslog", "user",
    "uucp",
];

/// Log every network connection: one O line when it opens, S lines when its state changes, a
/// C line with its duration (and byte counts) when it ends. The source is Netfilter's
/// connection tracking (default) or packets (`-r FILE`, `-i IFACE`).
///
/// Invoked as `ipc` (a symlink), or with `-1`: print the open connections and exit.
#[derive(Debug, Parser)]
#[command(
    name = "ipclog",
    about = "log every network connection's open, state changes and close",
    version = concat!(env!("CARGO_PKG_VERSION"), " (git ", env!("GIT_REV"), ")"),
    after_help = "\
Line log (default on standard output when no -f/--db/--json/--syslog is given):
  P <time> message              logger started/stopped, lost events
  H <time> prot src dst sport dport fl time
  I <time> UP <ifname> <addr>   local addresses (at start and when they change)
  O/S/C <time> prot src dst sport dport fl time [key=value ...]
  src/dst print a local address as its interface name. fl: e established, s handshake
  (SYN_SENT/SYN_RECV), w FIN_WAIT/CLOSE_WAIT/LAST_ACK, t TIME_WAIT, c CLOSE, U unreplied
  (UDP and other protocols), - replied. time: seconds since the connection opened.
  F <time.frac> <in> <out> <prefix> <b|p|L> src[,sport] -> dst[,dport] PR proto len hdr total
    [-FLAGS] [icmp T/C] group=N [ct=STATE related=...]   a packet logged with --nflog

Files and privileges: outputs are never written through a symbolic link (see
--follow-symlinks) and must be regular files, FIFOs or character devices (--db, --pidfile:
regular files). Once everything is open ipclog drops every capability but CAP_NET_ADMIN
(conntrack's table dumps; none with -r/-i) and, with --user, runs as that user.

Exit status: 0 ok (also when the reader of an output pipe went away), 1 failure while
running (anything not written: each output's count is said on stderr at the end), 2 bad
usage, missing permission (CAP_NET_ADMIN) or a file/database that cannot be used at start.
--status: 0 status printed, 3 no ipclog runs with that pidfile.

Manual: man ipclog (man ipc, man constat)."
)]
pub struct Cli {
    /// Write the line log to FILE (appending; SIGHUP reopens it, for logrotate).
    #[arg(short = 'f', long = "log", value_name = "FILE")]
    pub log: Option<PathBuf>,

    /// Keep every connection as one SQLite row (created if missing, schema checked at start),
    /// or, given a `postgresql://` URL, as one row of a PostgreSQL history many loggers share.
    #[arg(long, value_name = "FILE|URL")]
    pub db: Option<PathBuf>,

    /// Write one JSON object per event (Zeek conn.log field names) to FILE, `-` for standard
    /// output. With -r/-i: one object per closed connection.
    #[arg(long, value_name = "FILE|-")]
    pub json: Option<String>,

    /// Send log lines to syslog, as ipmon -s: ident ipclog, the event's time HH:MM:SS.ffffff
    /// kept in the message; priority info (events), notice (P lines), warning (lost or
    /// dropped events, anomalies).
    #[arg(long)]
    pub syslog: bool,

    /// Syslog facility (ipmon's -L): daemon, local0 ... local7, user, auth (security),
    /// authpriv, kern, syslog, cron, mail, news, lpr, uucp, ftp.
    #[arg(long = "syslog-facility", value_name = "NAME", default_value = "daemon",
          requires = "syslog", hide_possible_values = true,
          value_parser = clap::builder::PossibleValuesParser::new(SYSLOG_FACILITIES))]
    pub syslog_facility: String,

    /// Syslog message format: rfc3164 (classic, what /dev/log expects) or rfc5424 (ISO time
    /// with microseconds and the connection as structured data `[conn@32473 ...]`).
    #[arg(long = "syslog-format", value_name = "FORMAT", default_value = "rfc3164",
          requires = "syslog", value_parser = ["rfc3164", "rfc5424"])]
    pub syslog_format: String,

    /// The syslog daemon's Unix datagram socket.
    #[arg(
        long = "syslog-socket",
        value_name = "PATH",
        default_value = "/dev/log",
        requires = "syslog"
    )]
    pub syslog_socket: PathBuf,

    /// Also show the NAT-translated source of outgoing and the original destination of
    /// incoming connections (`nat_src=` / `orig_dst=` tokens).
    #[arg(short = 'N', long = "nat")]
    pub nat: bool,

    /// Add host and service names (`src_name=`, `dst_name=`, `service=` tokens; the columns
    /// stay numeric for constat). Reverse lookups run in the background and are cached.
    #[arg(short = 'n', long = "resolve")]
    pub resolve: bool,

    /// With -n: no service names, port numbers only (ipmon's -p).
    #[arg(short = 'p', long = "numeric-ports")]
    pub numeric_ports: bool,

    /// Print the H line and one O line per open connection (time = seconds open so far), then
    /// exit. Same as invoking ipclog as `ipc`.
    #[arg(short = '1', long = "once")]
    pub once: bool,

    /// Print statistics to standard error every SECS seconds (events/s, open connections,
    /// queue depth, lost events, errors).
    #[arg(short = 's', long = "stats", value_name = "SECS")]
    pub stats: Option<u64>,

    /// Detach from the terminal and run in the background (default: foreground, for systemd).
    /// --pidfile tells where it went (without it: `pgrep -x ipclog`).
    #[arg(long)]
    pub daemon: bool,

    /// Write the process id to FILE (removed at exit). The file stays locked while ipclog runs:
    /// a second ipclog given the same FILE refuses to start; one left by an ipclog that died is
    /// taken over.
    #[arg(long, value_name = "FILE")]
    pub pidfile: Option<PathBuf>,

    /// Write through a symbolic link given as -f, --json, --db or --pidfile. Refused by default:
    /// in a directory another user can write, a planted link would have root write its target.
    #[arg(long = "follow-symlinks")]
    pub follow_symlinks: bool,

    /// Once the source and every output are open, switch to user NAME (its uid, gid and
    /// groups). Files ipclog creates are given to NAME; files it reopens on SIGHUP must be
    /// creatable or writable by NAME. Conntrack mode keeps CAP_NET_ADMIN for its table dumps.
    #[arg(long = "user", value_name = "NAME")]
    pub user: Option<String>,

    /// Add the local process that owns each connection's socket (`pid=`, `comm=`,
    /// `proc_uid=`): conntrack mode and -i, for connections with an end on this host, looked
    /// up once per connection in the kernel's socket table and /proc (see README).
    #[arg(long = "proc")]
    pub proc: bool,

    /// Print the counters of the ipclog running with --pidfile FILE (default /run/ipclog.pid)
    /// and exit; 3 when none runs.
    #[arg(long = "status")]
    pub status: bool,

    /// Only log these protocols (names or numbers, comma separated or repeated).
    #[arg(
        long = "proto",
        value_name = "PROTO",
        value_delimiter = ',',
        help_heading = "Filters"
    )]
    pub proto: Vec<String>,

    /// Only log connections with this source or destination port (repeatable).
    #[arg(
        long = "port",
        value_name = "PORT",
        value_delimiter = ',',
        help_heading = "Filters"
    )]
    pub port: Vec<u16>,

    /// Only log connections with an address (either side, before or after NAT) in this
    /// address or CIDR network (repeatable).
    #[arg(
        long = "host",
        value_name = "ADDR[/LEN]",
        value_delimiter = ',',
        help_heading = "Filters"
    )]
    pub host: Vec<String>,

    /// Only log connections from or to a local address of this interface (repeatable).
    #[arg(
        long = "iface",
        value_name = "IFNAME",
        value_delimiter = ',',
        help_heading = "Filters"
    )]
    pub iface: Vec<String>,

    /// Dump the conntrack table every SECS seconds (fractions allowed) so that expired
    /// connections are closed in time (the kernel otherwise reports them up to a minute
    /// late); under a flood, shorter intervals make smaller bursts of closes. 0 = never.
    #[arg(
        long = "evict-every",
        value_name = "SECS",
        default_value_t = 10.0,
        help_heading = "Conntrack"
    )]
    pub evict_every: f64,

    /// Receive buffer of the event socket in bytes (set with SO_RCVBUFFORCE; ~1.3 KB per
    /// queued event).
    #[arg(
        long = "rcvbuf",
        value_name = "BYTES",
        default_value_t = 128 << 20,
        help_heading = "Conntrack"
    )]
    pub rcvbuf: usize,

    /// Capacity of the queue between the event reader and the writers (events); what does
    /// not fit is dropped, counted and followed by a resync.
    #[arg(
        long = "queue",
        value_name = "EVENTS",
        default_value_t = 262_144,
        help_heading = "Conntrack"
    )]
    pub queue: usize,

    /// Capacity of the queue in front of the SQLite writer (events). It absorbs bursts the
    /// database cannot write as fast as they come. With a live source what does not fit is
    /// dropped, counted in P lines and in the runs table; reading a file (-r), ipclog waits.
    #[arg(long = "db-queue", value_name = "EVENTS", default_value_t = 1 << 20)]
    pub db_queue: usize,

    /// Export every closed connection as an IPFIX biflow record to a collector (nfdump's
    /// nfcapd, pmacct, ...): UDP unless /tcp is given. See "Many hosts" in the README.
    #[arg(long, value_name = "HOST:PORT[/udp|/tcp]")]
    pub ipfix: Option<String>,

    /// The IPFIX observation domain id of this logger.
    #[arg(long = "ipfix-domain", value_name = "ID", default_value_t = 0)]
    pub ipfix_domain: u32,

    /// Also export a connection still open SECS after its last export, at its next event
    /// (flowEndReason active timeout), with the counts since.
    #[arg(long = "ipfix-active-timeout", value_name = "SECS")]
    pub ipfix_active_timeout: Option<u64>,

    /// This logger's name in a PostgreSQL history's `host` column (default: the hostname).
    #[arg(long = "host-name", value_name = "NAME")]
    pub host_name: Option<String>,

    /// Keep what a collector or PostgreSQL could not take in this SQLite file (created 0640)
    /// until it is back, and across restarts; without it, in memory.
    #[arg(long, value_name = "FILE")]
    pub spool: Option<PathBuf>,

    /// At most this many events wait in the spool; more are dropped and counted.
    #[arg(long = "spool-max", value_name = "EVENTS", default_value_t = 1_000_000)]
    pub spool_max: u64,

    /// At the end, wait at most SECS for a collector or PostgreSQL that is down.
    #[arg(long = "flush-timeout", value_name = "SECS", default_value_t = 10.0)]
    pub flush_timeout: f64,

    /// Log the packets nftables rules send to these NFLOG groups (`log group 1 prefix
    /// "drop-ssh"`), one F line each (ipmon's packet-filter log), instead of connections
    /// (with --conntrack: beside them). --rcvbuf sets the socket's receive buffer.
    #[arg(
        long = "nflog",
        value_name = "GROUP[,GROUP]",
        value_delimiter = ',',
        help_heading = "Packet-filter log"
    )]
    pub nflog: Vec<String>,

    /// With --nflog: log connections from conntrack as well, in the same outputs (F lines
    /// among the O/S/C lines).
    #[arg(
        long = "conntrack",
        requires = "nflog",
        help_heading = "Packet-filter log"
    )]
    pub with_conntrack: bool,

    #[command(flatten)]
    pub capture: CaptureArgs,
}
