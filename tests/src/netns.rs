//! Network namespaces for kernel tests: created per test with unique names, removed on drop.
//!
//! Every test that needs the kernel (conntrack, live capture) builds its own little network out
//! of namespaces and veth pairs, so traffic never touches the host's interfaces and tests can
//! run in parallel. Interfaces are created directly inside their namespaces (`ip link add ...
//! netns A peer ... netns B`), so their names only have to be unique within a namespace and
//! tests can use readable names like `eth0`.
//!
//! ```no_run
//! use e2e::netns::{self, Netns};
//! if let Some(why) = netns::skip_reason() { eprintln!("skipped: {why}"); return; }
//! let client = Netns::new("cli").unwrap();
//! let server = Netns::new("srv").unwrap();
//! netns::veth(&client, "eth0", "10.1.0.1/24", &server, "eth0", "10.1.0.2/24").unwrap();
//! server.enable_conntrack().unwrap();
//! let out = client.run(&["python3", "-c", "print(1)"]).unwrap();
//! # let _ = out;
//! ```
//! Dropping a [`Netns`] kills whatever still runs in it and deletes it, even when the test
//! panicked.

use std::io;
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// Why kernel tests cannot run here (not root, no `ip`/`nft`), or `None` when they can.
/// Tests print the reason and return early: CI runs as root, so they run there.
pub fn skip_reason() -> Option<String> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Some("needs root (network namespaces, nftables, conntrack)".into());
    }
    for tool in ["ip", "nft"] {
        let ok = Command::new(tool)
            .arg("-V")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        if !ok {
            return Some(format!("`{tool}` is not installed"));
        }
    }
    None
}

/// Prints the skip reason and returns from the test when kernel tests cannot run.
#[macro_export]
macro_rules! require_netns {
    () => {
        if let Some(why) = $crate::netns::skip_reason() {
            eprintln!("SKIPPED: {why}");
            return;
        }
    };
}

