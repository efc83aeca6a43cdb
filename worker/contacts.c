#include "contacts.h"

#include "err.h"
#include "json.h"
#include "mem.h"

#include <openssl/evp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

void cg_contacts_init(struct cg_contacts *ct)
{
    memset(ct, 0, sizeof(*ct));
}

static void note(struct cg_contacts *ct, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void note(struct cg_contacts *ct, const char *fmt, ...)
{
    if (ct->nnotes >= CG_CONTACTS_NOTES_MAX) {
        ct->notes_dropped++;
        return;
    }
    char buf[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    ct->notes = cg_realloc(ct->notes, (ct->nnotes + 1) * sizeof(char *));
    ct->notes[ct->nnotes++] = cg_strdup(buf);
}

static const char *type_name(const json_t *v)
{
    switch (json_typeof(v)) {
    case JSON_OBJECT:
        return "an object";
    case JSON_ARRAY:
        return "an array";
    case JSON_STRING:
        return "a string";
    case JSON_INTEGER:
    case JSON_REAL:
        return "a number";
    case JSON_TRUE:
    case JSON_FALSE:
        return "a boolean";
    default:
        return "null";
    }
}

/*
 * A string field, copied; wrong types and over-long strings are noted and
 * read as absent. `path` names the field in the note.
 */
static char *read_str(struct cg_contacts *ct, const json_t *obj,
                      const char *key, const char *path)
{
    json_t *v = cg_json_member(obj, key);
    if (!v || json_is_null(v))
        return NULL;
    if (!json_is_string(v)) {
        note(ct, "%s.%s: expected a string, got %s", path, key, type_name(v));
        return NULL;
    }
    size_t len = json_string_length(v);
    if (len > CG_CONTACTS_FIELD_MAX) {
        note(ct, "%s.%s: %zu bytes, longer than %d, ignored", path, key, len,
             CG_CONTACTS_FIELD_MAX);
        return NULL;
    }
    return cg_strndup(json_string_value(v), strlen(json_string_value(v)));
}

static json_t *read_obj(struct cg_contacts *ct, const json_t *obj,
                        const char *key, const char *path)
{
    json_t *v = cg_json_member(obj, key);
    if (!v || json_is_null(v))
        return NULL;
    if (!json_is_object(v)) {
        note(ct, "%s.%s: expected an object, got %s", path, key, type_name(v));
        return NULL;
    }
    return v;
}

static json_t *read_arr(struct cg_contacts *ct, const json_t *obj,
                        const char *key, const char *path)
{
    json_t *v = cg_json_member(obj, key);
    if (!v || json_is_null(v))
        return NULL;
    if (!json_is_array(v)) {
        note(ct, "%s.%s: expected an array, got %s", path, key, type_name(v));
        return NULL;
    }
    return v;
}

static enum cg_onoff onoff(const char *s)
{
    if (!s)
        return CG_ONOFF_ABSENT;
    if (strcasecmp(s, "On") == 0)
        return CG_ONOFF_ON;
    if (strcasecmp(s, "Off") == 0)
        return CG_ONOFF_OFF;
    return CG_ONOFF_OTHER;
}

enum cg_level cg_level_parse(const char *s)
{
    if (!s)
        return CG_LEVEL_NONE;
    if (strcasecmp(s, "Low") == 0)
        return CG_LEVEL_LOW;
    if (strcasecmp(s, "Medium") == 0)
        return CG_LEVEL_MEDIUM;
    if (strcasecmp(s, "High") == 0)
        return CG_LEVEL_HIGH;
    if (strcasecmp(s, "Critical") == 0)
        return CG_LEVEL_CRITICAL;
    return CG_LEVEL_UNKNOWN;
}

const char *cg_level_name(enum cg_level l)
{
    static const char *const names[] = { "none", "Low",      "Medium",
                                         "High", "Critical", "unknown" };
    return (unsigned)l < sizeof(names) / sizeof(names[0]) ? names[l]
                                                          : "unknown";
}

static const char *const version_names[] = { "unknown", "2017-08-01-preview",
                                             "2020-01-01-preview",
                                             "2023-12-01-preview" };

const char *cg_api_version_name(enum cg_api_version v)
{
    return (unsigned)v <= CG_API_2023 ? version_names[v] : "unknown";
}

enum cg_api_version cg_api_version_parse(const char *s)
{
    for (int v = CG_API_2017; v <= CG_API_2023; v++)
        if (s && strcasecmp(s, version_names[v]) == 0)
            return (enum cg_api_version)v;
    return CG_API_UNKNOWN;
}

/*
 * The version a contact's properties look like. 2023 is the only one with
 * isEnabled or notificationsSources; an object alertNotifications or an
 * `emails` field means 2020; a string alertNotifications, alertsToAdmins or
 * `email` means 2017.
 */
static enum cg_api_version detect(const json_t *props)
{
    if (!json_is_object(props))
        return CG_API_UNKNOWN;
    if (cg_json_member(props, "isEnabled") ||
        cg_json_member(props, "notificationsSources"))
        return CG_API_2023;
    json_t *an = cg_json_member(props, "alertNotifications");
    if (json_is_object(an))
        return CG_API_2020;
    if (json_is_string(an) || cg_json_member(props, "alertsToAdmins") ||
        cg_json_member(props, "email"))
        return CG_API_2017;
    if (cg_json_member(props, "emails") ||
        cg_json_member(props, "notificationsByRole"))
        return CG_API_2020;
    return CG_API_UNKNOWN;
}

static void read_roles(struct cg_contacts *ct, struct cg_contact *c,
                       const json_t *nbr, const char *path)
{
    char *state = read_str(ct, nbr, "state", path);
    c->role_state = onoff(state);
    c->role_state_raw = state;
    json_t *roles = read_arr(ct, nbr, "roles", path);
    if (!roles)
        return;
    size_t i;
    json_t *r;
    c->roles = cg_calloc(json_array_size(roles), sizeof(char *));
    json_array_foreach(roles, i, r)
    {
        if (!json_is_string(r)) {
            note(ct, "%s.roles[%zu]: expected a string, got %s", path, i,
                 type_name(r));
            continue;
        }
        if (json_string_length(r) > 256) {
            note(ct, "%s.roles[%zu]: longer than 256 bytes, ignored", path, i);
            continue;
        }
        c->roles[c->nroles++] = cg_strdup(json_string_value(r));
    }
}

static void read_sources(struct cg_contacts *ct, struct cg_contact *c,
                         const json_t *props, const char *path)
{
    json_t *arr = read_arr(ct, props, "notificationsSources", path);
    if (!arr)
        return;
    size_t i;
    json_t *s;
    c->sources = cg_calloc(json_array_size(arr), sizeof(*c->sources));
    json_array_foreach(arr, i, s)
    {
        char sp[160];
        snprintf(sp, sizeof(sp), "%s.notificationsSources[%zu]", path, i);
        if (!json_is_object(s)) {
            note(ct, "%s: expected an object, got %s", sp, type_name(s));
            continue;
        }
        char *type = read_str(ct, s, "sourceType", sp);
        if (!type && !cg_json_member(s, "sourceType")) {
            /* The spec's own examples say "type": read it, and say so. */
            type = read_str(ct, s, "type", sp);
            if (type)
                note(ct, "%s: \"type\" read as \"sourceType\"", sp);
        }
        if (!type)
            continue;
        struct cg_source *src = &c->sources[c->nsources++];
        src->type = type;
        const char *lk = strcasecmp(type, "AttackPath") == 0
                             ? "minimalRiskLevel"
                             : "minimalSeverity";
        src->level = read_str(ct, s, lk, sp);
        src->rank = cg_level_parse(src->level);
    }
}

static void read_contact(struct cg_contacts *ct, const json_t *obj,
                         enum cg_api_version version, const char *path)
{
    struct cg_contact *c = &ct->v[ct->n++];
    memset(c, 0, sizeof(*c));
    c->raw = json_incref((json_t *)obj);
    c->name = read_str(ct, obj, "name", path);
    c->enabled = true;

    char pp[100];
    snprintf(pp, sizeof(pp), "%s.properties", path);
    json_t *props = read_obj(ct, obj, "properties", path);
    if (!props) {
        if (!cg_json_member(obj, "properties"))
            note(ct, "%s: no properties", path);
        if (version == CG_API_2023) {
            c->enabled = false;
            c->is_enabled = cg_strdup("absent");
        }
        return;
    }

    if (version == CG_API_2023) {
        json_t *ie = cg_json_member(props, "isEnabled");
        c->enabled = json_is_true(ie);
        if (!ie || json_is_null(ie)) {
            c->is_enabled = cg_strdup("absent");
        } else if (json_is_boolean(ie)) {
            c->is_enabled = cg_strdup(json_is_true(ie) ? "true" : "false");
        } else {
            char *d = json_dumps(ie, JSON_ENCODE_ANY | JSON_COMPACT);
            c->is_enabled = cg_asprintf("%.64s (%s, not a boolean)",
                                        d ? d : "?", type_name(ie));
            note(ct, "%s.isEnabled: expected a boolean, got %s", pp,
                 type_name(ie));
            free(d);
        }
    }

    c->emails =
        read_str(ct, props, version == CG_API_2017 ? "email" : "emails", pp);
    c->phone = read_str(ct, props, "phone", pp);

    if (version == CG_API_2017) {
        c->role_state_raw = read_str(ct, props, "alertsToAdmins", pp);
        c->role_state = onoff(c->role_state_raw);
        c->alert_state_raw = read_str(ct, props, "alertNotifications", pp);
        c->alert_state = onoff(c->alert_state_raw);
        /* 2017 has no severity: "On" always meant High alerts. */
        if (c->alert_state == CG_ONOFF_ON)
            c->alert_severity = CG_LEVEL_HIGH;
        return;
    }

    char np[160];
    snprintf(np, sizeof(np), "%s.notificationsByRole", pp);
    json_t *nbr = read_obj(ct, props, "notificationsByRole", pp);
    if (nbr)
        read_roles(ct, c, nbr, np);

    if (version == CG_API_2020) {
        snprintf(np, sizeof(np), "%s.alertNotifications", pp);
        json_t *an = read_obj(ct, props, "alertNotifications", pp);
        if (an) {
            c->alert_state_raw = read_str(ct, an, "state", np);
            c->alert_state = onoff(c->alert_state_raw);
            c->alert_severity_raw = read_str(ct, an, "minimalSeverity", np);
            c->alert_severity = cg_level_parse(c->alert_severity_raw);
        }
    } else {
        read_sources(ct, c, props, pp);
    }
}

int cg_contacts_parse(struct cg_contacts *ct, const char *body, size_t len,
                      enum cg_api_version version, char *errbuf, size_t errsz)
{
    if (len > CG_CONTACTS_BODY_MAX)
        return cg_err_set(errbuf, errsz, CG_ETOOBIG,
                          "body of %zu bytes is larger than %d", len,
                          CG_CONTACTS_BODY_MAX);
    char jerr[200];
    json_t *root = cg_json_parse(body, len, jerr, sizeof(jerr));
    if (!root)
        return cg_err_set(errbuf, errsz, CG_EPARSE, "body is not JSON: %s",
                          jerr);
    int rc = cg_contacts_parse_json(ct, root, version, errbuf, errsz);
    json_decref(root);
    return rc;
}

int cg_contacts_parse_json(struct cg_contacts *ct, const json_t *root,
                           enum cg_api_version version, char *errbuf,
                           size_t errsz)
{
    const json_t *items = NULL;
    const char *top = "value";
    if (json_is_array(root)) {
        items = root; /* 2020-01-01-preview LIST answers a bare array */
        top = "";
    } else if (json_is_object(root) &&
               json_is_array(cg_json_member(root, "value"))) {
        items = cg_json_member(root, "value");
    } else if (json_is_object(root) &&
               json_is_object(cg_json_member(root, "properties"))) {
        items = NULL; /* a single GET object */
    } else {
        return cg_err_set(errbuf, errsz, CG_EPARSE,
                          "body is %s, not a list of security contacts "
                          "(object with a \"value\" array, an array, or one "
                          "contact with \"properties\")",
                          json_is_object(root) ? "an object without \"value\""
                                               : type_name(root));
    }

    size_t count = items ? json_array_size(items) : 1;
    if (ct->version == CG_API_UNKNOWN) {
        if (version == CG_API_UNKNOWN) {
            for (size_t i = 0; i < count && version == CG_API_UNKNOWN; i++) {
                const json_t *o = items ? json_array_get(items, i) : root;
                version = detect(cg_json_member(o, "properties"));
            }
            /* No contact says which: the bare array is 2020's; otherwise
             * assume the newest. */
            if (version == CG_API_UNKNOWN)
                version = items == root ? CG_API_2020 : CG_API_2023;
            ct->version_detected = true;
        }
        ct->version = version;
    }

    size_t room = CG_CONTACTS_MAX - ct->n;
    if (count > room) {
        note(ct, "%zu contacts, only the first %zu read", count, room);
        count = room;
    }
    ct->v = cg_realloc(ct->v, (ct->n + count) * sizeof(*ct->v));
    for (size_t i = 0; i < count; i++) {
        char path[48];
        const json_t *o = items ? json_array_get(items, i) : root;
        if (items)
            snprintf(path, sizeof(path), "%s[%zu]", top, ct->n);
        else
            cg_strlcpy(path, "contact", sizeof(path));
        if (!json_is_object(o)) {
            note(ct, "%s: expected an object, got %s", path, type_name(o));
            continue;
        }
        read_contact(ct, o, ct->version, path);
    }
    return 0;
}

static void contact_free(struct cg_contact *c)
{
    free(c->name);
    free(c->is_enabled);
    free(c->emails);
    free(c->phone);
    free(c->role_state_raw);
    for (size_t i = 0; i < c->nroles; i++)
        free(c->roles[i]);
    free(c->roles);
    free(c->alert_state_raw);
    free(c->alert_severity_raw);
    for (size_t i = 0; i < c->nsources; i++) {
        free(c->sources[i].type);
        free(c->sources[i].level);
    }
    free(c->sources);
    json_decref(c->raw);
}

void cg_contacts_free(struct cg_contacts *ct)
{
    if (!ct)
        return;
    for (size_t i = 0; i < ct->n; i++)
        contact_free(&ct->v[i]);
    free(ct->v);
    for (size_t i = 0; i < ct->nnotes; i++)
        free(ct->notes[i]);
    free(ct->notes);
    cg_contacts_init(ct);
}

static void set_opt(json_t *o, const char *k, const char *v)
{
    if (v)
        json_object_set_new(o, k, json_string(v));
}

json_t *cg_contacts_to_json(const struct cg_contacts *ct)
{
    json_t *root = json_object();
    json_t *arr = json_array();
    json_object_set_new(root, "api_version",
                        json_string(cg_api_version_name(ct->version)));
    for (size_t i = 0; i < ct->n; i++) {
        const struct cg_contact *c = &ct->v[i];
        json_t *o = json_object();
        set_opt(o, "name", c->name);
        json_object_set_new(o, "enabled", json_boolean(c->enabled));
        set_opt(o, "emails", c->emails);
        set_opt(o, "phone", c->phone);
        set_opt(o, "role_state", c->role_state_raw);
        json_t *roles = json_array();
        for (size_t r = 0; r < c->nroles; r++)
            json_array_append_new(roles, json_string(c->roles[r]));
        json_object_set_new(o, "roles", roles);
        set_opt(o, "alert_state", c->alert_state_raw);
        set_opt(o, "alert_severity", c->alert_severity_raw);
        json_t *srcs = json_array();
        for (size_t s = 0; s < c->nsources; s++) {
            json_t *so = json_object();
            set_opt(so, "type", c->sources[s].type);
            set_opt(so, "level", c->sources[s].level);
            json_array_append_new(srcs, so);
        }
        json_object_set_new(o, "sources", srcs);
        json_array_append_new(arr, o);
    }
    json_object_set_new(root, "contacts", arr);
    return root;
}

/* A JSON string as json_dumps writes it without JSON_ENSURE_ASCII or
 * JSON_ESCAPE_SLASH: '"', '\\' and the C0 controls are escaped, the rest
 * (already valid UTF-8: it came through the parser) is copied. */
static int canon_str(struct cg_buf *b, const char *s)
{
    int rc = cg_buf_append(b, "\"", 1);
    const char *run = s;
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        char u[8];
        const char *esc = NULL;
        switch (*p) {
        case '"':
            esc = "\\\"";
            break;
        case '\\':
            esc = "\\\\";
            break;
        case '\b':
            esc = "\\b";
            break;
        case '\f':
            esc = "\\f";
            break;
        case '\n':
            esc = "\\n";
            break;
        case '\r':
            esc = "\\r";
            break;
        case '\t':
            esc = "\\t";
            break;
        default:
            if (*p < 0x20) {
                snprintf(u, sizeof(u), "\\u%04X", *p);
                esc = u;
            }
        }
        if (!esc)
            continue;
        rc |= cg_buf_append(b, run, (size_t)((const char *)p - run));
        rc |= cg_buf_puts(b, esc);
        run = (const char *)p + 1;
    }
    rc |= cg_buf_puts(b, run);
    return rc | cg_buf_append(b, "\"", 1);
}

static int canon_opt(struct cg_buf *b, bool *first, const char *k,
                     const char *v)
{
    if (!v)
        return 0;
    int rc = cg_buf_printf(b, "%s\"%s\":", *first ? "" : ",", k);
    *first = false;
    return rc | canon_str(b, v);
}

int cg_contacts_canonical(const struct cg_contacts *ct, struct cg_buf *out)
{
    struct cg_buf *b = out;
    int rc = 0;
    rc |= cg_buf_puts(b, "{\"api_version\":");
    rc |= canon_str(b, cg_api_version_name(ct->version));
    rc |= cg_buf_puts(b, ",\"contacts\":[");
    for (size_t i = 0; i < ct->n; i++) {
        const struct cg_contact *c = &ct->v[i];
        bool first = true;
        /* The keys in byte order, as JSON_SORT_KEYS puts them. */
        rc |= cg_buf_puts(b, i ? ",{" : "{");
        rc |= canon_opt(b, &first, "alert_severity", c->alert_severity_raw);
        rc |= canon_opt(b, &first, "alert_state", c->alert_state_raw);
        rc |= canon_opt(b, &first, "emails", c->emails);
        rc |= cg_buf_printf(b, "%s\"enabled\":%s", first ? "" : ",",
                            c->enabled ? "true" : "false");
        first = false;
        rc |= canon_opt(b, &first, "name", c->name);
        rc |= canon_opt(b, &first, "phone", c->phone);
        rc |= canon_opt(b, &first, "role_state", c->role_state_raw);
        rc |= cg_buf_puts(b, ",\"roles\":[");
        for (size_t r = 0; r < c->nroles; r++) {
            if (r)
                rc |= cg_buf_append(b, ",", 1);
            rc |= canon_str(b, c->roles[r]);
        }
        rc |= cg_buf_puts(b, "],\"sources\":[");
        for (size_t k = 0; k < c->nsources; k++) {
            bool sfirst = true;
            rc |= cg_buf_puts(b, k ? ",{" : "{");
            rc |= canon_opt(b, &sfirst, "level", c->sources[k].level);
            rc |= canon_opt(b, &sfirst, "type", c->sources[k].type);
            rc |= cg_buf_append(b, "}", 1);
        }
        rc |= cg_buf_puts(b, "]}");
    }
    rc |= cg_buf_puts(b, "]}");
    return rc ? CG_ETOOBIG : 0;
}

void cg_contacts_hash(const struct cg_contacts *ct, char out[65])
{
    /* Written straight into one buffer rather than built as a tree and
     * dumped: the hash is taken for every job. */
    struct cg_buf b;
    cg_buf_init(&b, CG_CONTACTS_CANON_MAX);
    char *tree = NULL;
    const char *s;
    size_t len;
    if (cg_contacts_canonical(ct, &b) == 0 && b.data) {
        s = b.data;
        len = b.len;
    } else { /* past the bound: the slow path says the same */
        json_t *j = cg_contacts_to_json(ct);
        tree = cg_json_dump(j);
        json_decref(j);
        s = tree;
        len = strlen(tree);
    }
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    EVP_Digest(s, len, md, &mdlen, EVP_sha256(), NULL);
    for (unsigned int i = 0; i < mdlen && i < 32; i++)
        snprintf(out + 2 * i, 3, "%02x", md[i]);
    out[64] = '\0';
    free(tree);
    cg_buf_free(&b);
}
