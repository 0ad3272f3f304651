//! Reads a capture with the library and writes the line log to stdout: a way to use and
//! benchmark the packet source without the ipclog binary.
//! Usage: pcapread FILE [BPF...]  (all of ipclog's capture options are accepted too)

use std::io::Write;
use std::sync::atomic::AtomicBool;

use clap::Parser;
use ipclog_capture::CaptureArgs;
use shared::event::ConnEvent;
use shared::logfmt::{write_event, WriteOptions};
use shared::sink::EventSink;

#[derive(Parser)]
struct Cli {
    /// Count events instead of writing log lines (measures the tracker alone).
    #[arg(long)]
    null: bool,
    #[command(flatten)]
    capture: CaptureArgs,
}

struct LineSink {
    out: std::io::BufWriter<std::io::Stdout>,
    line: String,
    null: bool,
    events: u64,
}

impl EventSink for LineSink {
    fn event(&mut self, ev: &ConnEvent) {
        self.events += 1;
        if self.null {
            return;
        }
        self.line.clear();
        write_event(ev, WriteOptions::default(), &mut self.line);
        self.line.push('\n');
        let _ = self.out.write_all(self.line.as_bytes());
    }
    fn program(&mut self, _ts: chrono::DateTime<chrono::Utc>, message: &str) {
        let _ = writeln!(self.out, "P {message}");
    }
    fn flush(&mut self) {
        let _ = self.out.flush();
    }
}

fn main() {
    let cli = Cli::parse();
    let mut sink = LineSink {
        out: std::io::BufWriter::with_capacity(1 << 16, std::io::stdout()),
        line: String::new(),
        null: cli.null,
        events: 0,
    };
    let stop = AtomicBool::new(false);
    match ipclog_capture::run(&cli.capture, &mut sink, &stop, None) {
        Ok(s) => {
            sink.flush();
            eprintln!("{}; {} events", s.describe(), sink.events);
        }
        Err(e) => {
            eprintln!("pcapread: {e}");
            std::process::exit(e.exit_code);
        }
    }
}
