//! The real servers the remote sinks are tested against, started by the tests themselves and
//! stopped even when a test fails: nfdump's `nfcapd` (an IPFIX collector) and a PostgreSQL
//! server of its own (initdb into a scratch directory, listening only on a Unix socket there).
//!
//! Both come from Debian packages (`nfdump`, `postgresql`). A test that needs one calls
//! [`need`]: in CI (`CI=true`) a missing package fails the test, elsewhere it skips with a
//! message.

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::netns::{wait_for, Netns};

/// Whether `tool` (a program of `package`) is there: `None` when it is, else why the test
/// skips. Panics in CI, where .ci/run installs it.
pub fn need(tool: &str, package: &str) -> Option<String> {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {tool} || ls {tool} 2>/dev/null")])
        .stdout(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if found {
        return None;
    }
    let why = format!("{tool} not found: apt-get install -y {package}");
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("{why} (CI installs it in .ci/run)");
    }
    eprintln!("skipped: {why}");
    Some(why)
}

/// A running `nfcapd`, writing what it collects into its own directory.
pub struct Nfcapd {
    child: Child,
    pub dir: PathBuf,
    out: PathBuf,
    pub port: u16,
}

/// One flow as `nfdump -o csv` lists it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Flow {
    pub src: String,
    pub dst: String,
    pub sport: u16,
    pub dport: u16,
    pub proto: String,
    pub in_pkts: u64,
    pub in_bytes: u64,
    pub out_pkts: u64,
    pub out_bytes: u64,
    /// Every column by its csv name.
    pub all: Vec<(String, String)>,
}

impl Flow {
    pub fn get(&self, name: &str) -> &str {
        self.all
            .iter()
            .find(|(n, _)| n == name)
            .map_or("", |(_, v)| v.as_str())
    }
}

