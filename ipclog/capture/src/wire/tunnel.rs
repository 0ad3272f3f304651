//! Tunnels, both ways: where in an outer packet the inner packet starts, for the
//! encapsulations Zeek decapsulates by default — IP in IP (protocols 4 and 41), GRE (47:
//! version 0 with checksum, key and sequence number, version 1 / PPTP with PPP), VXLAN (UDP
//! 4789), Geneve (UDP 6081, with options) and GTPv1-U (UDP 2152, G-PDU with sequence number,
//! N-PDU number and extension headers) — and the encapsulations to emit (tests, fuzz seeds).
//!
//! [`is_candidate`] is all a plain packet pays: a protocol compare, and for UDP two port
//! compares. The rest runs only for packets that pass it.

use std::net::IpAddr;

use super::checksum::internet_checksum;
use super::{be16, Drop, IpRepr, UdpRepr, L4};

/// Tunnels opened inside one another at most (the outermost is depth 1); a packet in a
/// deeper one is counted in the connection of the deepest opened, and as
/// `tunnel_too_deep`.
pub const MAX_DEPTH: usize = 4;

pub const VXLAN_PORT: u16 = 4789;
pub const GENEVE_PORT: u16 = 6081;
pub const GTP_U_PORT: u16 = 2152;

const IPIP: u8 = 4;
const IPV6_IN_IP: u8 = 41;
const GRE: u8 = 47;
const UDP: u8 = 17;

const ETHERTYPE_IPV4: u16 = 0x0800;
const ETHERTYPE_IPV6: u16 = 0x86dd;
/// Transparent Ethernet bridging: the payload is an Ethernet frame.
const ETHERTYPE_TEB: u16 = 0x6558;
/// PPP, carried by PPTP's enhanced GRE (version 1).
const ETHERTYPE_PPP: u16 = 0x880b;

const GRE_C: u16 = 0x8000;
const GRE_R: u16 = 0x4000;
const GRE_K: u16 = 0x2000;
const GRE_S: u16 = 0x1000;
/// Version 1: acknowledgement number present.
const GRE_A: u16 = 0x0080;

const GTP_G_PDU: u8 = 255;
/// Extension headers followed before the G-PDU is called malformed.
const GTP_MAX_EXTENSIONS: usize = 16;

/// What the inner packet starts with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InnerLink {
    /// An IP packet; 4 or 6 when the encapsulation says which, 0 when the version nibble must.
    Ip(u8),
    /// An Ethernet frame (VXLAN, Geneve and GRE transparent bridging).
    Ethernet,
}

/// The packet inside a tunnel: its framing, its captured bytes, and its length on the wire.
#[derive(Debug, Clone, Copy)]
pub struct Inner<'a> {
    pub link: InnerLink,
    pub bytes: &'a [u8],
    pub wire_len: u32,
}

/// Whether a packet may carry a tunnel: IP in IP, GRE, or UDP from or to a tunnel port.
#[inline]
pub fn is_candidate(proto: u8, l4: &L4) -> bool {
    match proto {
        IPIP | IPV6_IN_IP | GRE => true,
        UDP => is_tunnel_port(l4.dport) || is_tunnel_port(l4.sport),
        _ => false,
    }
}

#[inline]
fn is_tunnel_port(p: Option<u16>) -> bool {
    matches!(p, Some(VXLAN_PORT | GENEVE_PORT | GTP_U_PORT))
}

/// The inner packet of a packet [`is_candidate`] chose: `l4` the captured transport bytes (for
/// UDP, from its header on), `l4_len` their length on the wire. `Ok(None)` for a tunnel's
/// packet that carries no packet (a GTP control message, a PPTP acknowledgement).
pub fn decapsulate<'a>(
    proto: u8,
    l4: &L4,
    bytes: &'a [u8],
    l4_len: u32,
) -> Result<Option<Inner<'a>>, Drop> {
    match proto {
        IPIP => Ok(Some(inner(InnerLink::Ip(4), bytes, l4_len, 0))),
        IPV6_IN_IP => Ok(Some(inner(InnerLink::Ip(6), bytes, l4_len, 0))),
        GRE => gre(bytes, l4_len),
        _ => {
            // UDP: the port says which (the destination's first, as Zeek does).
            if bytes.len() < 8 || l4_len < 8 {
                return Err(Drop::TunnelTruncated);
            }
            let (b, len) = (&bytes[8..], l4_len - 8);
            let port = if is_tunnel_port(l4.dport) {
                l4.dport
            } else {
                l4.sport
            };
            match port {
                Some(VXLAN_PORT) => vxlan(b, len),
                Some(GENEVE_PORT) => geneve(b, len),
                _ => gtp(b, len),
            }
        }
    }
}

