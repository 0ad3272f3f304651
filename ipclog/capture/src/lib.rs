//! Connection events from packets: reads pcap/pcapng files (or standard input) or a live
//! interface through libpcap, takes each frame apart with zero-copy header views (Ethernet with
//! VLAN/QinQ tags, Linux cooked v1/v2, raw IPv4/IPv6, BSD loopback), reassembles IP fragments
//! for accounting, tracks every flow (TCP with Zeek's endpoint state machine, UDP and other
//! protocols by inactivity) and emits the same [`shared::ConnEvent`]s the conntrack source does,
//! with Zeek's conn_state/history/uid, per-direction counters and miruo's anomalies. Nothing is
//! dropped silently: every packet that cannot be used is counted by reason in the
//! [`CaptureSummary`], so packets read = packets in connections + fragments merged + dropped.
//!
//! A packet's way from pcap record to event:
//! - [`open_capture`] (`open`) opens the file or interface, checks the link type, compiles the
//!   filter; [`run_opened`] then reads it: live captures and pipes on this thread (`reader`),
//!   regular files ahead on a second thread (`pipe`);
//! - [`wire`] takes the frame apart (link, IP, TCP/UDP, checksums); fragments wait in `defrag`
//!   until their datagram is complete;
//! - `tracker` finds or opens the packet's flow, follows TCP as Zeek does, and hands
//!   [`shared::ConnEvent`]s (open, state change, close) to the [`EventSink`];
//! - at the end every open flow is closed and `summary` counts what the run saw.
//!
//! Decisions, where Zeek's or miruo's definitions leave room:
//! - The originator is the sender of a flow's first packet, except that a SYN-ACK seen first
//!   makes its receiver the originator (history starts with `^`, as when Zeek flips roles).
//! - conn_state, history (letters `s h a d f r c g t w i q ^`, content gaps `g` included:
//!   what Zeek's reassembler would see, from sequence numbers alone), orig_bytes/resp_bytes
//!   (sequence space, Zeek's `Size()`) follow Zeek's TCPSessionAdapter. UDP: `D`/`d` per side,
//!   SF when both sides sent, S0 when only the originator did. Other protocols: OTH. ICMP is
//!   keyed as Zeek keys it (type and counterpart type, so a request and its reply meet; a
//!   one-way message by type and code in its direction; not by the echo id).
//! - Tunnels (IP in IP, GRE, VXLAN, Geneve, GTPv1-U; `wire::tunnel`) are opened after outer
//!   reassembly, up to `wire::tunnel::MAX_DEPTH` deep: the outer packet is accounted first,
//!   then the inner one, whose connection records the outer connection's uid as its
//!   `tunnel_parents`. Packets read = packets in connections − decapsulated + merged + dropped.
//! - Checksums (`--checksums`, `-C`): verified by default for files, as Zeek does: a bad IPv4
//!   header checksum drops the packet (`bad_ip_checksum`), a bad TCP/UDP checksum only adds
//!   `C`/`c` to the history (at 1, 10, 100, ...) and the packet is neither counted nor moves
//!   the state (`bad_checksum`). Ignored (not even computed) by default live, where a host's
//!   own packets carry offloaded checksums. A majority of bad checksums in one direction is
//!   said once (stderr and a `P` line). Reassembled datagrams are not checked (only their
//!   fragments' IP headers).
//! - Where a connection ends follows Zeek's timers, in packet time, run before the packet that
//!   reaches them: inactivity (`last + timeout <= now`), tcp_attempt_delay (an unanswered SYN
//!   is reported S0 and forgotten; later packets start a new connection), tcp_close_delay
//!   after a complete close, tcp_partial_close_delay, tcp_reset_delay; a SYN on a closed
//!   connection, or with a new initial sequence number, starts a new one (Zeek's IsReuse).
//!   A TCP connection's clock stops at the packet that closes its second side. At the end
//!   of the input every open connection is closed.
//! - Reassembled fragments count as one packet of the datagram's full IP length; `frag=` counts
//!   the fragments. Fragment buffers: 4096 datagrams, 30 s of packet time.
//! - Anomalies (miruo): `retrans` counts data retransmissions at least `--retransmit` ms after
//!   the remembered original segment (the one holding the first retransmitted byte);
//!   `syn_retrans` a SYN or SYN-ACK repeated with the same sequence number; `rst` RST segments
//!   (`--rst 1` skips those after any FIN of the connection); `long_delay` TCP segments at
//!   least `--long-delay` ms after the connection's previous packet; `long_conn` duration at
//!   least `--long-connect` ms (any protocol).

mod args;
mod defrag;
mod open;
mod pipe;
mod reader;
mod sessions;
mod summary;
mod tracker;
pub mod wire;

pub use args::{CaptureArgs, Checksums, ColorMode, Dpi, WriteMode};
pub use open::{open_capture, OpenCapture};
pub use summary::{CaptureError, CaptureSummary};
pub use tracker::Options;

