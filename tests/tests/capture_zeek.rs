//! Zeek's connection rules in `ipclog -r`, run as a user would: where one connection ends and
//! the next begins (inactivity timeouts with Zeek's `last + timeout <= now`, the attempt,
//! close, partial-close and reset delays, each with its option), and checksums (verified by
//! default for files, `--checksums ignore` / `-C`, the offloading warning). Generated captures
//! put packets exactly at and just before each boundary; the corpus traces (../shared/corpus)
//! are checked against what their packets and Zeek's documented rules give (Zeek's own
//! baselines for these traces where it has them).

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Command;

use e2e::bins::{bin, corpus_dir, scratch};
use e2e::pcapgen::{self, Link, Session, ACK, FIN, PSH, RST, SYN};
use shared::event::EventKind;
use shared::logfmt::{parse_line, LogLine};

const T0: i64 = 1_700_000_000_000_000;
const S: i64 = 1_000_000;

/// One C line: the ports and the tokens that tell where a connection began and ended.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Conn {
    proto: u8,
    sport: Option<u16>,
    dport: Option<u16>,
    state: String,
    history: String,
    orig_pkts: u64,
    resp_pkts: u64,
}

/// Runs `ipclog -r CAP ARGS... -f LOG`; returns (exit code, the C lines, the P lines, stderr).
fn read(cap: &Path, args: &[&str]) -> (i32, Vec<Conn>, Vec<String>, String) {
    let log = cap.with_extension(format!("{}.log", args.join("_").replace(['-', '.'], "")));
    let _ = std::fs::remove_file(&log);
    let out = Command::new(bin("ipclog"))
        .arg("-r")
        .arg(cap)
        .args(args)
        .arg("-f")
        .arg(&log)
        .output()
        .expect("run ipclog");
    let code = out.status.code().unwrap_or(-1);
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    let mut conns = Vec::new();
    let mut msgs = Vec::new();
    for (n, line) in text.lines().enumerate() {
        match parse_line(line).unwrap_or_else(|e| panic!("line {}: {e}: {line}", n + 1)) {
            LogLine::Conn(c) if c.kind == EventKind::Close => {
                let x = |k: &str| {
                    c.extras()
                        .find(|(key, _)| *key == k)
                        .map(|(_, v)| v.to_string())
                        .unwrap_or_default()
                };
                conns.push(Conn {
                    proto: c.proto,
                    sport: c.sport,
                    dport: c.dport,
                    state: x("conn_state"),
                    history: x("history"),
                    orig_pkts: x("orig_pkts").parse().unwrap(),
                    resp_pkts: x("resp_pkts").parse().unwrap(),
                });
            }
            _ if line.starts_with("P ") => msgs.push(line.to_string()),
            _ => {}
        }
    }
    (code, conns, msgs, err)
}

/// Reads `cap` with `args`, expecting success; the C lines.
fn conns(cap: &Path, args: &[&str]) -> Vec<Conn> {
    let (code, c, _, err) = read(cap, args);
    assert_eq!(code, 0, "{}: {err}", cap.display());
    c
}

/// (conn_state, history, orig_pkts, resp_pkts) of each connection, in log order.
fn summary(c: &[Conn]) -> Vec<(&str, &str, u64, u64)> {
    c.iter()
        .map(|c| {
            (
                c.state.as_str(),
                c.history.as_str(),
                c.orig_pkts,
                c.resp_pkts,
            )
        })
        .collect()
}

fn cap(d: &Path, name: &str, packets: &[(i64, Vec<u8>)]) -> PathBuf {
    let p = d.join(name);
    pcapgen::write(&p, &Link::Ethernet(vec![]), false, packets).unwrap();
    p
}

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

/// A UDP datagram client -> server at `t`.
fn udp(t: i64) -> (i64, Vec<u8>) {
    (
        t,
        pcapgen::udp(addr("10.0.0.1:5000"), addr("10.0.0.2:53"), b"query"),
    )
}

/// An ICMP echo request at `t`.
fn ping(t: i64) -> (i64, Vec<u8>) {
    let (a, b): (IpAddr, IpAddr) = ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap());
    (
        t,
        pcapgen::ip_packet(a, b, 1, vec![8, 0, 0, 0, 0, 1, 0, 1], None),
    )
}

