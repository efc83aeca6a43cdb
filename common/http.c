#include "http.h"

#include "conf.h"
#include "err.h"
#include "log.h"
#include "loop.h"
#include "mem.h"

#include <ctype.h>
#include <curl/curl.h>
#include <openssl/crypto.h>
#include <openssl/ssl.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define HTTP_RETRY_AFTER_MAX_S 10000000L /* ~4 months: clamps absurd values */
#define HTTP_UPLOAD_BUFFER     16384L    /* libcurl's smallest */

enum req_state {
    REQ_QUEUED,
    REQ_ACTIVE,
    REQ_DONE,     /* finished, waiting in the done list for its callback */
    REQ_CALLBACK, /* its callback is running; the handle is spent */
};

struct cg_http_req {
    struct cg_http *http;
    struct cg_http_req *prev, *next; /* queue or done list */
    enum req_state state;
    CURL *easy;
    enum cg_http_method method;
    char *url;
    struct curl_slist *headers;
    char *body;
    size_t body_len;
    long timeout_ms;
    size_t max_body;
    cg_http_done_fn fn;
    cg_http_start_fn on_start;
    void *arg;
    int start_err; /* on_start refused to start */
    int64_t submit_ms, start_ms;
    struct cg_buf resp;
    size_t header_bytes;
    bool body_too_big, headers_too_big;
    CURLcode result;
    char curl_err[CURL_ERROR_SIZE];
    struct cg_http_response res;
};

struct req_list {
    struct cg_http_req *head, *tail;
    size_t n;
};

/* One watched socket, created and destroyed as libcurl asks. */
struct http_sock {
    struct cg_loop_io io;
    struct cg_http *http;
    struct http_sock *prev, *next;
};

struct cg_http {
    struct cg_loop *loop;
    CURLM *multi;
    CURLSH *share;
    struct cg_loop_timer timer; /* libcurl's */
    struct cg_loop_timer drain; /* reports requests that never started */
    struct cg_http_opts opts;
    char *ca_file;
    struct req_list queue;
    struct req_list done;
    struct req_list active;
    struct http_sock *socks; /* watched sockets, freed last */
    CURL **easy_pool;        /* reset handles ready for reuse */
    char *start_line;        /* on_start's line, CG_HTTP_START_LINE_MAX */
    size_t npool;
    uint64_t completed, failed;
};

static void list_push(struct req_list *l, struct cg_http_req *r)
{
    r->next = NULL;
    r->prev = l->tail;
    if (l->tail)
        l->tail->next = r;
    else
        l->head = r;
    l->tail = r;
    l->n++;
}

static void list_remove(struct req_list *l, struct cg_http_req *r)
{
    if (r->prev)
        r->prev->next = r->next;
    else
        l->head = r->next;
    if (r->next)
        r->next->prev = r->prev;
    else
        l->tail = r->prev;
    r->prev = r->next = NULL;
    l->n--;
}

const char *cg_http_method_name(enum cg_http_method m)
{
    switch (m) {
    case CG_HTTP_GET:
        return "GET";
    case CG_HTTP_POST:
        return "POST";
    case CG_HTTP_PUT:
        return "PUT";
    case CG_HTTP_DELETE:
        return "DELETE";
    }
    return "GET";
}

void cg_http_opts_from_conf(const struct cg_conf *conf,
                            struct cg_http_opts *opts)
{
    opts->max_in_flight = (long)cg_conf_int(conf, "worker.max_in_flight");
    opts->timeout_ms = (long)cg_conf_int(conf, "azure.timeout_ms");
    opts->connect_timeout_ms =
        opts->timeout_ms < 10000 ? opts->timeout_ms : 10000;
    opts->max_body = (size_t)cg_conf_int(conf, "azure.max_body");
    opts->ca_file = cg_conf_str(conf, "azure.ca_file");
}

/* ---- Retry-After and response headers ---- */

