//! What the sinks that send to another machine share (IPFIX to a collector, PostgreSQL): a
//! thread of their own behind a bounded queue (as the SQLite sink's), and a bounded spool the
//! thread puts what it could not send into while the other end is down or refuses it. The
//! spool is forwarded, oldest first, before anything newer, once the other end is back
//! (retried with a back-off from 1 s doubling to 60 s); what does not fit in it is dropped and
//! counted (`P … dropped N events (…)` lines, the exit status). A run's end waits at most
//! `--flush-timeout` for the last of it, then says what was left.
//!
//! The thread turns events into the other end's items first (an IPFIX data record, a row
//! change), so the spool keeps items, not events: what is spooled is exactly what would have
//! been sent, and a spool file left by an earlier run is forwarded as it is.

use std::collections::VecDeque;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use rusqlite::Connection;

use shared::outfile::Policy;
use shared::sink::{EventSink, RunEnd, RunInfo, SinkStats};
use shared::ConnEvent;

use super::WhenFull;

/// One thing the other end takes: an encoded IPFIX data record, a row change.
pub type Item = Vec<u8>;

/// The other end, as the sending thread drives it.
pub trait Remote: Send + 'static {
    /// Turns one event into what is sent for it (nothing, for most events of an IPFIX
    /// export).
    fn encode(&mut self, ev: &ConnEvent, out: &mut Vec<Item>);
    /// Connects again after a failure.
    fn connect(&mut self) -> Result<(), String>;
    /// Sends `items` in order: all of them, or none and why.
    fn send(&mut self, items: &[Item]) -> Result<(), Failure>;
    /// Keeps the run's figures where the other end keeps runs (PostgreSQL), every second or
    /// so while it is up.
    fn update_run(&mut self, _errors: u64, _lost: u64, _dropped: u64) {}
    /// Records the run's end, once everything that could be sent was.
    fn finish(&mut self, _end: &RunEnd, _errors: u64, _dropped: u64) -> Result<(), String> {
        Ok(())
    }
}

/// Why a send failed.
#[derive(Debug)]
pub enum Failure {
    /// The other end is down, unreachable or too slow: the items wait in the spool.
    Down(String),
    /// It is up and refused these items (a constraint, a bad value): sending them again would
    /// fail again, so they are dropped and counted, as the SQLite writer drops a batch that
    /// keeps failing.
    Rejected(String),
}

/// Where items wait while the other end is down: memory, or an SQLite file that outlives the
/// run (`--spool`). Bounded either way: `max` items.
pub struct Spool {
    kind: SpoolKind,
    len: u64,
    max: u64,
}

enum SpoolKind {
    Memory(VecDeque<Item>),
    /// The file's table keeps each sink's items apart (`sink`), so one file serves both.
    File {
        conn: Connection,
        sink: &'static str,
    },
}

impl Spool {
    pub fn memory(max: u64) -> Spool {
        Spool {
            kind: SpoolKind::Memory(VecDeque::new()),
            len: 0,
            max,
        }
    }

    /// Opens (creating as outputs are created: no symbolic link, 0640, given to `--user`)
    /// the spool file at `path`; `sink` names this sink's items in it.
    pub fn open(
        path: &Path,
        policy: &Policy,
        sink: &'static str,
        max: u64,
    ) -> Result<Spool, String> {
        let shown = shared::text::escaped(&path.to_string_lossy()).into_owned();
        let conn = store::open_sqlite(path, policy, &shown).map_err(|e| e.to_string())?;
        let sql_err = |e: rusqlite::Error| format!("{shown}: spool: {e}");
        conn.busy_timeout(Duration::from_secs(5)).map_err(sql_err)?;
        conn.execute_batch(
            "PRAGMA journal_mode = WAL;
             CREATE TABLE IF NOT EXISTS spool (
                 id   INTEGER PRIMARY KEY,
                 sink TEXT NOT NULL,
                 item BLOB NOT NULL
             );
             CREATE INDEX IF NOT EXISTS spool_sink ON spool(sink, id);",
        )
        .map_err(|e| format!("{shown}: not a spool file ({e})"))?;
        let len: i64 = conn
            .query_row("SELECT count(*) FROM spool WHERE sink = ?1", [sink], |r| {
                r.get(0)
            })
            .map_err(sql_err)?;
        Ok(Spool {
            kind: SpoolKind::File { conn, sink },
            len: len as u64,
            max,
        })
    }

    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Appends what fits; returns how many did not (dropped).
    fn push(&mut self, items: &[Item]) -> Result<u64, String> {
        let room = self.max.saturating_sub(self.len) as usize;
        let (keep, over) = items.split_at(items.len().min(room));
        match &mut self.kind {
            SpoolKind::Memory(q) => q.extend(keep.iter().cloned()),
            SpoolKind::File { conn, sink } => {
                let tx = conn.transaction().map_err(|e| format!("spool: {e}"))?;
                {
                    let mut st = tx
                        .prepare_cached("INSERT INTO spool (sink, item) VALUES (?1, ?2)")
                        .map_err(|e| format!("spool: {e}"))?;
                    for it in keep {
                        st.execute(rusqlite::params![*sink, it])
                            .map_err(|e| format!("spool: {e}"))?;
                    }
                }
                tx.commit().map_err(|e| format!("spool: {e}"))?;
            }
        }
        self.len += keep.len() as u64;
        Ok(over.len() as u64)
    }

