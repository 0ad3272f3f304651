//! `--status`: a running ipclog's counters, for anyone who may read a file. With `--pidfile F`
//! the logger keeps `F.status` (mode 0644: counters and output paths, nothing of the
//! connections themselves), rewritten in place every second by its own thread. It is opened
//! before privileges are dropped, like the pidfile, and removed at exit.
//!
//! Rewritten in place rather than renamed over, so that a logger running as `--user` keeps
//! writing it in a directory only root may write. A reader may catch a rewrite half done: the
//! text starts with `seq N` and ends with `end N`, and [`print`] reads again until the two
//! agree.

use std::fmt::Write as _;
use std::fs::File;
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};

use shared::outfile;

/// The counters the sources and sinks publish as they go (relaxed atomics: a status is a
/// snapshot, not a transaction).
#[derive(Default)]
pub struct Counters {
    /// Events the sources produced (before the filters).
    pub events: AtomicU64,
    pub opens: AtomicU64,
    pub closes: AtomicU64,
    /// Set by a source that knows its open connections exactly (conntrack); else opens less
    /// closes.
    pub open_now: AtomicU64,
    pub source_knows_open: AtomicU64,
    pub lost: AtomicU64,
    pub dropped: AtomicU64,
    pub errors: AtomicU64,
    /// Events between the conntrack reader and the writers.
    pub queue: AtomicU64,
    pub db_queue: AtomicU64,
    pub db_dropped: AtomicU64,
    pub proc_attributed: AtomicU64,
    pub proc_unattributed: AtomicU64,
    pub proc_not_local: AtomicU64,
}

pub static COUNTERS: Counters = Counters {
    events: AtomicU64::new(0),
    opens: AtomicU64::new(0),
    closes: AtomicU64::new(0),
    open_now: AtomicU64::new(0),
    source_knows_open: AtomicU64::new(0),
    lost: AtomicU64::new(0),
    dropped: AtomicU64::new(0),
    errors: AtomicU64::new(0),
    queue: AtomicU64::new(0),
    db_queue: AtomicU64::new(0),
    db_dropped: AtomicU64::new(0),
    proc_attributed: AtomicU64::new(0),
    proc_unattributed: AtomicU64::new(0),
    proc_not_local: AtomicU64::new(0),
};

/// What a conntrack source knows of itself, published every pass of its loop.
pub fn publish_source(open: u64, queue: u64, lost: u64, dropped: u64, errors: u64) {
    let c = &COUNTERS;
    c.source_knows_open.store(1, Relaxed);
    c.open_now.store(open, Relaxed);
    c.queue.store(queue, Relaxed);
    c.lost.store(lost, Relaxed);
    c.dropped.store(dropped, Relaxed);
    c.errors.store(errors, Relaxed);
}

/// Counts one event a source produced.
pub fn count_event(ev: &shared::ConnEvent) {
    let c = &COUNTERS;
    c.events.fetch_add(1, Relaxed);
    match ev.kind {
        shared::EventKind::Open => c.opens.fetch_add(1, Relaxed),
        shared::EventKind::Close => c.closes.fetch_add(1, Relaxed),
        shared::EventKind::Update => 0,
    };
}

/// What the sinks hold back and `--proc` did, published at each flush.
pub fn publish_sinks(
    db_queue: u64,
    db_dropped: u64,
    errors: u64,
    procs: Option<crate::procs::ProcStats>,
) {
    let c = &COUNTERS;
    // A conntrack source publishes its own errors with the sinks'.
    if c.source_knows_open.load(Relaxed) == 0 {
        c.errors.store(errors, Relaxed);
    }
    c.db_queue.store(db_queue, Relaxed);
    c.db_dropped.store(db_dropped, Relaxed);
    if let Some(p) = procs {
        c.proc_attributed.store(p.attributed, Relaxed);
        c.proc_unattributed.store(p.unattributed(), Relaxed);
        c.proc_not_local.store(p.not_local, Relaxed);
    }
}

