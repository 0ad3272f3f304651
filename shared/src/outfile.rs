//! Opening the files the tools write, so that a name planted by another user cannot redirect a
//! write made with root's privileges.
//!
//! ipclog runs as root and writes into directories (`/var/log`, `/run`, a spool directory) that
//! other users may be able to write too. Whoever can write a directory can put a symbolic link
//! `ipclog.log -> /etc/shadow` or a socket in it, so every output is opened here, in one place:
//!
//! - the last component of the path must not be a symbolic link (`O_NOFOLLOW`) unless the user
//!   asked for it ([`Policy::follow_symlinks`]);
//! - the file actually opened is checked with `fstat`: a regular file, and for text streams a
//!   FIFO or a character device the user named (`/dev/null`, a terminal); never a directory,
//!   socket or block device;
//! - new files are created with mode 0640 (`O_EXCL`, so that the caller knows it created them
//!   and may give them to [`Policy::owner`]); everything is opened `O_CLOEXEC`;
//! - temporary files get an unpredictable name in the destination's directory
//!   ([`create_temp`]), created with `O_EXCL`, so nobody can prepare a link under that name.

use std::ffi::CString;
use std::fmt;
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

/// How outputs may be opened; the same for every output of a process.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Policy {
    /// Write through a symbolic link at the last component of the path. Off by default: the
    /// link may have been planted by someone who cannot write its target but wants root to.
    pub follow_symlinks: bool,
    /// Give each file created here to this (uid, gid) (ipclog `--user`), so the process can
    /// still reopen it after it has given up root.
    pub owner: Option<(u32, u32)>,
}

/// Which kinds of file an output may be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accept {
    /// A regular file only (a database, a pidfile, a cache).
    Regular,
    /// A regular file, a FIFO or a character device (`/dev/null`, a terminal): a text stream.
    Stream,
}

/// Why an output was refused or could not be opened.
#[derive(Debug)]
pub enum OpenError {
    /// The last component of the path is a symbolic link.
    Symlink,
    /// The path names something that is not an output of the accepted kinds.
    Kind {
        what: &'static str,
        accept: Accept,
    },
    Io(io::Error),
}

impl OpenError {
    pub fn is_symlink(&self) -> bool {
        matches!(self, OpenError::Symlink)
    }
}

impl fmt::Display for OpenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OpenError::Symlink => f.write_str(SYMLINK_REFUSED),
            OpenError::Kind {
                what,
                accept: Accept::Regular,
            } => write!(f, "is {what}, not a regular file"),
            OpenError::Kind {
                what,
                accept: Accept::Stream,
            } => write!(f, "is {what}, not a regular file, FIFO or character device"),
            OpenError::Io(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for OpenError {}

impl From<io::Error> for OpenError {
    fn from(e: io::Error) -> Self {
        OpenError::Io(e)
    }
}

impl From<OpenError> for io::Error {
    fn from(e: OpenError) -> Self {
        match e {
            OpenError::Io(e) => e,
            other => io::Error::new(io::ErrorKind::InvalidInput, other.to_string()),
        }
    }
}

/// What [`OpenError::Symlink`] says (programs add how to allow it).
pub const SYMLINK_REFUSED: &str = "is a symbolic link; not writing through it";

/// An opened output.
#[derive(Debug)]
pub struct Opened {
    pub file: File,
    /// This call created the file (it did not exist before).
    pub created: bool,
}

/// `None` when `mode` (an `st_mode`) is acceptable, else what it is, for the message.
fn refused_kind(mode: u32, accept: Accept) -> Option<&'static str> {
    let fmt = mode & libc::S_IFMT;
    let what = match fmt {
        libc::S_IFREG => return None,
        libc::S_IFIFO | libc::S_IFCHR if accept == Accept::Stream => return None,
        libc::S_IFIFO => "a FIFO",
        libc::S_IFCHR => "a character device",
        libc::S_IFDIR => "a directory",
        libc::S_IFSOCK => "a socket",
        libc::S_IFBLK => "a block device",
        libc::S_IFLNK => "a symbolic link",
        _ => "a special file",
    };
    Some(what)
}

fn c_path(path: &Path) -> io::Result<CString> {
    CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path contains a NUL byte"))
}

fn sys_open(path: &CString, flags: libc::c_int) -> io::Result<File> {
    // SAFETY: a NUL-terminated path; the descriptor returned is owned by the File.
    let fd = unsafe { libc::open(path.as_ptr(), flags, 0o640 as libc::c_uint) };
    if fd < 0 {
        Err(io::Error::last_os_error())
    } else {
        // SAFETY: a fresh descriptor nobody else owns.
        Ok(unsafe { File::from_raw_fd(fd) })
    }
}

/// What `path` is (without following a link at its end), if it exists.
fn kind_at(path: &Path) -> Option<std::fs::Metadata> {
    std::fs::symlink_metadata(path).ok()
}

