//! One TCP segment through its connection, in the order of Zeek's
//! TCPSessionAdapter::Process (without reassembly): initial sequence numbers, history
//! letters, zero windows, anomalies, acknowledgements, retransmissions, the endpoint state
//! machine, then content gaps.

use super::endpoint::{
    split, update_state, Endpoint, Ep, DO_CLOSE, PARTIAL, RESET_TIMER, SEQ_BASE,
};
use super::flow::Flow;
use super::history::{Once, Repeat};
use super::reassembly::{content_gap, data_seen, Seg};
use super::{Options, Seen};
use crate::wire::{ACK, FIN, RST, SYN};

/// Sequence jumps larger than this on SYN/RST are not trusted (Zeek's TOO_LARGE_SEQ_DELTA).
const TOO_LARGE_SEQ_DELTA: i32 = 1_048_576;

/// Follows segment `s` sent by endpoint `d` of flow `f`. `segments` is the number of data
/// segments remembered (all flows) for retransmission timing, at most `opts.segment_limit`.
/// Returns the new number, how many could not be remembered, and whether the segment armed
/// one of the connection's timers (attempt, close, partial close, reset).
pub(super) fn segment(
    f: &mut Flow,
    d: usize,
    s: &Seen,
    opts: &Options,
    mut segments: u64,
) -> (u64, u64, bool) {
    let fl = s.l4.flags;
    let (syn, fin, rst, ack) = (fl & SYN != 0, fl & FIN != 0, fl & RST != 0, fl & ACK != 0);
    let len = s.l4.payload as i64;
    let base = s.l4.seq;
    let mut seg_len = len + syn as i64 + fin as i64;
    if rst {
        seg_len -= len;
    }
    let mut seg_drops = 0;

    init_endpoint(&mut f.ep[d], syn, base, seg_len);
    let rel_seq = Endpoint::full(f.ep[d].last, base) - f.ep[d].start;

    update_history(f, d, fl, rel_seq, len);

    // update_window: zero windows, unless they come with/after a RST or after the peer's FIN.
    if s.l4.win == 0 && !rst && f.ep[1 - d].state != Ep::Closed && f.ep[d].state != Ep::Reset {
        f.repeat(d, Repeat::ZeroWindow);
    }

    // Anomalies: SYN / SYN-ACK retransmissions (same sequence number again), RSTs.
    if syn && !rst && !fin {
        let e = &mut f.ep[d];
        let slot = if ack {
            &mut e.synack_seq
        } else {
            &mut e.syn_seq
        };
        if *slot == Some(base) && opts.syn {
            f.anom.syn_retransmits += 1;
        }
        *slot = Some(base);
    }
    if rst && (opts.rst == 2 || (opts.rst == 1 && !f.fin_seen)) {
        f.anom.resets += 1;
    }
    if fin {
        f.ep[d].fin_cnt += 1;
        f.ep[d].fin_rel = rel_seq + seg_len;
        f.fin_seen = true;
    }

    // Acknowledgements: start the peer's numbering from its first ACK seen, else advance it;
    // segments the peer acknowledged no longer need remembering.
    if ack {
        let (_, p) = split(&mut f.ep, d);
        if p.state == Ep::Inactive {
            let st = s.l4.ack as i64 + SEQ_BASE - 1;
            p.init_seq(st, st);
        } else if !rst {
            let delta = s.l4.ack.wrapping_sub(p.ack as u32) as i32;
            if !(s.l4.ack == 0 && delta > TOO_LARGE_SEQ_DELTA) && delta > 0 {
                p.ack += delta as i64;
            }
        }
        while let Some(front) = p.segs.front() {
            if (s.l4.ack.wrapping_sub(front.end) as i32) >= 0 {
                p.segs.pop_front();
                segments -= 1;
            } else {
                break;
            }
        }
    }

    // update_last_seq, with retransmission detection.
    let past = base.wrapping_add(seg_len as u32);
    let e = &mut f.ep[d];
    let delta_last = past.wrapping_sub(e.last as u32) as i32;
    let mut rxmit = false;
    if (syn || rst) && !(-TOO_LARGE_SEQ_DELTA..=TOO_LARGE_SEQ_DELTA).contains(&delta_last) {
    } else if fin && e.last == e.start + 1 {
        e.last += delta_last as i64;
    } else if e.state == Ep::Reset {
    } else if delta_last > 0 {
        e.last += delta_last as i64;
        if len > 0 && opts.retransmit_us > 0 {
            if (segments as usize) < opts.segment_limit {
                e.segs.push_back(Seg {
                    seq: base,
                    end: base.wrapping_add(len as u32),
                    ts_us: s.ts_us,
                });
                segments += 1;
            } else {
                seg_drops += 1;
            }
        }
    } else if len > 0 {
        rxmit = true;
        if opts.retransmit_us > 0 {
            // The sender may have re-segmented: the original is the remembered segment
            // holding the first retransmitted byte.
            let within = |g: &&Seg| base.wrapping_sub(g.seq) < g.end.wrapping_sub(g.seq);
            if let Some(orig) = e.segs.iter().find(within) {
                if s.ts_us - orig.ts_us >= opts.retransmit_us {
                    f.anom.retransmits += 1;
                    f.rxmit_gap_us = s.ts_us - orig.ts_us;
                }
            }
        }
    }
    if rxmit {
        f.repeat(d, Repeat::Retransmit);
    }

    let orig_was_inactive = f.ep[0].state == Ep::Inactive;
    let what = update_state(&mut f.ep, d, fl, len);
    if what & PARTIAL != 0 {
        f.partial = true;
    }
    let mut timers = false;
    // Zeek's attempt timer: armed by the originator's first SYN.
    if d == 0 && syn && orig_was_inactive && opts.attempt_delay_us > 0 {
        f.attempt_at = s.ts_us.saturating_add(opts.attempt_delay_us);
        timers = true;
    }
    if what & RESET_TIMER != 0 {
        f.remove_at = f.remove_at.min(s.ts_us.saturating_add(opts.reset_delay_us));
        timers = true;
    }
    if what & DO_CLOSE != 0 {
        timers |= f.connection_closed(d, opts);
    }
    // As in Zeek, the ACK is checked for a content gap only after the state update, so that
    // an ACK in a RST (or after one) is seen in an unclean state and not flagged; then this
    // packet's own data reaches the reassembly point.
    if ack {
        content_gap(f, d, s.l4.ack);
    }
    if len > 0 && !rst {
        data_seen(&mut f.ep[d], rel_seq + syn as i64, len);
    }
    (segments, seg_drops, timers)
}

