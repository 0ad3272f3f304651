//! IPFIX export (RFC 7011) of closed connections to a flow collector (nfdump's nfcapd,
//! pmacct, ...), over UDP or TCP, one biflow record (RFC 5103) per connection: the
//! originator's packets and octets in the ordinary elements, the responder's in the reverse
//! ones (enterprise 29305). Four templates: IPv4 and IPv6, each without and with NAT (the
//! post-NAT elements 225-228, 281-282, from conntrack's reply tuple).
//!
//! Elements: source/destination address and port, protocol, tcpControlBits (the union of the
//! flags seen, where the source knows them: the packet tracker's history), flowStart/
//! EndMilliseconds, packetDeltaCount/octetDeltaCount both ways, flowEndReason, and the
//! conntrack zone as ingressVRFID (zones are how Linux keeps VRFs apart in conntrack; the mark
//! has no IANA element and is not exported).
//!
//! `--ipfix-active-timeout SECS` exports a long connection at its first event after SECS
//! since its last export (flowEndReason 2, active timeout) with the counts since then, so the
//! records of one connection add up to its totals. Conntrack says a connection's counters
//! only with its events (state changes and the close), so a quiet connection is exported at
//! its next event.

use std::io::Write;
use std::net::{IpAddr, SocketAddr, TcpStream, ToSocketAddrs, UdpSocket};
use std::time::{Duration, Instant};

use rustc_hash::FxHashMap;
use shared::event::epoch_secs;
use shared::{ConnEvent, ConnKey, ConnState, Counters, EventKind, TcpState};

use super::remote::{Failure, Item, Remote};

/// The transport the collector listens on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Udp,
    Tcp,
}

/// `--ipfix HOST:PORT[/udp|/tcp]`, parsed.
#[derive(Debug, Clone)]
pub struct Target {
    pub host: String,
    pub port: u16,
    pub transport: Transport,
}

impl Target {
    pub fn parse(s: &str) -> Result<Target, String> {
        let (addr, transport) = match s.rsplit_once('/') {
            Some((a, "udp")) => (a, Transport::Udp),
            Some((a, "tcp")) => (a, Transport::Tcp),
            Some((_, t)) => {
                return Err(format!(
                    "--ipfix {}: transport {} is not udp or tcp",
                    shared::text::escaped(s),
                    shared::text::escaped(t)
                ))
            }
            None => (s, Transport::Udp),
        };
        let bad = || {
            format!(
                "--ipfix {}: expected HOST:PORT[/udp|/tcp] (an IPv6 address in brackets)",
                shared::text::escaped(s)
            )
        };
        let (host, port) = addr.rsplit_once(':').ok_or_else(bad)?;
        let port: u16 = port.parse().map_err(|_| bad())?;
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if host.is_empty() || port == 0 {
            return Err(bad());
        }
        Ok(Target {
            host: host.to_string(),
            port,
            transport,
        })
    }

    /// How messages name it: `ipfix HOST:PORT/udp`.
    pub fn shown(&self) -> String {
        let t = match self.transport {
            Transport::Udp => "udp",
            Transport::Tcp => "tcp",
        };
        let host = shared::text::escaped(&self.host);
        match self.host.contains(':') {
            true => format!("ipfix [{host}]:{}/{t}", self.port),
            false => format!("ipfix {host}:{}/{t}", self.port),
        }
    }
}

/// The reverse information elements' enterprise number (RFC 5103).
const REVERSE_PEN: u32 = 29305;

/// (element id, length, reverse)
type Spec = (u16, u16, bool);

const V4: &[Spec] = &[(8, 4, false), (12, 4, false)];
const V6: &[Spec] = &[(27, 16, false), (28, 16, false)];
const COMMON: &[Spec] = &[
    (7, 2, false),   // sourceTransportPort
    (11, 2, false),  // destinationTransportPort
    (4, 1, false),   // protocolIdentifier
    (6, 1, false),   // tcpControlBits (reduced size: the classic eight flags)
    (152, 8, false), // flowStartMilliseconds
    (153, 8, false), // flowEndMilliseconds
    (2, 8, false),   // packetDeltaCount
    (1, 8, false),   // octetDeltaCount
    (2, 8, true),    // reversePacketDeltaCount
    (1, 8, true),    // reverseOctetDeltaCount
    (136, 1, false), // flowEndReason
    (234, 4, false), // ingressVRFID: the conntrack zone
];
const NAT4: &[Spec] = &[
    (225, 4, false),
    (226, 4, false),
    (227, 2, false),
    (228, 2, false),
];
const NAT6: &[Spec] = &[
    (281, 16, false),
    (282, 16, false),
    (227, 2, false),
    (228, 2, false),
];

