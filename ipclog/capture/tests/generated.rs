//! Generated captures (tests/src/pcapgen.rs): every link type and both file formats, every
//! anomaly option, timeouts and limits, and damaged input (truncated files, short snaplen,
//! zero-length packets, garbage, not a capture, unknown link type, bad filter).

mod common;

use std::path::PathBuf;
use std::sync::atomic::AtomicBool;

use common::*;
use e2e::pcapgen::{self, Link, Record, Session};
use ipclog_capture::CaptureArgs;
use shared::event::ZeekState;
use shared::sink::VecSink;

const T0: i64 = 1_700_000_000_000_000;
const MS: i64 = 1000;
const S: i64 = 1_000_000;

fn dir() -> PathBuf {
    e2e::bins::scratch(&format!(
        "capgen-{}",
        std::thread::current()
            .name()
            .unwrap_or("t")
            .replace("::", "-")
    ))
}

fn file(name: &str, link: &Link, ng: bool, packets: &[(i64, Vec<u8>)]) -> PathBuf {
    let p = dir().join(name);
    pcapgen::write(&p, link, ng, packets).unwrap();
    p
}

/// A complete exchange: handshake, 100 bytes up, 300 down, both FINs.
fn normal(client: &str, server: &str) -> Session {
    let mut s = Session::new(client, server, 1000, 5000);
    s.handshake(T0)
        .data(T0 + 10 * MS, true, 100)
        .ack(T0 + 11 * MS, false)
        .data(T0 + 20 * MS, false, 300)
        .ack(T0 + 21 * MS, true)
        .close(T0 + 30 * MS);
    s
}

fn run_err(args: CaptureArgs) -> ipclog_capture::CaptureError {
    let mut sink = VecSink::default();
    ipclog_capture::run(&args, &mut sink, &AtomicBool::new(false), None).expect_err("must fail")
}

#[test]
fn every_link_type_and_both_formats_give_the_same_connection() {
    let links = [
        Link::Ethernet(vec![]),
        Link::Ethernet(vec![100]),
        Link::Ethernet(vec![100, 200]),
        Link::Sll,
        Link::Sll2,
        Link::Raw,
        Link::Raw12,
        Link::Raw14,
        Link::RawV4,
        Link::Null,
        Link::Loop,
    ];
    for (v6, client, server) in [
        (false, "10.0.0.1:40000", "10.0.0.2:80"),
        (true, "[2001:db8::1]:40000", "[2001:db8::2]:80"),
    ] {
        let s = normal(client, server);
        let mut all: Vec<Link> = links.to_vec();
        all.push(if v6 { Link::RawV6 } else { Link::RawV4 });
        for link in &all {
            if v6 && *link == Link::RawV4 {
                continue;
            }
            for ng in [false, true] {
                let what = format!("{link:?} v6={v6} ng={ng}");
                let p = file("l.cap", link, ng, &s.packets);
                let (ev, sum) = read(&p);
                check_accounting(&ev, &sum, &what);
                assert_eq!(sum.packets, 10, "{what}");
                assert!(sum.dropped.is_empty(), "{what}: {}", sum.describe());
                assert_eq!(sum.bad_checksum, 0, "{what}");
                let c = closes(&ev);
                assert_eq!(c.len(), 1, "{what}");
                assert_eq!(c[0].zeek_state, Some(ZeekState::Sf), "{what}");
                assert_eq!(c[0].history.as_deref(), Some("ShADadFf"), "{what}");
                let k = c[0].counters.unwrap();
                assert_eq!((k.orig_pkts, k.resp_pkts), (6, 4), "{what}");
                assert_eq!(
                    (k.orig_bytes, k.resp_bytes),
                    (Some(100), Some(300)),
                    "{what}"
                );
                let hdr = if v6 { 60 } else { 40 };
                assert_eq!(k.orig_ip_bytes, 6 * hdr + 100, "{what}");
                assert_eq!(
                    c[0].orig.to_string_pair(),
                    (client.to_string(), server.to_string()),
                    "{what}"
                );
                // The last ACK (at 32 ms) comes after both FINs: as in Zeek, the
                // connection's clock stopped at the second FIN (31 ms).
                assert!((c[0].duration.unwrap() - 0.031).abs() < 1e-9, "{what}");
            }
        }
    }
}

