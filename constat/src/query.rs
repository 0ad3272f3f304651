//! `constat query`: the connections matching a host, port, protocol, state or anomaly over a
//! range of days, from the SQLite history (through its indexes, with parameterized SQL only)
//! or from line logs (read through, as the report reads them), printed as the log's lines,
//! CSV or JSON.

use std::collections::VecDeque;
use std::io::{self, Write};
use std::net::IpAddr;

use chrono::NaiveDate;
use clap::Parser;
use constat::cli::{QueryArgs, QueryFormat};
use rusqlite::types::Value as SqlValue;
use serde_json::json;
use shared::logfmt::{write_line, ConnLine, LineView, LogLine, LogReader, WriteOptions};
use shared::proto::proto_name;
use shared::text::{escaped, field, push_field};
use shared::EventKind;

use crate::formats::csv_cell;
use crate::input::{self, Failure};
use crate::scan::{FxMap, Matches, Target, ANOMALY_KEYS};

/// One connection found, as every format prints it.
#[derive(Debug, Default)]
struct Found {
    kind: Option<EventKind>,
    /// Local time, the log's format.
    time: String,
    open: String,
    close: String,
    proto: u8,
    /// As the log shows them: an address or an (escaped) interface name.
    src: String,
    dst: String,
    sport: Option<u16>,
    dport: Option<u16>,
    flag: char,
    duration: Option<u64>,
    uid: Option<String>,
    conn_state: Option<String>,
    orig_bytes: Option<u64>,
    resp_bytes: Option<u64>,
    anomalies: [u64; 6],
}

impl LineView for Found {
    fn kind(&self) -> EventKind {
        self.kind.unwrap_or(EventKind::Close)
    }
    fn push_time(&self, out: &mut String) {
        out.push_str(&self.time);
    }
    fn proto(&self) -> u8 {
        self.proto
    }
    fn push_src(&self, out: &mut String) {
        out.push_str(&self.src);
    }
    fn push_dst(&self, out: &mut String) {
        out.push_str(&self.dst);
    }
    fn sport(&self) -> Option<u16> {
        self.sport
    }
    fn dport(&self) -> Option<u16> {
        self.dport
    }
    fn flag(&self) -> char {
        self.flag
    }
    fn seconds(&self) -> Option<u64> {
        self.duration
    }
    fn push_extras(&self, _opts: WriteOptions, out: &mut String) {
        if let Some(u) = &self.uid {
            out.push_str(" uid=");
            push_field(u, out);
        }
        if let Some(c) = &self.conn_state {
            out.push_str(" conn_state=");
            push_field(c, out);
        }
        if let Some(b) = self.orig_bytes {
            out.push_str(&format!(" orig_ip_bytes={b}"));
        }
        if let Some(b) = self.resp_bytes {
            out.push_str(&format!(" resp_ip_bytes={b}"));
        }
        for (k, v) in ANOMALY_KEYS.iter().zip(self.anomalies) {
            if v > 0 {
                out.push_str(&format!(" {k}={v}"));
            }
        }
    }
}

/// The CSV and JSON fields of a connection (README documents each).
pub const QUERY_FIELDS: [&str; 21] = [
    "open",
    "close",
    "uid",
    "prot",
    "src",
    "sport",
    "dst",
    "dport",
    "flag",
    "conn_state",
    "duration",
    "orig_ip_bytes",
    "resp_ip_bytes",
    "retrans",
    "syn_retrans",
    "rst",
    "long_delay",
    "frag",
    "long_conn",
    "kind",
    "time",
];

struct Printer<W: Write> {
    out: W,
    format: QueryFormat,
    count: u64,
}

