//! The connection record, field by field. [`FIELDS`] is the one place that says what a
//! [`ConnEvent`] carries to each output: the line log's `key=value` extras, the JSON keys and
//! the SQLite history's columns are all generated from it (by [`crate::logfmt`],
//! [`crate::json`] and the `store` crate), so a new field is one entry here.
//!
//! Each [`Field`] reads one typed [`Value`] from an event; each output decides from the type
//! how to show it (an epoch time is `1700000000.000000005` in the log and a float in JSON and
//! SQLite; foreign text is escaped in the log only). The nine fixed columns of a log line
//! (letter, time, protocol, source, destination, ports, flag, seconds) are not extras: they are
//! written from [`crate::logfmt::LineView`].
//!
//! The table is in the order of the history's columns, which is fixed (a database created
//! today has exactly this `CREATE TABLE`). The log's extras have their own fixed order, given
//! by [`LogKey::pos`], because lines already written are read by position-blind but
//! order-sensitive tools (`diff`, golden files); a new field takes the next position.

use std::net::IpAddr;

use chrono::{DateTime, Utc};

use crate::event::{Anomalies, ConnEvent, Counters, EventKind};

/// One field's value in one event.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Value<'a> {
    /// Nothing to say: left out of the log line and the JSON object, NULL in the history (and
    /// a history column that keeps its value keeps it).
    Absent,
    /// Known to be unknown: `null` in JSON, otherwise as [`Value::Absent`].
    Null,
    /// A number: packets, bytes, ports, ids.
    Count(u64),
    /// A number of incidents (an anomaly): shown only when non-zero, always stored.
    Tally(u64),
    /// Seconds with a fraction.
    Secs(f64),
    /// A point in time: epoch seconds with nanoseconds in the log, a float of epoch seconds in
    /// JSON and the history.
    Time(DateTime<Utc>),
    /// Yes or no: shown only when yes, stored as 1 or 0.
    Flag(bool),
    /// A word of our own (a state, a direction): written as it is.
    Word(&'static str),
    /// Foreign text (an interface name, history letters): escaped in the log.
    Text(&'a str),
    /// One character (the state flag).
    Char(char),
    Addr(IpAddr),
    /// An address and port (where NAT moved a connection): `a:p` or `[a]:p` in the log,
    /// `<key>_h` and `<key>_p` in JSON.
    AddrPort(IpAddr, Option<u16>),
    /// An IP protocol: its name in JSON (the number where it has none), the number elsewhere.
    Proto(u8),
}

impl Value<'_> {
    /// A number that may be unknown.
    fn count_or_null(n: Option<impl Into<u64>>) -> Value<'static> {
        n.map_or(Value::Null, |n| Value::Count(n.into()))
    }

    /// An optional number that is left out when unknown.
    fn count_or_absent(n: Option<impl Into<u64>>) -> Value<'static> {
        n.map_or(Value::Absent, |n| Value::Count(n.into()))
    }

    fn time_or_absent(t: Option<DateTime<Utc>>) -> Value<'static> {
        t.map_or(Value::Absent, Value::Time)
    }

    fn text_or_absent(s: Option<&str>) -> Value<'_> {
        s.map_or(Value::Absent, Value::Text)
    }

    /// Whether there is nothing to write (absent, null, a zero tally, a no).
    pub fn is_empty(&self) -> bool {
        matches!(
            self,
            Value::Absent | Value::Null | Value::Tally(0) | Value::Flag(false)
        )
    }
}

/// How a field reads from an event.
pub type Get = for<'a> fn(&'a ConnEvent) -> Value<'a>;

/// A field's place among the log line's `key=value` extras.
#[derive(Debug, Clone, Copy)]
pub struct LogKey {
    pub key: &'static str,
    /// Extras are written in this order (0 first).
    pub pos: u8,
    pub rule: LogRule,
}

/// When and how the log writes an extra (besides leaving out what [`Value::is_empty`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogRule {
    /// Whenever it has a value.
    Always,
    /// Not when it is empty text.
    NonEmpty,
    /// A [`Value::Flag`] written as `key=WORD` when set.
    Word(&'static str),
    /// Only with `-N` ([`crate::logfmt::WriteOptions::show_nat`]).
    WithNat,
}