trait Pair {
    fn to_string_pair(&self) -> (String, String);
}
impl Pair for shared::event::FlowTuple {
    fn to_string_pair(&self) -> (String, String) {
        let f = |a: std::net::IpAddr, p: Option<u16>| match a {
            std::net::IpAddr::V4(a) => format!("{a}:{}", p.unwrap()),
            std::net::IpAddr::V6(a) => format!("[{a}]:{}", p.unwrap()),
        };
        (f(self.src, self.sport), f(self.dst, self.dport))
    }
}

#[test]
fn unknown_link_type_is_a_clear_error() {
    let s = normal("10.0.0.1:1", "10.0.0.2:2");
    let p = file("u.cap", &Link::Other(147), false, &s.packets);
    let e = run_err(CaptureArgs::file(p.to_str().unwrap()));
    assert_eq!(e.exit_code, 2);
    assert!(
        e.message.contains("unsupported link type 147"),
        "{}",
        e.message
    );
}

#[test]
fn not_a_capture_missing_and_empty_files_are_clear_errors() {
    let d = dir();
    let text = d.join("notes.txt");
    std::fs::write(&text, "hello, this is not a capture\n").unwrap();
    let e = run_err(CaptureArgs::file(text.to_str().unwrap()));
    assert_eq!(e.exit_code, 2);
    assert!(
        e.message.contains("not a pcap or pcapng capture file"),
        "{}",
        e.message
    );
    assert!(e.message.contains("notes.txt"));
    let e = run_err(CaptureArgs::file(d.join("missing.pcap").to_str().unwrap()));
    assert_eq!(e.exit_code, 2);
    assert!(
        e.message.contains("missing.pcap: cannot open"),
        "{}",
        e.message
    );
    let empty = d.join("empty.pcap");
    std::fs::write(&empty, b"").unwrap();
    let e = run_err(CaptureArgs::file(empty.to_str().unwrap()));
    assert_eq!(e.exit_code, 2);
    assert!(e.message.contains("too short"), "{}", e.message);
    // A valid magic followed by a truncated file header.
    let half = d.join("half.pcap");
    std::fs::write(&half, [0xd4, 0xc3, 0xb2, 0xa1, 2, 0]).unwrap();
    let e = run_err(CaptureArgs::file(half.to_str().unwrap()));
    assert_eq!(e.exit_code, 2);
    assert!(e.message.contains("half.pcap"), "{}", e.message);
}

#[test]
fn bad_filter_expression_is_a_clear_error_and_a_good_one_filters() {
    let mut s = normal("10.0.0.1:40000", "10.0.0.2:80");
    s.packets.push((
        T0 + 50 * MS,
        pcapgen::udp(
            "10.0.0.1:5353".parse().unwrap(),
            "10.0.0.3:53".parse().unwrap(),
            b"q",
        ),
    ));
    let p = file("f.cap", &Link::Ethernet(vec![]), false, &s.packets);
    let mut a = CaptureArgs::file(p.to_str().unwrap());
    a.filter = vec!["port".into(), "nonsense".into(), "(((".into()];
    let e = run_err(a);
    assert_eq!(e.exit_code, 2);
    assert!(
        e.message
            .contains("bad filter expression 'port nonsense ((('"),
        "{}",
        e.message
    );
    let (ev, sum) = read_with(
        &p,
        CaptureArgs {
            filter: vec!["udp".into()],
            ..CaptureArgs::default()
        },
    );
    assert_eq!(sum.packets, 1);
    let c = closes(&ev);
    assert_eq!(c.len(), 1);
    assert_eq!(c[0].proto, 17);
    assert_eq!(c[0].zeek_state, Some(ZeekState::S0));
    assert_eq!(c[0].history.as_deref(), Some("D"));
}

