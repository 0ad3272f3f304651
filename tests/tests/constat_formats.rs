//! constat --format csv, json and html, driven through the real binary: the fields README
//! documents, hostile names defused in each (CSV formulas, JSON strings, HTML markup), and
//! the HTML page opened in headless Chromium, whose rendered DOM must hold the tables and
//! the charts.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use e2e::constat::{err, out, s, Env};

const LOG: &str = "\
P 2004-08-05-00:00:01 ipclog started
O 2004-08-05-10:00:00 tcp 10.0.0.1 10.0.0.2 1000 22 e -
C 2004-08-05-10:00:10 tcp 10.0.0.1 10.0.0.2 1000 22 t 10 uid=CA orig_ip_bytes=100 resp_ip_bytes=200 retrans=2
O 2004-08-05-11:00:00 tcp 10.0.0.1 10.0.0.3 1001 25 e -
C 2004-08-05-11:00:50 tcp 10.0.0.1 10.0.0.3 1001 25 t 50 uid=CB orig_ip_bytes=9000 resp_ip_bytes=1000
O 2004-08-05-11:30:00 udp 10.0.0.1 10.0.0.4 1002 53 e -
O 2004-08-05-12:00:00 tcp 10.0.0.1 10.0.0.5 1003 8080 e -
C 2004-08-05-12:00:01 tcp 10.0.0.1 10.0.0.5 1003 8080 t 1 uid=CC conn_state=REJ
P 2004-08-05-13:00:01 ipclog started
P 2004-08-05-13:00:02 lost 5 events
";

/// Names a hostile lookup file (or log) could carry.
const LOOKUP: &str = "\
10.0.0.3 =HYPERLINK(\"http://x\")
10.0.0.4 <script>alert(1)</script>
10.0.0.5 @SUM(1+1)
";

fn env(name: &str) -> (Env, std::path::PathBuf) {
    let e = Env::new(name);
    e.write("constat.lookup", LOOKUP);
    let log = e.write("ipclog.log", LOG);
    (e, log)
}

/// Splits one CSV line (RFC 4180 quoting).
fn csv_fields(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match (c, quoted) {
            ('"', true) if chars.peek() == Some(&'"') => {
                cur.push('"');
                chars.next();
            }
            ('"', _) => quoted = !quoted,
            (',', false) => out.push(std::mem::take(&mut cur)),
            (c, _) => cur.push(c),
        }
    }
    out.push(cur);
    out
}

#[test]
fn csv_has_the_documented_columns_and_defuses_formulas() {
    let (e, log) = env("fmt-csv");
    let o = e.run(&[
        "-f",
        s(&log),
        "-d",
        "2004-08-05",
        "--format",
        "csv",
        "--bytes",
    ]);
    assert!(o.status.success(), "{o:?}");
    let text = out(&o);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines[0],
        "from,to,src,prot,dport,dst,n,nopn,avgtm,maxtm,bytes,orig_bytes,resp_bytes,retrans,\
         syn_retrans,rst,long_delay,frag,long_conn"
    );
    assert_eq!(lines.len(), 5, "{text}");
    // Sorted by bytes (--bytes), as the text table.
    let f = csv_fields(lines[1]);
    assert_eq!(
        f,
        [
            "2004-08-05",
            "2004-08-05",
            "10.0.0.1",
            "tcp",
            "smtp",
            "'=HYPERLINK(\"http://x\")",
            "1",
            "0",
            "50.0",
            "50",
            "10000",
            "9000",
            "1000",
            "0",
            "0",
            "0",
            "0",
            "0",
            "0"
        ]
    );
    assert!(
        lines[1].contains(",\"'=HYPERLINK(\"\"http://x\"\")\","),
        "{}",
        lines[1]
    );
    let ssh = lines
        .iter()
        .map(|l| csv_fields(l))
        .find(|f| f[4] == "ssh")
        .unwrap();
    assert_eq!(
        &ssh[10..14],
        ["300", "100", "200", "1"],
        "connections that retransmitted"
    );
    let open = lines
        .iter()
        .map(|l| csv_fields(l))
        .find(|f| f[4] == "domain")
        .unwrap();
    assert_eq!(
        (open[7].as_str(), open[8].as_str(), open[9].as_str()),
        ("1", "", "")
    );
    let at = lines.iter().find(|l| l.contains("SUM")).unwrap();
    assert!(at.contains(",\"'@SUM(1+1)\","), "{at}");
    for l in &lines {
        for cell in csv_fields(l) {
            assert!(
                !cell.starts_with(['=', '+', '-', '@', '\t', '\r']),
                "a formula cell: {cell:?} in {l}"
            );
        }
    }
}

