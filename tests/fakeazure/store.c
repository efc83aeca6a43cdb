#include "store.h"

#include "err.h"
#include "json.h"
#include "map.h"
#include "mem.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#define SCENARIOS_MAX     256
#define SCENARIO_FILE_MAX (4 * 1024 * 1024)
#define CONTACT_NAME_MAX  64
#define STORE_TENANTS_MAX 100000
#define STORE_SUBS_MAX    10000000
#define SECURITY_CONTACTS "providers/Microsoft.Security/securityContacts"
#define CONTACT_TYPE      "Microsoft.Security/securityContacts"

const char *const cg_fa_rule_names[CG_FA_RULES] = {
    "owner-alerts", "additional-emails", "alert-severity", "attack-paths",
    "owner-reachable"
};
const char *const cg_fa_ver_names[CG_FA_NVER] = { "2017-08-01-preview",
                                                  "2020-01-01-preview",
                                                  "2023-12-01-preview" };

struct cg_fa_store {
    struct cg_fa_store_params params;
    char *scenarios_file;
    struct cg_fa_scenario *scen;
    size_t nscen;
    unsigned total_weight;
    long unregistered; /* the scenario used for the unregistered share */
    struct cg_fa_tenant *tenants;
    size_t ntenants;
    struct cg_fa_sub **subs;
    size_t nsubs, capsubs;
    struct cg_fa_map *sub_by_id;    /* -> struct cg_fa_sub * (not owned) */
    struct cg_fa_map *tenant_by_id; /* -> index + 1 */
    uint64_t created;               /* subscriptions created at run time */
};

int cg_fa_ver_parse(const char *s)
{
    for (int v = 0; v < CG_FA_NVER; v++)
        if (strcmp(s, cg_fa_ver_names[v]) == 0)
            return v;
    return -1;
}

/* splitmix64: a full-period mixer, so ids drawn from (seed, counter) never
 * collide in practice and never depend on the platform's rand(). */
static uint64_t mix64(uint64_t x)
{
    x += 0x9e3779b97f4a7c15ULL;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
    return x ^ (x >> 31);
}

static void make_guid(char out[40], uint64_t seed, uint64_t kind, uint64_t n)
{
    uint64_t a = mix64(seed ^ mix64(kind * 0x100000001b3ULL + n));
    uint64_t b = mix64(a ^ 0x5851f42d4c957f2dULL);
    snprintf(out, 40, "%08x-%04x-4%03x-%04x-%012llx", (unsigned)(a >> 32),
             (unsigned)(a >> 16) & 0xffff, (unsigned)a & 0xfff,
             (unsigned)(0x8000 | ((b >> 48) & 0x3fff)),
             (unsigned long long)(b & 0xffffffffffffULL));
}

static void make_secret(char out[48], uint64_t seed, uint64_t n)
{
    static const char alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnop"
                                   "qrstuvwxyz0123456789-_";
    uint64_t x = mix64(seed ^ mix64(0xc0ffee + n));
    /* Shaped like an Entra secret: three characters, "8Q~", the rest. */
    size_t i = 0;
    for (; i < 40; i++) {
        if (i % 8 == 0)
            x = mix64(x);
        out[i] = alphabet[(x >> ((i % 8) * 8)) % 64];
    }
    out[3] = '8';
    out[4] = 'Q';
    out[5] = '~';
    out[i] = '\0';
}

/* ---- scenarios ---- */

static void scenario_clear(struct cg_fa_scenario *s)
{
    free(s->name);
    free(s->description);
    free(s->state);
    json_decref(s->contact);
    json_decref(s->legacy);
    json_decref(s->roles);
    for (int r = 0; r < CG_FA_RULES; r++)
        free(s->truth[r]);
}

/* The built-in roles a scenario may assign, by their fixed ids. */
static const struct {
    const char *name, *id;
} role_defs[] = {
    { "Owner", "8e3af657-a8ff-443c-a75c-2fe8c4bcb635" },
    { "Contributor", "b24988ac-6180-42a0-ab88-20f7382dd24c" },
    { "Reader", "acdd72a7-3385-48ef-bd42-f606fba81ae7" },
};

static const char *role_def_id(const char *name)
{
    for (size_t i = 0; i < sizeof(role_defs) / sizeof(role_defs[0]); i++)
        if (name && !strcmp(name, role_defs[i].name))
            return role_defs[i].id;
    return NULL;
}

static bool role_scope_ok(const char *s)
{
    return !s || !strcmp(s, "subscription") || !strcmp(s, "managementGroup") ||
           !strcmp(s, "root");
}

static int load_roles(struct cg_fa_scenario *s, json_t *o, const char *name,
                      char *errbuf, size_t errsz)
{
    json_t *ra = json_object_get(o, "role_assignments");
    if (!ra) {
        s->roles =
            json_pack("[{s:s,s:s}]", "role", "Owner", "principalType", "User");
    } else {
        if (!json_is_array(ra))
            return cg_err_set(errbuf, errsz, CG_ECONF,
                              "scenario %s: role_assignments must be an "
                              "array",
                              name);
        size_t k;
        json_t *e;
        json_array_foreach(ra, k, e)
        {
            if (!role_def_id(cg_json_str(e, "role")) ||
                !cg_json_str(e, "principalType") ||
                !role_scope_ok(cg_json_str(e, "scope")))
                return cg_err_set(errbuf, errsz, CG_ECONF,
                                  "scenario %s: role_assignments[%zu] needs "
                                  "role Owner, Contributor or Reader, a "
                                  "principalType and scope subscription, "
                                  "managementGroup or root",
                                  name, k);
        }
        s->roles = json_deep_copy(ra);
    }
    long long pages = 1;
    if (cg_json_int(o, "role_assignments_pages", &pages) ==
            CG_JSON_WRONG_TYPE ||
        pages < 1 || pages > 100)
        return cg_err_set(errbuf, errsz, CG_ECONF,
                          "scenario %s: role_assignments_pages must be "
                          "1..100",
                          name);
    s->roles_pages = (unsigned)pages;
    bool denied = false;
    cg_json_bool(o, "role_assignments_denied", &denied);
    s->roles_denied = denied;
    return 0;
}

