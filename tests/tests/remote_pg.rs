//! `--db postgresql://…` against a real PostgreSQL server the test starts itself (initdb into
//! a scratch directory, a Unix socket only): two loggers share one history, constat reports
//! each of them (and both) as from their line logs, an outage of the server mid-run is
//! spooled and forwarded, and bad databases are start-up errors.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use e2e::bins::{bin, scratch};
use e2e::netns::wait_for;
use e2e::pcapgen::{self, Link, Session};
use e2e::servers::{need_postgres, Postgres};

const T0: i64 = 1_700_000_000_000_000;
const MS: i64 = 1000;

fn run(program: &str, args: &[&str]) -> (i32, String, String) {
    let mut c = Command::new(bin(program));
    c.args(args)
        .env("TZ", "UTC")
        .env_remove("PGPASSWORD")
        .stdin(Stdio::null());
    let out = c.output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A capture: `n` TCP connections from `client` and as many UDP exchanges.
fn capture(dir: &Path, name: &str, client: &str, n: u16) -> PathBuf {
    let mut pk = Vec::new();
    for i in 0..n {
        let t = T0 + i as i64 * 100 * MS;
        let mut s = Session::new(&format!("{client}:{}", 40000 + i), "10.0.0.2:80", 1, 2);
        s.handshake(t)
            .data(t + 10 * MS, true, 100 + i as usize)
            .data(t + 20 * MS, false, 1000)
            .close(t + 30 * MS);
        pk.extend(s.packets);
        let c = format!("{client}:{}", 50000 + i);
        pk.push((
            t + 40 * MS,
            pcapgen::udp(c.parse().unwrap(), "10.0.0.3:53".parse().unwrap(), b"q"),
        ));
        pk.push((
            t + 41 * MS,
            pcapgen::udp(
                "10.0.0.3:53".parse().unwrap(),
                c.parse().unwrap(),
                b"answer",
            ),
        ));
    }
    pk.sort_by_key(|p| p.0);
    let p = dir.join(name);
    pcapgen::write(&p, &Link::Ethernet(vec![]), false, &pk).unwrap();
    p
}

fn report(file: &str, extra: &[&str]) -> String {
    let mut a = vec!["-f", file, "-a", "-n", "--no-cache"];
    a.extend_from_slice(extra);
    let (code, out, err) = run("constat", &a);
    assert_eq!(code, 0, "constat -f {file}: {err}");
    out
}

#[test]
fn two_loggers_share_one_history_and_constat_reports_each_as_from_its_line_log() {
    if need_postgres().is_some() {
        return;
    }
    let d = scratch("pg-two");
    let pg = Postgres::start(&d);
    pg.create_db("hist");
    let url = pg.url("hist");
    let mut logs = Vec::new();
    for (host, client, n) in [("r1", "10.1.0.1", 20), ("r2", "10.1.0.2", 7)] {
        let cap = capture(&d, &format!("{host}.pcap"), client, n);
        let log = d.join(format!("{host}.log"));
        let (code, _, err) = run(
            "ipclog",
            &[
                "-r",
                cap.to_str().unwrap(),
                "-f",
                log.to_str().unwrap(),
                "--db",
                &url,
                "--host-name",
                host,
            ],
        );
        assert_eq!(code, 0, "{err}");
        logs.push(log);
    }
    let rows = pg.psql(
        "hist",
        "SELECT host, count(*) FROM connections GROUP BY host ORDER BY host",
    );
    assert_eq!(rows.trim(), "r1|40\nr2|14");
    let runs = pg.psql(
        "hist",
        "SELECT host, stopped IS NOT NULL, errors FROM runs ORDER BY id",
    );
    assert_eq!(runs.trim(), "r1|t|0\nr2|t|0");
    for (log, (host, client)) in logs.iter().zip([("r1", "10.1.0.1 "), ("r2", "10.1.0.2 ")]) {
        let want = report(log.to_str().unwrap(), &[]);
        assert!(want.contains(client) && want.contains("10.0.0.3"), "{want}");
        assert_eq!(report(&url, &["--host-name", host]), want, "{host}");
    }
    // Over all loggers: the two logs as one.
    let both = d.join("both.log");
    let mut text = std::fs::read(&logs[0]).unwrap();
    text.extend(std::fs::read(&logs[1]).unwrap());
    std::fs::write(&both, text).unwrap();
    assert_eq!(report(&url, &[]), report(both.to_str().unwrap(), &[]));
    // `constat query` over the shared history: one logger's connections with a host, the
    // same connections as from that logger's own line log (the log's lines carry more
    // tokens than a history row keeps: compared by their columns and uid).
    let conns = |out: &str| -> Vec<String> {
        out.lines()
            .map(|l| {
                let cols: Vec<&str> = l.split_whitespace().take(9).collect();
                let uid = l.split_whitespace().find(|t| t.starts_with("uid="));
                format!("{} {}", cols.join(" "), uid.unwrap_or("-"))
            })
            .collect()
    };
    for (log, host) in logs.iter().zip(["r1", "r2"]) {
        let q = |file: &str, extra: &[&str]| {
            let mut a = vec!["query", "-f", file, "--host", "10.0.0.3"];
            a.extend_from_slice(extra);
            let (code, out, err) = run("constat", &a);
            assert_eq!(code, 0, "constat query -f {file}: {err}");
            out
        };
        let from_pg = q(&url, &["--host-name", host]);
        assert_eq!(from_pg.lines().count(), if host == "r1" { 20 } else { 7 });
        assert_eq!(
            conns(&from_pg),
            conns(&q(log.to_str().unwrap(), &[])),
            "{host}"
        );
    }
}

#[test]
fn bad_databases_are_start_up_errors_and_nothing_prompts() {
    if need_postgres().is_some() {
        return;
    }
    let d = scratch("pg-bad");
    let pg = Postgres::start(&d);
    pg.create_db("hist");
    let cap = capture(&d, "a.pcap", "10.1.0.1", 2);
    let cap = cap.to_str().unwrap();
    // Unreachable: no server at that socket.
    let (code, _, err) = run(
        "ipclog",
        &[
            "-r",
            cap,
            "--db",
            "postgresql://postgres@/hist?host=/nonexistent",
        ],
    );
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("cannot connect"), "{err}");
    // A user the server wants a password from: an error, never a prompt.
    pg.psql("hist", "CREATE ROLE pwuser LOGIN PASSWORD 'secret'");
    let hba = pg.data.join("pg_hba.conf");
    let conf = std::fs::read_to_string(&hba).unwrap();
    std::fs::write(&hba, format!("local all pwuser scram-sha-256\n{conf}")).unwrap();
    pg.psql("hist", "SELECT pg_reload_conf()");
    let pw_url = url_as(&pg, "pwuser");
    let (code, _, err) = run("ipclog", &["-r", cap, "--db", &pw_url]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("asks for a password"), "{err}");
    let (code, _, err) = run("constat", &["-f", &pw_url, "-a"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("asks for a password"), "{err}");
    // A history of another version.
    let url = pg.url("hist");
    let (code, _, err) = run("ipclog", &["-r", cap, "--db", &url]);
    assert_eq!(code, 0, "{err}");
    pg.psql("hist", "UPDATE ipclog_schema SET version = 99");
    let (code, _, err) = run("ipclog", &["-r", cap, "--db", &url]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("schema version 99"), "{err}");
    let (code, _, err) = run("constat", &["-f", &url, "-a"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("schema version 99"), "{err}");
    // Tables that are not ours.
    pg.create_db("other");
    pg.psql("other", "CREATE TABLE connections (x int)");
    let (code, _, err) = run("ipclog", &["-r", cap, "--db", &pg.url("other")]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("not an ipclog history"), "{err}");
}

fn url_as(pg: &Postgres, user: &str) -> String {
    pg.url("hist").replace("postgres@", &format!("{user}@"))
}

#[test]
fn an_outage_of_the_server_is_spooled_and_forwarded_in_order_when_it_is_back() {
    if need_postgres().is_some() {
        return;
    }
    let d = scratch("pg-outage");
    let mut pg = Postgres::start(&d);
    pg.create_db("hist");
    let url = pg.url("hist");
    let log = d.join("a.log");
    let spool = d.join("spool.db");
    let mut child = Command::new(bin("ipclog"))
        .args(["-r", "-", "-f", log.to_str().unwrap(), "--db", &url])
        .args(["--spool", spool.to_str().unwrap(), "--flush-timeout", "30"])
        .env("TZ", "UTC")
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let link = Link::Ethernet(vec![]);
    let recs = |from: i64, client: &str, n: u16| -> Vec<u8> {
        let mut pk = Vec::new();
        for i in 0..n {
            let c = format!("{client}:{}", 20000 + i);
            let t = from + i as i64 * MS;
            pk.push((
                t,
                pcapgen::udp(c.parse().unwrap(), "10.8.0.1:53".parse().unwrap(), b"query"),
            ));
            pk.push((
                t + 1,
                pcapgen::udp(
                    "10.8.0.1:53".parse().unwrap(),
                    c.parse().unwrap(),
                    b"answer",
                ),
            ));
        }
        let mut out = Vec::new();
        for (t, ip) in pk {
            pcapgen::push_pcap_record(&mut out, 65535, &pcapgen::Record::new(t, link.frame(&ip)));
        }
        out
    };
    stdin
        .write_all(&pcapgen::pcap_bytes(link.linktype(), 65535, &[]))
        .unwrap();
    // Three parts ten minutes apart (in capture time): each closes the one before.
    stdin.write_all(&recs(T0, "10.9.0.1", 200)).unwrap();
    stdin
        .write_all(&recs(T0 + 600_000 * MS, "10.9.0.2", 200))
        .unwrap();
    stdin.flush().unwrap();
    let closed = |pg: &Postgres| {
        let n = pg.try_psql(
            "hist",
            "SELECT count(*) FROM connections WHERE close_ts IS NOT NULL",
        );
        n.and_then(|n| n.trim().parse::<u64>().ok()).unwrap_or(0)
    };
    wait_for(Duration::from_secs(30), || {
        (closed(&pg) >= 200).then_some(())
    })
    .expect("part 1 closed in PostgreSQL");
    pg.stop();
    stdin
        .write_all(&recs(T0 + 1_200_000 * MS, "10.9.0.3", 200))
        .unwrap();
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
    wait_for(Duration::from_secs(30), || (spooled() >= 200).then_some(()))
        .unwrap_or_else(|| panic!("part 2's closes spooled: {}", spooled()));
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&spool).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o640, "spool file mode {mode:o}");
    pg.restart();
    drop(stdin);
    let status =
        wait_for(Duration::from_secs(60), || child.try_wait().unwrap()).expect("ipclog ends");
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
    assert!(status.success(), "{status}: {err}");
    assert!(err.contains("spooling events until it is back"), "{err}");
    assert!(err.contains("back; forwarding"), "{err}");
    assert_eq!(spooled(), 0);
    assert_eq!(closed(&pg), 600, "{err}");
    assert_eq!(
        report(&url, &[]),
        report(log.to_str().unwrap(), &[]),
        "{err}"
    );
}

