//! The flow table: one entry per connection, keyed by the 5-tuple in a canonical order so both
//! directions find the same entry. TCP is followed with Zeek's per-endpoint state machine
//! (INACTIVE, SYN_SENT, SYN_ACK_SENT, PARTIAL, ESTABLISHED, CLOSED, RESET, as in Zeek's
//! TCPSessionAdapter) so that conn_state and history mean exactly what Zeek's conn.log says;
//! sizes (orig_bytes/resp_bytes) are, as in Zeek, the sequence space each side used (highest
//! sequence or acknowledgement seen minus the initial sequence, less SYN and FIN). UDP and other
//! protocols are flows that end after an inactivity timeout. All times are packet times.

use std::collections::VecDeque;
use std::net::IpAddr;

use chrono::{DateTime, Utc};
use shared::event::{
    Anomalies, ConnEvent, ConnState, Counters, EventKind, FlowTuple, Source, TcpState,
};
use shared::sink::EventSink;

use crate::index::FlowIndex;
use crate::parse::{Drop, ACK, DROP_REASONS, FIN, L4, RST, SYN};

/// Tracker settings (from the command line). Times in microseconds; 0 = off.
#[derive(Debug, Clone)]
pub struct Options {
    pub tcp_timeout_us: i64,
    pub udp_timeout_us: i64,
    pub retransmit_us: i64,
    pub syn: bool,
    pub rst: u8,
    pub long_connect_us: i64,
    pub long_delay_us: i64,
    pub fragment: bool,
    pub session_limit: usize,
    pub segment_limit: usize,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            tcp_timeout_us: 300_000_000,
            udp_timeout_us: 60_000_000,
            retransmit_us: 1_000_000,
            syn: true,
            rst: 1,
            long_connect_us: 0,
            long_delay_us: 0,
            fragment: true,
            session_limit: 65536,
            segment_limit: 65536,
        }
    }
}

/// How long a finished TCP connection (both FINs, or a RST) stays in the table for late
/// packets (final ACKs, retransmitted FINs) before it is reported closed. Zeek's
/// tcp_close_delay and tcp_reset_delay are 5 s too.
const LINGER_US: i64 = 5_000_000;
/// Sequence jumps larger than this on SYN/RST are not trusted (Zeek's TOO_LARGE_SEQ_DELTA).
const TOO_LARGE_SEQ_DELTA: i32 = 1_048_576;
/// Offset added to the first sequence number so the 64-bit sequence space never goes below 0.
const SEQ_BASE: i64 = 1 << 32;

/// One packet as the tracker sees it (after link/IP/transport parsing or fragment reassembly).
#[derive(Debug, Clone, Copy)]
pub struct Seen {
    pub ts_us: i64,
    pub src: IpAddr,
    pub dst: IpAddr,
    pub proto: u8,
    pub ip_len: u32,
    pub l4: L4,
    pub csum_bad: bool,
    /// Number of IP fragments this packet was reassembled from (0 = not fragmented).
    pub fragments: u32,
}

/// The flow table key: both addresses (16 bytes each, IPv4 as IPv4-mapped), both ports and the
/// protocol, in canonical order (the lower address/port first) so both directions hit one
/// entry. Five machine words, hashed and compared as such.
#[derive(Debug, Clone, Copy, Eq)]
struct Key {
    w: [u64; 5],
}

impl PartialEq for Key {
    #[inline]
    fn eq(&self, o: &Key) -> bool {
        // Word by word: the derived array comparison calls memcmp.
        (self.w[0] ^ o.w[0])
            | (self.w[1] ^ o.w[1])
            | (self.w[2] ^ o.w[2])
            | (self.w[3] ^ o.w[3])
            | (self.w[4] ^ o.w[4])
            == 0
    }
}

impl std::hash::Hash for Key {
    #[inline]
    fn hash<H: std::hash::Hasher>(&self, h: &mut H) {
        for w in self.w {
            h.write_u64(w);
        }
    }
}

/// An address as a 128-bit number (IPv4 as IPv4-mapped): compared and hashed without memcmp.
#[inline]
fn addr128(a: IpAddr) -> u128 {
    match a {
        IpAddr::V4(v) => 0xffff_0000_0000 | u32::from(v) as u128,
        IpAddr::V6(v) => u128::from(v),
    }
}

impl Key {
    #[inline]
    fn hash64(&self) -> u64 {
        use std::hash::BuildHasher;
        crate::hash::FxBuild::default().hash_one(self)
    }

    /// The key of `s`'s flow, and whether `s` travels from the key's second side to its first.
    #[inline]
    fn new(s: &Seen) -> (Key, bool) {
        let sp = s.l4.sport.unwrap_or(0);
        let dp = s.l4.dport.unwrap_or(0);
        let (x, y) = (addr128(s.src), addr128(s.dst));
        let swapped = (x, sp) > (y, dp);
        let ((a, pa), (b, pb)) = if swapped {
            ((y, dp), (x, sp))
        } else {
            ((x, sp), (y, dp))
        };
        let tail = (pa as u64)
            | (pb as u64) << 16
            | (s.proto as u64) << 32
            | (s.src.is_ipv6() as u64) << 40;
        let k = Key {
            w: [(a >> 64) as u64, a as u64, (b >> 64) as u64, b as u64, tail],
        };
        (k, swapped)
    }
}

/// Zeek's TCP endpoint states.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ep {
    Inactive,
    SynSent,
    SynAckSent,
    Partial,
    Established,
    Closed,
    Reset,
}

#[derive(Debug, Clone, Copy, Default)]
struct Seg {
    seq: u32,
    end: u32,
    ts_us: i64,
}

