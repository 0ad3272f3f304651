//! One connection in the flow table: who is the originator, both endpoints, the history
//! letters and the anomalies, from its first packet to the event that reports it closed.

use shared::event::{Anomalies, ConnState, FlowTuple, IcmpTypeCode};
use shared::proto::is_icmp;

use super::endpoint::{Endpoint, Ep};
use super::history::{History, Once, Repeat};
use super::key::Key;
use super::{Seen, TCP};
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
    /// The uids of the tunnel connections this one was seen in (Zeek's `tunnel_parents`
    /// set), comma-separated.
    pub(super) parent: Option<Box<str>>,
    /// ICMP: the originator's first message's type and code.
    pub(super) icmp: Option<IcmpTypeCode>,
}

/// Tunnel parents a connection keeps (a flow seen in more tunnels keeps the first ones).
const MAX_PARENTS: usize = 4;

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
            parent: None,
            icmp,
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

    /// Both sides closed, or someone reset: the connection is over.
    pub(super) fn finished(&self) -> bool {
        self.is_tcp()
            && (self.ep[0].state == Ep::Reset
                || self.ep[1].state == Ep::Reset
                || (self.ep[0].state == Ep::Closed && self.ep[1].state == Ep::Closed))
    }

    /// A side closed or reset: a new SYN starts a new connection (port reuse).
    pub(super) fn over(&self) -> bool {
        self.ep
            .iter()
            .any(|e| matches!(e.state, Ep::Reset | Ep::Closed))
    }
}
