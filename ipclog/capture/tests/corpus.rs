//! The real-world capture corpus (../shared/corpus): every file read to the end with every
//! packet accounted for, and the traces with a documented outcome give the conn_state, history
//! and counts read off their packets (tcpdump -nn -r) under Zeek's definitions.

mod common;

use common::*;
use ipclog_capture::CaptureArgs;
use shared::event::ConnState;
use shared::event::TcpState;
use shared::event::ZeekState;

fn state_hist(e: &shared::event::ConnEvent) -> (&str, &str) {
    (
        e.zeek_state.unwrap().as_str(),
        e.history.as_deref().unwrap(),
    )
}

#[test]
fn every_corpus_capture_reads_to_the_end_with_every_packet_accounted_for() {
    let Some(dir) = e2e::bins::corpus_dir() else {
        eprintln!("SKIP: capture corpus ../shared/corpus is absent");
        return;
    };
    let mut files = Vec::new();
    let mut stack = vec![dir];
    while let Some(d) = stack.pop() {
        for ent in std::fs::read_dir(&d).unwrap() {
            let p = ent.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "pcap" || x == "pcapng") {
                files.push(p);
            }
        }
    }
    files.sort();
    assert!(files.len() >= 40, "corpus has {} captures", files.len());
    let mut total = 0;
    for f in &files {
        let (events, sum) = read(f);
        assert!(sum.packets > 0, "{}: no packets", f.display());
        assert!(
            !sum.dropped.iter().any(|(k, _)| k == "damaged_record"),
            "{}: {}",
            f.display(),
            sum.describe()
        );
        check_accounting(&events, &sum, &f.display().to_string());
        total += sum.packets;
    }
    eprintln!(
        "{} captures, {total} packets, all accounted for",
        files.len()
    );
}

#[test]
fn zeek_rst_variants_match_zeeks_baseline() {
    // Zeek's own btest baseline for these four traces: R/OTH, SR/RSTOS0, SaR/RSTOS0, SaFR/OTH.
    for (file, state, hist) in [
        ("single-rst.pcap", "OTH", "R"),
        ("syn-then-rst.pcap", "RSTOS0", "SR"),
        ("syn-then-ack-then-rst.pcap", "RSTOS0", "SaR"),
        ("syn-then-stuff-then-rst.pcap", "OTH", "SaFR"),
    ] {
        let Some(p) = corpus(&format!("zeek/04-rst-variants/{file}")) else {
            return;
        };
        let (ev, sum) = read(&p);
        check_accounting(&ev, &sum, file);
        let c = closes(&ev);
        assert_eq!(c.len(), 1, "{file}");
        assert_eq!(state_hist(c[0]), (state, hist), "{file}");
        assert_eq!(c[0].state, ConnState::Tcp(TcpState::Close), "{file}");
    }
}

#[test]
fn unanswered_syn_is_s0() {
    let Some(p) = corpus("suricata-verify/S01-single-syn-unanswered/input.pcap") else {
        return;
    };
    let (ev, _) = read(&p);
    let c = closes(&ev);
    assert_eq!(c.len(), 1);
    assert_eq!(state_hist(c[0]), ("S0", "S"));
    let k = c[0].counters.unwrap();
    assert_eq!((k.orig_pkts, k.resp_pkts, k.orig_ip_bytes), (1, 0, 52));
    assert_eq!(c[0].orig.dport, Some(25));
}

