//! ctnetlink sockets: the event socket (NEW/UPDATE/DESTROY multicast groups, big receive
//! buffer, exact drop count) and table dumps on a socket of their own. Errors say what the
//! user should do, and a missing CAP_NET_ADMIN is told apart from other failures by its kind.

use std::io;
use std::os::fd::AsRawFd;
use std::time::Duration;

use netlink_sys::{protocols::NETLINK_NETFILTER, Socket, SocketAddr};

use super::ctnetlink::{self, CtMsg, DecodeError, Item, Messages};
use crate::error::Error;

/// Multicast groups `NFNLGRP_CONNTRACK_NEW`, `_UPDATE`, `_DESTROY`.
const GROUPS: [u32; 3] = [1, 2, 3];

/// How the receive buffer was set.
#[derive(Debug, Clone)]
pub struct RcvBuf {
    pub requested: usize,
    /// What the kernel reports (it doubles the value for bookkeeping).
    pub actual: usize,
    /// `SO_RCVBUFFORCE` (past net.core.rmem_max) or `SO_RCVBUF` (capped by it).
    pub forced: bool,
}

/// A NETLINK_NETFILTER socket bound to an address the kernel picks.
pub(crate) fn netfilter_socket() -> Result<Socket, Error> {
    let mut sock = Socket::new(NETLINK_NETFILTER).map_err(|e| {
        Error::Start(format!(
            "ipclog: cannot open a netfilter netlink socket: {e}"
        ))
    })?;
    sock.bind_auto()
        .map_err(|e| Error::Start(format!("ipclog: cannot bind the netlink socket: {e}")))?;
    Ok(sock)
}

/// Sets the receive buffer of `fd` to `bytes`: past net.core.rmem_max where the capability
/// allows (`SO_RCVBUFFORCE`), else capped by it (`SO_RCVBUF`).
pub(crate) fn set_rcvbuf(fd: i32, bytes: usize) -> RcvBuf {
    let req = bytes.min(i32::MAX as usize) as libc::c_int;
    let forced = match setsockopt_int(fd, libc::SO_RCVBUFFORCE, req) {
        Ok(()) => true,
        Err(_) => {
            let _ = setsockopt_int(fd, libc::SO_RCVBUF, req);
            false
        }
    };
    RcvBuf {
        requested: bytes,
        actual: getsockopt_int(fd, libc::SO_RCVBUF).unwrap_or(0),
        forced,
    }
}

/// 0 from a libc call as `Ok`, else the errno it left.
fn check(r: libc::c_int) -> io::Result<()> {
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Sets a `SOL_SOCKET` option whose value is a plain C type (`int`, `timeval`).
fn setsockopt<T: Copy>(fd: i32, opt: libc::c_int, val: &T) -> io::Result<()> {
    // SAFETY: `val` points at a live value of the size given, on a socket we own.
    check(unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            opt,
            val as *const T as *const libc::c_void,
            std::mem::size_of::<T>() as u32,
        )
    })
}

pub(crate) fn setsockopt_int(fd: i32, opt: libc::c_int, val: libc::c_int) -> io::Result<()> {
    setsockopt(fd, opt, &val)
}

pub(crate) fn getsockopt_int(fd: i32, opt: libc::c_int) -> io::Result<usize> {
    let mut val: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as u32;
    // SAFETY: reading an int option into a local of that size.
    check(unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            opt,
            &mut val as *mut _ as *mut libc::c_void,
            &mut len,
        )
    })?;
    Ok(val as usize)
}

pub(crate) fn set_rcvtimeo(fd: i32, d: Duration) -> io::Result<()> {
    let tv = libc::timeval {
        tv_sec: d.as_secs() as libc::time_t,
        tv_usec: d.subsec_micros() as libc::suseconds_t,
    };
    setsockopt(fd, libc::SO_RCVTIMEO, &tv)
}

pub(crate) fn socket_inode(fd: i32) -> u64 {
    // SAFETY: fstat into a zeroed struct.
    unsafe {
        let mut st: libc::stat = std::mem::zeroed();
        if libc::fstat(fd, &mut st) == 0 {
            st.st_ino
        } else {
            0
        }
    }
}

pub(crate) fn permission_error(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::EPERM) | Some(libc::EACCES))
}

const NEED_CAP: &str = "ipclog: reading conntrack needs CAP_NET_ADMIN (run as root or \
                        grant the capability, e.g. systemd AmbientCapabilities=CAP_NET_ADMIN)";

/// A dump's failure: missing permission, or `what` failed with `e`.
fn dump_error(what: &str, e: io::Error) -> Error {
    if permission_error(&e) {
        Error::Permission(format!("{NEED_CAP}: {e}"))
    } else {
        Error::Run(format!("conntrack dump: {what}{e}"))
    }
}

/// The subscribed event socket.
pub struct EventSocket {
    sock: Socket,
    pub inode: u64,
    pub rcvbuf: RcvBuf,
}

