#!/usr/bin/env bash
# The Azure CLI (Debian's python3-azure-cli) against the fake, as a person
# would use it: a custom cloud whose Entra ID and Resource Manager are the
# fake, `az login --service-principal` with a secret and with a
# certificate, `az account list`, `az security contact list/show/create/
# delete`, `az rest` reads of 2020-01-01-preview and 2023-12-01-preview,
# and `az provider register` clearing the 409 the worker reports.
#
# The CLI's MSAL validates a custom authority at login.microsoftonline.com
# and the CLI offers no switch to turn that off, so the test answers it on
# loopback: the fake's certificate also names login.microsoftonline.com and
# a loopback proxy (t/loopback_proxy.py) tunnels that one host to the fake
# and refuses everything else. Where the kernel allows it the whole test
# runs in a network namespace with loopback only, so nothing can leave the
# machine, not even a DNS query.
#
# usage: test_azcli.sh PATH/TO/contactguard-fakeazure
FAKEAZURE=$1
T_DIR=$(cd "$(dirname "$0")" && pwd)

# FA_NETNS=in once inside; FA_NETNS=off runs on the host's network (the
# proxy still forwards nothing but the one host).
if [ -z "${FA_NETNS:-}" ] && command -v unshare >/dev/null &&
    command -v ip >/dev/null && unshare -rn true 2>/dev/null; then
    export FA_NETNS=in
    exec unshare -rn bash -c 'ip link set lo up && exec bash "$@"' \
        bash "$0" "$@"
fi

if ! /usr/bin/python3 -c \
    'import azure.cli.core, azure.cli.command_modules.security' 2>/dev/null; then
    echo "SKIP: python3-azure-cli is not installed"
    exit 77
fi

. "$T_DIR/harness.sh"

fa_start --tenants 2 --subscriptions-per-tenant 31 --seed 5 \
    --tls-name login.microsoftonline.com

PROXY_PID=
cleanup() {
    if [ -n "$PROXY_PID" ]; then
        kill "$PROXY_PID" 2>/dev/null || true
        wait "$PROXY_PID" 2>/dev/null || true
    fi
    fa_stop
}
trap cleanup EXIT

mkfifo "$FA_DIR/proxy.out"
/usr/bin/python3 "$T_DIR/loopback_proxy.py" "${FA_URL##*:}" \
    "$FA_DIR/proxy.log" login.microsoftonline.com \
    >"$FA_DIR/proxy.out" 2>"$FA_DIR/proxy.err" &
PROXY_PID=$!
exec 8<"$FA_DIR/proxy.out"
read -r -t 30 -u 8 PROXY_PORT || fa_fail "the proxy did not print its port"

# Only the fake and the proxy are reachable; the CLI keeps its state in the
# run's own directory and sends no telemetry.
for v in $(env | sed -n 's/^\([A-Za-z_]*_proxy\)=.*/\1/ip'); do
    unset "$v"
done
export HTTPS_PROXY=http://127.0.0.1:$PROXY_PORT HTTP_PROXY=http://127.0.0.1:$PROXY_PORT
export https_proxy=$HTTPS_PROXY http_proxy=$HTTP_PROXY
export NO_PROXY=127.0.0.1 no_proxy=127.0.0.1
export AZURE_CONFIG_DIR=$FA_DIR/az REQUESTS_CA_BUNDLE=$FA_DIR/tls/ca.pem
export AZURE_CORE_COLLECT_TELEMETRY=no AZURE_CORE_OUTPUT=json
export AZURE_CORE_NO_COLOR=yes AZURE_CORE_SURVEY_MESSAGE=no

ERR=$FA_DIR/az.err
az() { /usr/bin/python3 -m azure.cli "$@" 2>"$ERR"; }
az_ok() {
    local out
    if ! out=$(az "$@"); then
        cat "$ERR" >&2
        fa_fail "az $1 $2 failed"
    fi
    printf '%s' "$out"
}