/// Unacknowledged data segments of one endpoint, oldest first: the first few inline (in the
/// flow's own cache lines, so pruning on each ACK touches no other memory), the rest in a
/// queue allocated only when a sender has more in flight.
#[derive(Debug)]
struct Segs {
    inline: [Seg; 4],
    head: u8,
    len: u8,
    spill: VecDeque<Seg>,
}

impl Segs {
    fn new() -> Segs {
        Segs {
            inline: [Seg::default(); 4],
            head: 0,
            len: 0,
            spill: VecDeque::new(),
        }
    }

    fn len(&self) -> usize {
        self.len as usize + self.spill.len()
    }

    #[inline]
    fn front(&self) -> Option<&Seg> {
        if self.len > 0 {
            Some(&self.inline[self.head as usize])
        } else {
            None
        }
    }

    #[inline]
    fn push_back(&mut self, g: Seg) {
        if self.len < 4 && self.spill.is_empty() {
            self.inline[((self.head + self.len) % 4) as usize] = g;
            self.len += 1;
        } else {
            self.spill.push_back(g);
        }
    }

    #[inline]
    fn pop_front(&mut self) {
        if self.len == 0 {
            return;
        }
        self.head = (self.head + 1) % 4;
        self.len -= 1;
        // Keep the oldest ones inline.
        if let Some(g) = self.spill.pop_front() {
            self.inline[((self.head + self.len) % 4) as usize] = g;
            self.len += 1;
        }
    }

    fn iter(&self) -> impl Iterator<Item = &Seg> {
        (0..self.len)
            .map(move |k| &self.inline[((self.head + k) % 4) as usize])
            .chain(self.spill.iter())
    }
}

/// One side of a connection; `repr(C)` with the per-packet fields first.
#[derive(Debug)]
#[repr(C)]
struct Endpoint {
    state: Ep,
    prev: Ep,
    hist_seen: u16,
    fin_cnt: u32,
    pkts: u64,
    ip_bytes: u64,
    payload: u64,
    start: i64,
    last: i64,
    ack: i64,
    /// Zeek's TCP_Reassembler `last_reassem_seq`: relative sequence number (first data byte
    /// = 1) up to which this side's data was seen without a hole. Checked on every ACK, so
    /// kept with the other per-packet fields.
    reassem: i64,
    /// Zeek's FIN_seq: relative sequence number one past this side's last FIN.
    fin_rel: i64,
    segs: Segs,
    last_syn: i64,
    last_fin: i64,
    last_rst: i64,
    rxmit: (u32, u32),
    zero_win: (u32, u32),
    bad_csum: (u32, u32),
    syn_seq: Option<u32>,
    synack_seq: Option<u32>,
    /// Data seen above a hole, as one range [lo, hi) (empty when lo >= hi). Disjoint ranges
    /// are merged into one, so a second hole between them is taken as filled: with that the
    /// `g` letter is only ever missed, never invented, and nothing is allocated.
    above: (i64, i64),
    gaps: (u32, u32),
}

impl Endpoint {
    fn new() -> Endpoint {
        Endpoint {
            state: Ep::Inactive,
            prev: Ep::Inactive,
            pkts: 0,
            ip_bytes: 0,
            payload: 0,
            start: 0,
            last: 0,
            ack: 0,
            fin_cnt: 0,
            hist_seen: 0,
            last_syn: 0,
            last_fin: 0,
            last_rst: 0,
            rxmit: (0, 1),
            zero_win: (0, 1),
            bad_csum: (0, 1),
            syn_seq: None,
            synack_seq: None,
            segs: Segs::new(),
            reassem: 1,
            above: (0, 0),
            fin_rel: 0,
            gaps: (0, 1),
        }
    }

    fn set(&mut self, s: Ep) {
        self.prev = self.state;
        self.state = s;
    }

    /// Maps a 32-bit sequence number into the 64-bit space near `reference`.
    #[inline]
    fn full(reference: i64, seq: u32) -> i64 {
        reference + (seq.wrapping_sub(reference as u32) as i32) as i64
    }

    fn init_seq(&mut self, start: i64, last: i64) {
        self.start = start;
        self.ack = start;
        self.last = last;
    }

    /// Zeek's TCP_Endpoint::Size(): sequence space used, without SYN and FIN.
    fn size(&self, peer: &Endpoint) -> u64 {
        if self.prev == Ep::SynSent
            && self.state == Ep::Reset
            && peer.state == Ep::Inactive
            && !(self.ack == self.start || self.ack == self.start + 1)
        {
            return 0;
        }
        let mut size = self.last.max(self.ack) - self.start;
        if size > 0 {
            size -= 1;
        }
        if self.fin_cnt > 0 && size > 0 {
            size -= 1;
        }
        size.max(0) as u64
    }
}

/// History letters, at most 64 (Zeek's rules keep real histories far shorter).
#[derive(Debug, Clone)]
struct History {
    buf: [u8; 64],
    len: u8,
}

impl History {
    fn new() -> History {
        History {
            buf: [0; 64],
            len: 0,
        }
    }
    fn push(&mut self, c: u8) {
        if (self.len as usize) < self.buf.len() {
            self.buf[self.len as usize] = c;
            self.len += 1;
        }
    }
    fn as_str(&self) -> &str {
        std::str::from_utf8(&self.buf[..self.len as usize]).unwrap_or("")
    }
}

const HIST_SYN: u16 = 1;
const HIST_FIN: u16 = 2;
const HIST_RST: u16 = 4;
const HIST_FIN_RST: u16 = 8;
const HIST_MULTI: u16 = 16;
const HIST_DATA: u16 = 32;
const HIST_ACK: u16 = 64;

