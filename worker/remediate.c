#include "remediate.h"

#include "arm.h"
#include "cache.h"
#include "clock.h"
#include "contacts.h"
#include "err.h"
#include "json.h"
#include "log.h"
#include "loop.h"
#include "mem.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define CONTACT_PATH                                                           \
    "/subscriptions/%s/providers/Microsoft.Security/securityContacts/"         \
    "default?api-version=" CG_REMEDIATE_API_VERSION

/* ---- policy ------------------------------------------------------------ */

void cg_remediate_policy(const struct cg_conf *conf, const struct cg_tenant *t,
                         int job_mode, struct cg_remediate_policy *out)
{
    enum cg_remediation_mode mode = CG_REMEDIATION_OFF;
    cg_remediation_mode_parse(cg_conf_str(conf, "remediation.mode"), &mode);
    const char *emails = cg_conf_str(conf, "remediation.emails");
    const char *sev = cg_conf_str(conf, "remediation.alert_severity");
    const char *risk = cg_conf_str(conf, "remediation.attack_paths");
    if (t) {
        if (t->remediation_mode >= 0)
            mode = (enum cg_remediation_mode)t->remediation_mode;
        if (t->remediation_emails)
            emails = t->remediation_emails;
        if (t->remediation_alert_severity)
            sev = t->remediation_alert_severity;
        if (t->remediation_attack_paths)
            risk = t->remediation_attack_paths;
    }
    /* The modes are ordered off < dry-run < apply: a job can only ask for
     * less than its tenant allows. */
    if (job_mode >= 0 && job_mode < (int)mode)
        mode = (enum cg_remediation_mode)job_mode;
    memset(out, 0, sizeof(*out));
    out->mode = mode;
    out->plan.emails = emails && *emails ? emails : NULL;
    out->plan.alert_level = cg_level_parse(sev);
    out->plan.attack_level = cg_level_parse(risk);
    if (out->plan.alert_level < CG_LEVEL_LOW ||
        out->plan.alert_level > CG_LEVEL_HIGH)
        out->plan.alert_level = CG_LEVEL_HIGH;
    if (out->plan.attack_level < CG_LEVEL_LOW ||
        out->plan.attack_level > CG_LEVEL_CRITICAL)
        out->plan.attack_level = CG_LEVEL_HIGH;
}

bool cg_remediate_wanted(enum cg_remediation_mode mode,
                         const struct cg_finding *findings, size_t n,
                         enum cg_sub_state state, char *why, size_t whysz)
{
    char dummy[8];
    if (!why) {
        why = dummy;
        whysz = sizeof(dummy);
    }
    if (mode == CG_REMEDIATION_OFF) {
        snprintf(why, whysz, "remediation is off for this tenant");
        return false;
    }
    if (state != CG_SUB_ENABLED && state != CG_SUB_UNKNOWN) {
        snprintf(why, whysz, "the subscription is %s, not Enabled",
                 cg_sub_state_name(state));
        return false;
    }
    bool fail = false;
    for (size_t i = 0; i < n; i++) {
        /* owner-reachable is about role assignments, which remediation
         * never changes: it neither asks for a write nor stands in one's
         * way. */
        if (findings[i].rule == CG_RULE_OWNER_REACHABLE)
            continue;
        if (findings[i].status == CG_STATUS_ERROR ||
            findings[i].status == CG_STATUS_SKIPPED) {
            snprintf(why, whysz,
                     "rule %s is %s: the contact is not known "
                     "well enough to change it",
                     cg_rule_info(findings[i].rule)->id,
                     cg_status_name(findings[i].status));
            return false;
        }
        fail = fail || findings[i].status == CG_STATUS_FAIL;
    }
    if (!fail) {
        snprintf(why, whysz, "no rule fails");
        return false;
    }
    why[0] = '\0';
    return true;
}

/* ---- meaning ----------------------------------------------------------- */

static const json_t *props_of(const json_t *body)
{
    if (!body || json_is_null(body))
        return NULL;
    json_t *p = cg_json_member(body, "properties");
    return json_is_object(p) ? p : body;
}

static int cmp_ci(const void *a, const void *b)
{
    return strcasecmp(*(char *const *)a, *(char *const *)b);
}

struct strset {
    char **v;
    size_t n;
};

static void strset_add(struct strset *s, const char *p, size_t n)
{
    s->v = cg_realloc(s->v, (s->n + 1) * sizeof(*s->v));
    s->v[s->n++] = cg_strndup(p, n);
}

static void strset_sort(struct strset *s)
{
    if (s->n > 1)
        qsort(s->v, s->n, sizeof(*s->v), cmp_ci);
    /* Duplicates are one address. */
    size_t w = 0;
    for (size_t i = 0; i < s->n; i++) {
        if (w && !strcasecmp(s->v[w - 1], s->v[i])) {
            free(s->v[i]);
            continue;
        }
        s->v[w++] = s->v[i];
    }
    s->n = w;
}

static bool strset_equal(const struct strset *a, const struct strset *b)
{
    if (a->n != b->n)
        return false;
    for (size_t i = 0; i < a->n; i++)
        if (strcasecmp(a->v[i], b->v[i]))
            return false;
    return true;
}

static void strset_free(struct strset *s)
{
    for (size_t i = 0; i < s->n; i++)
        free(s->v[i]);
    free(s->v);
    memset(s, 0, sizeof(*s));
}

/* A part may still hold several addresses a person separated by spaces. */
static void email_part(const char *p, size_t n, void *arg)
{
    size_t i = 0;
    while (i < n) {
        while (i < n && isspace((unsigned char)p[i]))
            i++;
        size_t j = i;
        while (j < n && !isspace((unsigned char)p[j]))
            j++;
        if (j > i)
            strset_add(arg, p + i, j - i);
        i = j;
    }
}