#[test]
fn beyond_the_spool_events_are_dropped_and_counted_and_the_end_waits_only_the_flush_timeout() {
    if need_postgres().is_some() {
        return;
    }
    let d = scratch("pg-bound");
    let mut pg = Postgres::start(&d);
    pg.create_db("hist");
    let url = pg.url("hist");
    let log = d.join("a.log");
    let spool = d.join("spool.db");
    let mut child = Command::new(bin("ipclog"))
        .args(["-r", "-", "-f", log.to_str().unwrap(), "--db", &url])
        .args(["--spool", spool.to_str().unwrap(), "--spool-max", "50"])
        .args(["--flush-timeout", "2"])
        .env("TZ", "UTC")
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let link = Link::Ethernet(vec![]);
    // The header first: ipclog opens its outputs once its source is open.
    stdin
        .write_all(&pcapgen::pcap_bytes(link.linktype(), 65535, &[]))
        .unwrap();
    stdin.flush().unwrap();
    let mut out = Vec::new();
    let mut pk = Vec::new();
    for i in 0..120u16 {
        let c = format!("10.9.0.1:{}", 20000 + i);
        pk.push((
            T0 + i as i64 * MS,
            pcapgen::udp(c.parse().unwrap(), "10.8.0.1:53".parse().unwrap(), b"q"),
        ));
    }
    for (t, ip) in pk {
        pcapgen::push_pcap_record(&mut out, 65535, &pcapgen::Record::new(t, link.frame(&ip)));
    }
    // The server goes away once the run has started (its runs row is written).
    wait_for(Duration::from_secs(30), || {
        pg.try_psql("hist", "SELECT count(*) FROM runs")
            .filter(|n| n.trim() == "1")
    })
    .expect("run started");
    pg.stop();
    stdin.write_all(&out).unwrap();
    drop(stdin);
    let started = std::time::Instant::now();
    let status =
        wait_for(Duration::from_secs(30), || child.try_wait().unwrap()).expect("ipclog ends");
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
    assert!(started.elapsed() < Duration::from_secs(15), "{err}");
    // 120 opens and 120 closes: 50 spooled, 190 dropped.
    assert_eq!(status.code(), Some(1), "{err}");
    assert!(err.contains("190 events dropped"), "{err}");
    assert!(
        err.contains("still down after 2 s: 50 events left in the spool file"),
        "{err}"
    );
    let text = std::fs::read_to_string(&log).unwrap();
    let said: u64 = text
        .lines()
        .filter(|l| l.contains(" dropped ") && l.contains("(collector or PostgreSQL"))
        .map(|l| {
            l.split_whitespace()
                .skip_while(|w| *w != "dropped")
                .nth(1)
                .unwrap()
                .parse::<u64>()
                .unwrap()
        })
        .sum();
    assert_eq!(said, 190, "{text}");
    // The next run forwards what the spool kept.
    pg.restart();
    let cap = d.join("empty.pcap");
    pcapgen::write(&cap, &link, false, &[]).unwrap();
    let (code, _, err) = run(
        "ipclog",
        &[
            "-r",
            cap.to_str().unwrap(),
            "--db",
            &url,
            "--spool",
            spool.to_str().unwrap(),
        ],
    );
    assert_eq!(code, 0, "{err}");
    let rows = pg.psql("hist", "SELECT count(*) FROM connections");
    assert!(rows.trim().parse::<u64>().unwrap() > 0, "{rows}");
}

