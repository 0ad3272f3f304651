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
use shared::event::{ConnEvent, EventKind, FlowTuple, Source};
use shared::sink::EventSink;

use super::flow::{Ended, Flow, HOT_LINES, NEVER};
use super::history::{Once, Repeat};
use super::index::{prefetch, FlowIndex};
use super::key::{Hint, Key};
use super::{tcp, Options, Seen, Stats, UDP};
use crate::wire::Drop;

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
            if f.is_tcp() && f.is_reuse(s.l4.flags, s.l4.seq) {
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
                    return;
                }
                self.create(key, hash, swapped, s)
            }
        };
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
        let both_closed = f.ep[0].did_close && f.ep[1].did_close;
        if s.ts_us > f.last_us && !both_closed {
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
            let had_packets = f.ep[0].pkts + f.ep[1].pkts > 1;
            if had_packets && self.opts.long_delay_us > 0 && gap >= self.opts.long_delay_us {
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
        }
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

    fn create(&mut self, key: Key, hash: u64, swapped: bool, s: &Seen) -> u32 {
        let f = Flow::new(self.next_id, key, swapped, s);
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
