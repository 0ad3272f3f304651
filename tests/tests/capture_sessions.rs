//! miruo's session view (`--sessions`) and bounded capture files (`-w`) on `ipclog -r` and
//! `-i`, run as a user would. Corpus traces (../shared/corpus) are checked against what
//! their packets say (sequence numbers, flags, options as tcpdump shows them); generated ones
//! against what they were made of: malformed TCP options, HTTP split and pipelined, garbage on
//! port 80, the segment limit. `-w` files are read back by tcpdump and by ipclog; the ring and
//! --max-size keep their bounds; a full disk is an exit status of 1 with counts.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use e2e::bins::{bin, corpus_dir, scratch};
use e2e::pcapgen::{self, Link, Record, Session, ACK, PSH, SYN};

const T0: i64 = 1_700_000_000_000_000;
const MS: i64 = 1000;

/// Runs `ipclog ARGS` (times in UTC): (exit code, stdout, stderr).
fn ipclog(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(bin("ipclog"))
        .args(args)
        .env("TZ", "UTC")
        .stdin(Stdio::null())
        .output()
        .expect("run ipclog");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn corpus(rel: &str) -> Option<String> {
    let Some(d) = corpus_dir() else {
        eprintln!("SKIPPED: no corpus at ../shared/corpus");
        return None;
    };
    Some(d.join(rel).to_str().unwrap().to_string())
}

/// The view of `cap` with `args`, the log in a file beside; asserts exit 0.
fn view(cap: &str, args: &[&str]) -> String {
    // Tests call this at the same time: a directory of each call's own.
    static CALLS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = CALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = scratch(&format!("sessions-view-{n}"));
    let log = dir.join("log");
    let mut a = vec!["-r", cap, "--sessions", "-f", log.to_str().unwrap()];
    a.extend_from_slice(args);
    let (code, out, err) = ipclog(&a);
    assert_eq!(code, 0, "{err}");
    let _ = fs::remove_dir_all(&dir);
    out
}

/// The line of packet `id` (`session:packet`) in a view.
fn line<'a>(out: &'a str, id: &str) -> &'a str {
    out.lines()
        .find(|l| l.starts_with(&format!("{id} ")))
        .unwrap_or_else(|| panic!("no line {id} in\n{out}"))
}

fn write_pcap(path: &Path, packets: &[(i64, Vec<u8>)]) {
    let link = Link::Ethernet(vec![]);
    let recs: Vec<Record> = packets
        .iter()
        .map(|(t, p)| Record::new(*t, link.frame(p)))
        .collect();
    fs::write(path, pcapgen::pcap_bytes(link.linktype(), 65535, &recs)).unwrap();
}

#[test]
fn retransmissions_in_the_corpus_are_marked_with_their_delay() {
    // zeek/02: the server resends three segments 247..365 ms later; the IP checksums of
    // this trace are wrong (-C). The RST ends it.
    let Some(cap) = corpus("zeek/02-retransmit-fast009/retransmit-fast009.pcap") else {
        return;
    };
    let out = view(&cap, &["-C", "--retransmit", "200"]);
    assert!(
        out.contains(
            "1 60.992 | 10.0.88.85:50368 == 192.168.0.27:80 | Total 39 segments, 30757 bytes | C"
        ),
        "{out}"
    );
    assert!(out.contains(" retrans=3 rst=1"), "{out}");
    // tcpdump: 16:08:22.700271 10.0.88.85.50368 > .80 [S] seq 414291386 <mss 1452,sackOK>.
    assert_eq!(
        line(&out, "1:0000"),
        "1:0000 16:08:22.700 |    SYN_SENT >----S-> SYN_RECV    | 18B195BA/00000000    62 - <mss=1452, sackOK>"
    );
    assert_eq!(
        line(&out, "1:0001"),
        "1:0001 16:08:22.700 | ESTABLISHED <-A--S-< SYN_RECV    | FD487B2F/18B195BB    62 - <mss=1430, sackOK>"
    );
    // tcpdump: 16:08:23.267848 .80 > .50368 [.] seq 4249398646:4249400076 ack 414291861.
    assert_eq!(
        line(&out, "1:0031"),
        "1:0031 16:08:23.267 | ESTABLISHED <-A----< ESTABLISHED | FD48AD76/18B19795  1484 - ! retransmitted after 365 ms"
    );
    assert!(line(&out, "1:0033").ends_with("! retransmitted after 247 ms"));
    assert!(out.contains("1:****"), "elided runs: {out}");
    assert_eq!(
        line(&out, "1:0038"),
        "1:0038 16:09:23.692 |      CLOSED >-A-R--> CLOSED      | 18B19795/FD48D817    54 - ! RST"
    );
    // The default threshold (1000 ms) sees no retransmission: only the RST shows.
    let q = view(&cap, &["-C", "--retransmit", "200", "-q"]);
    assert!(q.lines().all(|l| l.len() <= 80), "{q}");
    assert!(
        q.contains("1:0031 16:08:23.267 <-A----< FD48AD76/18B19795  1484 - ! rexmit 365ms"),
        "{q}"
    );
    let out = view(&cap, &["-C"]);
    assert!(!out.contains("retransmitted"), "{out}");
    assert!(out.contains("! RST"), "{out}");

    // zeek/19: SYN and SYN-ACK seen twice (the trace has every packet twice).
    let Some(cap) = corpus("zeek/19-http-rxmit-orig-rst/m57-long-49583-80.pcap") else {
        return;
    };
    let out = view(&cap, &[]);
    assert!(out.contains("syn_retrans=2"), "{out}");
    assert!(line(&out, "1:0001").ends_with(
        "6ACC594F/00000000    70 - <mss=1460, wscale=2, sackOK> ! SYN retransmitted after 0 ms"
    ));
}

