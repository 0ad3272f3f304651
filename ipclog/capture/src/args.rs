//! The command-line options of the packet sources (ipclog flattens them into its own) and the
//! tracker settings they give.

use clap::{Args, ValueEnum};

use crate::tracker::Options;

// Options of the packet sources (`-r FILE`, `-i IFACE`); ipclog flattens these into its own.
// Anomaly options keep miruo's names and meanings (times in milliseconds, 0 = off).
// Not a doc comment: clap would make it the about text of ipclog, which flattens this.
#[derive(Debug, Clone, Args)]
pub struct CaptureArgs {
    /// Read packets from a pcap or pcapng capture file (`-` for standard input) instead of
    /// conntrack.
    #[arg(
        short = 'r',
        long = "read",
        value_name = "FILE",
        help_heading = "Packet capture"
    )]
    pub read_file: Option<String>,

    /// Capture live on an interface (`any` for all) instead of conntrack. Needs CAP_NET_RAW.
    #[arg(
        short = 'i',
        long = "interface",
        value_name = "IFACE",
        conflicts_with = "read_file",
        help_heading = "Packet capture"
    )]
    pub interface: Option<String>,

    /// TCP connections idle this long (seconds of packet time) are closed (Zeek's
    /// tcp_inactivity_timeout; 0 = never).
    #[arg(
        long,
        value_name = "SECS",
        default_value_t = 300,
        help_heading = "Packet capture"
    )]
    pub tcp_timeout: u64,

    /// UDP and other flows idle this long (seconds of packet time) are closed (Zeek's
    /// udp_inactivity_timeout; 0 = never).
    #[arg(
        long,
        value_name = "SECS",
        default_value_t = 60,
        help_heading = "Packet capture"
    )]
    pub udp_timeout: u64,

    /// ICMP flows idle this long (seconds of packet time, fractions allowed) are closed
    /// (Zeek's icmp_inactivity_timeout; 0 = never).
    #[arg(long, value_name = "SECS", default_value_t = 60.0,
          value_parser = secs, help_heading = "Packet capture")]
    pub icmp_timeout: f64,

    /// A connection whose originator is still at its SYN this long after it, the responder
    /// silent, is reported (S0) and forgotten; later packets start a new connection (Zeek's
    /// tcp_attempt_delay; seconds, 0 = never).
    #[arg(long, value_name = "SECS", default_value_t = 5.0,
          value_parser = secs, help_heading = "Packet capture")]
    pub tcp_attempt_delay: f64,

    /// After a complete close (both FINs, a RST, or a FIN with a silent peer) the connection
    /// is forgotten this long after the closing packet (Zeek's tcp_close_delay; seconds).
    #[arg(long, value_name = "SECS", default_value_t = 5.0,
          value_parser = secs, help_heading = "Packet capture")]
    pub tcp_close_delay: f64,

    /// A side whose first packet was its FIN, the peer still open: the connection is
    /// forgotten this long after that FIN unless the peer closes (Zeek's
    /// tcp_partial_close_delay; seconds).
    #[arg(long, value_name = "SECS", default_value_t = 3.0,
          value_parser = secs, help_heading = "Packet capture")]
    pub tcp_partial_close_delay: f64,

    /// A RST from a side that had sent its FIN, the peer still open: the connection is
    /// forgotten this long after the RST (Zeek's tcp_reset_delay; seconds).
    #[arg(long, value_name = "SECS", default_value_t = 5.0,
          value_parser = secs, help_heading = "Packet capture")]
    pub tcp_reset_delay: f64,

    /// Packets with a bad IP/TCP/UDP checksum: `verify` (Zeek's default: a bad IPv4 header
    /// drops the packet, a bad TCP/UDP checksum only adds C/c to the history and the packet is
    /// not counted) or `ignore` (not checked, counted like any packet). Default: verify with
    /// -r, ignore with -i (a host's own packets carry checksums its NIC fills in later).
    #[arg(long, value_name = "verify|ignore", help_heading = "Packet capture")]
    pub checksums: Option<Checksums>,

    /// Ignore checksums (Zeek's -C): `--checksums ignore`.
    #[arg(
        short = 'C',
        conflicts_with = "checksums",
        help_heading = "Packet capture"
    )]
    pub ignore_checksums: bool,

    /// Count data retransmissions that came at least MS after the original (0 = off).
    #[arg(
        long,
        value_name = "MS",
        default_value_t = 1000,
        help_heading = "Packet capture"
    )]
    pub retransmit: u64,

    /// Count SYN and SYN-ACK retransmissions (1) or not (0).
    #[arg(long, value_name = "0|1", default_value_t = 1,
          value_parser = clap::value_parser!(u8).range(0..=1), help_heading = "Packet capture")]
    pub syn: u8,

    /// Count RSTs: 0 = no, 1 = yes except after a FIN, 2 = all.
    #[arg(long, value_name = "0|1|2", default_value_t = 1,
          value_parser = clap::value_parser!(u8).range(0..=2), help_heading = "Packet capture")]
    pub rst: u8,

    /// Flag connections lasting at least MS (0 = off).
    #[arg(
        long,
        value_name = "MS",
        default_value_t = 0,
        help_heading = "Packet capture"
    )]
    pub long_connect: u64,

    /// Count TCP segments arriving at least MS after the previous one of their connection
    /// (0 = off).
    #[arg(
        long,
        value_name = "MS",
        default_value_t = 0,
        help_heading = "Packet capture"
    )]
    pub long_delay: u64,

    /// Count IP fragments per connection (1) or not (0). Fragments are reassembled either way.
    #[arg(long, value_name = "0|1", default_value_t = 1,
          value_parser = clap::value_parser!(u8).range(0..=1), help_heading = "Packet capture")]
    pub fragment: u8,

    /// Most connections tracked at once; packets of further new ones are dropped and counted.
    /// Default: sized from memory as the kernel sizes nf_conntrack_max, RAM / 16384 (at
    /// least 65536; 262144 per 4 GiB).
    #[arg(long, value_name = "N", default_value_t = default_session_limit(),
          value_parser = clap::value_parser!(u64).range(1..), help_heading = "Packet capture")]
    pub session_limit: u64,

    /// Kernel capture buffer of `-i` in KiB, as tcpdump's -B (pcap_set_buffer_size; default
    /// libpcap's 2 MiB; ignored with -r, as tcpdump does). A larger buffer rides out bursts
    /// without drops.
    #[arg(short = 'B', long, value_name = "KIB",
          value_parser = clap::value_parser!(u32).range(1..=4_194_304),
          help_heading = "Packet capture")]
    pub buffer_size: Option<u32>,

    /// Most data segments remembered for retransmission timing; beyond it segments are not
    /// remembered (counted).
    #[arg(
        long,
        value_name = "N",
        default_value_t = 65536,
        help_heading = "Packet capture"
    )]
    pub segment_limit: u64,

    /// Session view (miruo): print, on standard output, each TCP session that had an anomaly
    /// (retransmission, SYN retransmission, RST, long connect, long delay, fragment) packet by
    /// packet when it ends: handshake, close and the anomalous packets. The line log then
    /// needs -f FILE (or --json/--db/--syslog): standard output is the view's.
    #[arg(long, help_heading = "Session view")]
    pub sessions: bool,

    /// With --sessions: show every TCP session, not only those with an anomaly (miruo --all).
    #[arg(long, requires = "sessions", help_heading = "Session view")]
    pub all: bool,

    /// With --sessions: print every TCP packet as it arrives (miruo --live).
    #[arg(long, requires = "sessions", help_heading = "Session view")]
    pub live: bool,

    /// With --sessions: also show up to N packets of a session that are neither handshake,
    /// close nor anomalous (miruo -v).
    #[arg(
        long,
        value_name = "N",
        default_value_t = 0,
        requires = "sessions",
        help_heading = "Session view"
    )]
    pub view_data: u32,

    /// With --sessions: color (auto: when standard output is a terminal).
    #[arg(
        long,
        value_name = "auto|always|never",
        default_value = "auto",
        help_heading = "Session view"
    )]
    pub color: ColorMode,

    /// With --sessions: deep packet inspection (miruo -m): `http` adds each HTTP/1.x request
    /// line (with Host) and response status (with Content-Length) to the view.
    #[arg(
        long,
        value_name = "http",
        requires = "sessions",
        help_heading = "Session view"
    )]
    pub dpi: Option<Dpi>,

    /// With --sessions: the compact form, lines of at most 80 columns (miruo -q).
    #[arg(
        short = 'q',
        long,
        requires = "sessions",
        help_heading = "Session view"
    )]
    pub quiet: bool,

    /// Write the captured packets to FILE as pcapng (with the interface's name and
    /// description) while tracking them. Created 0640; never through a symbolic link.
    #[arg(
        short = 'w',
        long = "write-file",
        value_name = "FILE",
        help_heading = "Capture files"
    )]
    pub write_file: Option<String>,

    /// With -w: which packets: `all`, or `anomalous` (only the sessions that had an anomaly;
    /// their packets are held, within --segment-limit, until the anomaly shows).
    #[arg(
        long = "write",
        value_name = "all|anomalous",
        default_value = "all",
        requires = "write_file",
        help_heading = "Capture files"
    )]
    pub write_mode: WriteMode,

    /// With -w: the largest a file may grow (bytes; suffixes k, M, G): without --ring, writing
    /// stops there (netsh maxsize); with it, the next file of the ring is started.
    #[arg(long, value_name = "SIZE", value_parser = size, requires = "write_file",
          help_heading = "Capture files")]
    pub max_size: Option<u64>,

    /// With -w and --max-size: a ring of N files FILE.0 .. FILE.N-1, the oldest overwritten
    /// (tcpdump -C -W, netsh filemode=circular); never more than N x SIZE on disk.
    #[arg(long, value_name = "N", requires = "max_size",
          value_parser = clap::value_parser!(u32).range(1..=100_000),
          help_heading = "Capture files")]
    pub ring: Option<u32>,

    /// BPF filter expression (tcpdump syntax), e.g. `host 10.0.0.1 and port 80`.
    #[arg(value_name = "EXPRESSION", trailing_var_arg = true)]
    pub filter: Vec<String>,
}