static bool status_ok(const char *s)
{
    return !strcmp(s, "PASS") || !strcmp(s, "FAIL") || !strcmp(s, "ERROR") ||
           !strcmp(s, "SKIPPED");
}

static bool state_ok(const char *s)
{
    return !strcmp(s, "Enabled") || !strcmp(s, "Warned") ||
           !strcmp(s, "PastDue") || !strcmp(s, "Disabled") ||
           !strcmp(s, "Deleted");
}

static int load_scenario(struct cg_fa_scenario *s, json_t *o, size_t i,
                         char *errbuf, size_t errsz)
{
    const char *name = cg_json_str(o, "name");
    if (!name || !*name)
        return cg_err_set(errbuf, errsz, CG_ECONF,
                          "scenarios[%zu]: a scenario needs a name", i);
    s->name = cg_strdup(name);
    const char *d = cg_json_str(o, "description");
    s->description = cg_strdup(d ? d : "");
    long long w = 1;
    if (cg_json_int(o, "weight", &w) == CG_JSON_WRONG_TYPE || w < 0 ||
        w > 100000)
        return cg_err_set(errbuf, errsz, CG_ECONF,
                          "scenario %s: weight must be 0..100000", name);
    s->weight = (unsigned)w;
    const char *state = cg_json_str(o, "state");
    s->state = cg_strdup(state ? state : "Enabled");
    if (!state_ok(s->state))
        return cg_err_set(errbuf, errsz, CG_ECONF,
                          "scenario %s: unknown state '%s'", name, s->state);
    bool reg = true;
    cg_json_bool(o, "registered", &reg);
    s->registered = reg;
    json_t *c = json_object_get(o, "contact");
    if (c && !json_is_null(c)) {
        if (!json_is_object(c))
            return cg_err_set(errbuf, errsz, CG_ECONF,
                              "scenario %s: contact must be an object or null",
                              name);
        s->contact = json_deep_copy(c);
    }
    json_t *l = json_object_get(o, "legacy");
    if (l) {
        if (!json_is_array(l))
            return cg_err_set(errbuf, errsz, CG_ECONF,
                              "scenario %s: legacy must be an array", name);
        size_t k;
        json_t *e;
        json_array_foreach(l, k, e)
        {
            const char *n = cg_json_str(e, "name");
            if (!n || !strcmp(n, "default1") ||
                !json_is_object(json_object_get(e, "properties")))
                return cg_err_set(errbuf, errsz, CG_ECONF,
                                  "scenario %s: legacy[%zu] needs a name "
                                  "other than default1 and properties",
                                  name, k);
        }
        s->legacy = json_deep_copy(l);
    }
    json_t *rej = json_object_get(o, "reject_api_versions");
    size_t k;
    json_t *e;
    json_array_foreach(rej, k, e)
    {
        int v = json_is_string(e) ? cg_fa_ver_parse(json_string_value(e)) : -1;
        if (v < 0)
            return cg_err_set(errbuf, errsz, CG_ECONF,
                              "scenario %s: unknown api-version in "
                              "reject_api_versions",
                              name);
        s->reject[v] = true;
    }
    int rrc = load_roles(s, o, name, errbuf, errsz);
    if (rrc)
        return rrc;
    json_t *truth = json_object_get(o, "truth");
    for (int r = 0; r < CG_FA_RULES; r++) {
        const char *t = cg_json_str(truth, cg_fa_rule_names[r]);
        if (!t || !status_ok(t))
            return cg_err_set(errbuf, errsz, CG_ECONF,
                              "scenario %s: truth.%s must be PASS, FAIL, "
                              "ERROR or SKIPPED",
                              name, cg_fa_rule_names[r]);
        s->truth[r] = cg_strdup(t);
    }
    return 0;
}

static int load_scenarios(struct cg_fa_store *st, const char *path,
                          char *errbuf, size_t errsz)
{
    int rc = 0;
    json_t *root = NULL;
    struct cg_buf b;
    cg_buf_init(&b, SCENARIO_FILE_MAX);
    FILE *f = fopen(path, "r");
    if (!f) {
        rc = cg_err_set(errbuf, errsz, CG_ECONF, "cannot open %s: %s", path,
                        strerror(errno));
        goto out;
    }
    char chunk[8192];
    size_t n;
    while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0) {
        if (cg_buf_append(&b, chunk, n) < 0) {
            rc = cg_err_set(errbuf, errsz, CG_ECONF, "%s is too large", path);
            goto out;
        }
    }
    char jerr[256];
    root = cg_json_parse(b.data ? b.data : "", b.len, jerr, sizeof(jerr));
    if (!root) {
        rc = cg_err_set(errbuf, errsz, CG_ECONF, "%s: %s", path, jerr);
        goto out;
    }
    json_t *arr = json_object_get(root, "scenarios");
    if (!json_is_array(arr) || json_array_size(arr) == 0 ||
        json_array_size(arr) > SCENARIOS_MAX) {
        rc = cg_err_set(errbuf, errsz, CG_ECONF,
                        "%s: \"scenarios\" must be an array of 1..%d", path,
                        SCENARIOS_MAX);
        goto out;
    }
    st->scen = cg_calloc(json_array_size(arr), sizeof(*st->scen));
    size_t i;
    json_t *o;
    st->unregistered = -1;
    json_array_foreach(arr, i, o)
    {
        st->nscen = i + 1;
        rc = load_scenario(&st->scen[i], o, i, errbuf, errsz);
        if (rc)
            goto out;
        for (size_t j = 0; j < i; j++)
            if (!strcmp(st->scen[j].name, st->scen[i].name)) {
                rc = cg_err_set(errbuf, errsz, CG_ECONF,
                                "%s: scenario %s appears twice", path,
                                st->scen[i].name);
                goto out;
            }
        st->total_weight += st->scen[i].weight;
        if (!st->scen[i].registered && st->unregistered < 0)
            st->unregistered = (long)i;
    }
    if (st->total_weight == 0)
        rc = cg_err_set(errbuf, errsz, CG_ECONF, "%s: all weights are 0", path);
out:
    if (f)
        fclose(f);
    json_decref(root);
    cg_buf_free(&b);
    return rc;
}

/* ---- population ---- */

static void sub_invalidate(struct cg_fa_sub *sub)
{
    for (int v = 0; v < CG_FA_NVER; v++) {
        free(sub->cache[v]);
        sub->cache[v] = NULL;
    }
}

