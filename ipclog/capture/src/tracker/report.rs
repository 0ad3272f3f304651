//! What an event says about a flow: the state in conntrack's terms (the log's flag letter),
//! Zeek's conn_state, the counters, the history, and a Zeek-like uid.

use chrono::{DateTime, Utc};
use shared::event::ZeekState;
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
        if let Some(h) = &self.http {
            ev.http_method.clone_from(&h.method);
            ev.http_host.clone_from(&h.host);
            ev.http_uri.clone_from(&h.uri);
            ev.http_status = h.status;
        } else if ev.http_method.is_some() || ev.http_status.is_some() {
            ev.http_method = None;
            ev.http_host = None;
            ev.http_uri = None;
            ev.http_status = None;
        }
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
        match &self.parent {
            Some(p) => {
                let s = ev.tunnel_parents.get_or_insert_with(String::new);
                s.clear();
                s.push_str(p);
            }
            None => ev.tunnel_parents = None,
        }
        ev.icmp = self.icmp;
    }

    /// This connection's uid (as its events carry it).
    pub(super) fn uid(&self) -> String {
        let mut u = String::new();
        make_uid(&mut u, self.id, self.first_us, &self.key);
        u
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
    fn zeek_state(&self) -> ZeekState {
        use ZeekState as Z;
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
                        Z::Rej
                    } else if o_inactive {
                        Z::Rstrh
                    } else {
                        Z::Rstr
                    }
                } else if os == Ep::Reset {
                    if r_inactive {
                        if rstos0_history(self.hist.as_str()) {
                            Z::Rstos0
                        } else {
                            Z::Oth
                        }
                    } else {
                        Z::Rsto
                    }
                } else if rs == Ep::Closed && os == Ep::Closed {
                    Z::Sf
                } else if os == Ep::Closed {
                    if r_inactive {
                        Z::Sh
                    } else {
                        Z::S2
                    }
                } else if rs == Ep::Closed {
                    if o_inactive {
                        Z::Shr
                    } else {
                        Z::S3
                    }
                } else if os == Ep::SynSent && rs == Ep::Inactive {
                    Z::S0
                } else if os == Ep::Established && rs == Ep::Established {
                    Z::S1
                } else {
                    Z::Oth
                }
            }
            UDP => match (o.pkts > 0, r.pkts > 0) {
                (true, true) => Z::Sf,
                (true, false) => Z::S0,
                (false, true) => Z::Shr,
                (false, false) => Z::Oth,
            },
            _ => Z::Oth,
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

/// FxHash's multiply-rotate step over 64-bit words. Written out here rather than taken from a
/// hasher crate because the uid is output: the same capture must give the same uids in every
/// version, and hasher crates change their functions (rustc-hash 2 did).
#[inline]
fn uid_hash(words: [u64; 7]) -> u64 {
    words.iter().fold(0, |h, &w| {
        (h.rotate_left(5) ^ w).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95)
    })
}

fn to_time(us: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_micros(us).unwrap_or_default()
}

/// A Zeek-like uid: "C" and 17 base62 digits of a hash of the flow's number, start and tuple.
#[inline]
fn make_uid(s: &mut String, id: u64, first_us: i64, key: &Key) {
    let [k0, k1, k2, k3, k4] = key.w;
    // Two independent 64-bit hashes, 9 and 8 base62 digits from each (u64 arithmetic only).
    let mut v1 = uid_hash([id, first_us as u64, k0, k1, k2, k3, k4]);
    let mut v2 = uid_hash([
        k0,
        k1,
        k2,
        k3,
        k4,
        (first_us ^ 0x5bd1e995) as u64,
        id.rotate_left(17),
    ]);
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tracker::test_seen;

    /// Uids are output: the same capture must give the same uids from one version to the
    /// next (values as computed since uids were introduced).
    #[test]
    fn uids_do_not_change_between_versions() {
        let seen = |src, dst, proto| test_seen(src, dst, 1024, 53, proto);
        let mut uid = String::new();
        let mut got = Vec::new();
        for (id, first_us, s) in [
            (
                1,
                1_700_000_000_000_000,
                seen("10.0.0.1", "192.168.0.1", 17),
            ),
            (72_462, -5, seen("2001:db8::1", "2001:db8::2", 6)),
            (u64::MAX, i64::MAX, seen("0.0.0.0", "255.255.255.255", 1)),
        ] {
            make_uid(&mut uid, id, first_us, &Key::new(&s).0);
            got.push(uid.clone());
        }
        // The first is the first connection of the benchmark capture (bench/capture-bench.sh).
        assert_eq!(
            got,
            [
                "Coinbihrsmdjm4fiZO",
                "COJaLAYy72ptT5zrHy",
                "CrwaXNJRLcPDHUCgro"
            ]
        );
    }
}
