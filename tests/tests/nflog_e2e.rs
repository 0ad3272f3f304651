//! ipclog `--nflog`: ipmon's packet-filter log from nftables' `log group N`, in network
//! namespaces the tests build.
//!
//! ```text
//! client (10.71.0.1) eth0 ---- eth0 fw (10.71.0.2): nft rules log to group 7
//! ```
//!
//! The firewall's rules count what they log (named counters), so every test checks the
//! number of logged lines per rule prefix against the kernel's own count, and the lines,
//! rows and objects field by field.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use e2e::bins::{bin, scratch};
use e2e::netns::{self, wait_for, Netns};
use e2e::require_netns;

const GROUP: &str = "7";
const CLIENT: &str = "10.71.0.1";
const FW: &str = "10.71.0.2";

/// The firewall: SYNs to 22 dropped, web and pings accepted, the ICMP errors it sends about a
/// connection logged (they are `ct state related`: conntrack makes no entry or event of their
/// own for them), each rule with its named counter.
const RULES: &str = r#"
table inet t {
    counter drop_ssh {}
    counter ok_web {}
    counter ok_ping {}
    counter icmp_err {}
    counter drop_v6 {}
    chain in {
        type filter hook input priority 0; policy accept;
        tcp dport 22 counter name drop_ssh log group 7 prefix "drop-ssh" drop
        tcp dport 80 counter name ok_web log group 7 prefix "ok-web" accept
        icmp type echo-request counter name ok_ping log group 7 prefix "ok-ping" accept
        meta nfproto ipv6 udp dport 7 counter name drop_v6 log group 7 prefix "drop-v6" drop
    }
    chain out {
        type filter hook output priority 0; policy accept;
        ct state related icmp type destination-unreachable counter name icmp_err log group 7 prefix "icmp-err"
    }
}
"#;

/// Two namespaces joined by a veth pair, the firewall's rules loaded.
fn setup() -> (Netns, Netns) {
    let client = Netns::new("nfc").unwrap();
    let fw = Netns::new("nff").unwrap();
    netns::veth(
        &client,
        "eth0",
        &format!("{CLIENT}/24"),
        &fw,
        "eth0",
        &format!("{FW}/24"),
    )
    .unwrap();
    fw.nft(RULES).unwrap();
    client
        .run(&["ip", "addr", "add", "fd71::1/64", "dev", "eth0", "nodad"])
        .unwrap();
    fw.run(&["ip", "addr", "add", "fd71::2/64", "dev", "eth0", "nodad"])
        .unwrap();
    // One ICMP error per datagram, not the rate limit's share of them.
    fw.sysctl("net.ipv4.icmp_ratelimit", "0").unwrap();
    (client, fw)
}

/// A running `ipclog --nflog` with a line log, a history and JSON.
struct Logger {
    child: Child,
    dir: PathBuf,
}

impl Logger {
    fn start(fw: &Netns, dir: &Path) -> Logger {
        Logger::start_with(fw, dir, &[])
    }

    fn start_with(fw: &Netns, dir: &Path, extra: &[&str]) -> Logger {
        let child = fw
            .command(bin("ipclog"))
            .args(extra)
            .args(["--nflog", GROUP, "-f"])
            .arg(dir.join("log"))
            .arg("--db")
            .arg(dir.join("h.db"))
            .arg("--json")
            .arg(dir.join("json"))
            .env("TZ", "UTC")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(fs::File::create(dir.join("stderr")).unwrap())
            .spawn()
            .unwrap();
        let l = Logger {
            child,
            dir: dir.to_path_buf(),
        };
        wait_for(Duration::from_secs(15), || {
            l.log().contains(" nflog groups 7").then_some(())
        })
        .unwrap_or_else(|| panic!("ipclog did not start: {}", l.stderr()));
        l
    }

    fn log(&self) -> String {
        fs::read_to_string(self.dir.join("log")).unwrap_or_default()
    }

    fn stderr(&self) -> String {
        fs::read_to_string(self.dir.join("stderr")).unwrap_or_default()
    }

    /// SIGTERM; the exit must be clean.
    fn stop(mut self) -> String {
        // SAFETY: signalling our own child.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let status = wait_for(Duration::from_secs(10), || self.child.try_wait().unwrap())
            .expect("ipclog did not stop within 10 s");
        assert!(
            status.success(),
            "ipclog exited {status}: {}",
            self.stderr()
        );
        self.log()
    }
}

