//! The processor: keeps the set of open connections, decides what is an O, S or C event,
//! names local addresses by interface, and tells its sink. It reads nothing itself (the
//! addresses, timeouts and clock are given), so it is tested with `VecSink` and messages
//! built in the test.

use std::net::IpAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use rustc_hash::{FxHashMap, FxHashSet};

use shared::sink::{EventSink, RunInfo};
use shared::{
    ConnEvent, ConnState, Counters, Direction, EventKind, FlowTuple, IcmpTypeCode, Source, TcpState,
};

use super::ctnetlink::{CtMsg, MsgKind};
use super::reader::{DumpReason, Msg, Shared};
use super::timeouts::Timeouts;
use super::{now_ns, ns_to_dt};
use crate::error::Error;
use crate::ifaddr::{self, AddrMap};

/// Conntrack's id and the original tuple, with the ICMP id in place of the source port.
/// Hashed with rustc-hash's FxHasher: keys come from the kernel, not from someone who could
/// aim at collisions, and SipHash was a visible share of the per-event cost under a flood.
type Key = (u32, u8, IpAddr, IpAddr, Option<u16>, Option<u16>);

/// The open-connection table's key: conntrack's id and the original tuple (ids are reused).
fn key(m: &CtMsg) -> Key {
    let t = &m.orig;
    let sport = t.sport.or(t.icmp_id);
    (m.id.unwrap_or(0), t.proto, t.src, t.dst, sport, t.dport)
}

/// The state an entry's message says; TCP keeps `previous` when the message has none.
pub fn state_of(m: &CtMsg, previous: Option<ConnState>) -> ConnState {
    if m.orig.proto == 6 {
        match m.tcp_state {
            Some(n) => ConnState::Tcp(TcpState::from_conntrack(n)),
            None => previous.unwrap_or(ConnState::Tcp(TcpState::None)),
        }
    } else if m.seen_reply() {
        ConnState::Replied
    } else {
        ConnState::Unreplied
    }
}

/// What the processor keeps of an open connection.
struct Tracked {
    open_ns: u64,
    /// Found open (start-up dump, resync, an update without a NEW), not seen opening.
    found: bool,
    state: ConnState,
    last_change_ns: u64,
    /// The generation of the last event or dump entry that showed it alive.
    touched: u64,
    /// ICMP type and code (for a close the processor makes up itself).
    icmp: Option<IcmpTypeCode>,
}

/// The ICMP type and code of the entry's original tuple (conntrack keeps the request's).
fn icmp_of(m: &CtMsg) -> Option<IcmpTypeCode> {
    let o = &m.orig;
    if !shared::proto::is_icmp(o.proto) {
        return None;
    }
    o.icmp_type.map(|kind| IcmpTypeCode {
        kind,
        code: o.icmp_code.unwrap_or(0),
    })
}

/// Builds the event for a conntrack entry: tuples, interface names, direction, mark, zone,
/// counters, kernel timestamps.
pub fn base_event(kind: EventKind, m: &CtMsg, ts_ns: u64, addrs: &AddrMap) -> ConnEvent {
    let o = &m.orig;
    let orig = FlowTuple::new(o.src, o.dst, o.sport, o.dport);
    let mut ev = ConnEvent::new(
        kind,
        ns_to_dt(ts_ns),
        Source::Conntrack,
        m.id.unwrap_or(0) as u64,
        o.proto,
        orig,
    );
    ev.reply = m
        .reply
        .map(|r| FlowTuple::new(r.src, r.dst, r.sport, r.dport));
    ev.src_iface = addrs.get(&ev.shown_src()).cloned();
    ev.dst_iface = addrs.get(&ev.shown_dst()).cloned();
    ev.direction = match (&ev.src_iface, &ev.dst_iface) {
        (Some(_), Some(_)) => Direction::Local,
        (Some(_), None) => Direction::Outgoing,
        (None, Some(_)) => Direction::Incoming,
        (None, None) => Direction::Forwarded,
    };
    ev.mark = m.mark.filter(|&x| x != 0);
    ev.zone = m.zone.filter(|&x| x != 0);
    if m.counters_orig.is_some() || m.counters_reply.is_some() {
        let co = m.counters_orig.unwrap_or_default();
        let cr = m.counters_reply.unwrap_or_default();
        ev.counters = Some(Counters {
            orig_pkts: co.packets,
            orig_ip_bytes: co.bytes,
            resp_pkts: cr.packets,
            resp_ip_bytes: cr.bytes,
            orig_bytes: None,
            resp_bytes: None,
        });
    }
    ev.kernel_start = m.ts_start.map(ns_to_dt);
    ev.kernel_stop = m.ts_stop.map(ns_to_dt);
    ev.icmp = icmp_of(m);
    ev
}

