//! `-w FILE`: the captured packets as pcapng (one section, one interface with its name and
//! description, an Enhanced Packet Block per packet, microsecond times), bounded by
//! `--max-size` (writing stops there) or a ring of `--ring N` files of that size (the oldest
//! replaced), so the disk never holds more than N x SIZE of it.
//!
//! Files are made as the trust rules say: a path that is a symbolic link or not a regular file
//! is refused; an existing file is replaced by a new one created with `O_EXCL` and mode 0640
//! (never opened through a name someone may have planted). A failed write is counted, said
//! once, and makes the run's exit status 1; the packets after it are counted as not written
//! (a block cut short would make the rest of the file unreadable).

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;

/// The section header and interface description blocks' types, and the packet block's.
const SHB: u32 = 0x0A0D_0D0A;
const IDB: u32 = 1;
const EPB: u32 = 6;
/// Bytes of an Enhanced Packet Block around its data.
const EPB_OVERHEAD: u64 = 32;
/// Written to the file in batches of about this much.
const BATCH: usize = 64 * 1024;

pub(crate) struct PcapngOut {
    path: String,
    ring: Option<u32>,
    max: Option<u64>,
    /// The headers every file starts with.
    headers: Vec<u8>,
    file: Option<File>,
    /// Bytes in the current file (written or batched).
    size: u64,
    slot: u32,
    batch: Vec<u8>,
    /// Where each packet block in the batch ends (a write cut short keeps the whole ones).
    batch_ends: Vec<usize>,
    /// Bytes of the current file on disk.
    on_disk: u64,
    /// Writing stopped: the size limit without a ring, or a failed write.
    stopped: bool,
    pub(crate) written: u64,
    /// Packets not written: the size limit was reached (no ring), or after a failed write.
    pub(crate) not_written_limit: u64,
    pub(crate) not_written_error: u64,
    /// Packets larger than a whole file may be.
    pub(crate) too_large: u64,
    pub(crate) files: u64,
    pub(crate) error: Option<String>,
}

fn pad4(n: usize) -> usize {
    (n + 3) & !3
}

fn option(out: &mut Vec<u8>, code: u16, value: &[u8]) {
    out.extend_from_slice(&code.to_le_bytes());
    out.extend_from_slice(&(value.len() as u16).to_le_bytes());
    out.extend_from_slice(value);
    out.resize(pad4(out.len()), 0);
}

/// Closes a block started at `start` (type and a length placeholder written): appends the
/// trailing length and fills in the leading one.
fn close_block(out: &mut Vec<u8>, start: usize) {
    let len = (out.len() - start + 4) as u32;
    out.extend_from_slice(&len.to_le_bytes());
    out[start + 4..start + 8].copy_from_slice(&len.to_le_bytes());
}

/// The section header and the interface's description, as every file starts.
fn headers(linktype: u16, if_name: &str, if_desc: &str) -> Vec<u8> {
    let mut h = Vec::new();
    h.extend_from_slice(&SHB.to_le_bytes());
    h.extend_from_slice(&[0; 4]);
    h.extend_from_slice(&0x1A2B_3C4Du32.to_le_bytes());
    h.extend_from_slice(&1u16.to_le_bytes());
    h.extend_from_slice(&0u16.to_le_bytes());
    h.extend_from_slice(&(-1i64).to_le_bytes());
    option(
        &mut h,
        4,
        format!("ipclog {}", env!("CARGO_PKG_VERSION")).as_bytes(),
    );
    option(&mut h, 0, &[]);
    close_block(&mut h, 0);
    let start = h.len();
    h.extend_from_slice(&IDB.to_le_bytes());
    h.extend_from_slice(&[0; 4]);
    h.extend_from_slice(&linktype.to_le_bytes());
    h.extend_from_slice(&0u16.to_le_bytes());
    h.extend_from_slice(&262_144u32.to_le_bytes());
    option(&mut h, 2, if_name.as_bytes());
    option(&mut h, 3, if_desc.as_bytes());
    option(&mut h, 0, &[]);
    close_block(&mut h, start);
    h
}

/// Creates `path` anew: refused when it is a symbolic link or not a regular file; an existing
/// file is removed first and the new one made with `O_EXCL` (mode 0640), so a name planted
/// between the two is never opened.
fn create(path: &str) -> io::Result<File> {
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_symlink() => {
            return Err(io::Error::other("is a symbolic link; not written through"))
        }
        Ok(m) if !m.file_type().is_file() => {
            return Err(io::Error::other("exists and is not a regular file"))
        }
        Ok(_) => std::fs::remove_file(path)?,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o640)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)
}

impl PcapngOut {
    /// Opens the first file (`path`, or `path.0` for a ring) for frames of libpcap link type
    /// `linktype` from interface (or file) `if_name`.
    pub(crate) fn open(
        path: &str,
        max: Option<u64>,
        ring: Option<u32>,
        linktype: u16,
        if_name: &str,
        if_desc: &str,
    ) -> Result<PcapngOut, String> {
        let mut o = PcapngOut {
            path: path.to_string(),
            ring,
            max,
            headers: headers(linktype, if_name, if_desc),
            file: None,
            size: 0,
            slot: 0,
            batch: Vec::with_capacity(BATCH + 65_536),
            batch_ends: Vec::new(),
            on_disk: 0,
            stopped: false,
            written: 0,
            not_written_limit: 0,
            not_written_error: 0,
            too_large: 0,
            files: 0,
            error: None,
        };
        o.start_file().map_err(|e| {
            format!(
                "{}: cannot create capture file: {e}",
                shared::text::escaped(&o.file_name())
            )
        })?;
        Ok(o)
    }

