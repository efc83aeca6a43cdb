#include "event.h"

#include "err.h"
#include "json.h"
#include "map.h"
#include "mem.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

const char *cg_event_kind_name(enum cg_event_kind k)
{
    switch (k) {
    case CG_EVENT_NEW_SUBSCRIPTION:
        return "new-subscription";
    case CG_EVENT_CONTACT_CHANGE:
        return "contact-change";
    case CG_EVENT_VALIDATION:
        return "validation";
    case CG_EVENT_IGNORED:
        return "ignored";
    default:
        return "malformed";
    }
}

static void lower(char *s)
{
    for (; *s; s++)
        *s = (char)tolower((unsigned char)*s);
}

/* The GUID after "/subscriptions/" in an ARM path, case-insensitive. */
static bool sub_from_path(const char *path, char out[40])
{
    static const char key[] = "/subscriptions/";
    if (!path)
        return false;
    for (const char *p = path; *p; p++) {
        if (strncasecmp(p, key, sizeof(key) - 1) != 0)
            continue;
        const char *g = p + sizeof(key) - 1;
        char id[37];
        size_t n = strcspn(g, "/?");
        if (n != 36)
            continue;
        memcpy(id, g, 36);
        id[36] = '\0';
        if (cg_guid_valid(id)) {
            memcpy(out, id, 37);
            return true;
        }
    }
    return false;
}

static void set_why(struct cg_event *ev, enum cg_event_kind k, const char *why)
{
    ev->kind = k;
    cg_strlcpy(ev->why, why, sizeof(ev->why));
}

void cg_event_classify(const json_t *e, struct cg_event *ev)
{
    memset(ev, 0, sizeof(*ev));
    if (!json_is_object(e)) {
        set_why(ev, CG_EVENT_MALFORMED, "not an object");
        return;
    }
    ev->cloudevent = cg_json_member(e, "specversion") != NULL;
    const char *id = cg_json_str(e, "id");
    const char *type = cg_json_str(e, ev->cloudevent ? "type" : "eventType");
    if (ev->cloudevent) {
        const char *sv = cg_json_str(e, "specversion");
        if (!sv || strcmp(sv, "1.0") != 0) {
            set_why(ev, CG_EVENT_MALFORMED, "specversion is not 1.0");
            return;
        }
    }
    if (!id || !*id || strlen(id) > CG_EVENT_ID_MAX) {
        set_why(ev, CG_EVENT_MALFORMED, "no usable id");
        return;
    }
    cg_strlcpy(ev->id, id, sizeof(ev->id));
    if (!type) {
        set_why(ev, CG_EVENT_MALFORMED, "no event type");
        return;
    }
    json_t *data = cg_json_member(e, "data");
    if (strcasecmp(type, "Microsoft.EventGrid.SubscriptionValidationEvent") ==
        0) {
        const char *code = cg_json_str(data, "validationCode");
        if (!code || !*code || strlen(code) > CG_EVENT_ID_MAX) {
            set_why(ev, CG_EVENT_MALFORMED, "validation without a code");
            return;
        }
        ev->kind = CG_EVENT_VALIDATION;
        cg_strlcpy(ev->validation_code, code, sizeof(ev->validation_code));
        return;
    }
    bool write =
        strcasecmp(type, "Microsoft.Resources.ResourceWriteSuccess") == 0;
    bool del =
        strcasecmp(type, "Microsoft.Resources.ResourceDeleteSuccess") == 0;
    if (!write && !del) {
        set_why(ev, CG_EVENT_IGNORED, "event type");
        return;
    }
    const char *op = cg_json_str(data, "operationName");
    if (!op) {
        set_why(ev, CG_EVENT_IGNORED, "no operationName");
        return;
    }
    if (write && strcasecmp(op, "Microsoft.Subscription/aliases/write") == 0)
        ev->kind = CG_EVENT_NEW_SUBSCRIPTION;
    else if ((write && strcasecmp(op, "Microsoft.Security/securityContacts/"
                                      "write") == 0) ||
             (del && strcasecmp(op, "Microsoft.Security/securityContacts/"
                                    "delete") == 0))
        ev->kind = CG_EVENT_CONTACT_CHANGE;
    else {
        set_why(ev, CG_EVENT_IGNORED, "operation");
        return;
    }
    const char *sub = cg_json_str(data, "subscriptionId");
    if (sub && cg_guid_valid(sub))
        cg_strlcpy(ev->subscription_id, sub, sizeof(ev->subscription_id));
    else if (!sub_from_path(cg_json_str(data, "resourceUri"),
                            ev->subscription_id) &&
             !sub_from_path(cg_json_str(e, "subject"), ev->subscription_id) &&
             !sub_from_path(cg_json_str(e, ev->cloudevent ? "source" : "topic"),
                            ev->subscription_id)) {
        set_why(ev, CG_EVENT_MALFORMED, "no subscription id");
        return;
    }
    const char *tenant = cg_json_str(data, "tenantId");
    if (!tenant || !cg_guid_valid(tenant)) {
        set_why(ev, CG_EVENT_MALFORMED, "no tenant id");
        ev->subscription_id[0] = '\0';
        return;
    }
    cg_strlcpy(ev->tenant_id, tenant, sizeof(ev->tenant_id));
    lower(ev->subscription_id);
    lower(ev->tenant_id);
}

