//! One packet a packet filter logged (ipclog `--nflog`: nftables' `log group N`), the record
//! ipmon writes a line for. A source turns what the kernel sent into a [`PacketEvent`]; sinks
//! take it through [`crate::sink::EventSink::packet`] without knowing the source: the line log
//! writes an `F` line ([`crate::logfmt::write_packet`]), JSON an object ([`packet_json`]), the
//! store a `packets` row.

use std::net::IpAddr;

use chrono::{DateTime, Utc};
use serde_json::{Map, Value as Json};

use crate::event::epoch_secs;
use crate::proto::proto_name;

/// What the rule did with the packet, as far as the log can tell: the kernel's log record has
/// no verdict (the `log` statement runs before the rule's verdict), so it is read from the
/// rule's prefix ([`Action::from_prefix`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Action {
    /// `b`: blocked (the prefix says drop, reject, block or deny).
    Block,
    /// `p`: passed (the prefix says accept, pass, allow or ok).
    Pass,
    /// `L`: logged, verdict unknown (ipmon's log-only rules).
    Log,
}

impl Action {
    /// ipmon's letter.
    pub fn letter(self) -> char {
        match self {
            Action::Block => 'b',
            Action::Pass => 'p',
            Action::Log => 'L',
        }
    }

    pub fn from_letter(c: char) -> Option<Action> {
        Some(match c {
            'b' => Action::Block,
            'p' => Action::Pass,
            'L' => Action::Log,
            _ => return None,
        })
    }

    /// The action a rule's prefix names by its first word (case-insensitive, up to the first
    /// character that is not a letter): `drop`, `reject`, `block`, `deny` → blocked;
    /// `accept`, `pass`, `allow`, `ok` → passed; anything else → logged.
    pub fn from_prefix(prefix: &str) -> Action {
        let word: String = prefix
            .trim_start()
            .chars()
            .take_while(|c| c.is_ascii_alphabetic())
            .map(|c| c.to_ascii_lowercase())
            .collect();
        match word.as_str() {
            "drop" | "reject" | "block" | "deny" => Action::Block,
            "accept" | "pass" | "allow" | "ok" => Action::Pass,
            _ => Action::Log,
        }
    }

    /// The word JSON and the store use.
    pub fn word(self) -> &'static str {
        match self {
            Action::Block => "block",
            Action::Pass => "pass",
            Action::Log => "log",
        }
    }
}

/// The connection a logged packet belongs to or is about: the conntrack entry the kernel
/// attached to it, or, for an ICMP error, the packet the error quotes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PacketConn {
    /// Conntrack's state for this packet (`new`, `established`, `related`, with `-reply` for
    /// the reply direction); `None` when the kernel attached no entry.
    pub state: Option<&'static str>,
    /// The packet only relates to the connection (an ICMP error about it, or a helper's
    /// expected connection) rather than being one of its packets.
    pub related: bool,
    /// The connection's original tuple (conntrack), or the quoted packet's.
    pub proto: u8,
    pub src: IpAddr,
    pub dst: IpAddr,
    pub sport: Option<u16>,
    pub dport: Option<u16>,
    /// Conntrack's id of the connection (its JSON uid is `CT` and the id in hex).
    pub id: Option<u32>,
}

impl PacketConn {
    pub fn related(&self) -> bool {
        self.related
    }

    /// `udp:10.0.0.1,40000->10.0.0.2,9` (ports left out when the protocol has none).
    pub fn push_tuple(&self, out: &mut String) {
        use std::fmt::Write as _;
        match proto_name(self.proto) {
            Some(n) => out.push_str(n),
            None => {
                let _ = write!(out, "{}", self.proto);
            }
        }
        out.push(':');
        push_addr_port(out, self.src, self.sport);
        out.push_str("->");
        push_addr_port(out, self.dst, self.dport);
    }
}

/// `addr,port` as ipmon writes it (`addr` alone without a port).
pub fn push_addr_port(out: &mut String, a: IpAddr, p: Option<u16>) {
    use std::fmt::Write as _;
    crate::net::push_addr(out, a);
    if let Some(p) = p {
        let _ = write!(out, ",{p}");
    }
}

/// One logged packet.
#[derive(Debug, Clone, PartialEq)]
pub struct PacketEvent {
    /// The kernel's timestamp of the packet, or when the logger received it.
    pub ts: DateTime<Utc>,
    /// The log group (`log group N`).
    pub group: u16,
    /// The rule's prefix (`log prefix "drop-ssh"`), foreign text; empty when it has none.
    pub prefix: String,
    pub action: Action,
    /// Interface the packet came in on / goes out through, if any (names at logging time).
    pub in_iface: Option<String>,
    pub out_iface: Option<String>,
    pub proto: u8,
    pub src: IpAddr,
    pub dst: IpAddr,
    pub sport: Option<u16>,
    pub dport: Option<u16>,
    /// IP header length (IPv6: with extension headers) and total length, from the header.
    pub hdr_len: u16,
    pub total_len: u32,
    /// TCP flags byte (FIN 0x01 … CWR 0x80).
    pub tcp_flags: Option<u8>,
    /// ICMP / ICMPv6 type and code.
    pub icmp: Option<(u8, u8)>,
    /// The packet's mark, when not zero.
    pub mark: Option<u32>,
    /// Its conntrack entry, when the kernel attached one.
    pub conn: Option<PacketConn>,
}