fn open_checked(
    path: &Path,
    policy: &Policy,
    access: libc::c_int,
    accept: Accept,
) -> Result<Opened, OpenError> {
    let c = c_path(path)?;
    // A look first, so that a FIFO given as a database is refused rather than opened (opening
    // it could block) and the message says what the path is. The fstat below decides.
    let before = if policy.follow_symlinks {
        std::fs::metadata(path).ok()
    } else {
        kind_at(path)
    };
    if let Some(m) = &before {
        if m.file_type().is_symlink() {
            return Err(OpenError::Symlink);
        }
        if let Some(what) = refused_kind(m.mode(), accept) {
            return Err(OpenError::Kind { what, accept });
        }
    }
    let mut flags = access | libc::O_CLOEXEC | libc::O_NOCTTY;
    if !policy.follow_symlinks {
        flags |= libc::O_NOFOLLOW;
    }
    if accept == Accept::Regular {
        // A FIFO swapped in after the look above must not block the open; for a regular file
        // O_NONBLOCK changes nothing.
        flags |= libc::O_NONBLOCK;
    }
    let explain = |e: io::Error| -> OpenError {
        match e.raw_os_error() {
            Some(libc::ELOOP) if !policy.follow_symlinks => {
                if kind_at(path).is_some_and(|m| m.file_type().is_symlink()) {
                    return OpenError::Symlink;
                }
                OpenError::Io(e)
            }
            Some(libc::EISDIR) => OpenError::Kind {
                what: "a directory",
                accept,
            },
            Some(libc::ENXIO) => match kind_at(path) {
                Some(m) if m.file_type().is_socket() => OpenError::Kind {
                    what: "a socket",
                    accept,
                },
                _ => OpenError::Io(e),
            },
            _ => OpenError::Io(e),
        }
    };
    // An existing file is opened as it is; a missing one is created with O_EXCL, so that only
    // a file this call made is given away. Between the two someone may create or remove it:
    // try again a few times.
    let mut opened = None;
    for _ in 0..8 {
        match sys_open(&c, flags) {
            Ok(f) => {
                opened = Some((f, false));
                break;
            }
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {}
            Err(e) => return Err(explain(e)),
        }
        match sys_open(&c, flags | libc::O_CREAT | libc::O_EXCL) {
            Ok(f) => {
                opened = Some((f, true));
                break;
            }
            // With --follow-symlinks a dangling link makes the first open ENOENT and this one
            // EEXIST for ever: create its target the ordinary way.
            Err(e) if e.raw_os_error() == Some(libc::EEXIST) && policy.follow_symlinks => {
                match sys_open(&c, flags | libc::O_CREAT) {
                    Ok(f) => {
                        opened = Some((f, false));
                        break;
                    }
                    Err(e) => return Err(explain(e)),
                }
            }
            Err(e) if e.raw_os_error() == Some(libc::EEXIST) => {}
            Err(e) => return Err(explain(e)),
        }
    }
    let Some((file, created)) = opened else {
        return Err(OpenError::Io(io::Error::other(
            "created and removed by someone else again and again; giving up",
        )));
    };
    let meta = file.metadata()?;
    if let Some(what) = refused_kind(meta.mode(), accept) {
        return Err(OpenError::Kind { what, accept });
    }
    if created {
        if let Some((uid, gid)) = policy.owner {
            // SAFETY: fchown on a descriptor we own: the file just created, not a name.
            if unsafe { libc::fchown(file.as_raw_fd(), uid, gid) } != 0 {
                return Err(OpenError::Io(io::Error::last_os_error()));
            }
        }
    }
    Ok(Opened { file, created })
}

/// Opens `path` for appending (creating it, mode 0640): a log, JSON lines.
pub fn open_append(path: &Path, policy: &Policy, accept: Accept) -> Result<Opened, OpenError> {
    open_checked(path, policy, libc::O_WRONLY | libc::O_APPEND, accept)
}

/// Opens the regular file `path` for reading and writing without truncating it (creating it,
/// mode 0640): a pidfile, a database.
pub fn open_rw(path: &Path, policy: &Policy) -> Result<Opened, OpenError> {
    open_checked(path, policy, libc::O_RDWR, Accept::Regular)
}

/// Checks a file another program will create or open by name beside ours (SQLite's `-wal`,
/// `-shm`, `-journal`): missing, or a regular file; never a symbolic link.
pub fn check_side_file(path: &Path) -> Result<(), OpenError> {
    match kind_at(path) {
        None => Ok(()),
        Some(m) if m.file_type().is_symlink() => Err(OpenError::Symlink),
        Some(m) => match refused_kind(m.mode(), Accept::Regular) {
            None => Ok(()),
            Some(what) => Err(OpenError::Kind {
                what,
                accept: Accept::Regular,
            }),
        },
    }
}

