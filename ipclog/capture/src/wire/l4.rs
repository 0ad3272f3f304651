//! Transport headers: TCP and UDP ports, TCP flags, sequence and acknowledgement numbers and
//! window, payload lengths (ICMP and other protocols: only the payload length), the TCP/UDP
//! checksum check; and TCP segments and UDP datagrams to emit.

use super::checksum::{fill_l4, internet_checksum, pseudo_header};
use super::{be16, Drop, IpPacket, IpRepr};

pub const FIN: u8 = 0x01;
pub const SYN: u8 = 0x02;
pub const RST: u8 = 0x04;
pub const PSH: u8 = 0x08;
pub const ACK: u8 = 0x10;

const TCP: u8 = 6;
const UDP: u8 = 17;
const UDP_LITE: u8 = 136;
const TCP_CHECKSUM_AT: usize = 16;
const UDP_CHECKSUM_AT: usize = 6;

/// Transport fields the tracker uses.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct L4 {
    /// TCP/UDP ports; ICMP: the type, and its counterpart type or the code (see [`parse_l4`]).
    pub sport: Option<u16>,
    pub dport: Option<u16>,
    /// TCP flags; ICMP: the code.
    pub flags: u8,
    pub seq: u32,
    pub ack: u32,
    pub win: u16,
    /// Transport payload length on the wire (TCP: after the header incl. options).
    pub payload: u32,
}

/// Reads the transport header of `proto` from `l4` (captured bytes) with `l4_len` the
/// transport length per the IP header.
// Always inlined: the per-packet parse and the reassembled datagram's both call it, and
// out of line it costs the parse ~40 instructions a packet (measured with callgrind).
#[inline(always)]
pub fn parse_l4(proto: u8, l4: &[u8], l4_len: u32) -> Result<L4, Drop> {
    match proto {
        TCP => {
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
                seq: super::be32(l4, 4),
                ack: super::be32(l4, 8),
                flags: l4[13],
                win: be16(l4, 14),
                payload: l4_len - doff,
            })
        }
        UDP | UDP_LITE => {
            // UDP-Lite shares UDP's header layout.
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
        1 | 58 => Ok(icmp(proto, l4, l4_len)),
        _ => Ok(L4 {
            payload: l4_len,
            ..L4::default()
        }),
    }
}

/// ICMP: the header (type, code, checksum, 4 bytes) is not payload. Flows are keyed as Zeek
/// keys them: the type as the source "port", its counterpart (echo request 8 and reply 0 meet)
/// or, for a one-way message, the code as the destination's; `flags` holds the code. Without
/// a type (cut by the snaplen): no ports. Zeek keys a one-way message (an error, ...) in the
/// direction it travels, the same message back being another connection: its destination
/// "port" has bit 15 set, which no type has, so the two directions' keys differ (the flow
/// key needs no ICMP case). Out of line: `parse_l4` stays small enough to be inlined into
/// the per-packet parse.
#[inline(never)]
fn icmp(proto: u8, l4: &[u8], l4_len: u32) -> L4 {
    let (sport, dport, flags) = match l4 {
        [kind, code, ..] if l4_len >= 2 => {
            let (other, one_way) = shared::proto::icmp_counterpart(proto, *kind, *code);
            let dport = other as u16 | if one_way { 0x8000 } else { 0 };
            (Some(*kind as u16), Some(dport), *code)
        }
        _ => (None, None, 0),
    };
    L4 {
        sport,
        dport,
        flags,
        payload: l4_len.saturating_sub(8),
        ..L4::default()
    }
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
        TCP => TCP_CHECKSUM_AT,
        UDP => UDP_CHECKSUM_AT,
        _ => return None,
    };
    if ip.l4.len() < csum_at + 2 {
        return None;
    }
    if ip.proto == UDP && ip.src.is_ipv4() && be16(ip.l4, UDP_CHECKSUM_AT) == 0 {
        return None;
    }
    let pseudo = pseudo_header(ip.src, ip.dst, ip.proto, ip.l4_len)?;
    Some(internet_checksum(ip.l4, pseudo) != 0)
}