#[test]
fn rst_variants_in_the_corpus() {
    let Some(dir) = corpus("zeek/04-rst-variants") else {
        return;
    };
    let out = view(&format!("{dir}/single-rst.pcap"), &[]);
    assert!(out.contains("| 10.0.0.10:48777 == 10.0.0.80:80 | Total 1 segments, 54 bytes"));
    assert!(line(&out, "1:0000")
        .ends_with("CLOSED >---R--> CLOSED      | 00000000/00000000    54 - ! RST"));
    let out = view(&format!("{dir}/syn-then-rst.pcap"), &[]);
    assert!(line(&out, "1:0000").contains("SYN_SENT >----S-> SYN_RECV"));
    assert!(line(&out, "1:0001").contains("CLOSED >---R--> CLOSED"));
    // --rst 0: RSTs are no anomaly: nothing to show.
    assert_eq!(
        view(&format!("{dir}/syn-then-rst.pcap"), &["--rst", "0"]),
        ""
    );
    // suricata S03: the client resets twice while the server still sends its response.
    let Some(cap) = corpus("suricata-verify/S03-http-rst-closed/input.pcap") else {
        return;
    };
    let out = view(&cap, &["-C"]);
    let rsts: Vec<&str> = out.lines().filter(|l| l.contains("! RST")).collect();
    assert!(!rsts.is_empty(), "{out}");
    // tcpdump: 192.168.2.3.37010 > 208.69.36.231.80 [R] seq 1567227449 (0x5D69FE39).
    assert_eq!(rsts.len(), 4, "{out}");
    assert!(
        rsts.iter()
            .all(|l| l.contains("-R-->") && l.contains("5D69FE39/")),
        "{out}"
    );
    // S05: TLS closed by FIN then RST: with --rst 2 the RST after the FIN is shown too.
    let Some(cap) = corpus("suricata-verify/S05-tls-fin-rst") else {
        return;
    };
    let f = fs::read_dir(&cap).unwrap().next().unwrap().unwrap().path();
    let f = f.to_str().unwrap();
    let one = view(f, &["-C"]);
    let two = view(f, &["-C", "--rst", "2"]);
    assert!(
        two.matches("! RST").count() > one.matches("! RST").count(),
        "{one}\n{two}"
    );
    assert!(two.contains("-R-"), "{two}");
}

#[test]
fn fragments_in_the_corpus_are_marked_f() {
    let Some(cap) = corpus("suricata-verify/S08-defrag-ipv4-syn/frag-ip-tcp-syn.pcap") else {
        return;
    };
    // A SYN in three IPv4 fragments: its options (wscale 14) are read from the reassembled
    // header.
    let out = view(&cap, &[]);
    assert!(
        out.contains("| 1.1.1.1:12345 == 2.2.2.2:8080 | Total 1 segments"),
        "{out}"
    );
    assert!(out.contains(" frag=3"), "{out}");
    assert_eq!(
        line(&out, "1:0000"),
        "1:0000 08:07:52.720 |    SYN_SENT >----S-> SYN_RECV    | 00000001/00000000    44 F <wscale=14> ! 3 IP fragments"
    );
    // --fragment 0: no F, nothing to show.
    assert_eq!(view(&cap, &["--fragment", "0"]), "");
    let Some(cap) = corpus("suricata-verify/S09-defrag-ipv6-tcp") else {
        return;
    };
    let f = fs::read_dir(&cap).unwrap().next().unwrap().unwrap().path();
    let out = view(f.to_str().unwrap(), &[]);
    assert!(out.contains("| [::1]:12345 == [::1]:8080 |"), "{out}");
    assert!(
        line(&out, "1:0000").contains("  1060 F ! 3 IP fragments"),
        "{out}"
    );
    // zeek/18: tcpdump: 128.32.46.142.7790 > 10.0.0.1.80 [none] seq 14715173 (0xE08925),
    // its data in 4 fragments, then a FIN.
    let Some(cap) = corpus("zeek/18-frag-ipv4-weirds/fragmented-4.pcap") else {
        return;
    };
    let out = view(&cap, &[]);
    assert_eq!(
        line(&out, "2:0000"),
        "2:0000 06:35:34.846 | ESTABLISHED >------> ESTABLISHED | 00E08925/002D97F2   109 F ! 4 IP fragments"
    );
    assert!(line(&out, "2:0001").contains("FIN_WAIT1 >-----F> ESTABLISHED | 00E0896A/"));
}

