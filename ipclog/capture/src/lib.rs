//! Connection events from packets: reads pcap/pcapng files (or standard input) or a live
//! interface through libpcap, takes each frame apart with zero-copy header views (Ethernet with
//! VLAN/QinQ tags, Linux cooked v1/v2, raw IPv4/IPv6, BSD loopback), reassembles IP fragments
//! for accounting, tracks every flow (TCP with Zeek's endpoint state machine, UDP and other
//! protocols by inactivity) and emits the same [`shared::ConnEvent`]s the conntrack source does,
//! with Zeek's conn_state/history/uid, per-direction counters and miruo's anomalies. Nothing is
//! dropped silently: every packet that cannot be used is counted by reason in the
//! [`CaptureSummary`], so packets read = packets in connections + fragments merged + dropped.
//!
//! Decisions, where Zeek's or miruo's definitions leave room:
//! - The originator is the sender of a flow's first packet, except that a SYN-ACK seen first
//!   makes its receiver the originator (history starts with `^`, as when Zeek flips roles).
//! - conn_state, history (letters `s h a d f r c t w i q ^`; `g` content gaps are not
//!   tracked), orig_bytes/resp_bytes (sequence space, Zeek's `Size()`) follow Zeek's
//!   TCPSessionAdapter. UDP: `D`/`d` per side, SF when both sides sent, S0 when only the
//!   originator did. Other protocols (ICMP included, keyed without type/code/id): OTH.
//! - Packets with a bad IP/TCP/UDP checksum are counted and tracked (like `zeek -C`) and add
//!   `C`/`c` to the history (at 1, 10, 100, ... such packets).
//! - A finished TCP connection (both FINs, or a RST) is reported closed after 5 s of packet
//!   time without packets (Zeek's close/reset delay); a SYN on a finished connection starts
//!   a new one (port reuse). At the end of the input every open connection is closed.
//! - Reassembled fragments count as one packet of the datagram's full IP length; `frag=` counts
//!   the fragments. Fragment buffers: 4096 datagrams, 30 s of packet time.
//! - Anomalies (miruo): `retrans` counts data retransmissions at least `--retransmit` ms after
//!   the remembered original segment (the one holding the first retransmitted byte);
//!   `syn_retrans` a SYN or SYN-ACK repeated with the same sequence number; `rst` RST segments
//!   (`--rst 1` skips those after any FIN of the connection); `long_delay` TCP segments at
//!   least `--long-delay` ms after the connection's previous packet; `long_conn` duration at
//!   least `--long-connect` ms (any protocol).

mod args;
mod defrag;
mod hash;
mod pipe;
mod tracker;
pub mod wire;

pub use args::CaptureArgs;
pub use tracker::Options;

use std::io::Read;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use pcap::{Activated, Capture};
use shared::sink::EventSink;

use defrag::{Defrag, Outcome};
use tracker::{Seen, Tracker};
use wire::{Drop, Link};

/// How a capture run ended, for ipclog's exit code and stop line.
#[derive(Debug, Default, Clone)]
pub struct CaptureSummary {
    /// Packets (records) libpcap handed us.
    pub packets: u64,
    /// Connections reported (each has an O and a C event).
    pub flows: u64,
    /// Packets or flows dropped or unusable, by reason, each with its count (only non-zero
    /// reasons). Includes `damaged_record` (file records libpcap could not read) and, live,
    /// `kernel_drop` (packets the kernel dropped before libpcap saw them).
    pub dropped: Vec<(String, u64)>,
    /// Packets (or reassembled datagrams) counted into connections.
    pub packets_in_flows: u64,
    /// Fragments folded into a datagram beyond its first.
    pub fragments_merged: u64,
    /// Packets with a bad IP/TCP/UDP checksum (still counted in their connection).
    pub bad_checksum: u64,
    /// Data segments not remembered for retransmission timing because of `--segment-limit`.
    pub segments_not_tracked: u64,
    /// The most connections open at once and the most segments remembered at once.
    pub flows_open_max: u64,
    pub segments_max: u64,
    /// The capture's link type, e.g. `EN10MB`.
    pub link_type: String,
    /// Connections closed by an inactivity timeout (not by FIN/RST or the end of input).
    pub timed_out: u64,
    /// How many connections showed each anomaly (log key, count), only non-zero ones: miruo's
    /// session statistics.
    pub anomalies: Vec<(String, u64)>,
    /// The latest packet time seen (microseconds since the epoch), the capture's own clock
    /// for the lines that end a run; `None` when no packet reached the tracker.
    pub last_packet_us: Option<i64>,
}

