//! Writes a large synthetic ipclog line log for benchmarking constat:
//! `genlog LINES [DAYS] > file`. Deterministic (fixed seed). About a thousand connections are
//! open at any time, among a few hundred hosts and a dozen services, spread evenly over DAYS
//! days (default 10) starting 2004-08-01 (local time); every line is written by the shared
//! writer, so it is exactly what ipclog writes, counters included.
//!
//! `genlog EVENTS DAYS --db PATH` writes the same events to an SQLite history at PATH instead,
//! through ipclog's own store writer (batches of 10000 events), for `constat query` and
//! reports from the history; about 40% of the events are opens, so a history of N
//! connections takes about 2.5 N events.

use std::io::{self, BufWriter, Write};
use std::net::{IpAddr, Ipv4Addr};

use shared::logfmt::{header_line, parse_epoch, program_line, write_event, WriteOptions};
use shared::proto::{TCP, UDP};
use shared::{ConnEvent, ConnState, Counters, EventKind, FlowTuple, Source, TcpState};

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        // xorshift64*
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

struct Conn {
    ev: ConnEvent,
    opened: f64,
    updates: u32,
}

const SERVICES: [(u8, u16); 12] = [
    (TCP, 80),
    (TCP, 443),
    (TCP, 443),
    (TCP, 443),
    (TCP, 22),
    (TCP, 25),
    (TCP, 993),
    (UDP, 53),
    (UDP, 53),
    (UDP, 123),
    (TCP, 8080),
    (UDP, 443),
];

fn main() -> io::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let lines: u64 = args
        .get(1)
        .and_then(|s| s.parse().ok())
        .expect("usage: genlog LINES [DAYS]");
    let days: u64 = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(10);
    let start = 1_091_318_400.0; // 2004-08-01 00:00:00 UTC
    let step = (days * 86_400) as f64 / lines as f64;
    let ts = |t: f64| parse_epoch(&format!("{:.0}", t)).unwrap();

    let db = match (args.get(3).map(String::as_str), args.get(4)) {
        (Some("--db"), Some(p)) => {
            Some(store::Store::open(std::path::Path::new(p)).expect("open the history"))
        }
        _ => None,
    };
    let mut db = db.map(|s| (s, Vec::<ConnEvent>::with_capacity(10_000)));
    let mut out = BufWriter::with_capacity(1 << 20, io::stdout().lock());
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut open: Vec<Conn> = Vec::with_capacity(4096);
    let mut line = String::with_capacity(256);
    let mut conn_id = 0u64;
    let mut sport = 1024u16;
    writeln!(out, "{}", program_line(ts(start), "ipclog started"))?;
    writeln!(out, "{}", header_line(ts(start)))?;
    let mut written = 2u64;
    let mut now = start;
    while written < lines {
        now += step;
        line.clear();
        let want_open = open.len() < 500 || (open.len() < 1500 && rng.below(2) == 0);
        if want_open {
            let (proto, dport) = SERVICES[rng.below(SERVICES.len() as u64) as usize];
            let local = rng.below(4) == 0;
            let src = if local {
                IpAddr::V4(Ipv4Addr::new(217, 235, 218, 69))
            } else {
                IpAddr::V4(Ipv4Addr::new(192, 168, 0, 2 + rng.below(60) as u8))
            };
            let dst = IpAddr::V4(Ipv4Addr::new(
                212,
                227,
                rng.below(4) as u8,
                1 + rng.below(100) as u8,
            ));
            sport = if sport >= 60999 { 1024 } else { sport + 1 };
            conn_id += 1;
            let mut ev = ConnEvent::new(
                EventKind::Open,
                ts(now),
                Source::Conntrack,
                conn_id,
                proto,
                FlowTuple::new(src, dst, Some(sport), Some(dport)),
            );
            if local {
                ev.src_iface = Some("ppp0".into());
            }
            ev.state = if proto == TCP {
                ConnState::Tcp(TcpState::Established)
            } else {
                ConnState::Unreplied
            };
            if let Some((_, batch)) = db.as_mut() {
                batch.push(ev.clone());
            } else {
                write_event(&ev, WriteOptions::default(), &mut line);
            }
            open.push(Conn {
                ev,
                opened: now,
                updates: 0,
            });
        } else {
            let i = rng.below(open.len() as u64) as usize;
            let c = &mut open[i];
            let dur = (now - c.opened).max(0.0);
            let close = c.ev.proto != TCP || c.updates >= 2 || rng.below(3) == 0;
            if close {
                let mut c = open.swap_remove(i);
                c.ev.kind = EventKind::Close;
                c.ev.ts = ts(now);
                c.ev.duration = Some(dur);
                if c.ev.proto == UDP {
                    c.ev.state = ConnState::Replied;
                }
                let pkts = 2 + rng.below(40);
                c.ev.counters = Some(Counters {
                    orig_pkts: pkts,
                    orig_ip_bytes: pkts * 60 + rng.below(2000),
                    resp_pkts: pkts,
                    resp_ip_bytes: pkts * 600 + rng.below(50_000),
                    orig_bytes: None,
                    resp_bytes: None,
                });
                if let Some((_, batch)) = db.as_mut() {
                    batch.push(c.ev.clone());
                } else {
                    write_event(&c.ev, WriteOptions::default(), &mut line);
                }
            } else {
                c.updates += 1;
                c.ev.kind = EventKind::Update;
                c.ev.ts = ts(now);
                c.ev.duration = Some(dur);
                c.ev.state = ConnState::Tcp(if c.updates == 1 {
                    TcpState::FinWait
                } else {
                    TcpState::TimeWait
                });
                if let Some((_, batch)) = db.as_mut() {
                    batch.push(c.ev.clone());
                } else {
                    write_event(&c.ev, WriteOptions::default(), &mut line);
                }
            }
        }
        written += 1;
        if let Some((store, batch)) = db.as_mut() {
            if batch.len() >= 10_000 {
                store.write_batch(batch).expect("write a batch");
                batch.clear();
            }
            continue;
        }
        line.push('\n');
        out.write_all(line.as_bytes())?;
    }
    if let Some((mut store, batch)) = db {
        store.write_batch(&batch).expect("write a batch");
    }
    out.flush()
}