#[test]
fn retransmission_threshold() {
    let mut s = Session::new("10.0.0.1:40000", "10.0.0.2:80", 1000, 5000);
    s.handshake(T0).data(T0 + 10 * MS, true, 100);
    let seq = s.cseq - 100;
    // Retransmitted 1.5 s after the original, then acknowledged.
    s.resend(T0 + 1510 * MS, true, seq, 100)
        .ack(T0 + 1520 * MS, false)
        .close(T0 + 2 * S);
    let p = file("r.cap", &Link::Ethernet(vec![]), false, &s.packets);
    for (ms, want) in [(1000u64, 1u32), (1500, 1), (2000, 0), (0, 0)] {
        let (ev, _) = read_with(
            &p,
            CaptureArgs {
                retransmit: ms,
                ..CaptureArgs::default()
            },
        );
        let c = closes(&ev);
        assert_eq!(c[0].anomalies.retransmits, want, "--retransmit {ms}");
        assert_eq!(c[0].history.as_deref(), Some("ShADTaFf"));
    }
}

#[test]
fn syn_and_synack_retransmissions() {
    let mut s = Session::new("10.0.0.1:40000", "10.0.0.2:80", 1000, 5000);
    s.syn(T0);
    s.cseq = 1000;
    s.syn(T0 + S).synack(T0 + S + MS);
    s.sseq = 5000;
    s.synack(T0 + 2 * S)
        .ack(T0 + 2 * S + MS, true)
        .close(T0 + 3 * S);
    let p = file("s.cap", &Link::Ethernet(vec![]), false, &s.packets);
    let (ev, _) = read(&p);
    let c = closes(&ev);
    assert_eq!(c.len(), 1);
    assert_eq!(c[0].anomalies.syn_retransmits, 2);
    assert_eq!(
        c[0].history.as_deref(),
        Some("ShAFf"),
        "repeated SYNs with the same seq add no letter"
    );
    let (ev, _) = read_with(
        &p,
        CaptureArgs {
            syn: 0,
            ..CaptureArgs::default()
        },
    );
    assert_eq!(closes(&ev)[0].anomalies.syn_retransmits, 0);
}

#[test]
fn rst_modes() {
    // Reset without FIN: counted in modes 1 and 2.
    let mut a = Session::new("10.0.0.1:40000", "10.0.0.2:80", 1, 2);
    a.handshake(T0)
        .data(T0 + MS * 5, true, 10)
        .rst(T0 + MS * 6, false);
    // FIN from the client, then the server resets: only mode 2 counts it.
    let mut b = Session::new("10.0.0.1:40001", "10.0.0.2:80", 1, 2);
    b.handshake(T0)
        .fin(T0 + MS * 5, true)
        .rst(T0 + MS * 6, false);
    let mut pk = a.packets.clone();
    pk.extend(b.packets.clone());
    pk.sort_by_key(|p| p.0);
    let p = file("rst.cap", &Link::Ethernet(vec![]), false, &pk);
    for (mode, wa, wb) in [(0u8, 0u32, 0u32), (1, 1, 0), (2, 1, 1)] {
        let (ev, sum) = read_with(
            &p,
            CaptureArgs {
                rst: mode,
                ..CaptureArgs::default()
            },
        );
        // miruo's session statistics: connections with a counted RST.
        let with_rst = sum.anomalies.iter().find(|(k, _)| k == "rst").map(|x| x.1);
        assert_eq!(with_rst.unwrap_or(0), (wa + wb) as u64, "mode {mode}");
        let ca = close_by_sport(&ev, 40000);
        let cb = close_by_sport(&ev, 40001);
        assert_eq!(ca[0].anomalies.resets, wa, "mode {mode}");
        assert_eq!(cb[0].anomalies.resets, wb, "mode {mode}");
        assert_eq!(ca[0].zeek_state, Some(ZeekState::Rstr));
        assert_eq!(ca[0].history.as_deref(), Some("ShADr"));
        assert_eq!(cb[0].zeek_state, Some(ZeekState::Rstr));
    }
}

