/* Unit tests of http: Retry-After parsing, and requests against the
 * scripted loopback server (headers captured, bounded bodies, timeouts,
 * queueing past max_in_flight, cancel, connection refused). */
#include "../check.h"
#include "err.h"
#include "http.h"
#include "loop.h"
#include "mem.h"
#include "testsrv.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void test_retry_after(void)
{
    /* 784111777 is Sun, 06 Nov 1994 08:49:37 GMT (RFC 9110's example). */
    const time_t now = 784111777;
    static const struct {
        const char *name, *value;
        int rc;
        long ms;
    } rows[] = {
        { "seconds", "5", 0, 5000 },
        { "seconds with spaces", " 120 ", 0, 120000 },
        { "zero", "0", 0, 0 },
        { "huge is clamped", "99999999999", 0, 10000000000L },
        { "IMF-fixdate ahead", "Sun, 06 Nov 1994 08:50:07 GMT", 0, 30000 },
        { "IMF-fixdate past", "Sun, 06 Nov 1994 08:00:00 GMT", 0, 0 },
        { "RFC 850 date", "Sunday, 06-Nov-94 08:49:47 GMT", 0, 10000 },
        { "asctime date", "Sun Nov  6 08:49:57 1994", 0, 20000 },
        { "empty", "", CG_EPARSE, 0 },
        { "fraction", "1.5", CG_EPARSE, 0 },
        { "negative", "-3", CG_EPARSE, 0 },
        { "garbage", "soon", CG_EPARSE, 0 },
    };
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        long ms = -7;
        int rc = cg_http_retry_after_parse(rows[i].value, now, &ms);
        CHECK(rc == rows[i].rc, "retry-after %s: rc %d, want %d", rows[i].name,
              rc, rows[i].rc);
        if (rc == 0 && rows[i].rc == 0)
            CHECK(ms == rows[i].ms, "retry-after %s: %ld ms, want %ld",
                  rows[i].name, ms, rows[i].ms);
    }
}

struct srvstate {
    char last_authz[256];
    char last_body[256];
};

static void handler(const struct cg_testsrv_request *req,
                    struct cg_testsrv_response *res, void *arg)
{
    struct srvstate *st = arg;
    char v[256];
    if (cg_testsrv_header(req->headers, "Authorization", v, sizeof(v)))
        cg_strlcpy(st->last_authz, v, sizeof(st->last_authz));
    if (strcmp(req->path, "/ok") == 0) {
        snprintf(res->headers, sizeof(res->headers),
                 "Retry-After: 7\r\n"
                 "x-ms-ratelimit-remaining-subscription-reads: 249\r\n"
                 "X-MS-Ratelimit-Remaining-Tenant-Writes: 1199\r\n"
                 "x-ms-request-id: req-123\r\n");
        res->body = cg_strdup("{\"a\":1}");
    } else if (strcmp(req->path, "/big") == 0) {
        res->body = cg_malloc(5001);
        memset(res->body, 'x', 5000);
        res->body[5000] = '\0';
    } else if (strcmp(req->path, "/hang") == 0) {
        res->hang = true;
    } else if (strcmp(req->path, "/echo") == 0) {
        cg_strlcpy(st->last_body, req->body, sizeof(st->last_body));
        res->status = 201;
        res->body = cg_asprintf("{\"method\":\"%s\"}", req->method);
    } else if (strcmp(req->path, "/503") == 0) {
        res->status = 503;
        snprintf(res->headers, sizeof(res->headers), "Retry-After: 2\r\n");
        res->body = cg_strdup("{}");
    } else {
        res->status = 404;
        res->body = cg_strdup("{}");
    }
}

struct done {
    int calls;
    int err;
    long status;
    long retry_after_ms;
    long reads, writes;
    char body[256];
    char why[512];
    char reqid[80];
    size_t max_in_flight_seen;
    struct cg_http *http;
};

static void on_done(const struct cg_http_response *res, void *arg)
{
    struct done *d = arg;
    d->calls++;
    d->err = res->err;
    d->status = res->status;
    d->retry_after_ms = res->retry_after_ms;
    d->reads = cg_http_response_ratelimit(res, "subscription-reads");
    d->writes = cg_http_response_ratelimit(res, "tenant-writes");
    cg_strlcpy(d->body, res->body, sizeof(d->body));
    cg_strlcpy(d->why, res->why, sizeof(d->why));
    cg_strlcpy(d->reqid, res->request_id, sizeof(d->reqid));
    if (d->http) {
        struct cg_http_stats s;
        cg_http_stats(d->http, &s);
        if (s.in_flight > d->max_in_flight_seen)
            d->max_in_flight_seen = s.in_flight;
    }
}

static int refuse_start(void *arg, char *line, size_t linesz)
{
    return CG_EAUTH;
}

static int add_header(void *arg, char *line, size_t linesz)
{
    snprintf(line, linesz, "Authorization: Bearer at-start");
    return 0;
}

static void run(struct cg_loop *loop, const int *calls, int want)
{
    for (int i = 0; i < 5000 && *calls < want; i++)
        cg_loop_run_once(loop, 100);
}