#[test]
fn http_requests_and_responses_from_the_corpus() {
    let Some(cap) = corpus("zeek/01-wikipedia-mixed/wikipedia.pcap") else {
        return;
    };
    let out = view(&cap, &["--all", "--dpi", "http"]);
    assert!(
        out.contains("! GET /skins-1.5/monobook/main.css HTTP/1.1 Host: bits.wikimedia.org"),
        "{out}"
    );
    assert!(out.contains("<-AP---< ESTABLISHED | 3521CFDC/579E2B6F   298 - <timestamp 131323130 1828794> ! HTTP/1.1 304 Not Modified"), "{out}");
    // Two requests on one connection, each with its response, in order.
    let s9: Vec<&str> = out
        .lines()
        .filter(|l| l.starts_with("9:") && l.contains("! "))
        .collect();
    assert_eq!(s9.len(), 4, "{s9:?}");
    assert!(s9[0].contains("GET /wikipedia/commons/thumb/b/bb/"));
    assert!(s9[1].contains("HTTP/1.0 304"));
    assert!(s9[2].contains("GET /wikipedia/commons/thumb/d/df/"));
    assert!(s9[3].contains("HTTP/1.0 304"));
    // Without --dpi: no HTTP text.
    assert!(!view(&cap, &["--all"]).contains("GET /"));
    // suricata S02 (checksums offloaded: -C): request and response with its length.
    let Some(cap) = corpus("suricata-verify/S02-testmyids-netflow/testmyids.pcap") else {
        return;
    };
    let out = view(&cap, &["--all", "--dpi", "http", "-C"]);
    assert!(
        out.contains("! GET / HTTP/1.1 Host: www.testmyids.com"),
        "{out}"
    );
    assert!(
        out.contains("! HTTP/1.1 200 OK Content-Length: 39"),
        "{out}"
    );
    // ndpi http_ipv6 is TLS on 443: nothing taken for HTTP, the sessions shown anyway.
    let Some(cap) = corpus("ndpi/N-http_ipv6/http_ipv6.pcap") else {
        return;
    };
    let out = view(&cap, &["--all", "--dpi", "http"]);
    assert!(out.contains("]:443 | Total"), "{out}");
    assert!(!out.contains("HTTP/1"), "{out}");
}

/// A TCP header with `opts` as its options (padded), seq/ack/flags given, no payload.
fn tcp_with_options(client: bool, flags: u8, seq: u32, ack: u32, opts: &[u8], doff: u8) -> Vec<u8> {
    let (sp, dp) = if client {
        (40000u16, 80u16)
    } else {
        (80, 40000)
    };
    let mut h = Vec::new();
    h.extend_from_slice(&sp.to_be_bytes());
    h.extend_from_slice(&dp.to_be_bytes());
    h.extend_from_slice(&seq.to_be_bytes());
    h.extend_from_slice(&ack.to_be_bytes());
    h.push(doff << 4);
    h.push(flags);
    h.extend_from_slice(&65535u16.to_be_bytes());
    h.extend_from_slice(&[0, 0, 0, 0]);
    h.extend_from_slice(opts);
    let (a, b): (std::net::IpAddr, std::net::IpAddr) = if client {
        ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap())
    } else {
        ("10.0.0.2".parse().unwrap(), "10.0.0.1".parse().unwrap())
    };
    pcapgen::ip_packet(a, b, 6, h, Some(16))
}