/// One connection. `repr(C)` keeps the fields every packet touches (key, times, both
/// endpoints) together at the start, so they come in the first cache lines, which the read
/// queue prefetches.
#[repr(C)]
struct Flow {
    key: Key,
    id: u64,
    first_us: i64,
    last_us: i64,
    proto: u8,
    /// The direction (as returned by Key::new) in which the originator sends.
    orig_swapped: bool,
    fin_seen: bool,
    /// Zeek's TCP_Analyzer::IsPartial(): an endpoint began without a SYN.
    partial: bool,
    reported: ConnState,
    ep: [Endpoint; 2],
    hist: History,
    anom: Anomalies,
    orig: FlowTuple,
}

impl Flow {
    /// Letter for endpoint `d` (0 orig = upper case, 1 resp = lower case).
    #[inline]
    fn letter(d: usize, c: u8) -> u8 {
        if d == 0 {
            c
        } else {
            c.to_ascii_lowercase()
        }
    }

    /// Zeek's CheckHistory: true when already recorded for this endpoint, else records it.
    fn check_history(&mut self, d: usize, mask: u16, c: u8) -> bool {
        if self.ep[d].hist_seen & mask != 0 {
            return true;
        }
        self.ep[d].hist_seen |= mask;
        self.hist.push(Self::letter(d, c));
        false
    }

    /// Zeek's ScaledHistoryEntry: the letter again at 1, 10, 100, ... occurrences.
    fn scaled(&mut self, d: usize, which: u8, c: u8) {
        let e = &mut self.ep[d];
        let slot = match which {
            0 => &mut e.rxmit,
            1 => &mut e.zero_win,
            3 => &mut e.gaps,
            _ => &mut e.bad_csum,
        };
        slot.0 = slot.0.saturating_add(1);
        if slot.0 == slot.1 {
            slot.1 = slot.1.saturating_mul(10);
            self.hist.push(Self::letter(d, c));
        }
    }

    fn is_tcp(&self) -> bool {
        self.proto == 6
    }

    /// Both sides closed, or someone reset: the connection is over.
    fn finished(&self) -> bool {
        self.is_tcp()
            && (self.ep[0].state == Ep::Reset
                || self.ep[1].state == Ep::Reset
                || (self.ep[0].state == Ep::Closed && self.ep[1].state == Ep::Closed))
    }

    /// The TCP state in conntrack's terms, for the log's flag letter.
    fn conn_state(&self) -> ConnState {
        if !self.is_tcp() {
            return if self.ep[1].pkts > 0 {
                ConnState::Replied
            } else {
                ConnState::Unreplied
            };
        }
        let (o, r) = (self.ep[0].state, self.ep[1].state);
        let t = if o == Ep::Reset || r == Ep::Reset {
            TcpState::Close
        } else if o == Ep::Closed && r == Ep::Closed {
            TcpState::TimeWait
        } else if o == Ep::Closed {
            TcpState::FinWait
        } else if r == Ep::Closed {
            TcpState::CloseWait
        } else if matches!(o, Ep::SynSent | Ep::SynAckSent) && r == Ep::Inactive {
            TcpState::SynSent
        } else if r == Ep::SynAckSent || (o == Ep::SynSent && r == Ep::Established) {
            TcpState::SynRecv
        } else if o == Ep::Inactive && r == Ep::Inactive {
            TcpState::None
        } else {
            TcpState::Established
        };
        ConnState::Tcp(t)
    }

    /// Zeek's conn_state (base/protocols/conn/main.zeek), from the endpoint states.
    fn zeek_state(&self) -> &'static str {
        let (o, r) = (&self.ep[0], &self.ep[1]);
        match self.proto {
            6 => {
                let (os, rs) = (o.state, r.state);
                let o_inactive = matches!(os, Ep::Inactive | Ep::Partial);
                let r_inactive = matches!(rs, Ep::Inactive | Ep::Partial);
                if rs == Ep::Reset {
                    if matches!(os, Ep::SynSent | Ep::SynAckSent)
                        || (os == Ep::Reset && o.size(r) == 0 && r.size(o) == 0)
                    {
                        "REJ"
                    } else if o_inactive {
                        "RSTRH"
                    } else {
                        "RSTR"
                    }
                } else if os == Ep::Reset {
                    if r_inactive {
                        if rstos0_history(self.hist.as_str()) {
                            "RSTOS0"
                        } else {
                            "OTH"
                        }
                    } else {
                        "RSTO"
                    }
                } else if rs == Ep::Closed && os == Ep::Closed {
                    "SF"
                } else if os == Ep::Closed {
                    if r_inactive {
                        "SH"
                    } else {
                        "S2"
                    }
                } else if rs == Ep::Closed {
                    if o_inactive {
                        "SHR"
                    } else {
                        "S3"
                    }
                } else if os == Ep::SynSent && rs == Ep::Inactive {
                    "S0"
                } else if os == Ep::Established && rs == Ep::Established {
                    "S1"
                } else {
                    "OTH"
                }
            }
            17 => match (o.pkts > 0, r.pkts > 0) {
                (true, true) => "SF",
                (true, false) => "S0",
                (false, true) => "SHR",
                (false, false) => "OTH",
            },
            _ => "OTH",
        }
    }

    fn counters(&self) -> Counters {
        let (o, r) = (&self.ep[0], &self.ep[1]);
        let (ob, rb) = if self.is_tcp() {
            (o.size(r), r.size(o))
        } else {
            (o.payload, r.payload)
        };
        Counters {
            orig_pkts: o.pkts,
            orig_ip_bytes: o.ip_bytes,
            resp_pkts: r.pkts,
            resp_ip_bytes: r.ip_bytes,
            orig_bytes: Some(ob),
            resp_bytes: Some(rb),
        }
    }
}

