//! The sections after the seed's table: the worst anomalous connections, what is new, the top
//! lists and the logger's health. Each is worked out once into a [`Report`] that every format
//! (text here, csv/json/html in `formats`) prints; a new section is a field of [`Report`], a
//! name in [`SECTION_NAMES`] and a writer per format.

use std::collections::BTreeMap;
use std::io::{self, Write};
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use chrono::NaiveDate;
use lookup::Lookup;
use shared::proto::proto_name;
use shared::text::field;

use crate::render::NamedRows;
use crate::scan::{Health, Host, Hourly, Interner, Scan, NOTABLE_KINDS};

pub use constat::cli::Sections;

/// One top list.
#[derive(Debug, Clone)]
pub struct Top {
    /// `destinations by connections`, ...
    pub title: &'static str,
    /// The items' column title.
    pub what: &'static str,
    /// `connections`, `bytes`, `seconds`.
    pub unit: &'static str,
    pub items: Vec<(String, u64)>,
    /// All items added up (not only the listed ones).
    pub total: u64,
}

/// The top lists of the report's rows (sysdig's topconns, topports, iobytes_net).
pub fn tops(rows: &NamedRows, n: usize) -> Vec<Top> {
    type Pick = fn(&[&str; 4], &crate::scan::Row) -> (String, u64);
    let lists: [(&'static str, &'static str, &'static str, Pick); 6] = [
        (
            "destinations by connections",
            "dst",
            "connections",
            |k, r| (k[3].to_string(), r.n),
        ),
        ("destinations by bytes sent", "dst", "bytes", |k, r| {
            (k[3].to_string(), r.orig_bytes)
        }),
        ("destinations by bytes received", "dst", "bytes", |k, r| {
            (k[3].to_string(), r.resp_bytes())
        }),
        (
            "destinations by total duration",
            "dst",
            "seconds",
            |k, r| (k[3].to_string(), r.sum_time),
        ),
        (
            "ports by connections",
            "prot/dport",
            "connections",
            |k, r| (format!("{}/{}", k[1], k[2]), r.n),
        ),
        (
            "connections by bytes",
            "src prot dport dst",
            "bytes",
            |k, r| (k.join(" "), r.bytes),
        ),
    ];
    let mut out = Vec::new();
    for (title, what, unit, pick) in lists {
        let mut sums: BTreeMap<String, u64> = BTreeMap::new();
        let mut total = 0u64;
        for (k, r) in rows.iter() {
            let (key, v) = pick(&k, r);
            total = total.saturating_add(v);
            let e = sums.entry(key).or_default();
            *e = e.saturating_add(v);
        }
        if total == 0 {
            continue;
        }
        let mut items: Vec<(String, u64)> = sums.into_iter().filter(|(_, v)| *v > 0).collect();
        // Stable: equal values stay in name order.
        items.sort_by_key(|x| std::cmp::Reverse(x.1));
        items.truncate(n);
        out.push(Top {
            title,
            what,
            unit,
            items,
            total,
        });
    }
    out
}

/// One of the worst connections of a kind, as shown.
#[derive(Debug, Clone)]
pub struct Worst {
    pub kind: &'static str,
    pub score: u64,
    /// `YYYY-MM-DD-HH:MM:SS`, the log's form.
    pub time: String,
    pub uid: String,
    pub proto: String,
    pub src: String,
    pub sport: String,
    pub dst: String,
    pub dport: String,
}

fn raw_host(h: Host, interner: &Interner) -> String {
    match h {
        Host::Ip(a) => a.to_string(),
        Host::Name(id) => field(interner.name(id)).into_owned(),
    }
}

fn proto_text(p: u8) -> String {
    proto_name(p).map_or_else(|| p.to_string(), str::to_string)
}

fn port_text(p: Option<u16>) -> String {
    p.map_or_else(|| "-".to_string(), |p| p.to_string())
}

/// The worst connections of each kind, as the log writes them (addresses and port numbers,
/// so that they can be searched for).
pub fn worst(scan: &Scan) -> Vec<Worst> {
    let mut out = Vec::new();
    for (k, list) in scan.notables.worst.iter().enumerate() {
        for n in list {
            let (src, proto, dport, dst) = n.key;
            out.push(Worst {
                kind: NOTABLE_KINDS[k],
                score: n.score,
                time: n.ts.format("%Y-%m-%d-%H:%M:%S").to_string(),
                uid: n
                    .uid
                    .as_deref()
                    .map_or("-".to_string(), |u| field(u).into_owned()),
                proto: proto_text(proto),
                src: raw_host(src, &scan.interner),
                sport: port_text(n.sport),
                dst: raw_host(dst, &scan.interner),
                dport: port_text(dport),
            });
        }
    }
    out
}

/// What the scanned days brought that constat had not seen before for this log.
#[derive(Debug, Clone, Default)]
pub struct NewItems {
    pub hosts: Vec<String>,
    /// Destination names from the lookup file (its hosts and networks).
    pub names: Vec<String>,
    /// `prot/port`.
    pub ports: Vec<String>,
    /// No state yet: everything was remembered, nothing reported as new.
    pub first_run: bool,
    /// How many items the state now holds.
    pub remembered: usize,
}

impl NewItems {
    pub fn is_empty(&self) -> bool {
        self.hosts.is_empty() && self.names.is_empty() && self.ports.is_empty()
    }
}

/// The state file of `--sections new` for the inputs `first` (the first `-f`): one per log
/// path, in `dir`.
pub fn state_path(dir: &Path, first: &Path) -> PathBuf {
    let abs = std::fs::canonicalize(first).unwrap_or_else(|_| first.to_path_buf());
    let mut name = String::from("seen");
    for c in abs.to_string_lossy().chars() {
        name.push(if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
            c
        } else {
            '_'
        });
    }
    dir.join(name)
}

