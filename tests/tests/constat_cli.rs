//! constat's options and its behaviour on bad input, driven through the real binary.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use e2e::bins::{bin, repo_root, scratch};
use e2e::report::rows;

const LOOKUP: &str = "\
192.168.0.2     nat-pc
212.227.15.149  my-pop-server
212.227.15.145  my-smtp-server
217.237.151.97  my-nameserver
";

struct Env {
    dir: PathBuf,
}

impl Env {
    fn new(name: &str) -> Env {
        let dir = scratch(&format!("constat-cli-{name}"));
        std::fs::write(dir.join("constat.lookup"), LOOKUP).unwrap();
        Env { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    fn write(&self, name: &str, data: impl AsRef<[u8]>) -> PathBuf {
        let p = self.path(name);
        std::fs::write(&p, data).unwrap();
        p
    }

    /// A copy of the bundled sample log with `extra` appended.
    fn sample_plus(&self, name: &str, extra: &str) -> PathBuf {
        let mut s = std::fs::read_to_string(sample()).unwrap();
        s.push_str(extra);
        self.write(name, s)
    }

    /// constat with TZ=UTC, the test's lookup file and an empty scratch name cache, unless
    /// `args` name their own.
    fn run(&self, args: &[&str]) -> Output {
        self.run_stdin(args, None)
    }

    fn run_stdin(&self, args: &[&str], stdin: Option<&[u8]>) -> Output {
        let mut cmd = Command::new(bin("constat"));
        cmd.args(args).env("TZ", "UTC");
        if !args.contains(&"--lookup") {
            cmd.arg("--lookup").arg(self.path("constat.lookup"));
        }
        if !args.contains(&"--cache") {
            cmd.arg("--cache").arg(self.path("names"));
        }
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("run constat");
        {
            let mut i = child.stdin.take().unwrap();
            if let Some(data) = stdin {
                i.write_all(data).unwrap();
            }
        }
        let out = child.wait_with_output().unwrap();
        assert_ne!(out.status.code(), Some(101), "constat panicked: {out:?}");
        assert!(out.status.code().is_some(), "killed by a signal: {out:?}");
        out
    }
}

fn sample() -> PathBuf {
    repo_root().join("constat/sample/ipclog.log")
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn out(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn err(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn errors_line(report: &str) -> &str {
    report.lines().last().unwrap_or("")
}

const SEED_ROWS: [&str; 5] = [
    "192.168.0.3 tcp ssh eth0 1 0 25.0 25",
    "nat-pc tcp pop3 my-pop-server 1 0 0.0 0",
    "ppp0 tcp http any 3 0 6.7 10",
    "ppp0 tcp smtp my-smtp-server 1 0 0.0 0",
    "ppp0 udp domain my-nameserver 2 0 10.0 20",
];

#[test]
fn noany_shows_each_web_server_in_both_spellings() {
    let e = Env::new("noany");
    for opt in ["-noany", "--no-any"] {
        let o = e.run(&["-f", s(&sample()), "-d", "2004-08-05", opt]);
        assert!(o.status.success(), "{o:?}");
        let r = rows(&out(&o));
        assert!(
            r.contains(&"ppp0 tcp http 212.227.119.68 3 0 6.7 10".to_string()),
            "{opt}: {r:?}"
        );
        assert!(!r.iter().any(|l| l.contains(" any ")), "{opt}: {r:?}");
        assert_eq!(r.len(), 5);
    }
}

#[test]
fn numeric_shows_addresses_and_ports() {
    let e = Env::new("numeric");
    for opt in ["-n", "--numeric"] {
        let o = e.run(&["-f", s(&sample()), "-d", "2004-08-05", opt]);
        assert!(o.status.success(), "{o:?}");
        assert_eq!(
            rows(&out(&o)),
            [
                "192.168.0.2 tcp 110 212.227.15.149 1 0 0.0 0",
                "192.168.0.3 tcp 22 eth0 1 0 25.0 25",
                "ppp0 tcp 25 212.227.15.145 1 0 0.0 0",
                "ppp0 tcp 80 any 3 0 6.7 10",
                "ppp0 udp 53 217.237.151.97 2 0 10.0 20",
            ],
            "{opt}"
        );
    }
}

#[test]
fn whole_file_and_day_selection() {
    let e = Env::new("days");
    // A second day: one ssh connection opened just before midnight and closed after it, one
    // opened on the 6th and still open at the end of the log.
    let log = e.sample_plus(
        "two-days.log",
        "\
O 2004-08-05-23:59:50 tcp  192.168.0.3     eth0            1700  22    e      -
C 2004-08-06-00:00:20 tcp  192.168.0.3     eth0            1700  22    t     30
O 2004-08-06-09:00:00 tcp  192.168.0.3     eth0            1701  22    e      -
",
    );
    let o = e.run(&["-f", s(&log), "-d", "2004-08-05"]);
    let r = rows(&out(&o));
    assert_eq!(r[0], "192.168.0.3 tcp ssh eth0 2 0 27.5 30", "{r:?}");

    let o = e.run(&["-f", s(&log), "-d", "2004-08-06"]);
    let text = out(&o);
    assert!(text.starts_with("scanning for date 2004-08-06\n"), "{text}");
    assert_eq!(rows(&text), ["192.168.0.3 tcp ssh eth0 1 1 - -"]);

    for opt in ["-a", "--all"] {
        let o = e.run(&["-f", s(&log), opt]);
        let text = out(&o);
        assert!(text.starts_with("scanning whole file\n"), "{text}");
        let r = rows(&text);
        assert_eq!(r[0], "192.168.0.3 tcp ssh eth0 3 1 27.5 30", "{r:?}");
        assert_eq!(r.len(), 5);
    }

    // A day with nothing: the frame and 0 ERRORS, no rows.
    let o = e.run(&["-f", s(&log), "-d", "2001-01-01"]);
    assert!(o.status.success());
    assert_eq!(rows(&out(&o)), Vec::<String>::new());
    assert_eq!(errors_line(&out(&o)), "0 ERRORS");

    // -a and -d together make no sense.
    let o = e.run(&["-f", s(&log), "-a", "-d", "2004-08-05"]);
    assert_eq!(o.status.code(), Some(2), "{o:?}");
}

#[test]
fn default_day_is_today() {
    let e = Env::new("today");
    let today = String::from_utf8(
        Command::new("date")
            .arg("+%Y-%m-%d")
            .env("TZ", "UTC")
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    let o = e.run(&["-f", s(&sample())]);
    assert!(o.status.success(), "{o:?}");
    // The run could straddle midnight; accept the day `date` saw or the next.
    let first = out(&o).lines().next().unwrap().to_string();
    assert!(
        first.starts_with("scanning for date 20"),
        "{first} (today {today})"
    );
    assert!(
        first >= format!("scanning for date {}", today.trim()),
        "{first}"
    );
}

#[test]
fn malformed_lines_are_counted_and_shown_with_v() {
    let e = Env::new("malformed");
    let mut text = std::fs::read_to_string(sample()).unwrap();
    // The sample has 27 lines. Line 28: a bad port; line 29: junk; line 30: a bad date.
    text.push_str("O 2004-08-05-17:00:00 tcp  ppp0 1.2.3.4 99999 22 e -\n");
    text.push_str("X 2004-08-05-17:00:00 not a log line\n");
    text.push_str("O 2004-08-05-25:00:00 tcp  ppp0 1.2.3.4 1 22 e -\n");
    let log = e.write("bad.log", text);
    let o = e.run(&["-f", s(&log), "-d", "2004-08-05"]);
    assert!(o.status.success(), "{o:?}");
    assert_eq!(rows(&out(&o)), SEED_ROWS, "bad lines change no row");
    assert_eq!(errors_line(&out(&o)), "3 ERRORS");
    assert!(
        err(&o).is_empty(),
        "without -v, stderr is quiet: {}",
        err(&o)
    );

    let o = e.run(&["-v", "-f", s(&log), "-d", "2004-08-05"]);
    let stderr = err(&o);
    let p = s(&log);
    assert!(stderr.contains(&format!("{p}:28: sport: ")), "{stderr}");
    assert!(stderr.contains(&format!("{p}:29: type: ")), "{stderr}");
    assert!(stderr.contains(&format!("{p}:30: timestamp: ")), "{stderr}");
}

#[test]
fn truncated_last_line_is_one_error() {
    let e = Env::new("truncated");
    let log = e.sample_plus(
        "cut.log",
        "O 2004-08-05-17:00:00 tcp  ppp0            9.9.9.9   ",
    );
    let o = e.run(&["-v", "-f", s(&log), "-d", "2004-08-05"]);
    assert!(o.status.success(), "{o:?}");
    assert_eq!(rows(&out(&o)), SEED_ROWS);
    assert_eq!(errors_line(&out(&o)), "1 ERRORS");
    assert!(
        err(&o).contains(&format!("{}:28: line: incomplete last line", s(&log))),
        "{}",
        err(&o)
    );
}

#[test]
fn empty_file_gives_an_empty_report() {
    let e = Env::new("empty");
    let log = e.write("empty.log", "");
    let o = e.run(&["-f", s(&log), "-d", "2004-08-05"]);
    assert!(o.status.success(), "{o:?}");
    assert_eq!(
        out(&o).lines().collect::<Vec<_>>(),
        [
            "scanning for date 2004-08-05",
            "src             prot dport    dst                 n  nopn    avgtm    maxtm",
            &"-".repeat(75),
            "0 ERRORS",
        ]
    );
}

#[test]
fn binary_file_is_refused_with_a_clear_error() {
    let e = Env::new("binary");
    // A pcap header: what a user gets pointing -f at a capture.
    let mut data = vec![0xd4, 0xc3, 0xb2, 0xa1, 2, 0, 4, 0, 0, 0, 0, 0];
    data.extend((0..5000u32).map(|i| (i * 7919 % 251) as u8));
    let log = e.write("capture.pcap", &data);
    let o = e.run(&["-f", s(&log), "-d", "2004-08-05"]);
    assert_eq!(o.status.code(), Some(2), "{o:?}");
    assert!(out(&o).is_empty());
    let stderr = err(&o);
    assert!(
        stderr.contains(s(&log)) && stderr.contains("binary data"),
        "{stderr}"
    );

    // Binary garbage without NULs inside a text log is counted line by line, not fatal.
    let log = e.sample_plus("garbage.log", "\u{1}\u{2}\u{3}\n");
    let mut bytes = std::fs::read(&log).unwrap();
    bytes.extend_from_slice(b"\xff\xfe\xfd\n");
    std::fs::write(&log, bytes).unwrap();
    let o = e.run(&["-v", "-f", s(&log), "-d", "2004-08-05"]);
    assert!(o.status.success(), "{o:?}");
    assert_eq!(rows(&out(&o)), SEED_ROWS);
    assert_eq!(errors_line(&out(&o)), "2 ERRORS");
    assert!(err(&o).contains(":29: line: not UTF-8"), "{}", err(&o));
}

#[test]
fn bad_date_is_a_usage_error() {
    let e = Env::new("baddate");
    for d in ["2004-13-45", "2004-8-5", "tomorrow"] {
        let o = e.run(&["-f", s(&sample()), "-d", d]);
        assert_eq!(o.status.code(), Some(2), "{d}: {o:?}");
        assert!(out(&o).is_empty());
        assert!(
            err(&o).contains(d) && err(&o).contains("YYYY-MM-DD"),
            "{}",
            err(&o)
        );
    }
}

#[test]
fn missing_log_and_missing_lookup_are_errors() {
    let e = Env::new("missing");
    let o = e.run(&["-f", s(&e.path("nope.log")), "-d", "2004-08-05"]);
    assert_eq!(o.status.code(), Some(2), "{o:?}");
    assert!(err(&o).contains("nope.log: cannot open log"), "{}", err(&o));

    let o = e.run(&[
        "-f",
        s(&sample()),
        "-d",
        "2004-08-05",
        "--lookup",
        s(&e.path("nope.lookup")),
    ]);
    assert_eq!(o.status.code(), Some(2), "{o:?}");
    assert!(
        err(&o).contains("nope.lookup: cannot read lookup file"),
        "{}",
        err(&o)
    );

    let o = e.run(&["-f", s(&e.dir), "-d", "2004-08-05"]);
    assert_eq!(o.status.code(), Some(2), "{o:?}");
    assert!(err(&o).contains("is a directory"), "{}", err(&o));
}

#[test]
fn lookup_with_bad_lines_warns_and_uses_the_good_ones() {
    let e = Env::new("badlookup");
    let l = e.write(
        "bad.lookup",
        "192.168.0.2 nat-pc\n212.227.15.149\n300.1.1.1 nowhere\n212.227.15.0/24 provider\n\
         22/tcp secure-shell\n10.0.0.1/8 sloppy\n",
    );
    let o = e.run(&["-f", s(&sample()), "-d", "2004-08-05", "--lookup", s(&l)]);
    assert!(o.status.success(), "{o:?}");
    let stderr = err(&o);
    let p = s(&l);
    for line in [2, 3, 6] {
        assert!(
            stderr.contains(&format!("{p}:{line}: ")),
            "line {line}: {stderr}"
        );
    }
    assert_eq!(stderr.lines().count(), 3, "{stderr}");
    let r = rows(&out(&o));
    assert!(
        r.contains(&"192.168.0.3 tcp secure-shell eth0 1 0 25.0 25".into()),
        "{r:?}"
    );
    assert!(
        r.contains(&"nat-pc tcp pop3 provider 1 0 0.0 0".into()),
        "{r:?}"
    );
    assert!(
        r.contains(&"ppp0 tcp smtp provider 1 0 0.0 0".into()),
        "{r:?}"
    );
}

#[test]
fn name_cache_names_are_marked_and_nc_disables_them() {
    let e = Env::new("cache");
    let cache = e.write(
        "names",
        "192.168.0.3 laptop.lan 1091700000\n217.237.151.97 ns.example 1091700000\n",
    );
    let o = e.run(&["-f", s(&sample()), "-d", "2004-08-05", "--cache", s(&cache)]);
    let r = rows(&out(&o));
    assert_eq!(r[0], "laptop.lan? tcp ssh eth0 1 0 25.0 25", "{r:?}");
    assert!(
        r.contains(&"ppp0 udp domain my-nameserver 2 0 10.0 20".into()),
        "the lookup file beats the cache: {r:?}"
    );
    for opt in ["-nc", "--no-cache"] {
        let o = e.run(&[
            "-f",
            s(&sample()),
            "-d",
            "2004-08-05",
            "--cache",
            s(&cache),
            opt,
        ]);
        assert_eq!(rows(&out(&o)), SEED_ROWS, "{opt}");
    }
}

#[test]
fn stdin_and_found_at_start_and_anomalies() {
    let e = Env::new("stdin");
    let log = "\
O 2004-08-05-10:00:00 tcp  10.0.0.1        10.0.0.2        1000  443   e      -
O 2004-08-05-10:00:30 tcp  10.0.0.1        10.0.0.2        1000  443   e      - found=start
S 2004-08-05-10:00:40 tcp  10.0.0.1        10.0.0.2        1000  443   e     40 retrans=1
C 2004-08-05-10:01:00 tcp  10.0.0.1        10.0.0.2        1000  443   t     60 orig_pkts=10 orig_ip_bytes=1000 resp_pkts=8 resp_ip_bytes=9000 retrans=2 rst=1
O 2004-08-05-10:00:30 udp  10.0.0.1        10.0.0.3        5000  53    U      - found=start
";
    let o = e.run_stdin(
        &["-f", "-", "-d", "2004-08-05", "--bytes"],
        Some(log.as_bytes()),
    );
    assert!(o.status.success(), "{o:?}");
    let text = out(&o);
    assert_eq!(
        rows(&text),
        [
            "10.0.0.1 tcp https any 1 0 60.0 60 10000",
            "10.0.0.1 udp domain 10.0.0.3 1 1 - - 0",
        ],
        "{text}"
    );
    let section: Vec<&str> = text
        .lines()
        .skip_while(|l| *l != "connections with anomalies")
        .collect();
    assert!(section.len() >= 3, "{text}");
    assert_eq!(
        section[2].split_whitespace().collect::<Vec<_>>(),
        ["10.0.0.1", "tcp", "https", "any", "1", "0", "1", "0", "0", "0"]
    );
    assert_eq!(errors_line(&text), "0 ERRORS");
}

#[test]
fn help_teaches() {
    let e = Env::new("help");
    for opt in ["-h", "--help"] {
        let o = e.run(&[opt]);
        assert!(o.status.success(), "{o:?}");
        let text = out(&o);
        for needle in [
            "-noany",
            "-nc",
            "--lookup",
            "YYYY-MM-DD",
            "Examples",
            "nopn",
            "avgtm",
            "Exit status",
            "/var/log/ipclog.log",
        ] {
            assert!(text.contains(needle), "{opt}: no {needle:?} in\n{text}");
        }
    }
}

#[test]
fn missing_default_lookup_is_fine() {
    if Path::new("/etc/constat.lookup").exists() {
        println!("SKIP: /etc/constat.lookup exists on this machine; cannot test its absence");
        return;
    }
    let e = Env::new("nolookup");
    let o = Command::new(bin("constat"))
        .args(["-f", s(&sample()), "-d", "2004-08-05", "-nc"])
        .env("TZ", "UTC")
        .output()
        .unwrap();
    assert!(o.status.success(), "{o:?}");
    assert!(o.stderr.is_empty(), "{}", err(&o));
    let r = rows(&out(&o));
    assert!(
        r.contains(&"ppp0 udp domain 217.237.151.97 2 0 10.0 20".into()),
        "{r:?}"
    );
    drop(e);
}

#[test]
fn resolve_fills_the_cache_from_the_system_resolver() {
    // 127.0.0.1 is answered from /etc/hosts (nsswitch `files` comes before `dns`), so this needs
    // no DNS server; skip where /etc/hosts does not name it.
    let hosts = std::fs::read_to_string("/etc/hosts").unwrap_or_default();
    let named = hosts.lines().any(|l| {
        let mut f = l.split('#').next().unwrap_or("").split_whitespace();
        f.next() == Some("127.0.0.1") && f.next().is_some()
    });
    let files_first = std::fs::read_to_string("/etc/nsswitch.conf")
        .map(|s| {
            s.lines()
                .find(|l| l.trim_start().starts_with("hosts:"))
                .and_then(|l| l.split_whitespace().nth(1).map(|w| w == "files"))
                .unwrap_or(false)
        })
        .unwrap_or(false);
    if !named || !files_first {
        println!("SKIP: /etc/hosts does not name 127.0.0.1 or nsswitch does not ask files first");
        return;
    }
    let e = Env::new("resolve");
    let log = e.write(
        "lo.log",
        "O 2004-08-05-10:00:00 tcp  127.0.0.1       127.0.0.1       40000 22    e      -\n",
    );
    let cache = e.path("cache/names");
    let o = e.run(&[
        "-f",
        s(&log),
        "-d",
        "2004-08-05",
        "--cache",
        s(&cache),
        "--resolve",
    ]);
    assert!(o.status.success(), "{o:?}");
    let r = rows(&out(&o));
    assert_eq!(r.len(), 1);
    let name = r[0].split(' ').next().unwrap();
    assert!(name.ends_with('?') && name.len() > 1, "{r:?}");
    let saved = std::fs::read_to_string(&cache).expect("cache written");
    let line = saved
        .lines()
        .find(|l| l.starts_with("127.0.0.1 "))
        .unwrap_or_else(|| panic!("{saved}"));
    assert_eq!(format!("{}?", line.split(' ').nth(1).unwrap()), name);
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&cache).unwrap().permissions().mode() & 0o777,
        0o640
    );
    // The next run reads the name from the cache without asking anyone.
    let o = e.run(&["-f", s(&log), "-d", "2004-08-05", "--cache", s(&cache)]);
    assert_eq!(rows(&out(&o)), r);
}

#[test]
fn a_file_without_newlines_is_refused_not_swallowed() {
    let e = Env::new("nonewline");
    // 3 MiB of text without a newline: no NUL, so not caught as binary at the start.
    let log = e.sample_plus("runaway.log", &"A".repeat(3 << 20));
    let o = e.run(&["-f", s(&log), "-d", "2004-08-05"]);
    assert_eq!(o.status.code(), Some(1), "{o:?}");
    let stderr = err(&o);
    assert!(
        stderr.contains(&format!("{}: read error after line 27", s(&log)))
            && stderr.contains("longer than"),
        "{stderr}"
    );
}

#[test]
fn events_the_logger_lost_are_reported() {
    let e = Env::new("lost");
    let log = e.sample_plus(
        "lost.log",
        "P 2004-08-05-16:50:00 lost 12 events\nP 2004-08-06-01:00:00 lost 5 events (queue full)\n",
    );
    let o = e.run(&["-f", s(&log), "-d", "2004-08-05"]);
    assert!(o.status.success(), "{o:?}");
    let text = out(&o);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines[lines.len() - 2..],
        [
            "12 EVENTS LOST by the logger: these counts may be incomplete",
            "0 ERRORS"
        ],
        "{text}"
    );
    assert_eq!(rows(&text), SEED_ROWS);
    let o = e.run(&["-f", s(&log), "-a"]);
    assert!(
        out(&o).contains("\n17 EVENTS LOST by the logger"),
        "{}",
        out(&o)
    );
}

#[test]
fn ipv6_icmp_and_numbered_protocols_widen_and_show_dashes() {
    let e = Env::new("ipv6");
    let l = e.write(
        "v6.lookup",
        "2001:db8::/32 doc-net\n2001:db8:0:1::53 v6-resolver\n",
    );
    let log = e.write(
        "v6.log",
        "\
O 2004-08-05-10:00:00 udp  2001:db8:ffff::1234:5678 2001:db8:0:1::53 40000 53    U      -
C 2004-08-05-10:00:03 udp  2001:db8:ffff::1234:5678 2001:db8:0:1::53 40000 53    -      3
O 2004-08-05-10:00:00 tcp  2a00:1450:4001:82a::200e 2001:db9::1     40001 22    e      -
O 2004-08-05-10:00:01 icmp ppp0            192.0.2.7       -     -     -      -
O 2004-08-31-12:46:13 50   ppp0            195.135.220.3   -     -     -      -
O 2004-08-05-12:46:13 50   ppp0            195.135.220.3   -     -     -      -
",
    );
    let o = e.run(&["-f", s(&log), "-d", "2004-08-05", "--lookup", s(&l)]);
    assert!(o.status.success(), "{o:?}");
    assert!(err(&o).is_empty(), "{}", err(&o));
    let text = out(&o);
    assert_eq!(
        rows(&text),
        [
            "2a00:1450:4001:82a::200e tcp ssh 2001:db9::1 1 1 - -",
            "doc-net udp domain v6-resolver 1 0 3.0 3",
            "ppp0 50 - 195.135.220.3 1 1 - -",
            "ppp0 icmp - 192.0.2.7 1 1 - -",
        ],
        "{text}"
    );
    // A long address widens its column instead of being cut.
    assert!(
        text.contains("\n2a00:1450:4001:82a::200e tcp  ssh      2001:db9::1     "),
        "{text}"
    );
}

#[test]
fn mutated_logs_never_panic_and_every_line_is_accounted_for() {
    let e = Env::new("fuzz");
    let base = std::fs::read(sample()).unwrap();
    let mut seed = 0x1234_5678_9abc_def0u64;
    let mut rnd = move |n: usize| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        (seed % n as u64) as usize
    };
    let mut rounds_with_errors = 0;
    for round in 0..60 {
        let mut data = base.clone();
        for _ in 0..1 + rnd(8) {
            if data.is_empty() {
                break;
            }
            let i = rnd(data.len());
            match rnd(4) {
                0 => data[i] = b" -:.0123456789aZ\n\t\xff"[rnd(19)],
                1 => {
                    data.remove(i);
                }
                2 => data.insert(i, b"9 -=x\n"[rnd(6)]),
                _ => data.truncate(i),
            }
        }
        let log = e.write(&format!("m{round}.log"), &data);
        let o = e.run(&["-v", "-a", "-f", s(&log)]);
        let code = o.status.code();
        assert!(matches!(code, Some(0) | Some(2)), "round {round}: {o:?}");
        if code == Some(0) {
            // Every line reported on stderr as malformed is one of the counted ERRORS.
            let text = out(&o);
            let errors: usize = errors_line(&text)
                .strip_suffix(" ERRORS")
                .and_then(|n| n.parse().ok())
                .unwrap_or_else(|| panic!("round {round}: no ERRORS line in {text}"));
            let reported = err(&o)
                .lines()
                .filter(|l| l.starts_with(s(&log)) && !l.contains(" lines, "))
                .count();
            assert_eq!(errors, reported, "round {round}:\n{}", err(&o));
            rounds_with_errors += (errors > 0) as u32;
        }
    }
    assert!(
        rounds_with_errors >= 20,
        "only {rounds_with_errors} rounds hit a bad line"
    );
}
