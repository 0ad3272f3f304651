//! The SQLite history (the `store` crate), written in batches by a thread of its own so a slow
//! disk never stalls the source. With a live source, events that do not fit in the bounded
//! queue are dropped and counted (in P lines, the runs table and the exit status); with a
//! file source the sender waits. The runs row records the run: started when the database is
//! opened, its loss kept up to date while running, finished with the run's figures.

use std::collections::HashSet;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use chrono::{DateTime, Utc};

use shared::outfile;
use shared::packet::PacketEvent;
use shared::sink::{EventSink, RunEnd, RunInfo, SinkStats};
use shared::{ConnEvent, EventKind};
use store::Store;

use super::with_symlink_hint;
use crate::error::Error;

/// Opens and checks the database at `path` (so a bad one is a start-up error), and starts its
/// runs row with `run`. Done before privileges are dropped: SQLite creates its journal files
/// next to the database on the first write.
pub fn open_store(path: &Path, policy: &outfile::Policy, run: &RunInfo) -> Result<Store, Error> {
    let mut s = check_store(path, policy)?;
    s.start_run(run.started, run.source.as_str(), run.command)
        .map_err(|e| Error::Start(format!("ipclog: {}: cannot write: {e}", path.display())))?;
    Ok(s)
}

/// Opens and checks the database at `path` without starting a run (a daemon checks before it
/// detaches and opens again after: SQLite connections must not cross a fork).
pub fn check_store(path: &Path, policy: &outfile::Policy) -> Result<Store, Error> {
    Store::open_with(path, policy)
        .map_err(|e| Error::Start(with_symlink_hint(format!("ipclog: {e}"))))
}

enum DbMsg {
    Event(Box<ConnEvent>),
    Packet(Box<PacketEvent>),
    Finish(RunEnd),
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
    /// Events the source lost so far (kept in the runs table while running).
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
}

