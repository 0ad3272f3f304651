//! Measures the SQLite history's cost per event: N opens then N closes, in batches, as ipclog's
//! database thread writes them. Usage: store_bench DB N [BATCH] [LAG]
//!
//! With LAG, a third phase writes N more short connections, each closed after LAG further
//! connections opened (so with 2 x LAG < BATCH most opens and closes share a batch).
//!
//! Prints wall time and the thread's CPU time (from /proc/thread-self/schedstat, less
//! disturbed by other processes on a shared machine) per event.
use std::time::Instant;

use chrono::{TimeZone, Utc};
use shared::*;
use store::Store;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let path = std::path::Path::new(&args[1]);
    let n: u64 = args[2].parse().unwrap();
    let batch: usize = args.get(3).map(|b| b.parse().unwrap()).unwrap_or(1000);
    let _ = std::fs::remove_file(path);
    let mut store = Store::open(path).unwrap();
    store.start_run(Utc::now(), "conntrack", "bench").unwrap();
    let ev = |kind, i: u64| {
        let mut e = ConnEvent::new(
            kind,
            Utc.timestamp_opt(1_700_000_000 + (i / 100_000) as i64, 0)
                .unwrap(),
            Source::Conntrack,
            i,
            17,
            FlowTuple::new(
                std::net::Ipv4Addr::from(0x0a00_0000 + (i as u32 % 60_000)).into(),
                "10.255.0.1".parse().unwrap(),
                Some(1024 + (i % 60_000) as u16),
                Some(9999),
            ),
        );
        e.state = ConnState::Unreplied;
        if kind == EventKind::Close {
            e.duration = Some(1.0);
            e.counters = Some(Counters {
                orig_pkts: 1,
                orig_ip_bytes: 60,
                ..Default::default()
            });
        }
        e
    };
    // Each phase's event stream: (kind, connection number).
    let mut phases: Vec<(&str, Vec<(EventKind, u64)>)> = vec![
        ("open", (0..n).map(|c| (EventKind::Open, c)).collect()),
        ("close", (0..n).map(|c| (EventKind::Close, c)).collect()),
    ];
    if let Some(lag) = args.get(4).map(|l| l.parse::<u64>().unwrap()) {
        let mut s = Vec::new();
        for c in n..2 * n {
            s.push((EventKind::Open, c));
            if c >= n + lag {
                s.push((EventKind::Close, c - lag));
            }
        }
        s.extend((2 * n - lag.min(n)..2 * n).map(|c| (EventKind::Close, c)));
        phases.push(("open+close", s));
    }
    for (label, stream) in phases {
        let n = stream.len();
        let t = Instant::now();
        let cpu = cpu_ns();
        let mut buf = Vec::with_capacity(batch);
        for (kind, conn) in stream {
            buf.push(ev(kind, conn));
            if buf.len() == batch {
                store.write_batch(&buf).unwrap();
                buf.clear();
            }
        }
        store.write_batch(&buf).unwrap();
        let s = t.elapsed().as_secs_f64();
        let c = (cpu_ns() - cpu) as f64 / 1e9;
        println!(
            "{label}: {n} events in {s:.2} s = {:.2} us/event (CPU {c:.2} s = {:.2} us/event)",
            s * 1e6 / n as f64,
            c * 1e6 / n as f64
        );
    }
}

/// Nanoseconds this thread has run on a CPU.
fn cpu_ns() -> u64 {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}
