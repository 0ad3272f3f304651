//! The sinks ipclog writes to, whatever the source: the line log (file or standard output),
//! JSON lines, syslog and the SQLite history (on its own thread), plus a fan-out that feeds
//! them all the events the filters let through. Each implements `shared::sink::EventSink`, so a
//! source drives them without knowing which are there. Sinks count write errors instead of
//! failing, so a full disk never stops the logger, and writing resumes as soon as the
//! destination accepts data again.
//!
//! - `text_out`: the text destination (whole lines, SIGHUP reopen) and the sink over it;
//! - `line_log`, `json`: the two text formats; `syslog`; `db`: the SQLite history;
//! - `remote`: sinks that send elsewhere, with their spool: `ipfix` (a flow collector) and `pg`
//!   (the PostgreSQL history);
//! - `fanout`: several sinks at once, filtered, and the run's outcome; `filter`: the filters.

mod db;
mod fanout;
mod filter;
pub mod ipfix;
mod json;
mod line_log;
pub mod pg;
pub mod remote;
mod syslog;
mod text_out;

pub use db::{check_store, open_store, DbSink, WhenFull};
pub use fanout::FanOut;
pub use filter::Filter;
pub use json::{JsonOptions, JsonSink};
pub use line_log::LineLog;
pub use syslog::{facility_code, SyslogConfig, SyslogSink};
pub use text_out::{with_symlink_hint, TextOut, OUTPUT_POLICY};

/// The event the sinks' tests share: a TCP close from 10.0.0.1 (eth0) to 10.0.1.1:80 whose
/// replies go to 192.168.0.1 (SNAT), two seconds long.
#[cfg(test)]
fn test_event() -> shared::ConnEvent {
    use shared::{ConnEvent, EventKind, FlowTuple, Source};
    let ip = |s: &str| s.parse().unwrap();
    let mut e = ConnEvent::new(
        EventKind::Close,
        chrono::Utc::now(),
        Source::Conntrack,
        0xbeef,
        6,
        FlowTuple::new(ip("10.0.0.1"), ip("10.0.1.1"), Some(40000), Some(80)),
    );
    e.reply = Some(FlowTuple::new(
        ip("10.0.1.1"),
        ip("192.168.0.1"),
        Some(80),
        Some(40000),
    ));
    e.src_iface = Some("eth0".into());
    e.duration = Some(2.0);
    e
}
