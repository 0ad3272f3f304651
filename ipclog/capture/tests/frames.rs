//! `run_frames` (frames from memory, as the fuzz targets feed them) against `run` (the same
//! frames from a capture file through libpcap), and packet times the log cannot show.

mod common;

use std::path::Path;

use common::*;
use e2e::pcapgen::{self, Link, Record, Session};
use ipclog_capture::CaptureArgs;
use shared::logfmt::{parse_line, write_event, LogLine, WriteOptions};
use shared::sink::VecSink;

/// The records of a capture file, read with libpcap.
fn records(path: &Path) -> (i32, Vec<(i64, u32, Vec<u8>)>) {
    let mut cap = pcap::Capture::from_file(path).unwrap();
    let lt = cap.get_datalink().0;
    let mut recs = Vec::new();
    while let Ok(p) = cap.next_packet() {
        #[allow(clippy::unnecessary_cast)]
        let ts = (p.header.ts.tv_sec as i64)
            .saturating_mul(1_000_000)
            .saturating_add(p.header.ts.tv_usec as i64);
        recs.push((ts, p.header.len, p.data.to_vec()));
    }
    (lt, recs)
}

fn log_lines(events: &[shared::event::ConnEvent]) -> Vec<String> {
    events
        .iter()
        .map(|e| {
            let mut s = String::new();
            write_event(e, WriteOptions::default(), &mut s);
            s
        })
        .collect()
}

#[test]
fn frames_from_memory_are_tracked_as_the_file_read_tracks_them() {
    let mut files = vec![];
    for rel in [
        "zeek/01-wikipedia-mixed/wikipedia.pcap",
        "zeek/16-frag-gtp-outer-ipv4/gtp1_gn_normal_incl_fragmentation.pcap",
        "ndpi/N-ip_fragmented_garbage/ip_fragmented_garbage.pcap",
        "suricata-verify/S09-defrag-ipv6-tcp/frag-ip-tcp.pcap",
    ] {
        match corpus(rel) {
            Some(p) => files.push(p),
            None => return,
        }
    }
    for f in &files {
        let (events, sum) = read(f);
        let (lt, recs) = records(f);
        let mut sink = VecSink::default();
        let mem = ipclog_capture::run_frames(
            lt,
            &CaptureArgs::default(),
            recs.iter().map(|r| (r.0, r.1, &r.2[..])),
            &mut sink,
        )
        .unwrap();
        assert_eq!(mem.describe(), sum.describe(), "{}", f.display());
        assert_eq!(mem.link_type, sum.link_type);
        assert_eq!(
            log_lines(&sink.events),
            log_lines(&events),
            "{}",
            f.display()
        );
        check_accounting(&sink.events, &mem, &f.display().to_string());
    }
}

#[test]
fn run_frames_refuses_an_unknown_link_type() {
    let mut sink = VecSink::default();
    let e = ipclog_capture::run_frames(147, &CaptureArgs::default(), [], &mut sink).unwrap_err();
    assert_eq!(e.exit_code, 2);
    assert!(e.message.contains("147"), "{}", e.message);
}

/// Found by the capture fuzz target: a packet time past the year 9999 (or before 1970) made
/// ipclog write a line with a five-digit (or negative) year that constat cannot read; pcapng's
/// 64-bit timestamps can say that. Such times are clamped to 1970..9999 now.
#[test]
fn packet_times_past_the_year_9999_still_give_readable_log_lines() {
    let mut s = Session::new("10.0.0.1:40000", "10.0.0.2:80", 1, 2);
    // ~ the year 17814, and the most a pcapng timestamp (u64 µs) says: i64 overflow when
    // libpcap's seconds are turned into microseconds.
    s.handshake(500_000_000_000_000_000)
        .close(500_000_000_001_000_000);
    let mut late = Session::new("10.0.0.1:40001", "10.0.0.2:80", 1, 2);
    late.syn(-1);
    let link = Link::Ethernet(vec![]);
    let recs: Vec<Record> = s
        .packets
        .iter()
        .chain(&late.packets)
        .map(|(t, ip)| Record::new(*t, link.frame(ip)))
        .collect();
    let p = e2e::bins::scratch("capture-far-future").join("future.pcapng");
    std::fs::write(&p, pcapgen::pcapng_bytes(1, 65535, &recs)).unwrap();
    let (events, sum) = read(&p);
    check_accounting(&events, &sum, "far future");
    assert_eq!(closes(&events).len(), 2, "{}", sum.describe());
    for line in log_lines(&events) {
        match parse_line(&line) {
            Ok(LogLine::Conn(c)) => {
                let year = c.ts.format("%Y").to_string();
                assert!(("1969"..="9999").contains(&year.as_str()), "{line}");
            }
            other => panic!("unreadable log line {line:?}: {other:?}"),
        }
    }
    // The same frames from memory are clamped alike.
    let (lt, frames) = records(&p);
    let mut sink = VecSink::default();
    let mem = ipclog_capture::run_frames(
        lt,
        &CaptureArgs::default(),
        frames.iter().map(|r| (r.0, r.1, &r.2[..])),
        &mut sink,
    )
    .unwrap();
    assert_eq!(log_lines(&sink.events), log_lines(&events));
    assert_eq!(mem.describe(), sum.describe());
}
