//! What `--sessions` and `-w` add to a run: the session view and the capture file. Both are
//! consumers of what the tracker already knows about each packet (its flow, direction and
//! anomalies) plus the frame itself; with neither asked for, the reader never comes here (the
//! packet path pays one never-taken branch), and with either, a file is read on one thread
//! (the view and the writer need each frame's bytes, which the read-ahead thread does not
//! keep).

mod http;
mod pcapng;
mod view;

use std::collections::VecDeque;
use std::net::IpAddr;

use chrono::{DateTime, Utc};
use rustc_hash::FxHashMap;
use shared::event::{ConnEvent, EventKind};
use shared::sink::EventSink;

use crate::tracker::{HttpFields, Peek, Seen};
use crate::{CaptureArgs, ColorMode, WriteMode};
pub(crate) use pcapng::PcapngOut;
pub(crate) use view::{FrameInfo, View, ViewOptions};

/// A frame held for `--write anomalous`: time, length on the wire, bytes.
type Frame = (i64, u32, Vec<u8>);

/// The session view, the capture file, and the frame being handled.
pub(crate) struct Tap {
    pub(crate) view: Option<View>,
    pub(crate) out: Option<PcapngOut>,
    anomalous: bool,
    /// The frame being handled: its time, length on the wire, bytes; `taken` once a
    /// packet of it was accounted to a flow (a tunnel's inner packet comes second).
    cur: Vec<u8>,
    cur_ts: i64,
    cur_wire: u32,
    cur_taken: bool,
    /// The reassembled datagram's transport head.
    head: Vec<u8>,
    head_size: Option<u32>,
    /// `--write anomalous`: each open flow's frames held until it shows an anomaly, or
    /// `None` once it has (its frames are written as they come).
    held: FxHashMap<u64, Option<Vec<Frame>>>,
    /// Fragments waiting for their datagram (`--write anomalous`).
    frags: VecDeque<(IpAddr, IpAddr, i64, u32, Vec<u8>)>,
    held_frames: usize,
    limit: usize,
    /// Frames `--write anomalous` could not hold (over --segment-limit).
    pub(crate) frames_not_kept: u64,
    /// Connections closed while a frame was handled (collected by [`Collect`]).
    pub(crate) closes: Vec<ConnEvent>,
}

impl Tap {
    /// The view and writer `args` ask for; `None` when neither. `linktype` and `name` (the
    /// interface or file) describe the capture in the file's interface block.
    pub(crate) fn new(
        args: &CaptureArgs,
        linktype: i32,
        name: &str,
        live: bool,
    ) -> Result<Option<Box<Tap>>, String> {
        if !args.sessions && args.write_file.is_none() {
            return Ok(None);
        }
        let view = args.sessions.then(|| {
            let color = match args.color {
                ColorMode::Always => true,
                ColorMode::Never => false,
                // SAFETY: isatty only looks at the descriptor.
                ColorMode::Auto => unsafe { libc::isatty(1) == 1 },
            };
            View::new(
                ViewOptions {
                    all: args.all,
                    live: args.live,
                    view_data: args.view_data,
                    color,
                    quiet: args.quiet,
                    fragment: args.fragment != 0,
                    limit: args.segment_limit.min(usize::MAX as u64) as usize,
                },
                args.dpi == Some(crate::Dpi::Http),
            )
        });
        let out = match &args.write_file {
            Some(p) if p == "-" => {
                return Err(
                    "-w -: standard output is not a capture file here (the line log and \
                     the session view use it); give a file name"
                        .into(),
                )
            }
            Some(p) => {
                let desc = if live {
                    format!("live capture on {name} by ipclog")
                } else {
                    format!("packets read from {name} by ipclog")
                };
                Some(PcapngOut::open(
                    p,
                    args.max_size,
                    args.ring,
                    linktype as u16,
                    name,
                    &desc,
                )?)
            }
            None => None,
        };
        Ok(Some(Box::new(Tap {
            view,
            out,
            anomalous: args.write_mode == WriteMode::Anomalous,
            cur: Vec::with_capacity(2048),
            cur_ts: 0,
            cur_wire: 0,
            cur_taken: false,
            head: Vec::new(),
            head_size: None,
            held: FxHashMap::default(),
            frags: VecDeque::new(),
            held_frames: 0,
            limit: args.segment_limit.min(usize::MAX as u64) as usize,
            frames_not_kept: 0,
            closes: Vec::new(),
        })))
    }

