//! Seed inputs for the three targets, from real material: the capture corpus in
//! `../shared/corpus` (split into runs of consecutive frames with their link type), generated
//! sessions in every link framing (tests/src/pcapgen.rs), the sample log and log lines written
//! for the corpus's connections, and the shipped lookup file.

use std::path::{Path, PathBuf};

use e2e::pcapgen::{self, Encap, Link, Session};
use ipclog_capture::CaptureArgs;
use shared::logfmt::{header_line, interface_line, program_line, write_event, WriteOptions};
use shared::sink::VecSink;

use crate::frames;

/// The repository's root.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("fuzz/ has a parent")
        .to_path_buf()
}

/// `../shared/corpus` beside the repository, when it is there.
pub fn corpus_dir() -> Option<PathBuf> {
    let d = repo_root().join("../shared/corpus");
    d.is_dir().then_some(d)
}

/// Every pcap/pcapng file of the corpus, sorted.
pub fn corpus_files() -> Vec<PathBuf> {
    let mut files = Vec::new();
    let Some(dir) = corpus_dir() else {
        return files;
    };
    let mut stack = vec![dir];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for ent in rd.flatten() {
            let p = ent.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "pcap" || x == "pcapng") {
                files.push(p);
            }
        }
    }
    files.sort();
    files
}

/// One record of a capture file: timestamp µs, wire length, captured bytes.
pub type Rec = (i64, u32, Vec<u8>);

/// A capture file's link type and records, read with libpcap.
pub fn read_capture(path: &Path) -> Option<(i32, Vec<Rec>)> {
    let mut cap = pcap::Capture::from_file(path).ok()?;
    let lt = cap.get_datalink().0;
    let mut recs = Vec::new();
    while let Ok(p) = cap.next_packet() {
        #[allow(clippy::unnecessary_cast)] // time_t/suseconds_t differ by platform
        let ts = (p.header.ts.tv_sec as i64)
            .saturating_mul(1_000_000)
            .saturating_add(p.header.ts.tv_usec as i64);
        recs.push((ts, p.header.len, p.data.to_vec()));
    }
    Some((lt, recs))
}

/// Frames per capture seed, and the most bytes one holds: long enough for a handshake, data
/// and a close, short enough that a fuzzer runs it thousands of times a second.
const SEED_FRAMES: usize = 32;
const SEED_BYTES: usize = 16 * 1024;
/// Seeds taken from one corpus file at most (spread over the file).
const SEEDS_PER_FILE: usize = 8;

/// Splits a capture's records into seed inputs of consecutive frames.
fn chunk_capture(lt: i32, recs: &[Rec], opts: u8) -> Vec<Vec<u8>> {
    let mut chunks: Vec<&[Rec]> = Vec::new();
    let mut start = 0;
    while start < recs.len() {
        let mut end = start;
        let mut bytes = 0;
        while end < recs.len()
            && end - start < SEED_FRAMES
            && bytes + recs[end].2.len() <= SEED_BYTES
        {
            bytes += recs[end].2.len();
            end += 1;
        }
        let end = end.max(start + 1);
        chunks.push(&recs[start..end]);
        start = end;
    }
    let step = chunks.len().div_ceil(SEEDS_PER_FILE).max(1);
    chunks
        .iter()
        .step_by(step)
        .map(|c| {
            let f: Vec<(i64, u32, &[u8])> = c.iter().map(|r| (r.0, r.1, &r.2[..])).collect();
            frames::encode(lt, opts, &f)
        })
        .collect()
}