/// Template ids: IPv4, IPv6, IPv4 with NAT, IPv6 with NAT.
const TEMPLATES: [(u16, &[&[Spec]]); 4] = [
    (256, &[V4, COMMON]),
    (257, &[V6, COMMON]),
    (258, &[V4, COMMON, NAT4]),
    (259, &[V6, COMMON, NAT6]),
];

/// The template set: every template, as each message that carries templates begins.
fn template_set() -> Vec<u8> {
    let mut b = Vec::new();
    b.extend_from_slice(&2u16.to_be_bytes());
    b.extend_from_slice(&0u16.to_be_bytes());
    for (id, parts) in TEMPLATES {
        let specs: Vec<Spec> = parts.iter().flat_map(|p| p.iter().copied()).collect();
        b.extend_from_slice(&id.to_be_bytes());
        b.extend_from_slice(&(specs.len() as u16).to_be_bytes());
        for (ie, len, rev) in specs {
            match rev {
                true => {
                    b.extend_from_slice(&(ie | 0x8000).to_be_bytes());
                    b.extend_from_slice(&len.to_be_bytes());
                    b.extend_from_slice(&REVERSE_PEN.to_be_bytes());
                }
                false => {
                    b.extend_from_slice(&ie.to_be_bytes());
                    b.extend_from_slice(&len.to_be_bytes());
                }
            }
        }
    }
    let len = b.len() as u16;
    b[2..4].copy_from_slice(&len.to_be_bytes());
    b
}

/// flowEndReason values (RFC 7011's IANA registry).
const IDLE_TIMEOUT: u8 = 1;
const ACTIVE_TIMEOUT: u8 = 2;
const END_DETECTED: u8 = 3;

/// The union of the TCP flags the packet tracker's history letters say were seen (Zeek's
/// letters: SYN, SYN-ACK, ACK, data, FIN, RST; upper case from the originator).
fn tcp_flags(ev: &ConnEvent) -> u8 {
    let Some(h) = &ev.history else { return 0 };
    let mut f = 0u8;
    for c in h.chars() {
        f |= match c.to_ascii_lowercase() {
            's' => 0x02,
            'h' => 0x12,
            'a' | 'd' => 0x10,
            'f' => 0x01,
            'r' => 0x04,
            _ => 0,
        };
    }
    f
}

fn push_addr(b: &mut Vec<u8>, a: IpAddr) {
    match a {
        IpAddr::V4(a) => b.extend_from_slice(&a.octets()),
        IpAddr::V6(a) => b.extend_from_slice(&a.octets()),
    }
}

/// One connection's record: template id, then the record as the template lays it out.
fn record(ev: &ConnEvent, start_ms: u64, c: Counters, reason: u8) -> Option<Item> {
    let o = ev.orig;
    let v6 = o.src.is_ipv6();
    if o.dst.is_ipv6() != v6 {
        return None;
    }
    // conntrack's reply tuple: the responder (after DNAT) answers the translated source.
    let nat = ev
        .reply
        .filter(|r| r.src.is_ipv6() == v6 && r.dst.is_ipv6() == v6)
        .filter(|r| *r != o.reversed());
    let id: u16 = match (v6, nat.is_some()) {
        (false, false) => 256,
        (true, false) => 257,
        (false, true) => 258,
        (true, true) => 259,
    };
    let mut b = Vec::with_capacity(2 + 100);
    b.extend_from_slice(&id.to_be_bytes());
    push_addr(&mut b, o.src);
    push_addr(&mut b, o.dst);
    b.extend_from_slice(&o.sport.unwrap_or(0).to_be_bytes());
    b.extend_from_slice(&o.dport.unwrap_or(0).to_be_bytes());
    b.push(ev.proto);
    b.push(if ev.proto == 6 { tcp_flags(ev) } else { 0 });
    b.extend_from_slice(&start_ms.to_be_bytes());
    b.extend_from_slice(&ms(epoch_secs(ev.ts)).max(start_ms).to_be_bytes());
    for n in [c.orig_pkts, c.orig_ip_bytes, c.resp_pkts, c.resp_ip_bytes] {
        b.extend_from_slice(&n.to_be_bytes());
    }
    b.push(reason);
    b.extend_from_slice(&u32::from(ev.zone.unwrap_or(0)).to_be_bytes());
    if let Some(r) = nat {
        push_addr(&mut b, r.dst);
        push_addr(&mut b, r.src);
        b.extend_from_slice(&r.dport.unwrap_or(0).to_be_bytes());
        b.extend_from_slice(&r.sport.unwrap_or(0).to_be_bytes());
    }
    Some(b)
}