int cg_http_retry_after_parse(const char *value, time_t now, long *ms)
{
    while (*value == ' ' || *value == '\t')
        value++;
    size_t len = strlen(value);
    while (len > 0 && isspace((unsigned char)value[len - 1]))
        len--;
    if (len == 0)
        return CG_EPARSE;
    size_t digits = 0;
    while (digits < len && isdigit((unsigned char)value[digits]))
        digits++;
    if (digits == len) {
        long s = 0;
        for (size_t i = 0; i < len; i++) {
            s = s * 10 + (value[i] - '0');
            if (s > HTTP_RETRY_AFTER_MAX_S) {
                s = HTTP_RETRY_AFTER_MAX_S;
                break;
            }
        }
        *ms = s * 1000;
        return 0;
    }
    /* An HTTP date must start with a day name; curl_getdate alone would
     * also accept bare numbers and other forms no server sends. */
    if (!isalpha((unsigned char)value[0]) || len >= 64)
        return CG_EPARSE;
    char tmp[64];
    memcpy(tmp, value, len);
    tmp[len] = '\0';
    time_t when = curl_getdate(tmp, NULL);
    if (when == (time_t)-1)
        return CG_EPARSE;
    double diff = difftime(when, now);
    if (diff < 0)
        diff = 0;
    if (diff > HTTP_RETRY_AFTER_MAX_S)
        diff = HTTP_RETRY_AFTER_MAX_S;
    *ms = (long)diff * 1000;
    return 0;
}

long cg_http_response_ratelimit(const struct cg_http_response *res,
                                const char *name)
{
    for (size_t i = 0; i < res->nratelimit; i++)
        if (strcasecmp(res->ratelimit[i].name, name) == 0)
            return res->ratelimit[i].value;
    return -1;
}

/* The header's value when line is "name: value", else NULL. */
static const char *header_value(const char *line, size_t len, const char *name,
                                char *val, size_t valsz)
{
    size_t nlen = strlen(name);
    if (len <= nlen || strncasecmp(line, name, nlen) != 0 || line[nlen] != ':')
        return NULL;
    const char *v = line + nlen + 1;
    const char *end = line + len;
    while (v < end && (*v == ' ' || *v == '\t'))
        v++;
    while (end > v && isspace((unsigned char)end[-1]))
        end--;
    size_t n = (size_t)(end - v);
    if (n >= valsz)
        n = valsz - 1;
    memcpy(val, v, n);
    val[n] = '\0';
    return val;
}

static void header_ratelimit(struct cg_http_response *res, const char *line,
                             size_t len)
{
    static const char prefix[] = "x-ms-ratelimit-remaining-";
    size_t plen = sizeof(prefix) - 1;
    if (len <= plen || strncasecmp(line, prefix, plen) != 0)
        return;
    const char *colon = memchr(line, ':', len);
    if (!colon || colon == line + plen)
        return;
    struct cg_http_ratelimit rl = { .value = -1 };
    size_t n = (size_t)(colon - (line + plen));
    if (n >= sizeof(rl.name))
        return;
    for (size_t i = 0; i < n; i++)
        rl.name[i] = (char)tolower((unsigned char)line[plen + i]);
    const char *v = colon + 1, *end = line + len;
    while (v < end && (*v == ' ' || *v == '\t'))
        v++;
    long value = 0;
    size_t digits = 0;
    for (; v < end && isdigit((unsigned char)*v) && digits < 9; v++, digits++)
        value = value * 10 + (*v - '0');
    if (digits == 0)
        return;
    rl.value = value;
    for (size_t i = 0; i < res->nratelimit; i++) {
        if (strcmp(res->ratelimit[i].name, rl.name) == 0) {
            res->ratelimit[i].value = rl.value;
            return;
        }
    }
    if (res->nratelimit < CG_HTTP_RATELIMIT_MAX)
        res->ratelimit[res->nratelimit++] = rl;
}

static size_t http_on_header(char *data, size_t size, size_t nitems,
                             void *userp)
{
    struct cg_http_req *r = userp;
    size_t len = size * nitems;
    r->header_bytes += len;
    if (r->header_bytes > CG_HTTP_HEADERS_MAX) {
        r->headers_too_big = true;
        return 0;
    }
    if (len >= 5 && strncmp(data, "HTTP/", 5) == 0) {
        /* A new response (after a 100 Continue): forget the last one's. */
        r->res.retry_after_ms = -1;
        r->res.nratelimit = 0;
        r->res.request_id[0] = '\0';
        return len;
    }
    char val[96];
    if (header_value(data, len, "Retry-After", val, sizeof(val))) {
        long ms;
        if (cg_http_retry_after_parse(val, time(NULL), &ms) == 0)
            r->res.retry_after_ms = ms;
    } else if (header_value(data, len, "x-ms-request-id", val, sizeof(val))) {
        cg_strlcpy(r->res.request_id, val, sizeof(r->res.request_id));
    } else {
        header_ratelimit(&r->res, data, len);
    }
    return len;
}

