//! The counting: from O/S/C lines (or SQLite rows) to one aggregate per (src, prot, dport, dst)
//! as the log shows them, before any names are applied. Only connections still open and the
//! aggregates are kept, so memory follows the number of concurrent connections and distinct
//! rows, never the length of the log.

use std::collections::VecDeque;
use std::net::IpAddr;

use chrono::NaiveDate;
use shared::logfmt::{ConnLine, ParseError, MAX_VALUE};
use shared::record::{COMM, FOUND_AT_START, ORIG_IP_BYTES, RESP_IP_BYTES};
use shared::text::unescape_field;
use shared::EventKind;

/// Maps keyed by our own parsed values (addresses, ports, interned names), not by strings an
/// attacker chooses, so FxHash rather than SipHash's cost on every line.
pub type FxMap<K, V> = rustc_hash::FxHashMap<K, V>;

/// What the log shows as a source or destination: an address, or a local interface name
/// (interned, so keys stay `Copy` and reading allocates nothing per line).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Host {
    Ip(IpAddr),
    Name(u32),
}

/// Dotted-quad IPv4 without the general parser (the hot path: two addresses per line). `None`
/// for anything else, including leading zeros, which std's parser rejects too.
#[inline]
fn fast_ipv4(b: &[u8]) -> Option<std::net::Ipv4Addr> {
    if b.len() < 7 || b.len() > 15 {
        return None;
    }
    let mut octets = [0u8; 4];
    let mut i = 0;
    for (n, o) in octets.iter_mut().enumerate() {
        let start = i;
        let mut v: u32 = 0;
        while i < b.len() && b[i].is_ascii_digit() {
            v = v * 10 + (b[i] - b'0') as u32;
            i += 1;
        }
        let len = i - start;
        if len == 0 || len > 3 || v > 255 || (len > 1 && b[start] == b'0') {
            return None;
        }
        *o = v as u8;
        if n < 3 {
            if i >= b.len() || b[i] != b'.' {
                return None;
            }
            i += 1;
        }
    }
    (i == b.len()).then_some(std::net::Ipv4Addr::from(octets))
}

/// Interface (or other non-address) names seen in the log.
#[derive(Debug, Default)]
pub struct Interner {
    ids: FxMap<Box<str>, u32>,
    names: Vec<Box<str>>,
}

impl Interner {
    /// A source or destination as a database row holds it: the name as it is.
    pub fn host(&mut self, s: &str) -> Host {
        self.host_with(s, false)
    }

    /// A source or destination column of the line log, where a name is an escaped field
    /// (`\x1b`, `\x20`): interned as the name it stands for, so it matches the same name from a
    /// database and is escaped exactly once when shown.
    pub fn logged_host(&mut self, s: &str) -> Host {
        self.host_with(s, true)
    }

    fn host_with(&mut self, s: &str, logged: bool) -> Host {
        // Addresses start with a digit (IPv4, most IPv6) or contain ':' (IPv6); interface names
        // may start with a hex letter, so only a failed parse sends a string to the interner.
        let b = s.as_bytes();
        if let Some(a) = fast_ipv4(b) {
            return Host::Ip(IpAddr::V4(a));
        }
        if !b.is_empty() && (b[0].is_ascii_digit() || s.contains(':')) {
            if let Ok(a) = s.parse::<IpAddr>() {
                return Host::Ip(a);
            }
        }
        self.name_with(s, logged)
    }

    /// A name that is never an address (a process name): interned as it is, or unescaped
    /// first when it comes from the line log.
    pub fn name_with(&mut self, s: &str, logged: bool) -> Host {
        let s = if logged { unescape_field(s) } else { s.into() };
        if let Some(&id) = self.ids.get(s.as_ref()) {
            return Host::Name(id);
        }
        let id = self.names.len() as u32;
        self.names.push(s.as_ref().into());
        self.ids.insert(s.as_ref().into(), id);
        Host::Name(id)
    }

    pub fn name(&self, id: u32) -> &str {
        &self.names[id as usize]
    }
}

/// The anomaly keys constat counts, in report order: the log's own.
pub const ANOMALY_KEYS: [&str; 6] = shared::Anomalies::KEYS;

