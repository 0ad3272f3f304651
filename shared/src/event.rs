//! The connection event: one record per open, state change or close of a connection, in the
//! spirit of Zeek's conn.log but emitted at each step rather than only at the end.

use std::net::IpAddr;

use chrono::{DateTime, Utc};

/// What happened to the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventKind {
    /// The connection appeared. Written as an `O` line.
    Open,
    /// Its state changed (TCP state, UDP replied). Written as an `S` line.
    Update,
    /// It ended (or the tracker gave up on it). Written as a `C` line.
    Close,
}

impl EventKind {
    /// The log's line letter.
    pub fn letter(self) -> char {
        match self {
            EventKind::Open => 'O',
            EventKind::Update => 'S',
            EventKind::Close => 'C',
        }
    }

    /// The name JSON gives it.
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Open => "open",
            EventKind::Update => "update",
            EventKind::Close => "close",
        }
    }
}

/// Who saw the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Source {
    /// Netfilter connection tracking (ctnetlink events or a table dump).
    Conntrack,
    /// Packets, from a capture file or a live interface.
    Pcap,
    /// Packets a packet filter logged (NFLOG); a run's source only, never a connection's.
    Nflog,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Conntrack => "conntrack",
            Source::Pcap => "pcap",
            Source::Nflog => "nflog",
        }
    }

    pub fn parse(s: &str) -> Option<Source> {
        match s {
            "conntrack" => Some(Source::Conntrack),
            "pcap" => Some(Source::Pcap),
            "nflog" => Some(Source::Nflog),
            _ => None,
        }
    }
}

/// One direction of a connection: addresses and, for protocols that have them, ports. For ICMP
/// the ports are `None` (the id/type/code, where a source knows them, go into `icmp`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FlowTuple {
    pub src: IpAddr,
    pub dst: IpAddr,
    pub sport: Option<u16>,
    pub dport: Option<u16>,
}

impl FlowTuple {
    pub fn new(src: IpAddr, dst: IpAddr, sport: Option<u16>, dport: Option<u16>) -> Self {
        FlowTuple {
            src,
            dst,
            sport,
            dport,
        }
    }

    /// The same flow seen from the other end.
    pub fn reversed(&self) -> FlowTuple {
        FlowTuple {
            src: self.dst,
            dst: self.src,
            sport: self.dport,
            dport: self.sport,
        }
    }
}

/// Where the connection runs relative to this host, as far as the source can tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Direction {
    /// From elsewhere to an address of this host.
    Incoming,
    /// From an address of this host to elsewhere.
    Outgoing,
    /// Through this host (routed, possibly NATed).
    Forwarded,
    /// Between two addresses of this host.
    Local,
    /// A packet capture cannot tell.
    #[default]
    Unknown,
}

impl Direction {
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Incoming => "in",
            Direction::Outgoing => "out",
            Direction::Forwarded => "fwd",
            Direction::Local => "local",
            Direction::Unknown => "-",
        }
    }

    pub fn parse(s: &str) -> Option<Direction> {
        Some(match s {
            "in" => Direction::Incoming,
            "out" => Direction::Outgoing,
            "fwd" => Direction::Forwarded,
            "local" => Direction::Local,
            "-" => Direction::Unknown,
            _ => return None,
        })
    }
}

/// TCP states as conntrack names them (`nf_conntrack_tcp.h`); the packet tracker maps its own
/// view onto the same set so both sources log the same letters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TcpState {
    None,
    SynSent,
    SynRecv,
    Established,
    FinWait,
    CloseWait,
    LastAck,
    TimeWait,
    Close,
    Listen,
    SynSent2,
}

