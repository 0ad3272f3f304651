//! The conntrack source: turns ctnetlink events and table dumps into `ConnEvent`s.
//!
//! Three threads, so that the socket is always being read:
//! - the **reader** only receives, decodes in place (`ctattr`) and queues plain `CtMsg`s (no
//!   allocation); when the queue is full it drops and counts, and asks for a resync;
//! - the **dumper** dumps the table at start (connections already open), every
//!   `--evict-every` seconds (which makes the kernel send the DESTROY events of expired
//!   entries at once) and after any loss (resync);
//! - the **processor** (the caller's thread) keeps the set of open connections, decides what
//!   is an O, S or C line, names local addresses by interface and feeds the sinks.
//!
//! Loss is never silent: kernel drops (ENOBUFS, and the socket's exact `Drops` counter) and
//! queue drops become `P ... lost N events` lines, are stored in the runs table, and are
//! followed by a resync that closes connections that vanished and opens ones that appeared.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use chrono::{DateTime, Utc};

use shared::logfmt;
use shared::sink::EventSink;
use shared::{ConnEvent, ConnState, Counters, Direction, EventKind, FlowTuple, Source, TcpState};

use crate::ctattr::{CtMsg, Item, Messages, MsgKind};
use crate::ctsock::{self, EventSocket};
use crate::daemon::stopping;
use crate::ifaddr::{self, AddrMap};
use crate::sinks::{FanOut, Filtered};

const TICK: Duration = Duration::from_millis(100);

fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

fn ns_to_dt(ns: u64) -> DateTime<Utc> {
    DateTime::<Utc>::from_timestamp((ns / 1_000_000_000) as i64, (ns % 1_000_000_000) as u32)
        .unwrap_or_default()
}

/// Why the table is being dumped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DumpReason {
    Start,
    Resync,
}

/// What the reader and dumper send to the processor.
pub enum Msg {
    Event {
        m: CtMsg,
        at: u64,
    },
    DumpBegin(DumpReason),
    Dumped {
        m: CtMsg,
        at: u64,
    },
    DumpEnd(DumpReason, Result<u64, String>),
    /// Events the kernel dropped on our socket.
    Lost(u64),
    /// Events the reader dropped because the queue was full.
    QueueDropped(u64),
    /// The reader cannot go on.
    Fatal(String),
}

/// Counters shared by the threads.
#[derive(Default)]
pub struct Shared {
    pub events: AtomicU64,
    pub lost: AtomicU64,
    pub queue_dropped: AtomicU64,
    pub decode_errors: AtomicU64,
    pub depth: AtomicI64,
    pub resync: AtomicBool,
    pub unknown_attrs: AtomicU64,
}

/// Options of the conntrack source.
pub struct Config {
    pub queue: usize,
    pub evict_every: Option<Duration>,
    pub stats_every: Option<Duration>,
}

fn queue(tx: &SyncSender<Msg>, sh: &Shared, msg: Msg) -> bool {
    match tx.try_send(msg) {
        Ok(()) => {
            sh.depth.fetch_add(1, Ordering::Relaxed);
            true
        }
        Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => false,
    }
}

fn queue_blocking(tx: &SyncSender<Msg>, sh: &Shared, msg: Msg) -> bool {
    if tx.send(msg).is_ok() {
        sh.depth.fetch_add(1, Ordering::Relaxed);
        true
    } else {
        false
    }
}

