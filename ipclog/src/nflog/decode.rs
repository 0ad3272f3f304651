//! NFLOG messages, decoded in place: the packet messages the kernel sends a bound log group,
//! and the configuration requests ipclog sends (bind a group, copy mode, flags).
//!
//! netlink-packet-netfilter 0.4 decodes the packet attributes, but copies the payload into a
//! `Vec` per packet and leaves `NFULA_CT` / `NFULA_CT_INFO` (the conntrack entry the kernel
//! attaches with `NFULNL_CFG_F_CONNTRACK`) as opaque attributes. This walker borrows
//! everything from the received datagram and reads the conntrack entry with the ctnetlink
//! decoder's tuple reader. Names follow `include/uapi/linux/netfilter/nfnetlink_log.h`.
//!
//! A message that cannot become a logged packet is never a panic and never a guess: it is
//! [`Unusable`], counted by reason.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::conntrack::ctnetlink::{
    align4, be16, be32, be64, decode_tuple, Attrs, CtTuple, CTA_ID, CTA_TUPLE_ORIG, NLMSG_DONE,
    NLMSG_ERROR, NLMSG_HDRLEN, NLMSG_NOOP, NLMSG_OVERRUN,
};

/// nfnetlink subsystem of NFLOG (`NFNL_SUBSYS_ULOG`).
pub const NFNL_SUBSYS_ULOG: u8 = 4;
pub const NFULNL_MSG_PACKET: u8 = 0;
pub const NFULNL_MSG_CONFIG: u8 = 1;

// enum nfulnl_attr_type
pub const NFULA_PACKET_HDR: u16 = 1;
pub const NFULA_MARK: u16 = 2;
pub const NFULA_TIMESTAMP: u16 = 3;
pub const NFULA_IFINDEX_INDEV: u16 = 4;
pub const NFULA_IFINDEX_OUTDEV: u16 = 5;
pub const NFULA_PAYLOAD: u16 = 9;
pub const NFULA_PREFIX: u16 = 10;
pub const NFULA_SEQ: u16 = 12;
pub const NFULA_CT: u16 = 18;
pub const NFULA_CT_INFO: u16 = 19;

// enum nfulnl_attr_config, commands, modes, flags
pub const NFULA_CFG_CMD: u16 = 1;
pub const NFULA_CFG_MODE: u16 = 2;
pub const NFULA_CFG_NLBUFSIZ: u16 = 3;
pub const NFULA_CFG_TIMEOUT: u16 = 4;
pub const NFULA_CFG_QTHRESH: u16 = 5;
pub const NFULA_CFG_FLAGS: u16 = 6;
pub const NFULNL_CFG_CMD_BIND: u8 = 1;
pub const NFULNL_COPY_PACKET: u8 = 2;
pub const NFULNL_CFG_F_SEQ: u16 = 0x0001;
pub const NFULNL_CFG_F_CONNTRACK: u16 = 0x0004;

/// Netfilter protocol families (`NFPROTO_*`) a logged packet can come from.
const NFPROTO_IPV4: u8 = 2;
const NFPROTO_NETDEV: u8 = 5;
const NFPROTO_BRIDGE: u8 = 7;
const NFPROTO_IPV6: u8 = 10;

/// One NFLOG packet message, borrowed from the datagram.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RawPacket<'a> {
    /// nfgenmsg family (`NFPROTO_*`).
    pub family: u8,
    /// The log group (nfgenmsg resource id).
    pub group: u16,
    /// Ethertype of the packet (`NFULA_PACKET_HDR`).
    pub hw_protocol: Option<u16>,
    pub mark: Option<u32>,
    /// Seconds and microseconds since the epoch (`NFULA_TIMESTAMP`: only when the packet has
    /// a timestamp).
    pub ts: Option<(u64, u64)>,
    pub indev: Option<u32>,
    pub outdev: Option<u32>,
    /// The packet from its network header on, as much as the copy range allowed.
    pub payload: Option<&'a [u8]>,
    /// The rule's prefix, without its NUL.
    pub prefix: &'a [u8],
    /// The group's sequence number (`NFULNL_CFG_F_SEQ`): a gap is packets lost.
    pub seq: Option<u32>,
    /// The conntrack entry's attributes (`NFULA_CT`) and the packet's `ip_conntrack_info`.
    pub ct: Option<&'a [u8]>,
    pub ct_info: Option<u32>,
}