impl TcpState {
    /// From conntrack's numeric TCP state (`CTA_PROTOINFO_TCP_STATE`).
    pub fn from_conntrack(n: u8) -> TcpState {
        match n {
            1 => TcpState::SynSent,
            2 => TcpState::SynRecv,
            3 => TcpState::Established,
            4 => TcpState::FinWait,
            5 => TcpState::CloseWait,
            6 => TcpState::LastAck,
            7 => TcpState::TimeWait,
            8 => TcpState::Close,
            9 => TcpState::Listen,
            10 => TcpState::SynSent2,
            _ => TcpState::None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            TcpState::None => "NONE",
            TcpState::SynSent => "SYN_SENT",
            TcpState::SynRecv => "SYN_RECV",
            TcpState::Established => "ESTABLISHED",
            TcpState::FinWait => "FIN_WAIT",
            TcpState::CloseWait => "CLOSE_WAIT",
            TcpState::LastAck => "LAST_ACK",
            TcpState::TimeWait => "TIME_WAIT",
            TcpState::Close => "CLOSE",
            TcpState::Listen => "LISTEN",
            TcpState::SynSent2 => "SYN_SENT2",
        }
    }

    pub fn parse(s: &str) -> Option<TcpState> {
        Some(match s {
            "NONE" => TcpState::None,
            "SYN_SENT" => TcpState::SynSent,
            "SYN_RECV" => TcpState::SynRecv,
            "ESTABLISHED" => TcpState::Established,
            "FIN_WAIT" => TcpState::FinWait,
            "CLOSE_WAIT" => TcpState::CloseWait,
            "LAST_ACK" => TcpState::LastAck,
            "TIME_WAIT" => TcpState::TimeWait,
            "CLOSE" => TcpState::Close,
            "LISTEN" => TcpState::Listen,
            "SYN_SENT2" => TcpState::SynSent2,
            _ => return None,
        })
    }
}

/// The connection's state as the log's `fl` column shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ConnState {
    Tcp(TcpState),
    /// UDP (or another connectionless protocol) that has seen no reply yet.
    Unreplied,
    /// UDP (or another connectionless protocol) that has seen traffic both ways.
    Replied,
    /// A protocol without states we track.
    Other,
}

impl ConnState {
    /// The state's name in the SQLite history and JSON: the TCP state (`ESTABLISHED`, ...) or
    /// `UNREPLIED`, `REPLIED`, `OTHER`.
    pub fn name(self) -> &'static str {
        match self {
            ConnState::Tcp(t) => t.as_str(),
            ConnState::Unreplied => "UNREPLIED",
            ConnState::Replied => "REPLIED",
            ConnState::Other => "OTHER",
        }
    }

    /// The seed's one-letter flag: `e` established, `t` TIME_WAIT, `c` CLOSE, `w` the other wait
    /// states (FIN_WAIT, CLOSE_WAIT, LAST_ACK), `s` handshake in progress (SYN_SENT, SYN_RECV,
    /// SYN_SENT2, LISTEN), `U` unreplied, `-` replied or stateless.
    pub fn flag(self) -> char {
        match self {
            ConnState::Tcp(t) => match t {
                TcpState::Established => 'e',
                TcpState::TimeWait => 't',
                TcpState::Close => 'c',
                TcpState::FinWait | TcpState::CloseWait | TcpState::LastAck => 'w',
                TcpState::SynSent | TcpState::SynRecv | TcpState::SynSent2 | TcpState::Listen => {
                    's'
                }
                TcpState::None => '-',
            },
            ConnState::Unreplied => 'U',
            ConnState::Replied | ConnState::Other => '-',
        }
    }
}

/// Zeek's conn_state: how a connection went, summed up from what each side did (Zeek's
/// `base/protocols/conn/main.zeek` documents each one). The packet tracker sets it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ZeekState {
    /// Connection attempt seen, no reply.
    S0,
    /// Established, not terminated.
    S1,
    /// Normal establishment and termination.
    Sf,
    /// Connection attempt rejected.
    Rej,
    /// Established, close attempt by the originator seen (no reply from the responder).
    S2,
    /// Established, close attempt by the responder seen (no reply from the originator).
    S3,
    /// Established, the originator aborted (sent a RST).
    Rsto,
    /// Established, the responder aborted.
    Rstr,
    /// The originator sent a SYN followed by a RST; no SYN-ACK from the responder.
    Rstos0,
    /// The responder sent a SYN-ACK followed by a RST; no SYN from the originator.
    Rstrh,
    /// The originator sent a SYN followed by a FIN; no SYN-ACK from the responder.
    Sh,
    /// The responder sent a SYN-ACK followed by a FIN; no SYN from the originator.
    Shr,
    /// No SYN seen, just midstream traffic.
    Oth,
}

