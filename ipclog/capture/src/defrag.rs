//! IP fragment reassembly for accounting. We never need the payload, only to know when a
//! datagram is complete, how long it was, and its transport header (ports, TCP flags), which
//! sits in the fragment at offset 0. So each pending datagram keeps the byte ranges received
//! and a copy of the first 64 transport bytes: memory per datagram is small and fixed, the
//! number of pending datagrams is bounded, and what does not complete within the timeout (in
//! packet time) is counted as incomplete.
//!
//! Tunnels are the exception: a fragmented outer packet (GTP over fragmented IPv4, say) is
//! decapsulated after reassembly, which needs its whole payload. Datagrams of the protocols
//! that may carry a tunnel (IP in IP, GRE, UDP) keep their payload too, within a budget of
//! [`DATA_BUDGET`] bytes over all pending datagrams; one that does not fit (or whose
//! fragments the snaplen cut) completes without it.

use std::net::IpAddr;

use crate::wire::IpPacket;
use rustc_hash::FxHashMap;

/// How many transport bytes of the first fragment we keep (TCP header with options fits).
pub const HEAD: usize = 64;
/// Ranges a datagram may be split into before we call it malformed.
const MAX_RANGES: usize = 64;
/// Payload bytes kept over all pending datagrams, for decapsulation after reassembly.
pub const DATA_BUDGET: usize = 16 << 20;

