//! The sinks ipclog writes to, whatever the source: the line log (file or stdout), JSON lines,
//! syslog and the SQLite history (on its own thread), plus a fan-out and a filter in front of
//! them. Sinks count write errors instead of failing, so a full disk never stops the logger,
//! and writing resumes as soon as the destination accepts data again.

use std::collections::HashSet;
use std::fs::File;
use std::io::{self, Write};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::{json, Map, Value};

use shared::logfmt::{self, WriteOptions};
use shared::outfile;
use shared::proto::{proto_from_name, proto_name};
use shared::sink::EventSink;
use shared::{ConnEvent, EventKind};
use store::Store;

use crate::daemon::HUP;

/// How outputs are opened (symbolic links, owner of created files): set once by main from the
/// command line before any output is opened, used again by every reopen on SIGHUP.
pub static OUTPUT_POLICY: std::sync::OnceLock<outfile::Policy> = std::sync::OnceLock::new();

/// `msg` (an output that could not be opened) with how to allow a symbolic link, if that is
/// why.
pub fn with_symlink_hint(msg: String) -> String {
    if msg.contains(outfile::SYMLINK_REFUSED) {
        msg + " (give the real path, or --follow-symlinks to write through the link)"
    } else {
        msg
    }
}

/// Opens `path` for appending, creating it with mode 0640: never through a symbolic link
/// (unless --follow-symlinks), and only a regular file, FIFO or character device.
pub fn open_append(path: &Path) -> io::Result<File> {
    let policy = OUTPUT_POLICY.get().copied().unwrap_or_default();
    outfile::open_append(path, &policy, outfile::Accept::Stream)
        .map(|o| o.file)
        .map_err(|e| match e {
            outfile::OpenError::Io(e) => e,
            e => io::Error::new(
                io::ErrorKind::InvalidInput,
                with_symlink_hint(e.to_string()),
            ),
        })
}

/// A text destination: standard output or a file that SIGHUP reopens (logrotate moves the
/// old one away; the next write creates the new one).
///
/// Lines are written whole or counted as not written: after a short write (a disk that filled
/// up in the middle of a buffer) the next write starts with a newline, so the torn fragment
/// stays one bad line instead of gluing itself to the next one, and a torn last line left by
/// an earlier run is ended the same way when the file is opened. A reader that went away
/// (EPIPE) is not an error: the output closes and the run stops, like any Unix filter.
pub struct TextOut {
    path: Option<PathBuf>,
    out: Box<dyn Write + Send>,
    buf: Vec<u8>,
    hup_seen: u64,
    errors: u64,
    /// Lines discarded because their write failed.
    pub lines_lost: u64,
    lines_in_buf: u64,
    /// The destination holds a line without its newline (a short write, or an earlier run).
    torn: bool,
    /// Bytes of a torn last line found when the file was opened, not yet reported.
    torn_at_open: Option<u64>,
    /// The reader of a pipe went away: nothing more is written.
    closed: bool,
    /// The same file as `out` when it is a regular file: a torn fragment can then be cut off
    /// again, so the file holds whole lines only.
    regular: Option<File>,
    what: &'static str,
}

impl TextOut {
    /// Standard output, or `path` opened now (an unwritable path is a start-up error).
    pub fn open(path: Option<&Path>, what: &'static str) -> io::Result<TextOut> {
        let mut regular = None;
        let (path, out, torn_at_open): (Option<PathBuf>, Box<dyn Write + Send>, _) = match path {
            None => (None, Box::new(stdout_unbuffered()?), None),
            Some(p) => {
                let f = open_append(p)?;
                regular = f
                    .try_clone()
                    .ok()
                    .filter(|c| c.metadata().is_ok_and(|m| m.is_file()));
                let torn = torn_tail(&f);
                // Absolute, so a reopen after the daemon's chdir("/") finds the same file.
                let abs = if p.is_absolute() {
                    p.to_path_buf()
                } else {
                    std::env::current_dir()?.join(p)
                };
                (Some(abs), Box::new(f), torn)
            }
        };
        let mut t = TextOut::from_writer(out);
        t.path = path;
        t.what = what;
        t.torn = torn_at_open.is_some();
        t.torn_at_open = torn_at_open;
        t.regular = regular;
        Ok(t)
    }

    /// Any writer (tests, and the pieces `open` puts together).
    pub fn from_writer(w: Box<dyn Write + Send>) -> TextOut {
        TextOut {
            path: None,
            out: w,
            buf: Vec::with_capacity(1 << 16),
            hup_seen: HUP.load(Ordering::Relaxed),
            errors: 0,
            lines_lost: 0,
            lines_in_buf: 0,
            torn: false,
            torn_at_open: None,
            closed: false,
            regular: None,
            what: "output",
        }
    }

    pub fn line(&mut self, line: &str) {
        if self.closed {
            return;
        }
        self.buf.extend_from_slice(line.as_bytes());
        self.buf.push(b'\n');
        self.lines_in_buf += 1;
        if self.buf.len() >= 1 << 16 {
            self.flush();
        }
    }

    /// The size of a torn last line found when the file was opened, once (for a P line).
    pub fn take_torn_at_open(&mut self) -> Option<u64> {
        self.torn_at_open.take()
    }