impl Default for CaptureArgs {
    fn default() -> Self {
        CaptureArgs {
            read_file: None,
            interface: None,
            tcp_timeout: 300,
            udp_timeout: 60,
            icmp_timeout: 60.0,
            tcp_attempt_delay: 5.0,
            tcp_close_delay: 5.0,
            tcp_partial_close_delay: 3.0,
            tcp_reset_delay: 5.0,
            checksums: None,
            ignore_checksums: false,
            retransmit: 1000,
            syn: 1,
            rst: 1,
            long_connect: 0,
            long_delay: 0,
            fragment: 1,
            session_limit: default_session_limit(),
            buffer_size: None,
            segment_limit: 65536,
            filter: Vec::new(),
            sessions: false,
            all: false,
            live: false,
            view_data: 0,
            color: ColorMode::Auto,
            quiet: false,
            dpi: None,
            write_file: None,
            write_mode: WriteMode::All,
            max_size: None,
            ring: None,
        }
    }
}

/// The default `--session-limit`: RAM / 16384, as the kernel's nf_conntrack_max on a 64-bit
/// machine, so that a router tracks as many flows by packets as its conntrack table holds;
/// never below the 65536 of older versions.
pub fn default_session_limit() -> u64 {
    let ram = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            let line = m.lines().find(|l| l.starts_with("MemTotal:"))?;
            line.split_whitespace().nth(1)?.parse::<u64>().ok()
        })
        .unwrap_or(0)
        .saturating_mul(1024);
    (ram / 16384).max(65536)
}

