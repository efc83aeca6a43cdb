#include "plan.h"

#include "evaluate.h"
#include "json.h"
#include "mem.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static void change(struct cg_plan *p, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void change(struct cg_plan *p, const char *fmt, ...)
{
    if (p->nchanges >= CG_PLAN_CHANGES_MAX)
        return;
    char buf[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    p->changes[p->nchanges++] = cg_strdup(buf);
}

/* ---- addresses ---------------------------------------------------------- */

struct addr_list {
    char **v;
    size_t n;
    bool had_odd_separator;
    char *invalid; /* the first address that cannot be written back */
};

static bool addr_has(const struct addr_list *l, const char *s, size_t n)
{
    for (size_t i = 0; i < l->n; i++)
        if (strlen(l->v[i]) == n && strncasecmp(l->v[i], s, n) == 0)
            return true;
    return false;
}

static void addr_add(struct addr_list *l, const char *s, size_t n)
{
    if (addr_has(l, s, n))
        return;
    l->v = cg_realloc(l->v, (l->n + 1) * sizeof(char *));
    l->v[l->n++] = cg_strndup(s, n);
}

/* Splits on ';', ',' and white space: "a@x.com b@y.com" is two. */
static void addr_parse(struct addr_list *l, const char *s)
{
    const char *p = s;
    while (p && *p) {
        size_t n = strcspn(p, ";, \t\r\n");
        if (n > 0) {
            if (cg_email_valid(p, n))
                addr_add(l, p, n);
            else if (!l->invalid)
                l->invalid = cg_strndup(p, n);
        }
        p += n;
        if (*p) {
            if (*p != ';')
                l->had_odd_separator = true;
            p++;
        }
    }
}

static char *addr_join(const struct addr_list *l)
{
    struct cg_buf b;
    cg_buf_init(&b, 1 << 20);
    for (size_t i = 0; i < l->n; i++) {
        if (i)
            cg_buf_puts(&b, ";");
        cg_buf_puts(&b, l->v[i]);
    }
    return cg_buf_take(&b);
}

static void addr_free(struct addr_list *l)
{
    for (size_t i = 0; i < l->n; i++)
        free(l->v[i]);
    free(l->v);
    free(l->invalid);
}

/* ---- pieces of the body ------------------------------------------------- */

/* props[key] as an object, replacing a value of another type (which held
 * nothing that could be kept as that field). */
static json_t *ensure_object(struct cg_plan *p, json_t *props, const char *key)
{
    json_t *v = cg_json_member(props, key);
    if (json_is_object(v))
        return v;
    if (v && !json_is_null(v))
        change(p, "%s: replaced a value that was not an object", key);
    v = json_object();
    json_object_set_new(props, key, v);
    return v;
}

static void plan_roles(struct cg_plan *p, json_t *props)
{
    json_t *nbr = ensure_object(p, props, "notificationsByRole");
    const char *state = cg_json_str(nbr, "state");
    if (!state || strcasecmp(state, "On") != 0) {
        change(p, "notificationsByRole.state: %s -> On",
               state ? state : "absent");
        json_object_set_new(nbr, "state", json_string("On"));
    }
    json_t *roles = cg_json_member(nbr, "roles");
    if (!json_is_array(roles)) {
        json_t *fresh = json_array();
        /* A lone string is one role: keep it. */
        if (json_is_string(roles))
            json_array_append(fresh, roles);
        else if (roles && !json_is_null(roles))
            change(p, "notificationsByRole.roles: replaced a value that was "
                      "not an array");
        json_object_set_new(nbr, "roles", fresh);
        roles = fresh;
    }
    size_t i;
    json_t *r;
    json_array_foreach(roles, i, r)
    {
        if (json_is_string(r) && strcasecmp(json_string_value(r), "Owner") == 0)
            return;
    }
    json_array_append_new(roles, json_string("Owner"));
    change(p, "notificationsByRole.roles: + Owner");
}

static const char *source_type(const json_t *s)
{
    const char *t = cg_json_str(s, "sourceType");
    return t ? t : cg_json_str(s, "type");
}

static void plan_source(struct cg_plan *p, json_t *props, const char *type,
                        const char *level_key, enum cg_level want)
{
    json_t *srcs = cg_json_member(props, "notificationsSources");
    if (!json_is_array(srcs)) {
        if (srcs && !json_is_null(srcs)) {
            /* One source object where an array belongs: keep it in one. */
            json_t *fresh = json_array();
            if (json_is_object(srcs))
                json_array_append(fresh, srcs);
            json_object_set_new(props, "notificationsSources", fresh);
            change(p, "notificationsSources: made an array");
        } else {
            json_object_set_new(props, "notificationsSources", json_array());
        }
        srcs = cg_json_member(props, "notificationsSources");
    }
    json_t *first = NULL;
    size_t i;
    json_t *s;
    json_array_foreach(srcs, i, s)
    {
        const char *t = source_type(s);
        if (!t || strcasecmp(t, type) != 0)
            continue;
        enum cg_level have = cg_level_parse(cg_json_str(s, level_key));
        if (have >= CG_LEVEL_LOW && have <= CG_LEVEL_CRITICAL && have <= want)
            return; /* already at least as inclusive */
        if (!first)
            first = s;
    }
    if (first) {
        /* Say it before the set: the old string dies with the set. */
        const char *old = cg_json_str(first, level_key);
        change(p, "notificationsSources[%s].%s: %s -> %s", type, level_key,
               old ? old : "absent", cg_level_name(want));
        json_object_set_new(first, level_key, json_string(cg_level_name(want)));
        return;
    }
    json_t *n = json_object();
    json_object_set_new(n, "sourceType", json_string(type));
    json_object_set_new(n, level_key, json_string(cg_level_name(want)));
    json_array_append_new(srcs, n);
    change(p, "notificationsSources: + %s (%s %s)", type, level_key,
           cg_level_name(want));
}

/* The address list, where it can be touched. Returns false when emails
 * holds something that cannot be rewritten without loss (the whole plan is
 * blocked); true otherwise, with p->held saying why the list was left
 * exactly as it is when a fix would need to change it but cannot. */
static bool plan_emails(struct cg_plan *p, json_t *props,
                        const struct cg_policy *policy)
{
    struct addr_list have = { 0 }, want = { 0 };
    json_t *ev = cg_json_member(props, "emails");
    const char *cur = json_is_string(ev) ? json_string_value(ev) : NULL;
    bool ok = true;
    if (ev && !json_is_null(ev) && !json_is_string(ev)) {
        snprintf(p->reason, sizeof(p->reason),
                 "emails is not a string; it cannot be rewritten without "
                 "losing what it holds");
        ok = false;
        goto out;
    }
    addr_parse(&have, cur);
    size_t before = have.n;
    addr_parse(&want, policy->emails);
    bool missing = false;
    for (size_t i = 0; i < want.n; i++)
        missing = missing || !addr_has(&have, want.v[i], strlen(want.v[i]));
    if (have.invalid) {
        /* An address Azure would reject can be neither written back nor
         * dropped. The list is left byte for byte as it is, which Azure
         * takes back only when its separators are ';' already; the other
         * fixes do not touch it and still apply. */
        if (have.had_odd_separator) {
            snprintf(p->reason, sizeof(p->reason),
                     "the existing address '%.80s' is not valid and the "
                     "list's separators must be rewritten for Azure to "
                     "take it; fix it by hand",
                     have.invalid);
            ok = false;
        } else if (missing) {
            snprintf(p->held, sizeof(p->held),
                     "emails left as they are: the existing address "
                     "'%.80s' is not valid and Azure would reject it; fix "
                     "it by hand",
                     have.invalid);
        }
        goto out;
    }
    for (size_t i = 0; i < want.n; i++) {
        if (!addr_has(&have, want.v[i], strlen(want.v[i]))) {
            addr_add(&have, want.v[i], strlen(want.v[i]));
            change(p, "emails: + %s", want.v[i]);
        }
    }
    char *joined = addr_join(&have);
    if (!cur || strcmp(cur, joined) != 0) {
        if (have.n == before && cur && *cur)
            change(p, "emails: separators normalised to ';'");
        json_object_set_new(props, "emails", json_string(joined));
    }
    free(joined);
out:
    addr_free(&have);
    addr_free(&want);
    return ok;
}

/* ---- what the write keeps ----------------------------------------------- */

/* SecurityContactProperties of each version's spec
 * (azure-rest-api-specs, Microsoft.Security/preview/VERSION/
 * securityContacts.json). Azure stores these and drops every other member
 * of properties on a write. */
static const char *const stored_2017[] = { "email", "phone",
                                           "alertNotifications",
                                           "alertsToAdmins", NULL };
static const char *const stored_2020[] = { "emails", "phone",
                                           "alertNotifications",
                                           "notificationsByRole", NULL };
static const char *const stored_2023[] = { "emails",
                                           "phone",
                                           "isEnabled",
                                           "notificationsSources",
                                           "notificationsByRole",
                                           NULL };

bool cg_plan_stored(enum cg_api_version v, const char *key)
{
    const char *const *keys = v == CG_API_2017   ? stored_2017
                              : v == CG_API_2020 ? stored_2020
                              : v == CG_API_2023 ? stored_2023
                                                 : NULL;
    for (size_t i = 0; keys && key && keys[i]; i++)
        if (!strcmp(keys[i], key))
            return true;
    return false;
}

size_t cg_plan_unstored(const json_t *body, enum cg_api_version v, char *out,
                        size_t outsz)
{
    json_t *props = cg_json_member(body, "properties");
    if (!json_is_object(props))
        props = (json_t *)body;
    size_t n = 0, w = 0;
    if (outsz)
        out[0] = '\0';
    const char *k;
    json_t *val;
    json_object_foreach(props, k, val)
    {
        if (cg_plan_stored(v, k))
            continue;
        if (outsz && w < outsz) {
            int r = snprintf(out + w, outsz - w, "%s%s", n ? ", " : "", k);
            w = r > 0 ? w + (size_t)r : w;
        }
        n++;
    }
    return n;
}

/* ---- the plan ----------------------------------------------------------- */

void cg_plan_make(const json_t *current, const struct cg_policy *policy,
                  struct cg_plan *p)
{
    memset(p, 0, sizeof(*p));
    json_t *cur_props = cg_json_member(current, "properties");
    p->before = json_object();
    json_object_set_new(p->before, "properties",
                        json_is_object(cur_props) ? json_deep_copy(cur_props)
                                                  : json_object());
    json_t *body = json_deep_copy(p->before);
    json_t *props = cg_json_member(body, "properties");

    char unstored[200];
    if (cg_plan_unstored(p->before, CG_API_2023, unstored, sizeof(unstored))) {
        /* A write keeps only what its API version defines: these would be
         * gone, and an undo could not bring them back. */
        snprintf(p->reason, sizeof(p->reason),
                 "the contact holds %.150s, which a write with "
                 "2023-12-01-preview does not store",
                 unstored);
        p->outcome = CG_PLAN_BLOCKED;
        p->loses_data = true;
        json_decref(body);
        return;
    }
    if (!json_is_true(cg_json_member(props, "isEnabled"))) {
        json_t *ie = cg_json_member(props, "isEnabled");
        char *old = ie ? json_dumps(ie, JSON_ENCODE_ANY) : NULL;
        change(p, "isEnabled: %s -> true", old ? old : "absent");
        free(old);
        json_object_set_new(props, "isEnabled", json_true());
    }
    plan_roles(p, props);
    if (!plan_emails(p, props, policy)) {
        p->outcome = CG_PLAN_BLOCKED;
        json_decref(body);
        return;
    }
    plan_source(p, props, "Alert", "minimalSeverity", policy->alert_level);
    plan_source(p, props, "AttackPath", "minimalRiskLevel",
                policy->attack_level);

    if (json_equal(body, p->before) && p->held[0]) {
        /* Only the held-back part was left to do. */
        cg_strlcpy(p->reason, p->held, sizeof(p->reason));
        p->outcome = CG_PLAN_BLOCKED;
        json_decref(body);
        return;
    }
    if (json_equal(body, p->before)) {
        p->outcome = CG_PLAN_NOOP;
        json_decref(body);
        for (size_t i = 0; i < p->nchanges; i++)
            free(p->changes[i]);
        p->nchanges = 0;
        return;
    }
    p->outcome = CG_PLAN_CHANGE;
    p->body = body;
}

void cg_plan_free(struct cg_plan *p)
{
    if (!p)
        return;
    json_decref(p->before);
    json_decref(p->body);
    for (size_t i = 0; i < p->nchanges; i++)
        free(p->changes[i]);
    memset(p, 0, sizeof(*p));
}

char *cg_plan_diff(const struct cg_plan *p)
{
    struct cg_buf b;
    cg_buf_init(&b, 64 * 1024);
    for (size_t i = 0; i < p->nchanges; i++) {
        if (i)
            cg_buf_puts(&b, "; ");
        cg_buf_puts(&b, p->changes[i]);
    }
    return cg_buf_take(&b);
}
