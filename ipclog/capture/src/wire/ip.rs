//! IPv4 and IPv6 headers: addresses, the transport protocol (after IPv6 extension headers),
//! lengths, fragment fields and the IPv4 header checksum; and the headers to emit them.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::checksum::internet_checksum;
use super::{be16, be32, Drop};

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

const V4_MORE_FRAGMENTS: u16 = 0x2000;
const V4_DONT_FRAGMENT: u16 = 0x4000;
const V6_FRAGMENT_HEADER: u8 = 44;

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
    let more = ff & V4_MORE_FRAGMENTS != 0;
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
            0 | 43 | 60 | 51 | V6_FRAGMENT_HEADER => {
                if b.len() < off + 8 {
                    return Err(Drop::TruncatedIp);
                }
                let len = match next {
                    V6_FRAGMENT_HEADER => {
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

/// Where a fragment's data goes in its datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Frag {
    /// Offset of the data in the datagram's transport bytes (a multiple of 8).
    pub offset: u32,
    pub more: bool,
}

/// An IP header to emit (and what [`IpRepr::parse`] reads back): IPv4 without options, IPv6
/// without extension headers but the fragment header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpRepr {
    /// Source and destination, both of one family, which picks the IP version.
    pub src: IpAddr,
    pub dst: IpAddr,
    pub proto: u8,
    /// TTL (IPv4) or hop limit (IPv6).
    pub ttl: u8,
    /// Identification: the IPv4 header's (16 bits), or the IPv6 fragment header's, which only
    /// a fragment has (0 for an unfragmented IPv6 packet).
    pub ident: u32,
    /// Set when the packet is a fragment. Unfragmented IPv4 packets are sent with "don't
    /// fragment", as Linux does.
    pub frag: Option<Frag>,
}

impl IpRepr {
    /// A header for an unfragmented packet: TTL 64, identification 1 (IPv4).
    pub fn new(src: IpAddr, dst: IpAddr, proto: u8) -> IpRepr {
        IpRepr {
            src,
            dst,
            proto,
            ttl: 64,
            ident: if src.is_ipv4() { 1 } else { 0 },
            frag: None,
        }
    }

    pub fn header_len(&self) -> usize {
        match (self.src, self.frag) {
            (IpAddr::V4(_), _) => 20,
            (IpAddr::V6(_), None) => 40,
            (IpAddr::V6(_), Some(_)) => 48,
        }
    }

    /// Appends the header (IPv4: with its checksum) and then `payload`.
    ///
    /// # Panics
    /// On mixed address families or a payload too long for the header's length field.
    pub fn emit(&self, payload: &[u8], out: &mut Vec<u8>) {
        let total = self.header_len() + payload.len();
        match (self.src, self.dst) {
            (IpAddr::V4(a), IpAddr::V4(b)) => {
                let total = u16::try_from(total).expect("IPv4 packet of at most 65535 bytes");
                let ff = match self.frag {
                    Some(f) => (f.offset / 8) as u16 | if f.more { V4_MORE_FRAGMENTS } else { 0 },
                    None => V4_DONT_FRAGMENT,
                };
                let at = out.len();
                out.extend_from_slice(&[0x45, 0]);
                out.extend_from_slice(&total.to_be_bytes());
                out.extend_from_slice(&(self.ident as u16).to_be_bytes());
                out.extend_from_slice(&ff.to_be_bytes());
                out.extend_from_slice(&[self.ttl, self.proto, 0, 0]);
                out.extend_from_slice(&a.octets());
                out.extend_from_slice(&b.octets());
                let c = internet_checksum(&out[at..at + 20], 0);
                out[at + 10..at + 12].copy_from_slice(&c.to_be_bytes());
            }
            (IpAddr::V6(a), IpAddr::V6(b)) => {
                let len = u16::try_from(total - 40).expect("IPv6 payload of at most 65535 bytes");
                let next = if self.frag.is_some() {
                    V6_FRAGMENT_HEADER
                } else {
                    self.proto
                };
                out.extend_from_slice(&[0x60, 0, 0, 0]);
                out.extend_from_slice(&len.to_be_bytes());
                out.extend_from_slice(&[next, self.ttl]);
                out.extend_from_slice(&a.octets());
                out.extend_from_slice(&b.octets());
                if let Some(f) = self.frag {
                    let ff = ((f.offset / 8) as u16) << 3 | f.more as u16;
                    out.extend_from_slice(&[self.proto, 0]);
                    out.extend_from_slice(&ff.to_be_bytes());
                    out.extend_from_slice(&self.ident.to_be_bytes());
                }
            }
            _ => panic!("mixed address families"),
        }
        out.extend_from_slice(payload);
    }

    /// This header and `payload` as one packet.
    pub fn packet(&self, payload: &[u8]) -> Vec<u8> {
        let mut p = Vec::with_capacity(self.header_len() + payload.len());
        self.emit(payload, &mut p);
        p
    }

    /// Reads the header of the whole IP packet `b` back (with [`parse_ip`], plus the TTL and
    /// identification the tracker has no use for); returns it and the transport bytes.
    pub fn parse(b: &[u8]) -> Result<(IpRepr, &[u8]), Drop> {
        let p = parse_ip(b, b.len() as u32, 0)?;
        let (ttl, ident) = match p.src {
            IpAddr::V4(_) => (b[8], be16(b, 4) as u32),
            IpAddr::V6(_) => (b[7], p.frag.map_or(0, |f| f.id)),
        };
        let repr = IpRepr {
            src: p.src,
            dst: p.dst,
            proto: p.proto,
            ttl,
            ident,
            frag: p.frag.map(|f| Frag {
                offset: f.offset,
                more: f.more,
            }),
        };
        Ok((repr, p.l4))
    }
}

/// The datagram `repr` + `payload` as fragments of at most `chunk` payload bytes each (a
/// multiple of 8), all with `repr`'s identification.
pub fn fragment(repr: &IpRepr, payload: &[u8], chunk: usize) -> Vec<Vec<u8>> {
    assert!(chunk.is_multiple_of(8) && chunk > 0, "chunk {chunk}");
    payload
        .chunks(chunk)
        .enumerate()
        .map(|(i, part)| {
            let offset = i * chunk;
            let frag = Frag {
                offset: offset as u32,
                more: offset + part.len() < payload.len(),
            };
            IpRepr {
                frag: Some(frag),
                ..*repr
            }
            .packet(part)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reprs() -> Vec<IpRepr> {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let mut all = Vec::new();
        for (src, dst) in [
            (ip("10.0.0.1"), ip("192.168.255.254")),
            (ip("2001:db8::1"), ip("fe80::abcd:1")),
        ] {
            for proto in [6, 17, 1, 58, 132] {
                all.push(IpRepr::new(src, dst, proto));
                all.push(IpRepr {
                    ttl: 1,
                    // Only an IPv6 fragment has an identification.
                    ident: if dst.is_ipv4() { 0xbeef } else { 0 },
                    ..IpRepr::new(dst, src, proto)
                });
            }
            for (offset, more) in [(0, true), (1480, true), (65528, false)] {
                all.push(IpRepr {
                    ident: 0x1234,
                    frag: Some(Frag { offset, more }),
                    ..IpRepr::new(src, dst, 17)
                });
            }
        }
        all
    }

    #[test]
    fn every_header_emitted_parses_back_to_the_same_fields() {
        for r in reprs() {
            for payload in [&b""[..], b"x", &[0xa5; 1001]] {
                let p = r.packet(payload);
                let (back, l4) = IpRepr::parse(&p).unwrap();
                assert_eq!(back, r);
                assert_eq!(l4, payload);
                let ip = parse_ip(&p, p.len() as u32, if r.src.is_ipv4() { 4 } else { 6 }).unwrap();
                assert_eq!(ip.ip_len as usize, p.len());
                assert_eq!(ip.hdr_len as usize, r.header_len());
                assert_eq!(ip.l4_len as usize, payload.len());
                assert!(!ip.ip_csum_bad, "{r:?}");
                assert_eq!(
                    ip.frag.map(|f| (f.offset, f.more)),
                    r.frag.map(|f| (f.offset, f.more))
                );
                // Any changed header byte but the TTL shows as a bad IPv4 checksum.
                if r.src.is_ipv4() {
                    let mut bad = p.clone();
                    bad[4] ^= 0x40;
                    assert!(parse_ip(&bad, bad.len() as u32, 4).unwrap().ip_csum_bad);
                }
                // Ethernet padding after the packet is not part of it.
                let mut padded = p.clone();
                padded.extend_from_slice(&[0; 6]);
                let ip = parse_ip(&padded, padded.len() as u32, 0).unwrap();
                assert_eq!(ip.l4, payload);
            }
        }
    }

    #[test]
    fn fragments_carry_the_datagram_in_order_and_only_the_last_says_so() {
        for r in reprs().into_iter().filter(|r| r.frag.is_none()) {
            let payload: Vec<u8> = (0..300u32).map(|i| i as u8).collect();
            let frags = fragment(&r, &payload, 64);
            assert_eq!(frags.len(), 5);
            let mut data = Vec::new();
            for (i, f) in frags.iter().enumerate() {
                let (back, l4) = IpRepr::parse(f).unwrap();
                let want = Frag {
                    offset: i as u32 * 64,
                    more: i < 4,
                };
                assert_eq!(back.frag, Some(want));
                assert_eq!((back.src, back.dst, back.proto), (r.src, r.dst, r.proto));
                assert_eq!(back.ident, r.ident);
                data.extend_from_slice(l4);
            }
            assert_eq!(data, payload);
        }
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
        // A version the link header did not announce.
        h[3] = 20;
        assert_eq!(parse_ip(&h, 20, 6).unwrap_err(), Drop::BadIpHeader);
    }
}
