#!/usr/bin/env bash
# Integration test of the fake's Entra ID, Resource Manager and control
# API over HTTPS with curl and jq: shapes, status codes, version mapping,
# throttling, faults and the control routes.
# usage: test_api.sh PATH/TO/contactguard-fakeazure
FAKEAZURE=$1
. "$(dirname "$0")/harness.sh"

fa_start --tenants 2 --subscriptions-per-tenant 40 --page-size 7 --seed 7

T0=$(fa_tenant 0)
T1=$(fa_tenant 1)
C0=$(fa_client 0)
SC=providers/Microsoft.Security/securityContacts

# status BODYFILE ARGS... : prints the HTTP status, body into BODYFILE
status() {
    local out=$1
    shift
    fa_curl -o "$out" -w '%{http_code}' "$@"
}
B=$FA_DIR/body
H=$FA_DIR/headers

# ---- Entra ID
fa_eq "$(fa_curl "$FA_URL/$T0/v2.0/.well-known/openid-configuration" |
    jq -r .token_endpoint)" "$FA_URL/$T0/oauth2/v2.0/token" \
    "openid-configuration names the token endpoint"
# Instance discovery names the tenant of authorization_endpoint, as Entra
# ID does (MSAL drops the port; v1 authorize paths get the v1 document).
IDISC="$FA_URL/common/discovery/instance?api-version=1.0&authorization_endpoint"
fa_eq "$(fa_curl "$IDISC=https%3A%2F%2F127.0.0.1%2F$T0%2Foauth2%2Fv2.0%2Fauthorize" |
    jq -r .tenant_discovery_endpoint)" \
    "$FA_URL/$T0/v2.0/.well-known/openid-configuration" \
    "instance discovery: the tenant of authorization_endpoint"
fa_eq "$(fa_curl "$IDISC=https://login.microsoftonline.com/organizations/oauth2/authorize" |
    jq -r .tenant_discovery_endpoint)" \
    "$FA_URL/organizations/.well-known/openid-configuration" \
    "instance discovery: a v1 authorize endpoint"
fa_eq "$(status "$B" "$IDISC=https://login.example.org/$T0/oauth2/v2.0/authorize")" \
    400 "instance discovery: an unknown instance"
fa_eq "$(jq -r '.error + " " + (.error_codes[0]|tostring)' "$B")" \
    "invalid_instance 50049" "... is invalid_instance"
fa_eq "$(status "$B" "$FA_URL/common/discovery/instance?api-version=1.1")" \
    400 "instance discovery without authorization_endpoint"
# Every scope form Entra ID accepts for Resource Manager; others refused.
for sc in https://management.azure.com/.default \
    https://management.azure.com//.default \
    https://management.core.windows.net/.default \
    https://management.core.windows.net//.default \
    "openid https://management.core.windows.net//.default offline_access"; do
    fa_eq "$(status "$B" "$FA_URL/$T0/oauth2/v2.0/token" \
        -d grant_type=client_credentials -d "client_id=$C0" \
        --data-urlencode "client_secret=$(fa_secret 0)" \
        --data-urlencode "scope=$sc")" 200 "scope '$sc' accepted"
done
for sc in https://management.core.windows.net///.default \
    https://management.core.windows.net/ \
    https://management.core.windows.net/user_impersonation \
    https://management.core.windows.net.evil/.default openid; do
    fa_eq "$(status "$B" "$FA_URL/$T0/oauth2/v2.0/token" \
        -d grant_type=client_credentials -d "client_id=$C0" \
        --data-urlencode "client_secret=$(fa_secret 0)" \
        --data-urlencode "scope=$sc")" 400 "scope '$sc' refused"
done
fa_eq "$(status "$B" "$FA_URL/$T0/oauth2/v2.0/token" \
    -d grant_type=client_credentials -d "client_id=$C0" \
    -d client_secret=wrong -d scope=https://management.azure.com/.default)" \
    401 "a wrong secret is refused"
fa_eq "$(jq -r '.error + " " + (.error_codes[0]|tostring)' "$B")" \
    "invalid_client 7000215" "Entra error shape for a wrong secret"
fa_eq "$(jq -r '.error_description[0:13]' "$B")" "AADSTS7000215" \
    "error_description starts with the AADSTS code"
fa_eq "$(status "$B" "$FA_URL/$T0/oauth2/v2.0/token" \
    -d grant_type=client_credentials -d "client_id=$C0" \
    --data-urlencode "client_secret=$(fa_secret 0)" \
    -d scope=https://graph.microsoft.com/.default)" 400 "a foreign scope"