    /// Writes what is buffered; on SIGHUP, first to the old file, then reopens.
    pub fn flush(&mut self) {
        if self.closed {
            self.buf.clear();
            self.lines_in_buf = 0;
        }
        if !self.buf.is_empty() {
            let result = self.write_buffer();
            if let Err(e) = result {
                if e.kind() == io::ErrorKind::BrokenPipe {
                    // The reader is gone (`ipclog ... | head`): stop quietly. What it did not
                    // read was never asked for.
                    self.closed = true;
                    crate::daemon::output_closed();
                } else {
                    self.errors += 1;
                    // Said for the first failures of a streak and then every 1000th, so a full
                    // disk does not flood standard error; the total is said at the end.
                    if self.errors <= 3 || self.errors.is_multiple_of(1000) {
                        eprintln!(
                            "ipclog: {} write failed ({} lines not written, {} in all): {e}",
                            self.shown(),
                            self.lines_in_buf,
                            self.lines_lost,
                        );
                    }
                }
            }
            // Lines whose write failed are dropped (and counted) rather than kept: memory
            // must not grow while a disk is full.
            self.buf.clear();
            self.lines_in_buf = 0;
        }
        let hup = HUP.load(Ordering::Relaxed);
        if hup != self.hup_seen {
            self.hup_seen = hup;
            if let Some(p) = &self.path {
                match open_append(p) {
                    Ok(f) => {
                        // A file logrotate left in place (copytruncate) may end in a torn line.
                        self.torn = torn_tail(&f).is_some();
                        self.regular = f
                            .try_clone()
                            .ok()
                            .filter(|c| c.metadata().is_ok_and(|m| m.is_file()));
                        self.out = Box::new(f);
                    }
                    Err(e) => {
                        self.errors += 1;
                        eprintln!("ipclog: cannot reopen {}: {e}", self.shown());
                    }
                }
            }
        }
    }

    /// Writes the buffer with as many `write` calls as it takes; on failure counts the lines
    /// that did not get out whole and remembers a torn one.
    fn write_buffer(&mut self) -> io::Result<()> {
        if self.torn {
            write_fully(&mut self.out, b"\n").map_err(|(_, e)| {
                self.lines_lost += self.lines_in_buf;
                e
            })?;
            self.torn = false;
        }
        match write_fully(&mut self.out, &self.buf)
            .and_then(|()| self.out.flush().map_err(|e| (self.buf.len(), e)))
        {
            Ok(()) => Ok(()),
            Err((written, e)) => {
                let whole = memchr_count(&self.buf[..written]);
                self.lines_lost += self.lines_in_buf - whole;
                let fragment = self.buf[..written]
                    .iter()
                    .rev()
                    .take_while(|&&c| c != b'\n')
                    .count() as u64;
                self.torn = fragment > 0 && !self.cut_fragment(fragment);
                Err(e)
            }
        }
    }

    /// Cuts the last `fragment` bytes (a line that got out only in part) off a regular
    /// file; false when that cannot be done (not a regular file, or the file moved on).
    fn cut_fragment(&mut self, fragment: u64) -> bool {
        let Some(f) = &self.regular else {
            return false;
        };
        let Ok(len) = f.metadata().map(|m| m.len()) else {
            return false;
        };
        len >= fragment && f.set_len(len - fragment).is_ok()
    }

    pub fn shown(&self) -> String {
        match &self.path {
            Some(p) => format!(
                "{} {}",
                self.what,
                shared::text::escaped(&p.to_string_lossy())
            ),
            None => format!("{} on standard output", self.what),
        }
    }

    pub fn errors(&self) -> u64 {
        self.errors
    }

    /// What was not written, for the summary at the end: `None` when everything was.
    pub fn not_written(&self) -> Option<String> {
        (self.errors > 0).then(|| {
            format!(
                "{}: {} lines not written ({} failed writes)",
                self.shown(),
                self.lines_lost,
                self.errors
            )
        })
    }
}

/// Standard output as an unbuffered file (a duplicate of descriptor 1): `io::Stdout` keeps
/// its own line buffer, which would hide how much of a write really got out.
fn stdout_unbuffered() -> io::Result<File> {
    use std::os::fd::AsFd;
    Ok(File::from(io::stdout().as_fd().try_clone_to_owned()?))
}

/// Writes all of `data`, retrying on EINTR; on failure, how many bytes got out and why not.
fn write_fully(out: &mut dyn Write, data: &[u8]) -> Result<(), (usize, io::Error)> {
    let mut written = 0;
    while written < data.len() {
        match out.write(&data[written..]) {
            Ok(0) => return Err((written, io::ErrorKind::WriteZero.into())),
            Ok(n) => written += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err((written, e)),
        }
    }
    Ok(())
}

fn memchr_count(b: &[u8]) -> u64 {
    b.iter().filter(|&&c| c == b'\n').count() as u64
}

/// When a regular file does not end with a newline (an earlier run was killed or hit a full
/// disk mid-line), how many bytes its last line has.
fn torn_tail(f: &File) -> Option<u64> {
    use std::os::fd::AsRawFd;
    use std::os::unix::fs::FileExt;
    let len = f.metadata().ok().filter(|m| m.is_file())?.len();
    // The output is open write-only; the same file is read through its descriptor (no path
    // is looked up again, so nothing can be swapped in between).
    let f = File::open(format!("/proc/self/fd/{}", f.as_raw_fd())).ok()?;
    if len == 0 {
        return None;
    }
    let mut last = [0u8; 1];
    f.read_exact_at(&mut last, len - 1).ok()?;
    if last[0] == b'\n' {
        return None;
    }
    // Only for the message: how long the fragment is (up to 1 MiB back).
    let back = len.min(1 << 20);
    let mut tail = vec![0u8; back as usize];
    f.read_exact_at(&mut tail, len - back).ok()?;
    let start = tail.iter().rposition(|&c| c == b'\n').map_or(0, |i| i + 1);
    Some((tail.len() - start) as u64)
}

