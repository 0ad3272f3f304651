//! Tunnels and ICMP as Zeek shows them: generated captures of every encapsulation (an inner
//! TCP exchange must give its own connection, SF with Zeek's history, naming the outer
//! connection in `tunnel_parents`), nesting up to the limit and past it, fragmented outer
//! datagrams, bad tunnel input counted by reason without a connection made up from it, the
//! corpus' GTP trace against Zeek's baseline, and ICMP keyed and shown as Zeek keys it.

mod common;

use std::net::IpAddr;
use std::path::PathBuf;

use common::*;
use e2e::pcapgen::{self, Encap, Link, Record, Session};
use shared::event::ConnEvent;

/// Packets with their times.
type Packets = Vec<(i64, Vec<u8>)>;

const T0: i64 = 1_700_000_000_000_000;
const MS: i64 = 1000;

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// This test's own scratch directory (tests run in parallel).
fn dir() -> PathBuf {
    let name = std::thread::current()
        .name()
        .unwrap_or("t")
        .replace("::", "-");
    let d = std::env::temp_dir().join(format!("e2e-{}-captunnel-{name}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn file(name: &str, packets: &[(i64, Vec<u8>)]) -> PathBuf {
    let p = dir().join(format!("{name}.pcap"));
    pcapgen::write(&p, &Link::Ethernet(vec![]), false, packets).unwrap();
    p
}

/// A complete exchange: handshake, 100 bytes up, 300 down, both FINs (10 packets).
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

fn read_checked(
    name: &str,
    packets: &[(i64, Vec<u8>)],
) -> (Vec<ConnEvent>, ipclog_capture::CaptureSummary) {
    let (ev, sum) = read(&file(name, packets));
    check_accounting(&ev, &sum, name);
    (ev, sum)
}

fn close_of(ev: &[ConnEvent], proto: u8) -> Vec<&ConnEvent> {
    closes(ev)
        .into_iter()
        .filter(|e| e.proto == proto)
        .collect()
}

fn dropped(sum: &ipclog_capture::CaptureSummary, reason: &str) -> u64 {
    sum.dropped
        .iter()
        .find(|(k, _)| k == reason)
        .map_or(0, |(_, n)| *n)
}

/// Checks the inner TCP connection of `normal()` and returns its parent's uid.
fn inner_tcp_ok<'a>(ev: &'a [ConnEvent], what: &str) -> &'a str {
    let tcp = close_of(ev, 6);
    assert_eq!(tcp.len(), 1, "{what}");
    let t = tcp[0];
    assert_eq!(t.zeek_state.unwrap().as_str(), "SF", "{what}");
    assert_eq!(t.history.as_deref(), Some("ShADadFf"), "{what}");
    let c = t.counters.unwrap();
    assert_eq!((c.orig_pkts, c.resp_pkts), (6, 4), "{what}");
    assert_eq!(
        (c.orig_bytes, c.resp_bytes),
        (Some(100), Some(300)),
        "{what}"
    );
    t.tunnel_parents
        .as_deref()
        .unwrap_or_else(|| panic!("{what}: no parent"))
}

