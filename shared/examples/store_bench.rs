//! Measures the SQLite history's cost per event: N opens then N closes, in batches, as ipclog's
//! database thread writes them. Usage: store_bench DB N [BATCH]
//!
//! Prints wall time and the thread's CPU time (from /proc/thread-self/schedstat, less
//! disturbed by other processes on a shared machine) per event.
use std::time::Instant;

use chrono::{TimeZone, Utc};
use shared::store::Store;
use shared::*;

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
    for (kind, label) in [(EventKind::Open, "open"), (EventKind::Close, "close")] {
        let t = Instant::now();
        let cpu = cpu_ns();
        let mut buf = Vec::with_capacity(batch);
        for i in 0..n {
            buf.push(ev(kind, i));
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
