//! The SQLite history: one row per connection, updated as it changes state and closes, plus
//! one row per logger run.
//!
//! ipclog's database sink hands [`Store::write_batch`] the [`shared::ConnEvent`]s its sources
//! produced, in batches: a connection's first event inserts its row, later ones update it.
//! constat opens the file with [`open_read_only`] and reports from the rows. The columns are
//! those of [`shared::record::FIELDS`]: [`schema`] generates the tables and statements from
//! them, `bind` binds a row's values in that order, `writer` batches (one transaction per
//! batch, prepared statements, WAL, so a flood costs one fsync per batch, not per event),
//! `open` checks the file before SQLite opens it, `runs` keeps the runs table. The schema's
//! version is kept in `PRAGMA user_version`. Version 2 only added nullable columns and the
//! `packets` table to version 1, so a version-1 file is upgraded in place when ipclog opens
//! it for writing (`ALTER TABLE … ADD COLUMN`, in the same transaction that checks it), and
//! read as it is by constat (the new columns read as NULL, through temporary views; the file
//! is not written). A database of a newer or unknown version is refused at open.
//!
//! ## `connections`
//! | column | meaning |
//! |---|---|
//! | `id` | row id |
//! | `run_id` | the `runs` row of the logger that first wrote it |
//! | `source` | `conntrack` or `pcap` |
//! | `conn_id` | conntrack id or packet-tracker flow number (unique among open connections) |
//! | `uid` | Zeek-style unique id (packet tracker) |
//! | `proto` | IP protocol number |
//! | `orig_h`, `orig_p`, `resp_h`, `resp_p` | the original tuple: originator → responder as first seen |
//! | `reply_src`, `reply_sport`, `reply_dst`, `reply_dport` | the reply tuple (conntrack), shows NAT |
//! | `src`, `dst`, `dport` | what the log shows: address or local interface name, final port |
//! | `src_iface`, `dst_iface` | local interface of the originator / responder, if local |
//! | `direction` | `in`, `out`, `fwd`, `local` or `-` |
//! | `day` | local date (`YYYY-MM-DD`) the connection opened: constat's per-day key |
//! | `open_ts`, `close_ts` | epoch seconds; `close_ts` NULL while open |
//! | `found_at_start` | 1 when the logger found it already open (open time unknown) |
//! | `last_state`, `flag` | last TCP state name (or `UNREPLIED`/`REPLIED`/`OTHER`) and log flag |
//! | `duration` | seconds from open to the last state change/close |
//! | `orig_pkts`, `orig_ip_bytes`, `resp_pkts`, `resp_ip_bytes` | counters, IP level (NULL if unknown) |
//! | `orig_bytes`, `resp_bytes` | payload bytes (packet captures) |
//! | `conn_state`, `history` | Zeek's conn_state and history (packet captures) |
//! | `retrans`, `syn_retrans`, `rst`, `long_delay`, `frag`, `long_conn` | anomaly counts |
//! | `mark`, `zone`, `kstart`, `kstop` | conntrack mark, zone, kernel start/stop (epoch s) |
//!
//! Indexes: `connections_day (day)` for per-day queries, `connections_orig_h (orig_h)` and
//! `connections_resp_h (resp_h)` for per-host ones. Each is one short key: every index costs
//! every insert a B-tree descent, and under a flood the host indexes are written at random
//! places. (Databases created before 2026-11-25 have `(day, src, proto, dport)`,
//! `(orig_h, day)`, `(resp_h, day)` and a partial index of open rows; they answer the same
//! queries and are kept as they are.)
//!
//! ## `packets` (since version 2)
//! One row per packet the packet filter logged (ipclog `--nflog`): `run_id`, `ts` (epoch s),
//! `day`, `grp` (log group), `prefix`, `action` (`block`, `pass`, `log`), `in_iface`,
//! `out_iface`, `proto`, `src`, `sport`, `dst`, `dport`, `hdr_len`, `len`, `tcp_flags`
//! (ipmon's letters), `icmp_type`, `icmp_code`, `mark`, `ct_state`, `related` (the
//! connection an ICMP error is about, `udp:SRC,SPORT->DST,DPORT`) and `related_id` (its
//! conntrack id). Index `packets_day (day)`.
//!
//! ## `runs`
//! `id`, `started`, `stopped` (epoch s, NULL while running or after a crash), `source`,
//! `command`, `errors`, `lost_events`, `dropped`.

mod bind;
mod open;
mod packets;
mod runs;
pub mod schema;
mod writer;

#[cfg(test)]
mod tests;

pub use open::{open_read_only, open_sqlite, StoreError};
pub mod pg;
pub use schema::SCHEMA_VERSION;
pub use writer::Store;
