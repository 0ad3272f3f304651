//! The ctnetlink decoder: zero-copy decoding of conntrack events and dump entries into plain
//! [`CtMsg`] values, and the one request ipclog sends (a table dump).
//!
//! netlink-packet-netfilter 0.4 decodes tuples, status, timeout, mark and TCP state, but leaves
//! CTA_ID, CTA_ZONE, the counters, the timestamps and the ICMP tuple fields as opaque
//! `DefaultNla`s, and its `deserialize` allocates several times per message (figures in
//! BENCHMARKS.md). The receive loop must keep up with a flood, so this module walks the
//! attributes in place (no allocation) and decodes everything ipclog needs, with the kernel's
//! attribute names (`include/uapi/linux/netfilter/nfnetlink_conntrack.h`) so it reads like
//! upstream.
//! Attributes it does not know are not dropped silently: their type numbers are collected in
//! [`CtMsg::unknown`] so the logger can report them.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

// Netlink message header.
pub const NLMSG_HDRLEN: usize = 16;
pub const NLMSG_NOOP: u16 = 1;
pub const NLMSG_ERROR: u16 = 2;
pub const NLMSG_DONE: u16 = 3;
pub const NLMSG_OVERRUN: u16 = 4;
pub const NLM_F_MULTI: u16 = 0x2;
pub const NLM_F_CREATE: u16 = 0x400;
pub const NLM_F_EXCL: u16 = 0x200;

/// nfnetlink subsystem of conntrack (`NFNL_SUBSYS_CTNETLINK`).
pub const NFNL_SUBSYS_CTNETLINK: u8 = 1;
pub const IPCTNL_MSG_CT_NEW: u8 = 0;
pub const IPCTNL_MSG_CT_DELETE: u8 = 2;

// enum ctattr_type
pub const CTA_TUPLE_ORIG: u16 = 1;
pub const CTA_TUPLE_REPLY: u16 = 2;
pub const CTA_STATUS: u16 = 3;
pub const CTA_PROTOINFO: u16 = 4;
pub const CTA_HELP: u16 = 5;
pub const CTA_NAT_SRC: u16 = 6;
pub const CTA_TIMEOUT: u16 = 7;
pub const CTA_MARK: u16 = 8;
pub const CTA_COUNTERS_ORIG: u16 = 9;
pub const CTA_COUNTERS_REPLY: u16 = 10;
pub const CTA_USE: u16 = 11;
pub const CTA_ID: u16 = 12;
pub const CTA_NAT_DST: u16 = 13;
pub const CTA_TUPLE_MASTER: u16 = 14;
pub const CTA_SEQ_ADJ_ORIG: u16 = 15;
pub const CTA_SEQ_ADJ_REPLY: u16 = 16;
pub const CTA_SECMARK: u16 = 17;
pub const CTA_ZONE: u16 = 18;
pub const CTA_SECCTX: u16 = 19;
pub const CTA_TIMESTAMP: u16 = 20;
pub const CTA_MARK_MASK: u16 = 21;
pub const CTA_LABELS: u16 = 22;
pub const CTA_LABELS_MASK: u16 = 23;
pub const CTA_SYNPROXY: u16 = 24;
pub const CTA_FILTER: u16 = 25;
pub const CTA_STATUS_MASK: u16 = 26;
pub const CTA_TIMESTAMP_EVENT: u16 = 27;

// enum ctattr_tuple
pub const CTA_TUPLE_IP: u16 = 1;
pub const CTA_TUPLE_PROTO: u16 = 2;
pub const CTA_TUPLE_ZONE: u16 = 3;

// enum ctattr_ip
pub const CTA_IP_V4_SRC: u16 = 1;
pub const CTA_IP_V4_DST: u16 = 2;
pub const CTA_IP_V6_SRC: u16 = 3;
pub const CTA_IP_V6_DST: u16 = 4;