static void sub_free(struct cg_fa_sub *sub)
{
    if (!sub)
        return;
    json_decref(sub->contact);
    json_decref(sub->legacy);
    json_decref(sub->after_read);
    for (int v = 0; v < CG_FA_NVER; v++)
        free(sub->raw[v]);
    sub_invalidate(sub);
    free(sub);
}

static void sub_apply_scenario(struct cg_fa_sub *sub,
                               const struct cg_fa_scenario *s)
{
    cg_strlcpy(sub->state, s->state, sizeof(sub->state));
    sub->registered = s->registered;
    json_decref(sub->contact);
    json_decref(sub->legacy);
    sub->contact = s->contact ? json_deep_copy(s->contact) : NULL;
    sub->legacy = s->legacy ? json_deep_copy(s->legacy) : json_array();
    memcpy(sub->reject, s->reject, sizeof(sub->reject));
    sub_invalidate(sub);
}

static struct cg_fa_sub *add_sub(struct cg_fa_store *st, size_t t,
                                 size_t scenario, uint64_t n)
{
    struct cg_fa_sub *sub = cg_calloc(1, sizeof(*sub));
    make_guid(sub->id, st->params.seed, 2, n);
    sub->tenant = t;
    sub->scenario = scenario;
    snprintf(sub->display_name, sizeof(sub->display_name), "%s %s %zu",
             st->tenants[t].name, st->scen[scenario].name,
             st->tenants[t].nsubs + 1);
    sub_apply_scenario(sub, &st->scen[scenario]);
    if (st->nsubs == st->capsubs) {
        st->capsubs = st->capsubs ? st->capsubs * 2 : 64;
        st->subs = cg_realloc(st->subs, st->capsubs * sizeof(*st->subs));
    }
    st->subs[st->nsubs] = sub;
    struct cg_fa_tenant *ten = &st->tenants[t];
    if (ten->nsubs == ten->cap) {
        ten->cap = ten->cap ? ten->cap * 2 : 8;
        ten->subs = cg_realloc(ten->subs, ten->cap * sizeof(*ten->subs));
    }
    ten->subs[ten->nsubs++] = st->nsubs;
    st->nsubs++;
    cg_fa_map_put_take(st->sub_by_id, sub->id, sub);
    return sub;
}

static size_t pick_weighted(const struct cg_fa_store *st, uint64_t x)
{
    unsigned r = (unsigned)(x % st->total_weight);
    for (size_t i = 0; i < st->nscen; i++) {
        if (r < st->scen[i].weight)
            return i;
        r -= st->scen[i].weight;
    }
    return st->nscen - 1;
}

static void populate(struct cg_fa_store *st)
{
    uint64_t seed = st->params.seed;
    st->ntenants = st->params.tenants;
    st->tenants =
        cg_calloc(st->ntenants ? st->ntenants : 1, sizeof(*st->tenants));
    st->sub_by_id = cg_fa_map_new(true, NULL);
    st->tenant_by_id = cg_fa_map_new(true, NULL);
    for (size_t t = 0; t < st->ntenants; t++) {
        struct cg_fa_tenant *ten = &st->tenants[t];
        make_guid(ten->id, seed, 1, t);
        /* A multi-tenant app is drawn from a number no tenant uses. */
        uint64_t app = st->params.multi_tenant_app ? UINT64_MAX : t;
        make_guid(ten->client_id, seed, 3, app);
        make_secret(ten->secret, seed, app);
        snprintf(ten->name, sizeof(ten->name), "tenant-%04zu", t);
        cg_fa_map_put_take(st->tenant_by_id, ten->id, (void *)(t + 1));
    }
    /* The first subscriptions cover every scenario with a weight once, in
     * table order (tenant-major); the rest are drawn by weight. */
    size_t g = 0, covered = 0;
    for (size_t t = 0; t < st->ntenants; t++) {
        for (size_t j = 0; j < st->params.subs_per_tenant; j++, g++) {
            size_t sc;
            while (covered < st->nscen && st->scen[covered].weight == 0)
                covered++;
            if (covered < st->nscen) {
                sc = covered++;
            } else {
                uint64_t x = mix64(seed ^ mix64(0xabcdef00ULL + g));
                sc = pick_weighted(st, x);
                double u = (double)(mix64(x) >> 11) / 9007199254740992.0;
                if (st->unregistered >= 0 && u < st->params.unregistered_share)
                    sc = (size_t)st->unregistered;
            }
            add_sub(st, t, sc, g);
        }
    }
    st->created = g;
}

static void depopulate(struct cg_fa_store *st)
{
    for (size_t i = 0; i < st->nsubs; i++)
        sub_free(st->subs[i]);
    free(st->subs);
    st->subs = NULL;
    st->nsubs = st->capsubs = 0;
    for (size_t t = 0; t < st->ntenants; t++)
        free(st->tenants[t].subs);
    free(st->tenants);
    st->tenants = NULL;
    st->ntenants = 0;
    cg_fa_map_free(st->sub_by_id);
    cg_fa_map_free(st->tenant_by_id);
    st->sub_by_id = st->tenant_by_id = NULL;
}

struct cg_fa_store *cg_fa_store_new(const struct cg_fa_store_params *p,
                                    char *errbuf, size_t errsz)
{
    if (p->tenants < 1 || p->tenants > STORE_TENANTS_MAX ||
        p->subs_per_tenant > STORE_SUBS_MAX / p->tenants) {
        cg_err_set(errbuf, errsz, CG_EINVAL,
                   "population out of bounds (1..%d tenants, %d "
                   "subscriptions)",
                   STORE_TENANTS_MAX, STORE_SUBS_MAX);
        return NULL;
    }
    struct cg_fa_store *st = cg_calloc(1, sizeof(*st));
    st->params = *p;
    st->scenarios_file = cg_strdup(p->scenarios_file);
    st->params.scenarios_file = st->scenarios_file;
    if (load_scenarios(st, p->scenarios_file, errbuf, errsz)) {
        cg_fa_store_free(st);
        return NULL;
    }
    populate(st);
    return st;
}

