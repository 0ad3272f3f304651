//! IP protocol numbers and the short names the log uses for them.

/// The name the log prints for an IP protocol number, or `None` where the log prints the number
/// (as the seed's `ipc` does for protocol 50).
pub fn proto_name(proto: u8) -> Option<&'static str> {
    Some(match proto {
        1 => "icmp",
        2 => "igmp",
        6 => "tcp",
        17 => "udp",
        33 => "dccp",
        47 => "gre",
        58 => "icmp6",
        132 => "sctp",
        136 => "udplite",
        _ => return None,
    })
}

/// The protocol number for a name the log prints, or for a decimal number.
pub fn proto_from_name(name: &str) -> Option<u8> {
    if let Ok(n) = name.parse::<u8>() {
        return Some(n);
    }
    Some(match name {
        "icmp" => 1,
        "igmp" => 2,
        "tcp" => 6,
        "udp" => 17,
        "dccp" => 33,
        "gre" => 47,
        "icmp6" | "ipv6-icmp" => 58,
        "sctp" => 132,
        "udplite" => 136,
        _ => return None,
    })
}

/// Whether a protocol has ports in its tuple (so the log shows sport/dport rather than `-`).
pub fn has_ports(proto: u8) -> bool {
    matches!(proto, 6 | 17 | 33 | 132 | 136)
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
    }
}