fn anomaly_bit(key: &str) -> Option<u8> {
    ANOMALY_KEYS
        .iter()
        .position(|k| *k == key)
        .map(|i| 1u8 << i)
}

/// What one report row adds up.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Row {
    /// Connections opened.
    pub n: u64,
    /// Of those, closed (the rest count as `nopn`).
    pub closed: u64,
    /// Closed ones whose C line had a time.
    pub timed: u64,
    /// Sums saturate: each value is at most [`MAX_VALUE`], so only garbage that passed that
    /// check can reach the ceiling, and a wider type would cost every row (of possibly
    /// hundreds of thousands) 16-byte alignment.
    pub sum_time: u64,
    pub max_time: Option<u64>,
    /// Connections with each anomaly (index as in [`ANOMALY_KEYS`]).
    pub anomalies: [u64; 6],
    /// IP bytes both ways, from the counters of C lines (when the logger had them).
    pub bytes: u64,
}

impl Row {
    pub fn nopn(&self) -> u64 {
        self.n - self.closed
    }

    pub fn merge(&mut self, o: &Row) {
        self.n += o.n;
        self.closed += o.closed;
        self.timed += o.timed;
        self.sum_time = self.sum_time.saturating_add(o.sum_time);
        self.max_time = self.max_time.max(o.max_time);
        for (a, b) in self.anomalies.iter_mut().zip(o.anomalies) {
            *a += b;
        }
        self.bytes = self.bytes.saturating_add(o.bytes);
    }

    /// Records a closed connection with its time (if known), anomaly bits and bytes.
    pub fn close(&mut self, time: Option<u64>, anomalies: u8, bytes: u64) {
        self.closed += 1;
        if let Some(t) = time {
            self.timed += 1;
            self.sum_time = self.sum_time.saturating_add(t);
            self.max_time = self.max_time.max(Some(t));
        }
        self.add_anomalies(anomalies);
        self.bytes = self.bytes.saturating_add(bytes);
    }

    pub fn add_anomalies(&mut self, bits: u8) {
        for (i, a) in self.anomalies.iter_mut().enumerate() {
            if bits & (1 << i) != 0 {
                *a += 1;
            }
        }
    }
}

/// A report row's key as the log shows it: (src, proto, dport, dst).
pub type RowKey = (Host, u8, Option<u16>, Host);

/// Identifies a connection in the log: protocol, both ends, both ports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct Tuple {
    proto: u8,
    src: Host,
    dst: Host,
    sport: Option<u16>,
    dport: Option<u16>,
}

/// An open connection: the row it counts toward (None when it opened outside the scanned
/// day) and the anomalies its S lines reported so far.
#[derive(Debug, Clone, Copy)]
struct Open {
    row: Option<u32>,
    anomalies: u8,
}

/// All open connections of one tuple, oldest first. Almost always exactly one, so the rest
/// live in a `VecDeque` that stays unallocated.
#[derive(Debug)]
struct Slot {
    first: Open,
    more: VecDeque<Open>,
}

/// The scan's state and result.
pub struct Scan {
    day: Option<NaiveDate>,
    pub interner: Interner,
    open: FxMap<Tuple, Slot>,
    index: FxMap<RowKey, u32>,
    pub rows: Vec<(RowKey, Row)>,
    /// Malformed lines (or undecodable database rows).
    pub errors: u64,
    /// C lines that matched no open O (the connection opened before the log started).
    pub unmatched_closes: u64,
    /// Events the logger said it lost or dropped (`P ... lost N events`, `P ... dropped N
    /// events (reason)`) in the scanned range; saturating.
    pub lost_events: u64,
    /// `--by proc`: one row per process (`comm`) instead of per (src, prot, dport, dst).
    pub by_proc: bool,
    /// Packets of `F` lines (or `packets` rows) on the scanned day.
    pub packets: crate::packets::Packets,
}

/// The row of connections no process was named for (`--by proc`): an address, so that no
/// process name can be mistaken for it.
pub const NO_PROCESS: Host = Host::Ip(IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED));

impl Scan {
    /// Counts connections opened on `day`, or all of them for `None` (`-a`).
    pub fn new(day: Option<NaiveDate>) -> Scan {
        Scan {
            day,
            interner: Interner::default(),
            open: FxMap::default(),
            index: FxMap::default(),
            rows: Vec::new(),
            errors: 0,
            unmatched_closes: 0,
            lost_events: 0,
            by_proc: false,
            packets: Default::default(),
        }
    }

