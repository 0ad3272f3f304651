//! The NFLOG source (`--nflog GROUP[,GROUP]`): ipmon's packet-filter log on Linux. nftables
//! rules send packets to a log group (`log group 1 prefix "drop-ssh" drop`); ipclog binds
//! the groups through NETLINK_NETFILTER, asks for the first [`COPY_RANGE`] bytes of each
//! packet (enough for the IP and transport headers, and the header an ICMP error quotes) and
//! for the conntrack entry the packet belongs to, and turns each message into a
//! `shared::packet::PacketEvent` for the sinks.
//!
//! One thread receives, decodes in place (`decode.rs`) and writes: a packet costs a few
//! microseconds, and the socket's large receive buffer absorbs bursts. Loss is never
//! silent: the groups are bound with sequence numbers, and a gap in them is the exact number
//! of packets the kernel could not deliver (`lost N packets` P lines, the run's loss).
//! Messages that cannot be logged (no payload, not IP, cut short) are counted by reason.

mod decode;

use std::collections::HashMap;
use std::io;
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use netlink_sys::{Socket, SocketAddr};

use shared::packet::{Action, PacketConn, PacketEvent};
use shared::sink::{EventSink, RunEnd, RunInfo};

use crate::conntrack::socket::{
    netfilter_socket, permission_error, set_rcvbuf, set_rcvtimeo, socket_inode,
};
use crate::error::Error;
use decode::{Item, Messages, RawPacket, Unusable};

/// Bytes of each packet the kernel copies: an IPv4 or IPv6 header with options, a TCP header
/// with options, or an ICMP error with the headers it quotes.
pub const COPY_RANGE: u32 = 256;
const TICK: Duration = Duration::from_millis(100);

/// The bound log groups.
pub struct NflogSocket {
    sock: Socket,
    groups: Vec<u16>,
    inode: u64,
    /// Whether the kernel attaches conntrack entries (needs nf_conntrack_netlink).
    pub conntrack: bool,
    /// Datagrams that arrived while later groups were being bound.
    early: Vec<Vec<u8>>,
}

/// Parses `--nflog`'s list: group numbers 0–65535, each once.
pub fn parse_groups(list: &[String]) -> Result<Vec<u16>, String> {
    let mut out = Vec::new();
    for g in list {
        let n = g.trim().parse::<u16>().map_err(|_| {
            format!(
                "--nflog: {:?} is not a log group number (0-65535)",
                shared::text::escaped(g)
            )
        })?;
        if !out.contains(&n) {
            out.push(n);
        }
    }
    Ok(out)
}

impl NflogSocket {
    /// Binds every group with copy mode packet, sequence numbers and conntrack entries. A
    /// group another process holds (ulogd, another ipclog) or missing permission is a start-up
    /// error naming the group.
    pub fn open(groups: &[u16], rcvbuf: usize) -> Result<NflogSocket, Error> {
        let sock = netfilter_socket()?;
        let fd = sock.as_raw_fd();
        if !set_rcvbuf(fd, rcvbuf).forced {
            eprintln!(
                "ipclog: SO_RCVBUFFORCE not permitted, used SO_RCVBUF (capped by \
                 net.core.rmem_max): packets may be lost under load"
            );
        }
        set_rcvtimeo(fd, TICK)
            .map_err(|e| Error::Start(format!("ipclog: cannot set a receive timeout: {e}")))?;
        let mut s = NflogSocket {
            inode: socket_inode(fd),
            sock,
            groups: groups.to_vec(),
            conntrack: true,
            early: Vec::new(),
        };
        for (i, &g) in groups.iter().enumerate() {
            let seq = i as u32 * 2 + 1;
            match s.bind(g, seq, true) {
                Err(e) if e == -libc::EOPNOTSUPP => {
                    s.conntrack = false;
                    s.bind(g, seq + 1, false)
                }
                r => r,
            }
            .map_err(|errno| bind_error(g, errno))?;
        }
        if !s.conntrack {
            eprintln!(
                "ipclog: the kernel does not attach conntrack entries to logged packets (it \
                 needs CONFIG_NETFILTER_NETLINK_GLUE_CT and nf_conntrack_netlink loaded): no \
                 ct= tokens; an ICMP error names what it relates to by the packet it quotes, \
                 without a conntrack id"
            );
        }
        Ok(s)
    }

