//! The session view (`--sessions`, miruo's display): each TCP session's packets, one line
//! each, with miruo's per-side TCP states, a direction arrow carrying the flags, sequence and
//! acknowledgement numbers, size, fragment mark and TCP options; a block per session when it
//! ends (the tracker's close event decides whether it is shown: an anomaly, or `--all`), or
//! every packet as it comes (`--live`).
//!
//! A session keeps only the lines it may show (handshake, close, anomalous, the first
//! `--view-data` others); the rest are counted and shown as an elided run (`id:****`). The
//! lines held by all sessions together are bounded by `--segment-limit`; those not kept are
//! counted per session and in all.

use std::fmt::Write as _;
use std::io::{self, Write};

use rustc_hash::FxHashMap;
use shared::event::{Anomalies, ConnEvent, FlowTuple};

use super::http::{Http, HttpNote};
use crate::tracker::{HttpFields, Peek, Seen};
use crate::wire::{ACK, FIN, PSH, RST, SYN};

const URG: u8 = 0x20;

/// miruo's TCP states, per side.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum St {
    Closed,
    SynSent,
    SynRecv,
    Established,
    FinWait1,
    FinWait2,
    CloseWait,
    LastAck,
    TimeWait,
}

impl St {
    fn name(self) -> &'static str {
        match self {
            St::Closed => "CLOSED",
            St::SynSent => "SYN_SENT",
            St::SynRecv => "SYN_RECV",
            St::Established => "ESTABLISHED",
            St::FinWait1 => "FIN_WAIT1",
            St::FinWait2 => "FIN_WAIT2",
            St::CloseWait => "CLOSE_WAIT",
            St::LastAck => "LAST_ACK",
            St::TimeWait => "TIME_WAIT",
        }
    }

    fn opening(self) -> bool {
        matches!(self, St::SynSent | St::SynRecv)
    }

    fn closing(self) -> bool {
        !matches!(self, St::Established | St::SynSent | St::SynRecv)
    }

    fn has_fin(self) -> bool {
        matches!(
            self,
            St::FinWait1 | St::FinWait2 | St::LastAck | St::TimeWait
        )
    }
}

/// How the view prints.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ViewOptions {
    pub all: bool,
    pub live: bool,
    pub view_data: u32,
    pub color: bool,
    pub quiet: bool,
    pub fragment: bool,
    pub limit: usize,
}

/// One packet line.
struct Line {
    pid: u64,
    ts_us: i64,
    dir: u8,
    flags: u8,
    st: [St; 2],
    seq: u32,
    ack: u32,
    size: u32,
    frag: bool,
    opts: String,
    marker: String,
    /// Packets left out just before this one.
    elided_before: bool,
}

struct Session {
    uid: String,
    orig: FlowTuple,
    first_us: i64,
    last_us: i64,
    pkts: u64,
    bytes: u64,
    st: [St; 2],
    /// The sequence number just past each side's FIN (to see it acknowledged).
    fin_end: [Option<u32>; 2],
    last_syn_us: [Option<i64>; 2],
    anom: Anomalies,
    lines: Vec<Line>,
    others: u32,
    elided: bool,
    /// Lines not kept for --segment-limit.
    not_kept: u64,
    http: Option<Box<Http>>,
}

/// Counts for the statistics block.
#[derive(Debug, Default, Clone)]
pub(crate) struct ViewStats {
    pub sessions: u64,
    pub shown: u64,
    pub lines_held: u64,
    pub lines_held_max: u64,
    pub lines_not_kept: u64,
    pub bad_options: u64,
    pub write_errors: u64,
}

pub(crate) struct View {
    o: ViewOptions,
    dpi_http: bool,
    sessions: FxHashMap<u64, Session>,
    out: io::BufWriter<io::Stdout>,
    pub(crate) stats: ViewStats,
    /// Standard output was closed (EPIPE): stop printing, quietly.
    closed: bool,
    pub(crate) error: Option<String>,
}

/// What the view needs of the frame a packet came in.
pub(crate) struct FrameInfo<'a> {
    /// The TCP header and what follows of the segment, as captured (empty when unknown).
    pub l4: &'a [u8],
    /// The frame's length on the wire (or the reassembled datagram's IP length).
    pub size: u32,
}

impl View {
    pub(crate) fn new(o: ViewOptions, dpi_http: bool) -> View {
        View {
            o,
            dpi_http,
            sessions: FxHashMap::default(),
            out: io::BufWriter::with_capacity(64 * 1024, io::stdout()),
            stats: ViewStats::default(),
            closed: false,
            error: None,
        }
    }