#[test]
fn json_holds_every_section_with_escaped_strings() {
    let (e, log) = env("fmt-json");
    let state = e.path("state");
    let o = e.run(&[
        "-f",
        s(&log),
        "-d",
        "2004-08-05",
        "--format",
        "json",
        "--sections",
        "all",
        "--state-dir",
        s(&state),
    ]);
    assert!(o.status.success(), "{o:?}");
    let v: serde_json::Value = serde_json::from_str(out(&o).trim()).expect("one JSON object");
    assert_eq!(v["from"], "2004-08-05");
    assert_eq!(v["to"], "2004-08-05");
    let rows = v["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 4);
    let smtp = rows.iter().find(|r| r["dport"] == "smtp").unwrap();
    assert_eq!(smtp["dst"], "=HYPERLINK(\"http://x\")");
    assert_eq!(smtp["n"], 1);
    assert_eq!(smtp["avgtm"], 50.0);
    assert_eq!(smtp["maxtm"], 50);
    assert_eq!(smtp["orig_bytes"], 9000);
    assert_eq!(smtp["resp_bytes"], 1000);
    let dns = rows.iter().find(|r| r["dport"] == "domain").unwrap();
    assert_eq!(dns["dst"], "<script>alert(1)</script>");
    assert!(dns["avgtm"].is_null() && dns["maxtm"].is_null());
    assert_eq!(dns["nopn"], 1);
    assert_eq!(v["total"]["n"], 4);
    assert_eq!(v["total"]["bytes"], 10300);
    assert_eq!(v["hours"][11]["connections"], 2);
    assert_eq!(v["hours"][11]["bytes"], 10000);
    assert_eq!(v["hours"][10]["anomalous"], 1);
    assert_eq!(v["anomalies"]["counts"]["refused"], 1);
    assert_eq!(v["anomalies"]["counts"]["retransmitting"], 1);
    assert_eq!(v["anomalies"]["worst"][0]["uid"], "CC");
    assert_eq!(v["health"]["runs"], 2);
    assert_eq!(v["health"]["restarts"], 1);
    assert_eq!(v["lost_events"], 5);
    assert_eq!(v["errors"], 0);
    assert_eq!(v["new"]["first_run"], true);
    let top = v["top"].as_array().unwrap();
    assert_eq!(top[0]["title"], "destinations by connections");
    assert_eq!(top[0]["total"], 4);
}

/// Chromium, or None (skip) outside CI; in CI (CI=true) its absence fails the test.
fn chromium() -> Option<String> {
    for name in ["chromium", "chromium-browser"] {
        let ok = Command::new(name)
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if ok {
            return Some(name.to_string());
        }
    }
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("chromium is not installed (apt-get install -y chromium), and CI=true");
    }
    println!("SKIP: chromium is not installed (apt-get install -y chromium)");
    None
}