static void emails_of(const json_t *props, struct strset *out)
{
    const char *e = cg_json_str(props, "emails");
    if (e)
        cg_emails_foreach(e, email_part, out);
    strset_sort(out);
}

static void roles_of(const json_t *props, struct strset *out)
{
    json_t *nbr = cg_json_member(props, "notificationsByRole");
    json_t *roles = cg_json_member(nbr, "roles");
    size_t i;
    json_t *r;
    json_array_foreach(roles, i, r)
    {
        if (json_is_string(r))
            strset_add(out, json_string_value(r), json_string_length(r));
    }
    strset_sort(out);
}

static void sources_of(const json_t *props, struct strset *out)
{
    json_t *srcs = cg_json_member(props, "notificationsSources");
    size_t i;
    json_t *s;
    json_array_foreach(srcs, i, s)
    {
        /* One string per source: every member, sorted, lower-cased values
         * of the known enums, so order and case do not matter. */
        json_t *copy = json_deep_copy(s);
        const char *k;
        json_t *v;
        json_object_foreach(copy, k, v)
        {
            if (json_is_string(v)) {
                char *low = cg_strdup(json_string_value(v));
                for (char *c = low; *c; c++)
                    if (*c >= 'A' && *c <= 'Z')
                        *c = (char)(*c - 'A' + 'a');
                json_string_set(v, low);
                free(low);
            }
        }
        char *d =
            json_dumps(copy, JSON_COMPACT | JSON_SORT_KEYS | JSON_ENCODE_ANY);
        strset_add(out, d ? d : "", d ? strlen(d) : 0);
        free(d);
        json_decref(copy);
    }
    strset_sort(out);
}

static bool ci_equal(const char *a, const char *b)
{
    if (!a || !b)
        return a == b;
    return strcasecmp(a, b) == 0;
}

bool cg_remediate_same_meaning(const json_t *a, const json_t *b)
{
    const json_t *pa = props_of(a), *pb = props_of(b);
    if (!pa || !pb)
        return pa == pb;
    if (json_is_true(cg_json_member(pa, "isEnabled")) !=
        json_is_true(cg_json_member(pb, "isEnabled")))
        return false;
    const char *pha = cg_json_str(pa, "phone"), *phb = cg_json_str(pb, "phone");
    if (strcmp(pha ? pha : "", phb ? phb : ""))
        return false;
    json_t *ra = cg_json_member(pa, "notificationsByRole");
    json_t *rb = cg_json_member(pb, "notificationsByRole");
    if (!ci_equal(cg_json_str(ra, "state"), cg_json_str(rb, "state")))
        return false;
    struct strset sa = { 0 }, sb = { 0 };
    bool same = true;
    emails_of(pa, &sa);
    emails_of(pb, &sb);
    same = same && strset_equal(&sa, &sb);
    strset_free(&sa);
    strset_free(&sb);
    roles_of(pa, &sa);
    roles_of(pb, &sb);
    same = same && strset_equal(&sa, &sb);
    strset_free(&sa);
    strset_free(&sb);
    sources_of(pa, &sa);
    sources_of(pb, &sb);
    same = same && strset_equal(&sa, &sb);
    strset_free(&sa);
    strset_free(&sb);
    /* Everything else that either side carries, by value. */
    static const char *const known[] = { "isEnabled",
                                         "phone",
                                         "emails",
                                         "notificationsByRole",
                                         "notificationsSources",
                                         NULL };
    const json_t *sides[2][2] = { { pa, pb }, { pb, pa } };
    for (int s = 0; s < 2 && same; s++) {
        const char *k;
        json_t *v;
        json_object_foreach((json_t *)sides[s][0], k, v)
        {
            bool skip = false;
            for (int i = 0; known[i]; i++)
                skip = skip || !strcmp(k, known[i]);
            if (!skip && !json_equal(v, json_object_get(sides[s][1], k)))
                same = false;
        }
    }
    return same;
}

static bool strset_has(const struct strset *s, const char *v)
{
    for (size_t i = 0; i < s->n; i++)
        if (!strcasecmp(s->v[i], v))
            return true;
    return false;
}

/* The first member of a missing from b, or NULL. */
static const char *strset_missing(const struct strset *a,
                                  const struct strset *b)
{
    for (size_t i = 0; i < a->n; i++)
        if (!strset_has(b, a->v[i]))
            return a->v[i];
    return NULL;
}

/* Sources by type only: lowering a level is what the plan is for. */
static void source_types_of(const json_t *props, struct strset *out)
{
    json_t *srcs = cg_json_member(props, "notificationsSources");
    size_t i;
    json_t *src;
    json_array_foreach(srcs, i, src)
    {
        const char *t = cg_json_str(src, "sourceType");
        if (!t)
            t = cg_json_str(src, "type");
        if (t)
            strset_add(out, t, strlen(t));
    }
    strset_sort(out);
}

bool cg_remediate_keeps_everything(const json_t *before, const json_t *body,
                                   char *why, size_t whysz)
{
    char dummy[8];
    if (!why) {
        why = dummy;
        whysz = sizeof(dummy);
    }
    why[0] = '\0';
    const json_t *pa = props_of(before), *pb = props_of(body);
    if (!pa)
        return true;
    if (!pb) {
        snprintf(why, whysz, "the body has no properties");
        return false;
    }
    void (*const collect[3])(const json_t *,
                             struct strset *) = { emails_of, roles_of,
                                                  source_types_of };
    static const char *const what[3] = { "address", "role", "source type" };
    for (int k = 0; k < 3; k++) {
        struct strset sa = { 0 }, sb = { 0 };
        collect[k](pa, &sa);
        collect[k](pb, &sb);
        const char *lost = strset_missing(&sa, &sb);
        if (lost)
            snprintf(why, whysz, "the %s %.200s would be lost", what[k], lost);
        strset_free(&sa);
        strset_free(&sb);
        if (why[0])
            return false;
    }
    /* The write keeps only what its API version stores: a member it
     * drops is lost however faithfully the body carries it. */
    char unstored[200];
    if (cg_plan_unstored(pa, CG_API_2023, unstored, sizeof(unstored))) {
        snprintf(why, whysz,
                 "the member(s) %s would be lost: a write with "
                 "2023-12-01-preview does not store them",
                 unstored);
        return false;
    }
    const char *key;
    json_t *v;
    json_object_foreach((json_t *)pa, key, v)
    {
        if (!json_object_get(pb, key)) {
            snprintf(why, whysz, "the member %.200s would be lost", key);
            return false;
        }
    }
    const char *phone = cg_json_str(pa, "phone");
    if (phone &&
        strcmp(phone,
               cg_json_str(pb, "phone") ? cg_json_str(pb, "phone") : "")) {
        snprintf(why, whysz, "the phone would change");
        return false;
    }
    return true;
}

