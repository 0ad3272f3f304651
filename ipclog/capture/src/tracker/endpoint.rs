//! One side of a TCP connection as Zeek's TCP_Endpoint sees it: its state (INACTIVE,
//! SYN_SENT, SYN_ACK_SENT, PARTIAL, ESTABLISHED, CLOSED, RESET) and how segments move it
//! (Zeek's UpdateStateMachine), and its sequence space, from which the connection's
//! orig_bytes/resp_bytes come (Zeek's `Size()`). UDP and other flows use only the counters.

use super::history::{OnceSeen, Repeats};
use super::reassembly::Segs;
use crate::wire::{ACK, FIN, RST, SYN};

/// Zeek's TCP endpoint states.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Ep {
    Inactive,
    SynSent,
    SynAckSent,
    Partial,
    Established,
    Closed,
    Reset,
}

/// Offset added to the first sequence number so the 64-bit sequence space never goes below 0.
pub(super) const SEQ_BASE: i64 = 1 << 32;

/// One side of a connection; `repr(C)` with the per-packet fields first.
#[derive(Debug)]
#[repr(C)]
pub(super) struct Endpoint {
    /// Zeek's state, and the one before its last change (Zeek's prev_state).
    pub(super) state: Ep,
    pub(super) prev: Ep,
    /// Zeek's did_close: this side's close (FIN or RST) was taken into account.
    pub(super) did_close: bool,
    pub(super) once: OnceSeen,
    /// FINs sent (retransmissions included).
    pub(super) fin_cnt: u32,
    /// Packets, IP bytes and transport payload bytes sent.
    pub(super) pkts: u64,
    pub(super) ip_bytes: u64,
    pub(super) payload: u64,
    /// Sequence numbers in a 64-bit space (see [`Endpoint::full`]): the initial one, the
    /// highest acknowledged by the peer, one past the highest sent.
    pub(super) start: i64,
    pub(super) last: i64,
    pub(super) ack: i64,
    /// Zeek's TCP_Reassembler `last_reassem_seq`: relative sequence number (first data byte
    /// = 1) up to which this side's data was seen without a hole. Checked on every ACK, so
    /// kept with the other per-packet fields.
    pub(super) reassem: i64,
    /// Zeek's FIN_seq: relative sequence number one past this side's last FIN.
    pub(super) fin_rel: i64,
    pub(super) segs: Segs,
    /// Relative sequence numbers of the last SYN, FIN and RST (a repeat at another number
    /// is a new history letter).
    pub(super) last_syn: i64,
    pub(super) last_fin: i64,
    pub(super) last_rst: i64,
    pub(super) repeats: Repeats,
    pub(super) syn_seq: Option<u32>,
    pub(super) synack_seq: Option<u32>,
    /// Data seen above a hole, as one range [lo, hi) (empty when lo >= hi). Disjoint ranges
    /// are merged into one, so a second hole between them is taken as filled: with that the
    /// `g` letter is only ever missed, never invented, and nothing is allocated.
    pub(super) above: (i64, i64),
}

impl Endpoint {
    pub(super) fn new() -> Endpoint {
        Endpoint {
            state: Ep::Inactive,
            prev: Ep::Inactive,
            did_close: false,
            once: OnceSeen::default(),
            fin_cnt: 0,
            pkts: 0,
            ip_bytes: 0,
            payload: 0,
            start: 0,
            last: 0,
            ack: 0,
            reassem: 1,
            fin_rel: 0,
            segs: Segs::new(),
            last_syn: 0,
            last_fin: 0,
            last_rst: 0,
            repeats: Repeats::new(),
            syn_seq: None,
            synack_seq: None,
            above: (0, 0),
        }
    }

    fn set(&mut self, s: Ep) {
        self.prev = self.state;
        self.state = s;
    }

