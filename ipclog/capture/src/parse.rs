//! Zero-copy header views: from a captured frame to the few fields the flow tracker needs.
//!
//! Hand-written offsets rather than a generic slicer because this runs once per packet and the
//! tracker needs only addresses, ports, lengths, TCP flags/sequence numbers and fragment
//! fields (slicing with etherparse costs ~30 ns per packet, reading offsets a few ns). Every
//! read is bounds-checked against the captured bytes; lengths come from the IP header (the wire),
//! so a snaplen-cut packet is still counted with its real size.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// The link-layer framings we can take IP packets out of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Link {
    /// DLT_EN10MB, with any number (up to 4) of 802.1Q / 802.1ad (QinQ) tags.
    Ethernet,
    /// DLT_LINUX_SLL (113), Linux "cooked" capture v1 (`-i any` on older libpcap).
    Sll,
    /// DLT_LINUX_SLL2 (276).
    Sll2,
    /// Raw IP: the version nibble tells v4 from v6 (DLT_RAW 12/14, LINKTYPE_RAW 101).
    Raw,
    /// LINKTYPE_IPV4 (228).
    RawV4,
    /// LINKTYPE_IPV6 (229).
    RawV6,
    /// DLT_NULL (0) and DLT_LOOP (108): a 4-byte address family, in either byte order.
    Null,
}

impl Link {
    /// The framing for a libpcap link-layer type, or `None` when we do not know it.
    pub fn from_linktype(lt: i32) -> Option<Link> {
        Some(match lt {
            1 => Link::Ethernet,
            113 => Link::Sll,
            276 => Link::Sll2,
            12 | 14 | 101 => Link::Raw,
            228 => Link::RawV4,
            229 => Link::RawV6,
            0 | 108 => Link::Null,
            _ => return None,
        })
    }
}

/// Why a packet could not be used. Each is a counter in the run's summary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(usize)]
pub enum Drop {
    /// The link header is incomplete (including zero-length packets).
    TruncatedLink = 0,
    /// Not IPv4/IPv6 (ARP, LLDP, STP, ...).
    NonIp,
    /// The IP header is not complete in the captured bytes.
    TruncatedIp,
    /// Wrong version, header length below minimum, or an IPv6 extension chain we cannot walk.
    BadIpHeader,
    /// The IP total length contradicts the header or the frame's length on the wire.
    BadIpLength,
    /// The TCP/UDP header is not complete in the captured bytes.
    TruncatedL4,
    /// The TCP data offset or UDP length contradicts the IP length.
    BadL4Length,
    /// A fragment that cannot be part of a datagram (offset past 64 KiB, misaligned, ...).
    FragMalformed,
    /// Fragments whose datagram never completed (timed out, or still pending at the end).
    FragIncomplete,
    /// Fragments dropped because the reassembly buffer was full.
    FragBufferFull,
    /// A new flow would exceed `--session-limit`.
    SessionLimit,
}

pub const DROP_REASONS: usize = 11;

impl Drop {
    pub const ALL: [Drop; DROP_REASONS] = [
        Drop::TruncatedLink,
        Drop::NonIp,
        Drop::TruncatedIp,
        Drop::BadIpHeader,
        Drop::BadIpLength,
        Drop::TruncatedL4,
        Drop::BadL4Length,
        Drop::FragMalformed,
        Drop::FragIncomplete,
        Drop::FragBufferFull,
        Drop::SessionLimit,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Drop::TruncatedLink => "truncated_link",
            Drop::NonIp => "non_ip",
            Drop::TruncatedIp => "truncated_ip",
            Drop::BadIpHeader => "bad_ip_header",
            Drop::BadIpLength => "bad_ip_length",
            Drop::TruncatedL4 => "truncated_l4",
            Drop::BadL4Length => "bad_l4_length",
            Drop::FragMalformed => "frag_malformed",
            Drop::FragIncomplete => "frag_incomplete",
            Drop::FragBufferFull => "frag_buffer_full",
            Drop::SessionLimit => "session_limit",
        }
    }
}

