#!/bin/bash
# Cost of `ipclog --proc` per connection (issue 10): a client namespace makes N TCP connections
# one after the other (one python3 process, so after its first socket each lookup finds its
# owner among the recent ones; each socket is kept open until 100 more were made, ~30 ms, so
# that it still exists when ipclog reads its event: a socket closed sooner is "socket gone")
# to a server namespace over a veth, with ipclog (conntrack mode)
# running in the client namespace, once without and once with --proc. Prints ipclog's CPU
# (utime+stime) for each run and the `proc:` summary line (microseconds per lookup, measured
# inside ipclog around the socket-table request and the /proc lookup).
#
#   [WINDOW=W] bench/proc-bench.sh [N]     (W: sockets kept open, default 100)
#
# Needs root; binary $IPCLOG (default target/release/ipclog). The namespaces are created and
# deleted here; the host is not touched.
set -euo pipefail
N=${1:-5000}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
IPCLOG=${IPCLOG:-${CARGO_TARGET_DIR:-$ROOT/target}/release/ipclog}
OUT=$(mktemp -d /tmp/proc-bench.XXXXXX)
# shellcheck source=bench/netns-pair.sh
. "$ROOT/bench/netns-pair.sh"
netns_pair prb 10.8.0
ip netns exec "$C" nft -f - <<NFT
table inet bench {
  chain out { type filter hook output priority 0; ct state new counter; }
}
NFT
ip netns exec "$S" python3 -c '
import socket
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", 8080)); s.listen(1024)
while True:
    c, _ = s.accept(); c.close()
' &
pids+=($!)
sleep 0.5
cpu() { awk '{print ($14 + $15) / 100}' "/proc/$1/stat"; }
for mode in off on; do
    # The first run's connections (TIME_WAIT) would be the second's found=start.
    ip netns exec "$C" conntrack -F 2>/dev/null || true
    args=(); [ "$mode" = on ] && args=(--proc)
    ip netns exec "$C" "$IPCLOG" -f "$OUT/$mode.log" --evict-every 0 "${args[@]}" 2>"$OUT/$mode.err" &
    IPID=$!; pids+=("$IPID")
    for _ in $(seq 100); do grep -q ' UP eth0 ' "$OUT/$mode.log" 2>/dev/null && break; sleep 0.1; done
    t0=$(date +%s.%N)
    ip netns exec "$C" python3 -c "
import socket, collections
q = collections.deque()
for i in range($N):
    q.append(socket.create_connection(('10.8.0.2', 8080)))
    if len(q) > ${WINDOW:-100}: q.popleft().close()
"
    t1=$(date +%s.%N)
    # Until every O line is written.
    for _ in $(seq 300); do
        [ "$(grep -c '^O .* 8080 .* -$\|^O .* 8080 .* - pid=' "$OUT/$mode.log")" -ge "$N" ] && break; sleep 0.1
    done
    c=$(cpu "$IPID")
    kill -TERM "$IPID"; wait "$IPID" || true
    opens=$(grep -c '^O .* 8080 .* -$\|^O .* 8080 .* - pid=' "$OUT/$mode.log" || true)
    withpid=$(grep -c '^O .* 8080 .* pid=' "$OUT/$mode.log" || true)
    echo "--proc $mode: $N connections in $(echo "$t1 - $t0" | bc) s; ipclog CPU ${c} s;" \
        "O lines $opens, with pid= $withpid"
    grep -h ' proc: ' "$OUT/$mode.log" | sed 's/^P [^ ]* /  /' || true
done
rm -rf "$OUT"