    /// One TCP packet `s`, accounted to the flow `p`. Returns the session's HTTP fields when
    /// this packet completed its first request or response.
    pub(crate) fn packet(
        &mut self,
        s: &Seen,
        p: &Peek<'_>,
        fr: &FrameInfo<'_>,
    ) -> Option<HttpFields> {
        let o = self.o;
        let new = !self.sessions.contains_key(&p.id);
        if new {
            self.stats.sessions += 1;
            let first = s.l4.flags & SYN != 0;
            let st = if first { St::Closed } else { St::Established };
            self.sessions.insert(
                p.id,
                Session {
                    uid: p.uid(),
                    orig: *p.orig,
                    first_us: s.ts_us,
                    last_us: s.ts_us,
                    pkts: 0,
                    bytes: 0,
                    st: [st; 2],
                    fin_end: [None; 2],
                    last_syn_us: [None; 2],
                    anom: Anomalies::default(),
                    lines: Vec::new(),
                    others: 0,
                    elided: false,
                    not_kept: 0,
                    http: self.dpi_http.then(|| Box::new(Http::default())),
                },
            );
        }
        let ses = self.sessions.get_mut(&p.id).expect("just inserted");
        let d = p.dir;
        let fl = s.l4.flags;
        let before = ses.st;
        step(ses, d, s);
        // Markers: what the tracker counted for this very packet.
        let mut marker = String::new();
        let mut add = |m: String| {
            if !marker.is_empty() {
                marker.push_str(", ");
            }
            marker.push_str(&m);
        };
        if p.anom.retransmits > ses.anom.retransmits {
            add(format!("retransmitted after {} ms", p.rxmit_gap_us / 1000));
        }
        if p.anom.syn_retransmits > ses.anom.syn_retransmits {
            let gap = ses.last_syn_us[d].map_or(0, |t| (s.ts_us - t) / 1000);
            add(format!("SYN retransmitted after {gap} ms"));
        }
        if p.anom.resets > ses.anom.resets {
            add("RST".into());
        }
        if p.anom.long_delays > ses.anom.long_delays {
            add(format!("delayed {} ms", (s.ts_us - ses.last_us) / 1000));
        }
        if s.fragments > 0 && o.fragment {
            add(format!("{} IP fragments", s.fragments));
        }
        if fl & SYN != 0 && fl & RST == 0 {
            ses.last_syn_us[d] = Some(s.ts_us);
        }
        ses.anom = p.anom;
        if s.ts_us > ses.last_us {
            ses.last_us = s.ts_us;
        }
        let pid = ses.pkts;
        ses.pkts += 1;
        ses.bytes += fr.size as u64;
        let hdr_ok = fr.l4.len() >= 20
            && u16::from_be_bytes([fr.l4[0], fr.l4[1]]) == s.l4.sport.unwrap_or(0)
            && u32::from_be_bytes([fr.l4[4], fr.l4[5], fr.l4[6], fr.l4[7]]) == s.l4.seq;
        let mut fields = None;
        if let (Some(h), true) = (ses.http.as_mut(), hdr_ok) {
            let doff = ((fr.l4[12] >> 4) as usize * 4).min(fr.l4.len());
            let payload = &fr.l4[doff..];
            let before = (h.method.is_some(), h.status.is_some());
            let notes = h.segment(d, s.l4.seq, s.l4.payload, fl, payload);
            if before != (h.method.is_some(), h.status.is_some()) {
                fields = Some(HttpFields {
                    method: h.method.clone(),
                    host: h.host.clone(),
                    uri: h.uri.clone(),
                    status: h.status,
                });
            }
            for note in notes {
                let m = match note {
                    HttpNote::Request(r) => r,
                    HttpNote::Response(r) => r,
                };
                add(m);
            }
        }
        let keep = fl & (SYN | FIN | RST) != 0
            || before[0].opening()
            || before[1].opening()
            || before[0].closing()
            || before[1].closing()
            || !marker.is_empty()
            || o.live;
        let keep = keep || {
            let other = ses.others < o.view_data;
            ses.others += other as u32;
            other
        };
        if !keep {
            ses.elided = true;
            return fields;
        }
        let opts = if hdr_ok {
            let (t, bad) = options(fr.l4);
            self.stats.bad_options += bad as u64;
            t
        } else {
            String::new()
        };
        let line = Line {
            pid,
            ts_us: s.ts_us,
            dir: d as u8,
            flags: fl,
            st: ses.st,
            seq: s.l4.seq,
            ack: s.l4.ack,
            size: fr.size,
            frag: s.fragments > 0 && o.fragment,
            opts,
            marker,
            elided_before: std::mem::take(&mut ses.elided),
        };
        if o.live {
            let mut text = String::new();
            if new {
                header_live(&mut text, p.id, ses, o);
            }
            line_text(&mut text, p.id, &line, o);
            self.print(&text, true);
            return fields;
        }
        if self.stats.lines_held as usize >= o.limit {
            ses.not_kept += 1;
            ses.elided = true;
            self.stats.lines_not_kept += 1;
            return fields;
        }
        ses.lines.push(line);
        self.stats.lines_held += 1;
        self.stats.lines_held_max = self.stats.lines_held_max.max(self.stats.lines_held);
        fields
    }

