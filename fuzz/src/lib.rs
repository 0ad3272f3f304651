//! Fuzz targets for the three parsers that read foreign input: the capture path (link, IP and
//! transport headers, fragment reassembly and the flow tracker, fed whole frames), the line log
//! reader (`parse_line`, `LogReader`) and the lookup and name cache files. Each target takes
//! arbitrary bytes, must not panic, and asserts what its parser promises (see each function).
//!
//! Two drivers run them: libFuzzer (coverage-guided, `fuzz/libfuzzer`, long runs with
//! `fuzz/run.sh`) and a bounded seeded mutation run under `cargo test` (`tests/bounded.rs`).
//! FUZZING.md has how to run them and what they found.

pub mod frames;
pub mod mutate;
pub mod seeds;

use std::collections::HashSet;
use std::io::BufReader;
use std::net::IpAddr;
use std::path::Path;

use ipclog_capture::CaptureSummary;
use lookup::{Lookup, NameCache};
use shared::event::{ConnEvent, EventKind};
use shared::logfmt::{
    parse_line, write_event, LogLine, LogReader, ParseError, WriteOptions, MAX_LINE, TIME_FORMAT,
};
use shared::proto::{proto_from_name, proto_name};
use shared::sink::VecSink;

/// A target: bytes in, a panic when something is wrong.
pub type Target = fn(&[u8]);

/// The targets by name (the names of the libFuzzer targets and of `fuzz/regressions/*`).
pub const TARGETS: [(&str, Target); 3] = [
    ("capture", capture),
    ("logline", logline),
    ("lookup", lookup),
];

/// Frames of one link type (see `frames` for the input format) through the whole packet path:
/// `ipclog_capture::run_frames` parses, reassembles and tracks them as a file read does.
/// Checks that every packet is accounted for (read = in connections + fragments merged +
/// dropped), every connection opened is closed exactly once with counters that add up, and
/// every event ipclog would log is a line its own log parser reads back with the same fields.
pub fn capture(data: &[u8]) {
    let Some(input) = frames::decode(data) else {
        return;
    };
    let mut sink = VecSink::default();
    let sum = ipclog_capture::run_frames(
        input.linktype,
        &input.args,
        input.frames.iter().copied(),
        &mut sink,
    )
    .expect("every link type in frames::LINKTYPES is supported");
    assert_eq!(sum.packets, input.frames.len() as u64, "packets read");
    check_accounting(&sink.events, &sum);
    let mut line = String::new();
    for e in &sink.events {
        line.clear();
        write_event(e, WriteOptions { show_nat: true }, &mut line);
        check_event_line(e, &line);
    }
}

/// The accounting every capture run promises ([`CaptureSummary::check_accounting`]).
pub fn check_accounting(events: &[ConnEvent], sum: &CaptureSummary) {
    if let Err(e) = sum.check_accounting(events) {
        panic!("{e}");
    }
}

/// `line`, written for `e`, parses back to `e`'s fields.
fn check_event_line(e: &ConnEvent, line: &str) {
    let c = match parse_line(line) {
        Ok(LogLine::Conn(c)) => c,
        other => panic!("ipclog wrote a line its parser does not read back: {line:?}: {other:?}"),
    };
    assert_eq!(c.kind, e.kind, "{line}");
    assert_eq!(c.proto, e.proto, "{line}");
    assert_eq!(c.src, e.shown_src().to_string(), "{line}");
    assert_eq!(c.dst, e.shown_dst().to_string(), "{line}");
    assert_eq!(c.sport, e.orig.sport, "{line}");
    assert_eq!(c.dport, e.shown_dport(), "{line}");
    assert_eq!(c.flag, e.state.flag(), "{line}");
    assert_eq!(
        c.time,
        e.duration.map(|d| d.max(0.0).round() as u64),
        "{line}"
    );
    // The extras, which the logline target fuzzes on their own, are checked on closes only:
    // checking every event would cost more than tracking the packets.
    if e.kind == EventKind::Close {
        assert_eq!(c.extra("uid"), e.uid.as_deref(), "{line}");
        assert_eq!(
            c.extra("conn_state"),
            e.zeek_state.map(|z| z.as_str()),
            "{line}"
        );
        let k = e.counters.expect("counters on a close");
        assert_eq!(c.extra("orig_pkts"), Some(k.orig_pkts.to_string().as_str()));
        check_reparse(&LogLine::Conn(c));
    }
}

