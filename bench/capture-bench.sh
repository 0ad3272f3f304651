#!/usr/bin/env bash
# Benchmark of `ipclog -r` against the floor (a bare libpcap read loop) and tshark.
# Generates captures of many concurrent TCP/UDP connections, reads each with:
#   floor         ipclog/capture/examples/floor.rs (libpcap next_packet, nothing else)
#   ipclog -r     the real binary, line log to /dev/null
#   tracker       ipclog/capture/examples/pcapread --null (the capture library, no log output)
#   tshark        tshark -q -z conv,tcp
# and prints wall time, max RSS and ratios. Memory flatness: the same with 1x, 2x, 4x packets.
# Usage: bench/capture-bench.sh [PACKETS] [CONCURRENT] [DIR]   (defaults 2000000 10000 /tmp/capbench)
set -euo pipefail
PACKETS=${1:-2000000}
CONC=${2:-10000}
DIR=${3:-/tmp/capbench}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
mkdir -p "$DIR"
cargo build --release -q --manifest-path "$ROOT/Cargo.toml" -p ipclog -p ipclog-capture --bins --examples
EX=$TARGET/release/examples
IPCLOG=$TARGET/release/ipclog

measure() { # name, command...: prints "name seconds maxrss_kb"
  local name=$1; shift
  local tf
  tf=$(mktemp)
  /usr/bin/time -o "$tf" -f "%e %M" "$@" >/dev/null 2>&1 || true
  echo "$name $(tail -1 "$tf")"
  rm -f "$tf"
}

best_of() { # runs measure 3 times, keeps the fastest
  local best="" t
  for _ in 1 2 3; do
    r=$(measure "$@")
    t=$(echo "$r" | awk '{print $2}')
    if [ -z "$best" ] || awk -v a="$t" -v b="$(echo "$best" | awk '{print $2}')" 'BEGIN{exit !(a<b)}'; then best=$r; fi
  done
  echo "$best"
}

for mult in 1 2 4; do
  n=$((PACKETS * mult / 2))
  f=$DIR/bench-$n.pcap
  [ -f "$f" ] || "$EX/gencap" "$f" "$n" "$CONC" 2>/dev/null
done
N=$PACKETS
F=$DIR/bench-$N.pcap
echo "capture: $F ($(du -h "$F" | cut -f1), $N packets, $CONC concurrent flows)"
floor=$(best_of floor "$EX/floor" "$F")
ipc=$(best_of "ipclog-r" "$IPCLOG" -r "$F" -f /dev/null)
trk=$(best_of tracker "$EX/pcapread" --null -r "$F")
tsh=$(measure tshark tshark -q -n -z conv,tcp -r "$F")
ft=$(echo "$floor" | awk '{print $2}')
tt=$(echo "$tsh" | awk '{print $2}')
printf "%-10s %8s %10s %10s %10s\n" what seconds maxRSS_MB x_floor tshark/x
for r in "$floor" "$ipc" "$trk" "$tsh"; do
  echo "$r" | awk -v ft="$ft" -v tt="$tt" '{printf "%-10s %8.2f %10.1f %10.2f %10.1f\n", $1, $2, $3/1024, $2/ft, tt/$2}'
done
echo "memory as the file grows (ipclog -r, max RSS):"
for mult in 1 2 4; do
  n=$((PACKETS * mult / 2))
  r=$(measure "ipclog-r" "$IPCLOG" -r "$DIR/bench-$n.pcap" -f /dev/null)
  echo "$r" | awk -v n="$n" '{printf "  %9d packets: %6.2f s, %6.1f MB\n", n, $2, $3/1024}'
done
