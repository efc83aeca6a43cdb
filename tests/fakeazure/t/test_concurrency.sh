#!/usr/bin/env bash
# 1,000 concurrent keep-alive HTTPS connections against one fake process:
# every connection is served (no connect, read or timeout errors) and every
# answer is 2xx.
# usage: test_concurrency.sh PATH/TO/contactguard-fakeazure
FAKEAZURE=$1
. "$(dirname "$0")/harness.sh"
command -v wrk >/dev/null || fa_fail "wrk is not installed (scripts/deps.sh)"
ulimit -n 8192 2>/dev/null || ulimit -n "$(ulimit -Hn)"
[ "$(ulimit -n)" -ge 1100 ] || fa_fail "cannot open 1,100 descriptors"

fa_start --tenants 1 --subscriptions-per-tenant 50 --no-throttle
TOKEN=$(fa_token 0)
SUB=$(fa_sub_of compliant)
URL="$FA_URL/subscriptions/$SUB/providers/Microsoft.Security/securityContacts?api-version=2023-12-01-preview"
out=$(wrk -t2 -c1000 -d3s --timeout 10s -H "Authorization: Bearer $TOKEN" "$URL")
echo "$out"
! grep -q 'Socket errors' <<<"$out" || fa_fail "socket errors with 1,000 connections"
! grep -q 'Non-2xx' <<<"$out" || fa_fail "non-2xx answers"
n=$(awk '/requests in/ { print $1 }' <<<"$out")
[ "${n:-0}" -ge 1000 ] || fa_fail "only ${n:-0} requests answered"
echo "ok - 1,000 concurrent connections, $n requests, no errors"
peak=$(fa_curl "$FA_URL/_fake/stats" | jq -r '.requests["contacts.list"]["200"]')
fa_eq "$([ "$peak" -ge "$n" ] && echo yes)" yes "the fake counted every answer"
echo PASS
