//! Packets on the wire, both ways: taking a captured frame apart (the first step of every
//! packet: link header, then IP, then TCP/UDP, each checked against the lengths the headers
//! claim), and putting one together (for tests, benchmarks and capture generators, so that
//! what the parser reads is exactly what the emitter wrote: every layer has round-trip tests).
//!
//! Parsing reads fields at fixed offsets straight from the captured bytes (no copying, no
//! generic slicer: this runs once per packet) and stops at the few fields the tracker needs:
//! addresses, ports, lengths, TCP flags, sequence numbers and window, fragment fields. Every
//! read is bounds-checked against the captured bytes, while lengths come from the IP header
//! (the wire), so a packet cut by the snaplen is still counted with its real size. What cannot
//! be used is a [`Drop`] reason, never a panic.
//!
//! Emitting goes through the same layers with a small representation per header
//! ([`LinkHeader`], [`IpRepr`], [`TcpRepr`], [`UdpRepr`]); checksums on both sides come from
//! [`checksum`].

pub mod checksum;
mod ip;
mod l4;
mod link;
pub mod tunnel;

pub use ip::{fragment, parse_ip, Frag, FragInfo, IpPacket, IpRepr};
pub use l4::{l4_checksum_bad, parse_l4, TcpRepr, UdpRepr, ACK, FIN, L4, PSH, RST, SYN};
pub use link::{strip_link, Link, LinkHeader};

/// Why a packet could not be used. Each is a counter in the run's summary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(usize)]
pub enum Drop {
    /// The link header is incomplete (including zero-length packets).
    TruncatedLink = 0,
    /// Not IPv4/IPv6 (ARP, LLDP, STP, ...).
    NonIp,
    /// The IP header is not complete in the captured bytes.
    TruncatedIp,
    /// Wrong version, header length below minimum, or an IPv6 extension chain we cannot walk.
    BadIpHeader,
    /// The IP total length contradicts the header or the frame's length on the wire.
    BadIpLength,
    /// The TCP/UDP header is not complete in the captured bytes.
    TruncatedL4,
    /// The TCP data offset or UDP length contradicts the IP length.
    BadL4Length,
    /// A fragment that cannot be part of a datagram (offset past 64 KiB, misaligned, ...).
    FragMalformed,
    /// Fragments whose datagram never completed (timed out, or still pending at the end).
    FragIncomplete,
    /// Fragments dropped because the reassembly buffer was full.
    FragBufferFull,
    /// A new flow would exceed `--session-limit`.
    SessionLimit,
    /// A bad IPv4 header checksum while checksums are verified (Zeek drops these before
    /// looking for their connection).
    BadIpChecksum,
    /// A bad TCP/UDP checksum while checksums are verified: the packet only adds `C`/`c` to
    /// its connection's history and is not counted in it.
    BadChecksum,
    // Tunnels: the outer packet is counted in its connection, its inner packet here.
    /// The encapsulation header is invalid (version, flags, lengths).
    TunnelBadHeader,
    /// The capture ends inside the encapsulation header or the inner packet's headers.
    TunnelTruncated,
    /// The inner packet's headers are invalid (IP header, lengths).
    TunnelBadInner,
    /// The inner Ethernet frame is not IP (ARP, ...).
    TunnelNonIp,
    /// A payload we do not decapsulate (GRE routing, MPLS, ERSPAN, PPP control, ...).
    TunnelUnsupported,
    /// The inner packet is an IP fragment (inner fragments are not reassembled).
    TunnelInnerFragment,
    /// Tunnels nested deeper than [`tunnel::MAX_DEPTH`]: the innermost is not opened.
    TunnelTooDeep,
    /// A fragmented tunnel datagram whose payload was not kept (reassembly memory full).
    TunnelNotReassembled,
}

pub const DROP_REASONS: usize = 21;

impl Drop {
    pub const ALL: [Drop; DROP_REASONS] = [
        Drop::TruncatedLink,
        Drop::NonIp,
        Drop::TruncatedIp,
        Drop::BadIpHeader,
        Drop::BadIpLength,
        Drop::TruncatedL4,
        Drop::BadL4Length,
        Drop::FragMalformed,
        Drop::FragIncomplete,
        Drop::FragBufferFull,
        Drop::SessionLimit,
        Drop::BadIpChecksum,
        Drop::BadChecksum,
        Drop::TunnelBadHeader,
        Drop::TunnelTruncated,
        Drop::TunnelBadInner,
        Drop::TunnelNonIp,
        Drop::TunnelUnsupported,
        Drop::TunnelInnerFragment,
        Drop::TunnelTooDeep,
        Drop::TunnelNotReassembled,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Drop::TruncatedLink => "truncated_link",
            Drop::NonIp => "non_ip",
            Drop::TruncatedIp => "truncated_ip",
            Drop::BadIpHeader => "bad_ip_header",
            Drop::BadIpLength => "bad_ip_length",
            Drop::TruncatedL4 => "truncated_l4",
            Drop::BadL4Length => "bad_l4_length",
            Drop::FragMalformed => "frag_malformed",
            Drop::FragIncomplete => "frag_incomplete",
            Drop::FragBufferFull => "frag_buffer_full",
            Drop::SessionLimit => "session_limit",
            Drop::BadIpChecksum => "bad_ip_checksum",
            Drop::BadChecksum => "bad_checksum",
            Drop::TunnelBadHeader => "tunnel_bad_header",
            Drop::TunnelTruncated => "tunnel_truncated",
            Drop::TunnelBadInner => "tunnel_bad_inner",
            Drop::TunnelNonIp => "tunnel_non_ip",
            Drop::TunnelUnsupported => "tunnel_unsupported",
            Drop::TunnelInnerFragment => "tunnel_inner_fragment",
            Drop::TunnelTooDeep => "tunnel_too_deep",
            Drop::TunnelNotReassembled => "tunnel_not_reassembled",
        }
    }

    /// Whether this is about a tunnel's inner packet (its outer packet is in a connection).
    pub fn is_tunnel(self) -> bool {
        self.name().starts_with("tunnel_")
    }

    /// What an inner packet's parse error is, as a tunnel reason.
    pub fn inner(self) -> Drop {
        match self {
            Drop::TruncatedLink | Drop::TruncatedIp | Drop::TruncatedL4 => Drop::TunnelTruncated,
            Drop::NonIp => Drop::TunnelNonIp,
            d if d.is_tunnel() => d,
            _ => Drop::TunnelBadInner,
        }
    }
}

#[inline]
fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

#[inline]
fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}