static size_t http_on_body(char *data, size_t size, size_t nmemb, void *userp)
{
    struct cg_http_req *r = userp;
    size_t len = size * nmemb;
    if (cg_buf_append(&r->resp, data, len) != 0) {
        r->body_too_big = true;
        return 0; /* CURLE_WRITE_ERROR ends the transfer */
    }
    return len;
}

/* ---- requests ---- */

/*
 * Every transfer slot keeps a TLS connection alive, and OpenSSL keeps a
 * read and a write buffer (some 34 KiB) in each even while it is idle:
 * released, they are allocated again only for the next record. Returns
 * CURLE_OK whatever the backend; only OpenSSL calls it.
 */
static CURLcode http_ssl_ctx(CURL *e, void *ssl_ctx, void *arg)
{
    (void)e;
    (void)arg;
    SSL_CTX_set_mode((SSL_CTX *)ssl_ctx, SSL_MODE_RELEASE_BUFFERS);
    return CURLE_OK;
}

static void req_free(struct cg_http_req *r)
{
    struct cg_http *http = r->http;
    if (r->easy) {
        if (http->npool < (size_t)http->opts.max_in_flight) {
            curl_easy_reset(r->easy);
            http->easy_pool[http->npool++] = r->easy;
        } else {
            curl_easy_cleanup(r->easy);
        }
    }
    curl_slist_free_all(r->headers);
    cg_buf_free(&r->resp);
    free(r->body);
    free(r->url);
    free(r);
}

/* Asks the owner for the header computed at start (on_start). */
static int req_start_header(struct cg_http_req *r)
{
    /* One buffer for every request (on_start may not call into http):
     * a fresh 32 KiB allocation per request churned the heap. */
    char *line = r->http->start_line;
    line[0] = '\0';
    int rc = r->on_start(r->arg, line, CG_HTTP_START_LINE_MAX);
    if (rc == 0 && line[0]) {
        struct curl_slist *h = curl_slist_append(r->headers, line);
        if (!h)
            abort();
        r->headers = h;
    }
    /* The line usually holds a bearer token; nothing is past its end, as
     * the buffer was wiped after the last use. */
    OPENSSL_cleanse(line, strnlen(line, CG_HTTP_START_LINE_MAX));
    return rc;
}

static int req_start(struct cg_http *http, struct cg_http_req *r)
{
    if (r->on_start) {
        r->start_err = req_start_header(r);
        if (r->start_err)
            return r->start_err;
    }
    CURL *e =
        http->npool > 0 ? http->easy_pool[--http->npool] : curl_easy_init();
    if (!e)
        return CG_EIO;
    r->easy = e;
    curl_easy_setopt(e, CURLOPT_URL, r->url);
    curl_easy_setopt(e, CURLOPT_PRIVATE, r);
    curl_easy_setopt(e, CURLOPT_SHARE, http->share);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_ERRORBUFFER, r->curl_err);
    curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, 1L);
    curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, 2L);
    curl_easy_setopt(e, CURLOPT_SSLVERSION, (long)CURL_SSLVERSION_TLSv1_2);
    if (http->ca_file)
        curl_easy_setopt(e, CURLOPT_CAINFO, http->ca_file);
    curl_easy_setopt(e, CURLOPT_SSL_CTX_FUNCTION, http_ssl_ctx);
    /* Over TLS, libcurl copies every request into an upload buffer (OpenSSL
     * wants the same pointer on a retried write): 64 KiB per transfer in
     * flight by default, for requests of a few hundred bytes. */
    curl_easy_setopt(e, CURLOPT_UPLOAD_BUFFERSIZE, HTTP_UPLOAD_BUFFER);
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, r->timeout_ms);
    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS,
                     http->opts.connect_timeout_ms < r->timeout_ms
                         ? http->opts.connect_timeout_ms
                         : r->timeout_ms);
    curl_easy_setopt(e, CURLOPT_TCP_KEEPALIVE, 1L);
    curl_easy_setopt(e, CURLOPT_PIPEWAIT, 1L);
    curl_easy_setopt(e, CURLOPT_ACCEPT_ENCODING, "");
    curl_easy_setopt(e, CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)r->max_body);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, http_on_body);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, r);
    curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, http_on_header);
    curl_easy_setopt(e, CURLOPT_HEADERDATA, r);
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, r->headers);
    switch (r->method) {
    case CG_HTTP_GET:
        curl_easy_setopt(e, CURLOPT_HTTPGET, 1L);
        break;
    case CG_HTTP_POST:
    case CG_HTTP_PUT:
    case CG_HTTP_DELETE:
        if (r->method != CG_HTTP_POST)
            curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST,
                             cg_http_method_name(r->method));
        if (r->body || r->method != CG_HTTP_DELETE) {
            curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE,
                             (curl_off_t)r->body_len);
            curl_easy_setopt(e, CURLOPT_POSTFIELDS, r->body ? r->body : "");
        }
        break;
    }
    r->start_ms = cg_loop_now_ms();
    if (curl_multi_add_handle(http->multi, e) != CURLM_OK)
        return CG_EIO;
    r->state = REQ_ACTIVE;
    list_push(&http->active, r);
    return 0;
}