fn ms(secs: f64) -> u64 {
    (secs * 1000.0).round().max(0.0) as u64
}

fn minus(a: Counters, b: Counters) -> Counters {
    Counters {
        orig_pkts: a.orig_pkts.saturating_sub(b.orig_pkts),
        orig_ip_bytes: a.orig_ip_bytes.saturating_sub(b.orig_ip_bytes),
        resp_pkts: a.resp_pkts.saturating_sub(b.resp_pkts),
        resp_ip_bytes: a.resp_ip_bytes.saturating_sub(b.resp_ip_bytes),
        orig_bytes: None,
        resp_bytes: None,
    }
}

/// Turns events into records: closes, and with an active timeout the long connections'
/// updates.
pub struct Encoder {
    active_timeout: Option<Duration>,
    /// With an active timeout: each connection exported so far, when it was last exported
    /// (ms) and what its counters were then.
    exported: FxHashMap<ConnKey, (u64, Counters)>,
}

impl Encoder {
    pub fn new(active_timeout: Option<Duration>) -> Encoder {
        Encoder {
            active_timeout,
            exported: FxHashMap::default(),
        }
    }

    pub fn encode(&mut self, ev: &ConnEvent, out: &mut Vec<Item>) {
        let counters = ev.counters.unwrap_or_default();
        let start = ms(ev.start_ts());
        let Some(timeout) = self.active_timeout else {
            if ev.kind == EventKind::Close {
                out.extend(record(ev, start, counters, end_reason(ev)));
            }
            return;
        };
        let key = ev.key();
        let (since, before) = match ev.kind {
            EventKind::Open => {
                self.exported.remove(&key);
                return;
            }
            EventKind::Close => self
                .exported
                .remove(&key)
                .unwrap_or((start, Counters::default())),
            EventKind::Update => {
                let (since, before) = *self
                    .exported
                    .get(&key)
                    .unwrap_or(&(start, Counters::default()));
                let now = ms(epoch_secs(ev.ts));
                if now.saturating_sub(since) < timeout.as_millis() as u64 || ev.counters.is_none() {
                    return;
                }
                out.extend(record(ev, since, minus(counters, before), ACTIVE_TIMEOUT));
                self.exported.insert(key, (now, counters));
                return;
            }
        };
        out.extend(record(ev, since, minus(counters, before), end_reason(ev)));
    }
}

/// A TCP connection that closed through FIN or RST ended as seen; the rest timed out.
fn end_reason(ev: &ConnEvent) -> u8 {
    match ev.state {
        ConnState::Tcp(TcpState::TimeWait | TcpState::Close | TcpState::LastAck) => END_DETECTED,
        _ if ev
            .history
            .as_deref()
            .is_some_and(|h| h.contains(['F', 'f', 'R', 'r'])) =>
        {
            END_DETECTED
        }
        _ => IDLE_TIMEOUT,
    }
}

/// Largest message: under a 1500-byte MTU for UDP (RFC 7011 10.3.3), larger for TCP.
const UDP_MAX: usize = 1400;
const TCP_MAX: usize = 16384;
/// Templates again every so often over UDP (a collector that restarted learns them).
const TEMPLATE_REFRESH: Duration = Duration::from_secs(30);

enum Conn {
    Udp(UdpSocket),
    Tcp(TcpStream),
    None,
}

/// The exporting process: one observation domain, one transport session at a time.
pub struct Exporter {
    target: Target,
    domain: u32,
    encoder: Encoder,
    conn: Conn,
    /// Data records sent in this transport session (the header's sequence number).
    seq: u32,
    /// When the templates were last sent (None: they must go with the next message).
    templates_sent: Option<Instant>,
}

impl Exporter {
    /// Connects to the collector now (a start-up check: a refused TCP connection or an
    /// unknown host is an error before anything is logged).
    pub fn open(
        target: Target,
        domain: u32,
        active_timeout: Option<Duration>,
    ) -> Result<Exporter, String> {
        let mut e = Exporter {
            target,
            domain,
            encoder: Encoder::new(active_timeout),
            conn: Conn::None,
            seq: 0,
            templates_sent: None,
        };
        e.connect_now()?;
        Ok(e)
    }