T0=$(fa_tenant 0)
C0=$(fa_client 0)
S_OK=$(fa_sub_of compliant)
S_NONE=$(fa_sub_of no-contact)
S_UNREG=$(fa_sub_of unregistered)
SC=providers/Microsoft.Security/securityContacts

# ---- a custom cloud on the fake (graph id given, so no metadata lookup)
az_ok cloud register --name contactguard-fake \
    --endpoint-active-directory "$FA_URL" \
    --endpoint-resource-manager "$FA_URL/" \
    --endpoint-active-directory-resource-id https://management.core.windows.net/ \
    --endpoint-active-directory-graph-resource-id https://graph.windows.net/ \
    --endpoint-management https://management.core.windows.net/ >/dev/null
az_ok cloud set --name contactguard-fake >/dev/null
echo "ok - az cloud register/set"

# ---- sign-in with a client secret: the scope is
# https://management.core.windows.net//.default and MSAL runs instance
# discovery, then the tenant's OpenID configuration it names.
out=$(az_ok login --service-principal -u "$C0" -p "$(fa_secret 0)" \
    --tenant "$T0")
fa_eq "$(jq -r --arg t "$T0" \
    '[length, (map(select(.tenantId == $t and .user.type == "servicePrincipal")) | length)] | join(" ")' \
    <<<"$out")" "31 31" "az login --service-principal (secret) lists the tenant's subscriptions"
out=$(az_ok account list --all)
fa_eq "$(jq -r --arg s "$S_OK" \
    '[length, (.[] | select(.id == $s) | .cloudName)] | join(" ")' <<<"$out")" \
    "31 contactguard-fake" "az account list --all"
enabled=$(jq -rn --arg t "$T0" '[inputs | select(.tenant_id == $t and
    .state == "Enabled") | .subscription_id] | unique | length' \
    "$FA_DIR/truth.jsonl")
fa_eq "$(az_ok account list | jq -r '[length, (map(.state) | unique | join(","))] | join(" ")')" \
    "$enabled Enabled" "az account list: the Enabled ones"

# ---- contacts through the CLI's own commands (2017-08-01-preview)
out=$(az_ok security contact list --subscription "$S_OK")
fa_eq "$(jq -r '[.[] | .name + " " + .alertsToAdmins] | join(",")' <<<"$out")" \
    "default1 On" "az security contact list"
out=$(az_ok security contact show -n default1 --subscription "$S_OK")
fa_eq "$(jq -r '.email + " " + .alertNotifications' <<<"$out")" \
    "$(fa_curl "$FA_URL/_fake/subscriptions/$S_OK" | jq -r .contact.emails) On" \
    "az security contact show"
out=$(az_ok security contact create -n default1 --email soc@contoso.com \
    --alert-notifications on --alerts-admins off --subscription "$S_NONE")
fa_eq "$(jq -r '.email + " " + .alertsToAdmins' <<<"$out")" \
    "soc@contoso.com Off" "az security contact create"
fa_eq "$(fa_curl "$FA_URL/_fake/stats" |
    jq -r --arg s "$S_NONE" '[.puts[] | select(.subscription_id == $s) | .status] | join(",")')" \
    200 "... a 2017 PUT that creates answers 200"

# ---- az rest reads of the newer versions, written by the CLI above
out=$(az_ok rest --method get \
    --url "$FA_URL/subscriptions/$S_NONE/$SC?api-version=2023-12-01-preview")
fa_eq "$(jq -r '.value[0].properties | .emails + " " + .notificationsByRole.state + " " + (.isEnabled|tostring)' <<<"$out")" \
    "soc@contoso.com Off true" "az rest 2023-12-01-preview LIST"
out=$(az_ok rest --method get \
    --url "$FA_URL/subscriptions/$S_OK/$SC?api-version=2020-01-01-preview")
fa_eq "$(jq -r 'type + " " + .[0].name + " " + .[0].properties.alertNotifications.state' <<<"$out")" \
    "array default On" "az rest 2020-01-01-preview LIST (a bare array)"
