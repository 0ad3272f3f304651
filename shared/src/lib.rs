//! The one data model both tools share: a [`ConnEvent`] says that a connection opened, changed
//! state or closed, whichever source saw it (conntrack or packets); [`logfmt`] turns events into
//! the constat-compatible line log and parses that log back; [`store`] keeps the same events as
//! one SQLite row per connection. Sources produce events, sinks consume them, and neither side
//! knows the other: this crate is the contract between them.

pub mod event;
pub mod logfmt;
pub mod outfile;
pub mod proto;
pub mod sink;
pub mod store;
pub mod text;

pub use event::{
    Anomalies, ConnEvent, ConnKey, ConnState, Counters, Direction, EventKind, FlowTuple, Source,
    TcpState, ZeekState,
};
