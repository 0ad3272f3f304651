//! The floor for read speed: a minimal libpcap read loop that touches every packet (sums the
//! captured lengths) and does nothing else. `ipclog -r` is measured against it.
//! Usage: floor FILE

fn main() {
    let path = std::env::args().nth(1).expect("usage: floor FILE");
    let mut cap = pcap::Capture::from_file(&path).expect("open capture");
    let (mut n, mut bytes) = (0u64, 0u64);
    while let Ok(p) = cap.next_packet() {
        n += 1;
        bytes += p.data.len() as u64 + p.data.first().copied().unwrap_or(0) as u64;
    }
    println!("{n} packets, {bytes} bytes");
}
