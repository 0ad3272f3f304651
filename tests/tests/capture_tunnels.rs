//! `ipclog -r` on a capture with a tunnel and a ping, as a user would run it with every output:
//! the line log's `tunnel_parents=` and `icmp=` tokens (read back by the log parser and by
//! constat without a complaint), the JSON `tunnel_parents` array and Zeek's ICMP ports, and
//! the SQLite history's `tunnel_parents` and `icmp` columns.

use std::process::Command;

use e2e::bins::{bin, scratch};
use e2e::pcapgen::{self, Encap, Link, Session};
use shared::event::EventKind;
use shared::logfmt::{parse_line, LogLine};

const T0: i64 = 1_700_000_000_000_000;
const MS: i64 = 1000;

#[test]
fn tunnel_parents_and_icmp_reach_the_log_json_and_history() {
    let d = scratch("cap-tunnels");
    let mut s = Session::new("10.0.0.1:40000", "10.0.0.2:80", 1000, 5000);
    s.handshake(T0)
        .data(T0 + 10 * MS, true, 100)
        .ack(T0 + 11 * MS, false)
        .data(T0 + 20 * MS, false, 300)
        .ack(T0 + 21 * MS, true)
        .close(T0 + 30 * MS);
    let (a, b) = ("192.0.2.1".parse().unwrap(), "192.0.2.2".parse().unwrap());
    let mut pkts = pcapgen::tunnelled(&Encap::Vxlan { vni: 7 }, s.client.ip(), a, b, &s.packets);
    pkts.push((T0 + 40 * MS, pcapgen::icmp(a, b, 8, 0, b"ping")));
    pkts.push((T0 + 41 * MS, pcapgen::icmp(b, a, 0, 0, b"ping")));
    let cap = d.join("t.pcap");
    pcapgen::write(&cap, &Link::Ethernet(vec![]), false, &pkts).unwrap();
    let (log, json, db) = (d.join("t.log"), d.join("t.json"), d.join("t.db"));
    let out = Command::new(bin("ipclog"))
        .arg("-r")
        .arg(&cap)
        .arg("-f")
        .arg(&log)
        .arg("--json")
        .arg(&json)
        .arg("--db")
        .arg(&db)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");

    // The line log: every C line read back; the TCP one names both VXLAN flows.
    let text = std::fs::read_to_string(&log).unwrap();
    let mut udp_uids = Vec::new();
    let (mut tcp_parents, mut icmp) = (None, None);
    for line in text.lines() {
        let LogLine::Conn(c) = parse_line(line).unwrap_or_else(|e| panic!("{e}: {line}")) else {
            continue;
        };
        if c.kind != EventKind::Close {
            continue;
        }
        match c.proto {
            17 => {
                assert_eq!(c.extra("tunnel_parents"), None, "{line}");
                udp_uids.push(c.extra("uid").unwrap().to_string());
            }
            6 => tcp_parents = c.extra("tunnel_parents").map(str::to_string),
            1 => {
                assert_eq!((c.sport, c.dport), (None, None), "{line}");
                icmp = c.extra("icmp").map(str::to_string);
            }
            _ => panic!("{line}"),
        }
    }
    assert_eq!(udp_uids.len(), 2, "{text}");
    assert_eq!(tcp_parents, Some(udp_uids.join(",")), "{text}");
    assert_eq!(icmp.as_deref(), Some("8/0"), "{text}");

    // constat reads the log and the history without a complaint.
    for f in [&log, &db] {
        let out = Command::new(bin("constat"))
            .args(["-a", "-n", "--no-cache", "-v", "-f"])
            .arg(f)
            .env("TZ", "UTC")
            .output()
            .unwrap();
        let report = String::from_utf8_lossy(&out.stdout);
        // -v names each unreadable line; only the closing count may be said.
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{out:?}");
        assert!(err.lines().all(|l| l.contains(" lines, ")), "{err}");
        assert!(report.contains("0 ERRORS"), "{report}");
        assert!(report.contains("10.0.0.1"), "{report}");
    }

    // JSON: tunnel_parents is an array (Zeek's set), ICMP ports are type and counterpart.
    let json = std::fs::read_to_string(&json).unwrap();
    let close = |proto: &str| {
        json.lines()
            .find(|l| {
                l.contains("\"event\":\"close\"") && l.contains(&format!("\"proto\":\"{proto}\""))
            })
            .unwrap_or_else(|| panic!("no {proto} close in {json}"))
            .to_string()
    };
    let want = format!(
        "\"tunnel_parents\":[\"{}\",\"{}\"]",
        udp_uids[0], udp_uids[1]
    );
    assert!(close("tcp").contains(&want), "{want} in {}", close("tcp"));
    assert!(!close("udp").contains("tunnel_parents"));
    let ping = close("icmp");
    assert!(
        ping.contains("\"id.orig_p\":8,") && ping.contains("\"id.resp_p\":0,"),
        "{ping}"
    );

    // The history: the same in its columns.
    let conn = store::open_read_only(&db).unwrap();
    let row = |sql: &str| -> Option<String> { conn.query_row(sql, [], |r| r.get(0)).unwrap() };
    assert_eq!(
        row("SELECT tunnel_parents FROM connections WHERE proto = 6"),
        tcp_parents
    );
    assert_eq!(
        row("SELECT icmp FROM connections WHERE proto = 1"),
        Some("8/0".into())
    );
    assert_eq!(
        row("SELECT max(tunnel_parents) FROM connections WHERE proto = 17"),
        None
    );
    let _ = std::fs::remove_dir_all(&d);
}
