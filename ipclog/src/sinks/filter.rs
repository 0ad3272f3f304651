//! The `--proto`, `--port`, `--host` and `--iface` filters, and a sink that passes on only
//! the events they let through (everything else a run says always passes).

use std::collections::HashSet;
use std::net::IpAddr;

use chrono::{DateTime, Utc};
use lookup::{Cidr, CidrError};

use shared::proto::proto_from_name;
use shared::sink::{EventSink, RunEnd, RunInfo, SinkStats};
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
            .map(|h| {
                Cidr::parse(h).map_err(|e| match e {
                    CidrError::NotAnAddress => format!("--host {h}: not an IP address"),
                    CidrError::BadPrefix { max } => {
                        format!("--host {h}: prefix length must be 0..={max}")
                    }
                })
            })
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

/// Passes matching events on; everything else a run says always passes.
pub struct Filtered<S> {
    pub filter: Filter,
    pub inner: S,
}

impl<S: EventSink> EventSink for Filtered<S> {
    fn start(&mut self, run: &RunInfo) {
        self.inner.start(run);
    }

    fn interface(&mut self, ts: DateTime<Utc>, up: bool, ifname: &str, addr: IpAddr) {
        self.inner.interface(ts, up, ifname, addr);
    }

    fn event(&mut self, ev: &ConnEvent) {
        if self.filter.matches(ev) {
            self.inner.event(ev);
        }
    }

    fn program(&mut self, ts: DateTime<Utc>, message: &str) {
        self.inner.program(ts, message);
    }

    fn source_lost(&mut self, total: u64) {
        self.inner.source_lost(total);
    }

    fn flush(&mut self) {
        self.inner.flush();
    }

    fn finish(&mut self, end: &RunEnd) {
        self.inner.finish(end);
    }

    fn stats(&self) -> SinkStats {
        self.inner.stats()
    }

    fn errors(&self) -> u64 {
        self.inner.errors()
    }

    fn not_written(&self) -> Option<String> {
        self.inner.not_written()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shared::sink::VecSink;
    use shared::{EventKind, FlowTuple, Source};

    fn ev() -> ConnEvent {
        let mut e = ConnEvent::new(
            EventKind::Close,
            Utc::now(),
            Source::Conntrack,
            1,
            6,
            FlowTuple::new(
                "10.0.0.1".parse().unwrap(),
                "10.0.1.1".parse().unwrap(),
                Some(40000),
                Some(80),
            ),
        );
        e.reply = Some(FlowTuple::new(
            "10.0.1.1".parse().unwrap(),
            "192.168.0.1".parse().unwrap(),
            Some(80),
            Some(40000),
        ));
        e.src_iface = Some("eth0".into());
        e
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

    /// Only events are filtered: the run's start, interfaces, messages and end pass.
    #[test]
    fn only_events_are_filtered() {
        let mut s = Filtered {
            filter: f(&["udp"], &[], &[], &[]),
            inner: VecSink::default(),
        };
        s.start(&RunInfo {
            started: Utc::now(),
            source: Source::Conntrack,
            command: "t",
        });
        s.interface(Utc::now(), true, "eth0", "10.0.0.1".parse().unwrap());
        s.event(&ev());
        s.source_lost(4);
        s.finish(&RunEnd {
            errors: 0,
            lost: 4,
            dropped: 0,
            started: None,
            stopped: Utc::now(),
        });
        assert!(s.inner.events.is_empty());
        assert_eq!(s.inner.interfaces.len(), 1);
        assert_eq!(s.inner.source_lost, 4);
        assert_eq!(
            s.inner.messages,
            ["ipclog started", "ipclog stopped, 0 errors"]
        );
        assert_eq!(s.inner.end.map(|e| e.lost), Some(4));
    }
}