void cg_fa_store_free(struct cg_fa_store *st)
{
    if (!st)
        return;
    depopulate(st);
    for (size_t i = 0; i < st->nscen; i++)
        scenario_clear(&st->scen[i]);
    free(st->scen);
    free(st->scenarios_file);
    free(st);
}

void cg_fa_store_reset(struct cg_fa_store *st)
{
    depopulate(st);
    populate(st);
}

size_t cg_fa_store_tenant_count(const struct cg_fa_store *st)
{
    return st->ntenants;
}

struct cg_fa_tenant *cg_fa_store_tenant(struct cg_fa_store *st, size_t i)
{
    return i < st->ntenants ? &st->tenants[i] : NULL;
}

struct cg_fa_tenant *cg_fa_store_tenant_find(struct cg_fa_store *st,
                                             const char *id, size_t *index)
{
    uintptr_t v = (uintptr_t)cg_fa_map_get(st->tenant_by_id, id);
    if (!v)
        return NULL;
    if (index)
        *index = v - 1;
    return &st->tenants[v - 1];
}

size_t cg_fa_store_sub_count(const struct cg_fa_store *st)
{
    return st->nsubs;
}

struct cg_fa_sub *cg_fa_store_sub(struct cg_fa_store *st, size_t i)
{
    return i < st->nsubs ? st->subs[i] : NULL;
}

struct cg_fa_sub *cg_fa_store_sub_find(struct cg_fa_store *st, const char *id)
{
    return cg_fa_map_get(st->sub_by_id, id);
}

struct cg_fa_sub *cg_fa_store_tenant_sub(struct cg_fa_store *st, size_t t,
                                         size_t i)
{
    if (t >= st->ntenants || i >= st->tenants[t].nsubs)
        return NULL;
    return st->subs[st->tenants[t].subs[i]];
}

size_t cg_fa_store_tenant_sub_count(struct cg_fa_store *st, size_t t)
{
    return t < st->ntenants ? st->tenants[t].nsubs : 0;
}

const struct cg_fa_scenario *cg_fa_store_scenario(const struct cg_fa_store *st,
                                                  size_t i)
{
    return i < st->nscen ? &st->scen[i] : NULL;
}

size_t cg_fa_store_scenario_count(const struct cg_fa_store *st)
{
    return st->nscen;
}

long cg_fa_store_scenario_find(const struct cg_fa_store *st, const char *name)
{
    for (size_t i = 0; i < st->nscen; i++)
        if (!strcmp(st->scen[i].name, name))
            return (long)i;
    return -1;
}

struct cg_fa_sub *cg_fa_store_sub_create(struct cg_fa_store *st, size_t t,
                                         size_t scenario)
{
    return add_sub(st, t, scenario, st->created++);
}

/* ---- views ---- */

static int arm_error(struct cg_buf *out, int status, const char *code,
                     const char *msg)
{
    json_t *e =
        json_pack("{s:{s:s,s:s}}", "error", "code", code, "message", msg);
    char *s = json_dumps(e, JSON_COMPACT);
    cg_buf_reset(out);
    cg_buf_puts(out, s);
    free(s);
    json_decref(e);
    return status;
}

static bool str_ieq(const json_t *v, const char *s)
{
    return json_is_string(v) && strcasecmp(json_string_value(v), s) == 0;
}

/* The notificationsSources entry of this type (case-insensitive). */
static json_t *find_source(const json_t *props, const char *type)
{
    json_t *srcs = cg_json_member(props, "notificationsSources");
    size_t i;
    json_t *e;
    json_array_foreach(srcs, i, e)
    {
        if (str_ieq(cg_json_member(e, "sourceType"), type))
            return e;
    }
    return NULL;
}

static bool contact_enabled(const json_t *props)
{
    return json_is_true(cg_json_member(props, "isEnabled"));
}

static bool owner_on(const json_t *props)
{
    json_t *nbr = cg_json_member(props, "notificationsByRole");
    if (!str_ieq(cg_json_member(nbr, "state"), "On"))
        return false;
    json_t *roles = cg_json_member(nbr, "roles");
    size_t i;
    json_t *r;
    json_array_foreach(roles, i, r)
    {
        if (str_ieq(r, "Owner"))
            return true;
    }
    return false;
}

static json_t *contact_envelope(const struct cg_fa_sub *sub, const char *name,
                                json_t *props)
{
    char *id = cg_asprintf("/subscriptions/%s/" SECURITY_CONTACTS "/%s",
                           sub->id, name);
    json_t *o = json_pack("{s:s,s:s,s:s,s:o}", "id", id, "name", name, "type",
                          CONTACT_TYPE, "properties", props);
    free(id);
    return o;
}

static json_t *copy_member(const json_t *props, const char *key)
{
    json_t *v = cg_json_member(props, key);
    return v ? json_deep_copy(v) : json_null();
}

/* The canonical contact shown through version v (new reference). */
static json_t *view_contact(const struct cg_fa_sub *sub, enum cg_fa_ver v)
{
    const json_t *c = sub->contact;
    if (v == CG_FA_V2023)
        return contact_envelope(sub, "default", json_deep_copy(c));
    json_t *alert = find_source(c, "Alert");
    bool alerts = contact_enabled(c) && alert;
    if (v == CG_FA_V2020) {
        json_t *an = json_pack("{s:s}", "state", alerts ? "On" : "Off");
        json_t *sev = cg_json_member(alert, "minimalSeverity");
        if (sev)
            json_object_set_new(an, "minimalSeverity", json_deep_copy(sev));
        json_t *p = json_object();
        json_object_set_new(p, "emails", copy_member(c, "emails"));
        json_object_set_new(p, "phone", copy_member(c, "phone"));
        json_object_set_new(p, "alertNotifications", an);
        json_object_set_new(p, "notificationsByRole",
                            copy_member(c, "notificationsByRole"));
        return contact_envelope(sub, "default", p);
    }
    json_t *p = json_object();
    json_object_set_new(p, "email", copy_member(c, "emails"));
    json_object_set_new(p, "phone", copy_member(c, "phone"));
    json_object_set_new(p, "alertNotifications",
                        json_string(alerts ? "On" : "Off"));
    json_object_set_new(
        p, "alertsToAdmins",
        json_string(contact_enabled(c) && owner_on(c) ? "On" : "Off"));
    return contact_envelope(sub, "default1", p);
}