/// What one netlink message of a datagram was.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Item<'a> {
    Packet(RawPacket<'a>),
    /// An acknowledgement of a configuration request.
    Ack,
    /// A netlink error (negative errno, as the kernel sends).
    Error(i32),
    /// Something else (another subsystem, NOOP, DONE): skipped.
    Other(u16),
}

/// Why a message (or what it carries) cannot be logged. Each is counted; none stops the
/// logger.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unusable {
    /// The netlink header, the nfgenmsg or an attribute is cut short.
    Truncated,
    /// A packet message without the packet (`NFULA_PAYLOAD`; a rule with `snaplen 0`, or a
    /// group configured by someone else without copy mode packet).
    NoPayload,
    /// Neither IPv4 nor IPv6 (ARP, a bridge's other ethertypes).
    UnknownFamily,
    /// Less of the packet than its IP header.
    ShortPacket,
}

impl Unusable {
    pub const ALL: [Unusable; 4] = [
        Unusable::Truncated,
        Unusable::NoPayload,
        Unusable::UnknownFamily,
        Unusable::ShortPacket,
    ];

    pub fn index(self) -> usize {
        self as usize
    }

    pub fn describe(self) -> &'static str {
        match self {
            Unusable::Truncated => "truncated message",
            Unusable::NoPayload => "no packet payload",
            Unusable::UnknownFamily => "not IPv4/IPv6",
            Unusable::ShortPacket => "shorter than its IP header",
        }
    }
}

/// Iterates over the netlink messages of one datagram.
pub struct Messages<'a> {
    buf: &'a [u8],
}

impl<'a> Messages<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Messages { buf }
    }
}

impl<'a> Iterator for Messages<'a> {
    type Item = Result<Item<'a>, Unusable>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.buf.len() < NLMSG_HDRLEN {
            // A tail too short for a header is itself a cut message (empty is the end).
            let short = !self.buf.is_empty();
            self.buf = &[];
            return short.then_some(Err(Unusable::Truncated));
        }
        let len = u32::from_ne_bytes([self.buf[0], self.buf[1], self.buf[2], self.buf[3]]) as usize;
        if len < NLMSG_HDRLEN || len > self.buf.len() {
            self.buf = &[];
            return Some(Err(Unusable::Truncated));
        }
        let msg = &self.buf[..len];
        self.buf = &self.buf[align4(len).min(self.buf.len())..];
        Some(decode_message(msg))
    }
}

/// Decodes one netlink message (header included, at least [`NLMSG_HDRLEN`] bytes).
pub fn decode_message(msg: &[u8]) -> Result<Item<'_>, Unusable> {
    let ty = u16::from_ne_bytes([msg[4], msg[5]]);
    match ty {
        NLMSG_ERROR => {
            let errno = msg
                .get(16..20)
                .map(|b| i32::from_ne_bytes([b[0], b[1], b[2], b[3]]))
                .ok_or(Unusable::Truncated)?;
            return Ok(if errno == 0 {
                Item::Ack
            } else {
                Item::Error(errno)
            });
        }
        NLMSG_NOOP | NLMSG_DONE | NLMSG_OVERRUN => return Ok(Item::Other(ty)),
        _ => {}
    }
    if (ty >> 8) as u8 != NFNL_SUBSYS_ULOG || ty as u8 != NFULNL_MSG_PACKET {
        return Ok(Item::Other(ty));
    }
    let body = &msg[NLMSG_HDRLEN..];
    if body.len() < 4 {
        return Err(Unusable::Truncated);
    }
    let mut p = RawPacket {
        family: body[0],
        group: u16::from_be_bytes([body[2], body[3]]),
        ..RawPacket::default()
    };
    let mut attrs = Attrs::new(&body[4..]);
    for (t, v) in &mut attrs {
        match t {
            NFULA_PACKET_HDR => p.hw_protocol = Some(be16(v).ok_or(Unusable::Truncated)?),
            NFULA_MARK => p.mark = Some(be32(v).ok_or(Unusable::Truncated)?),
            NFULA_TIMESTAMP => {
                let (s, u) = (be64(v), v.get(8..).and_then(be64));
                p.ts = Some((s.ok_or(Unusable::Truncated)?, u.ok_or(Unusable::Truncated)?));
            }
            NFULA_IFINDEX_INDEV => p.indev = Some(be32(v).ok_or(Unusable::Truncated)?),
            NFULA_IFINDEX_OUTDEV => p.outdev = Some(be32(v).ok_or(Unusable::Truncated)?),
            NFULA_PAYLOAD => p.payload = Some(v),
            NFULA_PREFIX => {
                p.prefix = v.split(|&b| b == 0).next().unwrap_or(&[]);
            }
            NFULA_SEQ => p.seq = Some(be32(v).ok_or(Unusable::Truncated)?),
            NFULA_CT => p.ct = Some(v),
            NFULA_CT_INFO => p.ct_info = Some(be32(v).ok_or(Unusable::Truncated)?),
            // Hardware addresses and headers, uid/gid, physdev, VLAN: nothing ipclog shows.
            _ => {}
        }
    }
    if attrs.truncated {
        return Err(Unusable::Truncated);
    }
    Ok(Item::Packet(p))
}

