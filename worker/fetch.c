#include "fetch.h"

#include "arm.h"
#include "conf.h"
#include "err.h"
#include "log.h"
#include "mem.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

struct cg_fetch {
    struct cg_arm *arm;
    enum cg_api_version version;
    bool roles; /* rules.owner_reachable.enabled */
    size_t in_flight;
};

struct cg_fetch_call {
    struct cg_fetch *f;
    struct cg_arm_call *arm_call;   /* the contacts */
    struct cg_arm_call *roles_call; /* the role assignments */
    int pending;                    /* reads still to answer */
    struct cg_fetch_result res;     /* filled as each read answers */
    char tenant[40];
    char subscription[40];
    int64_t deadline_ms;
    enum cg_api_version version;
    bool fell_back;
    int attempts;
    cg_fetch_fn fn;
    void *arg;
};

struct cg_fetch *cg_fetch_new(struct cg_arm *arm, const struct cg_conf *conf,
                              char *errbuf, size_t errsz)
{
    enum cg_api_version v =
        cg_api_version_parse(cg_conf_str(conf, "azure.api_version"));
    if (v == CG_API_UNKNOWN) {
        cg_err_set(errbuf, errsz, CG_ECONF, "azure.api_version '%s' unknown",
                   cg_conf_str(conf, "azure.api_version"));
        return NULL;
    }
    struct cg_fetch *f = cg_calloc(1, sizeof(*f));
    f->arm = arm;
    f->version = v;
    f->roles = cg_conf_bool(conf, "rules.owner_reachable.enabled");
    return f;
}

void cg_fetch_free(struct cg_fetch *f)
{
    free(f);
}

size_t cg_fetch_in_flight(const struct cg_fetch *f)
{
    return f->in_flight;
}

static void fetch_issue(struct cg_fetch_call *c);