/// Fragment fields of an IP packet that is a fragment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FragInfo {
    /// Identification (16 bits for IPv4, 32 for IPv6).
    pub id: u32,
    /// Offset of this fragment's data in the datagram's transport bytes.
    pub offset: u32,
    pub more: bool,
}

/// An IP packet's fields, borrowing the captured bytes.
#[derive(Debug, Clone, Copy)]
pub struct IpPacket<'a> {
    pub src: IpAddr,
    pub dst: IpAddr,
    /// Transport protocol (after IPv6 extension headers).
    pub proto: u8,
    /// The whole IP packet's length on the wire (header + payload).
    pub ip_len: u32,
    /// Length of the IP header (incl. IPv6 extension headers).
    pub hdr_len: u32,
    /// Transport bytes as captured (may be shorter than `l4_len` when the snaplen cut them).
    pub l4: &'a [u8],
    /// Transport length according to the IP header.
    pub l4_len: u32,
    pub frag: Option<FragInfo>,
    /// The IPv4 header checksum is wrong.
    pub ip_csum_bad: bool,
}

#[inline]
fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

#[inline]
fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// Strips the link header. Returns the IP bytes, the frame length on the wire that belongs to
/// them, and a version hint (4, 6, or 0 = look at the version nibble).
#[inline]
pub fn strip_link(link: Link, frame: &[u8], wire_len: u32) -> Result<(&[u8], u32, u8), Drop> {
    let (off, hint) = match link {
        Link::Ethernet => {
            if frame.len() < 14 {
                return Err(Drop::TruncatedLink);
            }
            let mut off = 12;
            let mut ty = be16(frame, off);
            let mut tags = 0;
            while matches!(ty, 0x8100 | 0x88a8 | 0x9100) {
                tags += 1;
                off += 4;
                if tags > 4 || frame.len() < off + 2 {
                    return Err(Drop::TruncatedLink);
                }
                ty = be16(frame, off);
            }
            (off + 2, ethertype_hint(ty)?)
        }
        Link::Sll => {
            if frame.len() < 16 {
                return Err(Drop::TruncatedLink);
            }
            (16, ethertype_hint(be16(frame, 14))?)
        }
        Link::Sll2 => {
            if frame.len() < 20 {
                return Err(Drop::TruncatedLink);
            }
            (20, ethertype_hint(be16(frame, 0))?)
        }
        Link::Raw => (0, 0),
        Link::RawV4 => (0, 4),
        Link::RawV6 => (0, 6),
        Link::Null => {
            if frame.len() < 4 {
                return Err(Drop::TruncatedLink);
            }
            // The family is in the writer's byte order (DLT_NULL) or network order (DLT_LOOP);
            // the values cannot collide, so accept both. 2 = AF_INET; AF_INET6 is 10 on
            // Linux, 24, 28 or 30 on the BSDs and macOS.
            let le = u32::from_le_bytes([frame[0], frame[1], frame[2], frame[3]]);
            let be = be32(frame, 0);
            let fam = |v: u32| match v {
                2 => Some(4u8),
                10 | 24 | 28 | 30 => Some(6),
                _ => None,
            };
            match fam(le).or_else(|| fam(be)) {
                Some(h) => (4, h),
                None => return Err(Drop::NonIp),
            }
        }
    };
    if frame.len() < off {
        return Err(Drop::TruncatedLink);
    }
    Ok((&frame[off..], wire_len.saturating_sub(off as u32), hint))
}

#[inline]
fn ethertype_hint(ty: u16) -> Result<u8, Drop> {
    match ty {
        0x0800 => Ok(4),
        0x86dd => Ok(6),
        _ => Err(Drop::NonIp),
    }
}