/// What to do with packets whose checksums are wrong (`--checksums`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Checksums {
    Verify,
    Ignore,
}

/// When the session view uses color (`--color`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ColorMode {
    Auto,
    Always,
    Never,
}

/// Deep packet inspection for the session view (`--dpi`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Dpi {
    Http,
}

/// Which packets `-w` writes (`--write`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum WriteMode {
    All,
    Anomalous,
}

/// A size on the command line: bytes, or with a k/M/G suffix (powers of 1000, as tcpdump -C).
fn size(v: &str) -> Result<u64, String> {
    let (num, mult) = match v.as_bytes().last() {
        Some(b'k' | b'K') => (&v[..v.len() - 1], 1_000),
        Some(b'M') => (&v[..v.len() - 1], 1_000_000),
        Some(b'G') => (&v[..v.len() - 1], 1_000_000_000),
        _ => (v, 1),
    };
    let n: u64 = num
        .parse()
        .map_err(|_| format!("`{v}` is not a size (bytes, or a number with k, M or G)"))?;
    let n = n
        .checked_mul(mult)
        .ok_or_else(|| format!("`{v}` is too large"))?;
    // The smallest file holds its headers and one full-sized packet.
    if n < 1024 {
        return Err(format!(
            "`{v}`: a capture file must be allowed at least 1024 bytes"
        ));
    }
    Ok(n)
}

