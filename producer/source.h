/*
 * source — where the producer's jobs come from.
 *
 *     tenants (sweep, watch) --+
 *     file or stdin ----------+--> emit --> jobs topic
 *     events (topic, webhook) -+
 *
 * Each source is a function that runs to completion (sweep, file) or until
 * the stop flag is raised (watch, listen, webhook), turning the loop itself.
 * They share struct cg_source: the loop, the configuration, the emitter and
 * the cache reader (NULL when Redis is not used), and they count what they
 * did into struct cg_summary, which main prints. Nothing here prints to
 * stdout except through emit's dry-run output and the ready lines of the
 * long-running modes, which supervisors and tests wait for.
 */
#ifndef CG_SOURCE_H
#define CG_SOURCE_H

#include "emit.h"
#include "event.h"
#include "job.h"

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

struct cg_loop;
struct cg_conf;
struct cg_cache_reader;

#define CG_SOURCE_LINE_MAX      (CG_JOB_MAX_LEN + 2) /* file source */
#define CG_SOURCE_FAILED_MAX    1000 /* failing tenants named in a summary */
#define CG_SOURCE_BAD_LINES_MAX 1000 /* bad lines named in a summary */
#define CG_SUBSCRIPTIONS_API    "/subscriptions?api-version=2022-12-01"

/* A tenant whose token or listing failed. */
struct cg_summary_tenant {
    char id[40];
    char name[128];
    char error[16]; /* CG_E* name */
    long status;    /* last HTTP status, 0 when none */
    char why[512];  /* Azure's error, AADSTS code included */
};

struct cg_summary_line {
    long line;
    char why[200];
};

/* What one run did. Plain record; main prints it. */
struct cg_summary {
    const char *mode;
    /* tenants */
    size_t tenants, tenants_ok, tenants_failed;
    struct cg_summary_tenant *failed; /* tenants_failed entries, capped */
    size_t nfailed;
    size_t subscriptions; /* listed, each once */
    size_t auditable;
    size_t disabled, deleted; /* counted, not scanned */
    size_t fresh;             /* skipped: scanned recently */
    size_t known;             /* watch: already in the known set */
    size_t lighthouse;        /* owned by another tenant than the lister */
    size_t duplicates;        /* listed by more than one tenant */
    size_t cycles;            /* watch */
    bool freshness_unavailable;
    /* file */
    size_t lines, bad_lines;
    struct cg_summary_line *bad; /* capped at CG_SOURCE_BAD_LINES_MAX */
    size_t nbad;
    /* events */
    size_t bodies, bodies_rejected, events;
    size_t events_by_kind[CG_EVENT_MALFORMED + 1];
    size_t events_duplicate, events_debounced;
    size_t webhook_requests, webhook_unauthorized, webhook_too_big, webhook_bad,
        webhook_validations;
    size_t webhook_refused;  /* connections over the per-address or total
                                limit, closed at once */
    size_t webhook_timeouts; /* connections past a phase's deadline */
    int64_t elapsed_ms;
};

/*
 * What a stop may take once *stop is raised, whatever the broker does: the
 * jobs still on their way get CG_SOURCE_STOP_FLUSH_MS, the listener's
 * final commit and leaving its group CG_SOURCE_LEAVE_MS, destroying the
 * listener and the producer CG_KAFKA_DESTROY_MS each (kafka.h): at most
 * CG_SOURCE_STOP_MS in all, with room for Redis writes bounded by
 * redis.timeout_ms (watch's known set).
 */
#define CG_SOURCE_STOP_FLUSH_MS 1000
#define CG_SOURCE_LEAVE_MS      2000
#define CG_SOURCE_STOP_MS       5000

/* The context every source runs in; all members borrowed. */
struct cg_source {
    struct cg_loop *loop;
    const struct cg_conf *conf;
    struct cg_emit *emit;
    struct cg_cache_reader *cache; /* NULL: no Redis */
    bool dry_run;
    bool force;         /* sweep: ignore freshness */
    volatile int *stop; /* raised by the signal watcher */
    struct cg_summary *sum;
    FILE *out; /* ready lines of long-running modes */
};

/* ---- tenants: source_tenants.c ---- */

/*
 * One sweep: lists every configured tenant (producer.tenant_concurrency at
 * once, paging through nextLink) and emits a `scheduled` job per auditable
 * subscription not scanned within producer.min_rescan_interval (unless
 * force). Returns once every tenant is done and every job has its fate, or
 * when *stop is raised. Returns 0, or CG_ECONF when no tenant is
 * configured; tenant failures are in the summary, not the return value.
 */
