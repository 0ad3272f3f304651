//! Syslog as ipmon does it: the line log's lines on the syslog daemon's socket (/dev/log or
//! `--syslog-socket`), ident `ipclog`, facility `--syslog-facility` (ipmon's -L). Syslog's own
//! header has no sub-second time and a classic one no date, so the message keeps the event's
//! time as `HH:MM:SS.ffffff` where the line log has its timestamp, as ipmon does. Priority by
//! kind: events info, P lines notice, lost or dropped events, failures and events with
//! anomalies warning. `--syslog-format rfc5424` sends RFC 5424 messages instead: the event's
//! full time with microseconds in the header and the connection as structured data.
//!
//! The socket is written directly (not syslog(3)): the facility, the format and the socket
//! are the user's, and a message the daemon did not take is counted as an error.

use std::fmt::Write as _;
use std::io;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Local, Utc};

use shared::logfmt::{self, WriteOptions};
use shared::sink::EventSink;
use shared::ConnEvent;

/// The facility's number for a name `--syslog-facility` accepts (syslog.conf's names).
pub fn facility_code(name: &str) -> Option<u8> {
    Some(match name {
        "kern" => 0,
        "user" => 1,
        "mail" => 2,
        "daemon" => 3,
        "auth" | "security" => 4,
        "syslog" => 5,
        "lpr" => 6,
        "news" => 7,
        "uucp" => 8,
        "cron" => 9,
        "authpriv" => 10,
        "ftp" => 11,
        _ => {
            let n: u8 = name.strip_prefix("local")?.parse().ok()?;
            if n > 7 || name.len() != 6 {
                return None;
            }
            16 + n
        }
    })
}

const WARNING: u8 = 4;
const NOTICE: u8 = 5;
const INFO: u8 = 6;

/// What the command line says about syslog.
#[derive(Debug, Clone)]
pub struct SyslogConfig {
    pub facility: u8,
    pub rfc5424: bool,
    pub socket: PathBuf,
}

/// The syslog sink.
pub struct SyslogSink {
    opts: WriteOptions,
    cfg: SyslogConfig,
    sock: UnixDatagram,
    hostname: String,
    pid: u32,
    line: String,
    msg: String,
    /// Messages the daemon did not take, and the last reason.
    failed: u64,
    last_error: Option<String>,
}

impl SyslogSink {
    /// Connects to the syslog socket: one that is not there is a start-up error.
    pub fn open(opts: WriteOptions, cfg: SyslogConfig) -> io::Result<SyslogSink> {
        let sock = connect(&cfg.socket)?;
        Ok(SyslogSink {
            opts,
            cfg,
            sock,
            hostname: hostname(),
            pid: std::process::id(),
            line: String::new(),
            msg: String::new(),
            failed: 0,
            last_error: None,
        })
    }

    /// Says an error that stops ipclog (after detaching, where no terminal sees it), with
    /// syslog(3): no sink is open yet, or it is the sink that failed.
    pub fn say_error(text: &str) {
        let Ok(c) = std::ffi::CString::new(text.replace('\0', " ")) else {
            return;
        };
        // SAFETY: a static ident; "%s" with one valid C string argument.
        unsafe {
            libc::openlog(c"ipclog".as_ptr(), libc::LOG_PID, libc::LOG_DAEMON);
            libc::syslog(libc::LOG_ERR, c"%s".as_ptr(), c.as_ptr());
        }
    }

    /// Builds the message for a line of the line log (`line`, with its timestamp) in
    /// `self.msg`: `sd` is the RFC 5424 structured data.
    fn compose(&mut self, severity: u8, ts: DateTime<Utc>, sd: &str) {
        let pri = u16::from(self.cfg.facility) * 8 + u16::from(severity);
        let (letter, rest) = split_line(&self.line);
        self.msg.clear();
        if self.cfg.rfc5424 {
            let t = ts.with_timezone(&Local);
            let _ = write!(
                self.msg,
                "<{pri}>1 {} {} ipclog {} {letter} {sd} {letter} {rest}",
                t.format("%Y-%m-%dT%H:%M:%S%.6f%:z"),
                self.hostname,
                self.pid,
            );
        } else {
            let now = Local::now();
            let t = ts.with_timezone(&Local);
            let _ = write!(
                self.msg,
                "<{pri}>{} ipclog[{}]: {letter} {} {rest}",
                now.format("%b %e %H:%M:%S"),
                self.pid,
                t.format("%H:%M:%S%.6f"),
            );
        }
    }

    /// Sends `self.msg`; after a syslog daemon restart the socket is connected anew once.
    fn send(&mut self) {
        let mut r = self.sock.send(self.msg.as_bytes());
        if r.is_err() {
            if let Ok(s) = connect(&self.cfg.socket) {
                self.sock = s;
                r = self.sock.send(self.msg.as_bytes());
            }
        }
        if let Err(e) = r {
            self.failed += 1;
            self.last_error = Some(e.to_string());
        }
    }
}

fn connect(path: &Path) -> io::Result<UnixDatagram> {
    let s = UnixDatagram::unbound()?;
    s.connect(path)?;
    Ok(s)
}

fn hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer's length is passed; the name is NUL-terminated when it fits.
    let ok = unsafe { libc::gethostname(buf.as_mut_ptr() as *mut libc::c_char, buf.len()) } == 0;
    let end = buf.iter().position(|&b| b == 0).unwrap_or(0);
    let name = String::from_utf8_lossy(&buf[..end]);
    // RFC 5424: printable ASCII without spaces, else the nil value.
    if ok && !name.is_empty() && name.bytes().all(|b| b.is_ascii_graphic()) {
        name.into_owned()
    } else {
        "-".into()
    }
}

