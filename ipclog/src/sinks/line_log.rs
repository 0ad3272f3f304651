//! The line log: constat's `P`/`H`/`I`/`O`/`S`/`C` lines (format in `shared::logfmt`), with
//! `-n`'s name tokens after the others.

use std::net::IpAddr;

use chrono::{DateTime, Utc};

use shared::logfmt::{self, WriteOptions};
use shared::ConnEvent;

use super::text_out::{LineFormat, TextOut, TextSink};
use crate::names::Names;

/// The line log's lines.
pub struct LogLines {
    opts: WriteOptions,
    /// `-n`: name tokens after the others.
    names: Option<Names>,
}

/// The line log sink.
pub type LineLog = TextSink<LogLines>;

impl TextSink<LogLines> {
    pub fn line_log(out: TextOut, opts: WriteOptions) -> LineLog {
        TextSink::new(out, LogLines { opts, names: None }, true)
    }

    /// Adds `-n`'s name tokens from now on (after a possible fork: names need a thread).
    pub fn set_names(&mut self, names: Names) {
        self.format.names = Some(names);
    }
}

impl LineFormat for LogLines {
    fn event(&mut self, ev: &ConnEvent, line: &mut String) -> bool {
        logfmt::write_event(ev, self.opts, line);
        if let Some(n) = &self.names {
            n.append_tokens(ev, line);
        }
        true
    }

    fn packet(&mut self, p: &shared::packet::PacketEvent, line: &mut String) -> bool {
        logfmt::write_packet(p, line);
        true
    }

    fn program(&mut self, ts: DateTime<Utc>, message: &str, line: &mut String) {
        line.push_str(&logfmt::program_line(ts, message));
    }

    /// The column titles (`H`), so the log reads on its own.
    fn header(&mut self, ts: DateTime<Utc>, line: &mut String) -> bool {
        line.push_str(&logfmt::header_line(ts));
        true
    }

    fn interface(
        &mut self,
        ts: DateTime<Utc>,
        up: bool,
        ifname: &str,
        addr: IpAddr,
        line: &mut String,
    ) -> bool {
        line.push_str(&logfmt::interface_line(ts, up, ifname, addr));
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shared::sink::{EventSink, RunEnd, RunInfo};
    use shared::Source;
    use std::io::{self, Write};
    use std::sync::{Arc, Mutex};

    struct Shared(Arc<Mutex<Vec<u8>>>);

    impl Write for Shared {
        fn write(&mut self, b: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    /// The lifecycle becomes the lines constat reads: P started, H, I, P stopped.
    #[test]
    fn lifecycle_writes_its_own_p_h_and_i_lines() {
        let data = Arc::new(Mutex::new(Vec::new()));
        let out = TextOut::from_writer(Box::new(Shared(data.clone())));
        let mut log = LineLog::line_log(out, WriteOptions::default());
        let t = DateTime::from_timestamp(1_091_724_082, 0).unwrap();
        log.start(&RunInfo {
            started: t,
            source: Source::Conntrack,
            command: "ipclog",
        });
        log.interface(t, true, "ppp0", "217.235.218.69".parse().unwrap());
        log.interface(t, false, "eth0", "10.0.0.1".parse().unwrap());
        log.finish(&RunEnd {
            errors: 3,
            lost: 0,
            dropped: 0,
            started: None,
            stopped: t,
        });
        let text = String::from_utf8(data.lock().unwrap().clone()).unwrap();
        let mut ts = String::new();
        logfmt::format_ts(t, &mut ts);
        assert_eq!(
            text,
            format!(
                "P {ts} ipclog started\n{}\nI {ts} UP ppp0 217.235.218.69\n\
                 I {ts} DOWN eth0 10.0.0.1\nP {ts} ipclog stopped, 3 errors\n",
                logfmt::header_line(t)
            )
        );
    }
}