/* ---- the stage --------------------------------------------------------- */

enum kind {
    KIND_REMEDIATE,
    KIND_UNDO,
};

struct cg_remediate_call {
    struct cg_remediate *rm; /* NULL once the stage is gone */
    struct cg_remediate_call *prev, *next;
    enum kind kind;
    bool cancelled;
    bool cache_pending; /* a cache callback will still come */
    bool locked;
    struct cg_arm_call *arm_call;
    char tenant[40], auth_tenant[40], sub[40], job_id[64];
    char owner[CG_REMEDIATE_OWNER_MAX + 1];
    char hash[65];
    int64_t deadline_ms;
    struct cg_remediate_policy policy;
    struct cg_rules_conf rules;
    struct cg_owners owners; /* the scan's, for every re-evaluation */
    struct cg_plan plan;
    struct cg_remediate_result res;
    cg_remediate_fn fn;
    void *arg;
    /* undo */
    bool tenant_given;
    struct cg_remediate_undo_result ures;
    json_t *kept, *current, *restored;
    json_t *written; /* the body undo PUT */
    cg_remediate_undo_fn ufn;
    char *prev_undo; /* the undo record this call replaces, or NULL */
    bool prev_read;  /* prev_undo is known */
    int looks;       /* plans made again after a last look */
};

struct cg_remediate {
    struct cg_loop *loop;
    struct cg_arm *arm;
    struct cg_cache *cache;
    long long lock_ttl_ms;
    long long retention_s;
    struct cg_remediate_call *calls;
};

struct cg_remediate *cg_remediate_new(struct cg_loop *loop, struct cg_arm *arm,
                                      struct cg_cache *cache,
                                      const struct cg_conf *conf, char *errbuf,
                                      size_t errsz)
{
    if (!loop || !arm || !cache || !conf) {
        cg_err_set(errbuf, errsz, CG_EINVAL,
                   "remediate needs a loop, an ARM client and a cache");
        return NULL;
    }
    struct cg_remediate *rm = cg_calloc(1, sizeof(*rm));
    rm->loop = loop;
    rm->arm = arm;
    rm->cache = cache;
    rm->lock_ttl_ms = cg_conf_int(conf, "remediation.lock_ttl_ms");
    rm->retention_s = cg_conf_int(conf, "remediation.retention");
    return rm;
}

static void call_unlink(struct cg_remediate_call *c)
{
    if (!c->rm)
        return;
    if (c->prev)
        c->prev->next = c->next;
    else
        c->rm->calls = c->next;
    if (c->next)
        c->next->prev = c->prev;
    c->prev = c->next = NULL;
}

static void call_free(struct cg_remediate_call *c)
{
    call_unlink(c);
    cg_plan_free(&c->plan);
    cg_owners_free(&c->owners);
    cg_remediation_clear(&c->res.event);
    for (int k = 0; k < CG_RULE_COUNT; k++)
        cg_finding_clear(&c->res.after[k]);
    json_decref(c->kept);
    json_decref(c->current);
    json_decref(c->restored);
    json_decref(c->written);
    free(c->prev_undo);
    free(c);
}

/* Stops a call: no callback. A held lock is released without waiting. */
static void call_abandon(struct cg_remediate_call *c)
{
    c->cancelled = true;
    if (c->rm) {
        cg_arm_cancel(c->rm->arm, c->arm_call);
        c->arm_call = NULL;
        if (c->locked && !c->cache_pending) {
            cg_cache_unlock(c->rm->cache, c->sub, c->owner, NULL, NULL);
            c->locked = false;
        }
    }
    call_unlink(c);
    c->rm = NULL;
    /* A cache answer still to come frees it. */
    if (!c->cache_pending)
        call_free(c);
}

void cg_remediate_free(struct cg_remediate *rm)
{
    if (!rm)
        return;
    while (rm->calls)
        call_abandon(rm->calls);
    free(rm);
}

void cg_remediate_cancel(struct cg_remediate *rm,
                         struct cg_remediate_call *call)
{
    (void)rm;
    if (call)
        call_abandon(call);
}

static struct cg_remediate_call *call_new(struct cg_remediate *rm,
                                          enum kind kind)
{
    struct cg_remediate_call *c = cg_calloc(1, sizeof(*c));
    c->rm = rm;
    c->kind = kind;
    cg_remediation_init(&c->res.event);
    cg_owners_init(&c->owners);
    for (int k = 0; k < CG_RULE_COUNT; k++)
        c->res.after[k].previous = CG_STATUS_NONE;
    c->next = rm->calls;
    if (rm->calls)
        rm->calls->prev = c;
    rm->calls = c;
    return c;
}

/* The cache answered: false when the call was abandoned meanwhile (and is
 * now freed). */
static bool cache_back(struct cg_remediate_call *c)
{
    c->cache_pending = false;
    if (!c->cancelled)
        return true;
    call_free(c);
    return false;
}