#[test]
fn every_encapsulation_gives_the_inner_connection_naming_the_outer_one() {
    let gre = |checksum, key, seq, ethernet| Encap::Gre {
        checksum,
        key,
        seq,
        ethernet,
    };
    let kinds: Vec<(&str, Encap, u8)> = vec![
        ("ipip", Encap::IpInIp, 4),
        ("gre", gre(false, None, None, false), 47),
        (
            "gre-csum-key-seq",
            gre(true, Some(0xfeed), Some(1), false),
            47,
        ),
        ("gre-key", gre(false, Some(7), None, false), 47),
        ("gre-seq", gre(false, None, Some(9), false), 47),
        ("gre-bridged", gre(false, Some(3), None, true), 47),
        (
            "pptp",
            Encap::Pptp {
                seq: Some(1),
                ack: Some(1),
            },
            47,
        ),
        ("vxlan", Encap::Vxlan { vni: 100 }, 17),
        (
            "geneve-options",
            Encap::Geneve {
                options: vec![0, 1, 2, 3, 4, 5, 6, 7],
                ethernet: true,
            },
            17,
        ),
        (
            "geneve-ip",
            Encap::Geneve {
                options: vec![],
                ethernet: false,
            },
            17,
        ),
        (
            "gtp",
            Encap::Gtp {
                teid: 1,
                seq: None,
                npdu: None,
                extensions: vec![],
            },
            17,
        ),
        (
            "gtp-seq-npdu-ext",
            Encap::Gtp {
                teid: 2,
                seq: Some(77),
                npdu: Some(3),
                extensions: vec![vec![1, 2], vec![9; 7]],
            },
            17,
        ),
    ];
    // IPv4 and IPv6 inside IPv4 and IPv6 (IP in IP is then 4in4, 6in4, 4in6, 6in6).
    for (inner_c, inner_s) in [
        ("10.0.0.1:40000", "10.0.0.2:80"),
        ("[2001:db8::1]:40000", "[2001:db8::2]:80"),
    ] {
        for (oa, ob) in [
            ("192.0.2.1", "192.0.2.2"),
            ("2001:db8:ff::1", "2001:db8:ff::2"),
        ] {
            for (name, encap, outer_proto) in &kinds {
                let s = normal(inner_c, inner_s);
                let what = format!("{name} {inner_c} in {oa}");
                let outer_proto = match (encap, inner_c.starts_with('[')) {
                    (Encap::IpInIp, true) => 41,
                    _ => *outer_proto,
                };
                let pkts = pcapgen::tunnelled(encap, s.client.ip(), ip(oa), ip(ob), &s.packets);
                let (ev, sum) = read_checked(name, &pkts);
                let parent = inner_tcp_ok(&ev, &what);
                let outer = close_of(&ev, outer_proto);
                assert_eq!(outer[0].orig.src, ip(oa), "{what}");
                for o in &outer {
                    assert_eq!(o.tunnel_parents, None, "{what}");
                }
                // VXLAN and Geneve send to the tunnel port from another port both ways: two
                // outer UDP flows, and the inner connection names both (Zeek's set).
                let mut uids: Vec<&str> = outer.iter().map(|o| o.uid.as_deref().unwrap()).collect();
                let mut parents: Vec<&str> = parent.split(',').collect();
                uids.sort();
                parents.sort();
                assert_eq!(parents, uids, "{what}");
                let two_way = matches!(encap, Encap::Vxlan { .. } | Encap::Geneve { .. });
                assert_eq!(outer.len(), if two_way { 2 } else { 1 }, "{what}");
                let c = outer[0].counters.unwrap();
                if two_way {
                    assert_eq!((c.orig_pkts, c.resp_pkts), (6, 0), "{what}");
                    assert_eq!(outer[1].counters.unwrap().orig_pkts, 4, "{what}");
                } else {
                    assert_eq!((c.orig_pkts, c.resp_pkts), (6, 4), "{what}");
                }
                if outer_proto == 17 && !two_way {
                    // The outer UDP flow is a connection of its own, as in Zeek's conn.log.
                    assert_eq!(outer[0].zeek_state.unwrap().as_str(), "SF", "{what}");
                    assert_eq!(outer[0].history.as_deref(), Some("Dd"), "{what}");
                }
                assert_eq!(closes(&ev).len(), outer.len() + 1, "{what}");
                assert_eq!(sum.decapsulated, 10, "{what}");
                assert!(sum.dropped.is_empty(), "{what}: {}", sum.describe());
            }
        }
    }
}

