//! IP protocol numbers and the short names the log uses for them.

/// ICMP (IPv4).
pub const ICMP: u8 = 1;
/// IGMP.
pub const IGMP: u8 = 2;
pub const TCP: u8 = 6;
pub const UDP: u8 = 17;
pub const DCCP: u8 = 33;
pub const GRE: u8 = 47;
/// ICMP for IPv6.
pub const ICMPV6: u8 = 58;
pub const SCTP: u8 = 132;
pub const UDPLITE: u8 = 136;

/// The name the log prints for an IP protocol number, or `None` where the log prints the number
/// (as the seed's `ipc` does for protocol 50).
pub fn proto_name(proto: u8) -> Option<&'static str> {
    Some(match proto {
        ICMP => "icmp",
        IGMP => "igmp",
        TCP => "tcp",
        UDP => "udp",
        DCCP => "dccp",
        GRE => "gre",
        ICMPV6 => "icmp6",
        SCTP => "sctp",
        UDPLITE => "udplite",
        _ => return None,
    })
}

/// The protocol number for a name the log prints, or for a decimal number.
pub fn proto_from_name(name: &str) -> Option<u8> {
    if let Ok(n) = name.parse::<u8>() {
        return Some(n);
    }
    // Spelled out rather than searched for: this runs for every line constat reads.
    Some(match name {
        "icmp" => ICMP,
        "igmp" => IGMP,
        "tcp" => TCP,
        "udp" => UDP,
        "dccp" => DCCP,
        "gre" => GRE,
        "icmp6" | "ipv6-icmp" => ICMPV6,
        "sctp" => SCTP,
        "udplite" => UDPLITE,
        _ => return None,
    })
}

/// Whether a protocol has ports in its tuple (so the log shows sport/dport rather than `-`).
pub fn has_ports(proto: u8) -> bool {
    matches!(proto, TCP | UDP | DCCP | SCTP | UDPLITE)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for p in 0..=255u8 {
            let shown = proto_name(p).map(str::to_string).unwrap_or(p.to_string());
            assert_eq!(proto_from_name(&shown), Some(p));
        }
        assert_eq!(proto_from_name("ipv6-icmp"), Some(ICMPV6));
        assert_eq!(proto_from_name("bogus"), None);
    }
}
