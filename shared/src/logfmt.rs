//! The line log: the original ipclog format, extended compatibly.
//!
//! ```text
//! P 2004-08-05-16:41:22 ipclog started
//! H 2004-08-05-16:41:22 prot src             dst             sport dport fl  time
//! I 2004-08-05-16:41:22 UP eth0 192.168.0.1
//! O 2004-08-05-16:41:37 udp  ppp0            217.237.151.97  32799 53    -      -
//! C 2004-08-05-16:41:37 udp  ppp0            217.237.151.97  32799 53    -      0 orig_pkts=1 ...
//! ```
//!
//! Every O/S/C line is `%c %s %-4s %-15s %-15s %-5s %-5s %-2s %5s` (letter, local time
//! `YYYY-MM-DD-HH:MM:SS`, protocol, source, destination, ports, flag, seconds) with `-` for an
//! absent field; wider values widen their column. Anything the original did not have follows
//! the time column as `key=value` tokens, so readers that split on whitespace and take the first
//! nine fields keep working.
//!
//! Interface names and other foreign text are written with [`crate::text::push_field`]: a
//! control character, a bidi control, a space or a backslash becomes `\xHH` / `\uXXXX`, so a
//! line never carries terminal escapes and a name never splits into two columns.
//! [`crate::text::unescape_field`] reads a field back.

use std::fmt::Write as _;
use std::io::{self, BufRead};
use std::net::IpAddr;

use chrono::{DateTime, Local, NaiveDate, NaiveDateTime, TimeZone, Utc};

use crate::event::{ConnEvent, EventKind};
use crate::proto::{proto_from_name, proto_name};
use crate::text::{push_escaped, push_field};

/// The largest count or number of seconds a line (or a history row) may carry: the range of
/// SQLite's INTEGER, where ipclog's history keeps the same values. Larger ones are garbage,
/// and bounding them keeps every sum a reader makes exact.
pub const MAX_VALUE: u64 = i64::MAX as u64;

/// The log's timestamp format, for chrono.
pub const TIME_FORMAT: &str = "%Y-%m-%d-%H:%M:%S";

/// How to render events.
#[derive(Debug, Clone, Copy, Default)]
pub struct WriteOptions {
    /// Add `nat_src=` / `orig_dst=` tokens where NAT rewrote the tuple (ipclog `-N`).
    pub show_nat: bool,
}

/// Formats a UTC time as the log's local-time stamp.
///
/// Events come in bursts within the same second, and converting to local time (a time zone
/// lookup) and strftime cost more than the rest of a line, so the last second's text is kept.
pub fn format_ts(ts: DateTime<Utc>, out: &mut String) {
    thread_local! {
        static LAST: std::cell::RefCell<(i64, String)> =
            const { std::cell::RefCell::new((i64::MIN, String::new())) };
    }
    let secs = ts.timestamp();
    LAST.with(|last| {
        let mut last = last.borrow_mut();
        if last.0 != secs {
            last.1.clear();
            let local = ts.with_timezone(&Local);
            let _ = write!(last.1, "{}", local.format(TIME_FORMAT));
            last.0 = secs;
        }
        out.push_str(&last.1);
    });
}

/// Appends `s` left-aligned in a column of `width` (wider values widen the column).
fn push_padded(out: &mut String, s: &str, width: usize) {
    out.push_str(s);
    for _ in s.len()..width {
        out.push(' ');
    }
}

/// Appends foreign text (an interface name) as one escaped field, padded like
/// [`push_padded`]: the width counts the escaped text, which is what the reader sees.
fn push_field_padded(out: &mut String, s: &str, width: usize) {
    let start = out.len();
    push_field(s, out);
    for _ in (out.len() - start)..width {
        out.push(' ');
    }
}

/// Appends `n` in decimal.
fn push_u64(out: &mut String, n: u64) {
    let mut buf = itoa::Buffer::new();
    out.push_str(buf.format(n));
}

