//! Benchmark capture generator: writes a pcap of `PACKETS` packets (Ethernet) made of many
//! concurrent connections: TCP (handshake, request, a response in several segments with ACKs,
//! both FINs) and UDP request/response pairs, interleaved round-robin over `CONCURRENT` flows,
//! 5 us apart. Packets come from tests/src/pcapgen.rs, so they are valid to the checksum.
//! Usage: gencap OUT.pcap PACKETS [CONCURRENT]

use std::io::Write;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};

use e2e::pcapgen::{self, Link, Record, ACK, FIN, PSH, SYN};

struct Flow {
    client: SocketAddr,
    server: SocketAddr,
    udp: bool,
    step: u32,
    cseq: u32,
    sseq: u32,
}

impl Flow {
    fn new(n: u64) -> Flow {
        let c = Ipv4Addr::from(0x0a00_0000u32 | (n as u32 % 60000 + 1));
        let s = Ipv4Addr::from(0xc0a8_0000u32 | (n as u32 % 250 + 1));
        let port = 1024 + (n / 60000 % 60000) as u16;
        Flow {
            client: SocketAddr::V4(SocketAddrV4::new(c, port)),
            server: SocketAddr::V4(SocketAddrV4::new(
                s,
                if n.is_multiple_of(5) { 53 } else { 443 },
            )),
            udp: n.is_multiple_of(5),
            step: 0,
            cseq: (n as u32).wrapping_mul(2654435761),
            sseq: (n as u32).wrapping_mul(40503),
        }
    }

    /// The next packet of this flow, or None when it is done.
    fn next(&mut self, payload: &[u8]) -> Option<Vec<u8>> {
        let st = self.step;
        self.step += 1;
        if self.udp {
            return match st {
                0 => Some(pcapgen::udp(self.client, self.server, &payload[..60])),
                1 => Some(pcapgen::udp(self.server, self.client, &payload[..300])),
                _ => None,
            };
        }
        let (c, s) = (self.client, self.server);
        // 0 SYN, 1 SYN-ACK, 2 ACK, 3 request, 4..=11 response segments (ACK every second),
        // then FIN, FIN, ACK.
        let pkt = match st {
            0 => {
                let p = pcapgen::tcp(c, s, SYN, self.cseq, 0, 65535, &[]);
                self.cseq = self.cseq.wrapping_add(1);
                p
            }
            1 => {
                let p = pcapgen::tcp(s, c, SYN | ACK, self.sseq, self.cseq, 65535, &[]);
                self.sseq = self.sseq.wrapping_add(1);
                p
            }
            2 => pcapgen::tcp(c, s, ACK, self.cseq, self.sseq, 65535, &[]),
            3 => {
                let p = pcapgen::tcp(
                    c,
                    s,
                    ACK | PSH,
                    self.cseq,
                    self.sseq,
                    65535,
                    &payload[..200],
                );
                self.cseq = self.cseq.wrapping_add(200);
                p
            }
            4..=15 => {
                if st.is_multiple_of(3) {
                    pcapgen::tcp(c, s, ACK, self.cseq, self.sseq, 65535, &[])
                } else {
                    let p = pcapgen::tcp(s, c, ACK, self.sseq, self.cseq, 65535, &payload[..1000]);
                    self.sseq = self.sseq.wrapping_add(1000);
                    p
                }
            }
            16 => {
                let p = pcapgen::tcp(c, s, FIN | ACK, self.cseq, self.sseq, 65535, &[]);
                self.cseq = self.cseq.wrapping_add(1);
                p
            }
            17 => {
                let p = pcapgen::tcp(s, c, FIN | ACK, self.sseq, self.cseq, 65535, &[]);
                self.sseq = self.sseq.wrapping_add(1);
                p
            }
            18 => pcapgen::tcp(c, s, ACK, self.cseq, self.sseq, 65535, &[]),
            _ => return None,
        };
        Some(pkt)
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 3 {
        eprintln!("usage: gencap OUT.pcap PACKETS [CONCURRENT]");
        std::process::exit(2);
    }
    let total: u64 = args[2].parse().expect("PACKETS");
    let concurrent: usize = args
        .get(3)
        .map(|s| s.parse().expect("CONCURRENT"))
        .unwrap_or(10000);
    let f = std::fs::File::create(&args[1]).expect("create output");
    let mut out = std::io::BufWriter::with_capacity(1 << 20, f);
    out.write_all(&pcapgen::pcap_bytes(1, 65535, &[])).unwrap();
    let link = Link::Ethernet(vec![]);
    let payload = vec![b'z'; 1500];
    let mut flows: Vec<Flow> = (0..concurrent as u64).map(Flow::new).collect();
    let mut next_id = concurrent as u64;
    let mut buf = Vec::with_capacity(2048);
    let mut ts: i64 = 1_700_000_000_000_000;
    let mut n = 0u64;
    let mut i = 0usize;
    while n < total {
        let p = match flows[i].next(&payload) {
            Some(p) => p,
            None => {
                flows[i] = Flow::new(next_id);
                next_id += 1;
                flows[i].next(&payload).expect("first packet")
            }
        };
        buf.clear();
        pcapgen::push_pcap_record(&mut buf, 65535, &Record::new(ts, link.frame(&p)));
        out.write_all(&buf).unwrap();
        ts += 50;
        n += 1;
        i = (i + 1) % flows.len();
    }
    out.flush().unwrap();
    eprintln!("{n} packets, {next_id} flows started");
}