/// A TCP header (20 bytes, no options) to emit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TcpRepr {
    pub sport: u16,
    pub dport: u16,
    pub seq: u32,
    pub ack: u32,
    pub flags: u8,
    pub win: u16,
}

impl TcpRepr {
    /// Appends the segment (header with the checksum for `ip`'s addresses, then `payload`).
    pub fn emit(&self, ip: &IpRepr, payload: &[u8], out: &mut Vec<u8>) {
        let at = out.len();
        out.extend_from_slice(&self.sport.to_be_bytes());
        out.extend_from_slice(&self.dport.to_be_bytes());
        out.extend_from_slice(&self.seq.to_be_bytes());
        out.extend_from_slice(&self.ack.to_be_bytes());
        out.extend_from_slice(&[5 << 4, self.flags]);
        out.extend_from_slice(&self.win.to_be_bytes());
        out.extend_from_slice(&[0, 0, 0, 0]);
        out.extend_from_slice(payload);
        fill_l4(&mut out[at..], TCP_CHECKSUM_AT, ip.src, ip.dst, TCP);
    }

    /// The segment in an unfragmented IP packet from `ip.src` to `ip.dst`.
    pub fn ip_packet(&self, ip: &IpRepr, payload: &[u8]) -> Vec<u8> {
        in_ip(ip, TCP, |out| self.emit(ip, payload, out))
    }
}

/// A UDP header to emit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UdpRepr {
    pub sport: u16,
    pub dport: u16,
}

impl UdpRepr {
    /// Appends the datagram (header with the checksum for `ip`'s addresses, then `payload`).
    ///
    /// # Panics
    /// On a payload too long for UDP's length field.
    pub fn emit(&self, ip: &IpRepr, payload: &[u8], out: &mut Vec<u8>) {
        let len = u16::try_from(8 + payload.len()).expect("UDP datagram of at most 65535 bytes");
        let at = out.len();
        out.extend_from_slice(&self.sport.to_be_bytes());
        out.extend_from_slice(&self.dport.to_be_bytes());
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(&[0, 0]);
        out.extend_from_slice(payload);
        fill_l4(&mut out[at..], UDP_CHECKSUM_AT, ip.src, ip.dst, UDP);
    }

    /// The datagram in an unfragmented IP packet from `ip.src` to `ip.dst`.
    pub fn ip_packet(&self, ip: &IpRepr, payload: &[u8]) -> Vec<u8> {
        in_ip(ip, UDP, |out| self.emit(ip, payload, out))
    }
}

/// The transport bytes `emit` writes, in an IP packet of `proto` with `ip`'s header.
fn in_ip(ip: &IpRepr, proto: u8, emit: impl FnOnce(&mut Vec<u8>)) -> Vec<u8> {
    let mut l4 = Vec::new();
    emit(&mut l4);
    IpRepr { proto, ..*ip }.packet(&l4)
}

#[cfg(test)]
mod tests {
    use std::net::IpAddr;

    use super::super::parse_ip;
    use super::*;

    fn addrs() -> [(IpAddr, IpAddr); 2] {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        [
            (ip("10.1.2.3"), ip("172.16.0.9")),
            (ip("2001:db8::7"), ip("2001:db8:ffff::1")),
        ]
    }

    fn parsed(p: &[u8]) -> (L4, Option<bool>) {
        let ip = parse_ip(p, p.len() as u32, 0).unwrap();
        (
            parse_l4(ip.proto, ip.l4, ip.l4_len).unwrap(),
            l4_checksum_bad(&ip),
        )
    }