    fn row_id(&mut self, key: RowKey) -> u32 {
        if let Some(&i) = self.index.get(&key) {
            return i;
        }
        let i = self.rows.len() as u32;
        self.rows.push((key, Row::default()));
        self.index.insert(key, i);
        i
    }

    /// The row key of a connection `--by proc`: its process name (`logged`: as the line log
    /// writes it, escaped), or [`NO_PROCESS`].
    pub fn proc_key(&mut self, comm: Option<&str>, logged: bool) -> RowKey {
        let p = comm.map_or(NO_PROCESS, |c| self.interner.name_with(c, logged));
        (p, 0, None, p)
    }

    /// The row of `key`, created if new, for direct updates (the SQLite path).
    pub fn row_mut(&mut self, key: RowKey) -> &mut Row {
        let i = self.row_id(key);
        &mut self.rows[i as usize].1
    }

    /// Feeds one P line: the logger's `lost N events [...]` and `dropped N events (reason)`
    /// messages on the scanned day count. A count beyond [`MAX_VALUE`] makes it a bad line
    /// (on any day, as every unreadable line).
    pub fn program(&mut self, date: NaiveDate, message: &str) -> Result<(), ParseError> {
        let mut w = message.split_ascii_whitespace();
        // `--nflog`: packets lost in the kernel or not loggable; counted apart from events.
        if let (Some("lost" | "dropped"), Some(n), Some("packets")) = (w.next(), w.next(), w.next())
        {
            if self.day.is_none_or(|d| d == date) {
                if let Ok(n) = n.parse::<u64>() {
                    self.packets.lost = self.packets.lost.saturating_add(n.min(MAX_VALUE));
                }
            }
            return Ok(());
        }
        let mut w = message.split_ascii_whitespace();
        let (Some(what @ ("lost" | "dropped")), Some(n), Some("events")) =
            (w.next(), w.next(), w.next())
        else {
            return Ok(());
        };
        // Any other text in that place is a message of another kind, not a count.
        if n.is_empty() || !n.bytes().all(|b| b.is_ascii_digit()) {
            return Ok(());
        }
        let n = n
            .parse::<u64>()
            .ok()
            .filter(|&v| v <= MAX_VALUE)
            .ok_or_else(|| ParseError {
                field: "message",
                reason: format!("{what} count {n} is out of range (at most {MAX_VALUE})"),
            })?;
        if self.day.is_none_or(|d| d == date) {
            self.lost_events = self.lost_events.saturating_add(n);
        }
        Ok(())
    }

    /// Feeds one `F` line: a packet the packet filter logged, counted on its day.
    pub fn packet(&mut self, p: &shared::logfmt::PacketLine<'_>) {
        if self.day.is_none_or(|d| d == p.ts.date()) {
            let prefix = p.prefix_text();
            self.packets
                .add(&prefix, p.action, p.src, p.proto, p.dport, 1);
        }
    }