    /// The oldest `n` items (and the file's id of the last one).
    fn front(&mut self, n: usize) -> Result<(Vec<Item>, i64), String> {
        match &mut self.kind {
            SpoolKind::Memory(q) => Ok((q.iter().take(n).cloned().collect(), 0)),
            SpoolKind::File { conn, sink } => {
                let mut st = conn
                    .prepare_cached(
                        "SELECT id, item FROM spool WHERE sink = ?1 ORDER BY id LIMIT ?2",
                    )
                    .map_err(|e| format!("spool: {e}"))?;
                let mut rows = st
                    .query(rusqlite::params![*sink, n as i64])
                    .map_err(|e| format!("spool: {e}"))?;
                let (mut items, mut last) = (Vec::new(), 0);
                while let Some(r) = rows.next().map_err(|e| format!("spool: {e}"))? {
                    last = r.get(0).map_err(|e| format!("spool: {e}"))?;
                    items.push(r.get(1).map_err(|e| format!("spool: {e}"))?);
                }
                Ok((items, last))
            }
        }
    }

    /// Forgets the `n` oldest items (sent), the last of them the file's `last`.
    fn pop(&mut self, n: usize, last: i64) -> Result<(), String> {
        match &mut self.kind {
            SpoolKind::Memory(q) => {
                q.drain(..n.min(q.len()));
            }
            SpoolKind::File { conn, sink } => {
                conn.execute(
                    "DELETE FROM spool WHERE sink = ?1 AND id <= ?2",
                    rusqlite::params![*sink, last],
                )
                .map_err(|e| format!("spool: {e}"))?;
            }
        }
        self.len = self.len.saturating_sub(n as u64);
        Ok(())
    }

    fn is_file(&self) -> bool {
        matches!(self.kind, SpoolKind::File { .. })
    }
}

/// Counters shared between a remote sink and its thread.
#[derive(Default)]
pub struct RemoteCounters {
    /// Events queued and not yet taken by the thread.
    depth: AtomicU64,
    /// Events that did not fit in the queue, and items that did not fit in the spool.
    dropped: AtomicU64,
    /// Failed sends (each one starts or continues an outage) and spool failures.
    errors: AtomicU64,
    /// Items sent.
    pub sent: AtomicU64,
    /// Items in the spool.
    spooled: AtomicU64,
    /// The source's loss so far (kept in the runs row while running).
    lost: AtomicU64,
    down: AtomicBool,
    /// The thread has ended.
    done: AtomicBool,
}

enum Msg {
    Event(Box<ConnEvent>),
    Finish(RunEnd, u64),
}

/// A sink that sends to another machine: see the module's documentation.
pub struct RemoteSink {
    tx: Option<SyncSender<Msg>>,
    capacity: u64,
    when_full: WhenFull,
    thread: Option<JoinHandle<()>>,
    counters: Arc<RemoteCounters>,
    shown: String,
    /// What the end of the run left unsent (set by the thread as it stops).
    left: Arc<Mutex<Option<(String, bool)>>>,
    flush_timeout: Duration,
}

/// How the thread runs: its queue, the spool's bound and the run's end's patience.
pub struct RemoteOptions {
    pub capacity: usize,
    pub when_full: WhenFull,
    pub flush_timeout: Duration,
}

