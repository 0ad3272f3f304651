//! Daemon habits: signals (SIGTERM/SIGINT stop, SIGHUP reopens the log), detaching, pidfile.

use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

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

/// A pidfile, removed when dropped.
pub struct PidFile {
    path: PathBuf,
    file: std::fs::File,
}

impl PidFile {
    /// Creates (truncates) the pidfile now, so an unwritable path is a start-up error.
    pub fn create(path: &Path) -> io::Result<PidFile> {
        use std::os::unix::fs::OpenOptionsExt;
        let file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o644)
            .open(path)?;
        let path = if path.is_absolute() {
            path.to_path_buf()
        } else {
            std::env::current_dir()?.join(path)
        };
        Ok(PidFile { path, file })
    }

    /// Writes the current process id (after detaching, so it is the daemon's).
    pub fn write_pid(&mut self) -> io::Result<()> {
        writeln!(self.file, "{}", std::process::id())?;
        self.file.flush()
    }
}

impl Drop for PidFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Detaches: fork, new session, fork again, cwd `/`, stdio to /dev/null. The parents exit at
/// once with `_exit` so they do not run destructors of state (database, sockets) the daemon
/// keeps. Must run before any thread is started.
pub fn daemonize() -> io::Result<()> {
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
