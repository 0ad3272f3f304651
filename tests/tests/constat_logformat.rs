//! The bundled sample log (written out from the original documentation) is exactly what the
//! shared writer produces for the same events: same columns, same padding, byte for byte.
//! Kept in its own test binary because it sets TZ for the whole process (the writer prints
//! local time).

use std::net::{IpAddr, Ipv4Addr};

use e2e::bins::repo_root;
use shared::logfmt::{
    header_line, interface_line, parse_epoch, parse_line, program_line, write_event, LogLine,
    WriteOptions,
};
use shared::{ConnEvent, ConnState, EventKind, FlowTuple, Source, TcpState};

fn host(s: &str) -> (IpAddr, Option<String>) {
    match s.parse::<IpAddr>() {
        Ok(a) => (a, None),
        // A local interface name: the writer prints the interface instead of the address.
        Err(_) => (IpAddr::V4(Ipv4Addr::UNSPECIFIED), Some(s.to_string())),
    }
}

fn state(proto: u8, flag: char) -> ConnState {
    match (proto, flag) {
        (6, 'e') => ConnState::Tcp(TcpState::Established),
        (6, 't') => ConnState::Tcp(TcpState::TimeWait),
        (6, 'c') => ConnState::Tcp(TcpState::Close),
        (6, 'w') => ConnState::Tcp(TcpState::FinWait),
        (6, 's') => ConnState::Tcp(TcpState::SynSent),
        (_, 'U') => ConnState::Unreplied,
        (_, '-') => ConnState::Replied,
        other => panic!("no state for {other:?}"),
    }
}

/// The log's wall-clock time as the instant it denotes under TZ=UTC (set in the test). A macro
/// because this package does not depend on chrono to name the type.
macro_rules! utc {
    ($naive:expr) => {
        parse_epoch(&$naive.and_utc().timestamp().to_string()).unwrap()
    };
}

#[test]
fn sample_log_is_byte_identical_to_the_writer() {
    std::env::set_var("TZ", "UTC");
    let text = std::fs::read_to_string(repo_root().join("constat/sample/ipclog.log")).unwrap();
    let mut conn_lines = 0;
    for (i, line) in text.lines().enumerate() {
        let parsed = parse_line(line).unwrap_or_else(|e| panic!("line {}: {e}", i + 1));
        let written = match parsed {
            LogLine::Header { ts } => header_line(utc!(ts)),
            LogLine::Conn(c) => {
                conn_lines += 1;
                let (src, src_iface) = host(c.src);
                let (dst, dst_iface) = host(c.dst);
                let ts = utc!(c.ts);
                let mut ev = ConnEvent::new(
                    c.kind,
                    ts,
                    Source::Conntrack,
                    i as u64,
                    c.proto,
                    FlowTuple::new(src, dst, c.sport, c.dport),
                );
                ev.src_iface = src_iface;
                ev.dst_iface = dst_iface;
                ev.state = state(c.proto, c.flag);
                ev.duration = c.time.map(|t| t as f64);
                assert_eq!(ev.kind == EventKind::Open, c.time.is_none(), "{line}");
                let mut s = String::new();
                write_event(&ev, WriteOptions::default(), &mut s);
                s
            }
            LogLine::Program { ts, message } => program_line(utc!(ts), message),
            LogLine::Interface {
                ts,
                up,
                ifname,
                addr,
            } => interface_line(utc!(ts), up, ifname, addr.parse().unwrap()),
            LogLine::Packet(_) => panic!("line {}: the seed's sample has no F lines", i + 1),
        };
        assert_eq!(written, line, "line {} differs from the writer's", i + 1);
    }
    assert_eq!(conn_lines, 21, "the seed's sample has 21 O/S/C lines");
}
