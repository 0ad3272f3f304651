//! The lookup file: the user's names for hosts, networks and services.

use std::collections::HashMap;
use std::io;
use std::net::IpAddr;
use std::path::Path;

use shared::net::{Cidr, CidrError};

use crate::services::{parse_port_proto, Services};
use crate::{byte_lines, utf8_line, valid_name, Warning};

/// A network from a `CIDR NAME` line (no host bits set).
#[derive(Debug, Clone)]
struct Net {
    net: Cidr,
    name: String,
}

/// The user's names, from the lookup file.
#[derive(Debug, Clone, Default)]
pub struct Lookup {
    hosts: HashMap<IpAddr, String>,
    /// Longest prefix first, so the first match is the best one.
    nets: Vec<Net>,
    services: HashMap<(u16, u8), String>,
    /// Where each host, network and service was named (line number), so a later line naming
    /// it again can point at the one that counts.
    lines: HashMap<Key, u64>,
}

/// What a lookup line names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Key {
    Host(IpAddr),
    Net(IpAddr, u8),
    Service(u16, u8),
}

impl Lookup {
    /// An empty lookup: nothing is named.
    pub fn new() -> Lookup {
        Lookup::default()
    }

    /// Reads a lookup file. A file that cannot be read is an error; bad lines are warnings.
    pub fn load(path: &Path) -> io::Result<(Lookup, Vec<Warning>)> {
        let bytes = std::fs::read(path)?;
        Ok(Lookup::parse_bytes(&bytes, &path.display().to_string()))
    }

    /// Parses lookup file text; `file` names it in warnings.
    pub fn parse(text: &str, file: &str) -> (Lookup, Vec<Warning>) {
        Lookup::parse_bytes(text.as_bytes(), file)
    }

    /// Parses a lookup file's bytes. A line that is not UTF-8 is skipped with a warning: its
    /// name is not guessed at.
    pub fn parse_bytes(bytes: &[u8], file: &str) -> (Lookup, Vec<Warning>) {
        let mut l = Lookup::new();
        let mut warnings = Vec::new();
        for (line_no, raw) in byte_lines(bytes) {
            let res = utf8_line(raw, file, line_no).and_then(|text| {
                l.parse_line(text, line_no).map_err(|reason| Warning {
                    file: file.to_string(),
                    line: line_no,
                    reason,
                })
            });
            if let Err(w) = res {
                warnings.push(w);
            }
        }
        // Stable sort: among equal prefixes the earlier line wins, as for hosts.
        l.nets.sort_by_key(|n| std::cmp::Reverse(n.net.prefix()));
        (l, warnings)
    }