    /// The tracker closed connection `ev`: its block, when it is shown.
    pub(crate) fn closed(&mut self, ev: &ConnEvent, flush: bool) {
        let Some(ses) = self.sessions.remove(&ev.conn_id) else {
            return;
        };
        self.stats.lines_held -= ses.lines.len() as u64;
        if self.o.live || (!self.o.all && ev.anomalies.is_empty()) {
            return;
        }
        self.stats.shown += 1;
        let mut text = String::new();
        block(&mut text, ev, &ses, self.o);
        self.print(&text, flush);
    }

    fn print(&mut self, text: &str, flush: bool) {
        if self.closed {
            return;
        }
        let mut r = self.out.write_all(text.as_bytes());
        if r.is_ok() && flush {
            r = self.out.flush();
        }
        if let Err(e) = r {
            self.fail(e);
        }
    }

    fn fail(&mut self, e: io::Error) {
        if e.kind() == io::ErrorKind::BrokenPipe {
            self.closed = true;
            return;
        }
        self.stats.write_errors += 1;
        if self.error.is_none() {
            eprintln!("ipclog: standard output: session view not written: {e}");
            self.error = Some(e.to_string());
        }
    }

    pub(crate) fn flush(&mut self) {
        if self.closed {
            return;
        }
        if let Err(e) = self.out.flush() {
            self.fail(e);
        }
    }

    /// Sessions open and their lines held, for the statistics.
    pub(crate) fn active(&self) -> (usize, u64) {
        (self.sessions.len(), self.stats.lines_held)
    }
}

/// miruo's state change for a packet `s` from side `d`.
fn step(ses: &mut Session, d: usize, s: &Seen) {
    let fl = s.l4.flags;
    let r = 1 - d;
    let st = &mut ses.st;
    if fl & RST != 0 {
        *st = [St::Closed; 2];
        return;
    }
    if fl & SYN != 0 {
        if fl & ACK != 0 {
            st[d] = St::SynRecv;
            st[r] = St::Established;
        } else {
            st[d] = St::SynSent;
            st[r] = St::SynRecv;
        }
        return;
    }
    if fl & ACK != 0 {
        if st[r] == St::SynRecv {
            st[r] = St::Established;
        }
        let acks_fin = ses.fin_end[r].is_some_and(|e| s.l4.ack.wrapping_sub(e) as i32 >= 0);
        if acks_fin {
            match st[r] {
                St::FinWait1 => st[r] = St::FinWait2,
                St::LastAck => st[r] = St::Closed,
                _ => {}
            }
            match st[d] {
                St::Established => st[d] = St::CloseWait,
                St::FinWait1 | St::FinWait2 => st[d] = St::TimeWait,
                _ => {}
            }
        }
    }
    if fl & FIN != 0 {
        st[d] = match st[d] {
            St::CloseWait => St::LastAck,
            _ if st[r].has_fin() => St::LastAck,
            St::TimeWait | St::LastAck | St::Closed => st[d],
            _ => St::FinWait1,
        };
        ses.fin_end[d] = Some(s.l4.seq.wrapping_add(s.l4.payload).wrapping_add(1));
    }
}

