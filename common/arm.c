#include "arm.h"

#include "auth.h"
#include "conf.h"
#include "err.h"
#include "json.h"
#include "log.h"
#include "loop.h"
#include "map.h"
#include "mem.h"

#include <ctype.h>
#include <curl/curl.h>
#include <math.h>
#include <openssl/crypto.h>
#include <openssl/rand.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define ARM_SWEEP_MS             60000 /* idle buckets are forgotten this often */
#define ARM_TOKEN_MAX            16384 /* bearer tokens are ~2 KiB */
#define ARM_REAUTHS_EXPIRED      4 /* 401 ExpiredAuthenticationToken retries */
#define ARM_RETRY_AFTER_SLACK_MS 20
#define ARM_BUCKET_SLACK_MS      25
#define ARM_PARSE_RETRIES        2 /* unparseable LIST pages asked again */

/* ---- token buckets ---- */

void cg_arm_bucket_init(struct cg_arm_bucket *b, double capacity,
                        double refill_per_s, int64_t now_ms)
{
    b->capacity = capacity;
    b->tokens = capacity;
    b->refill_per_ms = refill_per_s / 1000.0;
    b->last_ms = now_ms;
}

static void bucket_refill(struct cg_arm_bucket *b, int64_t now_ms)
{
    if (now_ms > b->last_ms) {
        b->tokens += (double)(now_ms - b->last_ms) * b->refill_per_ms;
        if (b->tokens > b->capacity)
            b->tokens = b->capacity;
        b->last_ms = now_ms;
    }
}

double cg_arm_bucket_level(struct cg_arm_bucket *b, int64_t now_ms)
{
    bucket_refill(b, now_ms);
    return b->tokens;
}

int64_t cg_arm_bucket_reserve(struct cg_arm_bucket *b, int64_t now_ms,
                              int64_t max_wait_ms)
{
    bucket_refill(b, now_ms);
    if (b->tokens >= 1.0) {
        b->tokens -= 1.0;
        return 0;
    }
    /* Time until the balance reaches one token, i.e. until this request's
     * token has been refilled after those reserved before it. */
    int64_t wait = (int64_t)ceil((1.0 - b->tokens) / b->refill_per_ms);
    if (wait > max_wait_ms)
        return -1;
    b->tokens -= 1.0;
    return wait;
}

void cg_arm_bucket_observe(struct cg_arm_bucket *b, long remaining,
                           int64_t now_ms)
{
    if (remaining < 0)
        return;
    bucket_refill(b, now_ms);
    if ((double)remaining < b->tokens)
        b->tokens = (double)remaining;
}

/* ---- backoff and statuses ---- */

static uint64_t xorshift64(uint64_t *s)
{
    uint64_t x = *s;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    *s = x;
    return x;
}

int64_t cg_arm_backoff_ms(int attempt, int64_t base_ms, int64_t cap_ms,
                          uint64_t *rng)
{
    int64_t ceiling = base_ms;
    for (int i = 1; i < attempt && ceiling < cap_ms; i++)
        ceiling *= 2;
    if (ceiling > cap_ms)
        ceiling = cap_ms;
    if (ceiling <= 0)
        return 0;
    return (int64_t)(xorshift64(rng) % (uint64_t)(ceiling + 1));
}

int cg_arm_status_err(long status)
{
    switch (status) {
    case 401:
        return CG_EAUTH;
    case 403:
        return CG_EFORBIDDEN;
    case 404:
        return CG_ENOTFOUND;
    case 409:
        return CG_ECONFLICT;
    case 429:
        return CG_ETHROTTLED;
    default:
        if (status >= 500)
            return CG_EUNAVAIL;
        if (status >= 200 && status < 300)
            return 0;
        return CG_EBADREQ;
    }
}

/* ---- state ---- */

/* Client-side limits for one (principal, subscription) pair. */
struct arm_limits {
    struct cg_arm_bucket read, write;
    int64_t blocked_until_ms; /* a 429's Retry-After applies to all */
    /* After a 429 our mirror of ARM's bucket is known to be wrong: one
     * request (the probe) goes first when the block ends, and the others
     * wait for its answer and the remaining count it carries, rather than
     * all arriving at once and earning a new wait. */
    bool probe_needed, probe_inflight;
    struct cg_arm_call *whead, *wtail; /* waiting for the probe */
};

struct arm_tenant {
    size_t calls; /* calls that point here; 0: the sweep may forget it */
    size_t in_flight;
    struct cg_arm_call *qhead, *qtail; /* waiting for a slot */
};

enum call_state {
    CALL_WAIT_BUCKET,
    CALL_WAIT_SLOT,
    CALL_WAIT_TOKEN,
    CALL_HTTP,
    CALL_WAIT_RETRY,
    CALL_WAIT_PROBE,
    CALL_DONE,
};

