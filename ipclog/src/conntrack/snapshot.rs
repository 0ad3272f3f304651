//! `ipc` / `-1`'s source: the connections open right now, from one table dump, as open
//! events whose duration is the time open so far.

use chrono::{DateTime, Utc};

use shared::{ConnEvent, EventKind};

use super::processor::{base_event, state_of};
use super::{now_ns, ns_to_dt, socket};
use crate::error::Error;
use crate::ifaddr;

/// The open connections at one moment.
pub struct Snapshot {
    pub at: DateTime<Utc>,
    /// Oldest first.
    pub events: Vec<ConnEvent>,
}

/// Dumps the conntrack table.
pub fn open_connections() -> Result<Snapshot, Error> {
    let addrs = ifaddr::local_addrs().unwrap_or_default();
    let mut entries = Vec::new();
    socket::dump(|m| entries.push(m))?;
    let now = now_ns();
    let mut events: Vec<ConnEvent> = entries
        .iter()
        .map(|m| {
            let open = m.ts_start.unwrap_or(now);
            let mut ev = base_event(EventKind::Open, m, open, &addrs);
            ev.state = state_of(m, None);
            ev.duration = m.ts_start.map(|s| now.saturating_sub(s) as f64 / 1e9);
            ev.kernel_stop = None;
            ev
        })
        .collect();
    events.sort_by_key(|e| e.ts);
    Ok(Snapshot {
        at: ns_to_dt(now),
        events,
    })
}
