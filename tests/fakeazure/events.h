/*
 * events — Event Grid notifications the fake announces: a subscription
 * created (Microsoft.Subscription/aliases/write) or a contact edited in
 * the portal (Microsoft.Security/securityContacts/write).
 *
 * Every event is kept (up to CG_FA_EVENTS_MAX, oldest dropped) for the
 * control API, and when a webhook URL is configured it is POSTed there in
 * the Event Grid schema (a JSON array of one event, header
 * `aeg-event-type: Notification`) by a background thread, so a slow
 * receiver never stalls the event loop. Before the first delivery the
 * thread performs Event Grid's validation handshake and records whether
 * the receiver echoed the code.
 */
#ifndef CG_FA_EVENTS_H
#define CG_FA_EVENTS_H

#include <jansson.h>
#include <stddef.h>

#define CG_FA_EVENTS_MAX 10000

struct cg_fa_events;

/* webhook may be NULL (events are only kept). */
struct cg_fa_events *cg_fa_events_new(const char *webhook, char *errbuf,
                                      size_t errsz);
/* Stops the poster thread after it has sent what was queued. */
void cg_fa_events_free(struct cg_fa_events *ev);

/* Builds, keeps and (maybe) posts one event; returns it (borrowed). */
json_t *cg_fa_events_emit(struct cg_fa_events *ev, const char *event_type,
                          const char *operation, const char *subject,
                          const char *subscription_id, const char *tenant_id);

/* {"events":[...], "webhook", "validated", "posted", "post_failures",
 * "queue_dropped"} (new reference). */
json_t *cg_fa_events_json(struct cg_fa_events *ev);

void cg_fa_events_reset(struct cg_fa_events *ev);

#endif
