//! Where events go. Sources hold a `&mut dyn EventSink` and know nothing of what is behind it
//! (line log, SQLite, JSON, syslog, or several at once).

use chrono::{DateTime, Utc};

use crate::event::ConnEvent;

pub trait EventSink {
    /// One connection event, in the order the source saw them.
    fn event(&mut self, ev: &ConnEvent);

    /// A message of the logger itself, written as a `P` line: `ipclog started`,
    /// `lost 12 events`, `ipclog stopped, 0 errors`.
    fn program(&mut self, ts: DateTime<Utc>, message: &str);

    /// Push buffered output to its destination (end of a batch, before exit, on SIGHUP).
    fn flush(&mut self);

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

/// A sink that keeps events in memory: for tests and for `ipc`-style snapshots.
#[derive(Debug, Default)]
pub struct VecSink {
    pub events: Vec<ConnEvent>,
    pub messages: Vec<String>,
}

impl EventSink for VecSink {
    fn event(&mut self, ev: &ConnEvent) {
        self.events.push(ev.clone());
    }

    fn program(&mut self, _ts: DateTime<Utc>, message: &str) {
        self.messages.push(message.to_string());
    }

    fn flush(&mut self) {}
}
