//! Several sinks at once, and what their run adds up to. The fan-out passes on the events the
//! filters let through (everything else a run says always passes), and it is where one
//! sink's trouble is told through the others: the database's drops become `P` lines in the
//! log, and every sink's write errors add up in the `ipclog stopped, N errors` line and the
//! runs row.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};

use shared::packet::PacketEvent;
use shared::sink::{EventSink, RunEnd, RunInfo, SinkStats};
use shared::ConnEvent;

use super::db::DbSink;
use super::filter::Filter;
use super::line_log::LineLog;

/// Several sinks at once: the line log first, then the others, the database last.
#[derive(Default)]
pub struct FanOut {
    /// Which events the outputs show (all by default).
    pub filter: Filter,
    /// Kept apart from `others`: `-n` attaches its names to it once threads may start.
    pub line_log: Option<LineLog>,
    pub others: Vec<Box<dyn EventSink + Send>>,
    /// Kept apart from `others`: its drops are said through the others, and it finishes
    /// first, so the stop line can count its errors.
    pub db: Option<DbSink>,
    /// Database drops already said in a P line.
    db_dropped_said: u64,
    /// When the last drop line was written (at most one every few seconds).
    db_dropped_said_at: Option<Instant>,
    /// The sinks that send elsewhere (IPFIX, PostgreSQL): like the database, their drops
    /// are said through the others and they finish before the stop line.
    pub remotes: Vec<super::remote::RemoteSink>,
    /// Their drops already said.
    remotes_dropped_said: u64,
    /// `--proc`: puts the owning process on each event the filters let through.
    pub procs: Option<crate::procs::Attributor>,
    /// `-s`: how often to say the attribution's figures on standard error.
    pub stats_every: Option<Duration>,
    procs_said_at: Option<Instant>,
}

/// How a run's output went, for the exit status and the last words on standard error.
#[derive(Debug, Default)]
pub struct RunOutcome {
    /// One line per sink that failed to write something, with exact counts.
    pub not_written: Vec<String>,
    /// Other losses to say at the end (a live source's queue drops), not write failures.
    pub notes: Vec<String>,
}

impl RunOutcome {
    /// Says on standard error what was not written; 1 when anything was not, else `code`.
    /// An output pipe its reader closed is no failure (`ipclog -r f | head` exits 0).
    pub fn exit_code(&self, code: u8) -> u8 {
        for l in self.notes.iter().chain(&self.not_written) {
            eprintln!("ipclog: {l}");
        }
        if code == 0 && !self.not_written.is_empty() {
            1
        } else {
            code
        }
    }
}

impl FanOut {
    /// Every sink but the database.
    fn text_sinks(&mut self) -> impl Iterator<Item = &mut dyn EventSink> {
        let line_log = self.line_log.iter_mut().map(|l| l as &mut dyn EventSink);
        line_log.chain(
            self.others
                .iter_mut()
                .map(|s| &mut **s as &mut dyn EventSink),
        )
    }

    /// Every sink, in the order they are written.
    fn all(&mut self) -> impl Iterator<Item = &mut dyn EventSink> {
        let db = self.db.iter_mut().map(|d| d as &mut dyn EventSink);
        let line_log = self.line_log.iter_mut().map(|l| l as &mut dyn EventSink);
        let remotes = self.remotes.iter_mut().map(|r| r as &mut dyn EventSink);
        line_log
            .chain(
                self.others
                    .iter_mut()
                    .map(|s| &mut **s as &mut dyn EventSink),
            )
            .chain(remotes)
            .chain(db)
    }

    fn errors_without_db(&self) -> u64 {
        self.line_log.as_ref().map_or(0, |l| l.errors())
            + self.others.iter().map(|s| s.errors()).sum::<u64>()
    }

    /// Writes a `P … dropped N events (database …)` line for drops not said yet, so a loss
    /// lands in the log on the day it happened (constat counts these lines).
    fn say_db_drops(&mut self, now: DateTime<Utc>, force: bool) {
        let d = self.db.as_ref().map_or(0, |d| d.dropped());
        if d <= self.db_dropped_said {
            return;
        }
        let due = self
            .db_dropped_said_at
            .is_none_or(|t| t.elapsed() >= Duration::from_secs(2));
        if force || due {
            let n = d - self.db_dropped_said;
            self.db_dropped_said = d;
            self.db_dropped_said_at = Some(Instant::now());
            self.program(
                now,
                &format!("dropped {n} events (database: queue full or write failed)"),
            );
        }
    }

