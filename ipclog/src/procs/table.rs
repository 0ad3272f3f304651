//! Socket inode → process, from `/proc/*/fd`, kept incrementally: a socket not in the map is
//! looked for first among the processes that owned the last sockets found (a server or a
//! proxy opens many), then among the processes started since the last look (a new client),
//! and only then by a walk of every process, at most once every [`MIN_RESCAN`]: a miss that
//! nothing can fix (a socket of a process in another PID namespace, or one that has exited)
//! must not make every event walk `/proc`.

use std::collections::{HashMap, HashSet, VecDeque};
use std::fs;
use std::time::{Duration, Instant};

/// The shortest time between two walks of every process.
pub const MIN_RESCAN: Duration = Duration::from_millis(50);

/// How many recent owners are looked at first.
const RECENT: usize = 8;

/// Sockets remembered before the map is built anew (sockets closed since stay in it until then).
const MAX_SOCKETS: usize = 1 << 18;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owner {
    pub pid: u32,
    pub comm: String,
}

/// How many walks each step took, for the statistics and the tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Walks {
    pub recent: u64,
    pub new_pids: u64,
    pub full: u64,
}

#[derive(Default)]
pub struct Table {
    by_inode: HashMap<u32, u32>,
    comms: HashMap<u32, String>,
    /// Every pid seen by the last listing of `/proc`.
    known: HashSet<u32>,
    recent: VecDeque<u32>,
    last_full: Option<Instant>,
    pub walks: Walks,
}

impl Table {
    /// The process holding socket `inode` open.
    pub fn owner(&mut self, inode: u32) -> Option<Owner> {
        if let Some(o) = self.cached(inode) {
            return Some(o);
        }
        // A map grown over a long run (sockets closed since) is started anew.
        if self.by_inode.len() > MAX_SOCKETS {
            self.rescan();
            return self.cached(inode);
        }
        self.walks.recent += 1;
        for pid in self.recent.clone() {
            if self.read_fds(pid, Some(inode)) {
                return self.cached(inode);
            }
        }
        self.walks.new_pids += 1;
        let pids = list_pids();
        for &pid in &pids {
            if !self.known.contains(&pid) {
                self.read_fds(pid, None);
            }
        }
        self.known = pids.into_iter().collect();
        if let Some(o) = self.cached(inode) {
            return Some(o);
        }
        if self.last_full.is_some_and(|t| t.elapsed() < MIN_RESCAN) {
            return None;
        }
        self.rescan();
        self.cached(inode)
    }

    fn cached(&mut self, inode: u32) -> Option<Owner> {
        let pid = *self.by_inode.get(&inode)?;
        // A process that exited since: its sockets went with it (and its pid may be reused).
        let Some(comm) = self.comms.get(&pid).cloned() else {
            self.by_inode.remove(&inode);
            return None;
        };
        if fs::metadata(format!("/proc/{pid}")).is_err() {
            self.by_inode.remove(&inode);
            self.comms.remove(&pid);
            return None;
        }
        if self.recent.front() != Some(&pid) {
            self.recent.retain(|&p| p != pid);
            self.recent.push_front(pid);
            self.recent.truncate(RECENT);
        }
        Some(Owner { pid, comm })
    }

    /// Walks every process's open files anew.
    pub fn rescan(&mut self) {
        self.last_full = Some(Instant::now());
        self.walks.full += 1;
        self.by_inode.clear();
        self.comms.clear();
        let pids = list_pids();
        for &pid in &pids {
            self.read_fds(pid, None);
        }
        self.known = pids.into_iter().collect();
    }

    /// Adds every socket process `pid` holds; whether `want` is among them. Not stopped when
    /// `want` is found: under load the events lag behind the sockets, and the sockets a
    /// process opened since are the next lookups, answered from the map. A process that exits
    /// meanwhile is skipped: its directory reads fail, which is not an error.
    fn read_fds(&mut self, pid: u32, want: Option<u32>) -> bool {
        let mut found = false;
        let mut any = false;
        let by_inode = &mut self.by_inode;
        for_each_socket(pid, |ino| {
            // Several processes may share a socket (a forked server): the first found is a
            // true answer.
            by_inode.entry(ino).or_insert(pid);
            any = true;
            found |= want == Some(ino);
            true
        });
        // Read again each time: an exec keeps the pid and changes the name.
        if any {
            if let Ok(c) = fs::read_to_string(format!("/proc/{pid}/comm")) {
                self.comms
                    .insert(pid, c.strip_suffix('\n').unwrap_or(&c).to_string());
            }
        }
        found
    }
}

