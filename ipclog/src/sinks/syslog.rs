//! syslog(3), facility daemon: the line log's lines without their timestamp (syslog adds its
//! own), at priority info (P lines: notice).

use chrono::{DateTime, Utc};

use shared::logfmt::{self, WriteOptions};
use shared::sink::EventSink;
use shared::ConnEvent;

/// The syslog sink.
pub struct SyslogSink {
    opts: WriteOptions,
    line: String,
}

impl SyslogSink {
    pub fn open(opts: WriteOptions) -> SyslogSink {
        // SAFETY: the ident is a static C string, as openlog requires (it keeps the pointer).
        unsafe {
            libc::openlog(
                c"ipclog".as_ptr(),
                libc::LOG_PID | libc::LOG_NDELAY,
                libc::LOG_DAEMON,
            );
        }
        SyslogSink {
            opts,
            line: String::new(),
        }
    }

    /// Says an error that stops ipclog (after detaching, where no terminal sees it).
    pub fn error(&self, text: &str) {
        Self::send(libc::LOG_ERR, text);
    }

    fn send(prio: libc::c_int, text: &str) {
        let Ok(c) = std::ffi::CString::new(text.replace('\0', " ")) else {
            return;
        };
        // SAFETY: "%s" with one valid C string argument.
        unsafe { libc::syslog(prio, c"%s".as_ptr(), c.as_ptr()) };
    }
}

/// A line without its second field (the timestamp): `O 2004-...-16:41:37 udp ...` ->
/// `O udp ...`.
fn without_ts(line: &str) -> String {
    let mut it = line.splitn(3, ' ');
    let letter = it.next().unwrap_or("");
    let _ts = it.next();
    format!("{letter} {}", it.next().unwrap_or("").trim_start())
}

impl EventSink for SyslogSink {
    fn event(&mut self, ev: &ConnEvent) {
        self.line.clear();
        logfmt::write_event(ev, self.opts, &mut self.line);
        Self::send(libc::LOG_INFO, &without_ts(&self.line));
    }

    /// ipmon's priorities: blocked packets warning, passed notice, logged info.
    fn packet(&mut self, p: &shared::packet::PacketEvent) {
        use shared::packet::Action;
        self.line.clear();
        logfmt::write_packet(p, &mut self.line);
        let prio = match p.action {
            Action::Block => libc::LOG_WARNING,
            Action::Pass => libc::LOG_NOTICE,
            Action::Log => libc::LOG_INFO,
        };
        Self::send(prio, &without_ts(&self.line));
    }

    fn program(&mut self, ts: DateTime<Utc>, message: &str) {
        Self::send(
            libc::LOG_NOTICE,
            &without_ts(&logfmt::program_line(ts, message)),
        );
    }

    fn flush(&mut self) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn syslog_lines_drop_the_timestamp() {
        assert_eq!(
            without_ts("O 2004-08-05-16:41:37 udp  ppp0 x"),
            "O udp  ppp0 x"
        );
    }
}
