//! Reading a capture file ahead on a second thread. Left on one thread, a file read is the sum
//! of libpcap's reading (read(2), copying each record) plus parsing plus tracking; here a
//! reader thread runs libpcap's loop and takes each frame apart (headers, checksums) into
//! blocks of parsed packets, while the calling thread, which owns the sink, only tracks. The
//! run then takes about as long as the slower of the two.
//!
//! Blocks are allocated once and go round through two bounded channels (full ones to the
//! tracker, emptied ones back), so nothing is allocated per packet and memory stays flat
//! whatever the file's size. The tracker consumes records in file order and does all the
//! counting and reporting itself (packet numbers in messages, damaged records, statistics), so
//! the output is the same as when reading on one thread.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};

use pcap::{Activated, Capture};
use shared::sink::EventSink;

use crate::reader::{parse_frame, ts_us, Parsed, Reader, MAX_CONSECUTIVE_DAMAGE};
use crate::tracker::{Hint, Seen};
use crate::wire::{Drop, Link};
use crate::CaptureError;

/// Records per block: large enough that a channel hand-over (a few hundred ns) is rare, small
/// enough that a block (~200 KB) stays in the cache between the two threads.
const BLOCK_RECORDS: usize = 2048;
/// Frame bytes (fragments, error texts) after which a block is handed over early.
const BLOCK_BYTES: usize = 1 << 20;
/// How many packets ahead of the one being tracked the flow index slot is prefetched (the
/// flow itself half as far ahead, once its slot has arrived). See BENCHMARKS.md.
const PREFETCH_AHEAD: usize = 16;
/// Blocks in circulation: one being filled, one being tracked, two in the queue.
const BLOCKS: usize = 4;

/// One record of the file, as the tracker needs it.
#[derive(Clone, Copy)]
enum Record {
    /// A whole packet, parsed, with its flow hash.
    Seen(Seen, Hint),
    /// A packet that cannot be used.
    Drop(Drop),
    /// An IP fragment, or a packet that may carry a tunnel: its frame is
    /// `bytes[at..at + len]` (the tracker parses it again for the reassembly buffer or to
    /// decapsulate it; both are rare).
    Frame {
        ts_us: i64,
        wire_len: u32,
        at: u32,
        len: u32,
    },
    /// A record libpcap could not read; libpcap's message is `bytes[at..at + len]`.
    Damaged { at: u32, len: u32 },
    /// Too many damaged records in a row: the rest of the file is given up.
    GiveUp,
}

struct Block {
    records: Vec<Record>,
    bytes: Vec<u8>,
    /// The last block: the file ended (or the reader stopped).
    end: bool,
}

impl Block {
    fn new() -> Block {
        Block {
            records: Vec::with_capacity(BLOCK_RECORDS),
            bytes: Vec::with_capacity(64 * 1024),
            end: false,
        }
    }

    /// Appends `b` to the block's bytes; returns where.
    fn push_bytes(&mut self, b: &[u8]) -> (u32, u32) {
        let at = self.bytes.len();
        self.bytes.extend_from_slice(b);
        (at as u32, b.len() as u32)
    }
}