    /// As [`FanOut::say_db_drops`], for the other sinks (those sending elsewhere).
    fn say_other_drops(&mut self, now: DateTime<Utc>) {
        let d: u64 = self.remotes.iter().map(|s| s.stats().dropped).sum();
        if d > self.remotes_dropped_said {
            let n = d - self.remotes_dropped_said;
            self.remotes_dropped_said = d;
            self.program(
                now,
                &format!("dropped {n} events (collector or PostgreSQL: queue or spool full)"),
            );
        }
    }

    /// After [`EventSink::finish`]: what was not written and what else to say at the end.
    pub fn outcome(&self) -> RunOutcome {
        let mut not_written: Vec<String> = Vec::new();
        if let Some(l) = &self.line_log {
            not_written.extend(l.not_written());
        }
        not_written.extend(self.others.iter().filter_map(|s| s.not_written()));
        not_written.extend(self.remotes.iter().filter_map(|r| r.not_written()));
        let mut notes = Vec::new();
        if let Some(d) = &self.db {
            not_written.extend(d.not_written());
            notes.extend(d.queue_dropped_note());
        }
        notes.extend(self.remotes.iter().filter_map(|r| r.note()));
        RunOutcome { not_written, notes }
    }
}

impl EventSink for FanOut {
    fn start(&mut self, run: &RunInfo) {
        self.all().for_each(|s| s.start(run));
    }

    fn interface(&mut self, ts: DateTime<Utc>, up: bool, ifname: &str, addr: IpAddr) {
        self.all().for_each(|s| s.interface(ts, up, ifname, addr));
    }

    fn event(&mut self, ev: &ConnEvent) {
        crate::status::count_event(ev);
        if !self.filter.matches(ev) {
            return;
        }
        if let Some(p) = &mut self.procs {
            if let Some(process) = p.process(ev) {
                let ev = ConnEvent {
                    process: Some(process),
                    ..ev.clone()
                };
                self.all().for_each(|s| s.event(&ev));
                return;
            }
        }
        self.all().for_each(|s| s.event(ev));
    }

    /// Packets pass unfiltered: --proto/--port/--host/--iface select connections.
    fn packet(&mut self, p: &PacketEvent) {
        self.all().for_each(|s| s.packet(p));
    }

    fn program(&mut self, ts: DateTime<Utc>, message: &str) {
        self.all().for_each(|s| s.program(ts, message));
    }

    fn source_lost(&mut self, total: u64) {
        self.all().for_each(|s| s.source_lost(total));
    }

    fn flush(&mut self) {
        if self.db.is_some() {
            self.say_db_drops(Utc::now(), false);
        }
        self.say_other_drops(Utc::now());
        self.all().for_each(|s| s.flush());
        let db = self.db.as_ref().map(|d| d.stats()).unwrap_or_default();
        let errors = self.errors();
        crate::status::publish_sinks(
            db.queued,
            db.dropped,
            errors,
            self.procs.as_ref().map(|p| p.stats),
        );
        if let (Some(p), Some(every)) = (&self.procs, self.stats_every) {
            if self.procs_said_at.is_none_or(|t| t.elapsed() >= every) {
                self.procs_said_at = Some(Instant::now());
                eprintln!("ipclog: {}", p.stats.describe());
            }
        }
    }

    /// The database thread finishes its queue and records the run first, then the other
    /// sinks say `ipclog stopped, N errors` (N: `end.errors` plus every sink's write errors),
    /// after a P line if the database missed events.
    fn finish(&mut self, end: &RunEnd) {
        self.flush();
        let mut errors = self.errors_without_db() + end.errors;
        for r in &mut self.remotes {
            r.finish(&RunEnd { errors, ..*end });
            errors += r.errors();
        }
        if let Some(db) = &mut self.db {
            db.finish(&RunEnd { errors, ..*end });
            errors += db.errors();
        }
        self.say_db_drops(end.stopped, true);
        self.say_other_drops(end.stopped);
        if let Some(p) = &self.procs {
            let said = p.stats.describe();
            self.text_sinks()
                .for_each(|s| s.program(end.stopped, &said));
        }
        let end = RunEnd { errors, ..*end };
        self.text_sinks().for_each(|s| s.finish(&end));
    }

