# Shared by the fake's shell tests and the benchmark: starts
# contactguard-fakeazure on a free loopback port, learns its URL from the
# first line it prints (no sleeping), and always stops it on exit.
#
#   FAKEAZURE=/path/to/contactguard-fakeazure
#   . harness.sh
#   fa_start [flags...]   # sets FA_URL, FA_DIR (tls/, creds.json, truth.jsonl)
#                         # FA_PLAIN=1: plain HTTP; FA_WRAP: a command
#                         # prefix such as "taskset -c 0"
#   fa_token N            # bearer token of tenant N (0-based)
#   fa_curl ARGS...       # curl trusting the fake's CA

set -euo pipefail

FA_PID=
FA_DIR=

fa_stop() {
    if [ -n "$FA_PID" ] && kill -0 "$FA_PID" 2>/dev/null; then
        kill "$FA_PID" 2>/dev/null || true
        wait "$FA_PID" 2>/dev/null || true
    fi
    FA_PID=
    if [ -n "$FA_DIR" ] && [ -z "${FA_KEEP:-}" ]; then
        rm -rf "$FA_DIR"
    fi
}

fa_fail() {
    echo "FAIL: $*" >&2
    if [ -n "$FA_DIR" ] && [ -f "$FA_DIR/stderr" ]; then
        echo "--- fake stderr (last lines)" >&2
        tail -n 20 "$FA_DIR/stderr" >&2 || true
    fi
    exit 1
}

fa_start() {
    FA_DIR=$(mktemp -d "${TMPDIR:-/tmp}/fakeazure.XXXXXX")
    trap fa_stop EXIT
    mkfifo "$FA_DIR/stdout"
    local tls=(--tls-self-signed "$FA_DIR/tls")
    if [ -n "${FA_PLAIN:-}" ]; then
        tls=()
    fi
    # shellcheck disable=SC2086
    ${FA_WRAP:-} "$FAKEAZURE" "${tls[@]}" \
        --credentials "$FA_DIR/creds.json" --truth "$FA_DIR/truth.jsonl" \
        "$@" >"$FA_DIR/stdout" 2>"$FA_DIR/stderr" &
    FA_PID=$!
    exec 9<"$FA_DIR/stdout"
    if ! read -r -t 30 -u 9 FA_URL; then
        fa_fail "the fake did not print its URL"
    fi
    case "$FA_URL" in
    https://127.0.0.1:* | http://127.0.0.1:*) ;;
    *) fa_fail "unexpected first line '$FA_URL'" ;;
    esac
    export FA_URL FA_DIR
}

fa_curl() {
    if [ -n "${FA_PLAIN:-}" ]; then
        curl -sS "$@"
    else
        curl -sS --cacert "$FA_DIR/tls/ca.pem" "$@"
    fi
}

# Tenant N's id, client id and secret.
fa_tenant() { jq -r ".tenants[$1].id" "$FA_DIR/creds.json"; }
fa_client() { jq -r ".tenants[$1].client_id" "$FA_DIR/creds.json"; }
fa_secret() { cat "$(jq -r ".tenants[$1].client_secret_file" "$FA_DIR/creds.json")"; }

fa_token() {
    local t c s
    t=$(fa_tenant "$1")
    c=$(fa_client "$1")
    s=$(fa_secret "$1")
    fa_curl "$FA_URL/$t/oauth2/v2.0/token" -d grant_type=client_credentials \
        -d "client_id=$c" --data-urlencode "client_secret=$s" \
        --data-urlencode "scope=https://management.azure.com/.default" |
        jq -er .access_token
}

# First subscription of a scenario in the truth file.
fa_sub_of() {
    jq -rn --arg s "$1" \
        'first(inputs | select(.scenario == $s) | .subscription_id)' \
        "$FA_DIR/truth.jsonl"
}

# Asserts "$1" == "$2" with a message.
fa_eq() {
    if [ "$1" != "$2" ]; then
        fa_fail "$3: expected '$2', got '$1'"
    fi
    echo "ok - $3"
}