/* The lock expires by itself: every call made under it must end well
 * before it could, so a write never lands after another worker may have
 * taken the lock. */
static int64_t lock_bound(const struct cg_remediate *rm, int64_t deadline_ms)
{
    int64_t end = cg_loop_now_ms() + rm->lock_ttl_ms - rm->lock_ttl_ms / 4;
    return deadline_ms > 0 && deadline_ms < end ? deadline_ms : end;
}

static struct cg_arm_call *arm_go(struct cg_remediate_call *c,
                                  enum cg_http_method method, const char *body,
                                  cg_arm_fn fn)
{
    char path[256];
    snprintf(path, sizeof(path), CONTACT_PATH, c->sub);
    struct cg_arm_request req;
    memset(&req, 0, sizeof(req));
    req.method = method;
    req.tenant = c->auth_tenant;
    req.subscription = c->sub;
    req.path = path;
    req.body = body;
    req.body_len = body ? strlen(body) : 0;
    req.deadline_ms = c->deadline_ms;
    c->arm_call = cg_arm_call(c->rm->arm, &req, fn, c);
    return c->arm_call;
}

/*
 * The contact a GET answered: {"properties":{...}} (id, name, type and
 * systemData dropped), or NULL for "no contact" (404 other than a missing
 * subscription). Returns 0, or the error to report.
 */
static int read_contact(const struct cg_arm_result *res, json_t **out,
                        char *why, size_t whysz)
{
    *out = NULL;
    if (res->err == CG_ENOTFOUND &&
        strcasecmp(res->code, "SubscriptionNotFound") != 0)
        return 0;
    if (res->err)
        return cg_err_set(why, whysz, res->err, "%s", res->why);
    char perr[200];
    json_t *doc = cg_json_parse(res->body, res->body_len, perr, sizeof(perr));
    json_t *props = cg_json_member(doc, "properties");
    if (!json_is_object(props)) {
        json_decref(doc);
        return cg_err_set(why, whysz, CG_EPARSE,
                          "the contact read back is not a contact object "
                          "(%s)",
                          doc ? "no properties" : perr);
    }
    *out = json_pack("{s:O}", "properties", props);
    json_decref(doc);
    return 0;
}

/* Evaluates a body (NULL: no contact) as the rules see it, with the
 * owners of the scan. */
static void evaluate_body(const json_t *body, const struct cg_owners *owners,
                          const struct cg_rules_conf *rc,
                          struct cg_finding out[CG_RULE_COUNT], char hash[65])
{
    struct cg_contacts ct;
    cg_contacts_init(&ct);
    ct.version = CG_API_2023;
    if (body) {
        json_t *doc = json_pack("{s:s,s:O}", "name", "default", "properties",
                                cg_json_member(body, "properties"));
        char err[200];
        cg_contacts_parse_json(&ct, doc, CG_API_2023, err, sizeof(err));
        json_decref(doc);
    }
    cg_evaluate(&ct, owners, rc, out);
    if (hash)
        cg_contacts_hash(&ct, hash);
    cg_contacts_free(&ct);
}

static void statuses(const struct cg_finding f[CG_RULE_COUNT],
                     enum cg_status out[CG_RULE_COUNT])
{
    for (int k = 0; k < CG_RULE_COUNT; k++)
        out[f[k].rule] = f[k].status;
}

static void set_outcome(struct cg_remediate_call *c,
                        enum cg_remediation_outcome o, const char *code,
                        const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void set_outcome(struct cg_remediate_call *c,
                        enum cg_remediation_outcome o, const char *code,
                        const char *fmt, ...)
{
    struct cg_remediation *e = &c->res.event;
    e->outcome = o;
    cg_strlcpy(e->reason_code, code, sizeof(e->reason_code));
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->reason, sizeof(e->reason), fmt, ap);
    va_end(ap);
}

/* ---- remediation: the steps, in order ---------------------------------- */

static void step_read(struct cg_remediate_call *c);
static void step_keep(struct cg_remediate_call *c);
static void step_write(struct cg_remediate_call *c);
static void step_look(struct cg_remediate_call *c);
static void step_verify(struct cg_remediate_call *c);
static void step_finish(struct cg_remediate_call *c);
static void keep_previous(struct cg_remediate_call *c);

static void deliver(struct cg_remediate_call *c)
{
    struct cg_remediation *e = &c->res.event;
    e->time_ms = cg_now_ms();
    cg_info("remediation.outcome",
            "subscription=%s tenant=%s job=%s mode=%s outcome=%s code=%s "
            "changes=%zu verification=%s replanned=%d",
            c->sub, c->tenant, c->job_id, cg_remediation_mode_name(e->mode),
            cg_remediation_outcome_name(e->outcome), e->reason_code,
            json_array_size(e->changes), cg_verification_name(e->verification),
            (int)e->replanned);
    call_unlink(c);
    c->rm = NULL;
    c->fn(&c->res, c->arg);
    call_free(c);
}

static void undo_deliver(struct cg_remediate_call *c)
{
    cg_info("remediation.undo", "subscription=%s tenant=%s err=%s", c->sub,
            c->tenant, cg_err_name(c->ures.err));
    call_unlink(c);
    c->rm = NULL;
    c->ures.kept = c->kept;
    c->ures.current = c->current;
    c->ures.restored = c->restored;
    c->ures.written = c->written;
    c->ufn(&c->ures, c->arg);
    call_free(c);
}

static void call_done(struct cg_remediate_call *c)
{
    if (c->kind == KIND_UNDO)
        undo_deliver(c);
    else
        deliver(c);
}

static void on_unlocked(int err, bool ok, void *arg)
{
    struct cg_remediate_call *c = arg;
    if (!cache_back(c))
        return;
    if (err || !ok)
        cg_warn("remediation.unlock",
                "subscription=%s err=%s released=%d "
                "note=\"the lock expires by its TTL\"",
                c->sub, cg_err_name(err), (int)ok);
    c->locked = false;
    call_done(c);
}

