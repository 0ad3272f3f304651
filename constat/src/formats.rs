//! The report as CSV (the table, one line per row), JSON (everything, one object per report)
//! and HTML (one self-contained page: inline CSS and SVG, no script, nothing fetched).
//!
//! Every name comes from outside (the log, the lookup file, the name cache) and is already
//! escaped as a field for the text report (no control or bidi character, no space); each
//! format then escapes for itself: CSV quotes and defuses formulas, JSON escapes strings,
//! HTML escapes `& < > " '`.

use std::io::{self, Write};

use serde_json::{json, Value};

use crate::render::numbers;
use crate::scan::{Row, ANOMALY_KEYS, NOTABLE_KINDS};
use crate::sections::{share, Report};

pub use constat::cli::Format;

pub fn write(out: &mut impl Write, f: Format, r: &Report<'_>) -> io::Result<()> {
    match f {
        Format::Text => unreachable!("text is written by render"),
        Format::Csv => csv(out, r),
        Format::Json => {
            serde_json::to_writer(&mut *out, &json_report(r)).map_err(io::Error::other)?;
            out.write_all(b"\n")
        }
        Format::Html => html(out, r),
    }
}

/// The CSV columns, in order (README documents each).
pub const CSV_COLUMNS: [&str; 19] = [
    "from",
    "to",
    "src",
    "prot",
    "dport",
    "dst",
    "n",
    "nopn",
    "avgtm",
    "maxtm",
    "bytes",
    "orig_bytes",
    "resp_bytes",
    "retrans",
    "syn_retrans",
    "rst",
    "long_delay",
    "frag",
    "long_conn",
];

/// One CSV cell: quoted when it holds a comma, quote or line break (RFC 4180), and, when it
/// starts like a formula (`= + - @`, tab, CR), prefixed with `'` and quoted (OWASP), so a
/// spreadsheet shows it as text instead of running it.
pub fn csv_cell(s: &str) -> String {
    let formula = s.starts_with(['=', '+', '-', '@', '\t', '\r']);
    let s = if formula {
        format!("'{s}")
    } else {
        s.to_string()
    };
    if formula || s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s
    }
}

fn day_text(r: &Report<'_>) -> (String, String) {
    match r.range {
        Some((a, b)) => (
            a.format("%Y-%m-%d").to_string(),
            b.format("%Y-%m-%d").to_string(),
        ),
        None => (String::new(), String::new()),
    }
}

/// A number column: empty when there is none (no closed connection with a time).
fn opt_num(s: &str) -> &str {
    if s == "-" {
        ""
    } else {
        s
    }
}

fn csv(out: &mut impl Write, r: &Report<'_>) -> io::Result<()> {
    // One header per run, even with --per-day (each day's rows carry their from/to).
    static HEADER: std::sync::Once = std::sync::Once::new();
    let mut res = Ok(());
    HEADER.call_once(|| res = writeln!(out, "{}", CSV_COLUMNS.join(",")));
    res?;
    let (from, to) = day_text(r);
    for i in r.rows.display_order(r.bytes) {
        let (k, row) = r.rows.get(i);
        let n = numbers(row);
        let mut cells: Vec<String> = vec![from.clone(), to.clone()];
        cells.extend(k.iter().map(|s| csv_cell(if *s == "-" { "" } else { s })));
        cells.extend([
            n[0].clone(),
            n[1].clone(),
            opt_num(&n[2]).to_string(),
            opt_num(&n[3]).to_string(),
            row.bytes.to_string(),
            row.orig_bytes.to_string(),
            row.resp_bytes().to_string(),
        ]);
        cells.extend(row.anomalies.iter().map(u64::to_string));
        writeln!(out, "{}", cells.join(","))?;
    }
    Ok(())
}

fn json_row(k: Option<[&str; 4]>, row: &Row) -> Value {
    let n = numbers(row);
    let num = |s: &str| -> Value {
        match s {
            "-" => Value::Null,
            s => s
                .parse::<f64>()
                .ok()
                .and_then(serde_json::Number::from_f64)
                .map_or(Value::Null, Value::Number),
        }
    };
    let mut anomalies = serde_json::Map::new();
    for (i, key) in ANOMALY_KEYS.iter().enumerate() {
        anomalies.insert(key.to_string(), json!(row.anomalies[i]));
    }
    let mut v = json!({
        "n": row.n,
        "nopn": row.nopn(),
        "avgtm": num(&n[2]),
        "maxtm": row.max_time.filter(|_| row.timed > 0),
        "bytes": row.bytes,
        "orig_bytes": row.orig_bytes,
        "resp_bytes": row.resp_bytes(),
        "anomalies": anomalies,
    });
    if let (Some(k), Value::Object(m)) = (k, &mut v) {
        for (name, s) in ["src", "prot", "dport", "dst"].iter().zip(k) {
            m.insert(name.to_string(), json!(s));
        }
    }
    v
}