fn reader(sock: EventSocket, tx: SyncSender<Msg>, sh: Arc<Shared>) {
    crate::daemon::set_thread_nice(-10);
    let mut buf = vec![0u8; 1 << 16];
    let mut last_drops = sock.drops().unwrap_or(0);
    let mut last_check = Instant::now();
    let mut pending_lost = 0u64;
    let mut pending_dropped = 0u64;
    let mut last_lost_report = Instant::now() - Duration::from_secs(1);
    let mut last_drop_report = Instant::now() - Duration::from_secs(1);
    // After SIGTERM, what the kernel already queued for us is still read (without waiting).
    let mut draining = false;
    loop {
        if !draining && stopping() {
            draining = true;
        }
        let mut overflow = false;
        match sock.recv(&mut buf, !draining) {
            Ok(0) if draining => break,
            Ok(0) => {}
            Ok(n) => {
                let at = now_ns();
                for item in Messages::new(&buf[..n]) {
                    match item {
                        Ok(Item::Conntrack(m)) => {
                            sh.events.fetch_add(1, Ordering::Relaxed);
                            if !queue(&tx, &sh, Msg::Event { m, at }) {
                                pending_dropped += 1;
                            }
                        }
                        Ok(_) => {}
                        Err(_) => {
                            sh.decode_errors.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
            }
            Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => overflow = true,
            Err(e) => {
                let _ = tx.send(Msg::Fatal(format!("conntrack event socket: {e}")));
                return;
            }
        }
        // The exact number of dropped messages is the socket's Drops counter; ENOBUFS only
        // says that some were dropped. Check on ENOBUFS and once a second.
        if overflow || last_check.elapsed() >= Duration::from_secs(1) {
            last_check = Instant::now();
            if let Some(d) = sock.drops() {
                if d > last_drops {
                    pending_lost += d - last_drops;
                    last_drops = d;
                }
            }
            if overflow && pending_lost == 0 {
                // ENOBUFS without a visible counter: at least one was lost.
                pending_lost = 1;
            }
        }
        // One P line per second of loss, not one per ENOBUFS; the resync follows it.
        if pending_lost > 0
            && last_lost_report.elapsed() >= Duration::from_secs(1)
            && queue(&tx, &sh, Msg::Lost(pending_lost))
        {
            sh.lost.fetch_add(pending_lost, Ordering::Relaxed);
            pending_lost = 0;
            last_lost_report = Instant::now();
            sh.resync.store(true, Ordering::Relaxed);
        }
        if pending_dropped > 0
            && last_drop_report.elapsed() >= Duration::from_secs(1)
            && queue(&tx, &sh, Msg::QueueDropped(pending_dropped))
        {
            last_drop_report = Instant::now();
            sh.queue_dropped
                .fetch_add(pending_dropped, Ordering::Relaxed);
            pending_dropped = 0;
            sh.resync.store(true, Ordering::Relaxed);
        }
    }
    // Whatever could not be reported yet is still counted (and written by the processor).
    if pending_lost > 0 && queue_blocking(&tx, &sh, Msg::Lost(pending_lost)) {
        sh.lost.fetch_add(pending_lost, Ordering::Relaxed);
        pending_lost = 0;
    }
    sh.lost.fetch_add(pending_lost, Ordering::Relaxed);
    if pending_dropped > 0 && queue_blocking(&tx, &sh, Msg::QueueDropped(pending_dropped)) {
        sh.queue_dropped
            .fetch_add(pending_dropped, Ordering::Relaxed);
        pending_dropped = 0;
    }
    sh.queue_dropped
        .fetch_add(pending_dropped, Ordering::Relaxed);
}

fn dump_into(tx: &SyncSender<Msg>, sh: &Shared, reason: DumpReason) -> bool {
    if !queue_blocking(tx, sh, Msg::DumpBegin(reason)) {
        return false;
    }
    let mut alive = true;
    let r = ctsock::dump(|m| {
        if alive {
            alive = queue_blocking(tx, sh, Msg::Dumped { m, at: now_ns() });
        }
    });
    alive && queue_blocking(tx, sh, Msg::DumpEnd(reason, r))
}

fn dumper(tx: SyncSender<Msg>, sh: Arc<Shared>, evict_every: Option<Duration>) {
    // Behind the reader, with the processor (it inherits the reader's priority from main).
    crate::daemon::set_thread_nice(-5);
    if !dump_into(&tx, &sh, DumpReason::Start) {
        return;
    }
    let mut last_evict = Instant::now();
    while !stopping() {
        std::thread::sleep(TICK);
        if sh.resync.swap(false, Ordering::Relaxed) {
            if !dump_into(&tx, &sh, DumpReason::Resync) {
                return;
            }
            last_evict = Instant::now();
        } else if let Some(every) = evict_every {
            if last_evict.elapsed() >= every {
                last_evict = Instant::now();
                // The entries are not needed: the dump is for its side effect (expired
                // entries are destroyed and their events sent).
                if let Err(e) = ctsock::evict() {
                    eprintln!("ipclog: periodic conntrack dump failed: {e}");
                }
            }
        }
    }
}

/// Idle timeouts of this namespace's conntrack (seconds), to estimate when an expired
/// connection last saw a packet: the kernel destroys it `timeout` after that, plus the
/// garbage collector's delay.
#[derive(Debug, Clone)]
pub struct Timeouts {
    pub tcp_syn_sent: u64,
    pub tcp_syn_recv: u64,
    pub tcp_established: u64,
    pub udp: u64,
    pub udp_stream: u64,
    pub icmp: u64,
    pub icmpv6: u64,
    pub generic: u64,
}

impl Timeouts {
    pub fn read() -> Timeouts {
        let get = |name: &str, default: u64| {
            std::fs::read_to_string(format!("/proc/sys/net/netfilter/nf_conntrack_{name}"))
                .ok()
                .and_then(|s| s.trim().parse().ok())
                .unwrap_or(default)
        };
        Timeouts {
            tcp_syn_sent: get("tcp_timeout_syn_sent", 120),
            tcp_syn_recv: get("tcp_timeout_syn_recv", 60),
            tcp_established: get("tcp_timeout_established", 432_000),
            udp: get("udp_timeout", 30),
            udp_stream: get("udp_timeout_stream", 120),
            icmp: get("icmp_timeout", 30),
            icmpv6: get("icmpv6_timeout", 30),
            generic: get("generic_timeout", 600),
        }
    }

    fn for_entry(&self, proto: u8, state: ConnState, status: u32) -> Option<u64> {
        const IPS_ASSURED: u32 = 1 << 2;
        Some(match (proto, state) {
            (6, ConnState::Tcp(TcpState::SynSent)) => self.tcp_syn_sent,
            (6, ConnState::Tcp(TcpState::SynRecv)) => self.tcp_syn_recv,
            (6, ConnState::Tcp(TcpState::Established)) => self.tcp_established,
            (6, _) => return None,
            (17 | 136, _) if status & IPS_ASSURED != 0 => self.udp_stream,
            (17 | 136, _) => self.udp,
            (1, _) => self.icmp,
            (58, _) => self.icmpv6,
            _ => self.generic,
        })
    }
}

type Key = (u32, u8, IpAddr, IpAddr, Option<u16>, Option<u16>);

/// FNV-1a-style hasher for the open-connection map: keys come from the kernel, not from an
/// attacker who could aim at collisions through a choice of ids and tuples, and SipHash was a
/// visible share of the per-event cost under a flood.
#[derive(Default, Clone, Copy)]
pub struct FastHasher(u64);

impl std::hash::Hasher for FastHasher {
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 ^ b as u64).wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    fn write_u32(&mut self, n: u32) {
        self.0 = (self.0.rotate_left(5) ^ n as u64).wrapping_mul(0x517c_c1b7_2722_0a95);
    }
    fn write_u16(&mut self, n: u16) {
        self.write_u32(n as u32)
    }
    fn write_u8(&mut self, n: u8) {
        self.write_u32(n as u32)
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0.rotate_left(5) ^ n).wrapping_mul(0x517c_c1b7_2722_0a95);
    }
    fn write_usize(&mut self, n: usize) {
        self.write_u64(n as u64)
    }
    fn finish(&self) -> u64 {
        self.0 ^ (self.0 >> 29)
    }
}

type FastMap<K, V> = HashMap<K, V, std::hash::BuildHasherDefault<FastHasher>>;

fn key(m: &CtMsg) -> Key {
    let t = &m.orig;
    let sport = t.sport.or(t.icmp_id);
    (m.id.unwrap_or(0), t.proto, t.src, t.dst, sport, t.dport)
}

fn state_of(m: &CtMsg, previous: Option<ConnState>) -> ConnState {
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

struct Tracked {
    open_ns: u64,
    found: bool,
    state: ConnState,
    last_change_ns: u64,
    touched: u64,
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
    ev
}

/// The processor's state.
pub struct Processor {
    conns: FastMap<Key, Tracked>,
    addrs: AddrMap,
    timeouts: Timeouts,
    generation: u64,
    dump_generation: u64,
    resync_closed: HashSet<Key>,
    reported_unknown: u64,
    pub sinks: Filtered<FanOut>,
    shared: Arc<Shared>,
    pub exit_code: i32,
}

impl Processor {
    pub fn new(sinks: Filtered<FanOut>, shared: Arc<Shared>) -> Processor {
        Processor {
            conns: FastMap::default(),
            addrs: ifaddr::local_addrs().unwrap_or_default(),
            timeouts: Timeouts::read(),
            generation: 1,
            dump_generation: 0,
            resync_closed: HashSet::new(),
            reported_unknown: 0,
            sinks,
            shared,
            exit_code: 0,
        }
    }

    fn emit(&mut self, ev: &ConnEvent) {
        self.sinks.event(ev);
    }

    fn program(&mut self, msg: &str) {
        self.sinks.program(Utc::now(), msg);
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

    /// Start: the P, H and I lines.
    pub fn start(&mut self) {
        let now = Utc::now();
        self.sinks.program(now, "ipclog started");
        self.sinks.inner.raw_line(&logfmt::header_line(now));
        let lines: Vec<String> = self
            .addrs
            .iter()
            .map(|(a, n)| logfmt::interface_line(now, true, n, *a))
            .collect();
        for l in lines {
            self.sinks.inner.raw_line(&l);
        }
        self.sinks.flush();
    }

    fn poll_addrs(&mut self) {
        let Ok(new) = ifaddr::local_addrs() else {
            return;
        };
        if new != self.addrs {
            let now = Utc::now();
            for (up, n, a) in ifaddr::changes(&self.addrs, &new) {
                let l = logfmt::interface_line(now, up, &n, a);
                self.sinks.inner.raw_line(&l);
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

    fn dump_end(&mut self, reason: DumpReason, r: Result<u64, String>) {
        match r {
            Err(e) => {
                eprintln!("{e}");
                self.program(&format!("conntrack dump failed: {e}"));
                if reason == DumpReason::Start && e.contains("CAP_NET_ADMIN") {
                    self.exit_code = 2;
                    crate::daemon::STOP.store(true, Ordering::SeqCst);
                }
            }
            Ok(n) if reason == DumpReason::Resync => {
                // Connections neither in the dump nor touched by an event since it began
                // vanished while we were not listening.
                let now = now_ns();
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
        ev
    }

    pub fn open_count(&self) -> usize {
        self.conns.len()
    }

    fn dispatch(&mut self, msg: Msg) -> bool {
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
                if let Some(db) = &self.sinks.inner.db {
                    db.counters
                        .lost
                        .store(self.shared.lost.load(Ordering::Relaxed), Ordering::Relaxed);
                }
            }
            Msg::QueueDropped(n) => {
                self.program(&format!("lost {n} events (queue full)"));
            }
            Msg::Fatal(e) => {
                eprintln!("ipclog: {e}");
                self.program(&format!("error: {e}"));
                self.exit_code = 1;
                crate::daemon::STOP.store(true, Ordering::SeqCst);
                return false;
            }
        }
        true
    }
}

/// Runs the conntrack logger until SIGTERM/SIGINT; returns the exit code.
pub fn run(cfg: Config, sock: EventSocket, sinks: Filtered<FanOut>) -> i32 {
    let shared = Arc::new(Shared::default());
    let (tx, rx): (SyncSender<Msg>, Receiver<Msg>) = mpsc::sync_channel(cfg.queue.max(16));
    let mut p = Processor::new(sinks, shared.clone());
    p.start();
    let rcv = sock.rcvbuf.clone();
    let reader_t = {
        let (tx, sh) = (tx.clone(), shared.clone());
        std::thread::Builder::new()
            .name("ipclog-reader".into())
            .spawn(move || reader(sock, tx, sh))
            .expect("spawn reader")
    };
    let dumper_t = {
        let (tx, sh) = (tx.clone(), shared.clone());
        let every = cfg.evict_every;
        std::thread::Builder::new()
            .name("ipclog-dumper".into())
            .spawn(move || dumper(tx, sh, every))
            .expect("spawn dumper")
    };
    drop(tx);
    // The processor too runs ahead of ordinary work (but behind the reader): a queue that
    // fills because the processor is starved loses events just like a full socket. Set only
    // now: the reader, started from this thread, inherits this thread's priority (main set
    // it to the reader's before giving up CAP_SYS_NICE), and without the capability a thread
    // can only lower its priority, never raise it.
    crate::daemon::set_thread_nice(-5);
    if !rcv.forced {
        eprintln!(
            "ipclog: SO_RCVBUFFORCE not permitted, used SO_RCVBUF (capped by net.core.rmem_max): \
             receive buffer {} bytes instead of {}, events may be lost under load",
            rcv.actual, rcv.requested
        );
    }

    let mut last_flush = Instant::now();
    let mut last_addr_poll = Instant::now();
    let mut last_stats = Instant::now();
    let mut stats_events = 0u64;
    let mut since_flush = 0usize;
    loop {
        match rx.recv_timeout(TICK) {
            Ok(msg) => {
                p.dispatch(msg);
                since_flush += 1;
                // Take what is queued, flushing at least every 4096 events.
                while since_flush < 4096 {
                    match rx.try_recv() {
                        Ok(msg) => {
                            p.dispatch(msg);
                            since_flush += 1;
                        }
                        Err(_) => break,
                    }
                }
                if since_flush > 1 {
                    // Busy: let the next batch gather for a moment instead of being woken
                    // for every single event (a futex wake per event costs more than the
                    // event). Adds at most 1 ms of latency under load, none when idle.
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => break,
        }
        if since_flush > 0 || last_flush.elapsed() >= Duration::from_secs(1) {
            p.sinks.flush();
            since_flush = 0;
            last_flush = Instant::now();
        }
        if last_addr_poll.elapsed() >= Duration::from_secs(2) {
            last_addr_poll = Instant::now();
            p.poll_addrs();
        }
        if let Some(every) = cfg.stats_every {
            if last_stats.elapsed() >= every {
                let ev = shared.events.load(Ordering::Relaxed);
                let rate = (ev - stats_events) as f64 / last_stats.elapsed().as_secs_f64();
                stats_events = ev;
                last_stats = Instant::now();
                let (db_depth, db_dropped) = p.sinks.inner.db.as_ref().map_or((0, 0), |d| {
                    (
                        d.counters.depth.load(Ordering::Relaxed),
                        d.counters.dropped.load(Ordering::Relaxed),
                    )
                });
                eprintln!(
                    "ipclog: {rate:.0} events/s, {} open, queue {} (db {db_depth}), lost {}, dropped {} (queue) {} (db), errors {}",
                    p.open_count(),
                    shared.depth.load(Ordering::Relaxed).max(0),
                    shared.lost.load(Ordering::Relaxed),
                    shared.queue_dropped.load(Ordering::Relaxed),
                    db_dropped,
                    p.sinks.errors() + shared.decode_errors.load(Ordering::Relaxed),
                );
            }
        }
    }
    let _ = reader_t.join();
    let _ = dumper_t.join();
    // Counted after the threads ended, so nothing they saw is missing.
    let lost = shared.lost.load(Ordering::Relaxed);
    let qdropped = shared.queue_dropped.load(Ordering::Relaxed);
    let decode_errors = shared.decode_errors.load(Ordering::Relaxed);
    if decode_errors > 0 {
        p.program(&format!("{decode_errors} undecodable conntrack messages"));
    }
    let outcome =
        p.sinks
            .inner
            .finish(decode_errors, lost, qdropped, crate::sinks::RunTimes::now());
    outcome.exit_code(p.exit_code)
}

/// `ipc` / `-1`: the open connections, as O lines with the seconds open so far.
pub fn snapshot(
    filter: &crate::sinks::Filter,
    opts: logfmt::WriteOptions,
    names: Option<&crate::names::Names>,
) -> Result<(), String> {
    let addrs = ifaddr::local_addrs().unwrap_or_default();
    let mut entries = Vec::new();
    ctsock::dump(|m| entries.push(m))?;
    let now = now_ns();
    let mut evs: Vec<ConnEvent> = entries
        .iter()
        .map(|m| {
            let open = m.ts_start.unwrap_or(now);
            let mut ev = base_event(EventKind::Open, m, open, &addrs);
            ev.state = state_of(m, None);
            ev.duration = m.ts_start.map(|s| now.saturating_sub(s) as f64 / 1e9);
            ev.kernel_stop = None;
            ev
        })
        .filter(|ev| filter.matches(ev))
        .collect();
    evs.sort_by_key(|e| e.ts);
    let mut out = String::new();
    out.push_str(&logfmt::header_line(ns_to_dt(now)));
    out.push('\n');
    for ev in &evs {
        logfmt::write_event(ev, opts, &mut out);
        if let Some(n) = names {
            n.append_tokens(ev, &mut out);
        }
        out.push('\n');
    }
    use std::io::Write;
    match std::io::stdout().write_all(out.as_bytes()) {
        // `ipc | head`: the reader had what it wanted.
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        r => r.map_err(|e| format!("ipc: standard output: {e}")),
    }
}