struct cg_arm_call {
    struct cg_arm *arm;
    struct cg_arm_call *prev, *next;   /* all calls */
    struct cg_arm_call *qprev, *qnext; /* tenant slot queue */
    enum call_state state;
    bool list, has_slot, starting, probing;
    bool held;         /* on_wire kept the request from the wire */
    bool tenant_level; /* no subscription: ARM's tenant bucket */
    int reauths;       /* 401s answered with a new token in this call or page */
    enum cg_http_method method;
    char *tenant;
    char *limits_key;       /* NULL: no principal (the call will fail anyway) */
    struct arm_limits *lim; /* while waiting on it or probing it */
    struct arm_tenant *tn;
    char *url;
    char *body;
    size_t body_len;
    int64_t start_ms, deadline_ms;
    int attempts, failures, parse_failures;
    char *token; /* the one sent, to invalidate it on a 401 */
    struct cg_loop_timer timer;
    struct cg_http_req *req;
    struct cg_auth_wait *aw;
    json_t *items;
    size_t pages;
    /* outcome */
    int err, cause;
    long status;
    char code[64];
    char request_id[CG_HTTP_REQID_MAX];
    char why[CG_ARM_WHY_MAX];
    cg_arm_fn fn;
    void *arg;
};

struct cg_arm {
    struct cg_loop *loop;
    struct cg_http *http;
    struct cg_auth *auth;
    char *base;    /* resource manager without trailing slash */
    CURLU *origin; /* its parsed form, to vet nextLinks */
    long read_bucket, read_refill, write_bucket, write_refill;
    size_t tenant_cap;
    int64_t timeout_ms;     /* one attempt, at most */
    struct cg_map *limits;  /* "principal/subscription" -> arm_limits */
    struct cg_map *tenants; /* lower-case id -> arm_tenant */
    struct cg_arm_call *calls;
    struct cg_loop_timer sweep;
    uint64_t rng;
    bool freeing;
    struct cg_arm_stats stats;
};

static void attempt_begin(struct cg_arm_call *c);
static void call_token(struct cg_arm_call *c);
static bool call_gate(struct cg_arm_call *c);
static void call_wait_probe(struct cg_arm_call *c, struct arm_limits *l);
static void on_retry_timer(struct cg_loop *loop, void *arg);

/* ---- calls: bookkeeping ---- */

static struct arm_limits *call_limits(struct cg_arm_call *c)
{
    struct cg_arm *arm = c->arm;
    if (!c->limits_key)
        return NULL;
    struct arm_limits *l = cg_map_get(arm->limits, c->limits_key);
    if (!l) {
        int64_t now = cg_loop_now_ms();
        l = cg_calloc(1, sizeof(*l));
        cg_arm_bucket_init(&l->read, (double)arm->read_bucket,
                           (double)arm->read_refill, now);
        cg_arm_bucket_init(&l->write, (double)arm->write_bucket,
                           (double)arm->write_refill, now);
        cg_map_put(arm->limits, c->limits_key, l);
    }
    return l;
}

static void on_slot_timer(struct cg_loop *loop, void *arg)
{
    call_token(arg);
}

/* Hands free slots to queued calls. They continue from the loop: a call
 * releasing its slot must never run another call's callback under its
 * own feet. */
static void slot_wake(struct cg_arm *arm, struct arm_tenant *tn)
{
    while (!arm->freeing && tn->qhead && tn->in_flight < arm->tenant_cap) {
        struct cg_arm_call *c = tn->qhead;
        tn->qhead = c->qnext;
        if (tn->qhead)
            tn->qhead->qprev = NULL;
        else
            tn->qtail = NULL;
        c->qnext = c->qprev = NULL;
        arm->stats.tenant_queued--;
        tn->in_flight++;
        c->has_slot = true;
        c->state = CALL_WAIT_TOKEN;
        cg_loop_timer_add(arm->loop, &c->timer, 0, on_slot_timer, c);
    }
}

static void slot_release(struct cg_arm_call *c)
{
    if (!c->has_slot)
        return;
    c->has_slot = false;
    c->tn->in_flight--;
    slot_wake(c->arm, c->tn);
}

static void queue_remove(struct cg_arm_call *c)
{
    struct arm_tenant *tn = c->tn;
    if (c->qprev)
        c->qprev->qnext = c->qnext;
    else
        tn->qhead = c->qnext;
    if (c->qnext)
        c->qnext->qprev = c->qprev;
    else
        tn->qtail = c->qprev;
    c->qnext = c->qprev = NULL;
    c->arm->stats.tenant_queued--;
}

static void probe_unwait(struct cg_arm_call *c)
{
    struct arm_limits *l = c->lim;
    if (c->qprev)
        c->qprev->qnext = c->qnext;
    else
        l->whead = c->qnext;
    if (c->qnext)
        c->qnext->qprev = c->qprev;
    else
        l->wtail = c->qprev;
    c->qnext = c->qprev = NULL;
    c->lim = NULL;
}

/* The probe has its answer (or is gone): let the others try again, each
 * from the loop, so that no callback runs under our feet. */
static void probe_done(struct cg_arm_call *c, bool throttled)
{
    struct arm_limits *l = c->lim;
    c->probing = false;
    c->lim = NULL;
    l->probe_inflight = false;
    if (!throttled)
        l->probe_needed = false;
    while (l->whead) {
        struct cg_arm_call *w = l->whead;
        probe_unwait(w);
        w->state = CALL_WAIT_RETRY;
        cg_loop_timer_add(c->arm->loop, &w->timer, 0, on_retry_timer, w);
    }
}

/* Stops whatever the call is waiting for. */
static void call_stop(struct cg_arm_call *c)
{
    struct cg_arm *arm = c->arm;
    cg_loop_timer_cancel(arm->loop, &c->timer);
    if (c->state == CALL_WAIT_SLOT)
        queue_remove(c);
    if (c->state == CALL_WAIT_PROBE)
        probe_unwait(c);
    if (c->probing)
        probe_done(c, true);
    cg_auth_cancel(arm->auth, c->aw);
    c->aw = NULL;
    cg_http_cancel(arm->http, c->req);
    c->req = NULL;
    slot_release(c);
}

