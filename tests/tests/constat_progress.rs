//! constat's progress bar: drawn on stderr when stderr is a terminal and the input is long
//! (64 MiB or more), never otherwise. The terminal is a pseudo-terminal from util-linux's
//! `script`.

use std::io::Write;
use std::process::Command;

use e2e::bins::bin;
use e2e::constat::{s, Env};

/// A log of at least 64 MiB.
fn big_log(e: &Env) -> std::path::PathBuf {
    let p = e.path("big.log");
    let mut f = std::io::BufWriter::new(std::fs::File::create(&p).unwrap());
    let mut n = 0u64;
    let mut written = 0usize;
    while written < 65 << 20 {
        let port = 1024 + n % 60000;
        let a = format!(
            "O 2004-08-05-10:00:00 tcp 10.0.{}.{} 10.1.0.2 {port} 22 e -\n",
            n % 200,
            n % 250
        );
        let b = format!(
            "C 2004-08-05-10:00:01 tcp 10.0.{}.{} 10.1.0.2 {port} 22 t 1\n",
            n % 200,
            n % 250
        );
        f.write_all(a.as_bytes()).unwrap();
        f.write_all(b.as_bytes()).unwrap();
        written += a.len() + b.len();
        n += 1;
    }
    f.flush().unwrap();
    p
}

#[test]
fn a_bar_on_a_terminal_only() {
    let e = Env::new("progress");
    let log = big_log(&e);
    let has_script = Command::new("script")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    // Not a terminal: nothing on stderr.
    let o = e.run(&["-f", s(&log), "-d", "2004-08-05", "-n"]);
    assert!(o.status.success(), "{o:?}");
    assert!(
        o.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    if !has_script {
        println!("SKIP: no `script` (util-linux) for a pseudo-terminal");
        return;
    }
    // stdout to a file, stderr to the pseudo-terminal `script` records.
    let report = e.path("report.txt");
    let typescript = e.path("typescript");
    let cmd = format!(
        "TZ=UTC {} -f {} -d 2004-08-05 -n --no-cache --lookup /dev/null > {}",
        s(&bin("constat")),
        s(&log),
        s(&report)
    );
    let o = Command::new("script")
        .args(["-q", "-e", "-c", &cmd, s(&typescript)])
        .output()
        .unwrap();
    assert!(o.status.success(), "{o:?}");
    let tty = String::from_utf8_lossy(&std::fs::read(&typescript).unwrap()).into_owned();
    assert!(
        tty.contains("big.log [") && tty.contains("MiB/"),
        "no bar drawn: {tty:?}"
    );
    let text = std::fs::read_to_string(&report).unwrap();
    assert!(
        text.ends_with("0 ERRORS\n"),
        "the report is unchanged: {text}"
    );
    assert!(!text.contains("MiB"), "the bar is not in the report");
}
