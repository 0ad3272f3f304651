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

/// Checks the accounting invariants every read must satisfy
/// ([`CaptureSummary::check_accounting`]).
pub fn check_accounting(events: &[ConnEvent], sum: &CaptureSummary, what: &str) {
    if let Err(e) = sum.check_accounting(events) {
        panic!("{what}: {e}");
    }
}

/// The single close event of `events` for the connection whose originator port is `sport`.
pub fn close_by_sport(events: &[ConnEvent], sport: u16) -> Vec<&ConnEvent> {
    closes(events)
        .into_iter()
        .filter(|e| e.orig.sport == Some(sport))
        .collect()
}