impl Drop for Logger {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The packets a named counter of table `inet t` counted.
fn counter(fw: &Netns, name: &str) -> usize {
    let out = fw
        .run_stdout(&["nft", "list", "counter", "inet", "t", name])
        .unwrap();
    let rest = &out[out.find("packets ").expect("a packets count") + 8..];
    rest.split_whitespace().next().unwrap().parse().unwrap()
}

fn f_lines<'a>(log: &'a str, prefix: &str) -> Vec<&'a str> {
    let key = format!(" {prefix} ");
    log.lines()
        .filter(|l| l.starts_with("F ") && l.contains(&key))
        .collect()
}

const PREFIXES: [(&str, &str); 5] = [
    ("drop-ssh", "drop_ssh"),
    ("ok-web", "ok_web"),
    ("ok-ping", "ok_ping"),
    ("icmp-err", "icmp_err"),
    ("drop-v6", "drop_v6"),
];

/// The client's traffic: 4 connection attempts to 22 (dropped: each times out after 0.3 s),
/// 3 web requests, 3 pings, 3 UDP datagrams to a closed port (each answered by an ICMP port
/// unreachable). Bounded: the script ends on its own.
const CLIENT_SCRIPT: &str = r#"
import socket, sys
fw = sys.argv[1]
for _ in range(4):
    s = socket.socket(); s.settimeout(0.3)
    try: s.connect((fw, 22))
    except OSError: pass
    s.close()
for _ in range(3):
    s = socket.create_connection((fw, 80), timeout=5)
    s.sendall(b"GET / HTTP/1.0\r\n\r\n"); s.recv(100); s.close()
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
u.bind(("0.0.0.0", 40999))
for _ in range(3):
    u.sendto(b"x", (fw, 9))
u6 = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
u6.bind(("::", 40998))
for _ in range(2):
    u6.sendto(b"x", ("fd71::2", 7))
# Three pings (echo requests with 56 bytes of data), each answered.
def csum(b):
    s = sum(int.from_bytes(b[i:i+2], "big") for i in range(0, len(b), 2))
    s = (s >> 16) + (s & 0xffff); s += s >> 16
    return ~s & 0xffff
r = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP); r.settimeout(2)
for seq in range(3):
    body = bytes(56)
    hdr = bytes([8, 0, 0, 0]) + (77).to_bytes(2, "big") + seq.to_bytes(2, "big")
    c = csum(hdr + body)
    r.sendto(hdr[:2] + c.to_bytes(2, "big") + hdr[4:] + body, (fw, 0))
    while r.recvfrom(200)[0][20] != 0: pass
"#;

const SERVER_SCRIPT: &str = r#"
import socket
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", 80)); s.listen(8)
while True:
    c, _ = s.accept(); c.recv(100); c.sendall(b"HTTP/1.0 200 OK\r\n\r\n"); c.close()
"#;

/// The firewall's web server, killed (and waited for) when dropped.
struct WebServer(Child);

impl WebServer {
    fn start(fw: &Netns) -> WebServer {
        let server = WebServer(fw.spawn(&["python3", "-c", SERVER_SCRIPT]).unwrap());
        wait_for(Duration::from_secs(10), || {
            let ss = fw.run_stdout(&["ss", "-ltn"]).ok()?;
            ss.contains(":80 ").then_some(())
        })
        .expect("web server listening");
        server
    }
}

