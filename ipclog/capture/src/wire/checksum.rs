//! The Internet checksum (RFC 1071), the one routine both the parser (to count packets with a
//! bad checksum) and the emitter (to write correct ones) use, with the TCP/UDP pseudo-header.

use std::net::IpAddr;

/// One's-complement sum folded to 16 bits and complemented: 0 when the data (with its checksum
/// field) is correct; over data whose checksum field is zero, the value to put there.
/// `initial` carries a pseudo-header sum (in network byte order).
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

/// The sum of the TCP/UDP pseudo-header (addresses, protocol, transport length) to start
/// [`internet_checksum`] with; `None` for mixed address families.
#[inline]
pub fn pseudo_header(src: IpAddr, dst: IpAddr, proto: u8, l4_len: u32) -> Option<u64> {
    let mut sum: u64 = proto as u64 + l4_len as u64;
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            let (s, d) = (u32::from(s) as u64, u32::from(d) as u64);
            sum += (s >> 16) + (s & 0xffff) + (d >> 16) + (d & 0xffff);
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
    Some(sum)
}

/// Writes the checksum of transport bytes `l4` (protocol `proto`, checksum field at `at`)
/// sent from `src` to `dst`. UDP's zero is sent as 0xffff (zero means "no checksum").
///
/// # Panics
/// On mixed address families or a field outside `l4`: the caller built a wrong packet.
pub fn fill_l4(l4: &mut [u8], at: usize, src: IpAddr, dst: IpAddr, proto: u8) {
    let pseudo = pseudo_header(src, dst, proto, l4.len() as u32).expect("one address family");
    l4[at..at + 2].fill(0);
    let mut c = internet_checksum(l4, pseudo);
    if proto == 17 && c == 0 {
        c = 0xffff;
    }
    l4[at..at + 2].copy_from_slice(&c.to_be_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksum_of_known_ipv4_header() {
        // An IPv4 header whose correct checksum is 0xb861.
        let h: [u8; 20] = [
            0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0xb8, 0x61, 0xc0, 0xa8,
            0x00, 0x01, 0xc0, 0xa8, 0x00, 0xc7,
        ];
        assert_eq!(internet_checksum(&h, 0), 0);
        let mut bad = h;
        bad[11] ^= 1;
        assert_ne!(internet_checksum(&bad, 0), 0);
        // The same routine computes what goes into the field.
        let mut blank = h;
        blank[10..12].fill(0);
        assert_eq!(internet_checksum(&blank, 0), 0xb861);
    }

    /// RFC 1071's definition, 16 bits at a time, for comparison with the word-wise sum.
    fn reference(data: &[u8], initial: u64) -> u16 {
        let mut sum = initial;
        for p in data.chunks(2) {
            sum += u16::from_be_bytes([p[0], *p.get(1).unwrap_or(&0)]) as u64;
        }
        while sum > 0xffff {
            sum = (sum & 0xffff) + (sum >> 16);
        }
        !(sum as u16)
    }

    #[test]
    fn word_wise_sum_equals_the_definition_for_every_length_and_alignment() {
        let mut x = 0x1234_5678u32;
        let data: Vec<u8> = (0..300)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                x as u8
            })
            .collect();
        for start in 0..4 {
            for len in 0..(data.len() - start) {
                let d = &data[start..start + len];
                for initial in [0, 0x1_2345, 0xffff] {
                    assert_eq!(
                        internet_checksum(d, initial),
                        reference(d, initial),
                        "start {start} len {len}"
                    );
                }
            }
        }
        // All ones: the sum that folds to 0xffff.
        assert_eq!(internet_checksum(&[0xff; 6], 0), reference(&[0xff; 6], 0));
    }

    #[test]
    fn filled_udp_checksum_is_never_zero_and_verifies() {
        let (src, dst) = ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap());
        // Search for a payload whose checksum comes out as zero: it must be sent as 0xffff.
        let mut zero_seen = false;
        for v in 0..=u16::MAX {
            let mut u = [0x04, 0xd2, 0x00, 0x35, 0x00, 0x0a, 0, 0, 0, 0];
            u[8..10].copy_from_slice(&v.to_be_bytes());
            fill_l4(&mut u, 6, src, dst, 17);
            let c = u16::from_be_bytes([u[6], u[7]]);
            assert_ne!(c, 0);
            zero_seen |= c == 0xffff;
            let pseudo = pseudo_header(src, dst, 17, 10).unwrap();
            assert_eq!(internet_checksum(&u, pseudo), 0);
        }
        assert!(zero_seen);
        assert_eq!(
            pseudo_header(src, "::1".parse().unwrap(), 6, 20),
            None,
            "mixed families"
        );
    }
}