    /// A frame arrives: written at once (`--write all`), else remembered until a packet of
    /// it is accounted.
    pub(crate) fn frame(&mut self, ts_us: i64, wire_len: u32, data: &[u8]) {
        self.cur.clear();
        self.cur.extend_from_slice(data);
        self.cur_ts = ts_us;
        self.cur_wire = wire_len;
        self.cur_taken = false;
        self.head_size = None;
        if !self.anomalous {
            if let Some(o) = &mut self.out {
                o.packet(ts_us, wire_len, data);
            }
        }
    }

    /// The frame was an IP fragment held for its datagram (`--write anomalous` keeps it to
    /// go with the datagram's connection).
    pub(crate) fn fragment_held(&mut self, src: IpAddr, dst: IpAddr) {
        if !self.anomalous || self.out.is_none() {
            return;
        }
        if self.held_frames >= self.limit {
            self.frames_not_kept += 1;
            return;
        }
        self.held_frames += 1;
        let f = std::mem::take(&mut self.cur);
        self.frags
            .push_back((src, dst, self.cur_ts, self.cur_wire, f));
        self.cur_taken = true;
    }

    /// A reassembled datagram's transport head (the view reads its TCP options there).
    pub(crate) fn reassembled(&mut self, head: &[u8], ip_len: u32) {
        self.head.clear();
        self.head.extend_from_slice(head);
        self.head_size = Some(ip_len);
    }

    /// The packet `s` of the current frame was accounted to flow `p` (`None`: dropped).
    /// Returns the connection's HTTP fields when this packet completed its first request or
    /// response (`--dpi http`).
    pub(crate) fn packet(&mut self, s: &Seen, p: Option<Peek<'_>>) -> Option<HttpFields> {
        let first = !self.cur_taken;
        self.cur_taken = true;
        let Some(p) = p else {
            if first && self.anomalous && self.out.is_some() {
                self.frames_not_kept += 1;
            }
            return None;
        };
        let mut http = None;
        if let (Some(v), true) = (&mut self.view, p.tcp && s.proto == 6) {
            let (l4, size): (&[u8], u32) = match self.head_size {
                Some(n) => (&self.head, n),
                None => (
                    tcp_header(&self.cur, s),
                    if first { self.cur_wire } else { s.ip_len },
                ),
            };
            http = v.packet(s, &p, &FrameInfo { l4, size });
        }
        if self.anomalous && self.out.is_some() {
            self.hold_or_write(s, &p, first);
        }
        http
    }

    fn hold_or_write(&mut self, s: &Seen, p: &Peek<'_>, first: bool) {
        let out = self.out.as_mut().expect("checked");
        let entry = self.held.entry(p.id).or_insert_with(|| Some(Vec::new()));
        // The fragments of this datagram go with it.
        let mut mine = Vec::new();
        if s.fragments > 0 {
            let (src, dst) = (s.src, s.dst);
            self.frags.retain_mut(|f| {
                if f.0 == src && f.1 == dst {
                    mine.push((f.2, f.3, std::mem::take(&mut f.4)));
                    false
                } else {
                    true
                }
            });
            self.held_frames -= mine.len();
        }
        if first {
            mine.push((self.cur_ts, self.cur_wire, self.cur.clone()));
        }
        if !p.anom.is_empty() {
            if let Some(frames) = entry.take() {
                self.held_frames -= frames.len();
                for (t, w, f) in frames {
                    out.packet(t, w, &f);
                }
            }
        }
        match entry {
            None => {
                for (t, w, f) in mine {
                    out.packet(t, w, &f);
                }
            }
            Some(frames) => {
                for m in mine {
                    if self.held_frames < self.limit {
                        self.held_frames += 1;
                        frames.push(m);
                    } else {
                        self.frames_not_kept += 1;
                    }
                }
            }
        }
    }