static void http_fill(struct cg_http *http);
static void http_on_drain(struct cg_loop *loop, void *arg);

/* Moves a finished transfer to the done list; its callback runs later, in
 * http_dispatch, after libcurl has returned. */
static void req_finish(struct cg_http *http, struct cg_http_req *r,
                       CURLcode result)
{
    if (r->state == REQ_ACTIVE) {
        curl_multi_remove_handle(http->multi, r->easy);
        list_remove(&http->active, r);
    }
    r->result = result;
    r->state = REQ_DONE;
    list_push(&http->done, r);
}

static int http_classify(struct cg_http_req *r, char *why, size_t whysz)
{
    const char *u = r->url;
    int ulen = (int)strcspn(u, "?");
    const char *m = cg_http_method_name(r->method);
    const char *detail =
        r->curl_err[0] ? r->curl_err : curl_easy_strerror(r->result);
    if (r->start_err)
        return cg_err_set(why, whysz, r->start_err, "%s %.*s: not started: %s",
                          m, ulen, u, cg_err_desc(r->start_err));
    if (r->body_too_big || r->result == CURLE_FILESIZE_EXCEEDED)
        return cg_err_set(why, whysz, CG_ETOOBIG,
                          "%s %.*s: response body exceeds %zu bytes", m, ulen,
                          u, r->max_body);
    if (r->headers_too_big)
        return cg_err_set(why, whysz, CG_ETOOBIG,
                          "%s %.*s: response headers exceed %d bytes", m, ulen,
                          u, CG_HTTP_HEADERS_MAX);
    switch (r->result) {
    case CURLE_OK:
        why[0] = '\0';
        return 0;
    case CURLE_OPERATION_TIMEDOUT:
        return cg_err_set(why, whysz, CG_ETIMEOUT,
                          "%s %.*s: timed out after %ld ms: %s", m, ulen, u,
                          r->timeout_ms, detail);
    case CURLE_URL_MALFORMAT:
    case CURLE_UNSUPPORTED_PROTOCOL:
        return cg_err_set(why, whysz, CG_EINVAL, "%s %.*s: bad URL: %s", m,
                          ulen, u, detail);
    case CURLE_PEER_FAILED_VERIFICATION:
        /* Its own code: a transport failure like any other (an
         * interception proxy, a chain rotated mid-way, a skewed clock can
         * all pass), retried as one, yet named for what it is. */
        return cg_err_set(why, whysz, CG_ETLS,
                          "%s %.*s: TLS verification failed: %s", m, ulen, u,
                          detail);
    case CURLE_SSL_CACERT_BADFILE:
    case CURLE_SSL_CERTPROBLEM:
        /* Our own CA file or certificate cannot be read: retrying cannot
         * fix the configuration. */
        return cg_err_set(why, whysz, CG_ECONF,
                          "%s %.*s: TLS configuration unusable: %s", m, ulen, u,
                          detail);
    default:
        return cg_err_set(why, whysz, CG_EIO, "%s %.*s: %s", m, ulen, u,
                          detail);
    }
}

