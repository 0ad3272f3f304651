//! Reading a capture, packet by packet: each record libpcap hands over is parsed
//! ([`parse_frame`]: link, IP and transport headers, checksums), fragments go through the
//! reassembly buffer, and whole packets wait briefly in a queue (for their flows to be
//! prefetched) before the tracker accounts them. Timeouts run on packet time, or on the wall
//! clock while a live capture is idle. Live captures and pipes are read here, on the thread
//! that owns the sink; regular files are read ahead by [`crate::pipe`].

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use pcap::{Activated, Capture};
use shared::sink::EventSink;

use crate::defrag::{Defrag, Outcome};
use crate::sessions::{Collect, Tap};
use crate::tracker::{Hint, Options, Seen, Stats, Tracker};
use crate::wire::tunnel::{self, InnerLink, MAX_DEPTH};
use crate::wire::{self, Drop, IpPacket, Link};
use crate::CaptureError;

/// What a run keeps from packet to packet: the link type, the fragment buffer, the tracker,
/// the packets waiting in the read queue, and the run's progress.
pub(crate) struct Reader {
    /// The capture's name (path or interface), for messages.
    name: String,
    link: Link,
    progress: Progress,
    defrag: Defrag,
    tracker: Tracker,
    frag_counting: bool,
    verify: bool,
    /// Packets parsed but not yet accounted (see `submit`), with their flow lookup hints.
    queue: VecDeque<(Seen, Hint)>,
    depth: usize,
    /// The session view and capture file (`--sessions`, `-w`), when asked for.
    tap: Option<Box<Tap>>,
    /// Live: the session view prints each block at once.
    live: bool,
    /// A tapped frame is being handled (see `frame_tapped`).
    in_tap: bool,
}

/// What one captured frame is to the tracker.
pub(crate) enum Parsed<'a> {
    /// A whole packet, parsed and checksummed.
    Seen(Seen),
    /// An unusable packet, for the drop counters.
    Drop(Drop),
    /// An IP fragment, for the reassembly buffer.
    Frag(IpPacket<'a>),
    /// A whole packet that may carry a tunnel, and where in the frame its transport bytes
    /// start: accounted, then decapsulated.
    Tunnel(Seen, u32),
}

/// Takes one frame apart: link, IP and transport headers, and (with `verify`) checksums: a
/// bad IPv4 header checksum drops the packet, as in Zeek, a bad TCP/UDP one marks it. Depends
/// on nothing but the frame, so a file's reader thread can do it while the tracker works (see
/// `pipe`).
#[inline]
pub(crate) fn parse_frame(
    link: Link,
    verify: bool,
    ts_us: i64,
    wire_len: u32,
    data: &[u8],
) -> Parsed<'_> {
    let (ipb, ip_wire, hint) = match wire::strip_link(link, data, wire_len) {
        Ok(v) => v,
        Err(d) => return Parsed::Drop(d),
    };
    let ip = match wire::parse_ip(ipb, ip_wire, hint) {
        Ok(v) => v,
        Err(d) => return Parsed::Drop(d),
    };
    if verify && ip.ip_csum_bad {
        return Parsed::Drop(Drop::BadIpChecksum);
    }
    if ip.frag.is_some() {
        return Parsed::Frag(ip);
    }
    let l4 = match wire::parse_l4(ip.proto, ip.l4, ip.l4_len) {
        Ok(v) => v,
        Err(d) => return Parsed::Drop(d),
    };
    // Not summed at all when checksums are ignored: the payload is not touched.
    let csum_bad = verify && wire::l4_checksum_bad(&ip) == Some(true);
    let seen = Seen {
        ts_us,
        src: ip.src,
        dst: ip.dst,
        proto: ip.proto,
        ip_len: ip.ip_len,
        l4,
        csum_bad,
        fragments: 0,
    };
    // The one test plain traffic pays for tunnels: a protocol (and for UDP a port) compare.
    // Decapsulation works from the offset, so that the header parsers keep this one caller
    // on the per-packet path (with a second one the inliner stops inlining them here).
    if tunnel::is_candidate(ip.proto, &l4) {
        let at = ip.l4.as_ptr() as usize - data.as_ptr() as usize;
        return Parsed::Tunnel(seen, at as u32);
    }
    Parsed::Seen(seen)
}

