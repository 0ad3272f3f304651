//! The flow tracker: every parsed packet ([`Seen`]) is accounted to its connection, and each
//! connection's opening, state changes and end go to the sink as [`shared::ConnEvent`]s. All
//! times are packet times, so a file gives the same events however fast it is read.
//!
//! A packet's way through, one module a step, along the seams of Zeek's TCP analyzer:
//! - [`key`]: the flow key, the 5-tuple in a canonical order so both directions meet, and its
//!   hash (computed ahead, as a [`Hint`], while the packet waits in the read queue);
//! - [`table`]: the flow table ([`index`] of hashes into a slab of flows): lookup, a new flow
//!   on a miss, port reuse (Zeek's IsReuse), the timer queue that runs each connection's
//!   timers (Zeek's inactivity, attempt, close, partial-close and reset timers), checksum
//!   verdicts, and the events;
//! - [`flow`]: one connection: both endpoints, counters, anomalies;
//! - [`tcp`]: one TCP segment through Zeek's `TCPSessionAdapter::Process`: sequence space,
//!   history letters, anomalies, acknowledgements, retransmissions;
//! - [`endpoint`]: Zeek's per-endpoint TCP state machine and sizes (orig_bytes/resp_bytes);
//! - [`reassembly`]: what Zeek's reassembler tells without keeping payload: unacknowledged
//!   segments (for retransmission timing) and content gaps (`G`/`g`);
//! - [`history`]: the history letters, once per endpoint or again at 1, 10, 100, ...;
//! - [`report`]: what an event says: conntrack-style state, Zeek's conn_state, counters, uid.
//!
//! UDP and other protocols are flows that end after an inactivity timeout (ICMP its own).

mod endpoint;
mod flow;
mod history;
mod index;
mod key;
mod reassembly;
mod report;
mod table;
mod tcp;

use std::net::IpAddr;

use crate::wire::{DROP_REASONS, L4};

pub use flow::HttpFields;
pub use key::Hint;
pub use table::{Peek, Tracker};

/// Tracker settings (from the command line). Times in microseconds of packet time.
#[derive(Debug, Clone)]
pub struct Options {
    /// Inactivity timeouts (Zeek's tcp/udp/icmp_inactivity_timeout; 0 = none); UDP's applies
    /// to other protocols too.
    pub tcp_timeout_us: i64,
    pub udp_timeout_us: i64,
    pub icmp_timeout_us: i64,
    /// Zeek's tcp_attempt_delay (0 = no attempt timer), tcp_close_delay,
    /// tcp_partial_close_delay and tcp_reset_delay.
    pub attempt_delay_us: i64,
    pub close_delay_us: i64,
    pub partial_close_delay_us: i64,
    pub reset_delay_us: i64,
    /// Packets with a bad IP/TCP/UDP checksum are not counted (Zeek's default) rather than
    /// counted (`zeek -C`).
    pub verify_checksums: bool,
    pub retransmit_us: i64,
    pub syn: bool,
    pub rst: u8,
    pub long_connect_us: i64,
    pub long_delay_us: i64,
    pub fragment: bool,
    pub session_limit: usize,
    pub segment_limit: usize,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            tcp_timeout_us: 300_000_000,
            udp_timeout_us: 60_000_000,
            icmp_timeout_us: 60_000_000,
            attempt_delay_us: 5_000_000,
            close_delay_us: 5_000_000,
            partial_close_delay_us: 3_000_000,
            reset_delay_us: 5_000_000,
            verify_checksums: true,
            retransmit_us: 1_000_000,
            syn: true,
            rst: 1,
            long_connect_us: 0,
            long_delay_us: 0,
            fragment: true,
            session_limit: 65536,
            segment_limit: 65536,
        }
    }
}

/// One packet as the tracker sees it (after link/IP/transport parsing or fragment reassembly).
#[derive(Debug, Clone, Copy)]
pub struct Seen {
    pub ts_us: i64,
    pub src: IpAddr,
    pub dst: IpAddr,
    pub proto: u8,
    pub ip_len: u32,
    pub l4: L4,
    /// A bad IPv4 header or TCP/UDP checksum (only looked at when checksums are verified).
    pub csum_bad: bool,
    /// Number of IP fragments this packet was reassembled from (0 = not fragmented).
    pub fragments: u32,
}

/// Counters the run reports.
#[derive(Debug, Default, Clone)]
pub struct Stats {
    pub drops: [u64; DROP_REASONS],
    /// Packets (datagrams) counted into flows.
    pub in_flows: u64,
    /// Fragments merged into a datagram beyond the first (each datagram counts once).
    pub frags_merged: u64,
    /// Packets (valid or not) sent by originators / by responders, and those of them with a
    /// bad TCP/UDP checksum (verify mode), for the offloading warning.
    pub dir_pkts: [u64; 2],
    pub dir_bad: [u64; 2],
    /// Connection attempts ended by the attempt timer.
    pub attempts: u64,
    pub segments_dropped: u64,
    pub flows_total: u64,
    pub flows_open_max: u64,
    pub segments_max: u64,
    /// Connections closed because they were idle past their inactivity timeout.
    pub timed_out: u64,
    /// Inner packets taken out of tunnels and handed to the flow table (each then counted in
    /// `in_flows` or as dropped, like the outer packet that carried it).
    pub decapsulated: u64,
    /// Connections (closed so far) with each anomaly, in `Anomalies::entries` order.
    pub with_anomaly: [u64; 6],
}

const TCP: u8 = 6;
const UDP: u8 = 17;

/// A packet from `src`:`sport` to `dst`:`dport` of protocol `proto`, for unit tests.
#[cfg(test)]
fn test_seen(src: &str, dst: &str, sport: u16, dport: u16, proto: u8) -> Seen {
    Seen {
        ts_us: 0,
        src: src.parse().unwrap(),
        dst: dst.parse().unwrap(),
        proto,
        ip_len: 40,
        l4: L4 {
            sport: Some(sport),
            dport: Some(dport),
            ..L4::default()
        },
        csum_bad: false,
        fragments: 0,
    }
}