fa_eq "$(jq -r .error "$B")" invalid_scope "invalid_scope error"
fa_eq "$(status "$B" "$FA_URL/$T1/oauth2/v2.0/token" \
    -d grant_type=client_credentials -d "client_id=$C0" \
    --data-urlencode "client_secret=$(fa_secret 0)" \
    -d scope=https://management.azure.com/.default)" 400 \
    "an app of another tenant"
fa_eq "$(jq -r .error_codes[0] "$B")" 700016 "AADSTS700016"
fa_eq "$(status "$B" "$FA_URL/00000000-0000-0000-0000-000000000000/oauth2/v2.0/token" \
    -d grant_type=client_credentials)" 400 "an unknown tenant"

TOK0=$(fa_token 0)
TOK1=$(fa_token 1)
A0=(-H "Authorization: Bearer $TOK0")

# ---- Resource Manager: authentication
fa_eq "$(fa_curl -D "$H" -o "$B" -w '%{http_code}' \
    "$FA_URL/subscriptions?api-version=2022-12-01")" 401 "no token: 401"
grep -qi '^WWW-Authenticate: Bearer' "$H" || fa_fail "401 without WWW-Authenticate"
echo "ok - 401 carries WWW-Authenticate"
fa_eq "$(jq -r .error.code "$B")" AuthenticationFailed "ARM error shape"
fa_eq "$(status "$B" -H "Authorization: Bearer fake.nope" \
    "$FA_URL/subscriptions?api-version=2022-12-01")" 401 "unknown token"
fa_eq "$(jq -r .error.code "$B")" InvalidAuthenticationToken \
    "InvalidAuthenticationToken"

# ---- subscriptions and tenants
url="$FA_URL/subscriptions?api-version=2022-12-01"
pages=0
: >"$FA_DIR/subs"
while [ -n "$url" ] && [ "$url" != null ]; do
    fa_curl "${A0[@]}" "$url" >"$B"
    jq -r '.value[] | .subscriptionId + " " + .tenantId' "$B" >>"$FA_DIR/subs"
    url=$(jq -r '.nextLink // empty' "$B")
    pages=$((pages + 1))
done
fa_eq "$(wc -l <"$FA_DIR/subs")" 40 "paging yields every subscription"
fa_eq "$pages" 6 "40 subscriptions in pages of 7"
fa_eq "$(awk '{print $2}' "$FA_DIR/subs" | sort -u)" "$T0" \
    "a token sees only its tenant"
fa_eq "$(fa_curl "${A0[@]}" "$FA_URL/tenants?api-version=2022-12-01" |
    jq -r '[.value[].tenantId] | join(",")')" "$T0" "GET /tenants"

S_OK=$(fa_sub_of compliant)
S_NONE=$(fa_sub_of no-contact)
S_LEG=$(fa_sub_of legacy-only)
S_2023=$(fa_sub_of api-2023-unavailable)
S_UNREG=$(fa_sub_of unregistered)
S_DIS=$(fa_sub_of state-disabled)
S_OWN=$(fa_sub_of owner-missing)
S_T1=$(jq -rn --arg t "$T1" \
    'first(inputs | select(.tenant_id == $t) | .subscription_id)' \
    "$FA_DIR/truth.jsonl")

fa_eq "$(fa_curl "${A0[@]}" "$FA_URL/subscriptions/$S_DIS?api-version=2022-12-01" |
    jq -r .state)" Disabled "GET /subscriptions/{id} shows the state"

v23=api-version=2023-12-01-preview
v20=api-version=2020-01-01-preview
v17=api-version=2017-08-01-preview

fa_eq "$(status "$B" "${A0[@]}" "$FA_URL/subscriptions/$S_OK/$SC?api-version=2021-01-01")" \
    400 "unsupported api-version"
fa_eq "$(jq -r .error.code "$B")" InvalidApiVersionParameter \
    "InvalidApiVersionParameter"
fa_eq "$(status "$B" "${A0[@]}" "$FA_URL/subscriptions/$S_OK/$SC")" 400 \
    "missing api-version"
fa_eq "$(status "$B" "${A0[@]}" "$FA_URL/subscriptions/$S_T1/$SC?$v23")" 403 \
    "a subscription of another tenant"
fa_eq "$(jq -r .error.code "$B")" AuthorizationFailed "AuthorizationFailed"
fa_eq "$(status "$B" "${A0[@]}" "$FA_URL/subscriptions/3f2504e0-4f89-41d3-9a0c-0305e82c3301/$SC?$v23")" \
    404 "unknown subscription"