    fn parse_line(&mut self, raw: &str, line_no: u64) -> Result<(), String> {
        let line = raw.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            return Ok(());
        }
        let fields: Vec<&str> = line.split_ascii_whitespace().collect();
        let [what, name] = fields[..] else {
            return Err(format!(
                "expected `ADDRESS NAME`, `CIDR NAME` or `PORT/PROTO NAME`, got {} field{}",
                fields.len(),
                if fields.len() == 1 { "" } else { "s" }
            ));
        };
        if !valid_name(name) {
            return Err(format!("bad name {name:?}"));
        }
        if let Ok(addr) = what.parse::<IpAddr>() {
            self.claim(Key::Host(addr), line_no, what)?;
            self.hosts.insert(addr, name.to_string());
            return Ok(());
        }
        let (left, right) = what
            .split_once('/')
            .ok_or_else(|| format!("not an address, CIDR network or PORT/PROTO: {what:?}"))?;
        if left.parse::<IpAddr>().is_ok() {
            let net = Cidr::parse(what).map_err(|e| match e {
                CidrError::Prefix { max } => format!("bad prefix length {right:?} (0-{max})"),
                CidrError::Address => format!("not an address: {left:?}"),
            })?;
            let (addr, prefix) = (net.network(), net.prefix());
            if addr != net.addr() {
                return Err(format!(
                    "{what} has host bits set (did you mean {addr}/{prefix}?)"
                ));
            }
            self.claim(Key::Net(addr, prefix), line_no, what)?;
            self.nets.push(Net {
                net,
                name: name.to_string(),
            });
            return Ok(());
        }
        if left.bytes().all(|b| b.is_ascii_digit()) && !left.is_empty() {
            let key = parse_port_proto(what)?;
            self.claim(Key::Service(key.0, key.1), line_no, what)?;
            self.services.insert(key, name.to_string());
            return Ok(());
        }
        Err(format!(
            "not an address, CIDR network or PORT/PROTO: {what:?}"
        ))
    }

    /// Records that `line_no` names `key`; if an earlier line did, the earlier one stays and
    /// this line is refused, naming both lines.
    fn claim(&mut self, key: Key, line_no: u64, what: &str) -> Result<(), String> {
        match self.lines.get(&key) {
            Some(&first) => Err(format!(
                "duplicate of line {first}: {what} is already named {:?} there",
                self.name_of(key)
            )),
            None => {
                self.lines.insert(key, line_no);
                Ok(())
            }
        }
    }

    /// The name a line gave `key` (empty if none did).
    fn name_of(&self, key: Key) -> &str {
        let name = match key {
            Key::Host(a) => self.hosts.get(&a),
            Key::Net(a, p) => self
                .nets
                .iter()
                .find(|n| n.net.network() == a && n.net.prefix() == p)
                .map(|n| &n.name),
            Key::Service(port, proto) => self.services.get(&(port, proto)),
        };
        name.map_or("", String::as_str)
    }

    /// The user's name for an address: its host line, else the longest matching network.
    pub fn host_name(&self, addr: IpAddr) -> Option<&str> {
        if let Some(n) = self.hosts.get(&addr) {
            return Some(n);
        }
        self.nets
            .iter()
            .find(|n| n.net.contains(addr))
            .map(|n| n.name.as_str())
    }

    /// The user's name for a service, if the lookup file names it (no fallback).
    pub fn own_service_name(&self, port: u16, proto: u8) -> Option<&str> {
        self.services.get(&(port, proto)).map(String::as_str)
    }

    /// The name for a service: the lookup file's, else `system`'s (built-in / /etc/services).
    pub fn service_name<'a>(
        &'a self,
        system: &'a Services,
        port: u16,
        proto: u8,
    ) -> Option<&'a str> {
        self.own_service_name(port, proto)
            .or_else(|| system.name(port, proto))
    }

    pub fn is_empty(&self) -> bool {
        self.hosts.is_empty() && self.nets.is_empty() && self.services.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shared::proto::{TCP, UDP};

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn hosts_networks_and_services() {
        let text = "\
# comment line
192.168.0.2   nat-pc   # trailing comment
10.0.0.0/8    intranet
10.1.0.0/16   lab
10.1.2.3      printer
2001:db8::/32 doc6
2001:db8::1   v6host
8080/tcp      proxy
53/udp        dns
";
        let (l, w) = Lookup::parse(text, "t.lookup");
        assert!(w.is_empty(), "{w:?}");
        assert_eq!(l.host_name(ip("192.168.0.2")), Some("nat-pc"));
        assert_eq!(l.host_name(ip("192.168.0.3")), None);
        assert_eq!(l.host_name(ip("10.9.9.9")), Some("intranet"));
        assert_eq!(
            l.host_name(ip("10.1.9.9")),
            Some("lab"),
            "longest prefix wins"
        );
        assert_eq!(
            l.host_name(ip("10.1.2.3")),
            Some("printer"),
            "host beats net"
        );
        assert_eq!(l.host_name(ip("2001:db8::1")), Some("v6host"));
        assert_eq!(l.host_name(ip("2001:db8:1::5")), Some("doc6"));
        assert_eq!(l.host_name(ip("2001:db9::1")), None);
        // An IPv4 address never matches an IPv6 network and vice versa.
        assert_eq!(l.host_name(ip("::a01:203")), None);
        let sys = Services::builtin();
        assert_eq!(
            l.service_name(&sys, 8080, TCP),
            Some("proxy"),
            "file beats built-in"
        );
        assert_eq!(l.service_name(&sys, 53, UDP), Some("dns"));
        assert_eq!(l.service_name(&sys, 53, TCP), Some("domain"));
        assert_eq!(l.service_name(&sys, 22, TCP), Some("ssh"));
        assert_eq!(l.service_name(&sys, 4711, TCP), None);
        assert_eq!(l.own_service_name(22, TCP), None);
    }

    #[test]
    fn zero_prefix_matches_everything_of_its_family() {
        let (l, w) = Lookup::parse("0.0.0.0/0 internet\n::/0 internet6\n", "z");
        assert!(w.is_empty());
        assert_eq!(l.host_name(ip("8.8.8.8")), Some("internet"));
        assert_eq!(l.host_name(ip("2a00::1")), Some("internet6"));
    }

    #[test]
    fn bad_lines_are_reported_with_file_and_line_and_skipped() {
        let text = "\
1.2.3.4 good
1.2.3.5
1.2.3.6 two names
1.2.3.300 bad-address
10.0.0.0/33 bad-prefix
10.0.0.1/8 host-bits
70000/tcp bad-port
80/xyz bad-proto
80/icmp no-ports
1.2.3.4 again
5.6.7.8 fine
";
        let (l, w) = Lookup::parse(text, "my.lookup");
        let lines: Vec<u64> = w.iter().map(|w| w.line).collect();
        assert_eq!(lines, vec![2, 3, 4, 5, 6, 7, 8, 9, 10], "{w:#?}");
        assert!(
            w[0].to_string().starts_with("my.lookup:2: expected"),
            "{}",
            w[0]
        );
        assert!(w[4].reason.contains("did you mean 10.0.0.0/8"), "{}", w[4]);
        assert!(w[5].reason.contains("port"), "{}", w[5]);
        assert_eq!(
            w[8].to_string(),
            "my.lookup:10: duplicate of line 1: 1.2.3.4 is already named \"good\" there"
        );
        // The good lines still count; the duplicate did not replace the first name.
        assert_eq!(l.host_name(ip("1.2.3.4")), Some("good"));
        assert_eq!(l.host_name(ip("5.6.7.8")), Some("fine"));
    }

    #[test]
    fn non_utf8_lookup_keeps_good_lines() {
        let d = std::env::temp_dir().join(format!("lookup-utf8-{}", std::process::id()));
        std::fs::write(&d, b"1.1.1.1 one\n2.2.2.2 \xff\xfe\n3.3.3.3 three\n").unwrap();
        let (l, w) = Lookup::load(&d).unwrap();
        std::fs::remove_file(&d).unwrap();
        assert_eq!(l.host_name(ip("1.1.1.1")), Some("one"));
        assert_eq!(l.host_name(ip("3.3.3.3")), Some("three"));
        assert_eq!(
            l.host_name(ip("2.2.2.2")),
            None,
            "the line reported as skipped is skipped"
        );
        assert_eq!(w.len(), 1, "{w:?}");
        assert_eq!(w[0].line, 2);
        assert!(w[0].reason.contains("UTF-8"), "{w:?}");
    }

    #[test]
    fn every_non_utf8_line_is_skipped_on_its_own() {
        let (l, w) = Lookup::parse_bytes(
            b"1.1.1.1 \xffone\r\n8080/tcp pr\xc3\n10.0.0.0/8 intra\xe2\x80\n4.4.4.4 ok\r\n",
            "b.lookup",
        );
        assert_eq!(w.iter().map(|w| w.line).collect::<Vec<_>>(), [1, 2, 3]);
        assert!(l.host_name(ip("1.1.1.1")).is_none());
        assert!(l.own_service_name(8080, TCP).is_none());
        assert!(l.host_name(ip("10.1.1.1")).is_none());
        assert_eq!(l.host_name(ip("4.4.4.4")), Some("ok"));
    }

    #[test]
    fn duplicates_of_all_three_kinds_keep_the_first_line_and_name_both() {
        let text = "\
1.2.3.4      first-host
10.0.0.0/8   first-net
8080/tcp     first-svc
1.2.3.4      second-host
10.0.0.0/8   second-net
8080/tcp     second-svc
10.0.0.0/16  other-prefix
8080/udp     other-proto
";
        let (l, w) = Lookup::parse(text, "d.lookup");
        let shown: Vec<String> = w.iter().map(|w| w.to_string()).collect();
        assert_eq!(
            shown,
            [
                "d.lookup:4: duplicate of line 1: 1.2.3.4 is already named \"first-host\" there",
                "d.lookup:5: duplicate of line 2: 10.0.0.0/8 is already named \"first-net\" there",
                "d.lookup:6: duplicate of line 3: 8080/tcp is already named \"first-svc\" there",
            ]
        );
        assert_eq!(l.host_name(ip("1.2.3.4")), Some("first-host"));
        assert_eq!(l.host_name(ip("10.9.0.1")), Some("first-net"));
        assert_eq!(l.host_name(ip("10.0.0.1")), Some("other-prefix"));
        assert_eq!(l.own_service_name(8080, TCP), Some("first-svc"));
        assert_eq!(l.own_service_name(8080, UDP), Some("other-proto"));
    }
}