/// The TCP options of header `h` in miruo's words; and whether they were malformed
/// (truncated, a length of 0 or 1, or past the header), said in the text too.
pub(crate) fn options(h: &[u8]) -> (String, bool) {
    let doff = (h[12] >> 4) as usize * 4;
    let end = doff.min(h.len());
    let b = if end > 20 { &h[20..end] } else { &[][..] };
    let mut v: Vec<String> = Vec::new();
    let mut bad = false;
    let mut i = 0;
    while i < b.len() {
        let kind = b[i];
        match kind {
            0 => break,
            1 => {
                i += 1;
                continue;
            }
            _ => {}
        }
        let Some(&len) = b.get(i + 1) else {
            v.push(format!("bad option {kind}: no length"));
            bad = true;
            break;
        };
        let len = len as usize;
        if len < 2 {
            v.push(format!("bad option {kind}: length {len}"));
            bad = true;
            break;
        }
        if i + len > b.len() {
            v.push(format!("bad option {kind}: length {len} past the header"));
            bad = true;
            break;
        }
        let o = &b[i + 2..i + len];
        let be32 = |x: &[u8]| u32::from_be_bytes([x[0], x[1], x[2], x[3]]);
        match (kind, len) {
            (2, 4) => v.push(format!("mss={}", u16::from_be_bytes([o[0], o[1]]))),
            (3, 3) => v.push(format!("wscale={}", o[0])),
            (4, 2) => v.push("sackOK".into()),
            (5, _) if (len - 2).is_multiple_of(8) => {
                let mut t = String::from("sack");
                for blk in o.chunks(8) {
                    let _ = write!(t, " {}-{}", be32(blk), be32(&blk[4..]));
                }
                v.push(t);
            }
            (8, 10) => v.push(format!("timestamp {} {}", be32(o), be32(&o[4..]))),
            _ => v.push(format!("opt{kind} len {len}")),
        }
        i += len;
    }
    if doff > h.len() && h.len() >= 20 {
        v.push("options cut by the snaplen".into());
    }
    if v.is_empty() {
        return (String::new(), bad);
    }
    (format!("<{}>", v.join(", ")), bad)
}

fn arrow(dir: u8, fl: u8) -> String {
    let c = if dir == 0 { '>' } else { '<' };
    let mut s = String::with_capacity(8);
    s.push(c);
    for (bit, ch) in [
        (URG, 'U'),
        (ACK, 'A'),
        (PSH, 'P'),
        (RST, 'R'),
        (SYN, 'S'),
        (FIN, 'F'),
    ] {
        s.push(if fl & bit != 0 { ch } else { '-' });
    }
    s.push(c);
    s
}

fn endpoint(ip: std::net::IpAddr, port: Option<u16>) -> String {
    match (ip, port) {
        (std::net::IpAddr::V6(a), Some(p)) => format!("[{a}]:{p}"),
        (a, Some(p)) => format!("{a}:{p}"),
        (a, None) => a.to_string(),
    }
}

fn clock(ts_us: i64) -> String {
    use chrono::TimeZone;
    match chrono::Local.timestamp_micros(ts_us) {
        chrono::LocalResult::Single(t) => t.format("%H:%M:%S%.3f").to_string(),
        _ => "--:--:--.---".into(),
    }
}

const RED: &str = "\x1b[31m";
const BOLD: &str = "\x1b[1m";
const RESET: &str = "\x1b[0m";

fn header_live(t: &mut String, id: u64, ses: &Session, o: ViewOptions) {
    let (b, r) = if o.color { (BOLD, RESET) } else { ("", "") };
    let _ = writeln!(
        t,
        "{b}{id} {} == {} {}{r}",
        endpoint(ses.orig.src, ses.orig.sport),
        endpoint(ses.orig.dst, ses.orig.dport),
        ses.uid
    );
}

fn line_text(t: &mut String, id: u64, l: &Line, o: ViewOptions) {
    if l.elided_before {
        if o.quiet {
            let _ = writeln!(t, "{id}:****");
        } else {
            let _ = writeln!(t, "{id}:**** {:12} |{:37}|", "", "");
        }
    }
    let f = if l.frag { 'F' } else { '-' };
    let (red, r) = if o.color && !l.marker.is_empty() {
        (RED, RESET)
    } else {
        ("", "")
    };
    let mut s = String::new();
    if o.quiet {
        let _ = write!(
            s,
            "{id}:{:04} {} {} {:08X}/{:08X} {:>5} {f}",
            l.pid,
            clock(l.ts_us),
            arrow(l.dir, l.flags),
            l.seq,
            l.ack,
            l.size
        );
        if !l.marker.is_empty() {
            // Short words, so that the reason fits in 80 columns.
            let m = l
                .marker
                .replace("retransmitted after ", "rexmit ")
                .replace(" ms", "ms")
                .replace(" IP fragments", " frags");
            let _ = write!(s, " ! {m}");
        }
        // Everything is ASCII here (markers and HTTP text are escaped).
        s.truncate(80);
    } else {
        let _ = write!(
            s,
            "{id}:{:04} {} | {:>11} {} {:<11} | {:08X}/{:08X} {:>5} {f}",
            l.pid,
            clock(l.ts_us),
            l.st[0].name(),
            arrow(l.dir, l.flags),
            l.st[1].name(),
            l.seq,
            l.ack,
            l.size,
        );
        if !l.opts.is_empty() {
            let _ = write!(s, " {}", l.opts);
        }
        if !l.marker.is_empty() {
            let _ = write!(s, " ! {}", l.marker);
        }
    }
    let _ = writeln!(t, "{red}{}{r}", s.trim_end());
}