/// Appends an address left-aligned in a column of `width`; IPv4 without `fmt` machinery.
fn push_addr_padded(out: &mut String, addr: IpAddr, width: usize) {
    let start = out.len();
    match addr {
        IpAddr::V4(a) => {
            let mut buf = itoa::Buffer::new();
            for (i, octet) in a.octets().into_iter().enumerate() {
                if i > 0 {
                    out.push('.');
                }
                out.push_str(buf.format(octet));
            }
        }
        IpAddr::V6(a) => {
            let _ = write!(out, "{a}");
        }
    }
    for _ in (out.len() - start)..width {
        out.push(' ');
    }
}

/// The `P` line, e.g. `ipclog started`. The message may quote foreign text (an error naming a
/// file or an interface), so its control characters are escaped.
pub fn program_line(ts: DateTime<Utc>, message: &str) -> String {
    let mut s = String::with_capacity(64);
    s.push_str("P ");
    format_ts(ts, &mut s);
    s.push(' ');
    push_escaped(message, &mut s);
    s
}

/// The `H` line naming the O/S/C columns.
pub fn header_line(ts: DateTime<Utc>) -> String {
    let mut s = String::with_capacity(80);
    s.push_str("H ");
    format_ts(ts, &mut s);
    let _ = write!(
        s,
        " {:<4} {:<15} {:<15} {:<5} {:<5} {:<2} {:>5}",
        "prot", "src", "dst", "sport", "dport", "fl", "time"
    );
    s
}

/// The `I` line for one local address: `I <ts> UP eth0 192.168.0.1` (or `DOWN`).
pub fn interface_line(ts: DateTime<Utc>, up: bool, ifname: &str, addr: IpAddr) -> String {
    let mut s = String::with_capacity(64);
    s.push_str("I ");
    format_ts(ts, &mut s);
    s.push_str(if up { " UP " } else { " DOWN " });
    push_field(ifname, &mut s);
    let _ = write!(s, " {addr}");
    s
}

fn port_or_dash(p: Option<u16>, out: &mut String, width: usize) {
    match p {
        Some(p) => {
            let mut buf = itoa::Buffer::new();
            push_padded(out, buf.format(p), width);
        }
        None => push_padded(out, "-", width),
    }
}

fn write_addr_port(out: &mut String, addr: IpAddr, port: Option<u16>) {
    match (addr, port) {
        (IpAddr::V4(a), Some(p)) => {
            let _ = write!(out, "{a}:{p}");
        }
        (IpAddr::V6(a), Some(p)) => {
            let _ = write!(out, "[{a}]:{p}");
        }
        (a, None) => {
            let _ = write!(out, "{a}");
        }
    }
}

/// Appends one O/S/C line for `ev` (without the newline) to `out`.
///
/// The time column is the event's duration in whole seconds, `-` when it has none (an open).
pub fn write_event(ev: &ConnEvent, opts: WriteOptions, out: &mut String) {
    out.push(ev.kind.letter());
    out.push(' ');
    format_ts(ev.ts, out);
    out.push(' ');
    match proto_name(ev.proto) {
        Some(n) => push_padded(out, n, 4),
        None => {
            let mut buf = itoa::Buffer::new();
            push_padded(out, buf.format(ev.proto), 4);
        }
    }
    out.push(' ');
    match &ev.src_iface {
        Some(i) => push_field_padded(out, i, 15),
        None => push_addr_padded(out, ev.shown_src(), 15),
    }
    out.push(' ');
    match &ev.dst_iface {
        Some(i) => push_field_padded(out, i, 15),
        None => push_addr_padded(out, ev.shown_dst(), 15),
    }
    out.push(' ');
    port_or_dash(ev.orig.sport, out, 5);
    out.push(' ');
    port_or_dash(ev.shown_dport(), out, 5);
    out.push(' ');
    out.push(ev.state.flag());
    out.push_str("  ");
    let mut buf = itoa::Buffer::new();
    let time = match ev.duration {
        Some(d) => buf.format(d.max(0.0).round() as u64),
        None => "-",
    };
    for _ in time.len()..5 {
        out.push(' ');
    }
    out.push_str(time);
    write_extras(ev, opts, out);
}

/// Appends ` key=value`.
fn push_kv(out: &mut String, key: &str, value: u64) {
    out.push(' ');
    out.push_str(key);
    out.push('=');
    push_u64(out, value);
}