impl Drop for WebServer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Lines per prefix equal the rule counters; every field of the lines is what the packets
/// were; the history's rows, the JSON objects and constat's section (from the log, a mixed
/// log and the history) say the same.
#[test]
fn logged_packets_match_the_rule_counters_in_every_output() {
    require_netns!();
    let (client, fw) = setup();
    let dir = scratch("nflog-counts");
    let _server = WebServer::start(&fw);
    let logger = Logger::start(&fw, &dir);
    client.run(&["python3", "-c", CLIENT_SCRIPT, FW]).unwrap();
    // Every packet the rules counted reaches the log (the kernel flushes its batch within
    // 20 ms; the counters do not move any more: the traffic is over).
    let settled = wait_for(Duration::from_secs(10), || {
        let log = logger.log();
        PREFIXES
            .iter()
            .all(|(p, c)| f_lines(&log, p).len() == counter(&fw, c))
            .then_some(())
    });
    let log = logger.stop();
    let counts: Vec<(usize, usize)> = PREFIXES
        .iter()
        .map(|(p, c)| (f_lines(&log, p).len(), counter(&fw, c)))
        .collect();
    assert!(settled.is_some(), "lines vs counters {counts:?}\n{log}");
    assert_eq!(
        counts[0].1, 4,
        "SYNs to 22 (no retransmit within 0.3 s)\n{log}"
    );
    assert!(counts[1].1 >= 9, "3 connections' packets to 80\n{log}");
    assert_eq!(counts[2].1, 3, "pings\n{log}");
    assert_eq!(counts[3].1, 3, "port unreachables\n{log}");
    assert_eq!(counts[4].1, 2, "IPv6 datagrams\n{log}");
    for l in f_lines(&log, "drop-v6") {
        let want = " eth0 - drop-v6 b fd71::1,40998 -> fd71::2,7 PR udp len 40 49 group=7";
        assert!(l.ends_with(want), "{l}");
    }

    // Fields: interfaces, rule, action, addresses and ports, protocol, lengths, flags, ICMP.
    for l in f_lines(&log, "drop-ssh") {
        let want = format!(" eth0 - drop-ssh b {CLIENT},");
        assert!(l.contains(&want), "{l}");
        let want = format!(" -> {FW},22 PR tcp len 20 60 -S group=7");
        assert!(l.ends_with(&want), "{l}");
        let time = l.split(' ').nth(1).unwrap();
        assert_eq!(time.len(), 26, "time with microseconds: {l}");
    }
    let web = f_lines(&log, "ok-web");
    assert!(
        web.iter().all(|l| l.contains(" eth0 - ok-web p ")),
        "{web:?}"
    );
    assert!(web[0].contains(" PR tcp len 20 60 -S group=7"), "{web:?}");
    assert!(web.iter().any(|l| l.contains(" -AP ")), "{web:?}");
    assert!(web.iter().any(|l| l.contains(" -AF ")), "{web:?}");
    for l in f_lines(&log, "ok-ping") {
        let want = format!(" eth0 - ok-ping p {CLIENT} -> {FW} PR icmp len 20 84 icmp 8/0 group=7");
        assert!(l.contains(&want), "{l}");
    }
    // The ICMP error goes out (no in interface) and names the datagram it is about.
    for l in f_lines(&log, "icmp-err") {
        let want =
            format!(" - eth0 icmp-err L {FW} -> {CLIENT} PR icmp len 20 57 icmp 3/3 group=7");
        assert!(l.contains(&want), "{l}");
        let want = format!("related=udp:{CLIENT},40999->{FW},9");
        assert!(l.contains(&want), "{l}");
    }

    // The history: one packets row per line, the same fields.
    let db = store::open_read_only(&dir.join("h.db")).unwrap();
    for (p, c) in PREFIXES {
        let n: i64 = db
            .query_row("SELECT count(*) FROM packets WHERE prefix = ?1", [p], |r| {
                r.get(0)
            })
            .unwrap();
        assert_eq!(n as usize, counter(&fw, c), "{p} rows");
    }
    let (action, src, dport, flags, iface): (String, String, i64, String, String) = db
        .query_row(
            "SELECT action, src, dport, tcp_flags, in_iface FROM packets WHERE prefix = 'drop-ssh'",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)),
        )
        .unwrap();
    assert_eq!(
        (
            action.as_str(),
            src.as_str(),
            dport,
            flags.as_str(),
            iface.as_str()
        ),
        ("block", CLIENT, 22, "S", "eth0")
    );
    let related: String = db
        .query_row(
            "SELECT related FROM packets WHERE prefix = 'icmp-err' LIMIT 1",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(related, format!("udp:{CLIENT},40999->{FW},9"));
    let source: String = db
        .query_row("SELECT source FROM runs", [], |r| r.get(0))
        .unwrap();
    assert_eq!(source, "nflog");

    // JSON: one packet object per line.
    let json = fs::read_to_string(dir.join("json")).unwrap();
    let objects: Vec<&str> = json
        .lines()
        .filter(|l| l.contains("\"event\":\"packet\""))
        .collect();
    assert_eq!(
        objects.len(),
        counts.iter().map(|c| c.1).sum::<usize>(),
        "{json}"
    );
    assert!(objects.iter().any(|o| o.contains("\"prefix\":\"drop-ssh\"")
        && o.contains("\"action\":\"block\"")
        && o.contains("\"id.resp_p\":22")
        && o.contains("\"tcp_flags\":\"S\"")
        && o.contains("\"in_iface\":\"eth0\"")));
    assert!(objects.iter().any(|o| o.contains("\"icmp_type\":3")
        && o.contains(&format!("\"related\":\"udp:{CLIENT},40999->{FW},9\""))));

    // constat's section, from the log, from a log that mixes connections and packets, and
    // from the history.
    let section = |out: &str| -> Vec<String> {
        out.lines()
            .skip_while(|l| !l.starts_with("packets logged by the packet filter"))
            .map(str::to_string)
            .collect()
    };
    let constat = |file: &Path| {
        let out = Command::new(bin("constat"))
            .args(["-a", "-n", "--no-cache", "-f"])
            .arg(file)
            .env("TZ", "UTC")
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        String::from_utf8(out.stdout).unwrap()
    };
    let want_ssh = format!("drop-ssh        b   {CLIENT:<15} tcp  22              4");
    let from_log = constat(&dir.join("log"));
    let sec = section(&from_log);
    assert!(sec.contains(&want_ssh), "{from_log}");
    assert!(
        sec.iter().any(|l| l == "rule drop-ssh: 4 packets blocked"),
        "{from_log}"
    );
    assert!(
        sec.iter().any(|l| l == "rule icmp-err: 3 packets logged"),
        "{from_log}"
    );
    let web_total = format!("rule ok-web: {} packets passed", counts[1].1);
    assert!(sec.contains(&web_total), "{from_log}");
    assert!(from_log.ends_with("0 ERRORS\n"), "{from_log}");

    let mixed = dir.join("mixed");
    let conn = "O 2026-01-02-03:04:05 tcp  10.71.0.1       10.71.0.2       40000 8443  s      -\n\
                C 2026-01-02-03:04:09 tcp  10.71.0.1       10.71.0.2       40000 8443  t      4\n";
    fs::write(&mixed, format!("{log}{conn}")).unwrap();
    let from_mixed = constat(&mixed);
    assert!(
        from_mixed
            .lines()
            .any(|l| l.starts_with(&format!("{CLIENT:<15} tcp  8443     {FW:<15}     1     0"))),
        "{from_mixed}"
    );
    assert_eq!(section(&from_mixed), sec, "{from_mixed}");
    assert!(from_mixed.ends_with("0 ERRORS\n"), "{from_mixed}");

    let from_db = constat(&dir.join("h.db"));
    assert_eq!(section(&from_db), sec, "{from_db}");
}

