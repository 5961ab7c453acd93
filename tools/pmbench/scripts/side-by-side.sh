#!/usr/bin/env bash
# Side by side: runs two pmbench binaries in the order A B B A, N times, on the same
# workloads (`--rounds 3 --no-count`, each run reporting its median), then prints per
# workload the median and the minimum ns per op of each binary and their ratios B/A.
# The machine is shared and noisy: compare two builds this way, never two full runs.
#
#   cargo build --release -p pmbench && cp target/release/pmbench /tmp/pmbench-a
#   (change, rebuild) && cp target/release/pmbench /tmp/pmbench-b
#   tools/pmbench/scripts/side-by-side.sh 4 "w1 w6" /tmp/pmbench-a /tmp/pmbench-b
set -euo pipefail
if [ $# -ne 4 ]; then
    echo "usage: $0 SERIES \"WORKLOADS\" BINARY_A BINARY_B" >&2
    exit 2
fi
series=$1 workloads=$2 a=$3 b=$4
samples=$(mktemp)
out=$(mktemp -d)
trap 'rm -rf "$samples" "$out"' EXIT

run() { # binary, tag
    # shellcheck disable=SC2086 # the workloads are separate words
    "$1" $workloads --rounds 3 --no-count --out "$out" 2>&1 |
        awk -F'|' -v tag="$2" '/\(per op\)/ {
            name = $2; gsub(/ \(per op\)| /, "", name)
            split($3, v, " "); ns = v[1]
            if (v[2] == "µs") ns *= 1000
            print name, tag, ns
        }' >>"$samples"
}

for _ in $(seq "$series"); do
    run "$a" A; run "$b" B; run "$b" B; run "$a" A
done

sort -k1,1 -k2,2 -k3,3g "$samples" | awk '
    function flush() {
        if (key == "") return
        med[key] = (n % 2) ? x[(n + 1) / 2] : (x[n / 2] + x[n / 2 + 1]) / 2
        mn[key] = x[1]; cnt[key] = n
    }
    { k = $1 " " $2; if (k != key) { flush(); key = k; n = 0 } x[++n] = $3 }
    END {
        flush()
        printf "%-8s %10s %10s %8s %10s %10s %8s %4s\n", "workload", "A median", "B median", "B/A", "A min", "B min", "B/A", "runs"
        for (k in med) {
            split(k, p, " "); if (p[2] != "A") continue
            w = p[1]; kb = w " B"
            printf "%-8s %10.1f %10.1f %8.3f %10.1f %10.1f %8.3f %4d\n", w, med[k], med[kb], med[kb] / med[k], mn[k], mn[kb], mn[kb] / mn[k], cnt[k]
        }
    }'
