//! `--ipfix` against a real collector: nfdump's nfcapd, started by each test on loopback.
//! What `nfdump` then lists must be the connections, packets and bytes ipclog's own JSON
//! says, IPv4 and IPv6, from a capture and from conntrack (with NAT), over UDP and TCP, and
//! through an outage of the collector (TCP: ipclog spools and forwards when it is back).

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use e2e::bins::{bin, scratch};
use e2e::lab::{Ipclog, Lab, SERVER};
use e2e::netns::wait_for;
use e2e::pcapgen::{self, Link, Session};
use e2e::servers::{free_port, need, read_flows, Flow, Nfcapd};

const T0: i64 = 1_700_000_000_000_000;
const MS: i64 = 1000;

/// (src, dst, sport, dport) → (orig packets, orig bytes, resp packets, resp bytes)
type Totals = BTreeMap<(String, String, u16, u16), (u64, u64, u64, u64)>;

fn skip() -> bool {
    need("nfcapd", "nfdump").is_some() || need("nfdump", "nfdump").is_some()
}

/// Every close in ipclog's JSON, summed per connection tuple.
fn json_totals(path: &Path) -> Totals {
    let text = std::fs::read_to_string(path).unwrap();
    let mut t = Totals::new();
    for l in text.lines() {
        let v: serde_json::Value = serde_json::from_str(l).unwrap();
        if v["event"] != "close" {
            continue;
        }
        let s = |k: &str| v[k].as_str().unwrap().to_string();
        let n = |k: &str| v[k].as_u64().unwrap_or(0);
        let key = (
            s("id.orig_h"),
            s("id.resp_h"),
            n("id.orig_p") as u16,
            n("id.resp_p") as u16,
        );
        let e = t.entry(key).or_default();
        e.0 += n("orig_pkts");
        e.1 += n("orig_ip_bytes");
        e.2 += n("resp_pkts");
        e.3 += n("resp_ip_bytes");
    }
    t
}

/// The collector's flows summed per tuple (several records per connection add up).
fn flow_totals(flows: &[Flow]) -> Totals {
    let mut t = Totals::new();
    for f in flows {
        let e = t
            .entry((f.src.clone(), f.dst.clone(), f.sport, f.dport))
            .or_default();
        e.0 += f.in_pkts;
        e.1 += f.in_bytes;
        e.2 += f.out_pkts;
        e.3 += f.out_bytes;
    }
    t
}

/// The connections the two disagree on (empty when they agree).
fn diff(got: &Totals, want: &Totals) -> String {
    let mut out = String::new();
    for (k, v) in want {
        if got.get(k) != Some(v) {
            out.push_str(&format!("ipclog {k:?} {v:?}, collector {:?}\n", got.get(k)));
        }
    }
    for (k, v) in got {
        if !want.contains_key(k) {
            out.push_str(&format!("collector only {k:?} {v:?}\n"));
        }
    }
    out
}

/// A capture of IPv4 and IPv6 TCP and UDP connections, data both ways.
fn capture(dir: &Path, long: bool) -> PathBuf {
    let mut pk = Vec::new();
    let mut a = Session::new("10.0.0.1:40000", "10.0.0.2:80", 1000, 5000);
    a.handshake(T0)
        .data(T0 + 10 * MS, true, 100)
        .data(T0 + 20 * MS, false, 1400)
        .close(T0 + 30 * MS);
    pk.extend(a.packets);
    let mut b = Session::new("[fd00::1]:40001", "[fd00::2]:443", 1, 2);
    b.handshake(T0 + 5 * MS)
        .data(T0 + 40 * MS, true, 300)
        .data(T0 + 50 * MS, false, 700)
        .rst(T0 + 60 * MS, true);
    pk.extend(b.packets);
    if long {
        // Open for a minute, the FIN at the end: with an active timeout, exported in parts.
        let mut c = Session::new("10.0.0.5:40005", "10.0.0.6:22", 7, 9);
        c.handshake(T0 + 100 * MS);
        for i in 1..6 {
            c.data(T0 + i * 10_000 * MS, true, 50)
                .data(T0 + i * 10_000 * MS + 5 * MS, false, 80);
        }
        c.close(T0 + 60_000 * MS);
        pk.extend(c.packets);
    }
    let udp = |t: i64, s: &str, d: &str, n: usize| {
        (
            t,
            pcapgen::udp(s.parse().unwrap(), d.parse().unwrap(), &vec![b'q'; n]),
        )
    };
    pk.push(udp(T0 + 70 * MS, "10.0.0.1:5353", "10.0.0.3:53", 40));
    pk.push(udp(T0 + 71 * MS, "10.0.0.3:53", "10.0.0.1:5353", 200));
    pk.push(udp(T0 + 80 * MS, "[fd00::1]:5000", "[fd00::3]:53", 60));
    pk.sort_by_key(|p| p.0);
    let p = dir.join("flows.pcap");
    pcapgen::write(&p, &Link::Ethernet(vec![]), false, &pk).unwrap();
    p
}