/// The server's processes (the postmaster and its children), stopped with SIGSTOP until
/// dropped.
struct Frozen(Vec<i32>);

impl Frozen {
    fn freeze(pg: &Postgres) -> Frozen {
        let pid_file = std::fs::read_to_string(pg.data.join("postmaster.pid")).unwrap();
        let master: i32 = pid_file.lines().next().unwrap().trim().parse().unwrap();
        let mut pids = vec![master];
        for e in std::fs::read_dir("/proc").unwrap().flatten() {
            let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
                continue;
            };
            let stat = std::fs::read_to_string(e.path().join("stat")).unwrap_or_default();
            // The parent is the second field after the command's closing parenthesis.
            let ppid = stat
                .rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().nth(1))
                .and_then(|p| p.parse::<i32>().ok());
            if ppid == Some(master) {
                pids.push(pid);
            }
        }
        for &p in &pids {
            // SAFETY: signalling the test's own server processes.
            unsafe { libc::kill(p, libc::SIGSTOP) };
        }
        Frozen(pids)
    }
}

impl Drop for Frozen {
    fn drop(&mut self) {
        for &p in &self.0 {
            // SAFETY: as above.
            unsafe { libc::kill(p, libc::SIGCONT) };
        }
    }
}

#[test]
fn a_server_that_stops_answering_does_not_hang_the_end() {
    if need_postgres().is_some() {
        return;
    }
    let d = scratch("pg-frozen");
    let pg = Postgres::start(&d);
    pg.create_db("hist");
    let url = pg.url("hist");
    let mut child = Command::new(bin("ipclog"))
        .args([
            "-r",
            "-",
            "-f",
            "/dev/null",
            "--db",
            &url,
            "--flush-timeout",
            "1",
        ])
        .env("TZ", "UTC")
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let link = Link::Ethernet(vec![]);
    stdin
        .write_all(&pcapgen::pcap_bytes(link.linktype(), 65535, &[]))
        .unwrap();
    stdin.flush().unwrap();
    wait_for(Duration::from_secs(30), || {
        pg.try_psql("hist", "SELECT count(*) FROM runs")
            .filter(|n| n.trim() == "1")
    })
    .expect("run started");
    let frozen = Frozen::freeze(&pg);
    let mut out = Vec::new();
    for i in 0..50u16 {
        let c = format!("10.9.0.1:{}", 20000 + i);
        let ip = pcapgen::udp(c.parse().unwrap(), "10.8.0.1:53".parse().unwrap(), b"q");
        pcapgen::push_pcap_record(
            &mut out,
            65535,
            &pcapgen::Record::new(T0 + i as i64 * MS, link.frame(&ip)),
        );
    }
    stdin.write_all(&out).unwrap();
    drop(stdin);
    let started = std::time::Instant::now();
    let status = wait_for(Duration::from_secs(30), || child.try_wait().unwrap());
    drop(frozen);
    let status = status.expect("ipclog ended despite a server that does not answer");
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
    assert!(started.elapsed() < Duration::from_secs(15), "{err}");
    assert_eq!(status.code(), Some(1), "{err}");
    assert!(err.contains("did not answer within 6 s"), "{err}");
}