impl<W: Write> Printer<W> {
    fn print(&mut self, f: &Found) -> io::Result<()> {
        if self.count == 0 && self.format == QueryFormat::Csv {
            writeln!(self.out, "{}", QUERY_FIELDS.join(","))?;
        }
        self.count += 1;
        let opt = |v: Option<u64>| v.map_or(String::new(), |v| v.to_string());
        let port = |v: Option<u16>| v.map_or(String::new(), |v| v.to_string());
        let proto = proto_name(f.proto).map_or_else(|| f.proto.to_string(), str::to_string);
        let kind = f.kind.unwrap_or(EventKind::Close).letter().to_string();
        match self.format {
            QueryFormat::Text => {
                let mut line = String::new();
                write_line(f, WriteOptions::default(), &mut line);
                writeln!(self.out, "{line}")
            }
            QueryFormat::Csv => {
                let mut cells = vec![
                    f.open.clone(),
                    f.close.clone(),
                    csv_cell(f.uid.as_deref().map(field).as_deref().unwrap_or("")),
                    proto,
                    csv_cell(&f.src),
                    port(f.sport),
                    csv_cell(&f.dst),
                    port(f.dport),
                    csv_cell(&f.flag.to_string()),
                    csv_cell(f.conn_state.as_deref().map(field).as_deref().unwrap_or("")),
                    opt(f.duration),
                    opt(f.orig_bytes),
                    opt(f.resp_bytes),
                ];
                cells.extend(f.anomalies.iter().map(u64::to_string));
                cells.push(kind);
                cells.push(f.time.clone());
                writeln!(self.out, "{}", cells.join(","))
            }
            QueryFormat::Json => {
                let mut m = serde_json::Map::new();
                let s = |v: &str| if v.is_empty() { json!(null) } else { json!(v) };
                m.insert("open".into(), s(&f.open));
                m.insert("close".into(), s(&f.close));
                m.insert("uid".into(), json!(f.uid));
                m.insert("prot".into(), json!(proto));
                m.insert("src".into(), json!(f.src));
                m.insert("sport".into(), json!(f.sport));
                m.insert("dst".into(), json!(f.dst));
                m.insert("dport".into(), json!(f.dport));
                m.insert("flag".into(), json!(f.flag.to_string()));
                m.insert("conn_state".into(), json!(f.conn_state));
                m.insert("duration".into(), json!(f.duration));
                m.insert("orig_ip_bytes".into(), json!(f.orig_bytes));
                m.insert("resp_ip_bytes".into(), json!(f.resp_bytes));
                for (k, v) in ANOMALY_KEYS.iter().zip(f.anomalies) {
                    m.insert(k.to_string(), json!(v));
                }
                m.insert("kind".into(), json!(kind));
                m.insert("time".into(), json!(f.time));
                serde_json::to_writer(&mut self.out, &m).map_err(io::Error::other)?;
                writeln!(self.out)
            }
        }
    }
}

pub fn main(args: impl IntoIterator<Item = std::ffi::OsString>) -> Result<(), Failure> {
    let q = match QueryArgs::try_parse_from(args) {
        Ok(q) => q,
        Err(e) if e.use_stderr() => {
            let text: String = e
                .render()
                .to_string()
                .lines()
                .map(|l| format!("{}\n", escaped(l)))
                .collect();
            eprint!("{text}");
            return Err((2, String::new()));
        }
        Err(e) => e.exit(),
    };
    if let (Some(a), Some(b)) = (q.from, q.to) {
        if a > b {
            return Err((
                2,
                format!(
                    "--from {} is after --to {}",
                    a.format("%Y-%m-%d"),
                    b.format("%Y-%m-%d")
                ),
            ));
        }
    }
    let inputs = input::expand(&q.file)?;
    let stdout = io::stdout().lock();
    let mut p = Printer {
        out: io::BufWriter::with_capacity(64 * 1024, stdout),
        format: q.format,
        count: 0,
    };
    for i in &inputs {
        let is_db = !i.stdin && !i.pg && input::is_sqlite(&i.path);
        let res = if i.pg {
            // Copied into a private temporary SQLite history first: one query for both.
            let range = (q.from.is_some() || q.to.is_some()).then(|| {
                // Days compare as YYYY-MM-DD text: bounds of that form.
                let (first, last) = (
                    NaiveDate::from_ymd_opt(1970, 1, 1).expect("a date"),
                    NaiveDate::from_ymd_opt(9999, 12, 31).expect("a date"),
                );
                (q.from.unwrap_or(first), q.to.unwrap_or(last))
            });
            let url = i.path.to_string_lossy();
            crate::pg::temp_history(&url, q.host_name.as_deref(), range)
                .map_err(|m| (2, m))
                .and_then(|temp| query_db(&q, temp.path(), &mut p))
        } else if is_db {
            query_db(&q, &i.path, &mut p)
        } else {
            query_log(&q, i, &mut p)
        };
        res?;
    }
    match p.out.flush() {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => return Err((1, String::new())),
        Err(e) => return Err((1, format!("writing: {e}"))),
    }
    if p.count == 0 {
        return Err((3, String::new()));
    }
    Ok(())
}

fn write_err(e: io::Error) -> Failure {
    if e.kind() == io::ErrorKind::BrokenPipe {
        (1, String::new())
    } else {
        (1, format!("writing: {e}"))
    }
}