/// The inner packet at `off` of `b` (captured; `len` on the wire), checked by the caller.
fn inner(link: InnerLink, b: &[u8], len: u32, off: usize) -> Inner<'_> {
    Inner {
        link,
        bytes: b.get(off..).unwrap_or(&[]),
        wire_len: len.saturating_sub(off as u32),
    }
}

/// Checks that a header of `hdr` bytes fits the wire length and the captured bytes.
fn header_fits(b: &[u8], len: u32, hdr: usize) -> Result<(), Drop> {
    if (len as usize) < hdr {
        Err(Drop::TunnelBadHeader)
    } else if b.len() < hdr {
        Err(Drop::TunnelTruncated)
    } else {
        Ok(())
    }
}

fn ethertype_link(ty: u16) -> Result<InnerLink, Drop> {
    match ty {
        ETHERTYPE_IPV4 => Ok(InnerLink::Ip(4)),
        ETHERTYPE_IPV6 => Ok(InnerLink::Ip(6)),
        ETHERTYPE_TEB => Ok(InnerLink::Ethernet),
        _ => Err(Drop::TunnelUnsupported),
    }
}

/// GRE (RFC 2784/2890: checksum, key, sequence number; RFC 1701 routing is not followed) and
/// PPTP's enhanced GRE (RFC 2637: version 1, key, optional sequence and acknowledgement
/// numbers, a PPP frame).
fn gre(b: &[u8], len: u32) -> Result<Option<Inner<'_>>, Drop> {
    header_fits(b, len, 4)?;
    let flags = be16(b, 0);
    let ty = be16(b, 2);
    match flags & 7 {
        0 => {
            // Strict source route, recursion control and reserved bits must be zero.
            if flags & 0x0ff8 != 0 {
                return Err(Drop::TunnelBadHeader);
            }
            if flags & GRE_R != 0 {
                return Err(Drop::TunnelUnsupported);
            }
            let hdr = 4 + 4
                * ((flags & GRE_C != 0) as usize
                    + (flags & GRE_K != 0) as usize
                    + (flags & GRE_S != 0) as usize);
            header_fits(b, len, hdr)?;
            Ok(Some(inner(ethertype_link(ty)?, b, len, hdr)))
        }
        1 => {
            // Enhanced GRE: key (payload length, call id) required, no checksum or routing.
            if flags & (GRE_C | GRE_R) != 0 || flags & GRE_K == 0 || flags & 0x0f78 != 0 {
                return Err(Drop::TunnelBadHeader);
            }
            if ty != ETHERTYPE_PPP {
                return Err(Drop::TunnelUnsupported);
            }
            let hdr = 8 + 4 * ((flags & GRE_S != 0) as usize + (flags & GRE_A != 0) as usize);
            header_fits(b, len, hdr)?;
            let payload = be16(b, 4) as u32;
            if payload == 0 {
                // An acknowledgement only.
                return Ok(None);
            }
            if hdr as u32 + payload > len {
                return Err(Drop::TunnelBadHeader);
            }
            ppp(b, hdr as u32 + payload, hdr)
        }
        _ => Err(Drop::TunnelBadHeader),
    }
}

/// A PPP frame at `off`: address and control (`ff 03`) when not compressed away, then the
/// protocol (one byte when compressed).
fn ppp(b: &[u8], len: u32, mut off: usize) -> Result<Option<Inner<'_>>, Drop> {
    header_fits(b, len, off + 1)?;
    if b[off] == 0xff {
        header_fits(b, len, off + 3)?;
        if b[off + 1] != 0x03 {
            return Err(Drop::TunnelBadHeader);
        }
        off += 2;
    }
    let (proto, n) = if b[off] & 1 == 1 {
        (b[off] as u16, 1)
    } else {
        header_fits(b, len, off + 2)?;
        (be16(b, off), 2)
    };
    let link = match proto {
        0x21 => InnerLink::Ip(4),
        0x57 => InnerLink::Ip(6),
        // Link and network control protocols, compression: nothing to track.
        _ => return Err(Drop::TunnelUnsupported),
    };
    Ok(Some(inner(link, b, len, off + n)))
}