static void call_free(struct cg_arm_call *c)
{
    struct cg_arm *arm = c->arm;
    if (c->prev)
        c->prev->next = c->next;
    else
        arm->calls = c->next;
    if (c->next)
        c->next->prev = c->prev;
    arm->stats.calls_in_flight--;
    if (c->tn)
        c->tn->calls--;
    if (c->token) {
        OPENSSL_cleanse(c->token, strlen(c->token));
        free(c->token);
    }
    json_decref(c->items);
    free(c->tenant);
    free(c->limits_key);
    free(c->url);
    free(c->body);
    free(c);
}

static void call_deliver(struct cg_arm_call *c, const char *body,
                         size_t body_len)
{
    struct cg_arm *arm = c->arm;
    struct cg_arm_result res = {
        .err = c->err,
        .cause = c->cause,
        .why = c->err ? c->why : "",
        .status = c->status,
        .code = c->err ? c->code : "",
        .request_id = c->request_id,
        .body = body ? body : "",
        .body_len = body ? body_len : 0,
        .items = c->err ? NULL : c->items,
        .pages = c->pages,
        .attempts = c->attempts,
        .elapsed_ms = cg_loop_now_ms() - c->start_ms,
    };
    if (c->err) {
        arm->stats.calls_failed++;
        cg_debug("arm_call_failed", "tenant=%s err=%s attempts=%d", c->tenant,
                 cg_err_name(c->err), c->attempts);
    } else {
        arm->stats.calls_ok++;
    }
    c->fn(&res, c->arg);
    call_free(c);
}

static void call_deliver_timer(struct cg_loop *loop, void *arg)
{
    call_deliver(arg, NULL, 0);
}

/* Ends the call with err (0: success). The callback runs now when we are
 * in a loop callback, or on the next turn when still inside
 * cg_arm_call. */
static void call_finish(struct cg_arm_call *c, int err, const char *body,
                        size_t body_len)
{
    call_stop(c);
    c->err = err;
    c->state = CALL_DONE;
    if (err)
        cg_log_scrub(c->why);
    if (c->starting)
        cg_loop_timer_add(c->arm->loop, &c->timer, 0, call_deliver_timer, c);
    else
        call_deliver(c, body, body_len);
}

/* The call cannot wait wait_ms more: fail it with the deadline, keeping
 * the reason that made it wait. */
static void call_give_up(struct cg_arm_call *c, int cause, const char *why,
                         const char *body, size_t body_len)
{
    char tmp[CG_ARM_WHY_MAX];
    cg_strlcpy(tmp, why, sizeof(tmp));
    c->cause = cause;
    cg_err_set(c->why, sizeof(c->why), CG_EDEADLINE,
               "gave up after %d attempt%s within the %lld ms deadline: %s",
               c->attempts, c->attempts == 1 ? "" : "s",
               (long long)(c->deadline_ms - c->start_ms), tmp);
    call_finish(c, CG_EDEADLINE, body, body_len);
}

/* ---- the attempt pipeline ---- */

static void on_retry_timer(struct cg_loop *loop, void *arg)
{
    attempt_begin(arg);
}

/* Waits at least min_wait_ms (a Retry-After), plus backoff for failures
 * that carry no such hint, then tries again; or gives up at the
 * deadline. */
static void call_retry(struct cg_arm_call *c, int cause, long min_wait_ms,
                       bool backoff, const char *body, size_t body_len)
{
    struct cg_arm *arm = c->arm;
    int64_t wait = min_wait_ms > 0 ? min_wait_ms : 0;
    if (backoff) {
        c->failures++;
        int64_t b = cg_arm_backoff_ms(c->failures, CG_ARM_BACKOFF_BASE_MS,
                                      CG_ARM_BACKOFF_CAP_MS, &arm->rng);
        if (b > wait)
            wait = b;
    }
    int64_t now = cg_loop_now_ms();
    if (now + wait >= c->deadline_ms) {
        call_give_up(c, cause, c->why, body, body_len);
        return;
    }
    arm->stats.retries++;
    c->state = CALL_WAIT_RETRY;
    cg_loop_timer_add(arm->loop, &c->timer, wait, on_retry_timer, c);
}

/* Fills c->code and a sentence in c->why from ARM's error body. */
static int arm_error(struct cg_arm_call *c, int err, long status,
                     const char *body, size_t body_len)
{
    json_t *j = cg_json_parse(body, body_len, NULL, 0);
    json_t *e = NULL;
    if (cg_json_object(j, "error", &e) != CG_JSON_OK)
        e = j; /* some endpoints put code and message at the top */
    const char *code = cg_json_str(e, "code");
    const char *msg = cg_json_str(e, "message");
    cg_strlcpy(c->code, code ? code : "", sizeof(c->code));
    int plen = (int)strcspn(c->url, "?");
    cg_err_set(c->why, sizeof(c->why), err, "ARM %s %.*s: HTTP %ld%s%s%s%s",
               cg_http_method_name(c->method), plen, c->url, status,
               code ? " " : "", code ? code : "", msg ? ": " : "",
               msg ? msg : "");
    json_decref(j);
    return err;
}