/* Every path ends here: release the lock (waiting for Redis, so that a
 * process exiting right after the callback leaves no lock behind). */
static void step_finish(struct cg_remediate_call *c)
{
    if (!c->locked) {
        call_done(c);
        return;
    }
    c->cache_pending = true;
    cg_cache_unlock(c->rm->cache, c->sub, c->owner, on_unlocked, c);
}

static void on_locked(int err, bool ok, void *arg)
{
    struct cg_remediate_call *c = arg;
    if (!cache_back(c))
        return;
    if (err) {
        set_outcome(c, CG_REM_FAILED, "LOCK_UNAVAILABLE",
                    "The remediation lock could not be taken (%s); nothing "
                    "was written.",
                    cg_err_desc(err));
        step_finish(c);
        return;
    }
    if (!ok) {
        set_outcome(c, CG_REM_SKIPPED_LOCKED, "LOCKED",
                    "Another remediation of this subscription is under way; "
                    "it was left to finish.");
        step_finish(c);
        return;
    }
    c->locked = true;
    step_read(c);
}

static const char *read_fail_code(int err)
{
    return err == CG_EFORBIDDEN ? "READ_FORBIDDEN" : "READ_FAILED";
}

/* A look that found the contact changed ends without a write: the record
 * kept for this attempt is replaced by the one it displaced. */
static void end_unwritten(struct cg_remediate_call *c)
{
    if (c->looks > 0)
        keep_previous(c);
    step_finish(c);
}

/*
 * Plans from current (taken): the read under the lock, or the last look
 * right before the write when it found the contact changed since.
 */
static void plan_from(struct cg_remediate_call *c, json_t *current)
{
    struct cg_remediation *e = &c->res.event;
    json_decref(e->before);
    e->before = current ? json_incref(current) : json_null();

    /* What the plan starts from is this read; if it differs from what was
     * evaluated, someone changed the contact since, and their change is
     * part of what is kept. */
    struct cg_finding now[CG_RULE_COUNT];
    memset(now, 0, sizeof(now));
    char hash[65];
    evaluate_body(current, &c->owners, &c->rules, now, hash);
    statuses(now, e->status_before);
    for (int k = 0; k < CG_RULE_COUNT; k++)
        cg_finding_clear(&now[k]);
    e->replanned = c->looks > 0 || (c->hash[0] && strcmp(c->hash, hash) != 0);

    cg_plan_free(&c->plan);
    cg_plan_make(current, &c->policy.plan, &c->plan);
    json_decref(current);
    json_decref(e->changes);
    json_decref(e->planned);
    e->planned = NULL;
    e->changes = json_array();
    for (size_t i = 0; i < c->plan.nchanges; i++)
        json_array_append_new(e->changes, json_string(c->plan.changes[i]));

    if (c->plan.outcome == CG_PLAN_BLOCKED && c->plan.loses_data) {
        set_outcome(c, CG_REM_BLOCKED, "PLAN_WOULD_LOSE_DATA",
                    "The write would lose data (%s); nothing is written.",
                    c->plan.reason);
        end_unwritten(c);
        return;
    }
    if (c->plan.outcome == CG_PLAN_BLOCKED) {
        set_outcome(c, CG_REM_BLOCKED, "PLAN_BLOCKED", "%s", c->plan.reason);
        end_unwritten(c);
        return;
    }
    if (c->plan.outcome == CG_PLAN_NOOP) {
        set_outcome(c, CG_REM_NOOP, "NOTHING_TO_CHANGE",
                    "The security contact already has everything the policy "
                    "asks for%s.",
                    e->replanned ? " (it was changed since the scan)" : "");
        end_unwritten(c);
        return;
    }
    char lost[256];
    if (!cg_remediate_keeps_everything(e->before, c->plan.body, lost,
                                       sizeof(lost))) {
        /* The plan promises this; a body that breaks the promise is not
         * written, whatever produced it. */
        set_outcome(c, CG_REM_BLOCKED, "PLAN_WOULD_LOSE_DATA",
                    "The planned body would lose data (%s); nothing is "
                    "written.",
                    lost);
        end_unwritten(c);
        return;
    }
    e->planned = json_incref(c->plan.body);
    struct cg_finding planned[CG_RULE_COUNT];
    memset(planned, 0, sizeof(planned));
    evaluate_body(c->plan.body, &c->owners, &c->rules, planned, NULL);
    statuses(planned, e->status_planned);
    for (int k = 0; k < CG_RULE_COUNT; k++)
        cg_finding_clear(&planned[k]);

    if (c->policy.mode == CG_REMEDIATION_DRY_RUN) {
        set_outcome(c, CG_REM_PLANNED, "DRY_RUN",
                    "Dry run: %zu change(s) planned, nothing written%s%s.",
                    c->plan.nchanges, c->plan.held[0] ? "; " : "",
                    c->plan.held);
        step_finish(c);
        return;
    }
    step_keep(c);
}

static void on_read(const struct cg_arm_result *res, void *arg)
{
    struct cg_remediate_call *c = arg;
    struct cg_remediation *e = &c->res.event;
    c->arm_call = NULL;
    char why[512];
    json_t *current = NULL;
    int err = read_contact(res, &current, why, sizeof(why));
    if (err) {
        e->http_status = res->status;
        set_outcome(c, CG_REM_FAILED, read_fail_code(err),
                    "The security contact could not be read: %s%s", why,
                    err == CG_EFORBIDDEN ? " Reading needs Security Reader."
                                         : "");
        step_finish(c);
        return;
    }
    plan_from(c, current);
}

static void step_read(struct cg_remediate_call *c)
{
    arm_go(c, CG_HTTP_GET, NULL, on_read);
}