// enum ctattr_l4proto
pub const CTA_PROTO_NUM: u16 = 1;
pub const CTA_PROTO_SRC_PORT: u16 = 2;
pub const CTA_PROTO_DST_PORT: u16 = 3;
pub const CTA_PROTO_ICMP_ID: u16 = 4;
pub const CTA_PROTO_ICMP_TYPE: u16 = 5;
pub const CTA_PROTO_ICMP_CODE: u16 = 6;
pub const CTA_PROTO_ICMPV6_ID: u16 = 7;
pub const CTA_PROTO_ICMPV6_TYPE: u16 = 8;
pub const CTA_PROTO_ICMPV6_CODE: u16 = 9;

// enum ctattr_protoinfo / ctattr_protoinfo_tcp
pub const CTA_PROTOINFO_TCP: u16 = 1;
pub const CTA_PROTOINFO_TCP_STATE: u16 = 1;

// enum ctattr_counters
pub const CTA_COUNTERS_PACKETS: u16 = 1;
pub const CTA_COUNTERS_BYTES: u16 = 2;
pub const CTA_COUNTERS32_PACKETS: u16 = 3;
pub const CTA_COUNTERS32_BYTES: u16 = 4;

// enum ctattr_tstamp
pub const CTA_TIMESTAMP_START: u16 = 1;
pub const CTA_TIMESTAMP_STOP: u16 = 2;

/// `IPS_SEEN_REPLY`: packets were seen in both directions.
pub const IPS_SEEN_REPLY: u32 = 1 << 1;

/// Masks the nested (0x8000) and byte-order (0x4000) flags off an attribute type.
const NLA_TYPE_MASK: u16 = 0x3fff;

/// What kind of ctnetlink message this was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MsgKind {
    /// A NEW event: the entry was just confirmed.
    New,
    /// An UPDATE event (status or protocol state changed).
    Update,
    /// A DESTROY event.
    Destroy,
    /// One entry of a table dump.
    Dump,
}

/// One direction of a conntrack entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CtTuple {
    pub src: IpAddr,
    pub dst: IpAddr,
    pub proto: u8,
    pub sport: Option<u16>,
    pub dport: Option<u16>,
    pub icmp_id: Option<u16>,
    pub icmp_type: Option<u8>,
    pub icmp_code: Option<u8>,
}

const UNSPECIFIED: IpAddr = IpAddr::V4(Ipv4Addr::UNSPECIFIED);

impl Default for CtTuple {
    fn default() -> Self {
        CtTuple {
            src: UNSPECIFIED,
            dst: UNSPECIFIED,
            proto: 0,
            sport: None,
            dport: None,
            icmp_id: None,
            icmp_type: None,
            icmp_code: None,
        }
    }
}

/// Packet and byte counter of one direction (`CTA_COUNTERS_ORIG/REPLY`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CtCounter {
    pub packets: u64,
    pub bytes: u64,
}

/// A decoded conntrack message. Plain data (`Copy`), so it travels through the reader's queue
/// without allocation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CtMsg {
    pub kind: MsgKind,
    /// nfgenmsg family: 2 IPv4, 10 IPv6.
    pub family: u8,
    /// The netlink port id of the sender; for DESTROY, 0 means the entry expired.
    pub portid: u32,
    pub id: Option<u32>,
    pub orig: CtTuple,
    pub reply: Option<CtTuple>,
    pub status: u32,
    pub tcp_state: Option<u8>,
    pub timeout: Option<u32>,
    pub mark: Option<u32>,
    pub zone: Option<u16>,
    pub counters_orig: Option<CtCounter>,
    pub counters_reply: Option<CtCounter>,
    /// Kernel start/stop of the entry, wall clock ns (`nf_conntrack_timestamp`).
    pub ts_start: Option<u64>,
    pub ts_stop: Option<u64>,
    /// When the kernel generated this event, wall clock ns (`CTA_TIMESTAMP_EVENT`).
    pub ts_event: Option<u64>,
    /// Bit n set: a top-level attribute of type n (< 64) that this decoder does not know was
    /// present. Reported, never silently ignored.
    pub unknown: u64,
}

