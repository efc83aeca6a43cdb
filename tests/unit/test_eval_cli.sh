#!/usr/bin/env bash
# contactguard-eval as a person or a script uses it: exit codes, formats,
# rule order, --set, stdin. Each row names itself when it fails.
set -u
EVAL=$1
FX=$2/contacts
pass=0
fail=0

row() { # name want-exit command...
    local name=$1 want=$2
    shift 2
    "$@" >/tmp/cg-eval-out.$$ 2>/tmp/cg-eval-err.$$
    local got=$?
    if [ "$got" -eq "$want" ]; then
        pass=$((pass + 1))
    else
        fail=$((fail + 1))
        echo "FAIL $name: exit $got, want $want" >&2
        cat /tmp/cg-eval-err.$$ >&2
    fi
}

expect() { # name condition-command...
    local name=$1
    shift
    if "$@"; then pass=$((pass + 1)); else
        fail=$((fail + 1))
        echo "FAIL $name" >&2
    fi
}

row "all pass exits 0" 0 "$EVAL" "$FX/2023/compliant.json"
expect "four lines" test "$(wc -l </tmp/cg-eval-out.$$)" -eq 4
expect "rule order" test "$(jq -r .rule /tmp/cg-eval-out.$$ | tr '\n' ' ')" = \
    "owner-alerts additional-emails alert-severity attack-paths "
expect "subscription from the body" test \
    "$(jq -r .subscription_id /tmp/cg-eval-out.$$ | sort -u)" = \
    "0b1f6471-1bf0-4dda-aec3-cb9272f09590"
row "a failing rule exits 1" 1 "$EVAL" "$FX/2023/reference-example.json"
row "--set changes the level" 0 "$EVAL" --set rules.attack_paths.level=Critical \
    "$FX/2023/reference-example.json"
row "malformed body is ERROR, exit 1" 1 "$EVAL" "$FX/hostile/not-json.txt"
expect "malformed body gives ERROR findings" test \
    "$(jq -r .status /tmp/cg-eval-out.$$ | sort -u)" = "ERROR"
row "missing file exits 2" 2 "$EVAL" /nonexistent/body.json
row "unknown option exits 2" 2 "$EVAL" --bogus "$FX/2023/compliant.json"
row "bad api version exits 2" 2 "$EVAL" --api-version 2019 "$FX/2023/compliant.json"
row "unknown --set key exits 2" 2 "$EVAL" --set nope=1 "$FX/2023/compliant.json"
row "--help exits 0" 0 "$EVAL" --help
expect "--help documents the exit status" grep -q "Exit status" /tmp/cg-eval-out.$$
row "stdin" 1 sh -c "\"$EVAL\" --api-version 2020-01-01-preview - < \"$FX/2020/bare-array.json\""
expect "stdin api version" test \
    "$(jq -r .api_version /tmp/cg-eval-out.$$ | sort -u)" = "2020-01-01-preview"
row "ocsf format" 0 "$EVAL" --format ocsf --tenant 72f988bf-86f1-41af-91ab-2d7cd011db47 \
    "$FX/2023/compliant.json"
expect "ocsf class and account" test \
    "$(jq -r '"\(.class_uid) \(.cloud.account.type_id) \(.cloud.org.uid)"' /tmp/cg-eval-out.$$ | sort -u)" = \
    "2003 13 72f988bf-86f1-41af-91ab-2d7cd011db47"
row "dump-config" 0 env CONTACTGUARD_REDIS_PASSWORD=dump-secret-9 "$EVAL" --dump-config
expect "dump masks secrets" sh -c "! grep -q dump-secret-9 /tmp/cg-eval-out.$$"

rm -f /tmp/cg-eval-out.$$ /tmp/cg-eval-err.$$
echo "eval-cli: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