fa_eq "$(jq -r .error.code "$B")" SubscriptionNotFound "SubscriptionNotFound"
fa_eq "$(status "$B" "${A0[@]}" "$FA_URL/subscriptions/$S_UNREG/$SC?$v23")" \
    409 "unregistered provider"
fa_eq "$(jq -r .error.code "$B")" MissingSubscriptionRegistration \
    "MissingSubscriptionRegistration"
PRV="$FA_URL/subscriptions/$S_UNREG/providers/Microsoft.Security"
fa_eq "$(fa_curl "${A0[@]}" "$PRV?api-version=2022-09-01" |
    jq -r '.namespace + " " + .registrationState')" \
    "Microsoft.Security NotRegistered" "provider GET: NotRegistered"
fa_eq "$(status "$B" "${A0[@]}" "$PRV/register?api-version=2022-09-01")" 405 \
    "register is a POST"
fa_eq "$(status "$B" -X POST -H "Authorization: Bearer $TOK1" \
    "$PRV/register?api-version=2022-09-01")" 403 \
    "another tenant's principal cannot register"
fa_curl -X PUT -d '{"deny":true}' "$FA_URL/_fake/tenants/$T0/writes" >/dev/null
fa_eq "$(status "$B" "${A0[@]}" -X POST -d '' "$PRV/register?api-version=2022-09-01")" \
    403 "a read-only principal cannot register"
fa_eq "$(jq -r .error.message "$B" | grep -o 'Microsoft.Security/register/action')" \
    Microsoft.Security/register/action "... for want of register/action"
fa_curl -X PUT -d '{}' "$FA_URL/_fake/tenants/$T0/writes" >/dev/null
fa_eq "$(status "$B" "${A0[@]}" "$FA_URL/subscriptions/$S_UNREG/$SC?$v23")" \
    409 "... still unregistered"
fa_eq "$(status "$B" "${A0[@]}" -X POST -d '' "$PRV/register?api-version=2022-09-01")" \
    200 "provider register: 200"
fa_eq "$(jq -r .registrationState "$B")" Registered "... Registered"
fa_eq "$(fa_curl "${A0[@]}" "$PRV?api-version=2022-09-01" | jq -r .registrationState)" \
    Registered "provider GET after register: Registered"
fa_eq "$(status "$B" "${A0[@]}" "$FA_URL/subscriptions/$S_UNREG/$SC?$v23")" \
    200 "the registered subscription's contacts read"
fa_eq "$(fa_curl -X PUT -d '{"registered":false}' \
    "$FA_URL/_fake/subscriptions/$S_UNREG/state" | jq -r .registered)" false \
    "control API unregisters it again"

# ---- role assignments: atScope() only, their own versions, no registration
RA="providers/Microsoft.Authorization/roleAssignments"
fa_eq "$(status "$B" "${A0[@]}" "$FA_URL/subscriptions/$S_OK/$RA?api-version=2022-04-01&%24filter=principalId%20eq%20%27x%27")" \
    400 "role assignments: a filter other than atScope()"
fa_eq "$(jq -r .error.code "$B")" UnsupportedQuery "UnsupportedQuery"
fa_eq "$(status "$B" "${A0[@]}" "$FA_URL/subscriptions/$S_OK/$RA?$v23")" 400 \
    "role assignments: a securityContacts api-version"
fa_eq "$(status "$B" "${A0[@]}" "$FA_URL/subscriptions/$S_T1/$RA?api-version=2022-04-01")" \
    403 "role assignments: another tenant's subscription"
fa_eq "$(jq -r .error.message "$B" | grep -c 'roleAssignments/read')" 1 \
    "... names roleAssignments/read"
fa_eq "$(fa_curl "${A0[@]}" "$FA_URL/subscriptions/$S_UNREG/$RA?api-version=2022-04-01&%24filter=atScope%28%29" |
    jq -r '[.value[].properties.principalType] | join(",")')" User \
    "role assignments of an unregistered subscription: one user Owner"

# ---- securityContacts, three versions over one state
fa_eq "$(fa_curl "${A0[@]}" "$FA_URL/subscriptions/$S_OK/$SC?$v23" |
    jq -r '.value[0].properties.notificationsSources[1].minimalRiskLevel')" \
    High "2023 LIST"
