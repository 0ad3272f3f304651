//! The Debian package as an administrator meets it: `packaging/build-deb` builds it (with the
//! quick `pkg-test` profile, so the test stays within a couple of minutes), `dpkg -c` lists
//! the tools, the `ipc` link, the man pages, the completions, the services and the
//! configuration files; the man pages render without a warning; the unit is the hardened one
//! (`systemd-analyze security` ≤ 2.5); bash completion loads; lintian finds no error. Then it
//! is installed with `dpkg -i` into a throwaway root (an overlay of this system in a private
//! mount namespace, so the host is untouched) and the installed tools run there.
//!
//! Needs cargo-deb, dpkg-deb, man, lintian, systemd-analyze and root (the install): each
//! missing one skips with a message, except in CI (CI=true), where it is a failure.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use e2e::bins::{repo_root, scratch};

fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
}

fn have(tool: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {tool} >/dev/null 2>&1")])
        .status()
        .is_ok_and(|s| s.success())
}

/// Whether every tool is there; otherwise says which is missing (a failure in CI).
fn require(tools: &[&str]) -> bool {
    let missing: Vec<&str> = tools.iter().copied().filter(|t| !have(t)).collect();
    if missing.is_empty() {
        return true;
    }
    let why = format!(
        "missing {} (apt-get install -y lintian man-db groff-base dpkg-dev systemd; cargo \
         install cargo-deb --locked)",
        missing.join(", ")
    );
    assert!(!in_ci(), "CI: {why}");
    eprintln!("SKIPPED: {why}");
    false
}

