//! The line log: the original ipclog format, extended compatibly.
//!
//! ```text
//! P 2004-08-05-16:41:22 ipclog started
//! H 2004-08-05-16:41:22 prot src             dst             sport dport fl  time
//! I 2004-08-05-16:41:22 UP eth0 192.168.0.1
//! O 2004-08-05-16:41:37 udp  ppp0            217.237.151.97  32799 53    -      -
//! C 2004-08-05-16:41:37 udp  ppp0            217.237.151.97  32799 53    -      0 orig_pkts=1 ...
//! F 2004-08-05-16:41:38.250000 ppp0 - drop-ssh b 1.2.3.4,4711 -> 217.237.151.97,22 PR tcp len 20 60 -S group=1
//! ```
//!
//! Every O/S/C line is `%c %s %-4s %-15s %-15s %-5s %-5s %-2s %5s` (letter, local time
//! `YYYY-MM-DD-HH:MM:SS`, protocol, source, destination, ports, flag, seconds) with `-` for an
//! absent field; wider values widen their column. Anything the original did not have follows
//! the time column as `key=value` tokens (the fields of [`crate::record::FIELDS`] that have a
//! log key, in their order), so readers that split on whitespace and take the first nine
//! fields keep working.
//!
//! Interface names and other foreign text are written with [`crate::text::push_field`]: a
//! control character, a bidi control, a space or a backslash becomes `\xHH` / `\uXXXX`, so a
//! line never carries terminal escapes and a name never splits into two columns.
//! [`crate::text::unescape_field`] reads a field back.
//!
//! `F` lines are packets a packet filter logged (`packet`, ipclog `--nflog`).
//!
//! `write` turns lines into text, `parse` reads one line back (borrowing from it), and
//! `reader` streams a file of them. Writer and parser meet in [`LineView`]: an event and a
//! parsed line both show the nine columns and the extras, and [`write_line`] writes either.

mod packet;
mod parse;
mod reader;
mod write;

#[cfg(test)]
mod tests;

pub use packet::{packet_time_utc, write_packet, PacketLine};
pub use parse::{parse_epoch, parse_line, parse_ts, ConnLine, LogLine, ParseError};
pub use reader::{LineError, LogReader, MAX_LINE};
pub use write::{
    format_ts, header_line, interface_line, program_line, write_epoch, write_event, write_line,
    LineView,
};

/// The largest count or number of seconds a line (or a history row) may carry: the range of
/// SQLite's INTEGER, where ipclog's history keeps the same values. Larger ones are garbage,
/// and bounding them keeps every sum a reader makes exact.
pub const MAX_VALUE: u64 = i64::MAX as u64;

/// The log's timestamp format, for chrono.
pub const TIME_FORMAT: &str = "%Y-%m-%d-%H:%M:%S";

/// How to render events.
#[derive(Debug, Clone, Copy, Default)]
pub struct WriteOptions {
    /// Add `nat_src=` / `orig_dst=` tokens where NAT rewrote the tuple (ipclog `-N`).
    pub show_nat: bool,
}
