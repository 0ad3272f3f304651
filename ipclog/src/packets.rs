//! Packets as the source: the capture crate (`ipclog-capture`) reads a file or an interface
//! and tells the sink its connections; this module drives it through a run (start, finish
//! with the capture's figures) like the conntrack source's run loop does.
//!
//! A capture file keeps one clock in its log: its start and stop lines carry packet time like
//! its O/S/C lines (the start the time of the first connection, the summary and stop lines
//! the last packet's), so what a capture lost counts on the day it happened, not the day it
//! was read. A live capture's packet time is the wall clock anyway.

use std::time::Duration;

use chrono::{DateTime, Utc};

use ipclog_capture::{CaptureArgs, OpenCapture};
use shared::sink::{EventSink, RunEnd, RunInfo};
use shared::ConnEvent;

use crate::error::Error;

/// Reads the opened capture to its end (or SIGTERM), telling `sink` the whole run. Returns
/// the source's exit status: 0, or the capture error's (said on standard error and to the
/// sink).
pub fn run(
    capture: OpenCapture,
    args: &CaptureArgs,
    sink: &mut dyn EventSink,
    stats_every: Option<Duration>,
    run: &RunInfo,
) -> u8 {
    let from_file = args.read_file.is_some();
    let mut clocked = PacketClock {
        inner: sink,
        run: *run,
        started: None,
    };
    if !from_file {
        clocked.start_at(Utc::now());
    }
    let result = ipclog_capture::run_opened(
        capture,
        args,
        &mut clocked,
        &crate::daemon::STOP,
        stats_every,
    );
    let end = match &result {
        Ok(s) => s
            .last_packet_us
            .and_then(DateTime::from_timestamp_micros)
            .filter(|_| from_file),
        Err(_) => None,
    };
    let started = clocked.started;
    // A capture with no connection (or none that passed) still says when it was read.
    let stopped = end.or(started).unwrap_or_else(Utc::now);
    clocked.start_at(started.unwrap_or(stopped));
    let sink = &mut *clocked.inner;
    let (code, errors, lost, dropped) = match result {
        Ok(summary) => {
            // Packets the kernel dropped before libpcap saw them are lost events; the ones
            // the tracker could not use are dropped (both also in the runs table).
            let lost = summary
                .dropped
                .iter()
                .filter(|(k, _)| k == "kernel_drop")
                .map(|(_, n)| n)
                .sum();
            sink.program(stopped, &summary.describe());
            match &summary.output_failure {
                // A capture file or the session view not written: a failure of the run.
                Some(f) => {
                    eprintln!("ipclog: {}", shared::text::escaped(f));
                    sink.program(stopped, f);
                    (1, 1, lost, summary.dropped_packets())
                }
                None => (0, 0, lost, summary.dropped_packets()),
            }
        }
        Err(e) => {
            eprintln!("ipclog: {}", shared::text::escaped(&e.to_string()));
            sink.program(stopped, &format!("error: {e}"));
            (Error::Capture(e).exit_code(), 1, 0, 0)
        }
    };
    sink.finish(&RunEnd {
        errors,
        lost,
        dropped,
        started: started.filter(|_| from_file),
        stopped,
    });
    code
}

/// Starts the run on the capture's clock: at the first connection event, with its time.
struct PacketClock<'a> {
    inner: &'a mut dyn EventSink,
    run: RunInfo<'a>,
    started: Option<DateTime<Utc>>,
}

impl PacketClock<'_> {
    fn start_at(&mut self, at: DateTime<Utc>) {
        if self.started.is_none() {
            self.started = Some(at);
            self.inner.start(&RunInfo {
                started: at,
                ..self.run
            });
        }
    }
}

/// The capture crate only sends events, program messages and flushes: the run's start and
/// finish are [`run`]'s, on the sink itself.
impl EventSink for PacketClock<'_> {
    fn event(&mut self, ev: &ConnEvent) {
        self.start_at(ev.ts);
        self.inner.event(ev);
    }

    fn program(&mut self, ts: DateTime<Utc>, message: &str) {
        // A capture's own message (a checksum warning) may come before any connection.
        self.start_at(ts);
        self.inner.program(ts, message);
    }

    fn flush(&mut self) {
        self.inner.flush();
    }

    fn errors(&self) -> u64 {
        self.inner.errors()
    }
}