fn write_extras(ev: &ConnEvent, opts: WriteOptions, out: &mut String) {
    if ev.found_at_start {
        out.push_str(" found=start");
    }
    if let Some(c) = &ev.counters {
        push_kv(out, "orig_pkts", c.orig_pkts);
        push_kv(out, "orig_ip_bytes", c.orig_ip_bytes);
        push_kv(out, "resp_pkts", c.resp_pkts);
        push_kv(out, "resp_ip_bytes", c.resp_ip_bytes);
        if let Some(b) = c.orig_bytes {
            push_kv(out, "orig_bytes", b);
        }
        if let Some(b) = c.resp_bytes {
            push_kv(out, "resp_bytes", b);
        }
    }
    if let Some(s) = ev.zeek_state {
        out.push_str(" conn_state=");
        out.push_str(s.as_str());
    }
    if let Some(h) = &ev.history {
        if !h.is_empty() {
            out.push_str(" history=");
            push_field(h, out);
        }
    }
    if let Some(u) = &ev.uid {
        out.push_str(" uid=");
        push_field(u, out);
    }
    if !ev.anomalies.is_empty() {
        for (k, v) in ev.anomalies.entries() {
            if v != 0 {
                push_kv(out, k, v.into());
            }
        }
    }
    if let Some(m) = ev.mark {
        push_kv(out, "mark", m.into());
    }
    if let Some(z) = ev.zone {
        push_kv(out, "zone", z.into());
    }
    if let Some(t) = ev.kernel_start {
        out.push_str(" kstart=");
        write_epoch(t, out);
    }
    if let Some(t) = ev.kernel_stop {
        out.push_str(" kstop=");
        write_epoch(t, out);
    }
    if opts.show_nat {
        if let Some((a, p)) = ev.nat_src() {
            out.push_str(" nat_src=");
            write_addr_port(out, a, p);
        }
        if let Some((a, p)) = ev.nat_orig_dst() {
            out.push_str(" orig_dst=");
            write_addr_port(out, a, p);
        }
    }
}

/// Epoch seconds with nanoseconds, e.g. `1700000000.123456789`.
pub fn write_epoch(t: DateTime<Utc>, out: &mut String) {
    let _ = write!(out, "{}.{:09}", t.timestamp(), t.timestamp_subsec_nanos());
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

fn err(field: &'static str, reason: impl Into<String>) -> ParseError {
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

/// A malformed line: where and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineError {
    pub line_no: u64,
    pub error: ParseError,
}

impl std::fmt::Display for LineError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "line {}: {}", self.line_no, self.error)
    }
}

/// Streams a log line by line with one reused buffer, so memory does not grow with the file.
/// Non-UTF-8 lines are reported as errors, never guessed at.
///
/// A last line without its newline is one incomplete line: a writer cut off, or one still
/// writing it (a running ipclog appends while constat reads). It is reported once, as an error,
/// and the reader ends there: reading on would take the rest the writer appends meanwhile for a
/// line of its own.
pub struct LogReader<R> {
    inner: R,
    buf: Vec<u8>,
    line_no: u64,
    max_line: usize,
    /// An incomplete last line was returned: nothing after it is read.
    ended: bool,
}

/// The longest line [`LogReader`] accepts by default. ipclog's lines are about a hundred bytes;
/// a "line" of a megabyte means the input is something else, and reading on would hold all of
/// it in memory.
pub const MAX_LINE: usize = 1 << 20;

impl<R: BufRead> LogReader<R> {
    pub fn new(inner: R) -> Self {
        LogReader {
            inner,
            buf: Vec::with_capacity(256),
            line_no: 0,
            max_line: MAX_LINE,
            ended: false,
        }
    }

    /// Sets the longest accepted line (bytes, without the newline).
    pub fn with_max_line(mut self, max_line: usize) -> Self {
        self.max_line = max_line;
        self
    }

