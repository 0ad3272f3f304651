//! `-n`: host and service names for the log, as ipmon's `-n` gives them.
//!
//! The O/S/C columns stay numeric (constat reads them), so names are added as `key=value`
//! tokens: `src_name=`, `dst_name=` (reverse lookup of addresses that are not this host's)
//! and `service=` (the destination port's name from /etc/services; `-p` keeps ports numeric
//! only). Reverse lookups can take seconds, so they run on their own thread with a bounded
//! queue: the event path only reads a cache, and an address's first lines may come before its
//! answer.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::mpsc::{self, SyncSender};
use std::sync::{Arc, Mutex};

use shared::ConnEvent;

/// Addresses the cache holds at most; beyond it new addresses are not looked up.
const MAX_CACHED: usize = 100_000;

pub struct Names {
    cache: Arc<Mutex<HashMap<IpAddr, Option<String>>>>,
    /// None: look up in the caller's thread (the one-shot `ipc`, where waiting is fine).
    tx: Option<SyncSender<IpAddr>>,
    services: HashMap<(u16, u8), String>,
}

impl Names {
    /// Lookups in the caller's thread (for `ipc`).
    pub fn blocking(services: bool) -> Names {
        Names {
            cache: Arc::default(),
            tx: None,
            services: if services {
                read_services("/etc/services")
            } else {
                HashMap::new()
            },
        }
    }

    /// Starts the resolver thread; `services` false for `-p`.
    pub fn start(services: bool) -> Names {
        let cache: Arc<Mutex<HashMap<IpAddr, Option<String>>>> = Arc::default();
        let (tx, rx) = mpsc::sync_channel::<IpAddr>(4096);
        let c = cache.clone();
        std::thread::Builder::new()
            .name("ipclog-names".into())
            .spawn(move || {
                for ip in rx {
                    let name = reverse(ip);
                    if let Ok(mut m) = c.lock() {
                        m.insert(ip, name);
                    }
                }
            })
            .expect("spawn resolver thread");
        Names {
            cache,
            tx: Some(tx),
            services: if services {
                read_services("/etc/services")
            } else {
                HashMap::new()
            },
        }
    }

    fn host(&self, ip: IpAddr) -> Option<String> {
        let mut m = self.cache.lock().ok()?;
        match m.get(&ip) {
            Some(n) => n.clone(),
            None => match &self.tx {
                Some(tx) => {
                    if m.len() < MAX_CACHED && tx.try_send(ip).is_ok() {
                        // Pending: asked once only.
                        m.insert(ip, None);
                    }
                    None
                }
                None => {
                    let n = reverse(ip);
                    m.insert(ip, n.clone());
                    n
                }
            },
        }
    }

    /// Appends the name tokens for `ev` to a log line.
    pub fn append_tokens(&self, ev: &ConnEvent, line: &mut String) {
        if ev.src_iface.is_none() {
            if let Some(n) = self.host(ev.shown_src()) {
                line.push_str(" src_name=");
                line.push_str(&n);
            }
        }
        if ev.dst_iface.is_none() {
            if let Some(n) = self.host(ev.shown_dst()) {
                line.push_str(" dst_name=");
                line.push_str(&n);
            }
        }
        if let Some(p) = ev.shown_dport() {
            if let Some(s) = self.services.get(&(p, ev.proto)) {
                line.push_str(" service=");
                line.push_str(s);
            }
        }
    }
}

/// getnameinfo(3) with NI_NAMEREQD: a name, or None when the address has none.
fn reverse(ip: IpAddr) -> Option<String> {
    let (storage, len) = sockaddr(ip);
    let mut host = [0 as libc::c_char; 1025];
    // SAFETY: a sockaddr of the right length and a host buffer of NI_MAXHOST bytes.
    let r = unsafe {
        libc::getnameinfo(
            &storage as *const libc::sockaddr_storage as *const libc::sockaddr,
            len,
            host.as_mut_ptr(),
            host.len() as libc::socklen_t,
            std::ptr::null_mut(),
            0,
            libc::NI_NAMEREQD,
        )
    };
    if r != 0 {
        return None;
    }
    // SAFETY: getnameinfo wrote a NUL-terminated string.
    let s = unsafe { std::ffi::CStr::from_ptr(host.as_ptr()) }
        .to_string_lossy()
        .into_owned();
    // A token value must not contain blanks.
    (!s.is_empty() && !s.contains(char::is_whitespace)).then_some(s)
}

fn sockaddr(ip: IpAddr) -> (libc::sockaddr_storage, libc::socklen_t) {
    // SAFETY: zeroed sockaddr_storage is a valid value; we fill the family's fields.
    let mut ss: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    match ip {
        IpAddr::V4(a) => {
            let sin = &mut ss as *mut _ as *mut libc::sockaddr_in;
            // SAFETY: sockaddr_storage is large enough for sockaddr_in.
            unsafe {
                (*sin).sin_family = libc::AF_INET as libc::sa_family_t;
                (*sin).sin_addr.s_addr = u32::from(a).to_be();
            }
            (
                ss,
                std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
            )
        }
        IpAddr::V6(a) => {
            let sin6 = &mut ss as *mut _ as *mut libc::sockaddr_in6;
            // SAFETY: sockaddr_storage is large enough for sockaddr_in6.
            unsafe {
                (*sin6).sin6_family = libc::AF_INET6 as libc::sa_family_t;
                (*sin6).sin6_addr.s6_addr = a.octets();
            }
            (
                ss,
                std::mem::size_of::<libc::sockaddr_in6>() as libc::socklen_t,
            )
        }
    }
}

/// `name port/proto [aliases]` lines of /etc/services; missing file: no names.
fn read_services(path: &str) -> HashMap<(u16, u8), String> {
    let mut m = HashMap::new();
    let Ok(text) = std::fs::read_to_string(path) else {
        return m;
    };
    for line in text.lines() {
        let line = line.split('#').next().unwrap_or("");
        let mut f = line.split_whitespace();
        let (Some(name), Some(pp)) = (f.next(), f.next()) else {
            continue;
        };
        let Some((port, proto)) = pp.split_once('/') else {
            continue;
        };
        let (Ok(port), Some(proto)) = (port.parse::<u16>(), shared::proto::proto_from_name(proto))
        else {
            continue;
        };
        m.entry((port, proto)).or_insert_with(|| name.to_string());
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn services_file_is_read() {
        let d = std::env::temp_dir().join(format!("ipclog-services-{}", std::process::id()));
        std::fs::write(
            &d,
            "# x\nhttp-alt\t8080/tcp\twebcache\t# WWW\nmdns 5353/udp\nbad line\nx 99999/tcp\n",
        )
        .unwrap();
        let m = read_services(d.to_str().unwrap());
        assert_eq!(m.get(&(8080, 6)).map(String::as_str), Some("http-alt"));
        assert_eq!(m.get(&(5353, 17)).map(String::as_str), Some("mdns"));
        assert_eq!(m.len(), 2);
        let _ = std::fs::remove_file(d);
    }

    #[test]
    fn loopback_has_a_name() {
        // /etc/hosts names 127.0.0.1 on any Debian system.
        assert!(reverse("127.0.0.1".parse().unwrap()).is_some());
    }
}
