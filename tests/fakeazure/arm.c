/*
 * Resource Manager routes of the fake (declared in fake.h): subscriptions,
 * tenants, Microsoft.Security/securityContacts and the role assignments
 * LIST (Microsoft.Authorization/roleAssignments), with ARM's checks in
 * ARM's order: authentication, api-version, throttling, injected faults,
 * then the subscription (exists, same tenant, registered, writable).
 */
#include "fake.h"

#include "mem.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define PROVIDER_PREFIX "/providers/microsoft.security"
#define CONTACTS_PREFIX PROVIDER_PREFIX "/securitycontacts"
#define ROLES_PREFIX    "/providers/microsoft.authorization/roleassignments"
#define QUERY_VALUE_MAX 256

static const char *const resource_versions[] = {
    "2014-04-01", "2015-11-01", "2016-06-01", "2018-06-01", "2019-06-01",
    "2019-11-01", "2020-01-01", "2021-01-01", "2021-04-01", "2022-01-01",
    "2022-09-01", "2022-12-01", "2023-07-01", NULL
};

/* Microsoft.Authorization/roleAssignments versions that LIST answers. */
static const char *const role_versions[] = { "2015-07-01", "2018-01-01-preview",
                                             "2020-04-01-preview", "2022-04-01",
                                             NULL };

enum op {
    OP_SUBS,
    OP_TENANTS,
    OP_SUB,
    OP_LIST,
    OP_CONTACT,
    OP_PROVIDER, /* GET /subscriptions/{id}/providers/Microsoft.Security */
    OP_REGISTER, /* POST .../providers/Microsoft.Security/register */
    OP_ROLES,    /* GET .../providers/Microsoft.Authorization/roleAssignments */
    OP_UNKNOWN,
};

static const char *const op_routes[] = { "subscriptions",     "tenants",
                                         "subscription",      "contacts.list",
                                         "contact",           "provider",
                                         "provider.register", "roles.list",
                                         "arm.unknown" };

static bool is_guid(const char *s, size_t n)
{
    if (n != 36)
        return false;
    for (size_t i = 0; i < n; i++) {
        if (i == 8 || i == 13 || i == 18 || i == 23) {
            if (s[i] != '-')
                return false;
        } else if (!isxdigit((unsigned char)s[i])) {
            return false;
        }
    }
    return true;
}

/* Splits the path: sets the subscription id and the contact name. */
static enum op route(const char *path, char *sub, size_t subsz, char *name,
                     size_t namesz)
{
    sub[0] = name[0] = '\0';
    size_t len = strlen(path);
    while (len > 1 && path[len - 1] == '/')
        len--;
    if (len == 14 && !strncasecmp(path, "/subscriptions", 14))
        return OP_SUBS;
    if (len == 8 && !strncasecmp(path, "/tenants", 8))
        return OP_TENANTS;
    if (len <= 15 || strncasecmp(path, "/subscriptions/", 15))
        return OP_UNKNOWN;
    const char *s = path + 15;
    const char *end = path + len;
    const char *slash = memchr(s, '/', (size_t)(end - s));
    size_t sl = slash ? (size_t)(slash - s) : (size_t)(end - s);
    if (sl >= subsz)
        return OP_UNKNOWN;
    memcpy(sub, s, sl);
    sub[sl] = '\0';
    if (!slash)
        return OP_SUB;
    size_t rl = (size_t)(end - slash), ppl = strlen(PROVIDER_PREFIX);
    if (rl == ppl && !strncasecmp(slash, PROVIDER_PREFIX, ppl))
        return OP_PROVIDER;
    if (rl == ppl + 9 && !strncasecmp(slash, PROVIDER_PREFIX "/register", rl))
        return OP_REGISTER;
    size_t ral = strlen(ROLES_PREFIX);
    if (rl == ral && !strncasecmp(slash, ROLES_PREFIX, ral))
        return OP_ROLES;
    size_t pl = strlen(CONTACTS_PREFIX);
    if ((size_t)(end - slash) < pl || strncasecmp(slash, CONTACTS_PREFIX, pl))
        return OP_UNKNOWN;
    const char *rest = slash + pl;
    if (rest == end)
        return OP_LIST;
    if (*rest != '/' || rest + 1 == end)
        return OP_UNKNOWN;
    size_t nl = (size_t)(end - rest - 1);
    if (nl >= namesz || memchr(rest + 1, '/', nl))
        return OP_UNKNOWN;
    memcpy(name, rest + 1, nl);
    name[nl] = '\0';
    return OP_CONTACT;
}

