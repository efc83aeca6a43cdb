/*
 * event — what an Azure event asks the producer to do, and when.
 *
 * The events source (source_events.c) receives bodies from the events topic
 * or the webhook; this module turns a body into classified events, drops
 * repeats by event id and folds bursts for one subscription into one job.
 * It does no I/O and reads no clock (times are passed in), so it is tested
 * with tables alone.
 *
 * Accepted bodies: one Event Grid event or an array of them (Event Grid
 * schema: id, eventType, subject, data), one CloudEvents 1.0 structured
 * event or an array of them (specversion, id, type, source, data). ARM's
 * system-topic events carry the operation in data.operationName:
 *
 *   Microsoft.Subscription/aliases/write       -> new subscription
 *   Microsoft.Security/securityContacts/write  -> contact changed
 *   Microsoft.Security/securityContacts/delete -> contact changed (a deleted
 *                                                 contact fails every rule)
 *
 * both only as Microsoft.Resources.Resource{Write,Delete}Success. The
 * subscription is data.subscriptionId, else the /subscriptions/{id} segment
 * of data.resourceUri, the subject or the CloudEvents source; the tenant is
 * data.tenantId. Everything else is IGNORED (counted by the caller).
 */
#ifndef CG_EVENT_H
#define CG_EVENT_H

#include "job.h"

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define CG_EVENT_ID_MAX      128    /* longer ids are malformed */
#define CG_EVENT_BATCH_MAX   5000   /* events in one body (Event Grid's cap) */
#define CG_EVENT_SEEN_MAX    100000 /* ids remembered for de-duplication */
#define CG_EVENT_PENDING_MAX 100000 /* subscriptions held by the debounce */

enum cg_event_kind {
    CG_EVENT_NEW_SUBSCRIPTION, /* job reason new-subscription */
    CG_EVENT_CONTACT_CHANGE,   /* job reason event */
    CG_EVENT_VALIDATION,       /* Event Grid's SubscriptionValidationEvent */
    CG_EVENT_IGNORED,          /* well formed, not ours */
    CG_EVENT_MALFORMED,        /* not an event, or ours without its ids */
};

struct cg_event {
    enum cg_event_kind kind;
    bool cloudevent;
    char id[CG_EVENT_ID_MAX + 1];
    char subscription_id[40];
    char tenant_id[40];
    char validation_code[CG_EVENT_ID_MAX + 1];
    char why[160]; /* IGNORED / MALFORMED: one phrase */
};

const char *cg_event_kind_name(enum cg_event_kind k);

/* Classifies one event object (either schema). Never fails: a value that is
 * not an event is MALFORMED with the reason in ev->why. */
void cg_event_classify(const json_t *e, struct cg_event *ev);

typedef void (*cg_event_fn)(const struct cg_event *ev, void *arg);

/*
 * Parses a body and calls fn once per event, in order. Returns the number
 * of events, or CG_EPARSE (not JSON, not an object or array, or an array
 * element that is not an object: nothing is reported then) or CG_ETOOBIG
 * (more than CG_EVENT_BATCH_MAX events), with errbuf.
 */
int cg_event_parse(const char *body, size_t len, cg_event_fn fn, void *arg,
                   char *errbuf, size_t errsz);

/* ---- de-duplication by event id ---- */

struct cg_event_seen;

/* Remembers the last `max` ids (0: CG_EVENT_SEEN_MAX), oldest forgotten
 * first. */
struct cg_event_seen *cg_event_seen_new(size_t max);
void cg_event_seen_free(struct cg_event_seen *s);
/* true when id was seen before; otherwise remembers it. */
bool cg_event_seen_check(struct cg_event_seen *s, const char *id);

/* ---- debounce: one job per subscription per window ---- */

/*
 * The first event for a subscription opens a window of window_ms; every
 * further event for it inside the window joins it; when the window closes
 * one job leaves, so the scan runs after the burst and sees its last
 * change. A window that saw a creation leaves as new-subscription, else as
 * event. A window of 0 lets every event leave at once. At most `max`
 * subscriptions are held: past that the oldest window closes early rather
 * than lose a job.
 */
struct cg_debounce;

struct cg_debounce *cg_debounce_new(int64_t window_ms, size_t max);
void cg_debounce_free(struct cg_debounce *d);

/* A job that leaves the debounce. */
struct cg_debounce_out {
    char tenant_id[40];
    char subscription_id[40];
    enum cg_job_reason reason;
    unsigned events; /* how many events the window folded */
};

typedef void (*cg_debounce_fn)(const struct cg_debounce_out *out, void *arg);

/* Adds an event (NEW_SUBSCRIPTION or CONTACT_CHANGE; others are refused
 * with CG_EINVAL) at now_ms. Returns 1 when it opened a window, 0 when it
 * joined one. fn receives jobs forced out by the bound or a zero window. */
int cg_debounce_add(struct cg_debounce *d, const struct cg_event *ev,
                    int64_t now_ms, cg_debounce_fn fn, void *arg);

/* Emits every window closed at now_ms (all of them when flush), oldest
 * first. Returns how many left. */
size_t cg_debounce_due(struct cg_debounce *d, int64_t now_ms, bool flush,
                       cg_debounce_fn fn, void *arg);

/* When the next window closes, or -1 when none is open. */
int64_t cg_debounce_next_ms(const struct cg_debounce *d);
size_t cg_debounce_pending(const struct cg_debounce *d);

#endif
