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

/// Zeek's responder "port" of an ICMP connection of type `kind` and code `code`
/// (ICMP4_counterpart / ICMP6_counterpart): for a request or reply, the type of its
/// counterpart (echo request 8 and reply 0 meet in one connection); for any other
/// (one-way) message, its code. The second value says whether the message is one-way.
pub fn icmp_counterpart(proto: u8, kind: u8, code: u8) -> (u8, bool) {
    let pair = if proto == ICMPV6 {
        match kind {
            128 => 129, // echo request / reply
            129 => 128,
            133 => 134, // router solicitation / advertisement
            134 => 133,
            135 => 136, // neighbour solicitation / advertisement
            136 => 135,
            130 => 131, // multicast listener query / report
            131 => 130,
            139 => 140, // node information query / reply
            140 => 139,
            144 => 145, // home agent address discovery request / reply
            145 => 144,
            _ => return (code, true),
        }
    } else {
        match kind {
            8 => 0, // echo request / reply
            0 => 8,
            13 => 14, // timestamp
            14 => 13,
            15 => 16, // information
            16 => 15,
            10 => 9, // router solicitation / advertisement
            9 => 10,
            17 => 18, // address mask
            18 => 17,
            _ => return (code, true),
        }
    };
    (pair, false)
}

/// Whether `proto` is ICMP or ICMPv6.
pub fn is_icmp(proto: u8) -> bool {
    proto == ICMP || proto == ICMPV6
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
