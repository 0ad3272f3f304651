# Sourced by the flood benchmarks (conntrack-flood, nflog-flood, live-flood, proc-bench):
#   netns_pair PREFIX NET
# makes a client namespace $C and a server namespace $S (named PREFIX-c-PID, PREFIX-s-PID),
# joined by a veth pair (eth0 in each) with NET.1/24 and NET.2/24, lo and eth0 up. On exit the
# background jobs listed in $pids are killed and both namespaces removed; the host is not
# touched.
pids=()
netns_cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    ip netns del "$C" 2>/dev/null || true
    ip netns del "$S" 2>/dev/null || true
}
netns_pair() {
    C=$1-c-$$
    S=$1-s-$$
    trap netns_cleanup EXIT
    ip netns add "$C"
    ip netns add "$S"
    ip -n "$C" link add eth0 type veth peer name eth0 netns "$S"
    ip -n "$C" addr add "$2.1/24" dev eth0
    ip -n "$S" addr add "$2.2/24" dev eth0
    for n in "$C" "$S"; do ip -n "$n" link set eth0 up; ip -n "$n" link set lo up; done
}