/// What the packet's headers say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Headers {
    pub proto: u8,
    pub src: IpAddr,
    pub dst: IpAddr,
    pub sport: Option<u16>,
    pub dport: Option<u16>,
    pub hdr_len: u16,
    pub total_len: u32,
    pub tcp_flags: Option<u8>,
    pub icmp: Option<(u8, u8)>,
    /// For an ICMP error: the packet it quotes (the one that caused it), as far as copied.
    pub quoted: Option<Quoted>,
}

/// The header an ICMP error quotes: whose packet the error is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quoted {
    pub proto: u8,
    pub src: IpAddr,
    pub dst: IpAddr,
    pub sport: Option<u16>,
    pub dport: Option<u16>,
}

/// Reads the IP and transport headers of a logged packet. Ports, flags and ICMP type are left
/// out when the copied part ends before them (or the packet is a later fragment).
pub fn headers(p: &RawPacket<'_>) -> Result<Headers, Unusable> {
    let data = p.payload.ok_or(Unusable::NoPayload)?;
    let v6 = match (p.family, p.hw_protocol) {
        (NFPROTO_IPV4, _) => false,
        (NFPROTO_IPV6, _) => true,
        (NFPROTO_BRIDGE | NFPROTO_NETDEV, Some(0x0800)) => false,
        (NFPROTO_BRIDGE | NFPROTO_NETDEV, Some(0x86dd)) => true,
        _ => return Err(Unusable::UnknownFamily),
    };
    let version = data.first().ok_or(Unusable::ShortPacket)? >> 4;
    if version != if v6 { 6 } else { 4 } {
        return Err(Unusable::UnknownFamily);
    }
    if v6 {
        ipv6(data, true)
    } else {
        ipv4(data, true)
    }
}

/// `outer`: this is the packet itself, not the header an ICMP error quotes (whose own ICMP
/// payload is not read: an error about an error is not quoted twice).
fn ipv4(d: &[u8], outer: bool) -> Result<Headers, Unusable> {
    if d.len() < 20 {
        return Err(Unusable::ShortPacket);
    }
    let ihl = usize::from(d[0] & 0x0f) * 4;
    if ihl < 20 || d.len() < ihl {
        return Err(Unusable::ShortPacket);
    }
    let frag_offset = u16::from_be_bytes([d[6], d[7]]) & 0x1fff;
    let mut h = Headers {
        proto: d[9],
        src: IpAddr::V4(Ipv4Addr::new(d[12], d[13], d[14], d[15])),
        dst: IpAddr::V4(Ipv4Addr::new(d[16], d[17], d[18], d[19])),
        sport: None,
        dport: None,
        hdr_len: ihl as u16,
        total_len: u16::from_be_bytes([d[2], d[3]]).into(),
        tcp_flags: None,
        icmp: None,
        quoted: None,
    };
    if frag_offset == 0 {
        transport(&mut h, &d[ihl..], false, outer);
    }
    Ok(h)
}

