#!/usr/bin/env bash
# contactguard-eval as a person or a script uses it: exit codes, formats,
# rule order, --set, stdin. Each row names itself when it fails.
set -u
EVAL=$1
FX=$2/contacts
OCSF_CHECK=$3
OCSF_TABLES=$4
RA=$2/roles
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
expect "five lines" test "$(wc -l </tmp/cg-eval-out.$$)" -eq 5
expect "rule order" test "$(jq -r .rule /tmp/cg-eval-out.$$ | tr '\n' ' ')" = \
    "owner-alerts additional-emails alert-severity attack-paths owner-reachable "
expect "owner-reachable without role assignments is SKIPPED" test \
    "$(jq -r 'select(.rule=="owner-reachable") | "\(.status) \(.reason_code)"' /tmp/cg-eval-out.$$)" = \
    "SKIPPED ROLE_ASSIGNMENTS_NOT_READ"
expect "subscription from the body" test \
    "$(jq -r .subscription_id /tmp/cg-eval-out.$$ | sort -u)" = \
    "0b1f6471-1bf0-4dda-aec3-cb9272f09590"
row "a failing rule exits 1" 1 "$EVAL" "$FX/2023/reference-example.json"
row "--set changes the level" 0 "$EVAL" --set rules.attack_paths.level=Critical \
    "$FX/2023/reference-example.json"
row "malformed body is ERROR, exit 1" 1 "$EVAL" "$FX/hostile/not-json.txt"
expect "malformed body gives ERROR findings" test \
    "$(jq -r .status /tmp/cg-eval-out.$$ | sort -u)" = "ERROR"
row "a user owner passes" 0 "$EVAL" --role-assignments "$RA/user-owner.json" \
    "$FX/2023/compliant.json"
expect "owner-reachable PASS" test \
    "$(jq -r 'select(.rule=="owner-reachable") | .status' /tmp/cg-eval-out.$$)" = PASS
row "only a service principal exits 1" 1 "$EVAL" --role-assignments "$RA/sp-only.json" \
    "$FX/2023/compliant.json"
expect "NO_USER_OWNER names the owner" test \
    "$(jq -r 'select(.rule=="owner-reachable") | "\(.reason_code) \(.evidence.owners[0].principal_type)"' /tmp/cg-eval-out.$$)" = \
    "NO_USER_OWNER ServicePrincipal"
row "a group counts with count_groups" 0 "$EVAL" --set rules.owner_reachable.count_groups=true \
    --role-assignments "$RA/group-only.json" "$FX/2023/compliant.json"
row "the rule off is SKIPPED" 0 "$EVAL" --set rules.owner_reachable.enabled=false \
    --role-assignments "$RA/none.json" "$FX/2023/compliant.json"
expect "RULE_DISABLED" test \
    "$(jq -r 'select(.rule=="owner-reachable") | .reason_code' /tmp/cg-eval-out.$$)" = RULE_DISABLED
row "missing role assignments file exits 2" 2 "$EVAL" --role-assignments /nonexistent/ra.json \
    "$FX/2023/compliant.json"
row "two bodies on stdin exit 2" 2 "$EVAL" --role-assignments - -
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
    "2003 99 72f988bf-86f1-41af-91ab-2d7cd011db47"
row "ocsf 1.4.0" 0 "$EVAL" --format ocsf --set output.ocsf_version=1.4.0 \
    --tenant 72F988BF-86F1-41AF-91AB-2D7CD011DB47 "$FX/2023/compliant.json"
expect "ocsf 1.4.0 account type 13, ids lower case" test \
    "$(jq -r '"\(.metadata.version) \(.cloud.account.type_id) \(.cloud.org.uid)"' /tmp/cg-eval-out.$$ | sort -u)" = \
    "1.4.0 13 72f988bf-86f1-41af-91ab-2d7cd011db47"
row "owner-reachable in ocsf" 1 "$EVAL" --format ocsf --role-assignments "$RA/none.json" \
    "$FX/2023/compliant.json"
expect "owner-reachable's own control, resource and reference" test \
    "$(jq -r 'select(.finding_info.title | test("Owner role")) | "\(.compliance.control) \(.compliance.status_code) \(.compliance.standards[0]) \(.resource.type) \(.remediation.references[0] | test("role-based-access-control"))"' /tmp/cg-eval-out.$$)" = \
    "owner-reachable NO_OWNER contactguard Microsoft.Authorization/roleAssignments true"
row "unsupported ocsf version exits 2" 2 "$EVAL" --format ocsf \
    --set output.ocsf_version=1.2.0 "$FX/2023/compliant.json"

# The conformance test over everything contactguard-eval prints: every
# fixture body (every API version, every quirk, hostile input), in every
# supported OCSF version, checked by tests/ocsf's tables.
: >/tmp/cg-eval-ocsf.$$
nbodies=0
for body in "$FX"/*/*; do
    for v in 1.1.0 1.4.0; do
        "$EVAL" --format ocsf --set output.ocsf_version=$v \
            --tenant 72f988bf-86f1-41af-91ab-2d7cd011db47 "$body" \
            >>/tmp/cg-eval-ocsf.$$ 2>/dev/null
    done
    nbodies=$((nbodies + 1))
done
# ... and owner-reachable in each of its verdicts.
for ra in "$RA"/*.json "$RA"/*.txt; do
    for v in 1.1.0 1.4.0; do
        "$EVAL" --format ocsf --set output.ocsf_version=$v \
            --tenant 72f988bf-86f1-41af-91ab-2d7cd011db47 \
            --role-assignments "$ra" "$FX/2023/compliant.json" \
            >>/tmp/cg-eval-ocsf.$$ 2>/dev/null
    done
    nbodies=$((nbodies + 1))
done
expect "ocsf conformance of every eval finding ($nbodies bodies)" \
    "$OCSF_CHECK" "$OCSF_TABLES" $((nbodies * 4)) </tmp/cg-eval-ocsf.$$
rm -f /tmp/cg-eval-ocsf.$$
row "dump-config" 0 env CONTACTGUARD_REDIS_PASSWORD=dump-secret-9 "$EVAL" --dump-config
expect "dump masks secrets" sh -c "! grep -q dump-secret-9 /tmp/cg-eval-out.$$"

rm -f /tmp/cg-eval-out.$$ /tmp/cg-eval-err.$$
echo "eval-cli: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