/// The WHERE clause and its parameters. Only values bound as parameters reach SQLite; the
/// text is made of fixed column names and placeholders.
pub fn where_clause(
    q_host: &[Target],
    port: &[u16],
    proto: &[u8],
    state: &[String],
    anomaly: &[String],
    from: Option<NaiveDate>,
    to: Option<NaiveDate>,
) -> (String, Vec<SqlValue>) {
    let mut conds: Vec<String> = Vec::new();
    let mut params: Vec<SqlValue> = Vec::new();
    let ph = |v: SqlValue, params: &mut Vec<SqlValue>| {
        params.push(v);
        format!("?{}", params.len())
    };
    // Exact addresses through the orig_h / resp_h indexes (SQLite's OR-by-union); networks
    // and interfaces are checked on the rows the other conditions select.
    let exact: Vec<IpAddr> = q_host
        .iter()
        .filter_map(|t| match t {
            Target::Net(c) if c.prefix() == if c.addr().is_ipv4() { 32 } else { 128 } => {
                Some(c.addr())
            }
            _ => None,
        })
        .collect();
    if !exact.is_empty() && exact.len() == q_host.len() {
        let mut ors = Vec::new();
        for a in exact {
            let s = a.to_string();
            let p1 = ph(SqlValue::Text(s.clone()), &mut params);
            ors.push(format!("orig_h = {p1}"));
            let p2 = ph(SqlValue::Text(s), &mut params);
            ors.push(format!("resp_h = {p2}"));
        }
        conds.push(format!("({})", ors.join(" OR ")));
    }
    // With an address, its indexes select a few rows out of months; the day index would
    // select a whole range of days. `+day` keeps SQLite from choosing the day index then.
    let day = if conds.is_empty() { "day" } else { "+day" };
    if let Some(f) = from {
        let p = ph(
            SqlValue::Text(f.format("%Y-%m-%d").to_string()),
            &mut params,
        );
        conds.push(format!("{day} >= {p}"));
    }
    if let Some(t) = to {
        let p = ph(
            SqlValue::Text(t.format("%Y-%m-%d").to_string()),
            &mut params,
        );
        conds.push(format!("{day} <= {p}"));
    }
    if !port.is_empty() {
        let l: Vec<String> = port
            .iter()
            .map(|p| ph(SqlValue::Integer((*p).into()), &mut params))
            .collect();
        conds.push(format!("dport IN ({})", l.join(", ")));
    }
    if !proto.is_empty() {
        let l: Vec<String> = proto
            .iter()
            .map(|p| ph(SqlValue::Integer((*p).into()), &mut params))
            .collect();
        conds.push(format!("proto IN ({})", l.join(", ")));
    }
    if !state.is_empty() {
        let mut ors = Vec::new();
        for s in state {
            let p1 = ph(SqlValue::Text(s.clone()), &mut params);
            ors.push(format!("conn_state = {p1}"));
            let p2 = ph(SqlValue::Text(s.clone()), &mut params);
            ors.push(format!("last_state = {p2}"));
        }
        conds.push(format!("({})", ors.join(" OR ")));
    }
    if !anomaly.is_empty() {
        // Column names from the fixed list only, never from the user's text.
        let ors: Vec<String> = anomaly
            .iter()
            .filter_map(|a| match a.as_str() {
                "refused" => Some("conn_state = 'REJ'".to_string()),
                "unanswered" => Some("conn_state = 'S0'".to_string()),
                k => ANOMALY_KEYS
                    .iter()
                    .find(|x| **x == k)
                    .map(|k| format!("{k} > 0")),
            })
            .collect();
        conds.push(format!("({})", ors.join(" OR ")));
    }
    let text = if conds.is_empty() {
        String::new()
    } else {
        format!(" WHERE {}", conds.join(" AND "))
    };
    (text, params)
}

const DB_COLUMNS: &str = "open_ts, close_ts, uid, proto, src, orig_p, dst, dport, flag, \
    conn_state, duration, orig_ip_bytes, resp_ip_bytes, retrans, syn_retrans, rst, long_delay, \
    frag, long_conn, orig_h, resp_h";

/// The statement `constat query` runs for these options (EXPLAIN QUERY PLAN in the tests).
pub fn db_sql(q_where: &str) -> String {
    format!("SELECT {DB_COLUMNS} FROM connections{q_where} ORDER BY open_ts, id")
}

