//! From counted rows to the printed report: names replace addresses and ports, unnamed web
//! servers fold into `any`, rows that now show the same strings merge, and the table is laid
//! out in the original's columns.
//!
//! Every name shown comes from outside (the lookup file, the name cache, /etc/services, an
//! interface name in the log or the database), so each is made a field
//! ([`shared::text::field`]) before it is laid out: a control or bidi character cannot reach
//! the terminal, a space cannot shift the columns, and the widths count what is printed.

use std::collections::HashMap;
use std::io::{self, Write};
use std::net::IpAddr;

use lookup::{Lookup, NameCache, Services};
use shared::proto::{proto_name, TCP, UDP};
use shared::text::field;

use crate::scan::{FxMap, Host, Interner, Row, RowKey, ANOMALY_KEYS};

/// How names are chosen.
pub struct Namer<'a> {
    pub lookup: &'a Lookup,
    pub services: &'a Services,
    /// Reverse-DNS names; shown with a trailing `?` so they do not pass for the user's names.
    pub cache: Option<&'a NameCache>,
    /// `-n`: addresses and port numbers as they are.
    pub numeric: bool,
    /// `-noany`: do not fold unnamed http/https destinations into `any`.
    pub no_any: bool,
}

/// Ports whose unnamed destinations fold into `any`: web browsing reaches many servers, and a
/// row per server would drown the rest of the report.
fn is_web(proto: u8, dport: Option<u16>) -> bool {
    matches!(proto, TCP | UDP) && matches!(dport, Some(80 | 443))
}

impl Namer<'_> {
    fn host(&self, h: Host, interner: &Interner) -> String {
        match h {
            Host::Name(id) => field(interner.name(id)).into_owned(),
            Host::Ip(a) => self.addr(a),
        }
    }

    pub(crate) fn addr(&self, a: IpAddr) -> String {
        if self.numeric {
            return a.to_string();
        }
        if let Some(n) = self.lookup.host_name(a) {
            return field(n).into_owned();
        }
        if let Some(n) = self.cache.and_then(|c| c.get(a)) {
            return format!("{}?", field(n));
        }
        a.to_string()
    }

    /// Whether the row's destination folds into `any`.
    fn is_any(&self, key: &RowKey) -> bool {
        let (_, proto, dport, dst) = *key;
        match dst {
            Host::Ip(a) => {
                !self.no_any && is_web(proto, dport) && self.lookup.host_name(a).is_none()
            }
            Host::Name(_) => false,
        }
    }

    pub(crate) fn port(&self, proto: u8, dport: Option<u16>) -> String {
        match dport {
            None => "-".to_string(),
            Some(p) if self.numeric => p.to_string(),
            Some(p) => self
                .lookup
                .service_name(self.services, p, proto)
                .map(|n| field(n).into_owned())
                .unwrap_or_else(|| p.to_string()),
        }
    }

    /// The displayed (src, prot, dport, dst) strings of every row, rows that show the same
    /// strings merged, sorted as displayed. Each distinct string is made once and rows refer
    /// to it by index, so a report of many rows costs little more than the rows themselves.
    pub fn named_rows(&self, rows: &[(RowKey, Row)], interner: &Interner) -> NamedRows {
        let mut strings = Strings::default();
        let mut hosts: FxMap<Host, u32> = FxMap::default();
        let any = strings.id("any".to_string());
        let mut ports: FxMap<(u8, Option<u16>), u32> = FxMap::default();
        let mut protos: FxMap<u8, u32> = FxMap::default();
        let mut merged: FxMap<[u32; 4], usize> = FxMap::default();
        let mut out: Vec<([u32; 4], Row)> = Vec::new();
        for (key, row) in rows {
            if row.n == 0 {
                continue;
            }
            let (src, proto, dport, dst) = *key;
            let k = [
                *hosts
                    .entry(src)
                    .or_insert_with(|| strings.id(self.host(src, interner))),
                *protos.entry(proto).or_insert_with(|| {
                    strings.id(proto_name(proto)
                        .map(str::to_string)
                        .unwrap_or_else(|| proto.to_string()))
                }),
                *ports
                    .entry((proto, dport))
                    .or_insert_with(|| strings.id(self.port(proto, dport))),
                if self.is_any(key) {
                    any
                } else {
                    *hosts
                        .entry(dst)
                        .or_insert_with(|| strings.id(self.host(dst, interner)))
                },
            ];
            match merged.get(&k) {
                Some(&i) => out[i].1.merge(row),
                None => {
                    merged.insert(k, out.len());
                    out.push((k, *row));
                }
            }
        }
        let s = &strings.list;
        out.sort_unstable_by(|(a, _), (b, _)| {
            a.iter()
                .map(|&i| s[i as usize].as_str())
                .cmp(b.iter().map(|&i| s[i as usize].as_str()))
        });
        NamedRows {
            strings: strings.list,
            rows: out,
        }
    }
}