/// `/^\^?S[^HAFGIQ]*R.*/`: an originator SYN followed by its RST with nothing from it between.
fn rstos0_history(h: &str) -> bool {
    let h = h.strip_prefix('^').unwrap_or(h);
    let Some(rest) = h.strip_prefix('S') else {
        return false;
    };
    for c in rest.chars() {
        if c == 'R' {
            return true;
        }
        if "HAFGIQ".contains(c) {
            return false;
        }
    }
    false
}

/// A packet's flow hash, computed ahead (while it waits in the read queue, or on a file's
/// reader thread) for prefetching and the lookup.
#[derive(Debug, Clone, Copy)]
pub struct Hint {
    hash: u64,
}

impl Hint {
    #[inline]
    pub fn of(s: &Seen) -> Hint {
        let (key, _) = Key::new(s);
        Hint { hash: key.hash64() }
    }
}

/// A hint to the CPU to start loading the cache line at `p` (no effect on results).
#[inline(always)]
pub fn prefetch(p: *const u8) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: prefetching is a hint; it never faults, whatever the address.
    unsafe {
        std::arch::x86_64::_mm_prefetch(p as *const i8, std::arch::x86_64::_MM_HINT_T0);
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}

/// Counters the run reports.
#[derive(Debug, Default, Clone)]
pub struct Stats {
    pub drops: [u64; DROP_REASONS],
    /// Packets (datagrams) counted into flows.
    pub in_flows: u64,
    /// Fragments merged into a datagram beyond the first (each datagram counts once).
    pub frags_merged: u64,
    pub bad_checksum: u64,
    pub segments_dropped: u64,
    pub flows_total: u64,
    pub flows_open_max: u64,
    pub segments_max: u64,
    /// Connections closed because they were idle past --tcp-timeout / --udp-timeout.
    pub timed_out: u64,
    /// Connections (closed so far) with each anomaly, in `Anomalies::entries` order.
    pub with_anomaly: [u64; 6],
}

pub struct Tracker {
    opts: Options,
    table: FlowIndex,
    slab: Vec<Option<Flow>>,
    /// Each slab slot's flow's `last_us` (`i64::MAX` when the slot is free): a sweep reads
    /// this compact copy (8 bytes a flow, cached) and looks at a flow itself only when it has
    /// been idle long enough for some timeout, instead of walking the whole flow table.
    last: Vec<i64>,
    free: Vec<u32>,
    next_id: u64,
    segments: u64,
    pub stats: Stats,
    now_us: i64,
    next_sweep_us: i64,
    expired: Vec<(u64, u32)>,
    /// Packets counted in flows still open.
    open_pkts: u64,
    /// The event handed to sinks, reused so that emitting allocates nothing.
    scratch: ConnEvent,
}

fn to_time(us: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_micros(us).unwrap_or_default()
}

/// A Zeek-like uid: "C" and 17 base62 digits of a hash of the flow's number, start and tuple.
fn make_uid(s: &mut String, id: u64, first_us: i64, key: &Key) {
    use std::hash::BuildHasher;
    let b = crate::hash::FxBuild::default();
    // Two independent 64-bit hashes, 9 and 8 base62 digits from each (u64 arithmetic only).
    let mut v1 = b.hash_one((id, first_us, key));
    let mut v2 = b.hash_one((key, first_us ^ 0x5bd1e995, id.rotate_left(17)));
    const DIGITS: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    s.clear();
    s.push('C');
    for _ in 0..9 {
        s.push(DIGITS[(v1 % 62) as usize] as char);
        v1 /= 62;
    }
    for _ in 0..8 {
        s.push(DIGITS[(v2 % 62) as usize] as char);
        v2 /= 62;
    }
}

impl Tracker {
    pub fn new(opts: Options) -> Tracker {
        Tracker {
            opts,
            table: FlowIndex::new(),
            slab: Vec::new(),
            last: Vec::new(),
            free: Vec::new(),
            next_id: 1,
            segments: 0,
            stats: Stats::default(),
            now_us: i64::MIN,
            next_sweep_us: i64::MIN,
            expired: Vec::new(),
            open_pkts: 0,
            scratch: ConnEvent::new(
                EventKind::Open,
                DateTime::default(),
                Source::Pcap,
                0,
                0,
                FlowTuple::new(
                    IpAddr::from([0, 0, 0, 0]),
                    IpAddr::from([0, 0, 0, 0]),
                    None,
                    None,
                ),
            ),
        }
    }

    pub fn open_flows(&self) -> usize {
        self.table.len()
    }

    pub fn segments(&self) -> u64 {
        self.segments
    }

    pub fn now_us(&self) -> i64 {
        self.now_us
    }

    pub fn drop(&mut self, why: Drop, n: u64) {
        self.stats.drops[why as usize] += n;
    }

    /// Advances packet time; returns true when a sweep for timeouts is due (once a second).
    #[inline]
    pub fn advance(&mut self, ts_us: i64) -> bool {
        if ts_us > self.now_us {
            self.now_us = ts_us;
        }
        if self.now_us >= self.next_sweep_us {
            self.next_sweep_us = self.now_us + 1_000_000;
            true
        } else {
            false
        }
    }

    /// The flow hash of `s`, computed ahead for prefetching.
    #[inline]
    pub fn hint(&self, s: &Seen) -> Hint {
        Hint::of(s)
    }

    /// Starts loading the index slot where `h`'s flow would be.
    #[inline]
    pub fn prefetch_slot(&self, h: &Hint) {
        self.table.prefetch(h.hash);
    }

