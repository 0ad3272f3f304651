#!/bin/bash
# NFLOG flood benchmark for `ipclog --nflog` (issue 10): a client namespace sends UDP
# datagrams at RATE packets/s for SECS seconds to a server namespace whose input rule logs
# each to NFLOG group 1 and drops it (`counter log group 1 prefix "drop-flood" drop`), with
# `ipclog --nflog 1 -f LOG` listening. Afterwards it compares the packets the rule counted with
# the F lines in the log and the loss ipclog reported.
#
#   bench/nflog-flood.sh RATE SECS [OUTDIR]
#
# Needs root. Binaries: $IPCLOG (default target/release/ipclog) and $FLOOD (default
# target/release/conntrack-flood: one datagram per (sport, dport) pair); build them with
#   cargo build --release -p ipclog
#   (cd bench/conntrack-flood && CARGO_TARGET_DIR=$PWD/../../target cargo build --release)
# Knobs: THREADS=N sender threads, DB=1 (also --db), IPCLOG_ARGS.
# Everything happens in two namespaces created and deleted here; the host is not touched.
set -euo pipefail
RATE=${1:?RATE packets/s}
SECS=${2:?SECS}
OUT=${3:-/tmp/nflog-flood-$RATE-$SECS}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
IPCLOG=${IPCLOG:-$TARGET/release/ipclog}
FLOOD=${FLOOD:-$TARGET/release/conntrack-flood}
IPCLOG_ARGS=${IPCLOG_ARGS:-}
rm -rf "$OUT"; mkdir -p "$OUT"
# shellcheck source=bench/netns-pair.sh
. "$ROOT/bench/netns-pair.sh"
netns_pair nffl 10.9.0
ip netns exec "$S" nft -f - <<NFT
table inet bench {
  chain in { type filter hook input priority 0; udp dport 1024-65535 counter log group 1 prefix "drop-flood" drop; }
}
NFT

cpu() { awk '{print ($14 + $15) / 100}' "/proc/$1/stat"; }

DBARGS=(); [ "${DB:-0}" = 1 ] && DBARGS=(--db "$OUT/ipclog.db")
ip netns exec "$S" "$IPCLOG" --nflog 1 -f "$OUT/ipclog.log" "${DBARGS[@]}" -s 5 $IPCLOG_ARGS \
    2>"$OUT/ipclog.stderr" &
IPID=$!; pids+=("$IPID")
for _ in $(seq 100); do grep -q ' nflog groups 1' "$OUT/ipclog.log" 2>/dev/null && break; sleep 0.1; done

ip netns exec "$C" "$FLOOD" 10.9.0.2 "$RATE" "$SECS" "${THREADS:-1}" | tee "$OUT/flood.txt"
counted=$(ip netns exec "$S" nft list chain inet bench in | sed -n 's/.*packets \([0-9]*\).*/\1/p')
# Wait until the log has caught up, or has stopped growing for a second.
last=-1
for _ in $(seq 300); do
    n=$(grep -c '^F ' "$OUT/ipclog.log" || true)
    [ "$n" -ge "$counted" ] && break
    if [ "$n" = "$last" ]; then break; fi
    last=$n
    sleep 1
done
ICPU=$(cpu "$IPID")
kill -TERM "$IPID"; wait "$IPID" || true
lines=$(grep -c '^F ' "$OUT/ipclog.log" || true)
lost=$(sed -n 's/^P .* lost \([0-9]*\) packets.*/\1/p' "$OUT/ipclog.log" | awk '{s+=$1} END {print s+0}')
{
    echo "rate asked: $RATE/s for $SECS s, threads ${THREADS:-1}"
    cat "$OUT/flood.txt"
    echo "packets the rule logged (nft counter): $counted"
    echo "F lines: $lines"
    echo "missing: $((counted - lines))"
    echo "loss ipclog reported (lost N packets): $lost"
    echo "ipclog CPU seconds: $ICPU"
} | tee "$OUT/summary.txt"