/// The line log (P/H/I/O/S/C lines, see `shared::logfmt`).
pub struct LineLog {
    out: TextOut,
    opts: WriteOptions,
    line: String,
    /// `-n`: name tokens after the others.
    names: Option<crate::names::Names>,
    /// A torn last line an earlier run left, to be said in the log after the first P line.
    torn_notice: Option<String>,
}

impl LineLog {
    pub fn new(mut out: TextOut, opts: WriteOptions, names: Option<crate::names::Names>) -> Self {
        let torn_notice = out.take_torn_at_open().map(|n| {
            let m = format!(
                "{}: its last line was incomplete ({n} bytes, left by an earlier run that \
                 stopped mid-line); ended it with a newline",
                out.shown()
            );
            eprintln!("ipclog: {m}");
            m
        });
        LineLog {
            out,
            opts,
            line: String::with_capacity(256),
            names,
            torn_notice,
        }
    }

    /// Adds `-n`'s name tokens from now on.
    pub fn set_names(&mut self, names: crate::names::Names) {
        self.names = Some(names);
    }
}

impl EventSink for LineLog {
    fn event(&mut self, ev: &ConnEvent) {
        self.line.clear();
        logfmt::write_event(ev, self.opts, &mut self.line);
        if let Some(n) = &self.names {
            n.append_tokens(ev, &mut self.line);
        }
        self.out.line(&self.line);
    }

    fn program(&mut self, ts: DateTime<Utc>, message: &str) {
        self.out.line(&logfmt::program_line(ts, message));
        if let Some(m) = self.torn_notice.take() {
            self.out.line(&logfmt::program_line(ts, &m));
        }
    }

    fn flush(&mut self) {
        self.out.flush();
    }

    fn errors(&self) -> u64 {
        self.out.errors()
    }

    fn not_written(&self) -> Option<String> {
        self.out.not_written()
    }
}

/// Writes raw lines (H and I lines) to sinks that show text. Implemented by the line log only;
/// other sinks ignore them.
pub trait RawLines {
    fn raw_line(&mut self, line: &str);
}

impl RawLines for LineLog {
    fn raw_line(&mut self, line: &str) {
        self.out.line(line);
    }
}

use shared::event::epoch_secs as epoch;

/// One JSON object per event with Zeek conn.log field names. `ts` is the connection's start
/// (Zeek's meaning): the event time minus the duration so far; `event_ts` is when the event
/// happened.
pub fn event_json(ev: &ConnEvent, show_nat: bool) -> Value {
    let mut m = Map::new();
    let start = match ev.duration {
        Some(d) if ev.kind != EventKind::Open => epoch(ev.ts) - d,
        _ => epoch(ev.ts),
    };
    m.insert("ts".into(), json!(start));
    m.insert("event_ts".into(), json!(epoch(ev.ts)));
    m.insert(
        "event".into(),
        json!(match ev.kind {
            EventKind::Open => "open",
            EventKind::Update => "update",
            EventKind::Close => "close",
        }),
    );
    m.insert("source".into(), json!(ev.source.as_str()));
    let uid = ev
        .uid
        .clone()
        .unwrap_or_else(|| format!("CT{:08x}", ev.conn_id));
    m.insert("uid".into(), json!(uid));
    m.insert(
        "proto".into(),
        match proto_name(ev.proto) {
            Some(n) => json!(n),
            None => json!(ev.proto),
        },
    );
    m.insert("proto_num".into(), json!(ev.proto));
    m.insert("id.orig_h".into(), json!(ev.orig.src.to_string()));
    m.insert("id.orig_p".into(), json!(ev.orig.sport));
    m.insert("id.resp_h".into(), json!(ev.shown_dst().to_string()));
    m.insert("id.resp_p".into(), json!(ev.shown_dport()));
    m.insert("duration".into(), json!(ev.duration));
    if let Some(c) = ev.counters {
        m.insert("orig_pkts".into(), json!(c.orig_pkts));
        m.insert("resp_pkts".into(), json!(c.resp_pkts));
        m.insert("orig_ip_bytes".into(), json!(c.orig_ip_bytes));
        m.insert("resp_ip_bytes".into(), json!(c.resp_ip_bytes));
        m.insert("orig_bytes".into(), json!(c.orig_bytes));
        m.insert("resp_bytes".into(), json!(c.resp_bytes));
    }
    if let Some(s) = ev.zeek_state {
        m.insert("conn_state".into(), json!(s.as_str()));
    }
    if let Some(h) = &ev.history {
        m.insert("history".into(), json!(h));
    }
    m.insert("state".into(), json!(ev.state.name()));
    m.insert("flag".into(), json!(ev.state.flag().to_string()));
    for (k, v) in ev.anomalies.entries() {
        if v != 0 {
            m.insert(k.into(), json!(v));
        }
    }
    if let Some(i) = &ev.src_iface {
        m.insert("src_iface".into(), json!(i));
    }
    if let Some(i) = &ev.dst_iface {
        m.insert("dst_iface".into(), json!(i));
    }
    m.insert("direction".into(), json!(ev.direction.as_str()));
    if ev.found_at_start {
        m.insert("found_at_start".into(), json!(true));
    }
    if show_nat || ev.reply.is_some() {
        if let Some((a, p)) = ev.nat_src() {
            m.insert("nat_src_h".into(), json!(a.to_string()));
            m.insert("nat_src_p".into(), json!(p));
        }
        if let Some((a, p)) = ev.nat_orig_dst() {
            m.insert("orig_dst_h".into(), json!(a.to_string()));
            m.insert("orig_dst_p".into(), json!(p));
        }
    }
    if let Some(x) = ev.mark {
        m.insert("mark".into(), json!(x));
    }
    if let Some(x) = ev.zone {
        m.insert("zone".into(), json!(x));
    }
    if let Some(t) = ev.kernel_start {
        m.insert("kstart".into(), json!(epoch(t)));
    }
    if let Some(t) = ev.kernel_stop {
        m.insert("kstop".into(), json!(epoch(t)));
    }
    Value::Object(m)
}

