#include "ocsf_check.h"

#include "map.h"
#include "mem.h"
#include "ocsf.h"

#include <jansson.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_VERSIONS 8
#define ROOT         "compliance_finding"
/* A timestamp_t in milliseconds: 2001-09-09 .. 5138-11-16. Seconds
 * (about 1.7e9 today) fall below the range. */
#define MS_MIN 1000000000000LL
#define MS_MAX 100000000000000LL

struct table {
    char version[16];
    json_t *doc;          /* owned */
    struct cg_map *rows;  /* "object.attribute" -> row (borrowed from doc) */
    struct cg_map *types; /* derived type -> base type name (json_t str) */
    size_t events;
};

struct cg_ocsf_check {
    struct table t[MAX_VERSIONS];
    size_t n;
    struct cg_map *event_uids;   /* metadata.uid -> "" */
    struct cg_map *finding_uids; /* account|control -> uid (heap) */
    struct cg_map *finding_keys; /* uid -> account|control (heap) */
};

/* Problems of one event. */
struct report {
    const struct table *t;
    const json_t *event;
    char *buf;
    size_t sz, used;
    int n;
};

static void problem(struct report *r, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void problem(struct report *r, const char *fmt, ...)
{
    r->n++;
    if (r->used + 8 >= r->sz)
        return;
    if (r->used) {
        r->used += (size_t)snprintf(r->buf + r->used, r->sz - r->used, "; ");
        if (r->used >= r->sz)
            return;
    }
    va_list ap;
    va_start(ap, fmt);
    int k = vsnprintf(r->buf + r->used, r->sz - r->used, fmt, ap);
    va_end(ap);
    r->used += k > 0 ? (size_t)k : 0;
    if (r->used >= r->sz)
        r->used = r->sz - 1;
}

static int load_table(struct table *t, const char *dir, const char *version,
                      char *errbuf, size_t errsz)
{
    char path[1024];
    snprintf(path, sizeof(path), "%s/%s.json", dir, version);
    json_error_t je;
    t->doc = json_load_file(path, 0, &je);
    if (!t->doc) {
        snprintf(errbuf, errsz, "%s: %s", path, je.text);
        return -1;
    }
    const char *v = json_string_value(json_object_get(t->doc, "ocsf_version"));
    if (!v || strcmp(v, version) != 0) {
        snprintf(errbuf, errsz, "%s: ocsf_version is not %s", path, version);
        return -1;
    }
    cg_strlcpy(t->version, version, sizeof(t->version));
    t->rows = cg_map_new();
    t->types = cg_map_new();
    size_t i;
    json_t *row;
    json_array_foreach(json_object_get(t->doc, "rows"), i, row)
    {
        char key[160];
        snprintf(key, sizeof(key), "%s.%s",
                 json_string_value(json_object_get(row, "object")),
                 json_string_value(json_object_get(row, "attribute")));
        cg_map_put(t->rows, key, row);
    }
    const char *k;
    json_t *base;
    json_object_foreach(json_object_get(t->doc, "types"), k, base)
        cg_map_put(t->types, k, base);
    return 0;
}

struct cg_ocsf_check *cg_ocsf_check_new(const char *dir, char *errbuf,
                                        size_t errsz)
{
    struct cg_ocsf_check *c = cg_calloc(1, sizeof(*c));
    const struct cg_ocsf_version *v;
    for (size_t i = 0; (v = cg_ocsf_version_at(i)) && i < MAX_VERSIONS; i++) {
        if (load_table(&c->t[c->n++], dir, v->name, errbuf, errsz)) {
            cg_ocsf_check_free(c);
            return NULL;
        }
    }
    c->event_uids = cg_map_new();
    c->finding_uids = cg_map_new();
    c->finding_keys = cg_map_new();
    return c;
}

static int free_value(const char *key, void *value, void *arg)
{
    (void)key;
    (void)arg;
    free(value);
    return 1;
}

void cg_ocsf_check_free(struct cg_ocsf_check *c)
{
    if (!c)
        return;
    for (size_t i = 0; i < c->n; i++) {
        json_decref(c->t[i].doc);
        cg_map_free(c->t[i].rows);
        cg_map_free(c->t[i].types);
    }
    if (c->finding_uids)
        cg_map_sweep(c->finding_uids, free_value, NULL);
    if (c->finding_keys)
        cg_map_sweep(c->finding_keys, free_value, NULL);
    cg_map_free(c->event_uids);
    cg_map_free(c->finding_uids);
    cg_map_free(c->finding_keys);
    free(c);
}

static const char *row_str(const json_t *row, const char *key)
{
    return json_string_value(json_object_get(row, key));
}

static bool profile_declared(const struct report *r, const char *profile)
{
    json_t *p =
        json_object_get(json_object_get(r->event, "metadata"), "profiles");
    size_t i;
    json_t *e;
    json_array_foreach(p, i, e)
    {
        if (json_is_string(e) && strcmp(json_string_value(e), profile) == 0)
            return true;
    }
    return false;
}

static void check_object(struct report *r, const char *object,
                         const json_t *node, const char *path);

static void check_scalar(struct report *r, const json_t *row, const json_t *v,
                         const char *path)
{
    const char *type = row_str(row, "type");
    const char *otype = row_str(row, "object_type");
    const json_t *bt = cg_map_get(r->t->types, type);
    const char *base = bt ? json_string_value(bt) : type;
    bool ok = true;
    if (otype) {
        if (!json_is_object(v))
            ok = false;
        else
            check_object(r, otype, v, path);
    } else if (!strcmp(base, "string_t")) {
        ok = json_is_string(v);
    } else if (!strcmp(base, "integer_t")) {
        ok = json_is_integer(v) && json_integer_value(v) >= INT32_MIN &&
             json_integer_value(v) <= INT32_MAX;
    } else if (!strcmp(base, "long_t")) {
        ok = json_is_integer(v);
    } else if (!strcmp(base, "float_t")) {
        ok = json_is_number(v);
    } else if (!strcmp(base, "boolean_t")) {
        ok = json_is_boolean(v);
    } else if (!strcmp(base, "object")) {
        ok = json_is_object(v);
    } else if (strcmp(base, "json_t") != 0) {
        problem(r, "%s: type %s is not known to the checker", path, type);
        return;
    }
    if (!ok) {
        problem(r, "%s is not of type %s (%s)", path, otype ? otype : type,
                row_str(row, "from"));
        return;
    }
    if (!strcmp(type, "timestamp_t") &&
        (json_integer_value(v) < MS_MIN || json_integer_value(v) >= MS_MAX))
        problem(r, "%s = %lld is not a time in milliseconds", path,
                (long long)json_integer_value(v));
    json_t *en = json_object_get(row, "enum");
    if (en) {
        char id[32];
        snprintf(id, sizeof(id), "%lld", (long long)json_integer_value(v));
        if (!json_is_integer(v) || !json_object_get(en, id))
            problem(r, "%s = %s is not in its enum (%s)", path, id,
                    row_str(row, "from"));
    }
}

static void check_value(struct report *r, const json_t *row, const json_t *v,
                        const char *path)
{
    if (!json_is_true(json_object_get(row, "array"))) {
        if (json_is_array(v))
            problem(r, "%s is an array, the schema has one value", path);
        else
            check_scalar(r, row, v, path);
        return;
    }
    if (!json_is_array(v)) {
        problem(r, "%s is not an array (%s)", path, row_str(row, "from"));
        return;
    }
    size_t i;
    json_t *e;
    json_array_foreach(v, i, e)
    {
        char p[300];
        int k = snprintf(p, sizeof(p), "%.256s[%zu]", path, i);
        (void)k;
        check_scalar(r, row, e, p);
    }
}

/* An enum id's sibling is the caption of the id; for 99 Other the source
 * names it. */
static void check_sibling(struct report *r, const json_t *row,
                          const json_t *node, const char *path)
{
    const char *sib = row_str(row, "sibling");
    json_t *en = json_object_get(row, "enum");
    const char *attr = row_str(row, "attribute");
    json_t *id = json_object_get(node, attr);
    json_t *s = sib ? json_object_get(node, sib) : NULL;
    if (!en || !s || !json_is_integer(id))
        return;
    char key[32];
    snprintf(key, sizeof(key), "%lld", (long long)json_integer_value(id));
    const char *caption = json_string_value(json_object_get(en, key));
    const char *got = json_string_value(s);
    if (!got)
        return; /* its type check reports it */
    if (json_integer_value(id) == 99) {
        if (!*got)
            problem(r, "%s.%s is empty for %s 99 Other", path, sib, attr);
    } else if (caption && strcmp(got, caption) != 0) {
        problem(r, "%s.%s = \"%s\" is not the caption of %s %s, \"%s\" (%s)",
                path, sib, got, attr, key, caption, row_str(row, "from"));
    }
}

static void check_object(struct report *r, const char *object,
                         const json_t *node, const char *path)
{
    const char *key;
    json_t *v;
    json_object_foreach((json_t *)node, key, v)
    {
        char k[160], p[256];
        snprintf(k, sizeof(k), "%s.%s", object, key);
        snprintf(p, sizeof(p), "%s%s%s", path, *path ? "." : "", key);
        const json_t *row = cg_map_get(r->t->rows, k);
        if (!row) {
            problem(r, "%s is not an attribute of %s in OCSF %s", p, object,
                    r->t->version);
            continue;
        }
        if (row_str(row, "deprecated"))
            problem(r, "%s is deprecated since OCSF %s (%s)", p,
                    row_str(row, "deprecated"), row_str(row, "from"));
        const char *profile = row_str(row, "profile");
        if (profile && !profile_declared(r, profile))
            problem(r,
                    "%s comes from the %s profile, which "
                    "metadata.profiles does not declare",
                    p, profile);
        if (json_is_null(v)) {
            problem(r, "%s is null", p);
            continue;
        }
        check_value(r, row, v, p);
        check_sibling(r, row, node, path[0] ? path : "event");
    }
    size_t i;
    json_t *row;
    json_array_foreach(json_object_get(r->t->doc, "rows"), i, row)
    {
        if (strcmp(row_str(row, "object"), object) != 0 ||
            strcmp(row_str(row, "requirement"), "required") != 0)
            continue;
        const char *profile = row_str(row, "profile");
        if (profile && !profile_declared(r, profile))
            continue;
        const char *attr = row_str(row, "attribute");
        json_t *have = json_object_get(node, attr);
        if (!have || json_is_null(have))
            problem(r, "%s%s%s is required (%s)", path, *path ? "." : "", attr,
                    row_str(row, "from"));
    }
    json_t *con;
    json_array_foreach(json_object_get(r->t->doc, "constraints"), i, con)
    {
        if (strcmp(row_str(con, "object"), object) != 0)
            continue;
        if (strcmp(row_str(con, "constraint"), "at_least_one") != 0) {
            problem(r, "%s: constraint %s is not known to the checker", object,
                    row_str(con, "constraint"));
            continue;
        }
        bool any = false;
        size_t j;
        json_t *a;
        json_array_foreach(json_object_get(con, "attributes"), j, a)
        {
            json_t *have = json_object_get(node, json_string_value(a));
            if (have && !json_is_null(have))
                any = true;
        }
        if (!any)
            problem(r,
                    "%s (%s) needs at least one of its at_least_one "
                    "attributes (%s)",
                    *path ? path : "event", object, row_str(con, "from"));
    }
}

/* metadata.uid once; finding_info.uid one per (account, control). */
static void check_identity(struct cg_ocsf_check *c, struct report *r)
{
    const json_t *e = r->event;
    const char *muid = json_string_value(
        json_object_get(json_object_get(e, "metadata"), "uid"));
    if (!muid) {
        problem(r, "metadata.uid is missing: each event needs its own");
    } else if (cg_map_get(c->event_uids, muid)) {
        problem(r, "metadata.uid %s was already used by another event", muid);
    } else {
        cg_map_put(c->event_uids, muid, (void *)"");
    }
    const char *fuid = json_string_value(
        json_object_get(json_object_get(e, "finding_info"), "uid"));
    const char *acct = json_string_value(json_object_get(
        json_object_get(json_object_get(e, "cloud"), "account"), "uid"));
    const char *control = json_string_value(
        json_object_get(json_object_get(e, "compliance"), "control"));
    if (!fuid || !acct || !control)
        return;
    if (muid && strcmp(muid, fuid) == 0)
        problem(r, "metadata.uid equals finding_info.uid");
    char key[256];
    snprintf(key, sizeof(key), "%s|%s", acct, control);
    const char *had = cg_map_get(c->finding_uids, key);
    const char *owner = cg_map_get(c->finding_keys, fuid);
    if (had && strcmp(had, fuid) != 0)
        problem(r, "finding_info.uid of %s changed from %s to %s", key, had,
                fuid);
    if (owner && strcmp(owner, key) != 0)
        problem(r, "finding_info.uid %s names both %s and %s", fuid, owner,
                key);
    if (!had)
        cg_map_put(c->finding_uids, key, cg_strdup(fuid));
    if (!owner)
        cg_map_put(c->finding_keys, fuid, cg_strdup(key));
}

int cg_ocsf_check_event(struct cg_ocsf_check *c, const char *text, size_t len,
                        char *errbuf, size_t errsz)
{
    struct report r = { .buf = errbuf, .sz = errsz };
    if (errsz)
        errbuf[0] = '\0';
    json_error_t je;
    json_t *e = json_loadb(text, len, JSON_REJECT_DUPLICATES, &je);
    if (!json_is_object(e)) {
        snprintf(errbuf, errsz, "not a JSON object: %s", e ? "" : je.text);
        json_decref(e);
        return 1;
    }
    r.event = e;
    const char *v = json_string_value(
        json_object_get(json_object_get(e, "metadata"), "version"));
    for (size_t i = 0; v && i < c->n; i++)
        if (strcmp(c->t[i].version, v) == 0)
            r.t = &c->t[i];
    if (!r.t) {
        problem(&r,
                "metadata.version %s is not a version contactguard "
                "writes",
                v ? v : "(missing)");
        json_decref(e);
        return r.n;
    }
    ((struct table *)r.t)->events++;
    check_object(&r, ROOT, e, "");
    check_identity(c, &r);
    json_decref(e);
    return r.n;
}

size_t cg_ocsf_check_count(const struct cg_ocsf_check *c, const char *version)
{
    for (size_t i = 0; i < c->n; i++)
        if (strcmp(c->t[i].version, version) == 0)
            return c->t[i].events;
    return 0;
}