/// Runs headless Chromium on `page`: its rendered DOM, and a screenshot at `png`.
fn render(browser: &str, dir: &Path, page: &Path, png: &Path) -> String {
    let run = |extra: &[String]| {
        let mut cmd = Command::new(browser);
        cmd.args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--hide-scrollbars",
            "--window-size=1200,2400",
        ])
        .arg(format!("--user-data-dir={}", dir.join("profile").display()))
        .args(extra)
        .arg(format!("file://{}", page.display()))
        .env("HOME", dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
        let child = cmd.spawn().expect("run chromium");
        let pid = child.id();
        let deadline = Instant::now() + Duration::from_secs(120);
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(child.wait_with_output());
        });
        loop {
            match rx.recv_timeout(Duration::from_millis(200)) {
                Ok(o) => return o.expect("chromium output"),
                Err(_) if Instant::now() > deadline => {
                    // SAFETY: kill(2) on the pid of the child we started.
                    unsafe { libc::kill(pid as i32, libc::SIGKILL) };
                    panic!("chromium did not finish within 120 s");
                }
                Err(_) => {}
            }
        }
    };
    let o = run(&[format!("--screenshot={}", png.display())]);
    assert!(o.status.success(), "chromium --screenshot: {o:?}");
    let o = run(&["--dump-dom".to_string()]);
    assert!(o.status.success(), "chromium --dump-dom: {o:?}");
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn html_is_one_self_contained_page_with_tables_and_charts() {
    let (e, log) = env("fmt-html");
    let o = e.run(&[
        "-f",
        s(&log),
        "-d",
        "2004-08-05",
        "--format",
        "html",
        "--sections",
        "all",
        "--bytes",
        "--state-dir",
        s(&e.path("state")),
    ]);
    assert!(o.status.success(), "{o:?}");
    assert!(err(&o).is_empty(), "{}", err(&o));
    let page = out(&o);
    // Self-contained: no script, nothing to fetch; hostile names escaped.
    let lower = page.to_lowercase();
    for bad in ["<script", " src=", " href=", "url(", "@import", "<link"] {
        assert!(!lower.contains(bad), "{bad:?} in the page");
    }
    assert!(
        page.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
        "{page}"
    );
    assert!(page.contains("=HYPERLINK(&quot;http://x&quot;)"));
    let file = e.write("report.html", &page);

    let Some(browser) = chromium() else { return };
    let png = e.path("report.png");
    let dom = render(&browser, &e.dir, &file, &png);
    let shot = std::fs::read(&png).expect("a screenshot");
    assert!(
        shot.starts_with(b"\x89PNG\r\n\x1a\n") && shot.len() > 10_000,
        "{}",
        shot.len()
    );
    // The rendered DOM: the tables with their rows, and the charts with a bar per hour.
    let between = |from: &str, to: &str| -> String {
        let i = dom
            .find(from)
            .unwrap_or_else(|| panic!("no {from:?} in the DOM:\n{dom}"));
        let rest = &dom[i..];
        rest[..rest.find(to).expect(to)].to_string()
    };
    let table = between("<table id=\"connections\"", "</table>");
    assert_eq!(table.matches("<tr class=\"row\"").count(), 4, "{table}");
    assert!(
        table.contains("&lt;script&gt;"),
        "escaped, not run: {table}"
    );
    assert!(
        !dom.contains("<script>alert"),
        "the hostile name became markup"
    );
    for id in ["chart-conns", "chart-bytes", "chart-anomalies"] {
        let fig = between(&format!("<figure id=\"{id}\""), "</figure>");
        assert!(fig.contains("<svg"), "{id}: {fig}");
        assert_eq!(fig.matches("<rect").count(), 24, "{id}: a bar per hour");
    }
    let top = between("<figure id=\"chart-top\"", "</figure>");
    assert_eq!(top.matches("<rect").count(), 4, "{top}");
    for id in ["anomalies", "worst", "top-0", "health"] {
        assert!(
            dom.contains(&format!("<table id=\"{id}\"")),
            "no table {id}"
        );
    }
}

#[test]
fn per_day_prints_one_json_object_per_day_and_one_csv_header() {
    let e = Env::new("fmt-perday");
    let log = e.write(
        "ipclog.log",
        "\
O 2004-08-05-10:00:00 tcp 10.0.0.1 10.0.0.2 1000 22 e -
O 2004-08-06-10:00:00 tcp 10.0.0.1 10.0.0.2 1001 22 e -
O 2004-08-06-11:00:00 udp 10.0.0.1 10.0.0.3 1002 53 e -
",
    );
    let args = [
        "-f",
        s(&log),
        "--from",
        "2004-08-05",
        "--to",
        "2004-08-07",
        "--per-day",
        "-n",
    ];
    let mut a = args.to_vec();
    a.extend(["--format", "json"]);
    let o = e.run(&a);
    assert!(o.status.success(), "{o:?}");
    let days: Vec<serde_json::Value> = out(&o)
        .lines()
        .map(|l| serde_json::from_str(l).expect("one JSON object per line"))
        .collect();
    assert_eq!(days.len(), 3);
    let n: Vec<u64> = days
        .iter()
        .map(|d| d["total"]["n"].as_u64().unwrap())
        .collect();
    assert_eq!(n, [1, 2, 0]);
    assert_eq!(days[1]["from"], "2004-08-06");
    let mut a = args.to_vec();
    a.extend(["--format", "csv"]);
    let o = e.run(&a);
    let text = out(&o);
    assert_eq!(text.matches("from,to,src").count(), 1, "{text}");
    assert_eq!(text.lines().count(), 4, "{text}");
    assert!(
        text.lines()
            .nth(2)
            .unwrap()
            .starts_with("2004-08-06,2004-08-06,"),
        "{text}"
    );
}
