//! Sends one UDP datagram per new flow at a fixed rate for a fixed time, so conntrack creates
//! `rate` new entries per second: the load for ipclog's conntrack benchmark.
//!
//! `conntrack-flood DST_IP RATE SECS [SOCKETS]`: SOCKETS source sockets (distinct source
//! ports) each cycle through destination ports 1024..65535, so every datagram is a new
//! (sport, dport) pair until SOCKETS * 64512 flows were sent. Bounded: it stops after SECS
//! seconds, and refuses a run that would repeat a flow. Prints `sent N flows in T s`.

use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 4 {
        eprintln!("usage: conntrack-flood DST_IP RATE SECS [SOCKETS]");
        std::process::exit(2);
    }
    let dst: IpAddr = args[1].parse().expect("DST_IP");
    let rate: u64 = args[2].parse().expect("RATE");
    let secs: u64 = args[3].parse().expect("SECS");
    const PORTS: u64 = 65536 - 1024;
    let total = rate * secs;
    let sockets: u64 = args
        .get(4)
        .map(|s| s.parse().expect("SOCKETS"))
        .unwrap_or(total.div_ceil(PORTS).max(1));
    if sockets * PORTS < total {
        eprintln!("{sockets} sockets give only {} distinct flows", sockets * PORTS);
        std::process::exit(2);
    }
    let socks: Vec<UdpSocket> = (0..sockets)
        .map(|_| UdpSocket::bind(("0.0.0.0", 0)).expect("bind"))
        .collect();
    let payload = [0u8; 8];
    let start = Instant::now();
    let mut sent = 0u64;
    let mut errors = 0u64;
    // Paced in 1 ms slices: at each slice, catch up to rate * elapsed.
    while sent < total {
        let due = ((start.elapsed().as_secs_f64() * rate as f64) as u64 + 1).min(total);
        while sent < due {
            let sock = &socks[(sent / PORTS) as usize];
            let port = 1024 + (sent % PORTS) as u16;
            if sock.send_to(&payload, SocketAddr::new(dst, port)).is_err() {
                errors += 1;
            }
            sent += 1;
        }
        let next = Duration::from_secs_f64((sent as f64) / rate as f64);
        if let Some(wait) = next.checked_sub(start.elapsed()) {
            std::thread::sleep(wait.min(Duration::from_millis(1)));
        }
    }
    let t = start.elapsed().as_secs_f64();
    println!(
        "sent {sent} flows in {t:.2} s ({:.0}/s), {errors} send errors",
        sent as f64 / t
    );
}