/* Same scheme, host and port as the resource manager. */
static bool same_origin(const struct cg_arm *arm, const char *url)
{
    CURLU *u = curl_url();
    bool ok = false;
    char *s1 = NULL, *h1 = NULL, *p1 = NULL, *s2 = NULL, *h2 = NULL, *p2 = NULL;
    if (curl_url_set(u, CURLUPART_URL, url, 0) == CURLUE_OK &&
        curl_url_get(u, CURLUPART_SCHEME, &s1, 0) == CURLUE_OK &&
        curl_url_get(u, CURLUPART_HOST, &h1, 0) == CURLUE_OK &&
        curl_url_get(u, CURLUPART_PORT, &p1, CURLU_DEFAULT_PORT) == CURLUE_OK &&
        curl_url_get(arm->origin, CURLUPART_SCHEME, &s2, 0) == CURLUE_OK &&
        curl_url_get(arm->origin, CURLUPART_HOST, &h2, 0) == CURLUE_OK &&
        curl_url_get(arm->origin, CURLUPART_PORT, &p2, CURLU_DEFAULT_PORT) ==
            CURLUE_OK)
        ok = strcasecmp(s1, s2) == 0 && strcasecmp(h1, h2) == 0 &&
             strcmp(p1, p2) == 0;
    curl_free(s1);
    curl_free(h1);
    curl_free(p1);
    curl_free(s2);
    curl_free(h2);
    curl_free(p2);
    curl_url_cleanup(u);
    return ok;
}

/* Merges one LIST page; sets *next to its nextLink (heap) or NULL. */
static int list_page(struct cg_arm_call *c, const char *body, size_t len,
                     char **next, bool *not_json)
{
    char perr[200];
    *next = NULL;
    json_t *j = cg_json_parse(body, len, perr, sizeof(perr));
    json_t *value = NULL;
    int rc = 0;
    int plen = (int)strcspn(c->url, "?");
    if (!j) {
        *not_json = true;
        rc = cg_err_set(c->why, sizeof(c->why), CG_EPARSE,
                        "ARM GET %.*s: page %zu is not JSON: %s", plen, c->url,
                        c->pages + 1, perr);
        goto out;
    }
    if (json_is_array(j)) {
        value = j; /* the 2020-01-01-preview quirk: a bare array */
    } else if (cg_json_array(j, "value", &value) != CG_JSON_OK) {
        rc = cg_err_set(c->why, sizeof(c->why), CG_EPARSE,
                        "ARM GET %.*s: page %zu has no \"value\" array", plen,
                        c->url, c->pages + 1);
        goto out;
    }
    if (json_array_size(c->items) + json_array_size(value) > CG_ARM_ITEMS_MAX) {
        rc = cg_err_set(c->why, sizeof(c->why), CG_ETOOBIG,
                        "ARM GET %.*s: more than %d items", plen, c->url,
                        CG_ARM_ITEMS_MAX);
        goto out;
    }
    json_array_extend(c->items, value);
    c->pages++;
    const char *link = json_is_object(j) ? cg_json_str(j, "nextLink") : NULL;
    if (link && *link) {
        if (!same_origin(c->arm, link)) {
            rc = cg_err_set(c->why, sizeof(c->why), CG_EPARSE,
                            "ARM GET %.*s: nextLink points to another host; "
                            "not following it with our token",
                            plen, c->url);
            goto out;
        }
        if (c->pages >= CG_ARM_PAGES_MAX) {
            rc = cg_err_set(c->why, sizeof(c->why), CG_ETOOBIG,
                            "ARM GET %.*s: more than %d pages", plen, c->url,
                            CG_ARM_PAGES_MAX);
            goto out;
        }
        *next = cg_strdup(link);
    }
out:
    json_decref(j);
    return rc;
}