/// A line log line split around its timestamp: `O 2004-...-16:41:37 udp ...` -> (`O`,
/// `udp ...`).
fn split_line(line: &str) -> (&str, &str) {
    let mut it = line.splitn(3, ' ');
    let letter = it.next().unwrap_or("");
    let _ts = it.next();
    (letter, it.next().unwrap_or("").trim_start())
}

/// RFC 5424 structured data of a connection event (SD-ID in the documentation's enterprise
/// number space, RFC 5612).
fn structured_data(ev: &ConnEvent, out: &mut String) {
    out.push_str("[conn@32473");
    let mut param = |name: &str, value: &str| {
        let _ = write!(out, " {name}=\"");
        for c in value.chars() {
            // PARAM-VALUE escapes exactly these three.
            if matches!(c, '"' | '\\' | ']') {
                out.push('\\');
            }
            out.push(c);
        }
        out.push('"');
    };
    param("kind", ev.kind.as_str());
    param("proto", &ev.proto.to_string());
    param("src", &ev.orig.src.to_string());
    param("dst", &ev.orig.dst.to_string());
    if let Some(p) = ev.orig.sport {
        param("sport", &p.to_string());
    }
    if let Some(p) = ev.orig.dport {
        param("dport", &p.to_string());
    }
    param("state", ev.state.name());
    if let Some(d) = ev.duration {
        param("duration", &format!("{d:.6}"));
    }
    if !ev.anomalies.is_empty() {
        for (k, v) in ev.anomalies.entries() {
            if v > 0 {
                param(k, &v.to_string());
            }
        }
    }
    out.push(']');
}

/// P lines that say something was lost or went wrong are warnings, the others notices.
fn program_severity(message: &str) -> u8 {
    let bad = ["lost ", "dropped ", "error"]
        .iter()
        .any(|p| message.starts_with(p))
        || ["failed", "undecodable", "resync:"]
            .iter()
            .any(|w| message.contains(w));
    if bad {
        WARNING
    } else {
        NOTICE
    }
}

impl EventSink for SyslogSink {
    fn event(&mut self, ev: &ConnEvent) {
        self.line.clear();
        logfmt::write_event(ev, self.opts, &mut self.line);
        let mut sd = String::new();
        if self.cfg.rfc5424 {
            structured_data(ev, &mut sd);
        }
        let sev = if ev.anomalies.is_empty() {
            INFO
        } else {
            WARNING
        };
        self.compose(sev, ev.ts, &sd);
        self.send();
    }

    /// ipmon's priorities: blocked packets warning, passed notice, logged info.
    fn packet(&mut self, p: &shared::packet::PacketEvent) {
        use shared::packet::Action;
        self.line.clear();
        logfmt::write_packet(p, &mut self.line);
        let sev = match p.action {
            Action::Block => WARNING,
            Action::Pass => NOTICE,
            Action::Log => INFO,
        };
        self.compose(sev, p.ts, "-");
        self.send();
    }

    fn program(&mut self, ts: DateTime<Utc>, message: &str) {
        self.line = logfmt::program_line(ts, message);
        self.compose(program_severity(message), ts, "-");
        self.send();
    }

    fn flush(&mut self) {}

    fn errors(&self) -> u64 {
        self.failed
    }

    fn not_written(&self) -> Option<String> {
        self.last_error.as_ref().map(|e| {
            format!(
                "syslog {}: {} messages not sent ({e})",
                shared::text::escaped(&self.cfg.socket.to_string_lossy()),
                self.failed
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_split_around_the_timestamp() {
        assert_eq!(
            split_line("O 2004-08-05-16:41:37 udp  ppp0 x"),
            ("O", "udp  ppp0 x")
        );
    }

    #[test]
    fn facility_names() {
        assert_eq!(facility_code("daemon"), Some(3));
        assert_eq!(facility_code("security"), facility_code("auth"));
        assert_eq!(facility_code("local0"), Some(16));
        assert_eq!(facility_code("local7"), Some(23));
        for bad in ["local8", "local", "local07", "Daemon", ""] {
            assert_eq!(facility_code(bad), None, "{bad}");
        }
        // Every name the command line offers has a number.
        for name in crate::cli::SYSLOG_FACILITIES {
            assert!(facility_code(name).is_some(), "{name}");
        }
    }

    #[test]
    fn severity_of_program_messages() {
        assert_eq!(program_severity("ipclog started"), NOTICE);
        assert_eq!(program_severity("lost 12 events"), WARNING);
        assert_eq!(
            program_severity("dropped 3 events (database queue full)"),
            WARNING
        );
        assert_eq!(program_severity("conntrack dump failed: x"), WARNING);
    }

    #[test]
    fn structured_data_escapes_values() {
        let mut ev = crate::sinks::test_event();
        ev.anomalies = Default::default();
        let mut sd = String::new();
        structured_data(&ev, &mut sd);
        assert!(
            sd.starts_with("[conn@32473 kind=\"close\" proto=\"6\" src=\"10.0.0.1\""),
            "{sd}"
        );
        assert!(sd.contains("dport=\"80\""), "{sd}");
        assert!(sd.ends_with(']'), "{sd}");
    }
}