impl ZeekState {
    /// Every state, in the order Zeek's documentation lists them.
    pub const ALL: [ZeekState; 13] = [
        ZeekState::S0,
        ZeekState::S1,
        ZeekState::Sf,
        ZeekState::Rej,
        ZeekState::S2,
        ZeekState::S3,
        ZeekState::Rsto,
        ZeekState::Rstr,
        ZeekState::Rstos0,
        ZeekState::Rstrh,
        ZeekState::Sh,
        ZeekState::Shr,
        ZeekState::Oth,
    ];

    /// Zeek's name, as the log, the SQLite history and JSON write it.
    pub fn as_str(self) -> &'static str {
        match self {
            ZeekState::S0 => "S0",
            ZeekState::S1 => "S1",
            ZeekState::Sf => "SF",
            ZeekState::Rej => "REJ",
            ZeekState::S2 => "S2",
            ZeekState::S3 => "S3",
            ZeekState::Rsto => "RSTO",
            ZeekState::Rstr => "RSTR",
            ZeekState::Rstos0 => "RSTOS0",
            ZeekState::Rstrh => "RSTRH",
            ZeekState::Sh => "SH",
            ZeekState::Shr => "SHR",
            ZeekState::Oth => "OTH",
        }
    }

    /// The state of a Zeek name; `None` for anything else.
    pub fn parse(s: &str) -> Option<ZeekState> {
        // A match rather than a search of `ALL`: the packet tracker names its state this way
        // for every event it emits.
        Some(match s {
            "S0" => ZeekState::S0,
            "S1" => ZeekState::S1,
            "SF" => ZeekState::Sf,
            "REJ" => ZeekState::Rej,
            "S2" => ZeekState::S2,
            "S3" => ZeekState::S3,
            "RSTO" => ZeekState::Rsto,
            "RSTR" => ZeekState::Rstr,
            "RSTOS0" => ZeekState::Rstos0,
            "RSTRH" => ZeekState::Rstrh,
            "SH" => ZeekState::Sh,
            "SHR" => ZeekState::Shr,
            "OTH" => ZeekState::Oth,
            _ => return None,
        })
    }
}

/// Packet and byte counts, one set per direction. `*_ip_bytes` count whole IP packets (what
/// conntrack's accounting counts); `*_bytes` count transport payload (only packet captures
/// know it). Field names are Zeek's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Counters {
    /// Packets from the originator.
    pub orig_pkts: u64,
    /// Their IP bytes.
    pub orig_ip_bytes: u64,
    /// Packets from the responder.
    pub resp_pkts: u64,
    /// Their IP bytes.
    pub resp_ip_bytes: u64,
    /// Payload the originator sent (by sequence space for TCP), where known.
    pub orig_bytes: Option<u64>,
    /// Payload the responder sent.
    pub resp_bytes: Option<u64>,
}

/// Problems a packet view reveals (miruo's lookups), each a count for the connection so far.
/// All zero means nothing was noticed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Anomalies {
    /// Data segments retransmitted later than the `--retransmit` threshold.
    pub retransmits: u32,
    /// SYN or SYN-ACK retransmissions.
    pub syn_retransmits: u32,
    /// RST segments counted under the `--rst` mode.
    pub resets: u32,
    /// Segments that arrived later than the `--long-delay` threshold after the previous one.
    pub long_delays: u32,
    /// IP fragments that carried this connection's packets.
    pub fragments: u32,
    /// The connection lasted longer than the `--long-connect` threshold.
    pub long_connect: bool,
}

impl Anomalies {
    pub fn is_empty(&self) -> bool {
        *self == Anomalies::default()
    }