    fn file_name(&self) -> String {
        match self.ring {
            Some(_) => format!("{}.{}", self.path, self.slot),
            None => self.path.clone(),
        }
    }

    fn start_file(&mut self) -> io::Result<()> {
        self.file = Some(create(&self.file_name())?);
        self.files += 1;
        self.on_disk = 0;
        self.batch.extend_from_slice(&self.headers);
        self.size = self.headers.len() as u64;
        Ok(())
    }

    /// Writes one frame: captured at `ts_us`, `wire_len` bytes long on the wire.
    pub(crate) fn packet(&mut self, ts_us: i64, wire_len: u32, data: &[u8]) {
        if self.stopped {
            if self.error.is_some() {
                self.not_written_error += 1;
            } else {
                self.not_written_limit += 1;
            }
            return;
        }
        let block = EPB_OVERHEAD + pad4(data.len()) as u64;
        if let Some(max) = self.max {
            if self.headers.len() as u64 + block > max {
                self.too_large += 1;
                return;
            }
            if self.size + block > max {
                if self.ring.is_none() {
                    self.flush();
                    self.stopped = true;
                    if self.error.is_none() {
                        eprintln!(
                            "ipclog: {}: --max-size reached; no more packets written",
                            shared::text::escaped(&self.path)
                        );
                    }
                    return self.packet(ts_us, wire_len, data);
                }
                self.flush();
                if self.stopped {
                    return self.packet(ts_us, wire_len, data);
                }
                self.file = None;
                self.slot = (self.slot + 1) % self.ring.unwrap_or(1);
                if let Err(e) = self.start_file() {
                    self.fail(e);
                    return self.packet(ts_us, wire_len, data);
                }
            }
        }
        let b = &mut self.batch;
        let start = b.len();
        b.extend_from_slice(&EPB.to_le_bytes());
        b.extend_from_slice(&[0; 4]);
        b.extend_from_slice(&0u32.to_le_bytes());
        let ts = ts_us as u64;
        b.extend_from_slice(&((ts >> 32) as u32).to_le_bytes());
        b.extend_from_slice(&(ts as u32).to_le_bytes());
        b.extend_from_slice(&(data.len() as u32).to_le_bytes());
        b.extend_from_slice(&wire_len.max(data.len() as u32).to_le_bytes());
        b.extend_from_slice(data);
        b.resize(pad4(b.len()), 0);
        close_block(b, start);
        self.batch_ends.push(b.len());
        self.size += block;
        if self.batch.len() >= BATCH {
            self.flush();
        }
    }

    fn fail(&mut self, e: io::Error) {
        if self.error.is_none() {
            eprintln!(
                "ipclog: {}: write failed: {e}; no more packets written",
                shared::text::escaped(&self.file_name())
            );
            self.error = Some(e.to_string());
        }
        self.stopped = true;
    }

    /// Writes what is batched (a live capture's output is flushed at least once a second).
    /// A write cut short (a full disk) keeps the packets whose blocks got out whole and cuts
    /// the file back to the last of them, so what was written stays readable.
    pub(crate) fn flush(&mut self) {
        if self.batch.is_empty() {
            return;
        }
        let Some(f) = self.file.as_mut() else {
            self.batch.clear();
            self.batch_ends.clear();
            return;
        };
        let mut done = 0;
        let mut err = None;
        while done < self.batch.len() {
            match f.write(&self.batch[done..]) {
                Ok(0) => {
                    err = Some(io::Error::from(io::ErrorKind::WriteZero));
                    break;
                }
                Ok(n) => done += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    err = Some(e);
                    break;
                }
            }
        }
        let whole = self.batch_ends.iter().filter(|&&e| e <= done).count();
        self.written += whole as u64;
        match err {
            None => self.on_disk += done as u64,
            Some(e) => {
                self.not_written_error += (self.batch_ends.len() - whole) as u64;
                // Back to the end of the last whole block (or of the headers).
                let keep = self.batch_ends[..whole].last().copied().unwrap_or(0);
                let keep = if whole == 0 && done >= self.headers.len() && self.on_disk == 0 {
                    self.headers.len()
                } else {
                    keep
                };
                let _ = f.set_len(self.on_disk + keep as u64);
                self.fail(e);
            }
        }
        self.batch.clear();
        self.batch_ends.clear();
    }

    /// The failed write, for the end of the run (exit status 1); `None` when none failed.
    pub(crate) fn failure(&self) -> Option<String> {
        self.error.as_ref().map(|e| {
            format!(
                "{}: {} packets not written (write failed: {e})",
                shared::text::escaped(&self.path),
                self.not_written_error
            )
        })
    }
}