/// Whether datagrams of `proto` keep their payload: IP in IP, GRE and UDP may carry tunnels.
fn keeps_data(proto: u8) -> bool {
    matches!(proto, 4 | 41 | 47 | 17)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct Key {
    src: IpAddr,
    dst: IpAddr,
    id: u32,
    proto: u8,
}

struct Pending {
    first_us: i64,
    /// Received ranges of transport bytes, sorted and merged.
    ranges: Vec<(u32, u32)>,
    /// End of the datagram, known once the last fragment (MF=0) arrived.
    total: Option<u32>,
    head: [u8; HEAD],
    /// Which head bytes have been captured (bit i = byte i).
    head_mask: u64,
    have_first: bool,
    hdr_len: u32,
    count: u32,
    /// The payload (transport bytes) received so far; `None` when not kept.
    data: Option<Vec<u8>>,
}

/// A datagram whose fragments have all arrived.
#[derive(Debug, Clone)]
pub struct Assembled {
    pub src: IpAddr,
    pub dst: IpAddr,
    pub proto: u8,
    /// IP length of the reassembled datagram (header of the first fragment + all data).
    pub ip_len: u32,
    pub l4_len: u32,
    pub head: [u8; HEAD],
    pub head_len: usize,
    /// Fragments it was made of.
    pub fragments: u32,
    /// The whole payload, for protocols that may carry a tunnel (see the module's doc).
    pub data: Option<Vec<u8>>,
}

pub enum Outcome {
    /// Kept until the rest arrives.
    Held,
    Done(Assembled),
    /// Cannot belong to a valid datagram; counted and dropped.
    Malformed,
    /// The reassembly buffer is full; counted and dropped.
    Full,
}

pub struct Defrag {
    pending: FxHashMap<Key, Pending>,
    max_pending: usize,
    timeout_us: i64,
    /// Fragments currently held.
    held: u64,
    /// Payload bytes kept by pending datagrams.
    data_bytes: usize,
}

impl Defrag {
    pub fn new(max_pending: usize, timeout_us: i64) -> Defrag {
        Defrag {
            pending: FxHashMap::default(),
            max_pending,
            timeout_us,
            held: 0,
            data_bytes: 0,
        }
    }

    pub fn held(&self) -> u64 {
        self.held
    }

    pub fn add(&mut self, now_us: i64, ip: &IpPacket<'_>) -> Outcome {
        let Some(f) = ip.frag else {
            return Outcome::Malformed;
        };
        let len = ip.l4_len;
        let end = f.offset + len;
        // Data past 64 KiB, empty or misaligned non-final fragments cannot be reassembled.
        if end > 65535 || (f.more && (len == 0 || !len.is_multiple_of(8))) {
            return Outcome::Malformed;
        }
        let key = Key {
            src: ip.src,
            dst: ip.dst,
            id: f.id,
            proto: ip.proto,
        };
        if !self.pending.contains_key(&key) && self.pending.len() >= self.max_pending {
            return Outcome::Full;
        }
        let p = self.pending.entry(key).or_insert_with(|| Pending {
            first_us: now_us,
            ranges: Vec::new(),
            total: None,
            head: [0; HEAD],
            head_mask: 0,
            have_first: false,
            hdr_len: 0,
            count: 0,
            data: keeps_data(ip.proto).then(Vec::new),
        });
        if !f.more {
            match p.total {
                Some(t) if t != end => return Outcome::Malformed,
                _ => p.total = Some(end),
            }
        }
        if let Some(t) = p.total {
            if end > t {
                return Outcome::Malformed;
            }
        }
        // The transport header may itself be split over several tiny fragments (an evasion
        // trick): collect the first HEAD bytes from whichever fragments carry them.
        if (f.offset as usize) < HEAD {
            let at = f.offset as usize;
            let n = ip.l4.len().min(HEAD - at);
            p.head[at..at + n].copy_from_slice(&ip.l4[..n]);
            if n > 0 {
                p.head_mask |= (u64::MAX >> (64 - n)) << at;
            }
        }
        if f.offset == 0 && !p.have_first {
            p.have_first = true;
            // The reassembled IPv6 datagram has no fragment header.
            p.hdr_len = if ip.src.is_ipv6() {
                ip.hdr_len - 8
            } else {
                ip.hdr_len
            };
        }
        if len > 0 && !insert_range(&mut p.ranges, f.offset, end) {
            return Outcome::Malformed;
        }
        if let Some(d) = &mut p.data {
            let grow = (end as usize).saturating_sub(d.len());
            if ip.l4.len() as u32 != len || self.data_bytes + grow > DATA_BUDGET {
                // Cut by the snaplen, or no room: this datagram completes without payload.
                self.data_bytes -= d.len();
                p.data = None;
            } else {
                if grow > 0 {
                    d.resize(end as usize, 0);
                    self.data_bytes += grow;
                }
                d[f.offset as usize..end as usize].copy_from_slice(ip.l4);
            }
        }
        p.count += 1;
        self.held += 1;
        let complete = p.have_first
            && match p.total {
                Some(0) => true,
                Some(t) => p.ranges.len() == 1 && p.ranges[0] == (0, t),
                None => false,
            };
        if !complete {
            return Outcome::Held;
        }
        let p = self.pending.remove(&key).expect("present");
        self.held -= p.count as u64;
        self.data_bytes -= p.data.as_ref().map_or(0, Vec::len);
        let total = p.total.unwrap_or(0);
        Outcome::Done(Assembled {
            src: key.src,
            dst: key.dst,
            proto: key.proto,
            ip_len: p.hdr_len + total,
            l4_len: total,
            head: p.head,
            head_len: (p.head_mask.trailing_ones() as usize).min(total as usize),
            fragments: p.count,
            data: p.data,
        })
    }

    /// Drops datagrams older than the timeout; returns how many fragments were dropped.
    pub fn expire(&mut self, now_us: i64) -> u64 {
        let limit = now_us - self.timeout_us;
        let mut dropped = 0;
        let mut freed = 0;
        self.pending.retain(|_, p| {
            let keep = p.first_us >= limit;
            if !keep {
                dropped += p.count as u64;
                freed += p.data.as_ref().map_or(0, Vec::len);
            }
            keep
        });
        self.data_bytes -= freed;
        self.held -= dropped;
        dropped
    }

    /// Drops everything still pending (end of capture); returns the fragments dropped.
    pub fn flush(&mut self) -> u64 {
        let n = self.held;
        self.pending.clear();
        self.held = 0;
        self.data_bytes = 0;
        n
    }
}

/// Adds [start, end) to sorted, merged ranges; false when there would be too many.
fn insert_range(r: &mut Vec<(u32, u32)>, start: u32, end: u32) -> bool {
    let mut s = start;
    let mut e = end;
    let mut i = 0;
    while i < r.len() {
        let (a, b) = r[i];
        if b < s {
            i += 1;
            continue;
        }
        if a > e {
            break;
        }
        // Overlapping or touching: merge and remove.
        s = s.min(a);
        e = e.max(b);
        r.remove(i);
    }
    if r.len() >= MAX_RANGES {
        return false;
    }
    r.insert(i, (s, e));
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_merge() {
        let mut r = Vec::new();
        assert!(insert_range(&mut r, 16, 24));
        assert!(insert_range(&mut r, 0, 8));
        assert_eq!(r, vec![(0, 8), (16, 24)]);
        assert!(insert_range(&mut r, 8, 16));
        assert_eq!(r, vec![(0, 24)]);
        assert!(insert_range(&mut r, 4, 30));
        assert_eq!(r, vec![(0, 30)]);
    }
}
