//! Giving up privileges once the source and every output are open.
//!
//! Started as root, ipclog would otherwise keep every capability for as long as it runs, though
//! what remains to do needs at most one: the conntrack dumper opens a netlink socket and asks
//! for the table every few seconds (CAP_NET_ADMIN); a capture already open (`-r`, `-i`) needs
//! none. So the bounding and ambient sets are emptied of the rest, `--user` switches to an
//! unprivileged uid (its own groups, PR_SET_KEEPCAPS so CAP_NET_ADMIN survives the switch), and
//! the effective and permitted sets are cut down to what is kept. Capabilities belong to each
//! thread: this runs on the main thread before any other is started, so every thread started
//! later inherits the reduced sets.

use std::ffi::CString;
use std::io;

/// Bit number of CAP_NET_ADMIN.
pub const CAP_NET_ADMIN: u32 = 12;
/// Bit number of CAP_SYS_PTRACE: `--proc` reads other processes' `/proc/PID/fd`, which the
/// kernel allows only to a reader whose capabilities cover the target's.
pub const CAP_SYS_PTRACE: u32 = 19;
const CAP_SETGID: u32 = 6;
const CAP_SETUID: u32 = 7;
const CAP_SETPCAP: u32 = 8;

/// The account `--user` names.
#[derive(Debug, Clone)]
pub struct User {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
}

/// Looks up `name` in the user database (NSS: /etc/passwd, LDAP ...).
pub fn lookup_user(name: &str) -> Result<User, String> {
    let shown = shared::text::escaped(name).into_owned();
    let c = CString::new(name).map_err(|_| format!("--user {shown}: no such user"))?;
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        // SAFETY: getpwnam_r fills `pw` with pointers into `buf`, which outlives their use
        // below; `result` is set to &pw on success or null when there is no such user.
        let (rc, found, uid, gid) = unsafe {
            let mut pw: libc::passwd = std::mem::zeroed();
            let mut result: *mut libc::passwd = std::ptr::null_mut();
            let rc = libc::getpwnam_r(
                c.as_ptr(),
                &mut pw,
                buf.as_mut_ptr() as *mut libc::c_char,
                buf.len(),
                &mut result,
            );
            (rc, !result.is_null(), pw.pw_uid, pw.pw_gid)
        };
        if rc == libc::ERANGE && buf.len() < 1 << 20 {
            buf.resize(buf.len() * 4, 0);
            continue;
        }
        if rc != 0 {
            return Err(format!(
                "--user {shown}: cannot look up the user: {}",
                io::Error::from_raw_os_error(rc)
            ));
        }
        if !found {
            return Err(format!("--user {shown}: no such user"));
        }
        return Ok(User {
            name: name.to_string(),
            uid,
            gid,
        });
    }
}

#[repr(C)]
struct CapHeader {
    version: u32,
    pid: libc::c_int,
}

#[repr(C)]
#[derive(Clone, Copy, Default)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

const CAP_VERSION_3: u32 = 0x2008_0522;

/// (effective, permitted) of the calling thread, as 64-bit masks.
/// Whether this thread has CAP_NET_ADMIN in its effective set.
pub fn has_net_admin() -> bool {
    capget().is_ok_and(|(eff, _)| eff & (1 << CAP_NET_ADMIN) != 0)
}