impl CtMsg {
    pub fn empty(kind: MsgKind, family: u8, portid: u32) -> CtMsg {
        CtMsg {
            kind,
            family,
            portid,
            id: None,
            orig: CtTuple::default(),
            reply: None,
            status: 0,
            tcp_state: None,
            timeout: None,
            mark: None,
            zone: None,
            counters_orig: None,
            counters_reply: None,
            ts_start: None,
            ts_stop: None,
            ts_event: None,
            unknown: 0,
        }
    }

    pub fn seen_reply(&self) -> bool {
        self.status & IPS_SEEN_REPLY != 0
    }
}

/// Why a message could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DecodeError {
    /// The buffer is shorter than a header or an attribute says.
    Truncated(&'static str),
    /// A netlink error message (`NLMSG_ERROR`) with this errno (negative, as the kernel sends).
    Netlink(i32),
    /// A required attribute is missing (e.g. no original tuple).
    Missing(&'static str),
}

impl std::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DecodeError::Truncated(w) => write!(f, "truncated netlink message ({w})"),
            DecodeError::Netlink(e) => write!(
                f,
                "netlink error: {}",
                std::io::Error::from_raw_os_error(-e)
            ),
            DecodeError::Missing(w) => write!(f, "conntrack message without {w}"),
        }
    }
}

/// What one netlink message in a datagram was.
// Boxing the big variant would cost an allocation per message: the hot path avoids that.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Item {
    Conntrack(CtMsg),
    /// End of a dump.
    Done,
    /// An acknowledgement (`NLMSG_ERROR` with errno 0).
    Ack,
    /// Something that is not a conntrack message (other subsystem, NOOP); skipped.
    Other(u16),
}

/// Iterates over the netlink messages of one received datagram.
pub struct Messages<'a> {
    buf: &'a [u8],
}

impl<'a> Messages<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Messages { buf }
    }
}

impl Iterator for Messages<'_> {
    type Item = Result<Item, DecodeError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.buf.len() < NLMSG_HDRLEN {
            return None;
        }
        let len = u32::from_ne_bytes(self.buf[0..4].try_into().unwrap()) as usize;
        if len < NLMSG_HDRLEN || len > self.buf.len() {
            self.buf = &[];
            return Some(Err(DecodeError::Truncated("netlink header")));
        }
        let msg = &self.buf[..len];
        let adv = align4(len).min(self.buf.len());
        self.buf = &self.buf[adv..];
        Some(decode_message(msg))
    }
}

pub(crate) fn align4(n: usize) -> usize {
    (n + 3) & !3
}

/// The first `N` bytes of an attribute's payload, or why not.
fn array<const N: usize>(b: &[u8], what: &'static str) -> Result<[u8; N], DecodeError> {
    b.get(..N)
        .and_then(|s| s.try_into().ok())
        .ok_or(DecodeError::Truncated(what))
}

/// Big-endian numbers at the start of an attribute's payload (netfilter's byte order), or
/// None when the payload is shorter.
pub(crate) fn be16(b: &[u8]) -> Option<u16> {
    Some(u16::from_be_bytes(b.get(..2)?.try_into().ok()?))
}
pub(crate) fn be32(b: &[u8]) -> Option<u32> {
    Some(u32::from_be_bytes(b.get(..4)?.try_into().ok()?))
}
pub(crate) fn be64(b: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(b.get(..8)?.try_into().ok()?))
}

/// Walks netlink attributes in place: yields (type without flags, payload).
pub(crate) struct Attrs<'a> {
    buf: &'a [u8],
    pub(crate) truncated: bool,
}

impl<'a> Attrs<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        Attrs {
            buf,
            truncated: false,
        }
    }
}

