//! A small pcap/pcapng writer for generated test captures: IPv4/IPv6 packets with TCP or UDP
//! (correct checksums), IPv4/IPv6 fragmentation, every link framing ipclog reads, and a TCP
//! session helper that keeps sequence numbers so tests read like the exchange they describe.
//! The packets themselves come from the capture library's emitters (`ipclog_capture::wire`),
//! the counterpart of the parsers that read them back.

use std::net::{IpAddr, SocketAddr};

use ipclog_capture::wire::{self, checksum, IpRepr, LinkHeader, TcpRepr, UdpRepr};

/// Link-layer framings, with their libpcap link type numbers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Link {
    /// Ethernet (1) with the given VLAN tags (outer first; 0x88a8 for the outer of two).
    Ethernet(Vec<u16>),
    /// Linux cooked v1 (113).
    Sll,
    /// Linux cooked v2 (276).
    Sll2,
    /// Raw IP (101); `Raw12` and `Raw14` are the old DLT_RAW numbers some systems write.
    Raw,
    Raw12,
    Raw14,
    /// LINKTYPE_IPV4 (228) / LINKTYPE_IPV6 (229).
    RawV4,
    RawV6,
    /// BSD loopback (0): family in little-endian (as written on x86).
    Null,
    /// OpenBSD loopback (108): family in network byte order.
    Loop,
    /// Any other link type number, frames written as given (for "unknown link type" tests).
    Other(u32),
}

impl Link {
    pub fn linktype(&self) -> u32 {
        match self {
            Link::Raw12 => 12,
            Link::Raw14 => 14,
            Link::RawV4 => 228,
            Link::RawV6 => 229,
            Link::Other(n) => *n,
            _ => self.header().linktype(),
        }
    }

    /// The header the capture library emits for this framing.
    pub fn header(&self) -> LinkHeader<'_> {
        match self {
            Link::Ethernet(tags) => LinkHeader::Ethernet { vlans: tags },
            Link::Sll => LinkHeader::Sll,
            Link::Sll2 => LinkHeader::Sll2,
            Link::Null => LinkHeader::Null,
            Link::Loop => LinkHeader::Loop,
            Link::Raw | Link::Raw12 | Link::Raw14 | Link::RawV4 | Link::RawV6 | Link::Other(_) => {
                LinkHeader::Raw
            }
        }
    }

    /// Wraps an IP packet in this link's header.
    pub fn frame(&self, ip: &[u8]) -> Vec<u8> {
        self.header().frame(ip)
    }
}

/// One record: time in microseconds since the epoch, captured bytes, length on the wire.
#[derive(Debug, Clone)]
pub struct Record {
    pub ts_us: i64,
    pub data: Vec<u8>,
    pub wire_len: u32,
}

impl Record {
    pub fn new(ts_us: i64, data: Vec<u8>) -> Record {
        let wire_len = data.len() as u32;
        Record {
            ts_us,
            data,
            wire_len,
        }
    }
}

/// A classic pcap file (microsecond timestamps, little-endian) of `records`; each record's
/// captured bytes are cut to `snaplen`.
pub fn pcap_bytes(linktype: u32, snaplen: u32, records: &[Record]) -> Vec<u8> {
    let mut out = Vec::with_capacity(24 + records.iter().map(|r| r.data.len() + 16).sum::<usize>());
    out.extend_from_slice(&0xa1b2c3d4u32.to_le_bytes());
    out.extend_from_slice(&2u16.to_le_bytes());
    out.extend_from_slice(&4u16.to_le_bytes());
    out.extend_from_slice(&0i32.to_le_bytes());
    out.extend_from_slice(&0u32.to_le_bytes());
    out.extend_from_slice(&snaplen.to_le_bytes());
    out.extend_from_slice(&linktype.to_le_bytes());
    for r in records {
        push_pcap_record(&mut out, snaplen, r);
    }
    out
}

/// Appends one classic pcap record (for streaming writers).
pub fn push_pcap_record(out: &mut Vec<u8>, snaplen: u32, r: &Record) {
    let cap = (r.data.len() as u32).min(snaplen);
    out.extend_from_slice(&((r.ts_us.div_euclid(1_000_000)) as u32).to_le_bytes());
    out.extend_from_slice(&((r.ts_us.rem_euclid(1_000_000)) as u32).to_le_bytes());
    out.extend_from_slice(&cap.to_le_bytes());
    out.extend_from_slice(&r.wire_len.max(cap).to_le_bytes());
    out.extend_from_slice(&r.data[..cap as usize]);
}

