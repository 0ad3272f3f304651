//! What Zeek's TCP reassembler would know, without keeping any payload: each side's data
//! segments not yet acknowledged (so that a retransmission can be timed against the
//! original), and how far each side's data was seen without a hole (so that an ACK for data
//! this capture never held is a content gap, the `G`/`g` history letter).

use std::collections::VecDeque;

use super::endpoint::{Endpoint, Ep};
use super::flow::Flow;
use super::history::Repeat;

#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Seg {
    pub(super) seq: u32,
    pub(super) end: u32,
    pub(super) ts_us: i64,
}

/// Segments an ACK touches without leaving the flow's own cache lines.
const INLINE: u8 = 4;

/// Unacknowledged data segments of one endpoint, oldest first: the first few inline (in the
/// flow's own cache lines, so pruning on each ACK touches no other memory), the rest in a
/// queue allocated only when a sender has more in flight (boxed: one pointer in every flow,
/// not an empty queue's four words; most flows never spill).
#[derive(Debug)]
pub(super) struct Segs {
    inline: [Seg; INLINE as usize],
    head: u8,
    len: u8,
    // One word in the flow instead of four: the extra allocation happens only on a spill.
    #[allow(clippy::box_collection)]
    spill: Option<Box<VecDeque<Seg>>>,
}

impl Segs {
    pub(super) fn new() -> Segs {
        Segs {
            inline: [Seg::default(); INLINE as usize],
            head: 0,
            len: 0,
            spill: None,
        }
    }

    pub(super) fn len(&self) -> usize {
        self.len as usize + self.spill.as_ref().map_or(0, |q| q.len())
    }

    #[inline]
    pub(super) fn front(&self) -> Option<&Seg> {
        if self.len > 0 {
            Some(&self.inline[self.head as usize])
        } else {
            None
        }
    }

    #[inline]
    pub(super) fn push_back(&mut self, g: Seg) {
        if self.len < INLINE && self.spill.as_ref().is_none_or(|q| q.is_empty()) {
            self.inline[((self.head + self.len) % INLINE) as usize] = g;
            self.len += 1;
        } else {
            self.spill.get_or_insert_with(Box::default).push_back(g);
        }
    }

    #[inline]
    pub(super) fn pop_front(&mut self) {
        if self.len == 0 {
            return;
        }
        self.head = (self.head + 1) % INLINE;
        self.len -= 1;
        // Keep the oldest ones inline.
        if let Some(g) = self.spill.as_mut().and_then(|q| q.pop_front()) {
            self.inline[((self.head + self.len) % INLINE) as usize] = g;
            self.len += 1;
        }
    }

    pub(super) fn iter(&self) -> impl Iterator<Item = &Seg> {
        (0..self.len)
            .map(move |k| &self.inline[((self.head + k) % INLINE) as usize])
            .chain(self.spill.iter().flat_map(|q| q.iter()))
    }
}

/// Zeek's TCP_Reassembler::AckReceived / Undelivered / Gap for the data of `d`'s peer: an
/// acknowledgement beyond the data seen without a hole means the peer sent data this capture
/// does not hold, a content gap (`G` originator, `g` responder, again at 10, 100, ... gaps).
/// Like Zeek it is only recorded while both sides are established or closed from established,
/// and an ACK of at most 2 in a partial connection is not one (its numbering is made up).
#[inline]
pub(super) fn content_gap(f: &mut Flow, d: usize, ack: u32) {
    let pd = 1 - d;
    let p = &mut f.ep[pd];
    if p.state == Ep::Inactive {
        return;
    }
    let mut up_to = Endpoint::full(p.ack, ack) - p.start;
    // The FIN takes one sequence number but carries no data: acknowledging it is no gap.
    if p.fin_cnt > 0 && up_to >= p.fin_rel {
        up_to = p.fin_rel - 1;
    }
    if up_to <= p.reassem || (up_to <= 2 && f.partial) {
        return;
    }
    // Data seen above the hole that the ACK now passes is delivered with it (Zeek's
    // BlockInserted after the gap).
    p.reassem = up_to;
    let (lo, hi) = p.above;
    if lo < hi && lo <= up_to {
        p.reassem = p.reassem.max(hi);
        p.above = (0, 0);
    }
    if f.ep[0].clean() && f.ep[1].clean() {
        f.ep[pd].repeats.count(Repeat::ContentGap, pd, &mut f.hist);
    }
}

/// Zeek's TCP_Reassembler::DataSent for `len` bytes at relative sequence `seq`: in-order data
/// advances the reassembly point (taking along data seen above it), data past a hole is kept
/// as a range.
#[inline]
pub(super) fn data_seen(e: &mut Endpoint, seq: i64, len: i64) {
    let end = seq + len;
    if end <= e.reassem {
        return;
    }
    let (lo, hi) = e.above;
    if seq <= e.reassem {
        e.reassem = end;
        if lo < hi && lo <= end {
            e.reassem = end.max(hi);
            e.above = (0, 0);
        }
    } else if lo < hi {
        e.above = (lo.min(seq), hi.max(end));
    } else {
        e.above = (seq, end);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inline_then_spill_keeps_order() {
        let mut q = Segs::new();
        for i in 0..10u32 {
            q.push_back(Seg {
                seq: i,
                end: i + 1,
                ts_us: 0,
            });
        }
        assert_eq!(q.len(), 10);
        let all: Vec<u32> = q.iter().map(|g| g.seq).collect();
        assert_eq!(all, (0..10).collect::<Vec<_>>());
        for want in 0..10u32 {
            assert_eq!(q.front().map(|g| g.seq), Some(want));
            q.pop_front();
        }
        assert_eq!(q.len(), 0);
        assert!(q.front().is_none());
        q.push_back(Seg::default());
        assert_eq!(q.len(), 1);
    }

    #[test]
    fn data_after_a_hole_waits_and_filling_the_hole_takes_it_along() {
        let mut e = Endpoint::new();
        data_seen(&mut e, 1, 100);
        assert_eq!(e.reassem, 101);
        data_seen(&mut e, 201, 100);
        data_seen(&mut e, 401, 50);
        assert_eq!((e.reassem, e.above), (101, (201, 451)));
        // A retransmission of old data changes nothing.
        data_seen(&mut e, 1, 100);
        assert_eq!(e.reassem, 101);
        // The first hole filled: the range above is taken as seen, second hole included.
        data_seen(&mut e, 101, 100);
        assert_eq!((e.reassem, e.above), (451, (0, 0)));
    }
}