impl<'a> Iterator for Attrs<'a> {
    type Item = (u16, &'a [u8]);

    fn next(&mut self) -> Option<Self::Item> {
        if self.buf.len() < 4 {
            return None;
        }
        let len = u16::from_ne_bytes([self.buf[0], self.buf[1]]) as usize;
        let ty = u16::from_ne_bytes([self.buf[2], self.buf[3]]) & NLA_TYPE_MASK;
        if len < 4 || len > self.buf.len() {
            self.truncated = true;
            self.buf = &[];
            return None;
        }
        let payload = &self.buf[4..len];
        let adv = align4(len).min(self.buf.len());
        self.buf = &self.buf[adv..];
        Some((ty, payload))
    }
}

/// Decodes one netlink message (header included).
pub fn decode_message(msg: &[u8]) -> Result<Item, DecodeError> {
    let ty = u16::from_ne_bytes([msg[4], msg[5]]);
    let flags = u16::from_ne_bytes([msg[6], msg[7]]);
    let portid = u32::from_ne_bytes(msg[12..16].try_into().unwrap());
    match ty {
        NLMSG_DONE => return Ok(Item::Done),
        NLMSG_ERROR => {
            let errno = msg
                .get(16..20)
                .map(|b| i32::from_ne_bytes(b.try_into().unwrap()))
                .ok_or(DecodeError::Truncated("netlink error"))?;
            return if errno == 0 {
                Ok(Item::Ack)
            } else {
                Err(DecodeError::Netlink(errno))
            };
        }
        NLMSG_NOOP | NLMSG_OVERRUN => return Ok(Item::Other(ty)),
        _ => {}
    }
    if (ty >> 8) as u8 != NFNL_SUBSYS_CTNETLINK {
        return Ok(Item::Other(ty));
    }
    let kind = match ty as u8 {
        IPCTNL_MSG_CT_NEW if flags & NLM_F_MULTI != 0 => MsgKind::Dump,
        IPCTNL_MSG_CT_NEW if flags & (NLM_F_CREATE | NLM_F_EXCL) == NLM_F_CREATE | NLM_F_EXCL => {
            MsgKind::New
        }
        IPCTNL_MSG_CT_NEW => MsgKind::Update,
        IPCTNL_MSG_CT_DELETE => MsgKind::Destroy,
        _ => return Ok(Item::Other(ty)),
    };
    let body = &msg[NLMSG_HDRLEN..];
    if body.len() < 4 {
        return Err(DecodeError::Truncated("nfgenmsg"));
    }
    let mut m = CtMsg::empty(kind, body[0], portid);
    let mut have_orig = false;
    let mut attrs = Attrs::new(&body[4..]);
    for (t, p) in &mut attrs {
        match t {
            CTA_TUPLE_ORIG => {
                m.orig = decode_tuple(p)?;
                have_orig = true;
            }
            CTA_TUPLE_REPLY => m.reply = Some(decode_tuple(p)?),
            CTA_STATUS => m.status = be32(p).ok_or(DecodeError::Truncated("CTA_STATUS"))?,
            CTA_PROTOINFO => {
                for (t, p) in Attrs::new(p) {
                    if t == CTA_PROTOINFO_TCP {
                        for (t, p) in Attrs::new(p) {
                            if t == CTA_PROTOINFO_TCP_STATE {
                                m.tcp_state = p.first().copied();
                            }
                        }
                    }
                }
            }
            CTA_TIMEOUT => m.timeout = be32(p),
            CTA_MARK => m.mark = be32(p),
            CTA_ID => m.id = be32(p),
            CTA_ZONE => m.zone = be16(p),
            CTA_COUNTERS_ORIG => m.counters_orig = Some(decode_counters(p)),
            CTA_COUNTERS_REPLY => m.counters_reply = Some(decode_counters(p)),
            CTA_TIMESTAMP => {
                for (t, p) in Attrs::new(p) {
                    match t {
                        CTA_TIMESTAMP_START => m.ts_start = be64(p),
                        CTA_TIMESTAMP_STOP => m.ts_stop = be64(p),
                        _ => {}
                    }
                }
            }
            CTA_TIMESTAMP_EVENT => m.ts_event = be64(p),
            // Known attributes ipclog has no use for.
            CTA_HELP | CTA_NAT_SRC | CTA_USE | CTA_NAT_DST | CTA_TUPLE_MASTER
            | CTA_SEQ_ADJ_ORIG | CTA_SEQ_ADJ_REPLY | CTA_SECMARK | CTA_SECCTX | CTA_MARK_MASK
            | CTA_LABELS | CTA_LABELS_MASK | CTA_SYNPROXY | CTA_FILTER | CTA_STATUS_MASK => {}
            other => m.unknown |= 1u64 << other.min(63),
        }
    }
    if attrs.truncated {
        return Err(DecodeError::Truncated("attribute"));
    }
    if !have_orig {
        return Err(DecodeError::Missing("original tuple"));
    }
    Ok(Item::Conntrack(m))
}

fn decode_counters(p: &[u8]) -> CtCounter {
    let mut c = CtCounter::default();
    for (t, v) in Attrs::new(p) {
        match t {
            CTA_COUNTERS_PACKETS => c.packets = be64(v).unwrap_or(0),
            CTA_COUNTERS_BYTES => c.bytes = be64(v).unwrap_or(0),
            CTA_COUNTERS32_PACKETS => c.packets = be32(v).unwrap_or(0) as u64,
            CTA_COUNTERS32_BYTES => c.bytes = be32(v).unwrap_or(0) as u64,
            _ => {}
        }
    }
    c
}

pub(crate) fn decode_tuple(p: &[u8]) -> Result<CtTuple, DecodeError> {
    let mut t = CtTuple::default();
    for (ty, v) in Attrs::new(p) {
        match ty {
            CTA_TUPLE_IP => {
                for (ty, a) in Attrs::new(v) {
                    let ip = match ty {
                        CTA_IP_V4_SRC | CTA_IP_V4_DST => {
                            IpAddr::V4(Ipv4Addr::from(array::<4>(a, "IPv4 address")?))
                        }
                        CTA_IP_V6_SRC | CTA_IP_V6_DST => {
                            IpAddr::V6(Ipv6Addr::from(array::<16>(a, "IPv6 address")?))
                        }
                        _ => continue,
                    };
                    if matches!(ty, CTA_IP_V4_SRC | CTA_IP_V6_SRC) {
                        t.src = ip
                    } else {
                        t.dst = ip
                    }
                }
            }
            CTA_TUPLE_PROTO => {
                for (ty, a) in Attrs::new(v) {
                    match ty {
                        CTA_PROTO_NUM => t.proto = a.first().copied().unwrap_or(0),
                        CTA_PROTO_SRC_PORT => t.sport = be16(a),
                        CTA_PROTO_DST_PORT => t.dport = be16(a),
                        CTA_PROTO_ICMP_ID | CTA_PROTO_ICMPV6_ID => t.icmp_id = be16(a),
                        CTA_PROTO_ICMP_TYPE | CTA_PROTO_ICMPV6_TYPE => {
                            t.icmp_type = a.first().copied()
                        }
                        CTA_PROTO_ICMP_CODE | CTA_PROTO_ICMPV6_CODE => {
                            t.icmp_code = a.first().copied()
                        }
                        _ => {}
                    }
                }
            }
            // The zone is also a top-level attribute (CTA_ZONE), which is the one used.
            CTA_TUPLE_ZONE => {}
            _ => {}
        }
    }
    Ok(t)
}

/// A dump request for the whole conntrack table of `family` (2 = IPv4, 10 = IPv6, 0 = both):
/// a netlink header and an nfgenmsg, no attributes. Built by hand, 20 bytes, so the netlink
/// crates are needed only by the tests that check it against them.
pub fn dump_request(family: u8, seq: u32) -> Vec<u8> {
    const NLM_F_REQUEST: u16 = 0x1;
    const NLM_F_DUMP: u16 = 0x300;
    const IPCTNL_MSG_CT_GET: u8 = 1;
    const NFNETLINK_V0: u8 = 0;
    let len = NLMSG_HDRLEN + 4;
    let ty = u16::from(NFNL_SUBSYS_CTNETLINK) << 8 | u16::from(IPCTNL_MSG_CT_GET);
    let mut b = Vec::with_capacity(len);
    b.extend_from_slice(&(len as u32).to_ne_bytes());
    b.extend_from_slice(&ty.to_ne_bytes());
    b.extend_from_slice(&(NLM_F_REQUEST | NLM_F_DUMP).to_ne_bytes());
    b.extend_from_slice(&seq.to_ne_bytes());
    // Port id 0: the kernel fills in the socket's.
    b.extend_from_slice(&0u32.to_ne_bytes());
    // nfgenmsg: family, version, resource id 0 (big-endian).
    b.extend_from_slice(&[family, NFNETLINK_V0, 0, 0]);
    b
}

#[cfg(test)]
mod tests {
    use super::*;
    use netlink_packet_core::{DefaultNla, NetlinkHeader, NetlinkMessage, NetlinkPayload};
    use netlink_packet_netfilter::conntrack::{
        ConntrackAttribute, ConntrackMessage, IPTuple, ProtoInfo, ProtoInfoTCP, ProtoTuple,
        Protocol, Status, Tuple,
    };
    use netlink_packet_netfilter::{NetfilterHeader, NetfilterMessage};

