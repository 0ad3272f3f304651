//! A text destination and the sinks that write lines to it. [`TextOut`] is where lines go
//! (standard output, or a file SIGHUP reopens): it writes whole lines or counts them as not
//! written, so a full disk never stops the logger and never leaves a torn line behind.
//! [`TextSink`] is a sink over it whose [`LineFormat`] says what the lines are (the line log's
//! or JSON's), so each text format is only its lines.

use std::fs::File;
use std::io::{self, Write};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;

use chrono::{DateTime, Utc};

use shared::outfile;
use shared::packet::PacketEvent;
use shared::sink::{EventSink, RunInfo};
use shared::ConnEvent;

use crate::daemon::HUP;

/// How outputs are opened (symbolic links, owner of created files): set once by main from the
/// command line before any output is opened, used again by every reopen on SIGHUP.
pub static OUTPUT_POLICY: std::sync::OnceLock<outfile::Policy> = std::sync::OnceLock::new();

/// `msg` (an output that could not be opened) with how to allow a symbolic link, if that is
/// why.
pub fn with_symlink_hint(msg: String) -> String {
    if msg.contains(outfile::SYMLINK_REFUSED) {
        msg + " (give the real path, or --follow-symlinks to write through the link)"
    } else {
        msg
    }
}

/// Opens `path` for appending, creating it with mode 0640: never through a symbolic link
/// (unless --follow-symlinks), and only a regular file, FIFO or character device.
pub fn open_append(path: &Path) -> io::Result<File> {
    let policy = OUTPUT_POLICY.get().copied().unwrap_or_default();
    outfile::open_append(path, &policy, outfile::Accept::Stream)
        .map(|o| o.file)
        .map_err(|e| match e {
            outfile::OpenError::Io(e) => e,
            e => io::Error::new(
                io::ErrorKind::InvalidInput,
                with_symlink_hint(e.to_string()),
            ),
        })
}

/// A text destination: standard output or a file that SIGHUP reopens (logrotate moves the
/// old one away; the next write creates the new one).
///
/// Lines are written whole or counted as not written: after a short write (a disk that filled
/// up in the middle of a buffer) the torn fragment is cut off a regular file again, and where
/// that cannot be done (a pipe) the next write starts with a newline, so the fragment stays
/// one bad line instead of gluing itself to the next one; a torn last line left by an earlier
/// run is ended with a newline when the file is opened. A reader that went away
/// (EPIPE) is not an error: the output closes and the run stops, like any Unix filter.
pub struct TextOut {
    path: Option<PathBuf>,
    out: Box<dyn Write + Send>,
    buf: Vec<u8>,
    hup_seen: u64,
    errors: u64,
    /// Lines discarded because their write failed.
    pub lines_lost: u64,
    lines_in_buf: u64,
    /// The destination holds a line without its newline (a short write, or an earlier run).
    torn: bool,
    /// Bytes of a torn last line found when the file was opened, not yet reported.
    torn_at_open: Option<u64>,
    /// The reader of a pipe went away: nothing more is written.
    closed: bool,
    /// The same file as `out` when it is a regular file: a torn fragment can then be cut off
    /// again, so the file holds whole lines only.
    regular: Option<File>,
    what: &'static str,
}

impl TextOut {
    /// Standard output, or `path` opened now (an unwritable path is a start-up error).
    pub fn open(path: Option<&Path>, what: &'static str) -> io::Result<TextOut> {
        let Some(p) = path else {
            let mut t = TextOut::from_writer(Box::new(stdout_unbuffered()?));
            t.what = what;
            return Ok(t);
        };
        let f = open_append(p)?;
        let mut t = TextOut::from_writer(Box::new(io::sink()));
        t.what = what;
        // Absolute, so a reopen after the daemon's chdir("/") finds the same file.
        t.path = Some(if p.is_absolute() {
            p.to_path_buf()
        } else {
            std::env::current_dir()?.join(p)
        });
        t.torn_at_open = t.adopt(f);
        Ok(t)
    }

