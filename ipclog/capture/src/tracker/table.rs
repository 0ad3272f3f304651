//! The flow table: flows live in a slab (reused slots, no allocation per flow once the table
//! has grown), found through [`FlowIndex`] by their key's hash. A packet finds its flow or
//! opens one (or is dropped at `--session-limit`), is accounted to it, and an event is sent
//! when the flow opens or its reported state changes. Each flow's timers (Zeek's: inactivity,
//! attempt, close/reset delay, partial close) have one entry in a timer queue ordered by
//! time; before each packet, the entries whose time has come are run, so a connection ends
//! exactly where Zeek's would, and the work is per timer, not per open flow. At the end of
//! input every open flow is closed, in the order they started.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::net::IpAddr;

use chrono::DateTime;
use shared::event::{Anomalies, ConnEvent, EventKind, FlowTuple, Source};
use shared::sink::EventSink;

use super::flow::{Ended, Flow, HttpFields, HOT_LINES, NEVER};
use super::history::{Once, Repeat};
use super::index::{prefetch, FlowIndex};
use super::key::{Hint, Key};
use super::{tcp, Options, Seen, Stats, UDP};
use crate::wire::{Drop, SYN};

/// How often (packet time) the reader expires fragments and a live capture's idle wall clock
/// runs the timers.
const SWEEP_EVERY_US: i64 = 1_000_000;

/// Packets in one direction (of all connections) before a majority of bad checksums in it
/// is taken for checksum offloading and said.
const OFFLOAD_MIN_PACKETS: u64 = 10;

/// The flow table and the run's counters.
pub struct Tracker {
    opts: Options,
    table: FlowIndex,
    slab: Vec<Option<Flow>>,
    /// The timer queue: (time, flow id, slab slot), earliest first; at most one live entry
    /// per flow (the one at its `queued_at`). An inactivity entry comes due once per
    /// timeout and is put back at the flow's next timer unless it ran out: packets never
    /// touch the queue, only new timers (a first SYN, a close) do.
    timers: BinaryHeap<Reverse<(i64, u64, u32)>>,
    /// The earliest entry's time (NEVER when empty), checked before every packet.
    next_due: i64,
    free: Vec<u32>,
    next_id: u64,
    segments: u64,
    pub stats: Stats,
    now_us: i64,
    next_sweep_us: i64,
    /// The checksum-offloading warning was given.
    offload_said: bool,
    /// Packets counted in flows still open.
    open_pkts: u64,
    /// The event handed to sinks, reused so that emitting allocates nothing.
    scratch: ConnEvent,
    /// The flow the latest packet was accounted to (`None`: it was dropped).
    latest: Option<u32>,
    /// The tunnel uid a flow created now records as its parent.
    parent: Option<Box<str>>,
}