#[test]
fn rejected_syns_and_port_reuse() {
    // 192.168.0.4:26242 -> :110 sends the same SYN three times, each answered by RST-ACK:
    // each SYN after the reset is a new connection, each one REJ "Sr".
    let Some(p) = corpus("zeek/13-pop3-rej-portreuse/pop3.pcap") else {
        return;
    };
    let (ev, sum) = read(&p);
    check_accounting(&ev, &sum, "pop3");
    for port in [26242, 26245] {
        let c = close_by_sport(&ev, port);
        assert_eq!(c.len(), 3, "port {port}");
        for e in &c {
            assert_eq!(state_hist(e), ("REJ", "Sr"));
            let k = e.counters.unwrap();
            assert_eq!((k.orig_pkts, k.resp_pkts), (1, 1));
            assert_eq!(e.anomalies.resets, 1);
        }
        let mut uids: Vec<_> = c.iter().map(|e| e.uid.clone()).collect();
        uids.dedup();
        assert_eq!(uids.len(), 3, "each reuse is its own connection");
    }
    // The completed POP3 sessions close normally: SF.
    let sf = closes(&ev)
        .into_iter()
        .filter(|e| e.zeek_state == Some(ZeekState::Sf))
        .count();
    assert_eq!(sf, 5);
    assert_eq!(sum.flows, 11);
}

#[test]
fn one_sided_client_only_capture() {
    // Only the client's 11 packets: ACK, three requests (0:397, 397:795, 795:1193), ACKs,
    // FIN at 1193. No SYN seen and the server never heard: SH, history ADF.
    let Some(p) =
        corpus("suricata-verify/S06-oneside-nosyn/simple_http_download.onesided.nosyn.pcap")
    else {
        return;
    };
    let (ev, _) = read(&p);
    let c = closes(&ev);
    assert_eq!(c.len(), 1);
    assert_eq!(state_hist(c[0]), ("SH", "ADF"));
    let k = c[0].counters.unwrap();
    assert_eq!((k.orig_pkts, k.resp_pkts), (11, 0));
    assert_eq!(k.orig_bytes, Some(1193));
    assert_eq!(c[0].orig.dport, Some(80));
}

#[test]
fn one_sided_server_only_capture_flips_roles() {
    // Only the server side (port 1433/281): SYN-ACK, ACK, FIN. The SYN-ACK's receiver is the
    // originator (^), who was never seen: SHR with history ^haf.
    let Some(p) = corpus("zeek/08-one-sided/one-sided-2745.pcap") else {
        return;
    };
    let (ev, sum) = read(&p);
    check_accounting(&ev, &sum, "one-sided-2745");
    let c = closes(&ev);
    assert_eq!(c.len(), 2);
    for e in c {
        assert_eq!(state_hist(e), ("SHR", "^haf"));
        let k = e.counters.unwrap();
        assert_eq!((k.orig_pkts, k.resp_pkts), (0, 3));
        assert_eq!(e.orig.sport, Some(2745));
    }
}

#[test]
fn client_half_duplex_ssh_sessions() {
    // zeek/15: only client->server packets of 20 SSH sessions: SYN, ACKs, data, FIN -> SH SADF.
    // Five of them go on for more than tcp_attempt_delay (5 s) after their SYN: each is cut
    // there into an S0 "SAD" attempt and a new SH connection without the S (25 rows, as in
    // Zeek's baseline; tests/tests/capture_zeek.rs checks them one by one).
    let Some(p) = corpus("zeek/15-ssh-client-half-duplex/ssh.client-side-half-duplex.pcap") else {
        return;
    };
    let (ev, sum) = read(&p);
    check_accounting(&ev, &sum, "half-duplex");
    let c = closes(&ev);
    assert_eq!(c.len(), 25);
    for e in &c {
        assert_eq!(e.counters.unwrap().resp_pkts, 0);
        assert_eq!(e.orig.dport, Some(22));
    }
    let first = close_by_sport(&ev, 51880);
    assert_eq!(state_hist(first[0]), ("S0", "SAD"));
    assert_eq!(state_hist(first[1]), ("SH", "DAF"));
    let whole = close_by_sport(&ev, 56821);
    assert_eq!(state_hist(whole[0]), ("SH", "SADF"));
}

