/*
 * http — asynchronous HTTP(S) requests on the event loop (libcurl multi).
 *
 * The transport under auth (Entra ID tokens) and arm (Resource Manager
 * calls). One cg_http per process keeps hundreds of requests in flight on
 * one thread: libcurl's multi interface is driven from the loop's fd
 * watchers and one timer, and a share handle pools DNS answers, TLS
 * sessions and connections. Requests past the in-flight maximum wait in a
 * FIFO queue. TLS peers are always verified (an optional CA file adds a
 * private CA), TLS 1.2 at least; plain http is refused except to loopback.
 * Response bodies are bounded: a longer body fails the request with
 * CG_ETOOBIG. Headers and bodies are never logged, so neither an
 * Authorization header nor a token reply can reach a log line.
 *
 * This layer does not interpret statuses: any complete HTTP exchange is a
 * success (err 0) with its status; only transport failures are errors.
 */
#ifndef CG_HTTP_H
#define CG_HTTP_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

struct cg_loop;
struct cg_conf;
struct cg_http;
struct cg_http_req;

/* Named limits on what a peer can make us store. */
#define CG_HTTP_HEADERS_MAX    (64 * 1024) /* all response header bytes */
#define CG_HTTP_RATELIMIT_MAX  8           /* x-ms-ratelimit-remaining-* kept */
#define CG_HTTP_REQID_MAX      80
#define CG_HTTP_START_LINE_MAX (32 * 1024) /* the header on_start writes */

struct cg_http_opts {
    long max_in_flight; /* concurrent transfers; more are queued */
    long timeout_ms;    /* default per-request timeout */
    long connect_timeout_ms;
    size_t max_body;     /* default largest response body */
    const char *ca_file; /* extra CA bundle, or NULL/"" */
};

/* Defaults from worker.max_in_flight, azure.timeout_ms, azure.max_body and
 * azure.ca_file. The strings stay borrowed from conf. */
void cg_http_opts_from_conf(const struct cg_conf *conf,
                            struct cg_http_opts *opts);

enum cg_http_method {
    CG_HTTP_GET,
    CG_HTTP_POST,
    CG_HTTP_PUT,
    CG_HTTP_DELETE,
};

const char *cg_http_method_name(enum cg_http_method m);

/*
 * Called with the request's callback arg when the request leaves the queue
 * for the wire (possibly inside cg_http_submit), to write one more header
 * line, "Name: value", computed at that moment: arm puts the bearer token
 * here, so that a token never ages while its request waits for a slot.
 * Returns 0, or a CG_E* code that fails the request unsent (the callback
 * gets that err, status 0). Must not call into http.
 */
typedef int (*cg_http_start_fn)(void *arg, char *line, size_t linesz);

struct cg_http_request {
    enum cg_http_method method;
    const char *url;
    /* "Name: value" lines, NULL-terminated, or NULL. Copied. */
    const char *const *headers;
    const char *body; /* copied; may be NULL */
    size_t body_len;
    long timeout_ms;           /* 0: the default */
    size_t max_body;           /* 0: the default */
    cg_http_start_fn on_start; /* or NULL */
};

struct cg_http_ratelimit {
    char name[48]; /* after "x-ms-ratelimit-remaining-", lower case */
    long value;
};

struct cg_http_response {
    int err;          /* 0, or CG_EIO/CG_ETIMEOUT/CG_ETOOBIG/CG_EINVAL */
    const char *why;  /* one sentence when err != 0, else "" */
    long status;      /* HTTP status, 0 when no response */
    const char *body; /* NUL-terminated, borrowed for the callback */
    size_t body_len;
    /* Retry-After in ms (seconds or an HTTP date), -1 when absent. */
    long retry_after_ms;
    struct cg_http_ratelimit ratelimit[CG_HTTP_RATELIMIT_MAX];
    size_t nratelimit;
    char request_id[CG_HTTP_REQID_MAX]; /* x-ms-request-id, or "" */
    int64_t queued_ms;                  /* waiting for a transfer slot */
    int64_t elapsed_ms;                 /* from submission to completion */
};

/* The value of x-ms-ratelimit-remaining-<name>, or -1. */
long cg_http_response_ratelimit(const struct cg_http_response *res,
                                const char *name);

/*
 * Called once per request from the loop, never from inside
 * cg_http_submit. res and everything it points to are borrowed for the
 * call. The callback may submit and cancel requests.
 */
typedef void (*cg_http_done_fn)(const struct cg_http_response *res, void *arg);

struct cg_http *cg_http_new(struct cg_loop *loop,
                            const struct cg_http_opts *opts, char *errbuf,
                            size_t errsz);
/* Unfinished requests are dropped without their callbacks. NULL-ok; not
 * from inside one of this object's callbacks. */
void cg_http_free(struct cg_http *http);

/*
 * Starts (or queues) a request. Returns a handle that stays valid until
 * the callback has been called or the request is cancelled; NULL (with
 * errbuf) only for an invalid request, in which case fn is not called.
 */
struct cg_http_req *cg_http_submit(struct cg_http *http,
                                   const struct cg_http_request *req,
                                   cg_http_done_fn fn, void *arg, char *errbuf,
                                   size_t errsz);
/* Abandons a request: its callback will not be called. NULL-ok. */
void cg_http_cancel(struct cg_http *http, struct cg_http_req *r);

struct cg_http_stats {
    size_t in_flight;
    size_t queued;
    uint64_t completed; /* HTTP exchanges, any status */
    uint64_t failed;    /* transport errors */
};

void cg_http_stats(const struct cg_http *http, struct cg_http_stats *out);

/*
 * Parses a Retry-After value: delta-seconds or an IMF-fixdate (RFC 9110),
 * relative to wall-clock now. A date in the past is 0. Returns 0 with *ms
 * set, or CG_EPARSE.
 */
int cg_http_retry_after_parse(const char *value, time_t now, long *ms);

#endif