static void unauthorized(struct cg_fa *fa, struct cg_fa_resp *resp,
                         enum cg_fa_auth why)
{
    const char *code = "AuthenticationFailed";
    const char *msg = "Authentication failed. The 'Authorization' header is "
                      "missing.";
    if (why == CG_FA_AUTH_INVALID) {
        code = "InvalidAuthenticationToken";
        msg = "The access token is invalid.";
    } else if (why == CG_FA_AUTH_EXPIRED) {
        code = "ExpiredAuthenticationToken";
        msg = "The access token expiry UTC time is earlier than current UTC "
              "time.";
    }
    cg_fa_arm_error(resp, 401, code, "%s", msg);
    cg_fa_resp_header(resp, "WWW-Authenticate",
                      "Bearer authorization_uri=\"%s/common\", "
                      "error=\"invalid_token\", error_description=\"%s\"",
                      fa->base_url, msg);
}

static void subscriptions_page(struct cg_fa *fa, const struct cg_fa_token *tok,
                               const char *version, const char *query,
                               struct cg_fa_resp *resp)
{
    char skip[32];
    size_t off = 0;
    if (cg_fa_form_get(query, "$skiptoken", skip, sizeof(skip)) > 0) {
        char *end;
        unsigned long long v = strtoull(skip, &end, 10);
        if (*end) {
            cg_fa_arm_error(resp, 400, "InvalidSkipToken",
                            "The skip token is invalid.");
            return;
        }
        off = (size_t)v;
    }
    size_t n = cg_fa_store_tenant_sub_count(fa->store, tok->tenant);
    json_t *value = json_array();
    size_t i = off;
    for (; i < n && i < off + fa->page_size; i++) {
        struct cg_fa_sub *sub =
            cg_fa_store_tenant_sub(fa->store, tok->tenant, i);
        json_array_append_new(value, cg_fa_store_sub_json(fa->store, sub));
    }
    json_t *o = json_pack("{s:o}", "value", value);
    if (i < n) {
        char *next = cg_asprintf("%s/subscriptions?api-version=%s&%%24"
                                 "skiptoken=%zu",
                                 fa->base_url, version, i);
        json_object_set_new(o, "nextLink", json_string(next));
        free(next);
    }
    char *s = json_dumps(o, JSON_COMPACT);
    cg_buf_puts(&resp->body, s);
    free(s);
    json_decref(o);
}

static void tenants_page(struct cg_fa *fa, const struct cg_fa_token *tok,
                         struct cg_fa_resp *resp)
{
    /* A token sees exactly its own tenant. */
    const struct cg_fa_tenant *t = cg_fa_store_tenant(fa->store, tok->tenant);
    char *id = cg_asprintf("/tenants/%s", t->id);
    char *domain = cg_asprintf("%s.onmicrosoft.com", t->name);
    json_t *o =
        json_pack("{s:[{s:s,s:s,s:s,s:s,s:s,s:[s],s:s,s:s}]}", "value", "id",
                  id, "tenantId", t->id, "tenantCategory", "Home",
                  "countryCode", "US", "displayName", t->name, "domains",
                  domain, "defaultDomain", domain, "tenantType", "AAD");
    char *s = json_dumps(o, JSON_COMPACT);
    cg_buf_puts(&resp->body, s);
    free(s);
    json_decref(o);
    free(id);
    free(domain);
}

/*
 * Splits a LIST answer into pages of contacts_page_size, linked by
 * nextLink. A page that is exactly full still gets a nextLink to an empty
 * last page, as ARM does now and then. (2020's bare array has no place for
 * a nextLink.)
 */
