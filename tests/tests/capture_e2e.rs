//! ipclog reading packets, run as a user would: `ipclog -r FILE` (and `-r -`) on generated
//! captures with the line log checked line by line, bad input giving one clear line and exit
//! code 2, and a live capture (`ipclog -i`) in network namespaces that must give the same
//! connections as reading the same traffic back from tcpdump's file.

use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use e2e::bins::{bin, scratch};
use e2e::pcapgen::{self, Link, Session};
use shared::event::EventKind;
use shared::logfmt::{parse_line, LogLine};

const T0: i64 = 1_700_000_000_000_000;
const MS: i64 = 1000;

/// One C line reduced to what both a live and a file read must agree on.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Closed {
    proto: u8,
    src: String,
    dst: String,
    sport: Option<u16>,
    dport: Option<u16>,
    flag: char,
    extras: Vec<(String, String)>,
}

fn closes(log: &str) -> Vec<Closed> {
    let mut out = Vec::new();
    for (n, line) in log.lines().enumerate() {
        match parse_line(line).unwrap_or_else(|e| panic!("line {}: {e}: {line}", n + 1)) {
            LogLine::Conn(c) if c.kind == EventKind::Close => out.push(Closed {
                proto: c.proto,
                src: c.src.to_string(),
                dst: c.dst.to_string(),
                sport: c.sport,
                dport: c.dport,
                flag: c.flag,
                extras: c
                    .extras()
                    .filter(|(k, _)| *k != "uid")
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            }),
            _ => {}
        }
    }
    out
}

fn extra<'a>(c: &'a Closed, key: &str) -> Option<&'a str> {
    c.extras
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