impl Drop for DbSink {
    fn drop(&mut self) {
        self.tx.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl DbSink {
    /// Queues one message for the database thread: waits or drops (and counts) as
    /// `when_full` says.
    fn queue(&mut self, msg: impl FnOnce() -> DbMsg) {
        if let Some(tx) = &self.tx {
            if self.when_full == WhenFull::Wait {
                self.counters.depth.fetch_add(1, Ordering::Relaxed);
                if tx.send(msg()).is_err() {
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
            if tx.try_send(msg()).is_err() {
                self.counters.depth.fetch_sub(1, Ordering::Relaxed);
                self.counters.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

impl EventSink for DbSink {
    /// A `packets` row, queued like connection events.
    fn packet(&mut self, p: &PacketEvent) {
        self.queue(|| DbMsg::Packet(Box::new(p.clone())));
    }

    fn event(&mut self, ev: &ConnEvent) {
        self.queue(|| DbMsg::Event(Box::new(ev.clone())));
    }

    /// The runs row was started when the database was opened (see [`open_store`]).
    fn start(&mut self, _run: &RunInfo) {}

    fn program(&mut self, _ts: DateTime<Utc>, _message: &str) {}

    fn source_lost(&mut self, total: u64) {
        self.counters.lost.store(total, Ordering::Relaxed);
    }

    fn flush(&mut self) {}

    /// Writes what is queued and records the run's end and figures (`end.errors`: the other
    /// sinks'; this sink adds its own).
    fn finish(&mut self, end: &RunEnd) {
        if let Some(tx) = self.tx.take() {
            let _ = tx.send(DbMsg::Finish(*end));
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }

    fn stats(&self) -> SinkStats {
        SinkStats {
            queued: self.counters.depth.load(Ordering::Relaxed),
            dropped: self.dropped(),
        }
    }

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
    // events; at +10 it starved under a flood (BENCHMARKS.md, "flood without loss").
    crate::daemon::set_thread_nice(0);
    // Large enough that under a flood the open and the close of a short-lived flow usually
    // land in the same batch, which the store writes as one INSERT (cheaper per event, see
    // BENCHMARKS.md, store_bench); the cache and checkpoint settings are the store's own.
    const BATCH: usize = 65536;
    let mut batch: Vec<ConnEvent> = Vec::with_capacity(BATCH);
    let mut packets: Vec<PacketEvent> = Vec::new();
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
                DbMsg::Packet(p) => {
                    c.depth.fetch_sub(1, Ordering::Relaxed);
                    packets.push(*p)
                }
                DbMsg::Finish(end) => finish = Some(end),
            }
            if batch.len() + packets.len() >= BATCH || finish.is_some() {
                break;
            }
            next = rx.try_recv().ok();
        }
        if !packets.is_empty() {
            write_packets_with_retry(&mut store, &mut packets, &c);
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
    while let Ok(m) = rx.try_recv() {
        match m {
            DbMsg::Event(e) => batch.push(*e),
            DbMsg::Packet(p) => packets.push(*p),
            DbMsg::Finish(_) => break,
        }
    }
    if !packets.is_empty() {
        write_packets_with_retry(&mut store, &mut packets, &c);
    }
    if !batch.is_empty() {
        write_with_retry(&mut store, &mut batch, &c);
    }
    if let Some(end) = finish {
        let db_errors = c.errors.load(Ordering::Relaxed);
        let dropped = end.dropped + c.dropped.load(Ordering::Relaxed);
        let r = store.finish_run(
            end.started,
            end.stopped,
            end.errors + db_errors,
            end.lost,
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
    let mut later: HashSet<shared::event::ConnKey> = HashSet::new();
    let mut keep = vec![true; batch.len()];
    for (i, ev) in batch.iter().enumerate().rev() {
        let k = ev.key();
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

/// Writes a batch of logged packets, retried and counted as connection batches are.
fn write_packets_with_retry(store: &mut Store, packets: &mut Vec<PacketEvent>, c: &DbCounters) {
    retried(packets, c, |rows| store.write_packets(rows));
}

/// Writes a batch; a failed batch (disk full, locked by a reader for too long) is retried a
/// few times, then dropped and counted, so the thread never stops.
fn write_with_retry(store: &mut Store, batch: &mut Vec<ConnEvent>, c: &DbCounters) {
    let before = batch.len() as u64;
    compact(batch);
    c.written
        .fetch_add(before - batch.len() as u64, Ordering::Relaxed);
    retried(batch, c, |rows| store.write_batch(rows));
}

/// Runs `write` on `rows` up to three times; what it could not write is dropped and counted.
/// `rows` is empty afterwards either way.
fn retried<T, E: std::fmt::Display>(
    rows: &mut Vec<T>,
    c: &DbCounters,
    mut write: impl FnMut(&[T]) -> Result<(), E>,
) {
    for attempt in 0..3 {
        match write(rows) {
            Ok(()) => {
                c.written.fetch_add(rows.len() as u64, Ordering::Relaxed);
                rows.clear();
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
    c.dropped.fetch_add(rows.len() as u64, Ordering::Relaxed);
    c.write_dropped
        .fetch_add(rows.len() as u64, Ordering::Relaxed);
    rows.clear();
}

#[cfg(test)]
mod tests {
    use super::*;
    use shared::{FlowTuple, Source};

    fn ev(kind: EventKind, id: u64, state: shared::ConnState) -> ConnEvent {
        let mut e = ConnEvent::new(
            kind,
            Utc::now(),
            Source::Conntrack,
            id,
            6,
            FlowTuple::new(
                "10.0.0.1".parse().unwrap(),
                "10.0.1.1".parse().unwrap(),
                Some(40000),
                Some(80),
            ),
        );
        e.state = state;
        e
    }

    #[test]
    fn compact_keeps_only_the_last_update_before_a_close() {
        use shared::TcpState::*;
        let t = |s| shared::ConnState::Tcp(s);
        let mut b = vec![
            ev(EventKind::Open, 1, t(SynSent)),
            ev(EventKind::Update, 1, t(Established)),
            ev(EventKind::Open, 2, t(SynSent)),
            ev(EventKind::Update, 1, t(FinWait)),
            ev(EventKind::Update, 2, t(Established)),
            ev(EventKind::Update, 1, t(TimeWait)),
            ev(EventKind::Close, 1, t(TimeWait)),
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
}