/// A SYN client -> server with initial sequence number 1000 at `t`.
fn syn(t: i64) -> (i64, Vec<u8>) {
    let p = pcapgen::tcp(
        addr("10.0.0.1:40000"),
        addr("10.0.0.2:22"),
        SYN,
        1000,
        0,
        65535,
        b"",
    );
    (t, p)
}

/// Client data (ACK|PSH, `len` bytes at sequence `seq`) without any answer, at `t`.
fn client_data(t: i64, seq: u32, len: usize) -> (i64, Vec<u8>) {
    let p = pcapgen::tcp(
        addr("10.0.0.1:40000"),
        addr("10.0.0.2:22"),
        ACK | PSH,
        seq,
        7000,
        65535,
        &vec![b'x'; len],
    );
    (t, p)
}

/// Flips a bit of the TCP/UDP checksum of an IPv4 packet (20-byte header) of `proto`.
fn spoil_l4(p: &mut [u8], proto: u8) {
    let at = 20 + if proto == 6 { 16 } else { 6 };
    p[at] ^= 0x01;
}

#[test]
fn inactivity_timeouts_end_at_last_plus_timeout_exactly() {
    let d = scratch("zeek-inactive");
    // UDP: 60 s after the last datagram the flow is gone (the timer runs before the packet).
    let at = cap(&d, "udp-at.pcap", &[udp(T0), udp(T0 + 60 * S)]);
    assert_eq!(conns(&at, &[]).len(), 2);
    let before = cap(&d, "udp-before.pcap", &[udp(T0), udp(T0 + 60 * S - 1)]);
    assert_eq!(
        summary(&conns(&before, &[])),
        [("S0", "D", 2, 0)],
        "1 us before the timeout: the same flow"
    );
    assert_eq!(conns(&before, &["--udp-timeout", "30"]).len(), 2);
    assert_eq!(conns(&at, &["--udp-timeout", "0"]).len(), 1, "0 = never");

    // TCP: an established connection idle exactly 300 s.
    let tcp = |gap: i64| {
        let mut s = Session::new("10.0.0.1:40000", "10.0.0.2:80", 1000, 5000);
        s.handshake(T0).data(T0 + 2000 + gap, true, 10);
        s.packets
    };
    let at = cap(&d, "tcp-at.pcap", &tcp(300 * S));
    assert_eq!(
        summary(&conns(&at, &[])),
        [("S1", "ShA", 2, 1), ("OTH", "D", 1, 0)]
    );
    let before = cap(&d, "tcp-before.pcap", &tcp(300 * S - 1));
    assert_eq!(summary(&conns(&before, &[])), [("S1", "ShAD", 3, 1)]);
    assert_eq!(conns(&before, &["--tcp-timeout", "100"]).len(), 2);

    // ICMP: its own timeout, 60 s by default, fractions allowed.
    let icmp = cap(&d, "icmp.pcap", &[ping(T0), ping(T0 + 60 * S)]);
    assert_eq!(conns(&icmp, &[]).len(), 2);
    assert_eq!(conns(&icmp, &["--icmp-timeout", "60.5"]).len(), 1);
    let icmp = cap(&d, "icmp2.pcap", &[ping(T0), ping(T0 + 1_500_000)]);
    assert_eq!(conns(&icmp, &["--icmp-timeout", "1.5"]).len(), 2);
    assert_eq!(conns(&icmp, &["--icmp-timeout", "1.6"]).len(), 1);
}