static void on_kept(int err, void *arg)
{
    struct cg_remediate_call *c = arg;
    if (!cache_back(c))
        return;
    if (err) {
        set_outcome(c, CG_REM_FAILED, "UNDO_NOT_KEPT",
                    "The previous body could not be kept for undo (%s); "
                    "nothing was written.",
                    cg_err_desc(err));
        step_finish(c);
        return;
    }
    step_look(c);
}

static void keep_put(struct cg_remediate_call *c);

static void on_previous(int err, const char *body, size_t len, void *arg)
{
    struct cg_remediate_call *c = arg;
    if (!cache_back(c))
        return;
    if (err) {
        set_outcome(c, CG_REM_FAILED, "UNDO_NOT_KEPT",
                    "The undo record could not be read (%s); nothing was "
                    "written.",
                    cg_err_desc(err));
        step_finish(c);
        return;
    }
    c->prev_undo = body ? cg_strndup(body, len) : NULL;
    c->prev_read = true;
    keep_put(c);
}

static void keep_put(struct cg_remediate_call *c)
{
    struct cg_remediation *e = &c->res.event;
    json_t *rec = json_pack("{s:s,s:s,s:s,s:s,s:I,s:O,s:O}", "schema",
                            CG_REMEDIATE_UNDO_SCHEMA, "subscription_id", c->sub,
                            "tenant_id", c->tenant, "job_id", c->job_id,
                            "time_ms", (json_int_t)cg_now_ms(), "before",
                            e->before, "after", c->plan.body);
    char *s = json_dumps(rec, JSON_COMPACT);
    json_decref(rec);
    c->cache_pending = true;
    cg_cache_undo_put(c->rm->cache, c->sub, s, strlen(s), c->rm->retention_s,
                      on_kept, c);
    free(s);
}

/*
 * Nothing is written unless it can be undone. The record it replaces (an
 * earlier remediation's) is remembered first, so that a write Azure
 * refused does not cost the earlier one its undo.
 */
static void step_keep(struct cg_remediate_call *c)
{
    if (c->prev_read) {
        /* Planned again after a last look: the record displaced is the
         * one read the first time, not this attempt's own. */
        keep_put(c);
        return;
    }
    c->cache_pending = true;
    cg_cache_undo_get(c->rm->cache, c->sub, on_previous, c);
}

/* 400 and 403 mean nothing was written: the earlier record is put back
 * (before the unlock, which the cache thread runs after it). Any other
 * failure may have landed, so the new record stays. */
static void keep_previous(struct cg_remediate_call *c)
{
    if (c->prev_undo)
        cg_cache_undo_put(c->rm->cache, c->sub, c->prev_undo,
                          strlen(c->prev_undo), c->rm->retention_s, NULL, NULL);
}

static void on_written(const struct cg_arm_result *res, void *arg)
{
    struct cg_remediate_call *c = arg;
    struct cg_remediation *e = &c->res.event;
    c->arm_call = NULL;
    if (res->err) {
        e->http_status = res->status;
        if (res->err == CG_EFORBIDDEN || res->err == CG_EBADREQ)
            keep_previous(c);
        if (res->err == CG_EFORBIDDEN)
            set_outcome(c, CG_REM_FAILED, "WRITE_FORBIDDEN",
                        "Azure refused the write (403 %s): the principal "
                        "needs " CG_REMEDIATE_ROLES ". Not retried.",
                        res->code[0] ? res->code : "Forbidden");
        else if (res->err == CG_EBADREQ)
            set_outcome(c, CG_REM_FAILED, "WRITE_REJECTED",
                        "Azure rejected the body (400 %s): %.300s Not "
                        "retried.",
                        res->code[0] ? res->code : "BadRequest", res->why);
        else
            set_outcome(c, CG_REM_FAILED, "WRITE_FAILED",
                        "The write failed: %.400s Not retried.", res->why);
        step_finish(c);
        return;
    }
    step_verify(c);
}

/*
 * The last look: the contact is read once more right before the PUT. The
 * contacts API has no ETag, so a PUT replaces whatever is there: an edit
 * made since the read under the lock would be overwritten without a trace
 * (nothing read after the PUT can show it). If the contact changed, the
 * plan is made again from what is there now and kept for undo again; if
 * it keeps changing, nothing is written. What remains open is the one
 * round trip between this read and the PUT (docs/remediation.md).
 */
static void on_look(const struct cg_arm_result *res, void *arg)
{
    struct cg_remediate_call *c = arg;
    struct cg_remediation *e = &c->res.event;
    c->arm_call = NULL;
    char why[512];
    json_t *current = NULL;
    int err = read_contact(res, &current, why, sizeof(why));
    if (err) {
        e->http_status = res->status;
        keep_previous(c);
        set_outcome(c, CG_REM_FAILED, read_fail_code(err),
                    "The security contact could not be read again right "
                    "before the write: %s Nothing was written.",
                    why);
        step_finish(c);
        return;
    }
    if (cg_remediate_same_meaning(current, e->before)) {
        json_decref(current);
        step_write(c);
        return;
    }
    if (++c->looks > CG_REMEDIATE_LOOKS_MAX) {
        json_decref(current);
        keep_previous(c);
        set_outcome(c, CG_REM_FAILED, "CONTACT_CHANGING",
                    "The security contact kept changing while the change "
                    "was planned; nothing was written, so no edit was "
                    "overwritten. The next scan tries again.");
        step_finish(c);
        return;
    }
    cg_info("remediation.replan",
            "subscription=%s look=%d note=\"the contact changed between the "
            "read under the lock and the write\"",
            c->sub, c->looks);
    plan_from(c, current);
}

static void step_look(struct cg_remediate_call *c)
{
    arm_go(c, CG_HTTP_GET, NULL, on_look);
}

static void step_write(struct cg_remediate_call *c)
{
    char *body = json_dumps(c->plan.body, JSON_COMPACT);
    arm_go(c, CG_HTTP_PUT, body, on_written);
    free(body);
}