    /// Sends one configuration request for `group` and waits for its acknowledgement; the
    /// negative errno on refusal.
    fn bind(&mut self, group: u16, seq: u32, with_ct: bool) -> Result<(), i32> {
        use decode::*;
        let mut flags = NFULNL_CFG_F_SEQ;
        if with_ct {
            flags |= NFULNL_CFG_F_CONNTRACK;
        }
        let mut mode = COPY_RANGE.to_be_bytes().to_vec();
        mode.extend_from_slice(&[NFULNL_COPY_PACKET, 0]);
        let req = config_request(
            group,
            seq,
            &[
                (NFULA_CFG_CMD, &[NFULNL_CFG_CMD_BIND]),
                (NFULA_CFG_MODE, &mode),
                // Batches of up to 64 KiB or 32 packets, sent at least every 20 ms: fewer
                // datagrams under a flood, little delay when quiet.
                (NFULA_CFG_NLBUFSIZ, &(65536u32).to_be_bytes()),
                (NFULA_CFG_QTHRESH, &32u32.to_be_bytes()),
                (NFULA_CFG_TIMEOUT, &2u32.to_be_bytes()),
                (NFULA_CFG_FLAGS, &flags.to_be_bytes()),
            ],
        );
        self.sock
            .send_to(&req, &SocketAddr::new(0, 0), 0)
            .map_err(|e| -e.raw_os_error().unwrap_or(libc::EIO))?;
        let mut buf = vec![0u8; 1 << 17];
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            let mut b = &mut buf[..];
            let n = match self.sock.recv(&mut b, 0) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(-e.raw_os_error().unwrap_or(libc::EIO)),
            };
            let mut answer = None;
            let mut packets = false;
            for m in Messages::new(&buf[..n]) {
                match m {
                    Ok(Item::Ack) => answer = Some(Ok(())),
                    Ok(Item::Error(e)) => answer = Some(Err(e)),
                    Ok(Item::Packet(_)) | Err(_) => packets = true,
                    Ok(Item::Other(_)) => {}
                }
            }
            if packets {
                self.early.push(buf[..n].to_vec());
            }
            if let Some(a) = answer {
                return a;
            }
        }
        Err(-libc::ETIMEDOUT)
    }

    fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        crate::conntrack::socket::recv_datagram(&self.sock, buf, 0)
    }
}

fn bind_error(group: u16, errno: i32) -> Error {
    let e = io::Error::from_raw_os_error(-errno);
    // The kernel refuses a group another socket holds with EPERM too: with the capability,
    // that is what it means.
    if permission_error(&e) && crate::privs::has_net_admin() {
        return Error::Start(format!(
            "ipclog: cannot bind NFLOG group {group}: another process has bound it (ulogd, \
             another ipclog?): {e}"
        ));
    }
    if permission_error(&e) {
        return Error::Permission(format!(
            "ipclog: binding NFLOG group {group} needs CAP_NET_ADMIN (run as root or grant \
             the capability): {e}"
        ));
    }
    let why = match -errno {
        libc::ETIMEDOUT => " (no answer from the kernel)",
        _ => "",
    };
    Error::Start(format!(
        "ipclog: cannot bind NFLOG group {group}: {e}{why}; is nfnetlink_log available \
         (modprobe nfnetlink_log)?"
    ))
}

/// Interface names by index, looked up once and forgotten every few seconds (an index can
/// be given to another interface).
#[derive(Default)]
struct Ifnames {
    names: HashMap<u32, Option<String>>,
    since: Option<Instant>,
}

impl Ifnames {
    fn name(&mut self, index: u32) -> Option<String> {
        if self
            .since
            .is_none_or(|t| t.elapsed() >= Duration::from_secs(5))
        {
            self.names.clear();
            self.since = Some(Instant::now());
        }
        self.names
            .entry(index)
            .or_insert_with(|| {
                let mut buf = [0 as libc::c_char; libc::IF_NAMESIZE];
                // SAFETY: the buffer has IF_NAMESIZE bytes, as if_indextoname requires.
                let p = unsafe { libc::if_indextoname(index, buf.as_mut_ptr()) };
                if p.is_null() {
                    // Gone already: its number, so the line still says where.
                    return Some(format!("if{index}"));
                }
                // SAFETY: if_indextoname wrote a NUL-terminated name into `buf`.
                let c = unsafe { std::ffi::CStr::from_ptr(buf.as_ptr()) };
                Some(c.to_string_lossy().into_owned())
            })
            .clone()
    }
}

/// What the source counted.
#[derive(Default)]
struct Counts {
    packets: u64,
    lost: u64,
    lost_said: u64,
    unusable: [u64; Unusable::ALL.len()],
    netlink_errors: u64,
    /// The next sequence number expected per group.
    next_seq: HashMap<u16, u32>,
}