    /// Handles the connections closed meanwhile: their blocks, their held frames.
    pub(crate) fn closed(&mut self, live: bool) {
        let closes = std::mem::take(&mut self.closes);
        for ev in &closes {
            if let Some(v) = &mut self.view {
                v.closed(ev, live);
            }
            if let Some(entry) = self.held.remove(&ev.conn_id) {
                if let (Some(frames), Some(out)) = (entry, self.out.as_mut()) {
                    self.held_frames -= frames.len();
                    // A long connection is known only at its end.
                    if !ev.anomalies.is_empty() {
                        for (t, w, f) in frames {
                            out.packet(t, w, &f);
                        }
                    }
                }
            }
        }
        self.closes = closes;
        self.closes.clear();
    }

    pub(crate) fn flush(&mut self) {
        if let Some(v) = &mut self.view {
            v.flush();
        }
        if let Some(o) = &mut self.out {
            o.flush();
        }
    }

    /// Held fragments that never made a datagram, at the end.
    pub(crate) fn finish(&mut self) {
        if self.anomalous {
            self.held_frames -= self.frags.len();
            self.frags.clear();
        }
        self.flush();
    }

    /// What could not be written (exit status 1), `None` when everything was.
    pub(crate) fn failures(&self) -> Option<String> {
        let mut v = Vec::new();
        if let Some(e) = self.out.as_ref().and_then(|o| o.failure()) {
            v.push(e);
        }
        if let Some(e) = self.view.as_ref().and_then(|w| w.error.as_ref()) {
            v.push(format!("standard output: session view not written: {e}"));
        }
        (!v.is_empty()).then(|| v.join("; "))
    }

    /// The `-w` figures for the summary line.
    pub(crate) fn describe(&self) -> Option<String> {
        let o = self.out.as_ref()?;
        let mut s = format!(
            "write_file packets_written={} files={} not_written_max_size={} too_large={} \
             not_written_error={}",
            o.written, o.files, o.not_written_limit, o.too_large, o.not_written_error
        );
        if self.anomalous {
            s.push_str(&format!(" not_kept={}", self.frames_not_kept));
        }
        Some(s)
    }
}

/// The TCP header of packet `s` in `frame` and what follows: found by its ports and sequence
/// number (the frame is not parsed a second time: the header parsers keep their one caller on
/// the packet path); empty when not there.
fn tcp_header<'a>(frame: &'a [u8], s: &Seen) -> &'a [u8] {
    let mut pat = [0u8; 8];
    pat[..2].copy_from_slice(&s.l4.sport.unwrap_or(0).to_be_bytes());
    pat[2..4].copy_from_slice(&s.l4.dport.unwrap_or(0).to_be_bytes());
    pat[4..].copy_from_slice(&s.l4.seq.to_be_bytes());
    // Link and IP headers (IPv6 extension headers and tunnels included) come first.
    let end = frame.len().min(1024);
    frame[..end]
        .windows(8)
        .position(|w| w == pat)
        .map_or(&[][..], |at| &frame[at..])
}

/// The sink as the tracker sees it while a tap is on: every event goes on to `inner`, and
/// each close is also kept for the view and the writer.
pub(crate) struct Collect<'a> {
    pub(crate) inner: &'a mut dyn EventSink,
    pub(crate) closes: &'a mut Vec<ConnEvent>,
}

impl EventSink for Collect<'_> {
    fn event(&mut self, ev: &ConnEvent) {
        self.inner.event(ev);
        if ev.kind == EventKind::Close {
            self.closes.push(ev.clone());
        }
    }

    fn program(&mut self, ts: DateTime<Utc>, message: &str) {
        self.inner.program(ts, message);
    }

    fn flush(&mut self) {
        self.inner.flush();
    }

    fn errors(&self) -> u64 {
        self.inner.errors()
    }
}
