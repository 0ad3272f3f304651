//! Build helpers. `cargo run -p xtask -- docs DIR` writes the man pages (DIR/man) and the
//! shell completions (DIR/completions) that the Debian package installs
//! (`packaging/build-deb`). Options, their help and their possible values come from the very
//! clap definitions the binaries parse (`ipclog::command()`, `constat::command()`), so the
//! pages cannot drift from `--help`; what clap does not know (the log format, the lookup file,
//! files, signals) is written here.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Command;
use clap_complete::Shell;
use clap_mangen::roff::{bold, italic, roman, Inline, Roff};
use clap_mangen::Man;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.as_slice() {
        [cmd, dir] if cmd == "docs" => match docs(Path::new(dir)) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("xtask: {dir}: {e}");
                ExitCode::from(1)
            }
        },
        _ => {
            eprintln!("usage: cargo run -p xtask -- docs DIR   (man pages and shell completions)");
            ExitCode::from(2)
        }
    }
}

/// A piece of a hand-written section.
enum Block<'a> {
    /// A paragraph.
    P(&'a str),
    /// A tagged paragraph: the tag in bold, the text indented below it.
    Item(&'a str, &'a str),
    /// Text shown as is (examples, file contents).
    Pre(&'a str),
}
use Block::{Item, Pre, P};

fn section(roff: &mut Roff, title: &str, blocks: &[Block]) {
    roff.control("SH", [title]);
    for b in blocks {
        match b {
            P(text) => {
                roff.control("PP", []);
                roff.text(inlines(text));
            }
            Item(tag, text) => {
                roff.control("TP", []);
                roff.text([bold(*tag)]);
                roff.text(inlines(text));
            }
            Pre(text) => {
                roff.control("PP", []);
                roff.control("nf", []);
                roff.control("RS", ["4"]);
                for line in text.lines() {
                    roff.text([roman(line)]);
                }
                roff.control("RE", []);
                roff.control("fi", []);
            }
        }
    }
}

/// Text with `*word*` in italics (file names, placeholders), the rest roman.
fn inlines(text: &str) -> Vec<Inline> {
    let mut out = Vec::new();
    for (i, part) in text.split('*').enumerate() {
        if part.is_empty() {
            continue;
        }
        out.push(if i % 2 == 1 {
            italic(part)
        } else {
            roman(part)
        });
    }
    out
}

/// Writes one page: clap's title, name, synopsis, description and options, then `extra`.
fn page(dir: &Path, cmd: Command, section_no: &str, extra: &[(&str, &[Block])]) -> io::Result<()> {
    let name = cmd.get_name().to_string();
    let version = cmd.get_version().unwrap_or_default().to_string();
    let man = Man::new(cmd)
        .section(section_no)
        .source(format!("ipclog {version}"))
        .manual(if section_no == "8" {
            "System Manager's Manual"
        } else {
            "User Commands"
        });
    let mut out = Vec::new();
    man.render_title(&mut out)?;
    man.render_name_section(&mut out)?;
    man.render_synopsis_section(&mut out)?;
    man.render_description_section(&mut out)?;
    man.render_options_section(&mut out)?;
    let mut roff = Roff::new();
    for (title, blocks) in extra {
        section(&mut roff, title, blocks);
    }
    roff.to_writer(&mut out)?;
    man.render_version_section(&mut out)?;
    fs::write(dir.join(format!("{name}.{section_no}")), out)
}

const LOG_FORMAT: &[Block] = &[
    P(
        "One line per event, fields separated by spaces; the O, S and C lines are fixed width \
       and a wider value widens its column. Times are local time YYYY-MM-DD-HH:MM:SS; - marks \
       an absent field.",
    ),
    Pre("P 2004-08-05-16:41:22 ipclog started
H 2004-08-05-16:41:22 prot src             dst             sport dport fl  time
I 2004-08-05-16:41:22 UP ppp0 217.235.218.69
O 2004-08-05-16:45:32 tcp  ppp0            212.227.119.68  32788 80    e      -
C 2004-08-05-16:45:42 tcp  ppp0            212.227.119.68  32788 80    t     10
P 2004-08-05-16:49:00 ipclog stopped, 0 errors"),
    Item(
        "P time message",
        "the logger itself: ipclog started, ipclog stopped, N errors, \
         lost N events, dropped N events (reason).",
    ),
    Item("H time ...", "the column titles of the O, S and C lines."),
    Item(
        "I time UP|DOWN ifname address",
        "a local address, at start and when addresses change.",
    ),
    Item(
        "O, S, C time prot src dst sport dport fl time [key=value ...]",
        "a connection opened, changed state, closed. prot: tcp, udp, icmp, ... or the protocol \
          number; src: the original source, the interface name when it is this host; dst: the \
          final destination (after DNAT), likewise; fl: the state flag; time: seconds open so \
          far (S) or in all (C), - on O.",
    ),
    Item(
        "fl",
        "e established, s handshake (SYN_SENT, SYN_RECV), w FIN_WAIT, CLOSE_WAIT or \
         LAST_ACK, t TIME_WAIT, c CLOSE, U not replied yet (UDP and other protocols), - replied \
         or no state.",
    ),
    Item(
        "key=value",
        "optional tokens after the time column: found=start (open when the \
         logger started), orig_pkts, orig_ip_bytes, resp_pkts, resp_ip_bytes (counters), \
         nat_src and orig_dst (with -N), src_name, dst_name, service (with -n), mark, zone, \
         kstart, kstop, and from packet captures orig_bytes, resp_bytes, conn_state, history, \
         uid and the anomaly counts retrans, syn_retrans, rst, long_delay, frag, long_conn.",
    ),
    P(
        "Text from outside (interface and host names, quoted text in P lines) never reaches a \
       terminal raw: control characters are written \\xHH, the Unicode bidi controls \\uXXXX, \
       and in a column or token a space and a backslash as \\x20 and \\x5c, so a line always \
       splits into the same fields. constat(1) reads such a field back as the name it stands \
       for.",
    ),
];

const SYSLOG: &[Block] = &[
    P(
        "With --syslog each line goes to the syslog daemon's socket (/dev/log, or \
       --syslog-socket) with the ident ipclog and the facility --syslog-facility (default \
       daemon), as ipmon(8) -s does. Syslog's own time stamp has no fraction of a second and \
       no year, so the message keeps the event's time in place of the line log's time stamp, \
       HH:MM:SS.ffffff:",
    ),
    Pre("<30>Nov 30 05:40:01 ipclog[812]: O 05:40:01.123456 udp  eth0 192.0.2.7 40999 53 U -"),
    P(
        "Priorities: connection events info, P lines notice, P lines about lost or dropped \
       events and failures warning, events carrying anomaly counts (packet captures) warning. \
       --syslog-format rfc5424 sends RFC 5424 messages: the event's full time with \
       microseconds and time zone in the header, the line letter as MSGID and the connection \
       as structured data [conn@32473 kind proto src dst sport dport state duration]. A \
       message the daemon does not take counts as a write error (exit status 1).",
    ),
];

const IPCLOG_FILES: &[Block] = &[
    Item(
        "/var/log/ipclog.log",
        "the line log of the packaged service (rotated daily by \
         /etc/logrotate.d/ipclog; SIGHUP reopens it).",
    ),
    Item(
        "/var/lib/ipclog/history.db",
        "the SQLite history of the packaged service.",
    ),
    Item(
        "/etc/default/ipclog",
        "IPCLOG_OPTS: the options the service runs ipclog with.",
    ),
    Item(
        "ipclog.service",
        "the service: user ipclog, CAP_NET_ADMIN only, Type=notify (ipclog \
         says READY=1 once the connections open at start are logged).",
    ),
    Item(
        "ipclog-capture@.service",
        "the packet capture variant, ipclog-capture@IFACE: -i \
         IFACE, CAP_NET_RAW only.",
    ),
];

const SIGNALS: &[Block] = &[
    Item(
        "SIGHUP",
        "reopen the log files (after logrotate moved them).",
    ),
    Item(
        "SIGTERM, SIGINT",
        "stop: the last events are written, the P line ipclog stopped, N \
         errors ends the log.",
    ),
];

const IPCLOG_EXIT: &[Block] = &[P(
    "0 ok (also when the reader of an output pipe went away); 1 failure while running \
       (anything not written: each output's count is said on standard error at the end); 2 \
       bad usage, missing permission (CAP_NET_ADMIN) or a file, database or socket that cannot \
       be used at start.",
)];

const IPCLOG_SEE_ALSO: &[Block] = &[P(
    "ipc(8), constat(1), constat.lookup(5), conntrack(8), ipmon(8), logrotate(8), \
     systemd.exec(5)",
)];

const IPC_DESCRIPTION: &[Block] = &[
    P(
        "ipc prints the connections Netfilter's connection tracking holds right now and exits: \
       the H line of the line log, then one O line per connection, its time column the \
       seconds it has been open so far. It is ipclog invoked by another name (the same as \
       ipclog -1) and takes ipclog's name, NAT and filter options. It needs CAP_NET_ADMIN.",
    ),
    Pre("# ipc --proto tcp -n"),
    P("The line format is described in ipclog(8), section LOG FORMAT."),
];

const CONSTAT_FILES: &[Block] = &[
    Item("/var/log/ipclog.log", "the log read by default (-f)."),
    Item(
        "/etc/constat.lookup",
        "names for hosts, networks and services: constat.lookup(5).",
    ),
    Item(
        "/var/cache/constat/names",
        "the reverse-DNS name cache (--cache, --resolve).",
    ),
    Item(
        "/etc/cron.daily/constat",
        "mails yesterday's report to root (Debian package).",
    ),
];

const CONSTAT_SEE_ALSO: &[Block] = &[P("constat-query(1), constat.lookup(5), ipclog(8), ipc(8)")];
const QUERY_SEE_ALSO: &[Block] = &[P("constat(1), ipclog(8)")];

const LOOKUP_FORMAT: &[Block] = &[
    P(
        "constat(1) prints the names of this file instead of addresses and port numbers, so \
       every address not listed stands out in the report. It reads /etc/constat.lookup unless \
       --lookup names another file; the default file may be absent. One entry per line:",
    ),
    Item("ADDRESS NAME", "one host, IPv4 or IPv6."),
    Item(
        "CIDR NAME",
        "a network; a host line beats it, a longer prefix beats a shorter one.",
    ),
    Item(
        "PORT/PROTO NAME",
        "a service; beats /etc/services and constat's built-in table.",
    ),
    P(
        "Everything after a # is a comment. NAME is one word. A bad line (also one that is not \
       UTF-8) is reported on standard error as *file*:*line*: reason and skipped; the other \
       lines still count. An address, network or service named twice keeps the first line's \
       name and the later line is reported as a duplicate. http and https destinations not \
       named here are shown as any (constat --no-any shows each).",
    ),
];

const LOOKUP_SEE_ALSO: &[Block] = &[P("constat(1), ipclog(8), services(5)")];

/// The hand-written page of the lookup file: clap knows nothing of it.
fn lookup_page(dir: &Path, version: &str) -> io::Result<()> {
    let mut roff = Roff::new();
    roff.control(
        "TH",
        [
            "constat.lookup",
            "5",
            "",
            &format!("ipclog {version}"),
            "File Formats Manual",
        ],
    );
    roff.control("SH", ["NAME"]);
    roff.text([roman(
        "constat.lookup - names of hosts, networks and services for constat",
    )]);
    roff.control("SH", ["SYNOPSIS"]);
    roff.text([roman("/etc/constat.lookup")]);
    section(&mut roff, "DESCRIPTION", LOOKUP_FORMAT);
    section(
        &mut roff,
        "EXAMPLE",
        &[Pre(include_str!("../../lookup/constat.lookup"))],
    );
    section(&mut roff, "SEE ALSO", LOOKUP_SEE_ALSO);
    let mut out = Vec::new();
    roff.to_writer(&mut out)?;
    fs::write(dir.join("constat.lookup.5"), out)
}

/// ipc's command: the options of ipclog's that mean something to it, as ipclog defines them.
fn ipc_command() -> Command {
    const IPC_ARGS: &[&str] = &[
        "nat",
        "resolve",
        "numeric_ports",
        "proto",
        "port",
        "host",
        "iface",
    ];
    let ipclog = ipclog::command();
    // clap takes only 'static text; this process ends right after writing the pages.
    let version: &'static str = Box::leak(
        ipclog
            .get_version()
            .unwrap_or_default()
            .to_string()
            .into_boxed_str(),
    );
    Command::new("ipc")
        .version(version)
        .about("print the connections open right now (ipclog -1)")
        .after_help("Manual: man ipc, man ipclog (the line format).")
        .args(
            ipclog
                .get_arguments()
                .filter(|a| IPC_ARGS.contains(&a.get_id().as_str()))
                .cloned(),
        )
}

fn docs(dir: &Path) -> io::Result<()> {
    let man = dir.join("man");
    let comp = dir.join("completions");
    fs::create_dir_all(&man)?;
    fs::create_dir_all(&comp)?;
    let ipclog = ipclog::command();
    let version = ipclog.get_version().unwrap_or_default().to_string();
    page(
        &man,
        ipclog.clone(),
        "8",
        &[
            ("LOG FORMAT", LOG_FORMAT),
            ("SYSLOG", SYSLOG),
            ("FILES", IPCLOG_FILES),
            ("SIGNALS", SIGNALS),
            ("EXIT STATUS", IPCLOG_EXIT),
            ("SEE ALSO", IPCLOG_SEE_ALSO),
        ],
    )?;
    page(
        &man,
        ipc_command(),
        "8",
        &[("OUTPUT", IPC_DESCRIPTION), ("SEE ALSO", IPCLOG_SEE_ALSO)],
    )?;
    let constat = constat::command();
    let notes = constat
        .get_after_help()
        .map(|h| h.to_string())
        .unwrap_or_default();
    page(
        &man,
        constat.clone(),
        "1",
        &[
            ("NOTES", &[Pre(&notes)]),
            ("FILES", CONSTAT_FILES),
            ("SEE ALSO", CONSTAT_SEE_ALSO),
        ],
    )?;
    // `constat query` has options of its own: a page of its own, as git's subcommands have.
    let query = constat
        .find_subcommand("query")
        .expect("constat query")
        .clone()
        .name("constat-query");
    let query_notes = query
        .get_after_help()
        .map(|h| h.to_string())
        .unwrap_or_default();
    page(
        &man,
        query,
        "1",
        &[
            ("NOTES", &[Pre(&query_notes)]),
            ("SEE ALSO", QUERY_SEE_ALSO),
        ],
    )?;
    lookup_page(&man, &version)?;
    for mut cmd in [ipclog, ipc_command(), constat] {
        let name = cmd.get_name().to_string();
        for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
            let path: PathBuf = clap_complete::generate_to(shell, &mut cmd, &name, &comp)?;
            // generate_to names the bash file NAME.bash; bash-completion looks for NAME.
            if shell == Shell::Bash {
                fs::rename(&path, comp.join(&name))?;
            }
        }
    }
    Ok(())
}