fn ipclog(args: &[&str]) -> (i32, String) {
    let out = Command::new(bin("ipclog"))
        .args(args)
        .env("TZ", "UTC")
        .stdin(Stdio::null())
        .output()
        .expect("run ipclog");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn a_capture_reaches_nfcapd_as_ipclog_saw_it_v4_and_v6() {
    if skip() {
        return;
    }
    let d = scratch("ipfix-pcap");
    let cap = capture(&d, false);
    let port = free_port(false);
    let mut nf = Nfcapd::start(&d, port, None);
    let json = d.join("out.json");
    let target = format!("127.0.0.1:{port}/udp");
    let (code, err) = ipclog(&[
        "-r",
        cap.to_str().unwrap(),
        "--json",
        json.to_str().unwrap(),
        "--ipfix",
        &target,
        "--ipfix-domain",
        "7",
    ]);
    assert_eq!(code, 0, "{err}");
    nf.stop();
    let flows = nf.flows();
    let want = json_totals(&json);
    assert_eq!(want.len(), 4, "{want:?}");
    assert!(want.keys().any(|k| k.0.contains(':')) && want.keys().any(|k| !k.0.contains(':')));
    assert_eq!(flow_totals(&flows), want, "nfcapd said:\n{}", nf.output());
    let said = nf.output();
    assert!(said.contains("Observation domain 7"), "{said}");
    assert!(said.contains("Sequence Errors: 0"), "{said}");
    // The TCP flags union from the packet view, and the start/end times.
    let a = flows.iter().find(|f| f.dport == 80).unwrap();
    assert_eq!(a.get("flg").trim(), "...AP.SF".replace('P', "."), "{a:?}");
    assert_eq!(a.get("ts").trim(), "2023-11-14 22:13:20", "{a:?}");
    let b = flows.iter().find(|f| f.dport == 443).unwrap();
    assert!(b.get("flg").contains('R'), "{b:?}");
}

#[test]
fn an_active_timeout_exports_a_long_connection_in_parts_that_add_up() {
    if skip() {
        return;
    }
    let d = scratch("ipfix-active");
    let cap = capture(&d, true);
    let port = free_port(false);
    let mut nf = Nfcapd::start(&d, port, None);
    let json = d.join("out.json");
    let target = format!("127.0.0.1:{port}");
    let (code, err) = ipclog(&[
        "-r",
        cap.to_str().unwrap(),
        "--json",
        json.to_str().unwrap(),
        "--ipfix",
        &target,
        "--ipfix-active-timeout",
        "15",
    ]);
    assert_eq!(code, 0, "{err}");
    nf.stop();
    let flows = nf.flows();
    let long: Vec<&Flow> = flows.iter().filter(|f| f.dport == 22).collect();
    assert!(
        long.len() >= 2,
        "one record for a minute-long connection: {long:?}"
    );
    assert_eq!(flow_totals(&flows), json_totals(&json));
}

#[test]
fn conntrack_connections_through_nat_reach_nfcapd_with_their_translation() {
    if skip() || e2e::netns::skip_reason().is_some() {
        return;
    }
    let d = scratch("ipfix-nat");
    let lab = Lab::new();
    let port = 4739;
    let mut nf = Nfcapd::start(&d, port, Some(&lab.router));
    let json = d.join("ct.json");
    let target = format!("127.0.0.1:{port}");
    let ipc = Ipclog::start(
        &lab.router,
        &d,
        &["--json", json.to_str().unwrap(), "--ipfix", &target],
    );
    let tcp = lab.client(&["tcp", SERVER, "8080", "3000"]);
    assert_eq!(tcp.last().map(String::as_str), Some("done 3000"), "{tcp:?}");
    let udp = lab.client(&["udp", SERVER, "5353", "120"]);
    assert!(udp.iter().any(|l| l.starts_with("answer")), "{udp:?}");
    let v6 = lab.client(&["tcp", "fd00:2::2", "8080", "2000"]);
    assert_eq!(v6.last().map(String::as_str), Some("done 2000"), "{v6:?}");
    // Each closes within the short conntrack timeouts.
    let closes = || {
        std::fs::read_to_string(&json)
            .unwrap_or_default()
            .lines()
            .filter(|l| {
                l.contains("\"event\":\"close\"")
                    && (l.contains("\"id.resp_p\":8080") || l.contains("\"id.resp_p\":5353"))
            })
            .count()
    };
    wait_for(Duration::from_secs(20), || (closes() >= 3).then_some(())).unwrap_or_else(|| {
        panic!(
            "no 3 closes:\n{}",
            std::fs::read_to_string(&json).unwrap_or_default()
        )
    });
    ipc.stop();
    nf.stop();
    let flows = nf.flows();
    let mut want = json_totals(&json);
    want.retain(|k, _| k.3 == 8080 || k.3 == 5353);
    let mut got = flow_totals(&flows);
    got.retain(|k, _| k.3 == 8080 || k.3 == 5353);
    assert_eq!(got, want, "nfcapd said:\n{}", nf.output());
    assert!(got.keys().any(|k| k.0 == "fd00:1::2"), "{got:?}");
    let tcp_port: u16 = tcp[0].parse().unwrap();
    // nfdump shows the IPv4 translation (postNATSourceIPv4Address, postNAPTSourceTransportPort).
    let fmt = Command::new("nfdump")
        .args([
            "-q",
            "-N",
            "-R",
            nf.dir.to_str().unwrap(),
            "-o",
            "fmt:%sa|%sp|%da|%dp|%xsa|%xsp|%xda|%xdp",
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&fmt.stdout);
    let rows: Vec<Vec<&str>> = text
        .lines()
        .map(|l| l.split('|').map(str::trim).collect())
        .collect();
    let tcp_port = tcp_port.to_string();
    let cols = rows
        .iter()
        .find(|c| c.len() == 8 && c[1] == tcp_port && c[3] == "8080")
        .unwrap_or_else(|| panic!("no NAT record for port {tcp_port}:\n{text}"));
    let line = cols.join("|");
    assert_eq!(
        &cols[..4],
        ["10.1.0.2", &tcp_port, SERVER, "8080"],
        "{line}"
    );
    assert_eq!(cols[4], e2e::lab::ROUTER_OUT, "{line}");
    assert_eq!(cols[6], SERVER, "{line}");
    assert_eq!(cols[7], "8080", "{line}");
}

/// IPFIX over TCP into nfcapd (which takes UDP only): a relay that cuts the TCP stream into
/// its messages (each says its length) and passes each on as one datagram. `down` closes it
/// (listener and connection) until set back.
struct Relay {
    port: u16,
    down: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
    /// IPv4 data records passed on (template 256).
    records: Arc<AtomicU64>,
    /// Set once it is down (listener and connection closed), cleared when it listens again.
    closed: Arc<AtomicBool>,
}

/// The length of a template-256 record (IPv4, no NAT): addresses, ports, protocol, flags,
/// two times, four counters, end reason, zone.
const V4_RECORD: usize = 4 + 4 + 2 + 2 + 1 + 1 + 8 + 8 + 4 * 8 + 1 + 4;

impl Relay {
    fn start(to: u16) -> Relay {
        let port = free_port(true);
        let down = Arc::new(AtomicBool::new(false));
        let stop = Arc::new(AtomicBool::new(false));
        let records = Arc::new(AtomicU64::new(0));
        let closed = Arc::new(AtomicBool::new(false));
        let (d, s, r, cl) = (down.clone(), stop.clone(), records.clone(), closed.clone());
        std::thread::spawn(move || {
            let out = UdpSocket::bind("127.0.0.1:0").unwrap();
            out.connect(("127.0.0.1", to)).unwrap();
            while !s.load(Ordering::Relaxed) {
                if d.load(Ordering::Relaxed) {
                    std::thread::sleep(Duration::from_millis(20));
                    continue;
                }
                let l = TcpListener::bind(("127.0.0.1", port)).unwrap();
                l.set_nonblocking(true).unwrap();
                cl.store(false, Ordering::Relaxed);
                while !d.load(Ordering::Relaxed) && !s.load(Ordering::Relaxed) {
                    match l.accept() {
                        Ok((c, _)) => relay(c, &out, &d, &s, &r),
                        Err(_) => std::thread::sleep(Duration::from_millis(20)),
                    }
                }
                drop(l);
                cl.store(true, Ordering::Relaxed);
            }
        });
        Relay {
            port,
            down,
            stop,
            records,
            closed,
        }
    }
}

fn relay(
    mut c: TcpStream,
    out: &UdpSocket,
    down: &AtomicBool,
    stop: &AtomicBool,
    records: &AtomicU64,
) {
    c.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
    let mut buf = Vec::new();
    let mut chunk = [0u8; 65536];
    while !down.load(Ordering::Relaxed) && !stop.load(Ordering::Relaxed) {
        match c.read(&mut chunk) {
            Ok(0) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(_) => {}
        }
        pass_on(&mut buf, out, records);
    }
    // A collector going down takes what it had received first (what ipclog wrote before it
    // could know); only then does it close.
    c.set_nonblocking(true).unwrap();
    while let Ok(n) = c.read(&mut chunk) {
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    pass_on(&mut buf, out, records);
    let _ = c.shutdown(std::net::Shutdown::Both);
}

/// Passes on every whole message in `buf`, counting the IPv4 records.
fn pass_on(buf: &mut Vec<u8>, out: &UdpSocket, records: &AtomicU64) {
    while buf.len() >= 4 {
        let len = u16::from_be_bytes([buf[2], buf[3]]) as usize;
        if buf.len() < len || len < 16 {
            break;
        }
        out.send(&buf[..len]).unwrap();
        let mut at = 16;
        while at + 4 <= len {
            let id = u16::from_be_bytes([buf[at], buf[at + 1]]);
            let set = (u16::from_be_bytes([buf[at + 2], buf[at + 3]]) as usize).max(4);
            if id == 256 {
                records.fetch_add(((set - 4) / V4_RECORD) as u64, Ordering::Relaxed);
            }
            at += set;
        }
        // nfcapd reads datagrams one by one: a burst would overflow its socket.
        std::thread::sleep(Duration::from_millis(1));
        buf.drain(..len);
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Many UDP flows (one request and one answer each), `n` of them from time `t0` on.
fn udp_flows(t0: i64, base: u16, n: u16) -> Vec<(i64, Vec<u8>)> {
    let mut pk = Vec::new();
    for i in 0..n {
        let c = format!("10.9.{}.{}:{}", i / 250, i % 250 + 1, base + i);
        let t = t0 + i as i64 * MS;
        pk.push((
            t,
            pcapgen::udp(c.parse().unwrap(), "10.8.0.1:53".parse().unwrap(), b"query"),
        ));
        pk.push((
            t + 1,
            pcapgen::udp(
                "10.8.0.1:53".parse().unwrap(),
                c.parse().unwrap(),
                b"answer!",
            ),
        ));
    }
    pk
}

#[test]
fn over_tcp_an_outage_of_the_collector_is_spooled_and_forwarded_in_order_when_it_is_back() {
    if skip() {
        return;
    }
    let d = scratch("ipfix-tcp");
    let port = free_port(false);
    let mut nf = Nfcapd::start(&d, port, None);
    let relay = Relay::start(port);
    let json = d.join("out.json");
    let spool = d.join("spool.db");
    let target = format!("127.0.0.1:{}/tcp", relay.port);
    // The capture comes through a pipe, in three parts: before, during and after the outage.
    let mut child = Command::new(bin("ipclog"))
        .args([
            "-r",
            "-",
            "--json",
            json.to_str().unwrap(),
            "--ipfix",
            &target,
        ])
        .args(["--spool", spool.to_str().unwrap(), "--flush-timeout", "20"])
        .env("TZ", "UTC")
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let link = Link::Ethernet(vec![]);
    let mut head = Vec::new();
    let recs = |pk: Vec<(i64, Vec<u8>)>| -> Vec<u8> {
        let mut out = Vec::new();
        for (t, ip) in pk {
            pcapgen::push_pcap_record(&mut out, 65535, &pcapgen::Record::new(t, link.frame(&ip)));
        }
        out
    };
    head.extend(pcapgen::pcap_bytes(link.linktype(), 65535, &[]));
    // UDP flows time out after a minute of capture time: each part ends well after the
    // last part's flows, so they close (and are exported) while that part is read.
    let part = |k: i64, base: u16| udp_flows(T0 + k * 600_000 * MS, base, 300);
    stdin.write_all(&head).unwrap();
    stdin.write_all(&recs(part(0, 10000))).unwrap();
    stdin.flush().unwrap();
    // Part 2 closes part 1's flows; wait until they are out, then take the collector away.
    stdin.write_all(&recs(part(1, 20000))).unwrap();
    stdin.flush().unwrap();
    let relayed = || relay.records.load(Ordering::Relaxed);
    wait_for(Duration::from_secs(20), || (relayed() >= 300).then_some(()))
        .unwrap_or_else(|| panic!("part 1's flows not exported: {} records", relayed()));
    relay.down.store(true, Ordering::Relaxed);
    // Down before anything more is exported: records written while a collector goes away
    // can vanish in TCP's buffers (README), which is not what this test is about.
    wait_for(Duration::from_secs(10), || {
        relay.closed.load(Ordering::Relaxed).then_some(())
    })
    .expect("relay down");
    // Part 3 closes part 2's flows while the collector is down: spooled.
    stdin.write_all(&recs(part(2, 30000))).unwrap();
    stdin.flush().unwrap();
    let spooled = || {
        Command::new("sqlite3")
            .arg(&spool)
            .arg("SELECT count(*) FROM spool")
            .output()
            .map(|o| {
                String::from_utf8_lossy(&o.stdout)
                    .trim()
                    .parse::<u64>()
                    .unwrap_or(0)
            })
            .unwrap_or(0)
    };
    wait_for(Duration::from_secs(20), || (spooled() > 0).then_some(()))
        .expect("events spooled while the collector was down");
    relay.down.store(false, Ordering::Relaxed);
    drop(stdin);
    let status =
        wait_for(Duration::from_secs(60), || child.try_wait().unwrap()).expect("ipclog ends");
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert!(status.success(), "{status}: {err}");
    assert!(err.contains("spooling events until it is back"), "{err}");
    assert!(err.contains("back; forwarding"), "{err}");
    assert_eq!(spooled(), 0, "{err}");
    // Let nfcapd take the last datagrams before it stops.
    std::thread::sleep(Duration::from_millis(500));
    nf.stop();
    let flows = read_flows(&nf.dir);
    let want = json_totals(&json);
    assert_eq!(want.len(), 900);
    let d = diff(&flow_totals(&flows), &want);
    assert!(d.is_empty(), "{d}{err}\nnfcapd said:\n{}", nf.output());
}

#[test]
fn a_collector_that_refuses_or_an_unknown_host_is_a_start_up_error() {
    let d = scratch("ipfix-bad");
    let cap = capture(&d, false);
    let port = free_port(true);
    let target = format!("127.0.0.1:{port}/tcp");
    let (code, err) = ipclog(&["-r", cap.to_str().unwrap(), "--ipfix", &target]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("cannot connect") && err.contains("refused"),
        "{err}"
    );
    let (code, err) = ipclog(&[
        "-r",
        cap.to_str().unwrap(),
        "--ipfix",
        "no-such-host.invalid:4739",
    ]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("cannot resolve"), "{err}");
    let (code, err) = ipclog(&[
        "-r",
        cap.to_str().unwrap(),
        "--ipfix",
        "127.0.0.1:4739/sctp",
    ]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("sctp"), "{err}");
}