/// Seconds on the command line: a number, fractions allowed, not negative, at most ten
/// years (so that microseconds of packet time stay far from overflow).
fn secs(v: &str) -> Result<f64, String> {
    let s: f64 = v
        .parse()
        .map_err(|_| format!("`{v}` is not a number of seconds"))?;
    if !s.is_finite() || !(0.0..=315_360_000.0).contains(&s) {
        return Err(format!("`{v}`: seconds must be between 0 and 315360000"));
    }
    Ok(s)
}

impl CaptureArgs {
    /// Whether checksums are verified: as asked, else for files (Zeek's default) but not
    /// live (checksum offloading would make a host's own packets look bad).
    pub fn verify_checksums(&self) -> bool {
        if self.ignore_checksums {
            return false;
        }
        match self.checksums {
            Some(c) => c == Checksums::Verify,
            None => self.interface.is_none(),
        }
    }

    /// Whether packets, not conntrack, are the source.
    pub fn is_capture(&self) -> bool {
        self.read_file.is_some() || self.interface.is_some()
    }

    /// Options for a file read, with defaults for everything else (for tests and tools).
    pub fn file(path: impl Into<String>) -> CaptureArgs {
        CaptureArgs {
            read_file: Some(path.into()),
            ..CaptureArgs::default()
        }
    }
}

impl Options {
    /// The tracker settings `args` ask for.
    pub fn from_args(args: &CaptureArgs) -> Options {
        let ms = |v: u64| (v.min(i64::MAX as u64 / 1000) * 1000) as i64;
        let us = |v: f64| (v * 1e6).round() as i64;
        Options {
            tcp_timeout_us: ms(args.tcp_timeout.saturating_mul(1000)),
            udp_timeout_us: ms(args.udp_timeout.saturating_mul(1000)),
            icmp_timeout_us: us(args.icmp_timeout),
            attempt_delay_us: us(args.tcp_attempt_delay),
            close_delay_us: us(args.tcp_close_delay),
            partial_close_delay_us: us(args.tcp_partial_close_delay),
            reset_delay_us: us(args.tcp_reset_delay),
            verify_checksums: args.verify_checksums(),
            retransmit_us: ms(args.retransmit),
            syn: args.syn != 0,
            rst: args.rst,
            long_connect_us: ms(args.long_connect),
            long_delay_us: ms(args.long_delay),
            fragment: args.fragment != 0,
            session_limit: args.session_limit.min(usize::MAX as u64) as usize,
            segment_limit: args.segment_limit.min(usize::MAX as u64) as usize,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        capture: CaptureArgs,
    }

    #[test]
    fn buffer_size_is_for_live_captures_in_kib() {
        let c = Cli::try_parse_from(["x", "-i", "lo", "-B", "4096"]).unwrap();
        assert_eq!(c.capture.buffer_size, Some(4096));
        let c = Cli::try_parse_from(["x", "-i", "lo", "--buffer-size", "1"]).unwrap();
        assert_eq!(c.capture.buffer_size, Some(1));
        assert!(Cli::try_parse_from(["x", "-i", "lo", "-B", "0"]).is_err());
    }

    #[test]
    fn the_default_session_limit_follows_memory_as_nf_conntrack_max() {
        let kib: u64 = std::fs::read_to_string("/proc/meminfo")
            .unwrap()
            .lines()
            .find_map(|l| l.strip_prefix("MemTotal:"))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap();
        let want = (kib * 1024 / 16384).max(65536);
        assert_eq!(default_session_limit(), want);
        let c = Cli::try_parse_from(["x", "-i", "lo"]).unwrap();
        assert_eq!(c.capture.session_limit, want);
        assert_eq!(CaptureArgs::default().session_limit, want);
    }
}