#[test]
fn unanswered_syns_split_at_the_attempt_delay() {
    let d = scratch("zeek-attempt");
    // SYNs at 0, 3 and 6 s, never answered: the attempt ends 5 s after the first SYN (S0, two
    // SYNs); the third SYN opens a new attempt, with its own S.
    let three = cap(
        &d,
        "syns.pcap",
        &[syn(T0), syn(T0 + 3 * S), syn(T0 + 6 * S)],
    );
    assert_eq!(
        summary(&conns(&three, &[])),
        [("S0", "S", 2, 0), ("S0", "S", 1, 0)]
    );
    // Exactly at 5 s the attempt is over; 1 us before it is not.
    let at = cap(&d, "syn-at.pcap", &[syn(T0), syn(T0 + 5 * S)]);
    assert_eq!(conns(&at, &[]).len(), 2);
    let before = cap(&d, "syn-before.pcap", &[syn(T0), syn(T0 + 5 * S - 1)]);
    assert_eq!(summary(&conns(&before, &[])), [("S0", "S", 2, 0)]);

    // A one-sided client: SYN, then data every second for 8 s. The packets after 5 s start a
    // connection without S (no SYN in it), as in Zeek's half-duplex SSH baseline (data with
    // ACK set is `D`, not `A`).
    let mut p = vec![syn(T0)];
    for n in 1..=8u32 {
        p.push(client_data(T0 + n as i64 * S, 1001 + (n - 1) * 10, 10));
    }
    let one_sided = cap(&d, "one-sided.pcap", &p);
    assert_eq!(
        summary(&conns(&one_sided, &[])),
        [("S0", "SD", 5, 0), ("OTH", "D", 4, 0)]
    );
    // The option moves the cut; 0 turns the attempt timer off.
    assert_eq!(
        summary(&conns(&one_sided, &["--tcp-attempt-delay", "2.5"])),
        [("S0", "SD", 3, 0), ("OTH", "D", 6, 0)]
    );
    assert_eq!(
        summary(&conns(&one_sided, &["--tcp-attempt-delay", "0"])),
        [("S0", "SD", 9, 0)]
    );
}

/// A connection closed by both sides at 1 s (its second FIN at 1.001 s), then one more client
/// ACK `after` the second FIN.
fn closed_then(after: i64) -> Vec<(i64, Vec<u8>)> {
    let mut s = Session::new("10.0.0.1:40000", "10.0.0.2:80", 1000, 5000);
    s.handshake(T0)
        .fin(T0 + S, true)
        .fin(T0 + S + 1000, false)
        .ack(T0 + S + 1000 + after, true);
    s.packets
}

#[test]
fn a_closed_connection_lingers_for_the_close_delay() {
    let d = scratch("zeek-close");
    let before = cap(&d, "before.pcap", &closed_then(5 * S - 1));
    assert_eq!(summary(&conns(&before, &[])), [("SF", "ShAFf", 4, 2)]);
    let at = cap(&d, "at.pcap", &closed_then(5 * S));
    assert_eq!(
        summary(&conns(&at, &[])),
        [("SF", "ShAFf", 3, 2), ("OTH", "A", 1, 0)]
    );
    assert_eq!(conns(&before, &["--tcp-close-delay", "1"]).len(), 2);
    assert_eq!(conns(&at, &["--tcp-close-delay", "5.5"]).len(), 1);
    // Not a number of seconds: bad usage, said with the option's name.
    for bad in ["abc", "nan", "-1", "1e12"] {
        let (code, _, _, err) = read(&at, &["--tcp-close-delay", bad]);
        assert_eq!(code, 2, "{bad}: {err}");
        assert!(err.contains("--tcp-close-delay"), "{bad}: {err}");
    }
}

#[test]
fn a_fin_as_a_sides_first_packet_gets_the_partial_close_delay() {
    let d = scratch("zeek-partial");
    // Mid-stream: client data (no SYN seen), then the server's first packet is its FIN; the
    // client keeps sending without closing. 3 s after the FIN the connection is given up.
    let p = |late: i64| {
        let c = addr("10.0.0.1:40000");
        let s = addr("10.0.0.2:80");
        vec![
            (T0, pcapgen::tcp(c, s, ACK | PSH, 100, 500, 65535, b"hello")),
            (T0 + S, pcapgen::tcp(s, c, FIN | ACK, 500, 105, 65535, b"")),
            (
                T0 + S + late,
                pcapgen::tcp(c, s, ACK | PSH, 105, 501, 65535, b"more"),
            ),
        ]
    };
    let before = cap(&d, "before.pcap", &p(3 * S - 1));
    assert_eq!(conns(&before, &[]).len(), 1);
    let at = cap(&d, "at.pcap", &p(3 * S));
    assert_eq!(conns(&at, &[]).len(), 2);
    assert_eq!(conns(&before, &["--tcp-partial-close-delay", "2"]).len(), 2);
}