fn ipv6(d: &[u8], outer: bool) -> Result<Headers, Unusable> {
    if d.len() < 40 {
        return Err(Unusable::ShortPacket);
    }
    let addr = |o: usize| {
        let b: [u8; 16] = d[o..o + 16].try_into().unwrap_or([0; 16]);
        IpAddr::V6(Ipv6Addr::from(b))
    };
    let mut next = d[6];
    let mut off = 40usize;
    let mut later_fragment = false;
    // Extension headers, as far as they were copied: hop-by-hop, routing, fragment,
    // destination options, AH. At most 8, so a crafted chain cannot loop long.
    for _ in 0..8 {
        match next {
            0 | 43 | 60 | 51 | 44 => {
                let Some(ext) = d.get(off..off + 8) else {
                    break;
                };
                let len = match next {
                    44 => {
                        later_fragment = u16::from_be_bytes([ext[2], ext[3]]) >> 3 != 0;
                        8
                    }
                    51 => (usize::from(ext[1]) + 2) * 4,
                    _ => (usize::from(ext[1]) + 1) * 8,
                };
                next = ext[0];
                off += len;
            }
            _ => break,
        }
    }
    let mut h = Headers {
        proto: next,
        src: addr(8),
        dst: addr(24),
        sport: None,
        dport: None,
        hdr_len: off.min(u16::MAX as usize) as u16,
        total_len: 40 + u32::from(u16::from_be_bytes([d[4], d[5]])),
        tcp_flags: None,
        icmp: None,
        quoted: None,
    };
    if !later_fragment {
        if let Some(rest) = d.get(off..) {
            transport(&mut h, rest, true, outer);
        }
    }
    Ok(h)
}

fn transport(h: &mut Headers, t: &[u8], v6: bool, outer: bool) {
    let ports = |h: &mut Headers| {
        if let (Some(s), Some(d)) = (be16(t), t.get(2..).and_then(be16)) {
            h.sport = Some(s);
            h.dport = Some(d);
        }
    };
    match h.proto {
        6 => {
            ports(h);
            h.tcp_flags = t.get(13).copied();
        }
        17 | 136 | 132 | 33 => ports(h),
        1 if !v6 => h.icmp = t.get(..2).map(|b| (b[0], b[1])),
        58 if v6 => h.icmp = t.get(..2).map(|b| (b[0], b[1])),
        _ => {}
    }
    // Errors: v4 unreachable, source quench, redirect, time exceeded, parameter problem;
    // v6 unreachable, packet too big, time exceeded, parameter problem.
    let error = match (h.proto, h.icmp) {
        (1, Some((3 | 4 | 5 | 11 | 12, _))) => !v6,
        (58, Some((1..=4, _))) => v6,
        _ => false,
    };
    if outer && error {
        let inner = t.get(8..).and_then(|q| match v6 {
            false => ipv4(q, false).ok(),
            true => ipv6(q, false).ok(),
        });
        h.quoted = inner.map(|i| Quoted {
            proto: i.proto,
            src: i.src,
            dst: i.dst,
            sport: i.sport,
            dport: i.dport,
        });
    }
}

/// The conntrack entry a packet came with: its original tuple and id.
pub fn conntrack(ct: &[u8]) -> Option<(CtTuple, Option<u32>)> {
    let mut tuple = None;
    let mut id = None;
    let mut attrs = Attrs::new(ct);
    for (t, v) in &mut attrs {
        match t {
            CTA_TUPLE_ORIG => tuple = decode_tuple(v).ok(),
            CTA_ID => id = be32(v),
            _ => {}
        }
    }
    Some((tuple?, id))
}

/// The name of an `enum ip_conntrack_info` value.
pub fn ct_state(info: u32) -> &'static str {
    match info {
        0 => "established",
        1 => "related",
        2 => "new",
        3 => "established-reply",
        4 => "related-reply",
        _ => "other",
    }
}