    /// Feeds one O/S/C line; a value out of range makes it a bad line, which changes nothing.
    pub fn line(&mut self, c: &ConnLine<'_>) -> Result<(), ParseError> {
        let t = Tuple {
            proto: c.proto,
            src: self.interner.logged_host(c.src),
            dst: self.interner.logged_host(c.dst),
            sport: c.sport,
            dport: c.dport,
        };
        match c.kind {
            EventKind::Open => {
                // The logger found this connection open at its start: if we already track it
                // (the logger restarted while it was open), it is the same connection.
                if !c.extras.is_empty() && c.is_set(FOUND_AT_START) && self.open.contains_key(&t) {
                    return Ok(());
                }
                let row = match self.day {
                    Some(d) if c.ts.date() != d => None,
                    _ => {
                        let key = if self.by_proc {
                            self.proc_key(c.field(COMM), true)
                        } else {
                            (t.src, t.proto, t.dport, t.dst)
                        };
                        let id = self.row_id(key);
                        self.rows[id as usize].1.n += 1;
                        Some(id)
                    }
                };
                let o = Open { row, anomalies: 0 };
                match self.open.get_mut(&t) {
                    Some(slot) => slot.more.push_back(o),
                    None => {
                        self.open.insert(
                            t,
                            Slot {
                                first: o,
                                more: VecDeque::new(),
                            },
                        );
                    }
                }
            }
            EventKind::Update => {
                if c.extras.is_empty() {
                    return Ok(());
                }
                let bits = anomaly_bits(c);
                if bits != 0 {
                    if let Some(slot) = self.open.get_mut(&t) {
                        slot.first.anomalies |= bits;
                    }
                }
            }
            EventKind::Close => {
                // Pair with the earliest still-open O of the tuple: the C line's timestamp is
                // the last state change, not the close, so times cannot pair them.
                let Some(slot) = self.open.get_mut(&t) else {
                    self.unmatched_closes += 1;
                    return Ok(());
                };
                let o = slot.first;
                // Read before the open is taken, so a bad line leaves the connection open.
                let (bits, bytes) = match o.row {
                    Some(_) if !c.extras.is_empty() => extras(c)?,
                    _ => (0, 0),
                };
                if let Some(next) = slot.more.pop_front() {
                    slot.first = next;
                } else {
                    self.open.remove(&t);
                }
                if let Some(row) = o.row {
                    self.rows[row as usize]
                        .1
                        .close(c.time, o.anomalies | bits, bytes);
                }
            }
        }
        Ok(())
    }

    /// Ends the scan: anomalies seen on connections still open count too.
    pub fn finish(&mut self) {
        for slot in self.open.values() {
            for o in std::iter::once(&slot.first).chain(slot.more.iter()) {
                if let (Some(row), true) = (o.row, o.anomalies != 0) {
                    self.rows[row as usize].1.add_anomalies(o.anomalies);
                }
            }
        }
    }

    /// Connections still open at the end of the log (all days).
    pub fn open_count(&self) -> usize {
        self.open.values().map(|s| 1 + s.more.len()).sum()
    }
}

/// The anomaly bits of a line's `key=value` tokens (an S line: its bytes are not added up).
fn anomaly_bits(c: &ConnLine<'_>) -> u8 {
    let mut bits = 0u8;
    for (k, v) in c.extras() {
        if let Some(b) = anomaly_bit(k) {
            if v != "0" {
                bits |= b;
            }
        }
    }
    bits
}

/// The anomaly bits and the IP bytes (both directions) of a line's `key=value` tokens, in one
/// pass (this runs for every C line). A byte count that is not a number or out of range makes
/// the line bad rather than count as nothing.
fn extras(c: &ConnLine<'_>) -> Result<(u8, u64), ParseError> {
    const ORIG: &str = ORIG_IP_BYTES.log_key();
    const RESP: &str = RESP_IP_BYTES.log_key();
    let mut bits = 0u8;
    let mut bytes = 0u64;
    for (k, v) in c.extras() {
        match k {
            ORIG | RESP => {
                let n = v
                    .parse::<u64>()
                    .ok()
                    .filter(|&n| n <= MAX_VALUE)
                    .ok_or_else(|| ParseError {
                        field: if k == ORIG { ORIG } else { RESP },
                        reason: format!("not a byte count (0-{MAX_VALUE}): {v:?}"),
                    })?;
                bytes = bytes.saturating_add(n);
            }
            _ => {
                if let Some(b) = anomaly_bit(k) {
                    if v != "0" {
                        bits |= b;
                    }
                }
            }
        }
    }
    Ok((bits, bytes))
}

#[cfg(test)]
mod tests {
    use super::*;
    use shared::logfmt::{parse_line, LogLine};

    fn scan(day: Option<&str>, text: &str) -> Scan {
        let mut s = Scan::new(day.map(|d| d.parse().unwrap()));
        for l in text.lines() {
            match parse_line(l) {
                Ok(LogLine::Conn(c)) => {
                    if s.line(&c).is_err() {
                        s.errors += 1;
                    }
                }
                Ok(_) => {}
                Err(_) => s.errors += 1,
            }
        }
        s.finish();
        s
    }