    fn addrs(&self) -> Result<Vec<SocketAddr>, String> {
        let shown = self.target.shown();
        let addrs: Vec<SocketAddr> = (self.target.host.as_str(), self.target.port)
            .to_socket_addrs()
            .map_err(|e| format!("{shown}: cannot resolve the host: {e}"))?
            .collect();
        if addrs.is_empty() {
            return Err(format!("{shown}: the host has no address"));
        }
        Ok(addrs)
    }

    fn connect_now(&mut self) -> Result<(), String> {
        let shown = self.target.shown();
        let addrs = self.addrs()?;
        let mut last = String::new();
        for a in addrs {
            let r = match self.target.transport {
                Transport::Udp => {
                    let any: SocketAddr = match a {
                        SocketAddr::V4(_) => "0.0.0.0:0".parse().expect("address"),
                        SocketAddr::V6(_) => "[::]:0".parse().expect("address"),
                    };
                    UdpSocket::bind(any)
                        .and_then(|s| s.connect(a).map(|()| s))
                        .map(Conn::Udp)
                }
                Transport::Tcp => TcpStream::connect_timeout(&a, Duration::from_secs(5))
                    .and_then(|s| {
                        // A collector that stops reading fails the write after this, and the
                        // records go to the spool.
                        s.set_write_timeout(Some(Duration::from_secs(5)))?;
                        s.set_nodelay(true)?;
                        Ok(s)
                    })
                    .map(Conn::Tcp),
            };
            match r {
                Ok(c) => {
                    self.conn = c;
                    // A new transport session: sequence numbers and templates start again.
                    if self.target.transport == Transport::Tcp {
                        self.seq = 0;
                    }
                    self.templates_sent = None;
                    return Ok(());
                }
                Err(e) => last = format!("{shown}: cannot connect to {a}: {e}"),
            }
        }
        Err(last)
    }

    /// The messages for `items`, in order, each at most the transport's size.
    fn messages(&mut self, items: &[Item]) -> Vec<Vec<u8>> {
        let max = match self.target.transport {
            Transport::Udp => UDP_MAX,
            Transport::Tcp => TCP_MAX,
        };
        let now = chrono::Utc::now().timestamp().max(0) as u32;
        let mut out = Vec::new();
        let mut i = 0;
        while i < items.len() || (out.is_empty() && self.templates_due()) {
            let mut m = Vec::with_capacity(max);
            m.extend_from_slice(&10u16.to_be_bytes());
            m.extend_from_slice(&0u16.to_be_bytes());
            m.extend_from_slice(&now.to_be_bytes());
            m.extend_from_slice(&self.seq.to_be_bytes());
            m.extend_from_slice(&self.domain.to_be_bytes());
            if self.templates_due() {
                m.extend_from_slice(&template_set());
                self.templates_sent = Some(Instant::now());
            }
            // Data sets: consecutive records of one template share a set.
            while i < items.len() {
                let id = &items[i][..2];
                if m.len() + 4 + items[i].len() - 2 > max {
                    break;
                }
                let set_at = m.len();
                m.extend_from_slice(id);
                m.extend_from_slice(&0u16.to_be_bytes());
                while i < items.len() && &items[i][..2] == id && m.len() + items[i].len() - 2 <= max
                {
                    m.extend_from_slice(&items[i][2..]);
                    self.seq = self.seq.wrapping_add(1);
                    i += 1;
                }
                let len = (m.len() - set_at) as u16;
                m[set_at + 2..set_at + 4].copy_from_slice(&len.to_be_bytes());
            }
            let len = m.len() as u16;
            m[2..4].copy_from_slice(&len.to_be_bytes());
            out.push(m);
        }
        out
    }

    fn templates_due(&self) -> bool {
        match (self.templates_sent, self.target.transport) {
            (None, _) => true,
            (Some(t), Transport::Udp) => t.elapsed() >= TEMPLATE_REFRESH,
            (Some(_), Transport::Tcp) => false,
        }
    }
}

impl Remote for Exporter {
    fn encode(&mut self, ev: &ConnEvent, out: &mut Vec<Item>) {
        self.encoder.encode(ev, out);
    }

    fn connect(&mut self) -> Result<(), String> {
        self.connect_now()
    }