/// Turns received datagrams into logged packets and counts what it sees: loss (sequence
/// gaps), unusable messages by reason, netlink errors. Used by the NFLOG source on its own
/// ([`run`]) and by its thread beside conntrack ([`spawn`]).
#[derive(Default)]
pub struct Decoder {
    names: Ifnames,
    c: Counts,
}

impl Decoder {
    /// Decodes one datagram, handing each packet to `emit`.
    pub fn datagram(&mut self, buf: &[u8], emit: &mut dyn FnMut(PacketEvent)) {
        let now = Utc::now();
        let c = &mut self.c;
        for m in Messages::new(buf) {
            match m {
                Ok(Item::Packet(p)) => {
                    if let Some(seq) = p.seq {
                        if let Some(&want) = c.next_seq.get(&p.group) {
                            c.lost += u64::from(seq.wrapping_sub(want));
                        }
                        c.next_seq.insert(p.group, seq.wrapping_add(1));
                    }
                    match to_event(&p, &mut self.names, now) {
                        Ok(ev) => {
                            c.packets += 1;
                            emit(ev);
                        }
                        Err(r) => c.unusable[r.index()] += 1,
                    }
                }
                Ok(Item::Error(_)) => c.netlink_errors += 1,
                Ok(Item::Ack) | Ok(Item::Other(_)) => {}
                Err(r) => c.unusable[r.index()] += 1,
            }
        }
    }

    /// Packets lost since the last call, if any (for a `lost N packets` line).
    pub fn new_loss(&mut self) -> Option<u64> {
        let n = self.c.lost - self.c.lost_said;
        self.c.lost_said = self.c.lost;
        (n > 0).then_some(n)
    }

    pub fn packets(&self) -> u64 {
        self.c.packets
    }

    pub fn lost(&self) -> u64 {
        self.c.lost
    }

    pub fn unusable(&self) -> u64 {
        self.c.unusable.iter().sum()
    }

    pub fn netlink_errors(&self) -> u64 {
        self.c.netlink_errors
    }

    /// The program messages that end a run: what could not be logged, by reason.
    pub fn end_messages(&self, overflows: u64) -> Vec<String> {
        let mut out = Vec::new();
        if self.unusable() > 0 {
            let parts: Vec<String> = Unusable::ALL
                .iter()
                .filter(|r| self.c.unusable[r.index()] > 0)
                .map(|r| format!("{}: {}", r.describe(), self.c.unusable[r.index()]))
                .collect();
            out.push(format!(
                "dropped {} packets (NFLOG messages that cannot be logged: {})",
                self.unusable(),
                parts.join(", ")
            ));
        }
        if self.c.netlink_errors > 0 || overflows > 0 {
            out.push(format!(
                "NFLOG: {} netlink error messages, {overflows} receive buffer overflows",
                self.c.netlink_errors
            ));
        }
        out
    }
}

/// The message that says NFLOG loss.
pub fn lost_message(n: u64) -> String {
    format!("lost {n} packets (NFLOG: the receive buffer was full)")
}

/// The groups line at the start of a run.
fn groups_message(sock: &NflogSocket) -> String {
    format!(
        "nflog groups {}{}",
        sock.groups
            .iter()
            .map(|g| g.to_string())
            .collect::<Vec<_>>()
            .join(","),
        if sock.conntrack {
            ""
        } else {
            " (without conntrack entries)"
        }
    )
}

/// Turns a decoded message into a logged packet.
fn to_event(
    p: &RawPacket<'_>,
    names: &mut Ifnames,
    now: DateTime<Utc>,
) -> Result<PacketEvent, Unusable> {
    let h = decode::headers(p)?;
    let prefix = String::from_utf8_lossy(p.prefix).into_owned();
    let ts =
        p.ts.and_then(|(s, us)| {
            DateTime::<Utc>::from_timestamp(
                i64::try_from(s).ok()?,
                u32::try_from(us.min(999_999)).ok()? * 1000,
            )
        })
        .unwrap_or(now);
    let from_ct = match (p.ct, p.ct_info) {
        (Some(ct), Some(info)) => decode::conntrack(ct).map(|(t, id)| {
            let state = decode::ct_state(info);
            PacketConn {
                state: Some(state),
                related: state.starts_with("related"),
                proto: t.proto,
                src: t.src,
                dst: t.dst,
                sport: t.sport,
                dport: t.dport,
                id,
            }
        }),
        _ => None,
    };
    // Without the kernel's entry (no CONFIG_NETFILTER_NETLINK_GLUE_CT, or nf_conntrack_netlink
    // not loaded) an ICMP error still names what it is about: the packet it quotes.
    let conn = from_ct.or_else(|| {
        h.quoted.map(|q| PacketConn {
            state: None,
            related: true,
            proto: q.proto,
            src: q.src,
            dst: q.dst,
            sport: q.sport,
            dport: q.dport,
            id: None,
        })
    });
    Ok(PacketEvent {
        ts,
        group: p.group,
        action: Action::from_prefix(&prefix),
        prefix,
        in_iface: p.indev.and_then(|i| names.name(i)),
        out_iface: p.outdev.and_then(|i| names.name(i)),
        proto: h.proto,
        src: h.src,
        dst: h.dst,
        sport: h.sport,
        dport: h.dport,
        hdr_len: h.hdr_len,
        total_len: h.total_len,
        tcp_flags: h.tcp_flags,
        icmp: h.icmp,
        mark: p.mark.filter(|&m| m != 0),
        conn,
    })
}

