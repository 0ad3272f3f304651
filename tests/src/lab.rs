//! The conntrack lab the end-to-end tests share: a client, a NAT router and a server in their
//! own network namespaces, python3 servers and clients that make real TCP/UDP/ICMP traffic,
//! and a running `ipclog` writing its log to a file.
//!
//! ```text
//! client (10.1.0.2) -- eth0 router eth1 (masquerade) -- server (10.2.0.2)
//! ```

use std::fs;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Stdio};
use std::time::Duration;

use crate::bins::bin;
use crate::netns::{veth, wait_for, Netns};

pub const CLIENT: &str = "10.1.0.2";
pub const SERVER: &str = "10.2.0.2";
pub const ROUTER_OUT: &str = "10.2.0.1";

/// The server: TCP 8080 echoes, 8082 resets after the first read, 8083 echoes (long-lived);
/// UDP 5353 answers, 5354 never does. Prints `ready` once listening.
pub const SERVER_PY: &str = r#"
import socket, threading, struct, sys
def tcp(port, mode):
    s = socket.socket(socket.AF_INET6); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    s.bind(("::", port)); s.listen(64)
    while True:
        c, _ = s.accept()
        def h(c=c):
            if mode == "reset":
                c.recv(100)
                c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                c.close(); return
            while True:
                d = c.recv(65536)
                if not d: break
                c.sendall(d)
            c.close()
        threading.Thread(target=h, daemon=True).start()
def udp(port, answer):
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.bind(("0.0.0.0", port))
    while True:
        d, a = u.recvfrom(65536)
        if answer: u.sendto(d, a)
for p, m in ((8080, "echo"), (8082, "reset"), (8083, "echo")):
    threading.Thread(target=tcp, args=(p, m), daemon=True).start()
threading.Thread(target=udp, args=(5353, True), daemon=True).start()
threading.Thread(target=udp, args=(5354, False), daemon=True).start()
print("ready", flush=True)
sys.stdin.read()
"#;

/// The client: one action per run, prints the local port it used (and what happened).
/// `long` waits for a line on stdin before closing.
pub const CLIENT_PY: &str = r#"
import socket, sys, os, struct, time
act, host = sys.argv[1], sys.argv[2]
port = int(sys.argv[3]) if len(sys.argv) > 3 else 0
n = int(sys.argv[4]) if len(sys.argv) > 4 else 100
def tcp_sock():
    if ":" in host:
        s = socket.socket(socket.AF_INET6); s.bind(("::", 0))
    else:
        s = socket.socket(); s.bind(("0.0.0.0", 0))
    print(s.getsockname()[1], flush=True); return s
if act == "tcp":
    s = tcp_sock(); s.connect((host, port)); s.sendall(b"x" * n)
    got = 0
    while got < n:
        d = s.recv(65536)
        if not d: break
        got += len(d)
    s.close(); print("done", got, flush=True)
elif act == "long":
    s = tcp_sock(); s.connect((host, port)); s.sendall(b"x" * n); s.recv(65536)
    print("open", flush=True); sys.stdin.readline(); s.close(); print("done", flush=True)
elif act == "refused":
    s = tcp_sock()
    try: s.connect((host, port)); print("connected?!")
    except ConnectionRefusedError: print("refused", flush=True)
elif act == "reset":
    s = tcp_sock(); s.connect((host, port)); s.sendall(b"x" * n)
    try:
        s.recv(100); s.recv(100); print("no reset")
    except ConnectionResetError: print("reset", flush=True)
elif act in ("udp", "udpsilent"):
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.bind(("0.0.0.0", 0))
    print(u.getsockname()[1], flush=True); u.sendto(b"q" * n, (host, port))
    if act == "udp":
        u.settimeout(5); d, _ = u.recvfrom(65536); print("answer", len(d), flush=True)
elif act == "udpflows":
    for i in range(n):
        # Distinct source ports: a reused port would be the same conntrack entry.
        u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.bind(("0.0.0.0", 20000 + i))
        u.sendto(b"f", (host, port)); u.close()
        time.sleep(0.01)
    print("sent", n, flush=True)
