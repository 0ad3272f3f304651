//! Events the tests of several modules share.

use chrono::{TimeZone, Utc};

use crate::event::*;

/// The events of the JSON tests: a NATed conntrack close, a packet-capture close with
/// everything the tracker sets, an IPv6 open without ports or counters.
pub fn fixtures() -> Vec<ConnEvent> {
    let t = |s: i64, ns: u32| Utc.timestamp_opt(s, ns).unwrap();
    let mut nat = ConnEvent::new(
        EventKind::Close,
        t(1_700_000_010, 250_000_000),
        Source::Conntrack,
        0x1234_abcd,
        6,
        FlowTuple::new(
            "10.0.0.1".parse().unwrap(),
            "10.0.1.1".parse().unwrap(),
            Some(40000),
            Some(80),
        ),
    );
    nat.reply = Some(FlowTuple::new(
        "10.0.1.1".parse().unwrap(),
        "192.168.0.1".parse().unwrap(),
        Some(80),
        Some(40000),
    ));
    nat.src_iface = Some("eth0".into());
    nat.direction = Direction::Outgoing;
    nat.state = ConnState::Tcp(TcpState::TimeWait);
    nat.duration = Some(2.0);
    nat.counters = Some(Counters {
        orig_pkts: 5,
        orig_ip_bytes: 400,
        resp_pkts: 4,
        resp_ip_bytes: 3000,
        orig_bytes: None,
        resp_bytes: None,
    });
    nat.mark = Some(7);
    nat.kernel_start = Some(t(1_700_000_008, 5));
    nat.kernel_stop = Some(t(1_700_000_010, 0));
    let mut pcap = ConnEvent::new(
        EventKind::Close,
        t(1_700_000_100, 0),
        Source::Pcap,
        3,
        17,
        FlowTuple::new(
            "192.168.1.2".parse().unwrap(),
            "8.8.8.8".parse().unwrap(),
            Some(5353),
            Some(53),
        ),
    );
    pcap.state = ConnState::Replied;
    pcap.duration = Some(0.125);
    pcap.counters = Some(Counters {
        orig_pkts: 1,
        orig_ip_bytes: 60,
        resp_pkts: 1,
        resp_ip_bytes: 120,
        orig_bytes: Some(32),
        resp_bytes: Some(92),
    });
    pcap.zeek_state = Some(ZeekState::Sf);
    pcap.history = Some("Dd".into());
    pcap.uid = Some("CAbCdEfGhIjKlMnOp".into());
    pcap.anomalies.retransmits = 2;
    pcap.anomalies.long_connect = true;
    pcap.found_at_start = true;
    let mut v6 = ConnEvent::new(
        EventKind::Open,
        t(1_700_000_200, 999_999_999),
        Source::Conntrack,
        9,
        58,
        FlowTuple::new(
            "2001:db8::1".parse().unwrap(),
            "2001:db8::2".parse().unwrap(),
            None,
            None,
        ),
    );
    v6.dst_iface = Some("lo".into());
    v6.direction = Direction::Incoming;
    v6.history = Some(String::new());
    v6.zone = Some(3);
    vec![nat, pcap, v6]
}