/// Runs the packet-filter log until SIGTERM/SIGINT. Returns the source's exit status.
pub fn run(
    mut sock: NflogSocket,
    sink: &mut dyn EventSink,
    run: &RunInfo,
    stats_every: Option<Duration>,
) -> u8 {
    crate::daemon::set_thread_nice(-10);
    sink.start(run);
    sink.program(Utc::now(), &groups_message(&sock));
    let mut d = Decoder::default();
    for early in std::mem::take(&mut sock.early) {
        d.datagram(&early, &mut |p| sink.packet(&p));
    }
    let mut buf = vec![0u8; 1 << 18];
    let mut last_flush = Instant::now();
    let mut last_stats = Instant::now();
    let mut stats_packets = 0u64;
    let mut unflushed = 0u64;
    let mut code = 0u8;
    let mut overflows = 0u64;
    let mut last_loss = Instant::now() - Duration::from_secs(1);
    while !crate::daemon::stopping() {
        match sock.recv(&mut buf) {
            Ok(0) => {}
            Ok(n) => {
                let before = d.packets();
                d.datagram(&buf[..n], &mut |p| sink.packet(&p));
                unflushed += d.packets() - before;
            }
            // The kernel dropped a batch; the sequence gap says how many packets.
            Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => overflows += 1,
            Err(e) => {
                let m = format!("NFLOG receive failed: {e}");
                eprintln!("ipclog: {m}");
                sink.program(Utc::now(), &m);
                code = 1;
                break;
            }
        }
        // One line a second while losing, not one per datagram.
        if last_loss.elapsed() >= Duration::from_secs(1) {
            if let Some(n) = d.new_loss() {
                last_loss = Instant::now();
                sink.program(Utc::now(), &lost_message(n));
                sink.source_lost(d.lost());
            }
        }
        if unflushed >= 4096
            || (unflushed > 0 && last_flush.elapsed() >= TICK)
            || last_flush.elapsed() >= Duration::from_secs(1)
        {
            sink.flush();
            unflushed = 0;
            last_flush = Instant::now();
        }
        if let Some(every) = stats_every {
            if last_stats.elapsed() >= every {
                let rate =
                    (d.packets() - stats_packets) as f64 / last_stats.elapsed().as_secs_f64();
                stats_packets = d.packets();
                last_stats = Instant::now();
                let s = sink.stats();
                eprintln!(
                    "ipclog: {rate:.0} packets/s, {} logged, lost {} (socket drops {}), \
                     unusable {}, db queue {} dropped {}, errors {}",
                    d.packets(),
                    d.lost(),
                    crate::conntrack::socket::netlink_drops(sock.inode).unwrap_or(0),
                    d.unusable(),
                    s.queued,
                    s.dropped,
                    sink.errors(),
                );
            }
        }
    }
    if let Some(n) = d.new_loss() {
        sink.program(Utc::now(), &lost_message(n));
        sink.source_lost(d.lost());
    }
    for m in d.end_messages(overflows) {
        sink.program(Utc::now(), &m);
    }
    sink.finish(&RunEnd {
        errors: d.netlink_errors(),
        lost: d.lost(),
        dropped: d.unusable(),
        started: None,
        stopped: Utc::now(),
    });
    code
}

/// What the NFLOG thread beside conntrack says to the conntrack processor.
pub enum Side {
    /// The groups line at the start.
    Started(String),
    Packet(Box<PacketEvent>),
    /// Packets lost since the last such message.
    Lost(u64),
    /// Its closing messages, and its figures for the run's end (lost, unusable, errors).
    Ended(Vec<String>, u64, u64, u64),
}

