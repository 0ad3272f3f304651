//! Helpers shared by the library-level capture tests.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;

use ipclog_capture::{CaptureArgs, CaptureSummary};
use shared::event::{ConnEvent, EventKind};
use shared::sink::VecSink;

/// Reads `path` with `args` (its read_file is set here) into a VecSink.
pub fn read_with(path: &Path, mut args: CaptureArgs) -> (Vec<ConnEvent>, CaptureSummary) {
    args.read_file = Some(path.to_str().expect("utf-8 path").to_string());
    let mut sink = VecSink::default();
    let stop = AtomicBool::new(false);
    let sum = ipclog_capture::run(&args, &mut sink, &stop, None)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    (sink.events, sum)
}

pub fn read(path: &Path) -> (Vec<ConnEvent>, CaptureSummary) {
    read_with(path, CaptureArgs::default())
}

pub fn closes(events: &[ConnEvent]) -> Vec<&ConnEvent> {
    events
        .iter()
        .filter(|e| e.kind == EventKind::Close)
        .collect()
}

/// The corpus file `rel` (under ../shared/corpus), or None with a message when absent.
pub fn corpus(rel: &str) -> Option<PathBuf> {
    let Some(dir) = e2e::bins::corpus_dir() else {
        eprintln!("SKIP: capture corpus ../shared/corpus is absent");
        return None;
    };
    let p = dir.join(rel);
    assert!(p.exists(), "{} missing from the corpus", p.display());
    Some(p)
}

/// Checks the accounting invariants every read must satisfy: every opened flow closed once,
/// the closes' packet counts add up to the packets in flows, and packets read = packets in
/// flows + fragments merged + packets dropped.
pub fn check_accounting(events: &[ConnEvent], sum: &CaptureSummary, what: &str) {
    let opens = events.iter().filter(|e| e.kind == EventKind::Open).count();
    let cl = closes(events);
    assert_eq!(opens, cl.len(), "{what}: opens vs closes");
    assert_eq!(cl.len() as u64, sum.flows, "{what}: flows");
    let mut ids: Vec<u64> = cl.iter().map(|e| e.conn_id).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), cl.len(), "{what}: a flow closed twice");
    let pkts: u64 = cl
        .iter()
        .map(|e| {
            let c = e.counters.expect("counters on close");
            c.orig_pkts + c.resp_pkts
        })
        .sum();
    assert_eq!(pkts, sum.packets_in_flows, "{what}: packets in closes");
    assert_eq!(
        sum.packets,
        sum.packets_in_flows - sum.decapsulated + sum.fragments_merged + sum.dropped_packets(),
        "{what}: packets read = in flows + merged + dropped ({})",
        sum.describe()
    );
    // A tunnel's inner connection names its outer one, which is a connection of the run.
    let uids: std::collections::HashSet<&str> =
        events.iter().filter_map(|e| e.uid.as_deref()).collect();
    for e in events {
        for p in e.tunnel_parents.iter().flat_map(|p| p.split(',')) {
            assert!(uids.contains(p), "tunnel parent {p} is no connection");
        }
    }
    for e in events {
        assert!(e
            .uid
            .as_deref()
            .is_some_and(|u| u.starts_with('C') && u.len() == 18));
        assert!(e.zeek_state.is_some());
    }
}

/// The single close event of `events` for the connection whose originator port is `sport`.
pub fn close_by_sport(events: &[ConnEvent], sport: u16) -> Vec<&ConnEvent> {
    closes(events)
        .into_iter()
        .filter(|e| e.orig.sport == Some(sport))
        .collect()
}
