//! From counted rows to the printed report: names replace addresses and ports, unnamed web
//! servers fold into `any`, rows that now show the same strings merge, and the table is laid
//! out in the original's columns.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::IpAddr;

use lookup::{Lookup, NameCache, Services};
use shared::proto::proto_name;

use crate::scan::{Host, Interner, Row, RowKey, ANOMALY_KEYS};

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
    matches!(proto, 6 | 17) && matches!(dport, Some(80 | 443))
}

impl Namer<'_> {
    fn host(&self, h: Host, interner: &Interner) -> String {
        match h {
            Host::Name(id) => interner.name(id).to_string(),
            Host::Ip(a) => self.addr(a),
        }
    }

    fn addr(&self, a: IpAddr) -> String {
        if self.numeric {
            return a.to_string();
        }
        if let Some(n) = self.lookup.host_name(a) {
            return n.to_string();
        }
        if let Some(n) = self.cache.and_then(|c| c.get(a)) {
            return format!("{n}?");
        }
        a.to_string()
    }

    fn dst(&self, key: &RowKey, interner: &Interner) -> String {
        let (_, proto, dport, dst) = *key;
        if let Host::Ip(a) = dst {
            if !self.no_any && is_web(proto, dport) && self.lookup.host_name(a).is_none() {
                return "any".to_string();
            }
        }
        self.host(dst, interner)
    }

    fn port(&self, proto: u8, dport: Option<u16>) -> String {
        match dport {
            None => "-".to_string(),
            Some(p) if self.numeric => p.to_string(),
            Some(p) => self
                .lookup
                .service_name(self.services, p, proto)
                .map(str::to_string)
                .unwrap_or_else(|| p.to_string()),
        }
    }

    /// The displayed (src, prot, dport, dst) strings of every row, rows that show the same
    /// strings merged, sorted as displayed.
    pub fn named_rows(
        &self,
        rows: &[(RowKey, Row)],
        interner: &Interner,
    ) -> Vec<([String; 4], Row)> {
        let mut out: BTreeMap<[String; 4], Row> = BTreeMap::new();
        for (key, row) in rows {
            if row.n == 0 {
                continue;
            }
            let (src, proto, dport, _) = *key;
            let prot = proto_name(proto)
                .map(str::to_string)
                .unwrap_or_else(|| proto.to_string());
            let k = [
                self.host(src, interner),
                prot,
                self.port(proto, dport),
                self.dst(key, interner),
            ];
            out.entry(k).or_default().merge(row);
        }
        out.into_iter().collect()
    }
}

/// What is printed around the table.
pub struct Layout {
    /// `scanning for date 2004-08-05` / `scanning whole file`.
    pub heading: String,
    /// Add a `bytes` column.
    pub bytes: bool,
}

const DASHES: usize = 75;

fn table_line(out: &mut String, c: [&str; 8], bytes: Option<&str>) {
    let _ = write!(
        out,
        "{:<15} {:<4} {:<8} {:<15} {:>5} {:>5} {:>8} {:>8}",
        c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]
    );
    if let Some(b) = bytes {
        let _ = write!(out, " {b:>14}");
    }
    out.push('\n');
}

/// The report text.
pub fn report(layout: &Layout, rows: &[([String; 4], Row)], errors: u64) -> String {
    let mut out = String::new();
    out.push_str(&layout.heading);
    out.push('\n');
    let bytes_title = layout.bytes.then_some("bytes");
    table_line(
        &mut out,
        ["src", "prot", "dport", "dst", "n", "nopn", "avgtm", "maxtm"],
        bytes_title,
    );
    out.push_str(&"-".repeat(DASHES + if layout.bytes { 15 } else { 0 }));
    out.push('\n');
    for (k, r) in rows {
        let (avg, max) = match (r.timed, r.max_time) {
            (0, _) | (_, None) => ("-".to_string(), "-".to_string()),
            (t, Some(m)) => (
                format!("{:.1}", r.sum_time as f64 / t as f64),
                m.to_string(),
            ),
        };
        let bytes = layout.bytes.then(|| r.bytes.to_string());
        table_line(
            &mut out,
            [
                &k[0],
                &k[1],
                &k[2],
                &k[3],
                &r.n.to_string(),
                &r.nopn().to_string(),
                &avg,
                &max,
            ],
            bytes.as_deref(),
        );
    }
    anomalies(&mut out, rows);
    let _ = writeln!(out, "{errors} ERRORS");
    out
}

/// The anomaly section: only when some connection had one, so reports of logs without
/// anomaly tokens look exactly like the original's.
fn anomalies(out: &mut String, rows: &[([String; 4], Row)]) {
    let with: Vec<_> = rows
        .iter()
        .filter(|(_, r)| r.anomalies.iter().any(|&a| a > 0))
        .collect();
    if with.is_empty() {
        return;
    }
    out.push('\n');
    out.push_str("connections with anomalies\n");
    let _ = write!(
        out,
        "{:<15} {:<4} {:<8} {:<15}",
        "src", "prot", "dport", "dst"
    );
    for k in ANOMALY_KEYS {
        let _ = write!(out, " {k:>w$}", w = k.len().max(5));
    }
    out.push('\n');
    for (k, r) in with {
        let _ = write!(out, "{:<15} {:<4} {:<8} {:<15}", k[0], k[1], k[2], k[3]);
        for (i, key) in ANOMALY_KEYS.iter().enumerate() {
            let _ = write!(out, " {:>w$}", r.anomalies[i], w = key.len().max(5));
        }
        out.push('\n');
    }
    out.push('\n');
}

#[cfg(test)]
mod tests {
    use super::*;

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
        assert_eq!(namer.named_rows(&rows, &interner).len(), 3);
        namer.numeric = true;
        let named = namer.named_rows(&rows, &interner);
        assert_eq!(named[0].0.join(" "), "ppp0 tcp 443 1.1.1.1");
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
        let rows = vec![(
            [
                "192.168.0.3".to_string(),
                "tcp".into(),
                "ssh".into(),
                "eth0".into(),
            ],
            Row {
                n: 1,
                closed: 1,
                timed: 1,
                sum_time: 25,
                max_time: Some(25),
                ..Default::default()
            },
        )];
        let layout = Layout {
            heading: "scanning whole file".into(),
            bytes: false,
        };
        let text = report(&layout, &rows, 0);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[2].len(), 75);
        assert_eq!(lines[1].len(), 75);
        assert_eq!(lines[3].len(), 75);
        assert!(lines[3].ends_with("    25.0       25"), "{}", lines[3]);
        assert_eq!(lines[4], "0 ERRORS");
    }
}