/// IP packets of generated exchanges between `a` and `b` (IPv4 or IPv6): a TCP session with
/// data, a retransmission and a close, a reset one, UDP both ways, and a fragmented datagram.
fn generated_packets(a: &str, b: &str) -> Vec<(i64, Vec<u8>)> {
    let t = 1_700_000_000_000_000i64;
    let mut s = Session::new(&format!("{a}:40000"), &format!("{b}:443"), 1000, 90_000);
    s.handshake(t)
        .data(t + 3000, true, 100)
        .data(t + 4000, false, 1400);
    let seq = s.sseq.wrapping_sub(1400);
    s.resend(t + 1_500_000, false, seq, 1400)
        .ack(t + 1_600_000, true)
        .close(t + 2_000_000);
    let mut r = Session::new(&format!("{a}:40001"), &format!("{b}:80"), 0xffff_fff0, 7);
    r.syn(t + 10).synack(t + 20).rst(t + 30, true);
    let mut pkts = s.packets;
    pkts.extend(r.packets);
    let ua: std::net::SocketAddr = format!("{a}:5353").parse().expect("address");
    let ub: std::net::SocketAddr = format!("{b}:53").parse().expect("address");
    pkts.push((t + 40, pcapgen::udp(ua, ub, b"query")));
    pkts.push((t + 50, pcapgen::udp(ub, ua, b"answer")));
    let big = pcapgen::udp(ua, ub, &[7u8; 300]);
    for (i, f) in pcapgen::fragment(&big, 128, 77).into_iter().enumerate() {
        pkts.push((t + 60 + i as i64, f));
    }
    pkts.sort_by_key(|p| p.0);
    pkts
}

/// Capture seeds: corpus chunks, then generated traffic in every link framing.
pub fn capture() -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for f in corpus_files() {
        if let Some((lt, recs)) = read_capture(&f) {
            if frames::LINKTYPES.contains(&lt) {
                out.extend(chunk_capture(lt, &recs, 0));
            }
        }
    }
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
        Link::RawV6,
        Link::Null,
        Link::Loop,
    ];
    for (a, b) in [
        ("10.0.0.1", "192.0.2.7"),
        ("[2001:db8::1]", "[2001:db8::2]"),
    ] {
        let pkts = generated_packets(a, b);
        for (i, link) in links.iter().enumerate() {
            let v6 = a.starts_with('[');
            if (v6 && *link == Link::RawV4) || (!v6 && *link == Link::RawV6) {
                continue;
            }
            let framed: Vec<(i64, Vec<u8>)> =
                pkts.iter().map(|(t, ip)| (*t, link.frame(ip))).collect();
            let f: Vec<(i64, u32, &[u8])> = framed
                .iter()
                .map(|(t, d)| (*t, d.len() as u32, &d[..]))
                .collect();
            // Options: defaults, and in turn each of the non-default settings.
            let opts = [0u8, 16 | 32, 64, 128 | 4 | 2, 8 | 1][i % 5];
            out.push(frames::encode(link.linktype() as i32, opts, &f));
        }
    }
    out.extend(tunnel_seeds());
    out
}

/// The generated traffic in every tunnel ipclog opens (raw IP frames): IP in IP, GRE with
/// its optional fields and bridged, PPTP, VXLAN, Geneve with options, GTP with extension
/// headers; GRE inside VXLAN (two deep); GTP over fragmented outer datagrams.
fn tunnel_seeds() -> Vec<Vec<u8>> {
    let gre = |checksum, key, seq, ethernet| Encap::Gre {
        checksum,
        key,
        seq,
        ethernet,
    };
    let gtp = Encap::Gtp {
        teid: 5,
        seq: Some(1),
        npdu: Some(2),
        extensions: vec![vec![1, 2], vec![3; 5]],
    };
    let kinds = [
        Encap::IpInIp,
        gre(false, None, None, false),
        gre(true, Some(1), Some(2), false),
        gre(false, Some(3), None, true),
        Encap::Pptp {
            seq: Some(1),
            ack: Some(1),
        },
        Encap::Vxlan { vni: 9 },
        Encap::Geneve {
            options: vec![1; 8],
            ethernet: true,
        },
        gtp.clone(),
    ];
    let ip = |s: &str| -> std::net::IpAddr { s.parse().expect("address") };
    let (a, b) = (ip("198.51.100.1"), ip("198.51.100.2"));
    let client = ip("10.0.0.1");
    let inner = generated_packets("10.0.0.1", "192.0.2.7");
    let mut sets: Vec<Vec<(i64, Vec<u8>)>> = kinds
        .iter()
        .map(|e| pcapgen::tunnelled(e, client, a, b, &inner))
        .collect();
    let in_gre = pcapgen::tunnelled(
        &kinds[2],
        client,
        ip("172.16.0.1"),
        ip("172.16.0.2"),
        &inner,
    );
    sets.push(pcapgen::tunnelled(
        &kinds[5],
        ip("172.16.0.1"),
        a,
        b,
        &in_gre,
    ));
    let mut frags = Vec::new();
    for (i, (t, p)) in pcapgen::tunnelled(&gtp, client, a, b, &inner)
        .iter()
        .enumerate()
    {
        for f in pcapgen::fragment(p, 64, 300 + i as u32) {
            frags.push((*t, f));
        }
    }
    sets.push(frags);
    sets.iter()
        .enumerate()
        .map(|(i, pkts)| {
            let f: Vec<(i64, u32, &[u8])> = pkts
                .iter()
                .map(|(t, d)| (*t, d.len() as u32, &d[..]))
                .collect();
            frames::encode(101, [0u8, 64, 8 | 1][i % 3], &f)
        })
        .collect()
}