static void on_http(const struct cg_http_response *res, void *arg)
{
    struct cg_arm_call *c = arg;
    struct cg_arm *arm = c->arm;
    c->req = NULL;
    slot_release(c);
    if (c->held) {
        /* Never sent: a Retry-After began or the token aged out while it
         * waited for a transfer slot. Start the attempt over. */
        c->held = false;
        if (c->probing)
            probe_done(c, true);
        attempt_begin(c);
        return;
    }
    int64_t now = cg_loop_now_ms();
    struct arm_limits *l = call_limits(c);
    c->status = res->status;
    cg_strlcpy(c->request_id, res->request_id, sizeof(c->request_id));
    if (c->probing)
        probe_done(c, res->err == 0 && res->status == 429);
    int plen = (int)strcspn(c->url, "?");
    const char *m = cg_http_method_name(c->method);

    if (res->err) {
        arm->stats.transport_errors++;
        cg_strlcpy(c->why, res->why, sizeof(c->why));
        if (res->err == CG_EIO || res->err == CG_ETIMEOUT ||
            res->err == CG_ETLS)
            call_retry(c, res->err, 0, true, NULL, 0);
        else
            call_finish(c, res->err, NULL, 0);
        return;
    }
    long st = res->status;
    if (st >= 200 && st < 300)
        arm->stats.status_2xx++;
    else if (st >= 300 && st < 400)
        arm->stats.status_3xx++;
    else if (st >= 400 && st < 500)
        arm->stats.status_4xx++;
    else
        arm->stats.status_5xx++;
    if (l) {
        /* ARM names the bucket a request drew from: per subscription, or
         * per tenant for calls above subscription scope. */
        static const char *const hdr[2][2] = {
            { "subscription-writes", "subscription-reads" },
            { "tenant-writes", "tenant-reads" }
        };
        bool read = c->method == CG_HTTP_GET;
        cg_arm_bucket_observe(
            read ? &l->read : &l->write,
            cg_http_response_ratelimit(res, hdr[c->tenant_level][read]), now);
    }

    if (st >= 200 && st < 300) {
        if (!c->list) {
            call_finish(c, 0, res->body, res->body_len);
            return;
        }
        char *next = NULL;
        bool not_json = false;
        int rc = list_page(c, res->body, res->body_len, &next, &not_json);
        if (not_json && c->parse_failures++ < ARM_PARSE_RETRIES) {
            /* A 200 that is not JSON is most often a body cut short on
             * the way; ask again, but not for ever. */
            call_retry(c, CG_EPARSE, 0, true, res->body, res->body_len);
        } else if (rc) {
            call_finish(c, rc, res->body, res->body_len);
        } else if (!next) {
            call_finish(c, 0, res->body, res->body_len);
        } else {
            /* Each page gets its own 401 and backoff allowance; the
             * deadline covers them all. */
            free(c->url);
            c->url = next;
            c->reauths = 0;
            c->failures = 0;
            attempt_begin(c);
        }
        return;
    }
    if (st == 401) {
        /* A 401 refreshes the token once. A token that merely aged out
         * (it waited for a transfer slot longer than it lived) earns a
         * few more tries: each retry carries a newer token. */
        arm_error(c, CG_EAUTH, st, res->body, res->body_len);
        bool expired = strcmp(c->code, "ExpiredAuthenticationToken") == 0;
        if (c->reauths < (expired ? ARM_REAUTHS_EXPIRED : 1)) {
            c->reauths++;
            arm->stats.reauths++;
            cg_auth_invalidate(arm->auth, c->tenant, c->token);
            attempt_begin(c);
            return;
        }
    }
    if (st == 429) {
        arm->stats.throttled++;
        long wait = res->retry_after_ms >= 0 ? res->retry_after_ms
                                             : CG_ARM_RETRY_AFTER_DEFAULT_MS;
        /* Timers have millisecond granularity and the server started its
         * clock before we read the answer: a little slack keeps "at
         * least Retry-After" true on the server's side too. */
        wait += ARM_RETRY_AFTER_SLACK_MS;
        arm_error(c, CG_ETHROTTLED, st, res->body, res->body_len);
        /* Every request on this bucket would earn another 429 (and a
         * longer wait): hold them all, and start the bucket from empty. */
        if (l) {
            if (now + wait > l->blocked_until_ms)
                l->blocked_until_ms = now + wait;
            l->probe_needed = true;
            cg_arm_bucket_observe(
                c->method == CG_HTTP_GET ? &l->read : &l->write, 0, now);
        }
        if (now + wait < c->deadline_ms) {
            arm->stats.retry_after_waits++;
            arm->stats.retry_after_wait_ms += (uint64_t)wait;
        }
        cg_info("arm_throttled", "tenant=%s method=%s path=%.*s wait_ms=%ld",
                c->tenant, m, plen, c->url, wait);
        call_retry(c, CG_ETHROTTLED, wait, false, res->body, res->body_len);
        return;
    }
    if (st >= 500) {
        arm_error(c, CG_EUNAVAIL, st, res->body, res->body_len);
        call_retry(c, CG_EUNAVAIL, res->retry_after_ms, true, res->body,
                   res->body_len);
        return;
    }
    int err = cg_arm_status_err(st);
    if (err == 0 || st < 400)
        err = CG_EBADREQ;
    arm_error(c, err, st, res->body, res->body_len);
    call_finish(c, err, res->body, res->body_len);
}

/*
 * Runs when the request leaves http's queue for the wire: only now is the
 * bearer token added, and only now is the bucket's block checked again,
 * so that neither a token that aged nor a 429 that arrived while the
 * request waited for a transfer slot reaches ARM. A refusal sends the
 * call back to attempt_begin (see on_http).
 */
static int on_wire(void *arg, char *line, size_t linesz)
{
    struct cg_arm_call *c = arg;
    struct cg_arm *arm = c->arm;
    struct arm_limits *l = c->probing ? c->lim : call_limits(c);
    int64_t now = cg_loop_now_ms();
    if (l && (l->blocked_until_ms > now ||
              (l->probe_needed && !c->probing && l->probe_inflight))) {
        c->held = true;
        return CG_ETHROTTLED;
    }
    const char *token = cg_auth_peek(arm->auth, c->tenant);
    if (!token) {
        c->held = true;
        return CG_EAUTH;
    }
    if (strlen(token) > ARM_TOKEN_MAX)
        return CG_ETOOBIG;
    if (c->token) {
        OPENSSL_cleanse(c->token, strlen(c->token));
        free(c->token);
    }
    c->token = cg_strdup(token);
    snprintf(line, linesz, "Authorization: Bearer %s", token);
    c->attempts++;
    arm->stats.requests++;
    return 0;
}