static void on_verified(const struct cg_arm_result *res, void *arg)
{
    struct cg_remediate_call *c = arg;
    struct cg_remediation *e = &c->res.event;
    c->arm_call = NULL;
    char why[512];
    json_t *after = NULL;
    int err = read_contact(res, &after, why, sizeof(why));
    e->verification = CG_VERIFY_FAILED;
    if (err) {
        e->http_status = res->status;
        set_outcome(c, CG_REM_FAILED, "VERIFY_READ_FAILED",
                    "The contact was written but could not be read back: "
                    "%s",
                    why);
        step_finish(c);
        return;
    }
    e->after = after ? after : json_null();
    evaluate_body(after, &c->owners, &c->rules, c->res.after,
                  c->res.after_hash);
    c->res.reevaluated = true;
    statuses(c->res.after, e->status_after);
    e->body_matches = cg_remediate_same_meaning(after, c->plan.body);
    bool fixed = true;
    for (int k = 0; k < CG_RULE_COUNT; k++)
        if (cg_remediation_rule_to_fix(e, (enum cg_rule)k) &&
            e->status_after[k] != CG_STATUS_PASS)
            fixed = false;
    if (e->body_matches && fixed) {
        e->verification = CG_VERIFY_PASSED;
        set_outcome(c, CG_REM_APPLIED, "APPLIED",
                    "%zu change(s) written and verified%s%s.", c->plan.nchanges,
                    c->plan.held[0] ? "; " : "", c->plan.held);
    } else {
        set_outcome(c, CG_REM_FAILED, "VERIFICATION_FAILED",
                    "The contact read back %s. Not retried.",
                    !e->body_matches ? "differs from the body written"
                                     : "still fails a rule it was to fix");
    }
    step_finish(c);
}

static void step_verify(struct cg_remediate_call *c)
{
    arm_go(c, CG_HTTP_GET, NULL, on_verified);
}

struct cg_remediate_call *cg_remediate_start(struct cg_remediate *rm,
                                             const struct cg_remediate_req *req,
                                             cg_remediate_fn fn, void *arg)
{
    if (!req->policy || req->policy->mode == CG_REMEDIATION_OFF || !fn ||
        !req->subscription_id || !req->tenant_id || !req->rules)
        return NULL;
    struct cg_remediate_call *c = call_new(rm, KIND_REMEDIATE);
    cg_strlcpy(c->tenant, req->tenant_id, sizeof(c->tenant));
    cg_strlcpy(c->auth_tenant,
               req->auth_tenant_id && *req->auth_tenant_id ? req->auth_tenant_id
                                                           : req->tenant_id,
               sizeof(c->auth_tenant));
    cg_strlcpy(c->sub, req->subscription_id, sizeof(c->sub));
    cg_strlcpy(c->job_id, req->job_id ? req->job_id : "", sizeof(c->job_id));
    cg_strlcpy(c->owner, req->owner && *req->owner ? req->owner : "remediate",
               sizeof(c->owner));
    cg_strlcpy(c->hash, req->contacts_hash ? req->contacts_hash : "",
               sizeof(c->hash));
    c->deadline_ms = req->deadline_ms;
    c->policy = *req->policy;
    c->rules = *req->rules;
    if (req->owners)
        cg_owners_copy(&c->owners, req->owners);
    c->fn = fn;
    c->arg = arg;
    struct cg_remediation *e = &c->res.event;
    cg_strlcpy(e->subscription_id, c->sub, sizeof(e->subscription_id));
    cg_strlcpy(e->tenant_id, c->tenant, sizeof(e->tenant_id));
    cg_strlcpy(e->job_id, c->job_id, sizeof(e->job_id));
    e->mode = c->policy.mode;
    for (size_t i = 0; req->findings && i < req->nfindings; i++)
        if (req->findings[i].rule < CG_RULE_COUNT)
            e->status_before[req->findings[i].rule] = req->findings[i].status;

    if (c->policy.mode == CG_REMEDIATION_DRY_RUN) {
        step_read(c);
    } else {
        c->deadline_ms = lock_bound(rm, c->deadline_ms);
        c->cache_pending = true;
        cg_cache_lock(rm->cache, c->sub, c->owner, rm->lock_ttl_ms, on_locked,
                      c);
    }
    return c;
}

/* ---- undo -------------------------------------------------------------- */

json_t *cg_remediate_restorable(const json_t *kept, bool *normalised)
{
    *normalised = false;
    json_t *body = json_deep_copy(kept);
    json_t *props = cg_json_member(body, "properties");
    const char *e = cg_json_str(props, "emails");
    if (!e || !e[strcspn(e, ", \t\r\n")])
        return body;
    /* The portal takes ',' and spaces, the API refuses them: the same
     * addresses in the same order, ';'-separated, mean the same. */
    struct cg_buf b;
    cg_buf_init(&b, 1 << 20);
    const char *p = e;
    size_t parts = 0;
    while (*p) {
        size_t n = strcspn(p, ";, \t\r\n");
        if (n) {
            if (parts++)
                cg_buf_puts(&b, ";");
            cg_buf_append(&b, p, n);
        }
        p += n;
        if (*p)
            p++;
    }
    char *joined = cg_buf_take(&b);
    json_object_set_new(props, "emails", json_string(joined ? joined : ""));
    free(joined);
    *normalised = true;
    return body;
}

static void undo_fail(struct cg_remediate_call *c, int err, const char *fmt,
                      ...) __attribute__((format(printf, 3, 4)));

static void undo_fail(struct cg_remediate_call *c, int err, const char *fmt,
                      ...)
{
    c->ures.err = err;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->ures.why, sizeof(c->ures.why), fmt, ap);
    va_end(ap);
    step_finish(c);
}

