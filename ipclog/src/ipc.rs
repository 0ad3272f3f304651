//! `ipc` / `ipclog -1`: the connections open right now, printed once as the line log's H line
//! and one O line each (time = seconds open so far), then exit.

use std::io::Write;

use shared::logfmt::{self, WriteOptions};

use crate::conntrack;
use crate::error::Error;
use crate::names::Names;
use crate::sinks::Filter;

/// Prints the open connections that pass `filter`; with `names`, `-n`'s tokens (looked up
/// here and now: waiting is fine for a one-shot).
pub fn print(filter: &Filter, opts: WriteOptions, names: Option<&Names>) -> Result<(), Error> {
    let snap = conntrack::open_connections().map_err(|e| match e {
        Error::Permission(_) => e,
        e => e.prefixed("ipc: "),
    })?;
    let mut out = String::new();
    out.push_str(&logfmt::header_line(snap.at));
    out.push('\n');
    for ev in snap.events.iter().filter(|ev| filter.matches(ev)) {
        logfmt::write_event(ev, opts, &mut out);
        if let Some(n) = names {
            n.append_tokens(ev, &mut out);
        }
        out.push('\n');
    }
    match std::io::stdout().write_all(out.as_bytes()) {
        // `ipc | head`: the reader had what it wanted.
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        r => r.map_err(|e| Error::Run(format!("ipc: ipc: standard output: {e}"))),
    }
}
