//! This host's addresses and the interfaces that carry them, so the log can print a local
//! address as its interface name (`eth0`), as the original ipclog did.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// address -> interface name.
pub type AddrMap = BTreeMap<IpAddr, String>;

/// Reads the current addresses with getifaddrs(3).
pub fn local_addrs() -> std::io::Result<AddrMap> {
    let mut map = AddrMap::new();
    let mut head: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs fills `head` with a list we free with freeifaddrs; every pointer is
    // checked for null and sockaddrs are read according to their family.
    unsafe {
        if libc::getifaddrs(&mut head) != 0 {
            return Err(std::io::Error::last_os_error());
        }
        let mut p = head;
        while !p.is_null() {
            let ifa = &*p;
            p = ifa.ifa_next;
            if ifa.ifa_addr.is_null() || ifa.ifa_name.is_null() {
                continue;
            }
            let name = std::ffi::CStr::from_ptr(ifa.ifa_name)
                .to_string_lossy()
                .into_owned();
            let addr = match (*ifa.ifa_addr).sa_family as i32 {
                libc::AF_INET => {
                    let sa = &*(ifa.ifa_addr as *const libc::sockaddr_in);
                    IpAddr::V4(Ipv4Addr::from(u32::from_be(sa.sin_addr.s_addr)))
                }
                libc::AF_INET6 => {
                    let sa = &*(ifa.ifa_addr as *const libc::sockaddr_in6);
                    IpAddr::V6(Ipv6Addr::from(sa.sin6_addr.s6_addr))
                }
                _ => continue,
            };
            map.entry(addr).or_insert(name);
        }
        libc::freeifaddrs(head);
    }
    Ok(map)
}

/// What changed between two address maps: (up, ifname, addr) in address order.
pub fn changes(old: &AddrMap, new: &AddrMap) -> Vec<(bool, String, IpAddr)> {
    let mut out = Vec::new();
    for (a, n) in old {
        if new.get(a) != Some(n) {
            out.push((false, n.clone(), *a));
        }
    }
    for (a, n) in new {
        if old.get(a) != Some(n) {
            out.push((true, n.clone(), *a));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_is_local() {
        let m = local_addrs().unwrap();
        assert_eq!(
            m.get(&IpAddr::V4(Ipv4Addr::LOCALHOST)).map(String::as_str),
            Some("lo")
        );
    }

    #[test]
    fn changes_lists_downs_then_ups() {
        let mut a = AddrMap::new();
        a.insert("10.0.0.1".parse().unwrap(), "eth0".into());
        let mut b = AddrMap::new();
        b.insert("10.0.0.2".parse().unwrap(), "eth0".into());
        let c = changes(&a, &b);
        assert_eq!(c.len(), 2);
        assert!(!c[0].0 && c[1].0);
    }
}
