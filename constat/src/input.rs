//! The logs to read: several `-f` in the order given, each a path or a glob (its matches
//! oldest first, as logrotate numbers them), each plain text, gzip (one or more members), zstd or
//! an SQLite history, told apart by their first bytes, never by their names. All of them feed
//! one [`Scan`], so a connection opened in `ipclog.log.1` and closed in `ipclog.log` is one
//! connection.

use std::cell::Cell;
use std::io::{self, BufRead, BufReader, IsTerminal, Read};
use std::path::{Path, PathBuf};
use std::rc::Rc;

use chrono::NaiveDate;
use shared::logfmt::{LogLine, LogReader};
use shared::text::escaped;

use crate::db;
use crate::scan::Scan;

/// Exit status and message.
pub type Failure = (u8, String);

const GZIP_MAGIC: &[u8] = &[0x1f, 0x8b];
const ZSTD_MAGIC: &[u8] = &[0x28, 0xb5, 0x2f, 0xfd];

/// One input: a path, or standard input.
#[derive(Debug, Clone)]
pub struct Input {
    pub path: PathBuf,
    pub stdin: bool,
    /// A PostgreSQL history's `postgresql://` URL rather than a file.
    pub pg: bool,
}

impl Input {
    pub fn shown(&self) -> String {
        if self.stdin {
            "<stdin>".to_string()
        } else if self.pg {
            store::pg::shown(&self.path.to_string_lossy())
        } else {
            escaped(&self.path.display().to_string()).into_owned()
        }
    }
}

fn is_glob(s: &str) -> bool {
    s.contains(['*', '?', '['])
}

/// Where a rotated log sorts: the current log last, `.N` (and `.N.gz`) by N descending,
/// anything else (dated rotations, `-20261129.gz`) by name, before the numbered ones.
fn rotation_key(path: &Path, base_len: usize) -> (u8, std::cmp::Reverse<u64>, String) {
    let name = path.to_string_lossy();
    let rest = name.get(base_len..).unwrap_or("");
    let rest = rest
        .strip_suffix(".gz")
        .or_else(|| rest.strip_suffix(".zst"))
        .unwrap_or(rest);
    if rest.is_empty() {
        return (2, std::cmp::Reverse(0), name.into_owned());
    }
    if let Some(n) = rest.strip_prefix('.').and_then(|n| n.parse::<u64>().ok()) {
        return (1, std::cmp::Reverse(n), name.into_owned());
    }
    (0, std::cmp::Reverse(0), name.into_owned())
}

/// The inputs of the `-f` options: globs expanded (oldest first), every file checked to be
/// there and readable before anything is read, so a missing one among several is an error at
/// start (exit 2), not half a report.
pub fn expand(files: &[PathBuf]) -> Result<Vec<Input>, Failure> {
    let mut out = Vec::new();
    for f in files {
        if f.as_os_str() == "-" {
            out.push(Input {
                path: f.clone(),
                stdin: true,
                pg: false,
            });
            continue;
        }
        let text = f.to_string_lossy();
        if store::pg::is_url(&text) {
            out.push(Input {
                path: f.clone(),
                stdin: false,
                pg: true,
            });
            continue;
        }
        if !f.exists() && is_glob(&text) {
            let shown = escaped(&text).into_owned();
            let paths = glob::glob(&text).map_err(|e| (2, format!("{shown}: bad pattern: {e}")))?;
            let mut found: Vec<PathBuf> = Vec::new();
            for p in paths {
                match p {
                    Ok(p) if p.is_file() => found.push(p),
                    Ok(_) => {}
                    Err(e) => return Err((2, format!("{shown}: {}", escaped(&e.to_string())))),
                }
            }
            if found.is_empty() {
                return Err((2, format!("{shown}: no file matches")));
            }
            let base_len = found
                .iter()
                .map(|p| p.to_string_lossy().len())
                .min()
                .unwrap_or(0);
            found.sort_by_cached_key(|p| rotation_key(p, base_len));
            out.extend(found.into_iter().map(|path| Input {
                path,
                stdin: false,
                pg: false,
            }));
            continue;
        }
        out.push(Input {
            path: f.clone(),
            stdin: false,
            pg: false,
        });
    }
    if out.iter().filter(|i| i.stdin).count() > 1 {
        return Err((2, "standard input (-f -) can be read only once".into()));
    }
    for i in out.iter().filter(|i| !i.stdin && !i.pg) {
        let shown = i.shown();
        match std::fs::metadata(&i.path) {
            Ok(m) if m.is_dir() => return Err((2, format!("{shown}: is a directory, not a log"))),
            Ok(_) => {}
            Err(e) => return Err((2, format!("{shown}: cannot open log: {e}"))),
        }
    }
    Ok(out)
}

/// A reader that counts the bytes read through it (the compressed offset of an error, the
/// progress bar).
struct Counted<R> {
    inner: R,
    n: Rc<Cell<u64>>,
}

impl<R: Read> Read for Counted<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let k = self.inner.read(buf)?;
        self.n.set(self.n.get() + k as u64);
        Ok(k)
    }
}