static void page_contacts(struct cg_fa *fa, const struct cg_fa_req *req,
                          const char *version, struct cg_fa_resp *resp)
{
    char skip[32];
    size_t off = 0, n = fa->contacts_page_size;
    if (cg_fa_form_get(req->query, "$skiptoken", skip, sizeof(skip)) > 0)
        off = (size_t)strtoull(skip, NULL, 10);
    json_t *all = json_loadb(resp->body.data, resp->body.len, 0, NULL);
    json_t *value = json_object_get(all, "value");
    if (!json_is_array(value)) {
        json_decref(all);
        return;
    }
    size_t total = json_array_size(value);
    json_t *page = json_array();
    for (size_t i = off; i < total && i < off + n; i++)
        json_array_append(page, json_array_get(value, i));
    json_t *o = json_pack("{s:o}", "value", page);
    if (off + n <= total) {
        const char *q = strchr(req->target, '?');
        size_t plen = q ? (size_t)(q - req->target) : strlen(req->target);
        char *next =
            cg_asprintf("%s%.*s?api-version=%s&%%24skiptoken=%zu", fa->base_url,
                        (int)plen, req->target, version, off + n);
        json_object_set_new(o, "nextLink", json_string(next));
        free(next);
    }
    char *s = json_dumps(o, JSON_COMPACT);
    cg_buf_reset(&resp->body);
    cg_buf_puts(&resp->body, s);
    free(s);
    json_decref(o);
    json_decref(all);
}

/* The control API's "edit right after the next read": the answer already
 * holds what was read, the edit lands before the client can act on it. */
static void after_read(struct cg_fa *fa, struct cg_fa_sub *sub)
{
    if (!json_array_size(sub->after_read))
        return;
    if (sub->after_read_skip > 0) {
        sub->after_read_skip--;
        return;
    }
    json_t *e = json_array_get(sub->after_read, 0);
    cg_fa_store_portal_edit(fa->store, sub, json_is_null(e) ? NULL : e);
    json_array_remove(sub->after_read, 0);
    if (!json_array_size(sub->after_read)) {
        json_decref(sub->after_read);
        sub->after_read = NULL;
    }
}

/*
 * roleAssignments LIST at a subscription: what applies there (inherited
 * from management groups and the root included) whether or not
 * $filter=atScope() is given; any other filter is refused, as the fake
 * models no principal directory. A scenario may deny the read (a scanner
 * holding only Security Reader) or split it over pages joined by nextLink.
 */
static void roles_page(struct cg_fa *fa, const struct cg_fa_req *req,
                       struct cg_fa_sub *sub, const char *version,
                       struct cg_fa_resp *resp)
{
    const struct cg_fa_scenario *sc =
        cg_fa_store_scenario(fa->store, sub->scenario);
    char filter[QUERY_VALUE_MAX], skip[32];
    if (cg_fa_form_get(req->query, "$filter", filter, sizeof(filter)) >= 0 &&
        strcmp(filter, "atScope()") != 0) {
        cg_fa_arm_error(resp, 400, "UnsupportedQuery",
                        "The filter '%.64s' is not supported by this fake; "
                        "use atScope().",
                        filter);
        return;
    }
    if (sc->roles_denied) {
        cg_fa_arm_error(resp, 403, "AuthorizationFailed",
                        "The client does not have authorization to perform "
                        "action 'Microsoft.Authorization/roleAssignments/"
                        "read' over scope '/subscriptions/%s' or the scope "
                        "is invalid. If access was recently granted, please "
                        "refresh your credentials.",
                        sub->id);
        return;
    }
    unsigned page = 0;
    if (cg_fa_form_get(req->query, "$skiptoken", skip, sizeof(skip)) > 0)
        page = (unsigned)strtoul(skip, NULL, 10);
    bool more = false;
    struct cg_buf body;
    cg_buf_init(&body, 16 << 20);
    cg_fa_store_roles(fa->store, sub, page, &body, &more);
    if (!more) {
        cg_buf_append(&resp->body, body.data, body.len);
    } else {
        json_t *o = json_loadb(body.data, body.len, 0, NULL);
        char *next = cg_asprintf(
            "%s/subscriptions/%s/providers/Microsoft.Authorization/"
            "roleAssignments?api-version=%s&%%24filter=atScope%%28%%29&"
            "%%24skiptoken=%u",
            fa->base_url, sub->id, version, page + 1);
        json_object_set_new(o, "nextLink", json_string(next));
        free(next);
        char *s = json_dumps(o, JSON_COMPACT);
        cg_buf_puts(&resp->body, s);
        free(s);
        json_decref(o);
    }
    cg_buf_free(&body);
    resp->status = 200;
}

static bool version_in(const char *v, const char *const *list)
{
    for (int i = 0; list[i]; i++)
        if (!strcmp(v, list[i]))
            return true;
    return false;
}

