#!/usr/bin/env bash
# Coverage-guided fuzzing of one target with libFuzzer (cargo fuzz) on the stable toolchain.
# Usage: fuzz/run.sh TARGET SECONDS      TARGET: capture | logline | lookup
# Needs cargo-fuzz (cargo install cargo-fuzz --locked) and a C++ compiler. The corpus grows
# in fuzz/corpus/TARGET across runs; crashing inputs land in fuzz/artifacts/TARGET; the run's
# output is kept in fuzz/logs/. NICE (default 19) sets the fuzzer's priority.
set -euo pipefail
cd "$(dirname "$0")/.."

target=${1:-}
secs=${2:-}
case "$target" in
capture | logline | lookup) ;;
*)
    echo "usage: fuzz/run.sh capture|logline|lookup SECONDS" >&2
    exit 2
    ;;
esac
if ! [[ "$secs" =~ ^[0-9]+$ ]] || [ "$secs" -eq 0 ]; then
    echo "fuzz/run.sh: SECONDS must be a positive whole number, not '$secs'" >&2
    exit 2
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "fuzz/run.sh: cargo fuzz is missing: cargo install cargo-fuzz --locked" >&2
    exit 2
fi

# cargo fuzz passes -Z flags (sanitizer coverage) that stable rustc accepts only with this.
export RUSTC_BOOTSTRAP=1
# No sanitizer: the code under test is safe Rust (its one unsafe block is a prefetch hint),
# and without ASan it runs about twice as fast. Debug assertions and overflow checks stay on.
fuzz=(cargo fuzz run --fuzz-dir fuzz/libfuzzer --sanitizer none)

# regressions/TARGET may be absent in a clone (git keeps no empty directory).
mkdir -p "fuzz/corpus/$target" "fuzz/artifacts/$target" "fuzz/regressions/$target" fuzz/logs
cargo run -q -p ipclog-fuzz --bin fuzz-seeds -- fuzz/seeds >/dev/null
cargo fuzz build --fuzz-dir fuzz/libfuzzer --sanitizer none "$target"

log="fuzz/logs/$target-$(date -u +%Y%m%dT%H%M%SZ).log"
echo "fuzz/run.sh: $target for $secs s, output in $log"
# The first directory receives new inputs; seeds and regressions are only read.
set +e
nice -n "${NICE:-19}" "${fuzz[@]}" "$target" "fuzz/corpus/$target" "fuzz/seeds/$target" \
    "fuzz/regressions/$target" -- \
    -max_total_time="$secs" -max_len=32768 -timeout=10 -rss_limit_mb=2048 \
    -artifact_prefix="fuzz/artifacts/$target/" -print_final_stats=1 >"$log" 2>&1
status=$?
set -e
grep -E '^stat::(number_of_executed_units|average_exec_per_sec|peak_rss_mb)|^Done [0-9]+ runs' "$log" || true
echo "corpus: $(find "fuzz/corpus/$target" -type f | wc -l) inputs"
if [ "$status" -ne 0 ]; then
    echo "fuzz/run.sh: $target FAILED (exit $status): see $log and fuzz/artifacts/$target/" >&2
    tail -n 40 "$log" >&2
fi
exit "$status"
