//! Running constat as a user would, for the tests of its reports: a scratch directory with a
//! lookup file, TZ=UTC, no name cache unless asked.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use crate::bins::{bin, scratch};

pub struct Env {
    pub dir: PathBuf,
}

impl Env {
    pub fn new(name: &str) -> Env {
        let dir = scratch(&format!("constat-{name}"));
        std::fs::write(dir.join("constat.lookup"), "10.9.9.9 named-host\n").unwrap();
        Env { dir }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    pub fn write(&self, name: &str, data: impl AsRef<[u8]>) -> PathBuf {
        let p = self.path(name);
        std::fs::write(&p, data).unwrap();
        p
    }

    /// `text` gzip-compressed, one member per part (multi-member, as `cat a.gz b.gz`).
    pub fn write_gz(&self, name: &str, parts: &[&str]) -> PathBuf {
        let mut all = Vec::new();
        for p in parts {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            e.write_all(p.as_bytes()).unwrap();
            all.extend(e.finish().unwrap());
        }
        self.write(name, all)
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.run_stdin(args, None)
    }

    pub fn run_stdin(&self, args: &[&str], stdin: Option<&[u8]>) -> Output {
        let mut cmd = Command::new(bin("constat"));
        cmd.args(args).env("TZ", "UTC").env_remove("CI_FORCE_TTY");
        if !args.contains(&"--lookup") && args.first() != Some(&"query") {
            cmd.arg("--lookup").arg(self.path("constat.lookup"));
        }
        if !args.contains(&"--cache") && args.first() != Some(&"query") {
            cmd.arg("--no-cache");
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

pub fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

pub fn out(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn err(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}
