//! JSON lines: one object per event with Zeek conn.log field names, and one per program
//! message. Which events, and how a connection without a uid is named, are options main
//! chooses; the sink knows nothing of the source.

use std::fmt::Write as _;

use chrono::{DateTime, Utc};
use serde_json::{json, Value};

use shared::{ConnEvent, EventKind};

use super::text_out::{LineFormat, TextOut, TextSink};

/// What the JSON output holds.
#[derive(Debug, Clone, Copy, Default)]
pub struct JsonOptions {
    /// One object per closed connection (what Zeek's conn.log has) instead of one per event.
    pub closes_only: bool,
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
        let mut v = shared::json::event_json(ev);
        if let (None, Some(uid_of), Value::Object(m)) = (&ev.uid, self.opts.uid_of, &mut v) {
            m.insert("uid".into(), json!(uid_of(ev.conn_id)));
        }
        let _ = write!(line, "{v}");
        true
    }

    fn packet(&mut self, p: &shared::packet::PacketEvent, line: &mut String) -> bool {
        let _ = write!(line, "{}", shared::packet::packet_json(p));
        true
    }

    fn program(&mut self, ts: DateTime<Utc>, message: &str, line: &mut String) {
        let _ = write!(line, "{}", shared::json::program_json(ts, message));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev() -> ConnEvent {
        super::super::test_event()
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
