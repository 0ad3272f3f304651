//! The `F` line: one packet the packet filter logged (ipclog `--nflog`), in the spirit of
//! ipmon's lines.
//!
//! ```text
//! F 2026-11-30-05:50:12.123456 veth0 - drop-ssh b 10.9.0.1,40000 -> 10.9.0.2,22 PR tcp len 20 60 -S group=1
//! F 2026-11-30-05:50:13.000017 veth0 - icmp-err L 10.9.0.2 -> 10.9.0.1 PR icmp len 20 56 icmp 3/3 group=1 ct=related-reply related=udp:10.9.0.1,41000->10.9.0.2,9 related_uid=CT1a2b3c4d
//! ```
//!
//! Columns: letter, local time with microseconds, interface in, interface out (`-`: none),
//! the rule's prefix (`-`: none), the action letter (`b` blocked, `p` passed, `L` logged),
//! `src[,sport] -> dst[,dport]`, `PR proto`, `len HDR TOTAL`; then for TCP the flags (`-S`,
//! `-AS`, ipmon's letters and order: A R S F U P E C), for ICMP `icmp TYPE/CODE`, and
//! `key=value` tokens. A reader of O/S/C lines that does not know `F` skips it by its letter.

use std::fmt::Write as _;

use chrono::{DateTime, NaiveDateTime, Utc};

use super::parse::{err, parse_ts, ParseError};
use crate::packet::{parse_tcp_flags, push_addr_port, push_tcp_flags, Action, PacketEvent};
use crate::proto::{proto_from_name, proto_name};
use crate::text::{push_field, unescape_field};

/// Appends the `F` line (without its newline) for `p`.
pub fn write_packet(p: &PacketEvent, out: &mut String) {
    out.push_str("F ");
    super::format_ts(p.ts, out);
    let _ = write!(out, ".{:06}", p.ts.timestamp_subsec_micros());
    for text in [
        p.in_iface.as_deref(),
        p.out_iface.as_deref(),
        Some(&p.prefix),
    ] {
        out.push(' ');
        match text {
            Some(t) if !t.is_empty() => push_field(t, out),
            _ => out.push('-'),
        }
    }
    out.push(' ');
    out.push(p.action.letter());
    out.push(' ');
    push_addr_port(out, p.src, p.sport);
    out.push_str(" -> ");
    push_addr_port(out, p.dst, p.dport);
    out.push_str(" PR ");
    match proto_name(p.proto) {
        Some(n) => out.push_str(n),
        None => {
            let _ = write!(out, "{}", p.proto);
        }
    }
    let _ = write!(out, " len {} {}", p.hdr_len, p.total_len);
    if let Some(f) = p.tcp_flags {
        out.push(' ');
        push_tcp_flags(f, out);
    }
    if let Some((t, c)) = p.icmp {
        let _ = write!(out, " icmp {t}/{c}");
    }
    let _ = write!(out, " group={}", p.group);
    if let Some(m) = p.mark {
        let _ = write!(out, " mark={m}");
    }
    if let Some(c) = &p.conn {
        if let Some(st) = c.state {
            let _ = write!(out, " ct={st}");
        }
        if c.related() {
            out.push_str(" related=");
            c.push_tuple(out);
            if let Some(id) = c.id {
                let _ = write!(out, " related_uid=CT{id:08x}");
            }
        }
    }
}

/// A read `F` line, borrowed from the line's text.
#[derive(Debug, Clone, PartialEq)]
pub struct PacketLine<'a> {
    pub ts: NaiveDateTime,
    /// As written (escaped); `None` for `-`.
    pub in_iface: Option<&'a str>,
    pub out_iface: Option<&'a str>,
    /// As written (escaped); empty for `-`.
    pub prefix: &'a str,
    pub action: Action,
    pub src: &'a str,
    pub sport: Option<u16>,
    pub dst: &'a str,
    pub dport: Option<u16>,
    pub proto: u8,
    pub hdr_len: u16,
    pub total_len: u32,
    pub tcp_flags: Option<u8>,
    pub icmp: Option<(u8, u8)>,
    /// The `key=value` tokens, unparsed.
    pub extras: &'a str,
}

impl<'a> PacketLine<'a> {
    /// One extra's value.
    pub fn extra(&self, key: &str) -> Option<&'a str> {
        self.extras
            .split_ascii_whitespace()
            .filter_map(|t| t.split_once('='))
            .find(|(k, _)| *k == key)
            .map(|(_, v)| v)
    }

    /// The prefix as the rule gave it (unescaped).
    pub fn prefix_text(&self) -> std::borrow::Cow<'a, str> {
        unescape_field(self.prefix)
    }
}

fn addr_port<'a>(s: &'a str, field: &'static str) -> Result<(&'a str, Option<u16>), ParseError> {
    let (a, p) = match s.split_once(',') {
        Some((a, p)) => {
            let p = p
                .parse::<u16>()
                .map_err(|_| err(field, format!("not a port number: {p:?}")))?;
            (a, Some(p))
        }
        None => (s, None),
    };
    a.parse::<std::net::IpAddr>()
        .map_err(|_| err(field, format!("not an address: {a:?}")))?;
    Ok((a, p))
}

