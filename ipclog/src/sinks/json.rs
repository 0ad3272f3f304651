//! JSON lines: one object per event with Zeek conn.log field names, and one per program
//! message. Which events, and how a connection without a uid is named, are options main
//! chooses; the sink knows nothing of the source.

use std::fmt::Write as _;

use chrono::{DateTime, Utc};
use serde_json::{json, Map, Value};

use shared::event::epoch_secs as epoch;
use shared::proto::proto_name;
use shared::{ConnEvent, EventKind};

use super::text_out::{LineFormat, TextOut, TextSink};

/// One JSON object per event with Zeek conn.log field names. `ts` is the connection's start
/// (Zeek's meaning): the event time minus the duration so far; `event_ts` is when the event
/// happened.
pub fn event_json(ev: &ConnEvent, show_nat: bool) -> Value {
    let mut m = Map::new();
    let start = match ev.duration {
        Some(d) if ev.kind != EventKind::Open => epoch(ev.ts) - d,
        _ => epoch(ev.ts),
    };
    m.insert("ts".into(), json!(start));
    m.insert("event_ts".into(), json!(epoch(ev.ts)));
    m.insert(
        "event".into(),
        json!(match ev.kind {
            EventKind::Open => "open",
            EventKind::Update => "update",
            EventKind::Close => "close",
        }),
    );
    m.insert("source".into(), json!(ev.source.as_str()));
    if let Some(uid) = &ev.uid {
        m.insert("uid".into(), json!(uid));
    }
    m.insert(
        "proto".into(),
        match proto_name(ev.proto) {
            Some(n) => json!(n),
            None => json!(ev.proto),
        },
    );
    m.insert("proto_num".into(), json!(ev.proto));
    m.insert("id.orig_h".into(), json!(ev.orig.src.to_string()));
    m.insert("id.orig_p".into(), json!(ev.orig.sport));
    m.insert("id.resp_h".into(), json!(ev.shown_dst().to_string()));
    m.insert("id.resp_p".into(), json!(ev.shown_dport()));
    m.insert("duration".into(), json!(ev.duration));
    if let Some(c) = ev.counters {
        m.insert("orig_pkts".into(), json!(c.orig_pkts));
        m.insert("resp_pkts".into(), json!(c.resp_pkts));
        m.insert("orig_ip_bytes".into(), json!(c.orig_ip_bytes));
        m.insert("resp_ip_bytes".into(), json!(c.resp_ip_bytes));
        m.insert("orig_bytes".into(), json!(c.orig_bytes));
        m.insert("resp_bytes".into(), json!(c.resp_bytes));
    }
    if let Some(s) = ev.zeek_state {
        m.insert("conn_state".into(), json!(s));
    }
    if let Some(h) = &ev.history {
        m.insert("history".into(), json!(h));
    }
    m.insert("state".into(), json!(ev.state.name()));
    m.insert("flag".into(), json!(ev.state.flag().to_string()));
    for (k, v) in ev.anomalies.entries() {
        if v != 0 {
            m.insert(k.into(), json!(v));
        }
    }
    if let Some(i) = &ev.src_iface {
        m.insert("src_iface".into(), json!(i));
    }
    if let Some(i) = &ev.dst_iface {
        m.insert("dst_iface".into(), json!(i));
    }
    m.insert("direction".into(), json!(ev.direction.as_str()));
    if ev.found_at_start {
        m.insert("found_at_start".into(), json!(true));
    }
    if show_nat || ev.reply.is_some() {
        if let Some((a, p)) = ev.nat_src() {
            m.insert("nat_src_h".into(), json!(a.to_string()));
            m.insert("nat_src_p".into(), json!(p));
        }
        if let Some((a, p)) = ev.nat_orig_dst() {
            m.insert("orig_dst_h".into(), json!(a.to_string()));
            m.insert("orig_dst_p".into(), json!(p));
        }
    }
    if let Some(x) = ev.mark {
        m.insert("mark".into(), json!(x));
    }
    if let Some(x) = ev.zone {
        m.insert("zone".into(), json!(x));
    }
    if let Some(t) = ev.kernel_start {
        m.insert("kstart".into(), json!(epoch(t)));
    }
    if let Some(t) = ev.kernel_stop {
        m.insert("kstop".into(), json!(epoch(t)));
    }
    Value::Object(m)
}

/// What the JSON output holds.
#[derive(Debug, Clone, Copy, Default)]
pub struct JsonOptions {
    /// One object per closed connection (what Zeek's conn.log has) instead of one per event.
    pub closes_only: bool,
    /// The NAT fields even when the event has no reply tuple (`-N`).
    pub show_nat: bool,
    /// The uid of a connection whose source gave it none, from its id: the source's own
    /// naming, chosen by whoever opened the source (conntrack's `CT` + id).
    pub uid_of: Option<fn(u64) -> String>,
}

/// The JSON output's lines.
pub struct JsonLines {
    opts: JsonOptions,
}

/// The JSON sink.
pub type JsonSink = TextSink<JsonLines>;

impl TextSink<JsonLines> {
    pub fn json(out: TextOut, opts: JsonOptions) -> JsonSink {
        TextSink::new(out, JsonLines { opts }, false)
    }
}

impl LineFormat for JsonLines {
    fn event(&mut self, ev: &ConnEvent, line: &mut String) -> bool {
        if self.opts.closes_only && ev.kind != EventKind::Close {
            return false;
        }
        let mut v = event_json(ev, self.opts.show_nat);
        if let (None, Some(uid_of), Value::Object(m)) = (&ev.uid, self.opts.uid_of, &mut v) {
            m.insert("uid".into(), json!(uid_of(ev.conn_id)));
        }
        let _ = write!(line, "{v}");
        true
    }

    fn program(&mut self, ts: DateTime<Utc>, message: &str, line: &mut String) {
        let v = json!({"ts": epoch(ts), "event": "program", "message": message});
        let _ = write!(line, "{v}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev() -> ConnEvent {
        super::super::test_event()
    }

    #[test]
    fn json_has_zeek_names_and_start_ts() {
        let e = ev();
        let v = event_json(&e, true);
        assert_eq!(v["id.orig_h"], "10.0.0.1");
        assert_eq!(v["id.resp_p"], 80);
        assert_eq!(v["proto"], "tcp");
        assert_eq!(v["event"], "close");
        assert_eq!(v["nat_src_h"], "192.168.0.1");
        let ts = v["ts"].as_f64().unwrap();
        assert!((v["event_ts"].as_f64().unwrap() - ts - 2.0).abs() < 1e-6);
    }

    /// The source's uid wins; without one the option names the connection; only closes with
    /// `closes_only`.
    #[test]
    fn uid_and_closes_only_are_options() {
        let line = |opts: JsonOptions, e: &ConnEvent| {
            let mut l = String::new();
            JsonLines { opts }.event(e, &mut l).then_some(l)
        };
        let ct = JsonOptions {
            uid_of: Some(|id| format!("X{id:x}")),
            ..Default::default()
        };
        let mut e = ev();
        assert!(line(ct, &e).unwrap().contains("\"uid\":\"Xbeef\""));
        assert!(!line(JsonOptions::default(), &e)
            .unwrap()
            .contains("\"uid\""));
        e.uid = Some("Cabc".into());
        assert!(line(ct, &e).unwrap().contains("\"uid\":\"Cabc\""));
        e.kind = EventKind::Open;
        let closes = JsonOptions {
            closes_only: true,
            ..Default::default()
        };
        assert_eq!(line(closes, &e), None);
        assert!(line(JsonOptions::default(), &e).is_some());
    }
}