/// TCP flag letters in ipmon's order (`-AS` for a SYN-ACK).
const TCP_FLAGS: [(u8, char); 8] = [
    (0x10, 'A'),
    (0x04, 'R'),
    (0x02, 'S'),
    (0x01, 'F'),
    (0x20, 'U'),
    (0x08, 'P'),
    (0x40, 'E'),
    (0x80, 'C'),
];

/// Appends ipmon's `-FLAGS` token for a TCP flags byte (`-` alone when none is set).
pub fn push_tcp_flags(flags: u8, out: &mut String) {
    out.push('-');
    for (bit, c) in TCP_FLAGS {
        if flags & bit != 0 {
            out.push(c);
        }
    }
}

/// The flags byte of a `-FLAGS` token, `None` when it is not one.
pub fn parse_tcp_flags(token: &str) -> Option<u8> {
    let rest = token.strip_prefix('-')?;
    let mut bits = 0u8;
    for c in rest.chars() {
        bits |= TCP_FLAGS.iter().find(|(_, l)| *l == c)?.0;
    }
    Some(bits)
}

/// The JSON object of one logged packet: `{"event":"packet", "ts", "group", "prefix",
/// "action", "in_iface", "out_iface", "proto", "id.orig_h", "id.orig_p", "id.resp_h",
/// "id.resp_p", "hdr_len", "len", "tcp_flags", "icmp_type", "icmp_code", "mark", "ct_state",
/// "related", "related_uid"}`, absent fields left out.
pub fn packet_json(p: &PacketEvent) -> Json {
    let mut m = Map::new();
    m.insert("ts".into(), Json::from(epoch_secs(p.ts)));
    m.insert("event".into(), "packet".into());
    m.insert("group".into(), p.group.into());
    m.insert("prefix".into(), p.prefix.as_str().into());
    m.insert("action".into(), p.action.word().into());
    if let Some(i) = &p.in_iface {
        m.insert("in_iface".into(), i.as_str().into());
    }
    if let Some(i) = &p.out_iface {
        m.insert("out_iface".into(), i.as_str().into());
    }
    m.insert(
        "proto".into(),
        proto_name(p.proto).map_or(Json::from(p.proto), Json::from),
    );
    m.insert("id.orig_h".into(), p.src.to_string().into());
    m.insert("id.orig_p".into(), p.sport.map_or(Json::Null, Json::from));
    m.insert("id.resp_h".into(), p.dst.to_string().into());
    m.insert("id.resp_p".into(), p.dport.map_or(Json::Null, Json::from));
    m.insert("hdr_len".into(), p.hdr_len.into());
    m.insert("len".into(), p.total_len.into());
    if let Some(f) = p.tcp_flags {
        let mut s = String::new();
        push_tcp_flags(f, &mut s);
        m.insert("tcp_flags".into(), s[1..].into());
    }
    if let Some((t, c)) = p.icmp {
        m.insert("icmp_type".into(), t.into());
        m.insert("icmp_code".into(), c.into());
    }
    if let Some(mark) = p.mark {
        m.insert("mark".into(), mark.into());
    }
    if let Some(c) = &p.conn {
        if let Some(st) = c.state {
            m.insert("ct_state".into(), st.into());
        }
        if c.related() {
            let mut s = String::new();
            c.push_tuple(&mut s);
            m.insert("related".into(), s.into());
            if let Some(id) = c.id {
                m.insert("related_uid".into(), format!("CT{id:08x}").into());
            }
        }
    }
    Json::Object(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn actions_come_from_the_prefix_s_first_word() {
        assert_eq!(Action::from_prefix("drop-ssh"), Action::Block);
        assert_eq!(Action::from_prefix("REJECT: telnet"), Action::Block);
        assert_eq!(Action::from_prefix("ok-web"), Action::Pass);
        assert_eq!(Action::from_prefix("accept"), Action::Pass);
        assert_eq!(Action::from_prefix("okay"), Action::Log);
        assert_eq!(Action::from_prefix("icmp-err"), Action::Log);
        assert_eq!(Action::from_prefix(""), Action::Log);
    }

    #[test]
    fn tcp_flags_round_trip_in_ipmon_order() {
        let mut s = String::new();
        push_tcp_flags(0x12, &mut s);
        assert_eq!(s, "-AS");
        assert_eq!(parse_tcp_flags("-AS"), Some(0x12));
        s.clear();
        push_tcp_flags(0xff, &mut s);
        assert_eq!(s, "-ARSFUPEC");
        assert_eq!(parse_tcp_flags(&s), Some(0xff));
        assert_eq!(parse_tcp_flags("-"), Some(0));
        assert_eq!(parse_tcp_flags("-X"), None);
        assert_eq!(parse_tcp_flags("AS"), None);
    }
}
