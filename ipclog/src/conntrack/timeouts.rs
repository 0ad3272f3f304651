//! Conntrack's idle timeouts, read from /proc once at start. An entry that expired is
//! destroyed `timeout` after its last packet (plus the garbage collector's delay), so the
//! processor dates such a close back by its timeout instead of to the DESTROY event.

use shared::{ConnState, TcpState};

/// Idle timeouts of this namespace's conntrack, in seconds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Timeouts {
    pub tcp_syn_sent: u64,
    pub tcp_syn_recv: u64,
    pub tcp_established: u64,
    pub udp: u64,
    pub udp_stream: u64,
    pub icmp: u64,
    pub icmpv6: u64,
    pub generic: u64,
}

impl Default for Timeouts {
    /// The kernel's defaults, for a value /proc does not give.
    fn default() -> Timeouts {
        Timeouts {
            tcp_syn_sent: 120,
            tcp_syn_recv: 60,
            tcp_established: 432_000,
            udp: 30,
            udp_stream: 120,
            icmp: 30,
            icmpv6: 30,
            generic: 600,
        }
    }
}

impl Timeouts {
    /// This namespace's values from /proc/sys/net/netfilter.
    pub fn read() -> Timeouts {
        Timeouts::from_sysctl(|name| {
            std::fs::read_to_string(format!("/proc/sys/net/netfilter/nf_conntrack_{name}")).ok()
        })
    }

    /// The values `get` gives for each sysctl name (`tcp_timeout_syn_sent`, ...); a name it
    /// has no number for keeps the kernel's default.
    pub fn from_sysctl(get: impl Fn(&str) -> Option<String>) -> Timeouts {
        let d = Timeouts::default();
        let get = |name: &str, default: u64| {
            get(name)
                .and_then(|s| s.trim().parse().ok())
                .unwrap_or(default)
        };
        Timeouts {
            tcp_syn_sent: get("tcp_timeout_syn_sent", d.tcp_syn_sent),
            tcp_syn_recv: get("tcp_timeout_syn_recv", d.tcp_syn_recv),
            tcp_established: get("tcp_timeout_established", d.tcp_established),
            udp: get("udp_timeout", d.udp),
            udp_stream: get("udp_timeout_stream", d.udp_stream),
            icmp: get("icmp_timeout", d.icmp),
            icmpv6: get("icmpv6_timeout", d.icmpv6),
            generic: get("generic_timeout", d.generic),
        }
    }

    /// The timeout that applied to an entry of `proto` in `state` with conntrack `status`
    /// bits; `None` for TCP states whose timeout ipclog does not date closes by.
    pub fn for_entry(&self, proto: u8, state: ConnState, status: u32) -> Option<u64> {
        // A UDP "stream" (replies seen, then assured) has the longer timeout.
        const IPS_ASSURED: u32 = 1 << 2;
        Some(match (proto, state) {
            (6, ConnState::Tcp(TcpState::SynSent)) => self.tcp_syn_sent,
            (6, ConnState::Tcp(TcpState::SynRecv)) => self.tcp_syn_recv,
            (6, ConnState::Tcp(TcpState::Established)) => self.tcp_established,
            (6, _) => return None,
            (17 | 136, _) if status & IPS_ASSURED != 0 => self.udp_stream,
            (17 | 136, _) => self.udp,
            (1, _) => self.icmp,
            (58, _) => self.icmpv6,
            _ => self.generic,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sysctl_values_win_and_bad_or_missing_ones_keep_the_default() {
        let t = Timeouts::from_sysctl(|name| match name {
            "udp_timeout" => Some("7\n".into()),
            "icmp_timeout" => Some("soon".into()),
            _ => None,
        });
        assert_eq!(t.udp, 7);
        assert_eq!(t.icmp, 30);
        assert_eq!(
            Timeouts { udp: 30, ..t },
            Timeouts::default(),
            "only udp_timeout was given"
        );
    }

    #[test]
    fn timeout_by_protocol_state_and_assured_bit() {
        let t = Timeouts::default();
        let tcp = |s| ConnState::Tcp(s);
        assert_eq!(t.for_entry(6, tcp(TcpState::SynSent), 0), Some(120));
        assert_eq!(t.for_entry(6, tcp(TcpState::TimeWait), 0), None);
        assert_eq!(t.for_entry(17, ConnState::Replied, 1 << 2), Some(120));
        assert_eq!(t.for_entry(17, ConnState::Unreplied, 0), Some(30));
        assert_eq!(t.for_entry(47, ConnState::Unreplied, 0), Some(600));
    }
}