static void call_send(struct cg_arm_call *c)
{
    struct cg_arm *arm = c->arm;
    if (!call_gate(c))
        return;
    const char *headers[3] = { "Accept: application/json", NULL, NULL };
    if (c->body)
        headers[1] = "Content-Type: application/json";
    struct cg_http_request req = {
        .method = c->method,
        .url = c->url,
        .headers = headers,
        .body = c->body,
        .body_len = c->body_len,
        .on_start = on_wire,
    };
    /* A request must not outlive the call's deadline. */
    int64_t left = c->deadline_ms - cg_loop_now_ms();
    if (left < 1)
        left = 1;
    req.timeout_ms = (long)(left < arm->timeout_ms ? left : arm->timeout_ms);
    char why[CG_ARM_WHY_MAX];
    c->state = CALL_HTTP;
    c->req = cg_http_submit(arm->http, &req, on_http, c, why, sizeof(why));
    if (!c->req) {
        cg_strlcpy(c->why, why, sizeof(c->why));
        call_finish(c, CG_EINVAL, NULL, 0);
    }
}

static void on_token(const struct cg_auth_result *res, void *arg)
{
    struct cg_arm_call *c = arg;
    c->aw = NULL;
    if (res->err) {
        slot_release(c);
        cg_strlcpy(c->why, res->why, sizeof(c->why));
        if (cg_err_retryable(res->err))
            call_retry(c, res->err, res->retry_after_ms, true, NULL, 0);
        else
            call_finish(c, res->err, NULL, 0);
        return;
    }
    call_send(c);
}

static void call_token(struct cg_arm_call *c)
{
    const char *token = cg_auth_cached(c->arm->auth, c->tenant);
    if (token) {
        call_send(c);
        return;
    }
    c->state = CALL_WAIT_TOKEN;
    c->aw = cg_auth_get(c->arm->auth, c->tenant, on_token, c);
}

static void on_slot_deadline(struct cg_loop *loop, void *arg)
{
    struct cg_arm_call *c = arg;
    queue_remove(c);
    c->state = CALL_WAIT_RETRY; /* out of the queue */
    call_give_up(c, CG_EBUSY,
                 "waited for a free slot of the tenant's concurrency cap", NULL,
                 0);
}

static void call_slot(struct cg_arm_call *c)
{
    struct cg_arm *arm = c->arm;
    struct arm_tenant *tn = c->tn;
    if (tn->in_flight < arm->tenant_cap && !tn->qhead) {
        tn->in_flight++;
        c->has_slot = true;
        call_token(c);
        return;
    }
    c->state = CALL_WAIT_SLOT;
    c->qprev = tn->qtail;
    c->qnext = NULL;
    if (tn->qtail)
        tn->qtail->qnext = c;
    else
        tn->qhead = c;
    tn->qtail = c;
    arm->stats.tenant_queued++;
    cg_loop_timer_add(arm->loop, &c->timer, c->deadline_ms - cg_loop_now_ms(),
                      on_slot_deadline, c);
}

static void on_bucket_timer(struct cg_loop *loop, void *arg)
{
    call_slot(arg);
}

/*
 * The last check before a request leaves. A call may have taken its
 * bucket token, slot and bearer token before a 429 arrived for its bucket
 * (its reservation was made earlier): sending it now would earn a new
 * wait. Returns true when it may go; otherwise arranges the wait, giving
 * up the tenant slot, and returns false.
 */
static bool call_gate(struct cg_arm_call *c)
{
    struct arm_limits *l = c->probing ? c->lim : call_limits(c);
    if (!l)
        return true;
    int64_t now = cg_loop_now_ms();
    if (l->blocked_until_ms > now) {
        slot_release(c);
        if (c->probing)
            probe_done(c, true);
        if (l->blocked_until_ms >= c->deadline_ms) {
            call_give_up(c, CG_ETHROTTLED, c->why[0] ? c->why : "429", NULL, 0);
            return false;
        }
        c->state = CALL_WAIT_BUCKET;
        cg_loop_timer_add(c->arm->loop, &c->timer, l->blocked_until_ms - now,
                          on_bucket_timer, c);
        return false;
    }
    if (l->probe_needed && !c->probing) {
        if (l->probe_inflight) {
            slot_release(c);
            call_wait_probe(c, l);
            return false;
        }
        l->probe_inflight = true;
        c->probing = true;
        c->lim = l;
    }
    return true;
}

static void on_probe_deadline(struct cg_loop *loop, void *arg)
{
    struct cg_arm_call *c = arg;
    probe_unwait(c);
    c->state = CALL_WAIT_RETRY;
    call_give_up(c, CG_ETHROTTLED,
                 c->why[0] ? c->why
                           : "waited for ARM's throttling to end on this "
                             "subscription",
                 NULL, 0);
}

static void call_wait_probe(struct cg_arm_call *c, struct arm_limits *l)
{
    c->state = CALL_WAIT_PROBE;
    c->lim = l;
    c->qprev = l->wtail;
    c->qnext = NULL;
    if (l->wtail)
        l->wtail->qnext = c;
    else
        l->whead = c;
    l->wtail = c;
    cg_loop_timer_add(c->arm->loop, &c->timer,
                      c->deadline_ms - cg_loop_now_ms(), on_probe_deadline, c);
}

/* One attempt: the client-side bucket first, so that a request waiting
 * for a token holds no tenant slot. */