fn block(t: &mut String, ev: &ConnEvent, ses: &Session, o: ViewOptions) {
    let rule = if o.quiet {
        "-".repeat(79)
    } else {
        "-".repeat(100)
    };
    let (b, r) = if o.color { (BOLD, RESET) } else { ("", "") };
    let dur = (ses.last_us - ses.first_us) as f64 / 1e6;
    let mut anoms = String::new();
    for (k, v) in ev.anomalies.entries() {
        if v > 0 {
            let _ = write!(anoms, " {k}={v}");
        }
    }
    let _ = writeln!(t, "{rule}");
    let id = ev.conn_id;
    let (src, dst) = (
        endpoint(ses.orig.src, ses.orig.sport),
        endpoint(ses.orig.dst, ses.orig.dport),
    );
    if o.quiet {
        let mut h = format!("{id} {dur:.3} {src} == {dst} {} segs", ses.pkts);
        h.truncate(79);
        let _ = writeln!(t, "{b}{h}{r}");
        let mut h = format!("{id} {}{anoms}", ses.uid);
        h.truncate(79);
        let _ = writeln!(t, "{h}");
    } else {
        let _ = write!(
            t,
            "{b}{id} {dur:.3} | {src} == {dst} | Total {} segments, {} bytes | {}{anoms}",
            ses.pkts, ses.bytes, ses.uid
        );
        if ses.not_kept > 0 {
            let _ = write!(t, " | {} packets not kept (--segment-limit)", ses.not_kept);
        }
        let _ = writeln!(t, "{r}");
    }
    for l in &ses.lines {
        line_text(t, id, l, o);
    }
    if ses.elided {
        if o.quiet {
            let _ = writeln!(t, "{id}:****");
        } else {
            let _ = writeln!(t, "{id}:**** {:12} |{:37}|", "", "");
        }
    }
    let _ = writeln!(t, "{rule}");
}

#[cfg(test)]
mod tests {
    use super::options;

    /// A TCP header with data offset `doff` words and `opts` after the fixed 20 bytes.
    fn header(doff: u8, opts: &[u8]) -> Vec<u8> {
        let mut h = vec![0u8; 20];
        h[12] = doff << 4;
        h.extend_from_slice(opts);
        h
    }

    #[test]
    fn malformed_options_are_said_and_never_panic() {
        assert_eq!(options(&header(5, &[])), (String::new(), false));
        assert_eq!(
            options(&header(6, &[2, 4, 5, 0xb4])),
            ("<mss=1460>".into(), false)
        );
        assert_eq!(
            options(&header(6, &[1, 1, 1, 2])),
            ("<bad option 2: no length>".into(), true)
        );
        assert_eq!(
            options(&header(6, &[3, 1, 0, 0])),
            ("<bad option 3: length 1>".into(), true)
        );
        // The header says 32 bytes, 24 were captured: the options are cut by the snaplen.
        assert_eq!(
            options(&header(8, &[1, 1, 4, 2])),
            ("<sackOK, options cut by the snaplen>".into(), false)
        );
        assert_eq!(
            options(&header(8, &[5, 10, 0, 0, 0, 1, 0, 0, 0, 2, 1, 1])),
            ("<sack 1-2>".into(), false)
        );
        // Every byte value as kind and as length, every cut: a text, never a panic.
        for kind in 0..=255u8 {
            for len in 0..=255u8 {
                let h = header(15, &[kind, len, 1, 2, 3, 4, 5, 6, 7, 8]);
                for cut in 20..h.len() {
                    let _ = options(&h[..cut]);
                }
            }
        }
    }
}
