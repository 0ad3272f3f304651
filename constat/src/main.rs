//! constat: the daily table of who talked to whom, how often and how long, from ipclog's line
//! log (or its SQLite history). Known hosts and services carry the names of the lookup file, so
//! unknown ones stand out. The log is streamed, so memory stays flat however long it is.
//!
//! The way through: `shared::logfmt::LogReader` reads the log line by line and parses each
//! O/S/C line into a `ConnLine` borrowed from the line; [`scan`] pairs opens with closes and
//! adds each connection to its report row (from the history, [`db`] reads one row per
//! connection through `store::open_read_only` instead); [`render`] puts the lookup file's
//! names on the rows and prints the table.

mod db;
mod formats;
mod input;
mod packets;
mod pg;
mod query;
mod render;
mod scan;
mod sections;

use std::ffi::OsString;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use chrono::{Local, NaiveDate};
use clap::Parser;
use lookup::{Lookup, NameCache, Services};
use shared::text::escaped;

use constat::cli::{Args, By};

use crate::render::{Layout, Namer};
use crate::scan::{Host, Scan};

/// Maps the original's single-dash long options to ours (clap would read `-nc` as `-n -c`).
fn seed_options(args: impl IntoIterator<Item = OsString>) -> Vec<OsString> {
    let mut out = Vec::new();
    let mut rest = false;
    for a in args {
        if rest {
            out.push(a);
            continue;
        }
        match a.to_str() {
            Some("--") => {
                rest = true;
                out.push(a);
            }
            Some("-noany") => out.push("--no-any".into()),
            Some("-nc") => out.push("--no-cache".into()),
            _ => out.push(a),
        }
    }
    out
}

const DEFAULT_LOOKUP: &str = "/etc/constat.lookup";

fn main() -> ExitCode {
    let argv: Vec<OsString> = std::env::args_os().collect();
    if argv.get(1).is_some_and(|a| a == "query") {
        let rest =
            std::iter::once(OsString::from("constat query")).chain(argv[2..].iter().cloned());
        return match query::main(rest) {
            Ok(()) => ExitCode::SUCCESS,
            Err((code, msg)) => {
                if !msg.is_empty() {
                    eprintln!("constat query: {}", escaped(&msg));
                }
                ExitCode::from(code)
            }
        };
    }
    let args = match Args::try_parse_from(seed_options(argv)) {
        Ok(a) => a,
        // clap quotes a bad argument as given, and on a terminal passes its escapes through.
        Err(e) if e.use_stderr() => {
            let mut text = String::new();
            for line in e.render().to_string().lines() {
                text.push_str(&escaped(line));
                text.push('\n');
            }
            eprint!("{text}");
            return ExitCode::from(u8::try_from(e.exit_code()).unwrap_or(2));
        }
        Err(e) => e.exit(),
    };
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err((code, msg)) => {
            if !msg.is_empty() {
                // Messages quote file names and input, which may hold terminal controls.
                eprintln!("constat: {}", escaped(&msg));
            }
            ExitCode::from(code)
        }
    }
}

use input::Failure;

fn run(args: &Args) -> Result<(), Failure> {
    // Names first: a missing named lookup file is a usage error before any work is done.
    let lookup = load_lookup(args.lookup.as_deref())?;
    let (services, svc_warnings) = Services::system();
    for w in svc_warnings {
        if args.verbose {
            eprintln!("constat: warning: {w}");
        }
    }
    let mut cache = if args.no_cache || args.numeric {
        None
    } else {
        let (c, warnings) = NameCache::load(&args.cache);
        for w in warnings {
            eprintln!("constat: warning: {w}");
        }
        Some(c)
    };

    let today = Local::now().date_naive();
    let range = match (args.all, args.date, args.from, args.to) {
        (true, ..) => None,
        (_, Some(d), ..) => Some((d, d)),
        (_, None, None, None) => Some((today, today)),
        (_, None, from, to) => {
            let to = to.unwrap_or(today);
            let from = from.unwrap_or(to);
            if from > to {
                return Err((
                    2,
                    format!(
                        "--from {} is after --to {}",
                        from.format("%Y-%m-%d"),
                        to.format("%Y-%m-%d")
                    ),
                ));
            }
            Some((from, to))
        }
    };
    if args.per_day && args.all {
        return Err((2, "--per-day needs --from/--to, not -a".into()));
    }
    let inputs = input::expand(&args.file)?;
    let progress = input::wants_progress(&inputs);
    let ranges: Vec<Option<(NaiveDate, NaiveDate)>> = match range {
        Some((a, b)) if args.per_day => a
            .iter_days()
            .take_while(|d| *d <= b)
            .map(|d| Some((d, d)))
            .collect(),
        r => vec![r],
    };
    let stdin_used = inputs.iter().any(|i| i.stdin);
    if stdin_used && ranges.len() > 1 {
        return Err((
            2,
            "--per-day reads the log once per day: it cannot read standard input".into(),
        ));
    }
    if args.by == By::Proc && args.format != formats::Format::Text {
        return Err((2, "--by proc prints text only".into()));
    }
    let mut reported = false;
    for range in ranges {
        let mut scan = Scan::range(range);
        scan.by_proc = args.by == By::Proc;
        scan.filter = scan::Filter {
            host: args.host.clone(),
            src: args.src.clone(),
            dst: args.dst.clone(),
            port: args.port.clone(),
            proto: args.proto.clone(),
        };
        let opts = input::Options {
            range,
            verbose: args.verbose,
            progress,
            host_name: args.host_name.clone(),
        };
        input::read_all(&inputs, &opts, &mut scan)?;
        scan.finish();
        reported |= report_one(args, range, &scan, &lookup, &services, cache.as_mut())?;
    }
    if args.quiet && !reported {
        return Err((3, String::new()));
    }
    Ok(())
}