fn ok(out: Output, what: &str) -> String {
    assert!(
        out.status.success(),
        "{what}: {}\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The package, built once for all the tests of this file.
fn deb() -> &'static Path {
    static DEB: OnceLock<PathBuf> = OnceLock::new();
    DEB.get_or_init(|| {
        let out_dir = scratch("deb-build");
        let started = std::time::Instant::now();
        let out = Command::new(repo_root().join("packaging/build-deb"))
            .args(["--profile", "pkg-test", "--output"])
            .arg(&out_dir)
            .arg("--fast")
            .output()
            .expect("run packaging/build-deb");
        ok(out, "packaging/build-deb --profile pkg-test");
        eprintln!("package built in {:.0?}", started.elapsed());
        std::fs::read_dir(&out_dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .find(|p| p.extension().is_some_and(|e| e == "deb"))
            .expect("a .deb in the output directory")
    })
}

/// Man's output without its overstrikes (`N\x08N` for bold, `_\x08x` for underline).
fn plain(text: &str) -> String {
    let mut out: Vec<char> = Vec::new();
    for c in text.chars() {
        if c == '\u{8}' {
            out.pop();
        } else {
            out.push(c);
        }
    }
    out.into_iter().collect()
}

const TOOLS: &[&str] = &[
    "cargo-deb",
    "dpkg-deb",
    "man",
    "lintian",
    "systemd-analyze",
    "bash",
];

#[test]
fn package_holds_tools_pages_completions_services_and_conffiles() {
    if !require(TOOLS) {
        return;
    }
    let deb = deb();
    let list = ok(
        Command::new("dpkg-deb")
            .arg("-c")
            .arg(deb)
            .output()
            .unwrap(),
        "dpkg-deb -c",
    );
    let has = |path: &str| {
        list.lines()
            .any(|l| l.split_whitespace().nth(5) == Some(path))
    };
    for path in [
        "./usr/sbin/ipclog",
        "./usr/sbin/ipc",
        "./usr/bin/constat",
        "./usr/share/man/man8/ipclog.8.gz",
        "./usr/share/man/man8/ipc.8.gz",
        "./usr/share/man/man1/constat.1.gz",
        "./usr/share/man/man1/constat-query.1.gz",
        "./usr/share/man/man5/constat.lookup.5.gz",
        "./usr/share/bash-completion/completions/ipclog",
        "./usr/share/bash-completion/completions/ipc",
        "./usr/share/bash-completion/completions/constat",
        "./usr/share/zsh/vendor-completions/_ipclog",
        "./usr/share/zsh/vendor-completions/_constat",
        "./usr/share/fish/vendor_completions.d/ipclog.fish",
        "./usr/share/fish/vendor_completions.d/constat.fish",
        "./usr/lib/systemd/system/ipclog.service",
        "./usr/lib/systemd/system/ipclog-capture@.service",
        "./etc/logrotate.d/ipclog",
        "./etc/cron.daily/constat",
        "./etc/default/ipclog",
        "./etc/constat.lookup",
        "./usr/share/doc/ipclog/copyright",
    ] {
        assert!(has(path), "{path} is not in the package:\n{list}");
    }
    let ipc = list
        .lines()
        .find(|l| l.contains("./usr/sbin/ipc "))
        .unwrap();
    assert!(ipc.starts_with('l') && ipc.ends_with("-> ipclog"), "{ipc}");
    let dir = scratch("deb-contents");
    let ctl = dir.join("DEBIAN");
    ok(
        Command::new("dpkg-deb")
            .arg("-R")
            .arg(deb)
            .arg(&dir)
            .output()
            .unwrap(),
        "dpkg-deb -R",
    );
    // /etc files are conffiles: an administrator's edits survive upgrades.
    let conf = std::fs::read_to_string(ctl.join("conffiles")).unwrap();
    for f in [
        "/etc/constat.lookup",
        "/etc/default/ipclog",
        "/etc/logrotate.d/ipclog",
        "/etc/cron.daily/constat",
    ] {
        assert!(conf.lines().any(|l| l == f), "{f} not a conffile: {conf}");
    }
    let postinst = std::fs::read_to_string(ctl.join("postinst")).unwrap();
    assert!(postinst.contains("adduser --system"), "{postinst}");
    assert!(
        postinst.contains("deb-systemd-helper"),
        "the unit is enabled: {postinst}"
    );

    // Every page renders without a warning.
    for page in [
        "usr/share/man/man8/ipclog.8.gz",
        "usr/share/man/man8/ipc.8.gz",
        "usr/share/man/man1/constat.1.gz",
        "usr/share/man/man1/constat-query.1.gz",
        "usr/share/man/man5/constat.lookup.5.gz",
    ] {
        let out = Command::new("man")
            .args(["-l", "--warnings"])
            .arg(dir.join(page))
            .env("MANWIDTH", "80")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success() && stderr.is_empty(),
            "{page}: {stderr}"
        );
        let text = plain(&String::from_utf8_lossy(&out.stdout));
        assert!(
            text.contains("NAME") && text.contains("SEE ALSO"),
            "{page}: {text}"
        );
    }
    let ipclog8 = Command::new("man")
        .arg("-l")
        .arg(dir.join("usr/share/man/man8/ipclog.8.gz"))
        .env("MANWIDTH", "80")
        .output()
        .unwrap();
    let text = plain(&String::from_utf8_lossy(&ipclog8.stdout));
    // Options come from clap, the log format from the hand-written part.
    assert!(
        text.contains("--syslog-facility") && text.contains("LOG FORMAT"),
        "{text}"
    );

    // The hardened unit.
    let unit = dir.join("usr/lib/systemd/system/ipclog.service");
    let u = std::fs::read_to_string(&unit).unwrap();
    for line in [
        "Type=notify",
        "User=ipclog",
        "ExecStart=/usr/sbin/ipclog $IPCLOG_OPTS",
        "AmbientCapabilities=CAP_NET_ADMIN",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "RestrictAddressFamilies=AF_NETLINK AF_UNIX",
        "SystemCallFilter=@system-service",
        "MemoryDenyWriteExecute=yes",
    ] {
        assert!(u.lines().any(|l| l == line), "{line} missing:\n{u}");
    }
    for (unit, max) in [
        (unit.clone(), 2.5),
        (
            dir.join("usr/lib/systemd/system/ipclog-capture@.service"),
            2.5,
        ),
    ] {
        let out = Command::new("systemd-analyze")
            .args(["security", "--offline=yes", "--no-pager"])
            .arg(&unit)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        let score: f64 = text
            .lines()
            .find_map(|l| l.split("Overall exposure level for ").nth(1))
            .and_then(|rest| rest.split(": ").nth(1))
            .and_then(|s| s.split_whitespace().next())
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("no score: {text}{}", String::from_utf8_lossy(&out.stderr)));
        eprintln!("{}: exposure {score}", unit.display());
        assert!(score <= max, "{}: {score} > {max}", unit.display());
    }

    // bash completion loads and completes the options.
    let comp = dir.join("usr/share/bash-completion/completions/ipclog");
    let out = Command::new("bash")
        .arg("-c")
        .arg(format!(
            "source '{}' && complete -p ipclog && COMP_WORDS=(ipclog --syslog-f) COMP_CWORD=1 \
             COMP_LINE='ipclog --syslog-f' COMP_POINT=16 && _ipclog ipclog --syslog-f ipclog \
             && printf '%s\\n' \"${{COMPREPLY[@]}}\"",
            comp.display()
        ))
        .output()
        .unwrap();
    let text = ok(out, "bash completion");
    assert!(text.contains("-F _ipclog ipclog"), "{text}");
    assert!(text.contains("--syslog-facility"), "{text}");

    // lintian: no errors (warnings are printed for the record).
    let out = Command::new("lintian")
        .args(["--fail-on", "error", "--no-tag-display-limit"])
        .arg(deb)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    eprintln!("lintian:\n{text}");
    assert!(
        out.status.success() && !text.lines().any(|l| l.starts_with("E: ")),
        "lintian errors:\n{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn package_installs_into_a_throwaway_root_and_its_tools_run() {
    if !require(&["cargo-deb", "dpkg-deb", "unshare", "chroot"]) {
        return;
    }
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        assert!(!in_ci(), "CI: the install test needs root");
        eprintln!("SKIPPED: installing into a throwaway root needs root");
        return;
    }
    let deb = deb();
    let base = scratch("deb-root");
    // The root is an overlay of this system (its dpkg database, adduser, libc) with every
    // change going to a tmpfs, in a mount namespace of its own: dpkg -i and the postinst
    // (adduser, chown) run for real and the host sees none of it.
    let script = r#"
set -e
B=$1; DEB=$2
mount -t tmpfs tmpfs "$B"
mkdir "$B/upper" "$B/work" "$B/root"
mount -t overlay overlay -o "lowerdir=/,upperdir=$B/upper,workdir=$B/work" "$B/root"
R=$B/root
mount -t proc proc "$R/proc"
mount --rbind /dev "$R/dev"
mkdir -p "$R/tmp/pkg"
cp "$DEB" "$R/tmp/pkg/ipclog.deb"
chroot "$R" env DEBIAN_FRONTEND=noninteractive dpkg -i /tmp/pkg/ipclog.deb
echo "== version"; chroot "$R" /usr/sbin/ipclog --version
echo "== ipc"; chroot "$R" /usr/sbin/ipc --version
echo "== help"; chroot "$R" constat --help
echo "== user"; chroot "$R" id -un ipclog
echo "== owners"; chroot "$R" stat -c '%U %G %a %n' /var/lib/ipclog /var/log/ipclog.log
# The daily report over a log whose lines are from yesterday.
day=$(date -d yesterday +%F)
sed "s/2004-08-05/$day/" "$SAMPLE" > "$R/var/log/ipclog.log"
echo "== day"; echo "$day"
echo "== cron"; chroot "$R" /etc/cron.daily/constat
"#;
    let out = Command::new("unshare")
        .args(["-m", "--propagation", "private", "sh", "-c", script, "sh"])
        .arg(&base)
        .arg(deb)
        .env("SAMPLE", repo_root().join("constat/sample/ipclog.log"))
        .output()
        .unwrap();
    let text = ok(out, "dpkg -i into the throwaway root");
    let section = |name: &str| -> String {
        text.split(&format!("== {name}\n"))
            .nth(1)
            .unwrap_or("")
            .split("\n== ")
            .next()
            .unwrap_or("")
            .to_string()
    };
    let v = section("version");
    assert!(v.starts_with("ipclog 0.1.0 (git "), "{text}");
    // The link runs the same binary.
    assert!(section("ipc").starts_with("ipclog 0.1.0 (git "), "{text}");
    assert!(section("help").contains("Usage: constat"), "{text}");
    assert!(section("help").contains("man constat"), "{text}");
    assert_eq!(section("user").trim(), "ipclog", "{text}");
    let yesterday = section("day").trim().to_string();
    let cron = section("cron");
    assert!(
        cron.contains(&format!("scanning for date {yesterday}")) && cron.contains(" tcp "),
        "the daily report: {text}"
    );
    let owners = section("owners");
    assert!(
        owners.contains("ipclog ipclog 750 /var/lib/ipclog"),
        "{owners}"
    );
    assert!(
        owners.contains("ipclog adm 640 /var/log/ipclog.log"),
        "{owners}"
    );
}