    /// Starts loading `h`'s flow (its header and both endpoints), if the index knows it.
    #[inline]
    pub fn prefetch_flow(&self, h: &Hint) {
        let slab = &self.slab;
        if let Some(i) = self.table.get(h.hash, |_| true) {
            if let Some(f) = slab.get(i as usize) {
                let p = f as *const Option<Flow> as *const u8;
                for line in 0..9 {
                    prefetch(p.wrapping_add(line * 64));
                }
            }
        }
    }

    /// Accounts one packet to its flow, creating, updating or replacing the flow.
    #[inline]
    pub fn packet(&mut self, s: &Seen, sink: &mut dyn EventSink) {
        let (key, swapped) = Key::new(s);
        self.packet_keyed(s, key, swapped, key.hash64(), sink);
    }

    /// [`Tracker::packet`] with the flow hash `h` computed ahead ([`Hint::of`] this packet).
    #[inline]
    pub fn packet_hinted(&mut self, s: &Seen, h: &Hint, sink: &mut dyn EventSink) {
        let (key, swapped) = Key::new(s);
        debug_assert_eq!(h.hash, key.hash64());
        self.packet_keyed(s, key, swapped, h.hash, sink);
    }

    fn packet_keyed(
        &mut self,
        s: &Seen,
        key: Key,
        swapped: bool,
        hash: u64,
        sink: &mut dyn EventSink,
    ) {
        let slab = &self.slab;
        let mut idx = self.table.get(hash, |i| {
            slab[i as usize].as_ref().is_some_and(|f| f.key == key)
        });
        if let Some(i) = idx {
            // A new SYN on a connection that is over: port reuse, a new connection.
            let f = self.slab[i as usize].as_ref().expect("live flow");
            if f.is_tcp() && s.l4.flags & (SYN | ACK | RST | FIN) == SYN {
                let over =
                    f.ep.iter()
                        .any(|e| matches!(e.state, Ep::Reset | Ep::Closed));
                if over {
                    self.close(i, sink);
                    idx = None;
                }
            }
        }
        let i = match idx {
            Some(i) => i,
            None => {
                if self.table.len() >= self.opts.session_limit {
                    self.drop(Drop::SessionLimit, 1);
                    return;
                }
                self.create(key, hash, swapped, s)
            }
        };
        let f = self.slab[i as usize].as_mut().expect("live flow");
        let d = if swapped == f.orig_swapped { 0 } else { 1 };
        let is_new = f.ep[0].pkts + f.ep[1].pkts == 0;
        let gap = s.ts_us - f.last_us;
        if s.ts_us > f.last_us {
            f.last_us = s.ts_us;
            self.last[i as usize] = s.ts_us;
        }
        {
            let e = &mut f.ep[d];
            e.pkts += 1;
            e.ip_bytes += s.ip_len as u64;
            e.payload += s.l4.payload as u64;
        }
        if s.fragments > 0 && self.opts.fragment {
            f.anom.fragments = f.anom.fragments.saturating_add(s.fragments);
        }
        if s.csum_bad {
            self.stats.bad_checksum += 1;
            f.scaled(d, 2, b'C');
        }
        self.stats.in_flows += 1;
        self.open_pkts += 1;
        if f.is_tcp() {
            if !is_new && self.opts.long_delay_us > 0 && gap >= self.opts.long_delay_us {
                f.anom.long_delays += 1;
            }
            let (segs, drops) =
                tcp_packet(f, d, s, &self.opts, self.segments, self.opts.segment_limit);
            self.segments = segs;
            self.stats.segments_dropped += drops;
            self.stats.segments_max = self.stats.segments_max.max(segs);
        } else if f.proto == 17 {
            let mask = HIST_DATA;
            f.check_history(d, mask, b'D');
        }
        let state = f.conn_state();
        if is_new {
            f.reported = state;
            self.emit(i, EventKind::Open, sink);
        } else if state != f.reported {
            f.reported = state;
            self.emit(i, EventKind::Update, sink);
        }
    }

    fn create(&mut self, key: Key, hash: u64, swapped: bool, s: &Seen) -> u32 {
        let id = self.next_id;
        self.next_id += 1;
        // The originator sent the first packet, except that a SYN-ACK seen first was sent by
        // the responder (the SYN was missed): then the roles flip, marked `^` as Zeek does.
        let flip = s.proto == 6 && s.l4.flags & (SYN | ACK) == SYN | ACK;
        let orig = if flip {
            FlowTuple::new(s.dst, s.src, s.l4.dport, s.l4.sport)
        } else {
            FlowTuple::new(s.src, s.dst, s.l4.sport, s.l4.dport)
        };
        let mut hist = History::new();
        if flip {
            hist.push(b'^');
        }
        let f = Flow {
            id,
            key,
            orig_swapped: swapped != flip,
            orig,
            proto: s.proto,
            first_us: s.ts_us,
            last_us: s.ts_us,
            ep: [Endpoint::new(), Endpoint::new()],
            hist,
            reported: ConnState::Other,
            anom: Anomalies::default(),
            fin_seen: false,
            partial: false,
        };
        let i = match self.free.pop() {
            Some(i) => {
                self.slab[i as usize] = Some(f);
                self.last[i as usize] = s.ts_us;
                i
            }
            None => {
                self.slab.push(Some(f));
                self.last.push(s.ts_us);
                (self.slab.len() - 1) as u32
            }
        };
        self.table.insert(hash, i);
        self.stats.flows_total += 1;
        self.stats.flows_open_max = self.stats.flows_open_max.max(self.table.len() as u64);
        i
    }