static void http_dispatch(struct cg_http *http)
{
    struct cg_http_req *r;
    while ((r = http->done.head) != NULL) {
        list_remove(&http->done, r);
        r->state = REQ_CALLBACK;
        char why[512];
        struct cg_http_response *res = &r->res;
        res->err = http_classify(r, why, sizeof(why));
        res->why = why;
        if (res->err == 0 || res->err == CG_ETOOBIG) {
            long code = 0;
            curl_easy_getinfo(r->easy, CURLINFO_RESPONSE_CODE, &code);
            res->status = code;
        }
        if (res->err) {
            cg_log_scrub(why);
            http->failed++;
        } else {
            http->completed++;
        }
        res->body = r->resp.data ? r->resp.data : "";
        res->body_len = r->resp.len;
        int64_t now = cg_loop_now_ms();
        res->queued_ms = r->start_ms - r->submit_ms;
        res->elapsed_ms = now - r->submit_ms;
        cg_debug("http_done", "method=%s status=%ld err=%s elapsed_ms=%lld",
                 cg_http_method_name(r->method), res->status,
                 cg_err_name(res->err), (long long)res->elapsed_ms);
        r->fn(res, r->arg);
        req_free(r);
    }
}

/* Starts queued requests while slots are free. */
static void http_fill(struct cg_http *http)
{
    while (http->queue.head &&
           http->active.n < (size_t)http->opts.max_in_flight) {
        struct cg_http_req *r = http->queue.head;
        list_remove(&http->queue, r);
        if (req_start(http, r) != 0) {
            cg_strlcpy(r->curl_err, "could not start the transfer",
                       sizeof(r->curl_err));
            req_finish(http, r, CURLE_FAILED_INIT);
        }
    }
    /* Failures to start are reported from the loop like any other, on a
     * timer of our own: moving libcurl's timer would lose its timeout. */
    if (http->done.head)
        cg_loop_timer_add(http->loop, &http->drain, 0, http_on_drain, http);
}

static void http_check(struct cg_http *http)
{
    CURLMsg *msg;
    int left;
    while ((msg = curl_multi_info_read(http->multi, &left)) != NULL) {
        if (msg->msg != CURLMSG_DONE)
            continue;
        struct cg_http_req *r = NULL;
        curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&r);
        req_finish(http, r, msg->data.result);
    }
    /* Callbacks before refilling: a callback's verdict (a 429 that blocks
     * a bucket) must be known before the next queued request's on_start
     * decides whether it may go. */
    http_dispatch(http);
    http_fill(http);
}

/* ---- libcurl <-> loop ---- */

static void http_on_io(struct cg_loop *loop, int fd, unsigned events, void *arg)
{
    struct http_sock *s = arg;
    struct cg_http *http = s->http; /* s may be freed by socket_action */
    int flags = 0, running;
    if (events & CG_LOOP_READ)
        flags |= CURL_CSELECT_IN;
    if (events & CG_LOOP_WRITE)
        flags |= CURL_CSELECT_OUT;
    if (events & CG_LOOP_ERROR)
        flags |= CURL_CSELECT_ERR;
    curl_multi_socket_action(http->multi, fd, flags, &running);
    http_check(http);
}

static void http_on_drain(struct cg_loop *loop, void *arg)
{
    http_check(arg);
}

static void http_on_timer(struct cg_loop *loop, void *arg)
{
    struct cg_http *http = arg;
    int running;
    curl_multi_socket_action(http->multi, CURL_SOCKET_TIMEOUT, 0, &running);
    http_check(http);
}

static void sock_unlink(struct cg_http *http, struct http_sock *s)
{
    if (s->prev)
        s->prev->next = s->next;
    else
        http->socks = s->next;
    if (s->next)
        s->next->prev = s->prev;
}

static int http_socket_cb(CURL *easy, curl_socket_t fd, int what, void *userp,
                          void *socketp)
{
    struct cg_http *http = userp;
    struct http_sock *s = socketp;
    if (what == CURL_POLL_REMOVE) {
        if (s) {
            cg_loop_io_del(http->loop, &s->io);
            curl_multi_assign(http->multi, fd, NULL);
            sock_unlink(http, s);
            free(s);
        }
        return 0;
    }
    unsigned events = 0;
    if (what == CURL_POLL_IN || what == CURL_POLL_INOUT)
        events |= CG_LOOP_READ;
    if (what == CURL_POLL_OUT || what == CURL_POLL_INOUT)
        events |= CG_LOOP_WRITE;
    if (!s) {
        s = cg_calloc(1, sizeof(*s));
        s->http = http;
        if (cg_loop_io_add(http->loop, &s->io, fd, events, http_on_io, s, NULL,
                           0) != 0) {
            free(s);
            return -1;
        }
        curl_multi_assign(http->multi, fd, s);
        s->next = http->socks;
        if (s->next)
            s->next->prev = s;
        http->socks = s;
        return 0;
    }
    return cg_loop_io_modify(http->loop, &s->io, events) == 0 ? 0 : -1;
}