/// Runs the NFLOG receiver on a thread of its own beside conntrack (`--nflog G --conntrack`),
/// handing what it sees to `send` (the conntrack processor's queue). Stops on SIGTERM/SIGINT
/// after saying [`Side::Ended`].
pub fn spawn(
    mut sock: NflogSocket,
    send: impl Fn(Side) -> bool + Send + 'static,
) -> std::thread::JoinHandle<()> {
    std::thread::Builder::new()
        .name("ipclog-nflog".into())
        .spawn(move || {
            crate::daemon::set_thread_nice(-10);
            send(Side::Started(groups_message(&sock)));
            let mut d = Decoder::default();
            let mut emit = |p| {
                send(Side::Packet(Box::new(p)));
            };
            for early in std::mem::take(&mut sock.early) {
                d.datagram(&early, &mut emit);
            }
            let mut buf = vec![0u8; 1 << 18];
            let mut overflows = 0u64;
            let mut last_loss = Instant::now() - Duration::from_secs(1);
            while !crate::daemon::stopping() {
                match sock.recv(&mut buf) {
                    Ok(0) => {}
                    Ok(n) => d.datagram(&buf[..n], &mut emit),
                    Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => overflows += 1,
                    Err(e) => {
                        eprintln!("ipclog: NFLOG receive failed: {e}");
                        break;
                    }
                }
                if last_loss.elapsed() >= Duration::from_secs(1) {
                    if let Some(n) = d.new_loss() {
                        last_loss = Instant::now();
                        send(Side::Lost(n));
                    }
                }
            }
            if let Some(n) = d.new_loss() {
                send(Side::Lost(n));
            }
            send(Side::Ended(
                d.end_messages(overflows),
                d.lost(),
                d.unusable(),
                d.netlink_errors(),
            ));
        })
        .expect("spawn NFLOG thread")
}

#[cfg(test)]
mod tests {
    use super::decode::tests::{attr, message};
    use super::decode::{NFULA_PAYLOAD, NFULA_PREFIX, NFULA_SEQ};
    use super::*;

    fn udp(seq: u32, group: u16) -> Vec<u8> {
        let mut p = vec![
            0x45, 0, 0, 29, 0, 0, 0, 0, 64, 17, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2,
        ];
        p.extend_from_slice(&[0x13, 0x88, 0, 53, 0, 9, 0, 0, b'x']);
        message(
            2,
            group,
            &[
                attr(NFULA_PAYLOAD, &p),
                attr(NFULA_PREFIX, b"drop-dns\0"),
                attr(NFULA_SEQ, &seq.to_be_bytes()),
            ],
        )
    }

    /// Sequence gaps are lost packets, per group; unusable messages are counted by reason and
    /// said at the end; the rest become events.
    #[test]
    fn the_decoder_counts_loss_by_gap_and_bad_messages_by_reason() {
        let mut d = Decoder::default();
        let mut got = Vec::new();
        let mut datagram: Vec<u8> =
            [udp(0, 1), udp(1, 1), udp(4, 1), udp(10, 2), udp(12, 2)].concat();
        datagram.extend(message(2, 1, &[attr(NFULA_PREFIX, b"x\0")]));
        datagram.extend(message(3, 1, &[attr(NFULA_PAYLOAD, &[0x45; 20])]));
        d.datagram(&datagram, &mut |p| got.push(p));
        assert_eq!(got.len(), 5);
        assert_eq!(d.new_loss(), Some(2 + 1));
        assert_eq!(d.new_loss(), None);
        assert_eq!(d.lost(), 3);
        let p = &got[0];
        assert_eq!(
            (p.group, p.prefix.as_str(), p.action),
            (1, "drop-dns", Action::Block)
        );
        assert_eq!(
            (p.sport, p.dport, p.proto, p.total_len),
            (Some(5000), Some(53), 17, 29)
        );
        assert_eq!(d.unusable(), 2);
        assert_eq!(
            d.end_messages(0),
            [
                "dropped 2 packets (NFLOG messages that cannot be logged: no packet payload: 1, \
              not IPv4/IPv6: 1)"
            ]
        );
        // A cut datagram: counted, and what came before it is still logged.
        let mut cut = udp(13, 2);
        cut.extend_from_slice(&udp(14, 2)[..30]);
        d.datagram(&cut, &mut |p| got.push(p));
        assert_eq!((got.len(), d.unusable()), (6, 3));
    }
}