static void bad_version(struct cg_fa_resp *resp, const char *v,
                        const char *supported)
{
    cg_fa_arm_error(resp, 400, "InvalidApiVersionParameter",
                    "The api-version '%.64s' is invalid. The supported "
                    "versions are '%s'.",
                    v, supported);
}

/*
 * The resource provider as GET .../providers/Microsoft.Security shows it;
 * POST .../register registers it at once (Azure answers "Registering" and
 * finishes within minutes), after which the subscription's contacts read.
 */
static void provider(struct cg_fa_sub *sub, bool reg, struct cg_fa_resp *resp)
{
    if (reg)
        sub->registered = true;
    char *id =
        cg_asprintf("/subscriptions/%s/providers/Microsoft.Security", sub->id);
    json_t *o = json_pack(
        "{s:s,s:s,s:s,s:s,s:[{s:s,s:[],s:[s,s,s],s:s}]}", "id", id, "namespace",
        "Microsoft.Security", "registrationState",
        sub->registered ? "Registered" : "NotRegistered", "registrationPolicy",
        "RegistrationRequired", "resourceTypes", "resourceType",
        "securityContacts", "locations", "apiVersions", "2023-12-01-preview",
        "2020-01-01-preview", "2017-08-01-preview", "capabilities", "None");
    char *s = json_dumps(o, JSON_COMPACT);
    cg_buf_puts(&resp->body, s);
    free(s);
    json_decref(o);
    free(id);
}

const char *cg_fa_arm_handle(struct cg_fa *fa, const struct cg_fa_req *req,
                             struct cg_fa_resp *resp)
{
    char subid[64], name[80], version[QUERY_VALUE_MAX];
    enum op op = route(req->path, subid, sizeof(subid), name, sizeof(name));
    const char *rname = op_routes[op];
    bool get = !strcmp(req->method, "GET");
    bool put = !strcmp(req->method, "PUT");
    bool del = !strcmp(req->method, "DELETE");
    bool patch = !strcmp(req->method, "PATCH");
    bool post = !strcmp(req->method, "POST");
    if (op == OP_CONTACT)
        rname = get     ? "contacts.get"
                : put   ? "contacts.put"
                : del   ? "contacts.delete"
                : patch ? "contacts.patch"
                        : "contact";

    cg_fa_resp_header(resp, "x-ms-request-id",
                      "00000000-0000-4000-8000-%012llx",
                      (unsigned long long)++fa->request_id);
    const struct cg_fa_token *tok = NULL;
    enum cg_fa_auth auth = cg_fa_entra_check(
        fa->entra, cg_fa_req_header(req, "Authorization"), &tok);
    if (auth != CG_FA_AUTH_OK) {
        unauthorized(fa, resp, auth);
        return rname;
    }
    if (op == OP_UNKNOWN) {
        cg_fa_arm_error(resp, 404, "InvalidResourceType",
                        "The resource type could not be found for path "
                        "'%.200s'.",
                        req->path);
        return rname;
    }
    if ((op == OP_REGISTER && !post) ||
        (op != OP_CONTACT && op != OP_REGISTER && !get) ||
        (op == OP_CONTACT && !get && !put && !del && !patch)) {
        cg_fa_arm_error(resp, 405, "MethodNotAllowed",
                        "The method '%.16s' is not allowed.", req->method);
        return rname;
    }
    if (cg_fa_form_get(req->query, "api-version", version, sizeof(version)) <
        0) {
        cg_fa_arm_error(resp, 400, "MissingApiVersionParameter",
                        "The api-version query parameter (?api-version=) is "
                        "required for all requests.");
        return rname;
    }
    int ver = -1;
    if (op == OP_LIST || op == OP_CONTACT) {
        ver = cg_fa_ver_parse(version);
        if (ver < 0) {
            bad_version(resp, version,
                        "2017-08-01-preview, 2020-01-01-preview, "
                        "2023-12-01-preview");
            return rname;
        }
        /* Only 2017-08-01-preview defines PATCH. */
        if (patch && ver != CG_FA_V2017) {
            cg_fa_arm_error(resp, 405, "MethodNotAllowed",
                            "The method 'PATCH' is not allowed for "
                            "api-version '%s'.",
                            version);
            return rname;
        }
    } else if (op == OP_ROLES) {
        if (!version_in(version, role_versions)) {
            bad_version(resp, version,
                        "2015-07-01, 2018-01-01-preview, 2020-04-01-preview, "
                        "2022-04-01");
            return rname;
        }
    } else if (!version_in(version, resource_versions)) {
        bad_version(resp, version, "2016-06-01, 2020-01-01, 2022-12-01");
        return rname;
    }