impl RemoteSink {
    /// Starts the thread for `remote` (already connected once: a start-up check) with its
    /// spool; `shown` names it in messages (`ipfix 192.0.2.1:4739/tcp`).
    pub fn start(
        remote: Box<dyn Remote>,
        spool: Spool,
        shown: String,
        o: RemoteOptions,
    ) -> RemoteSink {
        let (tx, rx) = mpsc::sync_channel(o.capacity);
        let counters = Arc::new(RemoteCounters::default());
        counters.spooled.store(spool.len(), Ordering::Relaxed);
        let left = Arc::new(Mutex::new(None));
        let t = Thread {
            remote,
            spool,
            c: counters.clone(),
            shown: shown.clone(),
            up: true,
            backoff: Duration::from_secs(1),
            next_try: Instant::now(),
            flush_timeout: o.flush_timeout,
            left: left.clone(),
        };
        let thread = std::thread::Builder::new()
            .name("ipclog-remote".into())
            .spawn(move || t.run(rx))
            .expect("spawn remote sink thread");
        RemoteSink {
            tx: Some(tx),
            capacity: o.capacity as u64,
            when_full: o.when_full,
            thread: Some(thread),
            counters,
            shown,
            left,
            flush_timeout: o.flush_timeout,
        }
    }

    fn dropped(&self) -> u64 {
        self.counters.dropped.load(Ordering::Relaxed)
    }
}

impl Drop for RemoteSink {
    fn drop(&mut self) {
        self.tx.take();
        if let Some(t) = self.thread.take() {
            // A thread stuck in a send to a server that does not answer is left behind.
            if self.counters.done.load(Ordering::Relaxed) {
                let _ = t.join();
            }
        }
    }
}

impl EventSink for RemoteSink {
    fn start(&mut self, _run: &RunInfo) {}

