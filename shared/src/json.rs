//! Events as JSON objects (ipclog `--json`), one per event, with Zeek's conn.log names where
//! Zeek has the field (`ts`, `uid`, `id.orig_h`, `orig_pkts`, `conn_state`, ...). The keys are
//! the JSON keys of [`crate::record::FIELDS`].

use chrono::{DateTime, Utc};
use serde_json::{Map, Number, Value as Json};

use crate::event::{epoch_secs, ConnEvent};
use crate::proto::proto_name;
use crate::record::{Value, FIELDS};

/// The JSON object of one event; `uid` only when the event has one (a source that names its
/// connections otherwise is ipclog's to say: a sink option). NAT (`nat_src_h`/`_p`, `orig_dst_h`/`_p`) is in every object
/// of a connection NAT changed, `-N` or not: unlike a log line, an object has room for it.
pub fn event_json(ev: &ConnEvent) -> Json {
    let mut m = Map::new();
    for f in FIELDS {
        if let Some(key) = f.json {
            put(&mut m, key, f.get(ev));
        }
    }
    Json::Object(m)
}

/// The object of a `P` line's message: `{"event":"program","message":...,"ts":...}`.
pub fn program_json(ts: DateTime<Utc>, message: &str) -> Json {
    let mut m = Map::new();
    m.insert("ts".into(), Json::from(epoch_secs(ts)));
    m.insert("event".into(), "program".into());
    m.insert("message".into(), message.into());
    Json::Object(m)
}

/// Adds `key` for a value: left out when absent (or a zero tally, an unset flag), `null` when
/// unknown.
fn put(m: &mut Map<String, Json>, key: &str, v: Value<'_>) {
    let json = match v {
        Value::Absent | Value::Tally(0) | Value::Flag(false) => return,
        Value::Null => Json::Null,
        Value::Count(n) | Value::Tally(n) => Json::Number(Number::from(n)),
        Value::Secs(s) => Json::from(s),
        Value::Time(t) => Json::from(epoch_secs(t)),
        Value::Flag(true) => Json::Bool(true),
        Value::Word(w) => Json::from(w),
        Value::Text(t) => Json::from(t),
        Value::Char(c) => Json::String(c.to_string()),
        Value::Addr(a) => Json::String(a.to_string()),
        Value::AddrPort(a, p) => {
            m.insert(format!("{key}_h"), Json::String(a.to_string()));
            m.insert(format!("{key}_p"), p.map_or(Json::Null, Json::from));
            return;
        }
        Value::Proto(p) => match proto_name(p) {
            Some(n) => Json::from(n),
            None => Json::from(p),
        },
        Value::List(l) => Json::Array(l.split(',').map(Json::from).collect()),
        Value::Pair(a, b) => Json::String(format!("{a}/{b}")),
    };
    m.insert(key.into(), json);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testdata::fixtures;
    use chrono::TimeZone;

    /// What ipclog's own `event_json` wrote for the same events before the keys were generated
    /// from the record's fields (keys sorted: serde_json's map without `preserve_order`).
    const BEFORE: [&str; 3] = [
        r#"{"direction":"out","duration":2.0,"event":"close","event_ts":1700000010.25,"flag":"t","id.orig_h":"10.0.0.1","id.orig_p":40000,"id.resp_h":"10.0.1.1","id.resp_p":80,"kstart":1700000008.0,"kstop":1700000010.0,"mark":7,"nat_src_h":"192.168.0.1","nat_src_p":40000,"orig_bytes":null,"orig_ip_bytes":400,"orig_pkts":5,"proto":"tcp","proto_num":6,"resp_bytes":null,"resp_ip_bytes":3000,"resp_pkts":4,"source":"conntrack","src_iface":"eth0","state":"TIME_WAIT","ts":1700000008.25,"uid":"CT1234abcd"}"#,
        r#"{"conn_state":"SF","direction":"-","duration":0.125,"event":"close","event_ts":1700000100.0,"flag":"-","found_at_start":true,"history":"Dd","id.orig_h":"192.168.1.2","id.orig_p":5353,"id.resp_h":"8.8.8.8","id.resp_p":53,"long_conn":1,"orig_bytes":32,"orig_ip_bytes":60,"orig_pkts":1,"proto":"udp","proto_num":17,"resp_bytes":92,"resp_ip_bytes":120,"resp_pkts":1,"retrans":2,"source":"pcap","state":"REPLIED","ts":1700000099.875,"uid":"CAbCdEfGhIjKlMnOp"}"#,
        r#"{"direction":"in","dst_iface":"lo","duration":null,"event":"open","event_ts":1700000201.0,"flag":"-","history":"","id.orig_h":"2001:db8::1","id.orig_p":null,"id.resp_h":"2001:db8::2","id.resp_p":null,"proto":"icmp6","proto_num":58,"source":"conntrack","state":"OTHER","ts":1700000201.0,"uid":"CT00000009","zone":3}"#,
    ];

    #[test]
    fn objects_are_what_ipclog_wrote_before() {
        for (ev, want) in fixtures().iter().zip(BEFORE) {
            // ipclog names a conntrack connection by its id (the JSON sink's uid option).
            let mut ev = ev.clone();
            ev.uid
                .get_or_insert_with(|| format!("CT{:08x}", ev.conn_id));
            assert_eq!(event_json(&ev).to_string(), want);
        }
        let p = program_json(
            Utc.timestamp_opt(1_700_000_000, 500_000_000).unwrap(),
            "ipclog \u{1b} started",
        );
        assert_eq!(
            p.to_string(),
            r#"{"event":"program","message":"ipclog \u001b started","ts":1700000000.5}"#
        );
    }

    #[test]
    fn zeek_names_and_start_ts() {
        let e = &fixtures()[0];
        let v = event_json(e);
        assert_eq!(v["id.orig_h"], "10.0.0.1");
        assert_eq!(v["id.resp_p"], 80);
        assert_eq!(v["proto"], "tcp");
        assert_eq!(v["event"], "close");
        assert_eq!(v["nat_src_h"], "192.168.0.1");
        let ts = v["ts"].as_f64().unwrap();
        assert!((v["event_ts"].as_f64().unwrap() - ts - 2.0).abs() < 1e-6);
        // An unnamed protocol is its number.
        let mut other = e.clone();
        other.proto = 50;
        assert_eq!(event_json(&other)["proto"], 50);
    }
}
