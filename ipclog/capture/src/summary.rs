//! What a run reports: how it ended ([`CaptureSummary`]: every packet read is in a connection,
//! merged into a reassembled datagram, or counted as dropped by reason) or why it could not
//! start or go on ([`CaptureError`], with the exit code ipclog should use).

use shared::event::Anomalies;

use crate::tracker::Stats;
use crate::wire::Drop;

/// How a capture run ended, for ipclog's exit code and stop line.
#[derive(Debug, Default, Clone)]
pub struct CaptureSummary {
    /// Packets (records) libpcap handed us.
    pub packets: u64,
    /// Connections reported (each has an O and a C event).
    pub flows: u64,
    /// Packets or flows dropped or unusable, by reason, each with its count (only non-zero
    /// reasons). Includes `damaged_record` (file records libpcap could not read) and, live,
    /// `kernel_drop` (packets the kernel dropped before libpcap saw them).
    pub dropped: Vec<(String, u64)>,
    /// Packets (or reassembled datagrams) counted into connections, inner packets of tunnels
    /// included.
    pub packets_in_flows: u64,
    /// Inner packets taken out of tunnels and handed to the flow table (each counted in a
    /// connection or dropped, besides the outer packet that carried it).
    pub decapsulated: u64,
    /// Fragments folded into a datagram beyond its first.
    pub fragments_merged: u64,
    /// Packets with a bad IP/TCP/UDP checksum while checksums are verified (also among the
    /// drops: `bad_ip_checksum`, `bad_checksum`); 0 when they are ignored (not checked).
    pub bad_checksum: u64,
    /// Whether checksums were verified.
    pub checksums_verified: bool,
    /// Connection attempts ended by the attempt timer (`tcp_attempt_delay`).
    pub attempts: u64,
    /// Data segments not remembered for retransmission timing because of `--segment-limit`.
    pub segments_not_tracked: u64,
    /// The most connections open at once and the most segments remembered at once.
    pub flows_open_max: u64,
    pub segments_max: u64,
    /// The capture's link type, e.g. `EN10MB`.
    pub link_type: String,
    /// Connections closed by an inactivity timeout (not by FIN/RST or the end of input).
    pub timed_out: u64,
    /// How many connections showed each anomaly (log key, count), only non-zero ones: miruo's
    /// session statistics.
    pub anomalies: Vec<(String, u64)>,
    /// The latest packet time seen (microseconds since the epoch), the capture's own clock
    /// for the lines that end a run; `None` when no packet reached the tracker.
    pub last_packet_us: Option<i64>,
    /// `-w`/`--sessions`: what could not be written (the run's exit status is then 1).
    pub output_failure: Option<String>,
    /// `-w`: packets written, files, and what was not written, for the summary line.
    pub outputs: Option<String>,
}

impl CaptureSummary {
    /// Packets dropped for any reason (not counting `kernel_drop`, never read by us, nor the
    /// `tunnel_*` reasons: those are inner packets whose outer packet is in a connection).
    /// Packets read = packets in connections - decapsulated + fragments merged + this.
    pub fn dropped_packets(&self) -> u64 {
        self.dropped
            .iter()
            .filter(|(k, _)| {
                k != "kernel_drop" && k != "damaged_record" && !k.starts_with("tunnel_")
            })
            .map(|(_, n)| n)
            .sum()
    }

    /// Checks the accounting this crate promises for a run whose events are `events`: every
    /// opened connection closed once, with a Zeek-style uid and conn_state; the closes'
    /// packets add up to the packets in connections; packets read equal packets in
    /// connections less decapsulated, plus fragments merged and dropped; a tunnel parent is a
    /// connection of the run. The first broken promise, said; for the tests and the fuzz
    /// targets.
    pub fn check_accounting(&self, events: &[shared::ConnEvent]) -> Result<(), String> {
        use shared::EventKind;
        let ensure = |ok: bool, what: &dyn Fn() -> String| if ok { Ok(()) } else { Err(what()) };
        let opens = events.iter().filter(|e| e.kind == EventKind::Open).count();
        let closes: Vec<&shared::ConnEvent> = events
            .iter()
            .filter(|e| e.kind == EventKind::Close)
            .collect();
        ensure(opens == closes.len(), &|| {
            format!("opens vs closes: {opens} opens, {} closes", closes.len())
        })?;
        ensure(closes.len() as u64 == self.flows, &|| {
            format!("flows: {} closes, {} flows", closes.len(), self.flows)
        })?;
        let mut ids: Vec<u64> = closes.iter().map(|e| e.conn_id).collect();
        ids.sort_unstable();
        ids.dedup();
        ensure(ids.len() == closes.len(), &|| {
            "a connection closed twice".into()
        })?;
        let mut pkts = 0;
        for e in &closes {
            let c = e.counters.ok_or("a close without counters")?;
            pkts += c.orig_pkts + c.resp_pkts;
        }
        ensure(pkts == self.packets_in_flows, &|| {
            format!(
                "packets in closes: {pkts}, packets in connections: {}",
                self.packets_in_flows
            )
        })?;
        ensure(
            self.packets
                == self.packets_in_flows - self.decapsulated
                    + self.fragments_merged
                    + self.dropped_packets(),
            &|| {
                format!(
                    "packets read = in connections - decapsulated + merged + dropped ({})",
                    self.describe()
                )
            },
        )?;
        let uids: std::collections::HashSet<&str> =
            events.iter().filter_map(|e| e.uid.as_deref()).collect();
        for e in events {
            for p in e.tunnel_parents.iter().flat_map(|p| p.split(',')) {
                ensure(uids.contains(p), &|| {
                    format!("tunnel parent {p} is no connection")
                })?;
            }
            let uid_ok = e
                .uid
                .as_deref()
                .is_some_and(|u| u.starts_with('C') && u.len() == 18);
            ensure(uid_ok, &|| format!("uid {:?}", e.uid))?;
            ensure(e.zeek_state.is_some(), &|| "no conn_state".into())?;
        }
        Ok(())
    }