#[test]
fn long_connect_and_long_delay() {
    let mut s = Session::new("10.0.0.1:40000", "10.0.0.2:80", 1, 2);
    // 3 s in all, with a 2 s silence between two segments.
    s.handshake(T0)
        .data(T0 + 100 * MS, true, 10)
        .data(T0 + 2100 * MS, false, 10)
        .close(T0 + 3 * S);
    let p = file("lc.cap", &Link::Ethernet(vec![]), false, &s.packets);
    let (ev, _) = read(&p);
    let c = closes(&ev);
    assert!(!c[0].anomalies.long_connect);
    assert_eq!(c[0].anomalies.long_delays, 0);
    let (ev, _) = read_with(
        &p,
        CaptureArgs {
            long_connect: 2500,
            long_delay: 1500,
            ..CaptureArgs::default()
        },
    );
    let c = closes(&ev);
    assert!(c[0].anomalies.long_connect);
    assert_eq!(c[0].anomalies.long_delays, 1);
    let (ev, _) = read_with(
        &p,
        CaptureArgs {
            long_connect: 4000,
            long_delay: 2500,
            ..CaptureArgs::default()
        },
    );
    let c = closes(&ev);
    assert!(!c[0].anomalies.long_connect);
    assert_eq!(c[0].anomalies.long_delays, 0);
}

#[test]
fn fragments_v4_and_v6_reassembled_and_counted() {
    for (src, dst) in [
        ("10.0.0.1:5000", "10.0.0.2:53"),
        ("[2001:db8::1]:5000", "[2001:db8::2]:53"),
    ] {
        let ip = pcapgen::udp(src.parse().unwrap(), dst.parse().unwrap(), &[7u8; 2000]);
        let frags = pcapgen::fragment(&ip, 800, 77);
        assert_eq!(frags.len(), 3);
        // Out of order: last first.
        let pk: Vec<(i64, Vec<u8>)> = frags
            .iter()
            .rev()
            .enumerate()
            .map(|(i, f)| (T0 + i as i64 * MS, f.clone()))
            .collect();
        let p = file("frag.cap", &Link::Ethernet(vec![]), false, &pk);
        let (ev, sum) = read(&p);
        check_accounting(&ev, &sum, src);
        let c = closes(&ev);
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].anomalies.fragments, 3);
        let k = c[0].counters.unwrap();
        assert_eq!(
            (k.orig_pkts, k.orig_ip_bytes, k.orig_bytes),
            (1, ip.len() as u64, Some(2000))
        );
        assert_eq!(sum.fragments_merged, 2);
        let (ev, _) = read_with(
            &p,
            CaptureArgs {
                fragment: 0,
                ..CaptureArgs::default()
            },
        );
        assert_eq!(closes(&ev)[0].anomalies.fragments, 0);
        // Only two of the three: incomplete at the end, counted.
        let p = file("frag2.cap", &Link::Ethernet(vec![]), false, &pk[..2]);
        let (ev, sum) = read(&p);
        check_accounting(&ev, &sum, src);
        assert!(
            sum.dropped.contains(&("frag_incomplete".to_string(), 2)),
            "{}",
            sum.describe()
        );
    }
}

#[test]
fn inactivity_timeouts_in_packet_time() {
    let c: std::net::SocketAddr = "10.0.0.1:5000".parse().unwrap();
    let d: std::net::SocketAddr = "10.0.0.2:53".parse().unwrap();
    // Same UDP 5-tuple at 0 s, 10 s (reply), and 100 s: the 90 s silence exceeds 60 s.
    let mut pk = vec![
        (T0, pcapgen::udp(c, d, b"a")),
        (T0 + 10 * S, pcapgen::udp(d, c, b"b")),
        (T0 + 100 * S, pcapgen::udp(c, d, b"c")),
    ];
    // A TCP connection idle for 400 s between two data segments.
    let mut s = Session::new("10.0.0.1:40000", "10.0.0.2:80", 1, 2);
    s.handshake(T0)
        .data(T0 + S, true, 5)
        .data(T0 + 401 * S, true, 5);
    pk.extend(s.packets.clone());
    pk.sort_by_key(|p| p.0);
    let p = file("to.cap", &Link::Ethernet(vec![]), false, &pk);
    let (ev, sum) = read(&p);
    check_accounting(&ev, &sum, "timeouts");
    let udp: Vec<_> = close_by_sport(&ev, 5000);
    assert_eq!(udp.len(), 2);
    assert_eq!(udp[0].zeek_state, Some(ZeekState::Sf));
    assert_eq!(udp[0].history.as_deref(), Some("Dd"));
    assert_eq!(udp[1].zeek_state, Some(ZeekState::S0));
    // Timed out: the first UDP flow (at 70 s), the first TCP one (at 301 s) and, once the
    // packet at 401 s moves time on, the second UDP flow (idle since 100 s).
    assert_eq!(sum.timed_out, 3, "{}", sum.describe());
    assert!(sum.describe().contains("3 timed out"));
    let tcp = close_by_sport(&ev, 40000);
    assert_eq!(tcp.len(), 2);
    assert_eq!(tcp[0].zeek_state, Some(ZeekState::S1));
    assert_eq!(tcp[1].zeek_state, Some(ZeekState::Oth));
    assert_eq!(tcp[1].history.as_deref(), Some("D"));
    // Longer timeouts keep each one flow.
    let (ev, _) = read_with(
        &p,
        CaptureArgs {
            udp_timeout: 120,
            tcp_timeout: 500,
            ..CaptureArgs::default()
        },
    );
    assert_eq!(close_by_sport(&ev, 5000).len(), 1);
    assert_eq!(close_by_sport(&ev, 40000).len(), 1);
}