fa_eq "$(fa_curl "${A0[@]}" "$FA_URL/subscriptions/$S_OK/$SC?$v20" |
    jq -r 'type + " " + .[0].properties.alertNotifications.minimalSeverity')" \
    "array Medium" "2020 LIST is a bare array"
fa_eq "$(fa_curl "${A0[@]}" "$FA_URL/subscriptions/$S_OK/$SC?$v17" |
    jq -r '.value[0] | .name + " " + .properties.alertsToAdmins')" \
    "default1 On" "2017 LIST"
fa_eq "$(status "$B" "${A0[@]}" "$FA_URL/subscriptions/$S_NONE/$SC/default?$v23")" \
    404 "no contact: GET default is 404"
fa_eq "$(fa_curl "${A0[@]}" "$FA_URL/subscriptions/$S_NONE/$SC?$v23" | jq -c .)" \
    '{"value":[]}' "no contact: empty 2023 LIST"
fa_eq "$(fa_curl "${A0[@]}" "$FA_URL/subscriptions/$S_NONE/$SC?$v20" | jq -c .)" \
    '[]' "no contact: empty 2020 LIST"
fa_eq "$(fa_curl "${A0[@]}" "$FA_URL/subscriptions/$S_LEG/$SC?$v17" |
    jq -r '.value[0].name')" default2 "legacy contact visible through 2017"
fa_eq "$(fa_curl "${A0[@]}" "$FA_URL/subscriptions/$S_LEG/$SC?$v23" | jq -c .)" \
    '{"value":[]}' "legacy contact invisible through 2023"
fa_eq "$(status "$B" "${A0[@]}" "$FA_URL/subscriptions/$S_2023/$SC?$v23")" \
    400 "a subscription refusing 2023"
fa_eq "$(status "$B" "${A0[@]}" "$FA_URL/subscriptions/$S_2023/$SC?$v20")" \
    200 "... still answers 2020"

# PUT validation and mapping
body='{"properties":{"isEnabled":true,"emails":"a@contoso.com,b@contoso.com"}}'
fa_eq "$(status "$B" "${A0[@]}" -X PUT -H 'Content-Type: application/json' \
    -d "$body" "$FA_URL/subscriptions/$S_NONE/$SC/default?$v23")" 400 \
    "a comma in emails is refused"
body='{"properties":{"isEnabled":true,"emails":"a@contoso.com;b@contoso.com","phone":"","notificationsByRole":{"state":"On","roles":["Owner","SecurityGuard"]},"notificationsSources":[{"sourceType":"Alert","minimalSeverity":"Low"},{"sourceType":"AttackPath","minimalRiskLevel":"Medium"}]}}'
fa_eq "$(status "$B" "${A0[@]}" -X PUT -H 'Content-Type: application/json' \
    -d "$body" "$FA_URL/subscriptions/$S_NONE/$SC/default?$v23")" 201 \
    "PUT creates (201)"
fa_eq "$(status "$B" "${A0[@]}" -X PUT -H 'Content-Type: application/json' \
    -d "$body" "$FA_URL/subscriptions/$S_NONE/$SC/default?$v23")" 200 \
    "PUT replaces (200)"
fa_eq "$(jq -r '.properties.notificationsByRole.roles[1]' "$B")" SecurityGuard \
    "unknown enum values are kept"
fa_eq "$(fa_curl "${A0[@]}" "$FA_URL/subscriptions/$S_NONE/$SC/default1?$v17" |
    jq -r '.properties | .email + " " + .alertsToAdmins + " " + .alertNotifications')" \
    "a@contoso.com;b@contoso.com On On" "a 2023 write seen through 2017"
fa_eq "$(fa_curl "${A0[@]}" "$FA_URL/subscriptions/$S_NONE/$SC/default?$v20" |
    jq -r '.properties.alertNotifications | .state + " " + .minimalSeverity')" \
    "On Low" "a 2023 write seen through 2020"
body='{"properties":{"emails":"x@contoso.com","alertNotifications":{"state":"Off"},"notificationsByRole":{"state":"On","roles":["Contributor"]}}}'
fa_curl "${A0[@]}" -X PUT -H 'Content-Type: application/json' -d "$body" \
    "$FA_URL/subscriptions/$S_OWN/$SC/default?$v20" >/dev/null
fa_eq "$(fa_curl "${A0[@]}" "$FA_URL/subscriptions/$S_OWN/$SC/default?$v23" |
    jq -r '[.properties.notificationsSources[].sourceType] | join(",")')" \
    AttackPath "a 2020 write keeps the attack-path source, drops Alert"