/// Distinct display strings; equal strings get the same id, so rows that read the same merge.
#[derive(Default)]
struct Strings {
    ids: HashMap<String, u32>,
    list: Vec<String>,
}

impl Strings {
    fn id(&mut self, s: String) -> u32 {
        if let Some(&i) = self.ids.get(&s) {
            return i;
        }
        let i = self.list.len() as u32;
        self.list.push(s.clone());
        self.ids.insert(s, i);
        i
    }
}

/// The report's rows with their displayed strings, in display order.
pub struct NamedRows {
    strings: Vec<String>,
    rows: Vec<([u32; 4], Row)>,
}

impl NamedRows {
    pub fn get(&self, i: usize) -> ([&str; 4], &Row) {
        let (k, r) = &self.rows[i];
        (k.map(|i| self.strings[i as usize].as_str()), r)
    }

    /// The rows' order in the table: by name, or (`--bytes`) most bytes first.
    pub fn display_order(&self, by_bytes: bool) -> Vec<usize> {
        let mut order: Vec<usize> = (0..self.rows.len()).collect();
        if by_bytes {
            // Stable: equal byte counts stay in name order.
            order.sort_by(|&a, &b| self.rows[b].1.bytes.cmp(&self.rows[a].1.bytes));
        }
        order
    }

    /// All rows added up.
    pub fn total(&self) -> Row {
        let mut t = Row::default();
        for (_, r) in &self.rows {
            t.merge(r);
        }
        t
    }

    pub fn iter(&self) -> impl Iterator<Item = ([&str; 4], &Row)> {
        self.rows
            .iter()
            .map(|(k, r)| (k.map(|i| self.strings[i as usize].as_str()), r))
    }
}

/// What is printed around the table.
pub struct Layout {
    /// `scanning for date 2004-08-05` / `scanning whole file`.
    pub heading: String,
    /// Add a `bytes` column.
    pub bytes: bool,
    /// Print the table (`--sections` without `table`: only the heading and the rest).
    pub table: bool,
    /// Print the per-row anomaly counts.
    pub anomalies: bool,
}

/// The original's column widths (75 columns in all); a wider name or number widens its
/// column for the whole table instead of shifting the rest of its row.
const WIDTHS: [usize; 9] = [15, 4, 8, 15, 5, 5, 8, 8, 14];

fn table_line(
    out: &mut impl Write,
    w: &[usize; 9],
    c: [&str; 8],
    bytes: Option<&str>,
) -> io::Result<()> {
    write!(
        out,
        "{:<w0$} {:<w1$} {:<w2$} {:<w3$} {:>w4$} {:>w5$} {:>w6$} {:>w7$}",
        c[0],
        c[1],
        c[2],
        c[3],
        c[4],
        c[5],
        c[6],
        c[7],
        w0 = w[0],
        w1 = w[1],
        w2 = w[2],
        w3 = w[3],
        w4 = w[4],
        w5 = w[5],
        w6 = w[6],
        w7 = w[7],
    )?;
    if let Some(b) = bytes {
        write!(out, " {b:>w8$}", w8 = w[8])?;
    }
    out.write_all(b"\n")
}