fn json_report(r: &Report<'_>) -> Value {
    let (from, to) = day_text(r);
    let rows: Vec<Value> = r
        .rows
        .display_order(r.bytes)
        .into_iter()
        .map(|i| {
            let (k, row) = r.rows.get(i);
            json_row(Some(k), row)
        })
        .collect();
    let mut v = json!({
        "heading": r.heading,
        "from": (!from.is_empty()).then_some(from),
        "to": (!to.is_empty()).then_some(to),
        "rows": if r.sections.table { rows } else { Vec::new() },
        "total": json_row(None, &r.rows.total()),
        "hours": r.hours.iter().enumerate().map(|(h, x)| json!({
            "hour": h, "connections": x.conns, "bytes": x.bytes, "anomalous": x.anomalous,
        })).collect::<Vec<_>>(),
        "lost_events": r.lost,
        "errors": r.errors,
    });
    let Value::Object(m) = &mut v else {
        unreachable!()
    };
    if r.sections.anomalies {
        let mut counts = serde_json::Map::new();
        for (i, k) in NOTABLE_KINDS.iter().enumerate() {
            counts.insert(k.to_string(), json!(r.notable_counts[i]));
        }
        m.insert(
            "anomalies".into(),
            json!({
                "counts": counts,
                "worst": r.worst.iter().map(|w| json!({
                    "kind": w.kind, "score": w.score, "time": w.time, "uid": w.uid,
                    "prot": w.proto, "src": w.src, "sport": w.sport, "dst": w.dst,
                    "dport": w.dport,
                })).collect::<Vec<_>>(),
            }),
        );
    }
    if let (true, Some(n)) = (r.sections.new, &r.new) {
        m.insert(
            "new".into(),
            json!({
                "first_run": n.first_run, "hosts": n.hosts, "names": n.names, "ports": n.ports,
            }),
        );
    }
    if r.sections.top {
        m.insert(
            "top".into(),
            r.tops
                .iter()
                .map(|t| {
                    json!({
                        "title": t.title, "what": t.what, "unit": t.unit, "total": t.total,
                        "items": t.items.iter().map(|(k, v)| json!({"item": k, "value": v}))
                            .collect::<Vec<_>>(),
                    })
                })
                .collect(),
        );
    }
    if r.sections.health {
        let h = &r.health;
        m.insert(
            "health".into(),
            json!({
                "runs": h.starts, "restarts": h.restarts(), "stopped": h.stops,
                "write_errors": h.errors, "lost_events": r.lost,
            }),
        );
    }
    v
}

/// `s` safe in HTML text and attribute values.
pub fn html_escape(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            c => o.push(c),
        }
    }
    o
}

const CSS: &str = "body{font:14px/1.4 sans-serif;margin:1.5em;color:#222}\
h1{font-size:1.3em}h2{font-size:1.1em;margin-top:1.5em}\
table{border-collapse:collapse;margin:.5em 0}th,td{padding:2px 8px;border-bottom:1px solid #ddd}\
th{text-align:left;background:#f3f3f3}td.n{text-align:right;font-variant-numeric:tabular-nums}\
figure{display:inline-block;margin:.5em 1em .5em 0}figcaption{font-weight:bold}\
svg text{font:10px sans-serif}.bar{fill:#4a7ab5}.warn{fill:#c0504d}.tot td{font-weight:bold}";