int cg_event_parse(const char *body, size_t len, cg_event_fn fn, void *arg,
                   char *errbuf, size_t errsz)
{
    json_t *root = cg_json_parse(body, len, errbuf, errsz);
    if (!root)
        return CG_EPARSE;
    int rc;
    if (json_is_object(root)) {
        struct cg_event ev;
        cg_event_classify(root, &ev);
        fn(&ev, arg);
        rc = 1;
    } else if (json_is_array(root)) {
        size_t n = json_array_size(root), i;
        json_t *e;
        rc = 0;
        if (n > CG_EVENT_BATCH_MAX) {
            rc = cg_err_set(errbuf, errsz, CG_ETOOBIG,
                            "%zu events in one body, more than %d", n,
                            CG_EVENT_BATCH_MAX);
        }
        json_array_foreach(root, i, e)
        {
            if (!json_is_object(e))
                rc = cg_err_set(errbuf, errsz, CG_EPARSE,
                                "element %zu of the array is not an object", i);
        }
        if (rc == 0) {
            json_array_foreach(root, i, e)
            {
                struct cg_event ev;
                cg_event_classify(e, &ev);
                fn(&ev, arg);
            }
            rc = (int)n;
        }
    } else {
        rc = cg_err_set(errbuf, errsz, CG_EPARSE,
                        "the body is neither an event nor an array of events");
    }
    json_decref(root);
    return rc;
}

/* ---- seen ids ---- */

struct cg_event_seen {
    struct cg_map *map;
    char **ring; /* insertion order, to forget the oldest */
    size_t max, head, n;
};

struct cg_event_seen *cg_event_seen_new(size_t max)
{
    struct cg_event_seen *s = cg_calloc(1, sizeof(*s));
    s->max = max ? max : CG_EVENT_SEEN_MAX;
    s->map = cg_map_new();
    s->ring = cg_calloc(s->max, sizeof(char *));
    return s;
}

void cg_event_seen_free(struct cg_event_seen *s)
{
    if (!s)
        return;
    for (size_t i = 0; i < s->max; i++)
        free(s->ring[i]);
    free(s->ring);
    cg_map_free(s->map);
    free(s);
}