static void on_undo_readback(const struct cg_arm_result *res, void *arg)
{
    struct cg_remediate_call *c = arg;
    c->arm_call = NULL;
    char why[512];
    json_t *now = NULL;
    int err = read_contact(res, &now, why, sizeof(why));
    if (err) {
        undo_fail(c, err,
                  "Restored, but the contact could not be read "
                  "back: %s",
                  why);
        return;
    }
    c->restored = now ? now : json_null();
    json_t *before = json_object_get(c->kept, "before");
    if (!cg_remediate_same_meaning(now, before)) {
        undo_fail(c, CG_EIO,
                  "The contact read back after the restore "
                  "differs from the kept body.");
        return;
    }
    c->ures.err = 0;
    long long at =
        (long long)json_integer_value(json_object_get(c->kept, "time_ms"));
    if (c->ures.normalised)
        snprintf(c->ures.why, sizeof(c->ures.why),
                 "The contact was restored in meaning to the body kept at "
                 "%lld: Azure refuses ',' and spaces between addresses, so "
                 "the same addresses were written ';'-separated in the same "
                 "order.",
                 at);
    else
        snprintf(c->ures.why, sizeof(c->ures.why),
                 "The contact was restored to the body kept at %lld.", at);
    step_finish(c);
}

static void on_undo_written(const struct cg_arm_result *res, void *arg)
{
    struct cg_remediate_call *c = arg;
    c->arm_call = NULL;
    if (res->err) {
        undo_fail(c, res->err, "The restore failed: %s%s", res->why,
                  res->err == CG_EFORBIDDEN
                      ? " The principal needs " CG_REMEDIATE_ROLES "."
                      : "");
        return;
    }
    arm_go(c, CG_HTTP_GET, NULL, on_undo_readback);
}

static void on_undo_current(const struct cg_arm_result *res, void *arg)
{
    struct cg_remediate_call *c = arg;
    c->arm_call = NULL;
    char why[512];
    json_t *now = NULL;
    int err = read_contact(res, &now, why, sizeof(why));
    if (err) {
        undo_fail(c, err, "The security contact could not be read: %s", why);
        return;
    }
    c->current = now ? now : json_null();
    if (!cg_remediate_same_meaning(now, json_object_get(c->kept, "after"))) {
        undo_fail(c, CG_ECONFLICT,
                  "The contact was changed since the remediation: it no "
                  "longer equals the body written then; refusing to undo.");
        return;
    }
    json_t *before = json_object_get(c->kept, "before");
    if (!before || json_is_null(before)) {
        /* There was no contact before: removing it is the restore. */
        arm_go(c, CG_HTTP_DELETE, NULL, on_undo_written);
        return;
    }
    json_decref(c->written);
    c->written = cg_remediate_restorable(before, &c->ures.normalised);
    char *body = json_dumps(c->written, JSON_COMPACT);
    arm_go(c, CG_HTTP_PUT, body, on_undo_written);
    free(body);
}

static void on_undo_record(int err, const char *body, size_t len, void *arg)
{
    struct cg_remediate_call *c = arg;
    if (!cache_back(c))
        return;
    if (err) {
        undo_fail(c, err, "The kept body could not be read from Redis (%s).",
                  cg_err_desc(err));
        return;
    }
    if (!body) {
        undo_fail(c, CG_ENOTFOUND,
                  "No body is kept for this subscription (never remediated, "
                  "or past remediation.retention).");
        return;
    }
    char perr[200];
    c->kept = cg_json_parse(body, len, perr, sizeof(perr));
    const char *schema = cg_json_str(c->kept, "schema");
    if (!schema || strcmp(schema, CG_REMEDIATE_UNDO_SCHEMA) ||
        !json_object_get(c->kept, "after")) {
        undo_fail(c, CG_EPARSE, "The kept body is not an undo record.");
        return;
    }
    const char *t = cg_json_str(c->kept, "tenant_id");
    if (!c->tenant_given && t) {
        cg_strlcpy(c->tenant, t, sizeof(c->tenant));
        cg_strlcpy(c->auth_tenant, t, sizeof(c->auth_tenant));
    }
    arm_go(c, CG_HTTP_GET, NULL, on_undo_current);
}

static void on_undo_locked(int err, bool ok, void *arg)
{
    struct cg_remediate_call *c = arg;
    if (!cache_back(c))
        return;
    if (err || !ok) {
        undo_fail(c, err ? err : CG_EBUSY,
                  err ? "The remediation lock could not be taken (%s)."
                      : "Another remediation holds the subscription (%s); "
                        "try again later.",
                  err ? cg_err_desc(err) : "locked");
        return;
    }
    c->locked = true;
    c->cache_pending = true;
    cg_cache_undo_get(c->rm->cache, c->sub, on_undo_record, c);
}

struct cg_remediate_call *
cg_remediate_undo(struct cg_remediate *rm, const char *tenant_id,
                  const char *subscription_id, const char *owner,
                  int64_t deadline_ms, cg_remediate_undo_fn fn, void *arg)
{
    if (!subscription_id || !fn)
        return NULL;
    struct cg_remediate_call *c = call_new(rm, KIND_UNDO);
    c->tenant_given = tenant_id && *tenant_id;
    cg_strlcpy(c->tenant, c->tenant_given ? tenant_id : "", sizeof(c->tenant));
    cg_strlcpy(c->auth_tenant, c->tenant, sizeof(c->auth_tenant));
    cg_strlcpy(c->sub, subscription_id, sizeof(c->sub));
    cg_strlcpy(c->owner, owner && *owner ? owner : "undo", sizeof(c->owner));
    c->deadline_ms = lock_bound(rm, deadline_ms);
    c->ufn = fn;
    c->arg = arg;
    c->ures.err = CG_EIO;
    c->cache_pending = true;
    cg_cache_lock(rm->cache, c->sub, c->owner, rm->lock_ttl_ms, on_undo_locked,
                  c);
    return c;
}