/// Works out the new items of `scan` (opened from `from`) against the state file at `path`,
/// and saves the state with them. The state holds `KIND ITEM FIRST-DAY` lines; an item
/// first seen on or after `from` is new, so a report made again for the same day says the
/// same.
pub fn new_items(
    scan: &Scan,
    lookup: &Lookup,
    from: NaiveDate,
    path: &Path,
) -> Result<NewItems, String> {
    let shown = shared::text::escaped(&path.display().to_string()).into_owned();
    let mut state: BTreeMap<(String, String), NaiveDate> = BTreeMap::new();
    let first_run = match std::fs::read_to_string(path) {
        Ok(text) => {
            for (i, line) in text.lines().enumerate() {
                let mut w = line.split(' ');
                match (w.next(), w.next(), w.next().and_then(|d| d.parse().ok())) {
                    (Some(k), Some(item), Some(d)) => {
                        state.insert((k.to_string(), item.to_string()), d);
                    }
                    _ => return Err(format!("{shown}:{}: not a state line", i + 1)),
                }
            }
            false
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => true,
        Err(e) => return Err(format!("{shown}: cannot read state: {e}")),
    };
    let mut seen: Vec<(String, String)> = Vec::new();
    for ((_, proto, dport, dst), r) in &scan.rows {
        if r.n == 0 {
            continue;
        }
        if let Host::Ip(a) = *dst {
            seen.push(("host".into(), a.to_string()));
            if let Some(name) = lookup.host_name(a) {
                seen.push(("name".into(), field(name).into_owned()));
            }
        }
        if let Some(p) = dport {
            seen.push(("port".into(), format!("{}/{p}", proto_text(*proto))));
        }
    }
    seen.sort();
    seen.dedup();
    let mut out = NewItems {
        first_run,
        ..Default::default()
    };
    for key in seen {
        let is_new = state.get(&key).is_none_or(|d| *d >= from);
        if is_new && !first_run {
            let list = match key.0.as_str() {
                "host" => &mut out.hosts,
                "name" => &mut out.names,
                _ => &mut out.ports,
            };
            list.push(key.1.clone());
        }
        let e = state.entry(key).or_insert(from);
        *e = (*e).min(from);
    }
    // Addresses in address order, not text order.
    out.hosts
        .sort_by_key(|h| h.parse::<IpAddr>().map_err(|_| h.clone()));
    out.remembered = state.len();
    let mut text = String::new();
    for ((k, item), d) in &state {
        text.push_str(&format!("{k} {item} {}\n", d.format("%Y-%m-%d")));
    }
    save_state(path, &text).map_err(|e| format!("{shown}: cannot save state: {e}"))?;
    Ok(out)
}

/// Replaces the state file: a new file (0640, unguessable name, never through a link) renamed
/// over the old one, so a crash leaves the old state or the new, never half of one.
fn save_state(path: &Path, text: &str) -> io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let stem = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "seen".into());
    let (mut f, tmp) = shared::outfile::create_temp(dir, &stem)?;
    let res = f
        .write_all(text.as_bytes())
        .and_then(|_| f.sync_all())
        .and_then(|_| std::fs::rename(&tmp, path));
    if res.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    res
}