/// What reading the inputs needs to know.
pub struct Options {
    pub range: Option<(NaiveDate, NaiveDate)>,
    pub verbose: bool,
    /// Show a progress bar (stderr is a terminal and the input is large).
    pub progress: bool,
    /// With a PostgreSQL history: only this logger's connections (`--host-name`).
    pub host_name: Option<String>,
}

/// Below this many bytes a scan takes a moment, and a bar would only flicker.
const PROGRESS_MIN_BYTES: u64 = 64 << 20;

/// Whether a progress bar is worth showing for these inputs.
pub fn wants_progress(inputs: &[Input]) -> bool {
    io::stderr().is_terminal()
        && inputs
            .iter()
            .filter(|i| !i.stdin)
            .filter_map(|i| std::fs::metadata(&i.path).ok())
            .map(|m| m.len())
            .sum::<u64>()
            >= PROGRESS_MIN_BYTES
}

/// Reads every input, in order, into `scan`.
pub fn read_all(inputs: &[Input], opts: &Options, scan: &mut Scan) -> Result<(), Failure> {
    let total: u64 = inputs
        .iter()
        .filter(|i| !i.stdin)
        .filter_map(|i| std::fs::metadata(&i.path).ok())
        .map(|m| m.len())
        .sum();
    let bar = opts.progress.then(|| {
        let b = indicatif::ProgressBar::with_draw_target(
            Some(total),
            indicatif::ProgressDrawTarget::stderr(),
        );
        if let Ok(style) =
            indicatif::ProgressStyle::with_template("{msg} [{bar:40}] {bytes}/{total_bytes} {eta}")
        {
            b.set_style(style.progress_chars("=> "));
        }
        b
    });
    let mut done = 0u64;
    for input in inputs {
        if let Some(b) = &bar {
            b.set_message(input.shown());
        }
        let res = read_one(input, opts, scan, bar.as_ref(), done);
        if let Err(e) = res {
            if let Some(b) = &bar {
                b.finish_and_clear();
            }
            return Err(e);
        }
        done += std::fs::metadata(&input.path).map(|m| m.len()).unwrap_or(0);
    }
    if let Some(b) = &bar {
        b.finish_and_clear();
    }
    Ok(())
}

/// Whether `path` is an SQLite database (by its first bytes).
pub fn is_sqlite(path: &Path) -> bool {
    let mut head = [0u8; 16];
    std::fs::File::open(path)
        .and_then(|mut f| f.read_exact(&mut head))
        .is_ok()
        && &head == db::SQLITE_MAGIC
}

/// What a read error in the middle of a log says: the file, the last line read and, for
/// a compressed one, how far into the file.
pub fn read_error(
    shown: &str,
    codec: Option<&str>,
    last: u64,
    consumed: u64,
    e: &io::Error,
) -> String {
    if let Some(c) = codec {
        format!(
            "{shown}: corrupt {c} data after line {last} (near compressed byte {consumed}): {e}"
        )
    } else {
        format!("{shown}: read error after line {last}: {e}")
    }
}

/// Opens a text log (plain, gzip or zstd, by content): the reader, its compression, and the
/// count of bytes read from the file.
pub fn open_text(input: &Input) -> Result<TextLog, Failure> {
    match open_any(input)? {
        Opened::Text(r, codec, n) => Ok((r, codec, n)),
        Opened::Db => Err((
            2,
            format!("{}: an SQLite history, not a log", input.shown()),
        )),
    }
}

