#!/usr/bin/env bash
# Runs the seed documents' curl + jq pipelines (tests/fixtures/
# seed-pipelines.txt) against the fake with only the host replaced. `az
# account get-access-token` is a shell function printing what the real one
# prints for that query (subscription and token, tab-separated), and curl
# trusts the fake's CA through CURL_CA_BUNDLE.
# usage: test_seeds.sh PATH/TO/contactguard-fakeazure
FAKEAZURE=$1
FIX=$(cd "$(dirname "$0")/../../fixtures" && pwd)
. "$(dirname "$0")/harness.sh"

fa_start --tenants 1 --subscriptions-per-tenant 40
export CURL_CA_BUNDLE=$FA_DIR/tls/ca.pem
HOST=${FA_URL#https://}
TOKEN=$(fa_token 0)
SUB=

az() {
    printf '%s\t%s\n' "$SUB" "$TOKEN"
}

pipeline() {
    local p
    p=$(awk -F '\t' -v n="$1" '$1 == n { print $2 }' "$FIX/seed-pipelines.txt")
    [ -n "$p" ] || fa_fail "no pipeline $1"
    printf '%s' "${p//management.azure.com/$HOST}"
}

# run NAME SCENARIO: the pipeline's stdout for the first subscription of
# the scenario (curl's progress meter goes to stderr).
run() {
    SUB=$(fa_sub_of "$2")
    (cd "$FA_DIR" && eval "$(pipeline "$1")" 2>/dev/null)
}

fa_eq "$(run conformity-audit-2017 compliant)" '"On"' \
    "Conformity audit: compliant subscription"
fa_eq "$(run conformity-audit-2017 owner-missing)" '"Off"' \
    "Conformity audit: owner missing"
fa_eq "$(run conformity-audit-2017 no-contact)" '' \
    "Conformity audit: nothing configured prints nothing"
fa_eq "$(run conformity-audit-2017 legacy-only)" '"On"' \
    "Conformity audit reads the legacy 2017 contact"
fa_eq "$(run lacework-audit-2020 compliant)" '"secops@contoso.com"' \
    "lacework audit over the bare 2020 array"
fa_eq "$(run lacework-audit-2020 emails-empty)" '""' \
    "lacework audit: empty emails"
fa_eq "$(run lacework-audit-2020 legacy-only)" '' \
    "lacework audit: the legacy contact is not in 2020"

# Remediation: the documents' bodies, placeholders filled in.
S=$(fa_sub_of owner-missing)
sed -e "s/<azure-subscription-id>/$S/" -e 's/<valid-email-address>/secops@contoso.com/' \
    "$FIX/seed-conformity-2017.json" >"$FA_DIR/enable-subscription-owner-security-alerts.json"
fa_eq "$(run conformity-remediate-2017 owner-missing | jq -r .properties.alertsToAdmins)" \
    On "Conformity remediation answers the contact"
fa_eq "$(run conformity-audit-2017 owner-missing)" '"On"' \
    "Conformity audit after its remediation"
fa_eq "$(fa_curl -H "Authorization: Bearer $TOKEN" \
    "$FA_URL/subscriptions/$S/providers/Microsoft.Security/securityContacts/default?api-version=2023-12-01-preview" |
    jq -r '.properties.notificationsByRole.roles | index("Owner") != null')" \
    true "the 2017 remediation is visible through 2023"

S=$(fa_sub_of emails-empty)
sed -e "s/<Your_Subscription_Id>/$S/" -e 's/<validEmailAddress>/soc@contoso.com/' \
    "$FIX/seed-lacework-2020.json" >"$FA_DIR/input.json"
# The lacework body has the 2017 shape (alertNotifications a string): the
# 2020 API refuses it, and nothing changes.
fa_eq "$(run lacework-remediate-2020 emails-empty | jq -r .error.code)" \
    InvalidInputJson "lacework's 2017-shaped body is refused by 2020"
fa_eq "$(run lacework-audit-2020 emails-empty)" '""' \
    "nothing changed after the refused PUT"
echo PASS
