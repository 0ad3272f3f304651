//! Where events go. Sources hold a `&mut dyn EventSink` and know nothing of what is behind it
//! (line log, SQLite, JSON, syslog, or several at once); sinks know nothing of the source
//! beyond what an event or the run's [`RunInfo`] says.
//!
//! A run is a lifecycle the source drives: [`EventSink::start`] once, then events, program
//! messages and interface changes in the order they happened, [`EventSink::source_lost`]
//! whenever the source's loss grows, [`EventSink::stats`] whenever the source reports its
//! own, and [`EventSink::finish`] once at the end. Each sink decides what that becomes in its
//! output (the line log's `P`/`H`/`I` lines, the database's runs row), so a new sink is one
//! implementation and no source changes.

use std::net::IpAddr;

use chrono::{DateTime, Utc};

use crate::event::{ConnEvent, Source};
use crate::packet::PacketEvent;

/// What a run is, said to every sink when it starts.
#[derive(Debug, Clone, Copy)]
pub struct RunInfo<'a> {
    /// When the run started, on the log's clock (a capture file: its first connection).
    pub started: DateTime<Utc>,
    /// Where the events come from.
    pub source: Source,
    /// The command line, as the runs table keeps it.
    pub command: &'a str,
}

/// How a run went, said to every sink when it ends.
#[derive(Debug, Clone, Copy)]
pub struct RunEnd {
    /// Errors so far that no sink counts itself (undecodable messages, a failed source), and,
    /// as the fan-out passes it on, every other sink's write errors.
    pub errors: u64,
    /// Events the source lost (kernel drops); the runs table's `lost_events`.
    pub lost: u64,
    /// Events or packets the source dropped itself (a full queue, unusable packets).
    pub dropped: u64,
    /// The start on the log's clock when it differs from the wall clock the run was opened
    /// with (a capture file's first packet); `None` keeps that wall-clock start.
    pub started: Option<DateTime<Utc>>,
    /// The end, on the log's clock.
    pub stopped: DateTime<Utc>,
}

/// What a sink holds back right now, for the source's statistics line.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SinkStats {
    /// Events queued and not yet written (the database thread's queue).
    pub queued: u64,
    /// Events the sink gave up on so far (queue full, or a write that kept failing).
    pub dropped: u64,
}

impl SinkStats {
    /// Both sinks' figures together (a fan-out's).
    pub fn plus(self, other: SinkStats) -> SinkStats {
        SinkStats {
            queued: self.queued + other.queued,
            dropped: self.dropped + other.dropped,
        }
    }
}

/// The last program message of a run (constat and the tests look for it).
pub fn stopped_message(errors: u64) -> String {
    format!("ipclog stopped, {errors} errors")
}

pub trait EventSink {
    /// The run begins. Sinks that show text say `ipclog started` (a program message: the
    /// default); the line log adds its column titles.
    fn start(&mut self, run: &RunInfo) {
        self.program(run.started, "ipclog started");
    }

    /// A local address appeared (`up`) or went away: the line log's `I` lines. Other sinks
    /// have no use for it.
    fn interface(&mut self, _ts: DateTime<Utc>, _up: bool, _ifname: &str, _addr: IpAddr) {}

    /// One connection event, in the order the source saw them.
    fn event(&mut self, ev: &ConnEvent);

    /// One packet a packet filter logged (`--nflog`): the line log's `F` lines, a JSON
    /// object, a `packets` row. Sinks that have no place for packets leave this out.
    fn packet(&mut self, _p: &PacketEvent) {}

    /// A message of the logger itself, written as a `P` line: `ipclog started`,
    /// `lost 12 events`, `ipclog stopped, 0 errors`.
    fn program(&mut self, ts: DateTime<Utc>, message: &str);

    /// The source has lost `total` events so far (its program message says the new ones). A
    /// sink that keeps run statistics while running (the runs table) records it.
    fn source_lost(&mut self, _total: u64) {}

    /// Push buffered output to its destination (end of a batch, before exit, on SIGHUP).
    fn flush(&mut self);

    /// The run ends: sinks that show text say `ipclog stopped, N errors` (the default), the
    /// database finishes its queue and records the run. Nothing is written after this.
    fn finish(&mut self, end: &RunEnd) {
        self.program(end.stopped, &stopped_message(end.errors));
        self.flush();
    }

    /// What the sink holds back or gave up on so far.
    fn stats(&self) -> SinkStats {
        SinkStats::default()
    }

    /// Write errors seen so far (disk full, I/O errors); sinks count rather than fail, so a
    /// full disk never stops the logger.
    fn errors(&self) -> u64 {
        0
    }

    /// What this sink failed to write, said once at the end (`log /var/log/x: 12 lines not
    /// written (2 failed writes)`); `None` when everything got out.
    fn not_written(&self) -> Option<String> {
        None
    }
}

/// A sink that keeps what it is told in memory: for tests and for `ipc`-style snapshots.
#[derive(Debug, Default)]
pub struct VecSink {
    pub events: Vec<ConnEvent>,
    /// Logged packets.
    pub packets: Vec<PacketEvent>,
    /// Program messages, `ipclog started` and `ipclog stopped, N errors` included.
    pub messages: Vec<String>,
    /// Interface changes: (up, interface name, address).
    pub interfaces: Vec<(bool, String, IpAddr)>,
    /// The last loss total the source reported.
    pub source_lost: u64,
    /// How the run ended, once it has.
    pub end: Option<RunEnd>,
}

impl EventSink for VecSink {
    fn interface(&mut self, _ts: DateTime<Utc>, up: bool, ifname: &str, addr: IpAddr) {
        self.interfaces.push((up, ifname.to_string(), addr));
    }

    fn event(&mut self, ev: &ConnEvent) {
        self.events.push(ev.clone());
    }

    fn packet(&mut self, p: &PacketEvent) {
        self.packets.push(p.clone());
    }

    fn program(&mut self, _ts: DateTime<Utc>, message: &str) {
        self.messages.push(message.to_string());
    }

    fn source_lost(&mut self, total: u64) {
        self.source_lost = total;
    }

    fn flush(&mut self) {}

    fn finish(&mut self, end: &RunEnd) {
        self.program(end.stopped, &stopped_message(end.errors));
        self.end = Some(*end);
    }
}