fn ipclog_read(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(bin("ipclog"))
        .args(args)
        .output()
        .expect("run ipclog");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn write_cap(dir: &Path, name: &str, packets: &[(i64, Vec<u8>)]) -> PathBuf {
    let p = dir.join(name);
    pcapgen::write(&p, &Link::Ethernet(vec![]), false, packets).unwrap();
    p
}

#[test]
fn read_file_writes_open_state_and_close_lines_with_zeek_fields_and_anomalies() {
    let d = scratch("cap-read");
    let mut s = Session::new("10.0.0.1:40000", "10.0.0.2:80", 1000, 5000);
    s.handshake(T0).data(T0 + 10 * MS, true, 100);
    let seq = s.cseq - 100;
    s.resend(T0 + 1510 * MS, true, seq, 100)
        .ack(T0 + 1520 * MS, false)
        .data(T0 + 1600 * MS, false, 300)
        .close(T0 + 2000 * MS);
    let mut refused = Session::new("10.0.0.1:40001", "10.0.0.2:81", 1, 0);
    refused.syn(T0 + 5000 * MS).rst(T0 + 5001 * MS, false);
    let mut pk = s.packets.clone();
    pk.extend(refused.packets.clone());
    let cap = write_cap(&d, "a.pcap", &pk);
    let log = d.join("a.log");
    let (code, _, err) = ipclog_read(&["-r", cap.to_str().unwrap(), "-f", log.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    let text = std::fs::read_to_string(&log).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert!(
        lines[0].starts_with("P ") && lines[0].ends_with("ipclog started"),
        "{text}"
    );
    assert!(lines[1].starts_with("H "));
    assert!(
        lines.last().unwrap().contains("ipclog stopped, 0 errors"),
        "{text}"
    );
    // O, S (e), S (w), S (t) for the first; O, S (c) for the refused one; then both C lines
    // at the end of the file (finished connections linger 5 s of packet time, the file ends
    // 3 s after the first closed). Packet times, not the clock: 2023-11-14 (UTC).
    let conn: Vec<&str> = lines
        .iter()
        .copied()
        .filter(|l| l.starts_with(['O', 'S', 'C']))
        .collect();
    let kinds: String = conn.iter().map(|l| &l[..1]).collect();
    assert_eq!(kinds, "OSSSOSCC", "{text}");
    for l in &conn {
        assert!(l[2..].starts_with("2023-11-1"), "packet time: {l}");
    }
    let c = closes(&text);
    assert_eq!(c.len(), 2);
    assert_eq!(
        (c[0].sport, c[0].dport, c[0].flag),
        (Some(40000), Some(80), 't')
    );
    assert_eq!(extra(&c[0], "conn_state"), Some("SF"));
    assert_eq!(extra(&c[0], "history"), Some("ShADTadFf"));
    assert_eq!(extra(&c[0], "orig_bytes"), Some("100"));
    assert_eq!(extra(&c[0], "resp_bytes"), Some("300"));
    assert_eq!(extra(&c[0], "retrans"), Some("1"));
    assert_eq!(extra(&c[1], "conn_state"), Some("REJ"));
    assert_eq!(extra(&c[1], "rst"), Some("1"));
    assert_eq!(c[1].flag, 'c');
    // The C line's time column is the duration: 2.002 s -> 2.
    let cl = conn.iter().find(|l| l.starts_with('C')).unwrap();
    match parse_line(cl).unwrap() {
        LogLine::Conn(c) => assert_eq!(c.time, Some(2)),
        _ => unreachable!(),
    }
    // A higher threshold: no retrans token.
    let log2 = d.join("b.log");
    let (code, _, _) = ipclog_read(&[
        "-r",
        cap.to_str().unwrap(),
        "-f",
        log2.to_str().unwrap(),
        "--retransmit",
        "2000",
        "--rst",
        "0",
    ]);
    assert_eq!(code, 0);
    let c = closes(&std::fs::read_to_string(&log2).unwrap());
    assert_eq!(extra(&c[0], "retrans"), None);
    assert_eq!(extra(&c[1], "rst"), None);
}

#[test]
fn read_from_standard_input_with_a_filter() {
    let d = scratch("cap-stdin");
    let s = {
        let mut s = Session::new("10.0.0.1:40000", "10.0.0.2:80", 1, 2);
        s.handshake(T0).close(T0 + 10 * MS);
        s
    };
    let mut pk = s.packets.clone();
    pk.push((
        T0 + 20 * MS,
        pcapgen::udp(
            "10.0.0.1:5353".parse().unwrap(),
            "10.0.0.3:53".parse().unwrap(),
            b"q",
        ),
    ));
    let cap = write_cap(&d, "in.pcap", &pk);
    let log = d.join("in.log");
    let mut child = Command::new(bin("ipclog"))
        .args(["-r", "-", "-f", log.to_str().unwrap(), "udp", "port", "53"])
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(&std::fs::read(&cap).unwrap())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let c = closes(&std::fs::read_to_string(&log).unwrap());
    assert_eq!(c.len(), 1, "only the UDP flow passes the filter");
    assert_eq!((c[0].proto, c[0].dport), (17, Some(53)));
    assert_eq!(extra(&c[0], "conn_state"), Some("S0"));
}

#[test]
fn bad_input_gives_one_clear_line_and_exit_code_2() {
    let d = scratch("cap-bad");
    let text = d.join("notes.txt");
    std::fs::write(&text, "not a capture at all\n").unwrap();
    let unknown = d.join("unknown.pcap");
    let s = {
        let mut s = Session::new("10.0.0.1:1", "10.0.0.2:2", 1, 2);
        s.syn(T0);
        s
    };
    pcapgen::write(&unknown, &Link::Other(147), false, &s.packets).unwrap();
    let good = write_cap(&d, "good.pcap", &s.packets);
    let cases: Vec<(Vec<String>, &str)> = vec![
        (
            vec!["-r".into(), text.display().to_string()],
            "not a pcap or pcapng capture file",
        ),
        (
            vec!["-r".into(), d.join("nope.pcap").display().to_string()],
            "nope.pcap: cannot open",
        ),
        (
            vec!["-r".into(), unknown.display().to_string()],
            "unsupported link type 147",
        ),
        (
            vec![
                "-r".into(),
                good.display().to_string(),
                "port".into(),
                "(((".into(),
            ],
            "bad filter expression",
        ),
        (vec!["-i".into(), "nosuchif0".into()], "nosuchif0"),
    ];
    for (args, want) in cases {
        // Options first: as with tcpdump, everything after the filter's first word is filter.
        let mut a: Vec<String> = vec!["-f".into(), d.join("x.log").display().to_string()];
        a.extend(args.iter().cloned());
        let refs: Vec<&str> = a.iter().map(|s| s.as_str()).collect();
        let (code, _, err) = ipclog_read(&refs);
        assert_eq!(code, 2, "{args:?}: {err}");
        assert!(err.contains(want), "{args:?}: {err}");
        assert!(!err.contains("panicked"), "{err}");
        // Refused before any output was created: no log with a start line and nothing else.
        assert!(!d.join("x.log").exists(), "{args:?}: a log was written");
    }
}

#[test]
fn truncated_file_reports_the_damage_and_exits_normally() {
    let d = scratch("cap-trunc");
    let mut s = Session::new("10.0.0.1:40000", "10.0.0.2:80", 1, 2);
    s.handshake(T0).data(T0 + MS, true, 500).close(T0 + 10 * MS);
    let cap = write_cap(&d, "t.pcap", &s.packets);
    let bytes = std::fs::read(&cap).unwrap();
    std::fs::write(&cap, &bytes[..bytes.len() - 20]).unwrap();
    let log = d.join("t.log");
    let (code, _, err) = ipclog_read(&["-r", cap.to_str().unwrap(), "-f", log.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    assert!(
        err.contains("t.pcap: after packet 6: damaged record"),
        "{err}"
    );
    let text = std::fs::read_to_string(&log).unwrap();
    assert_eq!(closes(&text).len(), 1);
    assert!(
        text.contains("damaged_record"),
        "the P lines report the damage: {text}"
    );
}

// ---------------------------------------------------------------------------------------
// Live capture in network namespaces.

use std::os::fd::AsRawFd;

/// Runs `f` on a thread that has entered network namespace `ns`.
fn in_netns<T: Send + 'static>(
    ns: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> std::thread::JoinHandle<T> {
    let path = format!("/var/run/netns/{ns}");
    std::thread::spawn(move || {
        let fd = std::fs::File::open(&path).expect("netns handle");
        // SAFETY: setns on this thread only, with a valid namespace fd.
        let r = unsafe { libc::setns(fd.as_raw_fd(), libc::CLONE_NEWNET) };
        assert_eq!(r, 0, "setns {path}");
        f()
    })
}

fn sigterm(child: &std::process::Child) {
    // SAFETY: signalling our own child.
    unsafe {
        libc::kill(child.id() as i32, libc::SIGTERM);
    }
}

#[test]
fn live_capture_gives_the_same_connections_as_the_file_of_the_same_traffic() {
    e2e::require_netns!();
    if Command::new("tcpdump").arg("--version").output().is_err() {
        eprintln!("SKIPPED: tcpdump is not installed (it writes the file to compare with)");
        return;
    }
    use e2e::netns::{veth, wait_for, Netns};
    use std::io::Read;
    use std::net::{TcpListener, TcpStream, UdpSocket};

    let d = scratch("cap-live");
    let client = Netns::new("pcli").unwrap();
    let server = Netns::new("psrv").unwrap();
    veth(
        &client,
        "eth0",
        "10.77.0.1/24",
        &server,
        "eth0",
        "10.77.0.2/24",
    )
    .unwrap();
    let pcap = d.join("live.pcap");
    let live_log = d.join("live.log");
    let mut tcpdump = server
        .spawn(&[
            "tcpdump",
            "-n",
            "-U",
            "--immediate-mode",
            "-i",
            "eth0",
            "-w",
            pcap.to_str().unwrap(),
            "tcp or udp",
        ])
        .unwrap();
    let mut ipclog = server
        .spawn(&[
            bin("ipclog").to_str().unwrap(),
            "-i",
            "eth0",
            "-f",
            live_log.to_str().unwrap(),
            "tcp",
            "or",
            "udp",
        ])
        .unwrap();
    // The same on `any` (Linux cooked capture framing).
    let any_log = d.join("any.log");
    let mut ipclog_any = server
        .spawn(&[
            bin("ipclog").to_str().unwrap(),
            "-i",
            "any",
            "-f",
            any_log.to_str().unwrap(),
            "tcp",
            "or",
            "udp",
        ])
        .unwrap();
    // Warm up until every capture sees packets (UDP to a closed port, excluded below).
    let ready = wait_for(Duration::from_secs(20), || {
        let sock = in_netns(client.name(), || {
            let s = UdpSocket::bind("10.77.0.1:0").unwrap();
            let _ = s.send_to(b"warm", "10.77.0.2:9");
        });
        sock.join().unwrap();
        std::thread::sleep(Duration::from_millis(150));
        let log = std::fs::read_to_string(&live_log).unwrap_or_default();
        let cap = std::fs::metadata(&pcap).map(|m| m.len()).unwrap_or(0);
        let any = std::fs::read_to_string(&any_log).unwrap_or_default();
        (log.lines().any(|l| l.starts_with("O "))
            && any.lines().any(|l| l.starts_with("O "))
            && cap > 24)
            .then_some(())
    });
    assert!(ready.is_some(), "captures did not start");

    // The server: accepts two connections on 8080; nothing listens on 8081.
    let srv = in_netns(server.name(), || {
        let l = TcpListener::bind("10.77.0.2:8080").unwrap();
        for i in 0..2 {
            let (mut c, _) = l.accept().unwrap();
            let mut buf = Vec::new();
            let _ = c.read_to_end(&mut buf);
            if i == 0 {
                assert_eq!(buf.len(), 1000);
                c.write_all(&[b'y'; 2000]).unwrap();
            }
        }
    });
    let cli = in_netns(client.name(), || {
        // 1: normal exchange and close.
        let mut c = wait_for(Duration::from_secs(10), || {
            TcpStream::connect("10.77.0.2:8080").ok()
        })
        .expect("connect");
        c.write_all(&[b'x'; 1000]).unwrap();
        c.shutdown(std::net::Shutdown::Write).unwrap();
        let mut buf = Vec::new();
        c.read_to_end(&mut buf).unwrap();
        assert_eq!(buf.len(), 2000);
        drop(c);
        // 2: refused.
        assert!(TcpStream::connect("10.77.0.2:8081").is_err());
        // 3: data, then an abortive close (SO_LINGER 0 sends RST).
        let mut c = TcpStream::connect("10.77.0.2:8080").unwrap();
        c.write_all(b"hello").unwrap();
        std::thread::sleep(Duration::from_millis(100));
        let lg = libc::linger {
            l_onoff: 1,
            l_linger: 0,
        };
        // SAFETY: valid socket fd and option struct.
        unsafe {
            libc::setsockopt(
                c.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_LINGER,
                &lg as *const _ as *const libc::c_void,
                std::mem::size_of::<libc::linger>() as u32,
            );
        }
        drop(c);
    });
    cli.join().unwrap();
    srv.join().unwrap();
    // Stop ipclog once the last packet (the RST) has reached it, then tcpdump once its file
    // holds as many TCP packets as ipclog counted.
    let tcp_packets = |log: &str| -> u64 {
        closes(log)
            .iter()
            .filter(|c| c.proto == 6)
            .map(|c| {
                extra(c, "orig_pkts").unwrap().parse::<u64>().unwrap()
                    + extra(c, "resp_pkts").unwrap().parse::<u64>().unwrap()
            })
            .sum()
    };
    for log in [&live_log, &any_log] {
        wait_for(Duration::from_secs(10), || {
            let log = std::fs::read_to_string(log).unwrap_or_default();
            log.lines()
                .any(|l| l.starts_with("S ") && l.contains("conn_state=RSTO"))
                .then_some(())
        })
        .expect("ipclog saw the reset");
    }
    sigterm(&ipclog);
    sigterm(&ipclog_any);
    let st = wait_for(Duration::from_secs(10), || ipclog_any.try_wait().unwrap())
        .expect("ipclog -i any exits");
    assert!(st.success(), "ipclog -i any: {st:?}");
    let st =
        wait_for(Duration::from_secs(10), || ipclog.try_wait().unwrap()).expect("ipclog exits");
    let mut err = String::new();
    ipclog
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert!(st.success(), "ipclog -i: {st:?} {err}");
    let want = tcp_packets(&std::fs::read_to_string(&live_log).unwrap());
    assert!(want >= 13, "live TCP packets: {want}");
    wait_for(Duration::from_secs(10), || {
        let out = Command::new("tcpdump")
            .args(["-nn", "-r", pcap.to_str().unwrap(), "tcp"])
            .stderr(Stdio::null())
            .output()
            .ok()?;
        (String::from_utf8_lossy(&out.stdout).lines().count() as u64 >= want).then_some(())
    })
    .expect("tcpdump wrote every TCP packet");
    sigterm(&tcpdump);
    wait_for(Duration::from_secs(10), || tcpdump.try_wait().unwrap()).expect("tcpdump exits");

    // The host's own packets on the veth carry checksums the kernel never filled in
    // (offloading): a live read ignores checksums by default, a file read verifies them
    // (Zeek's default), so reading tcpdump's file as the live capture saw it takes -C.
    let file_log = d.join("file.log");
    let (code, _, err) = ipclog_read(&[
        "-r",
        pcap.to_str().unwrap(),
        "-C",
        "-f",
        file_log.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{err}");
    // Without -C the bad checksums are not counted, and ipclog says why once, naming -C.
    let verified_log = d.join("verified.log");
    let (code, _, err) = ipclog_read(&[
        "-r",
        pcap.to_str().unwrap(),
        "-f",
        verified_log.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(err.matches("have bad checksums").count(), 1, "{err}");
    assert!(err.contains("--checksums ignore (-C)"), "{err}");
    let verified = std::fs::read_to_string(&verified_log).unwrap();
    assert_eq!(
        verified
            .lines()
            .filter(|l| l.starts_with("P ") && l.contains("have bad checksums"))
            .count(),
        1,
        "{verified}"
    );
    let tcp = |log: &Path| -> BTreeSet<Closed> {
        closes(&std::fs::read_to_string(log).unwrap())
            .into_iter()
            .filter(|c| c.proto == 6)
            .collect()
    };
    let live = tcp(&live_log);
    let file = tcp(&file_log);
    assert_eq!(live, file, "live and file reads differ");
    assert_eq!(tcp(&any_log), live, "-i any and -i eth0 differ");
    let states: BTreeSet<&str> = live.iter().filter_map(|c| extra(c, "conn_state")).collect();
    assert_eq!(
        states,
        ["REJ", "RSTO", "SF"].into_iter().collect(),
        "{live:#?}"
    );
    let sf = live
        .iter()
        .find(|c| extra(c, "conn_state") == Some("SF"))
        .unwrap();
    assert_eq!(extra(sf, "orig_bytes"), Some("1000"));
    assert_eq!(extra(sf, "resp_bytes"), Some("2000"));
    assert_eq!((sf.src.as_str(), sf.dport), ("10.77.0.1", Some(8080)));
}

#[test]
fn json_output_has_zeeks_conn_log_fields_with_packet_times() {
    let d = scratch("cap-json");
    let mut s = Session::new("10.0.0.1:40000", "10.0.0.2:80", 1000, 5000);
    s.handshake(T0)
        .data(T0 + 10 * MS, true, 100)
        .data(T0 + 20 * MS, false, 300)
        .close(T0 + 30 * MS);
    let cap = write_cap(&d, "j.pcap", &s.packets);
    let (code, out, err) = ipclog_read(&[
        "-r",
        cap.to_str().unwrap(),
        "--json",
        "-",
        "-f",
        "/dev/null",
    ]);
    assert_eq!(code, 0, "{err}");
    let closes: Vec<&str> = out
        .lines()
        .filter(|l| l.contains("\"event\":\"close\""))
        .collect();
    assert_eq!(closes.len(), 1, "{out}");
    let c = closes[0];
    for want in [
        "\"conn_state\":\"SF\"",
        // The responder never sends a bare ACK here: no "a".
        "\"history\":\"ShADdFf\"",
        "\"id.orig_h\":\"10.0.0.1\"",
        "\"id.orig_p\":40000",
        "\"id.resp_h\":\"10.0.0.2\"",
        "\"id.resp_p\":80",
        "\"orig_bytes\":100",
        "\"resp_bytes\":300",
        "\"orig_pkts\":5",
        "\"resp_pkts\":3",
        "\"proto\":\"tcp\"",
        // The last ACK (32 ms) follows both FINs: as in Zeek, the clock stopped at 31 ms.
        "\"duration\":0.031",
    ] {
        assert!(c.contains(want), "{want} missing in {c}");
    }
    // ts is the first packet's time (Zeek's meaning), not the clock.
    let ts: f64 = c
        .split("\"ts\":")
        .nth(1)
        .unwrap()
        .split([',', '}'])
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!((ts - T0 as f64 / 1e6).abs() < 1e-3, "ts {ts}");
    assert!(c.contains("\"uid\":\"C"), "{c}");
}

#[test]
fn limits_show_in_the_stats_and_the_stop_lines() {
    let d = scratch("cap-limits");
    let mut a = Session::new("10.0.0.1:40000", "10.0.0.2:80", 1, 2);
    a.handshake(T0).close(T0 + 10 * MS);
    let mut b = Session::new("10.0.0.1:40001", "10.0.0.2:80", 1, 2);
    b.handshake(T0 + MS / 2).close(T0 + 11 * MS);
    let mut pk = a.packets.clone();
    pk.extend(b.packets.clone());
    pk.sort_by_key(|p| p.0);
    let cap = write_cap(&d, "l.pcap", &pk);
    let log = d.join("l.log");
    let (code, _, err) = ipclog_read(&[
        "-r",
        cap.to_str().unwrap(),
        "-f",
        log.to_str().unwrap(),
        "-s",
        "1",
        "--session-limit",
        "1",
    ]);
    assert_eq!(code, 0, "{err}");
    // The second connection's 6 packets are dropped: in the stats on stderr and the P lines.
    let stats = err
        .lines()
        .rfind(|l| l.contains("capture stats:"))
        .expect(&err);
    assert!(stats.contains("packets=12"), "{stats}");
    assert!(stats.contains("session_limit_drops=6"), "{stats}");
    let text = std::fs::read_to_string(&log).unwrap();
    assert_eq!(closes(&text).len(), 1);
    let p: Vec<&str> = text.lines().filter(|l| l.starts_with("P ")).collect();
    assert!(p.iter().any(|l| l.contains("session_limit")), "{text}");
}

#[test]
fn live_capture_without_cap_net_raw_says_so_and_exits_2() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 || Command::new("setpriv").arg("--version").output().is_err()
    {
        eprintln!("SKIPPED: needs root and setpriv to run ipclog as an unprivileged user");
        return;
    }
    // As nobody, without capabilities: opening the packet socket fails before any capture.
    let out = Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "--inh-caps=-all",
        ])
        .arg(bin("ipclog"))
        .args(["-i", "lo", "-f", "/dev/null"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("needs root or CAP_NET_RAW"), "{err}");
    assert_eq!(
        err.lines().filter(|l| l.contains("CAP_NET_RAW")).count(),
        1,
        "{err}"
    );
}
