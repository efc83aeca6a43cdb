#!/usr/bin/env bash
# The fake's ceiling: securityContacts LIST (2023-12-01-preview) over
# keep-alive plain HTTP, measured with wrk, the fake pinned to one core.
# Prints one line: bench=ceiling tool=wrk req_per_s=N ... It never fails on
# the number; it fails only when wrk reports errors or non-2xx answers.
# usage: fakeazure_ceiling.sh PATH/TO/contactguard-fakeazure [SECONDS] [CONNECTIONS]
FAKEAZURE=$1
SECONDS_RUN=${2:-10}
CONNS=${3:-64}
FA_PLAIN=1
if [ "$(nproc)" -ge 2 ]; then
    FA_WRAP="taskset -c 0"
    WRK_WRAP="taskset -c 1"
else
    FA_WRAP=
    WRK_WRAP=
fi
. "$(dirname "$0")/../fakeazure/t/harness.sh"
command -v wrk >/dev/null || fa_fail "wrk is not installed (scripts/deps.sh)"

fa_start --tenants 1 --subscriptions-per-tenant 50 --no-throttle
TOKEN=$(fa_token 0)
SUB=$(fa_sub_of compliant)
URL="$FA_URL/subscriptions/$SUB/providers/Microsoft.Security/securityContacts?api-version=2023-12-01-preview"
fa_eq "$(fa_curl -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $TOKEN" "$URL")" \
    200 "the benchmarked request answers 200" >&2

out=$($WRK_WRAP wrk -t1 -c"$CONNS" -d"${SECONDS_RUN}s" --latency \
    -H "Authorization: Bearer $TOKEN" "$URL")
echo "$out" >&2
rps=$(awk '/^Requests\/sec:/ { printf "%d", $2 }' <<<"$out")
p50=$(awk '$1 == "50%" { print $2 }' <<<"$out")
p99=$(awk '$1 == "99%" { print $2 }' <<<"$out")
rss=$(awk '/VmHWM/ { print $2 }' "/proc/$FA_PID/status" 2>/dev/null || echo 0)
if grep -q 'Non-2xx\|Socket errors' <<<"$out"; then
    fa_fail "wrk saw errors"
fi
echo "bench=ceiling tool=wrk req_per_s=$rps connections=$CONNS seconds=$SECONDS_RUN p50=$p50 p99=$p99 peak_rss_kb=$rss"