/// n, nopn, avgtm, maxtm of [`numbers`] into reused buffers (the table's hot loop).
fn fill_numbers(r: &Row, out: &mut [String; 4]) {
    use std::fmt::Write as _;
    for s in out.iter_mut() {
        s.clear();
    }
    let _ = write!(out[0], "{}", r.n);
    let _ = write!(out[1], "{}", r.nopn());
    match (r.timed, r.max_time) {
        (0, _) | (_, None) => {
            out[2].push('-');
            out[3].push('-');
        }
        (t, Some(m)) => {
            let _ = write!(out[2], "{:.1}", r.sum_time as f64 / t as f64);
            let _ = write!(out[3], "{m}");
        }
    }
}

/// A row's numbers as the table shows them: n, nopn, avgtm, maxtm, bytes.
pub fn numbers(r: &Row) -> [String; 5] {
    let (avg, max) = match (r.timed, r.max_time) {
        (0, _) | (_, None) => ("-".to_string(), "-".to_string()),
        (t, Some(m)) => (
            format!("{:.1}", r.sum_time as f64 / t as f64),
            m.to_string(),
        ),
    };
    [
        r.n.to_string(),
        r.nopn().to_string(),
        avg,
        max,
        r.bytes.to_string(),
    ]
}

/// Writes the report.
#[cfg(test)]
pub fn report(
    out: &mut impl Write,
    layout: &Layout,
    rows: &NamedRows,
    lost: u64,
    errors: u64,
    packets: impl FnOnce(&mut dyn Write) -> io::Result<()>,
) -> io::Result<()> {
    let mut packets = Some(packets);
    report_with(
        out,
        layout,
        rows,
        lost,
        errors,
        &mut |o| match packets.take() {
            Some(p) => p(o),
            None => Ok(()),
        },
    )
}

/// Writes the report, with `sections` (given the output) after the table and the anomalies
/// and before the ERRORS line.
pub fn report_with<W: Write>(
    out: &mut W,
    layout: &Layout,
    rows: &NamedRows,
    lost: u64,
    errors: u64,
    sections: &mut dyn FnMut(&mut W) -> io::Result<()>,
) -> io::Result<()> {
    writeln!(out, "{}", layout.heading)?;
    if layout.table {
        let order = rows.display_order(layout.bytes);
        // First the widths (without formatting every number: a day may have 100k rows),
        // then the lines.
        let mut w = WIDTHS;
        let mut buf = String::new();
        for &i in &order {
            let (k, r) = rows.get(i);
            for (i, s) in k.iter().enumerate() {
                w[i] = w[i].max(s.chars().count());
            }
            for (i, n) in number_widths(r, &mut buf).into_iter().enumerate() {
                w[4 + i] = w[4 + i].max(n);
            }
        }
        let total = rows.total();
        if layout.bytes {
            for (i, n) in number_widths(&total, &mut buf).into_iter().enumerate() {
                w[4 + i] = w[4 + i].max(n);
            }
        }
        table(out, layout, &w, rows, &order, &total)?;
    }
    if layout.anomalies {
        anomalies(out, rows)?;
    }
    sections(out)?;
    // Only when the logger said so, so complete logs read exactly like the original's.
    if lost > 0 {
        writeln!(
            out,
            "{lost} EVENTS LOST by the logger: these counts may be incomplete"
        )?;
    }
    writeln!(out, "{errors} ERRORS")
}

fn digits(mut n: u64) -> usize {
    let mut d = 1;
    while n >= 10 {
        n /= 10;
        d += 1;
    }
    d
}

