#!/usr/bin/env bash
# constat throughput and memory on large synthetic logs.
#
#   bench/constat-bench.sh [LINES...]      default: 1000000 10000000
#
# For each size: generates a log with the `genlog` example (one day per million lines from
# 2004-08-01, ~1000 connections open at any time, counters on every C line; exactly the shared
# writer's format), then runs the release constat under /usr/bin/time -v for one day
# (-d 2004-08-01: the same million lines in every file) and for the whole file (-a), and prints
# elapsed time, lines/s and max RSS. For -d, memory must stay flat from 1M to 10M lines: it
# follows the open connections and the day's rows, not the file. For -a it follows the number
# of distinct report rows, which saturates with the generator's host pools.
# Needs about 1 GB of disk per 10M lines in $BENCH_DIR (default /tmp/constat-bench).
set -euo pipefail
cd "$(dirname "$0")/.."

sizes=("$@")
[ ${#sizes[@]} -gt 0 ] || sizes=(1000000 10000000)
dir=${BENCH_DIR:-/tmp/constat-bench}
target=${CARGO_TARGET_DIR:-target}
mkdir -p "$dir"

cargo build -q --release -p constat --bins --examples
constat="$target/release/constat"
genlog="$target/release/examples/genlog"

printf '%-10s %-16s %9s %12s %12s\n' lines mode seconds lines/s maxRSS_KB
for n in "${sizes[@]}"; do
    log="$dir/ipclog-$n-perday1M.log"
    if [ ! -s "$log" ]; then
        TZ=UTC "$genlog" "$n" $(( n > 1000000 ? n / 1000000 : 1 )) > "$log"
    fi
    # Warm the page cache so the first run does not measure the disk.
    cat "$log" > /dev/null
    for mode in "-d 2004-08-01" "-a"; do
        # shellcheck disable=SC2086
        TZ=UTC /usr/bin/time -v "$constat" -f "$log" $mode -nc --lookup lookup/constat.lookup \
            > "$dir/report-$n.txt" 2> "$dir/time-$n.txt"
        secs=$(awk -F': ' '/Elapsed \(wall clock\)/ {
            n = split($2, p, ":"); s = 0; for (i = 1; i <= n; i++) s = s * 60 + p[i]; print s }' \
            "$dir/time-$n.txt")
        rss=$(awk -F': ' '/Maximum resident set size/ {print $2}' "$dir/time-$n.txt")
        rate=$(awk -v n="$n" -v s="$secs" 'BEGIN { if (s > 0) printf "%.0f", n / s; else print "inf" }')
        printf '%-10s %-16s %9s %12s %12s\n' "$n" "$mode" "$secs" "$rate" "$rss"
        if ! tail -1 "$dir/report-$n.txt" | grep -qx '0 ERRORS'; then
            echo "unexpected report ending: $(tail -1 "$dir/report-$n.txt")" >&2
            exit 1
        fi
    done
done
