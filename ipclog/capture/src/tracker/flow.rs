//! One connection in the flow table: who is the originator, both endpoints, the history
//! letters and the anomalies, from its first packet to the event that reports it closed.

use shared::event::{Anomalies, ConnState, FlowTuple, IcmpTypeCode};
use shared::proto::is_icmp;

use super::endpoint::{Endpoint, Ep};
use super::history::{History, Once, Repeat};
use super::key::Key;
use super::{Options, Seen, TCP};
use crate::wire::{ACK, SYN};

/// One connection. `repr(C)` keeps the fields every packet touches (key, times, both
/// endpoints) together at the start, so they come in the first cache lines, which the read
/// queue prefetches.
#[repr(C)]
pub(super) struct Flow {
    pub(super) key: Key,
    /// The connection's number in the run, in the order connections started.
    pub(super) id: u64,
    /// Packet times of the first and the latest packet (microseconds).
    pub(super) first_us: i64,
    pub(super) last_us: i64,
    pub(super) proto: u8,
    /// The direction (as returned by Key::new) in which the originator sends.
    pub(super) orig_swapped: bool,
    pub(super) fin_seen: bool,
    /// Zeek's TCP_Analyzer::IsPartial(): an endpoint began without a SYN.
    pub(super) partial: bool,
    /// The state last reported in an event (a change is reported again).
    pub(super) reported: ConnState,
    /// Originator first.
    pub(super) ep: [Endpoint; 2],
    pub(super) hist: History,
    pub(super) anom: Anomalies,
    pub(super) orig: FlowTuple,
    /// Zeek's per-connection timers, in packet time ([`NEVER`] when not armed): the attempt
    /// timer, the removal after a close or reset, the partial-close check, and the expire
    /// check of a connection that has seen no valid packet yet.
    pub(super) attempt_at: i64,
    pub(super) remove_at: i64,
    pub(super) partial_at: i64,
    pub(super) expire_at: i64,
    /// The time of the flow's entry in the tracker's timer queue ([`NEVER`]: none); entries
    /// at other times are stale.
    pub(super) queued_at: i64,
    /// The uids of the tunnel connections this one was seen in (Zeek's `tunnel_parents`
    /// set), comma-separated.
    pub(super) parent: Option<Box<str>>,
    /// ICMP: the originator's first message's type and code.
    pub(super) icmp: Option<IcmpTypeCode>,
    /// How long after its original the latest counted retransmission came (microseconds;
    /// for the session view's marker).
    pub(super) rxmit_gap_us: i64,
    /// `--dpi http`: the first exchange (set by the session view).
    pub(super) http: Option<Box<HttpFields>>,
}

/// The first HTTP/1.x request (method, Host, URI) and response status of a connection.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HttpFields {
    pub method: Option<String>,
    pub host: Option<String>,
    pub uri: Option<String>,
    pub status: Option<u16>,
}

/// Tunnel parents a connection keeps (a flow seen in more tunnels keeps the first ones).
const MAX_PARENTS: usize = 4;

/// A timer that is not armed.
pub(super) const NEVER: i64 = i64::MAX;

/// Zeek's tcp_SYN_timeout and tcp_connection_linger (5 s): a TCP connection none of whose
/// packets was valid (bad checksums) is removed once it has been idle longer than this...
const LINGER_US: i64 = 5_000_000;
/// ...checked again this long after each check (Zeek's tcp_session_timer).
const SESSION_TIMER_US: i64 = 6_000_000;

/// Why a connection's timers removed it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Ended {
    /// No valid packet for the protocol's inactivity timeout.
    Inactive,
    /// Zeek's attempt timer: an unanswered SYN.
    Attempt,
    /// The close, reset or partial-close delay, or nothing valid ever seen.
    Closed,
}

const ICMP: u8 = 1;
const ICMP6: u8 = 58;

/// How many cache lines of a flow a packet may touch (prefetched ahead of it).
pub(super) const HOT_LINES: usize = 9;