#[test]
fn session_and_segment_limits_drop_and_count() {
    let d: std::net::SocketAddr = "10.0.0.2:53".parse().unwrap();
    let pk: Vec<(i64, Vec<u8>)> = (0..10)
        .map(|i| {
            (
                T0 + i * MS,
                pcapgen::udp(format!("10.0.0.1:{}", 6000 + i).parse().unwrap(), d, b"x"),
            )
        })
        .collect();
    let p = file("sl.cap", &Link::Ethernet(vec![]), false, &pk);
    let (ev, sum) = read_with(
        &p,
        CaptureArgs {
            session_limit: 4,
            ..CaptureArgs::default()
        },
    );
    check_accounting(&ev, &sum, "session limit");
    assert_eq!(sum.flows, 4);
    assert!(sum.dropped.contains(&("session_limit".to_string(), 6)));
    assert!(
        sum.describe().contains("session_limit=6"),
        "{}",
        sum.describe()
    );
    // Ten unacknowledged data segments with room for three.
    let mut s = Session::new("10.0.0.1:40000", "10.0.0.2:80", 1, 2);
    s.handshake(T0);
    for i in 0..10 {
        s.data(T0 + (10 + i) * MS, true, 100);
    }
    let p = file("seg.cap", &Link::Ethernet(vec![]), false, &s.packets);
    let (_, sum) = read_with(
        &p,
        CaptureArgs {
            segment_limit: 3,
            ..CaptureArgs::default()
        },
    );
    assert_eq!(sum.segments_not_tracked, 7);
    assert_eq!(sum.segments_max, 3);
    assert!(sum
        .describe()
        .contains("segments not tracked (segment limit) 7"));
}

#[test]
fn port_reuse_and_sequence_wrap() {
    // ISNs just below 2^32: the data crosses the wrap; then the same ports open again.
    let mut s = Session::new(
        "10.0.0.1:40000",
        "10.0.0.2:80",
        u32::MAX - 50,
        u32::MAX - 10,
    );
    s.handshake(T0)
        .data(T0 + 10 * MS, true, 1000)
        .ack(T0 + 11 * MS, false)
        .data(T0 + 12 * MS, false, 70000 % 1400)
        .close(T0 + 20 * MS);
    let mut again = normal("10.0.0.1:40000", "10.0.0.2:80");
    let mut pk = s.packets.clone();
    pk.extend(again.packets.drain(..).map(|(t, p)| (t + S, p)));
    let p = file("wrap.cap", &Link::Ethernet(vec![]), false, &pk);
    let (ev, sum) = read(&p);
    check_accounting(&ev, &sum, "wrap");
    let c = closes(&ev);
    assert_eq!(c.len(), 2);
    let k = c[0].counters.unwrap();
    assert_eq!((k.orig_bytes, k.resp_bytes), (Some(1000), Some(0)));
    assert_eq!(c[0].zeek_state, Some(ZeekState::Sf));
    assert_ne!(c[0].uid, c[1].uid);
    assert_eq!(c[1].counters.unwrap().orig_bytes, Some(100));
}