/// Reads the file behind `cap` on a second thread and tracks its packets on this one, until
/// its end, a give-up after damaged records, or `stop`.
pub(crate) fn read(
    cap: Capture<dyn Activated>,
    r: &mut Reader,
    sink: &mut dyn EventSink,
    stop: &AtomicBool,
) -> Result<(), CaptureError> {
    let link = r.link();
    let verify = r.verify_checksums();
    std::thread::scope(|scope| {
        let (full_tx, full_rx) = sync_channel::<Block>(BLOCKS);
        let (empty_tx, empty_rx) = sync_channel::<Block>(BLOCKS);
        for _ in 0..BLOCKS {
            empty_tx.send(Block::new()).expect("the receiver is here");
        }
        if let Err(e) = std::thread::Builder::new()
            .name("pcap-reader".into())
            .spawn_scoped(scope, move || {
                read_blocks(cap, link, verify, stop, full_tx, empty_rx)
            })
        {
            return Err(CaptureError {
                message: format!("{}: cannot start the reader thread: {e}", r.name()),
                exit_code: 1,
            });
        }
        // Blocks replace the read queue (the caller made `r` without one): the packets ahead
        // are in the block already, so their flows are prefetched from there (index slot 16
        // packets ahead, the flow 8 ahead). Leaving this closure (end, give-up, stop) drops
        // both channel ends, which ends the reader at its next hand-over or wait; the scope
        // then joins it.
        'blocks: while let Ok(mut b) = full_rx.recv() {
            let records = &b.records;
            for (i, rec) in records.iter().enumerate() {
                if stop.load(Ordering::Relaxed) {
                    break 'blocks;
                }
                if let Some(Record::Seen(_, h)) = records.get(i + PREFETCH_AHEAD) {
                    r.prefetch_slot(h);
                }
                if let Some(Record::Seen(_, h)) = records.get(i + PREFETCH_AHEAD / 2) {
                    r.prefetch_flow(h);
                }
                match *rec {
                    Record::Seen(ref seen, ref h) => {
                        r.packet();
                        r.account_hinted(seen, h, sink);
                        r.tick();
                    }
                    Record::Drop(d) => {
                        r.packet();
                        r.dropped(d);
                        r.tick();
                    }
                    Record::Frame {
                        ts_us,
                        wire_len,
                        at,
                        len,
                    } => {
                        r.packet();
                        let frame = &b.bytes[at as usize..(at + len) as usize];
                        match parse_frame(link, verify, ts_us, wire_len, frame) {
                            Parsed::Frag(ip) => r.fragment(ts_us, &ip, sink),
                            Parsed::Tunnel(seen, at) => r.tunnel_frame(&seen, frame, at, sink),
                            // Not reached: the reader parsed this very frame as a fragment
                            // or a packet that may carry a tunnel.
                            Parsed::Seen(seen) => r.submit(seen, sink),
                            Parsed::Drop(d) => r.dropped(d),
                        }
                        r.tick();
                    }
                    Record::Damaged { at, len } => {
                        let msg =
                            String::from_utf8_lossy(&b.bytes[at as usize..(at + len) as usize]);
                        r.damaged(&msg);
                    }
                    Record::GiveUp => {
                        r.give_up();
                        break 'blocks;
                    }
                }
            }
            if b.end {
                break;
            }
            b.records.clear();
            b.bytes.clear();
            // The reader may be gone already (its last block is in the channel): then the
            // block is simply dropped.
            let _ = empty_tx.send(b);
        }
        Ok(())
    })
}