fn query_db<W: Write>(
    q: &QueryArgs,
    path: &std::path::Path,
    p: &mut Printer<W>,
) -> Result<(), Failure> {
    let shown = escaped(&path.display().to_string()).into_owned();
    let conn = store::open_read_only(path).map_err(|e| (2, e.to_string()))?;
    // ipclog may be writing (WAL): wait for its short transactions instead of failing.
    let _ = conn.busy_timeout(std::time::Duration::from_secs(10));
    let (w, params) = where_clause(
        &q.host, &q.port, &q.proto, &q.state, &q.anomaly, q.from, q.to,
    );
    let sql = db_sql(&w);
    if q.explain {
        let mut plan = conn
            .prepare(&format!("EXPLAIN QUERY PLAN {sql}"))
            .map_err(|e| (1, format!("{shown}: cannot explain: {e}")))?;
        let mut rows = plan
            .query(rusqlite::params_from_iter(params))
            .map_err(|e| (1, format!("{shown}: cannot explain: {e}")))?;
        writeln!(p.out, "{sql}").map_err(write_err)?;
        while let Ok(Some(r)) = rows.next() {
            let detail: String = r.get(3).unwrap_or_default();
            writeln!(p.out, "{}", escaped(&detail)).map_err(write_err)?;
        }
        p.count += 1;
        return Ok(());
    }
    let mut stmt = conn
        .prepare(&sql)
        .map_err(|e| (1, format!("{shown}: cannot query connections: {e}")))?;
    let mut rows = stmt
        .query(rusqlite::params_from_iter(params))
        .map_err(|e| (1, format!("{shown}: cannot query connections: {e}")))?;
    let mut scratch = crate::scan::Interner::default();
    loop {
        let row = match rows.next() {
            Ok(Some(r)) => r,
            Ok(None) => break,
            Err(e) => return Err((1, format!("{shown}: reading connections: {e}"))),
        };
        let int = |i: usize| -> Option<i64> {
            match row.get_ref(i).ok()? {
                rusqlite::types::ValueRef::Integer(n) => Some(n),
                rusqlite::types::ValueRef::Real(f) if f.is_finite() => Some(f.round() as i64),
                _ => None,
            }
        };
        let text = |i: usize| -> Option<String> { row.get::<_, Option<String>>(i).ok().flatten() };
        let count = |i: usize| int(i).and_then(|n| u64::try_from(n).ok());
        let open = crate::db::local_time(row.get_ref(0).ok());
        let close = crate::db::local_time(row.get_ref(1).ok());
        let fmt = |t: Option<chrono::NaiveDateTime>| {
            t.map_or(String::new(), |t| t.format("%Y-%m-%d-%H:%M:%S").to_string())
        };
        let (Some(src), Some(dst), Some(proto)) =
            (text(4), text(6), int(3).and_then(|p| u8::try_from(p).ok()))
        else {
            if q.verbose {
                eprintln!("{shown}: a connections row without src, dst or proto");
            }
            continue;
        };
        if !q.host.is_empty() {
            let orig = text(19).unwrap_or_default();
            let resp = text(20).unwrap_or_default();
            let hosts = [
                scratch.host(&src),
                scratch.host(&dst),
                scratch.host(&orig),
                scratch.host(&resp),
            ];
            if !q
                .host
                .iter()
                .any(|t| hosts.iter().any(|h| t.matches(*h, &scratch)))
            {
                continue;
            }
        }
        let mut anomalies = [0u64; 6];
        for (i, a) in anomalies.iter_mut().enumerate() {
            *a = count(13 + i).unwrap_or(0);
        }
        let f = Found {
            kind: Some(if close.is_some() {
                EventKind::Close
            } else {
                EventKind::Open
            }),
            time: fmt(close.or(open)),
            open: fmt(open),
            close: fmt(close),
            proto,
            src: field(&src).into_owned(),
            dst: field(&dst).into_owned(),
            sport: int(5).and_then(|p| u16::try_from(p).ok()),
            dport: int(7).and_then(|p| u16::try_from(p).ok()),
            flag: text(8)
                .and_then(|f| f.chars().next())
                .filter(|c| c.is_ascii_graphic())
                .unwrap_or('-'),
            duration: count(10),
            uid: text(2),
            conn_state: text(9),
            orig_bytes: count(11),
            resp_bytes: count(12),
            anomalies,
        };
        p.print(&f).map_err(write_err)?;
    }
    Ok(())
}

/// Whether a log line's connection matches (the host, port, proto, state and anomaly options;
/// the day is checked by the caller).
fn line_matches(q: &QueryArgs, c: &ConnLine<'_>, interner: &mut crate::scan::Interner) -> bool {
    if !q.port.is_empty() && !c.dport.is_some_and(|p| q.port.contains(&p)) {
        return false;
    }
    if !q.proto.is_empty() && !q.proto.contains(&c.proto) {
        return false;
    }
    if !q.host.is_empty() {
        let (s, d) = (interner.logged_host(c.src), interner.logged_host(c.dst));
        if !q
            .host
            .iter()
            .any(|t| t.matches(s, interner) || t.matches(d, interner))
        {
            return false;
        }
    }
    let state = c.extra("conn_state");
    if !q.state.is_empty() && !q.state.iter().any(|s| Some(s.as_str()) == state) {
        return false;
    }
    if !q.anomaly.is_empty() {
        let hit = q.anomaly.iter().any(|a| match a.as_str() {
            "refused" => state == Some("REJ"),
            "unanswered" => state == Some("S0"),
            k => c.extra(k).is_some_and(|v| v != "0"),
        });
        if !hit {
            return false;
        }
    }
    true
}