impl EventSocket {
    /// Subscribes to conntrack events with a receive buffer of `rcvbuf` bytes and a receive
    /// timeout of `tick` (so the reader notices signals).
    pub fn open(rcvbuf: usize, tick: Duration) -> Result<EventSocket, Error> {
        let sock = netfilter_socket()?;
        for g in GROUPS {
            if let Err(e) = sock.add_membership(g) {
                return Err(if permission_error(&e) {
                    Error::Permission(format!("{NEED_CAP}: {e}"))
                } else {
                    Error::Start(format!(
                        "ipclog: cannot subscribe to conntrack events (group {g}): {e}; is \
                         nf_conntrack_netlink available (modprobe nf_conntrack_netlink)?"
                    ))
                });
            }
        }
        let fd = sock.as_raw_fd();
        let rcvbuf = set_rcvbuf(fd, rcvbuf);
        set_rcvtimeo(fd, tick)
            .map_err(|e| Error::Start(format!("ipclog: cannot set a receive timeout: {e}")))?;
        let inode = socket_inode(fd);
        Ok(EventSocket {
            sock,
            inode,
            rcvbuf,
        })
    }

    /// One datagram (one or more netlink messages). `Ok(0)` on the receive timeout (or at
    /// once when nothing is queued and `wait` is false).
    pub fn recv(&self, buf: &mut [u8], wait: bool) -> io::Result<usize> {
        recv_datagram(&self.sock, buf, if wait { 0 } else { libc::MSG_DONTWAIT })
    }

    /// Messages the kernel dropped on this socket so far (the `Drops` column of
    /// /proc/self/net/netlink for our inode).
    pub fn drops(&self) -> Option<u64> {
        netlink_drops(self.inode)
    }
}

/// Receives one datagram from a netlink socket; a receive timeout, nothing queued (with
/// `MSG_DONTWAIT`) or a signal is `Ok(0)`, so the callers' loops look at their stop flag.
pub(crate) fn recv_datagram(sock: &Socket, buf: &mut [u8], flags: i32) -> io::Result<usize> {
    let mut b = &mut buf[..];
    match sock.recv(&mut b, flags) {
        Ok(n) => Ok(n),
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut | io::ErrorKind::Interrupted
            ) =>
        {
            Ok(0)
        }
        Err(e) => Err(e),
    }
}

/// The `Drops` column of /proc/self/net/netlink for the socket with this inode.
pub fn netlink_drops(inode: u64) -> Option<u64> {
    let text = std::fs::read_to_string("/proc/self/net/netlink").ok()?;
    for line in text.lines().skip(1) {
        let f: Vec<&str> = line.split_ascii_whitespace().collect();
        if f.len() >= 10 && f[9].parse::<u64>().ok() == Some(inode) {
            return f[8].parse().ok();
        }
    }
    None
}

/// Dumps the whole conntrack table (IPv4 and IPv6), calling `each` for every entry. Also
/// makes the kernel evict expired entries, which sends their DESTROY events at once.
pub fn dump(each: impl FnMut(CtMsg)) -> Result<u64, Error> {
    dump_family(0, each)
}

/// Makes the kernel evict expired entries (their DESTROY events follow at once) without
/// sending us the table: a dump filtered on a family no entry has (ARP) still walks every
/// bucket and evicts what expired, but builds no message. Falls back to a full dump if the
/// kernel refuses the family.
pub fn evict() -> Result<u64, Error> {
    const NFPROTO_ARP: u8 = 3;
    dump_family(NFPROTO_ARP, |_| {}).or_else(|_| dump_family(0, |_| {}))
}

fn dump_family(family: u8, mut each: impl FnMut(CtMsg)) -> Result<u64, Error> {
    // Only a refused send, receive or netlink request means missing permission: socket
    // and bind failures are said as they are, as before.
    let plain = |what: &str, e: io::Error| Error::Run(format!("conntrack dump: {what}{e}"));
    let mut sock = Socket::new(NETLINK_NETFILTER).map_err(|e| plain("socket: ", e))?;
    sock.bind_auto().map_err(|e| plain("bind: ", e))?;
    let _ = setsockopt_int(sock.as_raw_fd(), libc::SO_RCVBUF, 4 << 20);
    set_rcvtimeo(sock.as_raw_fd(), Duration::from_secs(10)).map_err(|e| plain("", e))?;
    let req = ctnetlink::dump_request(family, 1);
    sock.send_to(&req, &SocketAddr::new(0, 0), 0)
        .map_err(|e| dump_error("send: ", e))?;
    let mut buf = vec![0u8; 1 << 17];
    let mut n_entries = 0u64;
    loop {
        let mut b = &mut buf[..];
        let n = sock
            .recv(&mut b, 0)
            .map_err(|e| dump_error("receive: ", e))?;
        if n == 0 {
            return Err(Error::Run("conntrack dump: socket closed".into()));
        }
        for item in Messages::new(&buf[..n]) {
            match item {
                Ok(Item::Conntrack(m)) => {
                    n_entries += 1;
                    each(m);
                }
                Ok(Item::Done) => return Ok(n_entries),
                Ok(Item::Ack) | Ok(Item::Other(_)) => {}
                Err(DecodeError::Netlink(errno)) => {
                    return Err(dump_error("", io::Error::from_raw_os_error(-errno)))
                }
                Err(e) => return Err(Error::Run(format!("conntrack dump: {e}"))),
            }
        }
    }
}
