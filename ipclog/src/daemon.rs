//! Daemon habits: signals (SIGTERM/SIGINT stop, SIGHUP reopens the log), detaching, pidfile.

use std::io::{self, Write};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use shared::outfile;

/// Set by SIGTERM / SIGINT.
pub static STOP: AtomicBool = AtomicBool::new(false);
/// Incremented by SIGHUP; sinks that write files reopen them when it changes.
pub static HUP: AtomicU64 = AtomicU64::new(0);
/// An output pipe was closed by its reader: stop the run like any Unix filter, quietly
/// (exit status 0).
pub fn output_closed() {
    STOP.store(true, Ordering::SeqCst);
}

extern "C" fn on_stop(_: libc::c_int) {
    STOP.store(true, Ordering::SeqCst);
}

extern "C" fn on_hup(_: libc::c_int) {
    HUP.fetch_add(1, Ordering::SeqCst);
}

/// Installs the handlers. Only atomics are touched in them (async-signal-safe); the threads
/// poll the flags (the event socket has a receive timeout so they do it promptly).
pub fn install_signal_handlers() {
    // SAFETY: the handlers only store to atomics; sigaction structs are zero-initialised.
    unsafe {
        for (sig, h) in [
            (libc::SIGTERM, on_stop as extern "C" fn(libc::c_int)),
            (libc::SIGINT, on_stop),
            (libc::SIGHUP, on_hup),
        ] {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = h as usize;
            sa.sa_flags = libc::SA_RESTART;
            libc::sigemptyset(&mut sa.sa_mask);
            libc::sigaction(sig, &sa, std::ptr::null_mut());
        }
        // A closed pipe must be seen as EPIPE, so the run can stop cleanly (finish the
        // database, say nothing more), not be a death in the middle of a write.
        libc::signal(libc::SIGPIPE, libc::SIG_IGN);
    }
}

pub fn stopping() -> bool {
    STOP.load(Ordering::Relaxed)
}

/// The pidfile: locked (flock) for as long as this ipclog runs, so that a second one with the
/// same file refuses to start instead of overwriting it; removed when dropped.
pub struct PidFile {
    path: PathBuf,
    file: std::fs::File,
    policy: outfile::Policy,
}

impl PidFile {
    /// Takes the pidfile now, so that an unusable path or another running ipclog is a start-up
    /// error. Created 0640 if missing; never through a symbolic link (unless `policy` allows
    /// it), only a regular file. A file nobody holds the lock on is left over from an ipclog
    /// that died: it is taken over. The lock lives in the open file, so it passes to the
    /// daemon across the fork and ends with the last ipclog process.
    pub fn acquire(path: &Path, policy: &outfile::Policy) -> Result<PidFile, String> {
        use std::io::Read;
        let shown = shared::text::escaped(&path.to_string_lossy()).into_owned();
        let err = |e: &dyn std::fmt::Display| {
            crate::sinks::with_symlink_hint(format!("ipclog: {shown}: cannot use pidfile: {e}"))
        };
        // Root's file, whatever --user says: a pidfile another user may write could name any
        // process to the next `kill $(cat pidfile)`.
        let policy = outfile::Policy {
            owner: None,
            ..*policy
        };
        // Removed and recreated by an exiting ipclog between our open and our lock, the
        // file we locked may no longer be the one the name shows: try again.
        for _ in 0..8 {
            let mut file = outfile::open_rw(path, &policy).map_err(|e| err(&e))?.file;
            // SAFETY: flock on a descriptor we own.
            if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
                let e = io::Error::last_os_error();
                if e.raw_os_error() != Some(libc::EWOULDBLOCK) {
                    return Err(err(&e));
                }
                let mut text = String::new();
                let _ = file.read_to_string(&mut text);
                let who = match text.trim().parse::<u32>() {
                    Ok(pid) => format!("pid {pid}"),
                    Err(_) => "starting".to_string(),
                };
                return Err(err(&format!(
                    "another ipclog ({who}) is running with this pidfile"
                )));
            }
            if !outfile::same_file(path, &file, &policy) {
                continue;
            }
            // What an ipclog that died left in it is no longer true.
            file.set_len(0).map_err(|e| err(&e))?;
            let path = if path.is_absolute() {
                path.to_path_buf()
            } else {
                std::env::current_dir().map_err(|e| err(&e))?.join(path)
            };
            return Ok(PidFile { path, file, policy });
        }
        Err(err(
            &"replaced again and again while ipclog tried to lock it",
        ))
    }

    /// Writes the current process id (after detaching, so it is the daemon's).
    pub fn write_pid(&mut self) -> io::Result<()> {
        use std::os::unix::fs::FileExt;
        self.file.set_len(0)?;
        self.file
            .write_all_at(format!("{}\n", std::process::id()).as_bytes(), 0)?;
        self.file.flush()
    }
}