static json_t *view_legacy(const struct cg_fa_sub *sub, const json_t *l)
{
    return contact_envelope(sub, cg_json_str(l, "name"),
                            json_deep_copy(json_object_get(l, "properties")));
}

static void dump_into(struct cg_buf *out, json_t *v)
{
    char *s = json_dumps(v, JSON_COMPACT);
    cg_buf_reset(out);
    cg_buf_puts(out, s);
    free(s);
    json_decref(v);
}

/* FNV-1a of a subscription id: the seed of its role assignments' ids. */
static uint64_t sub_hash(const char *id)
{
    uint64_t h = 0xcbf29ce484222325ULL;
    for (; *id; id++)
        h = (h ^ (unsigned char)tolower((unsigned char)*id)) * 0x100000001b3ULL;
    return h;
}

void cg_fa_store_roles(struct cg_fa_store *st, const struct cg_fa_sub *sub,
                       unsigned page, struct cg_buf *out, bool *more)
{
    const struct cg_fa_scenario *sc = &st->scen[sub->scenario];
    size_t n = json_array_size(sc->roles);
    unsigned pages = sc->roles_pages ? sc->roles_pages : 1;
    size_t per = (n + pages - 1) / pages;
    if (per == 0)
        per = 1;
    uint64_t h = sub_hash(sub->id);
    json_t *value = json_array();
    for (size_t i = (size_t)page * per; i < n && i < ((size_t)page + 1) * per;
         i++) {
        json_t *e = json_array_get(sc->roles, i);
        const char *where = cg_json_str(e, "scope");
        char scope[160];
        if (!where || !strcmp(where, "subscription"))
            snprintf(scope, sizeof(scope), "/subscriptions/%s", sub->id);
        else if (!strcmp(where, "managementGroup"))
            snprintf(scope, sizeof(scope),
                     "/providers/Microsoft.Management/managementGroups/"
                     "%s",
                     st->tenants[sub->tenant].id);
        else
            cg_strlcpy(scope, "/", sizeof(scope));
        char principal[40], name[40], defid[320], id[400];
        make_guid(principal, st->params.seed, 7, h + i);
        make_guid(name, st->params.seed, 8, h + i);
        /* The definition id's prefix varies with where the assignment was
         * made (ARM shows both forms); only the GUID at its end names the
         * role. */
        snprintf(defid, sizeof(defid),
                 "%s/providers/Microsoft.Authorization/roleDefinitions/%s",
                 strcmp(scope, "/") ? scope : "",
                 role_def_id(cg_json_str(e, "role")));
        snprintf(id, sizeof(id),
                 "%s%sproviders/Microsoft.Authorization/roleAssignments/%s",
                 scope, strcmp(scope, "/") ? "/" : "", name);
        json_array_append_new(
            value,
            json_pack("{s:{s:s,s:s,s:s,s:s,s:s,s:s},s:s,s:s,s:s}", "properties",
                      "roleDefinitionId", defid, "principalId", principal,
                      "principalType", cg_json_str(e, "principalType"), "scope",
                      scope, "createdOn", "2024-03-01T10:00:00.0000000Z",
                      "updatedOn", "2024-03-01T10:00:00.0000000Z", "id", id,
                      "type", "Microsoft.Authorization/roleAssignments", "name",
                      name));
    }
    *more = page + 1 < pages && ((size_t)page + 1) * per < n;
    json_t *o = json_pack("{s:o}", "value", value);
    char *text = json_dumps(o, JSON_COMPACT);
    cg_buf_puts(out, text);
    free(text);
    json_decref(o);
}

int cg_fa_store_list(struct cg_fa_store *st, struct cg_fa_sub *sub,
                     enum cg_fa_ver v, struct cg_buf *out)
{
    if (sub->raw[v]) {
        cg_buf_reset(out);
        cg_buf_puts(out, sub->raw[v]);
        return 200;
    }
    /* LIST is the benchmark's hot path: rendered once per change. */
    if (!sub->cache[v]) {
        json_t *arr = json_array();
        if (sub->contact)
            json_array_append_new(arr, view_contact(sub, v));
        if (v == CG_FA_V2017) {
            size_t i;
            json_t *l;
            json_array_foreach(sub->legacy, i, l)
            {
                json_array_append_new(arr, view_legacy(sub, l));
            }
        }
        json_t *body =
            v == CG_FA_V2020 ? arr : json_pack("{s:o}", "value", arr);
        sub->cache[v] = json_dumps(body, JSON_COMPACT);
        json_decref(body);
    }
    cg_buf_reset(out);
    cg_buf_puts(out, sub->cache[v]);
    return 200;
}

static json_t *legacy_find(const struct cg_fa_sub *sub, const char *name,
                           size_t *index)
{
    size_t i;
    json_t *l;
    json_array_foreach(sub->legacy, i, l)
    {
        const char *n = cg_json_str(l, "name");
        if (n && strcasecmp(n, name) == 0) {
            if (index)
                *index = i;
            return l;
        }
    }
    return NULL;
}

static bool canonical_name(enum cg_fa_ver v, const char *name)
{
    return strcasecmp(name, v == CG_FA_V2017 ? "default1" : "default") == 0;
}

static int not_found(struct cg_buf *out, const char *name)
{
    char msg[160];
    snprintf(msg, sizeof(msg),
             "Could not find security contact with name %.64s", name);
    return arm_error(out, 404, "NotFound", msg);
}

int cg_fa_store_get(struct cg_fa_store *st, struct cg_fa_sub *sub,
                    enum cg_fa_ver v, const char *name, struct cg_buf *out)
{
    if (sub->raw[v]) {
        cg_buf_reset(out);
        cg_buf_puts(out, sub->raw[v]);
        return 200;
    }
    if (canonical_name(v, name) && sub->contact) {
        dump_into(out, view_contact(sub, v));
        return 200;
    }
    json_t *l = v == CG_FA_V2017 ? legacy_find(sub, name, NULL) : NULL;
    if (l) {
        dump_into(out, view_legacy(sub, l));
        return 200;
    }
    return not_found(out, name);
}

/* ---- writes ---- */

static bool member_type_ok(const json_t *props, const char *key, json_type type)
{
    json_t *v = cg_json_member(props, key);
    return !v || json_is_null(v) || json_typeof(v) == type;
}