static int http_timer_cb(CURLM *multi, long timeout_ms, void *userp)
{
    struct cg_http *http = userp;
    /* libcurl asks not to be called back from inside its own callback, so
     * even "now" (0) goes through the loop. */
    if (timeout_ms < 0)
        cg_loop_timer_cancel(http->loop, &http->timer);
    else
        cg_loop_timer_add(http->loop, &http->timer, timeout_ms, http_on_timer,
                          http);
    return 0;
}

/* ---- lifecycle ---- */

struct cg_http *cg_http_new(struct cg_loop *loop,
                            const struct cg_http_opts *opts, char *errbuf,
                            size_t errsz)
{
    static const long lock_data[] = { CURL_LOCK_DATA_DNS,
                                      CURL_LOCK_DATA_SSL_SESSION,
                                      CURL_LOCK_DATA_CONNECT };
    if (opts->max_in_flight < 1 || opts->timeout_ms < 1 || opts->max_body < 1) {
        cg_err_set(errbuf, errsz, CG_EINVAL,
                   "http: max_in_flight, timeout_ms and max_body must be "
                   "positive");
        return NULL;
    }
    /* curl_global_init is reference counted and not thread-safe before
     * 7.84; callers create their cg_http before starting threads. */
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        cg_err_set(errbuf, errsz, CG_EIO, "curl_global_init failed");
        return NULL;
    }
    struct cg_http *http = cg_calloc(1, sizeof(*http));
    http->loop = loop;
    http->opts = *opts;
    if (opts->ca_file && *opts->ca_file)
        http->ca_file = cg_strdup(opts->ca_file);
    http->opts.ca_file = http->ca_file;
    if (http->opts.connect_timeout_ms <= 0)
        http->opts.connect_timeout_ms = opts->timeout_ms;
    http->easy_pool =
        cg_calloc((size_t)opts->max_in_flight, sizeof(*http->easy_pool));
    http->start_line = cg_calloc(1, CG_HTTP_START_LINE_MAX);
    http->multi = curl_multi_init();
    http->share = curl_share_init();
    if (!http->multi || !http->share) {
        cg_err_set(errbuf, errsz, CG_EIO, "curl_multi_init failed");
        cg_http_free(http);
        return NULL;
    }
    for (size_t i = 0; i < sizeof(lock_data) / sizeof(lock_data[0]); i++)
        curl_share_setopt(http->share, CURLSHOPT_SHARE, lock_data[i]);
    curl_multi_setopt(http->multi, CURLMOPT_SOCKETFUNCTION, http_socket_cb);
    curl_multi_setopt(http->multi, CURLMOPT_SOCKETDATA, http);
    curl_multi_setopt(http->multi, CURLMOPT_TIMERFUNCTION, http_timer_cb);
    curl_multi_setopt(http->multi, CURLMOPT_TIMERDATA, http);
    curl_multi_setopt(http->multi, CURLMOPT_MAXCONNECTS, opts->max_in_flight);
    curl_multi_setopt(http->multi, CURLMOPT_PIPELINING,
                      (long)CURLPIPE_MULTIPLEX);
    return http;
}

void cg_http_free(struct cg_http *http)
{
    if (!http)
        return;
    struct cg_http_req *r;
    while ((r = http->queue.head) != NULL) {
        list_remove(&http->queue, r);
        req_free(r);
    }
    while ((r = http->done.head) != NULL) {
        list_remove(&http->done, r);
        req_free(r);
    }
    while ((r = http->active.head) != NULL) {
        list_remove(&http->active, r);
        curl_multi_remove_handle(http->multi, r->easy);
        req_free(r);
    }
    for (size_t i = 0; i < http->npool; i++)
        curl_easy_cleanup(http->easy_pool[i]);
    free(http->easy_pool);
    if (http->start_line)
        OPENSSL_cleanse(http->start_line, CG_HTTP_START_LINE_MAX);
    free(http->start_line);
    if (http->multi)
        curl_multi_cleanup(http->multi);
    if (http->share)
        curl_share_cleanup(http->share);
    /* Sockets libcurl closed without a CURL_POLL_REMOVE. */
    while (http->socks) {
        struct http_sock *s = http->socks;
        sock_unlink(http, s);
        cg_loop_io_del(http->loop, &s->io);
        free(s);
    }
    cg_loop_timer_cancel(http->loop, &http->timer);
    cg_loop_timer_cancel(http->loop, &http->drain);
    free(http->ca_file);
    free(http);
    curl_global_cleanup();
}

