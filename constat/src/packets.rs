//! The packet-filter section: packets ipclog `--nflog` logged on the day, counted per rule
//! prefix, action, source, protocol and destination port, from the log's `F` lines or the
//! history's `packets` table. Printed only when there are any, so reports of connection logs
//! look as they always did.

use std::collections::BTreeMap;
use std::io::{self, Write};
use std::net::IpAddr;

use shared::packet::Action;
use shared::proto::proto_name;
use shared::text::field;

use crate::render::Namer;

/// (rule prefix as a field, action, source, protocol, destination port).
type Key = (String, Action, String, u8, Option<u16>);

/// What the scan counted.
#[derive(Debug, Default)]
pub struct Packets {
    counts: BTreeMap<Key, u64>,
    /// Packets the logger said it lost (`P ... lost N packets`).
    pub lost: u64,
}

impl Packets {
    /// Counts `n` packets; `prefix` as the rule gave it (a field is made of it here).
    pub fn add(
        &mut self,
        prefix: &str,
        action: Action,
        src: &str,
        proto: u8,
        dport: Option<u16>,
        n: u64,
    ) {
        let c = self
            .counts
            .entry((
                field(prefix).into_owned(),
                action,
                src.to_string(),
                proto,
                dport,
            ))
            .or_default();
        *c = c.saturating_add(n);
    }

    pub fn is_empty(&self) -> bool {
        self.counts.is_empty() && self.lost == 0
    }

    /// Writes the section: one row per key, then the total per rule.
    pub fn write(&self, out: &mut dyn Write, namer: &Namer<'_>) -> io::Result<()> {
        if self.is_empty() {
            return Ok(());
        }
        writeln!(
            out,
            "\npackets logged by the packet filter (ipclog --nflog)"
        )?;
        writeln!(
            out,
            "{:<15} {:<3} {:<15} {:<4} {:<8} {:>8}",
            "rule", "act", "src", "prot", "dport", "packets"
        )?;
        let mut per_rule: BTreeMap<(&str, Action), u64> = BTreeMap::new();
        for ((rule, action, src, proto, dport), n) in &self.counts {
            let shown_rule = if rule.is_empty() { "-" } else { rule };
            let src = match src.parse::<IpAddr>() {
                Ok(a) => namer.addr(a),
                Err(_) => field(src).into_owned(),
            };
            let prot = proto_name(*proto).map_or_else(|| proto.to_string(), str::to_string);
            writeln!(
                out,
                "{:<15} {:<3} {:<15} {:<4} {:<8} {:>8}",
                shown_rule,
                action.letter(),
                src,
                prot,
                namer.port(*proto, *dport),
                n
            )?;
            let t = per_rule.entry((shown_rule, *action)).or_default();
            *t = t.saturating_add(*n);
        }
        for ((rule, action), n) in per_rule {
            let what = match action {
                Action::Block => "blocked",
                Action::Pass => "passed",
                Action::Log => "logged",
            };
            writeln!(out, "rule {rule}: {n} packets {what}")?;
        }
        if self.lost > 0 {
            writeln!(
                out,
                "{} PACKETS LOST by the logger: these counts may be incomplete",
                self.lost
            )?;
        }
        writeln!(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lookup::{Lookup, Services};

    #[test]
    fn the_section_counts_per_rule_and_says_totals() {
        let (lookup, _) = Lookup::parse("10.9.0.1 client\n", "t");
        let services = Services::builtin();
        let namer = Namer {
            lookup: &lookup,
            services: &services,
            cache: None,
            numeric: false,
            no_any: false,
        };
        let mut p = Packets::default();
        let mut out = Vec::new();
        p.write(&mut out, &namer).unwrap();
        assert!(out.is_empty(), "no packets, no section");
        p.add("drop-ssh", Action::Block, "10.9.0.1", 6, Some(22), 2);
        p.add("drop-ssh", Action::Block, "10.9.0.1", 6, Some(22), 1);
        p.add("ok web", Action::Pass, "10.9.0.3", 6, Some(80), 4);
        p.lost = 5;
        p.write(&mut out, &namer).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(
            text.contains("drop-ssh        b   client          tcp  ssh             3"),
            "{text}"
        );
        assert!(text.contains("ok\\x20web       p   10.9.0.3"), "{text}");
        assert!(text.contains("rule drop-ssh: 3 packets blocked"), "{text}");
        assert!(text.contains("rule ok\\x20web: 4 packets passed"), "{text}");
        assert!(text.contains("5 PACKETS LOST"), "{text}");
    }
}