    #[test]
    fn tcp_segments_parse_back_to_the_same_fields_with_a_good_checksum() {
        for (src, dst) in addrs() {
            let ip = IpRepr::new(src, dst, TCP);
            for flags in [
                SYN,
                SYN | ACK,
                ACK,
                ACK | PSH,
                FIN | ACK,
                RST,
                RST | ACK,
                0xff,
            ] {
                for (seq, ack, win) in [(0, 0, 0), (1, 2, 3), (u32::MAX, 0x8000_0000, 65535)] {
                    for payload in [&b""[..], b"z", &[0x5a; 1460]] {
                        let t = TcpRepr {
                            sport: 40000,
                            dport: 443,
                            seq,
                            ack,
                            flags,
                            win,
                        };
                        let p = t.ip_packet(&ip, payload);
                        let want = L4 {
                            sport: Some(t.sport),
                            dport: Some(t.dport),
                            flags,
                            seq,
                            ack,
                            win,
                            payload: payload.len() as u32,
                        };
                        assert_eq!(parsed(&p), (want, Some(false)), "{t:?}");
                        let mut bad = p.clone();
                        let n = bad.len();
                        bad[n - 1] ^= 1;
                        assert_eq!(parsed(&bad).1, Some(true));
                    }
                }
            }
        }
    }

    #[test]
    fn udp_datagrams_parse_back_to_the_same_fields_with_a_good_checksum() {
        for (src, dst) in addrs() {
            let ip = IpRepr::new(src, dst, UDP);
            for payload in [&b""[..], b"q", &[0xc3; 999]] {
                let u = UdpRepr {
                    sport: 5353,
                    dport: 53,
                };
                let p = u.ip_packet(&ip, payload);
                let want = L4 {
                    sport: Some(5353),
                    dport: Some(53),
                    payload: payload.len() as u32,
                    ..L4::default()
                };
                assert_eq!(parsed(&p), (want, Some(false)));
                let mut bad = p.clone();
                let n = bad.len();
                bad[n - 1] ^= 0x80;
                assert_eq!(parsed(&bad).1, Some(true));
                // Without a checksum: allowed over IPv4 only.
                let mut none = p.clone();
                let at = ip.header_len() + UDP_CHECKSUM_AT;
                none[at..at + 2].fill(0);
                assert_eq!(
                    parsed(&none).1,
                    if src.is_ipv4() { None } else { Some(true) }
                );
            }
        }
    }

    #[test]
    fn cut_or_fragmented_transport_is_not_checked() {
        let (src, dst) = addrs()[0];
        let ip = IpRepr::new(src, dst, TCP);
        let p = TcpRepr {
            sport: 1,
            dport: 2,
            seq: 3,
            ack: 4,
            flags: ACK,
            win: 5,
        }
        .ip_packet(&ip, &[1; 100]);
        // Cut by the snaplen: the fields are there, the checksum cannot be checked.
        let cut = parse_ip(&p[..60], p.len() as u32, 4).unwrap();
        assert_eq!(l4_checksum_bad(&cut), None);
        assert_eq!(parse_l4(6, cut.l4, cut.l4_len).unwrap().payload, 100);
        let frags = super::super::fragment(&ip, &p[20..], 64);
        let first = parse_ip(&frags[0], frags[0].len() as u32, 4).unwrap();
        assert_eq!(l4_checksum_bad(&first), None);
    }

    #[test]
    fn bad_transport_lengths_are_reasons_not_panics() {
        // TCP data offset past the segment.
        let mut t = [0u8; 20];
        t[12] = 0xf0;
        assert_eq!(parse_l4(6, &t, 20).unwrap_err(), Drop::BadL4Length);
        assert_eq!(parse_l4(6, &t[..10], 20).unwrap_err(), Drop::TruncatedL4);
        assert_eq!(parse_l4(6, &t, 19).unwrap_err(), Drop::BadL4Length);
        assert_eq!(parse_l4(17, &t, 7).unwrap_err(), Drop::BadL4Length);
        assert_eq!(parse_l4(17, &t[..3], 8).unwrap_err(), Drop::TruncatedL4);
        assert_eq!(parse_l4(1, &t, 20).unwrap().payload, 12);
        assert_eq!(parse_l4(47, &t, 20).unwrap().payload, 20);
    }
}