#[test]
fn generated_handshake_close_options_and_bad_options() {
    let dir = scratch("sessions-gen");
    let cap = dir.join("opts.pcap");
    let good = [
        2, 4, 5, 0xb4, 4, 2, 8, 10, 0, 0, 0, 7, 0, 0, 0, 0, 1, 3, 3, 7,
    ];
    let packets = vec![
        (T0, tcp_with_options(true, SYN, 100, 0, &good, 10)),
        // Zero-length option: the walk stops there, said in the list.
        (
            T0 + MS,
            tcp_with_options(false, SYN | ACK, 500, 101, &[1, 9, 0, 0], 6),
        ),
        // An option whose length runs past the header.
        (
            T0 + 2 * MS,
            tcp_with_options(true, ACK, 101, 501, &[8, 10, 0, 0], 6),
        ),
        // A kind with no length byte: truncated.
        (
            T0 + 3 * MS,
            tcp_with_options(true, ACK | PSH, 101, 501, &[1, 1, 1, 3], 6),
        ),
        (T0 + 4 * MS, tcp_with_options(true, 0x04, 101, 0, &[], 5)),
    ];
    write_pcap(&cap, &packets);
    let out = view(cap.to_str().unwrap(), &[]);
    assert_eq!(
        line(&out, "1:0000"),
        "1:0000 22:13:20.000 |    SYN_SENT >----S-> SYN_RECV    | 00000064/00000000    74 - <mss=1460, sackOK, timestamp 7 0, wscale=7>"
    );
    assert!(
        line(&out, "1:0001").ends_with("<bad option 9: length 0>"),
        "{out}"
    );
    assert!(
        line(&out, "1:0002").ends_with("<bad option 8: length 10 past the header>"),
        "{out}"
    );
    assert!(out.contains("1:****"), "the data packet is elided: {out}");
    assert!(
        line(&out, "1:0004").contains(">---R--> CLOSED") && line(&out, "1:0004").ends_with("! RST")
    );
    // --view-data 1 shows the other packet; its options end in a kind without length.
    let out = view(cap.to_str().unwrap(), &["--view-data", "1"]);
    assert!(
        line(&out, "1:0003").ends_with("<bad option 3: no length>"),
        "{out}"
    );
    assert!(!out.contains("1:****"), "{out}");
    // Quiet: every line within 80 columns; color only when asked.
    let q = view(cap.to_str().unwrap(), &["-q", "--view-data", "9"]);
    assert!(q.lines().all(|l| l.len() <= 80), "{q}");
    assert!(
        q.contains("1:0003 22:13:20.003 >-AP---> 00000065/000001F5"),
        "{q}"
    );
    assert!(!q.contains('\x1b'));
    let c = view(cap.to_str().unwrap(), &["--color", "always"]);
    assert!(
        c.contains("\x1b[31m1:0004") && c.contains("\x1b[0m"),
        "{c:?}"
    );
    // --live: every packet as it comes, no block.
    let l = view(cap.to_str().unwrap(), &["--live"]);
    assert!(l.starts_with("1 10.0.0.1:40000 == 10.0.0.2:80 C"), "{l}");
    assert_eq!(
        l.lines().filter(|x| x.starts_with("1:00")).count(),
        5,
        "{l}"
    );
    assert!(!l.contains("-----"), "{l}");
    let _ = fs::remove_dir_all(&dir);
}

#[test]
fn a_normal_session_is_not_shown_but_all_shows_it_with_its_close() {
    let dir = scratch("sessions-all");
    let cap = dir.join("c.pcap");
    let mut s = Session::new("10.0.0.1:40000", "10.0.0.2:80", 1000, 5000);
    s.handshake(T0)
        .data(T0 + 10 * MS, true, 100)
        .data(T0 + 20 * MS, false, 300);
    s.close(T0 + 30 * MS);
    write_pcap(&cap, &s.packets);
    let log = dir.join("log");
    let (code, out, err) = ipclog(&[
        "-r",
        cap.to_str().unwrap(),
        "--sessions",
        "-f",
        log.to_str().unwrap(),
    ]);
    assert_eq!((code, out.as_str()), (0, ""), "{err}");
    let out = view(cap.to_str().unwrap(), &["--all"]);
    let uid = out
        .lines()
        .nth(1)
        .unwrap()
        .split(" | ")
        .nth(3)
        .unwrap()
        .trim()
        .to_string();
    // The uid is the log's.
    let logged = fs::read_to_string(&log).unwrap();
    assert!(
        logged.contains(&format!("uid={uid}")),
        "{uid} not in\n{logged}"
    );
    assert!(
        out.contains("1:0005 22:13:20.030 |   FIN_WAIT1 >-A---F> ESTABLISHED"),
        "{out}"
    );
    assert!(
        out.contains("1:0006 22:13:20.031 |   FIN_WAIT2 <-A---F< LAST_ACK"),
        "{out}"
    );
    assert!(
        out.contains("1:0007 22:13:20.032 |   TIME_WAIT >-A----> CLOSED"),
        "{out}"
    );
    // Standard output is the view's: the log must go elsewhere.
    let (code, _, err) = ipclog(&["-r", cap.to_str().unwrap(), "--sessions", "-f", "-"]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("--sessions prints on standard output"),
        "{err}"
    );
    let _ = fs::remove_dir_all(&dir);
}