/// Zeek's init_endpoint: where an endpoint's sequence space starts (its SYN, or the first
/// segment seen), and a new start for a SYN at another number.
#[inline]
fn init_endpoint(e: &mut Endpoint, syn: bool, base: u32, seg_len: i64) {
    match e.state {
        Ep::Inactive => {
            if syn {
                let st = base as i64 + SEQ_BASE;
                e.init_seq(st, st + seg_len);
            } else {
                let st = base as i64 + SEQ_BASE - 1;
                e.init_seq(st, st + 1);
            }
        }
        Ep::SynSent | Ep::SynAckSent => {
            if syn && base != e.start as u32 {
                let st = Endpoint::full(e.last, base);
                e.init_seq(st, st + seg_len);
            }
        }
        Ep::Established | Ep::Partial => {
            if syn {
                let st = Endpoint::full(e.last, base);
                e.init_seq(st, st + seg_len);
            }
        }
        Ep::Reset => {
            if syn && e.prev == Ep::Inactive {
                let st = Endpoint::full(e.last, base);
                e.init_seq(st, st + seg_len);
            }
        }
        Ep::Closed => {}
    }
}

/// Zeek's update_history: the letter for the segment's flags (`S`/`H`, `F`, `R`, `I`, `Q`),
/// else for its data (`D`) or a bare ACK (`A`). A SYN, FIN or RST again at another sequence
/// number is a letter again.
#[inline]
fn update_history(f: &mut Flow, d: usize, fl: u8, rel_seq: i64, len: i64) {
    let (syn, fin, rst, ack) = (fl & SYN != 0, fl & FIN != 0, fl & RST != 0, fl & ACK != 0);
    let bits = syn as u8 + fin as u8 + rst as u8;
    if bits > 1 {
        if fin && rst {
            f.once(d, Once::FinRst, b'I');
        } else {
            f.once(d, Once::MultiFlag, b'Q');
        }
    } else if bits == 1 {
        if syn {
            let code = if ack { b'H' } else { b'S' };
            if f.once(d, Once::Syn, code) && rel_seq != f.ep[d].last_syn {
                f.hist.push_for(d, code);
            }
            f.ep[d].last_syn = rel_seq;
        }
        if fin {
            if f.once(d, Once::Fin, b'F') && rel_seq + len != f.ep[d].last_fin {
                f.hist.push_for(d, b'F');
            }
            f.ep[d].last_fin = rel_seq + len;
        }
        if rst {
            if f.once(d, Once::Rst, b'R') && rel_seq != f.ep[d].last_rst {
                f.hist.push_for(d, b'R');
            }
            f.ep[d].last_rst = rel_seq;
        }
    } else if len > 0 {
        f.once(d, Once::Data, b'D');
    } else if ack {
        f.once(d, Once::Ack, b'A');
    }
}