/// A pcapng file: section header, one interface of `linktype`, enhanced packet blocks.
pub fn pcapng_bytes(linktype: u32, snaplen: u32, records: &[Record]) -> Vec<u8> {
    let mut out = Vec::new();
    // Section Header Block.
    let mut shb = Vec::new();
    shb.extend_from_slice(&0x1a2b3c4du32.to_le_bytes());
    shb.extend_from_slice(&1u16.to_le_bytes());
    shb.extend_from_slice(&0u16.to_le_bytes());
    shb.extend_from_slice(&(-1i64).to_le_bytes());
    block(&mut out, 0x0a0d0d0a, &shb);
    // Interface Description Block (default resolution: microseconds).
    let mut idb = Vec::new();
    idb.extend_from_slice(&(linktype as u16).to_le_bytes());
    idb.extend_from_slice(&0u16.to_le_bytes());
    idb.extend_from_slice(&snaplen.to_le_bytes());
    block(&mut out, 1, &idb);
    for r in records {
        let cap = (r.data.len() as u32).min(snaplen);
        let ts = r.ts_us as u64;
        let mut epb = Vec::new();
        epb.extend_from_slice(&0u32.to_le_bytes());
        epb.extend_from_slice(&((ts >> 32) as u32).to_le_bytes());
        epb.extend_from_slice(&(ts as u32).to_le_bytes());
        epb.extend_from_slice(&cap.to_le_bytes());
        epb.extend_from_slice(&r.wire_len.max(cap).to_le_bytes());
        epb.extend_from_slice(&r.data[..cap as usize]);
        while !epb.len().is_multiple_of(4) {
            epb.push(0);
        }
        block(&mut out, 6, &epb);
    }
    out
}

fn block(out: &mut Vec<u8>, ty: u32, body: &[u8]) {
    let len = 12 + body.len() as u32;
    out.extend_from_slice(&ty.to_le_bytes());
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(body);
    out.extend_from_slice(&len.to_le_bytes());
}

/// Frames every IP packet for `link` and writes a pcap (or pcapng) file at `path`.
pub fn write(
    path: &std::path::Path,
    link: &Link,
    ng: bool,
    packets: &[(i64, Vec<u8>)],
) -> std::io::Result<()> {
    let recs: Vec<Record> = packets
        .iter()
        .map(|(t, ip)| Record::new(*t, link.frame(ip)))
        .collect();
    let bytes = if ng {
        pcapng_bytes(link.linktype(), 65535, &recs)
    } else {
        pcap_bytes(link.linktype(), 65535, &recs)
    };
    std::fs::write(path, bytes)
}

pub use ipclog_capture::wire::{ACK, FIN, PSH, RST, SYN};

/// An IP packet (v4 or v6 by the addresses) carrying `l4` of protocol `proto`; the transport
/// checksum at `csum_at` (if any) is filled in.
pub fn ip_packet(
    src: IpAddr,
    dst: IpAddr,
    proto: u8,
    mut l4: Vec<u8>,
    csum_at: Option<usize>,
) -> Vec<u8> {
    if let Some(at) = csum_at {
        checksum::fill_l4(&mut l4, at, src, dst, proto);
    }
    IpRepr::new(src, dst, proto).packet(&l4)
}

/// A TCP segment in an IP packet.
pub fn tcp(
    src: SocketAddr,
    dst: SocketAddr,
    flags: u8,
    seq: u32,
    ack: u32,
    win: u16,
    payload: &[u8],
) -> Vec<u8> {
    let t = TcpRepr {
        sport: src.port(),
        dport: dst.port(),
        seq,
        ack,
        flags,
        win,
    };
    t.ip_packet(&IpRepr::new(src.ip(), dst.ip(), 6), payload)
}

/// A UDP datagram in an IP packet.
pub fn udp(src: SocketAddr, dst: SocketAddr, payload: &[u8]) -> Vec<u8> {
    let u = UdpRepr {
        sport: src.port(),
        dport: dst.port(),
    };
    u.ip_packet(&IpRepr::new(src.ip(), dst.ip(), 17), payload)
}

/// Splits an unfragmented IP packet (as [`ip_packet`] makes them) into fragments carrying at
/// most `chunk` bytes of its payload each (`chunk` a multiple of 8), identified by `id`.
pub fn fragment(ip: &[u8], chunk: usize, id: u32) -> Vec<Vec<u8>> {
    let (repr, payload) = IpRepr::parse(ip).expect("a whole IP packet");
    wire::fragment(&IpRepr { ident: id, ..repr }, payload, chunk)
}

/// A TCP connection between a client and a server that keeps both sides' sequence numbers.
/// Methods append IP packets (with their time) to `packets`.
pub struct Session {
    pub client: SocketAddr,
    pub server: SocketAddr,
    pub cseq: u32,
    pub sseq: u32,
    pub packets: Vec<(i64, Vec<u8>)>,
}

