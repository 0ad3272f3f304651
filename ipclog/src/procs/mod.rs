//! `--proc`: which local process owns a connection (sysdig's `proc.name`). For a connection
//! with an end on this host, the kernel's socket table (NETLINK_SOCK_DIAG, [`diag`]) gives the
//! socket's inode and uid for the exact tuple, and the inode is found among the open files of
//! the processes ([`table`]). Looked up once per connection, at its first event (the O line
//! carries the answer), and remembered until its close so every later event carries the same.
//!
//! What cannot be attributed is counted by reason, never guessed: a socket already gone (a
//! short UDP exchange whose socket closed before the event was read), a socket no process of
//! this PID namespace holds (or its process exited mid-lookup). Connections without a local
//! end (forwarded, NATed through) and protocols without sockets of their own are skipped and
//! counted apart.

mod diag;
mod table;

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use shared::event::Process;
use shared::{ConnEvent, ConnKey, Direction, EventKind};

use diag::{Diag, End};
use table::Table;

/// The most open connections remembered (an entry is ~100 bytes).
const MAX_OPEN: usize = 1 << 20;

/// What the attribution did so far, per connection.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ProcStats {
    pub attributed: u64,
    /// The kernel has no socket for the tuple (any more), or only one no file holds.
    pub socket_gone: u64,
    /// A socket no process of this namespace holds (or whose process exited mid-lookup).
    pub no_process: u64,
    /// No local end, or a protocol without sockets to look up (skipped).
    pub not_local: u64,
    /// Requests the kernel refused.
    pub errors: u64,
    /// Time spent looking up, for the statistics.
    pub lookup_ns: u64,
    /// Walks of every process's open files (the other lookups need none).
    pub full_walks: u64,
}

impl ProcStats {
    pub fn unattributed(&self) -> u64 {
        self.socket_gone + self.no_process + self.errors
    }

    /// The summary the run ends with and `-s` prints.
    pub fn describe(&self) -> String {
        let looked = self.attributed + self.unattributed();
        format!(
            "proc: {} attributed, {} unattributed (socket gone {}, no process {}, errors {}), {} not local, {:.1} us per lookup, {} full /proc walks",
            self.attributed,
            self.unattributed(),
            self.socket_gone,
            self.no_process,
            self.errors,
            self.not_local,
            if looked == 0 { 0.0 } else { self.lookup_ns as f64 / looked as f64 / 1000.0 },
            self.full_walks,
        )
    }
}

pub struct Attributor {
    diag: Diag,
    table: Table,
    /// The answer for each open connection (`None`: looked up, unattributed).
    open: HashMap<ConnKey, Option<Process>>,
    /// This host's addresses, for sources that cannot say which end is local (packets).
    local: Vec<IpAddr>,
    local_read: Option<Instant>,
    pub stats: ProcStats,
}

impl Attributor {
    /// Opens the kernel's socket table: a start-up error when that is not possible.
    pub fn open() -> std::io::Result<Attributor> {
        let mut table = Table::default();
        table.rescan();
        Ok(Attributor {
            diag: Diag::open()?,
            table,
            open: HashMap::new(),
            local: Vec::new(),
            local_read: None,
            stats: ProcStats::default(),
        })
    }

    /// The process of `ev`'s connection, looked up at its first event and remembered until
    /// its close.
    pub fn process(&mut self, ev: &ConnEvent) -> Option<Process> {
        let key = ev.key();
        let found = match self.open.get(&key) {
            Some(p) => p.clone(),
            None => {
                let p = self.look_up(ev);
                if ev.kind != EventKind::Close {
                    // Closes lost with the kernel's events would keep their entries forever.
                    if self.open.len() >= MAX_OPEN {
                        self.open.clear();
                    }
                    self.open.insert(key, p.clone());
                }
                return p;
            }
        };
        if ev.kind == EventKind::Close {
            self.open.remove(&key);
        }
        found
    }

    /// The local socket's (local, remote) ends, the client's when both ends are local, and
    /// whether the local end is the responder.
    fn local_ends(&mut self, ev: &ConnEvent) -> Option<(End, End, bool)> {
        let (o, r) = (ev.orig, ev.reply.unwrap_or(ev.orig.reversed()));
        let end = |a, p: Option<u16>| End {
            addr: a,
            port: p.unwrap_or(0),
        };
        match ev.direction {
            Direction::Outgoing | Direction::Local => {
                Some((end(o.src, o.sport), end(o.dst, o.dport), false))
            }
            // The socket sees the tuple as its replies leave: after DNAT.
            Direction::Incoming => Some((end(r.src, r.sport), end(r.dst, r.dport), true)),
            Direction::Forwarded => None,
            Direction::Unknown => {
                if self
                    .local_read
                    .is_none_or(|t| t.elapsed() > Duration::from_secs(2))
                {
                    self.local_read = Some(Instant::now());
                    if let Ok(m) = crate::ifaddr::local_addrs() {
                        self.local = m.into_keys().collect();
                    }
                }
                let is_local = |a: &IpAddr| a.is_loopback() || self.local.contains(a);
                if is_local(&o.src) {
                    Some((end(o.src, o.sport), end(o.dst, o.dport), false))
                } else if is_local(&o.dst) {
                    Some((end(o.dst, o.dport), end(o.src, o.sport), true))
                } else {
                    None
                }
            }
        }
    }

    fn look_up(&mut self, ev: &ConnEvent) -> Option<Process> {
        let tcp = ev.proto == libc::IPPROTO_TCP as u8;
        if !(tcp || ev.proto == libc::IPPROTO_UDP as u8) {
            self.stats.not_local += 1;
            return None;
        }
        let Some((local, remote, responder)) = self.local_ends(ev) else {
            self.stats.not_local += 1;
            return None;
        };
        let t0 = Instant::now();
        let p = self.by_socket(ev.proto, local, remote, responder);
        self.stats.lookup_ns += t0.elapsed().as_nanos() as u64;
        self.stats.full_walks = self.table.walks.full;
        p
    }

    fn by_socket(
        &mut self,
        proto: u8,
        local: End,
        remote: End,
        responder: bool,
    ) -> Option<Process> {
        let mut sock = match self.diag.lookup(proto, local, remote) {
            Ok(s) => s,
            Err(_) => {
                self.stats.errors += 1;
                return None;
            }
        };
        // An incoming connection still in its handshake (or not accepted yet) has no socket
        // a process holds: its listener's owner is the one that will serve it.
        if responder && proto == libc::IPPROTO_TCP as u8 && sock.is_none_or(|s| s.inode == 0) {
            let any = End {
                addr: match local.addr {
                    IpAddr::V4(_) => IpAddr::V4(0.into()),
                    IpAddr::V6(_) => IpAddr::V6(0.into()),
                },
                port: 0,
            };
            if let Ok(Some(l)) = self.diag.lookup(proto, local, any) {
                if l.inode != 0 {
                    sock = Some(l);
                }
            }
        }
        let Some(sock) = sock.filter(|s| s.inode != 0) else {
            self.stats.socket_gone += 1;
            return None;
        };
        match self.table.owner(sock.inode) {
            Some(o) => {
                self.stats.attributed += 1;
                Some(Process {
                    pid: o.pid,
                    comm: o.comm,
                    uid: sock.uid,
                })
            }
            None => {
                self.stats.no_process += 1;
                None
            }
        }
    }
}
