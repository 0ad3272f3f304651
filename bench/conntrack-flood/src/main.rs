//! Sends one UDP datagram per new flow at a fixed rate for a fixed time, so conntrack creates
//! `rate` new entries per second: the load for ipclog's conntrack benchmark.
//!
//! `conntrack-flood DST_IP RATE SECS [THREADS]`: each sending thread has its own source
//! sockets (distinct source ports), each cycling through destination ports 1024..65535, so
//! every datagram is a new (sport, dport) pair. Bounded: it stops after SECS seconds.
//! Prints `sent N flows in T s`. More threads help where one core cannot push the rate
//! (the kernel's conntrack work for each packet runs in the sender's context).

use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 4 {
        eprintln!("usage: conntrack-flood DST_IP RATE SECS [THREADS]");
        std::process::exit(2);
    }
    let dst: IpAddr = args[1].parse().expect("DST_IP");
    let rate: u64 = args[2].parse().expect("RATE");
    let secs: u64 = args[3].parse().expect("SECS");
    let threads: u64 = args.get(4).map(|s| s.parse().expect("THREADS")).unwrap_or(1).max(1);
    let start = Instant::now();
    let handles: Vec<_> = (0..threads)
        .map(|_| std::thread::spawn(move || flood(dst, rate / threads, secs)))
        .collect();
    let (mut sent, mut errors) = (0, 0);
    for h in handles {
        let (s, e) = h.join().expect("sender thread");
        sent += s;
        errors += e;
    }
    let t = start.elapsed().as_secs_f64();
    println!(
        "sent {sent} flows in {t:.2} s ({:.0}/s), {errors} send errors",
        sent as f64 / t
    );
}

/// One sender: `rate` new flows a second for `secs` seconds; returns (sent, send errors).
fn flood(dst: IpAddr, rate: u64, secs: u64) -> (u64, u64) {
    const PORTS: u64 = 65536 - 1024;
    let total = rate * secs;
    let sockets = total.div_ceil(PORTS).max(1);
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
    (sent, errors)
}