/// A configuration request for `group` (nfgenmsg family `AF_UNSPEC`, resource id the group):
/// the netlink header asks for an acknowledgement, so every request's outcome is known.
pub fn config_request(group: u16, seq: u32, attrs: &[(u16, &[u8])]) -> Vec<u8> {
    const NLM_F_REQUEST: u16 = 0x1;
    const NLM_F_ACK: u16 = 0x4;
    let ty = u16::from(NFNL_SUBSYS_ULOG) << 8 | u16::from(NFULNL_MSG_CONFIG);
    let mut b = Vec::with_capacity(64);
    b.extend_from_slice(&0u32.to_ne_bytes());
    b.extend_from_slice(&ty.to_ne_bytes());
    b.extend_from_slice(&(NLM_F_REQUEST | NLM_F_ACK).to_ne_bytes());
    b.extend_from_slice(&seq.to_ne_bytes());
    b.extend_from_slice(&0u32.to_ne_bytes());
    b.extend_from_slice(&[0, 0]);
    b.extend_from_slice(&group.to_be_bytes());
    for (t, v) in attrs {
        b.extend_from_slice(&((4 + v.len()) as u16).to_ne_bytes());
        b.extend_from_slice(&t.to_ne_bytes());
        b.extend_from_slice(v);
        while !b.len().is_multiple_of(4) {
            b.push(0);
        }
    }
    let len = b.len() as u32;
    b[..4].copy_from_slice(&len.to_ne_bytes());
    b
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use netlink_packet_core::{NetlinkHeader, NetlinkMessage, NetlinkPayload};
    use netlink_packet_netfilter::nflog::{
        config_request as crate_config, ConfigCmd, ConfigFlags, ConfigMode, ConfigNla, CopyMode,
        PacketNla, ULogMessage,
    };
    use netlink_packet_netfilter::{NetfilterHeader, NetfilterMessage, NetfilterProtoFamily};

    /// One netlink attribute, padded to 4 bytes.
    pub(crate) fn attr(t: u16, v: &[u8]) -> Vec<u8> {
        let mut b = Vec::new();
        b.extend_from_slice(&((4 + v.len()) as u16).to_ne_bytes());
        b.extend_from_slice(&t.to_ne_bytes());
        b.extend_from_slice(v);
        while !b.len().is_multiple_of(4) {
            b.push(0);
        }
        b
    }

    /// A packet message as the kernel builds it: header, nfgenmsg, attributes.
    pub(crate) fn message(family: u8, group: u16, attrs: &[Vec<u8>]) -> Vec<u8> {
        let ty = u16::from(NFNL_SUBSYS_ULOG) << 8 | u16::from(NFULNL_MSG_PACKET);
        let mut b = vec![0u8; 16];
        b[4..6].copy_from_slice(&ty.to_ne_bytes());
        b.extend_from_slice(&[family, 0]);
        b.extend_from_slice(&group.to_be_bytes());
        for a in attrs {
            b.extend_from_slice(a);
        }
        let len = b.len() as u32;
        b[..4].copy_from_slice(&len.to_ne_bytes());
        b
    }

    fn tcp_syn() -> Vec<u8> {
        let mut p = vec![
            0x45, 0, 0, 60, 0, 1, 0x40, 0, 64, 6, 0, 0, 10, 9, 0, 1, 10, 9, 0, 2,
        ];
        let mut tcp = vec![0u8; 20];
        tcp[..2].copy_from_slice(&40000u16.to_be_bytes());
        tcp[2..4].copy_from_slice(&22u16.to_be_bytes());
        tcp[12] = 0x50;
        tcp[13] = 0x02;
        p.extend_from_slice(&tcp);
        p
    }

    fn one(msg: &[u8]) -> Result<Item<'_>, Unusable> {
        let mut it = Messages::new(msg);
        let r = it.next().expect("a message");
        assert!(it.next().is_none());
        r
    }

    #[test]
    fn a_logged_syn_is_decoded_in_place() {
        let payload = tcp_syn();
        let msg = message(
            2,
            7,
            &[
                attr(NFULA_PACKET_HDR, &[0x08, 0x00, 1, 0]),
                attr(NFULA_MARK, &5u32.to_be_bytes()),
                attr(NFULA_IFINDEX_INDEV, &3u32.to_be_bytes()),
                attr(NFULA_PAYLOAD, &payload),
                attr(NFULA_PREFIX, b"drop-ssh\0"),
                attr(NFULA_SEQ, &9u32.to_be_bytes()),
            ],
        );
        let Ok(Item::Packet(p)) = one(&msg) else {
            panic!()
        };
        assert_eq!((p.family, p.group, p.prefix), (2, 7, &b"drop-ssh"[..]));
        assert_eq!(
            (p.mark, p.indev, p.outdev, p.seq),
            (Some(5), Some(3), None, Some(9))
        );
        let h = headers(&p).unwrap();
        assert_eq!(h.src, "10.9.0.1".parse::<IpAddr>().unwrap());
        assert_eq!(
            (h.proto, h.sport, h.dport, h.tcp_flags),
            (6, Some(40000), Some(22), Some(2))
        );
        assert_eq!((h.hdr_len, h.total_len), (20, 60));
    }

    /// The crate's own encoder makes a message the walker reads the same way (the attribute
    /// numbers and layouts agree with netlink-packet-netfilter's).
    #[test]
    fn the_crate_s_packet_message_decodes_alike() {
        let payload = tcp_syn();
        let nlas = vec![
            PacketNla::Mark(5),
            PacketNla::IfIndexInDev(3),
            PacketNla::Payload(payload.clone()),
            PacketNla::Prefix(std::ffi::CString::new("ok-web").unwrap()),
            PacketNla::Seq(11),
        ];
        let mut m = NetlinkMessage::new(
            NetlinkHeader::default(),
            NetlinkPayload::from(NetfilterMessage::new(
                NetfilterHeader::new(NetfilterProtoFamily::IPv4, 0, 4),
                ULogMessage::Packet(nlas),
            )),
        );
        m.finalize();
        let mut buf = vec![0u8; m.buffer_len()];
        m.serialize(&mut buf);
        let Ok(Item::Packet(p)) = one(&buf) else {
            panic!()
        };
        assert_eq!(
            (p.group, p.prefix, p.seq, p.mark),
            (4, &b"ok-web"[..], Some(11), Some(5))
        );
        assert_eq!(p.payload, Some(&payload[..]));
    }

    #[test]
    fn the_config_request_matches_the_crate_s() {
        let mine = config_request(
            5,
            1,
            &[
                (NFULA_CFG_CMD, &[NFULNL_CFG_CMD_BIND]),
                (NFULA_CFG_MODE, &[0, 0, 1, 0, NFULNL_COPY_PACKET, 0]),
                (
                    NFULA_CFG_FLAGS,
                    &(NFULNL_CFG_F_SEQ | NFULNL_CFG_F_CONNTRACK).to_be_bytes(),
                ),
            ],
        );
        let mut theirs = crate_config(
            NetfilterProtoFamily::Unspec,
            5,
            vec![
                ConfigNla::Cmd(ConfigCmd::Bind),
                ConfigNla::Mode(ConfigMode::new(256, CopyMode::Packet)),
                ConfigNla::Flags(ConfigFlags::SEQ | ConfigFlags::CONNTRACK),
            ],
        );
        theirs.header.sequence_number = 1;
        let mut buf = vec![0u8; theirs.buffer_len()];
        theirs.serialize(&mut buf);
        assert_eq!(mine, buf);
    }

    #[test]
    fn an_icmp_error_carries_its_connection() {
        // ICMP port unreachable quoting a UDP datagram.
        let mut p = vec![
            0x45, 0, 0, 56, 0, 1, 0, 0, 64, 1, 0, 0, 10, 9, 0, 2, 10, 9, 0, 1,
        ];
        p.extend_from_slice(&[3, 3, 0, 0, 0, 0, 0, 0]);
        p.extend_from_slice(&[
            0x45, 0, 0, 28, 0, 1, 0, 0, 64, 17, 0, 0, 10, 9, 0, 1, 10, 9, 0, 2,
        ]);
        p.extend_from_slice(&[0xa0, 0x28, 0, 9, 0, 8, 0, 0]);
        let ip = [attr(1, &[10, 9, 0, 1]), attr(2, &[10, 9, 0, 2])].concat();
        let proto = [
            attr(1, &[17]),
            attr(2, &41000u16.to_be_bytes()),
            attr(3, &9u16.to_be_bytes()),
        ]
        .concat();
        let tuple = [attr(0x8001, &ip), attr(0x8002, &proto)].concat();
        let ct = [
            attr(0x8000 | CTA_TUPLE_ORIG, &tuple),
            attr(CTA_ID, &0xdeadbeefu32.to_be_bytes()),
        ]
        .concat();
        let msg = message(
            2,
            1,
            &[
                attr(NFULA_PAYLOAD, &p),
                attr(0x8000 | NFULA_CT, &ct),
                attr(NFULA_CT_INFO, &4u32.to_be_bytes()),
            ],
        );
        let Ok(Item::Packet(pk)) = one(&msg) else {
            panic!()
        };
        let h = headers(&pk).unwrap();
        assert_eq!((h.proto, h.icmp, h.sport), (1, Some((3, 3)), None));
        let q = h.quoted.unwrap();
        assert_eq!((q.proto, q.sport, q.dport), (17, Some(41000), Some(9)));
        assert_eq!(q.src, "10.9.0.1".parse::<IpAddr>().unwrap());
        let (t, id) = conntrack(pk.ct.unwrap()).unwrap();
        assert_eq!(
            (t.proto, t.sport, t.dport, id),
            (17, Some(41000), Some(9), Some(0xdeadbeef))
        );
        assert_eq!(ct_state(pk.ct_info.unwrap()), "related-reply");
    }

    /// IPv6: extension headers are walked to the transport header and count in the header
    /// length; an ICMPv6 error quotes the packet it is about; a later fragment has no ports.
    #[test]
    fn ipv6_extension_headers_and_errors() {
        let v6 = |next: u8, payload_len: u16| {
            let mut p = vec![0x60, 0, 0, 0];
            p.extend_from_slice(&payload_len.to_be_bytes());
            p.extend_from_slice(&[next, 64]);
            p.extend_from_slice(&"fd00::1".parse::<Ipv6Addr>().unwrap().octets());
            p.extend_from_slice(&"fd00::2".parse::<Ipv6Addr>().unwrap().octets());
            p
        };
        // Hop-by-hop (8 bytes) then UDP 5000 -> 53.
        let mut p = v6(0, 8 + 9);
        p.extend_from_slice(&[17, 0, 0, 0, 0, 0, 0, 0]);
        p.extend_from_slice(&[0x13, 0x88, 0, 53, 0, 9, 0, 0, b'x']);
        let msg = message(10, 1, &[attr(NFULA_PAYLOAD, &p)]);
        let Ok(Item::Packet(pk)) = one(&msg) else {
            panic!()
        };
        let h = headers(&pk).unwrap();
        assert_eq!((h.proto, h.sport, h.dport), (17, Some(5000), Some(53)));
        assert_eq!((h.hdr_len, h.total_len), (48, 57));
        // A later fragment: no ports.
        let mut f = v6(44, 16);
        f.extend_from_slice(&[17, 0, 0x00, 0x08, 0, 0, 0, 1]);
        f.extend_from_slice(&[0x13, 0x88, 0, 53, 0, 0, 0, 0]);
        let msg = message(10, 1, &[attr(NFULA_PAYLOAD, &f)]);
        let Ok(Item::Packet(pk)) = one(&msg) else {
            panic!()
        };
        let h = headers(&pk).unwrap();
        assert_eq!((h.proto, h.sport, h.dport), (17, None, None));
        // ICMPv6 port unreachable (1/4) quoting the UDP datagram above (without extension).
        let mut quoted = v6(17, 9);
        quoted.extend_from_slice(&[0x13, 0x88, 0, 53, 0, 9, 0, 0]);
        let mut e = v6(58, 8 + quoted.len() as u16);
        e.extend_from_slice(&[1, 4, 0, 0, 0, 0, 0, 0]);
        e.extend_from_slice(&quoted);
        let msg = message(10, 1, &[attr(NFULA_PAYLOAD, &e)]);
        let Ok(Item::Packet(pk)) = one(&msg) else {
            panic!()
        };
        let h = headers(&pk).unwrap();
        assert_eq!((h.proto, h.icmp), (58, Some((1, 4))));
        let q = h.quoted.unwrap();
        assert_eq!((q.proto, q.sport, q.dport), (17, Some(5000), Some(53)));
        // An echo request quotes nothing.
        let mut echo = v6(58, 8);
        echo.extend_from_slice(&[128, 0, 0, 0, 0, 1, 0, 1]);
        let msg = message(10, 1, &[attr(NFULA_PAYLOAD, &echo)]);
        let Ok(Item::Packet(pk)) = one(&msg) else {
            panic!()
        };
        assert_eq!(headers(&pk).unwrap().quoted, None);
    }

    /// Missing attributes, cut payloads, other families and cut messages: each is its reason,
    /// never a panic; cut transport headers still give a line, without ports.
    #[test]
    fn bad_messages_are_counted_by_reason() {
        let syn = tcp_syn();
        let reason = |msg: &[u8]| -> Result<Headers, Unusable> {
            match one(msg)? {
                Item::Packet(p) => headers(&p),
                other => panic!("{other:?}"),
            }
        };
        assert_eq!(
            reason(&message(2, 1, &[attr(NFULA_PREFIX, b"x\0")])),
            Err(Unusable::NoPayload)
        );
        assert_eq!(
            reason(&message(2, 1, &[attr(NFULA_PAYLOAD, &syn[..19])])),
            Err(Unusable::ShortPacket)
        );
        assert_eq!(
            reason(&message(3, 1, &[attr(NFULA_PAYLOAD, &syn)])),
            Err(Unusable::UnknownFamily)
        );
        assert_eq!(
            reason(&message(
                7,
                1,
                &[
                    attr(NFULA_PACKET_HDR, &[0x08, 0x06, 0, 0]),
                    attr(NFULA_PAYLOAD, &syn)
                ]
            )),
            Err(Unusable::UnknownFamily)
        );
        assert_eq!(
            reason(&message(10, 1, &[attr(NFULA_PAYLOAD, &syn)])),
            Err(Unusable::UnknownFamily)
        );
        let mut bad_ihl = syn.clone();
        bad_ihl[0] = 0x4f;
        assert_eq!(
            reason(&message(2, 1, &[attr(NFULA_PAYLOAD, &bad_ihl)])),
            Err(Unusable::ShortPacket)
        );
        assert_eq!(
            reason(&message(2, 1, &[attr(NFULA_MARK, &[1, 2])])),
            Err(Unusable::Truncated)
        );
        let cut = reason(&message(2, 1, &[attr(NFULA_PAYLOAD, &syn[..22])])).unwrap();
        assert_eq!((cut.sport, cut.dport, cut.tcp_flags), (None, None, None));
        // An attribute whose length runs past the message, and a message cut mid-header.
        let mut m = message(2, 1, &[attr(NFULA_PAYLOAD, &syn)]);
        m[20..22].copy_from_slice(&4000u16.to_ne_bytes());
        assert_eq!(one(&m), Err(Unusable::Truncated));
        let m = message(2, 1, &[attr(NFULA_PAYLOAD, &syn)]);
        assert_eq!(one(&m[..m.len() - 4]), Err(Unusable::Truncated));
        assert_eq!(one(&m[..10]), Err(Unusable::Truncated));
        // Every prefix of a good message and every single-byte corruption: no panic.
        let good = message(
            2,
            1,
            &[attr(NFULA_PAYLOAD, &syn), attr(NFULA_CT, &[1, 2, 3, 4, 5])],
        );
        for n in 0..good.len() {
            for r in Messages::new(&good[..n]) {
                if let Ok(Item::Packet(p)) = r {
                    let _ = headers(&p);
                    p.ct.map(conntrack);
                }
            }
            let mut c = good.clone();
            c[n] ^= 0xff;
            for r in Messages::new(&c) {
                if let Ok(Item::Packet(p)) = r {
                    let _ = headers(&p);
                    p.ct.map(conntrack);
                }
            }
        }
    }
}