use std::sync::atomic::AtomicBool;
use std::time::Duration;

use shared::sink::EventSink;

use reader::{clamp_ts, read_direct, Reader, PIPELINE};
use summary::usage_error;

/// Reads the capture `args` names (file or interface) to its end (or until `stop` is set),
/// sending every event to `sink`; with `stats_every`, prints statistics to stderr that often.
pub fn run(
    args: &CaptureArgs,
    sink: &mut dyn EventSink,
    stop: &AtomicBool,
    stats_every: Option<Duration>,
) -> Result<CaptureSummary, CaptureError> {
    run_opened(open_capture(args)?, args, sink, stop, stats_every)
}

/// [`run`] on a capture [`open_capture`] has opened (`args` for the tracker's options).
pub fn run_opened(
    opened: OpenCapture,
    args: &CaptureArgs,
    sink: &mut dyn EventSink,
    stop: &AtomicBool,
    stats_every: Option<Duration>,
) -> Result<CaptureSummary, CaptureError> {
    run_with(opened, args, sink, stop, stats_every, true)
}

/// [`run_opened`], reading a regular file ahead on a second thread only when `read_ahead`
/// (tests compare both ways).
fn run_with(
    opened: OpenCapture,
    args: &CaptureArgs,
    sink: &mut dyn EventSink,
    stop: &AtomicBool,
    stats_every: Option<Duration>,
    read_ahead: bool,
) -> Result<CaptureSummary, CaptureError> {
    let OpenCapture {
        mut cap,
        name,
        live_fd,
        link,
        link_name,
        linktype,
    } = opened;
    let live = live_fd.is_some();
    // A regular file is read ahead on a second thread (reading and parsing overlap with
    // tracking); a live capture or a pipe is read here, so that its events are never held
    // back waiting for a block to fill.
    let tap = sessions::Tap::new(args, linktype, &name, live).map_err(usage_error)?;
    let ahead = tap.is_none() && !live && read_ahead && open::source_is_regular(args);
    // Packets read here wait in a short queue for their flows to be prefetched, except live
    // ones (never held back); blocks read ahead are prefetched from the block instead.
    let queue = if live || ahead { 0 } else { PIPELINE };
    let mut r = Reader::new(name, link, Options::from_args(args), queue, stats_every);
    r.set_tap(tap, live);
    let cap = if ahead {
        pipe::read(cap, &mut r, sink, stop)?;
        None
    } else {
        read_direct(&mut cap, live_fd, &mut r, sink, stop)?;
        Some(cap)
    };
    let kernel_drop = match cap {
        Some(mut cap) if live => match cap.stats() {
            Ok(s) => {
                r.set_pcap_stats(s);
                s.dropped as u64
            }
            Err(_) => 0,
        },
        _ => 0,
    };
    r.finish(sink);
    if stats_every.is_some() {
        r.print_stats();
    }
    let mut sum = CaptureSummary::of_run(
        r.stats(),
        r.counts(),
        kernel_drop,
        link_name,
        r.last_packet_us(),
        r.verify_checksums(),
    );
    if let Some(t) = r.tap() {
        sum.output_failure = t.failures();
        sum.outputs = t.describe();
    }
    Ok(sum)
}

/// Tracks frames held in memory, of libpcap link type `linktype`, as a file read tracks the
/// records libpcap hands it: each frame is (timestamp in microseconds, length on the wire,
/// captured bytes), in capture order; parsing, fragment reassembly, flow tracking and the
/// end-of-input close are the same code, and times are clamped to 1970..9999 as libpcap's are.
/// Lets fuzzers and tests drive the packet path with bytes, without a capture file or
/// libpcap's reader. `args` gives the tracker options (its source and filter are not used).
pub fn run_frames<'a>(
    linktype: i32,
    args: &CaptureArgs,
    frames: impl IntoIterator<Item = (i64, u32, &'a [u8])>,
    sink: &mut dyn EventSink,
) -> Result<CaptureSummary, CaptureError> {
    let link = wire::Link::from_linktype(linktype)
        .ok_or_else(|| usage_error(format!("unsupported link type {linktype}")))?;
    let link_name = pcap::Linktype(linktype)
        .get_name()
        .unwrap_or_else(|_| format!("DLT_{linktype}"));
    let mut r = Reader::new(
        "frames".into(),
        link,
        Options::from_args(args),
        PIPELINE,
        None,
    );
    for (ts_us, wire_len, data) in frames {
        r.packet();
        r.frame(clamp_ts(ts_us), wire_len, data, sink);
    }
    r.finish(sink);
    Ok(CaptureSummary::of_run(
        r.stats(),
        r.counts(),
        0,
        link_name,
        r.last_packet_us(),
        r.verify_checksums(),
    ))
}