/// When the history writes a column: the connection's row is inserted with its first event
/// (normally the open) and updated by each later one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Set {
    /// By the first event only.
    Open,
    /// By the first event, then by each later one that has a value (`coalesce`).
    OpenKeep,
    /// By the first event, then replaced by each later one.
    OpenReplace,
    /// Not by an open; by each later event that has a value.
    Keep,
    /// Not by an open; replaced by each later event.
    Replace,
}

impl Set {
    /// Whether the first event sets the column.
    pub const fn at_open(self) -> bool {
        matches!(self, Set::Open | Set::OpenKeep | Set::OpenReplace)
    }

    /// Whether later events change it.
    pub const fn changes(self) -> bool {
        !matches!(self, Set::Open)
    }

    /// Whether a later event without a value leaves the old one.
    pub const fn keeps(self) -> bool {
        matches!(self, Set::OpenKeep | Set::Keep)
    }
}

/// What the history binds for a column.
#[derive(Debug, Clone, Copy)]
pub enum Bind {
    /// The field's value.
    Value,
    /// The value of this getter instead: the row's notion differs from the event's.
    Own(Get),
    /// The local date (`YYYY-MM-DD`) of the value, a [`Value::Secs`] of epoch seconds.
    LocalDay,
    /// The first of these columns' values that is not NULL, computed by SQL at insert from
    /// the parameters bound for them (so a text is not bound twice).
    Coalesce(&'static [&'static str]),
}

/// A field's column in the history's `connections` table.
#[derive(Debug, Clone, Copy)]
pub struct Column {
    /// The column's type and constraints in `CREATE TABLE`.
    pub decl: &'static str,
    pub set: Set,
    pub bind: Bind,
    /// Most rows of a batch have the same text here: the writer binds it again only when it
    /// changes (binding text copies it).
    pub shared: bool,
}

/// One field of the connection record and where each output puts it.
#[derive(Debug, Clone, Copy)]
pub struct Field {
    /// The field's name: its history column, and its log and JSON key unless they are renamed.
    pub name: &'static str,
    pub get: Get,
    pub log: Option<LogKey>,
    pub json: Option<&'static str>,
    pub sql: Option<Column>,
}

impl Field {
    const fn new(name: &'static str, get: Get) -> Field {
        Field {
            name,
            get,
            log: None,
            json: None,
            sql: None,
        }
    }

    /// A `key=value` extra of the log under the field's name, at place `pos`.
    const fn log(self, pos: u8) -> Field {
        self.log_as(pos, self.name, LogRule::Always)
    }

    const fn log_as(self, pos: u8, key: &'static str, rule: LogRule) -> Field {
        Field {
            log: Some(LogKey { key, pos, rule }),
            ..self
        }
    }

    /// A JSON key of the field's name.
    const fn json(self) -> Field {
        self.json_as(self.name)
    }

    const fn json_as(self, key: &'static str) -> Field {
        Field {
            json: Some(key),
            ..self
        }
    }

    /// A history column of the field's name.
    const fn sql(self, decl: &'static str, set: Set) -> Field {
        Field {
            sql: Some(Column {
                decl,
                set,
                bind: Bind::Value,
                shared: false,
            }),
            ..self
        }
    }

    /// A history column bound as `bind`.
    const fn sql_bind(self, decl: &'static str, set: Set, bind: Bind) -> Field {
        Field {
            sql: Some(Column {
                decl,
                set,
                bind,
                shared: false,
            }),
            ..self
        }
    }

    /// A history column whose text most rows share (see [`Column::shared`]).
    const fn shared(self) -> Field {
        match self.sql {
            Some(c) => Field {
                sql: Some(Column { shared: true, ..c }),
                ..self
            },
            None => panic!("shared() needs a column"),
        }
    }

