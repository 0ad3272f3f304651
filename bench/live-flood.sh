#!/bin/bash
# Live capture under a flood (issue 13): a client namespace sends one UDP datagram per new flow
# (distinct port pairs, bench/conntrack-flood's sender) over a veth pair to a server namespace,
# where `ipclog -i eth0 -f /dev/null` and `tcpdump -i eth0 -w /dev/null` capture side by side
# the same packets; both are stopped with SIGINT after the flood and their kernel drops
# (pcap_stats: ipclog's `kernel_drop=` in its capture summary, tcpdump's "dropped by kernel")
# are printed together with the packets each one read.
#
#   bench/live-flood.sh RATE SECS [OUTDIR]
#
# Knobs: THREADS (sender threads, default 1), B (KiB for both -B; default: libpcap's 2 MiB),
# IPCLOG_ARGS (more ipclog options). Needs root; the namespaces are created and deleted here.
set -euo pipefail
RATE=${1:?RATE packets/s}
SECS=${2:?SECS}
OUT=${3:-/tmp/live-flood-$RATE-$SECS}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
IPCLOG=${IPCLOG:-$TARGET/release/ipclog}
FLOOD=${FLOOD:-$TARGET/release/conntrack-flood}
[ -x "$FLOOD" ] || FLOOD=$ROOT/bench/conntrack-flood/target/release/conntrack-flood
rm -rf "$OUT"; mkdir -p "$OUT"
# shellcheck source=bench/netns-pair.sh
. "$ROOT/bench/netns-pair.sh"
netns_pair lvfl 10.9.0
# No ICMP port-unreachable storm back: only the flood is on the wire.
ip netns exec "$S" nft -f - <<NFT
table inet bench {
  chain out { type filter hook output priority 0; icmp type destination-unreachable drop; }
}
NFT
BARG=(); [ -n "${B:-}" ] && BARG=(-B "$B")
cpu() { awk '{print ($14 + $15) / 100}' "/proc/$1/stat"; }
ip netns exec "$S" "$IPCLOG" -i eth0 -f "$OUT/ipclog.log" "${BARG[@]}" ${IPCLOG_ARGS:-} \
    2> "$OUT/ipclog.stderr" &
IPID=$!; pids+=("$IPID")
ip netns exec "$S" tcpdump -n -i eth0 -w /dev/null "${BARG[@]}" 2> "$OUT/tcpdump.stderr" &
TPID=$!; pids+=("$TPID")
for _ in $(seq 100); do
    grep -q ' started' "$OUT/ipclog.log" 2>/dev/null && grep -q 'listening' "$OUT/tcpdump.stderr" && break
    sleep 0.1
done
ip netns exec "$C" "$FLOOD" 10.9.0.2 "$RATE" "$SECS" "${THREADS:-1}" > "$OUT/flood.txt"
sleep 1
ICPU=$(cpu "$IPID"); TCPU=$(cpu "$TPID")
kill -INT "$IPID" "$TPID"
wait "$IPID" || true
wait "$TPID" 2>/dev/null || true
pids=()
isum=$(grep 'capture:' "$OUT/ipclog.log" | tail -1)
ipk=$(echo "$isum" | sed -n 's/.*capture: \([0-9]*\) packets.*/\1/p')
idrop=$(echo "$isum" | sed -n 's/.*kernel_drop[= ]\([0-9]*\).*/\1/p')
tpk=$(sed -n 's/^\([0-9]*\) packets captured.*/\1/p' "$OUT/tcpdump.stderr")
tdrop=$(sed -n 's/^\([0-9]*\) packets dropped by kernel.*/\1/p' "$OUT/tcpdump.stderr")
cat <<REPORT | tee "$OUT/summary.txt"
live flood: $(cat "$OUT/flood.txt")${B:+, -B $B}
ipclog -i:  ${ipk:-?} packets read, kernel drops ${idrop:-0}, cpu ${ICPU}s, session_limit drops $(echo "$isum" | sed -n 's/.*session_limit[= ]\([0-9]*\).*/\1/p')
tcpdump -w: ${tpk:-?} packets captured, kernel drops ${tdrop:-?}, cpu ${TCPU}s
REPORT