/// A parsed line, written back with single spaces, parses to the same thing: the parser keeps
/// nothing it did not understand and drops nothing it did.
pub fn check_reparse(l: &LogLine<'_>) {
    let ts = |t: &chrono::NaiveDateTime| t.format(TIME_FORMAT).to_string();
    let port = |p: Option<u16>| p.map_or("-".to_string(), |p| p.to_string());
    let s = match l {
        LogLine::Program { ts: t, message } => format!("P {} {message}", ts(t)),
        LogLine::Header { ts: t } => format!("H {}", ts(t)),
        LogLine::Interface {
            ts: t,
            up,
            ifname,
            addr,
        } => format!(
            "I {} {} {ifname} {addr}",
            ts(t),
            if *up { "UP" } else { "DOWN" }
        ),
        LogLine::Conn(c) => format!(
            "{} {} {} {} {} {} {} {} {} {}",
            c.kind.letter(),
            ts(&c.ts),
            proto_name(c.proto).map_or(c.proto.to_string(), str::to_string),
            c.src,
            c.dst,
            port(c.sport),
            port(c.dport),
            c.flag,
            c.time.map_or("-".to_string(), |t| t.to_string()),
            c.extras
        ),
        LogLine::Packet(p) => {
            let ap = |a: &str, p: Option<u16>| match p {
                Some(p) => format!("{a},{p}"),
                None => a.to_string(),
            };
            let mut s = format!(
                "F {} {} {} {} {} {} -> {} PR {} len {} {}",
                p.ts.format("%Y-%m-%d-%H:%M:%S%.9f"),
                p.in_iface.unwrap_or("-"),
                p.out_iface.unwrap_or("-"),
                if p.prefix.is_empty() { "-" } else { p.prefix },
                p.action.letter(),
                ap(p.src, p.sport),
                ap(p.dst, p.dport),
                proto_name(p.proto).map_or(p.proto.to_string(), str::to_string),
                p.hdr_len,
                p.total_len
            );
            if let Some(f) = p.tcp_flags {
                s.push(' ');
                shared::packet::push_tcp_flags(f, &mut s);
            }
            if let Some((t, c)) = p.icmp {
                s.push_str(&format!(" icmp {t}/{c}"));
            }
            if !p.extras.is_empty() {
                s.push(' ');
                s.push_str(p.extras);
            }
            s
        }
    };
    let again = parse_line(&s);
    assert_eq!(again.as_ref(), Ok(l), "{l:?} written as {s:?}");
    if let LogLine::Conn(c) = l {
        for (k, _) in c.extras() {
            assert!(!k.is_empty(), "empty key in {:?}", c.extras);
        }
    }
}

/// What `LogReader` made of one line, owned (the reader lends its lines).
type ReadLine = (u64, Result<String, ParseError>);

/// All lines of `data` through a `LogReader` reading `chunk` bytes at a time, with longest
/// line `max_line`; the I/O error that ended the read, if any.
fn read_all(data: &[u8], chunk: usize, max_line: usize) -> (Vec<ReadLine>, Option<String>) {
    let mut r = LogReader::new(BufReader::with_capacity(chunk, data)).with_max_line(max_line);
    let mut out = Vec::new();
    loop {
        match r.next_line() {
            Ok(None) => return (out, None),
            Ok(Some((n, parsed))) => {
                if let Ok(l) = &parsed {
                    check_reparse(l);
                }
                out.push((n, parsed.map(|l| format!("{l:?}"))));
            }
            Err(e) => return (out, Some(e.to_string())),
        }
    }
}

/// The log reader over the whole input, and `parse_line` on each line: neither panics; the
/// reader returns one result per line, numbered from 1, the same result `parse_line` gives
/// for that line (non-UTF-8 and a last line without its newline are errors); a line that
/// parses reads back the same when written again; a smaller line limit changes nothing
/// before the first longer line, which is an error, not a cut line.
pub fn logline(data: &[u8]) {
    if let Ok(s) = std::str::from_utf8(data) {
        if let Ok(l) = parse_line(s) {
            check_reparse(&l);
        }
    }
    let raw: Vec<&[u8]> = data.split_inclusive(|&b| b == b'\n').collect();
    // The reader's limit counts the newline too.
    let first_longer = |limit: usize| raw.iter().position(|l| l.len() > limit + 1);
    let (lines, end) = read_all(data, 7, MAX_LINE);
    match first_longer(MAX_LINE) {
        None => assert_eq!(end, None, "no line is too long"),
        Some(i) => assert!(end.is_some(), "line {} is longer than the limit", i + 1),
    }
    assert_eq!(
        lines.len(),
        first_longer(MAX_LINE).unwrap_or(raw.len()),
        "one result per line"
    );
    for (i, ((n, got), raw)) in lines.iter().zip(&raw).enumerate() {
        assert_eq!(*n, i as u64 + 1, "line numbers");
        let complete = raw.ends_with(b"\n");
        let body = if complete { &raw[..raw.len() - 1] } else { raw };
        match std::str::from_utf8(body) {
            Ok(s) if complete => {
                assert_eq!(*got, parse_line(s).map(|l| format!("{l:?}")), "line {n}")
            }
            _ => assert_eq!(got.as_ref().map_err(|e| e.field), Err("line"), "line {n}"),
        }
    }
    let limit = 40;
    let (short, end) = read_all(data, 64, limit);
    let cut = first_longer(limit);
    assert_eq!(
        end.is_some(),
        cut.is_some(),
        "a line over the limit is an error"
    );
    let same = cut.unwrap_or(raw.len()).min(lines.len());
    assert_eq!(
        short[..],
        lines[..same],
        "lines within the limit read the same"
    );
}

