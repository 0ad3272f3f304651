//! The flow table's key: which connection a packet belongs to, whichever way it travels.

use std::net::IpAddr;

use super::Seen;

/// Both addresses (16 bytes each, IPv4 as IPv4-mapped), both ports and the protocol, in
/// canonical order (the lower address/port first) so both directions hit one entry. Five
/// machine words, hashed and compared as such.
#[derive(Debug, Clone, Copy, Eq)]
pub(super) struct Key {
    pub(super) w: [u64; 5],
}

impl PartialEq for Key {
    #[inline]
    fn eq(&self, o: &Key) -> bool {
        // Word by word: the derived array comparison calls memcmp.
        (self.w[0] ^ o.w[0])
            | (self.w[1] ^ o.w[1])
            | (self.w[2] ^ o.w[2])
            | (self.w[3] ^ o.w[3])
            | (self.w[4] ^ o.w[4])
            == 0
    }
}

impl std::hash::Hash for Key {
    #[inline]
    fn hash<H: std::hash::Hasher>(&self, h: &mut H) {
        for w in self.w {
            h.write_u64(w);
        }
    }
}

/// An address as a 128-bit number (IPv4 as IPv4-mapped): compared and hashed without memcmp.
#[inline]
fn addr128(a: IpAddr) -> u128 {
    match a {
        IpAddr::V4(v) => 0xffff_0000_0000 | u32::from(v) as u128,
        IpAddr::V6(v) => u128::from(v),
    }
}

impl Key {
    #[inline]
    pub(super) fn hash64(&self) -> u64 {
        use std::hash::BuildHasher;
        rustc_hash::FxBuildHasher.hash_one(self)
    }

    /// The key of `s`'s flow, and whether `s` travels from the key's second side to its first.
    #[inline]
    pub(super) fn new(s: &Seen) -> (Key, bool) {
        let sp = s.l4.sport.unwrap_or(0);
        let dp = s.l4.dport.unwrap_or(0);
        let (x, y) = (addr128(s.src), addr128(s.dst));
        let swapped = (x, sp) > (y, dp);
        let ((a, pa), (b, pb)) = if swapped {
            ((y, dp), (x, sp))
        } else {
            ((x, sp), (y, dp))
        };
        let tail = (pa as u64)
            | (pb as u64) << 16
            | (s.proto as u64) << 32
            | (s.src.is_ipv6() as u64) << 40;
        let k = Key {
            w: [(a >> 64) as u64, a as u64, (b >> 64) as u64, b as u64, tail],
        };
        (k, swapped)
    }
}

/// A packet's flow hash, computed ahead (while it waits in the read queue, or on a file's
/// reader thread) for prefetching and the lookup.
#[derive(Debug, Clone, Copy)]
pub struct Hint {
    pub(super) hash: u64,
}

impl Hint {
    #[inline]
    pub fn of(s: &Seen) -> Hint {
        let (key, _) = Key::new(s);
        Hint { hash: key.hash64() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tracker::test_seen as seen;

    #[test]
    fn both_directions_share_a_key_and_nothing_else_does() {
        let (k, sw) = Key::new(&seen("10.0.0.2", "10.0.0.1", 80, 4000, 6));
        let (back, sw_back) = Key::new(&seen("10.0.0.1", "10.0.0.2", 4000, 80, 6));
        assert_eq!((k, k.hash64()), (back, back.hash64()));
        assert_ne!(sw, sw_back);
        for other in [
            seen("10.0.0.2", "10.0.0.1", 80, 4000, 17),
            seen("10.0.0.2", "10.0.0.1", 81, 4000, 6),
            seen("10.0.0.2", "10.0.0.3", 80, 4000, 6),
            seen("::ffff:10.0.0.2", "::ffff:10.0.0.1", 80, 4000, 6),
        ] {
            assert_ne!(Key::new(&other).0, k, "{other:?}");
        }
    }
}
