//! Service names: what to call a port of a protocol.

use std::collections::HashMap;
use std::path::Path;

use shared::proto::{has_ports, proto_from_name, TCP, UDP};

use crate::Warning;

/// Service names by (port, IP protocol number): a built-in table of the common ones, which
/// `/etc/services` may extend or rename. The lookup file's own service lines beat both (see
/// [`crate::Lookup::service_name`]).
#[derive(Debug, Clone)]
pub struct Services {
    map: HashMap<(u16, u8), String>,
}

/// The built-in table, so reports read the same on a machine without `/etc/services`.
const BUILTIN_SERVICES: &[(u16, &str, &str)] = &[
    (20, "ftp-data", "t"),
    (21, "ftp", "t"),
    (22, "ssh", "tu"),
    (23, "telnet", "t"),
    (25, "smtp", "t"),
    (53, "domain", "tu"),
    (67, "bootps", "u"),
    (68, "bootpc", "u"),
    (69, "tftp", "u"),
    (80, "http", "tu"),
    (88, "kerberos", "tu"),
    (110, "pop3", "t"),
    (111, "sunrpc", "tu"),
    (113, "auth", "t"),
    (119, "nntp", "t"),
    (123, "ntp", "u"),
    (137, "netbios-ns", "u"),
    (138, "netbios-dgm", "u"),
    (139, "netbios-ssn", "t"),
    (143, "imap", "t"),
    (161, "snmp", "u"),
    (162, "snmp-trap", "u"),
    (179, "bgp", "t"),
    (389, "ldap", "tu"),
    (443, "https", "tu"),
    (445, "microsoft-ds", "t"),
    (465, "submissions", "t"),
    (500, "isakmp", "u"),
    (514, "syslog", "u"),
    (587, "submission", "t"),
    (631, "ipp", "t"),
    (636, "ldaps", "t"),
    (853, "domain-s", "tu"),
    (873, "rsync", "t"),
    (993, "imaps", "t"),
    (995, "pop3s", "t"),
    (1194, "openvpn", "tu"),
    (1812, "radius", "u"),
    (3306, "mysql", "t"),
    (3389, "ms-wbt-server", "t"),
    (4500, "ipsec-nat-t", "u"),
    (5060, "sip", "tu"),
    (5353, "mdns", "u"),
    (5432, "postgresql", "t"),
    (6379, "redis", "t"),
    (8080, "http-alt", "t"),
];

impl Services {
    /// No names at all.
    pub fn empty() -> Services {
        Services {
            map: HashMap::new(),
        }
    }

    /// The built-in table only.
    pub fn builtin() -> Services {
        let mut map = HashMap::new();
        for &(port, name, protos) in BUILTIN_SERVICES {
            for p in protos.chars() {
                let proto = if p == 't' { TCP } else { UDP };
                map.insert((port, proto), name.to_string());
            }
        }
        Services { map }
    }

    /// The built-in table extended by `/etc/services` (if the file exists and is readable;
    /// its malformed lines are returned as warnings).
    pub fn system() -> (Services, Vec<Warning>) {
        let mut s = Services::builtin();
        let path = Path::new("/etc/services");
        let warnings = match std::fs::read(path) {
            Ok(bytes) => s.add_etc_services(&String::from_utf8_lossy(&bytes), "/etc/services"),
            Err(_) => Vec::new(),
        };
        (s, warnings)
    }

    /// Adds entries in `/etc/services` format (`name port/proto [aliases] [# comment]`). As with
    /// `getservbyport`, the first name given for a port/protocol in the file is the one used;
    /// it replaces the built-in name.
    pub fn add_etc_services(&mut self, text: &str, file: &str) -> Vec<Warning> {
        let mut warnings = Vec::new();
        let mut seen: HashMap<(u16, u8), ()> = HashMap::new();
        for (i, raw) in text.lines().enumerate() {
            let line = raw.split('#').next().unwrap_or("");
            let mut f = line.split_ascii_whitespace();
            let (Some(name), Some(pp)) = (f.next(), f.next()) else {
                continue;
            };
            match parse_port_proto(pp) {
                Ok(key) => {
                    if seen.insert(key, ()).is_none() {
                        self.map.insert(key, name.to_string());
                    }
                }
                // Protocols we do not track (ddp, ...) are normal in /etc/services.
                Err(reason) if reason.starts_with("unknown protocol") => {}
                Err(reason) => warnings.push(Warning {
                    file: file.to_string(),
                    line: i as u64 + 1,
                    reason,
                }),
            }
        }
        warnings
    }

    pub fn name(&self, port: u16, proto: u8) -> Option<&str> {
        self.map.get(&(port, proto)).map(String::as_str)
    }

    pub fn insert(&mut self, port: u16, proto: u8, name: &str) {
        self.map.insert((port, proto), name.to_string());
    }
}

/// Parses `PORT/PROTO`, e.g. `8080/tcp`.
pub(crate) fn parse_port_proto(s: &str) -> Result<(u16, u8), String> {
    let (port, proto) = s
        .split_once('/')
        .ok_or_else(|| format!("not PORT/PROTO: {s:?}"))?;
    let port: u16 = port
        .parse()
        .map_err(|_| format!("not a port number (0-65535): {port:?}"))?;
    let proto_num = match proto_from_name(proto) {
        Some(p) if has_ports(p) => p,
        Some(_) => return Err(format!("protocol without ports: {proto:?}")),
        None => return Err(format!("unknown protocol {proto:?} (tcp, udp, sctp, ...)")),
    };
    Ok((port, proto_num))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn etc_services_format() {
        let mut s = Services::builtin();
        let w = s.add_etc_services(
            "# c\nimap2 143/tcp imap # mail\nfoo 143/tcp\nweird 99999/tcp\natalk 1/ddp\n\nrtmp 1/udp\n",
            "services",
        );
        assert_eq!(
            s.name(143, TCP),
            Some("imap2"),
            "first entry of the file wins"
        );
        assert_eq!(s.name(1, UDP), Some("rtmp"));
        assert_eq!(s.name(22, TCP), Some("ssh"), "built-in still there");
        assert_eq!(w.len(), 1, "{w:?}");
        assert_eq!(w[0].line, 4);
        assert!(Services::empty().name(22, TCP).is_none());
    }

    #[test]
    fn builtin_covers_the_common_services() {
        let s = Services::builtin();
        for (port, proto, name) in [
            (22, TCP, "ssh"),
            (25, TCP, "smtp"),
            (53, UDP, "domain"),
            (53, TCP, "domain"),
            (80, TCP, "http"),
            (110, TCP, "pop3"),
            (443, TCP, "https"),
            (143, TCP, "imap"),
            (123, UDP, "ntp"),
        ] {
            assert_eq!(s.name(port, proto), Some(name));
        }
    }
}
