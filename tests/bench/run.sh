#!/usr/bin/env bash
# make bench: every figure as one parseable line (bench=NAME key=value ...).
#   bench=ceiling   the fake Azure's raw requests/s under wrk (this machine's
#                   ceiling for one securityContacts read)
#   bench=producer_sweep  a sweep of 1,000 tenants (100,000 subscriptions)
#                   to delivered jobs, 100 and 10 per page
#   bench=e2e       jobs to findings through 1 and 2 workers, at 0 and 50 ms
#                   of fake latency, for 20,000 and 100,000 subscriptions
# Nothing here passes or fails on a number. BENCH_SIZES and BENCH_LATENCIES
# narrow the matrix (e.g. BENCH_SIZES=20000 for a quick run).
set -euo pipefail
build=${1:-build-release}
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
sizes=${BENCH_SIZES:-"20000 100000"}
latencies=${BENCH_LATENCIES:-"0 50"}
workers=${BENCH_WORKERS:-"1 2"}

echo "machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(uname -srm)" >&2
ceiling_line=$("$here/fakeazure_ceiling.sh" "$root/$build/tests/fakeazure/contactguard-fakeazure" 10 64 2>/dev/null | grep '^bench=ceiling')
echo "$ceiling_line"
ceiling=$(sed -n 's/.*req_per_s=\([0-9]*\).*/\1/p' <<<"$ceiling_line")

for page in 100 10; do
    "$root/$build/tests/bench/bench_producer" 1000 100 "$page" 2>/dev/null |
        grep '^bench=' || echo "bench=producer_sweep page_size=$page error=failed"
done

for lat in $latencies; do
    for n in $sizes; do
        for w in $workers; do
            "$root/$build/tests/bench/bench_e2e" "$n" "$lat" "$w" "${ceiling:-0}" 2>/dev/null |
                grep '^bench=' || echo "bench=e2e latency_ms=$lat subscriptions=$n workers=$w error=failed"
        done
    done
done