    /// Maps a 32-bit sequence number into the 64-bit space near `reference`.
    #[inline]
    pub(super) fn full(reference: i64, seq: u32) -> i64 {
        reference + (seq.wrapping_sub(reference as u32) as i32) as i64
    }

    pub(super) fn init_seq(&mut self, start: i64, last: i64) {
        self.start = start;
        self.ack = start;
        self.last = last;
    }

    /// Zeek's TCP_Endpoint::Size(): sequence space used, without SYN and FIN.
    pub(super) fn size(&self, peer: &Endpoint) -> u64 {
        if self.prev == Ep::SynSent
            && self.state == Ep::Reset
            && peer.state == Ep::Inactive
            && !(self.ack == self.start || self.ack == self.start + 1)
        {
            return 0;
        }
        let mut size = self.last.max(self.ack) - self.start;
        if size > 0 {
            size -= 1;
        }
        if self.fin_cnt > 0 && size > 0 {
            size -= 1;
        }
        size.max(0) as u64
    }

    /// Established, or closed after being established: Zeek's condition for content gaps.
    pub(super) fn clean(&self) -> bool {
        self.state == Ep::Established || (self.state == Ep::Closed && self.prev == Ep::Established)
    }
}

/// Endpoint `d` and its peer.
pub(super) fn split(ep: &mut [Endpoint; 2], d: usize) -> (&mut Endpoint, &mut Endpoint) {
    let (a, b) = ep.split_at_mut(1);
    if d == 0 {
        (&mut a[0], &mut b[0])
    } else {
        (&mut b[0], &mut a[0])
    }
}

/// What a segment did to the connection, besides the endpoint states (bits of the value
/// [`update_state`] returns).
/// An endpoint began without a SYN: Zeek's TCP_Analyzer::IsPartial().
pub(super) const PARTIAL: u8 = 1;
/// The sender closed or reset: Zeek's `do_close`, which calls ConnectionClosed.
pub(super) const DO_CLOSE: u8 = 2;
/// A RST from a side that had closed already, the peer not closed: Zeek's reset timer.
pub(super) const RESET_TIMER: u8 = 4;