#[test]
fn a_reset_after_the_own_fin_gets_the_reset_delay() {
    let d = scratch("zeek-reset");
    // The client closes, then resets 1 s later while the server is still open; the server's
    // late data comes `late` after the RST.
    let p = |late: i64| {
        let mut s = Session::new("10.0.0.1:40000", "10.0.0.2:80", 1000, 5000);
        s.handshake(T0).fin(T0 + S, true);
        let (c, srv) = (s.client, s.server);
        s.packets
            .push((T0 + 2 * S, pcapgen::tcp(c, srv, RST, 1002, 0, 0, b"")));
        s.packets.push((
            T0 + 2 * S + late,
            pcapgen::tcp(srv, c, ACK | PSH, 5001, 1002, 65535, b"late"),
        ));
        s.packets
    };
    let before = cap(&d, "before.pcap", &p(5 * S - 1));
    assert_eq!(summary(&conns(&before, &[])), [("RSTO", "ShAFRd", 4, 2)]);
    let at = cap(&d, "at.pcap", &p(5 * S));
    assert_eq!(conns(&at, &[]).len(), 2);
    assert_eq!(conns(&before, &["--tcp-reset-delay", "0.5"]).len(), 2);
}

#[test]
fn bad_checksums_verified_for_files_ignored_with_dash_c() {
    let d = scratch("zeek-csum");
    let mut s = Session::new("10.0.0.1:40000", "10.0.0.2:80", 1000, 5000);
    s.handshake(T0)
        .data(T0 + 10_000, true, 100)
        .data(T0 + 20_000, false, 300)
        .close(T0 + 30_000);
    // The server's data segment with a bad TCP checksum.
    spoil_l4(&mut s.packets[4].1, 6);
    let p = cap(&d, "tcp.pcap", &s.packets);
    let (code, verified, msgs, err) = read(&p, &[]);
    assert_eq!(code, 0, "{err}");
    // Not counted, no `d`: only `c`; the client's FIN acknowledges the data the capture
    // (as seen) never held: a content gap `g` right after the client's `F`.
    assert_eq!(summary(&verified), [("SF", "ShADcFgf", 5, 2)]);
    let stop = msgs.iter().find(|m| m.contains("capture:")).unwrap();
    assert!(stop.contains("bad_checksum=1"), "{stop}");
    for ignore in [&["-C"][..], &["--checksums", "ignore"]] {
        assert_eq!(
            summary(&conns(&p, ignore)),
            [("SF", "ShADdFf", 5, 3)],
            "{ignore:?}"
        );
    }
    assert_eq!(
        summary(&conns(&p, &["--checksums", "verify"])),
        summary(&verified)
    );
    // -C and --checksums verify contradict each other: bad usage.
    let (code, _, _, err) = read(&p, &["-C", "--checksums", "verify"]);
    assert_eq!(code, 2, "{err}");

    // A connection whose only packets were bad: OTH with no packets and a `C`.
    let mut only = vec![udp(T0)];
    spoil_l4(&mut only[0].1, 17);
    let only = cap(&d, "udp-bad.pcap", &only);
    assert_eq!(summary(&conns(&only, &[])), [("OTH", "C", 0, 0)]);
    assert_eq!(summary(&conns(&only, &["-C"])), [("S0", "D", 1, 0)]);

    // A bad IPv4 header checksum: Zeek drops the packet before any connection sees it.
    let mut ip = vec![udp(T0)];
    ip[0].1[10] ^= 0x01;
    let ip = cap(&d, "ip-bad.pcap", &ip);
    let (code, c, msgs, err) = read(&ip, &[]);
    assert_eq!(code, 0, "{err}");
    assert!(c.is_empty(), "{c:?}");
    assert!(
        msgs.iter().any(|m| m.contains("bad_ip_checksum=1")),
        "{msgs:?}"
    );
    assert_eq!(summary(&conns(&ip, &["-C"])), [("S0", "D", 1, 0)]);
}

