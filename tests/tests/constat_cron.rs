//! The daily cron job (ipclog/contrib/cron.daily/constat), run as cron would with a fake
//! sendmail: yesterday's report from the rotated gzip'd log and the current one, mailed with
//! the HTML attached; nothing to report means no mail and exit 0; an error reaches stderr and
//! the exit status.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output};

use chrono::{Duration, Utc};
use e2e::bins::{bin, repo_root};
use e2e::constat::{s, Env};

fn cron(e: &Env, log: &Path, mailto: &str, html: &str) -> Output {
    let sendmail = e.write(
        "sendmail",
        format!(
            "#!/bin/sh\necho \"$@\" > {0}/args\ncat > {0}/mail\n",
            e.dir.display()
        ),
    );
    std::fs::set_permissions(&sendmail, std::fs::Permissions::from_mode(0o755)).unwrap();
    Command::new("sh")
        .arg(repo_root().join("ipclog/contrib/cron.daily/constat"))
        .env("TZ", "UTC")
        .env("CONSTAT", bin("constat"))
        .env("CONSTAT_LOG", log)
        .env("CONSTAT_MAILTO", mailto)
        .env("CONSTAT_HTML", html)
        .env(
            "CONSTAT_OPTS",
            format!("--no-cache --lookup {}", s(&e.path("constat.lookup"))),
        )
        .env("SENDMAIL", &sendmail)
        .output()
        .unwrap()
}

#[test]
fn mails_yesterdays_report_with_html_and_stays_quiet_on_an_empty_day() {
    let e = Env::new("cron");
    let y = (Utc::now().date_naive() - Duration::days(1))
        .format("%Y-%m-%d")
        .to_string();
    let log = e.path("ipclog.log");
    // Opened yesterday in the rotated, gzip'd log; closed in the current one.
    e.write_gz(
        "ipclog.log.1.gz",
        &[&format!(
            "O {y}-23:59:00 tcp 10.0.0.1 10.0.0.2 1000 22 e -\n"
        )],
    );
    e.write(
        "ipclog.log",
        format!("C {y}-23:59:30 tcp 10.0.0.1 10.0.0.2 1000 22 t 30\n"),
    );
    let o = cron(&e, &log, "ops@example.org", "yes");
    assert!(o.status.success(), "{o:?}");
    let mail = std::fs::read_to_string(e.path("mail")).expect("a mail was sent");
    assert!(mail.starts_with("To: ops@example.org\n"), "{mail}");
    assert!(mail.contains("Subject: constat "), "{mail}");
    assert!(mail.contains(&format!("scanning for date {y}")), "{mail}");
    assert!(
        mail.contains(
            "10.0.0.1        tcp  ssh      10.0.0.2            1     0     30.0       30"
        ),
        "{mail}"
    );
    assert!(mail.contains("Content-Type: text/html"), "{mail}");
    assert!(
        mail.contains(&format!("filename=\"constat-{y}.html\"")),
        "{mail}"
    );
    assert_eq!(
        std::fs::read_to_string(e.path("args")).unwrap().trim(),
        "-t -oi"
    );

    // Without an address: printed for cron to mail.
    std::fs::remove_file(e.path("mail")).unwrap();
    let o = cron(&e, &log, "", "no");
    assert!(o.status.success(), "{o:?}");
    assert!(String::from_utf8_lossy(&o.stdout).contains(&format!("scanning for date {y}")));
    assert!(!e.path("mail").exists());

    // Nothing yesterday: no mail, no output, exit 0.
    let quiet = e.write(
        "quiet.log",
        "O 2004-08-05-10:00:00 tcp 10.0.0.1 10.0.0.2 1 22 e -\n",
    );
    let o = cron(&e, &quiet, "ops@example.org", "yes");
    assert!(o.status.success(), "{o:?}");
    assert!(o.stdout.is_empty() && o.stderr.is_empty(), "{o:?}");
    assert!(!e.path("mail").exists());

    // A broken log: constat's message and its exit status.
    let broken = e.write(
        "broken.log",
        [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3, 0xff, 0xff],
    );
    let o = cron(&e, &broken, "ops@example.org", "no");
    assert_eq!(o.status.code(), Some(2), "{o:?}");
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("broken.log"),
        "{o:?}"
    );
    assert!(!e.path("mail").exists());
}
