//! The conntrack source: turns ctnetlink events and table dumps into `ConnEvent`s and tells
//! an `EventSink` (whatever is behind it) about the run.
//!
//! Three threads, so that the socket is always being read:
//! - the **reader** (`reader.rs`) only receives, decodes in place (`ctnetlink.rs`) and queues
//!   plain `CtMsg`s (no allocation); when the queue is full it drops and counts, and asks for
//!   a resync;
//! - the **dumper** (`reader.rs`) dumps the table (`socket.rs`) at start (connections already
//!   open), every `--evict-every` seconds (which makes the kernel send the DESTROY events of
//!   expired entries at once) and after any loss (resync);
//! - the **processor** (`processor.rs`, on the caller's thread, driven by [`run`]) keeps the
//!   set of open connections, decides what is an O, S or C event, names local addresses by
//!   interface and dates expired closes by their idle timeout (`timeouts.rs`).
//!
//! Loss is never silent: kernel drops (ENOBUFS, and the socket's exact `Drops` counter) and
//! queue drops become `lost N events` program messages, are told to the sink as the run's
//! loss, and are followed by a resync that closes connections that vanished and opens ones
//! that appeared. `snapshot.rs` is `ipc`: one dump, printed.

pub(crate) mod ctnetlink;
mod processor;
mod reader;
mod snapshot;
pub(crate) mod socket;
mod timeouts;

use std::sync::atomic::Ordering;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use chrono::{DateTime, Utc};

use shared::sink::{EventSink, RunEnd, RunInfo};

use crate::ifaddr;
use processor::Processor;
use reader::{dumper, reader, Msg, Shared};
use timeouts::Timeouts;

pub use snapshot::open_connections;
pub use socket::EventSocket;

/// How often the threads look up from a wait (signals, flushes).
const TICK: Duration = Duration::from_millis(100);

fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

fn ns_to_dt(ns: u64) -> DateTime<Utc> {
    DateTime::<Utc>::from_timestamp((ns / 1_000_000_000) as i64, (ns % 1_000_000_000) as u32)
        .unwrap_or_default()
}

/// The uid JSON shows for a conntrack connection (Zeek's uid field; the packet source makes
/// its own): `CT` and the conntrack id in hex.
pub fn uid(conn_id: u64) -> String {
    format!("CT{conn_id:08x}")
}

/// Options of the conntrack source.
pub struct Config {
    pub queue: usize,
    pub evict_every: Option<Duration>,
    pub stats_every: Option<Duration>,
    /// `--nflog G --conntrack`: logged packets from these groups join the connections.
    pub nflog: Option<crate::nflog::NflogSocket>,
}