    /// Writes to the file `f` from now on; returns the size of a torn last line it ends in
    /// (an earlier run, or logrotate's copytruncate, left it), which the next write ends.
    fn adopt(&mut self, f: File) -> Option<u64> {
        let torn = torn_tail(&f);
        self.torn = torn.is_some();
        self.regular = f
            .try_clone()
            .ok()
            .filter(|c| c.metadata().is_ok_and(|m| m.is_file()));
        self.out = Box::new(f);
        torn
    }

    /// Any writer (tests, and the pieces `open` puts together).
    pub fn from_writer(w: Box<dyn Write + Send>) -> TextOut {
        TextOut {
            path: None,
            out: w,
            buf: Vec::with_capacity(1 << 16),
            hup_seen: HUP.load(Ordering::Relaxed),
            errors: 0,
            lines_lost: 0,
            lines_in_buf: 0,
            torn: false,
            torn_at_open: None,
            closed: false,
            regular: None,
            what: "output",
        }
    }

    pub fn line(&mut self, line: &str) {
        if self.closed {
            return;
        }
        self.buf.extend_from_slice(line.as_bytes());
        self.buf.push(b'\n');
        self.lines_in_buf += 1;
        if self.buf.len() >= 1 << 16 {
            self.flush();
        }
    }

    /// The size of a torn last line found when the file was opened, once (for a P line).
    pub fn take_torn_at_open(&mut self) -> Option<u64> {
        self.torn_at_open.take()
    }

    /// Writes what is buffered; on SIGHUP, first to the old file, then reopens.
    pub fn flush(&mut self) {
        if self.closed {
            self.buf.clear();
            self.lines_in_buf = 0;
        }
        if !self.buf.is_empty() {
            let result = self.write_buffer();
            if let Err(e) = result {
                if e.kind() == io::ErrorKind::BrokenPipe {
                    // The reader is gone (`ipclog ... | head`): stop quietly. What it did not
                    // read was never asked for.
                    self.closed = true;
                    crate::daemon::output_closed();
                } else {
                    self.errors += 1;
                    // Said for the first failures of a streak and then every 1000th, so a full
                    // disk does not flood standard error; the total is said at the end.
                    if self.errors <= 3 || self.errors.is_multiple_of(1000) {
                        eprintln!(
                            "ipclog: {} write failed ({} lines not written, {} in all): {e}",
                            self.shown(),
                            self.lines_in_buf,
                            self.lines_lost,
                        );
                    }
                }
            }
            // Lines whose write failed are dropped (and counted) rather than kept: memory
            // must not grow while a disk is full.
            self.buf.clear();
            self.lines_in_buf = 0;
        }
        let hup = HUP.load(Ordering::Relaxed);
        if hup != self.hup_seen {
            self.hup_seen = hup;
            if let Some(p) = &self.path {
                match open_append(p) {
                    Ok(f) => {
                        self.adopt(f);
                    }
                    Err(e) => {
                        self.errors += 1;
                        eprintln!("ipclog: cannot reopen {}: {e}", self.shown());
                    }
                }
            }
        }
    }

    /// Writes the buffer with as many `write` calls as it takes; on failure counts the lines
    /// that did not get out whole and remembers a torn one.
    fn write_buffer(&mut self) -> io::Result<()> {
        if self.torn {
            write_fully(&mut self.out, b"\n").map_err(|(_, e)| {
                self.lines_lost += self.lines_in_buf;
                e
            })?;
            self.torn = false;
        }
        match write_fully(&mut self.out, &self.buf)
            .and_then(|()| self.out.flush().map_err(|e| (self.buf.len(), e)))
        {
            Ok(()) => Ok(()),
            Err((written, e)) => {
                let whole = memchr_count(&self.buf[..written]);
                self.lines_lost += self.lines_in_buf - whole;
                let fragment = self.buf[..written]
                    .iter()
                    .rev()
                    .take_while(|&&c| c != b'\n')
                    .count() as u64;
                self.torn = fragment > 0 && !self.cut_fragment(fragment);
                Err(e)
            }
        }
    }