int cg_source_sweep(struct cg_source *src);

/*
 * Watch mode: lists every tenant every producer.watch_interval seconds and
 * emits a `new-subscription` job for each auditable subscription not in the
 * tenant's known set in Redis, then adds it there once delivered. Prints
 * "watch cycle N ..." on src->out after each cycle. Runs until *stop.
 * The reader does not reconnect, so after a Redis error watch frees
 * src->cache and connects afresh next cycle: src->cache may change (or be
 * NULL) on return; the caller frees whatever is there.
 */
int cg_source_watch(struct cg_source *src);

/*
 * The job a listed subscription becomes, or why it does not (pure, for
 * tests): returns 1 and fills *job (reason as given) for an auditable
 * subscription; 0 with *state set for one that is listed but not
 * auditable; CG_EPARSE for an item without a GUID subscriptionId. A
 * subscription whose tenantId differs from the lister's (Azure Lighthouse)
 * gets tenant_id = its own tenant and, unless that tenant is configured,
 * auth_tenant_id = the lister, whose credentials then read it.
 */
int cg_source_listed_job(const struct cg_conf *conf, const char *lister,
                         const json_t *item, enum cg_job_reason reason,
                         struct cg_job *job, enum cg_sub_state *state);

/* ---- file: source_file.c ---- */

/*
 * Parses one line (without its newline): blank and # lines return 0;
 * a subscription id, "tenant,subscription" or a job JSON line returns 1
 * with *job (reason manual for the first two; a job line is kept as
 * written); a bare subscription id leaves job->tenant_id "". Anything else
 * is CG_EPARSE (CG_ETOOBIG for a job line past CG_JOB_MAX_LEN) with the
 * reason in errbuf.
 */
int cg_source_parse_line(const char *line, struct cg_job *job, char *errbuf,
                         size_t errsz);

/*
 * Reads path ("-" or NULL: stdin) line by line and emits a job per good
 * line; bad lines are reported (log and summary, with the line number) and
 * skipped. A bare subscription id takes its tenant from the cache, else
 * from the only configured tenant, else the line is bad. Returns 0, or
 * CG_EIO when the file cannot be read.
 */
int cg_source_file(struct cg_source *src, const char *path);

/* ---- events: source_events.c ---- */

/* Consumes topics.events (consumer group kafka.group.id, default
 * "contactguard-producer") until *stop. Prints "listen ready" first. */
int cg_source_listen(struct cg_source *src);

/* Serves Event Grid webhook deliveries on producer.webhook_listen until
 * *stop. Prints "webhook listening on HOST:PORT" first. CG_ECONF without a
 * producer.webhook_secret. */
int cg_source_webhook(struct cg_source *src);

/* ---- the webhook's request handling, pure (source_events.c) ---- */

struct cg_webhook_request {
    const char *method;
    const char *target;        /* path and query */
    const char *secret_header; /* X-Webhook-Secret, or NULL */
    const char *aeg_event_type;
    const char *request_origin; /* WebHook-Request-Origin */
    size_t content_length;      /* as announced; checked before the body */
    const char *body;           /* NULL when not read (too large) */
    size_t body_len;
};

struct cg_webhook_response {
    int status;
    char allowed_origin[256]; /* WebHook-Allowed-Origin, or "" */
    char body[512];
};

/* Per-event decision of a body, shared by listener and webhook. */
struct cg_events_state;

struct cg_events_state *cg_events_state_new(struct cg_source *src);
void cg_events_state_free(struct cg_events_state *st);

/*
 * Handles one body from either transport at now_ms: validation events are
 * answered through *validation_code (may be NULL), repeats dropped,
 * creations and contact changes handed to the debounce. Returns the number
 * of events or a negative CG_E* (the body was rejected whole).
 */
int cg_events_body(struct cg_events_state *st, const char *body, size_t len,
                   int64_t now_ms, char *validation_code, size_t codesz,
                   char *errbuf, size_t errsz);

/* Emits the jobs whose debounce window closed at now_ms (all with flush).
 * Returns when the next closes, or -1. */
int64_t cg_events_due(struct cg_events_state *st, int64_t now_ms, bool flush);

/*
 * Decides the answer to one webhook request (secret, limits, handshakes,
 * body). secret is producer.webhook_secret; compared in constant time.
 */
void cg_webhook_handle(struct cg_events_state *st, const char *secret,
                       const struct cg_webhook_request *req, int64_t now_ms,
                       struct cg_webhook_response *res);

#endif