/// Parses the fields of an `F` line after its letter: `ts_str` is the time field, `rest` what
/// follows it.
pub(super) fn parse_packet<'a>(ts_str: &str, rest: &'a str) -> Result<PacketLine<'a>, ParseError> {
    let bad_ts = || {
        err(
            "timestamp",
            format!("not a YYYY-MM-DD-HH:MM:SS.ffffff time: {ts_str:?}"),
        )
    };
    let (secs, frac) = ts_str.split_once('.').ok_or_else(bad_ts)?;
    if frac.is_empty() || frac.len() > 9 || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad_ts());
    }
    let nanos = frac.parse::<u32>().map_err(|_| bad_ts())? * 10u32.pow(9 - frac.len() as u32);
    let ts = parse_ts(secs)
        .and_then(|t| chrono::Timelike::with_nanosecond(&t, nanos))
        .ok_or_else(bad_ts)?;
    let mut f = rest.split_ascii_whitespace();
    let mut next = |field: &'static str| {
        f.next()
            .ok_or_else(|| err(field, format!("missing {field} column")))
    };
    let dash = |s: &'a str| (s != "-").then_some(s);
    let in_iface = dash(next("in")?);
    let out_iface = dash(next("out")?);
    let prefix = dash(next("prefix")?).unwrap_or("");
    let act = next("action")?;
    let action = match act.len() {
        1 => Action::from_letter(act.chars().next().unwrap_or(' ')),
        _ => None,
    }
    .ok_or_else(|| err("action", format!("not b, p or L: {act:?}")))?;
    let (src, sport) = addr_port(next("src")?, "src")?;
    if next("->")? != "->" {
        return Err(err("->", "missing -> between source and destination"));
    }
    let (dst, dport) = addr_port(next("dst")?, "dst")?;
    if next("PR")? != "PR" {
        return Err(err("PR", "missing PR before the protocol"));
    }
    let prot = next("proto")?;
    let proto =
        proto_from_name(prot).ok_or_else(|| err("proto", format!("unknown protocol {prot:?}")))?;
    if next("len")? != "len" {
        return Err(err("len", "missing len before the lengths"));
    }
    let h = next("hdr")?;
    let hdr_len = h
        .parse()
        .map_err(|_| err("hdr", format!("not a header length: {h:?}")))?;
    let t = next("total")?;
    let total_len = t
        .parse()
        .map_err(|_| err("total", format!("not a length: {t:?}")))?;
    let mut tcp_flags = None;
    let mut icmp = None;
    let mut extras_start = None;
    while let Some(tok) = f.next() {
        if tok.starts_with('-') && tcp_flags.is_none() && icmp.is_none() {
            tcp_flags = Some(
                parse_tcp_flags(tok)
                    .ok_or_else(|| err("flags", format!("not TCP flags: {tok:?}")))?,
            );
        } else if tok == "icmp" && icmp.is_none() {
            let tc = f
                .next()
                .ok_or_else(|| err("icmp", "missing TYPE/CODE after icmp"))?;
            icmp = Some(
                tc.split_once('/')
                    .and_then(|(t, c)| Some((t.parse().ok()?, c.parse().ok()?)))
                    .ok_or_else(|| err("icmp", format!("not TYPE/CODE: {tc:?}")))?,
            );
        } else {
            extras_start = Some(tok);
            break;
        }
    }
    let extras = match extras_start {
        Some(tok) => {
            let start = tok.as_ptr() as usize - rest.as_ptr() as usize;
            rest[start..].trim()
        }
        None => "",
    };
    if let Some(bad) = extras.split_ascii_whitespace().find(|t| {
        t.split_once('=').is_none_or(|(k, _)| {
            k.is_empty() || !k.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
        })
    }) {
        return Err(err("extras", format!("not a key=value token: {bad:?}")));
    }
    Ok(PacketLine {
        ts,
        in_iface,
        out_iface,
        prefix,
        action,
        src,
        sport,
        dst,
        dport,
        proto,
        hdr_len,
        total_len,
        tcp_flags,
        icmp,
        extras,
    })
}

/// The UTC time of a read line's local time (for tests and readers that need it).
pub fn packet_time_utc(l: &PacketLine<'_>) -> Option<DateTime<Utc>> {
    use chrono::TimeZone;
    chrono::Local
        .from_local_datetime(&l.ts)
        .earliest()
        .map(|t| t.with_timezone(&Utc))
}

#[cfg(test)]
mod tests {
    use super::super::{parse_line, LogLine};
    use super::*;
    use crate::packet::PacketConn;