    fn nested(kind: u16, children: &[(u16, Vec<u8>)]) -> DefaultNla {
        let mut v = Vec::new();
        for (k, p) in children {
            let len = 4 + p.len();
            v.extend_from_slice(&(len as u16).to_ne_bytes());
            v.extend_from_slice(&k.to_ne_bytes());
            v.extend_from_slice(p);
            while v.len() % 4 != 0 {
                v.push(0);
            }
        }
        DefaultNla::new(kind | 0x8000, v)
    }

    fn tuple(src: &str, dst: &str, sport: u16, dport: u16) -> Vec<Tuple> {
        vec![
            Tuple::Ip(vec![
                IPTuple::SourceAddress(src.parse().unwrap()),
                IPTuple::DestinationAddress(dst.parse().unwrap()),
            ]),
            Tuple::Proto(vec![
                ProtoTuple::Protocol(Protocol::Tcp),
                ProtoTuple::SourcePort(sport),
                ProtoTuple::DestinationPort(dport),
            ]),
        ]
    }

    /// A DESTROY message as the kernel sends it, emitted by the crate (with the attributes the
    /// crate does not model added as raw NLAs).
    fn destroy_bytes() -> Vec<u8> {
        let attrs = vec![
            ConntrackAttribute::CtaTupleOrig(tuple("10.0.0.1", "10.0.0.2", 40000, 80)),
            ConntrackAttribute::CtaTupleReply(tuple("10.0.0.2", "192.168.1.1", 80, 40001)),
            ConntrackAttribute::CtaStatus(Status::SeenReply | Status::Assured),
            ConntrackAttribute::CtaProtoInfo(vec![ProtoInfo::TCP(vec![ProtoInfoTCP::State(7)])]),
            ConntrackAttribute::CtaMark(7),
            ConntrackAttribute::Other(DefaultNla::new(
                CTA_ID,
                0xdeadbeefu32.to_be_bytes().to_vec(),
            )),
            ConntrackAttribute::Other(DefaultNla::new(CTA_ZONE, vec![0, 3, 0, 0])),
            ConntrackAttribute::Other(nested(
                CTA_COUNTERS_ORIG,
                &[
                    (CTA_COUNTERS_PACKETS, 5u64.to_be_bytes().to_vec()),
                    (CTA_COUNTERS_BYTES, 400u64.to_be_bytes().to_vec()),
                ],
            )),
            ConntrackAttribute::Other(nested(
                CTA_COUNTERS_REPLY,
                &[
                    (CTA_COUNTERS_PACKETS, 4u64.to_be_bytes().to_vec()),
                    (CTA_COUNTERS_BYTES, 3000u64.to_be_bytes().to_vec()),
                ],
            )),
            ConntrackAttribute::Other(nested(
                CTA_TIMESTAMP,
                &[
                    (
                        CTA_TIMESTAMP_START,
                        1_700_000_000_000_000_000u64.to_be_bytes().to_vec(),
                    ),
                    (
                        CTA_TIMESTAMP_STOP,
                        1_700_000_010_500_000_000u64.to_be_bytes().to_vec(),
                    ),
                ],
            )),
            ConntrackAttribute::Other(DefaultNla::new(45, vec![1, 2, 3, 4])),
        ];
        delete_bytes(2, attrs)
    }

