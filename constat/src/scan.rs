//! The counting: from O/S/C lines (or SQLite rows) to one aggregate per (src, prot, dport, dst)
//! as the log shows them, before any names are applied. Only connections still open and the
//! aggregates are kept, so memory follows the number of concurrent connections and distinct
//! rows, never the length of the log.

use std::collections::VecDeque;
use std::net::IpAddr;

use chrono::{NaiveDate, NaiveDateTime, Timelike};
use shared::logfmt::{ConnLine, ParseError, MAX_VALUE};
use shared::record::{COMM, FOUND_AT_START, ORIG_IP_BYTES, RESP_IP_BYTES, UID};
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
    /// Of those, the bytes the originator sent (the rest it received).
    pub orig_bytes: u64,
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
        self.orig_bytes = self.orig_bytes.saturating_add(o.orig_bytes);
    }

    /// The bytes the responder sent.
    pub fn resp_bytes(&self) -> u64 {
        self.bytes.saturating_sub(self.orig_bytes)
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
    /// The hour it opened (for the per-hour counts).
    hour: u8,
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
    /// The days counted, first and last inclusive; `None`: all (`-a`).
    range: Option<(NaiveDate, NaiveDate)>,
    /// `--host`, `--port`, ...: connections that do not match are not counted.
    pub filter: Filter,
    /// The logger's own health on the scanned days (P lines, the runs table).
    pub health: Health,
    /// Per hour of the day (local time, all scanned days added up): connections opened, IP
    /// bytes of those closed, anomalous connections.
    pub hours: [Hourly; 24],
    /// The anomalous connections of each kind: how many, and the worst few.
    pub notables: Notables,
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
    #[cfg(test)]
    pub fn new(day: Option<NaiveDate>) -> Scan {
        Scan::range(day.map(|d| (d, d)))
    }

    /// Counts connections opened from the first to the last day of `range` (inclusive).
    pub fn range(range: Option<(NaiveDate, NaiveDate)>) -> Scan {
        Scan {
            range,
            filter: Filter::default(),
            health: Health::default(),
            hours: [Hourly::default(); 24],
            notables: Notables::default(),
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
        if self.in_range(date) {
            self.health.message(message);
        }
        let mut w = message.split_ascii_whitespace();
        // `--nflog`: packets lost in the kernel or not loggable; counted apart from events.
        if let (Some("lost" | "dropped"), Some(n), Some("packets")) = (w.next(), w.next(), w.next())
        {
            if self.in_range(date) {
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
        if self.in_range(date) {
            self.lost_events = self.lost_events.saturating_add(n);
        }
        Ok(())
    }

    /// Feeds one `F` line: a packet the packet filter logged, counted on its day.
    pub fn packet(&mut self, p: &shared::logfmt::PacketLine<'_>) {
        if self.in_range(p.ts.date()) {
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
                let counted = self.in_range(c.ts.date())
                    && self
                        .filter
                        .accepts(t.src, t.dst, t.proto, t.dport, &self.interner);
                let row = match counted {
                    false => None,
                    true => {
                        self.hours[hour(c.ts)].conns += 1;
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
                let o = Open {
                    row,
                    anomalies: 0,
                    hour: hour(c.ts) as u8,
                };
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
                let (bits, bytes, orig, notable_state) = match o.row {
                    Some(_) if !c.extras.is_empty() => extras(c)?,
                    _ => (0, 0, 0, false),
                };
                if let Some(next) = slot.more.pop_front() {
                    slot.first = next;
                } else {
                    self.open.remove(&t);
                }
                if let Some(row) = o.row {
                    // The worst-connection scores need a second look at the tokens: only for
                    // the few lines that have an anomaly or a refused/unanswered state.
                    if bits != 0 || notable_state {
                        let scores = notable_scores(c);
                        if scores.iter().any(|&s| s > 0) {
                            let key = (t.src, t.proto, t.dport, t.dst);
                            let uid = c.field(UID).map(|u| unescape_field(u).into());
                            self.note(scores, c.ts, uid, key, t.sport);
                        }
                    }
                    let r = &mut self.rows[row as usize].1;
                    r.close(c.time, o.anomalies | bits, bytes);
                    r.orig_bytes = r.orig_bytes.saturating_add(orig);
                    let h = &mut self.hours[o.hour as usize];
                    h.bytes = h.bytes.saturating_add(bytes);
                    if o.anomalies | bits != 0 || notable_state {
                        h.anomalous += 1;
                    }
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
                    self.hours[o.hour as usize].anomalous += 1;
                }
            }
        }
    }

    /// Counts one connection toward the kinds it scored in (> 0), keeping the worst few of
    /// each: the highest scores, the earliest first among equals.
    pub fn note(
        &mut self,
        scores: [u64; 6],
        ts: NaiveDateTime,
        uid: Option<Box<str>>,
        key: RowKey,
        sport: Option<u16>,
    ) {
        for (k, &score) in scores.iter().enumerate() {
            if score == 0 {
                continue;
            }
            self.notables.count[k] += 1;
            let w = &mut self.notables.worst[k];
            if w.len() == WORST && w.last().is_some_and(|l| l.score >= score) {
                continue;
            }
            let at = w.partition_point(|n| n.score >= score);
            w.insert(
                at,
                Notable {
                    score,
                    ts,
                    uid: uid.clone(),
                    key,
                    sport,
                },
            );
            w.truncate(WORST);
        }
    }

    /// Whether connections opened on `date` are counted.
    pub fn in_range(&self, date: NaiveDate) -> bool {
        self.range
            .is_none_or(|(from, to)| from <= date && date <= to)
    }

    /// Counts one connection of the history opened at `ts` (local time) toward the hours.
    pub fn count_hour(&mut self, ts: NaiveDateTime, bytes: u64, anomalous: bool) {
        let h = &mut self.hours[hour(ts)];
        h.conns += 1;
        h.bytes = h.bytes.saturating_add(bytes);
        if anomalous {
            h.anomalous += 1;
        }
    }

    /// Connections still open at the end of the log (all days).
    pub fn open_count(&self) -> usize {
        self.open.values().map(|s| 1 + s.more.len()).sum()
    }
}

/// The kinds of trouble the anomalies section lists, in report order. Their scores
/// ([`notable_scores`]): refused and unanswered 1 (conn_state REJ; S0, or SYNs sent again);
/// reset the resets, retransmitting the retransmitted segments, long the seconds (long_conn)
/// or the long gaps (long_delay), fragmented the fragments.
pub const NOTABLE_KINDS: [&str; 6] = [
    "refused",
    "reset",
    "unanswered",
    "retransmitting",
    "long",
    "fragmented",
];

/// How many connections of each kind the report lists.
pub const WORST: usize = 5;

/// One anomalous connection, to be found again in the log (its time and uid) and with
/// `ipclog --sessions`.
#[derive(Debug, Clone)]
pub struct Notable {
    pub score: u64,
    /// When its close (its last state) was logged; from the history, its open.
    pub ts: NaiveDateTime,
    pub uid: Option<Box<str>>,
    pub key: RowKey,
    pub sport: Option<u16>,
}

#[derive(Debug, Default)]
pub struct Notables {
    pub count: [u64; 6],
    pub worst: [Vec<Notable>; 6],
}

/// A closed connection's scores per [`NOTABLE_KINDS`] from its C line's tokens.
fn notable_scores(c: &ConnLine<'_>) -> [u64; 6] {
    let mut s = [0u64; 6];
    let num = |v: &str| v.parse::<u64>().unwrap_or(0).min(MAX_VALUE);
    for (k, v) in c.extras() {
        match k {
            "conn_state" if v == "REJ" => s[0] = 1,
            "conn_state" if v == "S0" => s[2] = s[2].max(1),
            "rst" => s[1] = num(v),
            "syn_retrans" if num(v) > 0 => s[2] = s[2].max(num(v)),
            "retrans" => s[3] = num(v),
            "long_conn" if num(v) > 0 => s[4] = s[4].max(c.time.unwrap_or(1).max(1)),
            "long_delay" => s[4] = s[4].max(num(v)),
            "frag" => s[5] = num(v),
            _ => {}
        }
    }
    s
}

/// The same scores from the history's columns.
pub fn notable_scores_of(
    conn_state: Option<&str>,
    anomalies: &[u64; 6],
    duration: Option<u64>,
) -> [u64; 6] {
    // ANOMALY_KEYS: retrans, syn_retrans, rst, long_delay, frag, long_conn.
    let [retrans, syn_retrans, rst, long_delay, frag, long_conn] = *anomalies;
    let mut s = [0u64; 6];
    if conn_state == Some("REJ") {
        s[0] = 1;
    }
    s[1] = rst;
    if conn_state == Some("S0") || syn_retrans > 0 {
        s[2] = syn_retrans.max(1);
    }
    s[3] = retrans;
    if long_conn > 0 {
        s[4] = duration.unwrap_or(1).max(1);
    }
    s[4] = s[4].max(long_delay);
    s[5] = frag;
    s
}

fn hour(ts: NaiveDateTime) -> usize {
    ts.hour() as usize % 24
}

/// One hour's counts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Hourly {
    pub conns: u64,
    pub bytes: u64,
    pub anomalous: u64,
}

/// What the logger said about itself on the scanned days.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Health {
    /// `ipclog started` (a P line, a runs row).
    pub starts: u64,
    /// `ipclog stopped` lines.
    pub stops: u64,
    /// The errors the stop lines (or the runs) counted.
    pub errors: u64,
    /// `lost N events` / `dropped N events` messages.
    pub loss_reports: u64,
}

impl Health {
    fn message(&mut self, m: &str) {
        if m.starts_with("ipclog started") {
            self.starts += 1;
        } else if let Some(rest) = m.strip_prefix("ipclog stopped") {
            self.stops += 1;
            // `ipclog stopped, N errors`
            let n = rest
                .trim_start_matches(',')
                .split_ascii_whitespace()
                .next()
                .and_then(|n| n.parse::<u64>().ok())
                .unwrap_or(0);
            self.errors = self.errors.saturating_add(n);
        } else if m.starts_with("lost ") || m.starts_with("dropped ") {
            self.loss_reports += 1;
        }
    }

    /// Starts after the first: the logger was restarted (or crashed and was started again).
    pub fn restarts(&self) -> u64 {
        self.starts.saturating_sub(1)
    }

    /// Whether anything went wrong worth a section of the report.
    pub fn has_trouble(&self, lost: u64) -> bool {
        self.restarts() > 0 || self.errors > 0 || lost > 0 || self.starts > self.stops + 1
    }
}

pub use constat::cli::Target;

/// Whether a `--host`/`--src`/`--dst` value matches a host of the log.
pub trait Matches {
    fn matches(&self, h: Host, interner: &Interner) -> bool;
}

impl Matches for Target {
    fn matches(&self, h: Host, interner: &Interner) -> bool {
        match (self, h) {
            (Target::Net(c), Host::Ip(a)) => c.contains(a),
            (Target::Name(n), Host::Name(id)) => interner.name(id) == n,
            _ => false,
        }
    }
}

/// Which connections count: each list empty (anything) or one of its values; all lists.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    /// Either end.
    pub host: Vec<Target>,
    pub src: Vec<Target>,
    pub dst: Vec<Target>,
    /// Destination port.
    pub port: Vec<u16>,
    pub proto: Vec<u8>,
}

impl Filter {
    pub fn accepts(
        &self,
        src: Host,
        dst: Host,
        proto: u8,
        dport: Option<u16>,
        interner: &Interner,
    ) -> bool {
        let any = |l: &[Target], h: Host| l.is_empty() || l.iter().any(|t| t.matches(h, interner));
        (self.proto.is_empty() || self.proto.contains(&proto))
            && (self.port.is_empty() || dport.is_some_and(|p| self.port.contains(&p)))
            && any(&self.src, src)
            && any(&self.dst, dst)
            && (self.host.is_empty()
                || self
                    .host
                    .iter()
                    .any(|t| t.matches(src, interner) || t.matches(dst, interner)))
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

/// The anomaly bits, the IP bytes (both directions) and those the originator sent, of a
/// line's `key=value` tokens, in one pass (this runs for every C line). A byte count that is
/// not a number or out of range makes the line bad rather than count as nothing.
/// The last value says whether the connection ended refused or unanswered (`conn_state` REJ
/// or S0), which [`notable_scores`] counts.
fn extras(c: &ConnLine<'_>) -> Result<(u8, u64, u64, bool), ParseError> {
    const ORIG: &str = ORIG_IP_BYTES.log_key();
    const RESP: &str = RESP_IP_BYTES.log_key();
    let mut bits = 0u8;
    let mut bytes = 0u64;
    let mut orig = 0u64;
    let mut state = false;
    for (k, v) in c.extras() {
        match k {
            "conn_state" => state = matches!(v, "REJ" | "S0"),
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
                if k == ORIG {
                    orig = n;
                }
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
    Ok((bits, bytes, orig, state))
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