body='{"properties":{"email":"y@contoso.com","alertNotifications":"On","alertsToAdmins":"On"}}'
fa_curl "${A0[@]}" -X PUT -H 'Content-Type: application/json' -d "$body" \
    "$FA_URL/subscriptions/$S_OWN/$SC/default1?$v17" >/dev/null
fa_eq "$(fa_curl "${A0[@]}" "$FA_URL/subscriptions/$S_OWN/$SC/default?$v23" |
    jq -r '.properties | .emails + " " + (.notificationsByRole.roles | join(","))')" \
    "y@contoso.com Contributor,Owner" "a 2017 write seen through 2023"
fa_eq "$(status "$B" "${A0[@]}" -X DELETE "$FA_URL/subscriptions/$S_OWN/$SC/default?$v23")" \
    200 "DELETE removes"
fa_eq "$(status "$B" "${A0[@]}" -X DELETE "$FA_URL/subscriptions/$S_OWN/$SC/default?$v23")" \
    204 "DELETE again: 204"
# 2017-08-01-preview declares PUT 200 only, DELETE 204 only, and PATCH.
body='{"properties":{"email":"p@contoso.com","alertNotifications":"Off","alertsToAdmins":"On"}}'
fa_eq "$(status "$B" "${A0[@]}" -X PUT -H 'Content-Type: application/json' \
    -d "$body" "$FA_URL/subscriptions/$S_OWN/$SC/default1?$v17")" 200 \
    "2017 PUT creating: 200"
fa_eq "$(status "$B" "${A0[@]}" -X PATCH -H 'Content-Type: application/json' \
    -d '{"properties":{"alertNotifications":"On"}}' \
    "$FA_URL/subscriptions/$S_OWN/$SC/default1?$v17")" 200 "2017 PATCH: 200"
fa_eq "$(jq -r '.properties | .email + " " + .alertNotifications + " " + .alertsToAdmins' "$B")" \
    "p@contoso.com On On" "2017 PATCH keeps what it does not send"
fa_eq "$(fa_curl "${A0[@]}" "$FA_URL/subscriptions/$S_OWN/$SC/default?$v23" |
    jq -r '[.properties.notificationsSources[].sourceType] | sort | join(",")')" \
    "Alert" "a 2017 PATCH seen through 2023"
fa_eq "$(status "$B" "${A0[@]}" -X PATCH -H 'Content-Type: application/json' \
    -d '{"properties":{"alertNotifications":"On"}}' \
    "$FA_URL/subscriptions/$S_OWN/$SC/default9?$v17")" 404 \
    "2017 PATCH of no contact: 404"
fa_eq "$(status "$B" "${A0[@]}" -X PATCH -H 'Content-Type: application/json' \
    -d '{"properties":{}}' "$FA_URL/subscriptions/$S_OWN/$SC/default?$v23")" \
    405 "PATCH is 2017 only"
fa_eq "$(status "$B" "${A0[@]}" -X DELETE "$FA_URL/subscriptions/$S_OWN/$SC/default1?$v17")" \
    204 "2017 DELETE removing: 204"
fa_eq "$(fa_curl "${A0[@]}" "$FA_URL/subscriptions/$S_OWN/$SC?$v23" | jq -c .)" \
    '{"value":[]}' "... and it is gone"
fa_eq "$(status "$B" "${A0[@]}" -X PUT -H 'Content-Type: application/json' \
    -d "$body" "$FA_URL/subscriptions/$S_DIS/$SC/default1?$v17")" 409 \
    "a disabled subscription is read-only"

# ---- securityContacts LIST paging (contacts_page_size)
fa_curl "${A0[@]}" -X PUT -H 'Content-Type: application/json' \
    -d '{"properties":{"email":"old@contoso.com","alertsToAdmins":"Off"}}' \
    "$FA_URL/subscriptions/$S_NONE/$SC/default5?$v17" >/dev/null
fa_curl -X PUT -d '{"contacts_page_size":1}' "$FA_URL/_fake/config" >/dev/null
follow() {
    local url=$1 pages=0 names=""
    while [ -n "$url" ]; do
        fa_curl "${A0[@]}" "$url" >"$B"
        names="$names$(jq -r '[.value[].name] | join(",")' "$B"),"
        url=$(jq -r '.nextLink // empty' "$B")
        pages=$((pages + 1))
    done
    echo "$pages $names"
}
fa_eq "$(follow "$FA_URL/subscriptions/$S_NONE/$SC?$v17")" \
    "3 default1,default5,," "2017 LIST paged by nextLink, empty last page"
