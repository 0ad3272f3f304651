//! The kernel's socket table through NETLINK_SOCK_DIAG: one inet_diag request for one exact
//! 5-tuple, answered with the socket's inode and uid. A lookup by tuple is a hash lookup in
//! the kernel (no dump of the table), so it costs one round trip on a socket kept open.
//! Hand-written: the request and answer are two fixed structs (`linux/inet_diag.h`).

use std::io;
use std::net::IpAddr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

const SOCK_DIAG_BY_FAMILY: u16 = 20;
const NLMSG_ERROR: u16 = 2;
const NLMSG_HDR: usize = 16;
/// `struct inet_diag_req_v2`.
const REQ_LEN: usize = 56;
/// `struct inet_diag_msg` up to `idiag_inode`.
const MSG_LEN: usize = 72;

/// One end of a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct End {
    pub addr: IpAddr,
    pub port: u16,
}

/// What the kernel knows of a socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SockInfo {
    /// 0 for a socket no file holds: a handshake not accepted yet, or TIME_WAIT.
    pub inode: u32,
    pub uid: u32,
}

/// A NETLINK_SOCK_DIAG socket of the namespace ipclog runs in.
pub struct Diag {
    fd: OwnedFd,
    seq: u32,
    buf: Vec<u8>,
}

impl Diag {
    pub fn open() -> io::Result<Diag> {
        // SAFETY: plain socket(2); the descriptor is owned from here on.
        let fd = unsafe {
            libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC,
                libc::NETLINK_SOCK_DIAG,
            )
        };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: fd was just returned by socket(2) and is not owned elsewhere.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        // An answer that never comes (it always does: the kernel answers in the send) must
        // not stall the writers.
        let tv = libc::timeval {
            tv_sec: 0,
            tv_usec: 200_000,
        };
        // SAFETY: setsockopt with a timeval of the right size.
        unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                &tv as *const _ as *const libc::c_void,
                std::mem::size_of::<libc::timeval>() as u32,
            );
        }
        Ok(Diag {
            fd,
            seq: 0,
            buf: vec![0; 8192],
        })
    }

    /// The socket of protocol `proto` (6 or 17) whose local end is `local` and remote end
    /// `remote` (an unspecified remote address and port 0 find a TCP listener). `Ok(None)`:
    /// there is none (any more).
    pub fn lookup(&mut self, proto: u8, local: End, remote: End) -> io::Result<Option<SockInfo>> {
        if proto == libc::IPPROTO_UDP as u8 {
            // udp_dump_one looks the tuple up as a packet from idiag_src to idiag_dst would
            // be delivered ("src and dst are swapped for historical reasons", udp_diag.c):
            // the remote end goes first.
            return self.request(proto, remote, local);
        }
        self.request(proto, local, remote)
    }

    fn request(&mut self, proto: u8, src: End, dst: End) -> io::Result<Option<SockInfo>> {
        let family = match (src.addr, dst.addr) {
            (IpAddr::V4(_), IpAddr::V4(_)) => libc::AF_INET,
            (IpAddr::V6(_), IpAddr::V6(_)) => libc::AF_INET6,
            _ => return Ok(None),
        };
        self.seq = self.seq.wrapping_add(1);
        let mut msg = [0u8; NLMSG_HDR + REQ_LEN];
        msg[0..4].copy_from_slice(&((NLMSG_HDR + REQ_LEN) as u32).to_ne_bytes());
        msg[4..6].copy_from_slice(&SOCK_DIAG_BY_FAMILY.to_ne_bytes());
        msg[6..8].copy_from_slice(&(libc::NLM_F_REQUEST as u16).to_ne_bytes());
        msg[8..12].copy_from_slice(&self.seq.to_ne_bytes());
        let r = &mut msg[NLMSG_HDR..];
        r[0] = family as u8;
        r[1] = proto;
        // idiag_states: every state (a lookup by tuple ignores it; a zero would not).
        r[4..8].copy_from_slice(&u32::MAX.to_ne_bytes());
        let id = &mut r[8..];
        id[0..2].copy_from_slice(&src.port.to_be_bytes());
        id[2..4].copy_from_slice(&dst.port.to_be_bytes());
        put_addr(&mut id[4..20], src.addr);
        put_addr(&mut id[20..36], dst.addr);
        // idiag_if 0; idiag_cookie INET_DIAG_NOCOOKIE: not checked.
        id[40..48].copy_from_slice(&[0xff; 8]);
        // SAFETY: send(2) of a buffer we own on our socket (to the kernel: no address).
        let sent = unsafe {
            libc::send(
                self.fd.as_raw_fd(),
                msg.as_ptr() as *const libc::c_void,
                msg.len(),
                0,
            )
        };
        if sent < 0 {
            return Err(io::Error::last_os_error());
        }
        loop {
            // SAFETY: recv(2) into our buffer, within its length.
            let n = unsafe {
                libc::recv(
                    self.fd.as_raw_fd(),
                    self.buf.as_mut_ptr() as *mut libc::c_void,
                    self.buf.len(),
                    0,
                )
            };
            if n < 0 {
                return Err(io::Error::last_os_error());
            }
            if let Some(answer) = parse_answer(&self.buf[..n as usize], self.seq)? {
                return Ok(answer);
            }
            // An answer to an earlier request that timed out: read on.
        }
    }
}