    /// The field's log key; fails to build where the field has none (in a constant).
    pub const fn log_key(&self) -> &'static str {
        match self.log {
            Some(l) => l.key,
            None => panic!("not a log extra"),
        }
    }

    /// A field every output has under its name: a history column `decl` written as `set`
    /// says, a JSON key, and a log extra at `log_pos`.
    const fn everywhere(
        name: &'static str,
        get: Get,
        decl: &'static str,
        set: Set,
        log_pos: u8,
    ) -> Field {
        Field::new(name, get).sql(decl, set).json().log(log_pos)
    }

    /// A count the history keeps from the last event that had it.
    const fn counter(name: &'static str, get: Get, log_pos: u8) -> Field {
        Field::everywhere(name, get, "INTEGER", Set::Keep, log_pos)
    }

    /// An anomaly: a count each event states anew, shown when not zero.
    const fn anomaly(name: &'static str, get: Get, log_pos: u8) -> Field {
        Field::everywhere(
            name,
            get,
            "INTEGER NOT NULL DEFAULT 0",
            Set::Replace,
            log_pos,
        )
    }

    /// This field's value in `ev`.
    pub fn get<'a>(&self, ev: &'a ConnEvent) -> Value<'a> {
        (self.get)(ev)
    }
}

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
    Field::new("orig_p", |e| Value::count_or_null(e.orig.sport))
        .sql("INTEGER", Set::Open)
        .json_as("id.orig_p"),
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
    Field::new("dport", |e| Value::count_or_null(e.shown_dport()))
        .sql("INTEGER", Set::Open)
        .json_as("id.resp_p"),
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
];

/// The field named `name` (a history column or, for the others, the name in [`FIELDS`]).
/// Evaluated at compile time where it names a constant, so a misspelt name does not build.
pub const fn field(name: &str) -> &'static Field {
    let mut i = 0;
    while i < FIELDS.len() {
        if str_eq(FIELDS[i].name, name) {
            return &FIELDS[i];
        }
        i += 1;
    }
    panic!("no such field in shared::record::FIELDS")
}

const fn str_eq(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    let mut i = 0;
    while i < a.len() {
        if a[i] != b[i] {
            return false;
        }
        i += 1;
    }
    true
}

/// Fields readers of the log look up by name.
pub const FOUND_AT_START: &Field = field("found_at_start");
pub const ORIG_IP_BYTES: &Field = field("orig_ip_bytes");
pub const RESP_IP_BYTES: &Field = field("resp_ip_bytes");
pub const UID: &Field = field("uid");

const fn log_count() -> usize {
    let mut n = 0;
    let mut i = 0;
    while i < FIELDS.len() {
        if FIELDS[i].log.is_some() {
            n += 1;
        }
        i += 1;
    }
    n
}

/// A field the log writes as an extra.
#[derive(Debug, Clone, Copy)]
pub struct LogExtra {
    pub key: &'static str,
    pub rule: LogRule,
    pub get: Get,
}

/// The fields the log writes as extras, in their order on the line. Checked when built: the
/// positions are 0, 1, 2, ... without a gap or a repeat.
pub const LOG_EXTRAS: [LogExtra; log_count()] = {
    let unset = LogExtra {
        key: "",
        rule: LogRule::Always,
        get: |_| Absent,
    };
    let mut out = [unset; log_count()];
    let mut seen = [false; log_count()];
    let mut i = 0;
    while i < FIELDS.len() {
        if let Some(l) = FIELDS[i].log {
            let p = l.pos as usize;
            assert!(p < log_count(), "log position beyond the number of extras");
            assert!(!seen[p], "two extras at one log position");
            seen[p] = true;
            out[p] = LogExtra {
                key: l.key,
                rule: l.rule,
                get: FIELDS[i].get,
            };
        }
        i += 1;
    }
    out
};

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn names_and_keys_are_unique() {
        let mut names = HashSet::new();
        let mut json = HashSet::new();
        let mut log = HashSet::new();
        for f in FIELDS {
            assert!(names.insert(f.name), "{}", f.name);
            if let Some(k) = f.json {
                assert!(json.insert(k), "{k}");
            }
            if let Some(l) = f.log {
                assert!(log.insert(l.key), "{}", l.key);
                assert!(l.key.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'));
            }
            assert!(
                f.log.is_some() || f.json.is_some() || f.sql.is_some(),
                "{} goes nowhere",
                f.name
            );
        }
    }

    #[test]
    fn computed_columns_use_columns_set_at_open() {
        for f in FIELDS {
            if let Some(Column {
                bind: Bind::Coalesce(names),
                set,
                ..
            }) = f.sql
            {
                assert!(set == Set::Open, "{}", f.name);
                for name in names {
                    let c = field(name).sql.unwrap();
                    assert!(c.set.at_open() && matches!(c.bind, Bind::Value), "{name}");
                }
            }
        }
    }
}
