//! Reading one line back: borrowed from the line's text, so reading a log allocates nothing
//! per line.

use std::fmt::Write as _;

use chrono::{DateTime, NaiveDate, NaiveDateTime, TimeZone, Utc};

use super::{LineView, WriteOptions, MAX_VALUE, TIME_FORMAT};
use crate::event::{EventKind, Process};
use crate::proto::proto_from_name;
use crate::record::{Field, LogRule, COMM, PID, PROC_UID};

/// Why a line could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    /// Which field was wrong (`"time"`, `"sport"`, ...) or `"line"`.
    pub field: &'static str,
    pub reason: String,
}

impl std::fmt::Display for ParseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.field, self.reason)
    }
}

pub(super) fn err(field: &'static str, reason: impl Into<String>) -> ParseError {
    ParseError {
        field,
        reason: reason.into(),
    }
}

/// One parsed log line. Borrowed from the line buffer, so reading allocates nothing per line.
#[derive(Debug, Clone, PartialEq)]
pub enum LogLine<'a> {
    /// `P`: the logger's own messages (started, stopped, lost events).
    Program { ts: NaiveDateTime, message: &'a str },
    /// `H`: column titles.
    Header { ts: NaiveDateTime },
    /// `I`: a local address went up or down.
    Interface {
        ts: NaiveDateTime,
        up: bool,
        ifname: &'a str,
        addr: &'a str,
    },
    /// `O`, `S` or `C`.
    Conn(ConnLine<'a>),
    /// `F`: a packet the packet filter logged (`--nflog`).
    Packet(super::PacketLine<'a>),
}

/// An O/S/C line. `src`/`dst` are what the log shows: an address or a local interface name.
#[derive(Debug, Clone, PartialEq)]
pub struct ConnLine<'a> {
    pub kind: EventKind,
    pub ts: NaiveDateTime,
    pub proto: u8,
    pub src: &'a str,
    pub dst: &'a str,
    pub sport: Option<u16>,
    pub dport: Option<u16>,
    pub flag: char,
    /// Seconds: open so far (S, and O from `ipc`) or in total (C).
    pub time: Option<u64>,
    /// The `key=value` tokens after the time column, unparsed.
    pub extras: &'a str,
}

impl<'a> ConnLine<'a> {
    /// The `key=value` tokens.
    pub fn extras(&self) -> impl Iterator<Item = (&'a str, &'a str)> {
        self.extras
            .split_ascii_whitespace()
            .filter_map(|t| t.split_once('='))
    }

    /// One extra's value.
    pub fn extra(&self, key: &str) -> Option<&'a str> {
        self.extras().find(|(k, _)| *k == key).map(|(_, v)| v)
    }

    /// The value of a record field the log writes as an extra; `None` when the line does not
    /// have it (or the field is not written to the log).
    pub fn field(&self, f: &Field) -> Option<&'a str> {
        self.extra(f.log?.key)
    }

    /// The process that owned the connection's socket (ipclog `--proc`): `None` when the line
    /// names none; an error naming the token when a number is not one or the name is missing.
    pub fn process(&self) -> Result<Option<Process>, ParseError> {
        let Some(pid) = self.field(PID) else {
            return Ok(None);
        };
        let number = |key: &'static str, v: &str| {
            v.parse::<u32>()
                .map_err(|_| err(key, format!("not a number: {v:?}")))
        };
        let pid = number(PID.log_key(), pid)?;
        let comm = self
            .field(COMM)
            .ok_or_else(|| err(COMM.log_key(), "pid= without comm="))?;
        let uid = match self.field(PROC_UID) {
            Some(u) => number(PROC_UID.log_key(), u)?,
            None => return Err(err(PROC_UID.log_key(), "pid= without proc_uid=")),
        };
        Ok(Some(Process {
            pid,
            comm: crate::text::unescape_field(comm).into_owned(),
            uid,
        }))
    }

    /// Whether a yes-or-no field written as `key=WORD` ([`LogRule::Word`]) is set.
    pub fn is_set(&self, f: &Field) -> bool {
        match f.log {
            Some(l) => match l.rule {
                LogRule::Word(w) => self.extra(l.key) == Some(w),
                _ => false,
            },
            None => false,
        }
    }
}

/// A line as it was read: its columns as they were (the source and destination still
/// escaped), its extras as they were, each once separated by one space.
impl LineView for ConnLine<'_> {
    fn kind(&self) -> EventKind {
        self.kind
    }

    fn push_time(&self, out: &mut String) {
        let _ = write!(out, "{}", self.ts.format(TIME_FORMAT));
    }

    fn proto(&self) -> u8 {
        self.proto
    }

    fn push_src(&self, out: &mut String) {
        out.push_str(self.src);
    }

    fn push_dst(&self, out: &mut String) {
        out.push_str(self.dst);
    }

    fn sport(&self) -> Option<u16> {
        self.sport
    }

    fn dport(&self) -> Option<u16> {
        self.dport
    }

    fn flag(&self) -> char {
        self.flag
    }

    fn seconds(&self) -> Option<u64> {
        self.time
    }

    fn push_extras(&self, _opts: WriteOptions, out: &mut String) {
        for token in self.extras.split_ascii_whitespace() {
            out.push(' ');
            out.push_str(token);
        }
    }
}