impl Nfcapd {
    /// Starts nfcapd on 127.0.0.1:`port` (in `ns` if given), files in `dir/flows`; returns
    /// once it is listening.
    pub fn start(dir: &Path, port: u16, ns: Option<&Netns>) -> Nfcapd {
        let flows = dir.join(format!("flows-{port}"));
        fs::create_dir_all(&flows).unwrap();
        let out = dir.join(format!("nfcapd-{port}.out"));
        let mut c = match ns {
            Some(ns) => ns.command("nfcapd"),
            None => Command::new("nfcapd"),
        };
        // One file for the whole test: it is closed (and readable) when nfcapd stops.
        c.args([
            "-w",
            flows.to_str().unwrap(),
            "-b",
            "127.0.0.1",
            "-t",
            "3600",
        ])
        .args(["-p", &port.to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(fs::File::create(&out).unwrap());
        let child = c.spawn().expect("start nfcapd");
        let me = Nfcapd {
            child,
            dir: flows,
            out,
            port,
        };
        // Listening once its socket is in the namespace's UDP table (it says "Startup" only
        // when its output is flushed, at the end).
        let bound = format!(" 0100007F:{port:04X} ");
        wait_for(Duration::from_secs(10), || {
            let table = match ns {
                Some(ns) => ns.run_stdout(&["cat", "/proc/net/udp"]).unwrap_or_default(),
                None => fs::read_to_string("/proc/net/udp").unwrap_or_default(),
            };
            table.contains(&bound).then_some(())
        })
        .unwrap_or_else(|| panic!("nfcapd did not start:\n{}", me.output()));
        me
    }

    /// What nfcapd said (its startup, exporters, the totals at the end).
    pub fn output(&self) -> String {
        fs::read_to_string(&self.out).unwrap_or_default()
    }

    /// SIGTERM (nfcapd writes its file out) and waits for it to end.
    pub fn stop(&mut self) {
        // SAFETY: signalling our own child.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        wait_for(Duration::from_secs(10), || self.child.try_wait().unwrap())
            .expect("nfcapd did not stop within 10 s");
    }

    /// Every flow in its files (after [`Nfcapd::stop`]).
    pub fn flows(&self) -> Vec<Flow> {
        read_flows(&self.dir)
    }
}

impl Drop for Nfcapd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `nfdump -R DIR -o csv`, parsed by the header's names.
pub fn read_flows(dir: &Path) -> Vec<Flow> {
    let out = Command::new("nfdump")
        .args(["-q", "-N", "-R", dir.to_str().unwrap(), "-o", "csv"])
        .output()
        .expect("run nfdump");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let mut lines = text.lines();
    let Some(header) = lines.find(|l| l.starts_with("ts,")) else {
        // -q leaves the header out in some versions: the 1.7 layout.
        return parse_csv(CSV_HEADER, &text);
    };
    parse_csv(header, &lines.collect::<Vec<_>>().join("\n"))
}

const CSV_HEADER: &str = "ts,te,td,sa,da,sp,dp,pr,flg,fwd,stos,ipkt,ibyt,opkt,obyt";

fn parse_csv(header: &str, body: &str) -> Vec<Flow> {
    let names: Vec<&str> = header.split(',').collect();
    let mut flows = Vec::new();
    for l in body.lines() {
        let cols: Vec<&str> = l.split(',').collect();
        if cols.len() < 15 || !cols[0].starts_with(|c: char| c.is_ascii_digit()) {
            continue;
        }
        let m: HashMap<&str, &str> = names.iter().copied().zip(cols.iter().copied()).collect();
        let n = |k: &str| m.get(k).and_then(|v| v.trim().parse().ok()).unwrap_or(0);
        flows.push(Flow {
            src: m["sa"].to_string(),
            dst: m["da"].to_string(),
            sport: n("sp") as u16,
            dport: n("dp") as u16,
            proto: m["pr"].trim().to_string(),
            in_pkts: n("ipkt"),
            in_bytes: n("ibyt"),
            out_pkts: n("opkt"),
            out_bytes: n("obyt"),
            all: names
                .iter()
                .zip(cols.iter())
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .collect(),
        });
    }
    flows
}

/// A free UDP (or TCP) port on 127.0.0.1, for a server about to start.
pub fn free_port(tcp: bool) -> u16 {
    if tcp {
        std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    } else {
        std::net::UdpSocket::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    }
}

/// A PostgreSQL server of the test's own: a cluster in `dir/pg` owned by `nobody` (the server
/// refuses to run as root), listening only on a Unix socket in `dir/pg-sock`. Stopped when
/// dropped.
pub struct Postgres {
    bin: PathBuf,
    pub data: PathBuf,
    pub sock: PathBuf,
    stopped: bool,
}

/// The newest installed server's programs (`/usr/lib/postgresql/N/bin`).
pub fn pg_bin() -> Option<PathBuf> {
    let mut v: Vec<PathBuf> = fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
        .filter(|p| p.join("initdb").exists())
        .collect();
    v.sort();
    v.pop()
}

/// As [`need`], for the PostgreSQL server (which the tests run as `nobody`: that needs root).
pub fn need_postgres() -> Option<String> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipped: needs root (the test's PostgreSQL server runs as nobody)");
        return Some("needs root".into());
    }
    if pg_bin().is_some() {
        return None;
    }
    need("/usr/lib/postgresql/*/bin/initdb", "postgresql")
}

const PG_USER: &str = "nobody";

fn as_pg_user(program: &Path) -> Command {
    let mut c = Command::new("runuser");
    c.args(["-u", PG_USER, "--"]).arg(program);
    c
}

impl Postgres {
    pub fn start(dir: &Path) -> Postgres {
        let bin = pg_bin().expect("PostgreSQL installed");
        let data = dir.join("pg");
        let sock = dir.join("pg-sock");
        for d in [&data, &sock] {
            fs::create_dir_all(d).unwrap();
            let ok = Command::new("chown")
                .args([PG_USER, d.to_str().unwrap()])
                .status()
                .unwrap()
                .success();
            assert!(ok, "chown {}", d.display());
        }
        // nobody must be able to reach them (scratch directories are root's).
        let _ = Command::new("chmod")
            .args(["o+x", dir.to_str().unwrap()])
            .status();
        let out = as_pg_user(&bin.join("initdb"))
            .args([
                "-D",
                data.to_str().unwrap(),
                "-U",
                "postgres",
                "-A",
                "trust",
            ])
            .args(["--no-sync", "-E", "UTF8", "--locale", "C"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "initdb: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let mut me = Postgres {
            bin,
            data,
            sock,
            stopped: true,
        };
        me.start_server();
        me.stopped = false;
        me
    }

    fn start_server(&self) {
        let opts = format!(
            "-k {} -c listen_addresses='' -c fsync=off",
            self.sock.display()
        );
        let log = self.data.join("server.log");
        let out = as_pg_user(&self.bin.join("pg_ctl"))
            .args([
                "-D",
                self.data.to_str().unwrap(),
                "-l",
                log.to_str().unwrap(),
            ])
            .args(["-w", "-t", "30", "-o", &opts, "start"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "pg_ctl start: {}{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            fs::read_to_string(&log).unwrap_or_default()
        );
    }

    /// The URL of database `db` (created by [`Postgres::create_db`]) as user postgres.
    pub fn url(&self, db: &str) -> String {
        format!("postgresql://postgres@/{db}?host={}", self.sock.display())
    }

    /// Runs SQL with psql on database `db`; returns its unaligned output.
    pub fn psql(&self, db: &str, sql: &str) -> String {
        let out = Command::new(self.bin.join("psql"))
            .args(["-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-h"])
            .arg(&self.sock)
            .args(["-U", "postgres", "-d", db, "-c", sql])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "psql {sql}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// As [`Postgres::psql`], `None` when psql fails (a table not created yet).
    pub fn try_psql(&self, db: &str, sql: &str) -> Option<String> {
        let out = Command::new(self.bin.join("psql"))
            .args(["-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-h"])
            .arg(&self.sock)
            .args(["-U", "postgres", "-d", db, "-c", sql])
            .stderr(Stdio::null())
            .output()
            .ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    }

    pub fn create_db(&self, db: &str) {
        self.psql("postgres", &format!("CREATE DATABASE {db}"));
    }

    /// Stops the server (fast shutdown: clients are disconnected).
    pub fn stop(&mut self) {
        let _ = as_pg_user(&self.bin.join("pg_ctl"))
            .args([
                "-D",
                self.data.to_str().unwrap(),
                "-m",
                "fast",
                "-w",
                "stop",
            ])
            .output();
        self.stopped = true;
    }

    /// Starts it again after [`Postgres::stop`].
    pub fn restart(&mut self) {
        self.start_server();
        self.stopped = false;
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        if !self.stopped {
            let _ = as_pg_user(&self.bin.join("pg_ctl"))
                .args([
                    "-D",
                    self.data.to_str().unwrap(),
                    "-m",
                    "immediate",
                    "-w",
                    "stop",
                ])
                .output();
        }
    }
}
