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

use shared::text::push_field;
use shared::ConnEvent;

/// Addresses the cache holds at most; beyond it new addresses are not looked up.
const MAX_CACHED: usize = 100_000;

pub struct Names {
    cache: Arc<Mutex<HashMap<IpAddr, Option<String>>>>,
    /// None: look up in the caller's thread (the one-shot `ipc`, where waiting is fine).
    tx: Option<SyncSender<IpAddr>>,
    services: lookup::Services,
}

/// The services table for `-n` (built-in plus /etc/services), or none for `-p`.
fn services_table(services: bool) -> lookup::Services {
    if services {
        lookup::Services::system().0
    } else {
        lookup::Services::empty()
    }
}

impl Names {
    /// Lookups in the caller's thread (for `ipc`).
    pub fn blocking(services: bool) -> Names {
        Names {
            cache: Arc::default(),
            tx: None,
            services: services_table(services),
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
                // Started from a thread that may run at the event reader's priority.
                crate::daemon::set_thread_nice(0);
                for ip in rx {
                    let name = lookup::resolve(ip);
                    if let Ok(mut m) = c.lock() {
                        m.insert(ip, name);
                    }
                }
            })
            .expect("spawn resolver thread");
        Names {
            cache,
            tx: Some(tx),
            services: services_table(services),
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
                    let n = lookup::resolve(ip);
                    m.insert(ip, n.clone());
                    n
                }
            },
        }
    }

    /// Appends the name tokens for `ev` to a log line. Each value is an escaped field: a
    /// reverse-DNS answer is chosen by whoever owns the address, and /etc/services is text too.
    pub fn append_tokens(&self, ev: &ConnEvent, line: &mut String) {
        if ev.src_iface.is_none() {
            if let Some(n) = self.host(ev.shown_src()) {
                line.push_str(" src_name=");
                push_field(&n, line);
            }
        }
        if ev.dst_iface.is_none() {
            if let Some(n) = self.host(ev.shown_dst()) {
                line.push_str(" dst_name=");
                push_field(&n, line);
            }
        }
        if let Some(p) = ev.shown_dport() {
            if let Some(s) = self.services.name(p, ev.proto) {
                line.push_str(" service=");
                push_field(s, line);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shared::{EventKind, FlowTuple, Source};

    #[test]
    fn foreign_names_are_escaped_fields() {
        let mut n = Names::blocking(false);
        let src: IpAddr = "192.0.2.1".parse().unwrap();
        let dst: IpAddr = "198.51.100.7".parse().unwrap();
        // What a hostile PTR record can carry past resolve()'s check: bidi controls, backslashes.
        n.cache
            .lock()
            .unwrap()
            .insert(src, Some("moc.\u{202e}evil\\x20".into()));
        n.cache
            .lock()
            .unwrap()
            .insert(dst, Some("ok.example".into()));
        n.services.insert(4711, 6, "my service\u{1b}[7m");
        let ev = ConnEvent::new(
            EventKind::Open,
            chrono::Utc::now(),
            Source::Conntrack,
            1,
            6,
            FlowTuple::new(src, dst, Some(1000), Some(4711)),
        );
        let mut line = String::new();
        n.append_tokens(&ev, &mut line);
        assert_eq!(
            line,
            " src_name=moc.\\u202eevil\\x5cx20 dst_name=ok.example \
             service=my\\x20service\\x1b[7m"
        );
    }
}
