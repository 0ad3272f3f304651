//! The conntrack source's two feeding threads and what they send the processor. The
//! **reader** only receives, decodes in place and queues plain `CtMsg`s (no allocation); when
//! the queue is full it drops and counts, and asks for a resync. The **dumper** dumps the
//! table at start (connections already open), every `--evict-every` seconds (which makes the
//! kernel send the DESTROY events of expired entries at once) and after any loss (resync).

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::mpsc::{SyncSender, TrySendError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::ctnetlink::{CtMsg, Item, Messages};
use super::socket::{self, EventSocket};
use super::{now_ns, TICK};
use crate::daemon::stopping;
use crate::error::Error;

/// Why the table is being dumped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DumpReason {
    Start,
    Resync,
}

/// What the reader and dumper send to the processor.
pub enum Msg {
    Event {
        m: CtMsg,
        at: u64,
    },
    DumpBegin(DumpReason),
    Dumped {
        m: CtMsg,
        at: u64,
    },
    DumpEnd(DumpReason, Result<u64, Error>),
    /// Events the kernel dropped on our socket.
    Lost(u64),
    /// Events the reader dropped because the queue was full.
    QueueDropped(u64),
    /// The reader cannot go on.
    Fatal(String),
    /// From the NFLOG thread (`--nflog G --conntrack`).
    Nflog(crate::nflog::Side),
}

/// Counters shared by the threads (the processor's too).
#[derive(Default)]
pub struct Shared {
    pub events: AtomicU64,
    pub lost: AtomicU64,
    pub queue_dropped: AtomicU64,
    pub decode_errors: AtomicU64,
    pub depth: AtomicI64,
    pub resync: AtomicBool,
    pub unknown_attrs: AtomicU64,
}

pub(super) fn queue(tx: &SyncSender<Msg>, sh: &Shared, msg: Msg) -> bool {
    match tx.try_send(msg) {
        Ok(()) => {
            sh.depth.fetch_add(1, Ordering::Relaxed);
            true
        }
        Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => false,
    }
}

pub(super) fn queue_blocking(tx: &SyncSender<Msg>, sh: &Shared, msg: Msg) -> bool {
    if tx.send(msg).is_ok() {
        sh.depth.fetch_add(1, Ordering::Relaxed);
        true
    } else {
        false
    }
}

/// The reader thread: receives and decodes without allocating, queues every message, and
/// counts what it could not queue or the kernel dropped.
pub fn reader(sock: EventSocket, tx: SyncSender<Msg>, sh: Arc<Shared>) {
    crate::daemon::set_thread_nice(-10);
    let mut buf = vec![0u8; 1 << 16];
    let mut last_drops = sock.drops().unwrap_or(0);
    let mut last_check = Instant::now();
    let mut pending_lost = 0u64;
    let mut pending_dropped = 0u64;
    let mut last_lost_report = Instant::now() - Duration::from_secs(1);
    let mut last_drop_report = Instant::now() - Duration::from_secs(1);
    // After SIGTERM, what the kernel already queued for us is still read (without waiting).
    let mut draining = false;
    loop {
        if !draining && stopping() {
            draining = true;
        }
        let mut overflow = false;
        match sock.recv(&mut buf, !draining) {
            Ok(0) if draining => break,
            Ok(0) => {}
            Ok(n) => {
                let at = now_ns();
                for item in Messages::new(&buf[..n]) {
                    match item {
                        Ok(Item::Conntrack(m)) => {
                            sh.events.fetch_add(1, Ordering::Relaxed);
                            if !queue(&tx, &sh, Msg::Event { m, at }) {
                                pending_dropped += 1;
                            }
                        }
                        Ok(_) => {}
                        Err(_) => {
                            sh.decode_errors.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
            }
            Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => overflow = true,
            Err(e) => {
                let _ = tx.send(Msg::Fatal(format!("conntrack event socket: {e}")));
                return;
            }
        }
        // The exact number of dropped messages is the socket's Drops counter; ENOBUFS only
        // says that some were dropped. Check on ENOBUFS and once a second.
        if overflow || last_check.elapsed() >= Duration::from_secs(1) {
            last_check = Instant::now();
            if let Some(d) = sock.drops() {
                if d > last_drops {
                    pending_lost += d - last_drops;
                    last_drops = d;
                }
            }
            if overflow && pending_lost == 0 {
                // ENOBUFS without a visible counter: at least one was lost.
                pending_lost = 1;
            }
        }
        // One P line per second of loss, not one per ENOBUFS; the resync follows it.
        if pending_lost > 0
            && last_lost_report.elapsed() >= Duration::from_secs(1)
            && queue(&tx, &sh, Msg::Lost(pending_lost))
        {
            sh.lost.fetch_add(pending_lost, Ordering::Relaxed);
            pending_lost = 0;
            last_lost_report = Instant::now();
            sh.resync.store(true, Ordering::Relaxed);
        }
        if pending_dropped > 0
            && last_drop_report.elapsed() >= Duration::from_secs(1)
            && queue(&tx, &sh, Msg::QueueDropped(pending_dropped))
        {
            last_drop_report = Instant::now();
            sh.queue_dropped
                .fetch_add(pending_dropped, Ordering::Relaxed);
            pending_dropped = 0;
            sh.resync.store(true, Ordering::Relaxed);
        }
    }
    // Whatever could not be reported yet is still counted (and written by the processor).
    if pending_lost > 0 && queue_blocking(&tx, &sh, Msg::Lost(pending_lost)) {
        sh.lost.fetch_add(pending_lost, Ordering::Relaxed);
        pending_lost = 0;
    }
    sh.lost.fetch_add(pending_lost, Ordering::Relaxed);
    if pending_dropped > 0 && queue_blocking(&tx, &sh, Msg::QueueDropped(pending_dropped)) {
        sh.queue_dropped
            .fetch_add(pending_dropped, Ordering::Relaxed);
        pending_dropped = 0;
    }
    sh.queue_dropped
        .fetch_add(pending_dropped, Ordering::Relaxed);
}

fn dump_into(tx: &SyncSender<Msg>, sh: &Shared, reason: DumpReason) -> bool {
    if !queue_blocking(tx, sh, Msg::DumpBegin(reason)) {
        return false;
    }
    let mut alive = true;
    let r = socket::dump(|m| {
        if alive {
            alive = queue_blocking(tx, sh, Msg::Dumped { m, at: now_ns() });
        }
    });
    alive && queue_blocking(tx, sh, Msg::DumpEnd(reason, r))
}

/// The dumper thread: the table at start, after a loss (resync), and the periodic eviction.
pub fn dumper(tx: SyncSender<Msg>, sh: Arc<Shared>, evict_every: Option<Duration>) {
    // Behind the reader, with the processor (it inherits the reader's priority from main).
    crate::daemon::set_thread_nice(-5);
    if !dump_into(&tx, &sh, DumpReason::Start) {
        return;
    }
    let mut last_evict = Instant::now();
    while !stopping() {
        std::thread::sleep(TICK);
        if sh.resync.swap(false, Ordering::Relaxed) {
            if !dump_into(&tx, &sh, DumpReason::Resync) {
                return;
            }
            last_evict = Instant::now();
        } else if let Some(every) = evict_every {
            if last_evict.elapsed() >= every {
                last_evict = Instant::now();
                // The entries are not needed: the dump is for its side effect (expired
                // entries are destroyed and their events sent).
                if let Err(e) = socket::evict() {
                    eprintln!("ipclog: periodic conntrack dump failed: {e}");
                }
            }
        }
    }
}