static void attempt_begin(struct cg_arm_call *c)
{
    struct cg_arm *arm = c->arm;
    int64_t now = cg_loop_now_ms();
    if (now >= c->deadline_ms) {
        call_give_up(c, c->cause ? c->cause : CG_ETIMEOUT,
                     c->why[0] ? c->why : "the deadline passed", NULL, 0);
        return;
    }
    struct arm_limits *l = call_limits(c);
    if (!l) {
        call_slot(c); /* no principal: auth will say CG_ENOCRED */
        return;
    }
    int64_t blocked = l->blocked_until_ms > now ? l->blocked_until_ms - now : 0;
    if (l->probe_needed && !blocked) {
        if (l->probe_inflight) {
            call_wait_probe(c, l);
            return;
        }
        l->probe_inflight = true;
        c->probing = true;
        c->lim = l;
    }
    struct cg_arm_bucket *b = c->method == CG_HTTP_GET ? &l->read : &l->write;
    /* A Retry-After from ARM also holds requests that had a bucket token:
     * reserve from the end of the block. */
    int64_t wait =
        cg_arm_bucket_reserve(b, now + blocked, c->deadline_ms - now - blocked);
    if (wait < 0) {
        c->cause = CG_ETHROTTLED;
        char tmp[2 * CG_ARM_WHY_MAX];
        if (blocked)
            snprintf(tmp, sizeof(tmp),
                     "ARM's Retry-After holds this subscription for %lld ms "
                     "more; last answer: %s",
                     (long long)blocked, c->why[0] ? c->why : "429");
        else
            snprintf(tmp, sizeof(tmp),
                     "the client-side %s bucket (%ld, refill %ld/s) has no "
                     "token before the deadline",
                     c->method == CG_HTTP_GET ? "read" : "write",
                     c->method == CG_HTTP_GET ? arm->read_bucket
                                              : arm->write_bucket,
                     c->method == CG_HTTP_GET ? arm->read_refill
                                              : arm->write_refill);
        call_give_up(c, CG_ETHROTTLED, tmp, NULL, 0);
        return;
    }
    if (wait > 0 && !blocked) {
        /* ARM starts refilling when a request reaches it, a little after
         * we counted it: without slack a request paced exactly at the
         * refill rate can arrive a hair early when latency varies. */
        wait += ARM_BUCKET_SLACK_MS;
        arm->stats.self_throttled++;
    }
    wait += blocked;
    if (wait == 0) {
        call_slot(c);
        return;
    }
    c->state = CALL_WAIT_BUCKET;
    cg_loop_timer_add(arm->loop, &c->timer, wait, on_bucket_timer, c);
}

/* ---- lifecycle ---- */

static int limits_sweep_cb(const char *key, void *value, void *arg)
{
    struct arm_limits *l = value;
    int64_t now = *(const int64_t *)arg;
    /* A full bucket with no block is the same as no entry at all. */
    if (l->blocked_until_ms <= now && !l->probe_needed && !l->probe_inflight &&
        !l->whead && cg_arm_bucket_level(&l->read, now) >= l->read.capacity &&
        cg_arm_bucket_level(&l->write, now) >= l->write.capacity) {
        free(l);
        return 1;
    }
    return 0;
}

static int tenants_sweep_cb(const char *key, void *value, void *arg)
{
    struct arm_tenant *tn = value;
    (void)key;
    (void)arg;
    if (tn->calls > 0)
        return 0;
    free(tn);
    return 1;
}

size_t cg_arm_sweep(struct cg_arm *arm, int64_t now_ms)
{
    size_t before = cg_map_count(arm->limits) + cg_map_count(arm->tenants);
    cg_map_sweep(arm->limits, limits_sweep_cb, &now_ms);
    cg_map_sweep(arm->tenants, tenants_sweep_cb, NULL);
    return before - cg_map_count(arm->limits) - cg_map_count(arm->tenants);
}

static void on_sweep(struct cg_loop *loop, void *arg)
{
    struct cg_arm *arm = arg;
    cg_arm_sweep(arm, cg_loop_now_ms());
    cg_loop_timer_add(loop, &arm->sweep, ARM_SWEEP_MS, on_sweep, arm);
}

struct cg_arm *cg_arm_new(struct cg_loop *loop, struct cg_http *http,
                          struct cg_auth *auth, const struct cg_conf *conf,
                          char *errbuf, size_t errsz)
{
    const char *rm = cg_conf_str(conf, "azure.resource_manager");
    size_t n = strlen(rm);
    while (n > 0 && rm[n - 1] == '/')
        n--;
    char *base = cg_strndup(rm, n);
    CURLU *origin = curl_url();
    if (!origin || curl_url_set(origin, CURLUPART_URL, base, 0) != CURLUE_OK ||
        (strncmp(base, "https://", 8) != 0 &&
         strncmp(base, "http://", 7) != 0)) {
        cg_err_set(errbuf, errsz, CG_ECONF,
                   "azure.resource_manager \"%s\" is not an http(s) URL", base);
        curl_url_cleanup(origin);
        free(base);
        return NULL;
    }
    struct cg_arm *arm = cg_calloc(1, sizeof(*arm));
    arm->loop = loop;
    arm->http = http;
    arm->auth = auth;
    arm->base = base;
    arm->origin = origin;
    arm->read_bucket = (long)cg_conf_int(conf, "worker.read_bucket");
    arm->read_refill = (long)cg_conf_int(conf, "worker.read_refill");
    arm->write_bucket = (long)cg_conf_int(conf, "worker.write_bucket");
    arm->write_refill = (long)cg_conf_int(conf, "worker.write_refill");
    arm->tenant_cap = (size_t)cg_conf_int(conf, "azure.tenant_max_in_flight");
    arm->timeout_ms = cg_conf_int(conf, "azure.timeout_ms");
    arm->limits = cg_map_new();
    arm->tenants = cg_map_new();
    if (RAND_bytes((unsigned char *)&arm->rng, sizeof(arm->rng)) != 1 ||
        arm->rng == 0)
        arm->rng = (uint64_t)cg_loop_now_ms() | 1;
    cg_loop_timer_add(loop, &arm->sweep, ARM_SWEEP_MS, on_sweep, arm);
    return arm;
}

