//! Opening a capture: a file (pcap or pcapng, told by its magic number, so that a wrong file
//! is a clear start-up error rather than libpcap's), standard input, a named pipe, or a live
//! interface; then checking its link type and compiling the BPF filter. Everything that can
//! fail before the first packet fails here, with exit code 2.

use std::io::Read;

use pcap::{Activated, Capture};

use crate::wire::Link;
use crate::{usage_error, CaptureArgs, CaptureError};

/// The first four bytes of a capture file: pcap in either byte order with microsecond or
/// nanosecond times, and pcapng's section header block.
const PCAP_MAGICS: [[u8; 4]; 5] = [
    [0xd4, 0xc3, 0xb2, 0xa1],
    [0xa1, 0xb2, 0xc3, 0xd4],
    [0x4d, 0x3c, 0xb2, 0xa1],
    [0xa1, 0xb2, 0x3c, 0x4d],
    [0x0a, 0x0d, 0x0d, 0x0a],
];

/// Opens the file (pcap or pcapng by its magic number; `-` = standard input) or interface.
/// Returns the capture, its name for messages, and for a live capture the descriptor to wait on
/// (live captures are non-blocking so that a stop request and idle time are noticed).
type Opened = (Capture<dyn Activated>, String, Option<std::os::fd::RawFd>);

fn open(args: &CaptureArgs) -> Result<Opened, CaptureError> {
    if let Some(path) = &args.read_file {
        if path == "-" {
            // SAFETY: fd 0 is ours to hand to libpcap, which reads it to the end and closes it.
            let cap = unsafe { Capture::from_raw_fd(0) }.map_err(|e| {
                usage_error(format!(
                    "standard input: not a readable pcap or pcapng capture ({e})"
                ))
            })?;
            return Ok((cap.into(), "standard input".into(), None));
        }
        // A named pipe (or a character device such as /dev/stdin on a pipe) can be read only
        // once: libpcap gets it directly, without our look at the magic number first.
        if std::fs::metadata(path).is_ok_and(|m| !m.is_file() && !m.is_dir()) {
            let cap = Capture::from_file(path)
                .map_err(|e| usage_error(format!("{path}: cannot read capture: {e}")))?;
            return Ok((cap.into(), path.clone(), None));
        }
        let mut f = std::fs::File::open(path)
            .map_err(|e| usage_error(format!("{path}: cannot open: {e}")))?;
        let mut magic = [0u8; 4];
        let mut got = 0;
        while got < 4 {
            match f.read(&mut magic[got..]) {
                Ok(0) => break,
                Ok(n) => got += n,
                Err(e) => return Err(usage_error(format!("{path}: cannot read: {e}"))),
            }
        }
        if got < 4 {
            return Err(usage_error(format!(
                "{path}: not a capture file ({got} bytes, too short for a pcap or pcapng header)"
            )));
        }
        if !PCAP_MAGICS.contains(&magic) {
            return Err(usage_error(format!(
                "{path}: not a pcap or pcapng capture file (starts with {:02x} {:02x} {:02x} {:02x})",
                magic[0], magic[1], magic[2], magic[3]
            )));
        }
        let cap = Capture::from_file(path)
            .map_err(|e| usage_error(format!("{path}: cannot read capture: {e}")))?;
        return Ok((cap.into(), path.clone(), None));
    }
    if let Some(iface) = &args.interface {
        let cap = Capture::from_device(iface.as_str())
            .and_then(|c| {
                // Not immediate mode: libpcap then falls back to TPACKET_V2, whose ring has
                // one snaplen-sized frame per packet (~32 packets in the default 2 MiB), and a
                // flood of small packets overflows it (bench/live-flood.sh: 15 % dropped at
                // 20k packets/s where tcpdump dropped none). TPACKET_V3 packs packets into
                // blocks, handed over when full or after the 100 ms timeout: an event is at
                // most that late.
                let c = c.snaplen(65535).promisc(true).timeout(100);
                match args.buffer_size {
                    Some(kib) => {
                        c.buffer_size(kib.saturating_mul(1024).min(i32::MAX as u32) as i32)
                    }
                    None => c,
                }
                .open()
                .and_then(|c| c.setnonblock())
            })
            .map_err(|e| {
                let msg = e.to_string();
                let lower = msg.to_ascii_lowercase();
                if lower.contains("permission") || lower.contains("not permitted") {
                    usage_error(format!(
                        "capture on {iface}: permission denied (needs root or CAP_NET_RAW): {msg}"
                    ))
                } else if lower.contains("no such device") || lower.contains("doesn't exist") {
                    usage_error(format!("capture on {iface}: no such interface ({msg})"))
                } else {
                    usage_error(format!("capture on {iface}: {msg}"))
                }
            })?;
        use std::os::fd::AsRawFd;
        let fd = cap.as_raw_fd();
        return Ok((cap.into(), iface.clone(), Some(fd)));
    }
    Err(usage_error(
        "no capture source: give -r FILE or -i IFACE".into(),
    ))
}

/// Whether the capture `args` name is a regular file (a path, or standard input redirected
/// from one): reading it never waits for a writer.
pub(crate) fn source_is_regular(args: &CaptureArgs) -> bool {
    match args.read_file.as_deref() {
        Some("-") => {
            // SAFETY: fstat only writes the zero-initialised struct we hand it.
            unsafe {
                let mut st: libc::stat = std::mem::zeroed();
                libc::fstat(0, &mut st) == 0 && st.st_mode & libc::S_IFMT == libc::S_IFREG
            }
        }
        Some(path) => std::fs::metadata(path).is_ok_and(|m| m.is_file()),
        None => false,
    }
}

/// A capture source that is open, of a supported link type, with its filter compiled: what
/// can go wrong before the first packet has gone wrong already, so ipclog can refuse to start
/// without writing a log line.
pub struct OpenCapture {
    pub(crate) cap: Capture<dyn Activated>,
    /// The file's path or the interface, for messages.
    pub(crate) name: String,
    /// For a live capture, the descriptor to wait on.
    pub(crate) live_fd: Option<std::os::fd::RawFd>,
    pub(crate) link: Link,
    /// libpcap's name of the link type, for the summary.
    pub(crate) link_name: String,
    /// libpcap's link type number (for `-w`).
    pub(crate) linktype: i32,
}

/// Opens the file or interface `args` names, checks its link type and compiles the filter.
pub fn open_capture(args: &CaptureArgs) -> Result<OpenCapture, CaptureError> {
    let (mut cap, name, live_fd) = open(args)?;
    let lt = cap.get_datalink();
    let lt_name = lt.get_name().unwrap_or_else(|_| format!("DLT_{}", lt.0));
    let Some(link) = Link::from_linktype(lt.0) else {
        return Err(usage_error(format!(
            "{name}: unsupported link type {} ({lt_name}); supported: Ethernet, Linux cooked \
             (SLL, SLL2), raw IP (12, 14, 101, 228, 229), loopback (0, 108)",
            lt.0
        )));
    };
    if !args.filter.is_empty() {
        let expr = args.filter.join(" ");
        cap.filter(&expr, true)
            .map_err(|e| usage_error(format!("bad filter expression '{expr}': {e}")))?;
    }
    Ok(OpenCapture {
        cap,
        name,
        live_fd,
        link,
        link_name: lt_name,
        linktype: lt.0,
    })
}