/// The processor: the set of open connections, fed the reader's and dumper's messages in
/// order, telling its sink what happened.
pub struct Processor<'s> {
    conns: FxHashMap<Key, Tracked>,
    addrs: AddrMap,
    timeouts: Timeouts,
    generation: u64,
    dump_generation: u64,
    resync_closed: FxHashSet<Key>,
    reported_unknown: u64,
    /// The loss said so far (the sum of the `lost N events` lines).
    lost: u64,
    sink: &'s mut dyn EventSink,
    shared: Arc<Shared>,
    /// The wall clock in ns since the epoch (a fixed one in tests).
    clock: fn() -> u64,
    /// Why the run has to stop (said on standard error and in the sink when it happened).
    pub failure: Option<Error>,
    /// The NFLOG thread's figures at its end (lost, unusable, netlink errors), when
    /// `--nflog` runs beside conntrack.
    pub nflog_end: Option<(u64, u64, u64)>,
}

impl<'s> Processor<'s> {
    /// A processor naming `addrs` by their interfaces and dating expired closes with
    /// `timeouts`; `shared` is the reader's queue accounting.
    pub fn new(
        sink: &'s mut dyn EventSink,
        addrs: AddrMap,
        timeouts: Timeouts,
        shared: Arc<Shared>,
    ) -> Processor<'s> {
        Processor {
            conns: FxHashMap::default(),
            addrs,
            timeouts,
            generation: 1,
            dump_generation: 0,
            resync_closed: FxHashSet::default(),
            reported_unknown: 0,
            lost: 0,
            sink,
            shared,
            clock: now_ns,
            failure: None,
            nflog_end: None,
        }
    }

    /// The sink, for the run loop's flushes, statistics and the end of the run.
    pub fn sink(&mut self) -> &mut dyn EventSink {
        &mut *self.sink
    }

    fn emit(&mut self, ev: &ConnEvent) {
        self.sink.event(ev);
    }

    fn now(&self) -> DateTime<Utc> {
        ns_to_dt((self.clock)())
    }

    pub fn program(&mut self, msg: &str) {
        let now = self.now();
        self.sink.program(now, msg);
    }

    fn note_unknown(&mut self, m: &CtMsg) {
        let new = m.unknown & !self.reported_unknown;
        if new != 0 {
            self.reported_unknown |= new;
            self.shared.unknown_attrs.fetch_or(new, Ordering::Relaxed);
            for bit in 0..64 {
                if new & (1 << bit) != 0 {
                    self.program(&format!(
                        "conntrack attribute {bit} not decoded (connections still logged)"
                    ));
                }
            }
        }
    }

    /// The run starts: the sink is told, then every local address as an interface up.
    pub fn start(&mut self, run: &RunInfo) {
        self.sink.start(run);
        for (a, n) in &self.addrs {
            self.sink.interface(run.started, true, n, *a);
        }
        self.sink.flush();
    }

    /// This host's addresses now: what came and went is told to the sink.
    pub fn set_addrs(&mut self, new: AddrMap) {
        if new != self.addrs {
            let now = self.now();
            for (up, n, a) in ifaddr::changes(&self.addrs, &new) {
                self.sink.interface(now, up, &n, a);
            }
            self.addrs = new;
        }
    }

    fn open_found(&mut self, m: &CtMsg, at: u64) {
        let k = key(m);
        let open_ns = m.ts_start.unwrap_or(at);
        let state = state_of(m, None);
        let mut ev = base_event(EventKind::Open, m, open_ns, &self.addrs);
        ev.state = state;
        ev.found_at_start = true;
        // Counters of an entry found open are partial; they come with its close.
        ev.counters = None;
        ev.kernel_stop = None;
        self.emit(&ev);
        self.conns.insert(
            k,
            Tracked {
                open_ns,
                found: true,
                state,
                last_change_ns: at,
                touched: self.generation,
                icmp: icmp_of(m),
            },
        );
    }

    fn update(&mut self, m: &CtMsg, ts: u64) {
        let k = key(m);
        let generation = self.generation;
        let Some(t) = self.conns.get_mut(&k) else {
            return;
        };
        t.touched = generation;
        let state = state_of(m, Some(t.state));
        if state.flag() == t.state.flag() {
            t.state = state;
            return;
        }
        t.state = state;
        t.last_change_ns = ts;
        let open_ns = t.open_ns;
        let mut ev = base_event(EventKind::Update, m, ts, &self.addrs);
        ev.state = state;
        ev.duration = Some(ts.saturating_sub(open_ns) as f64 / 1e9);
        ev.counters = None;
        self.emit(&ev);
    }

    fn handle(&mut self, m: CtMsg, at: u64) {
        if m.unknown != 0 {
            self.note_unknown(&m);
        }
        let ts = m.ts_event.unwrap_or(at);
        let k = key(&m);
        match m.kind {
            MsgKind::New | MsgKind::Update | MsgKind::Dump => {
                if self.conns.contains_key(&k) {
                    self.update(&m, ts);
                } else if m.kind == MsgKind::New {
                    let state = state_of(&m, None);
                    let mut ev = base_event(EventKind::Open, &m, ts, &self.addrs);
                    ev.state = state;
                    self.emit(&ev);
                    self.conns.insert(
                        k,
                        Tracked {
                            open_ns: ts,
                            found: false,
                            state,
                            last_change_ns: ts,
                            touched: self.generation,
                            icmp: icmp_of(&m),
                        },
                    );
                } else {
                    // An update (or dump entry) of a connection we never saw open: it was
                    // open before we started, or its NEW event was lost.
                    self.open_found(&m, at);
                }
            }
            MsgKind::Destroy => {
                let tracked = self.conns.remove(&k);
                if tracked.is_none() && self.resync_closed.remove(&k) {
                    // Already closed by a resync; its late DESTROY is not a second close.
                    return;
                }
                self.close(&m, at, tracked);
            }
        }
    }

    fn close(&mut self, m: &CtMsg, at: u64, tracked: Option<Tracked>) {
        let stop_ns = m.ts_stop.unwrap_or(at);
        let prev_state = tracked.as_ref().map(|t| t.state);
        let state = state_of(m, prev_state);
        let (open_ns, last_change, found) = match &tracked {
            Some(t) => (m.ts_start.unwrap_or(t.open_ns), t.last_change_ns, t.found),
            None => (
                m.ts_start.unwrap_or(stop_ns),
                m.ts_start.unwrap_or(stop_ns),
                true,
            ),
        };
        // When did the connection end? TCP: when it reached its closing state (the original
        // ipclog's C line: time of the last state change). Otherwise, for an entry that
        // expired (port id 0): its idle timeout after the last packet. Else (deleted by
        // someone, or timestamps unknown): when it was destroyed.
        let closing_tcp = matches!(prev_state.map(|s| s.flag()), Some('w' | 't' | 'c'));
        let end_ns = if closing_tcp {
            last_change
        } else if m.portid == 0 {
            let before = prev_state.unwrap_or(state);
            match self.timeouts.for_entry(m.orig.proto, before, m.status) {
                Some(t) => stop_ns
                    .saturating_sub(t * 1_000_000_000)
                    .max(last_change)
                    .min(stop_ns),
                None => stop_ns,
            }
        } else {
            stop_ns
        };
        let end_ns = end_ns.max(open_ns);
        let mut ev = base_event(EventKind::Close, m, end_ns, &self.addrs);
        ev.state = state;
        ev.duration = Some((end_ns - open_ns) as f64 / 1e9);
        // A close without an open line is marked, so readers know its open was missed.
        ev.found_at_start = found && tracked.is_none();
        self.emit(&ev);
    }

    fn dump_begin(&mut self, reason: DumpReason) {
        self.generation += 1;
        self.dump_generation = self.generation;
        if reason == DumpReason::Resync {
            self.resync_closed.clear();
        }
    }

    fn dump_end(&mut self, reason: DumpReason, r: Result<u64, Error>) {
        match r {
            Err(e) => {
                eprintln!("{e}");
                self.program(&format!("conntrack dump failed: {e}"));
                // Without permission the first dump says so before anything was logged: a
                // start-up error. Later failures (a busy kernel) are said and logging goes on.
                if reason == DumpReason::Start && matches!(e, Error::Permission(_)) {
                    self.failure = Some(e);
                }
            }
            Ok(n) if reason == DumpReason::Resync => {
                // Connections neither in the dump nor touched by an event since it began
                // vanished while we were not listening.
                let now = (self.clock)();
                let gone: Vec<Key> = self
                    .conns
                    .iter()
                    .filter(|(_, t)| t.touched < self.dump_generation)
                    .map(|(k, _)| *k)
                    .collect();
                let closed = gone.len();
                for k in gone {
                    let t = self.conns.remove(&k).expect("listed");
                    let ev = self.synthetic_close(&k, &t, now);
                    self.emit(&ev);
                    self.resync_closed.insert(k);
                }
                self.program(&format!(
                    "resync: {n} connections in the table, {closed} closed while events were lost"
                ));
            }
            Ok(_) => {}
        }
        // The connections open at start are known: what follows are changes. A service
        // manager waiting for that (systemd Type=notify) may start what depends on the log.
        if reason == DumpReason::Start && self.failure.is_none() {
            self.sink.flush();
            crate::daemon::notify("READY=1");
        }
    }

    fn synthetic_close(&self, k: &Key, t: &Tracked, now: u64) -> ConnEvent {
        let (id, proto, src, dst, sport, dport) = *k;
        let icmp = !shared::proto::has_ports(proto);
        let orig = FlowTuple::new(
            src,
            dst,
            if icmp { None } else { sport },
            if icmp { None } else { dport },
        );
        let mut ev = ConnEvent::new(
            EventKind::Close,
            ns_to_dt(now),
            Source::Conntrack,
            id as u64,
            proto,
            orig,
        );
        ev.src_iface = self.addrs.get(&src).cloned();
        ev.dst_iface = self.addrs.get(&dst).cloned();
        ev.state = t.state;
        ev.duration = Some(now.saturating_sub(t.open_ns) as f64 / 1e9);
        ev.icmp = t.icmp;
        ev
    }

    pub fn open_count(&self) -> usize {
        self.conns.len()
    }

    /// Handles one message of the reader or dumper.
    pub fn dispatch(&mut self, msg: Msg) {
        self.shared.depth.fetch_sub(1, Ordering::Relaxed);
        match msg {
            Msg::Event { m, at } => self.handle(m, at),
            Msg::Dumped { m, at } => {
                let k = key(&m);
                if let Some(t) = self.conns.get_mut(&k) {
                    t.touched = self.generation;
                }
                self.handle(m, at);
            }
            Msg::DumpBegin(r) => self.dump_begin(r),
            Msg::DumpEnd(r, res) => self.dump_end(r, res),
            Msg::Lost(n) => {
                self.program(&format!("lost {n} events"));
                self.lost += n;
                self.sink.source_lost(self.lost);
            }
            Msg::QueueDropped(n) => {
                self.program(&format!("lost {n} events (queue full)"));
            }
            Msg::Fatal(e) => {
                eprintln!("ipclog: {e}");
                self.program(&format!("error: {e}"));
                self.failure = Some(Error::Run(e));
            }
            Msg::Nflog(side) => self.nflog(side),
        }
    }

    /// What the NFLOG thread beside conntrack says: packets go to the sinks as they are.
    fn nflog(&mut self, side: crate::nflog::Side) {
        use crate::nflog::Side;
        match side {
            Side::Started(m) => self.program(&m),
            Side::Packet(p) => self.sink.packet(&p),
            Side::Lost(n) => {
                self.program(&crate::nflog::lost_message(n));
                self.lost += n;
                self.sink.source_lost(self.lost);
            }
            Side::Ended(messages, lost, unusable, errors) => {
                for m in messages {
                    self.program(&m);
                }
                self.nflog_end = Some((lost, unusable, errors));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conntrack::ctnetlink::{CtCounter, CtTuple, IPS_SEEN_REPLY};
    use shared::sink::{RunEnd, VecSink};

    const S: u64 = 1_000_000_000;
    /// 2023-11-14 22:13:20 UTC, in ns.
    const T0: u64 = 1_700_000_000 * S;

    /// The processor's clock in these tests: 500 s after T0.
    fn clock() -> u64 {
        T0 + 500 * S
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    /// A conntrack message as the decoder gives it: `id`, TCP 10.0.0.1:40000 → 10.9.9.9:80
    /// (replies from the same address: no NAT), the kernel's event time `at_s` seconds after
    /// T0.
    fn msg(kind: MsgKind, id: u32, tcp_state: Option<u8>, at_s: u64) -> CtMsg {
        let mut m = CtMsg::empty(kind, 2, 0);
        m.id = Some(id);
        m.orig = CtTuple {
            src: ip("10.0.0.1"),
            dst: ip("10.9.9.9"),
            proto: 6,
            sport: Some(40000),
            dport: Some(80),
            ..CtTuple::default()
        };
        m.reply = Some(CtTuple {
            src: ip("10.9.9.9"),
            dst: ip("10.0.0.1"),
            sport: Some(80),
            dport: Some(40000),
            ..m.orig
        });
        m.tcp_state = tcp_state;
        m.ts_event = Some(T0 + at_s * S);
        m
    }

    fn udp(kind: MsgKind, id: u32, sport: u16) -> CtMsg {
        let mut m = msg(kind, id, None, 0);
        m.orig.proto = 17;
        m.orig.sport = Some(sport);
        m.orig.dst = ip("192.0.2.53");
        m.reply = None;
        m
    }

    fn addrs() -> AddrMap {
        [(ip("10.0.0.1"), "eth0".to_string())].into_iter().collect()
    }

    /// A processor with eth0 = 10.0.0.1, the kernel's default timeouts and the test clock.
    fn processor(sink: &mut VecSink) -> Processor<'_> {
        let mut p = Processor::new(sink, addrs(), Timeouts::default(), Arc::default());
        p.clock = clock;
        p
    }

    /// Feeds `msgs` to [`processor`]; what the sink was told and the failure, if any.
    fn feed(msgs: Vec<Msg>) -> (VecSink, Option<Error>) {
        let mut sink = VecSink::default();
        let mut p = processor(&mut sink);
        for m in msgs {
            p.dispatch(m);
        }
        let failure = p.failure.take();
        (sink, failure)
    }

    fn event(m: CtMsg) -> Msg {
        Msg::Event { m, at: T0 }
    }

    fn secs(ev: &ConnEvent) -> (EventKind, char, i64, Option<f64>) {
        let t = ev.ts.timestamp() - (T0 / S) as i64;
        (ev.kind, ev.state.flag(), t, ev.duration)
    }

    /// NEW, UPDATEs, DESTROY: O, then an S per change of flag only, then a C dated to the
    /// last state change (TCP's C line time), its duration from the open.
    #[test]
    fn open_update_close_become_o_s_c() {
        let mut close = msg(MsgKind::Destroy, 7, Some(7), 200);
        close.ts_stop = Some(T0 + 200 * S);
        close.status = IPS_SEEN_REPLY;
        close.counters_orig = Some(CtCounter {
            packets: 5,
            bytes: 400,
        });
        let (sink, failure) = feed(vec![
            event(msg(MsgKind::New, 7, Some(1), 10)),
            event(msg(MsgKind::Update, 7, Some(3), 11)),
            event(msg(MsgKind::Update, 7, Some(4), 20)),
            // CLOSE_WAIT shows the same flag as FIN_WAIT: no S line.
            event(msg(MsgKind::Update, 7, Some(5), 21)),
            event(msg(MsgKind::Update, 7, Some(7), 22)),
            Msg::Event { m: close, at: T0 },
        ]);
        assert!(failure.is_none());
        let got: Vec<_> = sink.events.iter().map(secs).collect();
        assert_eq!(
            got,
            [
                (EventKind::Open, 's', 10, None),
                (EventKind::Update, 'e', 11, Some(1.0)),
                (EventKind::Update, 'w', 20, Some(10.0)),
                (EventKind::Update, 't', 22, Some(12.0)),
                (EventKind::Close, 't', 22, Some(12.0)),
            ]
        );
        let c = &sink.events[4];
        assert_eq!(c.state, ConnState::Tcp(TcpState::TimeWait));
        assert_eq!(
            c.counters.map(|c| (c.orig_pkts, c.orig_ip_bytes)),
            Some((5, 400))
        );
        assert!(!c.found_at_start);
        // Updates carry no counters (they would be partial).
        assert!(sink.events[1..4].iter().all(|e| e.counters.is_none()));
        assert!(sink.messages.is_empty(), "{:?}", sink.messages);
    }

    /// Entries of the start-up dump are opens marked found, dated by the kernel's start,
    /// without (partial) counters; their close is an ordinary one. A DESTROY of a connection
    /// never seen is a close marked found.
    #[test]
    fn found_at_start_from_the_dump() {
        let mut dumped = msg(MsgKind::Dump, 1, Some(3), 0);
        dumped.ts_event = None;
        dumped.ts_start = Some(T0 - 60 * S);
        dumped.counters_orig = Some(CtCounter::default());
        let mut close = msg(MsgKind::Destroy, 1, Some(8), 100);
        close.ts_stop = Some(T0 + 100 * S);
        close.portid = 1234; // deleted by someone (conntrack -D): ends when destroyed
        let mut stray = msg(MsgKind::Destroy, 2, Some(8), 100);
        stray.ts_start = Some(T0 + 90 * S);
        stray.ts_stop = Some(T0 + 100 * S);
        stray.portid = 1234;
        let (sink, _) = feed(vec![
            Msg::DumpBegin(DumpReason::Start),
            Msg::Dumped { m: dumped, at: T0 },
            Msg::DumpEnd(DumpReason::Start, Ok(1)),
            event(close),
            event(stray),
        ]);
        let got: Vec<_> = sink.events.iter().map(secs).collect();
        assert_eq!(
            got,
            [
                (EventKind::Open, 'e', -60, None),
                (EventKind::Close, 'c', 100, Some(160.0)),
                (EventKind::Close, 'c', 100, Some(10.0)),
            ]
        );
        let found: Vec<bool> = sink.events.iter().map(|e| e.found_at_start).collect();
        assert_eq!(found, [true, false, true]);
        assert!(sink.events[0].counters.is_none());
        assert!(sink.messages.is_empty(), "{:?}", sink.messages);
    }

    /// After a loss, the resync dump closes what vanished (at the processor's clock, with the
    /// duration so far), keeps what it lists or an event touched, and a late DESTROY of a
    /// connection it closed is not a second close.
    #[test]
    fn resync_closes_what_vanished_once() {
        let (sink, _) = feed(vec![
            event(udp(MsgKind::New, 1, 1001)),
            event(udp(MsgKind::New, 2, 1002)),
            event(udp(MsgKind::New, 3, 1003)),
            Msg::Lost(5),
            Msg::DumpBegin(DumpReason::Resync),
            Msg::Dumped {
                m: udp(MsgKind::Dump, 1, 1001),
                at: T0,
            },
            // An event during the dump shows 3 alive too.
            event(udp(MsgKind::Update, 3, 1003)),
            Msg::DumpEnd(DumpReason::Resync, Ok(1)),
            event(udp(MsgKind::Destroy, 2, 1002)),
        ]);
        let kinds: Vec<(EventKind, u64)> =
            sink.events.iter().map(|e| (e.kind, e.conn_id)).collect();
        assert_eq!(
            kinds,
            [
                (EventKind::Open, 1),
                (EventKind::Open, 2),
                (EventKind::Open, 3),
                (EventKind::Close, 2),
            ]
        );
        let c = &sink.events[3];
        assert_eq!(secs(c), (EventKind::Close, 'U', 500, Some(500.0)));
        assert_eq!(c.orig.sport, Some(1002));
        assert_eq!(c.src_iface.as_deref(), Some("eth0"));
        assert_eq!(
            sink.messages,
            [
                "lost 5 events",
                "resync: 1 connections in the table, 1 closed while events were lost"
            ]
        );
    }

    /// ICMP entries carry conntrack's type and code (Zeek's id.orig_p/id.resp_p in JSON,
    /// `icmp=` in the log), in every event, a close made up by a resync included.
    #[test]
    fn icmp_type_and_code_reach_every_event() {
        let ping = |kind, id, icmp_id| {
            let mut m = msg(kind, id, None, 0);
            m.orig.proto = 1;
            m.orig.sport = None;
            m.orig.dport = None;
            m.orig.icmp_id = Some(icmp_id);
            m.orig.icmp_type = Some(8);
            m.orig.icmp_code = Some(0);
            m.reply = None;
            m
        };
        let (sink, _) = feed(vec![
            event(ping(MsgKind::New, 1, 77)),
            event(ping(MsgKind::Destroy, 1, 77)),
            event(ping(MsgKind::New, 2, 78)),
            Msg::Lost(1),
            Msg::DumpBegin(DumpReason::Resync),
            Msg::DumpEnd(DumpReason::Resync, Ok(0)),
        ]);
        let kinds: Vec<(EventKind, u64)> =
            sink.events.iter().map(|e| (e.kind, e.conn_id)).collect();
        assert_eq!(
            kinds,
            [
                (EventKind::Open, 1),
                (EventKind::Close, 1),
                (EventKind::Open, 2),
                (EventKind::Close, 2),
            ]
        );
        for e in &sink.events {
            assert_eq!(e.icmp, Some(IcmpTypeCode { kind: 8, code: 0 }), "{e:?}");
            let j = shared::json::event_json(e);
            assert_eq!((&j["id.orig_p"], &j["id.resp_p"]), (&8.into(), &0.into()));
            let mut line = String::new();
            shared::logfmt::write_event(e, Default::default(), &mut line);
            assert!(line.contains(" icmp=8/0"), "{line}");
        }
        // Not ICMP: no icmp field, ports as they are.
        let (sink, _) = feed(vec![event(udp(MsgKind::New, 3, 1003))]);
        assert_eq!(sink.events[0].icmp, None);
        assert_eq!(shared::json::event_json(&sink.events[0])["id.orig_p"], 1003);
    }

    /// Losses are program messages, and the running total is told to the sink (the runs
    /// table keeps it); the reader's own queue drops are said apart.
    #[test]
    fn lost_events_are_said_and_counted() {
        let (sink, _) = feed(vec![Msg::Lost(5), Msg::QueueDropped(2), Msg::Lost(3)]);
        assert_eq!(
            sink.messages,
            [
                "lost 5 events",
                "lost 2 events (queue full)",
                "lost 3 events"
            ]
        );
        assert_eq!(sink.source_lost, 8);
    }

    /// Local addresses show as their interface, and set the direction; the start lists them
    /// and later changes are told as interfaces down and up.
    #[test]
    fn local_addresses_are_named_by_interface() {
        let mut sink = VecSink::default();
        let mut p = processor(&mut sink);
        let started = ns_to_dt(T0);
        p.start(&RunInfo {
            started,
            source: Source::Conntrack,
            command: "ipclog",
        });
        p.dispatch(event(msg(MsgKind::New, 1, Some(1), 0)));
        let mut incoming = msg(MsgKind::New, 2, Some(1), 0);
        std::mem::swap(&mut incoming.orig.src, &mut incoming.orig.dst);
        incoming.reply = None;
        p.dispatch(event(incoming));
        p.set_addrs([(ip("10.0.0.2"), "eth0".to_string())].into_iter().collect());
        // Now 10.0.0.1 is no longer local.
        p.dispatch(event(msg(MsgKind::New, 3, Some(1), 0)));
        p.sink().finish(&RunEnd {
            errors: 0,
            lost: 0,
            dropped: 0,
            started: None,
            stopped: started,
        });
        drop(p);
        let names: Vec<_> = sink
            .events
            .iter()
            .map(|e| (e.src_iface.as_deref(), e.dst_iface.as_deref(), e.direction))
            .collect();
        assert_eq!(
            names,
            [
                (Some("eth0"), None, Direction::Outgoing),
                (None, Some("eth0"), Direction::Incoming),
                (None, None, Direction::Forwarded),
            ]
        );
        assert_eq!(
            sink.interfaces,
            [
                (true, "eth0".to_string(), ip("10.0.0.1")),
                (false, "eth0".to_string(), ip("10.0.0.1")),
                (true, "eth0".to_string(), ip("10.0.0.2")),
            ]
        );
        assert_eq!(
            sink.messages,
            ["ipclog started", "ipclog stopped, 0 errors"]
        );
    }

    /// An expired entry (DESTROY from port id 0) ended its idle timeout before it was
    /// destroyed: UDP's 30 s by default.
    #[test]
    fn expired_close_is_dated_back_by_its_timeout() {
        let mut close = udp(MsgKind::Destroy, 1, 1001);
        close.ts_stop = Some(T0 + 100 * S);
        let (sink, _) = feed(vec![event(udp(MsgKind::New, 1, 1001)), event(close)]);
        assert_eq!(
            secs(&sink.events[1]),
            (EventKind::Close, 'U', 70, Some(70.0))
        );
    }

    /// A start-up dump refused for lack of permission stops the run as a start-up error; a
    /// reader that cannot go on stops it as a failure; attributes the decoder does not know
    /// are said once each.
    #[test]
    fn failures_and_unknown_attributes_are_said() {
        let refused = Error::Permission("ipclog: reading conntrack needs CAP_NET_ADMIN".into());
        let (sink, failure) = feed(vec![
            Msg::DumpBegin(DumpReason::Start),
            Msg::DumpEnd(DumpReason::Start, Err(refused)),
        ]);
        assert_eq!(failure.map(|e| e.exit_code()), Some(2));
        assert!(sink.messages[0].starts_with("conntrack dump failed: "));
        let (_, failure) = feed(vec![
            Msg::DumpBegin(DumpReason::Resync),
            Msg::DumpEnd(DumpReason::Resync, Err(Error::Run("busy".into()))),
        ]);
        assert!(failure.is_none(), "a failed resync is said, not fatal");
        let (sink, failure) = feed(vec![Msg::Fatal("socket gone".into())]);
        assert_eq!(failure.map(|e| e.exit_code()), Some(1));
        assert_eq!(sink.messages, ["error: socket gone"]);
        let mut m = msg(MsgKind::New, 1, Some(1), 0);
        m.unknown = 1 << 45;
        let (sink, _) = feed(vec![event(m), event(m)]);
        assert_eq!(
            sink.messages,
            ["conntrack attribute 45 not decoded (connections still logged)"]
        );
    }
}