/// The same bytes as a lookup file and as a name cache file. Neither panics; warnings point at
/// lines that exist, in order, and print no control characters; every line without a warning
/// took effect: a host line names its address, a network line names its network address, a
/// service line names its service, a cache line answers for its address.
pub fn lookup(data: &[u8]) {
    let (l, warnings) = Lookup::parse_bytes(data, "fuzz.lookup");
    let text = String::from_utf8_lossy(data);
    let lines: Vec<&str> = text.lines().collect();
    check_warnings(&warnings, lines.len());
    let warned: HashSet<u64> = warnings.iter().map(|w| w.line).collect();
    for (i, raw) in lines.iter().enumerate() {
        if warned.contains(&(i as u64 + 1)) {
            continue;
        }
        let line = raw.split('#').next().unwrap_or("").trim();
        let f: Vec<&str> = line.split_ascii_whitespace().collect();
        let [what, name] = f[..] else {
            assert!(
                f.is_empty(),
                "line {}: {raw:?} taken without a warning",
                i + 1
            );
            continue;
        };
        if let Ok(a) = what.parse::<IpAddr>() {
            assert_eq!(l.host_name(a), Some(name), "line {}: {raw:?}", i + 1);
        } else if let Some((left, right)) = what.split_once('/') {
            if let Ok(a) = left.parse::<IpAddr>() {
                assert!(l.host_name(a).is_some(), "line {}: {raw:?}", i + 1);
            } else {
                let port: u16 = left.parse().expect("a service line without a warning");
                let proto = proto_from_name(right).expect("a known protocol");
                assert!(
                    l.own_service_name(port, proto).is_some(),
                    "line {}: {raw:?}",
                    i + 1
                );
            }
        } else {
            panic!("line {}: {raw:?} taken without a warning", i + 1);
        }
    }

    let (c, warnings) = NameCache::parse_bytes(Path::new("fuzz.names"), data);
    check_warnings(&warnings, lines.len());
    let warned: HashSet<u64> = warnings.iter().map(|w| w.line).collect();
    for (i, raw) in lines.iter().enumerate() {
        let line = raw.split('#').next().unwrap_or("").trim();
        if warned.contains(&(i as u64 + 1)) || line.is_empty() {
            continue;
        }
        let addr = line
            .split_ascii_whitespace()
            .next()
            .and_then(|a| a.parse::<IpAddr>().ok())
            .unwrap_or_else(|| panic!("cache line {}: {raw:?} taken without a warning", i + 1));
        assert!(c.get(addr).is_some(), "cache line {}: {raw:?}", i + 1);
    }
}

/// Whether `s` has none of the characters `shared::text::escaped` escapes (C0 and C1
/// controls, DEL, bidi controls), scanning bytes: the fuzzers run this on every warning.
fn prints_safely(s: &str) -> bool {
    let b = s.as_bytes();
    !b.iter().enumerate().any(|(i, &c)| {
        c < 0x20
            || c == 0x7f
            || (c == 0xc2 && b.get(i + 1).is_some_and(|&d| (0x80..=0x9f).contains(&d)))
            || (c == 0xe2
                && match (b.get(i + 1), b.get(i + 2)) {
                    (Some(0x80), Some(d)) => (0xaa..=0xae).contains(d),
                    (Some(0x81), Some(d)) => (0xa6..=0xa9).contains(d),
                    _ => false,
                })
    })
}

fn check_warnings(warnings: &[lookup::Warning], lines: usize) {
    for w in warnings {
        assert!(
            w.line >= 1 && w.line <= lines.max(1) as u64,
            "warning for line {} of {lines}: {w}",
            w.line
        );
        assert!(
            prints_safely(&w.reason),
            "a warning prints a control or bidi character: {:?}",
            w.reason
        );
    }
    assert!(
        warnings.windows(2).all(|p| p[0].line <= p[1].line),
        "warnings out of line order"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prints_safely_agrees_with_the_escaper() {
        for s in [
            "plain",
            "tab\there",
            "esc \u{1b}[31m",
            "del \u{7f}",
            "c1 \u{85}",
            "bidi \u{202e}x",
            "isolate \u{2066}",
            "nbsp \u{a0} and \u{2003} and \u{2028}",
            "\u{e9}t\u{e9}",
            "\u{2069}",
            "\u{2070}",
        ] {
            let escaper = matches!(shared::text::escaped(s), std::borrow::Cow::Borrowed(_));
            assert_eq!(prints_safely(s), escaper, "{s:?}");
        }
    }
}