/// Runs the conntrack logger until SIGTERM/SIGINT, telling `sink` the whole run (`run`
/// with the start time now). Returns the source's exit status: 0, or that of the failure
/// that stopped it (already said on standard error and to the sink).
pub fn run(cfg: Config, sock: EventSocket, sink: &mut dyn EventSink, run: &RunInfo) -> u8 {
    let shared = Arc::new(Shared::default());
    let (tx, rx): (SyncSender<Msg>, Receiver<Msg>) = mpsc::sync_channel(cfg.queue.max(16));
    let addrs = ifaddr::local_addrs().unwrap_or_default();
    let mut p = Processor::new(sink, addrs, Timeouts::read(), shared.clone());
    p.start(&RunInfo {
        started: Utc::now(),
        ..*run
    });
    let rcv = sock.rcvbuf.clone();
    let reader_t = {
        let (tx, sh) = (tx.clone(), shared.clone());
        std::thread::Builder::new()
            .name("ipclog-reader".into())
            .spawn(move || reader(sock, tx, sh))
            .expect("spawn reader")
    };
    let dumper_t = {
        let (tx, sh) = (tx.clone(), shared.clone());
        let every = cfg.evict_every;
        std::thread::Builder::new()
            .name("ipclog-dumper".into())
            .spawn(move || dumper(tx, sh, every))
            .expect("spawn dumper")
    };
    let nflog_t = cfg.nflog.map(|sock| {
        let (tx, sh) = (tx.clone(), shared.clone());
        crate::nflog::spawn(sock, move |side| {
            use crate::nflog::Side;
            let packet = matches!(side, Side::Packet(_));
            if !packet {
                return reader::queue_blocking(&tx, &sh, Msg::Nflog(side));
            }
            // A full queue drops the packet and counts it, as the reader does events.
            let ok = reader::queue(&tx, &sh, Msg::Nflog(side));
            if !ok {
                sh.queue_dropped.fetch_add(1, Ordering::Relaxed);
            }
            ok
        })
    });
    drop(tx);
    // The processor too runs ahead of ordinary work (but behind the reader): a queue that
    // fills because the processor is starved loses events just like a full socket. Set only
    // now: the reader, started from this thread, inherits this thread's priority (main set
    // it to the reader's before giving up CAP_SYS_NICE), and without the capability a thread
    // can only lower its priority, never raise it.
    crate::daemon::set_thread_nice(-5);
    if !rcv.forced {
        eprintln!(
            "ipclog: SO_RCVBUFFORCE not permitted, used SO_RCVBUF (capped by net.core.rmem_max): \
             receive buffer {} bytes instead of {}, events may be lost under load",
            rcv.actual, rcv.requested
        );
    }

    let mut last_flush = Instant::now();
    let mut last_addr_poll = Instant::now();
    let mut last_stats = Instant::now();
    let mut stats_events = 0u64;
    let mut since_flush = 0usize;
    loop {
        match rx.recv_timeout(TICK) {
            Ok(msg) => {
                p.dispatch(msg);
                since_flush += 1;
                // Take what is queued, flushing at least every 4096 events.
                while since_flush < 4096 {
                    match rx.try_recv() {
                        Ok(msg) => {
                            p.dispatch(msg);
                            since_flush += 1;
                        }
                        Err(_) => break,
                    }
                }
                if p.failure.is_some() {
                    crate::daemon::STOP.store(true, Ordering::SeqCst);
                }
                if since_flush > 1 {
                    // Busy: let the next batch gather for a moment instead of being woken
                    // for every single event (a futex wake per event costs more than the
                    // event). Adds at most 1 ms of latency under load, none when idle.
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => break,
        }
        if since_flush > 0 || last_flush.elapsed() >= Duration::from_secs(1) {
            p.sink().flush();
            since_flush = 0;
            last_flush = Instant::now();
        }
        if last_addr_poll.elapsed() >= Duration::from_secs(2) {
            last_addr_poll = Instant::now();
            if let Ok(addrs) = ifaddr::local_addrs() {
                p.set_addrs(addrs);
            }
        }
        crate::status::publish_source(
            p.open_count() as u64,
            shared.depth.load(Ordering::Relaxed).max(0) as u64,
            shared.lost.load(Ordering::Relaxed),
            shared.queue_dropped.load(Ordering::Relaxed),
            p.sink().errors() + shared.decode_errors.load(Ordering::Relaxed),
        );
        if let Some(every) = cfg.stats_every {
            if last_stats.elapsed() >= every {
                let ev = shared.events.load(Ordering::Relaxed);
                let rate = (ev - stats_events) as f64 / last_stats.elapsed().as_secs_f64();
                stats_events = ev;
                last_stats = Instant::now();
                let sink = p.sink().stats();
                let (db_depth, db_dropped) = (sink.queued, sink.dropped);
                eprintln!(
                    "ipclog: {rate:.0} events/s, {} open, queue {} (db {db_depth}), lost {}, dropped {} (queue) {} (db), errors {}",
                    p.open_count(),
                    shared.depth.load(Ordering::Relaxed).max(0),
                    shared.lost.load(Ordering::Relaxed),
                    shared.queue_dropped.load(Ordering::Relaxed),
                    db_dropped,
                    p.sink().errors() + shared.decode_errors.load(Ordering::Relaxed),
                );
            }
        }
    }
    let _ = reader_t.join();
    let _ = dumper_t.join();
    if let Some(t) = nflog_t {
        let _ = t.join();
    }
    // Counted after the threads ended, so nothing they saw is missing.
    let lost = shared.lost.load(Ordering::Relaxed);
    let qdropped = shared.queue_dropped.load(Ordering::Relaxed);
    let decode_errors = shared.decode_errors.load(Ordering::Relaxed);
    if decode_errors > 0 {
        p.program(&format!("{decode_errors} undecodable conntrack messages"));
    }
    let (nf_lost, nf_unusable, nf_errors) = p.nflog_end.unwrap_or_default();
    p.sink().finish(&RunEnd {
        errors: decode_errors + nf_errors,
        lost: lost + nf_lost,
        dropped: qdropped + nf_unusable,
        started: None,
        stopped: Utc::now(),
    });
    p.failure.map_or(0, |e| e.exit_code())
}

/// Opens the event socket (a start-up error when that cannot be done, missing permission
/// included) and says once what the kernel is not providing and how to turn it on; logging
/// goes on without.
pub fn open(rcvbuf: usize) -> Result<EventSocket, crate::error::Error> {
    let sock = EventSocket::open(rcvbuf, TICK)?;
    check_kernel_settings();
    Ok(sock)
}

fn check_kernel_settings() {
    let read = |name: &str| {
        std::fs::read_to_string(format!("/proc/sys/net/netfilter/{name}"))
            .ok()
            .map(|s| s.trim().to_string())
    };
    match read("nf_conntrack_acct") {
        None => eprintln!(
            "ipclog: connection tracking is not loaded (no /proc/sys/net/netfilter/\
             nf_conntrack_*): load it with `modprobe nf_conntrack`; connections are logged once \
             it is"
        ),
        Some(v) => {
            if v == "0" {
                eprintln!(
                    "ipclog: byte counters are off; turn them on with `sysctl -w \
                     net.netfilter.nf_conntrack_acct=1`"
                );
            }
            if read("nf_conntrack_timestamp").as_deref() == Some("0") {
                eprintln!(
                    "ipclog: kernel timestamps are off (times come from ipclog's clock); turn \
                     them on with `sysctl -w net.netfilter.nf_conntrack_timestamp=1`"
                );
            }
            if read("nf_conntrack_events").as_deref() == Some("0") {
                eprintln!(
                    "ipclog: conntrack events are off, nothing will be logged; turn them on \
                     with `sysctl -w net.netfilter.nf_conntrack_events=1`"
                );
            }
        }
    }
}