    /// Fills the reusable event with flow `i`'s state and hands it to `sink` (no allocation
    /// once the event's strings have grown to size).
    fn emit(&mut self, i: u32, kind: EventKind, sink: &mut dyn EventSink) {
        let f = self.slab[i as usize].as_mut().expect("live flow");
        let dur_us = f.last_us - f.first_us;
        if self.opts.long_connect_us > 0 && dur_us >= self.opts.long_connect_us {
            f.anom.long_connect = true;
        }
        let ts = match kind {
            EventKind::Open => f.first_us,
            _ => f.last_us,
        };
        let ev = &mut self.scratch;
        ev.kind = kind;
        ev.ts = to_time(ts);
        ev.conn_id = f.id;
        ev.proto = f.proto;
        ev.orig = f.orig;
        ev.state = f.reported;
        // An open has no duration yet (the log shows `-`); updates and closes have one.
        ev.duration = (kind != EventKind::Open).then_some(dur_us as f64 / 1e6);
        ev.counters = Some(f.counters());
        ev.anomalies = f.anom;
        ev.zeek_state = shared::event::ZeekState::parse(f.zeek_state());
        let h = f.hist.as_str();
        if !h.is_empty() || f.proto == 6 || f.proto == 17 {
            let s = ev.history.get_or_insert_with(String::new);
            s.clear();
            s.push_str(h);
        } else {
            ev.history = None;
        }
        let u = ev.uid.get_or_insert_with(String::new);
        make_uid(u, f.id, f.first_us, &f.key);
        sink.event(ev);
    }

    /// Reports flow `i` closed and removes it.
    fn close(&mut self, i: u32, sink: &mut dyn EventSink) {
        {
            let f = self.slab[i as usize].as_mut().expect("live flow");
            f.reported = f.conn_state();
        }
        self.emit(i, EventKind::Close, sink);
        let f = self.slab[i as usize].take().expect("live flow");
        self.last[i as usize] = i64::MAX;
        for (n, (_, v)) in f.anom.entries().iter().enumerate() {
            if *v > 0 {
                self.stats.with_anomaly[n] += 1;
            }
        }
        self.segments -= (f.ep[0].segs.len() + f.ep[1].segs.len()) as u64;
        self.open_pkts -= f.ep[0].pkts + f.ep[1].pkts;
        self.table.remove(f.key.hash64(), i);
        self.free.push(i);
    }

    /// Closes flows whose time is up (inactivity timeouts, linger after close).
    pub fn sweep(&mut self, sink: &mut dyn EventSink) {
        let now = self.now_us;
        let mut exp = std::mem::take(&mut self.expired);
        exp.clear();
        // No timeout is shorter than this: a flow idle for less is not looked at.
        let shortest = LINGER_US
            .min(self.opts.tcp_timeout_us)
            .min(self.opts.udp_timeout_us);
        for (i, &last) in self.last.iter().enumerate() {
            if last == i64::MAX || now.saturating_sub(last) <= shortest {
                continue;
            }
            let Some(f) = &self.slab[i] else { continue };
            debug_assert_eq!(f.last_us, last);
            let idle = now - f.last_us;
            let limit = if f.finished() {
                LINGER_US
            } else if f.is_tcp() {
                self.opts.tcp_timeout_us
            } else {
                self.opts.udp_timeout_us
            };
            if idle > limit {
                exp.push((f.id, i as u32));
            }
        }
        exp.sort_unstable();
        for &(_, i) in &exp {
            let lingering = self.slab[i as usize].as_ref().is_some_and(|f| f.finished());
            if !lingering {
                self.stats.timed_out += 1;
            }
            self.close(i, sink);
        }
        self.expired = exp;
    }

    /// Closes every open flow (end of capture or stop), in the order they started.
    pub fn finish(&mut self, sink: &mut dyn EventSink) {
        let mut all: Vec<(u64, u32)> = self
            .slab
            .iter()
            .enumerate()
            .filter_map(|(i, f)| f.as_ref().map(|f| (f.id, i as u32)))
            .collect();
        all.sort_unstable();
        for (_, i) in all {
            self.close(i, sink);
        }
    }
}