impl Flow {
    /// The connection that packet `s` (travelling in direction `swapped` of `key`) opens, as
    /// connection number `id`. The originator sent the first packet, except that a SYN-ACK
    /// seen first was sent by the responder (the SYN was missed): then the roles flip,
    /// marked `^` as Zeek does.
    pub(super) fn new(id: u64, key: Key, swapped: bool, s: &Seen) -> Flow {
        let flip = s.proto == TCP && s.l4.flags & (SYN | ACK) == SYN | ACK;
        let icmp = (is_icmp(s.proto) && s.l4.sport.is_some()).then(|| IcmpTypeCode {
            kind: s.l4.sport.unwrap_or(0) as u8,
            code: s.l4.flags,
        });
        let orig = if icmp.is_some() {
            // ICMP has no ports: the type and code are keys of the flow, not its tuple.
            FlowTuple::new(s.src, s.dst, None, None)
        } else if flip {
            FlowTuple::new(s.dst, s.src, s.l4.dport, s.l4.sport)
        } else {
            FlowTuple::new(s.src, s.dst, s.l4.sport, s.l4.dport)
        };
        let mut hist = History::new();
        if flip {
            hist.push(b'^');
        }
        Flow {
            key,
            id,
            first_us: s.ts_us,
            last_us: s.ts_us,
            proto: s.proto,
            orig_swapped: swapped != flip,
            fin_seen: false,
            partial: false,
            reported: ConnState::Other,
            ep: [Endpoint::new(), Endpoint::new()],
            hist,
            anom: Anomalies::default(),
            orig,
            attempt_at: NEVER,
            remove_at: NEVER,
            partial_at: NEVER,
            expire_at: NEVER,
            queued_at: NEVER,
            parent: None,
            icmp,
            rxmit_gap_us: 0,
            http: None,
        }
    }

    /// The protocol's inactivity timeout (0 = none).
    #[inline]
    fn inactivity_us(&self, opts: &Options) -> i64 {
        match self.proto {
            TCP => opts.tcp_timeout_us,
            ICMP | ICMP6 => opts.icmp_timeout_us,
            _ => opts.udp_timeout_us,
        }
    }

    /// When the earliest of the connection's timers runs out.
    #[inline]
    pub(super) fn next_timer(&self, opts: &Options) -> i64 {
        let idle = self.inactivity_us(opts);
        let inactive = if idle > 0 {
            self.last_us.saturating_add(idle)
        } else {
            NEVER
        };
        inactive
            .min(self.attempt_at)
            .min(self.remove_at)
            .min(self.partial_at)
            .min(self.expire_at)
    }

    /// Runs the timers that are due at `now` (Zeek runs timers before the packet that moves
    /// time past them, so a packet exactly at a timer's time finds it run): returns why the
    /// connection ends, or None when it goes on (expired checks are disarmed).
    pub(super) fn run_timers(&mut self, now: i64, opts: &Options) -> Option<Ended> {
        let idle = self.inactivity_us(opts);
        // Zeek's Session::InactivityTimer: `last_time + timeout <= t`.
        if idle > 0 && self.last_us.saturating_add(idle) <= now {
            return Some(Ended::Inactive);
        }
        if self.remove_at <= now {
            return Some(Ended::Closed);
        }
        let (o, r) = (self.ep[0].state, self.ep[1].state);
        if self.attempt_at <= now {
            self.attempt_at = NEVER;
            // Zeek's AttemptTimer.
            if matches!(o, Ep::SynSent | Ep::SynAckSent) && r == Ep::Inactive {
                return Some(Ended::Attempt);
            }
        }
        if self.partial_at <= now {
            self.partial_at = NEVER;
            // Zeek's PartialCloseTimer; a RST is what caused the partial close, not reported.
            if o != Ep::Inactive
                && r != Ep::Inactive
                && !(self.ep[0].did_close && self.ep[1].did_close)
                && o != Ep::Reset
                && r != Ep::Reset
            {
                return Some(Ended::Closed);
            }
        }
        if self.expire_at <= now {
            // Zeek's ExpireTimer for a connection on which nothing valid happened.
            if o == Ep::Inactive && r == Ep::Inactive {
                if self.last_us.saturating_add(LINGER_US) < now {
                    return Some(Ended::Closed);
                }
                self.expire_at = now.saturating_add(SESSION_TIMER_US);
            } else {
                self.expire_at = NEVER;
            }
        }
        None
    }

