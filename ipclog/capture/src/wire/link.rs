//! Link-layer framings: where in a captured frame the IP packet starts, and which IP version
//! the framing announces; and the headers to put in front of an IP packet for each framing.

use super::{be16, be32, Drop};

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

const MAX_VLAN_TAGS: usize = 4;
const ETHERTYPE_IPV4: u16 = 0x0800;
const ETHERTYPE_IPV6: u16 = 0x86dd;

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
            // 802.1Q, 802.1ad, and the older QinQ 0x9100.
            while matches!(ty, 0x8100 | 0x88a8 | 0x9100) {
                tags += 1;
                off += 4;
                if tags > MAX_VLAN_TAGS || frame.len() < off + 2 {
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
        ETHERTYPE_IPV4 => Ok(4),
        ETHERTYPE_IPV6 => Ok(6),
        _ => Err(Drop::NonIp),
    }
}

/// A link header to put in front of an IP packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkHeader<'a> {
    /// Ethernet from 02:00:00:00:00:01 to 02:00:00:00:00:02 with these VLAN ids, outer
    /// first (the outer of several tagged 802.1ad, the others 802.1Q).
    Ethernet { vlans: &'a [u16] },
    /// Linux cooked v1: an incoming packet from 02:00:00:00:00:01.
    Sll,
    /// Linux cooked v2: the same on interface index 2.
    Sll2,
    /// DLT_NULL: the address family in little-endian (as written on x86; AF_INET6 = 10).
    Null,
    /// DLT_LOOP: the address family in network byte order (OpenBSD's AF_INET6 = 24).
    Loop,
    /// No header (raw IP).
    Raw,
}

impl LinkHeader<'_> {
    /// The framing that takes this header apart.
    pub fn link(&self) -> Link {
        match self {
            LinkHeader::Ethernet { .. } => Link::Ethernet,
            LinkHeader::Sll => Link::Sll,
            LinkHeader::Sll2 => Link::Sll2,
            LinkHeader::Null | LinkHeader::Loop => Link::Null,
            LinkHeader::Raw => Link::Raw,
        }
    }

    /// The libpcap link type number a capture of such frames has.
    pub fn linktype(&self) -> u32 {
        match self {
            LinkHeader::Ethernet { .. } => 1,
            LinkHeader::Sll => 113,
            LinkHeader::Sll2 => 276,
            LinkHeader::Null => 0,
            LinkHeader::Loop => 108,
            LinkHeader::Raw => 101,
        }
    }

    /// Appends this header and then `ip` (whose version nibble picks the ethertype or family).
    pub fn emit(&self, ip: &[u8], out: &mut Vec<u8>) {
        let v6 = ip.first().is_some_and(|b| b >> 4 == 6);
        let ethertype = if v6 { ETHERTYPE_IPV6 } else { ETHERTYPE_IPV4 };
        match self {
            LinkHeader::Ethernet { vlans } => {
                out.extend_from_slice(&[0x02, 0, 0, 0, 0, 2, 0x02, 0, 0, 0, 0, 1]);
                for (i, id) in vlans.iter().enumerate() {
                    let tpid: u16 = if i == 0 && vlans.len() > 1 {
                        0x88a8
                    } else {
                        0x8100
                    };
                    out.extend_from_slice(&tpid.to_be_bytes());
                    out.extend_from_slice(&id.to_be_bytes());
                }
                out.extend_from_slice(&ethertype.to_be_bytes());
            }
            LinkHeader::Sll => {
                // Packet type 0 (to us), ARPHRD_ETHER, address length 6, address, protocol.
                out.extend_from_slice(&[0, 0, 0, 1, 0, 6, 2, 0, 0, 0, 0, 1, 0, 0]);
                out.extend_from_slice(&ethertype.to_be_bytes());
            }
            LinkHeader::Sll2 => {
                out.extend_from_slice(&ethertype.to_be_bytes());
                out.extend_from_slice(&[0, 0]); // reserved
                out.extend_from_slice(&2u32.to_be_bytes()); // interface index
                out.extend_from_slice(&[0, 1, 0, 6, 2, 0, 0, 0, 0, 1, 0, 0]);
            }
            LinkHeader::Null => {
                let fam: u32 = if v6 { 10 } else { 2 };
                out.extend_from_slice(&fam.to_le_bytes());
            }
            LinkHeader::Loop => {
                let fam: u32 = if v6 { 24 } else { 2 };
                out.extend_from_slice(&fam.to_be_bytes());
            }
            LinkHeader::Raw => {}
        }
        out.extend_from_slice(ip);
    }

    /// This header and `ip` as one frame.
    pub fn frame(&self, ip: &[u8]) -> Vec<u8> {
        let mut f = Vec::with_capacity(ip.len() + 32);
        self.emit(ip, &mut f);
        f
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_header_emitted_is_stripped_back_to_the_same_ip_bytes() {
        let v4 = [
            0x45u8, 0, 0, 20, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16,
        ];
        let mut v6 = [0u8; 40];
        v6[0] = 0x60;
        let headers = [
            LinkHeader::Ethernet { vlans: &[] },
            LinkHeader::Ethernet { vlans: &[100] },
            LinkHeader::Ethernet { vlans: &[100, 200] },
            LinkHeader::Ethernet {
                vlans: &[1, 2, 3, 4],
            },
            LinkHeader::Sll,
            LinkHeader::Sll2,
            LinkHeader::Null,
            LinkHeader::Loop,
            LinkHeader::Raw,
        ];
        for h in headers {
            assert_eq!(Link::from_linktype(h.linktype() as i32), Some(h.link()));
            for (ip, version) in [(&v4[..], 4u8), (&v6[..], 6)] {
                let f = h.frame(ip);
                // The wire may hold more than the capture (snaplen) or than the IP packet.
                let wire = f.len() as u32 + 7;
                let (got, got_wire, hint) = strip_link(h.link(), &f, wire).unwrap();
                assert_eq!(got, ip, "{h:?}");
                assert_eq!(got_wire, ip.len() as u32 + 7, "{h:?}");
                let want = if h == LinkHeader::Raw { 0 } else { version };
                assert_eq!(hint, want, "{h:?}");
                // Cut anywhere inside the header, the frame is a truncated link, not a panic.
                for cut in 0..f.len() - ip.len() {
                    assert_eq!(
                        strip_link(h.link(), &f[..cut], wire),
                        Err(Drop::TruncatedLink),
                        "{h:?} cut at {cut}"
                    );
                }
            }
        }
        let five_tags = LinkHeader::Ethernet {
            vlans: &[1, 2, 3, 4, 5],
        }
        .frame(&v4);
        assert_eq!(
            strip_link(Link::Ethernet, &five_tags, 100),
            Err(Drop::TruncatedLink)
        );
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
}
