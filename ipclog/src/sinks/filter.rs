//! The `--proto`, `--port`, `--host` and `--iface` filters: which events the outputs show.

use std::collections::HashSet;

use shared::net::Cidr;

use shared::proto::proto_from_name;
use shared::ConnEvent;

/// The protocol / port / address / interface filters; an empty list lets everything through.
#[derive(Debug, Default, Clone)]
pub struct Filter {
    pub protos: HashSet<u8>,
    pub ports: HashSet<u16>,
    pub hosts: Vec<Cidr>,
    pub ifaces: HashSet<String>,
}

impl Filter {
    pub fn new(
        protos: &[String],
        ports: &[u16],
        hosts: &[String],
        ifaces: &[String],
    ) -> Result<Filter, String> {
        let protos = protos
            .iter()
            .map(|p| proto_from_name(p).ok_or_else(|| format!("--proto {p}: unknown protocol")))
            .collect::<Result<_, _>>()?;
        let hosts = hosts
            .iter()
            .map(|h| Cidr::parse(h).map_err(|e| format!("--host {h}: {e}")))
            .collect::<Result<_, _>>()?;
        Ok(Filter {
            protos,
            ports: ports.iter().copied().collect(),
            hosts,
            ifaces: ifaces.iter().cloned().collect(),
        })
    }

    pub fn matches(&self, ev: &ConnEvent) -> bool {
        if !self.protos.is_empty() && !self.protos.contains(&ev.proto) {
            return false;
        }
        let mut ports = [ev.orig.sport, ev.orig.dport, None, None];
        let mut addrs = [ev.orig.src, ev.orig.dst, ev.orig.src, ev.orig.dst];
        if let Some(r) = ev.reply {
            ports[2] = r.sport;
            ports[3] = r.dport;
            addrs[2] = r.src;
            addrs[3] = r.dst;
        }
        if !self.ports.is_empty() && !ports.iter().flatten().any(|p| self.ports.contains(p)) {
            return false;
        }
        if !self.hosts.is_empty()
            && !addrs
                .iter()
                .any(|a| self.hosts.iter().any(|c| c.contains(*a)))
        {
            return false;
        }
        if !self.ifaces.is_empty() {
            let hit = [&ev.src_iface, &ev.dst_iface]
                .into_iter()
                .flatten()
                .any(|i| self.ifaces.contains(i));
            if !hit {
                return false;
            }
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev() -> ConnEvent {
        super::super::test_event()
    }

    fn f(p: &[&str], ports: &[u16], h: &[&str], i: &[&str]) -> Filter {
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        Filter::new(&s(p), ports, &s(h), &s(i)).unwrap()
    }

    #[test]
    fn filters() {
        let e = ev();
        assert!(f(&[], &[], &[], &[]).matches(&e));
        assert!(f(&["tcp"], &[], &[], &[]).matches(&e));
        assert!(!f(&["udp", "1"], &[], &[], &[]).matches(&e));
        assert!(f(&[], &[80], &[], &[]).matches(&e));
        assert!(!f(&[], &[81], &[], &[]).matches(&e));
        assert!(f(&[], &[], &["192.168.0.0/16"], &[]).matches(&e));
        assert!(f(&[], &[], &["192.168.7.7/16"], &[]).matches(&e));
        assert!(!f(&[], &[], &["172.16.0.0/12", "::1"], &[]).matches(&e));
        assert!(f(&[], &[], &[], &["eth0"]).matches(&e));
        assert!(!f(&[], &[], &[], &["eth1"]).matches(&e));
        assert!(Filter::new(&["bogus".into()], &[], &[], &[]).is_err());
        assert_eq!(
            Filter::new(&[], &[], &["10.0.0.0/33".into()], &[]).unwrap_err(),
            "--host 10.0.0.0/33: prefix length must be 0..=32"
        );
        assert_eq!(
            Filter::new(&[], &[], &["gw/8".into()], &[]).unwrap_err(),
            "--host gw/8: not an IP address"
        );
    }
}