    fn stats(&self) -> SinkStats {
        let line_log = self.line_log.iter().map(|l| l.stats());
        let others = self.others.iter().map(|s| s.stats());
        let db = self.db.iter().map(|d| d.stats());
        let remotes = self.remotes.iter().map(|r| r.stats());
        line_log
            .chain(others)
            .chain(remotes)
            .chain(db)
            .fold(SinkStats::default(), SinkStats::plus)
    }

    fn errors(&self) -> u64 {
        self.errors_without_db()
            + self.db.as_ref().map_or(0, |d| d.errors())
            + self.remotes.iter().map(|r| r.errors()).sum::<u64>()
    }

    /// One line per sink, as [`FanOut::outcome`] lists them.
    fn not_written(&self) -> Option<String> {
        let lines = self.outcome().not_written;
        (!lines.is_empty()).then(|| lines.join("\n"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shared::sink::VecSink;
    use shared::{EventKind, FlowTuple, Source};
    use std::sync::{Arc, Mutex};

    /// A sink the test can look into after the fan-out owned it.
    struct Probe(Arc<Mutex<VecSink>>);

    impl EventSink for Probe {
        fn interface(&mut self, ts: DateTime<Utc>, up: bool, ifname: &str, addr: IpAddr) {
            self.0.lock().unwrap().interface(ts, up, ifname, addr);
        }
        fn event(&mut self, ev: &ConnEvent) {
            self.0.lock().unwrap().event(ev);
        }
        fn program(&mut self, ts: DateTime<Utc>, message: &str) {
            self.0.lock().unwrap().program(ts, message);
        }
        fn source_lost(&mut self, total: u64) {
            self.0.lock().unwrap().source_lost(total);
        }
        fn flush(&mut self) {}
        fn errors(&self) -> u64 {
            2
        }
    }

    fn ev(proto: u8) -> ConnEvent {
        let any = "10.0.0.1".parse().unwrap();
        ConnEvent::new(
            EventKind::Open,
            Utc::now(),
            Source::Conntrack,
            1,
            proto,
            FlowTuple::new(any, any, Some(1), Some(2)),
        )
    }

    /// Only events are filtered: the run's start, interfaces, messages, loss and end reach
    /// every sink, and the stop line counts every sink's errors and the source's.
    #[test]
    fn only_events_are_filtered_and_the_stop_line_counts_every_error() {
        let seen = Arc::new(Mutex::new(VecSink::default()));
        let mut fan = FanOut {
            filter: Filter::new(&["udp".into()], &[], &[], &[]).unwrap(),
            ..FanOut::default()
        };
        fan.others.push(Box::new(Probe(seen.clone())));
        fan.others.push(Box::new(Probe(seen.clone())));
        let now = Utc::now();
        fan.start(&RunInfo {
            started: now,
            source: Source::Conntrack,
            command: "t",
        });
        fan.interface(now, true, "eth0", "10.0.0.1".parse().unwrap());
        fan.event(&ev(6));
        fan.event(&ev(17));
        fan.source_lost(4);
        fan.finish(&RunEnd {
            errors: 1,
            lost: 4,
            dropped: 0,
            started: None,
            stopped: now,
        });
        let seen = seen.lock().unwrap();
        assert_eq!(
            seen.events.iter().map(|e| e.proto).collect::<Vec<_>>(),
            [17, 17]
        );
        assert_eq!(seen.interfaces.len(), 2);
        assert_eq!(seen.source_lost, 4);
        assert_eq!(
            seen.messages,
            [
                "ipclog started",
                "ipclog started",
                "ipclog stopped, 5 errors",
                "ipclog stopped, 5 errors"
            ]
        );
        assert_eq!(fan.errors(), 4);
    }
}