static bool url_is_loopback(const char *url)
{
    CURLU *u = curl_url();
    char *host = NULL;
    bool ok = false;
    if (u && curl_url_set(u, CURLUPART_URL, url, 0) == CURLUE_OK &&
        curl_url_get(u, CURLUPART_HOST, &host, 0) == CURLUE_OK)
        ok = strcmp(host, "127.0.0.1") == 0 || strcmp(host, "[::1]") == 0 ||
             strcasecmp(host, "localhost") == 0;
    curl_free(host);
    curl_url_cleanup(u);
    return ok;
}

struct cg_http_req *cg_http_submit(struct cg_http *http,
                                   const struct cg_http_request *req,
                                   cg_http_done_fn fn, void *arg, char *errbuf,
                                   size_t errsz)
{
    if (!req->url || !fn) {
        cg_err_set(errbuf, errsz, CG_EINVAL, "http: a request needs a URL");
        return NULL;
    }
    if (strncmp(req->url, "https://", 8) != 0 &&
        strncmp(req->url, "http://", 7) != 0) {
        cg_err_set(errbuf, errsz, CG_EINVAL,
                   "http: only http and https URLs are allowed");
        return NULL;
    }
    /* Requests carry bearer tokens and client secrets: in clear text they
     * may only go to this machine (tests, a local fake). */
    if (strncmp(req->url, "http://", 7) == 0 && !url_is_loopback(req->url)) {
        cg_err_set(errbuf, errsz, CG_EINVAL,
                   "http: plain http is only allowed to loopback; use https");
        return NULL;
    }
    struct cg_http_req *r = cg_calloc(1, sizeof(*r));
    r->http = http;
    r->method = req->method;
    r->url = cg_strdup(req->url);
    /* Without this, libcurl sends "Expect: 100-continue" for larger
     * bodies and waits a second for an answer Azure never sends. */
    r->headers = curl_slist_append(NULL, "Expect:");
    for (size_t i = 0; req->headers && req->headers[i]; i++) {
        struct curl_slist *h = curl_slist_append(r->headers, req->headers[i]);
        if (!h)
            abort();
        r->headers = h;
    }
    if (req->body) {
        r->body = cg_malloc(req->body_len + 1);
        memcpy(r->body, req->body, req->body_len);
        r->body[req->body_len] = '\0';
        r->body_len = req->body_len;
    }
    r->timeout_ms =
        req->timeout_ms > 0 ? req->timeout_ms : http->opts.timeout_ms;
    r->max_body = req->max_body > 0 ? req->max_body : http->opts.max_body;
    cg_buf_init(&r->resp, r->max_body);
    r->fn = fn;
    r->on_start = req->on_start;
    r->arg = arg;
    r->res.retry_after_ms = -1;
    r->submit_ms = cg_loop_now_ms();
    r->start_ms = r->submit_ms;
    r->state = REQ_QUEUED;
    list_push(&http->queue, r);
    /* Completion, even an immediate failure to start, is always reported
     * from the loop, never from inside this call. */
    http_fill(http);
    return r;
}

void cg_http_cancel(struct cg_http *http, struct cg_http_req *r)
{
    if (!r)
        return;
    switch (r->state) {
    case REQ_QUEUED:
        list_remove(&http->queue, r);
        break;
    case REQ_ACTIVE:
        curl_multi_remove_handle(http->multi, r->easy);
        list_remove(&http->active, r);
        break;
    case REQ_DONE:
        list_remove(&http->done, r);
        break;
    case REQ_CALLBACK:
        return; /* spent: freed when its callback returns */
    }
    req_free(r);
    http_fill(http);
}

void cg_http_stats(const struct cg_http *http, struct cg_http_stats *out)
{
    out->in_flight = http->active.n;
    out->queued = http->queue.n;
    out->completed = http->completed;
    out->failed = http->failed;
}
