//! The table itself: every field of the connection record, and where each output puts it. A
//! new field is one entry here (and, for the log, the next free position).

use super::{Bind, Field, LogRule, Set, Value};
use crate::event::{Anomalies, Counters, EventKind};
use crate::proto::icmp_counterpart;

use Value::*;

/// A counter: absent with the counters.
fn counter(c: &Option<Counters>, n: impl FnOnce(&Counters) -> u64) -> Value<'static> {
    match c {
        Some(c) => Count(n(c)),
        None => Absent,
    }
}

/// Payload byte counts are known to packet captures only: `null` next to the other counters
/// when unknown, absent with them.
fn payload(c: &Option<Counters>, n: impl FnOnce(&Counters) -> Option<u64>) -> Value<'static> {
    match c {
        Some(c) => Value::count_or_null(n(c)),
        None => Absent,
    }
}

const KEYS: [&str; 6] = Anomalies::KEYS;

/// The record. Order: the history's columns (after its own `id` and `run_id`), then the fields
/// only the log or JSON have.
pub const FIELDS: &[Field] = &[
    Field::new("source", |e| Word(e.source.as_str()))
        .sql("TEXT NOT NULL", Set::Open)
        .shared()
        .json(),
    Field::new("conn_id", |e| Count(e.conn_id)).sql("INTEGER NOT NULL", Set::Open),
    Field::new("uid", |e| Value::text_or_absent(e.uid.as_deref()))
        .sql("TEXT", Set::OpenKeep)
        .json()
        .log(9),
    Field::new("proto", |e| Proto(e.proto))
        .sql("INTEGER NOT NULL", Set::Open)
        .json(),
    Field::new("orig_h", |e| Addr(e.orig.src))
        .sql("TEXT NOT NULL", Set::Open)
        .json_as("id.orig_h"),
    Field::new("orig_p", |e| Value::count_or_null(e.orig.sport)).sql("INTEGER", Set::Open),
    Field::new("resp_h", |e| Addr(e.orig.dst)).sql("TEXT NOT NULL", Set::Open),
    Field::new("resp_p", |e| Value::count_or_null(e.orig.dport)).sql("INTEGER", Set::Open),
    Field::new("reply_src", |e| e.reply.map_or(Null, |r| Addr(r.src))).sql("TEXT", Set::Open),
    Field::new("reply_sport", |e| {
        Value::count_or_null(e.reply.and_then(|r| r.sport))
    })
    .sql("INTEGER", Set::Open),
    Field::new("reply_dst", |e| e.reply.map_or(Null, |r| Addr(r.dst))).sql("TEXT", Set::Open),
    Field::new("reply_dport", |e| {
        Value::count_or_null(e.reply.and_then(|r| r.dport))
    })
    .sql("INTEGER", Set::Open),
    // What the log shows as source and destination: the local interface, else the address
    // (the responder's after DNAT). Computed by SQL from parameters bound anyway.
    Field::new("src", |_| Absent).sql_bind(
        "TEXT NOT NULL",
        Set::Open,
        Bind::Coalesce(&["src_iface", "orig_h"]),
    ),
    Field::new("dst", |_| Absent).sql_bind(
        "TEXT NOT NULL",
        Set::Open,
        Bind::Coalesce(&["dst_iface", "reply_src", "resp_h"]),
    ),
    Field::new("dport", |e| Value::count_or_null(e.shown_dport())).sql("INTEGER", Set::Open),
    Field::new("src_iface", |e| {
        Value::text_or_absent(e.src_iface.as_deref())
    })
    .sql("TEXT", Set::Open)
    .json(),
    Field::new("dst_iface", |e| {
        Value::text_or_absent(e.dst_iface.as_deref())
    })
    .sql("TEXT", Set::Open)
    .json(),
    Field::new("direction", |e| Word(e.direction.as_str()))
        .sql("TEXT NOT NULL", Set::Open)
        .shared()
        .json(),
    // constat's per-day key: the local date the connection opened.
    Field::new("day", |e| Secs(e.start_ts()))
        .sql_bind("TEXT NOT NULL", Set::Open, Bind::LocalDay)
        .shared(),
    Field::new("open_ts", |e| Secs(e.start_ts()))
        .sql("REAL NOT NULL", Set::Open)
        .json_as("ts"),
    Field::new("close_ts", |e| match e.kind {
        EventKind::Close => Time(e.ts),
        _ => Null,
    })
    .sql("REAL", Set::Replace),
    // The history's row also counts as found when its first event was not an open: the logger
    // missed the open, so the open time is an estimate.
    Field::new("found_at_start", |e| Flag(e.found_at_start))
        .sql_bind(
            "INTEGER NOT NULL DEFAULT 0",
            Set::Open,
            Bind::Own(|e| Flag(e.found_at_start || e.kind != EventKind::Open)),
        )
        .json()
        .log_as(0, "found", LogRule::Word("start")),
    Field::new("last_state", |e| Word(e.state.name()))
        .sql("TEXT NOT NULL", Set::OpenReplace)
        .shared()
        .json_as("state"),
    Field::new("flag", |e| Char(e.state.flag()))
        .sql("TEXT NOT NULL", Set::OpenReplace)
        .shared()
        .json(),
    Field::new("duration", |e| e.duration.map_or(Null, Secs))
        .sql("REAL", Set::Keep)
        .json(),
    Field::counter("orig_pkts", |e| counter(&e.counters, |c| c.orig_pkts), 1),
    Field::counter(
        "orig_ip_bytes",
        |e| counter(&e.counters, |c| c.orig_ip_bytes),
        2,
    ),
    Field::counter("resp_pkts", |e| counter(&e.counters, |c| c.resp_pkts), 3),
    Field::counter(
        "resp_ip_bytes",
        |e| counter(&e.counters, |c| c.resp_ip_bytes),
        4,
    ),
    Field::counter("orig_bytes", |e| payload(&e.counters, |c| c.orig_bytes), 5),
    Field::counter("resp_bytes", |e| payload(&e.counters, |c| c.resp_bytes), 6),
    Field::new("conn_state", |e| {
        e.zeek_state.map_or(Absent, |z| Word(z.as_str()))
    })
    .sql("TEXT", Set::Keep)
    .json()
    .log(7),
    Field::new("history", |e| Value::text_or_absent(e.history.as_deref()))
        .sql("TEXT", Set::Keep)
        .json()
        .log_as(8, "history", LogRule::NonEmpty),
    Field::anomaly(KEYS[0], |e| Tally(e.anomalies.retransmits.into()), 10),
    Field::anomaly(KEYS[1], |e| Tally(e.anomalies.syn_retransmits.into()), 11),
    Field::anomaly(KEYS[2], |e| Tally(e.anomalies.resets.into()), 12),
    Field::anomaly(KEYS[3], |e| Tally(e.anomalies.long_delays.into()), 13),
    Field::anomaly(KEYS[4], |e| Tally(e.anomalies.fragments.into()), 14),
    Field::anomaly(KEYS[5], |e| Tally(e.anomalies.long_connect.into()), 15),
    Field::everywhere(
        "mark",
        |e| Value::count_or_absent(e.mark),
        "INTEGER",
        Set::OpenKeep,
        16,
    ),
    Field::everywhere(
        "zone",
        |e| Value::count_or_absent(e.zone),
        "INTEGER",
        Set::OpenKeep,
        17,
    ),
    Field::everywhere(
        "kstart",
        |e| Value::time_or_absent(e.kernel_start),
        "REAL",
        Set::OpenKeep,
        18,
    ),
    Field::everywhere(
        "kstop",
        |e| Value::time_or_absent(e.kernel_stop),
        "REAL",
        Set::Keep,
        19,
    ),
    // The owning process (`--proc`); `uid` is Zeek's connection id, so the owner's is
    // `proc_uid`.
    Field::everywhere(
        "pid",
        |e| Value::count_or_absent(e.process.as_ref().map(|p| p.pid)),
        "INTEGER",
        Set::OpenKeep,
        22,
    ),
    Field::everywhere(
        "comm",
        |e| Value::text_or_absent(e.process.as_ref().map(|p| p.comm.as_str())),
        "TEXT",
        Set::OpenKeep,
        23,
    ),
    Field::everywhere(
        "proc_uid",
        |e| Value::count_or_absent(e.process.as_ref().map(|p| p.uid)),
        "INTEGER",
        Set::OpenKeep,
        24,
    ),
    // Only the log and JSON have these.
    Field::new("nat_src", |e| {
        e.nat_src().map_or(Absent, |(a, p)| AddrPort(a, p))
    })
    .json()
    .log_as(20, "nat_src", LogRule::WithNat),
    Field::new("orig_dst", |e| {
        e.nat_orig_dst().map_or(Absent, |(a, p)| AddrPort(a, p))
    })
    .json()
    .log_as(21, "orig_dst", LogRule::WithNat),
    Field::new("event_ts", |e| Time(e.ts)).json(),
    Field::new("event", |e| Word(e.kind.as_str())).json(),
    Field::new("proto_num", |e| Count(e.proto.into())).json(),
    Field::new("shown_dst", |e| Addr(e.shown_dst())).json_as("id.resp_h"),
    // Zeek's ports: for ICMP the type, and the counterpart type or the code.
    Field::new("zeek_orig_p", |e| match e.icmp {
        Some(i) => Count(i.kind.into()),
        None => Value::count_or_null(e.orig.sport),
    })
    .json_as("id.orig_p"),
    Field::new("zeek_resp_p", |e| match e.icmp {
        Some(i) => Count(icmp_counterpart(e.proto, i.kind, i.code).0.into()),
        None => Value::count_or_null(e.shown_dport()),
    })
    .json_as("id.resp_p"),
    Field::new("tunnel_parents", |e| {
        e.tunnel_parents.as_deref().map_or(Absent, List)
    })
    .sql("TEXT", Set::OpenKeep)
    .json()
    .log(25),
    Field::new("icmp", |e| e.icmp.map_or(Absent, |i| Pair(i.kind, i.code)))
        .sql("TEXT", Set::Open)
        .log(26),
    // `--dpi http`: known once the exchange was seen, so kept from the event that has them.
    Field::everywhere(
        "http_method",
        |e| Value::text_or_absent(e.http_method.as_deref()),
        "TEXT",
        Set::Keep,
        27,
    ),
    Field::everywhere(
        "http_host",
        |e| Value::text_or_absent(e.http_host.as_deref()),
        "TEXT",
        Set::Keep,
        28,
    ),
    Field::everywhere(
        "http_uri",
        |e| Value::text_or_absent(e.http_uri.as_deref()),
        "TEXT",
        Set::Keep,
        29,
    ),
    Field::everywhere(
        "http_status",
        |e| Value::count_or_absent(e.http_status),
        "INTEGER",
        Set::Keep,
        30,
    ),
];