/// Reads the IP header (v4 or v6) at the start of `b`. `wire_len` is how many bytes of the
/// frame on the wire belong to the IP packet (it may be larger: Ethernet padding).
#[inline]
pub fn parse_ip(b: &[u8], wire_len: u32, hint: u8) -> Result<IpPacket<'_>, Drop> {
    if b.is_empty() {
        return Err(Drop::TruncatedIp);
    }
    let version = b[0] >> 4;
    if hint != 0 && version != hint {
        return Err(Drop::BadIpHeader);
    }
    match version {
        4 => parse_v4(b, wire_len),
        6 => parse_v6(b, wire_len),
        _ => Err(Drop::BadIpHeader),
    }
}

#[inline]
fn parse_v4(b: &[u8], wire_len: u32) -> Result<IpPacket<'_>, Drop> {
    if b.len() < 20 {
        return Err(Drop::TruncatedIp);
    }
    let ihl = ((b[0] & 0x0f) as usize) * 4;
    if ihl < 20 {
        return Err(Drop::BadIpHeader);
    }
    if b.len() < ihl {
        return Err(Drop::TruncatedIp);
    }
    let total = be16(b, 2) as u32;
    if total < ihl as u32 || total > wire_len {
        return Err(Drop::BadIpLength);
    }
    let ff = be16(b, 6);
    let more = ff & 0x2000 != 0;
    let offset = ((ff & 0x1fff) as u32) * 8;
    let frag = (more || offset != 0).then_some(FragInfo {
        id: be16(b, 4) as u32,
        offset,
        more,
    });
    let ip_csum_bad = internet_checksum(&b[..ihl], 0) != 0;
    let end = (total as usize).min(b.len());
    Ok(IpPacket {
        src: IpAddr::V4(Ipv4Addr::new(b[12], b[13], b[14], b[15])),
        dst: IpAddr::V4(Ipv4Addr::new(b[16], b[17], b[18], b[19])),
        proto: b[9],
        ip_len: total,
        hdr_len: ihl as u32,
        l4: &b[ihl..end],
        l4_len: total - ihl as u32,
        frag,
        ip_csum_bad,
    })
}

#[inline]
fn parse_v6(b: &[u8], wire_len: u32) -> Result<IpPacket<'_>, Drop> {
    if b.len() < 40 {
        return Err(Drop::TruncatedIp);
    }
    let total = 40 + be16(b, 4) as u32;
    if total > wire_len {
        return Err(Drop::BadIpLength);
    }
    let mut src = [0u8; 16];
    src.copy_from_slice(&b[8..24]);
    let mut dst = [0u8; 16];
    dst.copy_from_slice(&b[24..40]);
    let mut next = b[6];
    let mut off = 40usize;
    let mut frag = None;
    // Walk the extension headers we can skip; stop at anything else (it is the transport).
    for _ in 0..8 {
        match next {
            0 | 43 | 60 | 51 | 44 => {
                if b.len() < off + 8 {
                    return Err(Drop::TruncatedIp);
                }
                let len = match next {
                    44 => {
                        let ff = be16(b, off + 2);
                        let offset = ((ff >> 3) as u32) * 8;
                        let more = ff & 1 != 0;
                        // An atomic fragment (offset 0, no more) is a whole datagram.
                        if more || offset != 0 {
                            frag = Some(FragInfo {
                                id: be32(b, off + 4),
                                offset,
                                more,
                            });
                        }
                        8
                    }
                    51 => (b[off + 1] as usize + 2) * 4,
                    _ => (b[off + 1] as usize + 1) * 8,
                };
                next = b[off];
                off += len;
                if off as u32 > total {
                    return Err(Drop::BadIpLength);
                }
                if frag.is_some() {
                    // Headers after the fragment header are part of the fragmentable data.
                    break;
                }
            }
            _ => break,
        }
    }
    if b.len() < off {
        return Err(Drop::TruncatedIp);
    }
    let end = (total as usize).min(b.len());
    Ok(IpPacket {
        src: IpAddr::V6(Ipv6Addr::from(src)),
        dst: IpAddr::V6(Ipv6Addr::from(dst)),
        proto: next,
        ip_len: total,
        hdr_len: off as u32,
        l4: &b[off..end],
        l4_len: total - off as u32,
        frag,
        ip_csum_bad: false,
    })
}

