//! Streaming a log file line by line.

use std::io::{self, BufRead};

use super::parse::{err, parse_line, LogLine, ParseError};

/// A malformed line: where and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineError {
    pub line_no: u64,
    pub error: ParseError,
}

impl std::fmt::Display for LineError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "line {}: {}", self.line_no, self.error)
    }
}

/// Streams a log line by line with one reused buffer, so memory does not grow with the file.
/// Non-UTF-8 lines are reported as errors, never guessed at.
///
/// A last line without its newline is one incomplete line: a writer cut off, or one still
/// writing it (a running ipclog appends while constat reads). It is reported once, as an error,
/// and the reader ends there: reading on would take the rest the writer appends meanwhile for a
/// line of its own.
pub struct LogReader<R> {
    inner: R,
    buf: Vec<u8>,
    line_no: u64,
    max_line: usize,
    /// An incomplete last line was returned: nothing after it is read.
    ended: bool,
}

/// The longest line [`LogReader`] accepts by default. ipclog's lines are about a hundred bytes;
/// a "line" of a megabyte means the input is something else, and reading on would hold all of
/// it in memory.
pub const MAX_LINE: usize = 1 << 20;

impl<R: BufRead> LogReader<R> {
    pub fn new(inner: R) -> Self {
        LogReader {
            inner,
            buf: Vec::with_capacity(256),
            line_no: 0,
            max_line: MAX_LINE,
            ended: false,
        }
    }

    /// Sets the longest accepted line (bytes, without the newline).
    pub fn with_max_line(mut self, max_line: usize) -> Self {
        self.max_line = max_line;
        self
    }

    /// Reads up to and including the next newline into `buf`; fails with `InvalidData` once
    /// the line outgrows `max_line`, so input without newlines cannot grow memory unbounded.
    fn read_line_capped(&mut self) -> io::Result<usize> {
        let mut total = 0;
        loop {
            let (done, used) = {
                let avail = match self.inner.fill_buf() {
                    Ok(a) => a,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => return Err(e),
                };
                if avail.is_empty() {
                    return Ok(total);
                }
                match avail.iter().position(|&b| b == b'\n') {
                    Some(i) => {
                        self.buf.extend_from_slice(&avail[..=i]);
                        (true, i + 1)
                    }
                    None => {
                        self.buf.extend_from_slice(avail);
                        (false, avail.len())
                    }
                }
            };
            self.inner.consume(used);
            total += used;
            if self.buf.len() > self.max_line + 1 {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!(
                        "line {} is longer than {} bytes: this is not an ipclog log",
                        self.line_no + 1,
                        self.max_line
                    ),
                ));
            }
            if done {
                return Ok(total);
            }
        }
    }

    /// The next line, parsed; `Ok(None)` at end of input; `Err` only for I/O errors.
    #[allow(clippy::type_complexity)]
    pub fn next_line(&mut self) -> io::Result<Option<(u64, Result<LogLine<'_>, ParseError>)>> {
        self.buf.clear();
        if self.ended {
            return Ok(None);
        }
        let n = self.read_line_capped()?;
        if n == 0 {
            return Ok(None);
        }
        self.line_no += 1;
        let complete = self.buf.last() == Some(&b'\n');
        if complete {
            self.buf.pop();
        } else {
            self.ended = true;
        }
        let parsed = match std::str::from_utf8(&self.buf) {
            // Checked first: a writer may stop in the middle of a UTF-8 sequence.
            _ if !complete => Err(err(
                "line",
                "incomplete last line (no newline: cut off, or still being written)",
            )),
            Err(e) => Err(err(
                "line",
                format!("not UTF-8 text (byte {})", e.valid_up_to() + 1),
            )),
            Ok(s) => parse_line(s),
        };
        Ok(Some((self.line_no, parsed)))
    }

    pub fn line_no(&self) -> u64 {
        self.line_no
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reader_reports_truncation_and_binary() {
        let data = b"P 2004-08-05-16:41:22 ipclog started\n\xff\xfe\nO 2004-08-05";
        let mut r = LogReader::new(&data[..]);
        assert!(matches!(
            r.next_line().unwrap(),
            Some((1, Ok(LogLine::Program { .. })))
        ));
        let (n, res) = r.next_line().unwrap().unwrap();
        assert_eq!(n, 2);
        assert!(res.unwrap_err().reason.contains("UTF-8"));
        let (n, res) = r.next_line().unwrap().unwrap();
        assert_eq!(n, 3);
        assert!(res.unwrap_err().reason.contains("incomplete last line"));
        assert!(r.next_line().unwrap().is_none());
    }

    /// A log that grows while it is read: the first reads end in the middle of a line (EOF),
    /// the writer then appends the line's rest.
    struct Growing(Vec<&'static [u8]>);

    impl std::io::Read for Growing {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            if self.0.is_empty() {
                return Ok(0);
            }
            let chunk = self.0.remove(0);
            buf[..chunk.len()].copy_from_slice(chunk);
            Ok(chunk.len())
        }
    }

    #[test]
    fn an_incomplete_last_line_is_one_error_and_its_tail_is_never_read() {
        let log = Growing(vec![
            b"P 2004-08-05-16:41:22 ipclog started\nO 2004-08-05-16:4",
            b"",
            b"1:37 udp  ppp0            217.237.151.97  32799 53    -      -\n",
        ]);
        let mut r = LogReader::new(std::io::BufReader::new(log));
        assert!(matches!(
            r.next_line().unwrap(),
            Some((1, Ok(LogLine::Program { .. })))
        ));
        let (n, res) = r.next_line().unwrap().unwrap();
        assert_eq!(n, 2);
        assert_eq!(
            res.unwrap_err().to_string(),
            "line: incomplete last line (no newline: cut off, or still being written)"
        );
        assert!(
            r.next_line().unwrap().is_none(),
            "the rest of the line was read as a line of its own"
        );
        assert!(r.next_line().unwrap().is_none());
        // Cut inside a UTF-8 sequence: still the incomplete line, not a bad encoding.
        let mut r = LogReader::new(&b"I 2004-08-05-16:41:22 UP \xc3"[..]);
        let (_, res) = r.next_line().unwrap().unwrap();
        assert!(res.unwrap_err().reason.starts_with("incomplete"));
    }

    #[test]
    fn reader_stops_runaway_lines_only() {
        let ok = b"P 2004-08-05-16:41:22 x\n".repeat(1000);
        let mut r = LogReader::new(std::io::BufReader::with_capacity(7, &ok[..])).with_max_line(30);
        let mut n = 0;
        while let Some((_, res)) = r.next_line().unwrap() {
            assert!(res.is_ok());
            n += 1;
        }
        assert_eq!(n, 1000);
        let long = vec![b'A'; 1000];
        let mut r =
            LogReader::new(std::io::BufReader::with_capacity(64, &long[..])).with_max_line(100);
        let e = r.next_line().unwrap_err();
        assert!(e.to_string().contains("longer than 100 bytes"), "{e}");
        assert!(r.buf.len() <= 100 + 64 + 1, "{}", r.buf.len());
    }
}