    /// A DESTROY message of `family` with `attrs`, serialized by the crate.
    fn delete_bytes(family: u8, attrs: Vec<ConntrackAttribute>) -> Vec<u8> {
        let mut hdr = NetlinkHeader::default();
        hdr.message_type = 0x0102;
        let mut msg = NetlinkMessage::new(
            hdr,
            NetlinkPayload::InnerMessage(NetfilterMessage::new(
                NetfilterHeader::new(family.into(), 0, 0),
                ConntrackMessage::Delete(attrs),
            )),
        );
        msg.finalize();
        let mut buf = vec![0u8; msg.buffer_len()];
        msg.serialize(&mut buf);
        buf
    }

    #[test]
    fn decodes_what_the_crate_leaves_opaque() {
        let buf = destroy_bytes();
        let items: Vec<_> = Messages::new(&buf).collect();
        assert_eq!(items.len(), 1);
        let Ok(Item::Conntrack(m)) = &items[0] else {
            panic!("{items:?}")
        };
        assert_eq!(m.kind, MsgKind::Destroy);
        assert_eq!(m.family, 2);
        assert_eq!(m.orig.src, "10.0.0.1".parse::<IpAddr>().unwrap());
        assert_eq!(
            (m.orig.sport, m.orig.dport, m.orig.proto),
            (Some(40000), Some(80), 6)
        );
        assert_eq!(
            m.reply.unwrap().dst,
            "192.168.1.1".parse::<IpAddr>().unwrap()
        );
        assert_eq!(m.tcp_state, Some(7));
        assert!(m.seen_reply());
        assert_eq!(m.id, Some(0xdeadbeef));
        assert_eq!(m.zone, Some(3));
        assert_eq!(m.mark, Some(7));
        assert_eq!(
            m.counters_orig,
            Some(CtCounter {
                packets: 5,
                bytes: 400
            })
        );
        assert_eq!(
            m.counters_reply,
            Some(CtCounter {
                packets: 4,
                bytes: 3000
            })
        );
        assert_eq!(m.ts_start, Some(1_700_000_000_000_000_000));
        assert_eq!(m.ts_stop, Some(1_700_000_010_500_000_000));
        assert_eq!(m.unknown, 1 << 45);
    }