    /// One line for the log's `P` line before the stop line.
    pub fn describe(&self) -> String {
        let mut s = format!(
            "capture: {} packets, {} connections, {} packets in connections, {} fragments merged",
            self.packets, self.flows, self.packets_in_flows, self.fragments_merged
        );
        if self.decapsulated > 0 {
            s.push_str(&format!(
                ", {} packets decapsulated from tunnels",
                self.decapsulated
            ));
        }
        if self.dropped.is_empty() {
            s.push_str(", dropped none");
        } else {
            s.push_str(", dropped");
            for (k, n) in &self.dropped {
                s.push_str(&format!(" {k}={n}"));
            }
        }
        if self.timed_out > 0 {
            s.push_str(&format!(", {} timed out", self.timed_out));
        }
        if !self.anomalies.is_empty() {
            s.push_str(", connections with");
            for (k, n) in &self.anomalies {
                s.push_str(&format!(" {k}={n}"));
            }
        }
        if self.attempts > 0 {
            s.push_str(&format!(", {} attempts", self.attempts));
        }
        if !self.checksums_verified {
            s.push_str(", checksums ignored");
        }
        if let Some(o) = &self.outputs {
            s.push_str(&format!(", {o}"));
        }
        if self.segments_not_tracked > 0 {
            s.push_str(&format!(
                ", segments not tracked (segment limit) {}",
                self.segments_not_tracked
            ));
        }
        s
    }
}

/// A capture that could not start or could not go on.
#[derive(Debug)]
pub struct CaptureError {
    pub message: String,
    /// The exit code ipclog should use.
    pub exit_code: i32,
}

impl std::fmt::Display for CaptureError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for CaptureError {}

pub(crate) fn usage_error(message: String) -> CaptureError {
    CaptureError {
        message,
        exit_code: 2,
    }
}

impl CaptureSummary {
    /// The summary of a run that read `packets` records (`damaged` of them unreadable) from a
    /// capture of link type `link_type`, with the tracker's `stats`, the kernel's drops (live)
    /// and the latest packet time.
    pub(crate) fn of_run(
        stats: &Stats,
        (packets, damaged): (u64, u64),
        kernel_drop: u64,
        link_type: String,
        last_packet_us: Option<i64>,
        verified: bool,
    ) -> CaptureSummary {
        let s = stats;
        let mut dropped: Vec<(String, u64)> = Drop::ALL
            .iter()
            .filter(|d| s.drops[**d as usize] > 0)
            .map(|d| (d.name().to_string(), s.drops[*d as usize]))
            .collect();
        if damaged > 0 {
            dropped.push(("damaged_record".into(), damaged));
        }
        if kernel_drop > 0 {
            dropped.push(("kernel_drop".into(), kernel_drop));
        }
        CaptureSummary {
            packets,
            flows: s.flows_total,
            dropped,
            packets_in_flows: s.in_flows,
            decapsulated: s.decapsulated,
            fragments_merged: s.frags_merged,
            bad_checksum: s.drops[Drop::BadIpChecksum as usize]
                + s.drops[Drop::BadChecksum as usize],
            checksums_verified: verified,
            attempts: s.attempts,
            segments_not_tracked: s.segments_dropped,
            flows_open_max: s.flows_open_max,
            segments_max: s.segments_max,
            link_type,
            timed_out: s.timed_out,
            anomalies: Anomalies::default()
                .entries()
                .iter()
                .zip(s.with_anomaly)
                .filter(|(_, n)| *n > 0)
                .map(|((k, _), n)| (k.to_string(), n))
                .collect(),
            last_packet_us,
            output_failure: None,
            outputs: None,
        }
    }
}