pub const FIN: u8 = 0x01;
pub const SYN: u8 = 0x02;
pub const RST: u8 = 0x04;
pub const ACK: u8 = 0x10;

/// Transport fields the tracker uses.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct L4 {
    pub sport: Option<u16>,
    pub dport: Option<u16>,
    pub flags: u8,
    pub seq: u32,
    pub ack: u32,
    pub win: u16,
    /// Transport payload length on the wire (TCP: after the header incl. options).
    pub payload: u32,
}

/// Reads the transport header of `proto` from `l4` (captured bytes) with `l4_len` the
/// transport length per the IP header.
#[inline]
pub fn parse_l4(proto: u8, l4: &[u8], l4_len: u32) -> Result<L4, Drop> {
    match proto {
        6 => {
            if l4_len < 20 {
                return Err(Drop::BadL4Length);
            }
            // Ports, sequence numbers, flags and window are in the first 16 bytes; options
            // may have been cut by the snaplen without hurting us.
            if l4.len() < 16 {
                return Err(Drop::TruncatedL4);
            }
            let doff = ((l4[12] >> 4) as u32) * 4;
            if doff < 20 || doff > l4_len {
                return Err(Drop::BadL4Length);
            }
            Ok(L4 {
                sport: Some(be16(l4, 0)),
                dport: Some(be16(l4, 2)),
                seq: be32(l4, 4),
                ack: be32(l4, 8),
                flags: l4[13],
                win: be16(l4, 14),
                payload: l4_len - doff,
            })
        }
        17 | 136 => {
            // UDP and UDP-Lite share the header layout.
            if l4_len < 8 {
                return Err(Drop::BadL4Length);
            }
            if l4.len() < 4 {
                return Err(Drop::TruncatedL4);
            }
            Ok(L4 {
                sport: Some(be16(l4, 0)),
                dport: Some(be16(l4, 2)),
                payload: l4_len - 8,
                ..L4::default()
            })
        }
        1 | 58 => Ok(L4 {
            // ICMP: the header (type, code, checksum, 4 bytes) is not payload.
            payload: l4_len.saturating_sub(8),
            ..L4::default()
        }),
        _ => Ok(L4 {
            payload: l4_len,
            ..L4::default()
        }),
    }
}

/// One's-complement sum folded to 16 bits and complemented: 0 when the data (with its checksum
/// field) is correct. `initial` carries a pseudo-header sum (in network byte order).
///
/// The one's-complement sum does not depend on byte order (RFC 1071), so the data is summed
/// as native 32-bit words into a 64-bit accumulator (no carries to handle, vectorizable) and
/// byte-swapped once at the end.
#[inline]
pub fn internet_checksum(data: &[u8], initial: u64) -> u16 {
    let mut acc: u64 = 0;
    let mut words = data.chunks_exact(4);
    for w in &mut words {
        acc += u32::from_ne_bytes([w[0], w[1], w[2], w[3]]) as u64;
    }
    let rest = words.remainder();
    let mut tail = [0u8; 4];
    tail[..rest.len()].copy_from_slice(rest);
    acc += u32::from_ne_bytes(tail) as u64;
    let mut folded = fold(acc) as u16;
    if cfg!(target_endian = "little") {
        folded = folded.swap_bytes();
    }
    let sum = fold(folded as u64 + initial);
    !(sum as u16)
}

#[inline]
fn fold(mut sum: u64) -> u64 {
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    sum
}

