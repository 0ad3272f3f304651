#!/usr/bin/env bash
# Export and insert rates of the sinks that send elsewhere, next to the SQLite history:
# `ipclog -r` of one generated capture (many TCP/UDP connections, see capture-bench.sh) to
#   none     the line log to /dev/null (the reading and tracking alone)
#   sqlite   --db FILE
#   ipfix    --ipfix 127.0.0.1:PORT/udp into nfdump's nfcapd
#   pg       --db postgresql://... (a server of its own: initdb in DIR, Unix socket, fsync off)
# and prints wall time, ipclog's CPU (user+sys) and connections per second of wall time; for
# pg also the server's CPU. Needs root (the server runs as nobody), nfdump and postgresql.
# Usage: bench/remote-bench.sh [PACKETS] [CONCURRENT] [DIR]  (defaults 2000000 10000 /tmp/remotebench)
set -euo pipefail
PACKETS=${1:-2000000}
CONC=${2:-10000}
DIR=${3:-/tmp/remotebench}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
mkdir -p "$DIR"
chmod o+x "$DIR"
cargo build --release -q --manifest-path "$ROOT/Cargo.toml" -p ipclog -p ipclog-capture --bins --examples
IPCLOG=$TARGET/release/ipclog
F=$DIR/bench-$PACKETS.pcap
[ -f "$F" ] || "$TARGET/release/examples/gencap" "$F" "$PACKETS" "$CONC" 2>/dev/null

# Connections: the closes of a run.
CONNS=$("$IPCLOG" -r "$F" --json - | grep -c '"event":"close"')
echo "capture: $F ($PACKETS packets, $CONNS connections)"

PGBIN=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
PGDATA=$DIR/pg
PGSOCK=$DIR/pg-sock
stop_all() {
  [ -n "${NFPID:-}" ] && kill "$NFPID" 2>/dev/null || true
  runuser -u nobody -- "$PGBIN/pg_ctl" -D "$PGDATA" -m immediate -w stop >/dev/null 2>&1 || true
}
trap stop_all EXIT
rm -rf "$PGDATA" "$PGSOCK"
mkdir -p "$PGDATA" "$PGSOCK"
chown nobody "$PGDATA" "$PGSOCK"
runuser -u nobody -- "$PGBIN/initdb" -D "$PGDATA" -U postgres -A trust --no-sync >/dev/null
runuser -u nobody -- "$PGBIN/pg_ctl" -D "$PGDATA" -l "$PGDATA/log" -w \
  -o "-k $PGSOCK -c listen_addresses='' -c fsync=off" start >/dev/null
URL="postgresql://postgres@/postgres?host=$PGSOCK"

PORT=39917
mkdir -p "$DIR/flows" && rm -f "$DIR"/flows/*
nfcapd -w "$DIR/flows" -b 127.0.0.1 -p $PORT -t 3600 2>/dev/null &
NFPID=$!
sleep 1

pg_cpu() { # the server's CPU seconds so far: the postmaster and its exited backends
  local pid
  pid=$(head -1 "$PGDATA/postmaster.pid")
  sleep 0.5 # the backend of the last run exits and is reaped
  awk -v hz="$(getconf CLK_TCK)" '{print ($14+$15+$16+$17)/hz}' "/proc/$pid/stat"
}

run() { # name, ipclog arguments...
  local name=$1; shift
  local tf
  tf=$(mktemp)
  local before
  before=$(pg_cpu)
  /usr/bin/time -o "$tf" -f "%e %U %S" "$IPCLOG" -r "$F" -f /dev/null "$@" >/dev/null 2>"$DIR/$name.err" || {
    echo "$name failed:"; cat "$DIR/$name.err"; }
  local after
  after=$(pg_cpu)
  awk -v n="$name" -v c="$CONNS" -v a="$after" -v b="$before" \
    '{printf "%-8s %8.2f s %8.2f CPU-s %10.0f conn/s  server CPU %.2f s\n", n, $1, $2+$3, c/$1, a-b}' "$tf"
  rm -f "$tf"
}

run none
rm -f "$DIR/h.db"*
run sqlite --db "$DIR/h.db"
run ipfix --ipfix 127.0.0.1:$PORT/udp
run pg --db "$URL"
kill "$NFPID"; wait "$NFPID" 2>/dev/null || true
NFPID=
echo "nfcapd stored $(nfdump -q -N -R "$DIR/flows" -o csv 2>/dev/null | grep -c '^[0-9]') flows"
echo "postgresql stored $("$PGBIN/psql" -X -A -t -h "$PGSOCK" -U postgres -c 'SELECT count(*) FROM connections') rows"