#[test]
fn acknowledged_but_missing_data_is_a_content_gap() {
    // zeek/07 (Zeek's miss_end_data.pcap): the server's FIN comes at seq 2903 without any of
    // the 2902 bytes before it in the trace, and the client acknowledges 2904. Zeek's
    // baseline conn.log: SF, history ShADafgF (the `g` at that ACK, before the client's
    // FIN), 538 / 2902 bytes, 5 / 4 packets; its content_gap event: responder, seq 1, 2902.
    let Some(p) = corpus("zeek/07-miss-end-data-gap/miss_end_data.pcap") else {
        return;
    };
    let (ev, _) = read(&p);
    let c = closes(&ev);
    assert_eq!(c.len(), 1);
    assert_eq!(state_hist(c[0]), ("SF", "ShADafgF"));
    let k = c[0].counters.unwrap();
    assert_eq!((k.orig_bytes, k.resp_bytes), (Some(538), Some(2902)));
    assert_eq!((k.orig_pkts, k.resp_pkts), (5, 4));
}

#[test]
fn capture_starting_mid_connection() {
    // zeek/06 starts with the server's SYN-ACK: roles flip (^), then the exchange and both FINs.
    let Some(p) = corpus("zeek/06-missing-syn-midstream/missing-syn.pcap") else {
        return;
    };
    let (ev, _) = read(&p);
    let c = closes(&ev);
    assert_eq!(c.len(), 1);
    assert_eq!(state_hist(c[0]), ("SF", "^hADdFaf"));
    assert_eq!(c[0].orig.src.to_string(), "141.42.64.125");
    assert_eq!(c[0].orig.dport, Some(80));
    let k = c[0].counters.unwrap();
    assert_eq!((k.orig_pkts, k.resp_pkts), (11, 10));
    // The client's first request is seq 1:99; it sent 98 bytes in all.
    assert_eq!(k.orig_bytes, Some(98));
}

#[test]
fn retransmissions_counted_by_threshold() {
    // zeek/02: the server retransmits three segments (frames 32, 34, 36) a few hundred ms after
    // the originals; the client resets at the end. Bad IP checksums throughout: verified (a
    // file's default, as in Zeek) every packet is dropped; Zeek's own test reads it with -C.
    let Some(p) = corpus("zeek/02-retransmit-fast009/retransmit-fast009.pcap") else {
        return;
    };
    let (ev, sum) = read(&p);
    check_accounting(&ev, &sum, "retransmit-fast009 verified");
    assert!(closes(&ev).is_empty());
    assert_eq!(sum.bad_checksum, 39);
    assert!(sum.dropped.contains(&("bad_ip_checksum".to_string(), 39)));
    let ignore = CaptureArgs {
        ignore_checksums: true,
        ..CaptureArgs::default()
    };
    let (ev, sum) = read_with(&p, ignore.clone());
    let c = closes(&ev);
    assert_eq!(c.len(), 1);
    assert_eq!(c[0].zeek_state, Some(ZeekState::Rsto));
    assert!(c[0].history.as_deref().unwrap().contains('t'));
    assert_eq!(c[0].anomalies.retransmits, 0, "none slower than 1000 ms");
    assert_eq!(sum.bad_checksum, 0, "ignored: not checked");
    let k = c[0].counters.unwrap();
    assert_eq!((k.orig_pkts, k.resp_pkts), (17, 22));
    let fast = CaptureArgs {
        retransmit: 100,
        ..ignore.clone()
    };
    let (ev, _) = read_with(&p, fast);
    assert_eq!(closes(&ev)[0].anomalies.retransmits, 3);
    let off = CaptureArgs {
        retransmit: 0,
        ..ignore
    };
    let (ev, _) = read_with(&p, off);
    assert_eq!(closes(&ev)[0].anomalies.retransmits, 0);
}

#[test]
fn duplicated_trace_shows_scaled_retransmission_history() {
    // zeek/19: every packet appears twice 1 us apart; the two SYNs (S, SYN-ACK) count as
    // SYN retransmissions, and the responder's >= 10 retransmitted data segments give "tt".
    let Some(p) = corpus("zeek/19-http-rxmit-orig-rst/m57-long-49583-80.pcap") else {
        return;
    };
    let (ev, _) = read(&p);
    let c = closes(&ev);
    assert_eq!(c.len(), 1);
    assert_eq!(state_hist(c[0]), ("RSTO", "ShADTadttfR"));
    assert_eq!(c[0].anomalies.syn_retransmits, 2);
    let no_syn = CaptureArgs {
        syn: 0,
        ..CaptureArgs::default()
    };
    let (ev, _) = read_with(&p, no_syn);
    assert_eq!(closes(&ev)[0].anomalies.syn_retransmits, 0);
}