    /// Reads up to and including the next newline into `buf`; fails with `InvalidData` once
    /// the line outgrows `max_line`, so input without newlines cannot grow memory unbounded.
    fn read_line_capped(&mut self) -> io::Result<usize> {
        let mut total = 0;
        loop {
            let (done, used) = {
                let avail = match self.inner.fill_buf() {
                    Ok(a) => a,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => return Err(e),
                };
                if avail.is_empty() {
                    return Ok(total);
                }
                match avail.iter().position(|&b| b == b'\n') {
                    Some(i) => {
                        self.buf.extend_from_slice(&avail[..=i]);
                        (true, i + 1)
                    }
                    None => {
                        self.buf.extend_from_slice(avail);
                        (false, avail.len())
                    }
                }
            };
            self.inner.consume(used);
            total += used;
            if self.buf.len() > self.max_line + 1 {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!(
                        "line {} is longer than {} bytes: this is not an ipclog log",
                        self.line_no + 1,
                        self.max_line
                    ),
                ));
            }
            if done {
                return Ok(total);
            }
        }
    }

    /// The next line, parsed; `Ok(None)` at end of input; `Err` only for I/O errors.
    #[allow(clippy::type_complexity)]
    pub fn next_line(&mut self) -> io::Result<Option<(u64, Result<LogLine<'_>, ParseError>)>> {
        self.buf.clear();
        if self.ended {
            return Ok(None);
        }
        let n = self.read_line_capped()?;
        if n == 0 {
            return Ok(None);
        }
        self.line_no += 1;
        let complete = self.buf.last() == Some(&b'\n');
        if complete {
            self.buf.pop();
        } else {
            self.ended = true;
        }
        let parsed = match std::str::from_utf8(&self.buf) {
            // Checked first: a writer may stop in the middle of a UTF-8 sequence.
            _ if !complete => Err(err(
                "line",
                "incomplete last line (no newline: cut off, or still being written)",
            )),
            Err(e) => Err(err(
                "line",
                format!("not UTF-8 text (byte {})", e.valid_up_to() + 1),
            )),
            Ok(s) => parse_line(s),
        };
        Ok(Some((self.line_no, parsed)))
    }

    pub fn line_no(&self) -> u64 {
        self.line_no
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::*;

    fn ts(s: &str) -> DateTime<Utc> {
        Local
            .from_local_datetime(&parse_ts(s).unwrap())
            .single()
            .unwrap()
            .with_timezone(&Utc)
    }

    fn ev(kind: EventKind, t: &str, proto: u8, orig: FlowTuple) -> ConnEvent {
        ConnEvent::new(kind, ts(t), Source::Conntrack, 1, proto, orig)
    }

    #[test]
    fn seed_line_is_byte_exact() {
        let mut e = ev(
            EventKind::Open,
            "2004-08-05-16:41:37",
            17,
            FlowTuple::new(
                "217.235.218.69".parse().unwrap(),
                "217.237.151.97".parse().unwrap(),
                Some(32799),
                Some(53),
            ),
        );
        e.src_iface = Some("ppp0".into());
        e.state = ConnState::Replied;
        let mut s = String::new();
        write_event(&e, WriteOptions::default(), &mut s);
        assert_eq!(
            s,
            "O 2004-08-05-16:41:37 udp  ppp0            217.237.151.97  32799 53    -      -"
        );
        assert_eq!(
            header_line(ts("2004-08-05-16:41:22")),
            "H 2004-08-05-16:41:22 prot src             dst             sport dport fl  time"
        );
    }

    #[test]
    fn round_trip_with_ipv6_and_extras() {
        let mut e = ev(
            EventKind::Close,
            "2026-01-02-03:04:05",
            6,
            FlowTuple::new(
                "2001:db8::1".parse().unwrap(),
                "2001:db8::2".parse().unwrap(),
                Some(40000),
                Some(443),
            ),
        );
        e.state = ConnState::Tcp(TcpState::TimeWait);
        e.duration = Some(12.4);
        e.counters = Some(Counters {
            orig_pkts: 10,
            orig_ip_bytes: 900,
            resp_pkts: 8,
            resp_ip_bytes: 5000,
            orig_bytes: Some(100),
            resp_bytes: None,
        });
        e.anomalies.retransmits = 2;
        e.zeek_state = Some(ZeekState::Sf);
        e.history = Some("ShADadFf".into());
        e.kernel_start = Some(Utc.timestamp_opt(1_700_000_000, 5).unwrap());
        let mut s = String::new();
        write_event(&e, WriteOptions::default(), &mut s);
        let LogLine::Conn(c) = parse_line(&s).unwrap() else {
            panic!("not a conn line: {s}")
        };
        assert_eq!(c.kind, EventKind::Close);
        assert_eq!(c.src, "2001:db8::1");
        assert_eq!(c.dst, "2001:db8::2");
        assert_eq!((c.sport, c.dport), (Some(40000), Some(443)));
        assert_eq!(c.flag, 't');
        assert_eq!(c.time, Some(12));
        assert_eq!(c.extra("orig_ip_bytes"), Some("900"));
        assert_eq!(c.extra("orig_bytes"), Some("100"));
        assert_eq!(c.extra("resp_bytes"), None);
        assert_eq!(c.extra("retrans"), Some("2"));
        assert_eq!(c.extra("history"), Some("ShADadFf"));
        assert_eq!(
            parse_epoch(c.extra("kstart").unwrap()),
            e.kernel_start,
            "{s}"
        );
    }

    #[test]
    fn malformed_lines_name_the_field() {
        let cases = [
            ("", "line"),
            ("O", "timestamp"),
            ("O 2004-13-45-00:00:00 tcp a b 1 2 e -", "timestamp"),
            ("O 2004-08-05-16:41:37 xyz a b 1 2 e -", "prot"),
            ("O 2004-08-05-16:41:37 tcp a b 99999 2 e -", "sport"),
            ("O 2004-08-05-16:41:37 tcp a b 1 2 Z -", "fl"),
            ("O 2004-08-05-16:41:37 tcp a b 1 2 e", "time"),
            ("O 2004-08-05-16:41:37 tcp a b 1 2 e x", "time"),
            ("O 2004-08-05-16:41:37 tcp a b 1 2 e - junk", "extras"),
            ("X 2004-08-05-16:41:37 tcp", "type"),
            ("I 2004-08-05-16:41:37 SIDEWAYS lo 1.2.3.4", "state"),
        ];
        for (line, field) in cases {
            let e = parse_line(line).unwrap_err();
            assert_eq!(e.field, field, "{line:?}: {e}");
        }
    }

    #[test]
    fn reader_reports_truncation_and_binary() {
        let data = b"P 2004-08-05-16:41:22 ipclog started\n\xff\xfe\nO 2004-08-05";
        let mut r = LogReader::new(&data[..]);
        assert!(matches!(
            r.next_line().unwrap(),
            Some((1, Ok(LogLine::Program { .. })))
        ));
        let (n, res) = r.next_line().unwrap().unwrap();
        assert_eq!(n, 2);
        assert!(res.unwrap_err().reason.contains("UTF-8"));
        let (n, res) = r.next_line().unwrap().unwrap();
        assert_eq!(n, 3);
        assert!(res.unwrap_err().reason.contains("incomplete last line"));
        assert!(r.next_line().unwrap().is_none());
    }

    /// A log that grows while it is read: the first reads end in the middle of a line (EOF),
    /// the writer then appends the line's rest.
    struct Growing(Vec<&'static [u8]>);

    impl std::io::Read for Growing {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            if self.0.is_empty() {
                return Ok(0);
            }
            let chunk = self.0.remove(0);
            buf[..chunk.len()].copy_from_slice(chunk);
            Ok(chunk.len())
        }
    }

    #[test]
    fn an_incomplete_last_line_is_one_error_and_its_tail_is_never_read() {
        let log = Growing(vec![
            b"P 2004-08-05-16:41:22 ipclog started\nO 2004-08-05-16:4",
            b"",
            b"1:37 udp  ppp0            217.237.151.97  32799 53    -      -\n",
        ]);
        let mut r = LogReader::new(std::io::BufReader::new(log));
        assert!(matches!(
            r.next_line().unwrap(),
            Some((1, Ok(LogLine::Program { .. })))
        ));
        let (n, res) = r.next_line().unwrap().unwrap();
        assert_eq!(n, 2);
        assert_eq!(
            res.unwrap_err().to_string(),
            "line: incomplete last line (no newline: cut off, or still being written)"
        );
        assert!(
            r.next_line().unwrap().is_none(),
            "the rest of the line was read as a line of its own"
        );
        assert!(r.next_line().unwrap().is_none());
        // Cut inside a UTF-8 sequence: still the incomplete line, not a bad encoding.
        let mut r = LogReader::new(&b"I 2004-08-05-16:41:22 UP \xc3"[..]);
        let (_, res) = r.next_line().unwrap().unwrap();
        assert!(res.unwrap_err().reason.starts_with("incomplete"));
    }

    #[test]
    fn foreign_interface_names_are_escaped_and_keep_the_columns() {
        let mut e = ev(
            EventKind::Close,
            "2004-08-05-16:41:37",
            6,
            FlowTuple::new(
                "10.0.0.1".parse().unwrap(),
                "10.0.0.2".parse().unwrap(),
                Some(1000),
                Some(22),
            ),
        );
        let evil = "\u{1b}]0;PWN\u{7}\u{1b}[7m";
        e.src_iface = Some(evil.into());
        e.dst_iface = Some("my if\u{202e}".into());
        e.duration = Some(3.0);
        e.history = Some("Sh\u{1b}".into());
        let mut s = String::new();
        write_event(&e, WriteOptions::default(), &mut s);
        assert!(
            !s.contains(|c: char| c.is_control() || c == '\u{202e}'),
            "raw control in {s:?}"
        );
        assert!(s.contains(" \\x1b]0;PWN\\x07\\x1b[7m "), "{s}");
        let LogLine::Conn(c) = parse_line(&s).unwrap() else {
            panic!("not a conn line: {s}")
        };
        assert_eq!(crate::text::unescape_field(c.src), evil);
        assert_eq!(c.dst, "my\\x20if\\u202e");
        assert_eq!(crate::text::unescape_field(c.dst), "my if\u{202e}");
        assert_eq!((c.sport, c.dport, c.time), (Some(1000), Some(22), Some(3)));
        assert_eq!(c.extra("history"), Some("Sh\\x1b"));

        let i = interface_line(e.ts, true, evil, "10.0.0.1".parse().unwrap());
        assert!(i.ends_with(" UP \\x1b]0;PWN\\x07\\x1b[7m 10.0.0.1"), "{i}");
        let LogLine::Interface { ifname, addr, .. } = parse_line(&i).unwrap() else {
            panic!("{i}")
        };
        assert_eq!(
            (crate::text::unescape_field(ifname).as_ref(), addr),
            (evil, "10.0.0.1")
        );
        let p = program_line(e.ts, "error: eth\u{1b}[2J: gone");
        assert!(p.ends_with(" error: eth\\x1b[2J: gone"), "{p}");
    }

    #[test]
    fn times_beyond_the_integer_range_are_bad_lines() {
        let ok = format!("C 2004-08-05-16:41:37 tcp a b 1 2 t {MAX_VALUE}");
        assert!(parse_line(&ok).is_ok());
        let e = parse_line("C 2004-08-05-16:41:37 tcp a b 1 2 t 18446744073709551615").unwrap_err();
        assert_eq!(e.field, "time");
        assert!(e.reason.contains("out of range"), "{e}");
    }

    #[test]
    fn reader_stops_runaway_lines_only() {
        let ok = b"P 2004-08-05-16:41:22 x\n".repeat(1000);
        let mut r = LogReader::new(std::io::BufReader::with_capacity(7, &ok[..])).with_max_line(30);
        let mut n = 0;
        while let Some((_, res)) = r.next_line().unwrap() {
            assert!(res.is_ok());
            n += 1;
        }
        assert_eq!(n, 1000);
        let long = vec![b'A'; 1000];
        let mut r =
            LogReader::new(std::io::BufReader::with_capacity(64, &long[..])).with_max_line(100);
        let e = r.next_line().unwrap_err();
        assert!(e.to_string().contains("longer than 100 bytes"), "{e}");
        assert!(r.buf.len() <= 100 + 64 + 1, "{}", r.buf.len());
    }

    #[test]
    fn epoch_round_trip() {
        let t = Utc.timestamp_opt(1_234_567_890, 123_456_789).unwrap();
        let mut s = String::new();
        write_epoch(t, &mut s);
        assert_eq!(parse_epoch(&s), Some(t));
        assert_eq!(
            parse_epoch("12.5"),
            Utc.timestamp_opt(12, 500_000_000).single()
        );
        assert_eq!(parse_epoch("x"), None);
    }
}