/// A group another process has bound, and a user without CAP_NET_ADMIN: start-up errors
/// (exit status 2) that name the group and say why, before any output is created.
#[test]
fn a_group_already_bound_or_not_permitted_is_a_start_up_error() {
    require_netns!();
    let (_client, fw) = setup();
    let dir = scratch("nflog-busy");
    let first = Logger::start(&fw, &dir);
    let out = fw
        .command(bin("ipclog"))
        .args(["--nflog", "8,7", "-f"])
        .arg(dir.join("second.log"))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("cannot bind NFLOG group 7"), "{err}");
    assert!(err.contains("another process has bound it"), "{err}");
    assert!(
        !dir.join("second.log").exists(),
        "no output before the source is open"
    );
    first.stop();

    let out = fw
        .command("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "--inh-caps=-all",
        ])
        .arg(bin("ipclog"))
        .args(["--nflog", GROUP])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("binding NFLOG group 7 needs CAP_NET_ADMIN"),
        "{err}"
    );
    let out = fw
        .command(bin("ipclog"))
        .args(["--nflog", "x"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("\"x\" is not a log group number"), "{err}");
}

/// `--nflog G --conntrack`: packets and connections in one log. The UDP datagrams to a
/// closed port are a connection (O line from conntrack), and the ICMP errors about them,
/// which conntrack reports no event for, are F lines naming that connection.
#[test]
fn beside_conntrack_icmp_errors_name_their_connection() {
    require_netns!();
    let (client, fw) = setup();
    fw.enable_conntrack().unwrap();
    let dir = scratch("nflog-conntrack");
    let _server = WebServer::start(&fw);
    let logger = Logger::start_with(&fw, &dir, &["--conntrack"]);
    client.run(&["python3", "-c", CLIENT_SCRIPT, FW]).unwrap();
    // The firewall's own address shows as its interface.
    let udp_open = format!("udp  {CLIENT:<15} eth0            40999 9 ");
    let settled = wait_for(Duration::from_secs(10), || {
        let log = logger.log();
        let counted = PREFIXES
            .iter()
            .all(|(p, c)| f_lines(&log, p).len() == counter(&fw, c));
        let opened = log
            .lines()
            .any(|l| l.starts_with("O ") && l.contains(&udp_open));
        (counted && opened).then_some(())
    });
    let log = logger.stop();
    assert!(settled.is_some(), "{log}");
    let related = format!("related=udp:{CLIENT},40999->{FW},9");
    assert_eq!(
        f_lines(&log, "icmp-err")
            .iter()
            .filter(|l| l.contains(&related))
            .count(),
        3,
        "{log}"
    );
    let web = format!("tcp  {CLIENT:<15} eth0            ");
    assert!(
        log.lines()
            .any(|l| l.starts_with("O ") && l.contains(&web) && l.contains(" 80 ")),
        "connections are logged too:\n{log}"
    );
    assert!(log.contains(" nflog groups 7"), "{log}");
    assert!(
        log.trim_end().ends_with("ipclog stopped, 0 errors"),
        "{log}"
    );
}