/// Zeek's UpdateStateMachine for endpoint `d` (0 = originator) after a segment with flags `fl`
/// and `len` payload bytes. Returns [`PARTIAL`], [`DO_CLOSE`], [`RESET_TIMER`] bits.
#[inline]
pub(super) fn update_state(ep: &mut [Endpoint; 2], d: usize, fl: u8, len: i64) -> u8 {
    let (syn, fin, rst, ack) = (fl & SYN != 0, fl & FIN != 0, fl & RST != 0, fl & ACK != 0);
    let is_orig = d == 0;
    let orig_state = ep[0].state;
    let (e, p) = split(ep, d);
    let mut out = 0;
    match e.state {
        Ep::Inactive => {
            if syn {
                if is_orig {
                    e.set(if ack { Ep::SynAckSent } else { Ep::SynSent });
                } else {
                    if !ack && p.state == Ep::SynAckSent {
                        // SYN/SYN-ACK reversal: Zeek flips roles; we keep the roles and
                        // treat the connection as established.
                        p.set(Ep::Established);
                    }
                    if p.state == Ep::SynSent {
                        p.set(Ep::Established);
                    }
                    e.set(Ep::Established);
                }
            }
            if fin {
                e.set(Ep::Closed);
                out |= DO_CLOSE;
            }
            if rst {
                e.set(Ep::Reset);
                out |= DO_CLOSE;
            }
            if e.state == Ep::Inactive {
                if !is_orig && len == 0 && orig_state == Ep::SynSent {
                    // An ACK of the SYN before the SYN-ACK: not a partial connection.
                } else if ack && p.state == Ep::Established {
                    e.set(Ep::Established);
                } else {
                    e.set(Ep::Partial);
                    out |= PARTIAL;
                }
            }
        }
        Ep::SynSent | Ep::SynAckSent => {
            if fin {
                e.set(Ep::Closed);
                out |= DO_CLOSE;
            }
            if rst {
                e.set(Ep::Reset);
                out |= DO_CLOSE;
            }
        }
        Ep::Established | Ep::Partial => {
            if syn && e.state == Ep::Partial && p.state == Ep::Inactive && !ack {
                e.set(Ep::SynSent);
            }
            if fin && !rst {
                e.set(Ep::Closed);
                out |= DO_CLOSE;
                if p.state == Ep::Reset && p.prev == Ep::Closed {
                    // FIN then RST from the peer was a normal termination.
                    p.set(Ep::Closed);
                }
            }
            if rst {
                e.set(Ep::Reset);
                out |= DO_CLOSE;
            }
        }
        Ep::Closed => {
            if rst && p.state != Ep::Closed {
                e.set(Ep::Reset);
                out |= RESET_TIMER;
                if !e.did_close {
                    out |= DO_CLOSE;
                }
            }
        }
        Ep::Reset => {}
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sequence_space_wraps() {
        let r = SEQ_BASE + u32::MAX as i64 - 10;
        assert_eq!(Endpoint::full(r, 5), r + 16);
        assert_eq!(Endpoint::full(r, u32::MAX - 20), r - 10);
    }

    fn states(ep: &[Endpoint; 2]) -> (Ep, Ep) {
        (ep[0].state, ep[1].state)
    }

    #[test]
    fn handshake_and_close_walk_zeeks_states() {
        let mut ep = [Endpoint::new(), Endpoint::new()];
        assert_eq!(update_state(&mut ep, 0, SYN, 0), 0);
        assert_eq!(states(&ep), (Ep::SynSent, Ep::Inactive));
        update_state(&mut ep, 1, SYN | ACK, 0);
        assert_eq!(states(&ep), (Ep::Established, Ep::Established));
        assert_eq!(update_state(&mut ep, 0, FIN | ACK, 0), DO_CLOSE);
        assert_eq!(update_state(&mut ep, 1, FIN | ACK, 0), DO_CLOSE);
        assert_eq!(states(&ep), (Ep::Closed, Ep::Closed));
        assert!(ep[0].clean() && ep[1].clean());
    }

    #[test]
    fn a_reset_after_the_own_fin_arms_the_reset_timer() {
        let mut ep = [Endpoint::new(), Endpoint::new()];
        update_state(&mut ep, 0, SYN, 0);
        update_state(&mut ep, 1, SYN | ACK, 0);
        assert_eq!(update_state(&mut ep, 0, FIN | ACK, 0), DO_CLOSE);
        ep[0].did_close = true;
        assert_eq!(update_state(&mut ep, 0, RST, 0), RESET_TIMER);
        assert_eq!(states(&ep), (Ep::Reset, Ep::Established));
        // Once both sides closed, a RST changes nothing.
        let mut ep = [Endpoint::new(), Endpoint::new()];
        update_state(&mut ep, 0, SYN, 0);
        update_state(&mut ep, 1, SYN | ACK, 0);
        update_state(&mut ep, 0, FIN | ACK, 0);
        update_state(&mut ep, 1, FIN | ACK, 0);
        assert_eq!(update_state(&mut ep, 0, RST, 0), 0);
    }

    #[test]
    fn data_without_a_syn_is_partial_and_a_reset_sticks() {
        let mut ep = [Endpoint::new(), Endpoint::new()];
        assert_eq!(update_state(&mut ep, 0, ACK, 100), PARTIAL);
        assert_eq!(states(&ep), (Ep::Partial, Ep::Inactive));
        assert_eq!(update_state(&mut ep, 1, RST, 0), DO_CLOSE);
        assert_eq!(states(&ep), (Ep::Partial, Ep::Reset));
        update_state(&mut ep, 1, SYN, 0);
        assert_eq!(ep[1].state, Ep::Reset);
        assert!(!ep[0].clean());
    }
}