fn check(out: Output, what: &str) -> io::Result<Output> {
    if out.status.success() {
        Ok(out)
    } else {
        Err(io::Error::other(format!(
            "{what}: {}\nstdout: {}\nstderr: {}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )))
    }
}

fn run_host(args: &[&str]) -> io::Result<Output> {
    let out = Command::new(args[0]).args(&args[1..]).output()?;
    check(out, &args.join(" "))
}

/// A network namespace owned by the test; deleted (after killing its processes) on drop.
#[derive(Debug)]
pub struct Netns {
    name: String,
}

impl Netns {
    /// Creates a namespace named `t<pid>-<n>-<tag>` (unique across parallel tests and test
    /// processes) with its loopback up.
    pub fn new(tag: &str) -> io::Result<Netns> {
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let name = format!("t{}-{}-{}", std::process::id(), n, tag);
        run_host(&["ip", "netns", "add", &name])?;
        let ns = Netns { name };
        ns.run(&["ip", "link", "set", "lo", "up"])?;
        Ok(ns)
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// A command that will run `program` inside the namespace (`ip netns exec`). Add
    /// arguments, environment and stdio as with any `Command`.
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.name]).arg(program);
        c
    }

    /// Runs `args` inside the namespace and returns its output; an error (with stdout and
    /// stderr) if it fails.
    pub fn run(&self, args: &[&str]) -> io::Result<Output> {
        let out = self.command(args[0]).args(&args[1..]).output()?;
        check(out, &format!("[{}] {}", self.name, args.join(" ")))
    }

    /// Runs `args` inside the namespace and returns its standard output as text.
    pub fn run_stdout(&self, args: &[&str]) -> io::Result<String> {
        self.run(args)
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
    }

    /// Starts `args` inside the namespace with piped stdout/stderr. The caller owns the child;
    /// whatever is left running when the namespace is dropped is killed then.
    pub fn spawn(&self, args: &[&str]) -> io::Result<Child> {
        self.command(args[0])
            .args(&args[1..])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
    }

    /// Sets a sysctl inside the namespace (`sysctl -w key=value`); only per-namespace keys can
    /// be set, and the host's settings are never touched.
    pub fn sysctl(&self, key: &str, value: &str) -> io::Result<()> {
        self.run(&["sysctl", "-q", "-w", &format!("{key}={value}")])
            .map(drop)
    }

    /// Reads a sysctl inside the namespace.
    pub fn sysctl_get(&self, key: &str) -> io::Result<String> {
        self.run_stdout(&["sysctl", "-n", key])
            .map(|s| s.trim().to_string())
    }

    /// Loads an nftables script (the text `nft -f -` would read) into the namespace.
    pub fn nft(&self, script: &str) -> io::Result<()> {
        use std::io::Write;
        let mut child = self
            .command("nft")
            .args(["-f", "-"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()?;
        child
            .stdin
            .take()
            .expect("piped stdin")
            .write_all(script.as_bytes())?;
        let out = child.wait_with_output()?;
        check(out, &format!("[{}] nft -f - <<{script}", self.name)).map(drop)
    }

    /// Makes conntrack track this namespace's traffic with counters and timestamps: a rule
    /// using `ct state` in input, forward and output (a namespace has no conntrack hooks until
    /// such a rule exists), and `nf_conntrack_acct` / `nf_conntrack_timestamp` set to 1 inside
    /// the namespace.
    pub fn enable_conntrack(&self) -> io::Result<()> {
        self.nft(
            "table inet e2e_ct {
               chain ct_in { type filter hook input priority 0; ct state new counter; }
               chain ct_fwd { type filter hook forward priority 0; ct state new counter; }
               chain ct_out { type filter hook output priority 0; ct state new counter; }
             }",
        )?;
        self.sysctl("net.netfilter.nf_conntrack_acct", "1")?;
        self.sysctl("net.netfilter.nf_conntrack_timestamp", "1")?;
        Ok(())
    }

    /// Turns the namespace into a router that masquerades traffic leaving through `out_iface`.
    pub fn enable_masquerade(&self, out_iface: &str) -> io::Result<()> {
        self.sysctl("net.ipv4.ip_forward", "1")?;
        self.sysctl("net.ipv6.conf.all.forwarding", "1")?;
        self.nft(&format!(
            "table ip e2e_nat {{
               chain nat_post {{ type nat hook postrouting priority 100; oifname \"{out_iface}\" masquerade; }}
             }}"
        ))
    }

    /// Adds a route inside the namespace, e.g. `("default", "10.1.0.1")`.
    pub fn route(&self, dest: &str, via: &str) -> io::Result<()> {
        if dest.contains(':') || via.contains(':') {
            self.run(&["ip", "-6", "route", "add", dest, "via", via])
        } else {
            self.run(&["ip", "route", "add", dest, "via", via])
        }
        .map(drop)
    }

    /// Adds an address (CIDR) to an interface of the namespace.
    pub fn add_addr(&self, iface: &str, cidr: &str) -> io::Result<()> {
        let mut args = vec!["ip"];
        if cidr.contains(':') {
            args.push("-6");
        }
        args.extend(["addr", "add", cidr, "dev", iface]);
        if cidr.contains(':') {
            // No duplicate address detection: the address is usable at once.
            args.push("nodad");
        }
        self.run(&args).map(drop)
    }

    /// The pids of processes running in the namespace.
    pub fn pids(&self) -> Vec<i32> {
        Command::new("ip")
            .args(["netns", "pids", &self.name])
            .output()
            .map(|o| {
                String::from_utf8_lossy(&o.stdout)
                    .split_whitespace()
                    .filter_map(|p| p.parse().ok())
                    .collect()
            })
            .unwrap_or_default()
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        // Processes left in the namespace were started by this test (directly or by `ip netns
        // exec`); they would keep the namespace's interfaces alive.
        for pid in self.pids() {
            // SAFETY: kill with a pid we just listed; at worst the process is already gone.
            unsafe {
                libc::kill(pid, libc::SIGKILL);
            }
        }
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// Connects two namespaces with a veth pair: `a_if` in `a` with address `a_addr`, `b_if` in
/// `b` with `b_addr` (CIDR, IPv4 or IPv6), both up. The pair never exists in the host
/// namespace.
pub fn veth(
    a: &Netns,
    a_if: &str,
    a_addr: &str,
    b: &Netns,
    b_if: &str,
    b_addr: &str,
) -> io::Result<()> {
    run_host(&[
        "ip", "-n", &a.name, "link", "add", a_if, "type", "veth", "peer", "name", b_if, "netns",
        &b.name,
    ])?;
    a.add_addr(a_if, a_addr)?;
    b.add_addr(b_if, b_addr)?;
    a.run(&["ip", "link", "set", a_if, "up"])?;
    b.run(&["ip", "link", "set", b_if, "up"])?;
    Ok(())
}

/// Polls `f` every 20 ms until it returns `Some` or `timeout` passes.
pub fn wait_for<T>(timeout: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_namespaces_talk_and_are_removed() {
        if let Some(why) = skip_reason() {
            eprintln!("SKIPPED: {why}");
            return;
        }
        let name;
        {
            let a = Netns::new("a").unwrap();
            let b = Netns::new("b").unwrap();
            name = a.name().to_string();
            veth(&a, "eth0", "10.9.0.1/24", &b, "eth0", "10.9.0.2/24").unwrap();
            a.enable_conntrack().unwrap();
            assert_eq!(
                a.sysctl_get("net.netfilter.nf_conntrack_acct").unwrap(),
                "1"
            );
            let out = a
                .run_stdout(&["ip", "-br", "addr", "show", "eth0"])
                .unwrap();
            assert!(out.contains("10.9.0.1/24"), "{out}");
            let err = a.run(&["false"]).unwrap_err().to_string();
            assert!(err.contains("false"), "{err}");
        }
        let list = run_host(&["ip", "netns", "list"]).unwrap();
        assert!(!String::from_utf8_lossy(&list.stdout).contains(&name));
    }
}