/// The status file of pidfile `pidfile`.
pub fn path_of(pidfile: &Path) -> PathBuf {
    let mut p = pidfile.as_os_str().to_owned();
    p.push(".status");
    PathBuf::from(p)
}

/// The outputs the status lists with their sizes.
#[derive(Clone)]
pub struct Output {
    pub kind: &'static str,
    /// `None`: standard output or syslog, which have no size.
    pub path: Option<PathBuf>,
}

/// The status file, open for the logger's whole life.
pub struct StatusFile {
    path: PathBuf,
    file: File,
    policy: outfile::Policy,
}

impl StatusFile {
    /// Opens (creates) the status file next to the pidfile: never through a symbolic link,
    /// a regular file only, root's whatever `--user` says (as the pidfile).
    pub fn open(pidfile: &Path, policy: &outfile::Policy) -> Result<StatusFile, String> {
        let path = path_of(pidfile);
        let policy = outfile::Policy {
            owner: None,
            ..*policy
        };
        let shown = shared::text::escaped(&path.to_string_lossy()).into_owned();
        let file = outfile::open_rw(&path, &policy)
            .map_err(|e| format!("ipclog: {shown}: cannot use status file: {e}"))?
            .file;
        // SAFETY: fchmod on a descriptor we own.
        unsafe { libc::fchmod(file.as_raw_fd(), 0o644) };
        let _ = file.set_len(0);
        let path = if path.is_absolute() {
            path
        } else {
            std::env::current_dir()
                .map(|d| d.join(&path))
                .unwrap_or(path)
        };
        Ok(StatusFile { path, file, policy })
    }

    /// Starts the thread that rewrites the file every second until the process ends.
    pub fn start(&self, source: &'static str, outputs: Vec<Output>) -> std::io::Result<()> {
        let file = self.file.try_clone()?;
        let started = Utc::now();
        let t0 = Instant::now();
        std::thread::Builder::new()
            .name("ipclog-status".into())
            .spawn(move || {
                let mut seq = 0u64;
                let mut last = (Instant::now(), 0u64);
                loop {
                    seq += 1;
                    let events = COUNTERS.events.load(Relaxed);
                    let secs = last.0.elapsed().as_secs_f64().max(1e-3);
                    let rate = events.saturating_sub(last.1) as f64 / secs;
                    last = (Instant::now(), events);
                    let text = render(seq, source, started, t0.elapsed(), rate, &outputs);
                    let _ = file.write_all_at(text.as_bytes(), 0);
                    let _ = file.set_len(text.len() as u64);
                    std::thread::sleep(Duration::from_secs(1));
                }
            })?;
        Ok(())
    }
}

impl Drop for StatusFile {
    /// Removed at the end of the run, only if the name is still ours; else emptied, so that
    /// nobody reads a status that is no longer true.
    fn drop(&mut self) {
        if outfile::same_file(&self.path, &self.file, &self.policy)
            && std::fs::remove_file(&self.path).is_ok()
        {
            return;
        }
        let _ = self.file.set_len(0);
    }
}