/// A text log's reader, its compression (`gzip`, `zstd`), and the bytes read from its file
/// so far.
pub type TextLog = (Box<dyn BufRead>, Option<&'static str>, Rc<Cell<u64>>);

enum Opened {
    Db,
    Text(Box<dyn BufRead>, Option<&'static str>, Rc<Cell<u64>>),
}

fn open_any(input: &Input) -> Result<Opened, Failure> {
    let shown = input.shown();
    let raw: Box<dyn Read> = if input.stdin {
        Box::new(io::stdin().lock())
    } else {
        match std::fs::File::open(&input.path) {
            Ok(f) => Box::new(f),
            Err(e) => return Err((2, format!("{shown}: cannot open log: {e}"))),
        }
    };
    let consumed = Rc::new(Cell::new(0u64));
    let mut raw = BufReader::with_capacity(
        256 * 1024,
        Counted {
            inner: raw,
            n: consumed.clone(),
        },
    );
    let head = raw
        .fill_buf()
        .map_err(|e| (2, format!("{shown}: cannot read log: {e}")))?;
    if head.starts_with(db::SQLITE_MAGIC) {
        if input.stdin {
            return Err((2, "an SQLite history cannot be read from stdin".into()));
        }
        return Ok(Opened::Db);
    }
    let (codec, reader): (_, Box<dyn BufRead>) = if head.starts_with(GZIP_MAGIC) {
        let d = flate2::bufread::MultiGzDecoder::new(raw);
        (
            Some("gzip"),
            Box::new(BufReader::with_capacity(256 * 1024, d)),
        )
    } else if head.starts_with(ZSTD_MAGIC) {
        // Reads frame after frame, as `zstdcat` does.
        let d = zstd::stream::read::Decoder::with_buffer(raw)
            .map_err(|e| (2, format!("{shown}: cannot read zstd data: {e}")))?;
        (
            Some("zstd"),
            Box::new(BufReader::with_capacity(256 * 1024, d)),
        )
    } else {
        (None, Box::new(raw))
    };
    Ok(Opened::Text(reader, codec, consumed))
}

fn read_one(
    input: &Input,
    opts: &Options,
    scan: &mut Scan,
    bar: Option<&indicatif::ProgressBar>,
    done: u64,
) -> Result<(), Failure> {
    let shown = input.shown();
    if input.pg {
        let url = input.path.to_string_lossy();
        let host = opts.host_name.as_deref();
        return crate::pg::scan_pg(&url, host, opts.range, scan, opts.verbose).map_err(|m| (2, m));
    }
    match open_any(input)? {
        Opened::Db => db::scan_db(&input.path, opts.range, scan, opts.verbose).map_err(|m| (2, m)),
        Opened::Text(reader, codec, consumed) => {
            read_log(reader, &shown, codec, &consumed, opts, scan, bar, done)
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn read_log(
    mut reader: Box<dyn BufRead>,
    shown: &str,
    codec: Option<&str>,
    consumed: &Rc<Cell<u64>>,
    opts: &Options,
    scan: &mut Scan,
    bar: Option<&indicatif::ProgressBar>,
    done: u64,
) -> Result<(), Failure> {
    let what = codec.map_or("log".to_string(), |c| format!("{c} data"));
    let head = reader.fill_buf().map_err(|e| {
        (
            2,
            format!(
                "{shown}: cannot read {what}: {e}{}",
                if codec.is_some() {
                    " (corrupt at its start)"
                } else {
                    ""
                }
            ),
        )
    })?;
    // A NUL byte near the start means this is no text log at all (a capture, a database of
    // another kind): say so instead of reporting thousands of bad lines.
    if let Some(pos) = head.iter().take(4096).position(|&b| b == 0) {
        return Err((
            2,
            format!(
                "{shown}: not an ipclog log (binary data at byte {}{}); constat reads ipclog's \
                 text log (plain, gzip or zstd) or its SQLite history",
                pos + 1,
                if codec.is_some() {
                    " after decompression"
                } else {
                    ""
                }
            ),
        ));
    }
    if head.is_empty() && opts.verbose {
        eprintln!("constat: {shown}: empty log");
    }
    let mut log = LogReader::new(reader);
    let mut last = 0;
    loop {
        let next = log
            .next_line()
            .map_err(|e| (1, read_error(shown, codec, last, consumed.get(), &e)))?;
        let Some((line_no, parsed)) = next else {
            break;
        };
        last = line_no;
        if line_no % 65536 == 0 {
            if let Some(b) = bar {
                b.set_position(done + consumed.get());
            }
        }
        let res = match parsed {
            Ok(LogLine::Conn(c)) => scan.line(&c),
            Ok(LogLine::Packet(p)) => {
                scan.packet(&p);
                Ok(())
            }
            Ok(LogLine::Program { ts, message }) => scan.program(ts.date(), message),
            Ok(_) => Ok(()),
            Err(e) => Err(e),
        };
        if let Err(e) = res {
            scan.errors += 1;
            if opts.verbose {
                eprintln!("{shown}:{line_no}: {}", escaped(&e.to_string()));
            }
        }
    }
    if opts.verbose {
        eprintln!(
            "constat: {shown}: {last} lines, {} closes without an open (opened before the log \
             started) so far, {} connections still open at its end",
            scan.unmatched_closes,
            scan.open_count()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotated_logs_sort_oldest_first() {
        let mut v: Vec<PathBuf> = [
            "/l/ipclog.log",
            "/l/ipclog.log.1",
            "/l/ipclog.log.10.gz",
            "/l/ipclog.log.2.gz",
        ]
        .map(PathBuf::from)
        .to_vec();
        v.sort_by_cached_key(|p| rotation_key(p, "/l/ipclog.log".len()));
        let names: Vec<_> = v.iter().map(|p| p.to_string_lossy().into_owned()).collect();
        assert_eq!(
            names,
            [
                "/l/ipclog.log.10.gz",
                "/l/ipclog.log.2.gz",
                "/l/ipclog.log.1",
                "/l/ipclog.log"
            ]
        );
        let mut d: Vec<PathBuf> = ["/l/x.log", "/l/x.log-20261129.gz", "/l/x.log-20261128.gz"]
            .map(PathBuf::from)
            .to_vec();
        d.sort_by_cached_key(|p| rotation_key(p, "/l/x.log".len()));
        assert_eq!(d[0], PathBuf::from("/l/x.log-20261128.gz"));
        assert_eq!(d[2], PathBuf::from("/l/x.log"));
    }
}
