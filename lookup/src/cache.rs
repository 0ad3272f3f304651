//! The reverse-DNS name cache, and asking DNS.

use std::collections::HashMap;
use std::io;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use crate::{byte_lines, utf8_line, valid_name, Warning};

/// The default place of the reverse-DNS name cache.
pub const DEFAULT_CACHE: &str = "/var/cache/constat/names";

/// Reverse-DNS results kept between runs: one `ADDRESS NAME EPOCH` line per address (epoch =
/// when the name was looked up). constat reads it so reports show names without asking DNS.
#[derive(Debug, Clone)]
pub struct NameCache {
    path: PathBuf,
    map: HashMap<IpAddr, (String, u64)>,
    dirty: bool,
}

impl NameCache {
    /// An empty cache that would be saved to `path`.
    pub fn empty(path: &Path) -> NameCache {
        NameCache {
            path: path.to_path_buf(),
            map: HashMap::new(),
            dirty: false,
        }
    }

    /// Reads the cache. A missing file is an empty cache (nothing was resolved yet); any other
    /// read error and each bad line is a warning, never fatal: the cache is only a hint.
    pub fn load(path: &Path) -> (NameCache, Vec<Warning>) {
        match std::fs::read(path) {
            Ok(b) => NameCache::parse_bytes(path, &b),
            Err(e) if e.kind() == io::ErrorKind::NotFound => (NameCache::empty(path), Vec::new()),
            Err(e) => (
                NameCache::empty(path),
                vec![Warning {
                    file: path.display().to_string(),
                    line: 0,
                    reason: format!("cannot read name cache: {e}"),
                }],
            ),
        }
    }

    /// A cache read from the bytes of a cache file, to be saved to `path` (which also names
    /// it in warnings): what `load` does without the file, for the fuzz target.
    pub fn parse_bytes(path: &Path, bytes: &[u8]) -> (NameCache, Vec<Warning>) {
        let mut c = NameCache::empty(path);
        let w = c.parse(bytes, &path.display().to_string());
        (c, w)
    }

    fn parse(&mut self, bytes: &[u8], file: &str) -> Vec<Warning> {
        let mut warnings = Vec::new();
        for (line_no, raw) in byte_lines(bytes) {
            let raw = match utf8_line(raw, file, line_no) {
                Ok(t) => t,
                Err(w) => {
                    warnings.push(w);
                    continue;
                }
            };
            let line = raw.split('#').next().unwrap_or("").trim();
            if line.is_empty() {
                continue;
            }
            let f: Vec<&str> = line.split_ascii_whitespace().collect();
            let parsed = match f[..] {
                [a, n, t] => match (a.parse::<IpAddr>(), t.parse::<u64>()) {
                    (Ok(a), Ok(t)) if valid_name(n) => Ok((a, n, t)),
                    (Err(_), _) => Err(format!("not an address: {a:?}")),
                    (_, Err(_)) => Err(format!("not epoch seconds: {t:?}")),
                    _ => Err(format!("bad name {n:?}")),
                },
                _ => Err(format!(
                    "expected `ADDRESS NAME EPOCH`, got {} fields",
                    f.len()
                )),
            };
            match parsed {
                // The newest lookup of an address wins.
                Ok((a, n, t)) => {
                    if self.map.get(&a).is_none_or(|(_, old)| *old <= t) {
                        self.map.insert(a, (n.to_string(), t));
                    }
                }
                Err(reason) => warnings.push(Warning {
                    file: file.to_string(),
                    line: line_no,
                    reason,
                }),
            }
        }
        warnings
    }

    pub fn get(&self, addr: IpAddr) -> Option<&str> {
        self.map.get(&addr).map(|(n, _)| n.as_str())
    }

    pub fn insert(&mut self, addr: IpAddr, name: &str, epoch: u64) {
        self.map.insert(addr, (name.to_string(), epoch));
        self.dirty = true;
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Writes the cache back if it changed: to a new temporary file (mode 0640, a random name
    /// in the same directory, created with O_EXCL: a name planted there cannot be written
    /// through) renamed over the old one, so a reader never sees half a file. Creates the
    /// directory if needed.
    pub fn save(&mut self) -> io::Result<()> {
        use std::io::Write;
        if !self.dirty {
            return Ok(());
        }
        let dir = match self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            Some(dir) => {
                std::fs::create_dir_all(dir)?;
                dir
            }
            None => Path::new("."),
        };
        let stem = self
            .path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "names".into());
        let mut entries: Vec<_> = self.map.iter().collect();
        entries.sort();
        let mut out = String::from("# constat reverse-DNS name cache: ADDRESS NAME EPOCH\n");
        for (a, (n, t)) in entries {
            out.push_str(&format!("{a} {n} {t}\n"));
        }
        let (mut f, tmp) = shared::outfile::create_temp(dir, &stem)?;
        let written = f
            .write_all(out.as_bytes())
            .and_then(|_| f.sync_all())
            .and_then(|_| {
                drop(f);
                std::fs::rename(&tmp, &self.path)
            });
        if let Err(e) = written {
            let _ = std::fs::remove_file(&tmp);
            return Err(e);
        }
        self.dirty = false;
        Ok(())
    }
}