/// Everything a report shows, in every format.
pub struct Report<'a> {
    pub heading: String,
    /// The scanned days (`None`: the whole file).
    pub range: Option<(NaiveDate, NaiveDate)>,
    pub rows: &'a NamedRows,
    pub bytes: bool,
    pub sections: Sections,
    pub worst: Vec<Worst>,
    pub notable_counts: [u64; 6],
    pub new: Option<NewItems>,
    pub tops: Vec<Top>,
    pub health: Health,
    pub hours: [Hourly; 24],
    pub lost: u64,
    pub errors: u64,
}

impl Report<'_> {
    pub fn show_worst(&self) -> bool {
        self.sections.anomalies && !self.worst.is_empty()
    }

    pub fn show_health(&self) -> bool {
        self.sections.health && self.health.has_trouble(self.lost)
    }

    pub fn show_new(&self) -> Option<&NewItems> {
        self.new
            .as_ref()
            .filter(|n| self.sections.new && (n.first_run || !n.is_empty()))
    }
}

/// The text sections after the table (and its per-row anomaly counts).
pub fn write_text<W: Write>(w: &mut W, r: &Report<'_>) -> io::Result<()> {
    // Each section is preceded by a blank line, and the last followed by one, as the
    // anomaly counts are.
    let mut buf: Vec<u8> = Vec::new();
    let out = &mut buf;
    if r.show_worst() {
        writeln!(out, "\nanomalous connections")?;
        for (k, kind) in NOTABLE_KINDS.iter().enumerate() {
            if r.notable_counts[k] > 0 {
                writeln!(out, "{kind:<15} {:>8}", r.notable_counts[k])?;
            }
        }
        let w = |f: fn(&Worst) -> &str, min: usize| {
            r.worst
                .iter()
                .map(|x| f(x).chars().count())
                .max()
                .unwrap_or(0)
                .max(min)
        };
        let (wu, ws, wd) = (w(|x| &x.uid, 3), w(|x| &x.src, 15), w(|x| &x.dst, 15));
        writeln!(
            out,
            "{:<15} {:>8} {:<19} {:<wu$} {:<4} {:<ws$} {:>5} {:<wd$} {:>5}",
            "worst", "score", "time", "uid", "prot", "src", "sport", "dst", "dport"
        )?;
        for x in &r.worst {
            writeln!(
                out,
                "{:<15} {:>8} {:<19} {:<wu$} {:<4} {:<ws$} {:>5} {:<wd$} {:>5}",
                x.kind, x.score, x.time, x.uid, x.proto, x.src, x.sport, x.dst, x.dport
            )?;
        }
    }
    if let Some(n) = r.show_new() {
        writeln!(out, "\nnew since the last report")?;
        if n.first_run {
            writeln!(
                out,
                "first run: {} destinations and ports remembered; new ones are reported from \
                 the next run",
                n.remembered
            )?;
        }
        for (what, list) in [("host", &n.hosts), ("name", &n.names), ("port", &n.ports)] {
            for item in list {
                writeln!(out, "new {what:<5} {item}")?;
            }
        }
    }
    if r.sections.top {
        for t in &r.tops {
            writeln!(out, "\ntop {}", t.title)?;
            let width = t
                .items
                .iter()
                .map(|(k, _)| k.chars().count())
                .max()
                .unwrap_or(0)
                .max(t.what.len())
                .max(5);
            let vw = t.total.to_string().len().max(t.unit.len());
            writeln!(out, "{:<width$} {:>vw$} {:>6}", t.what, t.unit, "share")?;
            for (k, v) in &t.items {
                writeln!(out, "{k:<width$} {v:>vw$} {:>6}", share(*v, t.total))?;
            }
            writeln!(out, "{:<width$} {:>vw$}", "total", t.total)?;
        }
    }
    if r.show_health() {
        let h = &r.health;
        writeln!(out, "\nlogger health")?;
        writeln!(out, "runs            {:>8}", h.starts)?;
        writeln!(out, "restarts        {:>8}", h.restarts())?;
        writeln!(
            out,
            "still running   {:>8}",
            h.starts.saturating_sub(h.stops)
        )?;
        writeln!(out, "write errors    {:>8}", h.errors)?;
        writeln!(out, "events lost     {:>8}", r.lost)?;
    }
    if !buf.is_empty() {
        buf.push(b'\n');
    }
    w.write_all(&buf)
}

/// `v` as a percentage of `total`, one decimal.
pub fn share(v: u64, total: u64) -> String {
    if total == 0 {
        return "-".into();
    }
    format!("{:.1}%", v as f64 * 100.0 / total as f64)
}