    /// IPv6 tuples decode too (both directions), and a short address is an error.
    #[test]
    fn ipv6_tuples() {
        let attrs = vec![
            ConntrackAttribute::CtaTupleOrig(tuple("2001:db8::1", "2001:db8::2", 5, 6)),
            ConntrackAttribute::CtaTupleReply(tuple("2001:db8::2", "2001:db8::1", 6, 5)),
        ];
        let mut buf = delete_bytes(10, attrs);
        let Ok(Item::Conntrack(m)) = decode_message(&buf) else {
            panic!("not decoded")
        };
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert_eq!(
            (m.orig.src, m.orig.dst),
            (ip("2001:db8::1"), ip("2001:db8::2"))
        );
        assert_eq!(
            m.reply.map(|r| (r.src, r.sport)),
            Some((ip("2001:db8::2"), Some(6)))
        );
        // Cut the first address attribute's payload to 8 bytes: its length says 12.
        let at = buf
            .windows(16)
            .position(|w| w == ip6_bytes("2001:db8::1"))
            .unwrap();
        buf[at - 4..at - 2].copy_from_slice(&12u16.to_ne_bytes());
        assert_eq!(
            decode_message(&buf),
            Err(DecodeError::Truncated("IPv6 address"))
        );
    }

    fn ip6_bytes(s: &str) -> [u8; 16] {
        s.parse::<std::net::Ipv6Addr>().unwrap().octets()
    }