#[test]
fn tunnels_nest_four_deep_and_a_fifth_is_counted_not_opened() {
    // TCP in GRE in VXLAN: each level names the one around it.
    let s = normal("10.0.0.1:40000", "10.0.0.2:80");
    let in_gre = pcapgen::tunnelled(
        &Encap::Gre {
            checksum: false,
            key: Some(5),
            seq: None,
            ethernet: false,
        },
        s.client.ip(),
        ip("172.16.0.1"),
        ip("172.16.0.2"),
        &s.packets,
    );
    let gre_client = ip("172.16.0.1");
    let in_vxlan = pcapgen::tunnelled(
        &Encap::Vxlan { vni: 1 },
        gre_client,
        ip("192.0.2.1"),
        ip("192.0.2.2"),
        &in_gre,
    );
    let (ev, sum) = read_checked("gre-in-vxlan", &in_vxlan);
    let gre_uid = inner_tcp_ok(&ev, "gre in vxlan");
    let gre = close_of(&ev, 47);
    let udp = close_of(&ev, 17);
    assert_eq!((gre.len(), udp.len()), (1, 2));
    assert_eq!(gre[0].uid.as_deref(), Some(gre_uid));
    let both = format!(
        "{},{}",
        udp[0].uid.as_deref().unwrap(),
        udp[1].uid.as_deref().unwrap()
    );
    assert_eq!(gre[0].tunnel_parents.as_deref(), Some(both.as_str()));
    assert!(udp.iter().all(|u| u.tunnel_parents.is_none()));
    assert_eq!(sum.decapsulated, 20);

    // IP in IP n times, each level between its own addresses.
    let nest = |n: usize| {
        let s = normal("10.0.0.1:40000", "10.0.0.2:80");
        let mut pkts = s.packets.clone();
        let mut client = s.client.ip();
        for level in (1..=n).rev() {
            let a = ip(&format!("10.{level}.0.1"));
            let b = ip(&format!("10.{level}.0.2"));
            pkts = pcapgen::tunnelled(&Encap::IpInIp, client, a, b, &pkts);
            client = a;
        }
        pkts
    };
    let (ev, sum) = read_checked("ipip-4", &nest(4));
    inner_tcp_ok(&ev, "4 deep");
    assert_eq!(close_of(&ev, 4).len(), 4);
    assert_eq!(sum.decapsulated, 40);
    assert_eq!(dropped(&sum, "tunnel_too_deep"), 0);

    let (ev, sum) = read_checked("ipip-5", &nest(5));
    // The fifth tunnel is not opened: its packets are counted, no TCP connection is made.
    assert!(close_of(&ev, 6).is_empty());
    let ipip = close_of(&ev, 4);
    assert_eq!(ipip.len(), 5);
    assert_eq!(dropped(&sum, "tunnel_too_deep"), 10, "{}", sum.describe());
    assert_eq!(sum.decapsulated, 40);
    // The chain of parents runs from the innermost opened (10.5.0.1) out to 10.1.0.1.
    let by_src = |a: &str| ipip.iter().find(|e| e.orig.src == ip(a)).unwrap();
    for level in 2..=5 {
        let inner = by_src(&format!("10.{level}.0.1"));
        let outer = by_src(&format!("10.{}.0.1", level - 1));
        assert_eq!(inner.tunnel_parents, outer.uid, "level {level}");
    }
    assert_eq!(by_src("10.1.0.1").tunnel_parents, None);
}

#[test]
fn fragmented_outer_datagrams_are_reassembled_before_decapsulation() {
    let s = normal("10.0.0.1:40000", "10.0.0.2:80");
    let gtp = Encap::Gtp {
        teid: 1,
        seq: Some(1),
        npdu: None,
        extensions: vec![],
    };
    let pkts = pcapgen::tunnelled(
        &gtp,
        s.client.ip(),
        ip("192.0.2.1"),
        ip("192.0.2.2"),
        &s.packets,
    );
    let mut frags = Vec::new();
    for (i, (t, p)) in pkts.iter().enumerate() {
        for f in pcapgen::fragment(p, 32, 100 + i as u32) {
            frags.push((*t, f));
        }
    }
    let (ev, sum) = read_checked("gtp-fragmented", &frags);
    let parent = inner_tcp_ok(&ev, "fragmented gtp");
    let udp = close_of(&ev, 17);
    assert_eq!(udp[0].uid.as_deref(), Some(parent));
    assert_eq!(udp[0].counters.unwrap().orig_pkts, 6);
    assert!(sum.fragments_merged > 0);
    assert!(sum.dropped.is_empty(), "{}", sum.describe());
}