/// The connections of `path` (a corpus file) as log lines, as ipclog writes them.
fn log_of_capture(path: &Path) -> Option<String> {
    let (lt, recs) = read_capture(path)?;
    let mut sink = VecSink::default();
    let args = CaptureArgs::default();
    ipclog_capture::run_frames(
        lt,
        &args,
        recs.iter().map(|r| (r.0, r.1, &r.2[..])),
        &mut sink,
    )
    .ok()?;
    let mut s = String::new();
    for e in sink.events.iter().take(40) {
        write_event(e, WriteOptions { show_nat: true }, &mut s);
        s.push('\n');
    }
    Some(s)
}

/// Log seeds: the sample log, the program/header/interface lines, and the lines ipclog writes
/// for a few corpus captures (every extra key: counters, history, uid, anomalies).
pub fn logline() -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    if let Ok(b) = std::fs::read(repo_root().join("constat/sample/ipclog.log")) {
        // The whole log, and each line alone (short inputs run fastest).
        out.extend(b.split_inclusive(|&c| c == b'\n').map(<[u8]>::to_vec));
        out.push(b);
    }
    let t = chrono::DateTime::from_timestamp(1_091_716_882, 0).expect("a time");
    let mut own = String::new();
    for l in [
        program_line(t, "ipclog started"),
        program_line(t, "lost 12 events (socket buffer full)"),
        header_line(t),
        interface_line(t, true, "eth0", "192.168.0.1".parse().expect("address")),
        interface_line(t, false, "wg0", "fe80::1".parse().expect("address")),
    ] {
        own.push_str(&l);
        own.push('\n');
    }
    out.push(own.into_bytes());
    for rel in [
        "zeek/01-wikipedia-mixed/wikipedia.pcap",
        "zeek/02-retransmit-fast009/retransmit-fast009.pcap",
        "zeek/13-pop3-rej-portreuse/pop3.pcap",
        "suricata-verify/S07-ipv6-tcp-flows/input.pcap",
        "ndpi/N-dns_fragmented/dns_fragmented.pcap",
    ] {
        if let Some(log) = corpus_dir().and_then(|d| log_of_capture(&d.join(rel))) {
            out.extend(
                log.split_inclusive('\n')
                    .take(12)
                    .map(|l| l.as_bytes().to_vec()),
            );
            out.push(log.into_bytes());
        }
    }
    out
}