/// Follows one TCP segment (Zeek's TCPSessionAdapter::Process, without reassembly). Returns the
/// new number of remembered segments and how many could not be remembered.
fn tcp_packet(
    f: &mut Flow,
    d: usize,
    s: &Seen,
    opts: &Options,
    mut segments: u64,
    seg_limit: usize,
) -> (u64, u64) {
    let fl = s.l4.flags;
    let (syn, fin, rst, ack) = (fl & SYN != 0, fl & FIN != 0, fl & RST != 0, fl & ACK != 0);
    let len = s.l4.payload as i64;
    let base = s.l4.seq;
    let mut seg_len = len + syn as i64 + fin as i64;
    if rst {
        seg_len -= len;
    }
    let mut seg_drops = 0;

    // init_endpoint
    {
        let e = &mut f.ep[d];
        match e.state {
            Ep::Inactive => {
                if syn {
                    let st = base as i64 + SEQ_BASE;
                    e.init_seq(st, st + seg_len);
                } else {
                    let st = base as i64 + SEQ_BASE - 1;
                    e.init_seq(st, st + 1);
                }
            }
            Ep::SynSent | Ep::SynAckSent => {
                if syn && base != e.start as u32 {
                    let st = Endpoint::full(e.last, base);
                    e.init_seq(st, st + seg_len);
                }
            }
            Ep::Established | Ep::Partial => {
                if syn {
                    let st = Endpoint::full(e.last, base);
                    e.init_seq(st, st + seg_len);
                }
            }
            Ep::Reset => {
                if syn && e.prev == Ep::Inactive {
                    let st = Endpoint::full(e.last, base);
                    e.init_seq(st, st + seg_len);
                }
            }
            Ep::Closed => {}
        }
    }
    let rel_seq = Endpoint::full(f.ep[d].last, base) - f.ep[d].start;

    // update_history
    let bits = syn as u8 + fin as u8 + rst as u8;
    if bits > 1 {
        if fin && rst {
            f.check_history(d, HIST_FIN_RST, b'I');
        } else {
            f.check_history(d, HIST_MULTI, b'Q');
        }
    } else if bits == 1 {
        if syn {
            let code = if ack { b'H' } else { b'S' };
            if f.check_history(d, HIST_SYN, code) && rel_seq != f.ep[d].last_syn {
                f.hist.push(Flow::letter(d, code));
            }
            f.ep[d].last_syn = rel_seq;
        }
        if fin {
            if f.check_history(d, HIST_FIN, b'F') && rel_seq + len != f.ep[d].last_fin {
                f.hist.push(Flow::letter(d, b'F'));
            }
            f.ep[d].last_fin = rel_seq + len;
        }
        if rst {
            if f.check_history(d, HIST_RST, b'R') && rel_seq != f.ep[d].last_rst {
                f.hist.push(Flow::letter(d, b'R'));
            }
            f.ep[d].last_rst = rel_seq;
        }
    } else if len > 0 {
        f.check_history(d, HIST_DATA, b'D');
    } else if ack {
        f.check_history(d, HIST_ACK, b'A');
    }

    // update_window: zero windows, unless they come with/after a RST or after the peer's FIN.
    if s.l4.win == 0 && !rst && f.ep[1 - d].state != Ep::Closed && f.ep[d].state != Ep::Reset {
        f.scaled(d, 1, b'W');
    }

    // Anomalies: SYN / SYN-ACK retransmissions (same sequence number again), RSTs.
    if syn && !rst && !fin {
        let e = &mut f.ep[d];
        let slot = if ack {
            &mut e.synack_seq
        } else {
            &mut e.syn_seq
        };
        if *slot == Some(base) && opts.syn {
            f.anom.syn_retransmits += 1;
        }
        *slot = Some(base);
    }
    if rst && (opts.rst == 2 || (opts.rst == 1 && !f.fin_seen)) {
        f.anom.resets += 1;
    }
    if fin {
        f.ep[d].fin_cnt += 1;
        f.ep[d].fin_rel = rel_seq + seg_len;
        f.fin_seen = true;
    }

    // Acknowledgements: start the peer's numbering from its first ACK seen, else advance it;
    // segments the peer acknowledged no longer need remembering.
    if ack {
        let (e, p) = split(&mut f.ep, d);
        let _ = e;
        if p.state == Ep::Inactive {
            let st = s.l4.ack as i64 + SEQ_BASE - 1;
            p.init_seq(st, st);
        } else if !rst {
            let delta = s.l4.ack.wrapping_sub(p.ack as u32) as i32;
            if !(s.l4.ack == 0 && delta > TOO_LARGE_SEQ_DELTA) && delta > 0 {
                p.ack += delta as i64;
            }
        }
        while let Some(front) = p.segs.front() {
            if (s.l4.ack.wrapping_sub(front.end) as i32) >= 0 {
                p.segs.pop_front();
                segments -= 1;
            } else {
                break;
            }
        }
    }

    // update_last_seq, with retransmission detection.
    let past = base.wrapping_add(seg_len as u32);
    let e = &mut f.ep[d];
    let delta_last = past.wrapping_sub(e.last as u32) as i32;
    let mut rxmit = false;
    if (syn || rst) && !(-TOO_LARGE_SEQ_DELTA..=TOO_LARGE_SEQ_DELTA).contains(&delta_last) {
    } else if fin && e.last == e.start + 1 {
        e.last += delta_last as i64;
    } else if e.state == Ep::Reset {
    } else if delta_last > 0 {
        e.last += delta_last as i64;
        if len > 0 && opts.retransmit_us > 0 {
            if (segments as usize) < seg_limit {
                e.segs.push_back(Seg {
                    seq: base,
                    end: base.wrapping_add(len as u32),
                    ts_us: s.ts_us,
                });
                segments += 1;
            } else {
                seg_drops += 1;
            }
        }
    } else if len > 0 {
        rxmit = true;
        if opts.retransmit_us > 0 {
            // The sender may have re-segmented: the original is the remembered segment
            // holding the first retransmitted byte.
            let within = |g: &&Seg| base.wrapping_sub(g.seq) < g.end.wrapping_sub(g.seq);
            if let Some(orig) = e.segs.iter().find(within) {
                if s.ts_us - orig.ts_us >= opts.retransmit_us {
                    f.anom.retransmits += 1;
                }
            }
        }
    }
    if rxmit {
        f.scaled(d, 0, b'T');
    }

    update_state(f, d, fl, len);
    // As in Zeek, the ACK is checked for a content gap only after the state update, so that
    // an ACK in a RST (or after one) is seen in an unclean state and not flagged; then this
    // packet's own data reaches the reassembly point.
    if ack {
        content_gap(f, d, s.l4.ack);
    }
    if len > 0 && !rst {
        data_seen(&mut f.ep[d], rel_seq + syn as i64, len);
    }
    (segments, seg_drops)
}