bool cg_event_seen_check(struct cg_event_seen *s, const char *id)
{
    if (cg_map_get(s->map, id))
        return true;
    if (s->n == s->max) {
        char *old = s->ring[s->head];
        cg_map_del(s->map, old);
        free(old);
        s->ring[s->head] = NULL;
        s->head = (s->head + 1) % s->max;
        s->n--;
    }
    size_t slot = (s->head + s->n) % s->max;
    s->ring[slot] = cg_strdup(id);
    /* The value only has to be non-NULL. */
    cg_map_put(s->map, id, s->ring[slot]);
    s->n++;
    return false;
}

/* ---- debounce ---- */

struct pending {
    struct pending *next;
    int64_t due_ms;
    struct cg_debounce_out out;
};

struct cg_debounce {
    int64_t window_ms;
    size_t max, n;
    struct cg_map *map;
    /* Every window has the same length, so opening order is closing
     * order: a FIFO is a priority queue here. */
    struct pending *head, *tail;
};

struct cg_debounce *cg_debounce_new(int64_t window_ms, size_t max)
{
    struct cg_debounce *d = cg_calloc(1, sizeof(*d));
    d->window_ms = window_ms < 0 ? 0 : window_ms;
    d->max = max ? max : CG_EVENT_PENDING_MAX;
    d->map = cg_map_new();
    return d;
}

void cg_debounce_free(struct cg_debounce *d)
{
    if (!d)
        return;
    while (d->head) {
        struct pending *p = d->head;
        d->head = p->next;
        free(p);
    }
    cg_map_free(d->map);
    free(d);
}

static void pop_one(struct cg_debounce *d, cg_debounce_fn fn, void *arg)
{
    struct pending *p = d->head;
    d->head = p->next;
    if (!d->head)
        d->tail = NULL;
    cg_map_del(d->map, p->out.subscription_id);
    d->n--;
    fn(&p->out, arg);
    free(p);
}

int cg_debounce_add(struct cg_debounce *d, const struct cg_event *ev,
                    int64_t now_ms, cg_debounce_fn fn, void *arg)
{
    enum cg_job_reason reason;
    if (ev->kind == CG_EVENT_NEW_SUBSCRIPTION)
        reason = CG_JOB_NEW_SUBSCRIPTION;
    else if (ev->kind == CG_EVENT_CONTACT_CHANGE)
        reason = CG_JOB_EVENT;
    else
        return CG_EINVAL;
    struct pending *p = cg_map_get(d->map, ev->subscription_id);
    if (p) {
        if (reason == CG_JOB_NEW_SUBSCRIPTION)
            p->out.reason = reason;
        cg_strlcpy(p->out.tenant_id, ev->tenant_id, sizeof(p->out.tenant_id));
        p->out.events++;
        return 0;
    }
    if (d->n >= d->max)
        pop_one(d, fn, arg);
    p = cg_calloc(1, sizeof(*p));
    p->due_ms = now_ms + d->window_ms;
    cg_strlcpy(p->out.tenant_id, ev->tenant_id, sizeof(p->out.tenant_id));
    cg_strlcpy(p->out.subscription_id, ev->subscription_id,
               sizeof(p->out.subscription_id));
    p->out.reason = reason;
    p->out.events = 1;
    if (d->window_ms == 0) {
        fn(&p->out, arg);
        free(p);
        return 1;
    }
    if (d->tail)
        d->tail->next = p;
    else
        d->head = p;
    d->tail = p;
    cg_map_put(d->map, p->out.subscription_id, p);
    d->n++;
    return 1;
}

size_t cg_debounce_due(struct cg_debounce *d, int64_t now_ms, bool flush,
                       cg_debounce_fn fn, void *arg)
{
    size_t n = 0;
    while (d->head && (flush || d->head->due_ms <= now_ms)) {
        pop_one(d, fn, arg);
        n++;
    }
    return n;
}

int64_t cg_debounce_next_ms(const struct cg_debounce *d)
{
    return d->head ? d->head->due_ms : -1;
}

size_t cg_debounce_pending(const struct cg_debounce *d)
{
    return d->n;
}