/// Random bits for a temporary name, from the kernel.
fn random_u64() -> io::Result<u64> {
    let mut b = [0u8; 8];
    let mut got = 0;
    while got < b.len() {
        // SAFETY: getrandom writes at most `len` bytes into the buffer we pass.
        let n = unsafe {
            libc::getrandom(b[got..].as_mut_ptr() as *mut libc::c_void, b.len() - got, 0)
        };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        got += n as usize;
    }
    Ok(u64::from_ne_bytes(b))
}

/// Creates a new file (mode 0640) in `dir` named `<stem>.tmp.<16 random hex digits>`, to be
/// renamed over the real one once written. The name cannot be guessed, and `O_EXCL` means a
/// name that exists (planted or not) is never opened: another is drawn.
pub fn create_temp(dir: &Path, stem: &str) -> io::Result<(File, PathBuf)> {
    for _ in 0..16 {
        let path = dir.join(format!("{stem}.tmp.{:016x}", random_u64()?));
        let c = c_path(&path)?;
        let flags = libc::O_WRONLY
            | libc::O_CREAT
            | libc::O_EXCL
            | libc::O_NOFOLLOW
            | libc::O_CLOEXEC
            | libc::O_NOCTTY;
        match sys_open(&c, flags) {
            Ok(f) => return Ok((f, path)),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    }
    Err(io::Error::new(
        io::ErrorKind::AlreadyExists,
        "no free temporary name after 16 tries",
    ))
}

/// Whether `path` still names `file` (same device and inode), following a link at its end
/// only under a policy that does.
pub fn same_file(path: &Path, file: &File, policy: &Policy) -> bool {
    let named = if policy.follow_symlinks {
        std::fs::metadata(path).ok()
    } else {
        kind_at(path)
    };
    match (named, file.metadata()) {
        (Some(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn dir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("outfile-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn creates_0640_and_reports_creation() {
        let d = dir("create");
        let p = d.join("log");
        let o = open_append(&p, &Policy::default(), Accept::Stream).unwrap();
        assert!(o.created);
        let mode = std::fs::metadata(&p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode & !0o640, 0, "{mode:o}");
        let o = open_append(&p, &Policy::default(), Accept::Stream).unwrap();
        assert!(!o.created);
    }

    #[test]
    fn symlink_refused_unless_followed() {
        let d = dir("link");
        let target = d.join("target");
        std::fs::write(&target, "keep\n").unwrap();
        let link = d.join("log");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        let e = open_append(&link, &Policy::default(), Accept::Stream).unwrap_err();
        assert!(e.is_symlink(), "{e}");
        let e = open_rw(&link, &Policy::default()).unwrap_err();
        assert!(e.is_symlink(), "{e}");
        // A dangling link is refused too, and its target is not created.
        let dangling = d.join("dangling");
        std::os::unix::fs::symlink(d.join("nothing"), &dangling).unwrap();
        let e = open_append(&dangling, &Policy::default(), Accept::Stream).unwrap_err();
        assert!(e.is_symlink(), "{e}");
        assert!(!d.join("nothing").exists());
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "keep\n");
        let follow = Policy {
            follow_symlinks: true,
            owner: None,
        };
        use std::io::Write;
        let mut o = open_append(&link, &follow, Accept::Stream).unwrap();
        o.file.write_all(b"more\n").unwrap();
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "keep\nmore\n");
        open_append(&dangling, &follow, Accept::Stream).unwrap();
        assert!(d.join("nothing").exists());
    }

    #[test]
    fn kinds() {
        let d = dir("kinds");
        let e = open_append(&d, &Policy::default(), Accept::Stream).unwrap_err();
        assert_eq!(
            e.to_string(),
            "is a directory, not a regular file, FIFO or character device"
        );
        let sock = d.join("sock");
        let _l = std::os::unix::net::UnixListener::bind(&sock).unwrap();
        let e = open_append(&sock, &Policy::default(), Accept::Stream).unwrap_err();
        assert!(e.to_string().starts_with("is a socket"), "{e}");
        open_append(Path::new("/dev/null"), &Policy::default(), Accept::Stream).unwrap();
        let e = open_rw(Path::new("/dev/null"), &Policy::default()).unwrap_err();
        assert_eq!(e.to_string(), "is a character device, not a regular file");
        let fifo = d.join("fifo");
        let c = c_path(&fifo).unwrap();
        // SAFETY: a NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        // Refused without being opened (opening a FIFO for writing would wait for a reader).
        let e = open_rw(&fifo, &Policy::default()).unwrap_err();
        assert_eq!(e.to_string(), "is a FIFO, not a regular file");
    }

    #[test]
    fn temp_names_are_fresh_and_exclusive() {
        let d = dir("temp");
        let (_a, pa) = create_temp(&d, "names").unwrap();
        let (_b, pb) = create_temp(&d, "names").unwrap();
        assert_ne!(pa, pb);
        let name = pa.file_name().unwrap().to_str().unwrap();
        assert!(name.starts_with("names.tmp.") && name.len() == "names.tmp.".len() + 16);
        let mode = std::fs::metadata(&pa).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode & !0o640, 0, "{mode:o}");
    }
}
