//! Writes the seed inputs of every target into DIR/capture, DIR/logline and DIR/lookup (one
//! file per input), for a coverage-guided fuzzer to start from.
//! Usage: fuzz-seeds DIR

fn main() {
    let Some(dir) = std::env::args_os().nth(1) else {
        eprintln!("usage: fuzz-seeds DIR");
        std::process::exit(2);
    };
    let dir = std::path::PathBuf::from(dir);
    if ipclog_fuzz::seeds::corpus_dir().is_none() {
        eprintln!("fuzz-seeds: ../shared/corpus is absent: capture seeds are generated ones only");
    }
    for (name, seeds) in [
        ("capture", ipclog_fuzz::seeds::capture()),
        ("logline", ipclog_fuzz::seeds::logline()),
        ("lookup", ipclog_fuzz::seeds::lookup()),
    ] {
        let d = dir.join(name);
        if let Err(e) = std::fs::create_dir_all(&d) {
            eprintln!("fuzz-seeds: {}: {e}", d.display());
            std::process::exit(1);
        }
        for (i, s) in seeds.iter().enumerate() {
            let p = d.join(format!("seed-{i:04}"));
            if let Err(e) = std::fs::write(&p, s) {
                eprintln!("fuzz-seeds: {}: {e}", p.display());
                std::process::exit(1);
            }
        }
        println!("{name}: {} seeds in {}", seeds.len(), d.display());
    }
}