/// `--syslog`: each packet is a syslog message with its time to the microsecond (ipmon's
/// `HH:MM:SS.ffffff`), at ipmon's priorities
/// (blocked: warning, passed: notice), sent to a /dev/log socket of the test's, mounted in a
/// private mount namespace so the host's syslog is never touched.
#[test]
fn syslog_gets_packets_at_ipmon_s_priorities() {
    require_netns!();
    let (client, fw) = setup();
    let dir = scratch("nflog-syslog");
    let sock_path = dir.join("log.sock");
    let sock = std::os::unix::net::UnixDatagram::bind(&sock_path).unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let script = format!(
        "mount -t tmpfs none /dev && touch /dev/log && mount --bind {} /dev/log && exec {} \
         --syslog --nflog {GROUP}",
        sock_path.display(),
        bin("ipclog").display(),
    );
    let mut child = fw
        .command("unshare")
        .args(["-m", "--propagation", "private", "sh", "-c", &script])
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    let mut got: Vec<String> = Vec::new();
    let mut buf = [0u8; 4096];
    let mut recv_until = |got: &mut Vec<String>, pat: &str| -> String {
        wait_for(Duration::from_secs(10), || {
            if let Ok(n) = sock.recv(&mut buf) {
                got.push(String::from_utf8_lossy(&buf[..n]).into_owned());
            }
            got.iter().find(|m| m.contains(pat)).cloned()
        })
        .unwrap_or_else(|| panic!("no syslog message with {pat:?}: {got:#?}"))
    };
    recv_until(&mut got, "nflog groups 7");
    client
        .run(&[
            "python3",
            "-c",
            "import socket\nfor p in (22, 80):\n    s = socket.socket(); s.settimeout(0.3)\n    \
             try: s.connect((__import__('sys').argv[1], p))\n    except OSError: pass\n",
            FW,
        ])
        .unwrap();
    // The severity is the priority's low three bits: 4 warning, 5 notice.
    let severity = |m: &str| -> u32 { m[1..m.find('>').unwrap()].parse::<u32>().unwrap() % 8 };
    let blocked = recv_until(&mut got, " drop-ssh b ");
    let after_f = &blocked[blocked.find("]: F ").expect("an F line") + 5..];
    let (time, rest) = after_f.split_once(' ').unwrap();
    assert!(
        time.len() == 15 && time.as_bytes()[8] == b'.',
        "HH:MM:SS.ffffff: {blocked}"
    );
    assert!(
        rest.starts_with(&format!("eth0 - drop-ssh b {CLIENT},")),
        "{blocked}"
    );
    assert!(
        blocked.contains(&format!(" -> {FW},22 PR tcp len 20 60 -S group=7")),
        "{blocked}"
    );
    assert_eq!(severity(&blocked), 4, "{blocked}");
    let passed = recv_until(&mut got, " ok-web p ");
    assert_eq!(severity(&passed), 5, "{passed}");
    // SAFETY: our child (unshare execs sh, which execs ipclog: same pid).
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let st = wait_for(Duration::from_secs(10), || child.try_wait().unwrap()).unwrap();
    assert!(st.success(), "{st}");
    recv_until(&mut got, "ipclog stopped, 0 errors");
}
