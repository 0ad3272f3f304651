use chrono::{DateTime, Local, TimeZone, Utc};

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

/// What the writer wrote for the test events before the extras were generated from the
/// record's fields, with `-N`; the time column is each event's local time.
const BEFORE: [&str; 3] = [
    "C {} tcp  eth0            10.0.1.1        40000 80    t      2 orig_pkts=5 orig_ip_bytes=400 resp_pkts=4 resp_ip_bytes=3000 mark=7 kstart=1700000008.000000005 kstop=1700000010.000000000 nat_src=192.168.0.1:40000",
    "C {} udp  192.168.1.2     8.8.8.8         5353  53    -      0 found=start orig_pkts=1 orig_ip_bytes=60 resp_pkts=1 resp_ip_bytes=120 orig_bytes=32 resp_bytes=92 conn_state=SF history=Dd uid=CAbCdEfGhIjKlMnOp retrans=2 long_conn=1",
    "O {} icmp6 2001:db8::1     lo              -     -     -      - zone=3",
];

#[test]
fn lines_are_what_the_writer_wrote_before() {
    for (ev, want) in crate::testdata::fixtures().iter().zip(BEFORE) {
        let local = ev.ts.with_timezone(&Local).format(TIME_FORMAT).to_string();
        let mut s = String::new();
        write_event(ev, WriteOptions { show_nat: true }, &mut s);
        assert_eq!(s, want.replace("{}", &local));
    }
}

#[test]
fn a_line_read_and_written_again_is_the_same_line() {
    let mut events = crate::testdata::fixtures();
    let mut weird = events[0].clone();
    weird.src_iface = Some("my if\u{1b}".into());
    weird.history = Some("a b".into());
    weird.proto = 253;
    events.push(weird);
    for ev in &events {
        for show_nat in [false, true] {
            let opts = WriteOptions { show_nat };
            let mut first = String::new();
            write_event(ev, opts, &mut first);
            let LogLine::Conn(c) = parse_line(&first).unwrap() else {
                panic!("{first}")
            };
            let mut again = String::new();
            write_line(&c, opts, &mut again);
            assert_eq!(again, first);
        }
    }
}

#[test]
fn fields_are_found_by_their_log_key() {
    use crate::record::{field, FOUND_AT_START, ORIG_IP_BYTES, UID};
    let events = crate::testdata::fixtures();
    let mut s = String::new();
    write_event(&events[1], WriteOptions::default(), &mut s);
    let LogLine::Conn(c) = parse_line(&s).unwrap() else {
        panic!("{s}")
    };
    assert!(c.is_set(FOUND_AT_START));
    assert_eq!(c.field(ORIG_IP_BYTES), Some("60"));
    assert_eq!(c.field(UID), Some("CAbCdEfGhIjKlMnOp"));
    assert_eq!(c.field(field("direction")), None, "not in the log");
    s.clear();
    write_event(&events[0], WriteOptions::default(), &mut s);
    let LogLine::Conn(c) = parse_line(&s).unwrap() else {
        panic!("{s}")
    };
    assert!(!c.is_set(FOUND_AT_START));
    assert_eq!(c.field(field("nat_src")), None, "only with -N");
}

/// `--proc`'s fields are written after the others and read back, a command name with a space
/// and a control character escaped on the line and restored by the reader.
#[test]
fn the_owning_process_round_trips() {
    let mut e = ev(
        EventKind::Open,
        "2026-01-02-03:04:05",
        6,
        FlowTuple::new(
            "10.0.0.1".parse().unwrap(),
            "10.0.0.2".parse().unwrap(),
            Some(40000),
            Some(80),
        ),
    );
    e.mark = Some(7);
    e.process = Some(Process {
        pid: 4242,
        comm: "evil name\u{1b}[2J".into(),
        uid: 1000,
    });
    let mut s = String::new();
    write_event(&e, WriteOptions::default(), &mut s);
    assert!(!s.contains('\u{1b}'), "{s}");
    assert!(
        s.ends_with(" mark=7 pid=4242 comm=evil\\x20name\\x1b[2J proc_uid=1000"),
        "{s}"
    );
    let LogLine::Conn(c) = parse_line(&s).unwrap() else {
        panic!("not a conn line: {s}")
    };
    assert_eq!(c.process().unwrap(), e.process);
    let bad = s.replace("pid=4242", "pid=x");
    let LogLine::Conn(c) = parse_line(&bad).unwrap() else {
        panic!()
    };
    assert_eq!(c.process().unwrap_err().field, "pid");
    let none = s.replace(" pid=4242", "");
    let LogLine::Conn(c) = parse_line(&none).unwrap() else {
        panic!()
    };
    assert_eq!(c.process().unwrap(), None);
}