/// Live reverse DNS for one address (`getnameinfo` with `NI_NAMEREQD`), `None` when the address
/// has no name. Blocks for as long as the resolver takes; only called with `constat --resolve`.
pub fn resolve(addr: IpAddr) -> Option<String> {
    use std::mem;
    // SAFETY: the sockaddr structures are zeroed and filled as the C API expects, their sizes
    // passed along; getnameinfo writes at most `host.len()` bytes, NUL-terminated.
    unsafe {
        let mut storage: libc::sockaddr_storage = mem::zeroed();
        let len = match addr {
            IpAddr::V4(a) => {
                let sin = &mut *(&mut storage as *mut _ as *mut libc::sockaddr_in);
                sin.sin_family = libc::AF_INET as libc::sa_family_t;
                sin.sin_addr.s_addr = u32::from_ne_bytes(a.octets());
                mem::size_of::<libc::sockaddr_in>()
            }
            IpAddr::V6(a) => {
                let sin6 = &mut *(&mut storage as *mut _ as *mut libc::sockaddr_in6);
                sin6.sin6_family = libc::AF_INET6 as libc::sa_family_t;
                sin6.sin6_addr.s6_addr = a.octets();
                mem::size_of::<libc::sockaddr_in6>()
            }
        };
        let mut host = [0 as libc::c_char; 1025];
        let rc = libc::getnameinfo(
            &storage as *const _ as *const libc::sockaddr,
            len as libc::socklen_t,
            host.as_mut_ptr(),
            host.len() as libc::socklen_t,
            std::ptr::null_mut(),
            0,
            libc::NI_NAMEREQD,
        );
        if rc != 0 {
            return None;
        }
        let name = std::ffi::CStr::from_ptr(host.as_ptr())
            .to_string_lossy()
            .into_owned();
        valid_name(&name).then_some(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_resolves_from_etc_hosts() {
        // /etc/hosts names 127.0.0.1 on any Debian system: no DNS server is needed.
        assert!(resolve("127.0.0.1".parse().unwrap()).is_some());
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn name_cache_temp_file_is_not_a_predictable_name() {
        let dir = std::env::temp_dir().join(format!("lookup-tmpname-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("names");
        // What another user could prepare knowing the PID: links at the names a temporary
        // file named after the PID would get, pointing at a file of the victim's.
        let victim = dir.join("victim");
        std::fs::write(&victim, "precious\n").unwrap();
        for guess in [
            format!("names.tmp.{}", std::process::id()),
            format!("names.{}.tmp", std::process::id()),
            "names.tmp".to_string(),
        ] {
            std::os::unix::fs::symlink(&victim, dir.join(guess)).unwrap();
        }
        let mut c = NameCache::empty(&path);
        c.insert(ip("192.0.2.1"), "a.example", 1);
        c.save().unwrap();
        c.insert(ip("192.0.2.2"), "b.example", 2);
        c.save().unwrap();
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious\n");
        let meta = std::fs::symlink_metadata(&path).unwrap();
        assert!(meta.file_type().is_file(), "{meta:?}");
        let (c2, w) = NameCache::load(&path);
        assert!(w.is_empty(), "{w:?}");
        assert_eq!(c2.get(ip("192.0.2.2")), Some("b.example"));
        // Nothing is left behind but the cache, the victim and the planted links.
        let mut left: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        assert_eq!(left.len(), 5, "{left:?}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn name_cache_round_trip_and_bad_lines() {
        let dir = std::env::temp_dir().join(format!("lookup-cache-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let path = dir.join("sub/names");
        let (mut c, w) = NameCache::load(&path);
        assert!(
            w.is_empty() && c.is_empty(),
            "missing cache is empty, not an error"
        );
        c.insert(ip("1.2.3.4"), "host.example", 100);
        c.insert(ip("2001:db8::1"), "v6.example", 200);
        c.save().unwrap();
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o640);
        let (c2, w) = NameCache::load(&path);
        assert!(w.is_empty(), "{w:?}");
        assert_eq!(c2.get(ip("1.2.3.4")), Some("host.example"));
        assert_eq!(c2.get(ip("2001:db8::1")), Some("v6.example"));
        assert_eq!(c2.len(), 2);

        std::fs::write(
            &path,
            "1.1.1.1 old 10\n1.1.1.1 new 20\n1.1.1.1 older 5\nbad line\n9.9.9.9 x notanumber\n",
        )
        .unwrap();
        let (c3, w) = NameCache::load(&path);
        assert_eq!(c3.get(ip("1.1.1.1")), Some("new"), "newest lookup wins");
        assert_eq!(w.iter().map(|w| w.line).collect::<Vec<_>>(), vec![4, 5]);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