/// Lookup seeds: the shipped lookup file, one with every kind of line (and mistakes), and a
/// name cache as `NameCache::save` writes it.
pub fn lookup() -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    if let Ok(b) = std::fs::read(repo_root().join("lookup/constat.lookup")) {
        out.push(b);
    }
    out.push(
        b"192.168.0.2 nat-pc\n10.0.0.0/8 intranet # comment\n2001:db8::/32 doc-v6\n\
          2001:db8::1 v6-host\n8080/tcp proxy\n1194/udp openvpn\n53/sctp dns-sctp\n\
          10.1.0.0/16 bad-extra field\n10.1.2.3/16 host-bits\n99999/tcp too-big\n\
          192.168.0.2 again\n0.0.0.0/0 everything\n::/0 everything-v6\n\t \r\n"
            .to_vec(),
    );
    out.push(
        b"# constat reverse-DNS name cache: ADDRESS NAME EPOCH\n\
          192.0.2.1 host.example. 1700000000\n2001:db8::7 v6.example. 1700000001\n\
          192.0.2.1 newer.example. 1700000002\n"
            .to_vec(),
    );
    out
}

/// Tokens the mutator splices into capture inputs: link and IP header fields.
pub const CAPTURE_DICT: &[&[u8]] = &[
    b"\x08\x00",
    b"\x86\xdd",
    b"\x81\x00",
    b"\x88\xa8",
    b"\x45\x00",
    b"\x60\x00\x00\x00",
    b"\x2c",
    b"\x3a",
    b"\x00\x00\x00\x02",
    b"\x00\x00\x00\x0a",
    b"\x20\x00",
    b"\x3f\xff",
    b"\x12",
    b"\x02",
    b"\x11",
    b"\x04",
    b"\x01",
    b"\xff\xff\xff\xff\xff\xff\xff\x7f",
    b"\x00\x00\x00\x00\x00\x00\x00\x80",
    // Tunnels: protocols 4, 41, 47; UDP ports 4789, 6081, 2152; GRE types (bridging, PPP),
    // GRE flags, VXLAN's I flag, GTP's flags and G-PDU type.
    b"\x29",
    b"\x2f",
    b"\x12\xb5",
    b"\x17\xc1",
    b"\x08\x68",
    b"\x65\x58",
    b"\x88\x0b",
    b"\xb0\x00",
    b"\x30\x01",
    b"\x08\x00\x00\x00",
    b"\x34\xff",
];

/// Tokens for log lines.
pub const LOGLINE_DICT: &[&[u8]] = &[
    b"O ",
    b"S ",
    b"C ",
    b"P ",
    b"H ",
    b"I ",
    b"UP",
    b"DOWN",
    b" tcp ",
    b" udp ",
    b" icmp6 ",
    b" 255 ",
    b" 256 ",
    b"-",
    b" - ",
    b"65535",
    b"65536",
    b"18446744073709551615",
    b"18446744073709551616",
    b"2004-02-29-23:59:59",
    b"2003-02-29-24:00:60",
    b"9999-12-31-23:59:59",
    b"0000-01-01-00:00:00",
    b" orig_pkts=",
    b" history=ShADadFf",
    b" uid=C",
    b" k=",
    b"=",
    b"==",
    b" =v",
    b"\r",
    b"\n",
    b"\xc2\xa0",
    b"\xe2\x80\x83",
    b"\xe2\x80\xae",
    b"\xff",
    b"::ffff:1.2.3.4",
    b"[::1]:80",
];

/// Tokens for lookup and cache files.
pub const LOOKUP_DICT: &[&[u8]] = &[
    b"#",
    b"/",
    b"/0",
    b"/32",
    b"/33",
    b"/128",
    b"/129",
    b"/256",
    b"/tcp",
    b"/udp",
    b"/icmp",
    b"/sctp",
    b"/255",
    b"65535",
    b"65536",
    b"::",
    b"::ffff:10.0.0.1",
    b"fe80::1%eth0",
    b"255.255.255.255",
    b"1.2.3",
    b"18446744073709551615",
    b"18446744073709551616",
    b" name ",
    b"\n",
    b"\r\n",
    b"\t",
    b"\x0b",
    b"\x1b[31m",
    b"\xc2\xa0",
    b"\xe2\x80\xae",
    b"\xff\xfe",
];