    fn send(&mut self, items: &[Item]) -> Result<(), Failure> {
        if let Conn::Tcp(s) = &self.conn {
            // A collector that closed the connection sends nothing before (IPFIX over TCP is
            // one way), so an end of stream here means it is gone: what would be written now
            // would vanish in the socket's buffer without an error.
            if peer_closed(s) {
                self.conn = Conn::None;
                return Err(Failure::Down("the collector closed the connection".into()));
            }
        }
        let seq = self.seq;
        let sent = self.templates_sent;
        let msgs = self.messages(items);
        let r = msgs.iter().try_for_each(|m| match &mut self.conn {
            Conn::Udp(s) => s.send(m).map(drop),
            Conn::Tcp(s) => s.write_all(m),
            Conn::None => Err(std::io::Error::from(std::io::ErrorKind::NotConnected)),
        });
        r.map_err(|e| {
            // Sent again later, as one more try: the session's numbering and templates go
            // back to where they were (over TCP, a new connection starts them anew anyway).
            self.seq = seq;
            self.templates_sent = sent;
            self.conn = Conn::None;
            Failure::Down(format!("cannot send: {e}"))
        })
    }
}

/// Whether the collector closed (or reset) the connection, without waiting.
fn peer_closed(s: &TcpStream) -> bool {
    let mut b = [0u8; 1];
    if s.set_nonblocking(true).is_err() {
        return true;
    }
    let r = s.peek(&mut b);
    let _ = s.set_nonblocking(false);
    match r {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) => e.kind() != std::io::ErrorKind::WouldBlock,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each of the four templates describes exactly the records made for it.
    #[test]
    fn records_are_as_long_as_their_template_says() {
        use shared::FlowTuple;
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let mut cases = Vec::new();
        for (a, b, nat) in [
            ("10.0.0.1", "10.0.1.1", "192.168.0.1"),
            ("fd00::1", "fd00::2", "fd00:9::1"),
        ] {
            let mut e = super::super::test_event();
            e.orig = FlowTuple::new(ip(a), ip(b), Some(40000), Some(80));
            e.reply = None;
            cases.push(e.clone());
            e.reply = Some(FlowTuple::new(ip(b), ip(nat), Some(80), Some(40000)));
            cases.push(e);
        }
        for (e, want) in cases.iter().zip([256u16, 258, 257, 259]) {
            let r = record(e, 0, Counters::default(), 1).unwrap();
            let id = u16::from_be_bytes([r[0], r[1]]);
            assert_eq!(id, want);
            let (_, parts) = TEMPLATES.iter().find(|(t, _)| *t == id).unwrap();
            let len: usize = parts
                .iter()
                .flat_map(|p| p.iter())
                .map(|s| s.1 as usize)
                .sum();
            assert_eq!(r.len() - 2, len, "template {id}");
        }
    }

    #[test]
    fn targets_parse() {
        let t = Target::parse("192.0.2.1:4739/tcp").unwrap();
        assert_eq!(
            (t.host.as_str(), t.port, t.transport),
            ("192.0.2.1", 4739, Transport::Tcp)
        );
        let t = Target::parse("[::1]:2055").unwrap();
        assert_eq!(
            (t.host.as_str(), t.port, t.transport),
            ("::1", 2055, Transport::Udp)
        );
        assert!(Target::parse("host").is_err());
        assert!(Target::parse("host:0").is_err());
        assert!(Target::parse("host:1/sctp").is_err());
    }

    #[test]
    fn messages_stay_under_the_udp_size_and_number_records() {
        let mut e = Exporter {
            target: Target::parse("127.0.0.1:9/udp").unwrap(),
            domain: 7,
            encoder: Encoder::new(None),
            conn: Conn::None,
            seq: 0,
            templates_sent: None,
        };
        let ev = super::super::test_event();
        let items: Vec<Item> = (0..100)
            .map(|_| record(&ev, 0, Counters::default(), 1).unwrap())
            .collect();
        let msgs = e.messages(&items);
        assert!(msgs.len() > 1);
        let mut seq = 0;
        for m in &msgs {
            assert!(m.len() <= UDP_MAX);
            assert_eq!(u16::from_be_bytes([m[2], m[3]]) as usize, m.len());
            assert_eq!(u32::from_be_bytes([m[8], m[9], m[10], m[11]]), seq);
            assert_eq!(u32::from_be_bytes([m[12], m[13], m[14], m[15]]), 7);
            // The test event is NATed: template 258's record is 2+4+4+... bytes.
            let per = items[0].len() - 2;
            let mut at = 16;
            while at < m.len() {
                let (id, len) = (
                    u16::from_be_bytes([m[at], m[at + 1]]),
                    u16::from_be_bytes([m[at + 2], m[at + 3]]),
                );
                if id == 258 {
                    seq += ((len as usize - 4) / per) as u32;
                }
                at += len as usize;
            }
        }
        assert_eq!(seq, 100);
        assert_eq!(e.seq, 100);
    }
}
