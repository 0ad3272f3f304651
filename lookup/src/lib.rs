//! Names for addresses, networks and services, from the constat lookup file, plus a reverse-DNS
//! name cache. constat's report is only useful when known hosts carry names and unknown ones
//! stand out, so this crate answers two questions: "what does the user call this address /
//! port?" ([`Lookup`], [`Services`]) and "what did DNS once say about it?" ([`NameCache`]). The
//! two are kept apart on purpose: a name from the lookup file is the user's word, a name from
//! the cache is only a hint and is shown as such (with a trailing `?`). Nothing here needs DNS
//! unless the caller asks for [`resolve`].
//!
//! Lookup file format (see `lookup/constat.lookup`): `#` starts a comment; `ADDRESS NAME`,
//! `CIDR NAME` (IPv4 or IPv6, the longest prefix wins, a host line beats any network) and
//! `PORT/PROTO NAME` (a service, overriding `/etc/services` and the built-in table). A bad line
//! (including one that is not UTF-8) is reported as `file:line: reason` and skipped. The same
//! address, network or service named twice: the first line wins, for all three kinds, and the
//! later one is reported as `file:N: duplicate of line M: ...`.

use std::collections::HashMap;
use std::fmt;
use std::io;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use shared::proto::{proto_from_name, TCP, UDP};
use shared::text::escaped;

/// A line of a lookup, services or cache file that was skipped, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Warning {
    pub file: String,
    pub line: u64,
    pub reason: String,
}

impl fmt::Display for Warning {
    /// Escaped: the file name and the quoted line are foreign text bound for a terminal.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}: {}",
            escaped(&self.file),
            self.line,
            escaped(&self.reason)
        )
    }
}

/// The lines of a file as bytes, numbered from 1 and without their `\n` (or `\r\n`), so that
/// each line is decoded on its own: one bad byte costs one line, not the file.
fn byte_lines(bytes: &[u8]) -> impl Iterator<Item = (u64, &[u8])> {
    let body = bytes.strip_suffix(b"\n").unwrap_or(bytes);
    body.split(|&b| b == b'\n')
        .enumerate()
        .filter(move |_| !bytes.is_empty())
        .map(|(i, l)| (i as u64 + 1, l.strip_suffix(b"\r").unwrap_or(l)))
}

/// A line as text, or the warning that skips it.
fn utf8_line<'a>(raw: &'a [u8], file: &str, line: u64) -> Result<&'a str, Warning> {
    std::str::from_utf8(raw).map_err(|e| Warning {
        file: file.to_string(),
        line,
        reason: format!("not UTF-8 text (byte {} of the line)", e.valid_up_to() + 1),
    })
}

/// A network from a `CIDR NAME` line, stored with its host bits cleared.
#[derive(Debug, Clone)]
struct Net {
    addr: IpAddr,
    prefix: u8,
    name: String,
}

fn mask(addr: IpAddr, prefix: u8) -> IpAddr {
    match addr {
        IpAddr::V4(a) => {
            let bits = u32::from(a);
            let m = if prefix == 0 {
                0
            } else {
                u32::MAX << (32 - prefix)
            };
            IpAddr::V4((bits & m).into())
        }
        IpAddr::V6(a) => {
            let bits = u128::from(a);
            let m = if prefix == 0 {
                0
            } else {
                u128::MAX << (128 - prefix)
            };
            IpAddr::V6((bits & m).into())
        }
    }
}

