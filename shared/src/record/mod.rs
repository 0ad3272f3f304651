//! The connection record, field by field. [`FIELDS`] is the one place that says what a
//! [`ConnEvent`] carries to each output: the line log's `key=value` extras, the JSON keys and
//! the SQLite history's columns are all generated from it (by [`crate::logfmt`],
//! [`crate::json`] and the `store` crate), so a new field is one entry in its table
//! (`record/fields.rs`).
//!
//! Each [`Field`] reads one typed [`Value`] from an event; each output decides from the type
//! how to show it (an epoch time is `1700000000.000000005` in the log and a float in JSON and
//! SQLite; foreign text is escaped in the log only). The nine fixed columns of a log line
//! (letter, time, protocol, source, destination, ports, flag, seconds) are not extras: they are
//! written from [`crate::logfmt::LineView`].
//!
//! The table is in the order of the history's columns, which is fixed (a database created
//! today has exactly this `CREATE TABLE`). The log's extras have their own order, given by
//! [`LogKey::pos`], fixed as well (a line is the same byte for byte whichever version wrote
//! it); a new field takes the next position.

use std::net::IpAddr;

use chrono::{DateTime, Utc};

use crate::event::ConnEvent;

mod fields;

pub use fields::FIELDS;

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
    /// Foreign text that is a set of comma-separated items (Zeek's `set[string]`, e.g.
    /// `tunnel_parents`): a JSON array, otherwise as [`Value::Text`].
    List(&'a str),
    /// Two numbers written `a/b` (an ICMP type and code, as ipmon shows them).
    Pair(u8, u8),
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
pub const PID: &Field = field("pid");
pub const COMM: &Field = field("comm");
pub const PROC_UID: &Field = field("proc_uid");

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
        get: |_| Value::Absent,
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
