//! The flow table: flows live in a slab (reused slots, no allocation per flow once the table
//! has grown), found through [`FlowIndex`] by their key's hash. A packet finds its flow or
//! opens one (or is dropped at `--session-limit`), is accounted to it, and an event is sent
//! when the flow opens or its reported state changes. Once a second of packet time, a sweep
//! closes flows past their inactivity timeout or their linger after a close; at the end of
//! input every open flow is closed, in the order they started.

use std::net::IpAddr;

use chrono::DateTime;
use shared::event::{ConnEvent, EventKind, FlowTuple, Source};
use shared::sink::EventSink;

use super::flow::{Flow, HOT_LINES};
use super::history::{Once, Repeat};
use super::index::{prefetch, FlowIndex};
use super::key::{Hint, Key};
use super::{tcp, Options, Seen, Stats, UDP};
use crate::wire::{Drop, ACK, FIN, RST, SYN};

/// How long a finished TCP connection (both FINs, or a RST) stays in the table for late
/// packets (final ACKs, retransmitted FINs) before it is reported closed. Zeek's
/// tcp_close_delay and tcp_reset_delay are 5 s too.
const LINGER_US: i64 = 5_000_000;

/// How often (packet time) flows are checked for timeouts.
const SWEEP_EVERY_US: i64 = 1_000_000;

/// The flow table and the run's counters.
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
            last: Vec::new(),
            free: Vec::new(),
            next_id: 1,
            segments: 0,
            stats: Stats::default(),
            now_us: i64::MIN,
            next_sweep_us: i64::MIN,
            expired: Vec::new(),
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
        let slab = &self.slab;
        let mut idx = self.table.get(hash, |i| {
            slab[i as usize].as_ref().is_some_and(|f| f.key == key)
        });
        if let Some(i) = idx {
            // A new SYN on a connection that is over: port reuse, a new connection.
            let f = self.slab[i as usize].as_ref().expect("live flow");
            if f.is_tcp() && s.l4.flags & (SYN | ACK | RST | FIN) == SYN && f.over() {
                self.close(i, sink);
                idx = None;
            }
        }
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
            f.repeat(d, Repeat::BadChecksum);
        }
        self.stats.in_flows += 1;
        self.open_pkts += 1;
        if f.is_tcp() {
            if !is_new && self.opts.long_delay_us > 0 && gap >= self.opts.long_delay_us {
                f.anom.long_delays += 1;
            }
            let (segs, drops) = tcp::segment(f, d, s, &self.opts, self.segments);
            self.segments = segs;
            self.stats.segments_dropped += drops;
            self.stats.segments_max = self.stats.segments_max.max(segs);
        } else if f.proto == UDP {
            f.once(d, Once::Data, b'D');
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

    /// The uid of the flow the latest packet was accounted to, `None` when it was dropped.
    pub fn latest_uid(&self) -> Option<String> {
        let f = self.slab.get(self.latest? as usize)?.as_ref()?;
        Some(f.uid())
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