/// The printed widths of [`numbers`], without making them.
fn number_widths(r: &Row, buf: &mut String) -> [usize; 5] {
    let (avg, max) = match (r.timed, r.max_time) {
        (0, _) | (_, None) => (1, 1),
        (t, Some(m)) => {
            let y = r.sum_time as f64 / t as f64 * 10.0;
            // `{:.1}` prints round(10 x) / 10: its width follows from the integer part,
            // except within a hair of a tie, where the formatter itself decides.
            let w = if (y - y.floor() - 0.5).abs() < 1e-6 || !(0.0..1e18).contains(&y) {
                buf.clear();
                let _ = std::fmt::Write::write_fmt(
                    buf,
                    format_args!("{:.1}", r.sum_time as f64 / t as f64),
                );
                buf.len()
            } else {
                digits(y.round() as u64 / 10) + 2
            };
            (w, digits(m))
        }
    };
    [digits(r.n), digits(r.nopn()), avg, max, digits(r.bytes)]
}

fn table(
    out: &mut impl Write,
    layout: &Layout,
    w: &[usize; 9],
    rows: &NamedRows,
    order: &[usize],
    total: &Row,
) -> io::Result<()> {
    let bytes_title = layout.bytes.then_some("bytes");
    table_line(
        out,
        w,
        ["src", "prot", "dport", "dst", "n", "nopn", "avgtm", "maxtm"],
        bytes_title,
    )?;
    let dashes = w[..8].iter().sum::<usize>() + 7 + if layout.bytes { w[8] + 1 } else { 0 };
    writeln!(out, "{}", "-".repeat(dashes))?;
    let mut nums = [String::new(), String::new(), String::new(), String::new()];
    let mut bytes_buf = String::new();
    for &i in order {
        let (k, r) = rows.get(i);
        fill_numbers(r, &mut nums);
        bytes_buf.clear();
        if layout.bytes {
            let _ = std::fmt::Write::write_fmt(&mut bytes_buf, format_args!("{}", r.bytes));
        }
        let bytes = layout.bytes.then_some(bytes_buf.as_str());
        table_line(
            out,
            w,
            [
                k[0], k[1], k[2], k[3], &nums[0], &nums[1], &nums[2], &nums[3],
            ],
            bytes,
        )?;
    }
    // With --bytes the table is sorted by them, and the total says how much was moved.
    if layout.bytes && !order.is_empty() {
        writeln!(out, "{}", "-".repeat(dashes))?;
        let t = &numbers(total);
        table_line(
            out,
            w,
            ["total", "", "", "", &t[0], &t[1], &t[2], &t[3]],
            Some(&t[4]),
        )?;
    }
    Ok(())
}

/// The report `--by proc`: one row per process, most connections first (sysdig's
/// `topprocs_net`, by connections rather than bytes, which `--bytes` adds), `-` for the
/// connections no process was named for.
pub fn report_by_proc(
    out: &mut impl Write,
    layout: &Layout,
    rows: &[(RowKey, Row)],
    interner: &Interner,
    lost: u64,
    errors: u64,
) -> io::Result<()> {
    writeln!(out, "{}", layout.heading)?;
    let mut named: Vec<(String, &Row)> = rows
        .iter()
        .filter(|(_, r)| r.n > 0)
        .map(|(k, r)| {
            let name = match k.0 {
                Host::Name(id) => field(interner.name(id)).into_owned(),
                Host::Ip(_) => "-".to_string(),
            };
            (name, r)
        })
        .collect();
    named.sort_by(|a, b| b.1.n.cmp(&a.1.n).then_with(|| a.0.cmp(&b.0)));
    let width = named
        .iter()
        .map(|(n, _)| n.len())
        .max()
        .unwrap_or(0)
        .max(15);
    let mut line = format!(
        "{:<width$} {:>7} {:>7} {:>7} {:>7}",
        "process", "n", "nopn", "avgtm", "maxtm"
    );
    if layout.bytes {
        line.push_str(&format!(" {:>14}", "bytes"));
    }
    writeln!(out, "{line}")?;
    writeln!(out, "{}", "-".repeat(line.len()))?;
    for (name, r) in named {
        let (avg, max) = match (r.timed, r.max_time) {
            (0, _) | (_, None) => ("-".to_string(), "-".to_string()),
            (t, Some(m)) => (
                format!("{:.1}", r.sum_time as f64 / t as f64),
                m.to_string(),
            ),
        };
        write!(
            out,
            "{name:<width$} {:>7} {:>7} {avg:>7} {max:>7}",
            r.n,
            r.nopn()
        )?;
        if layout.bytes {
            write!(out, " {:>14}", r.bytes)?;
        }
        writeln!(out)?;
    }
    if lost > 0 {
        writeln!(
            out,
            "{lost} EVENTS LOST by the logger: these counts may be incomplete"
        )?;
    }
    writeln!(out, "{errors} ERRORS")
}