#[test]
fn bad_checksums_verified_by_default_for_files_or_ignored() {
    let mut s = normal("10.0.0.1:40000", "10.0.0.2:80");
    // Corrupt the TCP checksum of the client's data segment (IP header + 16).
    s.packets[3].1[20 + 16] ^= 0xff;
    let p = file("ck.cap", &Link::Ethernet(vec![]), false, &s.packets);
    // Verified (a file's default, Zeek's): the segment only adds `C`, is not counted and
    // never reached the server's view, so the server's ACK of its data is a content gap.
    let (ev, sum) = read(&p);
    check_accounting(&ev, &sum, "checksum");
    assert_eq!(sum.bad_checksum, 1);
    assert!(sum.checksums_verified);
    let c = closes(&ev);
    assert_eq!(c[0].counters.unwrap().orig_pkts, 5);
    assert_eq!(c[0].history.as_deref(), Some("ShACaGdFf"));
    // Ignored (`-C`): not even checked, counted like any other packet.
    let ignore = CaptureArgs {
        ignore_checksums: true,
        ..CaptureArgs::default()
    };
    let (ev, sum) = read_with(&p, ignore);
    check_accounting(&ev, &sum, "checksum ignored");
    assert_eq!(sum.bad_checksum, 0);
    let c = closes(&ev);
    assert_eq!(c[0].counters.unwrap().orig_pkts, 6);
    assert_eq!(c[0].history.as_deref(), Some("ShADadFf"));
}

#[test]
fn truncated_file_counts_the_damage_and_keeps_what_came_before() {
    let s = normal("10.0.0.1:40000", "10.0.0.2:80");
    let link = Link::Ethernet(vec![]);
    let recs: Vec<Record> = s
        .packets
        .iter()
        .map(|(t, ip)| Record::new(*t, link.frame(ip)))
        .collect();
    let bytes = pcapgen::pcap_bytes(1, 65535, &recs);
    // Cut in the middle of the last record's data, then in the middle of its header.
    for cut in [bytes.len() - 10, bytes.len() - 60 - 8] {
        let p = dir().join("trunc.pcap");
        std::fs::write(&p, &bytes[..cut]).unwrap();
        let (ev, sum) = read(&p);
        check_accounting(&ev, &sum, "truncated");
        assert_eq!(sum.packets, 9, "cut at {cut}");
        assert!(
            sum.dropped.contains(&("damaged_record".to_string(), 1)),
            "{}",
            sum.describe()
        );
        assert_eq!(closes(&ev).len(), 1);
    }
}

#[test]
fn garbage_after_a_valid_header_is_counted_not_fatal() {
    let mut bytes = pcapgen::pcap_bytes(1, 65535, &[]);
    bytes.extend((0..4000u32).map(|i| (i.wrapping_mul(2654435761) >> 13) as u8));
    let p = dir().join("garbage.pcap");
    std::fs::write(&p, &bytes).unwrap();
    let (ev, sum) = read(&p);
    check_accounting(&ev, &sum, "garbage");
    assert!(
        sum.dropped
            .iter()
            .any(|(k, n)| k == "damaged_record" && *n >= 1),
        "{}",
        sum.describe()
    );
    // The same garbage after valid packets of a pcapng file.
    let s = normal("10.0.0.1:40000", "10.0.0.2:80");
    let link = Link::Ethernet(vec![]);
    let recs: Vec<Record> = s
        .packets
        .iter()
        .map(|(t, ip)| Record::new(*t, link.frame(ip)))
        .collect();
    let mut ng = pcapgen::pcapng_bytes(1, 65535, &recs);
    ng.extend_from_slice(&bytes[24..]);
    std::fs::write(&p, &ng).unwrap();
    let (ev, sum) = read(&p);
    check_accounting(&ev, &sum, "garbage ng");
    assert_eq!(closes(&ev).len(), 1);
    assert!(sum.packets >= 10);
}