#[test]
fn rst_after_fin_ignored_in_mode_1() {
    // S05: both FINs, then the client's RST: mode 1 ignores it, mode 2 counts it, 0 never.
    let Some(p) = corpus("suricata-verify/S05-tls-fin-rst/input.pcap") else {
        return;
    };
    for (mode, want) in [(1u8, 0u32), (2, 1), (0, 0)] {
        let args = CaptureArgs {
            rst: mode,
            ..CaptureArgs::default()
        };
        let (ev, _) = read_with(&p, args);
        let c = closes(&ev);
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].zeek_state, Some(ZeekState::Rsto));
        assert_eq!(c[0].anomalies.resets, want, "--rst {mode}");
    }
}

#[test]
fn fragmented_tcp_header_is_reassembled() {
    // S08: a SYN whose 20-byte TCP header (+4) is split into three 8-byte IPv4 fragments on a
    // raw IPv4 (228) link: one S0 connection, IP length 20 + 24, frag=3.
    let Some(p) = corpus("suricata-verify/S08-defrag-ipv4-syn/frag-ip-tcp-syn.pcap") else {
        return;
    };
    let (ev, sum) = read(&p);
    check_accounting(&ev, &sum, "S08");
    assert_eq!(sum.link_type, "IPV4");
    let c = closes(&ev);
    assert_eq!(c.len(), 1);
    assert_eq!(state_hist(c[0]), ("S0", "S"));
    assert_eq!(c[0].anomalies.fragments, 3);
    assert_eq!(c[0].counters.unwrap().orig_ip_bytes, 44);
    assert_eq!(c[0].orig.dport, Some(8080));
    assert_eq!(sum.fragments_merged, 2);
    // Reassembled either way; only the anomaly count depends on --fragment.
    let off = CaptureArgs {
        fragment: 0,
        ..CaptureArgs::default()
    };
    let (ev, _) = read_with(&p, off);
    assert_eq!(closes(&ev)[0].anomalies.fragments, 0);
    assert_eq!(closes(&ev)[0].counters.unwrap().orig_pkts, 1);
}

#[test]
fn ipv6_fragments_on_raw_ipv6_link() {
    // S09: 1000 bytes of TCP data in three IPv6 fragments on link type 229.
    let Some(p) = corpus("suricata-verify/S09-defrag-ipv6-tcp/frag-ip-tcp.pcap") else {
        return;
    };
    let (ev, sum) = read(&p);
    check_accounting(&ev, &sum, "S09");
    assert_eq!(sum.link_type, "IPV6");
    let c = closes(&ev);
    assert_eq!(c.len(), 1);
    assert_eq!(c[0].anomalies.fragments, 3);
    let k = c[0].counters.unwrap();
    assert_eq!((k.orig_pkts, k.orig_bytes), (1, Some(1000)));
}

#[test]
fn ipv6_fragmented_dns_and_a_lone_fragment() {
    // zeek/17: a lone last fragment of datagram 1 (never completes: counted incomplete), and a
    // DNS answer in three fragments (0|1432, 1432|1432, 2864|374) of datagram 2.
    let Some(p) = corpus("zeek/17-frag-ipv6-dns/ipv6-fragmented-dns.pcap") else {
        return;
    };
    let (ev, sum) = read(&p);
    check_accounting(&ev, &sum, "zeek/17");
    assert!(sum.dropped.contains(&("frag_incomplete".to_string(), 1)));
    let c = close_by_sport(&ev, 51851);
    assert_eq!(c.len(), 1);
    assert_eq!(c[0].anomalies.fragments, 3);
    let k = c[0].counters.unwrap();
    assert_eq!(k.resp_pkts, 1);
    // The reassembled datagram: IPv6 header and the three fragments' data (no fragment header).
    assert_eq!(k.resp_ip_bytes, 40 + 1432 + 1432 + 374);
}