fn report_one(
    args: &Args,
    range: Option<(NaiveDate, NaiveDate)>,
    scan: &Scan,
    lookup: &Lookup,
    services: &Services,
    mut cache: Option<&mut NameCache>,
) -> Result<bool, Failure> {
    if args.resolve && !scan.by_proc {
        if let Some(c) = cache.as_deref_mut() {
            resolve_unnamed(scan, lookup, c);
        }
    }
    let namer = Namer {
        lookup,
        services,
        cache: cache.as_deref(),
        numeric: args.numeric,
        no_any: args.no_any,
    };
    let layout = Layout {
        heading: match range {
            Some((a, b)) if a == b => format!("scanning for date {}", a.format("%Y-%m-%d")),
            Some((a, b)) => format!(
                "scanning from {} to {}",
                a.format("%Y-%m-%d"),
                b.format("%Y-%m-%d")
            ),
            None => "scanning whole file".to_string(),
        },
        bytes: args.bytes,
        table: true,
        anomalies: true,
    };
    let sections = args.sections.unwrap_or_default();
    let layout = Layout {
        table: sections.table,
        anomalies: sections.anomalies,
        ..layout
    };
    let has_content = scan.rows.iter().any(|(_, r)| r.n > 0)
        || scan.errors > 0
        || scan.health.has_trouble(scan.lost_events);
    if args.quiet && !has_content {
        return Ok(false);
    }
    let stdout = io::stdout().lock();
    let mut out = io::BufWriter::with_capacity(64 * 1024, stdout);
    let written = if scan.by_proc {
        render::report_by_proc(
            &mut out,
            &layout,
            &scan.rows,
            &scan.interner,
            scan.lost_events,
            scan.errors,
        )
    } else {
        let rows = namer.named_rows(&scan.rows, &scan.interner);
        let new = match (sections.new, range) {
            (true, Some((from, _))) => {
                let first = args
                    .file
                    .first()
                    .map(PathBuf::as_path)
                    .unwrap_or(Path::new("-"));
                let state = sections::state_path(&args.state_dir, first);
                Some(sections::new_items(scan, lookup, from, &state).map_err(|m| (1, m))?)
            }
            _ => None,
        };
        let report = sections::Report {
            heading: layout.heading.clone(),
            range,
            rows: &rows,
            bytes: args.bytes,
            sections,
            worst: sections::worst(scan),
            notable_counts: scan.notables.count,
            new,
            // HTML charts the first list (top destinations) whatever the sections.
            tops: if sections.top || args.format == formats::Format::Html {
                sections::tops(&rows, args.top)
            } else {
                Vec::new()
            },
            health: scan.health,
            hours: scan.hours,
            lost: scan.lost_events,
            errors: scan.errors,
        };
        match args.format {
            formats::Format::Text => render::report_with(
                &mut out,
                &layout,
                &rows,
                scan.lost_events,
                scan.errors,
                &mut |o| {
                    scan.packets.write(o, &namer)?;
                    sections::write_text(o, &report)
                },
            ),
            f => formats::write(&mut out, f, &report),
        }
    };
    match written.and_then(|_| out.flush()) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Err((1, String::new())),
        Err(e) => Err((1, format!("writing the report: {e}"))),
    }
}

fn load_lookup(named: Option<&Path>) -> Result<Lookup, Failure> {
    let path = named.unwrap_or(Path::new(DEFAULT_LOOKUP));
    match Lookup::load(path) {
        Ok((l, warnings)) => {
            for w in warnings {
                eprintln!("constat: warning: {w} (line skipped)");
            }
            Ok(l)
        }
        Err(e) if named.is_none() && e.kind() == io::ErrorKind::NotFound => Ok(Lookup::new()),
        Err(e) => Err((
            2,
            format!(
                "{}: cannot read lookup file: {e}",
                escaped(&path.display().to_string())
            ),
        )),
    }
}

/// Looks up, with live DNS, every address in the report that neither the lookup file nor the
/// cache names, and saves the answers.
fn resolve_unnamed(scan: &Scan, lookup: &Lookup, cache: &mut NameCache) {
    let now = chrono::Utc::now().timestamp().max(0) as u64;
    let mut asked = std::collections::HashSet::new();
    for ((src, _, _, dst), _) in &scan.rows {
        for h in [src, dst] {
            if let Host::Ip(a) = *h {
                if lookup.host_name(a).is_none() && cache.get(a).is_none() && asked.insert(a) {
                    if let Some(name) = lookup::resolve(a) {
                        cache.insert(a, &name, now);
                    }
                }
            }
        }
    }
    if let Err(e) = cache.save() {
        eprintln!(
            "constat: warning: {}: cannot save name cache: {e}",
            escaped(&cache.path().display().to_string())
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seed_single_dash_options_are_mapped() {
        let v = seed_options(["constat", "-noany", "-nc", "-n", "--", "-nc"].map(OsString::from));
        assert_eq!(v, ["constat", "--no-any", "--no-cache", "-n", "--", "-nc"]);
        let a = Args::parse_from(seed_options(
            ["constat", "-nc", "-noany", "-d", "2004-08-05"].map(OsString::from),
        ));
        assert!(a.no_cache && a.no_any && !a.numeric);
        assert_eq!(a.date, NaiveDate::from_ymd_opt(2004, 8, 5));
    }
}