fa_eq "$(follow "$FA_URL/subscriptions/$S_OK/$SC?$v23")" "2 default,," \
    "2023 LIST paged by nextLink"
fa_curl -X PUT -d '{"contacts_page_size":0}' "$FA_URL/_fake/config" >/dev/null
fa_eq "$(follow "$FA_URL/subscriptions/$S_OK/$SC?$v23")" "1 default," \
    "one page when paging is off"

# ---- throttling
fa_curl -X PUT -d '{"read_cap":3,"read_refill":0.5}' "$FA_URL/_fake/faults" >/dev/null
S_TH=$(fa_sub_of alert-low)
for want in 2 1 0; do
    fa_curl -D "$H" -o /dev/null "${A0[@]}" "$FA_URL/subscriptions/$S_TH/$SC?$v23"
    fa_eq "$(grep -i '^x-ms-ratelimit-remaining-subscription-reads' "$H" |
        tr -d '\r' | awk '{print $2}')" "$want" "remaining reads $want"
done
fa_eq "$(fa_curl -D "$H" -o /dev/null -w '%{http_code}' "${A0[@]}" \
    "$FA_URL/subscriptions/$S_TH/$SC?$v23")" 429 "an empty bucket: 429"
ra=$(grep -i '^Retry-After' "$H" | tr -d '\r' | awk '{print $2}')
fa_eq "$ra" 2 "Retry-After is the wait for one token"
fa_eq "$(status /dev/null "${A0[@]}" "$FA_URL/subscriptions/$S_TH/$SC?$v23")" \
    429 "coming back early earns a new wait"
stats=$(fa_curl "$FA_URL/_fake/stats")
fa_eq "$(jq -r --arg s "$S_TH" '.retry_after[] | select(.subscription == $s) | .early' <<<"$stats")" \
    1 "the early return is counted per principal and subscription"
fa_eq "$(jq -r --arg s "$S_TH" '.retry_after[] | select(.subscription == $s) | .principal' <<<"$stats")" \
    "$T0/$C0" "... with its principal"
sleep 3 # the bucket refills with time: nothing else to wait on
fa_eq "$(status /dev/null "${A0[@]}" "$FA_URL/subscriptions/$S_TH/$SC?$v23")" \
    200 "after Retry-After the request passes"
fa_curl -X PUT -d '{"read_cap":250,"read_refill":25}' "$FA_URL/_fake/faults" >/dev/null

# ---- injected faults
S_F=$(fa_sub_of alert-medium)
fault() { fa_curl -X PUT -d "$1" "$FA_URL/_fake/faults" >/dev/null; }
fault '{"p500":1}'
fa_eq "$(status "$B" "${A0[@]}" "$FA_URL/subscriptions/$S_F/$SC?$v23")" 500 "p500"
fault '{"p500":0,"p503":1}'
fa_eq "$(status "$B" "${A0[@]}" "$FA_URL/subscriptions/$S_F/$SC?$v23")" 503 "p503"
fault '{"p503":0,"p429":1,"retry_after":1}'
fa_eq "$(status "$B" "${A0[@]}" "$FA_URL/subscriptions/$S_F/$SC?$v23")" 429 "p429"
# Coming back within the Retry-After of the 429 above would earn another
# 429: the remaining faults use another subscription.
S_F2=$(fa_sub_of alert-high)
fault '{"p429":0,"pdrop":1}'
rc=0
curl -sS --cacert "$FA_DIR/tls/ca.pem" "${A0[@]}" -o /dev/null \
    "$FA_URL/subscriptions/$S_F2/$SC?$v23" 2>/dev/null || rc=$?
[ "$rc" -ne 0 ] || fa_fail "pdrop: the connection was not dropped"
echo "ok - pdrop closes without an answer (curl exit $rc)"
fault '{"pdrop":0,"pmalformed":1}'
fa_eq "$(status "$B" "${A0[@]}" "$FA_URL/subscriptions/$S_F2/$SC?$v23")" 200 \
    "pmalformed answers 200"