static int free_value_cb(const char *key, void *value, void *arg)
{
    free(value);
    return 1;
}

void cg_arm_free(struct cg_arm *arm)
{
    if (!arm)
        return;
    arm->freeing = true;
    while (arm->calls) {
        struct cg_arm_call *c = arm->calls;
        call_stop(c);
        call_free(c);
    }
    cg_loop_timer_cancel(arm->loop, &arm->sweep);
    cg_map_sweep(arm->limits, free_value_cb, NULL);
    cg_map_sweep(arm->tenants, free_value_cb, NULL);
    cg_map_free(arm->limits);
    cg_map_free(arm->tenants);
    curl_url_cleanup(arm->origin);
    free(arm->base);
    free(arm);
}

static struct arm_tenant *tenant_get(struct cg_arm *arm, const char *id)
{
    char key[160];
    size_t n = strlen(id);
    if (n >= sizeof(key))
        n = sizeof(key) - 1;
    for (size_t i = 0; i < n; i++)
        key[i] = (char)tolower((unsigned char)id[i]);
    key[n] = '\0';
    struct arm_tenant *tn = cg_map_get(arm->tenants, key);
    if (!tn) {
        tn = cg_calloc(1, sizeof(*tn));
        cg_map_put(arm->tenants, key, tn);
    }
    return tn;
}

static struct cg_arm_call *call_new(struct cg_arm *arm,
                                    const struct cg_arm_request *req, bool list,
                                    cg_arm_fn fn, void *arg)
{
    struct cg_arm_call *c = cg_calloc(1, sizeof(*c));
    c->arm = arm;
    c->fn = fn;
    c->arg = arg;
    c->list = list;
    c->method = list ? CG_HTTP_GET : req->method;
    c->start_ms = cg_loop_now_ms();
    c->tenant_level = req->subscription == NULL;
    c->deadline_ms = req->deadline_ms > 0
                         ? req->deadline_ms
                         : c->start_ms + CG_ARM_DEADLINE_DEFAULT_MS;
    c->tenant = cg_strdup(req->tenant ? req->tenant : "");
    c->tn = tenant_get(arm, c->tenant);
    c->tn->calls++;
    if (list)
        c->items = json_array();
    if (req->body) {
        c->body = cg_strndup(req->body, req->body_len);
        c->body_len = req->body_len;
    }
    c->next = arm->calls;
    if (c->next)
        c->next->prev = c;
    arm->calls = c;
    arm->stats.calls_started++;
    arm->stats.calls_in_flight++;
    c->starting = true;

    const char *path = req->path ? req->path : "";
    const char *principal = cg_auth_principal(arm->auth, c->tenant);
    if (principal) {
        /* Tenant-level calls share the principal's tenant bucket. */
        c->limits_key = req->subscription
                            ? cg_asprintf("%s/%s", principal, req->subscription)
                            : cg_asprintf("%s/tenant:%s", principal, c->tenant);
        for (char *p = c->limits_key; *p; p++)
            *p = (char)tolower((unsigned char)*p);
    }
    if (path[0] == '/') {
        c->url = cg_asprintf("%s%s", arm->base, path);
    } else if (same_origin(arm, path)) {
        c->url = cg_strdup(path);
    } else {
        c->url = cg_strdup("");
        cg_err_set(c->why, sizeof(c->why), CG_EINVAL,
                   "ARM path must start with / or be a URL on %s", arm->base);
        call_finish(c, CG_EINVAL, NULL, 0);
        c->starting = false;
        return c;
    }
    if (!req->tenant || !*req->tenant) {
        cg_err_set(c->why, sizeof(c->why), CG_EINVAL,
                   "ARM call without a tenant");
        call_finish(c, CG_EINVAL, NULL, 0);
        c->starting = false;
        return c;
    }
    attempt_begin(c);
    c->starting = false;
    return c;
}

struct cg_arm_call *cg_arm_call(struct cg_arm *arm,
                                const struct cg_arm_request *req, cg_arm_fn fn,
                                void *arg)
{
    return call_new(arm, req, false, fn, arg);
}

struct cg_arm_call *cg_arm_list(struct cg_arm *arm,
                                const struct cg_arm_request *req, cg_arm_fn fn,
                                void *arg)
{
    return call_new(arm, req, true, fn, arg);
}

void cg_arm_cancel(struct cg_arm *arm, struct cg_arm_call *call)
{
    if (!call)
        return;
    call_stop(call);
    call_free(call);
}

void cg_arm_stats(const struct cg_arm *arm, struct cg_arm_stats *out)
{
    *out = arm->stats;
    struct cg_auth_stats as;
    cg_auth_stats(arm->auth, &as);
    out->token_requests = as.token_requests;
    out->token_failures = as.token_failures;
    out->limits_held = cg_map_count(arm->limits);
    out->tenants_held = cg_map_count(arm->tenants);
    out->auth_tenants_held = as.tenants;
}