/// VXLAN (RFC 7348): 8 bytes, the I flag set, then an Ethernet frame.
fn vxlan(b: &[u8], len: u32) -> Result<Option<Inner<'_>>, Drop> {
    header_fits(b, len, 8)?;
    if b[0] & 0x08 == 0 {
        return Err(Drop::TunnelBadHeader);
    }
    Ok(Some(inner(InnerLink::Ethernet, b, len, 8)))
}

/// Geneve (RFC 8926): version 0, 8 bytes plus options, then what the protocol type says.
fn geneve(b: &[u8], len: u32) -> Result<Option<Inner<'_>>, Drop> {
    header_fits(b, len, 8)?;
    if b[0] >> 6 != 0 {
        return Err(Drop::TunnelBadHeader);
    }
    let hdr = 8 + (b[0] & 0x3f) as usize * 4;
    header_fits(b, len, hdr)?;
    Ok(Some(inner(ethertype_link(be16(b, 2))?, b, len, hdr)))
}

/// GTPv1-U (3GPP TS 29.281): version 1, protocol type GTP; a G-PDU (type 255) carries an IP
/// packet after the optional sequence number, N-PDU number and extension headers. Other
/// messages (echo, error indication, end marker) carry none.
fn gtp(b: &[u8], len: u32) -> Result<Option<Inner<'_>>, Drop> {
    header_fits(b, len, 8)?;
    let flags = b[0];
    if flags >> 5 != 1 || flags & 0x10 == 0 {
        // Not version 1, or GTP' (charging).
        return Err(Drop::TunnelBadHeader);
    }
    if b[1] != GTP_G_PDU {
        return Ok(None);
    }
    // The length counts the bytes after the first 8 (optional fields included).
    let end = 8 + be16(b, 2) as u32;
    if end > len {
        return Err(Drop::TunnelBadHeader);
    }
    let mut hdr = 8usize;
    if flags & 0x07 != 0 {
        hdr = 12;
        header_fits(b, end, hdr)?;
        if flags & 0x04 != 0 {
            let mut next = b[11];
            let mut n = 0;
            while next != 0 {
                n += 1;
                if n > GTP_MAX_EXTENSIONS {
                    return Err(Drop::TunnelBadHeader);
                }
                header_fits(b, end, hdr + 1)?;
                let ext = b[hdr] as usize * 4;
                if ext == 0 {
                    return Err(Drop::TunnelBadHeader);
                }
                header_fits(b, end, hdr + ext)?;
                next = b[hdr + ext - 1];
                hdr += ext;
            }
        }
    }
    Ok(Some(inner(InnerLink::Ip(0), b, end, hdr)))
}

/// An encapsulation to emit (and what [`decapsulate`] reads back).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Encap {
    /// IP in IP: protocol 4 for an inner IPv4 packet, 41 for IPv6.
    IpInIp,
    /// GRE version 0 with the optional fields given; `ethernet` carries the inner packet in
    /// an Ethernet frame (transparent bridging, 0x6558).
    Gre {
        checksum: bool,
        key: Option<u32>,
        seq: Option<u32>,
        ethernet: bool,
    },
    /// PPTP's enhanced GRE (version 1) with a PPP frame, sequence and acknowledgement numbers.
    Pptp {
        seq: Option<u32>,
        ack: Option<u32>,
    },
    Vxlan {
        vni: u32,
    },
    /// Geneve with `options` (a multiple of 4 bytes, at most 252) and an inner Ethernet frame
    /// or IP packet.
    Geneve {
        options: Vec<u8>,
        ethernet: bool,
    },
    /// A GTPv1-U G-PDU with the optional sequence number, N-PDU number and extension headers
    /// (each its content, padded to a multiple of 4 bytes with its length byte and next type).
    Gtp {
        teid: u32,
        seq: Option<u16>,
        npdu: Option<u8>,
        extensions: Vec<Vec<u8>>,
    },
}