elif act == "udprate":
    # n flows (source ports base, base+1, ...) at about `rate` a second.
    base, rate = int(sys.argv[5]), float(sys.argv[6])
    t0 = time.monotonic()
    for i in range(n):
        ahead = t0 + i / rate - time.monotonic()
        if ahead > 0: time.sleep(ahead)
        u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.bind(("0.0.0.0", base + i))
        u.sendto(b"r", (host, port)); u.close()
    print("sent", n, flush=True)
elif act == "udpburst":
    socks = []
    for i in range(n):
        u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.bind(("0.0.0.0", 30000 + i))
        socks.append(u)
    for u in socks: u.sendto(b"b", (host, port))
    print("sent", n, flush=True)
elif act == "proto50":
    s = socket.socket(socket.AF_INET, socket.SOCK_RAW, 50)
    s.sendto(b"\0" * 16, (host, 0)); print("sent", flush=True)
elif act == "ping":
    s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
    ident = os.getpid() & 0xffff
    def csum(b):
        if len(b) % 2: b += b"\0"
        t = sum(struct.unpack("!%dH" % (len(b) // 2), b)); t = (t >> 16) + (t & 0xffff); t += t >> 16
        return ~t & 0xffff
    body = struct.pack("!BBHHH", 8, 0, 0, ident, 1) + b"ping" * 8
    pkt = body[:2] + struct.pack("!H", csum(body)) + body[4:]
    print(ident, flush=True); s.settimeout(5); s.sendto(pkt, (host, 0))
    while True:
        d, a = s.recvfrom(2000)
        if d[20] == 0: print("pong", flush=True); break
"#;

/// client (10.1.0.2) -- eth0 router eth1 (masquerade) -- server (10.2.0.2), with short
/// conntrack timeouts in the router and the server.
pub struct Lab {
    pub client: Netns,
    pub router: Netns,
    pub server: Netns,
    _server_proc: Child,
    _server_stdin: ChildStdin,
}

impl Lab {
    /// Builds the three namespaces and starts the server (panics on failure: tests only).
    // No `Default`: making namespaces and processes is not a default value.
    #[allow(clippy::new_without_default)]
    pub fn new() -> Lab {
        let client = Netns::new("cli").unwrap();
        let router = Netns::new("rtr").unwrap();
        let server = Netns::new("srv").unwrap();
        // No duplicate address detection, so IPv6 (link-local too) works at once.
        for ns in [&client, &router, &server] {
            ns.sysctl("net.ipv6.conf.default.accept_dad", "0").unwrap();
            ns.sysctl("net.ipv6.conf.all.accept_dad", "0").unwrap();
        }
        veth(
            &client,
            "eth0",
            "10.1.0.2/24",
            &router,
            "eth0",
            "10.1.0.1/24",
        )
        .unwrap();
        veth(
            &router,
            "eth1",
            "10.2.0.1/24",
            &server,
            "eth0",
            "10.2.0.2/24",
        )
        .unwrap();
        client.add_addr("eth0", "fd00:1::2/64").unwrap();
        router.add_addr("eth0", "fd00:1::1/64").unwrap();
        router.add_addr("eth1", "fd00:2::1/64").unwrap();
        server.add_addr("eth0", "fd00:2::2/64").unwrap();
        client.route("default", "10.1.0.1").unwrap();
        client.route("default", "fd00:1::1").unwrap();
        server.route("10.1.0.0/24", "10.2.0.1").unwrap();
        server.route("fd00:1::/64", "fd00:2::1").unwrap();
        for ns in [&router, &server] {
            ns.enable_conntrack().unwrap();
            // Short timeouts, so closes come within a second or two (with --evict-every 1).
            for (k, v) in [
                ("tcp_timeout_time_wait", "1"),
                ("tcp_timeout_close", "1"),
                ("tcp_timeout_close_wait", "2"),
                ("tcp_timeout_last_ack", "2"),
                ("tcp_timeout_fin_wait", "2"),
                ("udp_timeout", "2"),
                ("udp_timeout_stream", "2"),
                ("icmp_timeout", "1"),
                ("generic_timeout", "2"),
            ] {
                ns.sysctl(&format!("net.netfilter.nf_conntrack_{k}"), v)
                    .unwrap();
            }
        }
        router.enable_masquerade("eth1").unwrap();
        let mut p = server
            .command("python3")
            .args(["-c", SERVER_PY])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(p.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert_eq!(line.trim(), "ready");
        let stdin = p.stdin.take().unwrap();
        Lab {
            client,
            router,
            server,
            _server_proc: p,
            _server_stdin: stdin,
        }
    }

    /// Starts a client action in the background (stdin and stdout piped), e.g. a flood.
    pub fn spawn_client(&self, args: &[&str]) -> Child {
        self.client
            .command("python3")
            .args(["-c", CLIENT_PY])
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap()
    }

    /// Runs a client action to its end; returns its output lines (first = local port).
    pub fn client(&self, args: &[&str]) -> Vec<String> {
        let mut a = vec!["python3", "-c", CLIENT_PY];
        a.extend_from_slice(args);
        let out = self.client.run(&a).unwrap();
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::to_string)
            .collect()
    }
}

/// A running ipclog writing its log to a file.
pub struct Ipclog {
    pub child: Child,
    pub log: PathBuf,
    pub stderr: PathBuf,
}

impl Ipclog {
    pub fn start(ns: &Netns, dir: &Path, extra: &[&str]) -> Ipclog {
        Ipclog::start_under(ns, dir, &[], extra)
    }

    /// Starts ipclog through `wrapper` (a command and its arguments that then run ipclog).
    pub fn start_under(ns: &Netns, dir: &Path, wrapper: &[&str], extra: &[&str]) -> Ipclog {
        let log = dir.join("ipclog.log");
        let stderr = dir.join("ipclog.stderr");
        let mut c = match wrapper.split_first() {
            Some((program, args)) => {
                let mut c = ns.command(program);
                c.args(args).arg(bin("ipclog"));
                c
            }
            None => ns.command(bin("ipclog")),
        };
        c.arg("-f")
            .arg(&log)
            .args(["--evict-every", "1"])
            .args(extra)
            .env("TZ", "UTC")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(fs::File::create(&stderr).unwrap());
        let child = c.spawn().unwrap();
        let me = Ipclog { child, log, stderr };
        // Started once the I lines of its interfaces are written (after the last start line:
        // a restarted ipclog appends to the log of the one before).
        wait_for(Duration::from_secs(15), || {
            let text = me.text();
            let run = &text[text.rfind(" ipclog started\n")?..];
            run.lines()
                .any(|l| l.starts_with("I ") && l.contains(" UP eth0 "))
                .then_some(())
        })
        .unwrap_or_else(|| {
            panic!(
                "ipclog did not start within 15 s; log:\n{}\nstderr:\n{}",
                me.text(),
                fs::read_to_string(&me.stderr).unwrap_or_default()
            )
        });
        me
    }

    pub fn text(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn wait_line(&self, pred: impl Fn(&str) -> bool, what: &str) -> String {
        wait_for(Duration::from_secs(15), || {
            self.text().lines().find(|l| pred(l)).map(str::to_string)
        })
        .unwrap_or_else(|| {
            panic!(
                "no {what} line within 15 s; log:\n{}\nstderr:\n{}",
                self.text(),
                fs::read_to_string(&self.stderr).unwrap_or_default()
            )
        })
    }

    /// SIGTERM; waits for the exit and checks it was clean.
    pub fn stop(mut self) -> String {
        // SAFETY: signalling our own child.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let status = wait_for(Duration::from_secs(10), || self.child.try_wait().unwrap())
            .expect("ipclog did not stop within 10 s of SIGTERM");
        let text = self.text();
        assert!(
            status.success(),
            "ipclog exited {status}; stderr:\n{}",
            fs::read_to_string(&self.stderr).unwrap_or_default()
        );
        let last = text.lines().last().unwrap_or("");
        assert!(
            last.starts_with("P ") && last.ends_with(" ipclog stopped, 0 errors"),
            "last line: {last:?}"
        );
        text
    }
}

impl Drop for Ipclog {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
