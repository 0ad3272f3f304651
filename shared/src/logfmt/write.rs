//! Writing lines: P (program), H (header), I (interface) and the O/S/C connection lines.

use std::fmt::Write as _;
use std::net::IpAddr;

use chrono::{DateTime, Local, Utc};

use super::{WriteOptions, TIME_FORMAT};
use crate::event::{ConnEvent, EventKind};
use crate::net::push_addr;
use crate::proto::proto_name;
use crate::record::{LogRule, Value, LOG_EXTRAS};
use crate::text::{push_escaped, push_field};

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

/// Pads what was appended to `out` since `start` to a column of `width` (wider values widen
/// the column). The width counts the text as written (escaped), which is what a reader sees.
fn pad_from(out: &mut String, start: usize, width: usize) {
    for _ in (out.len() - start)..width {
        out.push(' ');
    }
}

/// Appends `n` in decimal.
fn push_u64(out: &mut String, n: u64) {
    let mut buf = itoa::Buffer::new();
    out.push_str(buf.format(n));
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

fn port_or_dash(p: Option<u16>, out: &mut String) {
    let start = out.len();
    match p {
        Some(p) => push_u64(out, p.into()),
        None => out.push('-'),
    }
    pad_from(out, start, 5);
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

/// What an O/S/C line shows, whoever holds it: an event about to be written ([`ConnEvent`]) or
/// a line just read ([`super::ConnLine`]). [`write_line`] writes either, so a line read and
/// written again is the same line.
pub trait LineView {
    fn kind(&self) -> EventKind;
    /// Appends the local time, `YYYY-MM-DD-HH:MM:SS`.
    fn push_time(&self, out: &mut String);
    fn proto(&self) -> u8;
    /// Appends the source column: an address, or a local interface name as an escaped field.
    fn push_src(&self, out: &mut String);
    /// Appends the destination column, as the source's.
    fn push_dst(&self, out: &mut String);
    fn sport(&self) -> Option<u16>;
    fn dport(&self) -> Option<u16>;
    /// The state flag (`e`, `t`, `c`, `w`, `s`, `U`, `-`).
    fn flag(&self) -> char;
    /// The time column: whole seconds the connection was open, if known.
    fn seconds(&self) -> Option<u64>;
    /// Appends the `key=value` extras, each after a space.
    fn push_extras(&self, opts: WriteOptions, out: &mut String);
}

/// Appends one O/S/C line (without the newline) to `out`.
pub fn write_line(line: &impl LineView, opts: WriteOptions, out: &mut String) {
    out.push(line.kind().letter());
    out.push(' ');
    line.push_time(out);
    out.push(' ');
    let start = out.len();
    match proto_name(line.proto()) {
        Some(n) => out.push_str(n),
        None => push_u64(out, line.proto().into()),
    }
    pad_from(out, start, 4);
    out.push(' ');
    let start = out.len();
    line.push_src(out);
    pad_from(out, start, 15);
    out.push(' ');
    let start = out.len();
    line.push_dst(out);
    pad_from(out, start, 15);
    out.push(' ');
    port_or_dash(line.sport(), out);
    out.push(' ');
    port_or_dash(line.dport(), out);
    out.push(' ');
    out.push(line.flag());
    out.push_str("  ");
    let mut buf = itoa::Buffer::new();
    let time = match line.seconds() {
        Some(s) => buf.format(s),
        None => "-",
    };
    for _ in time.len()..5 {
        out.push(' ');
    }
    out.push_str(time);
    line.push_extras(opts, out);
}

/// Appends one O/S/C line for `ev` (without the newline) to `out`.
///
/// The time column is the event's duration in whole seconds, `-` when it has none (an open).
pub fn write_event(ev: &ConnEvent, opts: WriteOptions, out: &mut String) {
    write_line(ev, opts, out);
}

/// Appends a local interface name, or else an address.
fn push_host(out: &mut String, iface: Option<&str>, addr: IpAddr) {
    match iface {
        Some(i) => push_field(i, out),
        None => push_addr(out, addr),
    }
}

impl LineView for ConnEvent {
    fn kind(&self) -> EventKind {
        self.kind
    }

    fn push_time(&self, out: &mut String) {
        format_ts(self.ts, out);
    }

    fn proto(&self) -> u8 {
        self.proto
    }

    fn push_src(&self, out: &mut String) {
        push_host(out, self.src_iface.as_deref(), self.shown_src());
    }

    fn push_dst(&self, out: &mut String) {
        push_host(out, self.dst_iface.as_deref(), self.shown_dst());
    }

    fn sport(&self) -> Option<u16> {
        self.orig.sport
    }

    fn dport(&self) -> Option<u16> {
        self.shown_dport()
    }

    fn flag(&self) -> char {
        self.state.flag()
    }

    fn seconds(&self) -> Option<u64> {
        self.duration.map(|d| d.max(0.0).round() as u64)
    }

    /// The record's fields that have a log key ([`LOG_EXTRAS`]), in their order.
    fn push_extras(&self, opts: WriteOptions, out: &mut String) {
        // One call per extra with its index a constant, rather than a loop: each getter is then
        // a known function, inlined, and an absent field costs a test of the event (as
        // hand-written code would), not a call through a pointer. BENCHMARKS.md has the
        // figures.
        macro_rules! each {
            ($($i:literal)*) => { $( push_extra::<$i>(self, opts, out); )* };
        }
        const _: () = assert!(
            LOG_EXTRAS.len() <= 32,
            "push_extras writes 32 extras at most"
        );
        each!(0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 21 22 23 24 25 26 27 28 29 30 31);
    }
}

/// Appends the `I`-th extra of [`LOG_EXTRAS`] if the event has it.
#[inline(always)]
fn push_extra<const I: usize>(ev: &ConnEvent, opts: WriteOptions, out: &mut String) {
    let Some(extra) = LOG_EXTRAS.get(I) else {
        return;
    };
    if extra.rule == LogRule::WithNat && !opts.show_nat {
        return;
    }
    let value = (extra.get)(ev);
    if value.is_empty() || (extra.rule == LogRule::NonEmpty && value == Value::Text("")) {
        return;
    }
    out.push(' ');
    out.push_str(extra.key);
    out.push('=');
    match extra.rule {
        LogRule::Word(w) => out.push_str(w),
        _ => push_value(value, out),
    }
}

/// Appends a value as the log writes it.
#[inline(always)]
fn push_value(v: Value<'_>, out: &mut String) {
    match v {
        Value::Absent | Value::Null => {}
        Value::Count(n) | Value::Tally(n) => push_u64(out, n),
        Value::Secs(s) => {
            let _ = write!(out, "{s}");
        }
        Value::Time(t) => write_epoch(t, out),
        Value::Flag(b) => out.push(if b { '1' } else { '0' }),
        Value::Word(w) => out.push_str(w),
        Value::Text(t) | Value::List(t) => push_field(t, out),
        Value::Pair(a, b) => {
            push_u64(out, a.into());
            out.push('/');
            push_u64(out, b.into());
        }
        Value::Char(c) => out.push(c),
        Value::Addr(a) => push_addr(out, a),
        Value::AddrPort(a, p) => write_addr_port(out, a, p),
        Value::Proto(p) => match proto_name(p) {
            Some(n) => out.push_str(n),
            None => push_u64(out, p.into()),
        },
    }
}

/// Epoch seconds with nanoseconds, e.g. `1700000000.123456789`.
pub fn write_epoch(t: DateTime<Utc>, out: &mut String) {
    let _ = write!(out, "{}.{:09}", t.timestamp(), t.timestamp_subsec_nanos());
}