/// The transport bytes of a packet [`parse_frame`] found at `at` of `data`: captured, and
/// their length on the wire.
fn transport_at<'a>(seen: &Seen, data: &'a [u8], at: u32) -> (&'a [u8], u32) {
    let len = match seen.proto {
        // UDP: the header is not payload.
        17 => seen.l4.payload + 8,
        _ => seen.l4.payload,
    };
    let start = (at as usize).min(data.len());
    let end = (start + len as usize).min(data.len());
    (&data[start..end], len)
}

impl Reader {
    /// A reader of capture `name`'s `link` frames for a tracker with `opts`, which keeps
    /// `queue` packets waiting for their prefetches (0: account each packet at once) and prints
    /// statistics every `stats_every`, if given.
    pub(crate) fn new(
        name: String,
        link: Link,
        opts: Options,
        queue: usize,
        stats_every: Option<Duration>,
    ) -> Reader {
        Reader {
            name,
            link,
            progress: Progress {
                started: Instant::now(),
                cpu0: cpu_secs(),
                pcap: None,
                packets: 0,
                damaged: 0,
                next_stats: stats_every.map(|d| Instant::now() + d),
                every: stats_every,
            },
            defrag: Defrag::new(FRAGMENT_DATAGRAMS, FRAGMENT_TIMEOUT_US),
            frag_counting: opts.fragment,
            verify: opts.verify_checksums,
            tracker: Tracker::new(opts),
            queue: VecDeque::with_capacity(queue + 1),
            depth: queue,
            tap: None,
            live: false,
            in_tap: false,
        }
    }

    /// Gives the run a session view and/or capture file: every packet is then accounted as
    /// it is read (no read queue), so that the tap sees it with its frame.
    pub(crate) fn set_tap(&mut self, tap: Option<Box<Tap>>, live: bool) {
        if tap.is_some() {
            self.depth = 0;
        }
        self.tap = tap;
        self.live = live;
    }

    pub(crate) fn tap(&self) -> Option<&Tap> {
        self.tap.as_deref()
    }

    /// [`Reader::frame`] with a tap: the frame goes to the tap (written, or remembered for its
    /// packet's connection), and the connections closed meanwhile are collected for it.
    #[cold]
    #[inline(never)]
    fn frame_tapped(&mut self, ts_us: i64, wire_len: u32, data: &[u8], sink: &mut dyn EventSink) {
        let tap = self.tap.as_mut().expect("tapped");
        tap.frame(ts_us, wire_len, data);
        let mut closes = std::mem::take(&mut tap.closes);
        // The frame goes the untapped way (`frame` again), so that the header parsers keep
        // their one caller (more callers and the inliner stops inlining them: BENCHMARKS.md).
        self.in_tap = true;
        self.frame(
            ts_us,
            wire_len,
            data,
            &mut Collect {
                inner: sink,
                closes: &mut closes,
            },
        );
        self.in_tap = false;
        let tap = self.tap.as_mut().expect("tapped");
        tap.closes = closes;
        tap.closed(self.live);
    }

    /// Runs `f` with the sink wrapped for the tap (closes collected), when there is one.
    fn with_tap(
        &mut self,
        sink: &mut dyn EventSink,
        f: impl FnOnce(&mut Reader, &mut dyn EventSink),
    ) {
        let Some(tap) = self.tap.as_mut() else {
            return f(self, sink);
        };
        let mut closes = std::mem::take(&mut tap.closes);
        f(
            self,
            &mut Collect {
                inner: sink,
                closes: &mut closes,
            },
        );
        let tap = self.tap.as_mut().expect("tapped");
        tap.closes = closes;
        tap.closed(self.live);
    }

    /// A live capture is idle: timers run on the wall clock, output is flushed.
    pub(crate) fn idle(&mut self, now_us: i64, sink: &mut dyn EventSink) {
        self.with_tap(sink, |r, sink| r.advance(now_us, sink));
        self.flush_tap();
        sink.flush();
    }

    /// Pushes the tap's buffered output out (a live capture at least once a second).
    pub(crate) fn flush_tap(&mut self) {
        if let Some(t) = self.tap.as_mut() {
            t.flush();
        }
    }