impl CaptureSummary {
    /// Packets dropped for any reason (not counting `kernel_drop`, never read by us).
    pub fn dropped_packets(&self) -> u64 {
        self.dropped
            .iter()
            .filter(|(k, _)| k != "kernel_drop" && k != "damaged_record")
            .map(|(_, n)| n)
            .sum()
    }

    /// One line for the log's `P` line before the stop line.
    pub fn describe(&self) -> String {
        let mut s = format!(
            "capture: {} packets, {} connections, {} packets in connections, {} fragments merged",
            self.packets, self.flows, self.packets_in_flows, self.fragments_merged
        );
        if self.dropped.is_empty() {
            s.push_str(", dropped none");
        } else {
            s.push_str(", dropped");
            for (k, n) in &self.dropped {
                s.push_str(&format!(" {k}={n}"));
            }
        }
        if self.timed_out > 0 {
            s.push_str(&format!(", {} timed out", self.timed_out));
        }
        if !self.anomalies.is_empty() {
            s.push_str(", connections with");
            for (k, n) in &self.anomalies {
                s.push_str(&format!(" {k}={n}"));
            }
        }
        if self.bad_checksum > 0 {
            s.push_str(&format!(", bad checksums (kept) {}", self.bad_checksum));
        }
        if self.segments_not_tracked > 0 {
            s.push_str(&format!(
                ", segments not tracked (segment limit) {}",
                self.segments_not_tracked
            ));
        }
        s
    }
}

/// A capture that could not start or could not go on.
#[derive(Debug)]
pub struct CaptureError {
    pub message: String,
    /// The exit code ipclog should use.
    pub exit_code: i32,
}

impl std::fmt::Display for CaptureError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for CaptureError {}

fn usage_error(message: String) -> CaptureError {
    CaptureError {
        message,
        exit_code: 2,
    }
}

