//! Addresses as the outputs write them, and networks (`ADDRESS/PREFIX`).

use std::fmt;
use std::net::{IpAddr, Ipv4Addr};

/// The dotted quad's characters, one by one, without `fmt` machinery: the writers' hot path
/// (`Ipv4Addr`'s `Display` costs several times as much).
fn dotted_quad(a: Ipv4Addr, mut push: impl FnMut(u8)) {
    for (i, o) in a.octets().into_iter().enumerate() {
        if i > 0 {
            push(b'.');
        }
        if o >= 100 {
            push(b'0' + o / 100);
        }
        if o >= 10 {
            push(b'0' + o / 10 % 10);
        }
        push(b'0' + o % 10);
    }
}

/// Appends an address as `IpAddr`'s `Display` writes it.
pub fn push_addr(out: &mut String, a: IpAddr) {
    match a {
        IpAddr::V4(v4) => dotted_quad(v4, |b| out.push(char::from(b))),
        IpAddr::V6(v6) => {
            use std::fmt::Write;
            let _ = write!(out, "{v6}");
        }
    }
}

/// An address as text without allocating, for binding it as an SQL parameter; the same text
/// as `IpAddr`'s `Display`.
pub struct AddrText {
    buf: [u8; 48],
    len: usize,
}

impl AddrText {
    pub fn new(a: IpAddr) -> AddrText {
        let mut t = AddrText {
            buf: [0; 48],
            len: 0,
        };
        match a {
            IpAddr::V4(v4) => dotted_quad(v4, |b| {
                t.buf[t.len] = b;
                t.len += 1;
            }),
            IpAddr::V6(v6) => {
                use std::io::Write;
                let mut rest = &mut t.buf[..];
                // 45 characters at most ("ffff:...:255.255.255.255"): always fits.
                let _ = write!(rest, "{v6}");
                let left = rest.len();
                t.len = t.buf.len() - left;
            }
        }
        t
    }

    pub fn as_str(&self) -> &str {
        // Only ASCII digits, dots, colons and hex letters were written.
        std::str::from_utf8(&self.buf[..self.len]).unwrap_or("")
    }
}

/// A network: an address and a prefix length, or one address (the full length).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Cidr {
    addr: IpAddr,
    prefix: u8,
}

/// Why a network did not parse.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CidrError {
    /// The part before `/` is not an address.
    Address,
    /// The prefix length is not a number up to the family's maximum (32 or 128).
    Prefix { max: u8 },
}

impl fmt::Display for CidrError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CidrError::Address => f.write_str("not an IP address"),
            CidrError::Prefix { max } => write!(f, "prefix length must be 0..={max}"),
        }
    }
}

/// The bits of `addr` under a prefix of `prefix` bits, the rest cleared.
pub fn mask(addr: IpAddr, prefix: u8) -> IpAddr {
    fn keep<const BITS: u32>(prefix: u8) -> u128 {
        // `checked_shl` because a shift by the full width (prefix 0) is not a shift.
        let ones = u128::MAX >> (128 - BITS);
        ones.checked_shl(BITS - u32::from(prefix)).unwrap_or(0) & ones
    }
    match addr {
        IpAddr::V4(a) => IpAddr::V4((u32::from(a) & keep::<32>(prefix) as u32).into()),
        IpAddr::V6(a) => IpAddr::V6((u128::from(a) & keep::<128>(prefix)).into()),
    }
}

impl Cidr {
    /// `ADDRESS/PREFIX`, or `ADDRESS` alone (the address's full length). Host bits may be set:
    /// see [`Cidr::network`].
    pub fn parse(s: &str) -> Result<Cidr, CidrError> {
        let (a, p) = s.split_once('/').unwrap_or((s, ""));
        let addr: IpAddr = a.parse().map_err(|_| CidrError::Address)?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = if p.is_empty() && !s.contains('/') {
            max
        } else {
            p.parse::<u8>()
                .ok()
                .filter(|&n| n <= max)
                .ok_or(CidrError::Prefix { max })?
        };
        Ok(Cidr { addr, prefix })
    }

    /// The address as written (host bits included).
    pub fn addr(&self) -> IpAddr {
        self.addr
    }

    pub fn prefix(&self) -> u8 {
        self.prefix
    }

    /// The network's own address: host bits cleared.
    pub fn network(&self) -> IpAddr {
        mask(self.addr, self.prefix)
    }

    /// Whether `ip` is in the network (an address of the other family never is).
    pub fn contains(&self, ip: IpAddr) -> bool {
        ip.is_ipv4() == self.addr.is_ipv4() && mask(ip, self.prefix) == self.network()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn address_text_is_display() {
        for a in [
            "0.0.0.0",
            "255.255.255.255",
            "10.0.100.9",
            "1.20.199.7",
            "::",
            "2001:db8::1",
            "::ffff:10.0.0.9",
            "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
            "fe80::1:2:3:4",
        ] {
            let ip: IpAddr = a.parse().unwrap();
            assert_eq!(AddrText::new(ip).as_str(), ip.to_string());
            let mut s = String::from("x");
            push_addr(&mut s, ip);
            assert_eq!(s, format!("x{ip}"));
        }
    }

    #[test]
    fn networks() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let n = Cidr::parse("192.168.1.77/16").unwrap();
        assert_eq!((n.addr(), n.prefix()), (ip("192.168.1.77"), 16));
        assert_eq!(n.network(), ip("192.168.0.0"));
        assert!(n.contains(ip("192.168.200.1")));
        assert!(!n.contains(ip("192.169.0.1")));
        assert!(!n.contains(ip("::ffff:192.168.0.1")));
        let all = Cidr::parse("0.0.0.0/0").unwrap();
        assert!(all.contains(ip("1.2.3.4")) && !all.contains(ip("::1")));
        let host = Cidr::parse("2001:db8::1").unwrap();
        assert_eq!(host.prefix(), 128);
        assert!(host.contains(ip("2001:db8::1")) && !host.contains(ip("2001:db8::2")));
        let v6 = Cidr::parse("2001:db8::/32").unwrap();
        assert!(v6.contains(ip("2001:db8:ffff::1")));
        assert_eq!(mask(ip("2001:db8::1"), 0), ip("::"));
        assert_eq!(mask(ip("10.1.2.3"), 32), ip("10.1.2.3"));
        assert_eq!(mask(ip("10.1.2.3"), 0), ip("0.0.0.0"));
        assert_eq!(Cidr::parse("x/8"), Err(CidrError::Address));
        assert_eq!(
            Cidr::parse("10.0.0.0/33"),
            Err(CidrError::Prefix { max: 32 })
        );
        assert_eq!(Cidr::parse("10.0.0.0/"), Err(CidrError::Prefix { max: 32 }));
        assert_eq!(Cidr::parse("::/129"), Err(CidrError::Prefix { max: 128 }));
    }
}
