#!/usr/bin/env bash
# make demo: the whole fleet on this machine, end to end.
#
# Starts a Kafka broker (contactguard-devbroker, librdkafka's mock cluster),
# a redis-server on a free loopback port, the fake Azure over HTTPS with a
# generated CA and a population of tenants, then sweeps every tenant with
# the producer while workers scan; waits until every auditable subscription
# has its findings, prints the report and compares the cache with the fake's
# hand-written ground truth. Exits non-zero on any mismatch. Everything it
# started is stopped on exit, Ctrl-C included.
#
# Knobs (environment):
#   CG_DEMO_TENANTS=200 CG_DEMO_SUBSCRIPTIONS=25   the population
#   CG_DEMO_WORKERS=2                               workers in the group
#   CG_DEMO_LATENCY_MS=0                            fake Azure latency
#   CG_DEMO_FAULTS="--p429 0.02 --p503 0.01"       fake Azure fault shares
#   CG_DEMO_REMEDIATION=off|dry-run|apply           remediation mode
#   CG_DEMO_KEEP=1                                  leave the stack running
#   CG_DEMO_REPORT_DIR=BUILD/demo                   where report.html and
#                                                   report.csv are left
set -euo pipefail

build=${1:-build}
root=$(cd "$(dirname "$0")/../.." && pwd)
bin=$root/$build
tenants=${CG_DEMO_TENANTS:-200}
subs=${CG_DEMO_SUBSCRIPTIONS:-25}
workers=${CG_DEMO_WORKERS:-2}
latency=${CG_DEMO_LATENCY_MS:-0}
faults=${CG_DEMO_FAULTS:-}
remediation=${CG_DEMO_REMEDIATION:-off}
keep=${CG_DEMO_KEEP:-0}
report_dir=${CG_DEMO_REPORT_DIR:-$bin/demo}

tmp=$(mktemp -d /tmp/contactguard-demo.XXXXXX)
pids=()        # servers, in start order
worker_pids=() # workers

say() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }

# stop PID...: SIGTERM to each process group, then up to 10 s for all of
# them to go, then SIGKILL to whatever is left.
stop() {
    local pid
    for pid in "$@"; do kill -TERM -- "-$pid" 2>/dev/null || true; done
    for pid in "$@"; do
        for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL -- "-$pid" 2>/dev/null || true
    done
}

cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    # Workers first, together, so they leave the group while the broker is
    # still there to hear it; then the servers, last started first.
    stop "${worker_pids[@]}"
    for ((i = ${#pids[@]} - 1; i >= 0; i--)); do stop "${pids[i]}"; done
    if [ "$rc" -eq 0 ] || [ -z "${CG_DEMO_KEEP_FILES:-}" ]; then
        rm -rf "$tmp"
    else
        echo "demo files kept in $tmp" >&2
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# start NAME CMD...: a process group of its own, output in $tmp/NAME.*
start() {
    local name=$1
    shift
    setsid "$@" >"$tmp/$name.out" 2>"$tmp/$name.err" &
    case $name in
    worker-*) worker_pids+=($!) ;;
    *) pids+=($!) ;;
    esac
    disown "$!"
}

# first_line NAME: waits (bounded) for the first stdout line of NAME.
first_line() {
    local f=$tmp/$1.out
    for _ in $(seq 600); do
        if [ -s "$f" ] && [ "$(wc -l <"$f")" -ge 1 ]; then
            head -n 1 "$f"
            return 0
        fi
        sleep 0.1
    done
    echo "demo: $1 did not start; its stderr:" >&2
    tail -n 20 "$tmp/$1.err" >&2
    return 1
}

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# ---- the stack -------------------------------------------------------------
say "Kafka: contactguard-devbroker (librdkafka mock cluster)"
start devbroker "$bin/tests/devbroker/contactguard-devbroker" --partitions 6
bootstrap=$(first_line devbroker)

say "Redis: redis-server on a free loopback port"
redis_port=$(free_port)
mkdir -p "$tmp/redis"
start redis redis-server --port "$redis_port" --bind 127.0.0.1 --save '' \
    --appendonly no --dir "$tmp/redis"
for _ in $(seq 100); do
    redis-cli -p "$redis_port" ping >/dev/null 2>&1 && break
    sleep 0.1
done
redis-cli -p "$redis_port" ping >/dev/null

say "Azure: contactguard-fakeazure over HTTPS, $tenants tenants x $subs subscriptions"
# shellcheck disable=SC2086 # faults are words on purpose
start fakeazure "$bin/tests/fakeazure/contactguard-fakeazure" \
    --tls-self-signed "$tmp/azure" --tenants "$tenants" \
    --subscriptions-per-tenant "$subs" --truth "$tmp/truth.jsonl" \
    --credentials "$tmp/contactguard.json" --latency-ms "$latency" $faults
azure=$(first_line fakeazure)

common=(--config "$tmp/contactguard.json"
    --set "kafka.bootstrap.servers=$bootstrap"
    --set "redis.port=$redis_port"
    --set "remediation.mode=$remediation"
    --set "log.format=text")
if [ "$remediation" != off ]; then
    common+=(--set "remediation.emails=soc@contoso.example")
fi

say "Workers: $workers x contactguard-worker in one consumer group"
for ((w = 0; w < workers; w++)); do
    start "worker-$w" "$bin/worker/contactguard-worker" "${common[@]}" \
        --set worker.metrics_listen=127.0.0.1:0 --set log.level=warn
done
metrics=()
for ((w = 0; w < workers; w++)); do
    line=$(first_line "worker-$w")
    metrics+=("${line##*metrics=}")
done

say "Producer: sweep every tenant (GET /subscriptions, paged) into scan jobs"
if ! "$bin/producer/contactguard-producer" sweep "${common[@]}" --json \
    >"$tmp/sweep.json" 2> >(tee "$tmp/sweep.err" >&2); then
    echo "demo: the sweep failed" >&2
    cat "$tmp/sweep.json" >&2
    exit 1
fi
jobs=$(jq -r '.jobs.delivered' "$tmp/sweep.json")
skipped=$(jq -r '.subscriptions.disabled + .subscriptions.deleted' "$tmp/sweep.json")
say "Sweep: $jobs jobs sent, $skipped subscriptions not auditable (Disabled/Deleted)"

# ---- wait for every job ------------------------------------------------------
done_jobs() {
    local total=0 n
    for m in "${metrics[@]}"; do
        n=$(curl -s "http://$m/metrics" |
            awk '/^contactguard_jobs_total\{/ { s += $NF } END { printf "%d", s }')
        total=$((total + ${n:-0}))
    done
    echo "$total"
}
started=$(date +%s.%N)
while :; do
    d=$(done_jobs)
    printf '\r    %d / %d jobs finished' "$d" "$jobs" >&2
    [ "$d" -ge "$jobs" ] && break
    if (($(date +%s) - ${started%.*} > 900)); then
        echo >&2
        echo "demo: timed out with $d of $jobs jobs finished" >&2
        exit 1
    fi
    sleep 0.2
done
finished=$(date +%s.%N)
printf '\n' >&2
say "$(awk -v a="$started" -v b="$finished" -v n="$jobs" \
    'BEGIN { s = b - a; printf "All %d jobs finished in %.1f s (%.0f subscriptions/s)", n, s, n / s }')"

# ---- report and ground truth -----------------------------------------------------
say "Report (contactguard-report)"
# The page and the spreadsheet outlive the stack: they are the demo's result.
mkdir -p "$report_dir"
"$bin/worker/contactguard-report" "${common[@]}" \
    --html "$report_dir/report.html" --csv "$report_dir/report.csv"
say "HTML report: $report_dir/report.html (CSV: $report_dir/report.csv)"

say "Ground truth: the cache against the fake's hand-written expectations"
# Auditable subscriptions only: Disabled and Deleted ones are not scanned.
jq -r 'select(.state != "Disabled" and .state != "Deleted")
       | "\(.subscription_id|ascii_downcase) \(.rule) \(.status)"' \
    "$tmp/truth.jsonl" >"$tmp/expected.txt"
awk '{ printf "HGET cg:sub:%s status:%s\n", $1, $2 }' "$tmp/expected.txt" |
    redis-cli -p "$redis_port" >"$tmp/actual.txt"
paste -d' ' "$tmp/expected.txt" "$tmp/actual.txt" >"$tmp/compare.txt"
pairs=$(wc -l <"$tmp/compare.txt")
# With remediation applied, a rule the truth expects to FAIL may PASS now:
# that is the fix, not a mismatch. Where owner mail was switched on,
# owner-reachable is no longer moot: SKIPPED becomes whatever the Owner
# assignments say (remediation never changes those).
fixed=0
if [ "$remediation" = apply ]; then
    fixed=$(awk '$3 == "FAIL" && $4 == "PASS"' "$tmp/compare.txt" | wc -l)
    awk '$2 == "owner-alerts" && $3 == "FAIL" && $4 == "PASS" { on[$1] = 1 }
         { row[NR] = $0; sub_[NR] = $1; rule[NR] = $2; want[NR] = $3; got[NR] = $4 }
         END {
             for (i = 1; i <= NR; i++) {
                 if (want[i] == "FAIL" && got[i] == "PASS")
                     continue
                 if (rule[i] == "owner-reachable" && want[i] == "SKIPPED" &&
                     on[sub_[i]] && (got[i] == "PASS" || got[i] == "FAIL"))
                     continue
                 print row[i]
             }
         }' "$tmp/compare.txt" >"$tmp/compare.left"
    mv "$tmp/compare.left" "$tmp/compare.txt"
fi
mismatches=$(awk '$3 != $4' "$tmp/compare.txt" | wc -l)
not_audited=$(jq -r 'select(.state == "Disabled" or .state == "Deleted")
       | .subscription_id' "$tmp/truth.jsonl" | sort -u | wc -l)
echo "compared $pairs (subscription, rule) pairs: $mismatches mismatches;" \
    "$not_audited Disabled/Deleted subscriptions not scanned (sweep counted $skipped)"
echo "pairs per rule: $(awk '{ n[$2]++ } END { for (r in n) printf "%s %d, ", r, n[r] }' \
    "$tmp/expected.txt" | sed 's/, $//')"
if [ "$remediation" = apply ]; then
    echo "remediation (apply) turned $fixed failing (subscription, rule) pairs into PASS"
fi
if [ "$mismatches" -gt 0 ]; then
    echo "first mismatches (subscription rule expected actual):"
    awk '$3 != $4 && n++ < 10' "$tmp/compare.txt"
fi
status=0
[ "$mismatches" -eq 0 ] || status=1
[ "$skipped" -eq "$not_audited" ] || {
    echo "demo: the sweep skipped $skipped subscriptions, the truth has $not_audited not auditable"
    status=1
}

if [ "$keep" = 1 ]; then
    say "The stack keeps running (Ctrl-C stops it). Connect with:"
    cat <<EOT
  kcat -b $bootstrap -t contactguard.results -C -o beginning -e | head
  redis-cli -p $redis_port HGETALL cg:sub:$(head -n 1 "$tmp/expected.txt" | cut -d' ' -f1)
  $bin/worker/contactguard-report ${common[*]}
  curl -s --cacert $tmp/azure/ca.pem $azure/_fake/stats | jq .requests_total
  curl -s http://${metrics[0]}/metrics | grep contactguard_jobs_total
EOT
    while :; do
        sleep 3600 &
        wait $! # a trap runs at once, not after a foreground sleep
    done
fi
[ "$status" -eq 0 ] && say "Demo complete: zero mismatches with the ground truth"
exit "$status"