    /// A TCP connection whose first packet had a bad checksum: Zeek's expire check.
    pub(super) fn arm_expire(&mut self) {
        if self.is_tcp() {
            self.expire_at = self.first_us.saturating_add(LINGER_US);
        }
    }

    /// Zeek's TCPSessionAdapter::ConnectionClosed after endpoint `d` closed or reset: once
    /// the close is complete (this side reset, or the peer closed too or never sent
    /// anything) the connection is removed `tcp_close_delay` after this packet, its other
    /// timers cancelled; a side whose first packet was its FIN, the peer still open, gets the
    /// partial-close check. Returns whether a timer was armed.
    pub(super) fn connection_closed(&mut self, d: usize, opts: &Options) -> bool {
        let (e, p) = (&self.ep[d], &self.ep[1 - d]);
        if e.did_close {
            return false;
        }
        let complete = e.state == Ep::Reset || p.did_close || p.state == Ep::Inactive;
        let first_seen = e.prev == Ep::Inactive;
        self.ep[d].did_close = true;
        if complete {
            self.attempt_at = NEVER;
            self.partial_at = NEVER;
            self.expire_at = NEVER;
            self.remove_at = self.last_us.saturating_add(opts.close_delay_us);
            true
        } else if first_seen {
            self.partial_at = self.last_us.saturating_add(opts.partial_close_delay_us);
            true
        } else {
            false
        }
    }

    /// Zeek's CheckHistory for endpoint `d`: true when `what` was recorded already, else
    /// records it with letter `c`.
    #[inline]
    pub(super) fn once(&mut self, d: usize, what: Once, c: u8) -> bool {
        let seen = self.ep[d].once.check(what);
        if !seen {
            self.hist.push_for(d, c);
        }
        seen
    }

    /// Zeek's ScaledHistoryEntry for endpoint `d`.
    #[inline]
    pub(super) fn repeat(&mut self, d: usize, what: Repeat) {
        self.ep[d].repeats.count(what, d, &mut self.hist);
    }

    /// Adds a tunnel connection's uid to the parents, unless it is there or there are
    /// [`MAX_PARENTS`] already.
    pub(super) fn add_parent(&mut self, uid: &str) {
        let new = match self.parent.as_deref() {
            None => uid.to_string(),
            Some(p) if p.split(',').any(|u| u == uid) => return,
            Some(p) if p.split(',').count() >= MAX_PARENTS => return,
            Some(p) => format!("{p},{uid}"),
        };
        self.parent = Some(new.into());
    }

    pub(super) fn is_tcp(&self) -> bool {
        self.proto == TCP
    }

    /// Zeek's TCPSessionAdapter::IsReuse: whether a segment with `flags` and sequence number
    /// `seq` starts a new connection in place of this one. Only a SYN can (a SYN-ACK only
    /// when the originator never sent anything): on a connection a side has closed, always;
    /// else when its sequence number is not the initial one of the side that sends it
    /// (a new SYN, not a retransmission).
    pub(super) fn is_reuse(&self, flags: u8, seq: u32) -> bool {
        if flags & SYN == 0 {
            return false;
        }
        let (o, r) = (&self.ep[0], &self.ep[1]);
        let conn_orig = if flags & ACK != 0 {
            if o.state != Ep::Inactive {
                return false;
            }
            r
        } else {
            o
        };
        if o.did_close || r.did_close {
            return true;
        }
        // A side that never sent a valid segment has no initial sequence number to compare
        // with: keep the connection.
        if conn_orig.state == Ep::Inactive || seq == conn_orig.start as u32 {
            return false;
        }
        // A SYN with the responder's initial number after a SYN-ACK seen first: the two
        // were swapped on the way (Zeek's SYN/SYN-ACK reversal), not a new connection.
        !(flags & ACK == 0
            && conn_orig.state == Ep::SynAckSent
            && r.state == Ep::Inactive
            && seq == r.start as u32)
    }
}