    /// Cuts the last `fragment` bytes (a line that got out only in part) off a regular
    /// file; false when that cannot be done (not a regular file, or the file moved on).
    fn cut_fragment(&mut self, fragment: u64) -> bool {
        let Some(f) = &self.regular else {
            return false;
        };
        let Ok(len) = f.metadata().map(|m| m.len()) else {
            return false;
        };
        len >= fragment && f.set_len(len - fragment).is_ok()
    }

    pub fn shown(&self) -> String {
        match &self.path {
            Some(p) => format!(
                "{} {}",
                self.what,
                shared::text::escaped(&p.to_string_lossy())
            ),
            None => format!("{} on standard output", self.what),
        }
    }

    pub fn errors(&self) -> u64 {
        self.errors
    }

    /// What was not written, for the summary at the end: `None` when everything was.
    pub fn not_written(&self) -> Option<String> {
        (self.errors > 0).then(|| {
            format!(
                "{}: {} lines not written ({} failed writes)",
                self.shown(),
                self.lines_lost,
                self.errors
            )
        })
    }
}

/// Standard output as an unbuffered file (a duplicate of descriptor 1): `io::Stdout` keeps
/// its own line buffer, which would hide how much of a write really got out.
fn stdout_unbuffered() -> io::Result<File> {
    use std::os::fd::AsFd;
    Ok(File::from(io::stdout().as_fd().try_clone_to_owned()?))
}

/// Writes all of `data`, retrying on EINTR; on failure, how many bytes got out and why not.
fn write_fully(out: &mut dyn Write, data: &[u8]) -> Result<(), (usize, io::Error)> {
    let mut written = 0;
    while written < data.len() {
        match out.write(&data[written..]) {
            Ok(0) => return Err((written, io::ErrorKind::WriteZero.into())),
            Ok(n) => written += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err((written, e)),
        }
    }
    Ok(())
}

fn memchr_count(b: &[u8]) -> u64 {
    b.iter().filter(|&&c| c == b'\n').count() as u64
}

/// When a regular file does not end with a newline (an earlier run was killed or hit a full
/// disk mid-line), how many bytes its last line has.
fn torn_tail(f: &File) -> Option<u64> {
    use std::os::fd::AsRawFd;
    use std::os::unix::fs::FileExt;
    let len = f.metadata().ok().filter(|m| m.is_file())?.len();
    // The output is open write-only; the same file is read through its descriptor (no path
    // is looked up again, so nothing can be swapped in between).
    let f = File::open(format!("/proc/self/fd/{}", f.as_raw_fd())).ok()?;
    if len == 0 {
        return None;
    }
    let mut last = [0u8; 1];
    f.read_exact_at(&mut last, len - 1).ok()?;
    if last[0] == b'\n' {
        return None;
    }
    // Only for the message: how long the fragment is (up to 1 MiB back).
    let back = len.min(1 << 20);
    let mut tail = vec![0u8; back as usize];
    f.read_exact_at(&mut tail, len - back).ok()?;
    let start = tail.iter().rposition(|&c| c == b'\n').map_or(0, |i| i + 1);
    Some((tail.len() - start) as u64)
}

/// What a text sink's lines say.
pub trait LineFormat {
    /// Puts the line for `ev` into `line` (empty); false when this output leaves it out.
    fn event(&mut self, ev: &ConnEvent, line: &mut String) -> bool;

    /// Puts the line for a logged packet into `line` (empty); false when this output has
    /// none.
    fn packet(&mut self, _p: &PacketEvent, _line: &mut String) -> bool {
        false
    }

    /// Puts the line for a message of the logger itself into `line` (empty).
    fn program(&mut self, ts: DateTime<Utc>, message: &str, line: &mut String);

    /// Puts the line that follows `ipclog started` into `line`; false when there is none.
    fn header(&mut self, _ts: DateTime<Utc>, _line: &mut String) -> bool {
        false
    }