    #[test]
    fn new_update_and_dump_are_told_apart_by_flags() {
        let mut buf = destroy_bytes();
        buf[4] = 0; // IPCTNL_MSG_CT_NEW
        let set_flags = |b: &mut Vec<u8>, f: u16| b[6..8].copy_from_slice(&f.to_ne_bytes());
        set_flags(&mut buf, NLM_F_CREATE | NLM_F_EXCL);
        let kind = |b: &[u8]| match decode_message(b).unwrap() {
            Item::Conntrack(m) => m.kind,
            other => panic!("{other:?}"),
        };
        assert_eq!(kind(&buf), MsgKind::New);
        set_flags(&mut buf, 0);
        assert_eq!(kind(&buf), MsgKind::Update);
        set_flags(&mut buf, NLM_F_MULTI);
        assert_eq!(kind(&buf), MsgKind::Dump);
    }

    #[test]
    fn truncated_and_garbage_input_is_an_error_not_a_panic() {
        let buf = destroy_bytes();
        for cut in 0..buf.len() {
            let mut b = buf[..cut].to_vec();
            if b.len() >= 4 {
                b[0..4].copy_from_slice(&(cut as u32).to_ne_bytes());
            }
            for item in Messages::new(&b) {
                let _ = item;
            }
        }
        let mut seed = 12345u32;
        for _ in 0..2000 {
            let mut b = buf.clone();
            for _ in 0..4 {
                seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12345);
                let i = 16 + (seed as usize >> 8) % (b.len() - 16);
                b[i] = (seed >> 3) as u8;
            }
            for item in Messages::new(&b) {
                let _ = item;
            }
        }
    }

    /// The hand-built request is byte for byte what netlink-packet-netfilter builds.
    #[test]
    fn dump_request_is_what_the_crate_builds() {
        use netlink_packet_core::{NLM_F_DUMP, NLM_F_REQUEST};
        for (family, seq) in [(0u8, 1u32), (2, 7), (10, 0xdead_beef)] {
            let mut hdr = NetlinkHeader::default();
            hdr.flags = NLM_F_REQUEST | NLM_F_DUMP;
            hdr.sequence_number = seq;
            let mut msg = NetlinkMessage::new(
                hdr,
                NetlinkPayload::InnerMessage(NetfilterMessage::new(
                    NetfilterHeader::new(family.into(), 0, 0),
                    ConntrackMessage::Get(vec![]),
                )),
            );
            msg.finalize();
            let mut buf = vec![0u8; msg.buffer_len()];
            msg.serialize(&mut buf);
            assert_eq!(dump_request(family, seq), buf, "family {family}");
        }
    }

    #[test]
    fn dump_request_is_a_ctnetlink_get_dump() {
        let b = dump_request(2, 7);
        assert_eq!(b.len(), 20);
        assert_eq!(u16::from_ne_bytes([b[4], b[5]]), 0x0101);
        assert_eq!(u16::from_ne_bytes([b[6], b[7]]), 0x301);
        assert_eq!(u32::from_ne_bytes(b[8..12].try_into().unwrap()), 7);
        assert_eq!(b[16], 2);
    }
}
