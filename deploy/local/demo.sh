#!/usr/bin/env bash
# make demo: evaluates a sample body of every API version with
# contactguard-eval and prints the verdicts as a table.
set -euo pipefail
build=${1:-build}
root=$(cd "$(dirname "$0")/../.." && pwd)
eval_bin=$root/$build/worker/contactguard-eval
fx=$root/tests/fixtures/contacts
printf '%-36s %-8s %-8s %-8s %-8s\n' body owner emails severity attack
for body in 2017/compliant.json 2017/admins-off.json 2020/bare-array.json \
    2020/owner-missing.json 2023/compliant.json 2023/reference-example.json \
    2023/disabled.json 2023/empty-value.json hostile/not-json.txt; do
    line=$("$eval_bin" "$fx/$body" | jq -r .status | tr '\n' ' ' || true)
    printf '%-36s %s\n' "$body" "$line"
done