impl Drop for PidFile {
    fn drop(&mut self) {
        // Only our own file: the name may have been taken over since (by a newer ipclog after
        // ours was removed by hand, say).
        if outfile::same_file(&self.path, &self.file, &self.policy)
            && std::fs::remove_file(&self.path).is_ok()
        {
            return;
        }
        // Not removable (after --user, in a directory only root may write): emptied instead,
        // so that nobody reads a pid that is gone. Still locked until we exit.
        let _ = self.file.set_len(0);
    }
}

/// Detaches: fork, new session, fork again, cwd `/`, stdio to /dev/null. The parents exit at
/// once with `_exit` so they do not run destructors of state (database, sockets) the daemon
/// keeps. Must run before any thread is started.
pub fn daemonize() -> io::Result<()> {
    detach()?;
    DETACHED.store(true, Ordering::SeqCst);
    Ok(())
}

/// Set once this process has detached: standard error is /dev/null from then on.
static DETACHED: AtomicBool = AtomicBool::new(false);

/// Whether this process has detached (see [`daemonize`]).
pub fn detached() -> bool {
    DETACHED.load(Ordering::SeqCst)
}

fn detach() -> io::Result<()> {
    // SAFETY: single-threaded at this point; fork/setsid/_exit/dup2 are used as documented.
    unsafe {
        match libc::fork() {
            -1 => return Err(io::Error::last_os_error()),
            0 => {}
            _ => libc::_exit(0),
        }
        if libc::setsid() == -1 {
            return Err(io::Error::last_os_error());
        }
        match libc::fork() {
            -1 => return Err(io::Error::last_os_error()),
            0 => {}
            _ => libc::_exit(0),
        }
        let root = c"/";
        libc::chdir(root.as_ptr());
        let null = libc::open(c"/dev/null".as_ptr(), libc::O_RDWR);
        if null >= 0 {
            libc::dup2(null, 0);
            libc::dup2(null, 1);
            libc::dup2(null, 2);
            if null > 2 {
                libc::close(null);
            }
        }
    }
    Ok(())
}

/// Sets the calling thread's nice value (Linux: per thread). The event reader asks for a
/// higher priority so that, when the CPU is short, the kernel's queue is drained first and
/// the writers (which can drop and count) fall behind instead. Silently keeps the current
/// priority when not permitted.
pub fn set_thread_nice(nice: i32) -> bool {
    // SAFETY: gettid and setpriority on the calling thread.
    unsafe {
        let tid = libc::syscall(libc::SYS_gettid) as libc::id_t;
        libc::setpriority(libc::PRIO_PROCESS, tid, nice) == 0
    }
}

/// Tells the service manager about the run (`READY=1`, `STOPPING=1`): sd_notify(3)'s protocol,
/// one datagram to the Unix socket $NOTIFY_SOCKET names (`@name`: an abstract one), so no
/// libsystemd is needed. Without $NOTIFY_SOCKET (not started by systemd as Type=notify) there
/// is no one to tell. Returns whether the message was sent.
pub fn notify(state: &str) -> bool {
    use std::os::linux::net::SocketAddrExt;
    use std::os::unix::net::{SocketAddr, UnixDatagram};
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
        return false;
    };
    let bytes = std::os::unix::ffi::OsStrExt::as_bytes(path.as_os_str());
    let addr = match bytes.strip_prefix(b"@") {
        Some(name) => SocketAddr::from_abstract_name(name),
        None => SocketAddr::from_pathname(Path::new(&path)),
    };
    let Ok(addr) = addr else {
        return false;
    };
    UnixDatagram::unbound()
        .and_then(|s| s.send_to_addr(state.as_bytes(), &addr))
        .is_ok()
}