    /* Throttling: per (principal, subscription), or per tenant scope for
     * tenant-level reads. */
    char scope[64];
    if (subid[0])
        cg_strlcpy(scope, subid, sizeof(scope));
    else
        snprintf(scope, sizeof(scope), "tenant:%.40s", tok->tenant_id);
    bool write = put || del || patch || post;
    struct cg_fa_throttle th;
    cg_fa_faults_throttle(fa->faults, tok->principal, scope, req->path, write,
                          &th);
    /* Tenant-level reads (subscriptions, tenants) report the tenant's
     * budget under ARM's tenant header. */
    const char *hdr = write ? "x-ms-ratelimit-remaining-subscription-writes"
                      : subid[0] ? "x-ms-ratelimit-remaining-subscription-reads"
                                 : "x-ms-ratelimit-remaining-tenant-reads";
    cg_fa_resp_header(resp, hdr, "%ld", th.remaining);
    if (th.limited) {
        cg_fa_arm_error(resp, 429, "TooManyRequests",
                        "The request is being throttled as the limit has "
                        "been reached for operation type - %s. Retry after "
                        "%u seconds.",
                        write ? "Write" : "Read", th.retry_after);
        cg_fa_resp_header(resp, "Retry-After", "%u", th.retry_after);
        return rname;
    }
    enum cg_fa_draw draw = cg_fa_faults_draw(fa->faults);
    switch (draw) {
    case CG_FA_DRAW_429: {
        unsigned ra = cg_fa_faults_conf(fa->faults)->retry_after_s;
        cg_fa_faults_note_retry_after(fa->faults, tok->principal, scope,
                                      req->path, ra);
        cg_fa_arm_error(resp, 429, "TooManyRequests",
                        "The request is being throttled. Retry after %u "
                        "seconds.",
                        ra);
        cg_fa_resp_header(resp, "Retry-After", "%u", ra);
        return rname;
    }
    case CG_FA_DRAW_500:
        cg_fa_arm_error(resp, 500, "InternalServerError",
                        "Encountered internal server error. Diagnostic "
                        "information: timestamp '', tracking id ''.");
        return rname;
    case CG_FA_DRAW_503:
        cg_fa_arm_error(resp, 503, "ServiceUnavailable",
                        "The service is temporarily unavailable.");
        return rname;
    case CG_FA_DRAW_DROP:
        resp->fault = CG_FA_FAULT_DROP;
        break;
    case CG_FA_DRAW_SLOW:
        resp->fault = CG_FA_FAULT_SLOW;
        break;
    case CG_FA_DRAW_MALFORMED:
        resp->fault = CG_FA_FAULT_MALFORMED;
        break;
    default:
        break;
    }