/// Calls `f` with the inode of each socket process `pid` has open, until it returns false.
/// Reads `/proc/PID/fd` with readlinkat into a buffer on the stack: this runs for every fd of
/// a process whose new socket is looked for, so it allocates nothing per fd.
fn for_each_socket(pid: u32, mut f: impl FnMut(u32) -> bool) {
    let Ok(path) = std::ffi::CString::new(format!("/proc/{pid}/fd")) else {
        return;
    };
    // SAFETY: opendir/readdir/readlinkat/closedir on a directory stream we own; the entry's
    // name is a NUL-terminated array inside the entry readdir returned, valid until the next
    // readdir; readlinkat writes at most the buffer's length.
    unsafe {
        let dir = libc::opendir(path.as_ptr());
        if dir.is_null() {
            return;
        }
        let dfd = libc::dirfd(dir);
        let mut buf = [0u8; 64];
        loop {
            let ent = libc::readdir(dir);
            if ent.is_null() {
                break;
            }
            let name = (*ent).d_name.as_ptr();
            if *name == b'.' as libc::c_char {
                continue;
            }
            let n = libc::readlinkat(dfd, name, buf.as_mut_ptr() as *mut libc::c_char, buf.len());
            if n <= 0 {
                continue;
            }
            let Some(ino) = socket_inode(&buf[..n as usize]) else {
                continue;
            };
            if !f(ino) {
                break;
            }
        }
        libc::closedir(dir);
    }
}

/// The inode of a `socket:[N]` link.
fn socket_inode(link: &[u8]) -> Option<u32> {
    let digits = link.strip_prefix(b"socket:[")?.strip_suffix(b"]")?;
    std::str::from_utf8(digits).ok()?.parse().ok()
}

fn list_pids() -> Vec<u32> {
    let Ok(dir) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.flatten()
        .filter_map(|e| e.file_name().to_str().and_then(|n| n.parse().ok()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::UdpSocket;
    use std::os::fd::AsRawFd;
    use std::os::unix::fs::MetadataExt;

    /// A socket of this process is found; one opened later is found again without a full
    /// walk (this process is a recent owner); an inode nobody holds is not found.
    #[test]
    fn finds_sockets_incrementally() {
        let ino = |s: &UdpSocket| {
            fs::metadata(format!("/proc/self/fd/{}", s.as_raw_fd()))
                .unwrap()
                .ino() as u32
        };
        let me = std::process::id();
        let a = UdpSocket::bind("127.0.0.1:0").unwrap();
        let mut t = Table::default();
        t.rescan();
        assert_eq!(t.owner(ino(&a)).map(|o| o.pid), Some(me));
        let b = UdpSocket::bind("127.0.0.1:0").unwrap();
        let full = t.walks.full;
        assert_eq!(t.owner(ino(&b)).map(|o| o.pid), Some(me));
        assert_eq!(t.walks.full, full, "found among recent owners");
        assert_eq!(t.owner(u32::MAX), None);
    }
}

#[cfg(test)]
mod timing {
    use super::*;
    use std::net::UdpSocket;
    use std::os::fd::AsRawFd;
    use std::os::unix::fs::MetadataExt;

    #[test]
    #[ignore]
    fn time_a_new_socket_among_many() {
        let ino = |s: &UdpSocket| {
            fs::metadata(format!("/proc/self/fd/{}", s.as_raw_fd()))
                .unwrap()
                .ino() as u32
        };
        let mut keep: Vec<UdpSocket> = (0..100)
            .map(|_| UdpSocket::bind("127.0.0.1:0").unwrap())
            .collect();
        let mut t = Table::default();
        t.rescan();
        assert!(t.owner(ino(&keep[0])).is_some());
        let n = 1000;
        let t0 = Instant::now();
        for i in 0..n {
            keep.remove(i % 50);
            let s = UdpSocket::bind("127.0.0.1:0").unwrap();
            assert!(t.owner(ino(&s)).is_some());
            keep.push(s);
        }
        eprintln!(
            "{:?} per new socket, walks {:?}",
            t0.elapsed() / n as u32,
            t.walks
        );
        let t0 = Instant::now();
        for _ in 0..n {
            for_each_socket(std::process::id(), |_| true);
        }
        eprintln!(
            "{:?} per full read of {} fds",
            t0.elapsed() / n as u32,
            keep.len()
        );
    }
}
