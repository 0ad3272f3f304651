#!/usr/bin/env bash
# constat on a large SQLite history and on rotated, gzip'd logs.
#
#   bench/constat-history-bench.sh [EVENTS]     default 27500000 (~10 M connections, 30 days)
#
# 1. Generates (once) a history with `genlog EVENTS 30 --db` (the `genlog` generator's events
#    written through ipclog's store writer: ~0.36 connections per event, 400 destinations,
#    30 days from 2004-08-01), then times a day's report from it and `constat query` for one
#    destination over 30 days and one day, a /24 over one day, a port over one day, and an
#    anomaly-free day scan (--state), each with SQLite's plan (--explain).
# 2. Generates a 4-day log (4M lines), splits it into ipclog.log.3.gz, .2.gz, .1 and the log,
#    and times the day report over the single file and over the glob (same report required).
# Needs ~3 GB of disk in $BENCH_DIR (default /tmp/constat-bench).
set -euo pipefail
cd "$(dirname "$0")/.."
events=${1:-27500000}
dir=${BENCH_DIR:-/tmp/constat-bench}
target=${CARGO_TARGET_DIR:-target}
mkdir -p "$dir"
cargo build -q --release -p constat --bins --examples
constat="$target/release/constat"
genlog="$target/release/examples/genlog"
export TZ=UTC
db="$dir/history-$events.db"
if [ ! -s "$db" ]; then
    /usr/bin/time -f "generated $db in %e s" "$genlog" "$events" 30 --db "$db" > /dev/null
fi
echo "connections: $(sqlite3 "$db" 'SELECT count(*) FROM connections')"
t() { # label, command...
    local label=$1; shift
    /usr/bin/time -f "%e s %M KB" -o "$dir/time" "$@" > "$dir/out"
    printf '%-44s %8s %10s  %s lines\n' "$label" "$(cut -d' ' -f1 "$dir/time")" \
        "$(cut -d' ' -f3 "$dir/time")KB" "$(wc -l < "$dir/out")"
}
lookup=lookup/constat.lookup
t "report -d 2004-08-15 (history)" "$constat" -f "$db" -d 2004-08-15 -nc --lookup $lookup
t "report -d 2004-08-15 --sections all --format html" "$constat" -f "$db" -d 2004-08-15 -nc \
    --lookup $lookup --sections all --format html --state-dir "$dir/state"
t "query --host 212.227.1.7 (30 days)" "$constat" query -f "$db" --host 212.227.1.7 \
    --from 2004-08-01 --to 2004-08-30
t "query --host 212.227.1.7 --from/--to one day" "$constat" query -f "$db" --host 212.227.1.7 \
    --from 2004-08-15 --to 2004-08-15
t "query --host 212.227.1.0/24 one day" "$constat" query -f "$db" --host 212.227.1.0/24 \
    --from 2004-08-15 --to 2004-08-15
t "query --port 22 one day" "$constat" query -f "$db" --port 22 --from 2004-08-15 --to 2004-08-15
"$constat" query -f "$db" --explain --host 212.227.1.7 --from 2004-08-01 --to 2004-08-30 | tail -n +2

log="$dir/rot4d/whole.log"
if [ ! -s "$log" ]; then
    mkdir -p "$dir/rot4d/rot"
    "$genlog" 4000000 4 > "$log"
    (cd "$dir/rot4d/rot" && split -n l/4 -d ../whole.log part && mv part00 ipclog.log.3 \
        && mv part01 ipclog.log.2 && mv part02 ipclog.log.1 && mv part03 ipclog.log \
        && gzip -f ipclog.log.3 ipclog.log.2)
fi
cat "$log" "$dir"/rot4d/rot/* > /dev/null
t "report -d 2004-08-02, one 4-day file" "$constat" -f "$log" -d 2004-08-02 -nc --lookup $lookup
cp "$dir/out" "$dir/one.txt"
t "report -d 2004-08-02, glob .3.gz .2.gz .1 log" "$constat" -f "$dir/rot4d/rot/ipclog.log*" \
    -d 2004-08-02 -nc --lookup $lookup
cmp "$dir/one.txt" "$dir/out" && echo "same report from the rotated files"
t "report -a, one 4-day file" "$constat" -f "$log" -a -nc --lookup $lookup
t "report -a, glob" "$constat" -f "$dir/rot4d/rot/ipclog.log*" -a -nc --lookup $lookup