/// A vertical bar chart of the 24 hours.
fn hour_chart(o: &mut String, id: &str, title: &str, values: &[u64; 24], class: &str) {
    let max = values.iter().copied().max().unwrap_or(0).max(1);
    let (w, h) = (24 * 16 + 40, 140);
    o.push_str(&format!(
        "<figure id=\"{id}\"><figcaption>{}</figcaption>\
         <svg class=\"chart\" xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" \
         role=\"img\" aria-label=\"{0}\"><title>{0}</title>",
        html_escape(title)
    ));
    for (i, &v) in values.iter().enumerate() {
        let bh = (v as f64 / max as f64 * 100.0).round() as u64;
        let x = 30 + i * 16;
        o.push_str(&format!(
            "<rect class=\"{class}\" x=\"{x}\" y=\"{}\" width=\"12\" height=\"{bh}\">\
             <title>{i:02}h: {v}</title></rect>",
            110 - bh
        ));
        if i % 3 == 0 {
            o.push_str(&format!("<text x=\"{x}\" y=\"125\">{i:02}</text>"));
        }
    }
    o.push_str(&format!(
        "<text x=\"0\" y=\"12\">{max}</text><line x1=\"28\" y1=\"110\" x2=\"{}\" y2=\"110\" \
         stroke=\"#888\"/></svg></figure>\n",
        w - 6
    ));
}

/// A horizontal bar chart of a top list.
fn bar_chart(o: &mut String, id: &str, title: &str, items: &[(String, u64)]) {
    let max = items.iter().map(|x| x.1).max().unwrap_or(0).max(1);
    let h = 20 + items.len() * 18;
    o.push_str(&format!(
        "<figure id=\"{id}\"><figcaption>{}</figcaption>\
         <svg class=\"chart\" xmlns=\"http://www.w3.org/2000/svg\" width=\"520\" height=\"{h}\" \
         role=\"img\" aria-label=\"{0}\"><title>{0}</title>",
        html_escape(title)
    ));
    for (i, (k, v)) in items.iter().enumerate() {
        let y = 10 + i * 18;
        let bw = (*v as f64 / max as f64 * 300.0).round() as u64;
        let name: String = k.chars().take(28).collect();
        o.push_str(&format!(
            "<text x=\"0\" y=\"{}\">{}</text><rect class=\"bar\" x=\"180\" y=\"{y}\" \
             width=\"{bw}\" height=\"14\"><title>{}: {v}</title></rect>\
             <text x=\"{}\" y=\"{}\">{v}</text>",
            y + 11,
            html_escape(&name),
            html_escape(k),
            184 + bw,
            y + 11
        ));
    }
    o.push_str("</svg></figure>\n");
}

fn th(o: &mut String, cells: &[&str]) {
    o.push_str("<tr>");
    for c in cells {
        o.push_str(&format!("<th>{}</th>", html_escape(c)));
    }
    o.push_str("</tr>\n");
}

/// A row: text cells left, then number cells right.
fn tr(o: &mut String, class: &str, text: &[&str], nums: &[&str]) {
    o.push_str(&format!("<tr class=\"{class}\">"));
    for c in text {
        o.push_str(&format!("<td>{}</td>", html_escape(c)));
    }
    for c in nums {
        o.push_str(&format!("<td class=\"n\">{}</td>", html_escape(c)));
    }
    o.push_str("</tr>\n");
}