#[test]
fn mostly_bad_checksums_in_one_direction_are_said_once_naming_the_option() {
    let d = scratch("zeek-offload");
    // 12 short UDP exchanges whose client side all carry bad checksums (a capture on the
    // client, its NIC filling the checksums in after the capture point).
    let mut p = Vec::new();
    for n in 0..12u16 {
        let c = addr(&format!("10.0.0.1:{}", 6000 + n));
        let srv = addr("10.0.0.2:53");
        let mut q = pcapgen::udp(c, srv, b"query");
        spoil_l4(&mut q, 17);
        p.push((T0 + n as i64 * 1000, q));
        p.push((T0 + n as i64 * 1000 + 500, pcapgen::udp(srv, c, b"answer")));
    }
    let p = cap(&d, "offload.pcap", &p);
    let (code, c, msgs, err) = read(&p, &[]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(c.len(), 12);
    assert!(c.iter().all(|c| c.history == "Cd" && c.orig_pkts == 0));
    assert_eq!(err.matches("have bad checksums").count(), 1, "{err}");
    assert!(err.contains("10 of 10 packets from originators"), "{err}");
    assert!(err.contains("--checksums ignore (-C)"), "{err}");
    let said: Vec<_> = msgs
        .iter()
        .filter(|m| m.contains("have bad checksums"))
        .collect();
    assert_eq!(said.len(), 1, "{msgs:?}");
    // Counted with -C, and nothing to say.
    let (code, c, msgs, err) = read(&p, &["-C"]);
    assert_eq!(code, 0, "{err}");
    assert!(c.iter().all(|c| c.history == "Dd" && c.orig_pkts == 1));
    assert!(!err.contains("bad checksums") && !msgs.iter().any(|m| m.contains("bad checksums")));
}

/// The corpus file `rel`, or None (said on stderr) when the corpus is absent.
fn corpus(rel: &str) -> Option<PathBuf> {
    let Some(dir) = corpus_dir() else {
        eprintln!("SKIP: capture corpus ../shared/corpus is absent; corpus checks not run");
        return None;
    };
    let p = dir.join(rel);
    assert!(p.exists(), "{} missing from the corpus", p.display());
    // Logs are written next to the capture by `read`: work on a copy in a scratch directory.
    let d = scratch(&format!("zeek-corpus-{}", rel.replace('/', "_")));
    let copy = d.join(p.file_name().unwrap());
    std::fs::copy(&p, &copy).unwrap();
    Some(copy)
}

#[test]
fn corpus_one_sided_ssh_captures_split_at_the_attempt_delay() {
    // zeek/15: only the client's side of 20 SSH sessions. Five go on for more than 5 s after
    // their SYN without an answer: each is an S0 "SAD" attempt and a second connection
    // without S. 25 rows, each as in Zeek's baseline
    // (testing/btest/Baseline/scripts.base.protocols.ssh.half-duplex-client/conn.log).
    let Some(p) = corpus("zeek/15-ssh-client-half-duplex/ssh.client-side-half-duplex.pcap") else {
        return;
    };
    let c = conns(&p, &[]);
    let got: Vec<(u16, &str, &str, u64)> = c
        .iter()
        .map(|c| {
            (
                c.sport.unwrap(),
                c.state.as_str(),
                c.history.as_str(),
                c.orig_pkts,
            )
        })
        .collect();
    let want = [
        (51880, "S0", "SAD", 19),
        (51880, "SH", "DAF", 6),
        (57189, "S0", "SAD", 21),
        (57189, "SH", "DAF", 17),
        (57191, "SH", "SADF", 23),
        (56594, "S0", "SAD", 13),
        (56594, "SH", "DAF", 4),
        (56821, "SH", "SADF", 26),
        (56837, "SH", "SADF", 25),
        (56845, "SH", "SADF", 26),
        (56875, "S0", "SAD", 12),
        (56875, "SH", "ADF", 7),
        (56878, "SH", "SADF", 25),
        (56940, "SH", "SADF", 14),
        (57831, "SH", "SADF", 23),
        (59246, "SH", "SADF", 32),
        (41164, "S0", "SAD", 20),
        (41164, "SH", "DAF", 12),
        (33910, "SH", "SADF", 33),
        (41268, "SH", "SADF", 24),
        (52294, "SH", "SADF", 36),
        (51489, "SH", "SADF", 42),
        (58641, "SH", "SADF", 16),
        (58646, "SH", "SADF", 179),
        (58649, "SH", "SADF", 183),
    ];
    assert_eq!(got, want);
    assert!(c.iter().all(|c| c.resp_pkts == 0));
    // Without the attempt timer they would be 20 whole sessions.
    assert_eq!(conns(&p, &["--tcp-attempt-delay", "0"]).len(), 20);

    // zeek/08 one-sided-2745: only the server's SYN-ACK, ACK, FIN of two connections,
    // 10.6 s and 36.8 s long: the SYN-ACK's receiver is the originator (^); no originator
    // SYN, so no attempt timer: SHR "^haf", 0 / 3 packets each (Zeek's conn-size-flip
    // baseline).
    let Some(p) = corpus("zeek/08-one-sided/one-sided-2745.pcap") else {
        return;
    };
    assert_eq!(
        summary(&conns(&p, &[])),
        [("SHR", "^haf", 0, 3), ("SHR", "^haf", 0, 3)]
    );
    // ctu-64702-888: starts at the SYN-ACK too, then both sides, ends with a RST after both
    // FINs: one connection, 8 / 8 packets, "^hAfdtFr" (the same baseline).
    let Some(p) = corpus("zeek/08-one-sided/ctu-64702-888.pcap") else {
        return;
    };
    assert_eq!(summary(&conns(&p, &[])), [("SF", "^hAfdtFr", 8, 8)]);

    // ndpi ssh_unidirectional: despite its name both sides are there (13 packets: SYN,
    // SYN-ACK, ..., both FINs, the server's last ACK 1.8 ms after the second FIN): SF, and
    // the duration stops at the second FIN (0.548656 s), as Zeek's clock does.
    let Some(p) = corpus("ndpi/N-ssh_unidirectional/ssh_unidirectional.pcap") else {
        return;
    };
    assert_eq!(summary(&conns(&p, &[])), [("SF", "ShAdDafF", 7, 6)]);
    let out = Command::new(bin("ipclog"))
        .arg("-r")
        .arg(&p)
        .args(["--json", "-", "-f", "/dev/null"])
        .output()
        .unwrap();
    let json = String::from_utf8_lossy(&out.stdout);
    assert!(json.contains("\"duration\":0.548656"), "{json}");
}

#[test]
fn corpus_retransmission_after_exactly_the_tcp_timeout_is_a_new_connection() {
    // zeek/03: 10.0.0.1:51889 sends 18 bytes at 629503200.000030, the server ACKs at
    // .000040, and the same 18 bytes come again at 629503500.000040: exactly 300 s after the
    // last packet. `last + timeout <= now`: the first connection timed out ("Da", OTH), the
    // retransmission is a new one ("D"), as in Zeek's expire-all-timers baseline.
    let Some(p) = corpus("zeek/03-retransmit-timeout-pcapng/retransmit-timeout.pcapng") else {
        return;
    };
    let (code, c, msgs, err) = read(&p, &[]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(summary(&c), [("OTH", "Da", 1, 1), ("OTH", "D", 1, 0)]);
    assert!(msgs.iter().any(|m| m.contains("1 timed out")), "{msgs:?}");
    // A timeout 1 s longer keeps them one connection.
    assert_eq!(
        summary(&conns(&p, &["--tcp-timeout", "301"])),
        [("OTH", "DaT", 2, 1)]
    );
}

#[test]
fn corpus_bad_checksum_traces() {
    // zeek/05: one SYN with a bad TCP checksum (IP header fine): Zeek's bad-checksum-syn
    // baseline is OTH, history "C", 0 / 0 packets. With -C it is an ordinary attempt.
    let Some(p) = corpus("zeek/05-bad-checksum-syn/syn-bad.pcap") else {
        return;
    };
    assert_eq!(summary(&conns(&p, &[])), [("OTH", "C", 0, 0)]);
    assert_eq!(summary(&conns(&p, &["-C"])), [("S0", "S", 1, 0)]);
    // zeek/09: a DNS query and its answer, both with bad UDP checksums: OTH "Cc", 0 / 0
    // (Zeek's udp-corrupt baseline); with -C a normal exchange.
    let Some(p) = corpus("zeek/09-udp-bad-checksum/dns-corrupt.pcap") else {
        return;
    };
    assert_eq!(summary(&conns(&p, &[])), [("OTH", "Cc", 0, 0)]);
    assert_eq!(summary(&conns(&p, &["-C"])), [("SF", "Dd", 1, 1)]);
    // zeek/02: every packet has a bad IPv4 header checksum: all 39 dropped before any
    // connection (no row), counted in the summary and said once at the end, naming -C;
    // Zeek's own test reads it with -C.
    let Some(p) = corpus("zeek/02-retransmit-fast009/retransmit-fast009.pcap") else {
        return;
    };
    let (code, c, msgs, err) = read(&p, &[]);
    assert_eq!(code, 0);
    assert!(c.is_empty(), "{c:?}");
    assert!(
        msgs.iter().any(|m| m.contains("bad_ip_checksum=39")),
        "{msgs:?}"
    );
    let said = "39 of 39 packets have bad IPv4 header checksums and were dropped; \
                use --checksums ignore (-C) to count them";
    assert_eq!(err.matches(said).count(), 1, "{err}");
    assert_eq!(msgs.iter().filter(|m| m.contains(said)).count(), 1);
    assert!(
        msgs[0].contains("ipclog started"),
        "the warning is within the run: {msgs:?}"
    );
    assert_eq!(summary(&conns(&p, &["-C"])).len(), 1);
}

#[test]
fn corpus_rejected_syns_and_port_reuse() {
    // zeek/13: 192.168.0.4 tries ports 26242 and 26245 three times each, every SYN answered
    // by a RST: a SYN on a connection a side has closed is a new connection (Zeek's IsReuse),
    // six REJ "Sr" rows; then five POP3 sessions SF "ShAdDafF". Packet counts as in Zeek's
    // pop3 baseline; durations stop at the second FIN (0.163506 s for port 26272).
    let Some(p) = corpus("zeek/13-pop3-rej-portreuse/pop3.pcap") else {
        return;
    };
    let c = conns(&p, &[]);
    let got: Vec<(u16, &str, &str, u64, u64)> = c
        .iter()
        .map(|c| {
            let s = c.state.as_str();
            (
                c.sport.unwrap(),
                s,
                c.history.as_str(),
                c.orig_pkts,
                c.resp_pkts,
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            (26242, "REJ", "Sr", 1, 1),
            (26242, "REJ", "Sr", 1, 1),
            (26245, "REJ", "Sr", 1, 1),
            (26245, "REJ", "Sr", 1, 1),
            (26242, "REJ", "Sr", 1, 1),
            (26245, "REJ", "Sr", 1, 1),
            (26272, "SF", "ShAdDafF", 6, 6),
            (26284, "SF", "ShAdDafF", 9, 9),
            (26304, "SF", "ShAdDafF", 6, 6),
            (26308, "SF", "ShAdDafF", 9, 10),
            (26383, "SF", "ShAdDafF", 22, 30),
        ]
    );
    let out = Command::new(bin("ipclog"))
        .arg("-r")
        .arg(&p)
        .args(["--json", "-", "-f", "/dev/null"])
        .output()
        .unwrap();
    let json = String::from_utf8_lossy(&out.stdout);
    let line = json
        .lines()
        .find(|l| l.contains("\"event\":\"close\"") && l.contains("\"id.orig_p\":26272"))
        .unwrap();
    assert!(line.contains("\"duration\":0.163506"), "{line}");
}

#[test]
fn corpus_fin_retransmissions_after_the_close_delay_are_new_connections() {
    // suricata-verify S04: both FINs by 0.2075 s (client 49584 <-> server 443), then the
    // server retransmits its FIN (with 31 bytes) at 0.44, 0.67, 1.13, 2.03, 3.82, 7.40, 14.58,
    // 28.91 and 57.58 s. The close was complete at 0.2075 s: the connection is forgotten 5 s
    // later (tcp_close_delay), so the FINs up to 3.82 s are still its own (`t`), the one at
    // 7.40 s opens a new connection (the server its originator, history "F", SH), forgotten
    // 5 s after that FIN, and so on: 1 + 4 rows. Frame 8 (2096 bytes from the server, a
    // coalesced segment) has a bad TCP checksum: verified, it is a `c`, not counted, and the
    // client's ACK of its bytes shows the gap (`g`).
    let Some(p) = corpus("suricata-verify/S04-tls-fin-lastack/input.pcap") else {
        return;
    };
    let late = ("SH", "F", 1, 0);
    assert_eq!(
        summary(&conns(&p, &[])),
        [("SF", "ShADadcgFft", 10, 14), late, late, late, late]
    );
    assert_eq!(
        summary(&conns(&p, &["-C"])),
        [("SF", "ShADadFft", 10, 15), late, late, late, late]
    );
    // A close delay past the last retransmission keeps them all in the one connection.
    assert_eq!(
        summary(&conns(&p, &["-C", "--tcp-close-delay", "60"])),
        [("SF", "ShADadFft", 10, 19)]
    );
}