/// Whether the TCP/UDP checksum of a fully captured, unfragmented packet is wrong. `None` when
/// it cannot be checked (cut by the snaplen, fragment, UDP over IPv4 without a checksum, or a
/// protocol without one we check).
#[inline]
pub fn l4_checksum_bad(ip: &IpPacket<'_>) -> Option<bool> {
    if ip.frag.is_some() || ip.l4.len() as u32 != ip.l4_len {
        return None;
    }
    let csum_at = match ip.proto {
        6 => 16,
        17 => 6,
        _ => return None,
    };
    if ip.l4.len() < csum_at + 2 {
        return None;
    }
    if ip.proto == 17 && ip.src.is_ipv4() && be16(ip.l4, 6) == 0 {
        return None;
    }
    let mut sum: u64 = ip.proto as u64 + ip.l4_len as u64;
    match (ip.src, ip.dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            sum += u32::from_be_bytes(s.octets()) as u64 >> 16;
            sum += u32::from_be_bytes(s.octets()) as u64 & 0xffff;
            sum += u32::from_be_bytes(d.octets()) as u64 >> 16;
            sum += u32::from_be_bytes(d.octets()) as u64 & 0xffff;
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            for o in [s.octets(), d.octets()] {
                for p in o.chunks_exact(2) {
                    sum += u16::from_be_bytes([p[0], p[1]]) as u64;
                }
            }
        }
        _ => return None,
    }
    Some(internet_checksum(ip.l4, sum) != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksum_of_known_ipv4_header() {
        // Example header from RFC 1071 style references (checksum 0xb861 filled in).
        let h: [u8; 20] = [
            0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0xb8, 0x61, 0xc0, 0xa8,
            0x00, 0x01, 0xc0, 0xa8, 0x00, 0xc7,
        ];
        assert_eq!(internet_checksum(&h, 0), 0);
        let mut bad = h;
        bad[11] ^= 1;
        assert_ne!(internet_checksum(&bad, 0), 0);
    }

    #[test]
    fn ethernet_qinq_and_non_ip() {
        let mut f = vec![0u8; 12];
        f.extend_from_slice(&[0x88, 0xa8, 0, 1, 0x81, 0x00, 0, 2, 0x08, 0x00]);
        f.extend_from_slice(&[0x45; 4]);
        let (ip, _, hint) = strip_link(Link::Ethernet, &f, f.len() as u32).unwrap();
        assert_eq!(hint, 4);
        assert_eq!(ip.len(), 4);
        let mut arp = vec![0u8; 12];
        arp.extend_from_slice(&[0x08, 0x06, 0, 0]);
        assert_eq!(
            strip_link(Link::Ethernet, &arp, 16).unwrap_err(),
            Drop::NonIp
        );
        assert_eq!(
            strip_link(Link::Ethernet, &[], 0).unwrap_err(),
            Drop::TruncatedLink
        );
    }

    #[test]
    fn null_link_both_byte_orders() {
        for fam in [[2u8, 0, 0, 0], [0, 0, 0, 2]] {
            let mut f = fam.to_vec();
            f.push(0x45);
            assert_eq!(strip_link(Link::Null, &f, 5).unwrap().2, 4);
        }
        assert_eq!(strip_link(Link::Null, &[30, 0, 0, 0], 4).unwrap().2, 6);
        assert_eq!(
            strip_link(Link::Null, &[7, 0, 0, 0], 4).unwrap_err(),
            Drop::NonIp
        );
    }

    #[test]
    fn bad_lengths_are_reasons_not_panics() {
        // IHL 4 (16 bytes) is below the minimum.
        let mut h = [0u8; 20];
        h[0] = 0x44;
        assert_eq!(parse_ip(&h, 20, 0).unwrap_err(), Drop::BadIpHeader);
        // Total length larger than the frame.
        h[0] = 0x45;
        h[3] = 200;
        assert_eq!(parse_ip(&h, 20, 0).unwrap_err(), Drop::BadIpLength);
        assert_eq!(parse_ip(&h[..10], 20, 0).unwrap_err(), Drop::TruncatedIp);
        // TCP data offset past the segment.
        let mut t = [0u8; 20];
        t[12] = 0xf0;
        assert_eq!(parse_l4(6, &t, 20).unwrap_err(), Drop::BadL4Length);
        assert_eq!(parse_l4(6, &t[..10], 20).unwrap_err(), Drop::TruncatedL4);
    }
}