fn render(
    seq: u64,
    source: &str,
    started: DateTime<Utc>,
    up: Duration,
    rate: f64,
    outputs: &[Output],
) -> String {
    let c = &COUNTERS;
    let get = |a: &AtomicU64| a.load(Relaxed);
    let open = if get(&c.source_knows_open) == 1 {
        get(&c.open_now)
    } else {
        get(&c.opens).saturating_sub(get(&c.closes))
    };
    let mut s = String::with_capacity(1024);
    let _ = writeln!(s, "seq {seq}");
    let _ = writeln!(s, "pid {}", std::process::id());
    let _ = writeln!(s, "source {source}");
    let _ = writeln!(s, "started {}", started.format("%Y-%m-%dT%H:%M:%SZ"));
    let _ = writeln!(s, "updated {}", Utc::now().timestamp());
    let _ = writeln!(s, "uptime {}", up.as_secs());
    let _ = writeln!(s, "events {}", get(&c.events));
    let _ = writeln!(s, "events_per_sec {rate:.1}");
    let _ = writeln!(s, "open {open}");
    let _ = writeln!(s, "lost {}", get(&c.lost));
    let _ = writeln!(s, "dropped {}", get(&c.dropped));
    let _ = writeln!(s, "errors {}", get(&c.errors));
    let _ = writeln!(s, "queue {}", get(&c.queue));
    let _ = writeln!(s, "db_queue {}", get(&c.db_queue));
    let _ = writeln!(s, "db_dropped {}", get(&c.db_dropped));
    let _ = writeln!(s, "proc_attributed {}", get(&c.proc_attributed));
    let _ = writeln!(s, "proc_unattributed {}", get(&c.proc_unattributed));
    let _ = writeln!(s, "proc_not_local {}", get(&c.proc_not_local));
    for o in outputs {
        match &o.path {
            Some(p) => {
                let size = std::fs::metadata(p)
                    .map(|m| m.len().to_string())
                    .unwrap_or_else(|_| "-".into());
                let _ = writeln!(
                    s,
                    "output {} {} {size}",
                    o.kind,
                    shared::text::field(&p.to_string_lossy())
                );
            }
            None => {
                let _ = writeln!(s, "output {} - -", o.kind);
            }
        }
    }
    let _ = writeln!(s, "end {seq}");
    s
}

/// Exit status of `--status` when no logger runs with that pidfile (LSB's "program is not
/// running").
pub const NOT_RUNNING: u8 = 3;

/// `ipclog --status`: prints the running logger's status; the exit status.
pub fn print(pidfile: &Path) -> u8 {
    let path = path_of(pidfile);
    let shown = shared::text::escaped(&path.to_string_lossy()).into_owned();
    let not_running = |why: &str| {
        eprintln!(
            "ipclog: no ipclog is running with pidfile {}: {why}",
            shared::text::escaped(&pidfile.to_string_lossy())
        );
        NOT_RUNNING
    };
    let deadline = Instant::now() + Duration::from_secs(2);
    let text = loop {
        let text = match std::fs::read(&path) {
            Ok(b) => String::from_utf8_lossy(&b).into_owned(),
            Err(e) => return not_running(&format!("{shown}: {e}")),
        };
        if let Some(t) = complete(&text) {
            break t;
        }
        if Instant::now() >= deadline {
            return not_running(&format!(
                "{shown}: no complete status (not written for 2 s)"
            ));
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let value = |k: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(k).and_then(|r| r.strip_prefix(' ')))
    };
    let pid = value("pid")
        .and_then(|p| p.parse::<u32>().ok())
        .unwrap_or(0);
    if pid == 0 || !Path::new(&format!("/proc/{pid}")).exists() {
        return not_running(&format!("{shown} is left from pid {pid}, which has exited"));
    }
    let updated = value("updated")
        .and_then(|u| u.parse::<i64>().ok())
        .unwrap_or(0);
    let age = Utc::now().timestamp() - updated;
    if age > 10 {
        return not_running(&format!(
            "{shown} of pid {pid} was last written {age} s ago"
        ));
    }
    let mut out = String::new();
    for line in text.lines() {
        if line.starts_with("seq ") || line.starts_with("end ") {
            continue;
        }
        let (k, v) = line.split_once(' ').unwrap_or((line, ""));
        let key = format!("{}:", shared::text::escaped(k));
        let _ = writeln!(out, "{key:<18} {}", shared::text::escaped(v));
    }
    print!("{out}");
    0
}

/// The status text from `seq N` to `end N` when the two agree.
fn complete(text: &str) -> Option<String> {
    let seq = text.lines().next()?.strip_prefix("seq ")?;
    let mut out = String::new();
    for line in text.lines() {
        out.push_str(line);
        out.push('\n');
        if let Some(e) = line.strip_prefix("end ") {
            return (e == seq).then_some(out);
        }
    }
    None
}