    fn event(&mut self, ev: &ConnEvent) {
        let Some(tx) = &self.tx else { return };
        let c = &self.counters;
        if self.when_full == WhenFull::Drop && c.depth.load(Ordering::Relaxed) >= self.capacity {
            c.dropped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        c.depth.fetch_add(1, Ordering::Relaxed);
        let msg = Msg::Event(Box::new(ev.clone()));
        let sent = match self.when_full {
            WhenFull::Wait => tx.send(msg).is_ok(),
            WhenFull::Drop => tx.try_send(msg).is_ok(),
        };
        if !sent {
            c.depth.fetch_sub(1, Ordering::Relaxed);
            c.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn program(&mut self, _ts: DateTime<Utc>, _message: &str) {}

    fn source_lost(&mut self, total: u64) {
        self.counters.lost.store(total, Ordering::Relaxed);
    }

    fn flush(&mut self) {}

    /// Sends what is queued and spooled, waiting at most `--flush-timeout` for the other end.
    /// A thread stuck in a send (a server that accepted the connection and stopped
    /// answering) is waited for a few seconds more than that, then left behind and said.
    fn finish(&mut self, end: &RunEnd) {
        let patience = self.flush_timeout + Duration::from_secs(5);
        let deadline = Instant::now() + patience;
        if let Some(tx) = self.tx.take() {
            let mut msg = Msg::Finish(*end, end.errors);
            loop {
                match tx.try_send(msg) {
                    Err(TrySendError::Full(m)) if Instant::now() < deadline => {
                        msg = m;
                        std::thread::sleep(Duration::from_millis(20));
                    }
                    _ => break,
                }
            }
        }
        let done = || self.counters.done.load(Ordering::Relaxed);
        while !done() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        match self.thread.take() {
            Some(t) if done() => {
                let _ = t.join();
            }
            Some(_) => {
                let c = &self.counters;
                let n = c.depth.load(Ordering::Relaxed) + c.spooled.load(Ordering::Relaxed);
                if let Ok(mut l) = self.left.lock() {
                    *l = Some((
                        format!(
                            "did not answer within {} s: gave up on it with {n} events not \
                             sent (and whatever its last send held)",
                            patience.as_secs_f64()
                        ),
                        false,
                    ));
                }
            }
            None => {}
        }
    }

    fn stats(&self) -> SinkStats {
        SinkStats {
            queued: self.counters.depth.load(Ordering::Relaxed)
                + self.counters.spooled.load(Ordering::Relaxed),
            dropped: self.dropped(),
        }
    }

    fn errors(&self) -> u64 {
        self.counters.errors.load(Ordering::Relaxed)
    }

    /// Items dropped, or left in a memory spool at the end, were not written.
    fn not_written(&self) -> Option<String> {
        let left = self.left.lock().ok().and_then(|l| l.clone());
        let dropped = self.dropped();
        let mut parts = Vec::new();
        if dropped > 0 {
            parts.push(format!(
                "{dropped} events dropped (queue or spool full, see --spool-max)"
            ));
        }
        if let Some((m, false)) = left {
            parts.push(m);
        }
        (!parts.is_empty()).then(|| format!("{}: {}", self.shown, parts.join("; ")))
    }
}

impl RemoteSink {
    /// Items left in a spool file at the end: not lost (the next run forwards them), said.
    pub fn note(&self) -> Option<String> {
        match self.left.lock().ok().and_then(|l| l.clone()) {
            Some((m, true)) => Some(format!("{}: {m}", self.shown)),
            _ => None,
        }
    }
}

struct Thread {
    remote: Box<dyn Remote>,
    spool: Spool,
    c: Arc<RemoteCounters>,
    shown: String,
    up: bool,
    backoff: Duration,
    next_try: Instant,
    flush_timeout: Duration,
    left: Arc<Mutex<Option<(String, bool)>>>,
}

/// Events taken from the queue at once: large, so that under load a short connection's open,
/// updates and close usually travel together (PostgreSQL writes them as one row change).
const BATCH: usize = 65536;
/// Spooled items sent at once.
const SPOOL_CHUNK: usize = 4096;

impl Thread {
    fn run(mut self, rx: Receiver<Msg>) {
        crate::daemon::set_thread_nice(0);
        let mut items: Vec<Item> = Vec::new();
        let mut finish = None;
        let mut last_run_update = Instant::now();
        loop {
            let mut next = match rx.recv_timeout(Duration::from_millis(200)) {
                Ok(m) => Some(m),
                Err(RecvTimeoutError::Timeout) => None,
                Err(RecvTimeoutError::Disconnected) => break,
            };
            let mut n = 0;
            while let Some(m) = next {
                match m {
                    Msg::Event(ev) => {
                        self.c.depth.fetch_sub(1, Ordering::Relaxed);
                        self.remote.encode(&ev, &mut items);
                        n += 1;
                    }
                    Msg::Finish(end, errors) => finish = Some((end, errors)),
                }
                if n >= BATCH || finish.is_some() {
                    break;
                }
                next = rx.try_recv().ok();
            }
            self.forward(&mut items, false);
            if self.up && last_run_update.elapsed() >= Duration::from_secs(1) {
                last_run_update = Instant::now();
                self.remote.update_run(
                    self.c.errors.load(Ordering::Relaxed),
                    self.c.lost.load(Ordering::Relaxed),
                    self.c.dropped.load(Ordering::Relaxed),
                );
            }
            if finish.is_some() {
                break;
            }
        }
        // Whatever is still queued (a disconnect without a Finish: the sink was dropped).
        while let Ok(m) = rx.try_recv() {
            match m {
                Msg::Event(ev) => self.remote.encode(&ev, &mut items),
                Msg::Finish(end, errors) => finish = Some((end, errors)),
            }
        }
        self.forward(&mut items, false);
        // The run's end: the spool is forwarded for at most the flush timeout, retrying at
        // once rather than after the back-off.
        let deadline = Instant::now() + self.flush_timeout;
        while !self.spool.is_empty() && Instant::now() < deadline {
            self.next_try = Instant::now();
            self.forward(&mut items, true);
            if !self.spool.is_empty() {
                std::thread::sleep(
                    Duration::from_millis(200).min(deadline - Instant::now().min(deadline)),
                );
            }
        }
        let mut left = None;
        if !self.spool.is_empty() {
            let n = self.spool.len();
            let secs = self.flush_timeout.as_secs_f64();
            left = Some(if self.spool.is_file() {
                (
                    format!("still down after {secs} s: {n} events left in the spool file, sent by the next run"),
                    true,
                )
            } else {
                (
                    format!("still down after {secs} s: {n} events not sent (no --spool file to keep them)"),
                    false,
                )
            });
        }
        if let Some((end, errors)) = finish {
            if self.up {
                let errors = errors + self.c.errors.load(Ordering::Relaxed);
                let dropped = end.dropped + self.c.dropped.load(Ordering::Relaxed);
                if let Err(e) = self.remote.finish(&end, errors, dropped) {
                    self.c.errors.fetch_add(1, Ordering::Relaxed);
                    eprintln!(
                        "ipclog: {}: cannot record the end of the run: {e}",
                        self.shown
                    );
                }
            } else if left.is_none() {
                left = Some((
                    "down at the end: the run's end was not recorded".into(),
                    false,
                ));
            }
        }
        if let Ok(mut l) = self.left.lock() {
            *l = left;
        }
        self.c.done.store(true, Ordering::Relaxed);
    }

    /// Sends the spool, then `items`, as far as the other end takes them; the rest goes to
    /// the spool.
    fn forward(&mut self, items: &mut Vec<Item>, finishing: bool) {
        if !self.up && Instant::now() >= self.next_try {
            match self.remote.connect() {
                Ok(()) => {
                    self.up = true;
                    self.backoff = Duration::from_secs(1);
                    self.c.down.store(false, Ordering::Relaxed);
                    eprintln!(
                        "ipclog: {}: back; forwarding {} spooled events",
                        self.shown,
                        self.spool.len()
                    );
                }
                Err(e) => self.failed(&e, false),
            }
        }
        // The spool first (in order), a bounded amount per round so new events keep being
        // taken from the queue meanwhile; all of it at the end of the run.
        let mut rounds = 0;
        while self.up && !self.spool.is_empty() && (finishing || rounds < 16) {
            rounds += 1;
            let (chunk, last) = match self.spool.front(SPOOL_CHUNK) {
                Ok(x) => x,
                Err(e) => {
                    self.c.errors.fetch_add(1, Ordering::Relaxed);
                    eprintln!("ipclog: {}: {e}", self.shown);
                    break;
                }
            };
            let sent = match self.remote.send(&chunk) {
                Ok(()) => {
                    self.c.sent.fetch_add(chunk.len() as u64, Ordering::Relaxed);
                    true
                }
                Err(Failure::Rejected(e)) => {
                    self.rejected(&e, chunk.len());
                    true
                }
                Err(Failure::Down(e)) => {
                    self.failed(&e, true);
                    false
                }
            };
            if sent {
                if let Err(e) = self.spool.pop(chunk.len(), last) {
                    self.c.errors.fetch_add(1, Ordering::Relaxed);
                    eprintln!("ipclog: {}: {e}", self.shown);
                    break;
                }
            }
        }
        if items.is_empty() {
            self.c.spooled.store(self.spool.len(), Ordering::Relaxed);
            return;
        }
        if self.up && self.spool.is_empty() {
            match self.remote.send(items) {
                Ok(()) => {
                    self.c.sent.fetch_add(items.len() as u64, Ordering::Relaxed);
                    items.clear();
                }
                Err(Failure::Rejected(e)) => {
                    self.rejected(&e, items.len());
                    items.clear();
                }
                Err(Failure::Down(e)) => self.failed(&e, true),
            }
        }
        if !items.is_empty() {
            match self.spool.push(items) {
                Ok(over) => {
                    self.c.dropped.fetch_add(over, Ordering::Relaxed);
                }
                Err(e) => {
                    self.c.errors.fetch_add(1, Ordering::Relaxed);
                    self.c
                        .dropped
                        .fetch_add(items.len() as u64, Ordering::Relaxed);
                    eprintln!("ipclog: {}: {e}", self.shown);
                }
            }
            items.clear();
        }
        self.c.spooled.store(self.spool.len(), Ordering::Relaxed);
    }

    /// The other end refused `n` items: dropped, counted, said.
    fn rejected(&mut self, e: &str, n: usize) {
        self.c.errors.fetch_add(1, Ordering::Relaxed);
        self.c.dropped.fetch_add(n as u64, Ordering::Relaxed);
        eprintln!(
            "ipclog: {}: {n} events refused, dropped: {}",
            self.shown,
            shared::text::escaped(e)
        );
    }

    /// A send or a reconnection failed: down until the next try, which comes later each time.
    fn failed(&mut self, e: &str, was_up: bool) {
        if was_up {
            // One error per outage, not per attempt to end it.
            self.c.errors.fetch_add(1, Ordering::Relaxed);
            eprintln!(
                "ipclog: {}: {}; spooling events until it is back",
                self.shown,
                shared::text::escaped(e)
            );
            self.backoff = Duration::from_secs(1);
        }
        self.up = false;
        self.c.down.store(true, Ordering::Relaxed);
        self.next_try = Instant::now() + self.backoff;
        self.backoff = (self.backoff * 2).min(Duration::from_secs(60));
    }
}