    /// The anomalies' names, in the log's order: the names of their fields in
    /// [`crate::record::FIELDS`], so every output calls them so.
    pub const KEYS: [&'static str; 6] = [
        "retrans",
        "syn_retrans",
        "rst",
        "long_delay",
        "frag",
        "long_conn",
    ];

    /// The anomaly names ([`Anomalies::KEYS`]) and values.
    pub fn entries(&self) -> [(&'static str, u32); 6] {
        let values = [
            self.retransmits,
            self.syn_retransmits,
            self.resets,
            self.long_delays,
            self.fragments,
            self.long_connect as u32,
        ];
        std::array::from_fn(|i| (Self::KEYS[i], values[i]))
    }
}

/// Which connection an event belongs to, among those open at the same time: what the store
/// keeps a row per, and what a sink that merges a connection's events keys on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ConnKey {
    pub source: Source,
    pub conn_id: u64,
    pub proto: u8,
    pub orig: FlowTuple,
}

/// One thing that happened to one connection.
#[derive(Debug, Clone, PartialEq)]
pub struct ConnEvent {
    pub kind: EventKind,
    /// When it happened: the kernel's or the clock's time for conntrack, the packet's time for
    /// captures.
    pub ts: DateTime<Utc>,
    pub source: Source,
    /// Identifies the connection among those open at the same time: conntrack's id, or the
    /// packet tracker's flow number. Sinks key on [`ConnEvent::key`].
    pub conn_id: u64,
    /// IP protocol number.
    pub proto: u8,
    /// The connection as its first packet travelled (originator → responder).
    pub orig: FlowTuple,
    /// The connection as replies travel, when the source knows it (conntrack). Differs from
    /// `orig.reversed()` exactly when NAT rewrote something.
    pub reply: Option<FlowTuple>,
    /// The interface whose address is the originator, when the originator is this host.
    pub src_iface: Option<String>,
    /// The interface whose address is the responder, when the responder is this host.
    pub dst_iface: Option<String>,
    pub direction: Direction,
    pub state: ConnState,
    /// Seconds since the connection opened: so far for `Update`, total for `Close`.
    pub duration: Option<f64>,
    /// The connection was already open when the logger started (found by the start-up dump or a
    /// resync), so its open time is not known.
    pub found_at_start: bool,
    pub counters: Option<Counters>,
    pub anomalies: Anomalies,
    /// Zeek's conn_state, from the packet tracker.
    pub zeek_state: Option<ZeekState>,
    /// Zeek's history letters, from the packet tracker.
    pub history: Option<String>,
    /// Zeek-style unique id of the connection (packet tracker).
    pub uid: Option<String>,
    /// Conntrack mark and zone, when non-zero.
    pub mark: Option<u32>,
    pub zone: Option<u16>,
    /// Kernel start and stop time of the conntrack entry (`nf_conntrack_timestamp`).
    pub kernel_start: Option<DateTime<Utc>>,
    pub kernel_stop: Option<DateTime<Utc>>,
    /// The local process that owns the connection's socket (`--proc`).
    pub process: Option<Process>,
    /// The uid of the connection this one was carried in (packet tracker: the outer flow of
    /// a decapsulated tunnel), Zeek's `tunnel_parents`.
    pub tunnel_parents: Option<String>,
    /// ICMP/ICMPv6 type and code of the originator's first message.
    pub icmp: Option<IcmpTypeCode>,
    /// The first HTTP/1.x request's method, Host and URI, and the first response's status
    /// (packet tracker with `--dpi http`; foreign text, escaped by the outputs).
    pub http_method: Option<String>,
    pub http_host: Option<String>,
    pub http_uri: Option<String>,
    pub http_status: Option<u16>,
}

/// An ICMP message's type and code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IcmpTypeCode {
    pub kind: u8,
    pub code: u8,
}

/// Who owns a connection's local socket: the socket's uid (from the kernel's socket table) and
/// a process holding it open (from `/proc`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Process {
    pub pid: u32,
    /// `/proc/PID/comm`: foreign text, escaped by the log.
    pub comm: String,
    pub uid: u32,
}

