/*
 * arm — Azure Resource Manager calls with tokens, throttling and retries.
 *
 * The worker's fetch stage and the producer's tenant sweep read Azure
 * through this module; remediation writes through it. A call is one
 * logical operation (GET, PUT, DELETE, or a paged LIST) that may take many
 * HTTP attempts, all within the call's deadline:
 *
 *   client-side bucket -> tenant slot -> token (auth) -> HTTP -> verdict
 *
 * - The client mirrors ARM's token buckets per (principal, subscription) —
 *   reads 250 refilling 25/s, writes 200 refilling 10/s by default
 *   (worker.read_bucket, ...) — and lowers its balance to ARM's
 *   x-ms-ratelimit-remaining-subscription-* headers, so it slows itself
 *   before Azure does. A request short of a token waits on a loop timer.
 * - At most azure.tenant_max_in_flight attempts per tenant are on the wire.
 * - 401: the token is invalidated and the attempt repeated once.
 * - 429: the attempt, and every other request for the same bucket, waits
 *   at least Retry-After (CG_ARM_RETRY_AFTER_DEFAULT_MS when absent),
 *   never less.
 * - 5xx and transport failures: capped exponential backoff with full
 *   jitter.
 * - 400, 403, 404, 409 are never retried: CG_EBADREQ, CG_EFORBIDDEN,
 *   CG_ENOTFOUND, CG_ECONFLICT with ARM's error.code and message.
 * - When the next wait would end after the deadline the call fails with
 *   CG_EDEADLINE (final) and a sentence saying what kept failing; `cause`
 *   holds that underlying error.
 *
 * A process wires the layer once and turns the loop (Kafka's and the
 * metrics listener's fds can be watched by the same loop):
 *
 *   struct cg_http_opts ho;
 *   cg_http_opts_from_conf(conf, &ho);
 *   loop = cg_loop_new(err, sizeof(err));
 *   http = cg_http_new(loop, &ho, err, sizeof(err));
 *   auth = cg_auth_new(loop, http, conf, err, sizeof(err));
 *   arm = cg_arm_new(loop, http, auth, conf, err, sizeof(err));
 *
 *   struct cg_arm_request req = {
 *       .method = CG_HTTP_GET, .tenant = job->tenant_id,
 *       .subscription = job->subscription_id, .path = path,
 *       .deadline_ms = cg_loop_now_ms() + job_deadline_ms };
 *   cg_arm_list(arm, &req, on_contacts, job);  // on_contacts(res, job)
 *
 *   while (!stop)
 *       cg_loop_run_once(loop, 1000);
 *   cg_arm_free(arm); cg_auth_free(auth); cg_http_free(http);
 *   cg_loop_free(loop);
 */
#ifndef CG_ARM_H
#define CG_ARM_H

#include "http.h"

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct cg_loop;
struct cg_auth;
struct cg_conf;
struct cg_arm;
struct cg_arm_call;

#define CG_ARM_DEADLINE_DEFAULT_MS    120000
#define CG_ARM_RETRY_AFTER_DEFAULT_MS 10000 /* 429 without Retry-After */
#define CG_ARM_BACKOFF_BASE_MS        500
#define CG_ARM_BACKOFF_CAP_MS         30000
#define CG_ARM_PAGES_MAX              1000   /* nextLink hops per LIST */
#define CG_ARM_ITEMS_MAX              500000 /* merged items per LIST */
#define CG_ARM_WHY_MAX                512

/* ---- the pieces, exposed for tests ---- */

/* A token bucket (ARM's throttling model): capacity tokens, refilled
 * continuously at refill_per_s. A plain record. */
struct cg_arm_bucket {
    double tokens; /* negative: reserved ahead by waiting requests */
    double capacity;
    double refill_per_ms;
    int64_t last_ms;
};

/* A full bucket at now_ms. */
void cg_arm_bucket_init(struct cg_arm_bucket *b, double capacity,
                        double refill_per_s, int64_t now_ms);
/*
 * Reserves one token at now_ms. Returns how long the request must wait
 * (0: go now); waiting requests queue behind each other in reservation
 * order. Returns -1 and reserves nothing when the wait would exceed
 * max_wait_ms.
 */
int64_t cg_arm_bucket_reserve(struct cg_arm_bucket *b, int64_t now_ms,
                              int64_t max_wait_ms);
/* Lowers the balance to ARM's reported remaining count (never raises). */
void cg_arm_bucket_observe(struct cg_arm_bucket *b, long remaining,
                           int64_t now_ms);
/* The balance at now_ms after refill (for tests and metrics). */
double cg_arm_bucket_level(struct cg_arm_bucket *b, int64_t now_ms);

/*
 * Full-jitter backoff for the retry after `attempt` failures (1 for the
 * first retry): uniform in [0, min(cap_ms, base_ms * 2^(attempt-1))].
 * *rng is an xorshift64 state (non-zero) the caller owns.
 */