/// JSON lines. With `closes_only` (packet sources, like Zeek's conn.log) only closes are
/// written.
pub struct JsonSink {
    out: TextOut,
    closes_only: bool,
    show_nat: bool,
}

impl JsonSink {
    pub fn new(out: TextOut, closes_only: bool, show_nat: bool) -> Self {
        JsonSink {
            out,
            closes_only,
            show_nat,
        }
    }
}

impl EventSink for JsonSink {
    fn event(&mut self, ev: &ConnEvent) {
        if self.closes_only && ev.kind != EventKind::Close {
            return;
        }
        let v = event_json(ev, self.show_nat);
        self.out.line(&v.to_string());
    }

    fn program(&mut self, ts: DateTime<Utc>, message: &str) {
        let v = json!({"ts": epoch(ts), "event": "program", "message": message});
        self.out.line(&v.to_string());
    }

    fn flush(&mut self) {
        self.out.flush();
    }

    fn errors(&self) -> u64 {
        self.out.errors()
    }

    fn not_written(&self) -> Option<String> {
        self.out.not_written()
    }
}

/// syslog(3), facility daemon: the line log's lines without their timestamp (syslog adds its
/// own), at priority info (P lines: notice).
pub struct SyslogSink {
    opts: WriteOptions,
    line: String,
}

impl SyslogSink {
    pub fn open(opts: WriteOptions) -> SyslogSink {
        // SAFETY: the ident is a static C string, as openlog requires (it keeps the pointer).
        unsafe {
            libc::openlog(
                c"ipclog".as_ptr(),
                libc::LOG_PID | libc::LOG_NDELAY,
                libc::LOG_DAEMON,
            );
        }
        SyslogSink {
            opts,
            line: String::new(),
        }
    }

    fn send(prio: libc::c_int, text: &str) {
        let Ok(c) = std::ffi::CString::new(text.replace('\0', " ")) else {
            return;
        };
        // SAFETY: "%s" with one valid C string argument.
        unsafe { libc::syslog(prio, c"%s".as_ptr(), c.as_ptr()) };
    }
}

/// A line without its second field (the timestamp): `O 2004-...-16:41:37 udp ...` ->
/// `O udp ...`.
fn without_ts(line: &str) -> String {
    let mut it = line.splitn(3, ' ');
    let letter = it.next().unwrap_or("");
    let _ts = it.next();
    format!("{letter} {}", it.next().unwrap_or("").trim_start())
}

impl EventSink for SyslogSink {
    fn event(&mut self, ev: &ConnEvent) {
        self.line.clear();
        logfmt::write_event(ev, self.opts, &mut self.line);
        Self::send(libc::LOG_INFO, &without_ts(&self.line));
    }

    fn program(&mut self, ts: DateTime<Utc>, message: &str) {
        Self::send(
            libc::LOG_NOTICE,
            &without_ts(&logfmt::program_line(ts, message)),
        );
    }

    fn flush(&mut self) {}
}

enum DbMsg {
    Event(Box<ConnEvent>),
    Finish {
        times: RunTimes,
        errors: u64,
        lost: u64,
        dropped: u64,
    },
}

/// Counters shared between the SQLite sink and its thread.
#[derive(Default)]
pub struct DbCounters {
    /// Events that did not fit in the queue to the database thread.
    pub dropped: AtomicU64,
    /// Failed batch writes.
    pub errors: AtomicU64,
    /// Events written.
    pub written: AtomicU64,
    /// Lost conntrack events so far (kept in the runs table while running).
    pub lost: AtomicU64,
    /// Events queued and not yet taken by the database thread.
    pub depth: AtomicU64,
    /// Of `dropped`, those lost with a batch that could not be written.
    pub write_dropped: AtomicU64,
}

/// What the SQLite sink does when its queue is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WhenFull {
    /// Wait for room: the source can wait (a capture file or pipe), so nothing is lost.
    Wait,
    /// Drop and count: the source is live (conntrack, an interface) and must keep reading.
    Drop,
}

/// The SQLite history, written in batches by its own thread so a slow disk never stalls the
/// event reader. With a live source, events that do not fit in the bounded queue are dropped
/// and counted; with a file source the sender waits.
pub struct DbSink {
    tx: Option<SyncSender<DbMsg>>,
    capacity: u64,
    when_full: WhenFull,
    thread: Option<JoinHandle<()>>,
    pub counters: Arc<DbCounters>,
    shown: String,
}

impl DbSink {
    /// Starts the writer thread on an already opened store (opened at start so errors are
    /// start-up errors).
    pub fn start(store: Store, capacity: usize, when_full: WhenFull, path: &Path) -> DbSink {
        let (tx, rx) = mpsc::sync_channel(capacity);
        let counters = Arc::new(DbCounters::default());
        let c = counters.clone();
        let thread = std::thread::Builder::new()
            .name("ipclog-db".into())
            .spawn(move || db_thread(store, rx, c, capacity))
            .expect("spawn database thread");
        DbSink {
            tx: Some(tx),
            capacity: capacity as u64,
            when_full,
            thread: Some(thread),
            counters,
            shown: format!(
                "database {}",
                shared::text::escaped(&path.to_string_lossy())
            ),
        }
    }

