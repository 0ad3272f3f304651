//! The bounded fuzz run of `cargo test`: each target gets its saved regression inputs and every
//! seed as they are, then FUZZ_SECONDS (default 20) of seeded stacked mutations of the seeds
//! (see `ipclog_fuzz::mutate`). No fuzzer needs installing; a failure prints the seed and
//! the input, and saves the input for `fuzz/regressions/`. FUZZ_SEED repeats a run's sequence
//! of inputs (the number of inputs depends on the machine's speed).

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use ipclog_fuzz::mutate::{mutate, Rng};
use ipclog_fuzz::{seeds, Target};

fn seconds() -> f64 {
    std::env::var("FUZZ_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20.0)
}

/// FUZZ_SEED, or a new one each run: CI explores new inputs every time, and says which.
fn base_seed() -> u64 {
    std::env::var("FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(1, |d| d.as_nanos() as u64)
        })
}

/// The saved inputs that once failed (fuzz/regressions/NAME/*).
fn regressions(name: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let dir = seeds::repo_root().join("fuzz/regressions").join(name);
    let mut out: Vec<(PathBuf, Vec<u8>)> = std::fs::read_dir(&dir)
        .map(|rd| {
            rd.flatten()
                .map(|e| e.path())
                .filter(|p| p.is_file() && p.file_name().is_some_and(|n| n != "README.md"))
                .map(|p| {
                    let b = std::fs::read(&p).expect("read a regression input");
                    (p, b)
                })
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}

fn hex(b: &[u8]) -> String {
    b.iter().take(512).map(|x| format!("{x:02x}")).collect()
}

/// Runs `target` on `input`; on a panic saves the input and fails with what to do next.
fn exec(name: &str, target: Target, input: &[u8], what: &str) {
    if catch_unwind(AssertUnwindSafe(|| target(input))).is_ok() {
        return;
    }
    let h = input.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| {
        (h ^ b as u64).wrapping_mul(0x100_0000_01b3)
    });
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("fuzz-failures");
    let _ = std::fs::create_dir_all(&dir);
    let path = dir.join(format!("{name}-{h:016x}"));
    let _ = std::fs::write(&path, input);
    panic!(
        "{name}: {what} failed (panic above). Input ({} bytes) saved as {}; \
         once fixed, copy it into fuzz/regressions/{name}/. First bytes: {}",
        input.len(),
        path.display(),
        hex(input)
    );
}

fn run(name: &str, target: Target, seeds: Vec<Vec<u8>>, dict: &[&[u8]], max_len: usize) {
    assert!(!seeds.is_empty(), "{name}: no seeds");
    for (p, input) in regressions(name) {
        exec(
            name,
            target,
            &input,
            &format!("regression input {}", p.display()),
        );
    }
    for (i, s) in seeds.iter().enumerate() {
        exec(name, target, s, &format!("seed {i}"));
    }
    let base = base_seed();
    let seed = name
        .bytes()
        .fold(base, |h, b| (h ^ b as u64).wrapping_mul(0x100_0000_01b3));
    eprintln!(
        "{name}: {} seeds, mutating for {} s, FUZZ_SEED={base}",
        seeds.len(),
        seconds()
    );
    let mut rng = Rng::new(seed);
    // Seeds and some earlier mutants, so that mutations stack over generations.
    let mut pool = seeds.clone();
    const KEPT: usize = 1024;
    let start = Instant::now();
    let deadline = start + Duration::from_secs_f64(seconds());
    let mut n = 0u64;
    while Instant::now() < deadline {
        for _ in 0..16 {
            let mut input = pool[rng.below(pool.len())].clone();
            mutate(&mut rng, &mut input, &pool, dict, max_len);
            exec(
                name,
                target,
                &input,
                &format!("mutant {n} (FUZZ_SEED={base})"),
            );
            n += 1;
            if rng.one_in(8) {
                if pool.len() < seeds.len() + KEPT {
                    pool.push(input);
                } else {
                    let i = seeds.len() + rng.below(KEPT);
                    pool[i] = input;
                }
            }
        }
    }
    let secs = start.elapsed().as_secs_f64();
    eprintln!(
        "{name}: {n} executions in {secs:.1} s ({:.0}/s), no failure",
        n as f64 / secs
    );
    assert!(n > 0);
}

#[test]
fn fuzz_capture_frames_through_parser_and_tracker() {
    run(
        "capture",
        ipclog_fuzz::capture,
        seeds::capture(),
        seeds::CAPTURE_DICT,
        32 * 1024,
    );
}

#[test]
fn fuzz_log_lines_and_log_reader() {
    run(
        "logline",
        ipclog_fuzz::logline,
        seeds::logline(),
        seeds::LOGLINE_DICT,
        8 * 1024,
    );
}

#[test]
fn fuzz_lookup_and_name_cache_files() {
    run(
        "lookup",
        ipclog_fuzz::lookup,
        seeds::lookup(),
        seeds::LOOKUP_DICT,
        8 * 1024,
    );
}