fn query_log<W: Write>(q: &QueryArgs, i: &input::Input, p: &mut Printer<W>) -> Result<(), Failure> {
    let shown = i.shown();
    let (reader, codec, consumed) = input::open_text(i)?;
    let mut log = LogReader::new(reader);
    let mut interner = crate::scan::Interner::default();
    // O lines of connections not yet closed, by tuple, oldest first: printed at the end.
    type Key = (u8, String, String, Option<u16>, Option<u16>);
    let mut open: FxMap<Key, VecDeque<String>> = FxMap::default();
    let in_days = |d: NaiveDate| q.from.is_none_or(|f| f <= d) && q.to.is_none_or(|t| d <= t);
    let mut last = 0;
    loop {
        let next = log.next_line().map_err(|e| {
            (
                1,
                input::read_error(&shown, codec, last, consumed.get(), &e),
            )
        })?;
        let Some((line_no, parsed)) = next else { break };
        last = line_no;
        let c = match parsed {
            Ok(LogLine::Conn(c)) => c,
            Ok(_) => continue,
            Err(e) => {
                if q.verbose {
                    eprintln!("{shown}:{line_no}: {}", escaped(&e.to_string()));
                }
                continue;
            }
        };
        let key: Key = (
            c.proto,
            c.src.to_string(),
            c.dst.to_string(),
            c.sport,
            c.dport,
        );
        match c.kind {
            EventKind::Open => {
                let mut line = String::new();
                if in_days(c.ts.date()) && line_matches(q, &c, &mut interner) {
                    write_line(&c, WriteOptions::default(), &mut line);
                }
                open.entry(key).or_default().push_back(line);
            }
            EventKind::Update => {}
            EventKind::Close => {
                if let Some(v) = open.get_mut(&key) {
                    v.pop_front();
                    if v.is_empty() {
                        open.remove(&key);
                    }
                }
                if in_days(c.ts.date()) && line_matches(q, &c, &mut interner) {
                    print_line(p, &c)?;
                }
            }
        }
    }
    let mut rest: Vec<String> = open
        .into_values()
        .flatten()
        .filter(|l| !l.is_empty())
        .collect();
    rest.sort_by(|a, b| a[2..21].cmp(&b[2..21]));
    for l in rest {
        let Ok(LogLine::Conn(c)) = shared::logfmt::parse_line(&l) else {
            continue;
        };
        print_line(p, &c)?;
    }
    Ok(())
}

fn print_line<W: Write>(p: &mut Printer<W>, c: &ConnLine<'_>) -> Result<(), Failure> {
    let num = |k: &str| c.extra(k).and_then(|v| v.parse::<u64>().ok());
    let mut anomalies = [0u64; 6];
    for (i, k) in ANOMALY_KEYS.iter().enumerate() {
        anomalies[i] = num(k).unwrap_or(0);
    }
    let time = c.ts.format("%Y-%m-%d-%H:%M:%S").to_string();
    let f = Found {
        kind: Some(c.kind),
        time: time.clone(),
        open: if c.kind == EventKind::Open {
            time.clone()
        } else {
            String::new()
        },
        close: if c.kind == EventKind::Close {
            time
        } else {
            String::new()
        },
        proto: c.proto,
        src: escaped(c.src).into_owned(),
        dst: escaped(c.dst).into_owned(),
        sport: c.sport,
        dport: c.dport,
        flag: c.flag,
        duration: c.time,
        uid: c
            .extra("uid")
            .map(|u| shared::text::unescape_field(u).into_owned()),
        conn_state: c.extra("conn_state").map(str::to_string),
        orig_bytes: num("orig_ip_bytes"),
        resp_bytes: num("resp_ip_bytes"),
        anomalies,
    };
    if p.format == QueryFormat::Text {
        // The line as it was logged, extras included.
        p.count += 1;
        let mut line = String::new();
        write_line(c, WriteOptions::default(), &mut line);
        return writeln!(p.out, "{}", escaped(&line)).map_err(write_err);
    }
    p.print(&f).map_err(write_err)
}