#[test]
fn short_snaplen_zero_length_and_non_ip_are_counted_by_reason() {
    let s = normal("10.0.0.1:40000", "10.0.0.2:80");
    let link = Link::Ethernet(vec![]);
    let mut recs: Vec<Record> = s
        .packets
        .iter()
        .map(|(t, ip)| {
            let f = link.frame(ip);
            let wire = f.len() as u32;
            Record {
                ts_us: *t,
                data: f,
                wire_len: wire,
            }
        })
        .collect();
    // Zero-length record, an ARP frame, a frame whose IP header is cut after 10 bytes.
    recs.push(Record {
        ts_us: T0 + S,
        data: vec![],
        wire_len: 60,
    });
    let mut arp = vec![0xff; 12];
    arp.extend_from_slice(&[0x08, 0x06]);
    arp.extend_from_slice(&[0; 28]);
    recs.push(Record::new(T0 + S, arp));
    let p = dir().join("snap.pcap");
    // snaplen 30 cuts every IP header (14 + 16 bytes).
    std::fs::write(&p, pcapgen::pcap_bytes(1, 30, &recs)).unwrap();
    let (ev, sum) = read(&p);
    check_accounting(&ev, &sum, "snaplen 30");
    assert_eq!(sum.packets, 12);
    assert_eq!(sum.flows, 0);
    assert!(
        sum.dropped.contains(&("truncated_ip".to_string(), 10)),
        "{}",
        sum.describe()
    );
    assert!(
        sum.dropped.contains(&("truncated_link".to_string(), 1)),
        "{}",
        sum.describe()
    );
    assert!(
        sum.dropped.contains(&("non_ip".to_string(), 1)),
        "{}",
        sum.describe()
    );
    // snaplen 54 keeps IP + 20 bytes of TCP: every packet tracked with its wire length.
    std::fs::write(&p, pcapgen::pcap_bytes(1, 54, &recs[..10])).unwrap();
    let (ev, sum) = read(&p);
    check_accounting(&ev, &sum, "snaplen 54");
    let c = closes(&ev);
    assert_eq!(c.len(), 1);
    assert_eq!(c[0].history.as_deref(), Some("ShADadFf"));
    assert_eq!(c[0].counters.unwrap().orig_ip_bytes, 6 * 40 + 100);
    assert_eq!(sum.bad_checksum, 0, "cut packets are not checksummed");
}

#[test]
fn random_frames_on_every_link_type_never_panic_and_are_all_accounted_for() {
    // A deterministic stream of frames: random bytes, and real packets with random bytes
    // flipped or cut, for every link type.
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    let mut rnd = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let mut s = normal("10.0.0.1:40000", "10.0.0.2:80");
    let frag = pcapgen::fragment(
        &pcapgen::udp(
            "10.0.0.1:1".parse().unwrap(),
            "10.0.0.2:2".parse().unwrap(),
            &[1; 100],
        ),
        32,
        9,
    );
    s.packets.extend(frag.into_iter().map(|f| (T0, f)));
    for link in [
        Link::Ethernet(vec![7]),
        Link::Sll,
        Link::Sll2,
        Link::Raw,
        Link::RawV4,
        Link::RawV6,
        Link::Null,
        Link::Loop,
    ] {
        let mut recs = Vec::new();
        for i in 0..3000 {
            let mut f = if i % 2 == 0 {
                let len = (rnd() % 120) as usize;
                (0..len).map(|_| rnd() as u8).collect::<Vec<u8>>()
            } else {
                link.frame(&s.packets[(rnd() % s.packets.len() as u64) as usize].1)
            };
            if !f.is_empty() && i % 3 == 0 {
                let at = (rnd() % f.len() as u64) as usize;
                f[at] ^= (rnd() as u8) | 1;
            }
            if i % 5 == 0 {
                let keep = (rnd() % (f.len() as u64 + 1)) as usize;
                f.truncate(keep);
            }
            let wire = f.len() as u32 + (rnd() % 3) as u32;
            recs.push(Record {
                ts_us: T0 + i * 1000,
                data: f,
                wire_len: wire,
            });
        }
        let p = dir().join("fuzz.pcap");
        std::fs::write(&p, pcapgen::pcap_bytes(link.linktype(), 65535, &recs)).unwrap();
        let (ev, sum) = read(&p);
        check_accounting(&ev, &sum, &format!("{link:?}"));
        assert_eq!(sum.packets, 3000, "{link:?}");
    }
}