impl Tracker {
    pub fn new(opts: Options) -> Tracker {
        Tracker {
            opts,
            table: FlowIndex::new(),
            slab: Vec::new(),
            timers: BinaryHeap::new(),
            next_due: NEVER,
            free: Vec::new(),
            next_id: 1,
            segments: 0,
            stats: Stats::default(),
            now_us: i64::MIN,
            next_sweep_us: i64::MIN,
            offload_said: false,
            open_pkts: 0,
            latest: None,
            parent: None,
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

    pub fn options(&self) -> &Options {
        &self.opts
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

    /// Advances packet time; returns true once a second (packet time), when the reader expires
    /// fragments and runs the timers without a packet (a live capture going quiet). Timers due
    /// before a packet run anyway as it is accounted.
    #[inline]
    pub fn advance(&mut self, ts_us: i64) -> bool {
        if ts_us > self.now_us {
            self.now_us = ts_us;
        }
        if self.now_us >= self.next_sweep_us {
            self.next_sweep_us = self.now_us + SWEEP_EVERY_US;
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
                for line in 0..HOT_LINES {
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
        // Zeek runs the timers due before the packet that moves time past them.
        if self.next_due <= self.now_us {
            self.run_timers(sink);
        }
        let slab = &self.slab;
        let mut idx = self.table.get(hash, |i| {
            slab[i as usize].as_ref().is_some_and(|f| f.key == key)
        });
        // As in Zeek, reuse is decided before the checksum is looked at.
        if let Some(i) = idx {
            let f = self.slab[i as usize].as_ref().expect("live flow");
            if s.l4.flags & SYN != 0 && f.is_tcp() && f.is_reuse(s.l4.flags, s.l4.seq) {
                self.close(i, sink);
                idx = None;
            }
        }
        let is_new = idx.is_none();
        let i = match idx {
            Some(i) => i,
            None => {
                if self.table.len() >= self.opts.session_limit {
                    self.drop(Drop::SessionLimit, 1);
                    self.latest = None;
                    return;
                }
                self.create(key, hash, swapped, s)
            }
        };
        self.latest = Some(i);
        let f = self.slab[i as usize].as_mut().expect("live flow");
        let d = if swapped == f.orig_swapped { 0 } else { 1 };
        self.stats.dir_pkts[d] += 1;
        if s.csum_bad && self.opts.verify_checksums {
            // Zeek: a packet with a bad checksum only adds C/c to the history; it is not
            // counted and moves neither the state nor the connection's time.
            self.stats.dir_bad[d] += 1;
            self.stats.drops[Drop::BadChecksum as usize] += 1;
            f.repeat(d, Repeat::BadChecksum);
            if is_new {
                f.arm_expire();
                self.emit(i, EventKind::Open, sink);
                let f = self.slab[i as usize].as_ref().expect("live flow");
                let t = f.next_timer(&self.opts);
                self.schedule(i, t);
            }
            self.check_offload(d, s.ts_us, sink);
            return;
        }
        let gap = s.ts_us - f.last_us;
        // Zeek stops a TCP connection's clock once both sides closed: a last ACK after the
        // second FIN does not lengthen it.
        if s.ts_us > f.last_us && !(f.ep[0].did_close && f.ep[1].did_close) {
            f.last_us = s.ts_us;
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
        self.stats.in_flows += 1;
        self.open_pkts += 1;
        let mut timers = is_new;
        if f.is_tcp() {
            if self.opts.long_delay_us > 0
                && gap >= self.opts.long_delay_us
                && f.ep[0].pkts + f.ep[1].pkts > 1
            {
                f.anom.long_delays += 1;
            }
            let (segs, drops, armed) = tcp::segment(f, d, s, &self.opts, self.segments);
            self.segments = segs;
            self.stats.segments_dropped += drops;
            self.stats.segments_max = self.stats.segments_max.max(segs);
            timers |= armed;
        } else if f.proto == UDP {
            f.once(d, Once::Data, b'D');
        }
        if timers {
            let t = f.next_timer(&self.opts);
            self.schedule(i, t);
        }
        let f = self.slab[i as usize].as_mut().expect("live flow");
        let state = f.conn_state();
        if is_new {
            f.reported = state;
            self.emit(i, EventKind::Open, sink);
        } else if state != f.reported {
            f.reported = state;
            self.emit(i, EventKind::Update, sink);
        }
    }

    /// Puts flow `i`'s entry in the timer queue at `t`, unless it has one as early.
    #[inline]
    fn schedule(&mut self, i: u32, t: i64) {
        let f = self.slab[i as usize].as_mut().expect("live flow");
        if t < f.queued_at {
            f.queued_at = t;
            self.timers.push(Reverse((t, f.id, i)));
            self.next_due = self.next_due.min(t);
            // An earlier timer (a close) leaves the flow's later entry behind, stale until its
            // time: without this, the queue would hold every connection closed in the last
            // --tcp-timeout, not just the open ones.
            if self.timers.len() > 2 * self.table.len() + 4096 {
                self.compact_timers();
            }
        }
    }

    /// Drops the stale entries of the timer queue (amortized: the queue has at least as many
    /// entries again as open flows before this runs).
    #[cold]
    fn compact_timers(&mut self) {
        let slab = &self.slab;
        let mut v = std::mem::take(&mut self.timers).into_vec();
        v.retain(|&Reverse((t, id, i))| {
            slab[i as usize]
                .as_ref()
                .is_some_and(|f| f.id == id && f.queued_at == t)
        });
        self.timers = BinaryHeap::from(v);
    }

    /// Runs every timer due by now, in time order (ties in the order connections started):
    /// a connection whose timer ends it is reported closed and removed; the others go back
    /// in the queue at their next timer.
    fn run_timers(&mut self, sink: &mut dyn EventSink) {
        let now = self.now_us;
        while let Some(&Reverse((t, id, i))) = self.timers.peek() {
            if t > now {
                break;
            }
            self.timers.pop();
            let Some(f) = self.slab[i as usize].as_mut() else {
                continue;
            };
            if f.id != id || f.queued_at != t {
                continue; // stale: the flow was replaced or has an earlier entry
            }
            f.queued_at = NEVER;
            match f.run_timers(now, &self.opts) {
                Some(why) => {
                    if why == Ended::Inactive {
                        self.stats.timed_out += 1;
                    } else if why == Ended::Attempt {
                        self.stats.attempts += 1;
                    }
                    self.close(i, sink);
                }
                None => {
                    let next = f.next_timer(&self.opts);
                    if next != NEVER {
                        self.schedule(i, next);
                    }
                }
            }
        }
        self.next_due = self.timers.peek().map_or(NEVER, |r| r.0 .0);
    }

    /// Says once (stderr and a `P` line) when most packets in direction `d` had bad
    /// checksums: typical of a capture on a host whose NIC fills in checksums (offloading),
    /// where verifying would throw away all its own packets.
    #[cold]
    fn check_offload(&mut self, d: usize, ts_us: i64, sink: &mut dyn EventSink) {
        let (bad, all) = (self.stats.dir_bad[d], self.stats.dir_pkts[d]);
        if self.offload_said || all < OFFLOAD_MIN_PACKETS || bad * 2 <= all {
            return;
        }
        self.offload_said = true;
        let msg = offload_message(d, bad, all);
        eprintln!("ipclog: {msg}");
        sink.program(
            DateTime::from_timestamp_micros(ts_us).unwrap_or_default(),
            &msg,
        );
    }

    /// The uid of the flow the latest packet was accounted to, `None` when it was dropped.
    pub fn latest_uid(&self) -> Option<String> {
        let f = self.slab.get(self.latest? as usize)?.as_ref()?;
        Some(f.uid())
    }

    /// The flow the latest packet `s` was accounted to, as the session view and `-w` see
    /// it; `None` when the packet was dropped.
    pub fn peek(&self, s: &Seen) -> Option<Peek<'_>> {
        let f = self.slab.get(self.latest? as usize)?.as_ref()?;
        let (_, swapped) = Key::new(s);
        Some(Peek {
            id: f.id,
            dir: if swapped == f.orig_swapped { 0 } else { 1 },
            tcp: f.is_tcp(),
            anom: f.anom,
            rxmit_gap_us: f.rxmit_gap_us,
            orig: &f.orig,
            flow: f,
        })
    }

    /// Records the first HTTP exchange of the flow the latest packet went to (`--dpi http`).
    pub fn set_latest_http(&mut self, h: HttpFields) {
        if let Some(f) = self
            .latest
            .and_then(|i| self.slab.get_mut(i as usize))
            .and_then(Option::as_mut)
        {
            f.http = Some(Box::new(h));
        }
    }

    /// Sets the tunnel uid that flows created from now on record as their parent.
    pub fn set_parent(&mut self, uid: Option<&str>) {
        self.parent = uid.map(Box::from);
    }

    /// Adds `uid` to the tunnel parents of the flow the latest packet was accounted to: as
    /// Zeek's set, it grows when a connection is seen in another tunnel (VXLAN's two
    /// directions are two UDP flows).
    pub fn add_parent(&mut self, uid: &str) {
        if let Some(f) = self
            .latest
            .and_then(|i| self.slab.get_mut(i as usize))
            .and_then(Option::as_mut)
        {
            f.add_parent(uid);
        }
    }

    fn create(&mut self, key: Key, hash: u64, swapped: bool, s: &Seen) -> u32 {
        let mut f = Flow::new(self.next_id, key, swapped, s);
        f.parent.clone_from(&self.parent);
        self.next_id += 1;
        let i = match self.free.pop() {
            Some(i) => {
                self.slab[i as usize] = Some(f);
                i
            }
            None => {
                self.slab.push(Some(f));
                (self.slab.len() - 1) as u32
            }
        };
        self.table.insert(hash, i);
        self.stats.flows_total += 1;
        self.stats.flows_open_max = self.stats.flows_open_max.max(self.table.len() as u64);
        i
    }

    /// Sends an event of `kind` about flow `i` (the event is reused: no allocation).
    fn emit(&mut self, i: u32, kind: EventKind, sink: &mut dyn EventSink) {
        let f = self.slab[i as usize].as_mut().expect("live flow");
        f.describe(kind, self.opts.long_connect_us, &mut self.scratch);
        sink.event(&self.scratch);
    }

    /// Reports flow `i` closed and removes it.
    fn close(&mut self, i: u32, sink: &mut dyn EventSink) {
        {
            let f = self.slab[i as usize].as_mut().expect("live flow");
            f.reported = f.conn_state();
        }
        self.emit(i, EventKind::Close, sink);
        let f = self.slab[i as usize].take().expect("live flow");
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

    /// Runs the timers due by the latest packet time (or a live capture's idle clock).
    pub fn sweep(&mut self, sink: &mut dyn EventSink) {
        if self.next_due <= self.now_us {
            self.run_timers(sink);
        }
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
        // Packets with a bad IPv4 header checksum were dropped before any connection (no
        // direction to blame): most of the capture so is said at the end.
        let bad_ip = self.stats.drops[Drop::BadIpChecksum as usize];
        let seen = self.stats.in_flows + self.stats.drops.iter().sum::<u64>();
        if !self.offload_said && bad_ip >= OFFLOAD_MIN_PACKETS && bad_ip * 2 > seen {
            self.offload_said = true;
            let msg = format!(
                "{bad_ip} of {seen} packets have bad IPv4 header checksums and were dropped; \
                 use --checksums ignore (-C) to count them"
            );
            eprintln!("ipclog: {msg}");
            // No packet reached the tracker: no packet time to give.
            let ts = if self.now_us == i64::MIN {
                chrono::Utc::now()
            } else {
                DateTime::from_timestamp_micros(self.now_us).unwrap_or_default()
            };
            sink.program(ts, &msg);
        }
    }
}

/// The flow a packet went to (see [`Tracker::peek`]).
pub struct Peek<'a> {
    /// The connection's number in the run (the event's `conn_id`: the session id).
    pub id: u64,
    /// 0: the packet came from the originator.
    pub dir: usize,
    pub tcp: bool,
    pub anom: Anomalies,
    pub rxmit_gap_us: i64,
    pub orig: &'a FlowTuple,
    flow: &'a Flow,
}

impl Peek<'_> {
    /// The connection's uid (allocates: once per session).
    pub fn uid(&self) -> String {
        self.flow.uid()
    }
}

/// The checksum-offloading warning for direction `d` (0: from originators), `bad` of `all`
/// packets.
pub(super) fn offload_message(d: usize, bad: u64, all: u64) -> String {
    let who = if d == 0 { "originators" } else { "responders" };
    format!(
        "{bad} of {all} packets from {who} have bad checksums and are not counted \
         (checksum offloading on the capturing host?); use --checksums ignore (-C) to count them"
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tracker::{test_seen, TCP};
    use crate::wire::{ACK, FIN};
    use shared::sink::VecSink;

    const S: i64 = 1_000_000;

    /// A TCP segment from the client (10.0.0.1:1000) or the server, at `t` us.
    fn tcp(t: i64, from_client: bool, flags: u8, seq: u32, ack: u32) -> Seen {
        let mut s = if from_client {
            test_seen("10.0.0.1", "10.0.0.2", 1000, 80, TCP)
        } else {
            test_seen("10.0.0.2", "10.0.0.1", 80, 1000, TCP)
        };
        s.ts_us = t;
        s.l4.flags = flags;
        s.l4.seq = seq;
        s.l4.ack = ack;
        s.l4.win = 1000;
        s
    }

    fn udp(t: i64) -> Seen {
        let mut s = test_seen("10.0.0.1", "10.0.0.2", 1000, 53, UDP);
        s.ts_us = t;
        s
    }

    /// Runs `packets` through a tracker with `opts` as the reader does (advance, sweep once
    /// a second, packet) and returns the (history, packets) of each close, in order.
    fn run(opts: Options, packets: &[Seen]) -> (Vec<(String, u64)>, Tracker) {
        let mut t = Tracker::new(opts);
        let mut sink = VecSink::default();
        for p in packets {
            if t.advance(p.ts_us) {
                t.sweep(&mut sink);
            }
            t.packet(p, &mut sink);
        }
        t.finish(&mut sink);
        let closes = sink
            .events
            .iter()
            .filter(|e| e.kind == EventKind::Close)
            .map(|e| {
                let c = e.counters.unwrap();
                (e.history.clone().unwrap(), c.orig_pkts + c.resp_pkts)
            })
            .collect();
        (closes, t)
    }

    fn hist(v: &[(String, u64)]) -> Vec<&str> {
        v.iter().map(|(h, _)| h.as_str()).collect()
    }

    #[test]
    fn inactivity_ends_a_flow_at_last_plus_timeout_exactly() {
        let opts = Options::default();
        // 60 s after the last packet: already expired, a new flow.
        let (c, t) = run(opts.clone(), &[udp(0), udp(60 * S)]);
        assert_eq!(c.len(), 2);
        assert_eq!(t.stats.timed_out, 1);
        // 1 us earlier: the same flow.
        let (c, _) = run(opts.clone(), &[udp(0), udp(60 * S - 1)]);
        assert_eq!(c, [("D".to_string(), 2)]);
        // 0 = never.
        let never = Options {
            udp_timeout_us: 0,
            ..opts
        };
        let (c, _) = run(never, &[udp(0), udp(3600 * S)]);
        assert_eq!(c.len(), 1);
    }

    #[test]
    fn an_unanswered_syn_is_ended_by_the_attempt_timer() {
        let syn = |t| tcp(t, true, SYN, 100, 0);
        let data = |t| tcp(t, true, ACK, 101, 0);
        // The SYN repeated 5 s later: the attempt was over, a new connection with its SYN.
        let (c, t) = run(Options::default(), &[syn(0), syn(5 * S)]);
        assert_eq!(hist(&c), ["S", "S"]);
        assert_eq!(t.stats.attempts, 1, "the second ends with the input");
        // Just before: one connection, the SYN retransmitted.
        let (c, _) = run(Options::default(), &[syn(0), syn(5 * S - 1)]);
        assert_eq!(c, [("S".to_string(), 2)]);
        // Data from the client after the attempt ended: a connection without S.
        let (c, _) = run(Options::default(), &[syn(0), data(S), data(6 * S)]);
        assert_eq!(hist(&c), ["SA", "A"]);
        // --tcp-attempt-delay 0: no attempt timer.
        let off = Options {
            attempt_delay_us: 0,
            ..Options::default()
        };
        let (c, _) = run(off, &[syn(0), data(S), data(60 * S)]);
        assert_eq!(c, [("SA".to_string(), 3)]);
    }

    /// A handshake at 0, then the client's FIN at 1 s and the server's at `server_fin`.
    fn closed(server_fin: i64) -> Vec<Seen> {
        vec![
            tcp(0, true, SYN, 100, 0),
            tcp(1000, false, SYN | ACK, 500, 101),
            tcp(2000, true, ACK, 101, 501),
            tcp(S, true, FIN | ACK, 101, 501),
            tcp(server_fin, false, FIN | ACK, 501, 102),
        ]
    }

    #[test]
    fn a_closed_connection_is_forgotten_close_delay_after_its_second_fin() {
        let mut p = closed(2 * S);
        p.push(tcp(7 * S - 1, true, ACK, 102, 502));
        let (c, _) = run(Options::default(), &p);
        assert_eq!(c, [("ShAFf".to_string(), 6)]);
        let mut p = closed(2 * S);
        p.push(tcp(7 * S, true, ACK, 102, 502));
        let (c, _) = run(Options::default(), &p);
        assert_eq!(hist(&c), ["ShAFf", "A"]);
        // --tcp-close-delay 0.5
        let mut p = closed(2 * S);
        p.push(tcp(2 * S + S / 2, true, ACK, 102, 502));
        let short = Options {
            close_delay_us: S / 2,
            ..Options::default()
        };
        let (c, _) = run(short, &p);
        assert_eq!(c.len(), 2);
    }

    #[test]
    fn a_fin_as_first_packet_of_a_side_gets_the_partial_close_delay() {
        // Mid-stream: the client's data (partial), the server's first packet is its FIN.
        let p = |late: i64| {
            vec![
                tcp(0, true, ACK, 100, 500),
                tcp(S, false, FIN | ACK, 500, 100),
                tcp(S + late, true, ACK, 100, 501),
            ]
        };
        let (c, _) = run(Options::default(), &p(3 * S - 1));
        assert_eq!(c.len(), 1);
        let (c, _) = run(Options::default(), &p(3 * S));
        assert_eq!(c.len(), 2);
    }

    #[test]
    fn a_reset_after_the_own_fin_gets_the_reset_delay() {
        let base = || {
            let mut p = closed(0);
            p.pop(); // the server does not close
            p.push(tcp(2 * S, true, 0x04, 102, 0)); // RST from the client, after its FIN
            p
        };
        let mut p = base();
        p.push(tcp(7 * S - 1, false, ACK, 501, 102));
        let (c, _) = run(Options::default(), &p);
        assert_eq!(c.len(), 1);
        let mut p = base();
        p.push(tcp(7 * S, false, ACK, 501, 102));
        let (c, _) = run(Options::default(), &p);
        assert_eq!(c.len(), 2);
        let quick = Options {
            reset_delay_us: S,
            ..Options::default()
        };
        let mut p = base();
        p.push(tcp(3 * S, false, ACK, 501, 102));
        let (c, _) = run(quick, &p);
        assert_eq!(c.len(), 2);
    }

    #[test]
    fn bad_checksums_only_mark_the_history_when_verified() {
        let mut bad = tcp(0, true, SYN, 100, 0);
        bad.csum_bad = true;
        let (c, t) = run(Options::default(), &[bad]);
        assert_eq!(c, [("C".to_string(), 0)]);
        assert_eq!(t.stats.drops[Drop::BadChecksum as usize], 1);
        assert_eq!(t.stats.in_flows, 0);
        // The good SYN 3 s later is the same connection (the bad one moved nothing).
        let good = tcp(3 * S, true, SYN, 100, 0);
        let (c, _) = run(Options::default(), &[bad, good]);
        assert_eq!(c, [("CS".to_string(), 1)]);
        // Ignored: counted like any packet, no letter.
        let ignore = Options {
            verify_checksums: false,
            ..Options::default()
        };
        let (c, _) = run(ignore, &[bad]);
        assert_eq!(c, [("S".to_string(), 1)]);
    }

    #[test]
    fn offload_warning_once_when_most_of_a_direction_is_bad() {
        let mut t = Tracker::new(Options::default());
        let mut sink = VecSink::default();
        for n in 0..40u32 {
            let mut s = udp(n as i64 * 1000);
            s.l4.sport = Some(2000 + n as u16);
            s.csum_bad = n % 4 != 0;
            t.advance(s.ts_us);
            t.packet(&s, &mut sink);
        }
        assert_eq!(sink.messages.len(), 1, "{:?}", sink.messages);
        assert!(sink.messages[0].contains("--checksums ignore (-C)"));
        assert!(sink.messages[0].starts_with("7 of 10 packets from originators"));
    }

    #[test]
    fn timers_of_many_flows_run_in_time_order_and_stale_entries_are_skipped() {
        // 1000 UDP flows, each refreshed once (in the reverse order): every flow's first queue
        // entry comes due too early, and all end at their own last + 60 s, in that order.
        let mut p = Vec::new();
        for n in 0..1000u32 {
            let mut s = udp(n as i64 * 1000);
            s.l4.sport = Some(n as u16);
            p.push(s);
        }
        for n in (0..1000u32).rev() {
            let mut s = udp(10 * S + (1000 - n as i64) * 1000);
            s.l4.sport = Some(n as u16);
            p.push(s);
        }
        let mut t = Tracker::new(Options::default());
        let mut sink = VecSink::default();
        for s in &p {
            t.advance(s.ts_us);
            t.packet(s, &mut sink);
        }
        // Time goes on in 100 ms steps (a live capture's idle clock): each flow's entry at its
        // first packet + 60 s is put back at its last + 60 s, and runs out there.
        for step in 1..=2000 {
            t.advance(step * S / 10);
            t.sweep(&mut sink);
        }
        let ends: Vec<u16> = sink
            .events
            .iter()
            .filter(|e| e.kind == EventKind::Close)
            .map(|e| e.orig.sport.unwrap())
            .collect();
        let want: Vec<u16> = (0..1000u16).rev().collect();
        assert_eq!(ends, want);
        assert_eq!(t.open_flows(), 0);
        assert!(t.timers.is_empty());
    }

    #[test]
    fn the_timer_queue_holds_open_flows_not_every_closed_one() {
        // 20,000 connections one after the other, each closed at once by a RST (its removal
        // 5 s later leaves its 300 s inactivity entry stale): the queue stays near the open
        // flows, and every connection is still reported.
        let mut t = Tracker::new(Options::default());
        let mut sink = VecSink::default();
        let mut most = 0;
        for n in 0..20_000u32 {
            let at = n as i64 * 1000;
            let mut syn = tcp(at, true, SYN, 100, 0);
            syn.l4.sport = Some(1024 + (n % 60_000) as u16);
            syn.src = std::net::IpAddr::from([10, 1, (n >> 16) as u8, (n >> 8) as u8]);
            let mut rst = tcp(at + 10, false, 0x04 | ACK, 0, 101);
            rst.l4.dport = syn.l4.sport;
            rst.dst = syn.src;
            for p in [syn, rst] {
                t.advance(p.ts_us);
                t.packet(&p, &mut sink);
            }
            most = most.max(t.timers.len());
        }
        assert!(most <= 2 * 5_100 + 4096, "queue grew to {most}");
        t.finish(&mut sink);
        let closes = sink.events.iter().filter(|e| e.kind == EventKind::Close);
        assert_eq!(closes.count(), 20_000);
    }
}
#[cfg(test)]
mod size {
    /// Memory per tracked flow is the flow record (a slab slot) plus 8-16 index bytes and up
    /// to two 24-byte timer entries: the record is most of it. Was 816 bytes, 48 of them two
    /// empty spill queues (bench/run: ~940 bytes of RSS per flow with every flow kept); the
    /// session view's per-flow state (issue 11) added 16.
    #[test]
    fn a_flow_record_stays_within_784_bytes() {
        use super::super::endpoint::Endpoint;
        use super::super::flow::Flow;
        use super::super::reassembly::Segs;
        let sizes = (
            std::mem::size_of::<Option<Flow>>(),
            std::mem::size_of::<Endpoint>(),
            std::mem::size_of::<Segs>(),
        );
        assert!(
            sizes.0 <= 784 && sizes.1 <= 248 && sizes.2 <= 80,
            "{sizes:?}"
        );
    }
}