fn capget() -> io::Result<(u64, u64)> {
    let mut h = CapHeader {
        version: CAP_VERSION_3,
        pid: 0,
    };
    let mut d = [CapData::default(); 2];
    // SAFETY: version 3 takes a header and two data structs, which we pass.
    if unsafe { libc::syscall(libc::SYS_capget, &mut h, d.as_mut_ptr()) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let join = |f: fn(&CapData) -> u32| f(&d[0]) as u64 | (f(&d[1]) as u64) << 32;
    Ok((join(|c| c.effective), join(|c| c.permitted)))
}

/// Sets the calling thread's effective and permitted sets to `mask`, inheritable to none.
fn capset(mask: u64) -> io::Result<()> {
    let mut h = CapHeader {
        version: CAP_VERSION_3,
        pid: 0,
    };
    let d = [
        CapData {
            effective: mask as u32,
            permitted: mask as u32,
            inheritable: 0,
        },
        CapData {
            effective: (mask >> 32) as u32,
            permitted: (mask >> 32) as u32,
            inheritable: 0,
        },
    ];
    // SAFETY: version 3 takes a header and two data structs, which we pass.
    if unsafe { libc::syscall(libc::SYS_capset, &mut h, d.as_ptr()) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

fn prctl(op: libc::c_int, arg: libc::c_ulong) -> io::Result<()> {
    // SAFETY: prctl with integer arguments only.
    if unsafe {
        libc::prctl(
            op,
            arg,
            0 as libc::c_ulong,
            0 as libc::c_ulong,
            0 as libc::c_ulong,
        )
    } != 0
    {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

fn bit(cap: u32) -> u64 {
    1u64 << cap
}

/// The highest capability number this kernel knows.
fn last_cap() -> u32 {
    std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .filter(|&n: &u32| n < 64)
        .unwrap_or(40)
}

/// Keeps the capabilities `keep` (bit numbers) of those the process has, drops every other
/// one from the effective, permitted, inheritable, ambient and (where allowed) bounding sets,
/// switching to `user` on the way. Must run before any thread is started. Checks the result
/// in /proc/thread-self/status.
pub fn drop_privileges(keep: &[u32], user: Option<&User>) -> Result<(), String> {
    let fail = |what: &str, e: io::Error| format!("cannot drop privileges: {what}: {e}");
    let (eff, prm) = capget().map_err(|e| fail("capget", e))?;
    let keep = keep.iter().fold(0u64, |m, &c| m | bit(c)) & prm;
    if eff & bit(CAP_SETPCAP) != 0 {
        for cap in 0..=last_cap() {
            if keep & bit(cap) == 0 {
                prctl(libc::PR_CAPBSET_DROP, cap as libc::c_ulong)
                    .map_err(|e| fail("PR_CAPBSET_DROP", e))?;
            }
        }
    }
    // Older kernels have no ambient set: nothing to clear there.
    // SAFETY: prctl with integer arguments only.
    unsafe {
        libc::prctl(
            libc::PR_CAP_AMBIENT,
            libc::PR_CAP_AMBIENT_CLEAR_ALL as libc::c_ulong,
            0 as libc::c_ulong,
            0 as libc::c_ulong,
            0 as libc::c_ulong,
        );
    }
    if let Some(u) = user {
        if eff & bit(CAP_SETUID) == 0 || eff & bit(CAP_SETGID) == 0 {
            return Err(format!(
                "--user {}: switching users needs root (CAP_SETUID and CAP_SETGID)",
                shared::text::escaped(&u.name)
            ));
        }
        // Without it the uid change below would empty the permitted set too, and
        // CAP_NET_ADMIN could not be kept.
        prctl(libc::PR_SET_KEEPCAPS, 1).map_err(|e| fail("PR_SET_KEEPCAPS", e))?;
        let name = CString::new(u.name.as_str()).map_err(|_| "user name with a NUL byte")?;
        // SAFETY: plain calls with a NUL-terminated name and ids; the process is single-
        // threaded here (glibc would change every thread's ids anyway).
        unsafe {
            if libc::initgroups(name.as_ptr(), u.gid) != 0 {
                return Err(fail("initgroups", io::Error::last_os_error()));
            }
            if libc::setresgid(u.gid, u.gid, u.gid) != 0 {
                return Err(fail("setresgid", io::Error::last_os_error()));
            }
            if libc::setresuid(u.uid, u.uid, u.uid) != 0 {
                return Err(fail("setresuid", io::Error::last_os_error()));
            }
        }
        prctl(libc::PR_SET_KEEPCAPS, 0).map_err(|e| fail("PR_SET_KEEPCAPS", e))?;
    }
    capset(keep).map_err(|e| fail("capset", e))?;
    // Nothing ipclog runs may gain privileges back through a set-uid or file-capability
    // program.
    prctl(libc::PR_SET_NO_NEW_PRIVS, 1).map_err(|e| fail("PR_SET_NO_NEW_PRIVS", e))?;
    verify(keep, user)
}

/// Reads back what the kernel says this thread now has.
fn verify(keep: u64, user: Option<&User>) -> Result<(), String> {
    let status = std::fs::read_to_string("/proc/thread-self/status")
        .map_err(|e| format!("cannot check dropped privileges: /proc/thread-self/status: {e}"))?;
    let field = |name: &str| -> Option<&str> {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .map(str::trim)
    };
    let hex = |name: &str| field(name).and_then(|v| u64::from_str_radix(v, 16).ok());
    for set in ["CapEff:", "CapPrm:", "CapInh:", "CapAmb:"] {
        let want = if set == "CapEff:" || set == "CapPrm:" {
            keep
        } else {
            0
        };
        match hex(set) {
            Some(v) if v == want => {}
            // Kernels before 4.3 have no ambient set.
            None if set == "CapAmb:" => {}
            other => {
                return Err(format!(
                    "privileges not dropped: {set} is {other:x?}, expected {want:016x}"
                ))
            }
        }
    }
    if let Some(u) = user {
        for id in ["Uid:", "Gid:"] {
            let want = if id == "Uid:" { u.uid } else { u.gid };
            let ok = field(id).is_some_and(|v| {
                v.split_whitespace()
                    .all(|n| n.parse::<u32>().ok() == Some(want))
            });
            if !ok {
                return Err(format!(
                    "user not switched: {id} {}, expected {want}",
                    field(id).unwrap_or("?")
                ));
            }
        }
    }
    Ok(())
}