/// Zeek's content gap letter: the peer acknowledges data the capture never held. `drop` lists
/// the client data segments (by index) left out of the capture; the server acknowledges each.
fn gap_session(segments: usize, drop: &[usize], server_data: bool) -> Session {
    let mut s = Session::new("10.0.0.1:40000", "10.0.0.2:80", 1000, 5000);
    s.handshake(T0);
    for k in 0..segments {
        let t = T0 + (10 + 2 * k as i64) * MS;
        s.data(t, true, 100);
        if drop.contains(&k) {
            s.packets.pop();
        }
        s.ack(t + MS, false);
    }
    if server_data {
        s.data(T0 + 900 * MS, false, 300).ack(T0 + 901 * MS, true);
    }
    s.close(T0 + S);
    s
}

fn history_of(s: &Session, name: &str) -> String {
    let p = file(name, &Link::Ethernet(vec![]), false, &s.packets);
    let (ev, sum) = read(&p);
    check_accounting(&ev, &sum, name);
    let c = closes(&ev);
    assert_eq!(c.len(), 1, "{name}");
    c[0].history.clone().unwrap()
}

#[test]
fn acknowledged_data_missing_from_the_capture_is_a_content_gap() {
    // The client's second segment is not in the capture, the server acknowledges it: `G`
    // right after the server's ACK (`a`), as in Zeek's miss_end_data trace ("ShADafgF").
    let h = history_of(&gap_session(3, &[1], false), "gap.cap");
    assert_eq!(h, "ShADaGFf");

    // Nothing missing: the same exchange has no gap letter, neither for a FIN acknowledged
    // (it takes a sequence number but carries no data) nor for in-order data.
    let h = history_of(&gap_session(3, &[], true), "nogap.cap");
    assert_eq!(h, "ShADadFf");
    assert!(!h.contains(['g', 'G']), "{h}");
    let h = history_of(&normal("10.0.0.1:40000", "10.0.0.2:80"), "normal.cap");
    assert!(!h.contains(['g', 'G']), "{h}");
}

#[test]
fn reordered_data_is_no_gap_and_gaps_scale_like_zeek() {
    // The second segment arrives before the first; the ACK after both covers data that was
    // all seen, only out of order: no gap (the early segment waits above the hole).
    let mut s = Session::new("10.0.0.1:40000", "10.0.0.2:80", 1000, 5000);
    s.handshake(T0).data(T0 + 10 * MS, true, 100);
    let first = s.packets.pop().unwrap();
    s.data(T0 + 11 * MS, true, 100);
    s.packets.push((T0 + 12 * MS, first.1));
    s.ack(T0 + 13 * MS, false).close(T0 + S);
    let h = history_of(&s, "reorder.cap");
    assert!(!h.contains(['g', 'G']), "{h}");

    // Like retransmissions, gaps are letters again at 10, 100, ... of them (Zeek's
    // ScaledHistoryEntry): 9 holes give one `G`, 10 give two.
    let nine: Vec<usize> = (0..9).map(|k| 2 * k).collect();
    let ten: Vec<usize> = (0..10).map(|k| 2 * k).collect();
    let h = history_of(&gap_session(20, &nine, false), "gap9.cap");
    assert_eq!(h.matches('G').count(), 1, "{h}");
    let h = history_of(&gap_session(20, &ten, false), "gap10.cap");
    assert_eq!(h.matches('G').count(), 2, "{h}");

    // The responder's missing data, acknowledged by the client: lower-case `g`.
    let mut s = Session::new("10.0.0.1:40000", "10.0.0.2:80", 1000, 5000);
    s.handshake(T0).data(T0 + 10 * MS, false, 500);
    s.packets.pop();
    s.ack(T0 + 11 * MS, true).close(T0 + S);
    assert_eq!(history_of(&s, "gapr.cap"), "ShAgFf");

    // An ACK in a RST is not trusted: missing data it acknowledges is no gap (Zeek checks
    // after the state update, and a reset side is not cleanly established).
    let mut s = Session::new("10.0.0.1:40000", "10.0.0.2:80", 1000, 5000);
    s.handshake(T0).data(T0 + 10 * MS, true, 100);
    s.packets.pop();
    s.rst(T0 + 11 * MS, false);
    let h = history_of(&s, "gaprst.cap");
    assert!(!h.contains(['g', 'G']), "{h}");
}