/// A fragment cut by the snaplen still completes its datagram for accounting, but without
/// its payload nothing can be decapsulated: counted, the outer connection kept.
#[test]
fn a_tunnel_datagram_whose_fragment_was_cut_is_counted_not_decapsulated() {
    let s = normal("10.0.0.1:40000", "10.0.0.2:80");
    let (a, b) = (ip("192.0.2.1"), ip("192.0.2.2"));
    let pkts = pcapgen::tunnelled(&Encap::IpInIp, s.client.ip(), a, b, &s.packets);
    let mut recs = Vec::new();
    for (i, (t, p)) in pkts.iter().enumerate() {
        for (j, f) in pcapgen::fragment(p, 32, 500 + i as u32)
            .into_iter()
            .enumerate()
        {
            let wire_len = f.len() as u32;
            // The second fragment of the first packet loses its last 8 bytes to the snaplen.
            let data = if i == 0 && j == 1 {
                f[..f.len() - 8].to_vec()
            } else {
                f
            };
            recs.push(Record {
                ts_us: *t,
                data,
                wire_len,
            });
        }
    }
    let path = dir().join("cut-fragment.pcap");
    std::fs::write(&path, pcapgen::pcap_bytes(101, 65535, &recs)).unwrap();
    let (ev, sum) = read(&path);
    check_accounting(&ev, &sum, "cut fragment");
    assert_eq!(
        dropped(&sum, "tunnel_not_reassembled"),
        1,
        "{}",
        sum.describe()
    );
    assert_eq!(sum.decapsulated, 9);
    // The outer connection has all ten packets; the inner one the nine it could see.
    assert_eq!(close_of(&ev, 4)[0].counters.unwrap().orig_pkts, 6);
    let tcp = close_of(&ev, 6);
    let c = tcp[0].counters.unwrap();
    assert_eq!(c.orig_pkts + c.resp_pkts, 9);
}

#[test]
fn bad_tunnel_input_is_counted_by_reason_and_makes_no_connection() {
    let s = normal("10.0.0.1:40000", "10.0.0.2:80");
    let (a, b) = (ip("192.0.2.1"), ip("192.0.2.2"));
    let wrap = |e: &Encap| pcapgen::tunnelled(e, s.client.ip(), a, b, &s.packets);
    let gre = Encap::Gre {
        checksum: true,
        key: Some(1),
        seq: Some(2),
        ethernet: false,
    };
    let edit = |pkts: &[(i64, Vec<u8>)], f: &dyn Fn(&mut Vec<u8>)| -> Vec<(i64, Vec<u8>)> {
        pkts.iter()
            .map(|(t, p)| {
                let mut p = p.clone();
                f(&mut p);
                // The header under test is broken, not the checksum (verified by default):
                // an outer UDP datagram over IPv4 goes without one (0), as VXLAN's often do.
                if p[9] == 17 {
                    p[26..28].fill(0);
                }
                (*t, p)
            })
            .collect()
    };
    // Outer IPv4 header: 20 bytes; GRE or UDP follows.
    let cases: Vec<(&str, Packets, &str, u8)> = vec![
        (
            "gre-version-3",
            edit(&wrap(&gre), &|p| p[21] |= 3),
            "tunnel_bad_header",
            47,
        ),
        (
            "gre-routing",
            edit(&wrap(&gre), &|p| p[20] |= 0x40),
            "tunnel_unsupported",
            47,
        ),
        (
            "gre-mpls",
            edit(&wrap(&gre), &|p| p[22..24].copy_from_slice(&[0x88, 0x47])),
            "tunnel_unsupported",
            47,
        ),
        (
            "vxlan-no-i-flag",
            edit(&wrap(&Encap::Vxlan { vni: 1 }), &|p| p[28] = 0),
            "tunnel_bad_header",
            17,
        ),
        (
            "vxlan-arp",
            // The inner Ethernet type (after UDP 8 + VXLAN 8 + 12 MAC bytes) says ARP.
            edit(&wrap(&Encap::Vxlan { vni: 1 }), &|p| {
                p[48..50].copy_from_slice(&[0x08, 0x06])
            }),
            "tunnel_non_ip",
            17,
        ),
        (
            "gtp-length-past-datagram",
            edit(
                &wrap(&Encap::Gtp {
                    teid: 1,
                    seq: None,
                    npdu: None,
                    extensions: vec![],
                }),
                &|p| p[30] = 0xff,
            ),
            "tunnel_bad_header",
            17,
        ),
        (
            "inner-ip-length-too-long",
            // The inner IPv4 total length (IP in IP: at 20 + 2) larger than what is carried.
            edit(&wrap(&Encap::IpInIp), &|p| p[22] = 0x7f),
            "tunnel_bad_inner",
            4,
        ),
        (
            "inner-not-ip",
            // IP in IP whose inner version nibble is 5.
            edit(&wrap(&Encap::IpInIp), &|p| p[20] = 0x55),
            "tunnel_bad_inner",
            4,
        ),
    ];
    for (name, pkts, reason, outer_proto) in cases {
        let (ev, sum) = read_checked(name, &pkts);
        assert!(
            closes(&ev)
                .iter()
                .all(|e| e.proto == outer_proto && e.tunnel_parents.is_none()),
            "{name}: only the outer connection"
        );
        assert_eq!(dropped(&sum, reason), 10, "{name}: {}", sum.describe());
        assert_eq!(sum.decapsulated, 0, "{name}");
    }

    // An inner fragment: not reassembled, counted.
    let frag = pcapgen::fragment(
        &pcapgen::udp(
            "10.0.0.1:5000".parse().unwrap(),
            "10.0.0.2:53".parse().unwrap(),
            &[1; 64],
        ),
        32,
        9,
    );
    let pkts: Vec<(i64, Vec<u8>)> = frag
        .iter()
        .map(|f| (T0, Encap::IpInIp.wrap(a, b, 0, f)))
        .collect();
    let (ev, sum) = read_checked("inner-fragment", &pkts);
    assert_eq!(closes(&ev).len(), 1);
    assert_eq!(
        dropped(&sum, "tunnel_inner_fragment"),
        3,
        "{}",
        sum.describe()
    );

    // Cut by the snaplen inside the inner headers: VXLAN (outer 20 + 8 + 8, Ethernet 14),
    // then 10 bytes of the inner IP header.
    let vx = wrap(&Encap::Vxlan { vni: 1 });
    let recs: Vec<Record> = vx
        .iter()
        .map(|(t, p)| Record {
            ts_us: *t,
            data: p[..60].to_vec(),
            wire_len: p.len() as u32,
        })
        .collect();
    let path = dir().join("vxlan-cut.pcap");
    std::fs::write(&path, pcapgen::pcap_bytes(101, 65535, &recs)).unwrap();
    let (ev, sum) = read(&path);
    check_accounting(&ev, &sum, "cut");
    assert!(closes(&ev).iter().all(|e| e.proto == 17));
    assert_eq!(dropped(&sum, "tunnel_truncated"), 10, "{}", sum.describe());
}