/// Zeek's TCP_Reassembler::AckReceived / Undelivered / Gap for the data of `d`'s peer: an
/// acknowledgement beyond the data seen without a hole means the peer sent data this capture
/// does not hold, a content gap (`G` originator, `g` responder, again at 10, 100, ... gaps).
/// Like Zeek it is only recorded while both sides are established or closed from established,
/// and an ACK of at most 2 in a partial connection is not one (its numbering is made up).
#[inline]
fn content_gap(f: &mut Flow, d: usize, ack: u32) {
    let pd = 1 - d;
    let p = &mut f.ep[pd];
    if p.state == Ep::Inactive {
        return;
    }
    let mut up_to = Endpoint::full(p.ack, ack) - p.start;
    // The FIN takes one sequence number but carries no data: acknowledging it is no gap.
    if p.fin_cnt > 0 && up_to >= p.fin_rel {
        up_to = p.fin_rel - 1;
    }
    if up_to <= p.reassem || (up_to <= 2 && f.partial) {
        return;
    }
    // Data seen above the hole that the ACK now passes is delivered with it (Zeek's
    // BlockInserted after the gap).
    p.reassem = up_to;
    let (lo, hi) = p.above;
    if lo < hi && lo <= up_to {
        p.reassem = p.reassem.max(hi);
        p.above = (0, 0);
    }
    let clean = |e: &Endpoint| {
        e.state == Ep::Established || (e.state == Ep::Closed && e.prev == Ep::Established)
    };
    if clean(&f.ep[0]) && clean(&f.ep[1]) {
        f.scaled(pd, 3, b'G');
    }
}

/// Zeek's TCP_Reassembler::DataSent for `len` bytes at relative sequence `seq`: in-order data
/// advances the reassembly point (taking along data seen above it), data past a hole is kept
/// as a range.
#[inline]
fn data_seen(e: &mut Endpoint, seq: i64, len: i64) {
    let end = seq + len;
    if end <= e.reassem {
        return;
    }
    let (lo, hi) = e.above;
    if seq <= e.reassem {
        e.reassem = end;
        if lo < hi && lo <= end {
            e.reassem = end.max(hi);
            e.above = (0, 0);
        }
    } else if lo < hi {
        e.above = (lo.min(seq), hi.max(end));
    } else {
        e.above = (seq, end);
    }
}

fn split(ep: &mut [Endpoint; 2], d: usize) -> (&mut Endpoint, &mut Endpoint) {
    let (a, b) = ep.split_at_mut(1);
    if d == 0 {
        (&mut a[0], &mut b[0])
    } else {
        (&mut b[0], &mut a[0])
    }
}

/// Zeek's UpdateStateMachine for endpoint `d`.
fn update_state(f: &mut Flow, d: usize, fl: u8, len: i64) {
    let (syn, fin, rst, ack) = (fl & SYN != 0, fl & FIN != 0, fl & RST != 0, fl & ACK != 0);
    let is_orig = d == 0;
    let orig_state = f.ep[0].state;
    let (e, p) = split(&mut f.ep, d);
    match e.state {
        Ep::Inactive => {
            if syn {
                if is_orig {
                    e.set(if ack { Ep::SynAckSent } else { Ep::SynSent });
                } else {
                    if !ack && p.state == Ep::SynAckSent {
                        // SYN/SYN-ACK reversal: Zeek flips roles; we keep the roles and
                        // treat the connection as established.
                        p.set(Ep::Established);
                    }
                    if p.state == Ep::SynSent {
                        p.set(Ep::Established);
                    }
                    e.set(Ep::Established);
                }
            }
            if fin {
                e.set(Ep::Closed);
            }
            if rst {
                e.set(Ep::Reset);
            }
            if e.state == Ep::Inactive {
                if !is_orig && len == 0 && orig_state == Ep::SynSent {
                    // An ACK of the SYN before the SYN-ACK: not a partial connection.
                } else if ack && p.state == Ep::Established {
                    e.set(Ep::Established);
                } else {
                    e.set(Ep::Partial);
                    f.partial = true;
                }
            }
        }
        Ep::SynSent | Ep::SynAckSent => {
            if fin {
                e.set(Ep::Closed);
            }
            if rst {
                e.set(Ep::Reset);
            }
        }
        Ep::Established | Ep::Partial => {
            if syn && e.state == Ep::Partial && p.state == Ep::Inactive && !ack {
                e.set(Ep::SynSent);
            }
            if fin && !rst {
                e.set(Ep::Closed);
                if p.state == Ep::Reset && p.prev == Ep::Closed {
                    // FIN then RST from the peer was a normal termination.
                    p.set(Ep::Closed);
                }
            }
            if rst {
                e.set(Ep::Reset);
            }
        }
        Ep::Closed => {
            if rst && p.state != Ep::Closed {
                e.set(Ep::Reset);
            }
        }
        Ep::Reset => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rstos0_pattern() {
        assert!(rstos0_history("SR"));
        assert!(rstos0_history("^SsR"));
        assert!(!rstos0_history("SAR"));
        assert!(!rstos0_history("hR"));
    }

    #[test]
    fn sequence_space_wraps() {
        let r = SEQ_BASE + u32::MAX as i64 - 10;
        assert_eq!(Endpoint::full(r, 5), r + 16);
        assert_eq!(Endpoint::full(r, u32::MAX - 20), r - 10);
    }
}

#[cfg(test)]
mod segs_tests {
    use super::*;

    #[test]
    fn inline_then_spill_keeps_order() {
        let mut q = Segs::new();
        for i in 0..10u32 {
            q.push_back(Seg {
                seq: i,
                end: i + 1,
                ts_us: 0,
            });
        }
        assert_eq!(q.len(), 10);
        let all: Vec<u32> = q.iter().map(|g| g.seq).collect();
        assert_eq!(all, (0..10).collect::<Vec<_>>());
        for want in 0..10u32 {
            assert_eq!(q.front().map(|g| g.seq), Some(want));
            q.pop_front();
        }
        assert_eq!(q.len(), 0);
        assert!(q.front().is_none());
        q.push_back(Seg::default());
        assert_eq!(q.len(), 1);
    }
}