/// Parses the log's timestamp `YYYY-MM-DD-HH:MM:SS` (fixed width, checked by hand: this is
/// the hot path of reading a large log).
pub fn parse_ts(s: &str) -> Option<NaiveDateTime> {
    let b = s.as_bytes();
    if b.len() != 19 || b[4] != b'-' || b[7] != b'-' || b[10] != b'-' || b[13] != b':' {
        return None;
    }
    if b[16] != b':' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<u32> {
        let mut n = 0u32;
        for &c in &b[r] {
            if !c.is_ascii_digit() {
                return None;
            }
            n = n * 10 + (c - b'0') as u32;
        }
        Some(n)
    };
    let date = NaiveDate::from_ymd_opt(num(0..4)? as i32, num(5..7)?, num(8..10)?)?;
    date.and_hms_opt(num(11..13)?, num(14..16)?, num(17..19)?)
}

fn parse_port(s: &str, field: &'static str) -> Result<Option<u16>, ParseError> {
    if s == "-" {
        return Ok(None);
    }
    s.parse::<u16>()
        .map(Some)
        .map_err(|_| err(field, format!("not a port number: {s:?}")))
}

/// Parses one line (without its newline).
pub fn parse_line(line: &str) -> Result<LogLine<'_>, ParseError> {
    let line = line.strip_suffix('\r').unwrap_or(line);
    let mut fields = line.split_ascii_whitespace();
    let letter = fields.next().ok_or_else(|| err("line", "empty line"))?;
    let ts_str = fields
        .next()
        .ok_or_else(|| err("timestamp", "missing timestamp"))?;
    if letter == "F" {
        let end = ts_str.as_ptr() as usize - line.as_ptr() as usize + ts_str.len();
        return super::packet::parse_packet(ts_str, &line[end..]).map(LogLine::Packet);
    }
    let ts = parse_ts(ts_str).ok_or_else(|| {
        err(
            "timestamp",
            format!("not a YYYY-MM-DD-HH:MM:SS time: {ts_str:?}"),
        )
    })?;
    let rest_after = |n: &str| -> &str {
        // The unsplit remainder after the token `n` (a slice of `line`).
        let end = n.as_ptr() as usize - line.as_ptr() as usize + n.len();
        line[end..].trim()
    };
    match letter {
        "P" => Ok(LogLine::Program {
            ts,
            message: rest_after(ts_str),
        }),
        "H" => Ok(LogLine::Header { ts }),
        "I" => {
            let state = fields
                .next()
                .ok_or_else(|| err("state", "missing UP/DOWN"))?;
            let up = match state {
                "UP" => true,
                "DOWN" => false,
                _ => return Err(err("state", format!("not UP or DOWN: {state:?}"))),
            };
            let ifname = fields
                .next()
                .ok_or_else(|| err("interface", "missing interface name"))?;
            let addr = fields
                .next()
                .ok_or_else(|| err("address", "missing address"))?;
            Ok(LogLine::Interface {
                ts,
                up,
                ifname,
                addr,
            })
        }
        "O" | "S" | "C" => {
            let kind = match letter {
                "O" => EventKind::Open,
                "S" => EventKind::Update,
                _ => EventKind::Close,
            };
            let mut next = |field: &'static str| {
                fields
                    .next()
                    .ok_or_else(|| err(field, format!("missing {field} column")))
            };
            let prot = next("prot")?;
            let proto = proto_from_name(prot)
                .ok_or_else(|| err("prot", format!("unknown protocol {prot:?}")))?;
            let src = next("src")?;
            let dst = next("dst")?;
            let sport = parse_port(next("sport")?, "sport")?;
            let dport = parse_port(next("dport")?, "dport")?;
            let fl = next("fl")?;
            let mut chars = fl.chars();
            let flag = match (chars.next(), chars.next()) {
                (Some(c), None) if "etcwsU-".contains(c) => c,
                _ => return Err(err("fl", format!("unknown flag {fl:?}"))),
            };
            let time_str = next("time")?;
            let time = if time_str == "-" {
                None
            } else {
                let t = time_str
                    .parse::<u64>()
                    .map_err(|_| err("time", format!("not seconds: {time_str:?}")))?;
                if t > MAX_VALUE {
                    return Err(err(
                        "time",
                        format!("{t} seconds is out of range (at most {MAX_VALUE})"),
                    ));
                }
                Some(t)
            };
            let extras = rest_after(time_str);
            if let Some(bad) = extras.split_ascii_whitespace().find(|t| {
                t.split_once('=')
                    .is_none_or(|(k, _)| k.is_empty() || !k.bytes().all(is_key_byte))
            }) {
                return Err(err(
                    "extras",
                    format!("not a key=value token after the time column: {bad:?}"),
                ));
            }
            Ok(LogLine::Conn(ConnLine {
                kind,
                ts,
                proto,
                src,
                dst,
                sport,
                dport,
                flag,
                time,
                extras,
            }))
        }
        _ => Err(err("type", format!("unknown line type {letter:?}"))),
    }
}

fn is_key_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b'.'
}

/// Parses `write_epoch`'s format.
pub fn parse_epoch(s: &str) -> Option<DateTime<Utc>> {
    let (secs, frac) = s.split_once('.').unwrap_or((s, "0"));
    let secs: i64 = secs.parse().ok()?;
    if frac.is_empty() || frac.len() > 9 || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let nanos: u32 = frac.parse::<u32>().ok()? * 10u32.pow(9 - frac.len() as u32);
    Utc.timestamp_opt(secs, nanos).single()
}