/* Azure refuses commas in emails (the portal shows them, the API does
 * not take them). */
static int check_emails(const char *emails, struct cg_buf *out)
{
    if (emails && strchr(emails, ','))
        return arm_error(out, 400, "InvalidInputJson",
                         "Emails are separated by ';', ',' is not allowed");
    return 0;
}

/* Adds Owner to the roles of nbr unless present. */
static void roles_add_owner(json_t *nbr)
{
    json_t *roles = cg_json_member(nbr, "roles");
    if (!json_is_array(roles)) {
        roles = json_array();
        json_object_set_new(nbr, "roles", roles);
    }
    size_t i;
    json_t *r;
    json_array_foreach(roles, i, r)
    {
        if (str_ieq(r, "Owner"))
            return;
    }
    json_array_append_new(roles, json_string("Owner"));
}

static void sources_remove(json_t *props, const char *type)
{
    json_t *srcs = cg_json_member(props, "notificationsSources");
    for (size_t i = 0; i < json_array_size(srcs);) {
        if (str_ieq(cg_json_member(json_array_get(srcs, i), "sourceType"),
                    type))
            json_array_remove(srcs, i);
        else
            i++;
    }
}

static json_t *sources_ensure(json_t *props, const char *type)
{
    json_t *e = find_source(props, type);
    if (e)
        return e;
    json_t *srcs = cg_json_member(props, "notificationsSources");
    if (!json_is_array(srcs)) {
        srcs = json_array();
        json_object_set_new(props, "notificationsSources", srcs);
    }
    e = json_pack("{s:s}", "sourceType", type);
    json_array_append_new(srcs, e);
    return e;
}

/* Validates a 2023 body and returns the properties to store. */
static int put_2023(const json_t *props, json_t **newc, struct cg_buf *out)
{
    if (!member_type_ok(props, "isEnabled", JSON_TRUE) &&
        !member_type_ok(props, "isEnabled", JSON_FALSE))
        return arm_error(out, 400, "InvalidInputJson",
                         "isEnabled must be a boolean");
    if (!member_type_ok(props, "emails", JSON_STRING) ||
        !member_type_ok(props, "phone", JSON_STRING) ||
        !member_type_ok(props, "notificationsByRole", JSON_OBJECT) ||
        !member_type_ok(props, "notificationsSources", JSON_ARRAY))
        return arm_error(out, 400, "InvalidInputJson",
                         "a property has the wrong type");
    int rc = check_emails(cg_json_str(props, "emails"), out);
    if (rc)
        return rc;
    json_t *nbr = cg_json_member(props, "notificationsByRole");
    if (nbr && (!member_type_ok(nbr, "state", JSON_STRING) ||
                !member_type_ok(nbr, "roles", JSON_ARRAY)))
        return arm_error(out, 400, "InvalidInputJson",
                         "notificationsByRole has the wrong shape");
    json_t *srcs = cg_json_member(props, "notificationsSources");
    size_t i;
    json_t *e;
    json_array_foreach(srcs, i, e)
    {
        if (!json_is_string(cg_json_member(e, "sourceType")))
            return arm_error(out, 400, "InvalidInputJson",
                             "every notificationsSources entry needs a "
                             "sourceType");
    }
    json_t *c = json_object();
    static const char *const keys[] = { "isEnabled", "emails", "phone",
                                        "notificationsByRole",
                                        "notificationsSources" };
    for (size_t k = 0; k < sizeof(keys) / sizeof(keys[0]); k++) {
        json_t *v = cg_json_member(props, keys[k]);
        if (v)
            json_object_set_new(c, keys[k], json_deep_copy(v));
    }
    *newc = c;
    return 0;
}

/* A write keeps only the properties its API version defines: a member
 * that a portal edit or a newer version left (say `futureSetting`) is gone
 * after any API write. The 2023 members a 2020 or 2017 write cannot
 * express (isEnabled, the AttackPath source) are state the old versions
 * leave alone, as the service does. */
static void keep_stored(json_t *c)
{
    static const char *const stored[] = { "isEnabled",
                                          "emails",
                                          "phone",
                                          "notificationsByRole",
                                          "notificationsSources",
                                          NULL };
    const char *k;
    json_t *v;
    void *tmp;
    json_object_foreach_safe(c, tmp, k, v)
    {
        bool keep = false;
        for (int i = 0; stored[i]; i++)
            keep = keep || !strcmp(k, stored[i]);
        if (!keep)
            json_object_del(c, k);
    }
}

/* Maps a 2020 body onto the canonical state (old may be NULL). */
static int put_2020(const json_t *props, const json_t *old, json_t **newc,
                    struct cg_buf *out)
{
    if (!member_type_ok(props, "emails", JSON_STRING) ||
        !member_type_ok(props, "phone", JSON_STRING) ||
        !member_type_ok(props, "alertNotifications", JSON_OBJECT) ||
        !member_type_ok(props, "notificationsByRole", JSON_OBJECT))
        return arm_error(out, 400, "InvalidInputJson",
                         "a property has the wrong type");
    int rc = check_emails(cg_json_str(props, "emails"), out);
    if (rc)
        return rc;
    json_t *c = old ? json_deep_copy(old) : json_pack("{s:b}", "isEnabled", 1);
    static const char *const keys[] = { "emails", "phone",
                                        "notificationsByRole" };
    for (size_t k = 0; k < 3; k++) {
        json_t *v = cg_json_member(props, keys[k]);
        if (v)
            json_object_set_new(c, keys[k], json_deep_copy(v));
        else
            json_object_del(c, keys[k]);
    }
    json_t *an = cg_json_member(props, "alertNotifications");
    if (str_ieq(cg_json_member(an, "state"), "On")) {
        json_t *src = sources_ensure(c, "Alert");
        json_t *sev = cg_json_member(an, "minimalSeverity");
        json_object_set_new(src, "minimalSeverity",
                            sev ? json_deep_copy(sev) : json_string("High"));
    } else {
        sources_remove(c, "Alert");
    }
    keep_stored(c);
    *newc = c;
    return 0;
}