int64_t cg_arm_backoff_ms(int attempt, int64_t base_ms, int64_t cap_ms,
                          uint64_t *rng);

/* The CG_E* code for a final ARM status (400, 401, 403, 404, 409, ...). */
int cg_arm_status_err(long status);

/* ---- the client ---- */

/*
 * loop, http, auth and conf are borrowed and must outlive the client.
 * Reads azure.resource_manager, azure.tenant_max_in_flight and the
 * worker.read/write bucket keys.
 */
struct cg_arm *cg_arm_new(struct cg_loop *loop, struct cg_http *http,
                          struct cg_auth *auth, const struct cg_conf *conf,
                          char *errbuf, size_t errsz);
/* Unfinished calls are dropped without their callbacks. NULL-ok; not from
 * inside one of this object's callbacks. Free arm before auth and http. */
void cg_arm_free(struct cg_arm *arm);

struct cg_arm_request {
    enum cg_http_method method;
    const char *tenant;
    /* Keys the client-side bucket together with the tenant's principal;
     * NULL for tenant-level calls such as GET /subscriptions. */
    const char *subscription;
    /* "/subscriptions/...?api-version=..." under azure.resource_manager,
     * or an absolute URL on that same host. */
    const char *path;
    const char *body; /* JSON for PUT; copied */
    size_t body_len;
    int64_t deadline_ms; /* cg_loop_now_ms() clock; 0: now + default */
};

struct cg_arm_result {
    int err;                /* 0 or CG_E*; final unless cg_err_retryable() */
    int cause;              /* for CG_EDEADLINE: what kept failing */
    const char *why;        /* one sentence when err != 0, else "" */
    long status;            /* last HTTP status (0: none) */
    const char *code;       /* ARM error.code, or "" */
    const char *request_id; /* x-ms-request-id of the last answer, or "" */
    const char *body;       /* last response body (borrowed), or "" */
    size_t body_len;
    json_t *items; /* cg_arm_list: merged items (borrowed), else NULL */
    size_t pages;  /* cg_arm_list: pages read */
    int attempts;  /* HTTP attempts made */
    int64_t elapsed_ms;
};

/*
 * Called exactly once per call from the loop (never inside cg_arm_call
 * or cg_arm_list) unless cancelled. res is borrowed for the callback; use
 * json_incref on items to keep them.
 */
typedef void (*cg_arm_fn)(const struct cg_arm_result *res, void *arg);

/* One request (GET, PUT, DELETE). The handle is valid until the callback
 * runs or the call is cancelled. */
struct cg_arm_call *cg_arm_call(struct cg_arm *arm,
                                const struct cg_arm_request *req, cg_arm_fn fn,
                                void *arg);

/*
 * A paged GET: follows nextLink verbatim until it is absent or null and
 * merges every page's `value` array into res->items. A page that is a bare
 * JSON array (securityContacts 2020-01-01-preview) counts as its items.
 * A nextLink to another host is refused (CG_EPARSE): it would receive the
 * bearer token.
 */
struct cg_arm_call *cg_arm_list(struct cg_arm *arm,
                                const struct cg_arm_request *req, cg_arm_fn fn,
                                void *arg);

/* Abandons a call: no callback. NULL-ok. */
void cg_arm_cancel(struct cg_arm *arm, struct cg_arm_call *call);

/* Counters for /metrics; monotonic except the gauges. */
struct cg_arm_stats {
    uint64_t calls_started, calls_ok, calls_failed;
    uint64_t requests; /* HTTP attempts sent */
    uint64_t status_2xx, status_3xx, status_4xx, status_5xx;
    uint64_t transport_errors;
    uint64_t throttled;         /* 429 answers */
    uint64_t retry_after_waits; /* waits ordered by a 429 */
    uint64_t retry_after_wait_ms;
    uint64_t self_throttled; /* attempts delayed by the client bucket */
    uint64_t retries;        /* attempts after the first (5xx, transport) */
    uint64_t reauths;        /* 401s answered with a new token */
    uint64_t token_requests, token_failures; /* from auth */
    size_t calls_in_flight;                  /* gauge */
    size_t tenant_queued; /* gauge: attempts waiting for a tenant slot */
    /* Gauges of what is kept per key, bounded by cg_arm_sweep and
     * cg_auth_sweep: client buckets per (principal, subscription), tenant
     * slot records, tenants known to auth. */
    size_t limits_held, tenants_held, auth_tenants_held;
};

void cg_arm_stats(const struct cg_arm *arm, struct cg_arm_stats *out);

/*
 * Forgets the client-side records nothing needs any more: a bucket back to
 * full with no 429 block, probe or waiter (the same as no record), and a
 * tenant slot record no call points to. A timer calls it every minute;
 * tests call it directly. Returns how many records went.
 */
size_t cg_arm_sweep(struct cg_arm *arm, int64_t now_ms);

#endif
