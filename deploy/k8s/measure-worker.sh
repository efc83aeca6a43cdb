#!/usr/bin/env bash
# The figures behind the worker's resources and KEDA's lagThreshold.
#
# Runs the end-to-end benchmark (tests/bench/bench_e2e: one worker, jobs
# preloaded on the jobs topic, the fake Azure over HTTPS with LATENCY_MS per
# request) and samples the worker's RSS and CPU time from /proc every
# 200 ms while it runs. Prints one line:
#   measure=worker subscriptions=N latency_ms=L subs_per_s=R peak_rss_mb=M
#   cpu_cores=C (CPU seconds / busy seconds)
# Usage: deploy/k8s/measure-worker.sh [BUILD_DIR] [SUBSCRIPTIONS] [LATENCY_MS]
set -euo pipefail
build=${1:-build-release}
n=${2:-20000}
lat=${3:-50}
root=$(cd "$(dirname "$0")/../.." && pwd)
bench=$root/$build/tests/bench/bench_e2e
out=$(mktemp)
trap 'rm -f "$out"' EXIT

"$bench" "$n" "$lat" 1 0 >"$out" 2>/dev/null &
bpid=$!
hz=$(getconf CLK_TCK)
peak=0 ticks=0 first= last=
while kill -0 "$bpid" 2>/dev/null; do
    for pid in $(pgrep -P "$bpid" -x contactguard-wo || true); do
        read -r rss < <(awk '/VmRSS/ {print $2}' "/proc/$pid/status" 2>/dev/null || echo 0)
        t=$(awk '{print $14 + $15}' "/proc/$pid/stat" 2>/dev/null || echo 0)
        [ "${rss:-0}" -gt "$peak" ] && peak=$rss
        if [ "$t" -gt "$ticks" ]; then
            # busy time: from the first sample that saw CPU spent to the
            # last sample that saw more
            [ -z "$first" ] && first=$(date +%s.%N)
            last=$(date +%s.%N)
            ticks=$t
        fi
    done
    sleep 0.2
done
wait "$bpid"
line=$(grep '^bench=e2e' "$out")
rate=$(sed -n 's/.*subs_per_s=\([0-9]*\).*/\1/p' <<<"$line")
busy=$(awk -v a="${first:-0}" -v b="${last:-0}" 'BEGIN {print (b > a) ? b - a : 0}')
awk -v n="$n" -v lat="$lat" -v r="$rate" -v p="$peak" -v t="$ticks" \
    -v hz="$hz" -v busy="$busy" 'BEGIN {
    printf "measure=worker subscriptions=%d latency_ms=%d subs_per_s=%d peak_rss_mb=%.1f cpu_seconds=%.2f busy_seconds=%.2f cpu_cores=%.2f\n",
        n, lat, r, p / 1024, t / hz, busy, (busy > 0 ? (t / hz) / busy : 0) }'
