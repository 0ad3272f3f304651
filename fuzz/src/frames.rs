//! The capture target's input: a link type, tracker options and a sequence of frames, in a
//! compact binary form a mutator can work on (a pcap file's headers would mostly send mutants
//! to libpcap's "bad file" path instead of to our parser).
//!
//! ```text
//! header:  link selector (u8, index into LINKTYPES), options (u8, see `options`),
//!          first timestamp in microseconds (i64 LE)
//! record:  time since the previous record in microseconds (i32 LE, may go backwards),
//!          captured length (u16 LE), wire length minus captured length (i16 LE),
//!          then the captured bytes (fewer if the input ends)
//! ```

use ipclog_capture::CaptureArgs;

/// Every link type ipclog-capture reads (Link::from_linktype).
pub const LINKTYPES: [i32; 10] = [1, 113, 276, 12, 14, 101, 228, 229, 0, 108];

const HEADER: usize = 10;
const RECORD: usize = 8;

/// A decoded capture input.
pub struct Frames<'a> {
    pub linktype: i32,
    pub args: CaptureArgs,
    /// (timestamp µs, wire length, captured bytes), as `run_frames` takes them.
    pub frames: Vec<(i64, u32, &'a [u8])>,
}

/// Tracker options from one byte, so that inputs reach the limits, timeouts and anomaly
/// paths that the defaults (byte 0) leave alone.
pub fn options(b: u8) -> CaptureArgs {
    let mut a = CaptureArgs {
        rst: [1, 0, 2, 1][(b & 3) as usize],
        ..CaptureArgs::default()
    };
    if b & 4 != 0 {
        a.syn = 0;
    }
    if b & 8 != 0 {
        a.fragment = 0;
    }
    if b & 16 != 0 {
        a.session_limit = 3;
        a.segment_limit = 3;
    }
    if b & 32 != 0 {
        a.long_delay = 100;
        a.long_connect = 1000;
    }
    if b & 64 != 0 {
        a.tcp_timeout = 1;
        a.udp_timeout = 1;
        a.retransmit = 1;
    }
    if b & 128 != 0 {
        a.tcp_timeout = 0;
        a.udp_timeout = 0;
        a.retransmit = 0;
        // Checksums ignored (-C); verified (a file's default) otherwise.
        a.ignore_checksums = true;
    }
    a
}

/// Decodes an input; `None` when it is too short to name a link type.
pub fn decode(data: &[u8]) -> Option<Frames<'_>> {
    if data.len() < HEADER {
        return None;
    }
    let linktype = LINKTYPES[data[0] as usize % LINKTYPES.len()];
    let args = options(data[1]);
    let mut ts = i64::from_le_bytes(data[2..10].try_into().expect("8 bytes"));
    let mut rest = &data[HEADER..];
    let mut frames = Vec::new();
    while rest.len() >= RECORD {
        let dt = i32::from_le_bytes(rest[0..4].try_into().expect("4 bytes"));
        let caplen = u16::from_le_bytes([rest[4], rest[5]]) as usize;
        let extra = i16::from_le_bytes([rest[6], rest[7]]) as i64;
        rest = &rest[RECORD..];
        let (frame, tail) = rest.split_at(caplen.min(rest.len()));
        rest = tail;
        ts = ts.wrapping_add(dt as i64);
        let wire = (frame.len() as i64 + extra).clamp(0, u32::MAX as i64) as u32;
        frames.push((ts, wire, frame));
    }
    Some(Frames {
        linktype,
        args,
        frames,
    })
}

/// Encodes frames of `linktype` (which must be one of LINKTYPES) with options byte `opts`:
/// the inverse of `decode`, for seeds. Gaps beyond an i32 of microseconds are shortened,
/// frames beyond 64 KiB cut.
pub fn encode(linktype: i32, opts: u8, frames: &[(i64, u32, &[u8])]) -> Vec<u8> {
    let sel = LINKTYPES
        .iter()
        .position(|&l| l == linktype)
        .expect("a supported link type");
    let first = frames.first().map_or(0, |f| f.0);
    let mut out = vec![sel as u8, opts];
    out.extend_from_slice(&first.to_le_bytes());
    let mut prev = first;
    for &(ts, wire, data) in frames {
        let dt = (ts - prev).clamp(i32::MIN as i64, i32::MAX as i64) as i32;
        prev = prev.wrapping_add(dt as i64);
        let data = &data[..data.len().min(u16::MAX as usize)];
        let extra = (wire as i64 - data.len() as i64).clamp(i16::MIN as i64, i16::MAX as i64);
        out.extend_from_slice(&dt.to_le_bytes());
        out.extend_from_slice(&(data.len() as u16).to_le_bytes());
        out.extend_from_slice(&(extra as i16).to_le_bytes());
        out.extend_from_slice(data);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encode_then_decode_gives_the_frames_back() {
        let a = [1u8, 2, 3];
        let b = [9u8; 70];
        let frames = [
            (1_700_000_000_000_000, 3, &a[..]),
            (1_700_000_000_000_500, 1514, &b[..]),
            (1_699_999_999_000_000, 70, &b[..]),
        ];
        let enc = encode(276, 5, &frames);
        let d = decode(&enc).unwrap();
        assert_eq!(d.linktype, 276);
        assert_eq!((d.args.rst, d.args.syn), (0, 0));
        assert_eq!(d.frames, frames);
    }
}
