//! What an event says about a flow: the state in conntrack's terms (the log's flag letter),
//! Zeek's conn_state, the counters, the history, and a Zeek-like uid.

use chrono::{DateTime, Utc};
use shared::event::{ConnEvent, ConnState, Counters, EventKind, TcpState};

use super::endpoint::Ep;
use super::flow::Flow;
use super::history::rstos0_history;
use super::key::Key;
use super::{TCP, UDP};

impl Flow {
    /// Fills `ev` (reused from event to event, so nothing is allocated once its strings have
    /// grown) with what an event of `kind` says about this flow. A flow lasting
    /// `long_connect_us` (when not 0) gets the long-connection anomaly.
    #[inline]
    pub(super) fn describe(&mut self, kind: EventKind, long_connect_us: i64, ev: &mut ConnEvent) {
        let dur_us = self.last_us - self.first_us;
        if long_connect_us > 0 && dur_us >= long_connect_us {
            self.anom.long_connect = true;
        }
        let ts = match kind {
            EventKind::Open => self.first_us,
            _ => self.last_us,
        };
        ev.kind = kind;
        ev.ts = to_time(ts);
        ev.conn_id = self.id;
        ev.proto = self.proto;
        ev.orig = self.orig;
        ev.state = self.reported;
        // An open has no duration yet (the log shows `-`); updates and closes have one.
        ev.duration = (kind != EventKind::Open).then_some(dur_us as f64 / 1e6);
        ev.counters = Some(self.counters());
        ev.anomalies = self.anom;
        ev.zeek_state = Some(self.zeek_state());
        let h = self.hist.as_str();
        if !h.is_empty() || self.proto == TCP || self.proto == UDP {
            let s = ev.history.get_or_insert_with(String::new);
            s.clear();
            s.push_str(h);
        } else {
            ev.history = None;
        }
        let u = ev.uid.get_or_insert_with(String::new);
        make_uid(u, self.id, self.first_us, &self.key);
    }

    /// The TCP state in conntrack's terms, for the log's flag letter.
    pub(super) fn conn_state(&self) -> ConnState {
        if !self.is_tcp() {
            return if self.ep[1].pkts > 0 {
                ConnState::Replied
            } else {
                ConnState::Unreplied
            };
        }
        let (o, r) = (self.ep[0].state, self.ep[1].state);
        let t = if o == Ep::Reset || r == Ep::Reset {
            TcpState::Close
        } else if o == Ep::Closed && r == Ep::Closed {
            TcpState::TimeWait
        } else if o == Ep::Closed {
            TcpState::FinWait
        } else if r == Ep::Closed {
            TcpState::CloseWait
        } else if matches!(o, Ep::SynSent | Ep::SynAckSent) && r == Ep::Inactive {
            TcpState::SynSent
        } else if r == Ep::SynAckSent || (o == Ep::SynSent && r == Ep::Established) {
            TcpState::SynRecv
        } else if o == Ep::Inactive && r == Ep::Inactive {
            TcpState::None
        } else {
            TcpState::Established
        };
        ConnState::Tcp(t)
    }

    /// Zeek's conn_state (base/protocols/conn/main.zeek), from the endpoint states.
    fn zeek_state(&self) -> &'static str {
        let (o, r) = (&self.ep[0], &self.ep[1]);
        match self.proto {
            TCP => {
                let (os, rs) = (o.state, r.state);
                let o_inactive = matches!(os, Ep::Inactive | Ep::Partial);
                let r_inactive = matches!(rs, Ep::Inactive | Ep::Partial);
                if rs == Ep::Reset {
                    if matches!(os, Ep::SynSent | Ep::SynAckSent)
                        || (os == Ep::Reset && o.size(r) == 0 && r.size(o) == 0)
                    {
                        "REJ"
                    } else if o_inactive {
                        "RSTRH"
                    } else {
                        "RSTR"
                    }
                } else if os == Ep::Reset {
                    if r_inactive {
                        if rstos0_history(self.hist.as_str()) {
                            "RSTOS0"
                        } else {
                            "OTH"
                        }
                    } else {
                        "RSTO"
                    }
                } else if rs == Ep::Closed && os == Ep::Closed {
                    "SF"
                } else if os == Ep::Closed {
                    if r_inactive {
                        "SH"
                    } else {
                        "S2"
                    }
                } else if rs == Ep::Closed {
                    if o_inactive {
                        "SHR"
                    } else {
                        "S3"
                    }
                } else if os == Ep::SynSent && rs == Ep::Inactive {
                    "S0"
                } else if os == Ep::Established && rs == Ep::Established {
                    "S1"
                } else {
                    "OTH"
                }
            }
            UDP => match (o.pkts > 0, r.pkts > 0) {
                (true, true) => "SF",
                (true, false) => "S0",
                (false, true) => "SHR",
                (false, false) => "OTH",
            },
            _ => "OTH",
        }
    }

    fn counters(&self) -> Counters {
        let (o, r) = (&self.ep[0], &self.ep[1]);
        let (ob, rb) = if self.is_tcp() {
            (o.size(r), r.size(o))
        } else {
            (o.payload, r.payload)
        };
        Counters {
            orig_pkts: o.pkts,
            orig_ip_bytes: o.ip_bytes,
            resp_pkts: r.pkts,
            resp_ip_bytes: r.ip_bytes,
            orig_bytes: Some(ob),
            resp_bytes: Some(rb),
        }
    }
}

fn to_time(us: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_micros(us).unwrap_or_default()
}

/// A Zeek-like uid: "C" and 17 base62 digits of a hash of the flow's number, start and tuple.
#[inline]
fn make_uid(s: &mut String, id: u64, first_us: i64, key: &Key) {
    use std::hash::BuildHasher;
    let b = crate::hash::FxBuild::default();
    // Two independent 64-bit hashes, 9 and 8 base62 digits from each (u64 arithmetic only).
    let mut v1 = b.hash_one((id, first_us, key));
    let mut v2 = b.hash_one((key, first_us ^ 0x5bd1e995, id.rotate_left(17)));
    const DIGITS: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    s.clear();
    s.push('C');
    for _ in 0..9 {
        s.push(DIGITS[(v1 % 62) as usize] as char);
        v1 /= 62;
    }
    for _ in 0..8 {
        s.push(DIGITS[(v2 % 62) as usize] as char);
        v2 /= 62;
    }
}