/// Service names by (port, IP protocol number): a built-in table of the common ones, which
/// `/etc/services` may extend or rename. The lookup file's own service lines beat both (see
/// [`Lookup::service_name`]).
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
fn parse_port_proto(s: &str) -> Result<(u16, u8), String> {
    let (port, proto) = s
        .split_once('/')
        .ok_or_else(|| format!("not PORT/PROTO: {s:?}"))?;
    let port: u16 = port
        .parse()
        .map_err(|_| format!("not a port number (0-65535): {port:?}"))?;
    let proto_num = match proto_from_name(proto) {
        Some(p) if shared::proto::has_ports(p) => p,
        Some(_) => return Err(format!("protocol without ports: {proto:?}")),
        None => return Err(format!("unknown protocol {proto:?} (tcp, udp, sctp, ...)")),
    };
    Ok((port, proto_num))
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

fn valid_name(name: &str) -> bool {
    !name.is_empty() && name.chars().all(|c| !c.is_control() && !c.is_whitespace())
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
        l.nets.sort_by_key(|n| std::cmp::Reverse(n.prefix));
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
        if let Ok(addr) = left.parse::<IpAddr>() {
            let max = if addr.is_ipv4() { 32 } else { 128 };
            let prefix: u8 = right
                .parse()
                .ok()
                .filter(|&p| p <= max)
                .ok_or_else(|| format!("bad prefix length {right:?} (0-{max})"))?;
            let net = mask(addr, prefix);
            if net != addr {
                return Err(format!(
                    "{what} has host bits set (did you mean {net}/{prefix}?)"
                ));
            }
            self.claim(Key::Net(net, prefix), line_no, what)?;
            self.nets.push(Net {
                addr: net,
                prefix,
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
                .find(|n| n.addr == a && n.prefix == p)
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
            .find(|n| n.addr.is_ipv4() == addr.is_ipv4() && mask(addr, n.prefix) == n.addr)
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

/// The default place of the reverse-DNS name cache.
pub const DEFAULT_CACHE: &str = "/var/cache/constat/names";

/// Reverse-DNS results kept between runs: one `ADDRESS NAME EPOCH` line per address (epoch =
/// when the name was looked up). constat reads it so reports show names without asking DNS.
#[derive(Debug, Clone)]
pub struct NameCache {
    path: PathBuf,
    map: HashMap<IpAddr, (String, u64)>,
    dirty: bool,
}

impl NameCache {
    /// An empty cache that would be saved to `path`.
    pub fn empty(path: &Path) -> NameCache {
        NameCache {
            path: path.to_path_buf(),
            map: HashMap::new(),
            dirty: false,
        }
    }

    /// Reads the cache. A missing file is an empty cache (nothing was resolved yet); any other
    /// read error and each bad line is a warning, never fatal: the cache is only a hint.
    pub fn load(path: &Path) -> (NameCache, Vec<Warning>) {
        let mut c = NameCache::empty(path);
        let shown = path.display().to_string();
        let bytes = match std::fs::read(path) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return (c, Vec::new()),
            Err(e) => {
                return (
                    c,
                    vec![Warning {
                        file: shown,
                        line: 0,
                        reason: format!("cannot read name cache: {e}"),
                    }],
                )
            }
        };
        let w = c.parse(&bytes, &shown);
        (c, w)
    }

    fn parse(&mut self, bytes: &[u8], file: &str) -> Vec<Warning> {
        let mut warnings = Vec::new();
        for (line_no, raw) in byte_lines(bytes) {
            let raw = match utf8_line(raw, file, line_no) {
                Ok(t) => t,
                Err(w) => {
                    warnings.push(w);
                    continue;
                }
            };
            let line = raw.split('#').next().unwrap_or("").trim();
            if line.is_empty() {
                continue;
            }
            let f: Vec<&str> = line.split_ascii_whitespace().collect();
            let parsed = match f[..] {
                [a, n, t] => match (a.parse::<IpAddr>(), t.parse::<u64>()) {
                    (Ok(a), Ok(t)) if valid_name(n) => Ok((a, n, t)),
                    (Err(_), _) => Err(format!("not an address: {a:?}")),
                    (_, Err(_)) => Err(format!("not epoch seconds: {t:?}")),
                    _ => Err(format!("bad name {n:?}")),
                },
                _ => Err(format!(
                    "expected `ADDRESS NAME EPOCH`, got {} fields",
                    f.len()
                )),
            };
            match parsed {
                // The newest lookup of an address wins.
                Ok((a, n, t)) => {
                    if self.map.get(&a).is_none_or(|(_, old)| *old <= t) {
                        self.map.insert(a, (n.to_string(), t));
                    }
                }
                Err(reason) => warnings.push(Warning {
                    file: file.to_string(),
                    line: line_no,
                    reason,
                }),
            }
        }
        warnings
    }

    pub fn get(&self, addr: IpAddr) -> Option<&str> {
        self.map.get(&addr).map(|(n, _)| n.as_str())
    }

    pub fn insert(&mut self, addr: IpAddr, name: &str, epoch: u64) {
        self.map.insert(addr, (name.to_string(), epoch));
        self.dirty = true;
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Writes the cache back if it changed: to a new temporary file (mode 0640, a random name
    /// in the same directory, created with O_EXCL: a name planted there cannot be written
    /// through) renamed over the old one, so a reader never sees half a file. Creates the
    /// directory if needed.
    pub fn save(&mut self) -> io::Result<()> {
        use std::io::Write;
        if !self.dirty {
            return Ok(());
        }
        let dir = match self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            Some(dir) => {
                std::fs::create_dir_all(dir)?;
                dir
            }
            None => Path::new("."),
        };
        let stem = self
            .path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "names".into());
        let mut entries: Vec<_> = self.map.iter().collect();
        entries.sort();
        let mut out = String::from("# constat reverse-DNS name cache: ADDRESS NAME EPOCH\n");
        for (a, (n, t)) in entries {
            out.push_str(&format!("{a} {n} {t}\n"));
        }
        let (mut f, tmp) = shared::outfile::create_temp(dir, &stem)?;
        let written = f
            .write_all(out.as_bytes())
            .and_then(|_| f.sync_all())
            .and_then(|_| {
                drop(f);
                std::fs::rename(&tmp, &self.path)
            });
        if let Err(e) = written {
            let _ = std::fs::remove_file(&tmp);
            return Err(e);
        }
        self.dirty = false;
        Ok(())
    }
}

/// Live reverse DNS for one address (`getnameinfo` with `NI_NAMEREQD`), `None` when the address
/// has no name. Blocks for as long as the resolver takes; only called with `constat --resolve`.
pub fn resolve(addr: IpAddr) -> Option<String> {
    use std::mem;
    // SAFETY: the sockaddr structures are zeroed and filled as the C API expects, their sizes
    // passed along; getnameinfo writes at most `host.len()` bytes, NUL-terminated.
    unsafe {
        let mut storage: libc::sockaddr_storage = mem::zeroed();
        let len = match addr {
            IpAddr::V4(a) => {
                let sin = &mut *(&mut storage as *mut _ as *mut libc::sockaddr_in);
                sin.sin_family = libc::AF_INET as libc::sa_family_t;
                sin.sin_addr.s_addr = u32::from_ne_bytes(a.octets());
                mem::size_of::<libc::sockaddr_in>()
            }
            IpAddr::V6(a) => {
                let sin6 = &mut *(&mut storage as *mut _ as *mut libc::sockaddr_in6);
                sin6.sin6_family = libc::AF_INET6 as libc::sa_family_t;
                sin6.sin6_addr.s6_addr = a.octets();
                mem::size_of::<libc::sockaddr_in6>()
            }
        };
        let mut host = [0 as libc::c_char; 1025];
        let rc = libc::getnameinfo(
            &storage as *const _ as *const libc::sockaddr,
            len as libc::socklen_t,
            host.as_mut_ptr(),
            host.len() as libc::socklen_t,
            std::ptr::null_mut(),
            0,
            libc::NI_NAMEREQD,
        );
        if rc != 0 {
            return None;
        }
        let name = std::ffi::CStr::from_ptr(host.as_ptr())
            .to_string_lossy()
            .into_owned();
        valid_name(&name).then_some(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_resolves_from_etc_hosts() {
        // /etc/hosts names 127.0.0.1 on any Debian system: no DNS server is needed.
        assert!(resolve("127.0.0.1".parse().unwrap()).is_some());
    }

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
            l.service_name(&sys, 8080, 6),
            Some("proxy"),
            "file beats built-in"
        );
        assert_eq!(l.service_name(&sys, 53, 17), Some("dns"));
        assert_eq!(l.service_name(&sys, 53, 6), Some("domain"));
        assert_eq!(l.service_name(&sys, 22, 6), Some("ssh"));
        assert_eq!(l.service_name(&sys, 4711, 6), None);
        assert_eq!(l.own_service_name(22, 6), None);
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
        assert!(l.own_service_name(8080, 6).is_none());
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
        assert_eq!(l.own_service_name(8080, 6), Some("first-svc"));
        assert_eq!(l.own_service_name(8080, 17), Some("other-proto"));
    }

    #[test]
    fn warnings_escape_what_they_quote() {
        let (_, w) = Lookup::parse("1.2.3.4 a\u{1b}[7m\n", "evil\u{202e}.lookup");
        let s = w[0].to_string();
        assert!(!s.contains(['\u{1b}', '\u{202e}']), "{s:?}");
        assert!(s.starts_with("evil\\u202e.lookup:1: bad name"), "{s}");
    }

    #[test]
    fn etc_services_format() {
        let mut s = Services::builtin();
        let w = s.add_etc_services(
            "# c\nimap2 143/tcp imap # mail\nfoo 143/tcp\nweird 99999/tcp\natalk 1/ddp\n\nrtmp 1/udp\n",
            "services",
        );
        assert_eq!(
            s.name(143, 6),
            Some("imap2"),
            "first entry of the file wins"
        );
        assert_eq!(s.name(1, 17), Some("rtmp"));
        assert_eq!(s.name(22, 6), Some("ssh"), "built-in still there");
        assert_eq!(w.len(), 1, "{w:?}");
        assert_eq!(w[0].line, 4);
        assert!(Services::empty().name(22, 6).is_none());
    }

    #[test]
    fn builtin_covers_the_common_services() {
        let s = Services::builtin();
        for (port, proto, name) in [
            (22, 6, "ssh"),
            (25, 6, "smtp"),
            (53, 17, "domain"),
            (53, 6, "domain"),
            (80, 6, "http"),
            (110, 6, "pop3"),
            (443, 6, "https"),
            (143, 6, "imap"),
            (123, 17, "ntp"),
        ] {
            assert_eq!(s.name(port, proto), Some(name));
        }
    }

    #[test]
    fn name_cache_temp_file_is_not_a_predictable_name() {
        let dir = std::env::temp_dir().join(format!("lookup-tmpname-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("names");
        // What another user could prepare knowing the PID: links at the names a temporary
        // file named after the PID would get, pointing at a file of the victim's.
        let victim = dir.join("victim");
        std::fs::write(&victim, "precious\n").unwrap();
        for guess in [
            format!("names.tmp.{}", std::process::id()),
            format!("names.{}.tmp", std::process::id()),
            "names.tmp".to_string(),
        ] {
            std::os::unix::fs::symlink(&victim, dir.join(guess)).unwrap();
        }
        let mut c = NameCache::empty(&path);
        c.insert(ip("192.0.2.1"), "a.example", 1);
        c.save().unwrap();
        c.insert(ip("192.0.2.2"), "b.example", 2);
        c.save().unwrap();
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious\n");
        let meta = std::fs::symlink_metadata(&path).unwrap();
        assert!(meta.file_type().is_file(), "{meta:?}");
        let (c2, w) = NameCache::load(&path);
        assert!(w.is_empty(), "{w:?}");
        assert_eq!(c2.get(ip("192.0.2.2")), Some("b.example"));
        // Nothing is left behind but the cache, the victim and the planted links.
        let mut left: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        assert_eq!(left.len(), 5, "{left:?}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn name_cache_round_trip_and_bad_lines() {
        let dir = std::env::temp_dir().join(format!("lookup-cache-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let path = dir.join("sub/names");
        let (mut c, w) = NameCache::load(&path);
        assert!(
            w.is_empty() && c.is_empty(),
            "missing cache is empty, not an error"
        );
        c.insert(ip("1.2.3.4"), "host.example", 100);
        c.insert(ip("2001:db8::1"), "v6.example", 200);
        c.save().unwrap();
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o640);
        let (c2, w) = NameCache::load(&path);
        assert!(w.is_empty(), "{w:?}");
        assert_eq!(c2.get(ip("1.2.3.4")), Some("host.example"));
        assert_eq!(c2.get(ip("2001:db8::1")), Some("v6.example"));
        assert_eq!(c2.len(), 2);

        std::fs::write(
            &path,
            "1.1.1.1 old 10\n1.1.1.1 new 20\n1.1.1.1 older 5\nbad line\n9.9.9.9 x notanumber\n",
        )
        .unwrap();
        let (c3, w) = NameCache::load(&path);
        assert_eq!(c3.get(ip("1.1.1.1")), Some("new"), "newest lookup wins");
        assert_eq!(w.iter().map(|w| w.line).collect::<Vec<_>>(), vec![4, 5]);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
