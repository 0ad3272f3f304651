//! The golden test: the original documentation's sample log, with a lookup file holding the four
//! names the documentation implies, must give exactly the documented report.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use e2e::bins::{bin, repo_root, scratch};

const LOOKUP: &str = "\
# the four names the original constat documentation implies
192.168.0.2     nat-pc
212.227.15.149  my-pop-server
212.227.15.145  my-smtp-server
217.237.151.97  my-nameserver
";

fn sample() -> PathBuf {
    repo_root().join("constat/sample/ipclog.log")
}

/// Runs constat with TZ=UTC and a name cache that does not exist, so neither the machine's
/// time zone nor a cache left by someone's `--resolve` can change the report.
fn constat(dir: &Path, args: &[&str]) -> Output {
    Command::new(bin("constat"))
        .args(args)
        .arg("--cache")
        .arg(dir.join("no-such-cache"))
        .env("TZ", "UTC")
        .output()
        .expect("run constat")
}

fn stdout(o: &Output) -> String {
    String::from_utf8(o.stdout.clone()).expect("report is UTF-8")
}

/// `constat -f <sample> -d 2004-08-05 --lookup <lookup>`: must succeed silently; its report.
fn sample_report(dir: &Path, lookup: &Path) -> String {
    let s = sample();
    let out = constat(
        dir,
        &[
            "-f",
            s.to_str().unwrap(),
            "-d",
            "2004-08-05",
            "--lookup",
            lookup.to_str().unwrap(),
        ],
    );
    assert!(out.status.success(), "{out:?}");
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout(&out)
}

/// The expected report, byte for byte (the seed's report in our fixed-width layout).
fn expected_report() -> String {
    std::fs::read_to_string(repo_root().join("tests/data/constat/sample-2004-08-05.txt")).unwrap()
}

/// The report as printed in the seed page (its whitespace was lost, so as tokens).
fn seed_report_tokens() -> Option<Vec<String>> {
    let dir = repo_root().join("../shared/seeds");
    let entries = std::fs::read_dir(&dir).ok()?;
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if !name.starts_with("004_") || !name.ends_with(".txt") {
            continue;
        }
        let text = std::fs::read_to_string(e.path()).ok()?;
        let start = text.find("scanning for date 2004-08-05")?;
        let end = start + text[start..].find("ERRORS")? + "ERRORS".len();
        return Some(
            text[start..end]
                .split_whitespace()
                .map(str::to_string)
                .collect(),
        );
    }
    None
}

#[test]
fn sample_log_gives_the_documented_report() {
    let dir = scratch("constat-golden");
    let lookup = dir.join("constat.lookup");
    std::fs::write(&lookup, LOOKUP).unwrap();
    let got = sample_report(&dir, &lookup);
    assert_eq!(got, expected_report());
    let lines: Vec<&str> = got.lines().collect();
    assert_eq!(lines[0], "scanning for date 2004-08-05");
    assert_eq!(lines[2], "-".repeat(75));
    let rows: Vec<String> = lines[3..]
        .iter()
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect();
    assert_eq!(
        rows,
        [
            "192.168.0.3 tcp ssh eth0 1 0 25.0 25",
            "nat-pc tcp pop3 my-pop-server 1 0 0.0 0",
            "ppp0 tcp http any 3 0 6.7 10",
            "ppp0 tcp smtp my-smtp-server 1 0 0.0 0",
            "ppp0 udp domain my-nameserver 2 0 10.0 20",
            "0 ERRORS",
        ]
    );

    // Token by token against the report in the original documentation itself.
    match seed_report_tokens() {
        Some(seed) => {
            let ours: Vec<String> = got.split_whitespace().map(str::to_string).collect();
            assert_eq!(ours, seed, "report differs from the seed's");
        }
        None => println!(
            "SKIP seed comparison: ../shared/seeds/004_*.txt not found beside the repository"
        ),
    }
}

#[test]
fn bundled_lookup_gives_the_same_report() {
    // The README's first command uses the shipped sample lookup file.
    let dir = scratch("constat-golden-bundled");
    let got = sample_report(&dir, &repo_root().join("lookup/constat.lookup"));
    assert_eq!(got, expected_report());
}

#[test]
fn readme_shows_the_report_its_first_command_prints() {
    let readme = std::fs::read_to_string(repo_root().join("README.md")).unwrap();
    let expected = expected_report();
    assert!(
        readme.contains(&format!("```text\n{expected}```")),
        "README.md's sample report differs from tests/data/constat/sample-2004-08-05.txt"
    );
    assert!(readme.contains(
        "cargo run -q --release -p constat -- -f constat/sample/ipclog.log -d 2004-08-05 \
         --lookup lookup/constat.lookup"
    ));
}