/* Maps a 2017 body for default1 onto the canonical state. */
static int put_2017(const json_t *props, const json_t *old, json_t **newc,
                    struct cg_buf *out)
{
    if (!member_type_ok(props, "email", JSON_STRING) ||
        !member_type_ok(props, "phone", JSON_STRING) ||
        !member_type_ok(props, "alertNotifications", JSON_STRING) ||
        !member_type_ok(props, "alertsToAdmins", JSON_STRING))
        return arm_error(out, 400, "InvalidInputJson",
                         "a property has the wrong type");
    int rc = check_emails(cg_json_str(props, "email"), out);
    if (rc)
        return rc;
    json_t *c = old ? json_deep_copy(old) : json_pack("{s:b}", "isEnabled", 1);
    json_t *email = cg_json_member(props, "email");
    json_object_set_new(c, "emails",
                        email ? json_deep_copy(email) : json_string(""));
    json_t *phone = cg_json_member(props, "phone");
    if (phone)
        json_object_set_new(c, "phone", json_deep_copy(phone));
    if (str_ieq(cg_json_member(props, "alertNotifications"), "On")) {
        json_t *src = sources_ensure(c, "Alert");
        if (!cg_json_member(src, "minimalSeverity"))
            json_object_set_new(src, "minimalSeverity", json_string("High"));
    } else {
        sources_remove(c, "Alert");
    }
    json_t *nbr = cg_json_member(c, "notificationsByRole");
    if (!json_is_object(nbr)) {
        nbr = json_object();
        json_object_set_new(c, "notificationsByRole", nbr);
    }
    if (str_ieq(cg_json_member(props, "alertsToAdmins"), "On")) {
        json_object_set_new(nbr, "state", json_string("On"));
        roles_add_owner(nbr);
    } else {
        json_object_set_new(nbr, "state", json_string("Off"));
    }
    keep_stored(c);
    *newc = c;
    return 0;
}

int cg_fa_store_put(struct cg_fa_store *st, struct cg_fa_sub *sub,
                    enum cg_fa_ver v, const char *name, const char *body,
                    size_t len, struct cg_buf *out)
{
    char jerr[200];
    json_t *doc = cg_json_parse(body, len, jerr, sizeof(jerr));
    int status;
    json_t *newc = NULL;
    if (!doc) {
        char msg[260];
        snprintf(msg, sizeof(msg), "The request content was invalid: %s", jerr);
        status = arm_error(out, 400, "InvalidRequestContent", msg);
        goto out;
    }
    json_t *props = cg_json_member(doc, "properties");
    if (!json_is_object(props)) {
        status = arm_error(out, 400, "InvalidRequestContent",
                           "The request content must have properties");
        goto out;
    }
    if (strlen(name) > CONTACT_NAME_MAX) {
        status = arm_error(out, 400, "InvalidResourceName",
                           "The security contact name is too long");
        goto out;
    }
    if (v != CG_FA_V2017 && strcasecmp(name, "default") != 0) {
        status = arm_error(out, 400, "InvalidSecurityContactName",
                           "The only security contact name allowed is "
                           "'default'");
        goto out;
    }
    if (v == CG_FA_V2017 && !canonical_name(v, name)) {
        /* Another 2017 name: a legacy contact, kept verbatim after the
         * same checks. */
        json_t *tmp = NULL;
        status = put_2017(props, NULL, &tmp, out);
        json_decref(tmp);
        if (status)
            goto out;
        size_t idx;
        bool existed = legacy_find(sub, name, &idx) != NULL;
        json_t *l = json_pack("{s:s,s:O}", "name", name, "properties", props);
        if (existed)
            json_array_set_new(sub->legacy, idx, l);
        else
            json_array_append_new(sub->legacy, l);
        sub_invalidate(sub);
        status = 200; /* 2017 declares 200 only, created or replaced */
        cg_fa_store_get(st, sub, v, name, out);
        goto out;
    }
    if (v == CG_FA_V2023)
        status = put_2023(props, &newc, out);
    else if (v == CG_FA_V2020)
        status = put_2020(props, sub->contact, &newc, out);
    else
        status = put_2017(props, sub->contact, &newc, out);
    if (status)
        goto out;
    /* 2020 and 2023 declare 201 Created and 200 OK; 2017 only 200. */
    status = sub->contact || v == CG_FA_V2017 ? 200 : 201;
    json_decref(sub->contact);
    sub->contact = newc;
    newc = NULL;
    sub_invalidate(sub);
    dump_into(out, view_contact(sub, v));
out:
    json_decref(newc);
    json_decref(doc);
    return status;
}

int cg_fa_store_delete(struct cg_fa_store *st, struct cg_fa_sub *sub,
                       enum cg_fa_ver v, const char *name)
{
    (void)st;
    /* 2020 and 2023: 200 deleted, 204 not found; 2017 declares only 204. */
    int deleted = v == CG_FA_V2017 ? 204 : 200;
    if (canonical_name(v, name)) {
        if (!sub->contact)
            return 204;
        json_decref(sub->contact);
        sub->contact = NULL;
        sub_invalidate(sub);
        return deleted;
    }
    size_t idx;
    if (v == CG_FA_V2017 && legacy_find(sub, name, &idx)) {
        json_array_remove(sub->legacy, idx);
        sub_invalidate(sub);
        return deleted;
    }
    return 204;
}

int cg_fa_store_patch(struct cg_fa_store *st, struct cg_fa_sub *sub,
                      const char *name, const char *body, size_t len,
                      struct cg_buf *out)
{
    char jerr[200];
    json_t *doc = cg_json_parse(body, len, jerr, sizeof(jerr));
    if (!doc) {
        char msg[260];
        snprintf(msg, sizeof(msg), "The request content was invalid: %s", jerr);
        return arm_error(out, 400, "InvalidRequestContent", msg);
    }
    json_t *props = cg_json_member(doc, "properties");
    if (!json_is_object(props)) {
        json_decref(doc);
        return arm_error(out, 400, "InvalidRequestContent",
                         "The request content must have properties");
    }
    /* The contact as 2017 shows it, the sent properties laid over it. */
    json_t *cur = NULL;
    if (canonical_name(CG_FA_V2017, name) && sub->contact)
        cur = view_contact(sub, CG_FA_V2017);
    json_t *l = cur ? NULL : legacy_find(sub, name, NULL);
    if (l)
        cur = view_legacy(sub, l);
    if (!cur) {
        json_decref(doc);
        return not_found(out, name);
    }
    json_t *merged = json_deep_copy(cg_json_member(cur, "properties"));
    if (!json_is_object(merged)) {
        json_decref(merged);
        merged = json_object();
    }
    json_object_update(merged, props);
    json_t *put = json_pack("{s:o}", "properties", merged);
    char *s = json_dumps(put, JSON_COMPACT);
    int status = cg_fa_store_put(st, sub, CG_FA_V2017, name, s, strlen(s), out);
    free(s);
    json_decref(put);
    json_decref(cur);
    json_decref(doc);
    return status;
}