impl ConnEvent {
    /// An event with only the identifying fields set; sources fill in the rest.
    pub fn new(
        kind: EventKind,
        ts: DateTime<Utc>,
        source: Source,
        conn_id: u64,
        proto: u8,
        orig: FlowTuple,
    ) -> ConnEvent {
        ConnEvent {
            kind,
            ts,
            source,
            conn_id,
            proto,
            orig,
            reply: None,
            src_iface: None,
            dst_iface: None,
            direction: Direction::Unknown,
            state: ConnState::Other,
            duration: None,
            found_at_start: false,
            counters: None,
            anomalies: Anomalies::default(),
            zeek_state: None,
            history: None,
            uid: None,
            mark: None,
            zone: None,
            kernel_start: None,
            kernel_stop: None,
            process: None,
            tunnel_parents: None,
            icmp: None,
            http_method: None,
            http_host: None,
            http_uri: None,
            http_status: None,
        }
    }

    /// The connection this event belongs to.
    pub fn key(&self) -> ConnKey {
        ConnKey {
            source: self.source,
            conn_id: self.conn_id,
            proto: self.proto,
            orig: self.orig,
        }
    }

    /// When the connection opened, in epoch seconds: the event's time less its duration for an
    /// update or close, the event's time for an open (or when the duration is unknown).
    pub fn start_ts(&self) -> f64 {
        match self.duration {
            Some(d) if self.kind != EventKind::Open => epoch_secs(self.ts) - d,
            _ => epoch_secs(self.ts),
        }
    }

    /// The address the log shows as source: the original sender (before any SNAT).
    pub fn shown_src(&self) -> IpAddr {
        self.orig.src
    }

    /// The address the log shows as destination: the final one, after any DNAT (the reply
    /// comes from it).
    pub fn shown_dst(&self) -> IpAddr {
        self.reply.map(|r| r.src).unwrap_or(self.orig.dst)
    }

    /// The responder port after any DNAT.
    pub fn shown_dport(&self) -> Option<u16> {
        self.reply.map(|r| r.sport).unwrap_or(self.orig.dport)
    }

    /// The source as translated by SNAT/masquerading, if it was (shown with `-N`).
    pub fn nat_src(&self) -> Option<(IpAddr, Option<u16>)> {
        let r = self.reply?;
        (r.dst != self.orig.src || r.dport != self.orig.sport).then_some((r.dst, r.dport))
    }

    /// The destination the originator asked for, if DNAT changed it (shown with `-N`).
    pub fn nat_orig_dst(&self) -> Option<(IpAddr, Option<u16>)> {
        let r = self.reply?;
        (r.src != self.orig.dst || r.sport != self.orig.dport)
            .then_some((self.orig.dst, self.orig.dport))
    }
}

/// Seconds since the epoch with the fraction, as the SQLite history and JSON store times.
pub fn epoch_secs(t: DateTime<Utc>) -> f64 {
    t.timestamp() as f64 + t.timestamp_subsec_nanos() as f64 / 1e9
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn zeek_states_round_trip() {
        for z in ZeekState::ALL {
            assert_eq!(ZeekState::parse(z.as_str()), Some(z));
        }
        assert_eq!(ZeekState::parse("sf"), None);
    }

    #[test]
    fn start_is_the_time_less_the_duration_except_for_an_open() {
        let t = Utc.timestamp_opt(1_700_000_010, 500_000_000).unwrap();
        let tuple = FlowTuple::new([10, 0, 0, 1].into(), [10, 0, 0, 2].into(), None, None);
        let mut e = ConnEvent::new(EventKind::Close, t, Source::Pcap, 1, 1, tuple);
        assert_eq!(e.start_ts(), 1_700_000_010.5);
        e.duration = Some(10.25);
        assert_eq!(e.start_ts(), 1_700_000_000.25);
        e.kind = EventKind::Open;
        assert_eq!(e.start_ts(), 1_700_000_010.5);
    }
}