fn html(out: &mut impl Write, r: &Report<'_>) -> io::Result<()> {
    let mut o = String::new();
    o.push_str(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width\">",
    );
    o.push_str(&format!(
        "<title>constat: {}</title><style>{CSS}</style></head><body>\n<h1>{0}</h1>\n",
        html_escape(&r.heading)
    ));
    if r.sections.table {
        o.push_str("<h2>Connections</h2>\n<table id=\"connections\">\n");
        let mut head = vec!["src", "prot", "dport", "dst", "n", "nopn", "avgtm", "maxtm"];
        if r.bytes {
            head.push("bytes");
        }
        th(&mut o, &head);
        let row_nums = |row: &Row| {
            let n = numbers(row);
            let mut v: Vec<String> = n[..4].to_vec();
            if r.bytes {
                v.push(n[4].clone());
            }
            v
        };
        for i in r.rows.display_order(r.bytes) {
            let (k, row) = r.rows.get(i);
            let v = row_nums(row);
            let v: Vec<&str> = v.iter().map(String::as_str).collect();
            tr(&mut o, "row", &k, &v);
        }
        let v = row_nums(&r.rows.total());
        let v: Vec<&str> = v.iter().map(String::as_str).collect();
        tr(&mut o, "tot", &["total", "", "", ""], &v);
        o.push_str("</table>\n");
    }
    o.push_str("<h2>Per hour</h2>\n");
    let pick = |f: fn(&crate::scan::Hourly) -> u64| {
        let mut v = [0u64; 24];
        for (i, h) in r.hours.iter().enumerate() {
            v[i] = f(h);
        }
        v
    };
    hour_chart(
        &mut o,
        "chart-conns",
        "connections per hour",
        &pick(|h| h.conns),
        "bar",
    );
    hour_chart(
        &mut o,
        "chart-bytes",
        "bytes per hour",
        &pick(|h| h.bytes),
        "bar",
    );
    hour_chart(
        &mut o,
        "chart-anomalies",
        "anomalous connections per hour",
        &pick(|h| h.anomalous),
        "warn",
    );
    if let Some(t) = r.tops.first() {
        o.push_str("<h2>Top destinations</h2>\n");
        bar_chart(&mut o, "chart-top", &format!("top {}", t.title), &t.items);
    }
    if r.show_worst() {
        o.push_str("<h2>Anomalous connections</h2>\n<table id=\"anomalies\">\n");
        th(&mut o, &["kind", "connections"]);
        for (i, k) in NOTABLE_KINDS.iter().enumerate() {
            if r.notable_counts[i] > 0 {
                tr(&mut o, "row", &[k], &[&r.notable_counts[i].to_string()]);
            }
        }
        o.push_str("</table>\n<table id=\"worst\">\n");
        th(
            &mut o,
            &[
                "kind", "time", "uid", "prot", "src", "sport", "dst", "dport", "score",
            ],
        );
        for w in &r.worst {
            tr(
                &mut o,
                "row",
                &[
                    w.kind, &w.time, &w.uid, &w.proto, &w.src, &w.sport, &w.dst, &w.dport,
                ],
                &[&w.score.to_string()],
            );
        }
        o.push_str("</table>\n");
    }
    if let Some(n) = r.show_new() {
        o.push_str("<h2>New since the last report</h2>\n<table id=\"new\">\n");
        th(&mut o, &["kind", "item"]);
        for (what, list) in [("host", &n.hosts), ("name", &n.names), ("port", &n.ports)] {
            for item in list {
                tr(&mut o, "row", &[what, item], &[]);
            }
        }
        o.push_str("</table>\n");
        if n.first_run {
            o.push_str("<p>First run: what was seen is remembered; new items are reported from the next run.</p>\n");
        }
    }
    if r.sections.top {
        for (i, t) in r.tops.iter().enumerate() {
            o.push_str(&format!(
                "<h2>Top {}</h2>\n<table id=\"top-{i}\">\n",
                html_escape(t.title)
            ));
            th(&mut o, &[t.what, t.unit, "share"]);
            for (k, v) in &t.items {
                tr(&mut o, "row", &[k], &[&v.to_string(), &share(*v, t.total)]);
            }
            tr(&mut o, "tot", &["total"], &[&t.total.to_string(), ""]);
            o.push_str("</table>\n");
        }
    }
    if r.show_health() {
        let h = &r.health;
        o.push_str("<h2>Logger health</h2>\n<table id=\"health\">\n");
        for (k, v) in [
            ("runs", h.starts),
            ("restarts", h.restarts()),
            ("write errors", h.errors),
            ("events lost", r.lost),
        ] {
            tr(&mut o, "row", &[k], &[&v.to_string()]);
        }
        o.push_str("</table>\n");
    }
    o.push_str(&format!(
        "<p id=\"errors\">{} unreadable lines (ERRORS){}</p>\n</body></html>\n",
        r.errors,
        if r.lost > 0 {
            format!("; {} events lost by the logger", r.lost)
        } else {
            String::new()
        }
    ));
    out.write_all(o.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_cells_defuse_formulas_and_quote() {
        assert_eq!(csv_cell("host"), "host");
        assert_eq!(csv_cell("=cmd|' /C calc'!A0"), "\"'=cmd|' /C calc'!A0\"");
        assert_eq!(csv_cell("+1"), "\"'+1\"");
        assert_eq!(csv_cell("@x"), "\"'@x\"");
        assert_eq!(csv_cell("-2"), "\"'-2\"");
        assert_eq!(csv_cell("\tx"), "\"'\tx\"");
        assert_eq!(csv_cell("a,b"), "\"a,b\"");
        assert_eq!(csv_cell("a\"b"), "\"a\"\"b\"");
    }

    #[test]
    fn html_is_escaped() {
        assert_eq!(
            html_escape("<script>&\"'"),
            "&lt;script&gt;&amp;&quot;&#39;"
        );
    }
}