fn put_addr(out: &mut [u8], a: IpAddr) {
    match a {
        IpAddr::V4(a) => out[..4].copy_from_slice(&a.octets()),
        IpAddr::V6(a) => out.copy_from_slice(&a.octets()),
    }
}

/// Reads the answer to request `seq` out of one datagram: `Ok(None)` when it answers another
/// request, `Ok(Some(None))` when the kernel has no such socket.
fn parse_answer(mut b: &[u8], seq: u32) -> io::Result<Option<Option<SockInfo>>> {
    let u32_at = |b: &[u8], i: usize| u32::from_ne_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
    while b.len() >= NLMSG_HDR {
        let len = u32_at(b, 0) as usize;
        if len < NLMSG_HDR || len > b.len() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "sock_diag: truncated netlink message",
            ));
        }
        let kind = u16::from_ne_bytes([b[4], b[5]]);
        let this = &b[..len];
        let next = ((len + 3) & !3).min(b.len());
        b = &b[next..];
        if u32_at(this, 8) != seq {
            continue;
        }
        return match kind {
            NLMSG_ERROR if len >= NLMSG_HDR + 4 => {
                let errno = -(u32_at(this, NLMSG_HDR) as i32);
                match errno {
                    0 | libc::ENOENT => Ok(Some(None)),
                    e => Err(io::Error::from_raw_os_error(e)),
                }
            }
            SOCK_DIAG_BY_FAMILY if len >= NLMSG_HDR + MSG_LEN => {
                let m = &this[NLMSG_HDR..];
                Ok(Some(Some(SockInfo {
                    uid: u32_at(m, 64),
                    inode: u32_at(m, 68),
                })))
            }
            _ => Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("sock_diag: unexpected answer (type {kind}, {len} bytes)"),
            )),
        };
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{TcpListener, TcpStream, UdpSocket};
    use std::os::unix::fs::MetadataExt;

    fn inode_of(fd: i32) -> u32 {
        std::fs::metadata(format!("/proc/self/fd/{fd}"))
            .unwrap()
            .ino() as u32
    }

    fn end(a: std::net::SocketAddr) -> End {
        End {
            addr: a.ip(),
            port: a.port(),
        }
    }

    /// The kernel finds both ends of a loopback TCP connection, the listener by its local end
    /// alone, a connected UDP socket, and nothing for a tuple no socket has.
    #[test]
    fn finds_sockets_by_tuple() {
        let mut d = Diag::open().unwrap();
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let c = TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (s, _) = l.accept().unwrap();
        let (ca, sa) = (end(c.local_addr().unwrap()), end(s.local_addr().unwrap()));
        let me = unsafe { libc::geteuid() };
        let got = d.lookup(6, ca, sa).unwrap().unwrap();
        assert_eq!(got.inode, inode_of(c.as_raw_fd()));
        assert_eq!(got.uid, me);
        let got = d.lookup(6, sa, ca).unwrap().unwrap();
        assert_eq!(got.inode, inode_of(s.as_raw_fd()));
        let any = End {
            addr: "0.0.0.0".parse().unwrap(),
            port: 0,
        };
        let got = d.lookup(6, sa, any).unwrap().unwrap();
        assert_eq!(got.inode, inode_of(l.as_raw_fd()));

        let u = UdpSocket::bind("[::1]:0").unwrap();
        let v = UdpSocket::bind("[::1]:0").unwrap();
        u.connect(v.local_addr().unwrap()).unwrap();
        let got = d
            .lookup(
                17,
                end(u.local_addr().unwrap()),
                end(v.local_addr().unwrap()),
            )
            .unwrap()
            .unwrap();
        assert_eq!(got.inode, inode_of(u.as_raw_fd()));

        let gone = End {
            addr: "127.0.0.1".parse().unwrap(),
            port: 1,
        };
        assert_eq!(d.lookup(6, gone, ca).unwrap(), None);
    }
}

#[cfg(test)]
mod timing {
    use super::*;
    use std::net::{TcpListener, TcpStream};

    /// The cost of one lookup by tuple (`cargo test --release -p ipclog time_a_lookup --
    /// --ignored --nocapture`; BENCHMARKS.md).
    #[test]
    #[ignore]
    fn time_a_lookup() {
        let mut d = Diag::open().unwrap();
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let c = TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let end = |a: std::net::SocketAddr| End {
            addr: a.ip(),
            port: a.port(),
        };
        let (a, b) = (end(c.local_addr().unwrap()), end(l.local_addr().unwrap()));
        let n = 20_000;
        let t0 = std::time::Instant::now();
        for _ in 0..n {
            assert!(d.lookup(6, a, b).unwrap().is_some());
        }
        eprintln!("{:?} per lookup", t0.elapsed() / n);
    }
}