    /// Handles one frame: parse, reassemble if fragmented, account.
    #[inline]
    pub(crate) fn frame(
        &mut self,
        ts_us: i64,
        wire_len: u32,
        data: &[u8],
        sink: &mut dyn EventSink,
    ) {
        if self.tap.is_some() && !self.in_tap {
            return self.frame_tapped(ts_us, wire_len, data, sink);
        }
        match parse_frame(self.link, self.verify, ts_us, wire_len, data) {
            Parsed::Seen(seen) => self.submit(seen, sink),
            Parsed::Drop(d) => self.tracker.drop(d, 1),
            Parsed::Frag(ip) => self.fragment(ts_us, &ip, sink),
            Parsed::Tunnel(seen, at) => self.tunnel_frame(&seen, data, at, sink),
        }
    }

    /// [`Reader::tunnel`] for the frame `data` that [`parse_frame`] read as `seen`, its
    /// transport bytes at `at`.
    #[cold]
    #[inline(never)]
    pub(crate) fn tunnel_frame(
        &mut self,
        seen: &Seen,
        data: &[u8],
        at: u32,
        sink: &mut dyn EventSink,
    ) {
        let (bytes, len) = transport_at(seen, data, at);
        self.tunnel(seen, bytes, len, sink);
    }

    /// Accounts a packet that may carry a tunnel (after the packets queued before it, so that
    /// file order holds), then what it carries, with the outer connection's uid as the inner
    /// one's `tunnel_parents`. `bytes` are the captured transport bytes, `l4_len` their
    /// length on the wire.
    pub(crate) fn tunnel(
        &mut self,
        outer: &Seen,
        bytes: &[u8],
        l4_len: u32,
        sink: &mut dyn EventSink,
    ) {
        self.drain(sink);
        self.account(outer, sink);
        self.decapsulate(outer, bytes, l4_len, 1, sink);
    }

    /// Opens the tunnel at nesting `depth` that the packet `outer` (just accounted) carries,
    /// and accounts the inner packet; recurses into a tunnel in that. Whatever cannot be used
    /// is counted by reason; no connection is made from it.
    fn decapsulate(
        &mut self,
        outer: &Seen,
        bytes: &[u8],
        l4_len: u32,
        depth: usize,
        sink: &mut dyn EventSink,
    ) {
        // The outer packet was dropped (session limit): nothing to be the parent.
        let Some(uid) = self.tracker.latest_uid() else {
            return;
        };
        // Zeek processes a packet with a bad checksum no further (checksums verified only).
        if outer.csum_bad {
            return;
        }
        if depth > MAX_DEPTH {
            return self.tracker.drop(Drop::TunnelTooDeep, 1);
        }
        let inner = match tunnel::decapsulate(outer.proto, &outer.l4, bytes, l4_len) {
            Ok(Some(i)) => i,
            Ok(None) => return,
            Err(d) => return self.tracker.drop(d, 1),
        };
        // The inner packet is parsed as a frame of its own framing (the header parsers keep
        // their one caller, `parse_frame`).
        let link = match inner.link {
            InnerLink::Ip(4) => Link::RawV4,
            InnerLink::Ip(6) => Link::RawV6,
            InnerLink::Ip(_) => Link::Raw,
            InnerLink::Ethernet => Link::Ethernet,
        };
        let (seen, nested) =
            match parse_frame(link, self.verify, outer.ts_us, inner.wire_len, inner.bytes) {
                Parsed::Seen(seen) => (seen, None),
                Parsed::Tunnel(seen, at) => (seen, Some(at)),
                Parsed::Frag(_) => return self.tracker.drop(Drop::TunnelInnerFragment, 1),
                Parsed::Drop(d) => return self.tracker.drop(d.inner(), 1),
            };
        self.tracker.stats.decapsulated += 1;
        self.tracker.set_parent(Some(&uid));
        self.account(&seen, sink);
        self.tracker.set_parent(None);
        self.tracker.add_parent(&uid);
        if let Some(at) = nested {
            let (bytes, len) = transport_at(&seen, inner.bytes, at);
            self.decapsulate(&seen, bytes, len, depth + 1, sink);
        }
    }