void cg_fa_store_portal_edit(struct cg_fa_store *st, struct cg_fa_sub *sub,
                             const json_t *props)
{
    (void)st;
    json_decref(sub->contact);
    sub->contact =
        props && json_is_object(props) ? json_deep_copy(props) : NULL;
    sub_invalidate(sub);
}

void cg_fa_store_set_raw(struct cg_fa_sub *sub, enum cg_fa_ver v,
                         const char *body)
{
    free(sub->raw[v]);
    sub->raw[v] = body ? cg_strdup(body) : NULL;
}

json_t *cg_fa_store_sub_json(struct cg_fa_store *st,
                             const struct cg_fa_sub *sub)
{
    char *id = cg_asprintf("/subscriptions/%s", sub->id);
    json_t *o = json_pack(
        "{s:s,s:s,s:s,s:s,s:s,s:{s:s,s:s,s:s},s:s,s:[]}", "id", id,
        "authorizationSource", "RoleBased", "subscriptionId", sub->id,
        "tenantId", st->tenants[sub->tenant].id, "displayName",
        sub->display_name, "subscriptionPolicies", "locationPlacementId",
        "Public_2014-09-01", "quotaId", "PayAsYouGo_2014-09-01",
        "spendingLimit", "Off", "state", sub->state, "managedByTenants");
    free(id);
    return o;
}

/* ---- files for tests ---- */

int cg_fa_store_write_truth(struct cg_fa_store *st, const char *path,
                            char *errbuf, size_t errsz)
{
    FILE *f = fopen(path, "w");
    if (!f)
        return cg_err_set(errbuf, errsz, CG_EIO, "cannot write %s: %s", path,
                          strerror(errno));
    for (size_t i = 0; i < st->nsubs; i++) {
        const struct cg_fa_sub *sub = st->subs[i];
        const struct cg_fa_scenario *s = &st->scen[sub->scenario];
        for (int r = 0; r < CG_FA_RULES; r++) {
            json_t *o =
                json_pack("{s:s,s:s,s:s,s:s,s:s,s:s}", "subscription_id",
                          sub->id, "tenant_id", st->tenants[sub->tenant].id,
                          "scenario", s->name, "state", s->state, "rule",
                          cg_fa_rule_names[r], "status", s->truth[r]);
            char *line = json_dumps(o, JSON_COMPACT);
            fprintf(f, "%s\n", line);
            free(line);
            json_decref(o);
        }
    }
    if (fclose(f) != 0)
        return cg_err_set(errbuf, errsz, CG_EIO, "cannot write %s", path);
    return 0;
}

static int write_file(const char *path, const char *data, mode_t mode)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
    if (fd < 0)
        return -1;
    size_t len = strlen(data), off = 0;
    while (off < len) {
        ssize_t w = write(fd, data + off, len - off);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0) {
            close(fd);
            return -1;
        }
        off += (size_t)w;
    }
    return close(fd);
}

int cg_fa_store_write_credentials(struct cg_fa_store *st, const char *path,
                                  const char *base_url, const char *ca_file,
                                  const struct cg_fa_cred_files *cf,
                                  char *errbuf, size_t errsz)
{
    int rc = 0;
    char *dir = cg_asprintf("%s.secrets", path);
    json_t *root = NULL;
    char *text = NULL;
    if (mkdir(dir, 0700) < 0 && errno != EEXIST) {
        rc = cg_err_set(errbuf, errsz, CG_EIO, "cannot create %s: %s", dir,
                        strerror(errno));
        goto out;
    }
    json_t *tenants = json_array();
    root = json_pack("{s:{s:s,s:s,s:s},s:o}", "azure", "authority_host",
                     base_url, "resource_manager", base_url, "ca_file",
                     ca_file ? ca_file : "", "tenants", tenants);
    bool multi = st->params.multi_tenant_app;
    for (size_t t = 0; t < st->ntenants; t++) {
        const struct cg_fa_tenant *ten = &st->tenants[t];
        json_t *o = json_pack("{s:s,s:s}", "id", ten->id, "name", ten->name);
        json_array_append_new(tenants, o);
        if (multi && t > 0)
            continue; /* one app: its credentials are written once */
        /* Multi-tenant: the credentials are the global azure.* keys. */
        json_t *holder = multi ? json_object_get(root, "azure") : o;
        char *sf = cg_asprintf("%s/%s", dir, multi ? "app" : ten->id);
        char *secret = cg_asprintf("%s\n", ten->secret);
        int w = write_file(sf, secret, 0600);
        free(secret);
        if (w < 0) {
            rc = cg_err_set(errbuf, errsz, CG_EIO, "cannot write %s: %s", sf,
                            strerror(errno));
            free(sf);
            goto out;
        }
        cg_json_set_str(holder, "auth", cf->auth);
        cg_json_set_str(holder, "client_id", ten->client_id);
        if (!strcmp(cf->auth, "certificate")) {
            cg_json_set_str(holder, "certificate_file", cf->certificate_file);
            cg_json_set_str(holder, "private_key_file", cf->private_key_file);
        } else if (!strcmp(cf->auth, "federated")) {
            cg_json_set_str(holder, "federated_token_file",
                            cf->federated_token_file);
        } else {
            cg_json_set_str(holder, "client_secret_file", sf);
        }
        free(sf);
    }
    text = json_dumps(root, JSON_INDENT(2));
    char *withnl = cg_asprintf("%s\n", text);
    if (write_file(path, withnl, 0600) < 0)
        rc = cg_err_set(errbuf, errsz, CG_EIO, "cannot write %s: %s", path,
                        strerror(errno));
    free(withnl);
out:
    free(text);
    json_decref(root);
    free(dir);
    return rc;
}