    if (op == OP_SUBS) {
        subscriptions_page(fa, tok, version, req->query, resp);
        return rname;
    }
    if (op == OP_TENANTS) {
        tenants_page(fa, tok, resp);
        return rname;
    }
    if (!is_guid(subid, strlen(subid))) {
        cg_fa_arm_error(resp, 400, "InvalidSubscriptionId",
                        "The provided subscription identifier '%.64s' is "
                        "malformed or invalid.",
                        subid);
        return rname;
    }
    struct cg_fa_sub *sub = cg_fa_store_sub_find(fa->store, subid);
    if (!sub) {
        cg_fa_arm_error(resp, 404, "SubscriptionNotFound",
                        "The subscription '%s' could not be found.", subid);
        return rname;
    }
    if (sub->tenant != tok->tenant) {
        cg_fa_arm_error(
            resp, 403, "AuthorizationFailed",
            "The client '%s' with object id '%s' does not have "
            "authorization to perform action '%s' over scope "
            "'/subscriptions/%s' or the scope is invalid. If access was "
            "recently granted, please refresh your credentials.",
            tok->client_id, tok->client_id,
            op == OP_SUB        ? "Microsoft.Resources/subscriptions/read"
            : op == OP_REGISTER ? "Microsoft.Security/register/action"
            : op == OP_PROVIDER ? "Microsoft.Resources/subscriptions/"
                                  "providers/read"
            : op == OP_ROLES    ? "Microsoft.Authorization/roleAssignments/read"
            : write             ? "Microsoft.Security/securityContacts/write"
                                : "Microsoft.Security/securityContacts/read",
            sub->id);
        return rname;
    }
    if (write && op == OP_CONTACT &&
        cg_fa_store_tenant(fa->store, sub->tenant)->reject_writes) {
        cg_fa_arm_error(resp, 400, "InvalidInput",
                        "The security contact '%s' could not be written: "
                        "the request content was rejected.",
                        name);
        return rname;
    }
    if (write && cg_fa_store_tenant(fa->store, sub->tenant)->deny_writes) {
        /* The principal reads but may not write (Security Reader). */
        if (op == OP_REGISTER)
            cg_fa_arm_error(resp, 403, "AuthorizationFailed",
                            "The client '%s' with object id '%s' does not "
                            "have authorization to perform action "
                            "'Microsoft.Security/register/action' over scope "
                            "'/subscriptions/%s' or the scope is invalid.",
                            tok->client_id, tok->client_id, sub->id);
        else
            cg_fa_arm_error(
                resp, 403, "AuthorizationFailed",
                "The client '%s' with object id '%s' does not have "
                "authorization to perform action "
                "'Microsoft.Security/securityContacts/write' over scope "
                "'/subscriptions/%s/providers/Microsoft.Security/"
                "securityContacts/%s' or the scope is invalid.",
                tok->client_id, tok->client_id, sub->id, name);
        return rname;
    }
    if (op == OP_ROLES) {
        roles_page(fa, req, sub, version, resp);
        return rname;
    }
    if (op == OP_SUB) {
        json_t *o = cg_fa_store_sub_json(fa->store, sub);
        char *s = json_dumps(o, JSON_COMPACT);
        cg_buf_puts(&resp->body, s);
        free(s);
        json_decref(o);
        return rname;
    }
    if (op == OP_PROVIDER || op == OP_REGISTER) {
        if (op == OP_REGISTER && (!strcmp(sub->state, "Disabled") ||
                                  !strcmp(sub->state, "Deleted"))) {
            cg_fa_arm_error(resp, 409, "ReadOnlyDisabledSubscription",
                            "The subscription '%s' is disabled and therefore "
                            "marked as read only.",
                            sub->id);
            return rname;
        }
        provider(sub, op == OP_REGISTER, resp);
        return rname;
    }
    if (!sub->registered) {
        cg_fa_arm_error(resp, 409, "MissingSubscriptionRegistration",
                        "The subscription is not registered to use "
                        "namespace 'Microsoft.Security'. See "
                        "https://aka.ms/rps-not-found for how to register "
                        "subscriptions.");
        return rname;
    }
    if (sub->reject[ver]) {
        bad_version(resp, version,
                    sub->reject[CG_FA_V2020]
                        ? "2017-08-01-preview"
                        : "2017-08-01-preview, 2020-01-01-preview");
        return rname;
    }
    if (write &&
        (!strcmp(sub->state, "Disabled") || !strcmp(sub->state, "Deleted"))) {
        cg_fa_arm_error(resp, 409, "ReadOnlyDisabledSubscription",
                        "The subscription '%s' is disabled and therefore "
                        "marked as read only. You cannot perform any write "
                        "actions on this subscription until it is "
                        "re-enabled.",
                        sub->id);
        return rname;
    }
    if (op == OP_LIST) {
        resp->status = cg_fa_store_list(fa->store, sub, ver, &resp->body);
        after_read(fa, sub);
        if (fa->contacts_page_size && ver != CG_FA_V2020 && !sub->raw[ver])
            page_contacts(fa, req, version, resp);
    } else if (get) {
        resp->status = cg_fa_store_get(fa->store, sub, ver, name, &resp->body);
        after_read(fa, sub);
    } else if (put) {
        resp->status = cg_fa_store_put(fa->store, sub, ver, name, req->body,
                                       req->body_len, &resp->body);
        cg_fa_stats_put(fa, sub->id, version, name, req->body, req->body_len,
                        resp->status);
    } else if (patch) {
        resp->status = cg_fa_store_patch(fa->store, sub, name, req->body,
                                         req->body_len, &resp->body);
        cg_fa_stats_put(fa, sub->id, version, name, req->body, req->body_len,
                        resp->status);
    } else {
        resp->status = cg_fa_store_delete(fa->store, sub, ver, name);
    }
    return rname;
}