/// The reader thread: libpcap's loop, parsing each frame into the block being filled.
fn read_blocks(
    mut cap: Capture<dyn Activated>,
    link: Link,
    verify: bool,
    stop: &AtomicBool,
    full: SyncSender<Block>,
    empty: Receiver<Block>,
) {
    let Ok(mut b) = empty.recv() else { return };
    let mut consecutive = 0u32;
    loop {
        if stop.load(Ordering::Relaxed) {
            b.end = true;
        } else {
            match cap.next_packet() {
                Ok(p) => {
                    consecutive = 0;
                    let ts_us = ts_us(&p.header.ts);
                    let rec = match parse_frame(link, verify, ts_us, p.header.len, p.data) {
                        Parsed::Seen(seen) => Record::Seen(seen, Hint::of(&seen)),
                        Parsed::Drop(d) => Record::Drop(d),
                        Parsed::Frag(_) | Parsed::Tunnel(..) => {
                            let (at, len) = b.push_bytes(p.data);
                            Record::Frame {
                                ts_us,
                                wire_len: p.header.len,
                                at,
                                len,
                            }
                        }
                    };
                    b.records.push(rec);
                }
                Err(pcap::Error::NoMorePackets) => b.end = true,
                // Only live captures time out.
                Err(pcap::Error::TimeoutExpired) => continue,
                Err(e) => {
                    consecutive += 1;
                    let (at, len) = b.push_bytes(e.to_string().as_bytes());
                    b.records.push(Record::Damaged { at, len });
                    if consecutive >= MAX_CONSECUTIVE_DAMAGE {
                        b.records.push(Record::GiveUp);
                        b.end = true;
                    }
                }
            }
        }
        if b.end || b.records.len() >= BLOCK_RECORDS || b.bytes.len() >= BLOCK_BYTES {
            let end = b.end;
            if full.send(b).is_err() || end {
                return;
            }
            match empty.recv() {
                Ok(next) => b = next,
                Err(_) => return,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicBool;

    use e2e::pcapgen::{self, Link, Record as PcapRecord, Session};
    use shared::sink::VecSink;

    use crate::{open_capture, run_with, CaptureArgs, CaptureSummary};

    const T0: i64 = 1_700_000_000_000_000;

    /// Several blocks' worth of records: interleaved TCP sessions (one with a bad checksum),
    /// fragmented UDP datagrams, non-IP frames, and a final record cut short (damaged).
    fn capture(path: &std::path::Path) {
        let link = Link::Ethernet(vec![]);
        let mut packets: Vec<(i64, Vec<u8>)> = Vec::new();
        for i in 0..700i64 {
            let client = format!("10.1.{}.{}:{}", i / 200, i % 200, 20000 + i);
            let mut s = Session::new(&client, "10.9.0.1:80", 1000, 5000);
            let t = T0 + i * 3000;
            s.handshake(t)
                .data(t + 10_000, true, 100)
                .data(t + 20_000, false, 1200)
                .ack(t + 21_000, true)
                .close(t + 30_000);
            if i == 77 {
                let last = s.packets.len() - 4;
                let p = &mut s.packets[last].1;
                let n = p.len();
                p[n - 1] ^= 0x55;
            }
            packets.extend(s.packets);
            if i % 50 == 0 {
                let dgram = pcapgen::udp(
                    format!("10.2.0.{}:5000", i / 50).parse().unwrap(),
                    "10.9.0.2:53".parse().unwrap(),
                    &[7; 300],
                );
                for f in pcapgen::fragment(&dgram, 64, i as u32) {
                    packets.push((t + 5_000, f));
                }
            }
        }
        packets.sort_by_key(|(t, _)| *t);
        let mut recs: Vec<PcapRecord> = packets
            .iter()
            .map(|(t, p)| PcapRecord::new(*t, link.frame(p)))
            .collect();
        for i in 0..40 {
            let mut arp = vec![0xff; 12];
            arp.extend_from_slice(&[0x08, 0x06, 0, 1]);
            recs.insert(i * 150, PcapRecord::new(recs[i * 150].ts_us, arp));
        }
        let mut bytes = pcapgen::pcap_bytes(link.linktype(), 65535, &recs);
        // A record header cut short: libpcap reports the record as damaged.
        bytes.extend_from_slice(&[1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
        std::fs::write(path, bytes).unwrap();
    }

    fn read(path: &std::path::Path, ahead: bool, stop: bool) -> (VecSink, CaptureSummary) {
        let args = CaptureArgs {
            read_file: Some(path.to_str().unwrap().into()),
            ..CaptureArgs::default()
        };
        let mut sink = VecSink::default();
        let stop = AtomicBool::new(stop);
        let sum = run_with(
            open_capture(&args).unwrap(),
            &args,
            &mut sink,
            &stop,
            None,
            ahead,
        )
        .unwrap();
        (sink, sum)
    }

    #[test]
    fn reading_ahead_gives_exactly_what_reading_on_one_thread_gives() {
        let dir = e2e::bins::scratch("capture-pipe");
        let p = dir.join("blocks.pcap");
        capture(&p);
        let (one, one_sum) = read(&p, false, false);
        let (two, two_sum) = read(&p, true, false);
        // The file spans several blocks, and has every kind of record.
        assert!(
            two_sum.packets > 3 * super::BLOCK_RECORDS as u64,
            "{two_sum:?}"
        );
        assert!(two_sum.fragments_merged > 0, "{two_sum:?}");
        assert_eq!(two_sum.bad_checksum, 1, "{two_sum:?}");
        assert!(
            two_sum.dropped.contains(&("non_ip".into(), 40))
                && two_sum.dropped.contains(&("damaged_record".into(), 1)),
            "{two_sum:?}"
        );
        assert_eq!(two_sum.flows, 700 + 14, "{two_sum:?}");
        assert_eq!(format!("{one_sum:?}"), format!("{two_sum:?}"));
        assert_eq!(one.events.len(), two.events.len());
        for (a, b) in one.events.iter().zip(&two.events) {
            assert_eq!(a, b);
        }
        // The same file through a named pipe: `run` reads it on one thread (a pipe is never
        // read ahead) and must give the same again.
        let fifo = dir.join("blocks.fifo");
        let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        // SAFETY: a valid C string; mkfifo only creates the node.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        let bytes = std::fs::read(&p).unwrap();
        let writer = {
            let fifo = fifo.clone();
            std::thread::spawn(move || std::fs::write(fifo, bytes))
        };
        let args = CaptureArgs {
            read_file: Some(fifo.to_str().unwrap().into()),
            ..CaptureArgs::default()
        };
        let mut piped = VecSink::default();
        let piped_sum = crate::run(&args, &mut piped, &AtomicBool::new(false), None).unwrap();
        writer.join().unwrap().unwrap();
        assert_eq!(format!("{one_sum:?}"), format!("{piped_sum:?}"));
        assert!(piped.events == one.events);
        // Stopped before the first packet: nothing read, either way.
        let (stopped, sum) = read(&p, true, true);
        assert_eq!((sum.packets, stopped.events.len()), (0, 0), "{sum:?}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
