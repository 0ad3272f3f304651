//! The `packets` table: one row per packet the packet filter logged (ipclog `--nflog`),
//! written in batches like the connections (one transaction per batch).

use rusqlite::params;
use shared::event::epoch_secs;
use shared::packet::{PacketConn, PacketEvent};

use crate::writer::Store;

/// The table and its index (part of the schema since version 2).
pub const PACKETS: &str = "
CREATE TABLE IF NOT EXISTS packets (
    id          INTEGER PRIMARY KEY,
    run_id      INTEGER REFERENCES runs(id),
    ts          REAL NOT NULL,
    day         TEXT NOT NULL,
    grp         INTEGER NOT NULL,
    prefix      TEXT NOT NULL,
    action      TEXT NOT NULL,
    in_iface    TEXT,
    out_iface   TEXT,
    proto       INTEGER NOT NULL,
    src         TEXT NOT NULL,
    sport       INTEGER,
    dst         TEXT NOT NULL,
    dport       INTEGER,
    hdr_len     INTEGER NOT NULL,
    len         INTEGER NOT NULL,
    tcp_flags   TEXT,
    icmp_type   INTEGER,
    icmp_code   INTEGER,
    mark        INTEGER,
    ct_state    TEXT,
    related     TEXT,
    related_id  INTEGER
);
CREATE INDEX IF NOT EXISTS packets_day ON packets(day);
";

const INSERT: &str = "INSERT INTO packets (run_id, ts, day, grp, prefix, action, in_iface, \
    out_iface, proto, src, sport, dst, dport, hdr_len, len, tcp_flags, icmp_type, icmp_code, \
    mark, ct_state, related, related_id) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, \
    ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20, ?21, ?22)";

impl Store {
    /// Writes `packets` in one transaction; on error nothing of the batch is written.
    pub fn write_packets(&mut self, packets: &[PacketEvent]) -> rusqlite::Result<()> {
        let tx = self.conn.transaction()?;
        {
            let mut stmt = tx.prepare_cached(INSERT)?;
            let mut text = String::new();
            for p in packets {
                let day =
                    p.ts.with_timezone(&chrono::Local)
                        .format("%Y-%m-%d")
                        .to_string();
                let flags = p.tcp_flags.map(|f| {
                    let mut s = String::new();
                    shared::packet::push_tcp_flags(f, &mut s);
                    s[1..].to_string()
                });
                let related = p.conn.filter(PacketConn::related).map(|c| {
                    text.clear();
                    c.push_tuple(&mut text);
                    text.clone()
                });
                stmt.execute(params![
                    self.run_id,
                    epoch_secs(p.ts),
                    day,
                    p.group,
                    p.prefix,
                    p.action.word(),
                    p.in_iface,
                    p.out_iface,
                    p.proto,
                    p.src.to_string(),
                    p.sport,
                    p.dst.to_string(),
                    p.dport,
                    p.hdr_len,
                    p.total_len,
                    flags,
                    p.icmp.map(|i| i.0),
                    p.icmp.map(|i| i.1),
                    p.mark,
                    p.conn.and_then(|c| c.state),
                    related,
                    p.conn.filter(PacketConn::related).and_then(|c| c.id),
                ])?;
            }
        }
        tx.commit()
    }
}