    /// Handles one IP fragment: holds it, or accounts the datagram it completes.
    pub(crate) fn fragment(&mut self, ts_us: i64, ip: &IpPacket<'_>, sink: &mut dyn EventSink) {
        match self.defrag.add(ts_us, ip) {
            Outcome::Held => {
                if self.tap.is_some() {
                    self.tap_fragment_held(ip);
                }
            }
            Outcome::Malformed => self.tracker.drop(Drop::FragMalformed, 1),
            Outcome::Full => self.tracker.drop(Drop::FragBufferFull, 1),
            Outcome::Done(a) => {
                if self.tap.is_some() {
                    self.tap_reassembled(&a);
                }
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
                        if !tunnel::is_candidate(a.proto, &l4) {
                            return self.submit(seen, sink);
                        }
                        match &a.data {
                            Some(data) => self.tunnel(&seen, data, a.l4_len, sink),
                            None => {
                                self.drain(sink);
                                self.account(&seen, sink);
                                if self.tracker.latest_uid().is_some() {
                                    self.tracker.drop(Drop::TunnelNotReassembled, 1);
                                }
                            }
                        }
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
    pub(crate) fn submit(&mut self, seen: Seen, sink: &mut dyn EventSink) {
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

    /// Ends the run: accounts what is queued, closes every flow, counts the fragments of
    /// datagrams that never completed.
    pub(crate) fn finish(&mut self, sink: &mut dyn EventSink) {
        self.drain(sink);
        self.with_tap(sink, |r, sink| r.tracker.finish(sink));
        if let Some(t) = self.tap.as_mut() {
            t.finish();
        }
        let lost = self.defrag.flush();
        self.tracker.drop(Drop::FragIncomplete, lost);
        sink.flush();
    }

    /// Counts a packet that cannot be used.
    #[inline]
    pub(crate) fn dropped(&mut self, why: Drop) {
        self.tracker.drop(why, 1);
    }

    /// Starts loading the flow index slot of a packet some way ahead.
    #[inline]
    pub(crate) fn prefetch_slot(&self, h: &Hint) {
        self.tracker.prefetch_slot(h);
    }

    /// Starts loading the flow of a packet a little way ahead.
    #[inline]
    pub(crate) fn prefetch_flow(&self, h: &Hint) {
        self.tracker.prefetch_flow(h);
    }

    pub(crate) fn stats(&self) -> &Stats {
        &self.tracker.stats
    }

    /// The latest packet time, or `None` before the first packet.
    pub(crate) fn last_packet_us(&self) -> Option<i64> {
        Some(self.tracker.now_us()).filter(|&t| t != i64::MIN)
    }

    /// Runs timeouts when packet time says so, then accounts the packet to its flow.
    #[inline]
    fn account(&mut self, seen: &Seen, sink: &mut dyn EventSink) {
        self.advance(seen.ts_us, sink);
        self.tracker.packet(seen, sink);
        if self.tap.is_some() {
            self.tap_packet(seen);
        }
    }

    // The tap's hooks stay out of line: the packet path only grows by a test and a call, so
    // the inliner's choices for the reading loops stay as they were without a tap
    // (BENCHMARKS.md, issue 11).

    /// The tap sees packet `seen`, just accounted.
    #[cold]
    #[inline(never)]
    fn tap_packet(&mut self, seen: &Seen) {
        if let Some(t) = self.tap.as_mut() {
            if let Some(h) = t.packet(seen, self.tracker.peek(seen)) {
                self.tracker.set_latest_http(h);
            }
        }
    }

    /// The tap keeps fragment `ip`'s frame with the datagram (`--write anomalous`).
    #[cold]
    #[inline(never)]
    fn tap_fragment_held(&mut self, ip: &IpPacket<'_>) {
        if let Some(t) = self.tap.as_mut() {
            t.fragment_held(ip.src, ip.dst);
        }
    }

    /// The tap reads the reassembled datagram `a`'s transport head.
    #[cold]
    #[inline(never)]
    fn tap_reassembled(&mut self, a: &crate::defrag::Assembled) {
        if let Some(t) = self.tap.as_mut() {
            t.reassembled(&a.head[..a.head_len], a.ip_len);
        }
    }

    /// [`Reader::account`] with the flow hash computed ahead.
    #[inline]
    pub(crate) fn account_hinted(&mut self, seen: &Seen, hint: &Hint, sink: &mut dyn EventSink) {
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

/// Packet and damaged-record counts of a run, and when to print statistics next.
struct Progress {
    /// When the run started (CPU share), and libpcap's latest counts (live).
    started: Instant,
    /// CPU seconds used when the run started.
    cpu0: f64,
    pcap: Option<(u32, u32, u32)>,
    packets: u64,
    damaged: u64,
    next_stats: Option<Instant>,
    every: Option<Duration>,
}

impl Reader {
    /// The capture's path or interface, for messages.
    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    pub(crate) fn link(&self) -> Link {
        self.link
    }

    /// Whether checksums are verified (see [`parse_frame`]).
    pub(crate) fn verify_checksums(&self) -> bool {
        self.verify
    }

    /// Counts one more record read (before it is accounted, so messages name it).
    #[inline]
    pub(crate) fn packet(&mut self) {
        self.progress.packets += 1;
    }

    /// Records read, and records libpcap could not read.
    pub(crate) fn counts(&self) -> (u64, u64) {
        (self.progress.packets, self.progress.damaged)
    }

    /// Counts a record libpcap could not read, and says so (the first 10 times).
    pub(crate) fn damaged(&mut self, e: &dyn std::fmt::Display) {
        let p = &mut self.progress;
        p.damaged += 1;
        if p.damaged <= 10 {
            eprintln!(
                "ipclog: {}: after packet {}: damaged record: {e}",
                self.name, p.packets
            );
        }
    }

    /// Says that the rest of the file is not read.
    pub(crate) fn give_up(&self) {
        eprintln!(
            "ipclog: {}: giving up on the rest of the file after packet {}",
            self.name, self.progress.packets
        );
    }

    /// Prints statistics when they are due (checked every 4096 packets).
    #[inline]
    pub(crate) fn tick(&mut self) {
        if self.progress.packets & 4095 == 0 {
            self.stats_if_due();
        }
    }

    fn stats_if_due(&mut self) {
        if let (Some(t), Some(every)) = (self.progress.next_stats, self.progress.every) {
            if Instant::now() >= t {
                self.print_stats();
                self.progress.next_stats = Some(Instant::now() + every);
            }
        }
    }

    /// Whether statistics are printed (`-s`).
    pub(crate) fn wants_stats(&self) -> bool {
        self.progress.every.is_some()
    }

    /// libpcap's counts of a live capture (received, dropped, dropped by the interface).
    pub(crate) fn set_pcap_stats(&mut self, s: pcap::Stat) {
        self.progress.pcap = Some((s.received, s.dropped, s.if_dropped));
    }

    /// The `-s` statistics: the one-line summary, then miruo's statistics block.
    pub(crate) fn print_stats(&self) {
        self.print_stats_line();
        eprint!("{}", self.stats_block());
    }

    /// miruo's statistics block (`-s`): sessions and what they showed, the thresholds in
    /// force, what is held against its limits and what was dropped, this process's CPU share
    /// and memory, libpcap's counts (live), header errors by layer.
    fn stats_block(&self) -> String {
        use std::fmt::Write as _;
        let s = &self.tracker.stats;
        let o = self.tracker.options();
        let el = self.progress.started.elapsed();
        let secs = el.as_secs();
        let mut t = String::new();
        let view = self.tap.as_ref().and_then(|t| t.view.as_ref());
        let (shown, vsess) = view.map_or((0, 0), |v| (v.stats.shown, v.stats.sessions));
        let (held, held_max, not_kept, bad_opts) = view.map_or((0, 0, 0, 0), |v| {
            (
                v.active().1,
                v.stats.lines_held_max,
                v.stats.lines_not_kept,
                v.stats.bad_options,
            )
        });
        let d = |x: Drop| s.drops[x as usize];
        let _ = writeln!(t, "===== Session Statistics =====");
        let _ = writeln!(
            t,
            "Capture Time    : {:02}:{:02}:{:02}",
            secs / 3600,
            secs / 60 % 60,
            secs % 60
        );
        let _ = writeln!(t, "Total Sessions  : {}", s.flows_total);
        let _ = writeln!(t, "TCP Sessions    : {vsess}");
        let _ = writeln!(t, "Lookup          : {shown}");
        for (name, i) in [
            ("LongConnect", 5),
            ("LongDelay", 3),
            ("Retransmit", 0),
            ("SynRetransmit", 1),
        ] {
            let _ = writeln!(t, "{name:<16}: {}", s.with_anomaly[i]);
        }
        let _ = writeln!(t, "Timeout         : {}", s.timed_out);
        let _ = writeln!(t, "Error           : {}", bad_opts);
        let _ = writeln!(t, "RST             : {}", s.with_anomaly[2]);
        let _ = writeln!(t, "fragment        : {}", s.with_anomaly[4]);
        let _ = writeln!(t, "------------------------------");
        let _ = writeln!(t, "LongConnectTime : {} [ms]", o.long_connect_us / 1000);
        let _ = writeln!(t, "LongDelayTime   : {} [ms]", o.long_delay_us / 1000);
        let _ = writeln!(t, "RetransmitTime  : {} [ms]", o.retransmit_us / 1000);
        let _ = writeln!(t, "------------------------------");
        let _ = writeln!(t, "ActiveSession   : {}", self.tracker.open_flows());
        let _ = writeln!(t, "ActiveSessionMax: {}", s.flows_open_max);
        let _ = writeln!(t, "ActiveSessionLim: {}", o.session_limit);
        let _ = writeln!(t, "ActiveSegment   : {}", self.tracker.segments() + held);
        let _ = writeln!(t, "ActiveSegmentMax: {}", s.segments_max.max(held_max));
        let _ = writeln!(t, "ActiveSegmentLim: {}", o.segment_limit);
        let _ = writeln!(t, "DropSession     : {}", d(Drop::SessionLimit));
        let _ = writeln!(t, "DropSegment     : {}", s.segments_dropped + not_kept);
        let _ = writeln!(t, "------------------------------");
        let cpu = 100.0 * (cpu_secs() - self.progress.cpu0) / el.as_secs_f64().max(1e-3);
        let (vsz, rss) = memory_kb();
        let _ = writeln!(t, "CPU             : {cpu:.1}%");
        let _ = writeln!(t, "VSZ             : {vsz}KB");
        let _ = writeln!(t, "RSS             : {rss}KB");
        if let Some((recv, drop, ifdrop)) = self.progress.pcap {
            let _ = writeln!(t, "===== libpcap Statistics =====");
            let _ = writeln!(t, "recv  : {recv}");
            let _ = writeln!(t, "drop  : {drop}");
            let _ = writeln!(t, "ifdrop: {ifdrop}");
        }
        let _ = writeln!(t, "===== Header Error Count =====");
        let _ = writeln!(t, "L2  : {}", d(Drop::TruncatedLink) + d(Drop::NonIp));
        let ip = [
            Drop::TruncatedIp,
            Drop::BadIpHeader,
            Drop::BadIpLength,
            Drop::BadIpChecksum,
            Drop::FragMalformed,
        ];
        let _ = writeln!(t, "IP  : {}", ip.iter().map(|&x| d(x)).sum::<u64>());
        let l4 = d(Drop::TruncatedL4) + d(Drop::BadL4Length) + d(Drop::BadChecksum);
        let _ = writeln!(t, "TCP : {}", l4 + bad_opts);
        let _ = writeln!(t, "==============================");
        t
    }

    /// The `-s` statistics line.
    fn print_stats_line(&self) {
        let s = &self.tracker.stats;
        // Tunnel reasons are inner packets whose outer packet is in a connection.
        let (mut dropped, mut tunnel_errors) = (0, 0);
        for d in Drop::ALL {
            match d.is_tunnel() {
                true => tunnel_errors += s.drops[d as usize],
                false => dropped += s.drops[d as usize],
            }
        }
        eprintln!(
            "ipclog: capture stats: packets={} flows_open={} flows_open_max={} flows_total={} \
             segments={} segments_max={} segments_not_tracked={} fragments_held={} \
             dropped={dropped} session_limit_drops={} timed_out={} with_retrans={} \
             with_syn_retrans={} with_rst={} with_long_delay={} with_frag={} with_long_conn={} \
             decapsulated={} tunnel_errors={tunnel_errors}",
            self.progress.packets,
            self.tracker.open_flows(),
            s.flows_open_max,
            s.flows_total,
            self.tracker.segments(),
            s.segments_max,
            s.segments_dropped,
            self.defrag.held(),
            s.drops[Drop::SessionLimit as usize],
            s.timed_out,
            s.with_anomaly[0],
            s.with_anomaly[1],
            s.with_anomaly[2],
            s.with_anomaly[3],
            s.with_anomaly[4],
            s.with_anomaly[5],
            s.decapsulated,
        );
    }
}

/// Reads and tracks on this thread: live captures (non-blocking, with idle handling) and
/// files that are not regular (pipes).
pub(crate) fn read_direct(
    cap: &mut Capture<dyn Activated>,
    live_fd: Option<std::os::fd::RawFd>,
    r: &mut Reader,
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
                r.packet();
                let ts_us = ts_us(&p.header.ts);
                r.frame(ts_us, p.header.len, p.data, sink);
                // A busy live capture never idles: flush its output at least once a second.
                if live
                    && r.progress.packets & 255 == 0
                    && last_flush.elapsed() >= Duration::from_secs(1)
                {
                    r.flush_tap();
                    sink.flush();
                    last_flush = Instant::now();
                }
                r.tick();
            }
            Err(pcap::Error::NoMorePackets) => break,
            Err(pcap::Error::TimeoutExpired) => {
                if live && r.wants_stats() {
                    if let Ok(s) = cap.stats() {
                        r.set_pcap_stats(s);
                    }
                }
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
                r.idle(chrono::Utc::now().timestamp_micros(), sink);
                r.stats_if_due();
            }
            Err(e) => {
                if live && stop.load(Ordering::Relaxed) {
                    break;
                }
                consecutive += 1;
                r.damaged(&e);
                if live && consecutive > 100 {
                    return Err(CaptureError {
                        message: format!("capture on {}: {e}", r.name),
                        exit_code: 1,
                    });
                }
                if !live && consecutive >= MAX_CONSECUTIVE_DAMAGE {
                    r.give_up();
                    break;
                }
            }
        }
    }
    Ok(())
}

/// CPU seconds (user and system) this process has used.
fn cpu_secs() -> f64 {
    // SAFETY: getrusage fills the struct it is given.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) } != 0 {
        return 0.0;
    }
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

/// This process's virtual and resident memory in KB.
fn memory_kb() -> (u64, u64) {
    // SAFETY: sysconf only reads a setting.
    let page = (unsafe { libc::sysconf(libc::_SC_PAGESIZE) }.max(4096) / 1024) as u64;
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| {
            let mut f = s.split_whitespace().map(|x| x.parse::<u64>().ok());
            Some((f.next()??, f.next()??))
        })
        .map_or((0, 0), |(v, r)| (v * page, r * page))
}

/// A libpcap timestamp in microseconds, within the times the log can show (see [`clamp_ts`]).
#[inline]
pub(crate) fn ts_us(ts: &libc::timeval) -> i64 {
    #[allow(clippy::unnecessary_cast)] // time_t/suseconds_t differ by platform
    let us = (ts.tv_sec as i64)
        .saturating_mul(1_000_000)
        .saturating_add(ts.tv_usec as i64);
    clamp_ts(us)
}

/// The latest packet time kept, 9999-12-30 00:00 UTC: a day short of the year 10000 in every
/// time zone, since the log writes local time with a four-digit year.
const MAX_TS_US: i64 = 253_402_128_000_000_000;

/// A packet time moved into 1970..9999. A pcapng file's 64-bit timestamps and time offsets
/// can say anything, and a time outside those years would give a log line no reader accepts
/// (and overflow the tracker's arithmetic).
#[inline]
pub(crate) fn clamp_ts(us: i64) -> i64 {
    us.clamp(0, MAX_TS_US)
}

/// Consecutive unreadable records after which the rest of a file is given up (a corrupt
/// record header leaves libpcap no way to find the next one).
pub(crate) const MAX_CONSECUTIVE_DAMAGE: u32 = 3;

/// How many parsed packets a file read keeps queued for prefetching (see `Reader::submit`).
pub(crate) const PIPELINE: usize = 8;

/// Datagrams whose fragments are held at once, and how long (packet time) they wait for the
/// rest.
const FRAGMENT_DATAGRAMS: usize = 4096;
const FRAGMENT_TIMEOUT_US: i64 = 30_000_000;
