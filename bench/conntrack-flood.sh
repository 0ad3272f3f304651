#!/bin/bash
# Conntrack flood benchmark for ipclog (issue 4): floods a server namespace with new UDP flows
# at RATE flows/s for SECS seconds, with `ipclog -f LOG --db DB` and `conntrack -E` listening
# side by side, and compares the flows created (nft `ct state new` counter) with the events
# each of them saw.
#
#   bench/conntrack-flood.sh RATE SECS [OUTDIR]
#
# Needs root. Binaries: $IPCLOG (default target/release/ipclog) and $FLOOD (default
# bench/conntrack-flood/target/release/conntrack-flood); build them with
#   cargo build --release -p ipclog
#   (cd bench/conntrack-flood && cargo build --release)
# Everything happens in two namespaces created and deleted here; the host is not touched.
set -euo pipefail
RATE=${1:?RATE flows/s}
SECS=${2:?SECS}
OUT=${3:-/tmp/ctflood-$RATE-$SECS}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
IPCLOG=${IPCLOG:-$TARGET/release/ipclog}
FLOOD=${FLOOD:-$TARGET/release/conntrack-flood}
IPCLOG_ARGS=${IPCLOG_ARGS:-}
rm -rf "$OUT"; mkdir -p "$OUT"
# shellcheck source=bench/netns-pair.sh
. "$ROOT/bench/netns-pair.sh"
netns_pair ctfl 10.9.0
# Conntrack hooks in the server; no ICMP port-unreachable storm back to the client.
ip netns exec "$S" nft -f - <<NFT
table inet bench {
  chain in  { type filter hook input priority 0; ct state new counter; }
  chain out { type filter hook output priority 0; icmp type destination-unreachable drop; }
}
NFT
ip netns exec "$S" sysctl -q -w net.netfilter.nf_conntrack_acct=1 \
    net.netfilter.nf_conntrack_timestamp=1 net.netfilter.nf_conntrack_udp_timeout=1

cpu() { awk '{print ($14 + $15) / 100}' "/proc/$1/stat"; }

DBARGS=(--db "$OUT/ipclog.db"); [ "${DB:-1}" = 0 ] && DBARGS=()
ip netns exec "$S" "$IPCLOG" -f "$OUT/ipclog.log" "${DBARGS[@]}" -s 5 --evict-every "${EVICT:-0.5}" \
    $IPCLOG_ARGS 2>"$OUT/ipclog.stderr" &
IPID=$!; pids+=("$IPID")
if [ "${CTE:-1}" = 1 ]; then
    ip netns exec "$S" conntrack -E -o timestamp >"$OUT/conntrack-E.txt" 2>"$OUT/conntrack-E.stderr" &
    CPID=$!; pids+=("$CPID")
else
    : >"$OUT/conntrack-E.txt"; CPID=
fi
for _ in $(seq 100); do grep -q ' UP eth0 ' "$OUT/ipclog.log" 2>/dev/null && break; sleep 0.1; done

ip netns exec "$C" "$FLOOD" 10.9.0.2 "$RATE" "$SECS" "${THREADS:-1}" | tee "$OUT/flood.txt"
# Optional knobs: DB=0 (no --db), CTE=0 (no conntrack -E beside), EVICT=SECS, THREADS=N
# (flood sender threads), IPCLOG_ARGS.
# Wait until every flow expired and was destroyed (ipclog's eviction dumps make it prompt).
for _ in $(seq 600); do
    n=$(ip netns exec "$S" cat /proc/sys/net/netfilter/nf_conntrack_count)
    [ "$n" = 0 ] && break
    sleep 0.2
done
sleep 2
ICPU=$(cpu "$IPID"); CCPU=-
[ -n "$CPID" ] && CCPU=$(cpu "$CPID")
kill -TERM "$IPID"; wait "$IPID" || true
if [ -n "$CPID" ]; then kill -TERM "$CPID"; wait "$CPID" 2>/dev/null || true; fi

created=$(ip netns exec "$S" nft list chain inet bench in | sed -n 's/.*packets \([0-9]*\).*/\1/p')
stats=$(ip netns exec "$S" conntrack -S 2>/dev/null | tr ' ' '\n' | awk -F= '
    /^(drop|insert_failed|early_drop)=/ {s[$1] += $2} END {for (k in s) printf "%s=%d ", k, s[k]}')
rows="(no --db)"; run="-"
o=$(grep -c '^O ' "$OUT/ipclog.log" || true)
c=$(grep -c '^C ' "$OUT/ipclog.log" || true)
lost=$(awk '/^P .* lost [0-9]+ events/ {for (i = 1; i <= NF; i++) if ($i == "lost") s += $(i + 1)} END {print s + 0}' "$OUT/ipclog.log")
[ -f "$OUT/ipclog.db" ] && rows=$(sqlite3 "$OUT/ipclog.db" 'SELECT count(*), sum(close_ts IS NOT NULL) FROM connections' | tr '|' ' ')
[ -f "$OUT/ipclog.db" ] && run=$(sqlite3 "$OUT/ipclog.db" 'SELECT errors, lost_events, dropped FROM runs' | tr '|' ' ')
cn=$(grep -c '\[NEW\]' "$OUT/conntrack-E.txt" || true)
cd_=$(grep -c '\[DESTROY\]' "$OUT/conntrack-E.txt" || true)
cat <<REPORT | tee "$OUT/summary.txt"
rate=$RATE secs=$SECS flows_created=$created kernel: $stats
ipclog:        O=$o ($(awk "BEGIN {printf \"%.2f\", 100 * (1 - $o / $created)}")% missing) C=$c lost_reported=$lost sqlite rows/closed=$rows runs(errors lost dropped)=$run cpu=${ICPU}s
conntrack -E:  NEW=$cn ($(awk "BEGIN {printf \"%.2f\", 100 * (1 - $cn / $created)}")% missing) DESTROY=$cd_ cpu=${CCPU}s$([ -z "$CPID" ] && echo " (CTE=0: not run)")
ipclog stop line: $(tail -1 "$OUT/ipclog.log")
REPORT