/// Zeek's own baseline for this trace (testing/btest/Baseline/core.tunnels.gtp.outer_ip_frag):
/// the GTP flow 239.114.155.111:2152 → 63.94.149.181:2152 udp SF `Dd` 27 pkts/4176 IP bytes
/// and 41/54070, payload 3420/52922; inside it 10.131.47.185:1923 → 79.101.110.141:80 tcp SF
/// 27/3204 and 41/52594, 2100/56702 bytes, its tunnel_parents the GTP flow's uid. Four outer
/// datagrams are first fragments whose rest is not in the trace (frames 56, 80, 90, 92), so
/// Zeek cannot decapsulate them either (41 server packets both); two of them carried server
/// data, 2880 bytes never seen: our history says so with `g` (Zeek's, ShADadfF, does not).
#[test]
fn zeek_gtp_trace_with_outer_fragments_gives_zeeks_two_connections() {
    let Some(p) = corpus("zeek/16-frag-gtp-outer-ipv4/gtp1_gn_normal_incl_fragmentation.pcap")
    else {
        return;
    };
    let (ev, sum) = read(&p);
    check_accounting(&ev, &sum, "gtp");
    let c = closes(&ev);
    assert_eq!(c.len(), 2);
    let udp = close_of(&ev, 17)[0];
    let tcp = close_of(&ev, 6)[0];
    let tuple = |e: &ConnEvent| (e.orig.src, e.orig.sport, e.orig.dst, e.orig.dport);
    assert_eq!(
        tuple(udp),
        (
            ip("239.114.155.111"),
            Some(2152),
            ip("63.94.149.181"),
            Some(2152)
        )
    );
    assert_eq!(
        tuple(tcp),
        (
            ip("10.131.47.185"),
            Some(1923),
            ip("79.101.110.141"),
            Some(80)
        )
    );
    let counts = |e: &ConnEvent| {
        let c = e.counters.unwrap();
        (
            c.orig_pkts,
            c.orig_ip_bytes,
            c.resp_pkts,
            c.resp_ip_bytes,
            c.orig_bytes,
            c.resp_bytes,
        )
    };
    assert_eq!(counts(udp), (27, 4176, 41, 54070, Some(3420), Some(52922)));
    assert_eq!(counts(tcp), (27, 3204, 41, 52594, Some(2100), Some(56702)));
    assert_eq!(
        (udp.zeek_state.unwrap().as_str(), udp.history.as_deref()),
        ("SF", Some("Dd"))
    );
    assert_eq!(
        (tcp.zeek_state.unwrap().as_str(), tcp.history.as_deref()),
        ("SF", Some("ShADadfgF"))
    );
    assert_eq!(tcp.tunnel_parents, udp.uid);
    assert_eq!(udp.tunnel_parents, None);
    assert_eq!(sum.decapsulated, 68);
    assert_eq!(
        sum.dropped,
        vec![("frag_incomplete".to_string(), 4)],
        "{}",
        sum.describe()
    );
}

