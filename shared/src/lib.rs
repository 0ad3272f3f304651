//! The one data model both tools share. A source (conntrack's netlink messages in ipclog, or
//! packets in `ipclog-capture`) turns what it sees into [`ConnEvent`]s: a connection opened,
//! changed state or closed. Sinks ([`sink::EventSink`]) take the events without knowing the
//! source: [`logfmt`] writes the constat-compatible line log (and reads it back for constat's
//! report), [`json`] makes JSON objects, and the `store` crate keeps one SQLite row per
//! connection, which constat reports from as well. [`record`] lists the fields of a connection
//! once, with the name each output gives them, and every output is generated from that list.
//!
//! Also here: [`proto`] (protocol numbers and names), [`net`] (address text, networks),
//! [`text`] (escaping foreign text for terminals and logs) and [`outfile`] (opening output
//! files safely as root).

pub mod event;
pub mod json;
pub mod logfmt;
pub mod net;
pub mod outfile;
pub mod packet;
pub mod proto;
pub mod record;
pub mod sink;
pub mod text;

#[cfg(test)]
mod testdata;

pub use event::{
    Anomalies, ConnEvent, ConnKey, ConnState, Counters, Direction, EventKind, FlowTuple,
    IcmpTypeCode, Process, Source, TcpState, ZeekState,
};
