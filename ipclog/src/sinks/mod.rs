//! The sinks ipclog writes to, whatever the source: the line log (file or standard output),
//! JSON lines, syslog and the SQLite history (on its own thread), plus a fan-out that feeds
//! them all and a filter in front of it. Each implements `shared::sink::EventSink`, so a
//! source drives them without knowing which are there. Sinks count write errors instead of
//! failing, so a full disk never stops the logger, and writing resumes as soon as the
//! destination accepts data again.
//!
//! - `text_out`: the text destination (whole lines, SIGHUP reopen) and the sink over it;
//! - `line_log`, `json`: the two text formats; `syslog`; `db`: the SQLite history;
//! - `fanout`: several sinks at once and the run's outcome; `filter`: the filters.

mod db;
mod fanout;
mod filter;
mod json;
mod line_log;
mod syslog;
mod text_out;

pub use db::{check_store, open_store, DbSink, WhenFull};
pub use fanout::FanOut;
pub use filter::{Filter, Filtered};
pub use json::{JsonOptions, JsonSink};
pub use line_log::LineLog;
pub use syslog::SyslogSink;
pub use text_out::{with_symlink_hint, TextOut, OUTPUT_POLICY};