#[test]
fn malformed_and_incomplete_ipv4_fragments_are_counted() {
    let Some(p1) = corpus("zeek/18-frag-ipv4-weirds/fragmented-1.pcap") else {
        return;
    };
    // 0|18 with MF (not a multiple of 8), 48|116 last, 0|304 MF (past the end): two malformed,
    // the one left never completes.
    let (ev, sum) = read(&p1);
    check_accounting(&ev, &sum, "fragmented-1");
    assert!(sum.dropped.contains(&("frag_malformed".to_string(), 2)));
    assert!(sum.dropped.contains(&("frag_incomplete".to_string(), 1)));
    // Five fragments all with MF set: never complete.
    let p3 = corpus("zeek/18-frag-ipv4-weirds/fragmented-3.pcap").unwrap();
    let (ev, sum) = read(&p3);
    check_accounting(&ev, &sum, "fragmented-3");
    assert!(sum.dropped.contains(&("frag_incomplete".to_string(), 5)));
    // Overlapping fragments out of order (0, 48, 72 last, 24) complete one datagram.
    let p4 = corpus("zeek/18-frag-ipv4-weirds/fragmented-4.pcap").unwrap();
    let (ev, sum) = read(&p4);
    check_accounting(&ev, &sum, "fragmented-4");
    let fr: Vec<_> = closes(&ev)
        .into_iter()
        .filter(|e| e.anomalies.fragments > 0)
        .collect();
    assert_eq!(fr.len(), 1);
    assert_eq!(fr[0].anomalies.fragments, 4);
}

#[test]
fn normal_close_counts_bytes_by_sequence_space() {
    // S02: handshake, GET (81 bytes), response (259 bytes), FINs from both: SF ShADadFf.
    let Some(p) = corpus("suricata-verify/S02-testmyids-netflow/testmyids.pcap") else {
        return;
    };
    let (ev, _) = read(&p);
    let c = closes(&ev);
    assert_eq!(c.len(), 1);
    assert_eq!(state_hist(c[0]), ("SF", "ShADadFf"));
    let k = c[0].counters.unwrap();
    assert_eq!((k.orig_bytes, k.resp_bytes), (Some(81), Some(259)));
    assert_eq!((k.orig_pkts, k.resp_pkts), (6, 4));
    assert_eq!(c[0].state, ConnState::Tcp(TcpState::TimeWait));
    // Open, state changes (s -> e -> w -> t), close.
    let letters: String = ev
        .iter()
        .filter(|e| e.kind != shared::event::EventKind::Close)
        .map(|e| e.state.flag())
        .collect();
    assert_eq!(letters, "sewt");
}

#[test]
fn sequence_wrap_in_a_long_transfer() {
    // zeek/12: an FTP transfer whose sequence numbers pass 2^32; sizes must stay sane.
    let Some(p) = corpus("zeek/12-ftp-bigtransfer-long/bigtransfer.pcap") else {
        return;
    };
    let (ev, sum) = read(&p);
    check_accounting(&ev, &sum, "bigtransfer");
    // The trace was cut on purpose (Zeek's test says so): the FTP data connection's server
    // data jumps from seq 1:14481 to 380370193 (tcpdump -nn -r), and the client acknowledges
    // across the hole, so its history has the responder's content gap `g` (once: fewer than
    // 10 holes) and no `G` (the client sends no data).
    let data: Vec<_> = closes(&ev)
        .into_iter()
        .filter(|e| e.orig.dport == Some(37150))
        .collect();
    assert_eq!(data.len(), 1);
    let h = data[0].history.as_deref().unwrap();
    assert_eq!((h.matches('g').count(), h.contains('G')), (1, false), "{h}");
    for e in closes(&ev) {
        let k = e.counters.unwrap();
        assert!(k.orig_bytes.unwrap() < 1 << 40 && k.resp_bytes.unwrap() < 1 << 40);
    }
}