    /// Events the database did not get (queue full, or a batch that kept failing).
    pub fn dropped(&self) -> u64 {
        self.counters.dropped.load(Ordering::Relaxed)
    }

    /// A live source's events that did not fit in the queue: counted and said, but not a
    /// write failure.
    pub fn queue_dropped_note(&self) -> Option<String> {
        let n = self.dropped() - self.counters.write_dropped.load(Ordering::Relaxed);
        (n > 0).then(|| {
            format!(
                "{}: {n} events dropped because the queue was full (--db-queue); they are \
                 counted in the runs table and in P lines",
                self.shown
            )
        })
    }

    /// Queue depth is not observable on std channels; the written/dropped counts are.
    pub fn finish(&mut self, times: RunTimes, errors: u64, lost: u64, dropped: u64) {
        if let Some(tx) = self.tx.take() {
            let _ = tx.send(DbMsg::Finish {
                times,
                errors,
                lost,
                dropped,
            });
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for DbSink {
    fn drop(&mut self) {
        self.tx.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl EventSink for DbSink {
    fn event(&mut self, ev: &ConnEvent) {
        if let Some(tx) = &self.tx {
            if self.when_full == WhenFull::Wait {
                self.counters.depth.fetch_add(1, Ordering::Relaxed);
                if tx.send(DbMsg::Event(Box::new(ev.clone()))).is_err() {
                    // The database thread is gone (it never panics; this is defensive).
                    self.counters.depth.fetch_sub(1, Ordering::Relaxed);
                    self.counters.dropped.fetch_add(1, Ordering::Relaxed);
                }
                return;
            }
            // A full queue drops without paying for the copy first.
            if self.counters.depth.load(Ordering::Relaxed) >= self.capacity {
                self.counters.dropped.fetch_add(1, Ordering::Relaxed);
                return;
            }
            // Counted before the send, so the database thread never takes it below zero.
            self.counters.depth.fetch_add(1, Ordering::Relaxed);
            match tx.try_send(DbMsg::Event(Box::new(ev.clone()))) {
                Ok(()) => {}
                Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                    self.counters.depth.fetch_sub(1, Ordering::Relaxed);
                    self.counters.dropped.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    }

    fn program(&mut self, _ts: DateTime<Utc>, _message: &str) {}

    fn flush(&mut self) {}

    fn errors(&self) -> u64 {
        self.counters.errors.load(Ordering::Relaxed)
    }

    fn not_written(&self) -> Option<String> {
        let errors = self.errors();
        let in_writes = self.counters.write_dropped.load(Ordering::Relaxed);
        (in_writes > 0 || errors > 0).then(|| {
            format!(
                "{}: {in_writes} events not written ({errors} failed writes)",
                self.shown
            )
        })
    }
}

fn db_thread(mut store: Store, rx: Receiver<DbMsg>, c: Arc<DbCounters>, capacity: usize) {
    // Ordinary priority: still behind the reader (-10) and the processor (-5), so when the CPU
    // is short what the database cannot take is dropped and counted, never the kernel's
    // events; at +10 it starved under a 50k flows/s flood (166k events dropped, 0 at 0).
    crate::daemon::set_thread_nice(0);
    // Large enough that under a flood the open and the close of a short-lived flow usually
    // land in the same batch, which the store writes as one INSERT (about 4.4 instead of
    // 6 us an event in shared/examples/store_bench); the cache and checkpoint settings are the
    // store's own.
    const BATCH: usize = 65536;
    let mut batch: Vec<ConnEvent> = Vec::with_capacity(BATCH);
    let mut finish = None;
    let mut last_run_update = std::time::Instant::now();
    loop {
        // Wait for the first event, then take whatever else is queued, up to a batch.
        let first = match rx.recv_timeout(Duration::from_millis(200)) {
            Ok(m) => Some(m),
            Err(RecvTimeoutError::Timeout) => None,
            Err(RecvTimeoutError::Disconnected) => break,
        };
        let mut next = first;
        while let Some(m) = next {
            match m {
                DbMsg::Event(e) => {
                    c.depth.fetch_sub(1, Ordering::Relaxed);
                    batch.push(*e)
                }
                DbMsg::Finish {
                    times,
                    errors,
                    lost,
                    dropped,
                } => finish = Some((times, errors, lost, dropped)),
            }
            if batch.len() >= BATCH || finish.is_some() {
                break;
            }
            next = rx.try_recv().ok();
        }
        if !batch.is_empty() {
            // A batch that took the whole queue means senders are waiting (or dropping): no
            // pause before the next one.
            let full = batch.len() >= BATCH.min(capacity);
            write_with_retry(&mut store, &mut batch, &c);
            if !full && finish.is_none() {
                // Let the next batch gather: fewer, larger transactions under load.
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        if last_run_update.elapsed() >= Duration::from_secs(1) {
            last_run_update = std::time::Instant::now();
            let _ = store.update_run(
                c.errors.load(Ordering::Relaxed),
                c.lost.load(Ordering::Relaxed),
                c.dropped.load(Ordering::Relaxed),
            );
        }
        if finish.is_some() {
            break;
        }
    }
    // Drain what is left after a Finish (nothing should be) or a disconnect.
    while let Ok(DbMsg::Event(e)) = rx.try_recv() {
        batch.push(*e);
    }
    if !batch.is_empty() {
        write_with_retry(&mut store, &mut batch, &c);
    }
    if let Some((times, errors, lost, dropped)) = finish {
        let db_errors = c.errors.load(Ordering::Relaxed);
        let dropped = dropped + c.dropped.load(Ordering::Relaxed);
        let r = store.finish_run(
            times.started,
            times.stopped,
            errors + db_errors,
            lost,
            dropped,
        );
        if let Err(e) = r {
            c.errors.fetch_add(1, Ordering::Relaxed);
            eprintln!("ipclog: database: cannot record the end of the run: {e}");
        }
    }
}

/// Drops the updates of a batch that a later update or close of the same connection in the
/// same batch supersedes: the store's update of a row sets the state, flag and duration the
/// later event sets again, so only the last one matters. A TCP connection's whole life (open,
/// established, closing, TIME_WAIT, close) becomes two statements instead of five.
fn compact(batch: &mut Vec<ConnEvent>) {
    use std::collections::HashSet;
    let mut later: HashSet<(shared::Source, u64, u8, shared::FlowTuple)> = HashSet::new();
    let mut keep = vec![true; batch.len()];
    for (i, ev) in batch.iter().enumerate().rev() {
        let k = (ev.source, ev.conn_id, ev.proto, ev.orig);
        match ev.kind {
            EventKind::Update => {
                if !later.insert(k) {
                    keep[i] = false;
                }
            }
            EventKind::Close => {
                later.insert(k);
            }
            // An open starts the row; events before it belong to an earlier connection.
            EventKind::Open => {
                later.remove(&k);
            }
        }
    }
    let mut i = 0;
    batch.retain(|_| {
        i += 1;
        keep[i - 1]
    });
}

/// Writes a batch; a failed batch (disk full, locked by a reader for too long) is retried a
/// few times, then dropped and counted, so the thread never stops.
fn write_with_retry(store: &mut Store, batch: &mut Vec<ConnEvent>, c: &DbCounters) {
    let before = batch.len() as u64;
    compact(batch);
    c.written
        .fetch_add(before - batch.len() as u64, Ordering::Relaxed);
    for attempt in 0..3 {
        match store.write_batch(batch) {
            Ok(()) => {
                c.written.fetch_add(batch.len() as u64, Ordering::Relaxed);
                batch.clear();
                return;
            }
            Err(e) => {
                c.errors.fetch_add(1, Ordering::Relaxed);
                eprintln!(
                    "ipclog: database write failed (attempt {}): {e}",
                    attempt + 1
                );
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }
    c.dropped.fetch_add(batch.len() as u64, Ordering::Relaxed);
    c.write_dropped
        .fetch_add(batch.len() as u64, Ordering::Relaxed);
    batch.clear();
}

/// Several sinks at once.
#[derive(Default)]
pub struct FanOut {
    pub line_log: Option<LineLog>,
    pub others: Vec<Box<dyn EventSink + Send>>,
    pub db: Option<DbSink>,
    /// Database drops already said in a P line.
    db_dropped_said: u64,
    /// When the last drop line was written (at most one every few seconds).
    db_dropped_said_at: Option<std::time::Instant>,
}

/// How a run's output went, for the exit status and the last words on standard error.
#[derive(Debug, Default)]
pub struct RunOutcome {
    /// One line per sink that failed to write something, with exact counts.
    pub not_written: Vec<String>,
    /// Other losses to say at the end (a live source's queue drops), not write failures.
    pub notes: Vec<String>,
}

impl RunOutcome {
    /// Says on standard error what was not written; 1 when anything was not, else `code`.
    /// An output pipe its reader closed is no failure (`ipclog -r f | head` exits 0).
    pub fn exit_code(&self, code: i32) -> i32 {
        for l in self.notes.iter().chain(&self.not_written) {
            eprintln!("ipclog: {l}");
        }
        if code == 0 && !self.not_written.is_empty() {
            1
        } else {
            code
        }
    }
}

impl FanOut {
    /// H and I lines go to the line log only (they describe its columns and interfaces).
    pub fn raw_line(&mut self, line: &str) {
        if let Some(l) = &mut self.line_log {
            l.raw_line(line);
        }
    }

    fn errors_without_db(&self) -> u64 {
        self.line_log.as_ref().map_or(0, |l| l.errors())
            + self.others.iter().map(|s| s.errors()).sum::<u64>()
    }

    /// Events the database did not get (queue full, or a batch that kept failing).
    pub fn db_dropped(&self) -> u64 {
        self.db.as_ref().map_or(0, |d| d.dropped())
    }

    /// Writes a `P … dropped N events (database …)` line for drops not said yet, so a loss
    /// lands in the log on the day it happened (constat counts these lines).
    fn say_db_drops(&mut self, now: DateTime<Utc>, force: bool) {
        let d = self.db_dropped();
        if d <= self.db_dropped_said {
            return;
        }
        let due = self
            .db_dropped_said_at
            .is_none_or(|t| t.elapsed() >= Duration::from_secs(2));
        if force || due {
            let n = d - self.db_dropped_said;
            self.db_dropped_said = d;
            self.db_dropped_said_at = Some(std::time::Instant::now());
            self.program(
                now,
                &format!("dropped {n} events (database: queue full or write failed)"),
            );
        }
    }

    /// Ends a run: the database thread finishes its queue and records the run, then the
    /// `P ... ipclog stopped, N errors` line (N = write errors of all sinks plus
    /// `extra_errors`), preceded by a P line if the database missed events. `times` are the
    /// run's start and end on the log's clock (packet time for a capture); the database's
    /// run row gets them too.
    pub fn finish(
        &mut self,
        extra_errors: u64,
        lost: u64,
        dropped: u64,
        times: RunTimes,
    ) -> RunOutcome {
        self.flush();
        let now = times.stopped;
        let mut errors = self.errors_without_db() + extra_errors;
        if let Some(db) = &mut self.db {
            db.finish(times, errors, lost, dropped);
            errors += db.counters.errors.load(Ordering::Relaxed);
        }
        self.say_db_drops(now, true);
        self.program(now, &format!("ipclog stopped, {errors} errors"));
        self.flush();
        let mut not_written: Vec<String> = Vec::new();
        if let Some(l) = &self.line_log {
            not_written.extend(l.not_written());
        }
        not_written.extend(self.others.iter().filter_map(|s| s.not_written()));
        let mut notes = Vec::new();
        if let Some(d) = &self.db {
            not_written.extend(d.not_written());
            notes.extend(d.queue_dropped_note());
        }
        RunOutcome { not_written, notes }
    }
}

/// A run's start (when known on the log's clock) and end.
#[derive(Debug, Clone, Copy)]
pub struct RunTimes {
    /// For a capture: its first packet; `None` keeps the wall-clock start the run row has.
    pub started: Option<DateTime<Utc>>,
    pub stopped: DateTime<Utc>,
}

impl RunTimes {
    pub fn now() -> RunTimes {
        RunTimes {
            started: None,
            stopped: Utc::now(),
        }
    }
}

impl EventSink for FanOut {
    fn event(&mut self, ev: &ConnEvent) {
        if let Some(l) = &mut self.line_log {
            l.event(ev);
        }
        for s in &mut self.others {
            s.event(ev);
        }
        if let Some(d) = &mut self.db {
            d.event(ev);
        }
    }

    fn program(&mut self, ts: DateTime<Utc>, message: &str) {
        if let Some(l) = &mut self.line_log {
            l.program(ts, message);
        }
        for s in &mut self.others {
            s.program(ts, message);
        }
    }

    fn flush(&mut self) {
        if self.db.is_some() {
            self.say_db_drops(Utc::now(), false);
        }
        if let Some(l) = &mut self.line_log {
            l.flush();
        }
        for s in &mut self.others {
            s.flush();
        }
    }

    fn errors(&self) -> u64 {
        self.line_log.as_ref().map_or(0, |l| l.errors())
            + self.others.iter().map(|s| s.errors()).sum::<u64>()
            + self.db.as_ref().map_or(0, |d| d.errors())
    }
}

/// An address or network for `--host`.
#[derive(Debug, Clone, Copy)]
pub struct Cidr {
    addr: IpAddr,
    len: u8,
}

impl Cidr {
    pub fn parse(s: &str) -> Result<Cidr, String> {
        let (a, l) = s.split_once('/').unwrap_or((s, ""));
        let addr: IpAddr = a
            .parse()
            .map_err(|_| format!("--host {s}: not an IP address"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let len = if l.is_empty() {
            max
        } else {
            l.parse::<u8>()
                .ok()
                .filter(|&n| n <= max)
                .ok_or_else(|| format!("--host {s}: prefix length must be 0..={max}"))?
        };
        Ok(Cidr { addr, len })
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip) {
            (IpAddr::V4(n), IpAddr::V4(a)) => {
                let mask = if self.len == 0 {
                    0
                } else {
                    u32::MAX << (32 - self.len)
                };
                u32::from(n) & mask == u32::from(a) & mask
            }
            (IpAddr::V6(n), IpAddr::V6(a)) => {
                let mask = if self.len == 0 {
                    0
                } else {
                    u128::MAX << (128 - self.len)
                };
                u128::from(n) & mask == u128::from(a) & mask
            }
            _ => false,
        }
    }
}

/// The protocol / port / address / interface filters; an empty list lets everything through.
#[derive(Debug, Default, Clone)]
pub struct Filter {
    pub protos: HashSet<u8>,
    pub ports: HashSet<u16>,
    pub hosts: Vec<Cidr>,
    pub ifaces: HashSet<String>,
}

impl Filter {
    pub fn new(
        protos: &[String],
        ports: &[u16],
        hosts: &[String],
        ifaces: &[String],
    ) -> Result<Filter, String> {
        let protos = protos
            .iter()
            .map(|p| proto_from_name(p).ok_or_else(|| format!("--proto {p}: unknown protocol")))
            .collect::<Result<_, _>>()?;
        let hosts = hosts
            .iter()
            .map(|h| Cidr::parse(h))
            .collect::<Result<_, _>>()?;
        Ok(Filter {
            protos,
            ports: ports.iter().copied().collect(),
            hosts,
            ifaces: ifaces.iter().cloned().collect(),
        })
    }

    pub fn matches(&self, ev: &ConnEvent) -> bool {
        if !self.protos.is_empty() && !self.protos.contains(&ev.proto) {
            return false;
        }
        let mut ports = [ev.orig.sport, ev.orig.dport, None, None];
        let mut addrs = [ev.orig.src, ev.orig.dst, ev.orig.src, ev.orig.dst];
        if let Some(r) = ev.reply {
            ports[2] = r.sport;
            ports[3] = r.dport;
            addrs[2] = r.src;
            addrs[3] = r.dst;
        }
        if !self.ports.is_empty() && !ports.iter().flatten().any(|p| self.ports.contains(p)) {
            return false;
        }
        if !self.hosts.is_empty()
            && !addrs
                .iter()
                .any(|a| self.hosts.iter().any(|c| c.contains(*a)))
        {
            return false;
        }
        if !self.ifaces.is_empty() {
            let hit = [&ev.src_iface, &ev.dst_iface]
                .into_iter()
                .flatten()
                .any(|i| self.ifaces.contains(i));
            if !hit {
                return false;
            }
        }
        true
    }
}

/// Passes matching events on; program messages always pass.
pub struct Filtered<S> {
    pub filter: Filter,
    pub inner: S,
}

impl<S: EventSink> EventSink for Filtered<S> {
    fn event(&mut self, ev: &ConnEvent) {
        if self.filter.matches(ev) {
            self.inner.event(ev);
        }
    }

    fn program(&mut self, ts: DateTime<Utc>, message: &str) {
        self.inner.program(ts, message);
    }

    fn flush(&mut self) {
        self.inner.flush();
    }

    fn errors(&self) -> u64 {
        self.inner.errors()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shared::{FlowTuple, Source};
    use std::sync::Mutex;

    /// A writer that fails while `fail` is set, like a full disk.
    struct Flaky {
        fail: Arc<Mutex<bool>>,
        data: Arc<Mutex<Vec<u8>>>,
    }

    impl Write for Flaky {
        fn write(&mut self, b: &[u8]) -> io::Result<usize> {
            if *self.fail.lock().unwrap() {
                return Err(io::Error::from_raw_os_error(libc::ENOSPC));
            }
            self.data.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn write_errors_are_counted_and_writing_resumes() {
        let fail = Arc::new(Mutex::new(false));
        let data = Arc::new(Mutex::new(Vec::new()));
        let mut out = TextOut::from_writer(Box::new(Flaky {
            fail: fail.clone(),
            data: data.clone(),
        }));
        out.line("one");
        out.flush();
        *fail.lock().unwrap() = true;
        out.line("two");
        out.line("three");
        out.flush();
        assert_eq!((out.errors(), out.lines_lost), (1, 2));
        *fail.lock().unwrap() = false;
        out.line("four");
        out.flush();
        assert_eq!(
            String::from_utf8(data.lock().unwrap().clone()).unwrap(),
            "one\nfour\n"
        );
        assert_eq!(out.errors(), 1);
    }

    fn ev() -> ConnEvent {
        let mut e = ConnEvent::new(
            EventKind::Close,
            Utc::now(),
            Source::Conntrack,
            1,
            6,
            FlowTuple::new(
                "10.0.0.1".parse().unwrap(),
                "10.0.1.1".parse().unwrap(),
                Some(40000),
                Some(80),
            ),
        );
        e.reply = Some(FlowTuple::new(
            "10.0.1.1".parse().unwrap(),
            "192.168.0.1".parse().unwrap(),
            Some(80),
            Some(40000),
        ));
        e.src_iface = Some("eth0".into());
        e.duration = Some(2.0);
        e
    }

    #[test]
    fn filters() {
        let f = |p: &[&str], ports: &[u16], h: &[&str], i: &[&str]| {
            let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
            Filter::new(&s(p), ports, &s(h), &s(i)).unwrap()
        };
        let e = ev();
        assert!(f(&[], &[], &[], &[]).matches(&e));
        assert!(f(&["tcp"], &[], &[], &[]).matches(&e));
        assert!(!f(&["udp", "1"], &[], &[], &[]).matches(&e));
        assert!(f(&[], &[80], &[], &[]).matches(&e));
        assert!(!f(&[], &[81], &[], &[]).matches(&e));
        assert!(f(&[], &[], &["192.168.0.0/16"], &[]).matches(&e));
        assert!(!f(&[], &[], &["172.16.0.0/12", "::1"], &[]).matches(&e));
        assert!(f(&[], &[], &[], &["eth0"]).matches(&e));
        assert!(!f(&[], &[], &[], &["eth1"]).matches(&e));
        assert!(Filter::new(&["bogus".into()], &[], &[], &[]).is_err());
        assert!(Filter::new(&[], &[], &["10.0.0.0/33".into()], &[]).is_err());
    }

    #[test]
    fn json_has_zeek_names_and_start_ts() {
        let e = ev();
        let v = event_json(&e, true);
        assert_eq!(v["id.orig_h"], "10.0.0.1");
        assert_eq!(v["id.resp_p"], 80);
        assert_eq!(v["proto"], "tcp");
        assert_eq!(v["event"], "close");
        assert_eq!(v["nat_src_h"], "192.168.0.1");
        let ts = v["ts"].as_f64().unwrap();
        assert!((v["event_ts"].as_f64().unwrap() - ts - 2.0).abs() < 1e-6);
    }

    #[test]
    fn compact_keeps_only_the_last_update_before_a_close() {
        let mk = |kind, id: u64, state| {
            let mut e = ev();
            e.kind = kind;
            e.conn_id = id;
            e.state = state;
            e
        };
        use shared::TcpState::*;
        let t = |s| shared::ConnState::Tcp(s);
        let mut b = vec![
            mk(EventKind::Open, 1, t(SynSent)),
            mk(EventKind::Update, 1, t(Established)),
            mk(EventKind::Open, 2, t(SynSent)),
            mk(EventKind::Update, 1, t(FinWait)),
            mk(EventKind::Update, 2, t(Established)),
            mk(EventKind::Update, 1, t(TimeWait)),
            mk(EventKind::Close, 1, t(TimeWait)),
        ];
        compact(&mut b);
        let got: Vec<(EventKind, u64)> = b.iter().map(|e| (e.kind, e.conn_id)).collect();
        assert_eq!(
            got,
            vec![
                (EventKind::Open, 1),
                (EventKind::Open, 2),
                (EventKind::Update, 2),
                (EventKind::Close, 1)
            ]
        );
    }

    #[test]
    fn syslog_lines_drop_the_timestamp() {
        assert_eq!(
            without_ts("O 2004-08-05-16:41:37 udp  ppp0 x"),
            "O udp  ppp0 x"
        );
    }
}