    fn packet() -> PacketEvent {
        PacketEvent {
            ts: DateTime::from_timestamp(1_700_000_000, 123_456_789).unwrap(),
            group: 3,
            prefix: "drop ssh\u{1b}".into(),
            action: Action::Block,
            in_iface: Some("veth0".into()),
            out_iface: None,
            proto: 6,
            src: "10.9.0.1".parse().unwrap(),
            dst: "2001:db8::2".parse().unwrap(),
            sport: Some(40000),
            dport: Some(22),
            hdr_len: 20,
            total_len: 60,
            tcp_flags: Some(0x02),
            icmp: None,
            mark: Some(7),
            conn: None,
        }
    }

    #[test]
    fn a_packet_line_reads_back_field_by_field() {
        let mut s = String::new();
        write_packet(&packet(), &mut s);
        assert!(s.starts_with("F "), "{s}");
        assert!(
            s.ends_with(
                " veth0 - drop\\x20ssh\\x1b b 10.9.0.1,40000 -> 2001:db8::2,22 PR tcp len 20 60 -S group=3 mark=7"
            ),
            "{s}"
        );
        let LogLine::Packet(l) = parse_line(&s).unwrap() else {
            panic!("not a packet line: {s}");
        };
        assert_eq!(l.ts.and_utc().timestamp_subsec_micros(), 123_456);
        assert_eq!(l.in_iface, Some("veth0"));
        assert_eq!(l.out_iface, None);
        assert_eq!(l.prefix_text(), "drop ssh\u{1b}");
        assert_eq!(l.action, Action::Block);
        assert_eq!(
            (l.src, l.sport, l.dst, l.dport),
            ("10.9.0.1", Some(40000), "2001:db8::2", Some(22))
        );
        assert_eq!(
            (l.proto, l.hdr_len, l.total_len, l.tcp_flags),
            (6, 20, 60, Some(2))
        );
        assert_eq!(l.extra("group"), Some("3"));
        assert_eq!(l.extra("mark"), Some("7"));
    }

    #[test]
    fn an_icmp_error_names_its_connection() {
        let mut p = packet();
        p.proto = 1;
        p.prefix = String::new();
        p.action = Action::Log;
        p.dst = "10.9.0.2".parse().unwrap();
        (p.sport, p.dport, p.tcp_flags, p.mark) = (None, None, None, None);
        p.icmp = Some((3, 3));
        p.conn = Some(PacketConn {
            state: Some("related-reply"),
            related: true,
            proto: 17,
            src: "10.9.0.2".parse().unwrap(),
            dst: "10.9.0.1".parse().unwrap(),
            sport: Some(41000),
            dport: Some(9),
            id: Some(0x1a2b3c4d),
        });
        let mut s = String::new();
        write_packet(&p, &mut s);
        assert!(
            s.ends_with(
                " veth0 - - L 10.9.0.1 -> 10.9.0.2 PR icmp len 20 60 icmp 3/3 group=3 \
                 ct=related-reply related=udp:10.9.0.2,41000->10.9.0.1,9 related_uid=CT1a2b3c4d"
            ),
            "{s}"
        );
        let LogLine::Packet(l) = parse_line(&s).unwrap() else {
            panic!("{s}")
        };
        assert_eq!((l.prefix, l.icmp, l.sport), ("", Some((3, 3)), None));
        assert_eq!(l.extra("related"), Some("udp:10.9.0.2,41000->10.9.0.1,9"));
    }

    #[test]
    fn bad_packet_lines_name_their_field() {
        let good = "F 2026-11-30-05:50:12.5 eth0 - x b 10.0.0.1,1 -> 10.0.0.2,2 PR udp len 20 28";
        assert!(matches!(parse_line(good), Ok(LogLine::Packet(_))));
        for (line, field) in [
            (
                "F 2026-11-30-05:50:12 eth0 - x b 1.1.1.1 -> 1.1.1.2 PR udp len 20 28",
                "timestamp",
            ),
            (
                "F 2026-11-30-05:50:12.5 eth0 - x q 1.1.1.1 -> 1.1.1.2 PR udp len 20 28",
                "action",
            ),
            (
                "F 2026-11-30-05:50:12.5 eth0 - x b 1.1.1.1,99999 -> 1.1.1.2 PR udp len 20 28",
                "src",
            ),
            (
                "F 2026-11-30-05:50:12.5 eth0 - x b 1.1.1.1 => 1.1.1.2 PR udp len 20 28",
                "->",
            ),
            (
                "F 2026-11-30-05:50:12.5 eth0 - x b 1.1.1.1 -> 1.1.1.2 PR udp len 20",
                "total",
            ),
            (
                "F 2026-11-30-05:50:12.5 eth0 - x b 1.1.1.1 -> 1.1.1.2 PR tcp len 20 40 -Q",
                "flags",
            ),
            (
                "F 2026-11-30-05:50:12.5 eth0 - x b 1.1.1.1 -> 1.1.1.2 PR icmp len 20 28 icmp 3",
                "icmp",
            ),
            (
                "F 2026-11-30-05:50:12.5 eth0 - x b 1.1.1.1 -> 1.1.1.2 PR udp len 20 28 junk",
                "extras",
            ),
        ] {
            assert_eq!(parse_line(line).unwrap_err().field, field, "{line}");
        }
    }
}