if jq -e . "$B" >/dev/null 2>&1; then fa_fail "pmalformed: body parsed"; fi
echo "ok - pmalformed body is not JSON"
fault '{"pmalformed":0,"pslow":1}'
t=$(fa_curl "${A0[@]}" -o "$B" -w '%{time_total}' "$FA_URL/subscriptions/$S_F2/$SC?$v23")
jq -e '.value[0].properties.isEnabled' "$B" >/dev/null || fa_fail "pslow body"
awk -v t="$t" 'BEGIN { exit !(t >= 0.1) }' || fa_fail "pslow took only $t s"
echo "ok - pslow trickles a complete body ($t s)"
fault '{"pslow":0,"latency_ms":300,"jitter_ms":50}'
t=$(fa_curl "${A0[@]}" -o /dev/null -w '%{time_total}' "$FA_URL/subscriptions/$S_F2/$SC?$v23")
awk -v t="$t" 'BEGIN { exit !(t >= 0.25) }' || fa_fail "latency: only $t s"
echo "ok - latency ($t s)"
fault '{"latency_ms":0,"jitter_ms":0}'

# ---- control API
stats=$(fa_curl "$FA_URL/_fake/stats")
fa_eq "$(jq -r '.requests["contacts.put"]["201"]' <<<"$stats")" 1 \
    "stats count requests by route and status"
fa_eq "$(jq -r '[.puts[] | select(.status == 201)][0].body.properties.emails' <<<"$stats")" \
    "a@contoso.com;b@contoso.com" "stats keep every PUT with its body"
fa_eq "$(jq -r '.tokens.client_secret' <<<"$stats")" 7 "tokens issued (2 + 5 scope forms)"
fa_eq "$(jq -r '.requests["contacts.list"]["0"]' <<<"$stats")" 1 \
    "a dropped connection is counted as status 0"

fa_eq "$(status "$B" -X POST -d '{"scenario":"no-contact","announce":true}' \
    "$FA_URL/_fake/tenants/$T0/subscriptions")" 201 "create a subscription"
NEW=$(jq -r .subscription_id "$B")
fa_eq "$(jq -r .event.data.subscriptionId "$B")" "$NEW" "... announced"
fa_eq "$(fa_curl "${A0[@]}" "$FA_URL/subscriptions?api-version=2022-12-01" |
    jq -r '.nextLink' | grep -c skiptoken)" 1 "new subscription listed (paging)"
fa_eq "$(fa_curl "${A0[@]}" "$FA_URL/subscriptions/$NEW?api-version=2022-12-01" |
    jq -r .subscriptionId)" "$NEW" "new subscription readable"
fa_eq "$(fa_curl "$FA_URL/_fake/events" |
    jq -r '.events[0] | .eventType + " " + .data.operationName')" \
    "Microsoft.Resources.ResourceWriteSuccess Microsoft.Subscription/aliases/write" \
    "the event is kept for the control API"

fa_curl -X PUT -d '{"isEnabled":true,"emails":"p@contoso.com, q@contoso.com"}' \
    "$FA_URL/_fake/subscriptions/$NEW/contact" >/dev/null
fa_eq "$(fa_curl "${A0[@]}" "$FA_URL/subscriptions/$NEW/$SC/default?$v23" |
    jq -r .properties.emails)" "p@contoso.com, q@contoso.com" \
    "a portal edit bypasses API validation"
fa_eq "$(fa_curl "$FA_URL/_fake/events" | jq -r '.events[1].data.operationName')" \
    "Microsoft.Security/securityContacts/write" "a portal edit is announced"

# after-read: edits that land after reads, GET as well as LIST, in order.
fa_curl -X PUT -d '[{"emails":"r1@contoso.com"},{"emails":"r2@contoso.com"}]' \
    "$FA_URL/_fake/subscriptions/$NEW/after-read?reads=2" >/dev/null
emails_get() {
    fa_curl "${A0[@]}" "$FA_URL/subscriptions/$NEW/$SC/default?$v23" |
        jq -r .properties.emails
}
fa_eq "$(emails_get)" "p@contoso.com, q@contoso.com" "after-read: read 1 as it was"
fa_eq "$(emails_get)" "p@contoso.com, q@contoso.com" "after-read: read 2 answered before the edit"
fa_eq "$(emails_get)" "r1@contoso.com" "after-read: the first edit after a GET"
fa_eq "$(fa_curl "${A0[@]}" "$FA_URL/subscriptions/$NEW/$SC?$v23" |
    jq -r '.value[0].properties.emails')" "r2@contoso.com" "after-read: the next edit after the next read"
fa_eq "$(emails_get)" "r2@contoso.com" "after-read: then it stops"
fa_eq "$(status /dev/null -X PUT -d '[]' \
    "$FA_URL/_fake/subscriptions/$NEW/after-read")" 400 "after-read: an empty array is refused"
