# The peer for constat's day report (bench/run): a day's connections per (protocol, source,
# destination, destination port) with their bytes, from an ipclog line log. Honest about the
# format: O lines of the day open a connection by its five columns, its C line (that day or
# later) adds the counters; lines before the day are skipped by their date field.
#   mawk -v day=2004-08-15 -f bench/day-report.awk LOG
$1 != "O" && $1 != "C" { next }
{ d = substr($2, 1, 10) }
d < day { next }
$1 == "O" {
    if (d > day) { if (nopen == 0) exit; next }
    k = $3 " " $4 " " $5 " " $6 " " $7
    open[k] = $3 " " $4 " " $5 " " $7; nopen++
    n[open[k]]++
    next
}
{
    k = $3 " " $4 " " $5 " " $6 " " $7
    if (!(k in open)) next
    g = open[k]; delete open[k]; nopen--
    for (i = 10; i <= NF; i++) {
        if ($i ~ /^orig_bytes=/) ob[g] += substr($i, 12)
        else if ($i ~ /^resp_bytes=/) rb[g] += substr($i, 12)
    }
    if (d > day && nopen == 0) exit
}
END { for (g in n) printf "%s %d %d %d\n", g, n[g], ob[g], rb[g] | "sort -k5,5nr"; close("sort -k5,5nr") }