impl Options {
    /// The tracker settings `args` ask for.
    pub fn from_args(args: &CaptureArgs) -> Options {
        let ms = |v: u64| (v.min(i64::MAX as u64 / 1000) * 1000) as i64;
        Options {
            tcp_timeout_us: ms(args.tcp_timeout.saturating_mul(1000)),
            udp_timeout_us: ms(args.udp_timeout.saturating_mul(1000)),
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

const PCAP_MAGICS: [[u8; 4]; 5] = [
    [0xd4, 0xc3, 0xb2, 0xa1],
    [0xa1, 0xb2, 0xc3, 0xd4],
    [0x4d, 0x3c, 0xb2, 0xa1],
    [0xa1, 0xb2, 0x3c, 0x4d],
    [0x0a, 0x0d, 0x0d, 0x0a],
];

/// Opens the file (pcap or pcapng by its magic number; `-` = standard input) or interface.
/// Returns the capture, its name for messages, and for a live capture the descriptor to wait on
/// (live captures are non-blocking so that a stop request and idle time are noticed).
type Opened = (Capture<dyn Activated>, String, Option<std::os::fd::RawFd>);

fn open(args: &CaptureArgs) -> Result<Opened, CaptureError> {
    if let Some(path) = &args.read_file {
        if path == "-" {
            // SAFETY: fd 0 is ours to hand to libpcap, which reads it to the end and closes it.
            let cap = unsafe { Capture::from_raw_fd(0) }.map_err(|e| {
                usage_error(format!(
                    "standard input: not a readable pcap or pcapng capture ({e})"
                ))
            })?;
            return Ok((cap.into(), "standard input".into(), None));
        }
        // A named pipe (or a character device such as /dev/stdin on a pipe) can be read only
        // once: libpcap gets it directly, without our look at the magic number first.
        if std::fs::metadata(path).is_ok_and(|m| !m.is_file() && !m.is_dir()) {
            let cap = Capture::from_file(path)
                .map_err(|e| usage_error(format!("{path}: cannot read capture: {e}")))?;
            return Ok((cap.into(), path.clone(), None));
        }
        let mut f = std::fs::File::open(path)
            .map_err(|e| usage_error(format!("{path}: cannot open: {e}")))?;
        let mut magic = [0u8; 4];
        let mut got = 0;
        while got < 4 {
            match f.read(&mut magic[got..]) {
                Ok(0) => break,
                Ok(n) => got += n,
                Err(e) => return Err(usage_error(format!("{path}: cannot read: {e}"))),
            }
        }
        if got < 4 {
            return Err(usage_error(format!(
                "{path}: not a capture file ({got} bytes, too short for a pcap or pcapng header)"
            )));
        }
        if !PCAP_MAGICS.contains(&magic) {
            return Err(usage_error(format!(
                "{path}: not a pcap or pcapng capture file (starts with {:02x} {:02x} {:02x} {:02x})",
                magic[0], magic[1], magic[2], magic[3]
            )));
        }
        let cap = Capture::from_file(path)
            .map_err(|e| usage_error(format!("{path}: cannot read capture: {e}")))?;
        return Ok((cap.into(), path.clone(), None));
    }
    if let Some(iface) = &args.interface {
        let cap = Capture::from_device(iface.as_str())
            .and_then(|c| {
                c.snaplen(65535)
                    .promisc(true)
                    .timeout(100)
                    .immediate_mode(true)
                    .open()
                    .and_then(|c| c.setnonblock())
            })
            .map_err(|e| {
                let msg = e.to_string();
                let lower = msg.to_ascii_lowercase();
                if lower.contains("permission") || lower.contains("not permitted") {
                    usage_error(format!(
                        "capture on {iface}: permission denied (needs root or CAP_NET_RAW): {msg}"
                    ))
                } else if lower.contains("no such device") || lower.contains("doesn't exist") {
                    usage_error(format!("capture on {iface}: no such interface ({msg})"))
                } else {
                    usage_error(format!("capture on {iface}: {msg}"))
                }
            })?;
        use std::os::fd::AsRawFd;
        let fd = cap.as_raw_fd();
        return Ok((cap.into(), iface.clone(), Some(fd)));
    }
    Err(usage_error(
        "no capture source: give -r FILE or -i IFACE".into(),
    ))
}

/// Per-run state besides the tracker: the link type, the fragment buffer.
struct Reader {
    link: Link,
    defrag: Defrag,
    tracker: Tracker,
    frag_counting: bool,
    /// Packets parsed but not yet accounted (see `submit`), with their flow lookup hints.
    queue: std::collections::VecDeque<(Seen, tracker::Hint)>,
    depth: usize,
}

/// What one captured frame is to the tracker.
enum Parsed<'a> {
    /// A whole packet, parsed and checksummed.
    Seen(Seen),
    /// An unusable packet, for the drop counters.
    Drop(Drop),
    /// An IP fragment, for the reassembly buffer.
    Frag(wire::IpPacket<'a>),
}

/// Takes one frame apart: link, IP and transport headers, checksums. Depends on nothing but
/// the frame, so a file's reader thread can do it while the tracker works (see `pipe`).
#[inline]
fn parse_frame(link: Link, ts_us: i64, wire_len: u32, data: &[u8]) -> Parsed<'_> {
    let (ipb, ip_wire, hint) = match wire::strip_link(link, data, wire_len) {
        Ok(v) => v,
        Err(d) => return Parsed::Drop(d),
    };
    let ip = match wire::parse_ip(ipb, ip_wire, hint) {
        Ok(v) => v,
        Err(d) => return Parsed::Drop(d),
    };
    if ip.frag.is_some() {
        return Parsed::Frag(ip);
    }
    let l4 = match wire::parse_l4(ip.proto, ip.l4, ip.l4_len) {
        Ok(v) => v,
        Err(d) => return Parsed::Drop(d),
    };
    let csum_bad = ip.ip_csum_bad || wire::l4_checksum_bad(&ip) == Some(true);
    Parsed::Seen(Seen {
        ts_us,
        src: ip.src,
        dst: ip.dst,
        proto: ip.proto,
        ip_len: ip.ip_len,
        l4,
        csum_bad,
        fragments: 0,
    })
}

impl Reader {
    /// Handles one frame: parse, reassemble if fragmented, account.
    #[inline]
    fn frame(&mut self, ts_us: i64, wire_len: u32, data: &[u8], sink: &mut dyn EventSink) {
        match parse_frame(self.link, ts_us, wire_len, data) {
            Parsed::Seen(seen) => self.submit(seen, sink),
            Parsed::Drop(d) => self.tracker.drop(d, 1),
            Parsed::Frag(ip) => self.fragment(ts_us, &ip, sink),
        }
    }

    /// Handles one IP fragment: holds it, or accounts the datagram it completes.
    fn fragment(&mut self, ts_us: i64, ip: &wire::IpPacket<'_>, sink: &mut dyn EventSink) {
        match self.defrag.add(ts_us, ip) {
            Outcome::Held => {}
            Outcome::Malformed => self.tracker.drop(Drop::FragMalformed, 1),
            Outcome::Full => self.tracker.drop(Drop::FragBufferFull, 1),
            Outcome::Done(a) => {
                let n = a.fragments as u64;
                match wire::parse_l4(a.proto, &a.head[..a.head_len], a.l4_len) {
                    Ok(l4) => {
                        self.tracker.stats.frags_merged += n - 1;
                        let seen = Seen {
                            ts_us,
                            src: a.src,
                            dst: a.dst,
                            proto: a.proto,
                            ip_len: a.ip_len,
                            l4,
                            csum_bad: false,
                            fragments: if self.frag_counting { a.fragments } else { 0 },
                        };
                        self.submit(seen, sink);
                    }
                    Err(d) => self.tracker.drop(d, n),
                }
            }
        }
    }

    /// Queues a parsed packet; when the queue is full, accounts the oldest. While a packet waits,
    /// its flow's index slot and then the flow itself are prefetched, so that the flow table's
    /// cache misses overlap with parsing the packets behind it (a file read is otherwise bound
    /// by those misses). Live captures use no queue, so events are never held back.
    #[inline]
    fn submit(&mut self, seen: Seen, sink: &mut dyn EventSink) {
        if self.depth == 0 {
            return self.account(&seen, sink);
        }
        let hint = self.tracker.hint(&seen);
        self.tracker.prefetch_slot(&hint);
        // The packet half-way through the queue has had its slot prefetched: now its flow.
        let n = self.queue.len();
        if n >= self.depth / 2 {
            let mid = self.queue[n - self.depth / 2].1;
            self.tracker.prefetch_flow(&mid);
        }
        self.queue.push_back((seen, hint));
        if self.queue.len() > self.depth {
            let (old, h) = self.queue.pop_front().expect("non-empty");
            self.account_hinted(&old, &h, sink);
        }
    }

    /// Accounts every queued packet (end of input, idle live capture).
    fn drain(&mut self, sink: &mut dyn EventSink) {
        while let Some((s, h)) = self.queue.pop_front() {
            self.account_hinted(&s, &h, sink);
        }
    }

    /// Runs timeouts when packet time says so, then accounts the packet to its flow.
    #[inline]
    fn account(&mut self, seen: &Seen, sink: &mut dyn EventSink) {
        self.advance(seen.ts_us, sink);
        self.tracker.packet(seen, sink);
    }

    /// [`Reader::account`] with the flow hash computed ahead.
    #[inline]
    fn account_hinted(&mut self, seen: &Seen, hint: &tracker::Hint, sink: &mut dyn EventSink) {
        self.advance(seen.ts_us, sink);
        self.tracker.packet_hinted(seen, hint, sink);
    }

    /// Runs timeouts (flows and fragments) when packet time says so.
    #[inline]
    fn advance(&mut self, ts_us: i64, sink: &mut dyn EventSink) {
        if self.tracker.advance(ts_us) {
            let lost = self.defrag.expire(self.tracker.now_us());
            self.tracker.drop(Drop::FragIncomplete, lost);
            self.tracker.sweep(sink);
        }
    }
}

fn print_stats(r: &Reader, packets: u64) {
    let s = &r.tracker.stats;
    let dropped: u64 = s.drops.iter().sum();
    eprintln!(
        "ipclog: capture stats: packets={packets} flows_open={} flows_open_max={} flows_total={} \
         segments={} segments_max={} segments_not_tracked={} fragments_held={} dropped={dropped} \
         session_limit_drops={} timed_out={} with_retrans={} with_syn_retrans={} with_rst={} \
         with_long_delay={} with_frag={} with_long_conn={}",
        r.tracker.open_flows(),
        s.flows_open_max,
        s.flows_total,
        r.tracker.segments(),
        s.segments_max,
        s.segments_dropped,
        r.defrag.held(),
        s.drops[Drop::SessionLimit as usize],
        s.timed_out,
        s.with_anomaly[0],
        s.with_anomaly[1],
        s.with_anomaly[2],
        s.with_anomaly[3],
        s.with_anomaly[4],
        s.with_anomaly[5],
    );
}

/// Packet and damaged-record counts of a run, and when to print statistics next.
struct Progress {
    packets: u64,
    damaged: u64,
    next_stats: Option<Instant>,
    every: Option<Duration>,
}

impl Progress {
    /// Counts a record libpcap could not read, and says so (the first 10 times).
    fn damaged(&mut self, name: &str, e: &dyn std::fmt::Display) {
        self.damaged += 1;
        if self.damaged <= 10 {
            eprintln!(
                "ipclog: {name}: after packet {}: damaged record: {e}",
                self.packets
            );
        }
    }

    /// Prints statistics when they are due (checked every 4096 packets).
    #[inline]
    fn tick(&mut self, r: &Reader) {
        if self.packets & 4095 == 0 {
            self.stats_if_due(r);
        }
    }

    fn stats_if_due(&mut self, r: &Reader) {
        if let (Some(t), Some(every)) = (self.next_stats, self.every) {
            if Instant::now() >= t {
                print_stats(r, self.packets);
                self.next_stats = Some(Instant::now() + every);
            }
        }
    }
}

/// Whether the capture `args` name is a regular file (a path, or standard input redirected
/// from one): reading it never waits for a writer.
fn source_is_regular(args: &CaptureArgs) -> bool {
    match args.read_file.as_deref() {
        Some("-") => {
            // SAFETY: fstat only writes the zero-initialised struct we hand it.
            unsafe {
                let mut st: libc::stat = std::mem::zeroed();
                libc::fstat(0, &mut st) == 0 && st.st_mode & libc::S_IFMT == libc::S_IFREG
            }
        }
        Some(path) => std::fs::metadata(path).is_ok_and(|m| m.is_file()),
        None => false,
    }
}

/// Reads and tracks on this thread: live captures (non-blocking, with idle handling) and
/// files that are not regular (pipes).
fn read_direct(
    cap: &mut Capture<dyn Activated>,
    live_fd: Option<std::os::fd::RawFd>,
    name: &str,
    r: &mut Reader,
    progress: &mut Progress,
    sink: &mut dyn EventSink,
    stop: &AtomicBool,
) -> Result<(), CaptureError> {
    let live = live_fd.is_some();
    let mut consecutive = 0u32;
    let mut last_flush = Instant::now();
    loop {
        if stop.load(Ordering::Relaxed) {
            break;
        }
        match cap.next_packet() {
            Ok(p) => {
                consecutive = 0;
                progress.packets += 1;
                let ts_us = ts_us(&p.header.ts);
                r.frame(ts_us, p.header.len, p.data, sink);
                // A busy live capture never idles: flush its output at least once a second.
                if live
                    && progress.packets & 255 == 0
                    && last_flush.elapsed() >= Duration::from_secs(1)
                {
                    sink.flush();
                    last_flush = Instant::now();
                }
                progress.tick(r);
            }
            Err(pcap::Error::NoMorePackets) => break,
            Err(pcap::Error::TimeoutExpired) => {
                // Live and nothing to read: wait up to 100 ms for packets; when none come,
                // let wall-clock time run the timeouts, flush, and report stats.
                if let Some(fd) = live_fd {
                    let mut pfd = libc::pollfd {
                        fd,
                        events: libc::POLLIN,
                        revents: 0,
                    };
                    // SAFETY: one valid pollfd for the capture's descriptor.
                    if unsafe { libc::poll(&mut pfd, 1, 100) } > 0 {
                        continue;
                    }
                }
                let now = chrono::Utc::now().timestamp_micros();
                if r.tracker.advance(now) {
                    let lost = r.defrag.expire(now);
                    r.tracker.drop(Drop::FragIncomplete, lost);
                    r.tracker.sweep(sink);
                }
                sink.flush();
                progress.stats_if_due(r);
            }
            Err(e) => {
                if live && stop.load(Ordering::Relaxed) {
                    break;
                }
                consecutive += 1;
                progress.damaged(name, &e);
                if live && consecutive > 100 {
                    return Err(CaptureError {
                        message: format!("capture on {name}: {e}"),
                        exit_code: 1,
                    });
                }
                if !live && consecutive >= MAX_CONSECUTIVE_DAMAGE {
                    give_up(name, progress.packets);
                    break;
                }
            }
        }
    }
    Ok(())
}

fn give_up(name: &str, packets: u64) {
    eprintln!("ipclog: {name}: giving up on the rest of the file after packet {packets}");
}

/// A libpcap timestamp in microseconds.
#[inline]
fn ts_us(ts: &libc::timeval) -> i64 {
    #[allow(clippy::unnecessary_cast)] // time_t/suseconds_t differ by platform
    let us = ts.tv_sec as i64 * 1_000_000 + ts.tv_usec as i64;
    us
}

/// Consecutive unreadable records after which the rest of a file is given up (a corrupt
/// record header leaves libpcap no way to find the next one).
const MAX_CONSECUTIVE_DAMAGE: u32 = 3;

/// How many parsed packets a file read keeps queued for prefetching (see `Reader::submit`).
const PIPELINE: usize = 8;

/// A capture source that is open, of a supported link type, with its filter compiled: what
/// can go wrong before the first packet has gone wrong already, so ipclog can refuse to start
/// without writing a log line.
pub struct OpenCapture {
    cap: Capture<dyn Activated>,
    name: String,
    live_fd: Option<std::os::fd::RawFd>,
    link: Link,
    link_name: String,
}

/// Opens the file or interface `args` names, checks its link type and compiles the filter.
pub fn open_capture(args: &CaptureArgs) -> Result<OpenCapture, CaptureError> {
    let (mut cap, name, live_fd) = open(args)?;
    let lt = cap.get_datalink();
    let lt_name = lt.get_name().unwrap_or_else(|_| format!("DLT_{}", lt.0));
    let Some(link) = Link::from_linktype(lt.0) else {
        return Err(usage_error(format!(
            "{name}: unsupported link type {} ({lt_name}); supported: Ethernet, Linux cooked \
             (SLL, SLL2), raw IP (12, 14, 101, 228, 229), loopback (0, 108)",
            lt.0
        )));
    };
    if !args.filter.is_empty() {
        let expr = args.filter.join(" ");
        cap.filter(&expr, true)
            .map_err(|e| usage_error(format!("bad filter expression '{expr}': {e}")))?;
    }
    Ok(OpenCapture {
        cap,
        name,
        live_fd,
        link,
        link_name: lt_name,
    })
}

/// Reads the capture `args` names (file or interface) to its end (or until `stop` is set),
/// sending every event to `sink`; with `stats_every`, prints statistics to stderr that often.
pub fn run(
    args: &CaptureArgs,
    sink: &mut dyn EventSink,
    stop: &AtomicBool,
    stats_every: Option<Duration>,
) -> Result<CaptureSummary, CaptureError> {
    run_opened(open_capture(args)?, args, sink, stop, stats_every)
}

/// [`run`] on a capture [`open_capture`] has opened (`args` for the tracker's options).
pub fn run_opened(
    opened: OpenCapture,
    args: &CaptureArgs,
    sink: &mut dyn EventSink,
    stop: &AtomicBool,
    stats_every: Option<Duration>,
) -> Result<CaptureSummary, CaptureError> {
    run_with(opened, args, sink, stop, stats_every, true)
}

/// [`run_opened`], reading a regular file ahead on a second thread only when `read_ahead`
/// (tests compare both ways).
fn run_with(
    opened: OpenCapture,
    args: &CaptureArgs,
    sink: &mut dyn EventSink,
    stop: &AtomicBool,
    stats_every: Option<Duration>,
    read_ahead: bool,
) -> Result<CaptureSummary, CaptureError> {
    let OpenCapture {
        mut cap,
        name,
        live_fd,
        link,
        link_name: lt_name,
    } = opened;
    let live = live_fd.is_some();
    let opts = Options::from_args(args);
    let mut r = Reader {
        link,
        defrag: Defrag::new(4096, 30_000_000),
        tracker: Tracker::new(opts.clone()),
        frag_counting: opts.fragment,
        queue: std::collections::VecDeque::with_capacity(PIPELINE + 1),
        depth: if live { 0 } else { PIPELINE },
    };
    let mut progress = Progress {
        packets: 0,
        damaged: 0,
        next_stats: stats_every.map(|d| Instant::now() + d),
        every: stats_every,
    };
    // A regular file is read ahead on a second thread (reading and parsing overlap with
    // tracking); a live capture or a pipe is read here, so that its events are never held
    // back waiting for a block to fill.
    let cap = if !live && read_ahead && source_is_regular(args) {
        pipe::read(cap, link, &name, &mut r, &mut progress, sink, stop)?;
        None
    } else {
        read_direct(&mut cap, live_fd, &name, &mut r, &mut progress, sink, stop)?;
        Some(cap)
    };
    let (packets, damaged) = (progress.packets, progress.damaged);
    let kernel_drop = match cap {
        Some(mut cap) if live => cap.stats().map(|s| s.dropped as u64).unwrap_or(0),
        _ => 0,
    };
    r.drain(sink);
    r.tracker.finish(sink);
    let lost = r.defrag.flush();
    r.tracker.drop(Drop::FragIncomplete, lost);
    sink.flush();
    if stats_every.is_some() {
        print_stats(&r, packets);
    }
    let s = &r.tracker.stats;
    let mut dropped: Vec<(String, u64)> = Drop::ALL
        .iter()
        .filter(|d| s.drops[**d as usize] > 0)
        .map(|d| (d.name().to_string(), s.drops[*d as usize]))
        .collect();
    if damaged > 0 {
        dropped.push(("damaged_record".into(), damaged));
    }
    if kernel_drop > 0 {
        dropped.push(("kernel_drop".into(), kernel_drop));
    }
    Ok(CaptureSummary {
        packets,
        flows: s.flows_total,
        dropped,
        packets_in_flows: s.in_flows,
        fragments_merged: s.frags_merged,
        bad_checksum: s.bad_checksum,
        segments_not_tracked: s.segments_dropped,
        flows_open_max: s.flows_open_max,
        segments_max: s.segments_max,
        link_type: lt_name,
        timed_out: s.timed_out,
        anomalies: shared::event::Anomalies::default()
            .entries()
            .iter()
            .zip(s.with_anomaly)
            .filter(|(_, n)| *n > 0)
            .map(|((k, _), n)| (k.to_string(), n))
            .collect(),
        last_packet_us: Some(r.tracker.now_us()).filter(|&t| t != i64::MIN),
    })
}