    fn row<'a>(s: &'a Scan, src: &str, dport: u16) -> &'a Row {
        s.rows
            .iter()
            .find(|((h, _, p, _), _)| {
                *p == Some(dport)
                    && match h {
                        Host::Ip(a) => a.to_string() == src,
                        Host::Name(i) => s.interner.name(*i) == src,
                    }
            })
            .map(|(_, r)| r)
            .unwrap_or_else(|| panic!("no row {src} {dport}"))
    }

    #[test]
    fn close_pairs_with_earliest_open_and_day_filter() {
        let s = scan(
            Some("2004-08-05"),
            "\
O 2004-08-04-23:59:00 tcp 10.0.0.1 10.0.0.2 1000 22 e -
O 2004-08-05-10:00:00 tcp 10.0.0.1 10.0.0.2 1000 22 e -
C 2004-08-05-10:00:05 tcp 10.0.0.1 10.0.0.2 1000 22 t 100
C 2004-08-05-10:00:07 tcp 10.0.0.1 10.0.0.2 1000 22 t 7
O 2004-08-05-11:00:00 udp eth0 10.0.0.9 53 53 U -
O 2004-08-06-00:00:01 tcp 10.0.0.1 10.0.0.2 1001 22 e -
",
        );
        // The first C closes the day-before connection (not counted), the second today's.
        let r = row(&s, "10.0.0.1", 22);
        assert_eq!((r.n, r.closed, r.sum_time, r.max_time), (1, 1, 7, Some(7)));
        let r = row(&s, "eth0", 53);
        assert_eq!((r.n, r.nopn()), (1, 1));
        assert_eq!(s.rows.len(), 2, "the next day's open is not counted");
        assert_eq!(s.open_count(), 2);
    }

    #[test]
    fn found_at_start_is_not_counted_twice() {
        let s = scan(
            None,
            "\
O 2004-08-05-10:00:00 tcp 10.0.0.1 10.0.0.2 1000 22 e -
O 2004-08-05-10:05:00 tcp 10.0.0.1 10.0.0.2 1000 22 e - found=start
O 2004-08-05-10:05:00 tcp 10.0.0.1 10.0.0.2 1001 22 e - found=start
C 2004-08-05-10:06:00 tcp 10.0.0.1 10.0.0.2 1000 22 t 360
C 2004-08-05-10:06:00 tcp 10.0.0.1 10.0.0.2 1000 22 t 360
",
        );
        let r = row(&s, "10.0.0.1", 22);
        assert_eq!((r.n, r.closed, r.timed), (2, 1, 1));
        assert_eq!(s.unmatched_closes, 1);
        assert_eq!(r.nopn(), 1);
    }

    #[test]
    fn anomalies_and_bytes_are_counted_per_connection() {
        let s = scan(
            None,
            "\
O 2004-08-05-10:00:00 tcp 10.0.0.1 10.0.0.2 1000 80 e -
S 2004-08-05-10:00:01 tcp 10.0.0.1 10.0.0.2 1000 80 e 1 retrans=2
C 2004-08-05-10:00:02 tcp 10.0.0.1 10.0.0.2 1000 80 t 2 orig_ip_bytes=100 resp_ip_bytes=50 retrans=3 rst=1
O 2004-08-05-10:00:00 tcp 10.0.0.1 10.0.0.2 1001 80 e -
S 2004-08-05-10:00:01 tcp 10.0.0.1 10.0.0.2 1001 80 e 1 syn_retrans=1
O 2004-08-05-10:00:00 tcp 10.0.0.1 10.0.0.2 1002 80 e -
C 2004-08-05-10:00:02 tcp 10.0.0.1 10.0.0.2 1002 80 t - long_conn=0
",
        );
        let r = row(&s, "10.0.0.1", 80);
        assert_eq!(r.n, 3);
        assert_eq!(r.anomalies, [1, 1, 1, 0, 0, 0]);
        assert_eq!(r.bytes, 150);
        assert_eq!(
            (r.closed, r.timed),
            (2, 1),
            "a C without time is closed, untimed"
        );
    }

    #[test]
    fn fast_ipv4_agrees_with_std() {
        for s in [
            "1.2.3.4",
            "255.255.255.255",
            "0.0.0.0",
            "01.2.3.4",
            "1.2.3",
            "1.2.3.4.5",
            "256.1.1.1",
            "1..2.3",
            "1.2.3.4 ",
            "a.b.c.d",
            "1.2.3.04",
            "10.0.0.1x",
            "1000.1.1.1",
            "",
        ] {
            assert_eq!(
                fast_ipv4(s.as_bytes()),
                s.parse::<std::net::Ipv4Addr>().ok(),
                "{s:?}"
            );
        }
    }

    #[test]
    fn lost_events_of_the_day_are_counted() {
        let mut s = Scan::new(Some("2004-08-05".parse().unwrap()));
        let d = |x: &str| x.parse::<NaiveDate>().unwrap();
        for (day, m) in [
            ("2004-08-05", "lost 12 events"),
            ("2004-08-05", "lost 3 events (queue full)"),
            ("2004-08-06", "lost 100 events"),
            ("2004-08-05", "ipclog stopped, 0 errors"),
            ("2004-08-05", "lost many events"),
            ("2004-08-05", "dropped 20 events (database queue full)"),
            ("2004-08-06", "dropped 200 events (database queue full)"),
            (
                "2004-08-05",
                "lost 7 packets (NFLOG: the receive buffer was full)",
            ),
            (
                "2004-08-05",
                "dropped 2 packets (NFLOG messages that cannot be logged: x: 2)",
            ),
            (
                "2004-08-06",
                "lost 70 packets (NFLOG: the receive buffer was full)",
            ),
        ] {
            s.program(d(day), m).unwrap();
        }
        assert_eq!(s.lost_events, 35);
        assert_eq!(s.packets.lost, 9, "packets are counted apart, on their day");
        let e = s
            .program(d("2004-08-05"), "lost 18446744073709551615 events")
            .unwrap_err();
        assert!(e.to_string().contains("out of range"), "{e}");
        assert!(s
            .program(d("2004-08-06"), "dropped 99999999999999999999 events")
            .is_err());
        assert_eq!(s.lost_events, 35);
        for _ in 0..3 {
            s.program(d("2004-08-05"), &format!("lost {MAX_VALUE} events"))
                .unwrap();
        }
        assert_eq!(s.lost_events, u64::MAX, "saturates");
    }

    #[test]
    fn out_of_range_bytes_make_a_bad_line_that_leaves_the_connection_open() {
        let s = scan(
            None,
            "\
O 2004-08-05-10:00:00 tcp 10.0.0.1 10.0.0.2 1000 80 e -
C 2004-08-05-10:00:02 tcp 10.0.0.1 10.0.0.2 1000 80 t 2 orig_ip_bytes=18446744073709551615
O 2004-08-05-10:00:00 tcp 10.0.0.1 10.0.0.2 1001 80 e -
C 2004-08-05-10:00:02 tcp 10.0.0.1 10.0.0.2 1001 80 t 4 orig_ip_bytes=9223372036854775807 resp_ip_bytes=9223372036854775807
O 2004-08-05-10:00:00 tcp 10.0.0.1 10.0.0.2 1002 80 e -
C 2004-08-05-10:00:02 tcp 10.0.0.1 10.0.0.2 1002 80 t 9223372036854775807 orig_ip_bytes=9223372036854775807
",
        );
        assert_eq!(s.errors, 1);
        let r = row(&s, "10.0.0.1", 80);
        assert_eq!((r.n, r.closed, r.nopn()), (3, 2, 1));
        assert_eq!(r.bytes, u64::MAX, "saturates");
        assert_eq!(r.sum_time, MAX_VALUE + 4);
    }

    #[test]
    fn interner_tells_addresses_from_names() {
        let mut i = Interner::default();
        assert!(matches!(i.host("192.168.0.1"), Host::Ip(_)));
        assert!(matches!(i.host("fe80::1"), Host::Ip(_)));
        let a = i.host("eth0");
        let b = i.host("eth0");
        assert_eq!(a, b);
        assert!(matches!(i.host("1weird"), Host::Name(_)));
        let Host::Name(id) = a else { panic!() };
        assert_eq!(i.name(id), "eth0");
        // A log's escaped field is the same interface as a database's raw name.
        let raw = i.host("\u{1b}[7m x");
        assert_eq!(i.logged_host("\\x1b[7m\\x20x"), raw);
        assert_eq!(i.logged_host("10.0.0.1"), i.host("10.0.0.1"));
    }
}