    /// Puts the line for a local address that came or went into `line`; false when this
    /// output does not show them.
    fn interface(
        &mut self,
        _ts: DateTime<Utc>,
        _up: bool,
        _ifname: &str,
        _addr: IpAddr,
        _line: &mut String,
    ) -> bool {
        false
    }
}

/// A sink writing one line per event or message to a [`TextOut`], as `F` formats them.
pub struct TextSink<F> {
    out: TextOut,
    pub format: F,
    line: String,
    /// A torn last line an earlier run left, to be said after the first program message.
    torn_notice: Option<String>,
}

impl<F: LineFormat> TextSink<F> {
    /// With `say_torn`, a torn last line an earlier run left in the file is said on standard
    /// error now and in the output after its first program message (the line log's readers
    /// count P lines; JSON has never said it).
    pub fn new(mut out: TextOut, format: F, say_torn: bool) -> Self {
        let torn_notice = out.take_torn_at_open().filter(|_| say_torn).map(|n| {
            let m = format!(
                "{}: its last line was incomplete ({n} bytes, left by an earlier run that \
                 stopped mid-line); ended it with a newline",
                out.shown()
            );
            eprintln!("ipclog: {m}");
            m
        });
        TextSink {
            out,
            format,
            line: String::with_capacity(256),
            torn_notice,
        }
    }

    fn write_line(&mut self) {
        self.out.line(&self.line);
    }
}

impl<F: LineFormat> EventSink for TextSink<F> {
    fn start(&mut self, run: &RunInfo) {
        self.program(run.started, "ipclog started");
        self.line.clear();
        if self.format.header(run.started, &mut self.line) {
            self.write_line();
        }
    }

    fn interface(&mut self, ts: DateTime<Utc>, up: bool, ifname: &str, addr: IpAddr) {
        self.line.clear();
        if self.format.interface(ts, up, ifname, addr, &mut self.line) {
            self.write_line();
        }
    }

    fn event(&mut self, ev: &ConnEvent) {
        self.line.clear();
        if self.format.event(ev, &mut self.line) {
            self.write_line();
        }
    }

    fn packet(&mut self, p: &PacketEvent) {
        self.line.clear();
        if self.format.packet(p, &mut self.line) {
            self.write_line();
        }
    }

    fn program(&mut self, ts: DateTime<Utc>, message: &str) {
        self.line.clear();
        self.format.program(ts, message, &mut self.line);
        self.write_line();
        if let Some(m) = self.torn_notice.take() {
            self.program(ts, &m);
        }
    }

    fn flush(&mut self) {
        self.out.flush();
    }

    fn errors(&self) -> u64 {
        self.out.errors()
    }

    fn not_written(&self) -> Option<String> {
        self.out.not_written()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    /// A writer that fails while `fail` is set, like a full disk.
    struct Flaky {
        fail: Arc<Mutex<bool>>,
        data: Arc<Mutex<Vec<u8>>>,
    }

    impl Write for Flaky {
        fn write(&mut self, b: &[u8]) -> io::Result<usize> {
            if *self.fail.lock().unwrap() {
                return Err(io::Error::from_raw_os_error(libc::ENOSPC));
            }
            self.data.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn write_errors_are_counted_and_writing_resumes() {
        let fail = Arc::new(Mutex::new(false));
        let data = Arc::new(Mutex::new(Vec::new()));
        let mut out = TextOut::from_writer(Box::new(Flaky {
            fail: fail.clone(),
            data: data.clone(),
        }));
        out.line("one");
        out.flush();
        *fail.lock().unwrap() = true;
        out.line("two");
        out.line("three");
        out.flush();
        assert_eq!((out.errors(), out.lines_lost), (1, 2));
        *fail.lock().unwrap() = false;
        out.line("four");
        out.flush();
        assert_eq!(
            String::from_utf8(data.lock().unwrap().clone()).unwrap(),
            "one\nfour\n"
        );
        assert_eq!(out.errors(), 1);
    }
}