/// The Ethernet header VXLAN, Geneve and GRE bridging put in front of an inner IP packet.
fn ethernet(inner: &[u8], out: &mut Vec<u8>) {
    out.extend_from_slice(&[2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1]);
    let ty = if inner.first().is_some_and(|v| v >> 4 == 6) {
        ETHERTYPE_IPV6
    } else {
        ETHERTYPE_IPV4
    };
    out.extend_from_slice(&ty.to_be_bytes());
    out.extend_from_slice(inner);
}

fn ip_ethertype(inner: &[u8]) -> u16 {
    if inner.first().is_some_and(|v| v >> 4 == 6) {
        ETHERTYPE_IPV6
    } else {
        ETHERTYPE_IPV4
    }
}

impl Encap {
    /// The outer IP packet from `src` to `dst` carrying the IP packet `inner` (UDP tunnels
    /// from source port `sport`).
    pub fn wrap(&self, src: IpAddr, dst: IpAddr, sport: u16, inner: &[u8]) -> Vec<u8> {
        let mut p = Vec::new();
        let (proto, port) = match self {
            Encap::IpInIp => {
                let proto = if ip_ethertype(inner) == ETHERTYPE_IPV6 {
                    IPV6_IN_IP
                } else {
                    IPIP
                };
                return IpRepr::new(src, dst, proto).packet(inner);
            }
            Encap::Gre {
                checksum,
                key,
                seq,
                ethernet: eth,
            } => {
                let mut flags = 0u16;
                flags |= if *checksum { GRE_C } else { 0 };
                flags |= if key.is_some() { GRE_K } else { 0 };
                flags |= if seq.is_some() { GRE_S } else { 0 };
                let ty = if *eth {
                    ETHERTYPE_TEB
                } else {
                    ip_ethertype(inner)
                };
                p.extend_from_slice(&flags.to_be_bytes());
                p.extend_from_slice(&ty.to_be_bytes());
                if *checksum {
                    p.extend_from_slice(&[0; 4]);
                }
                for v in [key, seq].into_iter().flatten() {
                    p.extend_from_slice(&v.to_be_bytes());
                }
                if *eth {
                    ethernet(inner, &mut p);
                } else {
                    p.extend_from_slice(inner);
                }
                if *checksum {
                    let c = internet_checksum(&p, 0);
                    p[4..6].copy_from_slice(&c.to_be_bytes());
                }
                return IpRepr::new(src, dst, GRE).packet(&p);
            }
            Encap::Pptp { seq, ack } => {
                let mut flags = GRE_K | 1;
                flags |= if seq.is_some() { GRE_S } else { 0 };
                flags |= if ack.is_some() { GRE_A } else { 0 };
                let ppp_proto: u16 = if ip_ethertype(inner) == ETHERTYPE_IPV6 {
                    0x57
                } else {
                    0x21
                };
                let payload = inner.len() + 4;
                p.extend_from_slice(&flags.to_be_bytes());
                p.extend_from_slice(&ETHERTYPE_PPP.to_be_bytes());
                p.extend_from_slice(&(payload as u16).to_be_bytes());
                p.extend_from_slice(&7u16.to_be_bytes());
                for v in [seq, ack].into_iter().flatten() {
                    p.extend_from_slice(&v.to_be_bytes());
                }
                p.extend_from_slice(&[0xff, 0x03]);
                p.extend_from_slice(&ppp_proto.to_be_bytes());
                p.extend_from_slice(inner);
                return IpRepr::new(src, dst, GRE).packet(&p);
            }
            Encap::Vxlan { vni } => {
                p.extend_from_slice(&[0x08, 0, 0, 0]);
                p.extend_from_slice(&(vni << 8).to_be_bytes());
                ethernet(inner, &mut p);
                (UDP, VXLAN_PORT)
            }
            Encap::Geneve {
                options,
                ethernet: eth,
            } => {
                assert!(options.len() % 4 == 0 && options.len() <= 252);
                let ty = if *eth {
                    ETHERTYPE_TEB
                } else {
                    ip_ethertype(inner)
                };
                p.extend_from_slice(&[(options.len() / 4) as u8, 0]);
                p.extend_from_slice(&ty.to_be_bytes());
                p.extend_from_slice(&[0, 0, 42, 0]);
                p.extend_from_slice(options);
                if *eth {
                    ethernet(inner, &mut p);
                } else {
                    p.extend_from_slice(inner);
                }
                (UDP, GENEVE_PORT)
            }
            Encap::Gtp {
                teid,
                seq,
                npdu,
                extensions,
            } => {
                let e = !extensions.is_empty();
                let flags = 0x30
                    | if e { 0x04 } else { 0 }
                    | if seq.is_some() { 0x02 } else { 0 }
                    | if npdu.is_some() { 0x01 } else { 0 };
                let mut opt = Vec::new();
                if flags & 7 != 0 {
                    opt.extend_from_slice(&seq.unwrap_or(0).to_be_bytes());
                    opt.push(npdu.unwrap_or(0));
                    opt.push(if e { 0xc0 } else { 0 });
                    for (i, x) in extensions.iter().enumerate() {
                        let units = (x.len() + 2).div_ceil(4);
                        opt.push(units as u8);
                        opt.extend_from_slice(x);
                        opt.resize(opt.len() + units * 4 - x.len() - 2, 0);
                        opt.push(if i + 1 < extensions.len() { 0xc0 } else { 0 });
                    }
                }
                p.extend_from_slice(&[flags, GTP_G_PDU]);
                p.extend_from_slice(&((opt.len() + inner.len()) as u16).to_be_bytes());
                p.extend_from_slice(&teid.to_be_bytes());
                p.extend_from_slice(&opt);
                p.extend_from_slice(inner);
                (UDP, GTP_U_PORT)
            }
        };
        debug_assert_eq!(proto, UDP);
        let u = UdpRepr { sport, dport: port };
        u.ip_packet(&IpRepr::new(src, dst, UDP), &p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{parse_ip, parse_l4, strip_link, Link};

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn all() -> Vec<Encap> {
        vec![
            Encap::IpInIp,
            Encap::Gre {
                checksum: false,
                key: None,
                seq: None,
                ethernet: false,
            },
            Encap::Gre {
                checksum: true,
                key: Some(0xdead_beef),
                seq: Some(7),
                ethernet: false,
            },
            Encap::Gre {
                checksum: false,
                key: Some(1),
                seq: None,
                ethernet: true,
            },
            Encap::Pptp {
                seq: Some(1),
                ack: Some(2),
            },
            Encap::Pptp {
                seq: None,
                ack: None,
            },
            Encap::Vxlan { vni: 4242 },
            Encap::Geneve {
                options: vec![],
                ethernet: true,
            },
            Encap::Geneve {
                options: vec![1; 12],
                ethernet: false,
            },
            Encap::Gtp {
                teid: 9,
                seq: None,
                npdu: None,
                extensions: vec![],
            },
            Encap::Gtp {
                teid: 9,
                seq: Some(3),
                npdu: Some(4),
                extensions: vec![vec![1, 2], vec![3; 9]],
            },
        ]
    }

    /// The inner packet of an emitted outer packet, as the reader finds it.
    fn unwrap(outer: &[u8]) -> Result<Option<Vec<u8>>, Drop> {
        let o = parse_ip(outer, outer.len() as u32, 0).unwrap();
        let l4 = parse_l4(o.proto, o.l4, o.l4_len).unwrap();
        assert!(is_candidate(o.proto, &l4));
        let Some(i) = decapsulate(o.proto, &l4, o.l4, o.l4_len)? else {
            return Ok(None);
        };
        let (b, len) = match i.link {
            InnerLink::Ip(_) => (i.bytes, i.wire_len),
            InnerLink::Ethernet => {
                let (b, len, _) = strip_link(Link::Ethernet, i.bytes, i.wire_len)?;
                (b, len)
            }
        };
        assert_eq!(b.len() as u32, len);
        Ok(Some(b.to_vec()))
    }

    #[test]
    fn every_encapsulation_emitted_gives_back_its_inner_packet() {
        for inner_src in ["10.1.0.1", "2001:db8::1"] {
            let dst = if inner_src.contains(':') {
                "2001:db8::2"
            } else {
                "10.1.0.2"
            };
            let inner = IpRepr::new(ip(inner_src), ip(dst), 6).packet(&[0; 20]);
            for e in all() {
                for (os, od) in [
                    ("192.0.2.1", "192.0.2.2"),
                    ("2001:db8:f::1", "2001:db8:f::2"),
                ] {
                    let outer = e.wrap(ip(os), ip(od), 40000, &inner);
                    assert_eq!(unwrap(&outer), Ok(Some(inner.clone())), "{e:?} {os}");
                }
            }
        }
    }

    #[test]
    fn gre_checksum_is_right_when_present() {
        let inner = IpRepr::new(ip("10.0.0.1"), ip("10.0.0.2"), 17).packet(&[5; 9]);
        let e = Encap::Gre {
            checksum: true,
            key: None,
            seq: Some(1),
            ethernet: false,
        };
        let outer = e.wrap(ip("192.0.2.1"), ip("192.0.2.2"), 0, &inner);
        assert_eq!(internet_checksum(&outer[20..], 0), 0);
    }

    #[test]
    fn malformed_headers_are_reasons_not_panics() {
        let inner = IpRepr::new(ip("10.0.0.1"), ip("10.0.0.2"), 6).packet(&[0; 20]);
        let o = |e: &Encap| e.wrap(ip("192.0.2.1"), ip("192.0.2.2"), 1, &inner);
        // GRE version 2, GRE routing, an unknown GRE payload type.
        let gre = o(&Encap::Gre {
            checksum: false,
            key: None,
            seq: None,
            ethernet: false,
        });
        let mut v2 = gre.clone();
        v2[21] |= 2;
        assert_eq!(unwrap(&v2), Err(Drop::TunnelBadHeader));
        let mut routed = gre.clone();
        routed[20] |= 0x40;
        assert_eq!(unwrap(&routed), Err(Drop::TunnelUnsupported));
        let mut mpls = gre.clone();
        mpls[22..24].copy_from_slice(&0x8847u16.to_be_bytes());
        assert_eq!(unwrap(&mpls), Err(Drop::TunnelUnsupported));
        // VXLAN without the I flag; Geneve version 1; Geneve options longer than the packet.
        let mut vx = o(&Encap::Vxlan { vni: 1 });
        vx[28] = 0;
        assert_eq!(unwrap(&vx), Err(Drop::TunnelBadHeader));
        let gen = o(&Encap::Geneve {
            options: vec![],
            ethernet: false,
        });
        let mut g1 = gen.clone();
        g1[28] = 0x40;
        assert_eq!(unwrap(&g1), Err(Drop::TunnelBadHeader));
        let mut glong = gen.clone();
        glong[28] = 0x3f;
        assert_eq!(unwrap(&glong), Err(Drop::TunnelBadHeader));
        // GTP: version 2, a length past the datagram, an extension header of length 0, and an
        // echo request (no inner packet, no error).
        let gtp = o(&Encap::Gtp {
            teid: 1,
            seq: Some(1),
            npdu: None,
            extensions: vec![vec![0, 0]],
        });
        let mut gv2 = gtp.clone();
        gv2[28] = 0x50;
        assert_eq!(unwrap(&gv2), Err(Drop::TunnelBadHeader));
        let mut glen = gtp.clone();
        glen[30] = 0xff;
        assert_eq!(unwrap(&glen), Err(Drop::TunnelBadHeader));
        let mut gext = gtp.clone();
        gext[40] = 0;
        assert_eq!(unwrap(&gext), Err(Drop::TunnelBadHeader));
        let mut echo = gtp.clone();
        echo[29] = 1;
        assert_eq!(unwrap(&echo), Ok(None));
        // Every cut of every encapsulation's header: a reason or an inner packet, never a
        // panic.
        for e in all() {
            let p = o(&e);
            let ip = parse_ip(&p, p.len() as u32, 0).unwrap();
            let l4 = parse_l4(ip.proto, ip.l4, ip.l4_len).unwrap();
            for cut in 0..ip.l4.len() {
                let _ = decapsulate(ip.proto, &l4, &ip.l4[..cut], ip.l4_len);
                let _ = decapsulate(ip.proto, &l4, &ip.l4[..cut], cut as u32);
            }
        }
    }
}