impl Session {
    pub fn new(client: &str, server: &str, cisn: u32, sisn: u32) -> Session {
        Session {
            client: client.parse().expect("client address"),
            server: server.parse().expect("server address"),
            cseq: cisn,
            sseq: sisn,
            packets: Vec::new(),
        }
    }

    fn push(&mut self, t: i64, from_client: bool, flags: u8, len: usize) -> &mut Self {
        let payload = vec![b'x'; len];
        let (src, dst, seq, ack) = if from_client {
            (self.client, self.server, self.cseq, self.sseq)
        } else {
            (self.server, self.client, self.sseq, self.cseq)
        };
        let ack = if flags & ACK != 0 { ack } else { 0 };
        self.packets
            .push((t, tcp(src, dst, flags, seq, ack, 65535, &payload)));
        let adv = len as u32 + (flags & SYN != 0) as u32 + (flags & FIN != 0) as u32;
        if from_client {
            self.cseq = self.cseq.wrapping_add(adv);
        } else {
            self.sseq = self.sseq.wrapping_add(adv);
        }
        self
    }

    /// Client SYN, server SYN-ACK, client ACK at t, t+1ms, t+2ms.
    pub fn handshake(&mut self, t: i64) -> &mut Self {
        self.syn(t).synack(t + 1000).ack(t + 2000, true)
    }
    pub fn syn(&mut self, t: i64) -> &mut Self {
        self.push(t, true, SYN, 0)
    }
    pub fn synack(&mut self, t: i64) -> &mut Self {
        self.push(t, false, SYN | ACK, 0)
    }
    pub fn ack(&mut self, t: i64, from_client: bool) -> &mut Self {
        self.push(t, from_client, ACK, 0)
    }
    pub fn data(&mut self, t: i64, from_client: bool, len: usize) -> &mut Self {
        self.push(t, from_client, ACK | PSH, len)
    }
    pub fn fin(&mut self, t: i64, from_client: bool) -> &mut Self {
        self.push(t, from_client, FIN | ACK, 0)
    }
    pub fn rst(&mut self, t: i64, from_client: bool) -> &mut Self {
        self.push(t, from_client, RST | ACK, 0)
    }
    /// Sends the segment of `len` bytes that started at sequence `seq` again (retransmission).
    pub fn resend(&mut self, t: i64, from_client: bool, seq: u32, len: usize) -> &mut Self {
        let payload = vec![b'x'; len];
        let (src, dst, ack) = if from_client {
            (self.client, self.server, self.sseq)
        } else {
            (self.server, self.client, self.cseq)
        };
        self.packets
            .push((t, tcp(src, dst, ACK | PSH, seq, ack, 65535, &payload)));
        self
    }
    /// Both FINs and the last ACK, starting at t.
    pub fn close(&mut self, t: i64) -> &mut Self {
        self.fin(t, true).fin(t + 1000, false).ack(t + 2000, true)
    }
}

pub use ipclog_capture::wire::tunnel::Encap;

/// The IP packets of a conversation (`packets`, as a [`Session`] makes them) carried in the
/// tunnel `encap`: those from `client` go from `a` to `b`, the others back. UDP tunnels send
/// from port 2152 for GTP (both sides use it), from 49152 otherwise.
pub fn tunnelled(
    encap: &Encap,
    client: IpAddr,
    a: IpAddr,
    b: IpAddr,
    packets: &[(i64, Vec<u8>)],
) -> Vec<(i64, Vec<u8>)> {
    let sport = match encap {
        Encap::Gtp { .. } => wire::tunnel::GTP_U_PORT,
        _ => 49152,
    };
    packets
        .iter()
        .map(|(t, p)| {
            let (repr, _) = IpRepr::parse(p).expect("a whole IP packet");
            let (src, dst) = if repr.src == client { (a, b) } else { (b, a) };
            (*t, encap.wrap(src, dst, sport, p))
        })
        .collect()
}

/// An ICMP (IPv4) or ICMPv6 message of `kind` and `code` with 4 bytes of rest-of-header and
/// `payload`, with its checksum.
pub fn icmp(src: IpAddr, dst: IpAddr, kind: u8, code: u8, payload: &[u8]) -> Vec<u8> {
    let mut l4 = vec![kind, code, 0, 0, 0, 1, 0, 1];
    l4.extend_from_slice(payload);
    if src.is_ipv4() {
        let c = checksum::internet_checksum(&l4, 0);
        l4[2..4].copy_from_slice(&c.to_be_bytes());
        IpRepr::new(src, dst, 1).packet(&l4)
    } else {
        ip_packet(src, dst, 58, l4, Some(2))
    }
}