#[test]
fn http_split_pipelined_and_garbage() {
    let dir = scratch("sessions-http");
    let cap = dir.join("h.pcap");
    let c: std::net::SocketAddr = "10.0.0.1:40000".parse().unwrap();
    let sv: std::net::SocketAddr = "10.0.0.2:80".parse().unwrap();
    let mut p = Vec::new();
    let mut t = T0;
    let mut seg = |t: &mut i64, from_c: bool, seq: u32, ack: u32, flags: u8, data: &[u8]| {
        *t += MS;
        let (a, b) = if from_c { (c, sv) } else { (sv, c) };
        p.push((*t, pcapgen::tcp(a, b, flags, seq, ack, 65535, data)));
    };
    seg(&mut t, true, 100, 0, SYN, b"");
    seg(&mut t, false, 500, 101, SYN | ACK, b"");
    seg(&mut t, true, 101, 501, ACK, b"");
    // A request split in two segments, then two pipelined in one (the first with a body).
    let r1a = b"GET /split HTTP/1.1\r\nHo";
    let r1b = b"st: ex\x1bample\r\n\r\n";
    let r23 = b"POST /p HTTP/1.1\r\nHost: h\r\nContent-Length: 4\r\n\r\nBODYHEAD /h HTTP/1.1\r\nHost: h\r\n\r\n";
    let mut seq = 101u32;
    for d in [&r1a[..], &r1b[..], &r23[..]] {
        seg(&mut t, true, seq, 501, ACK | PSH, d);
        seq += d.len() as u32;
    }
    let resp = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokHTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 99\r\n\r\n";
    seg(&mut t, false, 501, seq, ACK | PSH, resp);
    let mut s2 = Session::new("10.0.0.3:40001", "10.0.0.2:80", 1, 1);
    s2.handshake(t + MS);
    p.append(&mut s2.packets);
    // Garbage on port 80: binary where a request should be.
    let g = pcapgen::tcp(
        "10.0.0.3:40001".parse().unwrap(),
        sv,
        ACK | PSH,
        2,
        2,
        65535,
        &[0, 1, 0xff, 0x16, 3, 1],
    );
    p.push((t + 10 * MS, g));
    write_pcap(&cap, &p);
    let out = view(cap.to_str().unwrap(), &["--all", "--dpi", "http"]);
    let notes: Vec<&str> = out.lines().filter_map(|l| l.split(" ! ").nth(1)).collect();
    assert_eq!(
        notes,
        [
            "GET /split HTTP/1.1 Host: ex\\x1bample",
            "POST /p HTTP/1.1 Host: h, HEAD /h HTTP/1.1 Host: h",
            "HTTP/1.1 200 OK Content-Length: 2, HTTP/1.1 201 Created Content-Length: 0, HTTP/1.1 200 OK Content-Length: 99",
        ],
        "{out}"
    );
    assert!(!out.contains('\x1b'), "escaped: {out:?}");
    // The first exchange goes on the connection: log tokens, JSON fields, SQLite columns.
    let (log, json, db) = (dir.join("h.log"), dir.join("h.json"), dir.join("h.db"));
    let (code, _, err) = ipclog(&[
        "-r",
        cap.to_str().unwrap(),
        "--sessions",
        "--dpi",
        "http",
        "-f",
        log.to_str().unwrap(),
        "--json",
        json.to_str().unwrap(),
        "--db",
        db.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{err}");
    let logged = fs::read_to_string(&log).unwrap();
    let c = logged
        .lines()
        .find(|l| l.starts_with("C ") && l.contains(" 40000 "))
        .unwrap();
    assert!(
        c.ends_with("http_method=GET http_host=ex\\x1bample http_uri=/split http_status=200"),
        "{c}"
    );
    assert!(!logged.contains('\x1b'));
    let j = fs::read_to_string(&json).unwrap();
    assert!(j.contains(r#""http_host":"ex\u001bample","http_method":"GET","http_status":200,"http_uri":"/split""#), "{j}");
    let q = Command::new("sqlite3")
        .arg(&db)
        .arg("SELECT http_method, http_uri, http_status FROM connections WHERE orig_p = 40000")
        .output();
    if let Ok(q) = q {
        assert_eq!(String::from_utf8_lossy(&q.stdout).trim(), "GET|/split|200");
    }
    // The garbage session has none.
    let g = logged
        .lines()
        .find(|l| l.starts_with("C ") && l.contains(" 40001 "))
        .unwrap();
    assert!(!g.contains("http_"), "{g}");
    let _ = fs::remove_dir_all(&dir);
}

#[test]
fn the_segment_limit_bounds_the_lines_held_and_says_what_was_not_kept() {
    let dir = scratch("sessions-limit");
    let cap = dir.join("l.pcap");
    let mut s = Session::new("10.0.0.1:40000", "10.0.0.2:80", 1000, 5000);
    s.handshake(T0);
    for i in 0..20 {
        s.data(T0 + (10 + i) * MS, true, 10);
    }
    s.rst(T0 + 40 * MS, true);
    write_pcap(&cap, &s.packets);
    let out = view(
        cap.to_str().unwrap(),
        &["--view-data", "100", "--segment-limit", "5"],
    );
    assert!(
        out.contains("| 19 packets not kept (--segment-limit)"),
        "{out}"
    );
    assert_eq!(
        out.lines().filter(|l| l.starts_with("1:00")).count(),
        5,
        "{out}"
    );
    let _ = fs::remove_dir_all(&dir);
}

/// Packets of `n` sessions: every third one resets, the rest close normally.
fn many_sessions(n: u32) -> Vec<(i64, Vec<u8>)> {
    let mut p = Vec::new();
    for i in 0..n {
        let t = T0 + i as i64 * 10 * MS;
        let mut s = Session::new(
            &format!("10.0.{}.{}:{}", i / 200, i % 200 + 1, 20000 + i),
            "10.9.0.1:80",
            i * 77,
            i * 91,
        );
        s.handshake(t)
            .data(t + 3 * MS, true, 200)
            .data(t + 4 * MS, false, 1000);
        if i % 3 == 0 {
            s.rst(t + 5 * MS, true);
        } else {
            s.close(t + 5 * MS);
        }
        p.append(&mut s.packets);
    }
    p.sort_by_key(|x| x.0);
    p
}

/// The C lines of a log, without their times and uids (a uid hashes the connection's number
/// in the run, which differs when a file holds only some of the connections).
fn closes(log: &Path) -> Vec<String> {
    fs::read_to_string(log)
        .unwrap()
        .lines()
        .filter(|l| l.starts_with("C "))
        .map(|l| {
            l.split_whitespace()
                .skip(2)
                .filter(|t| !t.starts_with("uid="))
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect()
}

#[test]
fn w_writes_pcapng_that_tcpdump_and_ipclog_read_back_identically() {
    let dir = scratch("sessions-w");
    let cap = dir.join("in.pcap");
    write_pcap(&cap, &many_sessions(300));
    let (log1, log2, out) = (dir.join("1.log"), dir.join("2.log"), dir.join("out.pcapng"));
    let (code, _, err) = ipclog(&[
        "-r",
        cap.to_str().unwrap(),
        "-f",
        log1.to_str().unwrap(),
        "-w",
        out.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{err}");
    let mode = fs::metadata(&out).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode & !0o640, 0, "mode {mode:o}");
    let (code, _, err) = ipclog(&["-r", out.to_str().unwrap(), "-f", log2.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    let (a, b) = (closes(&log1), closes(&log2));
    assert_eq!(a.len(), 300);
    assert_eq!(a, b);
    // tcpdump reads it: every packet, and the interface block it shows.
    let td = Command::new("tcpdump")
        .args(["-nr", out.to_str().unwrap()])
        .output();
    match td {
        Ok(o) => {
            assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
            let n = String::from_utf8_lossy(&o.stdout).lines().count();
            assert_eq!(n, many_sessions(300).len());
        }
        Err(e) => eprintln!("SKIPPED the tcpdump read-back: {e}"),
    }
    // A symbolic link is refused (start-up error), its target untouched.
    let target = dir.join("target");
    fs::write(&target, b"keep").unwrap();
    let link = dir.join("link.pcapng");
    std::os::unix::fs::symlink(&target, &link).unwrap();
    let (code, _, err) = ipclog(&[
        "-r",
        cap.to_str().unwrap(),
        "-f",
        log1.to_str().unwrap(),
        "-w",
        link.to_str().unwrap(),
    ]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("symbolic link"), "{err}");
    assert_eq!(fs::read(&target).unwrap(), b"keep");
    let (code, _, err) = ipclog(&[
        "-r",
        cap.to_str().unwrap(),
        "-f",
        log1.to_str().unwrap(),
        "-w",
        "-",
    ]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("give a file name"), "{err}");
    let _ = fs::remove_dir_all(&dir);
}

#[test]
fn the_ring_never_exceeds_n_files_of_size_and_rotates() {
    let dir = scratch("sessions-ring");
    let cap = dir.join("in.pcap");
    write_pcap(&cap, &many_sessions(300));
    let log = dir.join("l.log");
    let base = dir.join("ring.pcapng");
    let (code, _, err) = ipclog(&[
        "-r",
        cap.to_str().unwrap(),
        "-f",
        log.to_str().unwrap(),
        "-w",
        base.to_str().unwrap(),
        "--max-size",
        "20k",
        "--ring",
        "3",
    ]);
    assert_eq!(code, 0, "{err}");
    let files: Vec<PathBuf> = (0..3)
        .map(|i| PathBuf::from(format!("{}.{i}", base.display())))
        .collect();
    let mut total = 0;
    let mut firsts = Vec::new();
    for f in &files {
        let len = fs::metadata(f).unwrap().len();
        assert!(len <= 20_000, "{} is {len} bytes", f.display());
        total += len;
        // Each file is a capture of its own, starting where the previous one stopped.
        let o = Command::new("tcpdump")
            .args(["-tt", "-nr", f.to_str().unwrap()])
            .output()
            .unwrap();
        assert!(o.status.success());
        let first: f64 = String::from_utf8_lossy(&o.stdout)
            .split_whitespace()
            .next()
            .unwrap()
            .parse()
            .unwrap();
        firsts.push((first, f.clone()));
    }
    assert!(total <= 3 * 20_000);
    assert!(!Path::new(&format!("{}.3", base.display())).exists());
    let logged = fs::read_to_string(&log).unwrap();
    let files_made: u64 = logged
        .split("files=")
        .nth(1)
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!(files_made > 3, "the ring went round: {files_made} files");
    // The oldest packets were overwritten: the file written last starts latest.
    firsts.sort_by(|a, b| a.0.partial_cmp(&b.0).unwrap());
    let last_slot = (files_made - 1) % 3;
    assert_eq!(firsts[2].1, files[last_slot as usize]);
    assert!(
        firsts[0].0 > (T0 / 1_000_000) as f64,
        "the first packets are gone"
    );
    // Without --ring: writing stops at the size, said in the summary.
    let one = dir.join("one.pcapng");
    let (code, _, err) = ipclog(&[
        "-r",
        cap.to_str().unwrap(),
        "-f",
        log.to_str().unwrap(),
        "-w",
        one.to_str().unwrap(),
        "--max-size",
        "20k",
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(fs::metadata(&one).unwrap().len() <= 20_000);
    assert!(err.contains("--max-size reached"), "{err}");
    let logged = fs::read_to_string(&log).unwrap();
    assert!(logged.contains("not_written_max_size="), "{logged}");
    let _ = fs::remove_dir_all(&dir);
}

#[test]
fn write_anomalous_keeps_only_the_sessions_that_had_an_anomaly() {
    let dir = scratch("sessions-anom");
    let cap = dir.join("in.pcap");
    write_pcap(&cap, &many_sessions(90));
    let (log, log2, out) = (dir.join("1.log"), dir.join("2.log"), dir.join("a.pcapng"));
    let (code, _, err) = ipclog(&[
        "-r",
        cap.to_str().unwrap(),
        "-f",
        log.to_str().unwrap(),
        "-w",
        out.to_str().unwrap(),
        "--write",
        "anomalous",
    ]);
    assert_eq!(code, 0, "{err}");
    let (code, _, err) = ipclog(&["-r", out.to_str().unwrap(), "-f", log2.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    let all = closes(&log);
    let want: Vec<&String> = all.iter().filter(|l| l.contains("rst=")).collect();
    let got = closes(&log2);
    assert_eq!(want.len(), 30);
    assert_eq!(got.iter().collect::<Vec<_>>(), want);
    // Held frames beyond --segment-limit are counted, not kept.
    let (code, _, err) = ipclog(&[
        "-r",
        cap.to_str().unwrap(),
        "-f",
        log.to_str().unwrap(),
        "-w",
        out.to_str().unwrap(),
        "--write",
        "anomalous",
        "--segment-limit",
        "3",
    ]);
    assert_eq!(code, 0, "{err}");
    let logged = fs::read_to_string(&log).unwrap();
    let n: u64 = logged
        .rsplit("not_kept=")
        .next()
        .unwrap()
        .split(|c: char| !c.is_ascii_digit())
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!(n > 0, "{logged}");
    let _ = fs::remove_dir_all(&dir);
}

#[test]
fn a_full_disk_while_writing_w_is_exit_1_with_counts() {
    if let Some(why) = e2e::netns::skip_reason() {
        eprintln!("SKIPPED a_full_disk_while_writing_w: {why}");
        return;
    }
    let dir = scratch("sessions-tmpfs");
    let cap = dir.join("in.pcap");
    write_pcap(&cap, &many_sessions(600));
    let mnt = dir.join("mnt");
    let outd = dir.join("out");
    fs::create_dir_all(&mnt).unwrap();
    fs::create_dir_all(&outd).unwrap();
    let script = r#"mount -t tmpfs -o "size=64k,mode=0755" none "$MNT" || exit 99
"$@"
code=$?
cp -a "$MNT"/. "$OUT"/
exit $code"#;
    let log = dir.join("l.log");
    let o = Command::new("unshare")
        .args(["-m", "--propagation", "private", "sh", "-c", script, "sh"])
        .arg(bin("ipclog"))
        .args([
            "-r",
            cap.to_str().unwrap(),
            "-f",
            log.to_str().unwrap(),
            "-w",
        ])
        .arg(mnt.join("w.pcapng"))
        .env("MNT", &mnt)
        .env("OUT", &outd)
        .output()
        .unwrap();
    assert_ne!(o.status.code(), Some(99), "cannot mount a tmpfs here");
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("write failed"), "{err}");
    let lost: u64 = err
        .split(" packets not written")
        .next()
        .unwrap()
        .rsplit(' ')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    // What was written reads back (whole blocks only), and written + lost = all packets.
    let t = Command::new("tcpdump")
        .args(["-nr"])
        .arg(outd.join("w.pcapng"))
        .output()
        .unwrap();
    let written = String::from_utf8_lossy(&t.stdout).lines().count() as u64;
    assert!(written > 0 && lost > 0, "{written} {lost}");
    assert_eq!(written + lost, many_sessions(600).len() as u64, "{err}");
    let _ = fs::remove_dir_all(&dir);
}

/// `-i VETH --sessions` while a transfer runs through a link that loses 30% of its packets
/// (tc netem inside the namespace): a block with a retransmission shows up while the
/// transfer is still running.
#[test]
fn live_sessions_show_a_retransmitting_transfer_while_it_runs() {
    use e2e::netns::{veth, wait_for, Netns};
    if let Some(why) = e2e::netns::skip_reason() {
        eprintln!("SKIPPED live_sessions: {why}");
        return;
    }
    let a = Netns::new("sesa").unwrap();
    let b = Netns::new("sesb").unwrap();
    let tag = std::process::id() % 10000;
    let (ia, ib) = (format!("sa{tag}"), format!("sb{tag}"));
    veth(&a, &ia, "10.77.0.1/24", &b, &ib, "10.77.0.2/24").unwrap();
    // Loss where b receives, so that the capture on a's side sees a segment and then its
    // retransmission: tc netem on b's egress (b's segments), or, where the kernel has no
    // sch_netem (this container), nftables dropping 30% at random in b's input.
    let netem = b.run(&[
        "tc", "qdisc", "add", "dev", &ib, "root", "netem", "loss", "30%",
    ]);
    if let Err(e) = &netem {
        eprintln!("tc netem unavailable ({e}); losing packets with nftables numgen instead");
        if let Err(e) = b.nft(
            "table inet loss {\n chain input {\n  type filter hook input priority 0; policy accept;\n  \
             tcp sport 5555 numgen random mod 100 < 30 drop\n }\n}\n",
        ) {
            eprintln!("SKIPPED live_sessions: neither tc netem nor nftables can lose packets: {e}");
            return;
        }
    }
    let dir = scratch("sessions-live");
    let log = dir.join("l.log");
    let mut ipc = a
        .command(bin("ipclog"))
        .args([
            "-i",
            &ia,
            "--sessions",
            "--retransmit",
            "100",
            "--tcp-close-delay",
            "0.2",
        ])
        .args(["-f", log.to_str().unwrap()])
        .env("TZ", "UTC")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = ipc.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for l in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            let _ = tx.send(l);
        }
    });
    let started = wait_for(Duration::from_secs(10), || {
        fs::read_to_string(&log)
            .ok()
            .filter(|s| s.contains("ipclog started"))
    });
    assert!(started.is_some(), "the capture did not start");
    // A bounded transfer: one connection after the other, 100 KB each way, for at most 60 s.
    let server = r#"
import socket,time
s=socket.socket(); s.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1)
s.bind(("10.77.0.1",5555)); s.listen(4); s.settimeout(70)
t=time.time()
while time.time()-t<65:
    c,_=s.accept(); c.settimeout(30)
    try:
        got=0
        while got<100000:
            d=c.recv(65536)
            if not d: break
            got+=len(d)
        c.sendall(b"y"*100000)
    except Exception: pass
    c.close()
"#;
    let client = r#"
import socket,time
t=time.time()
while time.time()-t<60:
    c=socket.create_connection(("10.77.0.1",5555),timeout=30)
    c.sendall(b"x"*100000); got=0
    while got<100000:
        d=c.recv(65536)
        if not d: break
        got+=len(d)
    c.close()
"#;
    let mut srv = a
        .command("python3")
        .args(["-c", server])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let listening = wait_for(Duration::from_secs(10), || {
        a.run_stdout(&["ss", "-ltn"])
            .ok()
            .filter(|s| s.contains("10.77.0.1:5555"))
    });
    assert!(listening.is_some(), "the server did not start");
    let mut cli = b
        .command("python3")
        .args(["-c", client])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut block = Vec::new();
    let seen = wait_for(Duration::from_secs(50), || {
        for l in rx.try_iter() {
            block.push(l.clone());
            if l.contains("retransmitted after") {
                return Some(l);
            }
        }
        None
    });
    let running = cli.try_wait().unwrap().is_none();
    let _ = ipc.kill();
    let _ = ipc.wait();
    let _ = cli.kill();
    let _ = srv.kill();
    let _ = cli.wait();
    let _ = srv.wait();
    let line =
        seen.unwrap_or_else(|| panic!("no retransmission shown; view:\n{}", block.join("\n")));
    assert!(running, "the transfer had ended when {line:?} was shown");
    // The block's header names the connection; the marked line is a data segment.
    assert!(
        block
            .iter()
            .any(|l| l.contains("10.77.0.2:") && l.contains("== 10.77.0.1:5555 | Total")),
        "{block:?}"
    );
    assert!(line.contains("-A"), "{line}");
    let _ = fs::remove_dir_all(&dir);
}

/// `-s` gains miruo's statistics block: sessions and what was shown, counts per anomaly, the
/// thresholds, what is held against its limits, header errors by layer.
#[test]
fn statistics_show_miruo_s_block() {
    let dir = scratch("sessions-stats");
    let cap = dir.join("s.pcap");
    let mut p = many_sessions(9);
    p.push((
        T0 + 500 * MS,
        tcp_with_options(true, ACK, 1, 1, &[1, 9, 0, 0], 6),
    ));
    write_pcap(&cap, &p);
    let log = dir.join("l.log");
    let (code, out, err) = ipclog(&[
        "-r",
        cap.to_str().unwrap(),
        "--sessions",
        "--view-data",
        "5",
        "-s",
        "1",
        "--retransmit",
        "300",
        "--session-limit",
        "4096",
        "-f",
        log.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{err}");
    for want in [
        "===== Session Statistics =====",
        "Total Sessions  : 10\n",
        "Lookup          : 3\n",
        "RST             : 3\n",
        "Retransmit      : 0\n",
        "RetransmitTime  : 300 [ms]\n",
        "ActiveSessionLim: 4096\n",
        "Error           : 1\n",
        "===== Header Error Count =====",
        "TCP : 1\n",
    ] {
        assert!(err.contains(want), "{want:?} not in\n{err}");
    }
    assert_eq!(out.matches("| Total ").count(), 3, "{out}");
    let _ = fs::remove_dir_all(&dir);
}