out=$(az_ok rest --method get \
    --url "$FA_URL/subscriptions/$S_OK/$SC/default?api-version=2020-01-01-preview")
fa_eq "$(jq -r '.properties.notificationsByRole.roles | index("Owner") != null' <<<"$out")" \
    true "az rest 2020-01-01-preview GET"

# The CLI's 2017 client accepts only 204, what that version declares.
az_ok security contact delete -n default1 --subscription "$S_NONE" >/dev/null
out=$(az_ok rest --method get \
    --url "$FA_URL/subscriptions/$S_NONE/$SC?api-version=2023-12-01-preview")
fa_eq "$(jq -c . <<<"$out")" '{"value":[]}' "az security contact delete"

# ---- the 409 and its fix, the command the worker's finding names
if az security contact list --subscription "$S_UNREG" >/dev/null; then
    fa_fail "an unregistered subscription's contacts were listed"
fi
grep -q MissingSubscriptionRegistration "$ERR" ||
    fa_fail "no MissingSubscriptionRegistration: $(cat "$ERR")"
echo "ok - an unregistered subscription: MissingSubscriptionRegistration"
fa_eq "$(az_ok provider show -n Microsoft.Security --subscription "$S_UNREG" |
    jq -r .registrationState)" NotRegistered "az provider show: NotRegistered"
az_ok provider register --namespace Microsoft.Security \
    --subscription "$S_UNREG" >/dev/null
echo "ok - az provider register --namespace Microsoft.Security"
fa_eq "$(az_ok provider show -n Microsoft.Security --subscription "$S_UNREG" |
    jq -r .registrationState)" Registered "az provider show: Registered"
out=$(az_ok security contact list --subscription "$S_UNREG")
fa_eq "$(jq -r 'length' <<<"$out")" \
    "$(fa_curl "$FA_URL/_fake/subscriptions/$S_UNREG" |
        jq -r '(if .contact then 1 else 0 end) + (.legacy | length)')" \
    "... and its contacts read"

# ---- sign-in with a certificate (MSAL's RS256 assertion with x5t)
az_ok logout >/dev/null
cat "$FA_DIR/tls/app.key" "$FA_DIR/tls/app.pem" >"$FA_DIR/sp.pem"
before=$(fa_curl "$FA_URL/_fake/stats" | jq -r .tokens.certificate)
out=$(az_ok login --service-principal -u "$C0" -p "$FA_DIR/sp.pem" \
    --tenant "$T0")
fa_eq "$(jq -r 'length' <<<"$out")" 31 \
    "az login --service-principal (certificate)"
out=$(az_ok rest --method get \
    --url "$FA_URL/subscriptions/$S_OK/$SC?api-version=2023-12-01-preview")
fa_eq "$(jq -r '.value[0].name' <<<"$out")" default "az rest with the certificate's token"
fa_eq "$(($(fa_curl "$FA_URL/_fake/stats" | jq -r .tokens.certificate) > before))" \
    1 "... the token came from a certificate assertion"

# ---- what left the CLI: only login.microsoftonline.com, to the fake
n=$(grep -c '^forwarded CONNECT login.microsoftonline.com:443 ' \
    "$FA_DIR/proxy.log" || true)
[ "$n" -ge 1 ] || fa_fail "instance discovery never reached the fake"
echo "ok - instance discovery reached the fake through the proxy ($n)"
if grep -v '^forwarded CONNECT login.microsoftonline.com:443 ' \
    "$FA_DIR/proxy.log" | grep -v '^refused ' | grep -q .; then
    fa_fail "the proxy forwarded something else: $(cat "$FA_DIR/proxy.log")"
fi
echo "ok - nothing else was forwarded (refused: $(grep -c '^refused' "$FA_DIR/proxy.log"))"
grep '^refused' "$FA_DIR/proxy.log" | sort | uniq -c | sed 's/^/#   /'
if [ "${FA_NETNS:-}" = in ]; then
    echo "# ran in a loopback-only network namespace"
else
    echo "# ran on the host's network, through the proxy only"
fi
echo PASS