static void test_requests(struct cg_loop *loop)
{
    struct srvstate st = { "", "" };
    struct cg_testsrv *srv = cg_testsrv_new(loop, handler, &st);
    CHECK(srv != NULL, "testsrv started");
    if (!srv)
        return;
    char base[64], url[128], err[256];
    snprintf(base, sizeof(base), "http://127.0.0.1:%d", cg_testsrv_port(srv));
    struct cg_http_opts opts = { .max_in_flight = 4,
                                 .timeout_ms = 5000,
                                 .max_body = 1024 };
    struct cg_http *http = cg_http_new(loop, &opts, err, sizeof(err));
    CHECK(http != NULL, "http_new: %s", err);

    static const struct {
        const char *name, *path;
        enum cg_http_method method;
        const char *body;
        long timeout_ms;
        int err;
        long status;
        const char *want_body;
    } rows[] = {
        { "GET ok", "/ok", CG_HTTP_GET, NULL, 0, 0, 200, "{\"a\":1}" },
        { "POST echo", "/echo", CG_HTTP_POST, "a=b&c=d", 0, 0, 201,
          "{\"method\":\"POST\"}" },
        { "PUT echo", "/echo", CG_HTTP_PUT, "{\"x\":1}", 0, 0, 201,
          "{\"method\":\"PUT\"}" },
        { "DELETE echo", "/echo", CG_HTTP_DELETE, NULL, 0, 0, 201,
          "{\"method\":\"DELETE\"}" },
        { "404 is not an error here", "/nope", CG_HTTP_GET, NULL, 0, 0, 404,
          "{}" },
        { "body over the limit", "/big", CG_HTTP_GET, NULL, 0, CG_ETOOBIG, 200,
          NULL },
        { "timeout", "/hang", CG_HTTP_GET, NULL, 200, CG_ETIMEOUT, 0, NULL },
    };
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        struct done d = { 0 };
        snprintf(url, sizeof(url), "%s%s", base, rows[i].path);
        const char *hdrs[] = { "Authorization: Bearer sekrit-token", NULL };
        struct cg_http_request req = {
            .method = rows[i].method,
            .url = url,
            .headers = hdrs,
            .body = rows[i].body,
            .body_len = rows[i].body ? strlen(rows[i].body) : 0,
            .timeout_ms = rows[i].timeout_ms,
        };
        struct cg_http_req *r =
            cg_http_submit(http, &req, on_done, &d, err, sizeof(err));
        CHECK(r != NULL, "%s: submit: %s", rows[i].name, err);
        CHECK(d.calls == 0, "%s: no callback inside submit", rows[i].name);
        run(loop, &d.calls, 1);
        CHECK(d.calls == 1, "%s: %d callbacks", rows[i].name, d.calls);
        CHECK(d.err == rows[i].err, "%s: err %s, want %s (%s)", rows[i].name,
              cg_err_name(d.err), cg_err_name(rows[i].err), d.why);
        CHECK(d.status == rows[i].status, "%s: status %ld, want %ld",
              rows[i].name, d.status, rows[i].status);
        if (rows[i].want_body)
            CHECK(strcmp(d.body, rows[i].want_body) == 0,
                  "%s: body %s, want %s", rows[i].name, d.body,
                  rows[i].want_body);
        if (d.err)
            CHECK(strstr(d.why, rows[i].path) != NULL && !strchr(d.why, '\n'),
                  "%s: why names the path: %s", rows[i].name, d.why);
        if (strcmp(rows[i].path, "/ok") == 0) {
            CHECK(d.retry_after_ms == 7000, "%s: retry-after %ld", rows[i].name,
                  d.retry_after_ms);
            CHECK(d.reads == 249 && d.writes == 1199,
                  "%s: ratelimit reads %ld writes %ld", rows[i].name, d.reads,
                  d.writes);
            CHECK(strcmp(d.reqid, "req-123") == 0, "%s: request id %s",
                  rows[i].name, d.reqid);
            CHECK(strcmp(st.last_authz, "Bearer sekrit-token") == 0,
                  "%s: authorization header sent", rows[i].name);
        }
        if (rows[i].body)
            CHECK(strcmp(st.last_body, rows[i].body) == 0,
                  "%s: server got body %s", rows[i].name, st.last_body);
    }

    /* Queueing: 40 requests, at most 4 on the wire. */
    {
        enum { N = 40 };
        struct done d = { .http = http };
        size_t conns0 = cg_testsrv_connections(srv);
        snprintf(url, sizeof(url), "%s/ok", base);
        struct cg_http_request req = { .method = CG_HTTP_GET, .url = url };
        for (int i = 0; i < N; i++)
            cg_http_submit(http, &req, on_done, &d, err, sizeof(err));
        struct cg_http_stats s;
        cg_http_stats(http, &s);
        CHECK(s.in_flight == 4 && s.queued == N - 4,
              "queue: %zu in flight, %zu queued", s.in_flight, s.queued);
        run(loop, &d.calls, N);
        CHECK(d.calls == N, "queue: %d of %d completed", d.calls, N);
        CHECK(d.max_in_flight_seen <= 4, "queue: %zu in flight at once",
              d.max_in_flight_seen);
        /* Connections are kept and reused: a hanging request above took
         * one, so at most four new ones for forty requests. */
        size_t conns = cg_testsrv_connections(srv) - conns0;
        CHECK(conns <= 4, "queue: %zu new connections for %d requests", conns,
              N);
    }

    /* Cancel: neither a queued nor an active request calls back. */
    {
        struct done d = { 0 }, d2 = { 0 };
        snprintf(url, sizeof(url), "%s/hang", base);
        struct cg_http_request req = { .method = CG_HTTP_GET,
                                       .url = url,
                                       .timeout_ms = 300 };
        struct cg_http_req *r =
            cg_http_submit(http, &req, on_done, &d, err, sizeof(err));
        snprintf(url, sizeof(url), "%s/ok", base);
        struct cg_http_request req2 = { .method = CG_HTTP_GET, .url = url };
        cg_http_submit(http, &req2, on_done, &d2, err, sizeof(err));
        for (int i = 0; i < 5; i++)
            cg_loop_run_once(loop, 10);
        cg_http_cancel(http, r);
        run(loop, &d2.calls, 1);
        for (int i = 0; i < 40; i++)
            cg_loop_run_once(loop, 10);
        CHECK(d.calls == 0, "cancel: the cancelled request called back");
        CHECK(d2.calls == 1, "cancel: the other request completed");
    }

    /* on_start: a header added when the request goes, or a refusal that
     * fails it unsent -- without disturbing libcurl's own timer, which
     * still has to time out the hanging request. */
    {
        struct done hang = { 0 }, refused = { 0 }, added = { 0 };
        snprintf(url, sizeof(url), "%s/hang", base);
        struct cg_http_request rh = { .method = CG_HTTP_GET,
                                      .url = url,
                                      .timeout_ms = 400 };
        int64_t t0 = cg_loop_now_ms();
        cg_http_submit(http, &rh, on_done, &hang, err, sizeof(err));
        for (int i = 0; i < 5; i++)
            cg_loop_run_once(loop, 10);
        snprintf(url, sizeof(url), "%s/ok", base);
        struct cg_http_request rr = { .method = CG_HTTP_GET,
                                      .url = url,
                                      .on_start = refuse_start };
        cg_http_submit(http, &rr, on_done, &refused, err, sizeof(err));
        CHECK(refused.calls == 0,
              "on_start refusal: no callback inside submit");
        run(loop, &refused.calls, 1);
        CHECK(refused.calls == 1 && refused.err == CG_EAUTH &&
                  refused.status == 0 && strstr(refused.why, "not started"),
              "on_start refusal: err %s status %ld (%s)",
              cg_err_name(refused.err), refused.status, refused.why);
        struct cg_http_request ra = { .method = CG_HTTP_GET,
                                      .url = url,
                                      .on_start = add_header };
        st.last_authz[0] = '\0';
        cg_http_submit(http, &ra, on_done, &added, err, sizeof(err));
        run(loop, &added.calls, 1);
        CHECK(added.err == 0 && strcmp(st.last_authz, "Bearer at-start") == 0,
              "on_start header sent: \"%s\"", st.last_authz);
        run(loop, &hang.calls, 1);
        int64_t dt = cg_loop_now_ms() - t0;
        CHECK(hang.err == CG_ETIMEOUT && dt < 1500,
              "on_start: the hanging request timed out after %lld ms (%s)",
              (long long)dt, cg_err_name(hang.err));
    }

    /* Refused connection and a bad scheme. */
    {
        struct done d = { 0 };
        struct cg_http_request req = { .method = CG_HTTP_GET,
                                       .url = "http://127.0.0.1:1/x" };
        cg_http_submit(http, &req, on_done, &d, err, sizeof(err));
        run(loop, &d.calls, 1);
        CHECK(d.calls == 1 && d.err == CG_EIO, "refused: err %s (%s)",
              cg_err_name(d.err), d.why);
        struct cg_http_request bad = { .method = CG_HTTP_GET,
                                       .url = "file:///etc/passwd" };
        CHECK(cg_http_submit(http, &bad, on_done, &d, err, sizeof(err)) == NULL,
              "bad scheme refused");
        struct cg_http_request clear = { .method = CG_HTTP_GET,
                                         .url = "http://example.com/x" };
        err[0] = '\0';
        CHECK(cg_http_submit(http, &clear, on_done, &d, err, sizeof(err)) ==
                      NULL &&
                  strstr(err, "loopback"),
              "plain http off loopback refused (%s)", err);
    }
    cg_http_free(http);
    cg_testsrv_free(srv);
}

int main(void)
{
    char err[256];
    test_retry_after();
    struct cg_loop *loop = cg_loop_new(err, sizeof(err));
    test_requests(loop);
    cg_loop_free(loop);
    return check_done("test_http");
}
