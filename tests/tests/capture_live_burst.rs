//! `ipclog -i` under a burst of small packets: the kernel ring must hold them (issue 13).
//! With libpcap's immediate mode the ring was TPACKET_V2, one 64 KB frame per packet (~32
//! packets in the default 2 MiB), and a burst overflowed it (`kernel_drop=` in the summary).

use std::net::UdpSocket;
use std::os::fd::AsRawFd;
use std::time::Duration;

use e2e::bins::{bin, scratch};
use e2e::netns::{veth, wait_for, Netns};

fn in_netns<T: Send + 'static>(
    ns: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> std::thread::JoinHandle<T> {
    let path = format!("/var/run/netns/{ns}");
    std::thread::spawn(move || {
        let fd = std::fs::File::open(&path).expect("netns handle");
        // SAFETY: setns on this thread only, with a valid namespace fd.
        let r = unsafe { libc::setns(fd.as_raw_fd(), libc::CLONE_NEWNET) };
        assert_eq!(r, 0, "setns {path}");
        f()
    })
}

#[test]
fn a_burst_of_small_packets_is_captured_without_kernel_drops() {
    e2e::require_netns!();
    let d = scratch("cap-burst");
    let client = Netns::new("bcli").unwrap();
    let server = Netns::new("bsrv").unwrap();
    veth(
        &client,
        "eth0",
        "10.78.0.1/24",
        &server,
        "eth0",
        "10.78.0.2/24",
    )
    .unwrap();
    let log = d.join("burst.log");
    let mut ipclog = server
        .spawn(&[
            bin("ipclog").to_str().unwrap(),
            "-i",
            "eth0",
            "-f",
            log.to_str().unwrap(),
            "udp",
        ])
        .unwrap();
    // Until the capture sees packets (port 9 warm-up datagrams).
    let ready = wait_for(Duration::from_secs(20), || {
        in_netns(client.name(), || {
            let s = UdpSocket::bind("10.78.0.1:0").unwrap();
            let _ = s.send_to(b"warm", "10.78.0.2:9");
        })
        .join()
        .unwrap();
        std::thread::sleep(Duration::from_millis(150));
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        text.lines().any(|l| l.starts_with("O ")).then_some(())
    });
    assert!(ready.is_some(), "capture did not start");
    // 5,000 datagrams as fast as the sender goes: ~0.5 MB in a block ring, far more than a
    // 32-frame one holds while the reader waits for its turn on a busy machine.
    const N: u16 = 5000;
    in_netns(client.name(), || {
        let s = UdpSocket::bind("10.78.0.1:0").unwrap();
        for p in 0..N {
            s.send_to(b"12345678", ("10.78.0.2", 10_000 + p)).unwrap();
        }
    })
    .join()
    .unwrap();
    // Every datagram is a connection of its own: wait until all are open, then stop.
    let opened = wait_for(Duration::from_secs(20), || {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        let n = text
            .lines()
            .filter(|l| {
                l.starts_with("O ")
                    && l.split_whitespace()
                        .nth(6)
                        .and_then(|p| p.parse::<u16>().ok())
                        .is_some_and(|p| p >= 10_000)
            })
            .count();
        (n >= N as usize).then_some(n)
    });
    // SAFETY: signalling our own child.
    unsafe {
        libc::kill(ipclog.id() as i32, libc::SIGINT);
    }
    let st = wait_for(Duration::from_secs(10), || ipclog.try_wait().unwrap()).expect("exits");
    assert!(st.success(), "{st:?}");
    let text = std::fs::read_to_string(&log).unwrap();
    let summary = text
        .lines()
        .find(|l| l.contains(" capture: "))
        .unwrap_or_default();
    assert!(!summary.contains("kernel_drop"), "{summary}");
    assert_eq!(opened, Some(N as usize), "{summary}");
}