fa_eq "$(status /dev/null -X PUT -d '{}' \
    "$FA_URL/_fake/subscriptions/$NEW/after-read?reads=0")" 400 "after-read: reads=0 is refused"

fa_curl -X PUT --data-binary '{"value":[{"properties":' \
    "$FA_URL/_fake/subscriptions/$S_OK/raw?$v23" >/dev/null
fa_eq "$(fa_curl "${A0[@]}" "$FA_URL/subscriptions/$S_OK/$SC?$v23")" \
    '{"value":[{"properties":' "a raw body replaces the answer"
fa_curl -X DELETE "$FA_URL/_fake/subscriptions/$S_OK/raw?$v23" >/dev/null
fa_eq "$(fa_curl "${A0[@]}" "$FA_URL/subscriptions/$S_OK/$SC?$v23" |
    jq -r '.value[0].name')" default "... until it is removed"

# ---- hostile input
big=$(head -c 40000 /dev/zero | tr '\0' a)
fa_eq "$(status /dev/null -H "X-Big: $big" "$FA_URL/subscriptions")" 431 \
    "an oversized head: 431"
fa_eq "$(head -c 2000000 /dev/zero | fa_curl -o /dev/null -w '%{http_code}' \
    -X PUT --data-binary @- "$FA_URL/_fake/faults")" 413 "an oversized body: 413"
printf 'GARBAGE\r\n\r\n' | timeout 5 openssl s_client -quiet -connect \
    "${FA_URL#https://}" -CAfile "$FA_DIR/tls/ca.pem" 2>/dev/null |
    head -n 1 | grep -q ' 400 ' || fa_fail "garbage request line"
echo "ok - a garbage request line: 400"
n=$(printf 'GET /common/v2.0/.well-known/openid-configuration HTTP/1.1\r\nHost: x\r\n\r\nGET /_fake/faults HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n' |
    timeout 5 openssl s_client -quiet -connect "${FA_URL#https://}" \
        -CAfile "$FA_DIR/tls/ca.pem" 2>/dev/null | grep -o 'HTTP/1.1 200' | wc -l)
fa_eq "$n" 2 "two pipelined requests get two answers"
pad=$(head -c 4000 /dev/zero | tr '\0' ' ')
t=$(fa_curl -o /dev/null -w '%{http_code} %{time_total}' -X PUT \
    -H 'Expect: 100-continue' --data-binary "$pad{\"p500\":0}" "$FA_URL/_fake/faults")
fa_eq "${t% *}" 200 "a body sent after 100 Continue"
awk -v t="${t#* }" 'BEGIN { exit !(t < 0.9) }' || fa_fail "100-continue waited ${t#* } s"
echo "ok - 100 Continue is sent at once"
fa_eq "$(status /dev/null "${A0[@]}" "$FA_URL/subscriptions/$S_OK/$SC?$v23")" \
    200 "still serving after hostile input"

# ---- reset
fa_curl -X POST "$FA_URL/_fake/reset" >/dev/null
fa_eq "$(status /dev/null "${A0[@]}" "$FA_URL/subscriptions?api-version=2022-12-01")" \
    401 "reset forgets tokens"
TOK0=$(fa_token 0)
fa_eq "$(status /dev/null -H "Authorization: Bearer $TOK0" \
    "$FA_URL/subscriptions/$NEW?api-version=2022-12-01")" 404 \
    "reset drops created subscriptions"
fa_eq "$(fa_curl "$FA_URL/_fake/stats" | jq -r '.tokens.issued')" 1 \
    "reset zeroes the statistics"

# ---- token expiry
fa_curl -X PUT -d '{"token_lifetime_s":1}' "$FA_URL/_fake/config" >/dev/null
TOKX=$(fa_token 0)
fa_eq "$(fa_curl "$FA_URL/$T0/oauth2/v2.0/token" -d grant_type=client_credentials \
    -d "client_id=$C0" --data-urlencode "client_secret=$(fa_secret 0)" \
    -d scope=https://management.azure.com/.default | jq -r .expires_in)" 1 \
    "configurable token lifetime"
sleep 1.5 # the token's lifetime has to pass
fa_eq "$(status "$B" -H "Authorization: Bearer $TOKX" \
    "$FA_URL/subscriptions?api-version=2022-12-01")" 401 "an expired token"
fa_eq "$(jq -r .error.code "$B")" ExpiredAuthenticationToken \
    "ExpiredAuthenticationToken"
echo "PASS"