/* Sets an all-rules verdict on res. */
static void verdict(struct cg_fetch_result *res, enum cg_status st,
                    const char *code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void verdict(struct cg_fetch_result *res, enum cg_status st,
                    const char *code, const char *fmt, ...)
{
    va_list ap;
    res->status = st;
    res->reason_code = code;
    va_start(ap, fmt);
    vsnprintf(res->reason, sizeof(res->reason), fmt, ap);
    va_end(ap);
}

/* ARM's answer to an api-version the endpoint does not serve. */
static bool version_rejected(const struct cg_arm_result *r)
{
    return r->err == CG_EBADREQ &&
           (strcasecmp(r->code, "InvalidApiVersionParameter") == 0 ||
            strcasecmp(r->code, "NoRegisteredProviderFound") == 0 ||
            strcasecmp(r->code, "InvalidResourceType") == 0);
}

void cg_fetch_classify(const struct cg_arm_result *r, const char *subscription,
                       struct cg_fetch_result *res)
{
    res->err = r->err;
    const char *why = r->why && *r->why ? r->why : cg_err_desc(r->err);
    /* ARM answers an unregistered provider with 409, sometimes 400. The
     * fix is one call, POST .../providers/Microsoft.Security/register:
     * the finding names the command that makes it. */
    if ((r->err == CG_ECONFLICT || r->err == CG_EBADREQ) &&
        strcasecmp(r->code, "MissingSubscriptionRegistration") == 0) {
        verdict(res, CG_STATUS_ERROR, "PROVIDER_NOT_REGISTERED",
                "The subscription is not registered with "
                "Microsoft.Security; register it with `az provider register "
                "--namespace Microsoft.Security --subscription %s`: %s",
                subscription, why);
        return;
    }
    /* Retried as a transport failure until the deadline; named apart so
     * that an operator looks at certificates, not at Azure's health. */
    if (r->err == CG_ETLS || (r->err == CG_EDEADLINE && r->cause == CG_ETLS)) {
        verdict(res, CG_STATUS_ERROR, "TLS_VERIFICATION_FAILED",
                "The TLS peer could not be verified: %s", why);
        return;
    }
    switch (r->err) {
    case CG_ENOTFOUND:
        if (strcasecmp(r->code, "SubscriptionNotFound") == 0)
            verdict(res, CG_STATUS_SKIPPED, "SUBSCRIPTION_NOT_FOUND",
                    "The subscription no longer exists: %s", why);
        else
            verdict(res, CG_STATUS_ERROR, "AZURE_NOT_FOUND",
                    "Azure answered 404: %s", why);
        break;
    case CG_EFORBIDDEN:
        verdict(res, CG_STATUS_ERROR, "AUTHORIZATION_FAILED",
                "The principal may not read security contacts (it needs "
                "Security Reader or Reader on the subscription): %s",
                why);
        break;
    case CG_ECONFLICT:
        if (strcasestr(r->code, "Disabled"))
            verdict(res, CG_STATUS_SKIPPED, "SUBSCRIPTION_DISABLED",
                    "The subscription is disabled: %s", why);
        else
            verdict(res, CG_STATUS_ERROR, "AZURE_CONFLICT",
                    "Azure answered 409: %s", why);
        break;
    case CG_EBADREQ:
        verdict(res, CG_STATUS_ERROR, "AZURE_REJECTED",
                "Azure rejected the request: %s", why);
        break;
    case CG_ENOCRED:
        verdict(res, CG_STATUS_ERROR, "NO_CREDENTIALS",
                "No credentials are configured for the tenant: %s", why);
        break;
    case CG_EAUTH:
        verdict(res, CG_STATUS_ERROR, "AUTHENTICATION_FAILED",
                "The tenant's credentials were refused: %s", why);
        break;
    case CG_ECONF:
        verdict(res, CG_STATUS_ERROR, "CREDENTIALS_UNREADABLE",
                "The tenant's credentials could not be used: %s", why);
        break;
    case CG_ETOOBIG:
        verdict(res, CG_STATUS_ERROR, "BODY_TOO_LARGE",
                "Azure's answer was too large: %s", why);
        break;
    case CG_EPARSE:
        verdict(res, CG_STATUS_ERROR, "BODY_MALFORMED",
                "Azure's answer could not be read: %s", why);
        break;
    case CG_EINVAL:
        verdict(res, CG_STATUS_ERROR, "INVALID_REQUEST", "%s", why);
        break;
    default:
        verdict(res, CG_STATUS_ERROR, "AZURE_UNAVAILABLE",
                "Azure did not answer in time (%d attempts): %s", r->attempts,
                why);
        break;
    }
}

static void call_free(struct cg_fetch_call *c)
{
    cg_contacts_free(&c->res.ct);
    cg_owners_free(&c->res.owners);
    free(c);
}

/* The last read to answer hands the result over. */
static void read_done(struct cg_fetch_call *c)
{
    if (--c->pending > 0)
        return;
    struct cg_fetch *f = c->f;
    f->in_flight--;
    c->fn(&c->res, c->arg);
    call_free(c);
}

static void fetch_done(const struct cg_arm_result *r, void *arg)
{
    struct cg_fetch_call *c = arg;
    c->arm_call = NULL;
    c->attempts += r->attempts;
    if (version_rejected(r) && !c->fell_back && c->version != CG_API_2020) {
        cg_info("fetch.fallback", "subscription=%s from=%s to=%s code=%s",
                c->subscription, cg_api_version_name(c->version),
                cg_api_version_name(CG_API_2020), r->code);
        c->fell_back = true;
        c->version = CG_API_2020;
        fetch_issue(c);
        return;
    }
    struct cg_fetch_result *res = &c->res;
    res->version = c->version;
    res->http_status = r->status;
    res->attempts += c->attempts;
    res->pages = r->pages;
    if (r->elapsed_ms > res->elapsed_ms)
        res->elapsed_ms = r->elapsed_ms;
    if (r->err == 0) {
        char err[256];
        json_t *items = r->items ? r->items : json_array();
        int prc = cg_contacts_parse_json(&res->ct, items, c->version, err,
                                         sizeof(err));
        if (!r->items)
            json_decref(items);
        if (prc) {
            res->err = prc;
            verdict(res, CG_STATUS_ERROR, "BODY_MALFORMED",
                    "Azure's answer could not be read: %s", err);
        }
    } else {
        cg_fetch_classify(r, c->subscription, res);
    }
    read_done(c);
}

/* A role assignments read that failed decides owner-reachable alone; the
 * contacts' codes apply, with the permission this read needs. */
static void roles_done(const struct cg_arm_result *r, void *arg)
{
    struct cg_fetch_call *c = arg;
    struct cg_fetch_result *res = &c->res;
    c->roles_call = NULL;
    res->attempts += r->attempts;
    res->role_pages = r->pages;
    res->role_elapsed_ms = r->elapsed_ms;
    if (r->elapsed_ms > res->elapsed_ms)
        res->elapsed_ms = r->elapsed_ms;
    char err[256];
    if (r->err == 0 &&
        cg_owners_parse_json(&res->owners, r->items, err, sizeof(err)) == 0) {
        read_done(c);
        return;
    }
    struct cg_fetch_result v;
    memset(&v, 0, sizeof(v));
    if (r->err == 0) {
        verdict(&v, CG_STATUS_ERROR, "BODY_MALFORMED",
                "Azure's role assignments could not be read: %s", err);
    } else if (r->err == CG_EFORBIDDEN) {
        const char *why = r->why && *r->why ? r->why : cg_err_desc(r->err);
        verdict(&v, CG_STATUS_ERROR, "AUTHORIZATION_FAILED",
                "The principal may not read role assignments (it needs "
                "Microsoft.Authorization/roleAssignments/read on the "
                "subscription, which Reader and Security Reader grant): %s",
                why);
    } else {
        cg_fetch_classify(r, c->subscription, &v);
    }
    cg_info("fetch.roles_unreadable",
            "subscription=%s status=%s code=%s reason=\"%s\"", c->subscription,
            cg_status_name(v.status), v.reason_code, v.reason);
    cg_owners_unreadable(&res->owners, v.status, v.reason_code, v.reason);
    read_done(c);
}

static void fetch_issue(struct cg_fetch_call *c)
{
    char path[256];
    snprintf(path, sizeof(path),
             "/subscriptions/%s/providers/Microsoft.Security/"
             "securityContacts?api-version=%s",
             c->subscription, cg_api_version_name(c->version));
    struct cg_arm_request req = {
        .method = CG_HTTP_GET,
        .tenant = c->tenant,
        .subscription = c->subscription,
        .path = path,
        .deadline_ms = c->deadline_ms,
    };
    c->arm_call = cg_arm_list(c->f->arm, &req, fetch_done, c);
}

static void roles_issue(struct cg_fetch_call *c)
{
    char path[256];
    snprintf(path, sizeof(path),
             "/subscriptions/%s/providers/Microsoft.Authorization/"
             "roleAssignments?%%24filter=atScope%%28%%29&api-version=%s",
             c->subscription, CG_FETCH_ROLES_API_VERSION);
    struct cg_arm_request req = {
        .method = CG_HTTP_GET,
        .tenant = c->tenant,
        .subscription = c->subscription,
        .path = path,
        .deadline_ms = c->deadline_ms,
    };
    c->roles_call = cg_arm_list(c->f->arm, &req, roles_done, c);
}

struct cg_fetch_call *cg_fetch_start(struct cg_fetch *f,
                                     const char *auth_tenant,
                                     const char *subscription,
                                     int64_t deadline_ms, cg_fetch_fn fn,
                                     void *arg)
{
    struct cg_fetch_call *c = cg_calloc(1, sizeof(*c));
    c->f = f;
    cg_strlcpy(c->tenant, auth_tenant, sizeof(c->tenant));
    cg_strlcpy(c->subscription, subscription, sizeof(c->subscription));
    c->deadline_ms = deadline_ms;
    c->version = f->version;
    c->fn = fn;
    c->arg = arg;
    cg_contacts_init(&c->res.ct);
    cg_owners_init(&c->res.owners);
    f->in_flight++;
    /* Both reads go out now; the ARM client answers from the loop, never
     * inside cg_arm_list, so neither can finish before both are issued. */
    c->pending = f->roles ? 2 : 1;
    fetch_issue(c);
    if (f->roles)
        roles_issue(c);
    return c;
}

void cg_fetch_cancel(struct cg_fetch *f, struct cg_fetch_call *c)
{
    if (!c)
        return;
    cg_arm_cancel(f->arm, c->arm_call);
    cg_arm_cancel(f->arm, c->roles_call);
    f->in_flight--;
    call_free(c);
}