#[test]
fn icmp_is_keyed_and_shown_as_zeek_does() {
    let (a, b) = (ip("10.0.0.1"), ip("10.0.0.2"));
    let (a6, b6) = (ip("2001:db8::1"), ip("2001:db8::2"));
    let mut pkts = Vec::new();
    for i in 0..2 {
        let t = T0 + i * 1000 * MS;
        pkts.push((t, pcapgen::icmp(a, b, 8, 0, b"ping")));
        pkts.push((t + MS, pcapgen::icmp(b, a, 0, 0, b"ping")));
        pkts.push((t + 2 * MS, pcapgen::icmp(a6, b6, 128, 0, b"ping")));
        pkts.push((t + 3 * MS, pcapgen::icmp(b6, a6, 129, 0, b"ping")));
        // Port unreachable from b to a, twice; and one from a to b (another connection).
        pkts.push((t + 4 * MS, pcapgen::icmp(b, a, 3, 3, &[0; 28])));
    }
    pkts.push((T0 + 5 * MS, pcapgen::icmp(a, b, 3, 3, &[0; 28])));
    let (ev, sum) = read_checked("icmp", &pkts);
    assert_eq!(sum.packets, 11);
    let icmp = close_of(&ev, 1);
    assert_eq!(icmp.len(), 3, "{icmp:#?}");
    let find = |src: IpAddr, kind: u8| {
        *icmp
            .iter()
            .find(|e| e.orig.src == src && e.icmp.unwrap().kind == kind)
            .unwrap()
    };
    let echo = find(a, 8);
    let c = echo.counters.unwrap();
    assert_eq!((c.orig_pkts, c.resp_pkts), (2, 2));
    assert_eq!((echo.orig.sport, echo.orig.dport), (None, None));
    let unreach = find(b, 3);
    assert_eq!(unreach.counters.unwrap().orig_pkts, 2);
    assert_eq!(unreach.counters.unwrap().resp_pkts, 0);
    assert_eq!(find(a, 3).counters.unwrap().orig_pkts, 1);
    let v6 = close_of(&ev, 58);
    assert_eq!(v6.len(), 1);
    assert_eq!(v6[0].counters.unwrap().resp_pkts, 2);

    // JSON: Zeek's id.orig_p = type, id.resp_p = the counterpart type or the code.
    let j = |e: &ConnEvent| {
        let v = shared::json::event_json(e);
        (v["id.orig_p"].clone(), v["id.resp_p"].clone())
    };
    assert_eq!(j(echo), (8.into(), 0.into()));
    assert_eq!(j(unreach), (3.into(), 3.into()));
    assert_eq!(j(v6[0]), (128.into(), 129.into()));
    // The line log: icmp=TYPE/CODE, ports `-`.
    let mut line = String::new();
    shared::logfmt::write_event(unreach, Default::default(), &mut line);
    assert!(line.contains(" icmp=3/3"), "{line}");
    let parsed = shared::logfmt::parse_line(line.trim_end()).unwrap();
    let shared::logfmt::LogLine::Conn(c) = parsed else {
        panic!("{line}")
    };
    assert_eq!(
        (c.sport, c.dport, c.extra("icmp")),
        (None, None, Some("3/3"))
    );
}