/// The anomaly section: only when some connection had one, so reports of logs without
/// anomaly tokens look exactly like the original's.
fn anomalies(out: &mut impl Write, rows: &NamedRows) -> io::Result<()> {
    let with: Vec<([&str; 4], &Row)> = rows
        .iter()
        .filter(|(_, r)| r.anomalies.iter().any(|&a| a > 0))
        .collect();
    if with.is_empty() {
        return Ok(());
    }
    // The table's widths, widened as it is for wide names.
    let mut w = [15, 4, 8, 15];
    for (k, _) in &with {
        for (i, s) in k.iter().enumerate() {
            w[i] = w[i].max(s.chars().count());
        }
    }
    let head = |out: &mut dyn Write, k: [&str; 4]| {
        write!(
            out,
            "{:<w0$} {:<w1$} {:<w2$} {:<w3$}",
            k[0],
            k[1],
            k[2],
            k[3],
            w0 = w[0],
            w1 = w[1],
            w2 = w[2],
            w3 = w[3]
        )
    };
    writeln!(out, "\nconnections with anomalies")?;
    head(out, ["src", "prot", "dport", "dst"])?;
    for k in ANOMALY_KEYS {
        write!(out, " {k:>w$}", w = k.len().max(5))?;
    }
    writeln!(out)?;
    for (k, r) in with {
        head(out, k)?;
        for (i, key) in ANOMALY_KEYS.iter().enumerate() {
            write!(out, " {:>w$}", r.anomalies[i], w = key.len().max(5))?;
        }
        writeln!(out)?;
    }
    writeln!(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn number_widths_are_the_printed_widths() {
        let mut buf = String::new();
        for (sum, timed) in [
            (0, 1),
            (99, 10),
            (995, 100),
            (9995, 1000),
            (19, 2),
            (1, 3),
            (99949, 10000),
            (99950, 10000),
            (MAX_SUM, 1),
            (123_456_789, 7),
        ] {
            let r = Row {
                n: 12345,
                closed: 10,
                timed,
                sum_time: sum,
                max_time: Some(sum),
                bytes: 1_000_000,
                ..Default::default()
            };
            let shown = numbers(&r).map(|s| s.len());
            assert_eq!(number_widths(&r, &mut buf), shown, "{sum}/{timed}");
        }
    }

    const MAX_SUM: u64 = 9_223_372_036_854_775_807;

    #[test]
    fn web_destinations_fold_into_any_unless_named_or_noany() {
        let (lookup, w) = Lookup::parse("1.1.1.1 named-web\n", "t");
        assert!(w.is_empty());
        let services = Services::builtin();
        let mut interner = Interner::default();
        let src = interner.host("ppp0");
        let row = |n| Row {
            n,
            ..Default::default()
        };
        let rows = vec![
            (
                (src, 6, Some(80), Host::Ip("2.2.2.2".parse().unwrap())),
                row(1),
            ),
            (
                (src, 6, Some(80), Host::Ip("3.3.3.3".parse().unwrap())),
                row(2),
            ),
            (
                (src, 6, Some(443), Host::Ip("1.1.1.1".parse().unwrap())),
                row(4),
            ),
        ];
        let mut namer = Namer {
            lookup: &lookup,
            services: &services,
            cache: None,
            numeric: false,
            no_any: false,
        };
        let named = namer.named_rows(&rows, &interner);
        let shown: Vec<_> = named.iter().map(|(k, r)| (k.join(" "), r.n)).collect();
        assert_eq!(
            shown,
            vec![
                ("ppp0 tcp http any".to_string(), 3),
                ("ppp0 tcp https named-web".to_string(), 4)
            ]
        );
        namer.no_any = true;
        assert_eq!(namer.named_rows(&rows, &interner).iter().count(), 3);
        namer.numeric = true;
        let named = namer.named_rows(&rows, &interner);
        assert_eq!(
            named.iter().next().unwrap().0.join(" "),
            "ppp0 tcp 443 1.1.1.1"
        );
    }

    #[test]
    fn cache_names_are_marked() {
        let lookup = Lookup::new();
        let services = Services::empty();
        let dir = std::env::temp_dir().join(format!("constat-cache-{}", std::process::id()));
        let mut cache = NameCache::empty(&dir.join("names"));
        cache.insert("9.9.9.9".parse().unwrap(), "dns.example", 1);
        let namer = Namer {
            lookup: &lookup,
            services: &services,
            cache: Some(&cache),
            numeric: false,
            no_any: false,
        };
        assert_eq!(namer.addr("9.9.9.9".parse().unwrap()), "dns.example?");
        assert_eq!(namer.addr("9.9.9.8".parse().unwrap()), "9.9.9.8");
        assert_eq!(namer.port(6, Some(4711)), "4711");
        assert_eq!(namer.port(1, None), "-");
    }

    #[test]
    fn layout_is_75_columns() {
        let lookup = Lookup::new();
        let services = Services::builtin();
        let mut interner = Interner::default();
        let key = (
            interner.host("192.168.0.3"),
            6,
            Some(22),
            interner.host("eth0"),
        );
        let rows = vec![(
            key,
            Row {
                n: 1,
                closed: 1,
                timed: 1,
                sum_time: 25,
                max_time: Some(25),
                ..Default::default()
            },
        )];
        let namer = Namer {
            lookup: &lookup,
            services: &services,
            cache: None,
            numeric: false,
            no_any: false,
        };
        let named = namer.named_rows(&rows, &interner);
        let layout = Layout {
            heading: "scanning whole file".into(),
            bytes: false,
            table: true,
            anomalies: true,
        };
        let mut out = Vec::new();
        report(&mut out, &layout, &named, 0, 0, |_| Ok(())).unwrap();
        let text = String::from_utf8(out).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[2].len(), 75);
        assert_eq!(lines[1].len(), 75);
        assert_eq!(lines[3].len(), 75);
        assert!(
            lines[3].starts_with("192.168.0.3     tcp  ssh      eth0  "),
            "{}",
            lines[3]
        );
        assert!(lines[3].ends_with("    25.0       25"), "{}", lines[3]);
        assert_eq!(lines[4], "0 ERRORS");
    }

    #[test]
    fn columns_are_laid_out_on_the_escaped_names() {
        let (lookup, w) = Lookup::parse("10.0.0.2 rtl\u{202e}\n", "t");
        assert!(w.is_empty());
        let services = Services::builtin();
        let mut interner = Interner::default();
        let key = (
            interner.host("e\u{1b}[7m"),
            6,
            Some(22),
            Host::Ip("10.0.0.2".parse().unwrap()),
        );
        let rows = vec![(
            key,
            Row {
                n: 1,
                ..Default::default()
            },
        )];
        let namer = Namer {
            lookup: &lookup,
            services: &services,
            cache: None,
            numeric: false,
            no_any: false,
        };
        let named = namer.named_rows(&rows, &interner);
        let layout = Layout {
            heading: "h".into(),
            bytes: false,
            table: true,
            anomalies: true,
        };
        let mut out = Vec::new();
        report(&mut out, &layout, &named, 0, 0, |_| Ok(())).unwrap();
        let text = String::from_utf8(out).unwrap();
        let line = text.lines().nth(3).unwrap();
        assert_eq!(
            line,
            "e\\x1b[7m        tcp  ssh      rtl\\u202e           1     1        -        -"
        );
        assert_eq!(line.len(), 75);
    }
}
