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
        self.walks.recent += 1;
        for pid in self.recent.clone() {
            self.read_fds(pid);
        }
        if let Some(o) = self.cached(inode) {
            return Some(o);
        }
        self.walks.new_pids += 1;
        let pids = list_pids();
        for &pid in &pids {
            if !self.known.contains(&pid) {
                self.read_fds(pid);
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
            self.read_fds(pid);
        }
        self.known = pids.into_iter().collect();
    }

    /// Adds the sockets process `pid` holds. A process that exits meanwhile is skipped: its
    /// directory reads fail, which is not an error.
    fn read_fds(&mut self, pid: u32) {
        let Ok(fds) = fs::read_dir(format!("/proc/{pid}/fd")) else {
            return;
        };
        let mut any = false;
        for fd in fds.flatten() {
            let Ok(target) = fs::read_link(fd.path()) else {
                continue;
            };
            let Some(ino) = target
                .to_str()
                .and_then(|l| l.strip_prefix("socket:["))
                .and_then(|r| r.strip_suffix(']'))
                .and_then(|n| n.parse::<u32>().ok())
            else {
                continue;
            };
            // Several processes may share a socket (a forked server): the first found is a
            // true answer.
            self.by_inode.entry(ino).or_insert(pid);
            any = true;
        }
        if any {
            if let Ok(c) = fs::read_to_string(format!("/proc/{pid}/comm")) {
                self.comms
                    .insert(pid, c.strip_suffix('\n').unwrap_or(&c).to_string());
            }
        }
    }
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
