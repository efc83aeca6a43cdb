#!/usr/bin/env bash
# make bench: every figure as one parseable line (bench=NAME key=value ...).
#   bench=ceiling   the fake Azure's raw requests/s under wrk (this machine's
#                   ceiling for one securityContacts read)
#   bench=producer_sweep  a sweep of 1,000 tenants (100,000 subscriptions)
#                   to delivered jobs, 100 and 10 per page
#   bench=e2e       what a user waits for: `contactguard-producer sweep`
#                   start to the last finding, idle workers already in
#                   their group; 1 and 2 workers at 0 and 50 ms of fake
#                   latency; bench=e2e_proc per process (CPU per 1,000
#                   subscriptions, peak RSS)
#   bench=peer      the Python asyncio scanner (tests/bench/peer_scanner.py)
#                   on the same population in the same run, bench=ratio
#                   contactguard against it
#   bench=e2e_preloaded  the fleet alone: jobs on the topic before the
#                   workers start, rate from the first finished job
#   bench=cache     the cache stage's cost per job (lookup, store, done)
#                   over plain TCP and over TLS to redis-server
#   bench=owner_reachable  what owner-reachable's second read (role
#                   assignments, in flight beside the contacts) costs: the
#                   preloaded fleet, one worker, the rule on and off at
#                   each latency; the rates, latencies, reads per
#                   subscription and worker CPU per subscription of both
#   bench=latency   events on an idle fleet: one job to its findings, a
#                   one-job `producer file` run, a new worker's first job
#   bench=soak      worker RSS over time under a steady stream of jobs
#                   (only with BENCH_SOAK_JOBS)
# Nothing here passes or fails on a number. Knobs: BENCH_SIZES (default
# 10000: 200 tenants x 50), BENCH_LATENCIES, BENCH_WORKERS,
# BENCH_PER_TENANT, BENCH_PEER=0 (no peer), BENCH_PRELOADED_SIZES (default
# 10000), BENCH_LATENCY_JOBS (default 200), BENCH_SOAK_JOBS and
# BENCH_SOAK_TENANTS (default 0 and 10000), BENCH_CACHE_JOBS (default
# 20000), BENCH_SKIP (names to skip,
# e.g. "ceiling producer_sweep").
set -euo pipefail
build=${1:-build-release}
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
bin=$root/$build/tests/bench
sizes=${BENCH_SIZES:-10000}
latencies=${BENCH_LATENCIES:-"0 50"}
workers=${BENCH_WORKERS:-"1 2"}
preloaded=${BENCH_PRELOADED_SIZES:-10000}
skip=" ${BENCH_SKIP:-} "
want() { [[ $skip != *" $1 "* ]]; }
peer=$here/peer_scanner.py
[ "${BENCH_PEER:-1}" = 0 ] && peer=

echo "machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(uname -srm), $(date -u +%FT%TZ)" >&2
ceiling=0
if want ceiling; then
    ceiling_line=$("$here/fakeazure_ceiling.sh" "$root/$build/tests/fakeazure/contactguard-fakeazure" 10 64 2>/dev/null | grep '^bench=ceiling' || true)
    echo "$ceiling_line"
    ceiling=$(sed -n 's/.*req_per_s=\([0-9]*\).*/\1/p' <<<"$ceiling_line")
fi

if want producer_sweep; then
    for page in 100 10; do
        "$bin/bench_producer" 1000 100 "$page" 2>/dev/null |
            grep '^bench=' || echo "bench=producer_sweep page_size=$page error=failed"
    done
fi

if want cache; then
    "$bin/bench_cache" "${BENCH_CACHE_JOBS:-20000}" 256 2>/dev/null |
        grep '^bench=' || echo "bench=cache error=failed"
fi

if want e2e; then
    for lat in $latencies; do
        for n in $sizes; do
            for w in $workers; do
                BENCH_PEER=$peer "$bin/bench_e2e" sweep "$n" "$lat" "$w" "${ceiling:-0}" 2>/dev/null |
                    grep '^bench=' || echo "bench=e2e latency_ms=$lat subscriptions=$n workers=$w error=failed"
            done
        done
    done
fi

if want e2e_preloaded; then
    for lat in $latencies; do
        for n in $preloaded; do
            for w in $workers; do
                "$bin/bench_e2e" preloaded "$n" "$lat" "$w" "${ceiling:-0}" 2>/dev/null |
                    grep '^bench=' || echo "bench=e2e_preloaded latency_ms=$lat subscriptions=$n workers=$w error=failed"
            done
        done
    done
fi

if want owner_reachable; then
    n=${preloaded%% *}
    for lat in $latencies; do
        on=$("$bin/bench_e2e" preloaded "$n" "$lat" 1 2>/dev/null || true)
        off=$(BENCH_WORKER_SET=rules.owner_reachable.enabled=false \
            "$bin/bench_e2e" preloaded "$n" "$lat" 1 2>/dev/null || true)
        if ! grep -q '^bench=e2e_preloaded ' <<<"$on" || ! grep -q '^bench=e2e_preloaded ' <<<"$off"; then
            echo "bench=owner_reachable latency_ms=$lat subscriptions=$n error=failed"
            continue
        fi
        awk -v lat="$lat" -v n="$n" '
            function get(line, key) {
                if (!match(line, " " key "=[0-9.]+"))
                    return 0
                return substr(line, RSTART + length(key) + 2, RLENGTH - length(key) - 2)
            }
            FNR == 1 { f++ }
            /^bench=e2e_preloaded / { run[f] = $0 }
            /^bench=e2e_preloaded_proc / && / proc=worker-0 / { worker[f] = $0 }
            END {
                printf "bench=owner_reachable latency_ms=%s subscriptions=%s workers=1 " \
                       "subs_per_s_on=%s subs_per_s_off=%s p50_ms_on=%s p50_ms_off=%s " \
                       "p99_ms_on=%s p99_ms_off=%s reads_per_sub_on=%s reads_per_sub_off=%s " \
                       "worker_cpu_ms_per_sub_on=%.3f worker_cpu_ms_per_sub_off=%.3f\n",
                       lat, n, get(run[1], "subs_per_s"), get(run[2], "subs_per_s"),
                       get(run[1], "p50_ms"), get(run[2], "p50_ms"),
                       get(run[1], "p99_ms"), get(run[2], "p99_ms"),
                       get(run[1], "arm_reads_per_sub"), get(run[2], "arm_reads_per_sub"),
                       get(worker[1], "cpu_s_per_1k"), get(worker[2], "cpu_s_per_1k")
            }' <(echo "$on") <(echo "$off")
    done
fi

if want latency; then
    "$bin/bench_latency" "${BENCH_LATENCY_JOBS:-200}" 2>/dev/null |
        grep '^bench=' || echo "bench=latency error=failed"
fi

if [ "${BENCH_SOAK_JOBS:-0}" -gt 0 ]; then
    "$bin/bench_latency" --soak "$BENCH_SOAK_JOBS" "${BENCH_SOAK_TENANTS:-10000}" 2>/dev/null |
        grep '^bench=' || echo "bench=soak error=failed"
fi
